//! The tensor primitive (an anyaccel tensor and its device) and the helpers every op uses:
//! dtype mapping, host data in and out, scalars as one-element tensors, op calls that panic
//! with the op's name and anyaccel's message (Burn's op traits have no error path).

use std::sync::Arc;

use anyaccel::{AttrValue, DType, Queue, Tensor, TensorDesc};
use burn_backend::{DType as BDType, Scalar, Shape, TensorData, TensorMetadata};
use burn_std::{BoolStore, FloatDType, IntDType};

use crate::AnyaccelDevice;

/// A Burn tensor on an anyaccel device: any anyaccel layout (views share the memory).
#[derive(Clone)]
pub struct AnyaccelTensor {
    pub(crate) t: Tensor,
    pub(crate) device: AnyaccelDevice,
    /// The device's queue, held so that an op call takes no lock to find it.
    queue: Arc<dyn Queue>,
}

impl std::fmt::Debug for AnyaccelTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyaccelTensor")
            .field("t", &self.t)
            .field("device", &self.device)
            .finish()
    }
}

impl TensorMetadata for AnyaccelTensor {
    type Device = AnyaccelDevice;

    fn dtype(&self) -> BDType {
        to_burn(self.t.dtype())
    }

    fn shape(&self) -> Shape {
        // Straight into the shape's inline dimensions, no intermediate vector.
        Shape::from(self.t.shape().iter().copied())
    }

    fn rank(&self) -> usize {
        self.t.rank()
    }

    fn device(&self) -> AnyaccelDevice {
        self.device
    }

    fn can_mut(&self) -> bool {
        false
    }
}

/// Panics with the Burn op's name and the reason: the one way Burn's op traits fail.
#[track_caller]
pub(crate) fn fail(op: &str, why: impl std::fmt::Display) -> ! {
    panic!("anyaccel-burn: {op}: {why}")
}

/// The value of `r`, or a panic naming `op`.
#[track_caller]
pub(crate) fn ok<T>(op: &str, r: anyaccel::Result<T>) -> T {
    r.unwrap_or_else(|e| fail(op, e))
}

/// A Burn op that anyaccel's op set cannot express yet.
#[track_caller]
pub(crate) fn unsupported(op: &str, why: &str) -> ! {
    fail(op, format!("not supported on anyaccel: {why}"))
}

/// The Burn dtype of an anyaccel dtype.
pub(crate) fn to_burn(d: DType) -> BDType {
    match d {
        DType::F32 => BDType::F32,
        DType::F16 => BDType::F16,
        DType::BF16 => BDType::BF16,
        DType::F64 => BDType::F64,
        DType::I32 => BDType::I32,
        DType::I64 => BDType::I64,
        DType::U8 => BDType::U8,
        DType::I8 => BDType::I8,
        DType::Bool => BDType::Bool(BoolStore::Native),
    }
}

/// The anyaccel dtype of a Burn dtype, or `None` where anyaccel has none.
pub(crate) fn try_from_burn(d: BDType) -> Option<DType> {
    Some(match d {
        BDType::F32 | BDType::Flex32 => DType::F32,
        BDType::F16 => DType::F16,
        BDType::BF16 => DType::BF16,
        BDType::F64 => DType::F64,
        BDType::I32 => DType::I32,
        BDType::I64 => DType::I64,
        BDType::U8 => DType::U8,
        BDType::I8 => DType::I8,
        BDType::Bool(BoolStore::Native | BoolStore::U8) => DType::Bool,
        _ => return None,
    })
}

/// The anyaccel dtype of a Burn dtype, or a panic naming `op`.
#[track_caller]
pub(crate) fn from_burn(op: &str, d: BDType) -> DType {
    try_from_burn(d).unwrap_or_else(|| {
        unsupported(
            op,
            &format!("dtype {d:?} (anyaccel has f32, f16, bf16, f64, i64, i32, i8, u8 and bool)"),
        )
    })
}

#[track_caller]
pub(crate) fn float_dtype(op: &str, d: FloatDType) -> DType {
    from_burn(op, d.into())
}

#[track_caller]
pub(crate) fn int_dtype(op: &str, d: IntDType) -> DType {
    from_burn(op, d.into())
}

impl AnyaccelTensor {
    /// A tensor on `device` (opening it on first use).
    pub(crate) fn new(t: Tensor, device: AnyaccelDevice) -> AnyaccelTensor {
        AnyaccelTensor {
            t,
            device,
            queue: device.queue(),
        }
    }

    /// A result on this tensor's device.
    pub(crate) fn with(&self, t: Tensor) -> AnyaccelTensor {
        AnyaccelTensor {
            t,
            device: self.device,
            queue: self.queue.clone(),
        }
    }

    /// The queue of the tensor's device.
    pub(crate) fn queue(&self) -> &dyn Queue {
        &*self.queue
    }

    /// The tensor uploaded from `data` to `device`.
    #[track_caller]
    pub(crate) fn from_data(op: &str, data: TensorData, device: &AnyaccelDevice) -> AnyaccelTensor {
        let dtype = from_burn(op, data.dtype());
        let shape: Vec<usize> = data.shape().to_vec();
        let bytes = data.as_bytes();
        let expected = shape
            .iter()
            .try_fold(dtype.size_in_bytes(), |a, &d| a.checked_mul(d));
        if expected != Some(bytes.len()) {
            fail(
                op,
                format!(
                    "the data holds {} bytes but shape {shape:?} of {dtype} needs {expected:?}",
                    bytes.len()
                ),
            );
        }
        let out = AnyaccelTensor::new(
            ok(op, Tensor::empty(&*device.queue().device(), dtype, &shape)),
            *device,
        );
        if !bytes.is_empty() {
            ok(op, out.queue().write(out.t.view(), bytes));
        }
        out
    }

    /// The elements in row-major order as Burn data.
    pub(crate) fn into_data(self, op: &str) -> TensorData {
        let bytes = ok(op, self.t.to_bytes(self.queue()));
        TensorData::from_bytes_vec(bytes, self.t.shape().to_vec(), self.dtype())
    }

    /// A tensor of `shape` and `dtype` with every element `value`.
    pub(crate) fn full(
        op: &str,
        device: &AnyaccelDevice,
        dtype: DType,
        shape: &[usize],
        value: f64,
    ) -> AnyaccelTensor {
        let q = device.queue();
        AnyaccelTensor::new(
            ok(op, anyaccel::ops::fill(&*q, dtype, shape, value)),
            *device,
        )
    }

    /// `value` as a rank-0 tensor of `dtype` on this tensor's device.
    pub(crate) fn scalar(&self, op: &str, value: Scalar, dtype: DType) -> AnyaccelTensor {
        // The element's little-endian bytes, zero-padded to eight.
        let bits: u64 = match (dtype, value) {
            (DType::I64, Scalar::Int(v)) => v as u64,
            (DType::I64, Scalar::UInt(v)) => v,
            (DType::I32, Scalar::Int(v)) => v as i32 as u32 as u64,
            (DType::I32, Scalar::UInt(v)) => v as i32 as u32 as u64,
            (DType::I8, Scalar::Int(v)) => v as i8 as u8 as u64,
            (DType::U8, Scalar::Int(v)) => v as u8 as u64,
            (DType::I8 | DType::U8, Scalar::UInt(v)) => v as u8 as u64,
            (DType::Bool, s) => (scalar_f64(s) != 0.0) as u64,
            (DType::F32, s) => (scalar_f64(s) as f32).to_bits() as u64,
            (DType::F64, s) => scalar_f64(s).to_bits(),
            (DType::F16, s) => half::f16::from_f64(scalar_f64(s)).to_bits() as u64,
            (DType::BF16, s) => half::bf16::from_f64(scalar_f64(s)).to_bits() as u64,
            (d, s) => {
                // An integer dtype given a float (or bool) scalar: truncated, as Burn's elem
                // conversion does.
                let v = scalar_f64(s) as i64;
                return self.scalar(op, Scalar::Int(v), d);
            }
        };
        let opened = self.device.opened();
        let mut kept = opened.scalars.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, t)) = kept.iter().find(|(d, b, _)| *d == dtype && *b == bits) {
            return self.with(t.clone());
        }
        let q = self.queue();
        let t = ok(op, Tensor::empty(&*q.device(), dtype, &[]));
        let bytes = bits.to_le_bytes();
        ok(op, q.write(t.view(), &bytes[..dtype.size_in_bytes()]));
        if kept.len() == crate::device::Opened::SCALARS {
            kept.remove(0);
        }
        kept.push((dtype, bits, t.clone()));
        self.with(t)
    }

    /// The outputs of anyaccel op `name`, on this tensor's device.
    #[track_caller]
    pub(crate) fn call_all(
        &self,
        op: &str,
        name: &str,
        inputs: &[Option<&Tensor>],
        attrs: &[(&str, AttrValue)],
    ) -> Vec<AnyaccelTensor> {
        let out = self.run(op, name, inputs, attrs);
        out.into_iter().map(|t| self.with(t)).collect()
    }

    /// The anyaccel tensors op `name` returns. Most calls have no attributes: they pass an
    /// empty list; the others' names become the `String`s of anyaccel's list inline.
    #[track_caller]
    fn run(
        &self,
        op: &str,
        name: &str,
        inputs: &[Option<&Tensor>],
        attrs: &[(&str, AttrValue)],
    ) -> Vec<Tensor> {
        if attrs.is_empty() {
            return ok(op, anyaccel::ops::call(self.queue(), name, inputs, &[]));
        }
        let attrs: smallvec::SmallVec<[(String, AttrValue); 4]> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        ok(op, anyaccel::ops::call(self.queue(), name, inputs, &attrs))
    }

    /// The result of anyaccel op `name` with one output.
    #[track_caller]
    pub(crate) fn call(
        &self,
        op: &str,
        name: &str,
        inputs: &[Option<&Tensor>],
        attrs: &[(&str, AttrValue)],
    ) -> AnyaccelTensor {
        let mut out = self.run(op, name, inputs, attrs);
        if out.is_empty() {
            fail(op, format!("anyaccel op `{name}` returned no output"));
        }
        self.with(out.swap_remove(0))
    }

    /// Unary anyaccel op `name` of this tensor.
    #[track_caller]
    pub(crate) fn unary(&self, op: &str, name: &str) -> AnyaccelTensor {
        self.call(op, name, &[Some(&self.t)], &[])
    }

    /// Binary anyaccel op `name` of this tensor and `other` (broadcast).
    #[track_caller]
    pub(crate) fn binary(&self, op: &str, name: &str, other: &AnyaccelTensor) -> AnyaccelTensor {
        self.call(op, name, &[Some(&self.t), Some(&other.t)], &[])
    }

    /// Binary anyaccel op `name` of this tensor and `value` in its dtype.
    #[track_caller]
    pub(crate) fn binary_scalar(&self, op: &str, name: &str, value: Scalar) -> AnyaccelTensor {
        let s = self.scalar(op, value, self.t.dtype());
        self.binary(op, name, &s)
    }

    /// The tensor cast to `dtype` (itself when it has it).
    #[track_caller]
    pub(crate) fn cast(&self, op: &str, dtype: DType) -> AnyaccelTensor {
        if self.t.dtype() == dtype {
            return self.clone();
        }
        self.with(ok(op, anyaccel::ops::cast(self.queue(), &self.t, dtype)))
    }

    /// A contiguous copy (itself when already contiguous from its start).
    #[track_caller]
    pub(crate) fn contiguous(&self, op: &str) -> AnyaccelTensor {
        if self.t.desc().is_contiguous() {
            return self.clone();
        }
        self.with(ok(op, anyaccel::ops::copy(self.queue(), &self.t)))
    }

    /// The same memory with layout `desc`.
    #[track_caller]
    pub(crate) fn view(&self, op: &str, desc: TensorDesc) -> AnyaccelTensor {
        self.with(ok(op, self.t.with_desc(desc)))
    }

    pub(crate) fn dt(&self) -> DType {
        self.t.dtype()
    }

    pub(crate) fn dims(&self) -> &[usize] {
        self.t.shape()
    }
}

/// A scalar's value as f64.
pub(crate) fn scalar_f64(s: Scalar) -> f64 {
    match s {
        Scalar::Float(v) => v,
        Scalar::Int(v) => v as f64,
        Scalar::UInt(v) => v as f64,
        Scalar::Bool(v) => v as u8 as f64,
    }
}

/// An axis as an anyaccel attribute.
pub(crate) fn axis(dim: usize) -> AttrValue {
    AttrValue::Int(dim as i64)
}

/// Sizes as an anyaccel attribute.
pub(crate) fn ints(v: &[usize]) -> AttrValue {
    AttrValue::Ints(v.iter().map(|&x| x as i64).collect())
}
