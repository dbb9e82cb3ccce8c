//! # anyaccel-cuda: the CUDA backend
//!
//! NVIDIA GPUs through the CUDA driver API, on [cudarc](https://docs.rs/cudarc) with dynamic
//! loading: building needs no CUDA toolkit, and each NVIDIA library is opened when first
//! needed. [`CudaBackend`] opens `libcuda.so.1`, checks that it has every function this crate
//! calls (cudarc would panic on a missing one), calls `cuInit`, and lists each device as a
//! [`CudaDevice`] `cuda:0`, `cuda:1`, ... No driver library is [`anyaccel_hal::Unavailable`]
//! naming `libcuda.so.1` and the dynamic linker's error; a driver without a GPU is
//! `Unavailable` with `cuInit`'s error. Nothing here panics on a machine without CUDA.
//!
//! - **Contexts**: each device retains its primary context, the one the CUDA runtime and so
//!   cuBLAS use, and makes it current on whatever thread calls in.
//! - **Memory** ([`CudaMemory`]): `cuMemAlloc` per buffer; live allocations are counted.
//! - **Queues** ([`CudaQueue`]): one non-blocking stream each, in order. Host transfers go
//!   through page-locked staging memory, so that copies are asynchronous; fills are
//!   `cuMemsetD8/D16/D32Async` at any offset. Events ([`CudaEvent`]) are CUDA events with
//!   timing. Asynchronous failures stick to the queue and come back at the next sync.
//! - **Kernels** ([`CudaKernel`]): CUDA C compiled by NVRTC ([`nvrtc`]) for the device's
//!   compute capability, or PTX. A [`anyaccel_hal::KernelArg::Buffer`] becomes the device
//!   address of the view's first byte; [`anyaccel_hal::KernelArg::Bytes`] a by-value parameter.
//! - **Native ops**: `matmul` in f32, f16 and bf16 through cuBLAS with f32 accumulation, when
//!   `libcublas.so.12` loads; otherwise the op layer's portable kernel runs.
//!
//! Libraries are found by the dynamic linker: `libcuda.so.1` comes with the NVIDIA driver;
//! `libnvrtc.so.12` and `libcublas.so.12` with the CUDA toolkit or the PyPI wheels
//! `nvidia-cuda-nvrtc-cu12` and `nvidia-cublas-cu12` (put their `lib` folders on
//! `LD_LIBRARY_PATH`).
//!
//! ```
//! use anyaccel_hal::Backend;
//! match anyaccel_cuda::CudaBackend.probe() {
//!     Ok(devices) => assert!(devices[0].info().id.starts_with("cuda:")),
//!     Err(why) => assert!(why.reason.contains("libcuda") || why.reason.contains("cu")),
//! }
//! ```

mod blas;
mod device;
mod driver;
mod memory;
mod nccl;
pub mod nvrtc;
mod program;
mod queue;

pub use device::{CudaBackend, CudaDevice, CudaLimits};
pub use driver::{DRIVER_SYMBOLS, LIBCUDA};
pub use memory::CudaMemory;
pub use program::CudaKernel;
pub use queue::{CudaEvent, CudaQueue, STAGING_BLOCK};
