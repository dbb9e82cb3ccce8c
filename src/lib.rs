//! # anyaccel: one accelerator layer for every device
//!
//! The crate that framework authors depend on. It re-exports the hardware layer
//! ([`hal`]), the common op set ([`ops`]), the conformance suite ([`conformance`]) and every
//! compiled-in backend, and builds a [`Runtime`] that knows them all.
//!
//! Start from [`Runtime::new`] (every compiled-in backend, probed lazily), pick a device, create
//! a queue, make tensors and call ops:
//!
//! ```
//! use anyaccel::{Runtime, Tensor};
//! let rt = anyaccel::Runtime::new();
//! let device = rt.device("cpu:0").unwrap();
//! let queue = device.create_queue().unwrap();
//! let t = Tensor::from_slice(&*queue, &[1.0f32, 2.0, 3.0], &[3]).unwrap();
//! assert_eq!(t.to_vec::<f32>(&*queue).unwrap(), vec![1.0, 2.0, 3.0]);
//! ```
//!
//! Backends are cargo features (`cpu`, and each vendor backend as it is compiled in), all on by
//! default; building needs no vendor SDK, because each backend loads its runtime when probed.

use std::sync::Arc;

pub use anyaccel_conformance as conformance;
pub use anyaccel_hal as hal;
pub use anyaccel_hal::{
    AttrValue, Backend, Buffer, BufferView, Caps, DType, Device, DeviceInfo, Error, ErrorCode,
    Event, Kernel, KernelSource, Queue, Result, Tensor, TensorDesc, Unavailable,
};
pub use anyaccel_ops as ops;

#[cfg(feature = "cpu")]
pub use anyaccel_cpu as cpu;
#[cfg(feature = "opencl")]
pub use anyaccel_opencl as opencl;
#[cfg(feature = "vulkan")]
pub use anyaccel_vulkan as vulkan;

/// The registry of every compiled-in backend: [`anyaccel_hal::Runtime`] with a constructor.
pub struct Runtime;

impl Runtime {
    /// A runtime with every compiled-in backend registered (probed on first use).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> hal::Runtime {
        let rt = hal::Runtime::default();
        for backend in compiled_in_backends() {
            // Names of compiled-in backends are distinct by construction.
            let _ = rt.add_backend(backend);
        }
        rt
    }
}

/// Every backend compiled into this build, in the order they are listed and probed.
#[allow(clippy::vec_init_then_push)] // each push is behind a cargo feature
pub fn compiled_in_backends() -> Vec<Arc<dyn Backend>> {
    #[allow(unused_mut)]
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    #[cfg(feature = "cpu")]
    backends.push(Arc::new(anyaccel_cpu::CpuBackend));
    #[cfg(feature = "opencl")]
    backends.push(Arc::new(anyaccel_opencl::OpenClBackend));
    #[cfg(feature = "vulkan")]
    backends.push(Arc::new(anyaccel_vulkan::VulkanBackend));
    backends
}
