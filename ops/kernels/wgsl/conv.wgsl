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

//# group_norm
// One group of 256 per (n, group) of cg channels times the spatial size (space 0 walks the
// spatial dimensions: x, out): the mean and biased variance in $W, taken relative to the
// group's first element, then (x - mean) / sqrt(var + eps) * w + b per channel ($Y).
fn gn_x(xb: u32, j: u32) -> u32 {
    let ci = j / p.sp;
    return xb + ci * p.x_s1 + walk0(j - ci * p.sp)[0];
}

fn gn_o(ob: u32, j: u32) -> u32 {
    let ci = j / p.sp;
    return ob + ci * p.o_s1 + walk0(j - ci * p.sp)[1];
}

@compute @workgroup_size(256)
fn group_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let ng = wid.x;
    let nn = ng / p.groups;
    let grp = ng % p.groups;
    let xb = p.x_off + nn * p.x_s0 + grp * p.cg * p.x_s1;
    let ob = p.o_off + nn * p.o_s0 + grp * p.cg * p.o_s1;
    let len = p.cg * p.sp;
    let nf = $W(len);
    // Sums relative to the first element, unless it is infinite or NaN.
    let first = $W(ld_x(gn_x(xb, 0u)));
    let shift = select($W(0.0), first, abs(first) < $W(inf_f32()));
    var s: $W = 0.0;
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) { s = s + ($W(ld_x(gn_x(xb, j))) - shift); }
        }
    }
    let mean = group_sum(t, s) / nf;
    var q: $W = 0.0;
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let d = ($W(ld_x(gn_x(xb, j))) - shift) - mean;
                q = q + d * d;
            }
        }
    }
    let den = sqrt(group_sum(t, q) / nf + $W(p.eps));
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let ch = grp * p.cg + j / p.sp;
                let y = (($W(ld_x(gn_x(xb, j))) - shift) - mean) / den;
                st_out(gn_o(ob, j), f32($Y));
            }
        }
    }
}

//# batch_norm
// One group of 256 per channel, over its N runs of the spatial size (space 0 walks the spatial
// dimensions: x, out). Training ($TRAIN): the batch's mean and biased variance in $W, relative
// to the channel's first element; else the running statistics. Then
// (x - mean) * invstd * w + b ($Y); invocation 0 writes the mean and invstd.
fn bn_x(xb: u32, j: u32) -> u32 {
    let nn = j / p.sp;
    return xb + nn * p.x_s0 + walk0(j - nn * p.sp)[0];
}

fn bn_o(ob: u32, j: u32) -> u32 {
    let nn = j / p.sp;
    return ob + nn * p.o_s0 + walk0(j - nn * p.sp)[1];
}

@compute @workgroup_size(256)
fn batch_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let ch = wid.x;
    let xb = p.x_off + ch * p.x_s1;
    let ob = p.o_off + ch * p.o_s1;
    let len = p.nb * p.sp;
    var mean: $W;
    var invstd: $W;
    if ($TRAIN) {
        let nf = $W(len);
        // Sums relative to the first element, unless it is infinite or NaN.
        let first = $W(ld_x(bn_x(xb, 0u)));
        let shift = select($W(0.0), first, abs(first) < $W(inf_f32()));
        var s: $W = 0.0;
        for (var j0 = t; j0 < len; j0 += 4096u) {
            for (var u = 0u; u < 16u; u++) {
                let j = j0 + u * 256u;
                if (j < len) { s = s + ($W(ld_x(bn_x(xb, j))) - shift); }
            }
        }
        let dm = group_sum(t, s) / nf;
        var q: $W = 0.0;
        for (var j0 = t; j0 < len; j0 += 4096u) {
            for (var u = 0u; u < 16u; u++) {
                let j = j0 + u * 256u;
                if (j < len) {
                    let d = ($W(ld_x(bn_x(xb, j))) - shift) - dm;
                    q = q + d * d;
                }
            }
        }
        mean = shift + dm;
        invstd = $W(1.0) / sqrt(group_sum(t, q) / nf + $W(p.eps));
    } else {
        $RUNNING
    }
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let y = ($W(ld_x(bn_x(xb, j))) - mean) * invstd;
                st_out(bn_o(ob, j), f32($Y));
            }
        }
    }
    if (t == 0u) {
        st_mean(p.m_off + ch * p.m_s, f32(mean));
        st_invstd(p.i_off + ch * p.i_s, f32(invstd));
    }
}
