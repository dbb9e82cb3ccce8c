// Reductions, cumsum and topk: work groups of 256 invocations per output row, or per part of
// a long row (with a second launch that combines the parts).

//# reduce_common
// sum, mean, max, min, argmax, argmin. Space 0 walks the kept dimensions (x, out); space 1
// the reduced ones (x). An Acc is a partial result: a value and, for argmax/argmin, the
// position (NONE while empty). Each invocation pushes a strided share of its range in order,
// then the group merges the shares.
const NONE: u32 = 0xffffffffu;
struct Acc {
    v: $ACC,
    i: u32,
}

fn acc_push(a: Acc, x: $X, j: u32) -> Acc {
    $PUSH
}

fn acc_merge(a: Acc, b: Acc) -> Acc {
    $MERGE
}

var<workgroup> sv: array<Acc, 256>;

fn group_merge(t: u32, a: Acc) -> Acc {
    sv[t] = a;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { sv[t] = acc_merge(sv[t], sv[t + s]); }
        workgroupBarrier();
    }
    let r = sv[0];
    workgroupBarrier();
    return r;
}

//# reduce
// Group g reduces positions [c * p.chunk, (c + 1) * p.chunk) of row g / p.chunks (c = g %
// p.chunks). With one chunk per row it stores the result; with more, it stores its partial
// result in `part`, and `reduce_finish` merges a row's partials.
@compute @workgroup_size(256)
fn reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x / p.chunks;
    let c = wid.x % p.chunks;
    let ob = walk0(row);
    let start = c * p.chunk;
    let end = min(start + p.chunk, p.count);
    var a = Acc($INIT, NONE);
    for (var j = start + t; j < end; j += 256u) {
        a = acc_push(a, ld_x(ob[0] + walk1(j)[0]), j);
    }
    let r = group_merge(t, a);
    if (t == 0u) {
        $STORE
    }
}

//# reduce_finish
@compute @workgroup_size(256)
fn reduce_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let ob = walk0(wid.x);
    var a = Acc($INIT, NONE);
    for (var c = t; c < p.chunks; c += 256u) {
        a = acc_merge(a, part[wid.x * p.chunks + c]);
    }
    let r = group_merge(t, a);
    if (t == 0u) {
        st_out(ob[1], $FINAL);
    }
}

//# logsumexp
// A logsumexp state: x the maximum (NaN after a NaN, +Inf after a +Inf), y the sum of
// exp(v - x) over the elements v.
fn lse_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    if (is_nan(a.x) || is_nan(b.x)) { return vec2<f32>(nan_f32(), 0.0); }
    if ((is_inf(a.x) && a.x > 0.0) || (is_inf(b.x) && b.x > 0.0)) {
        return vec2<f32>(inf_f32(), 1.0);
    }
    if (is_inf(b.x)) { return a; }
    if (is_inf(a.x)) { return b; }
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}
fn lse_final(v: vec2<f32>) -> f32 {
    if (is_nan(v.x) || is_inf(v.x)) { return v.x; }
    return v.x + log(v.y);
}

//# var
// A variance state, in $W (f64 where the device has it, so that squares of values near the
// largest float do not overflow): x the count, y the mean, z the sum of squared deviations
// (Welford, merged by Chan's formula).
fn var_merge(a: vec4<$W>, b: vec4<$W>) -> vec4<$W> {
    if (b.x == 0.0) { return a; }
    if (a.x == 0.0) { return b; }
    let n = a.x + b.x;
    let f = b.x / n;
    let delta = b.y - a.y;
    return vec4<$W>(n, a.y + delta * f, a.z + b.z + delta * delta * a.x * f, 0.0);
}
// Divided by p.divisor = N - correction; an Inf or NaN element (a mean that is not finite) and
// no divisor (N <= correction) give NaN.
fn var_final(v: vec4<$W>) -> f32 {
    let mean = f32(v.y);
    if (is_nan(mean) || is_inf(mean) || p.divisor == 0.0) { return nan_f32(); }
    return f32(v.z / $W(p.divisor));
}
fn std_final(v: vec4<$W>) -> f32 {
    let mean = f32(v.y);
    if (is_nan(mean) || is_inf(mean) || p.divisor == 0.0) { return nan_f32(); }
    return f32(sqrt(v.z / $W(p.divisor)));
}

//# prod
// A float product as x * 2^y with x in [0.5, 1) (frexp): partial products neither overflow nor
// underflow.
// An element, normalized first: the product of two mantissas in [0.5, 1) never underflows.
// Subnormals by their bits (x = bits * 2^-149), which drivers' frexp may not handle.
fn prod_one(x: f32) -> vec2<f32> {
    let b = bitcast<u32>(x);
    if ((b & 0x7f800000u) == 0u && (b & 0x7fffffu) != 0u) {
        let r = frexp(f32(b & 0x7fffffu));
        let m = select(r.fract, -r.fract, (b >> 31u) != 0u);
        return vec2<f32>(m, f32(r.exp - 149));
    }
    let r = frexp(x);
    return vec2<f32>(r.fract, f32(r.exp));
}
fn prod_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let r = frexp(a.x * b.x);
    return vec2<f32>(r.fract, a.y + b.y + f32(r.exp));
}
// 0, Inf and NaN are the product whatever the exponent (a driver's ldexp may scale by a power
// of two that underflows to 0: Inf times it would be NaN); ldexp's result is defined for
// exponents up to 128 only: beyond, m 2^e (|m| >= 0.5) overflows to Inf of m's sign. By bits:
// a driver may fold float comparisons.
fn prod_final(v: vec2<f32>) -> f32 {
    let b = bitcast<u32>(v.x);
    if ((b & 0x7fffffffu) == 0u || (b & 0x7f800000u) == 0x7f800000u) { return v.x; }
    if (v.y > 128.0) { return bitcast<f32>((b & 0x80000000u) | 0x7f800000u); }
    return ldexp(v.x, i32(max(v.y, -300.0)));
}

//# float_order
// The order of argmax/argmin and topk: NaN above every number, NaNs tie, -0.0 ties +0.0.
fn key_gt(a: f32, b: f32) -> bool {
    return (is_nan(a) && !is_nan(b)) || (!is_nan(a) && !is_nan(b) && a > b);
}
fn key_same(a: f32, b: f32) -> bool {
    return (is_nan(a) && is_nan(b)) || (!is_nan(a) && !is_nan(b) && a == b);
}
// argmin: NaN below every number (the first NaN wins both ways).
fn key_lt(a: f32, b: f32) -> bool {
    return (is_nan(a) && !is_nan(b)) || (!is_nan(a) && !is_nan(b) && a < b);
}

//# int_order
fn key_gt(a: $T, b: $T) -> bool { return a > b; }
fn key_same(a: $T, b: $T) -> bool { return a == b; }
fn key_lt(a: $T, b: $T) -> bool { return a < b; }

//# cumsum_common
// cumsum and cumprod, one group per block of a line along the axis (space 0 walks the lines: x,
// out): group g scans block g % p.blocks (p.block elements) of line g / p.blocks. Each
// invocation owns a contiguous chunk of the block: it combines the chunk, the group scans the
// chunk totals, and each invocation rescans its chunk from the total before it. Lines of more
// than one block first store each block's total (`cumsum_totals`); a block then starts from the
// combination of the totals before it. Step j of the scan is position at(j) of the line (from
// the end for reverse). cs_add combines (a sum, or a product: float products as m * 2^e), cs_of
// makes an element's value, cs_out the stored one.
var<workgroup> sc: array<$ACC, 256>;

fn cs_add(a: $ACC, b: $ACC) -> $ACC { return $ADD; }
fn cs_of(x: $X) -> $ACC { return $OF; }
fn at(j: u32) -> u32 { return select(j, p.len - 1u - j, $REV); }

fn group_total(t: u32, v: $ACC) -> $ACC {
    sc[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { sc[t] = cs_add(sc[t], sc[t + s]); }
        workgroupBarrier();
    }
    let r = sc[0];
    workgroupBarrier();
    return r;
}

//# cumsum_totals
@compute @workgroup_size(256)
fn cumsum_totals(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let line = wid.x / p.blocks;
    let b0 = (wid.x % p.blocks) * p.block;
    let b1 = min(b0 + p.block, p.len);
    let base = walk0(line);
    var acc: $ACC = $ZERO;
    for (var j = b0 + t; j < b1; j += 256u) {
        acc = cs_add(acc, cs_of(ld_x(base[0] + at(j) * p.xs)));
    }
    let total = group_total(t, acc);
    if (t == 0u) { totals[wid.x] = total; }
}

//# cumsum
@compute @workgroup_size(256)
fn cumsum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let line = wid.x / p.blocks;
    let blk = wid.x % p.blocks;
    let b0 = blk * p.block;
    let b1 = min(b0 + p.block, p.len);
    let base = walk0(line);
    var before: $ACC = $ZERO;
    if (p.blocks > 1u) {
        var pp: $ACC = $ZERO;
        for (var c = t; c < blk; c += 256u) {
            pp = cs_add(pp, totals[line * p.blocks + c]);
        }
        before = group_total(t, pp);
    }
    let chunk = (p.block + 255u) / 256u;
    let s = min(b0 + t * chunk, b1);
    let e = min(s + chunk, b1);
    var acc: $ACC = $ZERO;
    for (var j = s; j < e; j++) {
        acc = cs_add(acc, cs_of(ld_x(base[0] + at(j) * p.xs)));
    }
    sc[t] = acc;
    workgroupBarrier();
    for (var off = 1u; off < 256u; off <<= 1u) {
        var add: $ACC = $ZERO;
        if (t >= off) { add = sc[t - off]; }
        workgroupBarrier();
        sc[t] = cs_add(sc[t], add);
        workgroupBarrier();
    }
    var run: $ACC = before;
    if (t > 0u) { run = cs_add(run, sc[t - 1u]); }
    for (var j = s; j < e; j++) {
        let before_j = run;
        run = cs_add(run, cs_of(ld_x(base[0] + at(j) * p.xs)));
        st_out(base[1] + at(j) * p.os, $OUT(select(run, before_j, $EXCL)));
    }
}

//# topk_common
// topk's order: `before(a, ia, b, ib)` when (a, ia) comes first in the output (the larger, or
// the smaller, value; ties by the lower index); padding (index NONE) after everything.
const NONE: u32 = 0xffffffffu;

fn before(a: $ACC, ia: u32, b: $ACC, ib: u32) -> bool {
    if (ia == NONE) { return false; }
    if (ib == NONE) { return true; }
    return $FIRST(a, b) || (key_same(a, b) && ia < ib);
}

//# topk
// One group per line (space 0: x, values, indices). Pass r selects the first element, in the
// order of `before`, that comes after the one pass r - 1 selected: k passes, each a reduction.
var<workgroup> tv: array<$ACC, 256>;
var<workgroup> ti: array<u32, 256>;

@compute @workgroup_size(256)
fn topk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let base = walk0(wid.x);
    var pv: $ACC = $ZERO;
    var pi = NONE;
    for (var r = 0u; r < p.k; r++) {
        var bv: $ACC = $ZERO;
        var bi = NONE;
        for (var j0 = t; j0 < p.len; j0 += 4096u) {
            for (var u = 0u; u < 16u; u++) {
                let j = j0 + u * 256u;
                if (j < p.len) {
                    let x = ld_x(base[0] + j * p.xs);
                    if ((pi == NONE || before(pv, pi, x, j)) && before(x, j, bv, bi)) {
                        bv = x;
                        bi = j;
                    }
                }
            }
        }
        tv[t] = bv;
        ti[t] = bi;
        workgroupBarrier();
        for (var s = 128u; s > 0u; s >>= 1u) {
            if (t < s && before(tv[t + s], ti[t + s], tv[t], ti[t])) {
                tv[t] = tv[t + s];
                ti[t] = ti[t + s];
            }
            workgroupBarrier();
        }
        pv = tv[0];
        pi = ti[0];
        workgroupBarrier();
        if (t == 0u) {
            st_values(base[1] + r * p.vs, pv);
            st_indices(base[2] + r * p.is, i64(pi) & 0xffffffffli);
        }
    }
}

//# sort_init
// topk by sorting: each line is copied to `keys`/`idx`, padded with NONE to p.pad (a power of
// two), sorted by a bitonic network (one `sort_step` launch per step: no invocation loops),
// and its first k entries stored.
@compute @workgroup_size(256)
fn sort_init(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x;
    if (g >= p.total) { return; }
    let line = g / p.pad;
    let j = g % p.pad;
    if (j < p.len) {
        keys[g] = ld_x(walk0(line)[0] + j * p.xs);
        idx[g] = j;
    } else {
        keys[g] = $ZERO;
        idx[g] = NONE;
    }
}

//# sort_step
// Element i of each line against i ^ p.j, in runs of p.k ordered first-to-last where
// (i & p.k) == 0 and last-to-first elsewhere.
@compute @workgroup_size(256)
fn sort_step(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x;
    if (g >= p.total) { return; }
    let i = g % p.pad;
    let l = i ^ p.j;
    if (l <= i) { return; }
    let b = g - i + l;
    let ka = keys[g];
    let ia = idx[g];
    let kb = keys[b];
    let ib = idx[b];
    var swap: bool;
    if ((i & p.k) == 0u) { swap = before(kb, ib, ka, ia); } else { swap = before(ka, ia, kb, ib); }
    if (swap) {
        keys[g] = kb;
        idx[g] = ib;
        keys[b] = ka;
        idx[b] = ia;
    }
}

//# sort_out
// Space 0 walks the lines (values, indices).
@compute @workgroup_size(256)
fn sort_out(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x;
    if (g >= p.n) { return; }
    let line = g / p.k;
    let r = g % p.k;
    let base = walk0(line);
    let src = line * p.pad + r;
    st_values(base[0] + r * p.vs, keys[src]);
    st_indices(base[1] + r * p.is, i64(idx[src]) & 0xffffffffli);
}
