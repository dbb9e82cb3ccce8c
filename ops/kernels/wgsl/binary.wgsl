// Binary ops and comparisons. Float ops compute in f32 (16-bit floats widened before, rounded
// once after); integer ops on T (i32 or i64), wrapping. TMIN is T's most negative value.

//# add
fn op_add(a: f32, b: f32) -> f32 { return a + b; }
//# sub
fn op_sub(a: f32, b: f32) -> f32 { return a - b; }
//# mul
fn op_mul(a: f32, b: f32) -> f32 { return a * b; }
//# div
fn op_div(a: f32, b: f32) -> f32 { return a / b; }
//# maximum
fn op_maximum(a: f32, b: f32) -> f32 { return f_max(a, b); }
//# minimum
fn op_minimum(a: f32, b: f32) -> f32 { return f_min(a, b); }
//# pow
// C99 Annex F: pow(x, +-0) = 1 and pow(1, y) = 1 even for NaN; a negative finite base needs an
// integral exponent; zeros and infinities by the sign and parity of the exponent.
fn is_int_f(y: f32) -> bool { return !is_nan(y) && !is_inf(y) && floor(y) == y; }
fn is_odd_f(y: f32) -> bool {
    return is_int_f(y) && abs(y) < 16777216.0 && (floor(y * 0.5) * 2.0) != y;
}
fn op_pow(x: f32, y: f32) -> f32 {
    if (is_zero(y) || x == 1.0) { return 1.0; }
    if (is_nan(x) || is_nan(y)) { return nan_f32(); }
    let neg = (bitcast<u32>(x) >> 31u) != 0u;
    let ax = abs(x);
    if (is_zero(x)) {
        if (y < 0.0) {
            return select(inf_f32(), select(inf_f32(), -inf_f32(), neg), is_odd_f(y));
        }
        return select(0.0, x, is_odd_f(y));
    }
    if (is_inf(y)) {
        if (ax == 1.0) { return 1.0; }
        if ((ax > 1.0) == (y > 0.0)) { return inf_f32(); }
        return 0.0;
    }
    if (is_inf(x)) {
        var r: f32;
        if (y > 0.0) { r = inf_f32(); } else { r = 0.0; }
        if (neg && is_odd_f(y)) { r = -r; }
        return r;
    }
    if (neg && !is_int_f(y)) { return nan_f32(); }
    var r = pow_pos(ax, y);
    if (neg && is_odd_f(y)) { r = -r; }
    return r;
}

// ax^y for finite ax > 0 and finite y != 0: 2^(y * log2 ax) with log2 ax = e + l, e the
// exponent (subnormals by their bits) and l = log2 of the significand in [sqrt(1/2), sqrt(2)),
// and y * e computed exactly by splitting y, so that the integer part of the exponent is exact.
fn pow_pos(ax: f32, y: f32) -> f32 {
    var b = bitcast<u32>(ax);
    var e = 0;
    if ((b >> 23u) == 0u) {
        b = bitcast<u32>(f32(b));
        e = -149;
    }
    e = e + i32(b >> 23u) - 127;
    var m = bitcast<f32>((b & 0x7fffffu) | 0x3f800000u);
    if (m > 1.4142135) {
        m = m * 0.5;
        e = e + 1;
    }
    let ef = f32(e);
    let l = log2(m);
    let t0 = y * (ef + l);
    if (t0 > 300.0) { return inf_f32(); }
    if (t0 < -300.0) { return 0.0; }
    let yh = bitcast<f32>(bitcast<u32>(y) & 0xfffff000u);
    let yl = y - yh;
    let a = yh * ef;
    let n = round(a);
    var f = (a - n) + yl * ef + y * l;
    let n2 = round(f);
    f = f - n2;
    let nt = i32(n + n2);
    let h = nt / 2;
    return ldexp(ldexp(exp2(f), h), nt - h);
}

//# atan2
// Uses atan_pos of unary.wgsl. C99 Annex F special values; else atan(|a| / |b|) moved to the quadrant of (b, a).
fn op_atan2(y: f32, x: f32) -> f32 {
    if (is_nan(x) || is_nan(y)) { return nan_f32(); }
    let neg_x = (bitcast<u32>(x) >> 31u) != 0u;
    var r: f32;
    if (is_zero(y)) {
        r = select(0.0, 3.141592653589793, neg_x);
    } else if (is_inf(y)) {
        if (is_inf(x)) {
            r = select(0.7853981633974483, 2.356194490192345, neg_x);
        } else {
            r = 1.5707963267948966;
        }
    } else if (is_zero(x)) {
        r = 1.5707963267948966;
    } else if (is_inf(x)) {
        r = select(0.0, 3.141592653589793, neg_x);
    } else {
        let t = atan_pos(abs(y) / abs(x));
        r = select(t, 3.141592653589793 - t, neg_x);
    }
    return select(r, -r, (bitcast<u32>(y) >> 31u) != 0u);
}
//# fmod_core
// The exact fmod of finite x and nonzero finite y, by long division of the significands (as
// C libraries do): the result is exact, with x's sign.
fn fmod_exact(x: f32, y: f32) -> f32 {
    let sx = bitcast<u32>(x) & 0x80000000u;
    let ax = bitcast<u32>(x) & 0x7fffffffu;
    let ay = bitcast<u32>(y) & 0x7fffffffu;
    if (ax < ay) { return x; }
    if (ax == ay) { return bitcast<f32>(sx); }
    var ex = i32(ax >> 23u);
    var ey = i32(ay >> 23u);
    var mx = (ax & 0x7fffffu) | 0x800000u;
    var my = (ay & 0x7fffffu) | 0x800000u;
    if (ex == 0) {
        mx = ax;
        ex = 1;
        while ((mx & 0x800000u) == 0u) { mx = mx << 1u; ex = ex - 1; }
    }
    if (ey == 0) {
        my = ay;
        ey = 1;
        while ((my & 0x800000u) == 0u) { my = my << 1u; ey = ey - 1; }
    }
    while (ex > ey) {
        if (mx >= my) {
            if (mx == my) { return bitcast<f32>(sx); }
            mx = mx - my;
        }
        mx = mx << 1u;
        ex = ex - 1;
    }
    if (mx >= my) {
        if (mx == my) { return bitcast<f32>(sx); }
        mx = mx - my;
    }
    while ((mx & 0x800000u) == 0u) { mx = mx << 1u; ex = ex - 1; }
    var bits: u32;
    if (ex > 0) {
        bits = (u32(ex) << 23u) | (mx & 0x7fffffu);
    } else {
        bits = mx >> u32(1 - ex);
    }
    return bitcast<f32>(bits | sx);
}
fn fmod_f(x: f32, y: f32) -> f32 {
    if (is_nan(x) || is_nan(y) || is_inf(x) || is_zero(y)) { return nan_f32(); }
    if (is_inf(y)) { return x; }
    return fmod_exact(x, y);
}
//# fmod uses fmod_core
fn op_fmod(a: f32, b: f32) -> f32 { return fmod_f(a, b); }
//# remainder uses fmod_core
// Python's floor-mod: a nonzero fmod moves to b's sign.
fn op_remainder(a: f32, b: f32) -> f32 {
    let r = fmod_f(a, b);
    if (is_nan(r) || is_zero(r)) { return r; }
    if (((bitcast<u32>(r) ^ bitcast<u32>(b)) >> 31u) != 0u) { return r + b; }
    return r;
}
//# logical_and
fn op_logical_and(a: f32, b: f32) -> bool { return !is_zero(a) && !is_zero(b); }
//# logical_or
fn op_logical_or(a: f32, b: f32) -> bool { return !is_zero(a) || !is_zero(b); }
//# logical_xor
fn op_logical_xor(a: f32, b: f32) -> bool { return !is_zero(a) != !is_zero(b); }

//# eq
fn op_eq(a: f32, b: f32) -> bool { return f_eq(a, b); }
//# ne
fn op_ne(a: f32, b: f32) -> bool { return !f_eq(a, b); }
//# lt
fn op_lt(a: f32, b: f32) -> bool { return f_lt(a, b); }
//# le
fn op_le(a: f32, b: f32) -> bool { return f_le(a, b); }
//# gt
fn op_gt(a: f32, b: f32) -> bool { return f_lt(b, a); }
//# ge
fn op_ge(a: f32, b: f32) -> bool { return f_le(b, a); }

//# int_add
fn op_add(a: $T, b: $T) -> $T { return a + b; }
//# int_sub
fn op_sub(a: $T, b: $T) -> $T { return a - b; }
//# int_mul
fn op_mul(a: $T, b: $T) -> $T { return a * b; }
//# int_div
// Truncates toward zero; x / 0 = 0 and MIN / -1 = MIN, without a trapping division.
fn op_div(a: $T, b: $T) -> $T {
    let zero = b == $T(0);
    let wraps = a == $TMIN && b == $T(-1);
    let q = a / select(b, $T(1), zero || wraps);
    return select(q, select(a, $T(0), zero), zero || wraps);
}
//# int_maximum
fn op_maximum(a: $T, b: $T) -> $T { return max(a, b); }
//# int_minimum
fn op_minimum(a: $T, b: $T) -> $T { return min(a, b); }
//# int_fmod
// Truncated; x % 0 = 0 and MIN % -1 = 0, without a trapping division.
fn op_fmod(a: $T, b: $T) -> $T {
    let skip = b == $T(0) || b == $T(-1);
    return select(a % select(b, $T(1), skip), $T(0), skip);
}
//# int_remainder
// Floor-mod: a nonzero truncated remainder moves to b's sign.
fn op_remainder(a: $T, b: $T) -> $T {
    let skip = b == $T(0) || b == $T(-1);
    let r = select(a % select(b, $T(1), skip), $T(0), skip);
    return select(r, r + b, r != $T(0) && ((r < $T(0)) != (b < $T(0))));
}
//# int_bitwise_and
fn op_bitwise_and(a: $T, b: $T) -> $T { return a & b; }
//# int_bitwise_or
fn op_bitwise_or(a: $T, b: $T) -> $T { return a | b; }
//# int_bitwise_xor
fn op_bitwise_xor(a: $T, b: $T) -> $T { return a ^ b; }
//# int_bitwise_left_shift
// Amounts outside [0, width) give 0; bits shifted out are lost.
fn op_bitwise_left_shift(a: $T, b: $T) -> $T {
    let ok = b >= $T(0) && b < $T($BITS);
    return select($T(0), a << u32(select($T(0), b, ok)), ok);
}
//# int_bitwise_right_shift
// Arithmetic; amounts outside [0, width) give the sign fill.
fn op_bitwise_right_shift(a: $T, b: $T) -> $T {
    let ok = b >= $T(0) && b < $T($BITS);
    return select(select($T(0), $T(-1), a < $T(0)), a >> u32(select($T(0), b, ok)), ok);
}
//# int_logical_and
fn op_logical_and(a: $T, b: $T) -> bool { return a != $T(0) && b != $T(0); }
//# int_logical_or
fn op_logical_or(a: $T, b: $T) -> bool { return a != $T(0) || b != $T(0); }
//# int_logical_xor
fn op_logical_xor(a: $T, b: $T) -> bool { return (a != $T(0)) != (b != $T(0)); }
//# int_eq
fn op_eq(a: $T, b: $T) -> bool { return a == b; }
//# int_ne
fn op_ne(a: $T, b: $T) -> bool { return a != b; }
//# int_lt
fn op_lt(a: $T, b: $T) -> bool { return a < b; }
//# int_le
fn op_le(a: $T, b: $T) -> bool { return a <= b; }
//# int_gt
fn op_gt(a: $T, b: $T) -> bool { return a > b; }
//# int_ge
fn op_ge(a: $T, b: $T) -> bool { return a >= b; }
