/* matmul: out[b, i, j] = sum_k a[b, i, k] * b[b, k, j] (+ bias), f32 accumulation.
 *
 * One work-group computes a BM x BN tile of one batch; each of its WG = (BM/TM) * (BN/TN) items
 * computes a TM x TN block of it in registers (TN consecutive columns, so that the inner loop
 * is a vector operation where the compiler has vectors). The K dimension is walked in steps of
 * BK: both operands' tiles are staged in local memory, converted to f32 (f16 and bf16 too), with
 * zeros outside the matrices, so any M, N, K works. Operands are read through their strides, so
 * transposed and strided views need no copy; the batch dimensions (broadcast with zero strides)
 * come from the layout B (operands 0 a, 1 b, 2 out, 3 bias).
 *
 * Options: XT (the dtype), BM, BN, BK, TM, TN, BRANK (rank of B), MM_BIAS, A_KMAJOR (a's k
 * stride is 1: tile loads walk k fastest), B_NMAJOR (b's n stride is 1).
 */
#ifdef MM_TILED
#define MM_WG ((BM / TM) * (BN / TN))

KERNEL void mm_tiled(GLOBAL X_ST* out, GLOBAL const X_ST* a, GLOBAL const X_ST* b,
                     GLOBAL const X_ST* bias, const Lay B, const i64 m, const i64 n,
                     const i64 kk, const i64 tiles_m, const i64 tiles_n, const i64 batches,
                     const i64 a_rs, const i64 a_cs, const i64 b_rs, const i64 b_cs,
                     const i64 o_rs, const i64 o_cs, const i64 c_rs, const i64 c_cs) {
    LOCAL float as_[BK][BM];
    LOCAL float bs_[BK][BN];
    const int t = LOCAL_ID(0);
    const int ti = t / (BN / TN);
    const int tj = t - ti * (BN / TN);
    const i64 tiles = tiles_m * tiles_n;
    for (i64 g = GROUP_ID(0); g < batches * tiles; g += NUM_GROUPS(0)) {
        const i64 batch = g / tiles;
        const i64 rem = g - batch * tiles;
        const i64 m0 = (rem / tiles_n) * BM;
        const i64 n0 = (rem - (rem / tiles_n) * tiles_n) * BN;
        i64 bo[4];
        lay_offsets(&B, BRANK, 4, batch, bo);
        float acc[TM][TN];
        #pragma unroll
        for (int i = 0; i < TM; ++i)
            #pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
        for (i64 k0 = 0; k0 < kk; k0 += BK) {
            /* Stage the tiles: a[m0.., k0..] as as_[k][i], b[k0.., n0..] as bs_[k][j]. */
            for (int e = t; e < BM * BK; e += MM_WG) {
#if A_KMAJOR
                const int i = e / BK, k = e - (e / BK) * BK;
#else
                const int k = e / BM, i = e - (e / BM) * BM;
#endif
                const i64 gi = m0 + i, gk = k0 + k;
                as_[k][i] = (gi < m && gk < kk) ? X_LD(a, bo[0] + gi * a_rs + gk * a_cs) : 0.0f;
            }
            for (int e = t; e < BN * BK; e += MM_WG) {
#if B_NMAJOR
                const int k = e / BN, j = e - (e / BN) * BN;
#else
                const int j = e / BK, k = e - (e / BK) * BK;
#endif
                const i64 gk = k0 + k, gj = n0 + j;
                bs_[k][j] = (gk < kk && gj < n) ? X_LD(b, bo[1] + gk * b_rs + gj * b_cs) : 0.0f;
            }
            BARRIER();
            #pragma unroll
            for (int k = 0; k < BK; ++k) {
                float ar[TM], br[TN];
                #pragma unroll
                for (int i = 0; i < TM; ++i) ar[i] = as_[k][ti * TM + i];
                #pragma unroll
                for (int j = 0; j < TN; ++j) br[j] = bs_[k][tj * TN + j];
                #pragma unroll
                for (int i = 0; i < TM; ++i)
                    #pragma unroll
                    for (int j = 0; j < TN; ++j) acc[i][j] += ar[i] * br[j];
            }
            BARRIER();
        }
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            const i64 gi = m0 + ti * TM + i;
            if (gi >= m) break;
            #pragma unroll
            for (int j = 0; j < TN; ++j) {
                const i64 gj = n0 + tj * TN + j;
                if (gj >= n) break;
                float v = acc[i][j];
#ifdef MM_BIAS
                v += X_LD(bias, bo[3] + gi * c_rs + gj * c_cs);
#endif
                X_SV(out, bo[2] + gi * o_rs + gj * o_cs, v);
            }
        }
    }
}
#endif

