//! The shared HAL suite on the Vulkan backend: once as the device comes (mapped memory used
//! directly where it can be), once with every transfer going through staging buffers.

use std::sync::Arc;

use anyaccel_hal::Device;
use anyaccel_vulkan::{VulkanBackend, VulkanDevice};

fn vulkan() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&VulkanBackend)
}

anyaccel_hal::hal_test_suite!(vulkan);

/// The same suite with direct host access off, as on a discrete GPU.
mod staged {
    use super::*;

    fn vulkan_staged() -> Option<Arc<dyn Device>> {
        let device = anyaccel_hal::testing::device_or_skip(&VulkanBackend)?;
        device
            .as_any()
            .downcast_ref::<VulkanDevice>()
            .expect("a Vulkan device")
            .set_direct_host_access(false);
        Some(device)
    }

    anyaccel_hal::hal_test_suite!(vulkan_staged);
}
