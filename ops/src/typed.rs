//! Typed entry points: one function per op, and an `_into` form writing into given outputs.

use anyaccel_hal::{AttrValue, DType, Queue, Result, Tensor};

use crate::dispatch::{call, call_into};

fn one(mut v: Vec<Tensor>) -> Tensor {
    // `call` returns exactly as many outputs as the op has, and these ops have one.
    v.swap_remove(0)
}

/// The `(values, indices)` of an op with two outputs.
fn two(mut v: Vec<Tensor>, op: &str) -> Result<(Tensor, Tensor)> {
    match (v.pop(), v.pop()) {
        (Some(indices), Some(values)) => Ok((values, indices)),
        _ => Err(anyaccel_hal::Error::internal(format!(
            "{op}: expected two outputs"
        ))),
    }
}

fn attr(name: &str, v: AttrValue) -> (String, AttrValue) {
    (name.to_string(), v)
}

macro_rules! binary_ops {
    ($($name:ident, $into:ident, $doc:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), "(a, b)`: ", $doc, " NumPy broadcasting.")]
        pub fn $name(q: &dyn Queue, a: &Tensor, b: &Tensor) -> Result<Tensor> {
            call(q, stringify!($name), &[Some(a), Some(b)], &[]).map(one)
        }
        #[doc = concat!("[`", stringify!($name), "`] into `out`.")]
        pub fn $into(q: &dyn Queue, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
            call_into(q, stringify!($name), &[Some(a), Some(b)], &[out], &[])
        }
    )*};
}

binary_ops! {
    add, add_into, "a + b (integers wrap).";
    sub, sub_into, "a - b (integers wrap).";
    mul, mul_into, "a * b (integers wrap).";
    div, div_into, "a / b (integers truncate; x / 0 = 0).";
    maximum, maximum_into, "the larger of a and b; NaN propagates.";
    minimum, minimum_into, "the smaller of a and b; NaN propagates.";
    pow, pow_into, "a raised to b (floats).";
    eq, eq_into, "a == b, as bool.";
    ne, ne_into, "a != b, as bool.";
    lt, lt_into, "a < b, as bool.";
    le, le_into, "a <= b, as bool.";
    gt, gt_into, "a > b, as bool.";
    ge, ge_into, "a >= b, as bool.";
    atan2, atan2_into, "the angle of the point (b, a) (floats).";
    remainder, remainder_into, "a mod b with the sign of b (Python's %; integers: x mod 0 = 0).";
    fmod, fmod_into, "a mod b with the sign of a (C fmod; integers: x mod 0 = 0).";
    bitwise_and, bitwise_and_into, "a & b (integers and bools).";
    bitwise_or, bitwise_or_into, "a | b (integers and bools).";
    bitwise_xor, bitwise_xor_into, "a ^ b (integers and bools).";
    bitwise_left_shift, bitwise_left_shift_into, "a << b; amounts outside [0, width) give 0.";
    bitwise_right_shift, bitwise_right_shift_into, "a >> b (arithmetic); amounts outside [0, width) give the sign.";
    logical_and, logical_and_into, "a != 0 and b != 0, as bool.";
    logical_or, logical_or_into, "a != 0 or b != 0, as bool.";
    logical_xor, logical_xor_into, "(a != 0) != (b != 0), as bool.";
}

macro_rules! predicate_ops {
    ($($name:ident, $doc:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), "(x)`: ", $doc, " as bool, for any dtype.")]
        pub fn $name(q: &dyn Queue, x: &Tensor) -> Result<Tensor> {
            call(q, stringify!($name), &[Some(x)], &[]).map(one)
        }
    )*};
}

predicate_ops! {
    isnan, "x is NaN";
    isinf, "x is +Inf or -Inf";
    isfinite, "x is neither NaN nor infinite";
    logical_not, "x == 0";
}

/// `softplus(x) = log(1 + exp(beta x)) / beta`, and `x` where `beta x > threshold`.
pub fn softplus(q: &dyn Queue, x: &Tensor, beta: f64, threshold: f64) -> Result<Tensor> {
    let attrs = [
        attr("beta", AttrValue::Float(beta)),
        attr("threshold", AttrValue::Float(threshold)),
    ];
    call(q, "softplus", &[Some(x)], &attrs).map(one)
}

/// `leaky_relu(x) = x > 0 ? x : x * negative_slope`.
pub fn leaky_relu(q: &dyn Queue, x: &Tensor, negative_slope: f64) -> Result<Tensor> {
    let attrs = [attr("negative_slope", AttrValue::Float(negative_slope))];
    call(q, "leaky_relu", &[Some(x)], &attrs).map(one)
}

/// `elu(x) = x > 0 ? x : alpha * (exp(x) - 1)`.
pub fn elu(q: &dyn Queue, x: &Tensor, alpha: f64) -> Result<Tensor> {
    call(
        q,
        "elu",
        &[Some(x)],
        &[attr("alpha", AttrValue::Float(alpha))],
    )
    .map(one)
}

macro_rules! typed_unary_ops {
    ($($variant:ident $name:ident $into:ident $dtypes:ident $domain:ident $doc:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), "(x)`: ", $doc)]
        pub fn $name(q: &dyn Queue, x: &Tensor) -> Result<Tensor> {
            call(q, stringify!($name), &[Some(x)], &[]).map(one)
        }
        #[doc = concat!("[`", stringify!($name), "`] into `out`.")]
        pub fn $into(q: &dyn Queue, x: &Tensor, out: &Tensor) -> Result<()> {
            call_into(q, stringify!($name), &[Some(x)], &[out], &[])
        }
    )*};
}

crate::catalog::for_each_unary_op!(typed_unary_ops);

/// `copy(x)`: a copy in a new contiguous tensor.
pub fn copy(q: &dyn Queue, x: &Tensor) -> Result<Tensor> {
    call(q, "copy", &[Some(x)], &[]).map(one)
}

/// [`copy`] into `out`, which may have any layout.
pub fn copy_into(q: &dyn Queue, x: &Tensor, out: &Tensor) -> Result<()> {
    call_into(q, "copy", &[Some(x)], &[out], &[])
}

/// The form of `gelu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeluApproximation {
    /// `x * 0.5 * (1 + erf(x / sqrt 2))`.
    None,
    /// `0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))`.
    Tanh,
}

/// `gelu(x)` in the erf or tanh form.
pub fn gelu(q: &dyn Queue, x: &Tensor, approximate: GeluApproximation) -> Result<Tensor> {
    let a = if approximate == GeluApproximation::Tanh {
        "tanh"
    } else {
        "none"
    };
    call(
        q,
        "gelu",
        &[Some(x)],
        &[attr("approximate", AttrValue::Str(a.into()))],
    )
    .map(one)
}

/// `clamp(x, min, max) = minimum(maximum(x, min), max)`.
pub fn clamp(q: &dyn Queue, x: &Tensor, min: f64, max: f64) -> Result<Tensor> {
    call(
        q,
        "clamp",
        &[Some(x)],
        &[
            attr("min", AttrValue::Float(min)),
            attr("max", AttrValue::Float(max)),
        ],
    )
    .map(one)
}

/// A new tensor of `shape` with every element `value` (converted as `cast` does).
pub fn fill(q: &dyn Queue, dtype: DType, shape: &[usize], value: f64) -> Result<Tensor> {
    let shape = AttrValue::Ints(shape.iter().map(|&d| d as i64).collect());
    let attrs = [
        attr("value", AttrValue::Float(value)),
        attr("dtype", AttrValue::Str(dtype.name().into())),
        attr("shape", shape),
    ];
    call(q, "fill", &[], &attrs).map(one)
}

/// `[start, start + step, ..., start + (n-1) step]`.
pub fn arange(q: &dyn Queue, dtype: DType, start: f64, step: f64, n: usize) -> Result<Tensor> {
    let attrs = [
        attr("start", AttrValue::Float(start)),
        attr("step", AttrValue::Float(step)),
        attr("n", AttrValue::Int(n as i64)),
        attr("dtype", AttrValue::Str(dtype.name().into())),
    ];
    call(q, "arange", &[], &attrs).map(one)
}

/// `x` converted to `dtype` by the rules of `docs/ops.md`.
pub fn cast(q: &dyn Queue, x: &Tensor, dtype: DType) -> Result<Tensor> {
    call(
        q,
        "cast",
        &[Some(x)],
        &[attr("dtype", AttrValue::Str(dtype.name().into()))],
    )
    .map(one)
}

/// The inputs joined along `axis`.
pub fn concat(q: &dyn Queue, xs: &[&Tensor], axis: i64) -> Result<Tensor> {
    let inputs: Vec<Option<&Tensor>> = xs.iter().map(|t| Some(*t)).collect();
    call(q, "concat", &inputs, &[attr("axis", AttrValue::Int(axis))]).map(one)
}

/// `x` with only the `indices` (1-D, i32 or i64) along `axis`.
pub fn index_select(q: &dyn Queue, x: &Tensor, axis: i64, indices: &Tensor) -> Result<Tensor> {
    call(
        q,
        "index_select",
        &[Some(x), Some(indices)],
        &[attr("axis", AttrValue::Int(axis))],
    )
    .map(one)
}

/// Rows of `weight` [V, D] picked by `indices`: shape `indices.shape + [D]`.
pub fn embedding(q: &dyn Queue, weight: &Tensor, indices: &Tensor) -> Result<Tensor> {
    call(q, "embedding", &[Some(weight), Some(indices)], &[]).map(one)
}

/// `torch.gather`: `out[i][j] = x[indices[i][j]][j]` for axis 0.
pub fn gather(q: &dyn Queue, x: &Tensor, axis: i64, indices: &Tensor) -> Result<Tensor> {
    call(
        q,
        "gather",
        &[Some(x), Some(indices)],
        &[attr("axis", AttrValue::Int(axis))],
    )
    .map(one)
}

/// `cond ? a : b`, broadcasting all three.
pub fn where_(q: &dyn Queue, cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    call(q, "where", &[Some(cond), Some(a), Some(b)], &[]).map(one)
}

/// How `pad` fills the new elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PadMode {
    /// This value (negative counts crop).
    Constant(f64),
    /// The input mirrored at its edges, without repeating them.
    Reflect,
    /// The edge elements repeated.
    Replicate,
    /// The input wrapped around.
    Circular,
}

/// `x` padded: `pads` holds (before, after) counts, the last axis first (as
/// `torch.nn.functional.pad`).
pub fn pad(q: &dyn Queue, x: &Tensor, pads: &[i64], mode: PadMode) -> Result<Tensor> {
    let (name, value) = match mode {
        PadMode::Constant(v) => ("constant", v),
        PadMode::Reflect => ("reflect", 0.0),
        PadMode::Replicate => ("replicate", 0.0),
        PadMode::Circular => ("circular", 0.0),
    };
    let attrs = [
        attr("pads", AttrValue::Ints(pads.to_vec())),
        attr("mode", AttrValue::Str(name.into())),
        attr("value", AttrValue::Float(value)),
    ];
    call(q, "pad", &[Some(x)], &attrs).map(one)
}

/// `x` reversed along `axes`.
pub fn flip(q: &dyn Queue, x: &Tensor, axes: &[i64]) -> Result<Tensor> {
    let attrs = [attr("axes", AttrValue::Ints(axes.to_vec()))];
    call(q, "flip", &[Some(x)], &attrs).map(one)
}

/// `x` rotated by `shifts[i]` along `axes[i]` (`torch.roll`).
pub fn roll(q: &dyn Queue, x: &Tensor, shifts: &[i64], axes: &[i64]) -> Result<Tensor> {
    let attrs = [
        attr("shifts", AttrValue::Ints(shifts.to_vec())),
        attr("axes", AttrValue::Ints(axes.to_vec())),
    ];
    call(q, "roll", &[Some(x)], &attrs).map(one)
}

/// The lower triangle of the last two axes: elements with `col - row <= diagonal`, the others 0.
pub fn tril(q: &dyn Queue, x: &Tensor, diagonal: i64) -> Result<Tensor> {
    let attrs = [attr("diagonal", AttrValue::Int(diagonal))];
    call(q, "tril", &[Some(x)], &attrs).map(one)
}

/// The upper triangle of the last two axes: elements with `col - row >= diagonal`, the others 0.
pub fn triu(q: &dyn Queue, x: &Tensor, diagonal: i64) -> Result<Tensor> {
    let attrs = [attr("diagonal", AttrValue::Int(diagonal))];
    call(q, "triu", &[Some(x)], &attrs).map(one)
}

/// Each element along `axis` repeated `repeats[0]` times, or `repeats[i]` times for element `i`.
pub fn repeat_interleave(q: &dyn Queue, x: &Tensor, repeats: &[i64], axis: i64) -> Result<Tensor> {
    let attrs = [
        attr("repeats", AttrValue::Ints(repeats.to_vec())),
        attr("axis", AttrValue::Int(axis)),
    ];
    call(q, "repeat_interleave", &[Some(x)], &attrs).map(one)
}

/// `out[..., c] = (indices[...] == c)` in `dtype`, shape `indices.shape + [num_classes]`.
pub fn one_hot(
    q: &dyn Queue,
    indices: &Tensor,
    num_classes: usize,
    dtype: DType,
) -> Result<Tensor> {
    let attrs = [
        attr("num_classes", AttrValue::Int(num_classes as i64)),
        attr("dtype", AttrValue::Str(dtype.name().into())),
    ];
    call(q, "one_hot", &[Some(indices)], &attrs).map(one)
}

/// `torch.scatter`: `x` with `src[p]` written at `p` with `index[p]` along `axis` (the last of
/// duplicates wins).
pub fn scatter(
    q: &dyn Queue,
    x: &Tensor,
    axis: i64,
    index: &Tensor,
    src: &Tensor,
) -> Result<Tensor> {
    let attrs = [attr("axis", AttrValue::Int(axis))];
    call(q, "scatter", &[Some(x), Some(index), Some(src)], &attrs).map(one)
}

/// `torch.scatter_add`: as [`scatter`], adding (duplicates sum).
pub fn scatter_add(
    q: &dyn Queue,
    x: &Tensor,
    axis: i64,
    index: &Tensor,
    src: &Tensor,
) -> Result<Tensor> {
    let attrs = [attr("axis", AttrValue::Int(axis))];
    call(q, "scatter_add", &[Some(x), Some(index), Some(src)], &attrs).map(one)
}

/// `torch.index_add`: `out[..., index[k], ...] += alpha * source[..., k, ...]` along `axis`.
pub fn index_add(
    q: &dyn Queue,
    x: &Tensor,
    axis: i64,
    index: &Tensor,
    source: &Tensor,
    alpha: f64,
) -> Result<Tensor> {
    let attrs = [
        attr("axis", AttrValue::Int(axis)),
        attr("alpha", AttrValue::Float(alpha)),
    ];
    call(
        q,
        "index_add",
        &[Some(x), Some(index), Some(source)],
        &attrs,
    )
    .map(one)
}

/// `value` where `mask` (bool, broadcast to `x`) is true, else `x`.
pub fn masked_fill(q: &dyn Queue, x: &Tensor, mask: &Tensor, value: f64) -> Result<Tensor> {
    let attrs = [attr("value", AttrValue::Float(value))];
    call(q, "masked_fill", &[Some(x), Some(mask)], &attrs).map(one)
}

pub use crate::random::Stream;

fn stream_attrs(stream: Stream) -> [(String, AttrValue); 2] {
    [
        attr("seed", AttrValue::Int(stream.seed as i64)),
        attr("offset", AttrValue::Int(stream.offset as i64)),
    ]
}

fn random_creation(
    q: &dyn Queue,
    op: &str,
    dtype: DType,
    shape: &[usize],
    params: [(&str, f64); 2],
    stream: Stream,
) -> Result<Tensor> {
    let mut attrs = vec![
        attr(
            "shape",
            AttrValue::Ints(shape.iter().map(|&d| d as i64).collect()),
        ),
        attr("dtype", AttrValue::Str(dtype.name().into())),
        attr(params[0].0, AttrValue::Float(params[0].1)),
        attr(params[1].0, AttrValue::Float(params[1].1)),
    ];
    attrs.extend(stream_attrs(stream));
    call(q, op, &[], &attrs).map(one)
}

/// A tensor of `shape` of uniform draws in `[low, high)` (`high` only through rounding), the
/// same bits on every device for the same `stream` (docs/ops.md 8.10).
pub fn uniform(
    q: &dyn Queue,
    dtype: DType,
    shape: &[usize],
    low: f64,
    high: f64,
    stream: Stream,
) -> Result<Tensor> {
    random_creation(
        q,
        "uniform",
        dtype,
        shape,
        [("low", low), ("high", high)],
        stream,
    )
}

/// A tensor of `shape` of normal draws with `mean` and standard deviation `std`, the same
/// bits on every device for the same `stream`.
pub fn normal(
    q: &dyn Queue,
    dtype: DType,
    shape: &[usize],
    mean: f64,
    std: f64,
    stream: Stream,
) -> Result<Tensor> {
    random_creation(
        q,
        "normal",
        dtype,
        shape,
        [("mean", mean), ("std", std)],
        stream,
    )
}

/// 1 with probability `p[i]`, else 0, in `p`'s shape and dtype.
pub fn bernoulli(q: &dyn Queue, p: &Tensor, stream: Stream) -> Result<Tensor> {
    call(q, "bernoulli", &[Some(p)], &stream_attrs(stream)).map(one)
}

/// `x` with each element zeroed with probability `p` and the others scaled by `1 / (1 - p)`;
/// its gradient is `dropout` of the incoming gradient with the same `p` and `stream`.
pub fn dropout(q: &dyn Queue, x: &Tensor, p: f64, stream: Stream) -> Result<Tensor> {
    let mut attrs = vec![attr("p", AttrValue::Float(p))];
    attrs.extend(stream_attrs(stream));
    call(q, "dropout", &[Some(x)], &attrs).map(one)
}

macro_rules! backward_ops {
    ($($name:ident, $doc:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), "(grad, x)`: ", $doc)]
        pub fn $name(q: &dyn Queue, grad: &Tensor, x: &Tensor) -> Result<Tensor> {
            call(q, stringify!($name), &[Some(grad), Some(x)], &[]).map(one)
        }
    )*};
}

backward_ops! {
    relu_backward, "grad where x > 0 (and where x is NaN), else 0.";
    sigmoid_backward, "grad * sigmoid'(x), from the input x.";
    tanh_backward, "grad * (1 - tanh(x)^2), from the input x.";
    silu_backward, "grad * silu'(x).";
}

/// `gelu_backward(grad, x)`: grad times the derivative of `gelu` in the erf or tanh form.
pub fn gelu_backward(
    q: &dyn Queue,
    grad: &Tensor,
    x: &Tensor,
    approximate: GeluApproximation,
) -> Result<Tensor> {
    let a = if approximate == GeluApproximation::Tanh {
        "tanh"
    } else {
        "none"
    };
    let attrs = [attr("approximate", AttrValue::Str(a.into()))];
    call(q, "gelu_backward", &[Some(grad), Some(x)], &attrs).map(one)
}

/// `softplus_backward(grad, x)`: grad * sigmoid(beta x), or grad where `beta x > threshold`.
pub fn softplus_backward(
    q: &dyn Queue,
    grad: &Tensor,
    x: &Tensor,
    beta: f64,
    threshold: f64,
) -> Result<Tensor> {
    let attrs = [
        attr("beta", AttrValue::Float(beta)),
        attr("threshold", AttrValue::Float(threshold)),
    ];
    call(q, "softplus_backward", &[Some(grad), Some(x)], &attrs).map(one)
}

/// `elu_backward(grad, x)`: grad where x > 0, else grad * alpha * e^x.
pub fn elu_backward(q: &dyn Queue, grad: &Tensor, x: &Tensor, alpha: f64) -> Result<Tensor> {
    let attrs = [attr("alpha", AttrValue::Float(alpha))];
    call(q, "elu_backward", &[Some(grad), Some(x)], &attrs).map(one)
}

/// `leaky_relu_backward(grad, x)`: grad where x > 0, else grad * negative_slope.
pub fn leaky_relu_backward(
    q: &dyn Queue,
    grad: &Tensor,
    x: &Tensor,
    negative_slope: f64,
) -> Result<Tensor> {
    let attrs = [attr("negative_slope", AttrValue::Float(negative_slope))];
    call(q, "leaky_relu_backward", &[Some(grad), Some(x)], &attrs).map(one)
}

fn reduce(q: &dyn Queue, op: &str, x: &Tensor, axes: &[i64], keepdim: bool) -> Result<Tensor> {
    let attrs = [
        attr("axes", AttrValue::Ints(axes.to_vec())),
        attr("keepdim", AttrValue::Int(keepdim as i64)),
    ];
    call(q, op, &[Some(x)], &attrs).map(one)
}

macro_rules! reduce_ops {
    ($($name:ident, $doc:literal;)*) => {$(
        #[doc = $doc]
        pub fn $name(q: &dyn Queue, x: &Tensor, axes: &[i64], keepdim: bool) -> Result<Tensor> {
            reduce(q, stringify!($name), x, axes, keepdim)
        }
    )*};
}

reduce_ops! {
    sum, "Sum over `axes` (empty: all).";
    mean, "Mean over `axes` (empty: all).";
    max, "Maximum over `axes` (empty: all); NaN propagates.";
    min, "Minimum over `axes` (empty: all); NaN propagates.";
    argmax, "Index (i64) of the maximum over `axes`, first on ties, NaN counting as largest.";
    argmin, "Index (i64) of the minimum over `axes`, first on ties, NaN counting as smallest.";
    prod, "Product over `axes` (empty: all); an empty product is 1.";
    any, "Whether any element over `axes` (empty: all) is nonzero, as bool.";
    all, "Whether every element over `axes` (empty: all) is nonzero, as bool.";
    logsumexp, "`log(sum(exp(x)))` over `axes` (empty: all), computed without overflow.";
}

fn var_like(
    q: &dyn Queue,
    op: &str,
    x: &Tensor,
    axes: &[i64],
    keepdim: bool,
    correction: i64,
) -> Result<Tensor> {
    let attrs = [
        attr("axes", AttrValue::Ints(axes.to_vec())),
        attr("keepdim", AttrValue::Int(keepdim as i64)),
        attr("correction", AttrValue::Int(correction)),
    ];
    call(q, op, &[Some(x)], &attrs).map(one)
}

/// Variance over `axes` (empty: all), divided by `N - correction` (1: the sample variance).
pub fn var(
    q: &dyn Queue,
    x: &Tensor,
    axes: &[i64],
    keepdim: bool,
    correction: i64,
) -> Result<Tensor> {
    var_like(q, "var", x, axes, keepdim, correction)
}

/// Standard deviation: the square root of [`var`].
pub fn std(
    q: &dyn Queue,
    x: &Tensor,
    axes: &[i64],
    keepdim: bool,
    correction: i64,
) -> Result<Tensor> {
    var_like(q, "std", x, axes, keepdim, correction)
}

/// The combination of a running scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// `cumsum`.
    Sum,
    /// `cumprod`.
    Prod,
    /// `cummax`.
    Max,
    /// `cummin`.
    Min,
}

/// A running sum, product, maximum or minimum along `axis`; `exclusive` leaves each element out
/// of its own output (sums and products only: an empty prefix has no maximum), `reverse` runs
/// from the end.
pub fn scan(
    q: &dyn Queue,
    kind: Scan,
    x: &Tensor,
    axis: i64,
    exclusive: bool,
    reverse: bool,
) -> Result<Tensor> {
    let op = match kind {
        Scan::Sum => "cumsum",
        Scan::Prod => "cumprod",
        Scan::Max => "cummax",
        Scan::Min => "cummin",
    };
    let mut attrs = vec![
        attr("axis", AttrValue::Int(axis)),
        attr("reverse", AttrValue::Int(reverse as i64)),
    ];
    if matches!(kind, Scan::Sum | Scan::Prod) || exclusive {
        // `cummax` and `cummin` refuse it, naming the attribute.
        attrs.push(attr("exclusive", AttrValue::Int(exclusive as i64)));
    }
    call(q, op, &[Some(x)], &attrs).map(one)
}

/// Running sum along `axis`.
pub fn cumsum(q: &dyn Queue, x: &Tensor, axis: i64) -> Result<Tensor> {
    scan(q, Scan::Sum, x, axis, false, false)
}

/// Running product along `axis`.
pub fn cumprod(q: &dyn Queue, x: &Tensor, axis: i64) -> Result<Tensor> {
    scan(q, Scan::Prod, x, axis, false, false)
}

/// Running maximum along `axis`.
pub fn cummax(q: &dyn Queue, x: &Tensor, axis: i64) -> Result<Tensor> {
    scan(q, Scan::Max, x, axis, false, false)
}

/// Running minimum along `axis`.
pub fn cummin(q: &dyn Queue, x: &Tensor, axis: i64) -> Result<Tensor> {
    scan(q, Scan::Min, x, axis, false, false)
}

/// The `k` largest (or smallest) along `axis`, sorted: `(values, indices)`.
pub fn topk(
    q: &dyn Queue,
    x: &Tensor,
    k: usize,
    axis: i64,
    largest: bool,
) -> Result<(Tensor, Tensor)> {
    let attrs = [
        attr("k", AttrValue::Int(k as i64)),
        attr("axis", AttrValue::Int(axis)),
        attr("largest", AttrValue::Int(largest as i64)),
    ];
    two(call(q, "topk", &[Some(x)], &attrs)?, "topk")
}

/// `x` sorted along `axis` (stably; NaN above every number): `(values, indices)`.
pub fn sort(q: &dyn Queue, x: &Tensor, axis: i64, descending: bool) -> Result<(Tensor, Tensor)> {
    let attrs = [
        attr("axis", AttrValue::Int(axis)),
        attr("descending", AttrValue::Int(descending as i64)),
    ];
    two(call(q, "sort", &[Some(x)], &attrs)?, "sort")
}

/// The i64 positions that sort `x` along `axis` (the indices of [`sort`]).
pub fn argsort(q: &dyn Queue, x: &Tensor, axis: i64, descending: bool) -> Result<Tensor> {
    let attrs = [
        attr("axis", AttrValue::Int(axis)),
        attr("descending", AttrValue::Int(descending as i64)),
    ];
    call(q, "argsort", &[Some(x)], &attrs).map(one)
}

/// Softmax along `axis`.
pub fn softmax(q: &dyn Queue, x: &Tensor, axis: i64) -> Result<Tensor> {
    call(
        q,
        "softmax",
        &[Some(x)],
        &[attr("axis", AttrValue::Int(axis))],
    )
    .map(one)
}

/// Log-softmax along `axis`.
pub fn log_softmax(q: &dyn Queue, x: &Tensor, axis: i64) -> Result<Tensor> {
    call(
        q,
        "log_softmax",
        &[Some(x)],
        &[attr("axis", AttrValue::Int(axis))],
    )
    .map(one)
}

/// Layer normalisation over the last axis.
pub fn layer_norm(
    q: &dyn Queue,
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    call(
        q,
        "layer_norm",
        &[Some(x), weight, bias],
        &[attr("eps", AttrValue::Float(eps))],
    )
    .map(one)
}

/// RMS normalisation over the last axis.
pub fn rms_norm(q: &dyn Queue, x: &Tensor, weight: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    call(
        q,
        "rms_norm",
        &[Some(x), weight],
        &[attr("eps", AttrValue::Float(eps))],
    )
    .map(one)
}

/// Batched `a @ b (+ bias)`; batch dims broadcast; transposes come through strides.
pub fn matmul(q: &dyn Queue, a: &Tensor, b: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    call(q, "matmul", &[Some(a), Some(b), bias], &[]).map(one)
}

/// [`matmul`] into `out`.
pub fn matmul_into(
    q: &dyn Queue,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    call_into(q, "matmul", &[Some(a), Some(b), bias], &[out], &[])
}

/// Rotary embedding of `x` [..., S, D] with `cos`, `sin` [S, D/2].
pub fn rope(
    q: &dyn Queue,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    interleaved: bool,
) -> Result<Tensor> {
    call(
        q,
        "rope",
        &[Some(x), Some(cos), Some(sin)],
        &[attr("interleaved", AttrValue::Int(interleaved as i64))],
    )
    .map(one)
}

/// Scaled dot-product attention; `scale` defaults to `1/sqrt(D)`.
pub fn attention(
    q: &dyn Queue,
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    causal: bool,
    scale: Option<f64>,
) -> Result<Tensor> {
    let options = AttentionOptions {
        causal,
        scale,
        ..AttentionOptions::default()
    };
    attention_with(q, query, key, value, &options)
}

/// Where causal masking puts the queries among the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CausalAlign {
    /// Query row i sees keys 0..=i.
    #[default]
    TopLeft,
    /// Query row i sees keys 0..=i + Lk - Lq: the queries are the last positions (KV cache).
    BottomRight,
}

/// The options of [`attention_with`] beyond its inputs (docs/ops.md 8.8).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttentionOptions {
    /// Causal masking.
    pub causal: bool,
    /// The logit scale; `None`: `1/sqrt(D)`.
    pub scale: Option<f64>,
    /// Where causal masking aligns the queries.
    pub align: CausalAlign,
    /// With `causal`, a sliding window of this many keys (0: none).
    pub window: usize,
    /// Logits become `softcap * tanh(logit / softcap)` (0: none).
    pub softcap: f64,
}

/// Attention with every option: grouped-query heads (k and v with a head dimension that
/// divides q's), causal masking aligned either way, a sliding window and a soft cap.
pub fn attention_with(
    q: &dyn Queue,
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    options: &AttentionOptions,
) -> Result<Tensor> {
    attention_call(q, query, key, value, None, options)
}

/// [`attention_with`] and a `mask` broadcast to the logits `[..., Lq, Lk]`: bool (false leaves
/// the key out) or of q's dtype (added to the logits after the soft cap). A row whose every
/// logit is -inf is 0.
pub fn attention_masked(
    q: &dyn Queue,
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    mask: &Tensor,
    options: &AttentionOptions,
) -> Result<Tensor> {
    attention_call(q, query, key, value, Some(mask), options)
}

/// The gradients `(dq, dk, dv)` of [`attention_masked`] (or, without `mask`,
/// [`attention_with`]) with respect to its query, key and value, from the gradient of its
/// output.
pub fn attention_backward(
    q: &dyn Queue,
    grad: &Tensor,
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    mask: Option<&Tensor>,
    options: &AttentionOptions,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mut v = call(
        q,
        "attention_backward",
        &[Some(grad), Some(query), Some(key), Some(value), mask],
        &attention_attrs(options),
    )?;
    match (v.pop(), v.pop(), v.pop()) {
        (Some(dv), Some(dk), Some(dq)) => Ok((dq, dk, dv)),
        _ => Err(anyaccel_hal::Error::internal(
            "attention_backward: expected three outputs",
        )),
    }
}

fn attention_attrs(options: &AttentionOptions) -> Vec<(String, AttrValue)> {
    let mut attrs = vec![
        attr("causal", AttrValue::Int(options.causal as i64)),
        attr(
            "causal_align",
            AttrValue::Str(
                match options.align {
                    CausalAlign::TopLeft => "top_left",
                    CausalAlign::BottomRight => "bottom_right",
                }
                .into(),
            ),
        ),
        attr("window", AttrValue::Int(options.window as i64)),
        attr("softcap", AttrValue::Float(options.softcap)),
    ];
    if let Some(s) = options.scale {
        attrs.push(attr("scale", AttrValue::Float(s)));
    }
    attrs
}

fn attention_call(
    q: &dyn Queue,
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    mask: Option<&Tensor>,
    options: &AttentionOptions,
) -> Result<Tensor> {
    call(
        q,
        "attention",
        &[Some(query), Some(key), Some(value), mask],
        &attention_attrs(options),
    )
    .map(one)
}

/// The options of [`conv1d`] and [`conv2d`], per spatial dimension (`[height, width]` for
/// conv2d; conv1d reads the first value of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvOptions {
    /// Step between windows.
    pub stride: [usize; 2],
    /// Zeros added on both sides.
    pub padding: [usize; 2],
    /// Step between the kernel's taps.
    pub dilation: [usize; 2],
    /// Channel groups: C and O are divided into this many (C for depthwise).
    pub groups: usize,
}

impl Default for ConvOptions {
    fn default() -> ConvOptions {
        ConvOptions {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

fn conv_attrs(options: &ConvOptions, spatial: usize) -> Result<Vec<(String, AttrValue)>> {
    let int = |name: &str, x: usize| -> Result<i64> {
        i64::try_from(x).map_err(|_| {
            anyaccel_hal::Error::invalid_argument(format!(
                "conv: {name} value {x} does not fit in an i64"
            ))
        })
    };
    let ints = |name: &str, v: [usize; 2]| -> Result<(String, AttrValue)> {
        let v = v[..spatial]
            .iter()
            .map(|&x| int(name, x))
            .collect::<Result<Vec<_>>>()?;
        Ok(attr(name, AttrValue::Ints(v)))
    };
    Ok(vec![
        ints("stride", options.stride)?,
        ints("padding", options.padding)?,
        ints("dilation", options.dilation)?,
        attr("groups", AttrValue::Int(int("groups", options.groups)?)),
    ])
}

/// 1-D convolution (cross-correlation) of `x` [N, C, L] with `weight` [O, C/groups, K] and an
/// optional `bias` `[O]`; `options` reads the first value of each per-dimension pair.
pub fn conv1d(
    q: &dyn Queue,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: &ConvOptions,
) -> Result<Tensor> {
    call(
        q,
        "conv1d",
        &[Some(x), Some(weight), bias],
        &conv_attrs(options, 1)?,
    )
    .map(one)
}

/// 2-D convolution (cross-correlation) of `x` [N, C, H, W] with `weight` [O, C/groups, KH, KW]
/// and an optional `bias` `[O]`.
pub fn conv2d(
    q: &dyn Queue,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: &ConvOptions,
) -> Result<Tensor> {
    call(
        q,
        "conv2d",
        &[Some(x), Some(weight), bias],
        &conv_attrs(options, 2)?,
    )
    .map(one)
}

/// A convolution op of `spatial` dimensions with `options` and the extra attributes.
fn conv_op(
    q: &dyn Queue,
    op: &str,
    inputs: &[Option<&Tensor>],
    options: &ConvOptions,
    extra: Vec<(String, AttrValue)>,
) -> Result<Tensor> {
    let spatial = if op.contains("1d") { 1 } else { 2 };
    let mut attrs = conv_attrs(options, spatial)?;
    attrs.extend(extra);
    call(q, op, inputs, &attrs).map(one)
}

/// `values` as an `Ints` attribute called `name`.
fn sizes_attr(name: &str, values: &[usize]) -> Result<(String, AttrValue)> {
    let v = values
        .iter()
        .map(|&x| {
            i64::try_from(x).map_err(|_| {
                anyaccel_hal::Error::invalid_argument(format!(
                    "{name}: value {x} does not fit in an i64"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(attr(name, AttrValue::Ints(v)))
}

/// Transposed convolution of `x` [N, C_in, L] with `weight` [C_in, C_out/groups, K] and an
/// optional `bias` `[C_out]` (the input gradient of [`conv1d`] with that weight);
/// `output_padding` adds to one side of the output (below the stride or the dilation).
pub fn conv_transpose1d(
    q: &dyn Queue,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: &ConvOptions,
    output_padding: usize,
) -> Result<Tensor> {
    let extra = vec![sizes_attr("output_padding", &[output_padding])?];
    conv_op(
        q,
        "conv_transpose1d",
        &[Some(x), Some(weight), bias],
        options,
        extra,
    )
}

/// Transposed convolution of `x` [N, C_in, H, W] with `weight` [C_in, C_out/groups, KH, KW]
/// and an optional `bias` `[C_out]` (the input gradient of [`conv2d`] with that weight).
pub fn conv_transpose2d(
    q: &dyn Queue,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: &ConvOptions,
    output_padding: [usize; 2],
) -> Result<Tensor> {
    let extra = vec![sizes_attr("output_padding", &output_padding)?];
    conv_op(
        q,
        "conv_transpose2d",
        &[Some(x), Some(weight), bias],
        options,
        extra,
    )
}

/// The gradient of [`conv1d`] or [`conv2d`] (by the rank of `grad`: 3 or 4) with respect to
/// its input, of shape `input_size`, from the gradient of its output and its weight.
pub fn conv_backward_input(
    q: &dyn Queue,
    grad: &Tensor,
    weight: &Tensor,
    input_size: &[usize],
    options: &ConvOptions,
) -> Result<Tensor> {
    let op = if grad.rank() == 3 {
        "conv1d_backward_input"
    } else {
        "conv2d_backward_input"
    };
    let extra = vec![sizes_attr("input_size", input_size)?];
    conv_op(q, op, &[Some(grad), Some(weight)], options, extra)
}

/// The gradient of [`conv1d`] or [`conv2d`] (by the rank of `grad`: 3 or 4) with respect to
/// its weight, of shape `weight_size`, from the gradient of its output and its input.
pub fn conv_backward_weight(
    q: &dyn Queue,
    grad: &Tensor,
    x: &Tensor,
    weight_size: &[usize],
    options: &ConvOptions,
) -> Result<Tensor> {
    let op = if grad.rank() == 3 {
        "conv1d_backward_weight"
    } else {
        "conv2d_backward_weight"
    };
    let extra = vec![sizes_attr("weight_size", weight_size)?];
    conv_op(q, op, &[Some(grad), Some(x)], options, extra)
}

/// How [`cross_entropy`] combines the per-position losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Their sum over the count of positions not ignored (a scalar).
    #[default]
    Mean,
    /// Their sum (a scalar).
    Sum,
    /// One loss per position (the target's shape).
    None,
}

/// The options of [`cross_entropy`] and [`cross_entropy_backward`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropyOptions {
    /// A target with this value is ignored (no loss, not counted).
    pub ignore_index: i64,
    /// The weight of the uniform distribution mixed into the one-hot target, in [0, 1].
    pub label_smoothing: f64,
    /// How the per-position losses are combined.
    pub reduction: Reduction,
}

impl Default for CrossEntropyOptions {
    fn default() -> CrossEntropyOptions {
        CrossEntropyOptions {
            ignore_index: -100,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
        }
    }
}

fn cross_entropy_attrs(o: &CrossEntropyOptions) -> Vec<(String, AttrValue)> {
    let reduction = match o.reduction {
        Reduction::Mean => "mean",
        Reduction::Sum => "sum",
        Reduction::None => "none",
    };
    vec![
        attr("ignore_index", AttrValue::Int(o.ignore_index)),
        attr("label_smoothing", AttrValue::Float(o.label_smoothing)),
        attr("reduction", AttrValue::Str(reduction.into())),
    ]
}

/// Cross-entropy of `logits` [N, C, d...] against class indices `target` [N, d...] (i32 or
/// i64): log-softmax over axis 1 and the negative log-likelihood, fused (PyTorch's
/// `cross_entropy`).
pub fn cross_entropy(
    q: &dyn Queue,
    logits: &Tensor,
    target: &Tensor,
    options: &CrossEntropyOptions,
) -> Result<Tensor> {
    call(
        q,
        "cross_entropy",
        &[Some(logits), Some(target)],
        &cross_entropy_attrs(options),
    )
    .map(one)
}

/// The gradient of [`cross_entropy`] with respect to `logits`, from the gradient of its loss.
pub fn cross_entropy_backward(
    q: &dyn Queue,
    grad: &Tensor,
    logits: &Tensor,
    target: &Tensor,
    options: &CrossEntropyOptions,
) -> Result<Tensor> {
    call(
        q,
        "cross_entropy_backward",
        &[Some(grad), Some(logits), Some(target)],
        &cross_entropy_attrs(options),
    )
    .map(one)
}

/// The bit width of quantized data: `Int8` is stored as i8, `Int4` as u8 holding two values a
/// byte (the low nibble first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantBits {
    /// One i8 a value.
    Int8,
    /// Two 4-bit values a byte.
    Int4,
}

/// How [`quantize`] quantizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantizeOptions {
    /// The bit width.
    pub bits: QuantBits,
    /// Consecutive values along the last axis that share a scale and a zero point.
    pub group_size: usize,
    /// Symmetric (zero point fixed: 0 for int8, 8 for int4) or with zero points.
    pub symmetric: bool,
}

/// The result of [`quantize`].
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The data: i8 [.., K] or u8 [.., K / 2].
    pub q: Tensor,
    /// One scale a group: [.., K / group_size], the input's dtype.
    pub scales: Tensor,
    /// One zero point a group, stored as the data is.
    pub zeros: Tensor,
}

fn group_attr(group_size: usize) -> Result<(String, AttrValue)> {
    let g = i64::try_from(group_size).map_err(|_| {
        anyaccel_hal::Error::invalid_argument(format!("group_size {group_size} is too large"))
    })?;
    Ok(attr("group_size", AttrValue::Int(g)))
}

/// Quantizes the last axis of `x` (f32, f16 or bf16) in groups (docs/ops.md 8.17).
pub fn quantize(q: &dyn Queue, x: &Tensor, options: &QuantizeOptions) -> Result<Quantized> {
    let bits = match options.bits {
        QuantBits::Int8 => 8,
        QuantBits::Int4 => 4,
    };
    let attrs = vec![
        attr("bits", AttrValue::Int(bits)),
        group_attr(options.group_size)?,
        attr("symmetric", AttrValue::Int(options.symmetric as i64)),
    ];
    let mut v = call(q, "quantize", &[Some(x)], &attrs)?;
    match (v.pop(), v.pop(), v.pop()) {
        (Some(zeros), Some(scales), Some(data)) => Ok(Quantized {
            q: data,
            scales,
            zeros,
        }),
        _ => Err(anyaccel_hal::Error::internal(
            "quantize: expected three outputs",
        )),
    }
}

/// `(data - zeros) * scales`: the float values of quantized data (i8, or u8 as packed int4),
/// in the scales' dtype.
pub fn dequantize(
    q: &dyn Queue,
    data: &Tensor,
    scales: &Tensor,
    zeros: Option<&Tensor>,
    group_size: usize,
) -> Result<Tensor> {
    call(
        q,
        "dequantize",
        &[Some(data), Some(scales), zeros],
        &[group_attr(group_size)?],
    )
    .map(one)
}

/// Weight-only quantized linear: `x [.., K] @ dequantize(w [N, K])^T`, in x's dtype.
pub fn matmul_wq(
    q: &dyn Queue,
    x: &Tensor,
    w: &Tensor,
    scales: &Tensor,
    zeros: Option<&Tensor>,
    group_size: usize,
) -> Result<Tensor> {
    call(
        q,
        "matmul_wq",
        &[Some(x), Some(w), Some(scales), zeros],
        &[group_attr(group_size)?],
    )
    .map(one)
}

/// `a [M, K] @ b [K, N]` of i8 with i32 accumulation (wrapping): an i32 result, or with `out`
/// f32, f16 or bf16 the sum times the optional f32 row and column scales.
pub fn matmul_i8(
    q: &dyn Queue,
    a: &Tensor,
    b: &Tensor,
    row_scale: Option<&Tensor>,
    col_scale: Option<&Tensor>,
    out: DType,
) -> Result<Tensor> {
    call(
        q,
        "matmul_i8",
        &[Some(a), Some(b), row_scale, col_scale],
        &[attr("dtype", AttrValue::Str(out.name().into()))],
    )
    .map(one)
}
