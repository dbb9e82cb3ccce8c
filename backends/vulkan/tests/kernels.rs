//! Vulkan kernels: WGSL and SPIR-V through compute pipelines, the argument convention, the
//! device limits it enforces, and queue behaviour that needs kernels or several devices.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyaccel_hal::{
    f16, Backend, Device, Error, ErrorCode, Event, Kernel, KernelArg, KernelSource, LaunchDims,
    Queue,
};
use anyaccel_vulkan::{VulkanBackend, VulkanDevice, VulkanKernel};

const SAXPY: &str = include_str!("kernels/saxpy.wgsl");
const MUL_F16: &str = include_str!("kernels/mul_f16.wgsl");
const SYNTAX_ERROR: &str = include_str!("kernels/syntax_error.wgsl");
const INDICES: &str = include_str!("kernels/indices.wgsl");
const LAST_WORD: &str = include_str!("kernels/last_word.wgsl");

fn vulkan() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&VulkanBackend)
}

fn vk(device: &Arc<dyn Device>) -> &VulkanDevice {
    device
        .as_any()
        .downcast_ref::<VulkanDevice>()
        .expect("a Vulkan device")
}

fn wgsl(device: &Arc<dyn Device>, source: &str, entry: &str) -> Arc<dyn Kernel> {
    device
        .compile(&KernelSource::Wgsl {
            source: source.into(),
            entry: entry.into(),
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

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read(q: &dyn Queue, b: &anyaccel_hal::Buffer) -> Vec<u8> {
    let mut out = vec![0u8; b.size()];
    q.read(&b.whole(), &mut out).expect("read");
    out
}

/// The arguments of `saxpy` over the first `n` elements of `x` and `y`.
fn saxpy_args(
    x: &anyaccel_hal::Buffer,
    y: &anyaccel_hal::Buffer,
    n: usize,
    a: f32,
) -> [KernelArg; 4] {
    [
        KernelArg::Buffer(x.whole()),
        KernelArg::Buffer(y.whole()),
        KernelArg::scalar(n as u32),
        KernelArg::scalar(a),
    ]
}

/// Runs saxpy on `n` elements: x = i, y = 2i, a = 3, so y becomes 5i exactly.
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
        &saxpy_args(&xb, &yb, n, 3.0),
    )
    .unwrap();
    let got = f32s(&read(q, &yb));
    for (i, g) in got.iter().enumerate() {
        assert_eq!(*g, 5.0 * i as f32, "saxpy element {i} of {n}");
    }
}

#[test]
fn saxpy_with_scalars_in_push_constants() {
    let Some(device) = vulkan() else { return };
    let kernel = wgsl(&device, SAXPY, "saxpy");
    let vk_kernel = kernel
        .as_any()
        .downcast_ref::<VulkanKernel>()
        .expect("a Vulkan kernel");
    let iface = vk_kernel.interface();
    assert_eq!(iface.workgroup_size, [64, 1, 1]);
    assert_eq!(iface.buffers.len(), 2);
    assert!(iface.buffers[0].read_only && !iface.buffers[1].read_only);
    assert_eq!(iface.scalars.map(|s| s.size), Some(8));
    let q = device.create_queue().unwrap();
    let before = device.live_allocations();
    for n in [1usize, 63, 64, 65, 1000 + 7] {
        run_saxpy(&device, &*q, &kernel, n);
    }
    assert_eq!(device.live_allocations(), before);
}

#[test]
fn saxpy_with_staged_transfers() {
    let Some(device) = vulkan() else { return };
    vk(&device).set_direct_host_access(false);
    let kernel = wgsl(&device, SAXPY, "saxpy");
    let q = device.create_queue().unwrap();
    run_saxpy(&device, &*q, &kernel, 4099);
}

#[test]
fn f16_kernel_computes_exactly() {
    let Some(device) = vulkan() else { return };
    if !device.caps().has_dtype(anyaccel_hal::DType::F16) {
        eprintln!(
            "skipped: {} has no shaderFloat16 with 16-bit storage",
            device.info().id
        );
        return;
    }
    let kernel = wgsl(&device, MUL_F16, "mul_f16");
    let n = 1001usize;
    // Normal values of both signs: products of two halves are exact in f32, so rounding them
    // once to f16 is the correctly rounded f16 product the device must give.
    let value = |i: usize, s: u32| {
        let bits = (i as u32).wrapping_mul(2654435761).wrapping_add(s) >> 16;
        let v = 0.5 + (bits % 1536) as f32 / 1024.0;
        f16::from_f32(if bits & 1 == 1 { -v } else { v })
    };
    let a: Vec<f16> = (0..n).map(|i| value(i, 1)).collect();
    let b: Vec<f16> = (0..n).map(|i| value(i, 77)).collect();
    let bytes = |v: &[f16]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let q = device.create_queue().unwrap();
    let (ab, bb, out) = (
        device.alloc(2 * n).unwrap(),
        device.alloc(2 * n).unwrap(),
        device.alloc(2 * n).unwrap(),
    );
    q.write(&ab.whole(), &bytes(&a)).unwrap();
    q.write(&bb.whole(), &bytes(&b)).unwrap();
    q.fill(&out.whole(), &[0xFF, 0x7F]).unwrap();
    q.launch(
        &kernel,
        LaunchDims::linear(n as u64),
        &[
            KernelArg::Buffer(ab.whole()),
            KernelArg::Buffer(bb.whole()),
            KernelArg::Buffer(out.whole()),
            KernelArg::scalar(n as u32),
        ],
    )
    .unwrap();
    let got = read(&*q, &out);
    for i in 0..n {
        let g = f16::from_le_bytes([got[2 * i], got[2 * i + 1]]);
        let want = f16::from_f32(a[i].to_f32() * b[i].to_f32());
        assert_eq!(g.to_bits(), want.to_bits(), "{} * {} at {i}", a[i], b[i]);
    }
}

#[test]
fn wgsl_syntax_error_is_compile_failed_with_the_line() {
    let Some(device) = vulkan() else { return };
    let e = device
        .compile(&KernelSource::Wgsl {
            source: SYNTAX_ERROR.into(),
            entry: "broken".into(),
        })
        .err()
        .expect("a broken kernel compiled");
    assert_eq!(e.code(), ErrorCode::CompileFailed, "{e}");
    let m = e.message();
    assert!(m.contains("broken") && m.contains("expected"), "{m}");
    assert!(
        m.contains("wgsl:5:"),
        "the message does not point at line 5: {m}"
    );
    assert!(
        m.contains("let v = ;"),
        "the message does not quote the line: {m}"
    );
    println!("{e}");
}

#[test]
fn validation_errors_and_convention_violations_are_clear() {
    let Some(device) = vulkan() else { return };
    let compile = |source: &str, entry: &str| {
        device
            .compile(&KernelSource::Wgsl {
                source: source.into(),
                entry: entry.into(),
            })
            .err()
            .unwrap_or_else(|| panic!("`{entry}` compiled"))
    };
    // A type error: caught by naga's validator, with its message.
    let e = compile(
        "@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n\
         @compute @workgroup_size(1) fn k() { x[0] = 1u; }",
        "k",
    );
    assert_eq!(e.code(), ErrorCode::CompileFailed, "{e}");
    // No such entry point: the ones there are listed.
    let e = compile(SAXPY, "saxpi");
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(e.message().contains("saxpy"), "{e}");
    // A gap in the bindings.
    let e = compile(
        "@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n\
         @group(0) @binding(2) var<storage, read_write> y: array<f32>;\n\
         @compute @workgroup_size(1) fn k() { x[0] = y[0]; }",
        "k",
    );
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(e.message().contains("0, 2"), "{e}");
    // A work group larger than the device allows.
    let e = compile(
        "@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n\
         @compute @workgroup_size(1024, 1024) fn k() { x[0] = 1.0; }",
        "k",
    );
    assert_eq!(e.code(), ErrorCode::Unsupported, "{e}");
    assert!(
        e.message().contains("maxComputeWorkGroupInvocations"),
        "{e}"
    );
    // Not a dialect of this device.
    let e = device
        .compile(&KernelSource::OpenClC {
            source: String::new(),
            entry: "k".into(),
            options: String::new(),
        })
        .err()
        .expect("OpenCL C compiled on Vulkan");
    assert_eq!(e.code(), ErrorCode::Unsupported, "{e}");
}

#[test]
fn launch_arguments_are_checked_against_the_kernel() {
    let Some(device) = vulkan() else { return };
    let kernel = wgsl(&device, SAXPY, "saxpy");
    let q = device.create_queue().unwrap();
    let b = device.alloc(64).unwrap();
    let launch = |args: &[KernelArg], dims: LaunchDims| q.launch(&kernel, dims, args);
    let one = LaunchDims::linear(16);
    let e = launch(
        &[KernelArg::Buffer(b.whole()), KernelArg::scalar(1u32)],
        one,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(
        e.message().contains("1 buffer arguments given") && e.message().contains("2 storage"),
        "{e}"
    );
    let e = launch(
        &[
            KernelArg::Buffer(b.whole()),
            KernelArg::Buffer(b.whole()),
            KernelArg::scalar(1u32),
        ],
        one,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(
        e.message().contains("4 bytes") && e.message().contains("8 bytes"),
        "{e}"
    );
    let e = launch(
        &[
            KernelArg::Buffer(b.whole()),
            KernelArg::Buffer(b.whole()),
            KernelArg::scalar(1u32),
            KernelArg::scalar(1.0f32),
        ],
        LaunchDims {
            global: [32, 1, 1],
            local: Some([32, 1, 1]),
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(e.message().contains("@workgroup_size is [64, 1, 1]"), "{e}");
    // Another probe opens the same physical device again with the same id, `vulkan:0`:
    // its buffers and kernels are refused by object, not only by id.
    let other = VulkanBackend.probe().unwrap()[0].clone();
    assert_eq!(other.info().id, device.info().id);
    let foreign = other.alloc(64).unwrap();
    let e = launch(
        &[
            KernelArg::Buffer(b.whole()),
            KernelArg::Buffer(foreign.whole()),
            KernelArg::scalar(1u32),
            KernelArg::scalar(1.0f32),
        ],
        one,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(e.message().contains("another instance"), "{e}");
    let e = q.write(&foreign.whole(), &[0; 64]).unwrap_err();
    assert!(e.message().contains("another instance"), "{e}");
    let foreign_kernel = wgsl(&other, SAXPY, "saxpy");
    let e = q
        .launch(
            &foreign_kernel,
            one,
            &[
                KernelArg::Buffer(b.whole()),
                KernelArg::Buffer(b.whole()),
                KernelArg::scalar(1u32),
                KernelArg::scalar(1.0f32),
            ],
        )
        .unwrap_err();
    assert!(e.message().contains("another instance"), "{e}");
    q.finish().unwrap();
}

#[test]
fn bindings_beyond_max_storage_buffer_range_are_refused() {
    let Some(device) = vulkan() else { return };
    let limits = vk(&device).limits().clone();
    let range = limits.max_storage_buffer_range;
    if range + 4 > device.info().max_buffer_bytes || range > 1 << 30 {
        eprintln!("skipped: a buffer beyond maxStorageBufferRange ({range}) is too large here");
        return;
    }
    let kernel = wgsl(&device, LAST_WORD, "last_word");
    let q = device.create_queue().unwrap();
    let big = device.alloc(range as usize + 4).unwrap();
    let e = q
        .launch(
            &kernel,
            LaunchDims::linear(1),
            &[KernelArg::Buffer(big.whole())],
        )
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unsupported, "{e}");
    assert!(
        e.message().contains("maxStorageBufferRange") && e.message().contains(&range.to_string()),
        "{e}"
    );
    // The largest range that fits is bound whole: the kernel reaches its last word.
    let view = big.view(0, range as usize).unwrap();
    q.launch(
        &kernel,
        LaunchDims::linear(1),
        &[KernelArg::Buffer(view.clone())],
    )
    .unwrap();
    let mut tail = [0u8; 8];
    q.read(&big.view(range as usize - 4, 8).unwrap(), &mut tail)
        .unwrap();
    assert_eq!(u32s(&tail)[0], 7, "the last word of the binding");
    // Offsets must respect minStorageBufferOffsetAlignment.
    let align = limits.min_storage_buffer_offset_alignment;
    if align > 4 {
        let e = q
            .launch(
                &kernel,
                LaunchDims::linear(1),
                &[KernelArg::Buffer(big.view(4, 64).unwrap())],
            )
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Unsupported, "{e}");
        assert!(
            e.message().contains("minStorageBufferOffsetAlignment"),
            "{e}"
        );
    }
    let aligned = big.view(align as usize, 64).unwrap();
    q.launch(
        &kernel,
        LaunchDims::linear(1),
        &[KernelArg::Buffer(aligned)],
    )
    .unwrap();
    let mut word = [0u8; 4];
    q.read(&big.view(align as usize + 60, 4).unwrap(), &mut word)
        .unwrap();
    assert_eq!(
        u32::from_le_bytes(word),
        7,
        "a bound view starts at its offset"
    );
}

#[test]
fn grids_cover_every_work_item_even_beyond_max_group_count() {
    let Some(device) = vulkan() else { return };
    let limits = vk(&device).limits().clone();
    let q = device.create_queue().unwrap();
    // One item per group: more groups than maxComputeWorkGroupCount[0] take several dispatches.
    let n = (limits.max_compute_work_group_count[0] as usize + 1000).min(1 << 22);
    let linear = wgsl(&device, INDICES, "linear");
    let out = device.alloc(4 * n).unwrap();
    q.fill(&out.whole(), &[0]).unwrap();
    q.launch(
        &linear,
        LaunchDims::linear(n as u64),
        &[
            KernelArg::Buffer(out.whole()),
            KernelArg::scalar(n as u32),
            KernelArg::scalar(1u32),
        ],
    )
    .unwrap();
    let got = u32s(&read(&*q, &out));
    for (i, v) in got.iter().enumerate() {
        assert_eq!(*v, i as u32 + 1, "item {i} of {n}");
    }
    // Two dimensions, neither a multiple of the 2x2 work group.
    let grid = wgsl(&device, INDICES, "grid");
    let (w, h) = (7u32, 5u32);
    let out = device.alloc(4 * (w * h) as usize).unwrap();
    q.launch(
        &grid,
        LaunchDims {
            global: [w as u64, h as u64, 1],
            local: None,
        },
        &[
            KernelArg::Buffer(out.whole()),
            KernelArg::scalar(w),
            KernelArg::scalar(h),
        ],
    )
    .unwrap();
    let got = u32s(&read(&*q, &out));
    for y in 0..h {
        for x in 0..w {
            assert_eq!(got[(y * w + x) as usize], x * 1000 + y, "({x}, {y})");
        }
    }
    // An empty grid runs nothing and is not an error.
    q.launch(
        &grid,
        LaunchDims {
            global: [0, h as u64, 1],
            local: None,
        },
        &[
            KernelArg::Buffer(out.whole()),
            KernelArg::scalar(w),
            KernelArg::scalar(h),
        ],
    )
    .unwrap();
    q.finish().unwrap();
}

#[test]
fn spirv_modules_compile_and_run() {
    let Some(device) = vulkan() else { return };
    let module = naga::front::wgsl::parse_str(SAXPY).unwrap();
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::IMMEDIATES,
    )
    .validate(&module)
    .unwrap();
    let options = naga::back::spv::Options {
        lang_version: (1, 3),
        ..Default::default()
    };
    let words = naga::back::spv::write_vec(&module, &info, &options, None).unwrap();
    let kernel = device
        .compile(&KernelSource::SpirV {
            words: words.clone(),
            entry: "saxpy".into(),
        })
        .unwrap();
    let iface = kernel
        .as_any()
        .downcast_ref::<VulkanKernel>()
        .unwrap()
        .interface()
        .clone();
    assert_eq!(iface.workgroup_size, [64, 1, 1]);
    assert_eq!(iface.buffers.len(), 2);
    assert!(iface.buffers[0].read_only && !iface.buffers[1].read_only);
    let q = device.create_queue().unwrap();
    run_saxpy(&device, &*q, &kernel, 777);
    let e = device
        .compile(&KernelSource::SpirV {
            words: vec![1, 2, 3, 4, 5, 6],
            entry: "saxpy".into(),
        })
        .err()
        .expect("garbage compiled");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(e.message().contains("magic"), "{e}");
    let e = device
        .compile(&KernelSource::SpirV {
            words,
            entry: "nope".into(),
        })
        .err()
        .expect("a missing entry point compiled");
    assert!(e.message().contains("saxpy"), "{e}");
}

/// An event of "another backend" that fails, to check sticky errors.
struct Failed;

impl Event for Failed {
    fn wait(&self) -> anyaccel_hal::Result<()> {
        Err(Error::launch_failed(
            "remote kernel `k`: index 9 out of range 0..4",
        ))
    }
    fn is_done(&self) -> bool {
        true
    }
    fn elapsed_since(&self, _: &dyn Event) -> anyaccel_hal::Result<Duration> {
        Err(Error::unsupported("no timing"))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[test]
fn a_failed_wait_sticks_until_reported_and_skips_later_commands() {
    let Some(device) = vulkan() else { return };
    let q = device.create_queue().unwrap();
    let other = device.create_queue().unwrap();
    let b = device.alloc(4).unwrap();
    q.fill(&b.whole(), &[1]).unwrap();
    let failed: Arc<dyn Event> = Arc::new(Failed);
    q.wait_event(&failed).unwrap();
    q.fill(&b.whole(), &[2]).unwrap();
    let after = q.record_event().unwrap();
    let e = after.wait().unwrap_err();
    assert!(
        e.message().contains("index 9"),
        "the event does not carry the failure: {e}"
    );
    // A queue of the same device waiting on that event fails the same way.
    other.wait_event(&after).unwrap();
    other.fill(&b.whole(), &[3]).unwrap();
    let e = other.finish().unwrap_err();
    assert!(e.message().contains("index 9"), "{e}");
    let e = q.finish().unwrap_err();
    assert_eq!(e.code(), ErrorCode::LaunchFailed);
    assert!(e.message().contains("index 9 out of range"), "{e}");
    assert_eq!(read(&*q, &b), [1; 4], "a command after the failure ran");
    q.fill(&b.whole(), &[5]).unwrap();
    assert_eq!(
        read(&*q, &b),
        [5; 4],
        "the queue did not recover after reporting"
    );
    other.fill(&b.whole(), &[6]).unwrap();
    assert_eq!(read(&*other, &b), [6; 4]);
}

/// An event of "another backend" that completes when the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

impl Event for Gate {
    fn wait(&self) -> anyaccel_hal::Result<()> {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
        Ok(())
    }
    fn is_done(&self) -> bool {
        *self.open.lock().unwrap()
    }
    fn elapsed_since(&self, _: &dyn Event) -> anyaccel_hal::Result<Duration> {
        Err(Error::unsupported("no timing"))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[test]
fn launches_return_before_the_work_they_wait_for() {
    let Some(device) = vulkan() else { return };
    let kernel = wgsl(&device, SAXPY, "saxpy");
    let q = device.create_queue().unwrap();
    let n = 256usize;
    let x = device.alloc(4 * n).unwrap();
    let y = device.alloc(4 * n).unwrap();
    q.write(&x.whole(), &f32_bytes(&vec![1.0; n])).unwrap();
    q.write(&y.whole(), &f32_bytes(&vec![1.0; n])).unwrap();
    let gate = Arc::new(Gate::default());
    let event: Arc<dyn Event> = gate.clone();
    q.wait_event(&event).unwrap();
    // None of these may wait for the gate, which this thread opens only afterwards.
    q.fill(&x.whole(), &2.0f32.to_le_bytes()).unwrap();
    q.launch(
        &kernel,
        LaunchDims::linear(n as u64),
        &[
            KernelArg::Buffer(x.whole()),
            KernelArg::Buffer(y.whole()),
            KernelArg::scalar(n as u32),
            KernelArg::scalar(10.0f32),
        ],
    )
    .unwrap();
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            gate.open();
        })
    };
    let got = f32s(&read(&*q, &y));
    assert!(gate.is_done());
    assert!(got.iter().all(|&v| v == 21.0), "{:?}", &got[..4]);
    opener.join().unwrap();
}

#[test]
fn events_of_another_vulkan_device_are_waited_for() {
    let Some(a) = vulkan() else { return };
    let b = VulkanBackend.probe().unwrap()[0].clone();
    let (qa, qb) = (a.create_queue().unwrap(), b.create_queue().unwrap());
    let big = a.alloc(16 << 20).unwrap();
    for i in 0..4u8 {
        qa.fill(&big.whole(), &[i]).unwrap();
    }
    let event = qa.record_event().unwrap();
    let out = b.alloc(4).unwrap();
    qb.wait_event(&event).unwrap();
    qb.fill(&out.whole(), &[9]).unwrap();
    qb.finish().unwrap();
    assert!(
        event.is_done(),
        "a queue ran past an event of another device"
    );
    assert_eq!(read(&*qb, &out), [9; 4]);
    let e = event
        .elapsed_since(&*qb.record_event().unwrap())
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
}

#[test]
fn kernels_and_buffers_dropped_while_in_flight_stay_alive_until_done() {
    let Some(device) = vulkan() else { return };
    let q = device.create_queue().unwrap();
    let before = device.live_allocations();
    let n = 1 << 16;
    {
        let kernel = wgsl(&device, SAXPY, "saxpy");
        let x = device.alloc(4 * n).unwrap();
        let y = device.alloc(4 * n).unwrap();
        q.fill(&x.whole(), &1.0f32.to_le_bytes()).unwrap();
        q.fill(&y.whole(), &1.0f32.to_le_bytes()).unwrap();
        for _ in 0..3 * anyaccel_vulkan::BATCH_COMMANDS {
            q.launch(
                &kernel,
                LaunchDims::linear(n as u64),
                &[
                    KernelArg::Buffer(x.whole()),
                    KernelArg::Buffer(y.whole()),
                    KernelArg::scalar(n as u32),
                    KernelArg::scalar(1.0f32),
                ],
            )
            .unwrap();
        }
    }
    q.finish().unwrap();
    assert_eq!(device.live_allocations(), before);
}

#[test]
fn writes_behind_queued_work_take_every_path() {
    let Some(device) = vulkan() else { return };
    let q = device.create_queue().unwrap();
    let size = 3 << 20;
    let b = device.alloc(size + 3).unwrap();
    let data: Vec<u8> = (0..size + 3).map(|i| (i * 7 + i / 251) as u8).collect();
    // Each write comes after a fill still in the batch, so none can go straight to memory:
    // inline (small, aligned), the upload arena (unaligned), a staging buffer (large).
    for (offset, len) in [
        (0usize, 256usize),
        (4, 65536),
        (1, 1000),
        (3, 1 << 20),
        (0, size + 3),
    ] {
        q.fill(&b.whole(), &[0xEE]).unwrap();
        let view = b.view(offset, len).unwrap();
        q.write(&view, &data[..len]).unwrap();
        let got = read(&*q, &b);
        assert!(got[..offset].iter().all(|&v| v == 0xEE), "before {offset}");
        assert!(
            got[offset..offset + len] == data[..len],
            "write of {len} at {offset}"
        );
        assert!(
            got[offset + len..].iter().all(|&v| v == 0xEE),
            "after {offset}+{len}"
        );
    }
}

fn pushes(kernel: &Arc<dyn Kernel>) -> bool {
    kernel
        .as_any()
        .downcast_ref::<VulkanKernel>()
        .expect("a Vulkan kernel")
        .pushes_descriptors()
}

#[test]
fn bindings_are_pushed_where_the_device_can_and_pool_sets_work_too() {
    let Some(device) = vulkan() else { return };
    let v = vk(&device);
    let has = v.features().push_descriptor;
    if device.info().name.contains("llvmpipe") {
        // lavapipe has VK_KHR_push_descriptor with 32 push descriptors.
        assert!(has, "lavapipe should report VK_KHR_push_descriptor");
    }
    assert_eq!(has, v.limits().max_push_descriptors > 0);
    let q = device.create_queue().unwrap();
    assert_eq!(v.set_push_descriptors(true), has);
    let pushed = wgsl(&device, SAXPY, "saxpy");
    assert_eq!(pushes(&pushed), has);
    run_saxpy(&device, &*q, &pushed, 1000);
    assert!(!v.set_push_descriptors(false));
    let pooled = wgsl(&device, SAXPY, "saxpy");
    assert!(!pushes(&pooled));
    // More launches than one descriptor pool holds sets, in one batch and across batches,
    // interleaved with pushed launches on the same queue.
    let n = 256usize;
    let xb = device.alloc(4 * n).unwrap();
    let yb = device.alloc(4 * n).unwrap();
    q.write(&xb.whole(), &f32_bytes(&vec![1.0; n])).unwrap();
    q.write(&yb.whole(), &f32_bytes(&vec![0.0; n])).unwrap();
    let launches = 150;
    for i in 0..launches {
        let kernel = if i % 3 == 0 { &pushed } else { &pooled };
        q.launch(
            kernel,
            LaunchDims::linear(n as u64),
            &saxpy_args(&xb, &yb, n, 1.0),
        )
        .unwrap();
    }
    let got = f32s(&read(&*q, &yb));
    assert!(got.iter().all(|&g| g == launches as f32), "{:?}", &got[..4]);
}

/// A kernel that sums `count` input buffers into one output: more bindings than a device may
/// push falls back to a descriptor set from the pool.
fn sum_of_buffers(count: usize) -> String {
    let mut s = String::from("struct P { n: u32 }\nvar<immediate> p: P;\n");
    for b in 0..count {
        s += &format!("@group(0) @binding({b}) var<storage, read> in{b}: array<f32>;\n");
    }
    s += &format!("@group(0) @binding({count}) var<storage, read_write> out: array<f32>;\n");
    s += "@compute @workgroup_size(64)\nfn sum(@builtin(global_invocation_id) id: vec3<u32>) {\n";
    s += "    let i = id.x;\n    if i >= p.n { return; }\n    var acc = 0.0;\n";
    for b in 0..count {
        s += &format!("    acc += in{b}[i];\n");
    }
    s += "    out[i] = acc;\n}\n";
    s
}

#[test]
fn a_kernel_with_more_buffers_than_push_descriptors_uses_a_pool_set() {
    let Some(device) = vulkan() else { return };
    let v = vk(&device);
    let max_push = v.limits().max_push_descriptors as usize;
    let inputs = max_push.max(8);
    if inputs + 1 > v.limits().max_per_stage_storage_buffers as usize {
        eprintln!(
            "skipped: {} binds at most {} storage buffers per stage, all of which it can push",
            device.info().id,
            v.limits().max_per_stage_storage_buffers
        );
        return;
    }
    let kernel = wgsl(&device, &sum_of_buffers(inputs), "sum");
    assert!(
        !pushes(&kernel),
        "{} bindings, {max_push} pushable",
        inputs + 1
    );
    let small = wgsl(&device, &sum_of_buffers(3), "sum");
    assert_eq!(pushes(&small), v.features().push_descriptor);
    let n = 100usize;
    let q = device.create_queue().unwrap();
    let mut args = Vec::new();
    for b in 0..inputs {
        let buf = device.alloc(4 * n).unwrap();
        let vals: Vec<f32> = (0..n).map(|i| (i * (b + 1)) as f32).collect();
        q.write(&buf.whole(), &f32_bytes(&vals)).unwrap();
        args.push(KernelArg::Buffer(buf.whole()));
    }
    let out = device.alloc(4 * n).unwrap();
    args.push(KernelArg::Buffer(out.whole()));
    args.push(KernelArg::scalar(n as u32));
    q.launch(&kernel, LaunchDims::linear(n as u64), &args)
        .unwrap();
    let got = f32s(&read(&*q, &out));
    // sum over b of i * (b + 1) = i * inputs * (inputs + 1) / 2, exact in f32 here.
    let k = (inputs * (inputs + 1) / 2) as f32;
    for (i, g) in got.iter().enumerate() {
        assert_eq!(*g, i as f32 * k, "element {i}");
    }
    let mut small_args = args[..3].to_vec();
    small_args.push(KernelArg::Buffer(out.whole()));
    small_args.push(KernelArg::scalar(n as u32));
    q.launch(&small, LaunchDims::linear(n as u64), &small_args)
        .unwrap();
    let got = f32s(&read(&*q, &out));
    for (i, g) in got.iter().enumerate() {
        assert_eq!(*g, i as f32 * 6.0, "element {i} of the 3-buffer sum");
    }
}
