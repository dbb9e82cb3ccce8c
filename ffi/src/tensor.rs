//! Tensors: a buffer with a dtype, a shape, strides and an offset.

use std::ffi::c_void;
use std::sync::Arc;

use facade::hal::shape_str;
use facade::{Device, Error, Result, Tensor, TensorDesc};

use crate::buffer::{anyaccel_buffer_t, buffer, register_buffer, BufferObj};
use crate::handle::{self, from_ptr, to_ptr, Kind};
use crate::queue::{anyaccel_queue_t, queue};
use crate::runtime::{anyaccel_device_t, anyaccel_dtype, device, dtype_arg};
use crate::{anyaccel_status, check_device, check_writable, guard, non_null, put, slice_arg};

/// A tensor: a view of a buffer with a dtype, a shape, strides (in elements) and an offset (in
/// elements). Opaque.
pub struct anyaccel_tensor_t {
    _opaque: [u8; 0],
}

pub(crate) struct TensorObj {
    pub(crate) tensor: Tensor,
    pub(crate) device: Arc<dyn Device>,
    /// Memory lent read-only (a DLPack tensor flagged read-only): never an output.
    pub(crate) read_only: bool,
}

pub(crate) fn tensor(t: *const anyaccel_tensor_t, what: &str) -> Result<Arc<TensorObj>> {
    handle::get(from_ptr(t), Kind::Tensor, what)
}

pub(crate) fn register_tensor(obj: TensorObj) -> Result<*mut anyaccel_tensor_t> {
    Ok(to_ptr(handle::insert(Kind::Tensor, Arc::new(obj))?))
}

/// `ndim` non-negative dimensions (or strides) from C.
///
/// # Safety
/// `ptr` must be NULL or point to `ndim` values.
pub(crate) unsafe fn dims_arg(ptr: *const i64, ndim: usize, what: &str) -> Result<Vec<usize>> {
    // SAFETY: NULL only when empty, else `ndim` values by the caller's contract.
    let dims = unsafe { slice_arg(ptr, ndim, what) }?;
    dims.iter()
        .enumerate()
        .map(|(i, &d)| {
            usize::try_from(d).map_err(|_| {
                Error::invalid_argument(format!(
                    "{what}[{i}] is {d}: expected a value >= 0 (negative strides are not supported)"
                ))
            })
        })
        .collect()
}

/// Makes a tensor over `buf`: `ndim` dimensions `shape`, `strides` in elements (NULL for
/// row-major contiguous), starting `offset` elements into the buffer. A layout that reaches past
/// the buffer is `ANYACCEL_ERROR_OUT_OF_BOUNDS`. The tensor shares the buffer's memory and keeps
/// it alive; the buffer handle may be freed first.
///
/// # Safety
/// `shape` and `strides` must be NULL or point to `ndim` values; `out` must be NULL or valid
/// for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_create(
    buf: *mut anyaccel_buffer_t,
    dtype: anyaccel_dtype,
    shape: *const i64,
    strides: *const i64,
    ndim: usize,
    offset: usize,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_tensor_create", || {
        non_null(out, "out")?;
        // SAFETY: checked for NULL; valid for a write by the caller's contract.
        unsafe { put(out, std::ptr::null_mut()) };
        let b = buffer(buf, "buffer")?;
        let dtype = dtype_arg(dtype, "dtype")?;
        if ndim > 0 {
            non_null(shape, "shape")?;
        }
        // SAFETY: `ndim` values by the caller's contract.
        let shape = unsafe { dims_arg(shape, ndim, "shape") }?;
        let strides = if strides.is_null() {
            facade::hal::contiguous_strides(&shape)
        } else {
            // SAFETY: `ndim` values by the caller's contract.
            unsafe { dims_arg(strides, ndim, "strides") }?
        };
        let desc = TensorDesc {
            dtype,
            shape,
            strides,
            offset,
        };
        let tensor = Tensor::new(b.buffer.whole(), desc)?;
        let h = register_tensor(TensorObj {
            tensor,
            device: b.device.clone(),
            read_only: b.read_only,
        })?;
        // SAFETY: as above.
        unsafe { put(out, h) };
        Ok(())
    })
}

/// Allocates a new contiguous tensor on `dev`; its contents are unspecified.
///
/// # Safety
/// `shape` must be NULL or point to `ndim` values; `out` must be NULL or valid for writing a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_alloc(
    dev: *mut anyaccel_device_t,
    dtype: anyaccel_dtype,
    shape: *const i64,
    ndim: usize,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_tensor_alloc", || {
        non_null(out, "out")?;
        // SAFETY: checked for NULL; valid for a write by the caller's contract.
        unsafe { put(out, std::ptr::null_mut()) };
        let d = device(dev, "device")?;
        let dtype = dtype_arg(dtype, "dtype")?;
        if ndim > 0 {
            non_null(shape, "shape")?;
        }
        // SAFETY: `ndim` values by the caller's contract.
        let shape = unsafe { dims_arg(shape, ndim, "shape") }?;
        let tensor = Tensor::empty(&*d.device, dtype, &shape)?;
        let h = register_tensor(TensorObj {
            tensor,
            device: d.device.clone(),
            read_only: false,
        })?;
        // SAFETY: as above.
        unsafe { put(out, h) };
        Ok(())
    })
}

/// Releases the caller's reference to a tensor (its memory lives on while a buffer, another
/// tensor, queued work or a DLPack export still uses it).
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_destroy(t: *mut anyaccel_tensor_t) -> anyaccel_status {
    guard("anyaccel_tensor_destroy", || {
        handle::remove::<TensorObj>(from_ptr(t), Kind::Tensor, "tensor").map(drop)
    })
}

/// The tensor's dtype.
///
/// # Safety
/// `out` must be NULL or valid for writing an `anyaccel_dtype`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_dtype(
    t: *mut anyaccel_tensor_t,
    out: *mut anyaccel_dtype,
) -> anyaccel_status {
    guard("anyaccel_tensor_dtype", || {
        non_null(out, "out")?;
        // SAFETY: checked for NULL; valid for a write by the caller's contract.
        unsafe { put(out, 0) };
        let code = tensor(t, "tensor")?.tensor.dtype().code();
        // SAFETY: as above.
        unsafe { put(out, code) };
        Ok(())
    })
}

/// The tensor's number of dimensions (0 for a scalar).
///
/// # Safety
/// `out` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_ndim(
    t: *mut anyaccel_tensor_t,
    out: *mut usize,
) -> anyaccel_status {
    guard("anyaccel_tensor_ndim", || {
        non_null(out, "out")?;
        // SAFETY: checked for NULL; valid for a write by the caller's contract.
        unsafe { put(out, 0) };
        let n = tensor(t, "tensor")?.tensor.rank();
        // SAFETY: as above.
        unsafe { put(out, n) };
        Ok(())
    })
}

/// The tensor's number of elements.
///
/// # Safety
/// `out` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_numel(
    t: *mut anyaccel_tensor_t,
    out: *mut usize,
) -> anyaccel_status {
    guard("anyaccel_tensor_numel", || {
        non_null(out, "out")?;
        // SAFETY: checked for NULL; valid for a write by the caller's contract.
        unsafe { put(out, 0) };
        let n = tensor(t, "tensor")?.tensor.numel();
        // SAFETY: as above.
        unsafe { put(out, n) };
        Ok(())
    })
}

fn write_dims(values: &[usize], out: *mut i64, capacity: usize, what: &str) -> Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    non_null(out, what)?;
    if capacity < values.len() {
        return Err(Error::invalid_argument(format!(
            "argument `capacity` is {capacity} but the tensor has {} dimensions: expected room for all of them",
            values.len()
        )));
    }
    for (i, &v) in values.iter().enumerate() {
        let v = i64::try_from(v)
            .map_err(|_| Error::invalid_argument(format!("{what}[{i}] = {v} exceeds int64_t")))?;
        // SAFETY: `out` holds `capacity >= values.len()` values by the caller's contract.
        unsafe { out.add(i).write(v) };
    }
    Ok(())
}

/// Writes the tensor's shape to `out`, which has room for `capacity` values (at least
/// `anyaccel_tensor_ndim`; NULL is allowed for a scalar).
///
/// # Safety
/// `out` must be NULL or valid for writing `capacity` `int64_t` values.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_shape(
    t: *mut anyaccel_tensor_t,
    out: *mut i64,
    capacity: usize,
) -> anyaccel_status {
    guard("anyaccel_tensor_shape", || {
        let t = tensor(t, "tensor")?;
        write_dims(t.tensor.shape(), out, capacity, "out")
    })
}

/// Writes the tensor's strides (in elements) to `out`, as `anyaccel_tensor_shape` does.
///
/// # Safety
/// `out` must be NULL or valid for writing `capacity` `int64_t` values.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_strides(
    t: *mut anyaccel_tensor_t,
    out: *mut i64,
    capacity: usize,
) -> anyaccel_status {
    guard("anyaccel_tensor_strides", || {
        let t = tensor(t, "tensor")?;
        write_dims(t.tensor.strides(), out, capacity, "out")
    })
}

/// A new handle to the buffer the tensor views (the same memory); free it with
/// `anyaccel_buffer_free`. Element `[0, ...]` sits `anyaccel_tensor_byte_offset` bytes into it.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_buffer(
    t: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_buffer_t,
) -> anyaccel_status {
    guard("anyaccel_tensor_buffer", || {
        non_null(out, "out")?;
        // SAFETY: checked for NULL; valid for a write by the caller's contract.
        unsafe { put(out, std::ptr::null_mut()) };
        let t = tensor(t, "tensor")?;
        let h = register_buffer(BufferObj {
            buffer: t.tensor.view().buffer().clone(),
            device: t.device.clone(),
            read_only: t.read_only,
        })?;
        // SAFETY: as above.
        unsafe { put(out, h) };
        Ok(())
    })
}

/// The byte offset of element `[0, ...]` from the start of the tensor's buffer.
///
/// # Safety
/// `out` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_byte_offset(
    t: *mut anyaccel_tensor_t,
    out: *mut usize,
) -> anyaccel_status {
    guard("anyaccel_tensor_byte_offset", || {
        non_null(out, "out")?;
        // SAFETY: checked for NULL; valid for a write by the caller's contract.
        unsafe { put(out, 0) };
        let t = tensor(t, "tensor")?;
        let off =
            t.tensor.view().offset() + t.tensor.desc().offset * t.tensor.dtype().size_in_bytes();
        // SAFETY: as above.
        unsafe { put(out, off) };
        Ok(())
    })
}

fn data_bytes(t: &Tensor) -> usize {
    t.numel() * t.dtype().size_in_bytes()
}

fn check_len(t: &Tensor, bytes: usize, what: &str) -> Result<()> {
    let need = data_bytes(t);
    if bytes != need {
        return Err(Error::invalid_argument(format!(
            "argument `bytes` is {bytes} but the {} {} tensor holds {need} bytes: expected the size of its {what}",
            t.dtype(),
            shape_str(t.shape()),
        )));
    }
    Ok(())
}

/// Copies the elements of `t`, in row-major order (`numel * dtype size` bytes, exactly), from
/// host memory `src` into the tensor, whatever its strides. `src` is copied before the call
/// returns; the device write may still be queued.
///
/// # Safety
/// `src` must be NULL or valid for reading `bytes` bytes (NULL is allowed when `bytes` is 0).
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_write(
    q: *mut anyaccel_queue_t,
    t: *mut anyaccel_tensor_t,
    src: *const c_void,
    bytes: usize,
) -> anyaccel_status {
    guard("anyaccel_tensor_write", || {
        let q = queue(q)?;
        let t = tensor(t, "tensor")?;
        check_device("tensor", &t.device, &q.device)?;
        check_writable("tensor", t.read_only)?;
        // SAFETY: NULL only with 0 bytes, else `bytes` readable bytes by the caller's contract.
        let data = unsafe { slice_arg(src as *const u8, bytes, "src") }?;
        check_len(&t.tensor, bytes, "elements")?;
        let tensor = &t.tensor;
        if bytes == 0 {
            return Ok(());
        }
        if tensor.desc().is_contiguous() {
            let start = tensor.desc().offset * tensor.dtype().size_in_bytes();
            return q.queue.write(&tensor.view().sub(start, bytes)?, data);
        }
        // A strided destination: write a contiguous copy, then let the device scatter it.
        let staging = Tensor::empty(&*q.device, tensor.dtype(), tensor.shape())?;
        q.queue.write(staging.view(), data)?;
        facade::ops::copy_into(&*q.queue, &staging, tensor)
    })
}

/// Waits for the queue, then copies the elements of `t` in row-major order (`numel * dtype
/// size` bytes, exactly) into host memory `dst`, whatever its strides.
///
/// # Safety
/// `dst` must be NULL or valid for writing `bytes` bytes (NULL is allowed when `bytes` is 0).
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_read(
    q: *mut anyaccel_queue_t,
    t: *mut anyaccel_tensor_t,
    dst: *mut c_void,
    bytes: usize,
) -> anyaccel_status {
    guard("anyaccel_tensor_read", || {
        let q = queue(q)?;
        let t = tensor(t, "tensor")?;
        check_device("tensor", &t.device, &q.device)?;
        check_len(&t.tensor, bytes, "elements")?;
        if bytes == 0 {
            return q.queue.finish();
        }
        non_null(dst, "dst")?;
        // SAFETY: non-null and valid for `bytes` writable bytes by the caller's contract.
        let out = unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, bytes) };
        let tensor = &t.tensor;
        if tensor.desc().is_contiguous() {
            let start = tensor.desc().offset * tensor.dtype().size_in_bytes();
            return q.queue.read(&tensor.view().sub(start, bytes)?, out);
        }
        out.copy_from_slice(&tensor.to_bytes(&*q.queue)?);
        Ok(())
    })
}
