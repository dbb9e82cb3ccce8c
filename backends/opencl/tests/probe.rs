//! The probe on a machine without an OpenCL driver: `Unavailable` with a reason that says what
//! is missing, never a panic.
//!
//! The ICD loader is system-wide, so each test runs itself again in a child process: with
//! `OCL_ICD_VENDORS` pointing at a folder that does not exist (the loader then finds no
//! driver), and, where user namespaces allow it, with `libOpenCL.so.1` itself replaced by an
//! empty file (the loader cannot be opened).

use std::process::Command;

use anyaccel_hal::{Backend, Runtime};
use anyaccel_opencl::OpenClBackend;

const CHILD: &str = "ANYACCEL_OPENCL_PROBE_CHILD";
const LOADER_CHILD: &str = "ANYACCEL_OPENCL_LOADER_CHILD";
const NOWHERE: &str = "/nonexistent/anyaccel-opencl-vendors";

#[test]
fn no_driver_is_unavailable_with_a_reason() {
    if std::env::var_os(CHILD).is_some() {
        let why = match OpenClBackend.probe() {
            Ok(devices) => panic!(
                "found {} devices with OCL_ICD_VENDORS pointing nowhere",
                devices.len()
            ),
            Err(why) => why,
        };
        // Through a runtime too: the backend is listed as unavailable, with the same words.
        let rt = Runtime::with_backends(vec![std::sync::Arc::new(OpenClBackend)]).unwrap();
        let status = rt.backends();
        assert_eq!(status[0].name, "opencl");
        assert_eq!(status[0].devices.as_ref().err(), Some(&why));
        println!("REASON: {}", why.reason);
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "no_driver_is_unavailable_with_a_reason",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("OCL_ICD_VENDORS", NOWHERE)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let reason = stdout
        .lines()
        .find_map(|l| l.split_once("REASON: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("child printed no reason:\n{stdout}\n{stderr}"));
    eprintln!("without a driver: {reason}");
    if OpenClBackend.probe().is_ok() {
        // The loader is installed (a device was found here): only the driver is missing.
        assert!(
            reason.contains("found no platform") && reason.contains(NOWHERE),
            "{reason}"
        );
    } else {
        assert!(
            reason.contains("found no platform") || reason.contains("libOpenCL.so.1"),
            "{reason}"
        );
    }
}

/// Where the dynamic linker would find `libOpenCL.so.1`, resolved to the real file.
fn installed_loader() -> Option<std::path::PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join("libOpenCL.so.1"))
    .find_map(|p| std::fs::canonicalize(p).ok())
}

#[test]
fn unloadable_loader_is_unavailable_with_the_dlopen_error() {
    if std::env::var_os(LOADER_CHILD).is_some() {
        match OpenClBackend.probe() {
            Ok(devices) => panic!("found {} devices without a loader", devices.len()),
            Err(why) => println!("REASON: {}", why.reason),
        }
        return;
    }
    let Some(loader) = installed_loader() else {
        eprintln!("skipped: no libOpenCL.so.1 installed; the other probe test covers this");
        return;
    };
    // In a private mount namespace, put an empty file over the loader, then run the child.
    let out = Command::new("unshare")
        .args(["--map-root-user", "--mount", "sh", "-c"])
        .arg(r#"mount --bind /dev/null "$1" && echo REPLACED && exec "$2" --exact "$3" --nocapture --test-threads=1"#)
        .args(["sh"])
        .arg(&loader)
        .arg(std::env::current_exe().unwrap())
        .arg("unloadable_loader_is_unavailable_with_the_dlopen_error")
        .env(LOADER_CHILD, "1")
        .output();
    let out = match out {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("REPLACED") => out,
        Ok(out) => {
            eprintln!(
                "skipped: cannot replace the loader in a user namespace here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: cannot run unshare: {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let reason = stdout
        .lines()
        .find_map(|l| l.split_once("REASON: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("child printed no reason:\n{stdout}\n{stderr}"));
    eprintln!("with an unloadable loader: {reason}");
    assert!(
        reason.contains("cannot load the OpenCL loader libOpenCL.so.1")
            && reason.contains("Could not open library"),
        "{reason}"
    );
}
