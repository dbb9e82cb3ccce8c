//! Tensors: a [`BufferView`] and a [`TensorDesc`] (dtype, shape, strides, offset).

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

/// Product of the dimensions, or an error naming `what` if it overflows.
pub fn checked_numel(what: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "{what}: shape {shape:?} has more elements than fit in usize"
            ))
        })
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

    /// Elements from the offset to one past the furthest element reached (0 when empty).
    pub fn span(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        1 + self
            .shape
            .iter()
            .zip(&self.strides)
            .map(|(&d, &s)| (d - 1).saturating_mul(s))
            .sum::<usize>()
    }

    /// Bytes of the view that the tensor needs: offset plus span, in bytes.
    pub fn required_bytes(&self) -> Result<usize> {
        let elems = if self.numel() == 0 {
            Some(0)
        } else {
            self.offset.checked_add(self.span())
        };
        let elems = match elems {
            Some(e) => e,
            None => {
                return Err(Error::invalid_argument(format!(
                    "tensor: offset {} plus span of shape {:?} overflows",
                    self.offset, self.shape
                )))
            }
        };
        elems
            .checked_mul(self.dtype.size_in_bytes())
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "tensor: shape {:?} needs more bytes than fit in usize",
                    self.shape
                ))
            })
    }

    /// The element offset (from the view start) of the element with this row-major linear index.
    pub fn offset_of_linear(&self, mut linear: usize) -> usize {
        let mut off = self.offset;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d == 0 {
                return off;
            }
            off += (linear % d) * s;
            linear /= d;
        }
        off
    }

    /// Checks that shape and strides have the same rank and that the element count fits.
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
        checked_numel(what, &self.shape)?;
        self.required_bytes().map_err(|e| e.context(what))?;
        Ok(())
    }
}

/// A tensor: a view of device memory and its layout. Cloning shares the memory.
#[derive(Debug, Clone)]
pub struct Tensor {
    view: BufferView,
    desc: TensorDesc,
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
        Ok(Tensor { view, desc })
    }

    /// A new contiguous tensor on `device`; its contents are unspecified.
    pub fn empty(device: &dyn Device, dtype: DType, shape: &[usize]) -> Result<Tensor> {
        let numel = checked_numel("tensor", shape)?;
        let bytes = numel.checked_mul(dtype.size_in_bytes()).ok_or_else(|| {
            Error::invalid_argument(format!(
                "tensor: shape {shape:?} of {dtype} overflows usize bytes"
            ))
        })?;
        let buffer = device.alloc(bytes)?;
        Tensor::new(buffer.whole(), TensorDesc::contiguous(dtype, shape))
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

    /// Reads the elements' bytes in row-major order. Waits for the queue.
    pub fn to_bytes(&self, queue: &dyn Queue) -> Result<Vec<u8>> {
        let size = self.desc.dtype.size_in_bytes();
        let numel = self.desc.numel();
        if numel == 0 {
            queue.finish()?;
            return Ok(Vec::new());
        }
        let start = self.desc.offset * size;
        let span = self.desc.span() * size;
        let mut raw = vec![0u8; span];
        queue.read(&self.view.sub(start, span)?, &mut raw)?;
        if self.desc.is_contiguous() {
            return Ok(raw);
        }
        let mut out = Vec::with_capacity(numel * size);
        for i in 0..numel {
            let at = (self.desc.offset_of_linear(i) - self.desc.offset) * size;
            out.extend_from_slice(&raw[at..at + size]);
        }
        Ok(out)
    }

    /// The view.
    pub fn view(&self) -> &BufferView {
        &self.view
    }

    /// The layout.
    pub fn desc(&self) -> &TensorDesc {
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
        let mut desc = self.desc.clone();
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
        let mut desc = self.desc.clone();
        desc.shape[dim] = len;
        if len > 0 {
            desc.offset += start * desc.strides[dim];
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
