/* attention_backward (docs/ops.md 8.9) over contiguous operands: q [R = B Lq, D], grad [R, Dv],
 * k [Bkv Lk, D], v [Bkv Lk, Dv], the mask in place (broadcast by strides), and f32 gradients dq [R, D],
 * dk [Bkv Lk, D], dv [Bkv Lk, Dv] (zeroed before). Query batch qb = (outer, head h) uses key
 * batch (outer, h / group). Three kernels: ab_stats (per query row: the logits' maximum, the
 * sum of exp, and Di = sum_j p_j (grad . v_j)), ab_dq (per query row) and ab_dkv (per key row,
 * over the query rows of its group that see it). A term with p = 0 adds nothing.
 * Options: XT (the dtype), AB_MASK (0 none, 1 bool, 2 additive), AB_CAUSAL. */

#if defined(AB_STATS) || defined(AB_DQ) || defined(AB_DKV)
#if AB_MASK == 2
typedef X_ST ab_mask_t;
#else
typedef u8 ab_mask_t;
#endif

typedef struct {
    i64 lq, lk, d, dv, hq, group;
    i64 shift, window;
    float scale, cap;
    /* The mask's first element and its strides over (outer batch, head, query, key). */
    i64 mo, ms0, ms1, ms2, ms3;
} AbDims;

/* The mask's element for query row r and key j. */
DEVICE i64 ab_mo(const AbDims* a, i64 r, i64 j) {
    const i64 qb = r / a->lq;
    return a->mo + (qb / a->hq) * a->ms0 + (qb % a->hq) * a->ms1 + (r % a->lq) * a->ms2 +
           j * a->ms3;
}

/* Whether query row i sees key j (causal masking with its alignment and window). */
DEVICE int ab_seen(const AbDims* a, i64 i, i64 j) {
#ifdef AB_CAUSAL
    const i64 pos = i + a->shift;
    if (j > pos) return 0;
    if (a->window > 0 && j <= pos - a->window) return 0;
#endif
    return 1;
}

/* The key batch of query batch qb. */
DEVICE i64 ab_kv_batch(const AbDims* a, i64 qb) {
    return (qb / a->hq) * (a->hq / a->group) + (qb % a->hq) / a->group;
}

/* The logit of query row r (at qo in q) and key row t (at ko in k), with the soft cap's
 * derivative in *dcap; the mask at mo. */
DEVICE float ab_logit(const AbDims* a, GLOBAL const X_ST* q, GLOBAL const X_ST* k,
                      GLOBAL const ab_mask_t* mask, i64 qo, i64 ko, i64 mo, float* dcap) {
    float s = 0.0f;
    for (i64 c = 0; c < a->d; c++) s += X_LD(q, qo + c) * X_LD(k, ko + c);
    s *= a->scale;
    float l = s;
    *dcap = 1.0f;
    if (a->cap > 0.0f) {
        const float t = tanhf(s / a->cap);
        l = a->cap * t;
        *dcap = 1.0f - t * t;
    }
#if AB_MASK == 1
    if (mask[mo] == 0) l = -F32_INF;
#elif AB_MASK == 2
    l += X_LD(mask, mo);
#endif
    return l;
}

/* grad row r . v row t. */
DEVICE float ab_dp(const AbDims* a, GLOBAL const X_ST* g, GLOBAL const X_ST* v, i64 r, i64 t) {
    float s = 0.0f;
    for (i64 c = 0; c < a->dv; c++) s += X_LD(g, r * a->dv + c) * X_LD(v, t * a->dv + c);
    return s;
}
#endif

#ifdef AB_STATS
KERNEL void ab_stats(GLOBAL float* stats, GLOBAL const X_ST* q, GLOBAL const X_ST* k,
                     GLOBAL const X_ST* v, GLOBAL const X_ST* g, GLOBAL const ab_mask_t* mask,
                     const AbDims A, const i64 rows) {
    FOR_EACH_INDEX(r, rows) {
        const i64 i = r % A.lq;
        const i64 kb = ab_kv_batch(&A, r / A.lq);
        float m = -F32_INF, dcap;
        for (i64 j = 0; j < A.lk; j++) {
            if (!ab_seen(&A, i, j)) continue;
            const float l = ab_logit(&A, q, k, mask, r * A.d, (kb * A.lk + j) * A.d, ab_mo(&A, r, j), &dcap);
            if (l > m || l != l) m = l;
            if (m != m) break;
        }
        float sum = 0.0f, dsum = 0.0f;
        if (m != -F32_INF) {
            for (i64 j = 0; j < A.lk; j++) {
                if (!ab_seen(&A, i, j)) continue;
                const float l = ab_logit(&A, q, k, mask, r * A.d, (kb * A.lk + j) * A.d, ab_mo(&A, r, j), &dcap);
                const float e = expf(l - m);
                if (e == 0.0f) continue;
                sum += e;
                dsum += e * ab_dp(&A, g, v, r, kb * A.lk + j);
            }
        }
        stats[3 * r] = m;
        stats[3 * r + 1] = sum;
        stats[3 * r + 2] = sum > 0.0f ? dsum / sum : 0.0f;
    }
}
#endif

#ifdef AB_DQ
KERNEL void ab_dq(GLOBAL float* dq, GLOBAL const float* stats, GLOBAL const X_ST* q,
                  GLOBAL const X_ST* k, GLOBAL const X_ST* v, GLOBAL const X_ST* g,
                  GLOBAL const ab_mask_t* mask, const AbDims A, const i64 rows) {
    FOR_EACH_INDEX(r, rows) {
        const float m = stats[3 * r];
        if (m == -F32_INF) continue;
        const i64 i = r % A.lq;
        const i64 kb = ab_kv_batch(&A, r / A.lq);
        float dcap;
        for (i64 j = 0; j < A.lk; j++) {
            if (!ab_seen(&A, i, j)) continue;
            const i64 t = kb * A.lk + j;
            const float l = ab_logit(&A, q, k, mask, r * A.d, t * A.d, ab_mo(&A, r, j), &dcap);
            const float p = expf(l - m) / stats[3 * r + 1];
            if (p == 0.0f) continue;
            const float ds = p * (ab_dp(&A, g, v, r, t) - stats[3 * r + 2]) * dcap * A.scale;
            for (i64 c = 0; c < A.d; c++) dq[r * A.d + c] += ds * X_LD(k, t * A.d + c);
        }
    }
}
#endif

#ifdef AB_DKV
KERNEL void ab_dkv(GLOBAL float* dk, GLOBAL float* dv, GLOBAL const float* stats,
                   GLOBAL const X_ST* q, GLOBAL const X_ST* k, GLOBAL const X_ST* v,
                   GLOBAL const X_ST* g, GLOBAL const ab_mask_t* mask, const AbDims A,
                   const i64 keys) {
    const i64 hkv = A.hq / A.group;
    FOR_EACH_INDEX(t, keys) {
        const i64 kb = t / A.lk, j = t % A.lk;
        for (i64 gi = 0; gi < A.group; gi++) {
            const i64 qb = (kb / hkv) * A.hq + (kb % hkv) * A.group + gi;
            for (i64 i = 0; i < A.lq; i++) {
                if (!ab_seen(&A, i, j)) continue;
                const i64 r = qb * A.lq + i;
                const float m = stats[3 * r];
                if (m == -F32_INF) continue;
                float dcap;
                const float l = ab_logit(&A, q, k, mask, r * A.d, t * A.d, ab_mo(&A, r, j), &dcap);
                const float p = expf(l - m) / stats[3 * r + 1];
                if (p == 0.0f) continue;
                const float ds = p * (ab_dp(&A, g, v, r, t) - stats[3 * r + 2]) * dcap * A.scale;
                for (i64 c = 0; c < A.dv; c++) dv[t * A.dv + c] += p * X_LD(g, r * A.dv + c);
                for (i64 c = 0; c < A.d; c++) dk[t * A.d + c] += ds * X_LD(q, r * A.d + c);
            }
        }
    }
}
#endif
