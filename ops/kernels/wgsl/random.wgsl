// Random numbers that are the same on every device (docs/ops.md 8.10; the host's recipe is
// ops/src/random.rs): Philox 4x32-10 keyed by (seed, offset). Element `lin` takes word lin % 4
// of the block of counter (lin / 4, offset) under key seed; p.k0, p.k1 are the seed's halves,
// p.c2, p.c3 the offset's.
//
// Every float step is one operation rounded to nearest, in the order written. A product that
// is added passes through rmul, which xors its bits with p.zero (0 at run time, unknown to the
// compiler), so that no driver can contract it into a fused multiply-add.

//# philox
// (Uses mul_wide of unary.wgsl: a * b as (low, high) words.)
fn rnd_word(lin: u32) -> u32 {
    var c = vec4<u32>(lin >> 2u, 0u, p.c2, p.c3);
    var k0 = p.k0;
    var k1 = p.k1;
    for (var r = 0u; r < 10u; r++) {
        let m0 = mul_wide(0xD2511F53u, c.x);
        let m1 = mul_wide(0xCD9E8D57u, c.z);
        c = vec4<u32>(m1.y ^ c.y ^ k0, m1.x, m0.y ^ c.w ^ k1, m0.x);
        k0 = k0 + 0x9E3779B9u;
        k1 = k1 + 0xBB67AE85u;
    }
    let lane = lin & 3u;
    if (lane == 0u) { return c.x; }
    if (lane == 1u) { return c.y; }
    if (lane == 2u) { return c.z; }
    return c.w;
}

fn rmul(a: f32, b: f32) -> f32 { return bitcast<f32>(bitcast<u32>(a * b) ^ p.zero); }

// (w >> 8) * 2^-24: exact.
fn rnd_u24(w: u32) -> f32 { return f32(w >> 8u) * bitcast<f32>(0x33800000u); }

//# normal uses philox
// c[0] + t * (c[1] + t * (...)), every product and sum rounded.
fn rnd_poly(t: f32, c: array<u32, 10>) -> f32 {
    var p = bitcast<f32>(c[9]);
    p = rmul(p, t) + bitcast<f32>(c[8]);
    p = rmul(p, t) + bitcast<f32>(c[7]);
    p = rmul(p, t) + bitcast<f32>(c[6]);
    p = rmul(p, t) + bitcast<f32>(c[5]);
    p = rmul(p, t) + bitcast<f32>(c[4]);
    p = rmul(p, t) + bitcast<f32>(c[3]);
    p = rmul(p, t) + bitcast<f32>(c[2]);
    p = rmul(p, t) + bitcast<f32>(c[1]);
    return rmul(p, t) + bitcast<f32>(c[0]);
}

// ln(v) ~ e * ln 2 + l for an integer-valued v in [1, 2^24): (e, bits of l).
fn rnd_log_part(v: f32) -> vec2<i32> {
    let bits = bitcast<u32>(v);
    var m = bitcast<f32>((bits & 0x7fffffu) | 0x3f800000u);
    var e = i32(bits >> 23u) - 127;
    if (m > bitcast<f32>(0x3fb504f3u)) {
        m = m * 0.5;
        e = e + 1;
    }
    let t = m - 1.0;
    let l = rmul(t, rnd_poly(t, array<u32, 10>(0x3f800000u, 0xbefffffcu, 0x3eaaaaa8u,
        0xbe800214u, 0x3e4cd23bu, 0xbe2a13d4u, 0x3e11343au, 0xbe079613u, 0x3e043db9u,
        0xbd9c7039u)));
    return vec2<i32>(e, bitcast<i32>(l));
}

// The standard normal draw of a word: sqrt(2) * erfinv(x), x in (-1, 1) from its top 23 bits.
fn rnd_normal_z(w: u32) -> f32 {
    let k = w >> 9u;
    let a = f32(2u * k + 1u);
    let b = f32((1u << 24u) - 2u * k - 1u);
    let x = rmul(f32(i32(2u * k + 1u) - (1 << 23u)), bitcast<f32>(0x34000000u));
    let pa = rnd_log_part(a);
    let pb = rnd_log_part(b);
    let s = bitcast<f32>(pa.y) + bitcast<f32>(pb.y);
    let big_w = -(rmul(f32(pa.x + pb.x - 46), bitcast<f32>(0x3f317218u)) + s);
    var q: f32;
    if (big_w < 5.0) {
        q = rnd_poly(big_w - 2.5, array<u32, 10>(0x4007e45eu, 0x3eb2962eu, 0xbbc1958fu,
            0xbae836d6u, 0x39a1e4fbu, 0xb6eb5af9u, 0xb6a458dcu, 0x3530b03cu, 0x330d7031u,
            0xb25457cdu));
    } else {
        var y = bitcast<f32>(0x5f3759dfu - (bitcast<u32>(big_w) >> 1u));
        let h = 0.5 * big_w;
        for (var r = 0u; r < 3u; r++) {
            let hyy = rmul(rmul(h, y), y);
            y = rmul(y, 1.5 - hyy);
        }
        q = rnd_poly(rmul(big_w, y) - 3.0, array<u32, 10>(0x408034b6u, 0x3fb55293u, 0x3c5adbd4u,
            0xbc31005au, 0x3c03b33cu, 0xbba64b52u, 0x3b0a7420u, 0xb8dacd90u, 0xb9eb2794u,
            0x393c6a1bu));
    }
    return rmul(q, x);
}

//# wide
// f64: a product that is added is kept apart by a select on p.zero.
fn rmul64(a: f64, b: f64) -> f64 { return select(a * b, 0.0lf, p.zero != 0u); }
fn rnd_u32d(w: u32) -> f64 { return f64(w) * f64_from_parts(0u, 0x3df00000u); }
