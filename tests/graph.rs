//! Recorded op graphs (`anyaccel::ops::Graph`) on every device here: a capture of a small
//! network's forward and backward calls (new outputs, views of outputs, writes into given
//! tensors, an op made of other ops) replayed with new inputs gives, bit for bit, what the
//! same calls give eagerly on those inputs; both replay forms agree; bad bindings fail with
//! errors that name what was wrong.

mod every_device;

use anyaccel::hal::{AttrValue, DType, ErrorCode, Queue, Tensor};
use anyaccel::ops::{self, Graph};
use every_device::devices;

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32 ^ seed.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b);
            ((h >> 8) % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn tensor(q: &dyn Queue, shape: &[usize], seed: u32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_slice(q, &values(n, seed), shape).unwrap()
}

/// The calls to capture: a linear layer, an activation, softmax, a loss-like reduction, a
/// transposed view of an output fed to a matmul (a weight gradient), a copy into a given
/// tensor and a `softmax_backward` (an op made of other ops).
fn network(
    q: &dyn Queue,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    into: &Tensor,
) -> anyaccel::Result<Vec<Tensor>> {
    let h = ops::matmul(q, x, w, Some(b))?;
    let a = ops::gelu(q, &h, ops::GeluApproximation::Tanh)?;
    let s = ops::softmax(q, &a, -1)?;
    let loss = ops::mean(q, &s, &[1], false)?;
    let axis = [("axis".to_string(), AttrValue::Int(-1))];
    let ds = ops::call(q, "softmax_backward", &[Some(&a), Some(&s)], &axis)?.remove(0);
    let dw = ops::matmul(q, &x.transpose(0, 1)?, &ds, None)?;
    ops::copy_into(q, &dw.transpose(0, 1)?, into)?;
    // Attention reads a transposed key through a copy of its own (a call inside a call).
    let heads = s.reshape(&[1, 6, 7])?;
    let key = ops::copy(q, &heads)?.reshape(&[1, 7, 6])?.transpose(1, 2)?;
    let att = ops::attention(q, &heads, &key, &heads, true, None)?;
    Ok(vec![s, loss, dw, att])
}

#[test]
fn a_replay_gives_the_eager_results_for_new_inputs_on_every_device() {
    for device in devices() {
        let id = device.info().id.clone();
        let q = device.create_queue().unwrap();
        let q = &*q;
        let (x, w, b) = (
            tensor(q, &[6, 5], 1),
            tensor(q, &[5, 7], 2),
            tensor(q, &[7], 3),
        );
        let into = Tensor::empty(&*device, DType::F32, &[7, 5]).unwrap();
        let (captured, graph) = Graph::capture(q, || network(q, &x, &w, &b, &into)).expect(&id);
        let captured = captured.expect(&id);
        assert_eq!(
            graph.ops().collect::<Vec<_>>(),
            [
                "matmul",
                "gelu",
                "softmax",
                "mean",
                "softmax_backward",
                "matmul",
                "copy",
                "copy",
                "attention"
            ],
            "{id}: the outermost calls, in order"
        );
        // x, w, b and the tensor written into.
        assert_eq!(graph.inputs().len(), 4, "{id}");

        // New values for x and b, w as captured; the copy goes to a new tensor.
        let (x2, b2) = (tensor(q, &[6, 5], 11), tensor(q, &[7], 13));
        let into2 = Tensor::empty(&*device, DType::F32, &[7, 5]).unwrap();
        let into_eager = Tensor::empty(&*device, DType::F32, &[7, 5]).unwrap();
        let eager = network(q, &x2, &w, &b2, &into_eager).unwrap();
        for fast in [true, false] {
            let bindings = [(&x, &x2), (&b, &b2), (&into, &into2)];
            let replay = if fast {
                graph.replay(q, &bindings)
            } else {
                graph.replay_eager(q, &bindings)
            }
            .expect(&id);
            for (c, e) in captured.iter().zip(&eager) {
                let r = replay.get(c).unwrap();
                assert_eq!(r.shape(), e.shape(), "{id}");
                assert_eq!(
                    r.to_bytes(q).unwrap(),
                    e.to_bytes(q).unwrap(),
                    "{id}: fast replay {fast}"
                );
            }
            assert_eq!(
                into2.to_bytes(q).unwrap(),
                into_eager.to_bytes(q).unwrap(),
                "{id}: the write into a bound tensor"
            );
            assert!(replay
                .get(&into)
                .unwrap()
                .view()
                .buffer()
                .same_memory(into2.view().buffer()));
        }
        // The capture's own results differ from the replay's (other inputs): the replay
        // really ran on the bindings.
        assert_ne!(
            captured[0].to_bytes(q).unwrap(),
            eager[0].to_bytes(q).unwrap()
        );
        // Without bindings, a replay computes the captured results again.
        let again = graph.replay(q, &[]).unwrap();
        for c in &captured {
            assert_eq!(
                again.get(c).unwrap().to_bytes(q).unwrap(),
                c.to_bytes(q).unwrap(),
                "{id}"
            );
        }
    }
}

#[test]
fn bad_bindings_and_nested_captures_fail_clearly() {
    let device = devices().remove(0);
    let q = device.create_queue().unwrap();
    let q = &*q;
    let x = tensor(q, &[4, 3], 1);
    let (y, graph) = Graph::capture(q, || ops::relu(q, &x)).unwrap();
    let y = y.unwrap();

    // A binding of another layout.
    let wide = tensor(q, &[3, 4], 2);
    let e = graph.replay(q, &[(&x, &wide)]).err().unwrap();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(e.message().contains("expected the captured layout"), "{e}");
    // A transposed view has the shape but not the strides.
    let t = tensor(q, &[3, 4], 3).transpose(0, 1).unwrap();
    let e = graph.replay(q, &[(&x, &t)]).err().unwrap();
    assert!(e.message().contains("strides"), "{e}");
    // A tensor that is no input of the graph.
    let e = graph.replay(q, &[(&y, &x)]).err().unwrap();
    assert!(e.message().contains("not an input of the graph"), "{e}");
    // `get` of a tensor the capture never saw.
    let replay = graph.replay(q, &[]).unwrap();
    assert!(replay.get(&wide).is_err());
    // A binding on another device.
    if let Some(other) = devices().into_iter().nth(1) {
        let q2 = other.create_queue().unwrap();
        let x2 = tensor(&*q2, &[4, 3], 4);
        let e = graph.replay(q, &[(&x, &x2)]).err().unwrap();
        assert!(e.message().contains("is on device"), "{e}");
        let e = graph.replay(&*q2, &[]).err().unwrap();
        assert!(e.message().contains("captured on"), "{e}");
    }

    // A binding that makes a write's output alias its input.
    let out = Tensor::empty(&*device, DType::F32, &[4, 3]).unwrap();
    let ((), g) = Graph::capture(q, || ops::relu_into(q, &x, &out).unwrap()).unwrap();
    let e = g.replay(q, &[(&out, &x)]).err().unwrap();
    assert!(e.message().contains("overlaps input"), "{e}");

    // A binding that moves a buffer's views by 4 bytes: its f32 view stays aligned, its f64
    // view would not.
    let contiguous = |dtype: DType, n: usize| anyaccel::hal::TensorDesc::contiguous(dtype, &[n]);
    let buf = device.alloc(16).unwrap();
    let f32s = Tensor::new(buf.view(0, 16).unwrap(), contiguous(DType::F32, 4)).unwrap();
    let f64s = Tensor::new(buf.view(0, 16).unwrap(), contiguous(DType::F64, 2)).unwrap();
    q.write(&buf.whole(), &[0u8; 16]).unwrap();
    let (_, g) = Graph::capture(q, || {
        (ops::copy(q, &f32s).unwrap(), ops::copy(q, &f64s).unwrap())
    })
    .unwrap();
    let wider = device.alloc(20).unwrap();
    let moved = Tensor::new(wider.view(4, 16).unwrap(), contiguous(DType::F32, 4)).unwrap();
    let e = g.replay(q, &[(&f32s, &moved)]).err().unwrap();
    assert!(e.message().contains("not a multiple of its 8-byte"), "{e}");

    // Nested captures; a failed call is not recorded; a panic ends the capture.
    let (inner, outer) = Graph::capture(q, || {
        let nested = Graph::capture(q, || ()).err().unwrap();
        assert!(ops::add(q, &x, &wide).is_err());
        nested
    })
    .unwrap();
    assert!(inner.message().contains("already capturing"), "{inner}");
    assert!(outer.is_empty());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Graph::capture(q, || panic!("inside")).ok();
    }));
    assert!(caught.is_err());
    let (_, after) = Graph::capture(q, || ops::relu(q, &x)).unwrap();
    assert_eq!(after.len(), 1);
    // Calls on another queue are not recorded.
    let other = device.create_queue().unwrap();
    let (_, g) = Graph::capture(q, || ops::relu(&*other, &x)).unwrap();
    assert!(g.is_empty());
}
