// Helpers that every generated kernel includes: sub-word storage, bf16 bits, IEEE tests done
// on bits (drivers may compile float comparisons without NaN semantics), and exact rounding of
// integers to a float's precision.
//
// Sections start at a line `//# name`; the op layer picks the sections a kernel needs.

//# common
const NAN_F32: u32 = 0x7fc00000u;
const INF_F32: u32 = 0x7f800000u;

fn nan_f32() -> f32 { return bitcast<f32>(NAN_F32); }
fn inf_f32() -> f32 { return bitcast<f32>(INF_F32); }
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > INF_F32; }
fn is_inf(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == INF_F32; }
fn is_zero(x: f32) -> bool { return (bitcast<u32>(x) << 1u) == 0u; }
// exp with the IEEE special values made explicit: exp(-Inf) = 0, exp(+Inf) = +Inf, NaN stays.
fn exp_ieee(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    if (is_inf(x)) { return select(x, 0.0, x < 0.0); }
    return exp(x);
}

// The byte (or 16-bit half) of element `i` in its 32-bit word.
fn byte_of(w: u32, i: u32) -> u32 { return (w >> ((i & 3u) * 8u)) & 0xffu; }
fn half_of(w: u32, i: u32) -> u32 { return (w >> ((i & 1u) * 16u)) & 0xffffu; }

// bf16 is the top half of an f32: widening is a shift; narrowing rounds to nearest even on the
// bits (overflow carries into the exponent and gives infinity; NaN stays a quiet NaN).
fn bf16_to_f32(h: u32) -> f32 { return bitcast<f32>(h << 16u); }
fn bf16_from_f32(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > INF_F32) { return (b >> 16u) | 0x40u; }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

// IEEE comparisons: false when either side is NaN (`ne` is the negation of `eq`).
fn f_eq(a: f32, b: f32) -> bool { return !is_nan(a) && !is_nan(b) && a == b; }
fn f_lt(a: f32, b: f32) -> bool { return !is_nan(a) && !is_nan(b) && a < b; }
fn f_le(a: f32, b: f32) -> bool { return !is_nan(a) && !is_nan(b) && a <= b; }

// NaN-propagating maximum and minimum.
fn f_max(a: f32, b: f32) -> f32 {
    if (is_nan(a) || is_nan(b)) { return nan_f32(); }
    return select(b, a, a > b);
}
fn f_min(a: f32, b: f32) -> f32 {
    if (is_nan(a) || is_nan(b)) { return nan_f32(); }
    return select(b, a, a < b);
}

// The magnitude `m` of an integer rounded to `bits` significant bits (nearest, ties to even),
// as an f32. Exact: the rounded value has at most 24 significant bits.
fn round_mag_u32(m: u32, bits: u32) -> f32 {
    if (m == 0u) { return 0.0; }
    let top = 31u - countLeadingZeros(m);
    if (top < bits) { return f32(m); }
    let s = top + 1u - bits;
    let q = m >> s;
    let rem = m & ((1u << s) - 1u);
    let half = 1u << (s - 1u);
    var r = q;
    if (rem > half || (rem == half && (q & 1u) == 1u)) { r = q + 1u; }
    return ldexp(f32(r), i32(s));
}

// float -> integer: toward zero, saturating, NaN gives 0.
fn f32_to_i32(x: f32) -> i32 {
    if (is_nan(x)) { return 0; }
    if (x >= 2147483648.0) { return 2147483647; }
    if (x <= -2147483648.0) { return -2147483647 - 1; }
    return i32(x);
}
fn f32_to_u8(x: f32) -> u32 {
    if (is_nan(x) || x <= 0.0) { return 0u; }
    if (x >= 255.0) { return 255u; }
    return u32(x);
}
fn f32_to_i8(x: f32) -> i32 {
    if (is_nan(x)) { return 0; }
    return i32(clamp(x, -128.0, 127.0));
}
// i32 -> f32, f16 (11 bits) or bf16 (8 bits), rounded once from the exact value.
fn i32_to_float(x: i32, bits: u32) -> f32 {
    let m = round_mag_u32(bitcast<u32>(select(x, -x, x < 0)), bits);
    return select(m, -m, x < 0);
}

//# common_f16
// f16 storage rounds an f32 to nearest even (overflow gives infinity).
fn f16_from_f32(v: f32) -> f16 { return f16(v); }

//# common_i64
// (u32 -> i64 conversions may sign-extend: the low word is masked.)
fn i64_from_parts(lo: u32, hi: u32) -> i64 {
    return (i64(bitcast<i32>(hi)) << 32u) | (i64(lo) & 0xffffffffli);
}
fn i64_min() -> i64 { return i64_from_parts(0u, 0x80000000u); }
fn i64_max() -> i64 { return i64_from_parts(0xffffffffu, 0x7fffffffu); }

// The magnitude of an i64 rounded to `bits` significant bits, exactly, as a u64 mantissa and a
// shift (value = mant << shift).
fn round_mag_u64(m: u64, bits: u32) -> vec2<u32> {
    let hi = u32(m >> 32u);
    var top: u32;
    if (hi != 0u) { top = 63u - countLeadingZeros(hi); } else { top = 31u - countLeadingZeros(u32(m)); }
    if (m == 0lu || top < bits) { return vec2<u32>(0xffffffffu, 0u); }
    let s = top + 1u - bits;
    let q = m >> s;
    let rem = m & ((1lu << s) - 1lu);
    let half = 1lu << (s - 1u);
    var r = q;
    if (rem > half || (rem == half && (q & 1lu) == 1lu)) { r = q + 1lu; }
    return vec2<u32>(u32(r), s);
}
fn i64_mag(x: i64) -> u64 { return select(u64(x), u64(-x), x < 0li); }
// i64 -> f32, f16 (11 bits) or bf16 (8 bits), rounded once from the exact value.
fn i64_to_float(x: i64, bits: u32) -> f32 {
    let m = i64_mag(x);
    let r = round_mag_u64(m, bits);
    var v: f32;
    if (r.x == 0xffffffffu) { v = f32(u32(m)); } else { v = ldexp(f32(r.x), i32(r.y)); }
    return select(v, -v, x < 0li);
}
fn f32_to_i64(x: f32) -> i64 {
    if (is_nan(x)) { return 0li; }
    if (x >= 9223372036854775808.0) { return i64_max(); }
    if (x <= -9223372036854775808.0) { return i64_min(); }
    return i64(x);
}

//# common_f64
fn is_nan64(x: f64) -> bool { return !(x == x); }
// The finite f64 whose bits are `hi:lo`, exactly (the significand is below 2^53, and scaling by
// a power of two is exact).
fn f64_from_parts(lo: u32, hi: u32) -> f64 {
    let field = i32((hi >> 20u) & 0x7ffu);
    let frac = f64(hi & 0xfffffu) * 4294967296.0lf + f64(lo);
    var v: f64;
    if (field == 0) {
        v = ldexp(frac, -1074);
    } else {
        v = ldexp(frac + 4503599627370496.0lf, field - 1075);
    }
    return select(v, -v, (hi >> 31u) == 1u);
}
// f64 -> f32 rounded to odd: exact values stay, others take the neighbour with an odd last
// bit, so that a second rounding to f16 or bf16 equals one rounding from the f64 value.
fn f64_to_f32_odd(x: f64) -> f32 {
    let f = f32(x);
    if (is_nan(f) || is_inf(f) || f64(f) == x) { return f; }
    let b = bitcast<u32>(f);
    if ((b & 1u) == 1u) { return f; }
    if (abs(f64(f)) > abs(x)) { return bitcast<f32>(b - 1u); }
    return bitcast<f32>(b + 1u);
}
fn f64_to_i32(x: f64) -> i32 {
    if (is_nan64(x)) { return 0; }
    if (x >= 2147483648.0lf) { return 2147483647; }
    if (x <= -2147483648.0lf) { return -2147483647 - 1; }
    return i32(x);
}
fn f64_to_u8(x: f64) -> u32 {
    if (is_nan64(x) || x <= 0.0lf) { return 0u; }
    if (x >= 255.0lf) { return 255u; }
    return u32(x);
}
fn f64_to_i8(x: f64) -> i32 {
    if (is_nan64(x)) { return 0; }
    return i32(clamp(x, -128.0lf, 127.0lf));
}

//# common_f64_i64
fn f64_to_i64(x: f64) -> i64 {
    if (is_nan64(x)) { return 0li; }
    if (x >= 9223372036854775808.0lf) { return i64_max(); }
    if (x <= -9223372036854775808.0lf) { return i64_min(); }
    return i64(x);
}
fn i64_to_f64(x: i64) -> f64 {
    let m = i64_mag(x);
    let hi = u32(m >> 32u);
    var v: f64;
    if (hi < 0x200000u) {
        v = f64(m);
    } else {
        // More than 53 significant bits: round to 53, then convert exactly.
        let top = 63u - countLeadingZeros(hi);
        let s = top - 52u;
        let q = m >> s;
        let rem = m & ((1lu << s) - 1lu);
        let half = 1lu << (s - 1u);
        var r = q;
        if (rem > half || (rem == half && (q & 1lu) == 1lu)) { r = q + 1lu; }
        v = ldexp(f64(r), i32(s));
    }
    return select(v, -v, x < 0li);
}
