//! Kernel launches: the arguments checked against the kernel's interface and the device's
//! limits, the scalars as one push-constant block, the bindings, and the dispatches.

use std::sync::Arc;

use anyaccel_hal::{validate, Error, Kernel, KernelArg, LaunchDims, Result};
use ash::vk;

use super::batch::Held;
use super::{foreign, memory_of, VulkanQueue};
use crate::pipeline::VulkanKernel;

/// The scalar arguments of a launch as one push-constant block: each argument padded to 4
/// bytes, the whole checked against the kernel's block.
fn scalar_block(kernel: &VulkanKernel, args: &[KernelArg]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for arg in args {
        if let KernelArg::Bytes(b) = arg {
            bytes.extend_from_slice(b);
            bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        }
    }
    let name = kernel.name();
    match kernel.interface().scalars {
        None if bytes.is_empty() => Ok(bytes),
        None => Err(Error::invalid_argument(format!(
            "launch `{name}`: {} bytes of scalar arguments given, but the kernel declares no \
             var<immediate> block to receive them",
            bytes.len()
        ))),
        Some(block) if block.exact => {
            let align = block.alignment.max(4) as usize;
            if bytes.len().div_ceil(align) * align != block.size as usize {
                return Err(Error::invalid_argument(format!(
                    "launch `{name}`: the scalar arguments make {} bytes (each padded to 4), but \
                     the kernel's var<immediate> block has {} bytes: pass one scalar per member, \
                     in member order",
                    bytes.len(),
                    block.size
                )));
            }
            bytes.resize(block.size as usize, 0);
            Ok(bytes)
        }
        Some(block) => {
            if bytes.len() > block.size as usize {
                return Err(Error::invalid_argument(format!(
                    "launch `{name}`: {} bytes of scalar arguments, more than the {} bytes of \
                     push constants the device allows (maxPushConstantsSize)",
                    bytes.len(),
                    block.size
                )));
            }
            Ok(bytes)
        }
    }
}

impl VulkanQueue {
    /// `Queue::launch`: checks the kernel and its arguments, binds the buffers (pushed or
    /// through a descriptor set) and the scalars, and records the dispatches, split to stay
    /// within maxComputeWorkGroupCount.
    pub(super) fn launch_kernel(
        &self,
        kernel: &Arc<dyn Kernel>,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<()> {
        let k = validate::kernel_as::<VulkanKernel>(kernel, "a Vulkan kernel")?;
        if !Arc::ptr_eq(k.device(), &self.shared) {
            return Err(foreign(format_args!("launch `{}`", k.name()), self.id()));
        }
        let name = k.name();
        let iface = k.interface();
        let limits = &self.shared.limits;
        let views = || {
            args.iter().enumerate().filter_map(|(i, a)| match a {
                KernelArg::Buffer(v) => Some((i, v)),
                KernelArg::Bytes(_) => None,
            })
        };
        let given = views().count();
        if given != iface.buffers.len() {
            return Err(Error::invalid_argument(format!(
                "launch `{name}`: {given} buffer arguments given, but the kernel binds {} \
                 storage buffers (@group(0) @binding(0..{}))",
                iface.buffers.len(),
                iface.buffers.len()
            )));
        }
        let push = match (k.push_descriptors, &self.shared.push_descriptor) {
            (false, _) => None,
            (true, Some(push)) => Some(push),
            (true, None) => {
                return Err(Error::internal(format!(
                    "launch `{name}`: the kernel pushes its bindings, but {} has no \
                     VK_KHR_push_descriptor",
                    self.id()
                )))
            }
        };
        let scalars = scalar_block(k, args)?;
        // The bindings in order; an empty view, or a buffer without memory, has no VkBuffer
        // range and is bound to the queue's placeholder, filled in below.
        let mut infos = Vec::with_capacity(given);
        for (binding, (i, view)) in views().enumerate() {
            // Formatted only when a message is made.
            let what = format_args!("launch `{name}` argument {i} (binding {binding})");
            let len = view.len() as u64;
            if len > limits.max_storage_buffer_range {
                return Err(Error::unsupported(format!(
                    "{what}: a view of {len} bytes is larger than {}'s maxStorageBufferRange of \
                     {} bytes, the most one binding may cover; split the work or bind a \
                     smaller range",
                    self.id(),
                    limits.max_storage_buffer_range
                )));
            }
            let offset = view.offset() as u64;
            if !offset.is_multiple_of(limits.min_storage_buffer_offset_alignment) {
                return Err(Error::unsupported(format!(
                    "{what}: a view at byte offset {offset} is not a multiple of {}'s \
                     minStorageBufferOffsetAlignment ({} bytes); bind the whole buffer and pass \
                     the element offset as a scalar",
                    self.id(),
                    limits.min_storage_buffer_offset_alignment
                )));
            }
            let info = match memory_of(what, view)?.allocation() {
                Some(a) if !Arc::ptr_eq(a.device(), &self.shared) => {
                    return Err(foreign(what, self.id()))
                }
                Some(a) if !view.is_empty() => vk::DescriptorBufferInfo {
                    buffer: a.buffer,
                    offset,
                    // Whole words: the range is rounded up to 4 bytes inside the buffer.
                    range: len
                        .div_ceil(4)
                        .saturating_mul(4)
                        .min(a.bytes - offset)
                        .min(limits.max_storage_buffer_range),
                },
                _ => vk::DescriptorBufferInfo {
                    buffer: vk::Buffer::null(),
                    offset: 0,
                    range: vk::WHOLE_SIZE,
                },
            };
            infos.push(info);
        }
        let wg = iface.workgroup_size;
        if let Some(local) = dims.local {
            if local != wg {
                return Err(Error::invalid_argument(format!(
                    "launch `{name}`: work-group size {local:?} requested, but the kernel's \
                     @workgroup_size is {wg:?}; leave LaunchDims::local as None"
                )));
            }
        }
        let mut groups = [0u32; 3];
        for d in 0..3 {
            let n = dims.global[d].div_ceil(wg[d].max(1) as u64);
            groups[d] = u32::try_from(n).map_err(|_| {
                Error::invalid_argument(format!(
                    "launch `{name}`: {} work items in dimension {d} make {n} work groups, more \
                     than 2^32 - 1",
                    dims.global[d]
                ))
            })?;
        }
        if groups.contains(&0) {
            return Ok(());
        }

        let mut st = self.lock();
        self.retire(&mut st)?;
        if infos.iter().any(|info| info.buffer == vk::Buffer::null()) {
            let placeholder = self.placeholder(&mut st)?;
            for info in infos.iter_mut().filter(|i| i.buffer == vk::Buffer::null()) {
                info.buffer = placeholder.buffer;
            }
            st.batch.held.push(Held::Memory(placeholder));
        }
        let set = match push {
            Some(_) => vk::DescriptorSet::null(),
            None => self.descriptor_set(&mut st, k.set_layout)?,
        };
        // One write covers every binding: they are consecutive storage buffers of one stage.
        let writes = [vk::WriteDescriptorSet::default()
            .dst_set(set)
            .dst_binding(0)
            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
            .buffer_info(&infos)];
        let writes = if infos.is_empty() {
            &[][..]
        } else {
            &writes[..]
        };
        let raw = &self.shared.raw;
        if push.is_none() {
            // SAFETY: the set is new and not in use; every buffer is live and each range lies
            // inside its buffer within maxStorageBufferRange at an aligned offset.
            unsafe { raw.update_descriptor_sets(writes, &[]) };
        }
        let cmd = self.command(&mut st)?;
        let max = limits.max_compute_work_group_count;
        let bind = vk::PipelineBindPoint::COMPUTE;
        // SAFETY: recording; the pipeline, its layout and the set belong to this device; a
        // pushed set's layout was made for pushing, with at most maxPushDescriptors bindings,
        // and the writes are valid as above; the push constants fit the layout's range
        // (checked against the kernel's block), and every dispatch stays within
        // maxComputeWorkGroupCount, with DISPATCH_BASE set on the pipeline for the base
        // offsets.
        unsafe {
            raw.cmd_bind_pipeline(cmd, bind, k.pipeline);
            match push {
                Some(push) => push.cmd_push_descriptor_set(cmd, bind, k.pipeline_layout, 0, writes),
                None => raw.cmd_bind_descriptor_sets(cmd, bind, k.pipeline_layout, 0, &[set], &[]),
            }
            if !scalars.is_empty() {
                raw.cmd_push_constants(
                    cmd,
                    k.pipeline_layout,
                    vk::ShaderStageFlags::COMPUTE,
                    0,
                    &scalars,
                );
            }
            let step = |d: usize| max[d].max(1);
            let mut z = 0;
            while z < groups[2] {
                let nz = step(2).min(groups[2] - z);
                let mut y = 0;
                while y < groups[1] {
                    let ny = step(1).min(groups[1] - y);
                    let mut x = 0;
                    while x < groups[0] {
                        let nx = step(0).min(groups[0] - x);
                        raw.cmd_dispatch_base(cmd, x, y, z, nx, ny, nz);
                        x += nx;
                    }
                    y += ny;
                }
                z += nz;
            }
        }
        st.batch.held.push(Held::Kernel(kernel.clone()));
        for (_, view) in views() {
            st.batch.held.push(Held::Buffer(view.buffer().clone()));
        }
        self.maybe_flush(&mut st);
        Ok(())
    }
}
