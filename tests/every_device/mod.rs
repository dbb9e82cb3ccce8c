//! One device of every backend here, for the facade's tests across devices: the CPU, OpenCL
//! (PoCL), Vulkan (lavapipe) and the C reference vendor plugin (built from source), each when
//! available (and required when `ANYACCEL_REQUIRE` names it).

use std::sync::Arc;

use anyaccel::hal::testing::device_or_skip;
use anyaccel::hal::Device;

#[path = "../../backends/plugin/tests/common/mod.rs"]
mod common;

/// One device of every available backend, in that order.
pub fn devices() -> Vec<Arc<dyn Device>> {
    let mut devices = Vec::new();
    devices.extend(device_or_skip(&anyaccel::cpu::CpuBackend));
    devices.extend(device_or_skip(&anyaccel::opencl::OpenClBackend));
    devices.extend(device_or_skip(&anyaccel::vulkan::VulkanBackend));
    let plugin = anyaccel::plugin::PluginBackend::load(common::reference_plugin());
    devices.push(device_or_skip(&plugin).expect("the reference plugin, built from source, loads"));
    devices
}
