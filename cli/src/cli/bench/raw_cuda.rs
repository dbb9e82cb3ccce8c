//! The raw cudarc peer of the launch benchmark: the tiny kernel that anyaccel launches on its
//! CUDA device (`kernels/tiny_add.cu`), launched through cudarc's thin `result` layer over the
//! driver API and NVRTC, with no anyaccel code in between, so that the difference is the layer's
//! own cost.
//!
//! Setup is what a careful user of the driver API writes once: `cuInit`, the device's primary
//! context made current, a non-blocking stream, the kernel compiled by NVRTC to PTX for the
//! device's `compute_XY` and loaded with `cuModuleLoadData`, and three device buffers with `a`
//! and `b` copied in. One dispatch is `cuLaunchKernel` of `tiny_add` with blocks of 256 threads
//! and `ceil(n / 256)` blocks on that stream, then `cuStreamSynchronize`.
//!
//! cudarc opens `libcuda` and `libnvrtc` on first use and panics when a library or one of its
//! functions is missing, so [`RawCuda::new`] checks both libraries and every function it calls
//! before the first call into either, and returns an error naming what is missing instead.

use std::ffi::{c_void, CString};

use cudarc::driver::result as cu;
use cudarc::driver::sys::{self, CUdevice_attribute};
use cudarc::nvrtc::result as nvrtc;

/// The tiny kernel's source, the same file that anyaccel's side of the benchmark compiles.
const TINY_ADD_CU: &str = include_str!("kernels/tiny_add.cu");

/// Threads per block of every launch.
const BLOCK: u32 = 256;

/// Every driver function this peer calls (through cudarc's `result` layer, or by formatting a
/// driver error, which calls `cuGetErrorString`).
const DRIVER_SYMBOLS: &[&str] = &[
    "cuInit",
    "cuGetErrorString",
    "cuDeviceGet",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuStreamCreate",
    "cuStreamSynchronize",
    "cuStreamDestroy_v2",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuLaunchKernel",
];

/// Every NVRTC function this peer calls.
const NVRTC_SYMBOLS: &[&str] = &[
    "nvrtcCreateProgram",
    "nvrtcCompileProgram",
    "nvrtcDestroyProgram",
    "nvrtcGetProgramLogSize",
    "nvrtcGetProgramLog",
    "nvrtcGetPTXSize",
    "nvrtcGetPTX",
];

/// The error for a failed call: `raw cudarc: <call> failed: <error>`.
fn failed(call: &str, e: impl std::fmt::Debug) -> String {
    format!("raw cudarc: {call} failed: {e:?}")
}

/// The functions of `names` that `lib` does not export.
fn missing_symbols(lib: &libloading::Library, names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .copied()
        // SAFETY: `get` only looks a symbol up; the pointer is never used.
        .filter(|s| unsafe { lib.get::<*const c_void>(s.as_bytes()) }.is_err())
        .collect()
}

/// `Ok` when the driver library opens and has every function of [`DRIVER_SYMBOLS`].
fn require_driver() -> Result<(), String> {
    // SAFETY: only tries to open libcuda under cudarc's candidate names, dropping each handle.
    if !unsafe { sys::is_culib_present() } {
        return Err(
            "raw cudarc: the NVIDIA driver library libcuda (libcuda.so.1) cannot be \
                    loaded: no NVIDIA driver is installed, or its folder is not on the library \
                    path"
                .to_string(),
        );
    }
    // SAFETY: is_culib_present just opened the library under a name that culib tries too, so
    // culib finds it rather than panicking.
    let missing = missing_symbols(unsafe { sys::culib() }, DRIVER_SYMBOLS);
    if !missing.is_empty() {
        return Err(format!(
            "raw cudarc: the NVIDIA driver library libcuda lacks {}: expected a CUDA 12 driver",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// `Ok` when NVRTC opens and has every function of [`NVRTC_SYMBOLS`].
fn require_nvrtc() -> Result<(), String> {
    // SAFETY: only tries to open libnvrtc under cudarc's candidate names, dropping each handle.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(
            "raw cudarc: the CUDA runtime compiler libnvrtc (libnvrtc.so.12) cannot be \
                    loaded: install it (e.g. `pip install nvidia-cuda-nvrtc-cu12`) and put its \
                    folder nvidia/cuda_nvrtc/lib on LD_LIBRARY_PATH"
                .to_string(),
        );
    }
    // SAFETY: is_culib_present just opened it under a name that culib tries too.
    let missing = missing_symbols(unsafe { cudarc::nvrtc::sys::culib() }, NVRTC_SYMBOLS);
    if !missing.is_empty() {
        return Err(format!(
            "raw cudarc: the CUDA runtime compiler libnvrtc lacks {}: expected NVRTC 11.2 or \
             newer",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// An NVRTC program, destroyed on drop.
struct Program(cudarc::nvrtc::sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: a program from nvrtcCreateProgram, destroyed only here, once.
        let _ = unsafe { nvrtc::destroy_program(self.0) };
    }
}

/// The text of a NUL-terminated buffer from NVRTC.
fn c_text(buf: &[std::ffi::c_char]) -> Vec<u8> {
    buf.iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect()
}

/// Compiles `source` with NVRTC to PTX for `compute_<arch>` (e.g. 80), checking NVRTC first.
/// A compile error carries NVRTC's log.
fn compile_ptx(source: &str, arch: u32) -> Result<CString, String> {
    require_nvrtc()?;
    let src = CString::new(source).map_err(|_| {
        "raw cudarc: tiny_add.cu contains a NUL byte: expected plain text".to_string()
    })?;
    let name = c"tiny_add.cu";
    let program = Program(
        nvrtc::create_program(&src, Some(name)).map_err(|e| failed("nvrtcCreateProgram", e))?,
    );
    // No NUL byte in the option: it is made of ASCII text and digits only.
    let options = [format!("--gpu-architecture=compute_{arch}")];
    // SAFETY: a live program; `src` and `name` outlive it (declared before it, dropped after).
    if let Err(e) = unsafe { nvrtc::compile_program(program.0, &options) } {
        // SAFETY: a live program that a compile was attempted on.
        let log = unsafe { nvrtc::get_program_log(program.0) }
            .map(|l| String::from_utf8_lossy(&c_text(&l)).into_owned())
            .unwrap_or_else(|le| format!("(no log: {le:?})"));
        return Err(format!(
            "raw cudarc: nvrtcCompileProgram of tiny_add.cu with {options:?} failed: {e:?}\n{}",
            log.trim_end()
        ));
    }
    // SAFETY: a live, compiled program.
    let ptx = unsafe { nvrtc::get_ptx(program.0) }.map_err(|e| failed("nvrtcGetPTX", e))?;
    CString::new(c_text(&ptx)).map_err(|e| failed("reading the PTX as a C string", e))
}

/// The tiny kernel on one CUDA device through the driver API alone: the device's primary
/// context, a stream, the module and function, and the three buffers `a`, `b`, `c` of `n` f32.
pub struct RawCuda {
    ordinal: usize,
    arch: u32,
    device: sys::CUdevice,
    /// Null until retained; every other handle is null or 0 until made, so `Drop` can free a
    /// half-built peer.
    context: sys::CUcontext,
    stream: sys::CUstream,
    module: sys::CUmodule,
    function: sys::CUfunction,
    a: sys::CUdeviceptr,
    b: sys::CUdeviceptr,
    c: sys::CUdeviceptr,
    n: u32,
}

impl RawCuda {
    /// Checks that libcuda and libnvrtc are present (an error naming the missing one otherwise),
    /// calls `cuInit`, retains the primary context of device `ordinal` and makes it current,
    /// creates a non-blocking stream, compiles `tiny_add.cu` with NVRTC to PTX for the device's
    /// `compute_XY`, loads it with `cuModuleLoadData`, gets `tiny_add`, allocates three device
    /// buffers of `a.len()` f32 and copies `a` and `b` in.
    pub fn new(ordinal: usize, a: &[f32], b: &[f32]) -> Result<RawCuda, String> {
        if a.is_empty() || a.len() != b.len() {
            return Err(format!(
                "raw cudarc: a has {} and b {} elements: expected the same number, at least 1",
                a.len(),
                b.len()
            ));
        }
        let n = u32::try_from(a.len()).map_err(|_| {
            format!(
                "raw cudarc: {} elements: expected at most {} (the kernel's n is a u32)",
                a.len(),
                u32::MAX
            )
        })?;
        let ordinal_c = i32::try_from(ordinal).map_err(|_| {
            format!(
                "raw cudarc: device ordinal {ordinal}: expected at most {}",
                i32::MAX
            )
        })?;
        require_driver()?;
        require_nvrtc()?;
        cu::init().map_err(|e| failed("cuInit", e))?;
        let device = cu::device::get(ordinal_c)
            .map_err(|e| failed(&format!("cuDeviceGet({ordinal})"), e))?;
        let attribute = |a: CUdevice_attribute, what: &str| {
            // SAFETY: `device` came from cuDeviceGet; the attribute is a valid enum value.
            unsafe { cu::device::get_attribute(device, a) }
                .map_err(|e| failed(&format!("cuDeviceGetAttribute({what})"), e))
        };
        let major = attribute(
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
            "major",
        )?;
        let minor = attribute(
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
            "minor",
        )?;
        let arch = u32::try_from(major * 10 + minor).map_err(|_| {
            format!("raw cudarc: compute capability {major}.{minor}: expected a positive one")
        })?;
        let bytes = std::mem::size_of_val(a);

        // SAFETY: `device` came from cuDeviceGet after cuInit.
        let context = unsafe { cu::primary_ctx::retain(device) }
            .map_err(|e| failed("cuDevicePrimaryCtxRetain", e))?;
        // From here on `raw` owns every handle made, and its Drop releases them on an error.
        let mut raw = RawCuda {
            ordinal,
            arch,
            device,
            context,
            stream: std::ptr::null_mut(),
            module: std::ptr::null_mut(),
            function: std::ptr::null_mut(),
            a: 0,
            b: 0,
            c: 0,
            n,
        };
        raw.bind()?;
        raw.stream = cu::stream::create(cu::stream::StreamKind::NonBlocking)
            .map_err(|e| failed("cuStreamCreate", e))?;
        let ptx = compile_ptx(TINY_ADD_CU, arch)?;
        // SAFETY: `ptx` is NUL-terminated PTX text that lives across the call; the context is
        // current.
        raw.module = unsafe { cu::module::load_data(ptx.as_ptr().cast()) }
            .map_err(|e| failed("cuModuleLoadData", e))?;
        // SAFETY: a live module of the current context.
        raw.function = unsafe { cu::module::get_function(raw.module, c"tiny_add".into()) }
            .map_err(|e| failed("cuModuleGetFunction(tiny_add)", e))?;
        for (name, slot) in [("a", &mut raw.a), ("b", &mut raw.b), ("c", &mut raw.c)] {
            // SAFETY: the context is current; the memory is only written before it is read.
            *slot = unsafe { cu::malloc_sync(bytes) }
                .map_err(|e| failed(&format!("cuMemAlloc({name}, {bytes} bytes)"), e))?;
        }
        for (name, dst, src) in [("a", raw.a, a), ("b", raw.b, b)] {
            // SAFETY: `dst` holds `bytes` = size_of_val(src) bytes; the stream is live and is
            // synchronised below, before `src` can go away.
            unsafe { cu::memcpy_htod_async(dst, src, raw.stream) }
                .map_err(|e| failed(&format!("cuMemcpyHtoDAsync({name})"), e))?;
        }
        raw.synchronize()?;
        Ok(raw)
    }

    /// One line for the report: the device, the grid and what one dispatch does.
    pub fn description(&self) -> String {
        format!(
            "raw cudarc on cuda device {} (PTX for compute_{}): per dispatch cuLaunchKernel of \
             tiny_add ({} blocks of {BLOCK} threads for {} elements) on a non-blocking stream of \
             its own, then cuStreamSynchronize",
            self.ordinal,
            self.arch,
            self.blocks(),
            self.n
        )
    }

    /// One launch and wait: `cuLaunchKernel` with `ceil(n / 256)` blocks of 256 threads on the
    /// peer's stream, then `cuStreamSynchronize`. The context is made current first if it is not.
    pub fn dispatch(&mut self) -> Result<(), String> {
        self.bind()?;
        let (mut a, mut b, mut c, mut n) = (self.a, self.b, self.c, self.n);
        let mut params: [*mut c_void; 4] = [
            (&mut a as *mut sys::CUdeviceptr).cast(),
            (&mut b as *mut sys::CUdeviceptr).cast(),
            (&mut c as *mut sys::CUdeviceptr).cast(),
            (&mut n as *mut u32).cast(),
        ];
        // SAFETY: a live function of the current context whose four parameters are three device
        // pointers and an unsigned int, each pointed to by `params` (read during the call);
        // a, b and c hold n f32 each, and the kernel checks its index against n.
        unsafe {
            cu::launch_kernel(
                self.function,
                (self.blocks(), 1, 1),
                (BLOCK, 1, 1),
                0,
                self.stream,
                &mut params,
            )
        }
        .map_err(|e| failed("cuLaunchKernel(tiny_add)", e))?;
        self.synchronize()
    }

    /// Copies `c` back to the host, waiting for the copy.
    pub fn read_c(&mut self) -> Result<Vec<f32>, String> {
        self.bind()?;
        let mut c = vec![0f32; self.n as usize];
        // SAFETY: `c` (device) holds n f32, as does the host vector, which outlives the copy:
        // the stream is synchronised before it is returned.
        unsafe { cu::memcpy_dtoh_async(&mut c, self.c, self.stream) }
            .map_err(|e| failed("cuMemcpyDtoHAsync(c)", e))?;
        self.synchronize()?;
        Ok(c)
    }

    /// `ceil(n / 256)`.
    fn blocks(&self) -> u32 {
        self.n.div_ceil(BLOCK)
    }

    /// Makes the peer's context current on this thread, if it is not already.
    fn bind(&self) -> Result<(), String> {
        if cu::ctx::get_current().map_err(|e| failed("cuCtxGetCurrent", e))? != Some(self.context) {
            // SAFETY: a retained primary context, live until Drop releases it.
            unsafe { cu::ctx::set_current(self.context) }
                .map_err(|e| failed("cuCtxSetCurrent", e))?;
        }
        Ok(())
    }

    /// Waits for everything enqueued on the peer's stream.
    fn synchronize(&self) -> Result<(), String> {
        // SAFETY: a live stream of the peer's context, which the callers made current.
        unsafe { cu::stream::synchronize(self.stream) }
            .map_err(|e| failed("cuStreamSynchronize", e))
    }
}

impl Drop for RawCuda {
    fn drop(&mut self) {
        // Errors are ignored: nothing can be done about them here. Each handle is freed only
        // if it was made, and only once.
        if self.bind().is_ok() {
            if !self.stream.is_null() {
                let _ = self.synchronize();
            }
            for ptr in [self.a, self.b, self.c] {
                if ptr != 0 {
                    // SAFETY: memory from cuMemAlloc in this context; the stream that used it
                    // has been synchronised.
                    let _ = unsafe { cu::free_sync(ptr) };
                }
            }
            if !self.module.is_null() {
                // SAFETY: a module from cuModuleLoadData, unloaded only here.
                let _ = unsafe { cu::module::unload(self.module) };
            }
            if !self.stream.is_null() {
                // SAFETY: a stream from cuStreamCreate, destroyed only here.
                let _ = unsafe { cu::stream::destroy(self.stream) };
            }
        }
        // SAFETY: releases the reference that `new` retained on this device, once.
        let _ = unsafe { cu::primary_ctx::release(self.device) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_cuda_adds_or_says_why_not() {
        let required = std::env::var("ANYACCEL_REQUIRE")
            .unwrap_or_default()
            .split(',')
            .any(|s| s.trim() == "cuda");
        // Bad input is refused before any library is touched, on every machine.
        for (a, b) in [(&[1.0f32][..], &[][..]), (&[][..], &[][..])] {
            let e = RawCuda::new(0, a, b).err().unwrap_or_default();
            assert!(e.contains("expected the same number, at least 1"), "{e}");
        }
        match RawCuda::new(0, &[1.0], &[2.0]) {
            Err(e) if !required => {
                assert!(e.starts_with("raw cudarc: "), "unexpected error text: {e}");
                assert!(
                    ["libcuda", "libnvrtc", "cuInit", "CUDA", "nvrtc"]
                        .iter()
                        .any(|w| e.contains(w)),
                    "the error names no library, call or CUDA error: {e}"
                );
                println!("skipped: no CUDA here: {e}");
                return;
            }
            Err(e) => panic!("ANYACCEL_REQUIRE contains cuda, but: {e}"),
            Ok(_) => {}
        }
        let a: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..1000).map(|i| 0.5 * i as f32 + 0.25).collect();
        let mut raw = RawCuda::new(0, &a, &b).expect("a second peer on the same device");
        assert!(
            raw.description().contains("4 blocks of 256"),
            "{}",
            raw.description()
        );
        for _ in 0..3 {
            raw.dispatch().expect("dispatch");
        }
        let c = raw.read_c().expect("read c");
        let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(c, expected);
    }
}
