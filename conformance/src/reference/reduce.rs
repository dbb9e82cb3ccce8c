//! Reductions: `sum`, `mean`, `max`, `min`, `argmax`, `argmin` over any set of axes, `cumsum`
//! along one axis, and `topk`.

use std::cmp::{Ordering, Reverse};

use anyaccel_hal::{shape_str, DType, Result};

use super::elementwise::{maximum_f, minimum_f};
use super::{
    check_dtype, describe, internal, invalid, line_count, line_positions, normalize_axis, numel,
    ravel, unravel, Call, RefData, RefTensor, ALL_DTYPES, FLOAT_DTYPES, NUMERIC_DTYPES,
};

/// Which axes a reduction keeps and which it reduces, and the output shape.
struct Plan {
    /// Sizes of the kept axes, in order.
    kept_shape: Vec<usize>,
    /// The reduced axes, ascending.
    reduced: Vec<usize>,
    /// Sizes of the reduced axes.
    reduced_shape: Vec<usize>,
    /// The output shape: the kept axes, with size-1 axes in place of the reduced ones under
    /// keepdim.
    out_shape: Vec<usize>,
}

impl Plan {
    fn new(call: &Call, x: &RefTensor) -> Result<Plan> {
        let op = call.op;
        let rank = x.rank();
        let mut reduced = Vec::new();
        match call.ints_attr("axes")? {
            None | Some([]) => reduced.extend(0..rank),
            Some(axes) => {
                for &a in axes {
                    let axis = normalize_axis(op, "axis", a, rank)?;
                    if reduced.contains(&axis) {
                        return Err(invalid(
                            op,
                            format!(
                                "attribute `axes` {axes:?} names axis {axis} twice (for rank {rank}), \
                                 expected distinct axes"
                            ),
                        ));
                    }
                    reduced.push(axis);
                }
            }
        }
        reduced.sort_unstable();
        let keepdim = call.flag_attr("keepdim", false)?;
        let mut kept_shape = Vec::new();
        let mut reduced_shape = Vec::new();
        let mut out_shape = Vec::new();
        for (d, &size) in x.shape.iter().enumerate() {
            if reduced.contains(&d) {
                reduced_shape.push(size);
                if keepdim {
                    out_shape.push(1);
                }
            } else {
                kept_shape.push(size);
                out_shape.push(size);
            }
        }
        Ok(Plan {
            kept_shape,
            reduced,
            reduced_shape,
            out_shape,
        })
    }

    /// Number of elements each output reduces.
    fn extent(&self) -> usize {
        numel(&self.reduced_shape)
    }

    /// Number of outputs.
    fn outputs(&self) -> usize {
        numel(&self.kept_shape)
    }

    /// Positions in x of the elements that output `out` reduces, row-major over the reduced
    /// axes (so the k-th is the element with linear index k within the reduced axes).
    fn group(&self, x_shape: &[usize], out: usize) -> Vec<usize> {
        let kept_index = unravel(out, &self.kept_shape);
        (0..self.extent())
            .map(|r| {
                let reduced_index = unravel(r, &self.reduced_shape);
                let (mut k, mut q) = (kept_index.iter(), reduced_index.iter());
                let full: Vec<usize> = (0..x_shape.len())
                    .map(|d| {
                        let next = if self.reduced.contains(&d) {
                            q.next()
                        } else {
                            k.next()
                        };
                        next.copied().unwrap_or(0)
                    })
                    .collect();
                ravel(&full, x_shape)
            })
            .collect()
    }
}

/// The index of the first largest (`largest`) or smallest value; NaN beats every number, so
/// the first NaN wins. `values` is not empty.
fn arg_best_f(values: &[f64], largest: bool) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate().skip(1) {
        let b = values[best];
        if b.is_nan() {
            break;
        }
        if v.is_nan() || (largest && v > b) || (!largest && v < b) {
            best = i;
        }
    }
    best
}

/// The index of the first largest or smallest integer. `values` is not empty.
fn arg_best_i(values: &[i64], largest: bool) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate().skip(1) {
        if (largest && v > values[best]) || (!largest && v < values[best]) {
            best = i;
        }
    }
    best
}

/// `sum`, `mean`, `max`, `min`, `argmax`, `argmin`.
pub(crate) fn reduce(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    let allowed: &[DType] = match op {
        "mean" | "logsumexp" | "var" | "std" => &FLOAT_DTYPES,
        "any" | "all" => &ALL_DTYPES,
        _ => &NUMERIC_DTYPES,
    };
    check_dtype(op, "x", x.dtype, allowed)?;
    let plan = Plan::new(call, x)?;
    if matches!(op, "any" | "all") {
        let shape = &plan.out_shape;
        let results: Vec<bool> = (0..plan.outputs())
            .map(|o| {
                let g = plan.group(&x.shape, o);
                // Nonzero: NaN is, -0.0 is not.
                let nonzero = |p: &usize| match &x.data {
                    RefData::F(v) => v[*p] != 0.0,
                    RefData::I(v) => v[*p] != 0,
                };
                if op == "any" {
                    g.iter().any(nonzero)
                } else {
                    g.iter().all(nonzero)
                }
            })
            .collect();
        return RefTensor::from_bools(DType::Bool, shape, &results);
    }
    let correction = call.int_attr("correction")?.unwrap_or(1);
    if correction < 0 {
        return Err(invalid(
            op,
            format!("attribute `correction` is {correction}, expected correction >= 0"),
        ));
    }
    let selects = matches!(op, "max" | "min" | "argmax" | "argmin");
    if selects && plan.extent() == 0 && plan.outputs() > 0 {
        let axes = &plan.reduced;
        return Err(invalid(
            op,
            format!(
                "cannot reduce 0 elements ({}, axes {axes:?}), expected at least one element",
                describe("x", x)
            ),
        ));
    }
    let groups = (0..plan.outputs()).map(|o| plan.group(&x.shape, o));
    let shape = &plan.out_shape;
    match (&x.data, op) {
        (RefData::F(v), _) if op.starts_with("arg") => {
            let idx = groups
                .map(|g| {
                    let vals: Vec<f64> = g.iter().map(|&p| v[p]).collect();
                    arg_best_f(&vals, op == "argmax") as i64
                })
                .collect();
            RefTensor::from_i64(DType::I64, shape, idx)
        }
        (RefData::I(v), _) if op.starts_with("arg") => {
            let idx = groups
                .map(|g| {
                    let vals: Vec<i64> = g.iter().map(|&p| v[p]).collect();
                    arg_best_i(&vals, op == "argmax") as i64
                })
                .collect();
            RefTensor::from_i64(DType::I64, shape, idx)
        }
        (RefData::F(v), _) => {
            let n = plan.extent() as f64;
            let out = groups
                .map(|g| {
                    let mut vals = g.iter().map(|&p| v[p]);
                    match op {
                        "sum" => Ok(vals.sum::<f64>()),
                        // 0 / 0 is NaN for an empty reduction.
                        "mean" => Ok(vals.sum::<f64>() / n),
                        "max" => Ok(vals.next().map_or(f64::NAN, |f| vals.fold(f, maximum_f))),
                        "min" => Ok(vals.next().map_or(f64::NAN, |f| vals.fold(f, minimum_f))),
                        "prod" => Ok(product(vals)),
                        "logsumexp" => Ok(logsumexp(&vals.collect::<Vec<f64>>())),
                        "var" => Ok(variance(&vals.collect::<Vec<f64>>(), correction)),
                        "std" => Ok(variance(&vals.collect::<Vec<f64>>(), correction).sqrt()),
                        _ => Err(internal(op, "not a reduction")),
                    }
                })
                .collect::<Result<Vec<f64>>>()?;
            RefTensor::from_f64(x.dtype, shape, out)
        }
        (RefData::I(v), _) => {
            let out = groups
                .map(|g| {
                    let vals = g.iter().map(|&p| v[p]);
                    match op {
                        "sum" => Ok(vals.fold(0i64, i64::wrapping_add)),
                        "max" => Ok(vals.max().unwrap_or(0)),
                        "min" => Ok(vals.min().unwrap_or(0)),
                        "prod" => Ok(vals.fold(1i64, i64::wrapping_mul)),
                        _ => Err(internal(op, "not an integer reduction")),
                    }
                })
                .collect::<Result<Vec<i64>>>()?;
            RefTensor::from_i64(x.dtype, shape, out)
        }
    }
}

/// `log(sum(exp(v)))` as `m + log(sum(exp(v - m)))`, `m` the maximum (0 when infinite): NaN
/// gives NaN, a +Inf gives +Inf, all -Inf (or none) gives -Inf.
fn logsumexp(v: &[f64]) -> f64 {
    if v.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let shift = if m.is_infinite() { 0.0 } else { m };
    let s: f64 = v.iter().map(|&x| (x - shift).exp()).sum();
    s.ln() + shift
}

/// `sum((v - mean)^2) / (N - correction)`, two passes; NaN when N <= correction.
fn variance(v: &[f64], correction: i64) -> f64 {
    let n = v.len() as f64;
    if n <= correction as f64 {
        return f64::NAN;
    }
    let mean = v.iter().sum::<f64>() / n;
    let m2: f64 = v.iter().map(|&x| (x - mean) * (x - mean)).sum();
    m2 / (n - correction as f64)
}

/// The product of `vals`, as `m * 2^e` with `m` kept in [0.5, 1) so that no partial product
/// overflows or underflows, then rounded once.
fn product(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut m, mut e) = (1.0f64, 0i64);
    for v in vals {
        let (vm, vk) = libm::frexp(v);
        let (f, k) = libm::frexp(m * vm);
        m = f;
        e += (k + vk) as i64;
    }
    libm::ldexp(m, e.clamp(-3000, 3000) as i32)
}

/// A scan's input, checked, and its lines along `axis`: each line's positions in scan order
/// (from the end with `reverse`), made as they are walked.
fn scan_lines<'a>(
    call: &'a Call<'_>,
) -> Result<(&'a RefTensor, impl Iterator<Item = Vec<usize>> + 'a)> {
    let x = call.input(0)?;
    check_dtype(call.op, "x", x.dtype, &NUMERIC_DTYPES)?;
    let axis = call.axis_attr("axis", None, x.rank())?;
    let reverse = call.flag_attr("reverse", false)?;
    let lines = (0..line_count(&x.shape, axis)).map(move |line| {
        let mut p = line_positions(&x.shape, axis, line);
        if reverse {
            p.reverse();
        }
        p
    });
    Ok((x, lines))
}

/// `cumsum` and `cumprod` along `axis`: `out[..., i, ...]` is the sum (product) of
/// `x[..., j, ...]` over `j <= i` (`j < i` when exclusive; `j >= i`, `j > i` with reverse).
/// Float products run as `m * 2^e` so that no partial product overflows or underflows.
pub(crate) fn cumsum(call: &Call) -> Result<RefTensor> {
    let (x, lines) = scan_lines(call)?;
    let exclusive = call.flag_attr("exclusive", false)?;
    let prod = call.op == "cumprod";
    match &x.data {
        RefData::F(v) => {
            let mut out = vec![0.0; v.len()];
            for line in lines {
                let (mut m, mut e) = (if prod { 1.0 } else { 0.0 }, 0i64);
                let value = |m: f64, e: i64| libm::ldexp(m, e.clamp(-3000, 3000) as i32);
                for p in line {
                    if exclusive {
                        out[p] = value(m, e);
                    }
                    if prod {
                        let (vm, vk) = libm::frexp(v[p]);
                        let (f, k) = libm::frexp(m * vm);
                        (m, e) = (f, e + (k + vk) as i64);
                    } else {
                        m += v[p];
                    }
                    if !exclusive {
                        out[p] = value(m, e);
                    }
                }
            }
            RefTensor::from_f64(x.dtype, &x.shape, out)
        }
        RefData::I(v) => {
            let mut out = vec![0; v.len()];
            for line in lines {
                let mut running = prod as i64;
                for p in line {
                    if exclusive {
                        out[p] = running;
                    }
                    running = if prod {
                        running.wrapping_mul(v[p])
                    } else {
                        running.wrapping_add(v[p])
                    };
                    if !exclusive {
                        out[p] = running;
                    }
                }
            }
            RefTensor::from_i64(x.dtype, &x.shape, out)
        }
    }
}

/// `cummax` and `cummin` along `axis`: `out[..., i, ...]` is the largest (smallest) of
/// `x[..., j, ...]` over `j <= i` (`j >= i` with reverse); after a NaN every output is NaN.
pub(crate) fn cumextreme(call: &Call) -> Result<RefTensor> {
    let (x, lines) = scan_lines(call)?;
    let max = call.op == "cummax";
    match &x.data {
        RefData::F(v) => {
            let mut out = vec![0.0; v.len()];
            for line in lines {
                let mut best: Option<f64> = None;
                for p in line {
                    let e = v[p];
                    // A NaN stays; of equal values the later one wins.
                    let b = match best {
                        Some(b) if b.is_nan() => b,
                        Some(b) if !e.is_nan() && (if max { e < b } else { e > b }) => b,
                        _ => e,
                    };
                    best = Some(b);
                    out[p] = b;
                }
            }
            RefTensor::from_f64(x.dtype, &x.shape, out)
        }
        RefData::I(v) => {
            let mut out = vec![0; v.len()];
            for line in lines {
                let mut best: Option<i64> = None;
                for p in line {
                    let e = v[p];
                    let b = match best {
                        Some(b) if (max && e < b) || (!max && e > b) => b,
                        _ => e,
                    };
                    best = Some(b);
                    out[p] = b;
                }
            }
            RefTensor::from_i64(x.dtype, &x.shape, out)
        }
    }
}

/// Total order for topk: NaN above every number, NaNs equal to each other, -0 equal to +0.
fn cmp_nan_greatest(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// `topk`: the k largest (or smallest) values along `axis`, sorted, with their i64 positions.
pub(crate) fn topk(call: &Call) -> Result<Vec<RefTensor>> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &NUMERIC_DTYPES)?;
    let axis = call.axis_attr("axis", Some(-1), x.rank())?;
    let size = x.shape[axis];
    // sort and argsort: all of the axis, descending or not.
    let (k, largest) = if op == "topk" {
        (call.req_int("k")?, call.flag_attr("largest", true)?)
    } else {
        (size as i64, call.flag_attr("descending", false)?)
    };
    let k = match usize::try_from(k) {
        Ok(k) if k <= size => k,
        _ => {
            return Err(invalid(
                op,
                format!(
                    "attribute `k` is {k} but x ({}) has {size} elements along axis {axis}, \
                     expected 0 <= k <= {size}",
                    shape_str(&x.shape)
                ),
            ))
        }
    };
    let mut out_shape = x.shape.clone();
    out_shape[axis] = k;
    let mut sources = vec![0usize; numel(&out_shape)];
    let mut indices = vec![0i64; sources.len()];
    for line in 0..line_count(&x.shape, axis) {
        let positions = line_positions(&x.shape, axis, line);
        let mut order: Vec<usize> = (0..size).collect();
        // A stable sort keeps the lower index first among ties.
        match &x.data {
            RefData::F(v) => {
                let at = |i: usize| v[positions[i]];
                if largest {
                    order.sort_by(|&i, &j| cmp_nan_greatest(at(j), at(i)));
                } else {
                    order.sort_by(|&i, &j| cmp_nan_greatest(at(i), at(j)));
                }
            }
            RefData::I(v) => {
                let at = |i: usize| v[positions[i]];
                if largest {
                    order.sort_by_key(|&i| Reverse(at(i)));
                } else {
                    order.sort_by_key(|&i| at(i));
                }
            }
        }
        for (t, out) in line_positions(&out_shape, axis, line)
            .into_iter()
            .enumerate()
        {
            sources[out] = positions[order[t]];
            indices[out] = order[t] as i64;
        }
    }
    let indices = RefTensor::from_i64(DType::I64, &out_shape, indices)?;
    if op == "argsort" {
        return Ok(vec![indices]);
    }
    Ok(vec![
        RefTensor {
            dtype: x.dtype,
            shape: out_shape.clone(),
            data: x.data.select(&sources),
        },
        indices,
    ])
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::run;
    use super::*;
    use anyaccel_hal::ErrorCode;

    const NAN: f64 = f64::NAN;
    const INF: f64 = f64::INFINITY;

    fn x23() -> Option<RefTensor> {
        f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    }

    #[test]
    fn sum_over_axes_with_and_without_keepdim() {
        assert_f(&run1("sum", &[x23()], &[]), DType::F32, &[], &[21.0]);
        assert_f(
            &run1("sum", &[x23()], &[ints("axes", &[])]),
            DType::F32,
            &[],
            &[21.0],
        );
        assert_f(
            &run1("sum", &[x23()], &[ints("axes", &[0])]),
            DType::F32,
            &[3],
            &[5.0, 7.0, 9.0],
        );
        assert_f(
            &run1("sum", &[x23()], &[ints("axes", &[-1]), int("keepdim", 1)]),
            DType::F32,
            &[2, 1],
            &[6.0, 15.0],
        );
        assert_f(
            &run1("sum", &[x23()], &[ints("axes", &[1, 0]), int("keepdim", 1)]),
            DType::F32,
            &[1, 1],
            &[21.0],
        );
        // Middle axis of a rank-3 tensor.
        let x = f32t(&[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_f(
            &run1("sum", &[x], &[ints("axes", &[1])]),
            DType::F32,
            &[2, 2],
            &[4.0, 6.0, 12.0, 14.0],
        );
        // Scalar, empty, Inf and NaN.
        assert_f(
            &run1("sum", &[f32t(&[], &[2.5])], &[]),
            DType::F32,
            &[],
            &[2.5],
        );
        assert_f(
            &run1("sum", &[f32t(&[0, 3], &[])], &[]),
            DType::F32,
            &[],
            &[0.0],
        );
        assert_f(
            &run1("sum", &[f32t(&[0, 3], &[])], &[ints("axes", &[0])]),
            DType::F32,
            &[3],
            &[0.0; 3],
        );
        assert_f(
            &run1("sum", &[f32t(&[3], &[INF, -INF, 1.0])], &[]),
            DType::F32,
            &[],
            &[NAN],
        );
        // A 16-bit sum is accumulated wide and rounded once: 2048 + 1 + 1 = 2050 in f16.
        assert_f(
            &run1("sum", &[tf(DType::F16, &[3], &[2048.0, 1.0, 1.0])], &[]),
            DType::F16,
            &[],
            &[2050.0],
        );
        // Integers wrap.
        let x = ti(DType::I32, &[2], &[i32::MAX as i64, 1]);
        assert_i(&run1("sum", &[x], &[]), DType::I32, &[], &[i32::MIN as i64]);

        let e = fails("sum", &[x23()], &[ints("axes", &[1, -1])]);
        assert!(e.message().contains("names axis 1 twice"), "{e}");
        let e = fails("sum", &[x23()], &[ints("axes", &[2])]);
        assert!(
            e.message().contains("axis 2 is out of range for rank 2"),
            "{e}"
        );
        let e = fails("sum", &[ti(DType::U8, &[1], &[1])], &[]);
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn mean_max_min() {
        assert_f(
            &run1("mean", &[x23()], &[ints("axes", &[1])]),
            DType::F32,
            &[2],
            &[2.0, 5.0],
        );
        assert_f(
            &run1("mean", &[f32t(&[0], &[])], &[]),
            DType::F32,
            &[],
            &[NAN],
        );
        let e = fails("mean", &[ti(DType::I32, &[1], &[1])], &[]);
        assert!(e.message().contains("x has dtype i32"), "{e}");
        assert_f(
            &run1("max", &[x23()], &[ints("axes", &[0])]),
            DType::F32,
            &[3],
            &[4.0, 5.0, 6.0],
        );
        assert_f(
            &run1("min", &[x23()], &[ints("axes", &[1]), int("keepdim", 1)]),
            DType::F32,
            &[2, 1],
            &[1.0, 4.0],
        );
        let x = f32t(&[2, 2], &[1.0, NAN, -INF, 3.0]);
        assert_f(
            &run1("max", std::slice::from_ref(&x), &[ints("axes", &[1])]),
            DType::F32,
            &[2],
            &[NAN, 3.0],
        );
        assert_f(
            &run1("min", &[x], &[ints("axes", &[1])]),
            DType::F32,
            &[2],
            &[NAN, -INF],
        );
        let x = ti(DType::I64, &[3], &[-4, 9, 2]);
        assert_i(
            &run1("max", std::slice::from_ref(&x), &[]),
            DType::I64,
            &[],
            &[9],
        );
        assert_i(&run1("min", &[x], &[]), DType::I64, &[], &[-4]);
        // Zero reduced elements is an error, even when the output is empty too.
        let e = fails("max", &[f32t(&[2, 0], &[])], &[ints("axes", &[1])]);
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(
            e.message().starts_with("max: cannot reduce 0 elements"),
            "{e}"
        );
        let e = fails("min", &[f32t(&[0], &[])], &[]);
        assert!(e.message().contains("cannot reduce 0 elements"), "{e}");
        // No output reduces anything when the output is empty: not an error.
        assert_f(
            &run1("min", &[f32t(&[0, 0], &[])], &[ints("axes", &[1])]),
            DType::F32,
            &[0],
            &[],
        );
        assert_i(
            &run1("argmax", &[f32t(&[0, 0], &[])], &[ints("axes", &[0])]),
            DType::I64,
            &[0],
            &[],
        );
        // A non-empty axis of an empty tensor is fine.
        assert_f(
            &run1("max", &[f32t(&[0, 2], &[])], &[ints("axes", &[1])]),
            DType::F32,
            &[0],
            &[],
        );
    }

    #[test]
    fn argmax_argmin_ties_and_nan() {
        let x = f32t(&[2, 3], &[1.0, 3.0, 3.0, 2.0, 2.0, 1.0]);
        assert_i(
            &run1("argmax", std::slice::from_ref(&x), &[ints("axes", &[1])]),
            DType::I64,
            &[2],
            &[1, 0],
        );
        assert_i(
            &run1(
                "argmin",
                std::slice::from_ref(&x),
                &[ints("axes", &[-1]), int("keepdim", 1)],
            ),
            DType::I64,
            &[2, 1],
            &[0, 2],
        );
        assert_i(
            &run1("argmax", std::slice::from_ref(&x), &[ints("axes", &[0])]),
            DType::I64,
            &[3],
            &[1, 0, 0],
        );
        // Over all axes: the row-major linear index.
        assert_i(
            &run1("argmax", std::slice::from_ref(&x), &[]),
            DType::I64,
            &[],
            &[1],
        );
        assert_i(&run1("argmin", &[x], &[]), DType::I64, &[], &[0]);
        // The first NaN wins for both.
        let x = f32t(&[5], &[1.0, NAN, 5.0, NAN, -INF]);
        assert_i(
            &run1("argmax", std::slice::from_ref(&x), &[]),
            DType::I64,
            &[],
            &[1],
        );
        assert_i(&run1("argmin", &[x], &[]), DType::I64, &[], &[1]);
        // -0 and +0 tie: the first.
        let x = f32t(&[2], &[0.0, -0.0]);
        assert_i(&run1("argmin", &[x], &[]), DType::I64, &[], &[0]);
        let x = ti(DType::I32, &[4], &[5, 7, 7, -1]);
        assert_i(
            &run1("argmax", std::slice::from_ref(&x), &[]),
            DType::I64,
            &[],
            &[1],
        );
        assert_i(&run1("argmin", &[x], &[]), DType::I64, &[], &[3]);
        assert_i(
            &run1("argmax", &[f32t(&[], &[4.0])], &[]),
            DType::I64,
            &[],
            &[0],
        );
        let e = fails("argmax", &[f32t(&[0], &[])], &[]);
        assert!(e.message().contains("cannot reduce 0 elements"), "{e}");
    }

    #[test]
    fn cumsum_along_an_axis() {
        assert_f(
            &run1("cumsum", &[x23()], &[int("axis", 1)]),
            DType::F32,
            &[2, 3],
            &[1.0, 3.0, 6.0, 4.0, 9.0, 15.0],
        );
        assert_f(
            &run1("cumsum", &[x23()], &[int("axis", -2)]),
            DType::F32,
            &[2, 3],
            &[1.0, 2.0, 3.0, 5.0, 7.0, 9.0],
        );
        assert_f(
            &run1(
                "cumsum",
                &[f32t(&[4], &[1.0, NAN, 1.0, INF])],
                &[int("axis", 0)],
            ),
            DType::F32,
            &[4],
            &[1.0, NAN, NAN, NAN],
        );
        // f16: each output rounded from the wide running sum.
        assert_f(
            &run1(
                "cumsum",
                &[tf(DType::F16, &[3], &[2048.0, 1.0, 1.0])],
                &[int("axis", 0)],
            ),
            DType::F16,
            &[3],
            &[2048.0, 2048.0, 2050.0],
        );
        let x = ti(DType::I32, &[3], &[i32::MAX as i64, 1, 1]);
        assert_i(
            &run1("cumsum", &[x], &[int("axis", 0)]),
            DType::I32,
            &[3],
            &[i32::MAX as i64, i32::MIN as i64, i32::MIN as i64 + 1],
        );
        assert_f(
            &run1("cumsum", &[f32t(&[2, 0], &[])], &[int("axis", 1)]),
            DType::F32,
            &[2, 0],
            &[],
        );
        let e = fails("cumsum", &[f32t(&[], &[1.0])], &[int("axis", 0)]);
        assert!(e.message().contains("rank-0"), "{e}");
    }

    fn topk(x: Option<RefTensor>, attrs: &[(String, anyaccel_hal::AttrValue)]) -> Vec<RefTensor> {
        run("topk", &[x], attrs).unwrap()
    }

    #[test]
    fn topk_largest_and_smallest() {
        let x = f32t(&[2, 4], &[1.0, 4.0, 4.0, 2.0, NAN, 0.0, NAN, -1.0]);
        let out = topk(x.clone(), &[int("k", 2)]);
        assert_f(&out[0], DType::F32, &[2, 2], &[4.0, 4.0, NAN, NAN]);
        assert_i(&out[1], DType::I64, &[2, 2], &[1, 2, 0, 2]);
        // Smallest: ascending, NaN last, ties lower index first.
        let out = topk(x.clone(), &[int("k", 3), int("largest", 0)]);
        assert_f(
            &out[0],
            DType::F32,
            &[2, 3],
            &[1.0, 2.0, 4.0, -1.0, 0.0, NAN],
        );
        assert_i(&out[1], DType::I64, &[2, 3], &[0, 3, 1, 3, 1, 0]);
        // Along axis 0.
        let out = topk(x.clone(), &[int("k", 1), int("axis", 0)]);
        assert_f(&out[0], DType::F32, &[1, 4], &[NAN, 4.0, NAN, 2.0]);
        assert_i(&out[1], DType::I64, &[1, 4], &[1, 0, 1, 0]);
        // k = 0 and k = size.
        let out = topk(x.clone(), &[int("k", 0)]);
        assert_f(&out[0], DType::F32, &[2, 0], &[]);
        assert_i(&out[1], DType::I64, &[2, 0], &[]);
        let out = topk(
            ti(DType::I64, &[4], &[3, -1, 3, 7]),
            &[int("k", 4), int("largest", 0)],
        );
        assert_i(&out[0], DType::I64, &[4], &[-1, 3, 3, 7]);
        assert_i(&out[1], DType::I64, &[4], &[1, 0, 2, 3]);

        let e = fails("topk", std::slice::from_ref(&x), &[int("k", 5)]);
        assert!(
            e.message()
                .contains("`k` is 5 but x (2x4) has 4 elements along axis 1, expected 0 <= k <= 4"),
            "{e}"
        );
        let e = fails("topk", std::slice::from_ref(&x), &[int("k", -1)]);
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        let e = fails("topk", &[x], &[]);
        assert!(e.message().contains("attribute `k` is missing"), "{e}");
    }
}
