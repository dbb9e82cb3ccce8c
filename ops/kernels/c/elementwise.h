/* Elementwise kernels: unary and binary ops, comparisons, where, copy, cast, fill and arange.
 *
 * Every kernel walks the row-major linear indices 0..n of the output's shape in a grid-stride
 * loop and finds each operand's element through the `Lay` argument (operand 0 is the output).
 * Options: XT (input dtype), OT (output dtype), X_FLOAT (1 for a float input), X_BOOL (1 for a
 * bool input), X_BITS (the input's width in bits), OP_<NAME>, RANK, NOPS, ES (element size of
 * raw moves).
 */

/* ---- Unary ---------------------------------------------------------------------------------- */
#ifdef EW_UNARY
#if X_FLOAT
DEVICE float sigmoid_f(float v) { return 1.0f / (1.0f + expf(-v)); }

/* tanh, exactly +-1 where the result rounds there (|v| > 9.01): some libraries (PoCL's) return
 * 1 - 2^-24 for large arguments, which makes gelu(-Inf) -Inf instead of NaN. */
DEVICE float tanh_f(float v) { return fabsf(v) >= 9.5f ? (v > 0.0f ? 1.0f : -1.0f) : tanhf(v); }

/* lo and hi: clamp's bounds; softplus's beta and threshold; leaky_relu's slope and elu's alpha
 * in lo. */
DEVICE float unary_op(float v, float lo, float hi) {
#if defined(OP_NEG)
    return -v;
#elif defined(OP_ABS)
    return fabsf(v);
#elif defined(OP_RELU)
    return v < 0.0f ? 0.0f : v;
#elif defined(OP_EXP)
    return expf(v);
#elif defined(OP_LOG)
    return logf(v);
#elif defined(OP_SQRT)
    return sqrtf(v);
#elif defined(OP_RSQRT)
    return 1.0f / sqrtf(v);
#elif defined(OP_SIN)
    return sinf(v);
#elif defined(OP_COS)
    return cosf(v);
#elif defined(OP_TANH)
    return tanh_f(v);
#elif defined(OP_SIGMOID)
    return sigmoid_f(v);
#elif defined(OP_SILU)
    return v * sigmoid_f(v);
#elif defined(OP_ERF)
    return erff(v);
#elif defined(OP_FLOOR)
    return floorf(v);
#elif defined(OP_CEIL)
    return ceilf(v);
#elif defined(OP_ROUND)
    return rintf(v); /* the default rounding mode: to nearest, halves to even */
#elif defined(OP_TRUNC)
    return truncf(v);
#elif defined(OP_SIGN)
    return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : (v != v ? v : 0.0f));
#elif defined(OP_RECIPROCAL)
    return 1.0f / v;
#elif defined(OP_LOG1P)
    return log1pf(v);
#elif defined(OP_EXPM1)
    return expm1f(v);
#elif defined(OP_TAN)
    return tanf(v);
#elif defined(OP_ATAN)
    return atanf(v);
#elif defined(OP_ASIN)
    return asinf(v);
#elif defined(OP_ACOS)
    return acosf(v);
#elif defined(OP_SINH)
    return sinhf(v);
#elif defined(OP_COSH)
    return coshf(v);
#elif defined(OP_ASINH)
    return asinhf(v);
#elif defined(OP_ACOSH)
    return acoshf(v);
#elif defined(OP_ATANH)
    return atanhf(v);
#elif defined(OP_HARDSWISH)
    float t = v + 3.0f; /* NaN stays NaN */
    t = t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t);
    return v * (t / 6.0f); /* x * t would overflow near the largest float */
#elif defined(OP_SOFTPLUS)
    /* log1p(e^t) as max(t, 0) + log1p(e^-|t|): never overflows. */
    float t = v * lo;
    return t > hi ? v : ((t > 0.0f ? t : 0.0f) + log1pf(expf(-fabsf(t)))) / lo;
#elif defined(OP_LEAKY_RELU)
    return v > 0.0f ? v : v * lo;
#elif defined(OP_ELU)
    return v > 0.0f ? v : lo * expm1f(v);
#elif defined(OP_GELU_TANH)
    return 0.5f * v * (1.0f + tanh_f(0.7978845608028654f * (v + 0.044715f * v * v * v)));
#elif defined(OP_GELU)
    return v * 0.5f * (1.0f + erff(v * 0.7071067811865476f));
#elif defined(OP_CLAMP)
    return min_nan(max_nan(v, lo), hi);
#else
#error "unary: no OP_ option"
#endif
}
#else
DEVICE X_CT unary_op(X_CT v, i64 lo, i64 hi) {
#if defined(OP_NEG)
    return (X_CT)((X_UT)0 - (X_UT)v);
#elif defined(OP_ABS)
    return v < 0 ? (X_CT)((X_UT)0 - (X_UT)v) : v;
#elif defined(OP_RELU)
    return v < 0 ? (X_CT)0 : v;
#elif defined(OP_SIGN)
    return (X_CT)((v > 0) - (v < 0));
#elif defined(OP_BITWISE_NOT) && X_BOOL
    return (X_CT)(v == 0);
#elif defined(OP_BITWISE_NOT)
    return (X_CT)~v; /* u8: stored as 255 - v */
#elif defined(OP_CLAMP)
    i64 w = (i64)v;
    w = w < lo ? lo : w;
    w = w > hi ? hi : w;
    return (X_CT)w;
#else
#error "unary: no integer form of this OP_ option"
#endif
}
#endif

KERNEL void ew_unary(GLOBAL X_ST* out, GLOBAL const X_ST* x, const Lay L, const i64 n,
                     const float flo, const float fhi, const i64 ilo, const i64 ihi) {
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
#if X_FLOAT
        X_SV(out, o[0], unary_op(X_LD(x, o[1]), flo, fhi));
#else
        X_SV(out, o[0], unary_op(X_LD(x, o[1]), ilo, ihi));
#endif
    }
}
#endif

/* ---- Predicates: bool of one value of any dtype ------------------------------------------- */
#ifdef EW_PREDICATE
DEVICE i32 predicate_op(X_CT v) {
#if defined(OP_LOGICAL_NOT)
    return v == 0;
#elif X_FLOAT
    u32 e = f32_bits(v) & 0x7fffffffu;
#if defined(OP_ISNAN)
    return e > 0x7f800000u;
#elif defined(OP_ISINF)
    return e == 0x7f800000u;
#elif defined(OP_ISFINITE)
    return e < 0x7f800000u;
#else
#error "predicate: no OP_ option"
#endif
#else
#if defined(OP_ISNAN) || defined(OP_ISINF)
    return 0;
#elif defined(OP_ISFINITE)
    return 1;
#else
#error "predicate: no OP_ option"
#endif
#endif
}

KERNEL void ew_predicate(GLOBAL u8* out, GLOBAL const X_ST* x, const Lay L, const i64 n) {
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
        out[o[0]] = predicate_op(X_LD(x, o[1])) ? (u8)1 : (u8)0;
    }
}
#endif

/* ---- Binary and comparisons ---------------------------------------------------------------- */
#ifdef EW_BINARY
#if defined(OP_EQ) || defined(OP_NE) || defined(OP_LT) || defined(OP_LE) || defined(OP_GT) || \
    defined(OP_GE) || defined(OP_LOGICAL_AND) || defined(OP_LOGICAL_OR) ||                   \
    defined(OP_LOGICAL_XOR)
#define IS_COMPARE 1
DEVICE i32 binary_op(X_CT a, X_CT b) {
#if defined(OP_LOGICAL_AND)
    return a != 0 && b != 0; /* NaN is true */
#elif defined(OP_LOGICAL_OR)
    return a != 0 || b != 0;
#elif defined(OP_LOGICAL_XOR)
    return (a != 0) != (b != 0);
#elif defined(OP_EQ)
    return a == b;
#elif defined(OP_NE)
    return a != b;
#elif defined(OP_LT)
    return a < b;
#elif defined(OP_LE)
    return a <= b;
#elif defined(OP_GT)
    return a > b;
#else
    return a >= b;
#endif
}
#elif X_FLOAT
DEVICE float binary_op(float a, float b) {
#if defined(OP_ADD)
    return a + b;
#elif defined(OP_SUB)
    return a - b;
#elif defined(OP_MUL)
    return a * b;
#elif defined(OP_DIV)
    return a / b;
#elif defined(OP_MAXIMUM)
    return max_nan(a, b);
#elif defined(OP_MINIMUM)
    return min_nan(a, b);
#elif defined(OP_POW)
    return powf(a, b);
#elif defined(OP_ATAN2)
    return atan2f(a, b);
#elif defined(OP_FMOD)
    return fmodf(a, b);
#elif defined(OP_REMAINDER)
    /* fmod is exact; a nonzero result moves to b's sign (Python's floor-mod). */
    float r = fmodf(a, b);
    return (r != 0.0f && ((r < 0.0f) != (b < 0.0f))) ? r + b : r;
#else
#error "binary: no OP_ option"
#endif
}
#else
DEVICE X_CT binary_op(X_CT a, X_CT b) {
#if defined(OP_ADD)
    return (X_CT)((X_UT)a + (X_UT)b);
#elif defined(OP_SUB)
    return (X_CT)((X_UT)a - (X_UT)b);
#elif defined(OP_MUL)
    return (X_CT)((X_UT)a * (X_UT)b);
#elif defined(OP_DIV)
    /* x / 0 = 0; MIN / -1 wraps to MIN (computed as a negation, which does not trap). */
    if (b == 0) return (X_CT)0;
    if (b == -1) return (X_CT)((X_UT)0 - (X_UT)a);
    return a / b;
#elif defined(OP_MAXIMUM)
    return a > b ? a : b;
#elif defined(OP_MINIMUM)
    return a < b ? a : b;
#elif defined(OP_FMOD)
    /* x % 0 = 0 and MIN % -1 = 0, without a trapping division. */
    if (b == 0 || b == -1) return (X_CT)0;
    return a % b;
#elif defined(OP_REMAINDER)
    if (b == 0 || b == -1) return (X_CT)0;
    X_CT r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? (X_CT)(r + b) : r;
#elif defined(OP_BITWISE_AND)
    return a & b;
#elif defined(OP_BITWISE_OR)
    return a | b;
#elif defined(OP_BITWISE_XOR)
    return a ^ b;
#elif defined(OP_BITWISE_LEFT_SHIFT)
    /* Amounts outside [0, width) give 0; bits shifted out are lost. */
    if (b < 0 || b >= X_BITS) return (X_CT)0;
    return (X_CT)(i64)((u64)(i64)a << (i64)b);
#elif defined(OP_BITWISE_RIGHT_SHIFT)
    /* Arithmetic for signed dtypes (u8 values are >= 0: logical); amounts outside [0, width)
     * give the sign fill. */
    if (b < 0 || b >= X_BITS) return a < 0 ? (X_CT)-1 : (X_CT)0;
    return a >> b;
#else
#error "binary: no integer form of this OP_ option"
#endif
}
#endif

KERNEL void ew_binary(GLOBAL O_ST* out, GLOBAL const X_ST* a, GLOBAL const X_ST* b, const Lay L,
                      const i64 n) {
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
        O_SV(out, o[0], binary_op(X_LD(a, o[1]), X_LD(b, o[2])));
    }
}
#endif

/* ---- Activation gradients: dx from grad and x, in f32 ------------------------------------- *
 * Written to stay finite where the gradient is: the sigmoid's derivative as e / (1 + e)^2 with
 * e = exp(-|x|) (no 1 - s cancellation), tanh's as 4e / (1 + e)^2 with e = exp(-2|x|), and a
 * product x * (a derivative that underflowed to 0) as 0, so that x = +-Inf gives the limit.
 * lo and hi: softplus's beta and threshold; elu's alpha and leaky_relu's slope in lo. */
#ifdef EW_BACKWARD
DEVICE float sigmoid_d(float x) {
    float e = expf(-fabsf(x));
    float d = 1.0f + e;
    return e / (d * d);
}
DEVICE float tanh_d(float x) {
    float e = expf(-2.0f * fabsf(x));
    float d = 1.0f + e;
    return 4.0f * e / (d * d);
}
DEVICE float times_small(float x, float d) { return d == 0.0f ? 0.0f : x * d; }

DEVICE float backward_op(float g, float x, float lo, float hi) {
#if defined(OP_RELU_BACKWARD)
    return x <= 0.0f ? 0.0f : g;
#elif defined(OP_LEAKY_RELU_BACKWARD)
    return x > 0.0f ? g : g * lo;
#elif defined(OP_ELU_BACKWARD)
    return x <= 0.0f ? g * lo * expf(x) : g;
#elif defined(OP_SIGMOID_BACKWARD)
    return g * sigmoid_d(x);
#elif defined(OP_TANH_BACKWARD)
    return g * tanh_d(x);
#elif defined(OP_SILU_BACKWARD)
    return g * (1.0f / (1.0f + expf(-x)) + times_small(x, sigmoid_d(x)));
#elif defined(OP_SOFTPLUS_BACKWARD)
    float t = x * lo;
    return t > hi ? g : g * (1.0f / (1.0f + expf(-t)));
#elif defined(OP_GELU_TANH_BACKWARD)
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    float inner = k * (x + 0.044715f * x * x * x);
    float t = fabsf(inner) >= 9.5f ? (inner > 0.0f ? 1.0f : -1.0f) : tanhf(inner);
    float right = times_small(0.5f * x, tanh_d(inner)) * k * (1.0f + 3.0f * 0.044715f * x * x);
    return g * (0.5f * (1.0f + t) + (tanh_d(inner) == 0.0f ? 0.0f : right));
#elif defined(OP_GELU_BACKWARD)
    float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
    float pdf = expf(-0.5f * x * x) * 0.3989422804014327f; /* 1 / sqrt(2 pi) */
    return g * (cdf + times_small(x, pdf));
#else
#error "backward: no OP_ option"
#endif
}

KERNEL void ew_backward(GLOBAL X_ST* out, GLOBAL const X_ST* g, GLOBAL const X_ST* x, const Lay L,
                        const i64 n, const float lo, const float hi) {
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
        X_SV(out, o[0], backward_op(X_LD(g, o[1]), X_LD(x, o[2]), lo, hi));
    }
}
#endif

/* ---- where(cond, a, b), copy: raw elements --------------------------------------------------- */
#ifdef EW_WHERE
KERNEL void ew_where(GLOBAL elem_t* out, GLOBAL const u8* cond, GLOBAL const elem_t* a,
                     GLOBAL const elem_t* b, const Lay L, const i64 n) {
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
        out[o[0]] = cond[o[1]] != 0 ? a[o[2]] : b[o[3]];
    }
}
#endif

#ifdef EW_COPY
KERNEL void ew_copy(GLOBAL elem_t* out, GLOBAL const elem_t* x, const Lay L, const i64 n) {
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
        out[o[0]] = x[o[1]];
    }
}
#endif

/* ---- cast: X_CLASS 1 = f32/f16/bf16, 2 = f64, 3 = integer or bool ---------------------------- */
#ifdef EW_CAST
KERNEL void ew_cast(GLOBAL O_ST* out, GLOBAL const X_ST* x, const Lay L, const i64 n) {
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
#if X_CLASS == 1
        CAT(cf_, OT)(out, o[0], X_LD(x, o[1]));
#elif X_CLASS == 2
        CAT(cd_, OT)(out, o[0], X_LD(x, o[1]));
#else
        CAT(ci_, OT)(out, o[0], (i64)X_LD(x, o[1]));
#endif
    }
}
#endif

/* ---- fill: the value's bits, converted on the host --------------------------------------- */
#ifdef EW_FILL
KERNEL void ew_fill(GLOBAL elem_t* out, const Lay L, const i64 n, const u64 value) {
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
        out[o[0]] = (elem_t)value;
    }
}
#endif

/* ---- arange: integers exactly in i64 (wrapping); floats in f64 and rounded once -------------- */
#ifdef EW_ARANGE
#if !O_FLOAT
KERNEL void ew_arange(GLOBAL O_ST* out, const Lay L, const i64 n, const i64 start, const i64 step) {
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
        CAT(ci_, OT)(out, o[0], (i64)((u64)start + (u64)i * (u64)step));
    }
}
#elif !defined(ARANGE_PAIRS)
#ifndef ANYACCEL_FP64
#error "arange: start and step come as doubles, but the device has no doubles"
#endif
KERNEL void ew_arange(GLOBAL O_ST* out, const Lay L, const i64 n, const u64 start_bits,
                      const u64 step_bits) {
    double start = bits_f64(start_bits);
    double step = bits_f64(step_bits);
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
        CAT(cd_, OT)(out, o[0], start + (double)i * step);
    }
}
#else
/* Without doubles: start and step as pairs of floats (hi + lo), the product and sum in
 * double-float arithmetic (about 48 bits relative to the terms), then one rounding: the f32
 * result of the f64 formula, except where the sum cancels far below its terms (-3 + 30 * 0.1
 * leaves a residue of 1e-16 where f64 gives 0). */
DEVICE void two_sum(float a, float b, float* s, float* e) {
    float t = a + b;
    float bb = t - a;
    *e = (a - (t - bb)) + (b - bb);
    *s = t;
}
KERNEL void ew_arange(GLOBAL O_ST* out, const Lay L, const i64 n, const u64 start_bits,
                      const u64 step_bits) {
    float sh = bits_f32((u32)(start_bits >> 32)), sl = bits_f32((u32)start_bits);
    float th = bits_f32((u32)(step_bits >> 32)), tl = bits_f32((u32)step_bits);
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        lay_at(&L, i, o);
        float ih = (float)(i - (i & 4095)), il = (float)(i & 4095);
        /* i * step = (ih + il) * (th + tl), keeping the rounding error of the main terms. */
        float p1 = ih * th, e1 = fmaf(ih, th, -p1);
        float p2 = il * th, e2 = fmaf(il, th, -p2);
        float s, e, s2, e3;
        two_sum(p1, p2, &s, &e);
        e += e1 + e2 + (ih + il) * tl;
        two_sum(sh, s, &s2, &e3);
        e3 += e + sl;
        two_sum(s2, e3, &s, &e);
        /* s + e is the value and s = fl(s + e), its f32 rounding. For a 16-bit output, round
         * it to odd in f32 first (the odd neighbour toward e when inexact), so that the store
         * rounds the value once. */
#if !O_F32
        if (e != 0.0f && (f32_bits(s) & 1u) == 0u) {
            u32 b = f32_bits(s);
            s = bits_f32((e > 0.0f) == (s > 0.0f) ? b + 1u : b - 1u);
        }
#endif
        O_SV(out, o[0], s);
    }
}
#endif
#endif
