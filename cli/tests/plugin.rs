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
