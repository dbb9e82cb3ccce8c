//! Collectives across processes and machines over MPI: [`MpiGroup`], one rank per process, each
//! rank's tensors on its own device (any backend).
//!
//! MPI is loaded at run time, as every vendor runtime is: `libmpi.so.40` (Open MPI, from the
//! distribution's `libopenmpi3`), or the library that `ANYACCEL_MPI_LIB` names. A build needs
//! no MPI; a machine without it gets an `Unavailable` error from [`Mpi::init`] naming the
//! loader's reason. The handles (`MPI_COMM_WORLD`, `MPI_BYTE`, ...) are Open MPI's: MPICH's
//! ABI is not supported yet.
//!
//! The collectives are those of [`DeviceGroup`](crate::hal::DeviceGroup), with the same
//! semantics and the same bits: a reduction combines the ranks in rank order (floats in f64
//! rounded once, integers wrapping), so every rank receives identical output, on every run. It
//! is computed as a reduce-scatter and an all-gather: each rank receives one part of every
//! rank's data (`MPI_Alltoall`), reduces its part in rank order, and the parts are gathered
//! (`MPI_Allgather`); each rank sends and receives `2 (n - 1) / n` of the data, as a ring
//! all-reduce does. Only bytes cross MPI; tensors are staged through host memory in chunks
//! (the CPU device's are reduced in place, [`Queue::map_host`]).
//!
//! Before each collective the ranks exchange a small description of it (the collective, dtype,
//! element counts, op, root) and every rank returns the same `InvalidArgument` error when they
//! disagree or one rank's arguments are bad, instead of deadlocking or letting MPI abort the
//! job. MPI errors come back as errors (`MPI_ERRORS_RETURN`), with MPI's message.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::{Arc, Mutex, OnceLock};

use anyaccel_hal::group::{check_reducible, output_elements, rank_view, reduce};
use anyaccel_hal::transfer::CHUNK_BYTES;
use anyaccel_hal::{shape_str, BufferView, DType, Error, Queue, ReduceOp, Result, Tensor};
use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

/// The environment variable that names the MPI library to load.
pub const MPI_LIB_ENV: &str = "ANYACCEL_MPI_LIB";

type Handle = *mut c_void;

/// `MPI_Alltoall` and `MPI_Allgather`: (send, count, type, recv, count, type, comm).
type Exchange =
    unsafe extern "C" fn(*const c_void, c_int, Handle, *mut c_void, c_int, Handle, Handle) -> c_int;

/// MPI's entry points and Open MPI's predefined handles.
struct Api {
    _lib: Library,
    init_thread: unsafe extern "C" fn(*mut c_int, *mut c_void, c_int, *mut c_int) -> c_int,
    initialized: unsafe extern "C" fn(*mut c_int) -> c_int,
    finalize: unsafe extern "C" fn() -> c_int,
    comm_rank: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    comm_size: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    set_errhandler: unsafe extern "C" fn(Handle, Handle) -> c_int,
    error_string: unsafe extern "C" fn(c_int, *mut c_char, *mut c_int) -> c_int,
    alltoall: Exchange,
    allgather: Exchange,
    bcast: unsafe extern "C" fn(*mut c_void, c_int, Handle, c_int, Handle) -> c_int,
    barrier: unsafe extern "C" fn(Handle) -> c_int,
    allreduce:
        unsafe extern "C" fn(*const c_void, *mut c_void, c_int, Handle, Handle, Handle) -> c_int,
    comm_world: Handle,
    byte: Handle,
    float: Handle,
    op_sum: Handle,
    errors_return: Handle,
}

// SAFETY: the function pointers and Open MPI's predefined handles are process-wide constants;
// every call goes through `Mpi::call`, one at a time (MPI_THREAD_SERIALIZED).
unsafe impl Send for Api {}
// SAFETY: as above.
unsafe impl Sync for Api {}

/// `MPI_THREAD_SERIALIZED` (Open MPI's value): any thread may call MPI, one at a time.
const THREAD_SERIALIZED: c_int = 2;

impl Api {
    fn load() -> Result<Api> {
        let name = std::env::var(MPI_LIB_ENV).unwrap_or_else(|_| "libmpi.so.40".into());
        let unavailable = |why: String| Error::unavailable(format!("MPI: {why}"));
        // RTLD_GLOBAL: Open MPI's components, loaded by MPI_Init, resolve symbols of libmpi.
        // SAFETY: loading a library runs its initialisers; libmpi's are sound.
        let lib = unsafe { Library::open(Some(&name), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| {
            unavailable(format!(
                "cannot load {name}: {e} (install libopenmpi3, or set {MPI_LIB_ENV})"
            ))
        })?;
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the symbol has the type of MPI's C prototype (MPI 3.1).
                *unsafe { lib.get($name) }.map_err(|e| {
                    unavailable(format!(
                        "{name} has no {}: {e}",
                        String::from_utf8_lossy(&$name[..$name.len() - 1])
                    ))
                })?
            };
        }
        macro_rules! handle {
            ($name:literal) => {{
                // SAFETY: the address of an Open MPI predefined object.
                let p: *mut c_void = *unsafe { lib.get::<*mut c_void>($name) }.map_err(|e| {
                    unavailable(format!(
                        "{name} has no {} ({e}): it is not Open MPI, whose ABI anyaccel uses",
                        String::from_utf8_lossy(&$name[..$name.len() - 1])
                    ))
                })?;
                p
            }};
        }
        // `lib.get::<*mut c_void>` gives the symbol's address itself, which is the handle.
        let api = Api {
            init_thread: sym!(b"MPI_Init_thread\0"),
            initialized: sym!(b"MPI_Initialized\0"),
            finalize: sym!(b"MPI_Finalize\0"),
            comm_rank: sym!(b"MPI_Comm_rank\0"),
            comm_size: sym!(b"MPI_Comm_size\0"),
            set_errhandler: sym!(b"MPI_Comm_set_errhandler\0"),
            error_string: sym!(b"MPI_Error_string\0"),
            alltoall: sym!(b"MPI_Alltoall\0"),
            allgather: sym!(b"MPI_Allgather\0"),
            bcast: sym!(b"MPI_Bcast\0"),
            barrier: sym!(b"MPI_Barrier\0"),
            allreduce: sym!(b"MPI_Allreduce\0"),
            comm_world: handle!(b"ompi_mpi_comm_world\0"),
            byte: handle!(b"ompi_mpi_byte\0"),
            float: handle!(b"ompi_mpi_float\0"),
            op_sum: handle!(b"ompi_mpi_op_sum\0"),
            errors_return: handle!(b"ompi_mpi_errors_return\0"),
            _lib: lib,
        };
        Ok(api)
    }
}

/// MPI, initialised once per process: [`Mpi::init`].
pub struct Mpi {
    api: Api,
    rank: usize,
    size: usize,
    /// Serialises calls; `true` once finalized.
    finalized: Mutex<bool>,
}

static MPI: OnceLock<std::result::Result<Arc<Mpi>, Error>> = OnceLock::new();

impl Mpi {
    /// Loads MPI and initialises it (`MPI_Init_thread`, serialized), once per process; later
    /// calls return the same `Mpi`. Call [`Mpi::finalize`] before the process exits.
    pub fn init() -> Result<Arc<Mpi>> {
        MPI.get_or_init(|| Mpi::start().map(Arc::new)).clone()
    }

    fn start() -> Result<Mpi> {
        let api = Api::load()?;
        let mut flag: c_int = 0;
        // SAFETY: a valid out-pointer.
        unsafe { (api.initialized)(&mut flag) };
        if flag == 0 {
            let mut provided: c_int = 0;
            // SAFETY: NULL argc/argv are allowed; a valid out-pointer.
            let rc = unsafe {
                (api.init_thread)(
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    THREAD_SERIALIZED,
                    &mut provided,
                )
            };
            if rc != 0 {
                return Err(Error::unavailable(format!(
                    "MPI_Init_thread failed with code {rc}"
                )));
            }
            if provided < THREAD_SERIALIZED {
                return Err(Error::unavailable(format!(
                    "MPI_Init_thread provides thread level {provided}: expected \
                     MPI_THREAD_SERIALIZED ({THREAD_SERIALIZED}) or more"
                )));
            }
        }
        let (mut rank, mut size): (c_int, c_int) = (0, 0);
        // SAFETY: MPI is initialised; predefined handles; valid out-pointers.
        unsafe {
            (api.set_errhandler)(api.comm_world, api.errors_return);
            (api.comm_rank)(api.comm_world, &mut rank);
            (api.comm_size)(api.comm_world, &mut size);
        }
        Ok(Mpi {
            rank: usize::try_from(rank).unwrap_or(0),
            size: usize::try_from(size).unwrap_or(1).max(1),
            api,
            finalized: Mutex::new(false),
        })
    }

    /// This process's rank in `MPI_COMM_WORLD`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks in `MPI_COMM_WORLD`.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Finalizes MPI (`MPI_Finalize`); every later call fails. Call it once, on every rank,
    /// before the process exits.
    pub fn finalize(&self) -> Result<()> {
        let mut done = self.finalized.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return Ok(());
        }
        *done = true;
        // SAFETY: initialised and not finalized.
        let rc = unsafe { (self.api.finalize)() };
        self.check("MPI_Finalize", rc)
    }

    /// Runs `f` with MPI's API unless finalized, one caller at a time.
    fn call(&self, what: &str, f: impl FnOnce(&Api) -> c_int) -> Result<()> {
        let done = self.finalized.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return Err(Error::invalid_argument(format!(
                "{what}: MPI is finalized: expected a call before Mpi::finalize"
            )));
        }
        let rc = f(&self.api);
        drop(done);
        self.check(what, rc)
    }

    fn check(&self, what: &str, rc: c_int) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        let mut text = [0 as c_char; 256];
        let mut len: c_int = 0;
        // SAFETY: MPI_MAX_ERROR_STRING (256) bytes and a valid out-pointer.
        unsafe { (self.api.error_string)(rc, text.as_mut_ptr(), &mut len) };
        // SAFETY: MPI writes a NUL-terminated string; the array ends in a NUL otherwise.
        text[255] = 0;
        let msg = unsafe { CStr::from_ptr(text.as_ptr()) }.to_string_lossy();
        Err(Error::internal(format!("{what} failed (code {rc}): {msg}")))
    }

    /// `MPI_Allgather` of `send` (the same length on every rank) into `recv` (`size()` times
    /// it), as bytes.
    fn allgather(&self, send: &[u8], recv: &mut [u8]) -> Result<()> {
        self.exchange("MPI_Allgather", |a| a.allgather, send, send.len(), recv)
    }

    /// `MPI_Alltoall` of `size()` blocks of `send.len() / size()` bytes.
    fn alltoall(&self, send: &[u8], recv: &mut [u8]) -> Result<()> {
        if send.len() != recv.len() || !send.len().is_multiple_of(self.size) {
            return Err(Error::internal(format!(
                "MPI_Alltoall: {} bytes out and {} in over {} ranks: expected equal lengths, \
                 a multiple of the ranks",
                send.len(),
                recv.len(),
                self.size
            )));
        }
        self.exchange(
            "MPI_Alltoall",
            |a| a.alltoall,
            send,
            send.len() / self.size,
            recv,
        )
    }

    /// Calls an exchange with `count` bytes per rank; `recv` must hold `size() * count` bytes.
    fn exchange(
        &self,
        what: &str,
        f: fn(&Api) -> Exchange,
        send: &[u8],
        count: usize,
        recv: &mut [u8],
    ) -> Result<()> {
        // All-to-all sends `size * count` bytes (checked by `alltoall`), all-gather `count`.
        if count.checked_mul(self.size) != Some(recv.len()) || count > send.len() {
            return Err(Error::internal(format!(
                "{what}: {count} bytes per rank over {} ranks from {} into {}",
                self.size,
                send.len(),
                recv.len()
            )));
        }
        let n = self::count(what, count)?;
        self.call(what, |a| {
            // SAFETY: `send` holds what the exchange reads (checked above and in `alltoall`)
            // and `recv` exactly `size * count` bytes.
            unsafe {
                f(a)(
                    send.as_ptr().cast(),
                    n,
                    a.byte,
                    recv.as_mut_ptr().cast(),
                    n,
                    a.byte,
                    a.comm_world,
                )
            }
        })
    }

    /// `MPI_Bcast` of `data` from `root`.
    fn bcast(&self, data: &mut [u8], root: usize) -> Result<()> {
        let count = count("MPI_Bcast", data.len())?;
        self.call("MPI_Bcast", |a| {
            // SAFETY: `data` holds `count` bytes; `root` is a rank (checked by the caller).
            unsafe {
                (a.bcast)(
                    data.as_mut_ptr().cast(),
                    count,
                    a.byte,
                    root as c_int,
                    a.comm_world,
                )
            }
        })
    }

    /// `MPI_Barrier` over every rank.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: the predefined communicator.
        self.call("MPI_Barrier", |a| unsafe { (a.barrier)(a.comm_world) })
    }

    /// `MPI_Allreduce(MPI_FLOAT, MPI_SUM)` on host memory, as MPI computes it: the peer of the
    /// benchmarks (its results are not deterministic across ranks the way
    /// [`MpiGroup::all_reduce`]'s are).
    pub fn allreduce_f32_sum_host(&self, send: &[f32], recv: &mut [f32]) -> Result<()> {
        if send.len() != recv.len() {
            return Err(Error::invalid_argument(format!(
                "allreduce_f32_sum_host: {} values in, {} out: expected equal lengths",
                send.len(),
                recv.len()
            )));
        }
        let n = count("MPI_Allreduce", send.len())?;
        self.call("MPI_Allreduce", |a| {
            // SAFETY: both hold `n` floats.
            unsafe {
                (a.allreduce)(
                    send.as_ptr().cast(),
                    recv.as_mut_ptr().cast(),
                    n,
                    a.float,
                    a.op_sum,
                    a.comm_world,
                )
            }
        })
    }
}

/// A byte count as MPI's `int`.
fn count(what: &str, n: usize) -> Result<c_int> {
    c_int::try_from(n).map_err(|_| {
        Error::invalid_argument(format!("{what}: {n} bytes do not fit MPI's int count"))
    })
}

/// The collective, for the description the ranks compare.
#[derive(Clone, Copy)]
enum Kind {
    AllReduce = 1,
    Broadcast,
    AllGather,
    ReduceScatter,
}

/// One rank per process over MPI, this rank's tensors on `queue`'s device; see the
/// [module](self) docs.
pub struct MpiGroup {
    mpi: Arc<Mpi>,
    queue: Arc<dyn Queue>,
    /// Reduce host-addressable tensors in place ([`Queue::map_host`]).
    in_place: bool,
}

impl MpiGroup {
    /// This process's rank of `MPI_COMM_WORLD`, with its tensors on `queue`'s device.
    pub fn new(mpi: Arc<Mpi>, queue: Arc<dyn Queue>) -> MpiGroup {
        MpiGroup {
            mpi,
            queue,
            in_place: true,
        }
    }

    /// The same group, staging every tensor through host memory even where the host can
    /// address it (the path of devices whose memory it cannot; for tests and comparisons).
    pub fn staged(mut self) -> MpiGroup {
        self.in_place = false;
        self
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.mpi.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.mpi.size
    }

    /// The queue this rank's tensors are used on.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// Replaces this rank's tensor by the reduction over every rank's (one dtype and shape on
    /// every rank; contiguous); as [`DeviceGroup::all_reduce`](crate::hal::DeviceGroup::all_reduce).
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> Result<()> {
        let f = "all_reduce";
        let local = self.view(f, "tensor", t).and_then(|v| {
            check_reducible(f, t.dtype(), op)?;
            Ok(v)
        });
        let view = self.agree(f, Kind::AllReduce, t, t.numel(), op as i64, 0, local)?;
        let (dtype, numel) = (t.dtype(), t.numel());
        // Host-addressable memory (the CPU device) is reduced in place: no staging copies.
        let mapped = self.in_place
            && self.queue.map_host(&view, &mut |bytes| {
                self.all_reduce_rounds(dtype, op, numel, &view, Some(bytes))
            })?;
        if !mapped {
            self.all_reduce_rounds(dtype, op, numel, &view, None)?;
        }
        Ok(())
    }

    /// The rounds of [`MpiGroup::all_reduce`] over `view` (`numel` elements), read and written
    /// through the queue, or in place in `bytes` (the view's memory) when the host can address
    /// it. Each round covers `n` parts of `part` elements (the last one padded with zeros): an
    /// `MPI_Alltoall` gives each rank the ranks' copies of its part, which it reduces in rank
    /// order, and an `MPI_Allgather` gives every rank every reduced part.
    fn all_reduce_rounds(
        &self,
        dtype: DType,
        op: ReduceOp,
        numel: usize,
        view: &BufferView,
        mut bytes: Option<&mut [u8]>,
    ) -> Result<()> {
        let (n, es) = (self.size(), dtype.size_in_bytes());
        let part = (CHUNK_BYTES / es).min(numel.div_ceil(n)).max(1);
        let round = part * n;
        let mut send = vec![0u8; round * es];
        let mut recv = vec![0u8; round * es];
        let mut base = 0;
        while base < numel {
            let valid = round.min(numel - base);
            let range = base * es..(base + valid) * es;
            match bytes.as_deref_mut() {
                Some(b) if valid == round => {
                    // A whole round, in place.
                    self.mpi.alltoall(&b[range.clone()], &mut recv)?;
                    let blocks: Vec<&[u8]> = recv.chunks(part * es).collect();
                    let mine = reduce(dtype, op, &blocks);
                    self.mpi.allgather(&mine, &mut b[range])?;
                }
                mut b => {
                    send[valid * es..].fill(0);
                    match b.as_deref_mut() {
                        Some(b) => send[..valid * es].copy_from_slice(&b[range.clone()]),
                        None => self
                            .queue
                            .read(&view.sub(range.start, valid * es)?, &mut send[..valid * es])?,
                    }
                    self.mpi.alltoall(&send, &mut recv)?;
                    let blocks: Vec<&[u8]> = recv.chunks(part * es).collect();
                    let mine = reduce(dtype, op, &blocks);
                    self.mpi.allgather(&mine, &mut send)?;
                    match b {
                        Some(b) => b[range].copy_from_slice(&send[..valid * es]),
                        None => self
                            .queue
                            .write(&view.sub(range.start, valid * es)?, &send[..valid * es])?,
                    }
                }
            }
            base += valid;
        }
        Ok(())
    }

    /// Copies rank `root`'s tensor into every other rank's (one dtype and shape; contiguous).
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<()> {
        let f = "broadcast";
        let local = self.view(f, "tensor", t).and_then(|v| {
            if root >= self.size() {
                return Err(Error::invalid_argument(format!(
                    "broadcast: root {root} is not a rank of this group of {}: expected 0..{}",
                    self.size(),
                    self.size()
                )));
            }
            Ok(v)
        });
        let view = self.agree(f, Kind::Broadcast, t, t.numel(), 0, root as i64, local)?;
        let len = view.len();
        let mut host = vec![0u8; CHUNK_BYTES.min(len)];
        let mut at = 0;
        while at < len {
            let n = CHUNK_BYTES.min(len - at);
            if self.rank() == root {
                self.queue.read(&view.sub(at, n)?, &mut host[..n])?;
            }
            self.mpi.bcast(&mut host[..n], root)?;
            if self.rank() != root {
                self.queue.write(&view.sub(at, n)?, &host[..n])?;
            }
            at += n;
        }
        Ok(())
    }

    /// Gathers every rank's `input` into this rank's `output` (`size()` times the elements of
    /// `input`), in rank order.
    pub fn all_gather(&self, input: &Tensor, output: &Tensor) -> Result<()> {
        let f = "all_gather";
        let n = self.size();
        let local = self.in_out(f, input, output, n, 1);
        let (ins, outs) = self.agree(f, Kind::AllGather, input, output.numel(), 0, 0, local)?;
        let len = ins.len();
        let chunk = CHUNK_BYTES.min(len);
        let mut send = vec![0u8; chunk];
        let mut recv = vec![0u8; chunk * n];
        let mut at = 0;
        while at < len {
            let c = chunk.min(len - at);
            self.queue.read(&ins.sub(at, c)?, &mut send[..c])?;
            self.mpi.allgather(&send[..c], &mut recv[..c * n])?;
            for (r, block) in recv[..c * n].chunks(c).enumerate() {
                self.queue.write(&outs.sub(r * len + at, c)?, block)?;
            }
            at += c;
        }
        Ok(())
    }

    /// Reduces every rank's `input` and gives this rank part `rank()` of `size()` equal parts
    /// of the result in `output`.
    pub fn reduce_scatter(&self, input: &Tensor, output: &Tensor, op: ReduceOp) -> Result<()> {
        let f = "reduce_scatter";
        let n = self.size();
        let local = self
            .in_out(f, input, output, 1, n)
            .and_then(|v| check_reducible(f, input.dtype(), op).map(|()| v));
        let (ins, outs) = self.agree(
            f,
            Kind::ReduceScatter,
            input,
            output.numel(),
            op as i64,
            0,
            local,
        )?;
        let part = outs.len();
        let chunk = CHUNK_BYTES.min(part).max(1);
        let mut send = vec![0u8; chunk * n];
        let mut recv = vec![0u8; chunk * n];
        let mut at = 0;
        while at < part {
            let c = chunk.min(part - at);
            for j in 0..n {
                self.queue
                    .read(&ins.sub(j * part + at, c)?, &mut send[j * c..(j + 1) * c])?;
            }
            self.mpi.alltoall(&send[..c * n], &mut recv[..c * n])?;
            let blocks: Vec<&[u8]> = recv[..c * n].chunks(c).collect();
            self.queue
                .write(&outs.sub(at, c)?, &reduce(input.dtype(), op, &blocks))?;
            at += c;
        }
        Ok(())
    }

    /// Waits until this rank's queue has finished its work, then until every rank has
    /// (`MPI_Barrier`): a barrier across processes blocks the calling thread.
    pub fn barrier(&self) -> Result<()> {
        let finished = self.queue.finish();
        // Every rank enters the barrier, also one whose queue failed.
        let barrier = self.mpi.barrier();
        finished.and(barrier)
    }

    /// The bytes of `t`, which must be contiguous and on this rank's device.
    fn view(&self, f: &str, what: &str, t: &Tensor) -> Result<BufferView> {
        rank_view(f, &format!("the {what}"), t, &*self.queue)
    }

    /// The views of an input and an output with `times / per` its elements, of one dtype.
    fn in_out(
        &self,
        f: &str,
        input: &Tensor,
        output: &Tensor,
        times: usize,
        per: usize,
    ) -> Result<(BufferView, BufferView)> {
        let ins = self.view(f, "input", input)?;
        let outs = self.view(f, "output", output)?;
        let want = output_elements(f, input.numel(), times, per)?;
        if output.dtype() != input.dtype() || output.numel() != want {
            return Err(Error::invalid_argument(format!(
                "{f}: the input is {} {} and the output {} {} over {} ranks: expected an output \
                 of the input's dtype with {} times / {} its elements",
                input.dtype(),
                shape_str(input.shape()),
                output.dtype(),
                shape_str(output.shape()),
                self.size(),
                times,
                per
            )));
        }
        if ins.overlaps(&outs) {
            return Err(Error::invalid_argument(format!(
                "{f}: the input and the output share memory: expected distinct tensors"
            )));
        }
        Ok((ins, outs))
    }

    /// Every rank describes its call; all go on only when every rank's arguments were good and
    /// the descriptions agree, else every rank returns the same kind of error.
    #[allow(clippy::too_many_arguments)]
    fn agree<T>(
        &self,
        f: &str,
        kind: Kind,
        t: &Tensor,
        out_numel: usize,
        op: i64,
        root: i64,
        local: Result<T>,
    ) -> Result<T> {
        const WORDS: usize = 7;
        let dtype = DType::ALL.iter().position(|d| *d == t.dtype()).unwrap_or(0);
        let mine: [i64; WORDS] = [
            i64::from(local.is_ok()),
            kind as i64,
            dtype as i64,
            t.numel() as i64,
            out_numel as i64,
            op,
            root,
        ];
        let send: Vec<u8> = mine.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut recv = vec![0u8; send.len() * self.size()];
        self.mpi.allgather(&send, &mut recv)?;
        let all: Vec<[i64; WORDS]> = recv
            .chunks(WORDS * 8)
            .map(|c| {
                let mut w = [0i64; WORDS];
                for (i, b) in c.chunks(8).enumerate() {
                    w[i] = i64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                }
                w
            })
            .collect();
        let local = local?;
        if let Some(r) = all.iter().position(|w| w[0] == 0) {
            return Err(Error::invalid_argument(format!(
                "{f}: rank {r}'s arguments were refused there: no rank ran it"
            )));
        }
        if let Some(r) = all.iter().position(|w| w[1..] != mine[1..]) {
            let name = |d: i64| DType::ALL.get(d as usize).map_or("?", |d| d.name());
            return Err(Error::invalid_argument(format!(
                "{f}: rank {r} called {} with {} {} elements (output {}, op {}, root {}) but \
                 rank {} with {} {} elements (output {}, op {}, root {}): expected the same \
                 collective on every rank",
                kind_name(all[r][1]),
                name(all[r][2]),
                all[r][3],
                all[r][4],
                all[r][5],
                all[r][6],
                self.rank(),
                name(mine[2]),
                mine[3],
                mine[4],
                mine[5],
                mine[6],
            )));
        }
        Ok(local)
    }
}

fn kind_name(k: i64) -> &'static str {
    match k {
        1 => "all_reduce",
        2 => "broadcast",
        3 => "all_gather",
        4 => "reduce_scatter",
        _ => "?",
    }
}
