//! Queues (in-order streams of commands on one device) and events.

use std::ffi::c_void;
use std::sync::Arc;

use facade::{Device, Error, Event, Queue, Result};

use crate::buffer::{anyaccel_buffer_t, buffer};
use crate::handle::{self, from_ptr, to_ptr, Kind};
use crate::runtime::{anyaccel_device_t, device};
use crate::{anyaccel_status, check_device, guard, guard_out, non_null, same_device, slice_arg};

/// An in-order queue of commands on one device. Opaque.
pub struct anyaccel_queue_t {
    _opaque: [u8; 0],
}

/// A point in a queue's stream of commands. Opaque.
pub struct anyaccel_event_t {
    _opaque: [u8; 0],
}

pub(crate) struct QueueObj {
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) device: Arc<dyn Device>,
}

struct EventObj {
    event: Arc<dyn Event>,
    /// The device of the queue that recorded it: events of two devices (or of two runtimes)
    /// have no common clock.
    device: Arc<dyn Device>,
}

pub(crate) fn queue(q: *const anyaccel_queue_t) -> Result<Arc<QueueObj>> {
    queue_arg(q, "queue")
}

/// The queue handle `q`, named `what` in errors.
pub(crate) fn queue_arg(q: *const anyaccel_queue_t, what: &str) -> Result<Arc<QueueObj>> {
    handle::get(from_ptr(q), Kind::Queue, what)
}

fn event(e: *const anyaccel_event_t, what: &str) -> Result<Arc<EventObj>> {
    handle::get(from_ptr(e), Kind::Event, what)
}

/// Creates an in-order queue on `dev`.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_queue_create(
    dev: *mut anyaccel_device_t,
    out: *mut *mut anyaccel_queue_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_queue_create", "out", out, || {
            let dev = device(dev, "device")?;
            let obj = QueueObj {
                queue: dev.device.create_queue()?,
                device: dev.device.clone(),
            };
            Ok(to_ptr(handle::insert(Kind::Queue, Arc::new(obj))?))
        })
    }
}

/// Releases the caller's reference to a queue. Commands already submitted still run; call
/// `anyaccel_queue_finish` first to wait for them and see their errors.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_queue_destroy(q: *mut anyaccel_queue_t) -> anyaccel_status {
    guard("anyaccel_queue_destroy", || {
        handle::remove::<QueueObj>(from_ptr(q), Kind::Queue, "queue").map(drop)
    })
}

/// Copies `bytes` bytes from host memory `src` into `buf` at byte `offset`. `src` is copied
/// before the call returns; the device write may still be queued.
///
/// # Safety
/// `src` must be NULL or valid for reading `bytes` bytes (NULL is allowed when `bytes` is 0).
#[no_mangle]
pub unsafe extern "C" fn anyaccel_queue_write(
    q: *mut anyaccel_queue_t,
    buf: *mut anyaccel_buffer_t,
    offset: usize,
    src: *const c_void,
    bytes: usize,
) -> anyaccel_status {
    guard("anyaccel_queue_write", || {
        let q = queue(q)?;
        let b = buffer(buf, "buffer")?;
        check_device("buffer", &b.device, &q.device)?;
        b.writable("buffer")?;
        // SAFETY: NULL only with 0 bytes, else `bytes` readable bytes by the caller's contract.
        let data = unsafe { slice_arg(src as *const u8, bytes, "src") }?;
        q.queue.write(&b.buffer.view(offset, bytes)?, data)
    })
}

/// Waits for the queue's earlier commands, then copies `bytes` bytes of `buf` from byte
/// `offset` into host memory `dst`. An error of an earlier command comes back here.
///
/// # Safety
/// `dst` must be NULL or valid for writing `bytes` bytes (NULL is allowed when `bytes` is 0).
#[no_mangle]
pub unsafe extern "C" fn anyaccel_queue_read(
    q: *mut anyaccel_queue_t,
    buf: *mut anyaccel_buffer_t,
    offset: usize,
    dst: *mut c_void,
    bytes: usize,
) -> anyaccel_status {
    guard("anyaccel_queue_read", || {
        let q = queue(q)?;
        let b = buffer(buf, "buffer")?;
        check_device("buffer", &b.device, &q.device)?;
        let view = b.buffer.view(offset, bytes)?;
        if bytes == 0 {
            return q.queue.finish();
        }
        // SAFETY: valid for `bytes` writable bytes by the caller's contract.
        let out = unsafe { crate::slice_arg_mut(dst as *mut u8, bytes, "dst") }?;
        q.queue.read(&view, out)
    })
}

/// Copies `bytes` bytes from `src` at `src_offset` to `dst` at `dst_offset` on the device.
/// Both buffers must be of the queue's device; overlapping ranges of one buffer are refused.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_queue_copy(
    q: *mut anyaccel_queue_t,
    src: *mut anyaccel_buffer_t,
    src_offset: usize,
    dst: *mut anyaccel_buffer_t,
    dst_offset: usize,
    bytes: usize,
) -> anyaccel_status {
    guard("anyaccel_queue_copy", || {
        let q = queue(q)?;
        let s = buffer(src, "src")?;
        let d = buffer(dst, "dst")?;
        check_device("src", &s.device, &q.device)?;
        check_device("dst", &d.device, &q.device)?;
        d.writable("dst")?;
        q.queue.copy(
            &s.buffer.view(src_offset, bytes)?,
            &d.buffer.view(dst_offset, bytes)?,
        )
    })
}

/// Fills `bytes` bytes of `buf` from byte `offset` with a pattern of 1, 2 or 4 bytes;
/// `bytes` must be a multiple of `pattern_size`.
///
/// # Safety
/// `pattern` must be NULL or valid for reading `pattern_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_queue_fill(
    q: *mut anyaccel_queue_t,
    buf: *mut anyaccel_buffer_t,
    offset: usize,
    bytes: usize,
    pattern: *const c_void,
    pattern_size: usize,
) -> anyaccel_status {
    guard("anyaccel_queue_fill", || {
        let q = queue(q)?;
        let b = buffer(buf, "buffer")?;
        check_device("buffer", &b.device, &q.device)?;
        b.writable("buffer")?;
        non_null(pattern, "pattern")?;
        // SAFETY: non-null, `pattern_size` readable bytes by the caller's contract.
        let pattern = unsafe { slice_arg(pattern as *const u8, pattern_size, "pattern") }?;
        q.queue.fill(&b.buffer.view(offset, bytes)?, pattern)
    })
}

/// Waits until every command submitted so far has completed. An asynchronous failure of an
/// earlier command comes back here with its original error; after that the queue runs again.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_queue_finish(q: *mut anyaccel_queue_t) -> anyaccel_status {
    guard("anyaccel_queue_finish", || queue(q)?.queue.finish())
}

/// Records an event that completes when every command submitted so far has completed.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_queue_record_event(
    q: *mut anyaccel_queue_t,
    out: *mut *mut anyaccel_event_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_queue_record_event", "out", out, || {
            let q = queue(q)?;
            let obj = EventObj {
                event: q.queue.record_event()?,
                device: q.device.clone(),
            };
            Ok(to_ptr(handle::insert(Kind::Event, Arc::new(obj))?))
        })
    }
}

/// Makes the queue's later commands wait until `ev` (from any queue of any device) completes.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_queue_wait_event(
    q: *mut anyaccel_queue_t,
    ev: *mut anyaccel_event_t,
) -> anyaccel_status {
    guard("anyaccel_queue_wait_event", || {
        let q = queue(q)?;
        let e = event(ev, "event")?;
        q.queue.wait_event(&e.event)
    })
}

/// Waits on the host until the event completes; an error of the work before it comes back here.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_event_wait(ev: *mut anyaccel_event_t) -> anyaccel_status {
    guard("anyaccel_event_wait", || event(ev, "event")?.event.wait())
}

/// Sets `*done` to 1 when the event has completed, else 0. Does not wait.
///
/// # Safety
/// `done` must be NULL or valid for writing an `int32_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_event_query(
    ev: *mut anyaccel_event_t,
    done: *mut i32,
) -> anyaccel_status {
    // SAFETY: `done` is NULL or valid for writing an `int32_t` by the caller's contract.
    unsafe {
        guard_out("anyaccel_event_query", "done", done, || {
            Ok(event(ev, "event")?.event.is_done() as i32)
        })
    }
}

/// Sets `*ms` to the time in milliseconds from `start` to `end`; both must have completed and
/// come from the same device (they may come from different queues of it). Events of two
/// devices, or of two runtimes, are `ANYACCEL_ERROR_INVALID_ARGUMENT` naming both; so is an
/// event that has not completed. `*ms` is 0 after a failed call.
///
/// # Safety
/// `ms` must be NULL or valid for writing a `double`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_event_elapsed_ms(
    start: *mut anyaccel_event_t,
    end: *mut anyaccel_event_t,
    ms: *mut f64,
) -> anyaccel_status {
    // SAFETY: `ms` is NULL or valid for writing a `double` by the caller's contract.
    unsafe {
        guard_out("anyaccel_event_elapsed_ms", "ms", ms, || {
            let s = event(start, "start")?;
            let e = event(end, "end")?;
            check_same_device(&s.device, &e.device)?;
            let elapsed = e.event.elapsed_since(&*s.event)?;
            Ok(elapsed.as_secs_f64() * 1e3)
        })
    }
}

/// `start` and `end` must be events of one device instance: two runtimes each have their own
/// `cpu:0`, whose clocks have nothing in common.
fn check_same_device(start: &Arc<dyn Device>, end: &Arc<dyn Device>) -> Result<()> {
    if same_device(start, end) {
        return Ok(());
    }
    let (s, e) = (&start.info().id, &end.info().id);
    Err(Error::invalid_argument(if s == e {
        format!(
            "event `start` is of device {s} of one runtime and event `end` of device {e} of \
             another runtime: expected two events of one device of one runtime"
        )
    } else {
        format!(
            "event `start` is of device {s} and event `end` of device {e}: expected two events \
             of one device (events of two devices share no clock)"
        )
    }))
}

/// Releases the caller's reference to an event.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_event_destroy(ev: *mut anyaccel_event_t) -> anyaccel_status {
    guard("anyaccel_event_destroy", || {
        handle::remove::<EventObj>(from_ptr(ev), Kind::Event, "event").map(drop)
    })
}
