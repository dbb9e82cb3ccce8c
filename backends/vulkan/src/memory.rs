//! Device memory: where allocations go, buffers with their memory, and the [`VulkanMemory`] that
//! users hold.

use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyaccel_hal::{DeviceMemory, Error, Result};
use ash::vk;

use crate::device::DeviceShared;

/// Usage of every buffer: bound as a storage buffer, and copied from and to.
const USAGE: vk::BufferUsageFlags = vk::BufferUsageFlags::from_raw(
    vk::BufferUsageFlags::STORAGE_BUFFER.as_raw()
        | vk::BufferUsageFlags::TRANSFER_SRC.as_raw()
        | vk::BufferUsageFlags::TRANSFER_DST.as_raw(),
);

const MAPPABLE: vk::MemoryPropertyFlags = vk::MemoryPropertyFlags::from_raw(
    vk::MemoryPropertyFlags::HOST_VISIBLE.as_raw()
        | vk::MemoryPropertyFlags::HOST_COHERENT.as_raw(),
);

/// What an allocation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A user buffer: device-local, or host-visible where the device prefers that.
    Device,
    /// A staging buffer for host transfers: host-visible and coherent, mapped.
    Staging,
}

/// Which memory types allocations use, decided once per device.
pub(crate) struct MemoryPolicy {
    types: Vec<vk::MemoryType>,
    heaps: Vec<vk::MemoryHeap>,
    prefer_mapped: bool,
}

impl MemoryPolicy {
    pub(crate) fn new(
        props: &vk::PhysicalDeviceMemoryProperties,
        device_type: vk::PhysicalDeviceType,
    ) -> MemoryPolicy {
        let types = props.memory_types[..props.memory_type_count as usize].to_vec();
        let heaps = props.memory_heaps[..props.memory_heap_count as usize].to_vec();
        let largest_local = heaps
            .iter()
            .filter(|h| h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
            .map(|h| h.size)
            .max()
            .unwrap_or(0);
        let mappable = |t: &vk::MemoryType| t.property_flags.contains(MAPPABLE);
        // Host-visible memory is used directly on a CPU device, and where host and device share
        // memory: a mappable device-local type on the largest device-local heap (a unified
        // memory or a full-size BAR), not a small window of it.
        let prefer_mapped = (device_type == vk::PhysicalDeviceType::CPU
            && types.iter().any(mappable))
            || types.iter().any(|t| {
                mappable(t)
                    && t.property_flags
                        .contains(vk::MemoryPropertyFlags::DEVICE_LOCAL)
                    && heaps
                        .get(t.heap_index as usize)
                        .is_some_and(|h| h.size >= largest_local)
            });
        MemoryPolicy {
            types,
            heaps,
            prefer_mapped,
        }
    }

    /// True when user buffers go to host-visible memory and transfers map them directly.
    pub(crate) fn prefers_mapped(&self) -> bool {
        self.prefer_mapped
    }

    /// Bytes of device memory: the device-local heaps, or every heap if none is.
    pub(crate) fn device_memory_bytes(&self) -> u64 {
        let local: u64 = self
            .heaps
            .iter()
            .filter(|h| h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
            .map(|h| h.size)
            .sum();
        if local > 0 {
            local
        } else {
            self.heaps.iter().map(|h| h.size).sum()
        }
    }

    /// The size of the largest heap.
    pub(crate) fn largest_heap_bytes(&self) -> u64 {
        self.heaps.iter().map(|h| h.size).max().unwrap_or(0)
    }

    /// Memory type indices allowed by `type_bits`, best first.
    fn candidates(&self, type_bits: u32, purpose: Purpose) -> Vec<u32> {
        let flags = |i: u32| self.types[i as usize].property_flags;
        let allowed: Vec<u32> = (0..self.types.len() as u32)
            .filter(|i| type_bits & (1 << i) != 0)
            .collect();
        let pick = |want: vk::MemoryPropertyFlags, out: &mut Vec<u32>| {
            for &i in &allowed {
                if flags(i).contains(want) && !out.contains(&i) {
                    out.push(i);
                }
            }
        };
        let mut order = Vec::new();
        let local = vk::MemoryPropertyFlags::DEVICE_LOCAL;
        match purpose {
            Purpose::Device if self.prefer_mapped => {
                pick(MAPPABLE | local, &mut order);
                pick(MAPPABLE, &mut order);
                pick(local, &mut order);
                pick(vk::MemoryPropertyFlags::empty(), &mut order);
            }
            Purpose::Device => {
                pick(local, &mut order);
                pick(vk::MemoryPropertyFlags::empty(), &mut order);
            }
            Purpose::Staging => {
                pick(MAPPABLE | vk::MemoryPropertyFlags::HOST_CACHED, &mut order);
                pick(MAPPABLE, &mut order);
            }
        }
        order
    }

    fn is_mappable(&self, index: u32) -> bool {
        self.types[index as usize].property_flags.contains(MAPPABLE)
    }

    fn heap_bytes(&self, index: u32) -> u64 {
        self.heaps
            .get(self.types[index as usize].heap_index as usize)
            .map_or(0, |h| h.size)
    }
}

/// A `VkBuffer` bound to its own `VkDeviceMemory`, mapped where the memory is host-visible.
/// Freed on drop.
pub(crate) struct Allocation {
    shared: Arc<DeviceShared>,
    pub(crate) buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    /// The buffer's size: the requested size rounded up to whole 4-byte words.
    pub(crate) bytes: u64,
    mapped: Option<NonNull<u8>>,
}

// SAFETY: the handles are plain values owned by this allocation; Vulkan allows using buffers and
// memory from any thread, and the mapping is only accessed under the queue's ordering rules.
unsafe impl Send for Allocation {}
// SAFETY: as above; `&Allocation` only hands out handles and the mapping's address.
unsafe impl Sync for Allocation {}

impl Allocation {
    /// A buffer of at least `bytes` bytes (rounded up to 4), for `purpose`.
    pub(crate) fn new(
        shared: &Arc<DeviceShared>,
        bytes: u64,
        purpose: Purpose,
    ) -> Result<Allocation> {
        let limits = &shared.limits;
        let id = &shared.id;
        let oom =
            |why: String| Error::out_of_memory(format!("alloc: {bytes} bytes on {id}: {why}"));
        let padded = bytes
            .checked_add(3)
            .map(|b| b & !3)
            .ok_or_else(|| oom("the size overflows".into()))?
            .max(4);
        if padded > limits.max_memory_allocation_size {
            return Err(oom(format!(
                "more than the device's largest allocation (maxMemoryAllocationSize) of {} bytes",
                limits.max_memory_allocation_size
            )));
        }
        if padded > limits.max_buffer_size {
            return Err(oom(format!(
                "more than the device's largest buffer (maxBufferSize) of {} bytes",
                limits.max_buffer_size
            )));
        }
        let info = vk::BufferCreateInfo::default()
            .size(padded)
            .usage(USAGE)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        let raw = &shared.raw;
        // SAFETY: a valid create info for a size within the device's limits.
        let buffer = unsafe { raw.create_buffer(&info, None) }
            .map_err(|e| shared.vk_error("vkCreateBuffer", e))?;
        let destroy_buffer = || {
            // SAFETY: the buffer was created above, has no memory bound and is not in use.
            unsafe { raw.destroy_buffer(buffer, None) }
        };
        // SAFETY: the buffer is valid.
        let req = unsafe { raw.get_buffer_memory_requirements(buffer) };
        if req.size > limits.max_memory_allocation_size {
            destroy_buffer();
            return Err(oom(format!(
                "the buffer needs {} bytes, more than maxMemoryAllocationSize ({} bytes)",
                req.size, limits.max_memory_allocation_size
            )));
        }
        let candidates = shared.memory.candidates(req.memory_type_bits, purpose);
        let mut last_failure = None;
        let mut chosen = None;
        for index in candidates {
            let alloc = vk::MemoryAllocateInfo::default()
                .allocation_size(req.size)
                .memory_type_index(index);
            // SAFETY: a valid allocate info for a type the buffer accepts.
            match unsafe { raw.allocate_memory(&alloc, None) } {
                Ok(memory) => {
                    chosen = Some((memory, index));
                    break;
                }
                Err(e) => last_failure = Some((e, index)),
            }
        }
        let Some((memory, index)) = chosen else {
            destroy_buffer();
            return Err(match last_failure {
                Some((e, index)) => oom(format!(
                    "vkAllocateMemory failed: {e:?} ({e}) (memory type {index}, heap of {} bytes)",
                    shared.memory.heap_bytes(index)
                )),
                None => oom(format!(
                    "no memory type is suitable for a {} buffer",
                    match purpose {
                        Purpose::Device => "storage",
                        Purpose::Staging => "host-visible staging",
                    }
                )),
            });
        };
        let free = || {
            // SAFETY: created above and not in use; freeing memory also unmaps it.
            unsafe {
                raw.destroy_buffer(buffer, None);
                raw.free_memory(memory, None);
            }
        };
        // SAFETY: the memory was allocated for this buffer's requirements, at offset 0.
        if let Err(e) = unsafe { raw.bind_buffer_memory(buffer, memory, 0) } {
            free();
            return Err(shared.vk_error("vkBindBufferMemory", e));
        }
        let mapped = if shared.memory.is_mappable(index) {
            // SAFETY: the memory is host-visible and not mapped yet.
            match unsafe { raw.map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty()) }
            {
                Ok(ptr) => NonNull::new(ptr.cast::<u8>()),
                Err(e) => {
                    free();
                    return Err(shared.vk_error("vkMapMemory", e));
                }
            }
        } else {
            None
        };
        Ok(Allocation {
            shared: shared.clone(),
            buffer,
            memory,
            bytes: padded,
            mapped,
        })
    }

    /// The device the buffer belongs to.
    pub(crate) fn device(&self) -> &Arc<DeviceShared> {
        &self.shared
    }

    /// The mapping of the whole buffer, where its memory is host-visible and coherent.
    pub(crate) fn mapped(&self) -> Option<*mut u8> {
        self.mapped.map(|p| p.as_ptr())
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        // SAFETY: the queues hold an Arc of every allocation (through its Buffer) until the work
        // using it has completed, so nothing uses it now; freeing memory also unmaps it.
        unsafe {
            self.shared.raw.destroy_buffer(self.buffer, None);
            self.shared.raw.free_memory(self.memory, None);
        }
    }
}

/// One allocation of a Vulkan device, as users hold it through [`anyaccel_hal::Buffer`].
///
/// The `VkBuffer` is the requested size rounded up to whole 4-byte words (kernels address
/// storage buffers in words); a zero-byte buffer has no `VkBuffer` at all.
pub struct VulkanMemory {
    allocation: Option<Allocation>,
    size: usize,
    device_id: Arc<str>,
    live: Arc<AtomicUsize>,
}

impl VulkanMemory {
    pub(crate) fn new(
        shared: &Arc<DeviceShared>,
        size: usize,
        live: Arc<AtomicUsize>,
    ) -> Result<VulkanMemory> {
        let allocation = if size == 0 {
            None
        } else {
            Some(Allocation::new(shared, size as u64, Purpose::Device)?)
        };
        live.fetch_add(1, Ordering::SeqCst);
        Ok(VulkanMemory {
            allocation,
            size,
            device_id: shared.id.clone(),
            live,
        })
    }

    /// The `VkBuffer`, or `None` for a zero-byte buffer.
    pub fn vk_buffer(&self) -> Option<vk::Buffer> {
        self.allocation.as_ref().map(|a| a.buffer)
    }

    /// True when the memory is host-visible and mapped.
    pub fn is_mapped(&self) -> bool {
        self.allocation.as_ref().is_some_and(|a| a.mapped.is_some())
    }

    pub(crate) fn allocation(&self) -> Option<&Allocation> {
        self.allocation.as_ref()
    }
}

impl Drop for VulkanMemory {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DeviceMemory for VulkanMemory {
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
