//! `conv1d`, `conv2d` and the pools: one output element at a time, accumulating in f64; the
//! f32 forward convolution as a matrix product per image and group (im2col and `gemm`).

use std::ops::Range;

use anyaccel_hal::{DType, OpCall, Result};
use gemm::{gemm, Parallelism};

use super::direct_conv;
use super::layout::{par_ranges, threads, TView, GRAIN};
use super::scalar::{f, load, store, vector_f32, with_float, F64Store, IntStore, Val};
use super::vmath;
use super::{Body, Bound};
use crate::attrs::Attrs;
use crate::conv::{
    BatchGeom, ConvGeom, ConvPass, GroupGeom, PoolBack, PoolGeom, Resample, ResampleGeom,
};

/// Output element (n, oc, oy, ox) of the forward convolution by the contract's sum in f64, the
/// padding taps skipped (without the bias).
fn forward_at(g: &ConvGeom, a: &TView, w: &TView, [n, oc, oy, ox]: [usize; 4]) -> f64 {
    let (as_, ws) = (g.strides4(&a.desc.strides), g.strides4(&w.desc.strides));
    let (cg, og) = (g.cg(), g.og());
    let [kh, kw] = g.kernel;
    let [ih, iw] = g.input;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let [dh, dw] = g.dilation;
    let grp = oc / og;
    let mut acc = 0.0;
    for ci in 0..cg {
        let xb = a.desc.offset + n * as_[0] + (grp * cg + ci) * as_[1];
        let wb = w.desc.offset + oc * ws[0] + ci * ws[1];
        for ky in 0..kh {
            let iy = (oy * sh + ky * dh).wrapping_sub(ph);
            if iy >= ih {
                continue;
            }
            for kx in 0..kw {
                let ix = (ox * sw + kx * dw).wrapping_sub(pw);
                if ix >= iw {
                    continue;
                }
                // SAFETY: n, c, iy, ix and oc, ci, ky, kx lie inside x's and w's shapes,
                // whose layouts were validated against their buffers.
                let (xv, wv) = unsafe {
                    (
                        load(a, xb + iy * as_[2] + ix * as_[3]),
                        load(w, wb + ky * ws[2] + kx * ws[3]),
                    )
                };
                acc += f(xv) * f(wv);
            }
        }
    }
    acc
}

/// im2col of one image and group: row `k = (ci, ky, kx)` of `col` (rows of `pt` columns) takes
/// the input's taps for the output positions `ps` (row-major over (oy, ox)), zeros in the padding.
/// `xb` is the element index of the group's first input channel in image n; `xs` are the input's
/// strides.
fn im2col(
    g: &ConvGeom,
    a: &TView,
    xs: [usize; 4],
    xb: usize,
    col: &mut [f32],
    pt: usize,
    ps: std::ops::Range<usize>,
) {
    let [kh, kw] = g.kernel;
    let [_, ow] = g.out;
    let [ih, iw] = g.input;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let [dh, dw] = g.dilation;
    let (p0, p1) = (ps.start, ps.end);
    for (k, row) in col.chunks_exact_mut(pt).take(g.cg() * kh * kw).enumerate() {
        let (ci, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
        let cb = xb + ci * xs[1];
        // The columns ox whose tap ix = ox sw + kx dw - pw lies in 0..iw.
        let lo = (pw.saturating_sub(kx * dw)).div_ceil(sw).min(ow);
        let hi = if iw + pw > kx * dw {
            (iw + pw - kx * dw).div_ceil(sw).min(ow)
        } else {
            0
        }
        .max(lo);
        let mut p = p0;
        while p < p1 {
            let (oy, ox0) = (p / ow, p % ow);
            let ox1 = (ox0 + (p1 - p)).min(ow);
            let seg = &mut row[p - p0..p - p0 + (ox1 - ox0)];
            let iy = (oy * sh + ky * dh).wrapping_sub(ph);
            if iy >= ih {
                seg.fill(0.0);
            } else {
                let rb = cb + iy * xs[2];
                let (a0, a1) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
                seg[..a0 - ox0].fill(0.0);
                seg[a1 - ox0..].fill(0.0);
                if sw == 1 && xs[3] == 1 && a1 > a0 {
                    let ix0 = a0 + kx * dw - pw;
                    // SAFETY: the taps ix0 .. ix0 + (a1 - a0) lie in row iy of x.
                    let src = unsafe { a.run::<f32>(rb + ix0, a1 - a0) };
                    seg[a0 - ox0..a1 - ox0].copy_from_slice(src);
                } else {
                    for ox in a0..a1 {
                        let ix = ox * sw + kx * dw - pw;
                        // SAFETY: (n, c, iy, ix) lies inside x's shape.
                        seg[ox - ox0] = unsafe { a.get::<f32>(rb + ix * xs[3]) };
                    }
                }
            }
            p += ox1 - ox0;
        }
    }
}

/// The f32 forward convolution per image and group as `out[o, p] = sum_K w[o, K] col[K, p]`
/// with `col` the input's taps (im2col: K = (ci, ky, kx), p = (oy, ox); zeros in the padding),
/// multiplied by the `gemm` crate in f32. A 1x1 convolution with stride 1 and no padding over
/// planes of stride 1 reads the input in place.
fn forward_gemm(
    g: &ConvGeom,
    a: &TView,
    w: &TView,
    out: &TView,
    bias_at: Option<&(dyn Fn(usize) -> f64 + Sync)>,
) -> Result<()> {
    let (as_, ws, os) = (
        g.strides4(&a.desc.strides),
        g.strides4(&w.desc.strides),
        g.strides4(&out.desc.strides),
    );
    let (cg, og) = (g.cg(), g.og());
    let [kh, kw] = g.kernel;
    let [oh, ow] = g.out;
    let iw = g.input[1];
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let (kk, pp) = (cg * kh * kw, oh * ow);
    let in_place = kh == 1
        && kw == 1
        && sh == 1
        && sw == 1
        && ph == 0
        && pw == 0
        && (oh == 1 || as_[2] == iw * as_[3]);
    let flat_out = ow == 1 || os[2] == ow * os[3];
    // The weights of a group as a [og, K] block: in place when K has one stride.
    let w_flat = kh * kw == 1 || (ws[3] * kw == ws[2] && ws[2] * kh == ws[1]);
    let wbuf: Vec<f32> = if w_flat {
        Vec::new()
    } else {
        let mut v = vec![0f32; g.o * kk];
        for oc in 0..g.o {
            for k in 0..kk {
                let (ci, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
                // SAFETY: (oc, ci, ky, kx) lies inside the weight's shape.
                v[oc * kk + k] = unsafe {
                    w.get::<f32>(w.desc.offset + oc * ws[0] + ci * ws[1] + ky * ws[2] + kx * ws[3])
                };
            }
        }
        v
    };
    // One output element by the contract's sum in f64 (padding taps skipped), with its bias.
    let exact = |n: usize, oc: usize, oy: usize, ox: usize| -> f64 {
        bias_at.map_or(0.0, |b| b(oc)) + forward_at(g, a, w, [n, oc, oy, ox])
    };
    let jobs = g.n * g.groups;
    // Images (and groups) in parallel, each product on one thread; one job: the product in
    // parallel.
    let par = if jobs == 1 && og * pp * kk >= 48 * 48 * 48 && threads() > 1 {
        Parallelism::Rayon(threads())
    } else {
        Parallelism::None
    };
    // Columns of col per product: a [K, PT] tile of about 512 KiB stays in the cache between
    // im2col and the product.
    let pt = if in_place {
        pp
    } else {
        ((1usize << 17) / kk.max(1))
            .clamp(64, pp.max(64))
            .div_ceil(16)
            * 16
    };
    par_ranges(jobs, 1, |range| {
        let mut col = vec![0f32; if in_place { 0 } else { kk * pt }];
        let mut tmp = vec![0f32; if flat_out { 0 } else { og * pp }];
        for job in range {
            let (n, grp) = (job / g.groups, job % g.groups);
            let xb = a.desc.offset + n * as_[0] + grp * cg * as_[1];
            let ob = out.desc.offset + n * os[0] + grp * og * os[1];
            for p0 in (0..pp).step_by(pt) {
                let p1 = (p0 + pt).min(pp);
                let width = p1 - p0;
                if !in_place {
                    im2col(g, a, as_, xb, &mut col, pt, p0..p1);
                }
                let (w_ptr, w_rs, w_cs) = if w_flat {
                    (
                        w.ptr::<f32>(w.desc.offset + grp * og * ws[0]) as *const f32,
                        ws[0],
                        if kh * kw == 1 { ws[1] } else { ws[3] },
                    )
                } else {
                    (wbuf[grp * og * kk..].as_ptr(), kk, 1)
                };
                let (c_ptr, c_rs, c_cs) = if in_place {
                    (a.ptr::<f32>(xb + p0 * as_[3]) as *const f32, as_[1], as_[3])
                } else {
                    (col.as_ptr(), pt, 1)
                };
                let (d_ptr, d_rs, d_cs) = if flat_out {
                    (out.ptr::<f32>(ob + p0 * os[3]), os[1], os[3])
                } else {
                    (tmp[p0..].as_mut_ptr(), pp, 1)
                };
                // SAFETY: the three blocks lie inside their buffers (the validated layouts, or the
                // scratch vectors sized for them); the output block is this job's only and does not
                // overlap the inputs.
                unsafe {
                    gemm(
                        og,
                        width,
                        kk,
                        d_ptr,
                        d_cs as isize,
                        d_rs as isize,
                        false,
                        w_ptr,
                        w_cs as isize,
                        w_rs as isize,
                        c_ptr,
                        c_cs as isize,
                        c_rs as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        par,
                    )
                };
            }
            for o in 0..og {
                let oc = grp * og + o;
                let bias = bias_at.map_or(0.0, |b| b(oc) as f32);
                for p in 0..pp {
                    let at = ob + o * os[1] + (p / ow) * os[2] + (p % ow) * os[3];
                    let v = if flat_out {
                        // SAFETY: (n, oc, oy, ox) lies inside the output's shape.
                        unsafe { out.get::<f32>(at) }
                    } else {
                        tmp[o * pp + p]
                    };
                    let v = if !v.is_finite() {
                        // Infinities: the product may have met one with a padding zero or in
                        // another order; the contract's sum skips the padding taps.
                        exact(n, oc, p / ow, p % ow) as f32
                    } else {
                        v + bias
                    };
                    // SAFETY: as above.
                    unsafe { out.set(at, v) };
                }
            }
        }
        Ok(())
    })
}

/// The forward convolution `g` as a plan for the direct kernel.
fn forward_plan(g: &ConvGeom) -> direct_conv::Plan {
    direct_conv::Plan {
        n: g.n,
        groups: g.groups,
        cs: g.cg(),
        og: g.og(),
        src: g.input,
        kernel: g.kernel,
        stride: g.stride,
        dilation: g.dilation,
        pad: g.padding,
        out: g.out,
    }
}

/// The f32 forward convolution by the direct kernel; `Ok(false)` where it does not apply.
fn forward_direct(
    g: &ConvGeom,
    a: &TView,
    w: &TView,
    out: &TView,
    bias_at: Option<&(dyn Fn(usize) -> f64 + Sync)>,
) -> Result<bool> {
    let (as_, ws, os) = (
        g.strides4(&a.desc.strides),
        g.strides4(&w.desc.strides),
        g.strides4(&out.desc.strides),
    );
    let og = g.og();
    let plan = forward_plan(g);
    let w_at = |grp: usize, o: usize, ci: usize, ky: usize, kx: usize| {
        let at = w.desc.offset + (grp * og + o) * ws[0] + ci * ws[1] + ky * ws[2] + kx * ws[3];
        // SAFETY: (grp og + o, ci, ky, kx) lies inside the weight's shape.
        unsafe { w.get::<f32>(at) }
    };
    let bias = bias_at.map(|b| move |grp: usize, o: usize| b(grp * og + o) as f32);
    let exact = |n: usize, grp: usize, o: usize, oy: usize, ox: usize| {
        let oc = grp * og + o;
        bias_at.map_or(0.0, |b| b(oc)) + forward_at(g, a, w, [n, oc, oy, ox])
    };
    let sink = direct_conv::Sink {
        view: out,
        strides: os,
        bias: bias
            .as_ref()
            .map(|b| b as &(dyn Fn(usize, usize) -> f32 + Sync)),
        exact: &exact,
    };
    direct_conv::run(&plan, a, as_, w_at, &sink)
}

/// The f32 input gradient of a stride-1 convolution (or a stride-1 transposed convolution) by
/// the direct kernel, as the convolution of the output gradient with the flipped, transposed
/// weights and padding `dilation (k - 1) - padding`; `Ok(false)` where it does not apply.
fn data_direct(
    g: &ConvGeom,
    a: &TView,
    w: &TView,
    out: &TView,
    bias_at: &(dyn Fn(usize) -> f64 + Sync),
    data_at: &(dyn Fn(usize, usize, usize, usize) -> f64 + Sync),
) -> Result<bool> {
    let [kh, kw] = g.kernel;
    let [dh, dw] = g.dilation;
    let (Some(ph), Some(pw)) = (
        (dh * (kh - 1)).checked_sub(g.padding[0]),
        (dw * (kw - 1)).checked_sub(g.padding[1]),
    ) else {
        return Ok(false);
    };
    if g.stride != [1, 1] {
        return Ok(false);
    }
    let (as_, ws, os) = (
        g.strides4(&a.desc.strides),
        g.strides4(&w.desc.strides),
        g.strides4(&out.desc.strides),
    );
    let (cg, og) = (g.cg(), g.og());
    let plan = direct_conv::Plan {
        n: g.n,
        groups: g.groups,
        cs: og,
        og: cg,
        src: g.out,
        kernel: g.kernel,
        stride: [1, 1],
        dilation: g.dilation,
        pad: [ph, pw],
        out: g.input,
    };
    // Output channel ci of the flipped convolution from its source channel o (a channel of dy).
    let w_at = |grp: usize, ci: usize, o: usize, ky: usize, kx: usize| {
        let at = w.desc.offset
            + (grp * og + o) * ws[0]
            + ci * ws[1]
            + (kh - 1 - ky) * ws[2]
            + (kw - 1 - kx) * ws[3];
        // SAFETY: (grp og + o, ci, kh - 1 - ky, kw - 1 - kx) lies inside the weight's shape.
        unsafe { w.get::<f32>(at) }
    };
    let bias = |grp: usize, ci: usize| bias_at(grp * cg + ci) as f32;
    let exact =
        |n: usize, grp: usize, ci: usize, iy: usize, ix: usize| data_at(n, grp * cg + ci, iy, ix);
    let sink = direct_conv::Sink {
        view: out,
        strides: os,
        bias: Some(&bias),
        exact: &exact,
    };
    direct_conv::run(&plan, a, as_, w_at, &sink)
}

/// The kernel of one convolution call (any pass: forward, input gradient or transpose,
/// weight gradient).
pub(crate) fn kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let desc = |i: usize| super::input_desc(call, i);
    let (g, pass) = ConvGeom::of_call(&call.op, &attrs, [desc(0), desc(1), desc(2)])?;
    let has_bias = desc(2).is_some();
    Ok(Box::new(move |b: &Bound| {
        let (a, w, out) = (b.input(0)?, b.input(1)?, b.out(0));
        let bias = if has_bias { Some(b.input(2)?) } else { None };
        let bias_at = |ch: usize| match bias {
            // SAFETY: ch < the bias's single dimension (O, or C for a transpose).
            Some(t) => f(unsafe { load(t, t.desc.offset + ch * t.desc.strides[0]) }),
            None => 0.0,
        };
        let (as_, ws, os) = (
            g.strides4(&a.desc.strides),
            g.strides4(&w.desc.strides),
            g.strides4(&out.desc.strides),
        );
        let (cg, og) = (g.cg(), g.og());
        let [kh, kw] = g.kernel;
        let [oh, ow] = g.out;
        let [ih, iw] = g.input;
        let [sh, sw] = g.stride;
        let [ph, pw] = g.padding;
        let [dh, dw] = g.dilation;
        // The output position of tap k of input position i along a dimension, if any:
        // (i + pad - k dil) / stride when whole and below `len`.
        let back = |i: usize, k: usize, pad: usize, dil: usize, st: usize, len: usize| {
            let t = (i + pad).checked_sub(k * dil)?;
            (t % st == 0 && t / st < len).then_some(t / st)
        };
        match pass {
            ConvPass::Forward if a.desc.dtype == DType::F32 && cg * kh * kw > 0 && oh * ow > 0 => {
                let bias = has_bias.then_some(&bias_at as &(dyn Fn(usize) -> f64 + Sync));
                if forward_direct(&g, a, w, out, bias)? {
                    return Ok(());
                }
                forward_gemm(&g, a, w, out, bias)
            }
            ConvPass::Forward => {
                let work = cg.saturating_mul(kh).saturating_mul(kw).max(1);
                par_ranges(g.n * g.o * oh * ow, (GRAIN / work).max(1), |r| {
                    for lin in r {
                        let ox = lin % ow;
                        let oy = (lin / ow) % oh;
                        let oc = (lin / (ow * oh)) % g.o;
                        let n = lin / (ow * oh * g.o);
                        let acc = bias_at(oc) + forward_at(&g, a, w, [n, oc, oy, ox]);
                        let at = out.desc.offset + n * os[0] + oc * os[1] + oy * os[2] + ox * os[3];
                        // SAFETY: (n, oc, oy, ox) lies inside the output's shape.
                        unsafe { store(out, at, Val::F(acc)) }
                    }
                    Ok(())
                })
            }
            ConvPass::Data => {
                // dx at (n, ch, iy, ix) by the contract's sum, in f64.
                let data_at = |n: usize, ch: usize, iy: usize, ix: usize| -> f64 {
                    let (grp, ci) = (ch / cg, ch % cg);
                    let mut acc = bias_at(ch);
                    for oc in grp * og..(grp + 1) * og {
                        let yb = a.desc.offset + n * as_[0] + oc * as_[1];
                        let wb = w.desc.offset + oc * ws[0] + ci * ws[1];
                        for ky in 0..kh {
                            let Some(oy) = back(iy, ky, ph, dh, sh, oh) else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ox) = back(ix, kx, pw, dw, sw, ow) else {
                                    continue;
                                };
                                // SAFETY: (n, oc, oy, ox) lies inside the output-shaped
                                // input and (oc, ci, ky, kx) inside the weight.
                                let (yv, wv) = unsafe {
                                    (
                                        load(a, yb + oy * as_[2] + ox * as_[3]),
                                        load(w, wb + ky * ws[2] + kx * ws[3]),
                                    )
                                };
                                acc += f(yv) * f(wv);
                            }
                        }
                    }
                    acc
                };
                if a.desc.dtype == DType::F32 && og * kh * kw > 0 && oh * ow > 0 {
                    if data_direct(&g, a, w, out, &bias_at, &data_at)? {
                        return Ok(());
                    }
                    return data_gemm(&g, a, w, out, &bias_at, &data_at);
                }
                let work = og.saturating_mul(kh).saturating_mul(kw).max(1);
                par_ranges(g.n * g.c * ih * iw, (GRAIN / work).max(1), |r| {
                    for lin in r {
                        let ix = lin % iw;
                        let iy = (lin / iw) % ih;
                        let ch = (lin / (iw * ih)) % g.c;
                        let n = lin / (iw * ih * g.c);
                        let acc = data_at(n, ch, iy, ix);
                        let at = out.desc.offset + n * os[0] + ch * os[1] + iy * os[2] + ix * os[3];
                        // SAFETY: (n, ch, iy, ix) lies inside the output's shape.
                        unsafe { store(out, at, Val::F(acc)) }
                    }
                    Ok(())
                })
            }
            ConvPass::Filter => {
                // Input 1 is x, through its lifted strides.
                let xs = ws;
                // dw at (oc, ci, ky, kx) by the contract's sum, in f64.
                let filter_at = |oc: usize, ci: usize, ky: usize, kx: usize| -> f64 {
                    let ch = oc / og * cg + ci;
                    let mut acc = 0.0;
                    for n in 0..g.n {
                        let yb = a.desc.offset + n * as_[0] + oc * as_[1];
                        let xb = w.desc.offset + n * xs[0] + ch * xs[1];
                        for oy in 0..oh {
                            let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                            if iy >= ih {
                                continue;
                            }
                            for ox in 0..ow {
                                let ix = (ox * sw + kx * dw).wrapping_sub(pw);
                                if ix >= iw {
                                    continue;
                                }
                                // SAFETY: (n, oc, oy, ox) lies inside grad and
                                // (n, ch, iy, ix) inside x.
                                let (yv, xv) = unsafe {
                                    (
                                        load(a, yb + oy * as_[2] + ox * as_[3]),
                                        load(w, xb + iy * xs[2] + ix * xs[3]),
                                    )
                                };
                                acc += f(yv) * f(xv);
                            }
                        }
                    }
                    acc
                };
                if a.desc.dtype == DType::F32 && cg * kh * kw > 0 && oh * ow > 0 && g.n > 0 {
                    let plan = forward_plan(&g);
                    if direct_conv::run_filter(&plan, w, xs, a, as_, out, os, filter_at)? {
                        return Ok(());
                    }
                    return filter_gemm(&g, a, w, out, &filter_at);
                }
                let work = g.n.saturating_mul(oh).saturating_mul(ow).max(1);
                par_ranges(g.o * cg * kh * kw, (GRAIN / work).max(1), |r| {
                    for lin in r {
                        let kx = lin % kw;
                        let ky = (lin / kw) % kh;
                        let ci = (lin / (kw * kh)) % cg;
                        let oc = lin / (kw * kh * cg);
                        let acc = filter_at(oc, ci, ky, kx);
                        let at =
                            out.desc.offset + oc * os[0] + ci * os[1] + ky * os[2] + kx * os[3];
                        // SAFETY: (oc, ci, ky, kx) lies inside the output's shape.
                        unsafe { store(out, at, Val::F(acc)) }
                    }
                    Ok(())
                })
            }
        }
    }))
}

/// An [og, P] block of an output-shaped f32 tensor (image n, the channels of group grp) as
/// contiguous rows: in place when its planes are flat, else copied into `buf`.
fn grad_block(
    a: &TView,
    as_: [usize; 4],
    (n, grp, og): (usize, usize, usize),
    [oh, ow]: [usize; 2],
    buf: &mut Vec<f32>,
) -> (*const f32, usize, usize) {
    let base = a.desc.offset + n * as_[0] + grp * og * as_[1];
    if ow == 1 || as_[2] == ow * as_[3] {
        return (a.ptr::<f32>(base) as *const f32, as_[1], as_[3]);
    }
    let pp = oh * ow;
    buf.resize(og * pp, 0.0);
    for o in 0..og {
        for p in 0..pp {
            // SAFETY: (n, grp og + o, oy, ox) lies inside the tensor's shape.
            buf[o * pp + p] =
                unsafe { a.get::<f32>(base + o * as_[1] + (p / ow) * as_[2] + (p % ow) * as_[3]) };
        }
    }
    (buf.as_ptr(), pp, 1)
}

/// The f32 input gradient (or transposed convolution) per image and group: `dcol = w^T dy`
/// (`gemm`), then each column's taps added into their input positions (col2im). An element
/// that comes out NaN is recomputed by `data_at`, the contract's sum.
fn data_gemm(
    g: &ConvGeom,
    a: &TView,
    w: &TView,
    out: &TView,
    bias_at: &(dyn Fn(usize) -> f64 + Sync),
    data_at: &(dyn Fn(usize, usize, usize, usize) -> f64 + Sync),
) -> Result<()> {
    let (as_, ws, os) = (
        g.strides4(&a.desc.strides),
        g.strides4(&w.desc.strides),
        g.strides4(&out.desc.strides),
    );
    let (cg, og) = (g.cg(), g.og());
    let [kh, kw] = g.kernel;
    let [oh, ow] = g.out;
    let [ih, iw] = g.input;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let [dh, dw] = g.dilation;
    let (kk, pp) = (cg * kh * kw, oh * ow);
    let jobs = g.n * g.groups;
    par_ranges(jobs, 1, |range| {
        let mut dcol = vec![0f32; kk * pp];
        let mut acc = vec![0f32; cg * ih * iw];
        let mut buf = Vec::new();
        let mut wbuf = vec![0f32; og * kk];
        for job in range {
            let (n, grp) = (job / g.groups, job % g.groups);
            let (y_ptr, y_rs, y_cs) = grad_block(a, as_, (n, grp, og), [oh, ow], &mut buf);
            for o in 0..og {
                for k in 0..kk {
                    let (ci, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
                    // SAFETY: (grp og + o, ci, ky, kx) lies inside the weight's shape.
                    wbuf[o * kk + k] = unsafe {
                        w.get::<f32>(
                            w.desc.offset
                                + (grp * og + o) * ws[0]
                                + ci * ws[1]
                                + ky * ws[2]
                                + kx * ws[3],
                        )
                    };
                }
            }
            // SAFETY: w^T [K, og] (wbuf), dy [og, P] and dcol [K, P] lie inside their buffers.
            unsafe {
                super::matmul::gemm_serial(
                    [kk, pp, og],
                    (dcol.as_mut_ptr(), 1, pp as isize),
                    (wbuf.as_ptr(), kk as isize, 1),
                    (y_ptr, y_cs as isize, y_rs as isize),
                )
            };
            acc.fill(0.0);
            for (k, row) in dcol.chunks_exact(pp).enumerate() {
                let (ci, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
                for oy in 0..oh {
                    let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                    if iy >= ih {
                        continue;
                    }
                    for ox in 0..ow {
                        let ix = (ox * sw + kx * dw).wrapping_sub(pw);
                        if ix < iw {
                            acc[(ci * ih + iy) * iw + ix] += row[oy * ow + ox];
                        }
                    }
                }
            }
            for ci in 0..cg {
                let ch = grp * cg + ci;
                let bias = bias_at(ch) as f32;
                for iy in 0..ih {
                    for ix in 0..iw {
                        let v = acc[(ci * ih + iy) * iw + ix] + bias;
                        let v = if !v.is_finite() {
                            data_at(n, ch, iy, ix) as f32
                        } else {
                            v
                        };
                        let at = out.desc.offset + n * os[0] + ch * os[1] + iy * os[2] + ix * os[3];
                        // SAFETY: (n, ch, iy, ix) lies inside the output's shape; this job
                        // owns the channels of its group of image n.
                        unsafe { out.set(at, v) };
                    }
                }
            }
        }
        Ok(())
    })
}

/// The f32 weight gradient: per image, `dw += dy col^T` (`gemm`, im2col of x), in a fixed
/// number of image chunks added in order. An element that comes out NaN is recomputed by
/// `filter_at`, the contract's sum.
fn filter_gemm(
    g: &ConvGeom,
    a: &TView,
    x: &TView,
    out: &TView,
    filter_at: &(dyn Fn(usize, usize, usize, usize) -> f64 + Sync),
) -> Result<()> {
    let (as_, xs, os) = (
        g.strides4(&a.desc.strides),
        g.strides4(&x.desc.strides),
        g.strides4(&out.desc.strides),
    );
    let (cg, og) = (g.cg(), g.og());
    let [kh, kw] = g.kernel;
    let [oh, ow] = g.out;
    let (kk, pp) = (cg * kh * kw, oh * ow);
    const CHUNKS: usize = 8;
    // Positions whose products one f32 product sums (the runs are added in f64).
    const P_RUN: usize = 1024;
    let chunks = g.n.min(CHUNKS);
    let per = g.n.div_ceil(chunks);
    let parts = std::sync::Mutex::new(vec![Vec::new(); chunks]);
    par_ranges(chunks, 1, |range| {
        let mut col = vec![0f32; kk * pp];
        let mut buf = Vec::new();
        for chunk in range {
            let mut part = vec![0f64; g.o * kk];
            let mut block = vec![0f32; og * kk];
            for n in chunk * per..((chunk + 1) * per).min(g.n) {
                for grp in 0..g.groups {
                    let xb = x.desc.offset + n * xs[0] + grp * cg * xs[1];
                    im2col(g, x, xs, xb, &mut col, pp, 0..pp);
                    let (y_ptr, y_rs, y_cs) = grad_block(a, as_, (n, grp, og), [oh, ow], &mut buf);
                    // Positions in runs of P_RUN summed in f32, the runs added in f64.
                    for p0 in (0..pp).step_by(P_RUN) {
                        let width = (pp - p0).min(P_RUN);
                        // SAFETY: dy [og, P] from column p0, col^T [P, K] from row p0 and the
                        // block [og, K] lie inside their buffers.
                        unsafe {
                            super::matmul::gemm_serial(
                                [og, kk, width],
                                (block.as_mut_ptr(), 1, kk as isize),
                                (y_ptr.add(p0 * y_cs), y_cs as isize, y_rs as isize),
                                (col.as_ptr().add(p0), pp as isize, 1),
                            )
                        };
                        for (d, &v) in part[grp * og * kk..(grp + 1) * og * kk]
                            .iter_mut()
                            .zip(&block)
                        {
                            *d += v as f64;
                        }
                    }
                }
            }
            parts.lock().unwrap_or_else(|e| e.into_inner())[chunk] = part;
        }
        Ok(())
    })?;
    let parts = parts.into_inner().unwrap_or_else(|e| e.into_inner());
    for oc in 0..g.o {
        for k in 0..kk {
            let (ci, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
            let v = parts.iter().map(|p| p[oc * kk + k]).sum::<f64>() as f32;
            let v = if !v.is_finite() {
                filter_at(oc, ci, ky, kx) as f32
            } else {
                v
            };
            let at = out.desc.offset + oc * os[0] + ci * os[1] + ky * os[2] + kx * os[3];
            // SAFETY: (oc, ci, ky, kx) lies inside the output's shape.
            unsafe { out.set(at, v) };
        }
    }
    Ok(())
}

/// The kernel of one pooling call: max (values and i64 plane indices) or average, in f64.
pub(crate) fn pool_kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let x = call
        .inputs
        .first()
        .and_then(|t| t.as_ref())
        .ok_or_else(|| anyaccel_hal::Error::internal("pool: input missing"))?;
    let g = PoolGeom::of(&call.op, &attrs, x.desc())?;
    let max = call.op.starts_with("max");
    Ok(Box::new(move |b: &Bound| {
        let (x, out) = (b.input(0)?, b.out(0));
        let idx = if max { Some(b.out(1)) } else { None };
        with_float!(x.desc.dtype, T => pool_typed::<T>(&g, x, out, idx))
    }))
}

/// One pooling call on float storage type `T` (x's and out's), indices (i64) when `idx` is given.
fn pool_typed<T: F64Store>(
    g: &PoolGeom,
    x: &TView,
    out: &TView,
    idx: Option<&TView>,
) -> Result<()> {
    if pool_rows::<T>(g, x, out, idx)? {
        return Ok(());
    }
    let xs = g.strides4(&x.desc.strides);
    let os = g.strides4(&out.desc.strides);
    let [oh, ow] = g.out;
    let [ih, iw] = g.input;
    let [kh, kw] = g.kernel;
    if let Some(it) = idx {
        let is = g.strides4(&it.desc.strides);
        // The taps of each output row and column that land inside the input.
        let rows = tap_ranges(oh, g.stride[0], g.padding[0], kh, g.dilation[0], ih);
        let cols = tap_ranges(ow, g.stride[1], g.padding[1], kw, g.dilation[1], iw);
        let plane = (oh * ow).max(1);
        let grain = (GRAIN / plane.saturating_mul(kh).saturating_mul(kw).max(1)).max(1);
        return par_ranges(g.n * g.c, grain, |r| {
            for p in r {
                let (n, ch) = (p / g.c, p % g.c);
                // Pointers taken once: the stores below could alias the views' fields.
                let xp = x
                    .ptr::<T>(x.desc.offset + n * xs[0] + ch * xs[1])
                    .cast_const();
                for (oy, &(ys, ye, y0)) in rows.iter().enumerate() {
                    let op = out.ptr::<T>(out.desc.offset + n * os[0] + ch * os[1] + oy * os[2]);
                    let ip = it.ptr::<i64>(it.desc.offset + n * is[0] + ch * is[1] + oy * is[2]);
                    for (ox, &(xs0, xe, x0)) in cols.iter().enumerate() {
                        let (mut best, mut at) = (f64::NEG_INFINITY, -1i64);
                        'window: for ky in ys..ye {
                            let iy = y0.wrapping_add(ky * g.dilation[0]);
                            for kx in xs0..xe {
                                let ixx = x0.wrapping_add(kx * g.dilation[1]);
                                // SAFETY: the tap ranges keep (iy, ixx) inside x's plane.
                                let v = unsafe { xp.add(iy * xs[2] + ixx * xs[3]).read() }.to_f64();
                                if v.is_nan() {
                                    (best, at) = (v, (iy * iw + ixx) as i64);
                                    break 'window;
                                }
                                if v > best || at < 0 {
                                    (best, at) = (v, (iy * iw + ixx) as i64);
                                }
                            }
                        }
                        // SAFETY: (n, ch, oy, ox) lies inside the outputs' shape.
                        unsafe {
                            op.add(ox * os[3]).write(T::from_f64(best));
                            ip.add(ox * is[3]).write(at);
                        }
                    }
                }
            }
            Ok(())
        });
    }
    for_positions(
        [g.n, g.c, oh, ow],
        (GRAIN / (kh * kw).max(1)).max(1),
        |n, ch, oy, ox| {
            let xb = x.desc.offset + n * xs[0] + ch * xs[1];
            let oo = out.desc.offset + n * os[0] + ch * os[1] + oy * os[2] + ox * os[3];
            let (ys, ye) = avg_window(g, 0, oy);
            let (xs0, xe) = avg_window(g, 1, ox);
            let mut sum = 0.0;
            for iy in ys..ye {
                for ixx in xs0..xe {
                    // SAFETY: the clipped window lies inside x's shape.
                    sum += unsafe { x.get::<T>(xb + iy as usize * xs[2] + ixx as usize * xs[3]) }
                        .to_f64();
                }
            }
            let divisor = avg_count(g, 0, oy) * avg_count(g, 1, ox);
            // SAFETY: (n, ch, oy, ox) lies inside the output's shape.
            unsafe { out.set(oo, T::from_f64(sum / divisor as f64)) }
        },
    )
}

/// The taps of avg_pool's window `o` along axis `d` that lie in the input (start and end, in
/// input coordinates; empty where it holds none).
fn avg_window(g: &PoolGeom, d: usize, o: usize) -> (i64, i64) {
    let s = (o * g.stride[d]) as i64 - g.padding[d] as i64;
    let end = (s + g.kernel[d] as i64).min((g.input[d] + g.padding[d]) as i64);
    (s.max(0), end.min(g.input[d] as i64))
}

/// The divisor's factor of avg_pool's window `o` along axis `d`: the window clipped to the
/// padded input where padding counts, else its taps in the input.
fn avg_count(g: &PoolGeom, d: usize, o: usize) -> i64 {
    if g.count_include_pad {
        let s = (o * g.stride[d]) as i64 - g.padding[d] as i64;
        (s + g.kernel[d] as i64).min((g.input[d] + g.padding[d]) as i64) - s
    } else {
        let (s, e) = avg_window(g, d, o);
        (e - s).max(0)
    }
}

/// A pooling call on f32, f16 or bf16 x and output whose rows (and the indices') have unit
/// stride, output row by output row through the vector row kernels [`vmath::max_pool_row`]
/// and [`vmath::avg_pool_row`] (the same taps in the same order as [`pool_typed`]'s loops, so
/// the same results). 16-bit inputs are widened a plane at a time (exactly), maxima rounded
/// back exactly, averages rounded once from their f64 quotient. `false` (nothing run) for
/// other dtypes and layouts.
fn pool_rows<T: F64Store>(
    g: &PoolGeom,
    x: &TView,
    out: &TView,
    idx: Option<&TView>,
) -> Result<bool> {
    let [oh, ow] = g.out;
    let [ih, iw] = g.input;
    let [kh, kw] = g.kernel;
    let (xs, os) = (g.strides4(&x.desc.strides), g.strides4(&out.desc.strides));
    let is = idx.map_or([0, 0, 0, 1], |t| g.strides4(&t.desc.strides));
    let unit = |s: [usize; 4], len: usize| s[3] == 1 || len <= 1;
    let dt = x.desc.dtype;
    let wide = matches!(dt, DType::F16 | DType::BF16);
    // A 16-bit plane widens into a buffer of at most 4M f32 a task, else the element loop.
    let plane_len = ih.checked_mul(iw).filter(|&n| n <= i32::MAX as usize);
    let fits = plane_len.is_some_and(|n| !wide || n <= 1 << 22);
    let rows_ok = unit(xs, iw) && unit(os, ow) && unit(is, ow);
    if !(dt == DType::F32 || wide) || out.desc.dtype != dt || !rows_ok || !fits || ow == 0 {
        return Ok(false);
    }
    let rows = tap_ranges(oh, g.stride[0], g.padding[0], kh, g.dilation[0], ih);
    let cols = tap_ranges(ow, g.stride[1], g.padding[1], kw, g.dilation[1], iw);
    // The columns whose windows lie wholly inside the input: one run, as windows move right.
    let whole = |c: &(usize, usize, usize)| c.0 == 0 && c.1 == kw;
    let lo = cols.iter().position(whole).unwrap_or(ow);
    let hi = cols.iter().rposition(whole).map_or(lo, |p| p + 1);
    let col_count: Vec<f64> = (0..ow).map(|o| avg_count(g, 1, o) as f64).collect();
    let plane = (oh * ow).max(1);
    let grain = (GRAIN / plane.saturating_mul(kh).saturating_mul(kw).max(1)).max(1);
    par_ranges(g.n * g.c, grain, |r| {
        let (mut best, mut at, mut sum) = (vec![0f32; ow], vec![0i32; ow], vec![0f64; ow]);
        let mut widened: Vec<f32> = zeros(if wide { ih * iw } else { 0 }, || {
            format!("pool: no memory for a {ih}x{iw} plane widened to f32")
        })?;
        for p in r {
            let (n, ch) = (p / g.c, p % g.c);
            let xb = x.desc.offset + n * xs[0] + ch * xs[1];
            if wide {
                for (iy, w) in widened.chunks_exact_mut(iw.max(1)).enumerate() {
                    // SAFETY: row iy of x's plane (n, ch) holds iw elements of unit stride.
                    unsafe { super::nn::widen_into(x, xb + iy * xs[2], w) }
                }
            }
            let mut taps: Vec<(&[f32], i32)> = Vec::with_capacity(kh);
            for (oy, &(ys, ye, y0)) in rows.iter().enumerate() {
                taps.clear();
                for ky in ys..ye {
                    let iy = y0.wrapping_add(ky * g.dilation[0]);
                    let row = if wide {
                        &widened[iy * iw..(iy + 1) * iw]
                    } else {
                        // SAFETY: the tap ranges keep row iy inside x's plane, whose rows hold
                        // iw elements of unit stride.
                        unsafe { x.run::<f32>(xb + iy * xs[2], iw) }
                    };
                    taps.push((row, (iy * iw) as i32));
                }
                let row = vmath::PoolRow {
                    rows: &taps,
                    cols: &cols,
                    interior: (lo, hi),
                    kernel: kw,
                    stride: g.stride[1],
                    dilation: g.dilation[1],
                };
                let oo = out.desc.offset + n * os[0] + ch * os[1] + oy * os[2];
                // SAFETY: output row (n, ch, oy) holds ow elements of unit stride, written by
                // this task alone.
                let o = unsafe { out.run_mut::<T>(oo, ow) };
                if let Some(it) = idx {
                    vmath::max_pool_row(&row, &mut best, &mut at);
                    // A maximum is one of the (widened) inputs: rounding it back is exact.
                    for (d, &b) in o.iter_mut().zip(&best) {
                        *d = T::from_f64(f64::from(b));
                    }
                    let io = it.desc.offset + n * is[0] + ch * is[1] + oy * is[2];
                    // SAFETY: as above, for the indices.
                    let ir = unsafe { it.run_mut::<i64>(io, ow) };
                    for (d, &a) in ir.iter_mut().zip(&at) {
                        *d = i64::from(a);
                    }
                } else {
                    vmath::avg_pool_row(&row, &mut sum);
                    let rc = avg_count(g, 0, oy) as f64;
                    for ((d, &s), &cc) in o.iter_mut().zip(&sum).zip(&col_count) {
                        *d = T::from_f64(s / (rc * cc));
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(true)
}

/// For each of `out` output positions along one axis, the taps `k0..k1` of a window (start
/// `o stride - padding`, `kernel` taps `dilation` apart) that land inside `0..len`, and the
/// input index of tap 0 offset so that tap `k` reads `base + k dilation` (wrapping arithmetic
/// for taps before the input; only taps in `k0..k1` are read).
pub(super) fn tap_ranges(
    out: usize,
    stride: usize,
    padding: usize,
    kernel: usize,
    dilation: usize,
    len: usize,
) -> Vec<(usize, usize, usize)> {
    (0..out)
        .map(|o| {
            let start = (o * stride) as i64 - padding as i64;
            let inside = |k: usize| {
                let i = start + (k * dilation) as i64;
                i >= 0 && i < len as i64
            };
            let k0 = (0..kernel).find(|&k| inside(k)).unwrap_or(kernel);
            let k1 = (k0..kernel)
                .rev()
                .find(|&k| inside(k))
                .map_or(k0, |k| k + 1);
            (k0, k1, start as usize)
        })
        .collect()
}

/// Runs `f(n, c, y, x)` at every position of a `[n, c, h, w]` grid, in parallel by planes of
/// `h * w`, about `grain` positions a task.
fn for_positions(
    [n, c, h, w]: [usize; 4],
    grain: usize,
    f: impl Fn(usize, usize, usize, usize) + Sync,
) -> Result<()> {
    let plane = h.saturating_mul(w).max(1);
    par_ranges(n * c, (grain / plane).max(1), |r| {
        for p in r {
            let (ni, ch) = (p / c.max(1), p % c.max(1));
            for y in 0..h {
                for x in 0..w {
                    f(ni, ch, y, x);
                }
            }
        }
        Ok(())
    })
}

/// The kernel of one pooling or resampling gradient: each element of dx gathers the gradient
/// of the outputs that read it ([`PoolBack::taps`]), in f64.
pub(crate) fn pool_backward_kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let desc = |i: usize| super::input_desc(call, i);
    let grad = desc(0).ok_or_else(|| anyaccel_hal::Error::internal("pool: input missing"))?;
    let g = PoolBack::of(&call.op, &attrs, grad, desc(1))?;
    let max = matches!(g, PoolBack::Pool(p) if p.max);
    let (input, spatial) = match g {
        PoolBack::Pool(p) => (p.input, p.spatial),
        PoolBack::Resample(r) => (r.input, 2),
    };
    // The taps of every input row and column, computed once per call.
    let rows = TapList::of(input[0], |i| g.taps(0, i));
    let cols = TapList::of(input[1], |i| g.taps(1, i));
    let window = match g {
        PoolBack::Pool(p) => Some(Window {
            stride: p.stride,
            padding: p.padding,
            kernel: p.kernel,
            dilation: p.dilation,
        }),
        PoolBack::Resample(_) => None,
    };
    Ok(Box::new(move |b: &Bound| {
        let (gt, out) = (b.input(0)?, b.out(0));
        let it = if max { Some(b.input(1)?) } else { None };
        let taps = Taps {
            rows: &rows,
            cols: &cols,
            window,
            input,
            spatial,
        };
        match it.map(|t| t.desc.dtype) {
            Some(DType::I32) => {
                with_float!(gt.desc.dtype, T => pool_backward_typed::<T, i32>(&taps, gt, it, out))
            }
            _ => with_float!(gt.desc.dtype, T => pool_backward_typed::<T, i64>(&taps, gt, it, out)),
        }
    }))
}

/// What each input element of a pooling or resampling gradient gathers: the (output index,
/// weight) taps of every input row and column, and the input's spatial size and rank.
struct Taps<'a> {
    rows: &'a TapList,
    cols: &'a TapList,
    /// A pool's windows: which outputs hold an input, by arithmetic.
    window: Option<Window>,
    input: [usize; 2],
    spatial: usize,
}

/// The (output index, weight) taps of each input row or column, one list after another, so
/// that reading them a column at a time stays in cache however wide the input is.
struct TapList {
    /// Where each list starts in `taps`, and where the last one ends.
    at: Vec<usize>,
    taps: Vec<(usize, f64)>,
}

impl TapList {
    /// The lists of `len` rows or columns, list `i` from `f(i)`.
    fn of(len: usize, f: impl Fn(usize) -> Vec<(usize, f64)>) -> TapList {
        let mut list = TapList {
            at: Vec::with_capacity(len + 1),
            taps: Vec::new(),
        };
        list.at.push(0);
        for i in 0..len {
            list.taps.extend(f(i));
            list.at.push(list.taps.len());
        }
        list
    }

    /// Every row's or column's taps, in order.
    fn iter(&self) -> impl Iterator<Item = &[(usize, f64)]> {
        self.at.windows(2).map(|w| &self.taps[w[0]..w[1]])
    }
}

impl Taps<'_> {
    /// The `(stride, padding, kernel)` of a 1-D pool whose inputs each lie in at most two
    /// windows (`kernel <= 2 stride`, no dilation): the rows [`by_window`] takes.
    fn row_1d(&self) -> Option<(usize, usize, usize)> {
        let w = self.window.filter(|w| {
            self.spatial == 1
                && w.dilation[1] <= 1
                && w.stride[1] > 0
                && w.kernel[1] <= 2 * w.stride[1]
        })?;
        Some((w.stride[1], w.padding[1], w.kernel[1]))
    }
}

/// A pool's windows: output `o` along axis `d` reads inputs `o stride - padding + k dilation`
/// for `k` in `0..kernel`.
#[derive(Clone, Copy)]
struct Window {
    stride: [usize; 2],
    padding: [usize; 2],
    kernel: [usize; 2],
    dilation: [usize; 2],
}

impl Window {
    /// Whether output `(oy, ox)`'s window holds input `(iy, ix)`.
    #[inline(always)]
    fn holds(self, [iy, ix]: [usize; 2], [oy, ox]: [usize; 2]) -> bool {
        // The input's offset from the window's start, wrapping to a huge value when it lies
        // before: a tap where it is a multiple of the dilation below the kernel's span.
        let at = |i: usize, o: usize, d: usize| {
            let t = (i + self.padding[d]).wrapping_sub(o * self.stride[d]);
            match self.dilation[d] {
                // No division without dilation, the common case.
                0 | 1 => t < self.kernel[d],
                dil => t.is_multiple_of(dil) && t / dil < self.kernel[d],
            }
        };
        at(iy, oy, 0) && at(ix, ox, 1)
    }
}

/// The max pool gradients of plane `(n, ch)` that go somewhere: for each output `(oy, ox)`
/// whose index names an element `(iy, ix)` of the `[ih, iw]` input plane that `covers(iy, ix,
/// oy, ox)` puts in that output's own window, `f(iy, ix, g)` with the gradient as f64, in
/// output order. `strides` are the indices' and the gradient's, lifted to four dimensions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn own_window<T: F64Store, I: IntStore>(
    t: &TView,
    gt: &TView,
    (is, gs): ([usize; 4], [usize; 4]),
    (n, ch): (usize, usize),
    [oh, ow]: [usize; 2],
    [ih, iw]: [usize; 2],
    covers: impl Fn(usize, usize, usize, usize) -> bool,
    mut f: impl FnMut(usize, usize, f64),
) {
    let plane = ih * iw;
    let mut one = |oy: usize, ox: usize, k: I, g: T| {
        let Ok(k) = usize::try_from(k.to_i64()) else {
            return;
        };
        if k >= plane {
            return;
        }
        // No division for one row (a 1-D pool), else a 32-bit one where it suffices
        // (several times faster).
        let (iy, ix) = match (ih, u32::try_from(k), u32::try_from(iw)) {
            (1, _, _) => (0, k),
            (_, Ok(k), Ok(w)) => ((k / w) as usize, (k % w) as usize),
            _ => (k / iw, k % iw),
        };
        if covers(iy, ix, oy, ox) {
            f(iy, ix, g.to_f64());
        }
    };
    for oy in 0..oh {
        let ib = t.desc.offset + n * is[0] + ch * is[1] + oy * is[2];
        let gb = gt.desc.offset + n * gs[0] + ch * gs[1] + oy * gs[2];
        if is[3] == 1 && gs[3] == 1 {
            // SAFETY: row (n, ch, oy) of the indices and of grad holds ow elements of unit
            // stride; both are inputs.
            let (ir, gr) = unsafe { (t.run::<I>(ib, ow), gt.run::<T>(gb, ow)) };
            for (ox, (&k, &g)) in ir.iter().zip(gr).enumerate() {
                one(oy, ox, k, g);
            }
            continue;
        }
        // Row pointers, taken once: stores made by `f` could alias the views' fields.
        let (ip, gp) = (t.ptr::<I>(ib).cast_const(), gt.ptr::<T>(gb).cast_const());
        for ox in 0..ow {
            // SAFETY: (n, ch, oy, ox) lies inside the indices' and grad's shape.
            let (k, g) = unsafe { (ip.add(ox * is[3]).read(), gp.add(ox * gs[3]).read()) };
            one(oy, ox, k, g);
        }
    }
}

/// `g` where `take`, else `+0.0`, without a branch.
#[inline(always)]
fn pick(take: bool, g: f32) -> f32 {
    f32::from_bits(g.to_bits() & u32::from(take).wrapping_neg())
}

/// The gradient of a 1-D pool over its whole windows of stride `S`: `out` holds their inputs,
/// `S` for each window in order.
trait Windows<T> {
    fn run<const S: usize>(&self, out: &mut [T]);
}

/// One row of a 1-D pool gradient whose inputs each lie in at most two windows (`kernel <= 2
/// stride`, no dilation), by window. Input `i`, at `r < stride` past the start of window `m`
/// (`i = m stride - padding + r`), lies in window `m` where `r < kernel` and in window `m - 1`
/// where `r + stride < kernel`. The inputs of the windows `lo..hi` whose inputs all lie inside
/// the row and which follow a window go to `whole(lo..hi)` (a [`Windows`] kernel, run by
/// stride compiled for AVX-512 where the CPU has it; strides above 3 go by element), the rest
/// to `one(i)`.
fn by_window<T, K: Windows<T>>(
    dx: &mut [T],
    (stride, padding, ow): (usize, usize, usize),
    one: impl Fn(usize) -> T,
    whole: impl FnOnce(Range<usize>) -> K,
) {
    let iw = dx.len();
    let lo = padding.div_ceil(stride).max(1);
    let hi = ((iw + padding) / stride).min(ow);
    let first = (lo * stride - padding).min(iw);
    for (i, o) in dx[..first].iter_mut().enumerate() {
        *o = one(i);
    }
    if lo < hi {
        let run = &mut dx[first..hi * stride - padding];
        if !windows_best(&whole(lo..hi), stride, run) {
            for (i, o) in (first..).zip(run.iter_mut()) {
                *o = one(i);
            }
        }
    }
    let last = (hi.max(lo) * stride - padding).clamp(first, iw);
    for (i, o) in dx.iter_mut().enumerate().skip(last) {
        *o = one(i);
    }
}

/// Runs `k` for `stride` (1 to 3; `false` for others), compiled for AVX-512 where the CPU has
/// it (the compares and selects then run many windows at a time).
fn windows_best<T, K: Windows<T>>(k: &K, stride: usize, out: &mut [T]) -> bool {
    #[inline(always)]
    fn by_stride<T, K: Windows<T>>(k: &K, stride: usize, out: &mut [T]) -> bool {
        match stride {
            1 => k.run::<1>(out),
            2 => k.run::<2>(out),
            3 => k.run::<3>(out),
            _ => return false,
        }
        true
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
        unsafe fn avx512<T, K: Windows<T>>(k: &K, stride: usize, out: &mut [T]) -> bool {
            by_stride(k, stride, out)
        }
        if vmath::avx512() {
            // SAFETY: the CPU has the features the function is compiled for (vmath's level).
            return unsafe { avx512(k, stride, out) };
        }
    }
    by_stride(k, stride, out)
}

/// The gradient of one f32 row of a 1-D max pool, by window ([`by_window`]): each input takes
/// each gradient of its windows whose index names it, window `m - 1`'s first (output order), as
/// `(0 + g1) + g2`: the f64 sum rounded once, bit for bit (`0 + g1` is exact; an f32 sum of
/// two f32 equals their f64 sum rounded to f32). Branch-free: picks by bit masks.
fn max_grad_row_1d<I: IntStore>(
    idx: &[I],
    g: &[f32],
    dx: &mut [f32],
    (stride, padding, kernel): (usize, usize, usize),
) {
    let ow = idx.len().min(g.len());
    if ow == 0 {
        dx.fill(0.0);
        return;
    }
    let tap = |m: usize, i: usize| pick(m < ow && idx[m].to_i64() == i as i64, g[m.min(ow - 1)]);
    let one = |i: usize| {
        let (m, r) = ((i + padding) / stride, (i + padding) % stride);
        let cur = if r < kernel { tap(m, i) } else { 0.0 };
        let prev = if r + stride < kernel && m >= 1 {
            tap(m - 1, i)
        } else {
            0.0
        };
        (0.0 + prev) + cur
    };
    by_window(dx, (stride, padding, ow), one, |w: Range<usize>| {
        MaxWindows {
            cur: (&idx[w.clone()], &g[w.clone()]),
            prev: (&idx[w.start - 1..w.end - 1], &g[w.start - 1..w.end - 1]),
            base: (w.start * stride - padding) as i64,
            kernel,
        }
    })
}

/// Whole windows of [`max_grad_row_1d`]: their indices and gradients, those of the windows
/// before them, the position of the first one's first input, and the kernel.
struct MaxWindows<'a, I> {
    cur: (&'a [I], &'a [f32]),
    prev: (&'a [I], &'a [f32]),
    base: i64,
    kernel: usize,
}

impl<I: IntStore> Windows<f32> for MaxWindows<'_, I> {
    #[inline(always)]
    fn run<const S: usize>(&self, out: &mut [f32]) {
        let (out, _) = out.as_chunks_mut::<S>();
        let (cur, prev) = (self.cur, self.prev);
        let n = [cur.0.len(), cur.1.len(), prev.0.len(), prev.1.len()]
            .into_iter()
            .fold(out.len(), usize::min);
        let (kc, gc, kp, gp) = (&cur.0[..n], &cur.1[..n], &prev.0[..n], &prev.1[..n]);
        let cur_in: [bool; S] = std::array::from_fn(|r| r < self.kernel);
        let prev_in: [bool; S] = std::array::from_fn(|r| r + S < self.kernel);
        for j in 0..n {
            let at = self.base + (j * S) as i64;
            let (dc, dp) = (kc[j].to_i64() - at, kp[j].to_i64() - at);
            for r in 0..S {
                let c = pick(cur_in[r] & (dc == r as i64), gc[j]);
                let p = pick(prev_in[r] & (dp == r as i64), gp[j]);
                out[j][r] = (0.0 + p) + c;
            }
        }
    }
}

/// The gradient of one row of a 1-D average pool, by window ([`by_window`]), with window `m`'s
/// weight `wgt[m]` (one over its divisor): each input sums `wgt[m] (0 + g[m])` of its windows
/// in the order of its taps (window `m`, then `m - 1`) from `-0`, in f64, rounded once: the
/// gather's operations, so its results.
fn avg_grad_row_1d<T: F64Store>(
    g: &[T],
    wgt: &[f64],
    dx: &mut [T],
    (stride, padding, kernel): (usize, usize, usize),
) {
    let ow = g.len().min(wgt.len());
    let term = |m: usize| wgt[m] * (0.0 + g[m].to_f64());
    let one = |i: usize| {
        let (m, r) = ((i + padding) / stride, (i + padding) % stride);
        let mut v = -0.0;
        if r < kernel && m < ow {
            v += term(m);
        }
        if r + stride < kernel && m >= 1 && m - 1 < ow {
            v += term(m - 1);
        }
        T::from_f64(v)
    };
    by_window(dx, (stride, padding, ow), one, |w: Range<usize>| {
        AvgWindows {
            cur: (&g[w.clone()], &wgt[w.clone()]),
            prev: (&g[w.start - 1..w.end - 1], &wgt[w.start - 1..w.end - 1]),
            kernel,
        }
    })
}

/// Whole windows of [`avg_grad_row_1d`]: their gradients and weights, those of the windows
/// before them, and the kernel. A window's absent term is `-0`, which leaves the sum as it is.
struct AvgWindows<'a, T> {
    cur: (&'a [T], &'a [f64]),
    prev: (&'a [T], &'a [f64]),
    kernel: usize,
}

impl<T: F64Store> Windows<T> for AvgWindows<'_, T> {
    #[inline(always)]
    fn run<const S: usize>(&self, out: &mut [T]) {
        let (out, _) = out.as_chunks_mut::<S>();
        let (cur, prev) = (self.cur, self.prev);
        let n = [cur.0.len(), cur.1.len(), prev.0.len(), prev.1.len()]
            .into_iter()
            .fold(out.len(), usize::min);
        let (gc, wc, gp, wp) = (&cur.0[..n], &cur.1[..n], &prev.0[..n], &prev.1[..n]);
        for j in 0..n {
            let c = wc[j] * (0.0 + gc[j].to_f64());
            let p = wp[j] * (0.0 + gp[j].to_f64());
            for (r, o) in out[j].iter_mut().enumerate() {
                let c = if r < self.kernel { c } else { -0.0 };
                let p = if r + S < self.kernel { p } else { -0.0 };
                *o = T::from_f64((-0.0 + c) + p);
            }
        }
    }
}

/// A row of dx from its `line` of grad sums where every input column has `L` taps (`taps`
/// holds them column after column): each element sums `wx line[ox]` over its taps from `-0`,
/// in order, rounded once (the gather's operations).
#[inline(always)]
fn gather_row<T: F64Store, const L: usize>(taps: &[(usize, f64)], line: &[f64], o: &mut [T]) {
    let (taps, _) = taps.as_chunks::<L>();
    for (o, t) in o.iter_mut().zip(taps) {
        let mut v = -0.0;
        for &(ox, wx) in t {
            v += wx * line[ox];
        }
        *o = T::from_f64(v);
    }
}

/// One pooling or resampling gradient on float storage type `T`, max-pool indices of type `I`.
fn pool_backward_typed<T: F64Store, I: IntStore>(
    taps: &Taps,
    gt: &TView,
    it: Option<&TView>,
    out: &TView,
) -> Result<()> {
    let lift = |st: &[usize]| -> [usize; 4] {
        if taps.spatial == 1 {
            [st[0], st[1], 0, st[2]]
        } else {
            [st[0], st[1], st[2], st[3]]
        }
    };
    let (gs, os) = (lift(&gt.desc.strides), lift(&out.desc.strides));
    let is = it.map(|t| lift(&t.desc.strides));
    let [ih, iw] = taps.input;
    let c = out.desc.shape[1];
    if let (Some(t), Some(is)) = (it, is) {
        // Max pool: each gradient element goes to the input element its index names, if that
        // lies in its window (as the gather below would find it), summed in f64 in the order
        // of the outputs, which is the gather's order of taps.
        let [_, _, mut oh, ow] = lift(&gt.desc.shape);
        if taps.spatial == 1 {
            oh = 1;
        }
        let plane = ih * iw;
        let grain = (GRAIN / plane.max(1)).max(1);
        // The window copied out: stores through the output or into sums could alias it
        // behind a reference.
        let window = taps.window;
        let covers = move |iy: usize, ix: usize, oy: usize, ox: usize| {
            window.is_some_and(|w| w.holds([iy, ix], [oy, ox]))
        };
        let most = |l: &TapList| l.at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        let f32_rows = out.desc.dtype == DType::F32 && gt.desc.dtype == DType::F32;
        let row_1d = taps
            .row_1d()
            .filter(|_| f32_rows && is[3] == 1 && gs[3] == 1 && os[3] == 1);
        if let Some(geometry) = row_1d {
            return par_ranges(out.desc.shape[0] * c, grain, |r| {
                for p in r {
                    let (n, ch) = (p / c, p % c);
                    // SAFETY: row (n, ch) of the indices and grad holds ow elements of unit
                    // stride, dx's iw, written by this task alone.
                    let (ir, gr, dr) = unsafe {
                        (
                            t.run::<I>(t.desc.offset + n * is[0] + ch * is[1], ow),
                            gt.run::<f32>(gt.desc.offset + n * gs[0] + ch * gs[1], ow),
                            out.run_mut::<f32>(out.desc.offset + n * os[0] + ch * os[1], iw),
                        )
                    };
                    max_grad_row_1d(ir, gr, dr, geometry);
                }
                Ok(())
            });
        }
        if most(taps.rows) * most(taps.cols) <= 2 {
            // An input element in at most two windows takes at most two gradients, so dx is
            // summed in place: zeros, then each gradient whose index lies in its own window
            // added in f64 and rounded, in output order. The first sum, `0.0 + g1`, is exact in
            // dx's type (g1 is of that type), so the second rounds `g1 + g2` once: the f64 sum
            // below, bit for bit.
            return par_ranges(out.desc.shape[0] * c, grain, |r| {
                // Copies: stores through the output pointer could alias the captured arrays.
                let (os, is, gs) = (os, is, gs);
                let zero = T::from_f64(0.0);
                for p in r {
                    let (n, ch) = (p / c, p % c);
                    let op = out.ptr::<T>(out.desc.offset + n * os[0] + ch * os[1]);
                    for iy in 0..ih {
                        for ix in 0..iw {
                            // SAFETY: (n, ch, iy, ix) lies inside dx's shape.
                            unsafe { op.add(iy * os[2] + ix * os[3]).write(zero) }
                        }
                    }
                    own_window::<T, I>(
                        t,
                        gt,
                        (is, gs),
                        (n, ch),
                        [oh, ow],
                        [ih, iw],
                        covers,
                        |iy, ix, g| {
                            // SAFETY: (iy, ix) lies inside dx's plane, written by this task
                            // alone.
                            unsafe {
                                let o = op.add(iy * os[2] + ix * os[3]);
                                o.write(T::from_f64(o.read().to_f64() + g))
                            }
                        },
                    );
                }
                Ok(())
            });
        }
        return par_ranges(out.desc.shape[0] * c, grain, |r| {
            let mut acc = zeros(plane, || {
                format!("max pool gradient: no memory for a {ih}x{iw} plane of f64 sums")
            })?;
            for p in r {
                let (n, ch) = (p / c, p % c);
                acc.fill(0.0);
                own_window::<T, I>(
                    t,
                    gt,
                    (is, gs),
                    (n, ch),
                    [oh, ow],
                    [ih, iw],
                    covers,
                    |iy, ix, g| acc[iy * iw + ix] += g,
                );
                let base = out.desc.offset + n * os[0] + ch * os[1];
                let op = out.ptr::<T>(base);
                for (iy, row) in acc.chunks_exact(iw.max(1)).enumerate() {
                    if os[3] == 1 {
                        // SAFETY: row iy of dx's plane (n, ch) holds iw elements of unit
                        // stride, written by this task alone.
                        let o = unsafe { out.run_mut::<T>(base + iy * os[2], iw) };
                        for (o, &v) in o.iter_mut().zip(row) {
                            *o = T::from_f64(v);
                        }
                        continue;
                    }
                    for (ix, &v) in row.iter().enumerate() {
                        // SAFETY: (n, ch, iy, ix) lies inside dx's shape.
                        unsafe { op.add(iy * os[2] + ix * os[3]).write(T::from_f64(v)) }
                    }
                }
            }
            Ok(())
        });
    }
    // Average pools and resampling: each element of dx gathers its taps, in f64, separably:
    // for each input row the rows of grad it reads, weighted and summed along each output
    // column (`line`), then each element's column taps of that line.
    let plane = (ih * iw).max(1);
    let ow = if taps.spatial == 1 {
        gt.desc.shape[2]
    } else {
        gt.desc.shape[3]
    };
    if let Some(geometry) = taps.row_1d().filter(|_| gs[3] == 1 && os[3] == 1) {
        // Each window's weight, from the taps of the inputs it holds.
        let mut wgt: Vec<f64> = zeros(ow, || {
            format!("pool gradient: no memory for {ow} window weights")
        })?;
        for (o, wx) in taps.cols.taps.iter().copied() {
            if let Some(v) = wgt.get_mut(o) {
                *v = wx;
            }
        }
        return par_ranges(out.desc.shape[0] * c, (GRAIN / plane).max(1), |r| {
            for p in r {
                let (n, ch) = (p / c, p % c);
                // SAFETY: row (n, ch) of grad holds ow elements of unit stride, dx's iw,
                // written by this task alone.
                let (gr, dr) = unsafe {
                    (
                        gt.run::<T>(gt.desc.offset + n * gs[0] + ch * gs[1], ow),
                        out.run_mut::<T>(out.desc.offset + n * os[0] + ch * os[1], iw),
                    )
                };
                avg_grad_row_1d(gr, &wgt, dr, geometry);
            }
            Ok(())
        });
    }
    // The column taps as slices held here: the stores into dx could alias them behind the
    // shared taps.
    let (col_at, col_taps) = (&taps.cols.at[..], &taps.cols.taps[..]);
    // The number of taps of every input column where they all have the same, up to 4.
    let counts = || col_at.windows(2).map(|w| w[1] - w[0]);
    let uniform = counts()
        .min()
        .filter(|&l| (1..=4).contains(&l) && counts().max() == Some(l));
    par_ranges(out.desc.shape[0] * c, (GRAIN / 16 / plane).max(1), |r| {
        let mut line: Vec<f64> = zeros(ow, || {
            format!("pool gradient: no memory for a line of {ow} f64 sums")
        })?;
        for p in r {
            let (n, ch) = (p / c, p % c);
            // Pointers taken once: the stores below could alias the views' fields.
            let gbase = gt.desc.offset + n * gs[0] + ch * gs[1];
            let gp = gt.ptr::<T>(gbase).cast_const();
            let obase = out.desc.offset + n * os[0] + ch * os[1];
            let op = out.ptr::<T>(obase);
            for (iy, rows) in taps.rows.iter().enumerate() {
                line.fill(0.0);
                for &(oy, wy) in rows {
                    let gr = gp.wrapping_add(oy * gs[2]);
                    if gs[3] == 1 {
                        // SAFETY: row (n, ch, oy) of grad holds ow elements of unit stride.
                        let gr = unsafe { gt.run::<T>(gbase + oy * gs[2], ow) };
                        for (l, &v) in line.iter_mut().zip(gr) {
                            *l += wy * v.to_f64();
                        }
                        continue;
                    }
                    for (ox, l) in line.iter_mut().enumerate() {
                        // SAFETY: (n, ch, oy, ox) lies inside grad's shape.
                        *l += wy * unsafe { gr.add(ox * gs[3]).read() }.to_f64();
                    }
                }
                let gather = |ix: usize| -> f64 {
                    let cols = &col_taps[col_at[ix]..col_at[ix + 1]];
                    cols.iter().map(|&(ox, wx)| wx * line[ox]).sum()
                };
                if os[3] == 1 {
                    // SAFETY: row (n, ch, iy) of dx holds iw elements of unit stride, written
                    // by this task alone.
                    let o = unsafe { out.run_mut::<T>(obase + iy * os[2], iw) };
                    match uniform {
                        Some(1) => gather_row::<T, 1>(col_taps, &line, o),
                        Some(2) => gather_row::<T, 2>(col_taps, &line, o),
                        Some(3) => gather_row::<T, 3>(col_taps, &line, o),
                        Some(4) => gather_row::<T, 4>(col_taps, &line, o),
                        _ => {
                            for (ix, o) in o.iter_mut().enumerate() {
                                *o = T::from_f64(gather(ix));
                            }
                        }
                    }
                    continue;
                }
                for ix in 0..iw {
                    // SAFETY: (n, ch, iy, ix) lies inside dx's shape.
                    unsafe {
                        op.add(iy * os[2] + ix * os[3])
                            .write(T::from_f64(gather(ix)))
                    }
                }
            }
        }
        Ok(())
    })
}

/// One output row's or column's taps in [`resample_typed`]: the source range (adaptive), the
/// source index (nearest), or the two sources and the weight of the second (bilinear).
type LineTap = (usize, usize, f64);

/// `interpolate` nearest or bilinear on x and output of float storage type `T` whose rows have
/// unit stride, plane by plane with [`resample_typed`]'s taps: nearest gathers each output row
/// from its input row; bilinear interpolates every input row along the columns once (in f64,
/// as `(1 - lx) a + lx b`), then blends each output row's two rows of those (`(1 - ly) top +
/// ly bottom`, rounded once to `T`), the same operations in the same order as the element
/// loop, so the same results. `false` (nothing run) for other kinds and layouts.
fn resample_rows<T: F64Store>(
    g: &ResampleGeom,
    x: &TView,
    out: &TView,
    (row_taps, col_taps): (&[LineTap], &[LineTap]),
) -> Result<bool> {
    let [oh, ow] = g.out;
    let [ih, iw] = g.input;
    let (xs, os) = (&x.desc.strides, &out.desc.strides);
    let bilinear = matches!(g.kind, Resample::Bilinear { .. });
    let kind = bilinear || matches!(g.kind, Resample::Nearest);
    let same = out.desc.dtype == x.desc.dtype;
    let unit = (xs[3] == 1 || iw <= 1) && (os[3] == 1 || ow <= 1);
    // Bilinear keeps a plane of row interpolations a task: up to 32 MiB of them, else the
    // element loop.
    let lines_len = if bilinear {
        ih.checked_mul(ow)
    } else {
        Some(0)
    };
    let small = lines_len.is_some_and(|n| n <= 1 << 22);
    if !kind || !same || !unit || !small || ow == 0 || iw == 0 || ih == 0 {
        return Ok(false);
    }
    let lines_len = lines_len.unwrap_or(0);
    let plane = (oh * ow).max(1);
    par_ranges(g.n * g.c, (GRAIN / 4 / plane).max(1), |r| {
        // The plane's input rows interpolated along the columns (bilinear).
        let mut lines = zeros(lines_len, || {
            format!("interpolate: no memory for {ih}x{ow} f64 row interpolations")
        })?;
        for p in r {
            let (n, ch) = (p / g.c, p % g.c);
            let xb = x.desc.offset + n * xs[0] + ch * xs[1];
            // SAFETY: row iy < ih of x's plane holds iw elements of unit stride.
            let row = |iy: usize| unsafe { x.run::<T>(xb + iy * xs[2], iw) };
            if bilinear {
                for (iy, line) in lines.chunks_exact_mut(ow).enumerate() {
                    let xr = row(iy);
                    for (l, &(x0, x1, lx)) in line.iter_mut().zip(col_taps) {
                        *l = (1.0 - lx) * xr[x0].to_f64() + lx * xr[x1].to_f64();
                    }
                }
            }
            for (oy, &(y0, y1, ly)) in row_taps.iter().enumerate() {
                let ob = out.desc.offset + n * os[0] + ch * os[1] + oy * os[2];
                // SAFETY: output row (n, ch, oy) holds ow elements of unit stride, written by
                // this task alone.
                let o = unsafe { out.run_mut::<T>(ob, ow) };
                if bilinear {
                    let (top, bottom) = (&lines[y0 * ow..][..ow], &lines[y1 * ow..][..ow]);
                    for ((o, &t), &b) in o.iter_mut().zip(top).zip(bottom) {
                        *o = T::from_f64((1.0 - ly) * t + ly * b);
                    }
                } else {
                    let xr = row(y0);
                    for (o, &(x0, _, _)) in o.iter_mut().zip(col_taps) {
                        *o = xr[x0];
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(true)
}

/// The kernel of one `adaptive_avg_pool2d` or `interpolate` call, in f64.
pub(crate) fn resample_kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let x = call
        .inputs
        .first()
        .and_then(|t| t.as_ref())
        .ok_or_else(|| anyaccel_hal::Error::internal("resample: input missing"))?;
    let g = ResampleGeom::of(&call.op, &attrs, x.desc())?;
    Ok(Box::new(move |b: &Bound| {
        let (x, out) = (b.input(0)?, b.out(0));
        with_float!(x.desc.dtype, T => resample_typed::<T>(&g, x, out))
    }))
}

/// One `adaptive_avg_pool2d` or `interpolate` call on float storage type `T`.
fn resample_typed<T: F64Store>(g: &ResampleGeom, x: &TView, out: &TView) -> Result<()> {
    let (xs, os) = (&x.desc.strides, &out.desc.strides);
    let [oh, ow] = g.out;
    let [ih, iw] = g.input;
    // Bicubic: the taps of every output row and column, once per call rather than per element.
    let cubic = |d: usize| -> Vec<[(usize, f64); 4]> {
        if matches!(g.kind, Resample::Bicubic { .. }) {
            (0..g.out[d]).map(|o| g.cubic_taps(d, o)).collect()
        } else {
            Vec::new()
        }
    };
    let (cubic_rows, cubic_cols) = (cubic(0), cubic(1));
    // The other kinds' taps of every output row and column, once per call: the source range
    // (adaptive), the source index (nearest), the two sources and the weight of the second
    // (bilinear).
    let taps = |d: usize, len: usize| -> Vec<LineTap> {
        let (inp, outp) = (g.input[d], g.out[d]);
        (0..outp)
            .map(|o| match g.kind {
                Resample::AdaptiveAvg => (o * inp / outp, ((o + 1) * inp).div_ceil(outp), 0.0),
                Resample::Nearest => (o * inp / outp, 0, 0.0),
                Resample::Bilinear { .. } => {
                    let (num, den) = g.source(d, o);
                    let last = len.saturating_sub(1);
                    let i0 = ((num / den) as usize).min(last);
                    let l = (num - i0 as u64 * den) as f64 / den as f64;
                    (i0, (i0 + 1).min(last), l.min(1.0))
                }
                Resample::Bicubic { .. } => (0, 0, 0.0),
            })
            .collect()
    };
    let (row_taps, col_taps) = (taps(0, ih), taps(1, iw));
    if resample_rows::<T>(g, x, out, (&row_taps, &col_taps))? {
        return Ok(());
    }
    if matches!(g.kind, Resample::Nearest | Resample::Bilinear { .. }) {
        // Row by row of the output, the kind decided once.
        let bilinear = matches!(g.kind, Resample::Bilinear { .. });
        return par_ranges(g.n * g.c * oh, (GRAIN / 4 / ow.max(1)).max(1), |r| {
            for row in r {
                let (plane, oy) = (row / oh, row % oh);
                let (n, ch) = (plane / g.c, plane % g.c);
                let xb = x.desc.offset + n * xs[0] + ch * xs[1];
                let ob = out.desc.offset + n * os[0] + ch * os[1] + oy * os[2];
                let (y0, y1, ly) = row_taps[oy];
                // SAFETY (every access): the taps lie inside x's plane, (n, ch, oy, ox) inside
                // the output's shape; each output row is written by one task.
                let at = |iy: usize, ix: usize| unsafe { x.get::<T>(xb + iy * xs[2] + ix * xs[3]) };
                for (ox, &(x0, x1, lx)) in col_taps.iter().enumerate() {
                    let v = if bilinear {
                        let f = |iy, ix| at(iy, ix).to_f64();
                        let top = (1.0 - lx) * f(y0, x0) + lx * f(y0, x1);
                        let bottom = (1.0 - lx) * f(y1, x0) + lx * f(y1, x1);
                        T::from_f64((1.0 - ly) * top + ly * bottom)
                    } else {
                        at(y0, x0)
                    };
                    // SAFETY: as above.
                    unsafe { out.set(ob + ox * os[3], v) }
                }
            }
            Ok(())
        });
    }
    for_positions([g.n, g.c, oh, ow], GRAIN / 16, |n, ch, oy, ox| {
        let xb = x.desc.offset + n * xs[0] + ch * xs[1];
        // SAFETY: every (iy, ix) below lies inside x's plane.
        let at =
            |iy: usize, ix: usize| unsafe { x.get::<T>(xb + iy * xs[2] + ix * xs[3]) }.to_f64();
        let ((ry0, ry1, ly), (rx0, rx1, lx)) = (row_taps[oy], col_taps[ox]);
        let y = match g.kind {
            Resample::AdaptiveAvg => {
                let ((ys, ye), (x0, x1)) = ((ry0, ry1), (rx0, rx1));
                let mut sum = 0.0;
                for iy in ys..ye {
                    for ix in x0..x1 {
                        sum += at(iy, ix);
                    }
                }
                sum / ((ye - ys) * (x1 - x0)) as f64
            }
            Resample::Nearest => at(ry0, rx0),
            Resample::Bilinear { .. } => {
                let ((y0, y1), (x0, x1)) = ((ry0, ry1), (rx0, rx1));
                let top = (1.0 - lx) * at(y0, x0) + lx * at(y0, x1);
                let bottom = (1.0 - lx) * at(y1, x0) + lx * at(y1, x1);
                (1.0 - ly) * top + ly * bottom
            }
            Resample::Bicubic { .. } => {
                let (rows, cols) = (&cubic_rows[oy], &cubic_cols[ox]);
                rows.iter()
                    .map(|&(iy, wy)| wy * cols.iter().map(|&(ix, wx)| wx * at(iy, ix)).sum::<f64>())
                    .sum()
            }
        };
        // SAFETY: (n, ch, oy, ox) lies inside the output's shape.
        unsafe {
            out.set(
                out.desc.offset + n * os[0] + ch * os[1] + oy * os[2] + ox * os[3],
                T::from_f64(y),
            )
        }
    })
}

/// The kernel of one `group_norm` call: per (n, group), the mean and biased variance in f64,
/// then (x - mean) / sqrt(var + eps) * weight + bias per channel.
pub(crate) fn group_norm_kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let desc = |i: usize| super::input_desc(call, i);
    let x = desc(0).ok_or_else(|| anyaccel_hal::Error::internal("group_norm: input missing"))?;
    let g = GroupGeom::of(&call.op, &attrs, x, desc(1), desc(2))?;
    let eps = crate::plan::eps(&attrs)?;
    let (has_w, has_b) = (desc(1).is_some(), desc(2).is_some());
    let rank = x.rank();
    Ok(Box::new(move |b: &Bound| {
        let (x, out) = (b.input(0)?, b.out(0));
        let w = if has_w { Some(b.input(1)?) } else { None };
        let bias = if has_b { Some(b.input(2)?) } else { None };
        let cg = g.c / g.groups;
        if group_norm_f32(&g, x, out, w, bias, eps)? {
            return Ok(());
        }
        // The element offsets of spatial index s in x and out.
        let spatial = |t: &super::TView, mut s: usize| {
            let mut off = 0;
            for d in (2..rank).rev() {
                let size = t.desc.shape[d].max(1);
                off += (s % size) * t.desc.strides[d];
                s /= size;
            }
            off
        };
        par_ranges(g.n * g.groups, 1, |r| {
            for ng in r {
                let (n, grp) = (ng / g.groups, ng % g.groups);
                let at = |t: &super::TView, j: usize| {
                    let (ci, s) = (j / g.spatial.max(1), j % g.spatial.max(1));
                    t.desc.offset
                        + n * t.desc.strides[0]
                        + (grp * cg + ci) * t.desc.strides[1]
                        + spatial(t, s)
                };
                let len = g.len();
                // SAFETY: j < the group's length: inside x's shape.
                let vals: Vec<f64> = (0..len).map(|j| f(unsafe { load(x, at(x, j)) })).collect();
                let mean = vals.iter().sum::<f64>() / len as f64;
                let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / len as f64;
                let den = (var + eps).sqrt();
                for (j, v) in vals.iter().enumerate() {
                    let ch = grp * cg + j / g.spatial.max(1);
                    // SAFETY: ch < C, the weight's and bias's single dimension.
                    let wv = w.map_or(1.0, |t| {
                        f(unsafe { load(t, t.desc.offset + ch * t.desc.strides[0]) })
                    });
                    let bv = bias.map_or(0.0, |t| {
                        f(unsafe { load(t, t.desc.offset + ch * t.desc.strides[0]) })
                    });
                    // SAFETY: as for x: out has x's shape.
                    unsafe { store(out, at(out, j), Val::F((v - mean) / den * wv + bv)) }
                }
            }
            Ok(())
        })
    }))
}

/// `group_norm` on contiguous f32 x and output: each group (contiguous, `C / G` channels of
/// one sample) normalised as one `layer_norm` row by the vector row kernel, then each
/// channel's weight and bias applied in place. `false` (nothing run) for other dtypes and
/// layouts.
fn group_norm_f32(
    g: &GroupGeom,
    x: &super::TView,
    out: &super::TView,
    w: Option<&super::TView>,
    bias: Option<&super::TView>,
    eps: f64,
) -> Result<bool> {
    let len = g.c / g.groups.max(1) * g.spatial;
    if !f32_contiguous(x) || !f32_contiguous(out) || len == 0 || g.n == 0 {
        return Ok(false);
    }
    let scale = w.map_or_else(|| vec![1.0; g.c], vector_f32);
    let shift = bias.map_or_else(|| vec![0.0; g.c], vector_f32);
    let affine = w.is_some() || bias.is_some();
    let norm = vmath::Norm {
        rms: false,
        weight: None,
        bias: None,
        eps,
    };
    let groups = g.n * g.groups;
    par_ranges(groups, (GRAIN / len).max(1), |r| {
        for ng in r {
            // SAFETY: group ng is the `len` elements from ng len of the contiguous x and
            // output (x's shape, [N, C, *]); this task alone writes its output elements.
            let (xs, os) = unsafe {
                (
                    x.run(x.desc.offset + ng * len, len),
                    out.run_mut(out.desc.offset + ng * len, len),
                )
            };
            vmath::norm_rows(xs, os, len, norm);
            if affine {
                let c0 = (ng % g.groups) * (g.c / g.groups);
                for (ci, plane) in os.chunks_exact_mut(g.spatial).enumerate() {
                    let (a, b) = (scale[c0 + ci], shift[c0 + ci]);
                    for v in plane {
                        *v = *v * a + b;
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(true)
}

/// `len` zeros, or an out-of-memory error with the message `what` gives.
fn zeros<T: Copy + Default>(len: usize, what: impl FnOnce() -> String) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| anyaccel_hal::Error::out_of_memory(what()))?;
    v.resize(len, T::default());
    Ok(v)
}

/// A contiguous f32 tensor.
pub(super) fn f32_contiguous(t: &super::TView) -> bool {
    t.desc.dtype == DType::F32 && t.desc.is_contiguous()
}

/// Stores channel `ch`'s mean and invstd into batch_norm's outputs 1 and 2 ([C] each).
fn store_stats(outs: [&super::TView; 2], ch: usize, values: [f64; 2]) {
    for (t, v) in outs.into_iter().zip(values) {
        // SAFETY: ch < C, the statistics' single dimension.
        unsafe { store(t, t.desc.offset + ch * t.desc.strides[0], Val::F(v)) };
    }
}

/// `batch_norm` on contiguous f32 x and output: per channel, the mean and the squares about it
/// summed in f64 lanes plane by plane (planes in order), then each element
/// `(x - mean) (invstd weight) + bias` in f64, rounded once. `false` (nothing run) for other
/// dtypes and layouts.
#[allow(clippy::too_many_arguments)]
fn batch_norm_f32(
    g: &BatchGeom,
    x: &super::TView,
    [out, mean_out, invstd_out]: [&super::TView; 3],
    [rm, rv, w, bias]: [Option<&super::TView>; 4],
    eps: f64,
) -> Result<bool> {
    let (s, plane) = (g.spatial, g.c * g.spatial);
    if !f32_contiguous(x) || !f32_contiguous(out) || g.len() == 0 {
        return Ok(false);
    }
    let chan = |t: Option<&super::TView>, ch: usize| {
        // SAFETY: ch < C, the single dimension of the [C] inputs.
        t.map(|t| f(unsafe { load(t, t.desc.offset + ch * t.desc.strides[0]) }))
    };
    let n = g.len() as f64;
    par_ranges(g.c, (GRAIN / g.len()).max(1), |r| {
        for ch in r {
            let at = |t: &super::TView, i: usize| t.desc.offset + i * plane + ch * s;
            // SAFETY: channel ch of sample i is the `s` elements from `at` of a contiguous
            // tensor of x's shape ([N, C, *]); the output's are written by this task alone.
            let xs = |i: usize| unsafe { x.run::<f32>(at(x, i), s) };
            let (mean, invstd) = match (g.training, chan(rm, ch), chan(rv, ch)) {
                (false, Some(m), Some(v)) => (m, 1.0 / (v + eps).sqrt()),
                _ => {
                    let sum: f64 = (0..g.n).map(|i| vmath::sum_by(xs(i), f64::from)).sum();
                    let mean = sum / n;
                    let q: f64 = (0..g.n)
                        .map(|i| vmath::sum_by(xs(i), |v| (f64::from(v) - mean).powi(2)))
                        .sum();
                    (mean, 1.0 / (q / n + eps).sqrt())
                }
            };
            let k = invstd * chan(w, ch).unwrap_or(1.0);
            let b0 = chan(bias, ch).unwrap_or(0.0);
            for i in 0..g.n {
                // SAFETY: as for x.
                let os = unsafe { out.run_mut(at(out, i), s) };
                vmath::map(xs(i), os, &|v: f32| ((f64::from(v) - mean) * k + b0) as f32);
            }
            store_stats([mean_out, invstd_out], ch, [mean, invstd]);
        }
        Ok(())
    })?;
    Ok(true)
}

/// The kernel of one `batch_norm` call: per channel, the batch's mean and biased variance in
/// f64 (training) or the running statistics, then (x - mean) * invstd * weight + bias; the mean
/// and invstd are outputs 1 and 2.
pub(crate) fn batch_norm_kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let desc = |i: usize| super::input_desc(call, i);
    let x = desc(0).ok_or_else(|| anyaccel_hal::Error::internal("batch_norm: input missing"))?;
    let g = BatchGeom::of(&call.op, &attrs, x, [desc(1), desc(2), desc(3), desc(4)])?;
    let eps = crate::plan::eps(&attrs)?;
    let given: Vec<bool> = (0..5).map(|i| desc(i).is_some()).collect();
    let rank = x.rank();
    Ok(Box::new(move |b: &Bound| {
        let x = b.input(0)?;
        let (out, mean_out, invstd_out) = (b.out(0), b.out(1), b.out(2));
        // The [C] inputs that were given, by position.
        let vec_in = |i: usize| -> Result<Option<&super::TView>> {
            if given[i] {
                b.input(i).map(Some)
            } else {
                Ok(None)
            }
        };
        let (rm, rv, w, bias) = (vec_in(1)?, vec_in(2)?, vec_in(3)?, vec_in(4)?);
        if batch_norm_f32(&g, x, [out, mean_out, invstd_out], [rm, rv, w, bias], eps)? {
            return Ok(());
        }
        // SAFETY (every load of a [C] input below): ch < C, its single dimension.
        let chan = |t: &super::TView, ch: usize| {
            f(unsafe { load(t, t.desc.offset + ch * t.desc.strides[0]) })
        };
        let at = |t: &super::TView, j: usize, ch: usize| {
            let (n, mut s) = (j / g.spatial.max(1), j % g.spatial.max(1));
            let mut off = t.desc.offset + n * t.desc.strides[0] + ch * t.desc.strides[1];
            for d in (2..rank).rev() {
                let size = t.desc.shape[d].max(1);
                off += (s % size) * t.desc.strides[d];
                s /= size;
            }
            off
        };
        par_ranges(g.c, 1, |r| {
            for ch in r {
                let len = g.len();
                // SAFETY: j < N x spatial: inside x's shape.
                let vals: Vec<f64> = (0..len)
                    .map(|j| f(unsafe { load(x, at(x, j, ch)) }))
                    .collect();
                let (mean, invstd) = match (g.training, rm, rv) {
                    (false, Some(rm), Some(rv)) => {
                        (chan(rm, ch), 1.0 / (chan(rv, ch) + eps).sqrt())
                    }
                    _ => {
                        let mean = vals.iter().sum::<f64>() / len as f64;
                        let var =
                            vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / len as f64;
                        (mean, 1.0 / (var + eps).sqrt())
                    }
                };
                let (wv, bv) = (
                    w.map_or(1.0, |t| chan(t, ch)),
                    bias.map_or(0.0, |t| chan(t, ch)),
                );
                for (j, v) in vals.iter().enumerate() {
                    // SAFETY: as for x: out has x's shape.
                    unsafe { store(out, at(out, j, ch), Val::F((v - mean) * invstd * wv + bv)) }
                }
                store_stats([mean_out, invstd_out], ch, [mean, invstd]);
            }
            Ok(())
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `avg_grad_row_1d` against the gather it replaces: each input's taps (`j` in
    /// `0..kernel`, window `(i + padding - j) / stride` where that divides) summed from `-0` as
    /// `w (0 + g)` in f64 and rounded once, bit for bit, for f32 and f64 rows.
    #[test]
    fn avg_grad_row_1d_matches_the_gather() {
        fn check<T: F64Store + std::fmt::Debug>(
            g: &[T],
            w: &[f64],
            s: usize,
            p: usize,
            k: usize,
            iw: usize,
        ) {
            let mut got = vec![T::from_f64(f64::NAN); iw];
            avg_grad_row_1d(g, w, &mut got, (s, p, k));
            for (i, got) in got.iter().enumerate() {
                let mut want = -0.0;
                for j in 0..k {
                    let Some(t) = (i + p).checked_sub(j) else {
                        continue;
                    };
                    if t % s == 0 && t / s < g.len() {
                        want += w[t / s] * (0.0 + g[t / s].to_f64());
                    }
                }
                let (a, b) = (got.to_f64(), T::from_f64(want).to_f64());
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "s{s} k{k} p{p} iw{iw} i{i}: {a:e} vs {b:e}"
                );
            }
        }
        let mut next = rng(0x9e37_79b9_7f4a_7c15);
        for_each_row(|stride, kernel, padding, iw, ow| {
            let g = gradients(&mut next, ow);
            let w: Vec<f64> = (0..ow)
                .map(|_| 1.0 / (1 + next() % kernel) as f64)
                .collect();
            check(&g, &w, stride, padding, kernel, iw);
            let g64: Vec<f64> = g.iter().map(|&v| f64::from(v) / 3.0).collect();
            check(&g64, &w, stride, padding, kernel, iw);
        });
    }

    /// A xorshift generator from `seed`.
    fn rng(mut seed: u64) -> impl FnMut() -> usize {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as usize
        }
    }

    /// `f(stride, kernel, padding, iw, ow)` for every 1-D pool row of stride up to 4 whose
    /// inputs lie in at most two windows, over rows of 1 to 40 inputs.
    fn for_each_row(mut f: impl FnMut(usize, usize, usize, usize, usize)) {
        for stride in 1..=4usize {
            for kernel in 1..=2 * stride {
                for padding in 0..=kernel / 2 {
                    for iw in [1usize, 2, 5, 17, 40] {
                        if iw + 2 * padding >= kernel {
                            f(
                                stride,
                                kernel,
                                padding,
                                iw,
                                (iw + 2 * padding - kernel) / stride + 1,
                            );
                        }
                    }
                }
            }
        }
    }

    /// `ow` gradients: -0, huge and ordinary values.
    fn gradients(next: &mut impl FnMut() -> usize, ow: usize) -> Vec<f32> {
        (0..ow)
            .map(|_| match next() % 6 {
                0 => -0.0,
                1 => 3e38,
                _ => (next() % 2001) as f32 / 7.0 - 140.0,
            })
            .collect()
    }

    /// `gather_row` against the gather's sum, bit for bit, for every tap count it takes.
    #[test]
    fn gather_row_matches_the_gather() {
        let line: Vec<f64> = (0..37)
            .map(|i| f64::from(i * 7919 % 113) / 9.0 - 6.0)
            .collect();
        for l in 1..=4usize {
            let iw = 23;
            let taps: Vec<(usize, f64)> = (0..iw * l)
                .map(|t| (t * 31 % line.len(), 1.0 / (1 + t % 5) as f64))
                .collect();
            let mut got = vec![f32::NAN; iw];
            match l {
                1 => gather_row::<f32, 1>(&taps, &line, &mut got),
                2 => gather_row::<f32, 2>(&taps, &line, &mut got),
                3 => gather_row::<f32, 3>(&taps, &line, &mut got),
                _ => gather_row::<f32, 4>(&taps, &line, &mut got),
            }
            for (ix, got) in got.iter().enumerate() {
                let want: f64 = taps[ix * l..][..l].iter().map(|&(o, w)| w * line[o]).sum();
                assert_eq!(
                    got.to_bits(),
                    (want as f32).to_bits(),
                    "{l} taps, column {ix}"
                );
            }
        }
    }

    /// `max_grad_row_1d` against a scatter of each gradient whose index lies in its own
    /// window, summed in f64 in output order and rounded once: every stride to 4 (the last
    /// without a window kernel), kernel and padding, indices inside, outside and before their
    /// windows and just after them, and gradients of -0, huge and ordinary values.
    #[test]
    fn max_grad_row_1d_matches_a_scatter() {
        let mut next = rng(0x2545_f491_4f6c_dd1d);
        for_each_row(|stride, kernel, padding, iw, ow| {
            let start = |m: usize| (m * stride) as i64 - padding as i64;
            let idx: Vec<i64> = (0..ow)
                .map(|m| match next() % 8 {
                    0 => -1,
                    1 => iw as i64 + 3,
                    2 => start(m) - 1,
                    3 => start(m) + kernel as i64,
                    _ => start(m) + (next() % kernel) as i64,
                })
                .collect();
            let g = gradients(&mut next, ow);
            let mut want = vec![0f64; iw];
            for (m, (&k, &g)) in idx.iter().zip(&g).enumerate() {
                let inside = (start(m)..start(m) + kernel as i64).contains(&k);
                if inside && (0..iw as i64).contains(&k) {
                    want[k as usize] += f64::from(g);
                }
            }
            let mut got = vec![f32::NAN; iw];
            max_grad_row_1d(&idx, &g, &mut got, (stride, padding, kernel));
            let idx32: Vec<i32> = idx.iter().map(|&k| k as i32).collect();
            let mut got32 = vec![f32::NAN; iw];
            max_grad_row_1d(&idx32, &g, &mut got32, (stride, padding, kernel));
            for i in 0..iw {
                let what = format!("s{stride} k{kernel} p{padding} iw{iw} i{i}");
                assert_eq!(got[i].to_bits(), (want[i] as f32).to_bits(), "{what}");
                assert_eq!(got32[i].to_bits(), got[i].to_bits(), "{what} i32");
            }
        });
    }
}
