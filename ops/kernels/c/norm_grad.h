/* The normalisation gradients over x viewed as [A, C, S] (rows, channels, spatial positions;
 * strides per part: x xa xc xs, grad ya yc ys, dx da dc ds), one work-group of WG items each:
 * - nb_groups: per normalisation group, a box of rows [a0, a0 + na) x channels [c0, c0 + nc)
 *   x all of S (NB_ROWS: one row, every channel; NB_GROUP: one row, the group's cg channels;
 *   NB_BATCH: every row, one channel): the statistics (NB_BATCH: given; NB_RMS: mean 0,
 *   r = 1 / sqrt(sum(x^2) / len + eps); else the mean and the biased variance, summed relative
 *   to the group's first element), then with dxhat = dy w and xhat = (x - mean) r,
 *   dx = r (dxhat - A - xhat B), A = sum(dxhat) / len (not for NB_RMS), B = sum(dxhat xhat) /
 *   len (neither for NB_BATCH without NB_TRAIN); the group's (mean, r) go to stats.
 * - nb_channels: per channel c, dweight = sum(dy xhat) and (NB_DB) dbias = sum(dy) over its
 *   rows and spatial positions, xhat from the statistics of each element's group.
 * Sums in f64 where the device has doubles (NB_ACC), else f32. Options: XT, WG, NB_ROWS /
 * NB_GROUP / NB_BATCH, NB_RMS, NB_TRAIN, NB_W, NB_DB. */
#if defined(NB_GROUPS) || defined(NB_CHANNELS)
#ifdef ANYACCEL_FP64
typedef double nb_acc;
#define nb_sum group_sum_f64
#define NB_ST(p, i, v) CAT(cd_, XT)(p, i, (double)(v))
#else
typedef float nb_acc;
#define nb_sum group_sum_f32
#define NB_ST(p, i, v) X_SV(p, i, (float)(v))
#endif

#endif

#ifdef NB_GROUPS
/* dy w at (a, c, s). */
#ifdef NB_W
#define NB_DXHAT(a, c, s) ((nb_acc)X_LD(dy, yo + (a) * ya + (c) * yc + (s) * ys) * (nb_acc)X_LD(w, w_off + (c) * w_st))
#else
#define NB_DXHAT(a, c, s) ((nb_acc)X_LD(dy, yo + (a) * ya + (c) * yc + (s) * ys))
#endif

/* Element j of group g's box: its (a, c, s). */
#define NB_AT(j, a, c, s)                                                                        \
    const i64 s = (j) % S;                                                                      \
    const i64 c = c0 + ((j) / S) % nc;                                                           \
    const i64 a = a0 + (j) / (S * nc);

KERNEL void nb_groups(GLOBAL X_ST* dx, GLOBAL float* stats, GLOBAL const X_ST* dy,
                      GLOBAL const X_ST* x, GLOBAL const X_ST* w, GLOBAL const X_ST* mean_in,
                      GLOBAL const X_ST* inv_in, const i64 groups, const i64 A, const i64 C,
                      const i64 S, const i64 per, const i64 cg, const i64 xo, const i64 xa,
                      const i64 xc, const i64 xs, const i64 yo, const i64 ya, const i64 yc,
                      const i64 ys, const i64 dxo, const i64 dxa, const i64 dxc, const i64 dxs,
                      const i64 w_off, const i64 w_st, const i64 m_off, const i64 m_st,
                      const i64 i_off, const i64 i_st, const float eps) {
    LOCAL nb_acc red[WG];
    const int t = LOCAL_ID(0);
    for (i64 g = GROUP_ID(0); g < groups; g += NUM_GROUPS(0)) {
#if defined(NB_ROWS)
        const i64 a0 = g, na = 1, c0 = 0, nc = C;
#elif defined(NB_GROUP)
        const i64 a0 = g / per, na = 1, c0 = (g % per) * cg, nc = cg;
#else
        const i64 a0 = 0, na = A, c0 = g, nc = 1;
#endif
        const i64 len = na * nc * S;
        const nb_acc n = (nb_acc)len;
#if defined(NB_BATCH)
        const nb_acc mean = X_LD(mean_in, m_off + g * m_st);
        const nb_acc r = X_LD(inv_in, i_off + g * i_st);
#elif defined(NB_RMS)
        nb_acc q = 0;
        for (i64 j = t; j < len; j += WG) {
            NB_AT(j, a, c, s)
            const nb_acc v = X_LD(x, xo + a * xa + c * xc + s * xs);
            q += v * v;
        }
        const nb_acc mean = 0;
        const nb_acc r = (nb_acc)1 / sqrt(nb_sum(red, q) / n + (nb_acc)eps);
#else
        const nb_acc shift = len > 0 ? (nb_acc)X_LD(x, xo + a0 * xa + c0 * xc) : 0;
        const nb_acc first = shift - shift == 0 ? shift : 0;
        nb_acc sum = 0;
        for (i64 j = t; j < len; j += WG) {
            NB_AT(j, a, c, s)
            sum += (nb_acc)X_LD(x, xo + a * xa + c * xc + s * xs) - first;
        }
        const nb_acc dm = nb_sum(red, sum) / n;
        nb_acc q = 0;
        for (i64 j = t; j < len; j += WG) {
            NB_AT(j, a, c, s)
            const nb_acc d = ((nb_acc)X_LD(x, xo + a * xa + c * xc + s * xs) - first) - dm;
            q += d * d;
        }
        const nb_acc mean = first + dm;
        const nb_acc r = (nb_acc)1 / sqrt(nb_sum(red, q) / n + (nb_acc)eps);
#endif
        nb_acc ma = 0, mb = 0;
#if !defined(NB_BATCH) || defined(NB_TRAIN)
        nb_acc sa = 0, sb = 0;
        for (i64 j = t; j < len; j += WG) {
            NB_AT(j, a, c, s)
            const nb_acc d = NB_DXHAT(a, c, s);
            sa += d;
            sb += d * (((nb_acc)X_LD(x, xo + a * xa + c * xc + s * xs) - mean) * r);
        }
        sa = nb_sum(red, sa);
        sb = nb_sum(red, sb);
#ifndef NB_RMS
        ma = sa / n;
#endif
        mb = sb / n;
#endif
        for (i64 j = t; j < len; j += WG) {
            NB_AT(j, a, c, s)
            nb_acc d = X_LD(dy, yo + a * ya + c * yc + s * ys);
#ifdef NB_W
            d *= (nb_acc)X_LD(w, w_off + c * w_st);
#endif
            #if !defined(NB_BATCH) || defined(NB_TRAIN)
            const nb_acc xhat = ((nb_acc)X_LD(x, xo + a * xa + c * xc + s * xs) - mean) * r;
            NB_ST(dx, dxo + a * dxa + c * dxc + s * dxs, r * (d - ma - xhat * mb));
#else
            /* The statistics do not depend on x: no xhat term (x may be infinite). */
            NB_ST(dx, dxo + a * dxa + c * dxc + s * dxs, r * d);
#endif
        }
        if (t == 0) {
            stats[2 * g] = (float)mean;
            stats[2 * g + 1] = (float)r;
        }
        (void)w;
        (void)mean_in;
        (void)inv_in;
        BARRIER();
    }
}
#endif

#ifdef NB_CHANNELS
KERNEL void nb_channels(GLOBAL X_ST* dw, GLOBAL X_ST* db, GLOBAL const float* stats,
                        GLOBAL const X_ST* dy, GLOBAL const X_ST* x, const i64 A, const i64 C,
                        const i64 S, const i64 per, const i64 cg, const i64 xo, const i64 xa,
                        const i64 xc, const i64 xs, const i64 yo, const i64 ya, const i64 yc,
                        const i64 ys, const i64 w_off, const i64 w_st, const i64 b_off,
                        const i64 b_st) {
    LOCAL nb_acc red[WG];
    const int t = LOCAL_ID(0);
    for (i64 c = GROUP_ID(0); c < C; c += NUM_GROUPS(0)) {
        const i64 len = A * S;
        nb_acc sw = 0, sb = 0;
        for (i64 j = t; j < len; j += WG) {
            const i64 a = j / S, s = j - a * S;
#if defined(NB_ROWS)
            const i64 g = a;
#elif defined(NB_GROUP)
            const i64 g = a * per + c / cg;
#else
            const i64 g = c;
#endif
            const nb_acc y = X_LD(dy, yo + a * ya + c * yc + s * ys);
            const nb_acc xhat = ((nb_acc)X_LD(x, xo + a * xa + c * xc + s * xs) - (nb_acc)stats[2 * g]) * (nb_acc)stats[2 * g + 1];
            sw += y * xhat;
            sb += y;
        }
        sw = nb_sum(red, sw);
        sb = nb_sum(red, sb);
        if (t == 0) {
            NB_ST(dw, w_off + c * w_st, sw);
#ifdef NB_DB
            NB_ST(db, b_off + c * b_st, sb);
#endif
        }
        (void)db;
        (void)per;
        (void)cg;
    }
}
#endif
