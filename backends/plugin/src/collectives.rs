//! A plugin's collective library (plugin ABI 1.1) as the HAL's [`CollectiveLibrary`]: a
//! [`DeviceGroup`](anyaccel_hal::DeviceGroup) made only of this plugin's devices runs its
//! collectives there, enqueued on every rank's stream.

use std::sync::Arc;

use anyaccel_hal::{
    BufferView, CollectiveLibrary, Communicator, DType, Error, Queue, ReduceOp, Result,
};

use crate::device::PluginMemory;
use crate::loader::PluginRef;
use crate::queue::{PluginQueue, StreamInner};
use crate::sys::{self, AnyaccelCollectiveRank, AnyaccelCollectivesApi, AnyaccelComm};

/// The collective library of one loaded plugin.
pub(crate) struct PluginLibrary {
    plugin: PluginRef,
    name: String,
}

impl PluginLibrary {
    /// The library of `plugin`, when its table has one.
    pub(crate) fn of(plugin: &PluginRef) -> Option<PluginLibrary> {
        plugin.collectives.as_ref()?;
        Some(PluginLibrary {
            plugin: plugin.clone(),
            name: format!("{} collectives", plugin.backend),
        })
    }

    fn table(&self) -> &AnyaccelCollectivesApi {
        self.plugin
            .collectives
            .as_ref()
            .expect("a library exists only for a plugin with a collectives table")
    }
}

impl CollectiveLibrary for PluginLibrary {
    fn name(&self) -> &str {
        &self.name
    }

    fn key(&self) -> usize {
        Arc::as_ptr(&self.plugin) as usize
    }

    fn communicator(&self, queues: &[Arc<dyn Queue>]) -> Result<Arc<dyn Communicator>> {
        let mut streams = Vec::with_capacity(queues.len());
        for (r, q) in queues.iter().enumerate() {
            let pq = q
                .as_any()
                .downcast_ref::<PluginQueue>()
                .filter(|pq| Arc::ptr_eq(&pq.stream().device.plugin, &self.plugin))
                .ok_or_else(|| {
                    Error::invalid_argument(format!(
                        "{}: rank {r}'s queue is of {}: expected a queue of a device of {}",
                        self.name,
                        q.device_id(),
                        self.plugin.backend
                    ))
                })?;
            streams.push(pq.stream().clone());
        }
        let devices: Vec<*mut sys::AnyaccelDevice> = streams.iter().map(|s| s.device.raw).collect();
        let count = i32::try_from(devices.len())
            .map_err(|_| Error::invalid_argument(format!("{}: too many ranks", self.name)))?;
        let create = self.table().comm_create.expect("checked by the loader");
        let mut comm: *mut AnyaccelComm = std::ptr::null_mut();
        // SAFETY: `devices` holds `count` open devices of this plugin; comm_create writes one
        // handle.
        self.plugin.check("comm_create", unsafe {
            create(devices.as_ptr(), count, &mut comm)
        })?;
        if comm.is_null() {
            return Err(Error::internal(format!(
                "{}: comm_create succeeded but gave no communicator",
                self.plugin.backend
            )));
        }
        Ok(Arc::new(PluginComm {
            plugin: self.plugin.clone(),
            table: *self.table(),
            raw: comm,
            streams,
        }))
    }
}

/// A communicator of a plugin's library over the streams of a group's queues.
struct PluginComm {
    plugin: PluginRef,
    table: AnyaccelCollectivesApi,
    raw: *mut AnyaccelComm,
    streams: Vec<Arc<StreamInner>>,
}

// SAFETY: the communicator handle is only passed back to the plugin, whose collectives are called
// with every rank's stream locked (so no two threads use those streams at once).
unsafe impl Send for PluginComm {}
// SAFETY: as above.
unsafe impl Sync for PluginComm {}

impl Drop for PluginComm {
    fn drop(&mut self) {
        // The header: every rank's stream is synchronized before comm_destroy.
        for s in &self.streams {
            let _ = s.synchronize();
        }
        if let Some(destroy) = self.table.comm_destroy {
            // SAFETY: created by comm_create, destroyed once, here; nothing is pending.
            let _ = unsafe { destroy(self.raw) };
        }
    }
}

fn reduce_code(op: ReduceOp) -> i32 {
    match op {
        ReduceOp::Sum => sys::ANYACCEL_REDUCE_SUM,
        ReduceOp::Max => sys::ANYACCEL_REDUCE_MAX,
        ReduceOp::Min => sys::ANYACCEL_REDUCE_MIN,
        ReduceOp::Mean => sys::ANYACCEL_REDUCE_MEAN,
    }
}

impl PluginComm {
    /// The plugin buffer of rank `r`'s view, which must be memory of rank `r`'s device.
    fn memory<'a>(
        &self,
        f: &str,
        what: &str,
        r: usize,
        v: &'a BufferView,
    ) -> Result<&'a PluginMemory> {
        v.buffer()
            .downcast::<PluginMemory>()
            .filter(|m| m.on(&self.streams[r].device))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "{f}: {what}[{r}] is memory of {}: expected memory of rank {r}'s device",
                    v.buffer().device_id()
                ))
            })
    }

    /// Enqueues a collective: `call` gets the ranks' structs.
    fn run(
        &self,
        f: &str,
        send: &[Option<&BufferView>],
        recv: &[&BufferView],
        call: impl FnOnce(*const AnyaccelCollectiveRank) -> sys::AnyaccelStatus,
    ) -> Result<()> {
        let mut ranks = Vec::with_capacity(self.streams.len());
        let mut keep = Vec::with_capacity(self.streams.len());
        for (r, (s, v)) in send.iter().zip(recv).enumerate() {
            let out = self.memory(f, "recv", r, v)?;
            let (send_raw, send_offset, mut kept) = match s {
                Some(s) => {
                    let m = self.memory(f, "send", r, s)?;
                    (m.raw(), s.offset() as u64, vec![s.buffer().clone()])
                }
                None => (std::ptr::null_mut(), 0, Vec::new()),
            };
            kept.push(v.buffer().clone());
            keep.push(kept);
            ranks.push(AnyaccelCollectiveRank {
                struct_size: std::mem::size_of::<AnyaccelCollectiveRank>(),
                stream: std::ptr::null_mut(),
                send: send_raw,
                send_offset,
                recv: out.raw(),
                recv_offset: v.offset() as u64,
            });
        }
        StreamInner::submit_all(f, &self.streams, keep, |raws| {
            for (rank, raw) in ranks.iter_mut().zip(raws) {
                rank.stream = *raw;
            }
            // SAFETY: `ranks` holds one struct per rank with live streams and buffers of the
            // ranks' devices, the ranges checked by the group; the buffers are kept until the
            // streams are synchronized.
            self.plugin.check(f, call(ranks.as_ptr()))
        })
    }
}

fn count(f: &str, bytes: usize, dtype: DType) -> Result<u64> {
    let size = dtype.size_in_bytes();
    if !bytes.is_multiple_of(size) {
        return Err(Error::internal(format!(
            "{f}: {bytes} bytes is not a whole number of {dtype} elements"
        )));
    }
    Ok((bytes / size) as u64)
}

/// Every rank sends and receives: the operands as [`PluginComm::run`] takes them.
fn every_rank<'a>(
    send: &'a [BufferView],
    recv: &'a [BufferView],
) -> (Vec<Option<&'a BufferView>>, Vec<&'a BufferView>) {
    (send.iter().map(Some).collect(), recv.iter().collect())
}

impl PluginComm {
    /// all_reduce and reduce_scatter: `f` (`call`) over `recv[0]`'s element count.
    fn reduction(
        &self,
        f: &str,
        call: sys::CollectiveFn,
        (send, recv): (&[BufferView], &[BufferView]),
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        let n = count(f, recv[0].len(), dtype)?;
        let (sends, recvs) = every_rank(send, recv);
        self.run(f, &sends, &recvs, |ranks| unsafe {
            // SAFETY: see `run`.
            call(self.raw, ranks, n, dtype.code() as i32, reduce_code(op))
        })
    }
}

impl Communicator for PluginComm {
    fn all_reduce(
        &self,
        send: &[BufferView],
        recv: &[BufferView],
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        let f = self.table.all_reduce.expect("checked by the loader");
        self.reduction("all_reduce", f, (send, recv), dtype, op)
    }

    fn broadcast(&self, views: &[BufferView], dtype: DType, root: usize) -> Result<()> {
        let n = count("broadcast", views[0].len(), dtype)?;
        let f = self.table.broadcast.expect("checked by the loader");
        let sends: Vec<Option<&BufferView>> = views
            .iter()
            .enumerate()
            .map(|(r, v)| (r == root).then_some(v))
            .collect();
        let recvs: Vec<&BufferView> = views.iter().collect();
        let root = i32::try_from(root).map_err(|_| Error::invalid_argument("broadcast: root"))?;
        self.run("broadcast", &sends, &recvs, |ranks| unsafe {
            // SAFETY: see `run`.
            f(self.raw, ranks, n, dtype.code() as i32, root)
        })
    }

    fn all_gather(&self, send: &[BufferView], recv: &[BufferView], dtype: DType) -> Result<()> {
        let n = count("all_gather", send[0].len(), dtype)?;
        let f = self.table.all_gather.expect("checked by the loader");
        let (sends, recvs) = every_rank(send, recv);
        self.run("all_gather", &sends, &recvs, |ranks| unsafe {
            // SAFETY: see `run`.
            f(self.raw, ranks, n, dtype.code() as i32)
        })
    }

    fn reduce_scatter(
        &self,
        send: &[BufferView],
        recv: &[BufferView],
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        let f = self.table.reduce_scatter.expect("checked by the loader");
        self.reduction("reduce_scatter", f, (send, recv), dtype, op)
    }
}
