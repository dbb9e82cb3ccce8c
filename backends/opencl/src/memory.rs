//! Device memory: one `cl_mem` buffer per allocation.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyaccel_hal::{DeviceMemory, Error, ErrorCode, Result};
use opencl3::memory::{create_buffer, CL_MEM_READ_WRITE};
use opencl3::types::{cl_context, cl_mem};

use crate::cl::{cl_error, null, MemHandle};

/// One allocation of an OpenCL device.
///
/// OpenCL forbids buffers of zero bytes, so an empty allocation holds no `cl_mem`: commands on
/// it do nothing, and a kernel receives a null buffer for it.
pub struct OpenClMemory {
    mem: Option<MemHandle>,
    context: cl_context,
    size: usize,
    device_id: Arc<str>,
    live: Arc<AtomicUsize>,
}

impl OpenClMemory {
    /// A `CL_MEM_READ_WRITE` buffer of `size` bytes in `context`, refusing more than `limit`
    /// (`CL_DEVICE_MAX_MEM_ALLOC_SIZE`) bytes.
    pub(crate) fn new(
        context: cl_context,
        size: usize,
        limit: u64,
        device_id: Arc<str>,
        live: Arc<AtomicUsize>,
    ) -> Result<OpenClMemory> {
        if size as u128 > limit as u128 {
            return Err(Error::out_of_memory(format!(
                "alloc: {size} bytes requested on {device_id}, but its largest single allocation \
                 (CL_DEVICE_MAX_MEM_ALLOC_SIZE) is {limit} bytes"
            )));
        }
        let mem = if size == 0 {
            None
        } else {
            // SAFETY: a plain read-write buffer with no host pointer; `context` is the device's
            // live context.
            let raw = unsafe { create_buffer(context, CL_MEM_READ_WRITE, size, null()) }.map_err(
                |code| {
                    cl_error(
                        code,
                        ErrorCode::OutOfMemory,
                        format!(
                            "alloc: {size} bytes on {device_id} (largest single allocation \
                             {limit} bytes)"
                        ),
                    )
                },
            )?;
            Some(MemHandle::from_raw(raw))
        };
        live.fetch_add(1, Ordering::SeqCst);
        Ok(OpenClMemory {
            mem,
            context,
            size,
            device_id,
            live,
        })
    }

    /// True when the memory belongs to this OpenCL context.
    pub(crate) fn in_context(&self, context: cl_context) -> bool {
        self.context == context
    }

    /// The `cl_mem`, or null for an empty allocation. Valid while `self` lives.
    pub fn raw(&self) -> cl_mem {
        self.mem
            .as_ref()
            .map_or(std::ptr::null_mut(), MemHandle::raw)
    }
}

// SAFETY: `context` is only compared, never dereferenced; the handle is Send and Sync.
unsafe impl Send for OpenClMemory {}
// SAFETY: as above.
unsafe impl Sync for OpenClMemory {}

impl Drop for OpenClMemory {
    fn drop(&mut self) {
        // OpenCL keeps the memory until the commands that use it have finished.
        self.mem = None;
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DeviceMemory for OpenClMemory {
    fn size(&self) -> usize {
        self.size
    }
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
