/*
 * Resampling (docs/ops.md, section 8.13): adaptive_avg_pool2d and interpolate, as PyTorch's
 * torch.nn.functional ops of those names (interpolate with `size`, modes nearest and bilinear).
 *
 *   adaptive_avg_pool2d: x [N, C, H, W] -> out [N, C, OH, OW]   (output_size = [OH, OW])
 *   interpolate:         x [N, C, H, W] -> out [N, C, OH, OW]   (size = [OH, OW])
 *
 * Source positions are located by exact integer arithmetic:
 *
 *   adaptive_avg_pool2d: rows [floor(i H / OH), ceil((i + 1) H / OH)), columns likewise;
 *   nearest:             row floor(i H / OH);
 *   bilinear:            row num / den, with num / den = i (H - 1) / (OH - 1) (0 when OH = 1)
 *                        under align_corners, else ((2 i + 1) H - OH) / (2 OH) clamped at 0.
 *
 * Every numerator is below (2 OH + 1) H, which is checked to fit in int64 (an invalid argument
 * otherwise), so no position computed below leaves int64. Averages and blends are computed in
 * f32 (f16 and bf16 elements widened to f32 exactly) and rounded once to the output dtype; an
 * average whose f32 sum is not finite is summed again in f64 (see op_adaptive_avg_pool2d).
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ref.h"

#define RESAMPLE_DTYPES (REF_DT(F32) | REF_DT(F16) | REF_DT(BF16))

/* ---- The geometry ----------------------------------------------------------------------------- */

enum { R_ADAPTIVE_AVG, R_NEAREST, R_BILINEAR };

typedef struct {
    int kind;
    int align_corners; /* bilinear */
    int64_t n, c;
    int64_t in[2], out[2];
    /* The strides of x and out over [batch, channel, height, width]. */
    int64_t xs[4], os[4];
} ResampleGeom;

/* The required Ints attribute `name` as [OH, OW]: one value (both dimensions) or two, each >= 1. */
static AnyaccelStatus out_size(const RefCall *c, const char *name, int64_t *v) {
    const int64_t *vals = NULL;
    size_t len = 0;
    int r = ref_attr_ints(c, name, &vals, &len);
    if (r < 0) return REF_INVALID("%s: attribute `%s` must be Ints (or an Int)", c->op, name);
    if (r == 0) return REF_INVALID("%s: attribute `%s` (Ints) is required", c->op, name);
    if (len != 1 && len != 2)
        return REF_INVALID("%s: attribute `%s` has %zu values, expected 1 (for both spatial dimensions) or 2 ([OH, "
                           "OW])",
                           c->op, name, len);
    for (size_t i = 0; i < len; i++)
        if (vals[i] < 1)
            return REF_INVALID("%s: attribute `%s` is %s, expected every value >= 1", c->op, name,
                               ref_list_str(len, vals).s);
    v[0] = vals[0];
    v[1] = vals[len == 1 ? 0 : 1];
    return ANYACCEL_OK;
}

static AnyaccelStatus resample_geom(const RefCall *c, ResampleGeom *g) {
    const char *op = c->op;
    if (c->num_inputs != 1 || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected x and one output", op, c->num_inputs,
                           c->num_outputs);
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    AnyaccelStatus st;
    if ((st = ref_check_tensor(op, "x", x, RESAMPLE_DTYPES))) return st;
    if (out->present && out->dtype != x->dtype)
        return REF_INVALID("%s: the output has dtype %s but x has dtype %s: they must share one float dtype", op,
                           ref_dtype_name(out->dtype), ref_dtype_name(x->dtype));
    if ((st = ref_check_tensor(op, "the output", out, ANYACCEL_DTYPE_BIT(x->dtype)))) return st;
    if (x->ndim != 4)
        return REF_INVALID("%s: x has shape %s, expected rank 4 ([N, C, H, W])", op,
                           ref_shape_str(x->ndim, x->shape).s);

    /* Attributes. */
    const char *size_name = "output_size";
    g->kind = R_ADAPTIVE_AVG;
    g->align_corners = 0;
    if (strcmp(op, "interpolate") == 0) {
        size_name = "size";
        const RefAttr *m = ref_attr(c, "mode");
        const char *mode = ref_attr_str(c, "mode");
        if (m && !mode) return REF_INVALID("%s: attribute `mode` must be a Str (`nearest` or `bilinear`)", op);
        if (!mode || strcmp(mode, "nearest") == 0)
            g->kind = R_NEAREST;
        else if (strcmp(mode, "bilinear") == 0)
            g->kind = R_BILINEAR;
        else
            return REF_INVALID("%s: attribute `mode` is `%s`, expected `nearest` or `bilinear`", op, mode);
        int64_t align = 0;
        if (ref_attr_int(c, "align_corners", &align) < 0)
            return REF_INVALID("%s: attribute `align_corners` must be an Int (0 or 1)", op);
        if (align != 0 && align != 1)
            return REF_INVALID("%s: attribute `align_corners` is %lld, expected 0 or 1", op, (long long)align);
        if (align && g->kind == R_NEAREST)
            return REF_INVALID("%s: align_corners = 1 applies to mode bilinear only, not nearest", op);
        g->align_corners = (int)align;
    }
    if ((st = out_size(c, size_name, g->out))) return st;

    g->n = x->shape[0];
    g->c = x->shape[1];
    g->in[0] = x->shape[2];
    g->in[1] = x->shape[3];
    if (g->n > 0 && g->c > 0 && (g->in[0] == 0 || g->in[1] == 0))
        return REF_INVALID("%s: x has shape %s, expected H and W >= 1", op, ref_shape_str(4, x->shape).s);
    /* Every source numerator is below (2 out + 1) in: it must fit in int64. */
    static const char *const dim_names[2] = {"height", "width"};
    for (int d = 0; d < 2; d++) {
        int64_t num;
        if (!ref_mul_ok(g->out[d], 2, &num) || num == INT64_MAX || !ref_mul_ok(num + 1, g->in[d], &num))
            return REF_INVALID("%s: an output %s of %lld over an input %s of %lld overflows the source positions "
                               "((2 x %lld + 1) x %lld leaves int64)",
                               op, dim_names[d], (long long)g->out[d], dim_names[d], (long long)g->in[d],
                               (long long)g->out[d], (long long)g->in[d]);
    }

    int64_t expect[4] = {g->n, g->c, g->out[0], g->out[1]};
    int64_t count = 1;
    for (int d = 0; d < 4; d++)
        if (!ref_mul_ok(count, expect[d], &count))
            return REF_INVALID("%s: the output would have shape %s, whose element count overflows int64", op,
                               ref_shape_str(4, expect).s);
    int ok = out->ndim == 4;
    for (int d = 0; ok && d < 4; d++) ok = out->shape[d] == expect[d];
    if (!ok)
        return REF_INVALID("%s: the output has shape %s, expected %s", op, ref_shape_str(out->ndim, out->shape).s,
                           ref_shape_str(4, expect).s);
    for (int d = 0; d < 4; d++) {
        g->xs[d] = x->strides[d];
        g->os[d] = out->strides[d];
    }
    return ANYACCEL_OK;
}

/* ---- adaptive_avg_pool2d ---------------------------------------------------------------------- */

/* The window [lo, hi) of output index i along dimension d: floor(i in / out), ceil((i + 1) in / out). */
static void adaptive_window(const ResampleGeom *g, int d, int64_t i, int64_t *lo, int64_t *hi) {
    const int64_t in = g->in[d], out = g->out[d];
    *lo = i * in / out;
    *hi = ((i + 1) * in + out - 1) / out;
}

/* The sum of x[n, c] over the rows [y0, y1) and columns [x0, x1): in f32, or with `wide` in f64. */
static double window_sum(const ResampleGeom *g, const RefTensor *x, int64_t xb, int64_t y0, int64_t y1,
                         int64_t x0, int64_t x1, int wide) {
    float acc = 0.0f;
    double acc_wide = 0.0;
    for (int64_t iy = y0; iy < y1; iy++)
        for (int64_t ix = x0; ix < x1; ix++) {
            const double v = ref_at(x, xb + iy * g->xs[2] + ix * g->xs[3]);
            if (wide)
                acc_wide += v;
            else
                acc += (float)v;
        }
    return wide ? acc_wide : (double)acc;
}

/*
 * out[n, c, oy, ox] = the mean of x over its window (never empty: in >= 1 and out >= 1). Summed in
 * f32 and rounded once to the output dtype; where the f32 sum is not finite the element is summed
 * again in f64, so that an intermediate overflow of f32 does not turn a finite mean into an
 * infinity or an infinite one into NaN.
 */
static AnyaccelStatus op_adaptive_avg_pool2d(const RefCall *c) {
    ResampleGeom g;
    AnyaccelStatus st = resample_geom(c, &g);
    if (st) return st;
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    const int64_t osize = (int64_t)ref_dtype_size(out->dtype);
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t ch = 0; ch < g.c; ch++) {
            const int64_t xb = n * g.xs[0] + ch * g.xs[1];
            for (int64_t oy = 0; oy < g.out[0]; oy++) {
                int64_t y0, y1;
                adaptive_window(&g, 0, oy, &y0, &y1);
                for (int64_t ox = 0; ox < g.out[1]; ox++) {
                    int64_t x0, x1;
                    adaptive_window(&g, 1, ox, &x0, &x1);
                    /* The window lies inside the plane, whose element count fits in int64. */
                    const double divisor = (double)((y1 - y0) * (x1 - x0));
                    const float acc = (float)window_sum(&g, x, xb, y0, y1, x0, x1, 0);
                    double sum = acc;
                    if (!isfinite(acc)) sum = window_sum(&g, x, xb, y0, y1, x0, x1, 1);
                    const int64_t oo = n * g.os[0] + ch * g.os[1] + oy * g.os[2] + ox * g.os[3];
                    ref_store_f(out->dtype, out->base + oo * osize, sum / divisor);
                }
            }
        }
    return ANYACCEL_OK;
}

/* ---- interpolate ------------------------------------------------------------------------------ */

/* One dimension's taps of an output index: source rows i0 and i1 with weights 1 - lambda and lambda. */
typedef struct {
    int64_t i0, i1;
    float lambda;
} Taps;

/* The taps of output index i along dimension d. */
static Taps taps_of(const ResampleGeom *g, int d, int64_t i) {
    const int64_t in = g->in[d], out = g->out[d];
    Taps t = {0, 0, 0.0f};
    if (g->kind == R_NEAREST) {
        t.i0 = t.i1 = i * in / out;
        return t;
    }
    int64_t num, den;
    if (g->align_corners) {
        num = out > 1 ? i * (in - 1) : 0;
        den = out > 1 ? out - 1 : 1;
    } else {
        num = (2 * i + 1) * in - out;
        den = 2 * out;
        if (num < 0) num = 0;
    }
    t.i0 = num / den;
    t.lambda = (float)((double)(num - t.i0 * den) / (double)den);
    t.i1 = t.i0 + 1 < in ? t.i0 + 1 : in - 1;
    return t;
}

/*
 * nearest: out[n, c, oy, ox] = x[n, c, floor(oy H / OH), floor(ox W / OW)], the element itself.
 * bilinear: out = (1 - ly) ((1 - lx) x[y0, x0] + lx x[y0, x1]) + ly ((1 - lx) x[y1, x0] + lx x[y1, x1]),
 * in f32 and rounded once to the output dtype.
 */
static AnyaccelStatus op_interpolate(const RefCall *c) {
    ResampleGeom g;
    AnyaccelStatus st = resample_geom(c, &g);
    if (st) return st;
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    const int64_t size = (int64_t)ref_dtype_size(out->dtype);
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t ch = 0; ch < g.c; ch++) {
            const int64_t xb = n * g.xs[0] + ch * g.xs[1];
            for (int64_t oy = 0; oy < g.out[0]; oy++) {
                const Taps ty = taps_of(&g, 0, oy);
                const int64_t r0 = xb + ty.i0 * g.xs[2], r1 = xb + ty.i1 * g.xs[2];
                for (int64_t ox = 0; ox < g.out[1]; ox++) {
                    const Taps tx = taps_of(&g, 1, ox);
                    const int64_t oo = n * g.os[0] + ch * g.os[1] + oy * g.os[2] + ox * g.os[3];
                    unsigned char *dst = out->base + oo * size;
                    const int64_t c0 = tx.i0 * g.xs[3], c1 = tx.i1 * g.xs[3];
                    if (g.kind == R_NEAREST) {
                        memcpy(dst, x->base + (r0 + c0) * size, (size_t)size);
                        continue;
                    }
                    const float lx = tx.lambda, ly = ty.lambda;
                    const float v00 = (float)ref_at(x, r0 + c0), v01 = (float)ref_at(x, r0 + c1);
                    const float v10 = (float)ref_at(x, r1 + c0), v11 = (float)ref_at(x, r1 + c1);
                    const float top = (1.0f - lx) * v00 + lx * v01;
                    const float bottom = (1.0f - lx) * v10 + lx * v11;
                    const float v = (1.0f - ly) * top + ly * bottom;
                    ref_store_f(out->dtype, dst, (double)v);
                }
            }
        }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_resample(const RefCall *c) {
    if (strcmp(c->op, "adaptive_avg_pool2d") == 0) return op_adaptive_avg_pool2d(c);
    if (strcmp(c->op, "interpolate") == 0) return op_interpolate(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
