//! Burn's bool tensor ops on anyaccel ops (bools are one byte, 0 or 1).

use anyaccel::DType;
use burn_backend::ops::BoolTensorOps;
use burn_backend::tensor::{BoolTensor, Device, FloatTensor, IntTensor};
use burn_backend::{ExecutionError, Scalar, Shape, Slice, TensorData};
use burn_std::{BoolDType, FloatDType, IndexingUpdateOp, IntDType};

use crate::common;
use crate::tensor::{float_dtype, int_dtype, AnyaccelTensor};
use crate::Anyaccel;

/// `x | (the indexed sum of value != 0)`: an OR-update through an integer add-update.
fn or_update(
    op: &str,
    x: AnyaccelTensor,
    value: AnyaccelTensor,
    add: impl FnOnce(AnyaccelTensor, AnyaccelTensor) -> AnyaccelTensor,
) -> AnyaccelTensor {
    let zeros = AnyaccelTensor::full(op, &x.device, DType::I32, x.dims(), 0.0);
    let hits = add(zeros, value.cast(op, DType::I32));
    let hit = hits.binary_scalar(op, "ne", Scalar::Int(0));
    x.binary(op, "logical_or", &hit)
}

impl BoolTensorOps<Self> for Anyaccel {
    fn bool_empty(shape: Shape, device: &Device<Self>, _dtype: BoolDType) -> BoolTensor<Self> {
        common::empty("bool_empty", shape, device, DType::Bool)
    }

    fn bool_zeros(shape: Shape, device: &Device<Self>, _dtype: BoolDType) -> BoolTensor<Self> {
        AnyaccelTensor::full("bool_zeros", device, DType::Bool, &shape.to_vec(), 0.0)
    }

    fn bool_ones(shape: Shape, device: &Device<Self>, _dtype: BoolDType) -> BoolTensor<Self> {
        AnyaccelTensor::full("bool_ones", device, DType::Bool, &shape.to_vec(), 1.0)
    }

    async fn bool_into_data(tensor: BoolTensor<Self>) -> Result<TensorData, ExecutionError> {
        Ok(tensor.into_data("bool_into_data"))
    }

    fn bool_from_data(data: TensorData, device: &Device<Self>) -> BoolTensor<Self> {
        AnyaccelTensor::from_data("bool_from_data", data, device)
    }

    fn bool_into_int(tensor: BoolTensor<Self>, out_dtype: IntDType) -> IntTensor<Self> {
        let op = "bool_into_int";
        tensor.cast(op, int_dtype(op, out_dtype))
    }

    fn bool_into_float(tensor: BoolTensor<Self>, out_dtype: FloatDType) -> FloatTensor<Self> {
        let op = "bool_into_float";
        tensor.cast(op, float_dtype(op, out_dtype))
    }

    fn bool_to_device(tensor: BoolTensor<Self>, device: &Device<Self>) -> BoolTensor<Self> {
        common::to_device("bool_to_device", tensor, device)
    }

    fn bool_reshape(tensor: BoolTensor<Self>, shape: Shape) -> BoolTensor<Self> {
        common::reshape("bool_reshape", tensor, shape)
    }

    fn bool_slice(tensor: BoolTensor<Self>, slices: &[Slice]) -> BoolTensor<Self> {
        common::slice("bool_slice", tensor, slices)
    }

    fn bool_slice_assign(
        tensor: BoolTensor<Self>,
        slices: &[Slice],
        value: BoolTensor<Self>,
    ) -> BoolTensor<Self> {
        common::slice_assign("bool_slice_assign", tensor, slices, value)
    }

    fn bool_mask_where(
        tensor: BoolTensor<Self>,
        mask: BoolTensor<Self>,
        value: BoolTensor<Self>,
    ) -> BoolTensor<Self> {
        common::mask_where("bool_mask_where", tensor, mask, value)
    }

    fn bool_mask_fill(
        tensor: BoolTensor<Self>,
        mask: BoolTensor<Self>,
        value: Scalar,
    ) -> BoolTensor<Self> {
        common::mask_fill("bool_mask_fill", tensor, mask, value)
    }

    fn bool_gather(
        dim: usize,
        tensor: BoolTensor<Self>,
        indices: IntTensor<Self>,
    ) -> BoolTensor<Self> {
        common::gather("bool_gather", dim, tensor, indices)
    }

    fn bool_scatter_or(
        dim: usize,
        tensor: BoolTensor<Self>,
        indices: IntTensor<Self>,
        value: BoolTensor<Self>,
    ) -> BoolTensor<Self> {
        let op = "bool_scatter_or";
        or_update(op, tensor, value, |z, v| {
            common::scatter(op, dim, z, indices, v, IndexingUpdateOp::Add)
        })
    }

    fn bool_select(
        tensor: BoolTensor<Self>,
        dim: usize,
        indices: IntTensor<Self>,
    ) -> BoolTensor<Self> {
        common::select("bool_select", tensor, dim, indices)
    }

    fn bool_select_or(
        tensor: BoolTensor<Self>,
        dim: usize,
        indices: IntTensor<Self>,
        value: BoolTensor<Self>,
    ) -> BoolTensor<Self> {
        let op = "bool_select_or";
        or_update(op, tensor, value, |z, v| {
            common::select_assign(op, z, dim, indices, v, IndexingUpdateOp::Add)
        })
    }

    fn bool_equal(lhs: BoolTensor<Self>, rhs: BoolTensor<Self>) -> BoolTensor<Self> {
        common::compare("bool_equal", "eq", lhs, rhs)
    }

    fn bool_equal_elem(lhs: BoolTensor<Self>, rhs: Scalar) -> BoolTensor<Self> {
        common::compare_scalar("bool_equal_elem", "eq", lhs, rhs)
    }

    fn bool_not(tensor: BoolTensor<Self>) -> BoolTensor<Self> {
        tensor.unary("bool_not", "logical_not")
    }

    fn bool_and(lhs: BoolTensor<Self>, rhs: BoolTensor<Self>) -> BoolTensor<Self> {
        lhs.binary("bool_and", "logical_and", &rhs)
    }

    fn bool_or(lhs: BoolTensor<Self>, rhs: BoolTensor<Self>) -> BoolTensor<Self> {
        lhs.binary("bool_or", "logical_or", &rhs)
    }

    fn bool_swap_dims(tensor: BoolTensor<Self>, dim1: usize, dim2: usize) -> BoolTensor<Self> {
        common::swap_dims("bool_swap_dims", tensor, dim1, dim2)
    }

    fn bool_permute(tensor: BoolTensor<Self>, axes: &[usize]) -> BoolTensor<Self> {
        common::permute("bool_permute", tensor, axes)
    }

    fn bool_flip(tensor: BoolTensor<Self>, axes: &[usize]) -> BoolTensor<Self> {
        common::flip("bool_flip", tensor, axes)
    }

    fn bool_expand(tensor: BoolTensor<Self>, shape: Shape) -> BoolTensor<Self> {
        common::expand("bool_expand", tensor, shape)
    }

    fn bool_unfold(
        tensor: BoolTensor<Self>,
        dim: usize,
        size: usize,
        step: usize,
    ) -> BoolTensor<Self> {
        common::unfold("bool_unfold", tensor, dim, size, step)
    }

    fn bool_cat(tensors: Vec<BoolTensor<Self>>, dim: usize) -> BoolTensor<Self> {
        common::cat("bool_cat", tensors, dim)
    }
}
