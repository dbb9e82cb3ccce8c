//! Elementwise ops: binary arithmetic, comparisons, `where`, unary functions, `gelu`, `clamp`.

use std::f64::consts::{PI, SQRT_2};

use anyaccel_hal::{DType, Result};
use anyaccel_ops::catalog::{ActivationBackwardOp, ActivationOp, BinaryOp, PredicateOp, UnaryOp};

use super::{
    broadcast_shapes, check_dtype, check_same_dtype, describe, expand, internal, invalid, Call,
    RefData, RefTensor, ALL_DTYPES, FLOAT_DTYPES, NUMERIC_DTYPES,
};

/// IEEE maximum that propagates NaN; of two equal values (±0) it returns +0.
pub(crate) fn maximum_f(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a > b {
        a
    } else if b > a || a.is_sign_negative() {
        b
    } else {
        a
    }
}

/// IEEE minimum that propagates NaN; of two equal values (±0) it returns -0.
pub(crate) fn minimum_f(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a < b {
        a
    } else if b < a || a.is_sign_positive() {
        b
    } else {
        a
    }
}

/// `1 / (1 + exp(-x))`.
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + libm::exp(-x))
}

/// Python's floor-mod of floats: the exact `fmod`, moved to the sign of `b` when not 0.
fn remainder_f(a: f64, b: f64) -> f64 {
    let r = libm::fmod(a, b);
    if r != 0.0 && (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

fn float_binary(op: BinaryOp) -> Option<fn(f64, f64) -> f64> {
    Some(match op {
        BinaryOp::Add => |a, b| a + b,
        BinaryOp::Sub => |a, b| a - b,
        BinaryOp::Mul => |a, b| a * b,
        BinaryOp::Div => |a, b| a / b,
        BinaryOp::Maximum => maximum_f,
        BinaryOp::Minimum => minimum_f,
        BinaryOp::Pow => libm::pow,
        BinaryOp::Atan2 => libm::atan2,
        BinaryOp::Remainder => remainder_f,
        BinaryOp::Fmod => libm::fmod,
        _ => return None,
    })
}

/// The integer form of a binary op on values of `dtype` (results are wrapped to it after).
fn int_binary(op: BinaryOp, dtype: DType) -> Option<Box<dyn Fn(i64, i64) -> i64>> {
    let width = match dtype {
        DType::U8 | DType::I8 | DType::Bool => 8,
        DType::I32 => 32,
        _ => 64,
    };
    Some(match op {
        BinaryOp::Add => Box::new(i64::wrapping_add),
        BinaryOp::Sub => Box::new(i64::wrapping_sub),
        BinaryOp::Mul => Box::new(i64::wrapping_mul),
        // Truncates toward zero; x / 0 = 0; MIN / -1 wraps to MIN (in i64 here, and for i32
        // when 2^31 is wrapped back to 32 bits).
        BinaryOp::Div => Box::new(|a, b| if b == 0 { 0 } else { a.wrapping_div(b) }),
        BinaryOp::Maximum => Box::new(|a: i64, b| a.max(b)),
        BinaryOp::Minimum => Box::new(|a: i64, b| a.min(b)),
        // x % 0 = 0; MIN % -1 = 0.
        BinaryOp::Fmod => Box::new(|a, b| if b == 0 { 0 } else { a.wrapping_rem(b) }),
        BinaryOp::Remainder => Box::new(|a, b| {
            if b == 0 {
                return 0;
            }
            let r = a.wrapping_rem(b);
            if r != 0 && (r < 0) != (b < 0) {
                r + b
            } else {
                r
            }
        }),
        BinaryOp::BitwiseAnd => Box::new(|a, b| a & b),
        BinaryOp::BitwiseOr => Box::new(|a, b| a | b),
        BinaryOp::BitwiseXor => Box::new(|a, b| a ^ b),
        // Amounts outside [0, width): 0 to the left, the sign to the right.
        BinaryOp::BitwiseLeftShift => Box::new(move |a, b| {
            if (0..width).contains(&b) {
                a.wrapping_shl(b as u32)
            } else {
                0
            }
        }),
        BinaryOp::BitwiseRightShift => Box::new(move |a, b| {
            if (0..width).contains(&b) {
                a >> b
            } else if a < 0 {
                -1
            } else {
                0
            }
        }),
        BinaryOp::Pow | BinaryOp::Atan2 => return None,
    })
}

/// The binary ops of [`BinaryOp`] on the dtypes the catalog lists, with broadcasting.
pub(crate) fn binary(call: &Call, op: BinaryOp, dtypes: &[DType]) -> Result<RefTensor> {
    let name = call.op;
    let a = call.input(0)?;
    let b = call.input(1)?;
    check_dtype(name, "a", a.dtype, dtypes)?;
    check_same_dtype(name, "b", b, "a", a)?;
    let shape = broadcast_shapes(name, &[("a", &a.shape), ("b", &b.shape)])?;
    match (expand(a, &shape), expand(b, &shape)) {
        (RefData::F(x), RefData::F(y)) => {
            let f = float_binary(op).ok_or_else(|| internal(name, "not a float binary op"))?;
            let values = x.iter().zip(&y).map(|(&p, &q)| f(p, q)).collect();
            RefTensor::from_f64(a.dtype, &shape, values)
        }
        (RefData::I(x), RefData::I(y)) => {
            let f = int_binary(op, a.dtype)
                .ok_or_else(|| internal(name, "not an integer binary op"))?;
            let values = x.iter().zip(&y).map(|(&p, &q)| f(p, q)).collect();
            RefTensor::from_i64(a.dtype, &shape, values)
        }
        _ => Err(internal(name, "a and b hold different kinds of data")),
    }
}

/// `eq`, `ne`, `lt`, `le`, `gt`, `ge`: bool results, with broadcasting.
pub(crate) fn compare(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let a = call.input(0)?;
    let b = call.input(1)?;
    let mut allowed = NUMERIC_DTYPES.to_vec();
    allowed.push(DType::Bool);
    check_dtype(op, "a", a.dtype, &allowed)?;
    check_same_dtype(op, "b", b, "a", a)?;
    let shape = broadcast_shapes(op, &[("a", &a.shape), ("b", &b.shape)])?;
    let results: Vec<bool> = match (expand(a, &shape), expand(b, &shape)) {
        // Rust's f64 comparisons are IEEE: NaN compares false, except with `!=`.
        (RefData::F(x), RefData::F(y)) => {
            let f: fn(&f64, &f64) -> bool = match op {
                "eq" => f64::eq,
                "ne" => f64::ne,
                "lt" => f64::lt,
                "le" => f64::le,
                "gt" => f64::gt,
                "ge" => f64::ge,
                // Nonzero is true: NaN too, and -0.0 is false.
                "logical_and" => |p, q| *p != 0.0 && *q != 0.0,
                "logical_or" => |p, q| *p != 0.0 || *q != 0.0,
                "logical_xor" => |p, q| (*p != 0.0) != (*q != 0.0),
                _ => return Err(internal(op, "not a comparison")),
            };
            x.iter().zip(&y).map(|(p, q)| f(p, q)).collect()
        }
        // Bool holds 0 and 1, so false < true.
        (RefData::I(x), RefData::I(y)) => {
            let f: fn(&i64, &i64) -> bool = match op {
                "eq" => i64::eq,
                "ne" => i64::ne,
                "lt" => i64::lt,
                "le" => i64::le,
                "gt" => i64::gt,
                "ge" => i64::ge,
                "logical_and" => |p, q| *p != 0 && *q != 0,
                "logical_or" => |p, q| *p != 0 || *q != 0,
                "logical_xor" => |p, q| (*p != 0) != (*q != 0),
                _ => return Err(internal(op, "not a comparison")),
            };
            x.iter().zip(&y).map(|(p, q)| f(p, q)).collect()
        }
        _ => return Err(internal(op, "a and b hold different kinds of data")),
    };
    RefTensor::from_bools(DType::Bool, &shape, &results)
}

/// `where(cond, a, b)`: `cond ? a : b`, all three broadcast together.
pub(crate) fn where_(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let cond = call.input(0)?;
    let a = call.input(1)?;
    let b = call.input(2)?;
    check_dtype(op, "cond", cond.dtype, &[DType::Bool])?;
    check_dtype(op, "a", a.dtype, &ALL_DTYPES)?;
    check_same_dtype(op, "b", b, "a", a)?;
    let shape = broadcast_shapes(
        op,
        &[("cond", &cond.shape), ("a", &a.shape), ("b", &b.shape)],
    )?;
    let c = match expand(cond, &shape) {
        RefData::I(c) => c,
        RefData::F(_) => return Err(internal(op, "cond holds float data")),
    };
    let data = match (expand(a, &shape), expand(b, &shape)) {
        (RefData::F(x), RefData::F(y)) => RefData::F(
            c.iter()
                .zip(x.iter().zip(&y))
                .map(|(&c, (&p, &q))| if c != 0 { p } else { q })
                .collect(),
        ),
        (RefData::I(x), RefData::I(y)) => RefData::I(
            c.iter()
                .zip(x.iter().zip(&y))
                .map(|(&c, (&p, &q))| if c != 0 { p } else { q })
                .collect(),
        ),
        _ => return Err(internal(op, "a and b hold different kinds of data")),
    };
    Ok(RefTensor {
        dtype: a.dtype,
        shape,
        data,
    })
}

type FloatFn = fn(f64) -> f64;
type IntFn = fn(i64) -> i64;

/// The f64 form of a plain unary op, and its integer form for the ops that take integers
/// (results are wrapped to the dtype afterwards: `neg(MIN) = MIN`, `abs(MIN) = MIN`).
fn unary_fns(op: UnaryOp) -> (FloatFn, Option<IntFn>) {
    match op {
        UnaryOp::Neg => (|x| -x, Some(i64::wrapping_neg)),
        UnaryOp::Abs => (f64::abs, Some(i64::wrapping_abs)),
        UnaryOp::Relu => (
            |x| if x.is_nan() || x > 0.0 { x } else { 0.0 },
            Some(|x| x.max(0)),
        ),
        UnaryOp::Exp => (libm::exp, None),
        UnaryOp::Log => (libm::log, None),
        UnaryOp::Sqrt => (libm::sqrt, None),
        UnaryOp::Rsqrt => (|x| 1.0 / libm::sqrt(x), None),
        UnaryOp::Sin => (libm::sin, None),
        UnaryOp::Cos => (libm::cos, None),
        UnaryOp::Tanh => (libm::tanh, None),
        UnaryOp::Sigmoid => (sigmoid, None),
        UnaryOp::Silu => (|x| x * sigmoid(x), None),
        UnaryOp::Erf => (libm::erf, None),
        UnaryOp::Floor => (f64::floor, None),
        UnaryOp::Ceil => (f64::ceil, None),
        UnaryOp::Round => (f64::round_ties_even, None),
        UnaryOp::Trunc => (f64::trunc, None),
        UnaryOp::Sign => (
            |x| {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else if x.is_nan() {
                    x
                } else {
                    0.0
                }
            },
            Some(i64::signum),
        ),
        UnaryOp::Reciprocal => (|x| 1.0 / x, None),
        UnaryOp::Log1p => (libm::log1p, None),
        UnaryOp::Expm1 => (libm::expm1, None),
        UnaryOp::Tan => (libm::tan, None),
        UnaryOp::Atan => (libm::atan, None),
        UnaryOp::Asin => (libm::asin, None),
        UnaryOp::Acos => (libm::acos, None),
        UnaryOp::Sinh => (libm::sinh, None),
        UnaryOp::Asinh => (libm::asinh, None),
        // libm's acosh does not check its domain.
        UnaryOp::Acosh => (|x| if x < 1.0 { f64::NAN } else { libm::acosh(x) }, None),
        UnaryOp::Atanh => (libm::atanh, None),
        UnaryOp::Cosh => (libm::cosh, None),
        UnaryOp::Hardswish => (
            |x| {
                let r6 = if x.is_nan() {
                    x
                } else {
                    (x + 3.0).clamp(0.0, 6.0)
                };
                x * r6 / 6.0
            },
            None,
        ),
        // Bools keep the low bit (`wrap_int` would make -2 true): `!x`.
        UnaryOp::BitwiseNot => (|x| x, Some(|x| !x)),
    }
}

/// The plain unary ops of the catalog ([`UnaryOp`]), on the dtypes it declares for each.
pub(crate) fn unary(call: &Call, op: UnaryOp) -> Result<RefTensor> {
    let name = call.op;
    let x = call.input(0)?;
    check_dtype(name, "x", x.dtype, op.dtypes())?;
    let (ff, fi) = unary_fns(op);
    match &x.data {
        RefData::F(v) => RefTensor::from_f64(x.dtype, &x.shape, v.iter().map(|&p| ff(p)).collect()),
        RefData::I(v) => {
            let f = fi.ok_or_else(|| internal(name, "not an integer unary op"))?;
            let low_bit = if x.dtype == DType::Bool { 1 } else { -1 };
            RefTensor::from_i64(
                x.dtype,
                &x.shape,
                v.iter().map(|&p| f(p) & low_bit).collect(),
            )
        }
    }
}

/// `isnan`, `isinf`, `isfinite`, `logical_not`: bool results for any dtype.
pub(crate) fn predicate(call: &Call, op: PredicateOp) -> Result<RefTensor> {
    let name = call.op;
    let x = call.input(0)?;
    check_dtype(name, "x", x.dtype, &ALL_DTYPES)?;
    let results: Vec<bool> = match &x.data {
        RefData::F(v) => v
            .iter()
            .map(|&p| match op {
                PredicateOp::IsNan => p.is_nan(),
                PredicateOp::IsInf => p.is_infinite(),
                PredicateOp::IsFinite => p.is_finite(),
                PredicateOp::LogicalNot => p == 0.0,
            })
            .collect(),
        RefData::I(v) => v
            .iter()
            .map(|&p| match op {
                PredicateOp::IsNan | PredicateOp::IsInf => false,
                PredicateOp::IsFinite => true,
                PredicateOp::LogicalNot => p == 0,
            })
            .collect(),
    };
    RefTensor::from_bools(DType::Bool, &x.shape, &results)
}

/// `softplus`, `leaky_relu`, `elu`, with their attributes (defaults from the catalog).
pub(crate) fn activation(call: &Call, op: ActivationOp) -> Result<RefTensor> {
    let name = call.op;
    let x = call.input(0)?;
    check_dtype(name, "x", x.dtype, &FLOAT_DTYPES)?;
    let float = |attr: &str, default: f64| finite_attr(call, attr, default);
    let f: Box<dyn Fn(f64) -> f64> = match op {
        ActivationOp::Softplus => {
            let (beta, threshold) = (float("beta", 1.0)?, float("threshold", 20.0)?);
            if beta == 0.0 {
                return Err(invalid(
                    name,
                    "attribute `beta` is 0, expected a finite value other than 0",
                ));
            }
            Box::new(move |x| {
                let t = x * beta;
                if t > threshold {
                    x
                } else {
                    // log1p(e^t), kept from overflowing for large thresholds.
                    (t.max(0.0) + libm::log1p(libm::exp(-t.abs()))) / beta
                }
            })
        }
        ActivationOp::LeakyRelu => {
            let slope = float("negative_slope", 0.01)?;
            Box::new(move |x| if x > 0.0 { x } else { x * slope })
        }
        ActivationOp::Elu => {
            let alpha = float("alpha", 1.0)?;
            Box::new(move |x| if x > 0.0 { x } else { alpha * libm::expm1(x) })
        }
    };
    RefTensor::from_f64(
        x.dtype,
        &x.shape,
        x.to_f64_vec().into_iter().map(f).collect(),
    )
}

/// A finite `Float` attribute, `default` when absent.
fn finite_attr(call: &Call, attr: &str, default: f64) -> Result<f64> {
    let v = call.float_attr(attr)?.unwrap_or(default);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(invalid(
            call.op,
            format!("attribute `{attr}` is {v}, expected a finite value"),
        ))
    }
}

/// The activation gradients `(grad, x) -> dx`, in f64: the derivative of the forward op at x
/// times grad. Where the derivative is 0 in the limit (x = +-Inf, or an underflow), x times it
/// is 0; `relu_backward` and `elu_backward` take the x > 0 branch for NaN, `leaky_relu_backward`
/// the other one (as PyTorch's kernels do).
pub(crate) fn activation_backward(call: &Call, op: ActivationBackwardOp) -> Result<RefTensor> {
    use ActivationBackwardOp as B;
    let name = call.op;
    let g = call.input(0)?;
    let x = call.input(1)?;
    check_dtype(name, "grad", g.dtype, &FLOAT_DTYPES)?;
    check_same_dtype(name, "x", x, "grad", g)?;
    if g.shape != x.shape {
        return Err(invalid(
            name,
            format!(
                "{} but {}: shapes must be equal",
                describe("grad", g),
                describe("x", x)
            ),
        ));
    }
    let float = |attr: &str, default: f64| finite_attr(call, attr, default);
    // Derivatives written without cancellation; `small(x, d)` is x * d, 0 where d is 0.
    fn sig_d(x: f64) -> f64 {
        let e = (-x.abs()).exp();
        e / ((1.0 + e) * (1.0 + e))
    }
    fn tanh_d(x: f64) -> f64 {
        let e = (-2.0 * x.abs()).exp();
        4.0 * e / ((1.0 + e) * (1.0 + e))
    }
    fn small(x: f64, d: f64) -> f64 {
        if d == 0.0 {
            0.0
        } else {
            x * d
        }
    }
    let f: Box<dyn Fn(f64, f64) -> f64> = match op {
        B::Relu => Box::new(|g, x| if x <= 0.0 { 0.0 } else { g }),
        B::LeakyRelu => {
            let slope = float("negative_slope", 0.01)?;
            Box::new(move |g, x| if x > 0.0 { g } else { g * slope })
        }
        B::Elu => {
            let alpha = float("alpha", 1.0)?;
            Box::new(move |g, x| if x <= 0.0 { g * alpha * x.exp() } else { g })
        }
        B::Sigmoid => Box::new(|g, x| g * sig_d(x)),
        B::Tanh => Box::new(|g, x| g * tanh_d(x)),
        B::Silu => Box::new(|g, x| g * (sigmoid(x) + small(x, sig_d(x)))),
        B::Softplus => {
            let (beta, threshold) = (float("beta", 1.0)?, float("threshold", 20.0)?);
            if beta == 0.0 {
                return Err(invalid(
                    name,
                    "attribute `beta` is 0, expected a finite value other than 0",
                ));
            }
            Box::new(move |g, x| {
                let t = x * beta;
                if t > threshold {
                    g
                } else {
                    g * sigmoid(t)
                }
            })
        }
        B::Gelu => match call.str_attr("approximate")?.unwrap_or("none") {
            "none" => Box::new(|g, x| {
                let cdf = 0.5 * (1.0 + libm::erf(x / SQRT_2));
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                g * (cdf + small(x, pdf))
            }),
            "tanh" => Box::new(|g, x| {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                let inner = k * (x + 0.044715 * x * x * x);
                let d = tanh_d(inner);
                let right = if d == 0.0 {
                    0.0
                } else {
                    0.5 * x * d * k * (1.0 + 3.0 * 0.044715 * x * x)
                };
                g * (0.5 * (1.0 + inner.tanh()) + right)
            }),
            other => {
                return Err(invalid(
                    name,
                    format!("attribute `approximate` is `{other}`, expected `none` or `tanh`"),
                ))
            }
        },
    };
    let (gv, xv) = (g.to_f64_vec(), x.to_f64_vec());
    RefTensor::from_f64(
        x.dtype,
        &x.shape,
        gv.iter().zip(&xv).map(|(&g, &x)| f(g, x)).collect(),
    )
}

/// `gelu`, exact (`approximate = "none"`) or with the tanh approximation.
pub(crate) fn gelu(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    let f: fn(f64) -> f64 = match call.str_attr("approximate")?.unwrap_or("none") {
        "none" => |x| x * 0.5 * (1.0 + libm::erf(x / SQRT_2)),
        "tanh" => |x| {
            let inner = (2.0 / PI).sqrt() * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + libm::tanh(inner))
        },
        other => {
            return Err(invalid(
                op,
                format!("attribute `approximate` is `{other}`, expected `none` or `tanh`"),
            ))
        }
    };
    RefTensor::from_f64(
        x.dtype,
        &x.shape,
        x.to_f64_vec().into_iter().map(f).collect(),
    )
}

/// `clamp(x, min, max) = minimum(maximum(x, min), max)`.
pub(crate) fn clamp(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &NUMERIC_DTYPES)?;
    let lo = call.req_float("min")?;
    let hi = call.req_float("max")?;
    match &x.data {
        RefData::F(v) => {
            if lo.is_nan() || hi.is_nan() {
                return Err(invalid(
                    op,
                    format!("attributes `min` = {lo} and `max` = {hi}, expected bounds that are not NaN"),
                ));
            }
            let values = v.iter().map(|&p| minimum_f(maximum_f(p, lo), hi)).collect();
            RefTensor::from_f64(x.dtype, &x.shape, values)
        }
        RefData::I(v) => {
            let lo = int_bound(op, "min", lo, x.dtype)?;
            let hi = int_bound(op, "max", hi, x.dtype)?;
            let values = v.iter().map(|&p| p.max(lo).min(hi)).collect();
            RefTensor::from_i64(x.dtype, &x.shape, values)
        }
    }
}

/// A clamp bound for an integer dtype: an integral value within the dtype's range.
fn int_bound(op: &str, name: &str, bound: f64, dtype: DType) -> Result<i64> {
    // Both limits are exact f64s: -2^31, 2^31 and -2^63, 2^63.
    let (low, high_exclusive) = match dtype {
        DType::I32 => (-2_147_483_648.0, 2_147_483_648.0),
        _ => (-9_223_372_036_854_775_808.0, 9_223_372_036_854_775_808.0),
    };
    if bound.is_finite() && bound.fract() == 0.0 && bound >= low && bound < high_exclusive {
        Ok(bound as i64)
    } else {
        Err(invalid(
            op,
            format!(
                "attribute `{name}` is {bound}, expected an integral value within the range of {dtype}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use anyaccel_hal::ErrorCode;

    const NAN: f64 = f64::NAN;
    const INF: f64 = f64::INFINITY;

    fn bin(op: &str, a: Option<RefTensor>, b: Option<RefTensor>) -> RefTensor {
        run1(op, &[a, b], &[])
    }

    #[test]
    fn float_arithmetic_with_broadcasting() {
        let a = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let col = f32t(&[2, 1], &[10.0, 20.0]);
        let row = f32t(&[3], &[1.0, 0.0, -1.0]);
        assert_f(
            &bin("add", a.clone(), col.clone()),
            DType::F32,
            &[2, 3],
            &[11.0, 12.0, 13.0, 24.0, 25.0, 26.0],
        );
        assert_f(
            &bin("sub", col.clone(), row.clone()),
            DType::F32,
            &[2, 3],
            &[9.0, 10.0, 11.0, 19.0, 20.0, 21.0],
        );
        assert_f(
            &bin("mul", a.clone(), row.clone()),
            DType::F32,
            &[2, 3],
            &[1.0, 0.0, -3.0, 4.0, 0.0, -6.0],
        );
        assert_f(
            &bin("div", row.clone(), f32t(&[], &[0.0])),
            DType::F32,
            &[3],
            &[INF, NAN, -INF],
        );
        // Scalar with scalar, and empty with scalar.
        assert_f(
            &bin("add", f32t(&[], &[1.5]), f32t(&[], &[2.0])),
            DType::F32,
            &[],
            &[3.5],
        );
        assert_f(
            &bin("mul", f32t(&[0, 3], &[]), f32t(&[], &[2.0])),
            DType::F32,
            &[0, 3],
            &[],
        );
        // f16: 0.1 + 0.2 rounds once to f16.
        let s = bin(
            "add",
            tf(DType::F16, &[1], &[0.1]),
            tf(DType::F16, &[1], &[0.2]),
        );
        let expected = half::f16::from_f64(
            half::f16::from_f32(0.1).to_f64() + half::f16::from_f32(0.2).to_f64(),
        );
        assert_f(&s, DType::F16, &[1], &[expected.to_f64()]);
        // Overflow of a 16-bit result gives Inf.
        let s = bin(
            "mul",
            tf(DType::F16, &[1], &[300.0]),
            tf(DType::F16, &[1], &[300.0]),
        );
        assert_f(&s, DType::F16, &[1], &[INF]);

        let e = fails("add", &[a.clone(), f32t(&[2], &[0.0; 2])], &[]);
        assert!(e.message().contains("cannot broadcast"), "{e}");
        let e = fails("add", &[a, tf(DType::F16, &[3], &[0.0; 3])], &[]);
        assert!(
            e.message()
                .contains("b has dtype f16 but a has f32: inputs must share one dtype"),
            "{e}"
        );
        let e = fails(
            "add",
            &[ti(DType::U8, &[1], &[1]), ti(DType::U8, &[1], &[1])],
            &[],
        );
        assert!(
            e.message().contains("a has dtype u8, expected one of"),
            "{e}"
        );
    }

    #[test]
    fn maximum_minimum_propagate_nan() {
        let a = f32t(&[4], &[1.0, NAN, 3.0, -0.0]);
        let b = f32t(&[4], &[2.0, 0.0, NAN, 0.0]);
        assert_f(
            &bin("maximum", a.clone(), b.clone()),
            DType::F32,
            &[4],
            &[2.0, NAN, NAN, 0.0],
        );
        assert_f(
            &bin("minimum", a, b),
            DType::F32,
            &[4],
            &[1.0, NAN, NAN, 0.0],
        );
        let a = ti(DType::I64, &[2], &[-5, 7]);
        let b = ti(DType::I64, &[], &[0]);
        assert_i(
            &bin("maximum", a.clone(), b.clone()),
            DType::I64,
            &[2],
            &[0, 7],
        );
        assert_i(&bin("minimum", a, b), DType::I64, &[2], &[-5, 0]);
    }

    #[test]
    fn integer_arithmetic_wraps_and_divides_toward_zero() {
        let min = i32::MIN as i64;
        let max = i32::MAX as i64;
        let a = ti(DType::I32, &[5], &[7, -7, 7, min, max]);
        let b = ti(DType::I32, &[5], &[2, 2, 0, -1, 1]);
        assert_i(
            &bin("div", a.clone(), b.clone()),
            DType::I32,
            &[5],
            &[3, -3, 0, min, max],
        );
        assert_i(
            &bin("add", a.clone(), b.clone()),
            DType::I32,
            &[5],
            &[9, -5, 7, max, min],
        );
        assert_i(
            &bin("mul", a.clone(), ti(DType::I32, &[], &[2])),
            DType::I32,
            &[5],
            &[14, -14, 14, 0, -2],
        );
        assert_i(
            &bin(
                "sub",
                ti(DType::I32, &[1], &[min]),
                ti(DType::I32, &[1], &[1]),
            ),
            DType::I32,
            &[1],
            &[max],
        );
        let a = ti(DType::I64, &[2], &[i64::MIN, i64::MAX]);
        let b = ti(DType::I64, &[2], &[-1, 1]);
        assert_i(
            &bin("div", a.clone(), b.clone()),
            DType::I64,
            &[2],
            &[i64::MIN, i64::MAX],
        );
        assert_i(&bin("add", a, b), DType::I64, &[2], &[i64::MAX, i64::MIN]);
    }

    #[test]
    fn pow_follows_c() {
        let a = f32t(&[7], &[2.0, -8.0, 0.0, -0.0, NAN, 1.0, -0.0]);
        let b = f32t(&[7], &[10.0, 1.0 / 3.0, -1.0, -1.0, 0.0, NAN, -2.0]);
        assert_f(
            &bin("pow", a, b),
            DType::F32,
            &[7],
            &[1024.0, NAN, INF, -INF, 1.0, 1.0, INF],
        );
        let e = fails(
            "pow",
            &[ti(DType::I32, &[1], &[2]), ti(DType::I32, &[1], &[2])],
            &[],
        );
        assert!(
            e.message()
                .contains("a has dtype i32, expected one of f32, f16, bf16"),
            "{e}"
        );
    }

    #[test]
    fn comparisons_give_bool() {
        let a = f32t(&[4], &[1.0, NAN, 2.0, -0.0]);
        let b = f32t(&[4], &[1.0, NAN, 3.0, 0.0]);
        let cases: [(&str, [i64; 4]); 6] = [
            ("eq", [1, 0, 0, 1]),
            ("ne", [0, 1, 1, 0]),
            ("lt", [0, 0, 1, 0]),
            ("le", [1, 0, 1, 1]),
            ("gt", [0, 0, 0, 0]),
            ("ge", [1, 0, 0, 1]),
        ];
        for (op, expected) in cases {
            assert_i(&bin(op, a.clone(), b.clone()), DType::Bool, &[4], &expected);
        }
        let x = ti(DType::Bool, &[2], &[0, 1]);
        let y = ti(DType::Bool, &[2, 1], &[1, 0]);
        assert_i(&bin("lt", x, y), DType::Bool, &[2, 2], &[1, 0, 0, 0]);
        let x = ti(DType::I64, &[3], &[i64::MIN, 0, i64::MAX]);
        assert_i(
            &bin("ge", x, ti(DType::I64, &[], &[0])),
            DType::Bool,
            &[3],
            &[0, 1, 1],
        );
        let e = fails(
            "eq",
            &[ti(DType::U8, &[1], &[1]), ti(DType::U8, &[1], &[1])],
            &[],
        );
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn where_broadcasts_all_three() {
        let cond = ti(DType::Bool, &[2, 1], &[1, 0]);
        let a = f32t(&[3], &[1.0, 2.0, 3.0]);
        let b = f32t(&[], &[NAN]);
        let t = run1("where", &[cond.clone(), a, b], &[]);
        assert_f(&t, DType::F32, &[2, 3], &[1.0, 2.0, 3.0, NAN, NAN, NAN]);
        let t = run1(
            "where",
            &[
                cond.clone(),
                ti(DType::U8, &[], &[7]),
                ti(DType::U8, &[2], &[1, 2]),
            ],
            &[],
        );
        assert_i(&t, DType::U8, &[2, 2], &[7, 7, 1, 2]);
        let e = fails(
            "where",
            &[
                ti(DType::I32, &[1], &[1]),
                f32t(&[1], &[1.0]),
                f32t(&[1], &[1.0]),
            ],
            &[],
        );
        assert!(
            e.message()
                .contains("cond has dtype i32, expected one of bool"),
            "{e}"
        );
        let e = fails(
            "where",
            &[cond, f32t(&[3], &[0.0; 3]), f32t(&[2], &[0.0; 2])],
            &[],
        );
        assert!(e.message().contains("cannot broadcast"), "{e}");
    }

    fn un(op: &str, v: &[f64]) -> RefTensor {
        run1(op, &[f32t(&[v.len()], v)], &[])
    }

    fn f32s(v: &[f64]) -> Vec<f64> {
        v.iter().map(|&x| x as f32 as f64).collect()
    }

    #[test]
    fn unary_float_functions() {
        let n = |v: &[f64]| [v.len()];
        let x = [0.0, 1.0, -2.0, NAN];
        assert_f(&un("neg", &x), DType::F32, &n(&x), &[-0.0, -1.0, 2.0, NAN]);
        assert!(un("neg", &[0.0]).f64_data().unwrap()[0].is_sign_negative());
        assert_f(
            &un("abs", &[-0.0, -3.0, -INF]),
            DType::F32,
            &[3],
            &[0.0, 3.0, INF],
        );
        assert!(un("abs", &[-0.0]).f64_data().unwrap()[0].is_sign_positive());
        assert_f(
            &un("relu", &[-1.0, 2.0, NAN, -INF]),
            DType::F32,
            &[4],
            &[0.0, 2.0, NAN, 0.0],
        );
        assert_f(
            &un("exp", &[0.0, 1.0, -INF, 1000.0]),
            DType::F32,
            &[4],
            &f32s(&[1.0, std::f64::consts::E, 0.0, INF]),
        );
        assert_f(
            &un("log", &[1.0, 0.0, -1.0, INF]),
            DType::F32,
            &[4],
            &[0.0, -INF, NAN, INF],
        );
        assert_f(
            &un("sqrt", &[4.0, -1.0, -0.0, INF]),
            DType::F32,
            &[4],
            &[2.0, NAN, -0.0, INF],
        );
        assert_f(
            &un("rsqrt", &[4.0, 0.0, -0.0, -4.0, INF]),
            DType::F32,
            &[5],
            &[0.5, INF, -INF, NAN, 0.0],
        );
        assert_f(&un("sin", &[0.0, PI / 2.0]), DType::F32, &[2], &[0.0, 1.0]);
        assert_f(&un("cos", &[0.0, INF]), DType::F32, &[2], &[1.0, NAN]);
        assert_f(
            &un("tanh", &[0.0, INF, -INF, 0.5]),
            DType::F32,
            &[4],
            &f32s(&[0.0, 1.0, -1.0, 0.46211715726000974]),
        );
        assert_f(
            &un("sigmoid", &[0.0, INF, -INF, 1.0]),
            DType::F32,
            &[4],
            &f32s(&[0.5, 1.0, 0.0, 0.7310585786300049]),
        );
        // silu(-inf) = -inf * 0 = NaN, as the formula gives.
        assert_f(
            &un("silu", &[0.0, 1.0, INF, -INF]),
            DType::F32,
            &[4],
            &f32s(&[0.0, 0.7310585786300049, INF, NAN]),
        );
        // Empty and scalar.
        assert_f(&run1("exp", &[f32t(&[0], &[])], &[]), DType::F32, &[0], &[]);
        assert_f(
            &run1("exp", &[tf(DType::BF16, &[], &[0.0])], &[]),
            DType::BF16,
            &[],
            &[1.0],
        );
        let e = fails("exp", &[ti(DType::I32, &[1], &[1])], &[]);
        assert!(e.message().contains("x has dtype i32"), "{e}");
    }

    #[test]
    fn unary_integer_functions_wrap() {
        let min = i32::MIN as i64;
        let x = ti(DType::I32, &[4], &[min, -3, 0, 5]);
        assert_i(
            &run1("neg", std::slice::from_ref(&x), &[]),
            DType::I32,
            &[4],
            &[min, 3, 0, -5],
        );
        assert_i(
            &run1("abs", std::slice::from_ref(&x), &[]),
            DType::I32,
            &[4],
            &[min, 3, 0, 5],
        );
        assert_i(&run1("relu", &[x], &[]), DType::I32, &[4], &[0, 0, 0, 5]);
        let x = ti(DType::I64, &[1], &[i64::MIN]);
        assert_i(&run1("abs", &[x], &[]), DType::I64, &[1], &[i64::MIN]);
    }

    #[test]
    fn gelu_both_forms() {
        let x = [0.0, 1.0, -1.0, INF];
        // 0.5 * (1 + erf(1/sqrt 2)) = 0.8413447460685429.
        let t = run1("gelu", &[f32t(&[4], &x)], &[]);
        assert_f(
            &t,
            DType::F32,
            &[4],
            &f32s(&[0.0, 0.8413447460685429, -0.15865525393145707, INF]),
        );
        let t = run1("gelu", &[f32t(&[4], &x)], &[string("approximate", "none")]);
        assert_eq!(
            t.f64_data().unwrap()[1],
            0.8413447460685429f64 as f32 as f64
        );
        // tanh form: 0.5 * (1 + tanh(sqrt(2/pi) * 1.044715)) = 0.8411919906082768.
        let t = run1("gelu", &[f32t(&[4], &x)], &[string("approximate", "tanh")]);
        assert_f(
            &t,
            DType::F32,
            &[4],
            &f32s(&[0.0, 0.8411919906082768, -0.15880800939172324, INF]),
        );
        let t = run1("gelu", &[f32t(&[1], &[-INF])], &[]);
        assert_f(&t, DType::F32, &[1], &[NAN]);
        let e = fails(
            "gelu",
            &[f32t(&[1], &[1.0])],
            &[string("approximate", "erf")],
        );
        assert!(
            e.message().contains("`erf`, expected `none` or `tanh`"),
            "{e}"
        );
    }

    #[test]
    fn clamp_floats_and_integers() {
        let clamp = |x: Option<RefTensor>, lo: f64, hi: f64| {
            run1("clamp", &[x], &[float("min", lo), float("max", hi)])
        };
        let x = f32t(&[5], &[-2.0, 0.5, 3.0, NAN, -INF]);
        assert_f(
            &clamp(x.clone(), 0.0, 1.0),
            DType::F32,
            &[5],
            &[0.0, 0.5, 1.0, NAN, 0.0],
        );
        // min > max gives max everywhere (but NaN stays NaN).
        assert_f(
            &clamp(x.clone(), 2.0, 1.0),
            DType::F32,
            &[5],
            &[1.0, 1.0, 1.0, NAN, 1.0],
        );
        // Infinite bounds are bounds; a NaN bound is an error.
        assert_f(
            &clamp(x.clone(), -INF, 0.0),
            DType::F32,
            &[5],
            &[-2.0, 0.0, 0.0, NAN, -INF],
        );
        let e = fails("clamp", &[x], &[float("min", NAN), float("max", 1.0)]);
        assert!(
            e.message().contains("expected bounds that are not NaN"),
            "{e}"
        );
        let x = ti(DType::I32, &[4], &[-5, 0, 5, 100]);
        assert_i(
            &clamp(x.clone(), -1.0, 10.0),
            DType::I32,
            &[4],
            &[-1, 0, 5, 10],
        );
        assert_i(&clamp(x.clone(), 3.0, 2.0), DType::I32, &[4], &[2, 2, 2, 2]);
        assert_i(
            &clamp(x.clone(), -2147483648.0, 2147483647.0),
            DType::I32,
            &[4],
            &[-5, 0, 5, 100],
        );
        let e = fails(
            "clamp",
            std::slice::from_ref(&x),
            &[float("min", 0.5), float("max", 1.0)],
        );
        assert!(
            e.message()
                .contains("`min` is 0.5, expected an integral value within the range of i32"),
            "{e}"
        );
        let e = fails(
            "clamp",
            std::slice::from_ref(&x),
            &[float("min", 0.0), float("max", 2147483648.0)],
        );
        assert!(e.message().contains("`max` is 2147483648"), "{e}");
        let e = fails(
            "clamp",
            std::slice::from_ref(&x),
            &[float("min", 0.0), float("max", INF)],
        );
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        let e = fails("clamp", &[x], &[float("min", 0.0)]);
        assert!(e.message().contains("attribute `max` is missing"), "{e}");
    }
}
