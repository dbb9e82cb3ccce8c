//! One element of any dtype, and the conversions of `cast` (the rules of `docs/ops.md`).

use anyaccel_hal::{bf16, f16, DType};

use super::TView;
use crate::convert::{bf16_from_f64, bf16_from_i64, f16_from_f64, f16_from_i64};

/// An element: floats as f64, integers and bools as i64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val {
    F(f64),
    I(i64),
}

/// A value as f64 (integers converted, rounding above 2^53 in magnitude).
#[inline]
pub(crate) fn f(v: Val) -> f64 {
    match v {
        Val::F(x) => x,
        Val::I(i) => i as f64,
    }
}

/// The elements of a rank-1 view (a per-channel weight or bias, validated against its
/// buffer) as f32.
pub(crate) fn vector_f32(t: &TView) -> Vec<f32> {
    let n = t.desc.shape.first().copied().unwrap_or(1);
    let stride = t.desc.strides.first().copied().unwrap_or(0);
    (0..n)
        // SAFETY: c < the view's one dimension, so the offset is one of its elements.
        .map(|c| f(unsafe { load(t, t.desc.offset + c * stride) }) as f32)
        .collect()
}

/// Reads the element at `off` of `v`, whatever its dtype.
///
/// # Safety
/// `off` must be an element offset of `v`'s layout (see [`TView::ptr`]).
#[inline]
pub(crate) unsafe fn load(v: &TView, off: usize) -> Val {
    // SAFETY: the caller's contract; each arm reads the dtype's storage type.
    unsafe {
        match v.desc.dtype {
            DType::F32 => Val::F(v.get::<f32>(off) as f64),
            DType::F16 => Val::F(v.get::<f16>(off).to_f64()),
            DType::BF16 => Val::F(v.get::<bf16>(off).to_f64()),
            DType::F64 => Val::F(v.get::<f64>(off)),
            DType::I32 => Val::I(v.get::<i32>(off) as i64),
            DType::I64 => Val::I(v.get::<i64>(off)),
            DType::U8 => Val::I(v.get::<u8>(off) as i64),
            DType::I8 => Val::I(v.get::<i8>(off) as i64),
            DType::Bool => Val::I((v.get::<u8>(off) != 0) as i64),
        }
    }
}

/// Writes `x` converted to `v`'s dtype at `off`: floats round once, from the exact value, to
/// nearest even (overflow to infinity), float to integer rounds toward zero and saturates (NaN gives 0), integer to
/// integer wraps, anything to bool is `x != 0`.
///
/// # Safety
/// `off` must be an element offset of the output view `v` (see [`TView::set`]).
#[inline]
pub(crate) unsafe fn store(v: &TView, off: usize, x: Val) {
    // SAFETY: the caller's contract; each arm writes the dtype's storage type.
    unsafe {
        match (v.desc.dtype, x) {
            (DType::F32, Val::F(f)) => v.set(off, f as f32),
            (DType::F32, Val::I(i)) => v.set(off, i as f32),
            (DType::F16, Val::F(f)) => v.set(off, f16_from_f64(f)),
            (DType::F16, Val::I(i)) => v.set(off, f16_from_i64(i)),
            (DType::BF16, Val::F(f)) => v.set(off, bf16_from_f64(f)),
            (DType::BF16, Val::I(i)) => v.set(off, bf16_from_i64(i)),
            (DType::F64, Val::F(f)) => v.set(off, f),
            (DType::F64, Val::I(i)) => v.set(off, i as f64),
            (DType::I32, Val::F(f)) => v.set(off, f as i32),
            (DType::I32, Val::I(i)) => v.set(off, i as i32),
            (DType::I64, Val::F(f)) => v.set(off, f as i64),
            (DType::I64, Val::I(i)) => v.set(off, i),
            (DType::U8, Val::F(f)) => v.set(off, f as u8),
            (DType::U8, Val::I(i)) => v.set(off, i as u8),
            (DType::I8, Val::F(f)) => v.set(off, f as i8),
            (DType::I8, Val::I(i)) => v.set(off, i as i8),
            (DType::Bool, Val::F(f)) => v.set(off, (f != 0.0) as u8),
            (DType::Bool, Val::I(i)) => v.set(off, (i != 0) as u8),
        }
    }
}

/// Storage types of floats read as f64 and written from f64 exactly as [`load`] and [`store`]
/// do (one rounding, to nearest even), for kernels typed once per call instead of per element.
pub(crate) trait F64Store: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl F64Store for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
}

impl F64Store for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> f64 {
        v
    }
}

impl F64Store for f16 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> f16 {
        f16_from_f64(v)
    }
}

impl F64Store for bf16 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> bf16 {
        bf16_from_f64(v)
    }
}

/// Runs `$body` with `$t` bound to the storage type of float dtype `$dtype` (an internal error
/// for any other dtype, which validation has rejected).
macro_rules! with_float {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            anyaccel_hal::DType::F32 => {
                type $t = f32;
                $body
            }
            anyaccel_hal::DType::F64 => {
                type $t = f64;
                $body
            }
            anyaccel_hal::DType::F16 => {
                type $t = anyaccel_hal::f16;
                $body
            }
            anyaccel_hal::DType::BF16 => {
                type $t = anyaccel_hal::bf16;
                $body
            }
            other => Err(anyaccel_hal::Error::internal(format!(
                "host kernel: dtype {other} passed validation but is not a float"
            ))),
        }
    };
}
pub(crate) use with_float;

/// Storage types of floats, computed in f32.
pub(crate) trait FloatStore: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}

impl FloatStore for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> f32 {
        v
    }
}

impl FloatStore for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> f16 {
        f16::from_f32(v)
    }
}

impl FloatStore for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> bf16 {
        bf16::from_f32(v)
    }
}

/// Storage types of integers, computed in i64 (wrapping back to the width on store).
pub(crate) trait IntStore: Copy + Send + Sync + 'static {
    fn to_i64(self) -> i64;
    fn from_i64(v: i64) -> Self;
}

macro_rules! int_store {
    ($($t:ty),*) => {$(
        impl IntStore for $t {
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline(always)]
            fn from_i64(v: i64) -> $t {
                v as $t
            }
        }
    )*};
}

int_store!(i32, i64, u8, i8);
