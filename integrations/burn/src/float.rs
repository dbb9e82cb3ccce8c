//! Burn's float tensor ops on anyaccel ops.

use anyaccel::ops::random::Stream;
use anyaccel::{AttrValue, DType};
use burn_backend::ops::FloatTensorOps;
use burn_backend::tensor::{BoolTensor, Device, FloatTensor, IntTensor};
use burn_backend::{Distribution, ExecutionError, Scalar, Shape, Slice, TensorData};
use burn_std::{BoolDType, FloatDType, IndexingUpdateOp, IntDType};

use crate::common;
use crate::tensor::{float_dtype, int_dtype, ok, unsupported, AnyaccelTensor};
use crate::{Anyaccel, AnyaccelDevice};

/// A tensor of random draws (docs/ops.md 8.10: the same bits on every device for one seed).
pub(crate) fn random(
    op: &str,
    shape: &[usize],
    distribution: Distribution,
    device: &AnyaccelDevice,
    dtype: DType,
) -> AnyaccelTensor {
    let q = device.queue();
    let stream: Stream = device.next_stream();
    let t = match distribution {
        Distribution::Default => anyaccel::ops::uniform(&*q, dtype, shape, 0.0, 1.0, stream),
        Distribution::Uniform(lo, hi) => anyaccel::ops::uniform(&*q, dtype, shape, lo, hi, stream),
        Distribution::Normal(mean, std) => {
            anyaccel::ops::normal(&*q, dtype, shape, mean, std, stream)
        }
        Distribution::Bernoulli(p) => {
            let probs = ok(op, anyaccel::ops::fill(&*q, dtype, shape, p));
            anyaccel::ops::bernoulli(&*q, &probs, stream)
        }
        #[allow(unreachable_patterns)]
        d => unsupported(op, &format!("distribution {d:?}")),
    };
    AnyaccelTensor::new(ok(op, t), *device)
}

impl FloatTensorOps<Self> for Anyaccel {
    fn float_from_data(data: TensorData, device: &Device<Self>) -> FloatTensor<Self> {
        AnyaccelTensor::from_data("float_from_data", data, device)
    }

    fn float_random(
        shape: Shape,
        distribution: Distribution,
        device: &Device<Self>,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        let op = "float_random";
        random(
            op,
            &shape.to_vec(),
            distribution,
            device,
            float_dtype(op, dtype),
        )
    }

    async fn float_into_data(tensor: FloatTensor<Self>) -> Result<TensorData, ExecutionError> {
        Ok(tensor.into_data("float_into_data"))
    }

    fn float_to_device(tensor: FloatTensor<Self>, device: &Device<Self>) -> FloatTensor<Self> {
        common::to_device("float_to_device", tensor, device)
    }

    fn float_into_int(tensor: FloatTensor<Self>, out_dtype: IntDType) -> IntTensor<Self> {
        let op = "float_into_int";
        tensor.cast(op, int_dtype(op, out_dtype))
    }

    fn float_empty(shape: Shape, device: &Device<Self>, dtype: FloatDType) -> FloatTensor<Self> {
        let op = "float_empty";
        common::empty(op, shape, device, float_dtype(op, dtype))
    }

    fn float_zeros(shape: Shape, device: &Device<Self>, dtype: FloatDType) -> FloatTensor<Self> {
        let op = "float_zeros";
        AnyaccelTensor::full(op, device, float_dtype(op, dtype), &shape.to_vec(), 0.0)
    }

    fn float_ones(shape: Shape, device: &Device<Self>, dtype: FloatDType) -> FloatTensor<Self> {
        let op = "float_ones";
        AnyaccelTensor::full(op, device, float_dtype(op, dtype), &shape.to_vec(), 1.0)
    }

    fn float_full(
        shape: Shape,
        fill_value: Scalar,
        device: &Device<Self>,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        let op = "float_full";
        let v = crate::tensor::scalar_f64(fill_value);
        AnyaccelTensor::full(op, device, float_dtype(op, dtype), &shape.to_vec(), v)
    }

    fn float_add(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        lhs.binary("float_add", "add", &rhs)
    }

    fn float_add_scalar(lhs: FloatTensor<Self>, rhs: Scalar) -> FloatTensor<Self> {
        lhs.binary_scalar("float_add_scalar", "add", rhs)
    }

    fn float_sub(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        lhs.binary("float_sub", "sub", &rhs)
    }

    fn float_sub_scalar(lhs: FloatTensor<Self>, rhs: Scalar) -> FloatTensor<Self> {
        lhs.binary_scalar("float_sub_scalar", "sub", rhs)
    }

    fn float_mul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        lhs.binary("float_mul", "mul", &rhs)
    }

    fn float_mul_scalar(lhs: FloatTensor<Self>, rhs: Scalar) -> FloatTensor<Self> {
        lhs.binary_scalar("float_mul_scalar", "mul", rhs)
    }

    fn float_div(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        lhs.binary("float_div", "div", &rhs)
    }

    fn float_div_scalar(lhs: FloatTensor<Self>, rhs: Scalar) -> FloatTensor<Self> {
        lhs.binary_scalar("float_div_scalar", "div", rhs)
    }

    fn float_remainder(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        lhs.binary("float_remainder", "remainder", &rhs)
    }

    fn float_remainder_scalar(lhs: FloatTensor<Self>, rhs: Scalar) -> FloatTensor<Self> {
        lhs.binary_scalar("float_remainder_scalar", "remainder", rhs)
    }

    fn float_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        lhs.binary("float_matmul", "matmul", &rhs)
    }

    fn float_cross(
        lhs: FloatTensor<Self>,
        rhs: FloatTensor<Self>,
        dim: usize,
    ) -> FloatTensor<Self> {
        let op = "float_cross";
        // (a1 b2 - a2 b1, a2 b0 - a0 b2, a0 b1 - a1 b0) along dim: products and differences,
        // each rounded once as an elementwise kernel would.
        let comp = |t: &AnyaccelTensor, i: usize| t.with(ok(op, t.t.narrow(dim, i, 1)));
        let part = |i: usize, j: usize| {
            let x = comp(&lhs, i).binary(op, "mul", &comp(&rhs, j));
            let y = comp(&lhs, j).binary(op, "mul", &comp(&rhs, i));
            x.binary(op, "sub", &y)
        };
        common::cat(op, vec![part(1, 2), part(2, 0), part(0, 1)], dim)
    }

    fn float_recip(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_recip", "reciprocal")
    }

    fn float_swap_dims(tensor: FloatTensor<Self>, dim1: usize, dim2: usize) -> FloatTensor<Self> {
        common::swap_dims("float_swap_dims", tensor, dim1, dim2)
    }

    fn float_permute(tensor: FloatTensor<Self>, axes: &[usize]) -> FloatTensor<Self> {
        common::permute("float_permute", tensor, axes)
    }

    fn float_flip(tensor: FloatTensor<Self>, axes: &[usize]) -> FloatTensor<Self> {
        common::flip("float_flip", tensor, axes)
    }

    fn float_reshape(tensor: FloatTensor<Self>, shape: Shape) -> FloatTensor<Self> {
        common::reshape("float_reshape", tensor, shape)
    }

    fn float_gather(
        dim: usize,
        tensor: FloatTensor<Self>,
        indices: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        common::gather("float_gather", dim, tensor, indices)
    }

    fn float_scatter(
        dim: usize,
        tensor: FloatTensor<Self>,
        indices: IntTensor<Self>,
        value: FloatTensor<Self>,
        update: IndexingUpdateOp,
    ) -> FloatTensor<Self> {
        common::scatter("float_scatter", dim, tensor, indices, value, update)
    }

    fn float_select(
        tensor: FloatTensor<Self>,
        dim: usize,
        indices: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        common::select("float_select", tensor, dim, indices)
    }

    fn float_select_assign(
        tensor: FloatTensor<Self>,
        dim: usize,
        indices: IntTensor<Self>,
        value: FloatTensor<Self>,
        update: IndexingUpdateOp,
    ) -> FloatTensor<Self> {
        common::select_assign("float_select_assign", tensor, dim, indices, value, update)
    }

    fn float_slice(tensor: FloatTensor<Self>, slices: &[Slice]) -> FloatTensor<Self> {
        common::slice("float_slice", tensor, slices)
    }

    fn float_slice_assign(
        tensor: FloatTensor<Self>,
        slices: &[Slice],
        value: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        common::slice_assign("float_slice_assign", tensor, slices, value)
    }

    fn float_mask_where(
        tensor: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        value: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        common::mask_where("float_mask_where", tensor, mask, value)
    }

    fn float_mask_fill(
        tensor: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        value: Scalar,
    ) -> FloatTensor<Self> {
        common::mask_fill("float_mask_fill", tensor, mask, value)
    }

    fn float_equal(
        lhs: FloatTensor<Self>,
        rhs: FloatTensor<Self>,
        _out_dtype: BoolDType,
    ) -> BoolTensor<Self> {
        common::compare("float_equal", "eq", lhs, rhs)
    }

    fn float_equal_elem(lhs: FloatTensor<Self>, rhs: Scalar, _: BoolDType) -> BoolTensor<Self> {
        common::compare_scalar("float_equal_elem", "eq", lhs, rhs)
    }

    fn float_greater(
        lhs: FloatTensor<Self>,
        rhs: FloatTensor<Self>,
        _: BoolDType,
    ) -> BoolTensor<Self> {
        common::compare("float_greater", "gt", lhs, rhs)
    }

    fn float_greater_elem(lhs: FloatTensor<Self>, rhs: Scalar, _: BoolDType) -> BoolTensor<Self> {
        common::compare_scalar("float_greater_elem", "gt", lhs, rhs)
    }

    fn float_greater_equal(
        lhs: FloatTensor<Self>,
        rhs: FloatTensor<Self>,
        _: BoolDType,
    ) -> BoolTensor<Self> {
        common::compare("float_greater_equal", "ge", lhs, rhs)
    }

    fn float_greater_equal_elem(
        lhs: FloatTensor<Self>,
        rhs: Scalar,
        _: BoolDType,
    ) -> BoolTensor<Self> {
        common::compare_scalar("float_greater_equal_elem", "ge", lhs, rhs)
    }

    fn float_lower(
        lhs: FloatTensor<Self>,
        rhs: FloatTensor<Self>,
        _: BoolDType,
    ) -> BoolTensor<Self> {
        common::compare("float_lower", "lt", lhs, rhs)
    }

    fn float_lower_elem(lhs: FloatTensor<Self>, rhs: Scalar, _: BoolDType) -> BoolTensor<Self> {
        common::compare_scalar("float_lower_elem", "lt", lhs, rhs)
    }

    fn float_lower_equal(
        lhs: FloatTensor<Self>,
        rhs: FloatTensor<Self>,
        _: BoolDType,
    ) -> BoolTensor<Self> {
        common::compare("float_lower_equal", "le", lhs, rhs)
    }

    fn float_lower_equal_elem(
        lhs: FloatTensor<Self>,
        rhs: Scalar,
        _: BoolDType,
    ) -> BoolTensor<Self> {
        common::compare_scalar("float_lower_equal_elem", "le", lhs, rhs)
    }

    fn float_sum(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        common::reduce_all("float_sum", "sum", tensor)
    }

    fn float_sum_dim(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        common::reduce_dim("float_sum_dim", "sum", tensor, dim)
    }

    fn float_prod(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        common::reduce_all("float_prod", "prod", tensor)
    }

    fn float_prod_dim(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        common::reduce_dim("float_prod_dim", "prod", tensor, dim)
    }

    fn float_mean(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        common::reduce_all("float_mean", "mean", tensor)
    }

    fn float_mean_dim(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        common::reduce_dim("float_mean_dim", "mean", tensor, dim)
    }

    fn float_max(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        common::reduce_all("float_max", "max", tensor)
    }

    fn float_max_dim(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        common::reduce_dim("float_max_dim", "max", tensor, dim)
    }

    fn float_min(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        common::reduce_all("float_min", "min", tensor)
    }

    fn float_min_dim(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        common::reduce_dim("float_min_dim", "min", tensor, dim)
    }

    fn float_cumsum(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        common::scan("float_cumsum", anyaccel::ops::Scan::Sum, tensor, dim)
    }

    fn float_cumprod(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        common::scan("float_cumprod", anyaccel::ops::Scan::Prod, tensor, dim)
    }

    fn float_cummin(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        common::scan("float_cummin", anyaccel::ops::Scan::Min, tensor, dim)
    }

    fn float_cummax(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        common::scan("float_cummax", anyaccel::ops::Scan::Max, tensor, dim)
    }

    fn float_cast(tensor: FloatTensor<Self>, dtype: FloatDType) -> FloatTensor<Self> {
        let op = "float_cast";
        tensor.cast(op, float_dtype(op, dtype))
    }

    fn float_exp(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_exp", "exp")
    }

    fn float_log(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_log", "log")
    }

    fn float_log1p(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_log1p", "log1p")
    }

    fn float_powf(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        lhs.binary("float_powf", "pow", &rhs)
    }

    fn float_powf_scalar_impl(tensor: FloatTensor<Self>, value: Scalar) -> FloatTensor<Self> {
        tensor.binary_scalar("float_powf_scalar", "pow", value)
    }

    fn float_sqrt(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_sqrt", "sqrt")
    }

    fn float_abs(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_abs", "abs")
    }

    fn float_neg(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_neg", "neg")
    }

    fn float_sign(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_sign", "sign")
    }

    fn float_cos(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_cos", "cos")
    }

    fn float_sin(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_sin", "sin")
    }

    fn float_tan(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_tan", "tan")
    }

    fn float_cosh(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_cosh", "cosh")
    }

    fn float_sinh(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_sinh", "sinh")
    }

    fn float_tanh(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_tanh", "tanh")
    }

    fn float_acos(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_acos", "acos")
    }

    fn float_acosh(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_acosh", "acosh")
    }

    fn float_asin(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_asin", "asin")
    }

    fn float_asinh(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_asinh", "asinh")
    }

    fn float_atan(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_atan", "atan")
    }

    fn float_atanh(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_atanh", "atanh")
    }

    fn float_atan2(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        lhs.binary("float_atan2", "atan2", &rhs)
    }

    fn float_round(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_round", "round")
    }

    fn float_floor(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_floor", "floor")
    }

    fn float_ceil(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_ceil", "ceil")
    }

    fn float_trunc(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_trunc", "trunc")
    }

    fn float_erf(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("float_erf", "erf")
    }

    fn float_argmax(tensor: FloatTensor<Self>, dim: usize, out_dtype: IntDType) -> IntTensor<Self> {
        let op = "float_argmax";
        common::arg(op, "argmax", tensor, dim, int_dtype(op, out_dtype))
    }

    fn float_argmin(tensor: FloatTensor<Self>, dim: usize, out_dtype: IntDType) -> IntTensor<Self> {
        let op = "float_argmin";
        common::arg(op, "argmin", tensor, dim, int_dtype(op, out_dtype))
    }

    fn float_expand(tensor: FloatTensor<Self>, shape: Shape) -> FloatTensor<Self> {
        common::expand("float_expand", tensor, shape)
    }

    fn float_unfold(
        tensor: FloatTensor<Self>,
        dim: usize,
        size: usize,
        step: usize,
    ) -> FloatTensor<Self> {
        common::unfold("float_unfold", tensor, dim, size, step)
    }

    fn float_gather_nd(data: FloatTensor<Self>, indices: IntTensor<Self>) -> FloatTensor<Self> {
        common::gather_nd("float_gather_nd", data, indices)
    }

    fn float_scatter_nd(
        data: FloatTensor<Self>,
        indices: IntTensor<Self>,
        values: FloatTensor<Self>,
        reduction: IndexingUpdateOp,
    ) -> FloatTensor<Self> {
        common::scatter_nd("float_scatter_nd", data, indices, values, reduction)
    }

    fn float_cat(tensors: Vec<FloatTensor<Self>>, dim: usize) -> FloatTensor<Self> {
        common::cat("float_cat", tensors, dim)
    }

    fn float_clamp(tensor: FloatTensor<Self>, min: Scalar, max: Scalar) -> FloatTensor<Self> {
        let op = "float_clamp";
        let (lo, hi) = (
            crate::tensor::scalar_f64(min),
            crate::tensor::scalar_f64(max),
        );
        tensor.call(
            op,
            "clamp",
            &[Some(&tensor.t)],
            &[("min", AttrValue::Float(lo)), ("max", AttrValue::Float(hi))],
        )
    }
}
