//! `index_select`, `embedding` and `gather`: an indexed copy of raw elements, with a flag word
//! for indices out of range that the call reads back (a blocking read of 4 bytes). When it is
//! set, the call reads the indices and reports `OutOfBounds` naming the first bad index in
//! their row-major order.

use anyaccel_hal::{DType, OpCall, Result};

use super::{attrs, bind, count32, input, output, section, Access, Cx, Shader, Space};

pub(super) static INDEX: &str = include_str!("../../kernels/wgsl/index.wgsl");

/// Runs one indexing op.
pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let x_t = input(call, 0)?;
    let idx_t = input(call, 1)?;
    let out_t = output(call, 0)?;
    let (x, idx, out) = (bind(x_t)?, bind(idx_t)?, bind(out_t)?);
    let rank = out.desc.rank();
    // Per op: the source strides over the output's shape (indexed dimension at 0), the
    // indices' strides over it, and the indexed dimension (its number, stride and size).
    let (src_strides, idx_strides, axis, step, limit) = match op {
        "embedding" => {
            let r = idx.desc.rank();
            let mut src = vec![0; r + 1];
            src[r] = x.desc.strides[1];
            let mut is = idx.desc.strides.clone();
            is.push(0);
            (src, is, 0, x.desc.strides[0], x.desc.shape[0])
        }
        _ => {
            let axis = a.axis("axis", None, x.desc.rank())?;
            let mut src = x.desc.strides.clone();
            src[axis] = 0;
            let is = if op == "gather" {
                idx.desc.strides.clone()
            } else {
                let mut is = vec![0; rank];
                is[axis] = idx.desc.strides[0];
                is
            };
            (src, is, axis, x.desc.strides[axis], x.desc.shape[axis])
        }
    };
    let n = count32(op, "the output", out.desc.numel())?;
    let flag = cx.device.alloc(4)?;
    cx.queue.write(&flag.whole(), &0u32.to_le_bytes())?;

    let int64 = idx_t.dtype() == DType::I64;
    let mut sh = Shader::new(cx, op, "index");
    sh.tensor("x", &x, Access::raw(x.desc.dtype), false)?;
    sh.tensor(
        "idx",
        &idx,
        if int64 { Access::I64 } else { Access::I32 },
        false,
    )?;
    sh.tensor("out", &out, Access::raw(out.desc.dtype), true)?;
    sh.words("flag", flag.whole(), "u32", true);
    sh.space(
        Space::new(&out.desc.shape)
            .with(x.desc.offset, src_strides)
            .with(idx.desc.offset, idx_strides)
            .with(out.desc.offset, out.desc.strides.clone()),
    );
    sh.u32("n", n);
    sh.size("step", step)?;
    sh.size("limit", limit)?;
    let bad = if int64 {
        "k < 0li || k >= i64(p.limit)"
    } else {
        "k < 0 || u32(k) >= p.limit"
    };
    sh.body(&section(INDEX, "index")?.replace("$BAD", bad));
    sh.launch([n as u64, 1, 1])?;

    let mut word = [0u8; 4];
    cx.queue.read(&flag.whole(), &mut word)?;
    if u32::from_le_bytes(word) == 0 {
        return Ok(());
    }
    let bytes = idx_t.to_bytes(cx.queue)?;
    Err(crate::movement::bad_index(
        op,
        &bytes,
        idx_t.dtype(),
        limit,
        axis,
    ))
}
