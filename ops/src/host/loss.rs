//! `cross_entropy` and `cross_entropy_backward`: one row of C logits per position, in f64.

use std::sync::Mutex;

use anyaccel_hal::{OpCall, Result};

use super::layout::{par_ranges, walk, TView};
use super::scalar::{f, load, store, Val};
use super::{Body, Bound};
use crate::attrs::Attrs;
use crate::loss::{CeGeom, Reduction};

fn int(v: Val) -> i64 {
    match v {
        Val::I(i) => i,
        Val::F(x) => x as i64,
    }
}

/// The max, log-sum-exp and sum of a row of `classes` logits from offset `at`, `stride` apart.
fn row_stats(x: &TView, at: usize, stride: usize, classes: usize) -> (f64, f64, f64) {
    // SAFETY (all loads): c < C, the class axis of logits, whose layout was validated.
    let v = |c: usize| f(unsafe { load(x, at + c * stride) });
    let mut m = f64::NEG_INFINITY;
    for c in 0..classes {
        let x = v(c);
        if x.is_nan() || x > m {
            m = x;
            if x.is_nan() {
                break;
            }
        }
    }
    let (mut s, mut sum) = (0.0, 0.0);
    for c in 0..classes {
        let x = v(c);
        s += (x - m).exp();
        sum += x;
    }
    (m, m + s.ln(), sum)
}

/// The kernel of one `cross_entropy` or `cross_entropy_backward` call.
pub(crate) fn kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let desc = |i: usize| {
        super::input_desc(call, i)
            .ok_or_else(|| anyaccel_hal::Error::internal("cross_entropy: input missing"))
    };
    let backward = call.op == "cross_entropy_backward";
    let first = backward as usize;
    let g = CeGeom::of(
        &call.op,
        &attrs,
        desc(first)?,
        desc(first + 1)?,
        if backward { Some(desc(0)?) } else { None },
    )?;
    let op = call.op.clone();
    Ok(Box::new(move |b: &Bound| {
        let (x, t) = (b.input(first)?, b.input(first + 1)?);
        let out = b.out(0);
        let xs = CeGeom::position_strides(&x.desc);
        let cs = x.desc.strides[1];
        let classes = g.classes;
        let eps = g.smoothing;
        let ignored = |v: i64| v == g.ignore_index;
        let bad = Mutex::new(None::<(usize, i64)>);
        let note_bad = |i: usize, v: i64| {
            let mut b = bad.lock().unwrap_or_else(|e| e.into_inner());
            if b.is_none_or(|(j, _)| i < j) {
                *b = Some((i, v));
            }
        };
        let target = |i: usize, at: usize| -> Option<i64> {
            // SAFETY: at is position i's offset in target, validated against its buffer.
            let v = int(unsafe { load(t, at) });
            if ignored(v) {
                return None;
            }
            if v < 0 || v as u64 >= classes as u64 {
                note_bad(i, v);
                return None;
            }
            Some(v)
        };
        if !backward {
            // Per position: the loss and whether it counts.
            let losses = Mutex::new(vec![(0.0f64, false); g.positions]);
            par_ranges(g.positions, (1 << 12) / classes.max(1) + 1, |r| {
                let mut local = Vec::with_capacity(r.len());
                walk(
                    &g.shape,
                    [&xs, &t.desc.strides],
                    [x.desc.offset, t.desc.offset],
                    r.clone(),
                    |i, [xo, to]| {
                        let Some(c) = target(i, to) else {
                            local.push((0.0, false));
                            return;
                        };
                        let (_, lse, sum) = row_stats(x, xo, cs, classes);
                        // SAFETY: c < C.
                        let xt = f(unsafe { load(x, xo + c as usize * cs) });
                        let mut loss = lse - xt;
                        if eps > 0.0 {
                            // A term of weight 0 is left out (0 x Inf would be NaN).
                            let nll = if eps < 1.0 { (1.0 - eps) * loss } else { 0.0 };
                            loss = nll + eps * (lse - sum / classes as f64);
                        }
                        local.push((loss, true));
                    },
                );
                let mut all = losses.lock().unwrap_or_else(|e| e.into_inner());
                all[r].copy_from_slice(&local);
                Ok(())
            })?;
            if let Some((_, v)) = *bad.lock().unwrap_or_else(|e| e.into_inner()) {
                return Err(g.bad_target(&op, v));
            }
            let losses = losses.into_inner().unwrap_or_else(|e| e.into_inner());
            match g.reduction {
                Reduction::None => {
                    let mut k = 0;
                    walk(
                        &g.shape,
                        [&out.desc.strides],
                        [out.desc.offset],
                        0..g.positions,
                        |_, [o]| {
                            // SAFETY: o is a position of the loss's layout.
                            unsafe { store(out, o, Val::F(losses[k].0)) };
                            k += 1;
                        },
                    );
                }
                r => {
                    let sum: f64 = losses.iter().map(|l| l.0).sum();
                    let count = losses.iter().filter(|l| l.1).count();
                    let v = if r == Reduction::Mean {
                        sum / count as f64
                    } else {
                        sum
                    };
                    // SAFETY: the scalar loss's one element.
                    unsafe { store(out, out.desc.offset, Val::F(v)) };
                }
            }
            return Ok(());
        }
        // The gradient: grad's factor per position.
        let gr = b.input(0)?;
        let count = if g.reduction == Reduction::Mean {
            let mut n = 0usize;
            walk(
                &g.shape,
                [&t.desc.strides],
                [t.desc.offset],
                0..g.positions,
                |i, [to]| n += target(i, to).is_some() as usize,
            );
            n as f64
        } else {
            1.0
        };
        if let Some((_, v)) = *bad.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(g.bad_target(&op, v));
        }
        let os = CeGeom::position_strides(&out.desc);
        let ocs = out.desc.strides[1];
        let gs = if g.reduction == Reduction::None {
            gr.desc.strides.clone()
        } else {
            vec![0; g.shape.len()]
        };
        // f32 logits and dlogits whose classes have stride 1: slices, and one exp per element.
        let dense = x.desc.dtype == anyaccel_hal::DType::F32
            && out.desc.dtype == anyaccel_hal::DType::F32
            && (cs == 1 || classes <= 1)
            && (ocs == 1 || classes <= 1);
        par_ranges(g.positions, (1 << 12) / classes.max(1) + 1, |r| {
            let mut e = vec![0f64; if dense { classes } else { 0 }];
            walk(
                &g.shape,
                [&xs, &t.desc.strides, &os, &gs],
                [
                    x.desc.offset,
                    t.desc.offset,
                    out.desc.offset,
                    gr.desc.offset,
                ],
                r,
                |i, [xo, to, oo, go]| {
                    let tc = target(i, to);
                    // SAFETY: go is position i's offset in grad (or its one element).
                    let gi = f(unsafe { load(gr, go) }) / count;
                    if dense {
                        // SAFETY: position i's C logits and dlogits lie at xo and oo with
                        // stride 1 (validated layouts); the row is this task's only.
                        let (xr, dr) = unsafe {
                            (
                                std::slice::from_raw_parts(x.ptr::<f32>(xo), classes),
                                std::slice::from_raw_parts_mut(out.ptr::<f32>(oo), classes),
                            )
                        };
                        let Some(tc) = tc else {
                            dr.fill(0.0);
                            return;
                        };
                        // The maximum, or the first NaN.
                        let mut m = f64::NEG_INFINITY;
                        for &v in xr {
                            let v = v as f64;
                            if v.is_nan() {
                                m = v;
                                break;
                            }
                            m = m.max(v);
                        }
                        let mut sum = 0.0;
                        for (ec, &v) in e.iter_mut().zip(xr) {
                            *ec = (v as f64 - m).exp();
                            sum += *ec;
                        }
                        let base = eps / classes as f64;
                        for (c, (d, &ec)) in dr.iter_mut().zip(&e).enumerate() {
                            let hit = if c as i64 == tc { 1.0 - eps } else { 0.0 };
                            *d = (gi * (ec / sum - hit - base)) as f32;
                        }
                        return;
                    }
                    let (m, lse, _) = row_stats(x, xo, cs, classes);
                    let _ = m;
                    for c in 0..classes {
                        let d = match tc {
                            None => 0.0,
                            Some(tc) => {
                                // SAFETY: c < C.
                                let p = (f(unsafe { load(x, xo + c * cs) }) - lse).exp();
                                let hit = if c as i64 == tc { 1.0 - eps } else { 0.0 };
                                gi * (p - hit - eps / classes as f64)
                            }
                        };
                        // SAFETY: (position i, class c) lies inside dlogits.
                        unsafe { store(out, oo + c * ocs, Val::F(d)) };
                    }
                },
            );
            Ok(())
        })?;
        if let Some((_, v)) = *bad.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(g.bad_target(&op, v));
        }
        Ok(())
    }))
}
