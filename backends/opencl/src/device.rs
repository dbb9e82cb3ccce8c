//! The OpenCL backend, its probe, and the device.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use anyaccel_hal::{
    Backend, Buffer, Caps, DType, Device, DeviceInfo, Dialect, Error, Kernel, KernelCache,
    KernelSource, Queue, Result, Unavailable,
};
use opencl3::command_queue::CL_QUEUE_PROFILING_ENABLE;
use opencl3::context::context::{create_context, CL_CONTEXT_PLATFORM};
use opencl3::device::{
    get_device_ids, CL_DEVICE_AVAILABLE, CL_DEVICE_COMPILER_AVAILABLE, CL_DEVICE_DOUBLE_FP_CONFIG,
    CL_DEVICE_EXTENSIONS, CL_DEVICE_GLOBAL_MEM_SIZE, CL_DEVICE_MAX_COMPUTE_UNITS,
    CL_DEVICE_MAX_MEM_ALLOC_SIZE, CL_DEVICE_MAX_WORK_GROUP_SIZE, CL_DEVICE_MAX_WORK_ITEM_SIZES,
    CL_DEVICE_MEM_BASE_ADDR_ALIGN, CL_DEVICE_NAME, CL_DEVICE_OPENCL_C_VERSION,
    CL_DEVICE_QUEUE_ON_HOST_PROPERTIES, CL_DEVICE_TYPE, CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_CPU,
    CL_DEVICE_VENDOR, CL_DEVICE_VERSION, CL_DRIVER_VERSION,
};
use opencl3::error_codes::{CL_DEVICE_NOT_FOUND, CL_PLATFORM_NOT_FOUND_KHR};
use opencl3::platform::platform::{get_platform_data, get_platform_ids, CL_PLATFORM_NAME};
use opencl3::types::{cl_context, cl_context_properties, cl_device_id, cl_platform_id};

use crate::cl::{code_name, device_sizes, device_text, device_u64, info_text, ContextHandle};
use crate::memory::OpenClMemory;
use crate::queue::OpenClQueue;

/// The OpenCL backend: every device of every platform that the ICD loader
/// (`libOpenCL.so.1`, opened at run time) knows, as `opencl:0`, `opencl:1`, ...
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenClBackend;

impl Backend for OpenClBackend {
    fn name(&self) -> &str {
        "opencl"
    }

    fn probe(&self) -> Result<Vec<Arc<dyn Device>>, Unavailable> {
        // A driver is foreign code: if anything under the probe panics, report it.
        catch_unwind(AssertUnwindSafe(probe_devices)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(Unavailable::new(format!(
                "the OpenCL runtime panicked while listing devices: {what}"
            )))
        })
    }
}

fn no_platform(found: &str) -> Unavailable {
    let vendors = match std::env::var("OCL_ICD_VENDORS") {
        Ok(v) => format!("the .icd files in OCL_ICD_VENDORS={v}"),
        Err(_) => "the .icd files in /etc/OpenCL/vendors".to_string(),
    };
    Unavailable::new(format!(
        "the OpenCL loader libOpenCL.so.1 found no platform ({found}): no OpenCL driver is \
         installed or registered; install one (for example pocl-opencl-icd) and check {vendors}"
    ))
}

fn platform_name(platform: cl_platform_id) -> String {
    get_platform_data(platform, CL_PLATFORM_NAME)
        .map(|b| info_text(&b))
        .unwrap_or_else(|code| format!("<platform name unreadable: {}>", code_name(code)))
}

/// Serialises device enumeration: PoCL 3.1 initialises its devices on the first
/// `clGetDeviceIDs`, and a second thread asking meanwhile is told that there are none.
static ENUMERATION: Mutex<()> = Mutex::new(());

fn probe_devices() -> Result<Vec<Arc<dyn Device>>, Unavailable> {
    let _one_at_a_time = ENUMERATION.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = cl3::load_library() {
        return Err(Unavailable::new(format!(
            "cannot load the OpenCL loader libOpenCL.so.1: {e}"
        )));
    }
    let platforms = match get_platform_ids() {
        Ok(p) if p.is_empty() => return Err(no_platform("no platform listed")),
        Ok(p) => p,
        Err(code) if code == CL_PLATFORM_NOT_FOUND_KHR => {
            return Err(no_platform(&format!(
                "clGetPlatformIDs: {}",
                code_name(code)
            )))
        }
        Err(code) => {
            return Err(Unavailable::new(format!(
                "clGetPlatformIDs failed: {}",
                code_name(code)
            )))
        }
    };
    let mut devices: Vec<Arc<dyn Device>> = Vec::new();
    let mut problems = Vec::new();
    for platform in platforms {
        let pname = platform_name(platform);
        match get_device_ids(platform, CL_DEVICE_TYPE_ALL) {
            Ok(ids) if ids.is_empty() => {
                problems.push(format!("platform `{pname}` has no devices"))
            }
            Ok(ids) => {
                for id in ids {
                    match OpenClDevice::new(devices.len(), platform, id, &pname) {
                        Ok(d) => devices.push(d),
                        Err(why) => problems.push(format!("platform `{pname}`: {why}")),
                    }
                }
            }
            Err(code) if code == CL_DEVICE_NOT_FOUND => {
                problems.push(format!("platform `{pname}` has no devices"))
            }
            Err(code) => problems.push(format!(
                "platform `{pname}`: clGetDeviceIDs failed: {}",
                code_name(code)
            )),
        }
    }
    if devices.is_empty() {
        return Err(Unavailable::new(format!(
            "no usable OpenCL device: {}",
            problems.join("; ")
        )));
    }
    Ok(devices)
}

/// One OpenCL device, with its own context.
pub struct OpenClDevice {
    info: DeviceInfo,
    caps: Caps,
    id: Arc<str>,
    device: cl_device_id,
    context: ContextHandle,
    platform_name: String,
    device_version: String,
    opencl_c_version: String,
    extensions: String,
    base_address_alignment: usize,
    max_work_item_sizes: Vec<u64>,
    compiler_available: bool,
    /// A CPU device (PoCL): its buffers are host memory.
    host_memory: bool,
    live: Arc<AtomicUsize>,
    cache: KernelCache,
    this: Weak<OpenClDevice>,
}

// SAFETY: `device` is a root device id, valid for the life of the process and usable from any
// thread; every other field is Send. OpenCL API calls are thread-safe (clSetKernelArg aside,
// which `program.rs` guards with a mutex).
unsafe impl Send for OpenClDevice {}
// SAFETY: as above; shared access only reads the fields and makes thread-safe OpenCL calls.
unsafe impl Sync for OpenClDevice {}

impl OpenClDevice {
    fn new(
        index: usize,
        platform: cl_platform_id,
        device: cl_device_id,
        platform_name: &str,
    ) -> Result<Arc<OpenClDevice>, String> {
        let text = |param, what: &str| {
            device_text(device, param)
                .map_err(|code| format!("cannot read the device's {what}: {}", code_name(code)))
        };
        let int = |param, what: &str| {
            device_u64(device, param)
                .map_err(|code| format!("cannot read the device's {what}: {}", code_name(code)))
        };
        let name = text(CL_DEVICE_NAME, "name")?;
        let in_device = |why: String| format!("device `{name}`: {why}");
        let vendor = text(CL_DEVICE_VENDOR, "vendor").map_err(in_device)?;
        let driver_version = text(CL_DRIVER_VERSION, "driver version").map_err(in_device)?;
        let device_version = text(CL_DEVICE_VERSION, "version").map_err(in_device)?;
        let opencl_c_version = device_text(device, CL_DEVICE_OPENCL_C_VERSION).unwrap_or_default();
        let extensions = device_text(device, CL_DEVICE_EXTENSIONS).unwrap_or_default();
        let memory_bytes =
            int(CL_DEVICE_GLOBAL_MEM_SIZE, "global memory size").map_err(in_device)?;
        let max_buffer_bytes =
            int(CL_DEVICE_MAX_MEM_ALLOC_SIZE, "largest allocation").map_err(in_device)?;
        let max_work_group_size =
            int(CL_DEVICE_MAX_WORK_GROUP_SIZE, "largest work-group").map_err(in_device)?;
        let compute_units = int(CL_DEVICE_MAX_COMPUTE_UNITS, "compute units").map_err(in_device)?;
        let align_bits =
            int(CL_DEVICE_MEM_BASE_ADDR_ALIGN, "base address alignment").map_err(in_device)?;
        let max_work_item_sizes =
            device_sizes(device, CL_DEVICE_MAX_WORK_ITEM_SIZES).map_err(|code| {
                in_device(format!(
                    "cannot read the work-item sizes: {}",
                    code_name(code)
                ))
            })?;
        // A CPU device's buffers are host memory: a map hands them to the host without a copy.
        let host_memory = device_u64(device, CL_DEVICE_TYPE).unwrap_or(0) & CL_DEVICE_TYPE_CPU != 0;
        let available = device_u64(device, CL_DEVICE_AVAILABLE).unwrap_or(1) != 0;
        if !available {
            return Err(in_device("the driver reports it as not available".into()));
        }
        let compiler_available = device_u64(device, CL_DEVICE_COMPILER_AVAILABLE).unwrap_or(1) != 0;
        // Devices without doubles may answer 0 or refuse the query: both mean no f64.
        let fp64 = extensions.split_whitespace().any(|e| e == "cl_khr_fp64")
            || device_u64(device, CL_DEVICE_DOUBLE_FP_CONFIG).unwrap_or(0) != 0;
        let profiling = device_u64(device, CL_DEVICE_QUEUE_ON_HOST_PROPERTIES).unwrap_or(0)
            & CL_QUEUE_PROFILING_ENABLE
            != 0;

        let properties: [cl_context_properties; 3] =
            [CL_CONTEXT_PLATFORM, platform as cl_context_properties, 0];
        let context = create_context(&[device], properties.as_ptr(), None, crate::cl::null())
            .map_err(|code| in_device(format!("clCreateContext failed: {}", code_name(code))))?;
        let context = ContextHandle::from_raw(context);

        let id = format!("opencl:{index}");
        let mut dtypes = vec![DType::F32, DType::F16, DType::BF16];
        if fp64 {
            dtypes.push(DType::F64);
        }
        dtypes.extend([DType::I32, DType::I64, DType::U8, DType::I8, DType::Bool]);
        let info = DeviceInfo {
            id: id.clone(),
            backend: "opencl".into(),
            name,
            vendor,
            driver_version,
            memory_bytes,
            max_buffer_bytes,
            max_work_group_size,
            compute_units: u32::try_from(compute_units).unwrap_or(u32::MAX),
        };
        let caps = Caps {
            dtypes,
            dialects: if compiler_available {
                vec![Dialect::OpenClC]
            } else {
                Vec::new()
            },
            native_ops: Vec::new(),
            timestamps: profiling,
        };
        Ok(Arc::new_cyclic(|this| OpenClDevice {
            info,
            caps,
            id: id.into(),
            device,
            context,
            platform_name: platform_name.to_string(),
            device_version,
            opencl_c_version,
            extensions,
            base_address_alignment: usize::try_from(align_bits / 8).unwrap_or(1).max(1),
            max_work_item_sizes,
            compiler_available,
            host_memory,
            live: Arc::new(AtomicUsize::new(0)),
            cache: KernelCache::new(),
            this: this.clone(),
        }))
    }

    /// The name of the platform (the driver) the device belongs to, e.g.
    /// `Portable Computing Language`.
    pub fn platform_name(&self) -> &str {
        &self.platform_name
    }

    /// `CL_DEVICE_VERSION`, e.g. `OpenCL 3.0 PoCL ...`.
    pub fn device_version(&self) -> &str {
        &self.device_version
    }

    /// `CL_DEVICE_OPENCL_C_VERSION`, e.g. `OpenCL C 1.2 PoCL`.
    pub fn opencl_c_version(&self) -> &str {
        &self.opencl_c_version
    }

    /// The device's extensions, separated by spaces.
    pub fn extensions(&self) -> &str {
        &self.extensions
    }

    /// True when the device lists this extension, e.g. `cl_khr_fp16`.
    pub fn has_extension(&self, name: &str) -> bool {
        self.extensions.split_whitespace().any(|e| e == name)
    }

    /// `CL_DEVICE_MEM_BASE_ADDR_ALIGN` in bytes: a buffer view passed to a kernel must start at
    /// a multiple of it (see [`crate::OpenClQueue`]).
    pub fn base_address_alignment(&self) -> usize {
        self.base_address_alignment
    }

    /// `CL_DEVICE_MAX_WORK_ITEM_SIZES`: the largest work-group in each dimension.
    pub fn max_work_item_sizes(&self) -> &[u64] {
        &self.max_work_item_sizes
    }

    pub(crate) fn raw(&self) -> cl_device_id {
        self.device
    }

    pub(crate) fn context(&self) -> cl_context {
        self.context.raw()
    }

    pub(crate) fn compiler_available(&self) -> bool {
        self.compiler_available
    }

    pub(crate) fn id_arc(&self) -> &Arc<str> {
        &self.id
    }

    fn arc(&self) -> Result<Arc<OpenClDevice>> {
        self.this
            .upgrade()
            .ok_or_else(|| Error::internal(format!("{}: the device is being dropped", self.id)))
    }
}

impl Device for OpenClDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        let mem = OpenClMemory::new(
            self.context.raw(),
            bytes,
            self.info.max_buffer_bytes,
            self.id.clone(),
            self.live.clone(),
        )?;
        Ok(Buffer::new(Arc::new(mem)))
    }

    fn create_queue(&self) -> Result<Arc<dyn Queue>> {
        Ok(Arc::new(OpenClQueue::new(self.arc()?)?))
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

    fn host_addressable(&self) -> bool {
        self.host_memory
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
