//! The `anyaccel` binary, run as a user runs it.

use std::process::{Command, Output};

use anyaccel::hal::testing::HAL_TESTS;

/// Runs `anyaccel` with these arguments, and these extra environment variables, in an
/// environment free of the caller's device selection.
fn anyaccel(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anyaccel"));
    cmd.args(args)
        .env_remove("ANYACCEL_DEVICES")
        .env_remove("ANYACCEL_REQUIRE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the anyaccel binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn devices_transfers_measure_every_ordered_pair() {
    let o = anyaccel(
        &[
            "devices",
            "--json",
            "--transfers",
            "--transfer-bytes",
            "65536",
        ],
        &[("ANYACCEL_PLUGIN_PATH", "")],
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("devices --json is JSON");
    let ids: Vec<String> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["devices"].as_array().unwrap())
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    let transfers = v["transfers"].as_array().expect("a `transfers` array");
    assert_eq!(transfers.len(), ids.len() * ids.len(), "{transfers:?}");
    for (k, t) in transfers.iter().enumerate() {
        let (from, to) = (&ids[k / ids.len()], &ids[k % ids.len()]);
        assert_eq!(t["from"], from.as_str());
        assert_eq!(t["to"], to.as_str());
        // Host memory at either end (the CPU, a CPU-type OpenCL device such as PoCL): one
        // copy; between two other devices, staged.
        let path = t["path"].as_str().unwrap_or_default();
        if from == to {
            assert_eq!(path, "device copy", "{t}");
        } else if from == "cpu:0" || to == "cpu:0" {
            assert_eq!(path, "host copy", "{t}");
        } else {
            assert!(["host copy", "staged through host"].contains(&path), "{t}");
        }
        assert_eq!(t["bytes"], 65536);
        for key in ["gbps", "memcpy_gbps", "ratio"] {
            assert!(t[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {t}");
        }
    }
    if ids.len() > 1 {
        let g = &v["all_reduce"];
        assert_eq!(
            g["devices"].as_array().map(Vec::len),
            Some(ids.len()),
            "{g}"
        );
        assert_eq!(g["bytes"], 65536, "{g}");
        for key in ["busbw_gbps", "memcpy_gbps", "ratio"] {
            assert!(g[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {g}");
        }
    }
    let o = anyaccel(&["devices", "--transfers", "--transfer-bytes", "4096"], &[]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let text = stdout(&o);
    let row = ["cpu:0", "cpu:0", "device", "copy"];
    assert!(
        text.lines().any(|l| l.split_whitespace().take(4).eq(row)),
        "{text}"
    );
}

#[test]
fn devices_json_lists_the_cpu_backend_and_its_device() {
    let o = anyaccel(&["devices", "--json"], &[]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("devices --json is JSON");
    let backends = v["backends"].as_array().expect("a `backends` array");
    let cpu = backends
        .iter()
        .find(|b| b["name"] == "cpu")
        .expect("the cpu backend is listed");
    assert_eq!(cpu["available"], true);
    assert!(cpu["reason"].is_null(), "reason: {}", cpu["reason"]);
    let devices = cpu["devices"].as_array().expect("a `devices` array");
    assert_eq!(devices.len(), 1, "{devices:?}");
    let d = &devices[0];
    assert_eq!(d["id"], "cpu:0");
    assert_eq!(d["backend"], "cpu");
    assert!(!d["name"].as_str().unwrap_or("").is_empty());
    assert!(!d["vendor"].as_str().unwrap_or("").is_empty());
    assert!(d["memory_bytes"].as_u64().unwrap_or(0) > 0);
    let dtypes: Vec<&str> = d["dtypes"]
        .as_array()
        .expect("a `dtypes` array")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(dtypes.contains(&"f32"), "{dtypes:?}");
    assert_eq!(d["dialects"], serde_json::json!(["host"]));
    // Every listed backend either has devices or says why it has none.
    for b in backends {
        assert_eq!(b["available"].as_bool(), Some(b["reason"].is_null()), "{b}");
    }
}

#[test]
fn devices_table_names_the_cpu_device() {
    let o = anyaccel(&["devices"], &[]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("cpu ") && l.contains("available")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("cpu:0 ") && l.contains("host")),
        "{out}"
    );
}

#[test]
fn an_unknown_flag_is_a_usage_error_naming_it() {
    let o = anyaccel(&["devices", "--jsonn"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--jsonn"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());

    let o = anyaccel(&["devices", "--json=yes"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--json"), "{}", stderr(&o));

    let o = anyaccel(&["conformance", "--device"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--device"), "{}", stderr(&o));
}

#[test]
fn an_unknown_command_is_a_usage_error_naming_it() {
    let o = anyaccel(&["frobnicate"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("frobnicate"), "{}", stderr(&o));
    let o = anyaccel(&[], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Usage: anyaccel"), "{}", stderr(&o));
}

#[test]
fn help_lists_the_commands() {
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let o = anyaccel(args, &[]);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let out = stdout(&o);
        assert!(
            out.contains("devices") && out.contains("conformance"),
            "{out}"
        );
    }
    let o = anyaccel(&["help", "conformance"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("--device"), "{}", stdout(&o));
    let o = anyaccel(&["help", "nope"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nope"));
}

#[test]
fn conformance_on_cpu_passes_every_hal_test_and_writes_reports() {
    let dir = std::env::temp_dir().join(format!("anyaccel-cli-report-{}", std::process::id()));
    let dir_s = dir.to_string_lossy().to_string();
    let o = anyaccel(
        &[
            "conformance",
            "--device",
            "cpu:0",
            "--filter",
            "hal.*",
            "--report",
            &dir_s,
        ],
        &[("ANYACCEL_REQUIRE", "cpu")],
    );
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {out}\nstderr: {}",
        stderr(&o)
    );
    assert_eq!(
        out.lines().last(),
        Some(
            format!(
                "{} passed, 0 failed, 0 skipped, 0 xfailed, 0 xpassed, 0 crashed, 0 timed out",
                HAL_TESTS.len()
            )
            .as_str()
        ),
        "{out}"
    );
    // A filtered run proves no profile: no verdict, a note in its place.
    assert!(!out.contains("conformant"), "{out}");
    assert!(
        out.contains("no profile verdict: a run filtered to hal.* proves no profile"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["schema"], "anyaccel-conformance/1");
    assert_eq!(json["filters"], serde_json::json!(["hal.*"]));
    assert_eq!(json["devices"][0]["profiles"], serde_json::json!({}));
    let cases = json["devices"][0]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), HAL_TESTS.len());
    for (name, _) in HAL_TESTS {
        let case = cases
            .iter()
            .find(|c| c["id"] == format!("hal.{name}"))
            .unwrap();
        assert_eq!(case["status"], "passed", "{case}");
    }
    for f in ["report.md", "junit.xml", "report.html"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn conformance_on_an_unknown_device_fails_naming_it() {
    let o = anyaccel(&["conformance", "--device", "nope:0"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("nope:0"), "{err}");
    assert!(err.contains("cpu:0"), "the error lists what exists: {err}");

    let o = anyaccel(&["conformance"], &[("ANYACCEL_DEVICES", "nope:1")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope:1"), "{}", stderr(&o));
}

#[test]
fn conformance_fails_when_a_required_backend_is_missing() {
    let o = anyaccel(
        &["conformance", "--no-report"],
        &[("ANYACCEL_REQUIRE", "cpu,nosuchbackend")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("nosuchbackend"), "{}", stderr(&o));
}

#[test]
fn tune_times_the_candidates_and_writes_the_cache() {
    let dir = std::env::temp_dir().join(format!("anyaccel-cli-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A cache that does not parse is set aside, with a warning, when the result is written.
    std::fs::write(dir.join("tune.json"), "[1, 2").unwrap();
    let cache = dir.to_str().unwrap();
    let o = anyaccel(
        &[
            "tune",
            "--device",
            "opencl:0,cpu:0",
            "--size",
            "96",
            "--reps",
            "1",
            "--rounds",
            "1",
        ],
        &[("ANYACCEL_CACHE_DIR", cache), ("ANYACCEL_REQUIRE", "cpu")],
    );
    let out = stdout(&o);
    if out.contains("opencl:0 (") {
        assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
        assert!(
            out.contains("matmul.c (bm,bn,bk,tm,tn), f32 96x96x96"),
            "{out}"
        );
        assert!(
            out.contains("[128, 128, 32, 8, 16]") && out.contains("default"),
            "{out}"
        );
        assert!(out.contains("chosen"), "{out}");
        assert!(out.contains("cpu:0: skipped"), "{out}");
        assert!(
            stderr(&o).contains("does not parse; moved to"),
            "{}",
            stderr(&o)
        );
        let text = std::fs::read_to_string(dir.join("tune.json")).unwrap();
        assert!(
            text.contains("\"kernel\": \"matmul.c\"") && text.contains("\"size\": 96"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("tune.json.corrupt")).unwrap(),
            "[1, 2"
        );
    }
    // The CPU alone has nothing to tune: a failure that says so.
    let o = anyaccel(
        &["tune", "--device", "cpu:0", "--size", "16", "--dry-run"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no chosen device runs a tunable matmul kernel"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
