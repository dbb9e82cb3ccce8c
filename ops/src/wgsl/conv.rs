//! `conv1d`, `conv2d` and the pools: one invocation per output element (`conv.wgsl`).

use anyaccel_hal::{DType, Error, OpCall, Result};

use super::{attrs, bind, count32, input, output, section, Access, Bound, Cx, Shader, Space};
use crate::conv::{
    BatchGeom, ConvGeom, ConvPass, GroupGeom, PoolBack, PoolGeom, Resample, ResampleGeom,
};

static CONV: &str = include_str!("../../kernels/wgsl/conv.wgsl");

/// Loop iterations an invocation keeps to (drivers such as lavapipe stop a loop after 65535).
const LOOP_BUDGET: usize = 60000;

/// Terms of a weight gradient's element that one work group sums (4096 loop iterations per
/// invocation): longer sums are split across groups and added by a second launch.
const FILTER_CHUNK: usize = 1 << 20;

pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let attrs_ = attrs(call)?;
    let (a_t, b_t, out_t) = (input(call, 0)?, input(call, 1)?, output(call, 0)?);
    let bias_t = call.inputs.get(2).and_then(|t| t.as_ref());
    let (g, pass) = ConvGeom::of_call(
        op,
        &attrs_,
        [Some(a_t.desc()), Some(b_t.desc()), bias_t.map(|t| t.desc())],
    )?;
    let (entry, work) = match pass {
        ConvPass::Forward => ("conv", g.cg()),
        ConvPass::Data => ("conv_data", g.og()),
        // Each invocation takes 16 terms per loop iteration.
        ConvPass::Filter => ("conv_filter", 1),
    };
    let work = work.saturating_mul(g.kernel[0]).saturating_mul(g.kernel[1]);
    if work > LOOP_BUDGET {
        return Err(Error::unsupported(format!(
            "{op}: channels per group x kernel size = {work} loop iterations per result element \
             in the WGSL kernel, more than the {LOOP_BUDGET} it keeps to (drivers such as \
             lavapipe stop a loop after 65535)"
        )));
    }
    // Positions are computed in u32 (wrapping below 0): the padded input must fit, and so must
    // the terms of a weight gradient.
    for d in 0..2 {
        count32(op, "the padded input", g.input[d] + 2 * g.padding[d])?;
    }
    count32(op, "the output", g.n * g.o * g.out[0] * g.out[1])?;
    let (a, b, out) = (bind(a_t)?, bind(b_t)?, bind(out_t)?);
    let n = count32(op, "the result", out.desc.numel())?;
    if n == 0 {
        return Ok(());
    }
    let access = Access::of(a.desc.dtype);
    let wide = cx.wide();
    // The weight gradient sums n x oh x ow terms per element, in chunks of FILTER_CHUNK.
    let terms = g.n * g.out[0] * g.out[1];
    let chunks = terms.div_ceil(FILTER_CHUNK).max(1);
    let groups = count32(op, "the work groups", n as usize * chunks)?;
    let part = if pass == ConvPass::Filter && chunks > 1 {
        let size = if wide == "f64" { 8 } else { 4 };
        Some(cx.device.alloc(groups as usize * size)?)
    } else {
        None
    };
    let setup = |sh: &mut Shader<'_>| -> Result<()> {
        sh.tensor("a", &a, access, false)?;
        sh.tensor("b", &b, access, false)?;
        sh.tensor("out", &out, access, true)?;
        let shape4 = match pass {
            ConvPass::Forward => [g.n, g.o, g.out[0], g.out[1]],
            ConvPass::Data => [g.n, g.c, g.input[0], g.input[1]],
            ConvPass::Filter => [g.o, g.cg(), g.kernel[0], g.kernel[1]],
        };
        sh.space(Space::new(&shape4).with(out.desc.offset, g.strides4(&out.desc.strides).to_vec()));
        sh.u32("n", n);
        for (name, v) in [
            ("nb", g.n),
            ("c", g.c),
            ("oc", g.o),
            ("oh", g.out[0]),
            ("ow", g.out[1]),
            ("ih", g.input[0]),
            ("iw", g.input[1]),
            ("cg", g.cg()),
            ("og", g.og()),
            ("chunk", FILTER_CHUNK),
            ("chunks", chunks),
        ] {
            sh.size(name, v)?;
        }
        window_params(sh, [g.kernel, g.stride, g.padding, g.dilation])?;
        for (name, t) in [("a", &a), ("b", &b)] {
            sh.size(&format!("{name}_off"), t.desc.offset)?;
            for (d, s) in g.strides4(&t.desc.strides).into_iter().enumerate() {
                sh.size(&format!("{name}_s{d}"), s)?;
            }
        }
        Ok(())
    };
    let mut sh = Shader::new(cx, op, entry);
    setup(&mut sh)?;
    let bias = bias_t.map(bind).transpose()?;
    let bias_text = match &bias {
        Some(t) => {
            sh.tensor("bias", t, access, false)?;
            sh.size("bias_off", t.desc.offset)?;
            sh.size("bias_s", t.desc.strides[0])?;
            "acc += $W(ld_bias(p.bias_off + bch * p.bias_s));"
        }
        None => "",
    };
    if pass != ConvPass::Filter {
        sh.body(
            &section(CONV, entry)?
                .replace("$BIAS", bias_text)
                .replace("$W", wide),
        );
        return sh.launch([n as u64, 1, 1]);
    }
    sh.include_owned(section(super::nn::NN, "group_reduce")?.replace("$W", wide));
    let store = match &part {
        Some(part) => {
            sh.words("part", part.whole(), wide, true);
            "part[wid.x] = total;"
        }
        None => "st_out(walk0(lin)[0], f32(total));",
    };
    sh.body(
        &section(CONV, entry)?
            .replace("$STORE", store)
            .replace("$W", wide),
    );
    sh.launch([groups as u64 * 256, 1, 1])?;
    if let Some(part) = &part {
        let mut sh = Shader::new(cx, op, "conv_filter_finish");
        setup(&mut sh)?;
        sh.words("part", part.whole(), wide, false);
        sh.body(&section(CONV, "conv_filter_finish")?.replace("$W", wide));
        sh.launch([n as u64, 1, 1])?;
    }
    Ok(())
}

/// The kernel, stride, padding and dilation of a window (`p.kh`, `p.kw`, `p.sh`, ... `p.dw`).
fn window_params(sh: &mut Shader<'_>, window: [[usize; 2]; 4]) -> Result<()> {
    for (k, prefix) in ["k", "s", "p", "d"].iter().enumerate() {
        sh.size(&format!("{prefix}h"), window[k][0])?;
        sh.size(&format!("{prefix}w"), window[k][1])?;
    }
    Ok(())
}

const MAX_BODY: &str = "
    var best = -inf_f32();
    var at = -1;
    var nan = false;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = y0 + i32(ky * p.dh);
        if (nan || iy < 0 || iy >= i32(p.ih)) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = x0 + i32(kx * p.dw);
            if (nan || ix < 0 || ix >= i32(p.iw)) { continue; }
            let v = f32(ld_x(xb + u32(iy) * p.x_s2 + u32(ix) * p.x_s3));
            if (is_nan(v)) {
                best = v;
                at = iy * i32(p.iw) + ix;
                nan = true;
            } else if (v > best || at < 0) {
                best = v;
                at = iy * i32(p.iw) + ix;
            }
        }
    }
    st_out(o[0], best);
    st_idx(o[1], i64(at));
";

const AVG_BODY: &str = "
    let ye0 = min(y0 + i32(p.kh), i32(p.ih + p.ph));
    let xe0 = min(x0 + i32(p.kw), i32(p.iw + p.pw));
    let pool = (ye0 - y0) * (xe0 - x0);
    let ys = max(y0, 0);
    let xs = max(x0, 0);
    let ye = min(ye0, i32(p.ih));
    let xe = min(xe0, i32(p.iw));
    var sum: $W = $W(0.0);
    for (var iy = ys; iy < ye; iy++) {
        for (var ix = xs; ix < xe; ix++) {
            sum += $W(ld_x(xb + u32(iy) * p.x_s2 + u32(ix) * p.x_s3));
        }
    }
    var divisor = max(ye - ys, 0) * max(xe - xs, 0);
    if (p.count_pad != 0u) { divisor = pool; }
    st_out(o[0], f32(sum / $W(divisor)));
";

pub(crate) fn pool(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let (x_t, out_t) = (input(call, 0)?, output(call, 0)?);
    let g = PoolGeom::of(op, &a, x_t.desc())?;
    let max = op.starts_with("max");
    let work = g.kernel[0].saturating_mul(g.kernel[1]);
    if work > LOOP_BUDGET {
        return Err(Error::unsupported(format!(
            "{op}: a window of {work} elements needs more loop iterations per output element \
             than the {LOOP_BUDGET} the WGSL kernel keeps to (drivers such as lavapipe stop a \
             loop after 65535)"
        )));
    }
    // Positions are i32: the padded input must fit.
    for d in 0..2 {
        let padded = g.input[d] + 2 * g.padding[d];
        if i32::try_from(padded).is_err() {
            return Err(Error::unsupported(format!(
                "{op}: a padded input of {padded} is more than the WGSL kernel's i32 positions \
                 reach"
            )));
        }
    }
    let (x, out) = (bind(x_t)?, bind(out_t)?);
    let n = count32(op, "the output", out.desc.numel())?;
    if n == 0 {
        return Ok(());
    }
    let access = Access::of(x.desc.dtype);
    let mut sh = Shader::new(cx, op, "pool");
    sh.tensor("x", &x, access, false)?;
    sh.tensor("out", &out, access, true)?;
    let mut shape4 = vec![g.n, g.c];
    shape4.extend(g.out);
    let mut space =
        Space::new(&shape4).with(out.desc.offset, g.strides4(&out.desc.strides).to_vec());
    if max {
        let idx = bind(output(call, 1)?)?;
        sh.tensor("idx", &idx, Access::of(DType::I64), true)?;
        space = space.with(idx.desc.offset, g.strides4(&idx.desc.strides).to_vec());
    }
    sh.space(space);
    sh.u32("n", n);
    for (name, v) in [
        ("c", g.c),
        ("oh", g.out[0]),
        ("ow", g.out[1]),
        ("ih", g.input[0]),
        ("iw", g.input[1]),
    ] {
        sh.size(name, v)?;
    }
    window_params(&mut sh, [g.kernel, g.stride, g.padding, g.dilation])?;
    sh.size("x_off", x.desc.offset)?;
    for (d, s) in g.strides4(&x.desc.strides).into_iter().enumerate() {
        sh.size(&format!("x_s{d}"), s)?;
    }
    sh.u32("count_pad", g.count_include_pad as u32);
    let body = if max { MAX_BODY } else { AVG_BODY };
    sh.body(
        &section(CONV, "pool")?
            .replace("$BODY", body)
            .replace("$W", cx.wide()),
    );
    sh.launch([n as u64, 1, 1])
}

const ADAPTIVE_BODY: &str = "
    let ys = oy * p.ih / p.oh;
    let ye = ((oy + 1u) * p.ih + p.oh - 1u) / p.oh;
    let x0 = ox * p.iw / p.ow;
    let x1 = ((ox + 1u) * p.iw + p.ow - 1u) / p.ow;
    var sum: $W = $W(0.0);
    for (var iy = ys; iy < ye; iy++) {
        for (var ix = x0; ix < x1; ix++) {
            sum += $W(ld_x(xb + iy * p.x_s2 + ix * p.x_s3));
        }
    }
    st_out(o[0], f32(sum / $W((ye - ys) * (x1 - x0))));
";

const NEAREST_BODY: &str = "
    st_out(o[0], f32(ld_x(xb + (oy * p.ih / p.oh) * p.x_s2 + (ox * p.iw / p.ow) * p.x_s3)));
";

const BILINEAR_BODY: &str = "
    let ty = rs_tap(oy, p.ih, p.oh);
    let tx = rs_tap(ox, p.iw, p.ow);
    let y0 = ty.i0;
    let y1 = ty.i1;
    let x0 = tx.i0;
    let x1 = tx.i1;
    let a = f32(ld_x(xb + y0 * p.x_s2 + x0 * p.x_s3));
    let b = f32(ld_x(xb + y0 * p.x_s2 + x1 * p.x_s3));
    let c = f32(ld_x(xb + y1 * p.x_s2 + x0 * p.x_s3));
    let d = f32(ld_x(xb + y1 * p.x_s2 + x1 * p.x_s3));
    let top = (1.0 - tx.l) * a + tx.l * b;
    let bottom = (1.0 - tx.l) * c + tx.l * d;
    st_out(o[0], (1.0 - ty.l) * top + ty.l * bottom);
";

const BICUBIC_BODY: &str = "
    let qy = rs_cubic(oy, p.ih, p.oh);
    let qx = rs_cubic(ox, p.iw, p.ow);
    var acc = 0.0;
    for (var ky = 0u; ky < 4u; ky++) {
        let row = xb + rs_ci(qy, ky, p.ih) * p.x_s2;
        var r = 0.0;
        for (var kx = 0u; kx < 4u; kx++) {
            r += rs_cw(kx, qx.t) * f32(ld_x(row + rs_ci(qx, kx, p.iw) * p.x_s3));
        }
        acc += rs_cw(ky, qy.t) * r;
    }
    st_out(o[0], acc);
";

/// The source positions of `g` fit the kernels' u32 arithmetic: numerators up to (2 O + 1) I,
/// (3 O + 1) I for bicubic (see `rs_cubic`).
fn check_sources(op: &str, g: &ResampleGeom) -> Result<()> {
    let k = if matches!(g.kind, Resample::Bicubic { .. }) {
        3
    } else {
        2
    };
    for d in 0..2 {
        let n = g.out[d]
            .saturating_mul(k)
            .saturating_add(1)
            .saturating_mul(g.input[d]);
        count32(op, "a source position", n)?;
    }
    Ok(())
}

pub(crate) fn resample(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let (x_t, out_t) = (input(call, 0)?, output(call, 0)?);
    let g = ResampleGeom::of(op, &a, x_t.desc())?;
    // Adaptive windows span up to H / OH + 2 rows.
    check_sources(op, &g)?;
    if g.kind == Resample::AdaptiveAvg {
        let window = (g.input[0] / g.out[0] + 2).saturating_mul(g.input[1] / g.out[1] + 2);
        if window > LOOP_BUDGET {
            return Err(Error::unsupported(format!(
                "{op}: windows of up to {window} elements need more loop iterations per output \
                 element than the {LOOP_BUDGET} the WGSL kernel keeps to (drivers such as \
                 lavapipe stop a loop after 65535)"
            )));
        }
    }
    let (x, out) = (bind(x_t)?, bind(out_t)?);
    let n = count32(op, "the output", out.desc.numel())?;
    if n == 0 {
        return Ok(());
    }
    let access = Access::of(x.desc.dtype);
    let mut sh = Shader::new(cx, op, "resample");
    sh.tensor("x", &x, access, false)?;
    sh.tensor("out", &out, access, true)?;
    sh.space(Space::new(&out.desc.shape).with(out.desc.offset, out.desc.strides.clone()));
    sh.u32("n", n);
    for (name, v) in [
        ("c", g.c),
        ("oh", g.out[0]),
        ("ow", g.out[1]),
        ("ih", g.input[0]),
        ("iw", g.input[1]),
        ("x_off", x.desc.offset),
    ] {
        sh.size(name, v)?;
    }
    for (d, s) in x.desc.strides.iter().enumerate() {
        sh.size(&format!("x_s{d}"), *s)?;
    }
    let (body, align) = match g.kind {
        Resample::AdaptiveAvg => (ADAPTIVE_BODY, false),
        Resample::Nearest => (NEAREST_BODY, false),
        Resample::Bilinear { align_corners } => (BILINEAR_BODY, align_corners),
        Resample::Bicubic { align_corners } => (BICUBIC_BODY, align_corners),
    };
    sh.u32("align", align as u32);
    sh.include(section(CONV, "rs_tap")?);
    if matches!(g.kind, Resample::Bicubic { .. }) {
        sh.include(section(CONV, "rs_cubic")?);
    }
    sh.body(
        &section(CONV, "resample")?
            .replace("$BODY", body)
            .replace("$W", cx.wide()),
    );
    sh.launch([n as u64, 1, 1])
}

pub(crate) fn group_norm(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let (x_t, out_t) = (input(call, 0)?, output(call, 0)?);
    let w_t = call.inputs.get(1).and_then(|t| t.as_ref());
    let b_t = call.inputs.get(2).and_then(|t| t.as_ref());
    let g = GroupGeom::of(
        op,
        &a,
        x_t.desc(),
        w_t.map(|t| t.desc()),
        b_t.map(|t| t.desc()),
    )?;
    let eps = crate::plan::eps(&a)?;
    let ngroups = count32(op, "the groups", g.n * g.groups)?;
    let len = count32(op, "a group", g.len())?;
    if ngroups == 0 || len == 0 {
        return Ok(());
    }
    let (x, out) = (bind(x_t)?, bind(out_t)?);
    let access = Access::of(x.desc.dtype);
    let mut sh = Shader::new(cx, op, "group_norm");
    sh.tensor("x", &x, access, false)?;
    sh.tensor("out", &out, access, true)?;
    sh.space(spatial_space(&x, &out));
    for (name, v) in [
        ("groups", g.groups),
        ("cg", g.c / g.groups),
        ("sp", g.spatial),
        ("x_off", x.desc.offset),
        ("x_s0", x.desc.strides[0]),
        ("x_s1", x.desc.strides[1]),
        ("o_off", out.desc.offset),
        ("o_s0", out.desc.strides[0]),
        ("o_s1", out.desc.strides[1]),
    ] {
        sh.size(name, v)?;
    }
    sh.f32("eps", eps as f32);
    let mut y = "y".to_string();
    for (name, t) in [("w", w_t), ("b", b_t)] {
        if let Some(t) = t {
            let bt = bind(t)?;
            sh.tensor(name, &bt, access, false)?;
            sh.size(&format!("{name}_off"), bt.desc.offset)?;
            sh.size(&format!("{name}_s"), bt.desc.strides[0])?;
            let read = format!("{}(ld_{name}(p.{name}_off + ch * p.{name}_s))", cx.wide());
            y = if name == "w" {
                format!("{y} * {read}")
            } else {
                format!("{y} + {read}")
            };
        }
    }
    include_run_stats(&mut sh, cx.wide())?;
    sh.body(
        &section(CONV, "group_norm")?
            .replace("$Y", &y)
            .replace("$W", cx.wide()),
    );
    sh.launch([ngroups as u64 * 256, 1, 1])
}

/// Space 0 over x's and out's dimensions after C (rank 2 inputs: one of size 1), offsets 0.
fn spatial_space(x: &Bound, out: &Bound) -> Space {
    let (mut shape, mut xs, mut os) = (
        x.desc.shape[2..].to_vec(),
        x.desc.strides[2..].to_vec(),
        out.desc.strides[2..].to_vec(),
    );
    if shape.is_empty() {
        (shape, xs, os) = (vec![1], vec![0], vec![0]);
    }
    Space::new(&shape).with(0, xs).with(0, os)
}

pub(crate) fn batch_norm(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let (x_t, out_t) = (input(call, 0)?, output(call, 0)?);
    let opt = |i: usize| call.inputs.get(i).and_then(|t| t.as_ref());
    let g = BatchGeom::of(
        op,
        &a,
        x_t.desc(),
        [1, 2, 3, 4].map(|i| opt(i).map(|t| t.desc())),
    )?;
    let eps = crate::plan::eps(&a)?;
    let channels = count32(op, "the channels", g.c)?;
    count32(op, "a channel", g.len())?;
    if channels == 0 {
        return Ok(());
    }
    let (x, out) = (bind(x_t)?, bind(out_t)?);
    let (mean, invstd) = (bind(output(call, 1)?)?, bind(output(call, 2)?)?);
    let access = Access::of(x.desc.dtype);
    let mut sh = Shader::new(cx, op, "batch_norm");
    sh.tensor("x", &x, access, false)?;
    sh.tensor("out", &out, access, true)?;
    sh.tensor("mean", &mean, access, true)?;
    sh.tensor("invstd", &invstd, access, true)?;
    sh.space(spatial_space(&x, &out));
    for (name, v) in [
        ("nb", g.n),
        ("sp", g.spatial),
        ("x_off", x.desc.offset),
        ("x_s0", x.desc.strides[0]),
        ("x_s1", x.desc.strides[1]),
        ("o_off", out.desc.offset),
        ("o_s0", out.desc.strides[0]),
        ("o_s1", out.desc.strides[1]),
        ("m_off", mean.desc.offset),
        ("m_s", mean.desc.strides[0]),
        ("i_off", invstd.desc.offset),
        ("i_s", invstd.desc.strides[0]),
    ] {
        sh.size(name, v)?;
    }
    sh.f32("eps", eps as f32);
    let wide = cx.wide();
    let mut y = "y".to_string();
    let mut running = String::new();
    for (k, name) in [(1, "rm"), (2, "rv"), (3, "w"), (4, "b")] {
        if let Some(t) = opt(k) {
            let bt = bind(t)?;
            sh.tensor(name, &bt, access, false)?;
            sh.size(&format!("{name}_off"), bt.desc.offset)?;
            sh.size(&format!("{name}_s"), bt.desc.strides[0])?;
            let read = format!("{wide}(ld_{name}(p.{name}_off + ch * p.{name}_s))");
            match name {
                "rm" => running.push_str(&format!("mean = {read};\n")),
                "rv" => running.push_str(&format!(
                    "invstd = {wide}(1.0) / sqrt({read} + {wide}(p.eps));\n"
                )),
                "w" => y = format!("{y} * {read}"),
                _ => y = format!("{y} + {read}"),
            }
        }
    }
    include_run_stats(&mut sh, wide)?;
    sh.body(
        &section(CONV, "batch_norm")?
            .replace("$TRAIN", if g.training { "true" } else { "false" })
            .replace("$RUNNING", &running)
            .replace("$Y", &y)
            .replace("$W", wide),
    );
    sh.launch([channels as u64 * 256, 1, 1])
}

/// The work-group sums and `run_stats` of group_norm and batch_norm, accumulating in `wide`.
fn include_run_stats(sh: &mut Shader<'_>, wide: &str) -> Result<()> {
    sh.include_owned(section(super::nn::NN, "group_reduce")?.replace("$W", wide));
    sh.include_owned(section(CONV, "run_stats")?.replace("$W", wide));
    Ok(())
}

/// Candidate ranges and taps of the pooling and resampling gradients (`pb_range`, `pb_tap`).
const POOL_RANGE: &str = "return vec2<u32>(0u, k);";
const POOL_TAP: &str = "
    if (j * dil > i + pad) { return PbTap(0u, 0.0, false); }
    let t = i + pad - j * dil;
    let o = t / st;
    if (t % st != 0u || o >= outn) { return PbTap(0u, 0.0, false); }
    let s = i32(o * st) - i32(pad);
    let e = min(s + i32(k), i32(len + pad));
    $FACTOR
";
const ADAPTIVE_RANGE: &str =
    "return pb_clamp(i * outn / len, ((i + 1u) * outn + len - 1u) / len, outn);";
const ADAPTIVE_TAP: &str = "
    let o = lo + j;
    let s = o * len / outn;
    let e = ((o + 1u) * len + outn - 1u) / outn;
    return PbTap(o, 1.0 / f32(e - s), s <= i && i < e);
";
const NEAREST_RANGE: &str =
    "return pb_clamp((i * outn + len - 1u) / len, ((i + 1u) * outn + len - 1u) / len, outn);";
const NEAREST_TAP: &str = "
    let o = lo + j;
    return PbTap(o, 1.0, o * len / outn == i);
";
/// Bilinear ($BACK = 1: taps floor and floor + 1) and bicubic ($BACK = 2: floor - 1 ..
/// floor + 2, whose clamped taps at the edges reach every output from the start or to the end):
/// the outputs whose source position lies within $BACK rows of i, widened by the rounding.
const LINEAR_RANGE: &str = "
    let back = $BACKu;
    let im = select(0u, i - back, i > back);
    var lo = 0u;
    var hi = outn;
    if (len == 1u) {
    } else if (p.align != 0u) {
        let a = im * (outn - 1u) / (len - 1u);
        lo = select(0u, a - 1u, a > 0u);
        hi = ((i + back) * (outn - 1u) + len - 2u) / (len - 1u) + 2u;
    } else {
        let a = im * outn / len;
        lo = select(0u, a - 2u, a > 1u);
        hi = ((i + back + 1u) * outn + len - 1u) / len + 2u;
    }
    if (back == 2u && len > 1u) {
        if (i == 0u) { lo = 0u; }
        if (i == len - 1u) { hi = outn; }
    }
    return pb_clamp(lo, hi, outn);
";
const BILINEAR_TAP: &str = "
    let o = lo + j;
    let t = rs_tap(o, len, outn);
    let w = select(0.0, 1.0 - t.l, t.i0 == i) + select(0.0, t.l, t.i1 == i);
    return PbTap(o, w, t.i0 == i || t.i1 == i);
";

const BICUBIC_TAP: &str = "
    let o = lo + j;
    let q = rs_cubic(o, len, outn);
    var w = 0.0;
    var hit = false;
    for (var k = 0u; k < 4u; k++) {
        if (rs_ci(q, k, len) == i) {
            w += rs_cw(k, q.t);
            hit = true;
        }
    }
    return PbTap(o, w, hit);
";

pub(crate) fn pool_backward(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let (g_t, out_t) = (input(call, 0)?, output(call, 0)?);
    let idx_t = call.inputs.get(1).and_then(|t| t.as_ref());
    let g = PoolBack::of(op, &a, g_t.desc(), idx_t.map(|t| t.desc()))?;
    let (spatial, inp, outn, [kernel, stride, padding, dilation]) = match g {
        PoolBack::Pool(p) => (
            p.spatial,
            p.input,
            p.out,
            [p.kernel, p.stride, p.padding, p.dilation],
        ),
        PoolBack::Resample(r) => (2, r.input, r.out, [[1, 1], [1, 1], [0, 0], [1, 1]]),
    };
    // Candidates per dimension: the kernel size, or about 3 O / I + 6 for resampling.
    let mut work = 1usize;
    for d in 0..2 {
        count32(op, "the padded input", inp[d] + 2 * padding[d])?;
        let n = match g {
            PoolBack::Pool(_) => kernel[d],
            PoolBack::Resample(r) => {
                count32(op, "a source position", (inp[d] + 2) * (2 * outn[d] + 1))?;
                if matches!(r.kind, Resample::Bicubic { .. }) {
                    check_sources(op, &r)?;
                    (5 * outn[d]).div_ceil(inp[d].max(1)) + 8
                } else {
                    (3 * outn[d]).div_ceil(inp[d].max(1)) + 6
                }
            }
        };
        work = work.saturating_mul(n);
    }
    if work > LOOP_BUDGET {
        return Err(Error::unsupported(format!(
            "{op}: up to {work} candidate outputs per element of dx in the WGSL kernel, more \
             than the {LOOP_BUDGET} loop iterations it keeps to (drivers such as lavapipe stop \
             a loop after 65535)"
        )));
    }
    let (gt, out) = (bind(g_t)?, bind(out_t)?);
    let n = count32(op, "the result", out.desc.numel())?;
    if n == 0 {
        return Ok(());
    }
    let lift = |st: &[usize]| -> Vec<usize> {
        if spatial == 1 {
            vec![st[0], st[1], 0, st[2]]
        } else {
            st.to_vec()
        }
    };
    let access = Access::of(gt.desc.dtype);
    let mut sh = Shader::new(cx, op, "pool_back");
    sh.tensor("g", &gt, access, false)?;
    sh.tensor("out", &out, access, true)?;
    let shape4 = [out.desc.shape[0], out.desc.shape[1], inp[0], inp[1]];
    sh.space(Space::new(&shape4).with(out.desc.offset, lift(&out.desc.strides)));
    sh.u32("n", n);
    for (name, v) in [
        ("c", out.desc.shape[1]),
        ("oh", outn[0]),
        ("ow", outn[1]),
        ("ih", inp[0]),
        ("iw", inp[1]),
        ("g_off", gt.desc.offset),
    ] {
        sh.size(name, v)?;
    }
    window_params(&mut sh, [kernel, stride, padding, dilation])?;
    for (d, s) in lift(&gt.desc.strides).into_iter().enumerate() {
        sh.size(&format!("g_s{d}"), s)?;
    }
    let mut keep = "true".to_string();
    let (range, tap) = match g {
        PoolBack::Pool(p) => {
            let factor = if p.max {
                "return PbTap(o, 1.0, true);"
            } else if p.count_include_pad {
                "return PbTap(o, 1.0 / f32(e - s), true);"
            } else {
                "return PbTap(o, 1.0 / f32(min(e, i32(len)) - max(s, 0)), true);"
            };
            if p.max {
                let it = idx_t.ok_or_else(|| Error::internal("indices missing"))?;
                let idx = bind(it)?;
                let wide = it.dtype() == DType::I64;
                sh.tensor(
                    "pidx",
                    &idx,
                    if wide { Access::I64 } else { Access::I32 },
                    false,
                )?;
                sh.size("pidx_off", idx.desc.offset)?;
                for (d, s) in lift(&idx.desc.strides).into_iter().enumerate() {
                    sh.size(&format!("pidx_s{d}"), s)?;
                }
                let ty = if wide { "i64" } else { "i32" };
                keep = format!(
                    "ld_pidx(p.pidx_off + nn * p.pidx_s0 + ch * p.pidx_s1 + ty.o * p.pidx_s2 \
                     + tx.o * p.pidx_s3) == {ty}(iy * p.iw + ix)"
                );
            }
            (POOL_RANGE.to_string(), POOL_TAP.replace("$FACTOR", factor))
        }
        PoolBack::Resample(r) => match r.kind {
            Resample::AdaptiveAvg => (ADAPTIVE_RANGE.to_string(), ADAPTIVE_TAP.to_string()),
            Resample::Nearest => (NEAREST_RANGE.to_string(), NEAREST_TAP.to_string()),
            Resample::Bilinear { align_corners } => {
                sh.u32("align", align_corners as u32);
                sh.include(section(CONV, "rs_tap")?);
                (LINEAR_RANGE.replace("$BACK", "1"), BILINEAR_TAP.to_string())
            }
            Resample::Bicubic { align_corners } => {
                sh.u32("align", align_corners as u32);
                sh.include(section(CONV, "rs_cubic")?);
                (LINEAR_RANGE.replace("$BACK", "2"), BICUBIC_TAP.to_string())
            }
        },
    };
    sh.body(
        &section(CONV, "pool_back")?
            .replace("$RANGE", &range)
            .replace("$TAP", &tap)
            .replace("$KEEP", &keep)
            .replace("$W", cx.wide()),
    );
    sh.launch([n as u64, 1, 1])
}
