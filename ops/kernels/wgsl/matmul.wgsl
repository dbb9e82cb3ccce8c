// matmul: 16x16 output tiles per work group, K in steps of 16 through workgroup memory, f32
// accumulation. Space 0 walks the batch dimensions (a, b, out, bias, batch-broadcast); rows and
// columns step by the p.*_rs and p.*_cs strides. The bias, when present, is added after the
// product, and the sum rounded once on store. An element whose f32 sum is not finite (an
// intermediate overflow, or an infinity or NaN in its row or column) is summed again in $W
// (f64 where the device has it), so that overflow in f32 does not turn a finite or infinite
// exact result into NaN.

//# matmul
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16, 1)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = walk0(wid.z);
    let row = wid.y * 16u + lid.y;
    let col = wid.x * 16u + lid.x;
    var acc = 0.0;
    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        let ak = k0 + lid.x;
        let bk = k0 + lid.y;
        var av = 0.0;
        if (row < p.m && ak < p.k) { av = ld_a(o[0] + row * p.a_rs + ak * p.a_cs); }
        var bv = 0.0;
        if (bk < p.k && col < p.n) { bv = ld_b(o[1] + bk * p.b_rs + col * p.b_cs); }
        ta[lid.y][lid.x] = av;
        tb[lid.y][lid.x] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            acc = acc + ta[lid.y][kk] * tb[kk][lid.x];
        }
        workgroupBarrier();
    }
    if (row < p.m && col < p.n) {
        var r = $RESULT;
        if (is_nan(acc) || is_inf(acc)) {
            var w: $W = 0.0;
            for (var k0 = 0u; k0 < p.k; k0 += 16u) {
                for (var u = 0u; u < 16u; u++) {
                    let k = k0 + u;
                    if (k < p.k) {
                        w = w + $W(ld_a(o[0] + row * p.a_rs + k * p.a_cs)) * $W(ld_b(o[1] + k * p.b_rs + col * p.b_cs));
                    }
                }
            }
            r = f32($WRESULT);
        }
        st_out(o[2] + row * p.o_rs + col * p.o_cs, r);
    }
}
