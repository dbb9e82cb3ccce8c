/*
 * Random ops: uniform, normal, bernoulli, dropout (docs/ops.md, profile `random`).
 *
 * Bit-identical to every other device: Philox 4x32-10 keyed by (seed, offset); the output element
 * with row-major index i (over the output's shape, whatever its strides) takes word i % 4 of the
 * block of counter (lo32(i / 4), hi32(i / 4), lo32(offset), hi32(offset)) under key
 * (lo32(seed), hi32(seed)). Every float step below is one IEEE-754 operation rounded to nearest,
 * in the stated precision (float or double) and in the order written; a product is rounded
 * before it is added, so contraction into fused multiply-adds must stay off:
 *   - the C99 pragma below (clang and other compilers that honour it);
 *   - GCC ignores that pragma (and warns about it), so it gets its own optimize pragma, and the
 *     Makefile passes -ffp-contract=off (GCC's default is also off in ISO C mode, -std=c11).
 * Every float value is held in a variable of its type, so compilers with excess precision
 * (FLT_EVAL_METHOD != 0, ISO mode) round it on assignment; x86-64 SSE has none.
 * 16-bit outputs are the f32 value rounded once to nearest even by ref_store_f (the f32 value is
 * exact as a double, so rounding the double is rounding the f32).
 */

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#else
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ref.h"

#define RANDOM_DTYPES (REF_DT(F32) | REF_DT(F16) | REF_DT(BF16) | REF_DT(F64))

/* ---- Generator ------------------------------------------------------------------------------- */

/* The Philox 4x32-10 block of counter `c` under key (k0, k1), in place. */
static void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = (uint32_t)p1;
        c[2] = n2;
        c[3] = (uint32_t)p0;
        if (round < 9) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
    }
}

/* The stream of a call: the bits of its `seed` and `offset` attributes. */
typedef struct {
    uint64_t seed, offset;
    uint64_t block_index; /* the block in `block`, UINT64_MAX for none */
    uint32_t block[4];
} Stream;

/* The word of the element with row-major index i. */
static uint32_t stream_word(Stream *s, uint64_t i) {
    uint64_t b = i >> 2;
    if (s->block_index != b) {
        s->block[0] = (uint32_t)b;
        s->block[1] = (uint32_t)(b >> 32);
        s->block[2] = (uint32_t)s->offset;
        s->block[3] = (uint32_t)(s->offset >> 32);
        philox4x32_10(s->block, (uint32_t)s->seed, (uint32_t)(s->seed >> 32));
        s->block_index = b;
    }
    return s->block[i & 3];
}

static float f32_of_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint32_t bits_of_f32(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return bits;
}

/* (w >> 8) * 2^-24: exact, in [0, 1). */
static float u24(uint32_t w) {
    float v = (float)(w >> 8);
    float r = v * f32_of_bits(0x33800000u);
    return r;
}

/* w * 2^-32: exact, in [0, 1). */
static double u32d(uint32_t w) {
    double r = (double)w * 0x1p-32;
    return r;
}

/* ---- The normal draw ----------------------------------------------------------------------- */

static const uint32_t LOG_C[10] = {
    0x3f800000u, 0xbefffffcu, 0x3eaaaaa8u, 0xbe800214u, 0x3e4cd23bu,
    0xbe2a13d4u, 0x3e11343au, 0xbe079613u, 0x3e043db9u, 0xbd9c7039u,
};
static const uint32_t CENTRAL_C[10] = {
    0x4007e45eu, 0x3eb2962eu, 0xbbc1958fu, 0xbae836d6u, 0x39a1e4fbu,
    0xb6eb5af9u, 0xb6a458dcu, 0x3530b03cu, 0x330d7031u, 0xb25457cdu,
};
static const uint32_t TAIL_C[10] = {
    0x408034b6u, 0x3fb55293u, 0x3c5adbd4u, 0xbc31005au, 0x3c03b33cu,
    0xbba64b52u, 0x3b0a7420u, 0xb8dacd90u, 0xb9eb2794u, 0x393c6a1bu,
};

/* c[0] + t * (c[1] + t * (...)), every product and sum rounded. */
static float horner(const uint32_t c[10], float t) {
    float p = f32_of_bits(c[9]);
    for (int k = 8; k >= 0; k--) {
        float pt = p * t;
        p = pt + f32_of_bits(c[k]);
    }
    return p;
}

/* ln(v) ~ e * ln 2 + l for an integer-valued v in [1, 2^24): returns l, sets *e. */
static float log_part(float v, int32_t *e) {
    uint32_t bits = bits_of_f32(v);
    int32_t ex = (int32_t)(bits >> 23) - 127;
    float m = f32_of_bits((bits & 0x7fffffu) | 0x3f800000u);
    if (m > f32_of_bits(0x3fb504f3u)) {
        m = m * 0.5f;
        ex += 1;
    }
    float t = m - 1.0f;
    float p = horner(LOG_C, t);
    float l = t * p;
    *e = ex;
    return l;
}

/* The standard normal draw of a word: sqrt(2) * erfinv(x) for the x in (-1, 1) that its top 23
 * bits give. */
static float normal_z(uint32_t w) {
    uint32_t k = w >> 9;
    float a = (float)(2u * k + 1u);
    float b = (float)((1u << 24) - 2u * k - 1u);
    float xi = (float)((int32_t)(2u * k + 1u) - (1 << 23));
    float x = xi * f32_of_bits(0x34000000u);
    int32_t ea, eb;
    float la = log_part(a, &ea);
    float lb = log_part(b, &eb);
    float s = la + lb;
    float ef = (float)(ea + eb - 46);
    float eln2 = ef * f32_of_bits(0x3f317218u);
    float sum = eln2 + s;
    float big_w = -sum;
    float q;
    if (big_w < 5.0f) {
        float t = big_w - 2.5f;
        q = horner(CENTRAL_C, t);
    } else {
        float y = f32_of_bits(0x5f3759dfu - (bits_of_f32(big_w) >> 1));
        float h = 0.5f * big_w;
        for (int r = 0; r < 3; r++) {
            float hy = h * y;
            float hyy = hy * y;
            float d = 1.5f - hyy;
            y = y * d;
        }
        float root = big_w * y;
        float t = root - 3.0f;
        q = horner(TAIL_C, t);
    }
    float z = q * x;
    return z;
}

/* ---- Calls ----------------------------------------------------------------------------------- */

/* The `seed` and `offset` attributes (Int, default 0), as their 64-bit two's complement bits. */
static AnyaccelStatus stream_of(const RefCall *c, Stream *s) {
    int64_t seed = 0, offset = 0;
    if (ref_attr_int(c, "seed", &seed) < 0) return REF_INVALID("%s: attribute `seed` must be an Int", c->op);
    if (ref_attr_int(c, "offset", &offset) < 0)
        return REF_INVALID("%s: attribute `offset` must be an Int", c->op);
    s->seed = (uint64_t)seed;
    s->offset = (uint64_t)offset;
    s->block_index = UINT64_MAX;
    return ANYACCEL_OK;
}

/* The optional Float attribute `name` (default `def`), finite. */
static AnyaccelStatus finite_attr(const RefCall *c, const char *name, double def, double *out) {
    *out = def;
    if (ref_attr_float(c, name, out) < 0) return REF_INVALID("%s: attribute `%s` must be a Float", c->op, name);
    if (!isfinite(*out)) return REF_INVALID("%s: attribute `%s` must be finite, got %g", c->op, name, *out);
    return ANYACCEL_OK;
}


/* uniform and normal: no input; the output matches the `shape` and `dtype` attributes when they
 * are given. */
static AnyaccelStatus check_draw(const RefCall *c) {
    const RefTensor *out = &c->outputs[0];
    AnyaccelStatus st;
    if ((st = ref_check_arity(c, 0)) || (st = ref_check_tensor(c->op, "the output", out, RANDOM_DTYPES)))
        return st;
    const int64_t *shape = NULL;
    size_t rank = 0;
    int got = ref_attr_ints(c, "shape", &shape, &rank);
    if (got < 0) return REF_INVALID("%s: attribute `shape` must be Ints", c->op);
    if (got == 1) {
        int same = rank == (size_t)out->ndim;
        for (size_t d = 0; same && d < rank; d++) same = shape[d] == out->shape[d];
        if (!same) return REF_INVALID("%s: the output's shape is not the `shape` attribute", c->op);
    }
    const char *dtype = ref_attr_str(c, "dtype");
    if (dtype && ref_dtype_named(dtype) != out->dtype)
        return REF_INVALID("%s: the output's dtype is not the `dtype` attribute (%s)", c->op, dtype);
    return ANYACCEL_OK;
}

/* bernoulli and dropout: one input, of the output's shape and dtype. */
static AnyaccelStatus check_mask(const RefCall *c, const char *name) {
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    AnyaccelStatus st;
    if ((st = ref_check_arity(c, 1)) || (st = ref_check_tensor(c->op, name, x, RANDOM_DTYPES)) ||
        (st = ref_check_tensor(c->op, "the output", out, ANYACCEL_DTYPE_BIT(x->dtype))))
        return st;
    int same = x->ndim == out->ndim;
    for (int d = 0; same && d < x->ndim; d++) same = x->shape[d] == out->shape[d];
    if (!same) return REF_INVALID("%s: the output's shape is not %s's", c->op, name);
    return ANYACCEL_OK;
}

/* Stores a float value into the output element at `p` (f32, f16, bf16: rounded once). */
static void store_f32(RefDType d, unsigned char *p, float v) {
    ref_store_f(d, p, (double)v);
}

/* uniform (a = low, b = high - low, the draw u) and normal (a = mean, b = std, the draw z):
 * a + b * draw, the product rounded before the sum, in f32 (f64 for f64). */
static AnyaccelStatus op_draw(const RefCall *c, int normal) {
    AnyaccelStatus st;
    Stream s = {0, 0, UINT64_MAX, {0, 0, 0, 0}};
    double a, b;
    if ((st = check_draw(c)) || (st = stream_of(c, &s)) ||
        (st = finite_attr(c, normal ? "mean" : "low", 0.0, &a)) ||
        (st = finite_attr(c, normal ? "std" : "high", 1.0, &b)))
        return st;
    if (normal && !(b >= 0.0)) return REF_INVALID("normal: std must be >= 0, got %g", b);
    if (!normal) {
        if (!(a <= b)) return REF_INVALID("uniform: low (%g) must not exceed high (%g)", a, b);
        b = b - a;
        if (!isfinite(b)) return REF_INVALID("uniform: high - low overflows f64");
    }
    const RefTensor *out = &c->outputs[0];
    RefDType dt = out->dtype;
    size_t size = ref_dtype_size(dt);
    int64_t n = ref_numel(out);
    const RefTensor *ts[1] = {out};
    RefIter it;
    ref_iter_init(&it, 1, ts);
    if (dt == ANYACCEL_DTYPE_F64) {
        for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
            uint32_t w = stream_word(&s, (uint64_t)i);
            double d = normal ? (double)normal_z(w) : u32d(w);
            double prod = b * d;
            double v = a + prod;
            ref_store_f(dt, out->base + it.offset[0] * (int64_t)size, v);
        }
        return ANYACCEL_OK;
    }
    float af = (float)a, bf = (float)b;
    if (isinf(af) || isinf(bf))
        return REF_INVALID("%s: a parameter overflows f32, the precision it is computed in", c->op);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        uint32_t w = stream_word(&s, (uint64_t)i);
        float d = normal ? normal_z(w) : u24(w);
        float prod = bf * d;
        float v = af + prod;
        store_f32(dt, out->base + it.offset[0] * (int64_t)size, v);
    }
    return ANYACCEL_OK;
}

static AnyaccelStatus op_bernoulli(const RefCall *c) {
    AnyaccelStatus st;
    Stream s = {0, 0, UINT64_MAX, {0, 0, 0, 0}};
    if ((st = check_mask(c, "p")) || (st = stream_of(c, &s))) return st;
    const RefTensor *p = &c->inputs[0], *out = &c->outputs[0];
    RefDType dt = out->dtype;
    size_t size = ref_dtype_size(dt);
    int wide = dt == ANYACCEL_DTYPE_F64;
    int64_t n = ref_numel(out);
    const RefTensor *ts[2] = {out, p};
    RefIter it;
    ref_iter_init(&it, 2, ts);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        uint32_t w = stream_word(&s, (uint64_t)i);
        /* f32, f16 and bf16 values are exact as floats; NaN compares false. */
        double pv = ref_load_f(dt, p->base + it.offset[1] * (int64_t)size);
        int hit = wide ? u32d(w) < pv : u24(w) < (float)pv;
        ref_store_f(dt, out->base + it.offset[0] * (int64_t)size, hit ? 1.0 : 0.0);
    }
    return ANYACCEL_OK;
}

static AnyaccelStatus op_dropout(const RefCall *c) {
    AnyaccelStatus st;
    Stream s = {0, 0, UINT64_MAX, {0, 0, 0, 0}};
    double p;
    if ((st = check_mask(c, "x")) || (st = stream_of(c, &s)) || (st = finite_attr(c, "p", 0.5, &p))) return st;
    if (!(p >= 0.0 && p <= 1.0)) return REF_INVALID("dropout: p must lie in [0, 1], got %g", p);
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    RefDType dt = out->dtype;
    size_t size = ref_dtype_size(dt);
    double scale64 = p >= 1.0 ? 0.0 : 1.0 / (1.0 - p);
    int64_t n = ref_numel(out);
    const RefTensor *ts[2] = {out, x};
    RefIter it;
    ref_iter_init(&it, 2, ts);
    if (dt == ANYACCEL_DTYPE_F64) {
        for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
            uint32_t w = stream_word(&s, (uint64_t)i);
            double xv = ref_load_f(dt, x->base + it.offset[1] * (int64_t)size);
            double m = u32d(w) < p ? 0.0 : 1.0;
            double xm = xv * m;
            double v = xm * scale64;
            ref_store_f(dt, out->base + it.offset[0] * (int64_t)size, v);
        }
        return ANYACCEL_OK;
    }
    float pf = (float)p, scale = (float)scale64;
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        uint32_t w = stream_word(&s, (uint64_t)i);
        /* Exact: x is an f32, f16 or bf16 value. */
        float xv = (float)ref_load_f(dt, x->base + it.offset[1] * (int64_t)size);
        float m = u24(w) < pf ? 0.0f : 1.0f;
        float xm = xv * m;
        float v = xm * scale;
        store_f32(dt, out->base + it.offset[0] * (int64_t)size, v);
    }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_random(const RefCall *c) {
    if (strcmp(c->op, "uniform") == 0) return op_draw(c, 0);
    if (strcmp(c->op, "normal") == 0) return op_draw(c, 1);
    if (strcmp(c->op, "bernoulli") == 0) return op_bernoulli(c);
    if (strcmp(c->op, "dropout") == 0) return op_dropout(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not a random op", c->op);
}
