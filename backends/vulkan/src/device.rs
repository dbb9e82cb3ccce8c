//! Physical devices: what they are and can do; logical devices and the [`VulkanDevice`].

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use anyaccel_hal::{
    Buffer, Caps, DType, Device, DeviceInfo, Dialect, Error, Kernel, KernelCache, KernelSource,
    Queue, Result,
};
use ash::vk;

use crate::instance::{fixed_str, version_string, InstanceShared, MIN_API};
use crate::memory::{MemoryPolicy, VulkanMemory};
use crate::queue::VulkanQueue;

/// The limits of a Vulkan device that kernels and the op layer must respect.
#[derive(Debug, Clone, PartialEq)]
pub struct VulkanLimits {
    /// The Vulkan version the device is used at (the lower of instance and device versions).
    pub api_version: (u32, u32, u32),
    /// `maxStorageBufferRange`: the most bytes one storage-buffer binding may cover.
    pub max_storage_buffer_range: u64,
    /// `minStorageBufferOffsetAlignment`: a bound view's offset must be a multiple of it.
    pub min_storage_buffer_offset_alignment: u64,
    /// `maxPushConstantsSize`: the most bytes of scalar arguments one launch may pass.
    pub max_push_constants_size: u32,
    /// `maxMemoryAllocationSize` (Vulkan 1.1): the largest single allocation.
    pub max_memory_allocation_size: u64,
    /// `maxBufferSize` (Vulkan 1.3), or `u64::MAX` where the device does not report it.
    pub max_buffer_size: u64,
    /// `maxComputeWorkGroupInvocations`.
    pub max_compute_work_group_invocations: u32,
    /// `maxComputeWorkGroupSize`.
    pub max_compute_work_group_size: [u32; 3],
    /// `maxComputeWorkGroupCount`; larger launches are split into several dispatches.
    pub max_compute_work_group_count: [u32; 3],
    /// `maxPerStageDescriptorStorageBuffers`: the most buffer arguments of one kernel.
    pub max_per_stage_storage_buffers: u32,
    /// `maxPushDescriptors` of VK_KHR_push_descriptor, 0 where the extension is missing: a
    /// kernel with at most this many buffers has its bindings pushed into the command buffer.
    pub max_push_descriptors: u32,
    /// `timestampPeriod`: nanoseconds per timestamp tick.
    pub timestamp_period_ns: f64,
}

/// Optional features found on the device, and enabled when found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VulkanFeatures {
    /// `shaderFloat16`, `storageBuffer16BitAccess` and `uniformAndStorageBuffer16BitAccess`:
    /// f16 in storage buffers and arithmetic.
    pub float16: bool,
    /// `shaderInt64`.
    pub int64: bool,
    /// `shaderFloat64`.
    pub float64: bool,
    /// `shaderInt16`.
    pub int16: bool,
    /// `timestampComputeAndGraphics` and timestamp bits on the compute queue family.
    pub timestamps: bool,
    /// VK_KHR_push_descriptor: launches push their bindings instead of allocating and writing
    /// a descriptor set from a pool.
    pub push_descriptor: bool,
}

/// What probing found out about one physical device, before a logical device is made.
pub(crate) struct PhysicalDeviceReport {
    physical: vk::PhysicalDevice,
    name: String,
    vendor: String,
    driver: String,
    device_type: vk::PhysicalDeviceType,
    family: u32,
    limits: VulkanLimits,
    features: VulkanFeatures,
    memory: vk::PhysicalDeviceMemoryProperties,
    timestamp_valid_bits: u32,
}

/// The name of a PCI or Khronos vendor id, where known.
fn vendor_name(id: u32) -> String {
    let name = match id {
        0x1002 => "AMD",
        0x1010 => "Imagination Technologies",
        0x10DE => "NVIDIA",
        0x13B5 => "ARM",
        0x14E4 => "Broadcom",
        0x5143 => "Qualcomm",
        0x8086 => "Intel",
        0x106B => "Apple",
        0x1AE0 => "Google",
        0x1ED5 => "Moore Threads",
        0x19E5 => "Huawei",
        0x10001 => "Vivante",
        0x10002 => "VeriSilicon",
        0x10003 => "Kazan",
        0x10004 => "Codeplay",
        0x10005 => "Mesa",
        0x10006 => "PoCL",
        0x10007 => "Mobileye",
        _ => return format!("vendor 0x{id:04X}"),
    };
    name.to_string()
}

fn device_type_name(t: vk::PhysicalDeviceType) -> &'static str {
    match t {
        vk::PhysicalDeviceType::INTEGRATED_GPU => "integrated GPU",
        vk::PhysicalDeviceType::DISCRETE_GPU => "discrete GPU",
        vk::PhysicalDeviceType::VIRTUAL_GPU => "virtual GPU",
        vk::PhysicalDeviceType::CPU => "CPU",
        _ => "other",
    }
}

impl PhysicalDeviceReport {
    /// Reads what anyaccel needs to know, or says why the device cannot be used.
    pub(crate) fn read(
        instance: &InstanceShared,
        physical: vk::PhysicalDevice,
    ) -> std::result::Result<PhysicalDeviceReport, String> {
        let raw = &instance.raw;
        // SAFETY: `physical` was enumerated from this live instance.
        let base = unsafe { raw.get_physical_device_properties(physical) };
        let name = fixed_str(&base.device_name);
        let api = base.api_version.min(instance.api_version);
        if api < MIN_API {
            return Err(format!(
                "{name} supports Vulkan {} only, anyaccel needs {}",
                version_string(base.api_version),
                version_string(MIN_API)
            ));
        }
        let mut maint3 = vk::PhysicalDeviceMaintenance3Properties::default();
        let mut maint4 = vk::PhysicalDeviceMaintenance4Properties::default();
        let mut driver = vk::PhysicalDeviceDriverProperties::default();
        let mut push = vk::PhysicalDevicePushDescriptorPropertiesKHR::default();
        // SAFETY: `physical` was enumerated from this live instance. A failed query leaves the
        // optional extensions off.
        let extensions =
            unsafe { raw.enumerate_device_extension_properties(physical) }.unwrap_or_default();
        let push_descriptor = extensions
            .iter()
            .any(|e| e.extension_name_as_c_str() == Ok(ash::khr::push_descriptor::NAME));
        let mut props2 = vk::PhysicalDeviceProperties2::default()
            .push_next(&mut maint3)
            .push_next(&mut driver);
        if api >= vk::API_VERSION_1_3 {
            props2 = props2.push_next(&mut maint4);
        }
        if push_descriptor {
            props2 = props2.push_next(&mut push);
        }
        // SAFETY: the chain holds structures of Vulkan <= `api`, which both sides support.
        unsafe { raw.get_physical_device_properties2(physical, &mut props2) };
        let props = props2.properties;
        let max_buffer_size = if api >= vk::API_VERSION_1_3 {
            maint4.max_buffer_size
        } else {
            u64::MAX
        };
        let max_memory_allocation_size = maint3.max_memory_allocation_size;
        let driver_name = fixed_str(&driver.driver_name);
        let driver_info = fixed_str(&driver.driver_info);

        let mut f16i8 = vk::PhysicalDeviceShaderFloat16Int8Features::default();
        let mut s16 = vk::PhysicalDevice16BitStorageFeatures::default();
        let mut timeline = vk::PhysicalDeviceTimelineSemaphoreFeatures::default();
        let mut features2 = vk::PhysicalDeviceFeatures2::default()
            .push_next(&mut f16i8)
            .push_next(&mut s16)
            .push_next(&mut timeline);
        // SAFETY: as above; the chain holds Vulkan 1.1/1.2 structures only.
        unsafe { raw.get_physical_device_features2(physical, &mut features2) };
        let core = features2.features;
        if timeline.timeline_semaphore == vk::FALSE {
            return Err(format!("{name} has no timeline semaphores"));
        }

        // SAFETY: as above.
        let families = unsafe { raw.get_physical_device_queue_family_properties(physical) };
        let compute = |f: &vk::QueueFamilyProperties| {
            f.queue_flags.contains(vk::QueueFlags::COMPUTE) && f.queue_count > 0
        };
        // Prefer a family with timestamps, then one without graphics (a dedicated compute
        // engine), then any with compute.
        let score = |f: &vk::QueueFamilyProperties| {
            (f.timestamp_valid_bits > 0) as u32 * 2
                + !f.queue_flags.contains(vk::QueueFlags::GRAPHICS) as u32
        };
        let Some((family, family_props)) = families
            .iter()
            .enumerate()
            .filter(|(_, f)| compute(f))
            .max_by_key(|(i, f)| (score(f), std::cmp::Reverse(*i)))
        else {
            return Err(format!("{name} has no compute queue family"));
        };

        // SAFETY: as above.
        let memory = unsafe { raw.get_physical_device_memory_properties(physical) };
        let l = &props.limits;
        let limits = VulkanLimits {
            api_version: (
                vk::api_version_major(api),
                vk::api_version_minor(api),
                vk::api_version_patch(base.api_version),
            ),
            max_storage_buffer_range: l.max_storage_buffer_range as u64,
            min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment.max(1),
            max_push_constants_size: l.max_push_constants_size,
            max_memory_allocation_size,
            max_buffer_size,
            max_compute_work_group_invocations: l.max_compute_work_group_invocations,
            max_compute_work_group_size: l.max_compute_work_group_size,
            max_compute_work_group_count: l.max_compute_work_group_count,
            max_per_stage_storage_buffers: l.max_per_stage_descriptor_storage_buffers,
            max_push_descriptors: if push_descriptor {
                push.max_push_descriptors
            } else {
                0
            },
            timestamp_period_ns: l.timestamp_period as f64,
        };
        let features = VulkanFeatures {
            float16: f16i8.shader_float16 == vk::TRUE
                && s16.storage_buffer16_bit_access == vk::TRUE
                // naga declares both 16-bit storage capabilities for any f16 in a buffer.
                && s16.uniform_and_storage_buffer16_bit_access == vk::TRUE,
            int64: core.shader_int64 == vk::TRUE,
            float64: core.shader_float64 == vk::TRUE,
            int16: core.shader_int16 == vk::TRUE,
            timestamps: l.timestamp_compute_and_graphics == vk::TRUE
                && family_props.timestamp_valid_bits > 0,
            push_descriptor: push_descriptor && push.max_push_descriptors > 0,
        };
        Ok(PhysicalDeviceReport {
            physical,
            name,
            vendor: vendor_name(props.vendor_id),
            driver: format!(
                "{driver_name} {driver_info} (driver 0x{:X}, Vulkan {})",
                props.driver_version,
                version_string(props.api_version)
            ),
            device_type: props.device_type,
            family: family as u32,
            limits,
            features,
            memory,
            timestamp_valid_bits: family_props.timestamp_valid_bits,
        })
    }
}

/// The logical device and what every object made from it shares. Destroyed last.
pub(crate) struct DeviceShared {
    /// Kept alive until the device is destroyed: the device is made from it.
    pub(crate) _instance: Arc<InstanceShared>,
    pub(crate) raw: ash::Device,
    /// The compute queue; `vkQueueSubmit` on it is externally synchronised, hence the mutex.
    pub(crate) queue: Mutex<vk::Queue>,
    pub(crate) limits: VulkanLimits,
    pub(crate) features: VulkanFeatures,
    pub(crate) memory: MemoryPolicy,
    pub(crate) timestamp_mask: u64,
    pub(crate) id: Arc<str>,
    /// The queue family of `queue`.
    pub(crate) family: u32,
    /// Whether transfers may copy straight into and out of mapped user buffers.
    pub(crate) direct_host_access: AtomicBool,
    /// VK_KHR_push_descriptor's commands, where the device has the extension.
    pub(crate) push_descriptor: Option<ash::khr::push_descriptor::Device>,
    /// Whether kernels compiled from now on push their bindings (where they fit).
    pub(crate) use_push_descriptors: AtomicBool,
}

impl Drop for DeviceShared {
    fn drop(&mut self) {
        // SAFETY: every object made from the device holds an Arc to this value, so all of them
        // are gone; waiting for idle first makes sure no submitted work still runs.
        unsafe {
            let _ = self.raw.device_wait_idle();
            self.raw.destroy_device(None);
        }
    }
}

impl DeviceShared {
    /// An error for a failed Vulkan call, with the device and the call named.
    pub(crate) fn vk_error(&self, what: &str, e: vk::Result) -> Error {
        let message = format!("{}: {what} failed: {e:?} ({e})", self.id);
        match e {
            vk::Result::ERROR_OUT_OF_HOST_MEMORY | vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => {
                Error::out_of_memory(message)
            }
            vk::Result::ERROR_DEVICE_LOST => Error::device_lost(message),
            _ => Error::internal(message),
        }
    }
}

/// One Vulkan physical device with a compute queue, opened as a logical device.
pub struct VulkanDevice {
    pub(crate) shared: Arc<DeviceShared>,
    info: DeviceInfo,
    caps: Caps,
    live: Arc<AtomicUsize>,
    cache: KernelCache,
    this: Weak<VulkanDevice>,
}

impl VulkanDevice {
    pub(crate) fn new(
        instance: Arc<InstanceShared>,
        report: PhysicalDeviceReport,
        id: String,
    ) -> Result<Arc<VulkanDevice>> {
        let features = report.features;
        let mut f16i8 =
            vk::PhysicalDeviceShaderFloat16Int8Features::default().shader_float16(features.float16);
        let mut s16 = vk::PhysicalDevice16BitStorageFeatures::default()
            .storage_buffer16_bit_access(features.float16)
            .uniform_and_storage_buffer16_bit_access(features.float16);
        let mut timeline =
            vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true);
        let core = vk::PhysicalDeviceFeatures::default()
            .shader_int64(features.int64)
            .shader_float64(features.float64)
            .shader_int16(features.int16);
        let mut features2 = vk::PhysicalDeviceFeatures2::default()
            .features(core)
            .push_next(&mut f16i8)
            .push_next(&mut s16)
            .push_next(&mut timeline);
        let priorities = [1.0f32];
        let queue_info = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(report.family)
            .queue_priorities(&priorities)];
        let extensions = [ash::khr::push_descriptor::NAME.as_ptr()];
        let enabled = if features.push_descriptor {
            &extensions[..]
        } else {
            &[]
        };
        let create = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queue_info)
            .enabled_extension_names(enabled)
            .push_next(&mut features2);
        // SAFETY: the physical device belongs to the instance; the create info and its chain
        // live across the call and enable only features the device reported.
        let raw =
            unsafe { instance.raw.create_device(report.physical, &create, None) }.map_err(|e| {
                Error::unavailable(format!(
                    "{id} ({}): vkCreateDevice failed: {e:?} ({e})",
                    report.name
                ))
            })?;
        // SAFETY: queue 0 of this family was requested above.
        let queue = unsafe { raw.get_device_queue(report.family, 0) };
        let push_descriptor = features
            .push_descriptor
            .then(|| ash::khr::push_descriptor::Device::new(&instance.raw, &raw));
        let memory = MemoryPolicy::new(&report.memory, report.device_type);
        let memory_bytes = memory.device_memory_bytes();
        let limits = report.limits;
        let max_buffer_bytes = limits
            .max_memory_allocation_size
            .min(limits.max_buffer_size)
            .min(memory.largest_heap_bytes());
        let info = DeviceInfo {
            id: id.clone(),
            backend: "vulkan".into(),
            name: format!("{} ({})", report.name, device_type_name(report.device_type)),
            vendor: report.vendor,
            driver_version: report.driver,
            memory_bytes,
            max_buffer_bytes,
            max_work_group_size: limits.max_compute_work_group_invocations as u64,
            compute_units: if report.device_type == vk::PhysicalDeviceType::CPU {
                std::thread::available_parallelism()
                    .map(|n| n.get() as u32)
                    .unwrap_or(1)
            } else {
                // Core Vulkan does not report compute units.
                1
            },
        };
        let mut dtypes = vec![
            DType::F32,
            DType::I32,
            DType::U8,
            DType::I8,
            DType::Bool,
            DType::BF16,
        ];
        if features.float16 {
            dtypes.push(DType::F16);
        }
        if features.int64 {
            dtypes.push(DType::I64);
        }
        if features.float64 {
            dtypes.push(DType::F64);
        }
        let caps = Caps {
            dtypes,
            dialects: vec![Dialect::Wgsl, Dialect::SpirV],
            native_ops: Vec::new(),
            timestamps: features.timestamps,
        };
        let timestamp_mask = match report.timestamp_valid_bits {
            0 => 0,
            64.. => u64::MAX,
            bits => (1u64 << bits) - 1,
        };
        let shared = Arc::new(DeviceShared {
            _instance: instance,
            raw,
            queue: Mutex::new(queue),
            limits,
            features,
            memory,
            timestamp_mask,
            id: id.into(),
            family: report.family,
            direct_host_access: AtomicBool::new(true),
            use_push_descriptors: AtomicBool::new(push_descriptor.is_some()),
            push_descriptor,
        });
        Ok(Arc::new_cyclic(|this| VulkanDevice {
            shared,
            info,
            caps,
            live: Arc::new(AtomicUsize::new(0)),
            cache: KernelCache::new(),
            this: this.clone(),
        }))
    }

    /// The limits kernels must respect: `maxStorageBufferRange`, the offset alignment of bound
    /// views, the push-constant size, work-group limits.
    pub fn limits(&self) -> &VulkanLimits {
        &self.shared.limits
    }

    /// The optional features found and enabled.
    pub fn features(&self) -> VulkanFeatures {
        self.shared.features
    }

    /// True when buffers live in host-visible memory that transfers map directly (a CPU
    /// device such as lavapipe, or memory shared between host and device).
    pub fn host_mapped_buffers(&self) -> bool {
        self.shared.memory.prefers_mapped()
    }

    /// Lets transfers copy straight into and out of mapped buffers (the default), or makes
    /// them go through staging buffers and device copies as on a discrete GPU even where
    /// memory is mapped. Staging costs a copy; the switch is there to measure and test that
    /// path on any device. Takes effect for commands submitted afterwards.
    pub fn set_direct_host_access(&self, on: bool) {
        self.shared.direct_host_access.store(on, Ordering::SeqCst);
    }

    /// Lets kernels push their buffer bindings into the command buffer (VK_KHR_push_descriptor,
    /// the default where the device has it), or makes them allocate and write a descriptor set
    /// from a pool at every launch, as on a device without the extension. Takes effect for
    /// kernels compiled afterwards; it is there to measure and test both paths on any device.
    /// Returns whether push descriptors are now in use.
    pub fn set_push_descriptors(&self, on: bool) -> bool {
        let on = on && self.shared.push_descriptor.is_some();
        self.shared.use_push_descriptors.store(on, Ordering::SeqCst);
        on
    }

    fn arc(&self) -> Result<Arc<VulkanDevice>> {
        self.this.upgrade().ok_or_else(|| {
            Error::internal(format!("{}: the device is being dropped", self.info.id))
        })
    }
}

impl Device for VulkanDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn caps(&self) -> &Caps {
        &self.caps
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        let mem = VulkanMemory::new(&self.shared, bytes, self.live.clone())?;
        Ok(Buffer::new(Arc::new(mem)))
    }

    fn create_queue(&self) -> Result<Arc<dyn Queue>> {
        Ok(Arc::new(VulkanQueue::new(self.arc()?)?))
    }

    fn compile(&self, source: &KernelSource) -> Result<Arc<dyn Kernel>> {
        crate::pipeline::compile(&self.shared, source)
    }

    fn kernel_cache(&self) -> &KernelCache {
        &self.cache
    }

    fn live_allocations(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn host_addressable(&self) -> bool {
        // What the queues' map_host does: mapped buffers, used directly (not switched off).
        self.host_mapped_buffers() && self.shared.direct_host_access.load(Ordering::SeqCst)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
