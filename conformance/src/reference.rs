//! The f64 reference: every op of `docs/ops.md`, computed on the host for clarity rather than
//! speed, and independent of every backend's kernels.
//!
//! Floats are computed in f64 and integers in i64 with wrapping arithmetic; each output is then
//! rounded once to its dtype ([`round_to_dtype`] for floats, [`wrap_int`] for integers and
//! bool). A device computes 16-bit elementwise ops in f32 and rounds once, and accumulates
//! reductions, softmax, norms, matmul and attention in f32; the difference between that and this
//! reference is what the tolerance table of `docs/ops.md` absorbs.
//!
//! Tensors here are [`RefTensor`]s: a dtype, a shape and row-major contiguous values
//! ([`RefData::F`] for float dtypes, [`RefData::I`] for integer dtypes and bool). Ops are called
//! as every device receives them, by name with optional inputs and named attributes:
//!
//! ```
//! use anyaccel_conformance::reference::{run, RefTensor};
//! use anyaccel_hal::DType;
//! let a = RefTensor::from_f64(DType::F32, &[2], vec![1.0, 2.5]).unwrap();
//! let b = RefTensor::from_f64(DType::F32, &[], vec![0.5]).unwrap();
//! let out = run("add", &[Some(a), Some(b)], &[]).unwrap();
//! assert_eq!(out[0].shape, vec![2]);
//! assert_eq!(out[0].f64_data(), Some(&[1.5, 3.0][..]));
//! ```
//!
//! Validation follows the contract: a bad shape, dtype, attribute or input is an
//! [`ErrorCode::InvalidArgument`](anyaccel_hal::ErrorCode::InvalidArgument) whose message names
//! the op, the argument, what was found and what was expected; an index out of range in
//! `index_select`, `embedding` or `gather` is
//! [`ErrorCode::OutOfBounds`](anyaccel_hal::ErrorCode::OutOfBounds). A name that is not an op of
//! the contract is an InvalidArgument too.

use std::fmt::Display;

use anyaccel_hal::{shape_str, AttrValue, DType, Error, Result};
use anyaccel_ops::catalog::{op_def, Op, OpDef, CATALOG};
use half::{bf16, f16};

mod elementwise;
mod movement;
mod nn;
mod reduce;

/// Every op of the contract, in the order of `docs/ops.md`: the ops of the catalog.
pub fn ops() -> Vec<&'static str> {
    CATALOG.iter().map(|d| d.name).collect()
}

/// The float dtypes of the op set, `F` in `docs/ops.md`.
pub const FLOAT_DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];
/// The integer dtypes of the op set's arithmetic, `I` in `docs/ops.md`.
pub const INT_DTYPES: [DType; 2] = [DType::I32, DType::I64];
/// `F ∪ I`.
pub const NUMERIC_DTYPES: [DType; 5] =
    [DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64];
/// `all` in `docs/ops.md`: every dtype but f64.
pub const ALL_DTYPES: [DType; 7] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::Bool,
];
/// `all + f64`: the dtypes of `fill`, `copy` and `cast`.
pub const ALL_DTYPES_AND_F64: [DType; 8] = DType::ALL;

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
    fn empty_like(&self) -> RefData {
        match self {
            RefData::F(_) => RefData::F(Vec::new()),
            RefData::I(_) => RefData::I(Vec::new()),
        }
    }

    /// Appends the value at `position` of `other`; `other` is of the same kind.
    fn push_from(&mut self, other: &RefData, position: usize) {
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
    fn normalized(&self) -> RefTensor {
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

// ---------------------------------------------------------------------------------------------
// Rounding and wrapping
// ---------------------------------------------------------------------------------------------

/// A binary floating-point format: significand bits (with the hidden bit) and the exponent range
/// of its normal numbers.
struct FloatFormat {
    precision: i32,
    emin: i32,
    emax: i32,
}

const F16_FORMAT: FloatFormat = FloatFormat {
    precision: 11,
    emin: -14,
    emax: 15,
};

const BF16_FORMAT: FloatFormat = FloatFormat {
    precision: 8,
    emin: -126,
    emax: 127,
};

/// 2^n, exactly, for -1022 <= n <= 1023 (every caller here stays within -140..=140).
fn pow2(n: i32) -> f64 {
    f64::from_bits(((n + 1023) as u64) << 52)
}

/// `x` rounded to the nearest value of `format`, ties to even, overflow to ±Inf, underflow to a
/// subnormal or a zero of x's sign; NaN and ±Inf unchanged.
///
/// This rounds the exact f64 value once. (`half`'s own `from_f64` rounds through f32 on machines
/// with F16C and ignores the low 32 bits of the significand elsewhere, so for a few inputs it
/// differs from a single rounding, and from machine to machine; its result on a value that is
/// already representable is exact, and that is how it is used here.)
fn round_to_format(x: f64, format: &FloatFormat) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let a = x.abs();
    // The binary exponent of a: a lies in [2^e, 2^(e+1)). A subnormal f64 gets -1023, below the
    // emin of every format here, which is all that matters for it.
    let e = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    // The exponent of one unit in the last place of the result.
    let q = e.max(format.emin) - (format.precision - 1);
    // Both scalings by powers of two are exact; round_ties_even rounds once.
    let rounded = (a * pow2(-q)).round_ties_even() * pow2(q);
    let max_finite = (2.0 - pow2(1 - format.precision)) * pow2(format.emax);
    let rounded = if rounded > max_finite {
        f64::INFINITY
    } else {
        rounded
    };
    rounded.copysign(x)
}

/// `x` converted to `dtype` and back to f64, the way the contract converts an f64 result:
///
/// - f64: unchanged; f32: `x as f32` (nearest, ties to even, overflow to ±Inf);
/// - f16 and bf16: nearest, ties to even, overflow to ±Inf, rounded once from the f64 value;
/// - i32, i64, u8: truncated toward zero, saturated to the range, NaN to 0 (the `cast` rule; an
///   i64 result above 2^53 in magnitude comes back as the nearest f64);
/// - bool: 1 if `x != 0` (NaN too), else 0.
pub fn round_to_dtype(x: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F64 => x,
        DType::F32 => x as f32 as f64,
        DType::F16 => f16::from_f64(round_to_format(x, &F16_FORMAT)).to_f64(),
        DType::BF16 => bf16::from_f64(round_to_format(x, &BF16_FORMAT)).to_f64(),
        DType::I32 | DType::I64 | DType::U8 | DType::Bool => float_to_int(x, dtype) as f64,
    }
}

/// `x` wrapped to the width of an integer `dtype` (two's complement: the low bits are kept, so
/// `-1` becomes 255 for u8 and `2^31` becomes `-2^31` for i32); for bool, 1 if `x != 0` else 0.
/// Float dtypes return `x` unchanged.
pub fn wrap_int(x: i64, dtype: DType) -> i64 {
    match dtype {
        DType::I32 => x as i32 as i64,
        DType::U8 => x as u8 as i64,
        DType::Bool => (x != 0) as i64,
        DType::I64 | DType::F32 | DType::F16 | DType::BF16 | DType::F64 => x,
    }
}

/// A float value converted to an integer `dtype` by the `cast` rule: truncated toward zero,
/// saturated to the dtype's range, NaN to 0; for bool, `x != 0` (NaN is true, -0.0 false).
/// Float dtypes get the i64 conversion by the same rule.
pub fn float_to_int(x: f64, dtype: DType) -> i64 {
    // Rust's float-to-int `as` truncates toward zero, saturates and maps NaN to 0.
    match dtype {
        DType::I32 => x as i32 as i64,
        DType::U8 => x as u8 as i64,
        DType::Bool => (x != 0.0) as i64,
        DType::I64 | DType::F32 | DType::F16 | DType::BF16 | DType::F64 => x as i64,
    }
}

/// An integer converted to `dtype` by the `cast` rule: rounded once to the nearest value of a
/// float dtype (ties to even, overflow to ±Inf), wrapped for an integer dtype, `x != 0` for
/// bool. Exact even for i64 values that f64 cannot hold.
pub fn round_int_to_dtype(x: i64, dtype: DType) -> f64 {
    match dtype {
        // Rust's int-to-float `as` rounds to nearest, ties to even.
        DType::F64 => x as f64,
        DType::F32 => x as f32 as f64,
        DType::F16 => round_to_dtype(round_int_to_precision(x, F16_FORMAT.precision), dtype),
        DType::BF16 => round_to_dtype(round_int_to_precision(x, BF16_FORMAT.precision), dtype),
        DType::I32 | DType::I64 | DType::U8 | DType::Bool => wrap_int(x, dtype) as f64,
    }
}

/// `x` rounded to `precision` significant bits, ties to even, as an exact f64.
fn round_int_to_precision(x: i64, precision: i32) -> f64 {
    let magnitude = x.unsigned_abs();
    let bits = 64 - magnitude.leading_zeros() as i32;
    if bits <= precision {
        return x as f64;
    }
    let shift = (bits - precision) as u32;
    let mut kept = magnitude >> shift;
    let dropped = magnitude & ((1u64 << shift) - 1);
    let half = 1u64 << (shift - 1);
    if dropped > half || (dropped == half && kept & 1 == 1) {
        kept += 1;
    }
    // kept has `precision` bits, or is 2^precision after rounding up: either way an exact f64
    // (precision <= 24 here), and the scaling by 2^shift is exact too.
    let value = kept as f64 * pow2(shift as i32);
    if x < 0 {
        -value
    } else {
        value
    }
}

// ---------------------------------------------------------------------------------------------
// The generic call
// ---------------------------------------------------------------------------------------------

/// Computes `op` on `inputs` with `attrs` as `docs/ops.md` defines it, and returns its outputs
/// (one tensor for every op but `topk`, which returns values and indices).
///
/// Inputs are in the order of `docs/ops.md`; an absent optional input is `None`, and trailing
/// absent ones may be left out. Each input is first rounded or wrapped to its dtype, as a device
/// would hold it. Errors: [`ErrorCode::InvalidArgument`](anyaccel_hal::ErrorCode::InvalidArgument)
/// for what `docs/ops.md` calls invalid, [`ErrorCode::OutOfBounds`](anyaccel_hal::ErrorCode::OutOfBounds)
/// for an index out of range. A name that is not an op is an InvalidArgument.
pub fn run(
    op: &str,
    inputs: &[Option<RefTensor>],
    attrs: &[(String, AttrValue)],
) -> Result<Vec<RefTensor>> {
    let one = |t: Result<RefTensor>| t.map(|t| vec![t]);
    let def = op_def(op).ok_or_else(|| {
        Error::invalid_argument(format!(
            "unknown op `{op}`: the ops of docs/ops.md are {}",
            ops().join(", ")
        ))
    })?;
    let call = &if def.is_variadic() {
        Call::variadic(op, inputs, attrs, def)?
    } else {
        Call::new(op, inputs, def, attrs)?
    };
    match def.op {
        Op::Fill => one(movement::fill(call)),
        Op::Arange => one(movement::arange(call)),
        Op::Copy => one(movement::copy(call)),
        Op::Cast => one(movement::cast(call)),
        Op::Concat => one(movement::concat(call)),
        Op::IndexSelect => one(movement::index_select(call)),
        Op::Embedding => one(movement::embedding(call)),
        Op::Gather => one(movement::gather(call)),
        Op::Binary(_) => one(elementwise::binary(call)),
        Op::Compare(_) => one(elementwise::compare(call)),
        Op::Where => one(elementwise::where_(call)),
        Op::Unary(u) => one(elementwise::unary(call, u)),
        Op::Gelu => one(elementwise::gelu(call)),
        Op::Clamp => one(elementwise::clamp(call)),
        Op::Reduce(_) => one(reduce::reduce(call)),
        Op::Cumsum => one(reduce::cumsum(call)),
        Op::Topk => reduce::topk(call),
        Op::Softmax | Op::LogSoftmax => one(nn::softmax(call)),
        Op::LayerNorm => one(nn::layer_norm(call)),
        Op::RmsNorm => one(nn::rms_norm(call)),
        Op::Matmul => one(nn::matmul(call)),
        Op::Rope => one(nn::rope(call)),
        Op::Attention => one(nn::attention(call)),
    }
}

/// One validated call: the op's name, its inputs (normalised to their dtypes, one slot per
/// input of the signature) and its attributes (names checked against the op's list).
pub(crate) struct Call<'a> {
    pub(crate) op: &'a str,
    names: Vec<&'static str>,
    inputs: Vec<Option<RefTensor>>,
    attrs: &'a [(String, AttrValue)],
}

impl<'a> Call<'a> {
    /// A call of the catalog op `def`: its inputs and attribute names as the catalog declares.
    fn new(
        op: &'a str,
        given: &[Option<RefTensor>],
        def: &OpDef,
        attrs: &'a [(String, AttrValue)],
    ) -> Result<Call<'a>> {
        let names: Vec<&'static str> = def
            .inputs
            .iter()
            .map(|n| n.trim_end_matches(['?', '*']))
            .collect();
        let required = def.required_inputs();
        if given.len() > names.len() {
            return Err(invalid(
                op,
                format!(
                    "found {} inputs, expected at most {} ({})",
                    given.len(),
                    names.len(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
        let mut inputs = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            match given.get(i).and_then(|t| t.as_ref()) {
                Some(t) => {
                    t.validate(&format!("{op}: input `{name}`"))?;
                    inputs.push(Some(t.normalized()));
                }
                None if i < required => {
                    return Err(invalid(
                        op,
                        format!("input `{name}` (input {i}) is missing, expected a tensor"),
                    ))
                }
                None => inputs.push(None),
            }
        }
        check_attr_names(op, attrs, &def.attr_names())?;
        Ok(Call {
            op,
            names,
            inputs,
            attrs,
        })
    }

    /// A call of `concat`: one or more inputs, all present.
    fn variadic(
        op: &'a str,
        given: &[Option<RefTensor>],
        attrs: &'a [(String, AttrValue)],
        def: &OpDef,
    ) -> Result<Call<'a>> {
        if given.is_empty() {
            return Err(invalid(op, "found 0 inputs, expected at least 1"));
        }
        let mut inputs = Vec::with_capacity(given.len());
        for (i, t) in given.iter().enumerate() {
            match t {
                Some(t) => {
                    t.validate(&format!("{op}: input {i}"))?;
                    inputs.push(Some(t.normalized()));
                }
                None => {
                    return Err(invalid(
                        op,
                        format!("input {i} is missing, expected a tensor"),
                    ))
                }
            }
        }
        check_attr_names(op, attrs, &def.attr_names())?;
        Ok(Call {
            op,
            names: Vec::new(),
            inputs,
            attrs,
        })
    }

    /// The name of input `i` for messages.
    pub(crate) fn name(&self, i: usize) -> String {
        match self.names.get(i) {
            Some(n) => format!("`{n}`"),
            None => format!("{i}"),
        }
    }

    /// Every input slot.
    pub(crate) fn inputs(&self) -> &[Option<RefTensor>] {
        &self.inputs
    }

    /// Required input `i`.
    pub(crate) fn input(&self, i: usize) -> Result<&RefTensor> {
        self.inputs.get(i).and_then(|t| t.as_ref()).ok_or_else(|| {
            invalid(
                self.op,
                format!("input {} is missing, expected a tensor", self.name(i)),
            )
        })
    }

    /// Optional input `i`.
    pub(crate) fn optional(&self, i: usize) -> Option<&RefTensor> {
        self.inputs.get(i).and_then(|t| t.as_ref())
    }

    /// The attribute called `name`; when a name is given more than once, the last one counts.
    fn attr(&self, name: &str) -> Option<&'a AttrValue> {
        self.attrs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    fn wrong_kind(&self, name: &str, found: &AttrValue, expected: &str) -> Error {
        invalid(
            self.op,
            format!("attribute `{name}` is {found:?}, expected {expected}"),
        )
    }

    fn missing(&self, name: &str, expected: &str) -> Error {
        invalid(
            self.op,
            format!("attribute `{name}` is missing, expected {expected}"),
        )
    }

    /// An `Int` attribute, if given.
    pub(crate) fn int_attr(&self, name: &str) -> Result<Option<i64>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(self.wrong_kind(name, other, "Int")),
        }
    }

    /// A required `Int` attribute.
    pub(crate) fn req_int(&self, name: &str) -> Result<i64> {
        self.int_attr(name)?
            .ok_or_else(|| self.missing(name, "Int"))
    }

    /// A `Float` attribute, if given (an `Int` is taken as its value).
    pub(crate) fn float_attr(&self, name: &str) -> Result<Option<f64>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Float(v)) => Ok(Some(*v)),
            Some(AttrValue::Int(v)) => Ok(Some(*v as f64)),
            Some(other) => Err(self.wrong_kind(name, other, "Float")),
        }
    }

    /// A required `Float` attribute.
    pub(crate) fn req_float(&self, name: &str) -> Result<f64> {
        self.float_attr(name)?
            .ok_or_else(|| self.missing(name, "Float"))
    }

    /// An `Ints` attribute, if given (an `Int` is taken as a list of one).
    pub(crate) fn ints_attr(&self, name: &str) -> Result<Option<&'a [i64]>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v)),
            Some(AttrValue::Int(v)) => Ok(Some(std::slice::from_ref(v))),
            Some(other) => Err(self.wrong_kind(name, other, "Ints")),
        }
    }

    /// A `Str` attribute, if given.
    pub(crate) fn str_attr(&self, name: &str) -> Result<Option<&'a str>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Str(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong_kind(name, other, "Str")),
        }
    }

    /// A required `Str` attribute naming a dtype.
    pub(crate) fn dtype_attr(&self, name: &str) -> Result<DType> {
        let s = self
            .str_attr(name)?
            .ok_or_else(|| self.missing(name, "Str (a dtype name)"))?;
        DType::parse(s).map_err(|e| e.context(format!("{}: attribute `{name}`", self.op)))
    }

    /// A boolean attribute: `Int` 0 or 1, `default` when absent.
    pub(crate) fn flag_attr(&self, name: &str, default: bool) -> Result<bool> {
        match self.int_attr(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(invalid(
                self.op,
                format!("attribute `{name}` is Int({v}), expected Int(0) or Int(1)"),
            )),
        }
    }

    /// An axis attribute normalised against `rank`; `default` when absent (None: required).
    pub(crate) fn axis_attr(&self, name: &str, default: Option<i64>, rank: usize) -> Result<usize> {
        let axis = match (self.int_attr(name)?, default) {
            (Some(a), _) => a,
            (None, Some(d)) => d,
            (None, None) => return Err(self.missing(name, "Int (an axis)")),
        };
        normalize_axis(self.op, name, axis, rank)
    }
}

fn check_attr_names(op: &str, attrs: &[(String, AttrValue)], allowed: &[&str]) -> Result<()> {
    for (name, _) in attrs {
        if !allowed.contains(&name.as_str()) {
            let expected = if allowed.is_empty() {
                "no attributes".to_string()
            } else {
                format!("one of {}", allowed.join(", "))
            };
            return Err(invalid(
                op,
                format!("unknown attribute `{name}`, expected {expected}"),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shared checks and index arithmetic
// ---------------------------------------------------------------------------------------------

/// An InvalidArgument error whose message starts with the op's name.
pub(crate) fn invalid(op: &str, message: impl Display) -> Error {
    Error::invalid_argument(format!("{op}: {message}"))
}

/// An internal error: a state that validation rules out.
pub(crate) fn internal(op: &str, message: impl Display) -> Error {
    Error::internal(format!("reference {op}: {message}"))
}

/// Checks that `dtype` of argument `arg` is one of `allowed`.
pub(crate) fn check_dtype(op: &str, arg: &str, dtype: DType, allowed: &[DType]) -> Result<()> {
    if allowed.contains(&dtype) {
        return Ok(());
    }
    let names: Vec<&str> = allowed.iter().map(|d| d.name()).collect();
    Err(invalid(
        op,
        format!(
            "{arg} has dtype {dtype}, expected one of {}",
            names.join(", ")
        ),
    ))
}

/// Checks that `t` (argument `arg`) has the dtype of `reference` (argument `ref_arg`).
pub(crate) fn check_same_dtype(
    op: &str,
    arg: &str,
    t: &RefTensor,
    ref_arg: &str,
    reference: &RefTensor,
) -> Result<()> {
    if t.dtype == reference.dtype {
        return Ok(());
    }
    Err(invalid(
        op,
        format!(
            "{arg} has dtype {} but {ref_arg} has {}: inputs must share one dtype (no type promotion)",
            t.dtype, reference.dtype
        ),
    ))
}

/// A Python-style axis (negative counts from the end) as an index below `rank`.
pub(crate) fn normalize_axis(op: &str, name: &str, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis >= -r && axis < r {
        Ok(if axis < 0 { axis + r } else { axis } as usize)
    } else if rank == 0 {
        Err(invalid(
            op,
            format!("{name} {axis} is out of range for a rank-0 tensor, which has no axes"),
        ))
    } else {
        Err(invalid(
            op,
            format!(
                "{name} {axis} is out of range for rank {rank}, expected {}..={}",
                -r,
                r - 1
            ),
        ))
    }
}

/// Number of elements of a shape.
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The row-major multi-index of `linear` in `shape`.
pub(crate) fn unravel(mut linear: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            index[i] = linear % d;
            linear /= d;
        }
    }
    index
}

/// The row-major linear index of `index` in `shape`.
pub(crate) fn ravel(index: &[usize], shape: &[usize]) -> usize {
    index.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// The NumPy broadcast of the shapes of named arguments.
pub(crate) fn broadcast_shapes(op: &str, shapes: &[(&str, &[usize])]) -> Result<Vec<usize>> {
    let rank = shapes.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for k in 0..rank {
        // k-th dimension from the right.
        let mut size: Option<(usize, &str)> = None;
        for (name, s) in shapes {
            if k >= s.len() {
                continue;
            }
            let d = s[s.len() - 1 - k];
            if d == 1 {
                continue;
            }
            match size {
                None => size = Some((d, name)),
                Some((e, other)) if e != d => {
                    let listed: Vec<String> = shapes
                        .iter()
                        .map(|(n, s)| format!("{n} is {}", shape_str(s)))
                        .collect();
                    return Err(invalid(
                        op,
                        format!(
                            "cannot broadcast: {}; dimension -{} is {e} in {other} and {d} in {name}, \
                             expected equal sizes or 1",
                            listed.join(", "),
                            k + 1
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        out[rank - 1 - k] = size.map_or(1, |(d, _)| d);
    }
    Ok(out)
}

/// The linear index in `in_shape` of the element that broadcasts to `out_index`.
pub(crate) fn broadcast_source(out_index: &[usize], in_shape: &[usize]) -> usize {
    let skip = out_index.len() - in_shape.len();
    let mut linear = 0;
    for (k, &d) in in_shape.iter().enumerate() {
        let i = if d == 1 { 0 } else { out_index[skip + k] };
        linear = linear * d + i;
    }
    linear
}

/// The values of `t` broadcast to `shape` (which `broadcast_shapes` produced), row-major.
pub(crate) fn expand(t: &RefTensor, shape: &[usize]) -> RefData {
    if t.shape == shape {
        return t.data.clone();
    }
    let positions: Vec<usize> = (0..numel(shape))
        .map(|i| broadcast_source(&unravel(i, shape), &t.shape))
        .collect();
    t.data.select(&positions)
}

/// The row-major positions of line `line` along `axis` of `shape`, one per position along the
/// axis; lines are numbered row-major over the other axes.
pub(crate) fn line_positions(shape: &[usize], axis: usize, line: usize) -> Vec<usize> {
    let inner: usize = shape[axis + 1..].iter().product();
    let len = shape[axis];
    let (outer_i, inner_i) = (line / inner.max(1), line % inner.max(1));
    (0..len)
        .map(|t| (outer_i * len + t) * inner + inner_i)
        .collect()
}

/// Number of lines along `axis` of `shape`.
pub(crate) fn line_count(shape: &[usize], axis: usize) -> usize {
    shape[..axis].iter().product::<usize>() * shape[axis + 1..].iter().product::<usize>()
}

/// A message fragment naming a tensor argument and its shape, e.g. "x is 2x3".
pub(crate) fn describe(arg: &str, t: &RefTensor) -> String {
    format!("{arg} is {} {}", t.dtype, shape_str(&t.shape))
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Shorthands for the tests of every op.

    use super::*;

    pub(crate) fn tf(dtype: DType, shape: &[usize], v: &[f64]) -> Option<RefTensor> {
        Some(RefTensor::from_f64(dtype, shape, v.to_vec()).unwrap())
    }

    pub(crate) fn ti(dtype: DType, shape: &[usize], v: &[i64]) -> Option<RefTensor> {
        Some(RefTensor::from_i64(dtype, shape, v.to_vec()).unwrap())
    }

    pub(crate) fn f32t(shape: &[usize], v: &[f64]) -> Option<RefTensor> {
        tf(DType::F32, shape, v)
    }

    pub(crate) fn int(name: &str, v: i64) -> (String, AttrValue) {
        (name.to_string(), AttrValue::Int(v))
    }

    pub(crate) fn float(name: &str, v: f64) -> (String, AttrValue) {
        (name.to_string(), AttrValue::Float(v))
    }

    pub(crate) fn ints(name: &str, v: &[i64]) -> (String, AttrValue) {
        (name.to_string(), AttrValue::Ints(v.to_vec()))
    }

    pub(crate) fn string(name: &str, v: &str) -> (String, AttrValue) {
        (name.to_string(), AttrValue::Str(v.to_string()))
    }

    /// Runs an op with one output.
    pub(crate) fn run1(
        op: &str,
        inputs: &[Option<RefTensor>],
        attrs: &[(String, AttrValue)],
    ) -> RefTensor {
        let mut out = run(op, inputs, attrs).unwrap_or_else(|e| panic!("{op}: {e}"));
        assert_eq!(out.len(), 1, "{op}: one output expected");
        out.remove(0)
    }

    /// The error of a call that must fail.
    pub(crate) fn fails(
        op: &str,
        inputs: &[Option<RefTensor>],
        attrs: &[(String, AttrValue)],
    ) -> Error {
        match run(op, inputs, attrs) {
            Ok(out) => panic!("{op}: expected an error, got {out:?}"),
            Err(e) => e,
        }
    }

    /// Asserts dtype, shape and float values exactly (NaN meets NaN, the sign of zero ignored).
    #[track_caller]
    pub(crate) fn assert_f(t: &RefTensor, dtype: DType, shape: &[usize], expected: &[f64]) {
        assert_close(t, dtype, shape, expected, 0.0);
    }

    /// Asserts dtype, shape and float values to within `tol` relative (and absolute near 0).
    #[track_caller]
    pub(crate) fn assert_close(
        t: &RefTensor,
        dtype: DType,
        shape: &[usize],
        expected: &[f64],
        tol: f64,
    ) {
        assert_eq!(t.dtype, dtype, "dtype of {t:?}");
        assert_eq!(t.shape, shape, "shape of {t:?}");
        let got = t
            .f64_data()
            .unwrap_or_else(|| panic!("float data expected: {t:?}"));
        assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
        for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
            let ok = if e.is_nan() {
                g.is_nan()
            } else if e.is_infinite() {
                g == e
            } else {
                (g - e).abs() <= tol * e.abs().max(1.0)
            };
            assert!(ok, "element {i}: got {g}, expected {e} (all: {got:?})");
        }
    }

    /// Asserts dtype, shape and integer (or bool) values exactly.
    #[track_caller]
    pub(crate) fn assert_i(t: &RefTensor, dtype: DType, shape: &[usize], expected: &[i64]) {
        assert_eq!(t.dtype, dtype, "dtype of {t:?}");
        assert_eq!(t.shape, shape, "shape of {t:?}");
        assert_eq!(t.i64_data(), Some(expected), "{t:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use anyaccel_hal::ErrorCode;

    /// A small deterministic generator for sweeping bit patterns.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn rounding_to_f16_and_bf16_matches_half_on_f32_inputs() {
        // half's f32 conversions round once and correctly; from an f32 value, so must ours.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            let x = f32::from_bits(next(&mut s) as u32);
            let ours16 = round_to_dtype(x as f64, DType::F16);
            let theirs16 = f16::from_f32(x).to_f64();
            let ours_b = round_to_dtype(x as f64, DType::BF16);
            let theirs_b = bf16::from_f32(x).to_f64();
            if x.is_nan() {
                assert!(ours16.is_nan() && ours_b.is_nan());
                continue;
            }
            assert_eq!(ours16.to_bits(), theirs16.to_bits(), "f16 of {x:e}");
            assert_eq!(ours_b.to_bits(), theirs_b.to_bits(), "bf16 of {x:e}");
        }
    }

    #[test]
    fn rounding_to_f32_matches_a_generic_rounding() {
        let f32_format = FloatFormat {
            precision: 24,
            emin: -126,
            emax: 127,
        };
        let mut s = 0x1234_5678_9abc_def1u64;
        for _ in 0..200_000 {
            // Exponents near f32's range, so that overflow and subnormals are exercised.
            let bits = next(&mut s);
            let exp = 1023 - 160 + (bits >> 53) % 300;
            let x = f64::from_bits((bits & 0x800f_ffff_ffff_ffff) | (exp << 52));
            let a = round_to_dtype(x, DType::F32);
            let b = round_to_format(x, &f32_format);
            assert_eq!(a.to_bits(), b.to_bits(), "{x:e}");
        }
    }

    #[test]
    fn rounding_ties_and_limits() {
        // 1 + 2^-11 is halfway between two f16 values: ties to even gives 1.
        assert_eq!(round_to_dtype(1.0 + pow2(-11), DType::F16), 1.0);
        // Just above halfway, by less than f32 can hold: rounds up (a single rounding).
        assert_eq!(
            round_to_dtype(1.0 + pow2(-11) + pow2(-40), DType::F16),
            1.0 + pow2(-10)
        );
        assert_eq!(
            round_to_dtype(1.0 + pow2(-8) + pow2(-45), DType::BF16),
            1.0 + pow2(-7)
        );
        assert_eq!(round_to_dtype(65519.0, DType::F16), 65504.0);
        assert_eq!(round_to_dtype(65520.0, DType::F16), f64::INFINITY);
        assert_eq!(round_to_dtype(-1e300, DType::F32), f64::NEG_INFINITY);
        assert_eq!(round_to_dtype(1e300, DType::BF16), f64::INFINITY);
        // Smallest f16 subnormal is 2^-24; half of it ties to 0, a bit more rounds up.
        assert_eq!(round_to_dtype(pow2(-25), DType::F16), 0.0);
        assert_eq!(round_to_dtype(pow2(-25) * 1.5, DType::F16), pow2(-24));
        let z = round_to_dtype(-pow2(-30), DType::F16);
        assert!(z == 0.0 && z.is_sign_negative());
        assert!(round_to_dtype(f64::NAN, DType::BF16).is_nan());
        assert_eq!(
            round_to_dtype(-0.0, DType::F16).to_bits(),
            (-0.0f64).to_bits()
        );
        // Integer dtypes use the cast rule.
        assert_eq!(round_to_dtype(300.7, DType::U8), 255.0);
        assert_eq!(round_to_dtype(-2.9, DType::I32), -2.0);
        assert_eq!(round_to_dtype(f64::NAN, DType::I32), 0.0);
        assert_eq!(round_to_dtype(f64::NAN, DType::Bool), 1.0);
        assert_eq!(round_to_dtype(-0.0, DType::Bool), 0.0);
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap_int(-1, DType::U8), 255);
        assert_eq!(wrap_int(256 + 7, DType::U8), 7);
        assert_eq!(wrap_int(1 << 31, DType::I32), i32::MIN as i64);
        assert_eq!(wrap_int(0x1_0000_0005, DType::I32), 5);
        assert_eq!(wrap_int(i64::MIN, DType::I64), i64::MIN);
        assert_eq!(wrap_int(-3, DType::Bool), 1);
        assert_eq!(wrap_int(0, DType::Bool), 0);
    }

    #[test]
    fn integers_round_once_to_floats() {
        // 2^53 + 1 is not an f64; converting through f64 would tie to 2^53.
        assert_eq!(
            round_int_to_dtype((1 << 53) + 1, DType::F64),
            9007199254740992.0
        );
        assert_eq!(round_int_to_dtype(16_777_217, DType::F32), 16_777_216.0);
        assert_eq!(round_int_to_dtype(16_777_219, DType::F32), 16_777_220.0);
        assert_eq!(round_int_to_dtype(2049, DType::F16), 2048.0);
        assert_eq!(round_int_to_dtype(2051, DType::F16), 2052.0);
        assert_eq!(round_int_to_dtype(65520, DType::F16), f64::INFINITY);
        assert_eq!(round_int_to_dtype(-65519, DType::F16), -65504.0);
        assert_eq!(round_int_to_dtype(257, DType::BF16), 256.0);
        assert_eq!(round_int_to_dtype(259, DType::BF16), 260.0);
        // An i64 just above a bf16 halfway point by less than f64 can hold: rounds up.
        let x = (1i64 << 62) + (1i64 << 54) + 1;
        assert_eq!(
            round_int_to_dtype(x, DType::BF16),
            (1u64 << 62) as f64 + pow2(55)
        );
        assert_eq!(round_int_to_dtype(i64::MIN, DType::BF16), -pow2(63));
    }

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

    #[test]
    fn the_generic_call_checks_names_inputs_and_attributes() {
        let x = f32t(&[2], &[1.0, 2.0]);
        let e = fails("frobnicate", std::slice::from_ref(&x), &[]);
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.message().starts_with("unknown op `frobnicate`"), "{e}");

        let e = fails("add", std::slice::from_ref(&x), &[]);
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.message().contains("input `b`"), "{e}");

        let e = fails("neg", &[x.clone(), x.clone()], &[]);
        assert!(
            e.message().contains("found 2 inputs, expected at most 1"),
            "{e}"
        );

        let e = fails("neg", std::slice::from_ref(&x), &[int("axis", 0)]);
        assert!(
            e.message()
                .contains("unknown attribute `axis`, expected no attributes"),
            "{e}"
        );

        let e = fails("softmax", std::slice::from_ref(&x), &[float("axis", 0.0)]);
        assert!(
            e.message()
                .contains("attribute `axis` is Float(0.0), expected Int"),
            "{e}"
        );

        // The last of repeated attributes counts; an Int serves as a Float or a one-element Ints.
        let t = run1(
            "sum",
            std::slice::from_ref(&x),
            &[ints("axes", &[5]), int("axes", 0), int("keepdim", 1)],
        );
        assert_f(&t, DType::F32, &[1], &[3.0]);
        let t = run1(
            "clamp",
            std::slice::from_ref(&x),
            &[int("min", 0), float("max", 1.5)],
        );
        assert_f(&t, DType::F32, &[2], &[1.0, 1.5]);

        let e = fails("cumsum", std::slice::from_ref(&x), &[]);
        assert!(e.message().contains("attribute `axis` is missing"), "{e}");

        let e = fails("sum", &[x], &[int("keepdim", 2)]);
        assert!(e.message().contains("expected Int(0) or Int(1)"), "{e}");

        // Every op of the list is known to `run`.
        for op in ops() {
            if let Err(e) = run(op, &[], &[]) {
                assert!(!e.message().starts_with("unknown op"), "{op}: {e}");
            }
        }
    }

    #[test]
    fn index_arithmetic() {
        assert_eq!(unravel(5, &[2, 3]), vec![1, 2]);
        assert_eq!(ravel(&[1, 2], &[2, 3]), 5);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
        assert_eq!(
            broadcast_shapes("t", &[("a", &[2, 1, 3]), ("b", &[4, 1])]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(
            broadcast_shapes("t", &[("a", &[0, 1]), ("b", &[1])]).unwrap(),
            vec![0, 1]
        );
        let e = broadcast_shapes("add", &[("a", &[2, 3]), ("b", &[4, 3])]).unwrap_err();
        assert!(
            e.message()
                .contains("dimension -2 is 2 in a and 4 in b, expected equal sizes or 1"),
            "{e}"
        );
        assert_eq!(broadcast_source(&[1, 2, 0], &[3, 1]), 2);
        assert_eq!(line_positions(&[2, 3, 2], 1, 3), vec![7, 9, 11]);
        assert_eq!(line_count(&[2, 3, 2], 1), 4);
        assert_eq!(normalize_axis("t", "axis", -1, 3).unwrap(), 2);
        let e = normalize_axis("t", "axis", 3, 3).unwrap_err();
        assert!(e.message().contains("expected -3..=2"), "{e}");
        let e = normalize_axis("t", "axis", 0, 0).unwrap_err();
        assert!(e.message().contains("rank-0"), "{e}");
    }
}
