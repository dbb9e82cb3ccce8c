/*
 * Elementwise ops: the binary, bitwise and logical ops and comparisons with broadcasting, where,
 * the unary ops and predicates (docs/ops.md, sections 8.2 and 8.3), and the activation
 * gradients (relu_backward ... leaky_relu_backward). Floats are computed in double and rounded
 * once to the output dtype; integers are computed in int64 with wrapping and wrapped to the
 * output dtype; bool outputs are 0 or 1.
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

/* Python's floor-mod: the remainder with the sign of b (b = 0 gives NaN, as fmod). */
static double remainder_f(double a, double b) {
    double r = fmod(a, b);
    if (r != 0.0 && (r < 0.0) != (b < 0.0)) r += b;
    return r;
}

/* The ops from B_EQ on write a bool output. */
typedef enum {
    B_ADD, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN, B_POW, B_ATAN2, B_REMAINDER, B_FMOD,
    B_BITWISE_AND, B_BITWISE_OR, B_BITWISE_XOR, B_LEFT_SHIFT, B_RIGHT_SHIFT,
    B_EQ, B_NE, B_LT, B_LE, B_GT, B_GE, B_LOGICAL_AND, B_LOGICAL_OR, B_LOGICAL_XOR
} BinaryOp;

static int binary_op_of(const char *op, BinaryOp *out) {
    static const char *const names[] = {
        "add", "sub", "mul", "div", "maximum", "minimum", "pow", "atan2", "remainder", "fmod",
        "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift",
        "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor"};
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
    case B_ATAN2: return atan2(a, b);
    case B_REMAINDER: return remainder_f(a, b);
    case B_FMOD: return fmod(a, b); /* exact; b = 0 or a = +-Inf gives NaN */
    case B_EQ: return a == b;
    case B_NE: return a != b;
    case B_LT: return a < b;
    case B_LE: return a <= b;
    case B_GT: return a > b;
    case B_GE: return a >= b;
    /* NaN != 0 is true: NaN counts as true, +-0 as false. */
    case B_LOGICAL_AND: return (a != 0.0) && (b != 0.0);
    case B_LOGICAL_OR: return (a != 0.0) || (b != 0.0);
    case B_LOGICAL_XOR: return (a != 0.0) != (b != 0.0);
    default: return NAN; /* the bitwise ops are integer-only; the host never sends floats */
    }
}

/* `a` and `b` are loaded from a dtype of `bits` bits (8 for u8, i8 and bool), which the shifts take as
 * their width; the result is wrapped to that dtype by the store. */
static int64_t binary_i(BinaryOp op, int64_t a, int64_t b, int bits) {
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
    case B_POW:
    case B_ATAN2: return 0; /* float-only; the host never sends integers */
    case B_REMAINDER:
    case B_FMOD: {
        if (b == 0 || b == -1) return 0; /* x by 0 gives 0; MIN by -1 would trap */
        int64_t r = a % b;               /* C truncates: the sign of a, as fmod */
        if (op == B_REMAINDER && r != 0 && (r < 0) != (b < 0)) r += b;
        return r;
    }
    /* u8 values stay in 0..255, i8 values in -128..127 (loaded sign-extended) and bool values in
     * 0..1 under and, or, xor. */
    case B_BITWISE_AND: return a & b;
    case B_BITWISE_OR: return a | b;
    case B_BITWISE_XOR: return a ^ b;
    case B_LEFT_SHIFT:
        if (b < 0 || b >= bits) return 0;
        return (int64_t)(ua << b); /* the bits shifted out of the dtype are lost */
    case B_RIGHT_SHIFT:
        /* Arithmetic for i32, i64 and i8 (loaded sign-extended), logical for u8 (never negative). */
        if (b < 0 || b >= bits) return a < 0 ? -1 : 0;
        return a < 0 ? ~(~a >> b) : a >> b;
    case B_EQ: return a == b;
    case B_NE: return a != b;
    case B_LT: return a < b;
    case B_LE: return a <= b;
    case B_GT: return a > b;
    case B_GE: return a >= b;
    case B_LOGICAL_AND: return (a != 0) && (b != 0);
    case B_LOGICAL_OR: return (a != 0) || (b != 0);
    case B_LOGICAL_XOR: return (a != 0) != (b != 0);
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
    int bits = (int)is * 8;
    const RefTensor *ts[3] = {out, &a, &b};
    RefIter it;
    ref_iter_init(&it, 3, ts);
    int64_t n = ref_numel(out);
    int compare = op >= B_EQ; /* comparisons and logical ops: a bool output */
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
            ref_store_i(out->dtype, po, binary_i(op, ref_load_i(in, pa), ref_load_i(in, pb), bits));
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

/* The ops from U_ISNAN to U_LOGICAL_NOT are predicates: a bool output, any input dtype. */
typedef enum {
    U_NEG, U_ABS, U_RELU, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_SIN, U_COS, U_TANH, U_SIGMOID,
    U_SILU, U_GELU, U_ERF, U_FLOOR, U_CEIL, U_ROUND, U_TRUNC, U_SIGN, U_RECIPROCAL,
    U_LOG1P, U_EXPM1, U_TAN, U_ATAN, U_ASIN, U_ACOS, U_SINH, U_COSH, U_ASINH, U_ACOSH, U_ATANH, U_HARDSWISH,
    U_BITWISE_NOT, U_SOFTPLUS, U_LEAKY_RELU, U_ELU, U_CLAMP, U_GELU_TANH,
    U_ISNAN, U_ISINF, U_ISFINITE, U_LOGICAL_NOT
} UnaryOp;

static int unary_op_of(const char *op, UnaryOp *out) {
    static const struct {
        const char *name;
        UnaryOp op;
    } ops[] = {
        {"neg", U_NEG}, {"abs", U_ABS}, {"relu", U_RELU}, {"exp", U_EXP}, {"log", U_LOG},
        {"sqrt", U_SQRT}, {"rsqrt", U_RSQRT}, {"sin", U_SIN}, {"cos", U_COS}, {"tanh", U_TANH},
        {"sigmoid", U_SIGMOID}, {"silu", U_SILU}, {"gelu", U_GELU}, {"erf", U_ERF},
        {"floor", U_FLOOR}, {"ceil", U_CEIL}, {"round", U_ROUND}, {"trunc", U_TRUNC},
        {"sign", U_SIGN}, {"reciprocal", U_RECIPROCAL}, {"log1p", U_LOG1P}, {"expm1", U_EXPM1},
        {"tan", U_TAN}, {"atan", U_ATAN}, {"asin", U_ASIN}, {"acos", U_ACOS}, {"sinh", U_SINH},
        {"cosh", U_COSH}, {"asinh", U_ASINH}, {"acosh", U_ACOSH}, {"atanh", U_ATANH},
        {"hardswish", U_HARDSWISH}, {"bitwise_not", U_BITWISE_NOT},
        {"softplus", U_SOFTPLUS}, {"leaky_relu", U_LEAKY_RELU}, {"elu", U_ELU}, {"clamp", U_CLAMP},
        {"isnan", U_ISNAN}, {"isinf", U_ISINF}, {"isfinite", U_ISFINITE},
        {"logical_not", U_LOGICAL_NOT},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(op, ops[i].name) == 0) {
            *out = ops[i].op;
            return 1;
        }
    return 0;
}

/* `p` and `q` are the op's Float attributes: clamp's min and max, softplus's beta and threshold,
 * leaky_relu's negative_slope, elu's alpha. */
static double unary_f(UnaryOp op, double x, double p, double q) {
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
    case U_LOG1P: return log1p(x);
    case U_EXPM1: return expm1(x);
    case U_TAN: return tan(x);
    case U_ATAN: return atan(x);
    case U_ASIN: return asin(x);
    case U_ACOS: return acos(x);
    case U_SINH: return sinh(x);
    case U_COSH: return cosh(x);
    case U_ASINH: return asinh(x);
    case U_ACOSH: return acosh(x);
    case U_ATANH: return atanh(x);
    case U_HARDSWISH: {
        /* min(max(x + 3, 0), 6); a NaN x gives NaN through the product. */
        double r = x + 3.0;
        r = r > 0.0 ? r : 0.0;
        r = r < 6.0 ? r : 6.0;
        return x * r / 6.0; /* hardswish(-Inf) = -Inf * 0 = NaN, as the formula gives */
    }
    case U_SOFTPLUS: return x * p > q ? x : log1p(exp(x * p)) / p;
    case U_LEAKY_RELU: return x > 0.0 ? x : x * p;
    case U_ELU: return x > 0.0 ? x : p * expm1(x);
    case U_CLAMP: return minimum_f(maximum_f(x, p), q);
    case U_GELU_TANH: {
        double inner = sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x);
        return 0.5 * x * (1.0 + tanh(inner));
    }
    default: return NAN; /* bitwise_not is integer-only; the predicates are in predicate() */
    }
}

/* `d` is x's dtype: bitwise_not of a bool is !x (the store wraps ~x for u8, i8, i32 and i64). */
static int64_t unary_i(UnaryOp op, RefDType d, int64_t x, int64_t lo, int64_t hi) {
    switch (op) {
    case U_NEG: return (int64_t)((uint64_t)0 - (uint64_t)x);               /* neg(MIN) = MIN */
    case U_ABS: return x < 0 ? (int64_t)((uint64_t)0 - (uint64_t)x) : x; /* abs(MIN) = MIN */
    case U_RELU: return x > 0 ? x : 0;
    case U_SIGN: return (x > 0) - (x < 0);
    case U_BITWISE_NOT: return d == ANYACCEL_DTYPE_BOOL ? x == 0 : ~x; /* u8: 255 - x; i8: -x - 1 */
    case U_CLAMP: {
        int64_t y = x > lo ? x : lo;
        return y < hi ? y : hi;
    }
    default: return 0; /* float-only ops never come with integers */
    }
}

/* isnan, isinf, isfinite, logical_not of an element of any dtype: 0 or 1. */
static int predicate(UnaryOp op, RefDType d, const unsigned char *p) {
    if (!ref_is_float(d)) {
        int64_t x = ref_load_i(d, p);
        return op == U_ISFINITE || (op == U_LOGICAL_NOT && x == 0); /* integers are finite */
    }
    double x = ref_load_f(d, p);
    switch (op) {
    case U_ISNAN: return isnan(x) != 0;
    case U_ISINF: return isinf(x) != 0;
    case U_ISFINITE: return isfinite(x) != 0;
    default: return x == 0.0; /* logical_not: NaN gives false, -0.0 true */
    }
}

/* Reads the Float attribute `name` into *v, which holds its default; InvalidArgument when it has
 * another kind or is not finite (or, with `nonzero`, is 0). */
static AnyaccelStatus float_attr(const RefCall *c, const char *name, int nonzero, double *v) {
    if (ref_attr_float(c, name, v) < 0)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `%s` must be a Float",
                         c->op, name);
    if (!isfinite(*v) || (nonzero && *v == 0.0))
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: attribute `%s` is %g, expected %s",
                         c->op, name, *v,
                         nonzero ? "a finite value other than 0" : "a finite value");
    return ANYACCEL_OK;
}

static AnyaccelStatus op_unary(const RefCall *c, UnaryOp op) {
    const RefTensor *x = &c->inputs[0], *out = &c->outputs[0];
    double p = 0.0, q = 0.0;
    AnyaccelStatus s = ANYACCEL_OK;
    if (op == U_CLAMP && (ref_attr_float(c, "min", &p) != 1 || ref_attr_float(c, "max", &q) != 1))
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "clamp: attributes `min` and `max` (Float) are required");
    if (op == U_GELU) {
        const char *mode = ref_attr_str(c, "approximate");
        if (mode && strcmp(mode, "tanh") == 0)
            op = U_GELU_TANH;
        else if (mode && strcmp(mode, "none") != 0)
            return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                             "gelu: attribute `approximate` is `%s`, expected `none` or `tanh`", mode);
    }
    if (op == U_SOFTPLUS) {
        p = 1.0;
        q = 20.0;
        s = float_attr(c, "beta", 1, &p);
        if (s == ANYACCEL_OK) s = float_attr(c, "threshold", 0, &q);
    } else if (op == U_LEAKY_RELU) {
        p = 0.01;
        s = float_attr(c, "negative_slope", 0, &p);
    } else if (op == U_ELU) {
        p = 1.0;
        s = float_attr(c, "alpha", 0, &p);
    }
    if (s != ANYACCEL_OK) return s;
    RefDType d = x->dtype, od = out->dtype;
    size_t size = ref_dtype_size(d), osize = ref_dtype_size(od);
    int pred = op >= U_ISNAN;
    const RefTensor *ts[2] = {out, x};
    RefIter it;
    ref_iter_init(&it, 2, ts);
    int64_t n = ref_numel(out);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        const unsigned char *px = x->base + it.offset[1] * (int64_t)size;
        unsigned char *po = out->base + it.offset[0] * (int64_t)osize;
        if (pred)
            ref_store_i(od, po, predicate(op, d, px));
        else if (ref_is_float(d))
            ref_store_f(od, po, unary_f(op, ref_load_f(d, px), p, q));
        else /* integral bounds, checked by the host */
            ref_store_i(od, po, unary_i(op, d, ref_load_i(d, px), (int64_t)p, (int64_t)q));
    }
    return ANYACCEL_OK;
}

/* ---- Activation gradients ------------------------------------------------------------------- */

/* Each takes the forward op's input x with the incoming gradient (same dtype, same shape) and
 * writes dx = grad * f'(x) in x's dtype; the derivatives are written without cancellation, and
 * small(x, d) = x * d, 0 where d is 0 (so that x = +-Inf with d = 0 gives no NaN). */
typedef enum {
    BW_RELU, BW_SIGMOID, BW_TANH, BW_SILU, BW_GELU, BW_SOFTPLUS, BW_ELU, BW_LEAKY_RELU,
    BW_GELU_TANH
} BackwardOp;

static int backward_op_of(const char *op, BackwardOp *out) {
    static const char *const names[] = {
        "relu_backward", "sigmoid_backward", "tanh_backward", "silu_backward", "gelu_backward",
        "softplus_backward", "elu_backward", "leaky_relu_backward"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(op, names[i]) == 0) {
            *out = (BackwardOp)i;
            return 1;
        }
    return 0;
}

/* sigmoid'(x) = e / (1 + e)^2 with e = exp(-|x|). */
static double sigmoid_d(double x) {
    double e = exp(-fabs(x));
    return e / ((1.0 + e) * (1.0 + e));
}

/* tanh'(x) = 1 - tanh(x)^2 = 4e / (1 + e)^2 with e = exp(-2|x|). */
static double tanh_d(double x) {
    double e = exp(-2.0 * fabs(x));
    return 4.0 * e / ((1.0 + e) * (1.0 + e));
}

static double small_f(double x, double d) {
    return d == 0.0 ? 0.0 : x * d;
}

/* p and q: the op's Float attributes (negative_slope, alpha, or beta and threshold). */
static double backward_f(BackwardOp op, double g, double x, double p, double q) {
    switch (op) {
    case BW_RELU: return x <= 0.0 ? 0.0 : g; /* NaN x takes the grad branch */
    case BW_LEAKY_RELU: return x > 0.0 ? g : g * p;
    case BW_ELU: return x <= 0.0 ? g * p * exp(x) : g;
    case BW_SIGMOID: return g * sigmoid_d(x);
    case BW_TANH: return g * tanh_d(x);
    case BW_SILU: return g * (sigmoid(x) + small_f(x, sigmoid_d(x)));
    case BW_SOFTPLUS: {
        double t = x * p;
        return t > q ? g : g * sigmoid(t);
    }
    case BW_GELU: {
        double cdf = 0.5 * (1.0 + erf(x / sqrt(2.0)));
        double pdf = exp(-0.5 * x * x) / sqrt(2.0 * 3.14159265358979323846);
        return g * (cdf + small_f(x, pdf));
    }
    case BW_GELU_TANH: {
        double k = sqrt(2.0 / 3.14159265358979323846);
        double inner = k * (x + 0.044715 * x * x * x);
        double d = tanh_d(inner);
        double right = d == 0.0 ? 0.0 : 0.5 * x * d * k * (1.0 + 3.0 * 0.044715 * x * x);
        return g * (0.5 * (1.0 + tanh(inner)) + right);
    }
    }
    return NAN;
}

static AnyaccelStatus op_backward(const RefCall *c, BackwardOp op) {
    if (c->num_inputs < 2 || c->num_outputs < 1 || !c->inputs[0].present || !c->inputs[1].present)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT, "%s: expected inputs grad and x and output dx",
                         c->op);
    const RefTensor *g = &c->inputs[0], *x = &c->inputs[1], *out = &c->outputs[0];
    RefDType d = x->dtype, od = out->dtype;
    if (!ref_is_float(d) || g->dtype != d || od != d)
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "%s: grad, x and dx must have the same float dtype", c->op);
    int same = g->ndim == x->ndim && out->ndim == x->ndim;
    for (int i = 0; same && i < x->ndim; i++)
        same = g->shape[i] == x->shape[i] && out->shape[i] == x->shape[i];
    if (!same) {
        char gs[REF_MAX_DIMS * 21 + 16], xs[REF_MAX_DIMS * 21 + 16];
        ref_dims_str(g, gs, sizeof gs);
        ref_dims_str(x, xs, sizeof xs);
        return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                         "%s: grad is %s but x is %s: shapes must be equal", c->op, gs, xs);
    }
    double p = 0.0, q = 0.0;
    AnyaccelStatus s = ANYACCEL_OK;
    if (op == BW_GELU) {
        const char *mode = ref_attr_str(c, "approximate");
        if (!mode && ref_attr(c, "approximate"))
            return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                             "%s: attribute `approximate` must be a Str", c->op);
        if (mode && strcmp(mode, "tanh") == 0)
            op = BW_GELU_TANH;
        else if (mode && strcmp(mode, "none") != 0)
            return ref_error(ANYACCEL_ERROR_INVALID_ARGUMENT,
                             "%s: attribute `approximate` is `%s`, expected `none` or `tanh`",
                             c->op, mode);
    } else if (op == BW_SOFTPLUS) {
        p = 1.0;
        q = 20.0;
        s = float_attr(c, "beta", 1, &p);
        if (s == ANYACCEL_OK) s = float_attr(c, "threshold", 0, &q);
    } else if (op == BW_LEAKY_RELU) {
        p = 0.01;
        s = float_attr(c, "negative_slope", 0, &p);
    } else if (op == BW_ELU) {
        p = 1.0;
        s = float_attr(c, "alpha", 0, &p);
    }
    if (s != ANYACCEL_OK) return s;
    int64_t size = (int64_t)ref_dtype_size(d);
    const RefTensor *ts[3] = {out, g, x};
    RefIter it;
    ref_iter_init(&it, 3, ts);
    int64_t n = ref_numel(out);
    for (int64_t i = 0; i < n; i++, ref_iter_next(&it)) {
        double gv = ref_load_f(d, g->base + it.offset[1] * size);
        double xv = ref_load_f(d, x->base + it.offset[2] * size);
        ref_store_f(od, out->base + it.offset[0] * size, backward_f(op, gv, xv, p, q));
    }
    return ANYACCEL_OK;
}

AnyaccelStatus ref_op_elementwise(const RefCall *c) {
    BinaryOp b;
    UnaryOp u;
    BackwardOp bw;
    if (binary_op_of(c->op, &b)) return op_binary(c, b);
    if (unary_op_of(c->op, &u)) return op_unary(c, u);
    if (backward_op_of(c->op, &bw)) return op_backward(c, bw);
    if (strcmp(c->op, "where") == 0) return op_where(c);
    return ref_error(ANYACCEL_ERROR_UNSUPPORTED, "%s: not an elementwise op", c->op);
}
