/*
 * The quantized ops (docs/ops.md, section 8.17; the conformance profile `quant`): quantize and
 * dequantize, the weight-only quantized linear matmul_wq and the int8 matmul matmul_i8.
 *
 *   quantize:   x [..., K] (F)                          -> q, scales [..., K/G], zeros [..., K/G]
 *   dequantize: q, scales [..., K/G], zeros? [..., K/G] -> out [..., K] (scales' dtype)
 *   matmul_wq:  x [..., K], w, scales [N, K/G], zeros? [N, K/G] -> out [..., N]   out = x @ dequant(w)^T
 *   matmul_i8:  a i8 [M, K], b i8 [K, N], row_scale? f32 [M], col_scale? f32 [N] -> out [M, N]
 *
 * The formats: a tensor is quantized along its last axis K in groups of G = group_size
 * consecutive elements, each group g with a scale s and a zero point z, so that the value of
 * element k is (q[k] - z[g]) * s[g] with g = k / G.
 *   - int8: q is an i8 tensor [..., K], zero points i8 (0 when absent);
 *   - int4: q is a u8 tensor [..., K/2]: element 2j in the low nibble (bits 0-3) of byte j and
 *     element 2j + 1 in its high nibble (bits 4-7), each nibble unsigned 0..15; zero points u8,
 *     one per byte, not packed (8 when absent); K and G even.
 * Scales have the float dtype of the data (f32, f16 or bf16).
 *
 * quantize computes in f32 exactly as the contract writes it (each operation one f32 rounding,
 * round half to even by nearbyintf in the default rounding mode, the scale rounded once to x's
 * dtype); the Makefile's -ffp-contract=off keeps the compiler from fusing anything. dequantize
 * rounds the exact (q - z) * s once; matmul_wq accumulates in double and rounds once; matmul_i8
 * accumulates in uint32_t, which wraps modulo 2^32 as the contract's i32 accumulators do
 * (without the undefined behaviour of a signed overflow).
 *
 * Every tensor is checked once (its element count and the offsets of its elements fit in int64),
 * so that the offsets below, each a sum of coordinate x stride terms of one tensor with each
 * coordinate inside its shape, stay in range; a NaN or an infinity never reaches a conversion to
 * an integer.
 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

#define FLOATS (REF_DT(F32) | REF_DT(F16) | REF_DT(BF16))

/* ---- Helpers ---------------------------------------------------------------------------------- */

/* The element offset of row `row` of t: its row-major index over every dimension but the last
 * (every one of them of size >= 1). */
static int64_t row_offset(const RefTensor *t, int64_t row) {
    int64_t off = 0;
    for (int d = t->ndim - 2; d >= 0; d--) {
        const int64_t size = t->shape[d];
        off += (row % size) * t->strides[d];
        row /= size;
    }
    return off;
}

/* The number of rows of t: the product of every dimension but the last. */
static int64_t row_count(const RefTensor *t) {
    int64_t rows = 1;
    for (int d = 0; d < t->ndim - 1; d++) rows *= t->shape[d];
    return rows;
}

/* t's shape with its last size replaced by `last`, in shape[0..t->ndim]. */
static void with_last(const RefTensor *t, int64_t last, int64_t *shape) {
    for (int d = 0; d < t->ndim - 1; d++) shape[d] = t->shape[d];
    shape[t->ndim - 1] = last;
}

/* The quantized value of element k of a row of q (i8, or u8 holding int4 nibbles with `int4`)
 * whose first byte is at element offset `base`, its elements `step` apart. */
static int64_t q_value(const RefTensor *q, int64_t base, int64_t step, int int4, int64_t k) {
    if (!int4) return ref_load_i(ANYACCEL_DTYPE_I8, q->base + base + k * step);
    const unsigned byte = q->base[base + (k / 2) * step];
    return k % 2 ? (int64_t)(byte >> 4) : (int64_t)(byte & 15u);
}

/* An integer element of an i8 or u8 tensor at element offset `off`. */
static int64_t byte_at(const RefTensor *t, int64_t off) {
    return ref_load_i(t->dtype, t->base + off);
}

/* The required Int attribute `group_size`, >= 1. */
static AnyaccelStatus group_size_attr(const RefCall *c, int64_t *group) {
    *group = 0;
    const int r = ref_attr_int(c, "group_size", group);
    if (r < 0) return REF_INVALID("%s: attribute `group_size` must be an Int", c->op);
    if (r == 0) return REF_INVALID("%s: attribute `group_size` (Int) is required", c->op);
    if (*group < 1) return REF_INVALID("%s: group_size is %lld, expected >= 1", c->op, (long long)*group);
    return ANYACCEL_OK;
}

/* K elements (`what` says where K comes from) split into groups of `group`: K a multiple of it;
 * for int4 both even (two elements per byte, and a group of whole bytes). */
static AnyaccelStatus check_groups(const char *op, int64_t k, const char *what, int64_t group, int int4) {
    if (int4 && k % 2 != 0)
        return REF_INVALID("%s: K = %lld (%s) is odd, expected an even K for int4 (two elements per byte)", op,
                           (long long)k, what);
    if (k % group != 0)
        return REF_INVALID("%s: group_size %lld does not divide K = %lld (%s)", op, (long long)group, (long long)k,
                           what);
    if (int4 && group % 2 != 0)
        return REF_INVALID("%s: group_size is %lld, expected an even group_size for int4 (two elements per byte)",
                           op, (long long)group);
    return ANYACCEL_OK;
}

/* `name` is present, of a dtype in `dtypes`, and of shape expect[0..rank]. */
static AnyaccelStatus check_as(const char *op, const char *name, const RefTensor *t, unsigned dtypes, int rank,
                               const int64_t *expect, const char *why) {
    AnyaccelStatus st = ref_check_tensor(op, name, t, dtypes);
    return st ? st : ref_check_shape(op, name, t, rank, expect, why);
}

/* v as an integer in [lo, hi]: v is an integral float or +-Inf; NaN gives lo. */
static int clamp_int(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v > (float)hi) return hi;
    return (int)v;
}

/* v rounded once to `dtype` (f32, f16 or bf16), back in f32 (exactly). */
static float to_dtype(RefDType dtype, float v) {
    unsigned char tmp[4];
    ref_store_f(dtype, tmp, (double)v);
    return (float)ref_load_f(dtype, tmp);
}

/* ---- quantize --------------------------------------------------------------------------------- */

/* The quantized value of the element of x at element offset `off`, in a group of scale sf and
 * zero point zp: zp when sf is 0; else round(v / sf) clamped to [qmin, qmax], plus zp
 * (symmetric), or round(v / sf) + zp clamped (asymmetric), in f32. */
static int quant_value(const RefTensor *x, int64_t off, float sf, int zp, int symmetric, int qmin, int qmax) {
    if (sf == 0.0f) return zp;
    const float r = nearbyintf((float)ref_at(x, off) / sf); /* halves to even */
    return symmetric ? clamp_int(r, qmin, qmax) + zp : clamp_int(r + (float)zp, qmin, qmax);
}

/* Per group of G elements, in f32 (round half to even):
 *   symmetric:  s = to_dtype(amax / qmax), q = clamp(round(v / s), -qmax, qmax) + z,
 *               z = 0 (int8) or 8 (int4), qmax = 127 or 7;
 *   asymmetric: lo = min(min v, 0), hi = max(max v, 0), s = to_dtype((hi - lo) / (qmax - qmin)),
 *               z = clamp(qmin - round(lo / s), qmin, qmax), q = clamp(round(v / s) + z, qmin, qmax),
 *               (qmin, qmax) = (-128, 127) or (0, 15);
 *   s == 0: q = z, with z = 0 for int8 and asymmetric int4, 8 for symmetric int4. */
static AnyaccelStatus op_quantize(const RefCall *c) {
    const char *op = c->op;
    if (c->num_inputs != 1 || c->num_outputs != 3)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected input x and outputs q, scales and zeros",
                           op, c->num_inputs, c->num_outputs);
    const RefTensor *x = &c->inputs[0], *q = &c->outputs[0], *s = &c->outputs[1], *z = &c->outputs[2];
    int64_t bits = 0, group = 0;
    int symmetric = 1, r;
    AnyaccelStatus st;
    if ((r = ref_attr_int(c, "bits", &bits)) < 0) return REF_INVALID("%s: attribute `bits` must be an Int", op);
    if (r == 0) return REF_INVALID("%s: attribute `bits` (Int, 8 or 4) is required", op);
    if (bits != 8 && bits != 4) return REF_INVALID("%s: bits is %lld, expected 8 or 4", op, (long long)bits);
    if ((st = group_size_attr(c, &group)) || (st = ref_flag_attr(c, "symmetric", &symmetric))) return st;
    const int int4 = bits == 4;
    if ((st = ref_check_tensor(op, "x", x, FLOATS))) return st;
    if (x->ndim < 1)
        return REF_INVALID("%s: x has shape %s, expected rank 1 or more ([..., K])", op,
                           ref_shape_str(x->ndim, x->shape).s);
    const int rank = x->ndim;
    const int64_t k = x->shape[rank - 1];
    if ((st = check_groups(op, k, "x's last dimension", group, int4))) return st;
    const RefDType qdt = int4 ? ANYACCEL_DTYPE_U8 : ANYACCEL_DTYPE_I8;
    const int64_t groups = k / group;
    int64_t qshape[REF_MAX_DIMS], gshape[REF_MAX_DIMS];
    with_last(x, int4 ? k / 2 : k, qshape);
    with_last(x, groups, gshape);
    if ((st = check_as(op, "q", q, ANYACCEL_DTYPE_BIT(qdt), rank, qshape,
                       int4 ? " (int4: u8 [..., K/2], two elements per byte)" : " (int8: i8 [..., K])")) ||
        (st = check_as(op, "scales", s, ANYACCEL_DTYPE_BIT(x->dtype), rank, gshape, " ([..., K / group_size])")) ||
        (st = check_as(op, "zeros", z, ANYACCEL_DTYPE_BIT(qdt), rank, gshape, " ([..., K / group_size])")))
        return st;

    const int qmin = int4 ? (symmetric ? -7 : 0) : (symmetric ? -127 : -128);
    const int qmax = int4 ? (symmetric ? 7 : 15) : 127;
    const int64_t rows = row_count(x);
    const int64_t xs = x->strides[rank - 1], qs = q->strides[rank - 1];
    const int64_t ss = s->strides[rank - 1], zs = z->strides[rank - 1];
    for (int64_t row = 0; row < rows; row++) {
        const int64_t xo = row_offset(x, row), qo = row_offset(q, row);
        const int64_t so = row_offset(s, row), zo = row_offset(z, row);
        for (int64_t g = 0; g < groups; g++) {
            const int64_t k0 = g * group;
            float amax = 0.0f, lo = 0.0f, hi = 0.0f;
            for (int64_t i = k0; i < k0 + group; i++) {
                const float v = (float)ref_at(x, xo + i * xs); /* f16 and bf16 exactly */
                amax = fmaxf(amax, fabsf(v));
                lo = fminf(lo, v);
                hi = fmaxf(hi, v);
            }
            float sf;
            int zp;
            if (symmetric) {
                sf = to_dtype(x->dtype, amax / (float)qmax);
                zp = int4 ? 8 : 0;
            } else {
                sf = to_dtype(x->dtype, (hi - lo) / (float)(qmax - qmin));
                zp = sf == 0.0f ? 0 : clamp_int((float)qmin - nearbyintf(lo / sf), qmin, qmax);
            }
            ref_put(s, so + g * ss, (double)sf);
            ref_store_i(qdt, z->base + zo + g * zs, zp);
            if (int4) {
                for (int64_t i = k0; i < k0 + group; i += 2) {
                    const unsigned low = (unsigned)quant_value(x, xo + i * xs, sf, zp, symmetric, qmin, qmax);
                    const unsigned high = (unsigned)quant_value(x, xo + (i + 1) * xs, sf, zp, symmetric, qmin, qmax);
                    q->base[qo + (i / 2) * qs] = (unsigned char)((low & 15u) | (high & 15u) << 4);
                }
            } else {
                for (int64_t i = k0; i < k0 + group; i++)
                    ref_store_i(qdt, q->base + qo + i * qs, quant_value(x, xo + i * xs, sf, zp, symmetric, qmin, qmax));
            }
        }
    }
    return ANYACCEL_OK;
}

/* ---- dequantize ------------------------------------------------------------------------------- */

/* out = (q - z) * s: q - z exact, the product (exact in double) rounded once to scales' dtype. */
static AnyaccelStatus op_dequantize(const RefCall *c) {
    const char *op = c->op;
    if (c->num_inputs < 2 || c->num_inputs > 3 || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected q, scales, optional zeros, and one output",
                           op, c->num_inputs, c->num_outputs);
    const RefTensor *q = &c->inputs[0], *s = &c->inputs[1], *out = &c->outputs[0];
    const RefTensor *z = c->num_inputs > 2 && c->inputs[2].present ? &c->inputs[2] : NULL;
    int64_t group = 0;
    AnyaccelStatus st;
    if ((st = group_size_attr(c, &group))) return st;
    if ((st = ref_check_tensor(op, "q", q, REF_DT(I8) | REF_DT(U8)))) return st;
    if (q->ndim < 1)
        return REF_INVALID("%s: q has shape %s, expected rank 1 or more (int8: i8 [..., K]; int4: u8 [..., K/2])",
                           op, ref_shape_str(q->ndim, q->shape).s);
    const int rank = q->ndim, int4 = q->dtype == ANYACCEL_DTYPE_U8;
    int64_t k = q->shape[rank - 1];
    if (int4 && !ref_mul_ok(k, 2, &k))
        return REF_INVALID("%s: q has shape %s: K = 2 x its last dimension overflows int64", op,
                           ref_shape_str(rank, q->shape).s);
    if ((st = check_groups(op, k, int4 ? "twice q's last dimension, int4" : "q's last dimension", group, int4)))
        return st;
    const int64_t groups = k / group;
    int64_t gshape[REF_MAX_DIMS], oshape[REF_MAX_DIMS];
    with_last(q, groups, gshape);
    with_last(q, k, oshape);
    if ((st = check_as(op, "scales", s, FLOATS, rank, gshape, " (q's leading dimensions, then K / group_size)")) ||
        (z && (st = check_as(op, "zeros", z, ANYACCEL_DTYPE_BIT(q->dtype), rank, gshape,
                             " (q's leading dimensions, then K / group_size)"))) ||
        (st = check_as(op, "the output", out, ANYACCEL_DTYPE_BIT(s->dtype), rank, oshape,
                       " (q's leading dimensions, then K)")))
        return st;

    const int64_t rows = row_count(q);
    const int64_t qs = q->strides[rank - 1], ss = s->strides[rank - 1], os = out->strides[rank - 1];
    const int64_t zs = z ? z->strides[rank - 1] : 0;
    for (int64_t row = 0; row < rows; row++) {
        const int64_t qo = row_offset(q, row), so = row_offset(s, row), oo = row_offset(out, row);
        const int64_t zo = z ? row_offset(z, row) : 0;
        for (int64_t i = 0; i < k; i++) {
            const int64_t g = i / group;
            const int64_t zp = z ? byte_at(z, zo + g * zs) : (int4 ? 8 : 0);
            const double sv = ref_at(s, so + g * ss);
            ref_put(out, oo + i * os, (double)(q_value(q, qo, qs, int4, i) - zp) * sv);
        }
    }
    return ANYACCEL_OK;
}

/* ---- matmul_wq -------------------------------------------------------------------------------- */

/* out[m, n] = sum_k x[m, k] * (q[n, k] - z[n, g]) * s[n, g], in double, rounded once. */
static AnyaccelStatus op_matmul_wq(const RefCall *c) {
    const char *op = c->op;
    if (c->num_inputs < 3 || c->num_inputs > 4 || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected x, w, scales, optional zeros, and one "
                           "output",
                           op, c->num_inputs, c->num_outputs);
    const RefTensor *x = &c->inputs[0], *w = &c->inputs[1], *s = &c->inputs[2], *out = &c->outputs[0];
    const RefTensor *z = c->num_inputs > 3 && c->inputs[3].present ? &c->inputs[3] : NULL;
    int64_t group = 0;
    AnyaccelStatus st;
    if ((st = group_size_attr(c, &group))) return st;
    if ((st = ref_check_tensor(op, "x", x, FLOATS)) ||
        (st = ref_check_tensor(op, "w", w, REF_DT(I8) | REF_DT(U8))))
        return st;
    if (x->ndim < 1)
        return REF_INVALID("%s: x has shape %s, expected rank 1 or more ([..., K])", op,
                           ref_shape_str(x->ndim, x->shape).s);
    const int int4 = w->dtype == ANYACCEL_DTYPE_U8;
    if ((st = ref_check_rank(op, "w", w, 2, int4 ? "int4: u8 [N, K/2]" : "int8: i8 [N, K]"))) return st;
    const int rank = x->ndim;
    const int64_t k = x->shape[rank - 1], n = w->shape[0];
    if ((st = check_groups(op, k, "x's last dimension", group, int4))) return st;
    const int64_t groups = k / group;
    const int64_t wshape[2] = {n, int4 ? k / 2 : k}, gshape[2] = {n, groups};
    char why[sizeof(RefShapeStr) + 96];
    snprintf(why, sizeof why, " (%s, K = %lld from x's shape %s)", int4 ? "int4: [N, K/2]" : "int8: [N, K]",
             (long long)k, ref_shape_str(rank, x->shape).s);
    int64_t oshape[REF_MAX_DIMS];
    with_last(x, n, oshape);
    if ((st = ref_check_shape(op, "w", w, 2, wshape, why)) ||
        (st = check_as(op, "scales", s, ANYACCEL_DTYPE_BIT(x->dtype), 2, gshape, " ([N, K / group_size])")) ||
        (z && (st = check_as(op, "zeros", z, ANYACCEL_DTYPE_BIT(w->dtype), 2, gshape, " ([N, K / group_size])"))) ||
        (st = check_as(op, "the output", out, ANYACCEL_DTYPE_BIT(x->dtype), rank, oshape,
                       " (x's leading dimensions, then N)")))
        return st;

    double *wrow = malloc((size_t)(k ? k : 1) * sizeof *wrow);
    if (!wrow) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    const int64_t rows = row_count(x);
    const int64_t xs = x->strides[rank - 1], os = out->strides[rank - 1];
    for (int64_t j = 0; j < n; j++) {
        /* Row j of the dequantized weight, each element exact in double. */
        const int64_t wo = j * w->strides[0], so = j * s->strides[0], zo = z ? j * z->strides[0] : 0;
        for (int64_t i = 0; i < k; i++) {
            const int64_t g = i / group;
            const int64_t zp = z ? byte_at(z, zo + g * z->strides[1]) : (int4 ? 8 : 0);
            wrow[i] = (double)(q_value(w, wo, w->strides[1], int4, i) - zp) * ref_at(s, so + g * s->strides[1]);
        }
        for (int64_t m = 0; m < rows; m++) {
            const int64_t xo = row_offset(x, m);
            double acc = 0.0; /* K = 0 gives 0 */
            for (int64_t i = 0; i < k; i++) acc += ref_at(x, xo + i * xs) * wrow[i];
            ref_put(out, row_offset(out, m) + j * os, acc);
        }
    }
    free(wrow);
    return ANYACCEL_OK;
}

/* ---- matmul_i8 -------------------------------------------------------------------------------- */

/* acc[m, n] = sum_k a[m, k] * b[k, n] wrapping in 32 bits; an i32 output is acc, a float one
 * (f32(acc) * row_scale[m]) * col_scale[n] in f32, rounded once to its dtype. */
static AnyaccelStatus op_matmul_i8(const RefCall *c) {
    const char *op = c->op;
    if (c->num_inputs < 2 || c->num_inputs > 4 || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected a, b, optional row_scale and col_scale, "
                           "and one output",
                           op, c->num_inputs, c->num_outputs);
    const RefTensor *a = &c->inputs[0], *b = &c->inputs[1], *out = &c->outputs[0];
    const RefTensor *rs = c->num_inputs > 2 && c->inputs[2].present ? &c->inputs[2] : NULL;
    const RefTensor *cs = c->num_inputs > 3 && c->inputs[3].present ? &c->inputs[3] : NULL;
    RefDType dtype = ANYACCEL_DTYPE_I32;
    if (ref_attr(c, "dtype")) {
        const char *name = ref_attr_str(c, "dtype");
        if (!name) return REF_INVALID("%s: attribute `dtype` must be a Str", op);
        dtype = ref_dtype_named(name);
        if (dtype != ANYACCEL_DTYPE_I32 && !(FLOATS & ANYACCEL_DTYPE_BIT(dtype)))
            return REF_INVALID("%s: attribute `dtype` is `%s`, expected i32, f32, f16 or bf16", op, name);
    }
    AnyaccelStatus st;
    if ((st = ref_check_tensor(op, "a", a, REF_DT(I8))) || (st = ref_check_tensor(op, "b", b, REF_DT(I8))) ||
        (st = ref_check_rank(op, "a", a, 2, "[M, K]")) || (st = ref_check_rank(op, "b", b, 2, "[K, N]")))
        return st;
    const int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
    if (b->shape[0] != k)
        return REF_INVALID("%s: a is %s but b is %s: inner dimensions must match (%lld vs %lld)", op,
                           ref_shape_str(2, a->shape).s, ref_shape_str(2, b->shape).s, (long long)k,
                           (long long)b->shape[0]);
    if ((rs || cs) && dtype == ANYACCEL_DTYPE_I32)
        return REF_INVALID("%s: %s given with the output dtype i32: the scales need a float output dtype (f32, f16 "
                           "or bf16)",
                           op, rs ? "row_scale" : "col_scale");
    const int64_t mshape[1] = {m}, nshape[1] = {n}, oshape[2] = {m, n};
    if ((rs && (st = check_as(op, "row_scale", rs, REF_DT(F32), 1, mshape, " ([M], one per row of a)"))) ||
        (cs && (st = check_as(op, "col_scale", cs, REF_DT(F32), 1, nshape, " ([N], one per column of b)"))) ||
        (st = check_as(op, "the output", out, ANYACCEL_DTYPE_BIT(dtype), 2, oshape, " ([M, N])")))
        return st;

    const int64_t sam = a->strides[0], sak = a->strides[1], sbk = b->strides[0], sbn = b->strides[1];
    const int64_t osize = (int64_t)ref_dtype_size(dtype);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            uint32_t acc = 0;
            for (int64_t p = 0; p < k; p++) {
                const int32_t av = (int8_t)a->base[i * sam + p * sak], bv = (int8_t)b->base[p * sbk + j * sbn];
                acc += (uint32_t)(av * bv); /* |a * b| <= 2^14: exact in int32, then modulo 2^32 */
            }
            /* The two's complement value of the 32 bits. */
            const int64_t v = acc >= 0x80000000u ? (int64_t)acc - ((int64_t)1 << 32) : (int64_t)acc;
            unsigned char *po = out->base + (i * out->strides[0] + j * out->strides[1]) * osize;
            if (dtype == ANYACCEL_DTYPE_I32) {
                ref_store_i(dtype, po, v);
                continue;
            }
            float f = (float)v; /* one rounding from the exact integer */
            if (rs) f = f * (float)ref_at(rs, i * rs->strides[0]);
            if (cs) f = f * (float)ref_at(cs, j * cs->strides[0]);
            ref_store_f(dtype, po, (double)f);
        }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_quant(const RefCall *c) {
    if (strcmp(c->op, "quantize") == 0) return op_quantize(c);
    if (strcmp(c->op, "dequantize") == 0) return op_dequantize(c);
    if (strcmp(c->op, "matmul_wq") == 0) return op_matmul_wq(c);
    if (strcmp(c->op, "matmul_i8") == 0) return op_matmul_i8(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
