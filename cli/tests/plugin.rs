//! Vendor plugins through the `anyaccel` binary: `anyaccel devices` shows why a plugin named by
//! `ANYACCEL_PLUGIN_PATH` cannot be used; the conformance runner isolates a plugin that crashes
//! (the crashed cases are `crashed`, the rest of the report is intact) and diagnoses a plugin
//! that returns garbage.

#[path = "../../backends/plugin/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

fn anyaccel(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anyaccel"));
    cmd.args(args)
        .env_remove("ANYACCEL_DEVICES")
        .env_remove("ANYACCEL_REQUIRE")
        .env_remove("ANYACCEL_PLUGIN_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the anyaccel binary runs")
}

/// Runs the conformance suite on a plugin and returns its JSON report.
fn conformance_json(plugin: &std::path::Path, device: &str, filter: &str) -> serde_json::Value {
    let o = anyaccel(
        &[
            "conformance",
            "--plugin",
            plugin.to_str().unwrap(),
            "--device",
            device,
            "--filter",
            filter,
            "--no-report",
            "--json",
        ],
        &[],
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "conformance --json printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn cases(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["devices"][0]["cases"]
        .as_array()
        .expect("a cases array")
        .clone()
}

#[test]
fn devices_shows_why_a_plugin_cannot_be_used() {
    let missing = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("nowhere/libgone.so");
    let reference = common::reference_plugin();
    let list = std::env::join_paths([missing.clone(), reference]).unwrap();
    let o = anyaccel(&["devices", "--json"], &[("ANYACCEL_PLUGIN_PATH", &list)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let backends = v["backends"].as_array().unwrap();
    let gone = backends
        .iter()
        .find(|b| b["name"] == "plugin:gone")
        .expect("the missing plugin is listed");
    assert_eq!(gone["available"], false);
    let why = gone["reason"].as_str().unwrap();
    assert!(
        why.contains("libgone.so") && why.contains("file not found"),
        "{why}"
    );
    let reference = backends
        .iter()
        .find(|b| b["name"] == "plugin:ref")
        .expect("the reference plugin is listed");
    assert_eq!(reference["available"], true, "{reference}");
    assert_eq!(reference["devices"][0]["id"], "plugin:ref:0");
    assert_eq!(
        reference["devices"][0]["native_ops"]
            .as_array()
            .unwrap()
            .len(),
        anyaccel::ops::CATALOG.len(),
        "the reference plugin runs every op of the catalog"
    );
}

#[test]
fn the_reference_plugin_simulates_devices_of_given_speeds() {
    let reference = common::reference_plugin();
    let path = reference.as_os_str();
    let json = |value: &str| {
        let o = anyaccel(
            &["devices", "--json"],
            &[
                ("ANYACCEL_PLUGIN_PATH", path),
                ("ANYACCEL_REF_DEVICES", value.as_ref()),
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let b = v["backends"].as_array().unwrap();
        b.iter()
            .find(|b| b["name"] == "plugin:ref")
            .unwrap()
            .clone()
    };
    let two = json("20,5");
    let names: Vec<&str> = two["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "anyaccel reference plugin (host memory, 20 MB/s)",
            "anyaccel reference plugin (host memory, 5 MB/s)"
        ]
    );
    for bad in [
        "20,x",
        "-1",
        "20,,5",
        "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
    ] {
        let b = json(bad);
        assert_eq!(b["available"], false, "{bad}: {b}");
        let why = b["reason"].as_str().unwrap();
        assert!(
            why.contains(&format!("ANYACCEL_REF_DEVICES=\"{bad}\"")) && why.contains("MB/s"),
            "{why}"
        );
    }
}

#[test]
fn a_crashing_plugin_gives_crashed_cases_and_the_rest_of_the_report() {
    let plugin = common::variant("crashing.c");
    let report = conformance_json(&plugin, "plugin:crashing:0", "ops.add.f32.*");
    let crashed = cases(&report);
    assert!(crashed.len() > 10, "{} cases", crashed.len());
    for c in &crashed {
        assert_eq!(c["status"], "crashed", "{c}");
        let why = c["reason"].as_str().unwrap_or("");
        assert!(why.contains("SIGABRT"), "{why}");
    }
    // The rest of the report is intact: the device, its summary, and a replay line per case.
    let d = &report["devices"][0];
    assert_eq!(d["id"], "plugin:crashing:0");
    assert_eq!(d["summary"]["crashed"].as_u64(), Some(crashed.len() as u64));
    assert!(crashed
        .iter()
        .all(|c| c["replay"].as_str().unwrap_or("").contains("--plugin")));
    // Ops that do not crash still pass, in runs that hold crashes.
    let mixed = conformance_json(&plugin, "plugin:crashing:0", "ops.*.f32.same37.normal");
    let statuses: Vec<(String, String)> = cases(&mixed)
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (id, status) in &statuses {
        let want = if id.starts_with("ops.add.") {
            "crashed"
        } else {
            "passed"
        };
        assert_eq!(status, want, "{id}: {statuses:?}");
    }
    assert!(statuses.len() > 5, "{statuses:?}");
}

#[test]
fn a_plugin_that_returns_garbage_fails_with_a_diagnosis() {
    let plugin = common::variant("garbage.c");
    let report = conformance_json(&plugin, "plugin:garbage:0", "ops.add.f32.same37.normal");
    let cases = cases(&report);
    assert_eq!(cases.len(), 1);
    let c = &cases[0];
    assert_eq!(c["status"], "failed", "{c}");
    let why = c["reason"].as_str().unwrap();
    assert!(
        why.contains("out of tolerance") && why.contains("first bad element"),
        "{why}"
    );
    assert!(c["first_bad_index"].is_u64(), "{c}");
    assert!(c["max_abs_err"].as_f64().unwrap() > 0.1, "{c}");
}

/// The `backends` entry of `anyaccel devices --json` named `name`.
fn backend<'a>(devices: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    devices["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("backend {name} is listed: {devices}"))
}

#[test]
fn devices_lists_plugins_that_crash_or_hang_while_loading_as_unavailable() {
    let broken: Vec<_> = ["CRASH_ENTRY", "HANG_ENTRY", "CRASH_INFO", "HANG_COUNT"]
        .iter()
        .map(|m| common::broken(m))
        .collect();
    let list =
        std::env::join_paths(broken.iter().cloned().chain([common::reference_plugin()])).unwrap();
    let t0 = std::time::Instant::now();
    let o = anyaccel(
        &["devices", "--json"],
        &[
            ("ANYACCEL_PLUGIN_PATH", &list),
            ("ANYACCEL_PLUGIN_LOAD_TIMEOUT", "2".as_ref()),
        ],
    );
    // The two hangs are screened at once, each within its own 2 s limit.
    assert!(t0.elapsed().as_secs() < 30, "took {:?}", t0.elapsed());
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Before its entry point returns, a plugin has no name of its own: the file's stem.
    for (name, how, stage) in [
        (
            "plugin:anyaccel_broken_crash_entry",
            "killed by signal 11 (SIGSEGV)",
            "while being loaded",
        ),
        (
            "plugin:anyaccel_broken_hang_entry",
            "did not finish within 2 s",
            "while being loaded",
        ),
        (
            "plugin:broken_crash_info",
            "killed by signal 11 (SIGSEGV)",
            "while enumerating its devices",
        ),
        (
            "plugin:broken_hang_count",
            "did not finish within 2 s",
            "while enumerating its devices",
        ),
    ] {
        let b = backend(&v, name);
        assert_eq!(b["available"], false, "{b}");
        let why = b["reason"].as_str().unwrap();
        assert!(
            why.contains(how) && why.contains(stage) && why.contains("it is not loaded"),
            "{name}: {why}"
        );
    }
    let reference = backend(&v, "plugin:ref");
    assert_eq!(reference["available"], true, "{reference}");
    assert_eq!(backend(&v, "cpu")["available"], true);
}

#[test]
fn conformance_goes_on_past_a_broken_plugin_of_the_environment() {
    let list = common::broken("CRASH_INFO").into_os_string();
    let o = anyaccel(
        &[
            "conformance",
            "--device",
            "cpu:0",
            "--filter",
            "ops.add.f32.same37.normal",
            "--no-report",
            "--json",
        ],
        &[("ANYACCEL_PLUGIN_PATH", &list)],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["devices"][0]["id"], "cpu:0");
    assert_eq!(cases(&report)[0]["status"], "passed");
    let down = report["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["backend"] == "plugin:broken_crash_info")
        .unwrap_or_else(|| panic!("the broken plugin is reported: {report}"));
    assert!(
        down["reason"].as_str().unwrap().contains("SIGSEGV"),
        "{down}"
    );
}

#[test]
fn a_plugin_named_with_dash_dash_plugin_is_required() {
    for (mode, why) in [
        (
            "CRASH_INFO",
            "killed by signal 11 (SIGSEGV) while enumerating its devices",
        ),
        ("COUNT_ERROR", "the card did not answer"),
    ] {
        let plugin = common::broken(mode);
        let o = anyaccel(
            &[
                "conformance",
                "--plugin",
                plugin.to_str().unwrap(),
                "--filter",
                "ops.add.f32.same37.normal",
                "--no-report",
            ],
            &[],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{mode}: {err}");
        let name = format!("plugin:broken_{}", mode.to_ascii_lowercase());
        assert!(
            err.contains(&format!("--plugin {}", plugin.display()))
                && err.contains(&format!("backend {name} is unavailable"))
                && err.contains(why),
            "{mode}: {err}"
        );
        // Nothing ran: a vendor's CI cannot go green on a plugin that never loaded.
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("passed"),
            "{mode}"
        );
    }
}

#[test]
fn a_device_of_an_unavailable_plugin_says_why() {
    let list = common::broken("COUNT_ERROR").into_os_string();
    let o = anyaccel(
        &[
            "conformance",
            "--device",
            "plugin:broken_count_error:0",
            "--no-report",
        ],
        &[("ANYACCEL_PLUGIN_PATH", &list)],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("device `plugin:broken_count_error:0` not found")
            && err.contains("backend plugin:broken_count_error is unavailable")
            && err.contains("the card did not answer"),
        "{err}"
    );
}

#[test]
fn a_hung_op_is_named_while_it_runs_and_times_out() {
    let plugin = common::broken("HANG_OP");
    let o = anyaccel(
        &[
            "conformance",
            "--plugin",
            plugin.to_str().unwrap(),
            "--device",
            "plugin:broken_hang_op:0",
            "--filter",
            "ops.add.f32.same37.normal",
            "--timeout",
            "4",
            "--no-report",
            "--json",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "still running after 2 s: ops.add.f32.same37.normal on plugin:broken_hang_op:0"
        ),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = &cases(&report)[0];
    assert_eq!(c["status"], "timed_out", "{c}");
    assert_eq!(report["devices"][0]["summary"]["timed_out"], 1);
    // The summary line counts it as timed out, as the device line does.
    assert!(
        err.contains("0 passed, 0 failed, 0 skipped, 0 xfailed, 0 xpassed, 0 crashed, 1 timed out"),
        "{err}"
    );
}

#[test]
fn a_plugin_that_ignores_output_strides_fails_a_case_of_every_op() {
    let plugin = common::broken("IGNORE_OUT_STRIDES");
    let per_op =
        anyaccel_conformance::cases::strided_output_case_per_op(&anyaccel_conformance::all_cases());
    assert_eq!(per_op.len(), anyaccel::ops::CATALOG.len());
    let mut args = vec![
        "conformance".to_string(),
        "--plugin".into(),
        plugin.to_str().unwrap().into(),
        "--device".into(),
        "plugin:broken_ignore_out_strides:0".into(),
        "--no-report".into(),
        "--json".into(),
    ];
    for id in per_op.values() {
        args.extend(["--filter".to_string(), id.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = anyaccel(&args, &[]);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&o.stderr)));
    let cases = cases(&report);
    assert_eq!(cases.len(), per_op.len());
    for c in &cases {
        assert_eq!(c["status"], "failed", "{c}");
    }
}

#[test]
fn an_index_error_comes_back_at_synchronization_however_a_plugin_reports_it() {
    // The reference plugin fails its stream; this one returns the error from op_execute.
    for (plugin, device) in [
        (common::reference_plugin(), "plugin:ref:0"),
        (
            common::broken("DIRECT_ERRORS"),
            "plugin:broken_direct_errors:0",
        ),
    ] {
        let report = conformance_json(&plugin, device, "ops.*.bad*");
        let cases = cases(&report);
        assert!(cases.len() > 20, "{} cases", cases.len());
        for c in &cases {
            assert_eq!(c["status"], "passed", "{device}: {c}");
        }
    }
}
