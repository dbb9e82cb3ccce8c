/*
 * Pooling (docs/ops.md, section 8.12): max_pool1d, max_pool2d, avg_pool1d and avg_pool2d, as
 * PyTorch's torch.nn.functional ops of those names (max pools with return_indices=True).
 *
 *   max_pool1d: x [N, C, L]    -> out [N, C, L_out],        indices (i64) [N, C, L_out]
 *   max_pool2d: x [N, C, H, W] -> out [N, C, H_out, W_out], indices (i64) [N, C, H_out, W_out]
 *   avg_pool1d: x [N, C, L]    -> out [N, C, L_out]
 *   avg_pool2d: x [N, C, H, W] -> out [N, C, H_out, W_out]
 *
 * A 1-D pool runs as a 2-D one over a height of 1 (kernel height 1, stride 1, no padding, no
 * dilation along it). A max pool selects an input element, so its value is copied exactly; an
 * average is summed in f32 (f16 and bf16 elements widened to f32 exactly) and rounded once to
 * the output dtype, and an element whose f32 sum is not finite is summed again in f64 (see
 * op_avg_pool).
 *
 * Every tensor is checked once (its element count and the offsets of its elements fit in int64),
 * and the output size is derived with checked arithmetic: the padded input size in + 2 p fits in
 * int64, every window start o * s - p lies in [-p, in) and every tap start + j * d below in + p,
 * so that no position computed below leaves int64. The loops visit only the taps inside the
 * input, so a kernel far larger than the input (possible with a large padding) costs nothing.
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ref.h"

#define POOL_DTYPES (REF_DT(F32) | REF_DT(F16) | REF_DT(BF16))

/* ---- Helpers ---------------------------------------------------------------------------------- */

/* The Flag attribute `name` (an Int, 0 or 1), `*out` holding its default. */
static AnyaccelStatus flag_attr(const RefCall *c, const char *name, int *out) {
    int64_t v = *out;
    if (ref_attr_int(c, name, &v) < 0) return REF_INVALID("%s: attribute `%s` must be an Int (0 or 1)", c->op, name);
    if (v != 0 && v != 1)
        return REF_INVALID("%s: attribute `%s` is %lld, expected 0 or 1", c->op, name, (long long)v);
    *out = (int)v;
    return ANYACCEL_OK;
}

/* ---- The geometry ----------------------------------------------------------------------------- */

/* A call's geometry, lifted to two spatial dimensions [height, width] (a 1-D pool has a height
 * of 1, a kernel height of 1, stride and dilation 1 and no padding along it). */
typedef struct {
    int max; /* a max pool (two outputs) */
    int64_t n, c;
    int64_t in[2], k[2], out[2], stride[2], pad[2], dil[2];
    int include_pad; /* avg pools: padding counts in the divisor */
    /* The strides of x, out and (max pools) indices over [batch, channel, height, width]. */
    int64_t xs[4], os[4], is[4];
} PoolGeom;

/* The expected shape of an output, [N, C, out...], has rank spatial + 2. */
static AnyaccelStatus check_out_shape(const char *op, const char *name, const RefTensor *t, int spatial,
                                      const int64_t *expect) {
    int rank = spatial + 2;
    int ok = t->ndim == rank;
    for (int d = 0; ok && d < rank; d++) ok = t->shape[d] == expect[d];
    if (!ok)
        return REF_INVALID("%s: %s has shape %s, expected %s", op, name, ref_shape_str(t->ndim, t->shape).s,
                           ref_shape_str(rank, expect).s);
    return ANYACCEL_OK;
}

static AnyaccelStatus pool_geom(const RefCall *c, int spatial, int max, PoolGeom *g) {
    const char *op = c->op;
    int rank = spatial + 2;
    size_t outputs = max ? 2 : 1;
    if (c->num_inputs != 1 || c->num_outputs != outputs)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected x and %s", op, c->num_inputs,
                           c->num_outputs, max ? "two outputs (out, indices)" : "one output");
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    const RefTensor *indices = max ? &c->outputs[1] : NULL;
    AnyaccelStatus st;
    if ((st = ref_check_tensor(op, "x", x, POOL_DTYPES))) return st;
    if (out->present && out->dtype != x->dtype)
        return REF_INVALID("%s: the output has dtype %s but x has dtype %s: they must share one float dtype", op,
                           ref_dtype_name(out->dtype), ref_dtype_name(x->dtype));
    if ((st = ref_check_tensor(op, "the output", out, ANYACCEL_DTYPE_BIT(x->dtype)))) return st;
    if (indices) {
        if (indices->present && indices->dtype != ANYACCEL_DTYPE_I64)
            return REF_INVALID("%s: indices has dtype %s, expected i64", op, ref_dtype_name(indices->dtype));
        if ((st = ref_check_tensor(op, "indices", indices, REF_DT(I64)))) return st;
    }

    if (x->ndim != rank)
        return REF_INVALID("%s: x has shape %s, expected rank %d (%s)", op, ref_shape_str(x->ndim, x->shape).s, rank,
                           spatial == 1 ? "[N, C, L]" : "[N, C, H, W]");

    /* Attributes: kernel_size is required, stride defaults to it. */
    static const int64_t zeros[2] = {0, 0}, ones[2] = {1, 1};
    int64_t k[2], stride[2], pad[2], dil[2] = {1, 1};
    if ((st = ref_per_dim(c, "kernel_size", spatial, ones, 1, 1, 0, k)) ||
        (st = ref_per_dim(c, "stride", spatial, k, 1, 0, 1, stride)) ||
        (st = ref_per_dim(c, "padding", spatial, zeros, 0, 0, 0, pad)) ||
        (max && (st = ref_per_dim(c, "dilation", spatial, ones, 1, 0, 0, dil))))
        return st;
    int ceil_mode = 0, include_pad = 1;
    if ((st = flag_attr(c, "ceil_mode", &ceil_mode))) return st;
    if (!max && (st = flag_attr(c, "count_include_pad", &include_pad))) return st;

    g->max = max;
    g->n = x->shape[0];
    g->c = x->shape[1];
    g->include_pad = !max && include_pad;

    /* Lift to two spatial dimensions. */
    int first = 2 - spatial;
    for (int d = 0; d < 2; d++) {
        g->in[d] = 1;
        g->k[d] = 1;
        g->stride[d] = 1;
        g->pad[d] = 0;
        g->dil[d] = 1;
        g->out[d] = 1;
    }
    for (int d = 0; d < spatial; d++) {
        g->in[first + d] = x->shape[2 + d];
        g->k[first + d] = k[d];
        g->stride[first + d] = stride[d];
        g->pad[first + d] = pad[d];
        g->dil[first + d] = dil[d];
    }
    static const char *const dim_names[2][2] = {{"length", "length"}, {"height", "width"}};
    for (int d = first; d < 2; d++) {
        const char *dim = dim_names[spatial - 1][d];
        if (g->pad[d] > g->k[d] / 2)
            return REF_INVALID("%s: padding %lld along the %s is more than half the kernel size %lld (at most %lld)",
                               op, (long long)g->pad[d], dim, (long long)g->k[d], (long long)(g->k[d] / 2));
        /* span = in + 2 pad - (dil (k - 1) + 1) */
        int64_t padded, extent;
        if (!ref_mul_ok(g->pad[d], 2, &padded) || !ref_add_ok(padded, g->in[d], &padded) ||
            !ref_mul_ok(g->dil[d], g->k[d] - 1, &extent) || !ref_add_ok(extent, 1, &extent))
            return REF_INVALID("%s: the output size along the %s overflows int64", op, dim);
        if (extent > padded && max)
            return REF_INVALID("%s: the window spans %lld (dilation %lld x (size %lld - 1) + 1) but the padded "
                               "input %s is %lld (%lld + 2 x %lld): the output would be empty",
                               op, (long long)extent, (long long)g->dil[d], (long long)g->k[d], dim,
                               (long long)padded, (long long)g->in[d], (long long)g->pad[d]);
        if (extent > padded)
            return REF_INVALID("%s: the kernel size %lld is larger than the padded input %s %lld (%lld + 2 x %lld): "
                               "the output would be empty",
                               op, (long long)g->k[d], dim, (long long)padded, (long long)g->in[d],
                               (long long)g->pad[d]);
        const int64_t span = padded - extent, s = g->stride[d];
        int64_t o = span / s;
        if (ceil_mode && span % s != 0) o++;
        /* o = (the number of windows) - 1; with ceil_mode the last window must start inside the
         * input or its left padding: o * s < in + pad (a product beyond int64 is beyond it too). */
        int64_t last;
        if (ceil_mode && (!ref_mul_ok(o, s, &last) || last >= g->in[d] + g->pad[d])) o--;
        g->out[d] = o + 1;
    }

    int64_t expect[4] = {g->n, g->c, g->out[0], g->out[1]};
    if (spatial == 1) expect[2] = g->out[1];
    int64_t count = 1;
    for (int d = 0; d < rank; d++)
        if (!ref_mul_ok(count, expect[d], &count))
            return REF_INVALID("%s: the output would have shape %s, whose element count overflows int64", op,
                               ref_shape_str(rank, expect).s);
    if ((st = check_out_shape(op, "the output", out, spatial, expect))) return st;
    if (indices && (st = check_out_shape(op, "indices", indices, spatial, expect))) return st;

    ref_strides4(x, spatial, g->xs);
    ref_strides4(out, spatial, g->os);
    if (indices) ref_strides4(indices, spatial, g->is);
    return ANYACCEL_OK;
}

/* ---- max_pool1d, max_pool2d ------------------------------------------------------------------- */

/* The taps j in [lo, hi) of the window starting at `start` (stride `dil`, `k` taps) whose positions
 * start + j * dil lie in [0, in); hi <= lo when none does. start >= -pad > -in - pad - 1, and
 * start < in + pad, so every difference below fits in int64. */
static void taps_inside(int64_t start, int64_t k, int64_t dil, int64_t in, int64_t *lo, int64_t *hi) {
    *lo = 0;
    if (start < 0) *lo = (-start) / dil + ((-start) % dil != 0); /* the first j with start + j*dil >= 0 */
    *hi = 0;
    if (start <= in - 1) *hi = (in - 1 - start) / dil + 1; /* one past the last j with start + j*dil < in */
    if (*hi > k) *hi = k;
}

/*
 * out[n, c, oy, ox] = the largest x[n, c, iy, ix] over the taps of the window (iy = oy*sh - ph +
 * jy*dh, ix likewise) inside the input; padding is -inf and never chosen. NaN wins (the first NaN
 * in window order), ties keep the first tap in row-major window order. indices = iy * W + ix, the
 * flat index within the (n, c) plane; a window without a tap inside the input gives -inf and -1.
 */
static AnyaccelStatus op_max_pool(const RefCall *c, int spatial) {
    PoolGeom g;
    AnyaccelStatus st = pool_geom(c, spatial, 1, &g);
    if (st) return st;
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0], *indices = &c->outputs[1];
    const int64_t xsize = (int64_t)ref_dtype_size(x->dtype);
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t ch = 0; ch < g.c; ch++) {
            const int64_t xb = n * g.xs[0] + ch * g.xs[1];
            for (int64_t oy = 0; oy < g.out[0]; oy++) {
                const int64_t y0 = oy * g.stride[0] - g.pad[0];
                int64_t jy_lo, jy_hi;
                taps_inside(y0, g.k[0], g.dil[0], g.in[0], &jy_lo, &jy_hi);
                for (int64_t ox = 0; ox < g.out[1]; ox++) {
                    const int64_t x0 = ox * g.stride[1] - g.pad[1];
                    int64_t jx_lo, jx_hi;
                    taps_inside(x0, g.k[1], g.dil[1], g.in[1], &jx_lo, &jx_hi);
                    int64_t best_idx = -1, best_off = 0;
                    double best = -INFINITY;
                    for (int64_t jy = jy_lo; jy < jy_hi && !isnan(best); jy++) {
                        const int64_t iy = y0 + jy * g.dil[0];
                        for (int64_t jx = jx_lo; jx < jx_hi; jx++) {
                            const int64_t ix = x0 + jx * g.dil[1];
                            const int64_t off = xb + iy * g.xs[2] + ix * g.xs[3];
                            const double v = ref_at(x, off);
                            if (best_idx < 0 || isnan(v) || v > best) {
                                best = v;
                                best_idx = iy * g.in[1] + ix;
                                best_off = off;
                                if (isnan(v)) break;
                            }
                        }
                    }
                    const int64_t oo = n * g.os[0] + ch * g.os[1] + oy * g.os[2] + ox * g.os[3];
                    const int64_t io = n * g.is[0] + ch * g.is[1] + oy * g.is[2] + ox * g.is[3];
                    unsigned char *dst = out->base + oo * xsize;
                    if (best_idx >= 0)
                        memcpy(dst, x->base + best_off * xsize, (size_t)xsize); /* the element itself */
                    else
                        ref_store_f(out->dtype, dst, -INFINITY);
                    ref_store_i(indices->dtype, indices->base + io * (int64_t)ref_dtype_size(indices->dtype),
                                best_idx);
                }
            }
        }
    return ANYACCEL_OK;
}

/* ---- avg_pool1d, avg_pool2d ------------------------------------------------------------------- */

/* One dimension of an average's window: [lo, hi) inside the input, and `pool` positions counting
 * the padding (start = o*s - p, end = min(start + k, in + p), pool = end - start). */
static void avg_window(const PoolGeom *g, int d, int64_t o, int64_t *lo, int64_t *hi, int64_t *pool) {
    const int64_t start = o * g->stride[d] - g->pad[d];
    const int64_t limit = g->in[d] + g->pad[d]; /* fits: it is below the padded size */
    const int64_t end = start > limit - g->k[d] ? limit : start + g->k[d];
    *pool = end - start;
    *lo = start < 0 ? 0 : start;
    *hi = end > g->in[d] ? g->in[d] : end;
}

/* The sum of x[n, c] over the rows [y0, y1) and columns [x0, x1): in f32, or with `wide` in f64. */
static double window_sum(const PoolGeom *g, const RefTensor *x, int64_t xb, int64_t y0, int64_t y1, int64_t x0,
                         int64_t x1, int wide) {
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
 * out[n, c, oy, ox] = the sum of x over the window clipped to the input / divisor, the divisor
 * being the product of the pools (padding included) with count_include_pad, else the number of
 * elements in the clipped window. Summed in f32 and rounded once to the output dtype; where the
 * f32 sum is not finite, the element is summed again in f64, so that an intermediate overflow of
 * f32 (bf16's or f32's largest values) does not turn a finite average into an infinity or an
 * infinite one into NaN.
 */
static AnyaccelStatus op_avg_pool(const RefCall *c, int spatial) {
    PoolGeom g;
    AnyaccelStatus st = pool_geom(c, spatial, 0, &g);
    if (st) return st;
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    const int64_t osize = (int64_t)ref_dtype_size(out->dtype);
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t ch = 0; ch < g.c; ch++) {
            const int64_t xb = n * g.xs[0] + ch * g.xs[1];
            for (int64_t oy = 0; oy < g.out[0]; oy++) {
                int64_t y0, y1, py;
                avg_window(&g, 0, oy, &y0, &y1, &py);
                for (int64_t ox = 0; ox < g.out[1]; ox++) {
                    int64_t x0, x1, px;
                    avg_window(&g, 1, ox, &x0, &x1, &px);
                    /* Each factor is at most the kernel size; their product, in double, may pass
                     * 2^53 only for kernels far larger than any input and is then rounded. */
                    const double divisor =
                        g.include_pad ? (double)py * (double)px : (double)(y1 - y0) * (double)(x1 - x0);
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

AnyaccelStatus ref_op_pool(const RefCall *c) {
    if (strcmp(c->op, "max_pool1d") == 0) return op_max_pool(c, 1);
    if (strcmp(c->op, "max_pool2d") == 0) return op_max_pool(c, 2);
    if (strcmp(c->op, "avg_pool1d") == 0) return op_avg_pool(c, 1);
    if (strcmp(c->op, "avg_pool2d") == 0) return op_avg_pool(c, 2);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
