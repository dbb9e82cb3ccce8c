// cross_entropy and cross_entropy_backward over the positions of logits [N, C, d...]: space 0
// walks the positions (lane 0 logits, 1 target, 2 the loss or dlogits, 3 grad); along the class
// axis the logits are p.cs apart (dlogits p.ocs). One group of 256 per position (group id =
// position), accumulating in $W. A target that is neither the ignore index nor in [0, C) sets
// flag[0] and is never used as an address. Targets are read as i64.

//# ce_common
// The target of position lanes `o` and whether it counts (0), is ignored (1) or bad (2).
fn ce_target(o: vec4<u32>) -> vec2<i64> {
    let tv = i64(ld_tgt(o[1]));
    let ign = i64(bitcast<i32>(p.ign_hi)) * 4294967296li + i64(p.ign_lo);
    if (tv == ign) { return vec2<i64>(tv, 1li); }
    if (tv < 0li || tv >= i64(p.classes)) { return vec2<i64>(tv, 2li); }
    return vec2<i64>(tv, 0li);
}

// The row's log-sum-exp (m + log sum exp(x - m), m its maximum, NaN after a NaN) and sum.
fn ce_stats(t: u32, xo: u32) -> vec2<$W> {
    var m = -inf_f32();
    for (var c = t; c < p.classes; c += 256u) { m = f_max(m, f32(ld_x(xo + c * p.cs))); }
    m = group_max(t, m);
    var s: $W = $W(0.0);
    var sum: $W = $W(0.0);
    for (var c = t; c < p.classes; c += 256u) {
        let v = f32(ld_x(xo + c * p.cs));
        s += $W(exp(v - m));
        sum += $W(v);
    }
    s = group_sum(t, s);
    sum = group_sum(t, sum);
    return vec2<$W>($W(m + log(f32(s))), sum);
}

//# ce_rows
// Per position: the loss into `out` (reduction none) or into part[2 i] with part[2 i + 1] = 1
// where the position counts ($COUNT: the count only).
@compute @workgroup_size(256)
fn ce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = wid.x;
    let o = walk0(i);
    let tg = ce_target(o);
    var loss: $W = $W(0.0);
    // The statistics in uniform control flow (they hold barriers); used where the target counts.
    let st = ce_stats(t, o[0]);
    if (!$COUNT && tg.y == 0li) {
        loss = st.x - $W(ld_x(o[0] + u32(tg.x) * p.cs));
        if (p.eps > 0.0) {
            // A term of weight 0 is left out (0 x Inf would be NaN).
            loss = select($W(0.0), $W(1.0 - p.eps) * loss, p.eps < 1.0)
                + $W(p.eps) * (st.x - st.y / $W(p.classes));
        }
    }
    if (t == 0u) {
        if (tg.y == 2li) { flag[0] = 1u; }
        $STORE
    }
}

//# ce_total
// One group: the sum of the positions' losses (over their count for the mean) into the loss,
// or the count into cnt[0].
@compute @workgroup_size(256)
fn ce_total(@builtin(local_invocation_index) t: u32) {
    var s: $W = $W(0.0);
    var n: $W = $W(0.0);
    for (var i = t; i < p.positions; i += 256u) {
        s += $W(part[2u * i]);
        n += $W(part[2u * i + 1u]);
    }
    let ts = group_sum(t, s);
    let tn = group_sum(t, n);
    if (t == 0u) {
        $STORE
    }
}

//# ce_grad
// Per position: dlogits = g (softmax(x) - (1 - eps) [c = target] - eps / C), g the position's
// grad ($MEAN: over cnt[0]); 0 for an ignored or bad target.
@compute @workgroup_size(256)
fn ce_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = wid.x;
    let o = walk0(i);
    let tg = ce_target(o);
    // The statistics in uniform control flow (they hold barriers).
    let lse = f32(ce_stats(t, o[0]).x);
    if (tg.y != 0li) {
        for (var c = t; c < p.classes; c += 256u) { st_out(o[2] + c * p.ocs, 0.0); }
        if (t == 0u && tg.y == 2li) { flag[0] = 1u; }
        return;
    }
    var gi = $W(ld_g(o[3]));
    if ($MEAN) { gi = gi / $W(cnt[0]); }
    let spread = $W(p.eps) / $W(p.classes);
    for (var c = t; c < p.classes; c += 256u) {
        let pr = $W(exp(f32(ld_x(o[0] + c * p.cs)) - lse));
        let hit = select($W(0.0), $W(1.0 - p.eps), i64(c) == tg.x);
        st_out(o[2] + c * p.ocs, f32(gi * (pr - hit - spread)));
    }
}
