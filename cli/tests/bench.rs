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

/// Runs `anyaccel` with these arguments in an environment free of the caller's device
/// selection, and reads its standard output as JSON after checking that it exited with 0.
fn anyaccel_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_anyaccel"))
        .args(args)
        .env_remove("ANYACCEL_DEVICES")
        .env_remove("ANYACCEL_REQUIRE")
        .output()
        .expect("the anyaccel binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: stderr: {stderr}");
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

#[test]
fn bench_json_has_the_documented_shape_and_positive_figures() {
    let v = anyaccel_json(&[
        "bench", "--device", "cpu:0", "--op", "add", "--size", "4096", "--time", "0.1", "--json",
    ]);
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
fn gradients_run_beside_their_forward_op_and_pass_the_reference_check() {
    let grads = [
        ("embedding_backward", "embedding"),
        ("avg_pool2d_backward", "avg_pool2d"),
        ("attention_backward", "attention"),
        ("interpolate_backward_nearest", "interpolate"),
    ];
    let names: Vec<&str> = grads.iter().map(|g| g.0).collect();
    let v = anyaccel_json(&[
        "bench",
        "--device",
        "cpu:0",
        "--op",
        &names.join(","),
        "--time",
        "0.05",
        "--no-roofline",
        "--json",
    ]);
    let d = &v["devices"][0];
    for (grad, forward) in grads {
        // "ok" only after the gradient's output matched the f64 reference.
        ran_beside(d, grad, &format!("{forward} (forward, same inputs)"));
        let size = op(d, grad)["size"].as_str().unwrap_or_default().to_string();
        assert!(!size.is_empty(), "{grad}: the entry names its shape");
    }
    assert!(
        op(d, "interpolate_backward_nearest")["size"]
            .as_str()
            .is_some_and(|s| s.ends_with("nearest")),
        "{d}"
    );
}

#[test]
fn sixteen_bit_entries_run_beside_f32_and_pass_the_reference_check() {
    let v = anyaccel_json(&[
        "bench",
        "--device",
        "cpu:0",
        "--op",
        "softmax_f16,layer_norm_bf16,rms_norm_f16,gelu_bf16",
        "--size",
        "300K",
        "--time",
        "0.05",
        "--no-roofline",
        "--json",
    ]);
    let d = &v["devices"][0];
    for (name, dtype, base) in [
        ("softmax_f16", "f16", "softmax"),
        ("layer_norm_bf16", "bf16", "layer_norm"),
        ("rms_norm_f16", "f16", "rms_norm"),
        ("gelu_bf16", "bf16", "gelu"),
    ] {
        // "ok" only after sampled rows matched the f64 reference of the 16-bit inputs; 300K
        // elements are 75 rows of 4096, which the f16 and bf16 row kernels widen in blocks.
        ran_beside(d, name, &format!("{base} f32 (same values)"));
        assert_eq!(op(d, name)["dtype"], dtype, "{d}");
        assert_eq!(op(d, name)["size"], "75x4096", "{d}");
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
        stderr.contains("`madd`")
            && stderr.contains("matmul")
            && stderr.contains("group_norm_backward"),
        "{stderr}"
    );
}

/// True when `ANYACCEL_REQUIRE` names `backend`: its runtime (and, in the test command, its
/// peer libraries) must be there.
fn required(backend: &str) -> bool {
    std::env::var("ANYACCEL_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|b| b.trim() == backend)
}

/// `anyaccel bench --peers --json` on one device, small and short.
fn bench_peers(device: &str, ops: &str) -> Value {
    let v = anyaccel_json(&[
        "bench",
        "--device",
        device,
        "--op",
        ops,
        "--size",
        "64",
        "--time",
        "0.05",
        "--no-roofline",
        "--peers",
        "--json",
    ]);
    let devices = v["devices"].as_array().expect("a `devices` array");
    assert_eq!(devices.len(), 1, "{v}");
    assert!(
        v["devices"][0]["roofline"]["gbps"].is_null(),
        "--no-roofline measured the roofline: {v}"
    );
    v["devices"][0].clone()
}

/// The entry of `op` in a device's figures.
fn op<'a>(device: &'a Value, name: &str) -> &'a Value {
    device["ops"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["op"] == name))
        .unwrap_or_else(|| panic!("no `{name}` entry: {device}"))
}

/// Checks that `name` ran ok with `peer` beside it: both medians and the ratio are positive
/// and consistent with each other.
fn ran_beside(device: &Value, name: &str, peer: &str) {
    let e = op(device, name);
    assert_eq!(e["status"], "ok", "{e}");
    assert_eq!(e["peer"], peer, "{e}");
    assert!(e["peer_error"].is_null(), "{e}");
    let ours = positive(&e["median_s"], "median_s");
    let theirs = positive(&e["peer_median_s"], "peer_median_s");
    let ratio = positive(&e["ratio_vs_peer"], "ratio_vs_peer");
    assert!(
        (ratio - theirs / ours).abs() <= 1e-9 * ratio,
        "ratio_vs_peer {ratio} is not peer_median_s / median_s = {}: {e}",
        theirs / ours
    );
}

/// The first device of `backend`, or why there is none (then the test skips, unless the
/// backend is required).
fn first_device(backend: &str) -> Option<String> {
    let v = anyaccel_json(&["devices", "--json"]);
    let id = format!("{backend}:0");
    let listed = v["backends"]
        .as_array()
        .expect("a `backends` array")
        .iter()
        .filter(|b| b["name"] == backend)
        .flat_map(|b| b["devices"].as_array().into_iter().flatten())
        .any(|d| d["id"] == id.as_str());
    if listed {
        return Some(id);
    }
    assert!(
        !required(backend),
        "ANYACCEL_REQUIRE names {backend}, but `anyaccel devices` lists no {backend}:0: {v}"
    );
    eprintln!("skipped: no {backend} device");
    None
}

/// When a peer library is missing, the entry says so; that is a failure where the test
/// command installed it (the backend is required), a skip elsewhere.
fn peer_present(device: &Value, name: &str) -> bool {
    let e = op(device, name);
    if e["peer_error"].is_null() {
        return true;
    }
    let backend = device["backend"].as_str().unwrap_or_default();
    assert!(
        !required(backend),
        "{backend} is required, but the peer of {name} did not run: {e}"
    );
    eprintln!(
        "skipped: the peer of {name} did not run: {}",
        e["peer_error"]
    );
    false
}

#[test]
fn cpu_peers_run_side_by_side_and_launch_is_skipped_with_a_reason() {
    let d = bench_peers("cpu:0", "matmul,add,dispatch,launch,graph");
    if peer_present(&d, "matmul") {
        ran_beside(&d, "matmul", "openblas");
    }
    // A recorded graph replayed beside the same calls made eagerly (its result checked).
    ran_beside(&d, "graph", "the same calls, eagerly");
    assert_eq!(
        op(&d, "graph")["size"],
        "100 ops x 64",
        "{}",
        op(&d, "graph")
    );
    ran_beside(&d, "add", "memcpy");
    // The op call beside onnxruntime's; the CPU device runs host kernels, so it has no raw API
    // to launch a kernel through.
    if peer_present(&d, "dispatch") {
        let peer = op(&d, "dispatch")["peer"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            peer.starts_with("onnxruntime ") && peer.ends_with(" Add (run_with_iobinding)"),
            "{peer}"
        );
        ran_beside(&d, "dispatch", &peer);
    }
    let launch = op(&d, "launch");
    assert_eq!(launch["status"], "skipped", "{launch}");
    let why = launch["error"].as_str().unwrap_or_default();
    assert!(why.contains("cpu") && why.contains("OpenCL C"), "{launch}");
}

#[test]
fn opencl_peers_are_clblast_and_raw_opencl3() {
    let Some(id) = first_device("opencl") else {
        return;
    };
    let d = bench_peers(&id, "matmul,dispatch,launch");
    if peer_present(&d, "matmul") {
        ran_beside(&d, "matmul", "clblast");
    }
    ran_beside(&d, "dispatch", "opencl3");
    ran_beside(&d, "launch", "opencl3");
    let peers = d["peers"].to_string();
    assert!(peers.contains("clEnqueueNDRangeKernel"), "{peers}");
}

#[test]
fn vulkan_peer_is_raw_ash() {
    let Some(id) = first_device("vulkan") else {
        return;
    };
    let d = bench_peers(&id, "matmul,dispatch,launch,graph");
    ran_beside(&d, "dispatch", "ash");
    ran_beside(&d, "graph", "the same calls, eagerly");
    ran_beside(&d, "launch", "ash");
    // No matmul library is wired for Vulkan: the figure stands alone.
    let matmul = op(&d, "matmul");
    assert_eq!(matmul["status"], "ok", "{matmul}");
    assert!(matmul["peer"].is_null(), "{matmul}");
    let peers = d["peers"].to_string();
    assert!(peers.contains("vkQueueSubmit"), "{peers}");
}

#[test]
fn cpu_row_and_unary_ops_run_beside_onnxruntime() {
    let ops =
        "softmax,log_softmax,layer_norm,rms_norm,exp,tanh,sigmoid,silu,gelu,gelu_tanh,transpose,attention,attention_causal";
    let d = bench_peers("cpu:0", ops);
    for name in ops.split(',') {
        if !peer_present(&d, name) {
            continue;
        }
        let peer = op(&d, name)["peer"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            peer.starts_with("onnxruntime ") && peer.ends_with(&format!(" {name}")),
            "{peer}"
        );
        ran_beside(&d, name, &peer);
    }
}
