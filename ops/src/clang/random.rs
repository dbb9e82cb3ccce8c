//! `uniform`, `normal`, `bernoulli` and `dropout` in the shared C dialect (`random.h`).

use anyaccel_hal::{DType, KernelArg, OpCall, Result};

use super::elementwise::{input, output, run_ew};
use super::{buf, dtype_defs, Ctx, Family, KernelSpec, Layouts};
use crate::attrs::Attrs;
use crate::catalog::{op_of, Op};
use crate::random::{params, Stream};

pub(crate) fn launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = Attrs::of(call)?;
    let stream = Stream::of(&a)?;
    let out = output(call, 0)?;
    let wide = out.dtype() == DType::F64;
    // A parameter as the kernels take it: the bits of an f64, or of an f32 in the low half.
    let param = |v: f64| {
        KernelArg::scalar(if wide {
            v.to_bits()
        } else {
            u64::from((v as f32).to_bits())
        })
    };
    let kind = op_of(op)?;
    let (entry, flag) = match kind {
        Op::Uniform => ("rnd_draw", "RND_UNIFORM"),
        Op::Normal => ("rnd_draw", "RND_NORMAL"),
        Op::Bernoulli => ("rnd_mask", "RND_BERNOULLI"),
        _ => ("rnd_mask", "RND_DROPOUT"),
    };
    let (pa, pb) = params(&a, kind)?;
    let spec = KernelSpec::new(Family::Random, entry)
        .flag(flag)
        .def("RND_WIDE", wide as u8);
    let spec = dtype_defs(spec, "X", out.dtype());
    let mut layouts = Layouts::new(out.shape()).tensor(out);
    let mut buffers = vec![buf(out)];
    if matches!(kind, Op::Bernoulli | Op::Dropout) {
        let x = input(call, 0)?;
        layouts = layouts.tensor(x);
        buffers.push(buf(x));
    }
    let tail = vec![
        KernelArg::scalar(stream.seed),
        KernelArg::scalar(stream.offset),
        param(pa),
        param(pb),
    ];
    run_ew(ctx, op, spec, layouts, buffers, tail)
}
