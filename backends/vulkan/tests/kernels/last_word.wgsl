// Writes 7 into the last word of the bound range: checks the range the binding covers.
@group(0) @binding(0) var<storage, read_write> x: array<u32>;

@compute @workgroup_size(1)
fn last_word() {
    x[arrayLength(&x) - 1u] = 7u;
}
