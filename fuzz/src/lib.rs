//! # anyaccel-fuzz: what the fuzz targets share
//!
//! The targets in `fuzz_targets/` decode libFuzzer's bytes with [`arbitrary`] into structured
//! inputs. This library holds what several of them need: numbers that lean towards the values
//! that break layout arithmetic ([`Dim`], [`SDim`]), the C ABI's objects made once per process
//! ([`Ffi`]), and the rule that turns a status into a verdict ([`check_status`]).
//!
//! The oracle of every target is the same: nothing crashes, nothing panics (the libFuzzer panic
//! hook aborts even inside the library's `catch_unwind`), AddressSanitizer sees no access outside
//! an allocation, LeakSanitizer sees no leak, and no call returns `ANYACCEL_ERROR_INTERNAL`
//! (a bug by the C ABI's own definition). Targets add their own invariants on top.
//!
//! Sizes are kept small on purpose. A request that is legal but large (a tensor of a few
//! gigabytes) is not a bug, yet it would trip libFuzzer's `-rss_limit_mb`; so the extreme values
//! are the ones that must be refused (products past `usize`, byte counts past any real memory),
//! and the ordinary values stay below a few dozen.

use std::ffi::{c_char, CStr};
use std::sync::OnceLock;

use anyaccel_ffi as ffi;
use arbitrary::{Arbitrary, Result as ArbResult, Unstructured};

/// Values that break unchecked layout arithmetic when used as a size, stride or offset. None
/// lies between 2^28 and 2^40, so that no legal request asks for gigabytes of real memory.
pub const EXTREME_USIZE: &[usize] = &[
    0,
    1,
    2,
    usize::MAX,
    usize::MAX - 1,
    usize::MAX / 2,
    usize::MAX / 2 + 1,
    usize::MAX / 4 + 1,
    1 << 62,
    1 << 61,
    (1 << 62) + 1,
    i64::MAX as usize,
    (i64::MAX as usize) - 1,
    1 << 48,
    1 << 56,
    (1 << 63) + 1,
    usize::MAX / 3,
    usize::MAX / 8 + 1,
];

/// A size, stride or offset: mostly small, sometimes an [`EXTREME_USIZE`] value, sometimes raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dim(pub usize);

impl<'a> Arbitrary<'a> for Dim {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let pick: u8 = u.arbitrary()?;
        Ok(Dim(match pick % 16 {
            0..=10 => (pick >> 4) as usize % 9,
            11 | 12 => *u.choose(EXTREME_USIZE)?,
            13 => u.int_in_range(0..=64)?,
            14 => usize::MAX - u.int_in_range(0..=64usize)?,
            _ => u.arbitrary::<u64>()? as usize,
        }))
    }
}

/// A signed size or stride, as the C ABI and DLPack take them: [`Dim`]'s values and negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SDim(pub i64);

impl<'a> Arbitrary<'a> for SDim {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let pick: u8 = u.arbitrary()?;
        Ok(SDim(match pick % 16 {
            0..=10 => (pick >> 4) as i64 % 9,
            11 => *u.choose(&[-1, -2, i64::MIN, i64::MIN + 1, -(1 << 62), -(1 << 32)])?,
            12 | 13 => *u.choose(EXTREME_USIZE)? as i64,
            14 => u.int_in_range(0..=64)?,
            _ => u.arbitrary()?,
        }))
    }
}

/// A dtype code of the C ABI: mostly one of the eight, sometimes none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DTypeCode(pub u32);

impl<'a> Arbitrary<'a> for DTypeCode {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let pick: u8 = u.arbitrary()?;
        Ok(DTypeCode(match pick % 32 {
            0..=29 => 1 + (pick % 8) as u32,
            30 => 0,
            _ => u.arbitrary()?,
        }))
    }
}

/// The product of `dims` in `u128`, `None` past `u128`.
pub fn numel_u128(dims: impl IntoIterator<Item = u128>) -> Option<u128> {
    dims.into_iter().try_fold(1u128, |a, d| a.checked_mul(d))
}

/// Elements from the first to one past the furthest element of a layout, exactly (`None` past
/// `u128`); 0 when any dimension is 0.
pub fn span_u128(shape: &[u128], strides: &[u128]) -> Option<u128> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().zip(strides).try_fold(1u128, |acc, (&d, &s)| {
        acc.checked_add((d - 1).checked_mul(s)?)
    })
}

/// Row-major strides in `u128` (saturating, as `contiguous_strides` does in `usize`).
pub fn contiguous_u128(shape: &[u128]) -> Vec<u128> {
    let mut strides = vec![0u128; shape.len()];
    let mut step = 1u128;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = step;
        step = step.saturating_mul(d.max(1));
    }
    strides
}

/// The calling thread's last error message of the C ABI.
pub fn last_error() -> String {
    let p = ffi::anyaccel_last_error_message();
    if p.is_null() {
        return "(NULL message)".into();
    }
    // SAFETY: the library returns a NUL-terminated string valid until its next failing call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Panics on `ANYACCEL_ERROR_INTERNAL` (a bug by definition) and on a status outside the
/// stable codes; returns `status == ANYACCEL_OK`.
pub fn check_status(function: &str, status: ffi::anyaccel_status) -> bool {
    if status == ffi::ANYACCEL_ERROR_INTERNAL {
        panic!(
            "{function} returned ANYACCEL_ERROR_INTERNAL: {}",
            last_error()
        );
    }
    assert!(
        (0..=11).contains(&status),
        "{function} returned {status}, which is no anyaccel_status"
    );
    status == ffi::ANYACCEL_OK
}

/// The C ABI's runtime (cpu backend only), its cpu device and one queue, made once per process.
pub struct Ffi {
    /// `anyaccel_runtime_create_with_backends("cpu")`.
    pub runtime: usize,
    /// `cpu:0`.
    pub device: usize,
    /// A queue on `cpu:0`.
    pub queue: usize,
}

impl Ffi {
    /// The process's objects (made on first use).
    pub fn get() -> &'static Ffi {
        static FFI: OnceLock<Ffi> = OnceLock::new();
        FFI.get_or_init(|| {
            let mut rt = std::ptr::null_mut();
            // SAFETY: a NUL-terminated string and a valid out-pointer.
            let s = unsafe { ffi::anyaccel_runtime_create_with_backends(c"cpu".as_ptr(), &mut rt) };
            assert_eq!(s, 0, "runtime: {}", last_error());
            let mut dev = std::ptr::null_mut();
            // SAFETY: as above.
            let s = unsafe { ffi::anyaccel_runtime_find_device(rt, c"cpu:0".as_ptr(), &mut dev) };
            assert_eq!(s, 0, "cpu:0: {}", last_error());
            let mut q = std::ptr::null_mut();
            // SAFETY: a valid out-pointer.
            let s = unsafe { ffi::anyaccel_queue_create(dev, &mut q) };
            assert_eq!(s, 0, "queue: {}", last_error());
            Ffi {
                runtime: rt as usize,
                device: dev as usize,
                queue: q as usize,
            }
        })
    }

    /// The runtime handle.
    pub fn rt(&self) -> *mut ffi::anyaccel_runtime_t {
        self.runtime as *mut _
    }

    /// The device handle.
    pub fn dev(&self) -> *mut ffi::anyaccel_device_t {
        self.device as *mut _
    }

    /// The queue handle.
    pub fn q(&self) -> *mut ffi::anyaccel_queue_t {
        self.queue as *mut _
    }

    /// Finishes the queue, so that an asynchronous failure of this input does not surface in
    /// the next one; an internal error is still a bug.
    pub fn settle(&self) {
        // SAFETY: a handle; any value is checked.
        check_status("anyaccel_queue_finish", unsafe {
            ffi::anyaccel_queue_finish(self.q())
        });
    }
}

/// A tensor's element count and dtype size through the C ABI, if both queries succeed.
pub fn tensor_numel_and_size(t: *mut ffi::anyaccel_tensor_t) -> Option<(usize, usize)> {
    let (mut numel, mut dtype) = (0usize, 0u32);
    // SAFETY: handles are checked; out-pointers are valid.
    let ok = unsafe {
        check_status(
            "anyaccel_tensor_numel",
            ffi::anyaccel_tensor_numel(t, &mut numel),
        ) && check_status(
            "anyaccel_tensor_dtype",
            ffi::anyaccel_tensor_dtype(t, &mut dtype),
        )
    };
    ok.then(|| (numel, ffi::anyaccel_dtype_size(dtype)))
}

/// Reads a tensor through the C ABI into a buffer of exactly `numel * size` bytes (so that
/// AddressSanitizer catches a write past it), when that is at most `cap` bytes. Checks that
/// the shape and strides queries agree with the rank.
pub fn read_tensor(q: *mut ffi::anyaccel_queue_t, t: *mut ffi::anyaccel_tensor_t, cap: usize) {
    let mut ndim = 0usize;
    // SAFETY: a handle and a valid out-pointer.
    if !check_status("anyaccel_tensor_ndim", unsafe {
        ffi::anyaccel_tensor_ndim(t, &mut ndim)
    }) {
        return;
    }
    if ndim <= 64 {
        let mut dims = vec![0i64; ndim];
        let mut strides = vec![0i64; ndim];
        // SAFETY: room for `ndim` values each (NULL-equivalent dangling for 0 is not passed:
        // an empty Vec's pointer is dangling but never written for capacity 0).
        unsafe {
            check_status(
                "anyaccel_tensor_shape",
                ffi::anyaccel_tensor_shape(t, dims.as_mut_ptr(), ndim),
            );
            check_status(
                "anyaccel_tensor_strides",
                ffi::anyaccel_tensor_strides(t, strides.as_mut_ptr(), ndim),
            );
        }
    }
    let Some((numel, size)) = tensor_numel_and_size(t) else {
        return;
    };
    let Some(bytes) = numel.checked_mul(size).filter(|&b| b <= cap) else {
        return;
    };
    let mut host = vec![0u8; bytes];
    // SAFETY: `host` has exactly `bytes` bytes.
    check_status("anyaccel_tensor_read", unsafe {
        ffi::anyaccel_tensor_read(q, t, host.as_mut_ptr().cast(), bytes)
    });
}

/// A NUL-terminated copy of `s` with interior NULs removed.
pub fn c_string(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s.replace('\0', "")).expect("NULs removed")
}

/// Pointer to a C string or NULL.
pub fn c_ptr(s: &Option<std::ffi::CString>) -> *const c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

/// Prints the decoded input when `ANYACCEL_FUZZ_DEBUG` is set (to read a crashing input).
pub fn show(input: &impl std::fmt::Debug) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("ANYACCEL_FUZZ_DEBUG").is_some()) {
        eprintln!("input: {input:#?}");
    }
}
