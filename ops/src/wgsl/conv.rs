//! `conv1d` and `conv2d`: one invocation per output element (`conv.wgsl`).

use anyaccel_hal::{Error, OpCall, Result};

use super::{attrs, bind, count32, input, output, section, Access, Cx, Shader, Space};
use crate::conv::ConvGeom;

static CONV: &str = include_str!("../../kernels/wgsl/conv.wgsl");

/// Loop iterations an invocation keeps to (drivers such as lavapipe stop a loop after 65535).
const LOOP_BUDGET: usize = 60000;

pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let (x_t, w_t, out_t) = (input(call, 0)?, input(call, 1)?, output(call, 0)?);
    let b_t = call.inputs.get(2).and_then(|t| t.as_ref());
    let g = ConvGeom::of(op, &a, x_t.desc(), w_t.desc(), b_t.map(|t| t.desc()))?;
    let work = g
        .cg()
        .saturating_mul(g.kernel[0])
        .saturating_mul(g.kernel[1]);
    if work > LOOP_BUDGET {
        return Err(Error::unsupported(format!(
            "{op}: C/groups x kernel size = {work} loop iterations per output element in the \
             WGSL kernel, more than the {LOOP_BUDGET} it keeps to (drivers such as lavapipe stop \
             a loop after 65535)"
        )));
    }
    // Input positions are computed in u32 (wrapping below 0): the padded input must fit.
    for d in 0..2 {
        count32(op, "the padded input", g.input[d] + 2 * g.padding[d])?;
    }
    let (x, w, out) = (bind(x_t)?, bind(w_t)?, bind(out_t)?);
    let n = count32(op, "the output", out.desc.numel())?;
    if n == 0 {
        return Ok(());
    }
    let access = Access::of(x.desc.dtype);
    let mut sh = Shader::new(cx, op, "conv");
    sh.tensor("x", &x, access, false)?;
    sh.tensor("w", &w, access, false)?;
    let bias = b_t.map(bind).transpose()?;
    if let Some(b) = &bias {
        sh.tensor("b", b, access, false)?;
    }
    sh.tensor("out", &out, access, true)?;
    let mut shape4 = vec![g.n, g.o];
    shape4.extend(g.out);
    sh.space(Space::new(&shape4).with(out.desc.offset, g.strides4(&out.desc.strides).to_vec()));
    sh.u32("n", n);
    for (name, v) in [
        ("oc", g.o),
        ("oh", g.out[0]),
        ("ow", g.out[1]),
        ("ih", g.input[0]),
        ("iw", g.input[1]),
        ("cg", g.cg()),
        ("og", g.og()),
        ("kh", g.kernel[0]),
        ("kw", g.kernel[1]),
        ("sh", g.stride[0]),
        ("sw", g.stride[1]),
        ("ph", g.padding[0]),
        ("pw", g.padding[1]),
        ("dh", g.dilation[0]),
        ("dw", g.dilation[1]),
    ] {
        sh.size(name, v)?;
    }
    for (name, t) in [("x", &x), ("w", &w)] {
        sh.size(&format!("{name}_off"), t.desc.offset)?;
        for (d, s) in g.strides4(&t.desc.strides).into_iter().enumerate() {
            sh.size(&format!("{name}_s{d}"), s)?;
        }
    }
    let bias_text = match &bias {
        Some(b) => {
            sh.size("b_off", b.desc.offset)?;
            sh.size("b_s", b.desc.strides[0])?;
            "acc += $W(ld_b(p.b_off + oc * p.b_s));"
        }
        None => "",
    };
    sh.body(
        &section(CONV, "conv")?
            .replace("$BIAS", bias_text)
            .replace("$W", cx.wide()),
    );
    sh.launch([n as u64, 1, 1])
}
