//! `concat`, `index_select`, `embedding` and `gather`.
//!
//! An out-of-range index is found by the kernel, which never reads outside the source: it
//! records the first bad output position in a 4-byte flag buffer. The launcher reads the flag
//! back right after the launch (a blocking read that waits for the queue) and returns
//! `OutOfBounds` naming the index, e.g. `index_select: index 9 out of range 0..4 along axis 0`.

use anyaccel_hal::{DType, Error, KernelArg, OpCall, Result, Tensor};

use super::elementwise::{copy_into, input, output};
use super::{base_offset, buf, dt, Ctx, Family, KernelSpec, Layouts, EW_GROUPS};
use crate::attrs::Attrs;

/// No bad index seen (the flag's initial value).
const CLEAN: i32 = i32::MAX;
/// Positions at or above this are recorded as this.
const SATURATED: i64 = i32::MAX as i64 - 1;

/// How an indexed read walks its tensors (see the host's `Indexed`).
struct Plan {
    src_strides: Vec<usize>,
    idx_strides: Vec<usize>,
    src_step: usize,
    limit: usize,
    axis: usize,
}

pub(crate) fn launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let attrs = Attrs::of(call)?;
    let x = input(call, 0)?;
    let out = output(call, 0)?;
    let rank = x.rank();
    let plan = match op {
        "concat" => {
            let axis = attrs.axis("axis", None, rank)?;
            let mut start = 0;
            for x in call.inputs.iter().flatten() {
                let len = x.shape()[axis];
                if len > 0 && x.numel() > 0 {
                    copy_into(ctx, op, x, &out.narrow(axis, start, len)?)?;
                }
                start += len;
            }
            return Ok(());
        }
        "index_select" => {
            let axis = attrs.axis("axis", None, rank)?;
            let idx = input(call, 1)?;
            let mut src_strides = x.strides().to_vec();
            src_strides[axis] = 0;
            let mut idx_strides = vec![0; out.rank()];
            idx_strides[axis] = idx.strides()[0];
            Plan {
                src_strides,
                idx_strides,
                src_step: x.strides()[axis],
                limit: x.shape()[axis],
                axis,
            }
        }
        "gather" => {
            let axis = attrs.axis("axis", None, rank)?;
            let idx = input(call, 1)?;
            let mut src_strides = x.strides().to_vec();
            src_strides[axis] = 0;
            Plan {
                src_strides,
                idx_strides: idx.strides().to_vec(),
                src_step: x.strides()[axis],
                limit: x.shape()[axis],
                axis,
            }
        }
        _ => {
            // embedding: weight [V, D], indices S -> out S + [D].
            let idx = input(call, 1)?;
            let r = idx.rank();
            let mut src_strides = vec![0; r + 1];
            src_strides[r] = x.strides()[1];
            let mut idx_strides = idx.strides().to_vec();
            idx_strides.push(0);
            Plan {
                src_strides,
                idx_strides,
                src_step: x.strides()[0],
                limit: x.shape()[0],
                axis: 0,
            }
        }
    };
    gather(ctx, op, x, input(call, 1)?, out, &plan)
}

fn gather(
    ctx: &Ctx<'_>,
    op: &str,
    x: &Tensor,
    idx: &Tensor,
    out: &Tensor,
    plan: &Plan,
) -> Result<()> {
    let n = out.numel();
    if n == 0 {
        return Ok(());
    }
    let layouts = Layouts::new(out.shape())
        .tensor(out)
        .with(plan.src_strides.clone(), base_offset(x))
        .with(plan.idx_strides.clone(), base_offset(idx))
        .collapse();
    let lay = layouts.lay(op)?;
    let spec = KernelSpec::new(Family::Index, "ix_gather")
        .flag("IX_GATHER")
        .def("ES", x.dtype().size_in_bytes())
        .def("IT", dt(idx.dtype()))
        .def("RANK", layouts.rank())
        .def("NOPS", layouts.ops.len());
    let flag = ctx.scratch(4)?;
    ctx.queue.fill(&flag.whole(), &CLEAN.to_le_bytes())?;
    let args = [
        buf(out),
        buf(x),
        buf(idx),
        KernelArg::Buffer(flag.whole()),
        lay.arg(),
        KernelArg::scalar(n as i64),
        KernelArg::scalar(plan.src_step as i64),
        KernelArg::scalar(plan.limit as i64),
    ];
    ctx.run(&spec, ctx.grid(n, EW_GROUPS), &args)?;
    let mut raw = [0u8; 4];
    ctx.queue.read(&flag.whole(), &mut raw)?;
    let pos = i32::from_le_bytes(raw);
    if pos == CLEAN {
        return Ok(());
    }
    Err(out_of_range(ctx, op, idx, out, plan, pos as i64)?)
}

/// The error for the bad index recorded at output position `pos`.
fn out_of_range(
    ctx: &Ctx<'_>,
    op: &str,
    idx: &Tensor,
    out: &Tensor,
    plan: &Plan,
    pos: i64,
) -> Result<Error> {
    // The index element that output position `pos` read.
    let mut rem = pos as usize;
    let mut at = base_offset(idx) as usize;
    for d in (0..out.rank()).rev() {
        let size = out.shape()[d].max(1);
        at += (rem % size) * plan.idx_strides[d];
        rem /= size;
    }
    let size = idx.dtype().size_in_bytes();
    let mut raw = vec![0u8; size];
    ctx.queue
        .read(&idx.view().buffer().view(at * size, size)?, &mut raw)?;
    let value = match idx.dtype() {
        DType::I32 => i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as i64,
        _ => i64::from_le_bytes(raw.try_into().unwrap_or([0; 8])),
    };
    let in_range = value >= 0 && (value as u64) < plan.limit as u64;
    Ok(if pos < SATURATED || !in_range {
        Error::out_of_bounds(format!(
            "{op}: index {value} out of range 0..{} along axis {}",
            plan.limit, plan.axis
        ))
    } else {
        // Past 2^31 - 2 output elements the position is saturated: the bad index lies beyond.
        Error::out_of_bounds(format!(
            "{op}: an index at output position {SATURATED} or later is out of range 0..{} along axis {}",
            plan.limit, plan.axis
        ))
    })
}
