//! Runtimes, backends and devices.

use std::ffi::{c_char, CString};
use std::sync::{Arc, Mutex};

use facade::hal::Runtime;
use facade::{DType, Device, Error, Result};

use crate::handle::{self, from_ptr, to_ptr, Kind};
use crate::{anyaccel_status, c_string, guard, guard_info, guard_out, str_arg};

/// A runtime: the compiled-in backends and their devices. Opaque.
pub struct anyaccel_runtime_t {
    _opaque: [u8; 0],
}

/// A device of a runtime (`cpu:0`, `vulkan:0`, ...). Opaque; owned by its runtime.
pub struct anyaccel_device_t {
    _opaque: [u8; 0],
}

/// An element type: one of the `ANYACCEL_DTYPE_*` numbers (the same as `DType::code`).
pub type anyaccel_dtype = u32;

/// IEEE 754 binary32.
pub const ANYACCEL_DTYPE_F32: anyaccel_dtype = 1;
/// IEEE 754 binary16.
pub const ANYACCEL_DTYPE_F16: anyaccel_dtype = 2;
/// bfloat16.
pub const ANYACCEL_DTYPE_BF16: anyaccel_dtype = 3;
/// IEEE 754 binary64, where the device has it.
pub const ANYACCEL_DTYPE_F64: anyaccel_dtype = 4;
/// Signed 32-bit integer.
pub const ANYACCEL_DTYPE_I32: anyaccel_dtype = 5;
/// Signed 64-bit integer.
pub const ANYACCEL_DTYPE_I64: anyaccel_dtype = 6;
/// Unsigned 8-bit integer.
pub const ANYACCEL_DTYPE_U8: anyaccel_dtype = 7;
/// Boolean, one byte that is 0 or 1.
pub const ANYACCEL_DTYPE_BOOL: anyaccel_dtype = 8;
/// Signed 8-bit integer (two's complement): the storage of quantized tensors.
pub const ANYACCEL_DTYPE_I8: anyaccel_dtype = 9;

/// A backend and what probing it found. Set `struct_size = sizeof(anyaccel_backend_info_t)`
/// before the call; fields are only ever appended.
#[repr(C)]
pub struct anyaccel_backend_info_t {
    /// Set by the caller to the size of the struct it was built with.
    pub struct_size: usize,
    /// The backend's name: `cpu`, `opencl`, `vulkan`, `cuda`, `plugin:<name>`.
    pub name: *const c_char,
    /// 1 when the backend loaded and probed, 0 when it is unavailable.
    pub available: i32,
    /// Its number of devices (0 when unavailable).
    pub device_count: usize,
    /// Why it is unavailable, in the loader's words; NULL when available.
    pub reason: *const c_char,
}

/// What a device is. Set `struct_size = sizeof(anyaccel_device_info_t)` before the call; fields
/// are only ever appended. The strings belong to the runtime and live as long as it does.
#[repr(C)]
pub struct anyaccel_device_info_t {
    /// Set by the caller to the size of the struct it was built with.
    pub struct_size: usize,
    /// Unique id within the runtime, e.g. `cpu:0`, `vulkan:0`.
    pub id: *const c_char,
    /// The backend's name.
    pub backend: *const c_char,
    /// The device's own name.
    pub name: *const c_char,
    /// Its vendor.
    pub vendor: *const c_char,
    /// Driver or runtime version.
    pub driver_version: *const c_char,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// The largest single allocation in bytes.
    pub max_buffer_bytes: u64,
    /// The largest work-group (total items), 1 where the notion does not apply.
    pub max_work_group_size: u64,
    /// Compute units (cores, SMs, CUs).
    pub compute_units: u32,
    /// 1 when events carry device timestamps (see `anyaccel_event_elapsed_ms`).
    pub timestamps: i32,
}

struct BackendEntry {
    name: CString,
    reason: Option<CString>,
    device_count: usize,
}

#[derive(Default)]
struct RuntimeCache {
    backends: Option<Vec<BackendEntry>>,
    /// Every device handle made for this runtime, destroyed with it.
    devices: Vec<(Arc<dyn Device>, usize)>,
}

pub(crate) struct RuntimeObj {
    runtime: Runtime,
    cache: Mutex<RuntimeCache>,
}

impl RuntimeObj {
    fn cache(&self) -> std::sync::MutexGuard<'_, RuntimeCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The runtime's CPU device (host memory for DLPack), or `Unsupported`.
    pub(crate) fn cpu_device(&self, func: &str) -> Result<Arc<dyn Device>> {
        self.runtime
            .all_devices()
            .into_iter()
            .find(|d| d.info().backend == "cpu")
            .ok_or_else(|| {
                Error::unsupported(format!(
                    "{func} needs the cpu backend for host memory, and this runtime has no cpu device"
                ))
            })
    }

    /// The handle of `device`, made on first use.
    fn device_handle(&self, device: Arc<dyn Device>) -> Result<usize> {
        let mut cache = self.cache();
        if let Some((_, h)) = cache
            .devices
            .iter()
            .find(|(d, _)| crate::same_device(d, &device))
        {
            return Ok(*h);
        }
        let info = device.info();
        let obj = DeviceObj {
            id: c_string(&info.id),
            backend: c_string(&info.backend),
            name: c_string(&info.name),
            vendor: c_string(&info.vendor),
            driver_version: c_string(&info.driver_version),
            device: device.clone(),
        };
        let h = handle::insert(Kind::Device, Arc::new(obj))?;
        cache.devices.push((device, h));
        Ok(h)
    }
}

pub(crate) struct DeviceObj {
    pub(crate) device: Arc<dyn Device>,
    id: CString,
    backend: CString,
    name: CString,
    vendor: CString,
    driver_version: CString,
}

pub(crate) fn runtime(rt: *const anyaccel_runtime_t) -> Result<Arc<RuntimeObj>> {
    handle::get(from_ptr(rt), Kind::Runtime, "runtime")
}

pub(crate) fn device(dev: *const anyaccel_device_t, what: &str) -> Result<Arc<DeviceObj>> {
    handle::get(from_ptr(dev), Kind::Device, what)
}

/// The dtype with this `ANYACCEL_DTYPE_*` number.
pub(crate) fn dtype_arg(dtype: anyaccel_dtype, what: &str) -> Result<DType> {
    DType::from_code(dtype).ok_or_else(|| {
        Error::invalid_argument(format!(
            "argument `{what}` is {dtype}: expected an ANYACCEL_DTYPE_* number from 1 (f32) to 8 (bool)"
        ))
    })
}

fn register_runtime(runtime: Runtime) -> Result<*mut anyaccel_runtime_t> {
    let obj = RuntimeObj {
        runtime,
        cache: Mutex::new(RuntimeCache::default()),
    };
    Ok(to_ptr(handle::insert(Kind::Runtime, Arc::new(obj))?))
}

/// Creates a runtime with every compiled-in backend. Backends are probed lazily, on first use
/// (`anyaccel_runtime_backend_count`, `anyaccel_runtime_device_count`, ...); a backend whose
/// vendor runtime is missing is listed as unavailable with the reason, never an error here.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_runtime_create(
    out: *mut *mut anyaccel_runtime_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_runtime_create", "out", out, || {
            register_runtime(facade::Runtime::new())
        })
    }
}

/// Creates a runtime with only the named compiled-in backends: `names` is a comma list such as
/// `"cpu"` or `"cpu,vulkan"`. Useful to keep a program away from a vendor driver. An unknown
/// name is `ANYACCEL_ERROR_INVALID_ARGUMENT` listing the compiled-in backends.
///
/// # Safety
/// `names` must be NULL or a NUL-terminated string; `out` must be NULL or valid for writing a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_runtime_create_with_backends(
    names: *const c_char,
    out: *mut *mut anyaccel_runtime_t,
) -> anyaccel_status {
    let body = || {
        // SAFETY: NULL or NUL-terminated by the caller's contract.
        let names = unsafe { str_arg(names, "names") }?;
        let all = facade::compiled_in_backends();
        let mut chosen = Vec::new();
        for name in names.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let backend = all.iter().find(|b| b.name() == name).ok_or_else(|| {
                Error::invalid_argument(format!(
                    "backend `{name}` is not compiled in; compiled-in backends: {}",
                    all.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
                ))
            })?;
            if !chosen
                .iter()
                .any(|b: &Arc<dyn facade::Backend>| b.name() == name)
            {
                chosen.push(backend.clone());
            }
        }
        if chosen.is_empty() {
            return Err(Error::invalid_argument(
                "argument `names` names no backend: expected a comma list such as \"cpu,vulkan\"",
            ));
        }
        register_runtime(Runtime::with_backends(chosen)?)
    };
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe { guard_out("anyaccel_runtime_create_with_backends", "out", out, body) }
}

/// Destroys a runtime and the device handles it gave out. Buffers, queues, events and tensors
/// made from its devices stay valid until they are destroyed themselves.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_runtime_destroy(rt: *mut anyaccel_runtime_t) -> anyaccel_status {
    guard("anyaccel_runtime_destroy", || {
        let obj: Arc<RuntimeObj> = handle::remove(from_ptr(rt), Kind::Runtime, "runtime")?;
        let devices = std::mem::take(&mut obj.cache().devices);
        for (_, h) in devices {
            // Only this runtime removes its device handles, so each is still registered.
            let _ = handle::remove::<DeviceObj>(h, Kind::Device, "device");
        }
        Ok(())
    })
}

/// Loads a vendor plugin (a shared library implementing `anyaccel_plugin.h`) into the runtime
/// as the backend `plugin:<name>`, whose devices are `plugin:<name>:<index>`; they appear in
/// the backend and device lists from now on.
///
/// A library that cannot be used (file not found, the `dlopen` error, a missing entry symbol,
/// an ABI major mismatch, ...) is `ANYACCEL_ERROR_UNAVAILABLE` with the loader's reason; it is
/// registered all the same, so that the backend list shows it with that reason. A plugin whose
/// name is already registered is `ANYACCEL_ERROR_INVALID_ARGUMENT`.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string. Loading runs the library's initialisers.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_runtime_load_plugin(
    rt: *mut anyaccel_runtime_t,
    path: *const c_char,
) -> anyaccel_status {
    guard("anyaccel_runtime_load_plugin", || {
        let obj = runtime(rt)?;
        // SAFETY: NULL or NUL-terminated by the caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        facade::load_plugin(&obj.runtime, path)
            .map(drop)
            .map_err(|e| e.context(format!("`{path}`")))
    })
}

/// The runtime's backends, cached so that their strings outlive the call. The cache only grows
/// (a loaded plugin adds a backend), so strings handed out earlier stay valid.
fn backends(obj: &RuntimeObj) -> std::sync::MutexGuard<'_, RuntimeCache> {
    let statuses = obj.runtime.backends();
    let mut cache = obj.cache();
    let list = cache.backends.get_or_insert_with(Vec::new);
    for b in statuses {
        if list.iter().any(|e| e.name.to_bytes() == b.name.as_bytes()) {
            continue;
        }
        list.push(BackendEntry {
            name: c_string(&b.name),
            device_count: b.devices.as_ref().map(|d| d.len()).unwrap_or(0),
            reason: b.devices.err().map(|u| c_string(&u.reason)),
        });
    }
    cache
}

/// The number of registered backends, available or not. Probes them (once).
///
/// # Safety
/// `out` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_runtime_backend_count(
    rt: *mut anyaccel_runtime_t,
    out: *mut usize,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a `size_t` by the caller's contract.
    unsafe {
        guard_out("anyaccel_runtime_backend_count", "out", out, || {
            let obj = runtime(rt)?;
            let n = backends(&obj).backends.as_ref().map_or(0, |b| b.len());
            Ok(n)
        })
    }
}

/// Fills `info` with backend `index` (0-based, below `anyaccel_runtime_backend_count`).
///
/// # Safety
/// `info` must be NULL or point to an `anyaccel_backend_info_t` whose `struct_size` is set.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_runtime_backend_info(
    rt: *mut anyaccel_runtime_t,
    index: usize,
    info: *mut anyaccel_backend_info_t,
) -> anyaccel_status {
    // SAFETY: `info` is NULL or a struct whose `struct_size` is set by the caller's contract;
    // all-zero bytes are a valid `anyaccel_backend_info_t`.
    unsafe {
        guard_info("anyaccel_runtime_backend_info", "info", info, || {
            let obj = runtime(rt)?;
            let cache = backends(&obj);
            let list = cache.backends.as_deref().unwrap_or(&[]);
            let b = list.get(index).ok_or_else(|| {
                Error::out_of_bounds(format!(
                    "backend index {index} is out of range: the runtime has {} backends",
                    list.len()
                ))
            })?;
            Ok(anyaccel_backend_info_t {
                struct_size: std::mem::size_of::<anyaccel_backend_info_t>(),
                name: b.name.as_ptr(),
                available: b.reason.is_none() as i32,
                device_count: b.device_count,
                reason: b.reason.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()),
            })
        })
    }
}

/// The number of devices: every device of every available backend, or those that
/// `ANYACCEL_DEVICES` selects (e.g. `ANYACCEL_DEVICES=vulkan:0,cpu`). Probes the backends.
///
/// # Safety
/// `out` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_runtime_device_count(
    rt: *mut anyaccel_runtime_t,
    out: *mut usize,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a `size_t` by the caller's contract.
    unsafe {
        guard_out("anyaccel_runtime_device_count", "out", out, || {
            Ok(runtime(rt)?.runtime.devices()?.len())
        })
    }
}

/// Device `index` (0-based, below `anyaccel_runtime_device_count`). The handle belongs to the
/// runtime: asking twice gives the same handle, and it is destroyed with the runtime.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_runtime_device(
    rt: *mut anyaccel_runtime_t,
    index: usize,
    out: *mut *mut anyaccel_device_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_runtime_device", "out", out, || {
            let obj = runtime(rt)?;
            let devices = obj.runtime.devices()?;
            let device = devices.get(index).cloned().ok_or_else(|| {
                Error::out_of_bounds(format!(
                    "device index {index} is out of range: the runtime has {} devices",
                    devices.len()
                ))
            })?;
            Ok(to_ptr(obj.device_handle(device)?))
        })
    }
}

/// The device with this id, e.g. `"cpu:0"`. An unknown id is `ANYACCEL_ERROR_INVALID_ARGUMENT`
/// listing the devices that exist (and why a backend is unavailable, if it is).
///
/// # Safety
/// `id` must be NULL or a NUL-terminated string; `out` must be NULL or valid for writing a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_runtime_find_device(
    rt: *mut anyaccel_runtime_t,
    id: *const c_char,
    out: *mut *mut anyaccel_device_t,
) -> anyaccel_status {
    let body = || {
        let obj = runtime(rt)?;
        // SAFETY: NULL or NUL-terminated by the caller's contract.
        let id = unsafe { str_arg(id, "id") }?;
        Ok(to_ptr(obj.device_handle(obj.runtime.device(id)?)?))
    };
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe { guard_out("anyaccel_runtime_find_device", "out", out, body) }
}

/// Fills `info` with what the device is.
///
/// # Safety
/// `info` must be NULL or point to an `anyaccel_device_info_t` whose `struct_size` is set.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_device_info(
    dev: *mut anyaccel_device_t,
    info: *mut anyaccel_device_info_t,
) -> anyaccel_status {
    // SAFETY: `info` is NULL or a struct whose `struct_size` is set by the caller's contract;
    // all-zero bytes are a valid `anyaccel_device_info_t`.
    unsafe {
        guard_info("anyaccel_device_info", "info", info, || {
            let obj = device(dev, "device")?;
            let i = obj.device.info();
            Ok(anyaccel_device_info_t {
                struct_size: std::mem::size_of::<anyaccel_device_info_t>(),
                id: obj.id.as_ptr(),
                backend: obj.backend.as_ptr(),
                name: obj.name.as_ptr(),
                vendor: obj.vendor.as_ptr(),
                driver_version: obj.driver_version.as_ptr(),
                memory_bytes: i.memory_bytes,
                max_buffer_bytes: i.max_buffer_bytes,
                max_work_group_size: i.max_work_group_size,
                compute_units: i.compute_units,
                timestamps: obj.device.caps().timestamps as i32,
            })
        })
    }
}

/// Sets `*out` to 1 when the device holds tensors of `dtype`, else 0.
///
/// # Safety
/// `out` must be NULL or valid for writing an `int32_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_device_supports_dtype(
    dev: *mut anyaccel_device_t,
    dtype: anyaccel_dtype,
    out: *mut i32,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing an `int32_t` by the caller's contract.
    unsafe {
        guard_out("anyaccel_device_supports_dtype", "out", out, || {
            let obj = device(dev, "device")?;
            let dtype = dtype_arg(dtype, "dtype")?;
            Ok(obj.device.caps().has_dtype(dtype) as i32)
        })
    }
}

/// The name of a dtype (`"f32"`, `"bf16"`, ...), static; NULL for a number that is no dtype.
#[no_mangle]
pub extern "C" fn anyaccel_dtype_name(dtype: anyaccel_dtype) -> *const c_char {
    match DType::from_code(dtype) {
        Some(DType::F32) => c"f32".as_ptr(),
        Some(DType::F16) => c"f16".as_ptr(),
        Some(DType::BF16) => c"bf16".as_ptr(),
        Some(DType::F64) => c"f64".as_ptr(),
        Some(DType::I32) => c"i32".as_ptr(),
        Some(DType::I64) => c"i64".as_ptr(),
        Some(DType::U8) => c"u8".as_ptr(),
        Some(DType::I8) => c"i8".as_ptr(),
        Some(DType::Bool) => c"bool".as_ptr(),
        None => std::ptr::null(),
    }
}

/// The size of one element of `dtype` in bytes; 0 for a number that is no dtype.
#[no_mangle]
pub extern "C" fn anyaccel_dtype_size(dtype: anyaccel_dtype) -> usize {
    DType::from_code(dtype).map_or(0, |d| d.size_in_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_numbers_are_the_dtype_codes() {
        let consts = [
            (ANYACCEL_DTYPE_F32, DType::F32),
            (ANYACCEL_DTYPE_F16, DType::F16),
            (ANYACCEL_DTYPE_BF16, DType::BF16),
            (ANYACCEL_DTYPE_F64, DType::F64),
            (ANYACCEL_DTYPE_I32, DType::I32),
            (ANYACCEL_DTYPE_I64, DType::I64),
            (ANYACCEL_DTYPE_U8, DType::U8),
            (ANYACCEL_DTYPE_BOOL, DType::Bool),
            (ANYACCEL_DTYPE_I8, DType::I8),
        ];
        for (n, d) in consts {
            assert_eq!(n, d.code());
            // SAFETY: static NUL-terminated strings.
            let name = unsafe { std::ffi::CStr::from_ptr(anyaccel_dtype_name(n)) };
            assert_eq!(name.to_str().unwrap(), d.name());
            assert_eq!(anyaccel_dtype_size(n), d.size_in_bytes());
        }
        assert!(anyaccel_dtype_name(0).is_null());
        assert_eq!(anyaccel_dtype_size(99), 0);
    }
}
