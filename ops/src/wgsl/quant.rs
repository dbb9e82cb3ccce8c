//! The quantized ops (`quant.wgsl`): one invocation per group (`quantize`) or per output
//! element.

use anyaccel_hal::{DType, Error, OpCall, Result, Tensor};

use super::{attrs, bind, count32, input, output, section, Access, Bound, Cx, Shader};
use crate::catalog::{op_of, Op};
use crate::quant::{in_row_layouts, rows_of, Bits, DequantizeGeom, I8Geom, QuantizeGeom, WqGeom};

static QUANT: &str = include_str!("../../kernels/wgsl/quant.wgsl");

/// Loop iterations an invocation keeps to (drivers such as lavapipe stop a loop after 65535).
const LOOP_BUDGET: usize = 60000;

fn budget(op: &str, what: &str, n: usize) -> Result<()> {
    if n > LOOP_BUDGET {
        return Err(Error::unsupported(format!(
            "{op}: {what} of {n} needs more than the {LOOP_BUDGET} loop iterations per \
             invocation that the WGSL kernel keeps to (drivers such as lavapipe stop a loop \
             after 65535)"
        )));
    }
    Ok(())
}

/// Binds `t` as `name` with `p.<prefix>o`, `p.<prefix>rs`, `p.<prefix>cs`: its offset, the
/// stride between rows (all leading axes as one, see `rows_of`) and the stride along the last
/// axis.
fn bind_rows(
    sh: &mut Shader<'_>,
    name: &str,
    prefix: &str,
    t: &Tensor,
    access: Access,
    write: bool,
) -> Result<()> {
    let b: Bound = bind(t)?;
    sh.tensor(name, &b, access, write)?;
    let (_, rs, cs) = rows_of(&b.desc)
        .ok_or_else(|| Error::internal("quantized op: a layout without row strides"))?;
    sh.size(&format!("{prefix}o"), b.desc.offset)?;
    sh.size(&format!("{prefix}rs"), rs)?;
    sh.size(&format!("{prefix}cs"), cs)?;
    Ok(())
}

/// The helpers for quantized data `q` of `bits` and zero points `z`, if any (`reads`: q_at and
/// q_zero), or for rounding to the scales' dtype `float` (q_round).
fn common(
    sh: &mut Shader<'_>,
    q: &str,
    bits: Bits,
    zeros: bool,
    float: DType,
    reads: bool,
) -> Result<()> {
    let qat = match bits {
        Bits::Int8 => format!("ld_{q}(o + k * cs)"),
        Bits::Int4 => format!("i32((ld_{q}(o + (k >> 1u) * cs) >> ((k & 1u) * 4u)) & 15u)"),
    };
    let zero = if zeros {
        "i32(ld_z(p.zo + r * p.zrs + g * p.zcs))".to_string()
    } else {
        format!("{}", bits.implicit_zero())
    };
    let round = match float {
        DType::F16 => "f32(f16(v))",
        DType::BF16 => "bf16_to_f32(bf16_from_f32(v) & 0xffffu)",
        _ => "v",
    };
    if reads {
        sh.include_owned(
            section(QUANT, "q_read")?
                .replace("$QAT", &qat)
                .replace("$ZERO", &zero),
        );
    } else {
        sh.include_owned(section(QUANT, "q_round")?.replace("$ROUND", round));
    }
    Ok(())
}

fn storage(bits: Bits) -> Access {
    Access::of(bits.storage())
}

pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let opt = |k: usize| call.inputs.get(k).and_then(|t| t.as_ref());
    match op_of(op)? {
        Op::Quantize => {
            let x = input(call, 0)?;
            let g = QuantizeGeom::of(op, &a, x.desc())?;
            budget(op, "a group", g.fmt.group)?;
            let n = count32(op, "the groups", g.rows * g.fmt.groups())?;
            count32(op, "x", x.numel())?;
            let outs = [output(call, 0)?, output(call, 1)?, output(call, 2)?];
            in_row_layouts(cx.queue, &[Some(x)], &outs, |ins, outs| {
                let x = ins[0].as_ref().expect("x is present");
                let dt = x.dtype();
                let mut sh = Shader::new(cx, op, "quantize");
                bind_rows(&mut sh, "x", "x", x, Access::of(dt), false)?;
                bind_rows(&mut sh, "q", "q", &outs[0], storage(g.fmt.bits), true)?;
                bind_rows(&mut sh, "s", "s", &outs[1], Access::of(dt), true)?;
                bind_rows(&mut sh, "z", "z", &outs[2], storage(g.fmt.bits), true)?;
                let (qmin, qmax) = g.levels();
                sh.u32("n", n);
                sh.size("groups", g.fmt.groups())?;
                sh.size("G", g.fmt.group)?;
                sh.i32("qmin", qmin).i32("qmax", qmax);
                sh.u32("sym", g.symmetric as u32);
                sh.u32("symmax", g.fmt.bits.symmetric_max() as u32);
                sh.i32("zdef", g.fmt.bits.implicit_zero());
                common(&mut sh, "q", g.fmt.bits, false, dt, false)?;
                sh.include_owned(section(QUANT, "q_code")?.to_string());
                let (store_q, zstore) = match g.fmt.bits {
                    Bits::Int8 => (
                        "for (var j = 0u; j < p.G; j++) {\n        \
                         st_q(qrow + (g * p.G + j) * p.qcs, \
                         q_code(f32(ld_x(base + j * p.xcs)), scale, zero));\n    }",
                        "i32(zero)",
                    ),
                    Bits::Int4 => (
                        "for (var j = 0u; j < p.G; j += 2u) {\n        \
                         let c0 = bitcast<u32>(q_code(f32(ld_x(base + j * p.xcs)), scale, zero));\n        \
                         let c1 = bitcast<u32>(q_code(f32(ld_x(base + (j + 1u) * p.xcs)), scale, zero));\n        \
                         st_q(qrow + ((g * p.G + j) >> 1u) * p.qcs, (c0 & 15u) | ((c1 & 15u) << 4u));\n    }",
                        "u32(zero)",
                    ),
                };
                sh.body(
                    &section(QUANT, "quantize")?
                        .replace("$STORE_Q", store_q)
                        .replace("$ZSTORE", zstore),
                );
                sh.launch([n as u64, 1, 1])
            })
        }
        Op::Dequantize => {
            let (q, s) = (input(call, 0)?, input(call, 1)?);
            let z = opt(2);
            let g = DequantizeGeom::of(op, &a, q.desc(), s.desc(), z.map(Tensor::desc))?;
            let out = output(call, 0)?;
            let n = count32(op, "the output", g.rows * g.fmt.k)?;
            in_row_layouts(cx.queue, &[Some(q), Some(s), z], &[out], |ins, outs| {
                let (q, s) = (ins[0].as_ref().expect("q"), ins[1].as_ref().expect("s"));
                let z = ins[2].as_ref();
                let dt = s.dtype();
                let mut sh = Shader::new(cx, op, "dequantize");
                bind_rows(&mut sh, "out", "o", &outs[0], Access::of(dt), true)?;
                bind_rows(&mut sh, "q", "q", q, storage(g.fmt.bits), false)?;
                bind_rows(&mut sh, "s", "s", s, Access::of(dt), false)?;
                if let Some(z) = z {
                    bind_rows(&mut sh, "z", "z", z, storage(g.fmt.bits), false)?;
                }
                sh.u32("n", n);
                sh.size("K", g.fmt.k)?;
                sh.size("G", g.fmt.group)?;
                common(&mut sh, "q", g.fmt.bits, z.is_some(), dt, true)?;
                sh.body(section(QUANT, "dequantize")?);
                sh.launch([n as u64, 1, 1])
            })
        }
        Op::MatmulWq => {
            let (x, w, s) = (input(call, 0)?, input(call, 1)?, input(call, 2)?);
            let z = opt(3);
            let g = WqGeom::of(op, &a, x.desc(), w.desc(), s.desc(), z.map(Tensor::desc))?;
            budget(op, "K", g.fmt.k)?;
            let n = count32(op, "the output", g.m * g.n)?;
            let out = output(call, 0)?;
            in_row_layouts(cx.queue, &[Some(x)], &[out], |ins, outs| {
                let x = ins[0].as_ref().expect("x");
                let dt = x.dtype();
                let mut sh = Shader::new(cx, op, "matmul_wq");
                bind_rows(&mut sh, "out", "o", &outs[0], Access::of(dt), true)?;
                bind_rows(&mut sh, "x", "x", x, Access::of(dt), false)?;
                bind_rows(&mut sh, "w", "q", w, storage(g.fmt.bits), false)?;
                bind_rows(&mut sh, "s", "s", s, Access::of(dt), false)?;
                if let Some(z) = z {
                    bind_rows(&mut sh, "z", "z", z, storage(g.fmt.bits), false)?;
                }
                sh.u32("n", n);
                sh.size("N", g.n)?;
                sh.size("K", g.fmt.k)?;
                sh.size("G", g.fmt.group)?;
                common(&mut sh, "w", g.fmt.bits, z.is_some(), dt, true)?;
                sh.body(&section(QUANT, "matmul_wq")?.replace("$W", cx.wide()));
                sh.launch([n as u64, 1, 1])
            })
        }
        Op::MatmulI8 => {
            let (at, bt) = (input(call, 0)?, input(call, 1)?);
            let (rs, cs) = (opt(2), opt(3));
            let g = I8Geom::of(
                op,
                &a,
                at.desc(),
                bt.desc(),
                rs.map(Tensor::desc),
                cs.map(Tensor::desc),
            )?;
            budget(op, "K", g.k)?;
            let n = count32(op, "the output", g.m * g.n)?;
            let out = output(call, 0)?;
            let mut sh = Shader::new(cx, op, "matmul_i8");
            bind_rows(&mut sh, "out", "o", out, Access::of(g.out), true)?;
            bind_rows(&mut sh, "a", "a", at, Access::I8, false)?;
            bind_rows(&mut sh, "b", "b", bt, Access::I8, false)?;
            let mut finish = String::new();
            if g.out == DType::I32 {
                finish.push_str("st_out(p.oo + m * p.ors + n * p.ocs, v);");
            } else {
                finish.push_str("var f = f32(v);");
                for (name, t, idx) in [("r", rs, "m"), ("c", cs, "n")] {
                    let Some(t) = t else { continue };
                    let b = bind(t)?;
                    sh.tensor(&format!("{name}sc"), &b, Access::F32, false)?;
                    sh.size(&format!("{name}o"), b.desc.offset)?;
                    sh.size(&format!("{name}s"), b.desc.strides[0])?;
                    finish.push_str(&format!(
                        "\n    f = f * ld_{name}sc(p.{name}o + {idx} * p.{name}s);"
                    ));
                }
                finish.push_str("\n    st_out(p.oo + m * p.ors + n * p.ocs, f);");
            }
            sh.u32("n", n);
            sh.size("N", g.n)?;
            sh.size("K", g.k)?;
            sh.body(&section(QUANT, "matmul_i8")?.replace("$FINISH", &finish));
            sh.launch([n as u64, 1, 1])
        }
        _ => Err(crate::catalog::misrouted(op)),
    }
}
