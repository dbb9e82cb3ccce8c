//! Criterion benches of the OpenCL and Vulkan devices, each beside its peer in the same run
//! (see BENCHMARKS.md). A device whose runtime is missing is left out with a note.
//!
//! - `launch/{anyaccel,opencl3}/opencl:0` and `launch/{anyaccel,ash}/vulkan:0`: one launch of
//!   a tiny kernel (a one-element add written in the device's dialect, `cli/src/cli/bench/kernels/`)
//!   and the wait for it: through `Device::compile`, `Queue::launch` and `finish`, against the
//!   same kernel through raw opencl3 or ash calls on a context and queue of their own. The
//!   ratio is the layer's own overhead per launch.
//! - `dispatch/anyaccel/<device>`: the same one-element add through the op layer
//!   (`ops::add_into`), whose extra cost over `launch` is the op layer's.
//! - `matmul_f32_1024/{anyaccel,clblast}/opencl:0` and `matmul_f32_1024/anyaccel/vulkan:0`:
//!   throughput in elements, where one element is one floating-point operation (2 n^3), so
//!   criterion's `elem/s` reads as FLOP/s. CLBlast is `CLBlastSgemm` from `libclblast.so.1`
//!   on the device's own buffers.
//!
//! `cargo bench --bench devices` takes a few minutes on two cores.

use std::sync::Arc;
use std::time::Duration;

use anyaccel::hal::{KernelArg, LaunchDims};
use anyaccel::{DType, Device, Queue, Tensor};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};

#[allow(dead_code, unused_imports)]
#[path = "../cli/src/cli/bench/clblast.rs"]
mod clblast;
#[allow(dead_code, unused_imports)]
#[path = "../cli/src/cli/bench/raw.rs"]
mod raw;
#[cfg(feature = "cuda")]
#[allow(dead_code, unused_imports)]
#[path = "../cli/src/cli/bench/raw_cuda.rs"]
mod raw_cuda;
#[allow(dead_code, unused_imports)]
#[path = "../cli/src/cli/bench/raw_opencl.rs"]
mod raw_opencl;
#[allow(dead_code, unused_imports)]
#[path = "../cli/src/cli/bench/raw_vulkan.rs"]
mod raw_vulkan;
#[allow(dead_code, unused_imports)]
#[path = "../cli/src/cli/bench/tiny.rs"]
mod tiny;

const MATMUL_N: usize = 1024;

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0)
        .map(|x| x * 2.0 - 1.0)
        .collect()
}

/// The first device of `backend`, or `None` with a note.
fn device(backend: &str) -> Option<(Arc<dyn Device>, Arc<dyn Queue>)> {
    let rt = anyaccel::Runtime::new();
    let id = format!("{backend}:0");
    match rt
        .device(&id)
        .and_then(|d| Ok((d.clone(), d.create_queue()?)))
    {
        Ok(dq) => Some(dq),
        Err(e) => {
            eprintln!("{id} left out: {e}");
            None
        }
    }
}

fn latency(c: &mut Criterion) {
    for backend in ["opencl", "vulkan"] {
        let Some((device, queue)) = device(backend) else {
            continue;
        };
        let q = &*queue;
        let id = device.info().id.clone();
        let kernel = device
            .compile(&tiny::kernel(backend).expect("a GPU dialect"))
            .expect("the tiny kernel compiles");
        let a = Tensor::from_slice(q, &[tiny::A], &[1]).expect("a");
        let b = Tensor::from_slice(q, &[tiny::B], &[1]).expect("b");
        let out = Tensor::empty(&*device, DType::F32, &[1]).expect("out");
        let args = [
            KernelArg::Buffer(a.view().clone()),
            KernelArg::Buffer(b.view().clone()),
            KernelArg::Buffer(out.view().clone()),
            KernelArg::scalar(1u32),
        ];
        let mut group = c.benchmark_group("launch");
        group.sample_size(50);
        group.measurement_time(Duration::from_secs(3));
        group.bench_with_input(BenchmarkId::new("anyaccel", &id), &id, |bench, _| {
            bench.iter(|| {
                q.launch(&kernel, LaunchDims::linear(1), &args)
                    .expect("launch");
                q.finish().expect("finish");
            })
        });
        assert_eq!(out.to_vec::<f32>(q).expect("read"), [tiny::C]);
        match raw::RawPeer::of(&*device).expect("opencl and vulkan have raw peers") {
            (name, Ok(mut peer)) => {
                group.bench_with_input(BenchmarkId::new(name, &id), &id, |bench, _| {
                    bench.iter(|| peer.dispatch().expect("raw dispatch"))
                });
                assert_eq!(peer.read_c().expect("raw read"), [tiny::C]);
            }
            (name, Err(e)) => eprintln!("raw peer {name} of {id} left out: {e}"),
        }
        group.finish();
        let mut group = c.benchmark_group("dispatch");
        group.sample_size(50);
        group.measurement_time(Duration::from_secs(3));
        group.bench_with_input(BenchmarkId::new("anyaccel", &id), &id, |bench, _| {
            bench.iter(|| {
                anyaccel::ops::add_into(q, &a, &b, &out).expect("add");
                q.finish().expect("finish");
            })
        });
        group.finish();
        assert_eq!(out.to_vec::<f32>(q).expect("read"), [tiny::C]);
    }
}

fn matmul(c: &mut Criterion) {
    let n = MATMUL_N;
    for backend in ["opencl", "vulkan"] {
        let Some((device, queue)) = device(backend) else {
            continue;
        };
        let q = &*queue;
        let id = device.info().id.clone();
        let a = Tensor::from_slice(q, &values(n * n, 1), &[n, n]).expect("a");
        let b = Tensor::from_slice(q, &values(n * n, 2), &[n, n]).expect("b");
        let out = Tensor::empty(&*device, DType::F32, &[n, n]).expect("out");
        let mut group = c.benchmark_group(format!("matmul_f32_{n}"));
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(8));
        group.bench_with_input(BenchmarkId::new("anyaccel", &id), &id, |bench, _| {
            bench.iter(|| {
                anyaccel::ops::matmul_into(q, &a, &b, None, &out).expect("matmul");
                q.finish().expect("finish");
            })
        });
        if backend == "opencl" {
            let mem = |t: &Tensor| {
                t.view()
                    .buffer()
                    .downcast::<anyaccel::opencl::OpenClMemory>()
                    .map(|m| m.raw())
                    .expect("an OpenCL buffer")
            };
            let peer_out = Tensor::empty(&*device, DType::F32, &[n, n]).expect("peer out");
            let (ma, mb, mc) = (mem(&a), mem(&b), mem(&peer_out));
            match clblast::ClBlast::for_buffer(ma) {
                Ok(blas) => {
                    group.bench_with_input(BenchmarkId::new("clblast", &id), &id, |bench, _| {
                        // SAFETY: three live cl_mems of the device's context, n x n f32 each;
                        // the output is a buffer of its own.
                        bench.iter(|| unsafe { blas.sgemm_square(n, ma, mb, mc) }.expect("sgemm"))
                    });
                }
                Err(e) => eprintln!("clblast on {id} left out: {e}"),
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = latency, matmul
}
criterion_main!(benches);
