//! Device memory: one `cuMemAlloc` allocation per buffer.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyaccel_hal::{DeviceMemory, Error, ErrorCode, Result};
use cudarc::driver::sys;

use crate::driver::{check, Context};

/// One allocation of a CUDA device.
///
/// `cuMemAlloc` refuses zero bytes, so an empty allocation holds no device memory: its address
/// is 0, and commands on it do nothing. Freeing (when the last [`anyaccel_hal::Buffer`] goes)
/// first waits for all work in flight in the device's context (`cuCtxSynchronize`, which covers
/// every stream), then calls `cuMemFree`: a buffer dropped while a queue still uses it is never
/// freed under that work.
pub struct CudaMemory {
    ptr: sys::CUdeviceptr,
    size: usize,
    ctx: Arc<Context>,
    device_id: Arc<str>,
    live: Arc<AtomicUsize>,
}

impl CudaMemory {
    /// `size` bytes of device memory in `ctx`, refusing more than `limit` bytes (the device's
    /// total memory) before asking the driver.
    pub(crate) fn new(
        ctx: Arc<Context>,
        size: usize,
        limit: u64,
        device_id: Arc<str>,
        live: Arc<AtomicUsize>,
    ) -> Result<CudaMemory> {
        if size as u128 > limit as u128 {
            return Err(Error::out_of_memory(format!(
                "alloc: {size} bytes requested on {device_id}, which has {limit} bytes of memory"
            )));
        }
        let ptr = if size == 0 {
            0
        } else {
            ctx.bind()?;
            let mut ptr: sys::CUdeviceptr = 0;
            // SAFETY: the context is current; `ptr` is a valid out-pointer.
            let r = unsafe { sys::cuMemAlloc_v2(&mut ptr, size) };
            check(r, ErrorCode::OutOfMemory, || {
                format!("alloc: {size} bytes on {device_id}")
            })?;
            ptr
        };
        live.fetch_add(1, Ordering::SeqCst);
        Ok(CudaMemory {
            ptr,
            size,
            ctx,
            device_id,
            live,
        })
    }

    /// The device address of the first byte (0 for an empty allocation). Valid while `self`
    /// lives.
    pub fn device_ptr(&self) -> u64 {
        self.ptr
    }

    /// The CUDA context the memory belongs to.
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// True when the memory belongs to the CUDA context `ctx`.
    pub(crate) fn in_context(&self, ctx: &Context) -> bool {
        self.ctx.raw() == ctx.raw()
    }
}

impl DeviceMemory for CudaMemory {
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

impl Drop for CudaMemory {
    fn drop(&mut self) {
        if self.ptr != 0 {
            // A failed wait means that the context is lost; freeing is still right.
            let _ = self.ctx.synchronize();
            if self.ctx.bind().is_ok() {
                // SAFETY: an allocation of cuMemAlloc in this context, freed once, after every
                // stream of the context has finished the work that could use it.
                unsafe {
                    sys::cuMemFree_v2(self.ptr);
                }
            }
        }
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}
