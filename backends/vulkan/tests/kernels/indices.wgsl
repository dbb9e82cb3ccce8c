// Writes each work item's coordinates, to check how grids map onto dispatches.
struct Params {
    width: u32,
    height: u32,
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(1)
fn linear(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < p.width {
        out[id.x] = id.x + 1u;
    }
}

@compute @workgroup_size(2, 2, 1)
fn grid(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < p.width && id.y < p.height {
        out[id.y * p.width + id.x] = id.x * 1000u + id.y;
    }
}
