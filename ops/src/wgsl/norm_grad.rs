//! The normalisation gradients: one group of 256 per normalisation group, then one per channel
//! (`norm_grad.wgsl`).

use anyaccel_hal::{OpCall, Result, Tensor};

use super::{attrs, bind, count32, input, output, section, Access, Cx, Shader};
use crate::norm_grad::{in_acs_layouts, NormBack, NormKind};

static NORM_GRAD: &str = include_str!("../../kernels/wgsl/norm_grad.wgsl");

/// The most elements one work group sums (each of its four passes over a group takes 16 of
/// them per loop iteration and invocation).
const SUM_BUDGET: usize = 1 << 22;

pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let opt = |i: usize| call.inputs.get(i).and_then(|t| t.as_ref());
    let batch = op == "batch_norm_backward";
    let w_t = opt(if batch { 4 } else { 2 });
    let (mean_t, inv_t) = if batch {
        (opt(2), opt(3))
    } else {
        (None, None)
    };
    let (dy_t, x_t, dx_t) = (input(call, 0)?, input(call, 1)?, output(call, 0)?);
    let g = NormBack::of(
        op,
        &a,
        dy_t.desc(),
        x_t.desc(),
        w_t.map(Tensor::desc),
        [mean_t.map(Tensor::desc), inv_t.map(Tensor::desc)],
    )?;
    let groups = count32(op, "the groups", g.groups())?;
    count32(op, "x", x_t.numel())?;
    let longest = match g.kind {
        NormKind::Layer | NormKind::Rms => g.c.max(g.a * g.s),
        NormKind::Group => (g.cg * g.s).max(g.a * g.s),
        NormKind::Batch { .. } => g.a * g.s,
    };
    if longest > SUM_BUDGET {
        return Err(anyaccel_hal::Error::unsupported(format!(
            "{op}: a normalisation group or channel of {longest} elements; the WGSL kernel \
             sums at most {SUM_BUDGET} per work group (drivers such as lavapipe stop long \
             loops)"
        )));
    }
    if g.c == 0 {
        return Ok(());
    }
    let (dw_t, db_t) = (output(call, 1)?, call.outputs.get(2));
    let wide = cx.wide();
    let stats = cx.device.alloc(groups.max(1) as usize * 8)?;
    let per_channel = |sh: &mut Shader<'_>, name: &str, t: &Tensor, write: bool| -> Result<()> {
        let b = bind(t)?;
        sh.tensor(name, &b, Access::of(b.desc.dtype), write)?;
        sh.size(&format!("{name}_off"), b.desc.offset)?;
        sh.size(&format!("{name}_st"), b.desc.strides[0])?;
        Ok(())
    };
    in_acs_layouts(cx.queue, &g, [dy_t, x_t, dx_t], |[dy_t, x_t, dx_t]| {
        // The shader of `entry`: x and grad as [A, C, S], the sizes, the statistics.
        let shader = |entry: &'static str| -> Result<Shader<'_>> {
            let mut sh = Shader::new(cx, op, entry);
            for (name, t) in [("x", x_t), ("y", dy_t)] {
                let b = bind(t)?;
                sh.tensor(name, &b, Access::of(b.desc.dtype), false)?;
                let s = g
                    .acs_strides(&b.desc)
                    .ok_or_else(|| anyaccel_hal::Error::internal("norm gradient: layout"))?;
                sh.size(&format!("{name}_off"), b.desc.offset)?;
                for (part, v) in ["a", "c", "s"].iter().zip(s) {
                    sh.size(&format!("{name}_{part}"), v)?;
                }
            }
            for (name, v) in [
                ("a", g.a),
                ("c", g.c),
                ("s", g.s),
                ("per", g.per_sample),
                ("cg", g.cg),
            ] {
                sh.size(name, v)?;
            }
            sh.f32("eps", g.eps as f32);
            sh.words("stats", stats.whole(), "f32", true);
            sh.include_owned(section(super::nn::NN, "group_reduce")?.replace("$W", wide));
            let bx = match g.kind {
                NormKind::Layer | NormKind::Rms => "return vec4<u32>(g, 1u, 0u, p.c);",
                NormKind::Group => "return vec4<u32>(g / p.per, 1u, (g % p.per) * p.cg, p.cg);",
                NormKind::Batch { .. } => "return vec4<u32>(0u, p.a, g, 1u);",
            };
            sh.include_owned(
                section(NORM_GRAD, "nb_common")?
                    .replace("$BOX", bx)
                    .replace("$W", wide),
            );
            Ok(sh)
        };
        let weight = if w_t.is_some() {
            "$W(ld_w(p.w_off + e.y * p.w_st))"
        } else {
            "$W(1.0)"
        };
        if groups > 0 {
            let mut sh = shader("nb_groups")?;
            let dx = bind(dx_t)?;
            sh.tensor("dx", &dx, Access::of(dx.desc.dtype), true)?;
            let s = g
                .acs_strides(&dx.desc)
                .ok_or_else(|| anyaccel_hal::Error::internal("norm gradient: layout"))?;
            sh.size("d_off", dx.desc.offset)?;
            for (part, v) in ["a", "c", "s"].iter().zip(s) {
                sh.size(&format!("d_{part}"), v)?;
            }
            if let Some(w) = w_t {
                per_channel(&mut sh, "w", w, false)?;
            }
            let stats_text = match g.kind {
                NormKind::Batch { .. } => {
                    per_channel(&mut sh, "bmean", mean_t.ok_or_else(missing)?, false)?;
                    per_channel(&mut sh, "binv", inv_t.ok_or_else(missing)?, false)?;
                    "mean = $W(ld_bmean(p.bmean_off + g * p.bmean_st));\n    \
                     r = $W(ld_binv(p.binv_off + g * p.binv_st));"
                        .to_string()
                }
                NormKind::Rms => section(NORM_GRAD, "nb_rms")?.to_string(),
                _ => section(NORM_GRAD, "nb_moments")?.to_string(),
            };
            let depends = !matches!(g.kind, NormKind::Batch { training: false });
            let no_mean = if g.kind == NormKind::Rms {
                "ma = $W(0.0);"
            } else {
                ""
            };
            sh.body(
                &section(NORM_GRAD, "nb_groups")?
                    .replace("$STATS", &stats_text)
                    .replace("$DEPENDS", if depends { "true" } else { "false" })
                    .replace("$NO_MEAN_TERM", no_mean)
                    .replace("$WEIGHT", weight)
                    .replace("$W", wide),
            );
            sh.launch([groups as u64 * 256, 1, 1])?;
        }
        let mut sh = shader("nb_channels")?;
        per_channel(&mut sh, "dw", dw_t, true)?;
        let store_db = match db_t {
            Some(db) => {
                per_channel(&mut sh, "db", db, true)?;
                "st_db(p.db_off + c * p.db_st, f32(tb));"
            }
            None => "",
        };
        let group = match g.kind {
            NormKind::Layer | NormKind::Rms => "a",
            NormKind::Group => "a * p.per + c / p.cg",
            NormKind::Batch { .. } => "c",
        };
        sh.body(
            &section(NORM_GRAD, "nb_channels")?
                .replace("$GROUP", group)
                .replace("$STORE_DB", store_db)
                .replace("$W", wide),
        );
        sh.launch([g.c as u64 * 256, 1, 1])
    })
}

fn missing() -> anyaccel_hal::Error {
    anyaccel_hal::Error::internal("batch_norm_backward: mean or invstd missing")
}
