//! The normalisation gradients: one work-group per group, then one per channel
//! (`norm_grad.h`).

use anyaccel_hal::{KernelArg, OpCall, Result, Tensor};

use super::elementwise::{input, output};
use super::{base_offset, buf, dtype_defs, Ctx, Family, KernelSpec};
use crate::attrs::Attrs;
use crate::norm_grad::{in_acs_layouts, NormBack, NormKind};

/// Most work-groups of a launch (each loops over the groups beyond).
const MAX_GROUPS: usize = 16384;

pub(crate) fn launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let attrs = Attrs::of(call)?;
    let opt = |i: usize| call.inputs.get(i).and_then(|t| t.as_ref());
    let batch = op == "batch_norm_backward";
    let w = opt(if batch { 4 } else { 2 });
    let (mean, invstd) = if batch {
        (opt(2), opt(3))
    } else {
        (None, None)
    };
    let (dy, x, dx) = (input(call, 0)?, input(call, 1)?, output(call, 0)?);
    let g = NormBack::of(
        op,
        &attrs,
        dy.desc(),
        x.desc(),
        w.map(Tensor::desc),
        [mean.map(Tensor::desc), invstd.map(Tensor::desc)],
    )?;
    let dw = output(call, 1)?;
    let db = call.outputs.get(2);
    let groups = g.groups();
    if g.c == 0 {
        return Ok(());
    }
    let wg = ctx.row_wg(g.a * g.c * g.s / groups.max(1));
    let kind = |spec: KernelSpec| match g.kind {
        NormKind::Layer => spec.flag("NB_ROWS"),
        NormKind::Rms => spec.flag("NB_ROWS").flag("NB_RMS"),
        NormKind::Group => spec.flag("NB_GROUP"),
        NormKind::Batch { training: true } => spec.flag("NB_BATCH").flag("NB_TRAIN"),
        NormKind::Batch { .. } => spec.flag("NB_BATCH"),
    };
    let i = |v: usize| KernelArg::scalar(v as i64);
    let vec_arg = |t: Option<&Tensor>| match t {
        // An absent vector is never read: x's buffer stands in for it.
        Some(t) => (buf(t), base_offset(t), t.strides()[0] as i64),
        None => (buf(x), 0, 0),
    };
    let stats = ctx.scratch(groups * 8)?;
    in_acs_layouts(ctx.queue, &g, [dy, x, dx], |[dy, x, dx]| {
        let strides = |t: &Tensor| -> Result<Vec<KernelArg>> {
            let s = g
                .acs_strides(t.desc())
                .ok_or_else(|| anyaccel_hal::Error::internal("norm gradient: layout"))?;
            let mut v = vec![KernelArg::scalar(base_offset(t))];
            v.extend(s.map(i));
            Ok(v)
        };
        let mut spec = kind(KernelSpec::new(Family::NormGrad, "nb_groups"))
            .flag("NB_GROUPS")
            .def("WG", wg);
        if w.is_some() {
            spec = spec.flag("NB_W");
        }
        let spec = dtype_defs(spec, "X", x.dtype());
        let (wa, w_off, w_st) = vec_arg(w);
        let (ma, m_off, m_st) = vec_arg(mean);
        let (ia, i_off, i_st) = vec_arg(invstd);
        let mut args = vec![
            buf(dx),
            KernelArg::Buffer(stats.whole()),
            buf(dy),
            buf(x),
            wa,
            ma,
            ia,
            i(groups),
            i(g.a),
            i(g.c),
            i(g.s),
            i(g.per_sample),
            i(g.cg),
        ];
        args.extend(strides(x)?);
        args.extend(strides(dy)?);
        args.extend(strides(dx)?);
        args.extend([w_off, w_st, m_off, m_st, i_off, i_st].map(KernelArg::scalar));
        args.push(KernelArg::scalar(g.eps as f32));
        if groups > 0 {
            ctx.run(&spec, ctx.groups(groups.min(MAX_GROUPS), wg), &args)?;
        }
        let mut spec = kind(KernelSpec::new(Family::NormGrad, "nb_channels"))
            .flag("NB_CHANNELS")
            .def("WG", ctx.wg());
        if db.is_some() {
            spec = spec.flag("NB_DB");
        }
        let spec = dtype_defs(spec, "X", x.dtype());
        let (dba, b_off, b_st) = vec_arg(db);
        let mut args = vec![
            buf(dw),
            dba,
            KernelArg::Buffer(stats.whole()),
            buf(dy),
            buf(x),
            i(g.a),
            i(g.c),
            i(g.s),
            i(g.per_sample),
            i(g.cg),
        ];
        args.extend(strides(x)?);
        args.extend(strides(dy)?);
        args.extend([
            KernelArg::scalar(base_offset(dw)),
            i(dw.strides()[0]),
            KernelArg::scalar(b_off),
            KernelArg::scalar(b_st),
        ]);
        ctx.run(&spec, ctx.groups(g.c.min(MAX_GROUPS), ctx.wg()), &args)
    })
}
