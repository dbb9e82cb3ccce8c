//! Vectorised f32 math for the host kernels: `exp`, `tanh`, `sigmoid` and `erf` as branch-free
//! polynomials (selects, no calls, so that a loop over them vectorises), elementwise maps over
//! slices, and the fused row kernels of `softmax`, `log_softmax`, `layer_norm` and `rms_norm`.
//!
//! Every loop here is compiled three times, for AVX-512, for AVX2 with FMA and for the
//! baseline, and one is chosen at run time by the CPU's features (the compiler vectorises the
//! plain loops under `target_feature`, as in `qkern`). The functions meet the op contract's f32
//! tolerances (docs/ops.md section 7): `exp`, `tanh`, `sigmoid` and `erf` within a few ulp; the row kernels sum in f64 lanes.

// The polynomials' coefficients are written as published (Cephes, Numerical Recipes), some
// with more digits than an f32 holds.
#![allow(clippy::excessive_precision)]

/// The lanes of an f64 accumulator: two AVX-512 registers.
const LANES: usize = 16;

/// `x` limited to `[lo, hi]`, NaN kept (a select the compiler vectorises).
#[inline(always)]
fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x > hi { hi } else { x };
    if x < lo {
        lo
    } else {
        x
    }
}

/// `e^x` within 2 ulp for normal results; `+inf` above 88.72, `0` far below, NaN kept.
///
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2` (the split constant of Cephes' `expf`), `e^r` by its
/// degree-6 minimax polynomial, and `2^n` applied as two factors so that results next to the
/// overflow and underflow limits keep their exponent.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer (ties to even).
    const ROUND: f32 = 12_582_912.0;
    // Far below the least subnormal (-inf included) the result is 0: those lanes compute
    // e^0 instead, so that no lane multiplies into the subnormals (a slow microcode assist on
    // x86), and are zeroed at the end.
    let zero = x < -104.0;
    let x = clamp(if zero { 0.0 } else { x }, -104.0, 88.8);
    let biased = x * LOG2E + ROUND;
    let n = biased - ROUND;
    let r = x - n * C1 - n * C2;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    let p = p * (r * r) + r + 1.0;
    // n (in [-150, 128]) from the low bits of `biased`, without a float-to-int conversion (its
    // saturating form does not vectorise); for NaN the bits are arbitrary and p is NaN.
    let n = (biased.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let h = n >> 1;
    let scale = |e: i32| f32::from_bits((e.wrapping_add(127) as u32) << 23);
    let y = p * scale(h) * scale(n - h);
    if zero {
        0.0
    } else {
        y
    }
}

/// `tanh(x)`: an odd polynomial below 0.625 (Cephes' `tanhf`), `1 - 2 / (e^(2|x|) + 1)` above,
/// with the sign of `x`.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_908_9e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328_2e-1)
            * z
            * x
            + x;
    let large = (1.0 - 2.0 / (exp(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 {
        small
    } else {
        large
    }
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `erf(x)`: its Taylor series to `x^11` below 0.5 (relative error under 3e-8), above it
/// `1 - erfc(|x|)` with `erfc` by the Chebyshev-fitted form of Numerical Recipes' `erfcc`
/// (relative error under 1.2e-7), with the sign of `x`.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    // 2/sqrt(pi) * (x - x^3/3 + x^5/10 - x^7/42 + x^9/216 - x^11/1320)
    let small = x
        * (std::f32::consts::FRAC_2_SQRT_PI
            + z * (-0.376_126_4
                + z * (0.112_837_92
                    + z * (-2.686_617_1e-2 + z * (5.223_977_6e-3 + z * -8.548_327e-4)))));
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let large = (1.0 - t * exp(poly - z)).copysign(x);
    if a < 0.5 {
        small
    } else {
        large
    }
}

/// The instruction sets the loops here are compiled for, chosen once per call by the CPU's
/// features.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    Avx512,
    Avx2,
    Baseline,
}

fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("fma") {
            return Level::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// Defines `$name`, which runs the `#[inline(always)]` function `$body` compiled for
/// AVX-512, for AVX2 with FMA or for the baseline, by [`level`].
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:ident) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                match level() {
                    // SAFETY: the features the function is compiled for are present.
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    Level::Baseline => {}
                }
            }
            $body($($arg),*)
        }
    };
}

/// `o[i] = f(x[i])`, compiled for the CPU's widest vectors (generic, so written out rather
/// than through [`multiversion`]).
#[inline(always)]
pub(crate) fn map<A: Copy, O, F: Fn(A) -> O>(x: &[A], o: &mut [O], f: &F) {
    #[inline(always)]
    fn body<A: Copy, O, F: Fn(A) -> O>(x: &[A], o: &mut [O], f: &F) {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = f(v);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
        unsafe fn avx512<A: Copy, O, F: Fn(A) -> O>(x: &[A], o: &mut [O], f: &F) {
            body(x, o, f)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<A: Copy, O, F: Fn(A) -> O>(x: &[A], o: &mut [O], f: &F) {
            body(x, o, f)
        }
        match level() {
            // SAFETY: the features the function is compiled for are present.
            Level::Avx512 => return unsafe { avx512(x, o, f) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { avx2(x, o, f) },
            Level::Baseline => {}
        }
    }
    body(x, o, f)
}

/// `sum f(x[i])` in f64 lanes, compiled for the CPU's widest vectors (generic, as [`map`]).
pub(crate) fn sum_by<T: Copy, F: Fn(T) -> f64>(x: &[T], f: F) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
        unsafe fn avx512<T: Copy, F: Fn(T) -> f64>(x: &[T], f: F) -> f64 {
            sum_of(x, f)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Copy, F: Fn(T) -> f64>(x: &[T], f: F) -> f64 {
            sum_of(x, f)
        }
        match level() {
            // SAFETY: the features the function is compiled for are present.
            Level::Avx512 => return unsafe { avx512(x, f) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { avx2(x, f) },
            Level::Baseline => {}
        }
    }
    sum_of(x, f)
}

multiversion! {
    /// `softmax` (or `log_softmax`) of each row of `len` elements of `x` into `o`.
    fn softmax_rows(x: &[f32], o: &mut [f32], len: usize, log: bool) = softmax_body
}

multiversion! {
    /// The softmax of a row of attention logits into `p`: the probabilities (the sum in
    /// f64), or 0 everywhere when every logit is -inf (a row that sees no key).
    fn probabilities(logits: &[f32], p: &mut [f32]) = probabilities_body
}

multiversion! {
    /// `layer_norm` or `rms_norm` of each row of `len` elements of `x` into `o`.
    fn norm_rows(x: &[f32], o: &mut [f32], len: usize, norm: Norm<'_>) = norm_body
}

/// The normalisation of [`norm_rows`]: `layer_norm` or `rms_norm`, and its optional affine
/// parameters (each `len` long) and epsilon.
#[derive(Clone, Copy)]
pub(crate) struct Norm<'a> {
    pub rms: bool,
    pub weight: Option<&'a [f32]>,
    pub bias: Option<&'a [f32]>,
    pub eps: f64,
}

/// Lanes of the row kernels' f32 accumulators: four AVX-512 registers, four independent
/// dependency chains.
const WIDE: usize = 64;

/// Elements summed in f32 lanes before their sums join the f64 total: at most 16 additions
/// into one lane.
const BLOCK: usize = 16 * WIDE;

/// The largest element of `x` (NaN ignored, as `f64::max` does; `-inf` when empty).
#[inline(always)]
fn max_of(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; WIDE];
    let chunks = x.chunks_exact(WIDE);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..WIDE {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    acc.iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// `o[i] = e^(x[i] - m)`, returning their sum: f32 lanes over blocks of [`BLOCK`] elements,
/// the blocks' sums added in f64.
#[inline(always)]
fn exp_into(x: &[f32], o: &mut [f32], m: f32) -> f64 {
    let mut total = 0f64;
    for (xb, ob) in x.chunks(BLOCK).zip(o.chunks_mut(BLOCK)) {
        let mut acc = [0f32; WIDE];
        let (mut xc, mut oc) = (xb.chunks_exact(WIDE), ob.chunks_exact_mut(WIDE));
        for (c, y) in (&mut xc).zip(&mut oc) {
            for l in 0..WIDE {
                y[l] = exp(c[l] - m);
                acc[l] += y[l];
            }
        }
        let mut tail = 0f32;
        for (&v, y) in xc.remainder().iter().zip(oc.into_remainder()) {
            *y = exp(v - m);
            tail += *y;
        }
        total += acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// `sum f(x[i])` in f64 lanes.
#[inline(always)]
fn sum_of<T: Copy>(x: &[T], f: impl Fn(T) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|&v| f(v)).sum::<f64>()
}

#[inline(always)]
fn softmax_body(x: &[f32], o: &mut [f32], len: usize, log: bool) {
    for (xr, or) in x.chunks_exact(len).zip(o.chunks_exact_mut(len)) {
        let m = max_of(xr);
        let sum = exp_into(xr, or, m);
        if log {
            // (x - m) - ln(sum), the reference's order: the row's maximum gives -ln(sum).
            let ls = sum.ln() as f32;
            for (y, &v) in or.iter_mut().zip(xr) {
                *y = (v - m) - ls;
            }
        } else {
            let inv = (1.0 / sum) as f32;
            for y in or.iter_mut() {
                *y *= inv;
            }
        }
    }
}

#[inline(always)]
fn probabilities_body(logits: &[f32], p: &mut [f32]) {
    let m = max_of(logits);
    if m == f32::NEG_INFINITY && logits.iter().all(|&l| l == f32::NEG_INFINITY) {
        p.fill(0.0);
        return;
    }
    let inv = (1.0 / exp_into(logits, p, m)) as f32;
    for v in p.iter_mut() {
        *v *= inv;
    }
}

#[inline(always)]
fn norm_body(x: &[f32], o: &mut [f32], len: usize, norm: Norm) {
    let n = len as f64;
    for (xr, or) in x.chunks_exact(len).zip(o.chunks_exact_mut(len)) {
        if norm.rms {
            let ms = sum_of(xr, |v| v as f64 * v as f64) / n;
            let r = (1.0 / (ms + norm.eps).sqrt()) as f32;
            match norm.weight {
                Some(w) => {
                    for ((y, &v), &w) in or.iter_mut().zip(xr).zip(w) {
                        *y = v * r * w;
                    }
                }
                None => {
                    for (y, &v) in or.iter_mut().zip(xr) {
                        *y = v * r;
                    }
                }
            }
        } else {
            // Two passes in f64 (mean, then the squares about it), and the normalised values
            // in f64, rounded once: f32 would lose the digits of x - mean when the spread is
            // small next to the mean.
            let mean = sum_of(xr, |v| v as f64) / n;
            let var = sum_of(xr, |v| (v as f64 - mean) * (v as f64 - mean)) / n;
            let r = 1.0 / (var + norm.eps).sqrt();
            match (norm.weight, norm.bias) {
                (Some(w), Some(b)) => {
                    for (((y, &v), &w), &b) in or.iter_mut().zip(xr).zip(w).zip(b) {
                        *y = ((v as f64 - mean) * r * w as f64 + b as f64) as f32;
                    }
                }
                (Some(w), None) => {
                    for ((y, &v), &w) in or.iter_mut().zip(xr).zip(w) {
                        *y = ((v as f64 - mean) * r * w as f64) as f32;
                    }
                }
                (None, Some(b)) => {
                    for ((y, &v), &b) in or.iter_mut().zip(xr).zip(b) {
                        *y = ((v as f64 - mean) * r + b as f64) as f32;
                    }
                }
                (None, None) => {
                    for (y, &v) in or.iter_mut().zip(xr) {
                        *y = ((v as f64 - mean) * r) as f32;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 997th f32 bit pattern, both signs: the functions against f64 within the contract's
    /// elementwise tolerance (1e-5 absolute plus 1e-5 relative), NaN for NaN.
    fn check(name: &str, f: impl Fn(f32) -> f32, reference: impl Fn(f64) -> f64) {
        let mut worst = 0f64;
        for bits in (0..u32::MAX).step_by(997) {
            let x = f32::from_bits(bits);
            let got = f(x);
            let want = reference(x as f64) as f32;
            if want.is_nan() {
                assert!(got.is_nan(), "{name}({x:e}) = {got:e}, expected NaN");
                continue;
            }
            if want.is_infinite() {
                assert_eq!(got, want, "{name}({x:e})");
                continue;
            }
            let err = (got as f64 - want as f64).abs();
            assert!(
                err <= 1e-5 + 1e-5 * (want as f64).abs(),
                "{name}({x:e}) = {got:e}, expected {want:e}"
            );
            if want.abs() > 1e-30 {
                worst = worst.max(err / (want as f64).abs());
            }
        }
        // Far inside the tolerance: a few ulp.
        assert!(worst < 1e-6, "{name}: worst relative error {worst:e}");
    }

    #[test]
    fn exp_matches_f64() {
        check("exp", exp, f64::exp);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(88.8), f32::INFINITY);
        assert!(exp(88.72).is_finite());
        assert!((exp(88.72) as f64 / (88.72f32 as f64).exp() - 1.0).abs() < 1e-6);
        // A subnormal result is rounded once: within one unit of the least subnormal.
        let want = (-100f64).exp() as f32;
        assert!(
            (exp(-100.0) - want).abs() <= f32::from_bits(1),
            "{:e}",
            exp(-100.0)
        );
    }

    #[test]
    fn tanh_matches_f64() {
        check("tanh", tanh, f64::tanh);
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
    }

    #[test]
    fn sigmoid_matches_f64() {
        check("sigmoid", sigmoid, |x| 1.0 / (1.0 + (-x).exp()));
    }

    #[test]
    fn erf_matches_f64() {
        // f64 erf from libm, the reference's own.
        check("erf", erf, libm::erf);
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(-1e30), -1.0);
    }

    #[test]
    fn rows_match_f64() {
        let len = 37;
        let x: Vec<f32> = (0..len * 5)
            .map(|i| ((i * 7919) % 1000) as f32 / 50.0 - 10.0 + 1000.0 * (i / len) as f32)
            .collect();
        let mut o = vec![0f32; x.len()];
        for log in [false, true] {
            softmax_rows(&x, &mut o, len, log);
            for (xr, or) in x.chunks(len).zip(o.chunks(len)) {
                let m = xr.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let s: f64 = xr.iter().map(|&v| (v as f64 - m).exp()).sum();
                for (&v, &y) in xr.iter().zip(or) {
                    let want = if log {
                        v as f64 - m - s.ln()
                    } else {
                        (v as f64 - m).exp() / s
                    };
                    assert!((y as f64 - want).abs() <= 1e-6 + 1e-5 * want.abs());
                }
            }
        }
        let w: Vec<f32> = (0..len).map(|i| 0.5 + i as f32 / 10.0).collect();
        let b: Vec<f32> = (0..len).map(|i| i as f32 - 3.0).collect();
        for rms in [false, true] {
            let norm = Norm {
                rms,
                weight: Some(&w),
                bias: (!rms).then_some(&b[..]),
                eps: 1e-5,
            };
            norm_rows(&x, &mut o, len, norm);
            for (xr, or) in x.chunks(len).zip(o.chunks(len)) {
                let n = len as f64;
                let mean = if rms {
                    0.0
                } else {
                    xr.iter().map(|&v| v as f64).sum::<f64>() / n
                };
                let var = xr
                    .iter()
                    .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                    .sum::<f64>()
                    / n;
                for (j, (&v, &y)) in xr.iter().zip(or).enumerate() {
                    let mut want = (v as f64 - mean) / (var + 1e-5).sqrt() * w[j] as f64;
                    if !rms {
                        want += b[j] as f64;
                    }
                    assert!((y as f64 - want).abs() <= 1e-5 + 1e-5 * want.abs());
                }
            }
        }
    }
}
