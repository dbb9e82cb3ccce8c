/* Indexed reads: index_select, embedding and gather, one kernel.
 *
 * For each output element (row-major linear index i): operand 0 of the `Lay` is the output,
 * operand 1 the source without the indexed dimension, operand 2 the index tensor. The element
 * read is src[o1 + j * src_step] with j the index. An index outside 0..limit is never used: the
 * kernel records the smallest such output position in `bad` (atomic min, saturated to
 * 2^31 - 2) and leaves that element unwritten; the host reads `bad` back after the launch.
 * Options: ES (element size), IT (i32 or i64), RANK, NOPS.
 */
#ifdef IX_GATHER
typedef CAT(st_, IT) idx_t;

KERNEL void ix_gather(GLOBAL elem_t* out, GLOBAL const elem_t* src, GLOBAL const idx_t* idx,
                      GLOBAL i32* bad, const Lay L, const i64 n, const i64 src_step,
                      const i64 limit) {
    for (i64 i = GLOBAL_ID(0); i < n; i += GLOBAL_SIZE(0)) {
        i64 o[NOPS];
        lay_at(&L, i, o);
        i64 j = (i64)idx[o[2]];
        if (j < 0 || j >= limit) {
            ATOMIC_MIN_I32(bad, i < 2147483646 ? (i32)i : 2147483646);
        } else {
            out[o[0]] = src[o[1] + j * src_step];
        }
    }
}
#endif

/* Remaps: pad, flip, roll, repeat_interleave, tril and triu (the rules of ops/src/movement.rs).
 *
 * For each output element (row-major linear index i) the input coordinate along each axis is a
 * function of the output coordinate along that axis. P holds per axis `out, n, before, mode,
 * div or table start, x stride, out stride` (RANK axes), then the tables. Elements outside the
 * input, or outside the band `band_lo <= col - row <= band_hi` (BAND), take `fill` (the
 * element's bits). Options: ES, RANK, BAND.
 */
#ifdef MV_REMAP
KERNEL void mv_remap(GLOBAL elem_t* out, GLOBAL const elem_t* x, GLOBAL const i64* P,
                     const i64 n, const i64 x_base, const i64 out_base, const u64 fill,
                     const i64 band_lo, const i64 band_hi) {
    for (i64 i = GLOBAL_ID(0); i < n; i += GLOBAL_SIZE(0)) {
        i64 rem = i, src = x_base, dst = out_base, row = 0, col = 0;
        int inside = 1;
        for (int d = RANK - 1; d >= 0; d--) {
            GLOBAL const i64* a = P + d * 7;
            i64 o = rem % a[0];
            rem /= a[0];
            dst += o * a[6];
            if (d == RANK - 1) col = o;
            if (d == RANK - 2) row = o;
            i64 size = a[1];
            i64 t = o - a[2];
            i64 s = t;
            switch (a[3]) {
            case 1: /* reflect */
                if (size == 1) {
                    s = 0;
                } else {
                    i64 p = 2 * (size - 1);
                    i64 m = t % p;
                    if (m < 0) m += p;
                    s = m < size ? m : p - m;
                }
                break;
            case 2: /* replicate */
                s = t < 0 ? 0 : (t >= size ? size - 1 : t);
                break;
            case 3: /* circular */
                s = t % size;
                if (s < 0) s += size;
                break;
            case 4: /* flip */
                s = size - 1 - t;
                break;
            case 5: /* repeat: t / div */
                s = t / a[4];
                break;
            case 6: /* table */
                s = P[a[4] + o];
                break;
            default: /* constant */
                break;
            }
            if (s < 0 || s >= size) {
                inside = 0;
            } else {
                src += s * a[5];
            }
        }
#if BAND
        if (col - row < band_lo || col - row > band_hi) inside = 0;
#endif
        out[dst] = inside ? x[src] : (elem_t)fill;
    }
}
#endif

/* Line scatters: scatter, scatter_add, index_add and one_hot (ops/src/movement.rs).
 *
 * One item per output element of the lines (total = lines * n): operands of the `Lay` over the
 * lines are x, the index, the source and the output; along the axis their strides are sx, si,
 * ss and so. Item (line, j) starts from x's element j and takes, for k = 0, 1, ... in order,
 * the source element k where index k is j: the last one (scatter), or the sum of alpha times
 * each (SC_ADD). Items with j = 0 check their line's indices; any outside 0..n sets `bad[0]`,
 * and the host finds the first bad index. Options: XT (dtype), ES (its size), IT (i32 or i64),
 * SC_ADD, SC_INT (integer dtype: sums wrap), RANK, NOPS.
 */
#ifdef IX_SCATTER
typedef CAT(st_, IT) sidx_t;
#if SC_ADD
typedef CAT(st_, XT) xs_t;
typedef CAT(ct_, XT) xc_t;
#else
typedef elem_t xs_t; /* scatter moves raw elements (ES: their size) */
#endif

KERNEL void ix_scatter(GLOBAL xs_t* out, GLOBAL const xs_t* x, GLOBAL const sidx_t* idx,
                       GLOBAL const xs_t* src, GLOBAL i32* bad, const Lay L, const i64 total,
                       const i64 n, const i64 k, const i64 sx, const i64 si, const i64 ss,
                       const i64 so, const i64 alpha_bits) {
    for (i64 i = GLOBAL_ID(0); i < total; i += GLOBAL_SIZE(0)) {
        i64 line = i / n;
        i64 j = i - line * n;
        i64 o[NOPS];
        lay_at(&L, line, o);
#if SC_ADD && SC_INT
        u64 acc = (u64)(i64)CAT(ld_, XT)(x, o[0] + j * sx);
        u64 alpha = (u64)alpha_bits;
#elif SC_ADD && XT_F64
        double acc = CAT(ld_, XT)(x, o[0] + j * sx);
        double alpha = bits_f64((u64)alpha_bits);
#elif SC_ADD
        float acc = CAT(ld_, XT)(x, o[0] + j * sx);
        float alpha = bits_f32((u32)alpha_bits);
#else
        xs_t v = x[o[0] + j * sx];
#endif
        for (i64 q = 0; q < k; q++) {
            i64 t = (i64)idx[o[1] + q * si];
            if (t < 0 || t >= n) {
                if (j == 0) bad[0] = 1;
                continue;
            }
            if (t == j) {
#if SC_ADD && SC_INT
                acc += (u64)(i64)CAT(ld_, XT)(src, o[2] + q * ss) * alpha;
#elif SC_ADD
                acc += CAT(ld_, XT)(src, o[2] + q * ss) * alpha;
#else
                v = src[o[2] + q * ss];
#endif
            }
        }
#if SC_ADD
        CAT(sv_, XT)(out, o[3] + j * so, (xc_t)acc);
#else
        out[o[3] + j * so] = v;
#endif
    }
}
#endif
