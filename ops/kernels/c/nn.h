/* softmax and log_softmax (sm_lines), layer_norm and rms_norm (ln_rows), rope (rope_pairs),
 * attention (attn_rows). One work-group of WG items per row, f32 accumulation.
 * Options: XT (the dtype), WG, KRANK (rank of the row layout K), and per kernel below.
 */

/* ---- softmax, log_softmax: K (operand 0 the output, 1 the input), strides along the axis --- */
#ifdef SM_LINES
KERNEL void sm_lines(GLOBAL X_ST* out, GLOBAL const X_ST* x, const Lay K, const i64 lines,
                     const i64 len, const i64 xs, const i64 os) {
    LOCAL float red[WG];
    const int t = LOCAL_ID(0);
    for (i64 line = GROUP_ID(0); line < lines; line += NUM_GROUPS(0)) {
        i64 ko[2];
        lay_offsets(&K, KRANK, 2, line, ko);
        float m = -F32_INF;
        for (i64 j = t; j < len; j += WG) m = max_nan(m, X_LD(x, ko[1] + j * xs));
        m = group_max_f32(red, m);
        float s = 0.0f;
        for (i64 j = t; j < len; j += WG) s += expf(X_LD(x, ko[1] + j * xs) - m);
        s = group_sum_f32(red, s);
#ifdef SM_LOG
        const float ls = logf(s);
        for (i64 j = t; j < len; j += WG) X_SV(out, ko[0] + j * os, (X_LD(x, ko[1] + j * xs) - m) - ls);
#else
        for (i64 j = t; j < len; j += WG) X_SV(out, ko[0] + j * os, expf(X_LD(x, ko[1] + j * xs) - m) / s);
#endif
    }
}
#endif

/* ---- layer_norm, rms_norm over the last axis ---------------------------------------------------
 * K: rows (operand 0 the output, 1 the input); xs, os: strides along the row; the weight and
 * bias are D-element vectors at (offset, stride). The row is first scaled by a power of two
 * near 1 / max|x| so that sums of squares cannot overflow where the exact result is finite.
 * layer_norm sums relative to the row's first element: a constant row then has a mean equal
 * to its element and deviations of exactly 0 (so `eps = 0` gives 0 / 0 = NaN, not the
 * rounding error of a mean computed from the raw values), and sums cancel less. */
#ifdef LN_ROWS
KERNEL void ln_rows(GLOBAL X_ST* out, GLOBAL const X_ST* x, GLOBAL const X_ST* w,
                    GLOBAL const X_ST* b, const Lay K, const i64 rows, const i64 len,
                    const i64 xs, const i64 os, const i64 w_off, const i64 w_st,
                    const i64 b_off, const i64 b_st, const float eps) {
    LOCAL float red[WG];
    const int t = LOCAL_ID(0);
    for (i64 row = GROUP_ID(0); row < rows; row += NUM_GROUPS(0)) {
        i64 ko[2];
        lay_offsets(&K, KRANK, 2, row, ko);
        float big = 0.0f;
        for (i64 j = t; j < len; j += WG) big = max_nan(big, fabsf(X_LD(x, ko[1] + j * xs)));
        big = group_max_f32(red, big);
        float sc = 1.0f;
        if (big > 0.0f && big < F32_INF) {
            i32 e = ilogbf(big);
            e = e < -100 ? -100 : (e > 100 ? 100 : e);
            sc = ldexpf(1.0f, -e);
        }
        const float n = (float)len;
#ifdef LN_RMS
        const float shift = 0.0f;
        const float mean = 0.0f;
#else
        const float shift = len > 0 ? X_LD(x, ko[1]) * sc : 0.0f;
        float s = 0.0f;
        for (i64 j = t; j < len; j += WG) s += X_LD(x, ko[1] + j * xs) * sc - shift;
        /* The mean less the shift. */
        const float mean = group_sum_f32(red, s) / n;
#endif
        float q = 0.0f;
        for (i64 j = t; j < len; j += WG) {
            float d = (X_LD(x, ko[1] + j * xs) * sc - shift) - mean;
            q += d * d;
        }
        const float var = group_sum_f32(red, q) / n;
        const float denom = sqrtf(var + eps * sc * sc);
        /* A row whose deviations are all 0 gives 0 when eps > 0, even where eps * sc^2
         * underflows. */
        const float inv = (denom == 0.0f && eps > 0.0f) ? 0.0f : 1.0f / denom;
        for (i64 j = t; j < len; j += WG) {
            float y = ((X_LD(x, ko[1] + j * xs) * sc - shift) - mean) * inv;
#ifdef LN_W
            y *= X_LD(w, w_off + j * w_st);
#endif
#ifdef LN_B
            y += X_LD(b, b_off + j * b_st);
#endif
            X_SV(out, ko[0] + j * os, y);
        }
    }
}
#endif

/* ---- rope: one work item per pair -------------------------------------------------------------
 * K: rows x[..., s, :] (operand 0 the input, 1 the output); C: the [S, D/2] tables (operand 0
 * cos, 1 sin). Products are taken in units of 2^-64 so that x1*c - x2*n overflows only when the
 * result does. */
#ifdef ROPE_PAIRS
KERNEL void rope_pairs(GLOBAL X_ST* out, GLOBAL const X_ST* x, GLOBAL const X_ST* cs,
                       GLOBAL const X_ST* sn, const Lay K, const Lay C, const i64 rows,
                       const i64 seq, const i64 half_d, const i64 xs, const i64 os) {
    const i64 n = rows * half_d;
    for (i64 g = GLOBAL_ID(0); g < n; g += GLOBAL_SIZE(0)) {
        const i64 row = g / half_d;
        const i64 i = g - row * half_d;
        const i64 s = row % seq;
        i64 ko[2], co[2];
        lay_offsets(&K, KRANK, 2, row, ko);
        lay_offsets(&C, 2, 2, s * half_d + i, co);
#if ROPE_INTERLEAVED
        const i64 a = 2 * i, b = 2 * i + 1;
#else
        const i64 a = i, b = i + half_d;
#endif
        const float c = X_LD(cs, co[0]);
        const float sv = X_LD(sn, co[1]);
        const float x1 = X_LD(x, ko[0] + a * xs) * SCALE_DOWN;
        const float x2 = X_LD(x, ko[0] + b * xs) * SCALE_DOWN;
        X_SV(out, ko[1] + a * os, (x1 * c - x2 * sv) * SCALE_UP);
        X_SV(out, ko[1] + b * os, (x2 * c + x1 * sv) * SCALE_UP);
    }
}
#endif

/* ---- attention: one work-group per query row ---------------------------------------------------
 * K: query rows (operand 0 q's row, 1 out's row, 2 k's batch, 3 v's batch). The row's logits,
 * then its probabilities, go to `scores` (one row of lk floats per row of this launch, rows
 * row0..row0+nrows). Logits are kept in units of 2^-64 (q is scaled) so that a dot product
 * overflows only where the reference's does. Masked keys (ATTN_CAUSAL, key j > query i) take
 * no part. ATTN_MASK: a mask of dtype MT over the logits, M its row layout (one operand) and
 * m_sj its stride along the keys; ATTN_MASK_BOOL: a false key takes no part, else the mask
 * is added to the logit. A row whose every logit is -inf (no key seen) is 0. */
#ifdef ATTN_ROWS
#ifdef MT
#define M_ST CAT(st_, MT)
#define M_LD CAT(ld_, MT)
#else
#define M_ST X_ST
#endif
KERNEL void attn_rows(GLOBAL X_ST* out, GLOBAL const X_ST* q, GLOBAL const X_ST* k,
                      GLOBAL const X_ST* v, GLOBAL const M_ST* mask, const Lay M,
                      const i64 m_sj, GLOBAL float* scores, const Lay K, const i64 row0,
                      const i64 nrows, const i64 lq, const i64 lk, const i64 d, const i64 dv,
                      const i64 q_sd, const i64 k_sj, const i64 k_sd, const i64 v_sj,
                      const i64 v_sd, const i64 o_sd, const float scale, const i64 shift,
                      const i64 window, const float softcap) {
    LOCAL float red[WG];
    const int t = LOCAL_ID(0);
    for (i64 r = GROUP_ID(0); r < nrows; r += NUM_GROUPS(0)) {
        const i64 row = row0 + r;
        i64 ko[4];
        lay_offsets(&K, KRANK, 4, row, ko);
        const i64 qi = row % lq;
        /* The keys first..last-1 that the row sees: all; or, causal, those at or before its
         * position qi + shift (within the window). */
#if ATTN_CAUSAL
        const i64 pos = qi + shift;
        const i64 last = pos + 1 < 0 ? 0 : (pos + 1 < lk ? pos + 1 : lk);
        const i64 from = window > 0 ? pos + 1 - window : 0;
        const i64 first = from < 0 ? 0 : (from < last ? from : last);
#else
        const i64 first = 0, last = lk;
#endif
        GLOBAL float* sc = scores + r * lk;
#ifdef ATTN_MASK
        i64 mo[1];
        lay_offsets(&M, MRANK, 1, row, mo);
#endif
        float m = -F32_INF;
        for (i64 j = first + t; j < last; j += WG) {
            float dot = 0.0f;
            for (i64 e = 0; e < d; ++e) {
                dot += X_LD(q, ko[0] + e * q_sd) * SCALE_DOWN * X_LD(k, ko[2] + j * k_sj + e * k_sd);
            }
            float l = dot * scale;
            if (softcap > 0.0f) {
                /* The cap on the logit's real value, kept in units of 2^-64 again. */
                l = softcap * tanhf((l * SCALE_UP) / softcap) * SCALE_DOWN;
            }
#ifdef ATTN_MASK_BOOL
            if (M_LD(mask, mo[0] + j * m_sj) == 0) l = -F32_INF;
#elif defined(ATTN_MASK)
            l += (float)M_LD(mask, mo[0] + j * m_sj) * SCALE_DOWN;
#endif
            sc[j] = l;
            m = max_nan(m, l);
        }
        m = group_max_f32(red, m);
        float s = 0.0f;
        for (i64 j = first + t; j < last; j += WG) {
            const float p = expf((sc[j] - m) * SCALE_UP);
            sc[j] = p;
            s += p;
        }
        s = group_sum_f32(red, s);
        for (i64 e = t; e < dv; e += WG) {
            float acc = 0.0f;
            for (i64 j = first; j < last; ++j) acc += sc[j] * X_LD(v, ko[3] + j * v_sj + e * v_sd);
            /* A row that sees no key (every logit -inf) is 0; a NaN maximum stays NaN. */
            X_SV(out, ko[1] + e * o_sd, m == -F32_INF ? 0.0f : acc / s);
        }
        BARRIER();
    }
}
#endif
