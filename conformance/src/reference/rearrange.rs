//! Movement and indexing of op set v2: `pad`, `flip`, `roll`, `tril`, `triu`,
//! `repeat_interleave`, `one_hot`, `scatter`, `scatter_add`, `index_add`, `masked_fill`.
//!
//! Each output element is found from its multi-index with the definition of `docs/ops.md`
//! (padding reflects step by step, scatters run over the index in row-major order as a serial
//! loop would), so that nothing here shares a formula with the kernels.

use anyaccel_hal::{shape_str, DType, Result};

use super::movement::check_indices;
use super::{
    broadcast_shapes, check_dtype, check_same_dtype, describe, expand, invalid, normalize_axis,
    numel, ravel, unravel, Call, RefData, RefTensor, ALL_DTYPES, INT_DTYPES, NUMERIC_DTYPES,
};

/// The values of `x` at `positions`, `None` giving `fill` (converted to x's dtype).
fn pick(x: &RefTensor, shape: Vec<usize>, positions: &[Option<usize>], fill: f64) -> RefTensor {
    let f = RefTensor::scalar(x.dtype, fill).data;
    let data = match (&x.data, f) {
        (RefData::F(v), RefData::F(f)) => {
            RefData::F(positions.iter().map(|p| p.map_or(f[0], |p| v[p])).collect())
        }
        (RefData::I(v), RefData::I(f)) => {
            RefData::I(positions.iter().map(|p| p.map_or(f[0], |p| v[p])).collect())
        }
        (d, _) => d.select(&positions.iter().map(|p| p.unwrap_or(0)).collect::<Vec<_>>()),
    };
    RefTensor {
        dtype: x.dtype,
        shape,
        data,
    }
}

fn required_ints<'a>(call: &Call<'a>, name: &str) -> Result<&'a [i64]> {
    call.ints_attr(name)?.ok_or_else(|| {
        invalid(
            call.op,
            format!("attribute `{name}` is missing, expected Ints"),
        )
    })
}

/// `pad`: `pads` holds (before, after) pairs, the last axis first.
pub(crate) fn pad(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &ALL_DTYPES)?;
    let pads = required_ints(call, "pads")?;
    let mode = call.str_attr("mode")?.unwrap_or("constant");
    if !["constant", "reflect", "replicate", "circular"].contains(&mode) {
        return Err(invalid(
            op,
            format!("mode `{mode}`, expected constant, reflect, replicate or circular"),
        ));
    }
    let value = call.float_attr("value")?.unwrap_or(0.0);
    let rank = x.rank();
    if pads.len() % 2 != 0 || pads.len() > 2 * rank {
        return Err(invalid(
            op,
            format!(
                "pads has {} values, expected an even count up to {} for {}",
                pads.len(),
                2 * rank,
                describe("x", x)
            ),
        ));
    }
    let mut before = vec![0i64; rank];
    let mut out_shape = x.shape.clone();
    for (i, pair) in pads.chunks(2).enumerate() {
        let d = rank - 1 - i;
        let n = x.shape[d] as i64;
        let (b, a) = (pair[0], pair[1]);
        let limit = match mode {
            "reflect" => n - 1,
            "circular" => n,
            "replicate" => i64::MAX,
            _ => i64::MAX,
        };
        if mode != "constant" && (a != 0 || b != 0) {
            if n == 0 {
                return Err(invalid(op, format!("{mode} padding of empty axis {d}")));
            }
            if b < 0 || a < 0 || b > limit || a > limit {
                return Err(invalid(
                    op,
                    format!("pads ({b}, {a}) for axis {d} of size {n} in {mode} mode"),
                ));
            }
        }
        let size = n
            .checked_add(a)
            .and_then(|s| s.checked_add(b))
            .filter(|&s| s >= 0)
            .ok_or_else(|| invalid(op, format!("pads ({b}, {a}) leave axis {d} negative")))?;
        out_shape[d] = size as usize;
        before[d] = b;
    }
    let positions: Vec<Option<usize>> = (0..numel(&out_shape))
        .map(|o| {
            let at = unravel(o, &out_shape);
            let mut src = Vec::with_capacity(rank);
            for d in 0..rank {
                let n = x.shape[d] as i64;
                let mut i = at[d] as i64 - before[d];
                match mode {
                    "reflect" => {
                        while i < 0 || i >= n {
                            i = if i < 0 { -i } else { 2 * (n - 1) - i };
                        }
                    }
                    "replicate" => i = i.clamp(0, n - 1),
                    "circular" => i = i.rem_euclid(n),
                    _ => {
                        if i < 0 || i >= n {
                            return None;
                        }
                    }
                }
                src.push(i as usize);
            }
            Some(ravel(&src, &x.shape))
        })
        .collect();
    Ok(pick(x, out_shape, &positions, value))
}

/// Normalised axes from an `Ints` attribute, each at most once.
fn axes_list(call: &Call, name: &str, rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for &a in required_ints(call, name)? {
        let d = normalize_axis(call.op, "axis", a, rank)?;
        if out.contains(&d) {
            return Err(invalid(
                call.op,
                format!("axis {d} appears twice in {name}"),
            ));
        }
        out.push(d);
    }
    Ok(out)
}

/// `flip` and `roll`.
pub(crate) fn flip_roll(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &ALL_DTYPES)?;
    let rank = x.rank();
    // shift[d]: out[i] = x[i - shift] along d; flip marks reversed axes.
    let mut shift = vec![0i64; rank];
    let mut flip = vec![false; rank];
    if op == "flip" {
        for d in axes_list(call, "axes", rank)? {
            flip[d] = true;
        }
    } else {
        let shifts = required_ints(call, "shifts")?;
        let axes = required_ints(call, "axes")?;
        if shifts.len() != axes.len() {
            return Err(invalid(
                op,
                format!(
                    "{} shifts and {} axes, expected as many",
                    shifts.len(),
                    axes.len()
                ),
            ));
        }
        for (&s, &a) in shifts.iter().zip(axes) {
            let d = normalize_axis(op, "axis", a, rank)?;
            shift[d] = shift[d].wrapping_add(s % (x.shape[d].max(1) as i64));
        }
    }
    let positions: Vec<Option<usize>> = (0..x.numel())
        .map(|o| {
            let mut at = unravel(o, &x.shape);
            for d in 0..rank {
                let n = x.shape[d] as i64;
                let i = at[d] as i64;
                at[d] = if flip[d] {
                    (n - 1 - i) as usize
                } else {
                    (i - shift[d]).rem_euclid(n) as usize
                };
            }
            Some(ravel(&at, &x.shape))
        })
        .collect();
    Ok(pick(x, x.shape.clone(), &positions, 0.0))
}

/// `tril` and `triu`: zero above (below) diagonal `diagonal` of the last two axes.
pub(crate) fn tri(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &ALL_DTYPES)?;
    if x.rank() < 2 {
        return Err(invalid(
            op,
            format!("{}, expected rank 2 or more", describe("x", x)),
        ));
    }
    let k = call.int_attr("diagonal")?.unwrap_or(0);
    let r = x.rank();
    let positions: Vec<Option<usize>> = (0..x.numel())
        .map(|o| {
            let at = unravel(o, &x.shape);
            let d = at[r - 1] as i128 - at[r - 2] as i128;
            let keep = if op == "tril" {
                d <= k as i128
            } else {
                d >= k as i128
            };
            keep.then_some(o)
        })
        .collect();
    Ok(pick(x, x.shape.clone(), &positions, 0.0))
}

/// `repeat_interleave`: element `i` along `axis` repeated `repeats[i]` (or `repeats[0]`) times.
pub(crate) fn repeat_interleave(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &ALL_DTYPES)?;
    if x.rank() == 0 {
        return Err(invalid(op, "x is a scalar, expected rank 1 or more"));
    }
    let axis = call.axis_attr("axis", None, x.rank())?;
    let repeats = required_ints(call, "repeats")?;
    let n = x.shape[axis];
    if repeats.iter().any(|&r| r < 0) {
        return Err(invalid(
            op,
            format!("repeats {repeats:?}, expected counts >= 0"),
        ));
    }
    let counts: Vec<usize> = if repeats.len() == 1 {
        vec![repeats[0] as usize; n]
    } else if repeats.len() == n {
        repeats.iter().map(|&r| r as usize).collect()
    } else {
        return Err(invalid(
            op,
            format!(
                "{} repeats for an axis of size {n}, expected 1 or {n}",
                repeats.len()
            ),
        ));
    };
    let sources: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| std::iter::repeat_n(i, c))
        .collect();
    let mut out_shape = x.shape.clone();
    out_shape[axis] = sources.len();
    let positions: Vec<Option<usize>> = (0..numel(&out_shape))
        .map(|o| {
            let mut at = unravel(o, &out_shape);
            at[axis] = sources[at[axis]];
            Some(ravel(&at, &x.shape))
        })
        .collect();
    Ok(pick(x, out_shape, &positions, 0.0))
}

/// `one_hot`: `out[..., c] = (indices[...] == c)` in dtype `dtype` (default i64).
pub(crate) fn one_hot(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let idx = call.input(0)?;
    check_dtype(op, "indices", idx.dtype, &INT_DTYPES)?;
    let c = call.req_int("num_classes")?;
    if c < 0 {
        return Err(invalid(op, format!("num_classes is {c}, expected >= 0")));
    }
    let dtype = match call.str_attr("dtype")? {
        Some(_) => call.dtype_attr("dtype")?,
        None => DType::I64,
    };
    check_dtype(op, "attribute `dtype`", dtype, &ALL_DTYPES)?;
    let values = idx.to_i64_vec();
    if c == 0 && !values.is_empty() {
        return Err(invalid(op, "num_classes is 0 but there are indices"));
    }
    let axis = idx.rank();
    check_indices(op, &values, c as usize, axis)?;
    let mut shape = idx.shape.clone();
    shape.push(c as usize);
    let hot: Vec<i64> = values
        .iter()
        .flat_map(|&v| (0..c).map(move |k| (k == v) as i64))
        .collect();
    RefTensor::from_i64(dtype, &shape, hot)
}

/// `scatter`, `scatter_add` and `index_add`: a serial loop over the index in row-major order.
pub(crate) fn scatter(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    let index = call.input(1)?;
    let src = call.input(2)?;
    let dtypes: &[DType] = if op == "scatter" {
        &ALL_DTYPES
    } else {
        &NUMERIC_DTYPES
    };
    check_dtype(op, "x", x.dtype, dtypes)?;
    check_dtype(op, "index", index.dtype, &INT_DTYPES)?;
    let src_name = if op == "index_add" { "source" } else { "src" };
    check_same_dtype(op, src_name, src, "x", x)?;
    if x.rank() == 0 {
        return Err(invalid(op, "x is a scalar, expected rank 1 or more"));
    }
    let axis = call.axis_attr("axis", None, x.rank())?;
    if src.rank() != x.rank() {
        return Err(invalid(
            op,
            format!(
                "{} but {}: ranks must match",
                describe(src_name, src),
                describe("x", x)
            ),
        ));
    }
    let alpha = call.float_attr("alpha")?.unwrap_or(1.0);
    let idx = index.to_i64_vec();
    // (target position in x, source position) pairs, in the order a serial loop takes them.
    let mut moves: Vec<(usize, usize)> = Vec::new();
    let n = x.shape[axis];
    if op == "index_add" {
        if !alpha.is_finite() || (x.dtype.is_int() && alpha.fract() != 0.0) {
            return Err(invalid(
                op,
                format!("alpha {alpha} for {} tensors", x.dtype),
            ));
        }
        if index.rank() != 1 {
            return Err(invalid(
                op,
                format!("{}, expected 1-D", describe("index", index)),
            ));
        }
        let mut want = x.shape.clone();
        want[axis] = idx.len();
        if src.shape != want {
            return Err(invalid(
                op,
                format!("{}, expected {}", describe("source", src), shape_str(&want)),
            ));
        }
        if n == 0 && !idx.is_empty() && src.numel() > 0 {
            return Err(invalid(op, format!("axis {axis} of x is empty")));
        }
        // An empty x is an empty call: nothing runs, nothing is checked.
        if x.numel() > 0 {
            check_indices(op, &idx, n, axis)?;
        }
        for s in 0..src.numel() {
            let mut at = unravel(s, &src.shape);
            at[axis] = idx[at[axis]] as usize;
            moves.push((ravel(&at, &x.shape), s));
        }
    } else {
        if index.rank() != x.rank() {
            return Err(invalid(
                op,
                format!(
                    "{} but {}: ranks must match",
                    describe("index", index),
                    describe("x", x)
                ),
            ));
        }
        for d in 0..x.rank() {
            if index.shape[d] > src.shape[d] || (d != axis && index.shape[d] > x.shape[d]) {
                return Err(invalid(
                    op,
                    format!(
                        "index is {}, src {}, x {}: dimension {d} of index is too large",
                        shape_str(&index.shape),
                        shape_str(&src.shape),
                        shape_str(&x.shape)
                    ),
                ));
            }
        }
        if n == 0 && !idx.is_empty() {
            return Err(invalid(op, format!("axis {axis} of x is empty")));
        }
        if x.numel() > 0 {
            check_indices(op, &idx, n, axis)?;
        }
        for (p, &i) in idx.iter().enumerate() {
            let at = unravel(p, &index.shape);
            let s = ravel(&at, &src.shape);
            let mut t = at;
            t[axis] = i as usize;
            moves.push((ravel(&t, &x.shape), s));
        }
    }
    let add = op != "scatter";
    Ok(match (&x.data, &src.data) {
        (RefData::F(xv), RefData::F(sv)) => {
            let mut out = xv.clone();
            for (t, s) in moves {
                out[t] = if add { out[t] + alpha * sv[s] } else { sv[s] };
            }
            RefTensor::from_f64(x.dtype, &x.shape, out)?
        }
        (RefData::I(xv), RefData::I(sv)) => {
            let mut out = xv.clone();
            let a = alpha as i64;
            for (t, s) in moves {
                out[t] = if add {
                    out[t].wrapping_add(a.wrapping_mul(sv[s]))
                } else {
                    sv[s]
                };
            }
            RefTensor::from_i64(x.dtype, &x.shape, out)?
        }
        _ => return Err(invalid(op, "x and the source differ in kind")),
    })
}

/// `masked_fill`: `value` (converted to x's dtype) where the broadcast mask is true.
pub(crate) fn masked_fill(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    let mask = call.input(1)?;
    check_dtype(op, "x", x.dtype, &ALL_DTYPES)?;
    check_dtype(op, "mask", mask.dtype, &[DType::Bool])?;
    let value = call.req_float("value")?;
    let shape = broadcast_shapes(op, &[("mask", &mask.shape), ("x", &x.shape)])?;
    if shape != x.shape {
        return Err(invalid(
            op,
            format!(
                "{} does not broadcast to {}",
                describe("mask", mask),
                describe("x", x)
            ),
        ));
    }
    let m = match expand(mask, &shape) {
        RefData::I(v) => v,
        RefData::F(v) => v.iter().map(|&b| (b != 0.0) as i64).collect(),
    };
    let positions: Vec<Option<usize>> = (0..x.numel()).map(|o| (m[o] == 0).then_some(o)).collect();
    Ok(pick(x, x.shape.clone(), &positions, value))
}

/// `embedding_backward`: `dweight[indices[i], :] += grad[i, :]` into zeros of `[num_weights,
/// D]`, in index order; the row `padding_idx` (when given) stays 0.
pub(crate) fn embedding_backward(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let g = call.input(0)?;
    let idx = call.input(1)?;
    check_dtype(op, "grad", g.dtype, &super::FLOAT_DTYPES)?;
    check_dtype(op, "indices", idx.dtype, &INT_DTYPES)?;
    let v = call.req_int("num_weights")?;
    if v < 0 {
        return Err(invalid(op, format!("num_weights is {v}, expected >= 0")));
    }
    if g.rank() != idx.rank() + 1 || g.shape[..idx.rank()] != idx.shape[..] {
        return Err(invalid(
            op,
            format!(
                "{} for {}: expected [..., D]",
                describe("grad", g),
                describe("indices", idx)
            ),
        ));
    }
    let padding = call.int_attr("padding_idx")?;
    if let Some(p) = padding {
        if p < -v || p >= v {
            return Err(invalid(op, format!("padding_idx {p} outside -{v}..{v}")));
        }
    }
    let values = idx.to_i64_vec();
    if v == 0 && !values.is_empty() {
        return Err(invalid(op, "num_weights is 0 but there are indices"));
    }
    let d = g.shape[g.rank() - 1];
    let out_n = v as usize * d;
    if out_n > 0 {
        check_indices(op, &values, v as usize, 0)?;
    }
    let gv = g.to_f64_vec();
    let mut out = vec![0.0; out_n];
    for (k, &i) in values.iter().enumerate() {
        for c in 0..d {
            out[i as usize * d + c] += gv[k * d + c];
        }
    }
    if let Some(p) = padding {
        let row = p.rem_euclid(v.max(1)) as usize;
        for c in 0..d {
            out[row * d + c] = 0.0;
        }
    }
    RefTensor::from_f64(g.dtype, &[v as usize, d], out)
}
