//! Tuned matmul parameters (`anyaccel::ops::tune`) on OpenCL (PoCL) and Vulkan (lavapipe):
//! every candidate tile shape gives the f64 reference's result on products whose edges are not
//! multiples of any tile (batched, broadcast, transposed, with a bias); a first large product
//! on a device with no cache entry runs a search and writes the cache file; a corrupt file, a
//! stale entry and parameters that are no candidate are ignored with the defaults used.
//!
//! The cache-file test sets `ANYACCEL_CACHE_DIR` and `ANYACCEL_TUNE_SIZE` for its own process
//! (nextest runs every test in a process of its own).

use std::sync::Arc;

use anyaccel::hal::testing::device_or_skip;
use anyaccel::hal::{Device, Queue, Tensor};
use anyaccel::ops::{self, tune};

/// The devices whose matmul runs a tunable kernel.
fn devices() -> Vec<Arc<dyn Device>> {
    let mut devices = Vec::new();
    devices.extend(device_or_skip(&anyaccel::opencl::OpenClBackend));
    devices.extend(device_or_skip(&anyaccel::vulkan::VulkanBackend));
    devices
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32 ^ seed.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b);
            ((h >> 8) % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// `a [batch, m, k] x b [k, n]` (b read through a transposed view of `[n, k]`) plus a bias
/// row, in f64.
fn reference(
    a: &[f32],
    bt: &[f32],
    bias: &[f32],
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; batch * m * n];
    for p in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut s = f64::from(bias[j]);
                for t in 0..k {
                    s += f64::from(a[(p * m + i) * k + t]) * f64::from(bt[j * k + t]);
                }
                out[(p * m + i) * n + j] = s;
            }
        }
    }
    out
}

fn check_product(
    q: &dyn Queue,
    index: usize,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
) -> &'static tune::Tunable {
    let (av, btv, biasv) = (values(batch * m * k, 1), values(n * k, 2), values(n, 3));
    let a = Tensor::from_slice(q, &av, &[batch, m, k]).unwrap();
    let bt = Tensor::from_slice(q, &btv, &[n, k]).unwrap();
    let bias = Tensor::from_slice(q, &biasv, &[n]).unwrap();
    let b = bt.transpose(0, 1).unwrap();
    let (out, kernel) =
        tune::with_candidate(Some(index), || ops::matmul(q, &a, &b, Some(&bias)).unwrap());
    let kernel = kernel.expect("the product launched a tunable kernel");
    let got = out.to_vec::<f32>(q).unwrap();
    let want = reference(&av, &btv, &biasv, batch, m, n, k);
    for (e, (g, w)) in got.iter().zip(&want).enumerate() {
        // f32 accumulation of k products of values in [-1, 1].
        let tol = 1e-6 * (k as f64 + 1.0) * 4.0;
        assert!(
            (f64::from(*g) - w).abs() <= tol,
            "{} candidate {index}: {batch}x{m}x{n}x{k} element {e}: {g}, expected {w}",
            kernel.name
        );
    }
    kernel
}

#[test]
fn every_candidate_computes_the_product() {
    for d in devices() {
        let q = d.create_queue().unwrap();
        // Learn which kernel the device runs, then how many candidates it has here.
        let kernel = check_product(&*q, 0, 1, 65, 66, 3);
        let count = (kernel.candidates)(&*d).len();
        assert!(count >= 4, "{}: {count} candidates", kernel.name);
        assert!((kernel.candidates)(&*d).contains(&(kernel.default)(&*d)));
        for i in 0..count {
            // Edges that are no multiple of any tile, a tail of k past every unrolled step.
            check_product(&*q, i, 2, 67, 131, 45);
            check_product(&*q, i, 1, 130, 70, 9);
        }
    }
}

#[test]
fn the_first_large_product_tunes_and_the_cache_is_checked() {
    let dir = std::env::temp_dir().join(format!("anyaccel-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("ANYACCEL_CACHE_DIR", &dir);
    std::env::set_var("ANYACCEL_TUNE_SIZE", "128");
    std::env::set_var("ANYACCEL_TUNE", "auto");
    let file = dir.join("tune.json");
    assert_eq!(tune::cache_file().as_deref(), Some(file.as_path()));
    for d in devices() {
        let q = d.create_queue().unwrap();
        // Below the work of a search: nothing is written.
        let small = Tensor::from_slice(&*q, &values(128 * 128, 4), &[128, 128]).unwrap();
        ops::matmul(&*q, &small, &small, None).unwrap();
        q.finish().unwrap();
        let before = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(!before.contains(&d.info().name), "{before}");
        // 256^3: a search on first use, then the product with the best tiles.
        let x = Tensor::from_slice(&*q, &values(256 * 256, 5), &[256, 256]).unwrap();
        let y = ops::matmul(&*q, &x, &x, None)
            .unwrap()
            .to_vec::<f32>(&*q)
            .unwrap();
        let xv = values(256 * 256, 5);
        for (i, j) in [(0, 0), (17, 200), (255, 255)] {
            let want: f64 = (0..256)
                .map(|t| f64::from(xv[i * 256 + t]) * f64::from(xv[t * 256 + j]))
                .sum();
            assert!((f64::from(y[i * 256 + j]) - want).abs() < 1e-3, "{i},{j}");
        }
        let (entries, warnings) = tune::parse(&std::fs::read_to_string(&file).unwrap());
        assert!(warnings.is_empty(), "{warnings:?}");
        let e = entries
            .iter()
            .find(|e| e.device == d.info().name && e.backend == d.info().backend)
            .unwrap_or_else(|| panic!("no entry for {} in {entries:?}", d.info().id));
        assert_eq!(e.size, 128);
        assert!(e.gflops > 0.0);
        let (_, kernel) = tune::with_candidate(None, || ops::matmul(&*q, &x, &x, None).unwrap());
        let kernel = kernel.unwrap();
        assert_eq!(e.kernel, kernel.name);
        assert_eq!(e.version, kernel.version());
        assert!(tune::reject(e, &*d, kernel).is_none());

        // A stale entry (another kernel version) and parameters that are no candidate are
        // rejected, each with a reason.
        let mut stale = e.clone();
        stale.version = "0000000000000000".into();
        let why = tune::reject(&stale, &*d, kernel).unwrap();
        assert!(why.contains("kernel version 0000000000000000"), "{why}");
        let mut odd = e.clone();
        odd.params = vec![3, 5, 7, 11, 13];
        let why = tune::reject(&odd, &*d, kernel).unwrap();
        assert!(why.contains("not a candidate"), "{why}");
    }
    // A file that does not parse is set aside when the next result is written, and the other
    // entries of a file survive a store.
    if file.exists() {
        let (entries, _) = tune::parse(&std::fs::read_to_string(&file).unwrap());
        std::fs::write(&file, "{ not json").unwrap();
        let mut e = entries[0].clone();
        e.device = "another device".into();
        tune::store(&e).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("tune.json.corrupt")).unwrap(),
            "{ not json"
        );
        let (now, warnings) = tune::parse(&std::fs::read_to_string(&file).unwrap());
        assert!(warnings.is_empty());
        assert_eq!(now, vec![e.clone()]);
        let mut f = e.clone();
        f.device = "a third device".into();
        tune::store(&f).unwrap();
        assert_eq!(
            tune::parse(&std::fs::read_to_string(&file).unwrap()).0,
            vec![e, f]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
