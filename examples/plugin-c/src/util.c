/*
 * Helpers shared by the ops: checked int64 arithmetic, and shapes and lists formatted for error
 * messages.
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
