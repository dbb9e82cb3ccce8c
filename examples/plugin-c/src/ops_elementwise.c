/*
 * Elementwise ops: the binary ops and comparisons with broadcasting, where, and the unary ops
 * (docs/ops.md, sections 8.2 and 8.3). Floats are computed in double and rounded once to the
 * output dtype; integers are computed in int64 with wrapping and wrapped to the output dtype.
 */

#include <math.h>
#include <string.h>

#include "ref.h"

/* ---- Scalar functions ------------------------------------------------------------------------ */

/* NaN-propagating maximum; of +0 and -0 it gives +0. */
static double maximum_f(double a, double b) {
    if (isnan(a) || isnan(b)) return NAN;
    if (a > b) return a;
    if (b > a || signbit(a)) return b;
    return a;
}

/* NaN-propagating minimum; of +0 and -0 it gives -0. */
static double minimum_f(double a, double b) {
    if (isnan(a) || isnan(b)) return NAN;
    if (a < b) return a;
    if (b < a || !signbit(a)) return b;
    return a;
}

static double sigmoid(double x) {
    return 1.0 / (1.0 + exp(-x));
}

typedef enum { B_ADD, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN, B_POW, B_EQ, B_NE, B_LT, B_LE, B_GT, B_GE } BinaryOp;

static int binary_op_of(const char *op, BinaryOp *out) {
    static const char *const names[] = {"add", "sub", "mul", "div", "maximum", "minimum", "pow",
                                        "eq",  "ne",  "lt",  "le",  "gt",      "ge"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(op, names[i]) == 0) {
            *out = (BinaryOp)i;
            return 1;
        }
    return 0;
}

static double binary_f(BinaryOp op, double a, double b) {
    switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_MAX: return maximum_f(a, b);
    case B_MIN: return minimum_f(a, b);
    case B_POW: return pow(a, b);
    case B_EQ: return a == b;
    case B_NE: return a != b;
    case B_LT: return a < b;
    case B_LE: return a <= b;
    case B_GT: return a > b;
    case B_GE: return a >= b;
    }
    return NAN;
}

static int64_t binary_i(BinaryOp op, int64_t a, int64_t b) {
    uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
    switch (op) {
    case B_ADD: return (int64_t)(ua + ub);
    case B_SUB: return (int64_t)(ua - ub);
    case B_MUL: return (int64_t)(ua * ub);
    case B_DIV:
        if (b == 0) return 0;                    /* x / 0 = 0 on every device */
        if (a == INT64_MIN && b == -1) return a; /* wraps */
        return a / b;                            /* C truncates toward zero */
    case B_MAX: return a > b ? a : b;
    case B_MIN: return a < b ? a : b;
    case B_POW: return 0; /* pow is float-only; the host never sends integers */
    case B_EQ: return a == b;
    case B_NE: return a != b;
    case B_LT: return a < b;
    case B_LE: return a <= b;
    case B_GT: return a > b;
    case B_GE: return a >= b;
    }
    return 0;
}

/* ---- Binary ops, comparisons, where ---------------------------------------------------------- */

static AnyaccelStatus op_binary(const RefCall *c, BinaryOp op) {
    const RefTensor *out = &c->outputs[0];
    RefTensor a = ref_broadcast(&c->inputs[0], out->ndim, out->shape);
    RefTensor b = ref_broadcast(&c->inputs[1], out->ndim, out->shape);
    RefDType in = a.dtype;
    size_t is = ref_dtype_size(in), os = ref_dtype_size(out->dtype);
    const RefTensor *ts[3] = {out, &a, &b};
    RefIter it;
    ref_iter_init(&it, 3, ts);
    int64_t n = ref_numel(out);
    int compare = op >= B_EQ;
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        const unsigned char *pa = a.base + it.offset[1] * (int64_t)is;
        const unsigned char *pb = b.base + it.offset[2] * (int64_t)is;
        unsigned char *po = out->base + it.offset[0] * (int64_t)os;
        if (ref_is_float(in)) {
            double r = binary_f(op, ref_load_f(in, pa), ref_load_f(in, pb));
            if (compare)
                ref_store_i(out->dtype, po, r != 0.0);
            else
                ref_store_f(out->dtype, po, r);
        } else {
            ref_store_i(out->dtype, po, binary_i(op, ref_load_i(in, pa), ref_load_i(in, pb)));
        }
    }
    return ANYACCEL_OK;
}

static AnyaccelStatus op_where(const RefCall *c) {
    const RefTensor *out = &c->outputs[0];
    RefTensor cond = ref_broadcast(&c->inputs[0], out->ndim, out->shape);
    RefTensor a = ref_broadcast(&c->inputs[1], out->ndim, out->shape);
    RefTensor b = ref_broadcast(&c->inputs[2], out->ndim, out->shape);
    size_t size = ref_dtype_size(out->dtype);
    const RefTensor *ts[4] = {out, &cond, &a, &b};
    RefIter it;
    ref_iter_init(&it, 4, ts);
    int64_t n = ref_numel(out);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        int pick = cond.base[it.offset[1]] != 0;
        const unsigned char *src = pick ? a.base + it.offset[2] * (int64_t)size
                                        : b.base + it.offset[3] * (int64_t)size;
        memcpy(out->base + it.offset[0] * (int64_t)size, src, size);
    }
    return ANYACCEL_OK;
}

/* ---- Unary ops ------------------------------------------------------------------------------- */

typedef enum {
    U_NEG, U_ABS, U_RELU, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_SIN, U_COS, U_TANH, U_SIGMOID,
    U_SILU, U_GELU, U_ERF, U_FLOOR, U_CEIL, U_ROUND, U_TRUNC, U_SIGN, U_RECIPROCAL,
    U_GELU_TANH, U_CLAMP
} UnaryOp;

static int unary_op_of(const char *op, UnaryOp *out) {
    static const char *const names[] = {"neg", "abs",  "relu", "exp",     "log",  "sqrt", "rsqrt",
                                        "sin", "cos",  "tanh", "sigmoid", "silu", "gelu",
                                        "erf", "floor", "ceil", "round", "trunc", "sign",
                                        "reciprocal"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(op, names[i]) == 0) {
            *out = (UnaryOp)i;
            return 1;
        }
    if (strcmp(op, "clamp") == 0) {
        *out = U_CLAMP;
        return 1;
    }
    return 0;
}

static double unary_f(UnaryOp op, double x, double lo, double hi) {
    switch (op) {
    case U_NEG: return -x;
    case U_ABS: return fabs(x);
    case U_RELU: return (isnan(x) || x > 0.0) ? x : 0.0;
    case U_EXP: return exp(x);
    case U_LOG: return log(x);
    case U_SQRT: return sqrt(x);
    case U_RSQRT: return 1.0 / sqrt(x);
    case U_SIN: return sin(x);
    case U_COS: return cos(x);
    case U_TANH: return tanh(x);
    case U_SIGMOID: return sigmoid(x);
    case U_SILU: return x * sigmoid(x);
    case U_GELU: return x * 0.5 * (1.0 + erf(x / sqrt(2.0)));
    case U_ERF: return erf(x);
    case U_FLOOR: return floor(x);
    case U_CEIL: return ceil(x);
    case U_ROUND: return nearbyint(x); /* to nearest, halves to even */
    case U_TRUNC: return trunc(x);
    case U_SIGN: return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : (isnan(x) ? x : 0.0));
    case U_RECIPROCAL: return 1.0 / x;
    case U_GELU_TANH: {
        double inner = sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x);
        return 0.5 * x * (1.0 + tanh(inner));
    }
    case U_CLAMP: return minimum_f(maximum_f(x, lo), hi);
    }
    return NAN;
}

static int64_t unary_i(UnaryOp op, int64_t x, int64_t lo, int64_t hi) {
    switch (op) {
    case U_NEG: return (int64_t)((uint64_t)0 - (uint64_t)x);               /* neg(MIN) = MIN */
    case U_ABS: return x < 0 ? (int64_t)((uint64_t)0 - (uint64_t)x) : x; /* abs(MIN) = MIN */
    case U_RELU: return x > 0 ? x : 0;
    case U_SIGN: return (x > 0) - (x < 0);
    case U_CLAMP: {
        int64_t y = x > lo ? x : lo;
        return y < hi ? y : hi;
    }
    default: return 0; /* float-only ops never come with integers */
    }
}

static AnyaccelStatus op_unary(const RefCall *c, UnaryOp op) {
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    double lo = 0.0, hi = 0.0;
    if (op == U_CLAMP && (ref_attr_float(c, "min", &lo) != 1 || ref_attr_float(c, "max", &hi) != 1))
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "clamp: attributes `min` and `max` (Float) are required");
    if (op == U_GELU) {
        const char *mode = ref_attr_str(c, "approximate");
        if (mode && strcmp(mode, "tanh") == 0)
            op = U_GELU_TANH;
        else if (mode && strcmp(mode, "none") != 0)
            return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                             "gelu: attribute `approximate` is `%s`, expected `none` or `tanh`", mode);
    }
    RefDType d = x->dtype;
    size_t size = ref_dtype_size(d);
    const RefTensor *ts[2] = {out, x};
    RefIter it;
    ref_iter_init(&it, 2, ts);
    int64_t n = ref_numel(out);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        const unsigned char *p = x->base + it.offset[1] * (int64_t)size;
        unsigned char *q = out->base + it.offset[0] * (int64_t)size;
        if (ref_is_float(d))
            ref_store_f(d, q, unary_f(op, ref_load_f(d, p), lo, hi));
        else /* integral bounds, checked by the host */
            ref_store_i(d, q, unary_i(op, ref_load_i(d, p), (int64_t)lo, (int64_t)hi));
    }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_elementwise(const RefCall *c) {
    BinaryOp b;
    UnaryOp u;
    if (binary_op_of(c->op, &b)) return op_binary(c, b);
    if (unary_op_of(c->op, &u)) return op_unary(c, u);
    if (strcmp(c->op, "where") == 0) return op_where(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an elementwise op", c->op);
}
