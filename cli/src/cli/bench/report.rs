//! The report: each device's figures, serialised as JSON, and their human form as text.

use serde::Serialize;

use crate::cli::table::Table;

/// The JSON form: `{"schema","devices":[...]}`.
#[derive(Serialize)]
pub struct BenchReport {
    /// `anyaccel-bench/1`.
    pub schema: &'static str,
    /// One entry per device, in the order measured.
    pub devices: Vec<DeviceBench>,
}

/// One device's figures.
#[derive(Serialize)]
pub struct DeviceBench {
    /// `<backend>:<index>`.
    pub id: String,
    /// The device's own name.
    pub name: String,
    /// The backend's name.
    pub backend: String,
    /// `events` (device timestamps) or `host` (host clock around `finish`).
    pub timing: &'static str,
    /// The roofline measured in this run.
    pub roofline: Roofline,
    /// The peers' own description (library, kernel, threads), when `--peers` ran some.
    pub peers: Vec<String>,
    /// Why a peer could not run on this device, when `--peers` was given.
    pub peers_unavailable: Vec<String>,
    /// One entry per op and size.
    pub ops: Vec<OpBench>,
}

/// The device's roofline, measured on the spot.
#[derive(Serialize, Default)]
pub struct Roofline {
    /// Device-to-device copy: (bytes read + bytes written) / median time, in GB/s (1e9 B/s).
    pub gbps: Option<f64>,
    /// The best median GFLOP/s of f32 matmul over the sizes tried.
    pub gflops: Option<f64>,
    /// Bytes of each buffer of the copy.
    pub copy_bytes: usize,
    /// The matmul size that gave `gflops`, as `n x n x n`.
    pub matmul_size: Option<String>,
    /// Why a part could not be measured.
    pub errors: Vec<String>,
}

/// One op at one size.
#[derive(Serialize, Default)]
pub struct OpBench {
    /// The op's name.
    pub op: String,
    /// `f32`.
    pub dtype: String,
    /// `2048x2048x2048` for matmul, `4096x4096` for softmax, the element count otherwise.
    pub size: String,
    /// `ok`, `skipped` (the device does not support it) or `failed`.
    pub status: &'static str,
    /// Why it was skipped or failed.
    pub error: Option<String>,
    /// `events` or `host`.
    pub timing: &'static str,
    /// Timed repetitions.
    pub reps: usize,
    /// Median time of one repetition, in seconds.
    pub median_s: Option<f64>,
    /// 10th percentile.
    pub p10_s: Option<f64>,
    /// 90th percentile.
    pub p90_s: Option<f64>,
    /// Fastest repetition.
    pub min_s: Option<f64>,
    /// Slowest repetition.
    pub max_s: Option<f64>,
    /// GFLOP/s at the median, for compute-bound ops.
    pub gflops: Option<f64>,
    /// GB/s at the median, for memory-bound ops.
    pub gbps: Option<f64>,
    /// The rate as a share of the roofline (GFLOP/s or GB/s, whichever applies).
    pub share_of_roofline: Option<f64>,
    /// The peer's name: `openblas`, `memcpy`.
    pub peer: Option<String>,
    /// The peer's median time, in seconds.
    pub peer_median_s: Option<f64>,
    /// The peer's p10 and p90 times.
    pub peer_p10_s: Option<f64>,
    /// See `peer_p10_s`.
    pub peer_p90_s: Option<f64>,
    /// The peer's GFLOP/s or GB/s, whichever applies, at its median.
    pub peer_gflops: Option<f64>,
    /// See `peer_gflops`.
    pub peer_gbps: Option<f64>,
    /// Peer median time / our median time: above 1 means we are faster.
    pub ratio_vs_peer: Option<f64>,
    /// Peer fastest time / our fastest time: the same ratio, less sensitive to other load.
    pub ratio_vs_peer_best: Option<f64>,
    /// Why the peer did not run.
    pub peer_error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Text.

fn seconds(s: Option<f64>) -> String {
    match s {
        None => "-".to_string(),
        Some(s) if s >= 1.0 => format!("{s:.3} s"),
        Some(s) if s >= 1e-3 => format!("{:.3} ms", s * 1e3),
        Some(s) => format!("{:.2} us", s * 1e6),
    }
}

fn rate(gflops: Option<f64>, gbps: Option<f64>) -> String {
    match (gflops, gbps) {
        (Some(f), _) => format!("{f:.1} GFLOP/s"),
        (None, Some(b)) => format!("{b:.1} GB/s"),
        _ => "-".to_string(),
    }
}

impl BenchReport {
    /// The human form: per device a heading with the roofline, then a table of the ops.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for d in &self.devices {
            let r = &d.roofline;
            out.push_str(&format!("{}  {}  (timing: {})\n", d.id, d.name, d.timing));
            out.push_str(&format!(
                "  roofline: copy {} over {} MiB buffers; matmul {}{}\n",
                rate(None, r.gbps),
                r.copy_bytes >> 20,
                rate(r.gflops, None),
                r.matmul_size
                    .as_ref()
                    .map(|s| format!(" at {s}"))
                    .unwrap_or_default()
            ));
            for e in &r.errors {
                out.push_str(&format!("  roofline: {e}\n"));
            }
            for p in &d.peers {
                out.push_str(&format!("  peer {p}\n"));
            }
            for p in &d.peers_unavailable {
                out.push_str(&format!("  peer unavailable: {p}\n"));
            }
            let mut t = Table::new(&[
                "OP",
                "DTYPE",
                "SIZE",
                "MEDIAN",
                "P10..P90",
                "REPS",
                "RATE",
                "ROOF",
                "PEER",
                "PEER MEDIAN",
                "PEER RATE",
                "RATIO",
                "BEST RATIO",
            ]);
            for o in &d.ops {
                let ok = o.status == "ok";
                t.row(vec![
                    o.op.clone(),
                    o.dtype.clone(),
                    o.size.clone(),
                    if ok {
                        seconds(o.median_s)
                    } else {
                        o.status.to_string()
                    },
                    if ok {
                        format!("{}..{}", seconds(o.p10_s), seconds(o.p90_s))
                    } else {
                        "-".to_string()
                    },
                    if ok {
                        o.reps.to_string()
                    } else {
                        "-".to_string()
                    },
                    rate(o.gflops, o.gbps),
                    o.share_of_roofline
                        .map_or("-".to_string(), |s| format!("{:.0}%", s * 100.0)),
                    match (&o.peer, &o.peer_error) {
                        (Some(p), Some(_)) => format!("{p} (failed)"),
                        (Some(p), None) => p.clone(),
                        _ => "-".to_string(),
                    },
                    seconds(o.peer_median_s),
                    rate(o.peer_gflops, o.peer_gbps),
                    o.ratio_vs_peer
                        .map_or("-".to_string(), |r| format!("{r:.2}x")),
                    o.ratio_vs_peer_best
                        .map_or("-".to_string(), |r| format!("{r:.2}x")),
                ]);
            }
            out.push_str(&t.render());
            for o in &d.ops {
                if let Some(e) = &o.error {
                    out.push_str(&format!("  {} {}: {}: {e}\n", o.op, o.size, o.status));
                }
                if let (Some(p), Some(e)) = (&o.peer, &o.peer_error) {
                    out.push_str(&format!("  {} {}: peer {p} failed: {e}\n", o.op, o.size));
                }
            }
            out.push('\n');
        }
        out.push_str(
            "RATE at the median; ROOF: share of the device's roofline above; \
             RATIO: peer median / our median (above 1: anyaccel is faster); \
             BEST RATIO: peer fastest / our fastest\n",
        );
        out
    }
}
