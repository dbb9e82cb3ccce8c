//! Criterion benches of the CPU backend (see BENCHMARKS.md).
fn main() {}
