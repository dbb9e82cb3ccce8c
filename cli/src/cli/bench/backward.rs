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

/// The gradients measured against their forward op at a fixed shape (`bench_grad`), by the
/// name the command line and the report give them (the op's own name unless one op is measured
/// in two forms).
pub(crate) const GRADS: [&str; 26] = [
    "conv1d_backward_input",
    "conv1d_backward_weight",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "max_pool1d_backward",
    "max_pool2d_backward",
    "avg_pool1d_backward",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool3d_backward",
    "interpolate_backward",
    "interpolate_backward_nearest",
    "layer_norm_backward",
    "rms_norm_backward",
    "group_norm_backward",
    "batch_norm_backward",
    "cross_entropy_backward",
    "log_softmax_backward",
    "embedding_backward",
    "attention_backward",
    "relu_backward",
    "leaky_relu_backward",
    "elu_backward",
    "sigmoid_backward",
    "tanh_backward",
    "softplus_backward",
];

/// Where one of the gradient's inputs comes from.
#[derive(Clone, Copy)]
enum Src {
    /// The incoming gradient, of the forward op's first output's shape (values in [-1, 1]).
    Grad,
    /// The forward op's input of this index.
    In(usize),
    /// The forward op's output of this index (softmax's y, max_pool's indices, batch_norm's
    /// statistics).
    Out(usize),
}

/// One gradient measured against its forward op: the ops, their inputs and attributes, and a
/// label of the shape.
struct Pair {
    backward: &'static str,
    forward: &'static str,
    size: &'static str,
    fwd_in: Vec<Option<Tensor>>,
    bwd_in: &'static [Src],
    fwd_attrs: Vec<(String, AttrValue)>,
    bwd_attrs: Vec<(String, AttrValue)>,
}

fn ints(name: &str, v: &[i64]) -> (String, AttrValue) {
    (name.to_string(), AttrValue::Ints(v.to_vec()))
}

fn int(name: &str, v: i64) -> (String, AttrValue) {
    (name.to_string(), AttrValue::Int(v))
}

fn text(name: &str, v: &str) -> (String, AttrValue) {
    (name.to_string(), AttrValue::Str(v.to_string()))
}

/// `attrs` followed by `input_size` (what the pooling, resizing and convolution gradients take
/// besides the forward op's attributes).
fn sized(attrs: &[(String, AttrValue)], input: &[i64]) -> Vec<(String, AttrValue)> {
    let mut v = attrs.to_vec();
    v.push(ints("input_size", input));
    v
}

/// The forward op's inputs and attributes for a gradient bench, f32 (and i64 targets and
/// indices).
fn pair(ctx: &Ctx, name: &str) -> BenchResult<Pair> {
    use Src::{Grad, In, Out};
    let t = |shape: &[usize], seed: u64| -> BenchResult<Option<Tensor>> {
        let n = shape.iter().product();
        Ok(Some(ctx.tensor(&values(n, seed), shape)?))
    };
    // `count` indices below `bound`, spread over it, as i64.
    let indices = |count: usize, bound: usize, shape: &[usize]| -> BenchResult<Option<Tensor>> {
        let v: Vec<i64> = (0..count).map(|i| (i * 7919 % bound) as i64).collect();
        Ok(Some(Tensor::from_slice(&*ctx.queue, &v, shape)?))
    };
    // The elementwise gradients: x in [-4, 4] (both sides of every branch), 4096 x 4096.
    let activation = |backward, forward, attrs: Vec<(String, AttrValue)>| -> BenchResult<Pair> {
        let hx: Vec<f32> = values(4096 * 4096, 11).iter().map(|v| 4.0 * v).collect();
        Ok(Pair {
            backward,
            forward,
            size: "4096x4096",
            fwd_in: vec![Some(ctx.tensor(&hx, &[4096, 4096])?)],
            bwd_in: &[Grad, In(0)],
            fwd_attrs: attrs.clone(),
            bwd_attrs: attrs,
        })
    };
    let pool = vec![
        ints("kernel_size", &[3]),
        ints("stride", &[2]),
        ints("padding", &[1]),
    ];
    Ok(match name {
        "conv1d_backward_input" | "conv1d_backward_weight" => {
            let pad = vec![ints("padding", &[1])];
            let input = name == "conv1d_backward_input";
            Pair {
                backward: if input {
                    "conv1d_backward_input"
                } else {
                    "conv1d_backward_weight"
                },
                forward: "conv1d",
                size: "x 8x64x1024, w 64x64x3, padding 1",
                fwd_in: vec![t(&[8, 64, 1024], 31)?, t(&[64, 64, 3], 32)?],
                bwd_in: if input {
                    &[Grad, In(1)]
                } else {
                    &[Grad, In(0)]
                },
                bwd_attrs: if input {
                    sized(&pad, &[8, 64, 1024])
                } else {
                    vec![pad[0].clone(), ints("weight_size", &[64, 64, 3])]
                },
                fwd_attrs: pad,
            }
        }
        "conv2d_backward_input" | "conv2d_backward_weight" => {
            let pad = vec![ints("padding", &[1])];
            let input = name == "conv2d_backward_input";
            Pair {
                backward: if input {
                    "conv2d_backward_input"
                } else {
                    "conv2d_backward_weight"
                },
                forward: "conv2d",
                size: "x 8x32x28x28, w 32x32x3x3, padding 1",
                fwd_in: vec![t(&[8, 32, 28, 28], 21)?, t(&[32, 32, 3, 3], 22)?],
                bwd_in: if input {
                    &[Grad, In(1)]
                } else {
                    &[Grad, In(0)]
                },
                bwd_attrs: if input {
                    sized(&pad, &[8, 32, 28, 28])
                } else {
                    vec![pad[0].clone(), ints("weight_size", &[32, 32, 3, 3])]
                },
                fwd_attrs: pad,
            }
        }
        "max_pool1d_backward" => Pair {
            backward: "max_pool1d_backward",
            forward: "max_pool1d",
            size: "x 8x64x3136, kernel 3, stride 2, padding 1",
            fwd_in: vec![t(&[8, 64, 3136], 33)?],
            bwd_in: &[Grad, Out(1)],
            bwd_attrs: sized(&pool, &[8, 64, 3136]),
            fwd_attrs: pool,
        },
        "max_pool2d_backward" => Pair {
            backward: "max_pool2d_backward",
            forward: "max_pool2d",
            size: "x 8x64x56x56, kernel 3, stride 2, padding 1",
            fwd_in: vec![t(&[8, 64, 56, 56], 23)?],
            bwd_in: &[Grad, Out(1)],
            bwd_attrs: sized(&pool, &[8, 64, 56, 56]),
            fwd_attrs: pool,
        },
        "avg_pool1d_backward" => Pair {
            backward: "avg_pool1d_backward",
            forward: "avg_pool1d",
            size: "x 8x64x3136, kernel 3, stride 2, padding 1",
            fwd_in: vec![t(&[8, 64, 3136], 34)?],
            bwd_in: &[Grad],
            bwd_attrs: sized(&pool, &[8, 64, 3136]),
            fwd_attrs: pool,
        },
        "avg_pool2d_backward" => Pair {
            backward: "avg_pool2d_backward",
            forward: "avg_pool2d",
            size: "x 8x64x56x56, kernel 3, stride 2, padding 1",
            fwd_in: vec![t(&[8, 64, 56, 56], 35)?],
            bwd_in: &[Grad],
            bwd_attrs: sized(&pool, &[8, 64, 56, 56]),
            fwd_attrs: pool,
        },
        "adaptive_avg_pool2d_backward" => Pair {
            backward: "adaptive_avg_pool2d_backward",
            forward: "adaptive_avg_pool2d",
            size: "x 8x256x28x28 to 7x7",
            fwd_in: vec![t(&[8, 256, 28, 28], 36)?],
            bwd_in: &[Grad],
            fwd_attrs: vec![ints("output_size", &[7, 7])],
            bwd_attrs: vec![ints("input_size", &[8, 256, 28, 28])],
        },
        "adaptive_avg_pool3d_backward" => Pair {
            backward: "adaptive_avg_pool3d_backward",
            forward: "adaptive_avg_pool3d",
            size: "x 2x64x16x28x28 to 4x7x7",
            fwd_in: vec![t(&[2, 64, 16, 28, 28], 37)?],
            bwd_in: &[Grad],
            fwd_attrs: vec![ints("output_size", &[4, 7, 7])],
            bwd_attrs: vec![ints("input_size", &[2, 64, 16, 28, 28])],
        },
        "interpolate_backward" | "interpolate_backward_nearest" => {
            let nearest = name == "interpolate_backward_nearest";
            let mode = text("mode", if nearest { "nearest" } else { "bilinear" });
            Pair {
                backward: "interpolate_backward",
                forward: "interpolate",
                size: if nearest {
                    "x 8x64x56x56 to 112x112, nearest"
                } else {
                    "x 8x64x56x56 to 112x112, bilinear"
                },
                fwd_in: vec![t(&[8, 64, 56, 56], 38)?],
                bwd_in: &[Grad],
                fwd_attrs: vec![ints("size", &[112, 112]), mode.clone()],
                bwd_attrs: vec![ints("input_size", &[8, 64, 56, 56]), mode],
            }
        }
        "layer_norm_backward" => Pair {
            backward: "layer_norm_backward",
            forward: "layer_norm",
            size: "x 4096x4096, weight",
            fwd_in: vec![t(&[4096, 4096], 24)?, t(&[4096], 25)?],
            bwd_in: &[Grad, In(0), In(1)],
            fwd_attrs: vec![],
            bwd_attrs: vec![],
        },
        "rms_norm_backward" => Pair {
            backward: "rms_norm_backward",
            forward: "rms_norm",
            size: "x 4096x4096, weight",
            fwd_in: vec![t(&[4096, 4096], 39)?, t(&[4096], 40)?],
            bwd_in: &[Grad, In(0), In(1)],
            fwd_attrs: vec![],
            bwd_attrs: vec![],
        },
        "group_norm_backward" => {
            let groups = vec![int("num_groups", 32)];
            Pair {
                backward: "group_norm_backward",
                forward: "group_norm",
                size: "x 8x256x28x28, 32 groups, weight",
                fwd_in: vec![t(&[8, 256, 28, 28], 41)?, t(&[256], 42)?],
                bwd_in: &[Grad, In(0), In(1)],
                fwd_attrs: groups.clone(),
                bwd_attrs: groups,
            }
        }
        "batch_norm_backward" => {
            let training = vec![int("training", 1)];
            Pair {
                backward: "batch_norm_backward",
                forward: "batch_norm",
                size: "x 16x64x28x28, training, weight",
                fwd_in: vec![t(&[16, 64, 28, 28], 26)?, None, None, t(&[64], 27)?],
                bwd_in: &[Grad, In(0), Out(1), Out(2), In(3)],
                fwd_attrs: training.clone(),
                bwd_attrs: training,
            }
        }
        "cross_entropy_backward" => Pair {
            backward: "cross_entropy_backward",
            forward: "cross_entropy",
            size: "logits 2048x1000, mean",
            fwd_in: vec![t(&[2048, 1000], 28)?, indices(2048, 1000, &[2048])?],
            bwd_in: &[Grad, In(0), In(1)],
            fwd_attrs: vec![],
            bwd_attrs: vec![],
        },
        "log_softmax_backward" => Pair {
            backward: "log_softmax_backward",
            forward: "log_softmax",
            size: "4096x4096",
            fwd_in: vec![t(&[4096, 4096], 43)?],
            bwd_in: &[Grad, Out(0)],
            fwd_attrs: vec![],
            bwd_attrs: vec![],
        },
        "embedding_backward" => Pair {
            backward: "embedding_backward",
            forward: "embedding",
            size: "weight 8192x512, indices 8x1024",
            fwd_in: vec![t(&[8192, 512], 44)?, indices(8192, 8192, &[8, 1024])?],
            bwd_in: &[Grad, In(1)],
            fwd_attrs: vec![],
            bwd_attrs: vec![int("num_weights", 8192)],
        },
        "attention_backward" => Pair {
            backward: "attention_backward",
            forward: "attention",
            size: "q, k, v 1x8x512x64",
            fwd_in: vec![
                t(&[1, 8, 512, 64], 45)?,
                t(&[1, 8, 512, 64], 46)?,
                t(&[1, 8, 512, 64], 47)?,
            ],
            bwd_in: &[Grad, In(0), In(1), In(2)],
            fwd_attrs: vec![],
            bwd_attrs: vec![],
        },
        "relu_backward" => activation("relu_backward", "relu", vec![])?,
        "leaky_relu_backward" => activation("leaky_relu_backward", "leaky_relu", vec![])?,
        "elu_backward" => activation("elu_backward", "elu", vec![])?,
        "sigmoid_backward" => activation("sigmoid_backward", "sigmoid", vec![])?,
        "tanh_backward" => activation("tanh_backward", "tanh", vec![])?,
        "softplus_backward" => activation("softplus_backward", "softplus", vec![])?,
        other => {
            return Err(anyaccel::Error::internal(format!(
                "no gradient bench named `{other}`"
            )))
        }
    })
}

/// The gradient's inputs, in its signature's order.
fn backward_inputs(ctx: &Ctx, p: &Pair, outs: &[Tensor]) -> BenchResult<Vec<Option<Tensor>>> {
    let shape = outs[0].shape().to_vec();
    let mut v = Vec::new();
    for src in p.bwd_in {
        v.push(match *src {
            Src::Grad => Some(ctx.tensor(&values(shape.iter().product(), 29), &shape)?),
            Src::In(i) => p.fwd_in[i].clone(),
            Src::Out(i) => Some(outs[i].clone()),
        });
    }
    Ok(v)
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
        let p = pair(ctx, op.name())?;
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
