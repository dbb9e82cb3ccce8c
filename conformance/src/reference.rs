//! The f64 reference: every op of `docs/ops.md`, computed on the host for clarity rather than
//! speed, and independent of every backend's kernels.
//!
//! Floats are computed in f64 and integers in i64 with wrapping arithmetic; each output is then
//! rounded once to its dtype ([`round_to_dtype`] for floats, [`wrap_int`] for integers and
//! bool). A device computes 16-bit elementwise ops in f32 and rounds once, and accumulates
//! reductions, softmax, norms, matmul and attention in f32; the difference between that and this
//! reference is what the tolerance table of `docs/ops.md` absorbs.
//!
//! Tensors here are [`RefTensor`]s: a dtype, a shape and row-major contiguous values
//! ([`RefData::F`] for float dtypes, [`RefData::I`] for integer dtypes and bool). Ops are called
//! as every device receives them, by name with optional inputs and named attributes:
//!
//! ```
//! use anyaccel_conformance::reference::{run, RefTensor};
//! use anyaccel_hal::DType;
//! let a = RefTensor::from_f64(DType::F32, &[2], vec![1.0, 2.5]).unwrap();
//! let b = RefTensor::from_f64(DType::F32, &[], vec![0.5]).unwrap();
//! let out = run("add", &[Some(a), Some(b)], &[]).unwrap();
//! assert_eq!(out[0].shape, vec![2]);
//! assert_eq!(out[0].f64_data(), Some(&[1.5, 3.0][..]));
//! ```
//!
//! Validation follows the contract: a bad shape, dtype, attribute or input is an
//! [`ErrorCode::InvalidArgument`](anyaccel_hal::ErrorCode::InvalidArgument) whose message names
//! the op, the argument, what was found and what was expected; an index out of range in
//! `index_select`, `embedding` or `gather` is
//! [`ErrorCode::OutOfBounds`](anyaccel_hal::ErrorCode::OutOfBounds). A name that is not an op of
//! the contract is an InvalidArgument too.

use anyaccel_hal::{AttrValue, DType, Error, Result};
use anyaccel_ops::catalog::{op_def, Op, CATALOG};

mod call;
mod checks;
mod elementwise;
#[cfg(test)]
pub(crate) mod fixtures;
mod movement;
mod nn;
mod quant;
mod random;
mod rearrange;
mod reduce;
mod rounding;
mod shape;
mod tensor;

pub use rounding::{float_to_int, round_int_to_dtype, round_to_dtype, wrap_int};
pub use tensor::{RefData, RefTensor};

pub(crate) use call::Call;
pub(crate) use checks::{check_dtype, check_same_dtype, describe, internal, invalid};
pub(crate) use shape::{
    broadcast_shapes, broadcast_source, expand, line_count, line_positions, normalize_axis, numel,
    ravel, unravel,
};

/// Every op of the contract, in the order of `docs/ops.md`: the ops of the catalog.
pub fn ops() -> Vec<&'static str> {
    CATALOG.iter().map(|d| d.name).collect()
}

/// The float dtypes of the op set, `F` in `docs/ops.md`.
pub const FLOAT_DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];
/// The integer dtypes of the op set's arithmetic, `I` in `docs/ops.md`.
pub const INT_DTYPES: [DType; 2] = [DType::I32, DType::I64];
/// `F ∪ I`.
pub const NUMERIC_DTYPES: [DType; 5] =
    [DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64];
/// `all` in `docs/ops.md`: every dtype but f64.
pub const ALL_DTYPES: [DType; 8] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::I8,
    DType::Bool,
];
/// `all + f64`: the dtypes of `fill`, `copy` and `cast`.
pub const ALL_DTYPES_AND_F64: [DType; 9] = DType::ALL;

/// Computes `op` on `inputs` with `attrs` as `docs/ops.md` defines it, and returns its outputs
/// (one tensor for every op but `topk`, which returns values and indices).
///
/// Inputs are in the order of `docs/ops.md`; an absent optional input is `None`, and trailing
/// absent ones may be left out. Each input is first rounded or wrapped to its dtype, as a device
/// would hold it. Errors: [`ErrorCode::InvalidArgument`](anyaccel_hal::ErrorCode::InvalidArgument)
/// for what `docs/ops.md` calls invalid, [`ErrorCode::OutOfBounds`](anyaccel_hal::ErrorCode::OutOfBounds)
/// for an index out of range. A name that is not an op is an InvalidArgument.
pub fn run(
    op: &str,
    inputs: &[Option<RefTensor>],
    attrs: &[(String, AttrValue)],
) -> Result<Vec<RefTensor>> {
    let one = |t: Result<RefTensor>| t.map(|t| vec![t]);
    let def = op_def(op).ok_or_else(|| {
        Error::invalid_argument(format!(
            "unknown op `{op}`: the ops of docs/ops.md are {}",
            ops().join(", ")
        ))
    })?;
    let call = &if def.is_variadic() {
        Call::variadic(op, inputs, attrs, def)?
    } else {
        Call::new(op, inputs, def, attrs)?
    };
    match def.op {
        Op::Fill => one(movement::fill(call)),
        Op::Arange => one(movement::arange(call)),
        Op::Copy => one(movement::copy(call)),
        Op::Cast => one(movement::cast(call)),
        Op::Concat => one(movement::concat(call)),
        Op::IndexSelect => one(movement::index_select(call)),
        Op::Embedding => one(movement::embedding(call)),
        Op::Gather => one(movement::gather(call)),
        Op::Pad => one(rearrange::pad(call)),
        Op::Flip | Op::Roll => one(rearrange::flip_roll(call)),
        Op::Tril | Op::Triu => one(rearrange::tri(call)),
        Op::RepeatInterleave => one(rearrange::repeat_interleave(call)),
        Op::OneHot => one(rearrange::one_hot(call)),
        Op::Scatter | Op::ScatterAdd | Op::IndexAdd => one(rearrange::scatter(call)),
        Op::MaskedFill => one(rearrange::masked_fill(call)),
        Op::Binary(b) => one(elementwise::binary(call, b, def.dtypes)),
        Op::Compare(_) => one(elementwise::compare(call)),
        Op::Where => one(elementwise::where_(call)),
        Op::Unary(u) => one(elementwise::unary(call, u)),
        Op::Predicate(p) => one(elementwise::predicate(call, p)),
        Op::Activation(a) => one(elementwise::activation(call, a)),
        Op::ActivationBackward(b) => one(elementwise::activation_backward(call, b)),
        Op::SoftmaxBackward | Op::LogSoftmaxBackward => one(nn::softmax_backward(call)),
        Op::EmbeddingBackward => one(rearrange::embedding_backward(call)),
        Op::Gelu => one(elementwise::gelu(call)),
        Op::Clamp => one(elementwise::clamp(call)),
        Op::Reduce(_) => one(reduce::reduce(call)),
        Op::Cumsum | Op::Cumprod => one(reduce::cumsum(call)),
        Op::Cummax | Op::Cummin => one(reduce::cumextreme(call)),
        Op::Topk | Op::Sort | Op::Argsort => reduce::topk(call),
        Op::Softmax | Op::LogSoftmax => one(nn::softmax(call)),
        Op::LayerNorm => one(nn::layer_norm(call)),
        Op::RmsNorm => one(nn::rms_norm(call)),
        Op::Matmul => one(nn::matmul(call)),
        Op::Conv1d | Op::Conv2d => one(nn::conv(call)),
        Op::ConvTranspose1d | Op::ConvTranspose2d => one(nn::conv_transpose(call)),
        Op::Conv1dBackwardInput
        | Op::Conv2dBackwardInput
        | Op::Conv1dBackwardWeight
        | Op::Conv2dBackwardWeight => one(nn::conv_backward(call)),
        Op::MaxPool1d | Op::MaxPool2d | Op::AvgPool1d | Op::AvgPool2d => nn::pool(call),
        Op::CrossEntropy | Op::CrossEntropyBackward => one(nn::cross_entropy(call)),
        Op::LayerNormBackward
        | Op::RmsNormBackward
        | Op::GroupNormBackward
        | Op::BatchNormBackward => nn::norm_backward(call),
        Op::AdaptiveAvgPool2d | Op::Interpolate => one(nn::resample(call)),
        Op::AdaptiveAvgPool3d | Op::AdaptiveAvgPool3dBackward => one(nn::adaptive_avg_pool3d(call)),
        Op::MaxPool1dBackward
        | Op::MaxPool2dBackward
        | Op::AvgPool1dBackward
        | Op::AvgPool2dBackward
        | Op::AdaptiveAvgPool2dBackward
        | Op::InterpolateBackward => one(nn::pool_backward(call)),
        Op::GroupNorm => one(nn::group_norm(call)),
        Op::BatchNorm => nn::batch_norm(call),
        Op::Rope => one(nn::rope(call)),
        Op::Attention => one(nn::attention(call)),
        Op::AttentionBackward => nn::attention_backward(call),
        Op::Uniform | Op::Normal => one(random::draw(call)),
        Op::Bernoulli | Op::Dropout => one(random::mask(call)),
        Op::Quantize => quant::quantize(call),
        Op::Dequantize => one(quant::dequantize(call)),
        Op::MatmulWq => one(quant::matmul_wq(call)),
        Op::MatmulI8 => one(quant::matmul_i8(call)),
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use anyaccel_hal::ErrorCode;

    #[test]
    fn the_generic_call_checks_names_inputs_and_attributes() {
        let x = f32t(&[2], &[1.0, 2.0]);
        let e = fails("frobnicate", std::slice::from_ref(&x), &[]);
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.message().starts_with("unknown op `frobnicate`"), "{e}");

        let e = fails("add", std::slice::from_ref(&x), &[]);
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.message().contains("input `b`"), "{e}");

        let e = fails("neg", &[x.clone(), x.clone()], &[]);
        assert!(
            e.message().contains("found 2 inputs, expected at most 1"),
            "{e}"
        );

        let e = fails("neg", std::slice::from_ref(&x), &[int("axis", 0)]);
        assert!(
            e.message()
                .contains("unknown attribute `axis`, expected no attributes"),
            "{e}"
        );

        let e = fails("softmax", std::slice::from_ref(&x), &[float("axis", 0.0)]);
        assert!(
            e.message()
                .contains("attribute `axis` is Float(0.0), expected Int"),
            "{e}"
        );

        // The last of repeated attributes counts; an Int serves as a Float or a one-element Ints.
        let t = run1(
            "sum",
            std::slice::from_ref(&x),
            &[ints("axes", &[5]), int("axes", 0), int("keepdim", 1)],
        );
        assert_f(&t, DType::F32, &[1], &[3.0]);
        let t = run1(
            "clamp",
            std::slice::from_ref(&x),
            &[int("min", 0), float("max", 1.5)],
        );
        assert_f(&t, DType::F32, &[2], &[1.0, 1.5]);

        let e = fails("cumsum", std::slice::from_ref(&x), &[]);
        assert!(e.message().contains("attribute `axis` is missing"), "{e}");

        let e = fails("sum", &[x], &[int("keepdim", 2)]);
        assert!(e.message().contains("expected Int(0) or Int(1)"), "{e}");

        // Every op of the list is known to `run`.
        for op in ops() {
            if let Err(e) = run(op, &[], &[]) {
                assert!(!e.message().starts_with("unknown op"), "{op}: {e}");
            }
        }
    }
}
