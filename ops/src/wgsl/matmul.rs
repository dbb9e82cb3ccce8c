//! `matmul`: a register-blocked kernel (4x4 outputs per invocation, f32 accumulation), with
//! batch broadcasting through the layout words and the bias added before the one rounding.

use anyaccel_hal::{Error, OpCall, Result};

use super::{
    bind, broadcast_strides, count32, input, output, section, Access, Bound, Cx, Shader, Space,
};

pub(super) static MATMUL: &str = include_str!("../../kernels/wgsl/matmul.wgsl");

/// The most loop iterations the matmul kernel lets one invocation run.
const LOOP_BUDGET: usize = 60000;

/// Runs `matmul`.
pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let (a, b) = (bind(input(call, 0)?)?, bind(input(call, 1)?)?);
    let out = bind(output(call, 0)?)?;
    let bias = match call.inputs.get(2) {
        Some(Some(t)) => Some(bind(t)?),
        _ => None,
    };
    let r = out.desc.rank();
    let (m, n) = (out.desc.shape[r - 2], out.desc.shape[r - 1]);
    let k = a.desc.shape[a.desc.rank() - 1];
    // Loop iterations of one invocation: k / 4 for the product, k / 16 for the f64 sum of a
    // non-finite element; some drivers (lavapipe) stop a loop after 65535.
    if k / 4 + k / 16 > LOOP_BUDGET {
        return Err(Error::unsupported(format!(
            "matmul: an inner dimension of {k} needs {} loop iterations per invocation in the \
             WGSL kernel, more than the {LOOP_BUDGET} it keeps to (drivers such as lavapipe stop \
             a loop after 65535)",
            k / 4 + k / 16
        )));
    }
    let batch = &out.desc.shape[..r - 2];
    let batches = count32(op, "the batch", batch.iter().product())?;
    let access = Access::of(a.desc.dtype);

    // Operands' batch strides, broadcast to the output's batch; their row and column strides.
    let batch_of = |t: &Bound| -> Vec<usize> {
        let tr = t.desc.rank();
        let mut d = t.desc.clone();
        d.shape.truncate(tr - 2);
        d.strides.truncate(tr - 2);
        broadcast_strides(&d, batch)
    };
    let mut sh = Shader::new(cx, op, "matmul");
    sh.tensor("a", &a, access, false)?;
    sh.tensor("b", &b, access, false)?;
    sh.tensor("out", &out, access, true)?;
    let mut space = Space::new(batch)
        .with(a.desc.offset, batch_of(&a))
        .with(b.desc.offset, batch_of(&b))
        .with(out.desc.offset, out.desc.strides[..r - 2].to_vec());
    let rc = |t: &Bound| {
        let tr = t.desc.rank();
        (t.desc.strides[tr - 2], t.desc.strides[tr - 1])
    };
    let (result, wide_result) = if let Some(bias) = &bias {
        // The bias broadcast to the output's whole shape: batch strides in the space, row and
        // column strides as parameters.
        let full = broadcast_strides(&bias.desc, &out.desc.shape);
        sh.tensor("bias", bias, access, false)?;
        space = space.with(bias.desc.offset, full[..r - 2].to_vec());
        sh.size("bias_rs", full[r - 2])?;
        sh.size("bias_cs", full[r - 1])?;
        (
            "acc + ld_bias(o[3] + row * p.bias_rs + col * p.bias_cs)",
            "w + $W(ld_bias(o[3] + row * p.bias_rs + col * p.bias_cs))",
        )
    } else {
        ("acc", "w")
    };
    sh.space(space);
    sh.size("m", m)?;
    sh.size("n", n)?;
    sh.size("k", k)?;
    for (name, t) in [("a", &a), ("b", &b), ("o", &out)] {
        let (rs, cs) = rc(t);
        sh.size(&format!("{name}_rs"), rs)?;
        sh.size(&format!("{name}_cs"), cs)?;
    }
    sh.body(
        &section(MATMUL, "matmul")?
            .replace("$WRESULT", wide_result)
            .replace("$RESULT", result)
            .replace("$W", cx.wide()),
    );
    // Work groups of 8x8 invocations cover 32 columns and 32 rows.
    let groups = |x: usize| (x.div_ceil(32) * 8) as u64;
    sh.launch([groups(n), groups(m), batches as u64])
}
