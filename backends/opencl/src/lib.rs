//! # anyaccel-opencl: the OpenCL backend
//!
//! [`OpenClBackend`] opens the OpenCL ICD loader, `libOpenCL.so.1`, when it is probed (through
//! `opencl3`'s dynamic loading: building needs no OpenCL SDK) and lists every device of every
//! platform as an [`OpenClDevice`]: `opencl:0`, `opencl:1`, ... A missing loader, or a loader
//! with no driver registered, makes the backend `Unavailable` with the loader's own words.
//!
//! - Memory: one `cl_mem` per allocation, refused above `CL_DEVICE_MAX_MEM_ALLOC_SIZE` with
//!   `OutOfMemory`. Zero-byte allocations hold no `cl_mem` (OpenCL forbids them).
//! - Queues ([`OpenClQueue`]): in order, with profiling, so that [`OpenClEvent`]s carry device
//!   timestamps. Asynchronous failures stick to the queue and come back at the next sync.
//! - Kernels ([`OpenClKernel`]): OpenCL C, built with the given options; a build error is
//!   `CompileFailed` with the compiler's log. Buffers are passed as whole buffers (the op layer
//!   passes an element offset as a scalar); a view at a non-zero offset becomes a sub-buffer
//!   where the device's alignment allows it.
//!
//! ```
//! use anyaccel_hal::Backend;
//! match anyaccel_opencl::OpenClBackend.probe() {
//!     Ok(devices) => assert!(devices[0].info().id.starts_with("opencl:")),
//!     Err(why) => assert!(!why.reason.is_empty()),
//! }
//! ```

mod cl;
mod device;
mod memory;
mod program;
mod queue;

pub use device::{OpenClBackend, OpenClDevice};
pub use memory::OpenClMemory;
pub use program::OpenClKernel;
pub use queue::{OpenClEvent, OpenClQueue};
