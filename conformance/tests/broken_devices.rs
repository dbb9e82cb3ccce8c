//! The suite must catch broken kernels: the conformance runner against deliberately broken
//! devices, each a CPU device whose native `add` misbehaves in one way:
//!
//! - `broken-ulp`: element 0 of the result is 100 ulp (100 units of the integer) off;
//! - `broken-unwritten`: the last element of the result is never written;
//! - `broken-writes-input`: input `a` is overwritten after the result is computed;
//! - `broken-aborts`: the process aborts in the third `add`.
//!
//! The test binary is its own worker: the runner re-executes it with `conformance --worker ...`.
//! It checks that exactly the broken cases fail (or crash) with the right diagnosis and that
//! every report is complete.

use std::any::Any;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyaccel_conformance::runner::{self, Host, Loaded, Options, Role};
use anyaccel_conformance::{Profile, Report, Status};
use anyaccel_cpu::CpuDevice;
use anyaccel_hal::{
    Backend, Buffer, BufferView, Caps, DType, Device, DeviceInfo, Error, Event, HostArg,
    HostKernel, Kernel, KernelArg, KernelCache, KernelSource, LaunchDims, OpCall, Queue, Result,
    Runtime, Tensor, Unavailable,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Ulp,
    Unwritten,
    WritesInput,
    Aborts,
}

const MODES: [(&str, Mode); 4] = [
    ("broken-ulp", Mode::Ulp),
    ("broken-unwritten", Mode::Unwritten),
    ("broken-writes-input", Mode::WritesInput),
    ("broken-aborts", Mode::Aborts),
];

struct BrokenBackend(&'static str, Mode);

impl Backend for BrokenBackend {
    fn name(&self) -> &str {
        self.0
    }
    fn probe(&self) -> Result<Vec<Arc<dyn Device>>, Unavailable> {
        let inner = CpuDevice::named(self.0, 0)?;
        let mut caps = inner.caps().clone();
        caps.native_ops.push("add".into());
        let device: Arc<dyn Device> = Arc::new_cyclic(|this| Broken {
            inner,
            mode: self.1,
            caps,
            this: this.clone(),
        });
        Ok(vec![device])
    }
}

struct Broken {
    inner: Arc<CpuDevice>,
    mode: Mode,
    caps: Caps,
    this: Weak<Broken>,
}

struct BrokenQueue {
    inner: Arc<dyn Queue>,
    device: Arc<Broken>,
}

static ADDS: AtomicUsize = AtomicUsize::new(0);

/// Runs `body` on the host over the memory of `t`'s buffer, in order on `queue`.
fn on_host(
    device: &CpuDevice,
    queue: &dyn Queue,
    t: &Tensor,
    body: impl Fn(*mut u8, usize) + Send + Sync + 'static,
) -> Result<()> {
    let kernel = device.compile(&KernelSource::Host(HostKernel::new("corrupt", move |l| {
        if let HostArg::Mem(m) = &l.args[0] {
            body(m.as_ptr(), m.len());
        }
        Ok(())
    })))?;
    queue.launch(
        &kernel,
        LaunchDims::linear(1),
        &[KernelArg::Buffer(t.view().clone())],
    )
}

impl Device for Broken {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn caps(&self) -> &Caps {
        &self.caps
    }
    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        self.inner.alloc(bytes)
    }
    fn create_queue(&self) -> Result<Arc<dyn Queue>> {
        let device = self
            .this
            .upgrade()
            .ok_or_else(|| Error::internal("device dropped"))?;
        Ok(Arc::new(BrokenQueue {
            inner: self.inner.create_queue()?,
            device,
        }))
    }
    fn compile(&self, source: &KernelSource) -> Result<Arc<dyn Kernel>> {
        self.inner.compile(source)
    }
    fn kernel_cache(&self) -> &KernelCache {
        self.inner.kernel_cache()
    }
    fn live_allocations(&self) -> usize {
        self.inner.live_allocations()
    }
    fn supports_native_op(&self, call: &OpCall) -> bool {
        call.op == "add"
    }
    fn execute_native_op(&self, queue: &dyn Queue, call: &OpCall) -> Result<()> {
        let q = queue
            .as_any()
            .downcast_ref::<BrokenQueue>()
            .ok_or_else(|| Error::internal("foreign queue"))?;
        let iq = &*q.inner;
        let inputs: Vec<Option<&Tensor>> = call.inputs.iter().map(|t| t.as_ref()).collect();
        let out = &call.outputs[0];
        let (desc, size) = (out.desc().clone(), out.dtype().size_in_bytes());
        if out.numel() == 0 {
            return anyaccel_ops::call_into(iq, "add", &inputs, &[out], &call.attrs);
        }
        match self.mode {
            Mode::Ulp => {
                anyaccel_ops::call_into(iq, "add", &inputs, &[out], &call.attrs)?;
                let at = (out.view().offset() / size + desc.offset) * size;
                on_host(&self.inner, iq, out, move |p, _| {
                    // SAFETY: element 0 of the output lies at `at` inside the buffer.
                    unsafe {
                        let e = p.add(at);
                        match size {
                            2 => (e as *mut u16).write_unaligned(
                                (e as *mut u16).read_unaligned().wrapping_add(100),
                            ),
                            4 => (e as *mut u32).write_unaligned(
                                (e as *mut u32).read_unaligned().wrapping_add(100),
                            ),
                            _ => (e as *mut u64).write_unaligned(
                                (e as *mut u64).read_unaligned().wrapping_add(100),
                            ),
                        }
                    }
                })
            }
            Mode::Unwritten => {
                let full = anyaccel_ops::call(iq, "add", &inputs, &call.attrs)?.remove(0);
                let (src_view, dst_base) = (full.view().clone(), out.view().offset() / size);
                let n = desc.numel();
                let kernel = self.inner.compile(&KernelSource::Host(HostKernel::new(
                    "all_but_last",
                    move |l| {
                        if let (HostArg::Mem(src), HostArg::Mem(dst)) = (&l.args[0], &l.args[1]) {
                            for i in 0..n - 1 {
                                let o = (dst_base + desc.offset_of_linear(i)) * size;
                                // SAFETY: both offsets lie inside their buffers (contiguous source,
                                // the output's own layout).
                                unsafe {
                                    std::ptr::copy_nonoverlapping(
                                        src.as_ptr().add(i * size),
                                        dst.as_ptr().add(o),
                                        size,
                                    )
                                };
                            }
                        }
                        Ok(())
                    },
                )))?;
                let _ = src_view;
                iq.launch(
                    &kernel,
                    LaunchDims::linear(1),
                    &[
                        KernelArg::Buffer(full.view().clone()),
                        KernelArg::Buffer(out.view().buffer().whole()),
                    ],
                )
            }
            Mode::WritesInput => {
                anyaccel_ops::call_into(iq, "add", &inputs, &[out], &call.attrs)?;
                let a = call.inputs[0]
                    .as_ref()
                    .ok_or_else(|| Error::internal("no a"))?;
                if a.numel() == 0 {
                    return Ok(());
                }
                let at = (a.view().offset() / size + a.desc().offset) * size;
                on_host(&self.inner, iq, a, move |p, _| {
                    // SAFETY: element 0 of `a` lies at `at` inside its buffer.
                    unsafe { *p.add(at) = !*p.add(at) }
                })
            }
            Mode::Aborts => {
                // Abort once per run (the marker survives the worker that the runner restarts).
                let marker = std::env::var_os("BROKEN_ABORT_MARKER").map(PathBuf::from);
                if ADDS.fetch_add(1, Ordering::SeqCst) == 2
                    && marker.as_ref().is_some_and(|m| {
                        std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(m)
                            .is_ok()
                    })
                {
                    std::process::abort();
                }
                anyaccel_ops::call_into(iq, "add", &inputs, &[out], &call.attrs)
            }
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Queue for BrokenQueue {
    fn device_id(&self) -> &str {
        self.inner.device_id()
    }
    fn device(&self) -> Arc<dyn Device> {
        self.device.clone()
    }
    fn write(&self, dst: &BufferView, data: &[u8]) -> Result<()> {
        self.inner.write(dst, data)
    }
    fn read(&self, src: &BufferView, dst: &mut [u8]) -> Result<()> {
        self.inner.read(src, dst)
    }
    fn copy(&self, src: &BufferView, dst: &BufferView) -> Result<()> {
        self.inner.copy(src, dst)
    }
    fn fill(&self, dst: &BufferView, pattern: &[u8]) -> Result<()> {
        self.inner.fill(dst, pattern)
    }
    fn submit_launch(
        &self,
        kernel: &Arc<dyn Kernel>,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<()> {
        self.inner.launch(kernel, dims, args)
    }
    fn record_event(&self) -> Result<Arc<dyn Event>> {
        self.inner.record_event()
    }
    fn wait_event(&self, event: &Arc<dyn Event>) -> Result<()> {
        self.inner.wait_event(event)
    }
    fn finish(&self) -> Result<()> {
        self.inner.finish()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn make_runtime(_plugins: &[PathBuf], _role: Role) -> std::result::Result<Loaded, String> {
    let runtime = Runtime::with_backends(
        MODES
            .iter()
            .map(|&(n, m)| Arc::new(BrokenBackend(n, m)) as Arc<dyn Backend>)
            .collect(),
    )
    .map_err(|e| e.to_string())?;
    Ok(Loaded {
        runtime,
        plugins: Vec::new(),
    })
}

fn host() -> Host<'static> {
    Host {
        exe: std::env::current_exe().expect("the test binary's path"),
        worker_prefix: vec!["conformance".into()],
        make_runtime: &make_runtime,
        replay_command: "broken_devices conformance".into(),
    }
}

fn run(device: &str) -> Report {
    let o = Options {
        devices: vec![device.into()],
        profiles: Profile::ALL.to_vec(),
        filters: vec!["ops.add.*".into(), "ops.mul.f32.*".into()],
        report_dir: None,
        jobs: 2,
        no_large: true,
        timeout: Duration::from_secs(300),
        ..Options::default()
    };
    runner::run(&o, &host()).expect("the run starts")
}

/// Value classes whose element 0 is always an ordinary number (no NaN, infinity or zero).
fn ordinary(id: &str) -> bool {
    [".normal", ".small", ".extreme", ".wide", ".positive"]
        .iter()
        .any(|s| id.ends_with(s))
        || id.ends_with("outs5x7")
}

fn nonempty(id: &str) -> bool {
    !id.contains(".empty")
}

fn check(name: &str, cond: bool, what: String, failures: &mut Vec<String>) {
    if !cond {
        failures.push(format!("{name}: {what}"));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("conformance") {
        std::process::exit(runner::main(&args[1..], &host()));
    }
    // The test harness protocol that cargo test and nextest use to list tests.
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("broken_devices: test");
        }
        return;
    }
    let all_cases = anyaccel_conformance::all_cases();
    let selected = all_cases
        .iter()
        .filter(|c| !c.large && (c.id.starts_with("ops.add.") || c.id.starts_with("ops.mul.f32.")))
        .count();
    let marker = std::env::temp_dir().join(format!("anyaccel-broken-abort-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    // Read by the workers, which inherit the environment; nothing else runs yet. The broken
    // runtime has none of the backends that the test command may require.
    std::env::set_var("BROKEN_ABORT_MARKER", &marker);
    std::env::remove_var("ANYACCEL_REQUIRE");
    let mut failures = Vec::new();
    let mut checks = 0;
    for (name, mode) in MODES {
        let report = run(&format!("{name}:0"));
        let d = &report.devices[0];
        checks += 1;
        check(
            name,
            d.cases.len() == selected,
            format!("report has {} cases, expected {selected}", d.cases.len()),
            &mut failures,
        );
        for c in &d.cases {
            let add = c.id.starts_with("ops.add.");
            let reason = c.reason.clone().unwrap_or_default();
            if !add {
                check(
                    name,
                    c.status == Status::Passed,
                    format!(
                        "{} is {:?} ({reason}) but only add is broken",
                        c.id, c.status
                    ),
                    &mut failures,
                );
                continue;
            }
            match mode {
                Mode::Ulp if nonempty(&c.id) && ordinary(&c.id) => {
                    let ok = c.status == Status::Failed
                        && reason.contains("first bad element 0")
                        && reason.contains("1 of");
                    check(
                        name,
                        ok,
                        format!("{} is {:?}: {reason}", c.id, c.status),
                        &mut failures,
                    );
                    let float = c
                        .dtype
                        .as_deref()
                        .is_some_and(|d| d.starts_with('f') || d.starts_with("bf"));
                    if float && !c.id.ends_with(".wide") {
                        check(
                            name,
                            c.needed_atol.is_some() && c.max_abs_err > 0.0,
                            format!("{} has no error figures", c.id),
                            &mut failures,
                        );
                    }
                }
                Mode::Unwritten if nonempty(&c.id) => {
                    let ok = c.status == Status::Failed && reason.contains("was not written");
                    check(
                        name,
                        ok,
                        format!("{} is {:?}: {reason}", c.id, c.status),
                        &mut failures,
                    );
                }
                Mode::WritesInput if nonempty(&c.id) => {
                    let ok = c.status == Status::Failed && reason.contains("input 0 was modified");
                    check(
                        name,
                        ok,
                        format!("{} is {:?}: {reason}", c.id, c.status),
                        &mut failures,
                    );
                }
                Mode::Aborts => {}
                _ if !nonempty(&c.id) => {
                    check(
                        name,
                        c.status == Status::Passed,
                        format!("empty case {} is {:?}: {reason}", c.id, c.status),
                        &mut failures,
                    );
                }
                _ => {}
            }
        }
        if mode == Mode::Aborts {
            let crashed: Vec<_> = d
                .cases
                .iter()
                .filter(|c| c.status == Status::Crashed)
                .collect();
            check(
                name,
                crashed.len() == 1,
                format!("{} cases crashed, expected exactly 1", crashed.len()),
                &mut failures,
            );
            if let Some(c) = crashed.first() {
                let r = c.reason.clone().unwrap_or_default();
                check(
                    name,
                    r.contains("SIGABRT"),
                    format!("crash reason does not name the signal: {r}"),
                    &mut failures,
                );
            }
            let others_ok = d
                .cases
                .iter()
                .all(|c| matches!(c.status, Status::Passed | Status::Crashed));
            check(
                name,
                others_ok,
                "cases other than the crashed one did not all pass".into(),
                &mut failures,
            );
        }
        check(
            name,
            !report.ok(false),
            "the run reports success".into(),
            &mut failures,
        );
        let json = serde_json::to_string(&report).unwrap_or_default();
        check(
            name,
            json.contains("\"schema\":\"anyaccel-conformance/1\""),
            "report.json lacks the schema".into(),
            &mut failures,
        );
        let _ = DType::F32;
    }
    let _ = std::fs::remove_file(&marker);
    for f in &failures {
        eprintln!("FAILED {f}");
    }
    println!(
        "broken_devices: {} passed, {} failed",
        checks - failures.len().min(checks),
        failures.len().min(checks)
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
