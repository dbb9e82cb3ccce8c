//! The quantized ops on the host: `quantize`, `dequantize` (f32 arithmetic as docs/ops.md
//! states it), `matmul_wq` (x widened to f32 once, each weight row's groups summed in f32 and
//! scaled) and `matmul_i8` (b transposed to contiguous rows once, i32 dots that wrap).

use anyaccel_hal::{bf16, f16, DType, Error, OpCall, Result, TensorDesc};

use super::layout::{par_ranges, TView};
use super::qkern::{dot_i8, dot_u4, gemm_i8, Mat};
use super::{Body, Bound};
use crate::attrs::Attrs;
use crate::quant::{Bits, DequantizeGeom, I8Geom, QuantizeGeom, WqGeom};

fn desc(call: &OpCall, i: usize) -> Result<&TensorDesc> {
    super::input_desc(call, i)
        .ok_or_else(|| Error::internal(format!("{}: input {i} missing", call.op)))
}

fn opt_desc(call: &OpCall, i: usize) -> Option<&TensorDesc> {
    super::input_desc(call, i)
}

/// The element offset of row `r` of `d` (its leading dims in row-major order) and the stride of
/// its last axis.
fn row_at(d: &TensorDesc, r: usize) -> usize {
    let lead = d.rank().saturating_sub(1);
    let mut off = d.offset;
    let mut rest = r;
    for i in (0..lead).rev() {
        let n = d.shape[i].max(1);
        off += (rest % n) * d.strides[i];
        rest /= n;
    }
    off
}

fn inner(d: &TensorDesc) -> usize {
    d.strides.last().copied().unwrap_or(0)
}

/// Reads a float element as f32.
///
/// # Safety
/// `off` must be an element offset of `v`'s layout.
unsafe fn ld_f(v: &TView, off: usize) -> f32 {
    // SAFETY: the caller's contract; each arm reads the dtype's storage type.
    unsafe {
        match v.desc.dtype {
            DType::F16 => v.get::<f16>(off).to_f32(),
            DType::BF16 => v.get::<bf16>(off).to_f32(),
            _ => v.get::<f32>(off),
        }
    }
}

/// Writes an f32 as a float element (one rounding to nearest even).
///
/// # Safety
/// `off` must be an element offset of the output `v`'s layout.
unsafe fn st_f(v: &TView, off: usize, x: f32) {
    // SAFETY: the caller's contract.
    unsafe {
        match v.desc.dtype {
            DType::F16 => v.set(off, f16::from_f32(x)),
            DType::BF16 => v.set(off, bf16::from_f32(x)),
            _ => v.set(off, x),
        }
    }
}

/// `x` rounded to the float dtype `d` and back.
fn round_to(x: f32, d: DType) -> f32 {
    match d {
        DType::F16 => f16::from_f32(x).to_f32(),
        DType::BF16 => bf16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// The stored value of element `k` of a quantized row starting at `off` (stride `cs` between
/// stored elements).
///
/// # Safety
/// `off + (k or k / 2) * cs` must be an element offset of `q`'s layout.
#[inline(always)]
unsafe fn ld_q(q: &TView, bits: Bits, off: usize, cs: usize, k: usize) -> i32 {
    // SAFETY: the caller's contract.
    unsafe {
        match bits {
            Bits::Int8 => q.get::<i8>(off + k * cs) as i32,
            Bits::Int4 => ((q.get::<u8>(off + (k / 2) * cs) >> ((k & 1) * 4)) & 15) as i32,
        }
    }
}

/// A zero point (stored as the data is) or the implicit one.
///
/// # Safety
/// `off` must be an element offset of `z`'s layout.
unsafe fn ld_z(z: Option<&TView>, bits: Bits, off: usize) -> i32 {
    match z {
        // SAFETY: the caller's contract.
        Some(z) => unsafe {
            match bits {
                Bits::Int8 => z.get::<i8>(off) as i32,
                Bits::Int4 => z.get::<u8>(off) as i32,
            }
        },
        None => bits.implicit_zero(),
    }
}

pub(crate) fn quantize(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let g = QuantizeGeom::of(&call.op, &attrs, desc(call, 0)?)?;
    Ok(Box::new(move |b: &Bound| {
        let x = b.input(0)?;
        let (q, s, z) = (b.out(0), b.out(1), b.out(2));
        let fmt = g.fmt;
        let groups = fmt.groups();
        let (qmin, qmax) = g.levels();
        let (qmin, qmax) = (qmin as f32, qmax as f32);
        let (xc, qc, sc, zc) = (
            inner(&x.desc),
            inner(&q.desc),
            inner(&s.desc),
            inner(&z.desc),
        );
        let dt = x.desc.dtype;
        par_ranges(g.rows * groups, 64, |range| {
            let mut vals = vec![0f32; fmt.group];
            for t in range {
                let (r, gi) = (t / groups, t % groups);
                let xo = row_at(&x.desc, r) + gi * fmt.group * xc;
                for (j, v) in vals.iter_mut().enumerate() {
                    // SAFETY: j < group, so the element lies in row r of x.
                    *v = unsafe { ld_f(x, xo + j * xc) };
                }
                let (scale, zero) = if g.symmetric {
                    let amax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
                    (
                        round_to(amax / fmt.bits.symmetric_max(), dt),
                        fmt.bits.implicit_zero() as f32,
                    )
                } else {
                    let lo = vals.iter().fold(0f32, |m, &v| m.min(v));
                    let hi = vals.iter().fold(0f32, |m, &v| m.max(v));
                    let s = round_to((hi - lo) / (qmax - qmin), dt);
                    let z = if s == 0.0 {
                        0.0
                    } else {
                        (qmin - (lo / s).round_ties_even()).clamp(qmin, qmax)
                    };
                    (s, z)
                };
                let code = |v: f32| -> u8 {
                    let c = if scale == 0.0 {
                        zero
                    } else {
                        ((v / scale).round_ties_even() + zero).clamp(qmin, qmax)
                    };
                    c as i32 as u8
                };
                let qo = row_at(&q.desc, r);
                // SAFETY (stores): the group's elements, scale and zero lie in row r of each
                // output, whose shapes the geometry checked.
                unsafe {
                    match fmt.bits {
                        Bits::Int8 => {
                            for (j, &v) in vals.iter().enumerate() {
                                q.set(qo + (gi * fmt.group + j) * qc, code(v) as i8);
                            }
                        }
                        Bits::Int4 => {
                            for (j, pair) in vals.chunks_exact(2).enumerate() {
                                let byte = (code(pair[0]) & 15) | (code(pair[1]) << 4);
                                q.set(qo + (gi * fmt.group / 2 + j) * qc, byte);
                            }
                        }
                    }
                    st_f(s, row_at(&s.desc, r) + gi * sc, scale);
                    let zo = row_at(&z.desc, r) + gi * zc;
                    match fmt.bits {
                        Bits::Int8 => z.set(zo, zero as i32 as i8),
                        Bits::Int4 => z.set(zo, zero as i32 as u8),
                    }
                }
            }
            Ok(())
        })
    }))
}

pub(crate) fn dequantize(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let g = DequantizeGeom::of(
        &call.op,
        &attrs,
        desc(call, 0)?,
        desc(call, 1)?,
        opt_desc(call, 2),
    )?;
    Ok(Box::new(move |b: &Bound| {
        let (q, s) = (b.input(0)?, b.input(1)?);
        let z = b.inputs.get(2).and_then(|t| t.as_ref());
        let out = b.out(0);
        let fmt = g.fmt;
        let k = fmt.k;
        let (qc, sc, oc) = (inner(&q.desc), inner(&s.desc), inner(&out.desc));
        let zc = z.map_or(0, |z| inner(&z.desc));
        par_ranges(g.rows * k, 1 << 14, |range| {
            for t in range {
                let (r, c) = (t / k, t % k);
                let gi = c / fmt.group;
                // SAFETY: (r, c) and (r, gi) lie inside the shapes the geometry checked.
                unsafe {
                    let v = ld_q(q, fmt.bits, row_at(&q.desc, r), qc, c);
                    let zero = match z {
                        Some(zv) => ld_z(Some(zv), fmt.bits, row_at(&zv.desc, r) + gi * zc),
                        None => fmt.bits.implicit_zero(),
                    };
                    let scale = ld_f(s, row_at(&s.desc, r) + gi * sc);
                    st_f(
                        out,
                        row_at(&out.desc, r) + c * oc,
                        (v - zero) as f32 * scale,
                    );
                }
            }
            Ok(())
        })
    }))
}

pub(crate) fn matmul_wq(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let g = WqGeom::of(
        &call.op,
        &attrs,
        desc(call, 0)?,
        desc(call, 1)?,
        desc(call, 2)?,
        opt_desc(call, 3),
    )?;
    Ok(Box::new(move |b: &Bound| {
        let (x, w, s) = (b.input(0)?, b.input(1)?, b.input(2)?);
        let z = b.inputs.get(3).and_then(|t| t.as_ref());
        let out = b.out(0);
        let (fmt, m, n) = (g.fmt, g.m, g.n);
        let k = fmt.k;
        let groups = fmt.groups();
        // x as contiguous f32 rows.
        let mut xf = vec![0f32; m * k];
        let xc = inner(&x.desc);
        for r in 0..m {
            let xo = row_at(&x.desc, r);
            for c in 0..k {
                // SAFETY: (r, c) lies inside x.
                xf[r * k + c] = unsafe { ld_f(x, xo + c * xc) };
            }
        }
        let oc = inner(&out.desc);
        // Per row: the even and odd elements (packed int4 pairs them) and the group sums (for
        // zero points: sum (q - z) x = sum q x - z sum x).
        let half = k / 2;
        let mut split = vec![0f32; m * k];
        for r in 0..m {
            for c in 0..half {
                split[r * k + c] = xf[r * k + 2 * c];
                split[r * k + half + c] = xf[r * k + 2 * c + 1];
            }
        }
        let sums: Vec<f32> = (0..m * groups)
            .map(|t| {
                let (r, gi) = (t / groups, t % groups);
                xf[r * k + gi * fmt.group..r * k + (gi + 1) * fmt.group]
                    .iter()
                    .sum()
            })
            .collect();
        let (xf, split, sums) = (&xf, &split, &sums);
        let stored = fmt.bits.stored(k);
        let (wrs, wcs) = (w.desc.strides[0], w.desc.strides[1]);
        par_ranges(n, 8, |range| {
            let mut row8 = vec![0i8; if wcs == 1 { 0 } else { stored }];
            let mut row4 = vec![0u8; if wcs == 1 { 0 } else { stored }];
            let mut scales = vec![0f32; groups];
            let mut zeros = vec![0f32; groups];
            for j in range {
                for gi in 0..groups {
                    // SAFETY: (j, gi) lies inside scales and zeros [N, K / G].
                    unsafe {
                        scales[gi] = ld_f(
                            s,
                            s.desc.offset + j * s.desc.strides[0] + gi * s.desc.strides[1],
                        );
                        zeros[gi] = match z {
                            Some(zv) => ld_z(
                                Some(zv),
                                fmt.bits,
                                zv.desc.offset + j * zv.desc.strides[0] + gi * zv.desc.strides[1],
                            ),
                            None => fmt.bits.implicit_zero(),
                        } as f32;
                    }
                }
                let wo = w.desc.offset + j * wrs;
                // Row j of the weights as a slice of its storage type.
                let (r8, r4): (&[i8], &[u8]) = match fmt.bits {
                    Bits::Int8 if wcs == 1 => {
                        // SAFETY: the row's `stored` elements lie in w with stride 1.
                        (
                            unsafe { std::slice::from_raw_parts(w.ptr::<i8>(wo), stored) },
                            &[],
                        )
                    }
                    Bits::Int4 if wcs == 1 => {
                        // SAFETY: as above.
                        (&[], unsafe {
                            std::slice::from_raw_parts(w.ptr::<u8>(wo), stored)
                        })
                    }
                    Bits::Int8 => {
                        for (c, v) in row8.iter_mut().enumerate() {
                            // SAFETY: c < stored, inside row j.
                            *v = unsafe { w.get::<i8>(wo + c * wcs) };
                        }
                        (&row8, &[])
                    }
                    Bits::Int4 => {
                        for (c, v) in row4.iter_mut().enumerate() {
                            // SAFETY: as above.
                            *v = unsafe { w.get::<u8>(wo + c * wcs) };
                        }
                        (&[], &row4)
                    }
                };
                for r in 0..m {
                    let mut acc = 0f32;
                    for gi in 0..groups {
                        let span = gi * fmt.group..(gi + 1) * fmt.group;
                        let d = match fmt.bits {
                            Bits::Int8 => dot_i8(&r8[span.clone()], &xf[r * k..][span]),
                            Bits::Int4 => {
                                let (b0, b1) = (span.start / 2, span.end / 2);
                                dot_u4(
                                    &r4[b0..b1],
                                    &split[r * k + b0..r * k + b1],
                                    &split[r * k + half + b0..r * k + half + b1],
                                )
                            }
                        };
                        acc += (d - zeros[gi] * sums[r * groups + gi]) * scales[gi];
                    }
                    // SAFETY: (r, j) lies inside the output [.., N].
                    unsafe { st_f(out, row_at(&out.desc, r) + j * oc, acc) };
                }
            }
            Ok(())
        })
    }))
}

pub(crate) fn matmul_i8(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let g = I8Geom::of(
        &call.op,
        &attrs,
        desc(call, 0)?,
        desc(call, 1)?,
        opt_desc(call, 2),
        opt_desc(call, 3),
    )?;
    Ok(Box::new(move |b: &Bound| {
        let (a, bm) = (b.input(0)?, b.input(1)?);
        let rs = b.inputs.get(2).and_then(|t| t.as_ref());
        let cs = b.inputs.get(3).and_then(|t| t.as_ref());
        let out = b.out(0);
        let (m, k, n) = (g.m, g.k, g.n);
        let mat = |v: &TView| Mat {
            base: v.ptr::<i8>(v.desc.offset),
            rs: v.desc.strides[0],
            cs: v.desc.strides[1],
        };
        let scale = |t: Option<&TView>, i: usize| -> f32 {
            // SAFETY: i < the scale vector's length, which the geometry checked.
            t.map_or(1.0, |t| unsafe {
                t.get::<f32>(t.desc.offset + i * t.desc.strides[0])
            })
        };
        let (os0, os1) = (out.desc.strides[0], out.desc.strides[1]);
        if g.out == DType::I32 {
            // SAFETY: the output is written by this kernel only.
            if let Some(direct) = unsafe { out.slice_mut::<i32>() } {
                // SAFETY: a is [m, k] and b [k, n] in their layouts, which the geometry
                // checked; the contiguous output holds m n elements.
                unsafe { gemm_i8(mat(a), mat(bm), m, n, k, direct) };
                return Ok(());
            }
        }
        let mut acc = vec![0i32; m * n];
        // SAFETY: as above, into m n elements.
        unsafe { gemm_i8(mat(a), mat(bm), m, n, k, &mut acc) };
        let acc = &acc;
        par_ranges(m * n, 1 << 14, |range| {
            for t in range {
                let (i, j) = (t / n, t % n);
                let off = out.desc.offset + i * os0 + j * os1;
                // SAFETY: (i, j) lies inside the output [M, N].
                unsafe {
                    if g.out == DType::I32 {
                        out.set(off, acc[t]);
                    } else {
                        st_f(out, off, acc[t] as f32 * scale(rs, i) * scale(cs, j));
                    }
                }
            }
            Ok(())
        })
    }))
}
