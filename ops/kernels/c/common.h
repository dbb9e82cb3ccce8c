/* anyaccel dialect C: what every kernel family shares, after the dialect's prelude.
 *
 * - Per dtype `D` (f32 f16 bf16 f64 i32 i64 u8 i8 bool): the storage type `st_D`, the compute type
 *   `ct_D` (float for the 16-bit floats, which are computed in f32), `ld_D(p, i)` and
 *   `sv_D(p, i, v)`. A kernel names its operands' dtypes with -D options such as `-DXT=f16` and
 *   reaches them through `CAT(ld_, XT)`.
 * - The conversions of `cast` (docs/ops.md): `cf_D` stores a float, `cd_D` a double and `ci_D` an
 *   i64 into a D element, with one rounding to nearest even for floats, truncation and
 *   saturation (NaN giving 0) from floats to integers, and wrapping between integers.
 * - `Lay`: the layouts of up to four operands over one logical shape, passed by value, and
 *   `lay_at`, the element offsets of a row-major linear index (RANK, NOPS from -D options).
 * - Work-group reductions over local memory.
 *
 * 16-bit floats are converted by bit work here (f16 also by the prelude where the dialect has
 * instructions for it). f64 parts need ANYACCEL_FP64, which the prelude defines where the device
 * has doubles.
 */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

#define I64_MAX ((i64)((((u64)1) << 63) - 1u))
#define I64_MIN ((i64)(((u64)1) << 63))
#define I32_MIN ((i32)(-2147483647 - 1))
#define F32_NAN bits_f32(0x7fc00000u)
#define F32_INF bits_f32(0x7f800000u)

/* Sums of f32 values are kept in units of 2^-64 (SCALE_DOWN), and scaled back once at the end
 * (SCALE_UP): every finite f32 value fits, so a partial sum overflows only when the result
 * itself does, as in the f64 reference (2 * FLT_MAX - FLT_MAX is FLT_MAX, not NaN). Values
 * below 2^-62 lose bits to subnormals there, far below any tolerance of an accumulating op. */
#define SCALE_DOWN 5.42101086242752217e-20f /* 2^-64 */
#define SCALE_UP 1.8446744073709551616e19f  /* 2^64 */

DEVICE int nan_f(float x) { return x != x; }
/* maximum / minimum of docs/ops.md: NaN propagates. */
DEVICE float max_nan(float a, float b) { return (nan_f(a) || nan_f(b)) ? F32_NAN : (a > b ? a : b); }
DEVICE float min_nan(float a, float b) { return (nan_f(a) || nan_f(b)) ? F32_NAN : (a < b ? a : b); }

/* ---- 16-bit floats by bit work ------------------------------------------------------------ */

/* f16 bits to f32, exact. */
DEVICE float f16_to_f32_soft(u16 h) {
    u32 sign = ((u32)h & 0x8000u) << 16;
    u32 e = ((u32)h >> 10) & 0x1fu;
    u32 m = (u32)h & 0x3ffu;
    if (e == 0x1fu) return bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0u) {
        float v = (float)m * 5.9604644775390625e-8f; /* m * 2^-24, exact */
        return sign ? -v : v;
    }
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* f32 to f16 bits, rounded to nearest even; overflow gives infinity, NaN stays NaN. */
DEVICE u16 f32_to_f16_soft(float f) {
    u32 x = f32_bits(f);
    u32 sign = (x >> 16) & 0x8000u;
    u32 ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (u16)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) return (u16)(sign | 0x7c00u); /* >= 65520 rounds to infinity */
    if (ax >= 0x38800000u) {                             /* normal: >= 2^-14 */
        u32 r = ax - 0x38000000u;                        /* rebias the exponent by 112 */
        u32 mant = r >> 13;
        u32 rem = r & 0x1fffu;
        mant += (rem > 0x1000u || (rem == 0x1000u && (mant & 1u))) ? 1u : 0u;
        return (u16)(sign | mant);
    }
    if (ax < 0x33000000u) return (u16)sign; /* below 2^-25: rounds to zero */
    {
        u32 e = ax >> 23;
        u32 m = (ax & 0x7fffffu) | 0x800000u;
        u32 shift = 126u - e; /* 14..24: value in units of 2^-24 is m >> shift */
        u32 mant = m >> shift;
        u32 rem = m & ((1u << shift) - 1u);
        u32 half_ = 1u << (shift - 1u);
        mant += (rem > half_ || (rem == half_ && (mant & 1u))) ? 1u : 0u;
        return (u16)(sign | mant);
    }
}

/* bf16 bits to f32, exact. */
DEVICE float bf16_to_f32(u16 h) { return bits_f32((u32)h << 16); }

/* f32 to bf16 bits, rounded to nearest even; overflow gives infinity, NaN stays NaN. */
DEVICE u16 f32_to_bf16(float f) {
    u32 x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (u16)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (u16)(x >> 16);
}

#ifndef ANYACCEL_HAS_HALF_IO
typedef u16 st_f16;
DEVICE float ld_f16(GLOBAL const u16* p, i64 i) { return f16_to_f32_soft(p[i]); }
DEVICE void sv_f16(GLOBAL u16* p, i64 i, float v) { p[i] = f32_to_f16_soft(v); }
#endif

/* ---- Storage, compute type, load and store per dtype -------------------------------------- */

typedef float st_f32;
typedef float ct_f32;
DEVICE float ld_f32(GLOBAL const float* p, i64 i) { return p[i]; }
DEVICE void sv_f32(GLOBAL float* p, i64 i, float v) { p[i] = v; }

typedef float ct_f16;

typedef u16 st_bf16;
typedef float ct_bf16;
DEVICE float ld_bf16(GLOBAL const u16* p, i64 i) { return bf16_to_f32(p[i]); }
DEVICE void sv_bf16(GLOBAL u16* p, i64 i, float v) { p[i] = f32_to_bf16(v); }

typedef i32 st_i32;
typedef i32 ct_i32;
typedef u32 ut_i32;
DEVICE i32 ld_i32(GLOBAL const i32* p, i64 i) { return p[i]; }
DEVICE void sv_i32(GLOBAL i32* p, i64 i, i32 v) { p[i] = v; }

typedef i64 st_i64;
typedef i64 ct_i64;
typedef u64 ut_i64;
DEVICE i64 ld_i64(GLOBAL const i64* p, i64 i) { return p[i]; }
DEVICE void sv_i64(GLOBAL i64* p, i64 i, i64 v) { p[i] = v; }

typedef u8 st_u8;
typedef i32 ct_u8;
DEVICE i32 ld_u8(GLOBAL const u8* p, i64 i) { return (i32)p[i]; }
DEVICE void sv_u8(GLOBAL u8* p, i64 i, i32 v) { p[i] = (u8)v; }

typedef i8 st_i8;
typedef i32 ct_i8;
DEVICE i32 ld_i8(GLOBAL const i8* p, i64 i) { return (i32)p[i]; }
DEVICE void sv_i8(GLOBAL i8* p, i64 i, i32 v) { p[i] = (i8)(u8)(u32)v; }

typedef u8 st_bool;
typedef i32 ct_bool;
DEVICE i32 ld_bool(GLOBAL const u8* p, i64 i) { return p[i] != 0 ? 1 : 0; }
DEVICE void sv_bool(GLOBAL u8* p, i64 i, i32 v) { p[i] = v != 0 ? (u8)1 : (u8)0; }

#ifdef ANYACCEL_FP64
typedef double st_f64;
typedef double ct_f64;
DEVICE double ld_f64(GLOBAL const double* p, i64 i) { return p[i]; }
DEVICE void sv_f64(GLOBAL double* p, i64 i, double v) { p[i] = v; }
#endif

/* Raw elements by size, for ops that move values unchanged. */
#if defined(ES) && ES == 1
typedef u8 elem_t;
#elif defined(ES) && ES == 2
typedef u16 elem_t;
#elif defined(ES) && ES == 4
typedef u32 elem_t;
#elif defined(ES) && ES == 8
typedef u64 elem_t;
#endif

/* ---- The conversions of cast --------------------------------------------------------------- */

/* A u64 rounded to a float with round-to-odd: it keeps enough bits (24) that one more rounding
 * to nearest even, to f16 or bf16, rounds the exact integer once. */
DEVICE float u64_to_f32_odd(u64 m) {
    if (m < ((u64)1 << 24)) return (float)m;
    {
        i32 drop = 40 - CLZ64(m); /* bits below the top 24 */
        u64 top = m >> drop;
        u64 lost = m & ((((u64)1) << drop) - 1u);
        top |= (lost != 0u) ? 1u : 0u;
        return ldexpf((float)top, drop);
    }
}

DEVICE float i64_to_f32_odd(i64 v) {
    u64 m = v < 0 ? (u64)0 - (u64)v : (u64)v;
    float f = u64_to_f32_odd(m);
    return v < 0 ? -f : f;
}

/* float -> integer: truncate toward zero, saturate, NaN gives 0. */
DEVICE i32 f32_to_i32_sat(float v) {
    if (nan_f(v)) return 0;
    if (v >= 2147483648.0f) return 2147483647;
    if (v <= -2147483648.0f) return I32_MIN;
    return (i32)v;
}
DEVICE i64 f32_to_i64_sat(float v) {
    if (nan_f(v)) return 0;
    if (v >= 9223372036854775808.0f) return I64_MAX;
    if (v <= -9223372036854775808.0f) return I64_MIN;
    return (i64)v;
}
DEVICE i32 f32_to_u8_sat(float v) {
    if (nan_f(v) || v <= 0.0f) return 0;
    if (v >= 255.0f) return 255;
    return (i32)v;
}
DEVICE i32 f32_to_i8_sat(float v) {
    if (nan_f(v)) return 0;
    if (v >= 127.0f) return 127;
    if (v <= -128.0f) return -128;
    return (i32)v;
}

DEVICE void cf_f32(GLOBAL float* p, i64 i, float v) { p[i] = v; }
DEVICE void cf_f16(GLOBAL st_f16* p, i64 i, float v) { sv_f16(p, i, v); }
DEVICE void cf_bf16(GLOBAL u16* p, i64 i, float v) { sv_bf16(p, i, v); }
DEVICE void cf_i32(GLOBAL i32* p, i64 i, float v) { p[i] = f32_to_i32_sat(v); }
DEVICE void cf_i64(GLOBAL i64* p, i64 i, float v) { p[i] = f32_to_i64_sat(v); }
DEVICE void cf_u8(GLOBAL u8* p, i64 i, float v) { p[i] = (u8)f32_to_u8_sat(v); }
DEVICE void cf_i8(GLOBAL i8* p, i64 i, float v) { p[i] = (i8)f32_to_i8_sat(v); }
DEVICE void cf_bool(GLOBAL u8* p, i64 i, float v) { p[i] = v != 0.0f ? (u8)1 : (u8)0; }

DEVICE void ci_f32(GLOBAL float* p, i64 i, i64 v) { p[i] = (float)v; }
DEVICE void ci_f16(GLOBAL st_f16* p, i64 i, i64 v) { sv_f16(p, i, i64_to_f32_odd(v)); }
DEVICE void ci_bf16(GLOBAL u16* p, i64 i, i64 v) { sv_bf16(p, i, i64_to_f32_odd(v)); }
DEVICE void ci_i32(GLOBAL i32* p, i64 i, i64 v) { p[i] = (i32)(u32)(u64)v; }
DEVICE void ci_i64(GLOBAL i64* p, i64 i, i64 v) { p[i] = v; }
DEVICE void ci_u8(GLOBAL u8* p, i64 i, i64 v) { p[i] = (u8)(u64)v; }
DEVICE void ci_i8(GLOBAL i8* p, i64 i, i64 v) { p[i] = (i8)(u8)(u64)v; }
DEVICE void ci_bool(GLOBAL u8* p, i64 i, i64 v) { p[i] = v != 0 ? (u8)1 : (u8)0; }

#ifdef ANYACCEL_FP64
/* A double rounded to a float with round-to-odd (see u64_to_f32_odd). */
DEVICE float f64_to_f32_odd(double d) {
    float f = (float)d;
    if (d != d || (double)f == d) return f;
    {
        u32 b = f32_bits(f);
        if ((b & 1u) == 0u) {
            /* Inexact with an even last bit: the odd neighbour toward d. */
            double af = (double)f < 0.0 ? -(double)f : (double)f;
            double ad = d < 0.0 ? -d : d;
            b = af > ad ? b - 1u : b + 1u;
        }
        return bits_f32(b);
    }
}

DEVICE i32 f64_to_i32_sat(double v) {
    if (v != v) return 0;
    if (v >= 2147483648.0) return 2147483647;
    if (v <= -2147483648.0) return I32_MIN;
    return (i32)v;
}
DEVICE i64 f64_to_i64_sat(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775808.0) return I64_MAX;
    if (v <= -9223372036854775808.0) return I64_MIN;
    return (i64)v;
}
DEVICE i32 f64_to_u8_sat(double v) {
    if (v != v || v <= 0.0) return 0;
    if (v >= 255.0) return 255;
    return (i32)v;
}
DEVICE i32 f64_to_i8_sat(double v) {
    if (v != v) return 0;
    if (v >= 127.0) return 127;
    if (v <= -128.0) return -128;
    return (i32)v;
}

DEVICE void cf_f64(GLOBAL double* p, i64 i, float v) { p[i] = (double)v; }
DEVICE void ci_f64(GLOBAL double* p, i64 i, i64 v) { p[i] = (double)v; }
DEVICE void cd_f32(GLOBAL float* p, i64 i, double v) { p[i] = (float)v; }
DEVICE void cd_f16(GLOBAL st_f16* p, i64 i, double v) { sv_f16(p, i, f64_to_f32_odd(v)); }
DEVICE void cd_bf16(GLOBAL u16* p, i64 i, double v) { sv_bf16(p, i, f64_to_f32_odd(v)); }
DEVICE void cd_f64(GLOBAL double* p, i64 i, double v) { p[i] = v; }
DEVICE void cd_i32(GLOBAL i32* p, i64 i, double v) { p[i] = f64_to_i32_sat(v); }
DEVICE void cd_i64(GLOBAL i64* p, i64 i, double v) { p[i] = f64_to_i64_sat(v); }
DEVICE void cd_u8(GLOBAL u8* p, i64 i, double v) { p[i] = (u8)f64_to_u8_sat(v); }
DEVICE void cd_i8(GLOBAL i8* p, i64 i, double v) { p[i] = (i8)f64_to_i8_sat(v); }
DEVICE void cd_bool(GLOBAL u8* p, i64 i, double v) { p[i] = v != 0.0 ? (u8)1 : (u8)0; }
#endif

/* Operand slots named by -D options: X (input), O (output). */
#ifdef XT
#define X_ST CAT(st_, XT)
#define X_CT CAT(ct_, XT)
#define X_UT CAT(ut_, XT)
#define X_LD CAT(ld_, XT)
#define X_SV CAT(sv_, XT)
#endif
#ifdef OT
#define O_ST CAT(st_, OT)
#define O_SV CAT(sv_, OT)
#endif

/* ---- Layouts ------------------------------------------------------------------------------- */

#ifndef MAXR
#define MAXR 8

/* A grid-stride loop over the linear indices 0 .. n - 1. */
#define FOR_EACH_INDEX(i, n) for (i64 i = GLOBAL_ID(0); i < (n); i += GLOBAL_SIZE(0))
#endif

/* Up to four operands over one logical shape: operand k's element at index (i0, i1, ...) lies
 * at off[k] + sum(i_d * st[k][d]) elements from the start of its buffer. Zero strides
 * broadcast. The host writes the same struct (ops/src/clang/mod.rs, `Lay`). */
#if defined(LAY_EXACT) && defined(RANK) && defined(NOPS)
/* A kernel compiled with LAY_EXACT takes exactly RANK dimensions (at least one) and NOPS
 * operands: the host passes the smaller struct (`Lay::arg_exact`), fewer bytes a launch. */
#define LAY_R (RANK > 0 ? RANK : 1)
#define LAY_O NOPS
#else
#define LAY_R MAXR
#define LAY_O 4
#endif
typedef struct {
    i64 shape[LAY_R];
    i64 st[LAY_O][LAY_R];
    i64 off[LAY_O];
} Lay;

/* o[k] = element offset of operand k (k < nops) at the row-major linear index i of the first
 * `rank` dimensions of L's shape. Callers pass constants, so that the loops unroll. */
DEVICE void lay_offsets(const Lay* L, int rank, int nops, i64 i, i64* o) {
    for (int k = 0; k < nops; ++k) o[k] = L->off[k];
    if (rank == 1) {
        for (int k = 0; k < nops; ++k) o[k] += i * L->st[k][0];
        return;
    }
    for (int d = rank - 1; d >= 0; --d) {
        i64 s = L->shape[d];
        i64 q = i / s;
        i64 r = i - q * s;
        i = q;
        for (int k = 0; k < nops; ++k) o[k] += r * L->st[k][d];
    }
}

#if defined(RANK) && defined(NOPS)
#define lay_at(L, i, o) lay_offsets((L), RANK, NOPS, (i), (o))
#endif

/* ---- Work-group reductions over local memory (WG items, a power of two) -------------------- */

#ifdef WG
/* The sum of v over the work-group (every item gets it), through buf[WG]. */
#define DEFINE_GROUP_SUM(name, T)                                                                \
    DEVICE T name(LOCAL_PTR T* buf, T v) {                                                       \
        int t = LOCAL_ID(0);                                                                     \
        buf[t] = v;                                                                              \
        BARRIER();                                                                               \
        for (int s = WG / 2; s > 0; s >>= 1) {                                                   \
            if (t < s) buf[t] += buf[t + s];                                                     \
            BARRIER();                                                                           \
        }                                                                                        \
        v = buf[0];                                                                              \
        BARRIER();                                                                               \
        return v;                                                                                \
    }
DEFINE_GROUP_SUM(group_sum_f32, float)
#ifdef ANYACCEL_FP64
DEFINE_GROUP_SUM(group_sum_f64, double)
#endif

DEVICE float group_max_f32(LOCAL_PTR float* buf, float v) {
    int t = LOCAL_ID(0);
    buf[t] = v;
    BARRIER();
    for (int s = WG / 2; s > 0; s >>= 1) {
        if (t < s) buf[t] = max_nan(buf[t], buf[t + s]);
        BARRIER();
    }
    v = buf[0];
    BARRIER();
    return v;
}
#endif
