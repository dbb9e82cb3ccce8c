//! `anyaccel bench`: per device, a roofline measured on the spot, then each op's median time,
//! spread, rate and share of that roofline, and with `--peers` what a user would pick instead,
//! run in the same process on the same data.
//!
//! How a figure is taken:
//! - Every measurement starts with a warm-up, then repeats the op until about `--time` seconds
//!   have passed (at least [`MIN_REPS`] repetitions), and reports the median with p10/p90 and
//!   min/max.
//! - Device time comes from events recorded before and after the op where the device's events
//!   carry timestamps (`caps().timestamps`), and from the host clock around the submission and
//!   `finish` otherwise. The dispatch latency is always host time, submission to completion.
//! - Outputs are allocated once and written with the `_into` forms, so allocation and first-touch
//!   page faults are not timed. Every result is checked against a host computation after timing,
//!   so that a figure never belongs to an op that computed something else.
//! - The roofline: a device-to-device `Queue::copy` of [`COPY_BYTES`] for GB/s (bytes read plus
//!   bytes written), and the best f32 matmul of this layer on the device over doubling sizes up
//!   to 2048 for GFLOP/s.

#[cfg(feature = "opencl")]
mod clblast;
mod peers;
mod raw;
#[cfg(feature = "cuda")]
mod raw_cuda;
#[cfg(feature = "opencl")]
mod raw_opencl;
#[cfg(feature = "vulkan")]
mod raw_vulkan;
mod tiny;

use std::cell::RefCell;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyaccel::hal::{AttrValue, DType, Device, ErrorCode, KernelArg, LaunchDims, Queue, Tensor};
use serde::Serialize;

use super::args::{print, CliError};
use super::table::Table;
use peers::OpenBlas;
use raw::RawPeer;

/// The command's long description, shown by `anyaccel bench --help` above the options.
pub const LONG_ABOUT: &str = "\
For each device: its roofline measured on the spot (a large device-to-device copy for GB/s, the
best f32 matmul over doubling sizes up to 2048 for GFLOP/s); then for each op the median time over
many repetitions after a warm-up, the spread (p10..p90), GB/s or GFLOP/s and the share of the
roofline. Device time comes from events where the device's events carry timestamps, else from
the host clock around `finish`. Results are checked after timing.

Ops (f32):
  matmul    square n x n x n, default n = 256, 1024 and 2048 (GFLOP/s: 2n^3 / time)
  add       a + b over n elements, default 16M (GB/s: 3 x 4n bytes / time)
  softmax   over the last axis of rows x cols, n = rows x cols, default 4096 x 4096 (GB/s: 2 x 4n)
  sum       of n elements to a scalar, default 16M (GB/s: 4n)
  dispatch  latency of a one-element add through the op layer, submission to completion, host
            clock
  launch    latency of a tiny kernel (one-element add in the device's own dialect: OpenCL C,
            WGSL or CUDA C) compiled with Device::compile and run with Queue::launch, submission
            to completion, host clock
";

/// Fewest timed repetitions of a figure (fewer only when one repetition outlasts 10x `--time`).
pub const MIN_REPS: usize = 5;
/// Most timed repetitions of a figure.
const MAX_REPS: usize = 2000;
/// Most timed repetitions of the dispatch latency.
const MAX_DISPATCH_REPS: usize = 20000;
/// Bytes of each buffer of the roofline copy (capped by the device's largest buffer).
pub const COPY_BYTES: usize = 256 << 20;
/// Largest matmul edge of the roofline.
const ROOFLINE_MATMUL_MAX: usize = 2048;
/// Pause between two measurements, so that the worker threads of the one before (ours or a
/// peer's) have stopped spinning when the next begins.
const SETTLE: Duration = Duration::from_millis(150);
/// With a peer, ours and the peer's are measured in this many alternating blocks, so that a
/// change in the machine's load during the measurement falls on both alike.
const ROUNDS: usize = 3;
/// Alternating blocks for the dispatch and launch latencies: short blocks, many of them, since
/// a driver's worker threads drift between fast and slow states over a run (PoCL's do, by
/// 10% to 20%), and that drift must fall on both sides alike.
const LATENCY_ROUNDS: usize = 12;

const DEFAULT_ELEMENTS: usize = 16 << 20;
const SOFTMAX_COLS: usize = 4096;

/// The ops the command measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchOp {
    /// f32 matmul, square.
    Matmul,
    /// f32 add, contiguous.
    Add,
    /// f32 softmax over the last axis.
    Softmax,
    /// f32 sum over every element.
    Sum,
    /// One-element add through the op layer, submission to completion.
    Dispatch,
    /// A tiny kernel of the device's own dialect, compiled through `Device::compile` and run
    /// with `Queue::launch` and `finish`, submission to completion.
    Launch,
}

impl BenchOp {
    /// Every op, in the order they run.
    pub const ALL: [BenchOp; 6] = [
        BenchOp::Matmul,
        BenchOp::Add,
        BenchOp::Softmax,
        BenchOp::Sum,
        BenchOp::Dispatch,
        BenchOp::Launch,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BenchOp::Matmul => "matmul",
            BenchOp::Add => "add",
            BenchOp::Softmax => "softmax",
            BenchOp::Sum => "sum",
            BenchOp::Dispatch => "dispatch",
            BenchOp::Launch => "launch",
        }
    }

    fn parse(name: &str) -> Option<BenchOp> {
        BenchOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The sizes it runs at: `--size` when given, else its defaults.
    fn sizes(self, size: Option<usize>) -> Vec<usize> {
        match (self, size) {
            (BenchOp::Dispatch | BenchOp::Launch, _) => vec![1],
            (_, Some(n)) => vec![n],
            (BenchOp::Matmul, None) => vec![256, 1024, 2048],
            (BenchOp::Softmax, None) => vec![SOFTMAX_COLS * SOFTMAX_COLS],
            (_, None) => vec![DEFAULT_ELEMENTS],
        }
    }
}

/// What the command was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Device ids or backend names; empty: the runtime's selection.
    pub devices: Vec<String>,
    /// The ops, in the order given, without repeats.
    pub ops: Vec<BenchOp>,
    /// One size for every op instead of the defaults.
    pub size: Option<usize>,
    /// Run the peers too.
    pub peers: bool,
    /// Measuring time per figure, in seconds.
    pub time_s: f64,
    /// Print JSON.
    pub json: bool,
    /// Leave out the roofline.
    pub no_roofline: bool,
}

/// `16M` -> 16777216; `4096` -> 4096; `2K` -> 2048.
fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let (digits, scale) = match t.char_indices().last()? {
        (i, 'k' | 'K') => (&t[..i], 1usize << 10),
        (i, 'm' | 'M') => (&t[..i], 1usize << 20),
        _ => (t, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
}

/// The command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A device id or backend name (repeatable, or a comma list); default: every device, or
    /// those ANYACCEL_DEVICES selects
    #[arg(long = "device", value_name = "ID", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// An op from the list above (repeatable, or a comma list); default: all
    #[arg(long = "op", value_name = "NAME", value_delimiter = ',', value_parser = parse_op)]
    pub ops: Vec<BenchOp>,
    /// One problem size for every selected op instead of the defaults: the matmul edge, or the
    /// element count (suffixes K = 1024, M = 1024^2 allowed)
    #[arg(long, value_name = "N", value_parser = parse_size_arg)]
    pub size: Option<usize>,
    /// Also run, in the same process on the same data, what a user would pick instead, and
    /// print the ratio peer time / our time (above 1: we are faster). CPU: OpenBLAS
    /// cblas_sgemm (libopenblas.so.0, opened at run time) for matmul; memcpy over the same bytes
    /// as add moves, split over every core, for add. OpenCL: CLBlast sgemm (libclblast.so.1) on
    /// the same device for matmul. OpenCL, Vulkan, CUDA: for dispatch and launch, the same tiny
    /// kernel through raw opencl3 / ash / cudarc calls on a context and queue of their own,
    /// which is the layer's own overhead
    #[arg(long)]
    pub peers: bool,
    /// Measuring time per figure after its warm-up, in seconds (above 0, at most 3600)
    #[arg(long = "time", value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_time)]
    pub time_s: f64,
    /// Leave out the roofline (and so the ROOF shares)
    #[arg(long)]
    pub no_roofline: bool,
    /// Print JSON: {"devices":[{"id","roofline":{"gbps","gflops"},"ops":[{"op","dtype","size",
    /// "median_s","gflops","gbps","peer","peer_median_s","ratio_vs_peer",...}]}]} with the
    /// spread, repetitions and shares as well
    #[arg(long)]
    pub json: bool,
}

fn parse_op(name: &str) -> Result<BenchOp, String> {
    BenchOp::parse(name.trim()).ok_or_else(|| {
        format!(
            "unknown op `{name}`; expected one of: {}",
            BenchOp::ALL.map(BenchOp::name).join(", ")
        )
    })
}

fn parse_size_arg(text: &str) -> Result<usize, String> {
    parse_size(text)
        .ok_or_else(|| format!("`{text}`: expected a positive integer such as 4096 or 16M"))
}

fn parse_time(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= 3600.0)
        .ok_or_else(|| format!("`{text}`: expected seconds above 0 and at most 3600"))
}

impl BenchArgs {
    /// What the command was asked to do: the ops in the order given, without repeats (all when
    /// none was given); devices without empty names.
    pub fn options(&self) -> Options {
        let mut ops = Vec::new();
        for op in &self.ops {
            if !ops.contains(op) {
                ops.push(*op);
            }
        }
        if ops.is_empty() {
            ops = BenchOp::ALL.to_vec();
        }
        Options {
            devices: self
                .devices
                .iter()
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect(),
            ops,
            size: self.size,
            peers: self.peers,
            time_s: self.time_s,
            json: self.json,
            no_roofline: self.no_roofline,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report.

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
// Timing.

/// Sorted repetition times in seconds.
pub struct Samples(Vec<f64>);

impl Samples {
    fn new(mut times: Vec<f64>) -> Samples {
        times.sort_by(f64::total_cmp);
        Samples(times)
    }

    /// The value at quantile `q` (nearest rank); the median averages the two middle values.
    pub fn quantile(&self, q: f64) -> f64 {
        let v = &self.0;
        if v.is_empty() {
            return f64::NAN;
        }
        if q == 0.5 && v.len().is_multiple_of(2) {
            return (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0;
        }
        let rank = (q * (v.len() - 1) as f64).round() as usize;
        v[rank.min(v.len() - 1)]
    }

    /// The median.
    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
        self.0.sort_by(f64::total_cmp);
    }

    fn min(&self) -> f64 {
        self.0.first().copied().unwrap_or(f64::NAN)
    }

    fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Clock {
    Events,
    Host,
}

impl Clock {
    fn name(self) -> &'static str {
        match self {
            Clock::Events => "events",
            Clock::Host => "host",
        }
    }
}

/// How long to warm up and measure one figure.
#[derive(Clone, Copy)]
struct Budget {
    warmup: Duration,
    measure: Duration,
    max_reps: usize,
}

impl Budget {
    fn new(time_s: f64) -> Budget {
        let measure = Duration::from_secs_f64(time_s);
        Budget {
            warmup: measure.mul_f64(0.2),
            measure,
            max_reps: MAX_REPS,
        }
    }

    fn with_max_reps(self, max_reps: usize) -> Budget {
        Budget { max_reps, ..self }
    }

    fn scaled(self, factor: f64) -> Budget {
        Budget {
            warmup: self.warmup.mul_f64(factor),
            measure: self.measure.mul_f64(factor),
            max_reps: ((self.max_reps as f64 * factor).ceil() as usize).max(MIN_REPS),
        }
    }

    /// True when a measurement that has taken `elapsed` for `reps` repetitions is done.
    fn done(&self, reps: usize, elapsed: Duration) -> bool {
        reps >= self.max_reps
            || (reps >= MIN_REPS && elapsed >= self.measure)
            || (reps >= 1 && elapsed >= self.measure * 10)
    }
}

type BenchResult<T> = std::result::Result<T, anyaccel::Error>;

/// Times `f`, which submits work to `queue`, as the clock says.
fn time_on_queue(
    queue: &dyn Queue,
    clock: Clock,
    budget: Budget,
    mut f: impl FnMut() -> BenchResult<()>,
) -> BenchResult<Samples> {
    std::thread::sleep(SETTLE);
    queue.finish()?;
    let start = Instant::now();
    let mut warm = 0;
    while warm == 0 || (start.elapsed() < budget.warmup && warm < budget.max_reps / 4) {
        f()?;
        queue.finish()?;
        warm += 1;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while !budget.done(times.len(), start.elapsed()) {
        let t = match clock {
            Clock::Events => {
                let before = queue.record_event()?;
                f()?;
                let after = queue.record_event()?;
                after.wait()?;
                after.elapsed_since(&*before)?
            }
            Clock::Host => {
                let t0 = Instant::now();
                f()?;
                queue.finish()?;
                t0.elapsed()
            }
        };
        times.push(t.as_secs_f64());
    }
    Ok(Samples::new(times))
}

/// Times `f`, which runs on the host and returns when done, with the host clock.
fn time_on_host(
    budget: Budget,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<Samples, String> {
    std::thread::sleep(SETTLE);
    let start = Instant::now();
    let mut warm = 0;
    while warm == 0 || (start.elapsed() < budget.warmup && warm < budget.max_reps / 4) {
        f()?;
        warm += 1;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while !budget.done(times.len(), start.elapsed()) {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(Samples::new(times))
}

// ---------------------------------------------------------------------------------------------
// Inputs and checks.

/// `n` values in [-1, 1) from a fixed linear congruential sequence.
fn values(n: usize, seed: u64) -> Vec<f32> {
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
fn sample_indices(n: usize, count: usize) -> Vec<usize> {
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
// The measurements.

/// What the peers of a CPU device need, loaded once.
struct HostPeers {
    openblas: Result<OpenBlas, String>,
    threads: usize,
}

struct Ctx<'a> {
    device: Arc<dyn Device>,
    queue: Arc<dyn Queue>,
    clock: Clock,
    budget: Budget,
    peers: Option<&'a HostPeers>,
    peers_requested: bool,
    /// The device's raw-API peer for the dispatch and launch latencies, with `--peers`: its
    /// name, and the peer or why it could not be set up.
    raw: Option<(&'static str, RefCell<Result<RawPeer, String>>)>,
    progress: bool,
}

impl Ctx<'_> {
    fn note(&self, what: &str) {
        if self.progress {
            eprintln!("bench: {} {what}", self.device.info().id);
        }
    }

    fn tensor(&self, data: &[f32], shape: &[usize]) -> BenchResult<Tensor> {
        Tensor::from_slice(&*self.queue, data, shape)
    }

    fn empty(&self, shape: &[usize]) -> BenchResult<Tensor> {
        Tensor::empty(&*self.device, DType::F32, shape)
    }
}

fn gb(bytes: f64, seconds: f64) -> f64 {
    bytes / seconds / 1e9
}

/// Fills in an op entry from our samples.
fn record(entry: &mut OpBench, s: &Samples, clock: Clock, flops: Option<f64>, bytes: Option<f64>) {
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
fn record_peer(
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

fn new_entry(op: BenchOp, size: String, clock: Clock) -> OpBench {
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
fn guarded(mut entry: OpBench, body: impl FnOnce(&mut OpBench) -> BenchResult<()>) -> OpBench {
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

fn check_failed(op: &str, what: String) -> anyaccel::Error {
    anyaccel::Error::internal(format!("{op}: result check failed: {what}"))
}

/// A peer's repetition: runs once on the host and returns when done.
type PeerRun<'a> = &'a mut dyn FnMut() -> Result<(), String>;

/// Measures ours alone, or ours and the peer's in [`ROUNDS`] alternating blocks.
fn measure(
    ctx: &Ctx,
    ours: impl FnMut() -> BenchResult<()>,
    peer: Option<PeerRun<'_>>,
) -> BenchResult<(Samples, Option<Result<Samples, String>>)> {
    measure_with(ctx, ctx.clock, ctx.budget, ROUNDS, ours, peer)
}

/// [`measure`] with a given clock for ours, a given budget and `rounds` alternating blocks.
fn measure_with(
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

/// Checks a sample of the n x n product `c = a @ b` against f64 dot products.
fn check_product(n: usize, a: &[f32], b: &[f32], c: &[f32]) -> Result<(), String> {
    for i in sample_indices(n, 7) {
        for j in sample_indices(n, 7) {
            let (mut exact, mut scale) = (0.0f64, 0.0f64);
            for p in 0..n {
                let t = a[i * n + p] as f64 * b[p * n + j] as f64;
                exact += t;
                scale += t.abs();
            }
            let g = c[i * n + j] as f64;
            if g.is_nan() || (g - exact).abs() > 1e-4 + 1e-5 * scale {
                return Err(format!("c[{i}][{j}] = {g}, expected {exact}"));
            }
        }
    }
    Ok(())
}

/// The matmul peer of a device.
enum MatmulPeer<'a> {
    OpenBlas(&'a OpenBlas),
    #[cfg(feature = "opencl")]
    ClBlast {
        blas: clblast::ClBlast,
        mems: [*mut std::ffi::c_void; 3],
        out: Tensor,
    },
}

/// The peer for this device, `None` without `--peers` or without one, `Err` when it is missing.
fn matmul_peer<'a>(
    ctx: &Ctx<'a>,
    a: &Tensor,
    b: &Tensor,
) -> BenchResult<Option<(&'static str, Result<MatmulPeer<'a>, String>)>> {
    if let Some(p) = ctx.peers {
        return Ok(Some((
            "openblas",
            p.openblas
                .as_ref()
                .map(MatmulPeer::OpenBlas)
                .map_err(Clone::clone),
        )));
    }
    #[cfg(feature = "opencl")]
    if ctx.peers_requested && ctx.device.info().backend == "opencl" {
        let out = ctx.empty(a.shape())?;
        let raw = |t: &Tensor| {
            t.view()
                .buffer()
                .downcast::<anyaccel::opencl::OpenClMemory>()
                .map(|m| m.raw())
                .ok_or_else(|| "clblast: the tensor is not in OpenCL memory".to_string())
        };
        let peer = (|| {
            let mems = [raw(a)?, raw(b)?, raw(&out)?];
            let blas = clblast::ClBlast::for_buffer(mems[0])?;
            Ok(MatmulPeer::ClBlast { blas, mems, out })
        })();
        return Ok(Some(("clblast", peer)));
    }
    let _ = (a, b);
    Ok(None)
}

fn bench_matmul(ctx: &Ctx, n: usize) -> OpBench {
    let entry = new_entry(BenchOp::Matmul, format!("{n}x{n}x{n}"), ctx.clock);
    ctx.note(&format!("matmul f32 {n}x{n}x{n}"));
    guarded(entry, |entry| {
        let (ha, hb) = (values(n * n, 1), values(n * n, 2));
        let a = ctx.tensor(&ha, &[n, n])?;
        let b = ctx.tensor(&hb, &[n, n])?;
        let c = ctx.empty(&[n, n])?;
        let q = &*ctx.queue;
        let flops = 2.0 * (n as f64).powi(3);
        let peer = matmul_peer(ctx, &a, &b)?;
        let mut hc = vec![
            0.0f32;
            if peer.is_some() && ctx.peers.is_some() {
                n * n
            } else {
                0
            }
        ];
        let mut peer_run = |p: &MatmulPeer| -> Result<(), String> {
            match p {
                MatmulPeer::OpenBlas(blas) => blas.sgemm(n, n, n, &ha, &hb, &mut hc),
                #[cfg(feature = "opencl")]
                MatmulPeer::ClBlast { blas, mems, .. } => {
                    // SAFETY: the three buffers are live tensors' n x n f32 buffers of the
                    // device's context (held by `a`, `b` and `out`), and `out` is distinct.
                    unsafe { blas.sgemm_square(n, mems[0], mems[1], mems[2]) }
                }
            }
        };
        let mut run_peer;
        let (peer_name, peer_ready) = match &peer {
            Some((name, Ok(p))) => {
                ctx.note(&format!("  side by side with {name} sgemm {n}x{n}x{n}"));
                run_peer = || peer_run(p);
                (Some(*name), Some(&mut run_peer as PeerRun))
            }
            Some((name, Err(e))) => {
                record_peer(entry, name, Err(e.clone()), None, None);
                (None, None)
            }
            None => (None, None),
        };
        let ours = || anyaccel::ops::matmul_into(q, &a, &b, None, &c);
        // A device without matmul still shows its peer's figure, with no ratio.
        if let Err(e) = ours().and_then(|()| q.finish()) {
            if let (Some(name), Some(run)) = (peer_name, peer_ready) {
                record_peer(
                    entry,
                    name,
                    time_on_host(ctx.budget, run),
                    Some(flops),
                    None,
                );
            }
            return Err(e);
        }
        let (s, peer_samples) = measure(ctx, ours, peer_ready)?;
        record(entry, &s, ctx.clock, Some(flops), None);
        let got = c.to_vec::<f32>(q)?;
        check_product(n, &ha, &hb, &got).map_err(|e| check_failed("matmul", e))?;
        if let (Some(name), Some(result), Some((_, Ok(p)))) = (peer_name, peer_samples, &peer) {
            // The peer must have computed the same product.
            let theirs = match p {
                MatmulPeer::OpenBlas(_) => Ok(std::mem::take(&mut hc)),
                #[cfg(feature = "opencl")]
                MatmulPeer::ClBlast { out, .. } => out.to_vec::<f32>(q).map_err(|e| e.to_string()),
            };
            let result = result.and_then(|s| {
                check_product(n, &ha, &hb, &theirs?)
                    .map_err(|e| format!("{name} computed a wrong product: {e}"))?;
                Ok(s)
            });
            record_peer(entry, name, result, Some(flops), None);
        }
        Ok(())
    })
}

fn bench_add(ctx: &Ctx, n: usize) -> OpBench {
    let entry = new_entry(BenchOp::Add, n.to_string(), ctx.clock);
    ctx.note(&format!("add f32 {n}"));
    guarded(entry, |entry| {
        let (ha, hb) = (values(n, 3), values(n, 4));
        let a = ctx.tensor(&ha, &[n])?;
        let b = ctx.tensor(&hb, &[n])?;
        let c = ctx.empty(&[n])?;
        let q = &*ctx.queue;
        let bytes = 3.0 * 4.0 * n as f64;
        // The peer: memcpy moving the same bytes as add, 6n bytes read and 6n written (add
        // reads 8n and writes 4n), split over every core as add is.
        let peer_bytes = if ctx.peers.is_some() { 6 * n } else { 0 };
        let src = vec![1u8; peer_bytes];
        let mut dst = vec![0u8; peer_bytes];
        let threads = ctx.peers.map_or(1, |p| p.threads);
        let mut copy = || {
            peers::memcpy_parallel(&src, &mut dst, threads);
            Ok(())
        };
        if ctx.peers.is_some() {
            ctx.note(&format!("  side by side with memcpy of {peer_bytes} bytes"));
        }
        let peer: Option<PeerRun> = ctx.peers.map(|_| &mut copy as PeerRun);
        let (s, peer_samples) = measure(ctx, || anyaccel::ops::add_into(q, &a, &b, &c), peer)?;
        record(entry, &s, ctx.clock, None, Some(bytes));
        let got = c.to_vec::<f32>(q)?;
        if let Some(i) = (0..n).find(|&i| got[i] != ha[i] + hb[i]) {
            return Err(check_failed(
                "add",
                format!("c[{i}] = {}, expected {}", got[i], ha[i] + hb[i]),
            ));
        }
        if let Some(result) = peer_samples {
            record_peer(entry, "memcpy", result, None, Some(bytes));
        }
        Ok(())
    })
}

fn bench_softmax(ctx: &Ctx, n: usize) -> OpBench {
    let cols = n.min(SOFTMAX_COLS);
    let rows = (n / cols).max(1);
    let entry = new_entry(BenchOp::Softmax, format!("{rows}x{cols}"), ctx.clock);
    ctx.note(&format!("softmax f32 {rows}x{cols}"));
    guarded(entry, |entry| {
        let hx = values(rows * cols, 5);
        let x = ctx.tensor(&hx, &[rows, cols])?;
        let y = ctx.empty(&[rows, cols])?;
        let q = &*ctx.queue;
        let attrs = [("axis".to_string(), AttrValue::Int(1))];
        let s = time_on_queue(q, ctx.clock, ctx.budget, || {
            anyaccel::ops::call_into(q, "softmax", &[Some(&x)], &[&y], &attrs)
        })?;
        let bytes = 2.0 * 4.0 * (rows * cols) as f64;
        record(entry, &s, ctx.clock, None, Some(bytes));
        let got = y.to_vec::<f32>(q)?;
        for r in sample_indices(rows, 8) {
            let row = &hx[r * cols..(r + 1) * cols];
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let denom: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            for j in sample_indices(cols, 8) {
                let exact = (row[j] as f64 - max).exp() / denom;
                let g = got[r * cols + j] as f64;
                if g.is_nan() || (g - exact).abs() > 1e-4 * (1.0 + exact) {
                    return Err(check_failed(
                        "softmax",
                        format!("y[{r}][{j}] = {g}, expected {exact}"),
                    ));
                }
            }
        }
        Ok(())
    })
}

fn bench_sum(ctx: &Ctx, n: usize) -> OpBench {
    let entry = new_entry(BenchOp::Sum, n.to_string(), ctx.clock);
    ctx.note(&format!("sum f32 {n}"));
    guarded(entry, |entry| {
        let hx = values(n, 6);
        let x = ctx.tensor(&hx, &[n])?;
        let y = ctx.empty(&[])?;
        let q = &*ctx.queue;
        let attrs = [
            ("axes".to_string(), AttrValue::Ints(Vec::new())),
            ("keepdim".to_string(), AttrValue::Int(0)),
        ];
        let s = time_on_queue(q, ctx.clock, ctx.budget, || {
            anyaccel::ops::call_into(q, "sum", &[Some(&x)], &[&y], &attrs)
        })?;
        record(entry, &s, ctx.clock, None, Some(4.0 * n as f64));
        let got = y.to_vec::<f32>(q)?.first().copied().unwrap_or(f32::NAN) as f64;
        let exact: f64 = hx.iter().map(|&v| v as f64).sum();
        let scale: f64 = hx.iter().map(|&v| (v as f64).abs()).sum();
        if got.is_nan() || (got - exact).abs() > 1e-4 + 1e-5 * scale {
            return Err(check_failed("sum", format!("{got}, expected {exact}")));
        }
        Ok(())
    })
}

/// Measures `ours` (one submission, then `finish`) on the host clock, side by side with the
/// device's raw-API peer when there is one, then checks both results.
fn latency(
    ctx: &Ctx,
    entry: &mut OpBench,
    ours: impl FnMut() -> BenchResult<()>,
    c: &Tensor,
) -> BenchResult<()> {
    let budget = ctx.budget.with_max_reps(MAX_DISPATCH_REPS);
    let name = ctx.raw.as_ref().map(|(name, _)| *name);
    let mut raw = ctx.raw.as_ref().map(|(_, r)| r.borrow_mut());
    let mut peer_err = None;
    let mut run_peer;
    let peer: Option<PeerRun> = match raw.as_deref_mut() {
        Some(Ok(p)) => {
            run_peer = || p.dispatch();
            Some(&mut run_peer as PeerRun)
        }
        Some(Err(e)) => {
            peer_err = Some(e.clone());
            None
        }
        None => None,
    };
    let (s, peer_samples) = measure_with(ctx, Clock::Host, budget, LATENCY_ROUNDS, ours, peer)?;
    record(entry, &s, Clock::Host, None, None);
    let got = c.to_vec::<f32>(&*ctx.queue)?;
    if got != [tiny::C] {
        return Err(check_failed(
            &entry.op,
            format!("{got:?}, expected [{}]", tiny::C),
        ));
    }
    let result = match (raw.as_deref_mut(), peer_samples, peer_err) {
        (Some(Ok(p)), Some(result), _) => {
            Some(result.and_then(|samples| match p.read_c()?.as_slice() {
                [c] if *c == tiny::C => Ok(samples),
                other => Err(format!("computed {other:?}, expected [{}]", tiny::C)),
            }))
        }
        (_, _, Some(e)) => Some(Err(e)),
        _ => None,
    };
    if let (Some(name), Some(result)) = (name, result) {
        record_peer(entry, name, result, None, None);
    }
    Ok(())
}

fn bench_dispatch(ctx: &Ctx) -> OpBench {
    let mut entry = new_entry(BenchOp::Dispatch, "1".to_string(), Clock::Host);
    ctx.note("dispatch latency (one-element add through the op layer)");
    entry = guarded(entry, |entry| {
        let a = ctx.tensor(&[tiny::A], &[1])?;
        let b = ctx.tensor(&[tiny::B], &[1])?;
        let c = ctx.empty(&[1])?;
        let q = &*ctx.queue;
        latency(ctx, entry, || anyaccel::ops::add_into(q, &a, &b, &c), &c)
    });
    entry
}

fn bench_launch(ctx: &Ctx) -> OpBench {
    let entry = new_entry(BenchOp::Launch, "1".to_string(), Clock::Host);
    ctx.note("launch latency (a tiny kernel through Device::compile and Queue::launch)");
    guarded(entry, |entry| {
        let info = ctx.device.info();
        let source = tiny::kernel(&info.backend).ok_or_else(|| {
            anyaccel::Error::unsupported(format!(
                "launch: the {} backend compiles no kernel source dialect that the tiny \
                 kernel is written in (OpenCL C, WGSL, CUDA C)",
                info.backend
            ))
        })?;
        let kernel = ctx.device.compile(&source)?;
        let a = ctx.tensor(&[tiny::A], &[1])?;
        let b = ctx.tensor(&[tiny::B], &[1])?;
        let c = ctx.empty(&[1])?;
        let q = &*ctx.queue;
        let args = [
            KernelArg::Buffer(a.view().clone()),
            KernelArg::Buffer(b.view().clone()),
            KernelArg::Buffer(c.view().clone()),
            KernelArg::scalar(1u32),
        ];
        latency(
            ctx,
            entry,
            || q.launch(&kernel, LaunchDims::linear(1), &args),
            &c,
        )
    })
}

/// The roofline: a large copy for GB/s, the best matmul over doubling sizes for GFLOP/s.
fn roofline(ctx: &Ctx) -> Roofline {
    let mut r = Roofline::default();
    let q = &*ctx.queue;
    let max_buffer = usize::try_from(ctx.device.info().max_buffer_bytes).unwrap_or(usize::MAX);
    let bytes = COPY_BYTES.min(max_buffer) & !63;
    r.copy_bytes = bytes;
    ctx.note(&format!("roofline: copy of {bytes} bytes"));
    let copy = || -> BenchResult<Samples> {
        let src = ctx.device.alloc(bytes)?;
        let dst = ctx.device.alloc(bytes)?;
        // Touch both, so that first-touch page faults are not timed.
        q.fill(&src.whole(), &[0x5a; 4])?;
        q.fill(&dst.whole(), &[0; 4])?;
        let (s, d) = (src.whole(), dst.whole());
        time_on_queue(q, ctx.clock, ctx.budget.scaled(0.5), || q.copy(&s, &d))
    };
    match copy() {
        Ok(s) => r.gbps = Some(gb(2.0 * bytes as f64, s.median())),
        Err(e) => r.errors.push(format!("copy: {e}")),
    }
    // Doubling sizes while one repetition stays short, so that a slow device still finishes.
    let mut n = 256;
    while n <= ROOFLINE_MATMUL_MAX {
        ctx.note(&format!("roofline: matmul f32 {n}x{n}x{n}"));
        let run = || -> BenchResult<Samples> {
            let a = ctx.tensor(&values(n * n, 7), &[n, n])?;
            let b = ctx.tensor(&values(n * n, 8), &[n, n])?;
            let c = ctx.empty(&[n, n])?;
            time_on_queue(q, ctx.clock, ctx.budget.scaled(0.5), || {
                anyaccel::ops::matmul_into(q, &a, &b, None, &c)
            })
        };
        match run() {
            Ok(s) => {
                let gflops = 2.0 * (n as f64).powi(3) / s.median() / 1e9;
                if r.gflops.is_none_or(|best| gflops > best) {
                    r.gflops = Some(gflops);
                    r.matmul_size = Some(format!("{n}x{n}x{n}"));
                }
                if s.min() > ctx.budget.measure.as_secs_f64() / 4.0 {
                    break;
                }
            }
            Err(e) => {
                r.errors.push(format!("matmul: {e}"));
                break;
            }
        }
        n *= 2;
    }
    r
}

fn bench_device(
    device: Arc<dyn Device>,
    o: &Options,
    host_peers: Option<&HostPeers>,
) -> BenchResult<DeviceBench> {
    let info = device.info().clone();
    let clock = if device.caps().timestamps {
        Clock::Events
    } else {
        Clock::Host
    };
    let queue = device.create_queue()?;
    let is_host = info.backend == "cpu";
    let mut report = DeviceBench {
        id: info.id.clone(),
        name: info.name.clone(),
        backend: info.backend.clone(),
        timing: clock.name(),
        roofline: Roofline::default(),
        peers: Vec::new(),
        peers_unavailable: Vec::new(),
        ops: Vec::new(),
    };
    if o.peers {
        match (is_host, host_peers) {
            (true, Some(p)) => {
                match &p.openblas {
                    Ok(blas) => report.peers.push(format!("openblas: {}", blas.description)),
                    Err(e) => report.peers_unavailable.push(format!("openblas: {e}")),
                }
                report.peers.push(format!(
                    "memcpy: std copy_from_slice split over {} threads",
                    p.threads
                ));
            }
            _ if cfg!(feature = "opencl") && info.backend == "opencl" => report.peers.push(
                "clblast: CLBlastSgemm from libclblast.so.1 on the device's own buffers, \
                 through a queue of its own, host clock around clFinish"
                    .to_string(),
            ),
            _ => {}
        }
    }
    let raw = if o.peers { RawPeer::of(&*device) } else { None };
    match &raw {
        Some((name, Ok(p))) => report.peers.push(format!("{name}: {}", p.description())),
        Some((name, Err(e))) => report.peers_unavailable.push(format!("{name}: {e}")),
        None if o.peers && !is_host => report.peers_unavailable.push(format!(
            "no raw-API peer for the {} backend (vendor plugins bring their own runtime)",
            info.backend
        )),
        None => {}
    }
    let ctx = Ctx {
        device,
        queue,
        clock,
        budget: Budget::new(o.time_s),
        peers: if is_host { host_peers } else { None },
        peers_requested: o.peers,
        raw: raw.map(|(name, peer)| (name, RefCell::new(peer))),
        progress: !o.json,
    };
    if !o.no_roofline {
        report.roofline = roofline(&ctx);
    }
    for op in &o.ops {
        for n in op.sizes(o.size) {
            let mut entry = match op {
                BenchOp::Matmul => bench_matmul(&ctx, n),
                BenchOp::Add => bench_add(&ctx, n),
                BenchOp::Softmax => bench_softmax(&ctx, n),
                BenchOp::Sum => bench_sum(&ctx, n),
                BenchOp::Dispatch => bench_dispatch(&ctx),
                BenchOp::Launch => bench_launch(&ctx),
            };
            let roof = match op {
                BenchOp::Matmul => report.roofline.gflops.zip(entry.gflops),
                _ => report.roofline.gbps.zip(entry.gbps),
            };
            entry.share_of_roofline = roof.map(|(roof, rate)| rate / roof);
            report.ops.push(entry);
        }
    }
    Ok(report)
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

/// Runs `anyaccel bench`.
pub fn run(args: &BenchArgs) -> Result<ExitCode, CliError> {
    let o = args.options();
    let rt = anyaccel::Runtime::new();
    let devices: Vec<Arc<dyn Device>> = if o.devices.is_empty() {
        rt.devices()
            .map_err(|e| CliError::Failed(format!("bench: {e}")))?
    } else {
        let mut chosen: Vec<Arc<dyn Device>> = Vec::new();
        for sel in &o.devices {
            for d in rt
                .select(sel)
                .map_err(|e| CliError::Failed(format!("bench: --device {sel}: {e}")))?
            {
                if !chosen.iter().any(|c| c.info().id == d.info().id) {
                    chosen.push(d);
                }
            }
        }
        chosen
    };
    if devices.is_empty() {
        return Err(CliError::Failed(
            "bench: no devices: no compiled-in backend is available".to_string(),
        ));
    }
    let host_peers =
        (o.peers && devices.iter().any(|d| d.info().backend == "cpu")).then(|| HostPeers {
            openblas: OpenBlas::load(),
            threads: peers::host_threads(),
        });
    let mut report = BenchReport {
        schema: "anyaccel-bench/1",
        devices: Vec::new(),
    };
    for device in devices {
        let id = device.info().id.clone();
        let d = bench_device(device, &o, host_peers.as_ref())
            .map_err(|e| CliError::Failed(format!("bench: {id}: {e}")))?;
        report.devices.push(d);
    }
    let text = if o.json {
        let mut s = serde_json::to_string(&report)
            .map_err(|e| CliError::Failed(format!("bench: encoding the JSON report: {e}")))?;
        s.push('\n');
        s
    } else {
        report.to_text()
    };
    print(&text)?;
    let any_failed = report
        .devices
        .iter()
        .flat_map(|d| &d.ops)
        .any(|o| o.status == "failed");
    Ok(if any_failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parsed(items: &[&str]) -> Result<Options, clap::Error> {
        use clap::Parser;
        Bench::try_parse_from(std::iter::once("bench").chain(items.iter().copied()))
            .map(|b| b.args.options())
    }

    #[test]
    fn options_are_read_and_checked() {
        let o = parsed(&[
            "--device",
            "cpu:0",
            "--op",
            "add,sum",
            "--op",
            "add",
            "--size",
            "4K",
            "--peers",
            "--json",
            "--time=0.5",
            "--no-roofline",
        ])
        .unwrap();
        assert_eq!(o.devices, vec!["cpu:0".to_string()]);
        assert_eq!(o.ops, vec![BenchOp::Add, BenchOp::Sum]);
        assert_eq!(o.size, Some(4096));
        assert!(o.peers && o.json && o.no_roofline);
        assert_eq!(o.time_s, 0.5);
        let all = parsed(&[]).unwrap();
        assert_eq!(all.ops, BenchOp::ALL.to_vec());
        assert!(!all.no_roofline && !all.peers);
        for bad in [
            &["--op", "matmull"][..],
            &["--size", "0"],
            &["--size", "-3"],
            &["--size", "12Q"],
            &["--time", "0"],
            &["--time", "nan"],
            &["--json=yes"],
            &["--no-roofline=1"],
            &["extra"],
        ] {
            match parsed(bad) {
                Err(e) => assert_eq!(e.exit_code(), 2, "{bad:?}: {e}"),
                Ok(o) => panic!("{bad:?}: expected a usage error, got {o:?}"),
            }
        }
        let e = parsed(&["--op", "matmull"]).unwrap_err().to_string();
        assert!(e.contains("`matmull`") && e.contains("softmax"), "{e}");
    }

    #[test]
    fn sizes_follow_the_op_and_the_override() {
        assert_eq!(BenchOp::Matmul.sizes(None), vec![256, 1024, 2048]);
        assert_eq!(BenchOp::Add.sizes(None), vec![16 << 20]);
        assert_eq!(BenchOp::Matmul.sizes(Some(64)), vec![64]);
        assert_eq!(BenchOp::Dispatch.sizes(Some(64)), vec![1]);
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("7"), Some(7));
        assert_eq!(parse_size("M"), None);
    }

    #[test]
    fn quantiles_of_sorted_samples() {
        let s = Samples::new(vec![5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(s.median(), 3.0);
        assert_eq!((s.min(), s.max()), (1.0, 5.0));
        assert_eq!(s.quantile(0.1), 1.0);
        assert_eq!(s.quantile(0.9), 5.0);
        let even = Samples::new(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(even.median(), 2.5);
        assert!(Samples::new(Vec::new()).median().is_nan());
    }

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
