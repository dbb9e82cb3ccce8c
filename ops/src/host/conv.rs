//! `conv1d` and `conv2d`: one output element at a time, accumulating in f64.

use anyaccel_hal::{OpCall, Result};

use super::layout::{par_ranges, GRAIN};
use super::scalar::{load, store, Val};
use super::{Body, Bound};
use crate::attrs::Attrs;
use crate::conv::ConvGeom;

fn f(v: Val) -> f64 {
    match v {
        Val::F(x) => x,
        Val::I(i) => i as f64,
    }
}

/// The kernel of one convolution call.
pub(crate) fn kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let desc = |i: usize| {
        call.inputs
            .get(i)
            .and_then(|t| t.as_ref())
            .map(|t| t.desc())
    };
    let missing = || anyaccel_hal::Error::internal("conv: input missing");
    let (x, w) = (desc(0).ok_or_else(missing)?, desc(1).ok_or_else(missing)?);
    let g = ConvGeom::of(&call.op, &attrs, x, w, desc(2))?;
    let has_bias = desc(2).is_some();
    Ok(Box::new(move |b: &Bound| {
        let (x, w, out) = (b.input(0)?, b.input(1)?, b.out(0));
        let bias = if has_bias { Some(b.input(2)?) } else { None };
        let (xs, ws, os) = (
            g.strides4(&x.desc.strides),
            g.strides4(&w.desc.strides),
            g.strides4(&out.desc.strides),
        );
        let (cg, og) = (g.cg(), g.og());
        let [kh, kw] = g.kernel;
        let [oh, ow] = g.out;
        let [ih, iw] = g.input;
        let work = cg.saturating_mul(kh).saturating_mul(kw).max(1);
        let total = g.n * g.o * oh * ow;
        par_ranges(total, (GRAIN / work).max(1), |r| {
            for lin in r {
                let ox = lin % ow;
                let oy = (lin / ow) % oh;
                let oc = (lin / (ow * oh)) % g.o;
                let n = lin / (ow * oh * g.o);
                let grp = oc / og;
                let mut acc = match bias {
                    // SAFETY: oc < O, the bias's single dimension.
                    Some(t) => f(unsafe { load(t, t.desc.offset + oc * t.desc.strides[0]) }),
                    None => 0.0,
                };
                for ci in 0..cg {
                    let c = grp * cg + ci;
                    let xb = x.desc.offset + n * xs[0] + c * xs[1];
                    let wb = w.desc.offset + oc * ws[0] + ci * ws[1];
                    for ky in 0..kh {
                        let iy = (oy * g.stride[0] + ky * g.dilation[0]).wrapping_sub(g.padding[0]);
                        if iy >= ih {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix =
                                (ox * g.stride[1] + kx * g.dilation[1]).wrapping_sub(g.padding[1]);
                            if ix >= iw {
                                continue;
                            }
                            // SAFETY: n, c, iy, ix and oc, ci, ky, kx lie inside x's and w's
                            // shapes, whose layouts were validated against their buffers.
                            let (xv, wv) = unsafe {
                                (
                                    load(x, xb + iy * xs[2] + ix * xs[3]),
                                    load(w, wb + ky * ws[2] + kx * ws[3]),
                                )
                            };
                            acc += f(xv) * f(wv);
                        }
                    }
                }
                // SAFETY: lin < the output's element count.
                unsafe {
                    store(
                        out,
                        out.desc.offset + n * os[0] + oc * os[1] + oy * os[2] + ox * os[3],
                        Val::F(acc),
                    )
                }
            }
            Ok(())
        })
    }))
}
