//! Queues over plugin streams, and events over plugin events.
//!
//! A [`PluginQueue`] owns one plugin stream. Submissions go straight to the plugin; what a
//! command needs to stay alive until it has run (the buffers it touches, the host bytes of a
//! write, the kernel it launches) is kept by the queue until the next synchronization of the
//! stream, which releases it. Past a bound on what is kept, the queue synchronizes by itself.
//! A failure the plugin reports at a synchronization that the user did not ask for is kept as
//! the queue's sticky error: later commands are skipped and the error comes back at the next
//! `read`, `finish` or event wait, as the HAL's contract says.

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyaccel_hal::{
    validate, Bookkeeping, Buffer, BufferView, Device, Error, Event, Kernel, KernelArg, LaunchDims,
    Queue, Result, Retiring,
};

use crate::device::{DeviceHandle, PluginDevice, PluginKernel, PluginMemory};
use crate::loader::Plugin;
use crate::op::CallDesc;
use crate::sys::{self, AnyaccelEvent, AnyaccelStream};

/// What a queue keeps alive for commands that may not have run yet.
enum Keep {
    Buffer(#[allow(dead_code)] Buffer),
    Bytes(#[allow(dead_code)] Vec<u8>),
    Kernel(#[allow(dead_code)] Arc<dyn Kernel>),
    Event(#[allow(dead_code)] Arc<dyn Event>),
}

/// Past this many kept objects, or this many kept host bytes, a queue synchronizes by itself.
const MAX_KEPT: usize = 4096;
const MAX_KEPT_BYTES: usize = 256 << 20;
/// From this size a write to a stream with nothing pending copies from the caller's bytes and
/// waits, instead of copying them first.
const DIRECT_WRITE_BYTES: usize = 1 << 20;

#[derive(Default)]
struct State {
    /// What the commands since the last sync need; a sync retires them all.
    keep: Retiring<Keep>,
    kept_bytes: usize,
}

/// One plugin stream and what its pending commands need.
pub(crate) struct StreamInner {
    pub(crate) device: Arc<DeviceHandle>,
    pub(crate) raw: *mut AnyaccelStream,
    device_id: Arc<str>,
    state: Mutex<State>,
    /// Command numbers and failures (the HAL's sticky-failure rule).
    book: Bookkeeping,
}

// SAFETY: the stream handle is passed only to the plugin; the header lets any thread call it, and
// every submission or synchronization of this stream happens under `state`'s lock, so no two
// threads use the stream at once (the header's rule).
unsafe impl Send for StreamInner {}
// SAFETY: as above.
unsafe impl Sync for StreamInner {}

fn missing(name: &str) -> Error {
    Error::internal(format!(
        "plugin function `{name}` is NULL although the loader checked it"
    ))
}

impl StreamInner {
    fn plugin(&self) -> &Plugin {
        &self.device.plugin
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the stream, releases what it kept, and returns the first error: the queue's
    /// unreported failure (now reported), else the plugin's.
    fn sync_locked(&self, state: &mut State) -> Result<()> {
        let plugin = self.plugin();
        let sync = plugin
            .api
            .stream_synchronize
            .ok_or_else(|| missing("stream_synchronize"))?;
        // SAFETY: the stream is live; the lock is held.
        let r = plugin.check("stream_synchronize", unsafe { sync(self.raw) });
        state.keep.clear();
        state.kept_bytes = 0;
        self.book.report(r)
    }

    /// Runs `submit` unless the queue has failed, keeping `keep` alive until the next sync.
    fn submit(
        &self,
        keep: Vec<Keep>,
        bytes: usize,
        submit: impl FnOnce(&Plugin, *mut AnyaccelStream) -> Result<()>,
    ) -> Result<()> {
        let mut state = self.lock();
        let Some(seq) = self.book.admit() else {
            // The queue has failed: the command is skipped until the error is reported.
            return Ok(());
        };
        submit(self.plugin(), self.raw)?;
        for k in keep {
            state.keep.keep(seq, k);
        }
        state.kept_bytes += bytes;
        if state.keep.len() > MAX_KEPT || state.kept_bytes > MAX_KEPT_BYTES {
            if let Err(e) = self.sync_locked(&mut state) {
                self.book.fail(seq, e);
            }
        }
        Ok(())
    }

    /// Synchronizes the stream (what it kept is released); the first error, as `finish` gives.
    pub(crate) fn synchronize(&self) -> Result<()> {
        let mut state = self.lock();
        self.sync_locked(&mut state)
    }

    /// Runs `submit` once for a command on every stream of `streams` at once (a collective),
    /// keeping `keep[r]` alive on stream `r` until its next sync. The streams are locked in
    /// address order, so that two such submissions cannot deadlock. A stream that has failed
    /// refuses the command on every stream: the others would wait for it.
    pub(crate) fn submit_all(
        f: &str,
        streams: &[Arc<StreamInner>],
        keep: Vec<Vec<Buffer>>,
        submit: impl FnOnce(&[*mut AnyaccelStream]) -> Result<()>,
    ) -> Result<()> {
        let mut order: Vec<usize> = (0..streams.len()).collect();
        order.sort_by_key(|&r| Arc::as_ptr(&streams[r]) as usize);
        let mut guards: Vec<Option<MutexGuard<'_, State>>> = streams.iter().map(|_| None).collect();
        for &r in &order {
            guards[r] = Some(streams[r].lock());
        }
        for (r, s) in streams.iter().enumerate() {
            if let Some(e) = s.book.unreported() {
                return Err(Error::new(
                    e.code(),
                    format!(
                        "{f}: rank {r}'s queue ({}) has failed and not reported it yet: {}; \
                         synchronize it first",
                        s.device_id,
                        e.message()
                    ),
                ));
            }
        }
        let mut seqs = Vec::with_capacity(streams.len());
        for s in streams {
            seqs.push(s.book.admit().ok_or_else(|| {
                Error::internal(format!("{f}: a queue failed while it was locked"))
            })?);
        }
        let raws: Vec<*mut AnyaccelStream> = streams.iter().map(|s| s.raw).collect();
        submit(&raws)?;
        for (r, (s, kept)) in streams.iter().zip(keep).enumerate() {
            let state = guards[r].as_mut().expect("every stream is locked");
            for b in kept {
                state.keep.keep(seqs[r], Keep::Buffer(b));
            }
            if state.keep.len() > MAX_KEPT {
                if let Err(e) = s.sync_locked(state) {
                    s.book.fail(seqs[r], e);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn execute_op(&self, op: &str, desc: &CallDesc) -> Result<()> {
        let keep = desc.buffers.iter().cloned().map(Keep::Buffer).collect();
        self.submit(keep, 0, |plugin, raw| {
            let f = plugin
                .api
                .op_execute
                .ok_or_else(|| Error::unsupported(format!("{op}: the plugin has no op_execute")))?;
            // SAFETY: the descriptor and everything it points to live across the call; its
            // buffers are kept until the op has run.
            plugin.check("op_execute", unsafe { f(raw, desc.as_ptr()) })
        })
    }
}

impl Drop for StreamInner {
    fn drop(&mut self) {
        let api = &self.device.plugin.api;
        if let Some(sync) = api.stream_synchronize {
            // SAFETY: the stream is live; nothing else refers to it any more.
            let _ = unsafe { sync(self.raw) };
        }
        if let Some(destroy) = api.stream_destroy {
            // SAFETY: synchronized just above; destroyed once, here.
            let _ = unsafe { destroy(self.raw) };
        }
        // `state` drops after this body: kept buffers are freed after the stream is gone.
    }
}

/// An in-order queue of a plugin device, over one plugin stream.
pub struct PluginQueue {
    device: Arc<PluginDevice>,
    inner: Arc<StreamInner>,
}

impl PluginQueue {
    /// Enqueues `f` (`copy_d2d` or `copy_peer`, called `name`) from `src` to `dst`, both views
    /// of plugin memory with their buffers, kept until the stream is synchronized.
    fn submit_copy(
        &self,
        name: &str,
        f: sys::CopyD2dFn,
        (s, src): (&PluginMemory, &BufferView),
        (d, dst): (&PluginMemory, &BufferView),
    ) -> Result<()> {
        self.inner.submit(
            vec![
                Keep::Buffer(src.buffer().clone()),
                Keep::Buffer(dst.buffer().clone()),
            ],
            0,
            |plugin, raw| {
                // SAFETY: both ranges lie inside their buffers (BufferView's invariant) and do
                // not overlap (validated, or on two devices); both buffers are kept until the
                // stream is synchronized.
                plugin.check(name, unsafe {
                    f(
                        raw,
                        d.raw(),
                        dst.offset() as u64,
                        s.raw(),
                        src.offset() as u64,
                        src.len() as u64,
                    )
                })
            },
        )
    }

    pub(crate) fn new(device: Arc<PluginDevice>) -> Result<PluginQueue> {
        let handle = device.handle.clone();
        let plugin = &handle.plugin;
        let create = plugin
            .api
            .stream_create
            .ok_or_else(|| missing("stream_create"))?;
        let mut raw: *mut AnyaccelStream = std::ptr::null_mut();
        // SAFETY: stream_create writes one handle; the device is open.
        plugin.check("stream_create", unsafe { create(handle.raw, &mut raw) })?;
        if raw.is_null() {
            return Err(Error::internal(format!(
                "{} stream_create succeeded but gave a NULL stream",
                plugin.backend
            )));
        }
        let inner = Arc::new(StreamInner {
            device: handle,
            raw,
            device_id: device.id.clone(),
            state: Mutex::new(State::default()),
            book: Bookkeeping::new(),
        });
        Ok(PluginQueue { device, inner })
    }

    /// The stream of this queue.
    pub(crate) fn stream(&self) -> &Arc<StreamInner> {
        &self.inner
    }

    fn id(&self) -> &str {
        &self.inner.device_id
    }

    /// `what` is formatted only for an error message.
    fn memory<'a>(
        &self,
        what: impl std::fmt::Display + Copy,
        view: &'a BufferView,
    ) -> Result<&'a PluginMemory> {
        validate::on_device(what, view, self.id())?;
        let mem = view.buffer().downcast::<PluginMemory>().ok_or_else(|| {
            Error::invalid_argument(format!(
                "{what}: buffer of device {} is not plugin memory",
                view.buffer().device_id()
            ))
        })?;
        if !mem.on(&self.inner.device) {
            return Err(Error::invalid_argument(format!(
                "{what}: the buffer belongs to another instance of device {}; use buffers of this runtime's device",
                self.id()
            )));
        }
        Ok(mem)
    }
}

impl Queue for PluginQueue {
    fn device_id(&self) -> &str {
        self.id()
    }

    fn device(&self) -> Arc<dyn Device> {
        self.device.clone()
    }

    fn write(&self, dst: &BufferView, data: &[u8]) -> Result<()> {
        validate::transfer("write", dst, data.len(), self.id())?;
        let mem = self.memory("write", dst)?;
        if data.is_empty() {
            return Ok(());
        }
        if data.len() >= DIRECT_WRITE_BYTES {
            let inner = &self.inner;
            let mut state = inner.lock();
            if !inner.book.failed() && state.keep.is_empty() {
                // Nothing pending since the last sync: copy straight from the caller's bytes and
                // wait for the stream (one copy, by the plugin), rather than copy them first.
                let Some(_) = inner.book.admit() else {
                    return Ok(());
                };
                let plugin = inner.plugin();
                let f = plugin.api.copy_h2d.ok_or_else(|| missing("copy_h2d"))?;
                // SAFETY: the range lies inside the buffer (BufferView's invariant); `data` is
                // borrowed for this call, and the stream is synchronized before it returns.
                let submitted = plugin.check("copy_h2d", unsafe {
                    f(
                        inner.raw,
                        mem.raw(),
                        dst.offset() as u64,
                        data.as_ptr().cast(),
                        data.len() as u64,
                    )
                });
                let synced = inner.sync_locked(&mut state);
                return submitted.and(synced);
            }
        }
        let owned = data.to_vec();
        let ptr = owned.as_ptr();
        let len = owned.len();
        self.inner.submit(
            vec![Keep::Buffer(dst.buffer().clone()), Keep::Bytes(owned)],
            len,
            |plugin, raw| {
                let f = plugin.api.copy_h2d.ok_or_else(|| missing("copy_h2d"))?;
                // SAFETY: the range lies inside the buffer (BufferView's invariant); the host
                // bytes are kept, unmoved on the heap, until the stream is synchronized.
                plugin.check("copy_h2d", unsafe {
                    f(raw, mem.raw(), dst.offset() as u64, ptr.cast(), len as u64)
                })
            },
        )
    }

    fn read(&self, src: &BufferView, dst: &mut [u8]) -> Result<()> {
        validate::transfer("read", src, dst.len(), self.id())?;
        let mem = self.memory("read", src)?;
        let inner = &self.inner;
        let mut state = inner.lock();
        if inner.book.failed() {
            // Report the failure; the queue runs again after this.
            return inner.sync_locked(&mut state);
        }
        let plugin = inner.plugin();
        let f = plugin.api.copy_d2h.ok_or_else(|| missing("copy_d2h"))?;
        // SAFETY: `dst` is an exclusive borrow of exactly the view's length, and the stream is
        // synchronized below before this function returns, so the copy completes while the
        // borrow is held.
        let submitted = plugin.check("copy_d2h", unsafe {
            f(
                inner.raw,
                dst.as_mut_ptr().cast(),
                mem.raw(),
                src.offset() as u64,
                dst.len() as u64,
            )
        });
        let synced = inner.sync_locked(&mut state);
        submitted.and(synced)
    }

    fn copy(&self, src: &BufferView, dst: &BufferView) -> Result<()> {
        validate::copy(src, dst, self.id())?;
        let s = self.memory("copy src", src)?;
        let d = self.memory("copy dst", dst)?;
        if src.is_empty() {
            return Ok(());
        }
        let f = self
            .inner
            .plugin()
            .api
            .copy_d2d
            .ok_or_else(|| missing("copy_d2d"))?;
        self.submit_copy("copy_d2d", f, (s, src), (d, dst))
    }

    fn map_host(
        &self,
        view: &BufferView,
        f: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<bool> {
        let mem = self.memory("map_host", view)?;
        let inner = &self.inner;
        let Some(host_ptr) = inner.plugin().api.buffer_host_ptr else {
            return Ok(false);
        };
        // Held until `f` returns: nothing is submitted to the stream meanwhile.
        let mut state = inner.lock();
        inner.sync_locked(&mut state)?;
        let mut ptr: *mut std::ffi::c_void = std::ptr::null_mut();
        // SAFETY: the buffer is live (the view holds it); the function writes one pointer.
        inner
            .plugin()
            .check("buffer_host_ptr", unsafe { host_ptr(mem.raw(), &mut ptr) })?;
        if ptr.is_null() {
            return Ok(false);
        }
        // SAFETY: the plugin gives the host address of the buffer's first byte, valid while the
        // buffer lives; the view lies inside the buffer; the stream is synchronized and nothing
        // is submitted to it until `f` returns.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(ptr.cast::<u8>().add(view.offset()), view.len())
        };
        f(bytes)?;
        Ok(true)
    }

    fn copy_peer(&self, src: &BufferView, dst: &BufferView) -> Result<()> {
        let d = self.memory("copy_peer dst", dst)?;
        let plugin = &self.inner.device.plugin;
        let s = src
            .buffer()
            .downcast::<PluginMemory>()
            .filter(|m| m.of_plugin(plugin) && !m.on(&self.inner.device))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "copy_peer src: a buffer of {}: expected memory of another device of {}",
                    src.buffer().device_id(),
                    plugin.backend
                ))
            })?;
        if src.len() != dst.len() {
            return Err(Error::invalid_argument(format!(
                "copy_peer: the source has {} bytes but the destination {}: expected equal lengths",
                src.len(),
                dst.len()
            )));
        }
        let f = plugin.api.copy_peer.ok_or_else(|| {
            Error::unsupported(format!(
                "copy_peer: {} has no copy_peer (a plugin of ABI 1.0, or without a peer path)",
                plugin.backend
            ))
        })?;
        if src.is_empty() {
            return Ok(());
        }
        self.submit_copy("copy_peer", f, (s, src), (d, dst))
    }

    fn fill(&self, dst: &BufferView, pattern: &[u8]) -> Result<()> {
        validate::fill(dst, pattern, self.id())?;
        let mem = self.memory("fill", dst)?;
        if dst.is_empty() {
            return Ok(());
        }
        self.inner.submit(
            vec![Keep::Buffer(dst.buffer().clone())],
            0,
            |plugin, raw| {
                let f = plugin.api.fill.ok_or_else(|| missing("fill"))?;
                // SAFETY: the range lies inside the buffer; the pattern is copied by the plugin
                // before the call returns (the header's contract).
                plugin.check("fill", unsafe {
                    f(
                        raw,
                        mem.raw(),
                        dst.offset() as u64,
                        dst.len() as u64,
                        pattern.as_ptr().cast(),
                        pattern.len() as u32,
                    )
                })
            },
        )
    }

    fn submit_launch(
        &self,
        kernel: &Arc<dyn Kernel>,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<()> {
        let k = validate::kernel_as::<PluginKernel>(kernel, "a kernel of a plugin device")?;
        if !Arc::ptr_eq(&k.device, &self.inner.device) {
            return Err(Error::invalid_argument(format!(
                "launch: kernel `{}` was loaded by another instance of device {}",
                kernel.name(),
                self.id()
            )));
        }
        let mut keep = vec![Keep::Kernel(kernel.clone())];
        let mut c_args = Vec::with_capacity(args.len());
        for (i, arg) in args.iter().enumerate() {
            c_args.push(match arg {
                KernelArg::Buffer(view) => {
                    let mem = self.memory(
                        format_args!("launch `{}` argument {i}", kernel.name()),
                        view,
                    )?;
                    keep.push(Keep::Buffer(view.buffer().clone()));
                    sys::AnyaccelKernelArg {
                        struct_size: std::mem::size_of::<sys::AnyaccelKernelArg>(),
                        kind: sys::ANYACCEL_ARG_BUFFER,
                        buffer: mem.raw(),
                        offset: view.offset() as u64,
                        size: view.len() as u64,
                        bytes: std::ptr::null(),
                    }
                }
                KernelArg::Bytes(bytes) => sys::AnyaccelKernelArg {
                    struct_size: std::mem::size_of::<sys::AnyaccelKernelArg>(),
                    kind: sys::ANYACCEL_ARG_BYTES,
                    buffer: std::ptr::null_mut(),
                    offset: 0,
                    size: bytes.len() as u64,
                    bytes: bytes.as_ptr().cast(),
                },
            });
        }
        let launch = sys::AnyaccelLaunch {
            struct_size: std::mem::size_of::<sys::AnyaccelLaunch>(),
            global: dims.global,
            local: dims.local.unwrap_or([0; 3]),
            has_local: dims.local.is_some() as i32,
            args: c_args.as_ptr(),
            num_args: c_args.len(),
        };
        let raw_kernel = k.raw;
        self.inner.submit(keep, 0, |plugin, raw| {
            let f = plugin
                .api
                .kernel_launch
                .ok_or_else(|| missing("kernel_launch"))?;
            // SAFETY: the launch description and its arguments live across the call (bytes are
            // valid for the call only, per the header); buffers and kernel are kept.
            plugin.check("kernel_launch", unsafe { f(raw, raw_kernel, &launch) })
        })
    }

    fn record_event(&self) -> Result<Arc<dyn Event>> {
        let inner = &self.inner;
        let _ordered = inner.lock();
        let plugin = inner.plugin();
        let create = plugin
            .api
            .event_create
            .ok_or_else(|| missing("event_create"))?;
        let mut raw: *mut AnyaccelEvent = std::ptr::null_mut();
        // SAFETY: event_create writes one handle; the device is open.
        plugin.check("event_create", unsafe {
            create(inner.device.raw, &mut raw)
        })?;
        if raw.is_null() {
            return Err(Error::internal(format!(
                "{} event_create succeeded but gave a NULL event",
                plugin.backend
            )));
        }
        let event = PluginEvent {
            device: inner.device.clone(),
            raw,
            failed: inner.book.unreported(),
        };
        if event.failed.is_none() {
            let record = plugin
                .api
                .event_record
                .ok_or_else(|| missing("event_record"))?;
            // SAFETY: both handles are live; the stream's lock is held.
            plugin.check("event_record", unsafe { record(raw, inner.raw) })?;
        }
        Ok(Arc::new(event))
    }

    fn wait_event(&self, event: &Arc<dyn Event>) -> Result<()> {
        let inner = &self.inner;
        if let Some(ev) = event.as_any().downcast_ref::<PluginEvent>() {
            if Arc::ptr_eq(&ev.device.plugin, &inner.device.plugin) {
                if ev.failed.is_some() {
                    let _ordered = inner.lock();
                    inner.book.wait_foreign(inner.book.number(), &**event);
                    return Ok(());
                }
                let raw_event = ev.raw;
                return inner.submit(vec![Keep::Event(event.clone())], 0, |plugin, raw| {
                    let f = plugin
                        .api
                        .stream_wait_event
                        .ok_or_else(|| missing("stream_wait_event"))?;
                    // SAFETY: both handles are live, and the event is kept until the next sync.
                    plugin.check("stream_wait_event", unsafe { f(raw, raw_event) })
                });
            }
        }
        // An event of another backend: wait for it on the host, so that every later command of
        // this queue runs after it.
        let seq = {
            let _ordered = inner.lock();
            inner.book.number()
        };
        inner.book.wait_foreign(seq, &**event);
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        let mut state = self.inner.lock();
        self.inner.sync_locked(&mut state)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A point in a plugin stream.
pub struct PluginEvent {
    device: Arc<DeviceHandle>,
    raw: *mut AnyaccelEvent,
    /// The queue had failed when the event was recorded: waiting returns this error.
    failed: Option<Error>,
}

// SAFETY: the header lets any thread query, synchronize and destroy events at any time.
unsafe impl Send for PluginEvent {}
// SAFETY: as above.
unsafe impl Sync for PluginEvent {}

impl Drop for PluginEvent {
    fn drop(&mut self) {
        if let Some(destroy) = self.device.plugin.api.event_destroy {
            // SAFETY: created by event_create, destroyed once; the plugin keeps a pending event
            // alive as long as it needs it (the header's contract).
            let _ = unsafe { destroy(self.raw) };
        }
    }
}

impl Event for PluginEvent {
    fn wait(&self) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let plugin = &self.device.plugin;
        let f = plugin
            .api
            .event_synchronize
            .ok_or_else(|| missing("event_synchronize"))?;
        // SAFETY: the event is live.
        plugin.check("event_synchronize", unsafe { f(self.raw) })
    }

    fn is_done(&self) -> bool {
        if self.failed.is_some() {
            return true;
        }
        let plugin = &self.device.plugin;
        let Some(f) = plugin.api.event_query else {
            return false;
        };
        let mut done = 0i32;
        // SAFETY: the event is live; one i32 is written.
        let status = unsafe { f(self.raw, &mut done) };
        status == sys::ANYACCEL_OK && done != 0
    }

    fn elapsed_since(&self, start: &dyn Event) -> Result<Duration> {
        let start = start
            .as_any()
            .downcast_ref::<PluginEvent>()
            .ok_or_else(|| {
                Error::invalid_argument(
                    "elapsed_since: start event is not from a plugin queue; both events must be",
                )
            })?;
        if !Arc::ptr_eq(&start.device, &self.device) {
            return Err(Error::invalid_argument(
                "elapsed_since: the events come from different devices; both must be of one device",
            ));
        }
        if self.failed.is_some() || start.failed.is_some() {
            return Err(Error::invalid_argument(
                "elapsed_since: an event was recorded on a failed queue and carries no time",
            ));
        }
        let plugin = &self.device.plugin;
        let f = plugin.api.event_elapsed_ms.ok_or_else(|| {
            Error::unsupported(format!(
                "elapsed_since: {} has no event timestamps (event_elapsed_ms is NULL)",
                plugin.backend
            ))
        })?;
        let mut ms = 0f64;
        // SAFETY: both events are live; one f64 is written.
        plugin.check("event_elapsed_ms", unsafe {
            f(start.raw, self.raw, &mut ms)
        })?;
        if !ms.is_finite() {
            return Err(Error::internal(format!(
                "{} event_elapsed_ms gave {ms} ms",
                plugin.backend
            )));
        }
        Ok(Duration::from_secs_f64(ms.max(0.0) / 1000.0))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
