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

mod backward;
#[cfg(feature = "opencl")]
mod clblast;
mod conv;
mod graph;
mod half;
mod measure;
mod ops;
mod options;
mod ort;
mod peers;
mod quant;
mod raw;
#[cfg(feature = "cuda")]
mod raw_cuda;
#[cfg(feature = "opencl")]
mod raw_opencl;
#[cfg(feature = "vulkan")]
mod raw_vulkan;
mod report;
mod roofline;
mod rowops;
mod stats;
mod tiny;

use std::cell::RefCell;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyaccel::hal::Device;

use super::args::{print, CliError};
use measure::{Ctx, HostPeers};
use ops::{bench_add, bench_dispatch, bench_launch, bench_matmul, bench_sum};
pub use options::BenchArgs;
use options::{BenchOp, Options};
use peers::OpenBlas;
use raw::RawPeer;
use report::{BenchReport, DeviceBench, Roofline};
use roofline::roofline;
use stats::{BenchResult, Budget, Clock};

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
  softmax, log_softmax
            over the last axis of rows x cols, n = rows x cols, default 4096 x 4096 (GB/s: 2 x 4n)
  sum       of n elements to a scalar, default 16M (GB/s: 4n)
  layer_norm, rms_norm
            over the last axis of rows x cols with weight (and bias), eps 1e-5, as softmax
  exp, tanh, sigmoid, silu, gelu, gelu_tanh
            elementwise over rows x cols, as softmax (gelu: the erf form; gelu_tanh: the tanh
            form)
  transpose copy of a rows x cols tensor's transposed view into a contiguous cols x rows one
  attention, attention_causal
            q, k, v of 1 x 8 x 512 x 64, without and with causal masking (GFLOP/s: the two
            products, 4 x 8 x 512^2 x 64 / time, the causal one counted in full)
            sum and softmax to attention_causal: with --peers on the CPU side by side with
            onnxruntime's CPU kernel of the op (ReduceSum, Softmax, LogSoftmax,
            LayerNormalization, SimplifiedLayerNormalization, Exp, Tanh, Sigmoid, x * Sigmoid(x),
            Gelu, Transpose, Attention of opset 23; scripts/ort-op-peer.py, inputs and output
            bound once)
  gelu_backward, silu_backward
            dx from the gradient and x over n elements, default 16M (GB/s: 3 x 4n), measured
            in alternating blocks with the forward op of the same shape (the peer column: the
            ratio is backward / forward time)
  softmax_backward
            dx from the gradient and y = softmax(x) over the last axis, default 4096 x 4096,
            alternating with softmax of the same shape
  the other gradients, each at one fixed shape (the entry names it), alternating with its
            forward op on the same inputs, the first output checked against the reference:
            conv1d_backward_input, conv1d_backward_weight, conv2d_backward_input,
            conv2d_backward_weight, max_pool1d_backward, max_pool2d_backward,
            avg_pool1d_backward, avg_pool2d_backward, adaptive_avg_pool2d_backward,
            adaptive_avg_pool3d_backward, interpolate_backward (bilinear),
            interpolate_backward_nearest, layer_norm_backward, rms_norm_backward,
            group_norm_backward, batch_norm_backward (training), cross_entropy_backward,
            log_softmax_backward, embedding_backward, attention_backward, relu_backward,
            leaky_relu_backward, elu_backward, sigmoid_backward, tanh_backward,
            softplus_backward
  softmax_f16, log_softmax_f16, layer_norm_f16, rms_norm_f16, exp_f16, tanh_f16, sigmoid_f16,
  silu_f16, gelu_f16 and the same with _bf16
            the op in f16 or bf16 over rows x cols as the f32 row ops, alternating with the
            same op in f32 on the same values (the peer column: the ratio is f32 / 16-bit time
            for the same element count)
  conv2d    ResNet-50 layers, batch 8: 3x3 and 1x1 layers and a 3x3 layer with stride 2
            (GFLOP/s: 2 N O OH OW C KH KW / time); with --peers on the CPU side by side with
            onnxruntime's CPU Conv (python3 with the onnxruntime and onnx packages)
  matmul_i8 i8 x i8 to i32, 1024 x 1024 x 1024 (GFLOP/s counts 2 ops a product), alternating
            with f32 matmul of the same shape
  matmul_wq_int8, matmul_wq_int4
            weight-only quantized matmul at batch 1: x 1 x 4096 against int8 or packed int4
            weights 4096 x 4096 in groups of 128, alternating with f32 matmul of the same shape
  dispatch  latency of a one-element add through the op layer, submission to completion, host
            clock; with --peers on the CPU side by side with onnxruntime's one-element Add
            through run_with_iobinding (scripts/ort-add-peer.py, timed by the peer)
  launch    latency of a tiny kernel (one-element add in the device's own dialect: OpenCL C,
            WGSL or CUDA C) compiled with Device::compile and run with Queue::launch, submission
            to completion, host clock
  graph     a recorded graph (anyaccel::ops::Graph) of 100 elementwise ops over 1024 elements
            (--size) replayed to completion, side by side with the same 100 calls made eagerly;
            the replay's result checked bit for bit against the eager one
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
                BenchOp::Sum => bench_sum(&ctx, n),
                BenchOp::Softmax
                | BenchOp::LogSoftmax
                | BenchOp::LayerNorm
                | BenchOp::RmsNorm
                | BenchOp::Exp
                | BenchOp::Tanh
                | BenchOp::Sigmoid
                | BenchOp::Silu
                | BenchOp::Gelu
                | BenchOp::GeluTanh
                | BenchOp::Transpose
                | BenchOp::Attention
                | BenchOp::AttentionCausal => rowops::bench_row_op(&ctx, *op, n),
                BenchOp::GeluBackward | BenchOp::SiluBackward | BenchOp::SoftmaxBackward => {
                    backward::bench_backward(&ctx, *op, n)
                }
                BenchOp::Grad(_) => backward::bench_grad(&ctx, *op),
                BenchOp::Half(_) => half::bench_half(&ctx, *op, n),
                BenchOp::Conv2d => conv::bench_conv(&ctx, n),
                BenchOp::MatmulI8 | BenchOp::MatmulWqInt8 | BenchOp::MatmulWqInt4 => {
                    quant::bench_quant(&ctx, *op)
                }
                BenchOp::Dispatch => bench_dispatch(&ctx),
                BenchOp::Launch => bench_launch(&ctx),
                BenchOp::Graph => graph::bench_graph(&ctx, n),
            };
            let roof = match op {
                BenchOp::Matmul
                | BenchOp::Conv2d
                | BenchOp::MatmulI8
                | BenchOp::Attention
                | BenchOp::AttentionCausal => report.roofline.gflops.zip(entry.gflops),
                _ => report.roofline.gbps.zip(entry.gbps),
            };
            entry.share_of_roofline = roof.map(|(roof, rate)| rate / roof);
            report.ops.push(entry);
        }
    }
    Ok(report)
}

/// Runs `anyaccel bench`.
pub fn run(args: &BenchArgs) -> Result<ExitCode, CliError> {
    let o = args.options();
    let rt = anyaccel::Runtime::new();
    let devices = super::args::chosen_devices(&rt, &o.devices, "bench")?;
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
