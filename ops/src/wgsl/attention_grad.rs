//! `attention_backward` (`attention_grad.wgsl`): per-row statistics, then dq per query row and
//! dk, dv per key row, into f32 tensors cast into the outputs.

use anyaccel_hal::{Error, OpCall, Result};

use super::{bind, count32, section, Access, Cx, Shader};
use crate::attention::{Backward, MaskMode};

static ATTENTION_GRAD: &str = include_str!("../../kernels/wgsl/attention_grad.wgsl");

/// Loop iterations an invocation keeps to (drivers such as lavapipe stop a loop after 65535).
const LOOP_BUDGET: usize = 60000;

pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let b = Backward::prepare(cx.queue, call)?;
    let longest = b.geo.lq.max(b.geo.lk).max(b.d).max(b.dv).max(b.geo.group);
    if longest > LOOP_BUDGET {
        return Err(Error::unsupported(format!(
            "{op}: a loop of {longest} iterations (rows, keys or head size) is more than the \
             {LOOP_BUDGET} per invocation that the WGSL kernels keep to (drivers such as \
             lavapipe stop a loop after 65535)"
        )));
    }
    let rows = count32(op, "the query rows", b.rows)?;
    let keys = count32(op, "the key rows", b.keys)?;
    count32(op, "q", b.q.numel())?;
    count32(op, "k", b.k.numel())?;
    count32(op, "v", b.v.numel())?;

    if rows > 0 && keys > 0 {
        let stats = cx.device.alloc(b.rows * 12)?;
        let (q, k, v, g) = (bind(&b.q)?, bind(&b.k)?, bind(&b.v)?, bind(&b.g)?);
        let mask = match &b.mask {
            Some((m, st)) => {
                let bound = bind(m)?;
                // The elements the kernels index: the bound window.
                count32(op, "the mask", bound.view.len() / m.dtype().size_in_bytes())?;
                Some((bound, *st))
            }
            None => None,
        };
        let access = Access::of(b.q.dtype());
        let shader = |entry: &'static str| -> Result<Shader<'_>> {
            let mut sh = Shader::new(cx, op, entry);
            sh.words("stats", stats.whole(), "f32", true);
            for (name, t) in [("q", &q), ("k", &k), ("v", &v), ("g", &g)] {
                sh.tensor(name, t, access, false)?;
            }
            // The mask's first element and strides (read by ab_mo; zeros without a mask).
            let (mo, ms) = mask
                .as_ref()
                .map_or((0, [0; 4]), |(m, st)| (m.desc.offset, *st));
            sh.size("mo", mo)?;
            for (name, v) in ["ms0", "ms1", "ms2", "ms3"].into_iter().zip(ms) {
                sh.size(name, v)?;
            }
            let term = match (&mask, b.mask_mode) {
                (Some((m, _)), MaskMode::Bool) => {
                    sh.tensor("mk", m, Access::Bool, false)?;
                    "if (!ld_mk(ab_mo(r, j))) { l = -inf_f32(); }"
                }
                (Some((m, _)), MaskMode::Additive) => {
                    sh.tensor("mk", m, access, false)?;
                    "l = l + f32(ld_mk(ab_mo(r, j)));"
                }
                _ => "",
            };
            sh.u32("rows", rows).u32("keys", keys);
            sh.size("lq", b.geo.lq)?;
            sh.size("lk", b.geo.lk)?;
            sh.size("d", b.d)?;
            sh.size("dv", b.dv)?;
            sh.size("hq", b.hq)?;
            sh.size("group", b.geo.group)?;
            sh.i32(
                "shift",
                i32::try_from(b.geo.shift).map_err(|_| {
                    Error::unsupported(format!("{op}: Lk - Lq does not fit 32 bits"))
                })?,
            );
            sh.size("window", b.geo.window)?;
            sh.u32("causal", b.geo.causal as u32);
            sh.f32("scale", b.scale as f32);
            sh.f32("cap", b.geo.softcap as f32);
            sh.include_owned(section(ATTENTION_GRAD, "ab_common")?.replace("$MASK_TERM", term));
            sh.body(section(ATTENTION_GRAD, entry)?);
            Ok(sh)
        };
        shader("ab_stats")?.launch([rows as u64, 1, 1])?;
        let mut sh = shader("ab_dq")?;
        sh.words("dq", b.dq.view().clone(), "f32", true);
        sh.launch([rows as u64, 1, 1])?;
        let mut sh = shader("ab_dkv")?;
        sh.words("dk", b.dk.view().clone(), "f32", true);
        sh.words("dv", b.dv_t.view().clone(), "f32", true);
        sh.launch([keys as u64, 1, 1])?;
    }
    b.finish(cx.queue, call)
}
