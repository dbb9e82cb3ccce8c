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
