//! Tensors: a [`BufferView`] and a [`TensorDesc`] (dtype, shape, strides, offset).

use std::sync::Arc;

use crate::layout::{self, checked_numel};
use crate::{BufferView, DType, Device, Element, Error, Queue, Result};

/// The layout of a tensor: dtype, shape, strides in elements (zero strides broadcast), and the
/// offset in elements of element `[0, 0, ...]` from the start of its view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorDesc {
    /// Element type.
    pub dtype: DType,
    /// Size of each dimension. A rank-0 tensor (empty shape) is a scalar with one element.
    pub shape: Vec<usize>,
    /// Step in elements for each dimension.
    pub strides: Vec<usize>,
    /// Offset in elements from the start of the view.
    pub offset: usize,
}

/// Row-major strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut step = 1usize;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = step;
        step = step.saturating_mul(d.max(1));
    }
    strides
}

/// A shape written as `2x3x4` (or `scalar`).
pub fn shape_str(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".to_string();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

impl TensorDesc {
    /// A contiguous row-major layout at offset 0.
    pub fn contiguous(dtype: DType, shape: &[usize]) -> TensorDesc {
        TensorDesc {
            dtype,
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (saturating; shapes are checked when a tensor is made).
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }

    /// True when the layout is row-major without gaps (size-1 dimensions' strides ignored).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected = expected.saturating_mul(d);
        }
        true
    }

    /// Elements from the offset to one past the furthest element reached (0 when empty). Exact
    /// for a layout that [`TensorDesc::validate`] accepts; `usize::MAX` (never a wrapped value)
    /// for one whose span overflows.
    pub fn span(&self) -> usize {
        layout::span_elements(&self.shape, &self.strides).unwrap_or(usize::MAX)
    }

    /// Elements of the view that the layout needs: the offset plus the span, checked. An empty
    /// tensor needs its offset (so that its first element's address still lies inside the view).
    pub fn required_elements(&self) -> Result<usize> {
        self.required_elements_of("tensor")
    }

    /// Bytes of the view that the tensor needs: offset plus span, in bytes, checked.
    pub fn required_bytes(&self) -> Result<usize> {
        self.required_bytes_of("tensor")
    }

    fn required_elements_of(&self, what: &str) -> Result<usize> {
        let span = layout::checked_span(what, &self.shape, &self.strides)?;
        self.offset.checked_add(span).ok_or_else(|| {
            Error::invalid_argument(format!(
                "{what}: offset {} plus span {span} does not fit in usize: expected a smaller offset",
                self.offset
            ))
        })
    }

    fn required_bytes_of(&self, what: &str) -> Result<usize> {
        layout::elements_to_bytes(what, self.required_elements_of(what)?, self.dtype)
    }

    /// The offset in bytes of element `[0, ...]` from the start of the view, checked.
    pub fn byte_offset(&self) -> Result<usize> {
        layout::elements_to_bytes("tensor offset", self.offset, self.dtype)
    }

    /// Bytes of the elements in row-major order (`numel * dtype size`): the length of a host
    /// transfer. Checked: a broadcast view may have far more elements than its memory holds.
    pub fn host_bytes(&self) -> Result<usize> {
        let numel = checked_numel("tensor", &self.shape)?;
        layout::elements_to_bytes("tensor host transfer", numel, self.dtype)
    }

    /// The element offset (from the view start) of the element with this row-major linear index.
    /// Exact for a validated layout and `linear < numel`, where it cannot overflow.
    pub fn offset_of_linear(&self, mut linear: usize) -> usize {
        let mut off = self.offset;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d == 0 {
                return off;
            }
            off = off.saturating_add((linear % d).saturating_mul(s));
            linear /= d;
        }
        off
    }

    /// Checks that shape and strides have the same rank (at most [`layout::MAX_RANK`]), that the
    /// element count fits, and that offset plus span fits in memory, all without overflow.
    pub fn validate(&self, what: &str) -> Result<()> {
        if self.shape.len() != self.strides.len() {
            return Err(Error::invalid_argument(format!(
                "{what}: shape {:?} has rank {} but strides {:?} have rank {}: ranks must match",
                self.shape,
                self.shape.len(),
                self.strides,
                self.strides.len()
            )));
        }
        layout::check_rank(what, self.shape.len())?;
        checked_numel(what, &self.shape)?;
        self.required_bytes_of(what)?;
        Ok(())
    }
}

/// A tensor: a view of device memory and its layout. Cloning shares the memory (and the
/// layout: a clone allocates nothing).
#[derive(Debug, Clone)]
pub struct Tensor {
    view: BufferView,
    desc: Arc<TensorDesc>,
}

impl Tensor {
    /// A tensor over `view` with layout `desc`; `OutOfBounds` if the layout reaches past the view.
    pub fn new(view: BufferView, desc: TensorDesc) -> Result<Tensor> {
        desc.validate("tensor")?;
        let need = desc.required_bytes()?;
        if need > view.len() {
            return Err(Error::out_of_bounds(format!(
                "tensor: {} {} with strides {:?} at offset {} needs {need} bytes but the view has {}",
                desc.dtype,
                shape_str(&desc.shape),
                desc.strides,
                desc.offset,
                view.len()
            )));
        }
        Ok(Tensor {
            view,
            desc: Arc::new(desc),
        })
    }

    /// A new contiguous tensor on `device`; its contents are unspecified.
    pub fn empty(device: &dyn Device, dtype: DType, shape: &[usize]) -> Result<Tensor> {
        let desc = TensorDesc::contiguous(dtype, shape);
        desc.validate("tensor")?;
        let buffer = device.alloc(desc.required_bytes()?)?;
        Tensor::new(buffer.whole(), desc)
    }

    /// A new contiguous tensor on the queue's device holding `data` in row-major order.
    pub fn from_slice<T: Element>(
        queue: &dyn Queue,
        data: &[T],
        shape: &[usize],
    ) -> Result<Tensor> {
        let numel = checked_numel("from_slice", shape)?;
        if numel != data.len() {
            return Err(Error::invalid_argument(format!(
                "from_slice: shape {shape:?} has {numel} elements but the slice has {}",
                data.len()
            )));
        }
        let t = Tensor::empty(&*queue.device(), T::DTYPE, shape)?;
        queue.write(&t.view, &crate::to_bytes(data))?;
        Ok(t)
    }

    /// Reads the elements in row-major order. Waits for the queue.
    pub fn to_vec<T: Element>(&self, queue: &dyn Queue) -> Result<Vec<T>> {
        if T::DTYPE != self.desc.dtype {
            return Err(Error::invalid_argument(format!(
                "to_vec: tensor is {} but {} was asked for",
                self.desc.dtype,
                T::DTYPE
            )));
        }
        Ok(T::from_bytes(&self.to_bytes(queue)?))
    }

    /// Reads the elements' bytes in row-major order. Waits for the queue. A view with more
    /// elements than host memory can hold (a broadcast, say) is `OutOfMemory`, not an abort.
    pub fn to_bytes(&self, queue: &dyn Queue) -> Result<Vec<u8>> {
        let bytes = self.desc.host_bytes()?;
        let mut out = Vec::new();
        out.try_reserve_exact(bytes).map_err(|_| {
            Error::out_of_memory(format!(
                "to_bytes: the {} {} tensor holds {bytes} bytes in row-major order, more than \
                 the host could allocate",
                self.desc.dtype,
                shape_str(&self.desc.shape)
            ))
        })?;
        out.resize(bytes, 0);
        self.read_into(queue, &mut out)?;
        Ok(out)
    }

    /// Reads the elements' bytes in row-major order into `dst`, which must hold exactly
    /// [`TensorDesc::host_bytes`] bytes. Waits for the queue.
    pub fn read_into(&self, queue: &dyn Queue, dst: &mut [u8]) -> Result<()> {
        let bytes = self.desc.host_bytes()?;
        if dst.len() != bytes {
            return Err(Error::invalid_argument(format!(
                "read: the destination has {} bytes but the {} {} tensor holds {bytes}: \
                 expected exactly its size",
                dst.len(),
                self.desc.dtype,
                shape_str(&self.desc.shape)
            )));
        }
        if bytes == 0 {
            return queue.finish();
        }
        let size = self.desc.dtype.size_in_bytes();
        // Inside the view: `Tensor::new` checked offset plus span against it.
        let start = self.desc.byte_offset()?;
        let span = layout::elements_to_bytes("read", self.desc.span(), self.desc.dtype)?;
        let view = self.view.sub(start, span)?;
        if self.desc.is_contiguous() {
            return queue.read(&view, dst);
        }
        let mut raw = Vec::new();
        raw.try_reserve_exact(span)
            .map_err(|_| Error::out_of_memory(format!("read: {span} bytes of staging")))?;
        raw.resize(span, 0);
        queue.read(&view, &mut raw)?;
        for (i, out) in dst.chunks_exact_mut(size).enumerate() {
            let at = (self.desc.offset_of_linear(i) - self.desc.offset) * size;
            out.copy_from_slice(&raw[at..at + size]);
        }
        Ok(())
    }

    /// The view.
    pub fn view(&self) -> &BufferView {
        &self.view
    }

    /// The layout.
    pub fn desc(&self) -> &TensorDesc {
        &self.desc
    }

    /// The layout, shared: holding it allocates nothing.
    pub fn desc_arc(&self) -> &Arc<TensorDesc> {
        &self.desc
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.desc.dtype
    }

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.desc.shape
    }

    /// Strides in elements.
    pub fn strides(&self) -> &[usize] {
        &self.desc.strides
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.desc.numel()
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.desc.rank()
    }

    /// The id of the device that holds the tensor.
    pub fn device_id(&self) -> &str {
        self.view.buffer().device_id()
    }

    /// The same memory with another layout (bounds-checked).
    pub fn with_desc(&self, desc: TensorDesc) -> Result<Tensor> {
        Tensor::new(self.view.clone(), desc)
    }

    /// Reorders dimensions: dimension `i` of the result is dimension `order[i]` of `self`.
    pub fn permute(&self, order: &[usize]) -> Result<Tensor> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if order.len() != rank
            || order
                .iter()
                .any(|&d| d >= rank || std::mem::replace(&mut seen[d], true))
        {
            return Err(Error::invalid_argument(format!(
                "permute: order {order:?} is not a permutation of 0..{rank}"
            )));
        }
        let mut desc = TensorDesc::clone(&self.desc);
        desc.shape = order.iter().map(|&d| self.desc.shape[d]).collect();
        desc.strides = order.iter().map(|&d| self.desc.strides[d]).collect();
        self.with_desc(desc)
    }

    /// Swaps two dimensions.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        let rank = self.rank();
        if a >= rank || b >= rank {
            return Err(Error::invalid_argument(format!(
                "transpose: dims {a} and {b} for a rank-{rank} tensor: dims must be below the rank"
            )));
        }
        let mut order: Vec<usize> = (0..rank).collect();
        order.swap(a, b);
        self.permute(&order)
    }

    /// Elements `start..start+len` along `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        let rank = self.rank();
        if dim >= rank {
            return Err(Error::invalid_argument(format!(
                "narrow: dim {dim} for a rank-{rank} tensor"
            )));
        }
        let size = self.desc.shape[dim];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::out_of_bounds(format!(
                "narrow: {start}..{} of dim {dim} of size {size}",
                start as u128 + len as u128
            )));
        }
        let mut desc = TensorDesc::clone(&self.desc);
        desc.shape[dim] = len;
        if len > 0 {
            // Inside the view (start < size), so it fits; checked all the same.
            let step = start.checked_mul(desc.strides[dim]);
            desc.offset = step
                .and_then(|step| desc.offset.checked_add(step))
                .ok_or_else(|| {
                    Error::out_of_bounds(format!(
                        "narrow: offset of {start} in dim {dim} overflows"
                    ))
                })?;
        }
        self.with_desc(desc)
    }

    /// Broadcasts to `shape` (NumPy rules) with zero strides, sharing memory.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let rank = self.rank();
        if shape.len() < rank {
            return Err(Error::invalid_argument(format!(
                "broadcast_to: cannot broadcast {} to the lower rank {}",
                shape_str(self.shape()),
                shape_str(shape)
            )));
        }
        let lead = shape.len() - rank;
        let mut strides = vec![0; shape.len()];
        for i in 0..rank {
            let (from, to) = (self.desc.shape[i], shape[lead + i]);
            strides[lead + i] = if from == to {
                self.desc.strides[i]
            } else if from == 1 {
                0
            } else {
                return Err(Error::invalid_argument(format!(
                    "broadcast_to: cannot broadcast {} to {}: dim {i} is {from}, expected 1 or {to}",
                    shape_str(self.shape()),
                    shape_str(shape)
                )));
            };
        }
        self.with_desc(TensorDesc {
            dtype: self.dtype(),
            shape: shape.to_vec(),
            strides,
            offset: self.desc.offset,
        })
    }

    /// The same contiguous memory with another shape of equal element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if !self.desc.is_contiguous() {
            return Err(Error::invalid_argument(format!(
                "reshape: tensor with strides {:?} is not contiguous; copy it first",
                self.strides()
            )));
        }
        let n = checked_numel("reshape", shape)?;
        if n != self.numel() {
            return Err(Error::invalid_argument(format!(
                "reshape: {} has {} elements but {} has {n}",
                shape_str(self.shape()),
                self.numel(),
                shape_str(shape)
            )));
        }
        self.with_desc(TensorDesc {
            offset: self.desc.offset,
            ..TensorDesc::contiguous(self.dtype(), shape)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_and_spans() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
        let d = TensorDesc::contiguous(DType::F32, &[2, 3]);
        assert!(d.is_contiguous());
        assert_eq!(d.span(), 6);
        assert_eq!(d.required_bytes().unwrap(), 24);
        let t = TensorDesc {
            dtype: DType::F32,
            shape: vec![3, 2],
            strides: vec![1, 3],
            offset: 1,
        };
        assert!(!t.is_contiguous());
        assert_eq!(t.span(), 6);
        assert_eq!(t.required_bytes().unwrap(), 28);
        assert_eq!(t.offset_of_linear(1), 4);
        assert_eq!(t.offset_of_linear(2), 2);
        let e = TensorDesc::contiguous(DType::F16, &[0, 5]);
        assert_eq!(e.required_bytes().unwrap(), 0);
        let scalar = TensorDesc::contiguous(DType::I64, &[]);
        assert_eq!((scalar.numel(), scalar.span()), (1, 1));
        let bad = TensorDesc {
            dtype: DType::F32,
            shape: vec![2],
            strides: vec![],
            offset: 0,
        };
        assert!(bad
            .validate("x")
            .unwrap_err()
            .message()
            .contains("ranks must match"));
        assert!(checked_numel("x", &[usize::MAX, 2]).is_err());
    }
}

#[cfg(test)]
mod hostile_layouts {
    use super::*;
    use crate::buffer::tests::Fake;
    use crate::{Buffer, ErrorCode};
    use std::sync::Arc;

    fn view(bytes: usize) -> BufferView {
        Buffer::new(Arc::new(Fake(bytes))).whole()
    }

    fn desc(dtype: DType, shape: &[usize], strides: &[usize], offset: usize) -> TensorDesc {
        TensorDesc {
            dtype,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset,
        }
    }

    /// Layouts whose span wraps when summed or multiplied without a check: each must be refused
    /// however large the view is.
    #[test]
    fn wrapping_spans_are_refused() {
        let max = i64::MAX as usize;
        let cases = [
            desc(DType::F32, &[4, 3], &[max, 1], 0),
            desc(DType::F32, &[5, 1], &[1 << 62, 1], 0),
            desc(DType::U8, &[3, 3], &[usize::MAX / 2, usize::MAX / 2], 0),
            desc(DType::U8, &[2], &[1], usize::MAX),
            desc(DType::U8, &[2], &[usize::MAX], 0),
            desc(DType::F64, &[1 << 61], &[1], 0),
            desc(DType::U8, &[0], &[1], usize::MAX),
            desc(DType::F32, &[0, 2], &[1, 1], 1 << 62),
        ];
        for d in cases {
            let e = Tensor::new(view(1 << 20), d.clone()).unwrap_err();
            assert!(
                matches!(
                    e.code(),
                    ErrorCode::InvalidArgument | ErrorCode::OutOfBounds
                ),
                "{d:?}: {e}"
            );
            assert!(e.message().starts_with("tensor"), "{e}");
        }
    }

    #[test]
    fn every_accepted_view_lies_inside_its_buffer() {
        // An exhaustive sweep of small layouts over a 64-byte view: accepted exactly when the
        // furthest byte any element occupies is inside the view.
        let v = view(64);
        for dtype in [DType::U8, DType::F32, DType::F64] {
            for d0 in 0..4usize {
                for d1 in 0..4usize {
                    for s0 in [0usize, 1, 3, 7, 1 << 62, usize::MAX] {
                        for s1 in [0usize, 1, 2, 1 << 63] {
                            for offset in [0usize, 1, 5, 63, 64, usize::MAX - 1] {
                                let d = desc(dtype, &[d0, d1], &[s0, s1], offset);
                                let size = dtype.size_in_bytes() as u128;
                                let end = if d0 == 0 || d1 == 0 {
                                    offset as u128 * size
                                } else {
                                    (offset as u128
                                        + (d0 as u128 - 1) * s0 as u128
                                        + (d1 as u128 - 1) * s1 as u128
                                        + 1)
                                        * size
                                };
                                let ok = Tensor::new(v.clone(), d.clone()).is_ok();
                                assert_eq!(ok, end <= 64, "{d:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn views_of_views_stay_inside() {
        let t = Tensor::new(view(24), TensorDesc::contiguous(DType::F32, &[2, 3])).unwrap();
        assert!(t.narrow(1, 3, 0).is_ok());
        assert!(t.narrow(1, 2, 2).is_err());
        assert!(t.narrow(1, usize::MAX, 2).is_err());
        let b = t
            .narrow(0, 1, 1)
            .unwrap()
            .broadcast_to(&[1 << 62, 1, 3])
            .unwrap();
        assert_eq!(b.numel(), 3 << 62);
        // The broadcast has more elements than any host buffer: its transfer length is refused.
        assert_eq!(
            b.desc().host_bytes().unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
        let e = t
            .with_desc(desc(DType::F32, &[2, 3], &[3, 1], 1))
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::OutOfBounds);
        let deep = desc(DType::U8, &[1; 65], &[1; 65], 0);
        assert!(Tensor::new(view(1), deep)
            .unwrap_err()
            .message()
            .contains("at most 64"));
    }
}
