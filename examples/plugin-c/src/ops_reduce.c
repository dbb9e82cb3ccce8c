/*
 * Reductions: sum, mean, max, min, argmax, argmin, prod, any, all, logsumexp, var, std over any
 * set of axes, cumsum, cumprod, cummax and cummin along one axis, and topk, sort and argsort
 * along one axis (docs/ops.md, section 8.4). Floats accumulate in double and round once to the output dtype,
 * integers in int64 with wrapping.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

/* Which axes are kept and which reduced. */
typedef struct {
    int kept_n, red_n;
    int kept[REF_MAX_DIMS], red[REF_MAX_DIMS];
    int64_t kept_count, red_count;
} Plan;

static AnyaccelStatus make_plan(const RefCall *c, const RefTensor *x, Plan *p) {
    int reduced[REF_MAX_DIMS] = {0};
    const int64_t *axes = NULL;
    size_t len = 0;
    if (ref_attr_ints(c, "axes", &axes, &len) < 0)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `axes` must be Ints", c->op);
    if (len == 0) { /* absent or empty: every axis */
        for (int d = 0; d < x->ndim; d++) reduced[d] = 1;
    } else {
        for (size_t i = 0; i < len; i++) {
            int a = ref_axis(axes[i], x->ndim);
            if (a < 0 || a >= x->ndim)
                return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: axis %lld is out of range for rank %d",
                                 c->op, (long long)axes[i], x->ndim);
            reduced[a] = 1;
        }
    }
    memset(p, 0, sizeof *p);
    p->kept_count = p->red_count = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (reduced[d]) {
            p->red[p->red_n++] = d;
            p->red_count *= x->shape[d];
        } else {
            p->kept[p->kept_n++] = d;
            p->kept_count *= x->shape[d];
        }
    }
    return ANYACCEL_OK;
}

/* Element offset in x of the element with row-major index `linear` over the axes `axes`. */
static int64_t offset_over(const RefTensor *x, const int *axes, int n, int64_t linear) {
    int64_t off = 0;
    for (int i = n - 1; i >= 0; i--) {
        int64_t size = x->shape[axes[i]];
        off += (linear % size) * x->strides[axes[i]];
        linear /= size;
    }
    return off;
}

/* The reduced elements of one output: x's elements at `base` plus the offsets over the reduced
 * axes, numbered row-major. */
typedef struct {
    const RefTensor *x;
    const Plan *p;
    const unsigned char *base;
    size_t xs;
} Group;

static const unsigned char *group_elem(const Group *g, int64_t r) {
    return g->base + offset_over(g->x, g->p->red, g->p->red_n, r) * (int64_t)g->xs;
}

static double group_f(const Group *g, int64_t r) { return ref_load_f(g->x->dtype, group_elem(g, r)); }
static int64_t group_i(const Group *g, int64_t r) { return ref_load_i(g->x->dtype, group_elem(g, r)); }

/* prod: 1 over zero elements; floats by IEEE in double, integers wrapping. */
static void reduce_prod(const Group *g, int64_t n, const RefTensor *out, unsigned char *dst) {
    if (ref_is_float(g->x->dtype)) {
        double v = 1.0;
        for (int64_t r = 0; r < n; r++) v *= group_f(g, r);
        ref_store_f(out->dtype, dst, v);
    } else {
        uint64_t v = 1;
        for (int64_t r = 0; r < n; r++) v *= (uint64_t)group_i(g, r);
        ref_store_i(out->dtype, dst, (int64_t)v);
    }
}

/* any, all: a bool; an element is true when nonzero (NaN is true, -0.0 false). Zero elements give
 * false for any and true for all. */
static void reduce_logical(const Group *g, int64_t n, int is_all, const RefTensor *out, unsigned char *dst) {
    int fl = ref_is_float(g->x->dtype);
    int v = is_all;
    for (int64_t r = 0; r < n && v == is_all; r++) v = fl ? group_f(g, r) != 0.0 : group_i(g, r) != 0;
    ref_store_i(out->dtype, dst, v);
}

/* logsumexp: m + log(sum(exp(x - m))), m the maximum, taken as 0 when infinite. NaN gives NaN; a
 * +Inf gives +Inf; all -Inf, or zero elements, give -Inf. */
static void reduce_logsumexp(const Group *g, int64_t n, const RefTensor *out, unsigned char *dst) {
    double m = -INFINITY;
    for (int64_t r = 0; r < n; r++) {
        double v = group_f(g, r);
        if (isnan(v)) {
            ref_store_f(out->dtype, dst, NAN);
            return;
        }
        if (v > m) m = v;
    }
    if (isinf(m)) m = 0.0;
    double s = 0.0;
    for (int64_t r = 0; r < n; r++) s += exp(group_f(g, r) - m);
    ref_store_f(out->dtype, dst, m + log(s));
}

/* var, std: two passes, the mean and then the sum of squared deviations, divided by
 * n - correction. n <= correction (no divisor) and an Inf or NaN among the elements give NaN. */
static void reduce_var(const Group *g, int64_t n, int64_t correction, int is_std, const RefTensor *out,
                       unsigned char *dst) {
    if (n <= correction) {
        ref_store_f(out->dtype, dst, NAN);
        return;
    }
    double sum = 0.0;
    for (int64_t r = 0; r < n; r++) sum += group_f(g, r);
    double mean = sum / (double)n, ss = 0.0;
    if (n > 0 && !isfinite(mean)) {
        ref_store_f(out->dtype, dst, NAN);
        return;
    }
    for (int64_t r = 0; r < n; r++) {
        double d = group_f(g, r) - mean;
        ss += d * d;
    }
    double v = ss / (double)(n - correction);
    ref_store_f(out->dtype, dst, is_std ? sqrt(v) : v);
}

/* Reads `correction` (Int, default 1, >= 0) into *out. */
static AnyaccelStatus correction_attr(const RefCall *c, int64_t *out) {
    *out = 1;
    if (ref_attr_int(c, "correction", out) < 0)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `correction` must be an Int", c->op);
    if (*out < 0)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `correction` is %lld, expected >= 0",
                         c->op, (long long)*out);
    return ANYACCEL_OK;
}

static AnyaccelStatus op_reduce(const RefCall *c) {
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    Plan p;
    AnyaccelStatus st = make_plan(c, x, &p);
    if (st) return st;
    const char *op = c->op;
    int is_var = strcmp(op, "var") == 0, is_std = strcmp(op, "std") == 0;
    int64_t correction = 1;
    if (is_var || is_std) {
        st = correction_attr(c, &correction);
        if (st) return st;
    }
    int is_arg = strncmp(op, "arg", 3) == 0;
    int largest = strcmp(op, "max") == 0 || strcmp(op, "argmax") == 0;
    size_t xs = ref_dtype_size(x->dtype);
    int fl = ref_is_float(x->dtype);
    /* Output element o is the kept-axes index o in row-major order, with or without keepdim. */
    for (int64_t o = 0; o < p.kept_count; o++) {
        const unsigned char *base = x->base + offset_over(x, p.kept, p.kept_n, o) * (int64_t)xs;
        unsigned char *dst = ref_elem(out, o);
        const Group g = {x, &p, base, xs};
        if (strcmp(op, "prod") == 0) {
            reduce_prod(&g, p.red_count, out, dst);
            continue;
        }
        if (strcmp(op, "any") == 0 || strcmp(op, "all") == 0) {
            reduce_logical(&g, p.red_count, strcmp(op, "all") == 0, out, dst);
            continue;
        }
        if (strcmp(op, "logsumexp") == 0) {
            reduce_logsumexp(&g, p.red_count, out, dst);
            continue;
        }
        if (is_var || is_std) {
            reduce_var(&g, p.red_count, correction, is_std, out, dst);
            continue;
        }
        if (strcmp(op, "sum") == 0 || strcmp(op, "mean") == 0) {
            if (fl) {
                double s = 0.0;
                for (int64_t r = 0; r < p.red_count; r++)
                    s += ref_load_f(x->dtype, base + offset_over(x, p.red, p.red_n, r) * (int64_t)xs);
                if (op[0] == 'm') s /= (double)p.red_count; /* 0 / 0 is NaN */
                ref_store_f(out->dtype, dst, s);
            } else {
                uint64_t s = 0;
                for (int64_t r = 0; r < p.red_count; r++)
                    s += (uint64_t)ref_load_i(x->dtype, base + offset_over(x, p.red, p.red_n, r) * (int64_t)xs);
                ref_store_i(out->dtype, dst, (int64_t)s);
            }
            continue;
        }
        /* max, min, argmax, argmin: the first best; NaN beats every number. */
        int64_t best = 0;
        double bf = 0.0;
        int64_t bi = 0;
        for (int64_t r = 0; r < p.red_count; r++) {
            const unsigned char *e = base + offset_over(x, p.red, p.red_n, r) * (int64_t)xs;
            if (fl) {
                double v = ref_load_f(x->dtype, e);
                if (r == 0 || (!isnan(bf) && (isnan(v) || (largest ? v > bf : v < bf)))) {
                    best = r;
                    bf = v;
                }
                if (isnan(bf)) break;
            } else {
                int64_t v = ref_load_i(x->dtype, e);
                if (r == 0 || (largest ? v > bi : v < bi)) {
                    best = r;
                    bi = v;
                }
            }
        }
        if (is_arg)
            ref_store_i(out->dtype, dst, best);
        else if (fl)
            ref_store_f(out->dtype, dst, bf);
        else
            ref_store_i(out->dtype, dst, bi);
    }
    return ANYACCEL_OK;
}

/* The lines along `axis`: element offset of the start of line `line`. */
static int64_t line_start(const RefTensor *x, int axis, int64_t line) {
    int64_t off = 0;
    for (int d = x->ndim - 1; d >= 0; d--) {
        if (d == axis) continue;
        int64_t size = x->shape[d];
        off += (line % size) * x->strides[d];
        line /= size;
    }
    return off;
}

/* Reads a boolean attribute `name` (Int, 0 or 1) into *out, which holds its default. */
static AnyaccelStatus flag_attr(const RefCall *c, const char *name, int *out) {
    int64_t v = *out;
    if (ref_attr_int(c, name, &v) < 0)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `%s` must be an Int", c->op, name);
    if (v != 0 && v != 1)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `%s` is %lld, expected 0 or 1", c->op,
                         name, (long long)v);
    *out = (int)v;
    return ANYACCEL_OK;
}

/* A float running product kept as m * 2^e with m in [0.5, 1) (or 0, Inf, NaN), so that no partial
 * product overflows or underflows before the prefix product itself does. */
typedef struct {
    double m;
    int64_t e;
} ScaledProd;

static void scaled_mul(ScaledProd *s, double v) {
    int ev = 0;
    double f = isfinite(v) ? frexp(v, &ev) : v; /* frexp leaves the exponent unset for Inf, NaN */
    s->m *= f;
    s->e += ev;
    if (isfinite(s->m) && s->m != 0.0) {
        int k = 0;
        s->m = frexp(s->m, &k);
        s->e += k;
    }
}

static double scaled_value(const ScaledProd *s) {
    if (!isfinite(s->m) || s->m == 0.0) return s->m;
    /* Past +-2^20 the value is Inf or 0 in double anyway; the clamp keeps ldexp's int in range. */
    int64_t e = s->e < -(1 << 20) ? -(1 << 20) : s->e > (1 << 20) ? (1 << 20) : s->e;
    return ldexp(s->m, (int)e);
}

typedef enum { SCAN_SUM, SCAN_PROD, SCAN_MAX, SCAN_MIN } ScanKind;

/* The running value of one line of a scan: a sum or a running extreme in sf or si, a float
 * product in pf. */
typedef struct {
    RefDType dtype; /* x's */
    ScanKind kind;
    int has; /* an extreme has taken an element */
    double sf;
    ScaledProd pf;
    uint64_t si;
} Scan;

static void scan_take(Scan *s, const unsigned char *p) {
    if (s->kind == SCAN_MAX || s->kind == SCAN_MIN) {
        /* After a NaN every value is NaN; of equal values the later one. */
        int max = s->kind == SCAN_MAX;
        if (ref_is_float(s->dtype)) {
            double e = ref_load_f(s->dtype, p);
            if (!s->has || (!isnan(s->sf) && (isnan(e) || (max ? e >= s->sf : e <= s->sf)))) s->sf = e;
        } else {
            int64_t e = ref_load_i(s->dtype, p), b = (int64_t)s->si;
            if (!s->has || (max ? e >= b : e <= b)) s->si = (uint64_t)e;
        }
        s->has = 1;
    } else if (!ref_is_float(s->dtype)) {
        uint64_t v = (uint64_t)ref_load_i(s->dtype, p);
        s->si = s->kind == SCAN_PROD ? s->si * v : s->si + v;
    } else if (s->kind == SCAN_PROD) {
        scaled_mul(&s->pf, ref_load_f(s->dtype, p));
    } else {
        s->sf += ref_load_f(s->dtype, p);
    }
}

static void scan_store(const Scan *s, const RefTensor *out, unsigned char *q) {
    if (!ref_is_float(s->dtype))
        ref_store_i(out->dtype, q, (int64_t)s->si);
    else
        ref_store_f(out->dtype, q, s->kind == SCAN_PROD ? scaled_value(&s->pf) : s->sf);
}

/* cumsum, cumprod, cummax, cummin along `axis`: out[i] combines x[j] over j <= i (j < i with
 * exclusive, which only cumsum and cumprod take), or over j >= i (j > i) with reverse. The empty
 * sum is 0, the empty product 1. */
static AnyaccelStatus op_scan(const RefCall *c) {
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    ScanKind kind = strcmp(c->op, "cumprod") == 0  ? SCAN_PROD
                    : strcmp(c->op, "cummax") == 0 ? SCAN_MAX
                    : strcmp(c->op, "cummin") == 0 ? SCAN_MIN
                                                   : SCAN_SUM;
    int64_t axis = 0;
    int r = ref_attr_int(c, "axis", &axis);
    if (r < 0) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `axis` must be an Int", c->op);
    if (r == 0) return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `axis` (Int) is required", c->op);
    int a = ref_axis(axis, x->ndim);
    if (a < 0 || a >= x->ndim)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: axis %lld is out of range for rank %d", c->op,
                         (long long)axis, x->ndim);
    int exclusive = 0, reverse = 0;
    AnyaccelStatus st = flag_attr(c, "exclusive", &exclusive);
    if (st) return st;
    st = flag_attr(c, "reverse", &reverse);
    if (st) return st;
    int64_t len = x->shape[a];
    int64_t lines = len ? ref_numel(x) / len : 0;
    size_t xs = ref_dtype_size(x->dtype), os = ref_dtype_size(out->dtype);
    for (int64_t l = 0; l < lines; l++) {
        int64_t xo = line_start(x, a, l), oo = line_start(out, a, l);
        Scan sc = {x->dtype, kind, 0, 0.0, {1.0, 0}, kind == SCAN_PROD ? 1u : 0u};
        for (int64_t k = 0; k < len; k++) {
            int64_t i = reverse ? len - 1 - k : k;
            const unsigned char *p = x->base + (xo + i * x->strides[a]) * (int64_t)xs;
            unsigned char *q = out->base + (oo + i * out->strides[a]) * (int64_t)os;
            if (exclusive) scan_store(&sc, out, q);
            scan_take(&sc, p);
            if (!exclusive) scan_store(&sc, out, q);
        }
    }
    return ANYACCEL_OK;
}

/* -1, 0, 1 in the total order of topk and sort: NaN above every number, NaNs equal, -0 equal to
 * +0. */
static int cmp_nan_greatest(double a, double b) {
    int na = isnan(a), nb = isnan(b);
    if (na || nb) return na - nb;
    return (a > b) - (a < b);
}

/* One line along the axis, loaded once: floats as doubles, integers as int64. */
typedef struct {
    int fl;
    double *f;
    int64_t *i;
} Keys;

/* -1, 0, 1: where element p stands against element q in ascending order. */
static int keys_cmp(const Keys *k, int64_t p, int64_t q) {
    if (k->fl) return cmp_nan_greatest(k->f[p], k->f[q]);
    return (k->i[p] > k->i[q]) - (k->i[p] < k->i[q]);
}

/* Sorts the positions 0..n-1 of a line into `order`: ascending, or descending with `desc`,
 * stably, so that equal elements keep their order of position in both directions (the order
 * in which topk takes them: among equals the lower index first). A bottom-up merge sort through
 * `tmp` (n entries). */
static void sort_line(const Keys *k, int64_t n, int desc, int64_t *order, int64_t *tmp) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    int64_t *src = order, *dst = tmp;
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n;
            int64_t hi = mid + width < n ? mid + width : n;
            int64_t l = lo, r = mid, o = lo;
            while (l < mid && r < hi) {
                /* The right run's head goes first only when it is strictly before the left's. */
                int cmp = keys_cmp(k, src[r], src[l]);
                dst[o++] = (desc ? cmp > 0 : cmp < 0) ? src[r++] : src[l++];
            }
            while (l < mid) dst[o++] = src[l++];
            while (r < hi) dst[o++] = src[r++];
        }
        int64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != order) memcpy(order, src, (size_t)n * sizeof *order);
}

/* topk, sort, argsort along `axis` (Int, default -1): each line of x sorted by sort_line. topk
 * writes the first k of each line (k <= the axis length, largest = descending), sort the whole
 * line (values, then i64 indices), argsort only the indices. */
static AnyaccelStatus op_sort(const RefCall *c) {
    const char *op = c->op;
    int is_topk = strcmp(op, "topk") == 0, is_arg = strcmp(op, "argsort") == 0;
    size_t want = is_arg ? 1 : 2;
    if (c->num_outputs != want)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: %zu outputs given, expected %zu", op,
                         c->num_outputs, want);
    const RefTensor *x = &c->inputs[0];
    const RefTensor *values = is_arg ? NULL : &c->outputs[0], *indices = &c->outputs[is_arg ? 0 : 1];
    int64_t axis = -1;
    if (ref_attr_int(c, "axis", &axis) < 0)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `axis` must be an Int", op);
    int a = ref_axis(axis, x->ndim);
    if (a < 0 || a >= x->ndim)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: axis %lld is out of range for rank %d", op,
                         (long long)axis, x->ndim);
    int64_t len = x->shape[a], k = len;
    int desc = is_topk;
    AnyaccelStatus st = flag_attr(c, is_topk ? "largest" : "descending", &desc);
    if (st) return st;
    if (is_topk) {
        int r = ref_attr_int(c, "k", &k);
        if (r <= 0)
            return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "topk: attribute `k` (Int) is required");
        if (k < 0 || k > len)
            return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "topk: k is %lld, expected 0 to %lld (the axis "
                             "length)", (long long)k, (long long)len);
    }
    int64_t lines = len ? ref_numel(x) / len : 0;
    if (lines == 0 || k == 0) return ANYACCEL_OK;
    size_t xs = ref_dtype_size(x->dtype), is = ref_dtype_size(indices->dtype);
    Keys keys = {ref_is_float(x->dtype), NULL, NULL};
    void *key_mem = malloc((size_t)len * (keys.fl ? sizeof(double) : sizeof(int64_t)));
    int64_t *order = malloc((size_t)len * sizeof *order), *tmp = malloc((size_t)len * sizeof *tmp);
    if (!key_mem || !order || !tmp) {
        free(key_mem);
        free(order);
        free(tmp);
        return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    }
    if (keys.fl)
        keys.f = key_mem;
    else
        keys.i = key_mem;
    for (int64_t l = 0; l < lines; l++) {
        int64_t xo = line_start(x, a, l), io = line_start(indices, a, l);
        int64_t vo = values ? line_start(values, a, l) : 0;
        for (int64_t i = 0; i < len; i++) {
            const unsigned char *p = x->base + (xo + i * x->strides[a]) * (int64_t)xs;
            if (keys.fl)
                keys.f[i] = ref_load_f(x->dtype, p);
            else
                keys.i[i] = ref_load_i(x->dtype, p);
        }
        sort_line(&keys, len, desc, order, tmp);
        for (int64_t t = 0; t < k; t++) {
            if (values)
                memcpy(values->base + (vo + t * values->strides[a]) * (int64_t)xs,
                       x->base + (xo + order[t] * x->strides[a]) * (int64_t)xs, xs);
            unsigned char *q = indices->base + (io + t * indices->strides[a]) * (int64_t)is;
            ref_store_i(indices->dtype, q, order[t]);
        }
    }
    free(key_mem);
    free(order);
    free(tmp);
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_reduction(const RefCall *c) {
    if (strncmp(c->op, "cum", 3) == 0) return op_scan(c);
    if (strcmp(c->op, "topk") == 0 || strcmp(c->op, "sort") == 0 || strcmp(c->op, "argsort") == 0)
        return op_sort(c);
    return op_reduce(c);
}
