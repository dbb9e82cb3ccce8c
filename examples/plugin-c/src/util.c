/*
 * Helpers shared by the ops: checked int64 arithmetic, shapes and lists formatted for error
 * messages, the per-dimension attributes and lifted strides of the convolutions and pools, the
 * checks of their attributes and tensors, and the window sums of the average pools.
 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ref.h"

int ref_mul_ok(int64_t a, int64_t b, int64_t *r) {
    if (a != 0 && b > INT64_MAX / a) return 0;
    *r = a * b;
    return 1;
}

int ref_add_ok(int64_t a, int64_t b, int64_t *r) {
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) return 0;
    *r = a + b;
    return 1;
}

RefShapeStr ref_shape_str(int ndim, const int64_t *shape) {
    RefShapeStr r;
    size_t at = 0;
    r.s[at++] = '[';
    for (int d = 0; d < ndim && d < REF_MAX_DIMS; d++) {
        char part[24];
        size_t n = (size_t)snprintf(part, sizeof part, d ? ", %lld" : "%lld", (long long)shape[d]);
        if (n >= sizeof part) n = sizeof part - 1;
        memcpy(r.s + at, part, n);
        at += n;
    }
    r.s[at++] = ']';
    r.s[at] = '\0';
    return r;
}

RefShapeStr ref_list_str(size_t len, const int64_t *v) {
    return ref_shape_str(len > REF_MAX_DIMS ? REF_MAX_DIMS : (int)len, v);
}

void ref_dims_str(const RefTensor *t, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    if (t->ndim == 0) {
        snprintf(buf, len, "scalar");
        return;
    }
    for (int d = 0; d < t->ndim && used < len; d++) {
        int w = snprintf(buf + used, len - used, d ? "x%lld" : "%lld", (long long)t->shape[d]);
        if (w < 0) return;
        used += (size_t)w;
    }
}

AnyaccelStatus ref_per_dim(const RefCall *c, const char *name, int spatial, const int64_t *dflt, int64_t min,
                           int required, int empty_is_absent, int64_t *v) {
    const int64_t *vals = NULL;
    size_t len = 0;
    int r = ref_attr_ints(c, name, &vals, &len);
    if (r < 0) return REF_INVALID("%s: attribute `%s` must be Ints (or an Int)", c->op, name);
    if (r > 0 && len == 0 && empty_is_absent) r = 0;
    if (r == 0) {
        if (required) return REF_INVALID("%s: attribute `%s` (Ints) is required", c->op, name);
        for (int d = 0; d < spatial; d++) v[d] = dflt[d];
        return ANYACCEL_OK;
    }
    if (len != 1 && len != (size_t)spatial) {
        if (spatial == 1) return REF_INVALID("%s: attribute `%s` has %zu values, expected 1", c->op, name, len);
        return REF_INVALID("%s: attribute `%s` has %zu values, expected 1 (for every spatial dimension) or %d (one "
                           "per spatial dimension)",
                           c->op, name, len, spatial);
    }
    for (size_t i = 0; i < len; i++)
        if (vals[i] < min)
            return REF_INVALID("%s: attribute `%s` is %s, expected every value >= %lld", c->op, name,
                               ref_list_str(len, vals).s, (long long)min);
    for (int d = 0; d < spatial; d++) v[d] = vals[len == 1 ? 0 : d];
    return ANYACCEL_OK;
}

void ref_strides4(const RefTensor *t, int spatial, int64_t *s) {
    s[0] = t->strides[0];
    s[1] = t->strides[1];
    s[2] = spatial == 2 ? t->strides[2] : 0;
    s[3] = t->strides[spatial + 1];
}

AnyaccelStatus ref_flag_attr(const RefCall *c, const char *name, int *out) {
    int64_t v = *out;
    if (ref_attr_int(c, name, &v) < 0) return REF_INVALID("%s: attribute `%s` must be an Int (0 or 1)", c->op, name);
    if (v != 0 && v != 1)
        return REF_INVALID("%s: attribute `%s` is %lld, expected 0 or 1", c->op, name, (long long)v);
    *out = (int)v;
    return ANYACCEL_OK;
}

AnyaccelStatus ref_shape_attr(const RefCall *c, const char *name, int rank, const char *layout, int64_t *v) {
    const int64_t *vals = NULL;
    size_t len = 0;
    int r = ref_attr_ints(c, name, &vals, &len);
    if (r < 0) return REF_INVALID("%s: attribute `%s` must be Ints", c->op, name);
    if (r == 0) return REF_INVALID("%s: attribute `%s` (Ints, the shape %s) is required", c->op, name, layout);
    if (len != (size_t)rank)
        return REF_INVALID("%s: attribute `%s` is %s, expected %d values (%s)", c->op, name,
                           ref_list_str(len, vals).s, rank, layout);
    for (int d = 0; d < rank; d++) {
        if (vals[d] < 0)
            return REF_INVALID("%s: attribute `%s` is %s, expected sizes >= 0", c->op, name,
                               ref_list_str(len, vals).s);
        v[d] = vals[d];
    }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_check_floats(const char *op, int count, const char *const *names, const RefTensor *const *t) {
    const unsigned floats = REF_DT(F32) | REF_DT(F16) | REF_DT(BF16);
    AnyaccelStatus st;
    if ((st = ref_check_tensor(op, names[0], t[0], floats))) return st;
    for (int i = 1; i < count; i++)
        if (t[i] && t[i]->present && t[i]->dtype != t[0]->dtype)
            return REF_INVALID("%s: %s has dtype %s but %s has dtype %s: all inputs and the output must share one "
                               "float dtype",
                               op, names[i], ref_dtype_name(t[i]->dtype), names[0], ref_dtype_name(t[0]->dtype));
    for (int i = 1; i < count; i++)
        if (t[i] && (st = ref_check_tensor(op, names[i], t[i], ANYACCEL_DTYPE_BIT(t[0]->dtype)))) return st;
    return ANYACCEL_OK;
}

AnyaccelStatus ref_check_rank(const char *op, const char *name, const RefTensor *t, int rank, const char *layout) {
    if (t->ndim != rank)
        return REF_INVALID("%s: %s has shape %s, expected rank %d (%s)", op, name, ref_shape_str(t->ndim, t->shape).s,
                           rank, layout);
    return ANYACCEL_OK;
}

AnyaccelStatus ref_check_shape(const char *op, const char *name, const RefTensor *t, int rank,
                               const int64_t *expect, const char *why) {
    int64_t count = 1;
    for (int d = 0; d < rank; d++)
        if (expect[d] < 0 || !ref_mul_ok(count, expect[d], &count))
            return REF_INVALID("%s: %s would have shape %s%s, whose element count overflows int64", op, name,
                               ref_shape_str(rank, expect).s, why);
    int ok = t->ndim == rank;
    for (int d = 0; ok && d < rank; d++) ok = t->shape[d] == expect[d];
    if (!ok)
        return REF_INVALID("%s: %s has shape %s, expected %s%s", op, name, ref_shape_str(t->ndim, t->shape).s,
                           ref_shape_str(rank, expect).s, why);
    return ANYACCEL_OK;
}

/* The sum of x over rows [y0, y1) and columns [x0, x1) of a plane (base `xb`, strides sy and sx),
 * in f32 or with `wide` in f64. */
static double plane_sum(const RefTensor *x, int64_t xb, int64_t sy, int64_t sx, const int64_t *rows,
                        const int64_t *cols, int wide) {
    float acc = 0.0f;
    double acc_wide = 0.0;
    for (int64_t iy = rows[0]; iy < rows[1]; iy++)
        for (int64_t ix = cols[0]; ix < cols[1]; ix++) {
            const double v = ref_at(x, xb + iy * sy + ix * sx);
            if (wide)
                acc_wide += v;
            else
                acc += (float)v;
        }
    return wide ? acc_wide : (double)acc;
}

/* The f32 sum of plane_sum, or where that is not finite the f64 one, so that an intermediate
 * overflow of f32 does not turn a finite sum into an infinity or an infinite one into NaN. */
static double window_sum(const RefTensor *x, int64_t xb, int64_t sy, int64_t sx, const int64_t *rows,
                         const int64_t *cols) {
    const float acc = (float)plane_sum(x, xb, sy, sx, rows, cols, 0);
    return isfinite(acc) ? (double)acc : plane_sum(x, xb, sy, sx, rows, cols, 1);
}

void ref_window_means(const RefTensor *x, const int64_t *xs, const RefTensor *out, const int64_t *os,
                      const int64_t *shape, RefWindowFn window, const void *ctx) {
    for (int64_t n = 0; n < shape[0]; n++)
        for (int64_t c = 0; c < shape[1]; c++) {
            const int64_t xb = n * xs[0] + c * xs[1];
            for (int64_t oy = 0; oy < shape[2]; oy++)
                for (int64_t ox = 0; ox < shape[3]; ox++) {
                    int64_t rows[2], cols[2];
                    const double divisor = window(ctx, oy, ox, rows, cols);
                    const double sum = window_sum(x, xb, xs[2], xs[3], rows, cols);
                    ref_put(out, n * os[0] + c * os[1] + oy * os[2] + ox * os[3], sum / divisor);
                }
        }
}
