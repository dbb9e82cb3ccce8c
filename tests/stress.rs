//! Many threads, many devices, at once: 8 threads each run 10,000 mixed operations
//! (elementwise ops with broadcasting, reductions, matmul, ops on strided views, and plain
//! transfers: writes, copies, fills and reads) spread over the CPU, OpenCL, Vulkan and the C
//! reference vendor plugin, all devices busy together. Every result is read back and compared
//! exactly with a host reference (the inputs are small integers, so every result is exact in
//! f32), and each device's live-allocation count is back where it started at the end.
//!
//! `ANYACCEL_STRESS_OPS` sets the operations per thread (default 10,000) and
//! `ANYACCEL_STRESS_THREADS` the threads (default 8). OpenCL and Vulkan take part when they are
//! available, and must be when `ANYACCEL_REQUIRE` names them.

#[path = "../backends/plugin/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use anyaccel::hal::testing::device_or_skip;
use anyaccel::hal::{to_bytes, Device, Queue, Tensor};
use anyaccel::ops;

/// A small, seeded generator (xorshift64*): the same seed gives the same operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// `n` integers in -8..=8, as f32.
    fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.range(0, 16) as f32 - 8.0).collect()
    }
}

/// The host reference of a row-major `[m, n]` matrix given as a function of (row, column).
fn matrix(m: usize, n: usize, f: impl Fn(usize, usize) -> f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            out.push(f(i, j) as f32);
        }
    }
    out
}

fn read(q: &dyn Queue, t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>(q).expect("read the result back")
}

/// One random operation on `q`, checked against the host. Returns what it did, for the
/// message of a failure.
fn one_op(q: &dyn Queue, rng: &mut Rng) -> Result<(), String> {
    let m = rng.range(1, 9);
    let n = rng.range(1, 9);
    match rng.range(0, 5) {
        // Elementwise with broadcasting: [m, n] op [n] or [m, 1].
        0 => {
            let a = rng.values(m * n);
            let by_row = rng.range(0, 1) == 0;
            let (b_shape, b) = if by_row {
                (vec![n], rng.values(n))
            } else {
                (vec![m, 1], rng.values(m))
            };
            let ta = Tensor::from_slice(q, &a, &[m, n]).map_err(|e| e.to_string())?;
            let tb = Tensor::from_slice(q, &b, &b_shape).map_err(|e| e.to_string())?;
            let which = rng.range(0, 3);
            let out = match which {
                0 => ops::add(q, &ta, &tb),
                1 => ops::sub(q, &ta, &tb),
                2 => ops::mul(q, &ta, &tb),
                _ => ops::maximum(q, &ta, &tb),
            }
            .map_err(|e| format!("elementwise {which}: {e}"))?;
            let want = matrix(m, n, |i, j| {
                let x = a[i * n + j] as f64;
                let y = if by_row { b[j] } else { b[i] } as f64;
                match which {
                    0 => x + y,
                    1 => x - y,
                    2 => x * y,
                    _ => x.max(y),
                }
            });
            check("elementwise", &[m, n], out.shape(), &want, &read(q, &out))
        }
        // Reductions over one axis.
        1 => {
            let a = rng.values(m * n);
            let ta = Tensor::from_slice(q, &a, &[m, n]).map_err(|e| e.to_string())?;
            let axis = rng.range(0, 1);
            let is_sum = rng.range(0, 1) == 0;
            let out = if is_sum {
                ops::sum(q, &ta, &[axis as i64], false)
            } else {
                ops::max(q, &ta, &[axis as i64], false)
            }
            .map_err(|e| format!("reduction: {e}"))?;
            let (len, other) = if axis == 0 { (n, m) } else { (m, n) };
            let want: Vec<f32> = (0..len)
                .map(|k| {
                    let items = (0..other).map(|r| {
                        let (i, j) = if axis == 0 { (r, k) } else { (k, r) };
                        a[i * n + j] as f64
                    });
                    if is_sum {
                        items.sum::<f64>() as f32
                    } else {
                        items.fold(f64::NEG_INFINITY, f64::max) as f32
                    }
                })
                .collect();
            check("reduction", &[len], out.shape(), &want, &read(q, &out))
        }
        // Matmul [m, k] x [k, n].
        2 => {
            let k = rng.range(1, 16);
            let a = rng.values(m * k);
            let b = rng.values(k * n);
            let ta = Tensor::from_slice(q, &a, &[m, k]).map_err(|e| e.to_string())?;
            let tb = Tensor::from_slice(q, &b, &[k, n]).map_err(|e| e.to_string())?;
            let out = ops::matmul(q, &ta, &tb, None).map_err(|e| format!("matmul: {e}"))?;
            let want = matrix(m, n, |i, j| {
                (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum()
            });
            check("matmul", &[m, n], out.shape(), &want, &read(q, &out))
        }
        // An op on a strided view: a transposed, narrowed window of a larger tensor.
        3 => {
            let rows = m + 2;
            let cols = n + 3;
            let a = rng.values(rows * cols);
            let start = rng.range(0, 2);
            let ta = Tensor::from_slice(q, &a, &[rows, cols]).map_err(|e| e.to_string())?;
            let view = ta
                .narrow(0, 1, m)
                .and_then(|t| t.narrow(1, start, n))
                .and_then(|t| t.transpose(0, 1))
                .map_err(|e| format!("view: {e}"))?;
            let out = ops::neg(q, &view).map_err(|e| format!("neg of a view: {e}"))?;
            let want = matrix(n, m, |i, j| -(a[(j + 1) * cols + start + i] as f64));
            check("view", &[n, m], out.shape(), &want, &read(q, &out))
        }
        // Transfers: write, copy into a window of another buffer, fill a window, read back.
        _ => {
            let len = m * n;
            let a = rng.values(len);
            let device = q.device();
            let src = device.alloc(len * 4).map_err(|e| e.to_string())?;
            let dst = device.alloc((len + 8) * 4).map_err(|e| e.to_string())?;
            let src = src.whole();
            let dst = dst.whole();
            q.write(&src, &to_bytes(&a)).map_err(|e| e.to_string())?;
            let fill = rng.values(1)[0];
            q.fill(&dst, &fill.to_ne_bytes())
                .map_err(|e| e.to_string())?;
            let at = rng.range(0, 8);
            let window = dst.sub(at * 4, len * 4).map_err(|e| e.to_string())?;
            q.copy(&src, &window).map_err(|e| e.to_string())?;
            let mut bytes = vec![0u8; (len + 8) * 4];
            q.read(&dst, &mut bytes).map_err(|e| e.to_string())?;
            let got: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let want: Vec<f32> = (0..len + 8)
                .map(|i| {
                    if (at..at + len).contains(&i) {
                        a[i - at]
                    } else {
                        fill
                    }
                })
                .collect();
            check("transfer", &[len + 8], &[len + 8], &want, &got)
        }
    }
}

fn check(
    what: &str,
    want_shape: &[usize],
    shape: &[usize],
    want: &[f32],
    got: &[f32],
) -> Result<(), String> {
    if shape != want_shape {
        return Err(format!("{what}: shape {shape:?}, expected {want_shape:?}"));
    }
    // Exact equality (the results are small integers; the sign of a zero is not compared).
    if want != got {
        return Err(format!("{what}: got {got:?}, expected {want:?}"));
    }
    Ok(())
}

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} is `{v}`: expected a whole number")),
        Err(_) => default,
    }
}

#[test]
fn eight_threads_of_mixed_ops_on_every_device_at_once() {
    let ops_per_thread = env_count("ANYACCEL_STRESS_OPS", 10_000);
    let threads = env_count("ANYACCEL_STRESS_THREADS", 8);

    let mut devices: Vec<Arc<dyn Device>> = Vec::new();
    devices.extend(device_or_skip(&anyaccel::cpu::CpuBackend));
    devices.extend(device_or_skip(&anyaccel::opencl::OpenClBackend));
    devices.extend(device_or_skip(&anyaccel::vulkan::VulkanBackend));
    let plugin = anyaccel::plugin::PluginBackend::load(common::reference_plugin());
    devices.push(device_or_skip(&plugin).expect("the reference plugin, built from source, loads"));
    let names: Vec<String> = devices.iter().map(|d| d.info().id.clone()).collect();
    eprintln!("stress: {threads} threads x {ops_per_thread} ops over {names:?}");

    let before: Vec<usize> = devices.iter().map(|d| d.live_allocations()).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let device = devices[t % devices.len()].clone();
                s.spawn(move || {
                    let q = device.create_queue().expect("a queue");
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1000_0001));
                    for i in 0..ops_per_thread {
                        if let Err(e) = one_op(&*q, &mut rng) {
                            panic!("thread {t} on {}, op {i}: {e}", device.info().id);
                        }
                    }
                    q.finish().expect("finish");
                })
            })
            .collect();
        for h in handles {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    for (d, b) in devices.iter().zip(before) {
        assert_eq!(
            d.live_allocations(),
            b,
            "{}: live allocations {} after the run, {b} before",
            d.info().id,
            d.live_allocations()
        );
    }
}
