//! `cuda_bench`: the CUDA backend against what a user would call instead, on one NVIDIA GPU,
//! in the same process, on the same buffers and the same stream.
//!
//! ```text
//! cargo run --release -p anyaccel-cuda --example cuda_bench -- [--device cuda:0] [--time S] [--json FILE]
//! ```
//!
//! - **Copy bandwidth** (the roofline of elementwise ops): `cuMemcpyDtoDAsync` of a large
//!   buffer called directly, and the same copy through `Queue::copy`. GB/s count bytes read plus
//!   bytes written.
//! - **Matmul** (f32, f16, bf16; square n x n x n): `anyaccel_ops::matmul_into`, which runs
//!   through the device's cuBLAS, against `cublasGemmEx` called directly with the same compute
//!   type (`CUBLAS_COMPUTE_32F`). Target: at least 0.95x cuBLAS's rate.
//! - **Elementwise** (`add` in f32 and f16, `relu` in f32): the op layer's portable CUDA kernels
//!   against the copy bandwidth. Target: at least 80% of it.
//!
//! Times come from CUDA events around a batch of repetitions (after a warm-up), taken in
//! several rounds that alternate between the two sides; the median round counts. Every result
//! is checked against the host after timing. Exit status: 0 when everything ran (whether or
//! not the targets were met; the report says), 1 when something failed or computed a wrong
//! result, 2 for bad usage or no CUDA device.

use std::ffi::c_void;
use std::process::ExitCode;
use std::sync::Arc;

use anyaccel_cuda::{CudaBackend, CudaDevice, CudaMemory, CudaQueue};
use anyaccel_hal::{bf16, f16, Backend, DType, Device, Error, Queue, Result, Tensor};
use cudarc::cublas::sys as cublas;
use cudarc::driver::sys as cu;

const USAGE: &str = "usage: cuda_bench [--device cuda:N] [--time SECONDS] [--json FILE]";

/// Rounds per figure; each side runs once per round.
const ROUNDS: usize = 7;

struct Options {
    device: String,
    time: f64,
    json: Option<String>,
}

fn options() -> std::result::Result<Options, String> {
    let mut o = Options {
        device: "cuda:0".into(),
        time: 1.0,
        json: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--device" => o.device = value("--device")?,
            "--time" => {
                o.time = value("--time")?
                    .parse()
                    .map_err(|_| "--time takes seconds, e.g. 0.5".to_string())?
            }
            "--json" => o.json = Some(value("--json")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("cuda_bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let devices = match CudaBackend.probe() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("cuda_bench: CUDA is unavailable: {}", why.reason);
            return ExitCode::from(2);
        }
    };
    let Some(device) = devices.into_iter().find(|d| d.info().id == o.device) else {
        eprintln!("cuda_bench: no device {}", o.device);
        return ExitCode::from(2);
    };
    match run(&device, &o) {
        Ok(report) => {
            println!("{}", report.markdown());
            if let Some(path) = &o.json {
                if let Err(e) = std::fs::write(path, report.json()) {
                    eprintln!("cuda_bench: cannot write {path}: {e}");
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cuda_bench: {e}");
            ExitCode::from(1)
        }
    }
}

/// One figure: ours and the peer's median seconds per run, and the rate unit's amount of work.
struct Figure {
    what: String,
    ours_s: f64,
    peer: Option<(String, f64)>,
    /// GFLOP or GB moved per run.
    work: f64,
    unit: &'static str,
    /// The rate that the target compares with, and the share required.
    target: Option<(String, f64, f64)>,
}

impl Figure {
    fn rate(&self) -> f64 {
        self.work / self.ours_s
    }

    /// The share of the target reached, and whether it is met.
    fn target_share(&self) -> Option<(f64, bool)> {
        let (_, against, need) = self.target.as_ref()?;
        let share = self.rate() / against;
        Some((share, share >= *need))
    }
}

struct Report {
    device: String,
    figures: Vec<Figure>,
}

impl Report {
    fn markdown(&self) -> String {
        let mut s = format!(
            "# CUDA benchmarks on {}\n\n| figure | ours | rate | peer | peer rate | target | share | met |\n|---|---|---|---|---|---|---|---|\n",
            self.device
        );
        for f in &self.figures {
            let (peer, peer_rate) = match &f.peer {
                Some((name, t)) => (name.clone(), format!("{:.1} {}", f.work / t, f.unit)),
                None => ("-".into(), "-".into()),
            };
            let (target, share, met) = match (&f.target, f.target_share()) {
                (Some((what, _, need)), Some((share, met))) => (
                    format!(">= {:.0}% of {what}", need * 100.0),
                    format!("{:.1}%", share * 100.0),
                    if met { "yes" } else { "NO" }.to_string(),
                ),
                _ => ("-".into(), "-".into(), "-".into()),
            };
            s.push_str(&format!(
                "| {} | {:.3} ms | {:.1} {} | {peer} | {peer_rate} | {target} | {share} | {met} |\n",
                f.what,
                f.ours_s * 1e3,
                f.rate(),
                f.unit
            ));
        }
        s
    }

    fn json(&self) -> String {
        let figures: Vec<serde_json::Value> = self
            .figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "figure": f.what,
                    "median_s": f.ours_s,
                    "rate": f.rate(),
                    "unit": f.unit,
                    "peer": f.peer.as_ref().map(|p| &p.0),
                    "peer_median_s": f.peer.as_ref().map(|p| p.1),
                    "target": f.target.as_ref().map(|t| format!(">= {} x {}", t.2, t.0)),
                    "target_share": f.target_share().map(|t| t.0),
                    "target_met": f.target_share().map(|t| t.1),
                })
            })
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "device": self.device,
            "figures": figures,
        }))
        .unwrap_or_default()
    }
}

/// Seconds per call of `f`: `reps` calls between two events, in each of [`ROUNDS`] rounds
/// alternating with `g` (when given); the medians of both. The first call of each is a warm-up.
fn timed(
    q: &dyn Queue,
    budget: f64,
    f: &mut dyn FnMut() -> Result<()>,
    mut g: Option<&mut dyn FnMut() -> Result<()>>,
) -> Result<(f64, Option<f64>)> {
    f()?;
    if let Some(g) = g.as_mut() {
        g()?;
    }
    q.finish()?;
    let once = |f: &mut dyn FnMut() -> Result<()>, reps: usize| -> Result<f64> {
        let start = q.record_event()?;
        for _ in 0..reps {
            f()?;
        }
        let end = q.record_event()?;
        end.wait()?;
        Ok(end.elapsed_since(&*start)?.as_secs_f64() / reps as f64)
    };
    let one = once(f, 1)?.max(1e-7);
    let reps = ((budget / ROUNDS as f64 / one) as usize).clamp(1, 1000);
    let (mut ours, mut peers) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(once(f, reps)?);
        if let Some(g) = g.as_mut() {
            peers.push(once(*g, reps)?);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    Ok((median(ours), (!peers.is_empty()).then(|| median(peers))))
}

fn ptr(t: &Tensor) -> Result<u64> {
    let memory = t
        .view()
        .buffer()
        .downcast::<CudaMemory>()
        .ok_or_else(|| Error::internal("not CUDA memory"))?;
    Ok(memory.device_ptr() + t.view().offset() as u64)
}

fn cu_check(r: cu::CUresult, what: &str) -> Result<()> {
    if r == cu::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(Error::launch_failed(format!("{what}: {r:?}")))
    }
}

fn run(device: &Arc<dyn Device>, o: &Options) -> Result<Report> {
    let cuda = device
        .as_any()
        .downcast_ref::<CudaDevice>()
        .ok_or_else(|| Error::internal("not a CUDA device"))?;
    let q = device.create_queue()?;
    let stream = q
        .as_any()
        .downcast_ref::<CudaQueue>()
        .ok_or_else(|| Error::internal("not a CUDA queue"))?
        .raw_stream();
    let info = device.info();
    eprintln!(
        "{}: {} ({}), {:.1} GiB; {}; {}",
        info.id,
        info.name,
        info.driver_version,
        info.memory_bytes as f64 / (1u64 << 30) as f64,
        cuda.nvrtc_status().unwrap_or_else(|e| e),
        cuda.blas_status()
    );
    let mut figures = Vec::new();

    // Copy bandwidth: a quarter of the memory at most, 1 GiB at most, per buffer.
    let bytes = (info.memory_bytes as usize / 8).min(1 << 30) & !0xfff;
    let src = device.alloc(bytes)?;
    let dst = device.alloc(bytes)?;
    q.fill(&src.whole(), &[0x5a])?;
    let (sp, dp) = (
        src.downcast::<CudaMemory>()
            .map(|m| m.device_ptr())
            .unwrap_or(0),
        dst.downcast::<CudaMemory>()
            .map(|m| m.device_ptr())
            .unwrap_or(0),
    );
    let mut direct = || {
        cuda.make_current()?;
        // SAFETY: both allocations are live, of this context, `bytes` long and disjoint; the
        // stream is the queue's own; the driver was loaded and its symbols checked by the probe.
        cu_check(
            unsafe { cu::cuMemcpyDtoDAsync_v2(dp, sp, bytes, stream) },
            "cuMemcpyDtoDAsync",
        )
    };
    let mut ours = || q.copy(&src.whole(), &dst.whole());
    let (t_ours, t_direct) = timed(&*q, o.time, &mut ours, Some(&mut direct))?;
    let t_direct = t_direct.unwrap_or(t_ours);
    let copy_gbps = 2.0 * bytes as f64 / 1e9 / t_direct.min(t_ours);
    figures.push(Figure {
        what: format!("copy {} MiB (Queue::copy)", bytes >> 20),
        ours_s: t_ours,
        peer: Some(("cuMemcpyDtoDAsync".into(), t_direct)),
        work: 2.0 * bytes as f64 / 1e9,
        unit: "GB/s",
        target: None,
    });
    drop((src, dst));

    // Matmul through cuBLAS, against cublasGemmEx called directly.
    let native_matmul = cuda.caps().native_ops.iter().any(|op| op == "matmul");
    // SAFETY: the device opened cuBLAS (native matmul is offered only then), so culib returns
    // the library instead of panicking; this only looks the symbol up.
    let gemm_ex =
        native_matmul && unsafe { cublas::culib().get::<*const c_void>(b"cublasGemmEx") }.is_ok();
    if !gemm_ex {
        eprintln!("matmul skipped: {}", cuda.blas_status());
    }
    let mut handle: cublas::cublasHandle_t = std::ptr::null_mut();
    if gemm_ex {
        cuda.make_current()?;
        // SAFETY: cuBLAS is loaded with its symbols checked; the context is current.
        let s = unsafe { cublas::cublasCreate_v2(&mut handle) };
        if s != cublas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(Error::launch_failed(format!("cublasCreate: {s:?}")));
        }
        // SAFETY: a live handle and the queue's live stream of the same context.
        unsafe { cublas::cublasSetStream_v2(handle, stream as cublas::cudaStream_t) };
    }
    for (dtype, cdt) in [
        (DType::F32, cublas::cudaDataType::CUDA_R_32F),
        (DType::F16, cublas::cudaDataType::CUDA_R_16F),
        (DType::BF16, cublas::cudaDataType::CUDA_R_16BF),
    ] {
        if !gemm_ex {
            break;
        }
        if dtype == DType::BF16 && cuda.compute_capability().major < 8 {
            eprintln!(
                "matmul bf16 skipped: cuBLAS runs bf16 for anyaccel from compute capability 8.0"
            );
            continue;
        }
        for n in [1024usize, 2048, 4096] {
            let a = random(&*q, dtype, n * n, 1)?;
            let b = random(&*q, dtype, n * n, 2)?;
            let (a, b) = (a.reshape(&[n, n])?, b.reshape(&[n, n])?);
            let c = Tensor::empty(&**device, dtype, &[n, n])?;
            let c2 = Tensor::empty(&**device, dtype, &[n, n])?;
            let (pa, pb, pc) = (ptr(&a)?, ptr(&b)?, ptr(&c2)?);
            let mut ours = || anyaccel_ops::matmul_into(&*q, &a, &b, None, &c);
            let (alpha, beta) = (1.0f32, 0.0f32);
            let ni = n as i32;
            let mut direct = || {
                cuda.make_current()?;
                // SAFETY: row-major C = A B as column-major Cᵀ = Bᵀ Aᵀ; all three are live
                // n x n allocations of this context; the scalars are f32 for COMPUTE_32F.
                let s = unsafe {
                    cublas::cublasGemmEx(
                        handle,
                        cublas::cublasOperation_t::CUBLAS_OP_N,
                        cublas::cublasOperation_t::CUBLAS_OP_N,
                        ni,
                        ni,
                        ni,
                        (&alpha as *const f32).cast(),
                        pb as *const c_void,
                        cdt,
                        ni,
                        pa as *const c_void,
                        cdt,
                        ni,
                        (&beta as *const f32).cast(),
                        pc as *mut c_void,
                        cdt,
                        ni,
                        cublas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        cublas::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
                    )
                };
                if s == cublas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                    Ok(())
                } else {
                    Err(Error::launch_failed(format!("cublasGemmEx: {s:?}")))
                }
            };
            let (t_ours, t_direct) = timed(&*q, o.time, &mut ours, Some(&mut direct))?;
            check_matmul(&*q, &a, &b, &c, n)?;
            check_matmul(&*q, &a, &b, &c2, n)?;
            let t_direct = t_direct.unwrap_or(t_ours);
            figures.push(Figure {
                what: format!("matmul {dtype} {n}x{n}x{n}"),
                ours_s: t_ours,
                peer: Some(("cublasGemmEx".into(), t_direct)),
                work: 2.0 * (n as f64).powi(3) / 1e9,
                unit: "GFLOP/s",
                target: Some((
                    "cublasGemmEx".into(),
                    2.0 * (n as f64).powi(3) / 1e9 / t_direct,
                    0.95,
                )),
            });
        }
    }
    if !handle.is_null() {
        q.finish()?;
        // SAFETY: a live handle, destroyed once, after the queue's work.
        unsafe { cublas::cublasDestroy_v2(handle) };
    }

    // Elementwise: the portable kernels against the copy bandwidth.
    let n = (info.memory_bytes as usize / 32).min(64 << 20);
    for (op, dtype) in [
        ("add", DType::F32),
        ("add", DType::F16),
        ("relu", DType::F32),
    ] {
        let size = dtype.size_in_bytes();
        let x = random(&*q, dtype, n, 3)?;
        let y = random(&*q, dtype, n, 4)?;
        let out = Tensor::empty(&**device, dtype, &[n])?;
        let (mut run_op, bytes): (Box<dyn FnMut() -> Result<()>>, usize) = if op == "add" {
            (
                Box::new(|| anyaccel_ops::add_into(&*q, &x, &y, &out)),
                3 * size * n,
            )
        } else {
            (
                Box::new(|| anyaccel_ops::relu_into(&*q, &x, &out)),
                2 * size * n,
            )
        };
        let t = match timed(&*q, o.time, &mut *run_op, None) {
            Ok((t, _)) => t,
            Err(e) => {
                eprintln!("{op} {dtype} skipped: {e}");
                continue;
            }
        };
        drop(run_op);
        check_elementwise(&*q, op, &x, &y, &out)?;
        figures.push(Figure {
            what: format!("{op} {dtype} over {}M elements", n >> 20),
            ours_s: t,
            peer: None,
            work: bytes as f64 / 1e9,
            unit: "GB/s",
            target: Some(("the copy bandwidth".into(), copy_gbps, 0.80)),
        });
    }
    Ok(Report {
        device: format!("{} ({})", info.id, info.name),
        figures,
    })
}

/// `len` values in [-1, 1] of `dtype`, deterministic in `seed`.
fn random(q: &dyn Queue, dtype: DType, len: usize, seed: u64) -> Result<Tensor> {
    let value = |i: usize| {
        let x = (i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(seed.wrapping_mul(1442695040888963407));
        ((x >> 40) % 2001) as f32 / 1000.0 - 1.0
    };
    match dtype {
        DType::F16 => {
            let v: Vec<f16> = (0..len).map(|i| f16::from_f32(value(i))).collect();
            Tensor::from_slice(q, &v, &[len])
        }
        DType::BF16 => {
            let v: Vec<bf16> = (0..len).map(|i| bf16::from_f32(value(i))).collect();
            Tensor::from_slice(q, &v, &[len])
        }
        _ => {
            let v: Vec<f32> = (0..len).map(value).collect();
            Tensor::from_slice(q, &v, &[len])
        }
    }
}

fn host(q: &dyn Queue, t: &Tensor) -> Result<Vec<f64>> {
    Ok(match t.dtype() {
        DType::F16 => t.to_vec::<f16>(q)?.iter().map(|x| x.to_f64()).collect(),
        DType::BF16 => t.to_vec::<bf16>(q)?.iter().map(|x| x.to_f64()).collect(),
        _ => t.to_vec::<f32>(q)?.iter().map(|&x| x as f64).collect(),
    })
}

fn tolerance(dtype: DType, accumulating: bool) -> (f64, f64) {
    match (dtype, accumulating) {
        (DType::F16, false) => (1e-3, 1e-3),
        (DType::F16, true) => (1e-2, 1e-2),
        (DType::BF16, false) => (1e-3, 1.6e-2),
        (DType::BF16, true) => (3e-2, 3e-2),
        (_, false) => (1e-5, 1e-5),
        (_, true) => (1e-4, 1e-4),
    }
}

/// Checks 256 elements of `c = a @ b` against the host in f64.
fn check_matmul(q: &dyn Queue, a: &Tensor, b: &Tensor, c: &Tensor, n: usize) -> Result<()> {
    let (ha, hb, hc) = (host(q, a)?, host(q, b)?, host(q, c)?);
    let (atol, rtol) = tolerance(a.dtype(), true);
    for s in 0..256usize {
        let (i, j) = ((s * 7919) % n, (s * 104729) % n);
        let want: f64 = (0..n).map(|l| ha[i * n + l] * hb[l * n + j]).sum();
        let got = hc[i * n + j];
        // k = n terms: the tolerance grows with the length of the dot product.
        let scale = (n as f64 / 64.0).sqrt().max(1.0);
        if (got - want).abs() > scale * (atol + rtol * want.abs()) {
            return Err(Error::internal(format!(
                "matmul {} {n}: element [{i}, {j}] is {got}, expected {want}",
                a.dtype()
            )));
        }
    }
    Ok(())
}

fn check_elementwise(q: &dyn Queue, op: &str, x: &Tensor, y: &Tensor, out: &Tensor) -> Result<()> {
    let (hx, hy, ho) = (host(q, x)?, host(q, y)?, host(q, out)?);
    let (atol, rtol) = tolerance(x.dtype(), false);
    for i in 0..ho.len() {
        let want = if op == "add" {
            hx[i] + hy[i]
        } else {
            hx[i].max(0.0)
        };
        if (ho[i] - want).abs() > atol + rtol * want.abs() {
            return Err(Error::internal(format!(
                "{op} {}: element {i} is {}, expected {want}",
                x.dtype(),
                ho[i]
            )));
        }
    }
    Ok(())
}
