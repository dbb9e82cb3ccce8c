//! In-order queues, each run by its own thread, and events.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyaccel_hal::{
    validate, Bookkeeping, Buffer, BufferView, Device, Error, Event, HostArg, HostKernel,
    HostLaunch, HostMem, Kernel, KernelArg, LaunchDims, Mark, Queue, Result,
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

enum Command {
    Write {
        dst: HostMem,
        data: Vec<u8>,
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
        args: Vec<HostArg>,
        dims: LaunchDims,
        _keep: Vec<Buffer>,
    },
    Signal(Arc<CpuEvent>, Mark),
    Wait(Arc<dyn Event>),
}

/// An in-order queue of the CPU device. Commands run on the queue's own thread; host kernels run
/// inside the device's worker pool.
pub struct CpuQueue {
    device: Arc<CpuDevice>,
    sender: Mutex<Sender<(u64, Command)>>,
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
        Command::Write { dst, data, .. } => {
            // SAFETY: dst is a live, bounds-checked view and `data` has its length.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst.as_ptr(), data.len()) };
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
            pool.install(|| catch_unwind(AssertUnwindSafe(|| kernel.run(&launch))))
                .unwrap_or_else(|panic| {
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

impl CpuQueue {
    pub(crate) fn new(device: Arc<CpuDevice>) -> Result<CpuQueue> {
        let (sender, receiver) = channel::<(u64, Command)>();
        let book = Arc::new(Bookkeeping::new());
        let pool = device.pool().clone();
        let thread_book = book.clone();
        std::thread::Builder::new()
            .name(format!("anyaccel-{}-queue", device.info().id))
            .spawn(move || {
                // Ends when every sender is gone, after running what was queued.
                for (seq, command) in receiver {
                    run(seq, command, &thread_book, &pool);
                }
            })
            .map_err(|e| {
                Error::out_of_memory(format!("create_queue: cannot start the queue thread: {e}"))
            })?;
        Ok(CpuQueue {
            device,
            sender: Mutex::new(sender),
            book,
        })
    }

    /// Sends one command to the queue's thread, numbered under the sender's lock so that
    /// numbers follow the order in which the thread runs the commands.
    fn submit(&self, command: Command) -> Result<()> {
        self.send(|book| (book.number(), command))
    }

    /// Sends what `make` builds from the bookkeeping, under the sender's lock, so that numbers
    /// and marks follow the order in which the thread runs the commands.
    fn send(&self, make: impl FnOnce(&Bookkeeping) -> (u64, Command)) -> Result<()> {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        sender.send(make(&self.book)).map_err(|_| {
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
        self.send(|book| {
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
        self.submit(Command::Write {
            dst: resolve(dst)?,
            data: data.to_vec(),
            _keep: dst.buffer().clone(),
        })
    }

    fn read(&self, src: &BufferView, dst: &mut [u8]) -> Result<()> {
        validate::transfer("read", src, dst.len(), self.id())?;
        let done = CpuEvent::new();
        // SAFETY: `dst` is an exclusive borrow that outlives this call, and this call waits for
        // `done`, so the queue thread's write into it happens while the borrow is held.
        let dst_mem = unsafe { HostMem::new(dst.as_mut_ptr(), dst.len()) };
        self.submit(Command::Read {
            src: resolve(src)?,
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
        self.submit(Command::Copy {
            src: resolve(src)?,
            dst: resolve(dst)?,
            _keep: (src.buffer().clone(), dst.buffer().clone()),
        })
    }

    fn fill(&self, dst: &BufferView, pattern: &[u8]) -> Result<()> {
        validate::fill(dst, pattern, self.id())?;
        if dst.is_empty() {
            return Ok(());
        }
        self.submit(Command::Fill {
            dst: resolve(dst)?,
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
        let mut host_args = Vec::with_capacity(args.len());
        let mut keep = Vec::new();
        for arg in args {
            match arg {
                KernelArg::Buffer(view) => {
                    host_args.push(HostArg::Mem(resolve(view)?));
                    keep.push(view.buffer().clone());
                }
                KernelArg::Bytes(bytes) => host_args.push(HostArg::Bytes(bytes.clone())),
            }
        }
        self.submit(Command::Launch {
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
        self.submit(Command::Wait(event.clone()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn finish(&self) -> Result<()> {
        let event = self.signal()?;
        let _ = event.wait();
        self.book.report(Ok(()))
    }
}
