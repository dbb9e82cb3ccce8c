//! In-order queues on the device's compute queue, and events on timeline semaphores.
//!
//! A queue records commands into a command buffer (its *batch*), with a full memory barrier
//! before each command, and submits the batch at a sync point (a read, `finish`, an event, a
//! wait on another device's event) or once it holds [`BATCH_COMMANDS`] commands. Each
//! submission signals the next value of the queue's timeline semaphore; an event is a
//! (semaphore, value) pair. Resources a submission uses are held until its value is reached.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyaccel_hal::{
    validate, Buffer, BufferView, Device, Error, Event, Kernel, KernelArg, LaunchDims, Queue,
    Result,
};
use ash::vk;

use crate::device::{DeviceShared, VulkanDevice};
use crate::memory::{Allocation, Purpose, VulkanMemory};
use crate::pipeline::VulkanKernel;

/// A batch is submitted once it holds this many commands, so that the device starts working
/// while the host records more.
pub const BATCH_COMMANDS: usize = 64;

/// Writes of at most this many bytes, 4-byte aligned, go inline into the command buffer.
const INLINE_WRITE: usize = 65536;
/// Size of one chunk of a queue's upload arena, for small writes and unaligned fills.
const ARENA_CHUNK: u64 = 4 << 20;
/// Writes up to this size go through the upload arena; larger ones get their own staging buffer.
const ARENA_WRITE: usize = 1 << 20;
/// Upload-arena chunks a queue keeps for reuse.
const ARENA_KEEP: usize = 4;
/// Descriptor sets per descriptor pool, and storage-buffer descriptors per pool.
const POOL_SETS: u32 = 64;
const POOL_BUFFERS: u32 = 1024;

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

/// A timeline semaphore, destroyed when the last queue or event holding it is gone.
pub(crate) struct Timeline {
    shared: Arc<DeviceShared>,
    raw: vk::Semaphore,
}

impl Timeline {
    fn new(shared: &Arc<DeviceShared>) -> Result<Arc<Timeline>> {
        let mut kind = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(vk::SemaphoreType::TIMELINE)
            .initial_value(0);
        let info = vk::SemaphoreCreateInfo::default().push_next(&mut kind);
        // SAFETY: a valid create info; timeline semaphores were enabled at device creation.
        let raw = unsafe { shared.raw.create_semaphore(&info, None) }
            .map_err(|e| shared.vk_error("vkCreateSemaphore", e))?;
        Ok(Arc::new(Timeline {
            shared: shared.clone(),
            raw,
        }))
    }

    /// The value reached so far.
    fn value(&self) -> Result<u64> {
        // SAFETY: the semaphore is a live timeline semaphore of this device.
        unsafe { self.shared.raw.get_semaphore_counter_value(self.raw) }
            .map_err(|e| self.shared.vk_error("vkGetSemaphoreCounterValue", e))
    }

    /// Waits until the semaphore reaches `value`.
    fn wait(&self, value: u64) -> Result<()> {
        if value == 0 {
            return Ok(());
        }
        let semaphores = [self.raw];
        let values = [value];
        let info = vk::SemaphoreWaitInfo::default()
            .semaphores(&semaphores)
            .values(&values);
        // SAFETY: a valid wait info on a live semaphore; every value waited on has been
        // submitted for signalling (or is signalled from the host on a failed submission).
        unsafe { self.shared.raw.wait_semaphores(&info, u64::MAX) }
            .map_err(|e| self.shared.vk_error("vkWaitSemaphores", e))
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        // SAFETY: only queues and events hold a timeline; a queue waits for its submissions
        // before it goes, and a submission that waits on another queue's timeline holds that
        // timeline (through the batch) until it completes.
        unsafe { self.shared.raw.destroy_semaphore(self.raw, None) };
    }
}

/// A one-query timestamp pool, written by the submission of an event.
struct TimestampQuery {
    shared: Arc<DeviceShared>,
    pool: vk::QueryPool,
}

impl Drop for TimestampQuery {
    fn drop(&mut self) {
        // SAFETY: the submission that writes the query holds it until it completes.
        unsafe { self.shared.raw.destroy_query_pool(self.pool, None) };
    }
}

/// A point in a Vulkan queue: its timeline semaphore reaching a value, with the device time
/// at which the work before it had completed where the device has timestamps.
pub struct VulkanEvent {
    shared: Arc<DeviceShared>,
    timeline: Arc<Timeline>,
    value: u64,
    query: Option<Arc<TimestampQuery>>,
    /// The queue's unreported error when the event was recorded: the work before it failed.
    error: Option<Error>,
}

impl VulkanEvent {
    fn timestamp(&self) -> Result<u64> {
        if let Some(e) = &self.error {
            // The batch of a failed queue is skipped, so its timestamp was never written.
            return Err(e.clone().context("elapsed_since"));
        }
        let query = self.query.as_ref().ok_or_else(|| {
            Error::unsupported(format!(
                "elapsed_since: {} has no timestamps on its compute queue \
                 (timestampComputeAndGraphics)",
                self.shared.id
            ))
        })?;
        let mut ticks = [0u64; 1];
        // SAFETY: the query was reset and written by a submission that has completed (the
        // caller checked the event is done); the result array matches one 64-bit query.
        unsafe {
            self.shared.raw.get_query_pool_results(
                query.pool,
                0,
                &mut ticks,
                vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
            )
        }
        .map_err(|e| self.shared.vk_error("vkGetQueryPoolResults", e))?;
        Ok(ticks[0] & self.shared.timestamp_mask)
    }
}

impl Event for VulkanEvent {
    fn wait(&self) -> Result<()> {
        self.timeline.wait(self.value)?;
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn is_done(&self) -> bool {
        // A failed query means the device is lost: nothing more will complete, and `wait`
        // reports the error.
        self.timeline.value().map_or(true, |v| v >= self.value)
    }

    fn elapsed_since(&self, start: &dyn Event) -> Result<Duration> {
        let start = start
            .as_any()
            .downcast_ref::<VulkanEvent>()
            .filter(|s| Arc::ptr_eq(&s.shared, &self.shared))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "elapsed_since: the start event is not from a queue of {}; both events \
                     must come from the same device",
                    self.shared.id
                ))
            })?;
        if !start.is_done() || !self.is_done() {
            return Err(Error::invalid_argument(
                "elapsed_since: both events must have completed; wait on them first",
            ));
        }
        let (t0, t1) = (start.timestamp()?, self.timestamp()?);
        let ticks = t1.wrapping_sub(t0) & self.shared.timestamp_mask;
        let nanos = ticks as f64 * self.shared.limits.timestamp_period_ns;
        Ok(Duration::from_nanos(nanos as u64))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What a submission holds alive until it completes: buffers, staging, kernels, queries.
/// Never read; dropping it is the point.
#[allow(dead_code)]
enum Held {
    Buffer(Buffer),
    Kernel(Arc<dyn Kernel>),
    Memory(Arc<Allocation>),
    Timeline(Arc<Timeline>),
    Query(Arc<TimestampQuery>),
}

/// Commands recorded and not yet submitted.
#[derive(Default)]
struct Batch {
    cmd: Option<vk::CommandBuffer>,
    commands: usize,
    held: Vec<Held>,
    descriptor_pools: Vec<vk::DescriptorPool>,
    /// Timeline values of this device to wait for on the device before the batch runs.
    waits: Vec<(Arc<Timeline>, u64)>,
    /// Events of other devices or backends, waited for on the host before submitting.
    host_waits: Vec<Arc<dyn Event>>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.cmd.is_none() && self.waits.is_empty() && self.host_waits.is_empty()
    }
}

/// A submitted batch, kept until the timeline reaches its value.
struct Submitted {
    value: u64,
    cmd: Option<vk::CommandBuffer>,
    held: Vec<Held>,
    descriptor_pools: Vec<vk::DescriptorPool>,
}

/// Host-visible chunks that small uploads are copied into, reused once no submission uses them.
#[derive(Default)]
struct UploadArena {
    chunks: Vec<Arc<Allocation>>,
    current: Option<(Arc<Allocation>, u64)>,
}

struct QueueState {
    pool: vk::CommandPool,
    free_cmds: Vec<vk::CommandBuffer>,
    free_descriptor_pools: Vec<vk::DescriptorPool>,
    batch: Batch,
    in_flight: VecDeque<Submitted>,
    /// The last timeline value submitted for signalling.
    submitted: u64,
    /// The first asynchronous failure not yet reported.
    sticky: Option<Error>,
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
                sticky: None,
                arena: UploadArena::default(),
                placeholder: None,
            }),
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

    /// Frees what completed submissions held.
    fn retire(&self, st: &mut QueueState) -> Result<()> {
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

    fn recycle(&self, st: &mut QueueState, done: Submitted) {
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
    fn cmd(&self, st: &mut QueueState) -> Result<vk::CommandBuffer> {
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
    fn command(&self, st: &mut QueueState) -> Result<vk::CommandBuffer> {
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

    fn maybe_flush(&self, st: &mut QueueState) {
        if st.batch.commands >= BATCH_COMMANDS {
            self.flush(st);
        }
    }

    /// Submits the batch. Failures become the queue's sticky error.
    fn flush(&self, st: &mut QueueState) {
        if st.batch.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut st.batch);
        for event in batch.host_waits.drain(..) {
            if st.sticky.is_none() {
                if let Err(e) = event.wait() {
                    st.sticky = Some(e.context("waiting on an event of another queue"));
                }
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
        let mut run = st.sticky.is_none();
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
                st.sticky = Some(self.shared.vk_error("vkEndCommandBuffer", e));
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
            st.sticky
                .get_or_insert_with(|| self.shared.vk_error("vkQueueSubmit", e));
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
    fn sync(&self, st: &mut QueueState) -> Result<()> {
        self.flush(st);
        self.timeline.wait(st.submitted)?;
        self.retire(st)
    }

    /// Reports and clears the sticky error.
    fn report(st: &mut QueueState) -> Result<()> {
        match st.sticky.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// True when nothing of this queue is recorded, waited for or running.
    fn idle(st: &QueueState) -> bool {
        st.batch.is_empty() && st.in_flight.is_empty()
    }

    /// Copies `data` into the upload arena; returns the chunk's buffer and the offset.
    fn upload(&self, st: &mut QueueState, data: &[u8]) -> Result<(vk::Buffer, u64)> {
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

    /// The descriptor set for one launch, from the batch's descriptor pool.
    fn descriptor_set(
        &self,
        st: &mut QueueState,
        layout: vk::DescriptorSetLayout,
    ) -> Result<vk::DescriptorSet> {
        let raw = &self.shared.raw;
        let layouts = [layout];
        let allocate = |pool: vk::DescriptorPool| {
            let info = vk::DescriptorSetAllocateInfo::default()
                .descriptor_pool(pool)
                .set_layouts(&layouts);
            // SAFETY: the pool is this queue's, used under the state lock; the layout is live.
            unsafe { raw.allocate_descriptor_sets(&info) }
        };
        if let Some(&pool) = st.batch.descriptor_pools.last() {
            match allocate(pool) {
                Ok(sets) if !sets.is_empty() => return Ok(sets[0]),
                Ok(_)
                | Err(vk::Result::ERROR_OUT_OF_POOL_MEMORY)
                | Err(vk::Result::ERROR_FRAGMENTED_POOL) => {}
                Err(e) => return Err(self.shared.vk_error("vkAllocateDescriptorSets", e)),
            }
        }
        let pool = match st.free_descriptor_pools.pop() {
            Some(pool) => pool,
            None => {
                let sizes = [vk::DescriptorPoolSize {
                    ty: vk::DescriptorType::STORAGE_BUFFER,
                    descriptor_count: POOL_BUFFERS,
                }];
                let info = vk::DescriptorPoolCreateInfo::default()
                    .max_sets(POOL_SETS)
                    .pool_sizes(&sizes);
                // SAFETY: a valid create info.
                unsafe { raw.create_descriptor_pool(&info, None) }
                    .map_err(|e| self.shared.vk_error("vkCreateDescriptorPool", e))?
            }
        };
        st.batch.descriptor_pools.push(pool);
        match allocate(pool) {
            Ok(sets) if !sets.is_empty() => Ok(sets[0]),
            Ok(_) => Err(Error::internal("vkAllocateDescriptorSets returned no set")),
            Err(e) => Err(self.shared.vk_error("vkAllocateDescriptorSets", e)),
        }
    }

    fn placeholder(&self, st: &mut QueueState) -> Result<Arc<Allocation>> {
        if let Some(p) = &st.placeholder {
            return Ok(p.clone());
        }
        let p = Arc::new(Allocation::new(&self.shared, 16, Purpose::Device)?);
        st.placeholder = Some(p.clone());
        Ok(p)
    }
}

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
        if st.sticky.is_some() {
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
            return Self::report(&mut st);
        }
        let alloc = self.allocation_of("read", src)?;
        let offset = src.offset();
        if let (Some(ptr), true) = (alloc.mapped(), self.direct()) {
            self.sync(&mut st)?;
            Self::report(&mut st)?;
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
        if st.sticky.is_none() {
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
        Self::report(&mut st)?;
        let ptr = staging
            .mapped()
            .ok_or_else(|| Error::internal("read: staging memory is not mapped"))?;
        // SAFETY: the copy into the staging buffer has completed and was made visible to the
        // host; the staging buffer holds at least `dst.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(ptr, dst.as_mut_ptr(), dst.len()) };
        Ok(())
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

    fn launch(&self, kernel: &Arc<dyn Kernel>, dims: LaunchDims, args: &[KernelArg]) -> Result<()> {
        validate::kernel(kernel, self.id())?;
        let k = kernel
            .as_any()
            .downcast_ref::<VulkanKernel>()
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "launch: kernel `{}` is not a Vulkan kernel",
                    kernel.name()
                ))
            })?;
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
            validate::on_device(what, view, self.id())?;
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
            error: st.sticky.clone(),
        }))
    }

    fn wait_event(&self, event: &Arc<dyn Event>) -> Result<()> {
        let mut st = self.lock();
        let same_device = event
            .as_any()
            .downcast_ref::<VulkanEvent>()
            .filter(|e| Arc::ptr_eq(&e.shared, &self.shared));
        match same_device {
            Some(e) if e.error.is_some() => {
                // The work before the event failed: what was queued before this wait runs,
                // what comes after is skipped until the failure is reported.
                self.flush(&mut st);
                if let (None, Some(err)) = (&st.sticky, &e.error) {
                    st.sticky = Some(err.clone().context("waiting on an event of another queue"));
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
        Self::report(&mut st)
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
                sticky: None,
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
