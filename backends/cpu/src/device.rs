//! The CPU backend and device.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use anyaccel_hal::{
    Backend, Buffer, Caps, DType, Device, DeviceInfo, Dialect, Error, HostKernel, Kernel,
    KernelCache, KernelSource, Queue, Result, Unavailable,
};

use crate::memory::{BlockCache, CpuMemory, ReleaseFn};
use crate::queue::CpuQueue;

/// The CPU backend: always available, one device `cpu:0`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> &str {
        "cpu"
    }

    fn probe(&self) -> Result<Vec<Arc<dyn Device>>, Unavailable> {
        let device: Arc<dyn Device> = CpuDevice::new(0)?;
        Ok(vec![device])
    }
}

/// The host as a device.
pub struct CpuDevice {
    info: DeviceInfo,
    caps: Caps,
    id: Arc<str>,
    live: Arc<AtomicUsize>,
    /// Freed small allocations, kept for reuse.
    blocks: Arc<BlockCache>,
    cache: KernelCache,
    pool: Arc<rayon::ThreadPool>,
    this: Weak<CpuDevice>,
}

fn proc_field(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.split(':').next().map(str::trim) == Some(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

impl CpuDevice {
    /// A CPU device with index `index` and a worker pool of one thread per core.
    pub fn new(index: usize) -> Result<Arc<CpuDevice>, Unavailable> {
        CpuDevice::named("cpu", index)
    }

    /// A CPU device that reports another backend name: its id is `<backend>:<index>`. For
    /// backends built on host memory (test devices, host-side plugins).
    pub fn named(backend: &str, index: usize) -> Result<Arc<CpuDevice>, Unavailable> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("anyaccel-cpu{index}-{i}"))
            .build()
            .map_err(|e| Unavailable::new(format!("cannot start the worker pool: {e}")))?;
        let memory_bytes = proc_field("/proc/meminfo", "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(isize::MAX as u64);
        let id = format!("{backend}:{index}");
        let info = DeviceInfo {
            id: id.clone(),
            backend: backend.into(),
            name: proc_field("/proc/cpuinfo", "model name")
                .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            vendor: proc_field("/proc/cpuinfo", "vendor_id")
                .unwrap_or_else(|| "unknown".to_string()),
            driver_version: env!("CARGO_PKG_VERSION").to_string(),
            memory_bytes,
            max_buffer_bytes: memory_bytes.min(isize::MAX as u64),
            max_work_group_size: 1,
            compute_units: threads as u32,
        };
        let caps = Caps {
            dtypes: DType::ALL.to_vec(),
            dialects: vec![Dialect::Host],
            native_ops: Vec::new(),
            timestamps: true,
        };
        Ok(Arc::new_cyclic(|this| CpuDevice {
            info,
            caps,
            id: id.into(),
            live: Arc::new(AtomicUsize::new(0)),
            blocks: BlockCache::new(),
            cache: KernelCache::new(),
            pool: Arc::new(pool),
            this: this.clone(),
        }))
    }

    /// The worker pool that runs host kernels.
    pub fn pool(&self) -> &Arc<rayon::ThreadPool> {
        &self.pool
    }

    /// A buffer of this device over `size` bytes of host memory at `ptr` that anyaccel did not
    /// allocate (another library's array, a DLPack tensor): no copy is made. When the last
    /// reference to the buffer goes, `release` is called once, from whichever thread drops it,
    /// to give the memory back. The buffer counts in [`Device::live_allocations`] until then.
    ///
    /// `ptr` must be a multiple of [`crate::EXTERNAL_ALIGN`] (8) when `size` is not zero;
    /// otherwise this is `InvalidArgument`, and a caller that cannot align should copy into
    /// [`Device::alloc`] memory instead. On error `release` is dropped without being called.
    ///
    /// # Safety
    /// Until `release` is called, `ptr..ptr + size` must stay valid for reads and writes, must
    /// not be freed or moved, and must not be accessed by anyone else while commands of this
    /// device that use the buffer are running.
    pub unsafe fn wrap_host_memory(
        &self,
        ptr: *mut u8,
        size: usize,
        release: ReleaseFn,
    ) -> Result<Buffer> {
        // SAFETY: the caller upholds this function's contract, which is `external`'s.
        let mem =
            unsafe { CpuMemory::external(ptr, size, release, self.id.clone(), self.live.clone()) }?;
        Ok(Buffer::new(Arc::new(mem)))
    }
}

/// A host kernel compiled for a CPU device.
pub struct CpuKernel {
    kernel: HostKernel,
    device_id: Arc<str>,
}

impl CpuKernel {
    /// The host kernel.
    pub fn host_kernel(&self) -> &HostKernel {
        &self.kernel
    }
}

impl Kernel for CpuKernel {
    fn name(&self) -> &str {
        self.kernel.name()
    }
    fn dialect(&self) -> Dialect {
        Dialect::Host
    }
    fn device_id(&self) -> &str {
        &self.device_id
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Device for CpuDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn host_addressable(&self) -> bool {
        true
    }

    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        let mem = CpuMemory::new(
            bytes,
            self.info.max_buffer_bytes as usize,
            self.id.clone(),
            self.live.clone(),
            &self.blocks,
        )?;
        Ok(Buffer::new(Arc::new(mem)))
    }

    fn create_queue(&self) -> Result<Arc<dyn Queue>> {
        let device = self
            .this
            .upgrade()
            .ok_or_else(|| Error::internal("create_queue: the CPU device is being dropped"))?;
        Ok(Arc::new(CpuQueue::new(device)?))
    }

    fn compile(&self, source: &KernelSource) -> Result<Arc<dyn Kernel>> {
        match source {
            KernelSource::Host(kernel) => Ok(Arc::new(CpuKernel {
                kernel: kernel.clone(),
                device_id: self.id.clone(),
            })),
            other => Err(Error::unsupported(format!(
                "compile: {} runs host kernels only, not {} (entry `{}`)",
                self.info.id,
                other.dialect(),
                other.entry()
            ))),
        }
    }

    fn kernel_cache(&self) -> &KernelCache {
        &self.cache
    }

    fn live_allocations(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_freed_block_is_reused_and_counts_as_live() {
        let device = CpuDevice::new(0).unwrap();
        let queue = device.create_queue().unwrap();
        for size in [
            1usize,
            100,
            4096,
            BlockCache::MAX_BLOCK,
            BlockCache::MAX_BLOCK + 1,
        ] {
            let first = device.alloc(size).unwrap();
            let addr = first.downcast::<CpuMemory>().unwrap().as_ptr() as usize;
            // New memory reads as zeros.
            let mut back = vec![0xffu8; size];
            queue.read(&first.whole(), &mut back).unwrap();
            assert!(back.iter().all(|&b| b == 0), "size {size}: not zeroed");
            queue.fill(&first.whole(), &[0xcd]).unwrap();
            queue.finish().unwrap();
            drop(first);
            assert_eq!(device.live_allocations(), 0);
            // The same class gives the block back (cached sizes), as it was left: a new
            // tensor's contents are unspecified.
            let again = device.alloc(size).unwrap();
            assert_eq!(device.live_allocations(), 1);
            queue.read(&again.whole(), &mut back).unwrap();
            if size <= BlockCache::MAX_BLOCK {
                let same = again.downcast::<CpuMemory>().unwrap().as_ptr() as usize;
                assert_eq!(same, addr, "size {size}: the freed block is reused");
                assert!(back.iter().all(|&b| b == 0xcd), "size {size}: not reused");
            }
        }
    }

    #[test]
    fn wrapped_host_memory_is_shared_and_released_once() {
        let device = CpuDevice::new(0).unwrap();
        let mut host = vec![0u64; 4]; // u64 keeps the address a multiple of 8
        let released = Arc::new(AtomicBool::new(false));
        let flag = released.clone();
        let ptr = host.as_mut_ptr() as *mut u8;
        // SAFETY: `host` outlives the buffer, and nothing touches it until the queue finished.
        let buffer = unsafe {
            device.wrap_host_memory(
                ptr,
                32,
                Box::new(move || flag.store(true, Ordering::SeqCst)),
            )
        }
        .unwrap();
        assert_eq!(device.live_allocations(), 1);
        let queue = device.create_queue().unwrap();
        queue.fill(&buffer.view(8, 8).unwrap(), &[0xab]).unwrap();
        queue.finish().unwrap();
        drop(queue);
        drop(buffer);
        assert!(released.load(Ordering::SeqCst));
        assert_eq!(device.live_allocations(), 0);
        assert_eq!(host, vec![0, u64::from_ne_bytes([0xab; 8]), 0, 0]);

        // SAFETY: the call fails before using the pointer.
        let e = unsafe { device.wrap_host_memory(ptr.wrapping_add(4), 8, Box::new(|| ())) };
        assert!(e.unwrap_err().message().contains("not a multiple of 8"));
        // SAFETY: as above.
        let e = unsafe { device.wrap_host_memory(std::ptr::null_mut(), 8, Box::new(|| ())) };
        assert!(e.unwrap_err().message().contains("pointer is null"));
        assert_eq!(device.live_allocations(), 0);
    }
}
