//! The counter-based generator of the random ops (`uniform`, `normal`, `bernoulli`,
//! `dropout`): Philox 4x32-10 keyed by `(seed, offset)`, and the exact recipes that turn its
//! words into numbers.
//!
//! Every device computes the same bits: the recipes use only integer operations and single
//! IEEE-754 operations rounded to nearest (a product is rounded before it is added; no fused
//! multiply-add), in the order written here and in `docs/ops.md` (section 8.10). This module is
//! that recipe for the host; the C dialect (`kernels/c/random.h`) and WGSL
//! (`kernels/wgsl/random.wgsl`) write the same steps.

/// The multipliers and key increments of Philox 4x32.
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox 4x32 with 10 rounds: the block of `counter` under `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
        if round < 9 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
    }
    c
}

/// The stream of one call: the key from `seed`, the upper counter half from `offset` (both
/// taken as the bits of the i64 attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// The generator key.
    pub seed: u64,
    /// The upper 64 bits of every counter of the call.
    pub offset: u64,
}

impl Stream {
    /// The stream of a call of a random op: its `seed` and `offset` attributes.
    pub(crate) fn of(a: &crate::attrs::Attrs<'_>) -> anyaccel_hal::Result<Stream> {
        Ok(Stream {
            seed: a.int_or_default("seed")? as u64,
            offset: a.int_or_default("offset")? as u64,
        })
    }

    /// The 32-bit word of the element with row-major index `i`.
    pub fn word(&self, i: u64) -> u32 {
        self.block(i / 4)[(i % 4) as usize]
    }

    /// The four words of elements `4 * b .. 4 * b + 4`.
    pub fn block(&self, b: u64) -> [u32; 4] {
        philox4x32_10(
            [
                b as u32,
                (b >> 32) as u32,
                self.offset as u32,
                (self.offset >> 32) as u32,
            ],
            [self.seed as u32, (self.seed >> 32) as u32],
        )
    }
}

/// The two parameters every dialect's kernel of a random op takes, `a + b * draw` for the
/// draws: `(low, high - low)` for `uniform`, `(mean, std)` for `normal`, `(p, 1 / (1 - p))`
/// for `dropout`, and nothing for `bernoulli` (its probabilities are its input).
pub(crate) fn params(
    a: &crate::attrs::Attrs<'_>,
    op: crate::catalog::Op,
) -> anyaccel_hal::Result<(f64, f64)> {
    use crate::catalog::Op;
    Ok(match op {
        Op::Uniform => {
            let low = a.float_or_default("low")?;
            (low, a.float_or_default("high")? - low)
        }
        Op::Normal => (a.float_or_default("mean")?, a.float_or_default("std")?),
        Op::Dropout => {
            let p = a.float_or_default("p")?;
            (p, dropout_scale(p))
        }
        _ => (0.0, 0.0),
    })
}

/// The f32 (or f64, when `wide`) value `1 / (1 - p)` that kept elements of `dropout` are
/// multiplied by; 0 when `p` is 1.
pub fn dropout_scale(p: f64) -> f64 {
    if p >= 1.0 {
        0.0
    } else {
        1.0 / (1.0 - p)
    }
}

/// `(w >> 8) * 2^-24`: exact, in [0, 1).
pub fn u24(w: u32) -> f32 {
    (w >> 8) as f32 * f32::from_bits(0x3380_0000)
}

/// `w * 2^-32`: exact, in [0, 1).
pub fn u32d(w: u32) -> f64 {
    f64::from(w) * f64::from_bits(0x3df0_0000_0000_0000)
}

/// Coefficients of `ln(1 + t) / t` on `[sqrt(1/2) - 1, sqrt(2) - 1]`, constant term first.
pub const LOG_C: [u32; 10] = [
    0x3f80_0000,
    0xbeff_fffc,
    0x3eaa_aaa8,
    0xbe80_0214,
    0x3e4c_d23b,
    0xbe2a_13d4,
    0x3e11_343a,
    0xbe07_9613,
    0x3e04_3db9,
    0xbd9c_7039,
];
/// `sqrt(2) * erfinv(x) / x` in `t = W - 2.5` for `W = -ln(1 - x^2) < 5`.
pub const CENTRAL_C: [u32; 10] = [
    0x4007_e45e,
    0x3eb2_962e,
    0xbbc1_958f,
    0xbae8_36d6,
    0x39a1_e4fb,
    0xb6eb_5af9,
    0xb6a4_58dc,
    0x3530_b03c,
    0x330d_7031,
    0xb254_57cd,
];
/// The same in `t = sqrt(W) - 3` for `W >= 5`.
pub const TAIL_C: [u32; 10] = [
    0x4080_34b6,
    0x3fb5_5293,
    0x3c5a_dbd4,
    0xbc31_005a,
    0x3c03_b33c,
    0xbba6_4b52,
    0x3b0a_7420,
    0xb8da_cd90,
    0xb9eb_2794,
    0x393c_6a1b,
];

/// `c[0] + t * (c[1] + t * (...))`, every product and sum rounded.
fn horner(c: &[u32; 10], t: f32) -> f32 {
    let mut p = f32::from_bits(c[9]);
    for &k in c[..9].iter().rev() {
        p = p * t + f32::from_bits(k);
    }
    p
}

/// `(e, l)` with `ln(v) ~ e * ln 2 + l`, for an integer-valued `v` in `[1, 2^24)`.
fn log_parts(v: f32) -> (i32, f32) {
    let bits = v.to_bits();
    let mut e = (bits >> 23) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x7f_ffff) | 0x3f80_0000);
    if m > f32::from_bits(0x3fb5_04f3) {
        m *= 0.5;
        e += 1;
    }
    let t = m - 1.0;
    (e, t * horner(&LOG_C, t))
}

/// The standard normal draw of a word: `sqrt(2) * erfinv(x)` for the uniform `x` in (-1, 1)
/// that the top 23 bits of `w` give, by the recipe of `docs/ops.md`.
pub fn normal_z(w: u32) -> f32 {
    let k = w >> 9;
    let a = (2 * k + 1) as f32;
    let b = ((1u32 << 24) - 2 * k - 1) as f32;
    let x = (2 * k as i32 + 1 - (1 << 23)) as f32 * f32::from_bits(0x3400_0000);
    let (ea, la) = log_parts(a);
    let (eb, lb) = log_parts(b);
    let s = la + lb;
    let big_w = -(((ea + eb - 46) as f32) * f32::from_bits(0x3f31_7218) + s);
    let q = if big_w < 5.0 {
        horner(&CENTRAL_C, big_w - 2.5)
    } else {
        let mut y = f32::from_bits(0x5f37_59df - (big_w.to_bits() >> 1));
        let h = 0.5 * big_w;
        for _ in 0..3 {
            let hy = h * y;
            let hyy = hy * y;
            y *= 1.5 - hyy;
        }
        horner(&TAIL_C, big_w * y - 3.0)
    };
    q * x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_gives_the_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    /// The normal draw against `sqrt(2) * erfinv(x)`, from the inverse of `erf` by bisection in
    /// f64, over words spread across the range including both ends.
    #[test]
    fn normal_z_is_the_inverse_normal_cdf() {
        let erf = |x: f64| -> f64 {
            // Abramowitz-Stegun 7.1.26 is too coarse; use the series / continued fraction of
            // erfc via the complementary error function of libm through `1 - erfc`.
            1.0 - libm_erfc(x)
        };
        let mut worst = 0f64;
        for k in (0u32..(1 << 23)).step_by(4099).chain([0, 1, (1 << 23) - 1]) {
            let w = k << 9;
            let x = (2.0 * f64::from(k) + 1.0 - f64::from(1u32 << 23)) / f64::from(1u32 << 23);
            // erfinv(x) by bisection on erf.
            let (mut lo, mut hi) = (-6.0f64, 6.0f64);
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if erf(mid) < x {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let want = std::f64::consts::SQRT_2 * 0.5 * (lo + hi);
            let got = f64::from(normal_z(w));
            let err = (got - want).abs() / want.abs().max(1e-3);
            worst = worst.max(err);
        }
        assert!(worst < 2e-6, "worst relative error {worst:e}");
    }

    /// erfc(x) to about 1e-15 relative: the Taylor series of erf near 0, Lentz's continued
    /// fraction for larger |x|.
    fn libm_erfc(x: f64) -> f64 {
        if x < 0.0 {
            return 2.0 - libm_erfc(-x);
        }
        if x < 2.0 {
            let (mut term, mut sum, x2) = (x, x, x * x);
            for n in 1..200 {
                term *= -x2 / n as f64;
                let add = term / (2 * n + 1) as f64;
                sum += add;
                if add.abs() < 1e-18 {
                    break;
                }
            }
            return 1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum;
        }
        // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
        let mut f = x;
        for n in (1..200).rev() {
            f = x + (n as f64 / 2.0) / f;
        }
        (-x * x).exp() / std::f64::consts::PI.sqrt() / f
    }
}
