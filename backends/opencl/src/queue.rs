//! In-order command queues with profiling, and their events.
//!
//! Every command is enqueued with an event and a sequence number; the queue keeps the event
//! (with whatever the command needs kept alive: the copy of the data being written, sub-buffers
//! of a launch) until the command has completed. At `read` and `finish` the queue looks at those
//! events: the first failure (a negative execution status, or an awaited event that failed) is
//! the queue's asynchronous error, and comes back there.

use std::any::Any;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyaccel_hal::{
    run_detached, validate, Bookkeeping, BufferView, Device, Error, ErrorCode, Event, Job, Kernel,
    KernelArg, LaunchDims, Mark, Queue, Result,
};
use opencl3::command_queue::{
    create_command_queue, enqueue_copy_buffer, enqueue_fill_buffer, enqueue_map_buffer,
    enqueue_marker_with_wait_list, enqueue_read_buffer, enqueue_unmap_mem_object,
    enqueue_write_buffer, finish, flush, CL_BLOCKING, CL_NON_BLOCKING, CL_QUEUE_PROFILING_ENABLE,
};
use opencl3::event::{
    create_user_event, get_event_profiling_data, set_user_event_status, wait_for_events,
    CL_COMPLETE, CL_PROFILING_COMMAND_END,
};
use opencl3::memory::{CL_MAP_READ, CL_MAP_WRITE};
use opencl3::types::{cl_command_queue, cl_context, cl_event, cl_mem};

use crate::cl::{cl_error, code_name, le_u64, EventHandle, MemHandle, QueueHandle};
use crate::device::OpenClDevice;
use crate::memory::OpenClMemory;
use crate::program::OpenClKernel;

/// Pending events are scanned for completion once there are this many (and then whenever their
/// number has doubled), so that a queue that is never synchronised does not grow without bound.
const PRUNE_MIN: usize = 64;

/// From this size a write to an idle queue is a blocking write from the caller's bytes.
const DIRECT_WRITE_BYTES: usize = 1 << 20;

/// What a pending command needs kept alive until it completes.
enum Keep {
    /// Nothing beyond what OpenCL itself retains.
    Nothing,
    /// The host copy of the bytes being written.
    Bytes(#[allow(dead_code)] Vec<u8>),
    /// Sub-buffers made for a kernel's arguments.
    Mems(#[allow(dead_code)] Vec<MemHandle>),
}

struct Pending {
    seq: u64,
    event: EventHandle,
    what: Arc<str>,
    keep: Keep,
}

struct State {
    pending: Vec<Pending>,
    prune_at: usize,
}

/// An in-order, profiling-enabled command queue of an OpenCL device.
///
/// - `write` copies the data and returns at once; the copy lives until the command completes.
/// - `read` waits for the data (and for every earlier command).
/// - `fill` at an offset or length that is not a multiple of the pattern (OpenCL refuses
///   those) is split into a few bytes written from the host and an aligned fill.
/// - `launch` passes a [`KernelArg::Buffer`] view at offset 0 as the buffer itself; a view at
///   another offset becomes a sub-buffer, which OpenCL allows only at multiples of
///   [`OpenClDevice::base_address_alignment`] (other offsets are `Unsupported`: pass the whole
///   buffer and an element offset instead). [`KernelArg::Bytes`] is a by-value argument. When
///   `dims.local` is given, each global size must be a multiple of it.
/// - `wait_event` on an event that has completed costs nothing; otherwise later commands wait
///   on an OpenCL user event that a helper thread completes when the awaited event (of this or
///   any other device) completes.
/// - An asynchronous failure (a command whose event ends with a negative status, or an awaited
///   event that fails) comes back with its error at the next `read` or `finish`, and from the
///   events recorded after it (and before that report). Commands submitted once the failure is
///   known are skipped until it has been reported; commands already enqueued when it happens
///   still run, since OpenCL cannot withdraw them and the queue never makes an OpenCL event
///   fail on purpose: PoCL 3.1 mishandles failed events (a command whose wait list holds an
///   event that has already failed never runs, callbacks are not called for failed events, and
///   a failed event may be touched after its last release, which crashes). A failed awaited
///   event is recorded on the host instead, and its user event completed normally.
pub struct OpenClQueue {
    device: Arc<OpenClDevice>,
    queue: QueueHandle,
    state: Mutex<State>,
    /// Command numbers and failures (the HAL's sticky-failure rule).
    book: Bookkeeping,
}

/// The `cl_mem` of a view's buffer, which must be memory of `device` itself (not merely of a
/// device with the same id from another probe).
/// `what` is formatted only for an error message.
pub(crate) fn resolve(
    what: impl std::fmt::Display,
    view: &BufferView,
    device: &OpenClDevice,
) -> Result<cl_mem> {
    let memory = view.buffer().downcast::<OpenClMemory>().ok_or_else(|| {
        Error::invalid_argument(format!(
            "{what}: buffer of device {} is not OpenCL memory",
            view.buffer().device_id()
        ))
    })?;
    if !memory.in_context(device.context()) {
        return Err(Error::invalid_argument(format!(
            "{what}: the buffer belongs to another OpenCL context (a device object of another \
             probe, also called {}); use buffers of the queue's own device",
            device.info().id
        )));
    }
    Ok(memory.raw())
}

impl OpenClQueue {
    pub(crate) fn new(device: Arc<OpenClDevice>) -> Result<OpenClQueue> {
        // SAFETY: the device belongs to the context (the context was made for it).
        let raw = unsafe {
            create_command_queue(device.context(), device.raw(), CL_QUEUE_PROFILING_ENABLE)
        }
        .map_err(|code| {
            cl_error(
                code,
                ErrorCode::Unavailable,
                format!("create_queue on {}", device.info().id),
            )
        })?;
        Ok(OpenClQueue {
            device,
            queue: QueueHandle::from_raw(raw),
            state: Mutex::new(State {
                pending: Vec::new(),
                prune_at: PRUNE_MIN,
            }),
            book: Bookkeeping::new(),
        })
    }

    fn id(&self) -> &str {
        &self.device.info().id
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueues one command (unless the queue has failed: then it is skipped until the error
    /// is reported) and keeps its event and `keep` until it completes.
    fn submit(
        &self,
        what: impl Into<Arc<str>>,
        keep: Keep,
        enqueue: impl FnOnce(cl_command_queue) -> Result<cl_event>,
    ) -> Result<()> {
        self.submit_numbered(what, keep, enqueue).map(|_| ())
    }

    /// [`OpenClQueue::submit`], giving the command's sequence number (`None` when skipped).
    fn submit_numbered(
        &self,
        what: impl Into<Arc<str>>,
        keep: Keep,
        enqueue: impl FnOnce(cl_command_queue) -> Result<cl_event>,
    ) -> Result<Option<u64>> {
        if self.book.failed() {
            return Ok(None);
        }
        let mut state = self.state();
        let event = EventHandle::from_raw(enqueue(self.queue.raw())?);
        // Numbered under the lock, in enqueue order.
        let seq = self.book.number();
        state.pending.push(Pending {
            seq,
            event,
            what: what.into(),
            keep,
        });
        if state.pending.len() >= state.prune_at {
            self.prune(&mut state);
        }
        Ok(Some(seq))
    }

    /// A sequence number for something that is not an enqueued command.
    fn reserve_seq(&self) -> u64 {
        let _ordered = self.state();
        self.book.number()
    }

    /// The error of a command whose event ended with `status` < 0.
    fn failure_of(&self, pending: &Pending, status: i32) -> Error {
        cl_error(
            status,
            ErrorCode::LaunchFailed,
            format!("{} on {} failed on the device", pending.what, self.id()),
        )
    }

    /// Whether every command enqueued so far has completed.
    fn idle(&self) -> bool {
        let mut state = self.state();
        self.prune(&mut state);
        state.pending.is_empty()
    }

    /// Drops the completed commands, recording their failures.
    fn prune(&self, state: &mut State) {
        let pending = std::mem::take(&mut state.pending);
        let mut running = Vec::with_capacity(pending.len());
        for p in pending {
            match p.event.status() {
                Ok(s) if s > 0 => running.push(p),
                Ok(0) => drop(p),
                Ok(s) => {
                    self.book.fail(p.seq, self.failure_of(&p, s));
                    // PoCL 3.1 may still touch a failed event after its final status is
                    // visible: never release one (failures are rare; a handle is small).
                    let Pending { event, keep, .. } = p;
                    std::mem::forget(event);
                    drop(keep);
                }
                Err(code) => {
                    self.book.fail(
                        p.seq,
                        cl_error(
                            code,
                            ErrorCode::Internal,
                            format!(
                                "{} on {}: cannot read its event's status",
                                p.what,
                                self.id()
                            ),
                        ),
                    );
                    // The command may still be using what it keeps: never free it.
                    std::mem::forget(p);
                }
            }
        }
        state.pending = running;
        state.prune_at = (state.pending.len() * 2).max(PRUNE_MIN);
    }

    /// After a wait: the queue's asynchronous error if there is one (which is then cleared),
    /// else `result`.
    fn settle(&self, result: Result<()>) -> Result<()> {
        {
            let mut state = self.state();
            self.prune(&mut state);
        }
        self.book.report(result)
    }

    fn fill_pieces(&self, dst: &BufferView, pattern: &[u8]) -> Result<()> {
        let mem = resolve("fill", dst, &self.device)?;
        // A pattern of equal bytes is a one-byte fill, which has no alignment rule.
        let pattern = if pattern.iter().all(|&b| b == pattern[0]) {
            &pattern[..1]
        } else {
            pattern
        };
        let p = pattern.len();
        let (start, end) = (dst.offset(), dst.offset() + dst.len());
        // OpenCL wants offset and size to be multiples of the pattern's size: fill the aligned
        // middle with the pattern rotated to match, and write the few bytes around it.
        let body_start = start.next_multiple_of(p).min(end);
        let body_len = (end - body_start) / p * p;
        let body_end = body_start + body_len;
        let byte_at = |pos: usize| pattern[(pos - start) % p];
        for (from, to) in [(start, body_start), (body_end, end)] {
            if from < to {
                let bytes: Vec<u8> = (from..to).map(byte_at).collect();
                let view = dst.buffer().view(from, to - from)?;
                self.write(&view, &bytes)?;
            }
        }
        if body_len > 0 {
            let rotated: Vec<u8> = (body_start..body_start + p).map(byte_at).collect();
            self.submit("fill", Keep::Nothing, |q| {
                // SAFETY: `mem` is a live buffer of this queue's context and the range lies in
                // it (the view is bounds-checked); the pattern is copied by the call.
                unsafe {
                    enqueue_fill_buffer(
                        q,
                        mem,
                        rotated.as_ptr().cast::<c_void>().cast_mut(),
                        p,
                        body_start,
                        body_len,
                        0,
                        std::ptr::null(),
                    )
                }
                .map_err(|code| {
                    cl_error(
                        code,
                        ErrorCode::LaunchFailed,
                        format!("fill of {body_len} bytes at {body_start} on {}", self.id()),
                    )
                })
            })?;
        }
        Ok(())
    }
}

impl Queue for OpenClQueue {
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
        let mem = resolve("write", dst, &self.device)?;
        let (offset, len) = (dst.offset(), dst.len());
        // An idle queue takes a blocking write straight from the caller's bytes (the driver's
        // one copy); otherwise the bytes are copied and written asynchronously from the copy.
        let direct = len >= DIRECT_WRITE_BYTES && !self.book.failed() && self.idle();
        let (blocking, keep, ptr) = if direct {
            (CL_BLOCKING, Keep::Nothing, data.as_ptr())
        } else {
            let owned = data.to_vec();
            let ptr = owned.as_ptr();
            (CL_NON_BLOCKING, Keep::Bytes(owned), ptr)
        };
        self.submit("write", keep, |q| {
            // SAFETY: `mem` is live and the range is bounds-checked; `ptr` points at the
            // caller's bytes for a blocking write (read by the driver before it returns), else
            // at the owned copy, which the pending entry keeps until the command has completed.
            unsafe {
                enqueue_write_buffer(
                    q,
                    mem,
                    blocking,
                    offset,
                    len,
                    ptr.cast::<c_void>().cast_mut(),
                    0,
                    std::ptr::null(),
                )
            }
            .map_err(|code| {
                cl_error(
                    code,
                    ErrorCode::LaunchFailed,
                    format!("write of {len} bytes at {offset} on {}", self.id()),
                )
            })
        })
    }

    fn read(&self, src: &BufferView, dst: &mut [u8]) -> Result<()> {
        validate::transfer("read", src, dst.len(), self.id())?;
        let mem = resolve("read", src, &self.device)?;
        if dst.is_empty() || self.book.failed() {
            return self.finish();
        }
        let (offset, len) = (src.offset(), src.len());
        let fail = |code| {
            cl_error(
                code,
                ErrorCode::LaunchFailed,
                format!("read of {len} bytes at {offset} on {}", self.id()),
            )
        };
        let raw = {
            let _order = self.state();
            // SAFETY: `mem` is live and the range is bounds-checked; `dst` is borrowed until
            // this function returns, and it returns only after the command has completed.
            unsafe {
                enqueue_read_buffer(
                    self.queue.raw(),
                    mem,
                    CL_NON_BLOCKING,
                    offset,
                    len,
                    dst.as_mut_ptr().cast::<c_void>(),
                    0,
                    std::ptr::null(),
                )
            }
        }
        .map_err(fail)?;
        let event = EventHandle::from_raw(raw);
        let waited = wait_for_events(&[event.raw()]);
        let result = match event.status() {
            Ok(0) => Ok(()),
            Ok(s) if s < 0 => Err(fail(s)),
            other => {
                // The read may not be done: do not return while the driver could still write
                // into `dst`.
                let _ = finish(self.queue.raw());
                Err(match waited.err().or(other.err()) {
                    Some(code) => fail(code),
                    None => Error::internal(format!(
                        "read on {}: the command was still running after clWaitForEvents",
                        self.id()
                    )),
                })
            }
        };
        self.settle(result)
    }

    fn copy(&self, src: &BufferView, dst: &BufferView) -> Result<()> {
        validate::copy(src, dst, self.id())?;
        if src.is_empty() {
            return Ok(());
        }
        let (s, d) = (
            resolve("copy src", src, &self.device)?,
            resolve("copy dst", dst, &self.device)?,
        );
        let (so, doff, len) = (src.offset(), dst.offset(), src.len());
        self.submit("copy", Keep::Nothing, |q| {
            // SAFETY: both buffers are live buffers of this context and both ranges are
            // bounds-checked and disjoint.
            unsafe { enqueue_copy_buffer(q, s, d, so, doff, len, 0, std::ptr::null()) }.map_err(
                |code| {
                    cl_error(
                        code,
                        ErrorCode::LaunchFailed,
                        format!("copy of {len} bytes from {so} to {doff} on {}", self.id()),
                    )
                },
            )
        })
    }

    fn fill(&self, dst: &BufferView, pattern: &[u8]) -> Result<()> {
        validate::fill(dst, pattern, self.id())?;
        if dst.is_empty() {
            return Ok(());
        }
        self.fill_pieces(dst, pattern)
    }

    fn submit_launch(
        &self,
        kernel: &Arc<dyn Kernel>,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<()> {
        let k = validate::kernel_as::<OpenClKernel>(kernel, "an OpenCL kernel")?;
        let Some(mut launch) = k.prepare(&self.device, dims, args)? else {
            return Ok(());
        };
        let sub_buffers = std::mem::take(&mut launch.sub_buffers);
        self.submit(k.label(), Keep::Mems(sub_buffers), |q| {
            k.enqueue(q, &self.device, &launch)
        })
    }

    fn record_event(&self) -> Result<Arc<dyn Event>> {
        let (raw, mark) = {
            let _ordered = self.state();
            // SAFETY: a marker with an empty wait list on this live queue.
            let raw =
                unsafe { enqueue_marker_with_wait_list(self.queue.raw(), 0, std::ptr::null()) };
            (raw, self.book.mark())
        };
        let raw = raw.map_err(|code| {
            cl_error(
                code,
                ErrorCode::LaunchFailed,
                format!("record_event on {}", self.id()),
            )
        })?;
        let event = EventHandle::from_raw(raw);
        // Other queues may wait on it: make sure the work before it reaches the device.
        flush(self.queue.raw()).map_err(|code| {
            cl_error(
                code,
                ErrorCode::LaunchFailed,
                format!("flush on {}", self.id()),
            )
        })?;
        Ok(Arc::new(OpenClEvent {
            event,
            device_id: self.device.id_arc().clone(),
            context: self.device.context(),
            mark,
        }))
    }

    fn wait_event(&self, event: &Arc<dyn Event>) -> Result<()> {
        if self.book.failed() {
            return Ok(());
        }
        if event.is_done() {
            let seq = self.reserve_seq();
            self.book.wait_foreign(seq, &**event);
            return Ok(());
        }
        // Later commands wait on a user event of this queue's context, which a helper thread
        // completes once `event` has completed, successfully or not. Two PoCL 3.1 behaviours
        // rule out the direct ways for events of this very device: a command whose wait list
        // holds an event that had already failed when the command was enqueued never runs (so
        // putting `event` itself in the wait list could hang if it fails meanwhile), and a
        // callback registered with clSetEventCallback is never called when its event fails.
        // The user event is completed only after the marker that waits on it is enqueued.
        let user = create_user_event(self.device.context()).map_err(|code| {
            cl_error(
                code,
                ErrorCode::Internal,
                format!("wait_event on {}: clCreateUserEvent", self.id()),
            )
        })?;
        let user = EventHandle::from_raw(user);
        let raw = user.raw();
        let seq = self.submit_numbered("wait_event", Keep::Nothing, |q| {
            // SAFETY: `raw` is a live user event of this queue's context.
            unsafe { enqueue_marker_with_wait_list(q, 1, &raw) }.map_err(|code| {
                cl_error(
                    code,
                    ErrorCode::LaunchFailed,
                    format!("wait_event on {}", self.id()),
                )
            })
        })?;
        match seq {
            // Completed normally even when the awaited work failed (see the type's docs).
            Some(seq) => self.book.wait_foreign_then(seq, event.clone(), move || {
                // Fails only for an invalid or already completed event: neither can happen.
                let _ = set_user_event_status(user.raw(), CL_COMPLETE);
            }),
            // Skipped: nothing waits on the user event.
            None => {
                let _ = set_user_event_status(user.raw(), CL_COMPLETE);
            }
        }
        Ok(())
    }

    fn map_host(
        &self,
        view: &BufferView,
        f: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<bool> {
        if !self.device.host_addressable() {
            return Ok(false);
        }
        validate::on_device("map_host", view, self.id())?;
        let mem = resolve("map_host", view, &self.device)?;
        self.finish()?;
        // Held until the unmap: a command another thread submits meanwhile waits for `f`.
        let _ordered = self.state();
        if view.is_empty() {
            f(&mut [])?;
            return Ok(true);
        }
        let (offset, len) = (view.offset(), view.len());
        let q = self.queue.raw();
        let fail = |code, what: &str| {
            cl_error(
                code,
                ErrorCode::LaunchFailed,
                format!("{what} of {len} bytes at {offset} on {}", self.id()),
            )
        };
        let mut ptr: cl_mem = std::ptr::null_mut();
        // SAFETY: `mem` is live and the range is bounds-checked; a blocking map returns a host
        // pointer to `len` bytes that stays valid until the unmap below.
        let event = unsafe {
            enqueue_map_buffer(
                q,
                mem,
                CL_BLOCKING,
                CL_MAP_READ | CL_MAP_WRITE,
                offset,
                len,
                &mut ptr,
                0,
                std::ptr::null(),
            )
        }
        .map_err(|code| fail(code, "map"))?;
        drop(EventHandle::from_raw(event));
        // SAFETY: the mapped region is `len` bytes at `ptr`, ours until the unmap; no command of
        // this queue runs meanwhile (the queue is idle and its lock is held).
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
        let result = f(bytes);
        // SAFETY: unmaps the region mapped above, once; `bytes` is no longer used.
        let unmapped = unsafe { enqueue_unmap_mem_object(q, mem, ptr, 0, std::ptr::null()) }
            .map(|e| drop(EventHandle::from_raw(e)))
            .and_then(|()| finish(q))
            .map_err(|code| fail(code, "unmap"));
        result.and(unmapped).map(|()| true)
    }

    fn finish(&self) -> Result<()> {
        let result = finish(self.queue.raw()).map_err(|code| {
            cl_error(
                code,
                ErrorCode::LaunchFailed,
                format!("finish on {}", self.id()),
            )
        });
        self.settle(result)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for OpenClQueue {
    /// Does not wait for the queue's work: what unfinished commands keep (the data of a write)
    /// is freed by a helper thread once they complete. OpenCL itself keeps the queue until its
    /// commands are done.
    fn drop(&mut self) {
        let _ = flush(self.queue.raw());
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let running: Vec<Pending> = std::mem::take(&mut state.pending)
            .into_iter()
            .filter(|p| !matches!(p.event.status(), Ok(s) if s <= 0))
            .collect();
        if running.is_empty() {
            return;
        }
        let free_when_done: Job = Box::new(move || {
            for p in running {
                let _ = wait_for_events(&[p.event.raw()]);
                if !matches!(p.event.status(), Ok(s) if s <= 0) {
                    // Not known to be done: the device may still use what it keeps.
                    std::mem::forget(p);
                }
            }
        });
        run_detached(
            &format!("anyaccel-{}-drop", self.device.info().id),
            free_when_done,
        );
    }
}

/// A point in an OpenCL queue, with device timestamps.
pub struct OpenClEvent {
    event: EventHandle,
    device_id: Arc<str>,
    context: cl_context,
    /// The failures of the queue's commands before it come back from `wait`.
    mark: Mark,
}

// SAFETY: `context` is only compared, never dereferenced; the other fields are Send.
unsafe impl Send for OpenClEvent {}
// SAFETY: as above.
unsafe impl Sync for OpenClEvent {}

impl OpenClEvent {
    fn end_ns(&self) -> Result<u64> {
        let bytes = get_event_profiling_data(self.event.raw(), CL_PROFILING_COMMAND_END).map_err(
            |code| {
                Error::unsupported(format!(
                    "elapsed_since: {} gives no timestamp for this event: {}",
                    self.device_id,
                    code_name(code)
                ))
            },
        )?;
        le_u64(&bytes).ok_or_else(|| {
            Error::internal(format!(
                "elapsed_since: {} returned a {}-byte timestamp",
                self.device_id,
                bytes.len()
            ))
        })
    }
}

impl Event for OpenClEvent {
    fn wait(&self) -> Result<()> {
        let waited = wait_for_events(&[self.event.raw()]);
        let status = self.event.status();
        // Every command before the event has completed: their failures are known.
        if let Some(e) = self.mark.failure() {
            return Err(e);
        }
        match status {
            Ok(0) => Ok(()),
            Ok(s) if s < 0 => Err(cl_error(
                s,
                ErrorCode::LaunchFailed,
                format!("a command before this event failed on {}", self.device_id),
            )),
            other => Err(match waited.err().or(other.err()) {
                Some(code) => cl_error(
                    code,
                    ErrorCode::Internal,
                    format!("waiting on an event of {}", self.device_id),
                ),
                None => Error::internal(format!(
                    "an event of {} was still pending after clWaitForEvents",
                    self.device_id
                )),
            }),
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.event.status(), Ok(s) if s <= 0)
    }

    fn elapsed_since(&self, start: &dyn Event) -> Result<Duration> {
        let start = start
            .as_any()
            .downcast_ref::<OpenClEvent>()
            .filter(|s| s.context == self.context)
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "elapsed_since: start event is not from a queue of {}; both events must be",
                    self.device_id
                ))
            })?;
        if !(start.is_done() && self.is_done()) {
            return Err(Error::invalid_argument(
                "elapsed_since: both events must have completed; wait on them first",
            ));
        }
        let (t0, t1) = (start.end_ns()?, self.end_ns()?);
        Ok(Duration::from_nanos(t1.saturating_sub(t0)))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
