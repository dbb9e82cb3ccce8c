//! The tiny kernel of the launch benchmark (a one-element add, `kernels/tiny_add.*`) in each
//! dialect that a backend compiles, shared by `anyaccel bench` and the criterion benches.

use anyaccel::KernelSource;

/// The tiny kernel's entry point, in every dialect.
pub const ENTRY: &str = "tiny_add";

/// The tiny kernel's inputs, one element each, and their sum.
pub const A: f32 = 1.5;
/// See [`A`].
pub const B: f32 = 2.25;
/// See [`A`].
pub const C: f32 = 3.75;

/// The tiny kernel in the dialect that `backend`'s devices compile, `None` for a backend that
/// has it in none (the CPU runs host kernels, written in Rust).
pub fn kernel(backend: &str) -> Option<KernelSource> {
    let entry = ENTRY.to_string();
    match backend {
        "opencl" => Some(KernelSource::OpenClC {
            source: include_str!("kernels/tiny_add.cl").to_string(),
            entry,
            options: String::new(),
        }),
        "vulkan" => Some(KernelSource::Wgsl {
            source: include_str!("kernels/tiny_add.wgsl").to_string(),
            entry,
        }),
        "cuda" => Some(KernelSource::Cuda {
            source: include_str!("kernels/tiny_add.cu").to_string(),
            entry,
            options: Vec::new(),
        }),
        _ => None,
    }
}

/// The driver's own name of an anyaccel Vulkan device, which anyaccel names
/// `<deviceName> (<device type>)`.
pub fn vulkan_device_name(anyaccel_name: &str) -> &str {
    anyaccel_name
        .rsplit_once(" (")
        .map_or(anyaccel_name, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gpu_dialect_has_the_kernel_and_the_cpu_none() {
        for backend in ["opencl", "vulkan", "cuda"] {
            let k = kernel(backend).unwrap();
            let text = match &k {
                KernelSource::OpenClC { source, .. }
                | KernelSource::Wgsl { source, .. }
                | KernelSource::Cuda { source, .. } => source,
                _ => unreachable!(),
            };
            assert!(text.contains(ENTRY), "{backend}");
        }
        assert!(kernel("cpu").is_none());
        assert_eq!(
            vulkan_device_name("llvmpipe (LLVM 15.0.6, 256 bits) (CPU)"),
            "llvmpipe (LLVM 15.0.6, 256 bits)"
        );
        assert_eq!(vulkan_device_name("plain"), "plain");
    }
}
