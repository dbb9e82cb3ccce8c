//! Matmul through cuBLAS, as the device's native `matmul`: f32, f16 and bf16 with f32
//! accumulation (`CUBLAS_COMPUTE_32F`, so f32 never drops to TF32).
//!
//! cuBLAS is column-major; a row-major `C = A B` is computed as `Cᵀ = Bᵀ Aᵀ`, which reads the
//! same memory. Any operand whose last two dims have unit stride in one of them (contiguous or
//! transposed) and a leading dimension at least the other's extent goes straight to cuBLAS;
//! batch dims (broadcast ones included) become one strided batch where their strides allow it
//! and a short loop of strided batches otherwise. Anything else — a bias, a view with no unit
//! stride, sizes beyond 32-bit — is left to the portable kernel.

use std::sync::Arc;

use anyaccel_hal::{DType, Device, Error, ErrorCode, OpCall, Queue, Result, Tensor};
use cudarc::cublas::sys::{
    self, cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cublasStatus_t, cudaDataType,
};

use crate::device::CudaDevice;
use crate::driver::{dlopen_error, missing_symbols, panic_text, Context};
use crate::program::device_address;
use crate::queue::{CuFailure, CudaQueue};

/// Every cuBLAS function this module calls; all are in cuBLAS 11 and newer.
pub(crate) const SYMBOLS: &[&str] = &[
    "cublasCreate_v2",
    "cublasDestroy_v2",
    "cublasGetVersion_v2",
    "cublasSetStream_v2",
    "cublasSetMathMode",
    "cublasGemmStridedBatchedEx",
    "cublasGetStatusName",
    "cublasGetStatusString",
];

/// The file name asked for in error messages.
pub const LIBCUBLAS: &str = "libcublas.so.12";

/// At most this many strided-batch calls make up one matmul; beyond, the portable kernel runs.
const MAX_CALLS: usize = 1024;

/// cuBLAS, opened and checked for one device: a handle was created in the device's context.
pub(crate) struct Blas {
    version: i32,
}

/// A cuBLAS handle bound to one stream. Each queue has its own (made on its first matmul), so
/// that no two streams share a handle's workspace.
pub(crate) struct BlasHandle {
    ctx: Arc<Context>,
    raw: sys::cublasHandle_t,
}

// SAFETY: a cuBLAS handle may move between threads; the queue uses it under a mutex, with the
// context bound.
unsafe impl Send for BlasHandle {}

fn status_text(s: cublasStatus_t) -> String {
    // SAFETY: the symbols were checked before any handle existed; cuBLAS returns static strings.
    let (name, text) = unsafe { (sys::cublasGetStatusName(s), sys::cublasGetStatusString(s)) };
    let read = |p: *const std::ffi::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated static string owned by cuBLAS.
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        }
    };
    match (read(name), read(text)) {
        (n, t) if n.is_empty() => format!("{s:?} {t}"),
        (n, t) if t.is_empty() => n,
        (n, t) => format!("{n} ({t})"),
    }
}

impl Blas {
    /// Opens cuBLAS (checking every symbol first) and creates a handle in `ctx` to read its
    /// version; the error is why cuBLAS cannot be used.
    pub(crate) fn new(ctx: Arc<Context>) -> std::result::Result<Blas, String> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Blas::open(ctx))).unwrap_or_else(
            |panic| {
                Err(format!(
                    "cuBLAS panicked while being opened: {}",
                    panic_text(&*panic)
                ))
            },
        )
    }

    fn open(ctx: Arc<Context>) -> std::result::Result<Blas, String> {
        // SAFETY: tries to open libcublas under cudarc's candidate names, dropping each handle.
        if !unsafe { sys::is_culib_present() } {
            return Err(format!(
                "{LIBCUBLAS} cannot be loaded ({}): install cuBLAS (the CUDA toolkit, or `pip \
                 install nvidia-cublas-cu12` with nvidia/cublas/lib on LD_LIBRARY_PATH)",
                dlopen_error(LIBCUBLAS)
            ));
        }
        // SAFETY: is_culib_present just opened it under a name that culib tries too.
        let missing = missing_symbols(unsafe { sys::culib() }, SYMBOLS);
        if !missing.is_empty() {
            return Err(format!(
                "{LIBCUBLAS} lacks {}: cuBLAS 11 or newer is needed",
                missing.join(", ")
            ));
        }
        let handle = BlasHandle::new(ctx, None)?;
        let mut version = 0;
        // SAFETY: a live handle; valid out-pointer.
        let s = unsafe { sys::cublasGetVersion_v2(handle.raw, &mut version) };
        if s != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(format!("cublasGetVersion failed: {}", status_text(s)));
        }
        Ok(Blas { version })
    }

    /// cuBLAS's version, e.g. `12.4.5` from 120405.
    pub(crate) fn version_text(&self) -> String {
        let v = self.version;
        format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
    }
}

impl BlasHandle {
    /// A handle in `ctx` (cuBLAS must have been opened by [`Blas::new`]), in the default math
    /// mode, working on `stream` when one is given.
    pub(crate) fn new(
        ctx: Arc<Context>,
        stream: Option<sys::cudaStream_t>,
    ) -> std::result::Result<BlasHandle, String> {
        ctx.bind().map_err(|e| e.to_string())?;
        let mut raw: sys::cublasHandle_t = std::ptr::null_mut();
        // SAFETY: cuBLAS is open with its symbols checked; the context is current; valid
        // out-pointer.
        let s = unsafe { sys::cublasCreate_v2(&mut raw) };
        if s != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(format!("cublasCreate failed: {}", status_text(s)));
        }
        // From here the handle is destroyed on every path (Drop).
        let handle = BlasHandle { ctx, raw };
        // SAFETY: a live handle. The default math mode: tensor cores for 16-bit inputs with
        // f32 accumulation, and no TF32 for f32 (that needs CUBLAS_COMPUTE_32F_FAST_TF32).
        let s = unsafe { sys::cublasSetMathMode(raw, sys::cublasMath_t::CUBLAS_DEFAULT_MATH) };
        if s != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(format!("cublasSetMathMode failed: {}", status_text(s)));
        }
        if let Some(stream) = stream {
            // SAFETY: a live handle and a live stream of the same context.
            let s = unsafe { sys::cublasSetStream_v2(raw, stream) };
            if s != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                return Err(format!("cublasSetStream failed: {}", status_text(s)));
            }
        }
        Ok(handle)
    }
}

impl Drop for BlasHandle {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: a live handle, destroyed once; its queue has waited for its stream.
            unsafe {
                sys::cublasDestroy_v2(self.raw);
            }
        }
    }
}

/// One operand as cuBLAS sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Operand {
    op: cublasOperation_t,
    ld: i32,
}

/// A matmul laid out for `cublasGemmStridedBatchedEx`: `calls` strided batches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GemmPlan {
    dtype: cudaDataType,
    /// cuBLAS's m, n, k.
    m: i32,
    n: i32,
    k: i32,
    /// cuBLAS's first and second operands: the tensors `first_is_b` says.
    first: Operand,
    second: Operand,
    ldc: i32,
    /// True when cuBLAS's first operand is our `b` (the output is row-major: `Cᵀ = Bᵀ Aᵀ`).
    first_is_b: bool,
    /// Element strides between batch entries of a, b and c, and the batch count.
    stride: [i64; 3],
    batch: i32,
    /// Element offsets of a, b and c of each call.
    calls: Vec<[u64; 3]>,
}

/// Leading dimension of a matrix of `rows` x `cols` with element strides `(sr, sc)` read as
/// row-major (`Some` when possible).
fn row_major_ld(rows: usize, cols: usize, sr: usize, sc: usize) -> Option<usize> {
    let unit = cols == 1 || sc == 1;
    if !unit {
        return None;
    }
    if rows == 1 {
        Some(cols.max(1))
    } else if sr >= cols.max(1) {
        Some(sr)
    } else {
        None
    }
}

/// The same, read as column-major.
fn col_major_ld(rows: usize, cols: usize, sr: usize, sc: usize) -> Option<usize> {
    row_major_ld(cols, rows, sc, sr)
}

fn int(v: usize) -> Option<i32> {
    i32::try_from(v).ok()
}

/// The dims and strides of the last two dims of `t` and its batch strides broadcast to
/// `batch` (0 for a broadcast dim).
fn split(t: &Tensor, batch: &[usize]) -> Option<(usize, usize, usize, usize, Vec<usize>)> {
    let r = t.rank();
    let (shape, strides) = (t.shape(), t.strides());
    let nb = batch.len();
    let tb = r - 2;
    if tb > nb {
        return None;
    }
    let mut bs = vec![0usize; nb];
    for j in 0..tb {
        let i = nb - tb + j;
        if shape[j] == batch[i] && shape[j] != 1 {
            bs[i] = strides[j];
        } else if shape[j] != 1 {
            return None;
        }
    }
    Some((
        shape[r - 2],
        shape[r - 1],
        strides[r - 2],
        strides[r - 1],
        bs,
    ))
}

/// The cuBLAS layout of `c = a @ b`, or `None` when cuBLAS cannot express it.
pub(crate) fn plan(a: &Tensor, b: &Tensor, c: &Tensor) -> Option<GemmPlan> {
    let dtype = match a.dtype() {
        DType::F32 => cudaDataType::CUDA_R_32F,
        DType::F16 => cudaDataType::CUDA_R_16F,
        DType::BF16 => cudaDataType::CUDA_R_16BF,
        _ => return None,
    };
    if b.dtype() != a.dtype() || c.dtype() != a.dtype() || a.rank() < 2 || b.rank() < 2 {
        return None;
    }
    let cr = c.rank();
    let batch = &c.shape()[..cr - 2];
    let (m, n) = (c.shape()[cr - 2], c.shape()[cr - 1]);
    let (am, ak, asr, asc, abs) = split(a, batch)?;
    let (bk, bn, bsr, bsc, bbs) = split(b, batch)?;
    let (csr, csc) = (c.strides()[cr - 2], c.strides()[cr - 1]);
    let cbs: Vec<usize> = c.strides()[..cr - 2].to_vec();
    if am != m || bn != n || ak != bk || m == 0 || n == 0 || ak == 0 || c.numel() == 0 {
        return None;
    }
    let k = ak;
    let (first_is_b, ldc, first, second, cm, cn) = if let Some(ldc) = row_major_ld(m, n, csr, csc) {
        // Cᵀ (n x m, column-major) = Bᵀ (n x k) Aᵀ (k x m).
        let first = match (row_major_ld(k, n, bsr, bsc), col_major_ld(k, n, bsr, bsc)) {
            (Some(ld), _) => (cublasOperation_t::CUBLAS_OP_N, ld),
            (None, Some(ld)) => (cublasOperation_t::CUBLAS_OP_T, ld),
            _ => return None,
        };
        let second = match (row_major_ld(m, k, asr, asc), col_major_ld(m, k, asr, asc)) {
            (Some(ld), _) => (cublasOperation_t::CUBLAS_OP_N, ld),
            (None, Some(ld)) => (cublasOperation_t::CUBLAS_OP_T, ld),
            _ => return None,
        };
        (true, ldc, first, second, n, m)
    } else if let Some(ldc) = col_major_ld(m, n, csr, csc) {
        // C (m x n, column-major) = A (m x k) B (k x n).
        let first = match (col_major_ld(m, k, asr, asc), row_major_ld(m, k, asr, asc)) {
            (Some(ld), _) => (cublasOperation_t::CUBLAS_OP_N, ld),
            (None, Some(ld)) => (cublasOperation_t::CUBLAS_OP_T, ld),
            _ => return None,
        };
        let second = match (col_major_ld(k, n, bsr, bsc), row_major_ld(k, n, bsr, bsc)) {
            (Some(ld), _) => (cublasOperation_t::CUBLAS_OP_N, ld),
            (None, Some(ld)) => (cublasOperation_t::CUBLAS_OP_T, ld),
            _ => return None,
        };
        (false, ldc, first, second, m, n)
    } else {
        return None;
    };

    // Batch dims: drop size-1 dims, then find the longest suffix that is one strided run for
    // all three tensors; the dims before it are looped over.
    let dims: Vec<(usize, [usize; 3])> = (0..batch.len())
        .filter(|&i| batch[i] != 1)
        .map(|i| (batch[i], [abs[i], bbs[i], cbs[i]]))
        .collect();
    let mut inner_start = dims.len();
    while inner_start > 0 {
        let i = inner_start - 1;
        let joins =
            i + 1 == dims.len() || (0..3).all(|t| dims[i].1[t] == dims[i + 1].1[t] * dims[i + 1].0);
        if !joins {
            break;
        }
        inner_start = i;
    }
    let (inner, outer) = (&dims[inner_start..], &dims[..inner_start]);
    let batch_count: usize = inner.iter().map(|d| d.0).product();
    let stride = match inner.last() {
        Some((_, s)) => [s[0] as i64, s[1] as i64, s[2] as i64],
        None => [0, 0, 0],
    };
    let outer_count: usize = outer.iter().map(|d| d.0).product();
    if outer_count > MAX_CALLS {
        return None;
    }
    let base = [
        a.desc().offset as u64,
        b.desc().offset as u64,
        c.desc().offset as u64,
    ];
    let mut calls = Vec::with_capacity(outer_count);
    for linear in 0..outer_count {
        let mut rest = linear;
        let mut offsets = base;
        for (size, strides) in outer.iter().rev() {
            let idx = rest % size;
            rest /= size;
            for t in 0..3 {
                offsets[t] += (idx * strides[t]) as u64;
            }
        }
        calls.push(offsets);
    }
    Some(GemmPlan {
        dtype,
        m: int(cm)?,
        n: int(cn)?,
        k: int(k)?,
        first: Operand {
            op: first.0,
            ld: int(first.1)?,
        },
        second: Operand {
            op: second.0,
            ld: int(second.1)?,
        },
        ldc: int(ldc)?,
        first_is_b,
        stride,
        batch: int(batch_count)?,
        calls,
    })
}

/// The tensors of a `matmul` call that cuBLAS can run: `(a, b, c)`.
fn operands(call: &OpCall) -> Option<(&Tensor, &Tensor, &Tensor)> {
    if call.op != "matmul" || call.outputs.len() != 1 {
        return None;
    }
    let a = call.inputs.first()?.as_ref()?;
    let b = call.inputs.get(1)?.as_ref()?;
    if call.inputs.get(2).is_some_and(|bias| bias.is_some()) {
        return None;
    }
    Some((a, b, &call.outputs[0]))
}

/// True when the device's cuBLAS runs this call. bf16 goes to cuBLAS from compute capability
/// 8.0 (where the GPU has bf16 arithmetic); older GPUs take the portable kernel for it.
pub(crate) fn supports(device: &CudaDevice, call: &OpCall) -> bool {
    operands(call).is_some_and(|(a, b, c)| {
        (a.dtype() != DType::BF16 || device.compute_capability().major >= 8)
            && plan(a, b, c).is_some()
    })
}

/// Runs the call on `queue` (a queue of `device`).
pub(crate) fn execute(device: &CudaDevice, queue: &dyn Queue, call: &OpCall) -> Result<()> {
    let id = &device.info().id;
    if device.blas().is_none() {
        return Err(Error::unsupported(format!(
            "matmul: cuBLAS is not available on {id}: {}",
            device.blas_status()
        )));
    }
    let (a, b, c) = operands(call)
        .ok_or_else(|| Error::unsupported(format!("{}: not a matmul that cuBLAS runs", call.op)))?;
    let plan = plan(a, b, c).ok_or_else(|| {
        Error::unsupported(format!(
            "matmul on {id}: cuBLAS cannot express these layouts (a strides {:?}, b strides {:?}, \
             out strides {:?})",
            a.strides(),
            b.strides(),
            c.strides()
        ))
    })?;
    let cuda_queue = queue
        .as_any()
        .downcast_ref::<CudaQueue>()
        .filter(|q| q.device_id() == id.as_str())
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "matmul: the queue is on {}, not a CUDA queue of {id}",
                queue.device_id()
            ))
        })?;
    let size = a.dtype().size_in_bytes() as u64;
    let addr = |t: &Tensor, what: &str| device_address(device, &format!("matmul {what}"), t.view());
    let bases = [addr(a, "a")?, addr(b, "b")?, addr(c, "out")?];
    let (first_t, second_t) = if plan.first_is_b { (1, 0) } else { (0, 1) };
    let alpha = 1.0f32;
    let beta = 0.0f32;
    cuda_queue.submit(
        || {
            format!(
                "matmul ({}) {:?} x {:?} on {id} through cuBLAS",
                a.dtype(),
                a.shape(),
                b.shape()
            )
        },
        ErrorCode::LaunchFailed,
        |_, stream| {
            let mut slot = cuda_queue.blas_handle();
            if slot.is_none() {
                let made = BlasHandle::new(device.context().clone(), Some(stream as _))
                    .map_err(|e| CuFailure::Other(Error::launch_failed(format!("matmul: {e}"))))?;
                *slot = Some(made);
            }
            let Some(handle) = slot.as_ref().map(|h| h.raw) else {
                return Err(CuFailure::Other(Error::internal(
                    "matmul: no cuBLAS handle",
                )));
            };
            for offsets in &plan.calls {
                let ptr = |t: usize| bases[t] + offsets[t] * size;
                // SAFETY: every matrix of every batch lies inside its tensor (the plan's dims,
                // leading dimensions and strides are the tensors' own, and the tensors were
                // validated to fit their buffers); a and b are only read; c does not overlap
                // them (the op layer checks outputs against inputs); the scalars are f32 as
                // CUBLAS_COMPUTE_32F requires, and live across the call.
                let s = unsafe {
                    sys::cublasGemmStridedBatchedEx(
                        handle,
                        plan.first.op,
                        plan.second.op,
                        plan.m,
                        plan.n,
                        plan.k,
                        (&alpha as *const f32).cast(),
                        ptr(first_t) as *const std::ffi::c_void,
                        plan.dtype,
                        plan.first.ld,
                        plan.stride[first_t],
                        ptr(second_t) as *const std::ffi::c_void,
                        plan.dtype,
                        plan.second.ld,
                        plan.stride[second_t],
                        (&beta as *const f32).cast(),
                        ptr(2) as *mut std::ffi::c_void,
                        plan.dtype,
                        plan.ldc,
                        plan.stride[2],
                        plan.batch,
                        cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
                    )
                };
                blas_ok(s, "cublasGemmStridedBatchedEx")?;
            }
            Ok(())
        },
    )
}

fn blas_ok(s: cublasStatus_t, what: &str) -> std::result::Result<(), CuFailure> {
    if s == cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        let code = if s == cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED {
            ErrorCode::OutOfMemory
        } else {
            ErrorCode::LaunchFailed
        };
        Err(CuFailure::Other(Error::new(
            code,
            format!("matmul: {what} failed: {}", status_text(s)),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyaccel_hal::{Buffer, DeviceMemory, TensorDesc};
    use std::any::Any;

    /// Host-free stand-in memory: the plan reads only shapes and strides.
    struct Bytes(usize);
    impl DeviceMemory for Bytes {
        fn size(&self) -> usize {
            self.0
        }
        fn device_id(&self) -> &str {
            "cuda:0"
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn tensor(shape: &[usize], strides: &[usize]) -> Tensor {
        let desc = TensorDesc {
            dtype: DType::F32,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset: 0,
        };
        let bytes = desc.required_bytes().unwrap().max(4);
        Tensor::new(Buffer::new(Arc::new(Bytes(bytes))).whole(), desc).unwrap()
    }

    fn contiguous(shape: &[usize]) -> Tensor {
        tensor(shape, &anyaccel_hal::contiguous_strides(shape))
    }

    use cublasOperation_t::{CUBLAS_OP_N as N, CUBLAS_OP_T as T};

    #[test]
    fn row_major_output_swaps_the_operands() {
        let p = plan(
            &contiguous(&[3, 5]),
            &contiguous(&[5, 7]),
            &contiguous(&[3, 7]),
        )
        .unwrap();
        assert!(p.first_is_b);
        assert_eq!((p.m, p.n, p.k), (7, 3, 5));
        assert_eq!(p.first, Operand { op: N, ld: 7 });
        assert_eq!(p.second, Operand { op: N, ld: 5 });
        assert_eq!((p.ldc, p.batch, p.calls.len()), (7, 1, 1));
    }

    #[test]
    fn transposed_inputs_become_transpose_ops() {
        // a is the transpose of a contiguous [5, 3]; b of a contiguous [7, 5].
        let a = tensor(&[3, 5], &[1, 3]);
        let b = tensor(&[5, 7], &[1, 5]);
        let p = plan(&a, &b, &contiguous(&[3, 7])).unwrap();
        assert_eq!(p.first, Operand { op: T, ld: 5 });
        assert_eq!(p.second, Operand { op: T, ld: 3 });
    }

    #[test]
    fn column_major_output_keeps_the_order() {
        let c = tensor(&[3, 7], &[1, 3]);
        let p = plan(&contiguous(&[3, 5]), &contiguous(&[5, 7]), &c).unwrap();
        assert!(!p.first_is_b);
        assert_eq!((p.m, p.n, p.k, p.ldc), (3, 7, 5, 3));
        assert_eq!(p.first, Operand { op: T, ld: 5 });
        assert_eq!(p.second, Operand { op: T, ld: 7 });
    }

    #[test]
    fn batches_broadcast_and_loop() {
        // a [2, 3, 4, 5] and b [5, 6] broadcast over the batch: one strided batch of 6.
        let p = plan(
            &contiguous(&[2, 3, 4, 5]),
            &contiguous(&[5, 6]),
            &contiguous(&[2, 3, 4, 6]),
        )
        .unwrap();
        assert_eq!((p.batch, p.calls.len()), (6, 1));
        assert_eq!(p.stride, [20, 0, 24]);
        // a [2, 1, 4, 5] and b [1, 3, 5, 6]: no single stride; two calls of 3.
        let p = plan(
            &contiguous(&[2, 1, 4, 5]),
            &contiguous(&[1, 3, 5, 6]),
            &contiguous(&[2, 3, 4, 6]),
        )
        .unwrap();
        assert_eq!((p.batch, p.calls.len()), (3, 2));
        assert_eq!(p.stride, [0, 30, 24]);
        assert_eq!(p.calls, vec![[0, 0, 0], [20, 0, 72]]);
    }

    #[test]
    fn layouts_without_a_unit_stride_are_left_to_the_kernel() {
        let a = tensor(&[3, 5], &[10, 2]);
        assert!(plan(&a, &contiguous(&[5, 7]), &contiguous(&[3, 7])).is_none());
        // Empty and i32 matmuls are not cuBLAS's either.
        assert!(plan(
            &contiguous(&[3, 0]),
            &contiguous(&[0, 7]),
            &contiguous(&[3, 7])
        )
        .is_none());
    }
}
