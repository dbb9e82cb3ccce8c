//! f32 `conv2d` on ResNet-50 layer shapes (batch 8), with `--peers` on the CPU side by side with
//! onnxruntime's CPU Conv (`scripts/ort-conv-peer.py`, run by `python3` with the `onnxruntime`
//! and `onnx` packages) on the same inputs, on as many threads as the host has cores.

use anyaccel::hal::{AttrValue, Tensor};

use super::measure::{check_failed, guarded, new_entry, record, values, Ctx};
use super::options::BenchOp;
use super::ort::{measure_beside, record_beside, OrtPeer};
use super::report::OpBench;

/// The peer's script, written next to its inputs when it runs.
const PEER_SCRIPT: &str = include_str!("../../../../scripts/ort-conv-peer.py");

/// A layer: name, x [N, C, H, W], O, kernel, stride, padding.
type Layer = (&'static str, [usize; 4], usize, usize, usize, usize);

/// The ResNet-50 layers measured.
pub(super) const LAYERS: [Layer; 4] = [
    ("res2 3x3", [8, 64, 56, 56], 64, 3, 1, 1),
    ("res2 1x1 256->64", [8, 256, 56, 56], 64, 1, 1, 0),
    ("res3 3x3 stride 2", [8, 128, 56, 56], 128, 3, 2, 1),
    ("res4 3x3", [8, 256, 14, 14], 256, 3, 1, 1),
];

pub(super) fn bench_conv(ctx: &Ctx, layer: usize) -> OpBench {
    let (name, [n, c, h, w], o, k, stride, pad) = LAYERS[layer % LAYERS.len()];
    let size = format!("{name}: x {n}x{c}x{h}x{w}, w {o}x{c}x{k}x{k}");
    let entry = new_entry(BenchOp::Conv2d, size.clone(), ctx.clock);
    ctx.note(&format!("conv2d {size}"));
    guarded(entry, |entry| {
        let q = &*ctx.queue;
        let (hx, hw) = (values(n * c * h * w, 51), values(o * c * k * k, 52));
        let x = ctx.tensor(&hx, &[n, c, h, w])?;
        let wt = ctx.tensor(&hw, &[o, c, k, k])?;
        let attrs = vec![
            ("stride".to_string(), AttrValue::Ints(vec![stride as i64])),
            ("padding".to_string(), AttrValue::Ints(vec![pad as i64])),
        ];
        let ours = anyaccel::ops::call(q, "conv2d", &[Some(&x), Some(&wt)], &attrs)?.remove(0);
        let (oh, ow) = (ours.shape()[2], ours.shape()[3]);
        let flops = 2.0 * (n * o * oh * ow * c * k * k) as f64;
        let mut peer = if ctx.peers.is_some() {
            let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
            let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
            let args = [n, c, h, w, o, k, k, stride, pad, threads].map(|a| a.to_string());
            Some(OrtPeer::start(
                PEER_SCRIPT,
                &[("x.f32", bytes(&hx)), ("w.f32", bytes(&hw))],
                &args,
            ))
        } else {
            None
        };
        let outs: Vec<&Tensor> = vec![&ours];
        let run = || anyaccel::ops::call_into(q, "conv2d", &[Some(&x), Some(&wt)], &outs, &attrs);
        let (s, peer_result) = measure_beside(ctx, run, &mut peer)?;
        record(entry, &s, ctx.clock, Some(flops), None);
        let got = ours.to_vec::<f32>(q)?;
        record_beside(
            entry,
            "Conv",
            peer.as_mut(),
            peer_result,
            &got,
            Some(flops),
            None,
        );
        check(&hx, &hw, [n, c, h, w], o, k, stride, pad, &got)
    })
}

/// Spot checks of ours against f64 sums: the first and last output element of each channel of
/// the first image.
#[allow(clippy::too_many_arguments)]
fn check(
    x: &[f32],
    w: &[f32],
    [_, c, h, wd]: [usize; 4],
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    got: &[f32],
) -> Result<(), anyaccel::Error> {
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (wd + 2 * pad - k) / stride + 1;
    for oc in 0..o {
        for (oy, ox) in [(0, 0), (oh - 1, ow - 1)] {
            let mut acc = 0f64;
            for ci in 0..c {
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = (
                            (oy * stride + ky) as i64 - pad as i64,
                            (ox * stride + kx) as i64 - pad as i64,
                        );
                        if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                            continue;
                        }
                        acc += x[(ci * h + iy as usize) * wd + ix as usize] as f64
                            * w[((oc * c + ci) * k + ky) * k + kx] as f64;
                    }
                }
            }
            let g = got[(oc * oh + oy) * ow + ox] as f64;
            if (g - acc).abs() > 1e-4 * (1.0 + acc.abs()) {
                return Err(check_failed(
                    "conv2d",
                    format!("out[0, {oc}, {oy}, {ox}] = {g}, expected {acc}"),
                ));
            }
        }
    }
    Ok(())
}
