//! Recorded op graphs: the op calls made on one queue, captured once and replayed with new
//! input tensors of the same layouts, as CUDA Graphs' stream capture and IREE's command buffers
//! do.
//!
//! [`Graph::capture`] runs a closure and records every op call it makes on the queue (through
//! [`crate::call`], [`crate::call_into`] or a typed function; calls that ops make inside other
//! ops are part of the outer call). The calls also run as usual while capturing, so the
//! closure's results are real. A tensor that a recorded call reads and that no earlier recorded
//! call wrote is an *input* of the graph: the graph keeps it, and a replay reads it unless a
//! binding replaces it.
//!
//! [`Graph::replay`] runs the calls again on a queue of the same device: validation and output
//! shapes were settled at capture, and so were the kernels where a call goes straight to a host
//! kernel (the CPU device's: chosen and compiled once, launched again on the replay's memory);
//! a replay only checks the bound tensors (device, dtype and
//! layout equal to what they replace, views inside their buffers, no output overlapping an
//! input) and launches. Every intermediate is a new tensor; [`Replay::get`] maps a tensor of
//! the capture to its counterpart in the replay. Attributes are fixed at capture: a random op
//! replays the same `(seed, offset)` stream.
//!
//! What is not recorded: host reads and writes (`Queue::write`, `Tensor::to_vec`), views made
//! with `Tensor`'s methods (a call's input that is a view of a recorded output is recorded as
//! that view), and calls on other queues.
//!
//! ```
//! use anyaccel_hal::{Backend, Tensor};
//! let device = anyaccel_cpu::CpuBackend.probe().unwrap().remove(0);
//! let q = device.create_queue().unwrap();
//! let x = Tensor::from_slice(&*q, &[1.0f32, -2.0, 3.0], &[3]).unwrap();
//! let (y, graph) = anyaccel_ops::Graph::capture(&*q, || {
//!     let r = anyaccel_ops::relu(&*q, &x)?;
//!     anyaccel_ops::mul(&*q, &r, &x)
//! })
//! .unwrap();
//! let y = y.unwrap();
//! assert_eq!(y.to_vec::<f32>(&*q).unwrap(), vec![1.0, 0.0, 9.0]);
//! let x2 = Tensor::from_slice(&*q, &[-1.0f32, 4.0, 0.5], &[3]).unwrap();
//! let replay = graph.replay(&*q, &[(&x, &x2)]).unwrap();
//! assert_eq!(replay.get(&y).unwrap().to_vec::<f32>(&*q).unwrap(), vec![0.0, 16.0, 0.25]);
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use anyaccel_hal::{
    shape_str, AttrValue, Buffer, BufferId, DType, Error, Queue, Result, Tensor, TensorDesc,
};

use crate::dispatch::{check_tensor, execute, overlaps, through_queue, Operand};

thread_local! {
    /// How many op calls this thread is inside (a call made by an op is not recorded).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Whether a capture is running on this thread (a cheap test on every call).
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Marks an op call entered; tells whether it is the outermost call of a running capture.
pub(crate) struct Entered {
    outermost: bool,
}

impl Entered {
    pub(crate) fn new() -> Entered {
        let depth = DEPTH.with(|d| {
            let v = d.get();
            d.set(v.saturating_add(1));
            v
        });
        Entered {
            outermost: depth == 0 && CAPTURING.with(Cell::get),
        }
    }

    /// Records a call that succeeded, when it is the outermost call of a capture on `queue`.
    pub(crate) fn record(
        &self,
        queue: &dyn Queue,
        op: &str,
        inputs: &[Option<&Tensor>],
        outputs: Outputs<'_>,
        attrs: &[(String, AttrValue)],
    ) {
        if !self.outermost {
            return;
        }
        RECORDER.with(|r| {
            if let Some(rec) = r.borrow_mut().as_mut() {
                if rec.queue == queue_addr(queue) {
                    rec.record(queue, op, inputs, outputs, attrs);
                }
            }
        });
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

fn queue_addr(queue: &dyn Queue) -> *const () {
    queue as *const dyn Queue as *const ()
}

/// The outputs of a recorded call: new tensors (`call`) or given ones (`call_into`).
pub(crate) enum Outputs<'a> {
    New(&'a [Tensor]),
    Into(&'a [&'a Tensor]),
}

/// Where a tensor's memory comes from in a graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    /// An input of the graph (index into `Graph::inputs`).
    Input(usize),
    /// Output `index` of node `node` (a new tensor of that call).
    Output { node: usize, index: usize },
}

/// A tensor of a graph: a view of a source's buffer.
#[derive(Clone, Debug)]
struct Ref {
    source: Source,
    /// The view's first byte in the buffer and its length.
    offset: usize,
    len: usize,
    desc: TensorDesc,
}

#[derive(Clone, Debug)]
enum NodeOutputs {
    New(Vec<(DType, Vec<usize>)>),
    Into(Vec<Ref>),
}

#[derive(Clone, Debug)]
struct Node {
    op: String,
    inputs: Vec<Option<Ref>>,
    outputs: NodeOutputs,
    attrs: Vec<(String, AttrValue)>,
    /// The host kernel chosen and compiled at capture, where the call goes straight to one.
    prepared: Option<Prepared>,
}

/// A host kernel prepared at capture, shared by the graph's clones.
#[derive(Clone)]
struct Prepared(Arc<crate::host::Prepared>);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

struct Recorder {
    /// The capturing queue's address, compared and never dereferenced.
    queue: *const (),
    nodes: Vec<Node>,
    inputs: Vec<Tensor>,
    /// Every buffer seen, by identity (ids keep addresses from being reused while capturing).
    sources: HashMap<BufferId, Source>,
}

impl Recorder {
    fn source_of(&mut self, t: &Tensor) -> Ref {
        let buffer = t.view().buffer();
        let source = match self.sources.get(&buffer.id()) {
            Some(s) => *s,
            None => {
                let s = Source::Input(self.inputs.len());
                self.inputs.push(t.clone());
                self.sources.insert(buffer.id(), s);
                s
            }
        };
        Ref {
            source,
            offset: t.view().offset(),
            len: t.view().len(),
            desc: t.desc().clone(),
        }
    }

    fn record(
        &mut self,
        queue: &dyn Queue,
        op: &str,
        inputs: &[Option<&Tensor>],
        outputs: Outputs<'_>,
        attrs: &[(String, AttrValue)],
    ) {
        // Kernel selection and compilation, once; a replay falls back to the full dispatch
        // when this fails.
        let outs: Vec<Tensor> = match outputs {
            Outputs::New(ts) => ts.to_vec(),
            Outputs::Into(ts) => ts.iter().map(|t| (*t).clone()).collect(),
        };
        let prepared = crate::dispatch::prepare_host(queue, op, inputs, &outs, attrs)
            .ok()
            .flatten()
            .map(|p| Prepared(Arc::new(p)));
        let inputs = inputs
            .iter()
            .map(|t| t.map(|t| self.source_of(t)))
            .collect();
        let node = self.nodes.len();
        let outputs = match outputs {
            Outputs::New(ts) => {
                for (index, t) in ts.iter().enumerate() {
                    self.sources
                        .insert(t.view().buffer().id(), Source::Output { node, index });
                }
                NodeOutputs::New(ts.iter().map(|t| (t.dtype(), t.shape().to_vec())).collect())
            }
            Outputs::Into(ts) => NodeOutputs::Into(ts.iter().map(|t| self.source_of(t)).collect()),
        };
        self.nodes.push(Node {
            op: op.to_string(),
            inputs,
            outputs,
            attrs: attrs.to_vec(),
            prepared,
        });
    }
}

/// Ends a capture even when its closure panics.
struct Capturing;

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURING.with(|c| c.set(false));
        RECORDER.with(|r| r.borrow_mut().take());
    }
}

/// Which new outputs a replay frees after each node: an output that the code captured had
/// dropped by the end of the capture is freed after the last node that reads it (or at once if
/// none does), as eager code frees it; one still held at the end is kept for [`Replay::get`].
fn frees(rec: &Recorder) -> Vec<Vec<Source>> {
    let mut last: HashMap<Source, usize> = HashMap::new();
    for (n, node) in rec.nodes.iter().enumerate() {
        if let NodeOutputs::New(specs) = &node.outputs {
            for index in 0..specs.len() {
                last.insert(Source::Output { node: n, index }, n);
            }
        }
        let reads = node.inputs.iter().flatten().chain(match &node.outputs {
            NodeOutputs::Into(refs) => refs.as_slice(),
            NodeOutputs::New(_) => &[],
        });
        for r in reads {
            if let Some(l) = last.get_mut(&r.source) {
                *l = n;
            }
        }
    }
    let mut frees = vec![Vec::new(); rec.nodes.len()];
    for (id, source) in &rec.sources {
        if id.is_live() {
            continue;
        }
        if let Some(&n) = last.get(source) {
            frees[n].push(*source);
        }
    }
    frees
}

/// A recorded sequence of op calls on one device; see the [module](self) documentation.
/// Cloning shares it.
#[derive(Clone, Debug)]
pub struct Graph(Arc<GraphData>);

#[derive(Debug)]
struct GraphData {
    device_id: String,
    nodes: Vec<Node>,
    inputs: Vec<Tensor>,
    /// The buffers of the capture's new outputs and inputs, to map them to a replay's.
    ids: Vec<(BufferId, Source)>,
    /// For each node, the outputs whose memory a replay may free after that node: those that
    /// no later node reads and that were dropped before the capture ended.
    frees: Vec<Vec<Source>>,
}

/// The tensors of one replay of a [`Graph`].
pub struct Replay {
    graph: Graph,
    /// The buffer of each input (bound or captured) and each node's new outputs (`None` once
    /// freed).
    inputs: Vec<Bound>,
    outputs: Vec<Vec<Option<Buffer>>>,
}

/// An input's buffer in a replay and the shift of its views against the capture's.
#[derive(Clone)]
struct Bound {
    buffer: Buffer,
    shift: i128,
}

impl Graph {
    /// Runs `f`, recording the op calls it makes on `queue`; returns `f`'s result and the
    /// graph. Fails if this thread is already capturing.
    pub fn capture<R>(queue: &dyn Queue, f: impl FnOnce() -> R) -> Result<(R, Graph)> {
        Graph::begin_capture(queue)?;
        // Ends the capture even when `f` panics.
        let guard = Capturing;
        let result = f();
        let graph = Graph::end_capture(queue);
        drop(guard);
        Ok((result, graph?))
    }

    /// Starts recording the op calls this thread makes on `queue`, until
    /// [`Graph::end_capture`] on the same thread (the form for callers that cannot pass a
    /// closure, as the C ABI). Fails if this thread is already capturing.
    pub fn begin_capture(queue: &dyn Queue) -> Result<()> {
        if CAPTURING.with(Cell::get) {
            return Err(Error::invalid_argument(
                "graph capture: this thread is already capturing a graph; end that capture first",
            ));
        }
        RECORDER.with(|r| {
            *r.borrow_mut() = Some(Recorder {
                queue: queue_addr(queue),
                nodes: Vec::new(),
                inputs: Vec::new(),
                sources: HashMap::new(),
            })
        });
        CAPTURING.with(|c| c.set(true));
        Ok(())
    }

    /// Ends the capture that [`Graph::begin_capture`] started on this thread for `queue` and
    /// returns its graph. Fails when this thread is not capturing on `queue` (the capture then
    /// goes on).
    pub fn end_capture(queue: &dyn Queue) -> Result<Graph> {
        let rec = RECORDER.with(|r| {
            let mut r = r.borrow_mut();
            match r.as_ref() {
                Some(rec) if rec.queue == queue_addr(queue) => Ok(r.take()),
                Some(_) => Err(Error::invalid_argument(
                    "graph capture: this thread is capturing on another queue; end the capture with the queue that began it",
                )),
                None => Ok(None),
            }
        })?;
        let rec = rec.ok_or_else(|| {
            Error::invalid_argument(
                "graph capture: this thread is not capturing: begin a capture first",
            )
        })?;
        CAPTURING.with(|c| c.set(false));
        let frees = frees(&rec);
        let ids = rec.sources.into_iter().collect();
        Ok(Graph(Arc::new(GraphData {
            device_id: queue.device_id().to_string(),
            nodes: rec.nodes,
            inputs: rec.inputs,
            ids,
            frees,
        })))
    }

    /// True when a recorded call writes into the memory of `input` (one of
    /// [`Graph::inputs`], or a view of one): a replay writes into the tensor bound in its
    /// place.
    pub fn writes(&self, input: &Tensor) -> bool {
        let buffer = input.view().buffer();
        let Some(i) = self
            .0
            .inputs
            .iter()
            .position(|t| t.view().buffer().same_memory(buffer))
        else {
            return false;
        };
        self.0.nodes.iter().any(|n| match &n.outputs {
            NodeOutputs::Into(refs) => refs.iter().any(|r| r.source == Source::Input(i)),
            NodeOutputs::New(_) => false,
        })
    }

    /// The number of recorded op calls.
    pub fn len(&self) -> usize {
        self.0.nodes.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.nodes.is_empty()
    }

    /// The recorded ops' names, in call order.
    pub fn ops(&self) -> impl Iterator<Item = &str> {
        self.0.nodes.iter().map(|n| n.op.as_str())
    }

    /// The graph's inputs: for each buffer read before any recorded call wrote it, the first
    /// tensor of it that a call read. A replay reads these unless bound to other tensors.
    pub fn inputs(&self) -> &[Tensor] {
        &self.0.inputs
    }

    /// The id of the device the graph was captured on.
    pub fn device_id(&self) -> &str {
        &self.0.device_id
    }

    /// Replays the graph on `queue` (a queue of the capture's device). Each binding
    /// `(captured, new)` replaces the input whose buffer `captured` views by the buffer of
    /// `new`, which must have `captured`'s dtype and layout; every view the graph takes of that
    /// input moves with it. The work is queued, as for eager calls.
    pub fn replay(&self, queue: &dyn Queue, bindings: &[(&Tensor, &Tensor)]) -> Result<Replay> {
        self.run(queue, bindings, false)
    }

    /// Replays the graph through the eager entry points ([`crate::call`] and
    /// [`crate::call_into`], validation included, call by call): the same work as the code that
    /// was captured issuing the same calls, without that code. [`Graph::replay`] is the fast
    /// form.
    pub fn replay_eager(
        &self,
        queue: &dyn Queue,
        bindings: &[(&Tensor, &Tensor)],
    ) -> Result<Replay> {
        self.run(queue, bindings, true)
    }

    fn run(
        &self,
        queue: &dyn Queue,
        bindings: &[(&Tensor, &Tensor)],
        eager: bool,
    ) -> Result<Replay> {
        if queue.device_id() != self.0.device_id {
            return Err(Error::invalid_argument(format!(
                "graph replay: the graph was captured on {} but the queue is on {}",
                self.0.device_id,
                queue.device_id()
            )));
        }
        let mut inputs: Vec<Bound> = self
            .0
            .inputs
            .iter()
            .map(|t| Bound {
                buffer: t.view().buffer().clone(),
                shift: 0,
            })
            .collect();
        for (k, (captured, new)) in bindings.iter().enumerate() {
            let i = self
                .0.inputs
                .iter()
                .position(|t| t.view().buffer().same_memory(captured.view().buffer()))
                .ok_or_else(|| {
                    Error::invalid_argument(format!(
                        "graph replay: binding {k} names a tensor that is not an input of the graph (its memory is none of the {} buffers the graph reads before writing)",
                        self.0.inputs.len()
                    ))
                })?;
            if new.dtype() != captured.dtype() || new.desc() != captured.desc() {
                return Err(Error::invalid_argument(format!(
                    "graph replay: binding {k} is {} {} with strides {:?} at element offset {}, expected the captured layout {} {} with strides {:?} at element offset {}",
                    new.dtype(),
                    shape_str(new.shape()),
                    new.strides(),
                    new.desc().offset,
                    captured.dtype(),
                    shape_str(captured.shape()),
                    captured.strides(),
                    captured.desc().offset
                )));
            }
            check_tensor(queue, "graph replay", Operand::Input(k), new)?;
            inputs[i] = Bound {
                buffer: new.view().buffer().clone(),
                shift: new.view().offset() as i128 - captured.view().offset() as i128,
            };
        }
        let mut replay = Replay {
            graph: self.clone(),
            inputs,
            outputs: Vec::with_capacity(self.0.nodes.len()),
        };
        for node in &self.0.nodes {
            let ins = node
                .inputs
                .iter()
                .map(|r| r.as_ref().map(|r| replay.resolve(r)).transpose())
                .collect::<Result<Vec<_>>>()?;
            let in_refs: Vec<Option<&Tensor>> = ins.iter().map(Option::as_ref).collect();
            let context = |e: Error| e.context(format!("graph replay of {}", node.op));
            match &node.outputs {
                NodeOutputs::New(specs) => {
                    let outs = if eager {
                        crate::call(queue, &node.op, &in_refs, &node.attrs).map_err(context)?
                    } else {
                        let device = queue.device();
                        let outs = specs
                            .iter()
                            .map(|(dtype, shape)| Tensor::empty(&*device, *dtype, shape))
                            .collect::<Result<Vec<_>>>()?;
                        let run = match &node.prepared {
                            Some(p) => p.0.launch(queue, ins.iter().flatten().chain(outs.iter())),
                            None => execute(queue, &node.op, &in_refs, outs.clone(), &node.attrs),
                        };
                        through_queue(queue, run).map_err(context)?;
                        outs
                    };
                    replay.outputs.push(
                        outs.iter()
                            .map(|t| Some(t.view().buffer().clone()))
                            .collect(),
                    );
                }
                NodeOutputs::Into(refs) => {
                    let outs = refs
                        .iter()
                        .map(|r| replay.resolve(r))
                        .collect::<Result<Vec<_>>>()?;
                    if eager {
                        let out_refs: Vec<&Tensor> = outs.iter().collect();
                        crate::call_into(queue, &node.op, &in_refs, &out_refs, &node.attrs)
                            .map_err(context)?;
                    } else {
                        // A binding may make an output share memory with an input that it did
                        // not share at capture.
                        for (i, out) in outs.iter().enumerate() {
                            for (j, input) in in_refs.iter().enumerate() {
                                if input.is_some_and(|t| overlaps(out, t)) {
                                    return Err(Error::invalid_argument(format!(
                                        "graph replay of {}: output {i} overlaps input {j} in memory under the bindings given; an output must not alias an input",
                                        node.op
                                    )));
                                }
                            }
                            for (j, other) in outs.iter().enumerate().skip(i + 1) {
                                if overlaps(out, other) {
                                    return Err(Error::invalid_argument(format!(
                                        "graph replay of {}: outputs {i} and {j} overlap in memory under the bindings given",
                                        node.op
                                    )));
                                }
                            }
                        }
                        let run = match &node.prepared {
                            Some(p) => p.0.launch(queue, ins.iter().flatten().chain(outs.iter())),
                            None => execute(queue, &node.op, &in_refs, outs, &node.attrs),
                        };
                        through_queue(queue, run).map_err(context)?;
                    }
                    replay.outputs.push(Vec::new());
                }
            }
            for free in &self.0.frees[replay.outputs.len() - 1] {
                if let Source::Output { node, index } = *free {
                    if let Some(slot) = replay.outputs.get_mut(node).and_then(|o| o.get_mut(index))
                    {
                        *slot = None;
                    }
                }
            }
        }
        Ok(replay)
    }
}

impl Replay {
    fn buffer(&self, source: Source) -> Result<(&Buffer, i128)> {
        match source {
            Source::Input(i) => self
                .inputs
                .get(i)
                .map(|b| (&b.buffer, b.shift))
                .ok_or_else(|| Error::internal("graph replay: input out of range")),
            Source::Output { node, index } => match self.outputs.get(node).and_then(|o| o.get(index)) {
                Some(Some(b)) => Ok((b, 0)),
                Some(None) => Err(Error::invalid_argument(format!(
                    "graph replay: output {index} of call {node} ({}) was freed: the captured code had dropped it by the end of the capture, so a replay does not keep it",
                    self.graph.0.nodes[node].op
                ))),
                None => Err(Error::internal("graph replay: an output read before its call")),
            },
        }
    }

    fn resolve(&self, r: &Ref) -> Result<Tensor> {
        let (buffer, shift) = self.buffer(r.source)?;
        let offset = usize::try_from(r.offset as i128 + shift).map_err(|_| {
            Error::out_of_bounds(format!(
                "graph replay: a view at byte {} moves before the start of its bound buffer",
                r.offset
            ))
        })?;
        // A binding moves every view of its buffer: one of another dtype may land off its
        // element size, which no kernel may read (checked for every operand, here, once).
        let size = r.desc.dtype.size_in_bytes();
        if !offset.is_multiple_of(size) {
            return Err(Error::invalid_argument(format!(
                "graph replay: under the bindings given, a {} view starts at byte {offset} of its buffer, which is not a multiple of its {size}-byte elements",
                r.desc.dtype
            )));
        }
        Tensor::new(buffer.view(offset, r.len)?, r.desc.clone())
    }

    /// The tensor of this replay that stands where `captured` stood in the capture: the same
    /// view of the replay's buffer (a new output, or an input as bound). Fails for a tensor
    /// that the capture neither read nor made.
    pub fn get(&self, captured: &Tensor) -> Result<Tensor> {
        let buffer = captured.view().buffer();
        let source = self
            .graph
            .0.ids
            .iter()
            .find(|(id, _)| id.is(buffer))
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                Error::invalid_argument(
                    "graph replay: the tensor given is neither an input of the graph nor made by one of its calls",
                )
            })?;
        self.resolve(&Ref {
            source,
            offset: captured.view().offset(),
            len: captured.view().len(),
            desc: captured.desc().clone(),
        })
    }
}
