//! Remaps (`pad`, `flip`, `roll`, `repeat_interleave`, `tril`, `triu`) and line scatters
//! (`scatter`, `scatter_add`, `index_add`, `one_hot`): the rules of `crate::movement`, with the
//! kernels `mv_remap` and `ix_scatter` of `index.h`. A scatter reads back a flag word after its
//! launch (as the indexed reads do) to report an index out of range.

use anyaccel_hal::{DType, KernelArg, OpCall, Result, Tensor, TensorDesc};

use super::elementwise::{copy_into, input, output};
use super::{base_offset, buf, dt, Ctx, Family, KernelSpec, Layouts, EW_GROUPS};
use crate::attrs::Attrs;
use crate::catalog::op_of;
use crate::convert;
use crate::movement::{bad_index, lines, remap, scatter_params};

/// Runs a remap.
pub(crate) fn remap_launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let plan = remap(op_of(op)?, &Attrs::of(call)?, x.desc())?;
    let n = out.numel();
    if n == 0 {
        return Ok(());
    }
    let params = plan.params(x.strides(), out.strides())?;
    let table = ctx.scratch(params.len() * 8)?;
    let bytes: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
    ctx.queue.write(&table.whole(), &bytes)?;
    let (lo, hi) = plan.band.unwrap_or((i64::MIN, i64::MAX));
    let spec = KernelSpec::new(Family::Index, "mv_remap")
        .flag("MV_REMAP")
        .def("ES", x.dtype().size_in_bytes())
        .def("RANK", out.rank())
        .def("BAND", plan.band.is_some() as u8);
    let args = [
        buf(out),
        buf(x),
        KernelArg::Buffer(table.whole()),
        KernelArg::scalar(n as i64),
        KernelArg::scalar(base_offset(x)),
        KernelArg::scalar(base_offset(out)),
        KernelArg::scalar(convert::value_bits(plan.fill, out.dtype())),
        KernelArg::scalar(lo),
        KernelArg::scalar(hi),
    ];
    ctx.run(&spec, ctx.grid(n, EW_GROUPS), &args)
}

/// A tensor's layout with its offset counted from the start of its buffer.
fn from_buffer_start(t: &Tensor) -> TensorDesc {
    TensorDesc {
        offset: base_offset(t) as usize,
        ..t.desc().clone()
    }
}

/// Runs a line scatter.
pub(crate) fn scatter_launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let name = call.op.as_str();
    let op = op_of(name)?;
    let (x, idx, src, out) = (
        input(call, 0)?,
        input(call, 1)?,
        input(call, 2)?,
        output(call, 0)?,
    );
    let attrs = Attrs::of(call)?;
    let (axis, alpha, add) = scatter_params(op, &attrs, out.rank())?;
    let l = lines(
        op,
        axis,
        &from_buffer_start(x),
        &from_buffer_start(idx),
        &from_buffer_start(src),
        &from_buffer_start(out),
    );
    if !l.covers {
        copy_into(ctx, name, x, out)?;
    }
    let total = l.count().checked_mul(l.n).unwrap_or(0);
    if total == 0 {
        return Ok(());
    }
    let d = out.dtype();
    let alpha_bits = match d {
        DType::F64 => alpha.to_bits() as i64,
        _ if d.is_float() => (alpha as f32).to_bits() as i64,
        _ => alpha as i64,
    };
    let mut layouts = Layouts::new(&l.shape);
    for k in 0..4 {
        layouts = layouts.with(l.strides[k].clone(), l.offsets[k] as i64);
    }
    let layouts = layouts.collapse();
    let lay = layouts.lay(name)?;
    let spec = KernelSpec::new(Family::Index, "ix_scatter")
        .flag("IX_SCATTER")
        .def("XT", dt(d))
        .def("ES", d.size_in_bytes())
        .def("XT_F64", (d == DType::F64) as u8)
        .def("IT", dt(idx.dtype()))
        .def("SC_ADD", add as u8)
        .def("SC_INT", (!d.is_float()) as u8)
        .def("RANK", layouts.rank())
        .def("NOPS", layouts.ops.len());
    let flag = ctx.scratch(4)?;
    ctx.queue.fill(&flag.whole(), &0i32.to_le_bytes())?;
    let args = [
        buf(out),
        buf(x),
        buf(idx),
        buf(src),
        KernelArg::Buffer(flag.whole()),
        lay.arg(),
        KernelArg::scalar(total as i64),
        KernelArg::scalar(l.n as i64),
        KernelArg::scalar(l.k as i64),
        KernelArg::scalar(l.steps[0] as i64),
        KernelArg::scalar(l.steps[1] as i64),
        KernelArg::scalar(l.steps[2] as i64),
        KernelArg::scalar(l.steps[3] as i64),
        KernelArg::scalar(alpha_bits),
    ];
    ctx.run(&spec, ctx.grid(total, EW_GROUPS), &args)?;
    let mut raw = [0u8; 4];
    ctx.queue.read(&flag.whole(), &mut raw)?;
    if i32::from_le_bytes(raw) == 0 {
        return Ok(());
    }
    let bytes = idx.to_bytes(ctx.queue)?;
    Err(bad_index(name, &bytes, idx.dtype(), l.n, axis))
}
