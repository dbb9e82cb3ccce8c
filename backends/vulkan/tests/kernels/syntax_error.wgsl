@group(0) @binding(0) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn broken(@builtin(global_invocation_id) id: vec3<u32>) {
    let v = ;
    x[id.x] = v;
}
