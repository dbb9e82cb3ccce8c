//! Elementwise kernels: `fill`, `arange`, `copy`, `cast`, `concat`, `where`, the unary and
//! binary ops and the comparisons, all through one generated `map` kernel.

use anyaccel_hal::{DType, Error, OpCall, Result, TensorDesc};

use super::{
    attrs, bind, bind_desc, count32, input, output, section, Access, Bound, Cx, Shader, Space,
};

use crate::convert;

pub(super) static MAP: &str = include_str!("../../kernels/wgsl/map.wgsl");
pub(super) static UNARY: &str = include_str!("../../kernels/wgsl/unary.wgsl");
pub(super) static BINARY: &str = include_str!("../../kernels/wgsl/binary.wgsl");

/// Launches `out[i] = expr(a0, a1, ...)` with the inputs broadcast to the output's shape.
/// `setup` adds the sections and parameters that `expr` uses.
pub(crate) fn map(
    cx: &Cx<'_>,
    op: &str,
    inputs: &[(Bound, Access)],
    out: (&Bound, Access),
    expr: &str,
    setup: impl FnOnce(&mut Shader<'_>) -> Result<()>,
) -> Result<()> {
    let n = count32(op, "the output", out.0.desc.numel())?;
    let mut sh = Shader::new(cx, op, "map");
    let mut space = Space::new(&out.0.desc.shape);
    for (k, (b, access)) in inputs.iter().enumerate() {
        sh.tensor(&format!("x{k}"), b, *access, false)?;
        space = space.with_bound(b);
    }
    sh.tensor("out", out.0, out.1, true)?;
    space = space.with_bound(out.0);
    sh.space(space);
    sh.u32("n", n);
    setup(&mut sh)?;
    // The body follows from the number of inputs and the expression.
    let arity = inputs.len();
    let expr_text = expr.to_string();
    sh.body_lazy(format!("map{arity}:{expr}"), move || {
        let loads: String = (0..arity)
            .map(|k| format!("    let a{k} = ld_x{k}(o[{k}]);\n"))
            .collect();
        Ok(section(MAP, "map")?
            .replace("$LOADS\n", &loads)
            .replace("$OUT", &arity.to_string())
            .replace("$EXPR", &expr_text))
    });
    sh.launch([n as u64, 1, 1])
}

/// `$T`, `$TMIN`, `$BITS` of an integer dtype's templates.
fn int_subs(text: &str, dtype: DType) -> String {
    let (t, min, bits) = if dtype == DType::I64 {
        ("i64", "i64_min()", "64")
    } else {
        ("i32", "(-2147483647 - 1)", "32")
    };
    text.replace("$TMIN", min)
        .replace("$BITS", bits)
        .replace("$T", t)
}

/// A WGSL expression converting `v`, a loaded value of `from` (f32 for the 16-bit floats, u32
/// for u8), to a value of `to` by the rules of `cast`; stores of f16 and bf16 round the f32 it
/// gives once.
fn convert(from: DType, to: DType, v: &str) -> Result<String> {
    use DType::*;
    let f32ish = |d: DType| matches!(d, F32 | F16 | BF16);
    let bits = |d: DType| match d {
        F16 => 11,
        BF16 => 8,
        _ => 24,
    };
    Ok(match (from, to) {
        (a, b) if a == b => v.to_string(),
        (a, b) if f32ish(a) && f32ish(b) => v.to_string(),
        (a, F64) if f32ish(a) => format!("f64({v})"),
        (a, I32) if f32ish(a) => format!("f32_to_i32({v})"),
        (a, I64) if f32ish(a) => format!("f32_to_i64({v})"),
        (a, U8) if f32ish(a) => format!("f32_to_u8({v})"),
        (a, I8) if f32ish(a) => format!("f32_to_i8({v})"),
        (a, Bool) if f32ish(a) => format!("!is_zero({v})"),
        (F64, F32) => format!("f32({v})"),
        (F64, _) if f32ish(to) => format!("f64_to_f32_odd({v})"),
        (F64, I32) => format!("f64_to_i32({v})"),
        (F64, I64) => format!("f64_to_i64({v})"),
        (F64, U8) => format!("f64_to_u8({v})"),
        (F64, I8) => format!("f64_to_i8({v})"),
        (F64, Bool) => format!("!({v} == 0.0lf)"),
        (I32, F64) => format!("f64({v})"),
        (I32, b) if f32ish(b) => format!("i32_to_float({v}, {}u)", bits(b)),
        (I32, I64) => format!("i64({v})"),
        (I32, U8) => format!("(bitcast<u32>({v}) & 0xffu)"),
        (I32, I8) => v.to_string(),
        (I32, Bool) => format!("({v} != 0)"),
        (I64, F64) => format!("i64_to_f64({v})"),
        (I64, b) if f32ish(b) => format!("i64_to_float({v}, {}u)", bits(b)),
        (I64, I32) => format!("bitcast<i32>(u32({v} & 0xffffffffli))"),
        (I64, U8) => format!("u32({v} & 255li)"),
        (I64, I8) => format!("i32({v} & 255li)"),
        (I64, Bool) => format!("({v} != 0li)"),
        (U8, F64) => format!("f64({v})"),
        (U8, b) if f32ish(b) => format!("f32({v})"),
        (U8, I32) => format!("i32({v})"),
        (U8, I64) => format!("i64({v})"),
        (U8, Bool) => format!("({v} != 0u)"),
        (U8, I8) => format!("i32({v})"),
        (I8, F64) => format!("f64({v})"),
        (I8, b) if f32ish(b) => format!("f32({v})"),
        (I8, I32) => v.to_string(),
        (I8, I64) => format!("i64({v})"),
        (I8, U8) => format!("(bitcast<u32>({v}) & 0xffu)"),
        (I8, Bool) => format!("({v} != 0)"),
        (Bool, F64) => format!("select(0.0lf, 1.0lf, {v})"),
        (Bool, b) if f32ish(b) => format!("select(0.0, 1.0, {v})"),
        (Bool, I32) => format!("select(0, 1, {v})"),
        (Bool, I64) => format!("select(0li, 1li, {v})"),
        (Bool, U8) => format!("select(0u, 1u, {v})"),
        (Bool, I8) => format!("select(0, 1, {v})"),
        _ => {
            return Err(Error::internal(format!(
                "cast: no WGSL conversion from {from} to {to}"
            )))
        }
    })
}

/// Copies the elements of `x` into `out` (same dtype, same shape), bit for bit.
pub(crate) fn copy(cx: &Cx<'_>, op: &str, x: &Bound, out: &Bound) -> Result<()> {
    let access = Access::raw(x.desc.dtype);
    map(cx, op, &[(x.clone(), access)], (out, access), "a0", |_| {
        Ok(())
    })
}

/// `fill`, `arange`, `copy`, `cast`, `concat` and `where`.
pub(crate) fn movement(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let out_t = output(call, 0)?;
    let out = bind(out_t)?;
    let dt = out_t.dtype();
    match op {
        "fill" => {
            let bits = convert::value_bits(a.float("value")?, dt);
            let access = Access::raw(dt);
            let expr = match access {
                Access::Raw8 => "vec2<u32>(p.v0, p.v1)",
                _ => "p.v0",
            };
            map(cx, op, &[], (&out, access), expr, |sh| {
                sh.u32("v0", bits as u32).u32("v1", (bits >> 32) as u32);
                Ok(())
            })
        }
        "arange" => {
            let (start, step) = (a.float("start")?, a.float("step")?);
            // Floats: in f64 as written where the device has it, then rounded once (through an
            // f32 rounded to odd for the 16-bit dtypes); else in f32 from start and step
            // rounded to f32.
            let wide = dt.is_float() && cx.device.caps().has_dtype(DType::F64);
            let f64_value = "f64_from_parts(p.s0, p.s1) + f64(lin) * f64_from_parts(p.d0, p.d1)";
            let expr = match dt {
                DType::I32 => "bitcast<i32>(p.s0 + lin * p.d0)".to_string(),
                DType::I64 => "i64_from_parts(p.s0, p.s1) + (i64(lin) & 0xffffffffli) * i64_from_parts(p.d0, p.d1)".to_string(),
                DType::F32 if wide => format!("f32({f64_value})"),
                _ if wide => format!("f64_to_f32_odd({f64_value})"),
                _ => "p.start + f32(lin) * p.step".to_string(),
            };
            map(cx, op, &[], (&out, Access::of(dt)), &expr, |sh| {
                let words = |sh: &mut Shader<'_>, s: u64, d: u64| {
                    sh.u32("s0", s as u32).u32("s1", (s >> 32) as u32);
                    sh.u32("d0", d as u32).u32("d1", (d >> 32) as u32);
                };
                if dt.is_int() {
                    words(sh, start as i64 as u64, step as i64 as u64);
                } else if wide {
                    words(sh, start.to_bits(), step.to_bits());
                    sh.need(DType::F64)?;
                } else {
                    sh.f32("start", start as f32).f32("step", step as f32);
                }
                Ok(())
            })
        }
        "copy" => copy(cx, op, &bind(input(call, 0)?)?, &out),
        "cast" => {
            let x_t = input(call, 0)?;
            let x = bind(x_t)?;
            let from = x_t.dtype();
            if from == dt {
                return copy(cx, op, &x, &out);
            }
            let expr = convert(from, dt, "a0")?;
            map(
                cx,
                op,
                &[(x, Access::of(from))],
                (&out, Access::of(dt)),
                &expr,
                |sh| {
                    if from == DType::F64 && dt == DType::I64 {
                        sh.use_section(super::COMMON, "common_f64_i64")?;
                    }
                    if from == DType::I64 && dt == DType::F64 {
                        sh.use_section(super::COMMON, "common_f64_i64")?;
                    }
                    sh.need(from)?;
                    sh.need(dt)
                },
            )
        }
        "concat" => {
            let axis = a.axis("axis", None, out_t.rank())?;
            let mut start = 0;
            for x_t in call.inputs.iter().flatten() {
                let len = x_t.shape()[axis];
                if x_t.numel() > 0 {
                    let od = out_t.desc();
                    let mut shape = od.shape.clone();
                    shape[axis] = len;
                    let part = TensorDesc {
                        offset: od.offset + start * od.strides[axis],
                        shape,
                        ..od.clone()
                    };
                    copy(cx, op, &bind(x_t)?, &bind_desc(out_t, part)?)?;
                }
                start += len;
            }
            Ok(())
        }
        "where" => {
            let c = bind(input(call, 0)?)?;
            let x = bind(input(call, 1)?)?;
            let y = bind(input(call, 2)?)?;
            let access = Access::raw(dt);
            map(
                cx,
                op,
                &[(c, Access::Bool), (x, access), (y, access)],
                (&out, access),
                "select(a2, a1, a0)",
                |_| Ok(()),
            )
        }
        other => Err(Error::internal(format!(
            "WGSL movement kernels: unexpected op {other}"
        ))),
    }
}

/// Unary ops.
pub(crate) fn unary(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let x_t = input(call, 0)?;
    let dt = x_t.dtype();
    let x = bind(x_t)?;
    let out = bind(output(call, 0)?)?;
    let access = Access::of(dt);
    let name = if op == "gelu" && a.str_opt("approximate")? == Some("tanh") {
        "gelu_tanh"
    } else {
        op
    };
    // u8 loads as a u32 in 0..=255 and bool as a bool: the bitwise ops are expressions there.
    let expr = match (op, dt) {
        ("bitwise_not", DType::U8) => "(~a0) & 0xffu".to_string(),
        ("bitwise_not", DType::Bool) => "!a0".to_string(),
        _ => format!("op_{name}(a0)"),
    };
    map(cx, op, &[(x, access)], (&out, access), &expr, |sh| {
        if matches!(dt, DType::U8 | DType::Bool) {
            return Ok(());
        }
        if dt.is_int() {
            let text = section(UNARY, &format!("int_{name}"))?;
            let mut text = int_subs(text, dt);
            if op == "clamp" {
                let (lo, hi) = (a.float("min")? as i64, a.float("max")? as i64);
                if dt == DType::I64 {
                    let (l, h) = (lo as u64, hi as u64);
                    sh.u32("lo0", l as u32).u32("lo1", (l >> 32) as u32);
                    sh.u32("hi0", h as u32).u32("hi1", (h >> 32) as u32);
                    text = text
                        .replace("$LO", "i64_from_parts(p.lo0, p.lo1)")
                        .replace("$HI", "i64_from_parts(p.hi0, p.hi1)");
                } else {
                    sh.i32("lo", lo as i32).i32("hi", hi as i32);
                    text = text.replace("$LO", "p.lo").replace("$HI", "p.hi");
                }
            }
            sh.body(&text);
        } else {
            if op == "clamp" {
                // Rounded once to x's dtype (monotone, so the clamp is the same as with the
                // exact bounds, and a bound that is the result needs no second rounding).
                sh.f32("lo", convert::f32_holding(a.float("min")?, dt))
                    .f32("hi", convert::f32_holding(a.float("max")?, dt));
            }
            // The activations' parameters, as f32s (they compute in f32).
            activation_params(sh, &a, op)?;
            sh.use_section(UNARY, name)?;
        }
        Ok(())
    })
}

/// `p.lo` and `p.hi` of an activation or its gradient, as f32s (they compute in f32): only
/// the parameters the op has, so that the others' kernels keep their text.
fn activation_params(sh: &mut Shader<'_>, a: &crate::attrs::Attrs<'_>, op: &str) -> Result<()> {
    let (lo, hi) = crate::attrs::activation_params(a, op)?;
    match op.trim_end_matches("_backward") {
        "softplus" => {
            sh.f32("lo", lo as f32).f32("hi", hi as f32);
        }
        "leaky_relu" | "elu" => {
            sh.f32("lo", lo as f32);
        }
        _ => {}
    }
    Ok(())
}

/// The activation gradients: `dx` from `grad` and `x`, in f32.
pub(crate) fn backward(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let (g_t, x_t) = (input(call, 0)?, input(call, 1)?);
    let access = Access::of(x_t.dtype());
    let (g, x, out) = (bind(g_t)?, bind(x_t)?, bind(output(call, 0)?)?);
    let name = if op == "gelu_backward" && a.str_opt("approximate")? == Some("tanh") {
        "gelu_tanh_backward"
    } else {
        op
    };
    let func = format!("bw_{}(a0, a1)", name.trim_end_matches("_backward"));
    map(
        cx,
        op,
        &[(g, access), (x, access)],
        (&out, access),
        &func,
        |sh| {
            activation_params(sh, &a, op)?;
            sh.use_section(UNARY, name)?;
            Ok(())
        },
    )
}

/// `isnan`, `isinf`, `isfinite`, `logical_not`: a bool for each element of any dtype.
pub(crate) fn predicate(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let x_t = input(call, 0)?;
    let dt = x_t.dtype();
    let (x, out) = (bind(x_t)?, bind(output(call, 0)?)?);
    let expr = match (op, dt) {
        ("logical_not", DType::Bool) => "!a0",
        ("logical_not", DType::U8) => "a0 == 0u",
        ("logical_not", DType::I32 | DType::I8) => "a0 == 0",
        ("logical_not", DType::I64) => "a0 == 0li",
        ("logical_not", _) => "is_zero(a0)",
        ("isnan", d) if d.is_float() => "is_nan(a0)",
        ("isinf", d) if d.is_float() => "is_inf(a0)",
        ("isfinite", d) if d.is_float() => "!is_nan(a0) && !is_inf(a0)",
        ("isfinite", _) => "true",
        _ => "false",
    };
    map(
        cx,
        op,
        &[(x, Access::of(dt))],
        (&out, Access::Bool),
        expr,
        |sh| sh.need(dt),
    )
}

/// The expression of a binary op on bools (loaded as bool) and u8 (loaded as a u32 in
/// 0..=255), where the integer templates do not apply.
fn small_int_expr(op: &str, dt: DType) -> Option<&'static str> {
    Some(match (dt, op) {
        (DType::Bool, "eq") => "a0 == a1",
        (DType::Bool, "ne" | "bitwise_xor" | "logical_xor") => "a0 != a1",
        (DType::Bool, "lt") => "!a0 && a1",
        (DType::Bool, "le") => "!a0 || a1",
        (DType::Bool, "gt") => "a0 && !a1",
        (DType::Bool, "ge") => "a0 || !a1",
        (DType::Bool, "bitwise_and" | "logical_and") => "a0 && a1",
        (DType::Bool, "bitwise_or" | "logical_or") => "a0 || a1",
        (DType::U8, "bitwise_and") => "a0 & a1",
        (DType::U8, "bitwise_or") => "a0 | a1",
        (DType::U8, "bitwise_xor") => "a0 ^ a1",
        (DType::U8, "bitwise_left_shift") => "select(0u, (a0 << min(a1, 31u)) & 0xffu, a1 < 8u)",
        (DType::U8, "bitwise_right_shift") => "select(0u, a0 >> min(a1, 31u), a1 < 8u)",
        _ => return None,
    })
}

/// Binary ops and comparisons.
pub(crate) fn binary(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let (a_t, b_t) = (input(call, 0)?, input(call, 1)?);
    let out_t = output(call, 0)?;
    let dt = a_t.dtype();
    let (a, b, out) = (bind(a_t)?, bind(b_t)?, bind(out_t)?);
    let access = Access::of(dt);
    let small = small_int_expr(op, dt);
    let expr = match small {
        Some(e) => e.to_string(),
        None => format!("op_{op}(a0, a1)"),
    };
    map(
        cx,
        op,
        &[(a, access), (b, access)],
        (&out, Access::of(out_t.dtype())),
        &expr,
        |sh| {
            if small.is_some() {
                return Ok(());
            }
            if dt.is_int() {
                let text = section(BINARY, &format!("int_{op}"))?;
                sh.body(&int_subs(text, dt));
            } else {
                if op == "atan2" {
                    sh.use_section(UNARY, "atan_core")?;
                }
                sh.use_section(BINARY, op)?;
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_pick_one_conversion_per_pair() {
        use DType::*;
        let all = [F32, F16, BF16, F64, I32, I64, U8, I8, Bool];
        for from in all {
            for to in all {
                let e = convert(from, to, "v");
                assert!(e.is_ok(), "{from} -> {to}: {e:?}");
            }
        }
        let c = |a, b| convert(a, b, "v").unwrap();
        assert_eq!(c(I32, BF16), "i32_to_float(v, 8u)");
        assert_eq!(c(F64, F16), "f64_to_f32_odd(v)");
        assert_eq!(c(F32, Bool), "!is_zero(v)");
        assert_eq!(c(I64, U8), "u32(v & 255li)");
        assert_eq!(c(F16, BF16), "v");
    }
}
