//! `matmul` through the `gemm` crate: f32 directly on the operands' strides; f16 and bf16
//! widened to f32, multiplied with f32 accumulation, and rounded once (after the bias).

use anyaccel_hal::{bf16, f16, DType, Error, OpCall, Result};
use gemm::{gemm, Parallelism};

use super::layout::walk;
use super::scalar::{load, store, Val};
use super::{Body, Bound, TView};

/// A 2-D block of a view: base offset, row stride, column stride.
#[derive(Clone, Copy)]
struct Block {
    base: usize,
    rs: usize,
    cs: usize,
}

fn widen(v: &TView, blk: Block, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            let off = blk.base + i * blk.rs + j * blk.cs;
            // SAFETY: (i, j) lies inside the block, which lies inside v's layout.
            out.push(unsafe {
                match v.desc.dtype {
                    DType::F16 => v.get::<f16>(off).to_f32(),
                    DType::BF16 => v.get::<bf16>(off).to_f32(),
                    _ => v.get::<f32>(off),
                }
            });
        }
    }
    out
}

fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    let threads = super::layout::threads();
    if m.saturating_mul(n).saturating_mul(k) >= 48 * 48 * 48 && threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// A 2-D f32 operand of [`gemm_serial`]: its first element, then its column and row strides in
/// elements.
pub(crate) type Operand<P> = (P, isize, isize);

/// `dst = lhs rhs` for an `m x k` lhs and a `k x n` rhs in f32, on the calling thread.
///
/// # Safety
///
/// Each operand's block (its strides over `m x n`, `m x k`, `k x n`) lies inside its buffer,
/// and `dst` overlaps neither input.
pub(crate) unsafe fn gemm_serial(
    shape: [usize; 3],
    dst: Operand<*mut f32>,
    lhs: Operand<*const f32>,
    rhs: Operand<*const f32>,
) {
    // SAFETY: the caller's contract.
    unsafe { gemm_serial_into(shape, dst, lhs, rhs, false) }
}

/// `dst = lhs rhs`, or `dst += lhs rhs` when `accumulate`, as [`gemm_serial`].
///
/// # Safety
///
/// As [`gemm_serial`]; with `accumulate`, `dst`'s block holds initialised values.
pub(crate) unsafe fn gemm_serial_into(
    [m, n, k]: [usize; 3],
    (dst, dst_cs, dst_rs): Operand<*mut f32>,
    (lhs, lhs_cs, lhs_rs): Operand<*const f32>,
    (rhs, rhs_cs, rhs_rs): Operand<*const f32>,
    accumulate: bool,
) {
    // SAFETY: the caller's contract.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// The matmul kernel.
pub(crate) fn kernel(call: &OpCall) -> Result<Box<Body>> {
    let has_bias = call.inputs.get(2).is_some_and(|t| t.is_some());
    Ok(Box::new(move |bound: &Bound| {
        let (a, b, out) = (bound.input(0)?, bound.input(1)?, bound.out(0));
        let r = out.desc.rank();
        let (m, n) = (out.desc.shape[r - 2], out.desc.shape[r - 1]);
        let k = a.desc.shape[a.desc.rank() - 1];
        let batch: Vec<usize> = out.desc.shape[..r - 2].to_vec();
        // Operands with batch dims broadcast to the output's.
        fn batched<'v>(v: &TView<'v>, batch: &[usize]) -> TView<'v> {
            let vr = v.desc.rank();
            let mut shape = batch.to_vec();
            shape.extend_from_slice(&v.desc.shape[vr - 2..]);
            v.broadcast(&shape)
        }
        let (a, b) = (batched(a, &batch), batched(b, &batch));
        let bias = if has_bias {
            Some(bound.input(2)?.broadcast(&out.desc.shape))
        } else {
            None
        };
        let blk = |v: &TView, base: usize| Block {
            base,
            rs: v.desc.strides[r - 2],
            cs: v.desc.strides[r - 1],
        };
        let zero = vec![0usize; r - 2];
        let bias_strides = bias
            .as_ref()
            .map_or(zero.clone(), |t| t.desc.strides[..r - 2].to_vec());
        let mut bases = Vec::new();
        walk(
            &batch,
            [
                &a.desc.strides[..r - 2],
                &b.desc.strides[..r - 2],
                &out.desc.strides[..r - 2],
                &bias_strides,
            ],
            [
                a.desc.offset,
                b.desc.offset,
                out.desc.offset,
                bias.as_ref().map_or(0, |t| t.desc.offset),
            ],
            0..batch.iter().product(),
            |_, o| bases.push(o),
        );
        for [ao, bo, oo, biaso] in bases {
            let (ab, bb, ob) = (blk(&a, ao), blk(&b, bo), blk(out, oo));
            let bias_at = |i: usize, j: usize| -> f64 {
                bias.as_ref().map_or(0.0, |t| {
                    let (rs, cs) = (t.desc.strides[r - 2], t.desc.strides[r - 1]);
                    // SAFETY: (i, j) lies inside the broadcast bias layout.
                    match unsafe { load(t, biaso + i * rs + j * cs) } {
                        Val::F(x) => x,
                        Val::I(x) => x as f64,
                    }
                })
            };
            if out.desc.dtype == DType::F32 && k > 0 {
                // SAFETY: the three blocks lie inside their views (validated layouts); the output
                // does not overlap the operands and its elements are distinct.
                unsafe {
                    gemm(
                        m,
                        n,
                        k,
                        out.ptr::<f32>(ob.base),
                        ob.cs as isize,
                        ob.rs as isize,
                        false,
                        a.ptr::<f32>(ab.base),
                        ab.cs as isize,
                        ab.rs as isize,
                        b.ptr::<f32>(bb.base),
                        bb.cs as isize,
                        bb.rs as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        parallelism(m, n, k),
                    )
                };
                if has_bias {
                    for i in 0..m {
                        for j in 0..n {
                            let p = out.ptr::<f32>(ob.base + i * ob.rs + j * ob.cs);
                            // SAFETY: (i, j) lies inside the output block.
                            unsafe { p.write(p.read() + bias_at(i, j) as f32) };
                        }
                    }
                }
                continue;
            }
            if !matches!(out.desc.dtype, DType::F32 | DType::F16 | DType::BF16) {
                return Err(Error::internal(format!(
                    "matmul host kernel: dtype {} has no host path",
                    out.desc.dtype
                )));
            }
            let mut acc = vec![0.0f32; m * n];
            if k > 0 {
                let wa = widen(&a, ab, m, k);
                let wb = widen(&b, bb, k, n);
                // SAFETY: the temporaries are contiguous row-major m x k, k x n and m x n.
                unsafe {
                    gemm(
                        m,
                        n,
                        k,
                        acc.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        wa.as_ptr(),
                        1,
                        k as isize,
                        wb.as_ptr(),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        parallelism(m, n, k),
                    )
                };
            }
            for i in 0..m {
                for j in 0..n {
                    let v = acc[i * n + j] as f64 + bias_at(i, j);
                    // SAFETY: (i, j) lies inside the output block.
                    unsafe { store(out, ob.base + i * ob.rs + j * ob.cs, Val::F(v)) };
                }
            }
        }
        Ok(())
    }))
}
