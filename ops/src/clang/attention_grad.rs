//! `attention_backward` (`attention_grad.h`): per-row statistics, then dq per query row and dk,
//! dv per key row, into f32 tensors cast into the outputs.

use anyaccel_hal::{KernelArg, OpCall, Result};

use super::{buf, dtype_defs, Ctx, Family, KernelSpec, EW_GROUPS};
use crate::attention::{Backward, MaskMode};

/// The kernels' `AbDims` struct.
fn dims(b: &Backward) -> KernelArg {
    let mut bytes = Vec::with_capacity(112);
    for v in [
        b.geo.lq as i64,
        b.geo.lk as i64,
        b.d as i64,
        b.dv as i64,
        b.hq as i64,
        b.geo.group as i64,
        b.geo.shift,
        b.geo.window as i64,
    ] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(&(b.scale as f32).to_le_bytes());
    bytes.extend_from_slice(&(b.geo.softcap as f32).to_le_bytes());
    // The mask's first element in its buffer, and its strides.
    let (mo, ms) = match &b.mask {
        Some((m, st)) => (
            m.view().offset() / m.dtype().size_in_bytes() + m.desc().offset,
            *st,
        ),
        None => (0, [0; 4]),
    };
    for v in [mo, ms[0], ms[1], ms[2], ms[3]] {
        bytes.extend_from_slice(&(v as i64).to_le_bytes());
    }
    KernelArg::Bytes(bytes)
}

pub(crate) fn launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let b = Backward::prepare(ctx.queue, call)?;
    if b.rows > 0 && b.keys > 0 {
        let spec = |entry: &'static str, flag: &str| {
            let mut s = KernelSpec::new(Family::AttnGrad, entry)
                .flag(flag)
                .def("AB_MASK", b.mask_mode.code());
            if b.geo.causal {
                s = s.flag("AB_CAUSAL");
            }
            dtype_defs(s, "X", b.q.dtype())
        };
        let mask = match (&b.mask, b.mask_mode) {
            (Some((m, _)), MaskMode::Bool | MaskMode::Additive) => buf(m),
            _ => buf(&b.q),
        };
        let stats = ctx.scratch(b.rows * 12)?;
        let n = |v: usize| KernelArg::scalar(v as i64);
        let st = || KernelArg::Buffer(stats.whole());
        let ins = || [buf(&b.q), buf(&b.k), buf(&b.v), buf(&b.g), mask.clone()];
        let mut args = vec![st()];
        args.extend(ins());
        args.extend([dims(&b), n(b.rows)]);
        ctx.run(
            &spec("ab_stats", "AB_STATS"),
            ctx.grid(b.rows, EW_GROUPS),
            &args,
        )?;
        let mut args = vec![buf(&b.dq), st()];
        args.extend(ins());
        args.extend([dims(&b), n(b.rows)]);
        ctx.run(&spec("ab_dq", "AB_DQ"), ctx.grid(b.rows, EW_GROUPS), &args)?;
        let mut args = vec![buf(&b.dk), buf(&b.dv_t), st()];
        args.extend(ins());
        args.extend([dims(&b), n(b.keys)]);
        ctx.run(
            &spec("ab_dkv", "AB_DKV"),
            ctx.grid(b.keys, EW_GROUPS),
            &args,
        )?;
    }
    b.finish(ctx.queue, call)
}
