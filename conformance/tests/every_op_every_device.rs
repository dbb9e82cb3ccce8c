//! Op conformance as cargo tests, as a framework's own suite runs its kernels: for every op of
//! the catalog, one case per dtype (its first case of that dtype), on every device the tests can
//! reach (the CPU always; OpenCL and Vulkan where installed, or required by `ANYACCEL_REQUIRE`).
//! The whole suite, every case at full size, is `anyaccel conformance`.
//!
//! The same test proves that the catalog and the suite agree: every op has cases, and its
//! reference computes them (a case passes only against the f64 reference's values).

use std::collections::HashSet;
use std::sync::Arc;

use anyaccel_conformance::cases::{all_cases, Case};
use anyaccel_conformance::exec::{run_case, Verdict};
use anyaccel_hal::testing::device_or_skip;
use anyaccel_hal::Device;
use anyaccel_ops::CATALOG;

/// One case per (op, dtype): the first in the suite's order, not a large one.
fn sample() -> Vec<Case> {
    let mut seen = HashSet::new();
    all_cases()
        .into_iter()
        .filter(|c| {
            !c.large
                && c.op.is_some()
                && seen.insert((
                    c.op.unwrap_or_default(),
                    c.dtype.clone().unwrap_or_default(),
                ))
        })
        .collect()
}

fn run_on(device: Arc<dyn Device>) {
    let cases = sample();
    for def in CATALOG.iter() {
        assert!(
            cases.iter().any(|c| c.op == Some(def.name)),
            "op {} has no cases",
            def.name
        );
    }
    let mut failures = Vec::new();
    let mut passed_ops = HashSet::new();
    for case in &cases {
        let outcome = run_case(&device, case, 1);
        match outcome.verdict {
            Verdict::Passed => {
                passed_ops.insert(case.op.unwrap_or_default());
            }
            // A dtype the device does not hold, said by the device.
            Verdict::Skipped => {}
            _ => failures.push(format!(
                "{}: {:?}: {}",
                case.id,
                outcome.verdict,
                outcome.reason.unwrap_or_default()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases on {} did not pass:\n{}",
        failures.len(),
        cases.len(),
        device.info().id,
        failures.join("\n")
    );
    for def in CATALOG.iter() {
        assert!(
            passed_ops.contains(def.name),
            "no case of {} passed on {}",
            def.name,
            device.info().id
        );
    }
}

#[test]
fn cpu() {
    if let Some(d) = device_or_skip(&anyaccel_cpu::CpuBackend) {
        run_on(d);
    }
}

#[test]
fn opencl() {
    if let Some(d) = device_or_skip(&anyaccel_opencl::OpenClBackend) {
        run_on(d);
    }
}

#[test]
fn vulkan() {
    if let Some(d) = device_or_skip(&anyaccel_vulkan::VulkanBackend) {
        run_on(d);
    }
}
