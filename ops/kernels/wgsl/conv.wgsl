// conv1d and conv2d: one invocation per output element out[n, oc, oy, ox] (space 0 walks the
// output's 4-D view), accumulating in $W over the group's input channels and the kernel
// window, then the bias. Input positions in the zero padding are skipped. x and weight are read
// through the strides of their 4-D views (a conv1d's height has size 1 and stride 0).

//# conv
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
    var acc: $W = $W(0.0);
    for (var ci = 0u; ci < p.cg; ci++) {
        let xb = p.x_off + n * p.x_s0 + (grp * p.cg + ci) * p.x_s1;
        let wb = p.w_off + oc * p.w_s0 + ci * p.w_s1;
        for (var ky = 0u; ky < p.kh; ky++) {
            // Unsigned: a position in the top padding wraps to a large value, >= ih.
            let iy = oy * p.sh + ky * p.dh - p.ph;
            if (iy >= p.ih) { continue; }
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ox * p.sw + kx * p.dw - p.pw;
                if (ix >= p.iw) { continue; }
                acc += $W(ld_x(xb + iy * p.x_s2 + ix * p.x_s3)) * $W(ld_w(wb + ky * p.w_s2 + kx * p.w_s3));
            }
        }
    }
    $BIAS
    st_out(o[0], f32(acc));
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

//# resample
// adaptive_avg_pool2d and interpolate (nearest, bilinear): one invocation per output element
// (space 0 walks the output), x read through its strides. Window bounds and source positions
// are exact integer fractions (see conv.h); the launcher checks that (2 OH + 1) H fits u32.
fn rs_tap(i: u32, len: u32, outn: u32) -> vec3<f32> {
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
    return vec3<f32>(f32(i0), f32(min(i0 + 1u, len - 1u)), l);
}

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
