//! The shared HAL suite on the CPU backend, and CPU-specific queue behaviour.

use std::sync::Arc;

use anyaccel_cpu::CpuBackend;
use anyaccel_hal::{
    Device, Error, ErrorCode, HostArg, HostKernel, KernelArg, KernelSource, LaunchDims,
};

fn cpu() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&CpuBackend)
}

anyaccel_hal::hal_test_suite!(cpu);

#[test]
fn launch_is_asynchronous_and_errors_stick() {
    let device = cpu().unwrap();
    let q = device.create_queue().unwrap();
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = gate.clone();
    let slow = device
        .compile(&KernelSource::Host(HostKernel::new("gate", move |_| {
            g.wait();
            Ok(())
        })))
        .unwrap();
    // If launch waited for the kernel, this would deadlock: the kernel waits for this thread.
    q.launch(&slow, LaunchDims::linear(1), &[]).unwrap();
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
