//! Element types and their safe host conversions.

use std::fmt;

use half::{bf16, f16};

use crate::{Error, Result};

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16: the top half of a binary32.
    BF16,
    /// IEEE 754 binary64, where the device has it.
    F64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer (two's complement): the storage of quantized tensors.
    I8,
    /// Boolean, stored as one byte that is 0 or 1.
    Bool,
}

impl DType {
    /// Every dtype.
    pub const ALL: [DType; 9] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::I8,
        DType::Bool,
    ];

    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::F64 | DType::I64 => 8,
            DType::U8 | DType::I8 | DType::Bool => 1,
        }
    }

    /// The name used in op signatures, reports and the C ABI: `f32`, `bf16`, `bool`, ...
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::Bool => "bool",
        }
    }

    /// Parses a name as [`DType::name`] writes it.
    pub fn parse(name: &str) -> Result<DType> {
        DType::ALL
            .iter()
            .copied()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                "dtype: found `{name}`, expected one of f32, f16, bf16, f64, i32, i64, u8, i8, bool"
            ))
            })
    }

    /// True for f32, f16, bf16 and f64.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }

    /// True for i32, i64, u8 and i8.
    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64 | DType::U8 | DType::I8)
    }

    /// A stable number for the C ABI and plugins.
    pub fn code(self) -> u32 {
        match self {
            DType::F32 => 1,
            DType::F16 => 2,
            DType::BF16 => 3,
            DType::F64 => 4,
            DType::I32 => 5,
            DType::I64 => 6,
            DType::U8 => 7,
            DType::Bool => 8,
            DType::I8 => 9,
        }
    }

    /// The dtype with this [`DType::code`].
    pub fn from_code(code: u32) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| d.code() == code)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A host type that is the element of one [`DType`], with conversions to and from the bytes a
/// device holds (little-endian, as every supported device is).
pub trait Element: Copy + Send + Sync + 'static {
    /// The dtype this host type stands for.
    const DTYPE: DType;
    /// Appends the device bytes of `values` to `out`.
    fn extend_bytes(values: &[Self], out: &mut Vec<u8>);
    /// Reads values from device bytes. `bytes.len()` must be a multiple of the element size.
    fn from_bytes(bytes: &[u8]) -> Vec<Self>;
}

macro_rules! pod_element {
    ($($t:ty => $d:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn extend_bytes(values: &[Self], out: &mut Vec<u8>) {
                out.extend_from_slice(bytemuck::cast_slice(values));
            }
            fn from_bytes(bytes: &[u8]) -> Vec<Self> {
                // pod_collect_to_vec copies, so any alignment of `bytes` is fine.
                bytemuck::pod_collect_to_vec(bytes)
            }
        }
    )*};
}

pod_element!(f32 => F32, f16 => F16, bf16 => BF16, f64 => F64, i32 => I32, i64 => I64, u8 => U8, i8 => I8);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn extend_bytes(values: &[Self], out: &mut Vec<u8>) {
        out.extend(values.iter().map(|&b| b as u8));
    }
    fn from_bytes(bytes: &[u8]) -> Vec<Self> {
        bytes.iter().map(|&b| b != 0).collect()
    }
}

/// The device bytes of a slice of elements.
pub fn to_bytes<T: Element>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(std::mem::size_of_val(values));
    T::extend_bytes(values, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::parse(d.name()).unwrap(), d);
            assert_eq!(DType::from_code(d.code()), Some(d));
        }
        let e = DType::parse("f8").unwrap_err();
        assert!(e.message().contains("found `f8`"), "{e}");
    }

    #[test]
    fn bytes_round_trip() {
        let v = [1.5f32, -0.0, f32::INFINITY];
        let b = to_bytes(&v);
        assert_eq!(b.len(), 12);
        assert_eq!(b[0..4], 1.5f32.to_le_bytes());
        assert_eq!(f32::from_bytes(&b[..]), v.to_vec());
        // Unaligned source.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&b);
        assert_eq!(f32::from_bytes(&shifted[1..]), v.to_vec());
        assert_eq!(bool::from_bytes(&[0, 1, 7]), vec![false, true, true]);
        assert_eq!(to_bytes(&[true, false]), vec![1, 0]);
        assert_eq!(to_bytes(&[bf16::from_f32(1.0)]), vec![0x80, 0x3f]);
    }
}
