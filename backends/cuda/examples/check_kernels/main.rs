//! `check_kernels`: compiles every CUDA C kernel that the op layer generates, with NVRTC for each
//! target architecture, and assembles the PTX with `ptxas` for the same targets; or, with
//! `--hipcc`, compiles the same CUDA C with a HIP compiler for AMD targets, the route of a chip
//! whose compiler is CUDA-compatible. No GPU needed.
//!
//! ```text
//! LD_LIBRARY_PATH=<nvidia/cuda_nvrtc/lib> cargo run -p anyaccel-cuda --example check_kernels -- \
//!     [--arch 70,80,90] [--ptxas PATH] [--jobs N] [--filter TEXT] [--list]
//! cargo run -p anyaccel-cuda --example check_kernels -- --hipcc hipcc \
//!     [--offload-arch gfx90a,gfx1030] [--every] [--jobs N] [--filter TEXT] [--list]
//! ```
//!
//! With `--hipcc`, each kernel entry point is compiled in its first specialisation for each of
//! its dtypes (every op family, every entry point, every dtype branch, under the prelude's HIP
//! branch), because hipcc takes about half a second a kernel; `--every` compiles every
//! specialisation, as the NVRTC route does.
//!
//! Which kernels: every op case of the conformance suite (every op x dtype x shape and layout
//! class, the large cases aside) is run through the op layer on a device that records the
//! kernels it is asked to compile ([`recorder`]); so the set is exactly the kernels and
//! specialisations that conformance makes a CUDA device compile. Each distinct (program, entry,
//! options) is compiled once per architecture.
//!
//! With `--cache FILE`, the kernels that passed are remembered by a hash of everything that
//! decides the result (program, entry, options, target, NVRTC's version, ptxas's version), and
//! a later run compiles only what changed.
//!
//! Prints how many kernels passed; on any error, prints each failure with the compiler's log and
//! exits 1. `scripts/check-cuda-kernels` installs NVRTC and ptxas from PyPI and runs this.

mod recorder;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyaccel_conformance::cases::CaseBody;
use anyaccel_conformance::exec::{run_case, Verdict};
use anyaccel_cuda::nvrtc::{self, Arch};
use anyaccel_hal::Device;

use recorder::{Recorded, Recorder};

/// What a kernel is compiled for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// NVRTC (and ptxas, when given) for an NVIDIA architecture.
    Cuda(Arch),
    /// hipcc for an AMD GPU architecture (`gfx90a`).
    Hip(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Cuda(a) => a.fmt(f),
            Target::Hip(g) => f.write_str(g),
        }
    }
}

struct Options {
    archs: Vec<Arch>,
    ptxas: Option<PathBuf>,
    hipcc: Option<PathBuf>,
    offload_archs: Vec<String>,
    every: bool,
    cache: Option<PathBuf>,
    jobs: usize,
    filter: Option<String>,
    list: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        archs: vec![Arch::new(7, 0), Arch::new(8, 0), Arch::new(9, 0)],
        ptxas: None,
        hipcc: None,
        offload_archs: vec!["gfx90a".into(), "gfx1030".into()],
        every: false,
        cache: None,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        filter: None,
        list: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--arch" => {
                o.archs = value("--arch")?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .trim_start_matches("sm_")
                            .parse::<u32>()
                            .map(Arch::from_number)
                            .map_err(|_| format!("--arch: `{s}` is not an architecture like 80"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--ptxas" => o.ptxas = Some(PathBuf::from(value("--ptxas")?)),
            "--hipcc" => o.hipcc = Some(PathBuf::from(value("--hipcc")?)),
            "--offload-arch" => {
                o.offload_archs = value("--offload-arch")?
                    .split(',')
                    .map(|s| s.trim())
                    .map(|s| {
                        let ok = s.starts_with("gfx")
                            && s.len() > 3
                            && s.bytes().all(|b| b.is_ascii_alphanumeric());
                        ok.then(|| s.to_string()).ok_or_else(|| {
                            format!("--offload-arch: `{s}` is not an AMD target like gfx90a")
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            "--every" => o.every = true,
            "--cache" => o.cache = Some(PathBuf::from(value("--cache")?)),
            "--jobs" => {
                o.jobs = value("--jobs")?
                    .parse()
                    .map_err(|_| "--jobs takes a number".to_string())?
            }
            "--filter" => o.filter = Some(value("--filter")?),
            "--list" => o.list = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    o.jobs = o.jobs.max(1);
    if o.hipcc.is_some() && o.ptxas.is_some() {
        return Err("--hipcc and --ptxas choose different compilers: give one".into());
    }
    Ok(o)
}

/// A kernel's name in reports: the entry and its options.
fn describe(k: &Recorded) -> String {
    format!("{} {}", k.entry, k.options.join(" "))
}

/// Every CUDA kernel that the op layer generates for the conformance suite's op cases; the
/// number of cases; and, per op, the op layer's reason for a case it does not run in CUDA C.
fn generated_kernels() -> (Vec<Recorded>, usize, BTreeMap<String, (usize, String)>) {
    let recorder = Recorder::new();
    let device: Arc<dyn Device> = recorder.clone();
    let mut cases = 0;
    let mut unsupported: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for case in anyaccel_conformance::all_cases() {
        if case.large || !matches!(case.body, CaseBody::Op(_)) {
            continue;
        }
        cases += 1;
        // Outputs are never written here, so cases fail their checks; a case skipped as
        // unsupported is one the op layer has no CUDA C kernel for.
        let outcome = run_case(&device, &case, 1);
        if outcome.verdict == Verdict::Skipped {
            let entry = unsupported
                .entry(case.op.unwrap_or("?").to_string())
                .or_insert((0, outcome.reason.unwrap_or_default()));
            entry.0 += 1;
        }
    }
    (recorder.kernels(), cases, unsupported)
}

/// The options of `k` that choose dtypes: `-DXT=f16`, `-DOT=i64`, the element size `-DES=2`.
fn dtype_options(k: &Recorded) -> Vec<String> {
    const DTYPES: [&str; 9] = [
        "f16", "bf16", "f32", "f64", "i8", "u8", "i32", "i64", "bool",
    ];
    k.options
        .iter()
        .map(String::as_str)
        .filter(|o| {
            o.starts_with("-DES=")
                || o.starts_with("-D")
                    && o.split_once('=').is_some_and(|(_, v)| DTYPES.contains(&v))
        })
        .map(str::to_string)
        .collect()
}

/// FNV-1a, 64 bits: stable across builds, for the cache's keys.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        // A separator, so that parts cannot run into each other.
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A tool's path and the first lines of its `--version` (stdout only).
fn tool_version(tool: &PathBuf) -> String {
    let v = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let v: Vec<&str> = v.lines().filter(|l| !l.trim().is_empty()).take(2).collect();
    format!("{} {}", tool.display(), v.join("; "))
}

/// The identity of the tools: NVRTC's version and ptxas's path and `--version`, or hipcc's.
fn tools_identity(o: &Options) -> String {
    if let Some(hipcc) = &o.hipcc {
        return tool_version(hipcc);
    }
    let (major, minor) = nvrtc::version().unwrap_or((0, 0));
    let ptxas = match &o.ptxas {
        Some(p) => tool_version(p),
        None => "no ptxas".into(),
    };
    format!("nvrtc {major}.{minor}; {ptxas}")
}

/// The cache key of `k` compiled for `target` with these tools.
fn key(k: &Recorded, target: &Target, tools: &str) -> String {
    let options = k.options.join("\u{1f}");
    format!(
        "{:016x}",
        fnv(&[
            k.source.as_bytes(),
            k.entry.as_bytes(),
            options.as_bytes(),
            target.to_string().as_bytes(),
            tools.as_bytes(),
        ])
    )
}

/// Compiles `k` for `target`; the failure's text.
fn check(k: &Recorded, target: &Target, o: &Options, dir: &Path, n: usize) -> Result<(), String> {
    match target {
        Target::Cuda(arch) => check_cuda(k, *arch, o.ptxas.as_ref(), dir, n),
        Target::Hip(gfx) => {
            let hipcc = o.hipcc.as_ref().ok_or("a HIP target needs --hipcc")?;
            check_hip(k, gfx, hipcc, dir, n)
        }
    }
}

/// Compiles `k` for the AMD target `gfx` with hipcc, device code only: the CUDA C program as
/// the op layer generates it, under HIP's runtime header (which the prelude relies on, as
/// NVRTC's built-ins) and the same `-D` options.
fn check_hip(k: &Recorded, gfx: &str, hipcc: &Path, dir: &Path, n: usize) -> Result<(), String> {
    let src = dir.join(format!("k{n}_{gfx}.hip"));
    let obj = dir.join(format!("k{n}_{gfx}.o"));
    std::fs::write(&src, &k.source).map_err(|e| format!("writing {}: {e}", src.display()))?;
    let run = Command::new(hipcc)
        .args([
            "-x",
            "hip",
            "--offload-device-only",
            "-O2",
            "-Werror=return-type",
        ])
        .arg(format!("--offload-arch={gfx}"))
        .args(["-include", "hip/hip_runtime.h"])
        .args(&k.options)
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .map_err(|e| format!("running {}: {e}", hipcc.display()))?;
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&obj);
    if !run.status.success() {
        return Err(format!(
            "hipcc --offload-arch={gfx}: {}\n{}{}",
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    Ok(())
}

/// Compiles `k` for `arch` with NVRTC, then assembles the PTX with ptxas; the failure's text.
fn check_cuda(
    k: &Recorded,
    arch: Arch,
    ptxas: Option<&PathBuf>,
    dir: &Path,
    n: usize,
) -> Result<(), String> {
    let out = nvrtc::compile(&k.source, &k.entry, &k.options, arch, false)
        .map_err(|e| format!("NVRTC: {e}"))?;
    let Some(ptxas) = ptxas else {
        return Ok(());
    };
    let ptx = dir.join(format!("k{n}_sm{}.ptx", arch.number()));
    let cubin = dir.join(format!("k{n}_sm{}.cubin", arch.number()));
    std::fs::write(&ptx, &out.ptx).map_err(|e| format!("writing {}: {e}", ptx.display()))?;
    let run = Command::new(ptxas)
        .arg(format!("-arch=sm_{}", arch.number()))
        .arg("-o")
        .arg(&cubin)
        .arg(&ptx)
        .output()
        .map_err(|e| format!("running {}: {e}", ptxas.display()))?;
    let _ = std::fs::remove_file(&ptx);
    let _ = std::fs::remove_file(&cubin);
    if !run.status.success() {
        return Err(format!(
            "ptxas -arch=sm_{}: {}\n{}{}",
            arch.number(),
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("check_kernels: {e}");
            eprintln!(
                "usage: check_kernels [--arch 70,80,90] [--ptxas PATH] [--cache FILE] [--jobs N] \
                 [--filter TEXT] [--list]\n       \
                 check_kernels --hipcc PATH [--offload-arch gfx90a,gfx1030] [--every] \
                 [--cache FILE] [--jobs N] [--filter TEXT] [--list]"
            );
            return ExitCode::from(2);
        }
    };
    let compiler = if let Some(hipcc) = &o.hipcc {
        format!("hipcc {}", hipcc.display())
    } else {
        if let Err(why) = nvrtc::load() {
            eprintln!("check_kernels: NVRTC is {why}");
            return ExitCode::from(2);
        }
        let (major, minor) = nvrtc::version().unwrap_or((0, 0));
        match &o.ptxas {
            Some(p) => format!("NVRTC {major}.{minor}, ptxas {}", p.display()),
            None => format!("NVRTC {major}.{minor}, no ptxas (NVRTC only)"),
        }
    };
    let targets: Vec<Target> = if o.hipcc.is_some() {
        o.offload_archs.iter().cloned().map(Target::Hip).collect()
    } else {
        o.archs.iter().copied().map(Target::Cuda).collect()
    };
    let (mut kernels, cases, unsupported) = generated_kernels();
    let generated = kernels.len();
    let entries: BTreeSet<String> = kernels.iter().map(|k| k.entry.clone()).collect();
    if o.hipcc.is_some() && !o.every {
        // The first specialisation of each entry point in each of its dtypes.
        let mut seen = BTreeSet::new();
        kernels.retain(|k| seen.insert((k.entry.clone(), dtype_options(k))));
    }
    if let Some(f) = &o.filter {
        kernels.retain(|k| describe(k).contains(f.as_str()));
    }
    if o.list {
        for k in &kernels {
            println!("{}", describe(k));
        }
        return ExitCode::SUCCESS;
    }
    println!(
        "{generated} CUDA kernels ({} entry points) generated by the op layer for {cases} \
         conformance op cases; checking {} of them with {compiler}; targets {}",
        entries.len(),
        kernels.len(),
        targets
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (op, (n, reason)) in &unsupported {
        println!("not generated: {n} cases of {op}: {reason}");
    }
    if kernels.is_empty() {
        eprintln!("check_kernels: no CUDA kernel to check: nothing was checked");
        return ExitCode::from(1);
    }

    let dir = std::env::temp_dir().join(format!("anyaccel-check-kernels-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("check_kernels: cannot create {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    let tools = tools_identity(&o);
    let cached: BTreeSet<String> = o
        .cache
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let all: Vec<(usize, &Target, String)> = (0..kernels.len())
        .flat_map(|k| targets.iter().map(move |t| (k, t)))
        .map(|(k, t)| (k, t, key(&kernels[k], t, &tools)))
        .collect();
    let jobs: Vec<(usize, &Target)> = all
        .iter()
        .filter(|(_, _, key)| !cached.contains(key))
        .map(|(k, t, _)| (*k, *t))
        .collect();
    if o.cache.is_some() {
        println!(
            "{} of {} compiles passed before with the same program, options and tools; \
             compiling the other {}",
            all.len() - jobs.len(),
            all.len(),
            jobs.len()
        );
    }
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failures: Mutex<Vec<(usize, &Target, String)>> = Mutex::new(Vec::new());
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..o.jobs.min(jobs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(k, target)) = jobs.get(i) else {
                    break;
                };
                if let Err(e) = check(&kernels[k], target, &o, &dir, i) {
                    failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((k, target, e));
                }
                let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                if d.is_multiple_of(100) {
                    eprintln!("  {d}/{} compiled", jobs.len());
                }
            });
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let failed_kernels: BTreeSet<usize> = failures.iter().map(|f| f.0).collect();
    if let Some(path) = &o.cache {
        let failed: BTreeSet<(usize, &Target)> = failures.iter().map(|f| (f.0, f.1)).collect();
        let passed: Vec<&str> = all
            .iter()
            .filter(|(k, t, _)| !failed.contains(&(*k, *t)))
            .map(|(_, _, key)| key.as_str())
            .collect();
        if let Err(e) = std::fs::write(path, passed.join("\n") + "\n") {
            eprintln!(
                "check_kernels: cannot write the cache {}: {e}",
                path.display()
            );
        }
    }
    for (k, target, e) in &failures {
        println!("\nFAILED {target}: {}\n{e}", describe(&kernels[*k]));
    }
    println!(
        "{} of {} kernels passed {compiler} for {} ({} compiled in {:.0} s)",
        kernels.len() - failed_kernels.len(),
        kernels.len(),
        targets
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        jobs.len(),
        start.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
