//! Host memory aligned for SIMD, and host memory that another owner lends (see
//! [`crate::CpuDevice::wrap_host_memory`]).

use std::alloc::Layout;
use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyaccel_hal::{DeviceMemory, Error, Result};

/// Alignment of every CPU allocation, in bytes: a cache line, and enough for AVX-512.
pub const ALIGN: usize = 64;

/// The alignment that lent host memory must have, in bytes: that of the largest element type
/// (f64, i64), so that every tensor view at a multiple of its element size is aligned for it.
pub const EXTERNAL_ALIGN: usize = 8;

/// A function that gives lent memory back to its owner; called once, when the buffer is freed.
pub type ReleaseFn = Box<dyn FnOnce() + Send>;

enum Owner {
    /// Allocated by [`CpuMemory::new`] with `Layout(size, ALIGN)`; freed on drop.
    Allocated,
    /// A block of [`BlockCache`] size class `class` (`Layout(1 << class, ALIGN)`); given back to
    /// the cache on drop.
    Cached(Arc<BlockCache>, u32),
    /// Lent by another owner; its release function runs on drop.
    External(Mutex<Option<ReleaseFn>>),
}

/// One host allocation of the CPU device.
pub struct CpuMemory {
    ptr: NonNull<u8>,
    size: usize,
    device_id: Arc<str>,
    live: Arc<AtomicUsize>,
    owner: Owner,
}

// SAFETY: the allocation is plain host memory owned by this value; the pointer is never handed
// out except as HostMem to commands that keep a reference to the buffer while they run.
unsafe impl Send for CpuMemory {}
// SAFETY: as above; `&CpuMemory` only exposes the pointer value and size.
unsafe impl Sync for CpuMemory {}

impl CpuMemory {
    /// Allocates `size` initialised bytes aligned to [`ALIGN`] (zero when the memory is new,
    /// unspecified when `cache` reuses a block), refusing more than `limit` bytes; sizes up to
    /// [`BlockCache::MAX_BLOCK`] come from (and go back to) `cache`.
    pub(crate) fn new(
        size: usize,
        limit: usize,
        device_id: Arc<str>,
        live: Arc<AtomicUsize>,
        cache: &Arc<BlockCache>,
    ) -> Result<CpuMemory> {
        let oom = || {
            Error::out_of_memory(format!(
                "alloc: {size} bytes requested on {device_id}, which has {limit} bytes of host memory"
            ))
        };
        if size > limit {
            return Err(oom());
        }
        if let Some(class) = BlockCache::class_of(size) {
            let ptr = cache.take(class).ok_or_else(oom)?;
            live.fetch_add(1, Ordering::SeqCst);
            return Ok(CpuMemory {
                ptr,
                size,
                device_id,
                live,
                owner: Owner::Cached(cache.clone(), class),
            });
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
            owner: Owner::Allocated,
        })
    }

    /// Memory lent by another owner: `size` bytes at `ptr`, given back by `release` on drop.
    ///
    /// On error `release` is dropped without being called: the memory stays the caller's.
    ///
    /// # Safety
    /// See [`crate::CpuDevice::wrap_host_memory`].
    pub(crate) unsafe fn external(
        ptr: *mut u8,
        size: usize,
        release: ReleaseFn,
        device_id: Arc<str>,
        live: Arc<AtomicUsize>,
    ) -> Result<CpuMemory> {
        let ptr = if size == 0 {
            // Never read or written; the caller's pointer may be anything, even null.
            NonNull::new(ALIGN as *mut u8)
                .ok_or_else(|| Error::internal("wrap_host_memory: null alignment"))?
        } else {
            let ptr = NonNull::new(ptr).ok_or_else(|| {
                Error::invalid_argument(format!(
                    "wrap_host_memory: pointer is null but size is {size}: expected the address of {size} bytes"
                ))
            })?;
            if !(ptr.as_ptr() as usize).is_multiple_of(EXTERNAL_ALIGN) {
                return Err(Error::invalid_argument(format!(
                    "wrap_host_memory: address {:p} is not a multiple of {EXTERNAL_ALIGN}: lent host memory must be aligned for every element type",
                    ptr.as_ptr()
                )));
            }
            ptr
        };
        live.fetch_add(1, Ordering::SeqCst);
        Ok(CpuMemory {
            ptr,
            size,
            device_id,
            live,
            owner: Owner::External(Mutex::new(Some(release))),
        })
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for CpuMemory {
    fn drop(&mut self) {
        if let Owner::External(release) = &mut self.owner {
            let release = release.get_mut().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(release) = release {
                release();
            }
        } else if let Owner::Cached(cache, class) = &self.owner {
            cache.give(*class, self.ptr);
        } else if self.size > 0 {
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

/// Freed blocks of one CPU device kept for reuse, by power-of-two size class: a small tensor's
/// allocation is then a pop from a list, not a trip through the system allocator
/// (an aligned allocation there takes its slow path) and a free. Up to [`BlockCache::KEEP`]
/// blocks a class are kept, at most about 2 x KEEP x MAX_BLOCK bytes in all; the rest are freed.
pub(crate) struct BlockCache {
    classes: Mutex<Vec<Vec<Block>>>,
}

/// A block of a size class, owned by the cache while it sits there.
struct Block(NonNull<u8>);

// SAFETY: a cached block is plain host memory that no one else references.
unsafe impl Send for Block {}

impl BlockCache {
    /// The smallest class: blocks of 1 << MIN_CLASS bytes (a cache line).
    const MIN_CLASS: u32 = 6;
    /// The largest size served from the cache; larger ones go to the system allocator, which
    /// maps fresh zero pages for them.
    pub(crate) const MAX_BLOCK: usize = 1 << 20;
    /// Blocks kept per class.
    const KEEP: usize = 16;

    pub(crate) fn new() -> Arc<BlockCache> {
        let classes = (0..=Self::MAX_BLOCK.trailing_zeros()).map(|_| Vec::new());
        Arc::new(BlockCache {
            classes: Mutex::new(classes.collect()),
        })
    }

    /// The class that serves `size` bytes, if the cache serves it.
    fn class_of(size: usize) -> Option<u32> {
        if size == 0 || size > Self::MAX_BLOCK {
            return None;
        }
        Some(
            size.next_power_of_two()
                .trailing_zeros()
                .max(Self::MIN_CLASS),
        )
    }

    fn layout(class: u32) -> Layout {
        // 1 << class <= MAX_BLOCK, a power of two at least ALIGN: always a valid layout.
        Layout::from_size_align(1 << class, ALIGN).expect("size classes are valid layouts")
    }

    /// A block of `class` (a kept one if any, else a new zeroed one), or `None` when the system
    /// allocator has no memory. Every byte of a block is initialised: zeroed when it was first
    /// allocated, written only by tensors since. A kept block is not zeroed again: a new
    /// tensor's contents are unspecified (`Tensor::empty`), as on every other device.
    fn take(&self, class: u32) -> Option<NonNull<u8>> {
        let kept = self
            .classes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(class as usize)
            .and_then(Vec::pop);
        if let Some(Block(ptr)) = kept {
            return Some(ptr);
        }
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { std::alloc::alloc_zeroed(Self::layout(class)) })
    }

    /// Takes back a block of `class` from a dropped buffer: kept, or freed when the class has
    /// enough.
    fn give(&self, class: u32, ptr: NonNull<u8>) {
        let mut classes = self.classes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = classes.get_mut(class as usize) {
            if list.len() < Self::KEEP {
                list.push(Block(ptr));
                return;
            }
        }
        drop(classes);
        // SAFETY: allocated by `take` with this class's layout, and owned by this call.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), Self::layout(class)) };
    }
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        let classes = self.classes.get_mut().unwrap_or_else(|p| p.into_inner());
        for (class, list) in classes.iter_mut().enumerate() {
            for Block(ptr) in list.drain(..) {
                // SAFETY: allocated by `take` with this class's layout; the cache owned it.
                unsafe { std::alloc::dealloc(ptr.as_ptr(), Self::layout(class as u32)) };
            }
        }
    }
}
