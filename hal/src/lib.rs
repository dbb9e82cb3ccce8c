//! # anyaccel-hal: the hardware layer
//!
//! The object-safe traits that every backend implements and every op is written against:
//! [`Backend`] → [`Device`] → [`Buffer`] / [`Queue`] / [`Event`] / [`Kernel`], plus the value
//! types [`DType`], [`TensorDesc`], [`Tensor`], [`KernelSource`], the one [`Error`] type with its
//! stable [`ErrorCode`] numbers, and the [`Runtime`] registry. Start from a [`Runtime`] (the facade
//! crate `anyaccel` builds one with every compiled-in backend), pick a [`Device`], create a
//! [`Queue`], and make [`Tensor`]s.
//!
//! ## The contract
//!
//! - The layer validates every argument it is given: view bounds, lengths, device ownership,
//!   fill patterns, tensor layouts. Bad input is an [`Error`] whose message names the function,
//!   the argument, what was found and what was expected. Nothing panics on bad input.
//! - A missing or broken vendor runtime is [`Unavailable`] with the loader's own words.
//! - Queues are in order. Asynchronous failures stick to the queue and come back at the next
//!   sync with their original error.
//! - [`ErrorCode`] numbers are stable forever: the C ABI and vendor plugins return them.
//!
//! ```
//! use anyaccel_hal::{DType, TensorDesc};
//! let d = TensorDesc::contiguous(DType::F32, &[2, 3]);
//! assert_eq!(d.strides, vec![3, 1]);
//! assert_eq!(d.required_bytes().unwrap(), 24);
//! ```

pub mod balance;
mod bookkeeping;
mod buffer;
mod device;
mod dtype;
mod error;
pub mod group;
mod kernel;
pub mod layout;
mod op;
mod runtime;
mod tensor;
pub mod transfer;

#[cfg(feature = "testing")]
pub mod testing;

pub use bookkeeping::{run_detached, Bookkeeping, FailureLog, Job, Mark, Retiring};
pub use buffer::{Buffer, BufferId, BufferView, DeviceMemory};
pub use device::{
    same_device, validate, Backend, Caps, Device, DeviceInfo, Event, FailedEvent, Queue,
};
pub use dtype::{to_bytes, DType, Element};
pub use error::{Error, ErrorCode, Result, Unavailable};
pub use group::{CollectiveLibrary, Communicator, DeviceGroup, ReduceOp};
pub use kernel::{
    host_serial, run_serial, Dialect, HostArg, HostKernel, HostLaunch, HostMem, Kernel, KernelArg,
    KernelCache, KernelSource, LaunchDims,
};
pub use layout::{checked_numel, MAX_RANK};
pub use op::{AttrValue, OpCall};
pub use runtime::{BackendStatus, Runtime, DEVICES_ENV, REQUIRE_ENV};
pub use tensor::{contiguous_strides, shape_str, Tensor, TensorDesc};

pub use half::{bf16, f16};
