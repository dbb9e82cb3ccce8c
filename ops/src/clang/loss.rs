//! `cross_entropy` and `cross_entropy_backward`: one work-group per position (`loss.h`).

use anyaccel_hal::{Buffer, KernelArg, OpCall, Result, Tensor};

use super::elementwise::{input, output};
use super::{base_offset, buf, dt, dtype_defs, Ctx, Family, KernelSpec, Layouts};
use crate::attrs::Attrs;
use crate::loss::{bad_target_error, CeGeom, Reduction};

/// Most work-groups of a launch (each loops over the positions beyond).
const MAX_GROUPS: usize = 16384;

pub(crate) fn launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let attrs = Attrs::of(call)?;
    let backward = op == "cross_entropy_backward";
    let first = backward as usize;
    let (x, tgt, out) = (
        input(call, first)?,
        input(call, first + 1)?,
        output(call, 0)?,
    );
    let grad = if backward {
        Some(input(call, 0)?)
    } else {
        None
    };
    let g = CeGeom::of(op, &attrs, x.desc(), tgt.desc(), grad.map(Tensor::desc))?;
    let wg = ctx.row_wg(g.classes);
    let spec = |entry: &'static str, flag: &str| {
        let s = KernelSpec::new(Family::Loss, entry)
            .flag(flag)
            .def("IT", dt(tgt.dtype()))
            .def("WG", wg);
        dtype_defs(s, "X", x.dtype())
    };
    let i = |v: usize| KernelArg::scalar(v as i64);
    let flag = ctx.scratch(4)?;
    ctx.queue.fill(&flag.whole(), &0i32.to_le_bytes())?;
    let part = ctx.scratch(g.positions.max(1) * 8)?;
    let cnt = ctx.scratch(4)?;
    let positions = Layouts::new(&g.shape)
        .with(CeGeom::position_strides(x.desc()), base_offset(x))
        .with(tgt.strides().to_vec(), base_offset(tgt));
    let zeros = vec![0; g.shape.len()];
    let groups = ctx.groups(g.positions.clamp(1, MAX_GROUPS), wg);
    // ce_rows over the positions, its losses into `out` (none) or `part`.
    let rows = |count: bool| -> Result<()> {
        let none = g.reduction == Reduction::None && !count;
        let k = positions
            .clone()
            .with(
                if none {
                    out.strides().to_vec()
                } else {
                    zeros.clone()
                },
                base_offset(out),
            )
            .collapse();
        let mut s = spec("ce_rows", "CE_ROWS").def("KRANK", k.rank());
        if none {
            s = s.flag("CE_NONE");
        }
        if count {
            s = s.flag("CE_COUNT");
        }
        let args = [
            buf(out),
            KernelArg::Buffer(part.whole()),
            buf(x),
            buf(tgt),
            KernelArg::Buffer(flag.whole()),
            k.lay(op)?.arg(),
            i(g.positions),
            i(g.classes),
            i(x.strides()[1]),
            KernelArg::scalar(g.ignore_index),
            KernelArg::scalar(g.smoothing as f32),
        ];
        ctx.run(&s, groups, &args)
    };
    // ce_total: one work-group adds the parts.
    let total = |mode: &str| -> Result<()> {
        let mut s = KernelSpec::new(Family::Loss, "ce_total")
            .flag("CE_TOTAL")
            .def("WG", ctx.wg());
        if !mode.is_empty() {
            s = s.flag(mode);
        }
        let s = dtype_defs(s, "X", x.dtype());
        let args = [
            buf(out),
            KernelArg::Buffer(cnt.whole()),
            KernelArg::Buffer(part.whole()),
            i(g.positions),
            KernelArg::scalar(base_offset(out)),
        ];
        ctx.run(&s, ctx.groups(1, ctx.wg()), &args)
    };
    let check = |flag: &Buffer| -> Result<()> {
        let mut raw = [0u8; 4];
        ctx.queue.read(&flag.whole(), &mut raw)?;
        if i32::from_le_bytes(raw) != 0 {
            return Err(bad_target_error(op, &g, tgt, ctx.queue));
        }
        Ok(())
    };
    if !backward {
        if g.positions > 0 {
            rows(false)?;
            check(&flag)?;
        }
        return match g.reduction {
            Reduction::None => Ok(()),
            Reduction::Mean => total("CE_MEAN"),
            Reduction::Sum => total(""),
        };
    }
    let grad = grad.ok_or_else(|| anyaccel_hal::Error::internal("grad missing"))?;
    if g.positions == 0 || g.classes == 0 {
        if g.positions > 0 {
            // Every target must still be ignore_index.
            rows(true)?;
            check(&flag)?;
        }
        return Ok(());
    }
    if g.reduction == Reduction::Mean {
        rows(true)?;
        total("CE_COUNT")?;
    }
    let mut out_pos = out.strides().to_vec();
    out_pos.remove(1);
    let k = positions
        .with(out_pos, base_offset(out))
        .with(
            if g.reduction == Reduction::None {
                grad.strides().to_vec()
            } else {
                zeros
            },
            base_offset(grad),
        )
        .collapse();
    let mut s = spec("ce_grad", "CE_GRAD").def("KRANK", k.rank());
    if g.reduction == Reduction::Mean {
        s = s.flag("CE_MEAN");
    }
    let args = [
        buf(out),
        buf(grad),
        KernelArg::Buffer(cnt.whole()),
        buf(x),
        buf(tgt),
        KernelArg::Buffer(flag.whole()),
        k.lay(op)?.arg(),
        i(g.positions),
        i(g.classes),
        i(x.strides()[1]),
        i(out.strides()[1]),
        KernelArg::scalar(g.ignore_index),
        KernelArg::scalar(g.smoothing as f32),
    ];
    ctx.run(&s, groups, &args)?;
    check(&flag)
}
