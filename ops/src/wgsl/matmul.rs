//! `matmul`: a register-blocked kernel (a block of outputs per invocation, f32 accumulation;
//! the block and the work-group shape tuned per device), with batch broadcasting through the
//! layout words and the bias added before the one rounding.

use std::fmt::Write as _;

use anyaccel_hal::{Device, Error, OpCall, Result};

use crate::tune;

use super::{
    bind, broadcast_strides, count32, input, output, section, Access, Bound, Cx, Shader, Space,
};

pub(super) static MATMUL: &str = include_str!("../../kernels/wgsl/matmul.wgsl");

/// The most loop iterations the matmul kernel lets one invocation run.
const LOOP_BUDGET: usize = 60000;

/// The shapes a search times (`wx, wy, tm, tn`: a work-group of `wx x wy` invocations, each
/// computing `tm` rows and `tn` columns, `tn` a multiple of 4), the default first.
const CANDIDATES: [[u32; 4]; 15] = [
    [8, 8, 4, 4],
    [8, 8, 4, 8],
    [8, 8, 8, 4],
    [8, 8, 2, 4],
    [16, 4, 4, 4],
    [4, 16, 4, 4],
    [16, 8, 4, 4],
    [16, 8, 4, 8],
    [32, 4, 4, 4],
    [32, 4, 2, 8],
    [8, 4, 8, 8],
    [64, 1, 4, 4],
    [8, 8, 8, 8],
    [16, 4, 8, 4],
    [8, 8, 4, 12],
];

/// The most invocations of a work-group every Vulkan device runs.
const MAX_INVOCATIONS: u32 = 128;

fn fits(p: &[u32]) -> bool {
    matches!(*p, [wx, wy, tm, tn] if wx > 0 && wy > 0 && tm > 0 && tn > 0 && tn.is_multiple_of(4)
        && wx * wy <= MAX_INVOCATIONS && tm * tn <= 64)
}

fn default_params(_: &dyn Device) -> Vec<u32> {
    CANDIDATES[0].to_vec()
}

fn candidates(_: &dyn Device) -> Vec<Vec<u32>> {
    CANDIDATES
        .iter()
        .filter(|p| fits(&p[..]))
        .map(|p| p.to_vec())
        .collect()
}

/// The kernel's parameters, tuned per device (see [`crate::tune`]).
pub static TUNABLE: tune::Tunable = tune::Tunable {
    name: "matmul.wgsl",
    params: "wx,wy,tm,tn",
    source: MATMUL,
    generator: 1,
    default: default_params,
    candidates,
};

/// The statements of a `tm x tn` block: declarations, one step along k, and the stores.
fn block_text(wx: u32, tm: u32, tn: u32) -> (String, String, String) {
    let (mut decls, mut step, mut finish) = (String::new(), String::new(), String::new());
    let vecs = tn / 4;
    for i in 0..tm {
        let _ = writeln!(
            decls,
            "    let ar{i} = o[0] + min(r0 + {i}u, last_r) * p.a_rs;"
        );
    }
    for j in 0..tn {
        let _ = writeln!(
            decls,
            "    let bc{j} = o[1] + min(c0 + {}u, last_c) * p.b_cs;",
            wx * j
        );
    }
    for i in 0..tm {
        for g in 0..vecs {
            let _ = writeln!(decls, "    var acc{i}_{g} = vec4<f32>(0.0);");
        }
    }
    for g in 0..vecs {
        let c = 4 * g;
        let _ = writeln!(
            step,
            "            let b{g} = vec4<f32>(ld_b(bc{c} + kb), ld_b(bc{} + kb), ld_b(bc{} + kb), \
             ld_b(bc{} + kb));",
            c + 1,
            c + 2,
            c + 3
        );
    }
    for i in 0..tm {
        let _ = writeln!(step, "            let a{i} = ld_a(ar{i} + ka);");
        for g in 0..vecs {
            let _ = writeln!(step, "            acc{i}_{g} = acc{i}_{g} + a{i} * b{g};");
        }
    }
    for j in 0..tn {
        for i in 0..tm {
            let _ = writeln!(
                finish,
                "    finish(o, r0 + {i}u, c0 + {}u, acc{i}_{}[{}]);",
                wx * j,
                j / 4,
                j % 4
            );
        }
    }
    (decls, step, finish)
}

/// The kernel's text for a shape, with or without a bias (added after the product), summing
/// non-finite elements again in `wide`.
fn body(shape: [u32; 4], bias: bool, wide: &'static str) -> Result<String> {
    let (result, wide_result) = if bias {
        (
            "acc + ld_bias(o[3] + row * p.bias_rs + col * p.bias_cs)",
            "w + $W(ld_bias(o[3] + row * p.bias_rs + col * p.bias_cs))",
        )
    } else {
        ("acc", "w")
    };
    let [wx, wy, tm, tn] = shape;
    let (decls, step, finish) = block_text(wx, tm, tn);
    Ok(section(MATMUL, "matmul")?
        .replace("$DECLS\n", &decls)
        .replace("$STEP\n", &step)
        .replace("$FINISH\n", &finish)
        .replace("$WXTN", &(wx * tn).to_string())
        .replace("$WX", &wx.to_string())
        .replace("$WY", &wy.to_string())
        .replace("$TM", &tm.to_string())
        .replace("$WRESULT", wide_result)
        .replace("$RESULT", result)
        .replace("$W", wide))
}

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
    if let Some(bias) = &bias {
        // The bias broadcast to the output's whole shape: batch strides in the space, row and
        // column strides as parameters.
        let full = broadcast_strides(&bias.desc, &out.desc.shape);
        sh.tensor("bias", bias, access, false)?;
        space = space.with(bias.desc.offset, full[..r - 2].to_vec());
        sh.size("bias_rs", full[r - 2])?;
        sh.size("bias_cs", full[r - 1])?;
    }
    sh.space(space);
    sh.size("m", m)?;
    sh.size("n", n)?;
    sh.size("k", k)?;
    for (name, t) in [("a", &a), ("b", &b), ("o", &out)] {
        let (rs, cs) = rc(t);
        sh.size(&format!("{name}_rs"), rs)?;
        sh.size(&format!("{name}_cs"), cs)?;
    }
    // `tune::params` gives a candidate or the default: both fit.
    let params = tune::params(cx.device, &TUNABLE, tune::madds(batches as usize, m, n, k));
    let [wx, wy, tm, tn] = <[u32; 4]>::try_from(params.as_slice()).unwrap_or(CANDIDATES[0]);
    // The text follows from the shape, the bias and the wide type: generated on a cache miss.
    let (has_bias, wide) = (bias.is_some(), cx.wide());
    sh.body_lazy(
        format!("matmul{wx},{wy},{tm},{tn}:{has_bias}:{wide}"),
        move || body([wx, wy, tm, tn], has_bias, wide),
    );
    // A work-group of wx x wy invocations covers wx * tn columns and wy * tm rows.
    let groups =
        |x: usize, cover: u32, size: u32| (x.div_ceil(cover as usize) * size as usize) as u64;
    sh.launch([
        groups(n, wx * tn, wx),
        groups(m, wy * tm, wy),
        batches as u64,
    ])
}
