//! The shared HAL suite on the CUDA backend. Without an NVIDIA GPU every test says that it
//! skipped, unless `ANYACCEL_REQUIRE` names `cuda`: then they fail.

use std::sync::Arc;

use anyaccel_cuda::CudaBackend;
use anyaccel_hal::Device;

fn cuda() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&CudaBackend)
}

anyaccel_hal::hal_test_suite!(cuda);
