//! `concat`, `index_select`, `embedding` and `gather`.

use std::sync::Mutex;

use anyaccel_hal::{DType, Error, OpCall, Result};

use super::elementwise::copy_elements;
use super::layout::{par_ranges, walk, GRAIN};
use super::{Body, Bound, TView};
use crate::attrs::Attrs;

/// How to find source elements: for each output element, `src` offset (without the indexed
/// dim), the offset of its index, and the output offset.
struct Indexed {
    shape: Vec<usize>,
    src_strides: Vec<usize>,
    idx_strides: Vec<usize>,
    /// Stride of the indexed dim in the source.
    src_step: usize,
    /// Size of the indexed dim: valid indices are 0..limit.
    limit: usize,
    axis: usize,
}

/// The index (i32 or i64) at element offset `off` of `idx`, as i64.
pub(crate) fn read_index(idx: &TView, off: usize) -> i64 {
    // SAFETY: offsets come from the index view's layout; the dtype was checked to be i32 or i64.
    unsafe {
        if idx.desc.dtype == DType::I32 {
            idx.get::<i32>(off) as i64
        } else {
            idx.get::<i64>(off)
        }
    }
}

/// Keeps the first bad index a task saw (the first task to report wins).
fn note_bad(bad: &Mutex<Option<i64>>, first: Option<i64>) {
    if let Some(i) = first {
        bad.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(i);
    }
}

/// The error of a bad index, if a task saw one.
fn bad_index(bad: Mutex<Option<i64>>, op: &str, limit: usize, axis: usize) -> Result<()> {
    match bad.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(i) => Err(Error::out_of_bounds(format!(
            "{op}: index {i} out of range 0..{limit} along axis {axis}"
        ))),
        None => Ok(()),
    }
}

/// The trailing dims of `plan` along which the index stays put and both the source and the
/// output run with unit stride, merged into one run: how many dims, and the run's length.
fn inner_run(plan: &Indexed, out: &TView) -> (usize, usize) {
    let r = plan.shape.len();
    let (mut dims, mut len) = (0, 1usize);
    while dims < r {
        let k = r - 1 - dims;
        let n = plan.shape[k];
        let unit = plan.src_strides[k] == len && out.desc.strides[k] == len;
        if n != 1 && (plan.idx_strides[k] != 0 || !unit) {
            break;
        }
        len *= n;
        dims += 1;
    }
    (dims, len)
}

fn run_indexed<T: Copy>(
    op: &str,
    plan: &Indexed,
    src: &TView,
    idx: &TView,
    out: &TView,
) -> Result<()> {
    let bad: Mutex<Option<i64>> = Mutex::new(None);
    // Where the index stays put along a run of unit stride in the source and the output (an
    // embedding row, index_select along a leading axis), each index copies the whole run.
    let (dims, run) = inner_run(plan, out);
    let outer = plan.shape.len() - if run > 1 { dims } else { 0 };
    let (run, shape) = (run.max(1), &plan.shape[..outer]);
    let count: usize = shape.iter().product();
    par_ranges(count, (GRAIN / run).max(1), |r| {
        let mut first_bad = None;
        walk(
            shape,
            [
                &plan.src_strides[..outer],
                &plan.idx_strides[..outer],
                &out.desc.strides[..outer],
            ],
            [src.desc.offset, idx.desc.offset, out.desc.offset],
            r,
            |_, [os, oi, oo]| {
                let i = read_index(idx, oi);
                if i < 0 || i as u64 >= plan.limit as u64 {
                    first_bad.get_or_insert(i);
                    return;
                }
                // SAFETY: the index is within 0..limit, so the source offset stays inside the
                // source layout, and with it the `run` elements of unit stride from there; the
                // output's run comes from the output's layout, which overlaps no input, and
                // each is written by one task.
                unsafe {
                    let from = src.ptr::<T>(os + i as usize * plan.src_step);
                    if run == 1 {
                        out.set(oo, from.read());
                    } else {
                        std::ptr::copy_nonoverlapping(from, out.ptr::<T>(oo), run);
                    }
                }
            },
        );
        note_bad(&bad, first_bad);
        Ok(())
    })?;
    bad_index(bad, op, plan.limit, plan.axis)
}

fn run_by_size(op: &str, plan: &Indexed, src: &TView, idx: &TView, out: &TView) -> Result<()> {
    match src.desc.dtype.size_in_bytes() {
        1 => run_indexed::<u8>(op, plan, src, idx, out),
        2 => run_indexed::<u16>(op, plan, src, idx, out),
        4 => run_indexed::<u32>(op, plan, src, idx, out),
        _ => run_indexed::<u64>(op, plan, src, idx, out),
    }
}

fn narrowed<'a>(v: &TView<'a>, axis: usize, start: usize, len: usize) -> TView<'a> {
    let mut out = v.clone();
    let desc = out.desc.to_mut();
    desc.offset = v.desc.offset + start * v.desc.strides[axis];
    desc.shape[axis] = len;
    out
}

/// The kernel of one indexing op.
pub(crate) fn kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let rank = call.inputs[0].as_ref().map(|t| t.rank()).unwrap_or(0);
    let op = call.op.clone();
    Ok(match op.as_str() {
        "concat" => {
            let axis = attrs.axis("axis", None, rank)?;
            Box::new(move |b: &Bound| {
                let out = b.out(0);
                let mut start = 0;
                for x in b.inputs.iter().flatten() {
                    let len = x.desc.shape[axis];
                    copy_elements(x, &narrowed(out, axis, start, len))?;
                    start += len;
                }
                Ok(())
            })
        }
        "index_select" | "gather" => {
            let axis = attrs.axis("axis", None, rank)?;
            Box::new(move |b: &Bound| {
                let (x, idx, out) = (b.input(0)?, b.input(1)?, b.out(0));
                let mut src_strides = x.desc.strides.clone();
                src_strides[axis] = 0;
                let idx_strides = if op == "gather" {
                    idx.desc.strides.clone()
                } else {
                    let mut s = vec![0; out.desc.rank()];
                    s[axis] = idx.desc.strides[0];
                    s
                };
                let plan = Indexed {
                    shape: out.desc.shape.clone(),
                    src_strides,
                    idx_strides,
                    src_step: x.desc.strides[axis],
                    limit: x.desc.shape[axis],
                    axis,
                };
                run_by_size(&op, &plan, x, idx, out)
            })
        }
        _ => Box::new(move |b: &Bound| {
            // embedding: weight [V, D], indices S -> out S + [D]
            let (w, idx, out) = (b.input(0)?, b.input(1)?, b.out(0));
            let r = idx.desc.rank();
            let mut src_strides = vec![0; r + 1];
            src_strides[r] = w.desc.strides[1];
            let mut idx_strides = idx.desc.strides.clone();
            idx_strides.push(0);
            let plan = Indexed {
                shape: out.desc.shape.clone(),
                src_strides,
                idx_strides,
                src_step: w.desc.strides[0],
                limit: w.desc.shape[0],
                axis: 0,
            };
            run_by_size("embedding", &plan, w, idx, out)
        }),
    })
}
