//! # anyaccel-vulkan: the Vulkan backend
//!
//! Any device with a Vulkan 1.2 driver and a compute queue: discrete and integrated GPUs, and
//! Mesa's lavapipe on the CPU. [`VulkanBackend`] opens the system's Vulkan loader
//! (`libvulkan.so.1`) at run time through `ash::Entry::load()`, so building needs no Vulkan SDK;
//! a missing loader or driver is [`anyaccel_hal::Unavailable`] with the loader's words. Each
//! physical device with a compute queue family becomes a [`VulkanDevice`] `vulkan:0`,
//! `vulkan:1`, ... (a device older than Vulkan 1.2 or without timeline semaphores is left
//! out; if none is left, the reason for each is the `Unavailable` reason).
//!
//! - **Memory** ([`VulkanMemory`]): one `VkBuffer` (storage, transfer source and destination)
//!   per allocation, on its own memory. Where the device is a CPU or host and device share
//!   memory, buffers live in host-visible memory that transfers map directly; elsewhere they
//!   are device-local and transfers go through staging buffers. A request beyond
//!   `maxMemoryAllocationSize` or a failed allocation is `OutOfMemory` naming the limit.
//! - **Queues** ([`VulkanQueue`]): each has its own command pool and timeline semaphore and
//!   submits to the device's compute queue. Commands are recorded into a batch with a full
//!   barrier before each, so they run in order, and submitted at sync points; events
//!   ([`VulkanEvent`]) are timeline values, waited for on the device by queues of the same
//!   device and on the host by anything else. Events carry device timestamps where the device
//!   has them.
//! - **Kernels** ([`VulkanKernel`]): WGSL, parsed and validated by naga and written as SPIR-V
//!   by naga at run time, or SPIR-V modules; each becomes a compute pipeline. Where the device
//!   has VK_KHR_push_descriptor (lavapipe, and most desktop drivers) and the kernel has at most
//!   `maxPushDescriptors` buffers, launches push the bindings into the command buffer; else
//!   each launch allocates a descriptor set from the queue's pools and writes it
//!   ([`VulkanDevice::set_push_descriptors`] chooses the latter for kernels compiled after it).
//!
//! ## The kernel argument convention
//!
//! Kernels are written against this mapping of [`anyaccel_hal::KernelArg`]s, which
//! [`VulkanQueue`]'s `launch` applies:
//!
//! - **Buffers.** The i-th `KernelArg::Buffer` (counting buffer arguments only, in order) is
//!   bound at `@group(0) @binding(i)`, declared `var<storage, read>` or
//!   `var<storage, read_write>`. A module declares exactly the bindings `0..n` of group 0, all
//!   storage buffers (no uniform buffers, textures or other groups), and every launch passes
//!   exactly `n` buffers. The bound range is the view, rounded up to whole 4-byte words inside
//!   its buffer (`arrayLength` counts those words' elements). A view's offset must be a multiple
//!   of the device's `minStorageBufferOffsetAlignment` and its length at most
//!   `maxStorageBufferRange`, else the launch is `Unsupported` naming the limit; the op layer
//!   binds whole buffers and passes element offsets as scalars. An empty view binds a
//!   placeholder.
//! - **Scalars.** Every `KernelArg::Bytes`, in order, is padded with zeros to a multiple of 4
//!   bytes, and the pieces are concatenated into one push-constant block. The kernel declares
//!   it as one `var<immediate> p: Params;` (naga's spelling of push constants) whose members
//!   follow the arguments: `KernelArg::scalar(n as u32), KernelArg::scalar(alpha)` go with
//!   `struct Params { n: u32, alpha: f32 }`. The padded total, rounded up to the struct's
//!   alignment, must equal the struct's size, and at most `maxPushConstantsSize` bytes (128 or
//!   more) fit. `f16` members are not allowed in the block; pass `f32`.
//! - **Grid.** `LaunchDims::global` keeps its meaning: total work items per dimension. The
//!   work-group size is the kernel's own `@workgroup_size`, read from naga's entry point (or
//!   SPIR-V `LocalSize`); the launch runs `ceil(global / workgroup_size)` groups per dimension,
//!   so kernels must check `global_invocation_id` against their element count.
//!   `LaunchDims::local` must be `None` or equal to `@workgroup_size`. Launches with more groups
//!   than `maxComputeWorkGroupCount` are split into several dispatches with base offsets, so
//!   `global_invocation_id` stays continuous but `num_workgroups` is that of one piece: do not
//!   index with it. A grid with a zero dimension runs nothing.
//! - **Bounds.** Accesses outside a binding read zero and drop writes (naga's
//!   `ReadZeroSkipWrite` policy): a bug in a kernel cannot write outside its buffers.
//!
//! ```
//! use anyaccel_hal::{Backend, KernelArg, KernelSource, LaunchDims};
//! # fn main() -> anyaccel_hal::Result<()> {
//! let Ok(devices) = anyaccel_vulkan::VulkanBackend.probe() else { return Ok(()) };
//! let device = &devices[0];
//! let kernel = device.compile(&KernelSource::Wgsl {
//!     source: "struct P { n: u32, k: f32 }
//!              var<immediate> p: P;
//!              @group(0) @binding(0) var<storage, read_write> x: array<f32>;
//!              @compute @workgroup_size(64)
//!              fn scale(@builtin(global_invocation_id) id: vec3<u32>) {
//!                  if id.x < p.n { x[id.x] = x[id.x] * p.k; }
//!              }"
//!     .into(),
//!     entry: "scale".into(),
//! })?;
//! let queue = device.create_queue()?;
//! let x = device.alloc(3 * 4)?;
//! queue.write(&x.whole(), bytemuck_free_bytes(&[1.0, 2.0, 3.0]).as_slice())?;
//! queue.launch(
//!     &kernel,
//!     LaunchDims::linear(3),
//!     &[KernelArg::Buffer(x.whole()), KernelArg::scalar(3u32), KernelArg::scalar(2.0f32)],
//! )?;
//! let mut out = [0u8; 12];
//! queue.read(&x.whole(), &mut out)?;
//! assert_eq!(out[4..8], 4.0f32.to_le_bytes());
//! # Ok(())
//! # }
//! # fn bytemuck_free_bytes(v: &[f32]) -> Vec<u8> { v.iter().flat_map(|f| f.to_le_bytes()).collect() }
//! ```

mod device;
mod instance;
mod memory;
mod pipeline;
mod queue;

pub use device::{VulkanDevice, VulkanFeatures, VulkanLimits};
pub use instance::VulkanBackend;
pub use memory::VulkanMemory;
pub use pipeline::{BufferBinding, KernelInterface, ScalarBlock, VulkanKernel};
pub use queue::{VulkanEvent, VulkanQueue, BATCH_COMMANDS};
