//! # anyaccel-ffi: the C ABI
//!
//! `libanyaccel.so` / `libanyaccel.a` and `include/anyaccel.h` (generated from this crate by
//! cbindgen, and committed; a test fails when the committed header is stale). C, C++ and any
//! stack with a C FFI (Python ctypes or cffi, Go, Java) use every device and every op through it.
//! `docs/c-api.md` is the user's guide; this comment is the contract.
//!
//! ## The contract
//!
//! - Objects are opaque handles: `anyaccel_runtime_t*`, `anyaccel_device_t*`,
//!   `anyaccel_buffer_t*`, `anyaccel_queue_t*`, `anyaccel_event_t*`, `anyaccel_tensor_t*`. A
//!   handle's value is an id into a registry (a slot index, a generation counter and a type tag),
//!   never the address of an object: the library never dereferences it. Every call looks the
//!   handle up, so a NULL handle, a handle that was already destroyed (stale), a handle of another
//!   type or a value that anyaccel never handed out is `ANYACCEL_ERROR_INVALID_ARGUMENT` with a
//!   message, never undefined behaviour.
//! - Every function returns an `anyaccel_status`: `ANYACCEL_OK` (0) or one of the stable
//!   `ErrorCode` numbers (`anyaccel_hal::ErrorCode`). A failed call sets the calling thread's
//!   message, read with `anyaccel_last_error_message`; it names the function, the argument,
//!   what was found and what was expected. Out-pointers are set to NULL (or zero) first, so on
//!   failure they hold no stale value.
//! - No panic crosses the boundary: every entry point runs under `catch_unwind`, and a panic
//!   becomes `ANYACCEL_ERROR_INTERNAL`.
//! - Pointer arguments other than handles (out-pointers, arrays, strings, host data) are checked
//!   for NULL; their contents (a NUL-terminated string, an array of the stated length, host
//!   memory of the stated size) are the caller's promise, as in any C API.
//! - Thread safety: every function may be called from any thread at once. Objects are reference
//!   counted inside: destroying a handle drops the caller's reference, and work already queued
//!   keeps what it uses alive.

#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use facade::{Device, Error, ErrorCode, Result};

mod buffer;
#[cfg(test)]
mod contract_tests;
pub mod dlpack;
mod graph;
mod handle;
mod op;
mod queue;
mod runtime;
mod tensor;

pub use buffer::*;
pub use graph::*;
pub use op::*;
pub use queue::*;
pub use runtime::*;
pub use tensor::*;

/// The status every function returns: `ANYACCEL_OK` (0) or an `ANYACCEL_ERROR_*` code.
pub type anyaccel_status = i32;

/// Success.
pub const ANYACCEL_OK: anyaccel_status = 0;
/// An argument was wrong: a shape, a dtype, a size, a NULL pointer, a stale or mistyped handle.
pub const ANYACCEL_ERROR_INVALID_ARGUMENT: anyaccel_status = 1;
/// A range (view, offset, index) fell outside the memory it refers to.
pub const ANYACCEL_ERROR_OUT_OF_BOUNDS: anyaccel_status = 2;
/// The device or this build does not offer this op, dtype or feature.
pub const ANYACCEL_ERROR_UNSUPPORTED: anyaccel_status = 3;
/// A backend, its vendor library or its device could not be used.
pub const ANYACCEL_ERROR_UNAVAILABLE: anyaccel_status = 4;
/// Memory could not be allocated.
pub const ANYACCEL_ERROR_OUT_OF_MEMORY: anyaccel_status = 5;
/// A kernel failed to compile; the message holds the compiler's log.
pub const ANYACCEL_ERROR_COMPILE_FAILED: anyaccel_status = 6;
/// A kernel launch or a queued command failed.
pub const ANYACCEL_ERROR_LAUNCH_FAILED: anyaccel_status = 7;
/// The device stopped working.
pub const ANYACCEL_ERROR_DEVICE_LOST: anyaccel_status = 8;
/// A wait ran past its limit.
pub const ANYACCEL_ERROR_TIMEOUT: anyaccel_status = 9;
/// An incompatible ABI version (of a plugin, or of a DLPack tensor).
pub const ANYACCEL_ERROR_ABI_MISMATCH: anyaccel_status = 10;
/// A bug in anyaccel or a backend: it should never happen.
pub const ANYACCEL_ERROR_INTERNAL: anyaccel_status = 11;

/// The major version of this C ABI: a program built against another major may not work.
pub const ANYACCEL_ABI_VERSION_MAJOR: u32 = 1;
/// The minor version of this C ABI: functions and constants are only ever added.
pub const ANYACCEL_ABI_VERSION_MINOR: u32 = 0;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // Interior NULs would cut the message short in C; show them instead.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // Only fails while the thread is being torn down; the status still reports the failure.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = text);
}

/// The message of the most recent call on the calling thread that failed, e.g.
/// `anyaccel_op: matmul: a is 64x33 but b is 32x17: inner dimensions must match`; an empty
/// string when no call on this thread has failed.
///
/// The string belongs to the library and stays valid until the next failing call on this thread
/// (copy it to keep it). Successful calls leave it unchanged. Never returns NULL.
#[no_mangle]
pub extern "C" fn anyaccel_last_error_message() -> *const c_char {
    catch_unwind(|| {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
    .unwrap_or(c"".as_ptr())
}

/// The name of a status, e.g. `invalid argument` for 1, `ok` for 0, `unknown status` otherwise.
/// The string is static. Never returns NULL.
#[no_mangle]
pub extern "C" fn anyaccel_status_name(status: anyaccel_status) -> *const c_char {
    match ErrorCode::from_i32(status) {
        _ if status == ANYACCEL_OK => c"ok".as_ptr(),
        Some(ErrorCode::InvalidArgument) => c"invalid argument".as_ptr(),
        Some(ErrorCode::OutOfBounds) => c"out of bounds".as_ptr(),
        Some(ErrorCode::Unsupported) => c"unsupported".as_ptr(),
        Some(ErrorCode::Unavailable) => c"unavailable".as_ptr(),
        Some(ErrorCode::OutOfMemory) => c"out of memory".as_ptr(),
        Some(ErrorCode::CompileFailed) => c"compile failed".as_ptr(),
        Some(ErrorCode::LaunchFailed) => c"launch failed".as_ptr(),
        Some(ErrorCode::DeviceLost) => c"device lost".as_ptr(),
        Some(ErrorCode::Timeout) => c"timeout".as_ptr(),
        Some(ErrorCode::AbiMismatch) => c"ABI mismatch".as_ptr(),
        Some(ErrorCode::Internal) => c"internal error".as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}

/// The library's version, e.g. `0.1.0` (static; never NULL).
#[no_mangle]
pub extern "C" fn anyaccel_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// Runs one entry point: catches panics, turns errors into a status and the thread's message.
pub(crate) fn guard(func: &'static str, body: impl FnOnce() -> Result<()>) -> anyaccel_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ANYACCEL_OK,
        Ok(Err(e)) => {
            set_last_error(&format!("{func}: {}", e.message()));
            e.code().as_i32()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "no message".to_string());
            set_last_error(&format!(
                "{func}: internal error: a panic was caught at the C boundary: {what}"
            ));
            ANYACCEL_ERROR_INTERNAL
        }
    }
}

/// A value an out-parameter holds after a failed call: NULL for a handle or a pointer, zero for
/// a number.
pub(crate) trait Cleared: Copy {
    /// NULL or zero.
    const CLEARED: Self;
}

impl<T> Cleared for *mut T {
    const CLEARED: Self = std::ptr::null_mut();
}

macro_rules! cleared_zero {
    ($($t:ty = $zero:expr),*) => {
        $(impl Cleared for $t {
            const CLEARED: Self = $zero;
        })*
    };
}

cleared_zero!(usize = 0, i32 = 0, u32 = 0, f64 = 0.0);

/// Runs an entry point that has one out-parameter, `out` (named `what` in messages): `out` is
/// checked for NULL and cleared (NULL or zero) before anything else runs, and receives the
/// body's value only when the body succeeds. So a failed call, whatever its cause (a bad
/// argument, an error of the device, a panic), never leaves a stale value in `out`.
///
/// # Safety
/// `out` must be NULL or valid for a write of `T`.
pub(crate) unsafe fn guard_out<T: Cleared>(
    func: &'static str,
    what: &'static str,
    out: *mut T,
    body: impl FnOnce() -> Result<T>,
) -> anyaccel_status {
    guard(func, || {
        non_null(out, what)?;
        // SAFETY: non-null, and valid for a write of `T` by the caller's contract.
        unsafe { out.write(T::CLEARED) };
        let value = body()?;
        // SAFETY: as above.
        unsafe { out.write(value) };
        Ok(())
    })
}

/// Runs an entry point that fills a versioned info struct `info` (named `what`), whose first
/// field is the `size_t struct_size` that the caller sets. `info` is checked for NULL, and its
/// `struct_size` against `size_of::<T>()`; then every field after `struct_size` is cleared
/// (NULL or zero) before the body runs, and the body's value is copied in only on success
/// (`struct_size` keeps the caller's value). A `struct_size` too small to hold the first
/// version is an error that writes nothing.
///
/// # Safety
/// `info` must be NULL or point to a `T` whose `struct_size` is set, valid for writing
/// `struct_size` bytes; `T` must be a `repr(C)` struct that starts with a `usize` and for which
/// all-zero bytes are a valid value.
pub(crate) unsafe fn guard_info<T>(
    func: &'static str,
    what: &'static str,
    info: *mut T,
    body: impl FnOnce() -> Result<T>,
) -> anyaccel_status {
    guard(func, || {
        non_null(info, what)?;
        let full = std::mem::size_of::<T>();
        let head = std::mem::size_of::<usize>();
        // SAFETY: non-null; starts with a readable `size_t struct_size` by the caller's contract.
        let size = unsafe { (info as *const usize).read_unaligned() };
        let name = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or_default();
        if size < full {
            return Err(Error::invalid_argument(format!(
                "argument `{what}`: {name}.struct_size is {size}: expected sizeof({name}), at least {full}; set it before the call"
            )));
        }
        // SAFETY: `info` is valid for `size >= full` bytes, and all-zero bytes are a valid `T`.
        unsafe { std::ptr::write_bytes((info as *mut u8).add(head), 0, full - head) };
        let value = body()?;
        // SAFETY: as above; `value` is a plain repr(C) struct of `full` bytes. Its own
        // `struct_size` is skipped, so the caller's value stays.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&value as *const T as *const u8).add(head),
                (info as *mut u8).add(head),
                full - head,
            )
        };
        Ok(())
    })
}

/// `ptr` must not be NULL.
pub(crate) fn non_null<T>(ptr: *const T, what: &str) -> Result<()> {
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!(
            "argument `{what}` is NULL: expected a valid pointer"
        )));
    }
    Ok(())
}

/// Writes `value` to the out-pointer `out` (checked for NULL by the caller).
///
/// # Safety
/// `out` must be NULL or valid for a write of `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-null, and valid for writes by the caller's contract.
        unsafe { out.write(value) };
    }
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    non_null(ptr, what)?;
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|e| {
        Error::invalid_argument(format!(
            "argument `{what}` is not valid UTF-8 ({e}): expected a UTF-8 string"
        ))
    })
}

/// Checks what `std::slice::from_raw_parts` requires of a C array beyond its validity: not NULL
/// (unless empty), aligned for `T`, and at most `isize::MAX` bytes in all.
fn check_array<T>(ptr: *const T, len: usize, what: &str) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!(
            "argument `{what}` is NULL but its length is {len}: expected an array of {len} elements"
        )));
    }
    if !ptr.is_aligned() {
        return Err(Error::invalid_argument(format!(
            "argument `{what}` is {ptr:p}: expected an address aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    if len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > facade::hal::layout::MAX_BYTES)
    {
        return Err(Error::invalid_argument(format!(
            "argument `{what}` has length {len}: expected at most {} bytes in all",
            facade::hal::layout::MAX_BYTES
        )));
    }
    Ok(())
}

/// A slice argument of `len` elements; NULL is allowed when `len` is 0.
///
/// # Safety
/// `ptr` must be NULL or point to `len` initialised elements that stay valid for `'a`.
pub(crate) unsafe fn slice_arg<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    check_array(ptr, len, what)?;
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: non-null, aligned, at most isize::MAX bytes (checked), and `len` elements by the
    // caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A writable slice argument of `len` elements; NULL is allowed when `len` is 0.
///
/// # Safety
/// `ptr` must be NULL or valid for writing `len` elements, with no other reference to them, for
/// `'a`.
pub(crate) unsafe fn slice_arg_mut<'a, T>(
    ptr: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [T]> {
    check_array(ptr, len, what)?;
    if len == 0 {
        return Ok(&mut []);
    }
    // SAFETY: as in `slice_arg`, and writable without aliasing by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

pub(crate) use facade::hal::same_device;

/// `found` (the device of `what`) must be `expected` (the queue's device).
pub(crate) fn check_device(
    what: &str,
    found: &Arc<dyn Device>,
    expected: &Arc<dyn Device>,
) -> Result<()> {
    if same_device(found, expected) {
        return Ok(());
    }
    let (f, e) = (&found.info().id, &expected.info().id);
    Err(Error::invalid_argument(if f == e {
        format!("{what} is on device {f} of another runtime, but the queue is on {e} of its own runtime: objects of two runtimes cannot be mixed")
    } else {
        format!("{what} is on device {f}, but the queue is on {e}: expected an object of the queue's device (copy it through the host first)")
    }))
}

/// Memory lent read-only must not be written.
pub(crate) fn check_writable(what: &str, read_only: bool) -> Result<()> {
    if read_only {
        return Err(Error::invalid_argument(format!(
            "{what} is read-only (imported from a DLPack tensor flagged read-only): expected writable memory"
        )));
    }
    Ok(())
}

/// A string owned by an object, handed to C as `const char*` for as long as the object lives.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_numbers_are_the_error_codes() {
        let consts = [
            ANYACCEL_ERROR_INVALID_ARGUMENT,
            ANYACCEL_ERROR_OUT_OF_BOUNDS,
            ANYACCEL_ERROR_UNSUPPORTED,
            ANYACCEL_ERROR_UNAVAILABLE,
            ANYACCEL_ERROR_OUT_OF_MEMORY,
            ANYACCEL_ERROR_COMPILE_FAILED,
            ANYACCEL_ERROR_LAUNCH_FAILED,
            ANYACCEL_ERROR_DEVICE_LOST,
            ANYACCEL_ERROR_TIMEOUT,
            ANYACCEL_ERROR_ABI_MISMATCH,
            ANYACCEL_ERROR_INTERNAL,
        ];
        let codes: Vec<i32> = ErrorCode::ALL.iter().map(|c| c.as_i32()).collect();
        assert_eq!(consts.to_vec(), codes);
        for code in ErrorCode::ALL {
            // SAFETY: static NUL-terminated strings.
            let name = unsafe { CStr::from_ptr(anyaccel_status_name(code.as_i32())) };
            assert_eq!(name.to_str().unwrap(), code.name());
        }
    }

    #[test]
    fn panics_become_internal_errors() {
        let status = guard("anyaccel_test", || panic!("boom"));
        assert_eq!(status, ANYACCEL_ERROR_INTERNAL);
        // SAFETY: the library's NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(anyaccel_last_error_message()) };
        assert!(msg.to_str().unwrap().contains("boom"), "{msg:?}");
    }
}
