/*
 * The float ops of neural networks: softmax, log_softmax, their gradients softmax_backward and
 * log_softmax_backward, layer_norm, rms_norm and their gradients layer_norm_backward and
 * rms_norm_backward, matmul, rope, attention (docs/ops.md, sections 8.5 to 8.8), and the loss
 * cross_entropy with its gradient cross_entropy_backward (section 8.16).
 * Everything accumulates in double and each output is rounded once to its dtype.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

/* Element offset of the start of line `line` along `axis`. */
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

/* The line of `len` elements of x at element offset xo, `step` apart: its maximum *m and
 * *s = sum_i exp(x_i - m), so that its log-sum-exp is m + log(s) and its softmax exp(x_i - m) / s.
 * fmax skips NaN, but a NaN still makes its exp, and so the sum, NaN; so does a +Inf (Inf - Inf). */
static void line_exp_sum(const RefTensor *x, int64_t xo, int64_t step, int64_t len, double *m, double *s) {
    *m = -INFINITY;
    for (int64_t i = 0; i < len; i++) *m = fmax(*m, ref_at(x, xo + i * step));
    *s = 0.0;
    for (int64_t i = 0; i < len; i++) *s += exp(ref_at(x, xo + i * step) - *m);
}

/* ---- softmax, log_softmax -------------------------------------------------------------------- */

static AnyaccelStatus op_softmax(const RefCall *c, int log_form) {
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    int64_t axis = -1;
    ref_attr_int(c, "axis", &axis);
    int a = ref_axis(axis, x->ndim);
    int64_t len = x->shape[a];
    int64_t lines = len ? ref_numel(x) / len : 0;
    for (int64_t l = 0; l < lines; l++) {
        int64_t xo = line_start(x, a, l), oo = line_start(out, a, l);
        double m, s;
        line_exp_sum(x, xo, x->strides[a], len, &m, &s);
        for (int64_t i = 0; i < len; i++) {
            double v = ref_at(x, xo + i * x->strides[a]);
            ref_put(out, oo + i * out->strides[a], log_form ? (v - m) - log(s) : exp(v - m) / s);
        }
    }
    return ANYACCEL_OK;
}

/* ---- softmax_backward, log_softmax_backward -------------------------------------------------- */

/*
 * y is the forward op's output. Per line along `axis`: softmax_backward is
 * dx_i = y_i * (grad_i - sum_j grad_j * y_j), log_softmax_backward is
 * dx_i = grad_i - exp(y_i) * sum_j grad_j. Sums in double, each dx rounded once.
 */
static AnyaccelStatus op_softmax_backward(const RefCall *c, int log_form) {
    const char *op = c->op;
    if (c->num_inputs != 2 || c->num_outputs != 1 || !c->inputs[0].present || !c->inputs[1].present)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: expected inputs grad and y and output dx", op);
    const RefTensor *g = &c->inputs[0], *y = &c->inputs[1], *out = &c->outputs[0];
    const unsigned floats = ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_F32) | ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_F16) |
                            ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_BF16);
    AnyaccelStatus st;
    if ((st = ref_check_tensor(op, "grad", g, floats)) ||
        (st = ref_check_tensor(op, "y", y, ANYACCEL_DTYPE_BIT(g->dtype))) ||
        (st = ref_check_tensor(op, "dx", out, ANYACCEL_DTYPE_BIT(g->dtype))))
        return st;
    int same = g->ndim == y->ndim && out->ndim == y->ndim;
    for (int d = 0; same && d < y->ndim; d++) same = g->shape[d] == y->shape[d] && out->shape[d] == y->shape[d];
    if (!same) {
        char gs[REF_MAX_DIMS * 21 + 16], ys[REF_MAX_DIMS * 21 + 16];
        ref_dims_str(g, gs, sizeof gs);
        ref_dims_str(y, ys, sizeof ys);
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: grad is %s but y is %s: shapes must be equal", op,
                         gs, ys);
    }
    int64_t axis = -1;
    if (ref_attr_int(c, "axis", &axis) < 0)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `axis` must be an Int", op);
    /* In -rank..rank, so a scalar, which has no axis, is refused. */
    if (axis < -(int64_t)y->ndim || axis >= (int64_t)y->ndim)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: axis %lld is out of range for rank %d", op,
                         (long long)axis, y->ndim);
    int64_t n = ref_numel(y);
    if (n == 0) return ANYACCEL_OK;
    int a = ref_axis(axis, y->ndim);
    int64_t len = y->shape[a], lines = n / len; /* len > 0: n > 0 */
    int64_t gs = g->strides[a], ys = y->strides[a], os = out->strides[a];
    for (int64_t l = 0; l < lines; l++) {
        int64_t go = line_start(g, a, l), yo = line_start(y, a, l), oo = line_start(out, a, l);
        double s = 0.0;
        for (int64_t i = 0; i < len; i++) {
            double gv = ref_at(g, go + i * gs);
            s += log_form ? gv : gv * ref_at(y, yo + i * ys);
        }
        for (int64_t i = 0; i < len; i++) {
            double gv = ref_at(g, go + i * gs), yv = ref_at(y, yo + i * ys);
            ref_put(out, oo + i * os, log_form ? gv - exp(yv) * s : yv * (gv - s));
        }
    }
    return ANYACCEL_OK;
}

/* ---- layer_norm, rms_norm, layer_norm_backward, rms_norm_backward ---------------------------- */

/*
 * Each row along x's last axis (of size D) is a group (norm.c), its channel the index along the
 * row. layer_norm: y = (x - mean) / sqrt(var + eps) * w + b with the row's mean and biased
 * variance; rms_norm: y = x / sqrt(mean(x^2) + eps) * w. Their gradients recompute the row's
 * statistics from x and give dx, dweight (the sum over rows of grad * xhat) and, for
 * layer_norm_backward, dbias (the sum over rows of grad).
 */

static AnyaccelStatus op_norm(const RefCall *c, int rms) {
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    const RefTensor *w = c->num_inputs > 1 && c->inputs[1].present ? &c->inputs[1] : NULL;
    const RefTensor *b = !rms && c->num_inputs > 2 && c->inputs[2].present ? &c->inputs[2] : NULL;
    double eps = rms ? 1e-6 : 1e-5;
    ref_attr_float(c, "eps", &eps);
    ref_norm_forward(REF_NORM_ROWS, x, out, w, b, 0, rms, eps);
    return ANYACCEL_OK;
}

static AnyaccelStatus op_norm_backward(const RefCall *c, int rms) {
    RefNormGrad g;
    double eps = rms ? 1e-6 : 1e-5;
    AnyaccelStatus st;
    if ((st = ref_norm_grad_check(c, 0, 0, !rms, &g)) || (st = ref_eps_attr(c, &eps))) return st;
    return ref_norm_grad_run(c->op, &g, REF_NORM_ROWS, 0, rms, eps, rms ? REF_NORM_SCALE : REF_NORM_MEAN_AND_SCALE);
}

/* ---- matmul ---------------------------------------------------------------------------------- */

/* Element offset of batch index `bi` (row-major over out's batch dims) in t, whose batch dims
 * broadcast to out's. */
static int64_t batch_offset(const RefTensor *t, const RefTensor *out, int64_t bi) {
    int nb_out = out->ndim - 2, nb_t = t->ndim - 2;
    int64_t off = 0;
    for (int d = nb_out - 1; d >= 0; d--) {
        int64_t size = out->shape[d];
        int64_t coord = bi % size;
        bi /= size;
        int td = d - (nb_out - nb_t);
        if (td >= 0 && t->shape[td] != 1) off += coord * t->strides[td];
    }
    return off;
}

static AnyaccelStatus op_matmul(const RefCall *c) {
    const RefTensor *a = &c->inputs[0], *b = &c->inputs[1], *out = &c->outputs[0];
    const RefTensor *bias = c->num_inputs > 2 && c->inputs[2].present ? &c->inputs[2] : NULL;
    int ra = a->ndim, rb = b->ndim, ro = out->ndim;
    int64_t m = a->shape[ra - 2], k = a->shape[ra - 1], n = b->shape[rb - 1];
    int64_t batches = 1;
    for (int d = 0; d < ro - 2; d++) batches *= out->shape[d];
    RefTensor bb;
    if (bias) bb = ref_broadcast(bias, ro, out->shape);
    int64_t sam = a->strides[ra - 2], sak = a->strides[ra - 1];
    int64_t sbk = b->strides[rb - 2], sbn = b->strides[rb - 1];
    int64_t som = out->strides[ro - 2], son = out->strides[ro - 1];
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t ao = batch_offset(a, out, bi), bo = batch_offset(b, out, bi), oo = batch_offset(out, out, bi);
        int64_t bias_o = bias ? batch_offset(&bb, out, bi) : 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0.0; /* K = 0 gives 0 */
                for (int64_t p = 0; p < k; p++)
                    s += ref_at(a, ao + i * sam + p * sak) * ref_at(b, bo + p * sbk + j * sbn);
                if (bias) s += ref_at(&bb, bias_o + i * bb.strides[ro - 2] + j * bb.strides[ro - 1]);
                ref_put(out, oo + i * som + j * son, s);
            }
    }
    return ANYACCEL_OK;
}

/* ---- rope ------------------------------------------------------------------------------------ */

static AnyaccelStatus op_rope(const RefCall *c) {
    const RefTensor *x = &c->inputs[0], *cs = &c->inputs[1], *sn = &c->inputs[2], *out = &c->outputs[0];
    int64_t interleaved = 0;
    ref_attr_int(c, "interleaved", &interleaved);
    int r = x->ndim;
    int64_t s_len = x->shape[r - 2], d = x->shape[r - 1], half = d / 2;
    int64_t rows = d ? ref_numel(x) / d : 0;
    int64_t xs = x->strides[r - 1], os = out->strides[r - 1];
    for (int64_t row = 0; row < rows; row++) {
        int64_t s = row % s_len;
        int64_t xo = line_start(x, r - 1, row), oo = line_start(out, r - 1, row);
        for (int64_t i = 0; i < half; i++) {
            int64_t p1 = interleaved ? 2 * i : i, p2 = interleaved ? 2 * i + 1 : i + half;
            double x1 = ref_at(x, xo + p1 * xs), x2 = ref_at(x, xo + p2 * xs);
            double cv = ref_at(cs, s * cs->strides[0] + i * cs->strides[1]);
            double sv = ref_at(sn, s * sn->strides[0] + i * sn->strides[1]);
            ref_put(out, oo + p1 * os, x1 * cv - x2 * sv);
            ref_put(out, oo + p2 * os, x2 * cv + x1 * sv);
        }
    }
    return ANYACCEL_OK;
}

/* ---- attention ------------------------------------------------------------------------------- */

/*
 * Element offset in t (k, v or out) of q's batch `bi` (row-major over q's batch dims `qshape`).
 * t's head dimension (rank - 3) may be q's divided by `group` (grouped-query attention): query
 * head h reads head h / group there. The other batch dims are equal.
 */
static int64_t attention_batch_offset(const RefTensor *t, const int64_t *qshape, int64_t group, int64_t bi) {
    int64_t off = 0;
    for (int d = t->ndim - 3; d >= 0; d--) {
        int64_t idx = bi % qshape[d];
        bi /= qshape[d];
        if (d == t->ndim - 3) idx /= group;
        off += idx * t->strides[d];
    }
    return off;
}

#define ATT_INVALID(...) ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "attention: " __VA_ARGS__)

/*
 * out[..., i, :] = softmax_j(cap(scale * q_i . k_j)) v_j over the keys j that row i sees: all of
 * them, or with causal = 1 those at or before its position pos = i (causal_align = top_left) or
 * i + Lk - Lq (bottom_right), and with window > 0 only the last `window` of these. A row that
 * sees no key is 0. cap(l) = softcap * tanh(l / softcap) when softcap > 0. k and v may have a
 * head dimension (the one before the rows) that divides q's: grouped-query attention.
 *
 * The optional mask broadcasts to the logits [q's dims but the last..., Lk]: a bool mask that is
 * false makes the logit -inf (even a NaN one), a mask of q's dtype is added to the logit after the
 * cap. A row whose every logit is -inf is 0 as well; a NaN logit keeps the row NaN.
 */
static AnyaccelStatus op_attention(const RefCall *c) {
    if ((c->num_inputs != 3 && c->num_inputs != 4) || c->num_outputs != 1 || !c->inputs[0].present ||
        !c->inputs[1].present || !c->inputs[2].present)
        return ATT_INVALID("expected inputs q, k, v and an optional mask, and one output");
    const RefTensor *q = &c->inputs[0], *k = &c->inputs[1], *v = &c->inputs[2], *out = &c->outputs[0];
    const RefTensor *mask = c->num_inputs > 3 && c->inputs[3].present ? &c->inputs[3] : NULL;
    char qs[REF_MAX_DIMS * 21 + 16], ks[REF_MAX_DIMS * 21 + 16], vs[REF_MAX_DIMS * 21 + 16];
    ref_dims_str(q, qs, sizeof qs);
    ref_dims_str(k, ks, sizeof ks);
    ref_dims_str(v, vs, sizeof vs);
    int r = q->ndim;
    if (r < 2 || k->ndim < 2 || v->ndim < 2)
        return ATT_INVALID("q is %s, k is %s, v is %s: each needs rank >= 2 ([..., L, D])", qs, ks, vs);

    /* Batch dims: equal, except that k's and v's head dim (rank - 3) may divide q's. */
    int same_rank = k->ndim == r && v->ndim == r;
    for (int d = 0; same_rank && d < r - 2; d++) same_rank = v->shape[d] == k->shape[d];
    int equal = same_rank, grouped = same_rank && r >= 3 && k->shape[r - 3] > 0 &&
                                     q->shape[r - 3] % k->shape[r - 3] == 0;
    for (int d = 0; same_rank && d < r - 2; d++) {
        if (q->shape[d] != k->shape[d]) {
            equal = 0;
            if (d != r - 3) grouped = 0;
        }
    }
    if (!same_rank || (!equal && !grouped))
        return ATT_INVALID("q is %s, k is %s, v is %s: batch dims must be equal (k's and v's head dim "
                           "may divide q's)",
                           qs, ks, vs);
    int64_t lq = q->shape[r - 2], d = q->shape[r - 1], lk = k->shape[r - 2], dv = v->shape[r - 1];
    if (k->shape[r - 1] != d)
        return ATT_INVALID("k is %s but q is %s: the last dimensions (D) must match", ks, qs);
    if (v->shape[r - 2] != lk) return ATT_INVALID("v is %s but k is %s: v needs one row per key (Lk)", vs, ks);
    if (lk == 0 && lq > 0)
        return ATT_INVALID("k is %s and q is %s: Lk = 0 keys for Lq = %lld queries, expected at least 1 key",
                           ks, qs, (long long)lq);
    int64_t heads = r >= 3 ? q->shape[r - 3] : 1;
    int64_t group = r >= 3 && k->shape[r - 3] > 0 ? heads / k->shape[r - 3] : 1;
    if (group < 1) group = 1;

    /* Attributes. */
    int64_t causal = 0;
    if (ref_attr_int(c, "causal", &causal) < 0) return ATT_INVALID("attribute `causal` must be an Int");
    if (causal != 0 && causal != 1)
        return ATT_INVALID("attribute `causal` is Int(%lld), expected Int(0) or Int(1)", (long long)causal);
    double scale = 1.0 / sqrt((double)d); /* D = 0 gives +Inf, so NaN logits, as the contract says */
    int got = ref_attr_float(c, "scale", &scale);
    if (got < 0) return ATT_INVALID("attribute `scale` must be a Float");
    if (got > 0 && !isfinite(scale)) return ATT_INVALID("attribute `scale` is %g, expected a finite value", scale);
    int64_t shift = 0; /* where row i sits among the keys: i + shift */
    const RefAttr *align = ref_attr(c, "causal_align");
    if (align) {
        const char *a = ref_attr_str(c, "causal_align");
        if (!a) return ATT_INVALID("attribute `causal_align` must be a Str");
        if (strcmp(a, "bottom_right") == 0)
            shift = lk - lq;
        else if (strcmp(a, "top_left") != 0)
            return ATT_INVALID("attribute `causal_align` is `%s`, expected top_left or bottom_right", a);
    }
    int64_t window = 0;
    if (ref_attr_int(c, "window", &window) < 0) return ATT_INVALID("attribute `window` must be an Int");
    if (window < 0 || (window > 0 && !causal))
        return ATT_INVALID("attribute `window` is %lld, expected 0, or > 0 with causal = 1", (long long)window);
    double softcap = 0.0;
    if (ref_attr_float(c, "softcap", &softcap) < 0) return ATT_INVALID("attribute `softcap` must be a Float");
    if (!(isfinite(softcap) && softcap >= 0.0))
        return ATT_INVALID("attribute `softcap` is %g, expected a finite value >= 0", softcap);

    /* The mask: bool or q's dtype, broadcast to the logits [q's dims but the last..., Lk]. */
    RefTensor mb = {0};
    int mask_bool = 0;
    if (mask) {
        if (mask->dtype != ANYACCEL_DTYPE_BOOL && mask->dtype != q->dtype)
            return ATT_INVALID("q is %s but mask is %s: expected %s or bool", ref_dtype_name(q->dtype),
                               ref_dtype_name(mask->dtype), ref_dtype_name(q->dtype));
        AnyaccelStatus st = ref_check_tensor(c->op, "mask", mask, ANYACCEL_DTYPE_BIT(mask->dtype));
        if (st) return st;
        int64_t logits[REF_MAX_DIMS];
        for (int i = 0; i < r - 1; i++) logits[i] = q->shape[i];
        logits[r - 1] = lk;
        int fits = mask->ndim <= r;
        for (int i = 1; fits && i <= mask->ndim; i++) {
            int64_t m = mask->shape[mask->ndim - i];
            fits = m == logits[r - i] || m == 1;
        }
        if (!fits) {
            char ms[REF_MAX_DIMS * 21 + 16], ls[REF_MAX_DIMS * 21 + 16];
            RefTensor lt = *q;
            lt.shape[r - 1] = lk;
            ref_dims_str(mask, ms, sizeof ms);
            ref_dims_str(&lt, ls, sizeof ls);
            return ATT_INVALID("mask is %s but the logits are %s (q's dimensions but the last, then k's %lld "
                               "keys): the mask must broadcast to them",
                               ms, ls, (long long)lk);
        }
        mb = ref_broadcast(mask, r, logits);
        mask_bool = mask->dtype == ANYACCEL_DTYPE_BOOL;
    }

    int64_t batches = 1;
    for (int i = 0; i < r - 2; i++) batches *= q->shape[i];
    double *e = malloc((size_t)(lk ? lk : 1) * sizeof *e);
    if (!e) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "attention: out of host memory");
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t qb = attention_batch_offset(q, q->shape, 1, bi);
        int64_t ob = attention_batch_offset(out, q->shape, 1, bi);
        int64_t kb = attention_batch_offset(k, q->shape, group, bi);
        int64_t vb = attention_batch_offset(v, q->shape, group, bi);
        int64_t mo = mask ? attention_batch_offset(&mb, q->shape, 1, bi) : 0;
        for (int64_t i = 0; i < lq; i++) {
            /* The keys first..last-1 row i sees; masked keys take no part at all. */
            int64_t first = 0, last = lk;
            if (causal) {
                int64_t pos = i + shift;
                last = pos + 1 < 0 ? 0 : (pos + 1 > lk ? lk : pos + 1);
                if (window > 0) {
                    first = pos + 1 - window;
                    if (first < 0) first = 0;
                    if (first > last) first = last;
                }
            }
            double m = -INFINITY;
            for (int64_t j = first; j < last; j++) {
                double dot = 0.0;
                for (int64_t t = 0; t < d; t++)
                    dot += ref_at(q, qb + i * q->strides[r - 2] + t * q->strides[r - 1]) *
                           ref_at(k, kb + j * k->strides[r - 2] + t * k->strides[r - 1]);
                double l = dot * scale;
                if (softcap > 0.0) l = softcap * tanh(l / softcap);
                if (mask) {
                    const unsigned char *mp =
                        mb.base + (mo + i * mb.strides[r - 2] + j * mb.strides[r - 1]) *
                                      (int64_t)ref_dtype_size(mb.dtype);
                    if (mask_bool) {
                        if (!ref_load_i(mb.dtype, mp)) l = -INFINITY; /* even a NaN logit */
                    } else {
                        l += ref_load_f(mb.dtype, mp);
                    }
                }
                e[j - first] = l;
                m = fmax(m, l);
            }
            /* A row that sees no key, or whose every logit is -inf, is 0 (a NaN keeps it NaN). */
            int none = 1;
            for (int64_t j = first; j < last && none; j++) none = e[j - first] == -INFINITY;
            double s = 0.0;
            for (int64_t j = first; j < last; j++) {
                e[j - first] = exp(e[j - first] - m);
                s += e[j - first];
            }
            for (int64_t col = 0; col < dv; col++) {
                double y = 0.0;
                for (int64_t j = first; j < last && !none; j++)
                    y += e[j - first] / s * ref_at(v, vb + j * v->strides[r - 2] + col * v->strides[r - 1]);
                ref_put(out, ob + i * out->strides[r - 2] + col * out->strides[r - 1], y);
            }
        }
    }
    free(e);
    return ANYACCEL_OK;
}

#undef ATT_INVALID

/* ---- cross_entropy, cross_entropy_backward ----------------------------------------------------- */

/*
 * logits [N, C, d1, ..., dk] (rank >= 2, the classes along axis 1) and target [N, d1, ..., dk]
 * (i32 or i64): one position per element of target, whose row is the C logits along axis 1 at
 * that position. A target equal to ignore_index leaves its position out; any other target must
 * be a class in 0..C, the first that is not (in row-major order) is the OutOfBounds error, found
 * before anything is read through a target or written.
 *
 * ref_check_tensor has checked that the element count and element offsets of every tensor fit in
 * int64; the positions are the elements of target, so position counts and offsets do too.
 */

typedef enum { CE_MEAN, CE_SUM, CE_NONE } CeReduction;

typedef struct {
    const RefTensor *logits, *target;
    int64_t classes, positions, ignore_index;
    double eps; /* label_smoothing */
    CeReduction reduction;
} CrossEntropy;

/* Checks a call of cross_entropy (logits, target -> loss) or, with `backward`,
 * cross_entropy_backward (grad, logits, target -> dlogits), and reads its attributes. */
static AnyaccelStatus ce_setup(const RefCall *c, int backward, CrossEntropy *ce) {
    const char *op = c->op;
    AnyaccelStatus st = ref_check_arity(c, backward ? 3 : 2);
    if (st) return st;
    const RefTensor *logits = &c->inputs[backward], *target = &c->inputs[backward + 1], *out = &c->outputs[0];
    const char *names[3] = {"logits", backward ? "grad" : "loss", "dlogits"};
    const RefTensor *floats[3] = {logits, backward ? &c->inputs[0] : out, out};
    if ((st = ref_check_floats(op, backward ? 3 : 2, names, floats)) ||
        (st = ref_check_tensor(op, "target", target, REF_DT(I32) | REF_DT(I64))))
        return st;
    const int r = logits->ndim;
    if (r < 2)
        return REF_INVALID("%s: logits has shape %s, expected rank 2 or more ([N, C, d1, ..., dk])", op,
                           ref_shape_str(r, logits->shape).s);
    int64_t positions[REF_MAX_DIMS];
    positions[0] = logits->shape[0];
    for (int d = 2; d < r; d++) positions[d - 1] = logits->shape[d];
    char why[sizeof(RefShapeStr) + 64];
    snprintf(why, sizeof why, " (logits' shape %s without the class axis 1)", ref_shape_str(r, logits->shape).s);
    if ((st = ref_check_shape(op, "target", target, r - 1, positions, why))) return st;

    ce->ignore_index = -100;
    if (ref_attr_int(c, "ignore_index", &ce->ignore_index) < 0)
        return REF_INVALID("%s: attribute `ignore_index` must be an Int", op);
    ce->eps = 0.0;
    if (ref_attr_float(c, "label_smoothing", &ce->eps) < 0)
        return REF_INVALID("%s: attribute `label_smoothing` must be a Float", op);
    if (!(ce->eps >= 0.0 && ce->eps <= 1.0))
        return REF_INVALID("%s: label_smoothing is %g, expected a value in [0, 1]", op, ce->eps);
    const char *reduction = ref_attr(c, "reduction") ? ref_attr_str(c, "reduction") : "mean";
    if (!reduction) return REF_INVALID("%s: attribute `reduction` must be a Str", op);
    if (strcmp(reduction, "mean") == 0)
        ce->reduction = CE_MEAN;
    else if (strcmp(reduction, "sum") == 0)
        ce->reduction = CE_SUM;
    else if (strcmp(reduction, "none") == 0)
        ce->reduction = CE_NONE;
    else
        return REF_INVALID("%s: reduction is `%s`, expected mean, sum or none", op, reduction);

    /* The loss (cross_entropy's output, cross_entropy_backward's grad): target's shape for
     * reduction none, else a scalar; dlogits: logits' shape. */
    snprintf(why, sizeof why, " (the loss's shape for reduction %s)", reduction);
    if ((st = ref_check_shape(op, names[1], floats[1], ce->reduction == CE_NONE ? r - 1 : 0, positions, why)) ||
        (backward && (st = ref_check_shape(op, "dlogits", out, r, logits->shape, " (logits' shape)"))))
        return st;
    ce->logits = logits;
    ce->target = target;
    ce->classes = logits->shape[1];
    ce->positions = ref_numel(target);
    return ANYACCEL_OK;
}

/* The target of position p. */
static int64_t ce_target(const CrossEntropy *ce, int64_t p) {
    return ref_load_i(ce->target->dtype, ref_elem(ce->target, p));
}

/* Checks every target in row-major order; *count is the number of positions not ignored. */
static AnyaccelStatus ce_check_targets(const char *op, const CrossEntropy *ce, int64_t *count) {
    *count = 0;
    for (int64_t p = 0; p < ce->positions; p++) {
        const int64_t t = ce_target(ce, p);
        if (t == ce->ignore_index) continue;
        if (t < 0 || t >= ce->classes)
            return ref_error(ANYACCEL_ERROR_OUT_OF_BOUNDS, "%s: target %lld out of range 0..%lld (ignore_index %lld)",
                             op, (long long)t, (long long)ce->classes, (long long)ce->ignore_index);
        ++*count;
    }
    return ANYACCEL_OK;
}

/* The loss of position p (at element offset xo of logits), whose target t is a class:
 * (1 - eps) * (lse - x_t) + eps * (lse - sum_c x_c / C). A term whose weight is 0 is left out, so
 * that an infinite term does not turn into 0 * Inf = NaN. */
static double ce_loss(const CrossEntropy *ce, int64_t xo, int64_t t) {
    const RefTensor *x = ce->logits;
    const int64_t step = x->strides[1];
    double m, s;
    line_exp_sum(x, xo, step, ce->classes, &m, &s);
    const double lse = m + log(s);
    double loss = 0.0;
    if (ce->eps < 1.0) loss += (1.0 - ce->eps) * (lse - ref_at(x, xo + t * step));
    if (ce->eps > 0.0) {
        double sum = 0.0;
        for (int64_t i = 0; i < ce->classes; i++) sum += ref_at(x, xo + i * step);
        loss += ce->eps * (lse - sum / (double)ce->classes);
    }
    return loss;
}

static AnyaccelStatus op_cross_entropy(const RefCall *c) {
    CrossEntropy ce;
    int64_t count;
    AnyaccelStatus st;
    if ((st = ce_setup(c, 0, &ce)) || (st = ce_check_targets(c->op, &ce, &count))) return st;
    const RefTensor *out = &c->outputs[0];
    double total = 0.0;
    for (int64_t p = 0; p < ce.positions; p++) {
        const int64_t t = ce_target(&ce, p);
        const double loss = t == ce.ignore_index ? 0.0 : ce_loss(&ce, line_start(ce.logits, 1, p), t);
        if (ce.reduction == CE_NONE)
            ref_put(out, ref_offset_of(out, p), loss);
        else
            total += loss;
    }
    /* mean over no position: 0 / 0 = NaN. */
    if (ce.reduction != CE_NONE) ref_put(out, 0, ce.reduction == CE_MEAN ? total / (double)count : total);
    return ANYACCEL_OK;
}

/* dlogits[n, c, d...] = g_i * (softmax(x)_c - (1 - eps) * [c == t] - eps / C), 0 for an ignored
 * position; g_i = grad / count (mean), grad (sum) or grad[i] (none). */
static AnyaccelStatus op_cross_entropy_backward(const RefCall *c) {
    CrossEntropy ce;
    int64_t count;
    AnyaccelStatus st;
    if ((st = ce_setup(c, 1, &ce)) || (st = ce_check_targets(c->op, &ce, &count))) return st;
    const RefTensor *g = &c->inputs[0], *x = ce.logits, *out = &c->outputs[0];
    const int64_t xs = x->strides[1], os = out->strides[1];
    /* grad is a scalar for mean and sum; mean over no position divides nothing. */
    double scale = ce.reduction == CE_NONE ? 0.0 : ref_at(g, 0);
    if (ce.reduction == CE_MEAN) scale /= (double)count;
    const double smooth = ce.classes ? ce.eps / (double)ce.classes : 0.0;
    for (int64_t p = 0; p < ce.positions; p++) {
        const int64_t t = ce_target(&ce, p), xo = line_start(x, 1, p), oo = line_start(out, 1, p);
        if (t == ce.ignore_index) {
            for (int64_t i = 0; i < ce.classes; i++) ref_put(out, oo + i * os, 0.0);
            continue;
        }
        const double gi = ce.reduction == CE_NONE ? ref_at(g, ref_offset_of(g, p)) : scale;
        double m, s;
        line_exp_sum(x, xo, xs, ce.classes, &m, &s);
        for (int64_t i = 0; i < ce.classes; i++) {
            const double d = exp(ref_at(x, xo + i * xs) - m) / s - (i == t ? 1.0 - ce.eps : 0.0) - smooth;
            ref_put(out, oo + i * os, gi * d);
        }
    }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_nn(const RefCall *c) {
    if (strcmp(c->op, "softmax") == 0) return op_softmax(c, 0);
    if (strcmp(c->op, "log_softmax") == 0) return op_softmax(c, 1);
    if (strcmp(c->op, "softmax_backward") == 0) return op_softmax_backward(c, 0);
    if (strcmp(c->op, "log_softmax_backward") == 0) return op_softmax_backward(c, 1);
    if (strcmp(c->op, "layer_norm") == 0) return op_norm(c, 0);
    if (strcmp(c->op, "rms_norm") == 0) return op_norm(c, 1);
    if (strcmp(c->op, "layer_norm_backward") == 0) return op_norm_backward(c, 0);
    if (strcmp(c->op, "rms_norm_backward") == 0) return op_norm_backward(c, 1);
    if (strcmp(c->op, "matmul") == 0) return op_matmul(c);
    if (strcmp(c->op, "rope") == 0) return op_rope(c);
    if (strcmp(c->op, "attention") == 0) return op_attention(c);
    if (strcmp(c->op, "cross_entropy") == 0) return op_cross_entropy(c);
    if (strcmp(c->op, "cross_entropy_backward") == 0) return op_cross_entropy_backward(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
