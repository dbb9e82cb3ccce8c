//! The per-op benches: matmul, add, softmax and sum at one size, and the dispatch and launch
//! latencies, each result checked against the host after timing.

use anyaccel::hal::{AttrValue, KernelArg, LaunchDims, Tensor};

#[cfg(feature = "opencl")]
use super::clblast;
use super::measure::{
    check_failed, guarded, measure, measure_with, new_entry, record, record_peer, sample_indices,
    values, Ctx, PeerRun,
};
use super::options::BenchOp;
use super::ort::OrtPeer;
use super::peers::{self, OpenBlas};
use super::report::OpBench;
use super::stats::{time_on_host, time_on_queue, BenchResult, Clock, Samples};
use super::tiny;
use super::{LATENCY_ROUNDS, MAX_DISPATCH_REPS};

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

pub(super) fn bench_matmul(ctx: &Ctx, n: usize) -> OpBench {
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

pub(super) fn bench_add(ctx: &Ctx, n: usize) -> OpBench {
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

pub(super) fn bench_sum(ctx: &Ctx, n: usize) -> OpBench {
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
        let bytes: Vec<u8> = hx.iter().flat_map(|f| f.to_le_bytes()).collect();
        let mut peer = super::rowops::ort_peer(ctx, BenchOp::Sum, 1, n, &[("x.f32", bytes)]);
        let ours = || anyaccel::ops::call_into(q, "sum", &[Some(&x)], &[&y], &attrs);
        let (s, peer_result) = super::ort::measure_beside(ctx, ours, &mut peer)?;
        let rate = Some(4.0 * n as f64);
        record(entry, &s, ctx.clock, None, rate);
        let all = y.to_vec::<f32>(q)?;
        super::ort::record_beside(entry, "sum", peer.as_mut(), peer_result, &all, None, rate);
        let got = all.first().copied().unwrap_or(f32::NAN) as f64;
        let exact: f64 = hx.iter().map(|&v| v as f64).sum();
        let scale: f64 = hx.iter().map(|&v| (v as f64).abs()).sum();
        if got.is_nan() || (got - exact).abs() > 1e-4 + 1e-5 * scale {
            return Err(check_failed("sum", format!("{got}, expected {exact}")));
        }
        Ok(())
    })
}

/// Checks the tiny kernel's (or the one-element add's) result `c`: `A + B`.
fn check_tiny(ctx: &Ctx, entry: &OpBench, c: &Tensor) -> BenchResult<()> {
    let got = c.to_vec::<f32>(&*ctx.queue)?;
    if got != [tiny::C] {
        return Err(check_failed(
            &entry.op,
            format!("{got:?}, expected [{}]", tiny::C),
        ));
    }
    Ok(())
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
    check_tiny(ctx, entry, c)?;
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

pub(super) fn bench_dispatch(ctx: &Ctx) -> OpBench {
    let mut entry = new_entry(BenchOp::Dispatch, "1".to_string(), Clock::Host);
    ctx.note("dispatch latency (one-element add through the op layer)");
    entry = guarded(entry, |entry| {
        let a = ctx.tensor(&[tiny::A], &[1])?;
        let b = ctx.tensor(&[tiny::B], &[1])?;
        let c = ctx.empty(&[1])?;
        let q = &*ctx.queue;
        if ctx.peers_requested && ctx.device.info().backend == "cpu" {
            return dispatch_against_ort(ctx, entry, || anyaccel::ops::add_into(q, &a, &b, &c), &c);
        }
        latency(ctx, entry, || anyaccel::ops::add_into(q, &a, &b, &c), &c)
    });
    entry
}

/// The peer of the CPU's dispatch latency: onnxruntime's one-element Add through
/// `run_with_iobinding` (`scripts/ort-add-peer.py`), timed by the peer per run and measured in
/// blocks that alternate with ours, as many runs a block as ours took.
fn dispatch_against_ort(
    ctx: &Ctx,
    entry: &mut OpBench,
    mut ours: impl FnMut() -> BenchResult<()>,
    c: &Tensor,
) -> BenchResult<()> {
    const SCRIPT: &str = include_str!("../../../../scripts/ort-add-peer.py");
    let block = ctx
        .budget
        .with_max_reps(MAX_DISPATCH_REPS)
        .scaled(1.0 / LATENCY_ROUNDS as f64);
    let mut peer = OrtPeer::start(SCRIPT, &[], &[tiny::A.to_string(), tiny::B.to_string()]);
    let mut mine = Samples::new(Vec::new());
    let mut theirs = Ok(Samples::new(Vec::new()));
    for _ in 0..LATENCY_ROUNDS {
        let s = time_on_queue(&*ctx.queue, Clock::Host, block, &mut ours)?;
        let reps = s.len();
        mine.extend(s);
        if let (Ok(p), Ok(t)) = (&mut peer, &mut theirs) {
            let times = p.line(&format!("time {reps}")).and_then(|line| {
                line.split_whitespace()
                    .map(|v| v.parse::<f64>().map(|ns| ns * 1e-9))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("onnxruntime peer: {e} in `{line}`"))
            });
            match times {
                Ok(v) if v.len() == reps => t.extend(Samples::new(v)),
                Ok(v) => {
                    theirs = Err(format!(
                        "onnxruntime peer: {} times, expected {reps}",
                        v.len()
                    ))
                }
                Err(e) => theirs = Err(e),
            }
        }
    }
    record(entry, &mine, Clock::Host, None, None);
    check_tiny(ctx, entry, c)?;
    let (name, result) = match peer {
        Ok(mut p) => {
            let name = format!("{} Add (run_with_iobinding)", p.version);
            let checked = theirs.and_then(|t| match p.line("value")?.parse::<f32>() {
                Ok(v) if v == tiny::C => Ok(t),
                other => Err(format!(
                    "onnxruntime computed {other:?}, expected {}",
                    tiny::C
                )),
            });
            (name, checked)
        }
        Err(e) => ("onnxruntime Add".to_string(), Err(e)),
    };
    record_peer(entry, &name, result, None, None);
    Ok(())
}

pub(super) fn bench_launch(ctx: &Ctx) -> OpBench {
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
