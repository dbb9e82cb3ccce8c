/* The quantized ops (docs/ops.md, "Quantized ops"): quantize, dequantize, matmul_wq, matmul_i8.
 * Every operand is a 2-D view: element (r, c) at off + r * rs + c * cs (the launcher copies a
 * tensor whose leading dims have no single stride). Quantized data: i8 (int8) or u8 holding two
 * int4 values a byte (element 2j in the low nibble of byte j, 2j + 1 in the high one); groups of
 * G consecutive values along K share a scale (XT) and a zero point (stored as the data is).
 * Options: XT (the float dtype), Q_INT4 (packed int4 data), Q_ZERO (zero points given),
 * Q_SYM (quantize: symmetric, dividing the largest magnitude by Q_SYMMAX), QMIN, QMAX
 * (quantize: the stored levels), Q_ZDEF (the zero point
 * when none is given), XT_F16 / XT_BF16 (the float dtype, for rounding scales), OT and I8_FLOAT
 * (matmul_i8's output dtype), I8_RS, I8_CS (its scales). */

#if defined(Q_QUANTIZE) || defined(Q_DEQUANTIZE) || defined(Q_MATMUL_WQ)
#ifdef Q_INT4
typedef u8 q_t;
/* Value k of a row of packed int4 data starting at `o`, `cs` apart between bytes. */
DEVICE i32 q_at(GLOBAL const q_t* q, i64 o, i64 cs, i64 k) {
    return (i32)((q[o + (k >> 1) * cs] >> ((k & 1) * 4)) & 15);
}
#else
typedef i8 q_t;
DEVICE i32 q_at(GLOBAL const q_t* q, i64 o, i64 cs, i64 k) { return (i32)q[o + k * cs]; }
#endif
DEVICE i32 q_zero(GLOBAL const q_t* z, i64 o) {
#ifdef Q_ZERO
    return (i32)z[o];
#else
    return Q_ZDEF;
#endif
}
/* max and min of values that are not NaN. */
DEVICE float q_max(float a, float b) { return a > b ? a : b; }
DEVICE float q_min(float a, float b) { return a < b ? a : b; }
/* A float rounded to the data's dtype and back (the scales are stored in it). */
DEVICE float q_round(float v) {
#if defined(XT_F16)
    return f16_to_f32_soft(f32_to_f16_soft(v));
#elif defined(XT_BF16)
    return bf16_to_f32(f32_to_bf16(v));
#else
    return v;
#endif
}
#endif

#ifdef Q_QUANTIZE
/* One item per (row, group): its scale and zero point, then its values. x: row r at
 * xo + r * xrs, values xcs apart; q, s, z likewise. */
KERNEL void quantize(GLOBAL q_t* q, GLOBAL X_ST* s, GLOBAL q_t* z, GLOBAL const X_ST* x,
                     const i64 rows, const i64 groups, const i64 G, const i64 xo, const i64 xrs,
                     const i64 xcs, const i64 qo, const i64 qrs, const i64 qcs, const i64 so,
                     const i64 srs, const i64 scs, const i64 zo, const i64 zrs, const i64 zcs) {
    const float qmin = (float)QMIN, qmax = (float)QMAX;
    FOR_EACH_INDEX(t, rows * groups) {
        const i64 r = t / groups, g = t - r * groups;
        const i64 base = xo + r * xrs + g * G * xcs;
        float scale, zero;
#ifdef Q_SYM
        float amax = 0.0f;
        for (i64 j = 0; j < G; j++) amax = q_max(amax, fabsf(X_LD(x, base + j * xcs)));
        scale = q_round(amax / (float)Q_SYMMAX);
        zero = (float)Q_ZDEF;
#else
        float lo = 0.0f, hi = 0.0f;
        for (i64 j = 0; j < G; j++) {
            const float v = X_LD(x, base + j * xcs);
            lo = q_min(lo, v);
            hi = q_max(hi, v);
        }
        scale = q_round((hi - lo) / (qmax - qmin));
        zero = scale == 0.0f ? 0.0f : q_min(q_max(qmin - rintf(lo / scale), qmin), qmax);
#endif
        const i64 qrow = qo + r * qrs;
#ifdef Q_INT4
        for (i64 j = 0; j < G; j += 2) {
            u32 b = 0;
            for (i64 h = 0; h < 2; h++) {
                const float v = X_LD(x, base + (j + h) * xcs);
                const float c = scale == 0.0f ? zero : q_min(q_max(rintf(v / scale) + zero, qmin), qmax);
                b |= ((u32)(i32)c & 15u) << (h * 4);
            }
            q[qrow + ((g * G + j) >> 1) * qcs] = (u8)b;
        }
#else
        for (i64 j = 0; j < G; j++) {
            const float v = X_LD(x, base + j * xcs);
            const float c = scale == 0.0f ? zero : q_min(q_max(rintf(v / scale) + zero, qmin), qmax);
            q[qrow + (g * G + j) * qcs] = (i8)(i32)c;
        }
#endif
        X_SV(s, so + r * srs + g * scs, scale);
        z[zo + r * zrs + g * zcs] = (q_t)(i32)zero;
    }
}
#endif

#ifdef Q_DEQUANTIZE
/* One item per output element: out = (q - z) * s. */
KERNEL void dequantize(GLOBAL X_ST* out, GLOBAL const q_t* q, GLOBAL const X_ST* s,
                       GLOBAL const q_t* z, const i64 rows, const i64 K, const i64 G,
                       const i64 oo, const i64 ors, const i64 ocs, const i64 qo, const i64 qrs,
                       const i64 qcs, const i64 so, const i64 srs, const i64 scs, const i64 zo,
                       const i64 zrs, const i64 zcs) {
    FOR_EACH_INDEX(t, rows * K) {
        const i64 r = t / K, c = t - r * K, g = c / G;
        const i32 v = q_at(q, qo + r * qrs, qcs, c) - q_zero(z, zo + r * zrs + g * zcs);
        X_SV(out, oo + r * ors + c * ocs, (float)v * X_LD(s, so + r * srs + g * scs));
    }
}
#endif

#ifdef Q_MATMUL_WQ
#ifdef ANYACCEL_FP64
typedef double wq_acc;
#else
typedef float wq_acc;
#endif
/* One item per output element (m, n): the sum over the groups of n's weight row of
 * sum_k x[m, k] (q[n, k] - z) times the group's scale. */
KERNEL void matmul_wq(GLOBAL X_ST* out, GLOBAL const X_ST* x, GLOBAL const q_t* w,
                      GLOBAL const X_ST* s, GLOBAL const q_t* z, const i64 M, const i64 N,
                      const i64 K, const i64 G, const i64 oo, const i64 ors, const i64 ocs,
                      const i64 xo, const i64 xrs, const i64 xcs, const i64 wo, const i64 wrs,
                      const i64 wcs, const i64 so, const i64 srs, const i64 scs, const i64 zo,
                      const i64 zrs, const i64 zcs) {
    FOR_EACH_INDEX(t, M * N) {
        const i64 m = t / N, n = t - m * N;
        const i64 xr = xo + m * xrs, wr = wo + n * wrs;
        wq_acc acc = 0;
        for (i64 g = 0; g < K / G; g++) {
            const i32 zero = q_zero(z, zo + n * zrs + g * zcs);
            float part = 0.0f;
            for (i64 k = g * G; k < (g + 1) * G; k++)
                part += X_LD(x, xr + k * xcs) * (float)(q_at(w, wr, wcs, k) - zero);
            acc += (wq_acc)part * (wq_acc)X_LD(s, so + n * srs + g * scs);
        }
        X_SV(out, oo + m * ors + n * ocs, (float)acc);
    }
}
#endif

#ifdef Q_MATMUL_I8
/* One item per output element: the i32 dot product (wrapping modulo 2^32), scaled to a float
 * output by row and column scales where given. */
KERNEL void matmul_i8(GLOBAL O_ST* out, GLOBAL const i8* a, GLOBAL const i8* b,
                      GLOBAL const float* rsc, GLOBAL const float* csc, const i64 M, const i64 N,
                      const i64 K, const i64 oo, const i64 ors, const i64 ocs, const i64 ao,
                      const i64 ars, const i64 acs, const i64 bo, const i64 brs, const i64 bcs,
                      const i64 ro, const i64 rst, const i64 co, const i64 cst) {
    FOR_EACH_INDEX(t, M * N) {
        const i64 m = t / N, n = t - m * N;
        u32 acc = 0;
        for (i64 k = 0; k < K; k++)
            acc += (u32)((i32)a[ao + m * ars + k * acs] * (i32)b[bo + k * brs + n * bcs]);
#ifdef I8_FLOAT
        float v = (float)(i32)acc;
#ifdef I8_RS
        v = v * rsc[ro + m * rst];
#endif
#ifdef I8_CS
        v = v * csc[co + n * cst];
#endif
        O_SV(out, oo + m * ors + n * ocs, v);
#else
        out[oo + m * ors + n * ocs] = (i32)acc;
#endif
    }
}
#endif
