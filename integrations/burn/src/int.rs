//! Burn's int tensor ops on anyaccel ops (i64 by default; i32, i8 and u8 too). Integer
//! arithmetic wraps; division truncates and the remainder takes the divisor's sign, as Burn's.

use anyaccel::{AttrValue, DType};
use burn_backend::ops::IntTensorOps;
use burn_backend::tensor::{BoolTensor, Device, FloatTensor, IntTensor};
use burn_backend::{Distribution, ExecutionError, Scalar, Shape, Slice, TensorData};
use burn_std::{BoolDType, FloatDType, IndexingUpdateOp, IntDType};

use crate::common;
use crate::tensor::{float_dtype, int_dtype, unsupported, AnyaccelTensor};
use crate::Anyaccel;

impl IntTensorOps<Self> for Anyaccel {
    fn int_empty(shape: Shape, device: &Device<Self>, dtype: IntDType) -> IntTensor<Self> {
        let op = "int_empty";
        common::empty(op, shape, device, int_dtype(op, dtype))
    }

    async fn int_into_data(tensor: IntTensor<Self>) -> Result<TensorData, ExecutionError> {
        Ok(tensor.into_data("int_into_data"))
    }

    fn int_from_data(data: TensorData, device: &Device<Self>) -> IntTensor<Self> {
        AnyaccelTensor::from_data("int_from_data", data, device)
    }

    fn int_to_device(tensor: IntTensor<Self>, device: &Device<Self>) -> IntTensor<Self> {
        common::to_device("int_to_device", tensor, device)
    }

    fn int_reshape(tensor: IntTensor<Self>, shape: Shape) -> IntTensor<Self> {
        common::reshape("int_reshape", tensor, shape)
    }

    fn int_slice(tensor: IntTensor<Self>, slices: &[Slice]) -> IntTensor<Self> {
        common::slice("int_slice", tensor, slices)
    }

    fn int_slice_assign(
        tensor: IntTensor<Self>,
        slices: &[Slice],
        value: IntTensor<Self>,
    ) -> IntTensor<Self> {
        common::slice_assign("int_slice_assign", tensor, slices, value)
    }

    fn int_into_float(tensor: IntTensor<Self>, out_dtype: FloatDType) -> FloatTensor<Self> {
        let op = "int_into_float";
        tensor.cast(op, float_dtype(op, out_dtype))
    }

    fn int_mask_where(
        tensor: IntTensor<Self>,
        mask: BoolTensor<Self>,
        value: IntTensor<Self>,
    ) -> IntTensor<Self> {
        common::mask_where("int_mask_where", tensor, mask, value)
    }

    fn int_mask_fill(
        tensor: IntTensor<Self>,
        mask: BoolTensor<Self>,
        value: Scalar,
    ) -> IntTensor<Self> {
        common::mask_fill("int_mask_fill", tensor, mask, value)
    }

    fn int_gather(
        dim: usize,
        tensor: IntTensor<Self>,
        indices: IntTensor<Self>,
    ) -> IntTensor<Self> {
        common::gather("int_gather", dim, tensor, indices)
    }

    fn int_scatter(
        dim: usize,
        tensor: IntTensor<Self>,
        indices: IntTensor<Self>,
        value: IntTensor<Self>,
        update: IndexingUpdateOp,
    ) -> IntTensor<Self> {
        common::scatter("int_scatter", dim, tensor, indices, value, update)
    }

    fn int_select(
        tensor: IntTensor<Self>,
        dim: usize,
        indices: IntTensor<Self>,
    ) -> IntTensor<Self> {
        common::select("int_select", tensor, dim, indices)
    }

    fn int_select_assign(
        tensor: IntTensor<Self>,
        dim: usize,
        indices: IntTensor<Self>,
        value: IntTensor<Self>,
        update: IndexingUpdateOp,
    ) -> IntTensor<Self> {
        common::select_assign("int_select_assign", tensor, dim, indices, value, update)
    }

    fn int_equal(lhs: IntTensor<Self>, rhs: IntTensor<Self>, _: BoolDType) -> BoolTensor<Self> {
        common::compare("int_equal", "eq", lhs, rhs)
    }

    fn int_equal_elem(lhs: IntTensor<Self>, rhs: Scalar, _: BoolDType) -> BoolTensor<Self> {
        common::compare_scalar("int_equal_elem", "eq", lhs, rhs)
    }

    fn int_greater(lhs: IntTensor<Self>, rhs: IntTensor<Self>, _: BoolDType) -> BoolTensor<Self> {
        common::compare("int_greater", "gt", lhs, rhs)
    }

    fn int_greater_elem(lhs: IntTensor<Self>, rhs: Scalar, _: BoolDType) -> BoolTensor<Self> {
        common::compare_scalar("int_greater_elem", "gt", lhs, rhs)
    }

    fn int_greater_equal(
        lhs: IntTensor<Self>,
        rhs: IntTensor<Self>,
        _: BoolDType,
    ) -> BoolTensor<Self> {
        common::compare("int_greater_equal", "ge", lhs, rhs)
    }

    fn int_greater_equal_elem(lhs: IntTensor<Self>, rhs: Scalar, _: BoolDType) -> BoolTensor<Self> {
        common::compare_scalar("int_greater_equal_elem", "ge", lhs, rhs)
    }

    fn int_lower(lhs: IntTensor<Self>, rhs: IntTensor<Self>, _: BoolDType) -> BoolTensor<Self> {
        common::compare("int_lower", "lt", lhs, rhs)
    }

    fn int_lower_elem(lhs: IntTensor<Self>, rhs: Scalar, _: BoolDType) -> BoolTensor<Self> {
        common::compare_scalar("int_lower_elem", "lt", lhs, rhs)
    }

    fn int_lower_equal(
        lhs: IntTensor<Self>,
        rhs: IntTensor<Self>,
        _: BoolDType,
    ) -> BoolTensor<Self> {
        common::compare("int_lower_equal", "le", lhs, rhs)
    }

    fn int_lower_equal_elem(lhs: IntTensor<Self>, rhs: Scalar, _: BoolDType) -> BoolTensor<Self> {
        common::compare_scalar("int_lower_equal_elem", "le", lhs, rhs)
    }

    fn int_add(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        lhs.binary("int_add", "add", &rhs)
    }

    fn int_add_scalar(lhs: IntTensor<Self>, rhs: Scalar) -> IntTensor<Self> {
        lhs.binary_scalar("int_add_scalar", "add", rhs)
    }

    fn int_sub(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        lhs.binary("int_sub", "sub", &rhs)
    }

    fn int_sub_scalar(lhs: IntTensor<Self>, rhs: Scalar) -> IntTensor<Self> {
        lhs.binary_scalar("int_sub_scalar", "sub", rhs)
    }

    fn int_mul(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        lhs.binary("int_mul", "mul", &rhs)
    }

    fn int_mul_scalar(lhs: IntTensor<Self>, rhs: Scalar) -> IntTensor<Self> {
        lhs.binary_scalar("int_mul_scalar", "mul", rhs)
    }

    fn int_div(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        lhs.binary("int_div", "div", &rhs)
    }

    fn int_div_scalar(lhs: IntTensor<Self>, rhs: Scalar) -> IntTensor<Self> {
        lhs.binary_scalar("int_div_scalar", "div", rhs)
    }

    fn int_remainder(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        lhs.binary("int_remainder", "remainder", &rhs)
    }

    fn int_remainder_scalar(lhs: IntTensor<Self>, rhs: Scalar) -> IntTensor<Self> {
        lhs.binary_scalar("int_remainder_scalar", "remainder", rhs)
    }

    fn int_matmul(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        let op = "int_matmul";
        // a [.., M, K, 1] * b [.., 1, K, N] summed over K: exact wrapping integer products.
        let (ra, rb) = (lhs.dims().len(), rhs.dims().len());
        if ra < 2 || rb < 2 {
            crate::tensor::fail(op, "int_matmul needs rank 2 or more");
        }
        let mut sa = lhs.dims().to_vec();
        sa.push(1);
        let mut sb = rhs.dims().to_vec();
        sb.insert(rb - 2, 1);
        let a = common::reshape(op, lhs, Shape::from(sa));
        let b = common::reshape(op, rhs, Shape::from(sb));
        let p = a.binary(op, "mul", &b);
        let r = p.dims().len();
        p.call(
            op,
            "sum",
            &[Some(&p.t)],
            &[
                ("axes", AttrValue::Ints(vec![r as i64 - 2])),
                ("keepdim", AttrValue::Int(0)),
            ],
        )
    }

    fn int_sum(tensor: IntTensor<Self>) -> IntTensor<Self> {
        common::reduce_all("int_sum", "sum", tensor)
    }

    fn int_sum_dim(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        common::reduce_dim("int_sum_dim", "sum", tensor, dim)
    }

    fn int_prod(tensor: IntTensor<Self>) -> IntTensor<Self> {
        common::reduce_all("int_prod", "prod", tensor)
    }

    fn int_prod_dim(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        common::reduce_dim("int_prod_dim", "prod", tensor, dim)
    }

    fn int_mean_dim(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        let op = "int_mean_dim";
        // The sum divided by the count, truncated (Burn's integer mean).
        let n = tensor.dims()[dim] as i64;
        common::reduce_dim(op, "sum", tensor, dim).binary_scalar(op, "div", Scalar::Int(n))
    }

    fn int_max(tensor: IntTensor<Self>) -> IntTensor<Self> {
        common::reduce_all("int_max", "max", tensor)
    }

    fn int_max_dim(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        common::reduce_dim("int_max_dim", "max", tensor, dim)
    }

    fn int_min(tensor: IntTensor<Self>) -> IntTensor<Self> {
        common::reduce_all("int_min", "min", tensor)
    }

    fn int_min_dim(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        common::reduce_dim("int_min_dim", "min", tensor, dim)
    }

    fn int_cumsum(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        common::scan("int_cumsum", anyaccel::ops::Scan::Sum, tensor, dim)
    }

    fn int_cumprod(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        common::scan("int_cumprod", anyaccel::ops::Scan::Prod, tensor, dim)
    }

    fn int_cummin(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        common::scan("int_cummin", anyaccel::ops::Scan::Min, tensor, dim)
    }

    fn int_cummax(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        common::scan("int_cummax", anyaccel::ops::Scan::Max, tensor, dim)
    }

    fn int_argmax(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        let d = tensor.dt();
        common::arg("int_argmax", "argmax", tensor, dim, d)
    }

    fn int_argmin(tensor: IntTensor<Self>, dim: usize) -> IntTensor<Self> {
        let d = tensor.dt();
        common::arg("int_argmin", "argmin", tensor, dim, d)
    }

    fn int_abs(tensor: IntTensor<Self>) -> IntTensor<Self> {
        tensor.unary("int_abs", "abs")
    }

    fn int_neg(tensor: IntTensor<Self>) -> IntTensor<Self> {
        tensor.unary("int_neg", "neg")
    }

    fn int_swap_dims(tensor: IntTensor<Self>, dim1: usize, dim2: usize) -> IntTensor<Self> {
        common::swap_dims("int_swap_dims", tensor, dim1, dim2)
    }

    fn int_permute(tensor: IntTensor<Self>, axes: &[usize]) -> IntTensor<Self> {
        common::permute("int_permute", tensor, axes)
    }

    fn int_flip(tensor: IntTensor<Self>, axes: &[usize]) -> IntTensor<Self> {
        common::flip("int_flip", tensor, axes)
    }

    fn int_random(
        shape: Shape,
        distribution: Distribution,
        device: &Device<Self>,
        dtype: IntDType,
    ) -> IntTensor<Self> {
        let op = "int_random";
        let dt = int_dtype(op, dtype);
        let dims = shape.to_vec();
        match distribution {
            // Integers in [low, high): the floor of a uniform f64 draw in that range.
            Distribution::Uniform(lo, hi) => {
                // In f32: exact for ranges up to 2^24 wide.
                let f = DType::F32;
                let u = crate::float::random(op, &dims, Distribution::Uniform(lo, hi), device, f);
                let u = u.unary(op, "floor");
                // Rounding in the draw may give `high`; keep the range half-open.
                let top = u.scalar(op, Scalar::Float((hi - 1.0).max(lo)), f);
                u.binary(op, "minimum", &top).cast(op, dt)
            }
            // Burn draws a float and converts it, toward zero.
            Distribution::Bernoulli(_) | Distribution::Normal(..) => {
                crate::float::random(op, &dims, distribution, device, DType::F32).cast(op, dt)
            }
            // Burn's default for ints is uniform over the dtype's whole range (random bits).
            Distribution::Default => unsupported(
                op,
                "Distribution::Default for ints (uniform over the whole integer range): \
                 anyaccel's random ops draw floats; use Distribution::Uniform(low, high)",
            ),
            #[allow(unreachable_patterns)]
            d => unsupported(op, &format!("distribution {d:?}")),
        }
    }

    fn int_expand(tensor: IntTensor<Self>, shape: Shape) -> IntTensor<Self> {
        common::expand("int_expand", tensor, shape)
    }

    fn bitwise_and(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        lhs.binary("bitwise_and", "bitwise_and", &rhs)
    }

    fn bitwise_and_scalar(lhs: IntTensor<Self>, rhs: Scalar) -> IntTensor<Self> {
        lhs.binary_scalar("bitwise_and_scalar", "bitwise_and", rhs)
    }

    fn bitwise_or(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        lhs.binary("bitwise_or", "bitwise_or", &rhs)
    }

    fn bitwise_or_scalar(lhs: IntTensor<Self>, rhs: Scalar) -> IntTensor<Self> {
        lhs.binary_scalar("bitwise_or_scalar", "bitwise_or", rhs)
    }

    fn bitwise_xor(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        lhs.binary("bitwise_xor", "bitwise_xor", &rhs)
    }

    fn bitwise_xor_scalar(lhs: IntTensor<Self>, rhs: Scalar) -> IntTensor<Self> {
        lhs.binary_scalar("bitwise_xor_scalar", "bitwise_xor", rhs)
    }

    fn bitwise_not(tensor: IntTensor<Self>) -> IntTensor<Self> {
        tensor.unary("bitwise_not", "bitwise_not")
    }

    fn bitwise_left_shift(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        lhs.binary("bitwise_left_shift", "bitwise_left_shift", &rhs)
    }

    fn bitwise_left_shift_scalar(lhs: IntTensor<Self>, rhs: Scalar) -> IntTensor<Self> {
        lhs.binary_scalar("bitwise_left_shift_scalar", "bitwise_left_shift", rhs)
    }

    fn bitwise_right_shift(lhs: IntTensor<Self>, rhs: IntTensor<Self>) -> IntTensor<Self> {
        lhs.binary("bitwise_right_shift", "bitwise_right_shift", &rhs)
    }

    fn bitwise_right_shift_scalar(lhs: IntTensor<Self>, rhs: Scalar) -> IntTensor<Self> {
        lhs.binary_scalar("bitwise_right_shift_scalar", "bitwise_right_shift", rhs)
    }

    fn int_cast(tensor: IntTensor<Self>, dtype: IntDType) -> IntTensor<Self> {
        let op = "int_cast";
        tensor.cast(op, int_dtype(op, dtype))
    }

    fn int_unfold(
        tensor: IntTensor<Self>,
        dim: usize,
        size: usize,
        step: usize,
    ) -> IntTensor<Self> {
        common::unfold("int_unfold", tensor, dim, size, step)
    }

    fn int_gather_nd(data: IntTensor<Self>, indices: IntTensor<Self>) -> IntTensor<Self> {
        common::gather_nd("int_gather_nd", data, indices)
    }

    fn int_scatter_nd(
        data: IntTensor<Self>,
        indices: IntTensor<Self>,
        values: IntTensor<Self>,
        reduction: IndexingUpdateOp,
    ) -> IntTensor<Self> {
        common::scatter_nd("int_scatter_nd", data, indices, values, reduction)
    }

    fn int_cat(tensors: Vec<IntTensor<Self>>, dim: usize) -> IntTensor<Self> {
        common::cat("int_cat", tensors, dim)
    }
}
