/*
 * The float ops of neural networks: softmax, log_softmax, their gradients softmax_backward and
 * log_softmax_backward, layer_norm, rms_norm and their gradients layer_norm_backward and
 * rms_norm_backward, matmul, rope, attention and its gradient attention_backward (docs/ops.md,
 * sections 8.5 to 8.9), and the loss cross_entropy with its gradient cross_entropy_backward
 * (section 8.16).
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

/* ---- attention, attention_backward ----------------------------------------------------------- */

/*
 * Element offset in t (k, v, out or a gradient) of q's batch `bi` (row-major over q's batch dims
 * `qshape`). t's head dimension (rank - 3) may be q's divided by `group` (grouped-query
 * attention): query head h reads head h / group there. The other batch dims are equal.
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

/* What attention and its gradient share: q, k, v and the mask (broadcast to the logits), the sizes,
 * and the attributes. */
typedef struct {
    const char *op;
    const RefTensor *q, *k, *v, *mask;
    RefTensor mb; /* the mask seen with the logits' shape [q's dims but the last..., Lk] */
    int mask_bool;
    int r;                      /* the common rank */
    int64_t lq, d, lk, dv;      /* q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv] */
    int64_t heads, kv_heads;    /* Hq and Hkv (1 and 1 for rank 2) */
    int64_t causal, shift, window;
    double scale, softcap;
} Attention;

/*
 * Checks q, k, v, the mask and the attributes of `op` (attention or attention_backward) and fills
 * *a. The messages name `op`.
 */
static AnyaccelStatus attention_setup(const RefCall *c, const char *op, const RefTensor *q, const RefTensor *k,
                                      const RefTensor *v, const RefTensor *mask, Attention *a) {
    memset(a, 0, sizeof *a);
    char qs[REF_MAX_DIMS * 21 + 16], ks[REF_MAX_DIMS * 21 + 16], vs[REF_MAX_DIMS * 21 + 16];
    ref_dims_str(q, qs, sizeof qs);
    ref_dims_str(k, ks, sizeof ks);
    ref_dims_str(v, vs, sizeof vs);
    int r = q->ndim;
    if (r < 2 || k->ndim < 2 || v->ndim < 2)
        return REF_INVALID("%s: q is %s, k is %s, v is %s: each needs rank >= 2 ([..., L, D])", op, qs, ks, vs);

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
        return REF_INVALID("%s: q is %s, k is %s, v is %s: batch dims must be equal (k's and v's head dim "
                           "may divide q's)",
                           op, qs, ks, vs);
    int64_t lq = q->shape[r - 2], d = q->shape[r - 1], lk = k->shape[r - 2], dv = v->shape[r - 1];
    if (k->shape[r - 1] != d)
        return REF_INVALID("%s: k is %s but q is %s: the last dimensions (D) must match", op, ks, qs);
    if (v->shape[r - 2] != lk)
        return REF_INVALID("%s: v is %s but k is %s: v needs one row per key (Lk)", op, vs, ks);
    if (lk == 0 && lq > 0)
        return REF_INVALID("%s: k is %s and q is %s: Lk = 0 keys for Lq = %lld queries, expected at least 1 key",
                           op, ks, qs, (long long)lq);

    /* Attributes. */
    int64_t causal = 0;
    if (ref_attr_int(c, "causal", &causal) < 0) return REF_INVALID("%s: attribute `causal` must be an Int", op);
    if (causal != 0 && causal != 1)
        return REF_INVALID("%s: attribute `causal` is Int(%lld), expected Int(0) or Int(1)", op, (long long)causal);
    double scale = 1.0 / sqrt((double)d); /* D = 0 gives +Inf, so NaN logits, as the contract says */
    int got = ref_attr_float(c, "scale", &scale);
    if (got < 0) return REF_INVALID("%s: attribute `scale` must be a Float", op);
    if (got > 0 && !isfinite(scale))
        return REF_INVALID("%s: attribute `scale` is %g, expected a finite value", op, scale);
    int64_t shift = 0; /* where row i sits among the keys: i + shift */
    if (ref_attr(c, "causal_align")) {
        const char *al = ref_attr_str(c, "causal_align");
        if (!al) return REF_INVALID("%s: attribute `causal_align` must be a Str", op);
        if (strcmp(al, "bottom_right") == 0)
            shift = lk - lq;
        else if (strcmp(al, "top_left") != 0)
            return REF_INVALID("%s: attribute `causal_align` is `%s`, expected top_left or bottom_right", op, al);
    }
    int64_t window = 0;
    if (ref_attr_int(c, "window", &window) < 0) return REF_INVALID("%s: attribute `window` must be an Int", op);
    if (window < 0 || (window > 0 && !causal))
        return REF_INVALID("%s: attribute `window` is %lld, expected 0, or > 0 with causal = 1", op,
                           (long long)window);
    double softcap = 0.0;
    if (ref_attr_float(c, "softcap", &softcap) < 0) return REF_INVALID("%s: attribute `softcap` must be a Float", op);
    if (!(isfinite(softcap) && softcap >= 0.0))
        return REF_INVALID("%s: attribute `softcap` is %g, expected a finite value >= 0", op, softcap);

    /* The mask: bool or q's dtype, broadcast to the logits [q's dims but the last..., Lk]. */
    if (mask) {
        if (mask->dtype != ANYACCEL_DTYPE_BOOL && mask->dtype != q->dtype)
            return REF_INVALID("%s: q is %s but mask is %s: expected %s or bool", op, ref_dtype_name(q->dtype),
                               ref_dtype_name(mask->dtype), ref_dtype_name(q->dtype));
        AnyaccelStatus st = ref_check_tensor(op, "mask", mask, ANYACCEL_DTYPE_BIT(mask->dtype));
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
            return REF_INVALID("%s: mask is %s but the logits are %s (q's dimensions but the last, then k's %lld "
                               "keys): the mask must broadcast to them",
                               op, ms, ls, (long long)lk);
        }
        a->mb = ref_broadcast(mask, r, logits);
        a->mask_bool = mask->dtype == ANYACCEL_DTYPE_BOOL;
    }
    a->op = op;
    a->q = q;
    a->k = k;
    a->v = v;
    a->mask = mask;
    a->r = r;
    a->lq = lq;
    a->d = d;
    a->lk = lk;
    a->dv = dv;
    a->heads = r >= 3 ? q->shape[r - 3] : 1;
    a->kv_heads = r >= 3 ? k->shape[r - 3] : 1;
    a->causal = causal;
    a->shift = shift;
    a->window = window;
    a->scale = scale;
    a->softcap = softcap;
    return ANYACCEL_OK;
}

/*
 * Row i of q's batch whose element offsets are qb in q, kb in k and mo in the broadcast mask: the
 * keys first..last-1 it sees (masked keys take no part at all), and their softmax weights
 * p[j - first]. Where `dcap` is given, dcap[j - first] is the derivative of the soft cap at the
 * key's scaled dot product (1 without a cap). Returns 1 when the row sees no key or its every
 * logit is -inf: then every weight is 0 (a NaN logit keeps the row NaN).
 */
static int attention_row(const Attention *a, int64_t qb, int64_t kb, int64_t mo, int64_t i, int64_t *first_out,
                         int64_t *last_out, double *p, double *dcap) {
    const RefTensor *q = a->q, *k = a->k;
    const int r = a->r;
    int64_t first = 0, last = a->lk;
    if (a->causal) {
        int64_t pos = i + a->shift;
        last = pos + 1 < 0 ? 0 : (pos + 1 > a->lk ? a->lk : pos + 1);
        if (a->window > 0) {
            first = pos + 1 - a->window;
            if (first < 0) first = 0;
            if (first > last) first = last;
        }
    }
    *first_out = first;
    *last_out = last;
    double m = -INFINITY;
    for (int64_t j = first; j < last; j++) {
        double dot = 0.0;
        for (int64_t t = 0; t < a->d; t++)
            dot += ref_at(q, qb + i * q->strides[r - 2] + t * q->strides[r - 1]) *
                   ref_at(k, kb + j * k->strides[r - 2] + t * k->strides[r - 1]);
        double l = dot * a->scale, dc = 1.0;
        if (a->softcap > 0.0) {
            double th = tanh(l / a->softcap);
            l = a->softcap * th;
            dc = 1.0 - th * th;
        }
        if (a->mask) {
            const RefTensor *mb = &a->mb;
            const unsigned char *mp =
                mb->base + (mo + i * mb->strides[r - 2] + j * mb->strides[r - 1]) * (int64_t)ref_dtype_size(mb->dtype);
            if (a->mask_bool) {
                if (!ref_load_i(mb->dtype, mp)) l = -INFINITY; /* even a NaN logit */
            } else {
                l += ref_load_f(mb->dtype, mp);
            }
        }
        p[j - first] = l;
        if (dcap) dcap[j - first] = dc;
        m = fmax(m, l);
    }
    /* A row that sees no key, or whose every logit is -inf, is 0 (a NaN keeps it NaN). */
    int none = 1;
    for (int64_t j = first; j < last && none; j++) none = p[j - first] == -INFINITY;
    if (none) {
        for (int64_t j = first; j < last; j++) p[j - first] = 0.0;
        return 1;
    }
    double s = 0.0;
    for (int64_t j = first; j < last; j++) {
        p[j - first] = exp(p[j - first] - m);
        s += p[j - first];
    }
    for (int64_t j = first; j < last; j++) p[j - first] /= s;
    return 0;
}

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
        return REF_INVALID("attention: expected inputs q, k, v and an optional mask, and one output");
    const RefTensor *q = &c->inputs[0], *k = &c->inputs[1], *v = &c->inputs[2], *out = &c->outputs[0];
    const RefTensor *mask = c->num_inputs > 3 && c->inputs[3].present ? &c->inputs[3] : NULL;
    Attention a;
    AnyaccelStatus st = attention_setup(c, "attention", q, k, v, mask, &a);
    if (st) return st;
    const int r = a.r;
    int64_t group = a.kv_heads > 0 ? a.heads / a.kv_heads : 1;
    if (group < 1) group = 1;
    int64_t batches = 1;
    for (int i = 0; i < r - 2; i++) batches *= q->shape[i];
    double *p = malloc((size_t)(a.lk ? a.lk : 1) * sizeof *p);
    if (!p) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "attention: out of host memory");
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t qb = attention_batch_offset(q, q->shape, 1, bi);
        int64_t ob = attention_batch_offset(out, q->shape, 1, bi);
        int64_t kb = attention_batch_offset(k, q->shape, group, bi);
        int64_t vb = attention_batch_offset(v, q->shape, group, bi);
        int64_t mo = mask ? attention_batch_offset(&a.mb, q->shape, 1, bi) : 0;
        for (int64_t i = 0; i < a.lq; i++) {
            int64_t first, last;
            int none = attention_row(&a, qb, kb, mo, i, &first, &last, p, NULL);
            for (int64_t col = 0; col < a.dv; col++) {
                double y = 0.0;
                for (int64_t j = first; j < last && !none; j++)
                    y += p[j - first] * ref_at(v, vb + j * v->strides[r - 2] + col * v->strides[r - 1]);
                ref_put(out, ob + i * out->strides[r - 2] + col * out->strides[r - 1], y);
            }
        }
    }
    free(p);
    return ANYACCEL_OK;
}

/*
 * attention_backward(grad, q, k, v, mask?) -> dq, dk, dv: the gradients of attention (same
 * attributes) given grad, the gradient of its output [..., Lq, Dv]. Per query row i, with p_ij
 * the forward's weights over the keys j it sees and dcap the derivative of the soft cap:
 *
 *   dp_ij = grad_i . v_j      D_i = sum_j p_ij dp_ij      ds_ij = p_ij (dp_ij - D_i) dcap_ij
 *   dq_i = scale sum_j ds_ij k_j     dk_j += scale ds_ij q_i     dv_j += p_ij grad_i
 *
 * dk and dv sum over every query row and every query head that reads the key/value head. A term
 * with p_ij = 0 is left out entirely, so masked and unseen keys, and rows that see no key, add
 * exactly nothing whatever q, k, v and grad hold. Every sum is in double and each output is
 * rounded once. The key/value heads are done one after the other, each summing its group's query
 * heads into double accumulators of one head's dk and dv.
 */
static AnyaccelStatus op_attention_backward(const RefCall *c) {
    const char *op = c->op;
    if ((c->num_inputs != 4 && c->num_inputs != 5) || c->num_outputs != 3)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected inputs grad, q, k, v and an optional "
                           "mask, and outputs dq, dk, dv",
                           op, c->num_inputs, c->num_outputs);
    const RefTensor *grad = &c->inputs[0], *q = &c->inputs[1], *k = &c->inputs[2], *v = &c->inputs[3];
    const RefTensor *mask = c->num_inputs > 4 && c->inputs[4].present ? &c->inputs[4] : NULL;
    const RefTensor *dq = &c->outputs[0], *dk = &c->outputs[1], *dv = &c->outputs[2];
    {
        const char *names[7] = {"q", "grad", "k", "v", "dq", "dk", "dv"};
        const RefTensor *ts[7] = {q, grad, k, v, dq, dk, dv};
        for (int i = 0; i < 7; i++)
            if (!ts[i]->present) return REF_INVALID("%s: %s is missing", op, names[i]);
        AnyaccelStatus st = ref_check_floats(op, 7, names, ts);
        if (st) return st;
    }
    Attention a;
    AnyaccelStatus st = attention_setup(c, op, q, k, v, mask, &a);
    if (st) return st;
    const int r = a.r;
    int64_t out_shape[REF_MAX_DIMS];
    for (int i = 0; i < r; i++) out_shape[i] = q->shape[i];
    out_shape[r - 1] = a.dv;
    if ((st = ref_check_shape(op, "grad", grad, r, out_shape,
                              " (attention's output: q's dimensions but the last, then v's last, Dv)")) ||
        (st = ref_check_shape(op, "dq", dq, r, q->shape, " (q's shape)")) ||
        (st = ref_check_shape(op, "dk", dk, r, k->shape, " (k's shape)")) ||
        (st = ref_check_shape(op, "dv", dv, r, v->shape, " (v's shape)")))
        return st;

    /* q's batch dims are [outer..., Hq], k's and v's [outer..., Hkv] with Hq = group * Hkv (rank 2:
     * one batch, Hq = Hkv = 1). */
    int64_t outer = 1, kv_batches, group = a.kv_heads > 0 ? a.heads / a.kv_heads : 0;
    for (int i = 0; i < r - 3; i++)
        if (!ref_mul_ok(outer, q->shape[i], &outer))
            return REF_INVALID("%s: q has shape %s, whose batch count overflows int64", op,
                               ref_shape_str(r, q->shape).s);
    if (!ref_mul_ok(outer, a.kv_heads, &kv_batches))
        return REF_INVALID("%s: k has shape %s, whose batch count overflows int64", op, ref_shape_str(r, k->shape).s);

    /* Scratch, in doubles: per key p, dcap and dp; one head's dk [Lk, D] and dv [Lk, Dv]; the rows
     * dq_i [D] and grad_i [Dv]. */
    int64_t lk = a.lk, d = a.d, ndv = a.dv, n_dk, n_dv, total, n_keys = lk ? lk : 1;
    if (!ref_mul_ok(lk, d, &n_dk) || !ref_mul_ok(lk, ndv, &n_dv) || !ref_mul_ok(n_keys, 3, &total) ||
        !ref_add_ok(total, n_dk, &total) || !ref_add_ok(total, n_dv, &total) || !ref_add_ok(total, d, &total) ||
        !ref_add_ok(total, ndv, &total) || (uint64_t)total > SIZE_MAX / sizeof(double))
        return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: the scratch for Lk = %lld, D = %lld, Dv = %lld does "
                         "not fit in host memory", op, (long long)lk, (long long)d, (long long)ndv);
    double *scratch = malloc((size_t)total * sizeof *scratch);
    if (!scratch) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    double *p = scratch, *dcap = p + n_keys, *dp = dcap + n_keys, *acc_k = dp + n_keys, *acc_v = acc_k + n_dk;
    double *dq_row = acc_v + n_dv, *g_row = dq_row + d;

    const int64_t qr = q->strides[r - 2], qc = q->strides[r - 1], kr = k->strides[r - 2], kc = k->strides[r - 1];
    const int64_t vr = v->strides[r - 2], vc = v->strides[r - 1], gr = grad->strides[r - 2], gc = grad->strides[r - 1];
    const int64_t dqr = dq->strides[r - 2], dqc = dq->strides[r - 1];
    const int64_t dkr = dk->strides[r - 2], dkc = dk->strides[r - 1], dvr = dv->strides[r - 2], dvc = dv->strides[r - 1];
    const double scale = a.scale;
    /* kv_batches is 0 when Hkv is 0 (then every output is empty). */
    for (int64_t kvb = 0; kvb < kv_batches; kvb++) {
        const int64_t o = kvb / a.kv_heads, hk = kvb % a.kv_heads;
        const int64_t kb = attention_batch_offset(k, k->shape, 1, kvb), vb = attention_batch_offset(v, k->shape, 1, kvb);
        memset(acc_k, 0, (size_t)(n_dk + n_dv) * sizeof *acc_k);
        for (int64_t g = 0; g < group; g++) {
            /* The query batch [outer o, head hk * group + g] (rank 2: the one batch). */
            const int64_t bi = o * a.heads + hk * group + g;
            const int64_t qb = attention_batch_offset(q, q->shape, 1, bi);
            const int64_t gb = attention_batch_offset(grad, q->shape, 1, bi);
            const int64_t dqb = attention_batch_offset(dq, q->shape, 1, bi);
            const int64_t mo = mask ? attention_batch_offset(&a.mb, q->shape, 1, bi) : 0;
            for (int64_t i = 0; i < a.lq; i++) {
                int64_t first, last;
                attention_row(&a, qb, kb, mo, i, &first, &last, p, dcap);
                for (int64_t t = 0; t < ndv; t++) g_row[t] = ref_at(grad, gb + i * gr + t * gc);
                for (int64_t t = 0; t < d; t++) dq_row[t] = 0.0;
                double di = 0.0;
                for (int64_t j = first; j < last; j++) {
                    const double pj = p[j - first];
                    if (pj == 0.0) continue;
                    double s = 0.0;
                    for (int64_t t = 0; t < ndv; t++) s += g_row[t] * ref_at(v, vb + j * vr + t * vc);
                    dp[j - first] = s;
                    di += pj * s;
                }
                for (int64_t j = first; j < last; j++) {
                    const double pj = p[j - first];
                    if (pj == 0.0) continue;
                    const double ds = pj * (dp[j - first] - di) * dcap[j - first];
                    double *vrow = acc_v + j * ndv, *krow = acc_k + j * d;
                    for (int64_t t = 0; t < ndv; t++) vrow[t] += pj * g_row[t];
                    for (int64_t t = 0; t < d; t++) {
                        krow[t] += scale * ds * ref_at(q, qb + i * qr + t * qc);
                        dq_row[t] += ds * ref_at(k, kb + j * kr + t * kc);
                    }
                }
                for (int64_t t = 0; t < d; t++) ref_put(dq, dqb + i * dqr + t * dqc, scale * dq_row[t]);
            }
        }
        /* This key/value head's dk and dv (zeros when no query head reads it: Hq = 0). */
        const int64_t dkb = attention_batch_offset(dk, k->shape, 1, kvb), dvb = attention_batch_offset(dv, k->shape, 1, kvb);
        for (int64_t j = 0; j < lk; j++) {
            for (int64_t t = 0; t < d; t++) ref_put(dk, dkb + j * dkr + t * dkc, acc_k[j * d + t]);
            for (int64_t t = 0; t < ndv; t++) ref_put(dv, dvb + j * dvr + t * dvc, acc_v[j * ndv + t]);
        }
    }
    free(scratch);
    return ANYACCEL_OK;
}

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
    if (strcmp(c->op, "attention_backward") == 0) return op_attention_backward(c);
    if (strcmp(c->op, "cross_entropy") == 0) return op_cross_entropy(c);
    if (strcmp(c->op, "cross_entropy_backward") == 0) return op_cross_entropy_backward(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
