//! Two devices of one vendor plugin (the reference plugin with `ANYACCEL_REF_DEVICES=0,0`), and
//! what plugin ABI 1.1 gives them: tensors move between them over the plugin's own path
//! (`copy_peer`), not through host memory, in both directions, ordered against both queues; a
//! `DeviceGroup` of them runs its collectives in the plugin's collectives table, with the same
//! bits as the host path. Its own test binary: the plugin reads the variable once a process.

#[path = "../backends/plugin/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use anyaccel::hal::testing::collective::{encode, pattern, reference, tensor};
use anyaccel::hal::transfer::Path;
use anyaccel::hal::{
    Backend, DType, Device, DeviceGroup, ErrorCode, FailedEvent, Queue, ReduceOp, Tensor,
};

fn two_devices() -> Vec<Arc<dyn Device>> {
    std::env::set_var("ANYACCEL_REF_DEVICES", "0,0");
    let plugin = anyaccel::plugin::PluginBackend::load(common::reference_plugin());
    let devices = plugin.probe().expect("the reference plugin's devices");
    assert_eq!(
        devices.len(),
        2,
        "ANYACCEL_REF_DEVICES=0,0 gives two devices"
    );
    devices
}

#[test]
fn tensors_move_between_two_devices_of_a_plugin_over_its_peer_path() {
    let d = two_devices();
    let (a, b) = (d[0].create_queue().unwrap(), d[1].create_queue().unwrap());
    assert_eq!(Path::between(&*a, &*b), Path::Peer);
    assert_eq!(Path::between(&*b, &*a), Path::Peer);
    assert_eq!(Path::between(&*a, &*a), Path::Device);
    let cpu = anyaccel::Runtime::new()
        .device("cpu:0")
        .unwrap()
        .create_queue()
        .unwrap();
    assert_eq!(Path::between(&*a, &*cpu), Path::Host);
    assert_eq!(Path::between(&*cpu, &*b), Path::Host);

    let values: Vec<f32> = (0..3000).map(|i| i as f32 * 0.5 - 7.0).collect();
    let x = Tensor::from_slice(&*a, &values, &[30, 100]).unwrap();
    // A view at an offset, there and back.
    let part = x.narrow(0, 10, 12).unwrap();
    let there = part.to(&*a, &*b).unwrap();
    assert_eq!(there.device_id(), "plugin:ref:1");
    let back = there.to(&*b, &*a).unwrap();
    assert_eq!(
        back.to_vec::<f32>(&*a).unwrap(),
        values[1000..2200].to_vec()
    );
    // A strided source (a transposed view) is gathered first: still correct.
    let t = x.transpose(0, 1).unwrap().to(&*a, &*b).unwrap();
    let v = &values;
    let want: Vec<f32> = (0..100)
        .flat_map(|c| (0..30).map(move |r| v[r * 100 + c]))
        .collect();
    assert_eq!(t.to_vec::<f32>(&*b).unwrap(), want);
    // Ordering: a write to the source after the copy does not reach the copy.
    let y = Tensor::from_slice(&*a, &[1i32; 1 << 16], &[1 << 16]).unwrap();
    let dst = Tensor::empty(&*d[1], anyaccel::DType::I32, &[1 << 16]).unwrap();
    y.copy_to(&*a, &dst, &*b).unwrap();
    a.write(y.view(), &anyaccel::hal::to_bytes(&[2i32; 1 << 16]))
        .unwrap();
    assert!(dst.to_vec::<i32>(&*b).unwrap().iter().all(|&v| v == 1));
    assert!(y.to_vec::<i32>(&*a).unwrap().iter().all(|&v| v == 2));
}

#[test]
fn copy_peer_refuses_memory_it_has_no_path_from() {
    let d = two_devices();
    let a = d[0].create_queue().unwrap();
    let dst = Tensor::empty(&*d[0], anyaccel::DType::F32, &[4]).unwrap();
    // From the same device: not a peer.
    let same = Tensor::empty(&*d[0], anyaccel::DType::F32, &[4]).unwrap();
    let e = a.copy_peer(same.view(), dst.view()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(e.message().contains("another device of plugin:ref"), "{e}");
    // From another backend's memory.
    let cpu = anyaccel::Runtime::new().device("cpu:0").unwrap();
    let foreign = Tensor::empty(&*cpu, anyaccel::DType::F32, &[4]).unwrap();
    let e = a.copy_peer(foreign.view(), dst.view()).unwrap_err();
    assert!(e.message().contains("cpu:0"), "{e}");
    // Lengths must match.
    let other = Tensor::empty(&*d[1], anyaccel::DType::F32, &[3]).unwrap();
    let e = a.copy_peer(other.view(), dst.view()).unwrap_err();
    assert!(e.message().contains("equal lengths"), "{e}");
    // The CPU has no peer path at all.
    let q = cpu.create_queue().unwrap();
    let e = q.copy_peer(dst.view(), foreign.view()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unsupported, "{e}");
}

#[test]
fn a_plugin_of_abi_1_0_has_no_peer_path_and_stages() {
    std::env::set_var("ANYACCEL_REF_DEVICES", "0,0");
    // The reference plugin's table, cut to ABI 1.0: its copy_peer lies beyond struct_size.
    let path = common::build_c_with_ref(
        "abi_1_0",
        "#define anyaccel_plugin_get_api ref_table\n\
         #include \"plugin.c\"\n\
         #undef anyaccel_plugin_get_api\n\
         #include <stddef.h>\n\
         static AnyaccelPluginApi old;\n\
         ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t a, uint32_t b) {\n\
             old = *ref_table(a, b);\n\
             old.struct_size = offsetof(AnyaccelPluginApi, copy_peer);\n\
             old.abi_minor = 0;\n\
             old.name = \"old\";\n\
             return &old;\n\
         }\n",
    );
    let plugin = anyaccel::plugin::PluginBackend::load(&path);
    let d = plugin.probe().unwrap_or_else(|u| panic!("{u}"));
    let (a, b) = (d[0].create_queue().unwrap(), d[1].create_queue().unwrap());
    assert_eq!(Path::between(&*a, &*b), Path::Staged);
    let x = Tensor::from_slice(&*a, &[1.5f32, -2.0, 3.25], &[3]).unwrap();
    assert_eq!(
        x.to(&*a, &*b).unwrap().to_vec::<f32>(&*b).unwrap(),
        [1.5, -2.0, 3.25]
    );
    // Over several staging chunks, double-buffered, with a short last one.
    let n = anyaccel::hal::transfer::CHUNK_BYTES / 4 * 5 / 2 + 7;
    let big: Vec<i32> = (0..n as i32).map(|i| i.wrapping_mul(7919)).collect();
    let x2 = Tensor::from_slice(&*a, &big, &[n]).unwrap();
    assert_eq!(x2.to(&*a, &*b).unwrap().to_vec::<i32>(&*b).unwrap(), big);
    let dst = Tensor::empty(&*d[1], anyaccel::DType::F32, &[3]).unwrap();
    let e = b.copy_peer(x.view(), dst.view()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unsupported, "{e}");
}

/// Three ranks: both devices, and the first one again on a second queue.
fn three_ranks(d: &[Arc<dyn Device>]) -> Vec<Arc<dyn Queue>> {
    vec![
        d[0].create_queue().unwrap(),
        d[1].create_queue().unwrap(),
        d[0].create_queue().unwrap(),
    ]
}

#[test]
fn a_group_of_a_plugin_s_devices_runs_collectives_in_the_plugin_with_the_host_s_bits() {
    let d = two_devices();
    let queues = three_ranks(&d);
    let lib = DeviceGroup::new(queues.clone()).unwrap();
    assert_eq!(lib.library(), Some("plugin:ref collectives"));
    let host = DeviceGroup::staged(queues.clone()).unwrap();
    assert_eq!(host.library(), None);
    let n = queues.len();
    let inputs: Vec<Vec<f64>> = (0..n).map(|r| pattern(1000, r)).collect();
    let make = |dtype: DType| -> Vec<Tensor> {
        queues
            .iter()
            .zip(&inputs)
            .map(|(q, v)| tensor(&**q, dtype, &[10, 100], v).unwrap())
            .collect()
    };
    let bytes = |ts: &[Tensor]| -> Vec<Vec<u8>> {
        ts.iter()
            .zip(&queues)
            .map(|(t, q)| t.to_bytes(&**q).unwrap())
            .collect()
    };
    for dtype in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I32,
        DType::I64,
    ] {
        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean] {
            if !dtype.is_float() && op == ReduceOp::Mean {
                continue;
            }
            let (a, b) = (make(dtype), make(dtype));
            lib.all_reduce(&a, op).unwrap();
            host.all_reduce(&b, op).unwrap();
            let (got, want) = (bytes(&a), bytes(&b));
            assert_eq!(
                got,
                want,
                "all_reduce {} {dtype}: library and host differ",
                op.name()
            );
            let exact = encode(dtype, &reference(op, &inputs));
            assert!(
                got.iter().all(|g| g == &exact),
                "all_reduce {} {dtype}",
                op.name()
            );
        }
    }
    // all_gather, reduce_scatter and broadcast.
    let ins = make(DType::I64);
    let outs: Vec<Tensor> = queues
        .iter()
        .map(|q| Tensor::empty(&*q.device(), DType::I64, &[n * 1000]).unwrap())
        .collect();
    lib.all_gather(&ins, &outs).unwrap();
    let all: Vec<f64> = inputs.iter().flatten().copied().collect();
    assert!(bytes(&outs).iter().all(|o| o == &encode(DType::I64, &all)));

    let ins = make(DType::F32);
    let parts: Vec<Tensor> = queues
        .iter()
        .map(|q| Tensor::empty(&*q.device(), DType::F32, &[1000 / n]).unwrap())
        .collect();
    let ins3: Vec<Tensor> = ins
        .iter()
        .map(|t| t.reshape(&[1000]).unwrap().narrow(0, 0, 999).unwrap())
        .collect();
    lib.reduce_scatter(&ins3, &parts, ReduceOp::Sum).unwrap();
    let sum = reference(ReduceOp::Sum, &inputs);
    for (r, p) in bytes(&parts).iter().enumerate() {
        assert_eq!(
            p,
            &encode(DType::F32, &sum[r * 333..(r + 1) * 333]),
            "rank {r}"
        );
    }

    let ts = make(DType::U8);
    lib.broadcast(&ts, 1).unwrap();
    let root = encode(DType::U8, &inputs[1]);
    assert!(bytes(&ts).iter().all(|t| t == &root));
}

#[test]
fn a_failed_queue_refuses_a_plugin_collective_until_it_is_synchronized() {
    let d = two_devices();
    let queues = three_ranks(&d);
    let g = DeviceGroup::new(queues.clone()).unwrap();
    let ts: Vec<Tensor> = queues
        .iter()
        .map(|q| Tensor::from_slice(&**q, &[1.0f32, 2.0], &[2]).unwrap())
        .collect();
    let failed: Arc<dyn anyaccel::hal::Event> = Arc::new(FailedEvent::new(
        anyaccel::Error::out_of_bounds("index 9 of 3"),
    ));
    queues[1].wait_event(&failed).unwrap();
    let e = g.all_reduce(&ts, ReduceOp::Sum).unwrap_err();
    assert!(
        e.message().contains("rank 1's queue") && e.message().contains("index 9 of 3"),
        "{e}"
    );
    assert!(queues[1].finish().is_err(), "the failure is reported once");
    g.all_reduce(&ts, ReduceOp::Sum).unwrap();
    for (t, q) in ts.iter().zip(&queues) {
        assert_eq!(t.to_vec::<f32>(&**q).unwrap(), [3.0, 6.0]);
    }
}

#[test]
fn a_group_with_a_device_of_another_backend_stages_through_the_host() {
    let d = two_devices();
    let cpu = anyaccel::Runtime::new().device("cpu:0").unwrap();
    let g = DeviceGroup::new(vec![
        d[0].create_queue().unwrap(),
        cpu.create_queue().unwrap(),
    ])
    .unwrap();
    assert_eq!(g.library(), None);
    // One queue in two ranks: the library cannot run a rank each on it.
    let q = d[0].create_queue().unwrap();
    let g = DeviceGroup::new(vec![q.clone(), q, d[1].create_queue().unwrap()]).unwrap();
    assert_eq!(g.library(), None);
}

#[test]
fn a_plugin_with_buffer_host_ptr_maps_its_buffers_and_copies_once() {
    let d = two_devices();
    let q = d[0].create_queue().unwrap();
    assert!(
        d[0].host_addressable(),
        "the reference plugin sets buffer_host_ptr"
    );
    let b = d[0].alloc(4096).unwrap();
    let view = b.view(100, 1000).unwrap();
    q.fill(&b.whole(), &[5]).unwrap();
    let mut seen = false;
    assert!(q
        .map_host(&view, &mut |bytes| {
            seen = bytes.len() == 1000 && bytes.iter().all(|&x| x == 5);
            bytes.fill(6);
            Ok(())
        })
        .unwrap());
    assert!(seen, "the map did not see the fill");
    let mut out = vec![0u8; 4096];
    q.read(&b.whole(), &mut out).unwrap();
    assert!(out[..100].iter().all(|&x| x == 5) && out[1100..].iter().all(|&x| x == 5));
    assert!(out[100..1100].iter().all(|&x| x == 6));
    // Between the plugin and a device of another backend: one host copy.
    let cpu = anyaccel::Runtime::new()
        .device("cpu:0")
        .unwrap()
        .create_queue()
        .unwrap();
    assert_eq!(Path::between(&*q, &*cpu), Path::Host);
    let x = Tensor::from_slice(&*cpu, &[1u8, 2, 3, 4, 5], &[5]).unwrap();
    assert_eq!(
        x.to(&*cpu, &*q).unwrap().to_vec::<u8>(&*q).unwrap(),
        [1, 2, 3, 4, 5]
    );
}
