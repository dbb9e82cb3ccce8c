//! `cross_entropy` and `cross_entropy_backward`: one group of 256 per position (`loss.wgsl`).

use anyaccel_hal::{DType, Error, OpCall, Result, Tensor};

use super::{attrs, bind, count32, input, output, section, Access, Cx, Shader, Space};
use crate::loss::{bad_target_error, CeGeom, Reduction};

static LOSS: &str = include_str!("../../kernels/wgsl/loss.wgsl");

/// Loop iterations an invocation keeps to (drivers such as lavapipe stop a loop after 65535).
const LOOP_BUDGET: usize = 60000;

pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let backward = op == "cross_entropy_backward";
    let first = backward as usize;
    let (x_t, tgt_t, out_t) = (
        input(call, first)?,
        input(call, first + 1)?,
        output(call, 0)?,
    );
    let grad_t = if backward {
        Some(input(call, 0)?)
    } else {
        None
    };
    let g = CeGeom::of(op, &a, x_t.desc(), tgt_t.desc(), grad_t.map(Tensor::desc))?;
    if g.classes.div_ceil(256) > LOOP_BUDGET {
        return Err(Error::unsupported(format!(
            "{op}: {} classes need more than the {LOOP_BUDGET} loop iterations per invocation \
             that the WGSL kernel keeps to (drivers such as lavapipe stop a loop after 65535)",
            g.classes
        )));
    }
    let positions = count32(op, "the positions", g.positions)?;
    count32(op, "the logits", x_t.numel())?;
    let (x, tgt, out) = (bind(x_t)?, bind(tgt_t)?, bind(out_t)?);
    let grad = grad_t.map(bind).transpose()?;
    let wide = cx.wide();
    let flag = cx.device.alloc(4)?;
    cx.queue.write(&flag.whole(), &0u32.to_le_bytes())?;
    let part = cx.device.alloc(g.positions.max(1) * 8)?;
    let cnt = cx.device.alloc(4)?;
    let zeros = vec![0; g.shape.len()];
    let mut out_pos = out.desc.strides.clone();
    if backward {
        out_pos.remove(1);
    }
    // The shader of `entry`: logits, target, out (and grad), the positions' space, parameters.
    let shader = |entry: &'static str, none: bool| -> Result<Shader<'_>> {
        let mut sh = Shader::new(cx, op, entry);
        let access = Access::of(x.desc.dtype);
        sh.need(DType::I64)?;
        sh.tensor("x", &x, access, false)?;
        let it = if tgt.desc.dtype == DType::I64 {
            Access::I64
        } else {
            Access::I32
        };
        sh.tensor("tgt", &tgt, it, false)?;
        sh.tensor("out", &out, access, true)?;
        let mut space = Space::new(&g.shape)
            .with(x.desc.offset, CeGeom::position_strides(&x.desc))
            .with(tgt.desc.offset, tgt.desc.strides.clone())
            .with(
                out.desc.offset,
                if none || backward {
                    out_pos.clone()
                } else {
                    zeros.clone()
                },
            );
        if let Some(gr) = &grad {
            sh.tensor("g", gr, access, false)?;
            let gs = if g.reduction == Reduction::None {
                gr.desc.strides.clone()
            } else {
                zeros.clone()
            };
            space = space.with(gr.desc.offset, gs);
        }
        sh.space(space);
        sh.words("flag", flag.whole(), "u32", true);
        sh.words("part", part.whole(), "f32", true);
        sh.words("cnt", cnt.whole(), "f32", true);
        sh.u32("positions", positions);
        sh.size("classes", g.classes)?;
        sh.size("cs", x.desc.strides[1])?;
        sh.size("ocs", out.desc.strides.get(1).copied().unwrap_or(0))?;
        sh.size("o_off", out.desc.offset)?;
        let ign = g.ignore_index as u64;
        sh.u32("ign_lo", ign as u32);
        sh.u32("ign_hi", (ign >> 32) as u32);
        sh.f32("eps", g.smoothing as f32);
        sh.include_owned(section(super::nn::NN, "group_reduce")?.replace("$W", wide));
        sh.include_owned(section(LOSS, "ce_common")?.replace("$W", wide));
        Ok(sh)
    };
    let rows = |count: bool| -> Result<()> {
        let none = g.reduction == Reduction::None && !count;
        let mut sh = shader("ce_rows", none)?;
        let store = if none {
            "st_out(o[2], f32(loss));"
        } else {
            "part[2u * i] = f32(loss);\n        part[2u * i + 1u] = select(0.0, 1.0, tg.y == 0li);"
        };
        sh.body(
            &section(LOSS, "ce_rows")?
                .replace("$COUNT", if count { "true" } else { "false" })
                .replace("$STORE", store)
                .replace("$W", wide),
        );
        sh.launch([positions as u64 * 256, 1, 1])
    };
    let total = |store: &str| -> Result<()> {
        let mut sh = shader("ce_total", false)?;
        sh.body(
            &section(LOSS, "ce_total")?
                .replace("$STORE", store)
                .replace("$W", wide),
        );
        sh.launch([256, 1, 1])
    };
    let check = || -> Result<()> {
        let mut word = [0u8; 4];
        cx.queue.read(&flag.whole(), &mut word)?;
        if u32::from_le_bytes(word) != 0 {
            return Err(bad_target_error(op, &g, tgt_t, cx.queue));
        }
        Ok(())
    };
    if !backward {
        if positions > 0 {
            rows(false)?;
            check()?;
        }
        return match g.reduction {
            Reduction::None => Ok(()),
            Reduction::Mean => total("st_out(p.o_off, f32(ts / tn));"),
            Reduction::Sum => total("st_out(p.o_off, f32(ts));"),
        };
    }
    if positions == 0 {
        return Ok(());
    }
    if g.classes == 0 {
        // Every target must still be ignore_index.
        rows(true)?;
        return check();
    }
    let mean = g.reduction == Reduction::Mean;
    if mean {
        rows(true)?;
        total("cnt[0] = f32(tn);")?;
    }
    let mut sh = shader("ce_grad", false)?;
    sh.body(
        &section(LOSS, "ce_grad")?
            .replace("$MEAN", if mean { "true" } else { "false" })
            .replace("$W", wide),
    );
    sh.launch([positions as u64 * 256, 1, 1])?;
    check()
}
