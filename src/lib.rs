//! # anyaccel: one accelerator layer for every device
//!
//! The crate that framework authors depend on. It re-exports the hardware layer
//! ([`hal`]), the common op set ([`ops`]) and every compiled-in backend, and builds a
//! [`Runtime`] that knows them all. It carries no tools: the command line (`anyaccel devices`,
//! `conformance`, `bench`) and the conformance suite are the `anyaccel-cli` and
//! `anyaccel-conformance` crates.
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

pub use anyaccel_hal as hal;
pub use anyaccel_hal::{
    AttrValue, Backend, Buffer, BufferView, Caps, DType, Device, DeviceInfo, Error, ErrorCode,
    Event, Kernel, KernelSource, Queue, Result, Tensor, TensorDesc, Unavailable,
};
pub use anyaccel_ops as ops;

#[cfg(feature = "cpu")]
pub use anyaccel_cpu as cpu;
#[cfg(feature = "cuda")]
pub use anyaccel_cuda as cuda;
#[cfg(feature = "opencl")]
pub use anyaccel_opencl as opencl;
#[cfg(feature = "plugin")]
pub use anyaccel_plugin as plugin;
#[cfg(feature = "vulkan")]
pub use anyaccel_vulkan as vulkan;

#[cfg(feature = "mpi")]
pub mod mpi;

/// The registry of every compiled-in backend: [`anyaccel_hal::Runtime`] with a constructor.
pub struct Runtime;

impl Runtime {
    /// A runtime with every compiled-in backend registered (probed on first use), and, with
    /// the `plugin` feature, every vendor plugin that `ANYACCEL_PLUGIN_PATH` names (files or
    /// folders, separated by `:`); a plugin that cannot be loaded is still listed, unavailable
    /// with the reason.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> hal::Runtime {
        let rt = hal::Runtime::default();
        for backend in compiled_in_backends() {
            // Names of compiled-in backends are distinct by construction.
            let _ = rt.add_backend(backend);
        }
        #[cfg(feature = "plugin")]
        for backend in anyaccel_plugin::backends_from_env() {
            // A second plugin with a taken name is left out; the first one stays.
            let _ = rt.add_backend(Arc::new(backend));
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
    #[cfg(feature = "cuda")]
    backends.push(Arc::new(anyaccel_cuda::CudaBackend));
    backends
}

/// Loads the vendor plugin library at `path` (a shared library implementing
/// `anyaccel_plugin.h`) into `rt` as the backend `plugin:<name>`, whose devices are
/// `plugin:<name>:<index>`, and returns the backend's name.
///
/// A library that cannot be used is an `Unavailable` error with the loader's reason (file not
/// found, the `dlopen` error, a missing entry symbol, an ABI major mismatch, a table too small, a
/// required function that is NULL); it is registered all the same, so that listing the backends
/// shows it with that reason. A plugin whose name is already registered is `InvalidArgument`.
#[cfg(feature = "plugin")]
pub fn load_plugin(rt: &hal::Runtime, path: impl AsRef<std::path::Path>) -> Result<String> {
    let backend = anyaccel_plugin::PluginBackend::load(path);
    let name = backend.name().to_string();
    let failure = backend.load_error().cloned();
    rt.add_backend(Arc::new(backend))?;
    match failure {
        Some(why) => Err(why.into()),
        None => Ok(name),
    }
}

/// The README's Rust example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The Rust examples of docs/multi-device.md, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/multi-device.md")]
pub struct MultiDeviceDoctests;
