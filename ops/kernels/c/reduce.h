/* Reductions: sum, mean, max, min, argmax, argmin (rd_*), cumsum (cs_lines), topk (tk_lines).
 *
 * Layouts: K walks the kept dimensions (the rows of the result; operand 0 the output, operand
 * 1 the input, operand 2 a second output) with rank KRANK; R walks the reduced dimensions of
 * the input (operand 0, offset 0) with rank RRANK. A row's element j (row-major over the
 * reduced dimensions, which is also the position argmax reports) lies at
 * row_base + lay(R, j).
 *
 * Floats accumulate in f32, integers in their own width with wrapping. One work-group of WG
 * items per row, a loop over the row, and a tree over local memory. Long rows with few outputs
 * are split: STAGE 1 writes per-chunk partial results, STAGE 2 combines them in a second
 * launch (STAGE 0 does both in one).
 * Options: XT, X_FLOAT, RD_SUM | RD_MEAN | RD_MAX | RD_MIN | RD_ARGMAX | RD_ARGMIN, KRANK, RRANK,
 * WG, STAGE.
 */

#if defined(RD_LOGSUMEXP) || defined(RD_VAR) || defined(RD_STD) || (defined(RD_PROD) && X_FLOAT)
/* Compound states. logsumexp: m the maximum (NaN after a NaN, +Inf after a +Inf), s the sum
 * of exp(x - m). var, std: n the count, m the mean, s the sum of squared deviations (Welford,
 * merged by Chan's formula), in double where the device has it, so that squares of values near
 * the largest float do not overflow. Float prod: m * 2^s with m kept in [0.5, 1) (frexp), so
 * that partial products neither overflow nor underflow. */
#define RD_PAIR 1
#if (defined(RD_VAR) || defined(RD_STD)) && defined(ANYACCEL_FP64)
typedef double pair_t;
#else
typedef float pair_t;
#endif
typedef struct {
    pair_t m;
    pair_t s;
    pair_t n;
} acc_v;
#elif X_FLOAT
typedef float acc_v;
#define ACC_NAN(v) nan_f(v)
#else
typedef X_CT acc_v;
#define ACC_NAN(v) 0
#endif

#ifndef RD_PAIR
/* The position order of topk and arg reductions: >0 when a is above b, NaN above everything
 * (NaNs equal), -0.0 equal to +0.0. */
DEVICE int order_cmp(acc_v a, acc_v b) {
    int na = ACC_NAN(a), nb = ACC_NAN(b);
    if (na || nb) return na - nb;
    return (a > b) - (a < b);
}
#endif

/* The identities of maxima and minima: x's lowest and highest values. */
#if X_FLOAT
#define LOWEST (-F32_INF)
#define HIGHEST F32_INF
#else
#define LOWEST ((X_CT)((X_UT)1 << (sizeof(X_CT) * 8 - 1)))
#define HIGHEST ((X_CT)(((X_UT)1 << (sizeof(X_CT) * 8 - 1)) - 1u))
#endif

#ifdef RD_REDUCE

#if defined(RD_ARGMAX) || defined(RD_ARGMIN)
#define RD_ARG 1
#endif

#ifdef RD_PAIR
DEVICE acc_v pair_of(pair_t m, pair_t s, pair_t n) {
    acc_v r;
    r.m = m;
    r.s = s;
    r.n = n;
    return r;
}
#endif

#if defined(RD_MAX) || defined(RD_ARGMAX)
#define IDENTITY LOWEST
#elif defined(RD_MIN) || defined(RD_ARGMIN)
#define IDENTITY HIGHEST
#elif defined(RD_PROD) && X_FLOAT
#define IDENTITY pair_of(0.5f, 1.0f, 0.0f)
#elif defined(RD_PROD) || defined(RD_ALL)
#define IDENTITY ((acc_v)1)
#elif defined(RD_LOGSUMEXP)
#define IDENTITY pair_of(-F32_INF, 0.0f, 0.0f)
#elif defined(RD_PAIR)
#define IDENTITY pair_of(0.0f, 0.0f, 0.0f)
#else
#define IDENTITY ((acc_v)0)
#endif

/* Combines b into a (the positions of b's elements are idx_b; ties go to the lower position). */
DEVICE void rd_combine(acc_v* a, i64* ia, acc_v b, i64 ib) {
#if defined(RD_LOGSUMEXP)
    (void)ia;
    (void)ib;
    if (nan_f(a->m) || nan_f(b.m)) {
        *a = pair_of(F32_NAN, 0.0f, 0.0f);
    } else if (a->m == F32_INF || b.m == F32_INF) {
        *a = pair_of(F32_INF, 1.0f, 0.0f);
    } else if (b.m == -F32_INF) {
        /* nothing to add */
    } else if (a->m == -F32_INF) {
        *a = b;
    } else {
        float m = a->m > b.m ? a->m : b.m;
        *a = pair_of(m, a->s * expf(a->m - m) + b.s * expf(b.m - m), 0.0f);
    }
#elif defined(RD_PROD) && X_FLOAT
    (void)ia;
    (void)ib;
    int k = 0;
    float m = frexpf(a->m * b.m, &k);
    *a = pair_of(m, a->s + b.s + (float)k, 0.0f);
#elif defined(RD_PAIR)
    (void)ia;
    (void)ib;
    pair_t n = a->n + b.n;
    if (b.n == 0) return;
    if (a->n == 0) {
        *a = b;
        return;
    }
    pair_t delta = b.m - a->m;
    pair_t f = b.n / n;
    *a = pair_of(a->m + delta * f, a->s + b.s + delta * delta * a->n * f, n);
#elif defined(RD_PROD)
#if X_FLOAT
    *a *= b;
#else
    *a = (acc_v)((X_UT)*a * (X_UT)b);
#endif
#elif defined(RD_ANY)
    *a = (*a != 0 || b != 0) ? (acc_v)1 : (acc_v)0; /* NaN is nonzero */
#elif defined(RD_ALL)
    *a = (*a != 0 && b != 0) ? (acc_v)1 : (acc_v)0;
#elif defined(RD_SUM) || defined(RD_MEAN)
#if X_FLOAT
    *a += b;
#else
    *a = (acc_v)((X_UT)*a + (X_UT)b);
#endif
#elif defined(RD_MAX)
#if X_FLOAT
    *a = max_nan(*a, b);
#else
    *a = b > *a ? b : *a;
#endif
#elif defined(RD_MIN)
#if X_FLOAT
    *a = min_nan(*a, b);
#else
    *a = b < *a ? b : *a;
#endif
#else
    /* argmax: NaN above everything; argmin: NaN below everything. Either way the first NaN. */
    int na = ACC_NAN(*a), nb = ACC_NAN(b);
    int c;
    if (na || nb) {
        c = nb - na;
    } else {
#ifdef RD_ARGMAX
        c = (b > *a) - (b < *a);
#else
        c = (b < *a) - (b > *a);
#endif
    }
    if (c > 0 || (c == 0 && ib < *ia)) {
        *a = b;
        *ia = ib;
    }
#endif
}

/* The state of one element. */
#if defined(RD_LOGSUMEXP)
#define RD_ONE(v) pair_of((v), 1.0f, 0.0f)
#elif defined(RD_PROD) && X_FLOAT
/* Normalized first: the product of two mantissas in [0.5, 1) never underflows. */
DEVICE acc_v prod_one(float v) {
    int k = 0;
    float m = frexpf(v, &k);
    return pair_of(m, (float)k, 0.0f);
}
#define RD_ONE(v) prod_one(v)
#elif defined(RD_PAIR)
#define RD_ONE(v) pair_of((pair_t)(v), 0.0f, 1.0f)
#else
#define RD_ONE(v) (v)
#endif

/* var and std divide by `divisor` (max(N - correction, 0), from the host). */
DEVICE void rd_store(GLOBAL void* outp, i64 at, acc_v v, i64 idx, i64 count, float divisor) {
    (void)divisor;
#ifdef RD_ARG
    ((GLOBAL i64*)outp)[at] = idx;
#elif defined(RD_ANY) || defined(RD_ALL)
    ((GLOBAL u8*)outp)[at] = v != 0 ? (u8)1 : (u8)0;
#elif defined(RD_LOGSUMEXP)
    X_SV((GLOBAL X_ST*)outp, at,
         (v.m == -F32_INF || v.m == F32_INF || nan_f(v.m)) ? v.m : v.m + logf(v.s));
#elif defined(RD_PROD) && X_FLOAT
    /* m * 2^e; exponents beyond +-300 saturate to Inf or 0 all the same. */
    float e = v.s < -300.0f ? -300.0f : (v.s > 300.0f ? 300.0f : v.s);
    X_SV((GLOBAL X_ST*)outp, at, ldexpf(v.m, (int)e));
#elif defined(RD_VAR) || defined(RD_STD)
    /* An Inf or NaN element leaves a mean that is not finite, and no divisor (N <= correction)
     * leaves nothing to divide by: both give NaN. */
    pair_t var = (v.n == 0 ? 0 : v.s) / (pair_t)divisor;
#ifdef RD_STD
    var = sqrt(var); /* before narrowing: the variance may exceed the largest float */
#endif
    X_SV((GLOBAL X_ST*)outp, at, ((v.m - v.m) != 0 || divisor == 0.0f) ? F32_NAN : (float)var);
#elif defined(RD_MEAN)
    X_SV((GLOBAL X_ST*)outp, at, v / (float)count * SCALE_UP);
#elif defined(RD_SUM) && X_FLOAT
    X_SV((GLOBAL X_ST*)outp, at, v * SCALE_UP);
#else
    X_SV((GLOBAL X_ST*)outp, at, v);
#endif
}

/* Rows are rows 0..rows; with STAGE 1, each row is cut into `parts` chunks of `chunk` elements
 * and group g handles (row g / parts, chunk g % parts). */
KERNEL void rd_rows(GLOBAL void* out, GLOBAL const X_ST* x, GLOBAL acc_v* part_v,
                    GLOBAL i64* part_i, const Lay K, const Lay R, const i64 rows,
                    const i64 count, const i64 parts, const i64 chunk, const float divisor) {
    LOCAL acc_v sv[WG];
    LOCAL i64 si[WG];
    const int t = LOCAL_ID(0);
    const i64 units = rows * parts;
    for (i64 g = GROUP_ID(0); g < units; g += NUM_GROUPS(0)) {
        const i64 row = g / parts;
        const i64 part = g - row * parts;
        acc_v a = IDENTITY;
        i64 ia = I64_MAX;
#if STAGE == 2
        /* Combine this row's partial results. */
        for (i64 j = t; j < parts; j += WG) {
            rd_combine(&a, &ia, part_v[row * parts + j], part_i[row * parts + j]);
        }
#else
        i64 ko[2];
        lay_offsets(&K, KRANK, 2, row, ko);
        const i64 lo = part * chunk;
        const i64 hi = lo + chunk < count ? lo + chunk : count;
        for (i64 j = lo + t; j < hi; j += WG) {
            i64 ro[1];
            lay_offsets(&R, RRANK, 1, j, ro);
#if X_FLOAT && (defined(RD_SUM) || defined(RD_MEAN))
            rd_combine(&a, &ia, X_LD(x, ko[1] + ro[0]) * SCALE_DOWN, j);
#else
            rd_combine(&a, &ia, RD_ONE(X_LD(x, ko[1] + ro[0])), j);
#endif
        }
#endif
        sv[t] = a;
        si[t] = ia;
        BARRIER();
        for (int s = WG / 2; s > 0; s >>= 1) {
            if (t < s) {
                acc_v b = sv[t + s];
                i64 ib = si[t + s];
                acc_v c = sv[t];
                i64 ic = si[t];
                rd_combine(&c, &ic, b, ib);
                sv[t] = c;
                si[t] = ic;
            }
            BARRIER();
        }
        if (t == 0) {
#if STAGE == 1
            part_v[g] = sv[0];
            part_i[g] = si[0];
#else
            i64 ko2[2];
            lay_offsets(&K, KRANK, 2, row, ko2);
            rd_store(out, ko2[0], sv[0], si[0], count, divisor);
#endif
        }
        BARRIER();
    }
}
#endif

/* ---- cumsum, cumprod, cummax, cummin: one work-group per line, tiles of WG * CS_V elements --
 * Options: CS_PROD (cumprod), CS_MAX (cummax), CS_MIN (cummin), CS_EXCLUSIVE, CS_REVERSE (0 or
 * 1). The scan runs over cs_t values: sums of floats in units of 2^-64 (SCALE_DOWN), float
 * products as m * 2^e with m in [0.5, 1) (no partial product overflows or underflows), integers
 * wrapping in their width; extremes as the reductions' max and min combine them (a NaN wins),
 * from x's lowest (highest) value. */
#ifdef CS_LINES
#if defined(CS_MAX) || defined(CS_MIN)
typedef X_CT cs_t;
#if defined(CS_MAX) && X_FLOAT
#define cs_add(a, b) max_nan(a, b)
#elif defined(CS_MAX)
#define cs_add(a, b) ((b) > (a) ? (b) : (a))
#elif X_FLOAT
#define cs_add(a, b) min_nan(a, b)
#else
#define cs_add(a, b) ((b) < (a) ? (b) : (a))
#endif
#ifdef CS_MAX
DEVICE cs_t cs_zero(void) { return LOWEST; }
#else
DEVICE cs_t cs_zero(void) { return HIGHEST; }
#endif
#define cs_of(v) ((cs_t)(v))
#define cs_out(v) (v)
#elif defined(CS_PROD) && X_FLOAT
typedef struct {
    float m;
    float e;
} cs_t;
DEVICE cs_t cs_pair(float m, float e) {
    cs_t r;
    r.m = m;
    r.e = e;
    return r;
}
DEVICE cs_t cs_zero(void) { return cs_pair(0.5f, 1.0f); }
DEVICE cs_t cs_add(cs_t a, cs_t b) {
    int k = 0;
    float m = frexpf(a.m * b.m, &k);
    return cs_pair(m, a.e + b.e + (float)k);
}
DEVICE cs_t cs_of(float v) {
    int k = 0;
    float m = frexpf(v, &k);
    return cs_pair(m, (float)k);
}
DEVICE float cs_out(cs_t v) {
    float e = v.e < -300.0f ? -300.0f : (v.e > 300.0f ? 300.0f : v.e);
    return ldexpf(v.m, (int)e);
}
#elif defined(CS_PROD)
typedef X_CT cs_t;
DEVICE cs_t cs_zero(void) { return (cs_t)1; }
DEVICE cs_t cs_add(cs_t a, cs_t b) { return (cs_t)((X_UT)a * (X_UT)b); }
#define cs_of(v) ((cs_t)(v))
#define cs_out(v) (v)
#elif X_FLOAT
typedef float cs_t;
DEVICE cs_t cs_zero(void) { return 0.0f; }
DEVICE cs_t cs_add(cs_t a, cs_t b) { return a + b; }
#define cs_of(v) ((v) * SCALE_DOWN)
#define cs_out(v) ((v) * SCALE_UP)
#else
typedef X_CT cs_t;
DEVICE cs_t cs_zero(void) { return (cs_t)0; }
DEVICE cs_t cs_add(cs_t a, cs_t b) { return (cs_t)((X_UT)a + (X_UT)b); }
#define cs_of(v) ((cs_t)(v))
#define cs_out(v) (v)
#endif
#define CS_V 4

/* K: lines (operand 0 the output, 1 the input); xs, os: the strides along the axis. Step j
 * of the scan is position j of the line, or len - 1 - j with CS_REVERSE. */
KERNEL void cs_lines(GLOBAL X_ST* out, GLOBAL const X_ST* x, const Lay K, const i64 lines,
                     const i64 len, const i64 xs, const i64 os) {
    LOCAL cs_t scan[2][WG];
    const int t = LOCAL_ID(0);
    for (i64 line = GROUP_ID(0); line < lines; line += NUM_GROUPS(0)) {
        i64 ko[2];
        lay_offsets(&K, KRANK, 2, line, ko);
        cs_t carry = cs_zero();
        for (i64 tile = 0; tile < len; tile += (i64)WG * CS_V) {
            const i64 first = tile + (i64)t * CS_V;
            cs_t v[CS_V];
            cs_t run = cs_zero();
            for (int k = 0; k < CS_V; ++k) {
                const i64 j = first + k;
                const i64 at = CS_REVERSE ? len - 1 - j : j;
                cs_t e = j < len ? cs_of(X_LD(x, ko[1] + at * xs)) : cs_zero();
#if CS_EXCLUSIVE
                v[k] = run;
                run = cs_add(run, e);
#else
                run = cs_add(run, e);
                v[k] = run;
#endif
            }
            /* Inclusive scan of the items' totals (Hillis-Steele, double buffered). */
            int cur = 0;
            scan[0][t] = run;
            BARRIER();
            for (int s = 1; s < WG; s <<= 1) {
                cs_t y = scan[cur][t];
                if (t >= s) y = cs_add(scan[cur][t - s], y);
                scan[1 - cur][t] = y;
                cur = 1 - cur;
                BARRIER();
            }
            cs_t excl = t > 0 ? scan[cur][t - 1] : cs_zero();
            cs_t base = cs_add(carry, excl);
            for (int k = 0; k < CS_V; ++k) {
                const i64 j = first + k;
                const i64 at = CS_REVERSE ? len - 1 - j : j;
                if (j < len) X_SV(out, ko[0] + at * os, cs_out(cs_add(base, v[k])));
            }
            carry = cs_add(carry, scan[cur][WG - 1]);
            BARRIER();
        }
    }
}
#endif

/* ---- topk: one work-group per line ------------------------------------------------------------ */
#ifdef TK_LINES
/* a (value va at position ia) comes before b in the result. */
DEVICE int tk_before(acc_v va, i64 ia, acc_v vb, i64 ib) {
    int c = order_cmp(va, vb);
#if TK_LARGEST
    return c > 0 || (c == 0 && ia < ib);
#else
    return c < 0 || (c == 0 && ia < ib);
#endif
}

/* K: lines (operand 0 the input, 1 the values, 2 the indices); xs, vs, is_: the strides along
 * the axis. k <= TK_SELECT: k rounds, each picking the first element after the previous pick.
 * Otherwise each element's rank is counted and elements of rank < k are written. */
KERNEL void tk_lines(GLOBAL const X_ST* x, GLOBAL X_ST* values, GLOBAL i64* indices,
                     const Lay K, const i64 lines, const i64 len, const i64 k, const i64 xs,
                     const i64 vs, const i64 is_) {
    LOCAL acc_v sv[WG];
    LOCAL i64 si[WG];
    const int t = LOCAL_ID(0);
    for (i64 line = GROUP_ID(0); line < lines; line += NUM_GROUPS(0)) {
        i64 ko[3];
        lay_offsets(&K, KRANK, 3, line, ko);
        if (k <= TK_SELECT) {
            acc_v pv = (acc_v)0;
            i64 pi = -1;
            for (i64 r = 0; r < k; ++r) {
                acc_v bv = (acc_v)0;
                i64 bi = I64_MAX;
                for (i64 j = t; j < len; j += WG) {
                    acc_v v = X_LD(x, ko[0] + j * xs);
                    if ((pi < 0 || tk_before(pv, pi, v, j)) &&
                        (bi == I64_MAX || tk_before(v, j, bv, bi))) {
                        bv = v;
                        bi = j;
                    }
                }
                sv[t] = bv;
                si[t] = bi;
                BARRIER();
                for (int s = WG / 2; s > 0; s >>= 1) {
                    if (t < s) {
                        i64 ob = si[t + s];
                        if (ob != I64_MAX && (si[t] == I64_MAX || tk_before(sv[t + s], ob, sv[t], si[t]))) {
                            sv[t] = sv[t + s];
                            si[t] = ob;
                        }
                    }
                    BARRIER();
                }
                pv = sv[0];
                pi = si[0];
                if (t == 0) {
                    X_SV(values, ko[1] + r * vs, pv);
                    indices[ko[2] + r * is_] = pi;
                }
                BARRIER();
            }
        } else {
            for (i64 j = t; j < len; j += WG) {
                acc_v v = X_LD(x, ko[0] + j * xs);
                i64 rank = 0;
                for (i64 m = 0; m < len && rank < k; ++m) {
                    rank += tk_before(X_LD(x, ko[0] + m * xs), m, v, j) ? 1 : 0;
                }
                if (rank < k) {
                    X_SV(values, ko[1] + rank * vs, v);
                    indices[ko[2] + rank * is_] = j;
                }
            }
        }
    }
}
#endif
