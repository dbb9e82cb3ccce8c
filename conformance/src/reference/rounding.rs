//! Rounding and wrapping: f64 values rounded to float dtypes (f16 and bf16 once, from the exact
//! value), integers wrapped to their width, and the `cast` conversions between the two.

use anyaccel_hal::DType;
use half::{bf16, f16};

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
/// - i32, i64, u8, i8: truncated toward zero, saturated to the range, NaN to 0 (the `cast` rule; an
///   i64 result above 2^53 in magnitude comes back as the nearest f64);
/// - bool: 1 if `x != 0` (NaN too), else 0.
pub fn round_to_dtype(x: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F64 => x,
        DType::F32 => x as f32 as f64,
        DType::F16 => f16::from_f64(round_to_format(x, &F16_FORMAT)).to_f64(),
        DType::BF16 => bf16::from_f64(round_to_format(x, &BF16_FORMAT)).to_f64(),
        DType::I32 | DType::I64 | DType::U8 | DType::I8 | DType::Bool => {
            float_to_int(x, dtype) as f64
        }
    }
}

/// `x` wrapped to the width of an integer `dtype` (two's complement: the low bits are kept, so
/// `-1` becomes 255 for u8 and `2^31` becomes `-2^31` for i32); for bool, 1 if `x != 0` else 0.
/// Float dtypes return `x` unchanged.
pub fn wrap_int(x: i64, dtype: DType) -> i64 {
    match dtype {
        DType::I32 => x as i32 as i64,
        DType::U8 => x as u8 as i64,
        DType::I8 => x as i8 as i64,
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
        DType::I8 => x as i8 as i64,
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
        DType::I32 | DType::I64 | DType::U8 | DType::I8 | DType::Bool => wrap_int(x, dtype) as f64,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
