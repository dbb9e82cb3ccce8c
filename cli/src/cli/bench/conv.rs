//! f32 `conv2d` on ResNet-50 layer shapes (batch 8), with `--peers` on the CPU side by side with
//! onnxruntime's CPU Conv (`scripts/ort-conv-peer.py`, run by `python3` with the `onnxruntime`
//! and `onnx` packages) on the same inputs, on as many threads as the host has cores.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyaccel::hal::{AttrValue, Tensor};

use super::measure::{check_failed, guarded, measure, new_entry, record, record_peer, values, Ctx};
use super::options::BenchOp;
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

/// onnxruntime in a child process, driven line by line.
struct OrtPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    dir: std::path::PathBuf,
    version: String,
}

impl OrtPeer {
    fn start(x: &[f32], w: &[f32], args: [usize; 10]) -> Result<OrtPeer, String> {
        let dir = std::env::temp_dir().join(format!("anyaccel-ort-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
        let write = |name: &str, data: &[u8]| {
            std::fs::write(dir.join(name), data).map_err(|e| format!("{name}: {e}"))
        };
        write("x.f32", &bytes(x))?;
        write("w.f32", &bytes(w))?;
        write("peer.py", PEER_SCRIPT.as_bytes())?;
        let mut cmd = Command::new("python3");
        cmd.arg(dir.join("peer.py")).arg(&dir);
        for a in args {
            cmd.arg(a.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        let stdin = child.stdin.take().ok_or("python3: no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("python3: no stdout")?);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .map_err(|e| format!("python3: {e}"))?;
        if !line.starts_with("ready") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            let _ = child.wait();
            let last = err.lines().last().unwrap_or("no message").to_string();
            return Err(format!(
                "onnxruntime peer did not start (pip install onnxruntime onnx): {last}"
            ));
        }
        let version = line.trim().trim_start_matches("ready ").to_string();
        Ok(OrtPeer {
            child,
            stdin,
            stdout,
            dir,
            version,
        })
    }

    fn ask(&mut self, cmd: &str, want: &str) -> Result<(), String> {
        writeln!(self.stdin, "{cmd}").map_err(|e| format!("onnxruntime peer: {e}"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("onnxruntime peer: {e}"))?;
        if line.trim() != want {
            return Err(format!("onnxruntime peer answered `{}`", line.trim()));
        }
        Ok(())
    }

    fn output(&mut self) -> Result<Vec<f32>, String> {
        self.ask("save", "saved")?;
        let raw = std::fs::read(self.dir.join("out.f32")).map_err(|e| e.to_string())?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

impl Drop for OrtPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
            Some(OrtPeer::start(
                &hx,
                &hw,
                [n, c, h, w, o, k, k, stride, pad, threads],
            ))
        } else {
            None
        };
        let outs: Vec<&Tensor> = vec![&ours];
        let (s, peer_result) = match &mut peer {
            Some(Ok(p)) => {
                let mut run = || p.ask("run", "ok");
                measure(
                    ctx,
                    || anyaccel::ops::call_into(q, "conv2d", &[Some(&x), Some(&wt)], &outs, &attrs),
                    Some(&mut run),
                )?
            }
            _ => measure(
                ctx,
                || anyaccel::ops::call_into(q, "conv2d", &[Some(&x), Some(&wt)], &outs, &attrs),
                None,
            )?,
        };
        record(entry, &s, ctx.clock, Some(flops), None);
        let got = ours.to_vec::<f32>(q)?;
        match (peer.as_mut(), peer_result) {
            (Some(Ok(p)), Some(result)) => {
                let version = p.version.clone();
                let check = p.output().and_then(|theirs| compare(&got, &theirs));
                match check {
                    Ok(()) => {
                        record_peer(entry, &format!("{version} Conv"), result, Some(flops), None)
                    }
                    Err(e) => record_peer(entry, "onnxruntime Conv", Err(e), None, None),
                }
            }
            (Some(Err(e)), _) => record_peer(entry, "onnxruntime Conv", Err(e.clone()), None, None),
            _ => {}
        }
        check(&hx, &hw, [n, c, h, w], o, k, stride, pad, &got)
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
