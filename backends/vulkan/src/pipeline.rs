//! Kernels: WGSL through naga to SPIR-V, SPIR-V modules, their interface, and compute pipelines.

use std::any::Any;
use std::ffi::CString;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyaccel_hal::{Dialect, Error, Kernel, KernelSource, Result};
use ash::vk;

use crate::device::DeviceShared;

/// One storage buffer a kernel binds at `@group(0) @binding(i)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferBinding {
    /// The variable's name in the source, where known.
    pub name: Option<String>,
    /// True when the kernel only reads it (`var<storage, read>` or `NonWritable`).
    pub read_only: bool,
}

/// The scalar-argument block of a kernel: its push constants (`var<immediate>` in WGSL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalarBlock {
    /// Its size in bytes (for SPIR-V modules, the device's `maxPushConstantsSize`).
    pub size: u32,
    /// Its alignment in bytes.
    pub alignment: u32,
    /// True when `size` is the block's exact size (WGSL); false when only an upper bound is
    /// known (SPIR-V modules, which are not reflected that deeply).
    pub exact: bool,
}

/// What a kernel expects at launch: see the crate documentation for the convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInterface {
    /// Its storage buffers, in binding order 0, 1, ...
    pub buffers: Vec<BufferBinding>,
    /// Its scalar block, if it has one.
    pub scalars: Option<ScalarBlock>,
    /// Its `@workgroup_size` (SPIR-V `LocalSize`).
    pub workgroup_size: [u32; 3],
}

/// A compute pipeline compiled by a Vulkan device.
pub struct VulkanKernel {
    shared: Arc<DeviceShared>,
    name: String,
    dialect: Dialect,
    interface: KernelInterface,
    module: vk::ShaderModule,
    pub(crate) set_layout: vk::DescriptorSetLayout,
    pub(crate) pipeline_layout: vk::PipelineLayout,
    pub(crate) pipeline: vk::Pipeline,
    /// Whether launches push the bindings (VK_KHR_push_descriptor) instead of allocating a set.
    pub(crate) push_descriptors: bool,
}

impl VulkanKernel {
    /// The buffers, scalar block and work-group size the kernel expects.
    pub fn interface(&self) -> &KernelInterface {
        &self.interface
    }

    /// True when launches push the bindings into the command buffer (VK_KHR_push_descriptor);
    /// false when each launch allocates and writes a descriptor set from the queue's pools.
    pub fn pushes_descriptors(&self) -> bool {
        self.push_descriptors
    }

    /// The device that compiled it.
    pub(crate) fn device(&self) -> &Arc<DeviceShared> {
        &self.shared
    }
}

impl Kernel for VulkanKernel {
    fn name(&self) -> &str {
        &self.name
    }
    fn dialect(&self) -> Dialect {
        self.dialect.clone()
    }
    fn device_id(&self) -> &str {
        &self.shared.id
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for VulkanKernel {
    fn drop(&mut self) {
        // SAFETY: queues hold an Arc of every kernel they launched until that work completed,
        // so nothing uses these objects any more; each was created by this device.
        unsafe {
            let raw = &self.shared.raw;
            raw.destroy_pipeline(self.pipeline, None);
            raw.destroy_pipeline_layout(self.pipeline_layout, None);
            raw.destroy_descriptor_set_layout(self.set_layout, None);
            raw.destroy_shader_module(self.module, None);
        }
    }
}

/// Compiles `source` for the device.
pub(crate) fn compile(
    shared: &Arc<DeviceShared>,
    source: &KernelSource,
) -> Result<Arc<dyn Kernel>> {
    let (words, interface, dialect) = match source {
        KernelSource::Wgsl { source, entry } => {
            let (words, interface) = wgsl_to_spirv(shared, source, entry)?;
            (words, interface, Dialect::Wgsl)
        }
        KernelSource::SpirV { words, entry } => {
            let interface = reflect_spirv(words, entry).map_err(|why| {
                Error::invalid_argument(format!("SPIR-V kernel `{entry}`: {why}"))
            })?;
            let interface = KernelInterface {
                scalars: interface.scalars.map(|_| ScalarBlock {
                    size: shared.limits.max_push_constants_size,
                    alignment: 4,
                    exact: false,
                }),
                ..interface
            };
            (words.clone(), interface, Dialect::SpirV)
        }
        other => {
            return Err(Error::unsupported(format!(
                "compile: {} compiles WGSL and SPIR-V kernels, not {} (entry `{}`)",
                shared.id,
                other.dialect(),
                other.entry()
            )))
        }
    };
    check_limits(shared, source.entry(), &interface)?;
    Ok(Arc::new(create_pipeline(
        shared,
        &words,
        source.entry(),
        interface,
        dialect,
    )?))
}

/// The naga capabilities the device's features allow.
fn naga_capabilities(shared: &DeviceShared) -> naga::valid::Capabilities {
    use naga::valid::Capabilities as C;
    let f = shared.features;
    let mut caps = C::IMMEDIATES;
    if f.float16 {
        caps |= C::SHADER_FLOAT16;
    }
    if f.float64 {
        caps |= C::FLOAT64;
    }
    if f.int64 {
        caps |= C::SHADER_INT64;
    }
    if f.int16 {
        caps |= C::SHADER_INT16;
    }
    caps
}

/// Parses, validates and reflects a WGSL module and writes its entry point as SPIR-V.
fn wgsl_to_spirv(
    shared: &DeviceShared,
    source: &str,
    entry: &str,
) -> Result<(Vec<u32>, KernelInterface)> {
    let failed = |log: String| {
        Error::compile_failed(format!("WGSL kernel `{entry}` on {}:\n{log}", shared.id))
    };
    let module =
        naga::front::wgsl::parse_str(source).map_err(|e| failed(e.emit_to_string(source)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga_capabilities(shared),
    )
    .validate(&module)
    .map_err(|e| failed(e.emit_to_string(source)))?;
    let stage = naga::ShaderStage::Compute;
    if !module
        .entry_points
        .iter()
        .any(|ep| ep.name == entry && ep.stage == stage)
    {
        let found: Vec<&str> = module
            .entry_points
            .iter()
            .filter(|ep| ep.stage == stage)
            .map(|ep| ep.name.as_str())
            .collect();
        return Err(Error::invalid_argument(format!(
            "WGSL kernel `{entry}`: the module has no @compute function of that name; it has: {}",
            if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            }
        )));
    }
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((stage, entry)),
        &naga::back::PipelineConstants::default(),
    )
    .map_err(|e| failed(format!("pipeline-overridable constants: {e}")))?;
    let interface = reflect_wgsl(&module, entry)?;
    let options = naga::back::spv::Options {
        lang_version: (1, 3),
        flags: naga::back::spv::WriterFlags::empty(),
        // Resource bindings map straight to descriptor set and binding numbers.
        fake_missing_bindings: true,
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite,
            buffer: naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite,
            image_load: naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite,
            binding_array: naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite,
        },
        force_loop_bounding: false,
        use_storage_input_output_16: false,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: stage,
        entry_point: entry.to_string(),
    };
    let words = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
        .map_err(|e| failed(format!("writing SPIR-V: {e}")))?;
    Ok((words, interface))
}

/// The interface of a validated WGSL module's entry point, checked against the convention.
fn reflect_wgsl(module: &naga::Module, entry: &str) -> Result<KernelInterface> {
    let bad = |why: String| {
        Error::invalid_argument(format!(
            "WGSL kernel `{entry}`: {why} (the convention: storage buffers at @group(0) \
             @binding(0..n) in the order of the buffer arguments, scalars in one \
             var<immediate> struct)"
        ))
    };
    let ep = module
        .entry_points
        .iter()
        .find(|ep| ep.name == entry && ep.stage == naga::ShaderStage::Compute)
        .ok_or_else(|| bad("no @compute entry point of that name".into()))?;
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| bad(format!("type layout: {e}")))?;
    let mut buffers: Vec<(u32, BufferBinding)> = Vec::new();
    let mut scalars = None;
    for (_, var) in module.global_variables.iter() {
        let name = var.name.clone();
        let what = name.as_deref().unwrap_or("<unnamed>").to_string();
        match var.space {
            naga::AddressSpace::Storage { access } => {
                let Some(rb) = &var.binding else {
                    return Err(bad(format!("storage variable `{what}` has no @binding")));
                };
                if rb.group != 0 {
                    return Err(bad(format!(
                        "storage variable `{what}` is in @group({}), expected @group(0)",
                        rb.group
                    )));
                }
                buffers.push((
                    rb.binding,
                    BufferBinding {
                        name,
                        read_only: !access.contains(naga::StorageAccess::STORE),
                    },
                ));
            }
            naga::AddressSpace::Immediate => {
                let layout = layouter[var.ty];
                scalars = Some(ScalarBlock {
                    size: layout.size,
                    alignment: layout.alignment.round_up(1),
                    exact: true,
                });
            }
            naga::AddressSpace::Uniform => {
                return Err(bad(format!(
                    "uniform variable `{what}`: pass scalars in a var<immediate> struct instead"
                )))
            }
            naga::AddressSpace::Handle => {
                return Err(Error::unsupported(format!(
                    "WGSL kernel `{entry}`: `{what}` is a texture or sampler; compute kernels \
                     here bind storage buffers only"
                )))
            }
            _ => {}
        }
    }
    let buffers = dense_bindings(buffers).map_err(bad)?;
    Ok(KernelInterface {
        buffers,
        scalars,
        workgroup_size: ep.workgroup_size,
    })
}

/// Bindings sorted by number, which must be exactly 0..n.
fn dense_bindings(
    mut buffers: Vec<(u32, BufferBinding)>,
) -> std::result::Result<Vec<BufferBinding>, String> {
    buffers.sort_by_key(|(b, _)| *b);
    for (i, (b, _)) in buffers.iter().enumerate() {
        if *b != i as u32 {
            let numbers: Vec<String> = buffers.iter().map(|(b, _)| b.to_string()).collect();
            return Err(format!(
                "storage bindings are {}, expected 0..{} with no gaps or repeats",
                numbers.join(", "),
                buffers.len()
            ));
        }
    }
    Ok(buffers.into_iter().map(|(_, b)| b).collect())
}

/// The interface of a SPIR-V module's GLCompute entry point, from its decorations.
fn reflect_spirv(words: &[u32], entry: &str) -> std::result::Result<KernelInterface, String> {
    const MAGIC: u32 = 0x0723_0203;
    const OP_NAME: u32 = 5;
    const OP_ENTRY_POINT: u32 = 15;
    const OP_EXECUTION_MODE: u32 = 16;
    const OP_TYPE_POINTER: u32 = 32;
    const OP_VARIABLE: u32 = 59;
    const OP_DECORATE: u32 = 71;
    const OP_MEMBER_DECORATE: u32 = 72;
    const GL_COMPUTE: u32 = 5;
    const LOCAL_SIZE: u32 = 17;
    const LOCAL_SIZE_ID: u32 = 38;
    const DEC_BUFFER_BLOCK: u32 = 3;
    const DEC_NON_WRITABLE: u32 = 24;
    const DEC_BINDING: u32 = 33;
    const DEC_SET: u32 = 34;
    const SC_UNIFORM_CONSTANT: u32 = 0;
    const SC_UNIFORM: u32 = 2;
    const SC_PUSH_CONSTANT: u32 = 9;
    const SC_STORAGE_BUFFER: u32 = 12;

    if words.len() < 5 || words[0] != MAGIC {
        return Err("not a SPIR-V module (bad magic number or too short)".into());
    }
    let literal = |ws: &[u32]| -> String {
        let bytes: Vec<u8> = ws
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    use std::collections::{HashMap, HashSet};
    let mut entry_id = None;
    let mut entries = Vec::new();
    let mut local_sizes: HashMap<u32, std::result::Result<[u32; 3], ()>> = HashMap::new();
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut set: HashMap<u32, u32> = HashMap::new();
    let mut binding: HashMap<u32, u32> = HashMap::new();
    let mut non_writable: HashSet<u32> = HashSet::new();
    let mut buffer_block: HashSet<u32> = HashSet::new();
    let mut member_non_writable: HashMap<u32, usize> = HashMap::new();
    let mut pointers: HashMap<u32, u32> = HashMap::new();
    let mut variables: Vec<(u32, u32, u32)> = Vec::new(); // (pointer type, id, storage class)
    let mut i = 5;
    while i < words.len() {
        let count = (words[i] >> 16) as usize;
        let op = words[i] & 0xFFFF;
        if count == 0 || i + count > words.len() {
            return Err(format!("malformed instruction at word {i}"));
        }
        let w = &words[i + 1..i + count];
        match op {
            OP_ENTRY_POINT if w.len() >= 3 => {
                let name = literal(&w[2..]);
                if w[0] == GL_COMPUTE {
                    if name == entry {
                        entry_id = Some(w[1]);
                    }
                    entries.push(name);
                }
            }
            OP_EXECUTION_MODE if w.len() >= 2 => match w[1] {
                LOCAL_SIZE if w.len() >= 5 => {
                    local_sizes.insert(w[0], Ok([w[2], w[3], w[4]]));
                }
                LOCAL_SIZE_ID => {
                    local_sizes.insert(w[0], Err(()));
                }
                _ => {}
            },
            OP_NAME if w.len() >= 2 => {
                names.insert(w[0], literal(&w[1..]));
            }
            OP_DECORATE if w.len() >= 2 => match w[1] {
                DEC_SET if w.len() >= 3 => {
                    set.insert(w[0], w[2]);
                }
                DEC_BINDING if w.len() >= 3 => {
                    binding.insert(w[0], w[2]);
                }
                DEC_NON_WRITABLE => {
                    non_writable.insert(w[0]);
                }
                DEC_BUFFER_BLOCK => {
                    buffer_block.insert(w[0]);
                }
                _ => {}
            },
            OP_MEMBER_DECORATE if w.len() >= 3 && w[2] == DEC_NON_WRITABLE => {
                *member_non_writable.entry(w[0]).or_default() += 1;
            }
            OP_TYPE_POINTER if w.len() >= 3 => {
                pointers.insert(w[0], w[2]);
            }
            OP_VARIABLE if w.len() >= 3 => variables.push((w[0], w[1], w[2])),
            _ => {}
        }
        i += count;
    }
    let Some(entry_id) = entry_id else {
        return Err(format!(
            "no GLCompute entry point of that name; the module has: {}",
            if entries.is_empty() {
                "none".to_string()
            } else {
                entries.join(", ")
            }
        ));
    };
    let workgroup_size = match local_sizes.get(&entry_id) {
        Some(Ok(size)) => *size,
        Some(Err(())) => {
            return Err(
                "its work-group size is given by LocalSizeId (specialisation \
                        constants), which is not supported; use LocalSize"
                    .into(),
            )
        }
        None => return Err("it has no LocalSize execution mode".into()),
    };
    let mut buffers = Vec::new();
    let mut scalars = None;
    for (ptr_ty, id, class) in variables {
        let pointee = pointers.get(&ptr_ty).copied().unwrap_or(0);
        let what = names.get(&id).cloned().unwrap_or_else(|| format!("%{id}"));
        let is_storage =
            class == SC_STORAGE_BUFFER || (class == SC_UNIFORM && buffer_block.contains(&pointee));
        if is_storage {
            let (Some(&s), Some(&b)) = (set.get(&id), binding.get(&id)) else {
                return Err(format!(
                    "storage buffer {what} has no DescriptorSet/Binding"
                ));
            };
            if s != 0 {
                return Err(format!(
                    "storage buffer {what} is in set {s}, expected set 0"
                ));
            }
            let read_only =
                non_writable.contains(&id) || member_non_writable.contains_key(&pointee);
            buffers.push((
                b,
                BufferBinding {
                    name: names.get(&id).cloned(),
                    read_only,
                },
            ));
        } else if class == SC_UNIFORM {
            return Err(format!(
                "{what} is a uniform buffer; pass scalars as push constants instead"
            ));
        } else if class == SC_UNIFORM_CONSTANT {
            return Err(format!(
                "{what} is an image or sampler; kernels here bind storage buffers only"
            ));
        } else if class == SC_PUSH_CONSTANT {
            scalars = Some(ScalarBlock {
                size: 0,
                alignment: 4,
                exact: false,
            });
        }
    }
    Ok(KernelInterface {
        buffers: dense_bindings(buffers)?,
        scalars,
        workgroup_size,
    })
}

/// The kernel must fit the device's limits.
fn check_limits(shared: &DeviceShared, entry: &str, interface: &KernelInterface) -> Result<()> {
    let l = &shared.limits;
    let id = &shared.id;
    let n = interface.buffers.len() as u32;
    if n > l.max_per_stage_storage_buffers {
        return Err(Error::unsupported(format!(
            "kernel `{entry}` binds {n} storage buffers; {id} allows \
             {} (maxPerStageDescriptorStorageBuffers)",
            l.max_per_stage_storage_buffers
        )));
    }
    let [x, y, z] = interface.workgroup_size;
    let total = x as u64 * y as u64 * z as u64;
    let max = l.max_compute_work_group_size;
    if total == 0
        || total > l.max_compute_work_group_invocations as u64
        || x > max[0]
        || y > max[1]
        || z > max[2]
    {
        return Err(Error::unsupported(format!(
            "kernel `{entry}` has @workgroup_size({x}, {y}, {z}); {id} allows at most {} \
             invocations (maxComputeWorkGroupInvocations) and {:?} per dimension \
             (maxComputeWorkGroupSize)",
            l.max_compute_work_group_invocations, max
        )));
    }
    if let Some(s) = interface.scalars {
        if s.size > l.max_push_constants_size {
            return Err(Error::unsupported(format!(
                "kernel `{entry}` has a {}-byte var<immediate> block; {id} allows {} bytes \
                 of push constants (maxPushConstantsSize)",
                s.size, l.max_push_constants_size
            )));
        }
    }
    Ok(())
}

fn create_pipeline(
    shared: &Arc<DeviceShared>,
    words: &[u32],
    entry: &str,
    interface: KernelInterface,
    dialect: Dialect,
) -> Result<VulkanKernel> {
    let raw = &shared.raw;
    let entry_c = CString::new(entry).map_err(|_| {
        Error::invalid_argument(format!("kernel entry `{entry}` contains a NUL byte"))
    })?;
    let failed = |what: &str, e: vk::Result| {
        let err = shared.vk_error(what, e);
        if err.code() == anyaccel_hal::ErrorCode::Internal {
            Error::compile_failed(format!("kernel `{entry}`: {}", err.message()))
        } else {
            err
        }
    };
    let module_info = vk::ShaderModuleCreateInfo::default().code(words);
    // SAFETY: the words are a SPIR-V module (naga's output, or checked for the magic number).
    let module = unsafe { raw.create_shader_module(&module_info, None) }
        .map_err(|e| failed("vkCreateShaderModule", e))?;
    let bindings: Vec<vk::DescriptorSetLayoutBinding> = (0..interface.buffers.len() as u32)
        .map(|b| {
            vk::DescriptorSetLayoutBinding::default()
                .binding(b)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
        })
        .collect();
    let push_descriptors = shared.push_descriptor.is_some()
        && shared.use_push_descriptors.load(Ordering::SeqCst)
        && !bindings.is_empty()
        && bindings.len() as u32 <= shared.limits.max_push_descriptors;
    let set_info = vk::DescriptorSetLayoutCreateInfo::default()
        .flags(if push_descriptors {
            vk::DescriptorSetLayoutCreateFlags::PUSH_DESCRIPTOR_KHR
        } else {
            vk::DescriptorSetLayoutCreateFlags::empty()
        })
        .bindings(&bindings);
    // SAFETY: a valid create info; on failure the module made above is destroyed.
    let set_layout = match unsafe { raw.create_descriptor_set_layout(&set_info, None) } {
        Ok(l) => l,
        Err(e) => {
            // SAFETY: created above and unused.
            unsafe { raw.destroy_shader_module(module, None) };
            return Err(failed("vkCreateDescriptorSetLayout", e));
        }
    };
    let ranges: Vec<vk::PushConstantRange> = interface
        .scalars
        .map(|s| {
            vk::PushConstantRange::default()
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
                .offset(0)
                .size(s.size.div_ceil(4) * 4)
        })
        .into_iter()
        .filter(|r| r.size > 0)
        .collect();
    let layouts = [set_layout];
    let layout_info = vk::PipelineLayoutCreateInfo::default()
        .set_layouts(&layouts)
        .push_constant_ranges(&ranges);
    // SAFETY: a valid create info referring to the set layout made above.
    let pipeline_layout = match unsafe { raw.create_pipeline_layout(&layout_info, None) } {
        Ok(l) => l,
        Err(e) => {
            // SAFETY: created above and unused.
            unsafe {
                raw.destroy_descriptor_set_layout(set_layout, None);
                raw.destroy_shader_module(module, None);
            }
            return Err(failed("vkCreatePipelineLayout", e));
        }
    };
    let stage = vk::PipelineShaderStageCreateInfo::default()
        .stage(vk::ShaderStageFlags::COMPUTE)
        .module(module)
        .name(&entry_c);
    let info = [vk::ComputePipelineCreateInfo::default()
        .flags(vk::PipelineCreateFlags::DISPATCH_BASE)
        .stage(stage)
        .layout(pipeline_layout)];
    // SAFETY: valid create infos referring to objects made above; `entry_c` outlives the call.
    let pipeline =
        match unsafe { raw.create_compute_pipelines(vk::PipelineCache::null(), &info, None) } {
            Ok(p) if !p.is_empty() => p[0],
            result => {
                let e = match result {
                    Err((_, e)) => e,
                    Ok(_) => vk::Result::ERROR_UNKNOWN,
                };
                // SAFETY: created above and unused.
                unsafe {
                    raw.destroy_pipeline_layout(pipeline_layout, None);
                    raw.destroy_descriptor_set_layout(set_layout, None);
                    raw.destroy_shader_module(module, None);
                }
                return Err(failed("vkCreateComputePipelines", e));
            }
        };
    Ok(VulkanKernel {
        shared: shared.clone(),
        name: entry.to_string(),
        dialect,
        interface,
        module,
        set_layout,
        pipeline_layout,
        pipeline,
        push_descriptors,
    })
}
