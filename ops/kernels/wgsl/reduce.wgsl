// Reductions, cumsum and topk: one work group of 256 invocations per output row.

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
// cumsum, one group per block of a line along the axis (space 0 walks the lines: x, out): group
// g scans block g % p.blocks (p.block elements) of line g / p.blocks. Each invocation owns a
// contiguous chunk of the block: it sums the chunk, the group scans the chunk sums, and each
// invocation rescans its chunk from the sum before it. Lines of more than one block first store
// each block's total (`cumsum_totals`); a block then starts from the sum of the totals before
// it.
var<workgroup> sc: array<$ACC, 256>;

fn group_total(t: u32, v: $ACC) -> $ACC {
    sc[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { sc[t] = sc[t] + sc[t + s]; }
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
        acc = acc + $ACC(ld_x(base[0] + j * p.xs));
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
            pp = pp + totals[line * p.blocks + c];
        }
        before = group_total(t, pp);
    }
    let chunk = (p.block + 255u) / 256u;
    let s = min(b0 + t * chunk, b1);
    let e = min(s + chunk, b1);
    var acc: $ACC = $ZERO;
    for (var j = s; j < e; j++) {
        acc = acc + $ACC(ld_x(base[0] + j * p.xs));
    }
    sc[t] = acc;
    workgroupBarrier();
    for (var off = 1u; off < 256u; off <<= 1u) {
        var add: $ACC = $ZERO;
        if (t >= off) { add = sc[t - off]; }
        workgroupBarrier();
        sc[t] = sc[t] + add;
        workgroupBarrier();
    }
    var run: $ACC = before;
    if (t > 0u) { run = run + sc[t - 1u]; }
    for (var j = s; j < e; j++) {
        run = run + $ACC(ld_x(base[0] + j * p.xs));
        st_out(base[1] + j * p.os, $OUT(run));
    }
}

//# topk
// One group per line (space 0: x, values, indices). Pass r selects the first element, in the
// order of `before`, that comes after the one pass r - 1 selected: k passes, each a reduction.
const NONE: u32 = 0xffffffffu;
var<workgroup> tv: array<$ACC, 256>;
var<workgroup> ti: array<u32, 256>;

fn before(a: $ACC, ia: u32, b: $ACC, ib: u32) -> bool {
    return $FIRST(a, b) || (key_same(a, b) && ia < ib);
}

@compute @workgroup_size(256)
fn topk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let base = walk0(wid.x);
    var pv: $ACC = $ZERO;
    var pi = NONE;
    for (var r = 0u; r < p.k; r++) {
        var bv: $ACC = $ZERO;
        var bi = NONE;
        for (var j = t; j < p.len; j += 256u) {
            let x = ld_x(base[0] + j * p.xs);
            if ((pi == NONE || before(pv, pi, x, j)) && (bi == NONE || before(x, j, bv, bi))) {
                bv = x;
                bi = j;
            }
        }
        tv[t] = bv;
        ti[t] = bi;
        workgroupBarrier();
        for (var s = 128u; s > 0u; s >>= 1u) {
            if (t < s) {
                let ci = ti[t + s];
                if (ci != NONE && (ti[t] == NONE || before(tv[t + s], ci, tv[t], ti[t]))) {
                    tv[t] = tv[t + s];
                    ti[t] = ci;
                }
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
