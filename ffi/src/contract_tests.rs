//! Tests of the C contract through the exported functions: out-parameters are cleared on every
//! failure, and event timing refuses events that share no clock.

use std::ffi::{c_char, CStr};
use std::ptr::null_mut;

use crate::*;

/// A value no call hands out: an out-parameter must not keep it after a failed call.
fn sentinel<T>() -> *mut T {
    std::ptr::without_provenance_mut(0x5a5a_5a00)
}

fn last_message() -> String {
    // SAFETY: the library's NUL-terminated string, never NULL.
    unsafe { CStr::from_ptr(anyaccel_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[track_caller]
fn expect_fail(what: &str, status: anyaccel_status, want: anyaccel_status, needle: &str) {
    let msg = last_message();
    assert_eq!(
        status, want,
        "{what}: status {status}, expected {want}; message: {msg}"
    );
    assert!(
        msg.contains(needle),
        "{what}: message `{msg}` lacks `{needle}`"
    );
}

#[track_caller]
fn ok(what: &str, status: anyaccel_status) {
    assert_eq!(status, ANYACCEL_OK, "{what}: {}", last_message());
}

/// A cpu runtime, its device, a queue and an f32 [2, 3] tensor of zeros.
struct Fixture {
    rt: *mut anyaccel_runtime_t,
    dev: *mut anyaccel_device_t,
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
}

impl Fixture {
    fn new() -> Fixture {
        let mut f = Fixture {
            rt: null_mut(),
            dev: null_mut(),
            q: null_mut(),
            x: null_mut(),
        };
        // SAFETY: valid strings and out-pointers.
        unsafe {
            ok(
                "runtime",
                anyaccel_runtime_create_with_backends(c"cpu".as_ptr(), &mut f.rt),
            );
            ok(
                "device",
                anyaccel_runtime_find_device(f.rt, c"cpu:0".as_ptr(), &mut f.dev),
            );
            ok("queue", anyaccel_queue_create(f.dev, &mut f.q));
            let shape = [2i64, 3];
            ok(
                "tensor",
                anyaccel_tensor_alloc(f.dev, ANYACCEL_DTYPE_F32, shape.as_ptr(), 2, &mut f.x),
            );
        }
        f
    }

    fn event(&self, q: *mut anyaccel_queue_t) -> *mut anyaccel_event_t {
        let mut e = null_mut();
        // SAFETY: valid out-pointer.
        unsafe {
            ok("record_event", anyaccel_queue_record_event(q, &mut e));
            ok("event_wait", anyaccel_event_wait(e));
        }
        e
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: handles of this fixture.
        unsafe {
            anyaccel_tensor_destroy(self.x);
            anyaccel_queue_destroy(self.q);
            anyaccel_runtime_destroy(self.rt);
        }
    }
}

const INVALID: anyaccel_status = ANYACCEL_ERROR_INVALID_ARGUMENT;

#[test]
fn typed_wrappers_clear_out_when_an_argument_is_bad() {
    let f = Fixture::new();
    let (q, x) = (f.q, f.x);
    type Reduce = unsafe extern "C" fn(
        *mut anyaccel_queue_t,
        *mut anyaccel_tensor_t,
        *const i64,
        usize,
        i32,
        *mut *mut anyaccel_tensor_t,
    ) -> anyaccel_status;
    let reductions: [(&str, Reduce); 3] = [
        ("anyaccel_sum", anyaccel_sum),
        ("anyaccel_mean", anyaccel_mean),
        ("anyaccel_argmax", anyaccel_argmax),
    ];
    for (name, reduce) in reductions {
        let mut out = sentinel();
        // SAFETY: `axes` is NULL (refused: its length is 2); `out` is valid.
        let status = unsafe { reduce(q, x, std::ptr::null(), 2, 0, &mut out) };
        expect_fail(
            name,
            status,
            INVALID,
            "argument `axes` is NULL but its length is 2",
        );
        assert!(
            out.is_null(),
            "{name}: out kept {out:?} after a failed call"
        );
    }

    let mut out = sentinel();
    // SAFETY: valid handles and out-pointer; 99 is no dtype.
    let status = unsafe { anyaccel_cast(q, x, 99, &mut out) };
    expect_fail("anyaccel_cast", status, INVALID, "argument `dtype` is 99");
    assert!(out.is_null(), "anyaccel_cast: out kept {out:?}");

    let mut out = sentinel();
    // SAFETY: as above; 7 is neither form.
    let status = unsafe { anyaccel_gelu(q, x, 7, &mut out) };
    expect_fail(
        "anyaccel_gelu",
        status,
        INVALID,
        "argument `approximate_tanh` is 7",
    );
    assert!(out.is_null(), "anyaccel_gelu: out kept {out:?}");

    let mut out = sentinel();
    // SAFETY: as above; axis 5 of a 2-d tensor is refused by the op.
    let status = unsafe { anyaccel_softmax(q, x, 5, &mut out) };
    assert_ne!(status, ANYACCEL_OK);
    assert!(out.is_null(), "anyaccel_softmax: out kept {out:?}");
}

#[test]
fn every_typed_wrapper_clears_out_on_a_null_queue() {
    let f = Fixture::new();
    let x = f.x;
    let n: *mut anyaccel_queue_t = null_mut();
    let t: *mut anyaccel_tensor_t = null_mut();
    let axes = [0i64];
    type Call = Box<dyn Fn(*mut *mut anyaccel_tensor_t) -> anyaccel_status>;
    // SAFETY: every call gets a NULL queue (refused) and a valid out-pointer.
    let calls: Vec<(&str, Call)> = unsafe {
        vec![
            ("add", Box::new(move |o| anyaccel_add(n, x, x, o))),
            ("sub", Box::new(move |o| anyaccel_sub(n, x, x, o))),
            ("mul", Box::new(move |o| anyaccel_mul(n, x, x, o))),
            ("div", Box::new(move |o| anyaccel_div(n, x, x, o))),
            ("maximum", Box::new(move |o| anyaccel_maximum(n, x, x, o))),
            ("minimum", Box::new(move |o| anyaccel_minimum(n, x, x, o))),
            ("neg", Box::new(move |o| anyaccel_neg(n, x, o))),
            ("abs", Box::new(move |o| anyaccel_abs(n, x, o))),
            ("exp", Box::new(move |o| anyaccel_exp(n, x, o))),
            ("log", Box::new(move |o| anyaccel_log(n, x, o))),
            ("sqrt", Box::new(move |o| anyaccel_sqrt(n, x, o))),
            ("relu", Box::new(move |o| anyaccel_relu(n, x, o))),
            ("sigmoid", Box::new(move |o| anyaccel_sigmoid(n, x, o))),
            ("tanh", Box::new(move |o| anyaccel_tanh(n, x, o))),
            ("silu", Box::new(move |o| anyaccel_silu(n, x, o))),
            ("copy", Box::new(move |o| anyaccel_copy(n, x, o))),
            ("matmul", Box::new(move |o| anyaccel_matmul(n, x, x, t, o))),
            ("softmax", Box::new(move |o| anyaccel_softmax(n, x, -1, o))),
            (
                "log_softmax",
                Box::new(move |o| anyaccel_log_softmax(n, x, -1, o)),
            ),
            (
                "layer_norm",
                Box::new(move |o| anyaccel_layer_norm(n, x, t, t, 1e-5, o)),
            ),
            (
                "rms_norm",
                Box::new(move |o| anyaccel_rms_norm(n, x, t, 1e-5, o)),
            ),
            ("gelu", Box::new(move |o| anyaccel_gelu(n, x, 0, o))),
            (
                "sum",
                Box::new(move |o| anyaccel_sum(n, x, axes.as_ptr(), 1, 0, o)),
            ),
            (
                "mean",
                Box::new(move |o| anyaccel_mean(n, x, axes.as_ptr(), 1, 0, o)),
            ),
            (
                "argmax",
                Box::new(move |o| anyaccel_argmax(n, x, axes.as_ptr(), 1, 0, o)),
            ),
            (
                "cast",
                Box::new(move |o| anyaccel_cast(n, x, ANYACCEL_DTYPE_I32, o)),
            ),
        ]
    };
    for (name, call) in calls {
        let mut out = sentinel();
        expect_fail(name, call(&mut out), INVALID, "argument `queue` is NULL");
        assert!(out.is_null(), "{name}: out kept {out:?}");
        // A NULL out-pointer is refused by name.
        expect_fail(name, call(null_mut()), INVALID, "argument `out` is NULL");
    }
}

#[test]
fn runtime_and_event_functions_clear_their_out_parameters() {
    let f = Fixture::new();
    // SAFETY: valid out-pointers and strings throughout; the failing argument is named.
    unsafe {
        let mut rt = sentinel();
        let status = anyaccel_runtime_create_with_backends(c"no_such_backend".as_ptr(), &mut rt);
        expect_fail("create_with_backends", status, INVALID, "no_such_backend");
        assert!(rt.is_null());

        let mut dev = sentinel();
        let status = anyaccel_runtime_device(f.rt, 999, &mut dev);
        expect_fail(
            "runtime_device",
            status,
            ANYACCEL_ERROR_OUT_OF_BOUNDS,
            "index 999",
        );
        assert!(dev.is_null());

        let mut dev = sentinel();
        let status = anyaccel_runtime_find_device(f.rt, c"cpu:7".as_ptr(), &mut dev);
        assert_ne!(status, ANYACCEL_OK);
        assert!(dev.is_null());

        let mut count = 77usize;
        expect_fail(
            "backend_count",
            anyaccel_runtime_backend_count(null_mut(), &mut count),
            INVALID,
            "argument `runtime` is NULL",
        );
        assert_eq!(count, 0);
        let mut count = 77usize;
        let status = anyaccel_runtime_device_count(null_mut(), &mut count);
        expect_fail("device_count", status, INVALID, "runtime");
        assert_eq!(count, 0);

        let mut yes = 77i32;
        let status = anyaccel_device_supports_dtype(f.dev, 99, &mut yes);
        expect_fail("supports_dtype", status, INVALID, "argument `dtype` is 99");
        assert_eq!(yes, 0);

        let mut n = 77usize;
        let status = anyaccel_op_output_count(c"no_such_op".as_ptr(), &mut n);
        expect_fail("op_output_count", status, INVALID, "no_such_op");
        assert_eq!(n, 0);

        let mut q = sentinel();
        let status = anyaccel_queue_create(null_mut(), &mut q);
        expect_fail("queue_create", status, INVALID, "argument `device` is NULL");
        assert!(q.is_null());

        let mut b = sentinel();
        let status = anyaccel_buffer_alloc(null_mut(), 16, &mut b);
        expect_fail("buffer_alloc", status, INVALID, "argument `device` is NULL");
        assert!(b.is_null());

        let mut size = 77usize;
        let status = anyaccel_buffer_size(null_mut(), &mut size);
        expect_fail("buffer_size", status, INVALID, "argument `buffer` is NULL");
        assert_eq!(size, 0);

        let mut e = sentinel();
        let status = anyaccel_queue_record_event(null_mut(), &mut e);
        expect_fail("record_event", status, INVALID, "argument `queue` is NULL");
        assert!(e.is_null());

        let mut done = 77i32;
        let status = anyaccel_event_query(null_mut(), &mut done);
        expect_fail("event_query", status, INVALID, "argument `event` is NULL");
        assert_eq!(done, 0);
        let status = anyaccel_event_query(null_mut(), null_mut());
        expect_fail("event_query", status, INVALID, "argument `done` is NULL");

        let mut ms = 77.0f64;
        let status = anyaccel_event_elapsed_ms(null_mut(), null_mut(), &mut ms);
        expect_fail("elapsed_ms", status, INVALID, "argument `start` is NULL");
        assert_eq!(ms, 0.0);
    }
}

#[test]
fn info_structs_are_cleared_on_failure() {
    let f = Fixture::new();
    let junk: *const c_char = sentinel::<c_char>();
    // SAFETY: the structs are valid and their struct_size is set.
    unsafe {
        let mut info = anyaccel_backend_info_t {
            struct_size: std::mem::size_of::<anyaccel_backend_info_t>(),
            name: junk,
            available: 77,
            device_count: 77,
            reason: junk,
        };
        let status = anyaccel_runtime_backend_info(f.rt, 999, &mut info);
        expect_fail(
            "backend_info",
            status,
            ANYACCEL_ERROR_OUT_OF_BOUNDS,
            "index 999",
        );
        assert!(info.name.is_null() && info.reason.is_null());
        assert_eq!((info.available, info.device_count), (0, 0));
        assert_eq!(
            info.struct_size,
            std::mem::size_of::<anyaccel_backend_info_t>()
        );

        let mut info = anyaccel_device_info_t {
            struct_size: std::mem::size_of::<anyaccel_device_info_t>(),
            id: junk,
            backend: junk,
            name: junk,
            vendor: junk,
            driver_version: junk,
            memory_bytes: 77,
            max_buffer_bytes: 77,
            max_work_group_size: 77,
            compute_units: 77,
            timestamps: 77,
        };
        let status = anyaccel_device_info(null_mut(), &mut info);
        expect_fail("device_info", status, INVALID, "argument `device` is NULL");
        assert!(info.id.is_null() && info.name.is_null() && info.driver_version.is_null());
        assert_eq!(
            (info.memory_bytes, info.compute_units, info.timestamps),
            (0, 0, 0)
        );

        // A struct_size too small is refused and nothing past it is written.
        let mut small = [7usize; 2];
        small[0] = 8;
        let status = anyaccel_device_info(f.dev, small.as_mut_ptr() as *mut anyaccel_device_info_t);
        expect_fail("device_info", status, INVALID, "struct_size is 8");
        assert_eq!(small, [8, 7]);

        // And a good call fills it.
        let status = anyaccel_device_info(f.dev, &mut info);
        ok("device_info", status);
        assert_eq!(CStr::from_ptr(info.id).to_str().unwrap(), "cpu:0");
    }
}

#[test]
fn elapsed_between_events_of_two_runtimes_is_refused() {
    let a = Fixture::new();
    let b = Fixture::new();
    let (start, end) = (a.event(a.q), b.event(b.q));
    let mut ms = 77.0;
    // SAFETY: valid handles and out-pointer.
    let status = unsafe { anyaccel_event_elapsed_ms(start, end, &mut ms) };
    expect_fail(
        "elapsed across runtimes",
        status,
        INVALID,
        "event `start` is of device cpu:0 of one runtime and event `end` of device cpu:0 of another runtime",
    );
    assert_eq!(ms, 0.0);
    // SAFETY: handles of this test.
    unsafe {
        ok("destroy", anyaccel_event_destroy(start));
        ok("destroy", anyaccel_event_destroy(end));
    }
}

#[test]
fn elapsed_between_queues_of_one_device_is_measured() {
    let f = Fixture::new();
    let mut q2 = null_mut();
    // SAFETY: valid handles and out-pointers.
    unsafe {
        ok("queue", anyaccel_queue_create(f.dev, &mut q2));
        let (start, end) = (f.event(f.q), f.event(q2));
        let mut ms = -1.0;
        ok("elapsed", anyaccel_event_elapsed_ms(start, end, &mut ms));
        assert!((0.0..60_000.0).contains(&ms), "{ms}");
        // The same event twice: zero.
        ok("elapsed", anyaccel_event_elapsed_ms(start, start, &mut ms));
        assert_eq!(ms, 0.0);
        ok("destroy", anyaccel_event_destroy(start));
        ok("destroy", anyaccel_event_destroy(end));
        ok("destroy", anyaccel_queue_destroy(q2));
    }
}

/// Every op of the catalog is reachable through the C ABI's generic call: its output count is
/// known, and a call with no inputs reaches the op's own validation (which names the op), not
/// an unknown-op error.
#[test]
fn every_catalog_op_has_a_c_abi_entry() {
    let f = Fixture::new();
    for def in facade::ops::CATALOG.iter() {
        let name = std::ffi::CString::new(def.name).unwrap();
        let mut count = usize::MAX;
        // SAFETY: a NUL-terminated name and a valid out-pointer.
        ok(def.name, unsafe {
            anyaccel_op_output_count(name.as_ptr(), &mut count)
        });
        assert_eq!(count, def.outputs.len(), "{}", def.name);
        let mut outs = [null_mut(); 2];
        // SAFETY: no inputs or attributes; room for two outputs.
        let status = unsafe {
            anyaccel_op(
                f.q,
                name.as_ptr(),
                std::ptr::null(),
                0,
                std::ptr::null(),
                0,
                outs.as_mut_ptr(),
                outs.len(),
            )
        };
        let msg = last_message();
        if def.required_inputs() > 0 || def.is_variadic() {
            assert_eq!(
                status, ANYACCEL_ERROR_INVALID_ARGUMENT,
                "{}: {msg}",
                def.name
            );
            assert!(msg.contains(def.name), "{}: {msg}", def.name);
            assert!(!msg.contains("not an op"), "{}: {msg}", def.name);
        }
        for o in outs.iter().filter(|o| !o.is_null()) {
            // SAFETY: a tensor the call returned.
            unsafe { anyaccel_tensor_destroy(*o) };
        }
    }
}

#[test]
fn tensors_copy_between_queues_and_runtimes() {
    let a = Fixture::new();
    let b = Fixture::new();
    let values = [1.0f32, -2.0, 3.5, 4.0, 0.25, -6.0];
    let mut q2 = null_mut();
    let mut moved = null_mut();
    let mut back = [0f32; 6];
    // SAFETY: valid handles, buffers of the sizes given, and out-pointers.
    unsafe {
        ok(
            "write",
            anyaccel_tensor_write(a.q, a.x, values.as_ptr().cast(), 24),
        );
        ok("queue", anyaccel_queue_create(a.dev, &mut q2));
        ok("to", anyaccel_tensor_to(a.q, a.x, q2, &mut moved));
        ok(
            "read",
            anyaccel_tensor_read(q2, moved, back.as_mut_ptr().cast(), 24),
        );
        assert_eq!(back, values);

        // Into another runtime's cpu:0, through the host.
        ok("copy_to", anyaccel_tensor_copy_to(a.q, a.x, b.q, b.x));
        back = [0f32; 6];
        ok(
            "read",
            anyaccel_tensor_read(b.q, b.x, back.as_mut_ptr().cast(), 24),
        );
        assert_eq!(back, values);
        // A destination that is not of the `to` queue's device, and a NULL queue.
        let status = anyaccel_tensor_copy_to(a.q, a.x, b.q, moved);
        expect_fail(
            "dst of another runtime",
            status,
            INVALID,
            "objects of two runtimes",
        );
        let mut out = sentinel();
        let status = anyaccel_tensor_to(a.q, a.x, null_mut(), &mut out);
        expect_fail("NULL to", status, INVALID, "to");
        assert!(out.is_null());
        ok("copy_to", anyaccel_tensor_copy_to(a.q, a.x, q2, moved));
        ok("destroy", anyaccel_tensor_destroy(moved));
        ok("destroy", anyaccel_queue_destroy(q2));
    }
}
