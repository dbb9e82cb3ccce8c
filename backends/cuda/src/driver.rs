//! The CUDA driver API through cudarc's `sys` layer: opening `libcuda` with every symbol checked
//! before its first use, driver errors in anyaccel's words, the primary context, and owned
//! handles (streams, events, pinned host memory) that release themselves.
//!
//! cudarc's dynamic loading resolves a function's symbol on its first call and panics when the
//! library or the symbol is missing. So [`load`] opens the library once, checks that every
//! function in [`SYMBOLS`] is there, and only then lets anything call into the driver; every
//! driver call of this crate goes through a function listed there (a test keeps the list
//! complete), and the few newer functions in [`OPTIONAL_SYMBOLS`] are called only where
//! [`has_symbol`] says that the driver has them.

use std::ffi::{c_void, CStr};
use std::fmt;
use std::sync::{Arc, OnceLock};

use anyaccel_hal::{Error, ErrorCode, Result, Unavailable};
use cudarc::driver::sys::{self, CUresult};

/// Every driver function that the backend calls unconditionally, and so checks for before its
/// first call into `libcuda`. All of them are in every CUDA 12 driver (most are much older).
pub const DRIVER_SYMBOLS: &[&str] = SYMBOLS;

pub(crate) const SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuGetErrorName",
    "cuGetErrorString",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceTotalMem_v2",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuCtxSynchronize",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemHostAlloc",
    "cuMemFreeHost",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemcpyDtoDAsync_v2",
    "cuMemsetD8Async",
    "cuMemsetD16Async",
    "cuMemsetD32Async",
    "cuStreamCreate",
    "cuStreamDestroy_v2",
    "cuStreamSynchronize",
    "cuStreamWaitEvent",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventQuery",
    "cuEventSynchronize",
    "cuEventElapsedTime",
    "cuEventDestroy_v2",
    "cuModuleLoadDataEx",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuFuncGetAttribute",
    "cuLaunchKernel",
];

/// Driver functions used only when present: `cuFuncGetParamInfo` (CUDA 12.4) lets `launch`
/// check the arguments against the kernel's parameters.
pub(crate) const OPTIONAL_SYMBOLS: &[&str] = &[
    "cuFuncGetParamInfo",
    "cuDeviceCanAccessPeer",
    "cuCtxEnablePeerAccess",
    "cuMemcpyPeerAsync",
];

/// The driver library's file name, as error messages give it.
pub const LIBCUDA: &str = "libcuda.so.1";

/// What opening the driver found: its version, or why it cannot be used.
struct Loaded {
    /// `cuDriverGetVersion`, e.g. 12040, once `cuInit` succeeded.
    version: i32,
    /// Which optional symbols the library has, in the order of [`OPTIONAL_SYMBOLS`].
    optional: Vec<bool>,
}

static DRIVER: OnceLock<std::result::Result<Loaded, Unavailable>> = OnceLock::new();

/// Opens libcuda, checks every symbol of [`SYMBOLS`], and calls `cuInit`: once per process.
/// Afterwards the functions of [`SYMBOLS`] may be called. Never panics.
pub(crate) fn load() -> std::result::Result<(), Unavailable> {
    loaded().map(|_| ())
}

fn loaded() -> std::result::Result<&'static Loaded, Unavailable> {
    DRIVER
        .get_or_init(|| {
            std::panic::catch_unwind(open_driver).unwrap_or_else(|panic| {
                Err(Unavailable::new(format!(
                    "the CUDA driver library panicked while being opened: {}",
                    panic_text(&*panic)
                )))
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The text of a caught panic.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Why a library cannot be opened, in the dynamic linker's words.
pub(crate) fn dlopen_error(file: &str) -> String {
    // SAFETY: opening a shared library runs its initialisers; these are NVIDIA's own libraries,
    // opened exactly as cudarc opens them. The handle is dropped at once.
    match unsafe { libloading::Library::new(file) } {
        Ok(_) => format!("{file} opens, but under none of the names that cudarc looks for"),
        Err(e) => {
            // libloading puts the dynamic linker's words in the error's source.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

/// The symbols of `wanted` that `lib` lacks.
pub(crate) fn missing_symbols<'a>(lib: &libloading::Library, wanted: &[&'a str]) -> Vec<&'a str> {
    wanted
        .iter()
        .copied()
        // SAFETY: only looks the symbol up; the pointer is never used.
        .filter(|name| unsafe { lib.get::<*const c_void>(name.as_bytes()) }.is_err())
        .collect()
}

fn open_driver() -> std::result::Result<Loaded, Unavailable> {
    // SAFETY: tries to open libcuda under cudarc's candidate names, dropping each handle.
    if !unsafe { sys::is_culib_present() } {
        return Err(Unavailable::new(format!(
            "the NVIDIA driver library {LIBCUDA} cannot be loaded ({}): no NVIDIA driver is \
             installed, or its folder is not on the library path",
            dlopen_error(LIBCUDA)
        )));
    }
    // SAFETY: is_culib_present just opened the library under one of the names that culib
    // tries, so culib finds it rather than panicking.
    let lib = unsafe { sys::culib() };
    let missing = missing_symbols(lib, SYMBOLS);
    if !missing.is_empty() {
        return Err(Unavailable::new(format!(
            "the NVIDIA driver library {LIBCUDA} lacks {}: the driver is too old (a CUDA 12 \
             driver, 525 or newer, is needed) or the library is not NVIDIA's",
            missing.join(", ")
        )));
    }
    let optional = OPTIONAL_SYMBOLS
        .iter()
        .map(|s| missing_symbols(lib, &[s]).is_empty())
        .collect();
    // SAFETY: cuInit is in the library (checked above); 0 is the only valid flag value.
    let init = unsafe { sys::cuInit(0) };
    if init != CUresult::CUDA_SUCCESS {
        return Err(Unavailable::new(format!(
            "cuInit failed: {}",
            describe(init)
        )));
    }
    let mut version = 0;
    // SAFETY: the symbol is present; `version` is a valid out-pointer.
    let r = unsafe { sys::cuDriverGetVersion(&mut version) };
    if r != CUresult::CUDA_SUCCESS {
        return Err(Unavailable::new(format!(
            "cuDriverGetVersion failed: {}",
            describe(r)
        )));
    }
    Ok(Loaded { version, optional })
}

/// The driver's CUDA version as `cuDriverGetVersion` gives it (12040 for 12.4). Only after
/// [`load`] succeeded.
pub(crate) fn driver_version() -> i32 {
    loaded().map(|l| l.version).unwrap_or(0)
}

/// True when the loaded driver has the optional function `name` (of [`OPTIONAL_SYMBOLS`]).
pub(crate) fn has_symbol(name: &str) -> bool {
    match loaded() {
        Ok(l) => OPTIONAL_SYMBOLS
            .iter()
            .position(|s| *s == name)
            .is_some_and(|i| l.optional[i]),
        Err(_) => false,
    }
}

/// `12.4` from 12040.
pub(crate) fn version_text(version: i32) -> String {
    format!("{}.{}", version / 1000, (version % 1000) / 10)
}

/// `CUDA_ERROR_OUT_OF_MEMORY (out of memory)`: the error's name and the driver's description.
pub(crate) fn describe(r: CUresult) -> String {
    let mut text: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: only called once the library is open with its symbols checked (every caller
    // holds a result of a driver call, which needs that); `text` is a valid out-pointer, and
    // the driver's strings are static.
    let ok = unsafe { sys::cuGetErrorString(r, &mut text) } == CUresult::CUDA_SUCCESS;
    let description = if ok && !text.is_null() {
        // SAFETY: a NUL-terminated static string owned by the driver.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    if description.is_empty() {
        format!("{r:?}")
    } else {
        format!("{r:?} ({description})")
    }
}

/// True for the errors after which CUDA cannot use the context again: a kernel faulted, the
/// device fell off the bus, an uncorrectable ECC error. Every later call in the context fails.
pub(crate) fn is_fatal(r: CUresult) -> bool {
    use CUresult::*;
    matches!(
        r,
        CUDA_ERROR_ILLEGAL_ADDRESS
            | CUDA_ERROR_LAUNCH_TIMEOUT
            | CUDA_ERROR_ASSERT
            | CUDA_ERROR_HARDWARE_STACK_ERROR
            | CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CUDA_ERROR_MISALIGNED_ADDRESS
            | CUDA_ERROR_INVALID_ADDRESS_SPACE
            | CUDA_ERROR_INVALID_PC
            | CUDA_ERROR_LAUNCH_FAILED
            | CUDA_ERROR_ECC_UNCORRECTABLE
            | CUDA_ERROR_NVLINK_UNCORRECTABLE
            | CUDA_ERROR_CONTEXT_IS_DESTROYED
            | CUDA_ERROR_DEINITIALIZED
            | CUDA_ERROR_EXTERNAL_DEVICE
            | CUDA_ERROR_UNKNOWN
    )
}

/// An anyaccel error for the driver result `r` of `what`: `code`, except that running out of
/// memory is `OutOfMemory` and a lost context is `DeviceLost`.
pub(crate) fn cu_error(r: CUresult, code: ErrorCode, what: impl fmt::Display) -> Error {
    if is_fatal(r) {
        return Error::device_lost(format!(
            "{what}: {}; CUDA cannot recover from this: every later command in this process's \
             context of the device fails, so restart the process to use the device again",
            describe(r)
        ));
    }
    let code = match r {
        CUresult::CUDA_ERROR_OUT_OF_MEMORY => ErrorCode::OutOfMemory,
        _ => code,
    };
    Error::new(code, format!("{what}: {}", describe(r)))
}

/// `Ok` for `CUDA_SUCCESS`, else [`cu_error`] with the description made by `what`.
pub(crate) fn check<W: fmt::Display>(
    r: CUresult,
    code: ErrorCode,
    what: impl FnOnce() -> W,
) -> Result<()> {
    if r == CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(cu_error(r, code, what()))
    }
}

/// A device's primary context, retained for as long as this lives.
///
/// The primary context is the one that the CUDA runtime, and so cuBLAS, use for the device;
/// sharing it lets cuBLAS run on this backend's streams and memory.
pub(crate) struct Context {
    device: sys::CUdevice,
    raw: sys::CUcontext,
}

// SAFETY: a CUcontext may be made current on, and used from, any thread; the handle is only a
// pointer that the driver owns.
unsafe impl Send for Context {}
// SAFETY: as above: driver calls on a context are thread-safe.
unsafe impl Sync for Context {}

impl Context {
    /// Retains the primary context of `device` (an ordinal's handle from `cuDeviceGet`).
    pub(crate) fn retain(device: sys::CUdevice) -> Result<Arc<Context>> {
        load()?;
        let mut raw: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: the driver is loaded and initialised; `device` came from cuDeviceGet.
        let r = unsafe { sys::cuDevicePrimaryCtxRetain(&mut raw, device) };
        check(r, ErrorCode::Unavailable, || {
            "cuDevicePrimaryCtxRetain".to_string()
        })?;
        Ok(Arc::new(Context { device, raw }))
    }

    /// Makes the context current on the calling thread (if it is not already).
    pub(crate) fn bind(&self) -> Result<()> {
        let mut current: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: `current` is a valid out-pointer.
        let r = unsafe { sys::cuCtxGetCurrent(&mut current) };
        check(r, ErrorCode::Internal, || "cuCtxGetCurrent".to_string())?;
        if current != self.raw {
            // SAFETY: `raw` is a live, retained context.
            let r = unsafe { sys::cuCtxSetCurrent(self.raw) };
            check(r, ErrorCode::Internal, || "cuCtxSetCurrent".to_string())?;
        }
        Ok(())
    }

    /// Waits for all work in the context (every stream).
    pub(crate) fn synchronize(&self) -> Result<()> {
        self.bind()?;
        // SAFETY: the context is current on this thread.
        let r = unsafe { sys::cuCtxSynchronize() };
        check(r, ErrorCode::LaunchFailed, || {
            "cuCtxSynchronize".to_string()
        })
    }

    /// The raw handle, to compare contexts.
    pub(crate) fn raw(&self) -> sys::CUcontext {
        self.raw
    }

    /// The device handle.
    pub(crate) fn device(&self) -> sys::CUdevice {
        self.device
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: releases the reference taken in `retain`; everything that used the context
        // (memory, streams, modules) holds an Arc of it and so has been dropped already.
        unsafe {
            sys::cuDevicePrimaryCtxRelease_v2(self.device);
        }
    }
}

/// A CUDA stream that does not synchronise with the legacy default stream.
pub(crate) struct Stream {
    ctx: Arc<Context>,
    raw: sys::CUstream,
}

// SAFETY: streams may be used from any thread; the handle is a pointer owned by the driver.
unsafe impl Send for Stream {}
// SAFETY: as above: enqueueing on a stream from several threads is thread-safe in the driver.
unsafe impl Sync for Stream {}

impl Stream {
    pub(crate) fn new(ctx: Arc<Context>) -> Result<Stream> {
        ctx.bind()?;
        let mut raw: sys::CUstream = std::ptr::null_mut();
        // SAFETY: the context is current; `raw` is a valid out-pointer.
        let r = unsafe {
            sys::cuStreamCreate(
                &mut raw,
                sys::CUstream_flags::CU_STREAM_NON_BLOCKING as std::ffi::c_uint,
            )
        };
        check(r, ErrorCode::Unavailable, || "cuStreamCreate".to_string())?;
        Ok(Stream { ctx, raw })
    }

    pub(crate) fn raw(&self) -> sys::CUstream {
        self.raw
    }

    /// Waits for everything enqueued so far.
    pub(crate) fn synchronize(&self) -> std::result::Result<(), CUresult> {
        self.ctx
            .bind()
            .map_err(|_| CUresult::CUDA_ERROR_INVALID_CONTEXT)?;
        // SAFETY: a live stream of the current context.
        let r = unsafe { sys::cuStreamSynchronize(self.raw) };
        if r == CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(r)
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: a live stream of the current context. Destroying a stream with work in
            // it is allowed: the work completes, then the stream's resources are released.
            unsafe {
                sys::cuStreamDestroy_v2(self.raw);
            }
        }
    }
}

/// A CUDA event.
pub(crate) struct RawEvent {
    ctx: Arc<Context>,
    raw: sys::CUevent,
}

// SAFETY: events may be recorded, queried and waited on from any thread.
unsafe impl Send for RawEvent {}
// SAFETY: as above.
unsafe impl Sync for RawEvent {}

impl RawEvent {
    /// An event; `timing` keeps timestamps (else it is cheaper to record and wait on).
    pub(crate) fn new(ctx: Arc<Context>, timing: bool) -> Result<RawEvent> {
        ctx.bind()?;
        let flags = if timing {
            sys::CUevent_flags::CU_EVENT_DEFAULT
        } else {
            sys::CUevent_flags::CU_EVENT_DISABLE_TIMING
        };
        let mut raw: sys::CUevent = std::ptr::null_mut();
        // SAFETY: the context is current; `raw` is a valid out-pointer.
        let r = unsafe { sys::cuEventCreate(&mut raw, flags as std::ffi::c_uint) };
        check(r, ErrorCode::Internal, || "cuEventCreate".to_string())?;
        Ok(RawEvent { ctx, raw })
    }

    pub(crate) fn raw(&self) -> sys::CUevent {
        self.raw
    }

    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Records the event at the current end of `stream` (a stream of the same context).
    pub(crate) fn record(&self, stream: &Stream) -> std::result::Result<(), CUresult> {
        self.ctx
            .bind()
            .map_err(|_| CUresult::CUDA_ERROR_INVALID_CONTEXT)?;
        // SAFETY: both handles are live and of the current context.
        let r = unsafe { sys::cuEventRecord(self.raw, stream.raw()) };
        if r == CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(r)
        }
    }

    /// `Ok(true)` once the work before the event has completed, `Ok(false)` while it runs.
    pub(crate) fn query(&self) -> std::result::Result<bool, CUresult> {
        self.ctx
            .bind()
            .map_err(|_| CUresult::CUDA_ERROR_INVALID_CONTEXT)?;
        // SAFETY: a live event of the current context.
        match unsafe { sys::cuEventQuery(self.raw) } {
            CUresult::CUDA_SUCCESS => Ok(true),
            CUresult::CUDA_ERROR_NOT_READY => Ok(false),
            r => Err(r),
        }
    }

    /// Waits until the work before the event has completed.
    pub(crate) fn synchronize(&self) -> std::result::Result<(), CUresult> {
        self.ctx
            .bind()
            .map_err(|_| CUresult::CUDA_ERROR_INVALID_CONTEXT)?;
        // SAFETY: a live event of the current context.
        let r = unsafe { sys::cuEventSynchronize(self.raw) };
        if r == CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(r)
        }
    }
}

impl Drop for RawEvent {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: a live event; destroying one that has not completed is allowed (the
            // driver releases it when it completes).
            unsafe {
                sys::cuEventDestroy_v2(self.raw);
            }
        }
    }
}

/// Page-locked host memory, for asynchronous transfers.
pub(crate) struct PinnedHost {
    ctx: Arc<Context>,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain host memory owned by this value; access is governed by `&`/`&mut` as for a
// Vec<u8>.
unsafe impl Send for PinnedHost {}
// SAFETY: as above.
unsafe impl Sync for PinnedHost {}

impl PinnedHost {
    /// `len` (> 0) bytes of page-locked memory.
    pub(crate) fn new(ctx: Arc<Context>, len: usize) -> Result<PinnedHost> {
        ctx.bind()?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: the context is current; `ptr` is a valid out-pointer. Portable: usable from
        // every context.
        let r = unsafe { sys::cuMemHostAlloc(&mut ptr, len, sys::CU_MEMHOSTALLOC_PORTABLE) };
        check(r, ErrorCode::OutOfMemory, || {
            format!("cuMemHostAlloc of {len} bytes of page-locked staging memory")
        })?;
        Ok(PinnedHost {
            ctx,
            ptr: ptr.cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The bytes `range` of the memory. The caller must know that no transfer is writing them.
    pub(crate) fn slice(&self, start: usize, len: usize) -> &[u8] {
        assert!(start + len <= self.len, "staging range out of bounds");
        // SAFETY: in bounds (asserted: an internal invariant, never user input); the memory
        // lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.add(start), len) }
    }

    /// The bytes `range` of the memory, to fill. The caller must know that no transfer is
    /// reading them.
    pub(crate) fn slice_mut(&mut self, start: usize, len: usize) -> &mut [u8] {
        assert!(start + len <= self.len, "staging range out of bounds");
        // SAFETY: in bounds (asserted: an internal invariant, never user input); `&mut self`
        // makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

impl Drop for PinnedHost {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: memory from cuMemHostAlloc; the owner (a queue's staging pool) drops it
            // only after the transfers that used it have completed.
            unsafe {
                sys::cuMemFreeHost(self.ptr.cast());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `sys::cu*` function that this crate's sources call is in [`SYMBOLS`] or
    /// [`OPTIONAL_SYMBOLS`], so that the probe's check covers every call cudarc could panic in.
    #[test]
    fn every_called_driver_function_is_checked() {
        let sources = [
            include_str!("driver.rs"),
            include_str!("device.rs"),
            include_str!("memory.rs"),
            include_str!("queue.rs"),
            include_str!("program.rs"),
            include_str!("blas.rs"),
        ];
        let mut unchecked = Vec::new();
        for source in sources {
            for (i, _) in source.match_indices("sys::cu") {
                let name: String = source[i + 5..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // Driver functions are `cu` and a capital: not `culib`, not `cublas*`.
                let is_driver = name.chars().nth(2).is_some_and(|c| c.is_ascii_uppercase());
                let is_call = source[i + 5 + name.len()..].starts_with('(');
                if is_driver
                    && is_call
                    && !SYMBOLS.contains(&name.as_str())
                    && !OPTIONAL_SYMBOLS.contains(&name.as_str())
                {
                    unchecked.push(name);
                }
            }
        }
        assert!(
            unchecked.is_empty(),
            "driver functions called but not checked: {unchecked:?}"
        );
    }

    #[test]
    fn versions_read_as_major_minor() {
        assert_eq!(version_text(12040), "12.4");
        assert_eq!(version_text(12080), "12.8");
        assert_eq!(version_text(11080), "11.8");
    }
}
