//! Collectives over a group of devices of any kinds, in one process: [`DeviceGroup`].
//!
//! A group is an ordered list of queues, one per rank (rank `r` is `queues[r]`); the devices may
//! be of any backends, mixed freely, and one device may appear twice. Each collective takes one
//! tensor per rank, on that rank's device, contiguous, of the same dtype and shape where the
//! collective says so.
//!
//! Results are deterministic: a reduction combines the ranks in rank order `0, 1, ..., n - 1`
//! (floats in f64, rounded once to the dtype; integers wrapping in their own width), so every
//! rank receives bit-identical output, on every run, whatever the devices. The data is staged
//! through host memory in chunks of [`CHUNK_BYTES`] per rank,
//! read from all ranks at once.
//!
//! Ordering is as for [`Tensor::copy_to`]: a collective sees every command submitted to each
//! rank's queue before the call (the calling thread waits for them, as a read does), and the
//! writes of its results run asynchronously on each queue, in order with what follows.
//! [`DeviceGroup::barrier`] orders the queues without blocking the calling thread.
//!
//! **A vendor's collective library.** When every rank's device is a device of one backend that
//! offers a [`CollectiveLibrary`] (a vendor plugin's collectives table: HCCL, CNCL, ...), and the
//! queues are distinct, the group runs its collectives there instead: enqueued on every rank's
//! queue, nothing staged and nothing waited for on the calling thread. The library's contract is
//! the same determinism (every rank the same bits, every run); a dtype or op it does not take
//! ([`ErrorCode::Unsupported`](crate::ErrorCode::Unsupported) when enqueued) goes the host way.
//! [`DeviceGroup::library`] names the one in use; [`DeviceGroup::staged`] never uses one.

use std::sync::Arc;

use crate::tensor::shape_str;
use crate::transfer::CHUNK_BYTES;
use crate::{bf16, f16, BufferView, DType, Error, Queue, Result, Tensor};

/// How [`DeviceGroup::all_reduce`] and [`DeviceGroup::reduce_scatter`] combine the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// The sum: floats in f64 in rank order, rounded once; integers wrapping.
    Sum,
    /// The largest value; a NaN on any rank gives NaN.
    Max,
    /// The smallest value; a NaN on any rank gives NaN.
    Min,
    /// The sum divided by the number of ranks, in f64, rounded once (float dtypes only).
    Mean,
}

impl ReduceOp {
    /// The lower-case name: `sum`, `max`, `min`, `mean`.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Mean => "mean",
        }
    }
}

/// A device's own collective library (a vendor plugin's collectives table): see the
/// [module](self) docs. One object per library; devices that share a library return the same
/// [`CollectiveLibrary::key`].
pub trait CollectiveLibrary: Send + Sync {
    /// The library's name, for reports (`plugin:x collectives`).
    fn name(&self) -> &str;
    /// Identifies the library: equal keys are one library.
    fn key(&self) -> usize;
    /// A communicator over `queues` (rank `r` on `queues[r]`, all of devices of this library,
    /// distinct queues).
    fn communicator(&self, queues: &[Arc<dyn Queue>]) -> Result<Arc<dyn Communicator>>;
}

/// A group's communicator in a [`CollectiveLibrary`]. Every call takes one view per rank (checked
/// by the group: contiguous, on the rank's device, the sizes the collective needs) and enqueues
/// the collective on every rank's queue.
pub trait Communicator: Send + Sync {
    /// Each `recv[r]` becomes the reduction of every `send[r]` (`send[r]` may be `recv[r]`).
    fn all_reduce(
        &self,
        send: &[BufferView],
        recv: &[BufferView],
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()>;
    /// Every rank's `views[r]` becomes rank `root`'s.
    fn broadcast(&self, views: &[BufferView], dtype: DType, root: usize) -> Result<()>;
    /// Each `recv[r]` becomes every `send[p]`, in rank order.
    fn all_gather(&self, send: &[BufferView], recv: &[BufferView], dtype: DType) -> Result<()>;
    /// `recv[r]` becomes the `r`-th part of the reduction of every `send[p]`.
    fn reduce_scatter(
        &self,
        send: &[BufferView],
        recv: &[BufferView],
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()>;
}

/// Ranks over queues of any devices; see the [module](self) docs.
#[derive(Clone)]
pub struct DeviceGroup {
    queues: Vec<Arc<dyn Queue>>,
    /// The devices' own library, when they share one.
    library: Option<(String, Arc<dyn Communicator>)>,
}

impl std::fmt::Debug for DeviceGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.queues.iter().map(|q| q.device_id().to_string()))
            .finish()
    }
}

impl DeviceGroup {
    /// A group whose rank `r` runs on `queues[r]`; at least one queue. Collectives run in the
    /// devices' own library when they share one (see the [module](self) docs).
    pub fn new(queues: Vec<Arc<dyn Queue>>) -> Result<DeviceGroup> {
        let mut g = Self::staged(queues)?;
        g.library = library_of(&g.queues)?;
        Ok(g)
    }

    /// A group that stages every collective through host memory, whatever its devices offer.
    pub fn staged(queues: Vec<Arc<dyn Queue>>) -> Result<DeviceGroup> {
        if queues.is_empty() {
            return Err(Error::invalid_argument(
                "DeviceGroup::new: no queue: expected one queue per rank",
            ));
        }
        Ok(DeviceGroup {
            queues,
            library: None,
        })
    }

    /// The name of the collective library the group uses, `None` when it stages through host
    /// memory.
    pub fn library(&self) -> Option<&str> {
        self.library.as_ref().map(|(name, _)| name.as_str())
    }

    fn communicator(&self) -> Option<&Arc<dyn Communicator>> {
        self.library.as_ref().map(|(_, c)| c)
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.queues.len()
    }

    /// The queue of rank `r`.
    pub fn queue(&self, r: usize) -> Option<&Arc<dyn Queue>> {
        self.queues.get(r)
    }

    /// Every later command of every rank's queue waits until every rank's queue has finished the
    /// commands submitted before this call. Does not block the calling thread.
    pub fn barrier(&self) -> Result<()> {
        let events = self
            .queues
            .iter()
            .map(|q| q.record_event())
            .collect::<Result<Vec<_>>>()?;
        for (r, q) in self.queues.iter().enumerate() {
            for (p, e) in events.iter().enumerate() {
                if p != r {
                    q.wait_event(e)?;
                }
            }
        }
        Ok(())
    }

    /// Replaces each rank's tensor by the reduction of all ranks' tensors, element by element.
    /// `tensors[r]` is on rank `r`'s device; all contiguous, of one dtype and shape.
    /// f32, f16, bf16, f64, i32 and i64; [`ReduceOp::Mean`] for the float dtypes.
    pub fn all_reduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()> {
        let f = "all_reduce";
        let views = self.operands(f, "tensors", tensors)?;
        let dtype = same_layout(f, tensors)?;
        check_reducible(f, dtype, op)?;
        if let Some(c) = self.communicator() {
            if in_library(c.all_reduce(&views, &views, dtype, op))? {
                return Ok(());
            }
        }
        let len = views[0].len();
        stream(f, &self.queues, &views, len, |chunks, at, n| {
            let out = reduce(dtype, op, chunks);
            for (q, v) in self.queues.iter().zip(&views) {
                q.write(&v.sub(at, n)?, &out)?;
            }
            Ok(())
        })
    }

    /// Copies rank `root`'s tensor into every other rank's tensor (contiguous, one dtype and
    /// shape; any dtype).
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        let f = "broadcast";
        let views = self.operands(f, "tensors", tensors)?;
        same_layout(f, tensors)?;
        if root >= self.size() {
            return Err(Error::invalid_argument(format!(
                "broadcast: root {root} is not a rank of this group of {}: expected 0..{}",
                self.size(),
                self.size()
            )));
        }
        if let Some(c) = self.communicator() {
            if in_library(c.broadcast(&views, tensors[0].dtype(), root))? {
                return Ok(());
            }
        }
        let len = views[0].len();
        let src = [views[root].clone()];
        let from = [self.queues[root].clone()];
        stream(f, &from, &src, len, |chunks, at, n| {
            for (r, (q, v)) in self.queues.iter().zip(&views).enumerate() {
                if r != root {
                    q.write(&v.sub(at, n)?, chunks[0])?;
                }
            }
            Ok(())
        })
    }

    /// Gathers every rank's `inputs[r]` into every rank's `outputs[r]`, in rank order: each
    /// output holds `size()` times the elements of an input (any shape), the inputs one after
    /// the other. Contiguous; one dtype; any dtype.
    pub fn all_gather(&self, inputs: &[Tensor], outputs: &[Tensor]) -> Result<()> {
        let f = "all_gather";
        let ins = self.operands(f, "inputs", inputs)?;
        let outs = self.operands(f, "outputs", outputs)?;
        let dtype = same_layout(f, inputs)?;
        self.check_outputs(f, inputs, outputs, dtype, self.size(), 1)?;
        if let Some(c) = self.communicator() {
            if in_library(c.all_gather(&ins, &outs, dtype))? {
                return Ok(());
            }
        }
        let len = ins[0].len();
        stream(f, &self.queues, &ins, len, |chunks, at, n| {
            for (q, out) in self.queues.iter().zip(&outs) {
                for (r, c) in chunks.iter().enumerate() {
                    q.write(&out.sub(r * len + at, n)?, c)?;
                }
            }
            Ok(())
        })
    }

    /// Reduces every rank's `inputs[r]` element by element (as [`DeviceGroup::all_reduce`]) and
    /// gives rank `r` the `r`-th of `size()` equal parts of the result in `outputs[r]`: each
    /// input holds `size()` times the elements of an output.
    pub fn reduce_scatter(
        &self,
        inputs: &[Tensor],
        outputs: &[Tensor],
        op: ReduceOp,
    ) -> Result<()> {
        let f = "reduce_scatter";
        let ins = self.operands(f, "inputs", inputs)?;
        let outs = self.operands(f, "outputs", outputs)?;
        let dtype = same_layout(f, inputs)?;
        check_reducible(f, dtype, op)?;
        self.check_outputs(f, inputs, outputs, dtype, 1, self.size())?;
        if let Some(c) = self.communicator() {
            if in_library(c.reduce_scatter(&ins, &outs, dtype, op))? {
                return Ok(());
            }
        }
        let part = outs[0].len();
        // Rank r's part is bytes r * part .. (r + 1) * part of the reduced input.
        for (r, (q, out)) in self.queues.iter().zip(&outs).enumerate() {
            let parts: Vec<BufferView> = ins
                .iter()
                .map(|v| v.sub(r * part, part))
                .collect::<Result<_>>()?;
            stream(f, &self.queues, &parts, part, |chunks, at, n| {
                q.write(&out.sub(at, n)?, &reduce(dtype, op, chunks))
            })?;
        }
        Ok(())
    }

    /// The views of `tensors`, one per rank, each on its rank's device and contiguous.
    fn operands(&self, f: &str, what: &str, tensors: &[Tensor]) -> Result<Vec<BufferView>> {
        if tensors.len() != self.size() {
            return Err(Error::invalid_argument(format!(
                "{f}: {} {what} for a group of {} ranks: expected one per rank",
                tensors.len(),
                self.size()
            )));
        }
        let views = tensors
            .iter()
            .zip(&self.queues)
            .enumerate()
            .map(|(r, (t, q))| rank_view(f, &format!("{what}[{r}]"), t, &**q))
            .collect::<Result<Vec<_>>>()?;
        for (a, va) in views.iter().enumerate() {
            for (b, vb) in views.iter().enumerate().skip(a + 1) {
                if va.overlaps(vb) {
                    return Err(Error::invalid_argument(format!(
                        "{f}: {what}[{a}] and {what}[{b}] share memory: expected distinct tensors"
                    )));
                }
            }
        }
        Ok(views)
    }

    /// Outputs of `dtype` with `times / per` the elements of an input, not overlapping inputs.
    fn check_outputs(
        &self,
        f: &str,
        inputs: &[Tensor],
        outputs: &[Tensor],
        dtype: DType,
        times: usize,
        per: usize,
    ) -> Result<()> {
        let numel = inputs[0].numel();
        let want = output_elements(f, numel, times, per)?;
        for (r, o) in outputs.iter().enumerate() {
            if o.dtype() != dtype || o.numel() != want {
                return Err(Error::invalid_argument(format!(
                    "{f}: outputs[{r}] is {} {} but the inputs are {dtype} with {numel} \
                     elements: expected {dtype} with {want} elements",
                    o.dtype(),
                    shape_str(o.shape())
                )));
            }
            for (i, t) in inputs.iter().enumerate() {
                if o.view().overlaps(t.view()) {
                    return Err(Error::invalid_argument(format!(
                        "{f}: outputs[{r}] shares memory with inputs[{i}]: expected distinct \
                         tensors"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The library every rank's device shares, with a communicator over `queues`: `None` when a
/// device has none, two libraries differ, the library does not take the group (`Unsupported`),
/// or a queue repeats (a library runs a collective on
/// every rank's queue at once, which one queue in two ranks cannot do).
fn library_of(queues: &[Arc<dyn Queue>]) -> Result<Option<(String, Arc<dyn Communicator>)>> {
    let mut libraries = Vec::with_capacity(queues.len());
    for q in queues {
        match q.device().collectives() {
            Some(l) => libraries.push(l),
            None => return Ok(None),
        }
    }
    let key = libraries[0].key();
    if libraries.iter().any(|l| l.key() != key) {
        return Ok(None);
    }
    for (a, qa) in queues.iter().enumerate() {
        if queues[a + 1..]
            .iter()
            .any(|qb| std::ptr::addr_eq(Arc::as_ptr(qa), Arc::as_ptr(qb)))
        {
            return Ok(None);
        }
    }
    // A library that cannot take this group (NCCL: a GPU twice) leaves it to the host path.
    match libraries[0].communicator(queues) {
        Ok(c) => Ok(Some((libraries[0].name().to_string(), c))),
        Err(e) if e.code() == crate::ErrorCode::Unsupported => Ok(None),
        Err(e) => Err(e),
    }
}

/// `Ok(true)` when the library enqueued the collective, `Ok(false)` when it does not take this
/// dtype or op (the host way then), else its error.
fn in_library(r: Result<()>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.code() == crate::ErrorCode::Unsupported => Ok(false),
        Err(e) => Err(e),
    }
}

/// The bytes of `t`, one rank's operand (named `what` in errors), which must be contiguous and
/// on `queue`'s device: the check of every collective, in one process or over MPI.
pub fn rank_view(f: &str, what: &str, t: &Tensor, queue: &dyn Queue) -> Result<BufferView> {
    if t.device_id() != queue.device_id() {
        return Err(Error::invalid_argument(format!(
            "{f}: {what} is on {} but its rank runs on {}: expected each tensor on its rank's \
             device",
            t.device_id(),
            queue.device_id()
        )));
    }
    if !t.desc().is_contiguous() {
        return Err(Error::invalid_argument(format!(
            "{f}: {what} has strides {:?} for shape {}: expected contiguous tensors",
            t.strides(),
            shape_str(t.shape())
        )));
    }
    t.view()
        .sub(t.desc().byte_offset()?, t.desc().host_bytes()?)
}

/// The elements of an output that holds `times / per` of an input of `numel` elements
/// (all_gather: `times` = ranks; reduce_scatter: `per` = ranks).
pub fn output_elements(f: &str, numel: usize, times: usize, per: usize) -> Result<usize> {
    if !numel.is_multiple_of(per) {
        return Err(Error::invalid_argument(format!(
            "{f}: the input has {numel} elements, not a multiple of the group's {per} ranks: \
             expected equal parts"
        )));
    }
    numel
        .checked_mul(times)
        .map(|w| w / per)
        .ok_or_else(|| Error::invalid_argument(format!("{f}: the output size overflows")))
}

/// Reads `views` (one per rank, on `queues`, `len` bytes each) chunk by chunk, all ranks at
/// once, and hands each chunk's bytes (in rank order) to `each` with its byte offset and length.
fn stream(
    f: &str,
    queues: &[Arc<dyn Queue>],
    views: &[BufferView],
    len: usize,
    mut each: impl FnMut(&[&[u8]], usize, usize) -> Result<()>,
) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let chunk = CHUNK_BYTES.min(len);
    let mut host: Vec<Vec<u8>> = views.iter().map(|_| vec![0u8; chunk]).collect();
    let mut at = 0;
    while at < len {
        let n = chunk.min(len - at);
        // Every rank's chunk at once: the devices are independent.
        std::thread::scope(|s| -> Result<()> {
            let reads: Vec<_> = queues
                .iter()
                .zip(views)
                .zip(host.iter_mut())
                .map(|((q, v), h)| {
                    s.spawn(move || -> Result<()> { q.read(&v.sub(at, n)?, &mut h[..n]) })
                })
                .collect();
            for r in reads {
                r.join()
                    .unwrap_or_else(|_| Err(Error::internal(format!("{f}: a reader panicked"))))?;
            }
            Ok(())
        })?;
        let chunks: Vec<&[u8]> = host.iter().map(|h| &h[..n]).collect();
        each(&chunks, at, n)?;
        at += n;
    }
    Ok(())
}

/// The one dtype of `tensors`, which must share dtype and shape.
fn same_layout(f: &str, tensors: &[Tensor]) -> Result<DType> {
    let first = &tensors[0];
    for (r, t) in tensors.iter().enumerate().skip(1) {
        if t.dtype() != first.dtype() || t.shape() != first.shape() {
            return Err(Error::invalid_argument(format!(
                "{f}: rank {r}'s tensor is {} {} but rank 0's is {} {}: expected one dtype and \
                 shape on every rank",
                t.dtype(),
                shape_str(t.shape()),
                first.dtype(),
                shape_str(first.shape())
            )));
        }
    }
    Ok(first.dtype())
}

/// Whether `op` reduces `dtype` (`Unsupported` naming `f` if not).
pub fn check_reducible(f: &str, dtype: DType, op: ReduceOp) -> Result<()> {
    let float = matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64);
    let int = matches!(dtype, DType::I32 | DType::I64);
    if float || (int && op != ReduceOp::Mean) {
        return Ok(());
    }
    Err(Error::unsupported(format!(
        "{f}: {} of {dtype}: expected f32, f16, bf16 or f64{}",
        op.name(),
        if op == ReduceOp::Mean {
            ""
        } else {
            ", i32 or i64"
        }
    )))
}

/// The reduction of the ranks' chunks (the bytes of `dtype` elements, equal lengths), element
/// by element, in rank order, as every collective of this module computes it (floats in f64
/// rounded once, integers wrapping); for dtypes that [`check_reducible`] accepts.
pub fn reduce(dtype: DType, op: ReduceOp, chunks: &[&[u8]]) -> Vec<u8> {
    let ranks = chunks.len() as f64;
    if dtype == DType::F32 {
        // The common case, on aligned chunks: the same arithmetic in loops that vectorise.
        let aligned: Option<Vec<&[f32]>> = chunks
            .iter()
            .map(|c| bytemuck::try_cast_slice::<u8, f32>(c).ok())
            .collect();
        if let Some(values) = aligned {
            return f32s(&values, op, ranks);
        }
    }
    match dtype {
        DType::F32 => floats(
            chunks,
            op,
            ranks,
            |b| f32::from_le_bytes(b) as f64,
            |x| (x as f32).to_le_bytes(),
        ),
        DType::F64 => floats(chunks, op, ranks, f64::from_le_bytes, f64::to_le_bytes),
        DType::F16 => floats(
            chunks,
            op,
            ranks,
            |b| f16::from_le_bytes(b).to_f64(),
            |x| f16::from_f64(x).to_le_bytes(),
        ),
        DType::BF16 => floats(
            chunks,
            op,
            ranks,
            |b| bf16::from_le_bytes(b).to_f64(),
            |x| bf16::from_f64(x).to_le_bytes(),
        ),
        DType::I32 => ints(
            chunks,
            op,
            |b: [u8; 4]| i32::from_le_bytes(b) as i64,
            |x| (x as i32).to_le_bytes(),
        ),
        DType::I64 => ints(chunks, op, i64::from_le_bytes, i64::to_le_bytes),
        // check_reducible refused the others.
        _ => Vec::new(),
    }
}

/// A float reduction: each element in f64, ranks in order, rounded once by `put`.
fn floats<const N: usize>(
    chunks: &[&[u8]],
    op: ReduceOp,
    ranks: f64,
    get: impl Fn([u8; N]) -> f64,
    put: impl Fn(f64) -> [u8; N],
) -> Vec<u8> {
    let at = |b: &[u8]| get(<[u8; N]>::try_from(b).unwrap_or([0; N]));
    let mut acc: Vec<f64> = chunks[0].chunks_exact(N).map(at).collect();
    for c in &chunks[1..] {
        combine(&mut acc, c.chunks_exact(N).map(at), op);
    }
    let mut out = Vec::with_capacity(acc.len() * N);
    for a in finish(acc, op, ranks) {
        out.extend_from_slice(&put(a));
    }
    out
}

/// [`floats`] for aligned f32 chunks: the same arithmetic in loops that vectorise.
fn f32s(chunks: &[&[f32]], op: ReduceOp, ranks: f64) -> Vec<u8> {
    let mut acc: Vec<f64> = chunks[0].iter().map(|&x| f64::from(x)).collect();
    for c in &chunks[1..] {
        combine(&mut acc, c.iter().map(|&x| f64::from(x)), op);
    }
    let out: Vec<f32> = finish(acc, op, ranks).map(|a| a as f32).collect();
    bytemuck::cast_slice(&out).to_vec()
}

/// Folds one more rank's values into `acc`, element by element.
fn combine(acc: &mut [f64], xs: impl Iterator<Item = f64>, op: ReduceOp) {
    let pairs = acc.iter_mut().zip(xs);
    match op {
        ReduceOp::Sum | ReduceOp::Mean => pairs.for_each(|(a, x)| *a += x),
        ReduceOp::Max => pairs.for_each(|(a, x)| *a = nan_or(*a, x, f64::max)),
        ReduceOp::Min => pairs.for_each(|(a, x)| *a = nan_or(*a, x, f64::min)),
    }
}

/// The folded values, divided by the number of ranks for a mean.
fn finish(acc: Vec<f64>, op: ReduceOp, ranks: f64) -> impl Iterator<Item = f64> {
    let mean = op == ReduceOp::Mean;
    acc.into_iter()
        .map(move |a| if mean { a / ranks } else { a })
}

/// NaN when either is, else `f(a, x)`.
fn nan_or(a: f64, x: f64, f: fn(f64, f64) -> f64) -> f64 {
    if a.is_nan() || x.is_nan() {
        f64::NAN
    } else {
        f(a, x)
    }
}

/// An integer reduction in i64 (wrapping), narrowed by `put`.
fn ints<const N: usize>(
    chunks: &[&[u8]],
    op: ReduceOp,
    get: impl Fn([u8; N]) -> i64,
    put: impl Fn(i64) -> [u8; N],
) -> Vec<u8> {
    let at = |b: &[u8]| get(<[u8; N]>::try_from(b).unwrap_or([0; N]));
    let mut acc: Vec<i64> = chunks[0].chunks_exact(N).map(at).collect();
    for c in &chunks[1..] {
        let pairs = acc.iter_mut().zip(c.chunks_exact(N).map(at));
        match op {
            ReduceOp::Max => pairs.for_each(|(a, x)| *a = (*a).max(x)),
            ReduceOp::Min => pairs.for_each(|(a, x)| *a = (*a).min(x)),
            _ => pairs.for_each(|(a, x)| *a = a.wrapping_add(x)),
        }
    }
    let mut out = Vec::with_capacity(acc.len() * N);
    for a in acc {
        out.extend_from_slice(&put(a));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn float_sums_are_in_f64_in_rank_order_rounded_once() {
        // In f32, 1e8 + 1 + 1 - 1e8 is 0; rounded once from f64 it is 2.
        let a = f32s(&[1e8, f32::NAN, 1.0]);
        let b = f32s(&[1.0, 2.0, 2.0]);
        let c = f32s(&[1.0, 3.0, -7.0]);
        let d = f32s(&[-1e8, 4.0, 0.5]);
        let sum = reduce(DType::F32, ReduceOp::Sum, &[&a, &b, &c, &d]);
        assert_eq!(&sum[..4], &2f32.to_le_bytes());
        assert!(f32::from_le_bytes(sum[4..8].try_into().unwrap()).is_nan());
        let max = reduce(DType::F32, ReduceOp::Max, &[&a, &b, &c, &d]);
        assert!(f32::from_le_bytes(max[4..8].try_into().unwrap()).is_nan());
        assert_eq!(&max[8..], &2f32.to_le_bytes());
        let mean = reduce(DType::F32, ReduceOp::Mean, &[&b, &c]);
        assert_eq!(&mean[..4], &1f32.to_le_bytes());
        assert_eq!(&mean[8..], &(-2.5f32).to_le_bytes());
    }

    #[test]
    fn integer_sums_wrap_in_their_width() {
        let a: Vec<u8> = [i32::MAX, -5]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let b: Vec<u8> = [1i32, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
        let sum = reduce(DType::I32, ReduceOp::Sum, &[&a, &b]);
        assert_eq!(&sum[..4], &i32::MIN.to_le_bytes());
        assert_eq!(&sum[4..], &(-2i32).to_le_bytes());
        assert!(check_reducible("t", DType::I32, ReduceOp::Mean).is_err());
        assert!(check_reducible("t", DType::U8, ReduceOp::Sum).is_err());
    }
}
