/*
 * Group normalisation (docs/ops.md, section 8.14): group_norm, as PyTorch's
 * torch.nn.functional.group_norm, and its gradient group_norm_backward, as ATen's
 * native_group_norm_backward.
 *
 *   group_norm:          x [N, C, *] (rank >= 2), weight? [C], bias? [C] -> out [N, C, *]
 *   group_norm_backward: grad [N, C, *], x [N, C, *], weight? [C] -> dx [N, C, *], dweight [C],
 *                        dbias [C]                                       (num_groups = G, eps)
 *
 * The C channels form G groups of C / G consecutive channels. For each (n, group), over its
 * C / G x prod(spatial) elements: mean and biased variance (divided by the count), then
 * y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c] (weight 1, bias 0 when absent). As
 * layer_norm (ops_nn.c), everything accumulates in double and each output is rounded once to
 * its dtype, so special values behave as there: an Inf or NaN in a group makes the whole group
 * NaN, and a constant group gives 0 (+ bias) when eps > 0, NaN when eps = 0 (0 / 0).
 *
 * The gradient recomputes each group's statistics from x; with r = 1 / sqrt(var + eps),
 * xhat = (x - mean) * r and dxhat = grad * weight[c]: dx = r * (dxhat - mean(dxhat) -
 * xhat * mean(dxhat * xhat)) over the group, dweight[c] = the sum of grad * xhat and
 * dbias[c] = the sum of grad over n and the spatial positions.
 *
 * A group (norm.c) walks the channels of a group and the spatial dimensions of x and the other
 * tensors through their strides. ref_check_tensor has checked that every element count and
 * element offset of each tensor fits in int64, so no offset or count computed below leaves int64.
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ref.h"

/* ---- Helpers ---------------------------------------------------------------------------------- */

/* The required Int attribute `num_groups` of a call on x [N, C, *]: a divisor of C, >= 1. */
static AnyaccelStatus groups_attr(const RefCall *c, const RefTensor *x, int64_t *groups) {
    *groups = 0;
    const int r = ref_attr_int(c, "num_groups", groups);
    if (r < 0) return REF_INVALID("%s: num_groups must be an Int", c->op);
    if (r == 0) return REF_INVALID("%s: num_groups is required", c->op);
    const int64_t channels = x->shape[1];
    if (*groups < 1 || channels % *groups != 0)
        return REF_INVALID("%s: num_groups is %lld, expected a divisor of C = %lld (>= 1)", c->op,
                           (long long)*groups, (long long)channels);
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
    const RefTensor *w = c->num_inputs > 1 && c->inputs[1].present ? &c->inputs[1] : NULL;
    const RefTensor *b = c->num_inputs > 2 && c->inputs[2].present ? &c->inputs[2] : NULL;
    const char *const names[4] = {"x", "the output", "weight", "bias"};
    const RefTensor *const t[4] = {x, out, w, b};
    int64_t groups;
    double eps = 1e-5;
    AnyaccelStatus st;
    if ((st = ref_check_floats(op, 4, names, t)) || (st = ref_check_min_rank(op, "x", x, 2, "[N, C, *]")) ||
        (st = ref_check_shape(op, "the output", out, x->ndim, x->shape, " (x's shape)")) ||
        (st = groups_attr(c, x, &groups)) || (st = ref_eps_attr(c, &eps)) ||
        (st = ref_check_channels(op, 2, names + 2, t + 2, x->shape[1], " (one per channel)")))
        return st;

    ref_norm_forward(REF_NORM_GROUPS, x, out, w, b, groups, 0, eps);
    return ANYACCEL_OK;
}

/* ---- group_norm_backward ---------------------------------------------------------------------- */

static AnyaccelStatus op_group_norm_backward(const RefCall *c) {
    RefNormGrad g;
    int64_t groups;
    double eps = 1e-5;
    AnyaccelStatus st;
    if ((st = ref_norm_grad_check(c, 1, 0, 1, &g)) || (st = groups_attr(c, g.x, &groups)) ||
        (st = ref_eps_attr(c, &eps)))
        return st;
    return ref_norm_grad_run(c->op, &g, REF_NORM_GROUPS, groups, 0, eps, REF_NORM_MEAN_AND_SCALE);
}

AnyaccelStatus ref_op_group_norm(const RefCall *c) {
    if (strcmp(c->op, "group_norm") == 0) return op_group_norm(c);
    if (strcmp(c->op, "group_norm_backward") == 0) return op_group_norm_backward(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
