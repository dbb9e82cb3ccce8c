// Unary ops: float ones compute in f32 (16-bit floats are widened before and rounded once
// after); integer ones on T (i32 or i64), wrapping. Special values follow docs/ops.md.

//# neg
fn op_neg(x: f32) -> f32 { return -x; }
//# abs
fn op_abs(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) & 0x7fffffffu); }
//# relu
fn op_relu(x: f32) -> f32 { return select(x, 0.0, !is_nan(x) && x < 0.0); }
//# exp
fn op_exp(x: f32) -> f32 { return exp_ieee(x); }
//# log
// Subnormal inputs are scaled by their bits, not by arithmetic on them.
fn op_log(x: f32) -> f32 {
    let b = bitcast<u32>(x);
    if (is_nan(x)) { return x; }
    if (is_zero(x)) { return -inf_f32(); }
    if ((b >> 31u) != 0u) { return nan_f32(); }
    if (is_inf(x)) { return x; }
    if ((b >> 23u) == 0u) {
        return log(f32(b)) - 149.0 * 0.69314718055994531;
    }
    return log(x);
}
//# sqrt
fn op_sqrt(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    if (is_zero(x)) { return x; }
    if (x < 0.0) { return nan_f32(); }
    return sqrt(x);
}
//# rsqrt
fn op_rsqrt(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    if (is_zero(x)) { return select(inf_f32(), -inf_f32(), (bitcast<u32>(x) >> 31u) != 0u); }
    if (x < 0.0) { return nan_f32(); }
    if (is_inf(x)) { return 0.0; }
    return 1.0 / sqrt(x);
}
//# mul_wide
// a * b as (low, high) words.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = p01 + p10;
    let mid_carry = select(0u, 1u, mid < p01);
    let lo = p00 + (mid << 16u);
    let lo_carry = select(0u, 1u, lo < p00);
    return vec2<u32>(lo, p11 + (mid >> 16u) + (mid_carry << 16u) + lo_carry);
}

//# trig uses mul_wide
// sin and cos: the driver's functions for |x| < 65536, where they are accurate; above, an exact
// Payne-Hanek reduction: |x| * 2/pi with 96 bits of 2/pi from the bit that matters, in 32-bit
// integer arithmetic, gives the quadrant and r in [-pi/4, pi/4].
const TWO_OVER_PI = array<u32, 12>(0u, 0xa2f9836eu, 0x4e441529u, 0xfc2757d1u, 0xf534ddc0u,
    0xdb629599u, 0x3c439041u, 0xfe5163abu, 0xdebbc561u, 0xb7246e3au, 0x424dd2e0u, 0x06492eeau);

// 32 bits of 2/pi from bit k (bit 32 is the first after the binary point).
fn two_over_pi_bits(k: u32) -> u32 {
    let wi = k >> 5u;
    let sh = k & 31u;
    if (sh == 0u) { return TWO_OVER_PI[wi]; }
    return (TWO_OVER_PI[wi] << sh) | (TWO_OVER_PI[wi + 1u] >> (32u - sh));
}

// For ax >= 65536: (r, q) with ax = r + q * pi/2 modulo 2pi.
fn reduce_big(ax: f32) -> vec2<f32> {
    let b = bitcast<u32>(ax);
    let m = (b & 0x7fffffu) | 0x800000u;
    let e = i32(b >> 23u) - 150;
    let k = u32(e + 30);
    let a = mul_wide(m, two_over_pi_bits(k));
    let bb = mul_wide(m, two_over_pi_bits(k + 32u));
    let c = mul_wide(m, two_over_pi_bits(k + 64u));
    let p1 = c.y + bb.x;
    let carry = select(0u, 1u, p1 < c.y);
    let p2 = bb.y + a.x + carry;
    var q = p2 >> 30u;
    var hi = (p2 << 2u) | (p1 >> 30u);
    var lo = (p1 << 2u) | (c.x >> 30u);
    var neg = false;
    if ((hi & 0x80000000u) != 0u) {
        q = q + 1u;
        hi = ~hi;
        lo = ~lo + 1u;
        if (lo == 0u) { hi = hi + 1u; }
        neg = true;
    }
    let f = f32(hi) * 2.3283064365386963e-10 + f32(lo) * 5.421010862427522e-20;
    var r = f * 1.5707963267948966;
    if (neg) { r = -r; }
    return vec2<f32>(r, f32(q & 3u));
}

fn op_sin(x: f32) -> f32 {
    if (is_nan(x) || is_inf(x)) { return nan_f32(); }
    let ax = abs(x);
    if (ax < 65536.0) { return sin(x); }
    let rq = reduce_big(ax);
    let q = u32(rq.y);
    var v: f32;
    switch q {
        case 0u: { v = sin(rq.x); }
        case 1u: { v = cos(rq.x); }
        case 2u: { v = -sin(rq.x); }
        default: { v = -cos(rq.x); }
    }
    return select(v, -v, x < 0.0);
}

fn op_cos(x: f32) -> f32 {
    if (is_nan(x) || is_inf(x)) { return nan_f32(); }
    let ax = abs(x);
    if (ax < 65536.0) { return cos(x); }
    let rq = reduce_big(ax);
    let q = u32(rq.y);
    switch q {
        case 0u: { return cos(rq.x); }
        case 1u: { return -sin(rq.x); }
        case 2u: { return -cos(rq.x); }
        default: { return sin(rq.x); }
    }
}
//# sin uses trig
//# cos uses trig
//# tanh
// A series near zero (where 1 - 2/(e^2x + 1) cancels), the exponential form elsewhere.
fn op_tanh(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    let a = abs(x);
    var r: f32;
    if (a < 0.0625) {
        let x2 = a * a;
        r = a * (1.0 + x2 * (-0.33333333333 + x2 * (0.13333333333 + x2 * (-0.05396825397))));
    } else {
        r = 1.0 - 2.0 / (exp_ieee(2.0 * a) + 1.0);
    }
    return select(r, -r, x < 0.0);
}
//# sigmoid
fn op_sigmoid(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    return 1.0 / (1.0 + exp_ieee(-x));
}
//# silu uses sigmoid
fn op_silu(x: f32) -> f32 { return x * op_sigmoid(x); }
//# gelu_tanh uses tanh
fn op_gelu_tanh(x: f32) -> f32 {
    let c = 0.79788456080286536;
    return 0.5 * x * (1.0 + op_tanh(c * (x + 0.044715 * x * x * x)));
}
//# erfc_pos
// erfc with a relative error below 1.2e-7 (a Chebyshev fit), so that 1 + erf(z) = erfc(-z)
// keeps its precision in the negative tail.
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp_ieee(-z * z + poly);
}
//# gelu uses erfc_pos
fn op_gelu(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    let c = erfc_pos(abs(x) * 0.70710678118654752);
    let one_plus_erf = select(c, 2.0 - c, x >= 0.0);
    return x * 0.5 * one_plus_erf;
}
//# erf uses erfc_pos
// erf(x): the odd Taylor series to x^13 for |x| < 0.5 (relative error below 3e-8 there, where
// 1 - erfc(|x|) would cancel), else 1 - erfc(|x|) with x's sign.
fn op_erf(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    let a = abs(x);
    if (a < 0.5) {
        let z = x * x;
        let s = 1.0 + z * (-1.0 / 3.0 + z * (1.0 / 10.0 + z * (-1.0 / 42.0 + z * (1.0 / 216.0
            + z * (-1.0 / 1320.0 + z * (1.0 / 9360.0))))));
        return 1.1283791670955126 * x * s;
    }
    let one_minus = erfc_pos(a);
    return select(one_minus - 1.0, 1.0 - one_minus, x >= 0.0);
}
//# floor
fn op_floor(x: f32) -> f32 { return select(floor(x), x, is_nan(x) || is_inf(x)); }
//# ceil
fn op_ceil(x: f32) -> f32 { return select(ceil(x), x, is_nan(x) || is_inf(x)); }
//# round
// WGSL's round takes halves to even.
fn op_round(x: f32) -> f32 { return select(round(x), x, is_nan(x) || is_inf(x)); }
//# trunc
fn op_trunc(x: f32) -> f32 { return select(trunc(x), x, is_nan(x) || is_inf(x)); }
//# sign
fn op_sign(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    return select(select(0.0, -1.0, x < 0.0), 1.0, x > 0.0);
}
//# reciprocal
fn op_reciprocal(x: f32) -> f32 { return 1.0 / x; }
//# log1p
// log1p(x) = log(u) * x / (u - 1) with u = 1 + x (Kahan): the rounding of 1 + x cancels.
fn op_log1p(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    if (is_inf(x)) { return select(x, nan_f32(), x < 0.0); }
    if (x < -1.0) { return nan_f32(); }
    if (x == -1.0) { return -inf_f32(); }
    let u = 1.0 + x;
    if (u == 1.0) { return x; }
    return log(u) * (x / (u - 1.0));
}
//# expm1
// A series for |x| < 0.5 (where e^x - 1 cancels), e^x - 1 elsewhere.
fn op_expm1(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    if (is_inf(x)) { return select(x, -1.0, x < 0.0); }
    if (abs(x) < 0.5) {
        let s = 1.0 + x * (1.0 / 2.0 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0
            + x * (1.0 / 720.0 + x * (1.0 / 5040.0 + x * (1.0 / 40320.0 + x * (1.0 / 362880.0))))))));
        return x * s;
    }
    if (x > 88.8) { return inf_f32(); }
    return exp(x) - 1.0;
}
//# tan uses trig
// r in [-pi/4, pi/4] and the quadrant from the exact reduction of the trig section, then the
// minimax polynomial of tan on it (relative error below 2e-7); odd quadrants give -1/tan r.
fn op_tan(x: f32) -> f32 {
    if (is_nan(x) || is_inf(x)) { return nan_f32(); }
    let ax = abs(x);
    var r = ax;
    var q = 0u;
    if (ax > 0.78539816) {
        let rq = reduce_big(ax);
        r = rq.x;
        q = u32(rq.y);
    }
    let z = r * r;
    var t = r;
    if (abs(r) > 1e-4) {
        t = ((((((9.38540185543e-3 * z + 3.11992232697e-3) * z + 2.44301354525e-2) * z
            + 5.34112807005e-2) * z + 1.33387994085e-1) * z + 3.33331568548e-1) * z) * r + r;
    }
    if ((q & 1u) != 0u) { t = -1.0 / t; }
    return select(t, -t, x < 0.0);
}
//# atan_core
// atan for a >= 0 (not NaN): reduced to [0, tan(pi/8)] by atan a = pi/2 - atan(1/a) and
// pi/4 + atan((a - 1)/(a + 1)), then a polynomial (relative error below 2e-7).
fn atan_pos(a: f32) -> f32 {
    if (is_inf(a)) { return 1.5707963267948966; }
    var base = 0.0;
    var t = a;
    if (a > 2.414213562373095) {
        base = 1.5707963267948966;
        t = -1.0 / a;
    } else if (a > 0.4142135623730950) {
        base = 0.7853981633974483;
        t = (a - 1.0) / (a + 1.0);
    }
    let z = t * t;
    return base + ((((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z
        - 3.33329491539e-1) * z * t + t);
}
//# atan uses atan_core
fn op_atan(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    let r = atan_pos(abs(x));
    return select(r, -r, x < 0.0);
}
//# asin_core
// asin for 0 <= a <= 1: a polynomial below 0.5, pi/2 - 2 asin(sqrt((1 - a)/2)) above.
fn asin_poly(a: f32) -> f32 {
    let z = a * a;
    return ((((4.2163199048e-2 * z + 2.4181311049e-2) * z + 4.5470025998e-2) * z
        + 7.4953002686e-2) * z + 1.6666752422e-1) * z * a + a;
}
fn asin_pos(a: f32) -> f32 {
    if (a > 0.5) {
        return 1.5707963267948966 - 2.0 * asin_poly(sqrt(0.5 * (1.0 - a)));
    }
    return asin_poly(a);
}
//# asin uses asin_core
fn op_asin(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    let a = abs(x);
    if (a > 1.0) { return nan_f32(); }
    let r = asin_pos(a);
    return select(r, -r, x < 0.0);
}
//# acos uses asin_core
// pi/2 - asin x near 0; 2 asin(sqrt((1 - x)/2)) near 1 and pi - that near -1 (no cancellation).
fn op_acos(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    let a = abs(x);
    if (a > 1.0) { return nan_f32(); }
    if (a <= 0.5) { return 1.5707963267948966 - select(asin_poly(a), -asin_poly(a), x < 0.0); }
    let r = 2.0 * asin_poly(sqrt(0.5 * (1.0 - a)));
    return select(r, 3.141592653589793 - r, x < 0.0);
}
//# sinh
// A series below 1; (e^a - e^-a)/2 up to 20, and e^(a/2)^2 / 2 beyond (no premature overflow).
fn op_sinh(x: f32) -> f32 {
    if (is_nan(x) || is_inf(x)) { return x; }
    let a = abs(x);
    var r: f32;
    if (a < 1.0) {
        let z = a * a;
        r = ((2.03721912945e-4 * z + 8.33028376239e-3) * z + 1.66667160211e-1) * z * a + a;
    } else if (a < 20.0) {
        let e = exp(a);
        r = 0.5 * e - 0.5 / e;
    } else {
        let h = exp_ieee(0.5 * a);
        r = 0.5 * h * h;
    }
    return select(r, -r, x < 0.0);
}
//# cosh
fn op_cosh(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    let a = abs(x);
    if (is_inf(a)) { return a; }
    if (a < 20.0) {
        let e = exp(a);
        return 0.5 * e + 0.5 / e;
    }
    let h = exp_ieee(0.5 * a);
    return 0.5 * h * h;
}
//# asinh uses log1p
// sign(x) log1p(a + a^2 / (1 + sqrt(1 + a^2))) (no cancellation near 0); ln(2a) past 2^12, where
// a^2 would lose 1 (and overflow far out).
fn op_asinh(x: f32) -> f32 {
    if (is_nan(x) || is_inf(x)) { return x; }
    let a = abs(x);
    var r: f32;
    if (a > 4096.0) {
        r = log(a) + 0.6931471805599453;
    } else {
        r = op_log1p(a + a * a / (1.0 + sqrt(1.0 + a * a)));
    }
    return select(r, -r, x < 0.0);
}
//# acosh uses log1p
// log1p(t + sqrt(t (x + 1))) with t = x - 1 (exact for x in [1, 2]); ln(2x) past 2^12.
fn op_acosh(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    if (x < 1.0) { return nan_f32(); }
    if (is_inf(x)) { return x; }
    if (x > 4096.0) { return log(x) + 0.6931471805599453; }
    let t = x - 1.0;
    return op_log1p(t + sqrt(t * (x + 1.0)));
}
//# atanh uses log1p
// sign(x) log1p(2a / (1 - a)) / 2: +-Inf at +-1, NaN beyond.
fn op_atanh(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    let a = abs(x);
    if (a > 1.0) { return nan_f32(); }
    if (a == 1.0) { return select(inf_f32(), -inf_f32(), x < 0.0); }
    let r = 0.5 * op_log1p(2.0 * a / (1.0 - a));
    return select(r, -r, x < 0.0);
}
//# hardswish
fn op_hardswish(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    // x * (t / 6): x * t would overflow near the largest float.
    return x * (clamp(x + 3.0, 0.0, 6.0) / 6.0);
}
//# softplus uses log1p
// p.lo = beta, p.hi = threshold.
fn op_softplus(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    let bx = x * p.lo;
    if (!is_nan(bx) && bx > p.hi) { return x; }
    // log1p(e^t) as max(t, 0) + log1p(e^-|t|): never overflows.
    return (max(bx, 0.0) + op_log1p(exp_ieee(-abs(bx)))) / p.lo;
}
//# leaky_relu
// p.lo = negative_slope.
fn op_leaky_relu(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    return select(x * p.lo, x, x > 0.0);
}
//# elu uses expm1
// p.lo = alpha.
fn op_elu(x: f32) -> f32 {
    if (is_nan(x)) { return x; }
    return select(p.lo * op_expm1(x), x, x > 0.0);
}
//# backward_common
// Activation gradients (dx from g and x), written to stay finite where the gradient is: the
// sigmoid's derivative as e / (1 + e)^2 with e = exp(-|x|), tanh's as 4e / (1 + e)^2 with
// e = exp(-2|x|), and x times a derivative that underflowed to 0 as 0 (so x = +-Inf gives the
// limit). NaN tests work on bits.
fn sigmoid_d(x: f32) -> f32 {
    let e = exp_ieee(-abs(x));
    let d = 1.0 + e;
    return e / (d * d);
}
fn tanh_d(x: f32) -> f32 {
    let e = exp_ieee(-2.0 * abs(x));
    let d = 1.0 + e;
    return 4.0 * e / (d * d);
}
fn times_small(x: f32, d: f32) -> f32 { return select(x * d, 0.0, d == 0.0); }
//# relu_backward
fn bw_relu(g: f32, x: f32) -> f32 { return select(g, 0.0, !is_nan(x) && x <= 0.0); }
//# leaky_relu_backward
// p.lo = negative_slope.
fn bw_leaky_relu(g: f32, x: f32) -> f32 { return select(g * p.lo, g, !is_nan(x) && x > 0.0); }
//# elu_backward
// p.lo = alpha.
fn bw_elu(g: f32, x: f32) -> f32 { return select(g, g * p.lo * exp_ieee(x), !is_nan(x) && x <= 0.0); }
//# sigmoid_backward uses backward_common
fn bw_sigmoid(g: f32, x: f32) -> f32 { return g * sigmoid_d(x); }
//# tanh_backward uses backward_common
fn bw_tanh(g: f32, x: f32) -> f32 { return g * tanh_d(x); }
//# silu_backward uses backward_common sigmoid
fn bw_silu(g: f32, x: f32) -> f32 { return g * (op_sigmoid(x) + times_small(x, sigmoid_d(x))); }
//# softplus_backward uses sigmoid
// p.lo = beta, p.hi = threshold.
fn bw_softplus(g: f32, x: f32) -> f32 {
    let t = x * p.lo;
    return select(g * op_sigmoid(t), g, !is_nan(t) && t > p.hi);
}
//# gelu_tanh_backward uses backward_common tanh
fn bw_gelu_tanh(g: f32, x: f32) -> f32 {
    let k = 0.7978845608028654; // sqrt(2 / pi)
    let inner = k * (x + 0.044715 * x * x * x);
    let d = tanh_d(inner);
    let right = select(times_small(0.5 * x, d) * k * (1.0 + 3.0 * 0.044715 * x * x), 0.0, d == 0.0);
    return g * (0.5 * (1.0 + op_tanh(inner)) + right);
}
//# gelu_backward uses backward_common erf
fn bw_gelu(g: f32, x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + op_erf(x * 0.7071067811865476));
    let pdf = exp_ieee(-0.5 * x * x) * 0.3989422804014327; // 1 / sqrt(2 pi)
    return g * (cdf + times_small(x, pdf));
}
//# clamp
fn op_clamp(x: f32) -> f32 { return f_min(f_max(x, p.lo), p.hi); }

//# int_neg
fn op_neg(x: $T) -> $T { return $T(0) - x; }
//# int_abs
fn op_abs(x: $T) -> $T { return select(x, $T(0) - x, x < $T(0)); }
//# int_relu
fn op_relu(x: $T) -> $T { return max(x, $T(0)); }
//# int_sign
fn op_sign(x: $T) -> $T { return select(select($T(0), $T(-1), x < $T(0)), $T(1), x > $T(0)); }
//# int_bitwise_not
fn op_bitwise_not(x: $T) -> $T { return ~x; }
//# int_clamp
fn op_clamp(x: $T) -> $T { return min(max(x, $LO), $HI); }
