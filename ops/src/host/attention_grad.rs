//! `attention_backward` on the host, in f64: per key batch (in parallel), the rows of every
//! query head of its group; dq per row, dk and dv summed over the group's rows.

use anyaccel_hal::{Error, OpCall, Result, TensorDesc};

use super::layout::{par_ranges, TView};
use super::scalar::{load, store, Val};
use super::{Body, Bound};
use crate::attention::{mask_strides, validate, Geometry};
use crate::attrs::Attrs;

fn f(v: Val) -> f64 {
    match v {
        Val::F(x) => x,
        Val::I(i) => i as f64,
    }
}

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
