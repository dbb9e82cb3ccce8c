//! `softmax`, `log_softmax`, `layer_norm`, `rms_norm`, `rope` and `attention`.

use anyaccel_hal::{KernelArg, OpCall, Result, Tensor};

use super::elementwise::{input, output};
use super::{base_offset, buf, dtype_defs, Ctx, Family, KernelSpec, Layouts, EW_GROUPS};
use crate::attention::{mask_strides, row_strides, Geometry, RowSpace};
use crate::attrs::Attrs;
use crate::catalog::misrouted;
use crate::plan::eps;

/// Most work-groups of a row launch (rows beyond are walked by a group-stride loop).
const MAX_GROUPS: usize = 16384;
/// The most bytes of attention scores held at once: longer launches are cut into parts.
const SCORES_BYTES: usize = 64 << 20;

pub(crate) fn launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let attrs = Attrs::of(call)?;
    match call.op.as_str() {
        "softmax" | "log_softmax" => softmax(ctx, call, &attrs),
        "layer_norm" | "rms_norm" => norm(ctx, call, &attrs),
        "rope" => rope(ctx, call, &attrs),
        "attention" => attention(ctx, call, &attrs),
        other => Err(misrouted(other)),
    }
}

/// Rows of `x` along `axis`: operand 0 `first`, operand 1 `second`, the axis dropped.
fn rows(first: &Tensor, second: &Tensor, axis: usize) -> Layouts {
    let mut shape = first.shape().to_vec();
    shape[axis] = 1;
    Layouts::new(&shape)
        .with(first.strides().to_vec(), base_offset(first))
        .with(second.strides().to_vec(), base_offset(second))
        .collapse()
}

fn softmax(ctx: &Ctx<'_>, call: &OpCall, attrs: &Attrs<'_>) -> Result<()> {
    let op = call.op.as_str();
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let axis = attrs.axis("axis", Some(-1), x.rank())?;
    let len = x.shape()[axis];
    let lines = x.numel() / len.max(1);
    if len == 0 || lines == 0 {
        return Ok(());
    }
    let k = rows(out, x, axis);
    let wg = ctx.row_wg(len);
    let mut spec = KernelSpec::new(Family::Nn, "sm_lines")
        .flag("SM_LINES")
        .def("KRANK", k.rank())
        .def("WG", wg);
    if op == "log_softmax" {
        spec = spec.flag("SM_LOG");
    }
    let spec = dtype_defs(spec, "X", x.dtype());
    let args = [
        buf(out),
        buf(x),
        k.lay(op)?.arg(),
        KernelArg::scalar(lines as i64),
        KernelArg::scalar(len as i64),
        KernelArg::scalar(x.strides()[axis] as i64),
        KernelArg::scalar(out.strides()[axis] as i64),
    ];
    ctx.run(&spec, ctx.groups(lines.min(MAX_GROUPS), wg), &args)
}

fn norm(ctx: &Ctx<'_>, call: &OpCall, attrs: &Attrs<'_>) -> Result<()> {
    let op = call.op.as_str();
    let rms = op == "rms_norm";
    let eps = eps(attrs)?;
    let (x, out) = (input(call, 0)?, output(call, 0)?);
    let w = call.inputs.get(1).and_then(|t| t.as_ref());
    let b = call.inputs.get(2).and_then(|t| t.as_ref());
    let axis = x.rank() - 1;
    let len = x.shape()[axis];
    let nrows = x.numel() / len.max(1);
    if len == 0 || nrows == 0 {
        return Ok(());
    }
    let k = rows(out, x, axis);
    let wg = ctx.row_wg(len);
    let mut spec = KernelSpec::new(Family::Nn, "ln_rows")
        .flag("LN_ROWS")
        .def("KRANK", k.rank())
        .def("WG", wg);
    if rms {
        spec = spec.flag("LN_RMS");
    }
    if w.is_some() {
        spec = spec.flag("LN_W");
    }
    if b.is_some() {
        spec = spec.flag("LN_B");
    }
    let spec = dtype_defs(spec, "X", x.dtype());
    // An absent weight or bias is never read: x's buffer stands in for it.
    let vec_arg = |t: Option<&Tensor>| match t {
        Some(t) => (buf(t), base_offset(t), t.strides()[0] as i64),
        None => (buf(x), 0, 0),
    };
    let (wa, w_off, w_st) = vec_arg(w);
    let (ba, b_off, b_st) = vec_arg(b);
    let args = [
        buf(out),
        buf(x),
        wa,
        ba,
        k.lay(op)?.arg(),
        KernelArg::scalar(nrows as i64),
        KernelArg::scalar(len as i64),
        KernelArg::scalar(x.strides()[axis] as i64),
        KernelArg::scalar(out.strides()[axis] as i64),
        KernelArg::scalar(w_off),
        KernelArg::scalar(w_st),
        KernelArg::scalar(b_off),
        KernelArg::scalar(b_st),
        KernelArg::scalar(eps as f32),
    ];
    ctx.run(&spec, ctx.groups(nrows.min(MAX_GROUPS), wg), &args)
}

fn rope(ctx: &Ctx<'_>, call: &OpCall, attrs: &Attrs<'_>) -> Result<()> {
    let op = call.op.as_str();
    let interleaved = attrs.flag("interleaved", false)?;
    let (x, cos, sin, out) = (
        input(call, 0)?,
        input(call, 1)?,
        input(call, 2)?,
        output(call, 0)?,
    );
    let r = x.rank();
    let (seq, d) = (x.shape()[r - 2], x.shape()[r - 1]);
    let half = d / 2;
    let nrows = x.numel() / d.max(1);
    if half == 0 || nrows == 0 {
        return Ok(());
    }
    // Rows: every dimension but the last, numbered row-major (which merging dimensions
    // preserves), so that the row index modulo seq is the position s.
    let k = rows(x, out, r - 1);
    let c = Layouts::new(&[seq, half])
        .with(cos.strides().to_vec(), base_offset(cos))
        .with(sin.strides().to_vec(), base_offset(sin));
    let spec = KernelSpec::new(Family::Nn, "rope_pairs")
        .flag("ROPE_PAIRS")
        .def("KRANK", k.rank())
        .def("ROPE_INTERLEAVED", interleaved as u8);
    let spec = dtype_defs(spec, "X", x.dtype());
    let args = [
        buf(out),
        buf(x),
        buf(cos),
        buf(sin),
        k.lay(op)?.arg(),
        c.lay(op)?.arg(),
        KernelArg::scalar(nrows as i64),
        KernelArg::scalar(seq as i64),
        KernelArg::scalar(half as i64),
        KernelArg::scalar(x.strides()[r - 1] as i64),
        KernelArg::scalar(out.strides()[r - 1] as i64),
    ];
    ctx.run(&spec, ctx.grid(nrows * half, EW_GROUPS), &args)
}

fn attention(ctx: &Ctx<'_>, call: &OpCall, attrs: &Attrs<'_>) -> Result<()> {
    let op = call.op.as_str();
    let (q, k, v, out) = (
        input(call, 0)?,
        input(call, 1)?,
        input(call, 2)?,
        output(call, 0)?,
    );
    let geo = Geometry::of(attrs, q.desc(), k.desc())?;
    let r = q.rank();
    let (lq, d) = (q.shape()[r - 2], q.shape()[r - 1]);
    let (lk, dv) = (k.shape()[r - 2], v.shape()[r - 1]);
    let scale = attrs.float_opt("scale")?.unwrap_or(1.0 / (d as f64).sqrt());
    let nrows: usize = q.shape()[..r - 1].iter().product();
    if nrows == 0 || dv == 0 {
        return Ok(());
    }
    // Rows: q's dimensions but the last; k and v follow the batch dimensions only (repeated
    // over the group of grouped-query heads).
    let rs = RowSpace::new(
        &geo,
        q.shape(),
        q.strides(),
        out.strides(),
        k.strides(),
        v.strides(),
    );
    let rows_only = |s: &[usize]| {
        let mut s = s.to_vec();
        s.push(0);
        s
    };
    let layouts = Layouts::new(&rs.dims)
        .with(rs.q.clone(), base_offset(q))
        .with(rs.out.clone(), base_offset(out))
        .with(rows_only(&rs.k), base_offset(k))
        .with(rows_only(&rs.v), base_offset(v))
        .collapse();
    let wg = 64u32.min(ctx.wg());
    let mut spec = KernelSpec::new(Family::Nn, "attn_rows")
        .flag("ATTN_ROWS")
        .def("KRANK", layouts.rank())
        .def("WG", wg)
        .def("ATTN_CAUSAL", geo.causal as u8);
    // The mask's layout over the rows (one operand) and its stride along the keys; without a
    // mask, q's buffer stands in and is never read.
    let mask = call.inputs.get(3).and_then(|t| t.as_ref());
    let (mask_buf, mask_lay, mask_sj) = match mask {
        Some(m) => {
            let ms = mask_strides("attention", m.desc(), q.desc(), k.desc())?;
            let rows = Layouts::new(&rs.dims)
                .with(row_strides(&geo, r, &ms), base_offset(m))
                .collapse();
            spec = spec
                .flag("ATTN_MASK")
                .def("MRANK", rows.rank())
                .def("MT", super::dt(m.dtype()));
            if m.dtype() == anyaccel_hal::DType::Bool {
                spec = spec.flag("ATTN_MASK_BOOL");
            }
            (buf(m), rows.lay(op)?, ms[r - 1] as i64)
        }
        None => (buf(q), Layouts::new(&[1]).with(vec![0], 0).lay(op)?, 0),
    };
    let spec = dtype_defs(spec, "X", q.dtype());
    let lay = layouts.lay(op)?;
    let per_launch = (SCORES_BYTES / (lk.max(1) * 4)).clamp(1, nrows);
    let scores = ctx.scratch(per_launch * lk * 4)?;
    let mut row0 = 0;
    while row0 < nrows {
        let n = per_launch.min(nrows - row0);
        let args = [
            buf(out),
            buf(q),
            buf(k),
            buf(v),
            mask_buf.clone(),
            mask_lay.arg(),
            KernelArg::scalar(mask_sj),
            KernelArg::Buffer(scores.whole()),
            lay.arg(),
            KernelArg::scalar(row0 as i64),
            KernelArg::scalar(n as i64),
            KernelArg::scalar(lq as i64),
            KernelArg::scalar(lk as i64),
            KernelArg::scalar(d as i64),
            KernelArg::scalar(dv as i64),
            KernelArg::scalar(q.strides()[r - 1] as i64),
            KernelArg::scalar(k.strides()[r - 2] as i64),
            KernelArg::scalar(k.strides()[r - 1] as i64),
            KernelArg::scalar(v.strides()[r - 2] as i64),
            KernelArg::scalar(v.strides()[r - 1] as i64),
            KernelArg::scalar(out.strides()[r - 1] as i64),
            KernelArg::scalar(scale as f32),
            KernelArg::scalar(geo.shift),
            KernelArg::scalar(geo.window as i64),
            KernelArg::scalar(geo.softcap as f32),
        ];
        ctx.run(&spec, ctx.groups(n.min(MAX_GROUPS), wg), &args)?;
        row0 += n;
    }
    Ok(())
}
