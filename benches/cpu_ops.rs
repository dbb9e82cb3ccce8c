//! Criterion benches of the CPU backend, each beside its peer in the same run (see
//! BENCHMARKS.md):
//!
//! - `matmul_f32/{anyaccel,openblas}/N` for N = 256, 1024, 2048: throughput in elements, where
//!   one element is one floating-point operation (2 N^3 per product), so criterion's `elem/s`
//!   reads as FLOP/s. OpenBLAS is `cblas_sgemm` from `libopenblas.so.0`, opened at run time;
//!   without it the OpenBLAS entries are left out with a note.
//! - `add_f32/{anyaccel,memcpy}/16777216`: throughput in bytes, 3 x 4 x N for add (two reads
//!   and a write); the peer is a memcpy of 6 x N bytes (as many bytes read plus written), split
//!   over every core as add is.
//!
//! `cargo bench --bench cpu_ops` takes a few minutes on two cores.

use std::sync::Arc;
use std::time::Duration;

use anyaccel::{Device, Queue, Tensor};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};

#[path = "../cli/src/cli/bench/peers.rs"]
mod peers;

const ADD_ELEMENTS: usize = 16 << 20;

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0)
        .map(|x| x * 2.0 - 1.0)
        .collect()
}

fn cpu() -> (Arc<dyn Device>, Arc<dyn Queue>) {
    let rt = anyaccel::Runtime::new();
    let device = rt.device("cpu:0").expect("the cpu backend is compiled in");
    let queue = device.create_queue().expect("a cpu queue");
    (device, queue)
}

fn matmul(c: &mut Criterion) {
    let (device, queue) = cpu();
    let q = &*queue;
    let blas = peers::OpenBlas::load();
    match &blas {
        Ok(b) => eprintln!("peer: {}", b.description),
        Err(e) => eprintln!("peer openblas left out: {e}"),
    }
    let mut group = c.benchmark_group("matmul_f32");
    for n in [256usize, 1024, 2048] {
        let (ha, hb) = (values(n * n, 1), values(n * n, 2));
        let a = Tensor::from_slice(q, &ha, &[n, n]).expect("a");
        let b = Tensor::from_slice(q, &hb, &[n, n]).expect("b");
        let out = Tensor::empty(&*device, anyaccel::DType::F32, &[n, n]).expect("out");
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        if n >= 1024 {
            // Long iterations: every sample runs the same count, so ten take a few seconds.
            group.sampling_mode(SamplingMode::Flat);
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(if n >= 2048 { 8 } else { 4 }));
        } else {
            group.sampling_mode(SamplingMode::Auto);
            group.sample_size(30);
            group.measurement_time(Duration::from_secs(2));
        }
        group.bench_with_input(BenchmarkId::new("anyaccel", n), &n, |bench, _| {
            bench.iter(|| {
                anyaccel::ops::matmul_into(q, &a, &b, None, &out).expect("matmul");
                q.finish().expect("finish");
            })
        });
        if let Ok(blas) = &blas {
            let mut hc = vec![0.0f32; n * n];
            group.bench_with_input(BenchmarkId::new("openblas", n), &n, |bench, _| {
                bench.iter(|| blas.sgemm(n, n, n, &ha, &hb, &mut hc).expect("sgemm"))
            });
        }
    }
    group.finish();
}

fn add(c: &mut Criterion) {
    let (device, queue) = cpu();
    let q = &*queue;
    let n = ADD_ELEMENTS;
    let a = Tensor::from_slice(q, &values(n, 3), &[n]).expect("a");
    let b = Tensor::from_slice(q, &values(n, 4), &[n]).expect("b");
    let out = Tensor::empty(&*device, anyaccel::DType::F32, &[n]).expect("out");
    let src = vec![1u8; 6 * n];
    let mut dst = vec![0u8; 6 * n];
    let threads = peers::host_threads();
    let mut group = c.benchmark_group("add_f32");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(3 * 4 * n as u64));
    group.bench_with_input(BenchmarkId::new("anyaccel", n), &n, |bench, _| {
        bench.iter(|| {
            anyaccel::ops::add_into(q, &a, &b, &out).expect("add");
            q.finish().expect("finish");
        })
    });
    group.bench_with_input(BenchmarkId::new("memcpy", n), &n, |bench, _| {
        bench.iter(|| peers::memcpy_parallel(&src, &mut dst, threads))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = matmul, add
}
criterion_main!(benches);
