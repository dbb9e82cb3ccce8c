//! `softmax`, `log_softmax`, `layer_norm`, `rms_norm`, `rope` and `attention`: f32 through the
//! vectorised row kernels of `vmath` and blocked `gemm` products where the layouts allow, else
//! accumulating in f64.

use std::borrow::Cow;

use anyaccel_hal::{OpCall, Result};

use super::layout::{par_ranges, GRAIN};
use super::matmul::gemm_serial;
use super::reduce::{for_lines, line_offset};
use super::scalar::{f, load, store, vector_f32, Val};
use super::vmath::{self, Norm};
use super::{Body, Bound, TView};
use crate::attention::{mask_strides, Geometry};
use crate::attrs::Attrs;
use crate::catalog::misrouted;
use crate::plan::eps;
use anyaccel_hal::DType;

/// Reads `len` elements of `v` from `base` with step `stride`.
fn row(v: &TView, base: usize, stride: usize, len: usize) -> Vec<f64> {
    // SAFETY: callers pass a line of v's layout.
    (0..len)
        .map(|j| f(unsafe { load(v, base + j * stride) }))
        .collect()
}

fn write_row(out: &TView, base: usize, stride: usize, values: impl Iterator<Item = f64>) {
    for (j, y) in values.enumerate() {
        // SAFETY: callers pass a line of the output's layout with as many elements.
        unsafe { store(out, base + j * stride, Val::F(y)) }
    }
}

/// Rows of a 16-bit float op widened to f32 at a time: at most this many elements (or one
/// row).
const STAGED: usize = 1 << 13;

/// Runs `f` on groups of whole rows of the inputs `xs` and `out` as f32 slices, in parallel,
/// when all are contiguous and of one shape and one float dtype, and the rows lie along the
/// last axis `axis` (the fused row kernels' case); `false` (nothing run) otherwise. f32 rows
/// are the views' own memory; f16 and bf16 rows are widened into f32 buffers a block of rows
/// at a time (exactly), and the results rounded once into the output.
fn f32_rows<const N: usize>(
    xs: [&TView; N],
    out: &TView,
    axis: usize,
    f: impl Fn([&[f32]; N], &mut [f32], usize) + Sync,
) -> Result<bool> {
    let len = out.desc.shape.get(axis).copied().unwrap_or(0);
    let dtype = out.desc.dtype;
    let fits = |t: &TView| {
        t.desc.dtype == dtype && t.desc.is_contiguous() && t.desc.shape == out.desc.shape
    };
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
        || axis + 1 != out.desc.rank()
        || len == 0
        || !fits(out)
        || !xs.iter().all(|x| fits(x))
    {
        return Ok(false);
    }
    let rows = out.desc.numel() / len;
    par_ranges(rows, (GRAIN / len).max(1), |r| {
        if dtype != DType::F32 {
            let per = (STAGED / len).clamp(1, r.len());
            let mut ins: [Vec<f32>; N] = std::array::from_fn(|_| vec![0f32; per * len]);
            let mut os = vec![0f32; per * len];
            for b0 in r.clone().step_by(per) {
                let n = (per.min(r.end - b0)) * len;
                for (x, buf) in xs.iter().zip(ins.iter_mut()) {
                    // SAFETY: a contiguous 16-bit view of `rows * len` elements from its
                    // offset; rows b0.. are inside it.
                    unsafe { widen_into(x, x.desc.offset + b0 * len, &mut buf[..n]) };
                }
                f(ins.each_ref().map(|v| &v[..n]), &mut os[..n], len);
                // SAFETY: as above, for the output, whose rows this task alone writes.
                unsafe { narrow_into(out, out.desc.offset + b0 * len, &os[..n]) };
            }
            return Ok(());
        }
        let (start, n) = (r.start * len, r.len() * len);
        // SAFETY: every view is contiguous f32 with `rows * len` elements from its offset; the
        // output is distinct from the inputs, and each task writes its own rows.
        let ins = xs.map(|x| unsafe { x.run::<f32>(x.desc.offset + start, n) });
        // SAFETY: as above.
        let os = unsafe { out.run_mut::<f32>(out.desc.offset + start, n) };
        f(ins, os, len);
        Ok(())
    })?;
    Ok(true)
}

/// Widens the `o.len()` elements from `at` of an f16 or bf16 view into `o`.
///
/// # Safety
/// They lie inside the view's buffer, and nothing writes them meanwhile.
pub(super) unsafe fn widen_into(t: &TView, at: usize, o: &mut [f32]) {
    let n = o.len();
    // SAFETY: as the caller promises.
    unsafe {
        match t.desc.dtype {
            DType::F16 => vmath::widen_16(t.run(at, n), o),
            _ => vmath::widen_b16(t.run(at, n), o),
        }
    }
}

/// Rounds `v` into the `v.len()` elements from `at` of an f16 or bf16 view.
///
/// # Safety
/// They lie inside the view's buffer, and nothing else reads or writes them meanwhile.
unsafe fn narrow_into(t: &TView, at: usize, v: &[f32]) {
    let n = v.len();
    // SAFETY: as the caller promises.
    unsafe {
        match t.desc.dtype {
            DType::F16 => vmath::narrow_16(v, t.run_mut(at, n)),
            _ => vmath::narrow_b16(v, t.run_mut(at, n)),
        }
    }
}

/// An optional parameter vector of `len` elements as f32: `Some(None)` when it is absent,
/// `None` when it is not a unit-stride f32, f16 or bf16 vector (no fused kernel then). f32 is
/// the view's own memory; f16 and bf16 are widened (exactly).
fn f32_param<'a>(t: Option<&'a TView>, len: usize) -> Option<Option<Cow<'a, [f32]>>> {
    let Some(t) = t else {
        return Some(None);
    };
    if t.desc.shape != [len] || (len > 1 && t.desc.strides[0] != 1) {
        return None;
    }
    match t.desc.dtype {
        // SAFETY: a rank-1 f32 view of `len` elements with unit stride.
        DType::F32 => Some(Some(Cow::Borrowed(unsafe { t.run(t.desc.offset, len) }))),
        DType::F16 | DType::BF16 => Some(Some(Cow::Owned(vector_f32(t)))),
        _ => None,
    }
}

/// One query row's part of an attention mask: where it starts and its step along the keys.
#[derive(Clone, Copy)]
pub(super) struct MaskRow<'v, 'a> {
    mask: &'v TView<'a>,
    off: usize,
    step: usize,
}

impl<'v, 'a> MaskRow<'v, 'a> {
    /// The mask's row for the logits' row `line` (its index over q's dims but the last), from
    /// the mask's strides over the logits.
    pub(super) fn of(
        mask: Option<(&'v TView<'a>, &Vec<usize>)>,
        q_shape: &[usize],
        line: usize,
    ) -> Option<Self> {
        let (mask, strides) = mask?;
        let r = q_shape.len();
        let (mut rem, mut off) = (line, mask.desc.offset);
        for dim in (0..r - 1).rev() {
            let size = q_shape[dim].max(1);
            off += (rem % size) * strides[dim];
            rem /= size;
        }
        Some(MaskRow {
            mask,
            off,
            step: strides[r - 1],
        })
    }

    /// `logit` of key `j` with the mask applied: a false bool gives -inf, a float adds.
    pub(super) fn apply(row: Option<Self>, logit: f64, j: usize) -> f64 {
        let Some(row) = row else {
            return logit;
        };
        // SAFETY: j < Lk, inside the mask's broadcast row.
        match unsafe { load(row.mask, row.off + j * row.step) } {
            Val::I(0) => f64::NEG_INFINITY,
            Val::I(_) => logit,
            Val::F(a) => logit + a,
        }
    }
}

/// Every element of an f32 view is finite and at most 1e15 in magnitude (so that a product of
/// two, summed over any head dimension, stays finite in f32).
pub(super) fn moderate(t: &TView) -> bool {
    let ok = |v: f32| v.abs() <= 1e15;
    if t.desc.is_contiguous() {
        // SAFETY: a contiguous f32 view of `numel` elements from its offset.
        let s = unsafe { t.run::<f32>(t.desc.offset, t.desc.numel()) };
        return s.iter().fold(true, |all, &v| all & ok(v));
    }
    let mut all = true;
    super::layout::walk(
        &t.desc.shape,
        [&t.desc.strides],
        [t.desc.offset],
        0..t.desc.numel(),
        // SAFETY: the walk's offsets are the view's elements.
        |_, [o]| all &= ok(unsafe { t.get::<f32>(o) }),
    );
    all
}

/// Where a block of attention logits comes from: the geometry, the mask (with its strides
/// over the logits), the scale, the logits' row index of the batch's first query row, and the
/// block's first query row.
pub(super) struct Logits<'m, 'v, 'a> {
    pub geo: &'m Geometry,
    pub mask: Option<(&'v TView<'a>, &'m Vec<usize>)>,
    pub scale: f64,
    pub line: usize,
    pub i0: usize,
}

/// The logits `scale q k^T` of `s.len() / lk` query rows from element `qo` of q (the keys from
/// `ko` of k, read through their strides) into `s`, each row's soft cap and mask applied and
/// the keys it does not see at -inf, then their probabilities into `p`. With `dcap`, the soft
/// cap's derivative at each logit is written there (the gradient's `cap'`). Every path computes
/// the same f32 logits and takes the softmax over the whole row, so that a causal flag and the
/// equivalent bool mask, or an all-true mask and none, give the same bits.
///
/// # Safety
///
/// q's rows and k's keys named lie inside their views (validated shapes and strides).
pub(super) unsafe fn probabilities_block(
    [q, k]: [&TView; 2],
    [qo, ko]: [usize; 2],
    at: Logits,
    s: &mut [f32],
    p: &mut [f32],
    mut dcap: Option<&mut [f32]>,
) {
    let r = q.desc.rank();
    let (d, lk) = (q.desc.shape[r - 1], k.desc.shape[r - 2]);
    let st = |t: &TView, from_end: usize| t.desc.strides[r - from_end] as isize;
    let (geo, scale32) = (at.geo, at.scale as f32);
    // SAFETY: the caller's contract; `s` is a contiguous rows x lk block.
    unsafe {
        gemm_serial(
            [s.len() / lk, lk, d],
            (s.as_mut_ptr(), 1, lk as isize),
            (q.ptr::<f32>(qo), st(q, 1), st(q, 2)),
            (k.ptr::<f32>(ko), st(k, 2), st(k, 1)),
        )
    };
    for (ii, (row, prow)) in s
        .chunks_exact_mut(lk)
        .zip(p.chunks_exact_mut(lk))
        .enumerate()
    {
        let i = at.i0 + ii;
        let keys = geo.keys(i);
        for l in row.iter_mut() {
            *l *= scale32;
        }
        row[..keys.start].fill(f32::NEG_INFINITY);
        row[keys.end..].fill(f32::NEG_INFINITY);
        if at.mask.is_some() || geo.softcap != 0.0 {
            let mrow = MaskRow::of(at.mask, &q.desc.shape, at.line + i);
            for (j, l) in keys.clone().zip(&mut row[keys]) {
                if let Some(dc) = dcap.as_deref_mut().filter(|_| geo.softcap > 0.0) {
                    let t = (f64::from(*l) / geo.softcap).tanh();
                    dc[ii * lk + j] = (1.0 - t * t) as f32;
                }
                *l = MaskRow::apply(mrow, geo.cap(*l as f64), j) as f32;
            }
        }
        vmath::probabilities(row, prow);
    }
}

/// Query rows per task of [`attention_f32`]: its logits block is this many rows of the keys.
const QUERY_BLOCK: usize = 64;

/// `attention` on f32 q, k, v and output (any layouts) as blocked matrix products on the `gemm`
/// microkernels: for each batch index and block of [`QUERY_BLOCK`] query rows, the logits
/// `scale * q k^T` (one product, k read through its strides), then per row the soft cap, the
/// mask, the keys the row sees (the others at -inf) and a softmax (f64 sum), then the probabilities times v (one
/// product, written through the output's strides). `false` (nothing run) for other dtypes or
/// empty dimensions.
fn attention_f32(
    [q, k, v, out]: [&TView; 4],
    mask: Option<(&TView, &Vec<usize>)>,
    geo: &Geometry,
    scale: f64,
) -> Result<bool> {
    if [q, k, v, out].iter().any(|t| t.desc.dtype != DType::F32) {
        return Ok(false);
    }
    let r = q.desc.rank();
    let (lq, d, lk, dv) = (
        q.desc.shape[r - 2],
        q.desc.shape[r - 1],
        k.desc.shape[r - 2],
        v.desc.shape[r - 1],
    );
    if [lq, d, lk, dv].contains(&0) {
        return Ok(false);
    }
    // f32 products and sums give the contract's results only on moderate values: an
    // infinity, a NaN or a product beyond f32's range (which the reference's f64 sums keep)
    // takes the f64 path.
    if ![q, k, v].iter().all(|t| moderate(t)) {
        return Ok(false);
    }
    let batches: usize = q.desc.shape[..r - 2].iter().product();
    let heads = if r >= 3 { q.desc.shape[r - 3] } else { 1 };
    let space = |t: &TView| {
        let mut s = t.desc.shape[..r - 2].to_vec();
        s.extend([1, 1]);
        s
    };
    let (q_space, kv_space) = (space(q), space(k));
    let blocks = lq.div_ceil(QUERY_BLOCK);
    let st = |t: &TView, from_end: usize| t.desc.strides[r - from_end] as isize;
    par_ranges(batches * blocks, 1, |tasks| {
        let mut logits = vec![0f32; QUERY_BLOCK.min(lq) * lk];
        let mut probs = vec![0f32; logits.len()];
        for task in tasks {
            let (bi, block) = (task / blocks, task % blocks);
            let i0 = block * QUERY_BLOCK;
            let rows = QUERY_BLOCK.min(lq - i0);
            let kv = (bi / heads) * (heads / geo.group) + (bi % heads) / geo.group;
            let qo = line_offset(q, &q_space, bi) + i0 * q.desc.strides[r - 2];
            let oo = line_offset(out, &q_space, bi) + i0 * out.desc.strides[r - 2];
            let (ko, vo) = (line_offset(k, &kv_space, kv), line_offset(v, &kv_space, kv));
            let (s, p) = (&mut logits[..rows * lk], &mut probs[..rows * lk]);
            // SAFETY: each operand is a block of its view's layout (validated shapes and
            // strides): q's rows i0..i0+rows of batch bi, all of k's and v's keys for the
            // batch's key/value head, and the output's rows, which no other task writes and
            // which overlap no input.
            unsafe {
                probabilities_block(
                    [q, k],
                    [qo, ko],
                    Logits {
                        geo,
                        mask,
                        scale,
                        line: bi * lq,
                        i0,
                    },
                    s,
                    p,
                    None,
                )
            };
            // SAFETY: as above; the probabilities are a contiguous rows x lk block.
            unsafe {
                gemm_serial(
                    [rows, dv, lk],
                    (out.ptr::<f32>(oo), st(out, 1), st(out, 2)),
                    (p.as_ptr(), 1, lk as isize),
                    (v.ptr::<f32>(vo), st(v, 1), st(v, 2)),
                )
            };
        }
        Ok(())
    })?;
    Ok(true)
}

/// The kernel of one normalisation or attention op.
pub(crate) fn kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let rank = call.inputs[0].as_ref().map(|t| t.rank()).unwrap_or(0);
    let op = call.op.clone();
    Ok(match op.as_str() {
        "softmax" | "log_softmax" => {
            let axis = attrs.axis("axis", Some(-1), rank)?;
            let log = op == "log_softmax";
            Box::new(move |b: &Bound| {
                let (x, out) = (b.input(0)?, b.out(0));
                if f32_rows([x], out, axis, |[xs], os, len| {
                    vmath::softmax_rows(xs, os, len, log)
                })? {
                    return Ok(());
                }
                let len = x.desc.shape[axis];
                let (xs, os) = (x.desc.strides[axis], out.desc.strides[axis]);
                for_lines(x, [out], axis, |_, xb, [ob]| {
                    let r = row(x, xb, xs, len);
                    let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = r.iter().map(|&v| (v - m).exp()).sum();
                    if log {
                        let ls = sum.ln();
                        write_row(out, ob, os, r.iter().map(|&v| v - m - ls));
                    } else {
                        write_row(out, ob, os, r.iter().map(|&v| (v - m).exp() / sum));
                    }
                    Ok(())
                })
            })
        }
        "softmax_backward" | "log_softmax_backward" => {
            let axis = attrs.axis("axis", Some(-1), rank)?;
            let log = op == "log_softmax_backward";
            Box::new(move |b: &Bound| {
                let (g, y, out) = (b.input(0)?, b.input(1)?, b.out(0));
                if f32_rows([g, y], out, axis, |[gs, ys], os, len| {
                    vmath::softmax_grad_rows(gs, ys, os, len, log)
                })? {
                    return Ok(());
                }
                let len = y.desc.shape[axis];
                // Any dtype and layout: the row's sum in f64, each element rounded once.
                let (gs, ys, os) = (
                    g.desc.strides[axis],
                    y.desc.strides[axis],
                    out.desc.strides[axis],
                );
                for_lines(g, [y, out], axis, |_, gb, [yb, ob]| {
                    let (gr, yr) = (row(g, gb, gs, len), row(y, yb, ys, len));
                    if log {
                        let sum: f64 = gr.iter().sum();
                        let dx = gr.iter().zip(&yr).map(|(&g, &y)| g - y.exp() * sum);
                        write_row(out, ob, os, dx);
                    } else {
                        let sum: f64 = gr.iter().zip(&yr).map(|(&g, &y)| g * y).sum();
                        write_row(
                            out,
                            ob,
                            os,
                            gr.iter().zip(&yr).map(|(&g, &y)| y * (g - sum)),
                        );
                    }
                    Ok(())
                })
            })
        }
        "layer_norm" | "rms_norm" => {
            let rms = op == "rms_norm";
            let eps = eps(&attrs)?;
            let has_w = call.inputs.get(1).is_some_and(|t| t.is_some());
            let has_b = call.inputs.get(2).is_some_and(|t| t.is_some());
            Box::new(move |b: &Bound| {
                let (x, out) = (b.input(0)?, b.out(0));
                let axis = x.desc.rank() - 1;
                let len = x.desc.shape[axis];
                let w = if has_w { Some(b.input(1)?) } else { None };
                let bias = if has_b { Some(b.input(2)?) } else { None };
                // Each given parameter as an f32 slice, or no fused kernel.
                if let (Some(weight), Some(bias)) = (f32_param(w, len), f32_param(bias, len)) {
                    let norm = Norm {
                        rms,
                        weight: weight.as_deref(),
                        bias: bias.as_deref(),
                        eps,
                    };
                    if f32_rows([x], out, axis, |[xs], os, len| {
                        vmath::norm_rows(xs, os, len, norm)
                    })? {
                        return Ok(());
                    }
                }
                let wv = w.map(|w| row(w, w.desc.offset, w.desc.strides[0], len));
                let bv = bias.map(|t| row(t, t.desc.offset, t.desc.strides[0], len));
                let (xs, os) = (x.desc.strides[axis], out.desc.strides[axis]);
                for_lines(x, [out], axis, |_, xb, [ob]| {
                    let r = row(x, xb, xs, len);
                    let n = len as f64;
                    let (mean, denom) = if rms {
                        (0.0, (r.iter().map(|v| v * v).sum::<f64>() / n + eps).sqrt())
                    } else {
                        let mean = r.iter().sum::<f64>() / n;
                        let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                        (mean, (var + eps).sqrt())
                    };
                    write_row(
                        out,
                        ob,
                        os,
                        r.iter().enumerate().map(|(j, &v)| {
                            let y = (v - mean) / denom * wv.as_ref().map_or(1.0, |w| w[j]);
                            y + bv.as_ref().map_or(0.0, |b| b[j])
                        }),
                    );
                    Ok(())
                })
            })
        }
        "rope" => {
            let interleaved = attrs.flag("interleaved", false)?;
            Box::new(move |b: &Bound| {
                let (x, cos, sin, out) = (b.input(0)?, b.input(1)?, b.input(2)?, b.out(0));
                let axis = x.desc.rank() - 1;
                let (seq, d) = (x.desc.shape[axis - 1], x.desc.shape[axis]);
                let half = d / 2;
                let (xs, os) = (x.desc.strides[axis], out.desc.strides[axis]);
                for_lines(x, [out], axis, |line, xb, [ob]| {
                    let s = line % seq.max(1);
                    let r = row(x, xb, xs, d);
                    let c = row(
                        cos,
                        cos.desc.offset + s * cos.desc.strides[0],
                        cos.desc.strides[1],
                        half,
                    );
                    let sn = row(
                        sin,
                        sin.desc.offset + s * sin.desc.strides[0],
                        sin.desc.strides[1],
                        half,
                    );
                    let mut y = vec![0.0; d];
                    for i in 0..half {
                        let (a, bb) = if interleaved {
                            (2 * i, 2 * i + 1)
                        } else {
                            (i, i + half)
                        };
                        y[a] = r[a] * c[i] - r[bb] * sn[i];
                        y[bb] = r[bb] * c[i] + r[a] * sn[i];
                    }
                    write_row(out, ob, os, y.into_iter());
                    Ok(())
                })
            })
        }
        "attention" => {
            let (qd, kd) = (call.inputs[0].as_ref(), call.inputs[1].as_ref());
            let geo = match (qd, kd) {
                (Some(q), Some(k)) => Geometry::of(&attrs, q.desc(), k.desc())?,
                _ => return Err(misrouted(&call.op)),
            };
            let scale = attrs.float_opt("scale")?;
            // The mask's strides over the logits [q's dims but the last..., Lk].
            let mask = match (qd, kd, call.inputs.get(3).and_then(|t| t.as_ref())) {
                (Some(q), Some(k), Some(m)) => {
                    Some(mask_strides("attention", m.desc(), q.desc(), k.desc())?)
                }
                _ => None,
            };
            Box::new(move |b: &Bound| {
                let (q, k, v, out) = (b.input(0)?, b.input(1)?, b.input(2)?, b.out(0));
                let mask = match &mask {
                    Some(ms) => Some((b.input(3)?, ms)),
                    None => None,
                };
                let r = q.desc.rank();
                let (lq, d) = (q.desc.shape[r - 2], q.desc.shape[r - 1]);
                let dv = v.desc.shape[r - 1];
                let scale = scale.unwrap_or(1.0 / (d as f64).sqrt());
                if attention_f32([q, k, v, out], mask, &geo, scale)? {
                    return Ok(());
                }
                // k and v follow their own batch dimensions: q's batch index, with the head
                // index divided by the group (grouped-query heads).
                let mut kv_space = k.desc.shape[..r - 2].to_vec();
                kv_space.extend([1, 1]);
                let heads = if r >= 3 { q.desc.shape[r - 3] } else { 1 };
                for_lines(q, [out], r - 1, |line, qb, [ob]| {
                    let (bi, i) = (line / lq.max(1), line % lq.max(1));
                    let kv = (bi / heads) * (heads / geo.group) + (bi % heads) / geo.group;
                    let kb = line_offset(k, &kv_space, kv);
                    let vb = line_offset(v, &kv_space, kv);
                    let qr = row(q, qb, q.desc.strides[r - 1], d);
                    let keys = geo.keys(i);
                    let mrow = MaskRow::of(mask, &q.desc.shape, line);
                    let scores: Vec<f64> = keys
                        .clone()
                        .map(|j| {
                            let kr =
                                row(k, kb + j * k.desc.strides[r - 2], k.desc.strides[r - 1], d);
                            let logit = geo
                                .cap(scale * qr.iter().zip(&kr).map(|(a, b)| a * b).sum::<f64>());
                            MaskRow::apply(mrow, logit, j)
                        })
                        .collect();
                    let none_seen = scores.iter().all(|&s| s == f64::NEG_INFINITY);
                    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let p: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let total: f64 = p.iter().sum();
                    let mut acc = vec![0.0; dv];
                    for (j, pj) in keys.zip(&p) {
                        let vr = row(v, vb + j * v.desc.strides[r - 2], v.desc.strides[r - 1], dv);
                        for (a, x) in acc.iter_mut().zip(vr) {
                            *a += pj * x;
                        }
                    }
                    write_row(
                        out,
                        ob,
                        out.desc.strides[r - 1],
                        // A row that sees no key (every logit masked to -inf) is 0.
                        acc.into_iter()
                            .map(|a| if none_seen { 0.0 } else { a / total }),
                    );
                    Ok(())
                })
            })
        }
        other => return Err(misrouted(other)),
    })
}
