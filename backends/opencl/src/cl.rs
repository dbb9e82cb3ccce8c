//! Owned OpenCL objects, info queries and error words: the thin layer between the raw calls of
//! `opencl3` and the backend's types.
//!
//! Every handle type here owns one reference to its OpenCL object and releases it when dropped.
//! Release errors are ignored: they can only mean an invalid handle, which these types never
//! hold, and a destructor must not panic.

use std::ffi::c_void;

use anyaccel_hal::{Error, ErrorCode};
use opencl3::command_queue::release_command_queue;
use opencl3::context::context::release_context;
use opencl3::device::get_device_data;
use opencl3::error_codes::{error_text, CL_DEVICE_NOT_AVAILABLE};
use opencl3::error_codes::{
    CL_INVALID_BUFFER_SIZE, CL_MEM_OBJECT_ALLOCATION_FAILURE, CL_OUT_OF_HOST_MEMORY,
    CL_OUT_OF_RESOURCES,
};
use opencl3::event::{
    get_event_data, release_event, retain_event, CL_EVENT_COMMAND_EXECUTION_STATUS,
};
use opencl3::kernel::release_kernel;
use opencl3::memory::release_mem_object;
use opencl3::program::release_program;
use opencl3::types::{
    cl_command_queue, cl_context, cl_device_id, cl_device_info, cl_event, cl_int, cl_kernel,
    cl_mem, cl_program,
};

macro_rules! owned_handle {
    ($(#[$doc:meta])* $name:ident, $raw:ty, $release:ident) => {
        $(#[$doc])*
        pub(crate) struct $name($raw);

        // SAFETY: OpenCL objects may be used from any thread (OpenCL 1.1+, section "Multiple
        // host threads"); the one call that is not thread-safe, clSetKernelArg, is guarded by
        // the kernel's mutex in `program.rs`.
        unsafe impl Send for $name {}
        // SAFETY: as above.
        unsafe impl Sync for $name {}

        impl $name {
            /// Takes ownership of one reference to `raw`, which must be a valid object.
            pub(crate) fn from_raw(raw: $raw) -> $name {
                $name(raw)
            }

            /// The raw handle, valid while `self` lives.
            pub(crate) fn raw(&self) -> $raw {
                self.0
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: `self` owns one reference to a valid object and gives it back once.
                let _ = unsafe { $release(self.0) };
            }
        }
    };
}

owned_handle!(
    /// An OpenCL context.
    ContextHandle, cl_context, release_context
);
owned_handle!(
    /// An OpenCL command queue.
    QueueHandle, cl_command_queue, release_command_queue
);
owned_handle!(
    /// An OpenCL buffer or sub-buffer.
    MemHandle, cl_mem, release_mem_object
);
owned_handle!(
    /// An OpenCL event.
    EventHandle, cl_event, release_event
);
owned_handle!(
    /// An OpenCL program.
    ProgramHandle, cl_program, release_program
);
owned_handle!(
    /// An OpenCL kernel object.
    KernelHandle, cl_kernel, release_kernel
);

impl Clone for EventHandle {
    fn clone(&self) -> EventHandle {
        // SAFETY: the event is valid while `self` lives; the clone owns the new reference.
        // Retaining a valid event cannot fail except for lack of host memory, in which case
        // the process is about to abort anyway; the reference is then simply not taken twice.
        let _ = unsafe { retain_event(self.0) };
        EventHandle(self.0)
    }
}

impl EventHandle {
    /// The event's execution status: `CL_COMPLETE` (0), a positive state while it runs, or a
    /// negative error code when its command failed.
    pub(crate) fn status(&self) -> Result<cl_int, cl_int> {
        let bytes = get_event_data(self.0, CL_EVENT_COMMAND_EXECUTION_STATUS)?;
        Ok(le_u64(&bytes).map(|v| v as u32 as cl_int).unwrap_or(0))
    }
}

/// The symbolic name of an OpenCL status code, e.g. `CL_INVALID_VALUE`.
pub(crate) fn code_name(code: cl_int) -> String {
    match error_text(code) {
        "UNKNOWN_ERROR" => format!("OpenCL error {code}"),
        name => format!("{name} ({code})"),
    }
}

/// An [`Error`] for a failed OpenCL call: memory errors are `OutOfMemory`, a device that went
/// away is `DeviceLost`, and anything else has the code `other`.
pub(crate) fn cl_error(code: cl_int, other: ErrorCode, what: impl std::fmt::Display) -> Error {
    let kind = match code {
        CL_OUT_OF_HOST_MEMORY | CL_MEM_OBJECT_ALLOCATION_FAILURE | CL_INVALID_BUFFER_SIZE => {
            ErrorCode::OutOfMemory
        }
        CL_OUT_OF_RESOURCES if other != ErrorCode::LaunchFailed => ErrorCode::OutOfMemory,
        CL_DEVICE_NOT_AVAILABLE => ErrorCode::DeviceLost,
        _ => other,
    };
    Error::new(kind, format!("{what}: {}", code_name(code)))
}

/// A little-endian unsigned integer of 1 to 8 bytes.
pub(crate) fn le_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 8 {
        return None;
    }
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    Some(u64::from_le_bytes(b))
}

/// Text returned by an info query, without its trailing NULs.
pub(crate) fn info_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

/// A device info query that returns text.
pub(crate) fn device_text(device: cl_device_id, param: cl_device_info) -> Result<String, cl_int> {
    Ok(info_text(&get_device_data(device, param)?))
}

/// A device info query that returns an integer (`cl_uint`, `cl_ulong`, `size_t`, `cl_bool`).
pub(crate) fn device_u64(device: cl_device_id, param: cl_device_info) -> Result<u64, cl_int> {
    let bytes = get_device_data(device, param)?;
    le_u64(&bytes).ok_or(opencl3::error_codes::CL_INVALID_VALUE)
}

/// A device info query that returns an array of `size_t`.
pub(crate) fn device_sizes(
    device: cl_device_id,
    param: cl_device_info,
) -> Result<Vec<u64>, cl_int> {
    let bytes = get_device_data(device, param)?;
    let width = std::mem::size_of::<usize>();
    Ok(bytes.chunks_exact(width).filter_map(le_u64).collect())
}

/// A null pointer for OpenCL calls that take an optional `void*`.
pub(crate) fn null() -> *mut c_void {
    std::ptr::null_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_names_and_kinds() {
        assert_eq!(code_name(-30), "CL_INVALID_VALUE (-30)");
        assert_eq!(code_name(-123456), "OpenCL error -123456");
        let e = cl_error(
            CL_MEM_OBJECT_ALLOCATION_FAILURE,
            ErrorCode::Internal,
            "alloc",
        );
        assert_eq!(e.code(), ErrorCode::OutOfMemory);
        assert_eq!(e.message(), "alloc: CL_MEM_OBJECT_ALLOCATION_FAILURE (-4)");
        let e = cl_error(CL_OUT_OF_RESOURCES, ErrorCode::LaunchFailed, "kernel `k`");
        assert_eq!(e.code(), ErrorCode::LaunchFailed);
        let e = cl_error(-30, ErrorCode::InvalidArgument, "fill");
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn info_values_parse() {
        assert_eq!(le_u64(&[1, 2]), Some(0x0201));
        assert_eq!(le_u64(&[]), None);
        assert_eq!(le_u64(&[0; 9]), None);
        assert_eq!(info_text(b"pthread\0\0"), "pthread");
        assert_eq!(info_text(b" 3.1 "), "3.1");
    }
}
