//! f32 vectors for the host kernels of [`super::vmath`]: one small instruction-set interface,
//! [`Isa`], with an AVX-512 form (16 lanes), an AVX2-with-FMA form (8 lanes) and a scalar form
//! (1 lane, plain `a * b + c`), so that one generic kernel is written once and compiled for
//! each.
//!
//! The vector forms use the instructions that the compiler cannot choose on its own from plain
//! loops: fused multiply-add and the reciprocal estimate (refined by one Newton step). Their
//! values exist only inside functions compiled for their instruction set: a token of the set
//! ([`Avx512`], [`Avx2`]) is made by an `unsafe` constructor whose caller has checked the CPU's
//! features, and every operation takes the token.

/// An instruction set's f32 vector and its operations. `min` and `max` follow the x86
/// instructions: when either operand is NaN the result is the second operand.
pub(crate) trait Isa: Copy {
    /// Lanes of a vector.
    const N: usize;
    /// A vector of `N` f32.
    type V: Copy;
    /// A mask of `N` lanes, the result of a comparison.
    type M: Copy;

    fn splat(self, v: f32) -> Self::V;
    /// The first `N` elements of `x` (which must hold at least `N`).
    fn load(self, x: &[f32]) -> Self::V;
    /// Writes the vector to the first `N` elements of `o` (which must hold at least `N`).
    fn store(self, v: Self::V, o: &mut [f32]);
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c`, fused where the set has it.
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `if a < b { a } else { b }`.
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    /// `if a > b { a } else { b }`.
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    fn abs(self, a: Self::V) -> Self::V;
    /// The magnitude of `mag` with the sign of `sign`.
    fn copysign(self, mag: Self::V, sign: Self::V) -> Self::V;
    /// `1 / d` within 2 ulp: the reciprocal estimate and one Newton step (`0` for an infinite
    /// or huge `d`, NaN for NaN).
    fn recip(self, d: Self::V) -> Self::V;
    fn lt(self, a: Self::V, b: Self::V) -> Self::M;
    /// `if m { a } else { b }` lane by lane.
    fn select(self, m: Self::M, a: Self::V, b: Self::V) -> Self::V;
    /// `p * 2^n` for the integer `n` in `[-150, 128]`, given as a float and as `biased`, the
    /// sum `n + 1.5 * 2^23` (so `n = bits(biased) - bits(1.5 * 2^23)`), exact next to the
    /// overflow and underflow limits (as two factors where the set has no scaling instruction).
    fn scale_pow2(self, p: Self::V, n: Self::V, biased: Self::V) -> Self::V;
    /// The first `N` elements of `x`, widened (exactly) to f32.
    fn load_f16(self, x: &[f16]) -> Self::V;
    /// Writes the vector to the first `N` elements of `o`, rounded to nearest even.
    fn store_f16(self, v: Self::V, o: &mut [f16]);
    /// As [`Isa::load_f16`], for bf16.
    fn load_bf16(self, x: &[bf16]) -> Self::V;
    /// As [`Isa::store_f16`], for bf16 (NaN stays a quiet NaN, as `half` rounds).
    fn store_bf16(self, v: Self::V, o: &mut [bf16]);
    /// The sum of the lanes, in f64.
    fn sum_f64(self, v: Self::V) -> f64;
    /// The largest lane (NaN lanes ignored when another lane is not NaN).
    fn max_lane(self, v: Self::V) -> f32;
}

use half::{bf16, f16};

/// `2^e` for `e` in the normal exponent range, from its bits.
#[inline(always)]
fn pow2(e: i32) -> f32 {
    f32::from_bits((e.wrapping_add(127) as u32) << 23)
}

/// The bits of `1.5 * 2^23`, the rounding constant of [`Isa::scale_pow2`].
const ROUND_BITS: i32 = 0x4B40_0000;

/// One lane, plain arithmetic: the baseline, and the scalar functions of `vmath`.
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

impl Isa for Scalar {
    const N: usize = 1;
    type V = f32;
    type M = bool;

    #[inline(always)]
    fn splat(self, v: f32) -> f32 {
        v
    }
    #[inline(always)]
    fn load(self, x: &[f32]) -> f32 {
        x[0]
    }
    #[inline(always)]
    fn store(self, v: f32, o: &mut [f32]) {
        o[0] = v;
    }
    #[inline(always)]
    fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn sub(self, a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    fn mul(self, a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    fn fma(self, a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    fn min(self, a: f32, b: f32) -> f32 {
        if a < b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn max(self, a: f32, b: f32) -> f32 {
        if a > b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn abs(self, a: f32) -> f32 {
        a.abs()
    }
    #[inline(always)]
    fn copysign(self, mag: f32, sign: f32) -> f32 {
        mag.copysign(sign)
    }
    #[inline(always)]
    fn recip(self, d: f32) -> f32 {
        1.0 / d
    }
    #[inline(always)]
    fn lt(self, a: f32, b: f32) -> bool {
        a < b
    }
    #[inline(always)]
    fn select(self, m: bool, a: f32, b: f32) -> f32 {
        if m {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn scale_pow2(self, p: f32, _: f32, biased: f32) -> f32 {
        // For NaN the bits are arbitrary and `p` is NaN.
        let n = (biased.to_bits() as i32).wrapping_sub(ROUND_BITS);
        let h = n >> 1;
        p * pow2(h) * pow2(n - h)
    }
    #[inline(always)]
    fn load_f16(self, x: &[f16]) -> f32 {
        x[0].to_f32()
    }
    #[inline(always)]
    fn store_f16(self, v: f32, o: &mut [f16]) {
        o[0] = f16::from_f32(v);
    }
    #[inline(always)]
    fn load_bf16(self, x: &[bf16]) -> f32 {
        x[0].to_f32()
    }
    #[inline(always)]
    fn store_bf16(self, v: f32, o: &mut [bf16]) {
        o[0] = bf16::from_f32(v);
    }
    #[inline(always)]
    fn sum_f64(self, v: f32) -> f64 {
        v as f64
    }
    #[inline(always)]
    fn max_lane(self, v: f32) -> f32 {
        v
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Isa, ROUND_BITS};
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    /// AVX-512 (F, VL, DQ) with FMA: 16 lanes.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(());

    impl Avx512 {
        /// # Safety
        ///
        /// The CPU has AVX-512 F, VL and DQ, AVX2 and FMA, and the token is used only in
        /// functions compiled for them (`#[target_feature]`), into which its operations inline.
        #[inline(always)]
        pub(crate) unsafe fn new_unchecked() -> Self {
            Avx512(())
        }
    }

    // SAFETY (every `unsafe` block of this impl): an `Avx512` token exists only where the CPU
    // has the instructions (its constructor's contract); loads and stores check the slice's
    // length first.
    impl Isa for Avx512 {
        const N: usize = 16;
        type V = __m512;
        type M = __mmask16;

        #[inline(always)]
        fn splat(self, v: f32) -> __m512 {
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        fn load(self, x: &[f32]) -> __m512 {
            assert!(x.len() >= 16);
            unsafe { _mm512_loadu_ps(x.as_ptr()) }
        }
        #[inline(always)]
        fn store(self, v: __m512, o: &mut [f32]) {
            assert!(o.len() >= 16);
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn add(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn min(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_min_ps(a, b) }
        }
        #[inline(always)]
        fn max(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        fn abs(self, a: __m512) -> __m512 {
            unsafe { _mm512_abs_ps(a) }
        }
        #[inline(always)]
        fn copysign(self, mag: __m512, sign: __m512) -> __m512 {
            unsafe {
                let m = _mm512_set1_epi32(i32::MAX);
                // m ? mag : sign, bit by bit (the table of (m, sign, mag))
                _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<0xAC>(
                    m,
                    _mm512_castps_si512(sign),
                    _mm512_castps_si512(mag),
                ))
            }
        }
        #[inline(always)]
        fn recip(self, d: __m512) -> __m512 {
            unsafe {
                let r = _mm512_rcp14_ps(d);
                let e = _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0));
                let refined = _mm512_fmadd_ps(r, e, r);
                // An estimate of 0 (d infinite or beyond the normal range's reciprocal) would
                // give 0 * inf = NaN in the Newton step: keep it.
                let zero = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(r, _mm512_setzero_ps());
                _mm512_mask_blend_ps(zero, refined, r)
            }
        }
        #[inline(always)]
        fn lt(self, a: __m512, b: __m512) -> __mmask16 {
            unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
        }
        #[inline(always)]
        fn select(self, m: __mmask16, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mask_blend_ps(m, b, a) }
        }
        #[inline(always)]
        fn scale_pow2(self, p: __m512, n: __m512, _: __m512) -> __m512 {
            unsafe { _mm512_scalef_ps(p, n) }
        }
        #[inline(always)]
        fn load_f16(self, x: &[f16]) -> __m512 {
            assert!(x.len() >= 16);
            unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(x.as_ptr().cast())) }
        }
        #[inline(always)]
        fn store_f16(self, v: __m512, o: &mut [f16]) {
            assert!(o.len() >= 16);
            unsafe {
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                _mm256_storeu_si256(o.as_mut_ptr().cast(), h)
            }
        }
        #[inline(always)]
        fn load_bf16(self, x: &[bf16]) -> __m512 {
            assert!(x.len() >= 16);
            unsafe {
                let w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(x.as_ptr().cast()));
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w))
            }
        }
        #[inline(always)]
        fn store_bf16(self, v: __m512, o: &mut [bf16]) {
            assert!(o.len() >= 16);
            unsafe {
                let b = _mm512_castps_si512(v);
                // Round to nearest even: add 0x7FFF and the lowest kept bit; NaN keeps its
                // upper half with the quiet bit set.
                let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
                let rounded = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb);
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                let quiet = _mm512_or_si512(b, _mm512_set1_epi32(0x0040_0000));
                let r = _mm512_mask_blend_epi32(nan, rounded, quiet);
                let h = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(r));
                _mm256_storeu_si256(o.as_mut_ptr().cast(), h)
            }
        }
        #[inline(always)]
        fn sum_f64(self, v: __m512) -> f64 {
            unsafe {
                let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
                let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(v),
                )));
                _mm512_reduce_add_pd(_mm512_add_pd(lo, hi))
            }
        }
        #[inline(always)]
        fn max_lane(self, v: __m512) -> f32 {
            // NaN lanes: `max` keeps its second operand.
            unsafe { _mm512_reduce_max_ps(_mm512_max_ps(v, _mm512_set1_ps(f32::NEG_INFINITY))) }
        }
    }

    /// AVX2 with FMA and F16C: 8 lanes.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(());

    impl Avx2 {
        /// # Safety
        ///
        /// The CPU has AVX2, FMA and F16C, and the token is used only in functions compiled for them
        /// (`#[target_feature]`), into which its operations inline.
        #[inline(always)]
        pub(crate) unsafe fn new_unchecked() -> Self {
            Avx2(())
        }
    }

    // SAFETY (every `unsafe` block of this impl): as for `Avx512`.
    impl Isa for Avx2 {
        const N: usize = 8;
        type V = __m256;
        type M = __m256;

        #[inline(always)]
        fn splat(self, v: f32) -> __m256 {
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        fn load(self, x: &[f32]) -> __m256 {
            assert!(x.len() >= 8);
            unsafe { _mm256_loadu_ps(x.as_ptr()) }
        }
        #[inline(always)]
        fn store(self, v: __m256, o: &mut [f32]) {
            assert!(o.len() >= 8);
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn add(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn min(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_min_ps(a, b) }
        }
        #[inline(always)]
        fn max(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        fn abs(self, a: __m256) -> __m256 {
            unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
        }
        #[inline(always)]
        fn copysign(self, mag: __m256, sign: __m256) -> __m256 {
            unsafe {
                let s = _mm256_set1_ps(-0.0);
                _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sign))
            }
        }
        #[inline(always)]
        fn recip(self, d: __m256) -> __m256 {
            unsafe {
                let r = _mm256_rcp_ps(d);
                let e = _mm256_fnmadd_ps(d, r, _mm256_set1_ps(1.0));
                let refined = _mm256_fmadd_ps(r, e, r);
                // As for AVX-512: an estimate of 0 stays 0.
                let zero = _mm256_cmp_ps::<_CMP_EQ_OQ>(r, _mm256_setzero_ps());
                _mm256_blendv_ps(refined, r, zero)
            }
        }
        #[inline(always)]
        fn lt(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
        }
        #[inline(always)]
        fn select(self, m: __m256, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_blendv_ps(b, a, m) }
        }
        #[inline(always)]
        fn scale_pow2(self, p: __m256, _: __m256, biased: __m256) -> __m256 {
            unsafe {
                let n =
                    _mm256_sub_epi32(_mm256_castps_si256(biased), _mm256_set1_epi32(ROUND_BITS));
                let h = _mm256_srai_epi32::<1>(n);
                let bias = _mm256_set1_epi32(127);
                let a = _mm256_slli_epi32::<23>(_mm256_add_epi32(h, bias));
                let b = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_sub_epi32(n, h), bias));
                _mm256_mul_ps(
                    _mm256_mul_ps(p, _mm256_castsi256_ps(a)),
                    _mm256_castsi256_ps(b),
                )
            }
        }
        #[inline(always)]
        fn load_f16(self, x: &[f16]) -> __m256 {
            assert!(x.len() >= 8);
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().cast())) }
        }
        #[inline(always)]
        fn store_f16(self, v: __m256, o: &mut [f16]) {
            assert!(o.len() >= 8);
            unsafe {
                let h = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(v);
                _mm_storeu_si128(o.as_mut_ptr().cast(), h)
            }
        }
        #[inline(always)]
        fn load_bf16(self, x: &[bf16]) -> __m256 {
            assert!(x.len() >= 8);
            unsafe {
                let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(x.as_ptr().cast()));
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
            }
        }
        #[inline(always)]
        fn store_bf16(self, v: __m256, o: &mut [bf16]) {
            assert!(o.len() >= 8);
            unsafe {
                let b = _mm256_castps_si256(v);
                // As for AVX-512.
                let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(b), _mm256_set1_epi32(1));
                let rounded = _mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7FFF)), lsb);
                let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
                let quiet = _mm256_or_si256(b, _mm256_set1_epi32(0x0040_0000));
                let r = _mm256_srli_epi32::<16>(_mm256_blendv_epi8(rounded, quiet, nan));
                // Pack the 32-bit lanes to 16 bits (per 128-bit half), then the halves in order.
                let p = _mm256_permute4x64_epi64::<0b1101_1000>(_mm256_packus_epi32(r, r));
                _mm_storeu_si128(o.as_mut_ptr().cast(), _mm256_castsi256_si128(p))
            }
        }
        #[inline(always)]
        fn sum_f64(self, v: __m256) -> f64 {
            unsafe {
                let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
                let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
                let s = _mm256_add_pd(lo, hi);
                let mut a = [0f64; 4];
                _mm256_storeu_pd(a.as_mut_ptr(), s);
                (a[0] + a[1]) + (a[2] + a[3])
            }
        }
        #[inline(always)]
        fn max_lane(self, v: __m256) -> f32 {
            let mut a = [0f32; 8];
            self.store(v, &mut a);
            let mut m = f32::NEG_INFINITY;
            for x in a {
                m = if x > m { x } else { m };
            }
            m
        }
    }
}
