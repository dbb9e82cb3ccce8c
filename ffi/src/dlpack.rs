//! DLPack 1.x exchange: export a tensor as a `DLManagedTensorVersioned`, import one.
//!
//! The types here mirror `dlpack.h` (version 1.x) field for field; `anyaccel.h` declares the C
//! side (unless `dlpack.h` was included first). Export works for host memory (the cpu device),
//! as `kDLCPU`; memory of other devices is not addressable from the host in this build, and
//! exporting it is `ANYACCEL_ERROR_UNSUPPORTED`. Import takes host tensors (`kDLCPU`,
//! `kDLCUDAHost`, `kDLROCMHost`) onto the runtime's cpu device, zero-copy when the data address
//! is a multiple of 8 (see `anyaccel_cpu::CpuDevice::wrap_host_memory`), otherwise by one copy.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use facade::cpu::{CpuDevice, CpuMemory, EXTERNAL_ALIGN};
use facade::{DType, Device, Error, Result, Tensor, TensorDesc};

use crate::queue::{anyaccel_queue_t, queue};
use crate::runtime::{anyaccel_runtime_t, runtime};
use crate::tensor::{anyaccel_tensor_t, register_tensor, tensor, TensorObj};
use crate::{anyaccel_status, check_device, guard, non_null, put};

/// `DLPackVersion`: the DLPack ABI version of a managed tensor.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLPackVersion {
    /// Major version; 1 for DLPack 1.x.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

/// `DLDevice`: where the memory is.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLDevice {
    /// A `DLDeviceType` number (`kDLCPU` = 1, `kDLCUDA` = 2, ...).
    pub device_type: i32,
    /// The device's index within its type.
    pub device_id: i32,
}

/// `DLDataType`: code, bits and lanes of an element.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDataType {
    /// A `DLDataTypeCode` (`kDLInt` = 0, `kDLUInt` = 1, `kDLFloat` = 2, `kDLBfloat` = 4,
    /// `kDLBool` = 6, ...).
    pub code: u8,
    /// Bits per lane.
    pub bits: u8,
    /// Lanes (1 for scalars).
    pub lanes: u16,
}

/// `DLTensor`: a strided view of memory.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLTensor {
    /// The base address.
    pub data: *mut c_void,
    /// Where `data` lives.
    pub device: DLDevice,
    /// Number of dimensions.
    pub ndim: i32,
    /// Element type.
    pub dtype: DLDataType,
    /// `ndim` sizes.
    pub shape: *mut i64,
    /// `ndim` strides in elements, or NULL for row-major contiguous.
    pub strides: *mut i64,
    /// Bytes from `data` to the first element.
    pub byte_offset: u64,
}

/// `DLManagedTensorVersioned`: a `DLTensor` with its owner and the function that releases it.
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensorVersioned {
    /// The DLPack version of this struct.
    pub version: DLPackVersion,
    /// The producer's context.
    pub manager_ctx: *mut c_void,
    /// Called once by the consumer when it no longer needs the tensor.
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    /// `DLPACK_FLAG_BITMASK_*` bits.
    pub flags: u64,
    /// The tensor.
    pub dl_tensor: DLTensor,
}

/// The DLPack major version that this library speaks.
pub const DLPACK_MAJOR: u32 = 1;
/// The DLPack minor version that exported tensors carry.
pub const DLPACK_MINOR: u32 = 0;
/// `DLPACK_FLAG_BITMASK_READ_ONLY`.
pub const FLAG_READ_ONLY: u64 = 1;
/// `DLPACK_FLAG_BITMASK_IS_COPIED`.
pub const FLAG_IS_COPIED: u64 = 1 << 1;

const KDL_CPU: i32 = 1;
const KDL_CUDA_HOST: i32 = 3;
const KDL_ROCM_HOST: i32 = 11;

const KDL_INT: u8 = 0;
const KDL_UINT: u8 = 1;
const KDL_FLOAT: u8 = 2;
const KDL_BFLOAT: u8 = 4;
const KDL_BOOL: u8 = 6;

fn device_type_name(t: i32) -> String {
    let name = match t {
        1 => "kDLCPU",
        2 => "kDLCUDA",
        3 => "kDLCUDAHost",
        4 => "kDLOpenCL",
        7 => "kDLVulkan",
        8 => "kDLMetal",
        9 => "kDLVPI",
        10 => "kDLROCM",
        11 => "kDLROCMHost",
        12 => "kDLExtDev",
        13 => "kDLCUDAManaged",
        14 => "kDLOneAPI",
        15 => "kDLWebGPU",
        16 => "kDLHexagon",
        17 => "kDLMAIA",
        _ => return format!("device type {t}"),
    };
    format!("{name} ({t})")
}

/// The DLPack type of a dtype.
pub fn dl_dtype(dtype: DType) -> DLDataType {
    let (code, bits) = match dtype {
        DType::F32 => (KDL_FLOAT, 32),
        DType::F16 => (KDL_FLOAT, 16),
        DType::BF16 => (KDL_BFLOAT, 16),
        DType::F64 => (KDL_FLOAT, 64),
        DType::I32 => (KDL_INT, 32),
        DType::I64 => (KDL_INT, 64),
        DType::U8 => (KDL_UINT, 8),
        DType::I8 => (KDL_INT, 8),
        DType::Bool => (KDL_BOOL, 8),
    };
    DLDataType {
        code,
        bits,
        lanes: 1,
    }
}

/// The dtype of a DLPack type, or `Unsupported`.
pub fn from_dl_dtype(t: DLDataType) -> Result<DType> {
    DType::ALL
        .into_iter()
        .find(|&d| dl_dtype(d) == t)
        .ok_or_else(|| {
            Error::unsupported(format!(
                "DLPack dtype (code {}, bits {}, lanes {}) has no anyaccel dtype; expected f32, f16, bf16, f64, i32, i64, u8 or bool with 1 lane",
                t.code, t.bits, t.lanes
            ))
        })
}

/// What an exported tensor owns; the `DLManagedTensorVersioned` is its first field, so a pointer
/// to one is a pointer to the other.
#[repr(C)]
struct ExportCtx {
    managed: DLManagedTensorVersioned,
    shape: Vec<i64>,
    strides: Vec<i64>,
    /// Keeps the memory alive until the consumer calls the deleter.
    _tensor: Tensor,
}

unsafe extern "C" fn export_deleter(managed: *mut DLManagedTensorVersioned) {
    if managed.is_null() {
        return;
    }
    // Nothing may unwind into C; dropping a tensor does not panic, but be sure.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: every tensor this library exports is the first field of a boxed ExportCtx
        // (repr(C)), and DLPack calls the deleter once.
        drop(unsafe { Box::from_raw(managed as *mut ExportCtx) });
    }));
}

fn to_i64(v: usize, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid_argument(format!("{what} {v} exceeds int64_t")))
}

/// Exports `t` as a DLPack 1.x `DLManagedTensorVersioned` (device `kDLCPU` for the cpu device).
/// The consumer owns the result and calls its `deleter` once; the memory stays alive until then,
/// whatever happens to `t`. When `q` is not NULL the queue is finished first, so that the
/// tensor's pending writes are visible; with NULL the caller must have waited. A tensor of a
/// device whose memory the host cannot address is `ANYACCEL_ERROR_UNSUPPORTED`.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_to_dlpack(
    t: *mut anyaccel_tensor_t,
    q: *mut anyaccel_queue_t,
    out: *mut *mut DLManagedTensorVersioned,
) -> anyaccel_status {
    guard("anyaccel_tensor_to_dlpack", || {
        non_null(out, "out")?;
        // SAFETY: checked for NULL; valid for a write by the caller's contract.
        unsafe { put(out, std::ptr::null_mut()) };
        let t = tensor(t, "tensor")?;
        if !q.is_null() {
            let q = queue(q)?;
            check_device("tensor", &t.device, &q.device)?;
            q.queue.finish()?;
        }
        let tensor = t.tensor.clone();
        let mem = tensor.view().buffer().downcast::<CpuMemory>().ok_or_else(|| {
            Error::unsupported(format!(
                "tensor is on {}, whose memory the host cannot address: DLPack export is offered for host memory (the cpu device); copy it to a cpu tensor first",
                tensor.device_id()
            ))
        })?;
        // The view lies inside the allocation (BufferView's invariant).
        let data = mem.as_ptr().wrapping_add(tensor.view().offset()) as *mut c_void;
        let shape = tensor
            .shape()
            .iter()
            .map(|&d| to_i64(d, "dimension"))
            .collect::<Result<Vec<_>>>()?;
        let strides = tensor
            .strides()
            .iter()
            .map(|&s| to_i64(s, "stride"))
            .collect::<Result<Vec<_>>>()?;
        let ndim = i32::try_from(shape.len()).map_err(|_| {
            Error::invalid_argument("tensor has more dimensions than fit in int32_t")
        })?;
        let byte_offset = tensor.desc().byte_offset()? as u64;
        let dtype = dl_dtype(tensor.dtype());
        let mut ctx = Box::new(ExportCtx {
            managed: DLManagedTensorVersioned {
                version: DLPackVersion {
                    major: DLPACK_MAJOR,
                    minor: DLPACK_MINOR,
                },
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(export_deleter),
                flags: if t.read_only { FLAG_READ_ONLY } else { 0 },
                dl_tensor: DLTensor {
                    data,
                    device: DLDevice {
                        device_type: KDL_CPU,
                        device_id: 0,
                    },
                    ndim,
                    dtype,
                    shape: std::ptr::null_mut(),
                    strides: std::ptr::null_mut(),
                    byte_offset,
                },
            },
            shape,
            strides,
            _tensor: tensor,
        });
        ctx.managed.dl_tensor.shape = ctx.shape.as_mut_ptr();
        ctx.managed.dl_tensor.strides = ctx.strides.as_mut_ptr();
        let raw = Box::into_raw(ctx);
        // SAFETY: `raw` is the live box just made; the context points at itself.
        unsafe { (*raw).managed.manager_ctx = raw as *mut c_void };
        // SAFETY: as above.
        unsafe { put(out, raw as *mut DLManagedTensorVersioned) };
        Ok(())
    })
}

/// The release function of an imported tensor: calls the producer's deleter once, unless the
/// import failed after wrapping (then the caller keeps ownership and `armed` is false).
struct Release {
    managed: *mut DLManagedTensorVersioned,
    armed: Arc<AtomicBool>,
}

// SAFETY: DLPack lets the consumer call the deleter from any thread; the pointer is only used
// for that one call.
unsafe impl Send for Release {}

impl Release {
    fn call(self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            // SAFETY: the producer's managed tensor, owned by this import since it succeeded;
            // its deleter is called exactly once (the flag was still set).
            unsafe {
                if let Some(deleter) = (*self.managed).deleter {
                    deleter(self.managed);
                }
            }
        }
    }
}

/// Reads `n` values at `ptr` as non-negative sizes.
///
/// # Safety
/// `ptr` must point to `n` values.
unsafe fn dl_dims(ptr: *const i64, n: usize, what: &str) -> Result<Vec<usize>> {
    facade::hal::layout::check_rank(&format!("DLPack {what}"), n)?;
    // SAFETY: by the caller's contract (and `slice_arg` refuses NULL with n > 0).
    let dims = unsafe { crate::slice_arg(ptr, n, what) }?;
    dims.iter()
        .enumerate()
        .map(|(i, &d)| {
            usize::try_from(d).map_err(|_| {
                Error::unsupported(format!(
                    "DLPack {what}[{i}] is {d}: expected a value >= 0 (anyaccel tensors have no negative sizes or strides)"
                ))
            })
        })
        .collect()
}

/// Imports a DLPack 1.x tensor onto the runtime's cpu device. Host memory (`kDLCPU`,
/// `kDLCUDAHost`, `kDLROCMHost`) is shared without a copy when its first element's address is a
/// multiple of 8; otherwise it is copied once and `src`'s deleter is called before returning.
/// `*zero_copy` (if not NULL) is set to 1 when the memory is shared, 0 when copied.
///
/// On success the library owns `src` and calls its deleter once, when the last tensor, buffer
/// or queued command that uses the memory is gone. On failure the caller still owns `src`.
/// A tensor flagged read-only can be read and used as an op input, never written. Other device
/// types are `ANYACCEL_ERROR_UNSUPPORTED`; a major version other than 1 is
/// `ANYACCEL_ERROR_ABI_MISMATCH`.
///
/// # Safety
/// `src` must be NULL or a valid `DLManagedTensorVersioned` whose memory stays valid until its
/// deleter is called; `out` NULL or valid for writing a pointer; `zero_copy` NULL or valid for
/// writing an `int32_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tensor_from_dlpack(
    rt: *mut anyaccel_runtime_t,
    src: *mut DLManagedTensorVersioned,
    out: *mut *mut anyaccel_tensor_t,
    zero_copy: *mut i32,
) -> anyaccel_status {
    guard("anyaccel_tensor_from_dlpack", || {
        non_null(out, "out")?;
        // SAFETY: checked for NULL; valid for a write by the caller's contract.
        unsafe { put(out, std::ptr::null_mut()) };
        // SAFETY: NULL or valid for a write by the caller's contract.
        unsafe { put(zero_copy, 0) };
        let rt = runtime(rt)?;
        non_null(src, "src")?;
        // SAFETY: non-null and a valid managed tensor by the caller's contract.
        let (version, flags, dl) = unsafe { ((*src).version, (*src).flags, (*src).dl_tensor) };
        if version.major != DLPACK_MAJOR {
            return Err(Error::abi_mismatch(format!(
                "DLPack tensor has version {}.{}: expected major version {DLPACK_MAJOR}",
                version.major, version.minor
            )));
        }
        if !matches!(
            dl.device.device_type,
            KDL_CPU | KDL_CUDA_HOST | KDL_ROCM_HOST
        ) {
            return Err(Error::unsupported(format!(
                "DLPack tensor is on {} {}: this build imports host memory only (kDLCPU, kDLCUDAHost, kDLROCMHost)",
                device_type_name(dl.device.device_type),
                dl.device.device_id
            )));
        }
        let dtype = from_dl_dtype(dl.dtype)?;
        let ndim = usize::try_from(dl.ndim).map_err(|_| {
            Error::invalid_argument(format!("DLPack ndim is {}: expected >= 0", dl.ndim))
        })?;
        // Before `shape` and `strides` are read.
        facade::hal::layout::check_rank("DLPack ndim", ndim)?;
        // SAFETY: `ndim` values by DLPack's contract.
        let shape = unsafe { dl_dims(dl.shape, ndim, "shape") }?;
        let strides = if dl.strides.is_null() {
            facade::hal::contiguous_strides(&shape)
        } else {
            // SAFETY: as above.
            unsafe { dl_dims(dl.strides, ndim, "strides") }?
        };
        let desc = TensorDesc {
            dtype,
            shape,
            strides,
            offset: 0,
        };
        desc.validate("DLPack tensor")?;
        let bytes = desc.required_bytes()?;
        if bytes > 0 && dl.data.is_null() {
            return Err(Error::invalid_argument(format!(
                "DLPack data is NULL but the tensor spans {bytes} bytes"
            )));
        }
        // The tensor's bytes are `data + byte_offset ..` plus `bytes`: that range must not wrap
        // and must lie in the lower half of the address space, where every object lives (no
        // object is larger than isize::MAX bytes). A larger offset is the producer's error, and
        // reading through it would touch memory that is not the tensor's.
        let offset = usize::try_from(dl.byte_offset)
            .ok()
            .filter(|&o| o <= facade::hal::layout::MAX_BYTES)
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "DLPack byte_offset is {}: expected at most {} (isize::MAX)",
                    dl.byte_offset,
                    facade::hal::layout::MAX_BYTES
                ))
            })?;
        let start = (dl.data as usize).checked_add(offset);
        let end = start.and_then(|s| s.checked_add(bytes));
        if !dl.data.is_null() && end.is_none_or(|e| e > facade::hal::layout::MAX_BYTES) {
            return Err(Error::invalid_argument(format!(
                "DLPack data {:p} plus byte_offset {offset} plus the tensor's {bytes} bytes \
                 wraps or leaves the address space: expected an address range that fits",
                dl.data
            )));
        }
        let data = (dl.data as *mut u8).wrapping_add(offset);
        let device = rt.cpu_device("anyaccel_tensor_from_dlpack")?;
        let cpu = device
            .as_any()
            .downcast_ref::<CpuDevice>()
            .ok_or_else(|| Error::internal("the cpu backend's device is not a CpuDevice"))?;
        let read_only = flags & FLAG_READ_ONLY != 0;
        let shared = bytes == 0 || (data as usize).is_multiple_of(EXTERNAL_ALIGN);
        let armed = Arc::new(AtomicBool::new(shared));
        let buffer = if shared {
            let release = Release {
                managed: src,
                armed: armed.clone(),
            };
            // SAFETY: the producer keeps `bytes` bytes at `data` valid until its deleter runs,
            // which `release` calls when the buffer is freed (DLPack's contract).
            unsafe { cpu.wrap_host_memory(data, bytes, Box::new(move || release.call())) }?
        } else {
            let buffer = cpu.alloc(bytes)?;
            let mem = buffer
                .downcast::<CpuMemory>()
                .ok_or_else(|| Error::internal("cpu memory is not CpuMemory"))?;
            // SAFETY: `data` holds `bytes` readable bytes (DLPack's contract); the buffer was
            // just allocated with `bytes` bytes, and nothing else refers to it yet.
            unsafe { std::ptr::copy_nonoverlapping(data as *const u8, mem.as_ptr(), bytes) };
            buffer
        };
        let made = Tensor::new(buffer.whole(), desc).and_then(|tensor| {
            register_tensor(TensorObj {
                tensor,
                device: device.clone(),
                read_only,
            })
        });
        let h = match made {
            Ok(h) => h,
            Err(e) => {
                // The caller keeps `src`: dropping the buffer must not call its deleter.
                armed.store(false, Ordering::SeqCst);
                return Err(e);
            }
        };
        if !shared {
            // Copied: the producer's memory is no longer needed.
            // SAFETY: the managed tensor is valid, and ours now that the import succeeded.
            unsafe {
                if let Some(deleter) = (*src).deleter {
                    deleter(src);
                }
            }
        }
        // SAFETY: checked for NULL above; valid for a write by the caller's contract.
        unsafe { put(out, h) };
        // SAFETY: NULL or valid for a write by the caller's contract.
        unsafe { put(zero_copy, shared as i32) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::{self, from_ptr, Kind};
    use std::mem::{offset_of, size_of};

    fn is_live_tensor(t: *mut anyaccel_tensor_t) -> bool {
        handle::get::<TensorObj>(from_ptr(t), Kind::Tensor, "t").is_ok()
    }

    #[test]
    fn layout_matches_dlpack_h() {
        // The offsets of dlpack.h 1.x on LP64 targets.
        assert_eq!(size_of::<DLDevice>(), 8);
        assert_eq!(size_of::<DLDataType>(), 4);
        assert_eq!(offset_of!(DLTensor, device), 8);
        assert_eq!(offset_of!(DLTensor, ndim), 16);
        assert_eq!(offset_of!(DLTensor, dtype), 20);
        assert_eq!(offset_of!(DLTensor, shape), 24);
        assert_eq!(offset_of!(DLTensor, strides), 32);
        assert_eq!(offset_of!(DLTensor, byte_offset), 40);
        assert_eq!(size_of::<DLTensor>(), 48);
        assert_eq!(offset_of!(DLManagedTensorVersioned, manager_ctx), 8);
        assert_eq!(offset_of!(DLManagedTensorVersioned, deleter), 16);
        assert_eq!(offset_of!(DLManagedTensorVersioned, flags), 24);
        assert_eq!(offset_of!(DLManagedTensorVersioned, dl_tensor), 32);
        assert_eq!(size_of::<DLManagedTensorVersioned>(), 80);
    }

    #[test]
    fn dtypes_round_trip() {
        for d in DType::ALL {
            assert_eq!(from_dl_dtype(dl_dtype(d)).unwrap(), d);
        }
        let e = from_dl_dtype(DLDataType {
            code: KDL_FLOAT,
            bits: 32,
            lanes: 4,
        })
        .unwrap_err();
        assert!(e.message().contains("lanes 4"), "{e}");
    }

    #[test]
    fn export_then_import_shares_memory() {
        let mut rt = std::ptr::null_mut();
        // SAFETY: valid out-pointers throughout; handles come from the library.
        unsafe {
            assert_eq!(
                crate::anyaccel_runtime_create_with_backends(c"cpu".as_ptr(), &mut rt),
                0
            );
            let mut dev = std::ptr::null_mut();
            assert_eq!(crate::anyaccel_runtime_device(rt, 0, &mut dev), 0);
            let mut t = std::ptr::null_mut();
            let shape = [2i64, 3];
            assert_eq!(
                crate::anyaccel_tensor_alloc(dev, 1, shape.as_ptr(), 2, &mut t),
                0
            );
            let mut q = std::ptr::null_mut();
            assert_eq!(crate::anyaccel_queue_create(dev, &mut q), 0);
            let data = [1f32, 2., 3., 4., 5., 6.];
            assert_eq!(
                crate::anyaccel_tensor_write(q, t, data.as_ptr().cast(), 24),
                0
            );
            let mut m = std::ptr::null_mut();
            assert_eq!(anyaccel_tensor_to_dlpack(t, q, &mut m), 0);
            let dl = (*m).dl_tensor;
            assert_eq!(dl.ndim, 2);
            assert_eq!(*dl.shape.add(1), 3);
            let base = (dl.data as *const u8).add(dl.byte_offset as usize) as *const f32;
            assert_eq!(*base.add(4), 5.0);
            let mut back = std::ptr::null_mut();
            let mut zero_copy = -1;
            assert_eq!(
                anyaccel_tensor_from_dlpack(rt, m, &mut back, &mut zero_copy),
                0
            );
            assert_eq!(zero_copy, 1);
            assert!(is_live_tensor(back));
            let mut got = [0f32; 6];
            assert_eq!(
                crate::anyaccel_tensor_read(q, back, got.as_mut_ptr().cast(), 24),
                0
            );
            assert_eq!(got, data);
            for h in [t, back] {
                assert_eq!(crate::anyaccel_tensor_destroy(h), 0);
            }
            assert_eq!(crate::anyaccel_queue_destroy(q), 0);
            assert_eq!(crate::anyaccel_runtime_destroy(rt), 0);
        }
    }
}

#[cfg(test)]
mod hostile_imports {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static DELETED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count_deleter(_: *mut DLManagedTensorVersioned) {
        DELETED.fetch_add(1, Ordering::SeqCst);
    }

    /// Imports a producer's tensor over `data` with these fields; returns the status and the
    /// message, and checks that the deleter was not called (the caller keeps the tensor).
    fn import(
        data: *mut c_void,
        ndim: i32,
        shape: *mut i64,
        strides: *mut i64,
        byte_offset: u64,
    ) -> (anyaccel_status, String) {
        let mut rt = std::ptr::null_mut();
        let mut managed = DLManagedTensorVersioned {
            version: DLPackVersion { major: 1, minor: 0 },
            manager_ctx: std::ptr::null_mut(),
            deleter: Some(count_deleter),
            flags: 0,
            dl_tensor: DLTensor {
                data,
                device: DLDevice {
                    device_type: KDL_CPU,
                    device_id: 0,
                },
                ndim,
                dtype: dl_dtype(DType::F32),
                shape,
                strides,
                byte_offset,
            },
        };
        let before = DELETED.load(Ordering::SeqCst);
        let mut out = std::ptr::dangling_mut::<anyaccel_tensor_t>();
        // SAFETY: a runtime made here; `managed` is valid and outlives the call.
        let (status, message) = unsafe {
            assert_eq!(
                crate::anyaccel_runtime_create_with_backends(c"cpu".as_ptr(), &mut rt),
                0
            );
            let status =
                anyaccel_tensor_from_dlpack(rt, &mut managed, &mut out, std::ptr::null_mut());
            let message = std::ffi::CStr::from_ptr(crate::anyaccel_last_error_message())
                .to_string_lossy()
                .into_owned();
            (status, message)
        };
        if status != 0 {
            assert!(out.is_null(), "the out-parameter is cleared on failure");
            assert_eq!(
                DELETED.load(Ordering::SeqCst),
                before,
                "the caller keeps the tensor"
            );
        } else {
            // SAFETY: a live handle.
            assert_eq!(unsafe { crate::anyaccel_tensor_destroy(out) }, 0);
        }
        // SAFETY: the runtime made above.
        assert_eq!(unsafe { crate::anyaccel_runtime_destroy(rt) }, 0);
        (status, message)
    }

    #[test]
    fn offsets_that_leave_the_producer_memory_are_refused() {
        let mut data = [0f32; 8];
        let mut shape = [2i64, 3];
        let p = data.as_mut_ptr().cast::<c_void>();
        for offset in [
            1u64 << 63,
            (1 << 63) + 8,
            u64::MAX - 7,
            u64::MAX,
            (p as u64).wrapping_neg(),
        ] {
            let (status, message) = import(p, 2, shape.as_mut_ptr(), std::ptr::null_mut(), offset);
            assert_eq!(status, 1, "byte_offset {offset:#x}: {message}");
            assert!(message.contains("byte_offset"), "{message}");
        }
        // data + byte_offset wraps past the top of the address space with a modest offset.
        let top = usize::MAX - 15;
        let (status, message) = import(
            top as *mut c_void,
            2,
            shape.as_mut_ptr(),
            std::ptr::null_mut(),
            64,
        );
        assert_eq!(status, 1, "{message}");
        assert!(
            message.contains("wraps or leaves the address space"),
            "{message}"
        );
        // An honest offset imports (by one copy, as 4 is not a multiple of 8).
        let (status, message) = import(p, 2, shape.as_mut_ptr(), std::ptr::null_mut(), 4);
        assert_eq!(status, 0, "{message}");
    }

    #[test]
    fn ndim_is_checked_before_shape_is_read() {
        let mut data = [0f32; 4];
        let p = data.as_mut_ptr().cast::<c_void>();
        let mut one = [1i64];
        for ndim in [-1, -(1 << 30), i32::MAX, 65] {
            let (status, message) = import(p, ndim, one.as_mut_ptr(), std::ptr::null_mut(), 0);
            assert_eq!(status, 1, "ndim {ndim}: {message}");
            assert!(message.contains("ndim"), "{message}");
        }
        let (status, message) = import(p, 2, std::ptr::null_mut(), std::ptr::null_mut(), 0);
        assert_eq!(status, 1, "{message}");
        assert!(message.contains("`shape` is NULL"), "{message}");
        // Negative strides are refused by name; wrapping strides like any other layout.
        let mut shape = [2i64, 2];
        for (strides, needle) in [
            ([-1i64, 1], "strides[0] is -1"),
            ([i64::MAX, 1], "expected a size that fits"),
        ] {
            let mut strides = strides;
            let (status, message) = import(p, 2, shape.as_mut_ptr(), strides.as_mut_ptr(), 0);
            assert_ne!(status, 0, "{message}");
            assert!(message.contains(needle), "{message}");
        }
    }
}
