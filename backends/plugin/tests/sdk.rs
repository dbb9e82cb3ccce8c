//! A plugin written in Rust with the SDK (`examples/anyaccel_rust_example.rs`, built by
//! `cargo test` as a cdylib) loads through the loader and passes the HAL suite; its native ops
//! run through the op layer.

use std::path::PathBuf;
use std::sync::Arc;

use anyaccel_hal::{Backend, Device, Tensor};
use anyaccel_plugin::PluginBackend;

/// `target/<profile>/examples/libanyaccel_rust_example.so`, next to this test's `deps` folder.
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let lib = profile_dir.join("examples").join(format!(
        "libanyaccel_rust_example.{}",
        anyaccel_plugin::LIBRARY_EXTENSION
    ));
    assert!(
        lib.exists(),
        "{} is missing: `cargo test -p anyaccel-plugin` builds it (or `cargo build -p anyaccel-plugin --examples`)",
        lib.display()
    );
    lib
}

fn device() -> Option<Arc<dyn Device>> {
    let backend = PluginBackend::load(library());
    match backend.probe() {
        Ok(mut devices) if !devices.is_empty() => Some(devices.remove(0)),
        Ok(_) => panic!("the Rust example plugin has no device"),
        Err(u) => panic!("the Rust example plugin does not load: {u}"),
    }
}

anyaccel_hal::hal_test_suite!(device);

#[test]
fn the_rust_plugin_is_named_and_runs_its_native_ops() {
    let d = device().unwrap();
    assert_eq!(d.info().id, "plugin:rustexample:0");
    assert_eq!(
        d.caps().native_ops,
        vec!["add".to_string(), "mul".to_string()]
    );
    let q = d.create_queue().unwrap();
    let a = Tensor::from_slice(&*q, &[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let b = Tensor::from_slice(&*q, &[10.0f32, 100.0], &[2, 1]).unwrap();
    let out = anyaccel_ops::call(&*q, "mul", &[Some(&a), Some(&b)], &[]).unwrap();
    assert_eq!(
        out[0].to_vec::<f32>(&*q).unwrap(),
        vec![10.0, 20.0, 300.0, 400.0]
    );
    // An op it does not offer is Unsupported, naming the op and the device.
    let e = anyaccel_ops::call(&*q, "sub", &[Some(&a), Some(&b)], &[]).unwrap_err();
    assert_eq!(e.code(), anyaccel_hal::ErrorCode::Unsupported);
    assert!(
        e.message().contains("sub") && e.message().contains("plugin:rustexample:0"),
        "{e}"
    );
    // So is `add` on i32, which op_supported declines.
    let i = Tensor::from_slice(&*q, &[1i32, 2], &[2]).unwrap();
    let e = anyaccel_ops::call(&*q, "add", &[Some(&i), Some(&i)], &[]).unwrap_err();
    assert_eq!(e.code(), anyaccel_hal::ErrorCode::Unsupported);
}
