//! A plugin written in Rust with the SDK (`anyaccel_plugin::sdk`): one device in host memory,
//! with `add` and `mul` on f32 as native ops.
//!
//! Its streams are **synchronous**: every command runs to completion inside the call that
//! submits it. That is allowed by `anyaccel_plugin.h` as long as a failure while a command runs
//! is still reported through the stream (the stream fails, later commands are skipped, and the
//! next `synchronize` returns and clears the error), which this plugin does. Events record the
//! time at which they were recorded, which, the stream being synchronous, is when the work before
//! them completed.
//!
//! Built by `cargo build --examples` (and `cargo test`) as
//! `target/<profile>/examples/libanyaccel_rust_example.so`; load it with
//! `anyaccel conformance --plugin <that path> --device plugin:rustexample:0`.

use std::ffi::CStr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyaccel_hal::{DType, Error, Result};
use anyaccel_plugin::sdk::{DeviceDesc, HostRange, OpCallArg, Plugin, TensorArg};

/// The plugin: no state beyond its devices'.
struct RustExample;

/// The one device.
struct Device;

/// Host memory. A lock per buffer keeps concurrent commands of different streams sound.
struct Buffer {
    bytes: Mutex<Vec<u8>>,
}

/// A synchronous stream: its only state is the error of a failed command, if any.
struct Stream {
    failed: Mutex<Option<Error>>,
}

/// When the event was recorded, and the stream's error at that point.
#[derive(Default)]
struct EventState {
    at: Option<Instant>,
    error: Option<Error>,
}

struct Event {
    state: Arc<Mutex<EventState>>,
}

const LIMIT: u64 = 1 << 40;

fn range(what: &str, len: usize, offset: u64, bytes: u64) -> Result<std::ops::Range<usize>> {
    let end = offset.checked_add(bytes).filter(|&e| e <= len as u64);
    match end {
        Some(end) => Ok(offset as usize..end as usize),
        None => Err(Error::out_of_bounds(format!(
            "{what}: bytes {offset}..{} of a {len}-byte buffer",
            offset as u128 + bytes as u128
        ))),
    }
}

impl Stream {
    /// Runs `command` unless the stream has failed; a failure makes the stream fail.
    fn run(&self, command: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.is_some() {
            return Ok(());
        }
        if let Err(e) = command() {
            *failed = Some(e);
        }
        Ok(())
    }
}

fn read_f32(t: &TensorArg<'_, Buffer>, bytes: &[u8], i: usize) -> f32 {
    let at = t.byte_offset_of(i) as usize;
    f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The source element of `out`'s element `i` in a broadcast input.
fn broadcast_index(out_shape: &[usize], in_shape: &[usize], mut i: usize) -> usize {
    let mut index = 0usize;
    let mut step = 1usize;
    let extra = out_shape.len() - in_shape.len();
    for d in (0..out_shape.len()).rev() {
        let coord = i % out_shape[d];
        i /= out_shape[d];
        if d >= extra {
            let size = in_shape[d - extra];
            if size != 1 {
                index += coord * step;
            }
            step *= size;
        }
    }
    index
}

impl Plugin for RustExample {
    type Device = Device;
    type Buffer = Buffer;
    type Stream = Stream;
    type Event = Event;

    const NAME: &'static CStr = c"rustexample";
    const VERSION: &'static CStr = c"0.1.0";

    fn new() -> Result<Self> {
        Ok(RustExample)
    }

    fn device_count(&self) -> Result<usize> {
        Ok(1)
    }

    fn open_device(&self, index: usize) -> Result<Device> {
        if index != 0 {
            return Err(Error::invalid_argument(format!(
                "device {index} does not exist; this plugin has device 0 only"
            )));
        }
        Ok(Device)
    }

    fn describe(&self, _device: &Device) -> Result<DeviceDesc> {
        Ok(DeviceDesc {
            name: "Rust SDK example (host memory)".into(),
            vendor: "anyaccel".into(),
            driver_version: "0.1.0".into(),
            memory_bytes: LIMIT,
            max_buffer_bytes: LIMIT,
            max_work_group_size: 1,
            compute_units: 1,
            dtypes: DType::ALL.to_vec(),
            dialects: Vec::new(),
            native_ops: vec!["add".into(), "mul".into()],
            timestamps: true,
        })
    }

    fn alloc(&self, _device: &Device, bytes: u64) -> Result<Buffer> {
        if bytes > LIMIT {
            return Err(Error::out_of_memory(format!(
                "alloc: {bytes} bytes requested, the largest buffer is {LIMIT} bytes"
            )));
        }
        let mut v = Vec::new();
        v.try_reserve_exact(bytes as usize)
            .map_err(|e| Error::out_of_memory(format!("alloc: {bytes} bytes: {e}")))?;
        v.resize(bytes as usize, 0);
        Ok(Buffer {
            bytes: Mutex::new(v),
        })
    }

    fn copy_h2d(&self, stream: &Stream, dst: &Buffer, offset: u64, src: HostRange) -> Result<()> {
        let mut d = dst.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let r = range("copy_h2d", d.len(), offset, src.len() as u64)?;
        stream.run(|| {
            // SAFETY: the command runs before this call returns, well before the next sync.
            d[r].copy_from_slice(unsafe { src.as_slice() });
            Ok(())
        })
    }

    fn copy_d2h(&self, stream: &Stream, dst: HostRange, src: &Buffer, offset: u64) -> Result<()> {
        let s = src.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let r = range("copy_d2h", s.len(), offset, dst.len() as u64)?;
        stream.run(|| {
            // SAFETY: as above; the host holds no reference to the range during the copy.
            unsafe { dst.as_mut_slice() }.copy_from_slice(&s[r]);
            Ok(())
        })
    }

    fn copy_d2d(
        &self,
        stream: &Stream,
        dst: &Buffer,
        dst_offset: u64,
        src: &Buffer,
        src_offset: u64,
        bytes: u64,
    ) -> Result<()> {
        if std::ptr::eq(dst, src) {
            let mut b = dst.bytes.lock().unwrap_or_else(|p| p.into_inner());
            let s = range("copy_d2d src", b.len(), src_offset, bytes)?;
            let d = range("copy_d2d dst", b.len(), dst_offset, bytes)?;
            return stream.run(|| {
                b.copy_within(s, d.start);
                Ok(())
            });
        }
        let s = src.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let mut d = dst.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let sr = range("copy_d2d src", s.len(), src_offset, bytes)?;
        let dr = range("copy_d2d dst", d.len(), dst_offset, bytes)?;
        stream.run(|| {
            d[dr].copy_from_slice(&s[sr]);
            Ok(())
        })
    }

    fn fill(
        &self,
        stream: &Stream,
        dst: &Buffer,
        offset: u64,
        bytes: u64,
        pattern: &[u8],
    ) -> Result<()> {
        let mut d = dst.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let r = range("fill", d.len(), offset, bytes)?;
        stream.run(|| {
            if let [byte] = pattern {
                d[r].fill(*byte);
            } else {
                for chunk in d[r].chunks_exact_mut(pattern.len()) {
                    chunk.copy_from_slice(pattern);
                }
            }
            Ok(())
        })
    }

    fn create_stream(&self, _device: &Device) -> Result<Stream> {
        Ok(Stream {
            failed: Mutex::new(None),
        })
    }

    fn synchronize(&self, stream: &Stream) -> Result<()> {
        match stream
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn wait_event(&self, stream: &Stream, event: &Event) -> Result<()> {
        // Synchronous streams: the event's work has already run.
        let error = event
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .error
            .clone();
        stream.run(|| error.map_or(Ok(()), Err))
    }

    fn create_event(&self, _device: &Device) -> Result<Event> {
        Ok(Event {
            state: Arc::new(Mutex::new(EventState::default())),
        })
    }

    fn record_event(&self, event: &Event, stream: &Stream) -> Result<()> {
        let error = stream
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut s = event.state.lock().unwrap_or_else(|p| p.into_inner());
        s.at = Some(Instant::now());
        s.error = error;
        Ok(())
    }

    fn event_done(&self, _event: &Event) -> Result<bool> {
        Ok(true)
    }

    fn event_synchronize(&self, event: &Event) -> Result<()> {
        let s = event.state.lock().unwrap_or_else(|p| p.into_inner());
        s.error.clone().map_or(Ok(()), Err)
    }

    fn elapsed_ms(&self, start: &Event, end: &Event) -> Result<f64> {
        let a = start.state.lock().unwrap_or_else(|p| p.into_inner()).at;
        let b = end.state.lock().unwrap_or_else(|p| p.into_inner()).at;
        match (a, b) {
            (Some(a), Some(b)) => Ok(b.saturating_duration_since(a).as_secs_f64() * 1000.0),
            _ => Err(Error::invalid_argument(
                "elapsed_ms: both events must have been recorded",
            )),
        }
    }

    fn op_supported(&self, _device: &Device, call: &OpCallArg<'_, Buffer>) -> bool {
        matches!(call.op.as_str(), "add" | "mul")
            && call.outputs.len() == 1
            && call.outputs[0].dtype == DType::F32
    }

    fn op_execute(&self, stream: &Stream, call: &OpCallArg<'_, Buffer>) -> Result<()> {
        let (Some(Some(a)), Some(Some(b)), Some(out)) = (
            call.inputs.first(),
            call.inputs.get(1),
            call.outputs.first(),
        ) else {
            return Err(Error::invalid_argument(format!(
                "{}: expected inputs a, b and one output",
                call.op
            )));
        };
        let mul = call.op == "mul";
        // Read the inputs first (they may share a buffer with each other, never with the output).
        let values: Vec<f32> = {
            let ab = a.buffer.bytes.lock().unwrap_or_else(|p| p.into_inner());
            let av: Vec<f32> = (0..a.numel()).map(|i| read_f32(a, &ab, i)).collect();
            drop(ab);
            let bb = b.buffer.bytes.lock().unwrap_or_else(|p| p.into_inner());
            let bv: Vec<f32> = (0..b.numel()).map(|i| read_f32(b, &bb, i)).collect();
            (0..out.numel())
                .map(|i| {
                    let x = av[broadcast_index(&out.shape, &a.shape, i)];
                    let y = bv[broadcast_index(&out.shape, &b.shape, i)];
                    if mul {
                        x * y
                    } else {
                        x + y
                    }
                })
                .collect()
        };
        let mut ob = out.buffer.bytes.lock().unwrap_or_else(|p| p.into_inner());
        stream.run(|| {
            for (i, v) in values.iter().enumerate() {
                let at = out.byte_offset_of(i) as usize;
                ob[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            Ok(())
        })
    }
}

anyaccel_plugin::export_plugin!(RustExample);
