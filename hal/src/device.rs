//! The object-safe traits that every backend implements: [`Backend`], [`Device`], [`Queue`],
//! [`Event`], and the descriptions [`DeviceInfo`] and [`Caps`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Buffer, BufferView, DType, Dialect, Error, Kernel, KernelArg, KernelCache, KernelSource,
    LaunchDims, OpCall, Result, Unavailable,
};

/// A family of devices behind one vendor runtime: `cpu`, `opencl`, `vulkan`, `cuda`,
/// `plugin:<name>`.
pub trait Backend: Send + Sync {
    /// The backend's name.
    fn name(&self) -> &str;
    /// Loads the vendor runtime and lists its devices. A missing or broken runtime is
    /// `Unavailable` with the loader's own words; this never panics.
    fn probe(&self) -> Result<Vec<Arc<dyn Device>>, Unavailable>;
}

/// What a device is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    /// Unique id within a runtime: `<backend>:<index>`, e.g. `opencl:0`.
    pub id: String,
    /// The backend's name.
    pub backend: String,
    /// The device's own name.
    pub name: String,
    /// Its vendor.
    pub vendor: String,
    /// Driver or runtime version.
    pub driver_version: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// The largest single allocation in bytes.
    pub max_buffer_bytes: u64,
    /// The largest work-group (total items), 1 where the notion does not apply.
    pub max_work_group_size: u64,
    /// Compute units (cores, SMs, CUs).
    pub compute_units: u32,
}

/// What a device can do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caps {
    /// Element types it stores and computes.
    pub dtypes: Vec<DType>,
    /// Kernel dialects it compiles.
    pub dialects: Vec<Dialect>,
    /// Ops it runs natively (cuBLAS, a plugin's ops), by the names of `docs/ops.md`.
    pub native_ops: Vec<String>,
    /// True when events carry device timestamps.
    pub timestamps: bool,
}

impl Caps {
    /// True when the device holds this dtype.
    pub fn has_dtype(&self, dtype: DType) -> bool {
        self.dtypes.contains(&dtype)
    }

    /// True when the device compiles this dialect.
    pub fn has_dialect(&self, dialect: &Dialect) -> bool {
        self.dialects.contains(dialect)
    }
}

/// One accelerator (or the host).
pub trait Device: Send + Sync + Any {
    /// What the device is.
    fn info(&self) -> &DeviceInfo;
    /// What it can do.
    fn caps(&self) -> &Caps;
    /// Allocates `bytes` bytes. Zero is allowed. Too much is `OutOfMemory`, never a crash.
    fn alloc(&self, bytes: usize) -> Result<Buffer>;
    /// A new in-order queue.
    fn create_queue(&self) -> Result<Arc<dyn Queue>>;
    /// Compiles a kernel. A compile error carries the compiler's log.
    fn compile(&self, source: &KernelSource) -> Result<Arc<dyn Kernel>>;
    /// This device's compiled kernels.
    fn kernel_cache(&self) -> &KernelCache;
    /// Allocations not yet freed.
    fn live_allocations(&self) -> usize;
    /// True when the device runs this op call natively. See [`Caps::native_ops`].
    fn supports_native_op(&self, call: &OpCall) -> bool {
        let _ = call;
        false
    }
    /// Runs a native op on `queue`. Only called when [`Device::supports_native_op`] said yes.
    fn execute_native_op(&self, queue: &dyn Queue, call: &OpCall) -> Result<()> {
        let _ = queue;
        Err(Error::unsupported(format!(
            "{}: device {} has no native op `{}`",
            call.op,
            self.info().id,
            call.op
        )))
    }
    /// Whether this device's queues copy straight from `src`'s memory with
    /// [`Queue::copy_peer`]: a peer path between two devices of one backend (a plugin's
    /// `copy_peer`). [`Tensor::copy_to`](crate::Tensor::copy_to) takes it when there is one, and
    /// stages through host memory when not. Default: no peer path.
    fn copies_from(&self, src: &dyn Device) -> bool {
        let _ = src;
        false
    }
    /// Whether the device's memory is host memory that its queues hand to the calling thread
    /// ([`Queue::map_host`] returns `true` for its buffers): the CPU device. Default: no.
    fn host_addressable(&self) -> bool {
        false
    }
    /// The device's own collective library, for [`DeviceGroup`](crate::DeviceGroup)s made only
    /// of devices that share it (a vendor plugin's collectives table). Default: none.
    fn collectives(&self) -> Option<Arc<dyn crate::group::CollectiveLibrary>> {
        None
    }
    /// For backends to recover their own type.
    fn as_any(&self) -> &dyn Any;
}

/// Whether `a` and `b` are one device object. Ids are not enough: two runtimes (or two probes
/// of one backend) each have a `cpu:0`, whose memory and queues must not be mixed.
pub fn same_device(a: &Arc<dyn Device>, b: &Arc<dyn Device>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// An in-order queue of commands on one device.
///
/// Commands run in submission order. `write`, `copy`, `fill` and `launch` may return before the
/// work is done; `read`, `finish` and [`Event::wait`] wait. A command that fails asynchronously
/// makes the queue skip the commands after it, and its error comes back, unchanged, at the next
/// `read` or `finish` (or from an event recorded after it); after that the queue runs again.
pub trait Queue: Send + Sync {
    /// The id of the device.
    fn device_id(&self) -> &str;
    /// The device the queue runs on.
    fn device(&self) -> Arc<dyn Device>;
    /// Copies `data` into `dst`. `data` is copied before this returns; `data.len()` must equal
    /// `dst.len()`.
    fn write(&self, dst: &BufferView, data: &[u8]) -> Result<()>;
    /// Waits for earlier commands, then copies `src` into `dst` (lengths must match).
    fn read(&self, src: &BufferView, dst: &mut [u8]) -> Result<()>;
    /// Copies `src` into `dst` on the device. Lengths must match; overlapping views of one
    /// buffer are rejected.
    fn copy(&self, src: &BufferView, dst: &BufferView) -> Result<()>;
    /// Copies `src`, memory of another device whose memory this queue's device copies from
    /// ([`Device::copies_from`]), into `dst` on this queue's device, as a command of this queue.
    /// Lengths must match. The caller orders it against the source device's queues (see
    /// [`Tensor::copy_to`](crate::Tensor::copy_to)). Default: unsupported.
    fn copy_peer(&self, src: &BufferView, dst: &BufferView) -> Result<()> {
        let _ = dst;
        Err(Error::unsupported(format!(
            "copy_peer: {} has no peer path from {}; copy through host memory \
             (Tensor::copy_to does)",
            self.device_id(),
            src.buffer().device_id()
        )))
    }
    /// When `view` is memory the calling thread can address (the CPU device's), runs `f` on
    /// its bytes in place and returns `Ok(true)`: after this queue's earlier commands (their
    /// error comes back here first, as from [`Queue::read`]) and before its later ones (other
    /// threads submitting to this queue wait until `f` returns). Otherwise returns `Ok(false)`
    /// without calling `f` (the default). Copies between devices and collectives use it to
    /// skip a staging copy; `f`'s error is returned.
    fn map_host(
        &self,
        view: &BufferView,
        f: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<bool> {
        let _ = (view, f);
        Ok(false)
    }
    /// Fills `dst` with a pattern of 1, 2 or 4 bytes; `dst.len()` must be a multiple of it.
    fn fill(&self, dst: &BufferView, pattern: &[u8]) -> Result<()>;
    /// Launches a kernel compiled by this queue's device. The launch contract, the same on
    /// every backend:
    ///
    /// - **Arguments** are passed in the kernel's parameter order. A [`KernelArg::Buffer`] is
    ///   the bytes of its view: the kernel's parameter (a pointer, a `cl_mem`, a storage-buffer
    ///   binding, a plugin's buffer and offset) starts at the view's first byte and may touch
    ///   only the view's bytes; an empty view is a valid argument that the kernel must not
    ///   touch. A view's buffer must be of this queue's device. Devices that bind views at
    ///   offsets only at an alignment (OpenCL sub-buffers: `CL_DEVICE_MEM_BASE_ADDR_ALIGN`;
    ///   Vulkan: `minStorageBufferOffsetAlignment`) refuse other offsets with `Unsupported`
    ///   (bind the whole buffer and pass an element offset instead). A [`KernelArg::Bytes`] is
    ///   a by-value parameter of at least one byte.
    /// - **Grid**: `dims.global` is the number of work items in x, y, z. With `dims.local`
    ///   given, each local size is at least 1, each global size is a multiple of it, and their
    ///   product is at most [`DeviceInfo::max_work_group_size`]; exactly `global` items run.
    ///   With `dims.local` = `None` the backend picks the work-group, and may run more items
    ///   than `global` (whole work-groups): kernels check their index against their own sizes.
    ///   A zero in `global` runs nothing (the arguments are still checked).
    /// - The dialect adds its own rules (a WGSL kernel's `local` must equal its
    ///   `@workgroup_size`; argument counts and sizes are checked against the kernel where the
    ///   runtime tells them).
    ///
    /// The checks that need no backend knowledge are made here, once, by
    /// [`validate::launch`]; then [`Queue::submit_launch`] enqueues the launch. Backends
    /// implement `submit_launch` and leave this method as it is.
    fn launch(&self, kernel: &Arc<dyn Kernel>, dims: LaunchDims, args: &[KernelArg]) -> Result<()> {
        validate::launch(self.device().info(), kernel, &dims, args)?;
        self.submit_launch(kernel, dims, args)
    }
    /// Enqueues a launch that [`Queue::launch`] has checked against the launch contract; only
    /// the backend's own checks (kernel type, dialect rules, device limits) remain.
    fn submit_launch(
        &self,
        kernel: &Arc<dyn Kernel>,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<()>;
    /// An event that completes when every command submitted so far has completed.
    fn record_event(&self) -> Result<Arc<dyn Event>>;
    /// Makes later commands wait until `event` (from any queue of any device) completes.
    fn wait_event(&self, event: &Arc<dyn Event>) -> Result<()>;
    /// Waits until every command submitted so far has completed; returns a sticky error.
    fn finish(&self) -> Result<()>;
    /// For backends to recover their own type (a device's native ops run on its own queues).
    fn as_any(&self) -> &dyn Any;
}

/// A point in a queue's stream of commands.
pub trait Event: Send + Sync + Any {
    /// Waits until the event completes. An error of the work before it comes back here.
    fn wait(&self) -> Result<()>;
    /// True once the event has completed.
    fn is_done(&self) -> bool;
    /// Time between `start` and this event, both completed and from the same device.
    fn elapsed_since(&self, start: &dyn Event) -> Result<Duration>;
    /// For backends to recover their own type.
    fn as_any(&self) -> &dyn Any;
}

/// An event that has already completed with an error: waiting on it returns the error. A
/// queue told to wait on it ([`Queue::wait_event`]) fails as if a command of its own had
/// failed, so the error comes back at the queue's next synchronization. The op layer reports an
/// error found while an op ran (an index out of range) this way on every backend.
#[derive(Debug, Clone)]
pub struct FailedEvent {
    error: Error,
}

impl FailedEvent {
    /// An event that completed with `error`.
    pub fn new(error: Error) -> FailedEvent {
        FailedEvent { error }
    }
}

impl Event for FailedEvent {
    fn wait(&self) -> Result<()> {
        Err(self.error.clone())
    }
    fn is_done(&self) -> bool {
        true
    }
    fn elapsed_since(&self, _: &dyn Event) -> Result<Duration> {
        Err(Error::unsupported("a failed event carries no timestamp"))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Argument checks that every backend shares, so that every backend words errors alike.
pub mod validate {
    use super::*;

    /// `view` must belong to `device_id`. `what` names the argument in the message; it is
    /// formatted only when there is one, so a label that costs a `format!` may be passed as a
    /// `Display` value (see `format_args!` or a small type of the caller's).
    pub fn on_device(what: impl fmt::Display, view: &BufferView, device_id: &str) -> Result<()> {
        if view.buffer().device_id() != device_id {
            return Err(Error::invalid_argument(format!(
                "{what}: buffer is on device {}, expected a buffer of device {device_id}",
                view.buffer().device_id()
            )));
        }
        Ok(())
    }

    /// A host transfer's lengths must match.
    pub fn transfer(what: &str, view: &BufferView, host_len: usize, device_id: &str) -> Result<()> {
        on_device(what, view, device_id)?;
        if view.len() != host_len {
            return Err(Error::invalid_argument(format!(
                "{what}: host slice has {host_len} bytes but the view has {}: lengths must match",
                view.len()
            )));
        }
        Ok(())
    }

    /// A device copy: same device, same length, no overlap.
    pub fn copy(src: &BufferView, dst: &BufferView, device_id: &str) -> Result<()> {
        on_device("copy src", src, device_id)?;
        on_device("copy dst", dst, device_id)?;
        if src.len() != dst.len() {
            return Err(Error::invalid_argument(format!(
                "copy: src has {} bytes but dst has {}: lengths must match",
                src.len(),
                dst.len()
            )));
        }
        if src.overlaps(dst) {
            return Err(Error::invalid_argument(format!(
                "copy: src bytes {}..{} and dst bytes {}..{} overlap in one buffer: views must be disjoint",
                src.offset(),
                src.offset() + src.len(),
                dst.offset(),
                dst.offset() + dst.len()
            )));
        }
        Ok(())
    }

    /// A fill: pattern of 1, 2 or 4 bytes, length a multiple of it.
    pub fn fill(dst: &BufferView, pattern: &[u8], device_id: &str) -> Result<()> {
        on_device("fill", dst, device_id)?;
        if !matches!(pattern.len(), 1 | 2 | 4) {
            return Err(Error::invalid_argument(format!(
                "fill: pattern has {} bytes, expected 1, 2 or 4",
                pattern.len()
            )));
        }
        if !dst.len().is_multiple_of(pattern.len()) {
            return Err(Error::invalid_argument(format!(
                "fill: view of {} bytes is not a multiple of the {}-byte pattern",
                dst.len(),
                pattern.len()
            )));
        }
        Ok(())
    }

    /// The launch contract of [`Queue::launch`], for the queue of device `info`: the kernel is
    /// of this device, every buffer argument's view is of this device, every by-value argument
    /// has bytes, and a given work-group is non-empty, divides the grid and fits the device.
    pub fn launch(
        info: &DeviceInfo,
        kernel: &Arc<dyn Kernel>,
        dims: &LaunchDims,
        args: &[KernelArg],
    ) -> Result<()> {
        let device_id = info.id.as_str();
        self::kernel(kernel, device_id)?;
        let name = kernel.name();
        for (i, arg) in args.iter().enumerate() {
            match arg {
                KernelArg::Buffer(view) => on_device(
                    format_args!("launch `{name}` argument {i}"),
                    view,
                    device_id,
                )?,
                KernelArg::Bytes(bytes) if bytes.is_empty() => {
                    return Err(Error::invalid_argument(format!(
                        "launch `{name}`: argument {i} has no bytes; a by-value argument has at \
                         least one"
                    )))
                }
                KernelArg::Bytes(_) => {}
            }
        }
        if let Some(local) = dims.local {
            let [gx, gy, gz] = dims.global;
            let [lx, ly, lz] = local;
            if local.contains(&0) {
                return Err(Error::invalid_argument(format!(
                    "launch `{name}`: local size {lx}x{ly}x{lz} has a zero: each must be at least 1"
                )));
            }
            if dims
                .global
                .iter()
                .zip(&local)
                .any(|(&g, &l)| g % l as u64 != 0)
            {
                return Err(Error::invalid_argument(format!(
                    "launch `{name}`: global size {gx}x{gy}x{gz} is not a multiple of local \
                     size {lx}x{ly}x{lz}: round the global size up to a multiple of the local \
                     size (or leave local as None)"
                )));
            }
            let items: u128 = local.iter().map(|&l| l as u128).product();
            if items > info.max_work_group_size as u128 {
                return Err(Error::invalid_argument(format!(
                    "launch `{name}`: local size {lx}x{ly}x{lz} has {items} work items, more \
                     than the {} of {device_id}'s largest work-group",
                    info.max_work_group_size
                )));
            }
        }
        Ok(())
    }

    /// The backend's own kernel type behind `kernel` (which [`launch`] has checked to be of the
    /// queue's device), or an error saying it is not `what` ("a CPU kernel").
    pub fn kernel_as<'k, K: Kernel>(kernel: &'k Arc<dyn Kernel>, what: &str) -> Result<&'k K> {
        kernel.as_any().downcast_ref::<K>().ok_or_else(|| {
            Error::invalid_argument(format!("launch: kernel `{}` is not {what}", kernel.name()))
        })
    }

    /// A kernel must come from the queue's device.
    pub fn kernel(kernel: &Arc<dyn Kernel>, device_id: &str) -> Result<()> {
        if kernel.device_id() != device_id {
            return Err(Error::invalid_argument(format!(
                "launch: kernel `{}` was compiled for device {}, expected one of device {device_id}",
                kernel.name(),
                kernel.device_id()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::tests::Fake;
    use crate::{Buffer, ErrorCode};

    struct FakeKernel(&'static str);
    impl Kernel for FakeKernel {
        fn name(&self) -> &str {
            "k"
        }
        fn dialect(&self) -> crate::Dialect {
            crate::Dialect::Host
        }
        fn device_id(&self) -> &str {
            self.0
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn info(max_work_group_size: u64) -> DeviceInfo {
        DeviceInfo {
            id: "fake:0".into(),
            max_work_group_size,
            ..DeviceInfo::default()
        }
    }

    #[track_caller]
    fn refused(r: Result<()>, needle: &str) {
        let e = r.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
        assert!(e.message().contains(needle), "{e}");
    }

    #[test]
    fn the_launch_contract_is_checked_once_for_every_backend() {
        let k: Arc<dyn Kernel> = Arc::new(FakeKernel("fake:0"));
        let buf = Buffer::new(Arc::new(Fake(16)));
        let args = [
            KernelArg::Buffer(buf.view(4, 8).unwrap()),
            KernelArg::scalar(1u32),
        ];
        let dims = |g: u64, l: Option<u32>| LaunchDims {
            global: [g, 1, 1],
            local: l.map(|l| [l, 1, 1]),
        };
        let i = info(256);
        validate::launch(&i, &k, &dims(512, Some(256)), &args).unwrap();
        validate::launch(&i, &k, &dims(1000, None), &args).unwrap();
        validate::launch(&i, &k, &dims(0, Some(64)), &args).unwrap();
        let other: Arc<dyn Kernel> = Arc::new(FakeKernel("fake:1"));
        refused(
            validate::launch(&i, &other, &dims(1, None), &args),
            "compiled for device fake:1",
        );
        let elsewhere = info(256);
        let elsewhere = DeviceInfo {
            id: "fake:1".into(),
            ..elsewhere
        };
        refused(
            validate::launch(&elsewhere, &other, &dims(1, None), &args),
            "launch `k` argument 0: buffer is on device fake:0",
        );
        refused(
            validate::launch(&i, &k, &dims(1, None), &[KernelArg::Bytes(Vec::new())]),
            "argument 0 has no bytes",
        );
        refused(
            validate::launch(&i, &k, &dims(64, Some(0)), &args),
            "has a zero",
        );
        refused(
            validate::launch(&i, &k, &dims(1000, Some(64)), &args),
            "not a multiple of local size 64x1x1",
        );
        refused(
            validate::launch(&i, &k, &dims(512, Some(512)), &args),
            "more than the 256",
        );
    }
}
