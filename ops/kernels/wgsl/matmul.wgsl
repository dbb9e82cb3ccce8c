// matmul, f32 accumulation. Each invocation computes a $TM x $TN block of the output: rows
// $TM * (wid.y * $WY + lid.y) + i and columns wid.x * $WX * $TN + lid.x + $WX * j, so that
// neighbouring invocations read neighbouring columns of b (the block and the work-group shape
// are tuned per device; the generator in matmul.rs writes the $DECLS, $STEP and $FINISH
// statements, one per row, column or vector of the block). Space 0 walks the batch dimensions
// (a, b, out, bias); rows and columns step by the p.*_rs and p.*_cs strides, and indices past
// the last row or column are clamped to it (their results are not stored). The bias, when
// present, is added after the product, and the sum rounded once on store. An element whose
// f32 sum is not finite (an intermediate overflow, or an infinity or NaN in its row or column)
// is summed again in $W (f64 where the device has it), so that overflow in f32 does not turn a
// finite or infinite exact result into NaN. Loops take 4 steps of k per iteration (some
// drivers bound the loop iterations of an invocation).

//# matmul
fn dot_wide(o: vec4<u32>, row: u32, col: u32) -> $W {
    var w: $W = 0.0;
    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        for (var u = 0u; u < 16u; u++) {
            let k = k0 + u;
            if (k < p.k) {
                w = w + $W(ld_a(o[0] + row * p.a_rs + k * p.a_cs)) * $W(ld_b(o[1] + k * p.b_rs + col * p.b_cs));
            }
        }
    }
    return w;
}

fn finish(o: vec4<u32>, row: u32, col: u32, acc: f32) {
    if (row >= p.m || col >= p.n) { return; }
    var r = $RESULT;
    if (is_nan(acc) || is_inf(acc)) {
        let w = dot_wide(o, row, col);
        r = f32($WRESULT);
    }
    st_out(o[2] + row * p.o_rs + col * p.o_cs, r);
}

@compute @workgroup_size($WX, $WY, 1)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = walk0(wid.z);
    let r0 = (wid.y * $WYu + lid.y) * $TMu;
    let c0 = wid.x * $WXTNu + lid.x;
    let last_r = max(p.m, 1u) - 1u;
    let last_c = max(p.n, 1u) - 1u;
$DECLS
    let k4 = p.k / 4u * 4u;
    for (var k0 = 0u; k0 < k4; k0 += 4u) {
        for (var u = 0u; u < 4u; u++) {
            let k = k0 + u;
            let ka = k * p.a_cs;
            let kb = k * p.b_rs;
$STEP
        }
    }
    for (var u = 0u; u < 4u; u++) {
        let k = k4 + u;
        if (k < p.k) {
            let ka = k * p.a_cs;
            let kb = k * p.b_rs;
$STEP
        }
    }
$FINISH
}
