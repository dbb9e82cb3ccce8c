//! The reference tensor: [`RefTensor`] (a dtype, a shape and row-major values) and its values
//! [`RefData`], with their constructors and checks.

use anyaccel_hal::{shape_str, DType, Error, Result};

use super::{float_to_int, round_int_to_dtype, round_to_dtype, wrap_int};

/// The values of a [`RefTensor`], row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum RefData {
    /// Values of a float dtype (f32, f16, bf16, f64), each exactly representable in it.
    F(Vec<f64>),
    /// Values of an integer dtype (i32, i64, u8) within its range, or of bool (0 or 1).
    I(Vec<i64>),
}

impl RefData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            RefData::F(v) => v.len(),
            RefData::I(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values at these positions, in this order.
    pub(crate) fn select(&self, positions: &[usize]) -> RefData {
        match self {
            RefData::F(v) => RefData::F(positions.iter().map(|&p| v[p]).collect()),
            RefData::I(v) => RefData::I(positions.iter().map(|&p| v[p]).collect()),
        }
    }

    /// The same kind of data with no values.
    pub(super) fn empty_like(&self) -> RefData {
        match self {
            RefData::F(_) => RefData::F(Vec::new()),
            RefData::I(_) => RefData::I(Vec::new()),
        }
    }

    /// Appends the value at `position` of `other`; `other` is of the same kind.
    pub(super) fn push_from(&mut self, other: &RefData, position: usize) {
        match (self, other) {
            (RefData::F(d), RefData::F(s)) => d.push(s[position]),
            (RefData::I(d), RefData::I(s)) => d.push(s[position]),
            (RefData::F(d), RefData::I(s)) => d.push(s[position] as f64),
            (RefData::I(d), RefData::F(s)) => d.push(s[position] as i64),
        }
    }
}

/// A tensor of the reference: a dtype, a shape and its values, row-major and contiguous.
///
/// Float dtypes hold [`RefData::F`], integer dtypes and bool hold [`RefData::I`]. The
/// constructors round or wrap every value to the dtype, so a `RefTensor` holds only values that
/// the dtype can represent, exactly as a device would see them.
#[derive(Debug, Clone, PartialEq)]
pub struct RefTensor {
    /// Element type.
    pub dtype: DType,
    /// Shape; empty for a scalar.
    pub shape: Vec<usize>,
    /// Values, row-major, `numel(shape)` of them.
    pub data: RefData,
}

impl RefTensor {
    /// A tensor of `dtype` from f64 values: each is converted as `cast` from f64 converts it
    /// (rounded to nearest even for float dtypes; truncated toward zero and saturated, NaN to 0,
    /// for integer dtypes; `x != 0` for bool).
    pub fn from_f64(dtype: DType, shape: &[usize], values: Vec<f64>) -> Result<RefTensor> {
        check_len("RefTensor::from_f64", shape, values.len())?;
        let data = if dtype.is_float() {
            RefData::F(
                values
                    .into_iter()
                    .map(|x| round_to_dtype(x, dtype))
                    .collect(),
            )
        } else {
            RefData::I(values.into_iter().map(|x| float_to_int(x, dtype)).collect())
        };
        Ok(RefTensor {
            dtype,
            shape: shape.to_vec(),
            data,
        })
    }

    /// A tensor of `dtype` from i64 values: each is converted as `cast` from i64 converts it
    /// (wrapped to the width of integer dtypes; `x != 0` for bool; rounded to nearest even for
    /// float dtypes).
    pub fn from_i64(dtype: DType, shape: &[usize], values: Vec<i64>) -> Result<RefTensor> {
        check_len("RefTensor::from_i64", shape, values.len())?;
        let data = if dtype.is_float() {
            RefData::F(
                values
                    .into_iter()
                    .map(|x| round_int_to_dtype(x, dtype))
                    .collect(),
            )
        } else {
            RefData::I(values.into_iter().map(|x| wrap_int(x, dtype)).collect())
        };
        Ok(RefTensor {
            dtype,
            shape: shape.to_vec(),
            data,
        })
    }

    /// A tensor of `dtype` from bools (true is 1).
    pub fn from_bools(dtype: DType, shape: &[usize], values: &[bool]) -> Result<RefTensor> {
        RefTensor::from_i64(dtype, shape, values.iter().map(|&b| b as i64).collect())
    }

    /// A rank-0 tensor holding `x`, converted as [`RefTensor::from_f64`] converts.
    pub fn scalar(dtype: DType, x: f64) -> RefTensor {
        let data = if dtype.is_float() {
            RefData::F(vec![round_to_dtype(x, dtype)])
        } else {
            RefData::I(vec![float_to_int(x, dtype)])
        };
        RefTensor {
            dtype,
            shape: Vec::new(),
            data,
        }
    }

    /// A tensor of zeros (false for bool).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<RefTensor> {
        let n = checked_numel_of("RefTensor::zeros", shape)?;
        let data = if dtype.is_float() {
            RefData::F(vec![0.0; n])
        } else {
            RefData::I(vec![0; n])
        };
        Ok(RefTensor {
            dtype,
            shape: shape.to_vec(),
            data,
        })
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The float values, or `None` for an integer or bool tensor.
    pub fn f64_data(&self) -> Option<&[f64]> {
        match &self.data {
            RefData::F(v) => Some(v),
            RefData::I(_) => None,
        }
    }

    /// The integer values, or `None` for a float tensor.
    pub fn i64_data(&self) -> Option<&[i64]> {
        match &self.data {
            RefData::I(v) => Some(v),
            RefData::F(_) => None,
        }
    }

    /// Every value as f64 (integers above 2^53 in magnitude become the nearest f64).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            RefData::F(v) => v.clone(),
            RefData::I(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Every value as i64 (floats truncated toward zero and saturated, NaN to 0).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            RefData::F(v) => v.iter().map(|&x| x as i64).collect(),
            RefData::I(v) => v.clone(),
        }
    }

    /// Checks that the data kind suits the dtype and that there are `numel(shape)` values.
    pub fn validate(&self, what: &str) -> Result<()> {
        let n = checked_numel_of(what, &self.shape)?;
        if n != self.data.len() {
            return Err(Error::invalid_argument(format!(
                "{what}: shape {} needs {n} values but the data has {}",
                shape_str(&self.shape),
                self.data.len()
            )));
        }
        match (&self.data, self.dtype.is_float()) {
            (RefData::F(_), true) | (RefData::I(_), false) => Ok(()),
            (RefData::F(_), false) => Err(Error::invalid_argument(format!(
                "{what}: dtype {} holds float data (RefData::F), expected integer data (RefData::I)",
                self.dtype
            ))),
            (RefData::I(_), true) => Err(Error::invalid_argument(format!(
                "{what}: dtype {} holds integer data (RefData::I), expected float data (RefData::F)",
                self.dtype
            ))),
        }
    }

    /// The same tensor with every value rounded or wrapped to its dtype.
    pub(super) fn normalized(&self) -> RefTensor {
        let data = match &self.data {
            RefData::F(v) => RefData::F(v.iter().map(|&x| round_to_dtype(x, self.dtype)).collect()),
            RefData::I(v) => RefData::I(v.iter().map(|&x| wrap_int(x, self.dtype)).collect()),
        };
        RefTensor {
            dtype: self.dtype,
            shape: self.shape.clone(),
            data,
        }
    }
}

fn check_len(what: &str, shape: &[usize], len: usize) -> Result<()> {
    let n = checked_numel_of(what, shape)?;
    if n != len {
        return Err(Error::invalid_argument(format!(
            "{what}: shape {} needs {n} values, found {len}",
            shape_str(shape)
        )));
    }
    Ok(())
}

fn checked_numel_of(what: &str, shape: &[usize]) -> Result<usize> {
    anyaccel_hal::checked_numel(what, shape)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::run;
    use super::*;
    use anyaccel_hal::ErrorCode;
    use half::f16;

    #[test]
    fn tensors_are_checked_and_normalised() {
        let t = RefTensor::from_f64(DType::F16, &[2], vec![0.1, 70000.0]).unwrap();
        assert_eq!(t.f64_data().unwrap()[0], f16::from_f32(0.1).to_f64());
        assert_eq!(t.f64_data().unwrap()[1], f64::INFINITY);
        let e = RefTensor::from_f64(DType::F32, &[2, 2], vec![1.0]).unwrap_err();
        assert!(e.message().contains("needs 4 values, found 1"), "{e}");
        let u = RefTensor::from_i64(DType::U8, &[2], vec![-1, 300]).unwrap();
        assert_eq!(u.i64_data(), Some(&[255, 44][..]));
        let bad = RefTensor {
            dtype: DType::F32,
            shape: vec![1],
            data: RefData::I(vec![1]),
        };
        let e = run("neg", &[Some(bad)], &[]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.message().contains("input `x`"), "{e}");
        // Inputs are rounded to their dtype before use.
        let raw = RefTensor {
            dtype: DType::F16,
            shape: vec![],
            data: RefData::F(vec![0.1]),
        };
        let out = run1("neg", &[Some(raw)], &[]);
        assert_eq!(out.f64_data().unwrap()[0], -f16::from_f32(0.1).to_f64());
        assert_eq!(
            RefTensor::scalar(DType::I32, 3.9).i64_data(),
            Some(&[3][..])
        );
        assert_eq!(RefTensor::zeros(DType::Bool, &[0, 2]).unwrap().numel(), 0);
    }
}
