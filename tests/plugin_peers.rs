//! Two devices of one vendor plugin (the reference plugin with `ANYACCEL_REF_DEVICES=0,0`):
//! tensors move between them over the plugin's own path (`copy_peer`, plugin ABI 1.1), not
//! through host memory, in both directions, ordered against both queues. Its own test binary:
//! the plugin reads the variable once a process.

#[path = "../backends/plugin/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use anyaccel::hal::transfer::Path;
use anyaccel::hal::{Backend, Device, ErrorCode, Tensor};

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
    assert_eq!(Path::between(&*a, &*cpu), Path::Staged);

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
    let dst = Tensor::empty(&*d[1], anyaccel::DType::F32, &[3]).unwrap();
    let e = b.copy_peer(x.view(), dst.view()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unsupported, "{e}");
}
