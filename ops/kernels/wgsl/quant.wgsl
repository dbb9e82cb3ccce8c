// The quantized ops (docs/ops.md, "Quantized ops"). Every operand is a 2-D view: element (r, c)
// at p.<t>o + r * p.<t>rs + c * p.<t>cs. $Q names the quantized tensor, $QAT reads value k of a
// quantized row (i8, or a nibble of packed int4 data), $ZERO the zero point of (row, group),
// $ROUND rounds an f32 to the scales' dtype and back.

//# q_read
fn q_at(o: u32, cs: u32, k: u32) -> i32 { return $QAT; }
fn q_zero(r: u32, g: u32) -> i32 { return $ZERO; }

//# q_round
fn q_round(v: f32) -> f32 { return $ROUND; }

//# quantize
// One invocation per (row, group): its scale and zero point, then its values.
@compute @workgroup_size(256)
fn quantize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.n) { return; }
    let r = t / p.groups;
    let g = t % p.groups;
    let base = p.xo + r * p.xrs + g * p.G * p.xcs;
    let qmin = f32(p.qmin);
    let qmax = f32(p.qmax);
    var scale = 0.0;
    var zero = 0.0;
    if (p.sym != 0u) {
        var amax = 0.0;
        for (var j = 0u; j < p.G; j++) { amax = max(amax, abs(f32(ld_x(base + j * p.xcs)))); }
        scale = q_round(amax / f32(p.symmax));
        zero = f32(p.zdef);
    } else {
        var lo = 0.0;
        var hi = 0.0;
        for (var j = 0u; j < p.G; j++) {
            let v = f32(ld_x(base + j * p.xcs));
            lo = min(lo, v);
            hi = max(hi, v);
        }
        scale = q_round((hi - lo) / (qmax - qmin));
        if (scale != 0.0) { zero = clamp(qmin - round(lo / scale), qmin, qmax); }
    }
    let qrow = p.qo + r * p.qrs;
    $STORE_Q
    st_s(p.so + r * p.srs + g * p.scs, scale);
    st_z(p.zo + r * p.zrs + g * p.zcs, $ZSTORE);
}

//# q_code
fn q_code(v: f32, scale: f32, zero: f32) -> i32 {
    if (scale == 0.0) { return i32(zero); }
    return i32(clamp(round(v / scale) + zero, f32(p.qmin), f32(p.qmax)));
}

//# dequantize
// One invocation per output element: out = (q - z) * s.
@compute @workgroup_size(256)
fn dequantize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.n) { return; }
    let r = t / p.K;
    let c = t % p.K;
    let g = c / p.G;
    let v = q_at(p.qo + r * p.qrs, p.qcs, c) - q_zero(r, g);
    st_out(p.oo + r * p.ors + c * p.ocs, f32(v) * f32(ld_s(p.so + r * p.srs + g * p.scs)));
}

//# matmul_wq
// One invocation per output element (m, n): per group of n's weight row, sum_k x (q - z) in
// f32, times the group's scale, accumulated in $W.
@compute @workgroup_size(256)
fn matmul_wq(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.n) { return; }
    let m = t / p.N;
    let n = t % p.N;
    let xr = p.xo + m * p.xrs;
    let wr = p.qo + n * p.qrs;
    var acc: $W = $W(0.0);
    for (var g = 0u; g < p.K / p.G; g++) {
        let zero = q_zero(n, g);
        var part = 0.0;
        for (var k = g * p.G; k < (g + 1u) * p.G; k++) {
            part += f32(ld_x(xr + k * p.xcs)) * f32(q_at(wr, p.qcs, k) - zero);
        }
        acc += $W(part) * $W(ld_s(p.so + n * p.srs + g * p.scs));
    }
    st_out(p.oo + m * p.ors + n * p.ocs, f32(acc));
}

//# matmul_i8
// One invocation per output element: the i32 dot product (wrapping), then stored (FINISH).
@compute @workgroup_size(256)
fn matmul_i8(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.n) { return; }
    let m = t / p.N;
    let n = t % p.N;
    var acc = 0u;
    for (var k = 0u; k < p.K; k++) {
        acc += bitcast<u32>(ld_a(p.ao + m * p.ars + k * p.acs) * ld_b(p.bo + k * p.brs + n * p.bcs));
    }
    let v = bitcast<i32>(acc);
    $FINISH
}
