//! Row ops and transcendental ops in f16 and bf16, each measured in alternating blocks with the
//! same op in f32 on the same values (the "peer"), so that the report's ratio is the f32 time
//! over the 16-bit time for the same element count. Sampled rows are checked against the f64
//! reference of the 16-bit inputs.

use anyaccel::hal::{DType, Tensor};
use half::{bf16, f16};

use super::measure::{check_failed, guarded, measure, new_entry, record, record_peer, values, Ctx};
use super::options::BenchOp;
use super::report::OpBench;
use super::rowops::{call_of, reference};
use super::stats::BenchResult;
use super::SOFTMAX_COLS;

/// The entries: the op's name with its dtype, the f32 op it runs beside, and the dtype.
pub(super) const HALF: [(&str, BenchOp, DType); 18] = [
    ("softmax_f16", BenchOp::Softmax, DType::F16),
    ("softmax_bf16", BenchOp::Softmax, DType::BF16),
    ("log_softmax_f16", BenchOp::LogSoftmax, DType::F16),
    ("log_softmax_bf16", BenchOp::LogSoftmax, DType::BF16),
    ("layer_norm_f16", BenchOp::LayerNorm, DType::F16),
    ("layer_norm_bf16", BenchOp::LayerNorm, DType::BF16),
    ("rms_norm_f16", BenchOp::RmsNorm, DType::F16),
    ("rms_norm_bf16", BenchOp::RmsNorm, DType::BF16),
    ("exp_f16", BenchOp::Exp, DType::F16),
    ("exp_bf16", BenchOp::Exp, DType::BF16),
    ("tanh_f16", BenchOp::Tanh, DType::F16),
    ("tanh_bf16", BenchOp::Tanh, DType::BF16),
    ("sigmoid_f16", BenchOp::Sigmoid, DType::F16),
    ("sigmoid_bf16", BenchOp::Sigmoid, DType::BF16),
    ("silu_f16", BenchOp::Silu, DType::F16),
    ("silu_bf16", BenchOp::Silu, DType::BF16),
    ("gelu_f16", BenchOp::Gelu, DType::F16),
    ("gelu_bf16", BenchOp::Gelu, DType::BF16),
];

/// `v` rounded to `dtype` (f16 or bf16) and back: the values both runs see.
fn rounded(dtype: DType, v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|&x| match dtype {
            DType::F16 => f16::from_f32(x).to_f32(),
            _ => bf16::from_f32(x).to_f32(),
        })
        .collect()
}

/// A tensor of `dtype` (f32, f16 or bf16) holding `v` (exactly representable in it).
fn upload(ctx: &Ctx, dtype: DType, v: &[f32], shape: &[usize]) -> BenchResult<Tensor> {
    let q = &*ctx.queue;
    match dtype {
        DType::F16 => {
            let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            Tensor::from_slice(q, &h, shape)
        }
        DType::BF16 => {
            let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
            Tensor::from_slice(q, &h, shape)
        }
        _ => ctx.tensor(v, shape),
    }
}

/// A 16-bit tensor's values as f32.
fn download(ctx: &Ctx, t: &Tensor) -> BenchResult<Vec<f32>> {
    let q = &*ctx.queue;
    Ok(match t.dtype() {
        DType::F16 => t.to_vec::<f16>(q)?.iter().map(|v| v.to_f32()).collect(),
        _ => t.to_vec::<bf16>(q)?.iter().map(|v| v.to_f32()).collect(),
    })
}

pub(super) fn bench_half(ctx: &Ctx, op: BenchOp, n: usize) -> OpBench {
    let name = op.name();
    let (_, base, dtype) = HALF
        .into_iter()
        .find(|(entry, ..)| *entry == name)
        .unwrap_or(("", BenchOp::Softmax, DType::F16));
    let cols = n.clamp(1, SOFTMAX_COLS);
    let rows = (n / cols).max(1);
    let size = format!("{rows}x{cols}");
    let mut entry = new_entry(op, size.clone(), ctx.clock);
    entry.dtype = dtype.name().to_string();
    ctx.note(&format!(
        "{} {} {size}, side by side with f32",
        base.name(),
        dtype.name()
    ));
    guarded(entry, |entry| {
        let q = &*ctx.queue;
        let count = rows * cols;
        // The inputs of the f32 row ops' bench, rounded to the 16-bit type.
        let hx = rounded(
            dtype,
            &values(count, 5).iter().map(|v| 4.0 * v).collect::<Vec<_>>(),
        );
        let hw = rounded(
            dtype,
            &values(cols, 7)
                .iter()
                .map(|v| 1.0 + 0.5 * v)
                .collect::<Vec<_>>(),
        );
        let hb = rounded(dtype, &values(cols, 8));
        let shape = [rows, cols];
        let tensors = |d: DType| -> BenchResult<[Tensor; 4]> {
            Ok([
                upload(ctx, d, &hx, &shape)?,
                upload(ctx, d, &hw, &[cols])?,
                upload(ctx, d, &hb, &[cols])?,
                Tensor::empty(&*ctx.device, d, &shape)?,
            ])
        };
        let ([x, w, b, y], [x32, w32, b32, y32]) = (tensors(dtype)?, tensors(DType::F32)?);
        let ins = |x, w, b| -> Vec<Option<&Tensor>> {
            match base {
                BenchOp::LayerNorm => vec![Some(x), Some(w), Some(b)],
                BenchOp::RmsNorm => vec![Some(x), Some(w)],
                _ => vec![Some(x)],
            }
        };
        let (ours, f32_ins) = (ins(&x, &w, &b), ins(&x32, &w32, &b32));
        let (call, attrs) = call_of(base);
        let mut run_f32 = || {
            anyaccel::ops::call_into(q, call, &f32_ins, &[&y32], &attrs)
                .and_then(|_| q.finish())
                .map_err(|e| e.to_string())
        };
        let (s, f32_run) = measure(
            ctx,
            || anyaccel::ops::call_into(q, call, &ours, &[&y], &attrs),
            Some(&mut run_f32),
        )?;
        record(entry, &s, ctx.clock, None, Some(2.0 * 2.0 * count as f64));
        if let Some(result) = f32_run {
            record_peer(
                entry,
                &format!("{} f32 (same values)", base.name()),
                result,
                None,
                Some(2.0 * 4.0 * count as f64),
            );
        }
        check(
            name,
            dtype,
            base,
            (&hx, &hw, &hb),
            cols,
            &download(ctx, &y)?,
        )
    })
}

/// Eight sampled rows against the f64 reference of the 16-bit inputs: within two units in the
/// last place of the 16-bit type (the f32 result rounded once more) and 1e-4 absolute.
fn check(
    name: &str,
    dtype: DType,
    base: BenchOp,
    (x, w, b): (&[f32], &[f32], &[f32]),
    cols: usize,
    got: &[f32],
) -> BenchResult<()> {
    let ulp = if dtype == DType::F16 {
        f64::powi(2.0, -10)
    } else {
        f64::powi(2.0, -7)
    };
    let rows = got.len() / cols.max(1);
    for r in super::measure::sample_indices(rows, 8) {
        let want = reference(base, &x[r * cols..(r + 1) * cols], w, b);
        for (j, &want) in want.iter().enumerate() {
            let g = f64::from(got[r * cols + j]);
            if g.is_nan() || (g - want).abs() > 2.0 * ulp * want.abs() + 1e-4 {
                return Err(check_failed(
                    name,
                    format!("row {r}, element {j}: {g}, expected {want}"),
                ));
            }
        }
    }
    Ok(())
}
