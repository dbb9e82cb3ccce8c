// The tiny kernel of the launch-overhead benchmark: c = a + b over n f32 elements. anyaccel's
// Vulkan device and the raw ash peer run this same module (SPIR-V from naga) the same way.
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

struct Params {
    n: u32,
}
var<immediate> p: Params;

@compute @workgroup_size(64)
fn tiny_add(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.n) {
        c[gid.x] = a[gid.x] + b[gid.x];
    }
}
