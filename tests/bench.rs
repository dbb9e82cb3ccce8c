//! `anyaccel bench`, run as a user runs it: the JSON shape and that every figure is a positive
//! number. Times are never compared with anything.

use std::process::Command;

use serde_json::Value;

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(
        x.is_finite() && x > 0.0,
        "{what} = {x}, expected a positive number"
    );
    x
}

#[test]
fn bench_json_has_the_documented_shape_and_positive_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_anyaccel"))
        .args([
            "bench", "--device", "cpu:0", "--op", "add", "--size", "4096", "--time", "0.1",
            "--json",
        ])
        .env_remove("ANYACCEL_DEVICES")
        .env_remove("ANYACCEL_REQUIRE")
        .output()
        .expect("the anyaccel binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("bench --json prints JSON");
    let devices = v["devices"].as_array().expect("a `devices` array");
    assert_eq!(devices.len(), 1, "{v}");
    let d = &devices[0];
    assert_eq!(d["id"], "cpu:0");
    positive(&d["roofline"]["gbps"], "roofline.gbps");
    positive(&d["roofline"]["gflops"], "roofline.gflops");
    let ops = d["ops"].as_array().expect("an `ops` array");
    assert_eq!(ops.len(), 1, "only add was asked for: {v}");
    let add = &ops[0];
    assert_eq!(add["op"], "add");
    assert_eq!(add["dtype"], "f32");
    assert_eq!(add["size"], "4096");
    assert_eq!(add["status"], "ok", "{add}");
    let median = positive(&add["median_s"], "median_s");
    let p10 = positive(&add["p10_s"], "p10_s");
    let p90 = positive(&add["p90_s"], "p90_s");
    assert!(p10 <= median && median <= p90, "{add}");
    assert!(add["reps"].as_u64().unwrap_or(0) >= 5, "{add}");
    positive(&add["gbps"], "gbps");
    positive(&add["share_of_roofline"], "share_of_roofline");
    assert!(add["gflops"].is_null(), "add is rated in GB/s: {add}");
    // Without --peers the peer fields are there and empty.
    for key in ["peer", "peer_median_s", "ratio_vs_peer"] {
        assert!(add.get(key).is_some_and(Value::is_null), "{key}: {add}");
    }
}

#[test]
fn bench_rejects_an_unknown_op_naming_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_anyaccel"))
        .args(["bench", "--op", "madd"])
        .output()
        .expect("the anyaccel binary runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`madd`") && stderr.contains("matmul"),
        "{stderr}"
    );
}
