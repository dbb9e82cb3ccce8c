/*
 * Op calls: which calls this plugin runs, the copy of a call that a stream runs after
 * op_execute returned, attributes, and strided iteration.
 */

#include <stdlib.h>
#include <string.h>

#include "ref.h"

const char *const ref_native_ops[] = {
    "fill", "arange", "copy", "cast", "concat", "index_select", "embedding", "gather",
    "add", "sub", "mul", "div", "maximum", "minimum", "pow", "atan2", "remainder", "fmod",
    "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "where",
    "neg", "abs", "relu", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
    "silu", "gelu", "erf", "floor", "ceil", "round", "trunc", "sign", "reciprocal", "clamp",
    "log1p", "expm1", "tan", "atan", "asin", "acos", "sinh", "cosh", "asinh", "acosh", "atanh",
    "hardswish", "bitwise_not",
    "isnan", "isinf", "isfinite", "logical_not", "softplus", "leaky_relu", "elu",
    "relu_backward", "sigmoid_backward", "tanh_backward", "silu_backward", "gelu_backward",
    "softplus_backward", "elu_backward", "leaky_relu_backward",
    "softmax_backward", "log_softmax_backward", "embedding_backward",
    "sum", "mean", "max", "min", "argmax", "argmin", "cumsum", "topk",
    "prod", "any", "all", "logsumexp", "var", "std", "cumprod", "cummax", "cummin", "sort", "argsort",
    "softmax", "log_softmax", "layer_norm", "rms_norm", "matmul", "rope", "attention",
    "attention_backward", "cross_entropy", "cross_entropy_backward",
    "pad", "flip", "roll", "tril", "triu", "repeat_interleave", "one_hot", "scatter", "scatter_add",
    "index_add", "masked_fill", "uniform", "normal", "bernoulli", "dropout", "conv1d", "conv2d",
    "conv_transpose1d", "conv_transpose2d", "conv1d_backward_input", "conv2d_backward_input",
    "conv1d_backward_weight", "conv2d_backward_weight",
    "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool2d", "interpolate",
    "max_pool1d_backward", "max_pool2d_backward", "avg_pool1d_backward", "avg_pool2d_backward",
    "adaptive_avg_pool2d_backward", "interpolate_backward", "adaptive_avg_pool3d",
    "adaptive_avg_pool3d_backward",
    "group_norm", "batch_norm", "layer_norm_backward", "rms_norm_backward", "group_norm_backward",
    "batch_norm_backward", "quantize", "dequantize", "matmul_wq", "matmul_i8", NULL,
};

typedef AnyaccelStatus (*RefFamily)(const RefCall *c);

/* The family that runs `op`, or NULL. */
static RefFamily family_of(const char *op) {
    static const struct {
        const char *ops;
        RefFamily run;
    } families[] = {
        {" fill arange ", ref_op_creation},
        {" copy cast concat ", ref_op_movement},
        {" index_select embedding gather ", ref_op_indexing},
        {" add sub mul div maximum minimum pow atan2 remainder fmod bitwise_and bitwise_or "
         "bitwise_xor bitwise_left_shift bitwise_right_shift eq ne lt le gt ge logical_and "
         "logical_or logical_xor where neg abs relu exp log sqrt rsqrt sin cos tanh sigmoid "
         "silu gelu erf floor ceil round trunc sign reciprocal clamp log1p expm1 tan atan asin "
         "acos sinh cosh asinh acosh atanh hardswish bitwise_not isnan isinf isfinite logical_not softplus "
         "leaky_relu elu relu_backward sigmoid_backward tanh_backward silu_backward gelu_backward "
         "softplus_backward elu_backward leaky_relu_backward ",
         ref_op_elementwise},
        {" sum mean max min argmax argmin cumsum topk prod any all logsumexp var std cumprod cummax "
         "cummin sort argsort ",
         ref_op_reduction},
        {" softmax log_softmax layer_norm rms_norm matmul rope attention attention_backward softmax_backward "
         "log_softmax_backward cross_entropy cross_entropy_backward layer_norm_backward "
         "rms_norm_backward ",
         ref_op_nn},
        {" pad flip roll tril triu repeat_interleave one_hot scatter scatter_add index_add "
         "masked_fill embedding_backward ",
         ref_op_rearrange},
        {" uniform normal bernoulli dropout ", ref_op_random},
        {" conv1d conv2d conv_transpose1d conv_transpose2d conv1d_backward_input conv2d_backward_input "
         "conv1d_backward_weight conv2d_backward_weight ",
         ref_op_conv},
        {" max_pool1d max_pool2d avg_pool1d avg_pool2d max_pool1d_backward max_pool2d_backward "
         "avg_pool1d_backward avg_pool2d_backward ",
         ref_op_pool},
        {" adaptive_avg_pool2d interpolate adaptive_avg_pool2d_backward interpolate_backward "
         "adaptive_avg_pool3d adaptive_avg_pool3d_backward ",
         ref_op_resample},
        {" group_norm group_norm_backward ", ref_op_group_norm},
        {" batch_norm batch_norm_backward ", ref_op_batch_norm},
        {" quantize dequantize matmul_wq matmul_i8 ", ref_op_quant},
    };
    if (!op || !*op || strchr(op, ' ')) return NULL;
    char key[64];
    size_t n = strlen(op);
    if (n + 3 > sizeof key) return NULL;
    key[0] = ' ';
    memcpy(key + 1, op, n);
    key[n + 1] = ' ';
    key[n + 2] = '\0';
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (strstr(families[i].ops, key)) return families[i].run;
    return NULL;
}

static int tensor_ok(const AnyaccelTensor *t) {
    return t && t->buffer && t->ndim >= 0 && t->ndim <= REF_MAX_DIMS &&
           ref_dtype_of(t->dtype) != 0 && (t->ndim == 0 || (t->shape && t->strides));
}

int32_t ref_op_supported(const AnyaccelOpCall *call) {
    if (!call || !family_of(call->op)) return 0;
    for (size_t i = 0; i < call->num_inputs; i++)
        if (call->inputs[i] && !tensor_ok(call->inputs[i])) return 0;
    for (size_t i = 0; i < call->num_outputs; i++)
        if (!tensor_ok(call->outputs[i])) return 0;
    return 1;
}

static char *dup_str(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void copy_tensor(RefTensor *dst, const AnyaccelTensor *src) {
    memset(dst, 0, sizeof *dst);
    if (!src) return;
    dst->present = 1;
    dst->base = src->buffer->data ? src->buffer->data + src->byte_offset : NULL;
    dst->dtype = ref_dtype_of(src->dtype);
    dst->ndim = src->ndim;
    for (int d = 0; d < src->ndim; d++) {
        dst->shape[d] = src->shape[d];
        dst->strides[d] = src->strides[d];
    }
}

void ref_call_free(RefCall *c) {
    if (!c) return;
    free(c->op);
    free(c->inputs);
    free(c->outputs);
    for (size_t i = 0; i < c->num_attrs; i++) {
        free(c->attrs[i].name);
        free(c->attrs[i].ints);
        free(c->attrs[i].str);
    }
    free(c->attrs);
    free(c);
}

AnyaccelStatus ref_call_copy(const AnyaccelOpCall *call, RefCall **out) {
    if (!ref_op_supported(call))
        return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: this plugin does not run this call",
                         call && call->op ? call->op : "(no op)");
    RefCall *c = calloc(1, sizeof *c);
    if (!c) return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "op_execute: out of host memory");
    c->op = dup_str(call->op);
    c->num_inputs = call->num_inputs;
    c->num_outputs = call->num_outputs;
    c->num_attrs = call->num_attrs;
    c->inputs = calloc(call->num_inputs + 1, sizeof *c->inputs);
    c->outputs = calloc(call->num_outputs + 1, sizeof *c->outputs);
    c->attrs = calloc(call->num_attrs + 1, sizeof *c->attrs);
    if (!c->op || !c->inputs || !c->outputs || !c->attrs) goto oom;
    for (size_t i = 0; i < call->num_inputs; i++) copy_tensor(&c->inputs[i], call->inputs[i]);
    for (size_t i = 0; i < call->num_outputs; i++) copy_tensor(&c->outputs[i], call->outputs[i]);
    for (size_t i = 0; i < call->num_attrs; i++) {
        /* A later host's attributes may be larger: step by its struct_size. */
        const AnyaccelAttr *a = ANYACCEL_ARRAY_AT(call->attrs, AnyaccelAttr, i);
        RefAttr *r = &c->attrs[i];
        r->name = dup_str(a->name);
        r->kind = a->kind;
        r->int_value = a->int_value;
        r->float_value = a->float_value;
        if (!r->name) goto oom;
        if (a->kind == ANYACCEL_ATTR_INTS && a->ints_len > 0) {
            r->ints = malloc(a->ints_len * sizeof *r->ints);
            if (!r->ints) goto oom;
            memcpy(r->ints, a->ints, a->ints_len * sizeof *r->ints);
            r->ints_len = a->ints_len;
        }
        if (a->kind == ANYACCEL_ATTR_STR) {
            r->str = dup_str(a->str ? a->str : "");
            if (!r->str) goto oom;
        }
    }
    *out = c;
    return ANYACCEL_OK;
oom:
    ref_call_free(c);
    return ref_error(ANYACCEL_ERROR_OUT_OF_MEMORY, "op_execute: out of host memory");
}

AnyaccelStatus ref_call_run(const RefCall *c) {
    RefFamily run = family_of(c->op);
    if (!run) return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an op of this plugin", c->op);
    /* An op whose outputs are all empty writes nothing. */
    int any = c->num_outputs == 0;
    for (size_t i = 0; i < c->num_outputs; i++)
        if (ref_numel(&c->outputs[i]) > 0) any = 1;
    return any ? run(c) : ANYACCEL_OK;
}

/* ---- Attributes ---------------------------------------------------------------------------- */

const RefAttr *ref_attr(const RefCall *c, const char *name) {
    /* The host passes each name once; the last one wins all the same. */
    for (size_t i = c->num_attrs; i-- > 0;)
        if (c->attrs[i].name && strcmp(c->attrs[i].name, name) == 0) return &c->attrs[i];
    return NULL;
}

int ref_attr_int(const RefCall *c, const char *name, int64_t *out) {
    const RefAttr *a = ref_attr(c, name);
    if (!a) return 0;
    if (a->kind != ANYACCEL_ATTR_INT) return -1;
    *out = a->int_value;
    return 1;
}

int ref_attr_float(const RefCall *c, const char *name, double *out) {
    const RefAttr *a = ref_attr(c, name);
    if (!a) return 0;
    if (a->kind == ANYACCEL_ATTR_FLOAT)
        *out = a->float_value;
    else if (a->kind == ANYACCEL_ATTR_INT)
        *out = (double)a->int_value;
    else
        return -1;
    return 1;
}

int ref_attr_ints(const RefCall *c, const char *name, const int64_t **out, size_t *len) {
    const RefAttr *a = ref_attr(c, name);
    if (!a) return 0;
    if (a->kind == ANYACCEL_ATTR_INTS) {
        *out = a->ints;
        *len = a->ints_len;
    } else if (a->kind == ANYACCEL_ATTR_INT) {
        *out = &a->int_value;
        *len = 1;
    } else {
        return -1;
    }
    return 1;
}

const char *ref_attr_str(const RefCall *c, const char *name) {
    const RefAttr *a = ref_attr(c, name);
    return a && a->kind == ANYACCEL_ATTR_STR ? a->str : NULL;
}

/* ---- Layouts ------------------------------------------------------------------------------- */

int64_t ref_numel(const RefTensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

int64_t ref_offset_of(const RefTensor *t, int64_t linear) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t size = t->shape[d];
        if (size == 0) return 0;
        off += (linear % size) * t->strides[d];
        linear /= size;
    }
    return off;
}

unsigned char *ref_elem(const RefTensor *t, int64_t linear) {
    return t->base + ref_offset_of(t, linear) * (int64_t)ref_dtype_size(t->dtype);
}

RefTensor ref_broadcast(const RefTensor *t, int ndim, const int64_t *shape) {
    RefTensor b = *t;
    b.ndim = ndim;
    int extra = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        b.shape[d] = shape[d];
        if (d < extra || t->shape[d - extra] == 1)
            b.strides[d] = 0;
        else
            b.strides[d] = t->strides[d - extra];
    }
    return b;
}

int ref_axis(int64_t axis, int rank) {
    return (int)(axis < 0 ? axis + rank : axis);
}

void ref_iter_init(RefIter *it, int count, const RefTensor *const *tensors) {
    memset(it, 0, sizeof *it);
    it->count = count;
    it->ndim = tensors[0]->ndim;
    for (int d = 0; d < it->ndim; d++) it->shape[d] = tensors[0]->shape[d];
    for (int k = 0; k < count; k++)
        for (int d = 0; d < it->ndim; d++) it->strides[k][d] = tensors[k]->strides[d];
}

void ref_iter_next(RefIter *it) {
    for (int d = it->ndim - 1; d >= 0; d--) {
        it->index[d]++;
        for (int k = 0; k < it->count; k++) it->offset[k] += it->strides[k][d];
        if (it->index[d] < it->shape[d]) return;
        for (int k = 0; k < it->count; k++) it->offset[k] -= it->strides[k][d] * it->shape[d];
        it->index[d] = 0;
    }
}
