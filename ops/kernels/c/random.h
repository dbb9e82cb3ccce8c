/* Random numbers that are the same on every device: uniform, normal, bernoulli and dropout from
 * Philox 4x32-10 keyed by (seed, offset) (docs/ops.md 8.10; the host's recipe is
 * ops/src/random.rs).
 *
 * The element with row-major index i takes word i % 4 of the block of counter
 * (i / 4, offset) under key seed. Every float step is one operation rounded to nearest, in the
 * order written: products are rounded before they are added, so contraction into fused
 * multiply-adds is switched off (OpenCL) or avoided with the _rn intrinsics (CUDA).
 *
 * -D options: XT (the dtype of the output, and of the input of bernoulli and dropout),
 * RND_WIDE=1 for f64 (computed in f64), one of RND_UNIFORM, RND_NORMAL, RND_BERNOULLI,
 * RND_DROPOUT; RANK and NOPS of the layout (output first, then the input).
 */

#ifdef ANYACCEL_CUDA
#define RMUL(a, b) __fmul_rn((a), (b))
#define RADD(a, b) __fadd_rn((a), (b))
#define RMUL64(a, b) __dmul_rn((a), (b))
#define RADD64(a, b) __dadd_rn((a), (b))
#else
#pragma OPENCL FP_CONTRACT OFF
#define RMUL(a, b) ((a) * (b))
#define RADD(a, b) ((a) + (b))
#define RMUL64(a, b) ((a) * (b))
#define RADD64(a, b) ((a) + (b))
#endif

/* Word `lane` of the Philox 4x32-10 block of counter (b, offset) under key (k0, k1). */
DEVICE u32 rnd_word(u64 b, u32 lane, u32 k0, u32 k1, u64 offset) {
    u32 c0 = (u32)b, c1 = (u32)(b >> 32), c2 = (u32)offset, c3 = (u32)(offset >> 32);
    for (int r = 0; r < 10; r++) {
        u64 p0 = (u64)0xD2511F53u * (u64)c0;
        u64 p1 = (u64)0xCD9E8D57u * (u64)c2;
        u32 n0 = (u32)(p1 >> 32) ^ c1 ^ k0;
        u32 n2 = (u32)(p0 >> 32) ^ c3 ^ k1;
        c1 = (u32)p1;
        c3 = (u32)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return lane == 0u ? c0 : (lane == 1u ? c1 : (lane == 2u ? c2 : c3));
}

/* (w >> 8) * 2^-24 and w * 2^-32: exact. */
DEVICE float rnd_u24(u32 w) { return (float)(w >> 8) * bits_f32(0x33800000u); }

/* c0 + t * (c1 + t * (...)), every product and sum rounded. */
DEVICE float rnd_poly(float t, u32 c0, u32 c1, u32 c2, u32 c3, u32 c4, u32 c5, u32 c6, u32 c7,
                      u32 c8, u32 c9) {
    float p = bits_f32(c9);
    p = RADD(RMUL(p, t), bits_f32(c8));
    p = RADD(RMUL(p, t), bits_f32(c7));
    p = RADD(RMUL(p, t), bits_f32(c6));
    p = RADD(RMUL(p, t), bits_f32(c5));
    p = RADD(RMUL(p, t), bits_f32(c4));
    p = RADD(RMUL(p, t), bits_f32(c3));
    p = RADD(RMUL(p, t), bits_f32(c2));
    p = RADD(RMUL(p, t), bits_f32(c1));
    return RADD(RMUL(p, t), bits_f32(c0));
}

/* ln(v) ~ e * ln 2 + l for an integer-valued v in [1, 2^24): returns l, adds e to *e. */
DEVICE float rnd_log_part(float v, i32* e) {
    u32 bits = f32_bits(v);
    float m = bits_f32((bits & 0x7fffffu) | 0x3f800000u);
    float t;
    *e += (i32)(bits >> 23) - 127;
    if (m > bits_f32(0x3fb504f3u)) {
        m = RMUL(m, 0.5f);
        *e += 1;
    }
    t = RADD(m, -1.0f);
    return RMUL(t, rnd_poly(t, 0x3f800000u, 0xbefffffcu, 0x3eaaaaa8u, 0xbe800214u, 0x3e4cd23bu,
                            0xbe2a13d4u, 0x3e11343au, 0xbe079613u, 0x3e043db9u, 0xbd9c7039u));
}

/* The standard normal draw of a word: sqrt(2) * erfinv(x), x in (-1, 1) from its top 23 bits. */
DEVICE float rnd_normal_z(u32 w) {
    u32 k = w >> 9;
    float a = (float)(2u * k + 1u);
    float b = (float)((1u << 24) - 2u * k - 1u);
    float x = RMUL((float)((i32)(2u * k + 1u) - (1 << 23)), bits_f32(0x34000000u));
    i32 e = -46;
    float la = rnd_log_part(a, &e);
    float lb = rnd_log_part(b, &e);
    float s = RADD(la, lb);
    float W = -RADD(RMUL((float)e, bits_f32(0x3f317218u)), s);
    float q;
    if (W < 5.0f) {
        q = rnd_poly(RADD(W, -2.5f), 0x4007e45eu, 0x3eb2962eu, 0xbbc1958fu, 0xbae836d6u,
                     0x39a1e4fbu, 0xb6eb5af9u, 0xb6a458dcu, 0x3530b03cu, 0x330d7031u, 0xb25457cdu);
    } else {
        float y = bits_f32(0x5f3759dfu - (f32_bits(W) >> 1));
        float h = RMUL(0.5f, W);
        for (int r = 0; r < 3; r++) {
            float hyy = RMUL(RMUL(h, y), y);
            y = RMUL(y, RADD(1.5f, -hyy));
        }
        q = rnd_poly(RADD(RMUL(W, y), -3.0f), 0x408034b6u, 0x3fb55293u, 0x3c5adbd4u, 0xbc31005au,
                     0x3c03b33cu, 0xbba64b52u, 0x3b0a7420u, 0xb8dacd90u, 0xb9eb2794u, 0x393c6a1bu);
    }
    return RMUL(q, x);
}

#if RND_WIDE
#ifndef ANYACCEL_FP64
#error "random: an f64 output, but the device has no doubles"
#endif
typedef double rnd_t;
#define RND_U(w) ((double)(w) * bits_f64(0x3df0000000000000ul))
#define RND_PARAM(bits) bits_f64(bits)
#define RND_MUL RMUL64
#define RND_ADD RADD64
#define RND_Z(w) ((double)rnd_normal_z(w))
#else
typedef float rnd_t;
#define RND_U(w) rnd_u24(w)
#define RND_PARAM(bits) bits_f32((u32)(bits))
#define RND_MUL RMUL
#define RND_ADD RADD
#define RND_Z(w) rnd_normal_z(w)
#endif

/* The word of element i. */
#define RND_WORD(i) rnd_word((u64)(i) >> 2, (u32)(i) & 3u, (u32)seed, (u32)(seed >> 32), offset)

#if defined(RND_UNIFORM) || defined(RND_NORMAL)
/* uniform: a + b * u (a = low, b = high - low); normal: a + b * z (a = mean, b = std). The
 * parameters come as the bits of an f32 (in the low half) or an f64. */
KERNEL void rnd_draw(GLOBAL X_ST* out, const Lay L, const i64 n, const u64 seed, const u64 offset,
                     const u64 a_bits, const u64 b_bits) {
    rnd_t a = RND_PARAM(a_bits), b = RND_PARAM(b_bits);
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        u32 w = RND_WORD(i);
        lay_at(&L, i, o);
#ifdef RND_UNIFORM
        X_SV(out, o[0], RND_ADD(a, RND_MUL(b, RND_U(w))));
#else
        X_SV(out, o[0], RND_ADD(a, RND_MUL(b, RND_Z(w))));
#endif
    }
}
#endif

#if defined(RND_BERNOULLI) || defined(RND_DROPOUT)
/* bernoulli: u < p[i] gives 1; dropout: u < p drops (x * 0 * scale), else x * 1 * scale. */
KERNEL void rnd_mask(GLOBAL X_ST* out, GLOBAL const X_ST* x, const Lay L, const i64 n,
                     const u64 seed, const u64 offset, const u64 p_bits, const u64 scale_bits) {
    rnd_t p = RND_PARAM(p_bits), scale = RND_PARAM(scale_bits);
    FOR_EACH_INDEX(i, n) {
        i64 o[NOPS];
        u32 w = RND_WORD(i);
        rnd_t v;
        lay_at(&L, i, o);
        v = (rnd_t)X_LD(x, o[1]);
#ifdef RND_BERNOULLI
        X_SV(out, o[0], RND_U(w) < v ? (rnd_t)1 : (rnd_t)0);
#else
        X_SV(out, o[0], RND_MUL(RND_MUL(v, RND_U(w) < p ? (rnd_t)0 : (rnd_t)1), scale));
#endif
    }
}
#endif
