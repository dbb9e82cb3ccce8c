//! The data-parallel training example (`examples/data_parallel`) across every device here at
//! once (CPU, OpenCL, Vulkan, the reference plugin, each when available): the replicas stay
//! bit-identical, the loss falls, and the loss curve matches training on one device alone
//! within the conformance suite's f32 tolerance.

mod every_device;
#[allow(dead_code)] // the example's binary uses the rest
#[path = "../examples/data_parallel/mlp.rs"]
mod mlp;

use std::sync::Arc;

use anyaccel::Queue;
use mlp::{compare_losses, train, Config, Trainer};

fn queues() -> Vec<Arc<dyn Queue>> {
    every_device::devices()
        .iter()
        .map(|d| d.create_queue().expect("a queue"))
        .collect()
}

#[test]
fn training_across_every_device_matches_one_device() {
    let queues = queues();
    let config = Config {
        rebalance_every: 3,
        ..Config::default()
    };
    let steps = 24;
    let mut dp = Trainer::local(&config, queues.clone()).unwrap();
    dp.warm_up().unwrap();
    let reports = train(&mut dp, steps).unwrap();
    assert!(dp.replicas_identical().unwrap(), "replicas diverged");
    // The balancer moved work: some step's split is not the even one.
    let even = &reports[0].split;
    assert_eq!(even.iter().sum::<usize>(), config.batch);
    assert!(reports
        .iter()
        .all(|r| r.split.iter().sum::<usize>() == config.batch));
    if queues.len() > 1 {
        assert!(reports.iter().any(|r| &r.split != even), "never rebalanced");
    }
    let losses: Vec<f64> = reports.iter().map(|r| r.loss).collect();

    let single = Config {
        rebalance_every: 0,
        ..config.clone()
    };
    let mut one = Trainer::local(&single, vec![Arc::clone(&queues[0])]).unwrap();
    let want: Vec<f64> = train(&mut one, steps)
        .unwrap()
        .iter()
        .map(|r| r.loss)
        .collect();
    let (first, worst) = compare_losses(&losses, &want);
    assert!(
        first.is_none(),
        "loss differs from one device's (step, got, want): {first:?}; largest difference {worst}"
    );
    assert!(
        want[steps - 1] < 0.5 * want[0],
        "the model does not learn: {want:?}"
    );
}

#[test]
fn a_replica_refuses_parameters_of_another_shape() {
    let q = anyaccel::Runtime::new()
        .device("cpu:0")
        .unwrap()
        .create_queue()
        .unwrap();
    let e = mlp::Replica::new(q, &Config::default(), &[0.0; 3])
        .err()
        .expect("refused");
    assert!(e.message().contains("3 parameters"), "{e}");
}
