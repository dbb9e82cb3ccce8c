//! The generic op call of the C ABI: `anyaccel_op` and `anyaccel_op_into`.
//!
//! An op name from the catalog (or any string, or NULL), up to five inputs (NULL, stale or
//! made-up handles, or tensors of any dtype with contiguous, transposed, gapped, broadcast,
//! offset or raw layouts, filled with small integers or raw bytes, so index inputs are in and
//! out of range), up to five attributes (the op's own names or others, every kind, extreme
//! integers, NaN and infinite floats, integer lists, strings), and outputs: a handle array of
//! any length (or NULL) for `anyaccel_op`, or output tensors of any layout, possibly aliasing
//! an input, for `anyaccel_op_into`. Every output is read back. Nothing may crash.

#![no_main]

use std::ffi::CString;

use anyaccel_ffi as ffi;
use anyaccel_ffi::{anyaccel_attr_t, anyaccel_tensor_t};
use anyaccel_fuzz::{c_string, check_status, read_tensor, DTypeCode, Dim, Ffi, SDim};
use arbitrary::{Arbitrary, Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Largest input, output or read-back in bytes.
const CAP: usize = 1 << 16;

/// An attribute integer: small, or one of the values that must be refused. No middle values:
/// a shape attribute of 2^31 would be a legal request for gigabytes.
#[derive(Debug, Clone, Copy)]
struct AttrInt(i64);

impl<'a> Arbitrary<'a> for AttrInt {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let pick: u8 = u.arbitrary()?;
        Ok(AttrInt(match pick % 8 {
            0..=5 => (pick >> 3) as i64 % 21 - 4,
            6 => *u.choose(&[i64::MIN, i64::MIN + 1, -(1 << 62), -(1 << 32), -65])?,
            _ => *u.choose(anyaccel_fuzz::EXTREME_USIZE)? as i64,
        }))
    }
}

#[derive(Debug, Arbitrary)]
enum LayoutKind {
    Contiguous,
    /// Made as the reverse-order contiguous layout, then viewed transposed.
    Transposed,
    /// Every dimension's stride multiplied by `1 + n % 3`.
    Gapped(u8),
    /// Starts this many elements into its buffer.
    Offset(u8),
    /// Zero stride on one dimension.
    Broadcast(u8),
    /// Strides, offset and buffer size as given: the layer checks them.
    Raw {
        strides: Vec<SDim>,
        offset: Dim,
        buffer_len: u16,
    },
}

#[derive(Debug, Arbitrary)]
enum Fill {
    /// Each element a small integer (in its dtype) from these bytes: in-range indices.
    SmallInts(Vec<u8>),
    /// Raw bytes, repeated.
    Bytes(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct TensorSpec {
    dtype: DTypeCode,
    dims: Vec<u8>,
    /// Signed extreme dims instead of `dims` (then the layout is Raw or contiguous only).
    extreme: Option<Vec<SDim>>,
    layout: LayoutKind,
    fill: Fill,
}

#[derive(Debug, Arbitrary)]
enum Handle {
    Null,
    /// A tensor made and destroyed: its handle is stale.
    Stale,
    Garbage(u64),
    /// The same handle as an earlier input (aliasing).
    Input(u8),
    Tensor(TensorSpec),
}

#[derive(Debug, Arbitrary)]
enum Name {
    /// The op's own attribute of this index.
    Own(u8),
    Other(String),
    Null,
}

#[derive(Debug, Arbitrary)]
enum Str {
    Known(u8),
    Any(String),
    Null,
}

const STRINGS: &[&str] = &[
    "f32", "f16", "bf16", "f64", "i32", "i64", "u8", "bool", "tanh", "none", "erf", "", "x",
];

#[derive(Debug, Arbitrary)]
struct AttrSpec {
    name: Name,
    kind: u8,
    int: AttrInt,
    float: u8,
    raw_float: f64,
    ints: Vec<AttrInt>,
    /// `n_ints` larger than the list is a contract violation; only 0 with NULL is tried.
    null_ints: bool,
    string: Str,
}

#[derive(Debug, Arbitrary)]
enum OpName {
    Catalog(u8),
    Any(String),
    Null,
}

#[derive(Debug, Arbitrary)]
enum Mode {
    New { n_outputs: u8, null_outputs: bool },
    Into(Vec<Handle>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    op: OpName,
    inputs: Vec<Handle>,
    attrs: Vec<AttrSpec>,
    mode: Mode,
}

/// Handles this input made, destroyed at the end.
#[derive(Default)]
struct Made(Vec<*mut anyaccel_tensor_t>);

impl Drop for Made {
    fn drop(&mut self) {
        for &t in &self.0 {
            // SAFETY: a handle; any value is checked.
            unsafe { ffi::anyaccel_tensor_destroy(t) };
        }
    }
}

fn small_int_bytes(dtype: u32, k: u8) -> Vec<u8> {
    let k = k % 6;
    match dtype {
        1 => (k as f32).to_le_bytes().to_vec(),
        2 => half_small(k).to_le_bytes().to_vec(),
        3 => (((k as f32).to_bits() >> 16) as u16).to_le_bytes().to_vec(),
        4 => (k as f64).to_le_bytes().to_vec(),
        5 => (k as i32).to_le_bytes().to_vec(),
        6 => (k as i64).to_le_bytes().to_vec(),
        7 => vec![k],
        8 => vec![k & 1],
        _ => vec![k],
    }
}

/// IEEE binary16 bits of 0..=5.
fn half_small(k: u8) -> u16 {
    [0x0000, 0x3c00, 0x4000, 0x4200, 0x4400, 0x4500][k as usize % 6]
}

/// Makes the tensor a spec describes; NULL when the layer refuses it or when it is too large
/// to compute on (a zero-stride layout may have any number of elements).
fn make_tensor(spec: &TensorSpec, made: &mut Made) -> *mut anyaccel_tensor_t {
    let ffi = Ffi::get();
    let dtype = spec.dtype.0;
    let size = ffi::anyaccel_dtype_size(dtype).max(1);
    let (shape, extreme): (Vec<i64>, bool) = match &spec.extreme {
        Some(d) => (d.iter().take(5).map(|d| d.0).collect(), true),
        None => (
            spec.dims.iter().take(4).map(|&d| (d % 6) as i64).collect(),
            false,
        ),
    };
    let ndim = shape.len();
    let mut t = std::ptr::null_mut();
    let layout = if extreme && !matches!(spec.layout, LayoutKind::Raw { .. }) {
        &LayoutKind::Contiguous
    } else {
        &spec.layout
    };
    if extreme && matches!(layout, LayoutKind::Contiguous) {
        // A legal allocation of gigabytes is no bug: only ask for a small one or for one past
        // any machine's memory (2^47 bytes), which must be refused.
        let bytes = shape.iter().try_fold(size as u128, |a, &d| {
            u128::try_from(d).ok().and_then(|d| a.checked_mul(d))
        });
        if bytes.is_some_and(|b| b > CAP as u128 && b < 1 << 47) {
            return std::ptr::null_mut();
        }
    }
    let status = match layout {
        LayoutKind::Contiguous => {
            // SAFETY: `ndim` shape values; a valid out-pointer.
            unsafe { ffi::anyaccel_tensor_alloc(ffi.dev(), dtype, shape.as_ptr(), ndim, &mut t) }
        }
        other => {
            let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            let (strides, offset, elems): (Vec<i64>, usize, usize) = match other {
                LayoutKind::Raw {
                    strides,
                    offset,
                    buffer_len,
                } => {
                    let s = (0..ndim)
                        .map(|i| strides.get(i).map_or(1, |d| d.0))
                        .collect();
                    (s, offset.0, *buffer_len as usize % 4097 / size)
                }
                _ => {
                    let mut order: Vec<usize> = (0..ndim).collect();
                    if matches!(other, LayoutKind::Transposed) {
                        order.reverse();
                    }
                    let gap = match other {
                        LayoutKind::Gapped(g) => 1 + (*g as usize % 3),
                        _ => 1,
                    };
                    let mut strides = vec![0i64; ndim];
                    let mut step = gap;
                    for &d in order.iter().rev() {
                        strides[d] = step as i64;
                        step *= dims[d].max(1);
                    }
                    if let LayoutKind::Broadcast(b) = other {
                        if ndim > 0 {
                            strides[*b as usize % ndim] = 0;
                        }
                    }
                    let offset = match other {
                        LayoutKind::Offset(o) => *o as usize % 7,
                        _ => 0,
                    };
                    let span = if dims.contains(&0) {
                        0
                    } else {
                        1 + dims
                            .iter()
                            .zip(&strides)
                            .map(|(&d, &s)| (d - 1) * s as usize)
                            .sum::<usize>()
                    };
                    (strides, offset, offset + span)
                }
            };
            let mut buf = std::ptr::null_mut();
            // SAFETY: a valid out-pointer.
            let s = unsafe { ffi::anyaccel_buffer_alloc(ffi.dev(), elems * size, &mut buf) };
            if !check_status("anyaccel_buffer_alloc", s) {
                return std::ptr::null_mut();
            }
            fill_buffer(buf, dtype, elems * size, &spec.fill);
            // SAFETY: `ndim` values each; a valid out-pointer.
            let s = unsafe {
                ffi::anyaccel_tensor_create(
                    buf,
                    dtype,
                    shape.as_ptr(),
                    strides.as_ptr(),
                    ndim,
                    offset,
                    &mut t,
                )
            };
            // SAFETY: a handle; the tensor keeps the memory alive.
            unsafe { ffi::anyaccel_buffer_free(buf) };
            s
        }
    };
    if !check_status("making a tensor", status) {
        return std::ptr::null_mut();
    }
    made.0.push(t);
    let Some((numel, size)) = anyaccel_fuzz::tensor_numel_and_size(t) else {
        return std::ptr::null_mut();
    };
    if numel.checked_mul(size).is_none_or(|b| b > CAP) {
        return std::ptr::null_mut();
    }
    if matches!(layout, LayoutKind::Contiguous) {
        let mut host = Vec::with_capacity(numel * size);
        match &spec.fill {
            Fill::SmallInts(k) if !k.is_empty() => {
                for i in 0..numel {
                    host.extend(small_int_bytes(dtype, k[i % k.len()]));
                }
            }
            Fill::Bytes(b) if !b.is_empty() => {
                host.extend((0..numel * size).map(|i| b[i % b.len()]))
            }
            _ => host.resize(numel * size, 0),
        }
        host.resize(numel * size, 0);
        // SAFETY: exactly numel * size bytes.
        check_status("anyaccel_tensor_write", unsafe {
            ffi::anyaccel_tensor_write(ffi.q(), t, host.as_ptr().cast(), host.len())
        });
    }
    t
}

fn fill_buffer(buf: *mut ffi::anyaccel_buffer_t, dtype: u32, bytes: usize, fill: &Fill) {
    let mut host = Vec::with_capacity(bytes);
    match fill {
        Fill::SmallInts(k) if !k.is_empty() => {
            let mut i = 0;
            while host.len() < bytes {
                host.extend(small_int_bytes(dtype, k[i % k.len()]));
                i += 1;
            }
        }
        Fill::Bytes(b) if !b.is_empty() => host.extend((0..bytes).map(|i| b[i % b.len()])),
        _ => {}
    }
    host.resize(bytes, 0);
    // SAFETY: `bytes` bytes.
    check_status("anyaccel_queue_write", unsafe {
        ffi::anyaccel_queue_write(Ffi::get().q(), buf, 0, host.as_ptr().cast(), bytes)
    });
}

fn resolve(
    h: &Handle,
    earlier: &[*mut anyaccel_tensor_t],
    made: &mut Made,
) -> *mut anyaccel_tensor_t {
    match h {
        Handle::Null => std::ptr::null_mut(),
        Handle::Stale => {
            let mut t = std::ptr::null_mut();
            let shape = [2i64];
            // SAFETY: one shape value; a valid out-pointer.
            unsafe { ffi::anyaccel_tensor_alloc(Ffi::get().dev(), 1, shape.as_ptr(), 1, &mut t) };
            // SAFETY: a handle.
            unsafe { ffi::anyaccel_tensor_destroy(t) };
            t
        }
        Handle::Garbage(v) => *v as usize as *mut anyaccel_tensor_t,
        Handle::Input(i) => {
            if earlier.is_empty() {
                std::ptr::null_mut()
            } else {
                earlier[*i as usize % earlier.len()]
            }
        }
        Handle::Tensor(spec) => make_tensor(spec, made),
    }
}

fuzz_target!(|input: Input| {
    anyaccel_fuzz::show(&input);
    let ffi = Ffi::get();
    let mut made = Made::default();
    let catalog = &*anyaccel_ops::CATALOG;
    let (op_name, own_attrs): (Option<CString>, Vec<&str>) = match &input.op {
        OpName::Catalog(i) => {
            let def = &catalog[*i as usize % catalog.len()];
            (Some(c_string(def.name)), def.attr_names())
        }
        OpName::Any(s) => (Some(c_string(s)), Vec::new()),
        OpName::Null => (None, Vec::new()),
    };

    let mut inputs = Vec::new();
    for h in input.inputs.iter().take(5) {
        let t = resolve(h, &inputs, &mut made);
        inputs.push(t);
    }

    // Attributes: the C structs point into `keep`, which outlives the call.
    let mut keep_names = Vec::new();
    let mut keep_strs = Vec::new();
    let mut keep_ints = Vec::new();
    for a in input.attrs.iter().take(5) {
        keep_names.push(match &a.name {
            Name::Own(i) if !own_attrs.is_empty() => {
                Some(c_string(own_attrs[*i as usize % own_attrs.len()]))
            }
            Name::Own(_) => Some(c_string("axis")),
            Name::Other(s) => Some(c_string(s)),
            Name::Null => None,
        });
        keep_strs.push(match &a.string {
            Str::Known(i) => Some(c_string(STRINGS[*i as usize % STRINGS.len()])),
            Str::Any(s) => Some(c_string(s)),
            Str::Null => None,
        });
        keep_ints.push(a.ints.iter().take(6).map(|v| v.0).collect::<Vec<i64>>());
    }
    let attrs: Vec<anyaccel_attr_t> = input
        .attrs
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, a)| anyaccel_attr_t {
            name: anyaccel_fuzz::c_ptr(&keep_names[i]),
            kind: match a.kind % 16 {
                k @ 0..=12 => 1 + (k as u32 % 4),
                13 => 0,
                14 => 5,
                _ => a.kind as u32 * 0x0101_0101,
            },
            int_value: a.int.0,
            float_value: match a.float % 8 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                3 => a.raw_float,
                4 => -0.0,
                5 => 1e-300,
                _ => (a.float as f64) / 16.0,
            },
            ints: if a.null_ints || keep_ints[i].is_empty() {
                std::ptr::null()
            } else {
                keep_ints[i].as_ptr()
            },
            n_ints: if a.null_ints { 0 } else { keep_ints[i].len() },
            str_value: anyaccel_fuzz::c_ptr(&keep_strs[i]),
        })
        .collect();
    let attrs_ptr = if attrs.is_empty() {
        std::ptr::null()
    } else {
        attrs.as_ptr()
    };
    let inputs_ptr = if inputs.is_empty() {
        std::ptr::null()
    } else {
        inputs.as_ptr()
    };
    let op_ptr = anyaccel_fuzz::c_ptr(&op_name);

    match &input.mode {
        Mode::New {
            n_outputs,
            null_outputs,
        } => {
            let n = *n_outputs as usize % 4;
            let mut outs = vec![std::ptr::null_mut::<anyaccel_tensor_t>(); n];
            let outs_ptr = if *null_outputs {
                std::ptr::null_mut()
            } else {
                outs.as_mut_ptr()
            };
            // SAFETY: every pointer is NULL or valid for its stated length.
            let s = unsafe {
                ffi::anyaccel_op(
                    ffi.q(),
                    op_ptr,
                    inputs_ptr,
                    inputs.len(),
                    attrs_ptr,
                    attrs.len(),
                    outs_ptr,
                    n,
                )
            };
            check_status("anyaccel_op", s);
            for &o in &outs {
                if !o.is_null() {
                    made.0.push(o);
                    read_tensor(ffi.q(), o, CAP);
                }
            }
        }
        Mode::Into(handles) => {
            let mut outs = Vec::new();
            for h in handles.iter().take(3) {
                let t = resolve(h, &inputs, &mut made);
                outs.push(t);
            }
            let outs_ptr = if outs.is_empty() {
                std::ptr::null()
            } else {
                outs.as_ptr()
            };
            // SAFETY: every pointer is NULL or valid for its stated length.
            let s = unsafe {
                ffi::anyaccel_op_into(
                    ffi.q(),
                    op_ptr,
                    inputs_ptr,
                    inputs.len(),
                    attrs_ptr,
                    attrs.len(),
                    outs_ptr,
                    outs.len(),
                )
            };
            check_status("anyaccel_op_into", s);
            for &o in &outs {
                read_tensor(ffi.q(), o, CAP);
            }
        }
    }
    ffi.settle();
    drop(made);
});
