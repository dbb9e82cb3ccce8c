//! The quantized ops: `quantize`, `dequantize`, `matmul_wq`, `matmul_i8` (docs/ops.md,
//! "Quantized ops"). Quantize follows the contract's f32 steps exactly (each f32 operation is an
//! f64 operation rounded once to f32, which for one +, -, x or / of f32 values is the correctly
//! rounded f32 result); the matmuls are exact sums rounded once.

use anyaccel_hal::{shape_str, DType, Result};

use super::rounding::round_to_dtype;
use super::{check_dtype, describe, invalid, Call, RefTensor, FLOAT_DTYPES};

/// int8 (i8 data) or packed int4 (u8 data, two values a byte, the low nibble first).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Width {
    Int8,
    Int4,
}

impl Width {
    fn of(op: &str, name: &str, d: DType) -> Result<Width> {
        match d {
            DType::I8 => Ok(Width::Int8),
            DType::U8 => Ok(Width::Int4),
            _ => Err(invalid(op, format!("{name} is {d}, expected i8 or u8"))),
        }
    }
    fn dtype(self) -> DType {
        match self {
            Width::Int8 => DType::I8,
            Width::Int4 => DType::U8,
        }
    }
    fn default_zero(self) -> i64 {
        match self {
            Width::Int8 => 0,
            Width::Int4 => 8,
        }
    }
}

/// The unpacked values of a row-major quantized tensor, row by row.
fn unpack(q: &RefTensor, w: Width) -> Vec<i64> {
    let raw = q.to_i64_vec();
    match w {
        Width::Int8 => raw,
        Width::Int4 => {
            let mut out = Vec::with_capacity(raw.len() * 2);
            for byte in raw {
                out.push(byte & 15);
                out.push((byte >> 4) & 15);
            }
            out
        }
    }
}

fn group_size(call: &Call, k: usize, w: Width) -> Result<usize> {
    let op = call.op;
    let g = call.req_int("group_size")?;
    if g < 1 || k as i64 % g != 0 {
        return Err(invalid(
            op,
            format!("group_size {g} must be positive and divide K = {k}"),
        ));
    }
    if w == Width::Int4 && (!k.is_multiple_of(2) || g % 2 != 0) {
        return Err(invalid(
            op,
            format!("int4 needs an even K and group_size, found {k} and {g}"),
        ));
    }
    Ok(g as usize)
}

fn f32r(x: f64) -> f64 {
    x as f32 as f64
}

/// `quantize`: q, scales and zeros of the last axis of x in groups.
pub(crate) fn quantize(call: &Call) -> Result<Vec<RefTensor>> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    if x.rank() == 0 {
        return Err(invalid(
            op,
            format!("{}: expected rank >= 1", describe("x", x)),
        ));
    }
    let w = match call.req_int("bits")? {
        8 => Width::Int8,
        4 => Width::Int4,
        b => return Err(invalid(op, format!("bits {b}, expected 8 or 4"))),
    };
    let sym = call.flag_attr("symmetric", true)?;
    let k = x.shape[x.rank() - 1];
    let g = group_size(call, k, w)?;
    let groups = k / g;
    let rows: usize = x.shape[..x.rank() - 1].iter().product();
    let v = x.to_f64_vec();
    let (qmin, qmax, zdef) = match (w, sym) {
        (Width::Int8, true) => (-127.0, 127.0, 0.0),
        (Width::Int4, true) => (1.0, 15.0, 8.0),
        (Width::Int8, false) => (-128.0, 127.0, 0.0),
        (Width::Int4, false) => (0.0, 15.0, 0.0),
    };
    let mut codes = Vec::with_capacity(rows * k);
    let (mut scales, mut zeros) = (Vec::new(), Vec::new());
    for r in 0..rows {
        for gi in 0..groups {
            let vals = &v[r * k + gi * g..r * k + (gi + 1) * g];
            let (s, z) = if sym {
                let amax = vals.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                let div = if w == Width::Int8 { 127.0 } else { 7.0 };
                (round_to_dtype(f32r(amax / div), x.dtype), zdef)
            } else {
                let lo = vals.iter().fold(0.0f64, |m, &x| m.min(x));
                let hi = vals.iter().fold(0.0f64, |m, &x| m.max(x));
                let s = round_to_dtype(f32r(f32r(hi - lo) / (qmax - qmin)), x.dtype);
                let z = if s == 0.0 {
                    0.0
                } else {
                    (qmin - f32r(lo / s).round_ties_even()).clamp(qmin, qmax)
                };
                (s, z)
            };
            for &x in vals {
                codes.push(if s == 0.0 {
                    z as i64
                } else {
                    (f32r(x / s).round_ties_even() + z).clamp(qmin, qmax) as i64
                });
            }
            scales.push(s);
            zeros.push(z as i64);
        }
    }
    let lead = &x.shape[..x.rank() - 1];
    let shape = |n: usize| {
        let mut s = lead.to_vec();
        s.push(n);
        s
    };
    let q = match w {
        Width::Int8 => RefTensor::from_i64(DType::I8, &shape(k), codes)?,
        Width::Int4 => RefTensor::from_i64(
            DType::U8,
            &shape(k / 2),
            codes
                .chunks_exact(2)
                .map(|p| (p[0] & 15) | ((p[1] & 15) << 4))
                .collect(),
        )?,
    };
    Ok(vec![
        q,
        RefTensor::from_f64(x.dtype, &shape(groups), scales)?,
        RefTensor::from_i64(w.dtype(), &shape(groups), zeros)?,
    ])
}

/// Checks scales [lead.., groups] (of dtype `float`) and zeros against data of width `w`.
fn check_params(
    call: &Call,
    lead: &[usize],
    groups: usize,
    w: Width,
    s_at: usize,
    float: DType,
) -> Result<()> {
    let op = call.op;
    let mut want = lead.to_vec();
    want.push(groups);
    let s = call.input(s_at)?;
    if s.shape != want || s.dtype != float {
        return Err(invalid(
            op,
            format!(
                "{}: expected {float} {}",
                describe("scales", s),
                shape_str(&want)
            ),
        ));
    }
    if let Some(z) = call.optional(s_at + 1) {
        if z.shape != want || z.dtype != w.dtype() {
            return Err(invalid(
                op,
                format!(
                    "{}: expected {} {}",
                    describe("zeros", z),
                    w.dtype(),
                    shape_str(&want)
                ),
            ));
        }
    }
    Ok(())
}

/// The zero points of groups (row-major), or the implicit ones.
fn zeros_of(call: &Call, at: usize, w: Width, n: usize) -> Vec<i64> {
    match call.optional(at) {
        Some(z) => z.to_i64_vec(),
        None => vec![w.default_zero(); n],
    }
}

/// `dequantize`: (q - z) * s.
pub(crate) fn dequantize(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let q = call.input(0)?;
    let w = Width::of(op, "q", q.dtype)?;
    if q.rank() == 0 {
        return Err(invalid(
            op,
            format!("{}: expected rank >= 1", describe("q", q)),
        ));
    }
    let s = call.input(1)?;
    check_dtype(op, "scales", s.dtype, &FLOAT_DTYPES)?;
    let stored = q.shape[q.rank() - 1];
    let k = if w == Width::Int4 { stored * 2 } else { stored };
    let g = group_size(call, k, w)?;
    let lead = &q.shape[..q.rank() - 1];
    let rows: usize = lead.iter().product();
    check_params(call, lead, k / g, w, 1, s.dtype)?;
    let vals = unpack(q, w);
    let sc = s.to_f64_vec();
    let zs = zeros_of(call, 2, w, sc.len());
    let groups = k / g;
    let mut out = Vec::with_capacity(rows * k);
    for r in 0..rows {
        for c in 0..k {
            let gi = r * groups + c / g;
            out.push((vals[r * k + c] - zs[gi]) as f64 * sc[gi]);
        }
    }
    let mut shape = lead.to_vec();
    shape.push(k);
    RefTensor::from_f64(s.dtype, &shape, out)
}

/// `matmul_wq`: x @ dequantize(w)^T, summed exactly (in f64) and rounded once.
pub(crate) fn matmul_wq(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let (x, wt) = (call.input(0)?, call.input(1)?);
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    let w = Width::of(op, "w", wt.dtype)?;
    if x.rank() == 0 {
        return Err(invalid(
            op,
            format!("{}: expected rank >= 1", describe("x", x)),
        ));
    }
    let k = x.shape[x.rank() - 1];
    let g = group_size(call, k, w)?;
    let stored = if w == Width::Int4 { k / 2 } else { k };
    if wt.rank() != 2 || wt.shape[1] != stored {
        return Err(invalid(
            op,
            format!("{}: expected [N, {stored}]", describe("w", wt)),
        ));
    }
    let n = wt.shape[0];
    check_params(call, &[n], k / g, w, 2, x.dtype)?;
    let vals = unpack(wt, w);
    let sc = call.input(2)?.to_f64_vec();
    let zs = zeros_of(call, 3, w, sc.len());
    let xv = x.to_f64_vec();
    let lead = &x.shape[..x.rank() - 1];
    let m: usize = lead.iter().product();
    let groups = k / g;
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0;
            for c in 0..k {
                let gi = j * groups + c / g;
                acc += xv[i * k + c] * (vals[j * k + c] - zs[gi]) as f64 * sc[gi];
            }
            out.push(acc);
        }
    }
    let mut shape = lead.to_vec();
    shape.push(n);
    RefTensor::from_f64(x.dtype, &shape, out)
}

/// `matmul_i8`: the exact sum wrapped to i32, or scaled in f32 to a float output.
pub(crate) fn matmul_i8(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let (a, b) = (call.input(0)?, call.input(1)?);
    check_dtype(op, "a", a.dtype, &[DType::I8])?;
    check_dtype(op, "b", b.dtype, &[DType::I8])?;
    let out = call.dtype_attr("dtype")?;
    check_dtype(
        op,
        "dtype",
        out,
        &[DType::I32, DType::F32, DType::F16, DType::BF16],
    )?;
    if a.rank() != 2 || b.rank() != 2 || a.shape[1] != b.shape[0] {
        return Err(invalid(
            op,
            format!(
                "{} and {}: expected [M, K] and [K, N]",
                describe("a", a),
                describe("b", b)
            ),
        ));
    }
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1]);
    let mut scales = [None, None];
    for (slot, (name, at, len)) in [("row_scale", 2, m), ("col_scale", 3, n)]
        .into_iter()
        .enumerate()
    {
        let Some(t) = call.optional(at) else { continue };
        if out == DType::I32 || t.dtype != DType::F32 || t.shape != [len] {
            return Err(invalid(
                op,
                format!(
                    "{}: expected f32 [{len}] with a float output dtype",
                    describe(name, t)
                ),
            ));
        }
        scales[slot] = Some(t.to_f64_vec());
    }
    let (av, bv) = (a.to_i64_vec(), b.to_i64_vec());
    let mut acc = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let s: i64 = (0..k).map(|c| av[i * k + c] * bv[c * n + j]).sum();
            acc.push(s as i32 as i64);
        }
    }
    if out == DType::I32 {
        return RefTensor::from_i64(DType::I32, &[m, n], acc);
    }
    let vals = acc
        .iter()
        .enumerate()
        .map(|(t, &v)| {
            let mut f = f32r(v as f64);
            if let Some(rs) = &scales[0] {
                f = f32r(f * rs[t / n.max(1)]);
            }
            if let Some(cs) = &scales[1] {
                f = f32r(f * cs[t % n.max(1)]);
            }
            f
        })
        .collect();
    RefTensor::from_f64(out, &[m, n], vals)
}
