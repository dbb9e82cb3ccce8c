//! DLPack import through the C ABI (`anyaccel_tensor_from_dlpack`) over a real host allocation.
//!
//! The input builds a `DLManagedTensorVersioned`: version, device, ndim (negative and huge too),
//! shape and strides pointers (NULL or real arrays of `ndim` values, with negative and extreme
//! entries), dtype codes, flags, and a `byte_offset` up to `u64::MAX`, including offsets that
//! wrap the address space. The call is made when the tensor keeps DLPack's contract (it lies
//! inside the allocation) or when its hostility is detectable (a negative or absent field, an
//! address range that wraps): the library must refuse the latter.
//!
//! Invariants: the deleter runs at most once, never after a failed import, exactly once after
//! the last use of a successful one (it frees the allocation, so a later access is a
//! use-after-free that AddressSanitizer reports); a read-only import cannot be written; what
//! is read back is the producer's bytes; an export of the import describes memory inside it.

#![no_main]

use std::alloc::Layout;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyaccel_ffi as ffi;
use anyaccel_ffi::dlpack::{
    DLDataType, DLDevice, DLManagedTensorVersioned, DLPackVersion, DLTensor, FLAG_READ_ONLY,
};
use anyaccel_fuzz::{check_status, contiguous_u128, numel_u128, span_u128, Ffi, SDim};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Ndim {
    Small(u8),
    Raw(i32),
}

#[derive(Debug, Arbitrary)]
enum Offset {
    Small(u16),
    /// `byte_offset` such that `data + byte_offset` wraps to this small address.
    Wrap(u16),
    Raw(u64),
}

#[derive(Debug, Arbitrary)]
enum Action {
    Read,
    Write,
    Neg,
    Export,
    Copy,
}

#[derive(Debug, Arbitrary)]
struct Input {
    alloc_len: u16,
    /// Bytes from the allocation's start to `data` (8-aligned is shared, else copied).
    shift: u8,
    data_null: bool,
    major: u8,
    minor: u32,
    device_type: u8,
    device_id: i8,
    ndim: Ndim,
    shape: Option<Vec<SDim>>,
    strides: Option<Vec<SDim>>,
    dtype: (u8, u8, u16),
    valid_dtype: bool,
    offset: Offset,
    flags: u64,
    no_deleter: bool,
    actions: Vec<Action>,
}

/// What the producer keeps alive until its deleter runs; `manager_ctx` points here.
struct Producer {
    managed: DLManagedTensorVersioned,
    shape: Vec<i64>,
    strides: Vec<i64>,
    alloc: *mut u8,
    layout: Layout,
    deleted: AtomicUsize,
}

unsafe extern "C" fn deleter(managed: *mut DLManagedTensorVersioned) {
    // SAFETY: `managed` is the first field of a live `Producer` (repr(C) not needed: we go
    // through manager_ctx, which points at the Producer itself).
    let p = unsafe { &*((*managed).manager_ctx as *const Producer) };
    let before = p.deleted.fetch_add(1, Ordering::SeqCst);
    assert_eq!(before, 0, "the DLPack deleter was called twice");
    // Free the producer's memory now: any later access by the library is a use-after-free.
    // SAFETY: allocated in the target with this layout, freed only here or at the end when
    // the deleter never ran.
    unsafe { std::alloc::dealloc(p.alloc, p.layout) };
}

const DTYPES: [(u8, u8); 8] = [
    (2, 32),
    (2, 16),
    (4, 16),
    (2, 64),
    (0, 32),
    (0, 64),
    (1, 8),
    (6, 8),
];

fuzz_target!(|input: Input| {
    anyaccel_fuzz::show(&input);
    let ffi = Ffi::get();
    let len = input.alloc_len as usize % 2049;
    let shift = (input.shift % 16) as usize;
    if shift > len {
        return;
    }
    let layout = Layout::from_size_align(len.max(1), 64).expect("small layout");
    // SAFETY: non-zero size.
    let alloc = unsafe { std::alloc::alloc(layout) };
    assert!(!alloc.is_null());
    for i in 0..len {
        // SAFETY: inside the allocation.
        unsafe { *alloc.add(i) = (i * 7 + 3) as u8 };
    }
    let data = if input.data_null {
        std::ptr::null_mut()
    } else {
        // SAFETY: shift <= len.
        unsafe { alloc.add(shift) }
    };

    let ndim: i32 = match input.ndim {
        Ndim::Small(n) => (n % 7) as i32,
        Ndim::Raw(n) => n,
    };
    // Real arrays always hold `ndim` values (DLPack's contract); for ndim past 64 only NULL.
    let arr = |v: &Option<Vec<SDim>>| -> Option<Vec<i64>> {
        let v = v.as_ref()?;
        let n = usize::try_from(ndim).ok().filter(|&n| n <= 64)?;
        Some((0..n).map(|i| v.get(i).map_or(1, |d| d.0)).collect())
    };
    let shape = arr(&input.shape);
    let strides = arr(&input.strides);
    let (code, bits) = if input.valid_dtype {
        DTYPES[input.dtype.0 as usize % DTYPES.len()]
    } else {
        (input.dtype.0, input.dtype.1)
    };
    let lanes = if input.valid_dtype { 1 } else { input.dtype.2 };
    let byte_offset = match input.offset {
        Offset::Small(o) => o as u64 % 2048,
        Offset::Wrap(to) => (to as u64).wrapping_sub(data as u64),
        Offset::Raw(o) => o,
    };
    let major = if input.major < 200 {
        1
    } else {
        input.major as u32
    };
    let device_type = if input.device_type < 200 {
        1
    } else {
        input.device_type as i32 % 20
    };

    // What the library should conclude, by exact arithmetic.
    let ints = |v: &Option<Vec<i64>>| -> Option<Vec<u128>> {
        v.as_ref()?
            .iter()
            .map(|&d| u128::try_from(d).ok())
            .collect()
    };
    let dims = if ndim == 0 {
        Some(Vec::new())
    } else {
        ints(&shape)
    };
    let steps = match (&strides, &dims) {
        (None, Some(d)) => Some(contiguous_u128(d)),
        (Some(_), _) => ints(&strides),
        _ => None,
    };
    let size = (bits as u128).div_ceil(8);
    let bytes = match (&dims, &steps) {
        (Some(d), Some(s)) if ndim >= 0 => numel_u128(d.iter().copied()).and_then(|n| {
            if n == 0 {
                Some(0)
            } else {
                span_u128(d, s)?.checked_mul(size)
            }
        }),
        _ => None,
    };
    // Inside the allocation: DLPack's contract holds, so the call may be made.
    // (A span times an element size can come near 2^128: the sums are checked too.)
    let fits = matches!(bytes, Some(b) if b == 0
        || (!data.is_null() && (shift as u128 + byte_offset as u128)
            .checked_add(b)
            .is_some_and(|end| end <= len as u128)));
    // Detectably hostile: a negative or missing field, or an address range past 2^64.
    let wraps = matches!(bytes, Some(b) if b > 0
        && (data as u128 + byte_offset as u128)
            .checked_add(b)
            .is_none_or(|end| end > u64::MAX as u128));
    let malformed = bytes.is_none();
    let null_data = data.is_null() && bytes.is_some_and(|b| b > 0);
    if !(fits || wraps || malformed || null_data) {
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(alloc, layout) };
        return;
    }

    let mut producer = Box::new(Producer {
        managed: DLManagedTensorVersioned {
            version: DLPackVersion {
                major,
                minor: input.minor,
            },
            manager_ctx: std::ptr::null_mut(),
            deleter: if input.no_deleter {
                None
            } else {
                Some(deleter)
            },
            flags: input.flags,
            dl_tensor: DLTensor {
                data: data.cast(),
                device: DLDevice {
                    device_type,
                    device_id: input.device_id as i32,
                },
                ndim,
                dtype: DLDataType { code, bits, lanes },
                shape: std::ptr::null_mut(),
                strides: std::ptr::null_mut(),
                byte_offset,
            },
        },
        shape: shape.clone().unwrap_or_default(),
        strides: strides.clone().unwrap_or_default(),
        alloc,
        layout,
        deleted: AtomicUsize::new(0),
    });
    let ctx: *mut Producer = &mut *producer;
    producer.managed.manager_ctx = ctx.cast();
    if shape.is_some() {
        producer.managed.dl_tensor.shape = producer.shape.as_mut_ptr();
    }
    if strides.is_some() {
        producer.managed.dl_tensor.strides = producer.strides.as_mut_ptr();
    }

    let mut t = std::ptr::null_mut();
    let mut zero_copy = -1i32;
    // SAFETY: a valid managed tensor whose memory stays valid until its deleter runs (or, when
    // the call is made for a detectably hostile tensor, one the library must refuse).
    let status = unsafe {
        ffi::dlpack::anyaccel_tensor_from_dlpack(
            ffi.rt(),
            &mut producer.managed,
            &mut t,
            &mut zero_copy,
        )
    };
    let ok = check_status("anyaccel_tensor_from_dlpack", status);
    if !ok {
        assert!(t.is_null(), "failed import left a tensor handle");
        assert_eq!(
            producer.deleted.load(Ordering::SeqCst),
            0,
            "a failed import called the deleter (the caller still owns the tensor)"
        );
        // SAFETY: the deleter never ran, so the allocation is still ours.
        unsafe { std::alloc::dealloc(alloc, layout) };
        return;
    }
    assert!(
        !wraps,
        "imported a DLPack tensor whose bytes wrap the address space: data {data:p}, \
         byte_offset {byte_offset:#x}, {bytes:?} bytes"
    );
    assert!(
        fits && !malformed && !null_data,
        "imported a malformed DLPack tensor: {input:?}"
    );
    assert!(zero_copy == 0 || zero_copy == 1);
    let flagged_read_only = input.flags & FLAG_READ_ONLY != 0;
    let expect = |i: usize| -> u8 {
        let at = shift + byte_offset as usize + i;
        (at * 7 + 3) as u8
    };

    // Only tensors of at most 64 KiB are read, written or computed on: a zero-stride import
    // may have any number of elements, and asking for gigabytes is legal but no bug.
    let (numel, size) = anyaccel_fuzz::tensor_numel_and_size(t).expect("numel of a live tensor");
    let small = numel.checked_mul(size).is_some_and(|n| n <= 1 << 16);
    let mut written = false;
    for action in input.actions.iter().take(6) {
        match action {
            Action::Read | Action::Write | Action::Neg | Action::Copy if !small => {}
            Action::Read => {
                let n = numel * size;
                let mut host = vec![0u8; n];
                // SAFETY: exactly `n` bytes.
                let s =
                    unsafe { ffi::anyaccel_tensor_read(ffi.q(), t, host.as_mut_ptr().cast(), n) };
                if check_status("anyaccel_tensor_read", s) && strides.is_none() && !written {
                    // Contiguous and never written: the producer's own bytes.
                    for (i, &b) in host.iter().enumerate() {
                        assert_eq!(b, expect(i), "byte {i} of a contiguous import");
                    }
                }
            }
            Action::Write => {
                let host = vec![0x11u8; numel * size];
                // SAFETY: exactly numel * size bytes.
                let s = unsafe {
                    ffi::anyaccel_tensor_write(ffi.q(), t, host.as_ptr().cast(), host.len())
                };
                let wrote = check_status("anyaccel_tensor_write", s);
                written |= wrote;
                assert!(
                    !(wrote && flagged_read_only && numel > 0),
                    "wrote into a DLPack tensor flagged read-only"
                );
            }
            Action::Neg => {
                let mut out = std::ptr::null_mut();
                // SAFETY: handles are checked; a valid out-pointer.
                let s = unsafe { ffi::anyaccel_neg(ffi.q(), t, &mut out) };
                if check_status("anyaccel_neg", s) {
                    anyaccel_fuzz::read_tensor(ffi.q(), out, 1 << 16);
                    // SAFETY: a handle.
                    unsafe { ffi::anyaccel_tensor_destroy(out) };
                }
            }
            Action::Copy => {
                let mut out = std::ptr::null_mut();
                // SAFETY: handles are checked; a valid out-pointer.
                let s = unsafe { ffi::anyaccel_copy(ffi.q(), t, &mut out) };
                if check_status("anyaccel_copy", s) {
                    // SAFETY: a handle.
                    unsafe { ffi::anyaccel_tensor_destroy(out) };
                }
            }
            Action::Export => {
                let mut out: *mut DLManagedTensorVersioned = std::ptr::null_mut();
                // SAFETY: handles are checked; a valid out-pointer.
                let s = unsafe { ffi::dlpack::anyaccel_tensor_to_dlpack(t, ffi.q(), &mut out) };
                if check_status("anyaccel_tensor_to_dlpack", s) {
                    // SAFETY: a valid export; its deleter is called once, below.
                    unsafe { touch_export(out) };
                }
            }
        }
    }
    ffi.settle();
    // SAFETY: a handle.
    assert!(check_status("anyaccel_tensor_destroy", unsafe {
        ffi::anyaccel_tensor_destroy(t)
    }));
    ffi.settle();
    let deleted = producer.deleted.load(Ordering::SeqCst);
    if input.no_deleter {
        // Nobody frees it but us.
        // SAFETY: the library has released every use (tensor destroyed, queue finished).
        unsafe { std::alloc::dealloc(alloc, layout) };
    } else {
        assert_eq!(
            deleted, 1,
            "after the last tensor and the queue's work are gone, the deleter ran {deleted} times"
        );
    }
});

/// Reads every element an exported tensor describes, then calls its deleter.
///
/// # Safety
/// `m` is a live export of the library.
unsafe fn touch_export(m: *mut DLManagedTensorVersioned) {
    // SAFETY: a live export.
    let dl = unsafe { (*m).dl_tensor };
    let ndim = dl.ndim as usize;
    let mut shape = Vec::new();
    let mut strides = Vec::new();
    for i in 0..ndim {
        // SAFETY: an export holds `ndim` shape values, and strides (when not NULL).
        unsafe {
            shape.push(*dl.shape.add(i) as u128);
            if !dl.strides.is_null() {
                strides.push(*dl.strides.add(i) as u128);
            }
        }
    }
    if dl.strides.is_null() {
        strides = contiguous_u128(&shape);
    }
    let size = (dl.dtype.bits as usize).div_ceil(8);
    let numel = numel_u128(shape.iter().copied()).unwrap_or(0);
    if numel > 0 && numel <= 1 << 16 {
        let base = (dl.data as *const u8).wrapping_add(dl.byte_offset as usize);
        let mut sum = 0u8;
        for mut i in 0..numel {
            let mut off = 0u128;
            for (&d, &s) in shape.iter().zip(&strides).rev() {
                off += (i % d) * s;
                i /= d;
            }
            for b in 0..size {
                // SAFETY: the export promises these bytes; ASan checks that promise.
                sum ^= unsafe { std::ptr::read_volatile(base.add(off as usize * size + b)) };
            }
        }
        std::hint::black_box(sum);
    }
    // SAFETY: the export's deleter, called once.
    if let Some(d) = unsafe { (*m).deleter } {
        unsafe { d(m) };
    }
}
