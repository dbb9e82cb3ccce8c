//! The inner loops of the quantized matmuls on the host, compiled for the CPU's vector
//! extensions and chosen at run time: dot products of int8 or packed int4 weights with f32
//! activations (the compiler vectorises the plain loops under `target_feature`), and an i8 x i8
//! matrix product on AVX-512 VNNI (`vpdpbusd`) with a scalar fallback.

/// `sum_c w[c] * x[c]` over an int8 weight row.
pub(crate) fn dot_i8(w: &[i8], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the features the function is compiled for are present.
            return unsafe { x86::dot_i8_avx512(w, x) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { x86::dot_i8_avx2(w, x) };
        }
    }
    dot_i8_body(w, x)
}

/// `sum_j lo(w[j]) * xe[j] + hi(w[j]) * xo[j]` over a packed int4 weight row, with `xe` and
/// `xo` the even and odd elements of the activations.
pub(crate) fn dot_u4(w: &[u8], xe: &[f32], xo: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the features the function is compiled for are present.
            return unsafe { x86::dot_u4_avx512(w, xe, xo) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { x86::dot_u4_avx2(w, xe, xo) };
        }
    }
    dot_u4_body(w, xe, xo)
}

const LANES: usize = 16;

#[inline(always)]
fn dot_i8_body(w: &[i8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (wc, xc) = (w.chunks_exact(LANES), x.chunks_exact(LANES));
    let tail: f32 = wc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(&a, &b)| a as f32 * b)
        .sum();
    for (a, b) in wc.zip(xc) {
        for l in 0..LANES {
            acc[l] += a[l] as f32 * b[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn dot_u4_body(w: &[u8], xe: &[f32], xo: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (wc, ec, oc) = (
        w.chunks_exact(LANES),
        xe.chunks_exact(LANES),
        xo.chunks_exact(LANES),
    );
    let tail: f32 = wc
        .remainder()
        .iter()
        .zip(ec.remainder().iter().zip(oc.remainder()))
        .map(|(&b, (&e, &o))| (b & 15) as f32 * e + (b >> 4) as f32 * o)
        .sum();
    for ((b, e), o) in wc.zip(ec).zip(oc) {
        for l in 0..LANES {
            acc[l] += (b[l] & 15) as f32 * e[l] + (b[l] >> 4) as f32 * o[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// An i8 matrix in memory: element (r, c) at `base + r * rs + c * cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub base: *const i8,
    pub rs: usize,
    pub cs: usize,
}

// SAFETY: a Mat is read only, by tasks of one kernel call that holds the memory alive.
unsafe impl Send for Mat {}
// SAFETY: as above.
unsafe impl Sync for Mat {}

impl Mat {
    /// # Safety
    /// (r, c) must lie inside the matrix.
    #[inline(always)]
    unsafe fn at(&self, r: usize, c: usize) -> i8 {
        // SAFETY: the caller's contract.
        unsafe { *self.base.add(r * self.rs + c * self.cs) }
    }
}

/// The i32 products `out[i * n + j] = sum_c a(i, c) * b(c, j)` (wrapping) of `a` [m, k] and
/// `b` [k, n].
///
/// # Safety
/// Every (i, c) with i < m, c < k must lie inside `a`, every (c, j) inside `b`, and `out` must
/// hold m n elements.
pub(crate) unsafe fn gemm_i8(a: Mat, b: Mat, m: usize, n: usize, k: usize, out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            // SAFETY: the caller's contract.
            unsafe { x86::gemm_i8_vnni(a, b, m, n, k, out) };
            return;
        }
    }
    let out_ptr = out.as_mut_ptr() as usize;
    super::layout::par_ranges(m * n, 1 << 10, |range| {
        for t in range {
            let (i, j) = (t / n, t % n);
            // SAFETY: the caller's contract.
            let v = (0..k).fold(0i32, |s, c| unsafe {
                s.wrapping_add(a.at(i, c) as i32 * b.at(c, j) as i32)
            });
            // SAFETY: each t is written by one task only; t < m n = out.len().
            unsafe { (out_ptr as *mut i32).add(t).write(v) };
        }
        Ok(())
    })
    .ok();
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{dot_i8_body, dot_u4_body};
    use crate::host::layout::par_ranges;

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    pub(super) unsafe fn dot_i8_avx512(w: &[i8], x: &[f32]) -> f32 {
        dot_i8_body(w, x)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_i8_avx2(w: &[i8], x: &[f32]) -> f32 {
        dot_i8_body(w, x)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    pub(super) unsafe fn dot_u4_avx512(w: &[u8], xe: &[f32], xo: &[f32]) -> f32 {
        dot_u4_body(w, xe, xo)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_u4_avx2(w: &[u8], xe: &[f32], xo: &[f32]) -> f32 {
        dot_u4_body(w, xe, xo)
    }

    /// Rows of a tile.
    const MR: usize = 6;
    /// Vectors of 16 i32 across a tile.
    const NV: usize = 4;
    /// Columns of a tile.
    const NR: usize = 16 * NV;

    /// `vpdpbusd` multiplies unsigned by signed bytes: a is offset by 128 (a ^ 0x80 as u8) and
    /// 128 times each column's sum of b is taken off after (exact modulo 2^32). Packed a: rows
    /// padded to a multiple of MR (with the offset of 0) and K to a multiple of 4; each task
    /// packs a block of NR columns of b (per group of 4 k, the 4 bytes of each column in turn,
    /// zeros beyond K and N) and runs every row tile against it.
    ///
    /// # Safety
    /// As [`super::gemm_i8`], on a CPU with AVX-512 F and VNNI.
    pub(super) unsafe fn gemm_i8_vnni(
        a: super::Mat,
        b: super::Mat,
        m: usize,
        n: usize,
        k: usize,
        out: &mut [i32],
    ) {
        let kp = k.div_ceil(4) * 4;
        let quads = kp / 4;
        let (mp, np) = (m.div_ceil(MR) * MR, n.div_ceil(NR) * NR);
        let mut ap = vec![0x80u8; mp * kp];
        let ap_ptr = ap.as_mut_ptr() as usize;
        par_ranges(m, 16, |rows| {
            for i in rows {
                // SAFETY: row i < m of ap (kp bytes) is written by this task only; (i, c) lies
                // in a by the caller's contract.
                let row =
                    unsafe { std::slice::from_raw_parts_mut((ap_ptr as *mut u8).add(i * kp), k) };
                if a.cs == 1 {
                    // SAFETY: the row's k bytes are contiguous in a.
                    let src = unsafe { std::slice::from_raw_parts(a.base.add(i * a.rs), k) };
                    for (d, &v) in row.iter_mut().zip(src) {
                        *d = (v as u8) ^ 0x80;
                    }
                } else {
                    for (c, d) in row.iter_mut().enumerate() {
                        // SAFETY: (i, c) lies in a.
                        *d = (unsafe { a.at(i, c) } as u8) ^ 0x80;
                    }
                }
            }
            Ok(())
        })
        .ok();
        let ap = &ap;
        let out_ptr = out.as_mut_ptr() as usize;
        par_ranges(np / NR, 1, |blocks| {
            let mut bp = vec![0i8; quads * NR * 4];
            let mut colsum = [0i32; NR];
            let mut tile = [[0i32; NR]; MR];
            for blk in blocks {
                let cols = NR.min(n - blk * NR);
                bp.fill(0);
                colsum.fill(0);
                for c in 0..k {
                    let dst = &mut bp[(c / 4) * NR * 4 + c % 4..];
                    for (cc, sum) in colsum.iter_mut().enumerate().take(cols) {
                        // SAFETY: (c, blk NR + cc) lies in b.
                        let v = unsafe { b.at(c, blk * NR + cc) };
                        dst[cc * 4] = v;
                        *sum = sum.wrapping_add(v as i32);
                    }
                }
                for i0 in (0..mp).step_by(MR) {
                    // SAFETY: the CPU has AVX-512 F and VNNI (the caller's contract); the
                    // slices hold MR rows of kp bytes and quads groups of NR x 4 bytes.
                    unsafe { tile_vnni(&ap[i0 * kp..(i0 + MR) * kp], kp, &bp, quads, &mut tile) };
                    for (r, trow) in tile.iter().enumerate().take(m.saturating_sub(i0)) {
                        for (cc, (&t, &sum)) in trow.iter().zip(&colsum).enumerate().take(cols) {
                            let v = t.wrapping_sub(sum.wrapping_mul(128));
                            // SAFETY: (i0 + r, j) < (m, n); each element is written by the one
                            // task that owns its column block.
                            unsafe {
                                (out_ptr as *mut i32)
                                    .add((i0 + r) * n + blk * NR + cc)
                                    .write(v)
                            };
                        }
                    }
                }
            }
            Ok(())
        })
        .ok();
    }

    /// One MR x NR tile: `tile[r][c] = sum_q dot4(a[r], b[q][c])` with `vpdpbusd`.
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn tile_vnni(a: &[u8], kp: usize, b: &[i8], quads: usize, tile: &mut [[i32; NR]; MR]) {
        let mut acc = [[_mm512_setzero_si512(); NV]; MR];
        let bptr = b.as_ptr();
        let aptr = a.as_ptr();
        for q in 0..quads {
            // SAFETY: q < quads: the group's NV x 64 bytes lie in b, and each row's 4 bytes at
            // 4q in a (rows of kp = 4 quads bytes).
            unsafe {
                let mut bv = [_mm512_setzero_si512(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm512_loadu_si512(bptr.add(q * NR * 4 + 64 * v).cast());
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av =
                        _mm512_set1_epi32(aptr.add(r * kp + 4 * q).cast::<i32>().read_unaligned());
                    for (x, &w) in row.iter_mut().zip(&bv) {
                        *x = _mm512_dpbusd_epi32(*x, av, w);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                // SAFETY: tile[r] holds NR = 16 NV i32.
                unsafe { _mm512_storeu_si512(tile[r].as_mut_ptr().add(16 * v).cast(), *x) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_i8_matches_the_scalar_sum_and_wraps() {
        let (m, n, k) = (7, 37, 13);
        let a: Vec<i8> = (0..m * k).map(|i| (i * 73 % 256) as u8 as i8).collect();
        let bt: Vec<i8> = (0..n * k).map(|i| (i * 41 % 256) as u8 as i8).collect();
        let mut out = vec![0; m * n];
        let mat = |v: &[i8], rs, cs| Mat {
            base: v.as_ptr(),
            rs,
            cs,
        };
        // SAFETY: a is [m, k] row-major and bt [n, k] row-major, read as b [k, n].
        unsafe { gemm_i8(mat(&a, k, 1), mat(&bt, 1, k), m, n, k, &mut out) };
        for i in 0..m {
            for j in 0..n {
                let want: i32 = (0..k)
                    .map(|c| a[i * k + c] as i32 * bt[j * k + c] as i32)
                    .sum();
                assert_eq!(out[i * n + j], want, "({i}, {j})");
            }
        }
        let k = (1 << 17) + 8;
        let (a, bt) = (vec![-128i8; k], vec![-128i8; k]);
        let mut out = [0];
        // SAFETY: a is [1, k] and bt [k, 1].
        unsafe { gemm_i8(mat(&a, k, 1), mat(&bt, 1, 1), 1, 1, k, &mut out) };
        assert_eq!(out[0], i32::MIN + (1 << 17));
    }

    #[test]
    fn dots_match_the_plain_sums() {
        let w: Vec<i8> = (0..71).map(|i| (i * 37 % 256) as u8 as i8).collect();
        let x: Vec<f32> = (0..71).map(|i| (i as f32 - 30.0) / 8.0).collect();
        let want: f32 = w.iter().zip(&x).map(|(&a, &b)| a as f32 * b).sum();
        assert!((dot_i8(&w, &x) - want).abs() <= 1e-3 * want.abs().max(1.0));
        let b: Vec<u8> = (0..35).map(|i| (i * 53 % 256) as u8).collect();
        let (xe, xo) = (&x[..35], &x[35..70]);
        let want: f32 = (0..35)
            .map(|j| (b[j] & 15) as f32 * xe[j] + (b[j] >> 4) as f32 * xo[j])
            .sum();
        assert!((dot_u4(&b, xe, xo) - want).abs() <= 1e-3 * want.abs().max(1.0));
    }
}
