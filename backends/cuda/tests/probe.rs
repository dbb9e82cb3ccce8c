//! The probe on machines without a usable NVIDIA GPU: `Unavailable` with a reason that says
//! what is missing, never a panic.
//!
//! - Here (no driver at all): the reason names `libcuda.so.1` and the dynamic linker's error.
//! - A driver without a GPU, and a driver too old for the backend: each test runs itself again
//!   in a child process whose `LD_LIBRARY_PATH` leads to a `libcuda.so` built from
//!   `fixtures/libcuda_without_gpu.c` (with a C compiler; skipped without one).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyaccel_cuda::{CudaBackend, DRIVER_SYMBOLS};
use anyaccel_hal::{Backend, Runtime};

const CHILD: &str = "ANYACCEL_CUDA_PROBE_CHILD";
const FIXTURE: &str = include_str!("fixtures/libcuda_without_gpu.c");

/// The probe's reason, printed for the parent; panics if the probe finds a device.
fn child_reports_reason() {
    let why = match CudaBackend.probe() {
        Ok(devices) => panic!(
            "found {} CUDA devices with the stand-in driver",
            devices.len()
        ),
        Err(why) => why,
    };
    // Again, and through a runtime: the same words, no panic.
    assert_eq!(CudaBackend.probe().err(), Some(why.clone()));
    let rt = Runtime::with_backends(vec![Arc::new(CudaBackend)]).unwrap();
    let status = rt.backends();
    assert_eq!(status[0].name, "cuda");
    assert_eq!(status[0].devices.as_ref().err(), Some(&why));
    println!("REASON: {}", why.reason);
}

/// Builds the stand-in driver into `dir`, defining every checked symbol but `omit`.
fn build_driver(dir: &Path, omit: &[&str]) -> Option<PathBuf> {
    let mut source = FIXTURE.to_string();
    for name in DRIVER_SYMBOLS {
        if omit.contains(name) || source.contains(&format!("CUresult {name}(")) {
            continue;
        }
        source.push_str(&format!("CUresult {name}(void) {{ return 3; }}\n"));
    }
    std::fs::create_dir_all(dir).unwrap();
    let c = dir.join("libcuda.c");
    std::fs::write(&c, source).unwrap();
    let lib = dir.join("libcuda.so");
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&c)
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "building the stand-in driver failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            eprintln!("skipped: no C compiler to build the stand-in driver ({e})");
            return None;
        }
    }
    std::fs::copy(&lib, dir.join("libcuda.so.1")).unwrap();
    Some(lib)
}

/// Runs the test `name` in a child with `dir` first on the library path; its reason.
fn reason_in_child(name: &str, dir: &Path) -> String {
    let path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", dir.display()),
        _ => dir.display().to_string(),
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("LD_LIBRARY_PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    stdout
        .lines()
        .find_map(|l| l.split_once("REASON: ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("child printed no reason:\n{stdout}\n{stderr}"))
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("anyaccel-cuda-{name}-{}", std::process::id()))
}

#[test]
fn probe_never_panics_and_explains_itself() {
    match CudaBackend.probe() {
        Ok(devices) => {
            // An NVIDIA machine: every device is described.
            for d in &devices {
                assert!(d.info().id.starts_with("cuda:"), "{}", d.info().id);
                assert!(d.info().memory_bytes > 0);
            }
        }
        Err(why) => {
            eprintln!("cuda here: {}", why.reason);
            assert!(
                why.reason.contains("libcuda") || why.reason.contains("cuInit"),
                "the reason names neither libcuda nor cuInit: {}",
                why.reason
            );
            if why.reason.contains("cannot be loaded") {
                assert!(why.reason.contains("libcuda.so.1"), "{}", why.reason);
            }
        }
    }
}

#[test]
fn driver_without_gpu_is_unavailable_with_cuinit_error() {
    if std::env::var_os(CHILD).is_some() {
        return child_reports_reason();
    }
    let dir = scratch("nogpu");
    if build_driver(&dir, &[]).is_none() {
        return;
    }
    let reason = reason_in_child("driver_without_gpu_is_unavailable_with_cuinit_error", &dir);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("with a driver but no GPU: {reason}");
    assert_eq!(
        reason,
        "cuInit failed: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)"
    );
}

#[test]
fn old_driver_is_unavailable_naming_what_it_lacks() {
    if std::env::var_os(CHILD).is_some() {
        return child_reports_reason();
    }
    let dir = scratch("old");
    if build_driver(&dir, &["cuMemsetD16Async", "cuLaunchKernel"]).is_none() {
        return;
    }
    let reason = reason_in_child("old_driver_is_unavailable_naming_what_it_lacks", &dir);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("with an old driver: {reason}");
    assert!(
        reason.contains("libcuda.so.1 lacks cuMemsetD16Async, cuLaunchKernel"),
        "{reason}"
    );
}
