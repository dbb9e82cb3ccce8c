/*
 * Batch normalisation (docs/ops.md, section 8.15): batch_norm, as ATen's native_batch_norm
 * (out, save_mean, save_invstd), and its gradient batch_norm_backward, as ATen's
 * native_batch_norm_backward.
 *
 *   batch_norm:          x [N, C, *] (rank >= 2), running_mean? [C], running_var? [C],
 *                        weight? [C], bias? [C] -> out [N, C, *], mean [C], invstd [C]
 *                                                                  (training = 0 or 1, eps)
 *   batch_norm_backward: grad [N, C, *], x [N, C, *], mean [C], invstd [C], weight? [C]
 *                        -> dx [N, C, *], dweight [C], dbias [C]       (training = 0 or 1)
 *
 * training = 0: mean = running_mean and invstd = 1 / sqrt(running_var + eps) (both running
 * statistics required). training = 1: per channel, over its N x prod(spatial) elements, the mean
 * and the biased variance (divided by the count), invstd = 1 / sqrt(var + eps); the running
 * statistics are ignored (ops do not write their inputs). Then
 * out = (x - mean) * invstd * weight[c] + bias[c] (weight 1, bias 0 when absent).
 *
 * The gradient takes the mean and invstd that batch_norm used; with xhat = (x - mean) * invstd
 * and dxhat = grad * weight[c], per channel: dx = invstd * (dxhat - mean(dxhat) -
 * xhat * mean(dxhat * xhat)) in training (the statistics depended on x), dx = invstd * dxhat
 * otherwise; dweight[c] = the sum of grad * xhat, dbias[c] = the sum of grad.
 *
 * As group_norm (ops_group_norm.c), everything accumulates in double and each output is rounded
 * once to its dtype: an Inf or NaN in a channel makes its mean, invstd and outputs NaN, and a
 * constant channel gives 0 (+ bias) when eps > 0, NaN when eps = 0 (0 * Inf).
 *
 * A channel is a group (norm.c), walking its samples and spatial positions of x and the other
 * tensors through their strides. ref_check_tensor has checked that every element count and
 * element offset of each tensor fits in int64, so no offset or count computed below leaves int64
 * (sizes are multiplied only once numel(x) > 0, when their product divides it).
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ref.h"

/* ---- batch_norm ------------------------------------------------------------------------------- */

/* Inference: the mean and invstd of channel ch, from the running statistics. */
static void running_stats(const RefTensor *rm, const RefTensor *rv, double eps, int64_t ch, double *mean,
                          double *invstd) {
    *mean = ref_at(rm, ch * rm->strides[0]);
    *invstd = 1.0 / sqrt(ref_at(rv, ch * rv->strides[0]) + eps);
}

static AnyaccelStatus op_batch_norm(const RefCall *c) {
    const char *op = c->op;
    if (c->num_inputs < 1 || c->num_inputs > 5 || c->num_outputs != 3 || !c->inputs[0].present)
        return REF_INVALID("%s: %zu inputs and %zu outputs given, expected x, optional running_mean, running_var, "
                           "weight and bias, and three outputs (out, mean, invstd)",
                           op, c->num_inputs, c->num_outputs);
    const RefTensor *in[5] = {&c->inputs[0], NULL, NULL, NULL, NULL};
    for (size_t i = 1; i < c->num_inputs; i++) in[i] = c->inputs[i].present ? &c->inputs[i] : NULL;
    const RefTensor *x = in[0], *rm = in[1], *rv = in[2], *w = in[3], *b = in[4];
    const RefTensor *out = &c->outputs[0], *mean_out = &c->outputs[1], *invstd_out = &c->outputs[2];
    const char *const names[8] = {"x", "out", "mean", "invstd", "running_mean", "running_var", "weight", "bias"};
    const RefTensor *const t[8] = {x, out, mean_out, invstd_out, rm, rv, w, b};
    int training = 0;
    double eps = 1e-5;
    AnyaccelStatus st;
    if ((st = ref_check_floats(op, 8, names, t)) || (st = ref_check_min_rank(op, "x", x, 2, "[N, C, *]")) ||
        (st = ref_check_shape(op, "out", out, x->ndim, x->shape, "")) ||
        (st = ref_check_channels(op, 6, names + 2, t + 2, x->shape[1], " (one per channel)")) ||
        (st = ref_flag_attr(c, "training", &training)) || (st = ref_eps_attr(c, &eps)))
        return st;
    if (!training && (!rm || !rv))
        return REF_INVALID("%s: training is 0 but %s is missing: inference normalises with the running statistics",
                           op, !rm ? "running_mean" : "running_var");
    if (training && x->shape[1] > 0 && ref_numel(x) == 0)
        return REF_INVALID("%s: x has shape %s: training needs at least one value per channel", op,
                           ref_shape_str(x->ndim, x->shape).s);

    /* Inference: the statistics of every channel, even when x is empty. */
    for (int64_t ch = 0; !training && ch < x->shape[1]; ch++) {
        double mean, invstd;
        running_stats(rm, rv, eps, ch, &mean, &invstd);
        ref_put(mean_out, ch * mean_out->strides[0], mean);
        ref_put(invstd_out, ch * invstd_out->strides[0], invstd);
    }
    RefNormGroups channels;
    ref_norm_groups_init(&channels, REF_NORM_CHANNELS, 2, t, 0);
    while (ref_norm_groups_next(&channels)) {
        const int64_t ch = channels.group.channel;
        double mean, invstd;
        if (training) {
            double denom;
            ref_group_stats(&channels.group, x, 0, eps, &mean, &denom);
            invstd = 1.0 / denom;
            ref_put(mean_out, ch * mean_out->strides[0], mean);
            ref_put(invstd_out, ch * invstd_out->strides[0], invstd);
        } else {
            running_stats(rm, rv, eps, ch, &mean, &invstd);
        }
        ref_group_apply(&channels.group, x, out, w, b, mean, invstd, 0);
    }
    return ANYACCEL_OK;
}

/* ---- batch_norm_backward ---------------------------------------------------------------------- */

static AnyaccelStatus op_batch_norm_backward(const RefCall *c) {
    RefNormGrad g;
    int training = 0;
    AnyaccelStatus st;
    if ((st = ref_norm_grad_check(c, 1, 1, 1, &g)) || (st = ref_flag_attr(c, "training", &training))) return st;
    return ref_norm_grad_run(c->op, &g, REF_NORM_CHANNELS, 0, 0, 0.0,
                             training ? REF_NORM_MEAN_AND_SCALE : REF_NORM_NONE);
}

AnyaccelStatus ref_op_batch_norm(const RefCall *c) {
    if (strcmp(c->op, "batch_norm") == 0) return op_batch_norm(c);
    if (strcmp(c->op, "batch_norm_backward") == 0) return op_batch_norm_backward(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this family", c->op);
}
