//! Kernels: their sources in each dialect, launch arguments, host kernels and the kernel cache.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::{BufferView, Error, Result};

/// A language a device can compile kernels from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Rust functions run on the host (the CPU backend).
    Host,
    /// OpenCL C 1.2.
    OpenClC,
    /// WGSL, turned into SPIR-V.
    Wgsl,
    /// SPIR-V modules.
    SpirV,
    /// CUDA C, compiled by NVRTC.
    Cuda,
    /// PTX assembly.
    Ptx,
    /// A vendor's own dialect, by name.
    Other(String),
}

impl Dialect {
    /// The name used in reports and `anyaccel devices`: `host`, `opencl-c`, `wgsl`, ...
    pub fn name(&self) -> &str {
        match self {
            Dialect::Host => "host",
            Dialect::OpenClC => "opencl-c",
            Dialect::Wgsl => "wgsl",
            Dialect::SpirV => "spirv",
            Dialect::Cuda => "cuda",
            Dialect::Ptx => "ptx",
            Dialect::Other(name) => name,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A host memory range handed to a host kernel: a byte range of a buffer that lives in host
/// memory, resolved by the queue that runs the kernel.
#[derive(Debug, Clone, Copy)]
pub struct HostMem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a HostMem is only a pointer and a length; the queue that makes one keeps the buffer
// alive until the kernel has returned, and the kernel's own contract (below) governs access.
unsafe impl Send for HostMem {}
// SAFETY: as above; sharing the pointer value across threads is sound, access is by contract.
unsafe impl Sync for HostMem {}

impl HostMem {
    /// A range of `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be valid for reads and writes for as long as the kernel that receives
    /// it runs, and `ptr` must not be null (a dangling, well-aligned pointer is fine when `len` is 0).
    pub unsafe fn new(ptr: *mut u8, len: usize) -> HostMem {
        HostMem { ptr, len }
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One argument of a host kernel launch.
#[derive(Debug, Clone)]
pub enum HostArg {
    /// A buffer view, resolved to host memory.
    Mem(HostMem),
    /// Plain bytes.
    Bytes(Vec<u8>),
}

/// What a host kernel receives: its arguments, and the launch grid.
pub struct HostLaunch<'a> {
    /// The arguments, in the order given to [`crate::Queue::launch`].
    pub args: &'a [HostArg],
    /// The launch grid. A host kernel has no grid of its own: `global[0]` is the launch's
    /// estimate of its work in element operations (the op layer gives one), from which the CPU
    /// queue chooses between running the kernel at once on the calling thread and entering its
    /// worker pool.
    pub dims: LaunchDims,
}

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the host kernel running on this thread must run on this thread alone (see
/// [`run_serial`]): its parallel loops then run in sequence, never in a thread pool.
pub fn host_serial() -> bool {
    SERIAL.with(|s| s.get())
}

/// Runs `f` with [`host_serial`] true on this thread, as the CPU queue does for a launch too
/// small to gain from its worker pool. The previous value comes back afterwards, also when `f`
/// unwinds.
pub fn run_serial<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

type HostFn = dyn Fn(&HostLaunch<'_>) -> Result<()> + Send + Sync;

/// A kernel written in Rust and run on the host by the CPU backend's worker pool.
///
/// The body runs inside the device's worker pool, so `rayon` parallel iterators in it use that
/// pool; or, for a small launch, on the thread that submitted it or the queue's thread with
/// [`host_serial`] true, and must then run in sequence. It must not assume that argument ranges
/// are disjoint unless the caller guaranteed it.
#[derive(Clone)]
pub struct HostKernel {
    name: std::borrow::Cow<'static, str>,
    body: Arc<HostFn>,
}

impl fmt::Debug for HostKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKernel")
            .field("name", &self.name)
            .finish()
    }
}

impl HostKernel {
    /// A host kernel with this name (a `&'static str` is held without a copy) and body.
    pub fn new(
        name: impl Into<std::borrow::Cow<'static, str>>,
        body: impl Fn(&HostLaunch<'_>) -> Result<()> + Send + Sync + 'static,
    ) -> HostKernel {
        HostKernel {
            name: name.into(),
            body: Arc::new(body),
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the body.
    pub fn run(&self, launch: &HostLaunch<'_>) -> Result<()> {
        (self.body)(launch)
    }
}

/// The source of a kernel, in one [`Dialect`].
#[derive(Debug, Clone)]
pub enum KernelSource {
    /// A host kernel.
    Host(HostKernel),
    /// OpenCL C source, with its entry point and build options (`-D` specialisations).
    OpenClC {
        /// The program source.
        source: String,
        /// The `__kernel` function to launch.
        entry: String,
        /// Build options such as `-DTILE=16`.
        options: String,
    },
    /// WGSL source and its entry point.
    Wgsl {
        /// The module source.
        source: String,
        /// The `@compute` function.
        entry: String,
    },
    /// A SPIR-V module and its entry point.
    SpirV {
        /// The module's words.
        words: Vec<u32>,
        /// The entry point.
        entry: String,
    },
    /// CUDA C source, with its entry point and NVRTC options.
    Cuda {
        /// The program source.
        source: String,
        /// The `extern "C" __global__` function.
        entry: String,
        /// NVRTC options.
        options: Vec<String>,
    },
    /// PTX and its entry point.
    Ptx {
        /// The PTX text.
        ptx: String,
        /// The `.entry` name.
        entry: String,
    },
}

impl KernelSource {
    /// The dialect of this source.
    pub fn dialect(&self) -> Dialect {
        match self {
            KernelSource::Host(_) => Dialect::Host,
            KernelSource::OpenClC { .. } => Dialect::OpenClC,
            KernelSource::Wgsl { .. } => Dialect::Wgsl,
            KernelSource::SpirV { .. } => Dialect::SpirV,
            KernelSource::Cuda { .. } => Dialect::Cuda,
            KernelSource::Ptx { .. } => Dialect::Ptx,
        }
    }

    /// The entry point's name.
    pub fn entry(&self) -> &str {
        match self {
            KernelSource::Host(k) => k.name(),
            KernelSource::OpenClC { entry, .. }
            | KernelSource::Wgsl { entry, .. }
            | KernelSource::SpirV { entry, .. }
            | KernelSource::Cuda { entry, .. }
            | KernelSource::Ptx { entry, .. } => entry,
        }
    }
}

/// A compiled kernel, ready to launch on the device that compiled it.
pub trait Kernel: Send + Sync + Any {
    /// The entry point's name.
    fn name(&self) -> &str;
    /// The dialect it was compiled from.
    fn dialect(&self) -> Dialect;
    /// The id of the device that compiled it.
    fn device_id(&self) -> &str;
    /// For the backend to recover its own type.
    fn as_any(&self) -> &dyn Any;
}

/// One argument of a kernel launch.
#[derive(Debug, Clone)]
pub enum KernelArg {
    /// A buffer view.
    Buffer(BufferView),
    /// A scalar or small struct, passed by value.
    Bytes(Vec<u8>),
}

impl KernelArg {
    /// A scalar argument.
    pub fn scalar<T: bytemuck::Pod>(value: T) -> KernelArg {
        KernelArg::Bytes(bytemuck::bytes_of(&value).to_vec())
    }
}

/// The launch grid: total work items in each dimension and, optionally, the work-group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchDims {
    /// Work items in x, y, z (each at least 1 for a non-empty launch).
    pub global: [u64; 3],
    /// Work-group size, or `None` to let the backend choose.
    pub local: Option<[u32; 3]>,
}

impl LaunchDims {
    /// A one-dimensional grid of `n` items.
    pub fn linear(n: u64) -> LaunchDims {
        LaunchDims {
            global: [n, 1, 1],
            local: None,
        }
    }
}

/// Compiled kernels of one device, keyed by kernel and specialisation: compile once, launch many.
#[derive(Default)]
pub struct KernelCache {
    // Keys are made by the op layer, not by callers; a fast hash suits their length.
    entries: Mutex<rustc_hash::FxHashMap<String, Arc<dyn Kernel>>>,
}

impl KernelCache {
    /// An empty cache.
    pub fn new() -> KernelCache {
        KernelCache::default()
    }

    /// The kernel cached under `key`, or the result of `compile`, which is cached on success.
    pub fn get_or_compile(
        &self,
        key: &str,
        compile: impl FnOnce() -> Result<Arc<dyn Kernel>>,
    ) -> Result<Arc<dyn Kernel>> {
        if let Some(k) = self.lock()?.get(key) {
            return Ok(k.clone());
        }
        // Compile outside the lock: compiles can be slow and may compile other kernels.
        let kernel = compile()?;
        Ok(self
            .lock()?
            .entry(key.to_string())
            .or_insert(kernel)
            .clone())
    }

    /// Number of cached kernels.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, rustc_hash::FxHashMap<String, Arc<dyn Kernel>>>> {
        self.entries.lock().map_err(|_| {
            Error::internal("kernel cache: a thread panicked while holding the cache lock")
        })
    }
}
