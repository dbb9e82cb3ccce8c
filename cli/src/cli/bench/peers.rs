//! What a user would pick instead of anyaccel on the host, loaded and run in the same process:
//! OpenBLAS `cblas_sgemm` (the shared library opened at run time, so building needs no BLAS)
//! and `memcpy` over as many threads as the host has cores.
//!
//! Shared by `anyaccel bench --peers` and the criterion benches in `benches/`.

use std::ffi::{c_char, c_float, c_int, CStr};

/// `CblasRowMajor` of `cblas.h`.
const CBLAS_ROW_MAJOR: c_int = 101;
/// `CblasNoTrans` of `cblas.h`.
const CBLAS_NO_TRANS: c_int = 111;

/// The names under which the OpenBLAS shared library is looked for, in order.
pub const OPENBLAS_NAMES: &[&str] = &["libopenblas.so.0", "libopenblas.so"];

type SgemmFn = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_float,
    *const c_float,
    c_int,
    *const c_float,
    c_int,
    c_float,
    *mut c_float,
    c_int,
);
type GetIntFn = unsafe extern "C" fn() -> c_int;
type GetStrFn = unsafe extern "C" fn() -> *const c_char;

/// OpenBLAS, opened at run time.
pub struct OpenBlas {
    sgemm: SgemmFn,
    /// Where it was found, its build configuration, the kernel it picked for this processor and
    /// its thread count, as OpenBLAS itself reports them.
    pub description: String,
    // Keeps the library mapped while `sgemm` may be called; dropped last.
    _library: libloading::Library,
}

impl OpenBlas {
    /// Opens the first library of [`OPENBLAS_NAMES`] that loads and has `cblas_sgemm`. The error
    /// carries the loader's own words for each name tried.
    pub fn load() -> Result<OpenBlas, String> {
        let mut why = Vec::new();
        for name in OPENBLAS_NAMES {
            // SAFETY: opening OpenBLAS runs its initialisers, which only set up its thread pool
            // and probe the processor; it has no other load-time side effects.
            let library = match unsafe { libloading::Library::new(*name) } {
                Ok(l) => l,
                Err(e) => {
                    why.push(format!("{name}: {e}"));
                    continue;
                }
            };
            // SAFETY: `cblas_sgemm` has the signature of `cblas.h`, which `SgemmFn` mirrors.
            let sgemm = match unsafe { library.get::<SgemmFn>(b"cblas_sgemm\0") } {
                Ok(f) => *f,
                Err(e) => {
                    why.push(format!("{name}: {e}"));
                    continue;
                }
            };
            // SAFETY: these OpenBLAS extensions take no arguments and return an int or a
            // pointer to a static NUL-terminated string; absent ones are skipped.
            let (threads, config, core) = unsafe {
                let threads = library
                    .get::<GetIntFn>(b"openblas_get_num_threads\0")
                    .map(|f| f())
                    .unwrap_or(1);
                let text = |sym: &[u8]| {
                    library
                        .get::<GetStrFn>(sym)
                        .ok()
                        .map(|f| f())
                        .filter(|p| !p.is_null())
                        .map(|p| CStr::from_ptr(p).to_string_lossy().trim().to_string())
                };
                (
                    threads,
                    text(b"openblas_get_config\0"),
                    text(b"openblas_get_corename\0"),
                )
            };
            let threads = threads.max(1) as usize;
            let description = format!(
                "{name} ({}; kernel {}; {threads} thread{})",
                config.as_deref().unwrap_or("configuration unknown"),
                core.as_deref().unwrap_or("unknown"),
                if threads == 1 { "" } else { "s" }
            );
            return Ok(OpenBlas {
                sgemm,
                description,
                _library: library,
            });
        }
        Err(format!(
            "OpenBLAS not found (Debian: apt-get install libopenblas0): {}",
            why.join("; ")
        ))
    }

    /// `c = a @ b` for row-major contiguous `a` (m x k), `b` (k x n), `c` (m x n).
    ///
    /// Fails when a slice has the wrong length or a dimension does not fit in a C `int`.
    pub fn sgemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<(), String> {
        let fits = |x: usize| c_int::try_from(x).ok();
        let (Some(mi), Some(ni), Some(ki)) = (fits(m), fits(n), fits(k)) else {
            return Err(format!(
                "sgemm: {m}x{n}x{k} does not fit in the C int of cblas_sgemm"
            ));
        };
        let want = [
            ("a", a.len(), m * k),
            ("b", b.len(), k * n),
            ("c", c.len(), m * n),
        ];
        for (what, got, expected) in want {
            if got != expected {
                return Err(format!(
                    "sgemm: {what} has {got} elements, expected {expected} for {m}x{n}x{k}"
                ));
            }
        }
        // cblas requires leading dimensions of at least 1, even for empty matrices.
        let (lda, ldb, ldc) = (ki.max(1), ni.max(1), ni.max(1));
        // SAFETY: row-major a is m x k with lda = k, b is k x n with ldb = n, c is m x n with
        // ldc = n: the lengths were checked above, and c does not alias a or b (a &mut).
        unsafe {
            (self.sgemm)(
                CBLAS_ROW_MAJOR,
                CBLAS_NO_TRANS,
                CBLAS_NO_TRANS,
                mi,
                ni,
                ki,
                1.0,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                ldb,
                0.0,
                c.as_mut_ptr(),
                ldc,
            )
        };
        Ok(())
    }
}

/// Copies `src` into `dst` (equal lengths) with `threads` threads, each copying one contiguous
/// share with `copy_from_slice` (that is, `memcpy`).
pub fn memcpy_parallel(src: &[u8], dst: &mut [u8], threads: usize) {
    let threads = threads.max(1);
    let len = src.len().min(dst.len());
    let share = len.div_ceil(threads).max(1);
    if threads == 1 || len <= share {
        dst[..len].copy_from_slice(&src[..len]);
        return;
    }
    std::thread::scope(|s| {
        for (d, s_) in dst[..len].chunks_mut(share).zip(src[..len].chunks(share)) {
            s.spawn(move || d.copy_from_slice(s_));
        }
    });
}

/// The number of cores the host offers this process.
pub fn host_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
