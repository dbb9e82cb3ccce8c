//! The cost of an op call against a plain kernel launch on one device.
//!
//! ```sh
//! cargo run --release --example op_call -- opencl:0 20000 100
//! ```
//!
//! Runs `calls` one-element adds through the op layer (`ops::add_into`) and as many launches of
//! a one-element add kernel through `Queue::launch`, with `finish` every `every` calls, in
//! alternating rounds, and prints the wall time a call of each. With `every` large, the host's
//! work to queue a call dominates (run it under `perf record -g` to see where it goes); with
//! `every` 1, a call's latency to completion. The kernel exists for OpenCL and Vulkan devices.

use anyaccel::hal::{KernelArg, KernelSource, LaunchDims};
use anyaccel::{DType, Runtime, Tensor};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let id = args.next().unwrap_or_else(|| "opencl:0".to_string());
    let calls: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let every: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100);
    let every = every.max(1);
    let rt = Runtime::new();
    let device = rt.device(&id)?;
    let queue = device.create_queue()?;
    let a = Tensor::from_slice(&*queue, &[1.5f32], &[1])?;
    let b = Tensor::from_slice(&*queue, &[2.25f32], &[1])?;
    let c = Tensor::empty(&*device, DType::F32, &[1])?;
    let (source, dims) = match device.info().backend.as_str() {
        "opencl" => (
            KernelSource::OpenClC {
                source: include_str!("../cli/src/cli/bench/kernels/tiny_add.cl").into(),
                entry: "tiny_add".into(),
                options: String::new(),
            },
            LaunchDims {
                global: [1, 1, 1],
                local: Some([1, 1, 1]),
            },
        ),
        "vulkan" => (
            KernelSource::Wgsl {
                source: include_str!("../cli/src/cli/bench/kernels/tiny_add.wgsl").into(),
                entry: "tiny_add".into(),
            },
            LaunchDims {
                global: [1, 1, 1],
                local: None,
            },
        ),
        other => return Err(format!("{id}: no plain kernel for the {other} backend here").into()),
    };
    let kernel = device.compile(&source)?;
    let kernel_args = [
        KernelArg::Buffer(a.view().clone()),
        KernelArg::Buffer(b.view().clone()),
        KernelArg::Buffer(c.view().clone()),
        KernelArg::scalar(1u32),
    ];
    let op = || anyaccel::ops::add_into(&*queue, &a, &b, &c);
    let launch = || queue.launch(&kernel, dims, &kernel_args);
    let time = |f: &dyn Fn() -> anyaccel::Result<()>| -> anyaccel::Result<f64> {
        let start = Instant::now();
        for i in 0..calls {
            f()?;
            if i % every == every - 1 {
                queue.finish()?;
            }
        }
        queue.finish()?;
        Ok(start.elapsed().as_secs_f64() * 1e6 / calls as f64)
    };
    // Compile and warm both paths first.
    time(&op)?;
    time(&launch)?;
    for round in 0..3 {
        let (o, l) = (time(&op)?, time(&launch)?);
        println!(
            "{id} round {round}: op call {o:.2} us, kernel launch {l:.2} us, ratio {:.2}",
            o / l
        );
    }
    let sum = c.to_vec::<f32>(&*queue)?;
    if sum != [3.75] {
        return Err(format!("computed {sum:?}, expected [3.75]").into());
    }
    Ok(())
}
