// softmax, log_softmax, layer_norm, rms_norm: one work group of 256 invocations per line
// (space 0 walks the lines: x, out; p.xs and p.os step along the line). Loops over a line take
// 16 elements per iteration (the inner loop has a constant count and is unrolled), since some
// drivers stop a loop after 65535 iterations per invocation (lavapipe). rope: one invocation per
// output element. attention: one work group per query row. Sums and products accumulate in $W:
// f64 where the device has it (so that values near the f32 range's end do not overflow in
// intermediate results where the exact result is finite), else f32.

//# group_reduce
var<workgroup> red: array<f32, 256>;
var<workgroup> redw: array<$W, 256>;

fn group_sum(t: u32, v: $W) -> $W {
    redw[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { redw[t] = redw[t] + redw[t + s]; }
        workgroupBarrier();
    }
    let r = redw[0];
    workgroupBarrier();
    return r;
}

fn group_max(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] = f_max(red[t], red[t + s]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

//# softmax
// With m the row's maximum (NaN if the row holds one): exp(x - m) / sum, or
// (x - m) - log(sum) for log_softmax.
@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let base = walk0(wid.x);
    var m = -inf_f32();
    for (var j0 = t; j0 < p.len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < p.len) {
                m = f_max(m, ld_x(base[0] + j * p.xs));
            }
        }
    }
    m = group_max(t, m);
    var sw: $W = 0.0;
    for (var j0 = t; j0 < p.len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < p.len) {
                sw = sw + $W(exp_ieee(ld_x(base[0] + j * p.xs) - m));
            }
        }
    }
    let s = f32(group_sum(t, sw));
    var ls = log(s);
    if (is_nan(s)) { ls = s; }
    for (var j0 = t; j0 < p.len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < p.len) {
                let d = ld_x(base[0] + j * p.xs) - m;
                st_out(base[1] + j * p.os, $OUT);
            }
        }
    }
}

//# norm
// layer_norm: mean, then the biased variance (two passes), then (x - mean) / sqrt(var + eps)
// * w + b, with sums taken relative to the row's first element (a constant row then has
// deviations of exactly 0, so eps = 0 gives NaN, also where $W is f32). rms_norm:
// x / sqrt(mean(x^2) + eps) * w. $W and $B read the optional weight and bias.
@compute @workgroup_size(256)
fn norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let base = walk0(wid.x);
    let n = $W(p.len);
    // With `shift`, the mean less the shift (rms_norm: both 0).
    var mean: $W = 0.0;
    var shift: $W = 0.0;
    var den: $W;
    if ($RMS) {
        var q: $W = 0.0;
        for (var j0 = t; j0 < p.len; j0 += 4096u) {
            for (var u = 0u; u < 16u; u++) {
                let j = j0 + u * 256u;
                if (j < p.len) {
                    let x = $W(ld_x(base[0] + j * p.xs));
                    q = q + x * x;
                }
            }
        }
        den = sqrt(group_sum(t, q) / n + $W(p.eps));
    } else {
        if (p.len > 0u) {
            shift = $W(ld_x(base[0]));
        }
        var s: $W = 0.0;
        for (var j0 = t; j0 < p.len; j0 += 4096u) {
            for (var u = 0u; u < 16u; u++) {
                let j = j0 + u * 256u;
                if (j < p.len) {
                    s = s + ($W(ld_x(base[0] + j * p.xs)) - shift);
                }
            }
        }
        mean = group_sum(t, s) / n;
        var q: $W = 0.0;
        for (var j0 = t; j0 < p.len; j0 += 4096u) {
            for (var u = 0u; u < 16u; u++) {
                let j = j0 + u * 256u;
                if (j < p.len) {
                    let d = ($W(ld_x(base[0] + j * p.xs)) - shift) - mean;
                    q = q + d * d;
                }
            }
        }
        den = sqrt(group_sum(t, q) / n + $W(p.eps));
    }
    for (var j0 = t; j0 < p.len; j0 += 4096u) {
        for (var u = 0u; u < 16u; u++) {
            let j = j0 + u * 256u;
            if (j < p.len) {
                let y = (($W(ld_x(base[0] + j * p.xs)) - shift) - mean) / den;
                st_out(base[1] + j * p.os, f32($Y));
            }
        }
    }
}

//# rope
// Space 0 walks x's shape (x, out). Element j of a row pairs with its partner pj; i indexes
// cos and sin at row s = (lin / D) % S.
@compute @workgroup_size(256)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lin = gid.x;
    if (lin >= p.n) { return; }
    let o = walk0(lin);
    let j = lin % p.d;
    let s = (lin / p.d) % p.seq;
    let half = p.d / 2u;
    var i: u32;
    var first: bool;
    var pj: u32;
    if (p.interleaved != 0u) {
        i = j / 2u;
        first = (j & 1u) == 0u;
        pj = select(j - 1u, j + 1u, first);
    } else {
        first = j < half;
        i = select(j - half, j, first);
        pj = select(j - half, j + half, first);
    }
    let xv = ld_x(o[0]);
    let xp = ld_x(o[0] - j * p.xs + pj * p.xs);
    let c = ld_cos(p.c_off + s * p.c_s0 + i * p.c_s1);
    let n = ld_sin(p.s_off + s * p.s_s0 + i * p.s_s1);
    var y: $W;
    if (first) {
        y = $W(xv) * $W(c) - $W(xp) * $W(n);
    } else {
        y = $W(xv) * $W(c) + $W(xp) * $W(n);
    }
    st_out(o[1], f32(y));
}

//# attention
// One group of 64 per query row (space 0 walks [batch..., Lq]: q, out; space 1 walks the
// batch: k, v). Logits go to `scratch` (one row of Lk per group of this launch), become
// exp(logit - max), and the output is their weighted sum of v's rows over their total.
// Masked keys (causal: j > i) take no part; a mask (space 0's third tensor, p.m_js along the
// keys) is added to the logits, or, bool, leaves out the keys where it is false. Inner loops
// take 16 steps per iteration.
var<workgroup> ared: array<$W, 64>;

fn w_is_nan(x: $W) -> bool { return !(x == x); }

fn attn_reduce(t: u32, v: $W, is_max: bool) -> $W {
    ared[t] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (t < s) {
            let a = ared[t];
            let b = ared[t + s];
            if (is_max) {
                if (w_is_nan(a) || w_is_nan(b)) { ared[t] = a + b; } else { ared[t] = max(a, b); }
            } else {
                ared[t] = a + b;
            }
        }
        workgroupBarrier();
    }
    let r = ared[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = p.row0 + wid.x;
    let o = walk0(row);
    let i = row % p.lq;
    let kv = walk1(row / p.lq);
    // The keys first..nk-1 that the row sees: all; or, causal, those at or before its position
    // i + shift (within the window).
    var first = 0u;
    var nk = p.lk;
    if (p.causal != 0u) {
        let pos = i32(i) + p.shift;
        nk = u32(clamp(pos + 1, 0, i32(p.lk)));
        if (p.window > 0u) { first = u32(clamp(pos + 1 - i32(p.window), 0, i32(nk))); }
    }
    let sb = wid.x * p.lk;
    var m: $W = $W(-inf_f32());
    var nan = false;
    for (var j = first + t; j < nk; j += 64u) {
        var s: $W = 0.0;
        for (var d0 = 0u; d0 < p.d; d0 += 16u) {
            for (var u = 0u; u < 16u; u++) {
                let d = d0 + u;
                if (d < p.d) {
                    s = s + $W(ld_q(o[0] + d * p.q_ds)) * $W(ld_k(kv[0] + j * p.k_js + d * p.k_ds));
                }
            }
        }
        s = s * $W(p.scale);
        if (p.softcap > 0.0) {
            // tanh, finite for every argument: its series near 0 (where 1 - e would cancel),
            // else from one exponential.
            let x = f32(s) / p.softcap;
            var th: f32;
            if (abs(x) < 0.125) {
                let x2 = x * x;
                th = x * (1.0 + x2 * (-0.33333334 + x2 * (0.13333334 + x2 * -0.05396825)));
            } else {
                let e = exp_ieee(-2.0 * abs(x));
                th = sign(x) * ((1.0 - e) / (1.0 + e));
            }
            s = $W(p.softcap * th);
        }
        $MASK
        scratch[sb + j] = s;
        if (w_is_nan(s)) { nan = true; } else { m = max(m, s); }
    }
    // Seen: some logit above -inf (or NaN, which the output keeps).
    var seen: $W = 0.0;
    if (nan || m > $W(-inf_f32())) { seen = 1.0; }
    seen = attn_reduce(t, seen, true);
    if (nan) { m = $W(nan_f32()); }
    m = attn_reduce(t, m, true);
    var l: $W = 0.0;
    for (var j = first + t; j < nk; j += 64u) {
        let e = $W(exp_ieee(f32(scratch[sb + j] - m)));
        scratch[sb + j] = e;
        l = l + e;
    }
    l = attn_reduce(t, l, false);
    storageBarrier();
    for (var c = t; c < p.dv; c += 64u) {
        var acc: $W = 0.0;
        for (var j0 = first; j0 < nk; j0 += 16u) {
            for (var u = 0u; u < 16u; u++) {
                let j = j0 + u;
                if (j < nk) {
                    acc = acc + scratch[sb + j] * $W(ld_v(kv[1] + j * p.v_js + c * p.v_ds));
                }
            }
        }
        // A row that sees no key (every logit -inf) is 0.
        st_out(o[1] + c * p.o_ds, select(0.0, f32(acc / l), seen > 0.0));
    }
}
