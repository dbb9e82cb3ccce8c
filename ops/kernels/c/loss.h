/* cross_entropy (ce_rows, then ce_total) and cross_entropy_backward (ce_grad, after ce_rows and
 * ce_total in CE_COUNT mode for the mean), over the positions of logits [N, C, d...]: K walks
 * the positions (operand 0 logits, 1 target, 2 the loss (CE_NONE) or dlogits, 3 grad: its
 * element per position for reduction "none", else its one element); along the class axis the
 * logits are cs apart (dlogits ocs). One work-group of WG items per position. A target that is
 * neither `ignore` nor in [0, C) sets bad[0] and is never used as an address.
 * Options: XT (logits' dtype), IT (the target's), WG, KRANK, CE_NONE / CE_MEAN (reductions),
 * CE_COUNT. */
#if defined(CE_ROWS) || defined(CE_GRAD)
typedef CAT(st_, IT) ce_idx_t;

typedef struct {
    float lse, sum;
} CeStats;

/* The row's log-sum-exp (m + log sum exp(x - m), m its maximum, NaN after a NaN) and sum. */
DEVICE CeStats ce_stats(GLOBAL const X_ST* x, const i64 xo, const i64 cs, const i64 classes,
                         LOCAL_PTR float* red, const int t) {
    float m = -F32_INF;
    for (i64 c = t; c < classes; c += WG) m = max_nan(m, X_LD(x, xo + c * cs));
    m = group_max_f32(red, m);
    float s = 0.0f, sum = 0.0f;
    for (i64 c = t; c < classes; c += WG) {
        const float v = X_LD(x, xo + c * cs);
        s += expf(v - m);
        sum += v;
    }
    s = group_sum_f32(red, s);
    sum = group_sum_f32(red, sum);
    CeStats r;
    r.lse = m + logf(s);
    r.sum = sum;
    return r;
}
#endif

#ifdef CE_ROWS
/* Per position: the loss into `out` (CE_NONE) or into part[2 i] with part[2 i + 1] = 1 where the
 * position counts (CE_COUNT: the count only). */
KERNEL void ce_rows(GLOBAL X_ST* out, GLOBAL float* part, GLOBAL const X_ST* x,
                    GLOBAL const ce_idx_t* tgt, GLOBAL i32* bad, const Lay K,
                    const i64 positions, const i64 classes, const i64 cs, const i64 ignore,
                    const float eps) {
    LOCAL float red[WG];
    const int t = LOCAL_ID(0);
    for (i64 i = GROUP_ID(0); i < positions; i += NUM_GROUPS(0)) {
        i64 ko[3];
        lay_offsets(&K, KRANK, 3, i, ko);
        const i64 tv = (i64)tgt[ko[1]];
        const int skip = tv == ignore;
        const int wrong = !skip && (tv < 0 || tv >= classes);
        float loss = 0.0f;
#ifndef CE_COUNT
        /* The statistics for every position (they hold barriers), used where the target counts. */
        const CeStats st = ce_stats(x, ko[0], cs, classes, red, t);
        if (!skip && !wrong) {
            loss = st.lse - X_LD(x, ko[0] + tv * cs);
            /* A term of weight 0 is left out (0 x Inf would be NaN). */
            if (eps > 0.0f)
                loss = (eps < 1.0f ? (1.0f - eps) * loss : 0.0f) + eps * (st.lse - st.sum / (float)classes);
        }
#endif
        if (t == 0) {
            if (wrong) bad[0] = 1;
#ifdef CE_NONE
            X_SV(out, ko[2], loss);
#else
            part[2 * i] = loss;
            part[2 * i + 1] = (skip || wrong) ? 0.0f : 1.0f;
#endif
        }
    }
}
#endif

#ifdef CE_TOTAL
/* One work-group: the sum of the positions' losses (CE_MEAN: over their count) into out[oo], or
 * (CE_COUNT) the count into cnt[0]; each item adds its share in f64 where the device has it. */
KERNEL void ce_total(GLOBAL X_ST* out, GLOBAL float* cnt, GLOBAL const float* part,
                     const i64 positions, const i64 oo) {
    LOCAL float red[WG];
    const int t = LOCAL_ID(0);
#ifdef ANYACCEL_FP64
    double s = 0.0, n = 0.0;
#else
    float s = 0.0f, n = 0.0f;
#endif
    for (i64 i = t; i < positions; i += WG) {
        s += part[2 * i];
        n += part[2 * i + 1];
    }
    const float ts = group_sum_f32(red, (float)s);
    const float tn = group_sum_f32(red, (float)n);
    if (t == 0) {
#if defined(CE_COUNT)
        cnt[0] = tn;
        (void)out;
        (void)oo;
        (void)ts;
#elif defined(CE_MEAN)
        X_SV(out, oo, ts / tn);
#else
        X_SV(out, oo, ts);
#endif
    }
}
#endif

#ifdef CE_GRAD
/* Per position: dlogits = g (softmax(x) - (1 - eps) [c = target] - eps / C), g the position's
 * grad (CE_MEAN: over cnt[0]); 0 for an ignored or bad target. */
KERNEL void ce_grad(GLOBAL X_ST* out, GLOBAL const X_ST* g, GLOBAL const float* cnt,
                    GLOBAL const X_ST* x, GLOBAL const ce_idx_t* tgt, GLOBAL i32* bad,
                    const Lay K, const i64 positions, const i64 classes, const i64 cs,
                    const i64 ocs, const i64 ignore, const float eps) {
    LOCAL float red[WG];
    const int t = LOCAL_ID(0);
    for (i64 i = GROUP_ID(0); i < positions; i += NUM_GROUPS(0)) {
        i64 ko[4];
        lay_offsets(&K, KRANK, 4, i, ko);
        const i64 tv = (i64)tgt[ko[1]];
        const int skip = tv == ignore;
        const int wrong = !skip && (tv < 0 || tv >= classes);
        /* The statistics for every position (they hold barriers), used where the target counts. */
        const float lse = ce_stats(x, ko[0], cs, classes, red, t).lse;
        if (skip || wrong) {
            for (i64 c = t; c < classes; c += WG) X_SV(out, ko[2] + c * ocs, 0.0f);
            if (t == 0 && wrong) bad[0] = 1;
        } else {
#ifdef CE_MEAN
            const float gi = X_LD(g, ko[3]) / cnt[0];
#else
            const float gi = X_LD(g, ko[3]);
#endif
            const float spread = eps / (float)classes;
            for (i64 c = t; c < classes; c += WG) {
                const float p = expf(X_LD(x, ko[0] + c * cs) - lse);
                const float hit = c == tv ? 1.0f - eps : 0.0f;
                X_SV(out, ko[2] + c * ocs, gi * (p - hit - spread));
            }
        }
        BARRIER();
    }
}
#endif
