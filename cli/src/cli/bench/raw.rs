//! The raw-API peers of the launch benchmark behind one type: the tiny kernel (`tiny.rs`)
//! launched through opencl3, ash or cudarc themselves on a context and queue of their own,
//! shared by `anyaccel bench` and the criterion benches.

use anyaccel::{Device, DeviceInfo};

use super::tiny;

/// The raw-API peer of one device.
pub enum RawPeer {
    /// Through opencl3.
    #[cfg(feature = "opencl")]
    OpenCl(super::raw_opencl::RawOpenCl),
    /// Through ash.
    #[cfg(feature = "vulkan")]
    Vulkan(super::raw_vulkan::RawVulkan),
    /// Through cudarc.
    #[cfg(feature = "cuda")]
    Cuda(super::raw_cuda::RawCuda),
}

/// The index `N` of a device id `<backend>:N`, as every backend numbers its devices.
#[cfg(any(feature = "opencl", feature = "cuda"))]
fn index(info: &DeviceInfo) -> Result<usize, String> {
    info.id
        .rsplit(':')
        .next()
        .and_then(|i| i.parse::<usize>().ok())
        .ok_or_else(|| format!("device id `{}` has no index", info.id))
}

impl RawPeer {
    /// The peer's name (`opencl3`, `ash`, `cudarc`) and the peer of `device` set up with the
    /// tiny kernel's inputs, or why it could not be; `None` for a backend that has no raw peer
    /// (the CPU, vendor plugins).
    pub fn of(device: &dyn Device) -> Option<(&'static str, Result<RawPeer, String>)> {
        let info: &DeviceInfo = device.info();
        match info.backend.as_str() {
            #[cfg(feature = "opencl")]
            "opencl" => Some((
                "opencl3",
                index(info)
                    .and_then(|i| {
                        super::raw_opencl::RawOpenCl::new(i, &info.name, &[tiny::A], &[tiny::B])
                    })
                    .map(RawPeer::OpenCl),
            )),
            #[cfg(feature = "vulkan")]
            "vulkan" => Some((
                "ash",
                super::raw_vulkan::RawVulkan::new(
                    tiny::vulkan_device_name(&info.name),
                    &[tiny::A],
                    &[tiny::B],
                )
                .map(RawPeer::Vulkan),
            )),
            #[cfg(feature = "cuda")]
            "cuda" => Some((
                "cudarc",
                index(info)
                    .and_then(|i| super::raw_cuda::RawCuda::new(i, &[tiny::A], &[tiny::B]))
                    .map(RawPeer::Cuda),
            )),
            _ => None,
        }
    }

    /// One line for the report: what the peer is and what one dispatch calls.
    pub fn description(&self) -> String {
        match self {
            #[cfg(feature = "opencl")]
            RawPeer::OpenCl(p) => p.description(),
            #[cfg(feature = "vulkan")]
            RawPeer::Vulkan(p) => p.description(),
            #[cfg(feature = "cuda")]
            RawPeer::Cuda(p) => p.description(),
        }
    }

    /// One launch of the tiny kernel, and the wait for it.
    pub fn dispatch(&mut self) -> Result<(), String> {
        match self {
            #[cfg(feature = "opencl")]
            RawPeer::OpenCl(p) => p.dispatch(),
            #[cfg(feature = "vulkan")]
            RawPeer::Vulkan(p) => p.dispatch(),
            #[cfg(feature = "cuda")]
            RawPeer::Cuda(p) => p.dispatch(),
        }
    }

    /// The tiny kernel's output.
    pub fn read_c(&mut self) -> Result<Vec<f32>, String> {
        match self {
            #[cfg(feature = "opencl")]
            RawPeer::OpenCl(p) => p.read_c(),
            #[cfg(feature = "vulkan")]
            RawPeer::Vulkan(p) => p.read_c(),
            #[cfg(feature = "cuda")]
            RawPeer::Cuda(p) => p.read_c(),
        }
    }
}
