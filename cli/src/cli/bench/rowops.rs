//! f32 row ops, transcendental unary ops and a transpose over `rows x cols` (default 4096 x
//! 4096), with `--peers` on the CPU side by side with onnxruntime's CPU kernel of the same op
//! (`scripts/ort-op-peer.py`) on the same input, on as many threads as the host has cores, with
//! the input and output bound once so that no run of either side allocates.

use anyaccel::hal::{AttrValue, Tensor};

use super::measure::{check_failed, guarded, new_entry, record, sample_indices, values, Ctx};
use super::options::BenchOp;
use super::ort::{measure_beside, record_beside, OrtPeer};
use super::report::OpBench;
use super::SOFTMAX_COLS;

/// The peer's script, written next to its inputs when it runs.
const PEER_SCRIPT: &str = include_str!("../../../../scripts/ort-op-peer.py");

/// The row of the f64 reference: `op` of one input row (for the norms with `w` and `b`).
pub(super) fn reference(op: BenchOp, row: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
    let x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
    let n = x.len() as f64;
    match op {
        BenchOp::Softmax => {
            let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = x.iter().map(|v| (v - m).exp()).sum();
            x.iter().map(|v| (v - m).exp() / s).collect()
        }
        BenchOp::LogSoftmax => {
            let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = x.iter().map(|v| (v - m).exp()).sum();
            x.iter().map(|v| v - m - s.ln()).collect()
        }
        BenchOp::LayerNorm | BenchOp::RmsNorm => {
            let rms = op == BenchOp::RmsNorm;
            let mean = if rms { 0.0 } else { x.iter().sum::<f64>() / n };
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let r = 1.0 / (var + 1e-5).sqrt();
            x.iter()
                .enumerate()
                .map(|(j, v)| (v - mean) * r * w[j] as f64 + if rms { 0.0 } else { b[j] as f64 })
                .collect()
        }
        BenchOp::Exp => x.iter().map(|v| v.exp()).collect(),
        BenchOp::Tanh => x.iter().map(|v| v.tanh()).collect(),
        BenchOp::Sigmoid => x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
        BenchOp::Silu => x.iter().map(|v| v / (1.0 + (-v).exp())).collect(),
        BenchOp::Gelu => x
            .iter()
            .map(|v| 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)))
            .collect(),
        BenchOp::GeluTanh => x
            .iter()
            .map(|v| {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
            })
            .collect(),
        // Transpose: the caller reads a column.
        _ => x,
    }
}

/// The op's name in the catalog, its attributes, and the name the peer script knows.
pub(super) fn call_of(op: BenchOp) -> (&'static str, Vec<(String, AttrValue)>) {
    let eps = || ("eps".to_string(), AttrValue::Float(1e-5));
    match op {
        BenchOp::Softmax => ("softmax", vec![("axis".to_string(), AttrValue::Int(-1))]),
        BenchOp::LogSoftmax => (
            "log_softmax",
            vec![("axis".to_string(), AttrValue::Int(-1))],
        ),
        BenchOp::LayerNorm => ("layer_norm", vec![eps()]),
        BenchOp::RmsNorm => ("rms_norm", vec![eps()]),
        BenchOp::Exp => ("exp", Vec::new()),
        BenchOp::Tanh => ("tanh", Vec::new()),
        BenchOp::Sigmoid => ("sigmoid", Vec::new()),
        BenchOp::Silu => ("silu", Vec::new()),
        BenchOp::Gelu => ("gelu", Vec::new()),
        BenchOp::GeluTanh => (
            "gelu",
            vec![(
                "approximate".to_string(),
                AttrValue::Str("tanh".to_string()),
            )],
        ),
        BenchOp::Attention => ("attention", Vec::new()),
        BenchOp::AttentionCausal => ("attention", vec![("causal".to_string(), AttrValue::Int(1))]),
        _ => ("copy", Vec::new()),
    }
}

/// The attention benchmark's shape: batch 1, [`HEADS`] heads, [`SEQ`] queries and keys, head
/// dimension [`HEAD_DIM`].
const HEADS: usize = 8;
const SEQ: usize = 512;
const HEAD_DIM: usize = 64;

/// Row `i` of head `h` of `attention(q, k, v)` in f64 (each [HEADS, SEQ, HEAD_DIM]).
fn attention_row(q: &[f32], k: &[f32], v: &[f32], h: usize, i: usize, causal: bool) -> Vec<f64> {
    let at = |t: &[f32], j: usize, c: usize| t[(h * SEQ + j) * HEAD_DIM + c] as f64;
    let keys = if causal { i + 1 } else { SEQ };
    let scale = 1.0 / (HEAD_DIM as f64).sqrt();
    let logits: Vec<f64> = (0..keys)
        .map(|j| {
            scale
                * (0..HEAD_DIM)
                    .map(|c| at(q, i, c) * at(k, j, c))
                    .sum::<f64>()
        })
        .collect();
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let p: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
    let total: f64 = p.iter().sum();
    (0..HEAD_DIM)
        .map(|c| (0..keys).map(|j| p[j] * at(v, j, c)).sum::<f64>() / total)
        .collect()
}

pub(super) fn bench_row_op(ctx: &Ctx, op: BenchOp, n: usize) -> OpBench {
    let attention = matches!(op, BenchOp::Attention | BenchOp::AttentionCausal);
    let (heads, rows, cols) = if attention {
        (HEADS, SEQ, HEAD_DIM)
    } else {
        let cols = n.clamp(1, SOFTMAX_COLS);
        (1, (n / cols).max(1), cols)
    };
    let size = if attention {
        format!("1x{heads}x{rows}x{cols}")
    } else {
        format!("{rows}x{cols}")
    };
    let entry = new_entry(op, size.clone(), ctx.clock);
    ctx.note(&format!("{} f32 {size}", op.name()));
    guarded(entry, |entry| {
        let q = &*ctx.queue;
        // Inputs in (-4, 4): both of tanh's forms, gelu's tails.
        let hx: Vec<f32> = values(heads * rows * cols, 5)
            .iter()
            .map(|v| 4.0 * v)
            .collect();
        let (hk, hv) = if attention {
            (values(hx.len(), 9), values(hx.len(), 10))
        } else {
            (Vec::new(), Vec::new())
        };
        let hw: Vec<f32> = values(cols, 7).iter().map(|v| 1.0 + 0.5 * v).collect();
        let hb = values(cols, 8);
        let x = ctx.tensor(&hx, &[heads * rows, cols])?;
        let (w, b) = (ctx.tensor(&hw, &[cols])?, ctx.tensor(&hb, &[cols])?);
        let (xt, x4, k4, v4);
        let (name, attrs) = call_of(op);
        let (ins, out_shape): (Vec<Option<&Tensor>>, Vec<usize>) = match op {
            BenchOp::LayerNorm => (vec![Some(&x), Some(&w), Some(&b)], vec![rows, cols]),
            BenchOp::RmsNorm => (vec![Some(&x), Some(&w)], vec![rows, cols]),
            BenchOp::Transpose => {
                xt = x.permute(&[1, 0])?;
                (vec![Some(&xt)], vec![cols, rows])
            }
            BenchOp::Attention | BenchOp::AttentionCausal => {
                let shape = [1, heads, rows, cols];
                x4 = ctx.tensor(&hx, &shape)?;
                k4 = ctx.tensor(&hk, &shape)?;
                v4 = ctx.tensor(&hv, &shape)?;
                (vec![Some(&x4), Some(&k4), Some(&v4)], shape.to_vec())
            }
            _ => (vec![Some(&x)], vec![rows, cols]),
        };
        let y = ctx.empty(&out_shape)?;
        let outs = [&y];
        let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
        let files = [
            ("x.f32", bytes(&hx)),
            ("w.f32", bytes(&hw)),
            ("b.f32", bytes(&hb)),
            ("k.f32", bytes(&hk)),
            ("v.f32", bytes(&hv)),
        ];
        let mut peer = ort_peer(ctx, op, rows, cols, &files);
        let ours = || anyaccel::ops::call_into(q, name, &ins, &outs, &attrs);
        let (s, peer_result) = measure_beside(ctx, ours, &mut peer)?;
        // Two products of 2 * SEQ * SEQ * HEAD_DIM operations a head (the causal one counted
        // in full, as onnxruntime's), else the bytes read and written.
        let (flops, bytes) = if attention {
            (Some(4.0 * (heads * rows * rows * cols) as f64), None)
        } else {
            (None, Some(2.0 * 4.0 * (rows * cols) as f64))
        };
        record(entry, &s, ctx.clock, flops, bytes);
        let got = y.to_vec::<f32>(q)?;
        record_beside(
            entry,
            op.name(),
            peer.as_mut(),
            peer_result,
            &got,
            flops,
            bytes,
        );
        if attention {
            return check_attention(op, [&hx, &hk, &hv], &got);
        }
        check(op, &hx, &hw, &hb, rows, cols, &got)
    })
}

/// onnxruntime running `op` on the script's files (`x.f32` and the others it reads) of
/// `rows x cols`, when the command runs with its host peers; on as many threads as the host
/// has cores.
pub(super) fn ort_peer(
    ctx: &Ctx,
    op: BenchOp,
    rows: usize,
    cols: usize,
    files: &[(&str, Vec<u8>)],
) -> Option<Result<OrtPeer, String>> {
    ctx.peers.as_ref()?;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let args = [
        op.name().to_string(),
        rows.to_string(),
        cols.to_string(),
        threads.to_string(),
    ];
    Some(OrtPeer::start(PEER_SCRIPT, files, &args))
}

/// Sampled rows of the first and last heads against the f64 reference, within the accumulating
/// tolerance.
fn check_attention(
    op: BenchOp,
    [q, k, v]: [&[f32]; 3],
    got: &[f32],
) -> Result<(), anyaccel::Error> {
    let causal = op == BenchOp::AttentionCausal;
    for h in [0, HEADS - 1] {
        for i in sample_indices(SEQ, 6) {
            let want = attention_row(q, k, v, h, i, causal);
            for (c, &want) in want.iter().enumerate() {
                let g = got[(h * SEQ + i) * HEAD_DIM + c] as f64;
                if g.is_nan() || (g - want).abs() > 1e-4 * (1.0 + want.abs()) {
                    return Err(check_failed(
                        op.name(),
                        format!("head {h}, row {i}, element {c}: {g}, expected {want}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Eight sampled rows of ours against the f64 reference, within the op contract's accumulating
/// f32 tolerance (1e-4 absolute plus 1e-4 relative).
fn check(
    op: BenchOp,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    rows: usize,
    cols: usize,
    got: &[f32],
) -> Result<(), anyaccel::Error> {
    for r in sample_indices(rows, 8) {
        let row = &x[r * cols..(r + 1) * cols];
        let want = reference(op, row, w, b);
        for (j, &want) in want.iter().enumerate() {
            // A transpose's row r of x is column r of its output.
            let g = if op == BenchOp::Transpose {
                got[j * rows + r]
            } else {
                got[r * cols + j]
            } as f64;
            if g.is_nan() || (g - want).abs() > 1e-4 * (1.0 + want.abs()) {
                return Err(check_failed(
                    op.name(),
                    format!("row {r}, element {j}: {g}, expected {want}"),
                ));
            }
        }
    }
    Ok(())
}
