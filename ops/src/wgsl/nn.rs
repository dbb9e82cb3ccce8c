//! `softmax`, `log_softmax`, `layer_norm`, `rms_norm`, `rope` and `attention`, computed and
//! accumulated in f32.

use anyaccel_hal::{DType, Error, OpCall, Result};

use super::{attrs, bind, count32, input, output, section, Access, Bound, Cx, Shader, Space};
use crate::attention::{mask_strides, row_strides, Geometry, RowSpace};
use crate::catalog::misrouted;
use crate::plan::eps;

pub(super) static NN: &str = include_str!("../../kernels/wgsl/nn.wgsl");

/// The most loop iterations the attention kernel lets one invocation run.
const LOOP_BUDGET: usize = 60000;

/// Scratch space of one attention launch, at most: rows are launched in chunks that fit.
const ATTENTION_SCRATCH_BYTES: usize = 64 << 20;

/// Runs one normalisation or attention op.
pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    match call.op.as_str() {
        "softmax" | "log_softmax" => softmax(cx, call),
        "layer_norm" | "rms_norm" => norm(cx, call),
        "rope" => rope(cx, call),
        "attention" => attention(cx, call),
        other => Err(misrouted(other)),
    }
}

/// Space 0 over the lines along `axis` (x, out), and the lines' count.
fn lines(op: &str, x: &Bound, out: &Bound, axis: usize) -> Result<(Space, u32)> {
    let mut shape = x.desc.shape.clone();
    let mut xs = x.desc.strides.clone();
    let mut os = out.desc.strides.clone();
    shape.remove(axis);
    xs.remove(axis);
    os.remove(axis);
    let rows = count32(op, "the lines", shape.iter().product())?;
    Ok((
        Space::new(&shape)
            .with(x.desc.offset, xs)
            .with(out.desc.offset, os),
        rows,
    ))
}

fn softmax(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let x_t = input(call, 0)?;
    let axis = a.axis("axis", Some(-1), x_t.rank())?;
    let (x, out) = (bind(x_t)?, bind(output(call, 0)?)?);
    let access = Access::of(x.desc.dtype);
    let (space, rows) = lines(op, &x, &out, axis)?;
    let mut sh = Shader::new(cx, op, "softmax");
    sh.tensor("x", &x, access, false)?;
    sh.tensor("out", &out, access, true)?;
    sh.space(space);
    sh.size("len", x.desc.shape[axis])?;
    sh.size("xs", x.desc.strides[axis])?;
    sh.size("os", out.desc.strides[axis])?;
    sh.include_owned(section(NN, "group_reduce")?.replace("$W", cx.wide()));
    let y = if op == "log_softmax" {
        "d - ls"
    } else {
        "exp_ieee(d) / s"
    };
    sh.body(
        &section(NN, "softmax")?
            .replace("$OUT", y)
            .replace("$W", cx.wide()),
    );
    sh.launch([rows as u64 * 256, 1, 1])
}

fn norm(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let rms = op == "rms_norm";
    let e = eps(&a)?;
    let x_t = input(call, 0)?;
    let axis = x_t.rank() - 1;
    let (x, out) = (bind(x_t)?, bind(output(call, 0)?)?);
    let access = Access::of(x.desc.dtype);
    let (space, rows) = lines(op, &x, &out, axis)?;
    let mut sh = Shader::new(cx, op, "norm");
    sh.tensor("x", &x, access, false)?;
    sh.tensor("out", &out, access, true)?;
    sh.space(space);
    sh.size("len", x.desc.shape[axis])?;
    sh.size("xs", x.desc.strides[axis])?;
    sh.size("os", out.desc.strides[axis])?;
    sh.f32("eps", e as f32);
    let mut y = "y".to_string();
    for (i, name) in [(1usize, "w"), (2, "b")] {
        if let Some(Some(t)) = call.inputs.get(i) {
            let b = bind(t)?;
            sh.tensor(name, &b, access, false)?;
            sh.size(&format!("{name}_off"), b.desc.offset)?;
            sh.size(&format!("{name}_s"), b.desc.strides[0])?;
            let read = format!("{}(ld_{name}(p.{name}_off + j * p.{name}_s))", cx.wide());
            y = if name == "w" {
                format!("{y} * {read}")
            } else {
                format!("{y} + {read}")
            };
        }
    }
    sh.include_owned(section(NN, "group_reduce")?.replace("$W", cx.wide()));
    sh.body(
        &section(NN, "norm")?
            .replace("$RMS", if rms { "true" } else { "false" })
            .replace("$Y", &y)
            .replace("$W", cx.wide()),
    );
    sh.launch([rows as u64 * 256, 1, 1])
}

fn rope(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let interleaved = a.flag("interleaved", false)?;
    let x_t = input(call, 0)?;
    let (x, out) = (bind(x_t)?, bind(output(call, 0)?)?);
    let (cos, sin) = (bind(input(call, 1)?)?, bind(input(call, 2)?)?);
    let access = Access::of(x.desc.dtype);
    let r = x.desc.rank();
    let n = count32(op, "the output", out.desc.numel())?;
    let mut sh = Shader::new(cx, op, "rope");
    sh.tensor("x", &x, access, false)?;
    sh.tensor("cos", &cos, access, false)?;
    sh.tensor("sin", &sin, access, false)?;
    sh.tensor("out", &out, access, true)?;
    sh.space(
        Space::new(&x.desc.shape)
            .with(x.desc.offset, x.desc.strides.clone())
            .with(out.desc.offset, out.desc.strides.clone()),
    );
    sh.u32("n", n);
    sh.size("d", x.desc.shape[r - 1])?;
    sh.size("seq", x.desc.shape[r - 2].max(1))?;
    sh.size("xs", x.desc.strides[r - 1])?;
    sh.u32("interleaved", interleaved as u32);
    for (name, t) in [("c", &cos), ("s", &sin)] {
        sh.size(&format!("{name}_off"), t.desc.offset)?;
        sh.size(&format!("{name}_s0"), t.desc.strides[0])?;
        sh.size(&format!("{name}_s1"), t.desc.strides[1])?;
    }
    sh.body(&section(NN, "rope")?.replace("$W", cx.wide()));
    sh.launch([n as u64, 1, 1])
}

/// `v` clamped to the range of i32 (a shift beyond it masks every key or none, as the clamped
/// one does: the row and key counts fit in u32).
fn clamp_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

fn attention(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let (q_t, k_t, v_t) = (input(call, 0)?, input(call, 1)?, input(call, 2)?);
    let geo = Geometry::of(&a, q_t.desc(), k_t.desc())?;
    let (q, k, v) = (bind(q_t)?, bind(k_t)?, bind(v_t)?);
    let out = bind(output(call, 0)?)?;
    let r = q.desc.rank();
    let (lq, d) = (q.desc.shape[r - 2], q.desc.shape[r - 1]);
    let (lk, dv) = (k.desc.shape[r - 2], v.desc.shape[r - 1]);
    let scale = a.float_opt("scale")?.unwrap_or(1.0 / (d as f64).sqrt());
    let rows: usize = q.desc.shape[..r - 1].iter().product();
    count32(op, "the query rows", rows)?;
    if lk == 0 || rows == 0 {
        return Ok(());
    }
    // Loop iterations of one invocation (inner loops take 16 steps per iteration); some
    // drivers (lavapipe) stop a loop after 65535 iterations per invocation.
    let steps = lk.div_ceil(64) * (2 + d.div_ceil(16)) + dv.div_ceil(64) * (1 + lk.div_ceil(16));
    if steps > LOOP_BUDGET {
        return Err(Error::unsupported(format!(
            "attention: {lk} keys with head dims {d} and {dv} need {steps} loop iterations per \
             invocation in the WGSL kernel, more than the {LOOP_BUDGET} it keeps to (drivers \
             such as lavapipe stop a loop after 65535)"
        )));
    }
    let wide = cx.wide();
    let size = if wide == "f64" { 8 } else { 4 };
    let per_launch = (ATTENTION_SCRATCH_BYTES / size / lk).max(1).min(rows);
    if per_launch * lk * size > ATTENTION_SCRATCH_BYTES {
        return Err(Error::unsupported(format!(
            "attention: {lk} keys need {} bytes of scratch per query row, more than the WGSL \
             kernel's {ATTENTION_SCRATCH_BYTES}",
            lk * size
        )));
    }
    let scratch = cx.device.alloc(per_launch * lk * size)?;
    let access = Access::of(q.desc.dtype);
    // Rows: q's dimensions but the last; k and v follow the batch dimensions only (repeated
    // over the group of grouped-query heads).
    let rs = RowSpace::new(
        &geo,
        &q.desc.shape,
        &q.desc.strides,
        &out.desc.strides,
        &k.desc.strides,
        &v.desc.strides,
    );
    // The mask: its strides over the rows (space 0's third tensor) and along the keys.
    let mask = match call.inputs.get(3).and_then(|t| t.as_ref()) {
        Some(m) => {
            let ms = mask_strides("attention", m.desc(), q_t.desc(), k_t.desc())?;
            Some((bind(m)?, row_strides(&geo, r, &ms), ms[r - 1]))
        }
        None => None,
    };
    let mask_text = match &mask {
        Some((m, _, _)) if m.desc.dtype == DType::Bool => {
            "if (!ld_mask(o[2] + j * p.m_js)) { s = $W(-inf_f32()); }"
        }
        Some(_) => "s = s + $W(ld_mask(o[2] + j * p.m_js));",
        None => "",
    };
    let mut row0 = 0;
    while row0 < rows {
        let count = per_launch.min(rows - row0);
        let mut sh = Shader::new(cx, op, "attention");
        sh.tensor("q", &q, access, false)?;
        sh.tensor("k", &k, access, false)?;
        sh.tensor("v", &v, access, false)?;
        sh.tensor("out", &out, access, true)?;
        sh.words("scratch", scratch.whole(), wide, true);
        let mut rows_space = Space::new(&rs.dims)
            .with(q.desc.offset, rs.q.clone())
            .with(out.desc.offset, rs.out.clone());
        if let Some((m, m_rows, m_js)) = &mask {
            sh.tensor("mask", m, Access::of(m.desc.dtype), false)?;
            rows_space = rows_space.with(m.desc.offset, m_rows.clone());
            sh.size("m_js", *m_js)?;
        }
        sh.space(rows_space);
        sh.space(
            Space::new(&rs.kv_dims)
                .with(k.desc.offset, rs.k.clone())
                .with(v.desc.offset, rs.v.clone()),
        );
        sh.size("row0", row0)?;
        sh.size("lq", lq)?;
        sh.size("lk", lk)?;
        sh.size("d", d)?;
        sh.size("dv", dv)?;
        sh.size("q_ds", q.desc.strides[r - 1])?;
        sh.size("k_js", k.desc.strides[r - 2])?;
        sh.size("k_ds", k.desc.strides[r - 1])?;
        sh.size("v_js", v.desc.strides[r - 2])?;
        sh.size("v_ds", v.desc.strides[r - 1])?;
        sh.size("o_ds", out.desc.strides[r - 1])?;
        sh.f32("scale", scale as f32);
        sh.u32("causal", geo.causal as u32);
        sh.i32("shift", clamp_i32(geo.shift));
        sh.u32("window", u32::try_from(geo.window).unwrap_or(u32::MAX));
        sh.f32("softcap", geo.softcap as f32);
        sh.body(
            &section(NN, "attention")?
                .replace("$MASK", mask_text)
                .replace("$W", wide),
        );
        sh.launch([count as u64 * 64, 1, 1])?;
        row0 += count;
    }
    Ok(())
}
