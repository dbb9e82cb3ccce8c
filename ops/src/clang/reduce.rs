//! Reductions over axes (`sum`, `mean`, `max`, `min`, `argmax`, `argmin`), `cumsum` and `topk`:
//! one work-group per row; long rows with few outputs in two launches (per-chunk partial
//! results, then their combination).

use anyaccel_hal::{DType, KernelArg, OpCall, Result, Tensor};

use super::elementwise::{input, output};
use super::{base_offset, buf, dtype_defs, Ctx, Family, KernelSpec, Layouts};
use crate::attrs::Attrs;
use crate::catalog::misrouted;
use crate::plan::reduce_axes;

/// Most work-groups of a row launch (rows beyond are walked by a group-stride loop).
const MAX_GROUPS: usize = 16384;
/// Rows at or above this length, with few rows, are split into chunks.
const SPLIT_COUNT: usize = 1 << 16;
/// topk picks k elements by k selection rounds up to this k, else by counting ranks.
const TK_SELECT: usize = 16;

pub(crate) fn launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    match call.op.as_str() {
        "cumsum" | "cumprod" | "cummax" | "cummin" => cumsum(ctx, call),
        "topk" | "sort" | "argsort" => topk(ctx, call),
        "sum" | "mean" | "max" | "min" | "argmax" | "argmin" | "prod" | "any" | "all"
        | "logsumexp" | "var" | "std" => reduction(ctx, call),
        other => Err(misrouted(other)),
    }
}

fn attrs(call: &OpCall) -> Result<Attrs<'_>> {
    Attrs::of(call)
}

/// The work-group size for rows of `len` elements: 64 for short rows, else [`Ctx::wg`].
fn row_wg(ctx: &Ctx<'_>, len: usize) -> u32 {
    let wg = ctx.wg();
    if len <= 256 {
        wg.min(64)
    } else {
        wg
    }
}

fn reduction(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let axes = reduce_axes(&a, x.rank())?;
    let keep = a.flag("keepdim", false)?;
    let (mut kept, mut red_shape, mut red_strides) = (Vec::new(), Vec::new(), Vec::new());
    for d in 0..x.rank() {
        if axes.contains(&d) {
            red_shape.push(x.shape()[d]);
            red_strides.push(x.strides()[d]);
            if keep {
                kept.push(0);
            }
        } else {
            kept.push(x.strides()[d]);
        }
    }
    let rows = out.numel();
    let count: usize = red_shape.iter().product();
    let k = Layouts::new(out.shape())
        .tensor(out)
        .with(kept, base_offset(x))
        .collapse();
    let r = Layouts::new(&red_shape).with(red_strides, 0).collapse();
    let (klay, rlay) = (k.lay(op)?, r.lay(op)?);
    let wg = row_wg(ctx, count);
    let spec = |stage: u8| {
        let s = KernelSpec::new(Family::Reduce, "rd_rows")
            .flag("RD_REDUCE")
            .flag_upper("RD_", op)
            .def("KRANK", k.rank())
            .def("RRANK", r.rank())
            .def("WG", wg)
            .def("STAGE", stage);
        dtype_defs(s, "X", x.dtype())
    };
    // Compound states are three values, doubles at most (see reduce.h).
    let acc_size = match op {
        "logsumexp" | "var" | "std" | "prod" if x.dtype().is_float() => 24,
        _ if x.dtype() == DType::I64 => 8,
        _ => 4,
    };
    // var and std: max(N - correction, 0).
    let correction = a.int_opt("correction")?.unwrap_or(1);
    let divisor = (count as f64 - correction as f64).max(0.0) as f32;
    let args =
        |parts: usize, chunk: usize, pv: &anyaccel_hal::Buffer, pi: &anyaccel_hal::Buffer| {
            vec![
                buf(out),
                buf(x),
                KernelArg::Buffer(pv.whole()),
                KernelArg::Buffer(pi.whole()),
                klay.arg(),
                rlay.arg(),
                KernelArg::scalar(rows as i64),
                KernelArg::scalar(count as i64),
                KernelArg::scalar(parts as i64),
                KernelArg::scalar(chunk as i64),
                KernelArg::scalar(divisor),
            ]
        };
    if count >= SPLIT_COUNT && rows < 64 {
        let parts = (count / (wg as usize * 64)).clamp(2, (512 / rows).max(2));
        let chunk = count.div_ceil(parts);
        let pv = ctx.scratch(rows * parts * acc_size)?;
        let pi = ctx.scratch(rows * parts * 8)?;
        let a1 = args(parts, chunk, &pv, &pi);
        ctx.run(
            &spec(1),
            ctx.groups((rows * parts).min(MAX_GROUPS), wg),
            &a1,
        )?;
        let a2 = args(parts, chunk, &pv, &pi);
        return ctx.run(&spec(2), ctx.groups(rows.min(MAX_GROUPS), wg), &a2);
    }
    let none = ctx.scratch(1)?;
    let a0 = args(1, count, &none, &none);
    ctx.run(&spec(0), ctx.groups(rows.min(MAX_GROUPS), wg), &a0)
}

/// The lines of `x` along `axis` as a layout: `x` and `outs` with the axis dropped.
fn lines(x: &Tensor, outs: &[&Tensor], axis: usize) -> Layouts {
    let mut shape = x.shape().to_vec();
    shape[axis] = 1;
    let mut l = Layouts::new(&shape).tensor_at(x);
    for o in outs {
        l = l.tensor_at(o);
    }
    l.collapse()
}

impl Layouts {
    /// Adds a tensor whose own strides are used for the shape's dimensions (the shape may be
    /// the tensor's with some sizes set to 1).
    fn tensor_at(self, t: &Tensor) -> Layouts {
        let strides = t.strides().to_vec();
        self.with(strides, base_offset(t))
    }
}

fn cumsum(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let a = attrs(call)?;
    let axis = a.axis("axis", None, x.rank())?;
    let len = x.shape()[axis];
    let nlines = x.numel() / len.max(1);
    if len == 0 || nlines == 0 {
        return Ok(());
    }
    // Operand 0 the output, 1 the input.
    let k = lines(out, &[x], axis);
    let wg = row_wg(ctx, len);
    let mut spec = KernelSpec::new(Family::Reduce, "cs_lines")
        .flag("CS_LINES")
        .def("KRANK", k.rank())
        .def("WG", wg)
        .def("CS_REVERSE", a.flag("reverse", false)? as u8);
    spec = match op {
        "cumprod" => spec.flag("CS_PROD"),
        "cummax" => spec.flag("CS_MAX"),
        "cummin" => spec.flag("CS_MIN"),
        _ => spec,
    };
    let exclusive = matches!(op, "cumsum" | "cumprod") && a.flag("exclusive", false)?;
    spec = spec.def("CS_EXCLUSIVE", exclusive as u8);
    let spec = dtype_defs(spec, "X", x.dtype());
    let args = [
        buf(out),
        buf(x),
        k.lay(op)?.arg(),
        KernelArg::scalar(nlines as i64),
        KernelArg::scalar(len as i64),
        KernelArg::scalar(x.strides()[axis] as i64),
        KernelArg::scalar(out.strides()[axis] as i64),
    ];
    ctx.run(&spec, ctx.groups(nlines.min(MAX_GROUPS), wg), &args)
}

/// `topk`, and `sort` and `argsort` as topk of the whole axis (argsort's values go to a
/// scratch tensor).
fn topk(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let x = input(call, 0)?;
    let axis = a.axis("axis", Some(-1), x.rank())?;
    let len = x.shape()[axis];
    let (k, largest) = if op == "topk" {
        (a.int("k")? as usize, a.flag("largest", true)?)
    } else {
        (len, a.flag("descending", false)?)
    };
    let scratch;
    let (values, indices) = if op == "argsort" {
        let desc = anyaccel_hal::TensorDesc::contiguous(x.dtype(), x.shape());
        let bytes = desc.required_bytes()?;
        scratch = Tensor::new(ctx.scratch(bytes)?.whole(), desc)?;
        (&scratch, output(call, 0)?)
    } else {
        (output(call, 0)?, output(call, 1)?)
    };
    let nlines = x.numel() / len.max(1);
    if k == 0 || nlines == 0 {
        return Ok(());
    }
    // Operand 0 the input, 1 the values, 2 the indices.
    let kl = lines(x, &[values, indices], axis);
    let wg = row_wg(ctx, len);
    let spec = KernelSpec::new(Family::Reduce, "tk_lines")
        .flag("TK_LINES")
        .def("KRANK", kl.rank())
        .def("WG", wg)
        .def("TK_SELECT", TK_SELECT)
        .def("TK_LARGEST", largest as u8);
    let spec = dtype_defs(spec, "X", x.dtype());
    let args = [
        buf(x),
        buf(values),
        buf(indices),
        kl.lay(op)?.arg(),
        KernelArg::scalar(nlines as i64),
        KernelArg::scalar(len as i64),
        KernelArg::scalar(k as i64),
        KernelArg::scalar(x.strides()[axis] as i64),
        KernelArg::scalar(values.strides()[axis] as i64),
        KernelArg::scalar(indices.strides()[axis] as i64),
    ];
    ctx.run(&spec, ctx.groups(nlines.min(MAX_GROUPS), wg), &args)
}
