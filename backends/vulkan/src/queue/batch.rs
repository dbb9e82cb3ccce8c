//! Batches: commands recorded into a command buffer and not yet submitted, their submission
//! on the queue's timeline, what each submission holds until it completes, and the upload
//! arena that small writes are staged in.

use std::sync::Arc;

use anyaccel_hal::{Buffer, Error, Event, Kernel, Result};
use ash::vk;

use super::timeline::{Timeline, TimestampQuery};
use super::{QueueState, VulkanQueue, BATCH_COMMANDS};
use crate::memory::{Allocation, Purpose};

/// Size of one chunk of a queue's upload arena, for small writes and unaligned fills.
const ARENA_CHUNK: u64 = 4 << 20;
/// Upload-arena chunks a queue keeps for reuse.
const ARENA_KEEP: usize = 4;

/// Stages and accesses that queue commands use.
const WORK_STAGES: vk::PipelineStageFlags = vk::PipelineStageFlags::from_raw(
    vk::PipelineStageFlags::COMPUTE_SHADER.as_raw() | vk::PipelineStageFlags::TRANSFER.as_raw(),
);
const WRITES: vk::AccessFlags = vk::AccessFlags::from_raw(
    vk::AccessFlags::SHADER_WRITE.as_raw() | vk::AccessFlags::TRANSFER_WRITE.as_raw(),
);
const READS_WRITES: vk::AccessFlags = vk::AccessFlags::from_raw(
    vk::AccessFlags::SHADER_READ.as_raw()
        | vk::AccessFlags::SHADER_WRITE.as_raw()
        | vk::AccessFlags::TRANSFER_READ.as_raw()
        | vk::AccessFlags::TRANSFER_WRITE.as_raw(),
);

/// What a submission holds alive until it completes: buffers, staging, kernels, queries.
/// Never read; dropping it is the point.
#[allow(dead_code)]
pub(super) enum Held {
    Buffer(Buffer),
    Kernel(Arc<dyn Kernel>),
    Memory(Arc<Allocation>),
    Timeline(Arc<Timeline>),
    Query(Arc<TimestampQuery>),
}

/// Commands recorded and not yet submitted.
#[derive(Default)]
pub(super) struct Batch {
    cmd: Option<vk::CommandBuffer>,
    commands: usize,
    pub(super) held: Vec<Held>,
    pub(super) descriptor_pools: Vec<vk::DescriptorPool>,
    /// Timeline values of this device to wait for on the device before the batch runs.
    pub(super) waits: Vec<(Arc<Timeline>, u64)>,
    /// Events of other devices or backends, waited for on the host before submitting.
    pub(super) host_waits: Vec<Arc<dyn Event>>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.cmd.is_none() && self.waits.is_empty() && self.host_waits.is_empty()
    }
}

/// A submitted batch, kept until the timeline reaches its value.
pub(super) struct Submitted {
    value: u64,
    cmd: Option<vk::CommandBuffer>,
    held: Vec<Held>,
    descriptor_pools: Vec<vk::DescriptorPool>,
}

/// Host-visible chunks that small uploads are copied into, reused once no submission uses them.
#[derive(Default)]
pub(super) struct UploadArena {
    chunks: Vec<Arc<Allocation>>,
    current: Option<(Arc<Allocation>, u64)>,
}

impl VulkanQueue {
    /// Frees what completed submissions held.
    pub(super) fn retire(&self, st: &mut QueueState) -> Result<()> {
        if st.in_flight.is_empty() {
            return Ok(());
        }
        let reached = self.timeline.value()?;
        while st.in_flight.front().is_some_and(|s| s.value <= reached) {
            if let Some(done) = st.in_flight.pop_front() {
                self.recycle(st, done);
            }
        }
        Ok(())
    }

    pub(super) fn recycle(&self, st: &mut QueueState, done: Submitted) {
        let raw = &self.shared.raw;
        if let Some(cmd) = done.cmd {
            // SAFETY: the submission has completed (or was never submitted), so the command
            // buffer is not pending; its pool is this queue's, used under the state lock.
            if unsafe { raw.reset_command_buffer(cmd, vk::CommandBufferResetFlags::empty()) }
                .is_ok()
            {
                st.free_cmds.push(cmd);
            }
        }
        for pool in done.descriptor_pools {
            // SAFETY: the sets of this pool were used only by the completed submission.
            if unsafe { raw.reset_descriptor_pool(pool, vk::DescriptorPoolResetFlags::empty()) }
                .is_ok()
            {
                st.free_descriptor_pools.push(pool);
            } else {
                // SAFETY: as above; a pool that cannot be reset is not reused.
                unsafe { raw.destroy_descriptor_pool(pool, None) };
            }
        }
        drop(done.held);
    }

    /// The batch's command buffer, begun.
    pub(super) fn cmd(&self, st: &mut QueueState) -> Result<vk::CommandBuffer> {
        if let Some(cmd) = st.batch.cmd {
            return Ok(cmd);
        }
        let raw = &self.shared.raw;
        let cmd = match st.free_cmds.pop() {
            Some(cmd) => cmd,
            None => {
                let info = vk::CommandBufferAllocateInfo::default()
                    .command_pool(st.pool)
                    .level(vk::CommandBufferLevel::PRIMARY)
                    .command_buffer_count(1);
                // SAFETY: the pool is this queue's, used under the state lock.
                let cmds = unsafe { raw.allocate_command_buffers(&info) }
                    .map_err(|e| self.shared.vk_error("vkAllocateCommandBuffers", e))?;
                cmds.first().copied().ok_or_else(|| {
                    Error::internal("vkAllocateCommandBuffers returned no command buffer")
                })?
            }
        };
        let begin = vk::CommandBufferBeginInfo::default()
            .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: the command buffer is in the initial state (new or reset).
        if let Err(e) = unsafe { raw.begin_command_buffer(cmd, &begin) } {
            st.free_cmds.push(cmd);
            return Err(self.shared.vk_error("vkBeginCommandBuffer", e));
        }
        st.batch.cmd = Some(cmd);
        Ok(cmd)
    }

    /// The command buffer for one more command, after a barrier that orders it after every
    /// command before it on the device's queue.
    pub(super) fn command(&self, st: &mut QueueState) -> Result<vk::CommandBuffer> {
        let cmd = self.cmd(st)?;
        let barrier = [vk::MemoryBarrier::default()
            .src_access_mask(WRITES)
            .dst_access_mask(READS_WRITES)];
        // SAFETY: `cmd` is recording; the barrier is a valid global memory barrier.
        unsafe {
            self.shared.raw.cmd_pipeline_barrier(
                cmd,
                WORK_STAGES,
                WORK_STAGES,
                vk::DependencyFlags::empty(),
                &barrier,
                &[],
                &[],
            )
        };
        st.batch.commands += 1;
        Ok(cmd)
    }

    pub(super) fn maybe_flush(&self, st: &mut QueueState) {
        if st.batch.commands >= BATCH_COMMANDS {
            self.flush(st);
        }
    }

    /// Submits the batch. Failures are recorded in the queue's bookkeeping.
    pub(super) fn flush(&self, st: &mut QueueState) {
        if st.batch.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut st.batch);
        for event in batch.host_waits.drain(..) {
            if !self.book.failed() {
                self.book.wait_foreign(self.book.number(), &*event);
            }
        }
        if batch.cmd.is_none() && batch.waits.is_empty() {
            // Nothing to submit; what a failed command left behind is freed with the
            // submissions before it.
            if !batch.held.is_empty() || !batch.descriptor_pools.is_empty() {
                st.in_flight.push_back(Submitted {
                    value: st.submitted,
                    cmd: None,
                    held: batch.held,
                    descriptor_pools: batch.descriptor_pools,
                });
            }
            return;
        }
        let raw = &self.shared.raw;
        let mut run = !self.book.failed();
        if let (Some(cmd), true) = (batch.cmd, run) {
            // Make the batch's writes visible to the host, for reads of mapped memory.
            let barrier = [vk::MemoryBarrier::default()
                .src_access_mask(WRITES)
                .dst_access_mask(vk::AccessFlags::HOST_READ)];
            // SAFETY: `cmd` is recording; a valid barrier, then the end of recording.
            let ended = unsafe {
                raw.cmd_pipeline_barrier(
                    cmd,
                    WORK_STAGES,
                    vk::PipelineStageFlags::HOST,
                    vk::DependencyFlags::empty(),
                    &barrier,
                    &[],
                    &[],
                );
                raw.end_command_buffer(cmd)
            };
            if let Err(e) = ended {
                self.book.fail(
                    self.book.number(),
                    self.shared.vk_error("vkEndCommandBuffer", e),
                );
                run = false;
            }
        }
        let value = st.submitted + 1;
        // A skipped batch still signals its value, so that events and waiters go on.
        let cmds: Vec<vk::CommandBuffer> = batch.cmd.filter(|_| run).into_iter().collect();
        let (wait_sems, wait_values): (Vec<vk::Semaphore>, Vec<u64>) = if run {
            batch.waits.iter().map(|(t, v)| (t.raw, *v)).unzip()
        } else {
            (Vec::new(), Vec::new())
        };
        let wait_stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; wait_sems.len()];
        let signal = [self.timeline.raw];
        let signal_values = [value];
        let mut timeline_info = vk::TimelineSemaphoreSubmitInfo::default()
            .wait_semaphore_values(&wait_values)
            .signal_semaphore_values(&signal_values);
        let submit = [vk::SubmitInfo::default()
            .wait_semaphores(&wait_sems)
            .wait_dst_stage_mask(&wait_stages)
            .command_buffers(&cmds)
            .signal_semaphores(&signal)
            .push_next(&mut timeline_info)];
        let result = {
            let queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            // SAFETY: the compute queue is used under its mutex; the command buffer has ended;
            // every semaphore value waited on was submitted for signalling before it.
            unsafe { raw.queue_submit(*queue, &submit, vk::Fence::null()) }
        };
        if let Err(e) = result {
            self.book
                .fail(self.book.number(), self.shared.vk_error("vkQueueSubmit", e));
            // Signal the value from the host, after the values before it, so no waiter hangs.
            let _ = self.timeline.wait(st.submitted);
            let info = vk::SemaphoreSignalInfo::default()
                .semaphore(self.timeline.raw)
                .value(value);
            // SAFETY: every earlier value has been reached, and `value` is the next one.
            let _ = unsafe { raw.signal_semaphore(&info) };
        }
        st.submitted = value;
        // Waited-on timelines stay alive until this submission completes.
        batch
            .held
            .extend(batch.waits.drain(..).map(|(t, _)| Held::Timeline(t)));
        st.in_flight.push_back(Submitted {
            value,
            cmd: batch.cmd,
            held: batch.held,
            descriptor_pools: batch.descriptor_pools,
        });
    }

    /// Submits the batch and waits for everything submitted so far.
    pub(super) fn sync(&self, st: &mut QueueState) -> Result<()> {
        self.flush(st);
        self.timeline.wait(st.submitted)?;
        self.retire(st)
    }

    /// True when nothing of this queue is recorded, waited for or running.
    pub(super) fn idle(st: &QueueState) -> bool {
        st.batch.is_empty() && st.in_flight.is_empty()
    }

    /// Copies `data` into the upload arena; returns the chunk's buffer and the offset.
    pub(super) fn upload(&self, st: &mut QueueState, data: &[u8]) -> Result<(vk::Buffer, u64)> {
        let need = data.len() as u64;
        let fits = st
            .arena
            .current
            .as_ref()
            .is_some_and(|(c, used)| c.bytes - used >= need);
        if !fits {
            st.arena.current = None;
            let chunk = match st.arena.chunks.iter().find(|c| Arc::strong_count(c) == 1) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(Allocation::new(
                        &self.shared,
                        ARENA_CHUNK.max(need),
                        Purpose::Staging,
                    )?);
                    if st.arena.chunks.len() < ARENA_KEEP {
                        st.arena.chunks.push(c.clone());
                    }
                    c
                }
            };
            st.arena.current = Some((chunk, 0));
        }
        let Some((chunk, used)) = st.arena.current.as_mut() else {
            return Err(Error::internal("upload arena: no current chunk"));
        };
        let ptr = chunk
            .mapped()
            .ok_or_else(|| Error::internal("upload arena: staging memory is not mapped"))?;
        let offset = *used;
        // SAFETY: the chunk is mapped, `offset + need` lies inside it, and no submission uses
        // this range: ranges are handed out once per chunk use, and a chunk is reused only
        // when no submission holds it.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.add(offset as usize), data.len())
        };
        *used = (offset + need).div_ceil(4) * 4;
        let buffer = chunk.buffer;
        st.batch.held.push(Held::Memory(chunk.clone()));
        Ok((buffer, offset))
    }
}
