//! The random ops on the host: `uniform`, `normal`, `bernoulli`, `dropout`, by the recipes of
//! [`crate::random`].

use anyaccel_hal::{DType, OpCall, Result};

use super::layout::{par_ranges, walk, GRAIN};
use super::scalar::{load, store, Val};
use super::{Body, Bound, TView};
use crate::attrs::Attrs;
use crate::catalog::{op_of, Op};
use crate::random::{normal_z, params, u24, u32d, Stream};

/// Writes `value(input value, word)` to every element of `out` (the input, when there is one,
/// has the output's shape); the word of element `i` is the stream's word `i`, taken a block
/// of four at a time.
fn generate(
    x: Option<&TView>,
    out: &TView,
    stream: Stream,
    value: impl Fn(Option<Val>, u32) -> Val + Sync,
) -> Result<()> {
    let none = [0usize; 0];
    let x_strides: &[usize] = x.map_or(&none, |x| &x.desc.strides);
    let x_offset = x.map_or(0, |x| x.desc.offset);
    par_ranges(out.desc.numel(), GRAIN, |r| {
        let mut block = (u64::MAX, [0u32; 4]);
        let strides = if x.is_some() {
            x_strides
        } else {
            // Without an input, walk the output's strides twice.
            &out.desc.strides
        };
        walk(
            &out.desc.shape,
            [strides, &out.desc.strides],
            [x_offset, out.desc.offset],
            r,
            |i, [ox, oo]| {
                let b = i as u64 / 4;
                if block.0 != b {
                    block = (b, stream.block(b));
                }
                let w = block.1[i % 4];
                // SAFETY: the offsets come from the views' layouts.
                unsafe {
                    let v = x.map(|x| load(x, ox));
                    store(out, oo, value(v, w));
                }
            },
        );
        Ok(())
    })
}

fn float(v: Option<Val>) -> f64 {
    match v {
        Some(Val::F(f)) => f,
        Some(Val::I(i)) => i as f64,
        None => 0.0,
    }
}

/// `uniform`, `normal`, `bernoulli` and `dropout`.
pub(crate) fn kernel(call: &OpCall) -> Result<Box<Body>> {
    let a = Attrs::of(call)?;
    let stream = Stream::of(&a)?;
    let wide = call.outputs[0].dtype() == DType::F64;
    let kind = op_of(&call.op)?;
    let (pa, pb) = params(&a, kind)?;
    Ok(match kind {
        Op::Uniform => {
            let (low, span) = (pa, pb);
            Box::new(move |b: &Bound| {
                generate(None, b.out(0), stream, |_, w| {
                    Val::F(if wide {
                        low + span * u32d(w)
                    } else {
                        f64::from(low as f32 + span as f32 * u24(w))
                    })
                })
            })
        }
        Op::Normal => {
            let (mean, std) = (pa, pb);
            Box::new(move |b: &Bound| {
                generate(None, b.out(0), stream, |_, w| {
                    let z = normal_z(w);
                    Val::F(if wide {
                        mean + std * f64::from(z)
                    } else {
                        f64::from(mean as f32 + std as f32 * z)
                    })
                })
            })
        }
        Op::Bernoulli => Box::new(move |b: &Bound| {
            generate(Some(b.input(0)?), b.out(0), stream, |p, w| {
                let p = float(p);
                let hit = if wide { u32d(w) < p } else { u24(w) < p as f32 };
                Val::F(if hit { 1.0 } else { 0.0 })
            })
        }),
        _ => {
            let (p, scale) = (pa, pb);
            Box::new(move |b: &Bound| {
                generate(Some(b.input(0)?), b.out(0), stream, |x, w| {
                    let x = float(x);
                    Val::F(if wide {
                        let m = if u32d(w) < p { 0.0 } else { 1.0 };
                        x * m * scale
                    } else {
                        let m = if u24(w) < p as f32 { 0.0 } else { 1.0 };
                        f64::from(x as f32 * m * scale as f32)
                    })
                })
            })
        }
    })
}
