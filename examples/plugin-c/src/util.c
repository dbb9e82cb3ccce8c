/*
 * Helpers shared by the ops: checked int64 arithmetic, shapes and lists formatted for error
 * messages, and the per-dimension attributes and lifted strides of the convolutions and pools.
 */

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
