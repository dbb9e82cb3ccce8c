//! Queues on CUDA streams, their events, and the page-locked staging of host transfers.
//!
//! Every command is enqueued on the queue's stream under the queue's lock, with a sequence
//! number. CUDA reports an asynchronous failure (a kernel that faulted) at the next call that
//! synchronises, and for the rest of the process's life in that context; the queue turns such a
//! failure into its sticky error, as does the failure of an awaited event of another device.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyaccel_hal::{
    validate, Bookkeeping, BufferView, Device, Error, ErrorCode, Event, Kernel, KernelArg,
    LaunchDims, Mark, Queue, Result,
};
use cudarc::driver::sys::{self, CUresult};

use crate::blas::BlasHandle;
use crate::device::CudaDevice;
use crate::driver::{check, cu_error, is_fatal, Context, PinnedHost, RawEvent, Stream};
use crate::program::{check_kernel, device_address, grid, pack_args};

/// Host transfers go through page-locked blocks of at most this many bytes.
pub const STAGING_BLOCK: usize = 4 << 20;
/// The smallest staging block a queue allocates.
const STAGING_MIN: usize = 256 << 10;
/// A queue keeps at most this many bytes of staging for writes in flight; beyond it, a write
/// waits for the oldest block to be free again.
const STAGING_LIMIT: usize = 64 << 20;
/// Offsets in a staging block are rounded up to this.
const STAGING_ALIGN: usize = 256;

/// One page-locked block of a queue's write staging.
struct Block {
    mem: PinnedHost,
    /// Bytes handed out so far.
    used: usize,
    /// Recorded after the last copy out of the block, once it is retired.
    fence: Option<RawEvent>,
}

/// Page-locked memory for host transfers: blocks for writes, handed out front to back and
/// reused once a fence recorded after their last copy has passed; and two blocks for reads,
/// used in turn so that one is copied out while the other fills.
#[derive(Default)]
struct Staging {
    current: Option<Block>,
    retired: VecDeque<Block>,
    free: Vec<Block>,
    /// Bytes of every write block.
    total: usize,
    read: [Option<PinnedHost>; 2],
    read_fences: [Option<RawEvent>; 2],
}

pub(crate) struct State {
    staging: Staging,
}

/// An in-order queue: a CUDA stream of one device (created non-blocking, so it never waits on
/// the legacy default stream).
///
/// - `write` copies the data into page-locked staging memory and enqueues an asynchronous copy
///   from it; it returns once the data is staged. Staging blocks are reused once the copies out
///   of them have completed; a queue holds at most 64 MiB of them, and a write waits for the
///   oldest when all are busy.
/// - `read` enqueues asynchronous copies into page-locked memory, in pieces of 4 MiB through
///   two blocks used in turn, and copies each piece out once it has arrived.
/// - `fill` is `cuMemsetD8/D16/D32Async`; a pattern at an address that is not a multiple of its
///   size gets its few unaligned bytes from one-byte memsets and the rest from a memset of the
///   rotated pattern.
/// - `launch` runs a [`crate::CudaKernel`]; see there for the arguments and
///   [`crate::CudaDevice`] for the grid.
/// - `wait_event` on an event of the same device is `cuStreamWaitEvent`; on an event of any
///   other device or backend, the calling thread waits for it before it returns.
/// - A failure that CUDA reports asynchronously comes back, with its error, at the next `read`
///   or `finish` and from the events recorded after it; commands submitted once it is known are
///   skipped until it has been reported. A kernel fault leaves the CUDA context unusable, so
///   the error is `DeviceLost` and every later command fails again.
pub struct CudaQueue {
    device: Arc<CudaDevice>,
    ctx: Arc<Context>,
    /// The queue's cuBLAS handle, made by its first native matmul; dropped before the stream.
    blas: Mutex<Option<BlasHandle>>,
    stream: Stream,
    state: Mutex<State>,
    /// Command numbers and failures (the HAL's sticky-failure rule).
    book: Bookkeeping,
}

impl CudaQueue {
    pub(crate) fn new(device: Arc<CudaDevice>) -> Result<CudaQueue> {
        let ctx = device.context().clone();
        let stream = Stream::new(ctx.clone())
            .map_err(|e| e.context(format!("create_queue on {}", device.info().id)))?;
        Ok(CudaQueue {
            device,
            ctx,
            blas: Mutex::new(None),
            stream,
            state: Mutex::new(State {
                staging: Staging::default(),
            }),
            book: Bookkeeping::new(),
        })
    }

    fn id(&self) -> &str {
        &self.device.info().id
    }

    /// The CUDA device ordinal of the queue's GPU.
    pub(crate) fn ordinal(&self) -> i32 {
        self.ctx.device()
    }

    /// Whether `m` is memory of this queue's context.
    pub(crate) fn owns(&self, m: &crate::memory::CudaMemory) -> bool {
        m.in_context(&self.ctx)
    }

    /// The queue's failure not yet reported, if any.
    pub(crate) fn unreported_failure(&self) -> Option<Error> {
        self.book.unreported()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The queue's cuBLAS handle slot.
    pub(crate) fn blas_handle(&self) -> MutexGuard<'_, Option<BlasHandle>> {
        self.blas.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The raw stream, for the device's native ops (cuBLAS) to enqueue on. Valid while the
    /// queue lives.
    pub fn raw_stream(&self) -> sys::CUstream {
        self.stream.raw()
    }

    /// Runs `enqueue` (which enqueues on the stream) as one numbered command under the lock,
    /// unless the queue has an unreported failure (then the command is skipped).
    ///
    /// An error that belongs to earlier work (the context was lost) becomes the queue's sticky
    /// error; any other error of the enqueue itself is returned, with the code `code`.
    pub(crate) fn submit(
        &self,
        what: impl FnOnce() -> String,
        code: ErrorCode,
        enqueue: impl FnOnce(&mut State, sys::CUstream) -> std::result::Result<(), CuFailure>,
    ) -> Result<()> {
        if self.book.failed() {
            return Ok(());
        }
        let mut state = self.state();
        self.ctx.bind()?;
        let seq = self.book.number();
        match enqueue(&mut state, self.stream.raw()) {
            Ok(()) => Ok(()),
            Err(CuFailure::Driver(r)) if is_fatal(r) => {
                self.book.fail(seq, cu_error(r, code, what()));
                Ok(())
            }
            Err(CuFailure::Driver(r)) => Err(cu_error(r, code, what())),
            Err(CuFailure::Other(e)) => Err(e),
        }
    }

    /// The queue's sticky error if there is one (which is then reported), else `result`.
    fn settle(&self, result: Result<()>) -> Result<()> {
        self.book.report(result)
    }

    /// Records a failure of earlier work that a wait discovered, as the command `seq`'s.
    fn record_wait_failure(&self, seq: u64, r: CUresult, what: &str) {
        self.book.fail(
            seq,
            cu_error(
                r,
                ErrorCode::LaunchFailed,
                format!("{what} on {}", self.id()),
            ),
        );
    }

    fn write_pieces(
        &self,
        state: &mut State,
        address: u64,
        data: &[u8],
    ) -> std::result::Result<(), CuFailure> {
        for (i, piece) in data.chunks(STAGING_BLOCK).enumerate() {
            let (block, offset) = self.stage(&mut state.staging, piece.len())?;
            block
                .mem
                .slice_mut(offset, piece.len())
                .copy_from_slice(piece);
            let src = block.mem.as_ptr().wrapping_add(offset);
            // SAFETY: the context is current (submit bound it); the destination lies inside a
            // live allocation (the view was bounds-checked); the source is `piece.len()` bytes
            // of page-locked memory that stays untouched until a fence after this copy passes.
            let r = unsafe {
                sys::cuMemcpyHtoDAsync_v2(
                    address + (i * STAGING_BLOCK) as u64,
                    src.cast(),
                    piece.len(),
                    self.stream.raw(),
                )
            };
            ok(r)?;
        }
        Ok(())
    }

    /// Room for `len` (at most [`STAGING_BLOCK`]) bytes in the current write block, retiring it
    /// and taking another when it is full.
    fn stage<'s>(
        &self,
        staging: &'s mut Staging,
        len: usize,
    ) -> std::result::Result<(&'s mut Block, usize), CuFailure> {
        let fits = |b: &Block| b.used.next_multiple_of(STAGING_ALIGN) + len <= b.mem.len();
        if !staging.current.as_ref().is_some_and(fits) {
            if let Some(mut full) = staging.current.take() {
                let fence = RawEvent::new(self.ctx.clone(), false).map_err(CuFailure::Other)?;
                fence.record(&self.stream).map_err(CuFailure::Driver)?;
                full.fence = Some(fence);
                staging.retired.push_back(full);
            }
            staging.current = Some(self.free_block(staging, len)?);
        }
        let block = staging
            .current
            .as_mut()
            .ok_or_else(|| CuFailure::Other(Error::internal("staging: no current block")))?;
        let offset = block.used.next_multiple_of(STAGING_ALIGN);
        block.used = offset + len;
        Ok((block, offset))
    }

    /// A write block with room for `len` bytes: a free one, one whose fence has passed, a new
    /// one while under the limit, or else the oldest one once its fence passes.
    fn free_block(
        &self,
        staging: &mut Staging,
        len: usize,
    ) -> std::result::Result<Block, CuFailure> {
        // Blocks whose copies have completed are free again.
        while let Some(front) = staging.retired.front() {
            let done = match &front.fence {
                Some(f) => f.query().map_err(CuFailure::Driver)?,
                None => true,
            };
            if !done {
                break;
            }
            if let Some(mut b) = staging.retired.pop_front() {
                b.used = 0;
                b.fence = None;
                staging.free.push(b);
            }
        }
        if let Some(i) = staging.free.iter().position(|b| b.mem.len() >= len) {
            return Ok(staging.free.swap_remove(i));
        }
        let size = len.next_power_of_two().clamp(STAGING_MIN, STAGING_BLOCK);
        if staging.total + size > STAGING_LIMIT {
            // Wait for the oldest block in flight, and drop the free ones that are too small.
            if let Some(mut oldest) = staging.retired.pop_front() {
                if let Some(f) = &oldest.fence {
                    f.synchronize().map_err(CuFailure::Driver)?;
                }
                oldest.used = 0;
                oldest.fence = None;
                if oldest.mem.len() >= len {
                    return Ok(oldest);
                }
                staging.total -= oldest.mem.len();
            }
            for b in staging.free.drain(..) {
                staging.total -= b.mem.len();
            }
        }
        let mem = PinnedHost::new(self.ctx.clone(), size).map_err(CuFailure::Other)?;
        staging.total += size;
        Ok(Block {
            mem,
            used: 0,
            fence: None,
        })
    }

    /// Reads `dst.len()` bytes at `address` into `dst` through the two read blocks, with the
    /// lock held; `seq` numbers the read. A failure of earlier work that shows while waiting is
    /// recorded (the caller then reports it) and ends the read early.
    fn read_pieces(&self, state: &mut State, seq: u64, address: u64, dst: &mut [u8]) -> Result<()> {
        let len = dst.len();
        let piece_len = len.min(STAGING_BLOCK);
        let pieces = len.div_ceil(STAGING_BLOCK);
        let staging = &mut state.staging;
        for b in 0..pieces.min(2) {
            if !matches!(&staging.read[b], Some(m) if m.len() >= piece_len) {
                staging.read[b] = None;
                let size = piece_len
                    .next_power_of_two()
                    .clamp(STAGING_MIN, STAGING_BLOCK);
                staging.read[b] = Some(PinnedHost::new(self.ctx.clone(), size)?);
            }
            if staging.read_fences[b].is_none() {
                staging.read_fences[b] = Some(RawEvent::new(self.ctx.clone(), false)?);
            }
        }
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        // Copies piece `piece` out once it has arrived; false when the wait failed (the failure
        // is then recorded, and the read's answer).
        let arrived = |staging: &Staging, piece: usize, dst: &mut [u8]| -> Result<bool> {
            let b = piece % 2;
            let (Some(fence), Some(mem)) = (&staging.read_fences[b], &staging.read[b]) else {
                return Err(Error::internal("read: a staging block is missing"));
            };
            if let Err(r) = fence.synchronize() {
                self.record_wait_failure(seq, r, "read");
                return Ok(false);
            }
            let start = piece * STAGING_BLOCK;
            let n = (len - start).min(STAGING_BLOCK);
            dst[start..start + n].copy_from_slice(mem.slice(0, n));
            Ok(true)
        };
        for piece in 0..pieces {
            if in_flight.len() == 2 {
                if let Some(p) = in_flight.pop_front() {
                    if !arrived(staging, p, dst)? {
                        return Ok(());
                    }
                }
            }
            let b = piece % 2;
            let start = piece * STAGING_BLOCK;
            let n = (len - start).min(STAGING_BLOCK);
            let (Some(fence), Some(mem)) = (&staging.read_fences[b], &staging.read[b]) else {
                return Err(Error::internal("read: staging block missing"));
            };
            // SAFETY: the context is current; the source lies inside a live allocation (the
            // view was bounds-checked); the destination is `n` bytes of a page-locked block
            // that nothing else touches until its fence, recorded next, has passed.
            let r = unsafe {
                sys::cuMemcpyDtoHAsync_v2(
                    mem.as_ptr().cast(),
                    address + start as u64,
                    n,
                    self.stream.raw(),
                )
            };
            let r = if r == CUresult::CUDA_SUCCESS {
                fence
                    .record(&self.stream)
                    .err()
                    .unwrap_or(CUresult::CUDA_SUCCESS)
            } else {
                r
            };
            if r != CUresult::CUDA_SUCCESS {
                if is_fatal(r) {
                    // Earlier work failed: that failure is the read's answer.
                    self.record_wait_failure(seq, r, "read");
                    return Ok(());
                }
                return Err(cu_error(
                    r,
                    ErrorCode::Internal,
                    format!("read on {}", self.id()),
                ));
            }
            in_flight.push_back(piece);
        }
        while let Some(p) = in_flight.pop_front() {
            if !arrived(staging, p, dst)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Enqueues the memsets of a fill at device `address` of `len` bytes.
    fn fill_pieces(
        &self,
        stream: sys::CUstream,
        address: u64,
        len: usize,
        pattern: &[u8],
    ) -> std::result::Result<(), CuFailure> {
        // A pattern of equal bytes is a one-byte fill, which has no alignment rule.
        let pattern = if pattern.iter().all(|&b| b == pattern[0]) {
            &pattern[..1]
        } else {
            pattern
        };
        let p = pattern.len() as u64;
        let (start, end) = (address, address + len as u64);
        let body_start = start.next_multiple_of(p).min(end);
        let body_len = (end - body_start) / p * p;
        let body_end = body_start + body_len;
        let byte_at = |pos: u64| pattern[((pos - start) % p) as usize];
        for range in [start..body_start, body_end..end] {
            for pos in range {
                // SAFETY: one byte inside a live allocation (the view was bounds-checked), on
                // the current context's stream.
                ok(unsafe { sys::cuMemsetD8Async(pos, byte_at(pos), 1, stream) })?;
            }
        }
        if body_len > 0 {
            let rotated: Vec<u8> = (body_start..body_start + p).map(byte_at).collect();
            let count = (body_len / p) as usize;
            // SAFETY: `count` elements of the pattern's size from `body_start`, which is a
            // multiple of that size, lie inside the view, inside a live allocation.
            let r = unsafe {
                match rotated.len() {
                    1 => sys::cuMemsetD8Async(body_start, rotated[0], count, stream),
                    2 => sys::cuMemsetD16Async(
                        body_start,
                        u16::from_le_bytes([rotated[0], rotated[1]]),
                        count,
                        stream,
                    ),
                    _ => sys::cuMemsetD32Async(
                        body_start,
                        u32::from_le_bytes([rotated[0], rotated[1], rotated[2], rotated[3]]),
                        count,
                        stream,
                    ),
                }
            };
            ok(r)?;
        }
        Ok(())
    }
}

/// Why an enqueue failed: a driver result, or an error of ours.
pub(crate) enum CuFailure {
    Driver(CUresult),
    Other(Error),
}

fn ok(r: CUresult) -> std::result::Result<(), CuFailure> {
    if r == CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(CuFailure::Driver(r))
    }
}

impl Queue for CudaQueue {
    fn device_id(&self) -> &str {
        self.id()
    }

    fn device(&self) -> Arc<dyn Device> {
        self.device.clone()
    }

    fn write(&self, dst: &BufferView, data: &[u8]) -> Result<()> {
        validate::transfer("write", dst, data.len(), self.id())?;
        let address = device_address(&self.device, "write", dst)?;
        if data.is_empty() {
            return Ok(());
        }
        self.submit(
            || format!("write of {} bytes on {}", data.len(), self.id()),
            ErrorCode::Internal,
            |state, _| self.write_pieces(state, address, data),
        )
    }

    fn read(&self, src: &BufferView, dst: &mut [u8]) -> Result<()> {
        validate::transfer("read", src, dst.len(), self.id())?;
        let address = device_address(&self.device, "read", src)?;
        let result = {
            let mut state = self.state();
            self.ctx.bind()?;
            let seq = self.book.number();
            if self.book.failed() {
                // The failure is the answer; the read does not run.
                Ok(())
            } else if dst.is_empty() {
                match self.stream.synchronize() {
                    Ok(()) => Ok(()),
                    Err(r) => {
                        self.record_wait_failure(seq, r, "read");
                        Ok(())
                    }
                }
            } else {
                self.read_pieces(&mut state, seq, address, dst)
            }
        };
        match self.settle(Ok(())) {
            Err(e) => Err(e),
            Ok(()) => result,
        }
    }

    fn copy(&self, src: &BufferView, dst: &BufferView) -> Result<()> {
        validate::copy(src, dst, self.id())?;
        let from = device_address(&self.device, "copy src", src)?;
        let to = device_address(&self.device, "copy dst", dst)?;
        if src.is_empty() {
            return Ok(());
        }
        let len = src.len();
        self.submit(
            || format!("copy of {len} bytes on {}", self.id()),
            ErrorCode::LaunchFailed,
            |_, stream| {
                // SAFETY: both ranges lie inside live allocations of this context (the views
                // were bounds-checked) and do not overlap (validated).
                ok(unsafe { sys::cuMemcpyDtoDAsync_v2(to, from, len, stream) })
            },
        )
    }

    fn copy_peer(&self, src: &BufferView, dst: &BufferView) -> Result<()> {
        let to = device_address(&self.device, "copy_peer dst", dst)?;
        let peer = src
            .buffer()
            .downcast::<crate::memory::CudaMemory>()
            .filter(|m| !m.in_context(&self.ctx))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "copy_peer src: a buffer of {}: expected memory of another CUDA device",
                    src.buffer().device_id()
                ))
            })?;
        if src.len() != dst.len() {
            return Err(Error::invalid_argument(format!(
                "copy_peer: the source has {} bytes but the destination {}: expected equal lengths",
                src.len(),
                dst.len()
            )));
        }
        if !crate::device::can_access_peer(self.ctx.device(), peer.context().device()) {
            return Err(Error::unsupported(format!(
                "copy_peer: {} cannot reach {}'s memory directly; copy through the host \
                 (Tensor::copy_to does)",
                self.id(),
                src.buffer().device_id()
            )));
        }
        if src.is_empty() {
            return Ok(());
        }
        let from = peer.device_ptr() + src.offset() as u64;
        let (len, dst_ctx, src_ctx) = (src.len(), self.ctx.raw(), peer.context().raw());
        self.submit(
            || format!("peer copy of {len} bytes to {}", self.id()),
            ErrorCode::LaunchFailed,
            |_, stream| {
                // Peer access once per pair of contexts; enabled already is fine.
                // SAFETY: this queue's context is current (submit binds it); a live context.
                let r = unsafe { sys::cuCtxEnablePeerAccess(src_ctx, 0) };
                if r != sys::CUresult::CUDA_SUCCESS
                    && r != sys::CUresult::CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED
                {
                    return ok(r);
                }
                // SAFETY: both ranges lie inside live allocations of their contexts (the views
                // were bounds-checked); the copy is ordered on this queue's stream.
                ok(unsafe { sys::cuMemcpyPeerAsync(to, dst_ctx, from, src_ctx, len, stream) })
            },
        )
    }

    fn fill(&self, dst: &BufferView, pattern: &[u8]) -> Result<()> {
        validate::fill(dst, pattern, self.id())?;
        let address = device_address(&self.device, "fill", dst)?;
        if dst.is_empty() {
            return Ok(());
        }
        let len = dst.len();
        self.submit(
            || format!("fill of {len} bytes on {}", self.id()),
            ErrorCode::LaunchFailed,
            |_, stream| self.fill_pieces(stream, address, len, pattern),
        )
    }

    fn submit_launch(
        &self,
        kernel: &Arc<dyn Kernel>,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<()> {
        let own = check_kernel(&self.device, kernel)?;
        let mut packed = pack_args(&self.device, own, args)?;
        let Some((block, grid)) = grid(&self.device, own, &dims)? else {
            return Ok(());
        };
        self.submit(
            || {
                format!(
                    "launch `{}` on {} (grid {grid:?}, block {block:?})",
                    own.name(),
                    self.id()
                )
            },
            ErrorCode::LaunchFailed,
            |_, stream| {
                // SAFETY: the function is live and of this context; `packed` holds one slot
                // per parameter (checked against the kernel where the driver tells the
                // parameters) and lives across the call, which copies the arguments; buffer
                // arguments are addresses inside live allocations of this context.
                ok(unsafe {
                    sys::cuLaunchKernel(
                        own.function(),
                        grid[0],
                        grid[1],
                        grid[2],
                        block[0],
                        block[1],
                        block[2],
                        0,
                        stream,
                        packed.as_mut_ptr(),
                        std::ptr::null_mut(),
                    )
                })
            },
        )
    }

    fn record_event(&self) -> Result<Arc<dyn Event>> {
        let raw = RawEvent::new(self.ctx.clone(), true)?;
        let _ordered = self.state();
        self.ctx.bind()?;
        let mark = self.book.mark();
        if let Err(r) = raw.record(&self.stream) {
            if is_fatal(r) {
                self.record_wait_failure(mark.seq(), r, "record_event");
            } else {
                return Err(cu_error(
                    r,
                    ErrorCode::Internal,
                    format!("record_event on {}", self.id()),
                ));
            }
        }
        Ok(Arc::new(CudaEvent {
            raw,
            device_id: self.device.id_arc().clone(),
            mark,
        }))
    }

    fn wait_event(&self, event: &Arc<dyn Event>) -> Result<()> {
        if let Some(own) = event
            .as_any()
            .downcast_ref::<CudaEvent>()
            .filter(|e| e.raw.context().raw() == self.ctx.raw())
        {
            // A failure that the other queue knows of passes to this one.
            if own.mark.failure().is_some() {
                let seq = self.reserve_seq();
                self.book.wait_foreign(seq, &**event);
                return Ok(());
            }
            let raw = own.raw.raw();
            return self.submit(
                || format!("wait_event on {}", self.id()),
                ErrorCode::Internal,
                |_, stream| {
                    // SAFETY: the event and the stream are live and of the current context.
                    ok(unsafe { sys::cuStreamWaitEvent(stream, raw, 0) })
                },
            );
        }
        // An event of another device or backend: wait for it here.
        let seq = self.reserve_seq();
        self.book.wait_foreign(seq, &**event);
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        let seq = self.reserve_seq();
        if let Err(r) = self.stream.synchronize() {
            self.record_wait_failure(seq, r, "finish");
        }
        self.settle(Ok(()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl CudaQueue {
    fn reserve_seq(&self) -> u64 {
        let _ordered = self.state();
        self.book.number()
    }
}

impl Drop for CudaQueue {
    fn drop(&mut self) {
        // Staging memory may be read by copies in flight: let them finish before it is freed.
        let _ = self.stream.synchronize();
    }
}

/// A point in a queue's stream: a CUDA event with timing.
pub struct CudaEvent {
    raw: RawEvent,
    device_id: Arc<str>,
    /// The failures of the queue's commands before it come back from `wait`.
    mark: Mark,
}

impl CudaEvent {
    /// The id of the device whose queue recorded the event.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }
}

impl Event for CudaEvent {
    fn wait(&self) -> Result<()> {
        if let Err(r) = self.raw.synchronize() {
            return Err(cu_error(
                r,
                ErrorCode::LaunchFailed,
                format!("the work before an event on {} failed", self.device_id),
            ));
        }
        match self.mark.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn is_done(&self) -> bool {
        // A failed event counts as done: waiting on it returns at once, with the error.
        self.raw.query().unwrap_or(true)
    }

    fn elapsed_since(&self, start: &dyn Event) -> Result<Duration> {
        let start = start
            .as_any()
            .downcast_ref::<CudaEvent>()
            .filter(|s| s.raw.context().raw() == self.raw.context().raw())
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "elapsed_since: start event is not from a queue of {}; both events must be",
                    self.device_id
                ))
            })?;
        if !(start.is_done() && self.is_done()) {
            return Err(Error::invalid_argument(
                "elapsed_since: both events must have completed; wait on them first",
            ));
        }
        self.raw.context().bind()?;
        let mut ms = 0f32;
        // SAFETY: both events are live, of the current context, recorded and completed.
        let r = unsafe { sys::cuEventElapsedTime(&mut ms, start.raw.raw(), self.raw.raw()) };
        check(r, ErrorCode::Internal, || {
            format!("elapsed_since on {}: cuEventElapsedTime", self.device_id)
        })?;
        Ok(Duration::from_secs_f64((ms.max(0.0) as f64) / 1e3))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
