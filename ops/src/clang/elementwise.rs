//! Elementwise ops: unary, binary and comparisons, `where`, `copy`, `cast`, `fill`, `arange`.

use anyaccel_hal::{DType, Error, KernelArg, OpCall, Result, Tensor};

use super::{buf, dt, dtype_defs, Ctx, Family, KernelSpec, Layouts, EW_GROUPS};
use crate::attrs::Attrs;
use crate::catalog::misrouted;
use crate::convert;

fn attrs(call: &OpCall) -> Result<Attrs<'_>> {
    Attrs::of(call)
}

pub(crate) fn input(call: &OpCall, i: usize) -> Result<&Tensor> {
    call.inputs
        .get(i)
        .and_then(|t| t.as_ref())
        .ok_or_else(|| Error::internal(format!("{}: input {i} missing", call.op)))
}

pub(crate) fn output(call: &OpCall, i: usize) -> Result<&Tensor> {
    call.outputs
        .get(i)
        .ok_or_else(|| Error::internal(format!("{}: output {i} missing", call.op)))
}

/// Launches an elementwise kernel over `layouts` (operand 0 the output) with `args` before the
/// `Lay` and `n`, and `tail` after.
pub(crate) fn run_ew(
    ctx: &Ctx<'_>,
    op: &str,
    spec: KernelSpec,
    layouts: Layouts,
    buffers: Vec<KernelArg>,
    tail: Vec<KernelArg>,
) -> Result<()> {
    let n: usize = layouts.shape.iter().product();
    if n == 0 {
        return Ok(());
    }
    let layouts = layouts.collapse();
    let lay = layouts.lay(op)?;
    let (rank, nops) = (layouts.rank(), layouts.ops.len());
    let spec = spec.def("RANK", rank).def("NOPS", nops).flag("LAY_EXACT");
    let mut args = buffers;
    args.push(lay.arg_exact(rank, nops));
    args.push(KernelArg::scalar(n as i64));
    args.extend(tail);
    ctx.run(&spec, ctx.grid(n, EW_GROUPS), &args)
}

/// Raw copy of `x` into `out` (same dtype and shape, any layouts).
pub(crate) fn copy_into(ctx: &Ctx<'_>, op: &str, x: &Tensor, out: &Tensor) -> Result<()> {
    let spec = KernelSpec::new(Family::Elementwise, "ew_copy")
        .flag("EW_COPY")
        .def("ES", x.dtype().size_in_bytes());
    let layouts = Layouts::new(out.shape()).tensor(out).tensor(x);
    run_ew(ctx, op, spec, layouts, vec![buf(out), buf(x)], vec![])
}

/// `fill`, `arange`, `copy`, `cast`, `where`.
pub(crate) fn movement(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let out = output(call, 0)?;
    match op {
        "fill" => {
            let value = attrs(call)?.float("value")?;
            let spec = KernelSpec::new(Family::Elementwise, "ew_fill")
                .flag("EW_FILL")
                .def("ES", out.dtype().size_in_bytes());
            let layouts = Layouts::new(out.shape()).tensor(out);
            let bits = convert::value_bits(value, out.dtype());
            run_ew(
                ctx,
                op,
                spec,
                layouts,
                vec![buf(out)],
                vec![KernelArg::scalar(bits)],
            )
        }
        "arange" => {
            let a = attrs(call)?;
            let (start, step) = (a.float("start")?, a.float("step")?);
            let d = out.dtype();
            let mut spec = KernelSpec::new(Family::Elementwise, "ew_arange")
                .flag("EW_ARANGE")
                .def("OT", dt(d))
                .def("O_FLOAT", d.is_float() as u8)
                .def("O_F32", (d == DType::F32) as u8);
            let tail = if d.is_int() {
                vec![
                    KernelArg::scalar(start as i64),
                    KernelArg::scalar(step as i64),
                ]
            } else if ctx.device.caps().has_dtype(DType::F64) {
                vec![
                    KernelArg::scalar(start.to_bits()),
                    KernelArg::scalar(step.to_bits()),
                ]
            } else {
                // No doubles on the device: each value as a pair of floats, hi and lo.
                spec = spec.flag("ARANGE_PAIRS");
                let pair = |v: f64| {
                    let hi = v as f32;
                    let lo = (v - hi as f64) as f32;
                    ((hi.to_bits() as u64) << 32) | lo.to_bits() as u64
                };
                vec![
                    KernelArg::scalar(pair(start)),
                    KernelArg::scalar(pair(step)),
                ]
            };
            let layouts = Layouts::new(out.shape()).tensor(out);
            run_ew(ctx, op, spec, layouts, vec![buf(out)], tail)
        }
        "copy" => copy_into(ctx, op, input(call, 0)?, out),
        "cast" => {
            let x = input(call, 0)?;
            if x.dtype() == out.dtype() {
                return copy_into(ctx, op, x, out);
            }
            let class = match x.dtype() {
                DType::F32 | DType::F16 | DType::BF16 => 1,
                DType::F64 => 2,
                _ => 3,
            };
            let spec = KernelSpec::new(Family::Elementwise, "ew_cast")
                .flag("EW_CAST")
                .def("XT", dt(x.dtype()))
                .def("OT", dt(out.dtype()))
                .def("X_CLASS", class);
            let layouts = Layouts::new(out.shape()).tensor(out).tensor(x);
            run_ew(ctx, op, spec, layouts, vec![buf(out), buf(x)], vec![])
        }
        "where" => {
            let (c, a, b) = (input(call, 0)?, input(call, 1)?, input(call, 2)?);
            let spec = KernelSpec::new(Family::Elementwise, "ew_where")
                .flag("EW_WHERE")
                .def("ES", out.dtype().size_in_bytes());
            let layouts = Layouts::new(out.shape())
                .tensor(out)
                .tensor(c)
                .tensor(a)
                .tensor(b);
            run_ew(
                ctx,
                op,
                spec,
                layouts,
                vec![buf(out), buf(c), buf(a), buf(b)],
                vec![],
            )
        }
        other => Err(misrouted(other)),
    }
}

/// Binary ops and comparisons.
pub(crate) fn binary(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let (a, b, out) = (input(call, 0)?, input(call, 1)?, output(call, 0)?);
    let spec = KernelSpec::new(Family::Elementwise, "ew_binary")
        .flag("EW_BINARY")
        .flag_upper("OP_", op)
        .def("OT", dt(out.dtype()));
    let spec = int_defs(dtype_defs(spec, "X", a.dtype()), a.dtype());
    let layouts = Layouts::new(out.shape()).tensor(out).tensor(a).tensor(b);
    run_ew(
        ctx,
        op,
        spec,
        layouts,
        vec![buf(out), buf(a), buf(b)],
        vec![],
    )
}

/// `X_BOOL` and `X_BITS` of an integer (or bool) input: the bitwise ops need them.
fn int_defs(spec: KernelSpec, d: DType) -> KernelSpec {
    if d.is_float() {
        return spec;
    }
    spec.def("X_BOOL", (d == DType::Bool) as u8)
        .def("X_BITS", d.size_in_bytes() * 8)
}

/// `isnan`, `isinf`, `isfinite`, `logical_not`: a bool for each element of any dtype.
pub(crate) fn predicate(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let spec = KernelSpec::new(Family::Elementwise, "ew_predicate")
        .flag("EW_PREDICATE")
        .flag_upper("OP_", op);
    let spec = dtype_defs(spec, "X", x.dtype());
    let layouts = Layouts::new(out.shape()).tensor(out).tensor(x);
    run_ew(ctx, op, spec, layouts, vec![buf(out), buf(x)], vec![])
}

/// Unary ops.
/// The activation gradients: `dx` from `grad` and `x`.
pub(crate) fn backward(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let (g, x, out) = (input(call, 0)?, input(call, 1)?, output(call, 0)?);
    let a = attrs(call)?;
    let name = if op == "gelu_backward" && a.str_opt("approximate")? == Some("tanh") {
        "GELU_TANH_BACKWARD".to_string()
    } else {
        op.to_ascii_uppercase()
    };
    let (lo, hi) = crate::attrs::activation_params(&a, op)?;
    let spec = KernelSpec::new(Family::Elementwise, "ew_backward")
        .flag("EW_BACKWARD")
        .flag(&format!("OP_{name}"));
    let spec = dtype_defs(spec, "X", x.dtype());
    let layouts = Layouts::new(out.shape()).tensor(out).tensor(g).tensor(x);
    let tail = vec![KernelArg::scalar(lo as f32), KernelArg::scalar(hi as f32)];
    run_ew(ctx, op, spec, layouts, vec![buf(out), buf(g), buf(x)], tail)
}

pub(crate) fn unary(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let a = attrs(call)?;
    let name = if op == "gelu" && a.str_opt("approximate")? == Some("tanh") {
        "GELU_TANH".to_string()
    } else {
        op.to_ascii_uppercase()
    };
    let (lo, hi) = match op {
        "clamp" => (a.float("min")?, a.float("max")?),
        _ => crate::attrs::activation_params(&a, op)?,
    };
    let spec = KernelSpec::new(Family::Elementwise, "ew_unary")
        .flag("EW_UNARY")
        .flag(&format!("OP_{name}"));
    let spec = int_defs(dtype_defs(spec, "X", x.dtype()), x.dtype());
    let layouts = Layouts::new(out.shape()).tensor(out).tensor(x);
    // Integer bounds are integral values within the dtype's range (validated); float bounds
    // are rounded to x's dtype (monotone, so the clamp is the same as with the exact bounds).
    // The activations' parameters are f32s, as they compute.
    let param = |v: f64| {
        if op == "clamp" {
            convert::f32_holding(v, x.dtype())
        } else {
            v as f32
        }
    };
    let tail = vec![
        KernelArg::scalar(param(lo)),
        KernelArg::scalar(param(hi)),
        KernelArg::scalar(lo as i64),
        KernelArg::scalar(hi as i64),
    ];
    run_ew(ctx, op, spec, layouts, vec![buf(out), buf(x)], tail)
}
