//! `attention_backward` on the host: per key batch (in parallel), the rows of every query head
//! of its group; dq per row, dk and dv summed over the group's rows. f32 operands of moderate
//! values run as blocked matrix products on the `gemm` microkernels ([`backward_f32`]), the
//! rest in f64 one row at a time.

use anyaccel_hal::{DType, Error, OpCall, Result, TensorDesc};

use super::layout::{par_ranges, TView};
use super::matmul::{gemm_serial, gemm_serial_into};
use super::nn::{moderate, probabilities_block, Logits};
use super::scalar::{f, load, store, Val};
use super::vmath;
use super::{Body, Bound};
use crate::attention::{mask_strides, validate, Geometry};
use crate::attrs::Attrs;

/// The element offset of batch `b` (row-major over all dims but the last two) of `d`.
fn batch_at(d: &TensorDesc, b: usize) -> usize {
    let r = d.rank();
    let mut off = d.offset;
    let mut rest = b;
    for i in (0..r - 2).rev() {
        let n = d.shape[i].max(1);
        off += (rest % n) * d.strides[i];
        rest /= n;
    }
    off
}

pub(crate) fn kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let desc = |i: usize| {
        super::input_desc(call, i)
            .ok_or_else(|| Error::internal("attention_backward: input missing"))
    };
    let (q, k, v) = (desc(1)?, desc(2)?, desc(3)?);
    let mask = super::input_desc(call, 4);
    validate(&call.op, &attrs, q, k, v, mask)?;
    let geo = Geometry::of(&attrs, q, k)?;
    let r = q.rank();
    let (d, dvn) = (q.shape[r - 1], v.shape[r - 1]);
    let scale = attrs.float_opt("scale")?.unwrap_or(1.0 / (d as f64).sqrt());
    let mstrides = mask.map(|m| mask_strides(&call.op, m, q, k)).transpose()?;
    let hq = if r >= 3 { q.shape[r - 3] } else { 1 };
    let qbatches: usize = q.shape[..r - 2].iter().product();
    let kbatches: usize = k.shape[..r - 2].iter().product();
    Ok(Box::new(move |b: &Bound| {
        let (g, q, k, v) = (b.input(0)?, b.input(1)?, b.input(2)?, b.input(3)?);
        let m = b.inputs.get(4).and_then(|t| t.as_ref());
        let (dq, dk, dv) = (b.out(0), b.out(1), b.out(2));
        let f32_mask = m.zip(mstrides.as_ref());
        if backward_f32([g, q, k, v, dq, dk, dv], f32_mask, &geo, scale)? {
            return Ok(());
        }
        let (lq, lk) = (geo.lq, geo.lk);
        let last = |t: &TView, i: usize| t.desc.strides[t.desc.rank() - 1 - i];
        let hkv = hq / geo.group;
        let mask_off = |qb: usize, i: usize, j: usize| -> usize {
            let (m, s) = (
                m.expect("mask present"),
                mstrides.as_ref().expect("mask strides"),
            );
            let mut off = m.desc.offset;
            let mut rest = qb;
            for a in (0..r - 2).rev() {
                let n = q.desc.shape[a].max(1);
                off += (rest % n) * s[a];
                rest /= n;
            }
            off + i * s[r - 2] + j * s[r - 1]
        };
        par_ranges(kbatches, 1, |range| {
            let mut dk_acc = vec![0f64; lk * d];
            let mut dv_acc = vec![0f64; lk * dvn];
            let mut logit = vec![0f64; lk];
            let mut dcap = vec![0f64; lk];
            let mut p = vec![0f64; lk];
            let mut dp = vec![0f64; lk];
            let mut dq_row = vec![0f64; d];
            // SAFETY (all loads and stores): the offsets are built from the validated shapes
            // and strides of each operand, with indices inside them.
            let ld = |t: &TView, off: usize| f(unsafe { load(t, off) });
            for kb in range {
                dk_acc.fill(0.0);
                dv_acc.fill(0.0);
                let (ko, vo) = (batch_at(&k.desc, kb), batch_at(&v.desc, kb));
                for gi in 0..geo.group {
                    let qb = (kb / hkv) * hq + (kb % hkv) * geo.group + gi;
                    if qb >= qbatches {
                        continue;
                    }
                    let (qo, go, dqo) = (
                        batch_at(&q.desc, qb),
                        batch_at(&g.desc, qb),
                        batch_at(&dq.desc, qb),
                    );
                    for i in 0..lq {
                        let keys = geo.keys(i);
                        let qrow = qo + i * last(q, 1);
                        let grow = go + i * last(g, 1);
                        let mut mx = f64::NEG_INFINITY;
                        for j in keys.clone() {
                            let krow = ko + j * last(k, 1);
                            let s: f64 = (0..d)
                                .map(|c| {
                                    ld(q, qrow + c * last(q, 0)) * ld(k, krow + c * last(k, 0))
                                })
                                .sum::<f64>()
                                * scale;
                            let (mut l, mut dc) = (s, 1.0);
                            if geo.softcap > 0.0 {
                                let t = (s / geo.softcap).tanh();
                                l = geo.softcap * t;
                                dc = 1.0 - t * t;
                            }
                            if let Some(mt) = m {
                                let mv = ld(mt, mask_off(qb, i, j));
                                if mt.desc.dtype == anyaccel_hal::DType::Bool {
                                    if mv == 0.0 {
                                        l = f64::NEG_INFINITY;
                                    }
                                } else {
                                    l += mv;
                                }
                            }
                            logit[j] = l;
                            dcap[j] = dc;
                            if l > mx || l.is_nan() || mx.is_nan() {
                                mx = if mx.is_nan() { mx } else { l };
                            }
                        }
                        dq_row.fill(0.0);
                        if mx != f64::NEG_INFINITY {
                            let mut sum = 0.0;
                            for j in keys.clone() {
                                p[j] = (logit[j] - mx).exp();
                                sum += p[j];
                            }
                            let mut di = 0.0;
                            for j in keys.clone() {
                                p[j] /= sum;
                                let vrow = vo + j * last(v, 1);
                                dp[j] = (0..dvn)
                                    .map(|c| {
                                        ld(g, grow + c * last(g, 0)) * ld(v, vrow + c * last(v, 0))
                                    })
                                    .sum();
                                if p[j] != 0.0 {
                                    di += p[j] * dp[j];
                                }
                            }
                            for j in keys.clone() {
                                if p[j] == 0.0 {
                                    continue;
                                }
                                let ds = p[j] * (dp[j] - di) * dcap[j] * scale;
                                let krow = ko + j * last(k, 1);
                                for c in 0..d {
                                    dq_row[c] += ds * ld(k, krow + c * last(k, 0));
                                    dk_acc[j * d + c] += ds * ld(q, qrow + c * last(q, 0));
                                }
                                for c in 0..dvn {
                                    dv_acc[j * dvn + c] += p[j] * ld(g, grow + c * last(g, 0));
                                }
                            }
                        }
                        for (c, &x) in dq_row.iter().enumerate() {
                            // SAFETY: row i of query batch qb of dq.
                            unsafe {
                                store(dq, dqo + i * last(dq, 1) + c * last(dq, 0), Val::F(x))
                            };
                        }
                    }
                }
                let (dko, dvo) = (batch_at(&dk.desc, kb), batch_at(&dv.desc, kb));
                for j in 0..lk {
                    for c in 0..d {
                        // SAFETY: row j of key batch kb of dk.
                        unsafe {
                            store(
                                dk,
                                dko + j * last(dk, 1) + c * last(dk, 0),
                                Val::F(dk_acc[j * d + c]),
                            )
                        };
                    }
                    for c in 0..dvn {
                        // SAFETY: row j of key batch kb of dv.
                        unsafe {
                            store(
                                dv,
                                dvo + j * last(dv, 1) + c * last(dv, 0),
                                Val::F(dv_acc[j * dvn + c]),
                            )
                        };
                    }
                }
            }
            Ok(())
        })
    }))
}

/// `attention_backward` on f32 operands (any layouts) as blocked matrix products on the `gemm`
/// microkernels, the forward op's blocks again (`nn::attention_f32`): for each key batch (in
/// parallel), each query head of its group and each block of up to [`BACKWARD_BLOCK`] query rows, the
/// logits `S = scale q k^T` and their probabilities `P` exactly as the forward op computes
/// them, `dP = grad v^T`, per row `dS = P (dP - sum(P dP)) cap' scale` (the row's sum as
/// `softmax_backward`'s vector kernel takes it), then `dq = dS k` (written), `dk += dS^T q` and `dv += P^T grad` (f32
/// sums over the group's rows, written once at the end). `false` (nothing run) for other
/// dtypes, empty dimensions, or operands with a value that is not moderate (the f64 path
/// keeps the reference's infinities and NaNs).
fn backward_f32(
    [g, q, k, v, dq, dk, dv]: [&TView; 7],
    mask: Option<(&TView, &Vec<usize>)>,
    geo: &Geometry,
    scale: f64,
) -> Result<bool> {
    if [g, q, k, v, dq, dk, dv]
        .iter()
        .any(|t| t.desc.dtype != DType::F32)
    {
        return Ok(false);
    }
    let r = q.desc.rank();
    let (lq, d, lk, dvn) = (
        q.desc.shape[r - 2],
        q.desc.shape[r - 1],
        k.desc.shape[r - 2],
        v.desc.shape[r - 1],
    );
    if [lq, d, lk, dvn].contains(&0) || ![g, q, k, v].iter().all(|t| moderate(t)) {
        return Ok(false);
    }
    let hq = if r >= 3 { q.desc.shape[r - 3] } else { 1 };
    let hkv = hq / geo.group;
    let qbatches: usize = q.desc.shape[..r - 2].iter().product();
    let kbatches: usize = k.desc.shape[..r - 2].iter().product();
    let st = |t: &TView, from_end: usize| t.desc.strides[r - from_end] as isize;
    let scale32 = scale as f32;
    // At most 2^18 logits a block (1 MiB in each of the three scratch blocks), 16 rows at least.
    let rows_per_block = ((1 << 18) / lk).clamp(16, BACKWARD_BLOCK);
    let block = rows_per_block.min(lq);
    par_ranges(kbatches, 1, |range| {
        let mut logits = vec![0f32; block * lk];
        let mut probs = vec![0f32; block * lk];
        let mut grads = vec![0f32; block * lk];
        let mut dcap = vec![1f32; if geo.softcap > 0.0 { block * lk } else { 0 }];
        let mut dk_acc = vec![0f32; lk * d];
        let mut dv_acc = vec![0f32; lk * dvn];
        for kb in range {
            let (ko, vo) = (batch_at(&k.desc, kb), batch_at(&v.desc, kb));
            let mut first = true;
            for gi in 0..geo.group {
                let qb = (kb / hkv) * hq + (kb % hkv) * geo.group + gi;
                if qb >= qbatches {
                    continue;
                }
                for i0 in (0..lq).step_by(rows_per_block) {
                    let rows = rows_per_block.min(lq - i0);
                    let qo = batch_at(&q.desc, qb) + i0 * q.desc.strides[r - 2];
                    let go = batch_at(&g.desc, qb) + i0 * g.desc.strides[r - 2];
                    let dqo = batch_at(&dq.desc, qb) + i0 * dq.desc.strides[r - 2];
                    let (s, p) = (&mut logits[..rows * lk], &mut probs[..rows * lk]);
                    // SAFETY (every product below): each operand is a block of its view's
                    // layout (validated shapes and strides): rows i0..i0+rows of query batch
                    // qb of q, grad and dq, every key of key batch kb of k and v, and the
                    // contiguous scratch blocks; dq's rows are written by this task only and
                    // overlap no input.
                    unsafe {
                        probabilities_block(
                            [q, k],
                            [qo, ko],
                            Logits {
                                geo,
                                mask,
                                scale,
                                line: qb * lq,
                                i0,
                            },
                            s,
                            p,
                            (geo.softcap > 0.0).then(|| &mut dcap[..rows * lk]),
                        )
                    };
                    // dP = grad v^T, into the logits' block.
                    unsafe {
                        gemm_serial(
                            [rows, lk, dvn],
                            (s.as_mut_ptr(), 1, lk as isize),
                            (g.ptr::<f32>(go), st(g, 1), st(g, 2)),
                            (v.ptr::<f32>(vo), st(v, 2), st(v, 1)),
                        )
                    };
                    // dS = P (dP - sum(P dP)) cap' scale: softmax's gradient of dP.
                    let ds = &mut grads[..rows * lk];
                    vmath::softmax_grad_rows(s, p, ds, lk, false);
                    if dcap.is_empty() {
                        ds.iter_mut().for_each(|x| *x *= scale32);
                    } else {
                        for (x, &c) in ds.iter_mut().zip(&dcap) {
                            *x *= c * scale32;
                        }
                    }
                    unsafe {
                        // dq = dS k.
                        gemm_serial(
                            [rows, d, lk],
                            (dq.ptr::<f32>(dqo), st(dq, 1), st(dq, 2)),
                            (ds.as_ptr(), 1, lk as isize),
                            (k.ptr::<f32>(ko), st(k, 1), st(k, 2)),
                        );
                        // dk += dS^T q.
                        gemm_serial_into(
                            [lk, d, rows],
                            (dk_acc.as_mut_ptr(), 1, d as isize),
                            (ds.as_ptr(), lk as isize, 1),
                            (q.ptr::<f32>(qo), st(q, 1), st(q, 2)),
                            !first,
                        );
                        // dv += P^T grad.
                        gemm_serial_into(
                            [lk, dvn, rows],
                            (dv_acc.as_mut_ptr(), 1, dvn as isize),
                            (p.as_ptr(), lk as isize, 1),
                            (g.ptr::<f32>(go), st(g, 1), st(g, 2)),
                            !first,
                        );
                    }
                    first = false;
                }
            }
            if first {
                dk_acc.fill(0.0);
                dv_acc.fill(0.0);
            }
            let (dko, dvo) = (batch_at(&dk.desc, kb), batch_at(&dv.desc, kb));
            for j in 0..lk {
                for (c, &x) in dk_acc[j * d..(j + 1) * d].iter().enumerate() {
                    // SAFETY: row j of key batch kb of dk, written by this task only.
                    unsafe {
                        dk.set(
                            dko + j * dk.desc.strides[r - 2] + c * dk.desc.strides[r - 1],
                            x,
                        )
                    };
                }
                for (c, &x) in dv_acc[j * dvn..(j + 1) * dvn].iter().enumerate() {
                    // SAFETY: row j of key batch kb of dv, written by this task only.
                    unsafe {
                        dv.set(
                            dvo + j * dv.desc.strides[r - 2] + c * dv.desc.strides[r - 1],
                            x,
                        )
                    };
                }
            }
        }
        Ok(())
    })?;
    Ok(true)
}

/// Query rows per block of [`backward_f32`] (fewer for long keys): the inner dimension of the
/// dk and dv products.
const BACKWARD_BLOCK: usize = 256;
