// attention_backward (docs/ops.md 8.9) over contiguous operands, as attention_grad.h: q [R, D],
// g [R, Dv], k [Bkv Lk, D], v [Bkv Lk, Dv], the mask in place (broadcast by strides); f32 gradients dq,
// dk, dv (zeroed before) and stats [R, 3] (maximum, sum of exp, Di). MASK_TERM applies the
// mask to logit l of row r, key j.

//# ab_common
fn ab_seen(i: u32, j: u32) -> bool {
    if (p.causal == 0u) { return true; }
    let pos = i32(i) + p.shift;
    if (i32(j) > pos) { return false; }
    if (p.window > 0u && i32(j) <= pos - i32(p.window)) { return false; }
    return true;
}

fn ab_kv_batch(qb: u32) -> u32 {
    return (qb / p.hq) * (p.hq / p.group) + (qb % p.hq) / p.group;
}

// tanh, finite for every argument: its series near 0, else from one exponential.
fn ab_tanh(x: f32) -> f32 {
    if (abs(x) < 0.125) {
        let x2 = x * x;
        return x * (1.0 + x2 * (-0.33333334 + x2 * (0.13333334 + x2 * -0.05396825)));
    }
    let e = exp_ieee(-2.0 * abs(x));
    return sign(x) * ((1.0 - e) / (1.0 + e));
}

// The logit of query row r and key row t (key j of its batch), and the soft cap's derivative.
// The mask's element for query row r and key j.
fn ab_mo(r: u32, j: u32) -> u32 {
    let qb = r / p.lq;
    return p.mo + (qb / p.hq) * p.ms0 + (qb % p.hq) * p.ms1 + (r % p.lq) * p.ms2 + j * p.ms3;
}

fn ab_logit(r: u32, t: u32, j: u32) -> vec2<f32> {
    var s = 0.0;
    for (var c = 0u; c < p.d; c++) { s += f32(ld_q(r * p.d + c)) * f32(ld_k(t * p.d + c)); }
    s = s * p.scale;
    var l = s;
    var dc = 1.0;
    if (p.cap > 0.0) {
        let th = ab_tanh(s / p.cap);
        l = p.cap * th;
        dc = 1.0 - th * th;
    }
    $MASK_TERM
    return vec2<f32>(l, dc);
}

fn ab_dp(r: u32, t: u32) -> f32 {
    var s = 0.0;
    for (var c = 0u; c < p.dv; c++) { s += f32(ld_g(r * p.dv + c)) * f32(ld_v(t * p.dv + c)); }
    return s;
}

//# ab_stats
@compute @workgroup_size(256)
fn ab_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) { return; }
    let i = r % p.lq;
    let kb = ab_kv_batch(r / p.lq);
    var m = -inf_f32();
    for (var j = 0u; j < p.lk; j++) {
        if (!ab_seen(i, j)) { continue; }
        let l = ab_logit(r, kb * p.lk + j, j).x;
        if (is_nan(l)) { m = l; break; }
        m = max(m, l);
    }
    var sum = 0.0;
    var dsum = 0.0;
    if (!is_inf(m) || m > 0.0) {
        for (var j = 0u; j < p.lk; j++) {
            if (!ab_seen(i, j)) { continue; }
            let e = exp(ab_logit(r, kb * p.lk + j, j).x - m);
            if (e == 0.0) { continue; }
            sum += e;
            dsum += e * ab_dp(r, kb * p.lk + j);
        }
    }
    stats[3u * r] = m;
    stats[3u * r + 1u] = sum;
    stats[3u * r + 2u] = select(0.0, dsum / sum, sum > 0.0);
}

//# ab_dq
@compute @workgroup_size(256)
fn ab_dq(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) { return; }
    let m = stats[3u * r];
    if (is_inf(m) && m < 0.0) { return; }
    let i = r % p.lq;
    let kb = ab_kv_batch(r / p.lq);
    for (var j = 0u; j < p.lk; j++) {
        if (!ab_seen(i, j)) { continue; }
        let t = kb * p.lk + j;
        let ld = ab_logit(r, t, j);
        let pr = exp(ld.x - m) / stats[3u * r + 1u];
        if (pr == 0.0) { continue; }
        let ds = pr * (ab_dp(r, t) - stats[3u * r + 2u]) * ld.y * p.scale;
        for (var c = 0u; c < p.d; c++) { dq[r * p.d + c] += ds * f32(ld_k(t * p.d + c)); }
    }
}

//# ab_dkv
@compute @workgroup_size(256)
fn ab_dkv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.keys) { return; }
    let hkv = p.hq / p.group;
    let kb = t / p.lk;
    let j = t % p.lk;
    for (var gi = 0u; gi < p.group; gi++) {
        let qb = (kb / hkv) * p.hq + (kb % hkv) * p.group + gi;
        for (var i = 0u; i < p.lq; i++) {
            if (!ab_seen(i, j)) { continue; }
            let r = qb * p.lq + i;
            let m = stats[3u * r];
            if (is_inf(m) && m < 0.0) { continue; }
            let ld = ab_logit(r, t, j);
            let pr = exp(ld.x - m) / stats[3u * r + 1u];
            if (pr == 0.0) { continue; }
            let ds = pr * (ab_dp(r, t) - stats[3u * r + 2u]) * ld.y * p.scale;
            for (var c = 0u; c < p.dv; c++) { dv[t * p.dv + c] += pr * f32(ld_g(r * p.dv + c)); }
            for (var c = 0u; c < p.d; c++) { dk[t * p.d + c] += ds * f32(ld_q(r * p.d + c)); }
        }
    }
}
