/* The three passes of a convolution, one work item per result element (grid-stride), each
 * over the convolution's geometry: nb samples, c input channels (cg per group), o output
 * channels (og per group), input ih x iw, output oh x ow, kernel kh x kw, stride, padding and
 * dilation. Every tensor is read through the strides of its 4-D view (a 1-D convolution's
 * height has size 1 and stride 0), so strided and offset views need no copy. Positions in the
 * zero padding are skipped.
 * - conv_direct (conv1d/2d; a = x, b = weight): out[n, oc, oy, ox] = the sum over the group's
 *   input channels ci and the taps (ky, kx) of x[n, g cg + ci, oy sh + ky dh - ph, ...] *
 *   w[oc, ci, ky, kx].
 * - conv_data (conv_transpose1d/2d, conv{1,2}d_backward_input; a = the output-shaped input y,
 *   b = weight): out[n, ch, iy, ix] = the sum over the group's output channels oc and the taps
 *   whose output position oy = (iy + ph - ky dh) / sh is whole and inside [0, oh) (and so ox)
 *   of y[n, oc, oy, ox] * w[oc, ch - g cg, ky, kx].
 * - conv_filter (conv{1,2}d_backward_weight; a = grad, b = x): out[oc, ci, ky, kx] = the sum
 *   over n, oy, ox whose input position is inside the input of grad[n, oc, oy, ox] *
 *   x[n, g cg + ci, iy, ix].
 * f32 accumulation (conv_filter: f64 where the device has doubles), then the bias
 * (CONV_BIAS: channel oc, or ch for a transpose). Where the f32 sum is not finite and the device has doubles, the element is summed again in f64 (an
 * intermediate overflow must not turn a finite or infinite result into NaN).
 * Options: XT (the dtype), CONV_DIRECT / CONV_DATA / CONV_FILTER, CONV_BIAS. */
#if defined(CONV_DIRECT) || defined(CONV_DATA) || defined(CONV_FILTER)
#if defined(CONV_DIRECT)
#define CONV_ENTRY conv_direct
/* Result element lin is (n, oc, oy, ox); bch is its bias channel. */
#define CONV_AT                                                                                  \
    const i64 ox = lin % ow;                                                                     \
    const i64 oy = (lin / ow) % oh;                                                              \
    const i64 oc = (lin / (ow * oh)) % o;                                                        \
    const i64 n = lin / (ow * oh * o);                                                           \
    const i64 grp = oc / og;                                                                     \
    const i64 bch = oc;                                                                          \
    const i64 at = oo + n * os0 + oc * os1 + oy * os2 + ox * os3;
#define CONV_SUM(T, acc)                                                                         \
    for (i64 ci = 0; ci < cg; ++ci) {                                                            \
        const i64 xb = ao + n * as0 + (grp * cg + ci) * as1;                                     \
        const i64 wb = bo + oc * bs0 + ci * bs1;                                                 \
        for (i64 ky = 0; ky < kh; ++ky) {                                                        \
            const i64 iy = oy * sh + ky * dh - ph;                                               \
            if (iy < 0 || iy >= ih) continue;                                                    \
            for (i64 kx = 0; kx < kw; ++kx) {                                                    \
                const i64 ix = ox * sw + kx * dw - pw;                                           \
                if (ix < 0 || ix >= iw) continue;                                                \
                acc += (T)X_LD(a, xb + iy * as2 + ix * as3) * (T)X_LD(b, wb + ky * bs2 + kx * bs3); \
            }                                                                                    \
        }                                                                                        \
    }
#elif defined(CONV_DATA)
#define CONV_ENTRY conv_data
#define CONV_AT                                                                                  \
    const i64 ix = lin % iw;                                                                     \
    const i64 iy = (lin / iw) % ih;                                                              \
    const i64 ch = (lin / (iw * ih)) % c;                                                        \
    const i64 n = lin / (iw * ih * c);                                                           \
    const i64 grp = ch / cg, ci = ch - grp * cg;                                                 \
    const i64 bch = ch;                                                                          \
    const i64 at = oo + n * os0 + ch * os1 + iy * os2 + ix * os3;
#define CONV_SUM(T, acc)                                                                         \
    for (i64 oc = grp * og; oc < (grp + 1) * og; ++oc) {                                         \
        const i64 yb = ao + n * as0 + oc * as1;                                                  \
        const i64 wb = bo + oc * bs0 + ci * bs1;                                                 \
        for (i64 ky = 0; ky < kh; ++ky) {                                                        \
            const i64 ty = iy + ph - ky * dh;                                                    \
            if (ty < 0 || ty % sh != 0 || ty / sh >= oh) continue;                               \
            for (i64 kx = 0; kx < kw; ++kx) {                                                    \
                const i64 tx = ix + pw - kx * dw;                                                \
                if (tx < 0 || tx % sw != 0 || tx / sw >= ow) continue;                           \
                acc += (T)X_LD(a, yb + ty / sh * as2 + tx / sw * as3) * (T)X_LD(b, wb + ky * bs2 + kx * bs3); \
            }                                                                                    \
        }                                                                                        \
    }
#else
#define CONV_ENTRY conv_filter
#define CONV_AT                                                                                  \
    const i64 kx = lin % kw;                                                                     \
    const i64 ky = (lin / kw) % kh;                                                              \
    const i64 ci = (lin / (kw * kh)) % cg;                                                       \
    const i64 oc = lin / (kw * kh * cg);                                                         \
    const i64 ch = oc / og * cg + ci;                                                            \
    const i64 bch = 0;                                                                           \
    const i64 at = oo + oc * os0 + ci * os1 + ky * os2 + kx * os3;
#define CONV_SUM(T, acc)                                                                         \
    for (i64 n = 0; n < nb; ++n) {                                                               \
        const i64 yb = ao + n * as0 + oc * as1;                                                  \
        const i64 xb = bo + n * bs0 + ch * bs1;                                                  \
        for (i64 oy = 0; oy < oh; ++oy) {                                                        \
            const i64 iy = oy * sh + ky * dh - ph;                                               \
            if (iy < 0 || iy >= ih) continue;                                                    \
            for (i64 ox = 0; ox < ow; ++ox) {                                                    \
                const i64 ix = ox * sw + kx * dw - pw;                                           \
                if (ix < 0 || ix >= iw) continue;                                                \
                acc += (T)X_LD(a, yb + oy * as2 + ox * as3) * (T)X_LD(b, xb + iy * bs2 + ix * bs3); \
            }                                                                                    \
        }                                                                                        \
    }
#endif

KERNEL void CONV_ENTRY(GLOBAL X_ST* out, GLOBAL const X_ST* a, GLOBAL const X_ST* b,
                       GLOBAL const X_ST* bias, const i64 total, const i64 nb, const i64 c,
                       const i64 o, const i64 oh, const i64 ow, const i64 ih, const i64 iw,
                       const i64 cg, const i64 og, const i64 kh, const i64 kw, const i64 sh,
                       const i64 sw, const i64 ph, const i64 pw, const i64 dh, const i64 dw,
                       const i64 ao, const i64 as0, const i64 as1, const i64 as2, const i64 as3,
                       const i64 bo, const i64 bs0, const i64 bs1, const i64 bs2, const i64 bs3,
                       const i64 oo, const i64 os0, const i64 os1, const i64 os2, const i64 os3,
                       const i64 bias_o, const i64 bias_s) {
    FOR_EACH_INDEX(lin, total) {
        CONV_AT
#if defined(CONV_FILTER) && defined(ANYACCEL_FP64)
        /* A weight gradient sums n x oh x ow terms: in f64 where the device has doubles. */
        double wide = 0.0;
        CONV_SUM(double, wide)
        (void)bch;
        CAT(cd_, XT)(out, at, wide);
        continue;
#endif
        float acc = 0.0f;
        CONV_SUM(float, acc)
#ifdef CONV_BIAS
        acc += X_LD(bias, bias_o + bch * bias_s);
#endif
#ifdef ANYACCEL_FP64
        if (!(acc - acc == 0.0f)) {
            double wide = 0.0;
            CONV_SUM(double, wide)
#ifdef CONV_BIAS
            wide += (double)X_LD(bias, bias_o + bch * bias_s);
#endif
            CAT(cd_, XT)(out, at, wide);
            continue;
        }
#endif
        (void)bch;
        X_SV(out, at, acc);
    }
}
#endif

/* max_pool1d/2d (pool_max) and avg_pool1d/2d (pool_avg): one work item per output element
 * out[n, c, oy, ox] (grid-stride), through the 4-D views' strides (1-D pools: height 1, stride
 * 0). Window taps outside the input are skipped. pool_max: the largest tap, NaN propagating
 * (the first NaN's index), ties to the first tap; its plane index h * W + w goes to `idx`
 * (i64); a window without a tap gives -inf and -1. pool_avg: the f32 sum of the window clipped
 * to the input, over the pool size within the padded input (POOL_COUNT_PAD) or the clipped
 * window's element count. */
#if defined(POOL_MAX) || defined(POOL_AVG)
KERNEL void pool_run(GLOBAL X_ST* out, GLOBAL i64* idx, GLOBAL const X_ST* x, const i64 total,
                     const i64 c, const i64 oh, const i64 ow, const i64 ih, const i64 iw,
                     const i64 kh, const i64 kw, const i64 sh, const i64 sw, const i64 ph,
                     const i64 pw, const i64 dh, const i64 dw, const i64 xo, const i64 xs0,
                     const i64 xs1, const i64 xs2, const i64 xs3, const i64 oo, const i64 os0,
                     const i64 os1, const i64 os2, const i64 os3, const i64 io, const i64 is0,
                     const i64 is1, const i64 is2, const i64 is3) {
    FOR_EACH_INDEX(lin, total) {
        const i64 ox = lin % ow;
        const i64 oy = (lin / ow) % oh;
        const i64 ch = (lin / (ow * oh)) % c;
        const i64 n = lin / (ow * oh * c);
        const i64 xb = xo + n * xs0 + ch * xs1;
        const i64 y0 = oy * sh - ph;
        const i64 x0 = ox * sw - pw;
#ifdef POOL_MAX
        float best = -F32_INF;
        i64 at = -1;
        int nan = 0;
        for (i64 ky = 0; ky < kh && !nan; ++ky) {
            const i64 iy = y0 + ky * dh;
            if (iy < 0 || iy >= ih) continue;
            for (i64 kx = 0; kx < kw; ++kx) {
                const i64 ix = x0 + kx * dw;
                if (ix < 0 || ix >= iw) continue;
                const float v = X_LD(x, xb + iy * xs2 + ix * xs3);
                if (v != v) {
                    best = v;
                    at = iy * iw + ix;
                    nan = 1;
                    break;
                }
                if (v > best || at < 0) {
                    best = v;
                    at = iy * iw + ix;
                }
            }
        }
        X_SV(out, oo + n * os0 + ch * os1 + oy * os2 + ox * os3, best);
        idx[io + n * is0 + ch * is1 + oy * is2 + ox * is3] = at;
#else
        i64 ye = y0 + kh < ih + ph ? y0 + kh : ih + ph;
        i64 xe = x0 + kw < iw + pw ? x0 + kw : iw + pw;
        const i64 pool = (ye - y0) * (xe - x0);
        const i64 ys = y0 < 0 ? 0 : y0;
        const i64 xs = x0 < 0 ? 0 : x0;
        ye = ye < ih ? ye : ih;
        xe = xe < iw ? xe : iw;
        float sum = 0.0f;
        for (i64 iy = ys; iy < ye; ++iy)
            for (i64 ix = xs; ix < xe; ++ix) sum += X_LD(x, xb + iy * xs2 + ix * xs3);
#ifdef POOL_COUNT_PAD
        const i64 divisor = pool;
#else
        const i64 divisor = (ye > ys ? ye - ys : 0) * (xe > xs ? xe - xs : 0);
#endif
        const i64 at = oo + n * os0 + ch * os1 + oy * os2 + ox * os3;
#ifdef ANYACCEL_FP64
        /* A sum that overflowed f32 is taken again in f64. */
        if (!(sum - sum == 0.0f)) {
            double wide = 0.0;
            for (i64 iy = ys; iy < ye; ++iy)
                for (i64 ix = xs; ix < xe; ++ix) wide += (double)X_LD(x, xb + iy * xs2 + ix * xs3);
            CAT(cd_, XT)(out, at, wide / (double)divisor);
            continue;
        }
#endif
        X_SV(out, at, sum / (float)divisor);
#endif
    }
}
#endif

/* adaptive_avg_pool2d (RS_ADAPTIVE), interpolate nearest (RS_NEAREST), bilinear (RS_BILINEAR)
 * and bicubic (RS_BICUBIC; RS_ALIGN for align_corners): one work item per output element
 * out[n, c, oy, ox], through the 4-D views' strides. Window bounds and source positions are
 * exact integer fractions: adaptive rows floor(i H / OH) .. ceil((i + 1) H / OH); nearest
 * floor(i H / OH); bilinear num / den with num = i (H - 1), den = OH - 1 (align_corners) or
 * num = max((2 i + 1) H - OH, 0), den = 2 OH; bicubic the same unclamped (rs_cubic). */
#ifdef RS_BILINEAR
DEVICE void rs_tap(const i64 i, const i64 len, const i64 out, i64* i0, i64* i1, float* l) {
#ifdef RS_ALIGN
    const i64 num = out > 1 ? i * (len - 1) : 0;
    const i64 den = out > 1 ? out - 1 : 1;
#else
    const i64 raw = (2 * i + 1) * len - out;
    const i64 num = raw > 0 ? raw : 0;
    const i64 den = 2 * out;
#endif
    i64 a = num / den;
    a = a < len - 1 ? a : len - 1;
    *i0 = a;
    *i1 = a + 1 < len - 1 ? a + 1 : len - 1;
    const float f = (float)(num - a * den) / (float)den;
    *l = f < 1.0f ? f : 1.0f;
}
#endif

#ifdef RS_BICUBIC
/* Bicubic: the floor of output i's source position num / den (which may be negative) along a
 * dimension of len inputs and out outputs, and its fractional part in *t. align_corners (RS_ALIGN):
 * num = i (len - 1), den = out - 1 (0 / 1 when out = 1); else num = (2 i + 1) len - out,
 * den = 2 out. */
DEVICE i64 rs_cubic(const i64 i, const i64 len, const i64 out, float* t) {
#ifdef RS_ALIGN
    const i64 num = out > 1 ? i * (len - 1) : 0;
    const i64 den = out > 1 ? out - 1 : 1;
#else
    const i64 num = (2 * i + 1) * len - out;
    const i64 den = 2 * out;
#endif
    i64 b = num / den;
    if (num % den != 0 && num < 0) b -= 1;
    *t = (float)(num - b * den) / (float)den;
    return b;
}

/* The weight of tap k (offset k - 1 from the floor) at fraction t: Keys' cubic convolution with
 * a = -0.75, as PyTorch. */
DEVICE float rs_cw(const int k, const float t) {
    const float a = -0.75f;
    const float x = k == 0 ? t + 1.0f : (k == 1 ? t : (k == 2 ? 1.0f - t : 2.0f - t));
    return (k == 1 || k == 2) ? ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f
                              : ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
}

/* Index v clamped to 0 .. len - 1. */
DEVICE i64 rs_clamp(const i64 v, const i64 len) {
    return v < 0 ? 0 : (v > len - 1 ? len - 1 : v);
}
#endif

#ifdef RESAMPLE

KERNEL void resample(GLOBAL X_ST* out, GLOBAL const X_ST* x, const i64 total, const i64 c,
                     const i64 oh, const i64 ow, const i64 ih, const i64 iw, const i64 xo,
                     const i64 xs0, const i64 xs1, const i64 xs2, const i64 xs3, const i64 oo,
                     const i64 os0, const i64 os1, const i64 os2, const i64 os3) {
    FOR_EACH_INDEX(lin, total) {
        const i64 ox = lin % ow;
        const i64 oy = (lin / ow) % oh;
        const i64 ch = (lin / (ow * oh)) % c;
        const i64 n = lin / (ow * oh * c);
        const i64 xb = xo + n * xs0 + ch * xs1;
        const i64 at = oo + n * os0 + ch * os1 + oy * os2 + ox * os3;
#if defined(RS_ADAPTIVE)
        const i64 ys = oy * ih / oh, ye = ((oy + 1) * ih + oh - 1) / oh;
        const i64 x0 = ox * iw / ow, x1 = ((ox + 1) * iw + ow - 1) / ow;
        float sum = 0.0f;
        for (i64 iy = ys; iy < ye; ++iy)
            for (i64 ix = x0; ix < x1; ++ix) sum += X_LD(x, xb + iy * xs2 + ix * xs3);
        const i64 cnt = (ye - ys) * (x1 - x0);
#ifdef ANYACCEL_FP64
        /* A sum that overflowed f32 is taken again in f64. */
        if (!(sum - sum == 0.0f)) {
            double wide = 0.0;
            for (i64 iy = ys; iy < ye; ++iy)
                for (i64 ix = x0; ix < x1; ++ix) wide += (double)X_LD(x, xb + iy * xs2 + ix * xs3);
            CAT(cd_, XT)(out, at, wide / (double)cnt);
            continue;
        }
#endif
        X_SV(out, at, sum / (float)cnt);
#elif defined(RS_NEAREST)
        X_SV(out, at, X_LD(x, xb + (oy * ih / oh) * xs2 + (ox * iw / ow) * xs3));
#elif defined(RS_BICUBIC)
        float ty, tx;
        const i64 by = rs_cubic(oy, ih, oh, &ty), bx = rs_cubic(ox, iw, ow, &tx);
        float acc = 0.0f;
        for (int ky = 0; ky < 4; ++ky) {
            const i64 row = xb + rs_clamp(by + ky - 1, ih) * xs2;
            float r = 0.0f;
            for (int kx = 0; kx < 4; ++kx)
                r += rs_cw(kx, tx) * X_LD(x, row + rs_clamp(bx + kx - 1, iw) * xs3);
            acc += rs_cw(ky, ty) * r;
        }
        X_SV(out, at, acc);
#else
        i64 y0, y1, x0, x1;
        float ly, lx;
        rs_tap(oy, ih, oh, &y0, &y1, &ly);
        rs_tap(ox, iw, ow, &x0, &x1, &lx);
        const float top = (1.0f - lx) * X_LD(x, xb + y0 * xs2 + x0 * xs3) +
                          lx * X_LD(x, xb + y0 * xs2 + x1 * xs3);
        const float bottom = (1.0f - lx) * X_LD(x, xb + y1 * xs2 + x0 * xs3) +
                             lx * X_LD(x, xb + y1 * xs2 + x1 * xs3);
        X_SV(out, at, (1.0f - ly) * top + ly * bottom);
#endif
    }
}
#endif

#if defined(GN_GROUPS) || defined(BN_CHANNELS)
/* The offset of element j of a group (batch_norm: a channel) of sp-element runs cs apart. */
DEVICE i64 gn_at(const Lay* S, const i64 base, const i64 cs, const i64 sp, const i64 j,
                 const int op) {
    const i64 ci = j / sp;
    i64 so[2];
    lay_offsets(S, SRANK, 2, j - ci * sp, so);
    return base + ci * cs + so[op];
}

/* The statistics of a group (batch_norm: a channel) of len elements: the group is scaled by
 * sc, a power of two near 1 / max|x|, so that sums of squares cannot overflow where the exact
 * result is finite, and summed relative to shift, its first element scaled (0 when that is
 * infinite or NaN). dm: the scaled mean less shift; inv: 1 / the scaled standard deviation. */
typedef struct {
    float sc, shift, dm, inv;
} GnStats;

DEVICE GnStats gn_stats(GLOBAL const X_ST* x, const Lay* S, const i64 xb, const i64 cs,
                        const i64 sp, const i64 len, LOCAL_PTR float* red, const int t,
                        const float eps) {
    GnStats r;
    float big = 0.0f;
    for (i64 j = t; j < len; j += WG) big = max_nan(big, fabsf(X_LD(x, gn_at(S, xb, cs, sp, j, 0))));
    big = group_max_f32(red, big);
    r.sc = 1.0f;
    if (big > 0.0f && big < F32_INF) {
        i32 e = ilogbf(big);
        e = e < -100 ? -100 : (e > 100 ? 100 : e);
        r.sc = ldexpf(1.0f, -e);
    }
    const float nf = (float)len;
    const float first = len > 0 ? X_LD(x, gn_at(S, xb, cs, sp, 0, 0)) * r.sc : 0.0f;
    r.shift = first - first == 0.0f ? first : 0.0f;
    float s = 0.0f;
    for (i64 j = t; j < len; j += WG) s += X_LD(x, gn_at(S, xb, cs, sp, j, 0)) * r.sc - r.shift;
    r.dm = group_sum_f32(red, s) / nf;
    float q = 0.0f;
    for (i64 j = t; j < len; j += WG) {
        const float d = (X_LD(x, gn_at(S, xb, cs, sp, j, 0)) * r.sc - r.shift) - r.dm;
        q += d * d;
    }
    const float var = group_sum_f32(red, q) / nf;
    const float denom = sqrtf(var + eps * r.sc * r.sc);
    /* A group whose deviations are all 0 gives 0 when eps > 0, even where eps * sc^2
     * underflows. */
    r.inv = (denom == 0.0f && eps > 0.0f) ? 0.0f : 1.0f / denom;
    return r;
}
#endif

/* group_norm (gn_groups): one work-group of WG items per (n, group) of cg channels times the
 * spatial size; S is the layout of the spatial dimensions (operand 0 x, 1 out; rank SRANK).
 * The statistics come from gn_stats (as ln_rows: scaled, relative to the first element).
 * GN_W, GN_B: the per-channel weight and bias (offset, stride). */
#ifdef GN_GROUPS
KERNEL void gn_groups(GLOBAL X_ST* out, GLOBAL const X_ST* x, GLOBAL const X_ST* w,
                      GLOBAL const X_ST* b, const Lay S, const i64 ngroups, const i64 groups,
                      const i64 cg, const i64 sp, const i64 xs0, const i64 xs1, const i64 os0,
                      const i64 os1, const i64 xo, const i64 oo, const i64 w_off,
                      const i64 w_st, const i64 b_off, const i64 b_st, const float eps) {
    LOCAL float red[WG];
    const int t = LOCAL_ID(0);
    const i64 len = cg * sp;
    for (i64 ng = GROUP_ID(0); ng < ngroups; ng += NUM_GROUPS(0)) {
        const i64 n = ng / groups, grp = ng - n * groups;
        const i64 xb = xo + n * xs0 + grp * cg * xs1;
        const i64 ob = oo + n * os0 + grp * cg * os1;
        const GnStats st = gn_stats(x, &S, xb, xs1, sp, len, red, t, eps);
        for (i64 j = t; j < len; j += WG) {
            float y = ((X_LD(x, gn_at(&S, xb, xs1, sp, j, 0)) * st.sc - st.shift) - st.dm) * st.inv;
            const i64 ch = grp * cg + j / sp;
#ifdef GN_W
            y *= X_LD(w, w_off + ch * w_st);
#endif
#ifdef GN_B
            y += X_LD(b, b_off + ch * b_st);
#endif
            X_SV(out, gn_at(&S, ob, os1, sp, j, 1), y);
        }
    }
}
#endif

/* batch_norm (bn_channels): one work-group of WG items per channel, over its N runs of the
 * spatial size (gn_at with the runs xs0 / os0 apart). BN_TRAIN: the batch's mean and biased
 * variance, scaled and shifted as gn_groups; else the running statistics rm, rv. Then
 * (x - mean) * invstd * w + b (BN_W, BN_B); item 0 writes the mean and invstd. */
#ifdef BN_CHANNELS
KERNEL void bn_channels(GLOBAL X_ST* out, GLOBAL X_ST* mean_out, GLOBAL X_ST* invstd_out,
                        GLOBAL const X_ST* x, GLOBAL const X_ST* rm, GLOBAL const X_ST* rv,
                        GLOBAL const X_ST* w, GLOBAL const X_ST* b, const Lay S, const i64 c,
                        const i64 nb, const i64 sp, const i64 xs0, const i64 xs1,
                        const i64 os0, const i64 os1, const i64 xo, const i64 oo,
                        const i64 mo, const i64 ms, const i64 io, const i64 is,
                        const i64 rm_off, const i64 rm_st, const i64 rv_off, const i64 rv_st,
                        const i64 w_off, const i64 w_st, const i64 b_off, const i64 b_st,
                        const float eps) {
    LOCAL float red[WG];
    const int t = LOCAL_ID(0);
    const i64 len = nb * sp;
    for (i64 ch = GROUP_ID(0); ch < c; ch += NUM_GROUPS(0)) {
        const i64 xb = xo + ch * xs1;
        const i64 ob = oo + ch * os1;
#ifdef BN_TRAIN
        const GnStats st = gn_stats(x, &S, xb, xs0, sp, len, red, t, eps);
        const float mean = (st.shift + st.dm) / st.sc;
        const float invstd = st.inv * st.sc;
#else
        const float mean = X_LD(rm, rm_off + ch * rm_st);
        const float invstd = 1.0f / sqrtf(X_LD(rv, rv_off + ch * rv_st) + eps);
#endif
        float wv = 1.0f, bv = 0.0f;
#ifdef BN_W
        wv = X_LD(w, w_off + ch * w_st);
#endif
#ifdef BN_B
        bv = X_LD(b, b_off + ch * b_st);
#endif
        /* The scale and weight are multiplied first: (x - mean) * (invstd * w) overflows f32
         * only where the result does. */
        for (i64 j = t; j < len; j += WG) {
#ifdef BN_TRAIN
            const float y = ((X_LD(x, gn_at(&S, xb, xs0, sp, j, 0)) * st.sc - st.shift) - st.dm) * (st.inv * wv);
#else
            const float y = (X_LD(x, gn_at(&S, xb, xs0, sp, j, 0)) - mean) * (invstd * wv);
#endif
            X_SV(out, gn_at(&S, ob, os0, sp, j, 1), y + bv);
        }
        if (t == 0) {
            X_SV(mean_out, mo + ch * ms, mean);
            X_SV(invstd_out, io + ch * is, invstd);
        }
        BARRIER();
    }
}
#endif

/* Pooling and resampling gradients (pool_back): one work item per element dx[n, c, iy, ix]
 * (grid-stride) summing wy * wx * grad[n, c, oy, ox] over the outputs (oy, ox) that read it,
 * found per dimension by pb_range and pb_tap with the rules of the op layer's PoolBack::taps:
 * - PB_POOL: kernel tap j reads input i from the window at o = (i + pad - j dil) / st when that
 *   is whole and inside [0, outn); the factor is 1 (PB_MAX: then the window's index must name
 *   the element) or one dimension of avg_pool's divisor (POOL_COUNT_PAD as the forward op);
 * - RS_ADAPTIVE, RS_NEAREST, RS_BILINEAR, RS_BICUBIC (RS_ALIGN): the outputs lo .. lo + n that
 *   may read i,
 *   each checked, with the factor of the forward op's window or taps.
 * f32 sums; an element whose sum is not finite is summed again in f64 where the device has
 * doubles. Options: XT, PB_POOL / RS_*, PB_MAX (with IT, the indices' dtype), POOL_COUNT_PAD. */
#ifdef POOL_BACK
#ifdef PB_MAX
typedef CAT(st_, IT) pb_idx_t;
#else
typedef i64 pb_idx_t;
#endif

typedef struct {
    i64 lo, n;
} PbRange;

DEVICE PbRange pb_range(const i64 i, const i64 len, const i64 outn, const i64 k) {
    PbRange r;
#if defined(PB_POOL)
    r.lo = 0;
    r.n = k;
#else
    i64 lo, hi;
#if defined(RS_ADAPTIVE)
    lo = i * outn / len;
    hi = ((i + 1) * outn + len - 1) / len;
#elif defined(RS_NEAREST)
    lo = (i * outn + len - 1) / len;
    hi = ((i + 1) * outn + len - 1) / len;
#else
    /* The outputs whose source position lies within RS_BACK rows of i (bilinear reads floor and
     * floor + 1, bicubic floor - 1 .. floor + 2), widened by the rounding of the scale. */
#ifdef RS_BICUBIC
    const i64 back = 2;
#else
    const i64 back = 1;
#endif
    if (len == 1) {
        lo = 0;
        hi = outn;
    } else {
        const i64 im = i > back ? i - back : 0;
#ifdef RS_ALIGN
        lo = im * (outn - 1) / (len - 1) - 1;
        hi = ((i + back) * (outn - 1) + len - 2) / (len - 1) + 2;
#else
        lo = im * outn / len - 2;
        hi = ((i + back + 1) * outn + len - 1) / len + 2;
#endif
#ifdef RS_BICUBIC
        /* The edges' clamped taps reach every output from the start or to the end. */
        if (i == 0) lo = 0;
        if (i == len - 1) hi = outn;
#endif
    }
#endif
    lo = lo < 0 ? 0 : (lo > outn ? outn : lo);
    hi = hi > outn ? outn : hi;
    r.lo = lo;
    r.n = hi > lo ? hi - lo : 0;
    (void)k;
#endif
    return r;
}

DEVICE int pb_tap(const i64 j, const PbRange r, const i64 i, const i64 len, const i64 outn,
                  const i64 k, const i64 st, const i64 pad, const i64 dil, i64* o, float* w) {
#if defined(PB_POOL)
    const i64 t = i + pad - j * dil;
    (void)r;
    if (t < 0 || t % st != 0 || t / st >= outn) return 0;
    *o = t / st;
#ifdef PB_MAX
    *w = 1.0f;
    (void)len;
    (void)k;
#else
    const i64 s = *o * st - pad;
    const i64 e = s + k < len + pad ? s + k : len + pad;
#ifdef POOL_COUNT_PAD
    *w = 1.0f / (float)(e - s);
#else
    *w = 1.0f / (float)((e < len ? e : len) - (s > 0 ? s : 0));
#endif
#endif
    return 1;
#else
    const i64 at = r.lo + j;
    (void)k;
    (void)st;
    (void)pad;
    (void)dil;
    *o = at;
#if defined(RS_ADAPTIVE)
    const i64 s = at * len / outn, e = ((at + 1) * len + outn - 1) / outn;
    *w = 1.0f / (float)(e - s);
    return s <= i && i < e;
#elif defined(RS_NEAREST)
    *w = 1.0f;
    return at * len / outn == i;
#elif defined(RS_BICUBIC)
    /* Clamped taps may read i more than once: their weights add. */
    float t;
    const i64 b = rs_cubic(at, len, outn, &t);
    float sum = 0.0f;
    int hit = 0;
    for (int k = 0; k < 4; ++k) {
        if (rs_clamp(b + k - 1, len) == i) {
            sum += rs_cw(k, t);
            hit = 1;
        }
    }
    *w = sum;
    return hit;
#else
    i64 i0, i1;
    float l;
    rs_tap(at, len, outn, &i0, &i1, &l);
    *w = (i0 == i ? 1.0f - l : 0.0f) + (i1 == i ? l : 0.0f);
    return i0 == i || i1 == i;
#endif
#endif
}

#ifdef PB_MAX
#define PB_CHECK                                                                                 \
    if ((i64)idx[ib + oy * is2 + ox * is3] != iy * iw + ix) continue;
#else
#define PB_CHECK
#endif

#define PB_SUM(T, acc)                                                                           \
    for (i64 jy = 0; jy < ry.n; ++jy) {                                                          \
        i64 oy;                                                                                  \
        float wy;                                                                                \
        if (!pb_tap(jy, ry, iy, ih, oh, kh, sh, ph, dh, &oy, &wy)) continue;                     \
        for (i64 jx = 0; jx < rx.n; ++jx) {                                                      \
            i64 ox;                                                                              \
            float wx;                                                                            \
            if (!pb_tap(jx, rx, ix, iw, ow, kw, sw, pw, dw, &ox, &wx)) continue;                 \
            PB_CHECK                                                                             \
            acc += (T)wy * (T)wx * (T)X_LD(grad, gb + oy * gs2 + ox * gs3);                      \
        }                                                                                        \
    }

KERNEL void pool_back(GLOBAL X_ST* out, GLOBAL const X_ST* grad, GLOBAL const pb_idx_t* idx,
                      const i64 total, const i64 c, const i64 oh, const i64 ow, const i64 ih,
                      const i64 iw, const i64 kh, const i64 kw, const i64 sh, const i64 sw,
                      const i64 ph, const i64 pw, const i64 dh, const i64 dw, const i64 go,
                      const i64 gs0, const i64 gs1, const i64 gs2, const i64 gs3, const i64 io,
                      const i64 is0, const i64 is1, const i64 is2, const i64 is3, const i64 oo,
                      const i64 os0, const i64 os1, const i64 os2, const i64 os3) {
    FOR_EACH_INDEX(lin, total) {
        const i64 ix = lin % iw;
        const i64 iy = (lin / iw) % ih;
        const i64 ch = (lin / (iw * ih)) % c;
        const i64 n = lin / (iw * ih * c);
        const i64 gb = go + n * gs0 + ch * gs1;
        const i64 ib = io + n * is0 + ch * is1;
        const i64 at = oo + n * os0 + ch * os1 + iy * os2 + ix * os3;
        const PbRange ry = pb_range(iy, ih, oh, kh), rx = pb_range(ix, iw, ow, kw);
        (void)ib;
        float acc = 0.0f;
        PB_SUM(float, acc)
#ifdef ANYACCEL_FP64
        if (!(acc - acc == 0.0f)) {
            double wide = 0.0;
            PB_SUM(double, wide)
            CAT(cd_, XT)(out, at, wide);
            continue;
        }
#endif
        X_SV(out, at, acc);
    }
}
#endif
