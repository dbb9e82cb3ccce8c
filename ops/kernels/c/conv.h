/* conv1d and conv2d (conv_direct): one work item per output element out[n, oc, oy, ox]
 * (grid-stride), f32 accumulation over the group's input channels and the kernel window, then
 * the bias. Input positions in the zero padding are skipped. Every tensor is read through the
 * strides of its 4-D view (a conv1d's height has size 1 and stride 0), so strided and offset
 * views need no copy. Where the f32 sum is not finite and the device has doubles, the element
 * is summed again in f64 (an intermediate overflow must not turn a finite or infinite result
 * into NaN).
 * Options: XT (the dtype), CONV_BIAS (a bias input is given). */
#ifdef CONV_DIRECT
/* acc (of type T) += the products of output element (n, oc, oy, ox)'s window. */
#define CONV_SUM(T, acc)                                                                         \
    for (i64 ci = 0; ci < cg; ++ci) {                                                            \
        const i64 xb = xo + n * xs0 + (grp * cg + ci) * xs1;                                     \
        const i64 wb = wo + oc * ws0 + ci * ws1;                                                 \
        for (i64 ky = 0; ky < kh; ++ky) {                                                        \
            const i64 iy = oy * sh + ky * dh - ph;                                               \
            if (iy < 0 || iy >= ih) continue;                                                    \
            for (i64 kx = 0; kx < kw; ++kx) {                                                    \
                const i64 ix = ox * sw + kx * dw - pw;                                           \
                if (ix < 0 || ix >= iw) continue;                                                \
                acc += (T)X_LD(x, xb + iy * xs2 + ix * xs3) * (T)X_LD(w, wb + ky * ws2 + kx * ws3); \
            }                                                                                    \
        }                                                                                        \
    }

KERNEL void conv_direct(GLOBAL X_ST* out, GLOBAL const X_ST* x, GLOBAL const X_ST* w,
                        GLOBAL const X_ST* bias, const i64 total, const i64 o, const i64 oh,
                        const i64 ow, const i64 ih, const i64 iw, const i64 cg, const i64 og,
                        const i64 kh, const i64 kw, const i64 sh, const i64 sw, const i64 ph,
                        const i64 pw, const i64 dh, const i64 dw, const i64 xo, const i64 xs0,
                        const i64 xs1, const i64 xs2, const i64 xs3, const i64 wo, const i64 ws0,
                        const i64 ws1, const i64 ws2, const i64 ws3, const i64 oo, const i64 os0,
                        const i64 os1, const i64 os2, const i64 os3, const i64 bo, const i64 bs) {
    FOR_EACH_INDEX(lin, total) {
        const i64 ox = lin % ow;
        const i64 oy = (lin / ow) % oh;
        const i64 oc = (lin / (ow * oh)) % o;
        const i64 n = lin / (ow * oh * o);
        const i64 grp = oc / og;
        const i64 at = oo + n * os0 + oc * os1 + oy * os2 + ox * os3;
        float acc = 0.0f;
        CONV_SUM(float, acc)
#ifdef CONV_BIAS
        acc += X_LD(bias, bo + oc * bs);
#endif
#ifdef ANYACCEL_FP64
        if (!(acc - acc == 0.0f)) {
            double wide = 0.0;
            CONV_SUM(double, wide)
#ifdef CONV_BIAS
            wide += (double)X_LD(bias, bo + oc * bs);
#endif
            CAT(cd_, XT)(out, at, wide);
            continue;
        }
#endif
        X_SV(out, at, acc);
    }
}
#endif
