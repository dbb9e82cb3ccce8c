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

#[test]
fn map_host_hands_a_mapped_buffer_to_the_host_in_order() {
    let Some(device) = vulkan() else { return };
    let q = device.create_queue().unwrap();
    let b = device.alloc(1 << 16).unwrap();
    let view = b.view(64, 1 << 15).unwrap();
    q.fill(&b.whole(), &[3]).unwrap();
    let mut seen = false;
    let mapped = q
        .map_host(&view, &mut |bytes| {
            seen = bytes.len() == 1 << 15 && bytes.iter().all(|&x| x == 3);
            bytes.fill(8);
            Ok(())
        })
        .unwrap();
    // Host-visible buffers (lavapipe) map; device-local ones say no and are left alone.
    assert_eq!(mapped, device.host_addressable());
    // A command after the map sees what the host wrote.
    q.fill(&b.view(0, 64).unwrap(), &[1]).unwrap();
    let mut out = vec![0u8; 1 << 16];
    q.read(&b.whole(), &mut out).unwrap();
    assert!(out[..64].iter().all(|&x| x == 1));
    let middle = if mapped { 8 } else { 3 };
    assert!(mapped == seen, "the map did not see the fill");
    assert!(out[64..64 + (1 << 15)].iter().all(|&x| x == middle));
    assert!(out[64 + (1 << 15)..].iter().all(|&x| x == 3));
}
