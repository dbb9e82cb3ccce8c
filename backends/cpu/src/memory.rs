//! Host memory aligned for SIMD.

use std::alloc::Layout;
use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyaccel_hal::{DeviceMemory, Error, Result};

/// Alignment of every CPU allocation, in bytes: a cache line, and enough for AVX-512.
pub const ALIGN: usize = 64;

/// One host allocation of the CPU device.
pub struct CpuMemory {
    ptr: NonNull<u8>,
    size: usize,
    device_id: Arc<str>,
    live: Arc<AtomicUsize>,
}

// SAFETY: the allocation is plain host memory owned by this value; the pointer is never handed
// out except as HostMem to commands that keep a reference to the buffer while they run.
unsafe impl Send for CpuMemory {}
// SAFETY: as above; `&CpuMemory` only exposes the pointer value and size.
unsafe impl Sync for CpuMemory {}

impl CpuMemory {
    /// Allocates `size` zeroed bytes aligned to [`ALIGN`], refusing more than `limit` bytes.
    pub(crate) fn new(
        size: usize,
        limit: usize,
        device_id: Arc<str>,
        live: Arc<AtomicUsize>,
    ) -> Result<CpuMemory> {
        let oom = || {
            Error::out_of_memory(format!(
                "alloc: {size} bytes requested on {device_id}, which has {limit} bytes of host memory"
            ))
        };
        if size > limit {
            return Err(oom());
        }
        let ptr = if size == 0 {
            // A dangling pointer aligned to ALIGN: never read or written (length 0).
            NonNull::new(ALIGN as *mut u8)
                .ok_or_else(|| Error::internal("alloc: null alignment"))?
        } else {
            let layout = Layout::from_size_align(size, ALIGN).map_err(|_| oom())?;
            // SAFETY: the layout has a non-zero size. Zeroed memory keeps every byte initialised;
            // for large sizes the allocator maps fresh zero pages, so this costs nothing extra.
            let raw = unsafe { std::alloc::alloc_zeroed(layout) };
            NonNull::new(raw).ok_or_else(oom)?
        };
        live.fetch_add(1, Ordering::SeqCst);
        Ok(CpuMemory {
            ptr,
            size,
            device_id,
            live,
        })
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for CpuMemory {
    fn drop(&mut self) {
        if self.size > 0 {
            // SAFETY: allocated in `new` with exactly this layout, and freed only here.
            unsafe {
                std::alloc::dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.size, ALIGN),
                )
            };
        }
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DeviceMemory for CpuMemory {
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
