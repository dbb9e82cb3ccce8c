/*
 * The reference plugin's internal declarations, shared by its source files:
 *
 *   plugin.c     the table: errors, the device, memory, streams (a worker thread each), events
 *   dtype.c      element loads and stores, f16/bf16 by bit work, the cast rules of docs/ops.md
 *   call.c       op_supported, the copy of an op call that a stream runs later, attributes,
 *                strided iteration
 *   util.c       helpers of the ops: checked int64 arithmetic, shapes and dtypes for messages
 *   norm.c       what the normalisations and their gradients share: checks, group walks and
 *                statistics, the gradient of a group
 *   ops_*.c      the ops of docs/ops.md by family
 */

#ifndef REF_H
#define REF_H

#include <stddef.h>
#include <stdint.h>

#include "anyaccel_plugin.h"

/* ---- Errors ----------------------------------------------------------------------------- */

/* Sets this thread's last_error message and returns `code`. */
AnyaccelStatus ref_error(AnyaccelStatus code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* This thread's last_error message. */
const char *ref_last_error(void);

/* ---- Memory ----------------------------------------------------------------------------- */

/* A buffer: host memory standing in for a device's. */
struct AnyaccelBuffer_ {
    unsigned char *data;
    uint64_t size;
};

/* ---- dtypes ------------------------------------------------------------------------------ */

/* Internal dtype numbers: anyaccel's codes (ANYACCEL_DTYPE_*), 0 for none. */
typedef int RefDType;

/* The dtype of a DLPack type, or 0 when it is not one of anyaccel's. */
RefDType ref_dtype_of(AnyaccelDataType t);
/* The dtype called `name` ("f32", "bool", ...), or 0. */
RefDType ref_dtype_named(const char *name);
/* Bytes per element. */
size_t ref_dtype_size(RefDType d);
/* f32, f16, bf16, f64. */
int ref_is_float(RefDType d);
/* The name of a dtype for messages ("f32", "bool", ...), "(none)" for 0 or an unknown one. */
const char *ref_dtype_name(RefDType d);

/* Element loads: a float dtype as its exact double; an integer dtype or bool as int64. */
double ref_load_f(RefDType d, const unsigned char *p);
int64_t ref_load_i(RefDType d, const unsigned char *p);
/* Any dtype as a double (integers above 2^53 rounded). */
double ref_load_as_double(RefDType d, const unsigned char *p);

/* Stores a double into a float dtype, rounded once to nearest even (overflow to +-Inf). */
void ref_store_f(RefDType d, unsigned char *p, double v);
/* Stores an int64 into an integer dtype, wrapped (bool: v != 0). */
void ref_store_i(RefDType d, unsigned char *p, int64_t v);
/* The cast rules of docs/ops.md: a double into any dtype (floats round, integers truncate and
 * saturate with NaN to 0, bool is v != 0), and an int64 into any dtype (floats round once from
 * the exact integer, integers wrap, bool is v != 0). */
void ref_store_cast_f(RefDType d, unsigned char *p, double v);
void ref_store_cast_i(RefDType d, unsigned char *p, int64_t v);

/* ---- Op calls ------------------------------------------------------------------------------ */

#define REF_MAX_DIMS 16

/* A tensor of a call, copied out of the host's descriptor. */
typedef struct RefTensor {
    int present;
    unsigned char *base; /* the buffer's first byte plus the tensor's byte offset */
    RefDType dtype;
    int ndim;
    int64_t shape[REF_MAX_DIMS];
    int64_t strides[REF_MAX_DIMS]; /* in elements */
} RefTensor;

/* An attribute of a call, copied. */
typedef struct RefAttr {
    char *name;
    int32_t kind;
    int64_t int_value;
    double float_value;
    int64_t *ints;
    size_t ints_len;
    char *str;
} RefAttr;

/* An op call, copied so that a stream can run it after op_execute returned. */
typedef struct RefCall {
    char *op;
    size_t num_inputs;
    RefTensor *inputs;
    size_t num_outputs;
    RefTensor *outputs;
    size_t num_attrs;
    RefAttr *attrs;
} RefCall;

/* The ops this plugin offers (NULL-terminated). */
extern const char *const ref_native_ops[];

/* 1 when the call is one this plugin runs. */
int32_t ref_op_supported(const AnyaccelOpCall *call);
/* Copies a call (the tensors' buffers stay alive until it has run). */
AnyaccelStatus ref_call_copy(const AnyaccelOpCall *call, RefCall **out);
void ref_call_free(RefCall *call);
/* Runs a copied call; on failure sets this thread's error and returns its code. */
AnyaccelStatus ref_call_run(const RefCall *call);

/* Attribute readers with the defaults of docs/ops.md. A Float attribute may come as an Int, an
 * Ints attribute as a single Int. They return 0 when the attribute is absent (and leave the
 * default in *out), 1 when it was read, -1 when it has the wrong kind. */
const RefAttr *ref_attr(const RefCall *c, const char *name);
int ref_attr_int(const RefCall *c, const char *name, int64_t *out);
int ref_attr_float(const RefCall *c, const char *name, double *out);
int ref_attr_ints(const RefCall *c, const char *name, const int64_t **out, size_t *len);
const char *ref_attr_str(const RefCall *c, const char *name);

/* Element count of a tensor. */
int64_t ref_numel(const RefTensor *t);
/* The element offset (in elements, from base) of the element with this row-major index. */
int64_t ref_offset_of(const RefTensor *t, int64_t linear);
/* The address of the element with this row-major index. */
unsigned char *ref_elem(const RefTensor *t, int64_t linear);
/* `t` seen with shape `shape` (rank >= t's), broadcast NumPy-style: its dimensions aligned at
 * the end, size-1 and missing ones given stride 0. */
RefTensor ref_broadcast(const RefTensor *t, int ndim, const int64_t *shape);
/* A normalised axis (negative counts from the end). */
int ref_axis(int64_t axis, int rank);

/* A strided iterator over up to 4 tensors of one shape, in row-major order. */
typedef struct RefIter {
    int ndim;
    int count;
    int64_t shape[REF_MAX_DIMS];
    int64_t strides[4][REF_MAX_DIMS];
    int64_t index[REF_MAX_DIMS];
    int64_t offset[4]; /* in elements */
} RefIter;

/* Starts an iteration over `count` tensors of the same (broadcast) shape. */
void ref_iter_init(RefIter *it, int count, const RefTensor *const *tensors);
/* Steps to the next element. */
void ref_iter_next(RefIter *it);

/* `name` is present, of a dtype in `dtypes` (a mask of ANYACCEL_DTYPE_BIT), with sizes >= 0, and
 * its element count and the byte offsets of its elements fit in int64; else InvalidArgument. */
AnyaccelStatus ref_check_tensor(const char *op, const char *name, const RefTensor *t, unsigned dtypes);
/* The call has `inputs` inputs and one output (ops_rearrange.c). */
AnyaccelStatus ref_check_arity(const RefCall *c, size_t inputs);

/* ---- Helpers of the ops (util.c) --------------------------------------------------------------- */

/* The dtype-mask bit of the dtype ANYACCEL_DTYPE_<name>, e.g. REF_DT(F32). */
#define REF_DT(name) ANYACCEL_DTYPE_BIT(ANYACCEL_DTYPE_##name)
/* Sets an InvalidArgument error with a printf-style message and returns its code. */
#define REF_INVALID(...) ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

/* *r = a * b for a, b >= 0; returns 0 (and leaves *r) when it leaves int64. */
int ref_mul_ok(int64_t a, int64_t b, int64_t *r);
/* *r = a + b; returns 0 (and leaves *r) when it leaves int64. */
int ref_add_ok(int64_t a, int64_t b, int64_t *r);

/* A shape or list of integers as `[2, 3]`, for messages. */
typedef struct RefShapeStr {
    char s[REF_MAX_DIMS * 22 + 4];
} RefShapeStr;

/* The first (at most REF_MAX_DIMS) sizes of a shape as `[2, 3]`. */
RefShapeStr ref_shape_str(int ndim, const int64_t *shape);
/* A list of integers as `[1, 2]` (its first REF_MAX_DIMS values). */
RefShapeStr ref_list_str(size_t len, const int64_t *v);
/* Writes a tensor's shape as "AxBxC" (or "scalar") into buf. */
void ref_dims_str(const RefTensor *t, char *buf, size_t len);

/*
 * The Ints attribute `name` of a convolution or pool as `spatial` values in v[0..spatial]: a
 * single value (or a single Int) is used for every dimension, as PyTorch's `_pair`; every value
 * must be at least `min`. Absent gives dflt[0..spatial], and so does an empty list when
 * `empty_is_absent` (a pool's `stride`: absent or empty means kernel_size); `required` makes an
 * absent attribute an error.
 */
AnyaccelStatus ref_per_dim(const RefCall *c, const char *name, int spatial, const int64_t *dflt, int64_t min,
                           int required, int empty_is_absent, int64_t *v);
/* A tensor of rank spatial + 2 (spatial 1 or 2): its strides over [batch, channel, height,
 * width], a 1-d tensor's height getting stride 0. */
void ref_strides4(const RefTensor *t, int spatial, int64_t *s);
/* The Flag attribute `name` (an Int, 0 or 1), `*out` holding its default. */
AnyaccelStatus ref_flag_attr(const RefCall *c, const char *name, int *out);
/* The required Ints attribute `name`, a shape of rank `rank` (`layout` names its dimensions, e.g.
 * "[N, C, H, W]") with sizes >= 0, in v[0..rank]. */
AnyaccelStatus ref_shape_attr(const RefCall *c, const char *name, int rank, const char *layout, int64_t *v);
/* The `count` tensors t[i] (named names[i]; NULL for an absent optional one) share the float
 * dtype (f32, f16 or bf16) of t[0] and pass ref_check_tensor. */
AnyaccelStatus ref_check_floats(const char *op, int count, const char *const *names, const RefTensor *const *t);
/* `name` has rank `rank` (`layout` names its dimensions). */
AnyaccelStatus ref_check_rank(const char *op, const char *name, const RefTensor *t, int rank, const char *layout);
/* `name` has shape expect[0..rank], whose element count must fit in int64; `why`, appended to
 * the message, says where that shape comes from ("" for nothing). */
AnyaccelStatus ref_check_shape(const char *op, const char *name, const RefTensor *t, int rank,
                               const int64_t *expect, const char *why);
/* The window of output (oy, ox) of an average, rows [rows[0], rows[1]) and columns
 * [cols[0], cols[1]) of the input plane, and its divisor (returned). */
typedef double (*RefWindowFn)(const void *ctx, int64_t oy, int64_t ox, int64_t *rows, int64_t *cols);
/* The averages of the pools: out[n, c, oy, ox] = (the sum of x[n, c] over the window of (oy, ox))
 * / its divisor, for n, c, oy, ox below shape[0..4]; xs and os are the strides of x and out over
 * [batch, channel, height, width]. Each sum is taken in f32 (f16 and bf16 widened exactly), and
 * where that is not finite again in f64, so that an intermediate overflow of f32 does not turn a
 * finite average into an infinity or an infinite one into NaN; the quotient is rounded once to
 * out's dtype. */
void ref_window_means(const RefTensor *x, const int64_t *xs, const RefTensor *out, const int64_t *os,
                      const int64_t *shape, RefWindowFn window, const void *ctx);

/* The float at element offset `off` (in elements, from base) of a float tensor, as its exact
 * double; and a double stored there, rounded once to t's dtype. In the header so that the ops'
 * inner loops inline them. */
static inline double ref_at(const RefTensor *t, int64_t off) {
    return ref_load_f(t->dtype, t->base + off * (int64_t)ref_dtype_size(t->dtype));
}
static inline void ref_put(const RefTensor *t, int64_t off, double v) {
    ref_store_f(t->dtype, t->base + off * (int64_t)ref_dtype_size(t->dtype), v);
}

/* ---- Normalisations (norm.c) ----------------------------------------------------------------- */

/* `name` has rank `rank` or more (`layout` names its dimensions, e.g. "[N, C, *]"). */
AnyaccelStatus ref_check_min_rank(const char *op, const char *name, const RefTensor *t, int rank, const char *layout);
/* The per-channel tensors t[i] (named names[i]; NULL for an absent one) have shape [len]; `why`
 * is appended to the message, e.g. " (one per channel)". */
AnyaccelStatus ref_check_channels(const char *op, int count, const char *const *names, const RefTensor *const *t,
                                  int64_t len, const char *why);
/* The Float attribute `eps`, `*eps` holding its default: finite and >= 0. */
AnyaccelStatus ref_eps_attr(const RefCall *c, double *eps);

/* A row-major walk over some dimensions of up to 3 tensors of one shape: off[k] is the element
 * offset in tensor k of the current element, relative to the first. After the last element it
 * is back at the first. */
typedef struct RefWalk {
    int count;
    int ndim;
    int64_t shape[REF_MAX_DIMS];
    int64_t strides[3][REF_MAX_DIMS];
    int64_t index[REF_MAX_DIMS];
    int64_t off[3];
} RefWalk;

/* A group of elements normalised together: the walk's `len` elements at base[k] + walk.off[k]
 * of the group's tensor k (x first; then the output, or grad and dx). Its elements' channel (the
 * index of weight and bias) is `channel`, plus the walk's index along its first dimension when
 * `channel_first`. */
typedef struct RefNormGroup {
    RefWalk walk;
    int64_t base[3];
    int64_t len;
    int64_t channel;
    int channel_first;
} RefNormGroup;

/* How x splits into groups: the rows along its last axis (layer_norm, rms_norm; the channel is
 * the position in the row), the (sample, group of C / G channels) of x [N, C, *] (group_norm),
 * or its channels over the batch (batch_norm). */
typedef enum { REF_NORM_ROWS, REF_NORM_GROUPS, REF_NORM_CHANNELS } RefNormLayout;

/* The groups of tensors of x's shape, one after the other. */
typedef struct RefNormGroups {
    RefNormGroup group; /* the current one */
    RefNormLayout layout;
    int ntensors;
    const RefTensor *tensors[3];
    RefWalk rows;         /* REF_NORM_ROWS: over every axis but the last */
    int64_t per_sample;   /* REF_NORM_GROUPS: G */
    int64_t next, count;  /* the groups visited, and their number */
} RefNormGroups;

/* Starts the groups of t[0..count] (x first, the others of its shape; `groups` is G for
 * REF_NORM_GROUPS). When x has no elements there is no group. */
void ref_norm_groups_init(RefNormGroups *gs, RefNormLayout layout, int count, const RefTensor *const *t,
                          int64_t groups);
/* Moves gs->group to the next group; 0 after the last. */
int ref_norm_groups_next(RefNormGroups *gs);
/* The mean of the group's x (0 with `rms`) and the denominator sqrt(mean((x - mean)^2) + eps),
 * two passes in double. */
void ref_group_stats(RefNormGroup *g, const RefTensor *x, int rms, double eps, double *mean, double *denom);
/* out = (x - mean) / r with `divide`, else (x - mean) * r, times w[channel] and plus b[channel]
 * where present; the group's tensors are x and out. */
void ref_group_apply(RefNormGroup *g, const RefTensor *x, const RefTensor *out, const RefTensor *w,
                     const RefTensor *b, double mean, double r, int divide);
/* layer_norm, rms_norm (with `rms`) or group_norm over the groups of `layout` (`groups` is G for
 * REF_NORM_GROUPS): out = (x - mean) / sqrt(var + eps) * w[channel] + b[channel] with each
 * group's statistics. */
void ref_norm_forward(RefNormLayout layout, const RefTensor *x, const RefTensor *out, const RefTensor *w,
                      const RefTensor *b, int64_t groups, int rms, double eps);

/* The tensors of a normalisation gradient, grad, x[, mean, invstd], weight? -> dx, dweight[,
 * dbias] (NULL for those the op does not have or that are absent). */
typedef struct RefNormGrad {
    const RefTensor *grad, *x, *mean, *invstd, *weight;
    const RefTensor *dx, *dweight, *dbias;
    int64_t channels; /* C, or D along x's last axis */
} RefNormGrad;

/* Which terms of dx = r * (dxhat - A - xhat * B) a gradient has: both (the statistics depend on
 * x: layer_norm, group_norm, batch_norm in training), B only (rms_norm) or neither (batch_norm
 * with fixed statistics). */
typedef enum { REF_NORM_NONE, REF_NORM_SCALE, REF_NORM_MEAN_AND_SCALE } RefNormTerms;

/* Checks a gradient's call: x [N, C, *] (rank >= 2) with `channels_first`, else x [..., D]
 * (rank >= 1); with `stats` the inputs mean and invstd; with `dbias` that output; every float
 * of one dtype, grad and dx of x's shape, the per-channel tensors [C] (or [D]). */
AnyaccelStatus ref_norm_grad_check(const RefCall *c, int channels_first, int stats, int dbias, RefNormGrad *g);
/* Runs a checked gradient over the groups of `layout` (`groups` is G for REF_NORM_GROUPS): per
 * group the statistics mean and r = 1 / sqrt(var + eps) (with `rms`, mean 0 and the mean square
 * for var), or with g->mean those of the group's channel, mean[c] and invstd[c]; then, with
 * dxhat = grad * w[channel], xhat = (x - mean) * r, and A and B the means of dxhat and
 * dxhat * xhat over the group, dx = r * (dxhat - A - xhat * B) with the terms `terms` says,
 * dweight[c] the sum of grad * xhat and dbias[c] that of grad over the channel's elements. */
AnyaccelStatus ref_norm_grad_run(const char *op, const RefNormGrad *g, RefNormLayout layout, int64_t groups,
                                 int rms, double eps, RefNormTerms terms);

/* The op families. Each returns ANYACCEL_OK or sets the error. */
AnyaccelStatus ref_op_creation(const RefCall *c);    /* fill, arange */
AnyaccelStatus ref_op_movement(const RefCall *c);    /* copy, cast, concat */
AnyaccelStatus ref_op_indexing(const RefCall *c);    /* index_select, embedding, gather */
AnyaccelStatus ref_op_elementwise(const RefCall *c); /* binary, comparisons, where, unary,
                                                        activation gradients */
AnyaccelStatus ref_op_reduction(const RefCall *c);   /* sum ... std, cum*, topk, sort */
AnyaccelStatus ref_op_nn(const RefCall *c);          /* softmax ... attention, attention_backward,
                                                        softmax_backward,
                                                        log_softmax_backward, cross_entropy,
                                                        cross_entropy_backward, layer_norm_backward,
                                                        rms_norm_backward */
AnyaccelStatus ref_op_rearrange(const RefCall *c);   /* pad ... repeat_interleave, one_hot, scatters,
                                                        masked_fill, embedding_backward */
AnyaccelStatus ref_op_random(const RefCall *c);      /* uniform, normal, bernoulli, dropout */
AnyaccelStatus ref_op_conv(const RefCall *c);        /* conv1d, conv2d, conv_transpose1d,
                                                        conv_transpose2d, conv1d_backward_input,
                                                        conv2d_backward_input,
                                                        conv1d_backward_weight,
                                                        conv2d_backward_weight */
AnyaccelStatus ref_op_pool(const RefCall *c);        /* max_pool1d, max_pool2d, avg_pool1d,
                                                        avg_pool2d, max_pool1d_backward,
                                                        max_pool2d_backward, avg_pool1d_backward,
                                                        avg_pool2d_backward */
AnyaccelStatus ref_op_resample(const RefCall *c);    /* adaptive_avg_pool2d, interpolate,
                                                        adaptive_avg_pool2d_backward,
                                                        interpolate_backward,
                                                        adaptive_avg_pool3d and its
                                                        gradient */
AnyaccelStatus ref_op_group_norm(const RefCall *c);  /* group_norm, group_norm_backward */
AnyaccelStatus ref_op_batch_norm(const RefCall *c);  /* batch_norm, batch_norm_backward */
AnyaccelStatus ref_op_quant(const RefCall *c);       /* quantize, dequantize, matmul_wq, matmul_i8 */

#endif /* REF_H */
