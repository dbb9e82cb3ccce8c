//! Kernels: CUDA C through NVRTC and PTX, loaded as modules; launch arguments and grids.

use std::any::Any;
use std::ffi::{c_void, CString};
use std::sync::Arc;

use anyaccel_hal::{
    Device, Dialect, Error, ErrorCode, Kernel, KernelArg, KernelSource, LaunchDims, Result,
};
use cudarc::driver::sys::{self, CUresult};

use crate::device::CudaDevice;
use crate::driver::{check, cu_error, describe, has_symbol, Context};
use crate::memory::CudaMemory;
use crate::nvrtc;

/// Size of the buffer that receives the driver's JIT error log.
const JIT_LOG_BYTES: usize = 16 << 10;

/// A kernel loaded on a CUDA device: a module and the function in it.
///
/// Arguments go to the function's parameters in order: a [`KernelArg::Buffer`] is the device
/// address of the view's first byte (a pointer parameter), and a [`KernelArg::Bytes`] is copied
/// into a parameter of exactly its size (a scalar or a struct by value). Where the driver can
/// tell the parameters (CUDA 12.4 and newer), `launch` checks the count and every size first.
pub struct CudaKernel {
    name: String,
    dialect: Dialect,
    device_id: Arc<str>,
    ctx: Arc<Context>,
    module: sys::CUmodule,
    function: sys::CUfunction,
    max_threads: u32,
    params: Option<Vec<usize>>,
    target: String,
}

// SAFETY: modules and functions may be used from any thread of the process; the handles are
// pointers that the driver owns, released once in Drop.
unsafe impl Send for CudaKernel {}
// SAFETY: as above: launching a function from several threads is thread-safe in the driver.
unsafe impl Sync for CudaKernel {}

impl CudaKernel {
    /// The most threads per block the function can be launched with (its registers and the
    /// device decide).
    pub fn max_threads_per_block(&self) -> u32 {
        self.max_threads
    }

    /// The sizes in bytes of the function's parameters, when the driver can tell them.
    pub fn param_sizes(&self) -> Option<&[usize]> {
        self.params.as_deref()
    }

    /// What the kernel was built as: `sm_90 cubin (NVRTC 12.9)`, `compute_89 PTX (NVRTC 12.9),
    /// JIT by the driver`, or `PTX, JIT by the driver`.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub(crate) fn function(&self) -> sys::CUfunction {
        self.function
    }

    pub(crate) fn in_context(&self, ctx: &Context) -> bool {
        self.ctx.raw() == ctx.raw()
    }
}

impl Kernel for CudaKernel {
    fn name(&self) -> &str {
        &self.name
    }

    fn dialect(&self) -> Dialect {
        self.dialect.clone()
    }

    fn device_id(&self) -> &str {
        &self.device_id
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for CudaKernel {
    fn drop(&mut self) {
        // The function may still run in a stream: wait for the context's work first (a failed
        // wait means the context is lost, and unloading is still right).
        let _ = self.ctx.synchronize();
        if self.ctx.bind().is_ok() {
            // SAFETY: a module loaded in this context, unloaded once, with no work left.
            unsafe {
                sys::cuModuleUnload(self.module);
            }
        }
    }
}

/// Compiles `source` for `device`.
pub(crate) fn compile(device: &CudaDevice, source: &KernelSource) -> Result<Arc<dyn Kernel>> {
    let id = &device.info().id;
    let (image, entry, dialect, target) = match source {
        KernelSource::Cuda {
            source,
            entry,
            options,
        } => {
            let cc = device.compute_capability();
            let Some(arch) = nvrtc::best_arch_for(cc)? else {
                return Err(Error::unsupported(format!(
                    "compile `{entry}` for {id}: NVRTC {} compiles for {}, all newer than the \
                     device's {cc}",
                    nvrtc_version(),
                    nvrtc::supported_archs()?
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            // A cubin for the device itself needs no JIT, and so runs on a driver older than
            // NVRTC; an older architecture goes as PTX through the driver's JIT.
            let own = arch == cc;
            let out = nvrtc::compile(source, entry, options, arch, own)
                .map_err(|e| e.context(format!("on {id}")))?;
            let (image, target) = match out.cubin {
                Some(cubin) => (cubin, format!("{arch} cubin (NVRTC {})", nvrtc_version())),
                None => (
                    nul_terminated(out.ptx),
                    format!(
                        "compute_{} PTX (NVRTC {}), JIT by the driver",
                        arch.number(),
                        nvrtc_version()
                    ),
                ),
            };
            (image, entry, Dialect::Cuda, target)
        }
        KernelSource::Ptx { ptx, entry } => {
            if ptx.contains('\0') {
                return Err(Error::invalid_argument(format!(
                    "compile `{entry}` for {id}: the PTX contains a NUL byte"
                )));
            }
            (
                nul_terminated(ptx.clone()),
                entry,
                Dialect::Ptx,
                "PTX, JIT by the driver".to_string(),
            )
        }
        other => {
            return Err(Error::unsupported(format!(
                "compile `{}` for {id}: a CUDA device compiles {} kernels, not {}",
                other.entry(),
                device
                    .caps()
                    .dialects
                    .iter()
                    .map(|d| d.name())
                    .collect::<Vec<_>>()
                    .join(" and "),
                other.dialect()
            )))
        }
    };
    let ctx = device.context().clone();
    let module = load_module(&ctx, &image, entry, id)?;
    // From here the module is owned by the kernel value, which unloads it on drop.
    let mut kernel = CudaKernel {
        name: entry.clone(),
        dialect,
        device_id: device.id_arc().clone(),
        ctx,
        module,
        function: std::ptr::null_mut(),
        max_threads: 0,
        params: None,
        target,
    };
    let c_entry = CString::new(entry.as_str()).map_err(|_| {
        Error::invalid_argument(format!(
            "compile for {id}: the entry name contains a NUL byte"
        ))
    })?;
    let mut function: sys::CUfunction = std::ptr::null_mut();
    // SAFETY: a live module of the current context (load_module bound it); the name is
    // NUL-terminated.
    let r = unsafe { sys::cuModuleGetFunction(&mut function, kernel.module, c_entry.as_ptr()) };
    if r == CUresult::CUDA_ERROR_NOT_FOUND {
        return Err(Error::compile_failed(format!(
            "compile for {id}: the module has no kernel `{entry}` (declare it \
             `extern \"C\" __global__` so that its name is not mangled)"
        )));
    }
    check(r, ErrorCode::CompileFailed, || {
        format!("compile `{entry}` for {id}: cuModuleGetFunction")
    })?;
    kernel.function = function;
    let mut max_threads = 0;
    // SAFETY: a live function; `max_threads` is a valid out-pointer.
    let r = unsafe {
        sys::cuFuncGetAttribute(
            &mut max_threads,
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
            function,
        )
    };
    check(r, ErrorCode::CompileFailed, || {
        format!("compile `{entry}` for {id}: cuFuncGetAttribute")
    })?;
    kernel.max_threads = u32::try_from(max_threads).unwrap_or(0).max(1);
    kernel.params = param_sizes(function);
    Ok(Arc::new(kernel))
}

fn nvrtc_version() -> String {
    nvrtc::version()
        .map(|(a, b)| format!("{a}.{b}"))
        .unwrap_or_else(|_| "?".into())
}

fn nul_terminated(text: String) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    bytes.push(0);
    bytes
}

/// Loads a cubin or NUL-terminated PTX image; a failure is `CompileFailed` with the JIT's log.
fn load_module(ctx: &Context, image: &[u8], entry: &str, id: &str) -> Result<sys::CUmodule> {
    ctx.bind()?;
    let mut log = vec![0u8; JIT_LOG_BYTES];
    let mut options = [
        sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
        sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
    ];
    // The driver reads a size option's value from the pointer's bits.
    let mut values: [*mut c_void; 2] = [log.as_mut_ptr().cast(), JIT_LOG_BYTES as *mut c_void];
    let mut module: sys::CUmodule = std::ptr::null_mut();
    // SAFETY: the context is current; `image` is a cubin or NUL-terminated PTX that lives
    // across the call; the two options point at a log buffer of the size given.
    let r = unsafe {
        sys::cuModuleLoadDataEx(
            &mut module,
            image.as_ptr().cast(),
            options.len() as std::ffi::c_uint,
            options.as_mut_ptr(),
            values.as_mut_ptr(),
        )
    };
    if r == CUresult::CUDA_SUCCESS {
        return Ok(module);
    }
    let text = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)])
        .trim_end()
        .to_string();
    let hint = match r {
        CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION => format!(
            "; the PTX is newer than the driver (CUDA {}) can compile: update the NVIDIA driver, \
             or use an NVRTC no newer than the driver",
            crate::driver::version_text(crate::driver::driver_version())
        ),
        CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU => {
            "; the image holds no code for this GPU's architecture".to_string()
        }
        _ => String::new(),
    };
    if r == CUresult::CUDA_ERROR_OUT_OF_MEMORY || crate::driver::is_fatal(r) {
        return Err(cu_error(
            r,
            ErrorCode::CompileFailed,
            format!("load `{entry}` on {id}"),
        ));
    }
    Err(Error::compile_failed(format!(
        "load `{entry}` on {id}: {}{hint}{}",
        describe(r),
        if text.is_empty() {
            String::new()
        } else {
            format!("\n{text}")
        }
    )))
}

/// The sizes of a function's parameters, when the driver has `cuFuncGetParamInfo`.
fn param_sizes(function: sys::CUfunction) -> Option<Vec<usize>> {
    if !has_symbol("cuFuncGetParamInfo") {
        return None;
    }
    let mut sizes = Vec::new();
    // A kernel's parameters fit in 32 KiB, so there are far fewer than this many.
    for index in 0..32768usize {
        let (mut offset, mut size) = (0usize, 0usize);
        // SAFETY: the optional symbol is present (checked above); `function` is live; both
        // are valid out-pointers.
        let r = unsafe { sys::cuFuncGetParamInfo(function, index, &mut offset, &mut size) };
        match r {
            CUresult::CUDA_SUCCESS => sizes.push(size),
            // Past the last parameter.
            CUresult::CUDA_ERROR_INVALID_VALUE => return Some(sizes),
            _ => return None,
        }
    }
    None
}

/// A launch's arguments laid out for `cuLaunchKernel`: one 8-byte-aligned slot per argument,
/// and the array of pointers to them.
pub(crate) struct PackedArgs {
    // Each slot is heap memory whose address does not move when `slots` grows.
    _slots: Vec<Box<[u64]>>,
    pointers: Vec<*mut c_void>,
}

impl PackedArgs {
    /// The `kernelParams` array. Valid while `self` lives.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut *mut c_void {
        self.pointers.as_mut_ptr()
    }
}

/// Lays out `args` for `kernel` on `device`, checking buffers (memory of this context) and,
/// where the driver tells the parameters, the count and every size.
pub(crate) fn pack_args(
    device: &CudaDevice,
    kernel: &CudaKernel,
    args: &[KernelArg],
) -> Result<PackedArgs> {
    let name = &kernel.name;
    if let Some(params) = &kernel.params {
        if params.len() != args.len() {
            return Err(Error::invalid_argument(format!(
                "launch `{name}`: {} arguments given, but the kernel has {} parameters (of {} bytes)",
                args.len(),
                params.len(),
                params
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut slots: Vec<Box<[u64]>> = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        let (slot, size): (Box<[u64]>, usize) = match arg {
            KernelArg::Buffer(view) => {
                let address =
                    device_address(device, &format!("launch `{name}` argument {i}"), view)?;
                (Box::new([address]), 8)
            }
            KernelArg::Bytes(bytes) => {
                if bytes.is_empty() {
                    return Err(Error::invalid_argument(format!(
                        "launch `{name}`: argument {i} has no bytes; a by-value parameter has at \
                         least one"
                    )));
                }
                let mut words = vec![0u64; bytes.len().div_ceil(8)];
                for (w, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
                    let mut b = [0u8; 8];
                    b[..chunk.len()].copy_from_slice(chunk);
                    *w = u64::from_ne_bytes(b);
                }
                (words.into_boxed_slice(), bytes.len())
            }
        };
        if let Some(params) = &kernel.params {
            if params[i] != size {
                return Err(Error::invalid_argument(format!(
                    "launch `{name}`: argument {i} has {size} bytes, but the kernel's parameter \
                     {i} has {} bytes{}",
                    params[i],
                    if matches!(arg, KernelArg::Buffer(_)) {
                        " (a buffer is passed as an 8-byte device pointer)"
                    } else {
                        ""
                    }
                )));
            }
        }
        slots.push(slot);
    }
    let pointers = slots
        .iter_mut()
        .map(|s| s.as_mut_ptr().cast::<c_void>())
        .collect();
    Ok(PackedArgs {
        _slots: slots,
        pointers,
    })
}

/// The device address of a view's first byte: memory of `device`'s own context.
pub(crate) fn device_address(
    device: &CudaDevice,
    what: &str,
    view: &anyaccel_hal::BufferView,
) -> Result<u64> {
    anyaccel_hal::validate::on_device(what, view, &device.info().id)?;
    let memory = view.buffer().downcast::<CudaMemory>().ok_or_else(|| {
        Error::invalid_argument(format!(
            "{what}: the buffer of device {} is not CUDA memory",
            view.buffer().device_id()
        ))
    })?;
    if !memory.in_context(device.context()) {
        return Err(Error::invalid_argument(format!(
            "{what}: the buffer belongs to another CUDA context than {}'s",
            device.info().id
        )));
    }
    if memory.device_ptr() == 0 {
        // An empty allocation: only an empty view of it exists.
        return Ok(0);
    }
    Ok(memory.device_ptr() + view.offset() as u64)
}

/// The block and grid of a launch. `None` when the grid is empty (nothing to run).
pub(crate) fn grid(
    device: &CudaDevice,
    kernel: &CudaKernel,
    dims: &LaunchDims,
) -> Result<Option<([u32; 3], [u32; 3])>> {
    let name = &kernel.name;
    if dims.global.contains(&0) {
        return Ok(None);
    }
    let max = kernel
        .max_threads
        .min(device.limits().max_threads_per_block);
    let block = match dims.local {
        Some(local) => {
            let threads = local.iter().map(|&l| l as u64).product::<u64>();
            if local.contains(&0) || threads > max as u64 {
                return Err(Error::invalid_argument(format!(
                    "launch `{name}`: work-group {local:?} has {threads} threads; expected 1 to \
                     {max} (the kernel's and the device's limit)"
                )));
            }
            for (d, (&l, &limit)) in local.iter().zip(&device.limits().max_block).enumerate() {
                if l > limit {
                    return Err(Error::invalid_argument(format!(
                        "launch `{name}`: work-group size {l} in dimension {d} exceeds the \
                         device's {limit}"
                    )));
                }
            }
            local
        }
        None => default_block(dims.global, max),
    };
    let mut grid = [0u32; 3];
    for d in 0..3 {
        let blocks = dims.global[d].div_ceil(block[d] as u64);
        let limit = device.limits().max_grid[d];
        if blocks > limit as u64 {
            return Err(Error::unsupported(format!(
                "launch `{name}`: {} work items in dimension {d} need {blocks} blocks of {}, more \
                 than the device's {limit}",
                dims.global[d], block[d]
            )));
        }
        grid[d] = blocks as u32;
    }
    Ok(Some((block, grid)))
}

/// 256 threads (or the kernel's maximum), shaped after the dimensions the grid uses.
fn default_block(global: [u64; 3], max: u32) -> [u32; 3] {
    let threads = max.clamp(1, 256);
    if global[2] > 1 {
        let z = (threads / 64).max(1);
        [8.min(threads), 8.min((threads / 8).max(1)), z]
    } else if global[1] > 1 {
        let x = 16.min(threads);
        [x, (threads / x).max(1), 1]
    } else {
        [threads, 1, 1]
    }
}

/// The CUDA kernel behind `kernel`, which must have been loaded by `device` (same context).
///
/// A launched kernel needs no reference from the queue: unloading its module waits for the
/// context's work first.
pub(crate) fn check_kernel<'k>(
    device: &CudaDevice,
    kernel: &'k Arc<dyn Kernel>,
) -> Result<&'k CudaKernel> {
    let own = anyaccel_hal::validate::kernel_as::<CudaKernel>(kernel, "a CUDA kernel")?;
    if !own.in_context(device.context()) {
        return Err(Error::invalid_argument(format!(
            "launch: kernel `{}` was loaded in another CUDA context than {}'s",
            kernel.name(),
            device.info().id
        )));
    }
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_blocks_fit_the_limit() {
        assert_eq!(default_block([1000, 1, 1], 1024), [256, 1, 1]);
        assert_eq!(default_block([1000, 1, 1], 128), [128, 1, 1]);
        assert_eq!(default_block([64, 64, 1], 1024), [16, 16, 1]);
        assert_eq!(default_block([8, 8, 8], 1024), [8, 8, 4]);
        for max in [1, 32, 64, 100, 256, 1024] {
            for g in [[5, 1, 1], [5, 5, 1], [5, 5, 5]] {
                let b = default_block(g, max);
                assert!(
                    b.iter().product::<u32>() <= max.max(1),
                    "{g:?} {max} -> {b:?}"
                );
                assert!(b.iter().all(|&x| x >= 1));
            }
        }
    }
}
