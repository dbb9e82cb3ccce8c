/*
 * Convolution (docs/ops.md, section 8.11): conv1d and conv2d, PyTorch's cross-correlation with
 * zero padding, groups, strides and dilations.
 *
 *   conv1d: x [N, C, L],    weight [O, C/groups, K],      bias [O] -> out [N, O, L_out]
 *   conv2d: x [N, C, H, W], weight [O, C/groups, KH, KW], bias [O] -> out [N, O, H_out, W_out]
 *
 * A conv1d runs as a conv2d over a height of 1. Each output element is accumulated on its own in
 * f32 (f16 and bf16 elements are widened to f32 exactly), the bias added after the window sum,
 * and rounded once to the output dtype; an element whose f32 sum is not finite is summed again
 * in f64 (see op_conv).
 *
 * Every tensor is checked once (its element count and the offsets of its elements fit in int64),
 * and the output size is derived with checked arithmetic, so that every input position
 * oy * stride + ky * dilation stays below the padded input size and every element offset below,
 * a sum of coordinate x stride terms with each coordinate inside its tensor's shape, stays in
 * range.
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ref.h"

#define CONV_DTYPES (REF_DT(F32) | REF_DT(F16) | REF_DT(BF16))

/* ---- Helpers ---------------------------------------------------------------------------------- */

/*
 * The Ints attribute `name` as `spatial` values in v[0..spatial]: absent gives `dflt` in every
 * dimension, a single value (or a single Int) is used for every dimension, as PyTorch's `_pair`;
 * every value must be at least `min`.
 */
static AnyaccelStatus per_dim(const RefCall *c, const char *name, int spatial, int64_t dflt, int64_t min,
                              int64_t *v) {
    const int64_t *vals = NULL;
    size_t len = 0;
    int r = ref_attr_ints(c, name, &vals, &len);
    if (r < 0) return REF_INVALID("%s: attribute `%s` must be Ints (or an Int)", c->op, name);
    if (r == 0) {
        for (int d = 0; d < spatial; d++) v[d] = dflt;
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

/* ---- conv1d, conv2d --------------------------------------------------------------------------- */

/* The geometry of a call, lifted to two spatial dimensions (a conv1d has a height of 1, a
 * kernel height of 1, stride and dilation 1 and no padding along it). */
typedef struct {
    int64_t n, c, o, groups, cg, og;
    int64_t in[2], k[2], out[2], stride[2], pad[2], dil[2];
    /* The strides of x, weight and out over [batch/out channel, channel, height, width]. */
    int64_t xs[4], ws[4], os[4];
} ConvGeom;

/* A tensor of rank spatial + 2: its strides over 4 dimensions (a conv1d's height gets stride 0). */
static void strides4(const RefTensor *t, int spatial, int64_t *s) {
    s[0] = t->strides[0];
    s[1] = t->strides[1];
    s[2] = spatial == 2 ? t->strides[2] : 0;
    s[3] = t->strides[spatial + 1];
}

static AnyaccelStatus conv_geom(const RefCall *c, int spatial, ConvGeom *g) {
    const char *op = c->op;
    int rank = spatial + 2;
    if (c->num_inputs < 2 || c->num_inputs > 3 || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected x, weight and an optional bias, and one "
                           "output",
                           op, c->num_inputs, c->num_outputs);
    const RefTensor *x = &c->inputs[0], *w = &c->inputs[1], *out = &c->outputs[0];
    const RefTensor *bias = c->num_inputs > 2 && c->inputs[2].present ? &c->inputs[2] : NULL;
    AnyaccelStatus st;
    if ((st = ref_check_tensor(op, "x", x, CONV_DTYPES))) return st;
    /* The inputs and the output share x's dtype. */
    const struct {
        const char *name;
        const RefTensor *t;
    } others[3] = {{"weight", w}, {"bias", bias}, {"the output", out}};
    for (int i = 0; i < 3; i++)
        if (others[i].t && others[i].t->present && others[i].t->dtype != x->dtype)
            return REF_INVALID("%s: %s has dtype %s but x has dtype %s: all inputs and the output must share one "
                               "float dtype",
                               op, others[i].name, ref_dtype_name(others[i].t->dtype), ref_dtype_name(x->dtype));
    unsigned same = ANYACCEL_DTYPE_BIT(x->dtype);
    if ((st = ref_check_tensor(op, "weight", w, same)) ||
        (bias && (st = ref_check_tensor(op, "bias", bias, same))) ||
        (st = ref_check_tensor(op, "the output", out, same)))
        return st;

    if (x->ndim != rank)
        return REF_INVALID("%s: x has shape %s, expected rank %d (%s)", op, ref_shape_str(x->ndim, x->shape).s, rank,
                           spatial == 1 ? "[N, C, L]" : "[N, C, H, W]");
    if (w->ndim != rank)
        return REF_INVALID("%s: weight has shape %s, expected rank %d (%s)", op,
                           ref_shape_str(w->ndim, w->shape).s, rank,
                           spatial == 1 ? "[O, C/groups, K]" : "[O, C/groups, KH, KW]");

    int64_t groups = 1;
    if (ref_attr_int(c, "groups", &groups) < 0) return REF_INVALID("%s: attribute `groups` must be an Int", op);
    if (groups < 1) return REF_INVALID("%s: groups is %lld, expected >= 1", op, (long long)groups);
    int64_t stride[2], pad[2], dil[2];
    if ((st = per_dim(c, "stride", spatial, 1, 1, stride)) || (st = per_dim(c, "padding", spatial, 0, 0, pad)) ||
        (st = per_dim(c, "dilation", spatial, 1, 1, dil)))
        return st;

    g->n = x->shape[0];
    g->c = x->shape[1];
    g->o = w->shape[0];
    g->groups = groups;
    g->cg = w->shape[1];
    if (g->c % groups != 0 || g->c / groups != g->cg) {
        if (g->c % groups == 0)
            return REF_INVALID("%s: x has %lld channels and weight has shape %s (%lld per group): with groups = "
                               "%lld, weight.shape[1] must be C / groups = %lld",
                               op, (long long)g->c, ref_shape_str(w->ndim, w->shape).s, (long long)g->cg,
                               (long long)groups, (long long)(g->c / groups));
        return REF_INVALID("%s: x has %lld channels, which groups = %lld does not divide (weight has shape %s)", op,
                           (long long)g->c, (long long)groups, ref_shape_str(w->ndim, w->shape).s);
    }
    if (g->o % groups != 0)
        return REF_INVALID("%s: weight has %lld output channels, expected a multiple of groups = %lld", op,
                           (long long)g->o, (long long)groups);
    g->og = g->o / groups;

    /* Lift to two spatial dimensions. */
    int first = 2 - spatial;
    for (int d = 0; d < 2; d++) {
        g->in[d] = 1;
        g->k[d] = 1;
        g->stride[d] = 1;
        g->pad[d] = 0;
        g->dil[d] = 1;
        g->out[d] = 1;
    }
    for (int d = 0; d < spatial; d++) {
        g->in[first + d] = x->shape[2 + d];
        g->k[first + d] = w->shape[2 + d];
        g->stride[first + d] = stride[d];
        g->pad[first + d] = pad[d];
        g->dil[first + d] = dil[d];
    }
    static const char *const dim_names[2][2] = {{"length", "length"}, {"height", "width"}};
    for (int d = first; d < 2; d++) {
        if (g->k[d] == 0)
            return REF_INVALID("%s: weight has shape %s, expected kernel sizes >= 1", op,
                               ref_shape_str(w->ndim, w->shape).s);
        /* floor((in + 2 pad - (dil (k - 1) + 1)) / stride) + 1 */
        int64_t padded, extent;
        if (!ref_mul_ok(g->pad[d], 2, &padded) || !ref_add_ok(padded, g->in[d], &padded) ||
            !ref_mul_ok(g->dil[d], g->k[d] - 1, &extent) || !ref_add_ok(extent, 1, &extent))
            return REF_INVALID("%s: the output size along the %s overflows int64", op, dim_names[spatial - 1][d]);
        if (extent > padded)
            return REF_INVALID("%s: the kernel spans %lld (dilation %lld x (size %lld - 1) + 1) but the padded "
                               "input %s is %lld (%lld + 2 x %lld): the output would be empty",
                               op, (long long)extent, (long long)g->dil[d], (long long)g->k[d],
                               dim_names[spatial - 1][d], (long long)padded, (long long)g->in[d],
                               (long long)g->pad[d]);
        g->out[d] = (padded - extent) / g->stride[d] + 1;
    }

    if (bias && !(bias->ndim == 1 && bias->shape[0] == g->o))
        return REF_INVALID("%s: bias has shape %s, expected [%lld] (one per output channel)", op,
                           ref_shape_str(bias->ndim, bias->shape).s, (long long)g->o);

    int64_t expect[4] = {g->n, g->o, g->out[0], g->out[1]};
    if (spatial == 1) expect[2] = g->out[1];
    int ok = out->ndim == rank;
    for (int d = 0; ok && d < rank; d++) ok = out->shape[d] == expect[d];
    if (!ok)
        return REF_INVALID("%s: the output has shape %s, expected %s", op, ref_shape_str(out->ndim, out->shape).s,
                           ref_shape_str(rank, expect).s);

    strides4(x, spatial, g->xs);
    strides4(w, spatial, g->ws);
    strides4(out, spatial, g->os);
    return ANYACCEL_OK;
}

/*
 * The window sum of output element (n, oc, oy, ox), without the bias: the sum over
 * ci < C/groups, ky, kx of
 * x[n, g * C/groups + ci, oy * sh + ky * dh - ph, ox * sw + kx * dw - pw] * weight[oc, ci, ky, kx]
 * with g = oc / (O/groups); input positions outside the image add nothing (zero padding).
 * Accumulated in f32, or with `wide` in f64 (products and sums exact up to the f64 rounding).
 * oy * sh + ky * dh stays below the padded input size, which fits in int64: see conv_geom.
 */
static double window_sum(const ConvGeom *g, const RefTensor *x, const RefTensor *w, int64_t n, int64_t oc,
                         int64_t oy, int64_t ox, int wide) {
    const int64_t c0 = (oc / g->og) * g->cg; /* the group's first input channel */
    float acc = 0.0f;
    double acc_wide = 0.0;
    for (int64_t ci = 0; ci < g->cg; ci++) {
        const int64_t xb = n * g->xs[0] + (c0 + ci) * g->xs[1];
        const int64_t wb = oc * g->ws[0] + ci * g->ws[1];
        for (int64_t ky = 0; ky < g->k[0]; ky++) {
            const int64_t iy = oy * g->stride[0] + ky * g->dil[0] - g->pad[0];
            if (iy < 0 || iy >= g->in[0]) continue;
            for (int64_t kx = 0; kx < g->k[1]; kx++) {
                const int64_t ix = ox * g->stride[1] + kx * g->dil[1] - g->pad[1];
                if (ix < 0 || ix >= g->in[1]) continue;
                const double xv = ref_at(x, xb + iy * g->xs[2] + ix * g->xs[3]);
                const double wv = ref_at(w, wb + ky * g->ws[2] + kx * g->ws[3]);
                if (wide) {
                    acc_wide += xv * wv;
                } else {
                    /* f32 * f32, rounded to f32, then added in f32 (-ffp-contract=off: no fma) */
                    const float p = (float)xv * (float)wv;
                    acc += p;
                }
            }
        }
    }
    return wide ? acc_wide : (double)acc;
}

/*
 * out[n, oc, oy, ox] = window_sum + bias[oc], summed in f32 and rounded once to the output dtype.
 * Where the f32 result is not finite, the element is summed again in f64: an intermediate
 * overflow of f32 (a product or partial sum beyond its range, as with bf16's or f32's largest
 * values) must not turn a finite or infinite result into NaN or a finite one into an infinity.
 */
static AnyaccelStatus op_conv(const RefCall *c, int spatial) {
    ConvGeom g;
    AnyaccelStatus st = conv_geom(c, spatial, &g);
    if (st) return st;
    const RefTensor *x = &c->inputs[0], *w = &c->inputs[1], *out = &c->outputs[0];
    const RefTensor *bias = c->num_inputs > 2 && c->inputs[2].present ? &c->inputs[2] : NULL;
    const int64_t osize = (int64_t)ref_dtype_size(out->dtype);
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t oc = 0; oc < g.o; oc++) {
            const double b = bias ? ref_at(bias, oc * bias->strides[0]) : 0.0;
            for (int64_t oy = 0; oy < g.out[0]; oy++)
                for (int64_t ox = 0; ox < g.out[1]; ox++) {
                    float acc = (float)window_sum(&g, x, w, n, oc, oy, ox, 0);
                    if (bias) acc += (float)b;
                    double v = acc;
                    if (!isfinite(acc)) v = window_sum(&g, x, w, n, oc, oy, ox, 1) + b;
                    const int64_t oo = n * g.os[0] + oc * g.os[1] + oy * g.os[2] + ox * g.os[3];
                    ref_store_f(out->dtype, out->base + oo * osize, v);
                }
        }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_conv(const RefCall *c) {
    if (strcmp(c->op, "conv1d") == 0) return op_conv(c, 1);
    if (strcmp(c->op, "conv2d") == 0) return op_conv(c, 2);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
