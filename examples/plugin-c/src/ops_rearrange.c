/*
 * Movement and indexing of op set v2 (docs/ops.md):
 *
 *   pad, flip, roll, tril, triu, repeat_interleave   remaps: each output element is one element
 *                                                     of x, or a fill value
 *   one_hot, masked_fill                              a value per element
 *   scatter, scatter_add, index_add                   line scatters: out is a copy of x, then the
 *                                                     index is walked in row-major order
 *   embedding_backward                                an index_add of grad's rows into zeros, then
 *                                                     the padding row zeroed
 *
 * Every tensor is checked once (its element count and the offsets of its elements fit in int64),
 * so that the offsets computed below, each a sum of coordinate x stride terms of one tensor,
 * stay in range; indices are checked against their axis before they are used.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

#define NUM_DTYPES (REF_DT(F32) | REF_DT(F16) | REF_DT(BF16) | REF_DT(I32) | REF_DT(I64))
#define ALL_DTYPES (NUM_DTYPES | REF_DT(U8) | REF_DT(I8) | REF_DT(BOOL))
#define INDEX_DTYPES (REF_DT(I32) | REF_DT(I64))

/* ---- Checked arithmetic ------------------------------------------------------------------------ */

/* a - b; 0 when it leaves int64. */
static int sub_ok(int64_t a, int64_t b, int64_t *r) {
    if ((b < 0 && a > INT64_MAX + b) || (b > 0 && a < INT64_MIN + b)) return 0;
    *r = a - b;
    return 1;
}

/* a modulo n (n > 0), in 0..n. */
static int64_t mod_euclid(int64_t a, int64_t n) {
    int64_t m = a % n;
    return m < 0 ? m + n : m;
}

/* ---- Checks ------------------------------------------------------------------------------------ */

/* `name` is present, of a dtype in `dtypes`, with sizes >= 0, and its element count and the
 * byte offsets of its elements fit in int64. */
static AnyaccelStatus check_tensor(const char *op, const char *name, const RefTensor *t, unsigned dtypes) {
    if (!t->present) return REF_INVALID("%s: %s is missing", op, name);
    if (!(dtypes & ANYACCEL_DTYPE_BIT(t->dtype)))
        return REF_INVALID("%s: %s has dtype %s, which this op does not take", op, name, ref_dtype_name(t->dtype));
    if (t->ndim < 0 || t->ndim > REF_MAX_DIMS)
        return REF_INVALID("%s: %s has rank %d, expected at most %d", op, name, t->ndim, REF_MAX_DIMS);
    int64_t count = 1;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || !ref_mul_ok(count, t->shape[d], &count))
            return REF_INVALID("%s: %s has shape %s, which has no element count in int64", op, name,
                               ref_shape_str(t->ndim, t->shape).s);
    if (count == 0) return ANYACCEL_OK;
    if (!t->base) return REF_INVALID("%s: %s has elements but no memory", op, name);
    /* The largest |offset| of an element, in bytes. */
    int64_t span = 0;
    for (int d = 0; d < t->ndim; d++) {
        int64_t s = t->strides[d], term;
        if (s == INT64_MIN || !ref_mul_ok(s < 0 ? -s : s, t->shape[d] - 1, &term) || !ref_add_ok(span, term, &span))
            return REF_INVALID("%s: %s has strides beyond int64", op, name);
    }
    if (span > INT64_MAX / (int64_t)ref_dtype_size(t->dtype))
        return REF_INVALID("%s: %s has strides beyond int64", op, name);
    return ANYACCEL_OK;
}

AnyaccelStatus ref_check_tensor(const char *op, const char *name, const RefTensor *t, unsigned dtypes) {
    return check_tensor(op, name, t, dtypes);
}

/* The output: dtype `dtype`, shape `shape` of rank `ndim`. */
static AnyaccelStatus check_out(const RefCall *c, RefDType dtype, int ndim, const int64_t *shape) {
    const RefTensor *out = &c->outputs[0];
    AnyaccelStatus st = check_tensor(c->op, "the output", out, ANYACCEL_DTYPE_BIT(dtype));
    if (st) return st;
    int same = out->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = out->shape[d] == shape[d];
    if (!same)
        return REF_INVALID("%s: the output has shape %s, expected %s", c->op, ref_shape_str(out->ndim, out->shape).s,
                           ref_shape_str(ndim, shape).s);
    return ANYACCEL_OK;
}

/* The call has `inputs` inputs and one output. */
AnyaccelStatus ref_check_arity(const RefCall *c, size_t inputs) {
    if (c->num_inputs != inputs || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected %zu and 1", c->op, c->num_inputs,
                           c->num_outputs, inputs);
    return ANYACCEL_OK;
}

/* `axis` (negative counts from the end) of a tensor of rank `rank`, normalised. */
static AnyaccelStatus norm_axis(const char *op, int64_t axis, int rank, int *out) {
    if (axis < -(int64_t)rank || axis >= (int64_t)rank)
        return REF_INVALID("%s: axis %lld is out of range for rank %d", op, (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return ANYACCEL_OK;
}

/* The required Int attribute `name`, an axis of a tensor of rank `rank`. */
static AnyaccelStatus axis_attr(const RefCall *c, const char *name, int rank, int *out) {
    int64_t v = 0;
    int r = ref_attr_int(c, name, &v);
    if (r < 0) return REF_INVALID("%s: attribute `%s` must be an Int", c->op, name);
    if (r == 0) return REF_INVALID("%s: attribute `%s` (Int) is required", c->op, name);
    return norm_axis(c->op, v, rank, out);
}

/* The required Ints attribute `name`. */
static AnyaccelStatus ints_attr(const RefCall *c, const char *name, const int64_t **v, size_t *len) {
    *v = NULL;
    *len = 0;
    int r = ref_attr_ints(c, name, v, len);
    if (r < 0) return REF_INVALID("%s: attribute `%s` must be Ints", c->op, name);
    if (r == 0) return REF_INVALID("%s: attribute `%s` (Ints) is required", c->op, name);
    return ANYACCEL_OK;
}

/* Checks every index of `idx` against 0..limit in its row-major order; the first one out of range
 * is the error (docs/ops.md, section 6). */
static AnyaccelStatus check_indices(const char *op, const RefTensor *idx, int64_t limit, int axis) {
    int64_t n = ref_numel(idx);
    if (n == 0) return ANYACCEL_OK;
    int64_t size = (int64_t)ref_dtype_size(idx->dtype);
    const RefTensor *ts[1] = {idx};
    RefIter it;
    ref_iter_init(&it, 1, ts);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        int64_t v = ref_load_i(idx->dtype, idx->base + it.offset[0] * size);
        if (v < 0 || v >= limit)
            return ref_error(ANYACCEL_ERROR_OUT_OF_BOUNDS, "%s: index %lld out of range 0..%lld along axis %d",
                             op, (long long)v, (long long)limit, axis);
    }
    return ANYACCEL_OK;
}

/* Copies every element of `src` into `dst` (same shape and dtype), bytes unchanged. */
static void copy_elements(const RefTensor *dst, const RefTensor *src) {
    int64_t n = ref_numel(dst);
    if (n == 0) return;
    size_t size = ref_dtype_size(src->dtype);
    const RefTensor *ts[2] = {dst, src};
    RefIter it;
    ref_iter_init(&it, 2, ts);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it))
        memcpy(dst->base + it.offset[0] * (int64_t)size, src->base + it.offset[1] * (int64_t)size, size);
}

/* ---- Remaps: pad, flip, roll, tril, triu, repeat_interleave ------------------------------------ */

/* How an output coordinate o along one axis finds its coordinate in x; t = o - before. */
typedef enum {
    MAP_CONST,     /* t, or the fill value outside 0..n (constant padding; also the identity) */
    MAP_REFLECT,   /* t reflected at the edges without repeating them */
    MAP_REPLICATE, /* t clamped to 0..n */
    MAP_CIRCULAR,  /* t modulo n (circular padding, roll) */
    MAP_FLIP,      /* n - 1 - o */
    MAP_DIV,       /* o / div (repeat_interleave with one count) */
    MAP_TABLE,     /* table[o] (repeat_interleave with a count per element) */
} MapMode;

typedef struct {
    int64_t n;   /* x's size along the axis */
    int64_t out; /* the output's size along the axis */
    int64_t before;
    MapMode mode;
    int64_t div;
    const int64_t *table; /* out entries, each in 0..n */
} AxisMap;

typedef struct {
    int ndim;
    AxisMap axes[REF_MAX_DIMS];
    /* tril/triu: elements of the last two axes whose col - row lies outside lo..=hi take the
     * fill value. */
    int band;
    int64_t lo, hi;
    double fill;   /* converted to x's dtype as `fill` converts */
    int64_t *table; /* the storage of the one MAP_TABLE axis, or NULL */
} Remap;

/* The coordinate in x of output coordinate o (0 <= o < out) along the axis, or -1 for the fill
 * value. The attribute checks bound every coordinate that reaches x to 0..n. */
static int64_t axis_source(const AxisMap *m, int64_t o) {
    int64_t n = m->n, t, s;
    switch (m->mode) {
    case MAP_TABLE: return m->table[o];
    case MAP_FLIP: s = n - 1 - o; break;
    case MAP_DIV: s = o / m->div; break;
    default:
        if (!sub_ok(o, m->before, &t)) return -1; /* far outside x: constant padding */
        switch (m->mode) {
        case MAP_REFLECT:
            /* The counts are at most n - 1, so t lies in -(n-1)..=2(n-1): one reflection. */
            if (n == 1)
                s = 0;
            else if (t < 0)
                s = t == INT64_MIN ? -1 : -t;
            else if (t >= n)
                s = (n - 1) - (t - (n - 1));
            else
                s = t;
            break;
        case MAP_REPLICATE: s = t < 0 ? 0 : t >= n ? n - 1 : t; break;
        case MAP_CIRCULAR: s = n > 0 ? mod_euclid(t, n) : -1; break;
        default: s = t; break;
        }
    }
    return s >= 0 && s < n ? s : -1;
}

/* pad: (before, after) pairs in `pads`, the last axis first. */
static AnyaccelStatus remap_pad(const RefCall *c, const RefTensor *x, Remap *r) {
    const char *op = c->op;
    const int64_t *pads;
    size_t len;
    AnyaccelStatus st = ints_attr(c, "pads", &pads, &len);
    if (st) return st;
    if (len % 2 != 0 || len > 2 * (size_t)x->ndim)
        return REF_INVALID("%s: pads has %zu values, expected an even number up to %d (a before and an after count "
                           "for each padded axis, the last axis first) for x of shape %s",
                           op, len, 2 * x->ndim, ref_shape_str(x->ndim, x->shape).s);
    MapMode mode = MAP_CONST;
    const char *mode_name = "constant";
    const RefAttr *ma = ref_attr(c, "mode");
    if (ma) {
        if (ma->kind != ANYACCEL_ATTR_STR || !ma->str) return REF_INVALID("%s: attribute `mode` must be a Str", op);
        mode_name = ma->str;
        if (strcmp(mode_name, "constant") == 0)
            mode = MAP_CONST;
        else if (strcmp(mode_name, "reflect") == 0)
            mode = MAP_REFLECT;
        else if (strcmp(mode_name, "replicate") == 0)
            mode = MAP_REPLICATE;
        else if (strcmp(mode_name, "circular") == 0)
            mode = MAP_CIRCULAR;
        else
            return REF_INVALID("%s: mode `%s`, expected constant, reflect, replicate or circular", op, mode_name);
    }
    r->fill = 0.0;
    if (ref_attr_float(c, "value", &r->fill) < 0) return REF_INVALID("%s: attribute `value` must be a Float", op);
    for (size_t i = 0; i < len / 2; i++) {
        int d = x->ndim - 1 - (int)i;
        int64_t before = pads[2 * i], after = pads[2 * i + 1], n = x->shape[d], size;
        if (mode != MAP_CONST) {
            int64_t most = mode == MAP_REFLECT ? n - 1 : mode == MAP_CIRCULAR ? n : INT64_MAX;
            if (before < 0 || after < 0 || before > most || after > most)
                return REF_INVALID("%s: pads (%lld, %lld) on axis %d of size %lld: %s padding needs each count in "
                                   "0..=%lld",
                                   op, (long long)before, (long long)after, d, (long long)n, mode_name,
                                   (long long)most);
            if (n == 0 && (before > 0 || after > 0))
                return REF_INVALID("%s: %s padding of axis %d, which is empty; only constant padding adds to an "
                                   "empty axis",
                                   op, mode_name, d);
        }
        if (!ref_add_ok(n, before, &size) || !ref_add_ok(size, after, &size) || size < 0)
            return REF_INVALID("%s: pads (%lld, %lld) on axis %d of size %lld leave a negative size", op,
                               (long long)before, (long long)after, d, (long long)n);
        AxisMap *m = &r->axes[d];
        m->out = size;
        m->before = before;
        m->mode = mode;
    }
    return ANYACCEL_OK;
}

/* flip: each axis of `axes` at most once. */
static AnyaccelStatus remap_flip(const RefCall *c, const RefTensor *x, Remap *r) {
    const int64_t *axes;
    size_t len;
    AnyaccelStatus st = ints_attr(c, "axes", &axes, &len);
    if (st) return st;
    for (size_t i = 0; i < len; i++) {
        int d = 0;
        if ((st = norm_axis(c->op, axes[i], x->ndim, &d))) return st;
        if (r->axes[d].mode == MAP_FLIP) return REF_INVALID("%s: axis %d is listed twice in axes", c->op, d);
        r->axes[d].mode = MAP_FLIP;
    }
    return ANYACCEL_OK;
}

/* roll: out[(i + shift) mod n] = x[i]; an axis listed twice rolls by the sum. */
static AnyaccelStatus remap_roll(const RefCall *c, const RefTensor *x, Remap *r) {
    const int64_t *shifts, *axes;
    size_t ns, na;
    AnyaccelStatus st = ints_attr(c, "shifts", &shifts, &ns);
    if (st || (st = ints_attr(c, "axes", &axes, &na))) return st;
    if (ns != na) return REF_INVALID("%s: %zu shifts for %zu axes; give one shift per axis", c->op, ns, na);
    for (size_t i = 0; i < na; i++) {
        int d = 0;
        if ((st = norm_axis(c->op, axes[i], x->ndim, &d))) return st;
        AxisMap *m = &r->axes[d];
        m->mode = MAP_CIRCULAR;
        if (m->n > 0) {
            /* Both terms lie in 0..n, so their sum fits in uint64. */
            uint64_t sum = (uint64_t)m->before + (uint64_t)mod_euclid(shifts[i], m->n);
            m->before = (int64_t)(sum % (uint64_t)m->n);
        }
    }
    return ANYACCEL_OK;
}

/* tril, triu: a band on the last two axes. */
static AnyaccelStatus remap_tri(const RefCall *c, const RefTensor *x, Remap *r) {
    if (x->ndim < 2)
        return REF_INVALID("%s: x has rank %d (%s), expected rank 2 or more", c->op, x->ndim,
                           ref_shape_str(x->ndim, x->shape).s);
    int64_t k = 0;
    if (ref_attr_int(c, "diagonal", &k) < 0) return REF_INVALID("%s: attribute `diagonal` must be an Int", c->op);
    r->band = 1;
    if (strcmp(c->op, "tril") == 0) {
        r->lo = INT64_MIN;
        r->hi = k;
    } else {
        r->lo = k;
        r->hi = INT64_MAX;
    }
    return ANYACCEL_OK;
}

/* repeat_interleave: element i along `axis` repeated repeats[i] (or repeats[0]) times. The table
 * of a count per element is built only up to the output's size along the axis. */
static AnyaccelStatus remap_repeat(const RefCall *c, const RefTensor *x, Remap *r) {
    const char *op = c->op;
    if (x->ndim == 0)
        return REF_INVALID("%s: x is a scalar; repeat_interleave needs an axis (reshape to [1] first)", op);
    int d = 0;
    const int64_t *repeats;
    size_t len;
    AnyaccelStatus st = axis_attr(c, "axis", x->ndim, &d);
    if (st || (st = ints_attr(c, "repeats", &repeats, &len))) return st;
    for (size_t i = 0; i < len; i++)
        if (repeats[i] < 0)
            return REF_INVALID("%s: repeats holds %lld, expected counts >= 0", op, (long long)repeats[i]);
    AxisMap *m = &r->axes[d];
    const RefTensor *out = &c->outputs[0];
    int64_t n = m->n;
    if (len == 1) {
        if (!ref_mul_ok(n, repeats[0], &m->out))
            return REF_INVALID("%s: %lld x %lld elements overflow int64", op, (long long)n, (long long)repeats[0]);
        m->mode = MAP_DIV;
        m->div = repeats[0] > 0 ? repeats[0] : 1;
        return ANYACCEL_OK;
    }
    if ((int64_t)len != n)
        return REF_INVALID("%s: repeats has %zu counts, expected 1 or %lld (the size of axis %d)", op, len,
                           (long long)n, d);
    /* The sum, checked against the output before anything is allocated. */
    if (out->ndim != x->ndim)
        return REF_INVALID("%s: the output has shape %s, expected rank %d", op,
                           ref_shape_str(out->ndim, out->shape).s, x->ndim);
    int64_t total = 0, want = out->shape[d];
    for (size_t i = 0; i < len; i++)
        if (!ref_add_ok(total, repeats[i], &total) || total > want)
            return REF_INVALID("%s: the repeats sum past the output's size along axis %d", op, d);
    m->out = total;
    m->mode = MAP_TABLE;
    if (total == 0) return ANYACCEL_OK; /* the output is empty: no table */
    if ((uint64_t)total <= SIZE_MAX / sizeof(int64_t)) r->table = malloc((size_t)total * sizeof *r->table);
    if (!r->table) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    int64_t at = 0;
    for (size_t i = 0; i < len; i++)
        for (int64_t k = 0; k < repeats[i]; k++) r->table[at++] = (int64_t)i;
    m->table = r->table;
    return ANYACCEL_OK;
}

/* Writes every output element: x's element at the mapped coordinates, or the fill value. */
static void run_remap(const Remap *r, const RefTensor *x, const RefTensor *out) {
    int nd = r->ndim;
    size_t size = ref_dtype_size(x->dtype);
    int64_t bsize = (int64_t)size;
    unsigned char fill[8];
    ref_store_cast_f(x->dtype, fill, r->fill);
    /* Per axis: the output coordinate, and its source's term of x's offset (or missing). */
    int64_t total = ref_numel(out);
    if (total == 0) return;
    int64_t idx[REF_MAX_DIMS], part[REF_MAX_DIMS];
    int miss[REF_MAX_DIMS];
    int missing = 0;
    int64_t xo = 0, oo = 0;
    for (int d = 0; d < nd; d++) {
        int64_t s = axis_source(&r->axes[d], 0);
        idx[d] = 0;
        miss[d] = s < 0;
        part[d] = s < 0 ? 0 : s * x->strides[d];
        missing += miss[d];
        xo += part[d];
    }
    for (int64_t i = 0; i < total; i++) {
        int keep = missing == 0;
        if (keep && r->band) {
            int64_t diag = idx[nd - 1] - idx[nd - 2]; /* both in 0..INT64_MAX: no overflow */
            keep = diag >= r->lo && diag <= r->hi;
        }
        memcpy(out->base + oo * bsize, keep ? x->base + xo * bsize : fill, size);
        /* The next output element in row-major order. */
        for (int d = nd - 1; d >= 0; d--) {
            if (idx[d] + 1 < out->shape[d]) {
                idx[d]++;
                oo += out->strides[d];
            } else {
                oo -= out->strides[d] * (out->shape[d] - 1);
                idx[d] = 0;
            }
            int64_t s = axis_source(&r->axes[d], idx[d]);
            xo -= part[d];
            missing -= miss[d];
            miss[d] = s < 0;
            part[d] = s < 0 ? 0 : s * x->strides[d];
            xo += part[d];
            missing += miss[d];
            if (idx[d] != 0) break;
        }
    }
}

static AnyaccelStatus op_remap(const RefCall *c) {
    AnyaccelStatus st = ref_check_arity(c, 1);
    if (st) return st;
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    if ((st = check_tensor(c->op, "x", x, ALL_DTYPES))) return st;
    Remap r;
    memset(&r, 0, sizeof r);
    r.ndim = x->ndim;
    for (int d = 0; d < x->ndim; d++) {
        AxisMap *m = &r.axes[d];
        m->n = m->out = x->shape[d];
        m->mode = MAP_CONST;
        m->div = 1;
    }
    const char *op = c->op;
    if (strcmp(op, "pad") == 0)
        st = remap_pad(c, x, &r);
    else if (strcmp(op, "flip") == 0)
        st = remap_flip(c, x, &r);
    else if (strcmp(op, "roll") == 0)
        st = remap_roll(c, x, &r);
    else if (strcmp(op, "repeat_interleave") == 0)
        st = remap_repeat(c, x, &r);
    else
        st = remap_tri(c, x, &r);
    if (!st) {
        int64_t shape[REF_MAX_DIMS];
        for (int d = 0; d < x->ndim; d++) shape[d] = r.axes[d].out;
        st = check_out(c, x->dtype, x->ndim, shape);
    }
    if (!st) run_remap(&r, x, out);
    free(r.table);
    return st;
}

/* ---- one_hot, masked_fill ---------------------------------------------------------------------- */

static AnyaccelStatus op_one_hot(const RefCall *c) {
    const char *op = c->op;
    AnyaccelStatus st = ref_check_arity(c, 1);
    if (st) return st;
    const RefTensor *idx = &c->inputs[0], *out = &c->outputs[0];
    if ((st = check_tensor(op, "indices", idx, INDEX_DTYPES))) return st;
    int64_t classes = 0;
    int r = ref_attr_int(c, "num_classes", &classes);
    if (r < 0) return REF_INVALID("%s: attribute `num_classes` must be an Int", op);
    if (r == 0) return REF_INVALID("%s: attribute `num_classes` (Int) is required", op);
    if (classes < 0) return REF_INVALID("%s: num_classes is %lld, expected >= 0", op, (long long)classes);
    RefDType dtype = ANYACCEL_DTYPE_I64;
    const RefAttr *da = ref_attr(c, "dtype");
    if (da) {
        if (da->kind != ANYACCEL_ATTR_STR || !da->str)
            return REF_INVALID("%s: attribute `dtype` must be a Str", op);
        dtype = ref_dtype_named(da->str);
        if (!(ALL_DTYPES & ANYACCEL_DTYPE_BIT(dtype)))
            return REF_INVALID("%s: attribute `dtype` is `%s`, expected one of f32, f16, bf16, i32, i64, u8, i8, bool",
                               op, da->str);
    }
    if (idx->ndim >= REF_MAX_DIMS)
        return REF_INVALID("%s: indices has rank %d, expected at most %d", op, idx->ndim, REF_MAX_DIMS - 1);
    int64_t n = ref_numel(idx);
    if (classes == 0 && n > 0)
        return REF_INVALID("%s: num_classes is 0 but indices holds %lld values: every index would be out of range",
                           op, (long long)n);
    int64_t shape[REF_MAX_DIMS];
    for (int d = 0; d < idx->ndim; d++) shape[d] = idx->shape[d];
    shape[idx->ndim] = classes;
    if ((st = check_out(c, dtype, idx->ndim + 1, shape))) return st;
    if ((st = check_indices(op, idx, classes, idx->ndim))) return st;
    if (n == 0 || classes == 0) return ANYACCEL_OK;
    /* A row of `classes` elements per index: out without its last axis walks with the indices. */
    unsigned char one[8], zero[8];
    ref_store_cast_i(dtype, one, 1);
    ref_store_cast_i(dtype, zero, 0);
    int64_t size = (int64_t)ref_dtype_size(dtype), isize = (int64_t)ref_dtype_size(idx->dtype);
    int64_t step = out->strides[idx->ndim];
    RefTensor rows = *out;
    rows.ndim = idx->ndim;
    const RefTensor *ts[2] = {&rows, idx};
    RefIter it;
    ref_iter_init(&it, 2, ts);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        int64_t v = ref_load_i(idx->dtype, idx->base + it.offset[1] * isize);
        for (int64_t k = 0; k < classes; k++)
            memcpy(out->base + (it.offset[0] + k * step) * size, k == v ? one : zero, (size_t)size);
    }
    return ANYACCEL_OK;
}

static AnyaccelStatus op_masked_fill(const RefCall *c) {
    const char *op = c->op;
    AnyaccelStatus st = ref_check_arity(c, 2);
    if (st) return st;
    const RefTensor *x = &c->inputs[0], *mask = &c->inputs[1], *out = &c->outputs[0];
    if ((st = check_tensor(op, "x", x, ALL_DTYPES)) || (st = check_tensor(op, "mask", mask, REF_DT(BOOL))))
        return st;
    double value = 0.0;
    int r = ref_attr_float(c, "value", &value);
    if (r < 0) return REF_INVALID("%s: attribute `value` must be a Float", op);
    if (r == 0) return REF_INVALID("%s: attribute `value` (Float) is required", op);
    /* The mask broadcasts to x: its dimensions, aligned at the end, are x's or 1. */
    int fits = mask->ndim <= x->ndim;
    for (int d = 0; fits && d < mask->ndim; d++) {
        int64_t m = mask->shape[d], n = x->shape[x->ndim - mask->ndim + d];
        fits = m == n || m == 1;
    }
    if (!fits)
        return REF_INVALID("%s: mask %s does not broadcast to x %s", op, ref_shape_str(mask->ndim, mask->shape).s,
                           ref_shape_str(x->ndim, x->shape).s);
    if ((st = check_out(c, x->dtype, x->ndim, x->shape))) return st;
    int64_t n = ref_numel(out);
    if (n == 0) return ANYACCEL_OK;
    unsigned char fill[8];
    ref_store_cast_f(x->dtype, fill, value);
    int64_t size = (int64_t)ref_dtype_size(x->dtype);
    RefTensor m = ref_broadcast(mask, x->ndim, x->shape);
    const RefTensor *ts[3] = {out, x, &m};
    RefIter it;
    ref_iter_init(&it, 3, ts);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        int set = m.base[it.offset[2]] != 0;
        memcpy(out->base + it.offset[0] * size, set ? fill : x->base + it.offset[1] * size, (size_t)size);
    }
    return ANYACCEL_OK;
}

/* ---- scatter, scatter_add, index_add ----------------------------------------------------------- */

/* `t` without axis `axis`, with the sizes `shape` (rank t->ndim - 1). */
static RefTensor drop_axis(const RefTensor *t, int axis, const int64_t *shape) {
    RefTensor v = *t;
    v.ndim = t->ndim - 1;
    for (int d = 0, e = 0; d < t->ndim; d++) {
        if (d == axis) continue;
        v.shape[e] = shape[e];
        v.strides[e] = t->strides[d];
        e++;
    }
    return v;
}

/* Stores the low bits of v into an integer dtype (two's complement wrap). */
static void store_wrapped(RefDType d, unsigned char *p, uint64_t v) {
    switch (d) {
    case ANYACCEL_DTYPE_I32: {
        uint32_t w = (uint32_t)v;
        memcpy(p, &w, 4);
        return;
    }
    case ANYACCEL_DTYPE_I64: memcpy(p, &v, 8); return;
    default: p[0] = (unsigned char)(v & 0xff); return;
    }
}

/* alpha as an int64, saturated (alpha is integral for integer dtypes). */
static int64_t alpha_int(double alpha) {
    if (alpha >= 9223372036854775808.0) return INT64_MAX;
    if (alpha <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)alpha;
}

/*
 * The lines run along `axis`: for scatter and scatter_add over the index's other dimensions, for
 * index_add over the source's. On each line, source element k goes to out's element index[k]:
 * scatter keeps the last one (the largest k), the others add them in increasing k, starting from
 * x. Floats add in double and round once; integers wrap.
 */
static AnyaccelStatus op_scatter(const RefCall *c) {
    const char *op = c->op;
    int index_add = strcmp(op, "index_add") == 0;
    int add = strcmp(op, "scatter") != 0;
    const char *src_name = index_add ? "source" : "src";
    AnyaccelStatus st = ref_check_arity(c, 3);
    if (st) return st;
    const RefTensor *x = &c->inputs[0], *index = &c->inputs[1], *src = &c->inputs[2], *out = &c->outputs[0];
    if ((st = check_tensor(op, "x", x, add ? NUM_DTYPES : ALL_DTYPES)) ||
        (st = check_tensor(op, "index", index, INDEX_DTYPES)) ||
        (st = check_tensor(op, src_name, src, ANYACCEL_DTYPE_BIT(x->dtype))))
        return st;
    if (x->ndim == 0) return REF_INVALID("%s: x is a scalar, expected rank 1 or more", op);
    int axis = 0;
    if ((st = axis_attr(c, "axis", x->ndim, &axis))) return st;
    if (src->ndim != x->ndim)
        return REF_INVALID("%s: %s has rank %d but x has rank %d: ranks must match", op, src_name, src->ndim,
                           x->ndim);
    double alpha = 1.0;
    int64_t k_count; /* index elements per line */
    int64_t line_shape[REF_MAX_DIMS];
    if (index_add) {
        if (ref_attr_float(c, "alpha", &alpha) < 0) return REF_INVALID("%s: attribute `alpha` must be a Float", op);
        if (!isfinite(alpha) || (!ref_is_float(x->dtype) && alpha != trunc(alpha)))
            return REF_INVALID("%s: alpha is %g, expected a finite%s value for %s tensors", op, alpha,
                               ref_is_float(x->dtype) ? "" : ", integral", ref_dtype_name(x->dtype));
        if (index->ndim != 1)
            return REF_INVALID("%s: index has shape %s, expected a 1-D tensor", op,
                               ref_shape_str(index->ndim, index->shape).s);
        k_count = index->shape[0];
        int same = 1;
        for (int d = 0; d < x->ndim; d++) same = same && src->shape[d] == (d == axis ? k_count : x->shape[d]);
        if (!same)
            return REF_INVALID("%s: source is %s for x %s and %lld indices: expected x's shape with axis %d of "
                               "size %lld",
                               op, ref_shape_str(src->ndim, src->shape).s, ref_shape_str(x->ndim, x->shape).s,
                               (long long)k_count, axis, (long long)k_count);
        for (int d = 0, e = 0; d < x->ndim; d++)
            if (d != axis) line_shape[e++] = x->shape[d];
    } else {
        if (index->ndim != x->ndim)
            return REF_INVALID("%s: index has rank %d but x has rank %d: ranks must match", op, index->ndim,
                               x->ndim);
        for (int d = 0; d < x->ndim; d++)
            if (index->shape[d] > src->shape[d] || (d != axis && index->shape[d] > x->shape[d]))
                return REF_INVALID("%s: index is %s, src %s and x %s: index dim %d must be at most src's%s", op,
                                   ref_shape_str(index->ndim, index->shape).s,
                                   ref_shape_str(src->ndim, src->shape).s, ref_shape_str(x->ndim, x->shape).s, d,
                                   d == axis ? "" : " and x's");
        k_count = index->shape[axis];
        for (int d = 0, e = 0; d < x->ndim; d++)
            if (d != axis) line_shape[e++] = index->shape[d];
    }
    int64_t n = x->shape[axis];
    if (n == 0 && k_count > 0 && ref_numel(index) > 0)
        return REF_INVALID("%s: axis %d of x is empty, so every index is out of range", op, axis);
    if ((st = check_out(c, x->dtype, x->ndim, x->shape))) return st;
    if ((st = check_indices(op, index, n, axis))) return st;

    copy_elements(out, x);
    RefTensor ol = drop_axis(out, axis, line_shape);
    RefTensor sl = drop_axis(src, axis, line_shape);
    RefTensor il;
    int64_t istep;
    if (index_add) { /* the same index for every line */
        il = ol;
        il.base = index->base;
        il.dtype = index->dtype;
        for (int d = 0; d < il.ndim; d++) il.strides[d] = 0;
        istep = index->strides[0];
    } else {
        il = drop_axis(index, axis, line_shape);
        istep = index->strides[axis];
    }
    int64_t lines = ref_numel(&ol);
    if (lines == 0 || k_count == 0) return ANYACCEL_OK;

    RefDType dt = x->dtype;
    int64_t size = (int64_t)ref_dtype_size(dt), isize = (int64_t)ref_dtype_size(index->dtype);
    int64_t ostep = out->strides[axis], sstep = src->strides[axis];
    int floats = add && ref_is_float(dt);
    /* Floats: a double per element of the line, whether it was touched, and the touched ones. */
    double *acc = NULL;
    unsigned char *touched = NULL;
    int64_t *list = NULL;
    if (floats) {
        int64_t most = k_count < n ? k_count : n;
        if ((uint64_t)n > SIZE_MAX / sizeof(double))
            return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
        acc = malloc((size_t)n * sizeof *acc);
        touched = calloc((size_t)n, 1);
        list = malloc((size_t)most * sizeof *list);
        if (!acc || !touched || !list) {
            free(acc);
            free(touched);
            free(list);
            return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
        }
    }
    uint64_t a = (uint64_t)alpha_int(alpha);
    const RefTensor *ts[3] = {&ol, &il, &sl};
    RefIter it;
    ref_iter_init(&it, 3, ts);
    for (int64_t line = 0; line < lines; line++, ref_iter_next(&it)) {
        int64_t obase = it.offset[0], ibase = it.offset[1], sbase = it.offset[2];
        int64_t listed = 0;
        for (int64_t k = 0; k < k_count; k++) {
            /* In 0..n: check_indices saw every index. */
            int64_t j = ref_load_i(index->dtype, index->base + (ibase + k * istep) * isize);
            const unsigned char *s = src->base + (sbase + k * sstep) * size;
            unsigned char *t = out->base + (obase + j * ostep) * size;
            if (!add) {
                memcpy(t, s, (size_t)size);
            } else if (floats) {
                if (!touched[j]) {
                    touched[j] = 1;
                    acc[j] = ref_load_f(dt, t);
                    list[listed++] = j;
                }
                acc[j] += alpha * ref_load_f(dt, s);
            } else {
                uint64_t v = (uint64_t)ref_load_i(dt, t) + a * (uint64_t)ref_load_i(dt, s);
                store_wrapped(dt, t, v);
            }
        }
        for (int64_t l = 0; l < listed; l++) {
            int64_t j = list[l];
            ref_store_f(dt, out->base + (obase + j * ostep) * size, acc[j]);
            touched[j] = 0;
        }
    }
    free(acc);
    free(touched);
    free(list);
    return ANYACCEL_OK;
}

/* ---- embedding_backward ------------------------------------------------------------------------ */

/*
 * dweight [num_weights, D] starts as zeros; grad's row k (grad is indices' shape plus [D]) is added
 * to row indices[k], k in the indices' row-major order; the row padding_idx, if given, is zeros.
 * Each column of dweight is a line: its rows add in double, in increasing k, and round once.
 */
static AnyaccelStatus op_embedding_backward(const RefCall *c) {
    const char *op = c->op;
    AnyaccelStatus st = ref_check_arity(c, 2);
    if (st) return st;
    const RefTensor *g = &c->inputs[0], *idx = &c->inputs[1], *out = &c->outputs[0];
    if ((st = check_tensor(op, "grad", g, REF_DT(F32) | REF_DT(F16) | REF_DT(BF16))) ||
        (st = check_tensor(op, "indices", idx, INDEX_DTYPES)))
        return st;
    int64_t v = 0;
    int r = ref_attr_int(c, "num_weights", &v);
    if (r < 0) return REF_INVALID("%s: attribute `num_weights` must be an Int", op);
    if (r == 0) return REF_INVALID("%s: attribute `num_weights` (Int) is required", op);
    if (v < 0) return REF_INVALID("%s: num_weights is %lld, expected >= 0", op, (long long)v);
    int same = g->ndim == idx->ndim + 1;
    for (int d = 0; same && d < idx->ndim; d++) same = g->shape[d] == idx->shape[d];
    if (!same)
        return REF_INVALID("%s: grad is %s %s for indices %s %s: expected [..., D]", op, ref_dtype_name(g->dtype),
                           ref_shape_str(g->ndim, g->shape).s, ref_dtype_name(idx->dtype),
                           ref_shape_str(idx->ndim, idx->shape).s);
    int64_t pad = 0;
    int padded = ref_attr_int(c, "padding_idx", &pad);
    if (padded < 0) return REF_INVALID("%s: attribute `padding_idx` must be an Int", op);
    if (padded && (pad < -v || pad >= v))
        return REF_INVALID("%s: padding_idx %lld outside -%lld..%lld", op, (long long)pad, (long long)v,
                           (long long)v);
    int64_t k_count = ref_numel(idx);
    if (v == 0 && k_count > 0) return REF_INVALID("%s: num_weights is 0 but there are indices", op);
    int64_t dim = g->shape[g->ndim - 1];
    int64_t out_shape[2] = {v, dim};
    if ((st = check_out(c, g->dtype, 2, out_shape))) return st;
    /* An empty dweight: nothing runs and nothing is checked. */
    if (v == 0 || dim == 0) return ANYACCEL_OK;
    if ((st = check_indices(op, idx, v, 0))) return st;

    RefDType dt = g->dtype;
    int64_t size = (int64_t)ref_dtype_size(dt), isize = (int64_t)ref_dtype_size(idx->dtype);
    /* Zeros everywhere first: the rows no index names, and the padding row. */
    {
        const RefTensor *ts[1] = {out};
        RefIter it;
        ref_iter_init(&it, 1, ts);
        int64_t n = v * dim; /* check_out: out's element count fits in int64 */
        for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) ref_store_f(dt, out->base + it.offset[0] * size, 0.0);
    }
    if (k_count == 0) return ANYACCEL_OK;
    int64_t prow = padded ? mod_euclid(pad, v) : -1;

    /* The index offsets in row-major order, and per column a double per row of dweight, whether
     * it was touched, and the touched rows. */
    int64_t most = k_count < v ? k_count : v;
    if ((uint64_t)k_count > SIZE_MAX / sizeof(int64_t) || (uint64_t)v > SIZE_MAX / sizeof(double))
        return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    int64_t *rows = malloc((size_t)k_count * sizeof *rows);
    int64_t *goff = malloc((size_t)k_count * sizeof *goff);
    double *acc = malloc((size_t)v * sizeof *acc);
    unsigned char *touched = calloc((size_t)v, 1);
    int64_t *list = malloc((size_t)most * sizeof *list);
    if (!rows || !goff || !acc || !touched || !list) {
        free(rows);
        free(goff);
        free(acc);
        free(touched);
        free(list);
        return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    }
    {
        /* grad without its last axis has indices' shape: walk both together. */
        RefTensor gl = *g;
        gl.ndim = idx->ndim;
        const RefTensor *ts[2] = {idx, &gl};
        RefIter it;
        ref_iter_init(&it, 2, ts);
        for (int64_t k = 0; k < k_count; k++, ref_iter_next(&it)) {
            /* In 0..v: check_indices saw every index. */
            rows[k] = ref_load_i(idx->dtype, idx->base + it.offset[0] * isize);
            goff[k] = it.offset[1];
        }
    }
    int64_t gstep = g->strides[g->ndim - 1], ostep = out->strides[1], rstep = out->strides[0];
    for (int64_t col = 0; col < dim; col++) {
        int64_t listed = 0;
        for (int64_t k = 0; k < k_count; k++) {
            int64_t j = rows[k];
            if (j == prow) continue;
            if (!touched[j]) {
                touched[j] = 1;
                acc[j] = 0.0;
                list[listed++] = j;
            }
            acc[j] += ref_load_f(dt, g->base + (goff[k] + col * gstep) * size);
        }
        for (int64_t l = 0; l < listed; l++) {
            int64_t j = list[l];
            ref_store_f(dt, out->base + (j * rstep + col * ostep) * size, acc[j]);
            touched[j] = 0;
        }
    }
    free(rows);
    free(goff);
    free(acc);
    free(touched);
    free(list);
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_rearrange(const RefCall *c) {
    const char *op = c->op;
    if (strcmp(op, "one_hot") == 0) return op_one_hot(c);
    if (strcmp(op, "masked_fill") == 0) return op_masked_fill(c);
    if (strcmp(op, "embedding_backward") == 0) return op_embedding_backward(c);
    if (strcmp(op, "scatter") == 0 || strcmp(op, "scatter_add") == 0 || strcmp(op, "index_add") == 0)
        return op_scatter(c);
    return op_remap(c);
}
