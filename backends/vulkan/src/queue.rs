//! In-order queues on the device's compute queue, and events on timeline semaphores.
//!
//! A queue records commands into a command buffer (its *batch*), with a full memory barrier
//! before each command, and submits the batch at a sync point (a read, `finish`, an event, a
//! wait on another device's event) or once it holds [`BATCH_COMMANDS`] commands. Each
//! submission signals the next value of the queue's timeline semaphore; an event is a
//! (semaphore, value) pair. Resources a submission uses are held until its value is reached.

mod batch;
mod descriptors;
mod launch;
mod timeline;

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use anyaccel_hal::{
    validate, Bookkeeping, BufferView, Device, Error, Event, Kernel, KernelArg, LaunchDims, Queue,
    Result,
};
use ash::vk;

use crate::device::{DeviceShared, VulkanDevice};
use crate::memory::{Allocation, Purpose, VulkanMemory};
use batch::{Batch, Held, Submitted, UploadArena};
pub use timeline::VulkanEvent;
use timeline::{Timeline, TimestampQuery};

/// A batch is submitted once it holds this many commands, so that the device starts working
/// while the host records more.
pub const BATCH_COMMANDS: usize = 64;

/// Writes of at most this many bytes, 4-byte aligned, go inline into the command buffer.
const INLINE_WRITE: usize = 65536;
/// Writes up to this size go through the upload arena; larger ones get their own staging buffer.
const ARENA_WRITE: usize = 1 << 20;

struct QueueState {
    pool: vk::CommandPool,
    free_cmds: Vec<vk::CommandBuffer>,
    free_descriptor_pools: Vec<vk::DescriptorPool>,
    batch: Batch,
    in_flight: VecDeque<Submitted>,
    /// The last timeline value submitted for signalling.
    submitted: u64,
    arena: UploadArena,
    /// A small buffer bound in place of empty views, which have no `VkBuffer` range.
    placeholder: Option<Arc<Allocation>>,
}

/// An in-order queue of a Vulkan device.
///
/// Every queue has its own command pool and timeline semaphore and submits to the device's
/// compute queue. Commands are asynchronous: `write` copies the data before it returns (into a
/// mapped buffer directly when the queue is idle, else into the command buffer or a staging
/// buffer), `launch`, `copy` and `fill` only record. A failure at submission, or of an event
/// waited on, sticks to the queue: later commands are skipped until `read` or `finish`
/// reports it.
pub struct VulkanQueue {
    device: Arc<VulkanDevice>,
    shared: Arc<DeviceShared>,
    timeline: Arc<Timeline>,
    state: Mutex<QueueState>,
    /// Failures and their report (the HAL's sticky-failure rule); numbers are taken under
    /// `state`'s lock.
    book: Bookkeeping,
}

/// The Vulkan memory of a view; `what` is formatted only for an error message.
fn memory_of(what: impl std::fmt::Display, view: &BufferView) -> Result<&VulkanMemory> {
    view.buffer().downcast::<VulkanMemory>().ok_or_else(|| {
        Error::invalid_argument(format!(
            "{what}: the buffer of device {} is not Vulkan memory",
            view.buffer().device_id()
        ))
    })
}

/// Two devices from two probes can share an id (`vulkan:0` of each runtime); handles of one
/// must never reach the other.
fn foreign(what: impl std::fmt::Display, id: &str) -> Error {
    Error::invalid_argument(format!(
        "{what}: the object belongs to another instance of device {id} (from another probe or \
         runtime), expected one of this queue's device"
    ))
}

impl VulkanQueue {
    pub(crate) fn new(device: Arc<VulkanDevice>) -> Result<VulkanQueue> {
        let shared = device.shared.clone();
        let timeline = Timeline::new(&shared)?;
        let info = vk::CommandPoolCreateInfo::default()
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER)
            .queue_family_index(shared.family);
        // SAFETY: a valid create info for the device's compute family.
        let pool = unsafe { shared.raw.create_command_pool(&info, None) }
            .map_err(|e| shared.vk_error("vkCreateCommandPool", e))?;
        Ok(VulkanQueue {
            device,
            shared,
            timeline,
            state: Mutex::new(QueueState {
                pool,
                free_cmds: Vec::new(),
                free_descriptor_pools: Vec::new(),
                batch: Batch::default(),
                in_flight: VecDeque::new(),
                submitted: 0,
                arena: UploadArena::default(),
                placeholder: None,
            }),
            book: Bookkeeping::new(),
        })
    }

    fn id(&self) -> &str {
        &self.shared.id
    }

    /// The allocation behind a non-empty view, checked to belong to this very device.
    fn allocation_of<'a>(&self, what: &str, view: &'a BufferView) -> Result<&'a Allocation> {
        let alloc = memory_of(what, view)?.allocation().ok_or_else(|| {
            Error::internal(format!(
                "{what}: a {}-byte view of a buffer without memory",
                view.len()
            ))
        })?;
        if !Arc::ptr_eq(alloc.device(), &self.shared) {
            return Err(foreign(what, self.id()));
        }
        Ok(alloc)
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock leaves the state consistent enough to go on: every
        // step that changes it is a push or a pop.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn direct(&self) -> bool {
        self.shared.direct_host_access.load(Ordering::SeqCst)
    }
}

impl Queue for VulkanQueue {
    fn device_id(&self) -> &str {
        self.id()
    }

    fn device(&self) -> Arc<dyn Device> {
        self.device.clone()
    }

    fn write(&self, dst: &BufferView, data: &[u8]) -> Result<()> {
        validate::transfer("write", dst, data.len(), self.id())?;
        if data.is_empty() {
            return Ok(());
        }
        let alloc = self.allocation_of("write", dst)?;
        let offset = dst.offset();
        let mut st = self.lock();
        self.retire(&mut st)?;
        if self.book.failed() {
            // Skipped: the queue is failed until its error is reported.
            return Ok(());
        }
        let raw = &self.shared.raw;
        if let (Some(ptr), true) = (alloc.mapped(), self.direct() && Self::idle(&st)) {
            // SAFETY: the view lies inside the mapped buffer (BufferView's invariant), and no
            // command of this queue is recorded or running, so in-order semantics hold.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.add(offset), data.len()) };
            return Ok(());
        }
        if data.len() <= INLINE_WRITE && offset.is_multiple_of(4) && data.len().is_multiple_of(4) {
            let cmd = self.command(&mut st)?;
            // SAFETY: recording; offset and size are 4-byte aligned, at most 65536 bytes,
            // inside the buffer.
            unsafe { raw.cmd_update_buffer(cmd, alloc.buffer, offset as u64, data) };
        } else {
            let (src, src_offset) = if data.len() <= ARENA_WRITE {
                self.upload(&mut st, data)?
            } else {
                let staging = Arc::new(Allocation::new(
                    &self.shared,
                    data.len() as u64,
                    Purpose::Staging,
                )?);
                let ptr = staging
                    .mapped()
                    .ok_or_else(|| Error::internal("write: staging memory is not mapped"))?;
                // SAFETY: the staging buffer is mapped, new, and at least `data.len()` bytes.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len()) };
                let buffer = staging.buffer;
                st.batch.held.push(Held::Memory(staging));
                (buffer, 0)
            };
            let cmd = self.command(&mut st)?;
            let region = [vk::BufferCopy {
                src_offset,
                dst_offset: offset as u64,
                size: data.len() as u64,
            }];
            // SAFETY: recording; both ranges lie inside their buffers.
            unsafe { raw.cmd_copy_buffer(cmd, src, alloc.buffer, &region) };
        }
        st.batch.held.push(Held::Buffer(dst.buffer().clone()));
        self.maybe_flush(&mut st);
        Ok(())
    }

    fn read(&self, src: &BufferView, dst: &mut [u8]) -> Result<()> {
        validate::transfer("read", src, dst.len(), self.id())?;
        let mut st = self.lock();
        if dst.is_empty() {
            self.sync(&mut st)?;
            return self.book.report(Ok(()));
        }
        let alloc = self.allocation_of("read", src)?;
        let offset = src.offset();
        if let (Some(ptr), true) = (alloc.mapped(), self.direct()) {
            self.sync(&mut st)?;
            self.book.report(Ok(()))?;
            // SAFETY: the view lies inside the mapped buffer; every command of this queue has
            // completed and its writes were made visible to the host.
            unsafe { std::ptr::copy_nonoverlapping(ptr.add(offset), dst.as_mut_ptr(), dst.len()) };
            return Ok(());
        }
        let staging = Arc::new(Allocation::new(
            &self.shared,
            dst.len() as u64,
            Purpose::Staging,
        )?);
        if !self.book.failed() {
            let cmd = self.command(&mut st)?;
            let region = [vk::BufferCopy {
                src_offset: offset as u64,
                dst_offset: 0,
                size: dst.len() as u64,
            }];
            // SAFETY: recording; both ranges lie inside their buffers.
            unsafe {
                self.shared
                    .raw
                    .cmd_copy_buffer(cmd, alloc.buffer, staging.buffer, &region)
            };
            st.batch.held.push(Held::Buffer(src.buffer().clone()));
            st.batch.held.push(Held::Memory(staging.clone()));
        }
        self.sync(&mut st)?;
        self.book.report(Ok(()))?;
        let ptr = staging
            .mapped()
            .ok_or_else(|| Error::internal("read: staging memory is not mapped"))?;
        // SAFETY: the copy into the staging buffer has completed and was made visible to the
        // host; the staging buffer holds at least `dst.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(ptr, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn map_host(
        &self,
        view: &BufferView,
        f: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<bool> {
        validate::on_device("map_host", view, self.id())?;
        let alloc = self.allocation_of("map_host", view)?;
        let Some(ptr) = alloc.mapped().filter(|_| self.direct()) else {
            return Ok(false);
        };
        // Held until `f` returns: no command of this queue is recorded meanwhile.
        let mut st = self.lock();
        self.sync(&mut st)?;
        self.book.report(Ok(()))?;
        // SAFETY: the view lies inside the mapped, host-coherent buffer; every command of this
        // queue has completed, its writes are visible to the host, and none starts before `f`
        // returns (the lock is held).
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.add(view.offset()), view.len()) };
        f(bytes)?;
        Ok(true)
    }

    fn copy(&self, src: &BufferView, dst: &BufferView) -> Result<()> {
        validate::copy(src, dst, self.id())?;
        if src.is_empty() {
            return Ok(());
        }
        let (s, d) = (
            self.allocation_of("copy src", src)?,
            self.allocation_of("copy dst", dst)?,
        );
        let mut st = self.lock();
        self.retire(&mut st)?;
        let cmd = self.command(&mut st)?;
        let region = [vk::BufferCopy {
            src_offset: src.offset() as u64,
            dst_offset: dst.offset() as u64,
            size: src.len() as u64,
        }];
        // SAFETY: recording; both ranges lie inside their buffers and do not overlap.
        unsafe {
            self.shared
                .raw
                .cmd_copy_buffer(cmd, s.buffer, d.buffer, &region)
        };
        st.batch.held.push(Held::Buffer(src.buffer().clone()));
        st.batch.held.push(Held::Buffer(dst.buffer().clone()));
        self.maybe_flush(&mut st);
        Ok(())
    }

    fn fill(&self, dst: &BufferView, pattern: &[u8]) -> Result<()> {
        validate::fill(dst, pattern, self.id())?;
        if dst.is_empty() {
            return Ok(());
        }
        let alloc = self.allocation_of("fill", dst)?;
        let (start, end) = (dst.offset(), dst.offset() + dst.len());
        let byte_at = |i: usize| pattern[(i - start) % pattern.len()];
        // vkCmdFillBuffer writes whole aligned words: it does the aligned middle; the at most
        // three bytes before and after it are copied from the upload arena.
        let a = start.div_ceil(4).saturating_mul(4).min(end);
        let b = (end / 4 * 4).max(a);
        let mut edges: Vec<u8> = (start..a).map(byte_at).collect();
        edges.extend((b..end).map(byte_at));
        let mut st = self.lock();
        self.retire(&mut st)?;
        let raw = &self.shared.raw;
        let uploaded = if edges.is_empty() {
            None
        } else {
            Some(self.upload(&mut st, &edges)?)
        };
        let cmd = self.command(&mut st)?;
        if b > a {
            let word =
                u32::from_le_bytes([byte_at(a), byte_at(a + 1), byte_at(a + 2), byte_at(a + 3)]);
            // SAFETY: recording; the range is 4-byte aligned and inside the buffer.
            unsafe { raw.cmd_fill_buffer(cmd, alloc.buffer, a as u64, (b - a) as u64, word) };
        }
        if let Some((src, src_offset)) = uploaded {
            let mut regions = Vec::with_capacity(2);
            if a > start {
                regions.push(vk::BufferCopy {
                    src_offset,
                    dst_offset: start as u64,
                    size: (a - start) as u64,
                });
            }
            if end > b {
                regions.push(vk::BufferCopy {
                    src_offset: src_offset + (a - start) as u64,
                    dst_offset: b as u64,
                    size: (end - b) as u64,
                });
            }
            // SAFETY: recording; the regions lie inside both buffers and do not overlap the
            // filled words (they are before `a` and after `b`).
            unsafe { raw.cmd_copy_buffer(cmd, src, alloc.buffer, &regions) };
        }
        st.batch.held.push(Held::Buffer(dst.buffer().clone()));
        self.maybe_flush(&mut st);
        Ok(())
    }

    fn submit_launch(
        &self,
        kernel: &Arc<dyn Kernel>,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<()> {
        self.launch_kernel(kernel, dims, args)
    }

    fn record_event(&self) -> Result<Arc<dyn Event>> {
        let mut st = self.lock();
        self.retire(&mut st)?;
        let query = if self.shared.features.timestamps {
            let info = vk::QueryPoolCreateInfo::default()
                .query_type(vk::QueryType::TIMESTAMP)
                .query_count(1);
            // SAFETY: a valid create info.
            let pool = unsafe { self.shared.raw.create_query_pool(&info, None) }
                .map_err(|e| self.shared.vk_error("vkCreateQueryPool", e))?;
            let query = Arc::new(TimestampQuery {
                shared: self.shared.clone(),
                pool,
            });
            let cmd = self.cmd(&mut st)?;
            // SAFETY: recording, outside any render pass; the pool has one query. The
            // timestamp is taken once every earlier command has completed.
            unsafe {
                self.shared.raw.cmd_reset_query_pool(cmd, pool, 0, 1);
                self.shared.raw.cmd_write_timestamp(
                    cmd,
                    vk::PipelineStageFlags::BOTTOM_OF_PIPE,
                    pool,
                    0,
                );
            }
            st.batch.held.push(Held::Query(query.clone()));
            Some(query)
        } else {
            None
        };
        self.flush(&mut st);
        Ok(Arc::new(VulkanEvent {
            shared: self.shared.clone(),
            timeline: self.timeline.clone(),
            value: st.submitted,
            query,
            mark: self.book.mark(),
        }))
    }

    fn wait_event(&self, event: &Arc<dyn Event>) -> Result<()> {
        let mut st = self.lock();
        let same_device = event
            .as_any()
            .downcast_ref::<VulkanEvent>()
            .filter(|e| Arc::ptr_eq(&e.shared, &self.shared));
        match same_device {
            Some(e) if e.mark.failure().is_some() => {
                // The work before the event failed: what was queued before this wait runs,
                // what comes after is skipped until the failure is reported.
                self.flush(&mut st);
                if !self.book.failed() {
                    self.book.wait_foreign(self.book.number(), &**event);
                }
            }
            Some(e) => {
                if !e.is_done() {
                    st.batch.waits.push((e.timeline.clone(), e.value));
                }
            }
            None => {
                // Commands before the wait are submitted now, so that a failure of the event
                // skips only the commands after it.
                self.flush(&mut st);
                st.batch.host_waits.push(event.clone());
            }
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn finish(&self) -> Result<()> {
        let mut st = self.lock();
        self.sync(&mut st)?;
        self.book.report(Ok(()))
    }
}

impl Drop for VulkanQueue {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut st = std::mem::replace(
            st,
            QueueState {
                pool: vk::CommandPool::null(),
                free_cmds: Vec::new(),
                free_descriptor_pools: Vec::new(),
                batch: Batch::default(),
                in_flight: VecDeque::new(),
                submitted: 0,
                arena: UploadArena::default(),
                placeholder: None,
            },
        );
        self.flush(&mut st);
        if self.timeline.wait(st.submitted).is_err() {
            // SAFETY: the device is lost or broken; waiting for idle is the last resort before
            // freeing what its queue may still reference.
            let _ = unsafe { self.shared.raw.device_wait_idle() };
        }
        while let Some(done) = st.in_flight.pop_front() {
            self.recycle(&mut st, done);
        }
        let raw = &self.shared.raw;
        // SAFETY: every submission of this queue has completed, so none of its command
        // buffers or descriptor sets is pending; destroying the pools frees them.
        unsafe {
            for pool in st.free_descriptor_pools.drain(..) {
                raw.destroy_descriptor_pool(pool, None);
            }
            for pool in st.batch.descriptor_pools.drain(..) {
                raw.destroy_descriptor_pool(pool, None);
            }
            raw.destroy_command_pool(st.pool, None);
        }
    }
}
