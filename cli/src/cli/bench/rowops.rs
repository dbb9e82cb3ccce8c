//! f32 row ops, transcendental unary ops and a transpose over `rows x cols` (default 4096 x
//! 4096), with `--peers` on the CPU side by side with onnxruntime's CPU kernel of the same op
//! (`scripts/ort-op-peer.py`) on the same input, on as many threads as the host has cores, with
//! the input and output bound once so that no run of either side allocates.

use anyaccel::hal::{AttrValue, Tensor};

use super::measure::sample_indices;
use super::measure::{check_failed, guarded, measure, new_entry, record, record_peer, values, Ctx};
use super::options::BenchOp;
use super::ort::OrtPeer;
use super::report::OpBench;
use super::SOFTMAX_COLS;

/// The peer's script, written next to its inputs when it runs.
const PEER_SCRIPT: &str = include_str!("../../../../scripts/ort-op-peer.py");

/// The row of the f64 reference: `op` of one input row (for the norms with `w` and `b`).
fn reference(op: BenchOp, row: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
    let x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
    let n = x.len() as f64;
    match op {
        BenchOp::Softmax => {
            let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = x.iter().map(|v| (v - m).exp()).sum();
            x.iter().map(|v| (v - m).exp() / s).collect()
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
fn call_of(op: BenchOp) -> (&'static str, Vec<(String, AttrValue)>) {
    let eps = || ("eps".to_string(), AttrValue::Float(1e-5));
    match op {
        BenchOp::Softmax => ("softmax", vec![("axis".to_string(), AttrValue::Int(-1))]),
        BenchOp::LayerNorm => ("layer_norm", vec![eps()]),
        BenchOp::RmsNorm => ("rms_norm", vec![eps()]),
        BenchOp::Exp => ("exp", Vec::new()),
        BenchOp::Tanh => ("tanh", Vec::new()),
        BenchOp::Gelu => ("gelu", Vec::new()),
        BenchOp::GeluTanh => (
            "gelu",
            vec![(
                "approximate".to_string(),
                AttrValue::Str("tanh".to_string()),
            )],
        ),
        _ => ("copy", Vec::new()),
    }
}

pub(super) fn bench_row_op(ctx: &Ctx, op: BenchOp, n: usize) -> OpBench {
    let cols = n.clamp(1, SOFTMAX_COLS);
    let rows = (n / cols).max(1);
    let entry = new_entry(op, format!("{rows}x{cols}"), ctx.clock);
    ctx.note(&format!("{} f32 {rows}x{cols}", op.name()));
    guarded(entry, |entry| {
        let q = &*ctx.queue;
        // Inputs in (-4, 4): both of tanh's forms, gelu's tails.
        let hx: Vec<f32> = values(rows * cols, 5).iter().map(|v| 4.0 * v).collect();
        let hw: Vec<f32> = values(cols, 7).iter().map(|v| 1.0 + 0.5 * v).collect();
        let hb = values(cols, 8);
        let x = ctx.tensor(&hx, &[rows, cols])?;
        let (w, b) = (ctx.tensor(&hw, &[cols])?, ctx.tensor(&hb, &[cols])?);
        let xt;
        let (name, attrs) = call_of(op);
        let (ins, out_shape): (Vec<Option<&Tensor>>, [usize; 2]) = match op {
            BenchOp::LayerNorm => (vec![Some(&x), Some(&w), Some(&b)], [rows, cols]),
            BenchOp::RmsNorm => (vec![Some(&x), Some(&w)], [rows, cols]),
            BenchOp::Transpose => {
                xt = x.permute(&[1, 0])?;
                (vec![Some(&xt)], [cols, rows])
            }
            _ => (vec![Some(&x)], [rows, cols]),
        };
        let y = ctx.empty(&out_shape)?;
        let outs = [&y];
        let mut peer = if ctx.peers.is_some() {
            let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
            let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
            let args = [
                op.name().to_string(),
                rows.to_string(),
                cols.to_string(),
                threads.to_string(),
            ];
            let files = [
                ("x.f32", bytes(&hx)),
                ("w.f32", bytes(&hw)),
                ("b.f32", bytes(&hb)),
            ];
            Some(OrtPeer::start(PEER_SCRIPT, &files, &args))
        } else {
            None
        };
        let mut ours = || anyaccel::ops::call_into(q, name, &ins, &outs, &attrs);
        let (s, peer_result) = match &mut peer {
            Some(Ok(p)) => {
                let mut run = || p.ask("run", "ok");
                measure(ctx, &mut ours, Some(&mut run))?
            }
            _ => measure(ctx, &mut ours, None)?,
        };
        let bytes = 2.0 * 4.0 * (rows * cols) as f64;
        record(entry, &s, ctx.clock, None, Some(bytes));
        let got = y.to_vec::<f32>(q)?;
        let peer_name = format!("onnxruntime {}", op.name());
        match (peer.as_mut(), peer_result) {
            (Some(Ok(p)), Some(result)) => {
                let version = p.version.clone();
                let check = p
                    .ask("save", "saved")
                    .and_then(|()| p.read_f32("out.f32"))
                    .and_then(|theirs| compare(&got, &theirs));
                match check {
                    Ok(()) => record_peer(
                        entry,
                        &format!("{version} {}", op.name()),
                        result,
                        None,
                        Some(bytes),
                    ),
                    Err(e) => record_peer(entry, &peer_name, Err(e), None, None),
                }
            }
            (Some(Err(e)), _) => record_peer(entry, &peer_name, Err(e.clone()), None, None),
            _ => {}
        }
        check(op, &hx, &hw, &hb, rows, cols, &got)
    })
}

/// Ours against onnxruntime's output, element by element.
fn compare(ours: &[f32], theirs: &[f32]) -> Result<(), String> {
    if ours.len() != theirs.len() {
        return Err(format!(
            "onnxruntime gave {} elements, expected {}",
            theirs.len(),
            ours.len()
        ));
    }
    for (i, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
        if (a - b).abs() > 1e-3 * (1.0 + b.abs()) {
            return Err(format!("onnxruntime's out[{i}] = {b}, ours {a}"));
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
