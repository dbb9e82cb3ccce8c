// The three passes of a convolution over its geometry (nb samples, c input channels of cg per
// group, o output channels of og per group, input ih x iw, output oh x ow, kernel kh x kw,
// stride, padding, dilation), accumulating in $W. a and b are read through the strides of
// their 4-D views (a 1-D convolution's height has size 1 and stride 0); positions in the zero
// padding are skipped. Positions are u32: a position in the top or left padding wraps to a
// large value, at least the input size (the launcher checks that the padded input fits).

//# conv
// conv1d/2d (a = x, b = weight): one invocation per output element out[n, oc, oy, ox] (space 0
// walks the output's 4-D view), summing over the group's input channels and the kernel window,
// then the bias.
@compute @workgroup_size(256)
fn conv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lin = gid.x;
    if (lin >= p.n) { return; }
    let o = walk0(lin);
    let ox = lin % p.ow;
    let oy = (lin / p.ow) % p.oh;
    let oc = (lin / (p.ow * p.oh)) % p.oc;
    let n = lin / (p.ow * p.oh * p.oc);
    let grp = oc / p.og;
    let bch = oc;
    var acc: $W = $W(0.0);
    for (var ci = 0u; ci < p.cg; ci++) {
        let xb = p.a_off + n * p.a_s0 + (grp * p.cg + ci) * p.a_s1;
        let wb = p.b_off + oc * p.b_s0 + ci * p.b_s1;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = oy * p.sh + ky * p.dh - p.ph;
            if (iy >= p.ih) { continue; }
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ox * p.sw + kx * p.dw - p.pw;
                if (ix >= p.iw) { continue; }
                acc += $W(ld_a(xb + iy * p.a_s2 + ix * p.a_s3)) * $W(ld_b(wb + ky * p.b_s2 + kx * p.b_s3));
            }
        }
    }
    $BIAS
    st_out(o[0], f32(acc));
}

//# conv_data
// conv_transpose1d/2d and conv{1,2}d_backward_input (a = the output-shaped input y, b = weight):
// one invocation per element out[n, ch, iy, ix] of the input-shaped result (space 0 walks it),
// summing y[n, oc, oy, ox] * w[oc, ch - grp cg, ky, kx] over the group's output channels and the
// taps whose output position oy = (iy + ph - ky dh) / sh is whole and inside [0, oh) (and so
// ox), then the bias.
@compute @workgroup_size(256)
fn conv_data(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lin = gid.x;
    if (lin >= p.n) { return; }
    let o = walk0(lin);
    let ix = lin % p.iw;
    let iy = (lin / p.iw) % p.ih;
    let ch = (lin / (p.iw * p.ih)) % p.c;
    let n = lin / (p.iw * p.ih * p.c);
    let grp = ch / p.cg;
    let ci = ch % p.cg;
    let bch = ch;
    var acc: $W = $W(0.0);
    for (var oc = grp * p.og; oc < (grp + 1u) * p.og; oc++) {
        let yb = p.a_off + n * p.a_s0 + oc * p.a_s1;
        let wb = p.b_off + oc * p.b_s0 + ci * p.b_s1;
        for (var ky = 0u; ky < p.kh; ky++) {
            if (ky * p.dh > iy + p.ph) { break; }
            let ty = iy + p.ph - ky * p.dh;
            if (ty % p.sh != 0u || ty / p.sh >= p.oh) { continue; }
            for (var kx = 0u; kx < p.kw; kx++) {
                if (kx * p.dw > ix + p.pw) { break; }
                let tx = ix + p.pw - kx * p.dw;
                if (tx % p.sw != 0u || tx / p.sw >= p.ow) { continue; }
                acc += $W(ld_a(yb + ty / p.sh * p.a_s2 + tx / p.sw * p.a_s3)) * $W(ld_b(wb + ky * p.b_s2 + kx * p.b_s3));
            }
        }
    }
    $BIAS
    st_out(o[0], f32(acc));
}

//# conv_filter
// conv{1,2}d_backward_weight (a = grad, b = x): group g sums chunk g % p.chunks (p.chunk terms)
// of element g / p.chunks of the result dw[oc, ci, ky, kx] (space 0 walks the result's 4-D view):
// grad[n, oc, oy, ox] * x[n, grp cg + ci, iy, ix] over j = (n oh + oy) ow + ox, 16 terms per
// loop iteration and invocation. One chunk: the group stores the element; more: it stores its
// partial sum in `part`, and conv_filter_finish adds an element's partials in order.
@compute @workgroup_size(256)
fn conv_filter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let lin = wid.x / p.chunks;
    let start = (wid.x % p.chunks) * p.chunk;
    let kx = lin % p.kw;
    let ky = (lin / p.kw) % p.kh;
    let ci = (lin / (p.kw * p.kh)) % p.cg;
    let oc = lin / (p.kw * p.kh * p.cg);
    let ch = oc / p.og * p.cg + ci;
    let end = min(start + p.chunk, p.nb * p.oh * p.ow);
    var acc: $W = $W(0.0);
    for (var j0 = start + t; j0 < end; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < end) {
                let ox = j % p.ow;
                let oy = (j / p.ow) % p.oh;
                let n = j / (p.ow * p.oh);
                let iy = oy * p.sh + ky * p.dh - p.ph;
                let ix = ox * p.sw + kx * p.dw - p.pw;
                if (iy < p.ih && ix < p.iw) {
                    acc += $W(ld_a(p.a_off + n * p.a_s0 + oc * p.a_s1 + oy * p.a_s2 + ox * p.a_s3))
                        * $W(ld_b(p.b_off + n * p.b_s0 + ch * p.b_s1 + iy * p.b_s2 + ix * p.b_s3));
                }
            }
        }
    }
    let total = group_sum(t, acc);
    if (t == 0u) { $STORE }
}

//# conv_filter_finish
@compute @workgroup_size(256)
fn conv_filter_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lin = gid.x;
    if (lin >= p.n) { return; }
    var s: $W = $W(0.0);
    for (var c = 0u; c < p.chunks; c++) {
        s += part[lin * p.chunks + c];
    }
    st_out(walk0(lin)[0], f32(s));
}

//# pool
// max_pool1d/2d and avg_pool1d/2d: one invocation per output element (space 0 walks the output's
// 4-D view: out, and indices for max pools), x read through its 4-D view's strides. Positions
// are i32 (the padded input fits). Max: the largest tap, NaN propagating (the first NaN's
// index), ties to the first tap; a window without a tap gives -inf and -1. Average: the sum over
// the window clipped to the input, over the pool size within the padded input
// (p.count_pad = 1) or the clipped window's element count.
@compute @workgroup_size(256)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lin = gid.x;
    if (lin >= p.n) { return; }
    let o = walk0(lin);
    let ox = lin % p.ow;
    let oy = (lin / p.ow) % p.oh;
    let ch = (lin / (p.ow * p.oh)) % p.c;
    let n = lin / (p.ow * p.oh * p.c);
    let xb = p.x_off + n * p.x_s0 + ch * p.x_s1;
    let y0 = i32(oy * p.sh) - i32(p.ph);
    let x0 = i32(ox * p.sw) - i32(p.pw);
    $BODY
}

//# rs_tap
// Bilinear taps: the rows i0, i1 = min(i0 + 1, len - 1) and the fraction l of output row i, from
// the exact source position num / den (see conv.h); the launchers check that (2 OH + 1) H fits
// u32.
struct RsTap { i0: u32, i1: u32, l: f32 }

fn rs_tap(i: u32, len: u32, outn: u32) -> RsTap {
    var num: u32;
    var den: u32;
    if (p.align != 0u) {
        num = select(0u, i * (len - 1u), outn > 1u);
        den = select(1u, outn - 1u, outn > 1u);
    } else {
        let a = (2u * i + 1u) * len;
        num = select(0u, a - outn, a > outn);
        den = 2u * outn;
    }
    let i0 = min(num / den, len - 1u);
    let l = min(f32(num - i0 * den) / f32(den), 1.0);
    return RsTap(i0, min(i0 + 1u, len - 1u), l);
}

//# rs_cubic
// Bicubic taps: output row i's source position num / den (see conv.h's rs_cubic) as its floor
// plus one (b1: never negative, as num > -den) and its fraction t; the launchers check that
// (3 OH + 1) H fits u32.
struct RsCubic { b1: i32, t: f32 }

fn rs_cubic(i: u32, len: u32, outn: u32) -> RsCubic {
    // The numerator plus den, never negative.
    var num: u32;
    var den: u32;
    if (p.align != 0u) {
        den = select(1u, outn - 1u, outn > 1u);
        num = select(0u, i * (len - 1u), outn > 1u) + den;
    } else {
        den = 2u * outn;
        num = (2u * i + 1u) * len + outn;
    }
    let b1 = num / den;
    return RsCubic(i32(b1), f32(num - b1 * den) / f32(den));
}

// The weight of tap k (offset k - 1 from the floor) at fraction t: Keys' cubic convolution with
// a = -0.75, as PyTorch.
fn rs_cw(k: u32, t: f32) -> f32 {
    let a = -0.75;
    var x = t + 1.0;
    if (k == 1u) {
        x = t;
    } else if (k == 2u) {
        x = 1.0 - t;
    } else if (k == 3u) {
        x = 2.0 - t;
    }
    if (k == 1u || k == 2u) {
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    }
    return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
}

// The row of tap k: the floor + k - 1, clamped to 0 .. len - 1.
fn rs_ci(q: RsCubic, k: u32, len: u32) -> u32 {
    return u32(clamp(q.b1 + i32(k) - 2, 0, i32(len) - 1));
}

//# resample
// adaptive_avg_pool2d and interpolate (nearest, bilinear, bicubic): one invocation per output element
// (space 0 walks the output), x read through its strides. Window bounds and source positions
// are exact integer fractions (see conv.h).
@compute @workgroup_size(256)
fn resample(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lin = gid.x;
    if (lin >= p.n) { return; }
    let o = walk0(lin);
    let ox = lin % p.ow;
    let oy = (lin / p.ow) % p.oh;
    let ch = (lin / (p.ow * p.oh)) % p.c;
    let nn = lin / (p.ow * p.oh * p.c);
    let xb = p.x_off + nn * p.x_s0 + ch * p.x_s1;
    $BODY
}

//# run_stats
// group_norm and batch_norm: a group is len elements in runs of p.sp (space 0 walks a run's
// spatial dimensions: x, out), the runs rs elements apart. run_off: the offset of element j
// in lane 0 (x) or 1 (out). run_stats: the mean and 1 / sqrt(biased variance + eps) in $W,
// the sums taken relative to the first element unless it is infinite or NaN.
fn run_off(base: u32, rs: u32, j: u32, lane: u32) -> u32 {
    let r = j / p.sp;
    return base + r * rs + walk0(j - r * p.sp)[lane];
}

fn run_stats(t: u32, xb: u32, rs: u32, len: u32) -> vec2<$W> {
    let nf = $W(len);
    let first = $W(ld_x(run_off(xb, rs, 0u, 0u)));
    let shift = select($W(0.0), first, abs(first) < $W(inf_f32()));
    var s: $W = 0.0;
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) { s = s + ($W(ld_x(run_off(xb, rs, j, 0u))) - shift); }
        }
    }
    let dm = group_sum(t, s) / nf;
    var q: $W = 0.0;
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let d = ($W(ld_x(run_off(xb, rs, j, 0u))) - shift) - dm;
                q = q + d * d;
            }
        }
    }
    return vec2<$W>(shift + dm, $W(1.0) / sqrt(group_sum(t, q) / nf + $W(p.eps)));
}

//# group_norm
// One group of 256 per (n, group) of cg channels times the spatial size (runs: the channels),
// then (x - mean) * invstd * w + b per channel.
@compute @workgroup_size(256)
fn group_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let ng = wid.x;
    let nn = ng / p.groups;
    let grp = ng % p.groups;
    let xb = p.x_off + nn * p.x_s0 + grp * p.cg * p.x_s1;
    let ob = p.o_off + nn * p.o_s0 + grp * p.cg * p.o_s1;
    let len = p.cg * p.sp;
    let st = run_stats(t, xb, p.x_s1, len);
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let ch = grp * p.cg + j / p.sp;
                let y = ($W(ld_x(run_off(xb, p.x_s1, j, 0u))) - st.x) * st.y;
                st_out(run_off(ob, p.o_s1, j, 1u), f32($Y));
            }
        }
    }
}

//# batch_norm
// One group of 256 per channel, over its N runs of the spatial size (runs: the samples).
// Training: the batch's statistics; else the running ones. Then (x - mean) * invstd * w + b;
// invocation 0 writes the mean and invstd.
@compute @workgroup_size(256)
fn batch_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let ch = wid.x;
    let xb = p.x_off + ch * p.x_s1;
    let ob = p.o_off + ch * p.o_s1;
    let len = p.nb * p.sp;
    var mean: $W;
    var invstd: $W;
    if ($TRAIN) {
        let st = run_stats(t, xb, p.x_s0, len);
        mean = st.x;
        invstd = st.y;
    } else {
        $RUNNING
    }
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let y = ($W(ld_x(run_off(xb, p.x_s0, j, 0u))) - mean) * invstd;
                st_out(run_off(ob, p.o_s0, j, 1u), f32($Y));
            }
        }
    }
    if (t == 0u) {
        st_mean(p.m_off + ch * p.m_s, f32(mean));
        st_invstd(p.i_off + ch * p.i_s, f32(invstd));
    }
}

//# pool_back
// Pooling and resampling gradients: one invocation per element dx[n, c, iy, ix] (space 0 walks
// dx's 4-D view) summing wy * wx * grad[n, c, oy, ox] over the outputs (oy, ox) that read it,
// found per dimension by pb_range (the candidates lo .. lo + n) and pb_tap (whether candidate j
// reads i, and its factor), with the rules of the op layer's PoolBack::taps. Pools: kernel tap
// j reads i from the window at o = (i + pad - j dil) / st when whole and inside [0, outn).
struct PbTap { o: u32, w: f32, ok: bool }

// Resampling candidates lo .. hi, clamped to [0, outn), as (start, count).
fn pb_clamp(lo: u32, hi: u32, outn: u32) -> vec2<u32> {
    let a = min(lo, outn);
    let b = min(hi, outn);
    return vec2<u32>(a, select(0u, b - a, b > a));
}

// (start, count) of the candidates j: a pool's kernel taps, or resampling's outputs.
fn pb_range(i: u32, len: u32, outn: u32, k: u32) -> vec2<u32> {
    $RANGE
}

fn pb_tap(j: u32, lo: u32, i: u32, len: u32, outn: u32, k: u32, st: u32, pad: u32, dil: u32) -> PbTap {
    $TAP
}

@compute @workgroup_size(256)
fn pool_back(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lin = gid.x;
    if (lin >= p.n) { return; }
    let o = walk0(lin);
    let ix = lin % p.iw;
    let iy = (lin / p.iw) % p.ih;
    let ch = (lin / (p.iw * p.ih)) % p.c;
    let nn = lin / (p.iw * p.ih * p.c);
    let gb = p.g_off + nn * p.g_s0 + ch * p.g_s1;
    let ry = pb_range(iy, p.ih, p.oh, p.kh);
    let rx = pb_range(ix, p.iw, p.ow, p.kw);
    var acc: $W = $W(0.0);
    for (var jy = 0u; jy < ry.y; jy++) {
        let ty = pb_tap(jy, ry.x, iy, p.ih, p.oh, p.kh, p.sh, p.ph, p.dh);
        if (!ty.ok) { continue; }
        for (var jx = 0u; jx < rx.y; jx++) {
            let tx = pb_tap(jx, rx.x, ix, p.iw, p.ow, p.kw, p.sw, p.pw, p.dw);
            if (!tx.ok) { continue; }
            let term = $W(ty.w) * $W(tx.w) * $W(ld_g(gb + ty.o * p.g_s2 + tx.o * p.g_s3));
            acc += select($W(0.0), term, $KEEP);
        }
    }
    st_out(o[0], f32(acc));
}
