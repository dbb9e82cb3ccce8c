//! The ops that float, int and bool tensors share: layout views, slicing, indexing, masks,
//! comparisons, reductions along a dim, device moves.

use anyaccel::{AttrValue, DType, Tensor, TensorDesc};
use burn_backend::{Scalar, Shape, Slice};
use burn_std::IndexingUpdateOp;

use crate::tensor::{axis, fail, ints, ok, unsupported, AnyaccelTensor};
use crate::AnyaccelDevice;

/// The tensor with `shape` (a copy first when its layout is not contiguous).
pub(crate) fn reshape(op: &str, x: AnyaccelTensor, shape: Shape) -> AnyaccelTensor {
    let dims: Vec<usize> = shape.to_vec();
    let x = x.contiguous(op);
    let t = ok(op, x.t.reshape(&dims));
    x.with(t)
}

pub(crate) fn permute(op: &str, x: AnyaccelTensor, axes: &[usize]) -> AnyaccelTensor {
    let t = ok(op, x.t.permute(axes));
    x.with(t)
}

pub(crate) fn swap_dims(op: &str, x: AnyaccelTensor, a: usize, b: usize) -> AnyaccelTensor {
    let t = ok(op, x.t.transpose(a, b));
    x.with(t)
}

pub(crate) fn flip(op: &str, x: AnyaccelTensor, axes: &[usize]) -> AnyaccelTensor {
    if axes.is_empty() {
        return x;
    }
    let a: Vec<i64> = axes.iter().map(|&d| d as i64).collect();
    x.call(op, "flip", &[Some(&x.t)], &[("axes", AttrValue::Ints(a))])
}

pub(crate) fn expand(op: &str, x: AnyaccelTensor, shape: Shape) -> AnyaccelTensor {
    let dims: Vec<usize> = shape.to_vec();
    let t = ok(op, x.t.broadcast_to(&dims));
    x.with(t)
}

/// The elements Burn's slices take, as a view in ascending order, and the dims whose slice
/// walks backwards (a negative step): the slice is the view flipped along those dims.
fn ascending_view(op: &str, x: &AnyaccelTensor, slices: &[Slice]) -> (AnyaccelTensor, Vec<usize>) {
    let d = x.t.desc();
    if slices.len() > d.rank() {
        fail(
            op,
            format!("{} slices for a tensor of rank {}", slices.len(), d.rank()),
        );
    }
    let mut shape = d.shape.clone();
    let mut strides = d.strides.clone();
    let mut offset = d.offset;
    let mut reversed = Vec::new();
    for (dim, s) in slices.iter().enumerate() {
        if s.step == 0 {
            fail(op, format!("slice step 0 in dim {dim}"));
        }
        let size = d.shape[dim];
        let r = s.to_range(size);
        let (start, end) = (r.start.min(size), r.end.min(size));
        let step = s.step.unsigned_abs();
        let len = if end > start {
            (end - start).div_ceil(step)
        } else {
            0
        };
        if len > 0 {
            // The lowest element taken: start forwards, the last one of the walk backwards.
            let first = if s.step > 0 {
                start
            } else {
                end - 1 - (len - 1) * step
            };
            let add = first.checked_mul(d.strides[dim]);
            offset = add
                .and_then(|a| offset.checked_add(a))
                .unwrap_or_else(|| fail(op, "slice offset overflows"));
            strides[dim] = d.strides[dim]
                .checked_mul(step)
                .unwrap_or_else(|| fail(op, "slice stride overflows"));
        }
        shape[dim] = len;
        if s.step < 0 && len > 1 {
            reversed.push(dim);
        }
    }
    let view = x.view(
        op,
        TensorDesc {
            dtype: d.dtype,
            shape,
            strides,
            offset,
        },
    );
    (view, reversed)
}

/// Burn's slice: per dim a range and a step; a negative step walks the range backwards.
pub(crate) fn slice(op: &str, x: AnyaccelTensor, slices: &[Slice]) -> AnyaccelTensor {
    let (view, reversed) = ascending_view(op, &x, slices);
    flip(op, view, &reversed)
}

/// A copy of `x` with `value` written into the slice.
pub(crate) fn slice_assign(
    op: &str,
    x: AnyaccelTensor,
    slices: &[Slice],
    value: AnyaccelTensor,
) -> AnyaccelTensor {
    // Never write into x's memory: other tensors may share it.
    let out = x.with(ok(op, anyaccel::ops::copy(x.queue(), &x.t)));
    let (target, reversed) = ascending_view(op, &out, slices);
    // The backward walks: the value flipped along those dims, written in ascending order.
    let value = flip(op, value, &reversed);
    ok(op, anyaccel::ops::copy_into(x.queue(), &value.t, &target.t));
    out
}

/// Burn's unfold: the windows of `size` every `step` along `dim` as a view (dim becomes the
/// window count, a new last dim the window).
pub(crate) fn unfold(
    op: &str,
    x: AnyaccelTensor,
    dim: usize,
    size: usize,
    step: usize,
) -> AnyaccelTensor {
    let d = x.t.desc().clone();
    if dim >= d.rank() || step == 0 || size == 0 {
        fail(
            op,
            format!(
                "dim {dim}, size {size}, step {step} for shape {:?}",
                d.shape
            ),
        );
    }
    let n = if d.shape[dim] >= size {
        (d.shape[dim] - size) / step + 1
    } else {
        0
    };
    let mut shape = d.shape.clone();
    let mut strides = d.strides.clone();
    shape[dim] = n;
    strides[dim] = d.strides[dim]
        .checked_mul(step)
        .unwrap_or_else(|| fail(op, "unfold stride overflows"));
    shape.push(size);
    strides.push(d.strides[dim]);
    x.view(
        op,
        TensorDesc {
            dtype: d.dtype,
            shape,
            strides,
            offset: d.offset,
        },
    )
}

/// The tensors joined along `dim`.
pub(crate) fn cat(op: &str, xs: Vec<AnyaccelTensor>, dim: usize) -> AnyaccelTensor {
    let first = xs
        .first()
        .cloned()
        .unwrap_or_else(|| fail(op, "no tensors to join"));
    let ts: Vec<&Tensor> = xs.iter().map(|x| &x.t).collect();
    first.with(ok(
        op,
        anyaccel::ops::concat(first.queue(), &ts, dim as i64),
    ))
}

pub(crate) fn gather(
    op: &str,
    dim: usize,
    x: AnyaccelTensor,
    indices: AnyaccelTensor,
) -> AnyaccelTensor {
    x.call(
        op,
        "gather",
        &[Some(&x.t), Some(&indices.t)],
        &[("axis", axis(dim))],
    )
}

pub(crate) fn select(
    op: &str,
    x: AnyaccelTensor,
    dim: usize,
    indices: AnyaccelTensor,
) -> AnyaccelTensor {
    x.call(
        op,
        "index_select",
        &[Some(&x.t), Some(&indices.t)],
        &[("axis", axis(dim))],
    )
}

pub(crate) fn scatter(
    op: &str,
    dim: usize,
    x: AnyaccelTensor,
    indices: AnyaccelTensor,
    value: AnyaccelTensor,
    update: IndexingUpdateOp,
) -> AnyaccelTensor {
    let name = match update {
        IndexingUpdateOp::Add => "scatter_add",
        IndexingUpdateOp::Assign => "scatter",
        u => unsupported(
            op,
            &format!("update {u:?} (anyaccel scatters with assign and add)"),
        ),
    };
    x.call(
        op,
        name,
        &[Some(&x.t), Some(&indices.t), Some(&value.t)],
        &[("axis", axis(dim))],
    )
}

pub(crate) fn select_assign(
    op: &str,
    x: AnyaccelTensor,
    dim: usize,
    indices: AnyaccelTensor,
    value: AnyaccelTensor,
    update: IndexingUpdateOp,
) -> AnyaccelTensor {
    match update {
        IndexingUpdateOp::Add => x.call(
            op,
            "index_add",
            &[Some(&x.t), Some(&indices.t), Some(&value.t)],
            &[("axis", axis(dim)), ("alpha", AttrValue::Float(1.0))],
        ),
        IndexingUpdateOp::Assign => {
            // A scatter along dim whose index repeats indices[k] over value's other dims.
            let mut shape = vec![1; value.dims().len()];
            if dim >= shape.len() || indices.dims().len() != 1 {
                fail(
                    op,
                    format!(
                        "indices {:?} along dim {dim} of a value {:?}",
                        indices.dims(),
                        value.dims()
                    ),
                );
            }
            shape[dim] = indices.dims()[0];
            let idx = ok(op, indices.contiguous(op).t.reshape(&shape));
            let idx = ok(op, idx.broadcast_to(value.dims()));
            x.call(
                op,
                "scatter",
                &[Some(&x.t), Some(&idx), Some(&value.t)],
                &[("axis", axis(dim))],
            )
        }
        u => unsupported(
            op,
            &format!("update {u:?} (anyaccel's indexed updates assign or add)"),
        ),
    }
}

/// The row of `data` viewed as [prod(dims[..k]), rest] that each index tuple (the last dim of
/// `indices`, k long) names: sum_j indices[.., j] * stride_j, as i64.
fn nd_rows(
    op: &str,
    data: &AnyaccelTensor,
    indices: &AnyaccelTensor,
) -> (AnyaccelTensor, AnyaccelTensor, Vec<usize>) {
    let (dd, id) = (data.dims().to_vec(), indices.dims().to_vec());
    let k = *id
        .last()
        .unwrap_or_else(|| fail(op, "indices of rank 0 (expected [.., k])"));
    if k == 0 || k > dd.len() {
        fail(
            op,
            format!(
                "index tuples of {k} for data of rank {} (expected 1..=rank)",
                dd.len()
            ),
        );
    }
    let idx = indices.cast(op, DType::I64);
    let mut linear: Option<AnyaccelTensor> = None;
    let mut stride: i64 = 1;
    for j in (0..k).rev() {
        let col = idx.with(ok(op, idx.t.narrow(id.len() - 1, j, 1)));
        let term = col.binary_scalar(op, "mul", Scalar::Int(stride));
        linear = Some(match linear {
            None => term,
            Some(l) => l.binary(op, "add", &term),
        });
        stride = stride
            .checked_mul(dd[j] as i64)
            .unwrap_or_else(|| fail(op, "the data's size overflows"));
    }
    let lead: Vec<usize> = id[..id.len() - 1].to_vec();
    let linear = linear.unwrap_or_else(|| fail(op, "no index tuple"));
    let linear = linear.with(ok(
        op,
        linear.contiguous(op).t.reshape(&[lead.iter().product()]),
    ));
    let rest: Vec<usize> = dd[k..].to_vec();
    let rows: usize = dd[..k].iter().product();
    let mut flat = vec![rows];
    flat.extend(&rest);
    let data2 = data.with(ok(op, data.contiguous(op).t.reshape(&flat)));
    let mut out = lead;
    out.extend(&rest);
    (data2, linear, out)
}

/// Burn's gather_nd: `out[i..] = data[indices[i.., :], ..]`.
pub(crate) fn gather_nd(op: &str, data: AnyaccelTensor, indices: AnyaccelTensor) -> AnyaccelTensor {
    let (flat, rows, out_shape) = nd_rows(op, &data, &indices);
    let g = select(op, flat, 0, rows);
    g.with(ok(op, g.t.reshape(&out_shape)))
}

/// Burn's scatter_nd: the rows that `indices` names updated with `values` (assign or add).
pub(crate) fn scatter_nd(
    op: &str,
    data: AnyaccelTensor,
    indices: AnyaccelTensor,
    values: AnyaccelTensor,
    update: IndexingUpdateOp,
) -> AnyaccelTensor {
    let shape = data.dims().to_vec();
    let (flat, rows, _) = nd_rows(op, &data, &indices);
    let mut vshape = vec![rows.dims()[0]];
    vshape.extend(&flat.dims()[1..]);
    let values = values.with(ok(op, values.contiguous(op).t.reshape(&vshape)));
    let out = select_assign(op, flat, 0, rows, values, update);
    out.with(ok(op, out.t.reshape(&shape)))
}

/// `value` where `mask`, else `x`.
pub(crate) fn mask_where(
    op: &str,
    x: AnyaccelTensor,
    mask: AnyaccelTensor,
    value: AnyaccelTensor,
) -> AnyaccelTensor {
    let value = value.cast(op, x.dt());
    x.call(
        op,
        "where",
        &[Some(&mask.t), Some(&value.t), Some(&x.t)],
        &[],
    )
}

/// `value` where `mask`, else `x` (the scalar exact in x's dtype).
pub(crate) fn mask_fill(
    op: &str,
    x: AnyaccelTensor,
    mask: AnyaccelTensor,
    value: Scalar,
) -> AnyaccelTensor {
    let v = x.scalar(op, value, x.dt());
    let out = x.call(op, "where", &[Some(&mask.t), Some(&v.t), Some(&x.t)], &[]);
    // `where` broadcasts; Burn's result has x's shape even where the mask is larger.
    if out.dims() != x.dims() {
        fail(
            op,
            format!(
                "mask {:?} does not broadcast to the tensor {:?}",
                mask.dims(),
                x.dims()
            ),
        );
    }
    out
}

/// Comparison `name` (eq, gt, ge, lt, le) as bool.
pub(crate) fn compare(
    op: &str,
    name: &str,
    a: AnyaccelTensor,
    b: AnyaccelTensor,
) -> AnyaccelTensor {
    a.binary(op, name, &b)
}

pub(crate) fn compare_scalar(op: &str, name: &str, a: AnyaccelTensor, v: Scalar) -> AnyaccelTensor {
    a.binary_scalar(op, name, v)
}

/// Reduction `name` over `dim`, the dim kept with size 1 (Burn's `*_dim` ops).
pub(crate) fn reduce_dim(op: &str, name: &str, x: AnyaccelTensor, dim: usize) -> AnyaccelTensor {
    x.call(
        op,
        name,
        &[Some(&x.t)],
        &[("axes", ints(&[dim])), ("keepdim", AttrValue::Int(1))],
    )
}

/// Reduction `name` over every element, as a tensor of shape [1] (Burn's `sum`, `prod`, ...).
pub(crate) fn reduce_all(op: &str, name: &str, x: AnyaccelTensor) -> AnyaccelTensor {
    let r = x.call(
        op,
        name,
        &[Some(&x.t)],
        &[
            ("axes", AttrValue::Ints(vec![])),
            ("keepdim", AttrValue::Int(0)),
        ],
    );
    let t = ok(op, r.t.reshape(&[1]));
    r.with(t)
}

/// Running `kind` (sum, prod) along `dim`.
pub(crate) fn scan(
    op: &str,
    kind: anyaccel::ops::Scan,
    x: AnyaccelTensor,
    dim: usize,
) -> AnyaccelTensor {
    x.with(ok(
        op,
        anyaccel::ops::scan(x.queue(), kind, &x.t, dim as i64, false, false),
    ))
}

/// The index of the extreme along `dim` (kept), in `dtype`.
pub(crate) fn arg(
    op: &str,
    name: &str,
    x: AnyaccelTensor,
    dim: usize,
    dtype: DType,
) -> AnyaccelTensor {
    reduce_dim(op, name, x, dim).cast(op, dtype)
}

/// The tensor on `device` (through the host between two devices).
pub(crate) fn to_device(op: &str, x: AnyaccelTensor, device: &AnyaccelDevice) -> AnyaccelTensor {
    if x.device == *device {
        return x;
    }
    let bytes = ok(op, x.t.to_bytes(x.queue()));
    let q = device.queue();
    let t = ok(op, Tensor::empty(&*q.device(), x.dt(), x.dims()));
    if !bytes.is_empty() {
        ok(op, q.write(t.view(), &bytes));
    }
    AnyaccelTensor::new(t, *device)
}

/// A tensor whose contents Burn leaves unspecified: anyaccel's `Tensor::empty`, no fill.
pub(crate) fn empty(
    op: &str,
    shape: Shape,
    device: &AnyaccelDevice,
    dtype: DType,
) -> AnyaccelTensor {
    let q = device.queue();
    let t = ok(op, Tensor::empty(&*q.device(), dtype, &shape.to_vec()));
    AnyaccelTensor::new(t, *device)
}
