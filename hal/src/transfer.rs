//! Tensors across devices: [`Tensor::to`] and [`Tensor::copy_to`] copy a tensor from a queue of
//! one device to a queue of any other device, any pair of backends, vendor plugins included.
//!
//! The paths, fastest first:
//!
//! - **Same device** (one device object): the destination queue waits on an event of the source queue and copies on
//!   the device (`Queue::copy`); the source queue then waits on an event of the destination
//!   queue, so that neither queue's later commands can overtake the copy. The calling thread
//!   does not wait.
//! - **Peer** (two devices of one backend that has a direct path, [`Device::copies_from`]: CUDA
//!   peer access, a vendor plugin's `copy_peer`): as on one device, with [`Queue::copy_peer`]
//!   on the destination queue.
//! - **Host** (two devices, one of them host memory, [`Device::host_addressable`]: the CPU
//!   device): one copy, the other device reading straight into it ([`Queue::map_host`]) or
//!   writing straight from it. The calling thread waits for the copy.
//! - **Different devices**: staged through host memory in chunks of [`CHUNK_BYTES`], double
//!   buffered: a reader thread reads chunk `k + 1` from the source queue while the calling
//!   thread writes chunk `k` to the destination queue. The calling thread waits for the source
//!   queue's earlier work (as [`Queue::read`] does); the writes are asynchronous on the
//!   destination queue, in its order. A strided source is gathered to row-major order on the
//!   host first.
//!

use std::sync::mpsc;

use crate::tensor::shape_str;
use crate::{same_device, BufferView, Device, Error, Queue, Result, Tensor};

/// The staging chunk of a copy between devices: two of them are in flight at once.
pub const CHUNK_BYTES: usize = 4 << 20;

impl Tensor {
    /// A contiguous copy of this tensor (any layout, on `from`'s device) on `to`'s device.
    ///
    /// `from` must be a queue of this tensor's device; `to` may be a queue of any device,
    /// the same one included. See [`Tensor::copy_to`] for the ordering.
    ///
    /// ```
    /// # use anyaccel_hal::{Tensor, Queue, Result};
    /// # fn f(t: &Tensor, gpu: &dyn Queue, npu: &dyn Queue) -> Result<()> {
    /// let there = t.to(gpu, npu)?; // a contiguous copy on npu's device
    /// # Ok(()) }
    /// ```
    pub fn to(&self, from: &dyn Queue, to: &dyn Queue) -> Result<Tensor> {
        check_queue("to", "from", from, self)?;
        let dst = Tensor::empty(&*to.device(), self.dtype(), self.shape())?;
        self.copy_to(from, &dst, to)?;
        Ok(dst)
    }

    /// Copies this tensor (any layout, on `from`'s device) into `dst`, a contiguous tensor of the
    /// same dtype and shape on `to`'s device.
    ///
    /// Ordering: the copy sees every command submitted to `from` before this call, and every
    /// command submitted to `to` afterwards sees the copy. On one device, and over a peer path,
    /// nothing waits; a host copy waits for the copy; a staged copy waits until the source has
    /// been read (as [`Queue::read`] does) and the writes run asynchronously on `to` (see the
    /// [module](self) docs).
    /// Errors of earlier work on either queue come back here or at that queue's next
    /// synchronization, as the queue's sticky error.
    pub fn copy_to(&self, from: &dyn Queue, dst: &Tensor, to: &dyn Queue) -> Result<()> {
        check_queue("copy_to", "from", from, self)?;
        check_queue("copy_to", "to", to, dst)?;
        if dst.dtype() != self.dtype() || dst.shape() != self.shape() {
            return Err(Error::invalid_argument(format!(
                "copy_to: the source is {} {} but the destination is {} {}: expected the same \
                 dtype and shape",
                self.dtype(),
                shape_str(self.shape()),
                dst.dtype(),
                shape_str(dst.shape())
            )));
        }
        if !dst.desc().is_contiguous() {
            return Err(Error::invalid_argument(format!(
                "copy_to: the destination {} {} has strides {:?}: expected a contiguous tensor \
                 (copy into a contiguous one, then rearrange it on its device)",
                dst.dtype(),
                shape_str(dst.shape()),
                dst.strides()
            )));
        }
        let bytes = self.desc().host_bytes()?;
        let dst_view = dst.view().sub(dst.desc().byte_offset()?, bytes)?;
        let src_view = if self.desc().is_contiguous() {
            Some(self.view().sub(self.desc().byte_offset()?, bytes)?)
        } else {
            None
        };
        if let Some(src) = &src_view {
            if src.overlaps(&dst_view) {
                return Err(Error::invalid_argument(
                    "copy_to: the source and the destination share memory: expected distinct \
                     tensors",
                ));
            }
        }
        if bytes == 0 {
            return Ok(());
        }
        match src_view {
            Some(src) if matches!(Path::between(from, to), Path::Device | Path::Peer) => {
                // On the device (or over the peer path), ordered both ways without blocking.
                to.wait_event(&from.record_event()?)?;
                if Path::between(from, to) == Path::Device {
                    to.copy(&src, &dst_view)?;
                } else {
                    to.copy_peer(&src, &dst_view)?;
                }
                from.wait_event(&to.record_event()?)
            }
            Some(src) => staged(from, &src, to, &dst_view),
            None => {
                // Gather the strided source on the host, then write it in chunks.
                let host = self.to_bytes(from)?;
                for (k, chunk) in host.chunks(CHUNK_BYTES).enumerate() {
                    to.write(&dst_view.sub(k * CHUNK_BYTES, chunk.len())?, chunk)?;
                }
                Ok(())
            }
        }
    }
}

/// How [`Tensor::copy_to`] moves a contiguous tensor from `from`'s device to `to`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// One device object: a copy on the device, ordered by an event each way.
    Device,
    /// Two devices of one backend with a direct path ([`Device::copies_from`]): a peer copy on
    /// the destination queue, ordered by an event each way.
    Peer,
    /// Two devices, one of them host memory ([`Device::host_addressable`]): one copy, the
    /// other device reading into it or writing from it.
    Host,
    /// Two devices: through host memory, in chunks of [`CHUNK_BYTES`].
    Staged,
}

impl Path {
    /// The path between the devices of two queues.
    pub fn between(from: &dyn Queue, to: &dyn Queue) -> Path {
        let (a, b) = (from.device(), to.device());
        if same_device(&a, &b) {
            Path::Device
        } else if b.copies_from(&*a as &dyn Device) {
            Path::Peer
        } else if a.host_addressable() || b.host_addressable() {
            Path::Host
        } else {
            Path::Staged
        }
    }

    /// `device copy`, `peer copy`, `host copy` or `staged through host`.
    pub fn name(self) -> &'static str {
        match self {
            Path::Device => "device copy",
            Path::Peer => "peer copy",
            Path::Host => "host copy",
            Path::Staged => "staged through host",
        }
    }
}

/// `queue` must be a queue of `t`'s device.
fn check_queue(f: &str, which: &str, queue: &dyn Queue, t: &Tensor) -> Result<()> {
    if queue.device_id() != t.device_id() {
        return Err(Error::invalid_argument(format!(
            "{f}: `{which}` is a queue of {} but its tensor is on {}: expected a queue of the \
             tensor's device",
            queue.device_id(),
            t.device_id()
        )));
    }
    Ok(())
}

/// Copies `src` (on `from`'s device) to `dst` (on `to`'s), equal lengths, through two host
/// chunks: a reader thread fills one while this thread writes the other.
fn staged(from: &dyn Queue, src: &BufferView, to: &dyn Queue, dst: &BufferView) -> Result<()> {
    // Host-addressable memory at either end: one copy, straight between the two.
    if to.map_host(dst, &mut |d| from.read(src, d))? {
        return Ok(());
    }
    if from.map_host(src, &mut |s| to.write(dst, s))? {
        return Ok(());
    }
    let len = src.len();
    if len <= CHUNK_BYTES {
        let mut host = vec![0u8; len];
        from.read(src, &mut host)?;
        return to.write(dst, &host);
    }
    let chunks = len.div_ceil(CHUNK_BYTES);
    // Filled chunks go to the writer; emptied ones come back to the reader.
    let (full_tx, full_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(2);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(2);
    for _ in 0..2 {
        empty_tx
            .send(vec![0u8; CHUNK_BYTES])
            .map_err(|_| Error::internal("copy_to: staging channel closed"))?;
    }
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> Result<()> {
            for k in 0..chunks {
                let Ok(mut host) = empty_rx.recv() else {
                    return Ok(()); // the writer stopped on an error: it reports it
                };
                let at = k * CHUNK_BYTES;
                let n = CHUNK_BYTES.min(len - at);
                from.read(&src.sub(at, n)?, &mut host[..n])?;
                if full_tx.send((k, host)).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        let mut written = Ok(());
        for (k, host) in full_rx.iter() {
            let at = k * CHUNK_BYTES;
            let n = CHUNK_BYTES.min(len - at);
            written = dst.sub(at, n).and_then(|view| to.write(&view, &host[..n]));
            if written.is_err() {
                break;
            }
            // The reader may already have finished: a closed channel is no error.
            let _ = empty_tx.send(host);
        }
        drop(full_rx);
        drop(empty_tx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(Error::internal("copy_to: the staging reader panicked")));
        read.and(written)
    })
}
