//! The raw `ash` peer of `anyaccel bench`: the tiny kernel that anyaccel launches on its Vulkan
//! devices (`kernels/tiny_add.wgsl`, c = a + b), turned into SPIR-V by naga and dispatched with
//! plain Vulkan calls and no anyaccel code, so that the benchmark can report anyaccel's own
//! overhead as a ratio.
//!
//! Everything is made once in [`RawVulkan::new`]: the instance and logical device, three storage
//! buffers in persistently mapped host-visible, host-coherent memory, the compute pipeline, its
//! descriptor set, one command buffer and one fence. One [`RawVulkan::dispatch`] then does what
//! anyaccel does per launch: `vkResetCommandBuffer`; record (bind pipeline, bind descriptor set,
//! push constant `n`, `vkCmdDispatch` of ceil(n / 64) groups, a barrier that makes the shader's
//! writes visible to the host); `vkQueueSubmit` with the fence; `vkWaitForFences`;
//! `vkResetFences`. The command buffer is re-recorded every time on purpose, because anyaccel
//! records each command as it is submitted.

use ash::vk;

/// The kernel, shared with anyaccel's own launch of it.
const WGSL: &str = include_str!("kernels/tiny_add.wgsl");
/// Its entry point.
const ENTRY: &std::ffi::CStr = c"tiny_add";
/// Its `@workgroup_size`.
const WORKGROUP_SIZE: u32 = 64;
/// How long [`RawVulkan::dispatch`] waits for the fence, in nanoseconds (10 s).
const FENCE_TIMEOUT_NS: u64 = 10_000_000_000;

/// The error of a failed Vulkan call, in this peer's words.
fn failed(call: &'static str) -> impl Fn(vk::Result) -> String {
    move |result| format!("raw ash: {call} failed: {result:?}")
}

/// The tiny kernel, dispatched through plain `ash` on one Vulkan device.
pub struct RawVulkan {
    name: String,
    n: u32,
    groups: u32,
    /// True after a fence wait timed out: the last submission may still be running.
    pending: bool,
    /// Keeps the loader loaded until [`Drop`] has destroyed the instance. This and the two
    /// tables below are boxed because ash's function tables take about 2 KB, and bench keeps
    /// this peer in an enum beside much smaller ones.
    _entry: Box<ash::Entry>,
    instance: Box<ash::Instance>,
    device: Box<ash::Device>,
    queue: vk::Queue,
    buffers: [vk::Buffer; 3],
    memory: [vk::DeviceMemory; 3],
    /// The mapped memory of a, b and c, each of `n` f32s; null until mapped.
    mapped: [*mut f32; 3],
    module: vk::ShaderModule,
    set_layout: vk::DescriptorSetLayout,
    pipeline_layout: vk::PipelineLayout,
    pipeline: vk::Pipeline,
    descriptor_pool: vk::DescriptorPool,
    descriptor_set: vk::DescriptorSet,
    command_pool: vk::CommandPool,
    command_buffer: vk::CommandBuffer,
    fence: vk::Fence,
}

impl RawVulkan {
    /// Opens libvulkan.so.1 with `ash::Entry::load()`, picks the first physical device whose
    /// `deviceName` equals `device_name` and that has a compute queue family, creates a logical
    /// device (Vulkan 1.2), three storage buffers of `a.len()` f32s each in persistently mapped
    /// host-visible, host-coherent memory, writes `a` and `b` (and zeros to c), and builds the
    /// pipeline, its descriptor set, a command pool with one primary command buffer and a fence.
    pub fn new(device_name: &str, a: &[f32], b: &[f32]) -> Result<RawVulkan, String> {
        if a.is_empty() || a.len() != b.len() {
            return Err(format!(
                "raw ash: a has {} elements and b has {}, expected the same number, at least 1",
                a.len(),
                b.len()
            ));
        }
        let n = u32::try_from(a.len()).map_err(|_| {
            format!(
                "raw ash: a has {} elements, expected at most {} (n is a u32 push constant)",
                a.len(),
                u32::MAX
            )
        })?;
        let words = wgsl_to_spirv()?;
        // SAFETY: loading the system's Vulkan loader runs its initialisers; it is the library
        // that every Vulkan program loads, and `_entry` keeps it loaded while it is in use.
        let entry = unsafe { ash::Entry::load() }
            .map_err(|e| format!("raw ash: loading the Vulkan loader failed: {e}"))?;
        let instance = create_instance(&entry)?;
        let picked = pick_device(&instance, device_name);
        let (physical, family) = match picked {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: the instance was made above and nothing made from it remains.
                unsafe { instance.destroy_instance(None) };
                return Err(e);
            }
        };
        let priorities = [1.0];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&priorities)];
        let info = vk::DeviceCreateInfo::default().queue_create_infos(&queues);
        // SAFETY: `physical` came from this instance and `family` is one of its queue families.
        let device = match unsafe { instance.create_device(physical, &info, None) } {
            Ok(d) => d,
            Err(e) => {
                // SAFETY: as above, nothing made from the instance remains.
                unsafe { instance.destroy_instance(None) };
                return Err(failed("vkCreateDevice")(e));
            }
        };
        // SAFETY: the device was created with one queue of this family.
        let queue = unsafe { device.get_device_queue(family, 0) };
        // From here on `Drop` cleans up whatever was made: destroying a null handle is a no-op.
        let mut raw = RawVulkan {
            name: device_name.to_string(),
            n,
            groups: n.div_ceil(WORKGROUP_SIZE),
            pending: false,
            _entry: Box::new(entry),
            instance: Box::new(instance),
            device: Box::new(device),
            queue,
            buffers: [vk::Buffer::null(); 3],
            memory: [vk::DeviceMemory::null(); 3],
            mapped: [std::ptr::null_mut(); 3],
            module: vk::ShaderModule::null(),
            set_layout: vk::DescriptorSetLayout::null(),
            pipeline_layout: vk::PipelineLayout::null(),
            pipeline: vk::Pipeline::null(),
            descriptor_pool: vk::DescriptorPool::null(),
            descriptor_set: vk::DescriptorSet::null(),
            command_pool: vk::CommandPool::null(),
            command_buffer: vk::CommandBuffer::null(),
            fence: vk::Fence::null(),
        };
        raw.build(physical, family, &words, a, b)?;
        Ok(raw)
    }

    /// One line for the report: the device and what one dispatch contains.
    pub fn description(&self) -> String {
        format!(
            "raw ash on {}: per dispatch vkResetCommandBuffer, record (bind pipeline, descriptor \
             set, push constants, vkCmdDispatch), vkQueueSubmit with a fence, vkWaitForFences, \
             vkResetFences",
            self.name
        )
    }

    /// One dispatch, then a wait for it: reset and record the command buffer (bind pipeline,
    /// bind descriptor set, push constant n, dispatch ceil(n / 64) groups, a barrier to the
    /// host), `vkQueueSubmit` with the fence, `vkWaitForFences` (10 s at most), `vkResetFences`.
    pub fn dispatch(&mut self) -> Result<(), String> {
        if self.pending {
            self.wait()?;
        }
        let (d, cmd) = (&self.device, self.command_buffer);
        // SAFETY: the command buffer's pool allows resets and no submission of it is pending
        // (the fence of the last one was waited for).
        unsafe { d.reset_command_buffer(cmd, vk::CommandBufferResetFlags::empty()) }
            .map_err(failed("vkResetCommandBuffer"))?;
        let begin = vk::CommandBufferBeginInfo::default()
            .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: the command buffer was just reset, so it is in the initial state.
        unsafe { d.begin_command_buffer(cmd, &begin) }.map_err(failed("vkBeginCommandBuffer"))?;
        let to_host = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ)];
        // SAFETY: the command buffer is recording; the pipeline, its layout and the descriptor
        // set (which refers to the three live buffers) belong to this device; the push constant
        // range is the 4 bytes of `n` that the layout declares.
        unsafe {
            let bind = vk::PipelineBindPoint::COMPUTE;
            d.cmd_bind_pipeline(cmd, bind, self.pipeline);
            d.cmd_bind_descriptor_sets(
                cmd,
                bind,
                self.pipeline_layout,
                0,
                &[self.descriptor_set],
                &[],
            );
            let stage = vk::ShaderStageFlags::COMPUTE;
            d.cmd_push_constants(cmd, self.pipeline_layout, stage, 0, &self.n.to_ne_bytes());
            d.cmd_dispatch(cmd, self.groups, 1, 1);
            d.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &to_host,
                &[],
                &[],
            );
        }
        // SAFETY: the command buffer is recording.
        unsafe { d.end_command_buffer(cmd) }.map_err(failed("vkEndCommandBuffer"))?;
        let cmds = [cmd];
        let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
        // SAFETY: the command buffer is executable, the fence is unsignalled and unused, and the
        // queue is used from this thread only (`&mut self`).
        unsafe { d.queue_submit(self.queue, &submit, self.fence) }
            .map_err(failed("vkQueueSubmit"))?;
        self.pending = true;
        self.wait()
    }

    /// Reads c back from its mapped memory.
    pub fn read_c(&self) -> Result<Vec<f32>, String> {
        if self.pending {
            return Err(
                "raw ash: read_c: the last dispatch has not completed (its fence wait timed out), \
                 expected a completed dispatch"
                    .to_string(),
            );
        }
        // SAFETY: `mapped[2]` is c's mapping of `n` f32s (made in `build`, which succeeded), no
        // work on the device is pending, and the dispatch's barrier made its writes visible.
        let c = unsafe { std::slice::from_raw_parts(self.mapped[2], self.n as usize) };
        Ok(c.to_vec())
    }

    /// Waits for the fence of the last submission and resets it.
    fn wait(&mut self) -> Result<(), String> {
        let fences = [self.fence];
        // SAFETY: the fence belongs to this device.
        match unsafe { self.device.wait_for_fences(&fences, true, FENCE_TIMEOUT_NS) } {
            Ok(()) => {}
            Err(vk::Result::TIMEOUT) => {
                return Err(format!(
                    "raw ash: vkWaitForFences timed out after {} s: the tiny_add dispatch on {} \
                     did not complete",
                    FENCE_TIMEOUT_NS / 1_000_000_000,
                    self.name
                ))
            }
            Err(e) => return Err(failed("vkWaitForFences")(e)),
        }
        // SAFETY: the fence is signalled, so no pending submission uses it.
        unsafe { self.device.reset_fences(&fences) }.map_err(failed("vkResetFences"))?;
        // Only now: a fence left signalled by a failed reset must not be submitted again.
        self.pending = false;
        Ok(())
    }

    /// Makes the buffers, pipeline, descriptor set, command buffer and fence. On an error what
    /// was made so far stays in `self` for `Drop`.
    fn build(
        &mut self,
        physical: vk::PhysicalDevice,
        family: u32,
        words: &[u32],
        a: &[f32],
        b: &[f32],
    ) -> Result<(), String> {
        // SAFETY: `physical` came from this instance.
        let props = unsafe { self.instance.get_physical_device_properties(physical) };
        let max_groups = props.limits.max_compute_work_group_count[0];
        if self.groups > max_groups {
            return Err(format!(
                "raw ash: n = {} needs {} work groups of {WORKGROUP_SIZE}, expected at most {} \
                 (maxComputeWorkGroupCount[0] of {})",
                self.n, self.groups, max_groups, self.name
            ));
        }
        // SAFETY: as above.
        let mem_props = unsafe {
            self.instance
                .get_physical_device_memory_properties(physical)
        };
        let wanted = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        let d = &self.device;
        let bytes = u64::from(self.n) * 4;
        for i in 0..3 {
            let info = vk::BufferCreateInfo::default()
                .size(bytes)
                .usage(vk::BufferUsageFlags::STORAGE_BUFFER)
                .sharing_mode(vk::SharingMode::EXCLUSIVE);
            // SAFETY: a valid create info; the buffer is stored for `Drop` at once.
            self.buffers[i] =
                unsafe { d.create_buffer(&info, None) }.map_err(failed("vkCreateBuffer"))?;
            // SAFETY: the buffer was just made by this device.
            let reqs = unsafe { d.get_buffer_memory_requirements(self.buffers[i]) };
            let type_index = (0..mem_props.memory_type_count)
                .find(|&t| {
                    reqs.memory_type_bits & (1 << t) != 0
                        && mem_props.memory_types[t as usize]
                            .property_flags
                            .contains(wanted)
                })
                .ok_or_else(|| {
                    format!(
                        "raw ash: {} has no HOST_VISIBLE | HOST_COHERENT memory type for a \
                         storage buffer (memoryTypeBits {:#x}), expected one",
                        self.name, reqs.memory_type_bits
                    )
                })?;
            let alloc = vk::MemoryAllocateInfo::default()
                .allocation_size(reqs.size)
                .memory_type_index(type_index);
            // SAFETY: a valid allocate info with a memory type of this device.
            self.memory[i] =
                unsafe { d.allocate_memory(&alloc, None) }.map_err(failed("vkAllocateMemory"))?;
            // SAFETY: the memory is new, of a type the buffer allows and as large as it needs.
            unsafe { d.bind_buffer_memory(self.buffers[i], self.memory[i], 0) }
                .map_err(failed("vkBindBufferMemory"))?;
            // SAFETY: the memory is host-visible and not mapped yet.
            let ptr =
                unsafe { d.map_memory(self.memory[i], 0, bytes, vk::MemoryMapFlags::empty()) }
                    .map_err(failed("vkMapMemory"))?;
            self.mapped[i] = ptr.cast::<f32>();
        }
        let n = self.n as usize;
        // SAFETY: each mapping holds `n` f32s (mappings are aligned to minMemoryMapAlignment, at
        // least 64 bytes), does not overlap the slices, and the device uses none of them yet.
        unsafe {
            std::ptr::copy_nonoverlapping(a.as_ptr(), self.mapped[0], n);
            std::ptr::copy_nonoverlapping(b.as_ptr(), self.mapped[1], n);
            std::ptr::write_bytes(self.mapped[2], 0, n);
        }

        let info = vk::ShaderModuleCreateInfo::default().code(words);
        // SAFETY: the words are a SPIR-V module written by naga from a validated WGSL module.
        self.module = unsafe { d.create_shader_module(&info, None) }
            .map_err(failed("vkCreateShaderModule"))?;
        let bindings: Vec<vk::DescriptorSetLayoutBinding> = (0..3)
            .map(|binding| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(binding)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let info = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
        // SAFETY: a valid create info.
        self.set_layout = unsafe { d.create_descriptor_set_layout(&info, None) }
            .map_err(failed("vkCreateDescriptorSetLayout"))?;
        let ranges = [vk::PushConstantRange::default()
            .stage_flags(vk::ShaderStageFlags::COMPUTE)
            .offset(0)
            .size(4)];
        let set_layouts = [self.set_layout];
        let info = vk::PipelineLayoutCreateInfo::default()
            .set_layouts(&set_layouts)
            .push_constant_ranges(&ranges);
        // SAFETY: a valid create info referring to the set layout made above.
        self.pipeline_layout = unsafe { d.create_pipeline_layout(&info, None) }
            .map_err(failed("vkCreatePipelineLayout"))?;
        let stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(self.module)
            .name(ENTRY);
        let infos = [vk::ComputePipelineCreateInfo::default()
            .stage(stage)
            .layout(self.pipeline_layout)];
        // SAFETY: valid create infos referring to the module and layout made above.
        let pipelines =
            unsafe { d.create_compute_pipelines(vk::PipelineCache::null(), &infos, None) }
                .map_err(|(_, e)| failed("vkCreateComputePipelines")(e))?;
        self.pipeline = pipelines.first().copied().ok_or_else(|| {
            "raw ash: vkCreateComputePipelines returned no pipeline, expected one".to_string()
        })?;

        let sizes = [vk::DescriptorPoolSize::default()
            .ty(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(3)];
        let info = vk::DescriptorPoolCreateInfo::default()
            .max_sets(1)
            .pool_sizes(&sizes);
        // SAFETY: a valid create info.
        self.descriptor_pool = unsafe { d.create_descriptor_pool(&info, None) }
            .map_err(failed("vkCreateDescriptorPool"))?;
        let info = vk::DescriptorSetAllocateInfo::default()
            .descriptor_pool(self.descriptor_pool)
            .set_layouts(&set_layouts);
        // SAFETY: the pool has room for this one set of three storage buffers.
        let sets = unsafe { d.allocate_descriptor_sets(&info) }
            .map_err(failed("vkAllocateDescriptorSets"))?;
        self.descriptor_set = sets.first().copied().ok_or_else(|| {
            "raw ash: vkAllocateDescriptorSets returned no set, expected one".to_string()
        })?;
        let buffer_infos: Vec<[vk::DescriptorBufferInfo; 1]> = self
            .buffers
            .iter()
            .map(|&buffer| {
                [vk::DescriptorBufferInfo::default()
                    .buffer(buffer)
                    .range(vk::WHOLE_SIZE)]
            })
            .collect();
        let writes: Vec<vk::WriteDescriptorSet> = (0u32..)
            .zip(&buffer_infos)
            .map(|(binding, info)| {
                vk::WriteDescriptorSet::default()
                    .dst_set(self.descriptor_set)
                    .dst_binding(binding)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .buffer_info(info)
            })
            .collect();
        // SAFETY: the set and the buffers are live and the set is not in use by any command.
        unsafe { d.update_descriptor_sets(&writes, &[]) };

        let info = vk::CommandPoolCreateInfo::default()
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER)
            .queue_family_index(family);
        // SAFETY: a valid create info for the family the device's queue belongs to.
        self.command_pool =
            unsafe { d.create_command_pool(&info, None) }.map_err(failed("vkCreateCommandPool"))?;
        let info = vk::CommandBufferAllocateInfo::default()
            .command_pool(self.command_pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: the pool was made above.
        let cmds = unsafe { d.allocate_command_buffers(&info) }
            .map_err(failed("vkAllocateCommandBuffers"))?;
        self.command_buffer = cmds.first().copied().ok_or_else(|| {
            "raw ash: vkAllocateCommandBuffers returned no command buffer, expected one".to_string()
        })?;
        // SAFETY: a valid create info (unsignalled).
        self.fence = unsafe { d.create_fence(&vk::FenceCreateInfo::default(), None) }
            .map_err(failed("vkCreateFence"))?;
        Ok(())
    }
}

impl Drop for RawVulkan {
    fn drop(&mut self) {
        let d = &self.device;
        // SAFETY: after vkDeviceWaitIdle no work uses any of these objects; each was made by this
        // device (or is null, which every destroy and free call ignores), freeing memory unmaps
        // it, and the device and then the instance go last.
        unsafe {
            // A failure here (a lost device) leaves nothing better to do than destroying anyway.
            let _ = d.device_wait_idle();
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.command_pool, None);
            d.destroy_descriptor_pool(self.descriptor_pool, None);
            d.destroy_pipeline(self.pipeline, None);
            d.destroy_pipeline_layout(self.pipeline_layout, None);
            d.destroy_descriptor_set_layout(self.set_layout, None);
            d.destroy_shader_module(self.module, None);
            for i in (0..3).rev() {
                d.destroy_buffer(self.buffers[i], None);
                d.free_memory(self.memory[i], None);
            }
            d.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}

/// The kernel as SPIR-V 1.3, with the same validation and bounds-check policy as anyaccel's
/// Vulkan backend uses for it.
fn wgsl_to_spirv() -> Result<Vec<u32>, String> {
    let module = naga::front::wgsl::parse_str(WGSL).map_err(|e| {
        format!(
            "raw ash: parsing tiny_add.wgsl failed:\n{}",
            e.emit_to_string(WGSL)
        )
    })?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::IMMEDIATES,
    )
    .validate(&module)
    .map_err(|e| {
        format!(
            "raw ash: validating tiny_add.wgsl failed:\n{}",
            e.emit_to_string(WGSL)
        )
    })?;
    let policy = naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite;
    let options = naga::back::spv::Options {
        lang_version: (1, 3),
        flags: naga::back::spv::WriterFlags::empty(),
        fake_missing_bindings: true,
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: policy,
            buffer: policy,
            image_load: policy,
            binding_array: policy,
        },
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: "tiny_add".to_string(),
    };
    naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
        .map_err(|e| format!("raw ash: writing tiny_add as SPIR-V failed: {e}"))
}

/// A Vulkan 1.2 instance with no layers or extensions.
fn create_instance(entry: &ash::Entry) -> Result<ash::Instance, String> {
    let app = vk::ApplicationInfo::default()
        .application_name(c"anyaccel bench raw ash")
        .api_version(vk::API_VERSION_1_2);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: a valid create info whose application info outlives the call.
    unsafe { entry.create_instance(&info, None) }.map_err(failed("vkCreateInstance"))
}

/// The `deviceName` of each physical device of the instance.
fn device_names(instance: &ash::Instance) -> Result<Vec<(vk::PhysicalDevice, String)>, String> {
    // SAFETY: the instance is live.
    let devices = unsafe { instance.enumerate_physical_devices() }
        .map_err(failed("vkEnumeratePhysicalDevices"))?;
    Ok(devices
        .into_iter()
        .map(|pd| {
            // SAFETY: `pd` came from this instance.
            let props = unsafe { instance.get_physical_device_properties(pd) };
            let name = props
                .device_name_as_c_str()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "<unterminated deviceName>".to_string());
            (pd, name)
        })
        .collect())
}

/// The first physical device named `device_name` with a compute queue family, and that family.
fn pick_device(
    instance: &ash::Instance,
    device_name: &str,
) -> Result<(vk::PhysicalDevice, u32), String> {
    let devices = device_names(instance)?;
    let mut found = Vec::new();
    for (pd, name) in devices {
        if name == device_name {
            // SAFETY: `pd` came from this instance.
            let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
            let compute = (0u32..)
                .zip(&families)
                .find(|(_, f)| f.queue_flags.contains(vk::QueueFlags::COMPUTE));
            if let Some((family, _)) = compute {
                return Ok((pd, family));
            }
            found.push(format!("{name} (no compute queue family)"));
        } else {
            found.push(name);
        }
    }
    Err(format!(
        "raw ash: no Vulkan device named `{device_name}` with a compute queue family; found: {}",
        if found.is_empty() {
            "none".to_string()
        } else {
            found.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Skips with a message, or fails when `ANYACCEL_REQUIRE` lists vulkan.
    fn skip(why: &str) {
        let required = std::env::var("ANYACCEL_REQUIRE")
            .map(|v| {
                v.split(',')
                    .any(|s| s.trim().eq_ignore_ascii_case("vulkan"))
            })
            .unwrap_or(false);
        if required {
            panic!("ANYACCEL_REQUIRE lists vulkan, but {why}");
        }
        println!("skipped: {why}");
    }

    /// The name of the first physical device, or why there is none.
    fn first_device_name() -> Result<String, String> {
        // SAFETY: as in `RawVulkan::new`; the entry outlives the instance made from it.
        let entry = unsafe { ash::Entry::load() }
            .map_err(|e| format!("the Vulkan loader did not load: {e}"))?;
        let instance = create_instance(&entry)?;
        let names = device_names(&instance);
        // SAFETY: nothing made from the instance remains.
        unsafe { instance.destroy_instance(None) };
        let mut names = names?;
        if names.is_empty() {
            return Err("the Vulkan loader lists no physical device".to_string());
        }
        Ok(names.swap_remove(0).1)
    }

    #[test]
    fn raw_vulkan_tiny_add_equals_host_sum() {
        let name = match first_device_name() {
            Ok(name) => name,
            Err(why) => return skip(&why),
        };
        let a: Vec<f32> = (0..100).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..100).map(|i| 1.0 - i as f32).collect();
        let missing = RawVulkan::new("no such device", &a, &b)
            .err()
            .unwrap_or_default();
        assert!(missing.contains(&name), "{missing}");
        let uneven = RawVulkan::new(&name, &a, &b[1..]).err().unwrap_or_default();
        assert!(uneven.contains("100 elements and b has 99"), "{uneven}");
        let mut raw = RawVulkan::new(&name, &a, &b).unwrap();
        assert!(raw.description().contains(&name));
        for _ in 0..3 {
            raw.dispatch().unwrap();
        }
        let c = raw.read_c().unwrap();
        assert_eq!(c.len(), a.len());
        for i in 0..a.len() {
            assert_eq!(c[i], a[i] + b[i], "c[{i}] on {name}");
        }
        println!(
            "raw ash on {name}: 3 dispatches of tiny_add over 100 elements, c = a + b exactly"
        );
    }
}
