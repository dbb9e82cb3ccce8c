// index_select, embedding and gather: one invocation per output element. Space 0 walks the
// output's shape with the source (indexed dimension at stride 0), the indices and the output.
// An index outside 0..p.limit is never read through: the invocation sets `flag` (every such
// invocation stores the same value), and the op layer reads the flag back after the launch.

//# index
@compute @workgroup_size(256)
fn index(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lin = gid.x;
    if (lin >= p.n) { return; }
    let o = walk0(lin);
    let k = ld_idx(o[1]);
    if ($BAD) {
        flag[0] = 1u;
        return;
    }
    st_out(o[2], ld_x(o[0] + u32(k) * p.step));
}

// Remaps (pad, flip, roll, repeat_interleave, tril, triu; ops/src/movement.rs): one invocation
// per output element. `P` holds per axis `out, n, before, mode, div or table start, x stride,
// out stride`, then the tables; `$AXES` has one `remap_step` per axis, last axis first.

//# remap_axis
// The input coordinate of output coordinate `o` along the axis whose words start at `a`, or -1.
fn remap_axis(o: i32, a: u32) -> i32 {
    let n = P[a + 1u];
    let t = o - P[a + 2u];
    let mode = P[a + 3u];
    var s = t;
    if (mode == 1) {
        if (n == 1) {
            s = 0;
        } else {
            let period = 2 * (n - 1);
            var m = t % period;
            if (m < 0) { m = m + period; }
            s = select(period - m, m, m < n);
        }
    } else if (mode == 2) {
        s = clamp(t, 0, n - 1);
    } else if (mode == 3) {
        s = t % n;
        if (s < 0) { s = s + n; }
    } else if (mode == 4) {
        s = n - 1 - t;
    } else if (mode == 5) {
        s = t / P[a + 4u];
    } else if (mode == 6) {
        s = P[u32(P[a + 4u] + o)];
    }
    if (s < 0 || s >= n) { return -1; }
    return s;
}

//# remap_step
    {
        let a = $Du * 7u;
        let size = u32(P[a]);
        let o = rem % size;
        rem = rem / size;
        dst = dst + o * u32(P[a + 6u]);
        let s = remap_axis(i32(o), a);
        if (s < 0) { inside = false; } else { src = src + u32(s) * u32(P[a + 5u]); }
        $COORD
    }

//# remap
@compute @workgroup_size(256)
fn remap(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lin = gid.x;
    if (lin >= p.n) { return; }
    var rem = lin;
    var src = p.xo;
    var dst = p.oo;
    var inside = true;
    var row = 0;
    var col = 0;
$AXES
    if (col - row < p.lo || col - row > p.hi) { inside = false; }
    if (inside) { st_out(dst, ld_x(src)); } else { st_out(dst, $FILL); }
}

// Line scatters (scatter, scatter_add, index_add, one_hot; ops/src/movement.rs): one invocation
// per output element of the lines. Space 0 walks the lines with x, the index, the source and the
// output; along the axis their strides are p.sx, p.si, p.ss, p.so. Invocation (line, j) starts
// from x's element j and takes, in increasing k, the source element k whose index is j: the last
// one, or the sum of alpha times each. Invocations with j = 0 check their line's indices and set
// `flag` for one outside 0..p.n.

//# scatter
@compute @workgroup_size(256)
fn scatter(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.total) { return; }
    let line = i / p.n;
    let j = i - line * p.n;
    let o = walk0(line);
    var acc = ld_x(o[0] + j * p.sx);
    for (var q = 0u; q < p.k; q++) {
        let t = ld_idx(o[1] + q * p.si);
        if ($BAD) {
            if (j == 0u) { flag[0] = 1u; }
            continue;
        }
        if ($EQ) { acc = $COMBINE; }
    }
    st_out(o[3] + j * p.so, acc);
}
