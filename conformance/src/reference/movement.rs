//! Creation and movement: `fill`, `arange`, `copy`, `cast`, `concat`, `index_select`,
//! `embedding`, `gather`.

use anyaccel_hal::{shape_str, DType, Error, Result};

use super::{
    check_dtype, check_same_dtype, describe, invalid, numel, ravel, unravel, Call, RefData,
    RefTensor, ALL_DTYPES, ALL_DTYPES_AND_F64, INT_DTYPES, NUMERIC_DTYPES,
};

/// `fill`: no inputs; `out[i] = cast(value)` of dtype `dtype` and shape `shape`.
pub(crate) fn fill(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let value = call.req_float("value")?;
    let dtype = call.dtype_attr("dtype")?;
    check_dtype(op, "attribute `dtype`", dtype, &ALL_DTYPES_AND_F64)?;
    let shape = shape_attr(call, "shape")?;
    let n = anyaccel_hal::checked_numel(op, &shape)?;
    RefTensor::from_f64(dtype, &shape, vec![value; n])
}

/// The `Ints` attribute `name` as a shape: required, every size >= 0.
pub(crate) fn shape_attr(call: &Call, name: &str) -> Result<Vec<usize>> {
    let dims = call.ints_attr(name)?.ok_or_else(|| {
        invalid(
            call.op,
            format!("attribute `{name}` is missing, expected Ints"),
        )
    })?;
    dims.iter()
        .enumerate()
        .map(|(i, &d)| {
            usize::try_from(d).map_err(|_| {
                invalid(
                    call.op,
                    format!("attribute `{name}` has {d} at position {i}, expected sizes >= 0"),
                )
            })
        })
        .collect()
}

/// `arange`: `out[i] = start + i * step`, `i` in `0..n`.
pub(crate) fn arange(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let start = call.req_float("start")?;
    let step = call.req_float("step")?;
    let n = call.req_int("n")?;
    let dtype = call.dtype_attr("dtype")?;
    check_dtype(op, "attribute `dtype`", dtype, &NUMERIC_DTYPES)?;
    let n = usize::try_from(n)
        .map_err(|_| invalid(op, format!("attribute `n` is {n}, expected n >= 0")))?;
    if dtype.is_float() {
        if !start.is_finite() || !step.is_finite() {
            return Err(invalid(
                op,
                format!("attributes `start` = {start} and `step` = {step}, expected finite values"),
            ));
        }
        // Computed in f64, as written, then rounded once.
        let values = (0..n).map(|i| start + i as f64 * step).collect();
        RefTensor::from_f64(dtype, &[n], values)
    } else {
        let start = integral(op, "start", start, dtype)?;
        let step = integral(op, "step", step, dtype)?;
        // Exact in i64 (wrapping), then wrapped to the dtype by from_i64.
        let values = (0..n)
            .map(|i| start.wrapping_add((i as i64).wrapping_mul(step)))
            .collect();
        RefTensor::from_i64(dtype, &[n], values)
    }
}

/// An attribute that must be an integral value representable in i64.
fn integral(op: &str, name: &str, x: f64, dtype: DType) -> Result<i64> {
    // -2^63 is an f64; 2^63 is the first f64 above i64::MAX.
    let limit = 9_223_372_036_854_775_808.0;
    if x.is_finite() && x.fract() == 0.0 && x >= -limit && x < limit {
        Ok(x as i64)
    } else {
        Err(invalid(
            op,
            format!(
                "attribute `{name}` is {x}, expected an integral value within i64 for dtype {dtype}"
            ),
        ))
    }
}

/// `copy`: the same values, dtype and shape.
pub(crate) fn copy(call: &Call) -> Result<RefTensor> {
    let x = call.input(0)?;
    check_dtype(call.op, "x", x.dtype, &ALL_DTYPES_AND_F64)?;
    Ok(x.clone())
}

/// `cast`: every value converted to `dtype` by the rules of `docs/ops.md`.
pub(crate) fn cast(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &ALL_DTYPES_AND_F64)?;
    let to = call.dtype_attr("dtype")?;
    check_dtype(op, "attribute `dtype`", to, &ALL_DTYPES_AND_F64)?;
    // from_f64 and from_i64 convert exactly as cast does: floats round to nearest even (from a
    // float or an integer), float to integer truncates and saturates with NaN to 0, integer to
    // integer wraps, anything to bool is `x != 0`; bool holds 0 and 1, so bool to anything is
    // 0 or 1.
    match &x.data {
        RefData::F(v) => RefTensor::from_f64(to, &x.shape, v.clone()),
        RefData::I(v) => RefTensor::from_i64(to, &x.shape, v.clone()),
    }
}

/// `concat`: the inputs joined along `axis`.
pub(crate) fn concat(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let inputs: Vec<&RefTensor> = call.inputs().iter().flatten().collect();
    let first = inputs
        .first()
        .ok_or_else(|| invalid(op, "found 0 inputs, expected at least 1"))?;
    check_dtype(op, "input 0", first.dtype, &ALL_DTYPES)?;
    let axis = call.axis_attr("axis", None, first.rank())?;
    let mut out_shape = first.shape.clone();
    out_shape[axis] = 0;
    for (i, t) in inputs.iter().enumerate() {
        check_same_dtype(op, &format!("input {i}"), t, "input 0", first)?;
        if t.rank() != first.rank() {
            return Err(invalid(
                op,
                format!(
                    "input {i} has rank {} but input 0 has rank {}, expected equal ranks",
                    t.rank(),
                    first.rank()
                ),
            ));
        }
        for d in 0..first.rank() {
            if d != axis && t.shape[d] != first.shape[d] {
                return Err(invalid(
                    op,
                    format!(
                        "input {i} is {} but input 0 is {}: sizes must be equal except along axis {axis}",
                        shape_str(&t.shape),
                        shape_str(&first.shape)
                    ),
                ));
            }
        }
        out_shape[axis] += t.shape[axis];
    }
    // Row-major: for each index over the axes before `axis`, each input contributes one
    // contiguous block of shape[axis] * inner values.
    let outer: usize = first.shape[..axis].iter().product();
    let inner: usize = first.shape[axis + 1..].iter().product();
    let mut data = first.data.empty_like();
    for o in 0..outer {
        for t in &inputs {
            let block = t.shape[axis] * inner;
            for p in o * block..(o + 1) * block {
                data.push_from(&t.data, p);
            }
        }
    }
    Ok(RefTensor {
        dtype: first.dtype,
        shape: out_shape,
        data,
    })
}

/// Checks that an indices tensor has an index dtype, and returns its values.
fn index_values(op: &str, indices: &RefTensor) -> Result<Vec<i64>> {
    check_dtype(op, "indices", indices.dtype, &INT_DTYPES)?;
    Ok(indices.to_i64_vec())
}

/// The OutOfBounds error of an index outside `0..size`.
pub(crate) fn out_of_range(op: &str, index: i64, size: usize, axis: usize) -> Error {
    Error::out_of_bounds(format!(
        "{op}: index {index} out of range 0..{size} along axis {axis}"
    ))
}

/// Checks every index against `0..size`; the first bad one (row-major) is the error.
pub(crate) fn check_indices(op: &str, values: &[i64], size: usize, axis: usize) -> Result<()> {
    match values.iter().find(|&&i| i < 0 || i as u64 >= size as u64) {
        Some(&bad) => Err(out_of_range(op, bad, size, axis)),
        None => Ok(()),
    }
}

/// `index_select`: `out[..., i, ...] = x[..., indices[i], ...]` along `axis`.
pub(crate) fn index_select(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    let indices = call.input(1)?;
    check_dtype(op, "x", x.dtype, &ALL_DTYPES)?;
    let idx = index_values(op, indices)?;
    if indices.rank() != 1 {
        return Err(invalid(
            op,
            format!("{}, expected a 1-D tensor", describe("indices", indices)),
        ));
    }
    let axis = call.axis_attr("axis", None, x.rank())?;
    check_indices(op, &idx, x.shape[axis], axis)?;
    let mut out_shape = x.shape.clone();
    out_shape[axis] = idx.len();
    let positions: Vec<usize> = (0..numel(&out_shape))
        .map(|o| {
            let mut at = unravel(o, &out_shape);
            at[axis] = idx[at[axis]] as usize;
            ravel(&at, &x.shape)
        })
        .collect();
    Ok(RefTensor {
        dtype: x.dtype,
        shape: out_shape,
        data: x.data.select(&positions),
    })
}

/// `embedding`: `out[idx..., :] = weight[indices[idx...], :]`.
pub(crate) fn embedding(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let weight = call.input(0)?;
    let indices = call.input(1)?;
    check_dtype(op, "weight", weight.dtype, &ALL_DTYPES)?;
    let idx = index_values(op, indices)?;
    if weight.rank() != 2 {
        return Err(invalid(
            op,
            format!(
                "{}, expected a 2-D tensor [V, D]",
                describe("weight", weight)
            ),
        ));
    }
    let (v, d) = (weight.shape[0], weight.shape[1]);
    check_indices(op, &idx, v, 0)?;
    let mut out_shape = indices.shape.clone();
    out_shape.push(d);
    let positions: Vec<usize> = idx
        .iter()
        .flat_map(|&row| (0..d).map(move |c| row as usize * d + c))
        .collect();
    Ok(RefTensor {
        dtype: weight.dtype,
        shape: out_shape,
        data: weight.data.select(&positions),
    })
}

/// `gather` (torch.gather): `out[i][j][k] = x[indices[i][j][k]][j][k]` for axis 0, and so on.
pub(crate) fn gather(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    let indices = call.input(1)?;
    check_dtype(op, "x", x.dtype, &ALL_DTYPES)?;
    let idx = index_values(op, indices)?;
    if indices.rank() != x.rank() {
        return Err(invalid(
            op,
            format!(
                "{} but {}, expected equal ranks",
                describe("indices", indices),
                describe("x", x)
            ),
        ));
    }
    let axis = call.axis_attr("axis", None, x.rank())?;
    for d in 0..x.rank() {
        if d != axis && indices.shape[d] > x.shape[d] {
            return Err(invalid(
                op,
                format!(
                    "indices is {} and x is {}: dimension {d} of indices ({}) must be <= that of x ({}) \
                     on every axis but axis {axis}",
                    shape_str(&indices.shape),
                    shape_str(&x.shape),
                    indices.shape[d],
                    x.shape[d]
                ),
            ));
        }
    }
    check_indices(op, &idx, x.shape[axis], axis)?;
    let positions: Vec<usize> = idx
        .iter()
        .enumerate()
        .map(|(o, &i)| {
            let mut at = unravel(o, &indices.shape);
            at[axis] = i as usize;
            ravel(&at, &x.shape)
        })
        .collect();
    Ok(RefTensor {
        dtype: x.dtype,
        shape: indices.shape.clone(),
        data: x.data.select(&positions),
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use anyaccel_hal::ErrorCode;

    #[test]
    fn fill_casts_the_value() {
        let t = run1(
            "fill",
            &[],
            &[
                float("value", 2.5),
                string("dtype", "f16"),
                ints("shape", &[2, 3]),
            ],
        );
        assert_f(&t, DType::F16, &[2, 3], &[2.5; 6]);
        let t = run1(
            "fill",
            &[],
            &[
                float("value", -3.7),
                string("dtype", "i32"),
                ints("shape", &[2]),
            ],
        );
        assert_i(&t, DType::I32, &[2], &[-3, -3]);
        let t = run1(
            "fill",
            &[],
            &[
                float("value", 300.7),
                string("dtype", "u8"),
                ints("shape", &[]),
            ],
        );
        assert_i(&t, DType::U8, &[], &[255]);
        let t = run1(
            "fill",
            &[],
            &[
                float("value", f64::NAN),
                string("dtype", "bool"),
                ints("shape", &[1]),
            ],
        );
        assert_i(&t, DType::Bool, &[1], &[1]);
        let t = run1(
            "fill",
            &[],
            &[
                float("value", 0.1),
                string("dtype", "f64"),
                ints("shape", &[0, 4]),
            ],
        );
        assert_f(&t, DType::F64, &[0, 4], &[]);
        let t = run1(
            "fill",
            &[],
            &[
                float("value", 1e6),
                string("dtype", "f16"),
                ints("shape", &[1]),
            ],
        );
        assert_f(&t, DType::F16, &[1], &[f64::INFINITY]);

        let e = fails(
            "fill",
            &[],
            &[
                float("value", 1.0),
                string("dtype", "f32"),
                ints("shape", &[2, -1]),
            ],
        );
        assert!(e.message().contains("has -1 at position 1"), "{e}");
        let e = fails(
            "fill",
            &[],
            &[
                float("value", 1.0),
                string("dtype", "f8"),
                ints("shape", &[2]),
            ],
        );
        assert!(e.message().contains("fill: attribute `dtype`"), "{e}");
        let e = fails(
            "fill",
            &[],
            &[
                string("value", "1"),
                string("dtype", "f32"),
                ints("shape", &[1]),
            ],
        );
        assert!(
            e.message()
                .contains("`value` is Str(\"1\"), expected Float"),
            "{e}"
        );
        let e = fails("fill", &[], &[float("value", 1.0), string("dtype", "f32")]);
        assert!(e.message().contains("attribute `shape` is missing"), "{e}");
        // An Int value is taken as a Float.
        let t = run1(
            "fill",
            &[],
            &[int("value", 7), string("dtype", "i64"), ints("shape", &[1])],
        );
        assert_i(&t, DType::I64, &[1], &[7]);
    }

    #[test]
    fn arange_floats_and_integers() {
        let t = run1(
            "arange",
            &[],
            &[
                float("start", 1.0),
                float("step", 0.5),
                int("n", 4),
                string("dtype", "f32"),
            ],
        );
        assert_f(&t, DType::F32, &[4], &[1.0, 1.5, 2.0, 2.5]);
        // Rounded once from f64: 0.1 * 3 in f64 then to bf16.
        let t = run1(
            "arange",
            &[],
            &[
                float("start", 0.0),
                float("step", 0.1),
                int("n", 4),
                string("dtype", "bf16"),
            ],
        );
        let expected: Vec<f64> = (0..4)
            .map(|i| half::bf16::from_f64(i as f64 * 0.1).to_f64())
            .collect();
        assert_f(&t, DType::BF16, &[4], &expected);
        let t = run1(
            "arange",
            &[],
            &[
                float("start", 2147483646.0),
                float("step", 1.0),
                int("n", 3),
                string("dtype", "i32"),
            ],
        );
        assert_i(&t, DType::I32, &[3], &[2147483646, 2147483647, -2147483648]);
        let t = run1(
            "arange",
            &[],
            &[
                float("start", 5.0),
                float("step", -2.0),
                int("n", 0),
                string("dtype", "i64"),
            ],
        );
        assert_i(&t, DType::I64, &[0], &[]);

        let e = fails(
            "arange",
            &[],
            &[
                float("start", 0.5),
                float("step", 1.0),
                int("n", 3),
                string("dtype", "i32"),
            ],
        );
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(
            e.message()
                .contains("`start` is 0.5, expected an integral value"),
            "{e}"
        );
        let e = fails(
            "arange",
            &[],
            &[
                float("start", 0.0),
                float("step", 1.0),
                int("n", -1),
                string("dtype", "f32"),
            ],
        );
        assert!(e.message().contains("`n` is -1, expected n >= 0"), "{e}");
        let e = fails(
            "arange",
            &[],
            &[
                float("start", 0.0),
                float("step", 1.0),
                int("n", 1),
                string("dtype", "u8"),
            ],
        );
        assert!(e.message().contains("has dtype u8, expected one of"), "{e}");
        let e = fails(
            "arange",
            &[],
            &[
                float("start", f64::NAN),
                float("step", 1.0),
                int("n", 1),
                string("dtype", "f32"),
            ],
        );
        assert!(e.message().contains("expected finite values"), "{e}");
    }

    #[test]
    fn copy_keeps_everything() {
        let x = tf(DType::F64, &[3], &[1.0, f64::NAN, -0.0]);
        let t = run1("copy", std::slice::from_ref(&x), &[]);
        assert_f(&t, DType::F64, &[3], &[1.0, f64::NAN, 0.0]);
        assert!(t.f64_data().unwrap()[2].is_sign_negative());
        let b = ti(DType::Bool, &[2], &[1, 0]);
        assert_i(&run1("copy", &[b], &[]), DType::Bool, &[2], &[1, 0]);
    }

    fn cast_to(x: Option<RefTensor>, to: &str) -> RefTensor {
        run1("cast", &[x], &[string("dtype", to)])
    }

    #[test]
    fn cast_float_to_int_truncates_and_saturates() {
        let x = tf(
            DType::F32,
            &[7],
            &[
                300.7,
                -1.5,
                2.9,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -0.0,
            ],
        );
        assert_i(
            &cast_to(x.clone(), "u8"),
            DType::U8,
            &[7],
            &[255, 0, 2, 0, 255, 0, 0],
        );
        assert_i(
            &cast_to(x.clone(), "i32"),
            DType::I32,
            &[7],
            &[300, -1, 2, 0, i32::MAX as i64, i32::MIN as i64, 0],
        );
        assert_i(
            &cast_to(x.clone(), "i64"),
            DType::I64,
            &[7],
            &[300, -1, 2, 0, i64::MAX, i64::MIN, 0],
        );
        assert_i(
            &cast_to(x, "bool"),
            DType::Bool,
            &[7],
            &[1, 1, 1, 1, 1, 1, 0],
        );
        let big = tf(DType::F32, &[2], &[3e9, -3e9]);
        assert_i(
            &cast_to(big, "i32"),
            DType::I32,
            &[2],
            &[i32::MAX as i64, i32::MIN as i64],
        );
    }

    #[test]
    fn cast_int_to_int_wraps() {
        let x = ti(DType::I32, &[4], &[-1, 256, 300, 255]);
        assert_i(&cast_to(x, "u8"), DType::U8, &[4], &[255, 0, 44, 255]);
        let x = ti(DType::I64, &[3], &[(1 << 32) + 7, -(1 << 31) - 1, -1]);
        assert_i(
            &cast_to(x, "i32"),
            DType::I32,
            &[3],
            &[7, i32::MAX as i64, -1],
        );
        let x = ti(DType::U8, &[2], &[255, 0]);
        assert_i(&cast_to(x.clone(), "i32"), DType::I32, &[2], &[255, 0]);
        assert_i(&cast_to(x, "bool"), DType::Bool, &[2], &[1, 0]);
        let b = ti(DType::Bool, &[2], &[1, 0]);
        assert_f(&cast_to(b.clone(), "bf16"), DType::BF16, &[2], &[1.0, 0.0]);
        assert_i(&cast_to(b, "i64"), DType::I64, &[2], &[1, 0]);
    }

    #[test]
    fn cast_between_floats_rounds_to_nearest_even() {
        let x = tf(
            DType::F32,
            &[5],
            &[
                1.0 + 2f64.powi(-11),
                70000.0,
                -70000.0,
                f64::NAN,
                1.0 + 3.0 * 2f64.powi(-11),
            ],
        );
        assert_f(
            &cast_to(x.clone(), "f16"),
            DType::F16,
            &[5],
            &[
                1.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
                1.0 + 2f64.powi(-9),
            ],
        );
        assert_f(
            &cast_to(x, "f64"),
            DType::F64,
            &[5],
            &[
                1.0 + 2f64.powi(-11),
                70000.0,
                -70000.0,
                f64::NAN,
                1.0 + 3.0 * 2f64.powi(-11),
            ],
        );
        let x = tf(DType::F64, &[2], &[1e40, 0.1]);
        assert_f(
            &cast_to(x, "f32"),
            DType::F32,
            &[2],
            &[f64::INFINITY, 0.1f32 as f64],
        );
        // 16777217 is not an f32: ties to even gives 16777216.
        let x = ti(DType::I32, &[2], &[16_777_217, 16_777_219]);
        assert_f(
            &cast_to(x, "f32"),
            DType::F32,
            &[2],
            &[16_777_216.0, 16_777_220.0],
        );
        let x = ti(DType::I32, &[1], &[100_000]);
        assert_f(&cast_to(x, "f16"), DType::F16, &[1], &[f64::INFINITY]);
        let e = fails("cast", &[f32t(&[1], &[1.0])], &[]);
        assert!(e.message().contains("attribute `dtype` is missing"), "{e}");
    }

    #[test]
    fn concat_along_axes() {
        let a = f32t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = f32t(&[2, 1], &[5.0, 6.0]);
        let t = run1("concat", &[a.clone(), b.clone()], &[int("axis", 1)]);
        assert_f(&t, DType::F32, &[2, 3], &[1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
        let t = run1("concat", &[a.clone(), b.clone()], &[int("axis", -1)]);
        assert_eq!(t.shape, vec![2, 3]);
        let c = f32t(&[1, 2], &[7.0, 8.0]);
        let empty = f32t(&[0, 2], &[]);
        let t = run1("concat", &[a.clone(), empty, c], &[int("axis", 0)]);
        assert_f(&t, DType::F32, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 7.0, 8.0]);
        let t = run1("concat", std::slice::from_ref(&a), &[int("axis", 0)]);
        assert_f(&t, DType::F32, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let i = ti(DType::U8, &[2], &[1, 2]);
        let j = ti(DType::U8, &[1], &[3]);
        assert_i(
            &run1("concat", &[i, j], &[int("axis", 0)]),
            DType::U8,
            &[3],
            &[1, 2, 3],
        );

        let e = fails("concat", &[a.clone(), b.clone()], &[int("axis", 0)]);
        assert!(
            e.message()
                .contains("sizes must be equal except along axis 0"),
            "{e}"
        );
        let e = fails(
            "concat",
            &[a.clone(), f32t(&[4], &[0.0; 4])],
            &[int("axis", 0)],
        );
        assert!(
            e.message()
                .contains("input 1 has rank 1 but input 0 has rank 2"),
            "{e}"
        );
        let e = fails(
            "concat",
            &[a.clone(), tf(DType::F16, &[2, 1], &[0.0; 2])],
            &[int("axis", 1)],
        );
        assert!(e.message().contains("no type promotion"), "{e}");
        let e = fails("concat", &[], &[int("axis", 0)]);
        assert!(e.message().contains("expected at least 1"), "{e}");
        let e = fails("concat", &[a.clone(), None], &[int("axis", 0)]);
        assert!(e.message().contains("input 1 is missing"), "{e}");
        let e = fails("concat", &[f32t(&[], &[1.0])], &[int("axis", 0)]);
        assert!(e.message().contains("rank-0"), "{e}");
        let e = fails("concat", &[a], &[int("axis", 2)]);
        assert!(
            e.message().contains("axis 2 is out of range for rank 2"),
            "{e}"
        );
    }

    #[test]
    fn index_select_along_each_axis() {
        let x = f32t(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let idx = ti(DType::I64, &[4], &[2, 0, 2, 1]);
        let t = run1("index_select", &[x.clone(), idx], &[int("axis", 0)]);
        assert_f(
            &t,
            DType::F32,
            &[4, 2],
            &[5.0, 6.0, 1.0, 2.0, 5.0, 6.0, 3.0, 4.0],
        );
        let idx = ti(DType::I32, &[1], &[1]);
        let t = run1("index_select", &[x.clone(), idx], &[int("axis", -1)]);
        assert_f(&t, DType::F32, &[3, 1], &[2.0, 4.0, 6.0]);
        let none = ti(DType::I32, &[0], &[]);
        let t = run1("index_select", &[x.clone(), none], &[int("axis", 0)]);
        assert_f(&t, DType::F32, &[0, 2], &[]);
        let b = ti(DType::Bool, &[3], &[1, 0, 1]);
        let t = run1(
            "index_select",
            &[b, ti(DType::I64, &[2], &[1, 1])],
            &[int("axis", 0)],
        );
        assert_i(&t, DType::Bool, &[2], &[0, 0]);

        let e = fails(
            "index_select",
            &[x.clone(), ti(DType::I64, &[2], &[0, 3])],
            &[int("axis", 0)],
        );
        assert_eq!(e.code(), ErrorCode::OutOfBounds);
        assert_eq!(
            e.message(),
            "index_select: index 3 out of range 0..3 along axis 0"
        );
        let e = fails(
            "index_select",
            &[x.clone(), ti(DType::I32, &[1], &[-1])],
            &[int("axis", 1)],
        );
        assert_eq!(e.code(), ErrorCode::OutOfBounds);
        let e = fails(
            "index_select",
            &[x.clone(), ti(DType::I32, &[1, 1], &[0])],
            &[int("axis", 1)],
        );
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.message().contains("expected a 1-D tensor"), "{e}");
        let e = fails("index_select", &[x, f32t(&[1], &[0.0])], &[int("axis", 1)]);
        assert!(e.message().contains("indices has dtype f32"), "{e}");
    }

    #[test]
    fn embedding_looks_up_rows() {
        let w = f32t(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let idx = ti(DType::I32, &[2, 2], &[2, 0, 1, 2]);
        let t = run1("embedding", &[w.clone(), idx], &[]);
        assert_f(
            &t,
            DType::F32,
            &[2, 2, 2],
            &[5.0, 6.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        );
        let t = run1("embedding", &[w.clone(), ti(DType::I64, &[], &[1])], &[]);
        assert_f(&t, DType::F32, &[2], &[3.0, 4.0]);
        let e = fails(
            "embedding",
            &[w.clone(), ti(DType::I64, &[2], &[0, 7])],
            &[],
        );
        assert_eq!(e.code(), ErrorCode::OutOfBounds);
        assert_eq!(
            e.message(),
            "embedding: index 7 out of range 0..3 along axis 0"
        );
        let e = fails(
            "embedding",
            &[f32t(&[3], &[0.0; 3]), ti(DType::I64, &[1], &[0])],
            &[],
        );
        assert!(e.message().contains("expected a 2-D tensor [V, D]"), "{e}");
    }

    #[test]
    fn gather_along_axis_0_and_1() {
        let x = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // Axis 1: out[i][j] = x[i][idx[i][j]].
        let idx = ti(DType::I64, &[2, 2], &[2, 0, 1, 1]);
        let t = run1("gather", &[x.clone(), idx], &[int("axis", 1)]);
        assert_f(&t, DType::F32, &[2, 2], &[3.0, 1.0, 5.0, 5.0]);
        // Axis 0 with a smaller index shape: out[i][j] = x[idx[i][j]][j].
        let idx = ti(DType::I32, &[1, 3], &[1, 0, 1]);
        let t = run1("gather", &[x.clone(), idx], &[int("axis", 0)]);
        assert_f(&t, DType::F32, &[1, 3], &[4.0, 2.0, 6.0]);
        // The gathered axis may be longer than x's.
        let idx = ti(DType::I64, &[1, 4], &[0, 0, 2, 1]);
        let t = run1("gather", &[x.clone(), idx], &[int("axis", -1)]);
        assert_f(&t, DType::F32, &[1, 4], &[1.0, 1.0, 3.0, 2.0]);

        let e = fails(
            "gather",
            &[x.clone(), ti(DType::I64, &[1, 1], &[3])],
            &[int("axis", 1)],
        );
        assert_eq!(e.code(), ErrorCode::OutOfBounds);
        assert_eq!(
            e.message(),
            "gather: index 3 out of range 0..3 along axis 1"
        );
        let e = fails(
            "gather",
            &[x.clone(), ti(DType::I64, &[3, 1], &[0, 0, 0])],
            &[int("axis", 1)],
        );
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(
            e.message()
                .contains("dimension 0 of indices (3) must be <="),
            "{e}"
        );
        let e = fails(
            "gather",
            &[x, ti(DType::I64, &[2], &[0, 0])],
            &[int("axis", 0)],
        );
        assert!(e.message().contains("expected equal ranks"), "{e}");
    }
}
