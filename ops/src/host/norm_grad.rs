//! The normalisation gradients: per group the statistics and the two sums, then dx; per
//! channel the weight and bias gradients; in f64.

use std::sync::Mutex;

use anyaccel_hal::{OpCall, Result};

use super::conv::f32_contiguous;
use super::layout::{par_ranges, walk, TView, GRAIN};
use super::scalar::{f, load, store, vector_f32, Val};
use super::vmath;
use super::{Body, Bound};
use crate::attrs::Attrs;
use crate::norm_grad::{NormBack, NormKind};

/// Groups of at most this many elements are read into buffers once.
const BUFFERED: usize = 1 << 16;

/// Rows per block of the weight and bias gradients of layer_norm and rms_norm.
const ROW_BLOCK: usize = 64;

/// A tensor of x's shape as [A, C, S]: the offsets of its rows and spatial positions, and the
/// stride of its channels.
struct Acs {
    rows: Vec<usize>,
    spatial: Vec<usize>,
    c: usize,
}

impl Acs {
    fn of(g: &NormBack, t: &TView) -> Acs {
        let (shape, st) = (&t.desc.shape, &t.desc.strides);
        let r = shape.len();
        let offsets = |dims: std::ops::Range<usize>, base: usize| {
            let n: usize = shape[dims.clone()].iter().product();
            let mut v = Vec::with_capacity(n);
            walk(&shape[dims.clone()], [&st[dims]], [base], 0..n, |_, [o]| {
                v.push(o)
            });
            v
        };
        if matches!(g.kind, NormKind::Layer | NormKind::Rms) {
            Acs {
                rows: offsets(0..r - 1, t.desc.offset),
                spatial: vec![0],
                c: st[r - 1],
            }
        } else {
            Acs {
                rows: (0..g.a).map(|a| t.desc.offset + a * st[0]).collect(),
                spatial: offsets(2..r, 0),
                c: st[1],
            }
        }
    }

    fn at(&self, a: usize, c: usize, s: usize) -> usize {
        self.rows[a] + c * self.c + self.spatial[s]
    }
}

/// layer_norm_backward and rms_norm_backward over f32 rows of stride 1: per block of
/// [`ROW_BLOCK`] rows, each row's statistics, sums and dx by the vector row kernel, which adds
/// the rows' weight and bias gradient terms into the block's f32 sums; the blocks' sums added
/// in f64, in order.
fn rows_f32(
    g: &NormBack,
    [dy, x, dx]: [&TView; 3],
    [ya, xa, da]: [&Acs; 3],
    w: Option<&TView>,
    (dw, db): (&TView, Option<&TView>),
) -> Result<()> {
    let c = g.c;
    let rms = g.kind == NormKind::Rms;
    let weights = w.map(vector_f32);
    let blocks = g.a.div_ceil(ROW_BLOCK);
    let parts = Mutex::new(vec![Vec::new(); blocks]);
    par_ranges(blocks, 1, |r| {
        let (mut pw, mut pb) = (vec![0f32; c], vec![0f32; c]);
        for blk in r {
            pw.fill(0.0);
            pb.fill(0.0);
            let (a0, a1) = (blk * ROW_BLOCK, ((blk + 1) * ROW_BLOCK).min(g.a));
            // The block's rows as one run of each tensor where they follow each other, else
            // a row at a time.
            let packed = |t: &Acs| t.rows[a0..a1].windows(2).all(|p| p[1] == p[0] + c);
            let per = if packed(xa) && packed(ya) && packed(da) {
                a1 - a0
            } else {
                1
            };
            for a in (a0..a1).step_by(per) {
                let m = per.min(a1 - a) * c;
                // SAFETY: rows a.. hold C elements of stride 1 in each tensor (x's shape, which
                // grad and dx share, validated against their buffers), the next row right
                // after where `per` > 1; dx is written by the task of its rows only.
                let (xr, yr, dr) = unsafe {
                    (
                        x.run(xa.rows[a], m),
                        dy.run(ya.rows[a], m),
                        dx.run_mut(da.rows[a], m),
                    )
                };
                let p = vmath::NormGrad {
                    w: weights.as_deref(),
                    len: c,
                    rms,
                    eps: g.eps,
                };
                vmath::norm_grad_rows(xr, yr, dr, &mut pw, &mut pb, p);
            }
            let part: Vec<[f64; 2]> = pw
                .iter()
                .zip(&pb)
                .map(|(&w, &b)| [f64::from(w), f64::from(b)])
                .collect();
            parts.lock().unwrap_or_else(|e| e.into_inner())[blk] = part;
        }
        Ok(())
    })?;
    store_sums(
        &parts.into_inner().unwrap_or_else(|e| e.into_inner()),
        c,
        (dw, db),
    );
    Ok(())
}

/// Stores the weight and bias gradients of `c` channels: the blocks' f64 sums (weight, bias)
/// added in block order.
fn store_sums(parts: &[Vec<[f64; 2]>], c: usize, (dw, db): (&TView, Option<&TView>)) {
    for ch in 0..c {
        let (sw, sb) = parts
            .iter()
            .fold((0.0, 0.0), |(w, b), p| (w + p[ch][0], b + p[ch][1]));
        // SAFETY: ch < C, the outputs' one dimension.
        unsafe {
            store(dw, dw.desc.offset + ch * dw.desc.strides[0], Val::F(sw));
            if let Some(db) = db {
                store(db, db.desc.offset + ch * db.desc.strides[0], Val::F(sb));
            }
        }
    }
}

/// Samples per block of [`groups_f32`]'s weight and bias sums.
const SAMPLE_BLOCK: usize = 2;

/// group_norm_backward over contiguous f32 grad, x and dx: each group (`C / G` channels of one
/// sample, contiguous) by the vector kernel [`vmath::group_grad`], which adds its channels'
/// weight and bias terms (f64) into its block's sums (blocks of [`SAMPLE_BLOCK`] samples); the
/// blocks added in order. `false` (nothing run) for other dtypes and layouts.
fn groups_f32(
    g: &NormBack,
    [dy, x, dx]: [&TView; 3],
    w: Option<&TView>,
    (dw, db): (&TView, &TView),
) -> Result<bool> {
    let len = g.cg * g.s;
    if ![dy, x, dx].iter().all(|t| f32_contiguous(t)) || len == 0 || g.a == 0 {
        return Ok(false);
    }
    let plane = g.c * g.s;
    let weights = w.map(vector_f32);
    let blocks = g.a.div_ceil(SAMPLE_BLOCK);
    let parts = Mutex::new(vec![Vec::new(); blocks]);
    par_ranges(blocks, 1, |r| {
        for blk in r {
            let mut part = vec![[0f64; 2]; g.c];
            for n in blk * SAMPLE_BLOCK..((blk + 1) * SAMPLE_BLOCK).min(g.a) {
                for grp in 0..g.per_sample {
                    let at = n * plane + grp * len;
                    // SAFETY: group grp of sample n is the `len` elements from `at` of each
                    // contiguous tensor of x's shape; dx's are written by this task alone.
                    let (xr, yr, dr) = unsafe {
                        (
                            x.run(x.desc.offset + at, len),
                            dy.run(dy.desc.offset + at, len),
                            dx.run_mut(dx.desc.offset + at, len),
                        )
                    };
                    let channels = grp * g.cg..(grp + 1) * g.cg;
                    let p = vmath::GroupGrad {
                        w: weights.as_deref().map(|w| &w[channels.clone()]),
                        s: g.s,
                        eps: g.eps,
                    };
                    vmath::group_grad(xr, yr, dr, p, &mut part[channels]);
                }
            }
            parts.lock().unwrap_or_else(|e| e.into_inner())[blk] = part;
        }
        Ok(())
    })?;
    let parts = parts.into_inner().unwrap_or_else(|e| e.into_inner());
    store_sums(&parts, g.c, (dw, Some(db)));
    Ok(true)
}

/// batch_norm_backward over contiguous f32 grad, x and dx: per channel, `sum dy` and
/// `sum dy (x - mean)` in f64 lanes plane by plane (planes in order), which give the bias and
/// weight gradients and dx's two mean terms; then each element of dx in f64, rounded once.
/// `false` (nothing run) for other dtypes and layouts.
fn channels_f32(
    g: &NormBack,
    [dy, x, dx]: [&TView; 3],
    [mean, invstd]: [&TView; 2],
    w: Option<&TView>,
    (dw, db): (&TView, &TView),
) -> Result<bool> {
    let NormKind::Batch { training } = g.kind else {
        return Ok(false);
    };
    let (s, plane) = (g.s, g.c * g.s);
    if ![dy, x, dx].iter().all(|t| f32_contiguous(t)) || g.a * g.s == 0 {
        return Ok(false);
    }
    let n = (g.a * g.s) as f64;
    let chan = |t: &TView, c: usize| {
        // SAFETY: c < C, the single dimension of the [C] inputs.
        f(unsafe { load(t, t.desc.offset + c * t.desc.strides[0]) })
    };
    let sums = Mutex::new(vec![[0f64; 2]; g.c]);
    par_ranges(g.c, (GRAIN / (g.a * g.s)).max(1), |r| {
        let mut local = Vec::with_capacity(r.len());
        for c in r.clone() {
            let at = |t: &TView, i: usize| t.desc.offset + i * plane + c * s;
            // SAFETY: channel c of sample i is the `s` elements from `at` of a contiguous
            // tensor of x's shape ([N, C, *]); dx's are written by this task alone.
            let (xs, ys) = (
                |i| unsafe { x.run::<f32>(at(x, i), s) },
                |i| unsafe { dy.run::<f32>(at(dy, i), s) },
            );
            let (m, r) = (chan(mean, c), chan(invstd, c));
            let wc = w.map_or(1.0, |t| chan(t, c));
            let sa: f64 = (0..g.a).map(|i| vmath::sum_by(ys(i), f64::from)).sum();
            let sb: f64 = (0..g.a)
                .map(|i| vmath::sum_zip(ys(i), xs(i), |y, v| f64::from(y) * (f64::from(v) - m)))
                .sum();
            // dx = r (dy w - A - (x - mean) r B), A = mean(dy w) and B = mean(dy w xhat)
            // where the statistics depend on x.
            // (Inference: dx = r dy w, whatever x holds.)
            let (k0, k1, k2) = (-r * wc * sa / n, r * wc, -r * r * wc * sb * r / n);
            for i in 0..g.a {
                // SAFETY: as above.
                let ds = unsafe { dx.run_mut(at(dx, i), s) };
                if training {
                    let d =
                        |y: f32, v: f32| (k1 * f64::from(y) + k2 * (f64::from(v) - m) + k0) as f32;
                    vmath::map2(ys(i), xs(i), ds, &d);
                } else {
                    vmath::map(ys(i), ds, &|y: f32| (k1 * f64::from(y)) as f32);
                }
            }
            local.push([sb * r, sa]);
        }
        sums.lock().unwrap_or_else(|e| e.into_inner())[r].copy_from_slice(&local);
        Ok(())
    })?;
    let sums = sums.into_inner().unwrap_or_else(|e| e.into_inner());
    store_sums(&[sums], g.c, (dw, Some(db)));
    Ok(true)
}

/// The kernel of one normalisation gradient.
pub(crate) fn kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let desc = |i: usize| super::input_desc(call, i);
    let missing = || anyaccel_hal::Error::internal("norm gradient: input missing");
    let batch = call.op == "batch_norm_backward";
    let w_at = if batch { 4 } else { 2 };
    let stats = if batch {
        [desc(2), desc(3)]
    } else {
        [None, None]
    };
    let g = NormBack::of(
        &call.op,
        &attrs,
        desc(0).ok_or_else(missing)?,
        desc(1).ok_or_else(missing)?,
        desc(w_at),
        stats,
    )?;
    let has_w = desc(w_at).is_some();
    Ok(Box::new(move |b: &Bound| {
        let (dy, x, dx) = (b.input(0)?, b.input(1)?, b.out(0));
        let w = if has_w { Some(b.input(w_at)?) } else { None };
        let vec_at = |t: &TView, c: usize| {
            // SAFETY: c < C, the vector's one dimension.
            f(unsafe { load(t, t.desc.offset + c * t.desc.strides[0]) })
        };
        let weight = |c: usize| w.map_or(1.0, |t| vec_at(t, c));
        let (ya, xa, da) = (Acs::of(&g, dy), Acs::of(&g, x), Acs::of(&g, dx));
        if matches!(g.kind, NormKind::Layer | NormKind::Rms)
            && x.desc.dtype == anyaccel_hal::DType::F32
            && xa.c == 1
            && ya.c == 1
            && da.c == 1
        {
            let db = (g.kind != NormKind::Rms).then(|| b.out(2));
            return rows_f32(&g, [dy, x, dx], [&ya, &xa, &da], w, (b.out(1), db));
        }
        if g.kind == NormKind::Group && groups_f32(&g, [dy, x, dx], w, (b.out(1), b.out(2)))? {
            return Ok(());
        }
        if batch
            && channels_f32(
                &g,
                [dy, x, dx],
                [b.input(2)?, b.input(3)?],
                w,
                (b.out(1), b.out(2)),
            )?
        {
            return Ok(());
        }
        // SAFETY (loads and stores below): (a, c, s) lies inside x's shape, which grad and dx
        // share; their layouts were validated against their buffers.
        let xv = |a: usize, c: usize, s: usize| f(unsafe { load(x, xa.at(a, c, s)) });
        let yv = |a: usize, c: usize, s: usize| f(unsafe { load(dy, ya.at(a, c, s)) });
        let groups = g.groups();
        let stats = Mutex::new(vec![(0.0f64, 0.0f64); groups]);
        let given = if batch {
            Some((b.input(2)?, b.input(3)?))
        } else {
            None
        };
        let len_of = |bx: [usize; 4]| bx[1] * bx[3] * g.s;
        par_ranges(
            groups,
            (1 << 14) / (g.a * g.c * g.s / groups.max(1)).max(1) + 1,
            |r| {
                let mut local = Vec::with_capacity(r.len());
                // A group's x, dy w and dx offsets, read once when it is short.
                let (mut xb, mut yb, mut ob) = (Vec::new(), Vec::new(), Vec::new());
                for grp in r.clone() {
                    let bx = g.group_box(grp);
                    let len = len_of(bx);
                    let each = |f: &mut dyn FnMut(usize, usize, usize)| {
                        for a in bx[0]..bx[0] + bx[1] {
                            for c in bx[2]..bx[2] + bx[3] {
                                for s in 0..g.s {
                                    f(a, c, s);
                                }
                            }
                        }
                    };
                    let n = len as f64;
                    let depends = !matches!(g.kind, NormKind::Batch { training: false });
                    if len <= BUFFERED {
                        xb.clear();
                        yb.clear();
                        ob.clear();
                        each(&mut |a, c, s| {
                            xb.push(xv(a, c, s));
                            yb.push(yv(a, c, s) * weight(c));
                            ob.push(da.at(a, c, s));
                        });
                        let (mean, rinv) = match (g.kind, given) {
                            (NormKind::Batch { .. }, Some((m, i))) => {
                                (vec_at(m, grp), vec_at(i, grp))
                            }
                            (NormKind::Rms, _) => {
                                let q: f64 = xb.iter().map(|v| v * v).sum();
                                (0.0, 1.0 / (q / n + g.eps).sqrt())
                            }
                            _ => {
                                let mean = xb.iter().sum::<f64>() / n;
                                let q: f64 = xb.iter().map(|v| (v - mean) * (v - mean)).sum();
                                (mean, 1.0 / (q / n + g.eps).sqrt())
                            }
                        };
                        let (mut ma, mut mb) = (0.0, 0.0);
                        if depends {
                            for (x, d) in xb.iter().zip(&yb) {
                                ma += d;
                                mb += d * (x - mean) * rinv;
                            }
                            (ma, mb) = (ma / n, mb / n);
                            if g.kind == NormKind::Rms {
                                ma = 0.0;
                            }
                        }
                        for ((x, d), &o) in xb.iter().zip(&yb).zip(&ob) {
                            let v = if depends {
                                rinv * (d - ma - (x - mean) * rinv * mb)
                            } else {
                                rinv * d
                            };
                            // SAFETY: o is an element's offset in dx.
                            unsafe { store(dx, o, Val::F(v)) };
                        }
                        local.push((mean, rinv));
                        continue;
                    }
                    let (mean, rinv) = match (g.kind, given) {
                        (NormKind::Batch { .. }, Some((m, i))) => (vec_at(m, grp), vec_at(i, grp)),
                        (NormKind::Rms, _) => {
                            let mut q = 0.0;
                            each(&mut |a, c, s| q += xv(a, c, s) * xv(a, c, s));
                            (0.0, 1.0 / (q / n + g.eps).sqrt())
                        }
                        _ => {
                            let mut sum = 0.0;
                            each(&mut |a, c, s| sum += xv(a, c, s));
                            let mean = sum / n;
                            let mut q = 0.0;
                            each(&mut |a, c, s| q += (xv(a, c, s) - mean).powi(2));
                            (mean, 1.0 / (q / n + g.eps).sqrt())
                        }
                    };
                    // dx = r (dxhat - A - xhat B), the mean terms only where the statistics
                    // depend on x.
                    let (mut sa, mut sb) = (0.0, 0.0);
                    if depends {
                        each(&mut |a, c, s| {
                            let d = yv(a, c, s) * weight(c);
                            sa += d;
                            sb += d * (xv(a, c, s) - mean) * rinv;
                        });
                    }
                    let (ma, mb) = if g.kind == NormKind::Rms {
                        (0.0, sb / n)
                    } else {
                        (sa / n, sb / n)
                    };
                    each(&mut |a, c, s| {
                        let d = yv(a, c, s) * weight(c);
                        let v = if depends {
                            rinv * (d - ma - (xv(a, c, s) - mean) * rinv * mb)
                        } else {
                            rinv * d
                        };
                        // SAFETY: as above.
                        unsafe { store(dx, da.at(a, c, s), Val::F(v)) };
                    });
                    local.push((mean, rinv));
                }
                stats.lock().unwrap_or_else(|e| e.into_inner())[r].copy_from_slice(&local);
                Ok(())
            },
        )?;
        let stats = stats.into_inner().unwrap_or_else(|e| e.into_inner());
        let dw = b.out(1);
        let db = if g.kind == NormKind::Rms {
            None
        } else {
            Some(b.out(2))
        };
        let put = |c: usize, sw: f64, sb: f64| {
            // SAFETY: c < C, the outputs' one dimension.
            unsafe {
                store(dw, dw.desc.offset + c * dw.desc.strides[0], Val::F(sw));
                if let Some(db) = db {
                    store(db, db.desc.offset + c * db.desc.strides[0], Val::F(sb));
                }
            }
        };
        if matches!(g.kind, NormKind::Layer | NormKind::Rms) {
            // Rows in blocks of ROW_BLOCK, each block's partial sums over its rows (walked
            // along them, not down the columns), then the blocks added in order: the same
            // result whatever the thread count.
            let blocks = g.a.div_ceil(ROW_BLOCK);
            let parts = Mutex::new(vec![Vec::new(); blocks]);
            par_ranges(blocks, 1, |r| {
                for blk in r {
                    let mut part = vec![[0.0f64; 2]; g.c];
                    let rows = blk * ROW_BLOCK..((blk + 1) * ROW_BLOCK).min(g.a);
                    for (a, &(mean, rinv)) in rows.clone().zip(&stats[rows]) {
                        for (c, p) in part.iter_mut().enumerate() {
                            let y = yv(a, c, 0);
                            p[0] += y * (xv(a, c, 0) - mean) * rinv;
                            p[1] += y;
                        }
                    }
                    parts.lock().unwrap_or_else(|e| e.into_inner())[blk] = part;
                }
                Ok(())
            })?;
            let parts = parts.into_inner().unwrap_or_else(|e| e.into_inner());
            store_sums(&parts, g.c, (dw, db));
            return Ok(());
        }
        par_ranges(g.c, (1 << 14) / (g.a * g.s).max(1) + 1, |r| {
            for c in r {
                let (mut sw, mut sb) = (0.0, 0.0);
                for a in 0..g.a {
                    let (mean, rinv) = stats[g.group_of(a, c)];
                    for s in 0..g.s {
                        let y = yv(a, c, s);
                        sw += y * (xv(a, c, s) - mean) * rinv;
                        sb += y;
                    }
                }
                put(c, sw, sb);
            }
            Ok(())
        })
    }))
}
