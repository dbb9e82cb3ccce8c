//! Devices of different kinds in one process: tensors copied between every pair of devices
//! (`Tensor::to`, `Tensor::copy_to`), queues waiting on other devices' events, and the
//! collectives of `DeviceGroup` over all of them at once. The devices are the CPU, OpenCL
//! (PoCL), Vulkan (lavapipe) and the C reference vendor plugin, each when available (and
//! required when `ANYACCEL_REQUIRE` names it). Every value is read back and compared with a
//! host reference.

mod every_device;

use std::sync::Arc;

use anyaccel::hal::testing::collective::{self, encode, pattern, reference};
use anyaccel::hal::transfer::CHUNK_BYTES;
use every_device::devices;

use anyaccel::hal::{DType, Device, DeviceGroup, ErrorCode, Queue, ReduceOp, Tensor, TensorDesc};

fn queue(d: &Arc<dyn Device>) -> Arc<dyn Queue> {
    d.create_queue().expect("a queue")
}

/// A contiguous tensor of `dtype` on `q`'s device holding `values`.
fn tensor(q: &dyn Queue, dtype: DType, shape: &[usize], values: &[f64]) -> Tensor {
    collective::tensor(q, dtype, shape, values).expect("allocate and write")
}

#[test]
fn tensors_copy_between_every_pair_of_devices() {
    let devices = devices();
    // Just over two staging chunks, and not a whole number of them.
    let big = (2 * CHUNK_BYTES + CHUNK_BYTES / 4 + 12) / 4;
    for a in &devices {
        for b in &devices {
            let (qa, qb) = (queue(a), queue(b));
            let pair = format!("{} -> {}", a.info().id, b.info().id);

            // Contiguous, staged in chunks between devices.
            let values = pattern(big, 1);
            let src = tensor(&*qa, DType::F32, &[big], &values);
            let dst = src.to(&*qa, &*qb).expect(&pair);
            assert_eq!(dst.device_id(), b.info().id);
            assert_eq!(
                dst.to_bytes(&*qb).unwrap(),
                encode(DType::F32, &values),
                "{pair}"
            );

            // A strided view (a transpose of an f16 matrix at an offset) into a contiguous
            // tensor: the copy is in row-major order of the view.
            let (m, n) = (37, 53);
            let whole = tensor(&*qa, DType::F16, &[m * n + 5], &pattern(m * n + 5, 2));
            let desc = TensorDesc {
                dtype: DType::F16,
                shape: vec![n, m],
                strides: vec![1, n],
                offset: 5,
            };
            let view = whole.with_desc(desc).unwrap();
            let moved = view.to(&*qa, &*qb).expect(&pair);
            let p = pattern(m * n + 5, 2);
            let want: Vec<f64> = (0..n)
                .flat_map(|j| (0..m).map(move |i| (i, j)))
                .map(|(i, j)| p[5 + i * n + j])
                .collect();
            assert_eq!(
                moved.to_bytes(&*qb).unwrap(),
                encode(DType::F16, &want),
                "{pair}"
            );

            // Into an existing tensor that later work on the destination queue reads, and
            // empty tensors.
            let into = Tensor::empty(&**b, DType::I64, &[3, 4]).unwrap();
            let src = tensor(&*qa, DType::I64, &[3, 4], &pattern(12, 3));
            src.copy_to(&*qa, &into, &*qb).expect(&pair);
            assert_eq!(
                into.to_bytes(&*qb).unwrap(),
                encode(DType::I64, &pattern(12, 3))
            );
            let empty = tensor(&*qa, DType::BF16, &[0, 4], &[]);
            assert_eq!(empty.to(&*qa, &*qb).unwrap().shape(), &[0, 4]);
        }
    }
}

#[test]
fn copy_to_refuses_what_it_cannot_do() {
    let devices = devices();
    let a = &devices[0];
    let b = devices.last().unwrap();
    let (qa, qb) = (queue(a), queue(b));
    let src = tensor(&*qa, DType::F32, &[4, 6], &pattern(24, 0));
    let err = |r: anyaccel::hal::Result<()>| r.expect_err("refused");

    if a.info().id != b.info().id {
        let e = src.to(&*qb, &*qa).expect_err("a queue of another device");
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(
            e.message()
                .contains("expected a queue of the tensor's device"),
            "{e}"
        );
    }
    let wrong_shape = Tensor::empty(&**b, DType::F32, &[6, 4]).unwrap();
    let e = err(src.copy_to(&*qa, &wrong_shape, &*qb));
    assert!(
        e.message().contains("expected the same dtype and shape"),
        "{e}"
    );
    let wrong_dtype = Tensor::empty(&**b, DType::I32, &[4, 6]).unwrap();
    let e = err(src.copy_to(&*qa, &wrong_dtype, &*qb));
    assert!(
        e.message()
            .contains("f32 4x6 but the destination is i32 4x6"),
        "{e}"
    );
    let strided = Tensor::empty(&**b, DType::F32, &[6, 4])
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    let e = err(src.copy_to(&*qa, &strided, &*qb));
    assert!(e.message().contains("expected a contiguous tensor"), "{e}");
    let e = err(src.copy_to(&*qa, &src, &*qa));
    assert!(e.message().contains("share memory"), "{e}");
    // Nothing was written by a refused copy.
    assert_eq!(
        src.to_bytes(&*qa).unwrap(),
        encode(DType::F32, &pattern(24, 0))
    );
}

#[test]
fn a_queue_waits_on_events_of_every_other_device() {
    let devices = devices();
    for a in &devices {
        for b in &devices {
            let (qa, qb) = (queue(a), queue(b));
            let buf = a.alloc(32 << 20).unwrap();
            qa.fill(&buf.whole(), &[7]).unwrap();
            let done_on_a = qa.record_event().unwrap();
            // Returns at once; b's later commands run after a's fill.
            qb.wait_event(&done_on_a).unwrap();
            let after_on_b = qb.record_event().unwrap();
            after_on_b.wait().unwrap();
            assert!(
                done_on_a.is_done(),
                "{} waited on {}: its later event completed first",
                b.info().id,
                a.info().id
            );
        }
    }
}

#[test]
fn collectives_over_every_device_at_once() {
    let devices = devices();
    // Two queues of the first device too: a rank per queue, whatever the devices.
    let mut queues: Vec<Arc<dyn Queue>> = devices.iter().map(queue).collect();
    queues.push(queue(&devices[0]));
    let group = DeviceGroup::new(queues.clone()).unwrap();
    let n = group.size();
    let floats = [DType::F32, DType::F16, DType::BF16, DType::F64];
    let ints = [DType::I32, DType::I64];

    for dtype in floats.iter().chain(&ints).copied() {
        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean] {
            if op == ReduceOp::Mean && ints.contains(&dtype) {
                continue;
            }
            let len = 1000;
            let inputs: Vec<Vec<f64>> = (0..n).map(|r| pattern(len, r)).collect();
            let tensors: Vec<Tensor> = queues
                .iter()
                .zip(&inputs)
                .map(|(q, v)| tensor(&**q, dtype, &[10, 100], v))
                .collect();
            group.all_reduce(&tensors, op).unwrap();
            let want = encode(dtype, &reference(op, &inputs));
            for (r, (t, q)) in tensors.iter().zip(&queues).enumerate() {
                let got = t.to_bytes(&**q).unwrap();
                assert_eq!(got, want, "all_reduce {} {dtype} on rank {r}", op.name());
            }
        }
    }

    // Over several staging chunks.
    let len = CHUNK_BYTES / 4 * 2 + 3;
    let inputs: Vec<Vec<f64>> = (0..n).map(|r| pattern(len, r)).collect();
    let tensors: Vec<Tensor> = queues
        .iter()
        .zip(&inputs)
        .map(|(q, v)| tensor(&**q, DType::F32, &[len], v))
        .collect();
    group.all_reduce(&tensors, ReduceOp::Sum).unwrap();
    let want = encode(DType::F32, &reference(ReduceOp::Sum, &inputs));
    for (t, q) in tensors.iter().zip(&queues) {
        assert!(t.to_bytes(&**q).unwrap() == want, "all_reduce over chunks");
    }

    // all_gather: every rank gets the inputs in rank order.
    let ins: Vec<Tensor> = queues
        .iter()
        .enumerate()
        .map(|(r, q)| tensor(&**q, DType::I64, &[2, 3], &pattern(6, r)))
        .collect();
    let outs: Vec<Tensor> = queues
        .iter()
        .map(|q| Tensor::empty(&*q.device(), DType::I64, &[n, 2, 3]).unwrap())
        .collect();
    group.all_gather(&ins, &outs).unwrap();
    let want: Vec<f64> = (0..n).flat_map(|r| pattern(6, r)).collect();
    for (o, q) in outs.iter().zip(&queues) {
        assert_eq!(o.to_bytes(&**q).unwrap(), encode(DType::I64, &want));
    }

    // reduce_scatter: rank r gets part r of the sum.
    let part = 7;
    let inputs: Vec<Vec<f64>> = (0..n).map(|r| pattern(n * part, r + 3)).collect();
    let ins: Vec<Tensor> = queues
        .iter()
        .zip(&inputs)
        .map(|(q, v)| tensor(&**q, DType::BF16, &[n * part], v))
        .collect();
    let outs: Vec<Tensor> = queues
        .iter()
        .map(|q| Tensor::empty(&*q.device(), DType::BF16, &[part]).unwrap())
        .collect();
    group.reduce_scatter(&ins, &outs, ReduceOp::Max).unwrap();
    let max = reference(ReduceOp::Max, &inputs);
    for (r, (o, q)) in outs.iter().zip(&queues).enumerate() {
        let want = encode(DType::BF16, &max[r * part..(r + 1) * part]);
        assert_eq!(o.to_bytes(&**q).unwrap(), want, "reduce_scatter rank {r}");
    }

    // broadcast from the last rank, then a barrier.
    let ts: Vec<Tensor> = queues
        .iter()
        .enumerate()
        .map(|(r, q)| {
            tensor(
                &**q,
                DType::U8,
                &[5],
                &pattern(5, r).iter().map(|v| v + 8.0).collect::<Vec<_>>(),
            )
        })
        .collect();
    group.broadcast(&ts, n - 1).unwrap();
    group.barrier().unwrap();
    let want: Vec<f64> = pattern(5, n - 1).iter().map(|v| v + 8.0).collect();
    for (t, q) in ts.iter().zip(&queues) {
        assert_eq!(t.to_bytes(&**q).unwrap(), encode(DType::U8, &want));
    }
}

#[test]
fn collectives_refuse_bad_groups_and_operands() {
    let devices = devices();
    let queues: Vec<Arc<dyn Queue>> = devices.iter().map(queue).collect();
    let group = DeviceGroup::new(queues.clone()).unwrap();
    let n = group.size();
    assert!(DeviceGroup::new(Vec::new()).is_err());
    let ts: Vec<Tensor> = queues
        .iter()
        .map(|q| tensor(&**q, DType::I32, &[4], &pattern(4, 0)))
        .collect();

    let e = group.all_reduce(&ts[..n - 1], ReduceOp::Sum).unwrap_err();
    assert!(e.message().contains("expected one per rank"), "{e}");
    let e = group.all_reduce(&ts, ReduceOp::Mean).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unsupported, "{e}");
    let e = group.broadcast(&ts, n).unwrap_err();
    assert!(e.message().contains("is not a rank"), "{e}");
    if n > 1 {
        let mut swapped = ts.clone();
        swapped.swap(0, 1);
        if swapped[0].device_id() != ts[0].device_id() {
            let e = group.all_reduce(&swapped, ReduceOp::Sum).unwrap_err();
            assert!(
                e.message()
                    .contains("expected each tensor on its rank's device"),
                "{e}"
            );
        }
        let mut other = ts.clone();
        other[1] = tensor(&*queues[1], DType::I32, &[5], &pattern(5, 0));
        let e = group.all_reduce(&other, ReduceOp::Sum).unwrap_err();
        assert!(e.message().contains("expected one dtype and shape"), "{e}");
        let outs: Vec<Tensor> = queues
            .iter()
            .map(|q| Tensor::empty(&*q.device(), DType::I32, &[4]).unwrap())
            .collect();
        let e = group.all_gather(&ts, &outs).unwrap_err();
        assert!(
            e.message().contains(&format!("with {} elements", 4 * n)),
            "{e}"
        );
    }
    // Nothing changed.
    for (t, q) in ts.iter().zip(&queues) {
        assert_eq!(
            t.to_bytes(&**q).unwrap(),
            encode(DType::I32, &pattern(4, 0))
        );
    }
}
