//! The shared HAL suite on the Vulkan backend: once as the device comes (mapped memory used
//! directly where it can be), once with every transfer going through staging buffers.

use std::sync::Arc;

use anyaccel_hal::Device;
use anyaccel_vulkan::{VulkanBackend, VulkanDevice};

fn vulkan() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&VulkanBackend)
}

anyaccel_hal::hal_test_suite!(vulkan);

/// The same suite as on a discrete GPU without VK_KHR_push_descriptor: direct host access off,
/// and every launch binding a descriptor set from the queue's pools.
mod staged {
    use super::*;

    fn vulkan_staged() -> Option<Arc<dyn Device>> {
        let device = anyaccel_hal::testing::device_or_skip(&VulkanBackend)?;
        let vk = device
            .as_any()
            .downcast_ref::<VulkanDevice>()
            .expect("a Vulkan device");
        vk.set_direct_host_access(false);
        vk.set_push_descriptors(false);
        Some(device)
    }

    anyaccel_hal::hal_test_suite!(vulkan_staged);
}
