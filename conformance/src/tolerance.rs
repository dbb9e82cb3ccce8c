//! The tolerance table of DESIGN.md, in one place, and the pass rule.

use anyaccel_hal::DType;

/// Absolute and relative tolerance: an element passes when `|got - ref| <= atol + rtol * |ref|`,
/// and, for correctly rounded ops ([`CORRECTLY_ROUNDED`]), when it is also within one unit in
/// the last place of the output dtype (or the difference is below its smallest normal number, so
/// that devices that flush subnormals pass).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Absolute part.
    pub atol: f64,
    /// Relative part.
    pub rtol: f64,
    /// For correctly rounded ops: the output dtype whose ulp bounds the error.
    pub ulp_of: Option<DType>,
}

/// Ops whose float results IEEE 754 defines exactly (one rounding of the exact result) or that
/// only move values: every device computes them to the ulp, so the conformance suite checks
/// them to the ulp. The table's 1e-5 relative tolerance for f32 is about 84 ulp: without this,
/// an `add` that is 100 ulp off for values near 1 would pass.
pub const CORRECTLY_ROUNDED: &[&str] = &[
    "add",
    "sub",
    "mul",
    "maximum",
    "minimum",
    "neg",
    "abs",
    "relu",
    "clamp",
    "floor",
    "ceil",
    "round",
    "trunc",
    "sign",
    "fmod",
    "remainder",
    "where",
    "copy",
    "cast",
    "fill",
    "concat",
    "index_select",
    "embedding",
    "gather",
    "pad",
    "flip",
    "roll",
    "tril",
    "triu",
    "repeat_interleave",
    "one_hot",
    "scatter",
    "masked_fill",
];

/// Ops whose every bit the contract fixes, on every device: the random ops (docs/ops.md 8.10).
/// They are checked for exact equality.
pub const BIT_EXACT: &[&str] = &["uniform", "normal", "bernoulli", "dropout"];

/// The tolerance for an output of `op`.
pub fn tolerance_for(op: &str, dtype: DType, accumulating: bool) -> Tolerance {
    if BIT_EXACT.contains(&op) {
        return Tolerance {
            atol: 0.0,
            rtol: 0.0,
            ulp_of: None,
        };
    }
    let mut t = tolerance(dtype, accumulating);
    if dtype.is_float() && CORRECTLY_ROUNDED.contains(&op) {
        t.ulp_of = Some(dtype);
    }
    t
}

/// The spacing of `dtype`'s values at `x`, and its smallest positive normal number.
pub fn ulp(x: f64, dtype: DType) -> (f64, f64) {
    let (mantissa_bits, min_exp) = match dtype {
        DType::F16 => (10, -14),
        DType::BF16 => (7, -126),
        DType::F32 => (23, -126),
        _ => (52, -1022),
    };
    let e = if x == 0.0 || !x.is_finite() {
        min_exp
    } else {
        (x.abs().log2().floor() as i32).max(min_exp)
    };
    (2f64.powi(e - mantissa_bits), 2f64.powi(min_exp))
}

/// The tolerance for an output of `dtype`; `accumulating` for matmul, reductions, softmax, norms
/// and attention. Integers and bools are exact.
pub fn tolerance(dtype: DType, accumulating: bool) -> Tolerance {
    let (atol, rtol) = match (dtype, accumulating) {
        (DType::F32, false) => (1e-5, 1e-5),
        (DType::F32, true) => (1e-4, 1e-4),
        (DType::F16, false) => (1e-3, 1e-3),
        (DType::F16, true) => (1e-2, 1e-2),
        (DType::BF16, false) => (1e-3, 1.6e-2),
        (DType::BF16, true) => (3e-2, 3e-2),
        (DType::F64, false) => (1e-12, 1e-12),
        (DType::F64, true) => (1e-10, 1e-10),
        _ => (0.0, 0.0),
    };
    Tolerance {
        atol,
        rtol,
        ulp_of: None,
    }
}

/// The outcome of comparing one output with its reference.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// Elements that fail the rule.
    pub bad: usize,
    /// Largest |got - ref| over finite pairs.
    pub max_abs_err: f64,
    /// Largest |got - ref| / |ref| over finite pairs with ref != 0.
    pub max_rel_err: f64,
    /// The smallest atol that, with the table's rtol, would pass every element (None if no
    /// atol would: a NaN or infinity mismatch).
    pub needed_atol: Option<f64>,
    /// The smallest rtol that, with the table's atol, would pass every element.
    pub needed_rtol: Option<f64>,
    /// First failing element: index, got, expected.
    pub first_bad: Option<(usize, f64, f64)>,
}

/// Compares `got` with `expected` element by element: NaN must meet NaN, an infinity the same
/// infinity, and every other pair `|got - ref| <= atol + rtol * |ref|`.
pub fn compare(got: &[f64], expected: &[f64], tol: Tolerance) -> Comparison {
    let mut c = Comparison::default();
    let mut need_atol = 0.0f64;
    let mut need_rtol = 0.0f64;
    let mut hopeless = false;
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let ok;
        if g.is_nan() || e.is_nan() {
            ok = g.is_nan() && e.is_nan();
            hopeless |= !ok;
        } else if g.is_infinite() || e.is_infinite() {
            ok = g == e;
            hopeless |= !ok;
        } else {
            let err = (g - e).abs();
            c.max_abs_err = c.max_abs_err.max(err);
            if e != 0.0 {
                c.max_rel_err = c.max_rel_err.max(err / e.abs());
            }
            ok = err <= tol.atol + tol.rtol * e.abs()
                && tol.ulp_of.is_none_or(|d| {
                    let (u, min_normal) = ulp(e, d);
                    err <= u || err < min_normal
                });
            need_atol = need_atol.max(err - tol.rtol * e.abs());
            if err > tol.atol {
                need_rtol = need_rtol.max(if e == 0.0 {
                    f64::INFINITY
                } else {
                    (err - tol.atol) / e.abs()
                });
            }
        }
        if !ok {
            c.bad += 1;
            c.first_bad.get_or_insert((i, g, e));
        }
    }
    if c.bad > 0 && !hopeless {
        c.needed_atol = Some(need_atol.max(0.0));
        c.needed_rtol = Some(need_rtol);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_values() {
        let t = |atol, rtol| Tolerance {
            atol,
            rtol,
            ulp_of: None,
        };
        assert_eq!(tolerance(DType::BF16, false), t(1e-3, 1.6e-2));
        assert_eq!(tolerance(DType::F16, true), t(1e-2, 1e-2));
        assert_eq!(tolerance(DType::I32, true), t(0.0, 0.0));
        assert_eq!(
            tolerance_for("add", DType::F16, false).ulp_of,
            Some(DType::F16)
        );
        assert_eq!(tolerance_for("exp", DType::F16, false).ulp_of, None);
    }

    #[test]
    fn correctly_rounded_ops_are_checked_to_the_ulp() {
        let t = tolerance_for("add", DType::F32, false);
        let one = 1.0f32;
        let off = |k: u32| f32::from_bits(one.to_bits() + k) as f64;
        assert_eq!(compare(&[off(1)], &[1.0], t).bad, 0);
        assert_eq!(compare(&[off(2)], &[1.0], t).bad, 1);
        // 100 ulp passes the table's rule alone, but not the ulp rule.
        assert_eq!(
            compare(&[off(100)], &[1.0], tolerance(DType::F32, false)).bad,
            0
        );
        assert_eq!(compare(&[off(100)], &[1.0], t).bad, 1);
        // A flushed subnormal passes.
        assert_eq!(compare(&[0.0], &[1e-40], t).bad, 0);
        assert_eq!(ulp(1.0, DType::F16).0, 2f64.powi(-10));
        assert_eq!(ulp(3.0, DType::BF16).0, 2f64.powi(-6));
    }

    #[test]
    fn rule_and_diagnosis() {
        let t = tolerance(DType::F32, false);
        let ok = compare(
            &[1.0, f64::NAN, f64::INFINITY, 0.0],
            &[1.000001, f64::NAN, f64::INFINITY, -0.0],
            t,
        );
        assert_eq!(ok.bad, 0);
        let bad = compare(&[1.0, 2.1, 3.0], &[1.0, 2.0, 3.0], t);
        assert_eq!(bad.bad, 1);
        assert_eq!(bad.first_bad, Some((1, 2.1, 2.0)));
        assert!((bad.max_abs_err - 0.1).abs() < 1e-12);
        assert!((bad.needed_atol.unwrap() - (0.1 - 2e-5)).abs() < 1e-9);
        assert!((bad.needed_rtol.unwrap() - (0.1 - 1e-5) / 2.0).abs() < 1e-9);
        let nan = compare(&[f64::NAN], &[1.0], t);
        assert_eq!((nan.bad, nan.needed_atol), (1, None));
        let inf = compare(&[f64::INFINITY], &[f64::NEG_INFINITY], t);
        assert_eq!(inf.bad, 1);
        let exact = compare(&[3.0], &[4.0], tolerance(DType::I64, false));
        assert_eq!(exact.bad, 1);
    }
}
