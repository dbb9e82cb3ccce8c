//! The tolerance table of DESIGN.md, in one place, and the pass rule.

use anyaccel_hal::DType;

/// Absolute and relative tolerance: an element passes when `|got - ref| <= atol + rtol * |ref|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Absolute part.
    pub atol: f64,
    /// Relative part.
    pub rtol: f64,
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
    Tolerance { atol, rtol }
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
            ok = err <= tol.atol + tol.rtol * e.abs();
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
        assert_eq!(
            tolerance(DType::BF16, false),
            Tolerance {
                atol: 1e-3,
                rtol: 1.6e-2
            }
        );
        assert_eq!(
            tolerance(DType::F16, true),
            Tolerance {
                atol: 1e-2,
                rtol: 1e-2
            }
        );
        assert_eq!(
            tolerance(DType::I32, true),
            Tolerance {
                atol: 0.0,
                rtol: 0.0
            }
        );
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
