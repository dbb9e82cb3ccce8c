/*
 * Batch normalisation (docs/ops.md, section 8.15): batch_norm, as ATen's native_batch_norm
 * (out, save_mean, save_invstd).
 *
 *   x [N, C, *] (rank >= 2), running_mean? [C], running_var? [C], weight? [C], bias? [C]
 *     -> out [N, C, *], mean [C], invstd [C]                     (training = 0 or 1, eps)
 *
 * training = 0: mean = running_mean and invstd = 1 / sqrt(running_var + eps) (both running
 * statistics required). training = 1: per channel, over its N x prod(spatial) elements, the mean
 * and the biased variance (divided by the count), invstd = 1 / sqrt(var + eps); the running
 * statistics are ignored (ops do not write their inputs). Then
 * out = (x - mean) * invstd * weight[c] + bias[c] (weight 1, bias 0 when absent).
 *
 * As group_norm (ops_group_norm.c), everything accumulates in double and each output is rounded
 * once to its dtype: an Inf or NaN in a channel makes its mean, invstd and outputs NaN, and a
 * constant channel gives 0 (+ bias) when eps > 0, NaN when eps = 0 (0 * Inf).
 *
 * x and the output are walked through their strides (the spatial dimensions by an odometer).
 * ref_check_tensor has checked that every element count and element offset of each tensor fits
 * in int64, so no offset or count computed below leaves int64 (sizes are multiplied only once
 * C > 0, when their product divides numel(x)).
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ref.h"

#define BATCH_NORM_DTYPES (REF_DT(F32) | REF_DT(F16) | REF_DT(BF16))

/* ---- Helpers ---------------------------------------------------------------------------------- */

/* An odometer over the spatial dimensions (2 .. rank - 1) of x and the output, giving the element
 * offsets, relative to the start of a (sample, channel), of the same spatial position in both. */
typedef struct {
    int ndim; /* spatial dimensions */
    int64_t shape[REF_MAX_DIMS];
    int64_t xs[REF_MAX_DIMS], os[REF_MAX_DIMS];
    int64_t index[REF_MAX_DIMS];
    int64_t xo, oo;
} Spatial;

static void spatial_init(Spatial *s, const RefTensor *x, const RefTensor *out) {
    memset(s, 0, sizeof *s);
    s->ndim = x->ndim - 2;
    for (int d = 0; d < s->ndim; d++) {
        s->shape[d] = x->shape[d + 2];
        s->xs[d] = x->strides[d + 2];
        s->os[d] = out->strides[d + 2];
    }
}

/* Steps to the next spatial position (wrapping to the first after the last). Offsets stay those
 * of elements of the tensors, so they fit in int64. */
static void spatial_next(Spatial *s) {
    for (int d = s->ndim - 1; d >= 0; d--) {
        if (++s->index[d] < s->shape[d]) {
            s->xo += s->xs[d];
            s->oo += s->os[d];
            return;
        }
        s->xo -= s->xs[d] * (s->shape[d] - 1);
        s->oo -= s->os[d] * (s->shape[d] - 1);
        s->index[d] = 0;
    }
}

/* The optional per-channel input `name` (running_mean, running_var, weight, bias): absent, or of
 * x's dtype and shape [C]. */
static AnyaccelStatus check_channel_input(const RefCall *c, size_t i, const char *name, const RefTensor **t) {
    *t = NULL;
    if (c->num_inputs <= i || !c->inputs[i].present) return ANYACCEL_OK;
    const RefTensor *x = &c->inputs[0], *p = &c->inputs[i];
    if (p->dtype != x->dtype)
        return REF_INVALID("%s: %s has dtype %s but x has dtype %s: they must share one float dtype", c->op, name,
                           ref_dtype_name(p->dtype), ref_dtype_name(x->dtype));
    AnyaccelStatus st = ref_check_tensor(c->op, name, p, ANYACCEL_DTYPE_BIT(x->dtype));
    if (st) return st;
    if (p->ndim != 1 || p->shape[0] != x->shape[1])
        return REF_INVALID("%s: %s has shape %s, expected [%lld] (one per channel)", c->op, name,
                           ref_shape_str(p->ndim, p->shape).s, (long long)x->shape[1]);
    *t = p;
    return ANYACCEL_OK;
}

/* Output `i` (`name`): of x's dtype and of shape `rank` x `shape`. */
static AnyaccelStatus check_output(const RefCall *c, size_t i, const char *name, int rank, const int64_t *shape) {
    const RefTensor *x = &c->inputs[0], *t = &c->outputs[i];
    AnyaccelStatus st;
    if (t->present && t->dtype != x->dtype)
        return REF_INVALID("%s: %s has dtype %s but x has dtype %s: they must share one float dtype", c->op, name,
                           ref_dtype_name(t->dtype), ref_dtype_name(x->dtype));
    if ((st = ref_check_tensor(c->op, name, t, ANYACCEL_DTYPE_BIT(x->dtype)))) return st;
    int same = t->ndim == rank;
    for (int d = 0; same && d < rank; d++) same = t->shape[d] == shape[d];
    if (!same)
        return REF_INVALID("%s: %s has shape %s, expected %s", c->op, name, ref_shape_str(t->ndim, t->shape).s,
                           ref_shape_str(rank, shape).s);
    return ANYACCEL_OK;
}

/* ---- batch_norm ------------------------------------------------------------------------------- */

static AnyaccelStatus op_batch_norm(const RefCall *c) {
    const char *op = c->op;
    if (c->num_inputs < 1 || c->num_inputs > 5 || c->num_outputs != 3 || !c->inputs[0].present)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected x, optional running_mean, running_var, "
                           "weight and bias, and three outputs (out, mean, invstd)",
                           op, c->num_inputs, c->num_outputs);
    const RefTensor *x = &c->inputs[0];
    AnyaccelStatus st;
    if ((st = ref_check_tensor(op, "x", x, BATCH_NORM_DTYPES))) return st;
    if (x->ndim < 2)
        return REF_INVALID("%s: x has shape %s, expected rank 2 or more ([N, C, *])", op,
                           ref_shape_str(x->ndim, x->shape).s);
    const int64_t channels = x->shape[1];
    if ((st = check_output(c, 0, "out", x->ndim, x->shape)) || (st = check_output(c, 1, "mean", 1, &channels)) ||
        (st = check_output(c, 2, "invstd", 1, &channels)))
        return st;
    const RefTensor *out = &c->outputs[0], *mean_out = &c->outputs[1], *invstd_out = &c->outputs[2];

    const RefTensor *rm, *rv, *w, *b;
    if ((st = check_channel_input(c, 1, "running_mean", &rm)) || (st = check_channel_input(c, 2, "running_var", &rv)) ||
        (st = check_channel_input(c, 3, "weight", &w)) || (st = check_channel_input(c, 4, "bias", &b)))
        return st;

    /* Attributes. */
    int64_t training = 0;
    if (ref_attr_int(c, "training", &training) < 0)
        return REF_INVALID("%s: attribute `training` must be an Int (0 or 1)", op);
    if (training != 0 && training != 1)
        return REF_INVALID("%s: attribute `training` is %lld, expected 0 or 1", op, (long long)training);
    double eps = 1e-5;
    if (ref_attr_float(c, "eps", &eps) < 0) return REF_INVALID("%s: eps must be a Float", op);
    if (!isfinite(eps) || eps < 0.0) return REF_INVALID("%s: eps is %g, expected a finite value >= 0", op, eps);
    if (!training && (!rm || !rv))
        return REF_INVALID("%s: training is 0 but %s is missing: inference normalises with the running statistics",
                           op, !rm ? "running_mean" : "running_var");

    if (channels == 0) return ANYACCEL_OK; /* empty outputs */
    /* C > 0, so numel(x) = C x N x spatial fits in int64 and so do N x spatial and its factors. */
    const int64_t batch = x->shape[0];
    int64_t spatial = 1;
    for (int d = 2; d < x->ndim; d++) spatial *= x->shape[d];
    const int64_t per_channel = batch * spatial;
    if (training && per_channel == 0)
        return REF_INVALID("%s: x has shape %s: training needs at least one value per channel", op,
                           ref_shape_str(x->ndim, x->shape).s);

    Spatial s;
    spatial_init(&s, x, out);
    const double count = (double)per_channel;
    for (int64_t ch = 0; ch < channels; ch++) {
        double mean, invstd;
        if (training) {
            double sum = 0.0;
            for (int64_t n = 0; n < batch; n++) {
                const int64_t xb = n * x->strides[0] + ch * x->strides[1];
                for (int64_t i = 0; i < spatial; i++, spatial_next(&s)) sum += ref_at(x, xb + s.xo);
            }
            mean = sum / count;
            double var = 0.0;
            for (int64_t n = 0; n < batch; n++) {
                const int64_t xb = n * x->strides[0] + ch * x->strides[1];
                for (int64_t i = 0; i < spatial; i++, spatial_next(&s)) {
                    const double e = ref_at(x, xb + s.xo) - mean;
                    var += e * e;
                }
            }
            invstd = 1.0 / sqrt(var / count + eps);
        } else {
            mean = ref_at(rm, ch * rm->strides[0]);
            invstd = 1.0 / sqrt(ref_at(rv, ch * rv->strides[0]) + eps);
        }
        ref_put(mean_out, ch * mean_out->strides[0], mean);
        ref_put(invstd_out, ch * invstd_out->strides[0], invstd);

        const double wv = w ? ref_at(w, ch * w->strides[0]) : 1.0;
        const double bv = b ? ref_at(b, ch * b->strides[0]) : 0.0;
        for (int64_t n = 0; n < batch; n++) {
            const int64_t xb = n * x->strides[0] + ch * x->strides[1];
            const int64_t ob = n * out->strides[0] + ch * out->strides[1];
            for (int64_t i = 0; i < spatial; i++, spatial_next(&s)) {
                double y = (ref_at(x, xb + s.xo) - mean) * invstd;
                if (w) y *= wv;
                if (b) y += bv;
                ref_put(out, ob + s.oo, y);
            }
        }
    }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_batch_norm(const RefCall *c) {
    if (strcmp(c->op, "batch_norm") == 0) return op_batch_norm(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
