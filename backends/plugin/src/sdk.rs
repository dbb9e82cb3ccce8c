//! The Rust plugin SDK: write an `anyaccel_plugin.h` plugin in Rust.
//!
//! Implement [`Plugin`] for a type and export it with [`export_plugin!`](crate::export_plugin)
//! in a crate built as a `cdylib`. The macro generates the one exported function,
//! `anyaccel_plugin_get_api`, and a table whose every entry is a trampoline that turns the C
//! arguments into Rust ones, calls the trait, turns an `Err` into the status code and the
//! thread's `last_error` message, and catches panics (a panic becomes
//! [`ErrorCode::Internal`](anyaccel_hal::ErrorCode::Internal); it never unwinds into the host).
//!
//! Handles are boxes of the trait's associated types. The contract of the header holds for a
//! Rust plugin too, and the trait's docs repeat what matters: streams are in order, a failure
//! while a command runs makes the stream fail until the next `stream_synchronize`, events may be
//! destroyed while pending, every method may be called from any thread.
//!
//! ```ignore
//! use anyaccel_plugin::sdk::{self, DeviceDesc, Plugin};
//! struct MyChip;
//! impl Plugin for MyChip { /* ... */ }
//! anyaccel_plugin::export_plugin!(MyChip);
//! ```
//!
//! `examples/anyaccel_rust_example.rs` is a whole plugin written this way (host memory,
//! synchronous streams, events with timestamps, and `add` and `mul` as native ops); the tests
//! load it through the loader and run the HAL suite on it.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use anyaccel_hal::{AttrValue, DType, Error, Result};

use crate::sys::{self, AnyaccelOpCall, AnyaccelPluginApi, AnyaccelStatus};

/// What a device is, as [`Plugin::describe`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDesc {
    /// The device's own name (not empty).
    pub name: String,
    /// Its vendor (not empty).
    pub vendor: String,
    /// Driver or runtime version.
    pub driver_version: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// The largest single allocation in bytes.
    pub max_buffer_bytes: u64,
    /// The largest work-group, 1 where the notion does not apply.
    pub max_work_group_size: u64,
    /// Compute units.
    pub compute_units: u32,
    /// The dtypes it holds.
    pub dtypes: Vec<DType>,
    /// Kernel dialects (empty: no kernels).
    pub dialects: Vec<String>,
    /// The ops of `docs/ops.md` that [`Plugin::op_supported`] may accept.
    pub native_ops: Vec<String>,
    /// True when events carry timestamps.
    pub timestamps: bool,
}

/// A host memory range handed to a copy: valid until the stream's next synchronization (the
/// header's rule), so an asynchronous plugin may keep it until then.
#[derive(Debug, Clone, Copy)]
pub struct HostRange {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a pointer and a length; the host keeps the memory valid until the stream is
// synchronized, from whatever thread the plugin uses.
unsafe impl Send for HostRange {}
// SAFETY: as above.
unsafe impl Sync for HostRange {}

impl HostRange {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of a host-to-device copy's source.
    ///
    /// # Safety
    /// Call only before the stream's next synchronization has returned.
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the host guarantees ptr..ptr+len is valid until the next synchronization.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The bytes of a device-to-host copy's destination.
    ///
    /// # Safety
    /// Call only before the stream's next synchronization has returned, and hold no other
    /// reference to the range meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as above; the host writes nothing there until the copy has completed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// A tensor of an op call: a buffer of the plugin and a layout.
pub struct TensorArg<'a, B> {
    /// The buffer.
    pub buffer: &'a B,
    /// Bytes from the start of the buffer to element `[0, 0, ...]`.
    pub byte_offset: u64,
    /// Element type.
    pub dtype: DType,
    /// Sizes.
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub strides: Vec<usize>,
}

impl<B> TensorArg<'_, B> {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The byte offset in the buffer of the element with this row-major linear index.
    pub fn byte_offset_of(&self, mut linear: usize) -> u64 {
        let mut elems = 0usize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d == 0 {
                break;
            }
            elems += (linear % d) * s;
            linear /= d;
        }
        self.byte_offset + (elems * self.dtype.size_in_bytes()) as u64
    }
}

/// An op call of `docs/ops.md`, decoded.
pub struct OpCallArg<'a, B> {
    /// The op's name.
    pub op: String,
    /// Inputs, `None` for an absent optional one.
    pub inputs: Vec<Option<TensorArg<'a, B>>>,
    /// Outputs.
    pub outputs: Vec<TensorArg<'a, B>>,
    /// Attributes, each name once.
    pub attrs: Vec<(String, AttrValue)>,
}

impl<B> OpCallArg<'_, B> {
    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A plugin written in Rust. Every method may be called from any thread.
pub trait Plugin: Send + Sync + Sized + 'static {
    /// A device handle.
    type Device: Send + Sync + 'static;
    /// A buffer handle.
    type Buffer: Send + Sync + 'static;
    /// A stream handle.
    type Stream: Send + Sync + 'static;
    /// An event handle. It may be destroyed while pending: keep shared state in an `Arc`.
    type Event: Send + Sync + 'static;

    /// The plugin's short name (devices are `plugin:<NAME>:<index>`).
    const NAME: &'static CStr;
    /// The plugin's version.
    const VERSION: &'static CStr;

    /// Creates the plugin, once, when the host asks for the table.
    fn new() -> Result<Self>;

    /// The number of devices.
    fn device_count(&self) -> Result<usize>;
    /// Opens device `index`.
    fn open_device(&self, index: usize) -> Result<Self::Device>;
    /// Describes a device.
    fn describe(&self, device: &Self::Device) -> Result<DeviceDesc>;

    /// Allocates `bytes` bytes (0 is allowed; too much is `OutOfMemory`).
    fn alloc(&self, device: &Self::Device, bytes: u64) -> Result<Self::Buffer>;
    /// Copies host memory into `dst` at `offset` on `stream`.
    fn copy_h2d(
        &self,
        stream: &Self::Stream,
        dst: &Self::Buffer,
        offset: u64,
        src: HostRange,
    ) -> Result<()>;
    /// Copies `src` at `offset` into host memory on `stream`.
    fn copy_d2h(
        &self,
        stream: &Self::Stream,
        dst: HostRange,
        src: &Self::Buffer,
        offset: u64,
    ) -> Result<()>;
    /// Copies between buffers on `stream` (the ranges never overlap).
    #[allow(clippy::too_many_arguments)]
    fn copy_d2d(
        &self,
        stream: &Self::Stream,
        dst: &Self::Buffer,
        dst_offset: u64,
        src: &Self::Buffer,
        src_offset: u64,
        bytes: u64,
    ) -> Result<()>;
    /// Fills `bytes` bytes at `offset` with a 1-, 2- or 4-byte pattern.
    fn fill(
        &self,
        stream: &Self::Stream,
        dst: &Self::Buffer,
        offset: u64,
        bytes: u64,
        pattern: &[u8],
    ) -> Result<()>;

    /// Creates an in-order stream.
    fn create_stream(&self, device: &Self::Device) -> Result<Self::Stream>;
    /// Waits for the stream; returns (and clears) the error of a command that failed.
    fn synchronize(&self, stream: &Self::Stream) -> Result<()>;
    /// Makes later commands of `stream` wait for `event`.
    fn wait_event(&self, stream: &Self::Stream, event: &Self::Event) -> Result<()>;

    /// Creates an event (complete until recorded).
    fn create_event(&self, device: &Self::Device) -> Result<Self::Event>;
    /// Records `event` after the work submitted to `stream` so far.
    fn record_event(&self, event: &Self::Event, stream: &Self::Stream) -> Result<()>;
    /// True once the event's point has been reached.
    fn event_done(&self, event: &Self::Event) -> Result<bool>;
    /// Waits for the event; returns the error of the work before it.
    fn event_synchronize(&self, event: &Self::Event) -> Result<()>;
    /// Milliseconds between two completed events; unsupported by default.
    fn elapsed_ms(&self, start: &Self::Event, end: &Self::Event) -> Result<f64> {
        let _ = (start, end);
        Err(Error::unsupported(
            "this plugin's events carry no timestamps",
        ))
    }

    /// True when the device runs this op call natively. False by default.
    fn op_supported(&self, device: &Self::Device, call: &OpCallArg<'_, Self::Buffer>) -> bool {
        let _ = (device, call);
        false
    }
    /// Runs an op on `stream`.
    fn op_execute(&self, stream: &Self::Stream, call: &OpCallArg<'_, Self::Buffer>) -> Result<()> {
        let _ = stream;
        Err(Error::unsupported(format!(
            "{}: this plugin has no native ops",
            call.op
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// The trampolines
// ---------------------------------------------------------------------------------------------

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

static INSTANCE: OnceLock<Box<dyn Any + Send + Sync>> = OnceLock::new();
static TABLE: OnceLock<Table> = OnceLock::new();

struct Table(AnyaccelPluginApi);

fn set_error(e: &Error) -> AnyaccelStatus {
    let text = CString::new(e.message().replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = text);
    e.code().as_i32()
}

fn instance<P: Plugin>() -> Result<&'static P> {
    INSTANCE
        .get()
        .and_then(|b| b.downcast_ref::<P>())
        .ok_or_else(|| Error::internal("the plugin is not initialised"))
}

/// Runs `body`, turning an error or a panic into a status and the thread's message.
fn guard(body: impl FnOnce() -> Result<()>) -> AnyaccelStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => sys::ANYACCEL_OK,
        Ok(Err(e)) => set_error(&e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            set_error(&Error::internal(format!("the plugin panicked: {what}")))
        }
    }
}

fn null(what: &str) -> Error {
    Error::invalid_argument(format!("{what} is NULL"))
}

/// # Safety
/// `p` is NULL or a pointer made by `Box::into_raw` of a `T`, still alive.
unsafe fn handle<'a, T>(p: *mut c_void, what: &str) -> Result<&'a T> {
    // SAFETY: per the caller's contract.
    unsafe { (p as *const T).as_ref() }.ok_or_else(|| null(what))
}

fn boxed<T>(value: T) -> *mut c_void {
    Box::into_raw(Box::new(value)) as *mut c_void
}

/// # Safety
/// `out` is a valid pointer to write a handle to.
unsafe fn put<H>(out: *mut *mut H, value: *mut c_void) -> Result<()> {
    if out.is_null() {
        return Err(null("the output handle pointer"));
    }
    // SAFETY: non-null and valid per the caller's contract.
    unsafe { *out = value as *mut H };
    Ok(())
}

/// A device with the lists its info points to.
struct DeviceBox<D> {
    device: D,
    desc: DeviceDesc,
    _strings: Vec<CString>,
    dialects: Vec<*const c_char>,
    native_ops: Vec<*const c_char>,
}

// SAFETY: the raw pointers point into `_strings`, owned by the box and never mutated.
unsafe impl<D: Send> Send for DeviceBox<D> {}
// SAFETY: as above.
unsafe impl<D: Sync> Sync for DeviceBox<D> {}

/// Decodes a C op call.
///
/// # Safety
/// `call` is a valid AnyaccelOpCall whose tensors point at live buffers of type `B`.
unsafe fn decode<'a, B>(call: *const AnyaccelOpCall) -> Result<OpCallArg<'a, B>> {
    // SAFETY: per the caller's contract.
    let call = unsafe { call.as_ref() }.ok_or_else(|| null("the op call"))?;
    // SAFETY: the op name is a NUL-terminated string.
    let op = unsafe { crate::loader::c_text(call.op) }.ok_or_else(|| null("the op name"))?;
    let tensor = |p: *const sys::AnyaccelTensor| -> Result<TensorArg<'a, B>> {
        // SAFETY: the host passes valid tensor descriptors for the duration of the call.
        let t = unsafe { p.as_ref() }.ok_or_else(|| null("a tensor"))?;
        // SAFETY: the buffer handle was made by this SDK's buffer_alloc.
        let buffer = unsafe { handle::<B>(t.buffer as *mut c_void, "a tensor's buffer") }?;
        let dtype = crate::op::dtype_of(t.dtype).ok_or_else(|| {
            Error::invalid_argument(format!(
                "{op}: unknown DLPack dtype {{code {}, bits {}, lanes {}}}",
                t.dtype.code, t.dtype.bits, t.dtype.lanes
            ))
        })?;
        let n = t.ndim.max(0) as usize;
        let (shape, strides) = if n == 0 {
            (Vec::new(), Vec::new())
        } else {
            // SAFETY: shape and strides hold ndim entries each.
            unsafe {
                (
                    std::slice::from_raw_parts(t.shape, n)
                        .iter()
                        .map(|&s| s as usize)
                        .collect(),
                    std::slice::from_raw_parts(t.strides, n)
                        .iter()
                        .map(|&s| s as usize)
                        .collect(),
                )
            }
        };
        Ok(TensorArg {
            buffer,
            byte_offset: t.byte_offset,
            dtype,
            shape,
            strides,
        })
    };
    let mut inputs = Vec::with_capacity(call.num_inputs);
    for i in 0..call.num_inputs {
        // SAFETY: `inputs` holds num_inputs pointers.
        let p = unsafe { *call.inputs.add(i) };
        inputs.push(if p.is_null() { None } else { Some(tensor(p)?) });
    }
    let mut outputs = Vec::with_capacity(call.num_outputs);
    for i in 0..call.num_outputs {
        // SAFETY: `outputs` holds num_outputs pointers.
        outputs.push(tensor(unsafe { *call.outputs.add(i) })?);
    }
    let mut attrs = Vec::with_capacity(call.num_attrs);
    for i in 0..call.num_attrs {
        // SAFETY: `attrs` holds num_attrs entries.
        let a = unsafe { &*call.attrs.add(i) };
        // SAFETY: names and strings are NUL-terminated.
        let name =
            unsafe { crate::loader::c_text(a.name) }.ok_or_else(|| null("an attribute name"))?;
        let value = match a.kind {
            sys::ANYACCEL_ATTR_INT => AttrValue::Int(a.int_value),
            sys::ANYACCEL_ATTR_FLOAT => AttrValue::Float(a.float_value),
            sys::ANYACCEL_ATTR_INTS if a.ints_len == 0 => AttrValue::Ints(Vec::new()),
            // SAFETY: `ints` holds ints_len values.
            sys::ANYACCEL_ATTR_INTS => {
                AttrValue::Ints(unsafe { std::slice::from_raw_parts(a.ints, a.ints_len).to_vec() })
            }
            // SAFETY: as above.
            sys::ANYACCEL_ATTR_STR => {
                AttrValue::Str(unsafe { crate::loader::c_text(a.str) }.unwrap_or_default())
            }
            other => {
                return Err(Error::invalid_argument(format!(
                    "{op}: attribute `{name}` has unknown kind {other}"
                )))
            }
        };
        attrs.push((name, value));
    }
    Ok(OpCallArg {
        op,
        inputs,
        outputs,
        attrs,
    })
}

unsafe extern "C" fn last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

unsafe extern "C" fn device_count<P: Plugin>(count: *mut i32) -> AnyaccelStatus {
    guard(|| {
        let n = instance::<P>()?.device_count()?;
        if count.is_null() {
            return Err(null("count"));
        }
        // SAFETY: non-null; the host passes a valid i32.
        unsafe { *count = n.min(i32::MAX as usize) as i32 };
        Ok(())
    })
}

unsafe extern "C" fn device_open<P: Plugin>(
    index: i32,
    out: *mut *mut sys::AnyaccelDevice,
) -> AnyaccelStatus {
    guard(|| {
        let p = instance::<P>()?;
        let index = usize::try_from(index)
            .map_err(|_| Error::invalid_argument(format!("device index {index} is negative")))?;
        let device = p.open_device(index)?;
        let desc = p.describe(&device)?;
        let mut strings = Vec::new();
        let mut list = |names: &[String]| -> Vec<*const c_char> {
            let mut ptrs: Vec<*const c_char> = names
                .iter()
                .filter_map(|n| CString::new(n.as_str()).ok())
                .map(|c| {
                    let ptr = c.as_ptr();
                    strings.push(c);
                    ptr
                })
                .collect();
            ptrs.push(std::ptr::null());
            ptrs
        };
        let dialects = list(&desc.dialects);
        let native_ops = list(&desc.native_ops);
        let b = DeviceBox {
            device,
            desc,
            _strings: strings,
            dialects,
            native_ops,
        };
        // SAFETY: the host passes a valid pointer for the handle.
        unsafe { put(out, boxed(b)) }
    })
}

unsafe extern "C" fn device_close<P: Plugin>(device: *mut sys::AnyaccelDevice) -> AnyaccelStatus {
    guard(|| {
        if device.is_null() {
            return Err(null("device"));
        }
        // SAFETY: made by device_open's Box::into_raw; closed once.
        drop(unsafe { Box::from_raw(device as *mut DeviceBox<P::Device>) });
        Ok(())
    })
}

fn copy_text(dst: &mut [c_char], text: &str) {
    let bytes = text.as_bytes();
    let n = bytes.len().min(dst.len().saturating_sub(1));
    for (d, &b) in dst.iter_mut().zip(&bytes[..n]) {
        *d = b as c_char;
    }
    if let Some(end) = dst.get_mut(n) {
        *end = 0;
    }
}

unsafe extern "C" fn device_info<P: Plugin>(
    device: *mut sys::AnyaccelDevice,
    info: *mut sys::AnyaccelDeviceInfo,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: a live device handle.
        let d = unsafe { handle::<DeviceBox<P::Device>>(device.cast(), "device") }?;
        // SAFETY: the host passes a valid info struct.
        let info = unsafe { info.as_mut() }.ok_or_else(|| null("info"))?;
        if info.struct_size < std::mem::size_of::<sys::AnyaccelDeviceInfo>() {
            return Err(Error::abi_mismatch(format!(
                "device_info: struct_size {} is smaller than this plugin's AnyaccelDeviceInfo ({})",
                info.struct_size,
                std::mem::size_of::<sys::AnyaccelDeviceInfo>()
            )));
        }
        let desc = &d.desc;
        copy_text(&mut info.name, &desc.name);
        copy_text(&mut info.vendor, &desc.vendor);
        copy_text(&mut info.driver_version, &desc.driver_version);
        info.memory_bytes = desc.memory_bytes;
        info.max_buffer_bytes = desc.max_buffer_bytes;
        info.max_work_group_size = desc.max_work_group_size;
        info.compute_units = desc.compute_units;
        info.dtype_mask = desc.dtypes.iter().fold(0, |m, d| m | (1u32 << d.code()));
        info.timestamps = desc.timestamps as i32;
        info.dialects = if desc.dialects.is_empty() {
            std::ptr::null()
        } else {
            d.dialects.as_ptr()
        };
        info.native_ops = if desc.native_ops.is_empty() {
            std::ptr::null()
        } else {
            d.native_ops.as_ptr()
        };
        Ok(())
    })
}

unsafe extern "C" fn buffer_alloc<P: Plugin>(
    device: *mut sys::AnyaccelDevice,
    bytes: u64,
    out: *mut *mut sys::AnyaccelBuffer,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: a live device handle.
        let d = unsafe { handle::<DeviceBox<P::Device>>(device.cast(), "device") }?;
        let b = instance::<P>()?.alloc(&d.device, bytes)?;
        // SAFETY: the host passes a valid pointer for the handle.
        unsafe { put(out, boxed(b)) }
    })
}

unsafe extern "C" fn buffer_free<P: Plugin>(
    _device: *mut sys::AnyaccelDevice,
    buffer: *mut sys::AnyaccelBuffer,
) -> AnyaccelStatus {
    guard(|| {
        if buffer.is_null() {
            return Err(null("buffer"));
        }
        // SAFETY: made by buffer_alloc; freed once, after its commands completed.
        drop(unsafe { Box::from_raw(buffer as *mut P::Buffer) });
        Ok(())
    })
}

unsafe extern "C" fn copy_h2d<P: Plugin>(
    stream: *mut sys::AnyaccelStream,
    dst: *mut sys::AnyaccelBuffer,
    offset: u64,
    src: *const c_void,
    bytes: u64,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: live handles made by this SDK.
        let (s, b) = unsafe {
            (
                handle::<P::Stream>(stream.cast(), "stream")?,
                handle::<P::Buffer>(dst.cast(), "dst")?,
            )
        };
        if src.is_null() && bytes > 0 {
            return Err(null("src"));
        }
        let range = HostRange {
            ptr: src as *mut u8,
            len: bytes as usize,
        };
        instance::<P>()?.copy_h2d(s, b, offset, range)
    })
}

unsafe extern "C" fn copy_d2h<P: Plugin>(
    stream: *mut sys::AnyaccelStream,
    dst: *mut c_void,
    src: *mut sys::AnyaccelBuffer,
    offset: u64,
    bytes: u64,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: live handles made by this SDK.
        let (s, b) = unsafe {
            (
                handle::<P::Stream>(stream.cast(), "stream")?,
                handle::<P::Buffer>(src.cast(), "src")?,
            )
        };
        if dst.is_null() && bytes > 0 {
            return Err(null("dst"));
        }
        let range = HostRange {
            ptr: dst as *mut u8,
            len: bytes as usize,
        };
        instance::<P>()?.copy_d2h(s, range, b, offset)
    })
}

unsafe extern "C" fn copy_d2d<P: Plugin>(
    stream: *mut sys::AnyaccelStream,
    dst: *mut sys::AnyaccelBuffer,
    dst_offset: u64,
    src: *mut sys::AnyaccelBuffer,
    src_offset: u64,
    bytes: u64,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: live handles made by this SDK.
        let (s, d, b) = unsafe {
            (
                handle::<P::Stream>(stream.cast(), "stream")?,
                handle::<P::Buffer>(dst.cast(), "dst")?,
                handle::<P::Buffer>(src.cast(), "src")?,
            )
        };
        instance::<P>()?.copy_d2d(s, d, dst_offset, b, src_offset, bytes)
    })
}

unsafe extern "C" fn fill<P: Plugin>(
    stream: *mut sys::AnyaccelStream,
    dst: *mut sys::AnyaccelBuffer,
    offset: u64,
    bytes: u64,
    pattern: *const c_void,
    pattern_size: u32,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: live handles made by this SDK.
        let (s, d) = unsafe {
            (
                handle::<P::Stream>(stream.cast(), "stream")?,
                handle::<P::Buffer>(dst.cast(), "dst")?,
            )
        };
        if pattern.is_null() || !matches!(pattern_size, 1 | 2 | 4) {
            return Err(Error::invalid_argument(format!(
                "fill: pattern of {pattern_size} bytes, expected 1, 2 or 4"
            )));
        }
        // SAFETY: the pattern holds pattern_size bytes for the duration of the call.
        let pat =
            unsafe { std::slice::from_raw_parts(pattern as *const u8, pattern_size as usize) };
        instance::<P>()?.fill(s, d, offset, bytes, pat)
    })
}

unsafe extern "C" fn stream_create<P: Plugin>(
    device: *mut sys::AnyaccelDevice,
    out: *mut *mut sys::AnyaccelStream,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: a live device handle.
        let d = unsafe { handle::<DeviceBox<P::Device>>(device.cast(), "device") }?;
        let s = instance::<P>()?.create_stream(&d.device)?;
        // SAFETY: the host passes a valid pointer for the handle.
        unsafe { put(out, boxed(s)) }
    })
}

unsafe extern "C" fn stream_destroy<P: Plugin>(stream: *mut sys::AnyaccelStream) -> AnyaccelStatus {
    guard(|| {
        if stream.is_null() {
            return Err(null("stream"));
        }
        // SAFETY: made by stream_create; destroyed once.
        drop(unsafe { Box::from_raw(stream as *mut P::Stream) });
        Ok(())
    })
}

unsafe extern "C" fn stream_synchronize<P: Plugin>(
    stream: *mut sys::AnyaccelStream,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: a live stream handle.
        let s = unsafe { handle::<P::Stream>(stream.cast(), "stream") }?;
        instance::<P>()?.synchronize(s)
    })
}

unsafe extern "C" fn stream_wait_event<P: Plugin>(
    stream: *mut sys::AnyaccelStream,
    event: *mut sys::AnyaccelEvent,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: live handles made by this SDK.
        let (s, e) = unsafe {
            (
                handle::<P::Stream>(stream.cast(), "stream")?,
                handle::<P::Event>(event.cast(), "event")?,
            )
        };
        instance::<P>()?.wait_event(s, e)
    })
}

unsafe extern "C" fn event_create<P: Plugin>(
    device: *mut sys::AnyaccelDevice,
    out: *mut *mut sys::AnyaccelEvent,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: a live device handle.
        let d = unsafe { handle::<DeviceBox<P::Device>>(device.cast(), "device") }?;
        let e = instance::<P>()?.create_event(&d.device)?;
        // SAFETY: the host passes a valid pointer for the handle.
        unsafe { put(out, boxed(e)) }
    })
}

unsafe extern "C" fn event_destroy<P: Plugin>(event: *mut sys::AnyaccelEvent) -> AnyaccelStatus {
    guard(|| {
        if event.is_null() {
            return Err(null("event"));
        }
        // SAFETY: made by event_create; destroyed once. Shared state lives on in the stream's
        // own references (the trait's rule for Event).
        drop(unsafe { Box::from_raw(event as *mut P::Event) });
        Ok(())
    })
}

unsafe extern "C" fn event_record<P: Plugin>(
    event: *mut sys::AnyaccelEvent,
    stream: *mut sys::AnyaccelStream,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: live handles made by this SDK.
        let (e, s) = unsafe {
            (
                handle::<P::Event>(event.cast(), "event")?,
                handle::<P::Stream>(stream.cast(), "stream")?,
            )
        };
        instance::<P>()?.record_event(e, s)
    })
}

unsafe extern "C" fn event_query<P: Plugin>(
    event: *mut sys::AnyaccelEvent,
    completed: *mut i32,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: a live event handle.
        let e = unsafe { handle::<P::Event>(event.cast(), "event") }?;
        let done = instance::<P>()?.event_done(e)?;
        if completed.is_null() {
            return Err(null("completed"));
        }
        // SAFETY: non-null; the host passes a valid i32.
        unsafe { *completed = done as i32 };
        Ok(())
    })
}

unsafe extern "C" fn event_synchronize<P: Plugin>(
    event: *mut sys::AnyaccelEvent,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: a live event handle.
        let e = unsafe { handle::<P::Event>(event.cast(), "event") }?;
        instance::<P>()?.event_synchronize(e)
    })
}

unsafe extern "C" fn event_elapsed_ms<P: Plugin>(
    start: *mut sys::AnyaccelEvent,
    end: *mut sys::AnyaccelEvent,
    ms: *mut f64,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: live handles made by this SDK.
        let (a, b) = unsafe {
            (
                handle::<P::Event>(start.cast(), "start")?,
                handle::<P::Event>(end.cast(), "end")?,
            )
        };
        let v = instance::<P>()?.elapsed_ms(a, b)?;
        if ms.is_null() {
            return Err(null("ms"));
        }
        // SAFETY: non-null; the host passes a valid f64.
        unsafe { *ms = v };
        Ok(())
    })
}

unsafe extern "C" fn op_supported<P: Plugin>(
    device: *mut sys::AnyaccelDevice,
    call: *const AnyaccelOpCall,
) -> i32 {
    let answer = catch_unwind(AssertUnwindSafe(|| -> Result<bool> {
        // SAFETY: a live device handle and a valid call (the header's contract).
        let d = unsafe { handle::<DeviceBox<P::Device>>(device.cast(), "device") }?;
        // SAFETY: as above.
        let call = unsafe { decode::<P::Buffer>(call) }?;
        Ok(instance::<P>()?.op_supported(&d.device, &call))
    }));
    matches!(answer, Ok(Ok(true))) as i32
}

unsafe extern "C" fn op_execute<P: Plugin>(
    stream: *mut sys::AnyaccelStream,
    call: *const AnyaccelOpCall,
) -> AnyaccelStatus {
    guard(|| {
        // SAFETY: a live stream handle and a valid call (the header's contract).
        let s = unsafe { handle::<P::Stream>(stream.cast(), "stream") }?;
        // SAFETY: as above.
        let call = unsafe { decode::<P::Buffer>(call) }?;
        instance::<P>()?.op_execute(s, &call)
    })
}

/// The table of plugin `P`, built on the first call. What `export_plugin!` returns from
/// `anyaccel_plugin_get_api`. Returns NULL when the host's ABI major differs or the plugin
/// could not be created (its message is then this thread's `last_error`).
pub fn get_api<P: Plugin>(host_major: u32, host_minor: u32) -> *const AnyaccelPluginApi {
    let _ = host_minor;
    if host_major != sys::ABI_MAJOR {
        set_error(&Error::abi_mismatch(format!(
            "the host speaks plugin ABI {host_major}.{host_minor}, this plugin ABI {}.{}",
            sys::ABI_MAJOR,
            sys::ABI_MINOR
        )));
        return std::ptr::null();
    }
    if INSTANCE.get().is_none() {
        match catch_unwind(P::new) {
            Ok(Ok(p)) => {
                let _ = INSTANCE.set(Box::new(p));
            }
            Ok(Err(e)) => {
                set_error(&e);
                return std::ptr::null();
            }
            Err(_) => {
                set_error(&Error::internal("the plugin panicked while starting"));
                return std::ptr::null();
            }
        }
    }
    let table = TABLE.get_or_init(|| {
        Table(AnyaccelPluginApi {
            struct_size: std::mem::size_of::<AnyaccelPluginApi>(),
            abi_major: sys::ABI_MAJOR,
            abi_minor: sys::ABI_MINOR,
            name: P::NAME.as_ptr(),
            version: P::VERSION.as_ptr(),
            last_error: Some(last_error),
            device_count: Some(device_count::<P>),
            device_open: Some(device_open::<P>),
            device_close: Some(device_close::<P>),
            device_info: Some(device_info::<P>),
            buffer_alloc: Some(buffer_alloc::<P>),
            buffer_free: Some(buffer_free::<P>),
            copy_h2d: Some(copy_h2d::<P>),
            copy_d2h: Some(copy_d2h::<P>),
            copy_d2d: Some(copy_d2d::<P>),
            fill: Some(fill::<P>),
            stream_create: Some(stream_create::<P>),
            stream_destroy: Some(stream_destroy::<P>),
            stream_synchronize: Some(stream_synchronize::<P>),
            stream_wait_event: Some(stream_wait_event::<P>),
            event_create: Some(event_create::<P>),
            event_destroy: Some(event_destroy::<P>),
            event_record: Some(event_record::<P>),
            event_query: Some(event_query::<P>),
            event_synchronize: Some(event_synchronize::<P>),
            event_elapsed_ms: Some(event_elapsed_ms::<P>),
            module_load: None,
            module_unload: None,
            kernel_get: None,
            kernel_launch: None,
            op_supported: Some(op_supported::<P>),
            op_execute: Some(op_execute::<P>),
            copy_peer: None,
            collectives: std::ptr::null(),
            buffer_host_ptr: None,
        })
    });
    &table.0
}

/// Exports a [`sdk::Plugin`](crate::sdk::Plugin) implementation as an `anyaccel_plugin.h`
/// plugin: generates `anyaccel_plugin_get_api`. Use it once, in a `cdylib` crate.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The entry point of `anyaccel_plugin.h`.
        #[no_mangle]
        pub extern "C" fn anyaccel_plugin_get_api(
            host_abi_major: u32,
            host_abi_minor: u32,
        ) -> *const $crate::sys::AnyaccelPluginApi {
            $crate::sdk::get_api::<$plugin>(host_abi_major, host_abi_minor)
        }
    };
}
