//! Host-side conversions of one value to a dtype by the rules of `cast` (`docs/ops.md`), each a
//! single rounding from the exact input: f64 and integers to f16 and bf16, and an f64 to the bits
//! of any dtype (how `fill` values reach every kernel).
//!
//! `half`'s own `from_f64` is not used for this: it rounds through f32 on machines with F16C
//! (so 65519.999 becomes +Inf in f16) and elsewhere ignores the low 32 bits of the f64
//! significand (so `1 + 2^-11 + 2^-40` rounds down to 1 as if it were the tie). Converting an
//! i64 through f64 rounds twice too, above 2^53.

use anyaccel_hal::{bf16, f16, DType};

/// A binary floating-point format narrower than f32: its significand and exponent field widths.
struct Narrow {
    /// Stored significand bits (the leading 1 of normal values is implicit).
    man: u32,
    /// Exponent field bits.
    exp: u32,
}

const F16: Narrow = Narrow { man: 10, exp: 5 };
const BF16: Narrow = Narrow { man: 7, exp: 8 };

impl Narrow {
    /// The bits of `(-1)^neg * mag * 2^exp2` rounded once to nearest, ties to even; a result
    /// beyond the largest finite value is ±Inf, one below half the smallest subnormal is ±0.
    fn round(&self, neg: bool, mag: u64, exp2: i32) -> u16 {
        let sign = (neg as u16) << 15;
        if mag == 0 {
            return sign;
        }
        let bias = (1i32 << (self.exp - 1)) - 1;
        let emin = 1 - bias;
        let inf = ((1u32 << self.exp) - 1) << self.man;
        // The value lies in [2^e, 2^(e+1)); results below 2^emin are subnormals sharing emin's
        // quantum.
        let e = 63 - mag.leading_zeros() as i32 + exp2;
        if e > bias {
            return sign | inf as u16;
        }
        let quantum = e.max(emin) - self.man as i32;
        // Drop the bits of `mag` below the quantum, rounding to nearest even.
        let drop = quantum - exp2;
        let kept: u64 = if drop <= 0 {
            // Exact: `mag` has at most man + 1 bits above the quantum, so this cannot overflow.
            mag << (-drop)
        } else if drop > 64 {
            // Below half the quantum: zero.
            0
        } else {
            let wide = mag as u128;
            let kept = wide >> drop;
            let rest = wide & ((1u128 << drop) - 1);
            let half = 1u128 << (drop - 1);
            let up = rest > half || (rest == half && kept & 1 == 1);
            (kept + up as u128) as u64
        };
        // Normal results carry the implicit bit in `kept`; adding the biased exponent less one
        // places it, and a carry out of the significand moves to the next binade (or to Inf).
        let bits = if e < emin {
            kept
        } else {
            (((e + bias - 1) as u64) << self.man) + kept
        };
        sign | bits.min(inf as u64) as u16
    }

    /// The bits of `v` rounded once.
    fn round_f64(&self, v: f64) -> u16 {
        let b = v.to_bits();
        let neg = b >> 63 == 1;
        let field = ((b >> 52) & 0x7ff) as i32;
        let frac = b & ((1u64 << 52) - 1);
        if field == 0x7ff {
            let sign = (neg as u16) << 15;
            let inf = (((1u32 << self.exp) - 1) << self.man) as u16;
            if frac == 0 {
                return sign | inf;
            }
            // A quiet NaN keeping the top of the payload.
            let quiet = 1u16 << (self.man - 1);
            return sign | inf | quiet | (frac >> (52 - self.man)) as u16;
        }
        if field == 0 {
            self.round(neg, frac, -1074)
        } else {
            self.round(neg, frac | (1 << 52), field - 1075)
        }
    }

    /// The bits of `v` rounded once.
    fn round_i64(&self, v: i64) -> u16 {
        self.round(v < 0, v.unsigned_abs(), 0)
    }
}

/// `v` rounded once to f16: nearest, ties to even, ±Inf from 65520 in magnitude.
pub fn f16_from_f64(v: f64) -> f16 {
    f16::from_bits(F16.round_f64(v))
}

/// `v` rounded once to bf16: nearest, ties to even, ±Inf beyond the largest finite value.
pub fn bf16_from_f64(v: f64) -> bf16 {
    bf16::from_bits(BF16.round_f64(v))
}

/// The exact integer `v` rounded once to f16.
pub fn f16_from_i64(v: i64) -> f16 {
    f16::from_bits(F16.round_i64(v))
}

/// The exact integer `v` rounded once to bf16 (not through f64, which rounds above 2^53).
pub fn bf16_from_i64(v: i64) -> bf16 {
    bf16::from_bits(BF16.round_i64(v))
}

/// `v` rounded once to the float dtype `dtype` (f32 for the others), as the f32 that holds it
/// exactly: how a float attribute such as a clamp bound reaches a kernel that computes in f32.
pub fn f32_holding(v: f64, dtype: DType) -> f32 {
    match dtype {
        DType::F16 => f16_from_f64(v).to_f32(),
        DType::BF16 => bf16_from_f64(v).to_f32(),
        _ => v as f32,
    }
}

/// The bits of `value` converted to `dtype` by the rules of `cast` from f64, in the low bits
/// of the result: floats rounded once to nearest even (overflow to ±Inf), integers truncated
/// toward zero and saturated (NaN gives 0), bool `value != 0` (NaN gives 1).
pub fn value_bits(value: f64, dtype: DType) -> u64 {
    match dtype {
        DType::F32 => (value as f32).to_bits() as u64,
        DType::F16 => f16_from_f64(value).to_bits() as u64,
        DType::BF16 => bf16_from_f64(value).to_bits() as u64,
        DType::F64 => value.to_bits(),
        DType::I32 => (value as i32) as u32 as u64,
        DType::I64 => (value as i64) as u64,
        DType::U8 => (value as u8) as u64,
        DType::I8 => (value as i8) as u8 as u64,
        DType::Bool => (value != 0.0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every finite f16 or bf16 value below the largest (bits `0..max`), the midpoints between
    /// it and the next and the values a hair to either side.
    fn exhaustive(widen: fn(u16) -> f64, round: fn(f64) -> u16, max: u16) {
        for b in 0..max {
            let (lo, hi) = (widen(b), widen(b + 1));
            assert_eq!(round(lo), b, "{lo:e}");
            assert_eq!(round(-lo), b | 0x8000, "{:e}", -lo);
            let mid = (lo + hi) / 2.0;
            let even = if b & 1 == 0 { b } else { b + 1 };
            assert_eq!(round(mid), even, "tie {mid:e}");
            let below = f64::from_bits(mid.to_bits() - 1);
            let above = f64::from_bits(mid.to_bits() + 1);
            assert_eq!(round(below), b, "{below:e}");
            assert_eq!(round(above), b + 1, "{above:e}");
        }
    }

    #[test]
    fn f16_rounds_every_midpoint_once() {
        exhaustive(
            |b| f16::from_bits(b).to_f64(),
            |v| f16_from_f64(v).to_bits(),
            0x7bff,
        );
        assert_eq!(f16_from_f64(65520.0 - 2f64.powi(-30)).to_bits(), 0x7bff);
        assert_eq!(f16_from_f64(65520.0).to_bits(), 0x7c00);
        assert_eq!(f16_from_f64(1e300).to_bits(), 0x7c00);
        assert_eq!(f16_from_f64(-1e-300).to_bits(), 0x8000);
        assert_eq!(f16_from_f64(f64::from_bits(1)).to_bits(), 0);
        assert_eq!(f16_from_f64(f64::NEG_INFINITY).to_bits(), 0xfc00);
        assert!(f16_from_f64(f64::NAN).is_nan());
        assert!(f16_from_f64(-f64::NAN).is_nan());
    }

    #[test]
    fn bf16_rounds_every_midpoint_once() {
        exhaustive(
            |b| bf16::from_bits(b).to_f64(),
            |v| bf16_from_f64(v).to_bits(),
            0x7f7f,
        );
        assert_eq!(bf16_from_f64(f64::MAX).to_bits(), 0x7f80);
        assert!(bf16_from_f64(f64::NAN).is_nan());
    }

    #[test]
    fn integers_round_once_from_the_exact_value() {
        // 2^60 + 2^52 + 1: f64 makes it the tie 2^60 + 2^52 (then even: 2^60); once: 2^60 + 2^53.
        let v = (1i64 << 60) + (1 << 52) + 1;
        assert_eq!(bf16_from_i64(v).to_f64(), (2f64.powi(60) + 2f64.powi(53)));
        assert_eq!(bf16_from_i64(-v).to_f64(), -(2f64.powi(60) + 2f64.powi(53)));
        assert_eq!(bf16_from_i64(i64::MIN).to_f64(), -(2f64.powi(63)));
        assert_eq!(bf16_from_i64(i64::MAX).to_f64(), 2f64.powi(63));
        assert_eq!(bf16_from_i64((1 << 24) + (1 << 16) + 1).to_bits(), 0x4b81);
        assert_eq!(f16_from_i64(2049).to_f64(), 2048.0);
        assert_eq!(f16_from_i64(2051).to_f64(), 2052.0);
        assert_eq!(f16_from_i64(65519).to_bits(), 0x7bff);
        assert_eq!(f16_from_i64(65520).to_bits(), 0x7c00);
        assert_eq!(f16_from_i64(i64::MIN).to_bits(), 0xfc00);
        assert_eq!(f16_from_i64(0).to_bits(), 0);
        for i in -70000i64..70000 {
            assert_eq!(f16_from_i64(i), f16_from_f64(i as f64), "{i}");
        }
    }

    #[test]
    fn value_bits_follow_the_rules_of_cast() {
        assert_eq!(value_bits(300.7, DType::U8), 255);
        assert_eq!(value_bits(-1.5, DType::U8), 0);
        assert_eq!(value_bits(f64::NAN, DType::Bool), 1);
        assert_eq!(value_bits(-0.0, DType::Bool), 0);
        assert_eq!(value_bits(f64::NAN, DType::I32), 0);
        assert_eq!(value_bits(1e10, DType::I32), i32::MAX as u32 as u64);
        assert_eq!(value_bits(1e6, DType::F16), 0x7c00);
        assert_eq!(value_bits(-3.0, DType::I64), (-3i64) as u64);
        assert_eq!(value_bits(1.5, DType::BF16), 0x3fc0);
        assert_eq!(value_bits(-0.0, DType::F16), 0x8000);
    }
}
