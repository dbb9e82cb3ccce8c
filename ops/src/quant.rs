//! The geometry of the quantized ops (docs/ops.md, "Quantized ops"): `quantize`, `dequantize`,
//! `matmul_wq` and `matmul_i8`. Validation of shapes, dtypes and attributes, and the 2-D views
//! every dialect's launcher works on.
//!
//! Formats: int8 data is an i8 tensor [.., K]; int4 data is a u8 tensor [.., K / 2] whose byte j
//! holds element 2j in its low nibble and 2j + 1 in its high one. K is split into groups of
//! `group_size`; each group has a scale (the data's float dtype) and a zero point (the storage
//! dtype: i8 or u8, one per element). The value is `(q - z) * s`; without zero points z is 0
//! (int8) or 8 (int4).

use anyaccel_hal::{shape_str, DType, Error, Queue, Result, Tensor, TensorDesc};

use crate::attrs::Attrs;

fn invalid(msg: String) -> Error {
    Error::invalid_argument(msg)
}

/// The bit width of quantized data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bits {
    Int8,
    Int4,
}

impl Bits {
    /// The width of data stored as `dtype` (i8: int8, u8: packed int4).
    pub fn of_storage(op: &str, name: &str, dtype: DType) -> Result<Bits> {
        match dtype {
            DType::I8 => Ok(Bits::Int8),
            DType::U8 => Ok(Bits::Int4),
            d => Err(invalid(format!(
                "{op}: {name} is {d}, expected i8 (int8 data) or u8 (packed int4 data)"
            ))),
        }
    }

    /// The storage dtype of the data and of the zero points.
    pub fn storage(self) -> DType {
        match self {
            Bits::Int8 => DType::I8,
            Bits::Int4 => DType::U8,
        }
    }

    /// Stored elements per row of K values.
    pub fn stored(self, k: usize) -> usize {
        match self {
            Bits::Int8 => k,
            Bits::Int4 => k / 2,
        }
    }

    /// The zero point without zero points given.
    pub fn implicit_zero(self) -> i32 {
        match self {
            Bits::Int8 => 0,
            Bits::Int4 => 8,
        }
    }

    /// The values a stored element holds: (min, max).
    pub fn stored_range(self) -> (i32, i32) {
        match self {
            Bits::Int8 => (i8::MIN as i32, i8::MAX as i32),
            Bits::Int4 => (0, 15),
        }
    }

    /// The magnitude symmetric quantization maps the largest value to: the largest one the
    /// stored range holds on both sides of the implicit zero.
    pub fn symmetric_max(self) -> f32 {
        let (lo, hi) = self.stored_range();
        let z = self.implicit_zero();
        (hi - z).min(z - lo) as f32
    }
}

/// The group arithmetic of one call: K values a row, in groups of `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Format {
    pub bits: Bits,
    pub k: usize,
    pub group: usize,
}

impl Format {
    fn of(op: &str, attrs: &Attrs<'_>, bits: Bits, k: usize) -> Result<Format> {
        let g = attrs.int("group_size")?;
        let group = usize::try_from(g)
            .ok()
            .filter(|&g| g >= 1)
            .ok_or_else(|| invalid(format!("{op}: group_size is {g}, expected 1 or more")))?;
        if !k.is_multiple_of(group) {
            return Err(invalid(format!(
                "{op}: group_size {group} does not divide K = {k} (the length of the quantized axis)"
            )));
        }
        if bits == Bits::Int4 && (!k.is_multiple_of(2) || !group.is_multiple_of(2)) {
            return Err(invalid(format!(
                "{op}: packed int4 needs an even K and an even group_size (two values a byte); \
                 found K = {k}, group_size = {group}"
            )));
        }
        Ok(Format { bits, k, group })
    }

    /// Groups a row.
    pub fn groups(&self) -> usize {
        self.k / self.group
    }
}

/// The leading dims of `t` ([.., last]) as one row axis: (rows, row stride, stride of the last
/// axis), or `None` when the leading dims have no single stride.
pub(crate) fn rows_of(t: &TensorDesc) -> Option<(usize, usize, usize)> {
    let r = t.rank();
    let inner = if r == 0 { 0 } else { t.strides[r - 1] };
    let lead = r.saturating_sub(1);
    let rows: usize = t.shape[..lead].iter().product();
    let mut stride = None::<usize>;
    let mut expect = None::<usize>;
    for i in (0..lead).rev() {
        if t.shape[i] == 1 {
            continue;
        }
        match expect {
            None => stride = Some(t.strides[i]),
            Some(e) if e == t.strides[i] => {}
            Some(_) => return None,
        }
        expect = Some(t.strides[i].checked_mul(t.shape[i])?);
    }
    Some((rows, stride.unwrap_or(0), inner))
}

fn leading(t: &TensorDesc) -> &[usize] {
    &t.shape[..t.rank().saturating_sub(1)]
}

fn last(t: &TensorDesc) -> usize {
    t.shape.last().copied().unwrap_or(1)
}

fn expect_shape(op: &str, name: &str, t: &TensorDesc, want: &[usize], why: &str) -> Result<()> {
    if t.shape != want {
        return Err(invalid(format!(
            "{op}: {name} has shape {}, expected {} ({why})",
            shape_str(&t.shape),
            shape_str(want)
        )));
    }
    Ok(())
}

fn expect_dtype(op: &str, name: &str, t: &TensorDesc, want: DType, why: &str) -> Result<()> {
    if t.dtype != want {
        return Err(invalid(format!(
            "{op}: {name} is {}, expected {want} ({why})",
            t.dtype
        )));
    }
    Ok(())
}

fn with_last(lead: &[usize], n: usize) -> Vec<usize> {
    let mut s = lead.to_vec();
    s.push(n);
    s
}

fn min_rank(op: &str, name: &str, t: &TensorDesc, r: usize) -> Result<()> {
    if t.rank() < r {
        return Err(invalid(format!(
            "{op}: {name} has shape {}, expected rank {r} or more",
            shape_str(&t.shape)
        )));
    }
    Ok(())
}

/// A `quantize` call: `rows` rows of x [.., K].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuantizeGeom {
    pub fmt: Format,
    pub rows: usize,
    pub symmetric: bool,
    /// Shapes of q, scales and zeros.
    pub shapes: [Vec<usize>; 3],
    pub dtypes: [DType; 3],
}

impl QuantizeGeom {
    pub fn of(op: &str, attrs: &Attrs<'_>, x: &TensorDesc) -> Result<QuantizeGeom> {
        min_rank(op, "x", x, 1)?;
        let bits = match attrs.int("bits")? {
            8 => Bits::Int8,
            4 => Bits::Int4,
            b => return Err(invalid(format!("{op}: bits is {b}, expected 8 or 4"))),
        };
        let symmetric = attrs.flag("symmetric", true)?;
        let fmt = Format::of(op, attrs, bits, last(x))?;
        let lead = leading(x);
        Ok(QuantizeGeom {
            fmt,
            rows: lead.iter().product(),
            symmetric,
            shapes: [
                with_last(lead, bits.stored(fmt.k)),
                with_last(lead, fmt.groups()),
                with_last(lead, fmt.groups()),
            ],
            dtypes: [bits.storage(), x.dtype, bits.storage()],
        })
    }

    /// The levels q takes: (qmin, qmax) of the stored value.
    pub fn levels(&self) -> (i32, i32) {
        let bits = self.fmt.bits;
        if self.symmetric {
            // Symmetric about the implicit zero, the largest magnitude at +-symmetric_max.
            let (z, m) = (bits.implicit_zero(), bits.symmetric_max() as i32);
            (z - m, z + m)
        } else {
            bits.stored_range()
        }
    }
}

/// Checks scales and zero points [lead.., groups] against data of `fmt`.
fn check_params(
    op: &str,
    lead: &[usize],
    fmt: &Format,
    scales: &TensorDesc,
    zeros: Option<&TensorDesc>,
    float: DType,
) -> Result<()> {
    let want = with_last(lead, fmt.groups());
    let why = format!("K = {} in groups of {}", fmt.k, fmt.group);
    expect_shape(op, "scales", scales, &want, &why)?;
    expect_dtype(op, "scales", scales, float, "the dtype of the float data")?;
    if let Some(z) = zeros {
        expect_shape(op, "zeros", z, &want, &why)?;
        expect_dtype(
            op,
            "zeros",
            z,
            fmt.bits.storage(),
            "zero points are stored as the data is",
        )?;
    }
    Ok(())
}

/// A `dequantize` call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DequantizeGeom {
    pub fmt: Format,
    pub rows: usize,
    pub out_shape: Vec<usize>,
}

impl DequantizeGeom {
    pub fn of(
        op: &str,
        attrs: &Attrs<'_>,
        q: &TensorDesc,
        scales: &TensorDesc,
        zeros: Option<&TensorDesc>,
    ) -> Result<DequantizeGeom> {
        min_rank(op, "q", q, 1)?;
        let bits = Bits::of_storage(op, "q", q.dtype)?;
        let k = match bits {
            Bits::Int8 => last(q),
            Bits::Int4 => last(q)
                .checked_mul(2)
                .ok_or_else(|| invalid(format!("{op}: q's last dim {} is too large", last(q))))?,
        };
        let fmt = Format::of(op, attrs, bits, k)?;
        if !scales.dtype.is_float() || scales.dtype == DType::F64 {
            return Err(invalid(format!(
                "{op}: scales is {}, expected f32, f16 or bf16",
                scales.dtype
            )));
        }
        let lead = leading(q);
        check_params(op, lead, &fmt, scales, zeros, scales.dtype)?;
        Ok(DequantizeGeom {
            fmt,
            rows: lead.iter().product(),
            out_shape: with_last(lead, k),
        })
    }
}

/// A `matmul_wq` call: x [.., K] times dequant(w [N, K])^T.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WqGeom {
    pub fmt: Format,
    pub m: usize,
    pub n: usize,
    pub out_shape: Vec<usize>,
}

impl WqGeom {
    pub fn of(
        op: &str,
        attrs: &Attrs<'_>,
        x: &TensorDesc,
        w: &TensorDesc,
        scales: &TensorDesc,
        zeros: Option<&TensorDesc>,
    ) -> Result<WqGeom> {
        min_rank(op, "x", x, 1)?;
        let bits = Bits::of_storage(op, "w", w.dtype)?;
        let k = last(x);
        let fmt = Format::of(op, attrs, bits, k)?;
        if w.rank() != 2 || w.shape[1] != bits.stored(k) {
            return Err(invalid(format!(
                "{op}: w has shape {}, expected [N, {}] ({} weights for K = {k})",
                shape_str(&w.shape),
                bits.stored(k),
                match bits {
                    Bits::Int8 => "int8",
                    Bits::Int4 => "packed int4",
                }
            )));
        }
        let n = w.shape[0];
        check_params(op, &[n], &fmt, scales, zeros, x.dtype)?;
        let lead = leading(x);
        Ok(WqGeom {
            fmt,
            m: lead.iter().product(),
            n,
            out_shape: with_last(lead, n),
        })
    }
}

/// A `matmul_i8` call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct I8Geom {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub out: DType,
}

impl I8Geom {
    pub fn of(
        op: &str,
        attrs: &Attrs<'_>,
        a: &TensorDesc,
        b: &TensorDesc,
        row_scale: Option<&TensorDesc>,
        col_scale: Option<&TensorDesc>,
    ) -> Result<I8Geom> {
        let out = attrs.dtype("dtype")?;
        if !matches!(out, DType::I32 | DType::F32 | DType::F16 | DType::BF16) {
            return Err(invalid(format!(
                "{op}: dtype is {out}, expected i32, f32, f16 or bf16"
            )));
        }
        for (name, t) in [("a", a), ("b", b)] {
            if t.rank() != 2 {
                return Err(invalid(format!(
                    "{op}: {name} has shape {}, expected rank 2",
                    shape_str(&t.shape)
                )));
            }
        }
        let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1]);
        if b.shape[0] != k {
            return Err(invalid(format!(
                "{op}: a is {} and b is {}: inner dims differ",
                shape_str(&a.shape),
                shape_str(&b.shape)
            )));
        }
        for (name, t, len) in [("row_scale", row_scale, m), ("col_scale", col_scale, n)] {
            let Some(t) = t else { continue };
            if out == DType::I32 {
                return Err(invalid(format!(
                    "{op}: {name} is given but dtype is i32; scales need a float output \
                     (dtype f32, f16 or bf16)"
                )));
            }
            expect_shape(op, name, t, &[len], "one scale per row of a / column of b")?;
        }
        Ok(I8Geom { m, k, n, out })
    }
}

/// Runs `run` over `inputs` and `outputs` whose leading dims each collapse to one row stride
/// (see [`rows_of`]): inputs that do not are copied to contiguous tensors first, and outputs
/// that do not are written to a contiguous tensor that is copied into them after.
pub(crate) fn in_row_layouts(
    queue: &dyn Queue,
    inputs: &[Option<&Tensor>],
    outputs: &[&Tensor],
    run: impl FnOnce(&[Option<Tensor>], &[Tensor]) -> Result<()>,
) -> Result<()> {
    let ins = inputs
        .iter()
        .map(|t| {
            t.map(|t| -> Result<Tensor> {
                if rows_of(t.desc()).is_some() {
                    Ok(t.clone())
                } else {
                    Ok(crate::dispatch::call(queue, "copy", &[Some(t)], &[])?.remove(0))
                }
            })
            .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    let device = queue.device();
    let mut outs = Vec::with_capacity(outputs.len());
    for t in outputs {
        if rows_of(t.desc()).is_some() {
            outs.push((*t).clone());
        } else {
            outs.push(Tensor::empty(&*device, t.dtype(), t.shape())?);
        }
    }
    run(&ins, &outs)?;
    for (t, tmp) in outputs.iter().zip(&outs) {
        if rows_of(t.desc()).is_none() {
            crate::dispatch::call_into(queue, "copy", &[Some(tmp)], &[*t], &[])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(shape: &[usize], strides: &[usize]) -> TensorDesc {
        TensorDesc {
            dtype: DType::F32,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset: 0,
        }
    }

    #[test]
    fn rows_collapse_only_with_one_stride() {
        assert_eq!(rows_of(&d(&[2, 3, 4], &[12, 4, 1])), Some((6, 4, 1)));
        assert_eq!(rows_of(&d(&[2, 3, 4], &[24, 8, 1])), Some((6, 8, 1)));
        assert_eq!(rows_of(&d(&[2, 3, 4], &[1, 2, 6])), None);
        assert_eq!(rows_of(&d(&[2, 1, 4], &[4, 99, 1])), Some((2, 4, 1)));
        assert_eq!(rows_of(&d(&[4], &[3])), Some((1, 0, 3)));
        assert_eq!(rows_of(&d(&[3, 4], &[1, 3])), Some((3, 1, 3)));
    }
}
