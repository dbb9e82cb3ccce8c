//! In-order queues, each run by its own thread, and events.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyaccel_hal::{
    run_serial, validate, Bookkeeping, Buffer, BufferView, Device, Error, Event, HostArg,
    HostKernel, HostLaunch, HostMem, Kernel, KernelArg, LaunchDims, Mark, Queue, Result,
};

use crate::device::{CpuDevice, CpuKernel};
use crate::memory::CpuMemory;

/// A completion point of a CPU queue, with the host time at which it completed.
pub struct CpuEvent {
    state: Mutex<Option<(Result<()>, Instant)>>,
    done: Condvar,
}

impl CpuEvent {
    fn new() -> Arc<CpuEvent> {
        Arc::new(CpuEvent {
            state: Mutex::new(None),
            done: Condvar::new(),
        })
    }

    fn complete(&self, result: Result<()>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = Some((result, Instant::now()));
        self.done.notify_all();
    }

    fn completed(&self) -> Option<(Result<()>, Instant)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Event for CpuEvent {
    fn wait(&self) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.is_none() {
            state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.as_ref().map(|(r, _)| r.clone()).unwrap_or(Ok(()))
    }

    fn is_done(&self) -> bool {
        self.completed().is_some()
    }

    fn elapsed_since(&self, start: &dyn Event) -> Result<Duration> {
        let start = start.as_any().downcast_ref::<CpuEvent>().ok_or_else(|| {
            Error::invalid_argument(
                "elapsed_since: start event is not from a CPU queue; both events must be",
            )
        })?;
        let (Some((_, t0)), Some((_, t1))) = (start.completed(), self.completed()) else {
            return Err(Error::invalid_argument(
                "elapsed_since: both events must have completed; wait on them first",
            ));
        };
        Ok(t1.saturating_duration_since(t0))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The work (in element operations, as [`HostLaunch::dims`] estimates it, or bytes moved) below
/// which a command runs at once on the submitting thread when the queue is idle, and a kernel
/// runs serially rather than in the worker pool. Measured on the reference machine (2 cores;
/// BENCHMARKS.md): going through the queue's thread and the pool costs 25-50 us; serially, `exp`
/// stays faster up to between 2^16 and 2^18 elements, `add` and matmul beyond 2^18 of work.
pub const INLINE_WORK: u64 = 1 << 18;

/// A launch's arguments, inline up to six (every op of the catalog but the widest): a launch
/// allocates nothing for them.
type LaunchArgs<T> = smallvec::SmallVec<[T; 6]>;

// A launch carries its arguments inline: a command mostly runs at once, from the caller's
// frame, and a queued one costs its size in the queue rather than two heap allocations.
#[allow(clippy::large_enum_variant)]
enum Command {
    Write {
        dst: HostMem,
        /// The bytes to write: the caller's own slice when the write runs at once, else
        /// `_data`, a copy owned by the command.
        src: HostMem,
        _data: Vec<u8>,
        _keep: Buffer,
    },
    Read {
        src: HostMem,
        dst: HostMem,
        _keep: Buffer,
        done: Arc<CpuEvent>,
    },
    Copy {
        src: HostMem,
        dst: HostMem,
        _keep: (Buffer, Buffer),
    },
    Fill {
        dst: HostMem,
        pattern: Vec<u8>,
        _keep: Buffer,
    },
    Launch {
        kernel: HostKernel,
        args: LaunchArgs<HostArg>,
        dims: LaunchDims,
        _keep: LaunchArgs<Buffer>,
    },
    Signal(Arc<CpuEvent>, Mark),
    Wait(Arc<dyn Event>),
}

/// An in-order queue of the CPU device. A small command submitted while the queue is idle runs
/// at once on the submitting thread; other commands run in order on the queue's own thread.
/// Host kernels above [`INLINE_WORK`] run inside the device's worker pool, smaller ones serially.
pub struct CpuQueue {
    device: Arc<CpuDevice>,
    sender: Mutex<Sender<(u64, Command)>>,
    /// Commands sent to the queue's thread and not yet finished by it.
    pending: Arc<AtomicUsize>,
    book: Arc<Bookkeeping>,
}

fn resolve(view: &BufferView) -> Result<HostMem> {
    let mem = view.buffer().downcast::<CpuMemory>().ok_or_else(|| {
        Error::invalid_argument(format!(
            "buffer of device {} is not CPU memory",
            view.buffer().device_id()
        ))
    })?;
    // SAFETY: the view is bounds-checked against the buffer (BufferView's invariant), and the
    // command that uses the pointer holds a clone of the buffer, so the memory outlives it.
    Ok(unsafe { HostMem::new(mem.as_ptr().add(view.offset()), view.len()) })
}

/// Runs command `seq` on the queue's thread; while a failure waits to be reported, commands
/// are skipped (a read still completes, and its caller reports the failure).
fn run(seq: u64, command: Command, book: &Bookkeeping, pool: &rayon::ThreadPool) {
    let failed = book.failed();
    let result = match command {
        Command::Signal(event, mark) => {
            event.complete(mark.failure().map_or(Ok(()), Err));
            return;
        }
        Command::Read {
            src,
            dst,
            done,
            _keep,
        } => {
            if !failed {
                // SAFETY: src is a live view of CPU memory; dst is the caller's slice, which
                // stays borrowed until `done` completes; they cannot overlap (one is a &mut).
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_ptr(), src.len()) };
            }
            // Release the buffer before waking the reader, so that what the reader observes
            // next (e.g. the live-allocation count) no longer includes this command's reference.
            drop(_keep);
            done.complete(Ok(()));
            return;
        }
        _ if failed => return,
        Command::Write { dst, src, .. } => {
            // SAFETY: dst is a live, bounds-checked view and `src` (the caller's slice while it
            // waits, or the command's own copy) has its length.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_ptr(), src.len()) };
            Ok(())
        }
        Command::Copy { src, dst, .. } => {
            // SAFETY: both views are live and bounds-checked; overlap was rejected at submission.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_ptr(), src.len()) };
            Ok(())
        }
        Command::Fill { dst, pattern, .. } => {
            // SAFETY: dst is a live, bounds-checked view; no reference to it exists elsewhere
            // while the queue thread runs this command.
            let bytes = unsafe { std::slice::from_raw_parts_mut(dst.as_ptr(), dst.len()) };
            for chunk in bytes.chunks_exact_mut(pattern.len()) {
                chunk.copy_from_slice(&pattern);
            }
            Ok(())
        }
        Command::Launch {
            kernel, args, dims, ..
        } => {
            let launch = HostLaunch { args: &args, dims };
            let body = || catch_unwind(AssertUnwindSafe(|| kernel.run(&launch)));
            let ran = if dims.global[0] < INLINE_WORK {
                run_serial(body)
            } else {
                pool.install(body)
            };
            ran.unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(Error::launch_failed(format!(
                    "host kernel `{}` panicked: {what}",
                    kernel.name()
                )))
            })
        }
        Command::Wait(event) => {
            book.wait_foreign(seq, &*event);
            Ok(())
        }
    };
    if let Err(e) = result {
        book.fail(seq, e);
    }
}

/// The work of moving `bytes` bytes, in the units of [`INLINE_WORK`] (four bytes an element).
fn moved(bytes: usize) -> u64 {
    (bytes / 4) as u64
}

impl CpuQueue {
    pub(crate) fn new(device: Arc<CpuDevice>) -> Result<CpuQueue> {
        let (sender, receiver) = channel::<(u64, Command)>();
        let book = Arc::new(Bookkeeping::new());
        let pool = device.pool().clone();
        let thread_book = book.clone();
        let pending = Arc::new(AtomicUsize::new(0));
        let thread_pending = pending.clone();
        std::thread::Builder::new()
            .name(format!("anyaccel-{}-queue", device.info().id))
            .spawn(move || {
                // Ends when every sender is gone, after running what was queued.
                for (seq, command) in receiver {
                    run(seq, command, &thread_book, &pool);
                    // Release: what the command wrote is visible to a submitter that sees the
                    // count drop (and may then run its own command at once).
                    thread_pending.fetch_sub(1, Ordering::Release);
                }
            })
            .map_err(|e| {
                Error::out_of_memory(format!("create_queue: cannot start the queue thread: {e}"))
            })?;
        Ok(CpuQueue {
            device,
            sender: Mutex::new(sender),
            pending,
            book,
        })
    }

    /// Submits one command (see [`CpuQueue::send`]); `command` is told whether it runs at once.
    fn submit(&self, work: u64, command: impl FnOnce(bool) -> Command) -> Result<()> {
        self.send(work, |book, now| (book.number(), command(now)))
    }

    /// Runs or sends what `make` builds from the bookkeeping, under the sender's lock, so that
    /// numbers and marks follow the order in which commands run. When the queue's thread has
    /// nothing left to do and `work` is below [`INLINE_WORK`], the command runs at once on this
    /// thread (`make` is told so, and may then borrow the caller's memory); otherwise it goes to
    /// the queue's thread.
    fn send(
        &self,
        work: u64,
        make: impl FnOnce(&Bookkeeping, bool) -> (u64, Command),
    ) -> Result<()> {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        // Acquire: pairs with the queue thread's release, so its results are visible here.
        if work < INLINE_WORK && self.pending.load(Ordering::Acquire) == 0 {
            let (seq, command) = make(&self.book, true);
            run(seq, command, &self.book, self.device.pool());
            return Ok(());
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        sender.send(make(&self.book, false)).map_err(|_| {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            Error::device_lost(format!(
                "{}: the queue thread has stopped",
                self.device.info().id
            ))
        })
    }

    fn id(&self) -> &str {
        &self.device.info().id
    }

    fn signal(&self) -> Result<Arc<CpuEvent>> {
        let event = CpuEvent::new();
        self.send(0, |book, _| {
            let mark = book.mark();
            (mark.seq(), Command::Signal(event.clone(), mark))
        })?;
        Ok(event)
    }
}

impl Queue for CpuQueue {
    fn device_id(&self) -> &str {
        self.id()
    }

    fn device(&self) -> Arc<dyn Device> {
        self.device.clone()
    }

    fn write(&self, dst: &BufferView, data: &[u8]) -> Result<()> {
        validate::transfer("write", dst, data.len(), self.id())?;
        if data.is_empty() {
            return Ok(());
        }
        let dst_mem = resolve(dst)?;
        // A write copies the caller's bytes before it returns in any case: on an idle queue it
        // copies them straight into the buffer, whatever their size (one copy, not two).
        self.submit(0, |now| {
            let owned = if now { Vec::new() } else { data.to_vec() };
            let bytes = if now { data } else { &owned };
            // SAFETY: the bytes are the caller's slice, borrowed for this call, in which a
            // command that runs at once finishes; or the command's own copy, which it holds.
            // The command only reads through the pointer.
            let src = unsafe { HostMem::new(bytes.as_ptr().cast_mut(), bytes.len()) };
            Command::Write {
                dst: dst_mem,
                src,
                _data: owned,
                _keep: dst.buffer().clone(),
            }
        })
    }

    fn read(&self, src: &BufferView, dst: &mut [u8]) -> Result<()> {
        validate::transfer("read", src, dst.len(), self.id())?;
        let done = CpuEvent::new();
        // SAFETY: `dst` is an exclusive borrow that outlives this call, and this call waits for
        // `done`, so the queue thread's write into it happens while the borrow is held.
        let dst_mem = unsafe { HostMem::new(dst.as_mut_ptr(), dst.len()) };
        let src_mem = resolve(src)?;
        // The caller waits for the read in any case: when the queue is idle it copies at once.
        self.submit(0, |_| Command::Read {
            src: src_mem,
            dst: dst_mem,
            _keep: src.buffer().clone(),
            done: done.clone(),
        })?;
        let result = done.wait();
        self.book.report(result)
    }

    fn copy(&self, src: &BufferView, dst: &BufferView) -> Result<()> {
        validate::copy(src, dst, self.id())?;
        if src.is_empty() {
            return Ok(());
        }
        let (src_mem, dst_mem) = (resolve(src)?, resolve(dst)?);
        self.submit(moved(src.len()), |_| Command::Copy {
            src: src_mem,
            dst: dst_mem,
            _keep: (src.buffer().clone(), dst.buffer().clone()),
        })
    }

    fn fill(&self, dst: &BufferView, pattern: &[u8]) -> Result<()> {
        validate::fill(dst, pattern, self.id())?;
        if dst.is_empty() {
            return Ok(());
        }
        let dst_mem = resolve(dst)?;
        self.submit(moved(dst.len()), |_| Command::Fill {
            dst: dst_mem,
            pattern: pattern.to_vec(),
            _keep: dst.buffer().clone(),
        })
    }

    fn submit_launch(
        &self,
        kernel: &Arc<dyn Kernel>,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<()> {
        let cpu_kernel = validate::kernel_as::<CpuKernel>(kernel, "a CPU kernel")?;
        let mut host_args = LaunchArgs::new();
        let mut keep = LaunchArgs::new();
        for arg in args {
            match arg {
                KernelArg::Buffer(view) => {
                    host_args.push(HostArg::Mem(resolve(view)?));
                    keep.push(view.buffer().clone());
                }
                KernelArg::Bytes(bytes) => host_args.push(HostArg::Bytes(bytes.clone())),
            }
        }
        self.submit(dims.global[0], |_| Command::Launch {
            kernel: cpu_kernel.host_kernel().clone(),
            args: host_args,
            dims,
            _keep: keep,
        })
    }

    fn record_event(&self) -> Result<Arc<dyn Event>> {
        Ok(self.signal()?)
    }

    fn wait_event(&self, event: &Arc<dyn Event>) -> Result<()> {
        // Waiting would block the caller: unless the event has completed, the queue's thread
        // waits.
        let work = if event.is_done() { 0 } else { u64::MAX };
        self.submit(work, |_| Command::Wait(event.clone()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn finish(&self) -> Result<()> {
        let event = self.signal()?;
        let _ = event.wait();
        self.book.report(Ok(()))
    }

    fn map_host(
        &self,
        view: &BufferView,
        f: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<bool> {
        validate::on_device("map_host", view, self.id())?;
        let mem = resolve(view)?;
        self.finish()?;
        // Hold the sender: no command of this queue starts until `f` returns. A command another
        // thread sent between `finish` and here runs first.
        let _sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        while self.pending.load(Ordering::Acquire) != 0 {
            std::thread::yield_now();
        }
        self.book.report(Ok(()))?;
        // SAFETY: the range lies inside the buffer (BufferView's invariant), which `view` keeps
        // alive for this call; no command of this queue runs while `f` has the bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(mem.as_ptr(), mem.len()) };
        f(bytes)?;
        Ok(true)
    }
}
