//! Probing without a driver: the backend is unavailable with a reason, and nothing panics.

use anyaccel_hal::Backend;
use anyaccel_vulkan::VulkanBackend;

const CHILD: &str = "ANYACCEL_VULKAN_PROBE_CHILD";

/// Runs itself in a child process whose loader is pointed at a driver manifest that does not
/// exist, and checks the reason the child's probe gives.
#[test]
fn probe_without_a_driver_is_unavailable_with_the_reason() {
    if std::env::var_os(CHILD).is_some() {
        match VulkanBackend.probe() {
            Ok(devices) => println!("DEVICES: {}", devices.len()),
            Err(u) => println!("REASON: {}", u.reason),
        }
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "probe_without_a_driver_is_unavailable_with_the_reason",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .expect("running the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child failed (a panic or a crash while probing?):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The test harness prints the test's name on the same line, before the output.
    let after = |marker: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(marker).map(|(_, rest)| rest.to_string()))
    };
    if let Some(n) = after("DEVICES: ") {
        panic!("the probe found {n} devices with no driver to load");
    }
    let reason =
        after("REASON: ").unwrap_or_else(|| panic!("the child printed no reason:\n{stdout}"));
    // Without a loader the reason is the dlopen error; with one, the loader's own result.
    let explained = reason.contains("libvulkan")
        || reason.contains("ERROR_INCOMPATIBLE_DRIVER")
        || reason.contains("no physical device");
    assert!(explained, "unclear reason: {reason}");
    println!("reason given: {reason}");
}
