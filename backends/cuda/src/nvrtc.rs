//! NVRTC, the CUDA runtime compiler: CUDA C to PTX or to a cubin, for any GPU architecture.
//!
//! This needs no GPU and no driver, only `libnvrtc` (for example from the PyPI wheel
//! `nvidia-cuda-nvrtc-cu12`, whose `nvidia/cuda_nvrtc/lib` folder goes on `LD_LIBRARY_PATH`), so
//! kernels can be checked on any machine. [`CudaDevice`](crate::CudaDevice) compiles through it
//! for its own compute capability.
//!
//! ```
//! use anyaccel_cuda::nvrtc::{self, Arch};
//! match nvrtc::compile(
//!     "extern \"C\" __global__ void twice(float* x, unsigned n) {
//!          unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
//!          if (i < n) x[i] *= 2.0f;
//!      }",
//!     "twice",
//!     &[],
//!     Arch::new(8, 0),
//!     false,
//! ) {
//!     Ok(out) => assert!(out.ptx.contains(".entry twice")),
//!     Err(e) => println!("no NVRTC here: {e}"),
//! }
//! ```

use std::ffi::{c_char, CStr, CString};
use std::fmt;
use std::sync::OnceLock;

use anyaccel_hal::{Error, ErrorCode, Result, Unavailable};
use cudarc::nvrtc::sys::{self, nvrtcResult};

use crate::driver::{dlopen_error, missing_symbols, panic_text};

/// Every NVRTC function this module calls; all are in NVRTC 11.2 and newer.
pub(crate) const SYMBOLS: &[&str] = &[
    "nvrtcVersion",
    "nvrtcGetErrorString",
    "nvrtcGetNumSupportedArchs",
    "nvrtcGetSupportedArchs",
    "nvrtcCreateProgram",
    "nvrtcCompileProgram",
    "nvrtcDestroyProgram",
    "nvrtcGetProgramLogSize",
    "nvrtcGetProgramLog",
    "nvrtcGetPTXSize",
    "nvrtcGetPTX",
    "nvrtcGetCUBINSize",
    "nvrtcGetCUBIN",
];

/// The file name asked for in error messages.
pub const LIBNVRTC: &str = "libnvrtc.so.12";

/// A GPU architecture, by compute capability: `Arch::new(8, 0)` is `sm_80`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Arch {
    /// Major compute capability.
    pub major: u32,
    /// Minor compute capability.
    pub minor: u32,
}

impl Arch {
    /// The architecture of compute capability `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Arch {
        Arch { major, minor }
    }

    /// `80` for 8.0: the number in `sm_80` and `compute_80`.
    pub fn number(self) -> u32 {
        self.major * 10 + self.minor
    }

    /// The architecture numbered like `80` (see [`Arch::number`]).
    pub fn from_number(n: u32) -> Arch {
        Arch::new(n / 10, n % 10)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm_{}", self.number())
    }
}

/// What NVRTC made of a program.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The PTX (always present for a PTX compile; for a cubin compile, when NVRTC kept it).
    pub ptx: String,
    /// The cubin, for a compile to a real architecture.
    pub cubin: Option<Vec<u8>>,
    /// The compiler's log (warnings), possibly empty.
    pub log: String,
}

struct Loaded {
    version: (i32, i32),
    archs: Vec<u32>,
}

static NVRTC: OnceLock<std::result::Result<Loaded, Unavailable>> = OnceLock::new();

fn loaded() -> std::result::Result<&'static Loaded, Unavailable> {
    NVRTC
        .get_or_init(|| {
            std::panic::catch_unwind(open).unwrap_or_else(|panic| {
                Err(Unavailable::new(format!(
                    "NVRTC panicked while being opened: {}",
                    panic_text(&*panic)
                )))
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn open() -> std::result::Result<Loaded, Unavailable> {
    // SAFETY: tries to open libnvrtc under cudarc's candidate names, dropping each handle.
    if !unsafe { sys::is_culib_present() } {
        return Err(Unavailable::new(format!(
            "the CUDA runtime compiler {LIBNVRTC} cannot be loaded ({}): install it (for example \
             `pip install nvidia-cuda-nvrtc-cu12`) and put its folder (nvidia/cuda_nvrtc/lib) \
             on LD_LIBRARY_PATH",
            dlopen_error(LIBNVRTC)
        )));
    }
    // SAFETY: is_culib_present just opened it under a name that culib tries too.
    let lib = unsafe { sys::culib() };
    let missing = missing_symbols(lib, SYMBOLS);
    if !missing.is_empty() {
        return Err(Unavailable::new(format!(
            "the CUDA runtime compiler {LIBNVRTC} lacks {}: NVRTC 11.2 or newer is needed",
            missing.join(", ")
        )));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the symbol is present; both are valid out-pointers.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    if r != nvrtcResult::NVRTC_SUCCESS {
        return Err(Unavailable::new(format!(
            "nvrtcVersion failed: {}",
            describe(r)
        )));
    }
    let mut count = 0;
    // SAFETY: the symbol is present; `count` is a valid out-pointer.
    let r = unsafe { sys::nvrtcGetNumSupportedArchs(&mut count) };
    let mut archs = vec![0; usize::try_from(count).unwrap_or(0)];
    if r == nvrtcResult::NVRTC_SUCCESS && !archs.is_empty() {
        // SAFETY: `archs` has room for the `count` entries that NVRTC writes.
        let r = unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) };
        if r != nvrtcResult::NVRTC_SUCCESS {
            archs.clear();
        }
    }
    let archs = archs
        .into_iter()
        .filter_map(|a| u32::try_from(a).ok())
        .collect();
    Ok(Loaded {
        version: (major, minor),
        archs,
    })
}

/// Opens NVRTC (once per process) and checks its functions; afterwards [`compile`] can run.
pub fn load() -> std::result::Result<(), Unavailable> {
    loaded().map(|_| ())
}

/// NVRTC's version, e.g. `(12, 9)`.
pub fn version() -> std::result::Result<(i32, i32), Unavailable> {
    loaded().map(|l| l.version)
}

/// The architectures NVRTC compiles for, as numbers (`70`, `75`, `80`, ...), ascending.
pub fn supported_archs() -> std::result::Result<Vec<Arch>, Unavailable> {
    loaded().map(|l| l.archs.iter().map(|&n| Arch::from_number(n)).collect())
}

/// The best architecture NVRTC can compile for on a device of compute capability `device`:
/// `device` itself when NVRTC knows it, else the newest one below it (PTX for it runs on the
/// device through the driver's JIT). `None` when NVRTC knows nothing as old.
pub fn best_arch_for(device: Arch) -> std::result::Result<Option<Arch>, Unavailable> {
    let archs = supported_archs()?;
    if archs.is_empty() {
        // An NVRTC that cannot list its architectures: try the device's own.
        return Ok(Some(device));
    }
    Ok(archs.into_iter().filter(|a| *a <= device).max())
}

fn describe(r: nvrtcResult) -> String {
    // SAFETY: the symbol was checked in `open`; NVRTC returns a static string.
    let text = unsafe { sys::nvrtcGetErrorString(r) };
    if text.is_null() {
        format!("{r:?}")
    } else {
        // SAFETY: a NUL-terminated static string owned by NVRTC.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }
}

/// A program that NVRTC owns, destroyed on drop.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: a program from nvrtcCreateProgram, destroyed once.
        unsafe {
            sys::nvrtcDestroyProgram(&mut self.0);
        }
    }
}

impl Program {
    fn log(&self) -> String {
        let mut size = 0usize;
        // SAFETY: a live program; `size` is a valid out-pointer.
        if unsafe { sys::nvrtcGetProgramLogSize(self.0, &mut size) } != nvrtcResult::NVRTC_SUCCESS {
            return String::new();
        }
        let mut log = vec![0 as c_char; size.max(1)];
        // SAFETY: `log` has room for the `size` bytes (NUL included) that NVRTC writes.
        if unsafe { sys::nvrtcGetProgramLog(self.0, log.as_mut_ptr()) }
            != nvrtcResult::NVRTC_SUCCESS
        {
            return String::new();
        }
        c_text(&log)
    }

    fn ptx(&self) -> Option<String> {
        let mut size = 0usize;
        // SAFETY: a live, compiled program; `size` is a valid out-pointer.
        if unsafe { sys::nvrtcGetPTXSize(self.0, &mut size) } != nvrtcResult::NVRTC_SUCCESS
            || size == 0
        {
            return None;
        }
        let mut ptx = vec![0 as c_char; size];
        // SAFETY: `ptx` has room for the `size` bytes (NUL included) that NVRTC writes.
        if unsafe { sys::nvrtcGetPTX(self.0, ptx.as_mut_ptr()) } != nvrtcResult::NVRTC_SUCCESS {
            return None;
        }
        Some(c_text(&ptx))
    }

    fn cubin(&self) -> Option<Vec<u8>> {
        let mut size = 0usize;
        // SAFETY: a live, compiled program; `size` is a valid out-pointer.
        if unsafe { sys::nvrtcGetCUBINSize(self.0, &mut size) } != nvrtcResult::NVRTC_SUCCESS
            || size == 0
        {
            return None;
        }
        let mut cubin = vec![0u8; size];
        // SAFETY: `cubin` has room for the `size` bytes that NVRTC writes.
        if unsafe { sys::nvrtcGetCUBIN(self.0, cubin.as_mut_ptr().cast()) }
            != nvrtcResult::NVRTC_SUCCESS
        {
            return None;
        }
        Some(cubin)
    }
}

/// The text of a NUL-terminated C buffer.
fn c_text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// True for an option that picks the architecture, which [`compile`] sets itself.
fn is_arch_option(option: &str) -> bool {
    let o = option.trim_start_matches('-');
    o.starts_with("arch") || o.starts_with("gpu-architecture")
}

/// Compiles the CUDA C `source` with NVRTC for `arch`: to PTX for `compute_XY` when `cubin` is
/// false, to a cubin (and PTX) for `sm_XY` when it is true.
///
/// `name` names the program in the log (`<name>.cu`); `options` are NVRTC options such as
/// `-DTILE=16` or `--use_fast_math`, but not the architecture. A compile error is
/// `CompileFailed` with NVRTC's log; bad options are `InvalidArgument`; a missing NVRTC is
/// `Unavailable` with the reason.
pub fn compile(
    source: &str,
    name: &str,
    options: &[String],
    arch: Arch,
    cubin: bool,
) -> Result<Compiled> {
    loaded()?;
    if let Some(o) = options.iter().find(|o| is_arch_option(o)) {
        return Err(Error::invalid_argument(format!(
            "compile `{name}`: option `{o}` picks the architecture, which is the device's \
             ({arch} here): leave it out"
        )));
    }
    let c = |what: &str, s: &str| {
        CString::new(s).map_err(|_| {
            Error::invalid_argument(format!("compile `{name}`: the {what} contains a NUL byte"))
        })
    };
    let c_source = c("source", source)?;
    let c_name = c("name", &format!("{name}.cu"))?;
    let target = if cubin {
        format!("--gpu-architecture=sm_{}", arch.number())
    } else {
        format!("--gpu-architecture=compute_{}", arch.number())
    };
    let mut c_options = vec![c("option", &target)?];
    for o in options {
        c_options.push(c(&format!("option `{o}`"), o)?);
    }
    let option_ptrs: Vec<*const c_char> = c_options.iter().map(|o| o.as_ptr()).collect();

    let mut raw: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: NVRTC is loaded with its symbols checked; the strings are NUL-terminated and live
    // across the call; no headers are passed.
    let r = unsafe {
        sys::nvrtcCreateProgram(
            &mut raw,
            c_source.as_ptr(),
            c_name.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != nvrtcResult::NVRTC_SUCCESS {
        return Err(Error::new(
            if r == nvrtcResult::NVRTC_ERROR_OUT_OF_MEMORY {
                ErrorCode::OutOfMemory
            } else {
                ErrorCode::CompileFailed
            },
            format!(
                "compile `{name}`: nvrtcCreateProgram failed: {}",
                describe(r)
            ),
        ));
    }
    let program = Program(raw);
    let count = i32::try_from(option_ptrs.len())
        .map_err(|_| Error::invalid_argument(format!("compile `{name}`: too many options")))?;
    // SAFETY: a live program; `option_ptrs` holds `count` NUL-terminated strings that live
    // across the call.
    let r = unsafe { sys::nvrtcCompileProgram(program.0, count, option_ptrs.as_ptr()) };
    let log = program.log();
    match r {
        nvrtcResult::NVRTC_SUCCESS => {}
        nvrtcResult::NVRTC_ERROR_INVALID_OPTION => {
            return Err(Error::invalid_argument(format!(
                "compile `{name}` for {arch}: NVRTC refused the options {:?}: {}{}",
                options,
                describe(r),
                if log.trim().is_empty() {
                    String::new()
                } else {
                    format!("\n{log}")
                }
            )))
        }
        _ => {
            return Err(Error::compile_failed(format!(
                "compile `{name}` for {arch} with NVRTC {}: {}\n{}",
                version()
                    .map(|(a, b)| format!("{a}.{b}"))
                    .unwrap_or_default(),
                describe(r),
                log.trim_end()
            )))
        }
    }
    let cubin = if cubin { program.cubin() } else { None };
    let ptx = program.ptx().unwrap_or_default();
    if ptx.is_empty() && cubin.is_none() {
        return Err(Error::compile_failed(format!(
            "compile `{name}` for {arch}: NVRTC succeeded but gave neither PTX nor a cubin"
        )));
    }
    Ok(Compiled { ptx, cubin, log })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names() {
        assert_eq!(Arch::new(8, 6).to_string(), "sm_86");
        assert_eq!(Arch::from_number(90), Arch::new(9, 0));
        assert!(Arch::new(7, 5) < Arch::new(8, 0));
        assert!(is_arch_option("-arch=sm_80"));
        assert!(is_arch_option("--gpu-architecture=compute_90"));
        assert!(!is_arch_option("-DARCH=3"));
    }
}
