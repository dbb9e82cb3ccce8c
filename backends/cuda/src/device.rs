//! The CUDA backend, its probe, and the device.

use std::any::Any;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use anyaccel_hal::{
    Backend, Buffer, Caps, DType, Device, DeviceInfo, Dialect, Error, Kernel, KernelCache,
    KernelSource, OpCall, Queue, Result, Unavailable,
};
use cudarc::driver::sys::{self, CUdevice_attribute, CUresult};

use crate::blas::Blas;
use crate::driver::{self, describe, panic_text, version_text, Context};
use crate::memory::CudaMemory;
use crate::nvrtc::{self, Arch};
use crate::queue::CudaQueue;

/// The CUDA backend: every device that the NVIDIA driver (`libcuda.so.1`, opened at run time)
/// lists, as `cuda:0`, `cuda:1`, ... numbered as CUDA numbers them (so `CUDA_VISIBLE_DEVICES`
/// applies).
#[derive(Debug, Clone, Copy, Default)]
pub struct CudaBackend;

impl Backend for CudaBackend {
    fn name(&self) -> &str {
        "cuda"
    }

    fn probe(&self) -> Result<Vec<Arc<dyn Device>>, Unavailable> {
        // A driver is foreign code: if anything under the probe panics, report it.
        catch_unwind(AssertUnwindSafe(probe_devices)).unwrap_or_else(|panic| {
            Err(Unavailable::new(format!(
                "the CUDA driver panicked while listing devices: {}",
                panic_text(&*panic)
            )))
        })
    }
}

fn probe_devices() -> Result<Vec<Arc<dyn Device>>, Unavailable> {
    driver::load()?;
    let version = version_text(driver::driver_version());
    let mut count = 0;
    // SAFETY: the driver is loaded, its symbols checked and cuInit done; valid out-pointer.
    let r = unsafe { sys::cuDeviceGetCount(&mut count) };
    if r != CUresult::CUDA_SUCCESS {
        return Err(Unavailable::new(format!(
            "cuDeviceGetCount failed: {}",
            describe(r)
        )));
    }
    if count <= 0 {
        return Err(Unavailable::new(format!(
            "the NVIDIA driver (CUDA {version}) lists no CUDA device (check CUDA_VISIBLE_DEVICES)"
        )));
    }
    let mut devices: Vec<Arc<dyn Device>> = Vec::new();
    let mut problems = Vec::new();
    for ordinal in 0..count {
        match CudaDevice::new(ordinal) {
            Ok(d) => devices.push(d),
            Err(why) => problems.push(format!("cuda:{ordinal}: {why}")),
        }
    }
    if devices.is_empty() {
        return Err(Unavailable::new(format!(
            "no usable CUDA device: {}",
            problems.join("; ")
        )));
    }
    Ok(devices)
}

/// Limits of a CUDA device that launches are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaLimits {
    /// Threads per block.
    pub max_threads_per_block: u32,
    /// Block size in x, y, z.
    pub max_block: [u32; 3],
    /// Grid size (blocks) in x, y, z.
    pub max_grid: [u32; 3],
}

/// The driver functions of peer copies, optional in the driver table.
pub(crate) const PEER_SYMBOLS: &[&str] = &[
    "cuDeviceCanAccessPeer",
    "cuCtxEnablePeerAccess",
    "cuMemcpyPeerAsync",
];

/// Whether GPU `me` reaches GPU `other`'s memory directly (two different GPUs, the driver has
/// the peer functions and says so).
pub(crate) fn can_access_peer(me: sys::CUdevice, other: sys::CUdevice) -> bool {
    if me == other || !PEER_SYMBOLS.iter().all(|s| crate::driver::has_symbol(s)) {
        return false;
    }
    let mut can = 0;
    // SAFETY: the driver is loaded (a device exists); two valid ordinals; one int written.
    let r = unsafe { sys::cuDeviceCanAccessPeer(&mut can, me, other) };
    r == sys::CUresult::CUDA_SUCCESS && can != 0
}

/// One CUDA device, with its primary context retained.
///
/// - Memory ([`crate::CudaMemory`]): `cuMemAlloc` per buffer.
/// - Queues ([`CudaQueue`]): one stream each, with page-locked staging for host transfers.
/// - Kernels ([`crate::CudaKernel`]): [`KernelSource::Cuda`] through NVRTC, to a cubin for the
///   device's own architecture (so no JIT, and a driver older than NVRTC still runs it), or, when
///   NVRTC does not know the architecture, to PTX for the newest one it knows below it;
///   [`KernelSource::Ptx`] through the driver's JIT. A compile error is `CompileFailed` with
///   NVRTC's or the JIT's log.
/// - Launch grid: `LaunchDims::global` counts threads per dimension; with `local` given, blocks
///   are that size, else 256 threads shaped after the dimensions used (`[256,1,1]`,
///   `[16,16,1]`, `[8,8,4]`, fewer when the kernel allows fewer). The grid is
///   `ceil(global / block)`, so kernels check their index against their element count.
/// - Native ops: `matmul` through cuBLAS when `libcublas` loads (see [`CudaDevice::blas_status`]).
pub struct CudaDevice {
    info: DeviceInfo,
    caps: Caps,
    id: Arc<str>,
    ctx: Arc<Context>,
    compute_capability: Arch,
    limits: CudaLimits,
    nvrtc_status: std::result::Result<String, String>,
    blas: Option<Blas>,
    blas_status: String,
    live: Arc<AtomicUsize>,
    cache: KernelCache,
    this: Weak<CudaDevice>,
}

fn attribute(
    device: sys::CUdevice,
    attribute: CUdevice_attribute,
    what: &str,
) -> Result<i32, String> {
    let mut value = 0;
    // SAFETY: the driver is loaded; `device` came from cuDeviceGet; valid out-pointer.
    let r = unsafe { sys::cuDeviceGetAttribute(&mut value, attribute, device) };
    if r == CUresult::CUDA_SUCCESS {
        Ok(value)
    } else {
        Err(format!("cannot read the device's {what}: {}", describe(r)))
    }
}

fn positive(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0).max(1)
}

impl CudaDevice {
    fn new(ordinal: i32) -> Result<Arc<CudaDevice>, String> {
        let mut device: sys::CUdevice = 0;
        // SAFETY: the driver is loaded; 0 <= ordinal < cuDeviceGetCount; valid out-pointer.
        let r = unsafe { sys::cuDeviceGet(&mut device, ordinal) };
        if r != CUresult::CUDA_SUCCESS {
            return Err(format!("cuDeviceGet failed: {}", describe(r)));
        }
        let mut name_buf = [0 as c_char; 256];
        // SAFETY: the buffer has the length given; the driver NUL-terminates the name.
        let r = unsafe { sys::cuDeviceGetName(name_buf.as_mut_ptr(), 256, device) };
        let name = if r == CUresult::CUDA_SUCCESS {
            let bytes: Vec<u8> = name_buf
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            format!("CUDA device {ordinal}")
        };
        let in_device = |why: String| format!("`{name}`: {why}");
        let mut memory_bytes = 0usize;
        // SAFETY: as above; valid out-pointer.
        let r = unsafe { sys::cuDeviceTotalMem_v2(&mut memory_bytes, device) };
        if r != CUresult::CUDA_SUCCESS {
            return Err(in_device(format!(
                "cannot read its memory size: {}",
                describe(r)
            )));
        }
        use CUdevice_attribute::*;
        let attr = |a, what: &str| attribute(device, a, what).map_err(in_device);
        let major = attr(
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
            "compute capability",
        )?;
        let minor = attr(
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
            "compute capability",
        )?;
        let sms = attr(
            CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            "multiprocessor count",
        )?;
        let threads = attr(
            CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
            "threads per block",
        )?;
        let mode = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_MODE, "compute mode")?;
        if mode == sys::CUcomputemode::CU_COMPUTEMODE_PROHIBITED as i32 {
            return Err(in_device(
                "its compute mode is `prohibited`: no process may use it (nvidia-smi -c)".into(),
            ));
        }
        let limits = CudaLimits {
            max_threads_per_block: positive(threads),
            max_block: [
                positive(attr(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X, "block size")?),
                positive(attr(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y, "block size")?),
                positive(attr(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z, "block size")?),
            ],
            max_grid: [
                positive(attr(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X, "grid size")?),
                positive(attr(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y, "grid size")?),
                positive(attr(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z, "grid size")?),
            ],
        };
        let compute_capability = Arch::new(positive(major), u32::try_from(minor).unwrap_or(0));
        let ctx = Context::retain(device)
            .map_err(|e| in_device(format!("cannot retain its primary context: {e}")))?;

        let nvrtc_status = match nvrtc::load().and_then(|()| nvrtc::version()) {
            Ok((a, b)) => Ok(format!("NVRTC {a}.{b}")),
            Err(why) => Err(why.reason),
        };
        let (blas, blas_status) = match Blas::new(ctx.clone()) {
            Ok(b) => {
                let status = format!("cuBLAS {}", b.version_text());
                (Some(b), status)
            }
            Err(why) => (None, why),
        };

        let id = format!("cuda:{ordinal}");
        let mut dialects = Vec::new();
        if nvrtc_status.is_ok() {
            dialects.push(Dialect::Cuda);
        }
        dialects.push(Dialect::Ptx);
        let info = DeviceInfo {
            id: id.clone(),
            backend: "cuda".into(),
            name,
            vendor: "NVIDIA".into(),
            driver_version: format!(
                "CUDA {} driver; compute capability {}.{}",
                version_text(driver::driver_version()),
                compute_capability.major,
                compute_capability.minor
            ),
            memory_bytes: memory_bytes as u64,
            max_buffer_bytes: memory_bytes as u64,
            max_work_group_size: limits.max_threads_per_block as u64,
            compute_units: positive(sms),
        };
        let caps = Caps {
            // Every dtype is stored; 16-bit floats compute in f32 where the kernels need it,
            // and f64 is native on every CUDA device.
            dtypes: vec![
                DType::F32,
                DType::F16,
                DType::BF16,
                DType::F64,
                DType::I32,
                DType::I64,
                DType::U8,
                DType::I8,
                DType::Bool,
            ],
            dialects,
            native_ops: if blas.is_some() {
                vec!["matmul".to_string()]
            } else {
                Vec::new()
            },
            timestamps: true,
        };
        Ok(Arc::new_cyclic(|this| CudaDevice {
            info,
            caps,
            id: id.into(),
            ctx,
            compute_capability,
            limits,
            nvrtc_status,
            blas,
            blas_status,
            live: Arc::new(AtomicUsize::new(0)),
            cache: KernelCache::new(),
            this: this.clone(),
        }))
    }

    /// The compute capability, e.g. `sm_90` for 9.0.
    pub fn compute_capability(&self) -> Arch {
        self.compute_capability
    }

    /// The launch limits.
    pub fn limits(&self) -> &CudaLimits {
        &self.limits
    }

    /// `Ok("NVRTC 12.9")` when CUDA C kernels compile, else why not (then only PTX does).
    pub fn nvrtc_status(&self) -> std::result::Result<&str, &str> {
        self.nvrtc_status.as_deref().map_err(String::as_str)
    }

    /// `cuBLAS 12.4.5` when matmul runs through cuBLAS, else why not.
    pub fn blas_status(&self) -> &str {
        &self.blas_status
    }

    /// The retained primary context.
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    pub(crate) fn blas(&self) -> Option<&Blas> {
        self.blas.as_ref()
    }

    pub(crate) fn id_arc(&self) -> &Arc<str> {
        &self.id
    }

    fn arc(&self) -> Result<Arc<CudaDevice>> {
        self.this
            .upgrade()
            .ok_or_else(|| Error::internal(format!("{}: the device is being dropped", self.id)))
    }

    /// The CUDA device handle (`CUdevice`), for code that calls the driver directly.
    pub fn raw_device(&self) -> i32 {
        self.ctx.device()
    }

    /// Makes the device's context (its primary context) current on the calling thread, for
    /// code that calls CUDA libraries directly on this device's memory and streams
    /// ([`crate::CudaMemory::device_ptr`], [`CudaQueue::raw_stream`]).
    pub fn make_current(&self) -> Result<()> {
        self.ctx.bind()
    }
}

impl Device for CudaDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn copies_from(&self, src: &dyn Device) -> bool {
        // Another GPU that this one can reach directly (NVLink or PCIe peer access).
        let Some(src) = src.as_any().downcast_ref::<CudaDevice>() else {
            return false;
        };
        can_access_peer(self.ctx.device(), src.ctx.device())
    }

    fn collectives(&self) -> Option<Arc<dyn anyaccel_hal::CollectiveLibrary>> {
        crate::nccl::Nccl::get().map(|n| n as Arc<dyn anyaccel_hal::CollectiveLibrary>)
    }

    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        let memory = CudaMemory::new(
            self.ctx.clone(),
            bytes,
            self.info.max_buffer_bytes,
            self.id.clone(),
            self.live.clone(),
        )?;
        Ok(Buffer::new(Arc::new(memory)))
    }

    fn create_queue(&self) -> Result<Arc<dyn Queue>> {
        Ok(Arc::new(CudaQueue::new(self.arc()?)?))
    }

    fn compile(&self, source: &KernelSource) -> Result<Arc<dyn Kernel>> {
        crate::program::compile(self, source)
    }

    fn kernel_cache(&self) -> &KernelCache {
        &self.cache
    }

    fn live_allocations(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn supports_native_op(&self, call: &OpCall) -> bool {
        self.blas.is_some() && crate::blas::supports(self, call)
    }

    fn execute_native_op(&self, queue: &dyn Queue, call: &OpCall) -> Result<()> {
        crate::blas::execute(self, queue, call)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
