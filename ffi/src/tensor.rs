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
    // Before the array is read: a wild `ndim` must not make us read past the caller's values.
    facade::hal::layout::check_rank(what, ndim)?;
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
        let off = facade::hal::layout::checked_add(
            "byte offset",
            t.tensor.view().offset(),
            t.tensor.desc().byte_offset()?,
        )?;
        // SAFETY: as above.
        unsafe { put(out, off) };
        Ok(())
    })
}

fn check_len(t: &Tensor, bytes: usize, what: &str) -> Result<()> {
    // Checked: a broadcast view may hold more elements than any host buffer.
    let need = t.desc().host_bytes()?;
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
            let start = tensor.desc().byte_offset()?;
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
        // SAFETY: NULL only with 0 bytes, else `bytes` writable bytes by the caller's contract.
        // `read_into` waits for the queue, also when there is nothing to read.
        let out = unsafe { crate::slice_arg_mut(dst as *mut u8, bytes, "dst") }?;
        t.tensor.read_into(&*q.queue, out)
    })
}

/// Copies `src` (any layout, on `from`'s device) into `dst` (contiguous, the same dtype and
/// shape, on `to`'s device), between any two devices of one runtime. The copy sees what was
/// queued on `from` before the call, and what is queued on `to` afterwards sees the copy.
/// Between devices the call waits until `src` has been read and the device write may still be
/// queued on `to`; on one device the copy is queued on `to` and nothing waits.
#[no_mangle]
pub extern "C" fn anyaccel_tensor_copy_to(
    from: *mut anyaccel_queue_t,
    src: *mut anyaccel_tensor_t,
    to: *mut anyaccel_queue_t,
    dst: *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_tensor_copy_to", || {
        let from = crate::queue::queue_arg(from, "from")?;
        let to = crate::queue::queue_arg(to, "to")?;
        let s = tensor(src, "src")?;
        let d = tensor(dst, "dst")?;
        check_device("src", &s.device, &from.device)?;
        check_device("dst", &d.device, &to.device)?;
        check_writable("dst", d.read_only)?;
        s.tensor.copy_to(&*from.queue, &d.tensor, &*to.queue)
    })
}

/// A new contiguous tensor on `to`'s device holding a copy of `src` (any layout, on `from`'s
/// device), as `anyaccel_tensor_copy_to`; `*out` is NULL on error. Destroy it with
/// `anyaccel_tensor_destroy`.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_to(
    from: *mut anyaccel_queue_t,
    src: *mut anyaccel_tensor_t,
    to: *mut anyaccel_queue_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_tensor_to", || {
        non_null(out, "out")?;
        // SAFETY: checked for NULL; valid for a write by the caller's contract.
        unsafe { put(out, std::ptr::null_mut()) };
        let from = crate::queue::queue_arg(from, "from")?;
        let to = crate::queue::queue_arg(to, "to")?;
        let s = tensor(src, "src")?;
        check_device("src", &s.device, &from.device)?;
        let tensor = s.tensor.to(&*from.queue, &*to.queue)?;
        let h = register_tensor(TensorObj {
            tensor,
            device: to.device.clone(),
            read_only: false,
        })?;
        // SAFETY: as above.
        unsafe { put(out, h) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{anyaccel_buffer_alloc, anyaccel_buffer_free, anyaccel_queue_create};
    use crate::{anyaccel_queue_destroy, anyaccel_runtime_create_with_backends};
    use crate::{anyaccel_runtime_destroy, anyaccel_runtime_device};

    use crate::{ANYACCEL_DTYPE_F32 as F32, ANYACCEL_DTYPE_U8 as U8};
    const OK: anyaccel_status = 0;
    const INVALID: anyaccel_status = 1;

    /// A cpu runtime, device, queue and a buffer of `bytes` bytes; destroyed by `close`.
    struct Setup {
        rt: *mut crate::anyaccel_runtime_t,
        q: *mut anyaccel_queue_t,
        buf: *mut anyaccel_buffer_t,
    }

    fn setup(bytes: usize) -> Setup {
        let (mut rt, mut dev, mut q, mut buf) = (
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        // SAFETY: valid out-pointers; handles come from the library.
        unsafe {
            assert_eq!(
                anyaccel_runtime_create_with_backends(c"cpu".as_ptr(), &mut rt),
                OK
            );
            assert_eq!(anyaccel_runtime_device(rt, 0, &mut dev), OK);
            assert_eq!(anyaccel_queue_create(dev, &mut q), OK);
            assert_eq!(anyaccel_buffer_alloc(dev, bytes, &mut buf), OK);
        }
        Setup { rt, q, buf }
    }

    impl Setup {
        fn create(
            &self,
            dtype: anyaccel_dtype,
            shape: &[i64],
            strides: &[i64],
            offset: usize,
        ) -> (anyaccel_status, *mut anyaccel_tensor_t) {
            let mut t = std::ptr::dangling_mut::<anyaccel_tensor_t>();
            // SAFETY: arrays of `shape.len()` values; `t` is writable.
            let status = unsafe {
                anyaccel_tensor_create(
                    self.buf,
                    dtype,
                    shape.as_ptr(),
                    strides.as_ptr(),
                    shape.len(),
                    offset,
                    &mut t,
                )
            };
            (status, t)
        }

        fn close(self) {
            // SAFETY: handles made by `setup`.
            unsafe {
                assert_eq!(anyaccel_buffer_free(self.buf), OK);
                assert_eq!(anyaccel_queue_destroy(self.q), OK);
                assert_eq!(anyaccel_runtime_destroy(self.rt), OK);
            }
        }
    }

    fn message() -> String {
        // SAFETY: the library's thread-local, NUL-terminated message.
        unsafe { std::ffi::CStr::from_ptr(crate::anyaccel_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn wrapping_layouts_are_refused() {
        let s = setup(64);
        let max = i64::MAX;
        for (dtype, shape, strides, offset) in [
            (F32, vec![4, 3], vec![max, 1], 0),
            (F32, vec![5, 1], vec![1 << 62, 1], 0),
            (U8, vec![3, 3], vec![max, max], 0),
            (U8, vec![2], vec![1], usize::MAX),
            (F32, vec![0, 2], vec![1, 1], 1 << 62),
            (F32, vec![1 << 40, 1 << 40], vec![0, 0], 0),
        ] {
            let (status, t) = s.create(dtype, &shape, &strides, offset);
            assert_ne!(status, OK, "{shape:?} {strides:?} +{offset}");
            assert!(t.is_null(), "the out-parameter is cleared");
            assert!(
                message().starts_with("anyaccel_tensor_create: tensor"),
                "{}",
                message()
            );
        }
        // A rank beyond the limit is refused before the shape array is read (one value here).
        let mut t = std::ptr::null_mut();
        let one = [1i64];
        // SAFETY: the call must not read past `one`: the rank is checked first.
        let status = unsafe {
            anyaccel_tensor_create(
                s.buf,
                F32,
                one.as_ptr(),
                std::ptr::null(),
                1 << 40,
                0,
                &mut t,
            )
        };
        assert_eq!(status, INVALID);
        assert!(message().contains("at most 64"), "{}", message());
        s.close();
    }

    #[test]
    fn transfer_lengths_are_checked() {
        let s = setup(64);
        // A broadcast of 2^62 + 1 bytes over one byte: a valid view that no host buffer holds.
        let (status, wide) = s.create(U8, &[(1 << 62) + 1], &[0], 0);
        assert_eq!(status, OK);
        let mut byte = [0u8; 1];
        // SAFETY: `byte` holds 1 byte; the call must refuse the length before writing.
        let status = unsafe { anyaccel_tensor_read(s.q, wide, byte.as_mut_ptr().cast(), 1) };
        assert_eq!(status, INVALID);
        assert!(
            message().contains("4611686018427387905 bytes"),
            "{}",
            message()
        );
        // 2^62 f32 elements are 2^64 bytes, which wrapped to 0: a length of 0 was accepted.
        let (status, huge) = s.create(F32, &[1 << 62], &[0], 0);
        assert_eq!(status, OK);
        for bytes in [0usize, 4] {
            // SAFETY: NULL with a length the call must refuse.
            let status = unsafe { anyaccel_tensor_read(s.q, huge, std::ptr::null_mut(), bytes) };
            assert_eq!(status, INVALID, "{bytes}");
            // SAFETY: as above.
            let status = unsafe { anyaccel_tensor_write(s.q, huge, std::ptr::null(), bytes) };
            assert_eq!(status, INVALID, "{bytes}");
        }
        // The element count alone overflows usize: refused when the tensor is made.
        let (status, _) = s.create(F32, &[1 << 62, 8], &[0, 0], 0);
        assert_eq!(status, INVALID);
        // An honest transfer through the same calls still works, with canaries around it.
        let (status, t) = s.create(F32, &[2, 3], &[1, 2], 1);
        assert_eq!(status, OK);
        let src = [1f32, 2., 3., 4., 5., 6.];
        let mut dst = [7f32; 8];
        // SAFETY: 24 readable bytes; 24 writable bytes from dst[1].
        unsafe {
            assert_eq!(anyaccel_tensor_write(s.q, t, src.as_ptr().cast(), 24), OK);
            assert_eq!(
                anyaccel_tensor_read(s.q, t, dst[1..].as_mut_ptr().cast(), 24),
                OK
            );
        }
        assert_eq!(dst, [7., 1., 2., 3., 4., 5., 6., 7.]);
        for h in [wide, huge, t] {
            // SAFETY: live handles.
            assert_eq!(unsafe { anyaccel_tensor_destroy(h) }, OK);
        }
        s.close();
    }
}
