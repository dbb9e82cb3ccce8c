/*
 * Pooling (docs/ops.md, section 8.12): max_pool1d, max_pool2d, avg_pool1d and avg_pool2d, as
 * PyTorch's torch.nn.functional ops of those names (max pools with return_indices=True), and
 * their gradients with respect to x.
 *
 *   max_pool1d: x [N, C, L]    -> out [N, C, L_out],        indices (i64) [N, C, L_out]
 *   max_pool2d: x [N, C, H, W] -> out [N, C, H_out, W_out], indices (i64) [N, C, H_out, W_out]
 *   avg_pool1d: x [N, C, L]    -> out [N, C, L_out]
 *   avg_pool2d: x [N, C, H, W] -> out [N, C, H_out, W_out]
 *   max_pool1d_backward, max_pool2d_backward: grad, indices (i32 or i64) -> dx (shape input_size)
 *   avg_pool1d_backward, avg_pool2d_backward: grad -> dx (shape input_size)
 *
 * A 1-D pool runs as a 2-D one over a height of 1 (kernel height 1, stride 1, no padding, no
 * dilation along it). A max pool selects an input element, so its value is copied exactly; an
 * average is summed in f32 (f16 and bf16 elements widened to f32 exactly) and rounded once to
 * the output dtype, and an element whose f32 sum is not finite is summed again in f64 (see
 * ref_window_means). A gradient is described by the geometry of its forward pool over an x of
 * shape input_size (grad has the shape of that pool's output); each element of dx gathers the
 * terms of the windows that hold it, in f64, and is rounded once.
 *
 * Every tensor is checked once (its element count and the offsets of its elements fit in int64),
 * and the output size is derived with checked arithmetic: the padded input size in + 2 p fits in
 * int64, every window start o * s - p lies in [-p, in) and every tap start + j * d below in + p,
 * so that no position computed below leaves int64. The loops visit only the taps inside the
 * input, so a kernel far larger than the input (possible with a large padding) costs nothing.
 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ref.h"

/* ---- The geometry ----------------------------------------------------------------------------- */

/* A call's geometry, lifted to two spatial dimensions [height, width] (a 1-D pool has a height
 * of 1, a kernel height of 1, stride and dilation 1 and no padding along it). */
typedef struct {
    int max; /* a max pool (two outputs) */
    int64_t n, c;
    int64_t in[2], k[2], out[2], stride[2], pad[2], dil[2];
    int include_pad; /* avg pools: padding counts in the divisor */
    /* The strides over [batch, channel, height, width] of x (a gradient's dx), out (a gradient's
     * grad) and, for max pools, indices. */
    int64_t xs[4], os[4], is[4];
} PoolGeom;

static const char *const dim_names[2][2] = {{"length", "length"}, {"height", "width"}};

/* The geometry of the pool of the call's attributes over an x of shape xshape (rank spatial + 2):
 * the attributes, checked, and the output sizes. */
static AnyaccelStatus pool_sizes(const RefCall *c, int spatial, int max, const int64_t *xshape, PoolGeom *g) {
    const char *op = c->op;
    /* Attributes: kernel_size is required, stride defaults to it. */
    static const int64_t zeros[2] = {0, 0}, ones[2] = {1, 1};
    int64_t k[2], stride[2], pad[2], dil[2] = {1, 1};
    AnyaccelStatus st;
    if ((st = ref_per_dim(c, "kernel_size", spatial, ones, 1, 1, 0, k)) ||
        (st = ref_per_dim(c, "stride", spatial, k, 1, 0, 1, stride)) ||
        (st = ref_per_dim(c, "padding", spatial, zeros, 0, 0, 0, pad)) ||
        (max && (st = ref_per_dim(c, "dilation", spatial, ones, 1, 0, 0, dil))))
        return st;
    int ceil_mode = 0, include_pad = 1;
    if ((st = ref_flag_attr(c, "ceil_mode", &ceil_mode))) return st;
    if (!max && (st = ref_flag_attr(c, "count_include_pad", &include_pad))) return st;

    g->max = max;
    g->n = xshape[0];
    g->c = xshape[1];
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
        g->in[first + d] = xshape[2 + d];
        g->k[first + d] = k[d];
        g->stride[first + d] = stride[d];
        g->pad[first + d] = pad[d];
        g->dil[first + d] = dil[d];
    }
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
    return ANYACCEL_OK;
}

/* The shape [N, C, out...] of the pool's output, of rank spatial + 2. */
static void pool_out_shape(const PoolGeom *g, int spatial, int64_t *shape) {
    shape[0] = g->n;
    shape[1] = g->c;
    shape[2] = g->out[2 - spatial];
    shape[3] = g->out[1];
}

/* The geometry of a forward pool: x -> out (and indices). */
static AnyaccelStatus pool_geom(const RefCall *c, int spatial, int max, PoolGeom *g) {
    const char *op = c->op;
    int rank = spatial + 2;
    size_t outputs = max ? 2 : 1;
    if (c->num_inputs != 1 || c->num_outputs != outputs)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected x and %s", op, c->num_inputs,
                           c->num_outputs, max ? "two outputs (out, indices)" : "one output");
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    const RefTensor *indices = max ? &c->outputs[1] : NULL;
    static const char *const names[2] = {"x", "the output"};
    const RefTensor *const tensors[2] = {x, out};
    AnyaccelStatus st;
    if ((st = ref_check_floats(op, 2, names, tensors))) return st;
    if (indices) {
        if (indices->present && indices->dtype != ANYACCEL_DTYPE_I64)
            return REF_INVALID("%s: indices has dtype %s, expected i64", op, ref_dtype_name(indices->dtype));
        if ((st = ref_check_tensor(op, "indices", indices, REF_DT(I64)))) return st;
    }
    if ((st = ref_check_rank(op, "x", x, rank, spatial == 1 ? "[N, C, L]" : "[N, C, H, W]")) ||
        (st = pool_sizes(c, spatial, max, x->shape, g)))
        return st;
    int64_t expect[4];
    pool_out_shape(g, spatial, expect);
    if ((st = ref_check_shape(op, "the output", out, rank, expect, "")) ||
        (indices && (st = ref_check_shape(op, "indices", indices, rank, expect, ""))))
        return st;
    ref_strides4(x, spatial, g->xs);
    ref_strides4(out, spatial, g->os);
    if (indices) ref_strides4(indices, spatial, g->is);
    return ANYACCEL_OK;
}

/* The geometry of a gradient: grad (and indices) -> dx, described by the forward pool over an x
 * of shape input_size; g->xs are dx's strides, g->os grad's. */
static AnyaccelStatus pool_backward_geom(const RefCall *c, int spatial, int max, PoolGeom *g) {
    const char *op = c->op;
    const int rank = spatial + 2;
    const char *layout = spatial == 1 ? "[N, C, L]" : "[N, C, H, W]";
    const size_t inputs = max ? 2 : 1;
    if (c->num_inputs != inputs || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected %s and one output (dx)", op, c->num_inputs,
                           c->num_outputs, max ? "two inputs (grad, indices)" : "one input (grad)");
    const RefTensor *grad = &c->inputs[0], *dx = &c->outputs[0];
    const RefTensor *indices = max ? &c->inputs[1] : NULL;
    static const char *const names[2] = {"grad", "dx"};
    const RefTensor *const tensors[2] = {grad, dx};
    int64_t input_size[4];
    AnyaccelStatus st;
    if ((st = ref_check_floats(op, 2, names, tensors))) return st;
    if (indices && indices->present && indices->dtype != ANYACCEL_DTYPE_I32 && indices->dtype != ANYACCEL_DTYPE_I64)
        return REF_INVALID("%s: indices has dtype %s, expected i32 or i64", op, ref_dtype_name(indices->dtype));
    if ((indices && (st = ref_check_tensor(op, "indices", indices, REF_DT(I32) | REF_DT(I64)))) ||
        (st = ref_shape_attr(c, "input_size", rank, layout, input_size)) ||
        (st = pool_sizes(c, spatial, max, input_size, g)))
        return st;
    int64_t expect[4];
    pool_out_shape(g, spatial, expect);
    /* The forward op's name: this one's without "_backward". */
    char why[sizeof(RefShapeStr) + 96];
    snprintf(why, sizeof why, " (the output of %.*s over input_size %s)", (int)(strlen(op) - strlen("_backward")), op,
             ref_list_str(rank, input_size).s);
    if ((st = ref_check_shape(op, "grad", grad, rank, expect, why)) ||
        (indices && (st = ref_check_shape(op, "indices", indices, rank, expect, " (grad's shape)"))) ||
        (st = ref_check_shape(op, "dx", dx, rank, input_size, " (input_size)")))
        return st;
    ref_strides4(dx, spatial, g->xs);
    ref_strides4(grad, spatial, g->os);
    if (indices) ref_strides4(indices, spatial, g->is);
    return ANYACCEL_OK;
}

/* The outputs [lo, hi) along dimension d whose windows span input position i (0 <= i < in):
 * start = o * s - p <= i <= start + dil (k - 1). Position i is a tap of window o when, in
 * addition, (i - start) is a multiple of dil (is_tap). i + p < in + p and dil (k - 1) < in + 2 p
 * (pool_sizes), so nothing below leaves int64. */
static void windows_over(const PoolGeom *g, int d, int64_t i, int64_t *lo, int64_t *hi) {
    const int64_t s = g->stride[d], t = i + g->pad[d];
    const int64_t first = t - (g->k[d] - 1) * g->dil[d]; /* the smallest o * s whose window reaches i */
    *lo = first <= 0 ? 0 : first / s + (first % s != 0);
    *hi = t / s + 1;
    if (*hi > g->out[d]) *hi = g->out[d];
}

static int is_tap(const PoolGeom *g, int d, int64_t i, int64_t o) {
    return (i + g->pad[d] - o * g->stride[d]) % g->dil[d] == 0;
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

/* One dimension of an average's window: [w[0], w[1]) inside the input, and `pool` positions
 * counting the padding (start = o*s - p, end = min(start + k, in + p), pool = end - start). */
static void avg_window_1d(const PoolGeom *g, int d, int64_t o, int64_t *w, int64_t *pool) {
    const int64_t start = o * g->stride[d] - g->pad[d];
    const int64_t limit = g->in[d] + g->pad[d]; /* fits: it is below the padded size */
    const int64_t end = start > limit - g->k[d] ? limit : start + g->k[d];
    *pool = end - start;
    w[0] = start < 0 ? 0 : start;
    w[1] = end > g->in[d] ? g->in[d] : end;
}

/* The window of output (oy, ox) clipped to the input, rows [rows[0], rows[1]) and columns
 * [cols[0], cols[1]), and its divisor: the product of the pools (padding included) with
 * count_include_pad, else the number of elements in the clipped window (never 0). Each factor is
 * at most the kernel size; their product, in double, may pass 2^53 only for kernels far larger
 * than any input and is then rounded. A RefWindowFn over a PoolGeom. */
static double avg_window(const void *geom, int64_t oy, int64_t ox, int64_t *rows, int64_t *cols) {
    const PoolGeom *g = geom;
    int64_t py, px;
    avg_window_1d(g, 0, oy, rows, &py);
    avg_window_1d(g, 1, ox, cols, &px);
    return g->include_pad ? (double)py * (double)px : (double)(rows[1] - rows[0]) * (double)(cols[1] - cols[0]);
}

/*
 * out[n, c, oy, ox] = the sum of x over the window clipped to the input / its divisor
 * (avg_window), summed in f32 (again in f64 where that is not finite) and rounded once to the
 * output dtype: ref_window_means.
 */
static AnyaccelStatus op_avg_pool(const RefCall *c, int spatial) {
    PoolGeom g;
    AnyaccelStatus st = pool_geom(c, spatial, 0, &g);
    if (st) return st;
    const int64_t shape[4] = {g.n, g.c, g.out[0], g.out[1]};
    ref_window_means(&c->inputs[0], g.xs, &c->outputs[0], g.os, shape, avg_window, &g);
    return ANYACCEL_OK;
}

/* ---- The gradients ---------------------------------------------------------------------------- */

/*
 * max_pool*_backward: dx[n, c, iy, ix] = the sum of grad[n, c, oy, ox] over the windows (oy, ox)
 * that hold (iy, ix) at a tap and whose index indices[n, c, oy, ox] is iy * W + ix. An index that
 * names no tap of its own window (-1, or any value max_pool did not give) adds nothing: dx is
 * gathered through the windows, so no index is ever used as an address.
 * avg_pool*_backward: dx[n, c, iy, ix] = the sum of grad[n, c, oy, ox] / divisor(oy, ox) over the
 * windows that hold (iy, ix).
 * Summed in f64 (in increasing oy, then ox) and rounded once to dx's dtype.
 */
static AnyaccelStatus op_pool_backward(const RefCall *c, int spatial, int max) {
    PoolGeom g;
    AnyaccelStatus st = pool_backward_geom(c, spatial, max, &g);
    if (st) return st;
    const RefTensor *grad = &c->inputs[0], *indices = max ? &c->inputs[1] : NULL, *dx = &c->outputs[0];
    const int64_t isize = indices ? (int64_t)ref_dtype_size(indices->dtype) : 0;
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t ch = 0; ch < g.c; ch++) {
            const int64_t gb = n * g.os[0] + ch * g.os[1];
            const int64_t ib = indices ? n * g.is[0] + ch * g.is[1] : 0;
            for (int64_t iy = 0; iy < g.in[0]; iy++) {
                int64_t oy_lo, oy_hi;
                windows_over(&g, 0, iy, &oy_lo, &oy_hi);
                for (int64_t ix = 0; ix < g.in[1]; ix++) {
                    int64_t ox_lo, ox_hi;
                    windows_over(&g, 1, ix, &ox_lo, &ox_hi);
                    const int64_t target = iy * g.in[1] + ix; /* below H * W, a plane of dx */
                    double acc = 0.0;
                    for (int64_t oy = oy_lo; oy < oy_hi; oy++) {
                        if (!is_tap(&g, 0, iy, oy)) continue;
                        for (int64_t ox = ox_lo; ox < ox_hi; ox++) {
                            if (!is_tap(&g, 1, ix, ox)) continue;
                            const double v = ref_at(grad, gb + oy * g.os[2] + ox * g.os[3]);
                            if (indices) {
                                const int64_t io = ib + oy * g.is[2] + ox * g.is[3];
                                if (ref_load_i(indices->dtype, indices->base + io * isize) == target) acc += v;
                            } else {
                                int64_t rows[2], cols[2];
                                acc += v / avg_window(&g, oy, ox, rows, cols);
                            }
                        }
                    }
                    ref_put(dx, n * g.xs[0] + ch * g.xs[1] + iy * g.xs[2] + ix * g.xs[3], acc);
                }
            }
        }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_pool(const RefCall *c) {
    const char *op = c->op;
    if (strcmp(op, "max_pool1d") == 0) return op_max_pool(c, 1);
    if (strcmp(op, "max_pool2d") == 0) return op_max_pool(c, 2);
    if (strcmp(op, "avg_pool1d") == 0) return op_avg_pool(c, 1);
    if (strcmp(op, "avg_pool2d") == 0) return op_avg_pool(c, 2);
    if (strcmp(op, "max_pool1d_backward") == 0) return op_pool_backward(c, 1, 1);
    if (strcmp(op, "max_pool2d_backward") == 0) return op_pool_backward(c, 2, 1);
    if (strcmp(op, "avg_pool1d_backward") == 0) return op_pool_backward(c, 1, 0);
    if (strcmp(op, "avg_pool2d_backward") == 0) return op_pool_backward(c, 2, 0);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", op);
}
