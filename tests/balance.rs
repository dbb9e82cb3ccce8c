//! The balancer of heterogeneous data parallelism against a slow and a fast device: the
//! reference plugin with `ANYACCEL_REF_DEVICES=20,5`, two devices whose ops take at least their
//! operand bytes at 20 and 5 MB/s (a 4:1 speed ratio that sleeping, not the two shared cores,
//! sets). With balancing, a step's compute time is within 10% of the ideal split's (the batch
//! over the sum of the devices' standalone throughputs) and at least 1.5x better than an even
//! split. Its own test binary: the plugin reads the variable once a process.

#[path = "../backends/plugin/tests/common/mod.rs"]
mod common;
#[allow(dead_code)] // the example's binary uses the rest
#[path = "../examples/data_parallel/mlp.rs"]
mod mlp;

use anyaccel::hal::Backend;
use mlp::{balance_report, Config};

#[test]
fn balancing_a_fast_and_a_slow_device_comes_near_the_ideal_split() {
    std::env::set_var("ANYACCEL_REF_DEVICES", "20,5");
    let plugin = anyaccel::plugin::PluginBackend::load(common::reference_plugin());
    let devices = plugin
        .probe()
        .expect("the paced reference plugin's devices");
    assert_eq!(
        devices.len(),
        2,
        "ANYACCEL_REF_DEVICES=20,5 gives two devices"
    );
    assert!(
        devices[1].info().name.contains("5 MB/s"),
        "{}",
        devices[1].info().name
    );
    let queues: Vec<_> = devices.iter().map(|d| d.create_queue().unwrap()).collect();
    let config = Config {
        rebalance_every: 2,
        ..Config::default()
    };
    let r = balance_report(&config, &queues, 5, 6).unwrap();
    let ratio = r.standalone[0] / r.standalone[1];
    assert!(
        (3.0..5.0).contains(&ratio),
        "the devices' speeds are not 4:1: {r:?}"
    );
    assert!(
        r.balanced_seconds <= 1.10 * r.ideal_seconds,
        "balanced step {:.1} ms, more than 10% over the ideal {:.1} ms: {r:?}",
        r.balanced_seconds * 1e3,
        r.ideal_seconds * 1e3
    );
    assert!(
        r.even_seconds >= 1.5 * r.balanced_seconds,
        "an even split {:.1} ms is not 1.5x slower than the balanced {:.1} ms: {r:?}",
        r.even_seconds * 1e3,
        r.balanced_seconds * 1e3
    );
}
