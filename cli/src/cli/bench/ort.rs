//! onnxruntime as a CPU peer: a Python script (`scripts/ort-*-peer.py`, run by `python3` with
//! the `onnxruntime` and `onnx` packages) in a child process, driven line by line.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::measure::{measure, record_peer, Ctx};
use super::report::OpBench;
use super::stats::{BenchResult, Samples};

/// onnxruntime in a child process, driven line by line.
pub(super) struct OrtPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    dir: std::path::PathBuf,
    /// `onnxruntime <version>`, as the script reports it.
    pub(super) version: String,
}

impl OrtPeer {
    /// Writes `script` and `files` to a fresh folder, runs the script with the folder and then
    /// `args` as its arguments, and waits for its `ready <version>` line.
    pub(super) fn start(
        script: &str,
        files: &[(&str, Vec<u8>)],
        args: &[String],
    ) -> Result<OrtPeer, String> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "anyaccel-ort-peer-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, data: &[u8]| {
            std::fs::write(dir.join(name), data).map_err(|e| format!("{name}: {e}"))
        };
        for (name, data) in files {
            write(name, data)?;
        }
        write("peer.py", script.as_bytes())?;
        let mut child = Command::new("python3")
            .arg(dir.join("peer.py"))
            .arg(&dir)
            .args(args)
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
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
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

    /// Sends `cmd` and returns the line the peer answers.
    pub(super) fn line(&mut self, cmd: &str) -> Result<String, String> {
        writeln!(self.stdin, "{cmd}").map_err(|e| format!("onnxruntime peer: {e}"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("onnxruntime peer: {e}"))?;
        if line.is_empty() {
            return Err("onnxruntime peer: it stopped answering".to_string());
        }
        Ok(line.trim().to_string())
    }

    /// Sends `cmd` and expects the answer `want`.
    pub(super) fn ask(&mut self, cmd: &str, want: &str) -> Result<(), String> {
        let line = self.line(cmd)?;
        if line != want {
            return Err(format!("onnxruntime peer answered `{line}`"));
        }
        Ok(())
    }

    /// The little-endian f32 values of the file `name` that the peer wrote in its folder.
    pub(super) fn read_f32(&self, name: &str) -> Result<Vec<f32>, String> {
        let raw = std::fs::read(self.dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Measures ours alone, or alternating with one "run" of the peer when it started.
pub(super) fn measure_beside(
    ctx: &Ctx,
    mut ours: impl FnMut() -> BenchResult<()>,
    peer: &mut Option<Result<OrtPeer, String>>,
) -> BenchResult<(Samples, Option<Result<Samples, String>>)> {
    match peer {
        Some(Ok(p)) => {
            let mut run = || p.ask("run", "ok");
            measure(ctx, &mut ours, Some(&mut run))
        }
        _ => measure(ctx, &mut ours, None),
    }
}

/// Records the peer's samples as onnxruntime's `kernel` after its output matched ours
/// (`got`), or why it did not run.
pub(super) fn record_beside(
    entry: &mut OpBench,
    kernel: &str,
    peer: Option<&mut Result<OrtPeer, String>>,
    samples: Option<Result<Samples, String>>,
    got: &[f32],
    flops: Option<f64>,
    bytes: Option<f64>,
) {
    let peer_name = format!("onnxruntime {kernel}");
    match (peer, samples) {
        (Some(Ok(p)), Some(result)) => {
            let version = p.version.clone();
            let check = p
                .ask("save", "saved")
                .and_then(|()| p.read_f32("out.f32"))
                .and_then(|theirs| compare(got, &theirs));
            match check {
                Ok(()) => record_peer(entry, &format!("{version} {kernel}"), result, flops, bytes),
                Err(e) => record_peer(entry, &peer_name, Err(e), None, None),
            }
        }
        (Some(Err(e)), _) => record_peer(entry, &peer_name, Err(e.clone()), None, None),
        _ => {}
    }
}

/// Ours against onnxruntime's output, element by element.
pub(super) fn compare(ours: &[f32], theirs: &[f32]) -> Result<(), String> {
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

impl Drop for OrtPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
