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
