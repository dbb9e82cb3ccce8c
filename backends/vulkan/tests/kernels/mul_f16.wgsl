// out = a * b in f16 storage and f16 arithmetic.
enable f16;

struct Params {
    n: u32,
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> out: array<f16>;

@compute @workgroup_size(32)
fn mul_f16(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i < p.n {
        out[i] = a[i] * b[i];
    }
}
