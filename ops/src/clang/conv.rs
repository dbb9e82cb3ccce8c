//! `conv1d`, `conv2d` and the pools: one work item per output element (`conv.h`).

use anyaccel_hal::{KernelArg, OpCall, Result, Tensor};

use super::elementwise::{input, output};
use super::{base_offset, buf, dtype_defs, Ctx, Family, KernelSpec, Layouts, EW_GROUPS};
use crate::attrs::Attrs;
use crate::conv::{
    BatchGeom, ConvGeom, ConvPass, GroupGeom, PoolBack, PoolGeom, Resample, ResampleGeom,
};

pub(crate) fn launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let attrs = Attrs::of(call)?;
    let (a, b, out) = (input(call, 0)?, input(call, 1)?, output(call, 0)?);
    let bias = call.inputs.get(2).and_then(|t| t.as_ref());
    let (g, pass) = ConvGeom::of_call(
        &call.op,
        &attrs,
        [Some(a.desc()), Some(b.desc()), bias.map(Tensor::desc)],
    )?;
    let total = out.numel();
    if total == 0 {
        return Ok(());
    }
    let (entry, flag) = match pass {
        ConvPass::Forward => ("conv_direct", "CONV_DIRECT"),
        ConvPass::Data => ("conv_data", "CONV_DATA"),
        ConvPass::Filter => ("conv_filter", "CONV_FILTER"),
    };
    let mut spec = KernelSpec::new(Family::Conv, entry).flag(flag);
    if bias.is_some() {
        spec = spec.flag("CONV_BIAS");
    }
    let spec = dtype_defs(spec, "X", a.dtype());
    let i = |v: usize| KernelArg::scalar(v as i64);
    let mut args = vec![
        buf(out),
        buf(a),
        buf(b),
        // An absent bias is never read: a's buffer stands in for it.
        buf(bias.unwrap_or(a)),
        i(total),
    ];
    args.extend(
        [
            g.n,
            g.c,
            g.o,
            g.out[0],
            g.out[1],
            g.input[0],
            g.input[1],
            g.cg(),
            g.og(),
            g.kernel[0],
            g.kernel[1],
            g.stride[0],
            g.stride[1],
            g.padding[0],
            g.padding[1],
            g.dilation[0],
            g.dilation[1],
        ]
        .map(i),
    );
    for t in [a, b, out] {
        args.push(KernelArg::scalar(base_offset(t)));
        args.extend(g.strides4(t.strides()).map(i));
    }
    match bias {
        Some(t) => args.extend([KernelArg::scalar(base_offset(t)), i(t.strides()[0])]),
        None => args.extend([i(0), i(0)]),
    }
    ctx.run(&spec, ctx.grid(total, EW_GROUPS), &args)
}

pub(crate) fn pool(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let attrs = Attrs::of(call)?;
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let g = PoolGeom::of(&call.op, &attrs, x.desc())?;
    let max = call.op.starts_with("max");
    let total = out.numel();
    if total == 0 {
        return Ok(());
    }
    let mut spec = KernelSpec::new(Family::Conv, "pool_run");
    spec = if max {
        spec.flag("POOL_MAX")
    } else if g.count_include_pad {
        spec.flag("POOL_AVG").flag("POOL_COUNT_PAD")
    } else {
        spec.flag("POOL_AVG")
    };
    let spec = dtype_defs(spec, "X", x.dtype());
    let i = |v: usize| KernelArg::scalar(v as i64);
    // Average pools write no indices: the output's buffer stands in and is never written.
    let idx = if max { output(call, 1)? } else { out };
    let mut args = vec![
        buf(out),
        buf(idx),
        buf(x),
        i(total),
        i(g.c),
        i(g.out[0]),
        i(g.out[1]),
        i(g.input[0]),
        i(g.input[1]),
        i(g.kernel[0]),
        i(g.kernel[1]),
        i(g.stride[0]),
        i(g.stride[1]),
        i(g.padding[0]),
        i(g.padding[1]),
        i(g.dilation[0]),
        i(g.dilation[1]),
    ];
    for t in [x, out, idx] {
        args.push(KernelArg::scalar(base_offset(t)));
        args.extend(g.strides4(t.strides()).map(i));
    }
    ctx.run(&spec, ctx.grid(total, EW_GROUPS), &args)
}

pub(crate) fn resample(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let attrs = Attrs::of(call)?;
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let g = ResampleGeom::of(&call.op, &attrs, x.desc())?;
    let total = out.numel();
    if total == 0 {
        return Ok(());
    }
    let spec = resample_flags(
        KernelSpec::new(Family::Conv, "resample").flag("RESAMPLE"),
        g.kind,
    );
    let spec = dtype_defs(spec, "X", x.dtype());
    let i = |v: usize| KernelArg::scalar(v as i64);
    let mut args = vec![
        buf(out),
        buf(x),
        i(total),
        i(g.c),
        i(g.out[0]),
        i(g.out[1]),
        i(g.input[0]),
        i(g.input[1]),
    ];
    for t in [x, out] {
        args.push(KernelArg::scalar(base_offset(t)));
        args.extend(t.strides().iter().map(|&s| i(s)));
    }
    ctx.run(&spec, ctx.grid(total, EW_GROUPS), &args)
}

/// The `RS_*` options of a resampling kind.
fn resample_flags(spec: KernelSpec, kind: Resample) -> KernelSpec {
    match kind {
        Resample::AdaptiveAvg => spec.flag("RS_ADAPTIVE"),
        Resample::Nearest => spec.flag("RS_NEAREST"),
        Resample::Bilinear {
            align_corners: true,
        } => spec.flag("RS_BILINEAR").flag("RS_ALIGN"),
        Resample::Bilinear { .. } => spec.flag("RS_BILINEAR"),
        Resample::Bicubic {
            align_corners: true,
        } => spec.flag("RS_BICUBIC").flag("RS_ALIGN"),
        Resample::Bicubic { .. } => spec.flag("RS_BICUBIC"),
    }
}

pub(crate) fn pool_backward(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let attrs = Attrs::of(call)?;
    let (grad, out) = (input(call, 0)?, output(call, 0)?);
    let idx = call.inputs.get(1).and_then(|t| t.as_ref());
    let g = PoolBack::of(&call.op, &attrs, grad.desc(), idx.map(Tensor::desc))?;
    let total = out.numel();
    if total == 0 {
        return Ok(());
    }
    let mut spec = KernelSpec::new(Family::Conv, "pool_back").flag("POOL_BACK");
    // Per dimension: input and output sizes, kernel, stride, padding, dilation.
    let (spatial, input, outn, window) = match g {
        PoolBack::Pool(p) => {
            spec = spec.flag("PB_POOL");
            if p.max {
                let it = idx.ok_or_else(|| anyaccel_hal::Error::internal("indices missing"))?;
                spec = spec.flag("PB_MAX").def("IT", super::dt(it.dtype()));
            } else if p.count_include_pad {
                spec = spec.flag("POOL_COUNT_PAD");
            }
            (
                p.spatial,
                p.input,
                p.out,
                [p.kernel, p.stride, p.padding, p.dilation],
            )
        }
        PoolBack::Resample(r) => {
            spec = resample_flags(spec, r.kind);
            (2, r.input, r.out, [[1, 1], [1, 1], [0, 0], [1, 1]])
        }
    };
    let spec = dtype_defs(spec, "X", grad.dtype());
    let i = |v: usize| KernelArg::scalar(v as i64);
    let lift = |t: &Tensor| -> [usize; 4] {
        let s = t.strides();
        if spatial == 1 {
            [s[0], s[1], 0, s[2]]
        } else {
            [s[0], s[1], s[2], s[3]]
        }
    };
    let mut args = vec![
        buf(out),
        buf(grad),
        // Without indices, grad's buffer stands in (never read).
        buf(idx.unwrap_or(grad)),
        i(total),
        i(out.shape()[1]),
        i(outn[0]),
        i(outn[1]),
        i(input[0]),
        i(input[1]),
    ];
    for pair in window {
        args.extend(pair.map(i));
    }
    for t in [Some(grad), idx] {
        match t {
            Some(t) => {
                args.push(KernelArg::scalar(base_offset(t)));
                args.extend(lift(t).map(i));
            }
            None => args.extend([0; 5].map(i)),
        }
    }
    args.push(KernelArg::scalar(base_offset(out)));
    args.extend(lift(out).map(i));
    ctx.run(&spec, ctx.grid(total, EW_GROUPS), &args)
}

pub(crate) fn group_norm(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let attrs = Attrs::of(call)?;
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let w = call.inputs.get(1).and_then(|t| t.as_ref());
    let b = call.inputs.get(2).and_then(|t| t.as_ref());
    let g = GroupGeom::of(
        op,
        &attrs,
        x.desc(),
        w.map(Tensor::desc),
        b.map(Tensor::desc),
    )?;
    let eps = crate::plan::eps(&attrs)?;
    let ngroups = g.n * g.groups;
    if ngroups == 0 || g.len() == 0 {
        return Ok(());
    }
    let s = spatial_layout(x, out);
    let wg = ctx.row_wg(g.len());
    let mut spec = KernelSpec::new(Family::Conv, "gn_groups")
        .flag("GN_GROUPS")
        .def("SRANK", s.rank())
        .def("WG", wg);
    if w.is_some() {
        spec = spec.flag("GN_W");
    }
    if b.is_some() {
        spec = spec.flag("GN_B");
    }
    let spec = dtype_defs(spec, "X", x.dtype());
    // An absent weight or bias is never read: x's buffer stands in for it.
    let vec_arg = |t: Option<&Tensor>| match t {
        Some(t) => (buf(t), base_offset(t), t.strides()[0] as i64),
        None => (buf(x), 0, 0),
    };
    let (wa, w_off, w_st) = vec_arg(w);
    let (ba, b_off, b_st) = vec_arg(b);
    let i = |v: usize| KernelArg::scalar(v as i64);
    let args = [
        buf(out),
        buf(x),
        wa,
        ba,
        s.lay(op)?.arg(),
        i(ngroups),
        i(g.groups),
        i(g.c / g.groups),
        i(g.spatial),
        i(x.strides()[0]),
        i(x.strides()[1]),
        i(out.strides()[0]),
        i(out.strides()[1]),
        KernelArg::scalar(base_offset(x)),
        KernelArg::scalar(base_offset(out)),
        KernelArg::scalar(w_off),
        KernelArg::scalar(w_st),
        KernelArg::scalar(b_off),
        KernelArg::scalar(b_st),
        KernelArg::scalar(eps as f32),
    ];
    ctx.run(&spec, ctx.groups(ngroups.min(16384), wg), &args)
}

/// The layout of x's and out's dimensions after C (rank 2 inputs: one of size 1).
fn spatial_layout(x: &Tensor, out: &Tensor) -> Layouts {
    let (mut shape, mut xs, mut os) = (
        x.shape()[2..].to_vec(),
        x.strides()[2..].to_vec(),
        out.strides()[2..].to_vec(),
    );
    if shape.is_empty() {
        (shape, xs, os) = (vec![1], vec![0], vec![0]);
    }
    Layouts::new(&shape).with(xs, 0).with(os, 0).collapse()
}

pub(crate) fn batch_norm(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let attrs = Attrs::of(call)?;
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let (mean, invstd) = (output(call, 1)?, output(call, 2)?);
    let opt = |i: usize| call.inputs.get(i).and_then(|t| t.as_ref());
    let g = BatchGeom::of(
        op,
        &attrs,
        x.desc(),
        [1, 2, 3, 4].map(|i| opt(i).map(Tensor::desc)),
    )?;
    let eps = crate::plan::eps(&attrs)?;
    if g.c == 0 {
        return Ok(());
    }
    let s = spatial_layout(x, out);
    let wg = ctx.row_wg(g.len());
    let mut spec = KernelSpec::new(Family::Conv, "bn_channels")
        .flag("BN_CHANNELS")
        .def("SRANK", s.rank())
        .def("WG", wg);
    if g.training {
        spec = spec.flag("BN_TRAIN");
    }
    if opt(3).is_some() {
        spec = spec.flag("BN_W");
    }
    if opt(4).is_some() {
        spec = spec.flag("BN_B");
    }
    let spec = dtype_defs(spec, "X", x.dtype());
    let i = |v: usize| KernelArg::scalar(v as i64);
    let mut args = vec![buf(out), buf(mean), buf(invstd), buf(x)];
    // Absent [C] inputs are never read: x's buffer stands in for them.
    let mut vecs = Vec::new();
    for k in 1..=4 {
        match opt(k) {
            Some(t) => {
                args.push(buf(t));
                vecs.extend([KernelArg::scalar(base_offset(t)), i(t.strides()[0])]);
            }
            None => {
                args.push(buf(x));
                vecs.extend([i(0), i(0)]);
            }
        }
    }
    args.extend([
        s.lay(op)?.arg(),
        i(g.c),
        i(g.n),
        i(g.spatial),
        i(x.strides()[0]),
        i(x.strides()[1]),
        i(out.strides()[0]),
        i(out.strides()[1]),
        KernelArg::scalar(base_offset(x)),
        KernelArg::scalar(base_offset(out)),
        KernelArg::scalar(base_offset(mean)),
        i(mean.strides()[0]),
        KernelArg::scalar(base_offset(invstd)),
        i(invstd.strides()[0]),
    ]);
    args.extend(vecs);
    args.push(KernelArg::scalar(eps as f32));
    ctx.run(&spec, ctx.groups(g.c.min(16384), wg), &args)
}
