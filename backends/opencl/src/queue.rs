//! In-order command queues with profiling, and their events.
//!
//! Every command is enqueued with an event, which the queue keeps (with whatever the command
//! needs kept alive: the copy of the data being written, sub-buffers of a launch) until the
//! command has completed. At `read` and `finish` the queue looks at those events: the first one
//! with a negative execution status is the queue's asynchronous error, and comes back there.

use std::any::Any;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyaccel_hal::{
    validate, BufferView, Device, Error, ErrorCode, Event, Kernel, KernelArg, LaunchDims, Queue,
    Result,
};
use opencl3::command_queue::{
    create_command_queue, enqueue_copy_buffer, enqueue_fill_buffer, enqueue_marker_with_wait_list,
    enqueue_read_buffer, enqueue_write_buffer, finish, flush, CL_NON_BLOCKING,
    CL_QUEUE_PROFILING_ENABLE,
};
use opencl3::error_codes::CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST;
use opencl3::event::{
    create_user_event, get_event_profiling_data, set_user_event_status, wait_for_events,
    CL_COMPLETE, CL_PROFILING_COMMAND_END,
};
use opencl3::types::{cl_command_queue, cl_context, cl_event, cl_mem};

use crate::cl::{cl_error, code_name, le_u64, EventHandle, MemHandle, QueueHandle};
use crate::device::OpenClDevice;
use crate::memory::OpenClMemory;
use crate::program::OpenClKernel;

/// Pending events are scanned for completion once there are this many (and then whenever their
/// number has doubled), so that a queue that is never synchronised does not grow without bound.
const PRUNE_MIN: usize = 64;

/// The first asynchronous error of a queue, shared with its events and with the threads that
/// wait on events of other devices for it.
#[derive(Default)]
struct Failure(Mutex<Option<Error>>);

impl Failure {
    fn lock(&self) -> MutexGuard<'_, Option<Error>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self) -> Option<Error> {
        self.lock().clone()
    }

    fn set_if_none(&self, error: Error) {
        let mut slot = self.lock();
        if slot.is_none() {
            *slot = Some(error);
        }
    }

    fn take(&self) -> Option<Error> {
        self.lock().take()
    }
}

/// What a pending command needs kept alive until it completes.
enum Keep {
    /// Nothing beyond what OpenCL itself retains.
    Nothing,
    /// The host copy of the bytes being written.
    Bytes(#[allow(dead_code)] Vec<u8>),
    /// Sub-buffers made for a kernel's arguments.
    Mems(#[allow(dead_code)] Vec<MemHandle>),
    /// The event waited on, for its error if the wait fails.
    Wait(Arc<dyn Event>),
}

/// Work for a helper thread.
type Job = Box<dyn FnOnce() + Send>;

struct Pending {
    event: EventHandle,
    what: String,
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
/// - An asynchronous failure (a command whose event ends with a negative status, or a failed
///   awaited event) makes the queue skip what is submitted after it, and comes back with its
///   error at the next `read` or `finish`.
pub struct OpenClQueue {
    device: Arc<OpenClDevice>,
    queue: QueueHandle,
    state: Mutex<State>,
    failure: Arc<Failure>,
}

/// The `cl_mem` of a view's buffer, which must be memory of `device` itself (not merely of a
/// device with the same id from another probe).
pub(crate) fn resolve(what: &str, view: &BufferView, device: &OpenClDevice) -> Result<cl_mem> {
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
            failure: Arc::new(Failure::default()),
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
        what: impl Into<String>,
        keep: Keep,
        enqueue: impl FnOnce(cl_command_queue) -> Result<cl_event>,
    ) -> Result<()> {
        if self.failure.get().is_some() {
            return Ok(());
        }
        let mut state = self.state();
        let event = EventHandle::from_raw(enqueue(self.queue.raw())?);
        state.pending.push(Pending {
            event,
            what: what.into(),
            keep,
        });
        if state.pending.len() >= state.prune_at {
            self.prune(&mut state);
        }
        Ok(())
    }

    /// The error of a command whose event ended with `status` < 0.
    fn failure_of(&self, pending: &Pending, status: i32) -> Error {
        if let Keep::Wait(origin) = &pending.keep {
            if let Err(e) = origin.wait() {
                return e.context("wait_event: the awaited work failed");
            }
        }
        cl_error(
            status,
            ErrorCode::LaunchFailed,
            format!("{} on {} failed on the device", pending.what, self.id()),
        )
    }

    /// Drops the completed commands, recording the first failure among them.
    fn prune(&self, state: &mut State) {
        let mut first = None;
        let mut unknown = Vec::new();
        state.pending.retain_mut(|p| match p.event.status() {
            Ok(s) if s > 0 => true,
            Ok(0) => false,
            Ok(s) => {
                if first.is_none() {
                    first = Some(self.failure_of(p, s));
                }
                false
            }
            Err(code) => {
                if first.is_none() {
                    first = Some(cl_error(
                        code,
                        ErrorCode::Internal,
                        format!(
                            "{} on {}: cannot read its event's status",
                            p.what,
                            self.id()
                        ),
                    ));
                }
                // The command may still be using what it keeps: never free it.
                unknown.push(std::mem::replace(&mut p.keep, Keep::Nothing));
                false
            }
        });
        std::mem::forget(unknown);
        if let Some(e) = first {
            self.failure.set_if_none(e);
        }
        state.prune_at = (state.pending.len() * 2).max(PRUNE_MIN);
    }

    /// After a wait: the queue's asynchronous error if there is one (which is then cleared),
    /// else `result`.
    fn settle(&self, result: Result<()>) -> Result<()> {
        {
            let mut state = self.state();
            self.prune(&mut state);
        }
        match self.failure.take() {
            Some(e) => Err(e),
            None => result,
        }
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

    /// Waits for `event` on a helper thread, then completes `user` with its outcome.
    fn await_event(&self, event: Arc<dyn Event>, user: EventHandle) {
        let failure = self.failure.clone();
        let job: Job = Box::new(move || {
            let status = match event.wait() {
                Ok(()) => CL_COMPLETE,
                Err(e) => {
                    failure.set_if_none(e.context("wait_event: the awaited work failed"));
                    CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST
                }
            };
            // Only fails for an invalid or already completed event: neither can happen here.
            let _ = set_user_event_status(user.raw(), status);
        });
        let job = Arc::new(Mutex::new(Some(job)));
        let run = |job: &Mutex<Option<Job>>| {
            let f = job.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(f) = f {
                f();
            }
        };
        let for_thread = job.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("anyaccel-{}-wait", self.id()))
            .spawn(move || run(&for_thread));
        if spawned.is_err() {
            // No thread to spare: wait here. Correct, only less asynchronous.
            run(&job);
        }
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
        let owned = data.to_vec();
        let ptr = owned.as_ptr();
        let (offset, len) = (dst.offset(), dst.len());
        self.submit("write", Keep::Bytes(owned), |q| {
            // SAFETY: `mem` is live and the range is bounds-checked; `ptr` points at the owned
            // copy, which the pending entry keeps until the command has completed.
            unsafe {
                enqueue_write_buffer(
                    q,
                    mem,
                    CL_NON_BLOCKING,
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
        if dst.is_empty() || self.failure.get().is_some() {
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

    fn launch(&self, kernel: &Arc<dyn Kernel>, dims: LaunchDims, args: &[KernelArg]) -> Result<()> {
        validate::kernel(kernel, self.id())?;
        let k = kernel
            .as_any()
            .downcast_ref::<OpenClKernel>()
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "launch: kernel `{}` is not an OpenCL kernel",
                    kernel.name()
                ))
            })?;
        let Some(mut launch) = k.prepare(&self.device, dims, args)? else {
            return Ok(());
        };
        let sub_buffers = std::mem::take(&mut launch.sub_buffers);
        self.submit(
            format!("kernel `{}`", k.name()),
            Keep::Mems(sub_buffers),
            |q| k.enqueue(q, &self.device, &launch),
        )
    }

    fn record_event(&self) -> Result<Arc<dyn Event>> {
        let known = self.failure.get();
        let raw = {
            let _order = self.state();
            // SAFETY: a marker with an empty wait list on this live queue.
            unsafe { enqueue_marker_with_wait_list(self.queue.raw(), 0, std::ptr::null()) }
        }
        .map_err(|code| {
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
            failure: self.failure.clone(),
            known,
        }))
    }

    fn wait_event(&self, event: &Arc<dyn Event>) -> Result<()> {
        if self.failure.get().is_some() {
            return Ok(());
        }
        if event.is_done() {
            if let Err(e) = event.wait() {
                self.failure
                    .set_if_none(e.context("wait_event: the awaited work failed"));
            }
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
        self.submit("wait_event", Keep::Wait(event.clone()), |q| {
            // SAFETY: `raw` is a live user event of this queue's context.
            unsafe { enqueue_marker_with_wait_list(q, 1, &raw) }.map_err(|code| {
                cl_error(
                    code,
                    ErrorCode::LaunchFailed,
                    format!("wait_event on {}", self.id()),
                )
            })
        })?;
        self.await_event(event.clone(), user);
        Ok(())
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
    fn drop(&mut self) {
        let finished = finish(self.queue.raw()).is_ok();
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let pending = std::mem::take(&mut state.pending);
        if !finished {
            // The device may still use what the commands keep: never free it.
            std::mem::forget(pending);
        }
    }
}

/// A point in an OpenCL queue, with device timestamps.
pub struct OpenClEvent {
    event: EventHandle,
    device_id: Arc<str>,
    context: cl_context,
    failure: Arc<Failure>,
    known: Option<Error>,
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
        if let Some(e) = &self.known {
            return Err(e.clone());
        }
        let waited = wait_for_events(&[self.event.raw()]);
        match self.event.status() {
            Ok(0) => Ok(()),
            Ok(s) if s < 0 => Err(self.failure.get().unwrap_or_else(|| {
                cl_error(
                    s,
                    ErrorCode::LaunchFailed,
                    format!("a command before this event failed on {}", self.device_id),
                )
            })),
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
