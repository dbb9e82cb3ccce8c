// y = a * x + y over the first n elements.
struct Params {
    n: u32,
    a: f32,
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn saxpy(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i < p.n {
        y[i] = p.a * x[i] + y[i];
    }
}
