//! The quantized ops (`quant.h`): one item per group (`quantize`) or per output element.

use anyaccel_hal::{DType, KernelArg, OpCall, Result, Tensor};

use super::elementwise::{input, output};
use super::{base_offset, buf, dtype_defs, Ctx, Family, KernelSpec, EW_GROUPS};
use crate::attrs::Attrs;
use crate::catalog::{op_of, Op};
use crate::quant::{in_row_layouts, rows_of, Bits, DequantizeGeom, I8Geom, QuantizeGeom, WqGeom};

fn i(v: usize) -> KernelArg {
    KernelArg::scalar(v as i64)
}

/// Offset, row stride and column stride of a tensor seen as rows of its last axis.
fn view(t: &Tensor) -> [KernelArg; 3] {
    let (_, rs, cs) = rows_of(t.desc()).unwrap_or((0, 0, 0));
    [KernelArg::scalar(base_offset(t)), i(rs), i(cs)]
}

/// Offset and strides of a 2-D tensor.
fn view2(t: &Tensor) -> [KernelArg; 3] {
    [
        KernelArg::scalar(base_offset(t)),
        i(t.strides()[0]),
        i(t.strides()[1]),
    ]
}

fn spec(entry: &'static str, flag: &str, x: DType, bits: Bits) -> KernelSpec {
    let mut s = KernelSpec::new(Family::Quant, entry)
        .flag(flag)
        .def("Q_ZDEF", bits.implicit_zero());
    match x {
        DType::F16 => s = s.flag("XT_F16"),
        DType::BF16 => s = s.flag("XT_BF16"),
        _ => {}
    }
    if bits == Bits::Int4 {
        s = s.flag("Q_INT4");
    }
    dtype_defs(s, "X", x)
}

pub(crate) fn launch(ctx: &Ctx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let attrs = Attrs::of(call)?;
    let opt = |k: usize| call.inputs.get(k).and_then(|t| t.as_ref());
    match op_of(op)? {
        Op::Quantize => {
            let x = input(call, 0)?;
            let g = QuantizeGeom::of(op, &attrs, x.desc())?;
            let outs = [output(call, 0)?, output(call, 1)?, output(call, 2)?];
            in_row_layouts(ctx.queue, &[Some(x)], &outs, |ins, outs| {
                let x = ins[0].as_ref().expect("x is present");
                let (qmin, qmax) = g.levels();
                let mut s = spec("quantize", "Q_QUANTIZE", x.dtype(), g.fmt.bits)
                    .def("QMIN", qmin)
                    .def("QMAX", qmax)
                    .def("Q_SYMMAX", g.fmt.bits.symmetric_max() as i32);
                if g.symmetric {
                    s = s.flag("Q_SYM");
                }
                let n = g.rows * g.fmt.groups();
                let mut args = vec![buf(&outs[0]), buf(&outs[1]), buf(&outs[2]), buf(x)];
                args.extend([i(g.rows), i(g.fmt.groups()), i(g.fmt.group)]);
                for t in [x, &outs[0], &outs[1], &outs[2]] {
                    args.extend(view(t));
                }
                ctx.run(&s, ctx.grid(n, EW_GROUPS), &args)
            })
        }
        Op::Dequantize => {
            let (q, s) = (input(call, 0)?, input(call, 1)?);
            let z = opt(2);
            let g = DequantizeGeom::of(op, &attrs, q.desc(), s.desc(), z.map(Tensor::desc))?;
            let out = output(call, 0)?;
            in_row_layouts(ctx.queue, &[Some(q), Some(s), z], &[out], |ins, outs| {
                let (q, s) = (ins[0].as_ref().expect("q"), ins[1].as_ref().expect("s"));
                let z = ins[2].as_ref();
                let mut sp = spec("dequantize", "Q_DEQUANTIZE", s.dtype(), g.fmt.bits);
                if z.is_some() {
                    sp = sp.flag("Q_ZERO");
                }
                let mut args = vec![buf(&outs[0]), buf(q), buf(s), buf(z.unwrap_or(q))];
                args.extend([i(g.rows), i(g.fmt.k), i(g.fmt.group)]);
                args.extend(view(&outs[0]));
                args.extend(view(q));
                args.extend(view(s));
                args.extend(z.map_or([i(0), i(0), i(0)], view));
                ctx.run(&sp, ctx.grid(g.rows * g.fmt.k, EW_GROUPS), &args)
            })
        }
        Op::MatmulWq => {
            let (x, w, s) = (input(call, 0)?, input(call, 1)?, input(call, 2)?);
            let z = opt(3);
            let g = WqGeom::of(
                op,
                &attrs,
                x.desc(),
                w.desc(),
                s.desc(),
                z.map(Tensor::desc),
            )?;
            let out = output(call, 0)?;
            in_row_layouts(ctx.queue, &[Some(x)], &[out], |ins, outs| {
                let x = ins[0].as_ref().expect("x");
                let mut sp = spec("matmul_wq", "Q_MATMUL_WQ", x.dtype(), g.fmt.bits);
                if z.is_some() {
                    sp = sp.flag("Q_ZERO");
                }
                let mut args = vec![buf(&outs[0]), buf(x), buf(w), buf(s), buf(z.unwrap_or(w))];
                args.extend([i(g.m), i(g.n), i(g.fmt.k), i(g.fmt.group)]);
                args.extend(view(&outs[0]));
                args.extend(view(x));
                args.extend(view2(w));
                args.extend(view2(s));
                args.extend(z.map_or([i(0), i(0), i(0)], view2));
                ctx.run(&sp, ctx.grid(g.m * g.n, EW_GROUPS), &args)
            })
        }
        Op::MatmulI8 => {
            let (a, b) = (input(call, 0)?, input(call, 1)?);
            let (rs, cs) = (opt(2), opt(3));
            let g = I8Geom::of(
                op,
                &attrs,
                a.desc(),
                b.desc(),
                rs.map(Tensor::desc),
                cs.map(Tensor::desc),
            )?;
            let out = output(call, 0)?;
            let mut sp = dtype_defs(
                KernelSpec::new(Family::Quant, "matmul_i8").flag("Q_MATMUL_I8"),
                "O",
                g.out,
            );
            if g.out != DType::I32 {
                sp = sp.flag("I8_FLOAT");
            }
            if rs.is_some() {
                sp = sp.flag("I8_RS");
            }
            if cs.is_some() {
                sp = sp.flag("I8_CS");
            }
            let vec1 = |t: Option<&Tensor>| match t {
                Some(t) => [KernelArg::scalar(base_offset(t)), i(t.strides()[0])],
                None => [i(0), i(0)],
            };
            let mut args = vec![
                buf(out),
                buf(a),
                buf(b),
                buf(rs.unwrap_or(out)),
                buf(cs.unwrap_or(out)),
            ];
            args.extend([i(g.m), i(g.n), i(g.k)]);
            args.extend(view2(out));
            args.extend(view2(a));
            args.extend(view2(b));
            args.extend(vec1(rs));
            args.extend(vec1(cs));
            ctx.run(&sp, ctx.grid(g.m * g.n, EW_GROUPS), &args)
        }
        _ => Err(crate::catalog::misrouted(op)),
    }
}
