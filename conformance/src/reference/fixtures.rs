//! Shorthands for the tests of every op.

use super::*;

pub(crate) fn tf(dtype: DType, shape: &[usize], v: &[f64]) -> Option<RefTensor> {
    Some(RefTensor::from_f64(dtype, shape, v.to_vec()).unwrap())
}

pub(crate) fn ti(dtype: DType, shape: &[usize], v: &[i64]) -> Option<RefTensor> {
    Some(RefTensor::from_i64(dtype, shape, v.to_vec()).unwrap())
}

pub(crate) fn f32t(shape: &[usize], v: &[f64]) -> Option<RefTensor> {
    tf(DType::F32, shape, v)
}

pub(crate) fn int(name: &str, v: i64) -> (String, AttrValue) {
    (name.to_string(), AttrValue::Int(v))
}

pub(crate) fn float(name: &str, v: f64) -> (String, AttrValue) {
    (name.to_string(), AttrValue::Float(v))
}

pub(crate) fn ints(name: &str, v: &[i64]) -> (String, AttrValue) {
    (name.to_string(), AttrValue::Ints(v.to_vec()))
}

pub(crate) fn string(name: &str, v: &str) -> (String, AttrValue) {
    (name.to_string(), AttrValue::Str(v.to_string()))
}

/// Runs an op with one output.
pub(crate) fn run1(
    op: &str,
    inputs: &[Option<RefTensor>],
    attrs: &[(String, AttrValue)],
) -> RefTensor {
    let mut out = run(op, inputs, attrs).unwrap_or_else(|e| panic!("{op}: {e}"));
    assert_eq!(out.len(), 1, "{op}: one output expected");
    out.remove(0)
}

/// The error of a call that must fail.
pub(crate) fn fails(
    op: &str,
    inputs: &[Option<RefTensor>],
    attrs: &[(String, AttrValue)],
) -> Error {
    match run(op, inputs, attrs) {
        Ok(out) => panic!("{op}: expected an error, got {out:?}"),
        Err(e) => e,
    }
}

/// Asserts dtype, shape and float values exactly (NaN meets NaN, the sign of zero ignored).
#[track_caller]
pub(crate) fn assert_f(t: &RefTensor, dtype: DType, shape: &[usize], expected: &[f64]) {
    assert_close(t, dtype, shape, expected, 0.0);
}

/// Asserts dtype, shape and float values to within `tol` relative (and absolute near 0).
#[track_caller]
pub(crate) fn assert_close(
    t: &RefTensor,
    dtype: DType,
    shape: &[usize],
    expected: &[f64],
    tol: f64,
) {
    assert_eq!(t.dtype, dtype, "dtype of {t:?}");
    assert_eq!(t.shape, shape, "shape of {t:?}");
    let got = t
        .f64_data()
        .unwrap_or_else(|| panic!("float data expected: {t:?}"));
    assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let ok = if e.is_nan() {
            g.is_nan()
        } else if e.is_infinite() {
            g == e
        } else {
            (g - e).abs() <= tol * e.abs().max(1.0)
        };
        assert!(ok, "element {i}: got {g}, expected {e} (all: {got:?})");
    }
}

/// Asserts dtype, shape and integer (or bool) values exactly.
#[track_caller]
pub(crate) fn assert_i(t: &RefTensor, dtype: DType, shape: &[usize], expected: &[i64]) {
    assert_eq!(t.dtype, dtype, "dtype of {t:?}");
    assert_eq!(t.shape, shape, "shape of {t:?}");
    assert_eq!(t.i64_data(), Some(expected), "{t:?}");
}
