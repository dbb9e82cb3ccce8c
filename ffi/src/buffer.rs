//! Buffers: allocations of device memory.

use std::sync::Arc;

use facade::{Buffer, Device, Result};

use crate::handle::{self, from_ptr, to_ptr, Kind};
use crate::runtime::{anyaccel_device_t, device};
use crate::{anyaccel_status, guard, guard_out};

/// An allocation on one device. Opaque.
pub struct anyaccel_buffer_t {
    _opaque: [u8; 0],
}

pub(crate) struct BufferObj {
    pub(crate) buffer: Buffer,
    pub(crate) device: Arc<dyn Device>,
    /// Memory lent read-only (a DLPack tensor flagged read-only): no command may write it.
    pub(crate) read_only: bool,
}

impl BufferObj {
    pub(crate) fn writable(&self, what: &str) -> Result<()> {
        crate::check_writable(what, self.read_only)
    }
}

pub(crate) fn buffer(b: *const anyaccel_buffer_t, what: &str) -> Result<Arc<BufferObj>> {
    handle::get(from_ptr(b), Kind::Buffer, what)
}

pub(crate) fn register_buffer(obj: BufferObj) -> Result<*mut anyaccel_buffer_t> {
    Ok(to_ptr(handle::insert(Kind::Buffer, Arc::new(obj))?))
}

/// Allocates `bytes` bytes on `dev` (zero is allowed). Too much is
/// `ANYACCEL_ERROR_OUT_OF_MEMORY`. Contents are unspecified (zero on the cpu device).
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_buffer_alloc(
    dev: *mut anyaccel_device_t,
    bytes: usize,
    out: *mut *mut anyaccel_buffer_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_buffer_alloc", "out", out, || {
            let dev = device(dev, "device")?;
            let buffer = dev.device.alloc(bytes)?;
            register_buffer(BufferObj {
                buffer,
                device: dev.device.clone(),
                read_only: false,
            })
        })
    }
}

/// Releases the caller's reference to a buffer. The memory is freed once queued commands and
/// tensors that use it are done with it. A second free is `ANYACCEL_ERROR_INVALID_ARGUMENT`.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_buffer_free(buf: *mut anyaccel_buffer_t) -> anyaccel_status {
    guard("anyaccel_buffer_free", || {
        handle::remove::<BufferObj>(from_ptr(buf), Kind::Buffer, "buffer").map(drop)
    })
}

/// The size of a buffer in bytes.
///
/// # Safety
/// `out` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_buffer_size(
    buf: *mut anyaccel_buffer_t,
    out: *mut usize,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a `size_t` by the caller's contract.
    unsafe {
        guard_out("anyaccel_buffer_size", "out", out, || {
            Ok(buffer(buf, "buffer")?.buffer.size())
        })
    }
}
