//! NCCL for groups made only of CUDA devices: the backend's
//! [`CollectiveLibrary`](anyaccel_hal::CollectiveLibrary), through cudarc's NCCL bindings with
//! dynamic loading (`libnccl.so.2`, looked for when a group is made; without it, groups stage
//! through the host).
//!
//! A group's communicator is `ncclCommInitAll` over the ranks' GPUs (one rank a GPU, as NCCL
//! requires: a group with a GPU twice stages through the host). Each collective is one NCCL call
//! a rank between `ncclGroupStart` and `ncclGroupEnd`, on each rank's stream, asynchronous.
//! NCCL's ring gives every rank the same bits on every run with the same GPUs; its floats are
//! summed in their own precision, so they may differ in the last places from the host path's
//! f64 sums.

use std::ffi::CStr;
use std::sync::{Arc, OnceLock};

use anyaccel_hal::{
    BufferView, CollectiveLibrary, Communicator, DType, Error, ErrorCode, Queue, ReduceOp, Result,
};
use cudarc::nccl::sys as nccl;

use crate::memory::CudaMemory;
use crate::queue::CudaQueue;

/// The process's NCCL, once `libnccl` has been found.
pub(crate) struct Nccl;

static NCCL: OnceLock<Option<Arc<Nccl>>> = OnceLock::new();

impl Nccl {
    /// NCCL, when its library can be loaded.
    pub(crate) fn get() -> Option<Arc<Nccl>> {
        NCCL.get_or_init(|| {
            // SAFETY: looks for and opens the library; calls nothing in it.
            let present = std::panic::catch_unwind(|| unsafe { nccl::is_culib_present() });
            present.unwrap_or(false).then(|| Arc::new(Nccl))
        })
        .clone()
    }
}

fn check(what: &str, r: nccl::ncclResult_t) -> Result<()> {
    if r == nccl::ncclResult_t::ncclSuccess {
        return Ok(());
    }
    // SAFETY: ncclGetErrorString returns a static NUL-terminated string for any result.
    let text = unsafe { CStr::from_ptr(nccl::ncclGetErrorString(r)) }
        .to_string_lossy()
        .into_owned();
    let code = match r {
        nccl::ncclResult_t::ncclInvalidArgument | nccl::ncclResult_t::ncclInvalidUsage => {
            ErrorCode::InvalidArgument
        }
        _ => ErrorCode::LaunchFailed,
    };
    Err(Error::new(code, format!("nccl {what}: {text} ({r:?})")))
}

impl CollectiveLibrary for Nccl {
    fn name(&self) -> &str {
        "nccl"
    }

    fn key(&self) -> usize {
        self as *const Nccl as usize
    }

    fn communicator(&self, queues: &[Arc<dyn Queue>]) -> Result<Arc<dyn Communicator>> {
        let mut cuda = Vec::with_capacity(queues.len());
        let mut devices = Vec::with_capacity(queues.len());
        for (r, q) in queues.iter().enumerate() {
            let cq = q.as_any().downcast_ref::<CudaQueue>().ok_or_else(|| {
                Error::invalid_argument(format!(
                    "nccl: rank {r}'s queue is of {}: expected a CUDA queue",
                    q.device_id()
                ))
            })?;
            let ordinal = cq.ordinal();
            if let Some(p) = devices.iter().position(|&d| d == ordinal) {
                return Err(Error::unsupported(format!(
                    "nccl: ranks {p} and {r} are one GPU ({}): NCCL takes one rank a GPU",
                    q.device_id()
                )));
            }
            devices.push(ordinal);
            cuda.push(Arc::clone(q));
        }
        let n = i32::try_from(devices.len())
            .map_err(|_| Error::invalid_argument("nccl: too many ranks"))?;
        let mut comms: Vec<nccl::ncclComm_t> = vec![std::ptr::null_mut(); devices.len()];
        // SAFETY: `comms` has room for n communicators, `devices` lists n distinct ordinals.
        check("ncclCommInitAll", unsafe {
            nccl::ncclCommInitAll(comms.as_mut_ptr(), n, devices.as_ptr())
        })?;
        Ok(Arc::new(NcclComm {
            comms,
            queues: cuda,
        }))
    }
}

/// A group's NCCL communicators, one a rank, and the ranks' queues.
struct NcclComm {
    comms: Vec<nccl::ncclComm_t>,
    queues: Vec<Arc<dyn Queue>>,
}

// SAFETY: the communicators are only passed to NCCL, from one thread at a time for a group (the
// collectives below hold every rank's queue lock while they call it).
unsafe impl Send for NcclComm {}
// SAFETY: as above.
unsafe impl Sync for NcclComm {}

impl Drop for NcclComm {
    fn drop(&mut self) {
        for q in &self.queues {
            let _ = q.finish();
        }
        for &c in &self.comms {
            // SAFETY: made by ncclCommInitAll, destroyed once; its streams are idle.
            let _ = unsafe { nccl::ncclCommDestroy(c) };
        }
    }
}

fn nccl_dtype(dtype: DType) -> Option<nccl::ncclDataType_t> {
    use nccl::ncclDataType_t as T;
    Some(match dtype {
        DType::F32 => T::ncclFloat32,
        DType::F16 => T::ncclFloat16,
        DType::BF16 => T::ncclBfloat16,
        DType::F64 => T::ncclFloat64,
        DType::I32 => T::ncclInt32,
        DType::I64 => T::ncclInt64,
        DType::U8 | DType::Bool => T::ncclUint8,
        DType::I8 => T::ncclInt8,
    })
}

fn nccl_op(op: ReduceOp) -> nccl::ncclRedOp_t {
    match op {
        ReduceOp::Sum => nccl::ncclRedOp_t::ncclSum,
        ReduceOp::Max => nccl::ncclRedOp_t::ncclMax,
        ReduceOp::Min => nccl::ncclRedOp_t::ncclMin,
        ReduceOp::Mean => nccl::ncclRedOp_t::ncclAvg,
    }
}

/// One rank's call: its communicator, stream, send and receive addresses.
struct RankCall {
    comm: nccl::ncclComm_t,
    stream: nccl::cudaStream_t,
    send: *const std::ffi::c_void,
    recv: *mut std::ffi::c_void,
}

impl NcclComm {
    fn queue(&self, r: usize) -> &CudaQueue {
        self.queues[r]
            .as_any()
            .downcast_ref::<CudaQueue>()
            .expect("checked when the communicator was made")
    }

    /// The device address of rank `r`'s view, which must be memory of rank `r`'s GPU.
    fn address(&self, f: &str, what: &str, r: usize, v: &BufferView) -> Result<u64> {
        let q = self.queue(r);
        let m = v
            .buffer()
            .downcast::<CudaMemory>()
            .filter(|m| q.owns(m))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "{f}: {what}[{r}] is memory of {}: expected memory of rank {r}'s GPU",
                    v.buffer().device_id()
                ))
            })?;
        Ok(m.device_ptr() + v.offset() as u64)
    }

    /// Calls `each` for every rank between ncclGroupStart and ncclGroupEnd.
    fn grouped(
        &self,
        f: &str,
        send: &[Option<&BufferView>],
        recv: &[&BufferView],
        each: impl Fn(&RankCall) -> nccl::ncclResult_t,
    ) -> Result<()> {
        let mut calls = Vec::with_capacity(self.comms.len());
        for r in 0..self.comms.len() {
            let recv_addr = self.address(f, "recv", r, recv[r])?;
            let send_addr = match send[r] {
                Some(s) => self.address(f, "send", r, s)?,
                None => recv_addr,
            };
            calls.push(RankCall {
                comm: self.comms[r],
                stream: self.queue(r).raw_stream() as nccl::cudaStream_t,
                send: send_addr as *const std::ffi::c_void,
                recv: recv_addr as *mut std::ffi::c_void,
            });
        }
        for (r, _) in calls.iter().enumerate() {
            if let Some(e) = self.queue(r).unreported_failure() {
                return Err(Error::new(
                    e.code(),
                    format!(
                        "{f}: rank {r}'s queue has failed and not reported it yet: {}; \
                         synchronize it first",
                        e.message()
                    ),
                ));
            }
        }
        // SAFETY: NCCL's group calls; every address lies in memory of its rank's GPU, checked
        // by the group, and each stream is its queue's, live while the queue lives.
        check("ncclGroupStart", unsafe { nccl::ncclGroupStart() })?;
        let mut first = Ok(());
        for c in &calls {
            if first.is_ok() {
                first = check(f, each(c));
            }
        }
        // SAFETY: closes the group opened above.
        let end = check("ncclGroupEnd", unsafe { nccl::ncclGroupEnd() });
        first.and(end)
    }
}

fn count(bytes: usize, dtype: DType) -> usize {
    bytes / dtype.size_in_bytes()
}

fn unsupported(f: &str, dtype: DType) -> Error {
    Error::unsupported(format!("nccl {f}: no NCCL type for {dtype}"))
}

/// ncclAllReduce and ncclReduceScatter, which take the same arguments.
type NcclReduction = unsafe fn(
    *const std::ffi::c_void,
    *mut std::ffi::c_void,
    usize,
    nccl::ncclDataType_t,
    nccl::ncclRedOp_t,
    nccl::ncclComm_t,
    nccl::cudaStream_t,
) -> nccl::ncclResult_t;

impl NcclComm {
    /// all_reduce and reduce_scatter: `call` over `recv[0]`'s element count, every rank.
    fn reduction(
        &self,
        f: &str,
        call: NcclReduction,
        (send, recv): (&[BufferView], &[BufferView]),
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        let t = nccl_dtype(dtype).ok_or_else(|| unsupported(f, dtype))?;
        let n = count(recv[0].len(), dtype);
        let sends: Vec<Option<&BufferView>> = send.iter().map(Some).collect();
        let recvs: Vec<&BufferView> = recv.iter().collect();
        self.grouped(f, &sends, &recvs, |c| unsafe {
            // SAFETY: see `grouped`.
            call(c.send, c.recv, n, t, nccl_op(op), c.comm, c.stream)
        })
    }
}

impl Communicator for NcclComm {
    fn all_reduce(
        &self,
        send: &[BufferView],
        recv: &[BufferView],
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        self.reduction(
            "ncclAllReduce",
            nccl::ncclAllReduce,
            (send, recv),
            dtype,
            op,
        )
    }

    fn broadcast(&self, views: &[BufferView], dtype: DType, root: usize) -> Result<()> {
        let t = nccl_dtype(dtype).ok_or_else(|| unsupported("broadcast", dtype))?;
        let n = count(views[0].len(), dtype);
        let root = i32::try_from(root).map_err(|_| Error::invalid_argument("broadcast: root"))?;
        let sends: Vec<Option<&BufferView>> = views.iter().map(Some).collect();
        let recvs: Vec<&BufferView> = views.iter().collect();
        self.grouped("ncclBroadcast", &sends, &recvs, |c| unsafe {
            // SAFETY: see `grouped` (in place: send is recv).
            nccl::ncclBroadcast(c.send, c.recv, n, t, root, c.comm, c.stream)
        })
    }

    fn all_gather(&self, send: &[BufferView], recv: &[BufferView], dtype: DType) -> Result<()> {
        let t = nccl_dtype(dtype).ok_or_else(|| unsupported("all_gather", dtype))?;
        let n = count(send[0].len(), dtype);
        let sends: Vec<Option<&BufferView>> = send.iter().map(Some).collect();
        let recvs: Vec<&BufferView> = recv.iter().collect();
        self.grouped("ncclAllGather", &sends, &recvs, |c| unsafe {
            // SAFETY: see `grouped`.
            nccl::ncclAllGather(c.send, c.recv, n, t, c.comm, c.stream)
        })
    }

    fn reduce_scatter(
        &self,
        send: &[BufferView],
        recv: &[BufferView],
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        self.reduction(
            "ncclReduceScatter",
            nccl::ncclReduceScatter,
            (send, recv),
            dtype,
            op,
        )
    }
}
