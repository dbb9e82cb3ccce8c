//! Gradients against their forward op: `gelu_backward`, `silu_backward` and
//! `softmax_backward`, each measured in alternating blocks with the forward op of the same
//! shape on the same queue (the "peer"), so that the report's ratio is backward / forward time.
//! Sampled results are checked against the conformance reference.

use anyaccel::hal::{AttrValue, DType, Tensor};
use anyaccel_conformance::reference::{self, RefTensor};

use super::measure::{check_failed, guarded, measure, new_entry, record, record_peer, values, Ctx};
use super::options::BenchOp;
use super::report::OpBench;
use super::stats::BenchResult;
use super::SOFTMAX_COLS;

/// The gradient's name and its forward op.
fn names(op: BenchOp) -> (&'static str, &'static str) {
    match op {
        BenchOp::GeluBackward => ("gelu_backward", "gelu"),
        BenchOp::SiluBackward => ("silu_backward", "silu"),
        _ => ("softmax_backward", "softmax"),
    }
}

pub(super) fn bench_backward(ctx: &Ctx, op: BenchOp, n: usize) -> OpBench {
    let (backward, forward) = names(op);
    let line = op == BenchOp::SoftmaxBackward;
    let shape = if line {
        let cols = n.min(SOFTMAX_COLS);
        vec![(n / cols).max(1), cols]
    } else {
        vec![n]
    };
    let size = if line {
        format!("{}x{}", shape[0], shape[1])
    } else {
        n.to_string()
    };
    let count: usize = shape.iter().product();
    let entry = new_entry(op, size.clone(), ctx.clock);
    ctx.note(&format!(
        "{backward} f32 {size}, side by side with {forward}"
    ));
    guarded(entry, |entry| {
        let q = &*ctx.queue;
        // Inputs: x in [-4, 4], the incoming gradient in [-1, 1].
        let hx: Vec<f32> = values(count, 11).iter().map(|v| 4.0 * v).collect();
        let hg = values(count, 12);
        let x = ctx.tensor(&hx, &shape)?;
        let g = ctx.tensor(&hg, &shape)?;
        let (fwd_out, out) = (ctx.empty(&shape)?, ctx.empty(&shape)?);
        let attrs: Vec<(String, AttrValue)> = if line {
            vec![("axis".to_string(), AttrValue::Int(-1))]
        } else {
            Vec::new()
        };
        // softmax_backward takes the forward output y; the activations take x.
        let second: Tensor = if line {
            anyaccel::ops::call(q, forward, &[Some(&x)], &attrs)?.remove(0)
        } else {
            x.clone()
        };
        let mut run_forward = || {
            anyaccel::ops::call_into(q, forward, &[Some(&x)], &[&fwd_out], &attrs)
                .and_then(|_| q.finish())
                .map_err(|e| e.to_string())
        };
        let (s, fwd) = measure(
            ctx,
            || anyaccel::ops::call_into(q, backward, &[Some(&g), Some(&second)], &[&out], &attrs),
            Some(&mut run_forward),
        )?;
        record(entry, &s, ctx.clock, None, Some(3.0 * 4.0 * count as f64));
        if let Some(result) = fwd {
            record_peer(
                entry,
                &format!("{forward} (forward, same shape)"),
                result,
                None,
                Some(2.0 * 4.0 * count as f64),
            );
        }
        check(q, backward, &shape, &hg, &second, &out, &attrs)
    })
}

/// Compares sampled rows (or a contiguous run of elements) with the reference.
fn check(
    q: &dyn anyaccel::hal::Queue,
    op: &str,
    shape: &[usize],
    hg: &[f32],
    second: &Tensor,
    out: &Tensor,
    attrs: &[(String, AttrValue)],
) -> BenchResult<()> {
    let got = out.to_vec::<f32>(q)?;
    let h2 = second.to_vec::<f32>(q)?;
    // A whole row for softmax_backward (it sums along it), else the first 4096 elements.
    let len = if shape.len() == 2 {
        shape[1]
    } else {
        shape[0].min(4096)
    };
    let piece = |v: &[f32]| {
        let data = v[..len].iter().map(|&x| f64::from(x)).collect();
        RefTensor::from_f64(DType::F32, &[len], data)
    };
    let want = reference::run(op, &[Some(piece(hg)?), Some(piece(&h2)?)], attrs)?;
    let want = want[0].to_f64_vec();
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let g = f64::from(g);
        if g.is_nan() || (g - w).abs() > 1e-5 + 1e-4 * w.abs() {
            return Err(check_failed(op, format!("out[{i}] = {g}, expected {w}")));
        }
    }
    Ok(())
}

/// One gradient measured against its forward op: the ops, their inputs and attributes, and a
/// label of the shape.
struct Pair {
    backward: &'static str,
    forward: &'static str,
    size: &'static str,
    fwd_in: Vec<Option<Tensor>>,
    fwd_attrs: Vec<(String, AttrValue)>,
    bwd_attrs: Vec<(String, AttrValue)>,
}

fn ints(name: &str, v: &[i64]) -> (String, AttrValue) {
    (name.to_string(), AttrValue::Ints(v.to_vec()))
}

/// The forward op's inputs and attributes for a gradient bench, f32 (and i64 targets).
fn pair(ctx: &Ctx, op: BenchOp) -> BenchResult<Pair> {
    let t = |shape: &[usize], seed: u64| -> BenchResult<Option<Tensor>> {
        let n = shape.iter().product();
        Ok(Some(ctx.tensor(&values(n, seed), shape)?))
    };
    Ok(match op {
        BenchOp::Conv2dBackwardInput | BenchOp::Conv2dBackwardWeight => {
            let input = op == BenchOp::Conv2dBackwardInput;
            let pad = ints("padding", &[1]);
            let size = if input {
                ints("input_size", &[8, 32, 28, 28])
            } else {
                ints("weight_size", &[32, 32, 3, 3])
            };
            Pair {
                backward: if input {
                    "conv2d_backward_input"
                } else {
                    "conv2d_backward_weight"
                },
                forward: "conv2d",
                size: "x 8x32x28x28, w 32x32x3x3, padding 1",
                fwd_in: vec![t(&[8, 32, 28, 28], 21)?, t(&[32, 32, 3, 3], 22)?],
                fwd_attrs: vec![pad.clone()],
                bwd_attrs: vec![pad, size],
            }
        }
        BenchOp::MaxPool2dBackward => {
            let attrs = vec![
                ints("kernel_size", &[3]),
                ints("stride", &[2]),
                ints("padding", &[1]),
            ];
            let mut bwd = attrs.clone();
            bwd.push(ints("input_size", &[8, 64, 56, 56]));
            Pair {
                backward: "max_pool2d_backward",
                forward: "max_pool2d",
                size: "x 8x64x56x56, kernel 3, stride 2, padding 1",
                fwd_in: vec![t(&[8, 64, 56, 56], 23)?],
                fwd_attrs: attrs,
                bwd_attrs: bwd,
            }
        }
        BenchOp::LayerNormBackward => Pair {
            backward: "layer_norm_backward",
            forward: "layer_norm",
            size: "x 4096x1024, weight",
            fwd_in: vec![t(&[4096, 1024], 24)?, t(&[1024], 25)?],
            fwd_attrs: vec![],
            bwd_attrs: vec![],
        },
        BenchOp::BatchNormBackward => {
            let training = vec![("training".to_string(), AttrValue::Int(1))];
            Pair {
                backward: "batch_norm_backward",
                forward: "batch_norm",
                size: "x 16x64x28x28, training, weight",
                fwd_in: vec![t(&[16, 64, 28, 28], 26)?, None, None, t(&[64], 27)?],
                fwd_attrs: training.clone(),
                bwd_attrs: training,
            }
        }
        _ => {
            let targets: Vec<i64> = (0..2048).map(|i| (i * 7919 % 1000) as i64).collect();
            let target = Tensor::from_slice(&*ctx.queue, &targets, &[2048])?;
            Pair {
                backward: "cross_entropy_backward",
                forward: "cross_entropy",
                size: "logits 2048x1000, mean",
                fwd_in: vec![t(&[2048, 1000], 28)?, Some(target)],
                fwd_attrs: vec![],
                bwd_attrs: vec![],
            }
        }
    })
}

/// The gradient's inputs: grad of the forward output's shape, then what the gradient reads
/// (x, the weight, max_pool's indices, batch_norm's statistics, the targets).
fn backward_inputs(ctx: &Ctx, p: &Pair, outs: &[Tensor]) -> BenchResult<Vec<Option<Tensor>>> {
    let shape = outs[0].shape().to_vec();
    let g = Some(ctx.tensor(&values(shape.iter().product(), 29), &shape)?);
    let x = |i: usize| p.fwd_in[i].clone();
    Ok(match p.backward {
        "conv2d_backward_input" => vec![g, x(1)],
        "conv2d_backward_weight" | "layer_norm_backward" => {
            if p.backward == "layer_norm_backward" {
                vec![g, x(0), x(1)]
            } else {
                vec![g, x(0)]
            }
        }
        "max_pool2d_backward" => vec![g, Some(outs[1].clone())],
        "batch_norm_backward" => vec![g, x(0), Some(outs[1].clone()), Some(outs[2].clone()), x(3)],
        _ => vec![g, x(0), x(1)],
    })
}

/// The inputs as the op layer takes them.
fn refs(v: &[Option<Tensor>]) -> Vec<Option<&Tensor>> {
    v.iter().map(Option::as_ref).collect()
}

/// A gradient of the v2 op set side by side with its forward op (same inputs, same queue),
/// checked against the conformance reference.
pub(super) fn bench_grad(ctx: &Ctx, op: BenchOp) -> OpBench {
    let entry = new_entry(op, String::new(), ctx.clock);
    guarded(entry, |entry| {
        let q = &*ctx.queue;
        let p = pair(ctx, op)?;
        entry.size = p.size.to_string();
        ctx.note(&format!(
            "{} f32 {}, side by side with {}",
            p.backward, p.size, p.forward
        ));
        let fwd_outs = anyaccel::ops::call(q, p.forward, &refs(&p.fwd_in), &p.fwd_attrs)?;
        let bwd_in = backward_inputs(ctx, &p, &fwd_outs)?;
        let bwd_outs = anyaccel::ops::call(q, p.backward, &refs(&bwd_in), &p.bwd_attrs)?;
        let (fi, bi) = (refs(&p.fwd_in), refs(&bwd_in));
        let fo: Vec<&Tensor> = fwd_outs.iter().collect();
        let bo: Vec<&Tensor> = bwd_outs.iter().collect();
        let mut run_forward = || {
            anyaccel::ops::call_into(q, p.forward, &fi, &fo, &p.fwd_attrs)
                .and_then(|_| q.finish())
                .map_err(|e| e.to_string())
        };
        let (s, fwd) = measure(
            ctx,
            || anyaccel::ops::call_into(q, p.backward, &bi, &bo, &p.bwd_attrs),
            Some(&mut run_forward),
        )?;
        record(entry, &s, ctx.clock, None, None);
        if let Some(result) = fwd {
            record_peer(
                entry,
                &format!("{} (forward, same inputs)", p.forward),
                result,
                None,
                None,
            );
        }
        check_grad(q, p.backward, &bwd_in, &bwd_outs[0], &p.bwd_attrs)
    })
}

/// Compares the gradient's first output with the f64 reference on the same inputs.
fn check_grad(
    q: &dyn anyaccel::hal::Queue,
    op: &str,
    inputs: &[Option<Tensor>],
    out: &Tensor,
    attrs: &[(String, AttrValue)],
) -> BenchResult<()> {
    let mut host = Vec::new();
    for t in inputs {
        host.push(match t {
            None => None,
            Some(t) if t.dtype() == DType::I64 => Some(RefTensor::from_i64(
                DType::I64,
                t.shape(),
                t.to_vec::<i64>(q)?,
            )?),
            Some(t) => {
                let v = t.to_vec::<f32>(q)?.iter().map(|&x| f64::from(x)).collect();
                Some(RefTensor::from_f64(DType::F32, t.shape(), v)?)
            }
        });
    }
    let want = reference::run(op, &host, attrs)?;
    let want = want[0].to_f64_vec();
    for (i, (&g, &w)) in out.to_vec::<f32>(q)?.iter().zip(&want).enumerate() {
        let g = f64::from(g);
        if g.is_nan() || (g - w).abs() > 1e-4 + 1e-4 * w.abs() {
            return Err(check_failed(op, format!("out[{i}] = {g}, expected {w}")));
        }
    }
    Ok(())
}
