/*
 * Element loads and stores for every dtype of docs/ops.md, with 16-bit floats converted by bit
 * work (no compiler support for _Float16 or bfloat16 is assumed), and the cast rules of
 * docs/ops.md. Every float result is rounded once, to nearest with ties to even, from the exact
 * double: that is what the conformance suite's f64 reference does.
 */

#include <math.h>
#include <string.h>

#include "ref.h"

RefDType ref_dtype_of(AnyaccelDataType t) {
    if (t.lanes != 1) return 0;
    switch (t.code) {
    case ANYACCEL_DL_FLOAT:
        return t.bits == 32 ? ANYACCEL_DTYPE_F32
             : t.bits == 16 ? ANYACCEL_DTYPE_F16
             : t.bits == 64 ? ANYACCEL_DTYPE_F64
                            : 0;
    case ANYACCEL_DL_BFLOAT: return t.bits == 16 ? ANYACCEL_DTYPE_BF16 : 0;
    case ANYACCEL_DL_INT:
        return t.bits == 32 ? ANYACCEL_DTYPE_I32
             : t.bits == 64 ? ANYACCEL_DTYPE_I64
             : t.bits == 8  ? ANYACCEL_DTYPE_I8
                            : 0;
    case ANYACCEL_DL_UINT: return t.bits == 8 ? ANYACCEL_DTYPE_U8 : 0;
    case ANYACCEL_DL_BOOL: return t.bits == 8 ? ANYACCEL_DTYPE_BOOL : 0;
    default: return 0;
    }
}

RefDType ref_dtype_named(const char *name) {
    static const char *const names[] = {"", "f32", "f16", "bf16", "f64", "i32", "i64", "u8", "bool", "i8"};
    if (!name) return 0;
    for (int d = 1; d <= 9; d++)
        if (strcmp(name, names[d]) == 0) return d;
    return 0;
}

const char *ref_dtype_name(RefDType d) {
    static const char *const names[] = {"(none)", "f32", "f16", "bf16", "f64", "i32", "i64", "u8", "bool", "i8"};
    return d >= 1 && d <= 9 ? names[d] : names[0];
}

size_t ref_dtype_size(RefDType d) {
    switch (d) {
    case ANYACCEL_DTYPE_F32:
    case ANYACCEL_DTYPE_I32: return 4;
    case ANYACCEL_DTYPE_F16:
    case ANYACCEL_DTYPE_BF16: return 2;
    case ANYACCEL_DTYPE_F64:
    case ANYACCEL_DTYPE_I64: return 8;
    case ANYACCEL_DTYPE_U8:
    case ANYACCEL_DTYPE_I8:
    case ANYACCEL_DTYPE_BOOL: return 1;
    default: return 0;
    }
}

int ref_is_float(RefDType d) {
    return d == ANYACCEL_DTYPE_F32 || d == ANYACCEL_DTYPE_F16 || d == ANYACCEL_DTYPE_BF16 ||
           d == ANYACCEL_DTYPE_F64;
}

/* ---- 16-bit floats -------------------------------------------------------------------------- */

static double f16_to_double(uint16_t h) {
    int sign = h >> 15;
    int exp = (h >> 10) & 0x1f;
    int mant = h & 0x3ff;
    double v;
    if (exp == 0)
        v = ldexp((double)mant, -24);
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexp((double)(mant | 0x400), exp - 25);
    return sign ? -v : v;
}

static double bf16_to_double(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return (double)f;
}

/* `x` rounded once to a binary format of `precision` significand bits whose normal numbers have
 * exponents emin..emax: ties to even, overflow to +-Inf, underflow to subnormals or zero. */
static double round_to_format(double x, int precision, int emin, int emax) {
    if (!isfinite(x) || x == 0.0) return x;
    double a = fabs(x);
    int e;
    frexp(a, &e); /* a = m * 2^e with m in [0.5, 1): a lies in [2^(e-1), 2^e) */
    e -= 1;
    int q = (e > emin ? e : emin) - (precision - 1);
    /* Both scalings are exact; nearbyint rounds to nearest even in the default mode. */
    double r = ldexp(nearbyint(ldexp(a, -q)), q);
    double max_finite = ldexp(2.0 - ldexp(1.0, 1 - precision), emax);
    if (r > max_finite) r = INFINITY;
    return copysign(r, x);
}

static uint16_t double_to_f16(double x) {
    double r = round_to_format(x, 11, -14, 15);
    uint16_t sign = signbit(r) ? 0x8000 : 0;
    if (isnan(r)) return 0x7e00 | sign;
    double a = fabs(r);
    if (isinf(a)) return 0x7c00 | sign;
    if (a == 0.0) return sign;
    if (a < ldexp(1.0, -14)) return sign | (uint16_t)ldexp(a, 24); /* subnormal: exact */
    int e;
    frexp(a, &e);
    e -= 1; /* a in [2^e, 2^(e+1)) */
    uint16_t mant = (uint16_t)(ldexp(a, 10 - e) - 1024.0);
    return sign | (uint16_t)((e + 15) << 10) | mant;
}

static uint16_t double_to_bf16(double x) {
    double r = round_to_format(x, 8, -126, 127);
    if (isnan(r)) return signbit(r) ? 0xffc0 : 0x7fc0;
    /* r is exactly a float whose low 16 bits are zero (bf16 is the top half of a binary32). */
    float f = (float)r;
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return (uint16_t)(bits >> 16);
}

/* `x` rounded to `precision` significant bits, ties to even, as an exact double. */
static double round_int_to_precision(int64_t x, int precision) {
    uint64_t mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    int bits = 0;
    for (uint64_t m = mag; m; m >>= 1) bits++;
    if (bits <= precision) return (double)x;
    int shift = bits - precision;
    uint64_t kept = mag >> shift;
    uint64_t dropped = mag & (((uint64_t)1 << shift) - 1);
    uint64_t half = (uint64_t)1 << (shift - 1);
    if (dropped > half || (dropped == half && (kept & 1))) kept++;
    double v = ldexp((double)kept, shift);
    return x < 0 ? -v : v;
}

/* ---- Loads and stores ---------------------------------------------------------------------- */

double ref_load_f(RefDType d, const unsigned char *p) {
    switch (d) {
    case ANYACCEL_DTYPE_F32: {
        float f;
        memcpy(&f, p, 4);
        return (double)f;
    }
    case ANYACCEL_DTYPE_F64: {
        double f;
        memcpy(&f, p, 8);
        return f;
    }
    case ANYACCEL_DTYPE_F16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return f16_to_double(h);
    }
    case ANYACCEL_DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return bf16_to_double(h);
    }
    default: return (double)ref_load_i(d, p);
    }
}

int64_t ref_load_i(RefDType d, const unsigned char *p) {
    switch (d) {
    case ANYACCEL_DTYPE_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case ANYACCEL_DTYPE_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    case ANYACCEL_DTYPE_U8: return p[0];
    case ANYACCEL_DTYPE_I8: return (int8_t)p[0]; /* sign-extended */
    case ANYACCEL_DTYPE_BOOL: return p[0] != 0;
    default: return (int64_t)ref_load_f(d, p);
    }
}

double ref_load_as_double(RefDType d, const unsigned char *p) {
    return ref_is_float(d) ? ref_load_f(d, p) : (double)ref_load_i(d, p);
}

void ref_store_f(RefDType d, unsigned char *p, double v) {
    switch (d) {
    case ANYACCEL_DTYPE_F32: {
        float f = (float)v; /* one rounding, to nearest even */
        memcpy(p, &f, 4);
        return;
    }
    case ANYACCEL_DTYPE_F64: memcpy(p, &v, 8); return;
    case ANYACCEL_DTYPE_F16: {
        uint16_t h = double_to_f16(v);
        memcpy(p, &h, 2);
        return;
    }
    case ANYACCEL_DTYPE_BF16: {
        uint16_t h = double_to_bf16(v);
        memcpy(p, &h, 2);
        return;
    }
    default: ref_store_cast_f(d, p, v); return;
    }
}

void ref_store_i(RefDType d, unsigned char *p, int64_t v) {
    switch (d) {
    case ANYACCEL_DTYPE_I32: {
        int32_t w = (int32_t)(uint32_t)(uint64_t)v; /* two's complement wrap */
        memcpy(p, &w, 4);
        return;
    }
    case ANYACCEL_DTYPE_I64: memcpy(p, &v, 8); return;
    case ANYACCEL_DTYPE_U8:
    case ANYACCEL_DTYPE_I8: p[0] = (unsigned char)((uint64_t)v & 0xff); return; /* the low 8 bits */
    case ANYACCEL_DTYPE_BOOL: p[0] = v != 0; return;
    default: ref_store_cast_i(d, p, v); return;
    }
}

/* Float to integer: toward zero, saturated, NaN to 0. */
static int64_t float_to_int(double v, int64_t lo, int64_t hi) {
    if (isnan(v)) return 0;
    v = trunc(v);
    if (v <= (double)lo) return lo;
    /* (double)INT64_MAX is 2^63, which is above every int64: compare with >=. */
    if (v >= (double)hi) return hi;
    return (int64_t)v;
}

void ref_store_cast_f(RefDType d, unsigned char *p, double v) {
    switch (d) {
    case ANYACCEL_DTYPE_I32: ref_store_i(d, p, float_to_int(v, INT32_MIN, INT32_MAX)); return;
    case ANYACCEL_DTYPE_I64: ref_store_i(d, p, float_to_int(v, INT64_MIN, INT64_MAX)); return;
    case ANYACCEL_DTYPE_U8: ref_store_i(d, p, float_to_int(v, 0, 255)); return;
    case ANYACCEL_DTYPE_I8: ref_store_i(d, p, float_to_int(v, -128, 127)); return;
    case ANYACCEL_DTYPE_BOOL: p[0] = v != 0.0 || isnan(v); return;
    default: ref_store_f(d, p, v); return;
    }
}

void ref_store_cast_i(RefDType d, unsigned char *p, int64_t v) {
    switch (d) {
    case ANYACCEL_DTYPE_F32: {
        float f = (float)v; /* one rounding from the exact integer */
        memcpy(p, &f, 4);
        return;
    }
    case ANYACCEL_DTYPE_F64: {
        double f = (double)v;
        memcpy(p, &f, 8);
        return;
    }
    case ANYACCEL_DTYPE_F16: ref_store_f(d, p, round_int_to_precision(v, 11)); return;
    case ANYACCEL_DTYPE_BF16: ref_store_f(d, p, round_int_to_precision(v, 8)); return;
    default: ref_store_i(d, p, v); return;
    }
}
