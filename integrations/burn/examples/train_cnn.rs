//! Trains a small CNN (conv2d, batch norm, max pool, group norm, linear, cross-entropy, Adam)
//! with Burn's autodiff on an anyaccel device, beside Burn's own CPU backend on the same data
//! and weights, and prints both loss curves, the step time of both, and the integration's
//! overhead: the step through Burn against the same anyaccel op calls replayed from a capture
//! of one step (`anyaccel::ops::Graph`).
//!
//! `cargo run --release -p anyaccel-burn --example train_cnn -- [device] [steps]`
//! (default `cpu:0`, 300 steps).

use anyaccel::ops::Graph;
use anyaccel_burn::{Anyaccel, AnyaccelDevice};
use burn_autodiff::Autodiff;
use burn_flex::Flex;

#[path = "../tests/train/cnn.rs"]
mod cnn;
#[path = "../tests/common/mod.rs"]
mod common;

/// Untimed steps first, then timed ones, of each timing.
const WARMUP: usize = 20;
const TIMED: usize = 300;

/// The median of `v` (not empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let id = args.next().unwrap_or_else(|| "cpu:0".to_string());
    let steps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(300);
    let device = match AnyaccelDevice::open(&id) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: device {id}: {e}");
            std::process::exit(1);
        }
    };
    let ours = cnn::train::<Autodiff<Anyaccel>>(&device, steps, 7);
    let theirs = cnn::train::<Autodiff<Flex>>(&Default::default(), steps, 7);
    // Step time: one model a backend, their steps alternating one by one on the same batches,
    // each step timed; the medians (this machine's timings spread widely, a mean follows its
    // outliers, and alternating single steps pairs each with one taken under the same load).
    let (mut ours_s, mut theirs_s, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    {
        let mut a = cnn::Cnn::<Autodiff<Anyaccel>>::new(&device, 11);
        let mut b = cnn::Cnn::<Autodiff<Flex>>::new(&Default::default(), 11);
        let mut rng = common::Rng(13);
        for k in 0..WARMUP + TIMED {
            let (x, y) = cnn::batch(&mut rng);
            let t = std::time::Instant::now();
            a.train_step(x.clone(), y.clone(), 0.01, &device);
            let ours = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            b.train_step(x, y, 0.01, &Default::default());
            let theirs = t.elapsed().as_secs_f64();
            if k >= WARMUP {
                ours_s.push(ours);
                theirs_s.push(theirs);
                ratios.push(theirs / ours);
            }
        }
    }
    let (ours_s, theirs_s, ratio) = (median(ours_s), median(theirs_s), median(ratios));
    let overhead = overhead(&device);
    println!("step  anyaccel({id})  burn-flex");
    for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if k % 10 == 0 || k + 1 == steps {
            println!("{k:4}  {a:14.6}  {b:9.6}");
        }
    }
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("largest difference {worst:.2e}");
    println!(
        "step time ({TIMED} steps each, alternating, medians): anyaccel {:.3} ms, \
         burn-flex {:.3} ms, ratio {:.2}x (median of the pairs' ratios)",
        ours_s * 1e3,
        theirs_s * 1e3,
        ratio
    );
    println!(
        "integration overhead ({} anyaccel op calls a step, {TIMED} steps each, \
         alternating, medians): through Burn {:.3} ms, the same calls through anyaccel::ops \
         {:.3} ms (ratio {:.2}x, median of the triples' ratios), replayed as a graph {:.3} ms",
        overhead.calls,
        overhead.burn_s * 1e3,
        overhead.eager_s * 1e3,
        overhead.ratio,
        overhead.replay_s * 1e3
    );
}

struct Overhead {
    calls: usize,
    burn_s: f64,
    eager_s: f64,
    replay_s: f64,
    /// The median of the triples' ratios (through Burn / through `anyaccel::ops`).
    ratio: f64,
}

/// One training step captured as a graph of anyaccel op calls, then, alternating one by one,
/// a step through Burn, a replay of the captured calls through `anyaccel::ops::call` (validation
/// included) and a fast replay, each timed; the medians. Every step and replay ends in a
/// synchronization (the step reads its loss, a replay finishes the queue). Not replayed: the
/// step's host uploads of the batch (9 KiB) and of any new scalar.
fn overhead(device: &AnyaccelDevice) -> Overhead {
    type B = Autodiff<Anyaccel>;
    let queue = device.queue();
    let mut model = cnn::Cnn::<B>::new(device, 3);
    let mut rng = common::Rng(5);
    for _ in 0..5 {
        let (x, y) = cnn::batch(&mut rng);
        model.train_step(x, y, 0.01, device);
    }
    let (x, y) = cnn::batch(&mut rng);
    let (_, graph) =
        Graph::capture(&*queue, || model.train_step(x, y, 0.01, device)).expect("capture one step");
    let (mut burn_s, mut eager_s, mut replay_s, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for k in 0..WARMUP + TIMED {
        let (x, y) = cnn::batch(&mut rng);
        let t = std::time::Instant::now();
        model.train_step(x, y, 0.01, device);
        let burn = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        drop(graph.replay_eager(&*queue, &[]).expect("replay"));
        queue.finish().expect("finish");
        let eager = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        drop(graph.replay(&*queue, &[]).expect("replay"));
        queue.finish().expect("finish");
        let replay = t.elapsed().as_secs_f64();
        if k >= WARMUP {
            burn_s.push(burn);
            eager_s.push(eager);
            replay_s.push(replay);
            ratios.push(burn / eager);
        }
    }
    Overhead {
        calls: graph.len(),
        burn_s: median(burn_s),
        eager_s: median(eager_s),
        replay_s: median(replay_s),
        ratio: median(ratios),
    }
}
