//! The quantized matmuls side by side with the f32 `matmul` of the same shape: `matmul_i8` on
//! square 1024 operands, and `matmul_wq` at batch 1 (x [1, 4096] against a [4096, 4096] weight,
//! groups of 128), the memory-bound case of LLM decoding.

use anyaccel::hal::{AttrValue, DType, Tensor};
use anyaccel_conformance::reference::{self, RefTensor};

use super::measure::{check_failed, guarded, measure, new_entry, record, record_peer, values, Ctx};
use super::options::BenchOp;
use super::report::OpBench;
use super::stats::BenchResult;

/// Side of the square `matmul_i8` operands.
const I8_SIDE: usize = 1024;
/// K and N of the weight-only matmul.
const WQ_SIDE: usize = 4096;
/// Its group size.
const WQ_GROUP: usize = 128;

fn attr(name: &str, v: AttrValue) -> (String, AttrValue) {
    (name.to_string(), v)
}

/// Bytes of deterministic values: `v(i)` for element i.
fn bytes<T: Copy>(n: usize, seed: u64, v: impl Fn(f32) -> T) -> Vec<T> {
    values(n, seed).into_iter().map(v).collect()
}

pub(super) fn bench_quant(ctx: &Ctx, op: BenchOp) -> OpBench {
    let (name, size) = match op {
        BenchOp::MatmulI8 => (
            "matmul_i8",
            format!("{I8_SIDE}x{I8_SIDE}x{I8_SIDE}, i32 out"),
        ),
        BenchOp::MatmulWqInt8 => (
            "matmul_wq",
            format!("x 1x{WQ_SIDE}, int8 w {WQ_SIDE}x{WQ_SIDE}, groups of {WQ_GROUP}"),
        ),
        _ => (
            "matmul_wq",
            format!("x 1x{WQ_SIDE}, int4 w {WQ_SIDE}x{WQ_SIDE}, groups of {WQ_GROUP}"),
        ),
    };
    let mut entry = new_entry(op, size.clone(), ctx.clock);
    entry.dtype = if op == BenchOp::MatmulI8 { "i8" } else { "f32" }.to_string();
    ctx.note(&format!(
        "{name} {size}, side by side with f32 matmul of the same shape"
    ));
    guarded(entry, |entry| {
        let q = &*ctx.queue;
        let (m, k, n) = if op == BenchOp::MatmulI8 {
            (I8_SIDE, I8_SIDE, I8_SIDE)
        } else {
            (1, WQ_SIDE, WQ_SIDE)
        };
        // The f32 peer: a [m, k] @ b [k, n].
        let fa = ctx.tensor(&values(m * k, 41), &[m, k])?;
        let fb = ctx.tensor(&values(k * n, 42), &[k, n])?;
        let fout = ctx.empty(&[m, n])?;
        let mut run_f32 = || {
            anyaccel::ops::call_into(q, "matmul", &[Some(&fa), Some(&fb)], &[&fout], &[])
                .and_then(|_| q.finish())
                .map_err(|e| e.to_string())
        };
        let flops = 2.0 * (m * k * n) as f64;
        let (inputs, attrs, out): (Vec<Tensor>, Vec<(String, AttrValue)>, Tensor) =
            if op == BenchOp::MatmulI8 {
                let a = Tensor::from_slice(q, &bytes(m * k, 43, |v| (v * 127.0) as i8), &[m, k])?;
                let b = Tensor::from_slice(q, &bytes(k * n, 44, |v| (v * 127.0) as i8), &[k, n])?;
                let out = Tensor::empty(&*ctx.device, DType::I32, &[m, n])?;
                (
                    vec![a, b],
                    vec![attr("dtype", AttrValue::Str("i32".into()))],
                    out,
                )
            } else {
                let int4 = op == BenchOp::MatmulWqInt4;
                let x = ctx.tensor(&values(k, 45), &[1, k])?;
                let w = if int4 {
                    Tensor::from_slice(
                        q,
                        &bytes(n * k / 2, 46, |v| ((v + 1.0) * 127.5) as u8),
                        &[n, k / 2],
                    )?
                } else {
                    Tensor::from_slice(q, &bytes(n * k, 46, |v| (v * 127.0) as i8), &[n, k])?
                };
                let s: Vec<f32> = values(n * k / WQ_GROUP, 47)
                    .iter()
                    .map(|v| v / 64.0)
                    .collect();
                let s = ctx.tensor(&s, &[n, k / WQ_GROUP])?;
                (
                    vec![x, w, s],
                    vec![attr("group_size", AttrValue::Int(WQ_GROUP as i64))],
                    ctx.empty(&[1, n])?,
                )
            };
        let ins: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
        let (s, peer) = measure(
            ctx,
            || anyaccel::ops::call_into(q, name, &ins, &[&out], &attrs),
            Some(&mut run_f32),
        )?;
        record(entry, &s, ctx.clock, Some(flops), None);
        if let Some(result) = peer {
            record_peer(entry, "matmul (f32, same shape)", result, Some(flops), None);
        }
        check(q, name, &inputs, &out, &attrs)
    })
}

/// Compares the first rows (or output columns) with the reference on the same inputs.
fn check(
    q: &dyn anyaccel::hal::Queue,
    op: &str,
    inputs: &[Tensor],
    out: &Tensor,
    attrs: &[(String, AttrValue)],
) -> BenchResult<()> {
    const ROWS: usize = 4;
    let host_i = |t: &Tensor, rows: usize| -> BenchResult<RefTensor> {
        let cols = t.shape()[1];
        let v: Vec<i64> = if t.dtype() == DType::I8 {
            t.to_vec::<i8>(q)?[..rows * cols]
                .iter()
                .map(|&x| x as i64)
                .collect()
        } else {
            t.to_vec::<u8>(q)?[..rows * cols]
                .iter()
                .map(|&x| x as i64)
                .collect()
        };
        RefTensor::from_i64(t.dtype(), &[rows, cols], v)
    };
    let host_f = |t: &Tensor, rows: usize| -> BenchResult<RefTensor> {
        let cols = t.shape()[1];
        let v = t.to_vec::<f32>(q)?[..rows * cols]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        RefTensor::from_f64(DType::F32, &[rows, cols], v)
    };
    if op == "matmul_i8" {
        let want = reference::run(
            op,
            &[
                Some(host_i(&inputs[0], ROWS)?),
                Some(host_i(&inputs[1], inputs[1].shape()[0])?),
            ],
            attrs,
        )?;
        let got = out.to_vec::<i32>(q)?;
        let want = want[0].to_i64_vec();
        for (i, &w) in want.iter().enumerate() {
            if i64::from(got[i]) != w {
                return Err(check_failed(
                    op,
                    format!("out[{i}] = {}, expected {w}", got[i]),
                ));
            }
        }
        return Ok(());
    }
    let want = reference::run(
        op,
        &[
            Some(host_f(&inputs[0], 1)?),
            Some(host_i(&inputs[1], ROWS)?),
            Some(host_f(&inputs[2], ROWS)?),
        ],
        attrs,
    )?;
    let got = out.to_vec::<f32>(q)?;
    for (i, &w) in want[0].to_f64_vec().iter().enumerate() {
        let g = f64::from(got[i]);
        if g.is_nan() || (g - w).abs() > 1e-3 + 1e-4 * w.abs() {
            return Err(check_failed(op, format!("out[{i}] = {g}, expected {w}")));
        }
    }
    Ok(())
}
