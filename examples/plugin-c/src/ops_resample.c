/*
 * Resampling (docs/ops.md, section 8.13): adaptive_avg_pool2d, adaptive_avg_pool3d and
 * interpolate, as PyTorch's torch.nn.functional ops of those names (interpolate with `size`,
 * modes nearest, bilinear and bicubic), and their gradients with respect to x.
 *
 *   adaptive_avg_pool2d: x [N, C, H, W] -> out [N, C, OH, OW]   (output_size = [OH, OW])
 *   interpolate:         x [N, C, H, W] -> out [N, C, OH, OW]   (size = [OH, OW])
 *   adaptive_avg_pool2d_backward, interpolate_backward:
 *                        grad [N, C, OH, OW] -> dx [N, C, H, W]  (input_size = [N, C, H, W])
 *
 * Source positions are located by exact integer arithmetic:
 *
 *   adaptive_avg_pool2d: rows [floor(i H / OH), ceil((i + 1) H / OH)), columns likewise;
 *   nearest:             row floor(i H / OH);
 *   bilinear:            row num / den, with num / den = i (H - 1) / (OH - 1) (0 when OH = 1)
 *                        under align_corners, else ((2 i + 1) H - OH) / (2 OH) clamped at 0;
 *   bicubic:             the same fraction, not clamped (it may be negative): the four rows
 *                        floor - 1 .. floor + 2, clamped to the edge, weighted by Keys' cubic
 *                        convolution (a = -0.75) of the fraction's part.
 *
 * Every numerator is below (2 OH + 1) H, which is checked to fit in int64 (an invalid argument
 * otherwise), so no position computed below leaves int64. Averages and blends are computed in
 * f32 (f16 and bf16 elements widened to f32 exactly) and rounded once to the output dtype; an
 * average whose f32 sum is not finite is summed again in f64 (see ref_window_means). A gradient
 * has the geometry of its forward op over an x of shape input_size (OH and OW are grad's); each
 * element of dx gathers, in f64, the terms of the outputs that read it, and is rounded once.
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ref.h"

/* ---- The geometry ----------------------------------------------------------------------------- */

enum { R_ADAPTIVE_AVG, R_NEAREST, R_BILINEAR, R_BICUBIC };

typedef struct {
    int kind;
    int align_corners; /* bilinear, bicubic */
    int64_t n, c;
    int64_t in[2], out[2];
    /* The strides over [batch, channel, height, width] of x (a gradient's dx) and out (a
     * gradient's grad). */
    int64_t xs[4], os[4];
} ResampleGeom;

static const char *const dim_names[2] = {"height", "width"};

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

/* The kind of the call (adaptive average, or interpolate's `mode`) and align_corners. */
static AnyaccelStatus resample_mode(const RefCall *c, int interpolate, ResampleGeom *g) {
    const char *op = c->op;
    g->kind = R_ADAPTIVE_AVG;
    g->align_corners = 0;
    if (!interpolate) return ANYACCEL_OK;
    const RefAttr *m = ref_attr(c, "mode");
    const char *mode = ref_attr_str(c, "mode");
    if (m && !mode)
        return REF_INVALID("%s: attribute `mode` must be a Str (`nearest`, `bilinear` or `bicubic`)", op);
    if (!mode || strcmp(mode, "nearest") == 0)
        g->kind = R_NEAREST;
    else if (strcmp(mode, "bilinear") == 0)
        g->kind = R_BILINEAR;
    else if (strcmp(mode, "bicubic") == 0)
        g->kind = R_BICUBIC;
    else
        return REF_INVALID("%s: attribute `mode` is `%s`, expected `nearest`, `bilinear` or `bicubic`", op, mode);
    AnyaccelStatus st = ref_flag_attr(c, "align_corners", &g->align_corners);
    if (st) return st;
    if (g->align_corners && g->kind == R_NEAREST)
        return REF_INVALID("%s: align_corners = 1 applies to modes bilinear and bicubic, not nearest", op);
    return ANYACCEL_OK;
}

/* The sizes of a resampling of an x of shape xshape [N, C, H, W] to g->out (set): H and W >= 1
 * unless there is no plane, and every source numerator in int64. */
static AnyaccelStatus resample_sizes(const char *op, const char *xname, const int64_t *xshape, ResampleGeom *g) {
    g->n = xshape[0];
    g->c = xshape[1];
    g->in[0] = xshape[2];
    g->in[1] = xshape[3];
    if (g->n > 0 && g->c > 0 && (g->in[0] == 0 || g->in[1] == 0))
        return REF_INVALID("%s: %s has shape %s, expected H and W >= 1", op, xname, ref_shape_str(4, xshape).s);
    /* Every source numerator is below (2 out + 1) in: it must fit in int64. */
    for (int d = 0; d < 2; d++) {
        int64_t num;
        if (!ref_mul_ok(g->out[d], 2, &num) || num == INT64_MAX || !ref_mul_ok(num + 1, g->in[d], &num))
            return REF_INVALID("%s: an output %s of %lld over an input %s of %lld overflows the source positions "
                               "((2 x %lld + 1) x %lld leaves int64)",
                               op, dim_names[d], (long long)g->out[d], dim_names[d], (long long)g->in[d],
                               (long long)g->out[d], (long long)g->in[d]);
    }
    return ANYACCEL_OK;
}

/* The geometry of a forward op: x -> out. */
static AnyaccelStatus resample_geom(const RefCall *c, int interpolate, ResampleGeom *g) {
    const char *op = c->op;
    if (c->num_inputs != 1 || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected x and one output", op, c->num_inputs,
                           c->num_outputs);
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    static const char *const names[2] = {"x", "the output"};
    const RefTensor *const tensors[2] = {x, out};
    AnyaccelStatus st;
    if ((st = ref_check_floats(op, 2, names, tensors)) ||
        (st = ref_check_rank(op, "x", x, 4, "[N, C, H, W]")) || (st = resample_mode(c, interpolate, g)) ||
        (st = out_size(c, interpolate ? "size" : "output_size", g->out)) ||
        (st = resample_sizes(op, "x", x->shape, g)))
        return st;
    const int64_t expect[4] = {g->n, g->c, g->out[0], g->out[1]};
    if ((st = ref_check_shape(op, "the output", out, 4, expect, ""))) return st;
    for (int d = 0; d < 4; d++) {
        g->xs[d] = x->strides[d];
        g->os[d] = out->strides[d];
    }
    return ANYACCEL_OK;
}

/* The geometry of a gradient: grad [N, C, OH, OW] -> dx of shape input_size [N, C, H, W], the
 * forward op over an x of that shape to grad's spatial sizes. */
static AnyaccelStatus resample_backward_geom(const RefCall *c, int interpolate, ResampleGeom *g) {
    const char *op = c->op;
    if (c->num_inputs != 1 || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected grad and one output (dx)", op,
                           c->num_inputs, c->num_outputs);
    const RefTensor *grad = &c->inputs[0], *dx = &c->outputs[0];
    static const char *const names[2] = {"grad", "dx"};
    const RefTensor *const tensors[2] = {grad, dx};
    int64_t input_size[4];
    AnyaccelStatus st;
    if ((st = ref_check_floats(op, 2, names, tensors)) ||
        (st = ref_check_rank(op, "grad", grad, 4, "[N, C, OH, OW]")) || (st = resample_mode(c, interpolate, g)) ||
        (st = ref_shape_attr(c, "input_size", 4, "[N, C, H, W]", input_size)))
        return st;
    g->out[0] = grad->shape[2];
    g->out[1] = grad->shape[3];
    if (g->out[0] < 1 || g->out[1] < 1)
        return REF_INVALID("%s: grad has shape %s, expected OH and OW >= 1 (the %s of %s)", op,
                           ref_shape_str(4, grad->shape).s, interpolate ? "size" : "output_size",
                           interpolate ? "interpolate" : "adaptive_avg_pool2d");
    if ((st = resample_sizes(op, "x (input_size)", input_size, g))) return st;
    const int64_t expect[4] = {g->n, g->c, g->out[0], g->out[1]};
    char why[sizeof(RefShapeStr) + 96];
    snprintf(why, sizeof why, " (the output of %s over input_size %s)",
             interpolate ? "interpolate" : "adaptive_avg_pool2d", ref_shape_str(4, input_size).s);
    if ((st = ref_check_shape(op, "grad", grad, 4, expect, why)) ||
        (st = ref_check_shape(op, "dx", dx, 4, input_size, " (input_size)")))
        return st;
    for (int d = 0; d < 4; d++) {
        g->xs[d] = dx->strides[d];
        g->os[d] = grad->strides[d];
    }
    return ANYACCEL_OK;
}

/* ---- adaptive_avg_pool2d ---------------------------------------------------------------------- */

/* The window w[0] .. w[1] (exclusive) of output index i along dimension d: floor(i in / out),
 * ceil((i + 1) in / out). */
static void adaptive_window(const ResampleGeom *g, int d, int64_t i, int64_t *w) {
    const int64_t in = g->in[d], out = g->out[d];
    w[0] = i * in / out;
    w[1] = ((i + 1) * in + out - 1) / out;
}

/* The window of output (oy, ox), rows[0..2) x cols[0..2), and its element count: a RefWindowFn
 * over a ResampleGeom. The window lies inside the plane, whose element count fits in int64. */
static double adaptive_count(const void *geom, int64_t oy, int64_t ox, int64_t *rows, int64_t *cols) {
    const ResampleGeom *g = geom;
    adaptive_window(g, 0, oy, rows);
    adaptive_window(g, 1, ox, cols);
    return (double)((rows[1] - rows[0]) * (cols[1] - cols[0]));
}

/*
 * out[n, c, oy, ox] = the mean of x over its window (never empty: in >= 1 and out >= 1), summed
 * in f32 (again in f64 where that is not finite) and rounded once to the output dtype:
 * ref_window_means.
 */
static AnyaccelStatus op_adaptive_avg_pool2d(const RefCall *c) {
    ResampleGeom g;
    AnyaccelStatus st = resample_geom(c, 0, &g);
    if (st) return st;
    const int64_t shape[4] = {g.n, g.c, g.out[0], g.out[1]};
    ref_window_means(&c->inputs[0], g.xs, &c->outputs[0], g.os, shape, adaptive_count, &g);
    return ANYACCEL_OK;
}

/* ---- interpolate ------------------------------------------------------------------------------ */

/* One dimension's taps of an output index: source rows i0 and i1 with weights 1 - lambda and lambda
 * (bicubic: rows cubic[0..4) with weights w[0..4)). */
typedef struct {
    int64_t i0, i1;
    double lambda; /* (num - i0 den) / den, rounded once */
    int64_t cubic[4];
    double w[4];
} Taps;

/* Keys' cubic convolution weights (a = -0.75, as PyTorch) of the taps at offsets -1, 0, 1, 2
 * from a source position whose fractional part is t. */
static void cubic_weights(double t, double *w) {
    const double a = -0.75;
    const double x[4] = {t + 1.0, t, 1.0 - t, 2.0 - t};
    for (int k = 0; k < 4; k++)
        w[k] = (k == 1 || k == 2) ? ((a + 2.0) * x[k] - (a + 3.0)) * x[k] * x[k] + 1.0
                                  : ((a * x[k] - 5.0 * a) * x[k] + 8.0 * a) * x[k] - 4.0 * a;
}

/* The taps of output index i along dimension d. */
static Taps taps_of(const ResampleGeom *g, int d, int64_t i) {
    const int64_t in = g->in[d], out = g->out[d];
    Taps t = {0};
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
        if (num < 0 && g->kind != R_BICUBIC) num = 0;
    }
    if (g->kind == R_BICUBIC) {
        /* The floor of num / den (num > -den), and the rows around it clamped to the edge. */
        const int64_t base = num < 0 ? -1 : num / den;
        cubic_weights((double)(num - base * den) / (double)den, t.w);
        for (int k = 0; k < 4; k++) {
            const int64_t r = base + k - 1;
            t.cubic[k] = r < 0 ? 0 : (r > in - 1 ? in - 1 : r);
        }
        t.i0 = t.cubic[0];
        t.i1 = t.cubic[3];
        return t;
    }
    t.i0 = num / den;
    t.lambda = (double)(num - t.i0 * den) / (double)den;
    t.i1 = t.i0 + 1 < in ? t.i0 + 1 : in - 1;
    return t;
}

/*
 * nearest: out[n, c, oy, ox] = x[n, c, floor(oy H / OH), floor(ox W / OW)], the element itself.
 * bilinear: out = (1 - ly) ((1 - lx) x[y0, x0] + lx x[y0, x1]) + ly ((1 - lx) x[y1, x0] + lx x[y1, x1]),
 * in f32 (lambda rounded to f32) and rounded once to the output dtype.
 * bicubic: out = sum over ky of wy[ky] (sum over kx of wx[kx] x[y[ky], x[kx]]), in f32 (weights
 * rounded to f32) and rounded once to the output dtype.
 */
static AnyaccelStatus op_interpolate(const RefCall *c) {
    ResampleGeom g;
    AnyaccelStatus st = resample_geom(c, 1, &g);
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
                    if (g.kind == R_BICUBIC) {
                        float v = 0.0f;
                        for (int a = 0; a < 4; a++) {
                            const int64_t row = xb + ty.cubic[a] * g.xs[2];
                            float r = 0.0f;
                            for (int b = 0; b < 4; b++)
                                r += (float)tx.w[b] * (float)ref_at(x, row + tx.cubic[b] * g.xs[3]);
                            v += (float)ty.w[a] * r;
                        }
                        ref_store_f(out->dtype, dst, (double)v);
                        continue;
                    }
                    const float lx = (float)tx.lambda, ly = (float)ty.lambda;
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

/* ---- The gradients ---------------------------------------------------------------------------- */

/* The first and last input index, span[0] and span[1], that output index o of dimension d
 * reads: its window (adaptive_avg_pool2d), its source (nearest), its two taps (bilinear) or its
 * first and last of four (bicubic). Both are nondecreasing in o. */
static void reach(const ResampleGeom *g, int d, int64_t o, int64_t *span) {
    if (g->kind == R_ADAPTIVE_AVG) {
        adaptive_window(g, d, o, span);
        span[1]--;
        return;
    }
    const Taps t = taps_of(g, d, o);
    span[0] = t.i0;
    span[1] = t.i1;
}

/* The outputs [r[0], r[1]) of dimension d that read input index i: those whose reach holds i, an
 * interval since both ends of the reach are nondecreasing. Called for i = 0, 1, 2, ... in turn
 * from r = {0, 0}, both ends only move forward: O(in + out) calls of reach in all. */
static void readers_next(const ResampleGeom *g, int d, int64_t i, int64_t *r) {
    int64_t span[2];
    /* r[0]: the first output whose reach ends at or after i; r[1]: the first that starts after i. */
    while (r[0] < g->out[d] && (reach(g, d, r[0], span), span[1] < i)) r[0]++;
    if (r[1] < r[0]) r[1] = r[0];
    while (r[1] < g->out[d] && (reach(g, d, r[1], span), span[0] <= i)) r[1]++;
}

/* The weights that output index o of dimension d gives input index i, one of its reach, in
 * w[0..count), count returned: one per tap of o at i, (1 - lambda) where i0 = i and lambda where
 * i1 = i (bilinear: two when i0 = i1 = i), or 1 (nearest); bicubic: one, the sum of the
 * weights of o's taps at i (clamped taps at an edge name it more than once), or none. */
static int weights_of(const ResampleGeom *g, int d, int64_t o, int64_t i, double *w) {
    if (g->kind == R_NEAREST) {
        w[0] = 1.0;
        return 1;
    }
    const Taps t = taps_of(g, d, o);
    if (g->kind == R_BICUBIC) {
        int hit = 0;
        w[0] = 0.0;
        for (int k = 0; k < 4; k++)
            if (t.cubic[k] == i) {
                w[0] += t.w[k];
                hit = 1;
            }
        return hit;
    }
    int count = 0;
    if (t.i0 == i) w[count++] = 1.0 - t.lambda;
    if (t.i1 == i) w[count++] = t.lambda;
    return count;
}

/*
 * adaptive_avg_pool2d_backward: dx[n, c, iy, ix] = the sum of grad[n, c, oy, ox] / (the element
 * count of its window) over the windows that hold (iy, ix).
 * interpolate_backward: dx[n, c, iy, ix] = the sum of wy wx grad[n, c, oy, ox] over the outputs
 * that read (iy, ix), one term per pair of their taps at (iy, ix) (weights_of), as the forward
 * op's four terms: a term whose weight is 0 (tap i1 with lambda 0) is still added, so that an
 * infinite grad there gives NaN (0 x Inf), as PyTorch's gradient does. bicubic: one term per
 * output, its taps at (iy, ix) combined per dimension (docs/ops.md).
 * Summed in f64 (in increasing oy, then ox) and rounded once to dx's dtype.
 */
static AnyaccelStatus op_resample_backward(const RefCall *c, int interpolate) {
    ResampleGeom g;
    AnyaccelStatus st = resample_backward_geom(c, interpolate, &g);
    if (st) return st;
    const RefTensor *grad = &c->inputs[0], *dx = &c->outputs[0];
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t ch = 0; ch < g.c; ch++) {
            const int64_t gb = n * g.os[0] + ch * g.os[1];
            int64_t ry[2] = {0, 0};
            for (int64_t iy = 0; iy < g.in[0]; iy++) {
                readers_next(&g, 0, iy, ry);
                int64_t rx[2] = {0, 0};
                for (int64_t ix = 0; ix < g.in[1]; ix++) {
                    readers_next(&g, 1, ix, rx);
                    double acc = 0.0;
                    for (int64_t oy = ry[0]; oy < ry[1]; oy++) {
                        double wy[2], wx[2];
                        const int ny = interpolate ? weights_of(&g, 0, oy, iy, wy) : 0;
                        for (int64_t ox = rx[0]; ox < rx[1]; ox++) {
                            const double v = ref_at(grad, gb + oy * g.os[2] + ox * g.os[3]);
                            if (!interpolate) {
                                int64_t rows[2], cols[2];
                                acc += v / adaptive_count(&g, oy, ox, rows, cols);
                                continue;
                            }
                            const int nx = weights_of(&g, 1, ox, ix, wx);
                            for (int a = 0; a < ny; a++)
                                for (int b = 0; b < nx; b++) acc += wy[a] * wx[b] * v;
                        }
                    }
                    ref_put(dx, n * g.xs[0] + ch * g.xs[1] + iy * g.xs[2] + ix * g.xs[3], acc);
                }
            }
        }
    return ANYACCEL_OK;
}

/* ---- adaptive_avg_pool3d and its gradient ----------------------------------------------------- */

/*
 * adaptive_avg_pool3d: x [N, C, D, H, W] -> out [N, C, OD, OH, OW], the mean of x over the box of
 * adaptive_avg_pool2d's windows in each of the three dimensions, summed in f64 and rounded once.
 * adaptive_avg_pool3d_backward: grad [N, C, OD, OH, OW] -> dx of shape input_size: each element
 * gathers, in f64, grad / (the box's element count) of every output whose box holds it (the
 * outputs floor(i out / in) .. ceil((i + 1) out / in) of each dimension), rounded once.
 */
static AnyaccelStatus op_adaptive_avg_pool3d(const RefCall *c, int backward) {
    const char *op = c->op;
    if (c->num_inputs != 1 || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected one input and one output", op,
                           c->num_inputs, c->num_outputs);
    const RefTensor *t = &c->inputs[0], *res = &c->outputs[0];
    const char *const names[2] = {backward ? "grad" : "x", backward ? "dx" : "the output"};
    const RefTensor *const tensors[2] = {t, res};
    AnyaccelStatus st;
    if ((st = ref_check_floats(op, 2, names, tensors)) ||
        (st = ref_check_rank(op, names[0], t, 5, backward ? "[N, C, OD, OH, OW]" : "[N, C, D, H, W]")))
        return st;
    int64_t x[5], out[3];
    if (backward) {
        if ((st = ref_shape_attr(c, "input_size", 5, "[N, C, D, H, W]", x))) return st;
        for (int d = 0; d < 3; d++) {
            out[d] = t->shape[2 + d];
            if (out[d] < 1)
                return REF_INVALID("%s: grad has shape %s, expected OD, OH and OW >= 1", op,
                                   ref_shape_str(5, t->shape).s);
        }
    } else {
        const int64_t *vals = NULL;
        size_t len = 0;
        int r = ref_attr_ints(c, "output_size", &vals, &len);
        if (r < 0) return REF_INVALID("%s: attribute `output_size` must be Ints (or an Int)", op);
        if (r == 0) return REF_INVALID("%s: attribute `output_size` (Ints) is required", op);
        if (len != 1 && len != 3)
            return REF_INVALID("%s: attribute `output_size` has %zu values, expected 1 or 3 ([OD, OH, OW])", op,
                               len);
        for (int d = 0; d < 3; d++) {
            out[d] = vals[len == 1 ? 0 : d];
            if (out[d] < 1)
                return REF_INVALID("%s: attribute `output_size` is %s, expected every value >= 1", op,
                                   ref_list_str(len, vals).s);
        }
        memcpy(x, t->shape, sizeof x);
    }
    if (x[0] > 0 && x[1] > 0 && (x[2] == 0 || x[3] == 0 || x[4] == 0))
        return REF_INVALID("%s: x has shape %s, expected D, H and W >= 1", op, ref_shape_str(5, x).s);
    const int64_t oshape[5] = {x[0], x[1], out[0], out[1], out[2]};
    if (backward) {
        if ((st = ref_check_shape(op, "grad", t, 5, oshape, " (the output of adaptive_avg_pool3d over input_size)")) ||
            (st = ref_check_shape(op, "dx", res, 5, x, " (input_size)")))
            return st;
    } else if ((st = ref_check_shape(op, "the output", res, 5, oshape, ""))) {
        return st;
    }
    /* Every size is below 2^62 (element counts fit in int64), and i out < in out fits too. */
    const RefTensor *src = t, *dst = res;
    const int64_t *in = x + 2;
    for (int64_t n = 0; n < x[0]; n++)
        for (int64_t ch = 0; ch < x[1]; ch++) {
            const int64_t sb = n * src->strides[0] + ch * src->strides[1];
            const int64_t db = n * dst->strides[0] + ch * dst->strides[1];
            const int64_t *walk = backward ? in : out; /* the positions written */
            for (int64_t a = 0; a < walk[0]; a++)
                for (int64_t b = 0; b < walk[1]; b++)
                    for (int64_t e = 0; e < walk[2]; e++) {
                        const int64_t at[3] = {a, b, e};
                        int64_t lo[3], hi[3];
                        for (int d = 0; d < 3; d++) {
                            if (backward) { /* the outputs whose window holds at[d] */
                                lo[d] = at[d] * out[d] / in[d];
                                hi[d] = ((at[d] + 1) * out[d] + in[d] - 1) / in[d];
                            } else { /* the window of output at[d] */
                                lo[d] = at[d] * in[d] / out[d];
                                hi[d] = ((at[d] + 1) * in[d] + out[d] - 1) / out[d];
                            }
                        }
                        double acc = 0.0;
                        for (int64_t i = lo[0]; i < hi[0]; i++)
                            for (int64_t j = lo[1]; j < hi[1]; j++)
                                for (int64_t k = lo[2]; k < hi[2]; k++) {
                                    const int64_t p[3] = {i, j, k};
                                    const double v =
                                        ref_at(src, sb + i * src->strides[2] + j * src->strides[3] + k * src->strides[4]);
                                    if (!backward) {
                                        acc += v;
                                        continue;
                                    }
                                    /* Output p's window must hold the element; its count divides. */
                                    double count = 1.0;
                                    int holds = 1;
                                    for (int d = 0; d < 3; d++) {
                                        const int64_t w0 = p[d] * in[d] / out[d];
                                        const int64_t w1 = ((p[d] + 1) * in[d] + out[d] - 1) / out[d];
                                        holds &= w0 <= at[d] && at[d] < w1;
                                        count *= (double)(w1 - w0);
                                    }
                                    if (holds) acc += v / count;
                                }
                        if (!backward) acc /= (double)((hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]));
                        ref_put(dst, db + a * dst->strides[2] + b * dst->strides[3] + e * dst->strides[4], acc);
                    }
        }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_resample(const RefCall *c) {
    const char *op = c->op;
    if (strcmp(op, "adaptive_avg_pool3d") == 0) return op_adaptive_avg_pool3d(c, 0);
    if (strcmp(op, "adaptive_avg_pool3d_backward") == 0) return op_adaptive_avg_pool3d(c, 1);
    if (strcmp(op, "adaptive_avg_pool2d") == 0) return op_adaptive_avg_pool2d(c);
    if (strcmp(op, "interpolate") == 0) return op_interpolate(c);
    if (strcmp(op, "adaptive_avg_pool2d_backward") == 0) return op_resample_backward(c, 0);
    if (strcmp(op, "interpolate_backward") == 0) return op_resample_backward(c, 1);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", op);
}
