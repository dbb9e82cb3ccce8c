//! Remaps (`pad`, `flip`, `roll`, `repeat_interleave`, `tril`, `triu`) and line scatters
//! (`scatter`, `scatter_add`, `index_add`, `one_hot`): the rules of `crate::movement`, with the
//! `remap` and `scatter` sections of `index.wgsl`. A scatter reads back a flag word after its
//! launch to report an index out of range, as the indexed reads do.

use anyaccel_hal::{DType, Error, OpCall, Result};

use super::elementwise::copy;
use super::{attrs, bind, count32, input, output, section, Access, Cx, Shader, Space};
use crate::catalog::op_of;
use crate::convert;
use crate::movement::{bad_index, lines, remap, scatter_params};

use super::index::INDEX;

/// Loop iterations an invocation keeps to (drivers such as lavapipe stop a loop after 65535).
const LOOP_BUDGET: usize = 60000;

fn i32_of(op: &str, what: &str, v: i64) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::unsupported(format!(
            "{op}: {what} {v} does not fit the WGSL kernels' 32-bit indices"
        ))
    })
}

/// Runs a remap.
pub(crate) fn remap_launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let (x_t, out_t) = (input(call, 0)?, output(call, 0)?);
    let plan = remap(op_of(op)?, &attrs(call)?, x_t.desc())?;
    let (x, out) = (bind(x_t)?, bind(out_t)?);
    let n = count32(op, "the output", out.desc.numel())?;
    if n == 0 {
        return Ok(());
    }
    let words = plan
        .params(&x.desc.strides, &out.desc.strides)?
        .into_iter()
        .map(|v| i32_of(op, "a size or offset", v))
        .collect::<Result<Vec<i32>>>()?;
    let mut bytes: Vec<u8> = words.iter().flat_map(|v| v.to_le_bytes()).collect();
    if bytes.is_empty() {
        bytes = vec![0; 4]; // a rank-0 remap reads no word, but the binding needs one
    }
    let table = cx.device.alloc(bytes.len())?;
    cx.queue.write(&table.whole(), &bytes)?;

    let dt = out_t.dtype();
    let access = Access::raw(dt);
    let bits = convert::value_bits(plan.fill, dt);
    let fill = match access {
        Access::Raw8 => "vec2<u32>(p.v0, p.v1)",
        _ => "p.v0",
    };
    let rank = out.desc.rank();
    let mut axes = String::new();
    for d in (0..rank).rev() {
        let coord = if d + 1 == rank {
            "col = i32(o);"
        } else if d + 2 == rank {
            "row = i32(o);"
        } else {
            ""
        };
        axes.push_str(
            &section(INDEX, "remap_step")?
                .replace("$D", &d.to_string())
                .replace("$COORD", coord),
        );
    }
    let (lo, hi) = plan.band.unwrap_or((i64::MIN, i64::MAX));
    let clamp = |v: i64| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32;

    let mut sh = Shader::new(cx, op, "remap");
    sh.tensor("x", &x, access, false)?;
    sh.tensor("out", &out, access, true)?;
    sh.words("P", table.whole(), "i32", false);
    sh.u32("n", n);
    sh.size("xo", x.desc.offset)?;
    sh.size("oo", out.desc.offset)?;
    sh.u32("v0", bits as u32).u32("v1", (bits >> 32) as u32);
    sh.i32("lo", clamp(lo)).i32("hi", clamp(hi));
    sh.include(section(INDEX, "remap_axis")?);
    sh.body(
        &section(INDEX, "remap")?
            .replace("$AXES\n", &axes)
            .replace("$FILL", fill),
    );
    sh.launch([n as u64, 1, 1])
}

/// Runs a line scatter.
pub(crate) fn scatter_launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let name = call.op.as_str();
    let op = op_of(name)?;
    let (x_t, idx_t, src_t, out_t) = (
        input(call, 0)?,
        input(call, 1)?,
        input(call, 2)?,
        output(call, 0)?,
    );
    let a = attrs(call)?;
    let (axis, alpha, add) = scatter_params(op, &a, out_t.rank())?;
    let (x, idx, src, out) = (bind(x_t)?, bind(idx_t)?, bind(src_t)?, bind(out_t)?);
    let l = lines(op, axis, &x.desc, &idx.desc, &src.desc, &out.desc);
    if !l.covers {
        copy(cx, name, &x, &out)?;
    }
    let total = count32(name, "the output", l.count().saturating_mul(l.n))?;
    if total == 0 {
        return Ok(());
    }
    if l.k > LOOP_BUDGET {
        return Err(Error::unsupported(format!(
            "{name}: {} indices per line would need as many loop iterations per invocation in \
             the WGSL kernel, more than the {LOOP_BUDGET} it keeps to (drivers such as lavapipe \
             stop a loop after 65535)",
            l.k
        )));
    }
    let d = out_t.dtype();
    let access = if add { Access::of(d) } else { Access::raw(d) };
    let flag = cx.device.alloc(4)?;
    cx.queue.write(&flag.whole(), &0u32.to_le_bytes())?;

    let int64 = idx_t.dtype() == DType::I64;
    let mut sh = Shader::new(cx, name, "scatter");
    sh.tensor("x", &x, access, false)?;
    sh.tensor(
        "idx",
        &idx,
        if int64 { Access::I64 } else { Access::I32 },
        false,
    )?;
    sh.tensor("src", &src, access, false)?;
    sh.tensor("out", &out, access, true)?;
    sh.words("flag", flag.whole(), "u32", true);
    let mut space = Space::new(&l.shape);
    for t in 0..4 {
        space = space.with(l.offsets[t], l.strides[t].clone());
    }
    sh.space(space);
    sh.u32("total", total);
    sh.size("n", l.n)?;
    sh.size("k", l.k)?;
    for (name, step) in ["sx", "si", "ss", "so"].iter().zip(l.steps) {
        sh.size(name, step)?;
    }
    let combine = if !add {
        "ld_src(o[2] + q * p.ss)".to_string()
    } else {
        match d {
            DType::I64 => {
                let v = alpha as i64 as u64;
                sh.u32("a0", v as u32).u32("a1", (v >> 32) as u32);
                "acc + ld_src(o[2] + q * p.ss) * i64_from_parts(p.a0, p.a1)".to_string()
            }
            DType::I32 | DType::I8 => {
                sh.i32("alpha", alpha as i64 as i32);
                "acc + ld_src(o[2] + q * p.ss) * p.alpha".to_string()
            }
            DType::U8 => {
                sh.u32("alpha", alpha as i64 as u32);
                "acc + ld_src(o[2] + q * p.ss) * p.alpha".to_string()
            }
            _ => {
                sh.f32("alpha", alpha as f32);
                "acc + ld_src(o[2] + q * p.ss) * p.alpha".to_string()
            }
        }
    };
    let (bad, eq) = if int64 {
        ("t < 0li || t >= i64(p.n)", "t == i64(j)")
    } else {
        ("t < 0 || u32(t) >= p.n", "u32(t) == j")
    };
    sh.body(
        &section(INDEX, "scatter")?
            .replace("$BAD", bad)
            .replace("$EQ", eq)
            .replace("$COMBINE", &combine),
    );
    sh.launch([total as u64, 1, 1])?;

    let mut word = [0u8; 4];
    cx.queue.read(&flag.whole(), &mut word)?;
    if u32::from_le_bytes(word) == 0 {
        return Ok(());
    }
    let bytes = idx_t.to_bytes(cx.queue)?;
    Err(bad_index(name, &bytes, idx_t.dtype(), l.n, axis))
}
