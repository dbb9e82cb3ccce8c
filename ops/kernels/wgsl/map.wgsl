// The elementwise kernel: one invocation per output element; space 0 walks the output's
// shape with every input broadcast to it and the output last. $LOADS reads the inputs into
// a0, a1, ...; $EXPR is the value stored.

//# map
@compute @workgroup_size(256)
fn map(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lin = gid.x;
    if (lin >= p.n) { return; }
    let o = walk0(lin);
$LOADS
    st_out(o[$OUT], $EXPR);
}
