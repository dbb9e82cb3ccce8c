//! Kernels, launches and cuBLAS on an NVIDIA GPU: CUDA C and PTX, argument checks, views at
//! offsets, grids, a faulting kernel, events of another device, and matmul through cuBLAS
//! against a host reference. Without a GPU every test says that it skipped, unless
//! `ANYACCEL_REQUIRE` names `cuda`.

use std::process::Command;
use std::sync::Arc;

use anyaccel_cuda::nvrtc;
use anyaccel_cuda::{CudaBackend, CudaDevice, CudaKernel};
use anyaccel_hal::{
    bf16, f16, Backend, DType, Device, Dialect, ErrorCode, Kernel, KernelArg, KernelSource,
    LaunchDims, Queue, Tensor,
};

const SAXPY: &str = include_str!("kernels/saxpy.cu");
const SYNTAX_ERROR: &str = include_str!("kernels/syntax_error.cu");
const FAULT: &str = include_str!("kernels/fault.cu");
const OFFSETS: &str = include_str!("kernels/offsets.cu");

const FAULT_CHILD: &str = "ANYACCEL_CUDA_FAULT_CHILD";

fn cuda() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&CudaBackend)
}

fn own(device: &Arc<dyn Device>) -> &CudaDevice {
    device
        .as_any()
        .downcast_ref::<CudaDevice>()
        .expect("a CUDA device")
}

fn cuda_c(device: &Arc<dyn Device>, source: &str, entry: &str) -> Arc<dyn Kernel> {
    device
        .compile(&KernelSource::Cuda {
            source: source.into(),
            entry: entry.into(),
            options: Vec::new(),
        })
        .unwrap_or_else(|e| panic!("compiling `{entry}`: {e}"))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// saxpy on `n` elements: x = i, y = 2i, a = 3, so y becomes 5i exactly.
fn run_saxpy(device: &Arc<dyn Device>, q: &dyn Queue, kernel: &Arc<dyn Kernel>, n: usize) {
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let y: Vec<f32> = (0..n).map(|i| 2.0 * i as f32).collect();
    let xb = device.alloc(4 * n).unwrap();
    let yb = device.alloc(4 * n).unwrap();
    q.write(&xb.whole(), &f32_bytes(&x)).unwrap();
    q.write(&yb.whole(), &f32_bytes(&y)).unwrap();
    q.launch(
        kernel,
        LaunchDims::linear(n as u64),
        &[
            KernelArg::Buffer(xb.whole()),
            KernelArg::Buffer(yb.whole()),
            KernelArg::scalar(n as u32),
            KernelArg::scalar(3.0f32),
        ],
    )
    .unwrap();
    let mut out = vec![0u8; 4 * n];
    q.read(&yb.whole(), &mut out).unwrap();
    for (i, g) in f32s(&out).iter().enumerate() {
        assert_eq!(*g, 5.0 * i as f32, "saxpy element {i} of {n}");
    }
}

#[test]
fn cuda_c_and_ptx_kernels_run() {
    let Some(device) = cuda() else { return };
    let q = device.create_queue().unwrap();
    let before = device.live_allocations();
    if device.caps().has_dialect(&Dialect::Cuda) {
        let kernel = cuda_c(&device, SAXPY, "saxpy");
        let k = kernel.as_any().downcast_ref::<CudaKernel>().unwrap();
        eprintln!("saxpy built as {}", k.target());
        if let Some(params) = k.param_sizes() {
            assert_eq!(params, [8, 8, 4, 4]);
        }
        for n in [1usize, 255, 256, 257, 100_003] {
            run_saxpy(&device, &*q, &kernel, n);
        }
        // The same kernel as PTX, through the driver's JIT.
        let arch = nvrtc::best_arch_for(own(&device).compute_capability())
            .unwrap()
            .unwrap();
        let ptx = nvrtc::compile(SAXPY, "saxpy", &[], arch, false)
            .unwrap()
            .ptx;
        let kernel = device
            .compile(&KernelSource::Ptx {
                ptx,
                entry: "saxpy".into(),
            })
            .unwrap();
        run_saxpy(&device, &*q, &kernel, 4099);
    } else {
        eprintln!(
            "CUDA C skipped: {}",
            own(&device).nvrtc_status().unwrap_err()
        );
    }
    assert_eq!(device.live_allocations(), before);
}

#[test]
fn views_at_offsets_and_two_dimensional_grids() {
    let Some(device) = cuda() else { return };
    if !device.caps().has_dialect(&Dialect::Cuda) {
        return;
    }
    let q = device.create_queue().unwrap();
    let kernel = cuda_c(&device, OFFSETS, "add_k");
    let n = 1000usize;
    let buf = device.alloc(4 * (2 * n + 8)).unwrap();
    let init: Vec<u8> = (0..(2 * n + 8) as i32)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    q.write(&buf.whole(), &init).unwrap();
    // in = elements 3..3+n, out = elements n+7..2n+7, each a view at an offset.
    let input = buf.view(4 * 3, 4 * n).unwrap();
    let output = buf.view(4 * (n + 7), 4 * n).unwrap();
    // A grid of whole 64-item work-groups covering n items (the kernel checks i < n).
    let dims = LaunchDims {
        global: [n.next_multiple_of(64) as u64, 1, 1],
        local: Some([64, 1, 1]),
    };
    q.launch(
        &kernel,
        dims,
        &[
            KernelArg::Buffer(input),
            KernelArg::Buffer(output.clone()),
            KernelArg::scalar(n as u32),
            KernelArg::scalar(100i32),
        ],
    )
    .unwrap();
    let mut out = vec![0u8; 4 * n];
    q.read(&output, &mut out).unwrap();
    for i in 0..n {
        let v = i32::from_le_bytes(out[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(v, (i + 3) as i32 + 100, "element {i}");
    }
    // A work-group above the device's limit is refused before launching.
    let e = q
        .launch(
            &kernel,
            LaunchDims {
                global: [n as u64, 1, 1],
                local: Some([4096, 1, 1]),
            },
            &[
                KernelArg::Buffer(buf.whole()),
                KernelArg::Buffer(buf.whole()),
                KernelArg::scalar(0u32),
                KernelArg::scalar(0i32),
            ],
        )
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    q.finish().unwrap();
}

#[test]
fn bad_kernels_and_arguments_are_errors() {
    let Some(device) = cuda() else { return };
    if !device.caps().has_dialect(&Dialect::Cuda) {
        return;
    }
    let e = device
        .compile(&KernelSource::Cuda {
            source: SYNTAX_ERROR.into(),
            entry: "broken".into(),
            options: Vec::new(),
        })
        .err()
        .expect("a compile error");
    assert_eq!(e.code(), ErrorCode::CompileFailed, "{e}");
    assert!(e.message().contains("undefined_name"), "{e}");
    let e = device
        .compile(&KernelSource::Cuda {
            source: SAXPY.into(),
            entry: "no_such_kernel".into(),
            options: Vec::new(),
        })
        .err()
        .expect("a missing entry");
    assert_eq!(e.code(), ErrorCode::CompileFailed, "{e}");
    assert!(e.message().contains("no_such_kernel"), "{e}");
    let e = device
        .compile(&KernelSource::Wgsl {
            source: String::new(),
            entry: "main".into(),
        })
        .err()
        .expect("a dialect it does not take");
    assert_eq!(e.code(), ErrorCode::Unsupported, "{e}");

    let kernel = cuda_c(&device, SAXPY, "saxpy");
    let q = device.create_queue().unwrap();
    let b = device.alloc(16).unwrap();
    let has_params = kernel
        .as_any()
        .downcast_ref::<CudaKernel>()
        .unwrap()
        .param_sizes()
        .is_some();
    if has_params {
        let e = q
            .launch(
                &kernel,
                LaunchDims::linear(4),
                &[KernelArg::Buffer(b.whole())],
            )
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
        assert!(e.message().contains("4 parameters"), "{e}");
        let e = q
            .launch(
                &kernel,
                LaunchDims::linear(4),
                &[
                    KernelArg::Buffer(b.whole()),
                    KernelArg::Buffer(b.whole()),
                    KernelArg::scalar(4u64),
                    KernelArg::scalar(1.0f32),
                ],
            )
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    }
    // A kernel of another device's backend is refused.
    let cpu = anyaccel_cpu::CpuBackend.probe().unwrap().remove(0);
    let host = cpu
        .compile(&KernelSource::Host(anyaccel_hal::HostKernel::new(
            "nothing",
            |_| Ok(()),
        )))
        .unwrap();
    let e = q.launch(&host, LaunchDims::linear(1), &[]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    q.finish().unwrap();
}

#[test]
fn a_faulting_kernel_loses_the_device_and_says_so() {
    if std::env::var_os(FAULT_CHILD).is_some() {
        let device = cuda().expect("the parent saw a device");
        let kernel = cuda_c(&device, FAULT, "fault");
        let q = device.create_queue().unwrap();
        let b = device.alloc(4).unwrap();
        // An address far outside any allocation.
        let bad = KernelArg::scalar(0x10u64);
        q.launch(&kernel, LaunchDims::linear(32), &[bad]).unwrap();
        // Commands after the fault are accepted (and skipped); the fault comes back at sync.
        let e = q.finish().unwrap_err();
        println!("FINISH: {:?} {}", e.code(), e.message());
        let mut out = [0u8; 4];
        let again = q.read(&b.whole(), &mut out).unwrap_err();
        println!("AFTER: {:?}", again.code());
        return;
    }
    let Some(device) = cuda() else { return };
    if !device.caps().has_dialect(&Dialect::Cuda) {
        return;
    }
    // The fault ends the CUDA context for the whole process: run it in a child.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_faulting_kernel_loses_the_device_and_says_so",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FAULT_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("FINISH: DeviceLost") && stdout.contains("CUDA_ERROR_ILLEGAL_ADDRESS"),
        "{stdout}"
    );
    assert!(stdout.contains("AFTER: DeviceLost"), "{stdout}");
}

#[test]
fn waits_on_events_of_another_device() {
    let Some(device) = cuda() else { return };
    let cpu = anyaccel_cpu::CpuBackend.probe().unwrap().remove(0);
    let cq = cpu.create_queue().unwrap();
    let q = device.create_queue().unwrap();
    let host_buf = cpu.alloc(8 << 20).unwrap();
    cq.fill(&host_buf.whole(), &[7]).unwrap();
    let event = cq.record_event().unwrap();
    q.wait_event(&event).unwrap();
    let b = device.alloc(4).unwrap();
    q.fill(&b.whole(), &[1, 2, 3, 4]).unwrap();
    let mut out = [0u8; 4];
    q.read(&b.whole(), &mut out).unwrap();
    assert_eq!(out, [1, 2, 3, 4]);
    assert!(event.is_done());
    // And the other way: a CPU queue waits on a CUDA event.
    let e = q.record_event().unwrap();
    cq.wait_event(&e).unwrap();
    cq.finish().unwrap();
    assert!(e.is_done());
}

/// `c = a @ b` in f64 on the host, for `a` [batch, m, k] and `b` [batch, k, n].
fn reference(a: &[f64], b: &[f64], batch: usize, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; batch * m * n];
    for p in 0..batch {
        for i in 0..m {
            for j in 0..n {
                c[p * m * n + i * n + j] = (0..k)
                    .map(|l| a[p * m * k + i * k + l] * b[p * k * n + l * n + j])
                    .sum();
            }
        }
    }
    c
}

fn values(len: usize, seed: u64) -> Vec<f64> {
    (0..len)
        .map(|i| {
            let x = (i as u64)
                .wrapping_mul(6364136223846793005)
                .wrapping_add(seed);
            ((x >> 33) % 2001) as f64 / 1000.0 - 1.0
        })
        .collect()
}

/// Rounds to the dtype, as the device stores it.
fn rounded(v: &[f64], dtype: DType) -> Vec<f64> {
    v.iter()
        .map(|&x| match dtype {
            DType::F16 => f16::from_f64(x).to_f64(),
            DType::BF16 => bf16::from_f64(x).to_f64(),
            _ => x as f32 as f64,
        })
        .collect()
}

fn tensor(q: &dyn Queue, v: &[f64], shape: &[usize], dtype: DType) -> Tensor {
    match dtype {
        DType::F16 => {
            let h: Vec<f16> = v.iter().map(|&x| f16::from_f64(x)).collect();
            Tensor::from_slice(q, &h, shape).unwrap()
        }
        DType::BF16 => {
            let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f64(x)).collect();
            Tensor::from_slice(q, &h, shape).unwrap()
        }
        _ => {
            let h: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Tensor::from_slice(q, &h, shape).unwrap()
        }
    }
}

fn back(q: &dyn Queue, t: &Tensor) -> Vec<f64> {
    match t.dtype() {
        DType::F16 => t
            .to_vec::<f16>(q)
            .unwrap()
            .iter()
            .map(|x| x.to_f64())
            .collect(),
        DType::BF16 => t
            .to_vec::<bf16>(q)
            .unwrap()
            .iter()
            .map(|x| x.to_f64())
            .collect(),
        _ => t
            .to_vec::<f32>(q)
            .unwrap()
            .iter()
            .map(|&x| x as f64)
            .collect(),
    }
}

#[test]
fn matmul_through_cublas_matches_the_reference() {
    let Some(device) = cuda() else { return };
    if !device.caps().native_ops.iter().any(|o| o == "matmul") {
        eprintln!("skipped: no cuBLAS: {}", own(&device).blas_status());
        return;
    }
    let q = device.create_queue().unwrap();
    for (dtype, tol) in [(DType::F32, 1e-4), (DType::F16, 1e-2), (DType::BF16, 3e-2)] {
        for &(batch, m, k, n) in &[
            (1, 1, 1, 1),
            (1, 64, 33, 17),
            (3, 31, 64, 129),
            (2, 128, 256, 64),
        ] {
            let a = rounded(&values(batch * m * k, 1), dtype);
            let b = rounded(&values(batch * k * n, 2), dtype);
            let want = reference(&a, &b, batch, m, k, n);
            let ta = tensor(&*q, &a, &[batch, m, k], dtype);
            let tb = tensor(&*q, &b, &[batch, k, n], dtype);
            let call = anyaccel_hal::OpCall {
                op: "matmul".into(),
                inputs: vec![Some(ta.clone()), Some(tb.clone()), None],
                outputs: vec![Tensor::empty(&*device, dtype, &[batch, m, n]).unwrap()],
                attrs: Vec::new(),
            };
            let native = dtype != DType::BF16 || own(&device).compute_capability().major >= 8;
            assert_eq!(
                device.supports_native_op(&call),
                native,
                "{dtype} {batch}x{m}x{k}x{n}"
            );
            let c = anyaccel_ops::matmul(&*q, &ta, &tb, None).unwrap();
            let got = back(&*q, &c);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tol + tol * w.abs(),
                    "{dtype} {batch}x{m}x{k}x{n} element {i}: got {g}, want {w}"
                );
            }
            // A transposed operand takes cuBLAS's transpose, with the same answer.
            let bt = tensor(&*q, &transpose(&b, batch, k, n), &[batch, n, k], dtype);
            let bt = bt.transpose(1, 2).unwrap();
            let c = anyaccel_ops::matmul(&*q, &ta, &bt, None).unwrap();
            for (i, (g, w)) in back(&*q, &c).iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tol + tol * w.abs(),
                    "{dtype} transposed b, element {i}: got {g}, want {w}"
                );
            }
        }
    }
}

/// [batch, rows, cols] to [batch, cols, rows].
fn transpose(v: &[f64], batch: usize, rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; v.len()];
    for p in 0..batch {
        for i in 0..rows {
            for j in 0..cols {
                t[p * rows * cols + j * rows + i] = v[p * rows * cols + i * cols + j];
            }
        }
    }
    t
}
