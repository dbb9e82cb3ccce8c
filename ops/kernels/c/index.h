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
