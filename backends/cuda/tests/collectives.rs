//! A `DeviceGroup` of CUDA queues: with NCCL (`libnccl.so.2`) it runs its collectives in NCCL,
//! one rank a GPU, and the results equal the host path's within NCCL's precision (the same bits
//! for the collectives that only move data); with a GPU twice, or without NCCL, it stages
//! through the host. Without an NVIDIA GPU every test says that it skipped, unless
//! `ANYACCEL_REQUIRE` names `cuda`. `scripts/gpu-check` runs it on a GPU machine.

use std::sync::Arc;

use anyaccel_cuda::CudaBackend;
use anyaccel_hal::testing::collective::{encode, pattern, reference, tensor};
use anyaccel_hal::{Backend, DType, Device, DeviceGroup, Queue, ReduceOp, Tensor};

/// f32 or f64 bytes as values.
fn floats(dtype: DType, bytes: &[u8]) -> Vec<f64> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        _ => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect(),
    }
}

fn cuda() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&CudaBackend)
}

#[test]
fn a_group_of_cuda_queues_uses_nccl_when_it_is_there() {
    let Some(d) = cuda() else { return };
    // One rank a GPU: every GPU of the machine once.
    let devices = CudaBackend.probe().expect("the CUDA devices");
    let queues: Vec<Arc<dyn Queue>> = devices.iter().map(|d| d.create_queue().unwrap()).collect();
    let g = DeviceGroup::new(queues.clone()).unwrap();
    let nccl = d.collectives().is_some();
    assert_eq!(g.library(), nccl.then_some("nccl"), "NCCL present: {nccl}");
    let n = queues.len();
    let inputs: Vec<Vec<f64>> = (0..n).map(|r| pattern(4096, r)).collect();
    for dtype in [DType::F32, DType::F64, DType::I32, DType::I64] {
        let ts: Vec<Tensor> = queues
            .iter()
            .zip(&inputs)
            .map(|(q, v)| tensor(&**q, dtype, &[4096], v).unwrap())
            .collect();
        g.all_reduce(&ts, ReduceOp::Max).unwrap();
        // Max is exact in any order: the same bits as the host path.
        let want = encode(dtype, &reference(ReduceOp::Max, &inputs));
        for (t, q) in ts.iter().zip(&queues) {
            assert_eq!(t.to_bytes(&**q).unwrap(), want, "all_reduce max {dtype}");
        }
        let ts: Vec<Tensor> = queues
            .iter()
            .zip(&inputs)
            .map(|(q, v)| tensor(&**q, dtype, &[4096], v).unwrap())
            .collect();
        g.all_reduce(&ts, ReduceOp::Sum).unwrap();
        let want = reference(ReduceOp::Sum, &inputs);
        for (t, q) in ts.iter().zip(&queues) {
            let got = t.to_bytes(&**q).unwrap();
            let exact = encode(dtype, &want);
            if dtype.is_float() {
                // NCCL sums in the dtype's precision: within a few units in the last place.
                let (g, w) = (floats(dtype, &got), floats(dtype, &exact));
                for (a, b) in g.iter().zip(&w) {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{dtype}: {a} vs {b}"
                    );
                }
            } else {
                assert_eq!(got, exact, "all_reduce sum {dtype}");
            }
        }
    }
    let ts: Vec<Tensor> = queues
        .iter()
        .zip(&inputs)
        .map(|(q, v)| tensor(&**q, DType::U8, &[4096], v).unwrap())
        .collect();
    g.broadcast(&ts, n - 1).unwrap();
    let root = encode(DType::U8, &inputs[n - 1]);
    for (t, q) in ts.iter().zip(&queues) {
        assert_eq!(t.to_bytes(&**q).unwrap(), root);
    }
    // One GPU twice: NCCL takes one rank a GPU, so the host path.
    let twice =
        DeviceGroup::new(vec![d.create_queue().unwrap(), d.create_queue().unwrap()]).unwrap();
    assert_eq!(twice.library(), None);
}

#[test]
fn tensors_move_between_gpus_over_peer_access_where_there_is_one() {
    let Some(_) = cuda() else { return };
    let devices = CudaBackend.probe().expect("the CUDA devices");
    if devices.len() < 2 {
        eprintln!("skipped: one GPU, no peer to copy to");
        return;
    }
    let (a, b) = (
        devices[0].create_queue().unwrap(),
        devices[1].create_queue().unwrap(),
    );
    let path = anyaccel_hal::transfer::Path::between(&*a, &*b);
    let values: Vec<f32> = (0..1 << 20).map(|i| i as f32 * 0.25).collect();
    let x = Tensor::from_slice(&*a, &values, &[1 << 20]).unwrap();
    let y = x.to(&*a, &*b).unwrap();
    assert_eq!(y.to_vec::<f32>(&*b).unwrap(), values, "path {path:?}");
    if devices[1].copies_from(&*devices[0]) {
        assert_eq!(path, anyaccel_hal::transfer::Path::Peer);
    }
}
