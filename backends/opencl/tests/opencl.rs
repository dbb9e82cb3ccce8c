//! OpenCL-specific behaviour: real kernels, compile errors with the build log, argument checks,
//! sub-buffer alignment, events of other devices, and the sticky-error rule.
//!
//! Skips (saying so) when OpenCL is unavailable, unless `ANYACCEL_REQUIRE` names `opencl`.

use std::any::Any;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyaccel_hal::{
    f16, Backend, Device, Dialect, Error, ErrorCode, Event, KernelArg, KernelSource, LaunchDims,
    Queue,
};
use anyaccel_opencl::{OpenClBackend, OpenClDevice};

const KERNELS: &str = include_str!("kernels/saxpy.cl");
const BROKEN: &str = include_str!("kernels/broken.cl");
const HALF_IO: &str = include_str!("kernels/half_io.cl");

fn opencl() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&OpenClBackend)
}

fn source(source: &str, entry: &str, options: &str) -> KernelSource {
    KernelSource::OpenClC {
        source: source.into(),
        entry: entry.into(),
        options: options.into(),
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i32s(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read(q: &dyn Queue, b: &anyaccel_hal::Buffer) -> Vec<u8> {
    let mut out = vec![0u8; b.size()];
    q.read(&b.whole(), &mut out).unwrap();
    out
}

fn opencl_device(device: &Arc<dyn Device>) -> &OpenClDevice {
    device.as_any().downcast_ref::<OpenClDevice>().unwrap()
}

#[test]
fn info_and_caps_come_from_the_driver() {
    let Some(device) = opencl() else { return };
    let info = device.info();
    eprintln!("{info:?}");
    let cl = opencl_device(&device);
    eprintln!(
        "platform {:?}, version {:?}, {:?}, base address alignment {} bytes, extensions: {}",
        cl.platform_name(),
        cl.device_version(),
        cl.opencl_c_version(),
        cl.base_address_alignment(),
        cl.extensions()
    );
    assert_eq!(info.id, "opencl:0");
    assert_eq!(info.backend, "opencl");
    assert!(info.max_buffer_bytes <= info.memory_bytes.max(info.max_buffer_bytes));
    assert!(info.max_work_group_size >= 1 && info.compute_units >= 1);
    assert!(!info.driver_version.is_empty());
    let caps = device.caps();
    assert_eq!(caps.dialects, vec![Dialect::OpenClC]);
    assert!(caps.timestamps);
    for dtype in [
        anyaccel_hal::DType::F32,
        anyaccel_hal::DType::F16,
        anyaccel_hal::DType::BF16,
        anyaccel_hal::DType::I32,
        anyaccel_hal::DType::I64,
        anyaccel_hal::DType::U8,
        anyaccel_hal::DType::Bool,
    ] {
        assert!(caps.has_dtype(dtype), "{dtype:?} missing");
    }
    assert_eq!(
        caps.has_dtype(anyaccel_hal::DType::F64),
        cl.has_extension("cl_khr_fp64")
    );
    assert!(cl.base_address_alignment().is_power_of_two());
}

#[test]
fn concurrent_probes_agree() {
    let Some(_) = opencl() else { return };
    let counts: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| OpenClBackend.probe().map(|d| d.len()).unwrap_or(0)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        counts.iter().all(|&c| c == counts[0] && c > 0),
        "{counts:?}"
    );
}

#[test]
fn saxpy_computes_with_and_without_a_local_size() {
    let Some(device) = opencl() else { return };
    let q = device.create_queue().unwrap();
    let k = device
        .kernel_cache()
        .get_or_compile("saxpy", || device.compile(&source(KERNELS, "saxpy", "")))
        .unwrap();
    assert_eq!(k.name(), "saxpy");
    assert_eq!(k.dialect(), Dialect::OpenClC);
    // The cache returns the same kernel.
    let again = device
        .kernel_cache()
        .get_or_compile("saxpy", || panic!("compiled twice"))
        .unwrap();
    assert!(Arc::ptr_eq(&k, &again));

    for (n, local) in [
        (1000u32, None),
        (1000, Some(64u32)),
        (1, None),
        (4099, Some(128)),
    ] {
        let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let y: Vec<f32> = (0..n).map(|i| 2.0 * i as f32).collect();
        let bx = device.alloc(4 * n as usize).unwrap();
        let by = device.alloc(4 * n as usize).unwrap();
        q.write(&bx.whole(), &f32_bytes(&x)).unwrap();
        q.write(&by.whole(), &f32_bytes(&y)).unwrap();
        let dims = match local {
            None => LaunchDims::linear(n as u64),
            Some(l) => LaunchDims {
                global: [(n as u64).div_ceil(l as u64) * l as u64, 1, 1],
                local: Some([l, 1, 1]),
            },
        };
        q.launch(
            &k,
            dims,
            &[
                KernelArg::Buffer(by.whole()),
                KernelArg::Buffer(bx.whole()),
                KernelArg::scalar(3.0f32),
                KernelArg::scalar(n),
            ],
        )
        .unwrap();
        let got = f32s(&read(&*q, &by));
        for (i, v) in got.iter().enumerate() {
            assert_eq!(*v, 5.0 * i as f32, "n {n} local {local:?}: y[{i}]");
        }
    }
}

#[test]
fn two_dimensional_grids_and_local_size_checks() {
    let Some(device) = opencl() else { return };
    let q = device.create_queue().unwrap();
    let k = device.compile(&source(KERNELS, "grid_index", "")).unwrap();
    let out = device.alloc(4 * 24 * 5).unwrap();
    q.launch(
        &k,
        LaunchDims {
            global: [24, 5, 1],
            local: Some([8, 1, 1]),
        },
        &[KernelArg::Buffer(out.whole())],
    )
    .unwrap();
    let got = i32s(&read(&*q, &out));
    assert_eq!(got, (0..120).collect::<Vec<i32>>());

    let bad = q
        .launch(
            &k,
            LaunchDims {
                global: [24, 5, 1],
                local: Some([7, 1, 1]),
            },
            &[KernelArg::Buffer(out.whole())],
        )
        .unwrap_err();
    assert_eq!(bad.code(), ErrorCode::InvalidArgument);
    assert!(
        bad.message().contains("not a multiple of local size 7x1x1"),
        "{bad}"
    );
    let max = device.info().max_work_group_size;
    let too_big = (max + 1).next_power_of_two() as u32;
    let bad = q
        .launch(
            &k,
            LaunchDims {
                global: [too_big as u64, 1, 1],
                local: Some([too_big, 1, 1]),
            },
            &[KernelArg::Buffer(out.whole())],
        )
        .unwrap_err();
    assert_eq!(bad.code(), ErrorCode::InvalidArgument);
    assert!(bad.message().contains(&max.to_string()), "{bad}");
    // An empty grid launches nothing.
    q.launch(&k, LaunchDims::linear(0), &[KernelArg::Buffer(out.whole())])
        .unwrap();
    q.finish().unwrap();
}

#[test]
fn compile_errors_carry_the_build_log() {
    let Some(device) = opencl() else { return };
    let e = device.compile(&source(BROKEN, "broken", "")).err().unwrap();
    assert_eq!(e.code(), ErrorCode::CompileFailed);
    assert!(e.message().contains("undeclared_scale"), "{e}");
    assert!(e.message().contains("`broken`"), "{e}");

    let e = device
        .compile(&source(KERNELS, "no_such_kernel", ""))
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(
        e.message().contains("no_such_kernel") && e.message().contains("saxpy"),
        "{e}"
    );

    let e = device
        .compile(&source(KERNELS, "saxpy", "-DX=1 -cl-no-such-option"))
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::CompileFailed, "{e}");

    let e = device
        .compile(&KernelSource::Wgsl {
            source: "@compute @workgroup_size(1) fn main() {}".into(),
            entry: "main".into(),
        })
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::Unsupported);
    assert!(e.message().contains("wgsl"), "{e}");
}

#[test]
fn specialisation_options_reach_the_compiler() {
    let Some(device) = opencl() else { return };
    let src = "__kernel void put(__global int* out) { out[0] = VALUE; }";
    let q = device.create_queue().unwrap();
    let out = device.alloc(4).unwrap();
    for v in [7, -3] {
        let k = device
            .compile(&source(src, "put", &format!("-DVALUE={v}")))
            .unwrap();
        q.launch(&k, LaunchDims::linear(1), &[KernelArg::Buffer(out.whole())])
            .unwrap();
        assert_eq!(i32s(&read(&*q, &out)), vec![v]);
    }
}

#[test]
fn bad_kernel_arguments_are_clear_errors() {
    let Some(device) = opencl() else { return };
    let q = device.create_queue().unwrap();
    let k = device.compile(&source(KERNELS, "saxpy", "")).unwrap();
    let b = device.alloc(64).unwrap();
    let good = || {
        vec![
            KernelArg::Buffer(b.whole()),
            KernelArg::Buffer(b.whole()),
            KernelArg::scalar(1.0f32),
            KernelArg::scalar(16u32),
        ]
    };
    let cases: Vec<(Vec<KernelArg>, &str)> = vec![
        (
            good()[..3].to_vec(),
            "3 arguments given, but the kernel takes 4",
        ),
        (
            {
                let mut a = good();
                a[2] = KernelArg::Buffer(b.whole());
                a
            },
            "argument 2 (`float a`): a buffer was given",
        ),
        (
            {
                let mut a = good();
                a[0] = KernelArg::scalar(0u64);
                a
            },
            "argument 0 (`float* y`): bytes were given",
        ),
        (
            {
                let mut a = good();
                a[3] = KernelArg::scalar(16u64);
                a
            },
            "argument 3 (`uint n`): 8 bytes were given",
        ),
    ];
    for (args, expect) in cases {
        let e = q.launch(&k, LaunchDims::linear(16), &args).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
        assert!(e.message().contains(expect), "`{e}` lacks `{expect}`");
    }
    // The queue is unaffected.
    q.launch(&k, LaunchDims::linear(16), &good()).unwrap();
    q.finish().unwrap();

    // A kernel and a buffer of another device object with the same id (a second probe).
    let other = OpenClBackend.probe().unwrap()[0].clone();
    let other_q = other.create_queue().unwrap();
    let e = other_q
        .launch(&k, LaunchDims::linear(16), &good())
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(e.message().contains("another OpenCL context"), "{e}");
    let e = other_q.fill(&b.whole(), &[1]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(e.message().contains("another OpenCL context"), "{e}");
}

#[test]
fn views_as_kernel_arguments_follow_the_alignment() {
    let Some(device) = opencl() else { return };
    let align = opencl_device(&device).base_address_alignment();
    let q = device.create_queue().unwrap();
    let k = device.compile(&source(KERNELS, "double_at", "")).unwrap();
    let n = 16usize;
    let total = align / 4 + n + 8;
    let input: Vec<i32> = (0..total as i32).collect();
    let src = device.alloc(4 * total).unwrap();
    let out = device.alloc(4 * n).unwrap();
    q.write(&src.whole(), &i32_bytes(&input)).unwrap();

    // The main road: the whole buffer and an element offset.
    q.launch(
        &k,
        LaunchDims::linear(n as u64),
        &[
            KernelArg::Buffer(out.whole()),
            KernelArg::Buffer(src.whole()),
            KernelArg::scalar(5u64),
            KernelArg::scalar(n as u32),
        ],
    )
    .unwrap();
    let want: Vec<i32> = (5..5 + n as i32).map(|v| v * 2).collect();
    assert_eq!(i32s(&read(&*q, &out)), want);

    // A view at the device's alignment becomes a sub-buffer.
    let view = src.view(align, 4 * n).unwrap();
    q.launch(
        &k,
        LaunchDims::linear(n as u64),
        &[
            KernelArg::Buffer(out.whole()),
            KernelArg::Buffer(view),
            KernelArg::scalar(0u64),
            KernelArg::scalar(n as u32),
        ],
    )
    .unwrap();
    let first = (align / 4) as i32;
    let want: Vec<i32> = (first..first + n as i32).map(|v| v * 2).collect();
    assert_eq!(i32s(&read(&*q, &out)), want);

    // An unaligned view is a clear error naming the alignment.
    let e = q
        .launch(
            &k,
            LaunchDims::linear(n as u64),
            &[
                KernelArg::Buffer(out.whole()),
                KernelArg::Buffer(src.view(4, 4 * n).unwrap()),
                KernelArg::scalar(0u64),
                KernelArg::scalar(n as u32),
            ],
        )
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unsupported);
    assert!(
        e.message().contains("byte offset 4")
            && e.message().contains(&format!("{align} bytes"))
            && e.message().contains("argument 1"),
        "{e}"
    );
    q.finish().unwrap();
    assert_eq!(device.live_allocations(), 2);
}

#[test]
fn one_kernel_launched_from_many_threads() {
    let Some(device) = opencl() else { return };
    let k = device.compile(&source(KERNELS, "saxpy", "")).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u32 {
            let (device, k) = (device.clone(), k.clone());
            s.spawn(move || {
                let q = device.create_queue().unwrap();
                let n = 257u32;
                let x = device.alloc(4 * n as usize).unwrap();
                let y = device.alloc(4 * n as usize).unwrap();
                q.write(&x.whole(), &f32_bytes(&vec![1.0; n as usize]))
                    .unwrap();
                q.fill(&y.whole(), &0f32.to_le_bytes()).unwrap();
                for _ in 0..25 {
                    q.launch(
                        &k,
                        LaunchDims::linear(n as u64),
                        &[
                            KernelArg::Buffer(y.whole()),
                            KernelArg::Buffer(x.whole()),
                            KernelArg::scalar(t as f32),
                            KernelArg::scalar(n),
                        ],
                    )
                    .unwrap();
                }
                let got = f32s(&read(&*q, &y));
                assert!(
                    got.iter().all(|&v| v == 25.0 * t as f32),
                    "thread {t}: {got:?}"
                );
            });
        }
    });
}

#[test]
fn f16_storage_through_vload_half() {
    let Some(device) = opencl() else { return };
    let q = device.create_queue().unwrap();
    let k = device
        .compile(&source(HALF_IO, "half_plus_one", ""))
        .unwrap();
    let values = [0.5f32, -2.0, 1024.0, 65504.0 - 32.0, 0.0];
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect();
    let b = device.alloc(bytes.len()).unwrap();
    q.write(&b.whole(), &bytes).unwrap();
    q.launch(
        &k,
        LaunchDims::linear(values.len() as u64),
        &[
            KernelArg::Buffer(b.whole()),
            KernelArg::scalar(values.len() as u32),
        ],
    )
    .unwrap();
    let got: Vec<f32> = read(&*q, &b)
        .chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    let want: Vec<f32> = values
        .iter()
        .map(|&v| f16::from_f32(v + 1.0).to_f32())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn kernel_events_measure_time() {
    let Some(device) = opencl() else { return };
    let q = device.create_queue().unwrap();
    let k = device.compile(&source(KERNELS, "saxpy", "")).unwrap();
    let n = 1 << 20;
    let x = device.alloc(4 * n).unwrap();
    let y = device.alloc(4 * n).unwrap();
    q.fill(&x.whole(), &1f32.to_le_bytes()).unwrap();
    q.fill(&y.whole(), &0f32.to_le_bytes()).unwrap();
    let start = q.record_event().unwrap();
    for _ in 0..10 {
        q.launch(
            &k,
            LaunchDims::linear(n as u64),
            &[
                KernelArg::Buffer(y.whole()),
                KernelArg::Buffer(x.whole()),
                KernelArg::scalar(1.0f32),
                KernelArg::scalar(n as u32),
            ],
        )
        .unwrap();
    }
    let end = q.record_event().unwrap();
    end.wait().unwrap();
    let dt = end.elapsed_since(&*start).unwrap();
    eprintln!("10 saxpy launches over 2^20 floats: {dt:?}");
    assert!(
        dt > Duration::ZERO && dt < Duration::from_secs(60),
        "{dt:?}"
    );
    assert_eq!(start.elapsed_since(&*end).unwrap(), Duration::ZERO);
    assert_eq!(f32s(&read(&*q, &y))[n - 1], 10.0);
}

/// An event of another "device", completed by the test when it chooses.
struct Gate {
    state: Mutex<Option<anyaccel_hal::Result<()>>>,
    done: Condvar,
}

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(None),
            done: Condvar::new(),
        })
    }

    fn open(&self, result: anyaccel_hal::Result<()>) {
        *self.state.lock().unwrap() = Some(result);
        self.done.notify_all();
    }
}

impl Event for Gate {
    fn wait(&self) -> anyaccel_hal::Result<()> {
        let mut s = self.state.lock().unwrap();
        while s.is_none() {
            s = self.done.wait(s).unwrap();
        }
        s.clone().unwrap()
    }
    fn is_done(&self) -> bool {
        self.state.lock().unwrap().is_some()
    }
    fn elapsed_since(&self, _: &dyn Event) -> anyaccel_hal::Result<Duration> {
        Err(Error::unsupported("gate has no clock"))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[test]
fn waits_on_events_of_other_devices() {
    let Some(device) = opencl() else { return };
    let q = device.create_queue().unwrap();
    let b = device.alloc(4).unwrap();
    q.fill(&b.whole(), &[1]).unwrap();
    q.finish().unwrap();
    let gate = Gate::new();
    let as_event: Arc<dyn Event> = gate.clone();
    q.wait_event(&as_event).unwrap();
    q.fill(&b.whole(), &[2]).unwrap();
    let after = q.record_event().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!after.is_done(), "the queue ran past an unsignalled event");
    gate.open(Ok(()));
    after.wait().unwrap();
    assert_eq!(read(&*q, &b), vec![2; 4]);

    // An event that has already completed is no obstacle.
    q.wait_event(&as_event).unwrap();
    q.finish().unwrap();

    // Dropping a queue whose work waits on an unsignalled event does not block; the work
    // (and the data it writes) still completes once the event does.
    let late = Gate::new();
    let late_event: Arc<dyn Event> = late.clone();
    let q2 = device.create_queue().unwrap();
    q2.wait_event(&late_event).unwrap();
    q2.write(&b.whole(), &[5; 4]).unwrap();
    let written = q2.record_event().unwrap();
    drop(q2);
    late.open(Ok(()));
    written.wait().unwrap();
    assert_eq!(read(&*q, &b), vec![5; 4]);
}

#[test]
fn a_failed_foreign_event_sticks_until_reported() {
    let Some(device) = opencl() else { return };
    let q = device.create_queue().unwrap();
    let b = device.alloc(4).unwrap();
    q.fill(&b.whole(), &[1]).unwrap();
    q.finish().unwrap();

    let gate = Gate::new();
    let as_event: Arc<dyn Event> = gate.clone();
    q.wait_event(&as_event).unwrap();
    // Enqueued before the failure: it runs (OpenCL cannot withdraw it).
    q.fill(&b.whole(), &[2]).unwrap();
    let before = q.record_event().unwrap();
    // A queue of the same device that waits on the event before it fails.
    let early = device.create_queue().unwrap();
    early.wait_event(&before).unwrap();
    gate.open(Err(Error::launch_failed("index 9 out of range 0..4")));
    let e = before.wait().unwrap_err();
    assert_eq!(e.code(), ErrorCode::LaunchFailed, "{e}");
    // Submitted after the failure is known: skipped by the queue.
    q.fill(&b.whole(), &[3]).unwrap();
    let recorded_after = q.record_event().unwrap();
    assert!(recorded_after.wait().is_err());

    // Queues of the device that wait on the failed event fail the same way, whether they
    // started waiting before it failed or after.
    let e = early.finish().unwrap_err();
    assert!(e.message().contains("index 9 out of range"), "{e}");
    early.finish().unwrap();
    let other = device.create_queue().unwrap();
    other.wait_event(&before).unwrap();
    let e = other.finish().unwrap_err();
    assert!(e.message().contains("index 9 out of range"), "{e}");
    other.finish().unwrap();

    let e = q.finish().unwrap_err();
    assert_eq!(e.code(), ErrorCode::LaunchFailed);
    assert!(e.message().contains("index 9 out of range 0..4"), "{e}");
    // Reported once; then the queue runs again. The fill submitted after the failure was
    // known was skipped.
    assert_eq!(read(&*q, &b), vec![2; 4]);
    // Events recorded before the report still carry the error; new ones do not.
    assert!(recorded_after.wait().is_err());
    q.record_event().unwrap().wait().unwrap();
    q.fill(&b.whole(), &[4]).unwrap();
    assert_eq!(read(&*q, &b), vec![4; 4]);

    // The error also comes back from a read.
    let gate = Gate::new();
    let as_event: Arc<dyn Event> = gate.clone();
    gate.open(Err(Error::device_lost("the other device fell off the bus")));
    q.wait_event(&as_event).unwrap();
    let mut out = [0u8; 4];
    let e = q.read(&b.whole(), &mut out).unwrap_err();
    assert_eq!(e.code(), ErrorCode::DeviceLost);
    assert!(e.message().contains("fell off the bus"), "{e}");
    q.read(&b.whole(), &mut out).unwrap();
    assert_eq!(out, [4; 4]);
}

#[test]
fn events_of_another_opencl_device_object() {
    // A second probe makes a second device object (and context) for the same hardware: its
    // events are foreign to the first, and waits on them go through a helper thread.
    let Some(device) = opencl() else { return };
    let other = OpenClBackend.probe().unwrap()[0].clone();
    let (q, oq) = (
        device.create_queue().unwrap(),
        other.create_queue().unwrap(),
    );
    let src = other.alloc(8 << 20).unwrap();
    let dst = device.alloc(4).unwrap();
    for i in 0..4u8 {
        oq.fill(&src.whole(), &[i]).unwrap();
    }
    let e = oq.record_event().unwrap();
    q.wait_event(&e).unwrap();
    q.fill(&dst.whole(), &[9]).unwrap();
    q.finish().unwrap();
    assert!(e.is_done());
    assert_eq!(read(&*q, &dst), vec![9; 4]);
    let err = q.record_event().unwrap().elapsed_since(&*e).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
}

#[test]
fn huge_requests_name_the_limit() {
    let Some(device) = opencl() else { return };
    let limit = device.info().max_buffer_bytes;
    let e = device.alloc(limit as usize + 1).unwrap_err();
    assert_eq!(e.code(), ErrorCode::OutOfMemory);
    assert!(e.message().contains(&limit.to_string()), "{e}");
    assert!(e.message().contains("CL_DEVICE_MAX_MEM_ALLOC_SIZE"), "{e}");
}

#[test]
fn zero_sized_buffers_work_as_kernel_arguments() {
    let Some(device) = opencl() else { return };
    let q = device.create_queue().unwrap();
    let k = device.compile(&source(KERNELS, "saxpy", "")).unwrap();
    let empty = device.alloc(0).unwrap();
    q.launch(
        &k,
        LaunchDims::linear(8),
        &[
            KernelArg::Buffer(empty.whole()),
            KernelArg::Buffer(empty.whole()),
            KernelArg::scalar(1.0f32),
            KernelArg::scalar(0u32),
        ],
    )
    .unwrap();
    q.finish().unwrap();
}
