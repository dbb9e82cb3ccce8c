//! The shared HAL suite on the C reference plugin of `examples/plugin-c`, and ops through its
//! native-op path.

mod common;

use std::sync::Arc;

use anyaccel_hal::{AttrValue, Backend, Device, ErrorCode, Tensor};
use anyaccel_plugin::PluginBackend;

/// A fresh device of the reference plugin (each test counts its own allocations).
fn reference() -> Option<Arc<dyn Device>> {
    let backend = PluginBackend::load(common::reference_plugin());
    match backend.probe() {
        Ok(mut devices) if !devices.is_empty() => Some(devices.remove(0)),
        Ok(_) => panic!("the reference plugin has no device"),
        Err(u) => panic!("the reference plugin does not load: {u}"),
    }
}

anyaccel_hal::hal_test_suite!(reference);

fn attr(name: &str, v: AttrValue) -> (String, AttrValue) {
    (name.to_string(), v)
}

#[test]
fn ops_run_natively_with_broadcasting_and_strides() {
    let d = reference().unwrap();
    let q = d.create_queue().unwrap();
    let a = Tensor::from_slice(&*q, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let b = Tensor::from_slice(&*q, &[10.0f32, 20.0, 30.0], &[3]).unwrap();
    let out = anyaccel_ops::call(&*q, "add", &[Some(&a), Some(&b)], &[]).unwrap();
    assert_eq!(
        out[0].to_vec::<f32>(&*q).unwrap(),
        vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
    );
    // a^T (a transposed view) times a: 3x2 @ 2x3.
    let at = a.transpose(0, 1).unwrap();
    let out = anyaccel_ops::call(&*q, "matmul", &[Some(&at), Some(&a)], &[]).unwrap();
    assert_eq!(
        out[0].to_vec::<f32>(&*q).unwrap(),
        vec![17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0]
    );
    // Reductions with attributes, and an i64 output.
    let s = anyaccel_ops::call(
        &*q,
        "sum",
        &[Some(&a)],
        &[
            attr("axes", AttrValue::Ints(vec![-1])),
            attr("keepdim", AttrValue::Int(1)),
        ],
    )
    .unwrap();
    assert_eq!(s[0].shape(), &[2, 1]);
    assert_eq!(s[0].to_vec::<f32>(&*q).unwrap(), vec![6.0, 15.0]);
    let am = anyaccel_ops::call(&*q, "argmax", &[Some(&a)], &[]).unwrap();
    assert_eq!(am[0].to_vec::<i64>(&*q).unwrap(), vec![5]);
    // bf16 rounding happens once: 1 + 2^-8 + 2^-9 rounds up to 1 + 2^-7.
    let c = anyaccel_ops::call(
        &*q,
        "fill",
        &[],
        &[
            attr("value", AttrValue::Float(1.0 + 1.0 / 256.0 + 1.0 / 512.0)),
            attr("dtype", AttrValue::Str("bf16".into())),
            attr("shape", AttrValue::Ints(vec![2])),
        ],
    )
    .unwrap();
    assert_eq!(
        c[0].to_vec::<anyaccel_hal::bf16>(&*q).unwrap(),
        vec![anyaccel_hal::bf16::from_f32(1.0 + 1.0 / 128.0); 2]
    );
    // Integer division by zero is 0, and i32 wraps.
    let x = Tensor::from_slice(&*q, &[7i32, i32::MIN, 5], &[3]).unwrap();
    let y = Tensor::from_slice(&*q, &[0i32, -1, 2], &[3]).unwrap();
    let r = anyaccel_ops::call(&*q, "div", &[Some(&x), Some(&y)], &[]).unwrap();
    assert_eq!(r[0].to_vec::<i32>(&*q).unwrap(), vec![0, i32::MIN, 2]);
}

#[test]
fn an_op_the_device_does_not_hold_is_unsupported_by_the_call() {
    let d = reference().unwrap();
    let q = d.create_queue().unwrap();
    let a = Tensor::from_slice(&*q, &[1.0f32], &[1]).unwrap();
    // An unknown op is the op layer's InvalidArgument, before the plugin is asked.
    let e = anyaccel_ops::call(&*q, "frobnicate", &[Some(&a)], &[]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    // Kernels: the reference plugin has none.
    let k = anyaccel_hal::KernelSource::OpenClC {
        source: "__kernel void k() {}".into(),
        entry: "k".into(),
        options: String::new(),
    };
    let e = d.compile(&k).err().unwrap();
    assert_eq!(e.code(), ErrorCode::Unsupported);
    assert!(e.message().contains("runs no kernels"), "{e}");
}
