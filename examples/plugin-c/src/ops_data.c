/*
 * Creation, movement and indexing: fill, arange, copy, cast, concat, index_select, embedding,
 * gather (docs/ops.md, section 8.1).
 */

#include <math.h>
#include <string.h>

#include "ref.h"

/* ---- fill, arange ---------------------------------------------------------------------------- */

static AnyaccelStatus op_fill(const RefCall *c) {
    const RefTensor *out = &c->outputs[0];
    double value = 0.0;
    if (ref_attr_float(c, "value", &value) != 1)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "fill: attribute `value` (Float) is required");
    /* Convert once, then copy the bytes into every element. */
    unsigned char elem[8];
    ref_store_cast_f(out->dtype, elem, value);
    size_t size = ref_dtype_size(out->dtype);
    int64_t n = ref_numel(out);
    for (int64_t i = 0; i < n; i++) memcpy(ref_elem(out, i), elem, size);
    return ANYACCEL_OK;
}

static AnyaccelStatus op_arange(const RefCall *c) {
    const RefTensor *out = &c->outputs[0];
    double start = 0.0, step = 0.0;
    if (ref_attr_float(c, "start", &start) != 1 || ref_attr_float(c, "step", &step) != 1)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "arange: attributes `start` and `step` (Float) are required");
    int64_t n = ref_numel(out);
    if (ref_is_float(out->dtype)) {
        /* In double, as written, rounded once. */
        for (int64_t i = 0; i < n; i++) ref_store_f(out->dtype, ref_elem(out, i), start + (double)i * step);
    } else {
        /* Exact in int64 with wrapping (the host checked that start and step are integral). */
        uint64_t s0 = (uint64_t)(int64_t)start, st = (uint64_t)(int64_t)step;
        for (int64_t i = 0; i < n; i++)
            ref_store_i(out->dtype, ref_elem(out, i), (int64_t)(s0 + (uint64_t)i * st));
    }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_creation(const RefCall *c) {
    if (strcmp(c->op, "fill") == 0) return op_fill(c);
    return op_arange(c);
}

/* ---- copy, cast, concat ---------------------------------------------------------------------- */

/* Copies every element of `src` into `dst` (same shape and dtype), bytes unchanged. */
static void copy_elements(const RefTensor *dst, const RefTensor *src) {
    size_t size = ref_dtype_size(src->dtype);
    int64_t n = ref_numel(dst);
    if (n == 0) return;
    const RefTensor *ts[2] = {dst, src};
    RefIter it;
    ref_iter_init(&it, 2, ts);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it))
        memcpy(dst->base + it.offset[0] * (int64_t)size, src->base + it.offset[1] * (int64_t)size, size);
}

static AnyaccelStatus op_cast(const RefCall *c) {
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    int64_t n = ref_numel(out);
    if (n == 0) return ANYACCEL_OK;
    size_t xs = ref_dtype_size(x->dtype), os = ref_dtype_size(out->dtype);
    const RefTensor *ts[2] = {out, x};
    RefIter it;
    ref_iter_init(&it, 2, ts);
    int from_float = ref_is_float(x->dtype);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        const unsigned char *p = x->base + it.offset[1] * (int64_t)xs;
        unsigned char *q = out->base + it.offset[0] * (int64_t)os;
        if (from_float)
            ref_store_cast_f(out->dtype, q, ref_load_f(x->dtype, p));
        else
            ref_store_cast_i(out->dtype, q, ref_load_i(x->dtype, p));
    }
    return ANYACCEL_OK;
}

static AnyaccelStatus op_concat(const RefCall *c) {
    const RefTensor *out = &c->outputs[0];
    int64_t axis = 0;
    if (ref_attr_int(c, "axis", &axis) != 1)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "concat: attribute `axis` (Int) is required");
    int a = ref_axis(axis, out->ndim);
    int64_t at = 0;
    size_t size = ref_dtype_size(out->dtype);
    for (size_t k = 0; k < c->num_inputs; k++) {
        const RefTensor *x = &c->inputs[k];
        /* The part of out that x fills: x's shape, starting `at` along the axis. */
        RefTensor part = *out;
        part.shape[a] = x->shape[a];
        part.base = out->base + at * out->strides[a] * (int64_t)size;
        copy_elements(&part, x);
        at += x->shape[a];
    }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_movement(const RefCall *c) {
    if (strcmp(c->op, "copy") == 0) {
        copy_elements(&c->outputs[0], &c->inputs[0]);
        return ANYACCEL_OK;
    }
    if (strcmp(c->op, "cast") == 0) return op_cast(c);
    return op_concat(c);
}

/* ---- index_select, embedding, gather --------------------------------------------------------- */

/* Checks every index against 0..limit, in row-major order of the indices; the first one out of
 * range is the error (docs/ops.md, section 6). */
static AnyaccelStatus check_indices(const char *op, const RefTensor *idx, int64_t limit, int axis) {
    int64_t n = ref_numel(idx);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = ref_load_i(idx->dtype, ref_elem(idx, i));
        if (v < 0 || v >= limit)
            return ref_error(ANYACCEL_ERROR_OUT_OF_BOUNDS, "%s: index %lld out of range 0..%lld along axis %d",
                             op, (long long)v, (long long)limit, axis);
    }
    return ANYACCEL_OK;
}

/* Unravels a row-major index over `shape`. */
static void unravel(int64_t linear, int ndim, const int64_t *shape, int64_t *coords) {
    for (int d = ndim - 1; d >= 0; d--) {
        coords[d] = shape[d] ? linear % shape[d] : 0;
        linear = shape[d] ? linear / shape[d] : 0;
    }
}

static int64_t offset_at(const RefTensor *t, const int64_t *coords) {
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++) off += coords[d] * t->strides[d];
    return off;
}

static AnyaccelStatus op_index_select(const RefCall *c) {
    const RefTensor *x = &c->inputs[0], *idx = &c->inputs[1], *out = &c->outputs[0];
    int64_t axis = 0;
    if (ref_attr_int(c, "axis", &axis) != 1)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "index_select: attribute `axis` (Int) is required");
    int a = ref_axis(axis, x->ndim);
    AnyaccelStatus st = check_indices("index_select", idx, x->shape[a], a);
    if (st) return st;
    size_t size = ref_dtype_size(x->dtype);
    int64_t n = ref_numel(out);
    int64_t coords[REF_MAX_DIMS];
    for (int64_t i = 0; i < n; i++) {
        unravel(i, out->ndim, out->shape, coords);
        int64_t o = offset_at(out, coords);
        coords[a] = ref_load_i(idx->dtype, ref_elem(idx, coords[a]));
        memcpy(out->base + o * (int64_t)size, x->base + offset_at(x, coords) * (int64_t)size, size);
    }
    return ANYACCEL_OK;
}

static AnyaccelStatus op_embedding(const RefCall *c) {
    const RefTensor *w = &c->inputs[0], *idx = &c->inputs[1], *out = &c->outputs[0];
    AnyaccelStatus st = check_indices("embedding", idx, w->shape[0], 0);
    if (st) return st;
    size_t size = ref_dtype_size(w->dtype);
    int64_t rows = ref_numel(idx), dim = w->shape[1];
    for (int64_t r = 0; r < rows; r++) {
        int64_t v = ref_load_i(idx->dtype, ref_elem(idx, r));
        for (int64_t j = 0; j < dim; j++)
            memcpy(ref_elem(out, r * dim + j), w->base + (v * w->strides[0] + j * w->strides[1]) * (int64_t)size,
                   size);
    }
    return ANYACCEL_OK;
}

static AnyaccelStatus op_gather(const RefCall *c) {
    const RefTensor *x = &c->inputs[0], *idx = &c->inputs[1], *out = &c->outputs[0];
    int64_t axis = 0;
    if (ref_attr_int(c, "axis", &axis) != 1)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "gather: attribute `axis` (Int) is required");
    int a = ref_axis(axis, x->ndim);
    AnyaccelStatus st = check_indices("gather", idx, x->shape[a], a);
    if (st) return st;
    size_t size = ref_dtype_size(x->dtype);
    int64_t n = ref_numel(out);
    int64_t coords[REF_MAX_DIMS];
    for (int64_t i = 0; i < n; i++) {
        unravel(i, out->ndim, out->shape, coords);
        int64_t o = offset_at(out, coords);
        coords[a] = ref_load_i(idx->dtype, ref_elem(idx, i));
        memcpy(out->base + o * (int64_t)size, x->base + offset_at(x, coords) * (int64_t)size, size);
    }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_indexing(const RefCall *c) {
    if (strcmp(c->op, "index_select") == 0) return op_index_select(c);
    if (strcmp(c->op, "embedding") == 0) return op_embedding(c);
    return op_gather(c);
}
