//! # anyaccel-burn: Burn on every anyaccel device
//!
//! [`Anyaccel`] is a [Burn](https://burn.dev) backend (Burn 0.22.1) whose tensors live on an
//! anyaccel device chosen at run time: the CPU, OpenCL, Vulkan, CUDA or a vendor's plugin.
//! Every op runs as anyaccel ops on that device; nothing is computed on the host.
//!
//! ```
//! use anyaccel_burn::{Anyaccel, AnyaccelDevice};
//! use burn_backend::{Backend, TensorData, TensorMetadata};
//! use burn_backend::ops::FloatTensorOps;
//!
//! let device = AnyaccelDevice::new("cpu:0");
//! let a = Anyaccel::float_from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [3]), &device);
//! let b = Anyaccel::float_mul_scalar(a, 2.0f64.into());
//! let data = burn_backend::read_sync(Anyaccel::float_into_data(b)).unwrap();
//! assert_eq!(data.try_into_vec::<f32>().unwrap(), vec![2.0, 4.0, 6.0]);
//! ```
//!
//! Defaults: f32 floats, i64 ints, one-byte bools. Ops that anyaccel's op set cannot express
//! panic with a message naming the op (Burn's op traits have no error path); the crate's
//! README lists them.

mod activation;
mod boolean;
mod common;
mod device;
mod float;
mod int;
mod module;
mod qtensor;
mod tensor;

use burn_backend::ops::TransactionOps;
use burn_backend::{Backend, BackendTypes, DTypeUsage, DTypeUsageSet, ExecutionError};

pub use device::AnyaccelDevice;
pub use qtensor::AnyaccelQTensor;
pub use tensor::AnyaccelTensor;

/// The Burn backend on anyaccel.
#[derive(Clone, Copy, Debug, Default)]
pub struct Anyaccel;

impl BackendTypes for Anyaccel {
    type Device = AnyaccelDevice;
    type FloatTensorPrimitive = AnyaccelTensor;
    type IntTensorPrimitive = AnyaccelTensor;
    type BoolTensorPrimitive = AnyaccelTensor;
    type QuantizedTensorPrimitive = AnyaccelQTensor;
    type GraphPrimitive = burn_backend::GraphUnsupported;
}

impl Backend for Anyaccel {
    fn name(device: &Self::Device) -> String {
        format!("anyaccel<{}>", device.id())
    }

    fn seed(device: &Self::Device, seed: u64) {
        device.seed(seed);
    }

    fn device_count(_type_id: u16) -> usize {
        AnyaccelDevice::count()
    }

    fn dtype_usage(device: &Self::Device, dtype: burn_backend::DType) -> DTypeUsageSet {
        match tensor::try_from_burn(dtype) {
            Some(d) if device.has_dtype(d) => DTypeUsage::Storage | DTypeUsage::Arithmetic,
            _ => DTypeUsageSet::empty(),
        }
    }

    fn flush(_device: &Self::Device) -> Result<(), ExecutionError> {
        Ok(())
    }

    fn sync(device: &Self::Device) -> Result<(), ExecutionError> {
        device
            .queue()
            .finish()
            .map_err(|e| ExecutionError::Generic {
                reason: format!("anyaccel-burn: sync on {}: {e}", device.id()),
                backtrace: burn_backend::BackTrace::capture(),
            })
    }
}

impl TransactionOps<Self> for Anyaccel {}
impl burn_backend::distributed::DistributedOps<Self> for Anyaccel {}
