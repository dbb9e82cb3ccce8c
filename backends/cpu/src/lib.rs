//! # anyaccel-cpu: the CPU backend
//!
//! The device that is always there. [`CpuBackend`] probes to one device, `cpu:0`, whose memory is
//! host memory aligned to [`ALIGN`] bytes, whose queues are in-order command streams run by a
//! thread each (so `launch` returns before the work is done, and events and `finish` are real),
//! and whose kernels are [`anyaccel_hal::HostKernel`]s run inside the device's worker pool, so
//! that `rayon` parallel iterators in a kernel use every core.
//!
//! ```
//! use anyaccel_hal::Backend;
//! let devices = anyaccel_cpu::CpuBackend.probe().unwrap();
//! assert_eq!(devices[0].info().id, "cpu:0");
//! ```

mod device;
mod memory;
mod queue;

pub use device::{CpuBackend, CpuDevice, CpuKernel};
pub use memory::{CpuMemory, ReleaseFn, ALIGN, EXTERNAL_ALIGN};
pub use queue::{CpuEvent, CpuQueue, INLINE_WORK};
