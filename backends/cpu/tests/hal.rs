//! The shared HAL suite on the CPU backend, and CPU-specific queue behaviour.

use std::sync::Arc;

use anyaccel_cpu::{CpuBackend, INLINE_WORK};
use anyaccel_hal::{
    host_serial, Device, Error, ErrorCode, HostArg, HostKernel, KernelArg, KernelSource, LaunchDims,
};

fn cpu() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&CpuBackend)
}

anyaccel_hal::hal_test_suite!(cpu);

/// A host kernel that waits at a barrier, and the barrier's other side.
fn gate(device: &dyn Device) -> (Arc<dyn anyaccel_hal::Kernel>, Arc<std::sync::Barrier>) {
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = gate.clone();
    let kernel = device
        .compile(&KernelSource::Host(HostKernel::new("gate", move |_| {
            g.wait();
            Ok(())
        })))
        .unwrap();
    (kernel, gate)
}

#[test]
fn launch_is_asynchronous_and_errors_stick() {
    let device = cpu().unwrap();
    let q = device.create_queue().unwrap();
    let (slow, gate) = gate(&*device);
    // If launch waited for the kernel, this would deadlock: the kernel waits for this thread.
    // (A launch as large as INLINE_WORK goes to the queue's thread.)
    q.launch(&slow, LaunchDims::linear(INLINE_WORK), &[])
        .unwrap();
    let event = q.record_event().unwrap();
    assert!(!event.is_done());
    gate.wait();
    event.wait().unwrap();

    let failing = device
        .compile(&KernelSource::Host(HostKernel::new("fails", |_| {
            Err(Error::launch_failed("index 9 out of range 0..4"))
        })))
        .unwrap();
    let b = device.alloc(4).unwrap();
    q.launch(&failing, LaunchDims::linear(1), &[]).unwrap();
    // Skipped: the queue is failed until the error is reported.
    q.fill(&b.whole(), &[9]).unwrap();
    let e = q.finish().unwrap_err();
    assert_eq!(e.code(), ErrorCode::LaunchFailed);
    assert!(e.message().contains("index 9 out of range"), "{e}");
    let mut out = [0u8; 4];
    q.read(&b.whole(), &mut out).unwrap();
    assert_eq!(out, [0; 4], "a command after the failure ran");
    q.fill(&b.whole(), &[5]).unwrap();
    q.read(&b.whole(), &mut out).unwrap();
    assert_eq!(out, [5; 4], "the queue did not recover after reporting");
}

#[test]
fn host_kernels_see_their_arguments_and_panics_are_errors() {
    let device = cpu().unwrap();
    let q = device.create_queue().unwrap();
    let b = device.alloc(16).unwrap();
    let k = device
        .compile(&KernelSource::Host(HostKernel::new("write_scalar", |l| {
            let (HostArg::Mem(m), HostArg::Bytes(v)) = (&l.args[0], &l.args[1]) else {
                return Err(Error::invalid_argument("bad args"));
            };
            // SAFETY: the test passes a 4-byte view and a 4-byte scalar.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), m.as_ptr(), 4) };
            Ok(())
        })))
        .unwrap();
    q.launch(
        &k,
        LaunchDims::linear(1),
        &[
            KernelArg::Buffer(b.view(4, 4).unwrap()),
            KernelArg::scalar(7u32),
        ],
    )
    .unwrap();
    let mut out = [0u8; 16];
    q.read(&b.whole(), &mut out).unwrap();
    assert_eq!(out[4..8], 7u32.to_le_bytes());
    assert_eq!(out[..4], [0; 4]);

    let p = device
        .compile(&KernelSource::Host(HostKernel::new("panics", |_| {
            panic!("boom")
        })))
        .unwrap();
    q.launch(&p, LaunchDims::linear(1), &[]).unwrap();
    let e = q.finish().unwrap_err();
    assert_eq!(e.code(), ErrorCode::LaunchFailed);
    assert!(
        e.message().contains("panics") && e.message().contains("boom"),
        "{e}"
    );

    let cl = KernelSource::OpenClC {
        source: String::new(),
        entry: "k".into(),
        options: String::new(),
    };
    assert_eq!(
        device.compile(&cl).err().unwrap().code(),
        ErrorCode::Unsupported
    );
}

#[test]
fn buffers_of_another_device_are_rejected() {
    let a = cpu().unwrap();
    let b = anyaccel_cpu::CpuDevice::new(1).unwrap();
    let q = a.create_queue().unwrap();
    let foreign = b.alloc(4).unwrap();
    let e = q.write(&foreign.whole(), &[1, 2, 3, 4]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(
        e.message().contains("cpu:1") && e.message().contains("cpu:0"),
        "{e}"
    );
}

/// A host kernel that records whether it ran serially, on which thread, and then writes `value`
/// to the first byte of its argument, after `delay`.
fn marker(
    device: &dyn Device,
    value: u8,
    delay: std::time::Duration,
    seen: Arc<std::sync::Mutex<Vec<(u8, bool, std::thread::ThreadId)>>>,
) -> Arc<dyn anyaccel_hal::Kernel> {
    device
        .compile(&KernelSource::Host(HostKernel::new("marker", move |l| {
            std::thread::sleep(delay);
            seen.lock()
                .unwrap()
                .push((value, host_serial(), std::thread::current().id()));
            let HostArg::Mem(m) = l.args[0] else {
                return Err(Error::internal("marker: expected memory"));
            };
            // SAFETY: the launch's one-byte (or larger) buffer view.
            unsafe { m.as_ptr().write(value) };
            Ok(())
        })))
        .unwrap()
}

#[test]
fn small_commands_on_an_idle_queue_run_at_once_and_in_order_behind_pending_ones() {
    let device = cpu().unwrap();
    let q = device.create_queue().unwrap();
    let b = device.alloc(4).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let arg = [KernelArg::Buffer(b.whole())];
    let short = std::time::Duration::ZERO;
    // Idle queue, small launch: done, serially, on this thread, when launch returns.
    let small = marker(&*device, 1, short, seen.clone());
    q.launch(&small, LaunchDims::linear(1), &arg).unwrap();
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [(1, true, std::thread::current().id())]
    );
    // A large launch goes to the queue's thread and the worker pool; small commands behind it
    // wait for it, whatever their size.
    let large = marker(
        &*device,
        2,
        std::time::Duration::from_millis(50),
        seen.clone(),
    );
    q.launch(&large, LaunchDims::linear(INLINE_WORK), &arg)
        .unwrap();
    let small3 = marker(&*device, 3, short, seen.clone());
    q.launch(&small3, LaunchDims::linear(1), &arg).unwrap();
    q.fill(&b.view(1, 3).unwrap(), &[7]).unwrap();
    let mut out = [0u8; 4];
    q.read(&b.whole(), &mut out).unwrap();
    assert_eq!(
        out,
        [3, 7, 7, 7],
        "the small launch ran before the large one"
    );
    let seen = seen.lock().unwrap();
    let order: Vec<u8> = seen.iter().map(|s| s.0).collect();
    assert_eq!(order, [1, 2, 3]);
    assert!(!seen[1].1, "the large launch ran serially");
    assert_ne!(seen[1].2, std::thread::current().id());
    assert_ne!(
        seen[2].2,
        std::thread::current().id(),
        "ran ahead of the queue"
    );
}

#[test]
fn waiting_on_a_pending_event_never_blocks_the_caller() {
    let device = cpu().unwrap();
    let (a, b) = (
        device.create_queue().unwrap(),
        device.create_queue().unwrap(),
    );
    let buf = device.alloc(4).unwrap();
    let (slow, gate) = gate(&*device);
    b.launch(&slow, LaunchDims::linear(INLINE_WORK), &[])
        .unwrap();
    let event = b.record_event().unwrap();
    // Queue a waits for b's event on its own thread: this call returns at once, and a's later
    // commands wait behind it (if either waited here, the test would deadlock).
    a.wait_event(&event).unwrap();
    a.fill(&buf.whole(), &[4]).unwrap();
    let after = a.record_event().unwrap();
    assert!(!after.is_done(), "a's commands ran before b's event");
    gate.wait();
    after.wait().unwrap();
    let mut out = [0u8; 4];
    a.read(&buf.whole(), &mut out).unwrap();
    assert_eq!(out, [4; 4]);
    // An event that has completed costs no wait: once a's thread is idle again, a's next
    // commands run at once. (The thread counts a command done just after completing it, so
    // right after the read it may still be busy for an instant: try a few times.)
    let ran_at_once = (0..200).any(|_| {
        a.wait_event(&event).unwrap();
        a.fill(&buf.whole(), &[6]).unwrap();
        let now = a.record_event().unwrap();
        let done = now.is_done();
        if !done {
            now.wait().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        done
    });
    assert!(
        ran_at_once,
        "a completed event still made a's commands wait"
    );
}

#[test]
fn map_host_runs_after_earlier_commands_and_before_later_ones() {
    let device = cpu().unwrap();
    let q = device.create_queue().unwrap();
    let b = device.alloc(1 << 16).unwrap();
    let view = b.view(16, 1 << 15).unwrap();
    // A command still queued behind a kernel that waits: map_host must wait for both.
    let (slow, gate) = gate(&*device);
    q.launch(&slow, LaunchDims::linear(INLINE_WORK), &[])
        .unwrap();
    q.fill(&view, &[7]).unwrap();
    let opener = std::thread::spawn(move || gate.wait());
    let mut seen = false;
    let mapped = q
        .map_host(&view, &mut |bytes| {
            seen = bytes.len() == 1 << 15 && bytes.iter().all(|&x| x == 7);
            bytes.fill(9);
            Ok(())
        })
        .unwrap();
    opener.join().unwrap();
    assert!(
        mapped && seen,
        "map_host ran before the fill, or over the wrong range"
    );
    q.fill(&b.view(0, 16).unwrap(), &[1]).unwrap();
    let mut out = vec![0u8; 1 << 16];
    q.read(&b.whole(), &mut out).unwrap();
    assert!(out[..16].iter().all(|&x| x == 1));
    assert!(out[16..16 + (1 << 15)].iter().all(|&x| x == 9));
    assert!(out[16 + (1 << 15)..].iter().all(|&x| x == 0));
    // f's error comes back; a failed queue reports its error first, without calling f.
    let e = q
        .map_host(&view, &mut |_| Err(Error::invalid_argument("refused by f")))
        .unwrap_err();
    assert!(e.message().contains("refused by f"), "{e}");
    let failing = device
        .compile(&KernelSource::Host(HostKernel::new("fails", |_| {
            Err(Error::launch_failed("index 9 out of range 0..4"))
        })))
        .unwrap();
    q.launch(&failing, LaunchDims::linear(1), &[]).unwrap();
    let mut called = false;
    let e = q
        .map_host(&view, &mut |_| {
            called = true;
            Ok(())
        })
        .unwrap_err();
    assert!(
        e.message().contains("index 9 out of range") && !called,
        "{e}"
    );
    // Memory of another device is refused.
    let other = anyaccel_cpu::CpuDevice::new(1).unwrap().alloc(4).unwrap();
    let e = q.map_host(&other.whole(), &mut |_| Ok(())).unwrap_err();
    assert!(e.message().contains("cpu:1"), "{e}");
}
