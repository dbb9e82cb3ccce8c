/*
 * Group normalisation (docs/ops.md, section 8.14): group_norm, as PyTorch's
 * torch.nn.functional.group_norm.
 *
 *   x [N, C, *] (rank >= 2), weight? [C], bias? [C] -> out [N, C, *]   (num_groups = G)
 *
 * The C channels form G groups of C / G consecutive channels. For each (n, group), over its
 * C / G x prod(spatial) elements: mean and biased variance (divided by the count), then
 * y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c] (weight 1, bias 0 when absent). As
 * layer_norm (ops_nn.c), everything accumulates in double and each output is rounded once to
 * its dtype, so special values behave as there: an Inf or NaN in a group makes the whole group
 * NaN, and a constant group gives 0 (+ bias) when eps > 0, NaN when eps = 0 (0 / 0).
 *
 * x and the output are walked through their strides (the spatial dimensions by an odometer).
 * ref_check_tensor has checked that every element count and element offset of each tensor fits
 * in int64, so no offset or count computed below leaves int64.
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ref.h"

#define GROUP_NORM_DTYPES (REF_DT(F32) | REF_DT(F16) | REF_DT(BF16))

/* ---- Helpers ---------------------------------------------------------------------------------- */

/* An odometer over the spatial dimensions (2 .. rank - 1) of x and the output, giving the element
 * offsets, relative to the start of a channel, of the same spatial position in both. */
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

/* The optional per-channel input `name` (weight or bias): absent, or of x's dtype and shape [C]. */
static AnyaccelStatus check_affine(const RefCall *c, size_t i, const char *name, const RefTensor **t) {
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

/* ---- group_norm ------------------------------------------------------------------------------- */

static AnyaccelStatus op_group_norm(const RefCall *c) {
    const char *op = c->op;
    if (c->num_inputs < 1 || c->num_inputs > 3 || c->num_outputs != 1 || !c->inputs[0].present)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected x, optional weight and bias, and one "
                           "output",
                           op, c->num_inputs, c->num_outputs);
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    AnyaccelStatus st;
    if ((st = ref_check_tensor(op, "x", x, GROUP_NORM_DTYPES))) return st;
    if (x->ndim < 2)
        return REF_INVALID("%s: x has shape %s, expected rank 2 or more ([N, C, *])", op,
                           ref_shape_str(x->ndim, x->shape).s);
    if (out->present && out->dtype != x->dtype)
        return REF_INVALID("%s: the output has dtype %s but x has dtype %s: they must share one float dtype", op,
                           ref_dtype_name(out->dtype), ref_dtype_name(x->dtype));
    if ((st = ref_check_tensor(op, "the output", out, ANYACCEL_DTYPE_BIT(x->dtype)))) return st;
    int same = out->ndim == x->ndim;
    for (int d = 0; same && d < x->ndim; d++) same = out->shape[d] == x->shape[d];
    if (!same)
        return REF_INVALID("%s: the output has shape %s, expected x's shape %s", op,
                           ref_shape_str(out->ndim, out->shape).s, ref_shape_str(x->ndim, x->shape).s);

    /* Attributes. */
    int64_t groups = 0;
    int r = ref_attr_int(c, "num_groups", &groups);
    if (r < 0) return REF_INVALID("%s: num_groups must be an Int", op);
    if (r == 0) return REF_INVALID("%s: num_groups is required", op);
    const int64_t channels = x->shape[1];
    if (groups < 1 || channels % groups != 0)
        return REF_INVALID("%s: num_groups is %lld, expected a divisor of C = %lld (>= 1)", op, (long long)groups,
                           (long long)channels);
    double eps = 1e-5;
    if (ref_attr_float(c, "eps", &eps) < 0) return REF_INVALID("%s: eps must be a Float", op);
    if (!isfinite(eps) || eps < 0.0) return REF_INVALID("%s: eps is %g, expected a finite value >= 0", op, eps);

    const RefTensor *w, *b;
    if ((st = check_affine(c, 1, "weight", &w)) || (st = check_affine(c, 2, "bias", &b))) return st;

    if (ref_numel(x) == 0) return ANYACCEL_OK;
    const int64_t batch = x->shape[0], per_group = channels / groups;
    int64_t spatial = 1; /* <= numel(x), so it fits */
    for (int d = 2; d < x->ndim; d++) spatial *= x->shape[d];
    const double count = (double)per_group * (double)spatial; /* > 0: numel(x) > 0 */

    Spatial s;
    spatial_init(&s, x, out);
    for (int64_t n = 0; n < batch; n++)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t c0 = g * per_group, c1 = c0 + per_group;
            double sum = 0.0;
            for (int64_t ch = c0; ch < c1; ch++) {
                const int64_t xb = n * x->strides[0] + ch * x->strides[1];
                for (int64_t i = 0; i < spatial; i++, spatial_next(&s)) sum += ref_at(x, xb + s.xo);
            }
            const double mean = sum / count;
            double var = 0.0;
            for (int64_t ch = c0; ch < c1; ch++) {
                const int64_t xb = n * x->strides[0] + ch * x->strides[1];
                for (int64_t i = 0; i < spatial; i++, spatial_next(&s)) {
                    const double e = ref_at(x, xb + s.xo) - mean;
                    var += e * e;
                }
            }
            const double denom = sqrt(var / count + eps);
            for (int64_t ch = c0; ch < c1; ch++) {
                const int64_t xb = n * x->strides[0] + ch * x->strides[1];
                const int64_t ob = n * out->strides[0] + ch * out->strides[1];
                const double wv = w ? ref_at(w, ch * w->strides[0]) : 1.0;
                const double bv = b ? ref_at(b, ch * b->strides[0]) : 0.0;
                for (int64_t i = 0; i < spatial; i++, spatial_next(&s)) {
                    double y = (ref_at(x, xb + s.xo) - mean) / denom;
                    if (w) y *= wv;
                    if (b) y += bv;
                    ref_put(out, ob + s.oo, y);
                }
            }
        }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_group_norm(const RefCall *c) {
    if (strcmp(c->op, "group_norm") == 0) return op_group_norm(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
