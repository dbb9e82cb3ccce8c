/*
 * What the normalisations share: layer_norm and rms_norm (ops_nn.c), group_norm
 * (ops_group_norm.c), batch_norm (ops_batch_norm.c) and their gradients (the *_backward ops of
 * the same files). Each normalises groups of elements of x: a row along the last axis, a
 * (sample, group of channels), a channel over the batch. This file has the checks and
 * attributes they share, the groups of each kind and a strided walk over one, the statistics of
 * a group, the forward ops' affine output, and the gradients: dx per group and the per-channel
 * sums of dweight and dbias.
 *
 * Every tensor is checked by ref_check_tensor (its element count and the offsets of its
 * elements fit in int64), and a group is walked only when x has elements, so that every size
 * multiplied below divides numel(x) and every offset is that of an element: nothing computed
 * here leaves int64. Sums accumulate in double and each output is rounded once to its dtype.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

/* ---- Checks and attributes ------------------------------------------------------------------- */

AnyaccelStatus ref_check_min_rank(const char *op, const char *name, const RefTensor *t, int rank, const char *layout) {
    if (t->ndim < rank)
        return REF_INVALID("%s: %s has shape %s, expected rank %d or more (%s)", op, name,
                           ref_shape_str(t->ndim, t->shape).s, rank, layout);
    return ANYACCEL_OK;
}

AnyaccelStatus ref_check_channels(const char *op, int count, const char *const *names, const RefTensor *const *t,
                                  int64_t len, const char *why) {
    AnyaccelStatus st;
    for (int i = 0; i < count; i++)
        if (t[i] && (st = ref_check_shape(op, names[i], t[i], 1, &len, why))) return st;
    return ANYACCEL_OK;
}

AnyaccelStatus ref_eps_attr(const RefCall *c, double *eps) {
    if (ref_attr_float(c, "eps", eps) < 0) return REF_INVALID("%s: eps must be a Float", c->op);
    if (!isfinite(*eps) || *eps < 0.0)
        return REF_INVALID("%s: eps is %g, expected a finite value >= 0", c->op, *eps);
    return ANYACCEL_OK;
}

/* ---- Walks and groups ------------------------------------------------------------------------ */

/* Starts a walk of the tensors t[0..count] over their dimensions dims[0..ndim] (t[0]'s sizes). */
static void walk_init(RefWalk *w, int count, const RefTensor *const *t, int ndim, const int *dims) {
    memset(w, 0, sizeof *w);
    w->count = count;
    w->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        w->shape[i] = t[0]->shape[dims[i]];
        for (int k = 0; k < count; k++) w->strides[k][i] = t[k]->strides[dims[i]];
    }
}

/* Steps to the next element. Offsets only ever move from one element to the next (stride x
 * (size - 1) is the span of a dimension), so they stay those of elements: unlike a step past the
 * last index, which a dimension of size 1 with any stride would let leave int64. */
static void walk_next(RefWalk *w) {
    for (int d = w->ndim - 1; d >= 0; d--) {
        if (++w->index[d] < w->shape[d]) {
            for (int k = 0; k < w->count; k++) w->off[k] += w->strides[k][d];
            return;
        }
        for (int k = 0; k < w->count; k++) w->off[k] -= w->strides[k][d] * (w->shape[d] - 1);
        w->index[d] = 0;
    }
}

void ref_norm_groups_init(RefNormGroups *gs, RefNormLayout layout, int count, const RefTensor *const *t,
                          int64_t groups) {
    memset(gs, 0, sizeof *gs);
    gs->layout = layout;
    gs->ntensors = count;
    for (int k = 0; k < count; k++) gs->tensors[k] = t[k];
    const RefTensor *x = t[0];
    if (ref_numel(x) == 0) return; /* no group; and the sizes below might not fit */
    /* The dimensions a group walks, and its size along the first of them. */
    int dims[REF_MAX_DIMS], ndim = 0;
    int64_t first;
    RefNormGroup *g = &gs->group;
    if (layout == REF_NORM_ROWS) {
        for (int d = 0; d < x->ndim - 1; d++) dims[d] = d;
        walk_init(&gs->rows, count, t, x->ndim - 1, dims);
        dims[ndim++] = x->ndim - 1;
        first = x->shape[x->ndim - 1];
        gs->count = ref_numel(x) / first;
    } else {
        dims[ndim++] = layout == REF_NORM_GROUPS ? 1 : 0;
        for (int d = 2; d < x->ndim; d++) dims[ndim++] = d;
        gs->per_sample = layout == REF_NORM_GROUPS ? groups : 1;
        first = layout == REF_NORM_GROUPS ? x->shape[1] / groups : x->shape[0];
        gs->count = layout == REF_NORM_GROUPS ? x->shape[0] * groups : x->shape[1];
    }
    g->channel_first = layout != REF_NORM_CHANNELS;
    walk_init(&g->walk, count, t, ndim, dims);
    g->walk.shape[0] = first;
    g->len = 1;
    for (int i = 0; i < ndim; i++) g->len *= g->walk.shape[i]; /* divides numel(x) > 0 */
}

int ref_norm_groups_next(RefNormGroups *gs) {
    if (gs->next >= gs->count) return 0;
    const int64_t i = gs->next++;
    RefNormGroup *g = &gs->group;
    if (gs->layout == REF_NORM_ROWS) {
        if (i > 0) walk_next(&gs->rows);
        for (int k = 0; k < gs->ntensors; k++) g->base[k] = gs->rows.off[k];
        return 1;
    }
    /* Sample n, first channel ch: the offsets of an element of each tensor. */
    const int64_t n = gs->layout == REF_NORM_GROUPS ? i / gs->per_sample : 0;
    const int64_t ch = gs->layout == REF_NORM_GROUPS ? i % gs->per_sample * g->walk.shape[0] : i;
    for (int k = 0; k < gs->ntensors; k++)
        g->base[k] = n * gs->tensors[k]->strides[0] + ch * gs->tensors[k]->strides[1];
    g->channel = ch;
    return 1;
}

/* The channel of the walk's current element. */
static int64_t group_channel(const RefNormGroup *g) {
    return g->channel_first ? g->channel + g->walk.index[0] : g->channel;
}

/* The element of `t`, the group's tensor k, at the walk's current element. */
static double group_at(const RefNormGroup *g, const RefTensor *t, int k) {
    return ref_at(t, g->base[k] + g->walk.off[k]);
}

/* ---- Forward --------------------------------------------------------------------------------- */

void ref_group_stats(RefNormGroup *g, const RefTensor *x, int rms, double eps, double *mean, double *denom) {
    const double count = (double)g->len;
    double m = 0.0;
    if (!rms) {
        double sum = 0.0;
        for (int64_t i = 0; i < g->len; i++, walk_next(&g->walk)) sum += group_at(g, x, 0);
        m = sum / count;
    }
    double sq = 0.0;
    for (int64_t i = 0; i < g->len; i++, walk_next(&g->walk)) {
        const double e = group_at(g, x, 0) - m;
        sq += e * e;
    }
    *mean = m;
    *denom = sqrt(sq / count + eps);
}

void ref_group_apply(RefNormGroup *g, const RefTensor *x, const RefTensor *out, const RefTensor *w,
                     const RefTensor *b, double mean, double r, int divide) {
    for (int64_t i = 0; i < g->len; i++, walk_next(&g->walk)) {
        const int64_t ch = group_channel(g);
        double y = group_at(g, x, 0) - mean;
        y = divide ? y / r : y * r;
        if (w) y *= ref_at(w, ch * w->strides[0]);
        if (b) y += ref_at(b, ch * b->strides[0]);
        ref_put(out, g->base[1] + g->walk.off[1], y);
    }
}

void ref_norm_forward(RefNormLayout layout, const RefTensor *x, const RefTensor *out, const RefTensor *w,
                      const RefTensor *b, int64_t groups, int rms, double eps) {
    const RefTensor *const t[2] = {x, out};
    RefNormGroups gs;
    ref_norm_groups_init(&gs, layout, 2, t, groups);
    while (ref_norm_groups_next(&gs)) {
        double mean, denom;
        ref_group_stats(&gs.group, x, rms, eps, &mean, &denom);
        ref_group_apply(&gs.group, x, out, w, b, mean, denom, 1);
    }
}

/* ---- Gradients ------------------------------------------------------------------------------- */

AnyaccelStatus ref_norm_grad_check(const RefCall *c, int channels_first, int stats, int dbias, RefNormGrad *g) {
    const char *op = c->op;
    const size_t fixed = stats ? 4 : 2, outputs = dbias ? 3 : 2;
    if (c->num_inputs < fixed || c->num_inputs > fixed + 1 || c->num_outputs != outputs)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected %s and an optional weight, and %s", op,
                           c->num_inputs, c->num_outputs, stats ? "grad, x, mean, invstd" : "grad, x",
                           dbias ? "three outputs (dx, dweight, dbias)" : "two outputs (dx, dweight)");
    memset(g, 0, sizeof *g);
    g->grad = &c->inputs[0];
    g->x = &c->inputs[1];
    if (stats) {
        g->mean = &c->inputs[2];
        g->invstd = &c->inputs[3];
    }
    if (c->num_inputs > fixed && c->inputs[fixed].present) g->weight = &c->inputs[fixed];
    g->dx = &c->outputs[0];
    g->dweight = &c->outputs[1];
    if (dbias) g->dbias = &c->outputs[2];

    if (stats && (!g->mean->present || !g->invstd->present))
        return REF_INVALID("%s: mean and invstd are required (batch_norm's second and third outputs)", op);
    /* grad, x and dx first, then the per-channel tensors (NULL where the op has none). */
    const char *const names[8] = {"grad", "x", "dx", "mean", "invstd", "weight", "dweight", "dbias"};
    const RefTensor *const t[8] = {g->grad, g->x, g->dx, g->mean, g->invstd, g->weight, g->dweight, g->dbias};
    const RefTensor *x = g->x;
    AnyaccelStatus st;
    if ((st = ref_check_floats(op, 8, names, t)) ||
        (st = ref_check_min_rank(op, "x", x, channels_first ? 2 : 1, channels_first ? "[N, C, *]" : "[..., D]")) ||
        (st = ref_check_shape(op, "dx", g->dx, x->ndim, x->shape, " (x's shape)")))
        return st;
    int same = g->grad->ndim == x->ndim;
    for (int d = 0; same && d < x->ndim; d++) same = g->grad->shape[d] == x->shape[d];
    if (!same)
        return REF_INVALID("%s: grad has shape %s, expected x's shape %s", op,
                           ref_shape_str(g->grad->ndim, g->grad->shape).s, ref_shape_str(x->ndim, x->shape).s);
    g->channels = x->shape[channels_first ? 1 : x->ndim - 1];
    return ref_check_channels(op, 5, names + 3, t + 3, g->channels,
                              channels_first ? " (one per channel)" : " (one per position of the last axis)");
}

/* Zeroed sums of dweight and then dbias, 2 x channels doubles; channels <= numel(dweight), whose
 * bytes fit in int64. */
static AnyaccelStatus grad_sums(const char *op, const RefNormGrad *g, double **acc) {
    *acc = NULL;
    if ((uint64_t)g->channels <= SIZE_MAX / (2 * sizeof **acc))
        *acc = calloc(g->channels ? 2 * (size_t)g->channels : 1, sizeof **acc);
    if (!*acc) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    return ANYACCEL_OK;
}

/* The gradient of one group (its tensors x, grad, dx) with statistics mean and r (the inverse of
 * the denominator): with dxhat = grad * w[channel] and xhat = (x - mean) * r, A and B the means
 * of dxhat and dxhat * xhat over the group, dx = r * (dxhat - A - xhat * B) with the terms
 * `terms` says; grad * xhat and grad added to the channel's sums in acc (dweight's, then
 * dbias's). */
static void group_backward(RefNormGroup *g, const RefNormGrad *ng, double mean, double r, RefNormTerms terms,
                           double *acc) {
    const RefTensor *x = ng->x, *grad = ng->grad, *w = ng->weight;
    double *dw = acc, *db = acc + ng->channels;
    double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    for (int64_t i = 0; i < g->len; i++, walk_next(&g->walk)) {
        const int64_t ch = group_channel(g);
        const double dy = group_at(g, grad, 1), xhat = (group_at(g, x, 0) - mean) * r;
        const double dxhat = w ? dy * ref_at(w, ch * w->strides[0]) : dy;
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * xhat;
        dw[ch] += dy * xhat;
        db[ch] += dy;
    }
    const double a = sum_dxhat / (double)g->len, b = sum_dxhat_xhat / (double)g->len;
    for (int64_t i = 0; i < g->len; i++, walk_next(&g->walk)) {
        const int64_t ch = group_channel(g);
        const double dy = group_at(g, grad, 1);
        double v = w ? dy * ref_at(w, ch * w->strides[0]) : dy;
        /* A term that the op does not have is left out, not multiplied by 0 (0 x Inf). */
        if (terms == REF_NORM_MEAN_AND_SCALE) v -= a;
        if (terms != REF_NORM_NONE) v -= (group_at(g, x, 0) - mean) * r * b;
        ref_put(ng->dx, g->base[2] + g->walk.off[2], r * v);
    }
}

AnyaccelStatus ref_norm_grad_run(const char *op, const RefNormGrad *g, RefNormLayout layout, int64_t groups,
                                 int rms, double eps, RefNormTerms terms) {
    double *acc;
    const AnyaccelStatus st = grad_sums(op, g, &acc);
    if (st) return st;
    const RefTensor *const t[3] = {g->x, g->grad, g->dx};
    RefNormGroups gs;
    ref_norm_groups_init(&gs, layout, 3, t, groups);
    while (ref_norm_groups_next(&gs)) {
        double mean, r;
        if (g->mean) { /* given statistics, one per channel (batch_norm_backward) */
            const int64_t ch = gs.group.channel;
            mean = ref_at(g->mean, ch * g->mean->strides[0]);
            r = ref_at(g->invstd, ch * g->invstd->strides[0]);
        } else {
            ref_group_stats(&gs.group, g->x, rms, eps, &mean, &r);
            r = 1.0 / r;
        }
        group_backward(&gs.group, g, mean, r, terms, acc);
    }
    for (int64_t ch = 0; ch < g->channels; ch++) {
        ref_put(g->dweight, ch * g->dweight->strides[0], acc[ch]);
        if (g->dbias) ref_put(g->dbias, ch * g->dbias->strides[0], acc[g->channels + ch]);
    }
    free(acc);
    return ANYACCEL_OK;
}
