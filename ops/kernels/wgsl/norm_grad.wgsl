// The normalisation gradients over x viewed as [A, C, S] (rows, channels, spatial positions;
// offsets and strides per part: x, grad y, dx d), one group of 256 each, sums in $W (see
// norm_grad.h for the formulas). Loops take 16 elements per iteration per invocation.

//# nb_common
// Group g's box: its first row, row count, first channel and channel count.
fn nb_box(g: u32) -> vec4<u32> {
    $BOX
}

// Element j of box bx: its (row, channel, spatial position).
fn nb_at(bx: vec4<u32>, j: u32) -> vec3<u32> {
    return vec3<u32>(bx.x + j / (p.s * bx.w), bx.z + (j / p.s) % bx.w, j % p.s);
}

fn nb_x(a: u32, c: u32, s: u32) -> $W { return $W(ld_x(p.x_off + a * p.x_a + c * p.x_c + s * p.x_s)); }
fn nb_y(a: u32, c: u32, s: u32) -> $W { return $W(ld_y(p.y_off + a * p.y_a + c * p.y_c + s * p.y_s)); }

//# nb_groups
@compute @workgroup_size(256)
fn nb_groups(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let g = wid.x;
    let bx = nb_box(g);
    let nc = bx.w;
    let len = bx.y * nc * p.s;
    let n = $W(len);
    var mean: $W = $W(0.0);
    var r: $W = $W(0.0);
    $STATS
    var ma: $W = $W(0.0);
    var mb: $W = $W(0.0);
    if ($DEPENDS) {
        var sa: $W = $W(0.0);
        var sb: $W = $W(0.0);
        for (var j0 = t; j0 < len; j0 += 4096u) {
            for (var u = 0u; u < 16u; u++) {
                let j = j0 + u * 256u;
                if (j < len) {
                    let e = nb_at(bx, j);
                    let d = nb_y(e.x, e.y, e.z) * $WEIGHT;
                    sa += d;
                    sb += d * ((nb_x(e.x, e.y, e.z) - mean) * r);
                }
            }
        }
        ma = group_sum(t, sa) / n;
        mb = group_sum(t, sb) / n;
        $NO_MEAN_TERM
    }
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let e = nb_at(bx, j);
                let d = nb_y(e.x, e.y, e.z) * $WEIGHT;
                // Without the dependence the statistics do not depend on x: no xhat term.
                var v = r * d;
                if ($DEPENDS) { v = r * (d - ma - (nb_x(e.x, e.y, e.z) - mean) * r * mb); }
                st_dx(p.d_off + e.x * p.d_a + e.y * p.d_c + e.z * p.d_s, f32(v));
            }
        }
    }
    if (t == 0u) {
        stats[2u * g] = f32(mean);
        stats[2u * g + 1u] = f32(r);
    }
}

//# nb_moments
// The mean (shifted by the group's first element) and r = 1 / sqrt(biased variance + eps).
    var first: $W = $W(0.0);
    if (len > 0u) { first = nb_x(bx.x, bx.z, 0u); }
    let shift = select($W(0.0), first, abs(first) < $W(inf_f32()));
    var sum: $W = $W(0.0);
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let e = nb_at(bx, j);
                sum += nb_x(e.x, e.y, e.z) - shift;
            }
        }
    }
    let dm = group_sum(t, sum) / n;
    var q: $W = $W(0.0);
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let e = nb_at(bx, j);
                let v = (nb_x(e.x, e.y, e.z) - shift) - dm;
                q += v * v;
            }
        }
    }
    mean = shift + dm;
    r = $W(1.0) / sqrt(group_sum(t, q) / n + $W(p.eps));

//# nb_rms
// r = 1 / sqrt(mean(x^2) + eps), the mean 0.
    var q: $W = $W(0.0);
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let e = nb_at(bx, j);
                let v = nb_x(e.x, e.y, e.z);
                q += v * v;
            }
        }
    }
    r = $W(1.0) / sqrt(group_sum(t, q) / n + $W(p.eps));

//# nb_channels
// Per channel c: dweight = sum(dy xhat), dbias = sum(dy) over its rows and spatial positions.
@compute @workgroup_size(256)
fn nb_channels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let c = wid.x;
    let len = p.a * p.s;
    var sw: $W = $W(0.0);
    var sb: $W = $W(0.0);
    for (var j0 = t; j0 < len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < len) {
                let a = j / p.s;
                let s = j % p.s;
                let g = $GROUP;
                let y = nb_y(a, c, s);
                sw += y * ((nb_x(a, c, s) - $W(stats[2u * g])) * $W(stats[2u * g + 1u]));
                sb += y;
            }
        }
    }
    let tw = group_sum(t, sw);
    let tb = group_sum(t, sb);
    if (t == 0u) {
        st_dw(p.dw_off + c * p.dw_st, f32(tw));
        $STORE_DB
    }
}
