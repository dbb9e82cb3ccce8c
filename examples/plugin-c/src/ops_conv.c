/*
 * Convolution (docs/ops.md, section 8.11): conv1d and conv2d, PyTorch's cross-correlation with
 * zero padding, groups, strides and dilations; their transposes conv_transpose1d and
 * conv_transpose2d; and their gradients conv1d/conv2d_backward_input (with respect to x) and
 * conv1d/conv2d_backward_weight (with respect to the weight).
 *
 *   conv1d: x [N, C, L],    weight [O, C/groups, K],      bias [O] -> out [N, O, L_out]
 *   conv2d: x [N, C, H, W], weight [O, C/groups, KH, KW], bias [O] -> out [N, O, H_out, W_out]
 *   conv_transpose2d: x [N, C_in, H, W], weight [C_in, C_out/groups, KH, KW], bias [C_out]
 *                     -> out [N, C_out, H_out, W_out]
 *   conv2d_backward_input:  grad [N, O, H_out, W_out], weight [O, C/groups, KH, KW] -> dx [N, C, H, W]
 *   conv2d_backward_weight: grad [N, O, H_out, W_out], x [N, C, H, W] -> dweight [O, C/groups, KH, KW]
 *
 * (and the 1-d forms over [N, C, L]). Every op is described by the geometry of one forward
 * convolution (ConvGeom): its input x, weight and output. A transposed convolution is the
 * gradient of the convolution whose input is the transpose's output and whose output is the
 * transpose's x, so it shares conv*_backward_input's kernel (transposed_sum).
 *
 * A 1-d op runs as a 2-d one over a height of 1. conv1d and conv2d accumulate each output element
 * on its own in f32 (f16 and bf16 elements are widened to f32 exactly), the bias added after the
 * window sum, and rounded once to the output dtype; an element whose f32 sum is not finite is
 * summed again in f64 (see op_conv). The transposes and gradients accumulate in f64 and round
 * once.
 *
 * Every tensor is checked once (its element count and the offsets of its elements fit in int64),
 * and the sizes are derived with checked arithmetic, so that every input position
 * oy * stride + ky * dilation stays below the padded input size, every position
 * y + padding - ky * dilation of a transposed sum stays in int64, and every element offset, a sum
 * of coordinate x stride terms with each coordinate inside its tensor's shape, stays in range.
 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ref.h"

/* The defaults of the per-dimension attributes (ref_per_dim): 0 or 1 in every dimension. */
static const int64_t conv_zeros[2] = {0, 0}, conv_ones[2] = {1, 1};

/* ---- Helpers ---------------------------------------------------------------------------------- */

/* The call has two inputs (and an optional third, the bias, when `bias`) and one output;
 * `inputs` names them for the message. */
static AnyaccelStatus conv_arity(const RefCall *c, int bias, const char *inputs) {
    if (c->num_inputs < 2 || c->num_inputs > (bias ? 3u : 2u) || c->num_outputs != 1)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected %s, and one output", c->op, c->num_inputs,
                           c->num_outputs, inputs);
    return ANYACCEL_OK;
}

/* The optional bias of a call (its third input), or NULL. */
static const RefTensor *conv_bias(const RefCall *c) {
    return c->num_inputs > 2 && c->inputs[2].present ? &c->inputs[2] : NULL;
}

/* ---- The geometry of a convolution ------------------------------------------------------------ */

/* The geometry of a forward convolution, lifted to two spatial dimensions (a 1-d one has a height
 * of 1, a kernel height of 1, stride and dilation 1 and no padding along it): x [n, c, in],
 * weight [o, cg, k], out [n, o, out], with cg = c / groups and og = o / groups. */
typedef struct {
    int64_t n, c, o, groups, cg, og;
    int64_t in[2], k[2], out[2], stride[2], pad[2], dil[2];
    /* The strides of x, weight and out over [batch/out channel, channel, height, width]. */
    int64_t xs[4], ws[4], os[4];
} ConvGeom;

/* The shapes of a geometry's three tensors. */
enum { GEOM_X, GEOM_WEIGHT, GEOM_OUT };

static const char *const dim_names[2][2] = {{"length", "length"}, {"height", "width"}};

/* The shape of tensor `which` (GEOM_*) of a geometry, of rank spatial + 2. */
static void geom_shape(const ConvGeom *g, int spatial, int which, int64_t *shape) {
    const int64_t *sizes = which == GEOM_X ? g->in : which == GEOM_WEIGHT ? g->k : g->out;
    shape[0] = which == GEOM_WEIGHT ? g->o : g->n;
    shape[1] = which == GEOM_X ? g->c : which == GEOM_WEIGHT ? g->cg : g->o;
    for (int d = 0; d < spatial; d++) shape[2 + d] = sizes[2 - spatial + d];
}

/* The attributes groups, stride, padding and dilation, lifted into g; every size of g is set
 * to 1. */
static AnyaccelStatus conv_attrs(const RefCall *c, int spatial, ConvGeom *g) {
    int64_t groups = 1;
    if (ref_attr_int(c, "groups", &groups) < 0) return REF_INVALID("%s: attribute `groups` must be an Int", c->op);
    if (groups < 1) return REF_INVALID("%s: groups is %lld, expected >= 1", c->op, (long long)groups);
    int64_t stride[2], pad[2], dil[2];
    AnyaccelStatus st;
    if ((st = ref_per_dim(c, "stride", spatial, conv_ones, 1, 0, 0, stride)) ||
        (st = ref_per_dim(c, "padding", spatial, conv_zeros, 0, 0, 0, pad)) ||
        (st = ref_per_dim(c, "dilation", spatial, conv_ones, 1, 0, 0, dil)))
        return st;
    g->groups = groups;
    int first = 2 - spatial;
    for (int d = 0; d < 2; d++) {
        g->in[d] = g->k[d] = g->out[d] = 1;
        g->stride[d] = d < first ? 1 : stride[d - first];
        g->pad[d] = d < first ? 0 : pad[d - first];
        g->dil[d] = d < first ? 1 : dil[d - first];
    }
    return ANYACCEL_OK;
}

/*
 * The forward geometry of an input of shape xshape and a weight of shape wshape (both of rank
 * spatial + 2; xname and wname name them in messages), with the attributes already in g: the
 * channel counts, the kernel and input sizes, and the output sizes
 * floor((in + 2 pad - (dil (k - 1) + 1)) / stride) + 1.
 */
static AnyaccelStatus conv_shapes(const char *op, int spatial, const char *xname, const int64_t *xshape,
                                  const char *wname, const int64_t *wshape, ConvGeom *g) {
    const int rank = spatial + 2, first = 2 - spatial;
    const int64_t groups = g->groups;
    g->n = xshape[0];
    g->c = xshape[1];
    g->o = wshape[0];
    g->cg = wshape[1];
    if (g->c % groups != 0 || g->c / groups != g->cg) {
        if (g->c % groups == 0)
            return REF_INVALID("%s: %s has %lld channels and %s has shape %s (%lld per group): with groups = "
                               "%lld, weight.shape[1] must be C / groups = %lld",
                               op, xname, (long long)g->c, wname, ref_shape_str(rank, wshape).s, (long long)g->cg,
                               (long long)groups, (long long)(g->c / groups));
        return REF_INVALID("%s: %s has %lld channels, which groups = %lld does not divide (%s has shape %s)", op,
                           xname, (long long)g->c, (long long)groups, wname, ref_shape_str(rank, wshape).s);
    }
    if (g->o % groups != 0)
        return REF_INVALID("%s: %s has %lld output channels, expected a multiple of groups = %lld", op, wname,
                           (long long)g->o, (long long)groups);
    g->og = g->o / groups;
    for (int d = first; d < 2; d++) {
        const char *dim = dim_names[spatial - 1][d];
        g->in[d] = xshape[2 + d - first];
        g->k[d] = wshape[2 + d - first];
        if (g->k[d] == 0)
            return REF_INVALID("%s: %s has shape %s, expected kernel sizes >= 1", op, wname,
                               ref_shape_str(rank, wshape).s);
        int64_t padded, extent;
        if (!ref_mul_ok(g->pad[d], 2, &padded) || !ref_add_ok(padded, g->in[d], &padded) ||
            !ref_mul_ok(g->dil[d], g->k[d] - 1, &extent) || !ref_add_ok(extent, 1, &extent))
            return REF_INVALID("%s: the output size along the %s overflows int64", op, dim);
        if (extent > padded)
            return REF_INVALID("%s: the kernel spans %lld (dilation %lld x (size %lld - 1) + 1) but the padded "
                               "input %s is %lld (%lld + 2 x %lld): the output would be empty",
                               op, (long long)extent, (long long)g->dil[d], (long long)g->k[d], dim,
                               (long long)padded, (long long)g->in[d], (long long)g->pad[d]);
        g->out[d] = (padded - extent) / g->stride[d] + 1;
    }
    return ANYACCEL_OK;
}

/* bias, when present, has shape [channels] (one per output channel). */
static AnyaccelStatus check_bias(const char *op, const RefTensor *bias, int64_t channels) {
    if (bias && !(bias->ndim == 1 && bias->shape[0] == channels))
        return REF_INVALID("%s: bias has shape %s, expected [%lld] (one per output channel)", op,
                           ref_shape_str(bias->ndim, bias->shape).s, (long long)channels);
    return ANYACCEL_OK;
}

/* ---- conv1d, conv2d --------------------------------------------------------------------------- */

static AnyaccelStatus conv_geom(const RefCall *c, int spatial, ConvGeom *g) {
    const char *op = c->op;
    const int rank = spatial + 2;
    AnyaccelStatus st;
    if ((st = conv_arity(c, 1, "x, weight and an optional bias"))) return st;
    const RefTensor *x = &c->inputs[0], *w = &c->inputs[1], *out = &c->outputs[0], *bias = conv_bias(c);
    static const char *const names[4] = {"x", "weight", "bias", "the output"};
    const RefTensor *const tensors[4] = {x, w, bias, out};
    if ((st = ref_check_floats(op, 4, names, tensors)) ||
        (st = ref_check_rank(op, "x", x, rank, spatial == 1 ? "[N, C, L]" : "[N, C, H, W]")) ||
        (st = ref_check_rank(op, "weight", w, rank, spatial == 1 ? "[O, C/groups, K]" : "[O, C/groups, KH, KW]")) ||
        (st = conv_attrs(c, spatial, g)) || (st = conv_shapes(op, spatial, "x", x->shape, "weight", w->shape, g)) ||
        (st = check_bias(op, bias, g->o)))
        return st;
    int64_t expect[4];
    geom_shape(g, spatial, GEOM_OUT, expect);
    if ((st = ref_check_shape(op, "the output", out, rank, expect, ""))) return st;
    ref_strides4(x, spatial, g->xs);
    ref_strides4(w, spatial, g->ws);
    ref_strides4(out, spatial, g->os);
    return ANYACCEL_OK;
}

/*
 * The window sum of output element (n, oc, oy, ox), without the bias: the sum over
 * ci < C/groups, ky, kx of
 * x[n, g * C/groups + ci, oy * sh + ky * dh - ph, ox * sw + kx * dw - pw] * weight[oc, ci, ky, kx]
 * with g = oc / (O/groups); input positions outside the image add nothing (zero padding).
 * Accumulated in f32, or with `wide` in f64 (products and sums exact up to the f64 rounding).
 * oy * sh + ky * dh stays below the padded input size, which fits in int64: see conv_shapes.
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
    const RefTensor *x = &c->inputs[0], *w = &c->inputs[1], *out = &c->outputs[0], *bias = conv_bias(c);
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

/* ---- The transposed sum: conv_transpose1d/2d, conv1d/2d_backward_input ----------------------- */

/*
 * The gradient of a convolution's output `src` (shape [N, O, out]) carried back to element
 * (n, c, y, x) of its input: the sum over the O/groups output channels oc of c's group
 * g = c / (C/groups), ky and kx with oy = (y + ph - ky * dh) / sh an integer in [0, out[0]) and ox
 * likewise, of src[n, oc, oy, ox] * weight[oc, c - g * C/groups, ky, kx], in f64. Positions that
 * no window reaches add nothing. y + ph and ky * dh fit in int64 (see conv_shapes and
 * transpose_geom), and so does their difference.
 */
static double transposed_sum(const ConvGeom *g, const RefTensor *src, const RefTensor *w, int64_t n, int64_t c,
                             int64_t y, int64_t x) {
    const int64_t grp = c / g->cg, ci = c - grp * g->cg;
    double acc = 0.0;
    for (int64_t oc = grp * g->og; oc < (grp + 1) * g->og; oc++) {
        const int64_t sb = n * g->os[0] + oc * g->os[1];
        const int64_t wb = oc * g->ws[0] + ci * g->ws[1];
        for (int64_t ky = 0; ky < g->k[0]; ky++) {
            const int64_t ty = y + g->pad[0] - ky * g->dil[0];
            if (ty < 0) break; /* and so for every larger ky */
            if (ty % g->stride[0] != 0 || ty / g->stride[0] >= g->out[0]) continue;
            const int64_t oy = ty / g->stride[0];
            for (int64_t kx = 0; kx < g->k[1]; kx++) {
                const int64_t tx = x + g->pad[1] - kx * g->dil[1];
                if (tx < 0) break;
                if (tx % g->stride[1] != 0 || tx / g->stride[1] >= g->out[1]) continue;
                const int64_t ox = tx / g->stride[1];
                acc += ref_at(src, sb + oy * g->os[2] + ox * g->os[3]) * ref_at(w, wb + ky * g->ws[2] + kx * g->ws[3]);
            }
        }
    }
    return acc;
}

/* Every element of `dst` (the convolution's input, strides g->xs) set to bias[c] (0 without) plus
 * the transposed sum of `src`, rounded once. */
static void transposed_run(const ConvGeom *g, const RefTensor *src, const RefTensor *w, const RefTensor *bias,
                           const RefTensor *dst) {
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t c = 0; c < g->c; c++) {
            const double b = bias ? ref_at(bias, c * bias->strides[0]) : 0.0;
            for (int64_t y = 0; y < g->in[0]; y++)
                for (int64_t x = 0; x < g->in[1]; x++)
                    ref_put(dst, n * g->xs[0] + c * g->xs[1] + y * g->xs[2] + x * g->xs[3],
                            b + transposed_sum(g, src, w, n, c, y, x));
        }
}

/*
 * The geometry of conv_transpose: the convolution whose input is the transpose's output
 * [N, C_out, out] and whose output is the transpose's x [N, C_in, in], with the same weight
 * [C_in, C_out/groups, k] (O = C_in). Each output size is
 * (in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1.
 */
static AnyaccelStatus transpose_geom(const RefCall *c, int spatial, ConvGeom *g) {
    const char *op = c->op;
    const int rank = spatial + 2, first = 2 - spatial;
    AnyaccelStatus st;
    if ((st = conv_arity(c, 1, "x, weight and an optional bias"))) return st;
    const RefTensor *x = &c->inputs[0], *w = &c->inputs[1], *out = &c->outputs[0], *bias = conv_bias(c);
    static const char *const names[4] = {"x", "weight", "bias", "the output"};
    const RefTensor *const tensors[4] = {x, w, bias, out};
    int64_t opad[2];
    if ((st = ref_check_floats(op, 4, names, tensors)) ||
        (st = ref_check_rank(op, "x", x, rank, spatial == 1 ? "[N, C_in, L]" : "[N, C_in, H, W]")) ||
        (st = ref_check_rank(op, "weight", w, rank,
                         spatial == 1 ? "[C_in, C_out/groups, K]" : "[C_in, C_out/groups, KH, KW]")) ||
        (st = conv_attrs(c, spatial, g)) ||
        (st = ref_per_dim(c, "output_padding", spatial, conv_zeros, 0, 0, 0, opad)))
        return st;

    const int64_t groups = g->groups;
    g->n = x->shape[0];
    g->o = x->shape[1];
    g->cg = w->shape[1];
    if (w->shape[0] != g->o)
        return REF_INVALID("%s: x has %lld channels but weight has shape %s: expected weight.shape[0] = C_in = %lld",
                           op, (long long)g->o, ref_shape_str(w->ndim, w->shape).s, (long long)g->o);
    if (g->o % groups != 0)
        return REF_INVALID("%s: x has %lld channels, which groups = %lld does not divide", op, (long long)g->o,
                           (long long)groups);
    g->og = g->o / groups;
    if (!ref_mul_ok(g->cg, groups, &g->c))
        return REF_INVALID("%s: the output channels, weight.shape[1] %lld x groups %lld, overflow int64", op,
                           (long long)g->cg, (long long)groups);
    for (int d = first; d < 2; d++) {
        const char *dim = dim_names[spatial - 1][d];
        const int64_t s = g->stride[d], dl = g->dil[d], p = g->pad[d], op_d = opad[d - first];
        g->out[d] = x->shape[2 + d - first];
        g->k[d] = w->shape[2 + d - first];
        if (g->out[d] == 0)
            return REF_INVALID("%s: x has shape %s, expected spatial sizes >= 1", op,
                               ref_shape_str(x->ndim, x->shape).s);
        if (g->k[d] == 0)
            return REF_INVALID("%s: weight has shape %s, expected kernel sizes >= 1", op,
                               ref_shape_str(w->ndim, w->shape).s);
        const int64_t most = s > dl ? s : dl;
        if (op_d >= most)
            return REF_INVALID("%s: output_padding is %lld along the %s, expected less than max(stride %lld, "
                               "dilation %lld) = %lld",
                               op, (long long)op_d, dim, (long long)s, (long long)dl, (long long)most);
        /* size = A - 2 p with A = (in - 1) * s + dl * (k - 1) + output_padding + 1 in int64, so
         * that every y + p with y < size is below A - p and fits too. */
        int64_t size, extent, twice;
        if (!ref_mul_ok(g->out[d] - 1, s, &size) || !ref_mul_ok(dl, g->k[d] - 1, &extent) ||
            !ref_add_ok(size, extent, &size) || !ref_add_ok(size, op_d + 1, &size) || !ref_mul_ok(p, 2, &twice))
            return REF_INVALID("%s: the output size along the %s overflows int64", op, dim);
        size -= twice;
        if (size < 1)
            return REF_INVALID("%s: the output %s would be %lld ((%lld - 1) x stride %lld - 2 x padding %lld + "
                               "dilation %lld x (kernel %lld - 1) + output_padding %lld + 1): the output would be "
                               "empty",
                               op, dim, (long long)size, (long long)g->out[d], (long long)s, (long long)p,
                               (long long)dl, (long long)g->k[d], (long long)op_d);
        g->in[d] = size;
    }
    if ((st = check_bias(op, bias, g->c))) return st;
    int64_t expect[4];
    geom_shape(g, spatial, GEOM_X, expect);
    if ((st = ref_check_shape(op, "the output", out, rank, expect, ""))) return st;
    ref_strides4(out, spatial, g->xs);
    ref_strides4(w, spatial, g->ws);
    ref_strides4(x, spatial, g->os);
    return ANYACCEL_OK;
}

static AnyaccelStatus op_conv_transpose(const RefCall *c, int spatial) {
    ConvGeom g;
    AnyaccelStatus st = transpose_geom(c, spatial, &g);
    if (st) return st;
    transposed_run(&g, &c->inputs[0], &c->inputs[1], conv_bias(c), &c->outputs[0]);
    return ANYACCEL_OK;
}

/* conv*_backward_input(grad, weight) -> dx: the transposed sum of grad into a tensor of shape
 * input_size, the forward convolution of an x of that shape with this weight. */
static AnyaccelStatus op_conv_backward_input(const RefCall *c, int spatial) {
    const char *op = c->op;
    const int rank = spatial + 2;
    AnyaccelStatus st;
    if ((st = conv_arity(c, 0, "grad and weight"))) return st;
    const RefTensor *grad = &c->inputs[0], *w = &c->inputs[1], *dx = &c->outputs[0];
    static const char *const names[3] = {"grad", "weight", "dx"};
    const RefTensor *const tensors[3] = {grad, w, dx};
    ConvGeom g;
    int64_t input_size[4];
    if ((st = ref_check_floats(op, 3, names, tensors)) ||
        (st = ref_check_rank(op, "weight", w, rank, spatial == 1 ? "[O, C/groups, K]" : "[O, C/groups, KH, KW]")) ||
        (st = ref_shape_attr(c, "input_size", rank, spatial == 1 ? "[N, C, L]" : "[N, C, H, W]", input_size)) ||
        (st = conv_attrs(c, spatial, &g)) ||
        (st = conv_shapes(op, spatial, "x (input_size)", input_size, "weight", w->shape, &g)))
        return st;
    int64_t expect[4];
    char why[sizeof(RefShapeStr) + 64];
    geom_shape(&g, spatial, GEOM_OUT, expect);
    snprintf(why, sizeof why, " (conv%dd's output for input_size %s)", spatial, ref_list_str(rank, input_size).s);
    if ((st = ref_check_shape(op, "grad", grad, rank, expect, why)) ||
        (st = ref_check_shape(op, "dx", dx, rank, input_size, " (input_size)")))
        return st;
    ref_strides4(dx, spatial, g.xs);
    ref_strides4(w, spatial, g.ws);
    ref_strides4(grad, spatial, g.os);
    transposed_run(&g, grad, w, NULL, dx);
    return ANYACCEL_OK;
}

/* ---- conv1d_backward_weight, conv2d_backward_weight ------------------------------------------ */

/*
 * dweight[oc, ci, ky, kx]: the sum over n, oy, ox of
 * grad[n, oc, oy, ox] * x[n, g * C/groups + ci, oy * sh + ky * dh - ph, ox * sw + kx * dw - pw]
 * with g = oc / (O/groups), input positions outside the image adding nothing; in f64.
 * oy * sh + ky * dh stays below the padded input size (grad has the forward output's shape).
 */
static double weight_sum(const ConvGeom *g, const RefTensor *grad, const RefTensor *x, int64_t oc, int64_t ci,
                         int64_t ky, int64_t kx) {
    const int64_t c = (oc / g->og) * g->cg + ci;
    double acc = 0.0;
    for (int64_t n = 0; n < g->n; n++) {
        const int64_t gb = n * g->os[0] + oc * g->os[1];
        const int64_t xb = n * g->xs[0] + c * g->xs[1];
        for (int64_t oy = 0; oy < g->out[0]; oy++) {
            const int64_t iy = oy * g->stride[0] + ky * g->dil[0] - g->pad[0];
            if (iy < 0 || iy >= g->in[0]) continue;
            for (int64_t ox = 0; ox < g->out[1]; ox++) {
                const int64_t ix = ox * g->stride[1] + kx * g->dil[1] - g->pad[1];
                if (ix < 0 || ix >= g->in[1]) continue;
                acc += ref_at(grad, gb + oy * g->os[2] + ox * g->os[3]) * ref_at(x, xb + iy * g->xs[2] + ix * g->xs[3]);
            }
        }
    }
    return acc;
}

/* conv*_backward_weight(grad, x) -> dweight of shape weight_size. */
static AnyaccelStatus op_conv_backward_weight(const RefCall *c, int spatial) {
    const char *op = c->op;
    const int rank = spatial + 2;
    AnyaccelStatus st;
    if ((st = conv_arity(c, 0, "grad and x"))) return st;
    const RefTensor *grad = &c->inputs[0], *x = &c->inputs[1], *dw = &c->outputs[0];
    static const char *const names[3] = {"grad", "x", "dweight"};
    const RefTensor *const tensors[3] = {grad, x, dw};
    ConvGeom g;
    int64_t weight_size[4];
    if ((st = ref_check_floats(op, 3, names, tensors)) ||
        (st = ref_check_rank(op, "x", x, rank, spatial == 1 ? "[N, C, L]" : "[N, C, H, W]")) ||
        (st = ref_shape_attr(c, "weight_size", rank, spatial == 1 ? "[O, C/groups, K]" : "[O, C/groups, KH, KW]",
                         weight_size)) ||
        (st = conv_attrs(c, spatial, &g)) ||
        (st = conv_shapes(op, spatial, "x", x->shape, "weight (weight_size)", weight_size, &g)))
        return st;
    int64_t expect[4];
    char why[2 * sizeof(RefShapeStr) + 64];
    geom_shape(&g, spatial, GEOM_OUT, expect);
    snprintf(why, sizeof why, " (conv%dd's output for x %s and weight_size %s)", spatial,
             ref_shape_str(rank, x->shape).s, ref_list_str(rank, weight_size).s);
    if ((st = ref_check_shape(op, "grad", grad, rank, expect, why)) ||
        (st = ref_check_shape(op, "dweight", dw, rank, weight_size, " (weight_size)")))
        return st;
    ref_strides4(x, spatial, g.xs);
    ref_strides4(dw, spatial, g.ws);
    ref_strides4(grad, spatial, g.os);
    for (int64_t oc = 0; oc < g.o; oc++)
        for (int64_t ci = 0; ci < g.cg; ci++)
            for (int64_t ky = 0; ky < g.k[0]; ky++)
                for (int64_t kx = 0; kx < g.k[1]; kx++)
                    ref_put(dw, oc * g.ws[0] + ci * g.ws[1] + ky * g.ws[2] + kx * g.ws[3],
                            weight_sum(&g, grad, x, oc, ci, ky, kx));
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_conv(const RefCall *c) {
    static const struct {
        const char *name;
        int spatial;
        AnyaccelStatus (*run)(const RefCall *c, int spatial);
    } ops[] = {
        {"conv1d", 1, op_conv},
        {"conv2d", 2, op_conv},
        {"conv_transpose1d", 1, op_conv_transpose},
        {"conv_transpose2d", 2, op_conv_transpose},
        {"conv1d_backward_input", 1, op_conv_backward_input},
        {"conv2d_backward_input", 2, op_conv_backward_input},
        {"conv1d_backward_weight", 1, op_conv_backward_weight},
        {"conv2d_backward_weight", 2, op_conv_backward_weight},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(c->op, ops[i].name) == 0) return ops[i].run(c, ops[i].spatial);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
