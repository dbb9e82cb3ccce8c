//! `uniform`, `normal`, `bernoulli` and `dropout` in WGSL (`random.wgsl`), through the `map`
//! kernel: each element computes the Philox block of its counter and takes its word.

use anyaccel_hal::{DType, OpCall, Result};

use super::elementwise::{map, UNARY};
use super::{attrs, bind, input, output, Access, Cx, Shader};
use crate::catalog::{op_of, Op};
use crate::random::{params, Stream};

static RANDOM: &str = include_str!("../../kernels/wgsl/random.wgsl");

pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let stream = Stream::of(&a)?;
    let out_t = output(call, 0)?;
    let out = bind(out_t)?;
    let dt = out_t.dtype();
    let wide = dt == DType::F64;
    let kind = op_of(op)?;
    // The two parameters: an f32 each (p.a, p.b), or the halves of an f64 each.
    let (pa, pb) = params(&a, kind)?;
    let (a64, b64) = ("f64_from_parts(p.a0, p.a1)", "f64_from_parts(p.b0, p.b1)");
    let word = "rnd_word(lin)";
    let expr = match (kind, wide) {
        (Op::Uniform, false) => format!("p.a + rmul(p.b, rnd_u24({word}))"),
        (Op::Uniform, true) => format!("{a64} + rmul64({b64}, rnd_u32d({word}))"),
        (Op::Normal, false) => format!("p.a + rmul(p.b, rnd_normal_z({word}))"),
        (Op::Normal, true) => format!("{a64} + rmul64({b64}, f64(rnd_normal_z({word})))"),
        // NaN tests on bits: a comparison with NaN may be true on some drivers.
        (Op::Bernoulli, false) => {
            format!("select(0.0, 1.0, rnd_u24({word}) < a0 && !is_nan(a0))")
        }
        (Op::Bernoulli, true) => {
            format!("select(0.0lf, 1.0lf, rnd_u32d({word}) < a0 && !is_nan64(a0))")
        }
        (_, false) => format!("(a0 * select(1.0, 0.0, rnd_u24({word}) < p.a)) * p.b"),
        (_, true) => format!("(a0 * select(1.0lf, 0.0lf, rnd_u32d({word}) < {a64})) * {b64}"),
    };
    let inputs = match kind {
        Op::Bernoulli | Op::Dropout => vec![(bind(input(call, 0)?)?, Access::of(dt))],
        _ => Vec::new(),
    };
    map(
        cx,
        op,
        &inputs,
        (&out, Access::of(dt)),
        &expr,
        |sh: &mut Shader<'_>| {
            sh.u32("k0", stream.seed as u32)
                .u32("k1", (stream.seed >> 32) as u32)
                .u32("c2", stream.offset as u32)
                .u32("c3", (stream.offset >> 32) as u32)
                .u32("zero", 0);
            if wide {
                let (a, b) = (pa.to_bits(), pb.to_bits());
                sh.u32("a0", a as u32).u32("a1", (a >> 32) as u32);
                sh.u32("b0", b as u32).u32("b1", (b >> 32) as u32);
                sh.need(DType::F64)?;
            } else {
                sh.f32("a", pa as f32).f32("b", pb as f32);
            }
            sh.use_section(UNARY, "mul_wide")?;
            sh.use_section(RANDOM, "normal")?;
            if wide {
                sh.use_section(RANDOM, "wide")?;
            }
            Ok(())
        },
    )
}
