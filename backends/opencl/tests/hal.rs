//! The shared HAL suite on the first OpenCL device.
//!
//! Skips (saying so) when OpenCL is unavailable, unless `ANYACCEL_REQUIRE` names `opencl`.

use std::sync::Arc;

use anyaccel_hal::Device;
use anyaccel_opencl::OpenClBackend;

fn opencl() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&OpenClBackend)
}

anyaccel_hal::hal_test_suite!(opencl);

#[test]
fn map_host_hands_a_cpu_device_s_buffer_to_the_host_in_order() {
    let Some(device) = opencl() else { return };
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
    // A CPU device (PoCL) maps; another kind says no and leaves the buffer alone.
    assert_eq!(mapped, device.host_addressable());
    let mut out = vec![0u8; 1 << 16];
    q.read(&b.whole(), &mut out).unwrap();
    if mapped {
        assert!(seen, "the map did not see the fill");
        assert!(out[..64].iter().all(|&x| x == 3));
        assert!(out[64..64 + (1 << 15)].iter().all(|&x| x == 8));
        assert!(out[64 + (1 << 15)..].iter().all(|&x| x == 3));
        let e = q
            .map_host(&view, &mut |_| {
                Err(anyaccel_hal::Error::invalid_argument("no"))
            })
            .unwrap_err();
        assert!(e.message().contains("no"), "{e}");
    } else {
        assert!(out.iter().all(|&x| x == 3));
    }
}
