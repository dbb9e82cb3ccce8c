//! What a measurement runs with: its inputs and checks, the device's context, and the helpers
//! that take a figure, alone or side by side with a peer, and fill in its entry.

use std::cell::RefCell;
use std::sync::Arc;

use anyaccel::hal::{DType, Device, ErrorCode, Queue, Tensor};

use super::options::BenchOp;
use super::peers::OpenBlas;
use super::raw::RawPeer;
use super::report::OpBench;
use super::stats::{time_on_host, time_on_queue, BenchResult, Budget, Clock, Samples};
use super::ROUNDS;

// ---------------------------------------------------------------------------------------------
// Inputs and checks.

/// `n` values in [-1, 1) from a fixed linear congruential sequence.
pub(super) fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A few indices spread over `0..n`, the first and last included.
pub(super) fn sample_indices(n: usize, count: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut v: Vec<usize> = (0..count).map(|i| i * (n - 1) / count.max(1)).collect();
    v.push(n - 1);
    v.dedup();
    v
}

fn failed(e: anyaccel::Error) -> (&'static str, String) {
    let status = if e.code() == ErrorCode::Unsupported {
        "skipped"
    } else {
        "failed"
    };
    (status, e.to_string())
}

// ---------------------------------------------------------------------------------------------
// The context of a measurement, and taking a figure.

/// What the peers of a CPU device need, loaded once.
pub(super) struct HostPeers {
    pub(super) openblas: Result<OpenBlas, String>,
    pub(super) threads: usize,
}

pub(super) struct Ctx<'a> {
    pub(super) device: Arc<dyn Device>,
    pub(super) queue: Arc<dyn Queue>,
    pub(super) clock: Clock,
    pub(super) budget: Budget,
    pub(super) peers: Option<&'a HostPeers>,
    pub(super) peers_requested: bool,
    /// The device's raw-API peer for the dispatch and launch latencies, with `--peers`: its
    /// name, and the peer or why it could not be set up.
    pub(super) raw: Option<(&'static str, RefCell<Result<RawPeer, String>>)>,
    pub(super) progress: bool,
}

impl Ctx<'_> {
    pub(super) fn note(&self, what: &str) {
        if self.progress {
            eprintln!("bench: {} {what}", self.device.info().id);
        }
    }

    pub(super) fn tensor(&self, data: &[f32], shape: &[usize]) -> BenchResult<Tensor> {
        Tensor::from_slice(&*self.queue, data, shape)
    }

    pub(super) fn empty(&self, shape: &[usize]) -> BenchResult<Tensor> {
        Tensor::empty(&*self.device, DType::F32, shape)
    }
}

pub(super) fn gb(bytes: f64, seconds: f64) -> f64 {
    bytes / seconds / 1e9
}

/// Fills in an op entry from our samples.
pub(super) fn record(
    entry: &mut OpBench,
    s: &Samples,
    clock: Clock,
    flops: Option<f64>,
    bytes: Option<f64>,
) {
    let m = s.median();
    entry.status = "ok";
    entry.timing = clock.name();
    entry.reps = s.len();
    entry.median_s = Some(m);
    entry.p10_s = Some(s.quantile(0.1));
    entry.p90_s = Some(s.quantile(0.9));
    entry.min_s = Some(s.min());
    entry.max_s = Some(s.max());
    entry.gflops = flops.map(|f| f / m / 1e9);
    entry.gbps = bytes.map(|b| gb(b, m));
}

/// Fills in the peer part of an op entry.
pub(super) fn record_peer(
    entry: &mut OpBench,
    name: &str,
    result: Result<Samples, String>,
    flops: Option<f64>,
    bytes: Option<f64>,
) {
    entry.peer = Some(name.to_string());
    match result {
        Ok(s) => {
            let m = s.median();
            entry.peer_median_s = Some(m);
            entry.peer_p10_s = Some(s.quantile(0.1));
            entry.peer_p90_s = Some(s.quantile(0.9));
            entry.peer_gflops = flops.map(|f| f / m / 1e9);
            entry.peer_gbps = bytes.map(|b| gb(b, m));
            entry.ratio_vs_peer = entry.median_s.map(|ours| m / ours);
            entry.ratio_vs_peer_best = entry.min_s.map(|ours| s.min() / ours);
        }
        Err(e) => entry.peer_error = Some(e),
    }
}

pub(super) fn new_entry(op: BenchOp, size: String, clock: Clock) -> OpBench {
    OpBench {
        op: op.name().to_string(),
        dtype: "f32".to_string(),
        size,
        status: "failed",
        timing: clock.name(),
        ..OpBench::default()
    }
}

/// Runs the body; an error becomes the entry's status.
pub(super) fn guarded(
    mut entry: OpBench,
    body: impl FnOnce(&mut OpBench) -> BenchResult<()>,
) -> OpBench {
    if let Err(e) = body(&mut entry) {
        let (status, message) = failed(e);
        entry.status = status;
        entry.error = Some(message);
        entry.median_s = None;
        entry.gflops = None;
        entry.gbps = None;
    }
    entry
}

pub(super) fn check_failed(op: &str, what: String) -> anyaccel::Error {
    anyaccel::Error::internal(format!("{op}: result check failed: {what}"))
}

/// A peer's repetition: runs once on the host and returns when done.
pub(super) type PeerRun<'a> = &'a mut dyn FnMut() -> Result<(), String>;

/// Measures ours alone, or ours and the peer's in [`ROUNDS`] alternating blocks.
pub(super) fn measure(
    ctx: &Ctx,
    ours: impl FnMut() -> BenchResult<()>,
    peer: Option<PeerRun<'_>>,
) -> BenchResult<(Samples, Option<Result<Samples, String>>)> {
    measure_with(ctx, ctx.clock, ctx.budget, ROUNDS, ours, peer)
}

/// [`measure`] with a given clock for ours, a given budget and `rounds` alternating blocks.
pub(super) fn measure_with(
    ctx: &Ctx,
    clock: Clock,
    budget: Budget,
    rounds: usize,
    mut ours: impl FnMut() -> BenchResult<()>,
    peer: Option<PeerRun<'_>>,
) -> BenchResult<(Samples, Option<Result<Samples, String>>)> {
    let q = &*ctx.queue;
    let Some(peer) = peer else {
        return Ok((time_on_queue(q, clock, budget, ours)?, None));
    };
    let block = budget.scaled(1.0 / rounds as f64);
    let mut mine = Samples::new(Vec::new());
    let mut theirs: Result<Samples, String> = Ok(Samples::new(Vec::new()));
    for _ in 0..rounds {
        mine.extend(time_on_queue(q, clock, block, &mut ours)?);
        if let Ok(t) = &mut theirs {
            match time_on_host(block, &mut *peer) {
                Ok(more) => t.extend(more),
                Err(e) => theirs = Err(e),
            }
        }
    }
    Ok((mine, Some(theirs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_in_range_and_samples_cover_the_ends() {
        let v = values(1000, 3);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(v.iter().any(|&x| x < -0.5) && v.iter().any(|&x| x > 0.5));
        assert_ne!(values(10, 1), values(10, 2));
        let idx = sample_indices(100, 7);
        assert_eq!((idx[0], *idx.last().unwrap()), (0, 99));
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_indices(1, 7), vec![0]);
        assert!(sample_indices(0, 7).is_empty());
    }
}
