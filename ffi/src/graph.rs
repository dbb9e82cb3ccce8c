//! Recorded op graphs: the op calls made on a queue between `anyaccel_graph_capture_begin` and
//! `anyaccel_graph_capture_end`, replayed with new input tensors of the same layouts.

use std::sync::Arc;

use facade::ops::{Graph, Replay};
use facade::{Device, Result};

use crate::handle::{self, from_ptr, to_ptr, Kind};
use crate::queue::{anyaccel_queue_t, queue};
use crate::tensor::{anyaccel_tensor_t, register_tensor, tensor, TensorObj};
use crate::{anyaccel_status, check_device, check_writable, guard, guard_out, slice_arg};

/// A recorded sequence of op calls on one device. Opaque.
pub struct anyaccel_graph_t {
    _opaque: [u8; 0],
}

/// The tensors of one replay of a graph. Opaque.
pub struct anyaccel_replay_t {
    _opaque: [u8; 0],
}

pub(crate) struct GraphObj {
    graph: Graph,
    device: Arc<dyn Device>,
}

pub(crate) struct ReplayObj {
    replay: Replay,
    device: Arc<dyn Device>,
}

fn graph(g: *const anyaccel_graph_t) -> Result<Arc<GraphObj>> {
    handle::get(from_ptr(g), Kind::Graph, "graph")
}

/// Starts recording the op calls that this thread makes on `q` (through `anyaccel_op`,
/// `anyaccel_op_into` and the typed functions) until `anyaccel_graph_capture_end` on the same
/// thread. The calls run as usual while recorded. A thread records one capture at a time.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_graph_capture_begin(q: *mut anyaccel_queue_t) -> anyaccel_status {
    guard("anyaccel_graph_capture_begin", || {
        let q = queue(q)?;
        Graph::begin_capture(&*q.queue)
    })
}

/// Ends this thread's capture on `q` and sets `*out` to its graph (destroy it with
/// `anyaccel_graph_destroy`). A tensor that a recorded call read before any recorded call wrote
/// it is an input of the graph, kept by it; a replay reads it unless bound to another tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_graph_capture_end(
    q: *mut anyaccel_queue_t,
    out: *mut *mut anyaccel_graph_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_graph_capture_end", "out", out, || {
            let q = queue(q)?;
            let graph = Graph::end_capture(&*q.queue)?;
            let obj = GraphObj {
                graph,
                device: q.device.clone(),
            };
            Ok(to_ptr(handle::insert(Kind::Graph, Arc::new(obj))?))
        })
    }
}

/// Sets `*out` to the number of op calls the graph recorded.
///
/// # Safety
/// `out` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_graph_op_count(
    g: *mut anyaccel_graph_t,
    out: *mut usize,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a `size_t` by the caller's contract.
    unsafe {
        guard_out("anyaccel_graph_op_count", "out", out, || {
            Ok(graph(g)?.graph.len())
        })
    }
}

/// Replays graph `g` on `q` (a queue of the capture's device) and sets `*out` to the replay's
/// tensors (read them with `anyaccel_replay_get`; destroy with `anyaccel_replay_destroy`).
/// Binding `i` replaces the graph input that `captured[i]` views by the memory of `bound[i]`,
/// which must have the dtype, shape, strides and offset of `captured[i]`; an input that a
/// recorded call wrote is written in the bound tensor, which must then be writable. The work
/// is queued, as for `anyaccel_op`.
///
/// # Safety
/// `captured` and `bound` must be NULL or point to `n_bindings` handles each (NULL allowed when
/// `n_bindings` is 0); `out` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_graph_replay(
    g: *mut anyaccel_graph_t,
    q: *mut anyaccel_queue_t,
    captured: *const *mut anyaccel_tensor_t,
    bound: *const *mut anyaccel_tensor_t,
    n_bindings: usize,
    out: *mut *mut anyaccel_replay_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_graph_replay", "out", out, || {
            let g = graph(g)?;
            let q = queue(q)?;
            check_device("queue", &q.device, &g.device)?;
            // Inside the outer `unsafe`: NULL or `n_bindings` handles each, by the caller's
            // contract.
            let captured = slice_arg(captured, n_bindings, "captured")?;
            let bound = slice_arg(bound, n_bindings, "bound")?;
            let mut pairs = Vec::with_capacity(n_bindings);
            for i in 0..n_bindings {
                let c = tensor(captured[i], &format!("captured[{i}]"))?;
                let b = tensor(bound[i], &format!("bound[{i}]"))?;
                check_device(&format!("bound[{i}]"), &b.device, &q.device)?;
                if g.graph.writes(&c.tensor) {
                    check_writable(&format!("bound[{i}]"), b.read_only)?;
                }
                pairs.push((c, b));
            }
            let bindings: Vec<_> = pairs.iter().map(|(c, b)| (&c.tensor, &b.tensor)).collect();
            let replay = g.graph.replay(&*q.queue, &bindings)?;
            let obj = ReplayObj {
                replay,
                device: q.device.clone(),
            };
            Ok(to_ptr(handle::insert(Kind::Replay, Arc::new(obj))?))
        })
    }
}

/// Sets `*out` to a new tensor handle for the tensor of replay `r` that stands where `captured`
/// stood in the capture (a tensor the captured calls made and the caller still held when the
/// capture ended, or an input of the graph, as bound). Destroy it with
/// `anyaccel_tensor_destroy`.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_replay_get(
    r: *mut anyaccel_replay_t,
    captured: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_replay_get", "out", out, || {
            let r: Arc<ReplayObj> = handle::get(from_ptr(r), Kind::Replay, "replay")?;
            let c = tensor(captured, "captured")?;
            let t = r.replay.get(&c.tensor)?;
            register_tensor(TensorObj {
                tensor: t,
                device: r.device.clone(),
                read_only: false,
            })
        })
    }
}

/// Releases a replay (tensors taken from it with `anyaccel_replay_get` stay valid).
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_replay_destroy(r: *mut anyaccel_replay_t) -> anyaccel_status {
    guard("anyaccel_replay_destroy", || {
        handle::remove::<ReplayObj>(from_ptr(r), Kind::Replay, "replay").map(drop)
    })
}

/// Releases a graph (and the input tensors it kept).
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_graph_destroy(g: *mut anyaccel_graph_t) -> anyaccel_status {
    guard("anyaccel_graph_destroy", || {
        handle::remove::<GraphObj>(from_ptr(g), Kind::Graph, "graph").map(drop)
    })
}
