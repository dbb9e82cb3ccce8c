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
