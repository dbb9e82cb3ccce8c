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
    // Step time, the two backends alternating: rounds of 20 steps each, 5 rounds.
    let (mut ours_s, mut theirs_s) = (0.0, 0.0);
    for round in 0..5 {
        let t = std::time::Instant::now();
        cnn::train::<Autodiff<Anyaccel>>(&device, 20, round);
        ours_s += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        cnn::train::<Autodiff<Flex>>(&Default::default(), 20, round);
        theirs_s += t.elapsed().as_secs_f64();
    }
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
        "step time (100 steps, alternating): anyaccel {:.2} ms, burn-flex {:.2} ms, ratio {:.2}x",
        ours_s * 10.0,
        theirs_s * 10.0,
        theirs_s / ours_s
    );
    println!(
        "integration overhead ({} anyaccel op calls a step, 100 steps each, alternating): through Burn {:.3} ms, the same calls through anyaccel::ops {:.3} ms (ratio {:.2}x), replayed as a graph {:.3} ms",
        overhead.calls,
        overhead.burn_s * 10.0,
        overhead.eager_s * 10.0,
        overhead.burn_s / overhead.eager_s,
        overhead.replay_s * 10.0
    );
}

struct Overhead {
    calls: usize,
    burn_s: f64,
    eager_s: f64,
    replay_s: f64,
}

/// One training step captured as a graph of anyaccel op calls, then rounds of 20 steps through
/// Burn, 20 replays of the captured calls through `anyaccel::ops::call` (validation included)
/// and 20 fast replays, alternating, 5 rounds. Every step and replay ends in a synchronization
/// (the step reads its loss, a replay finishes the queue). Not replayed: the step's host
/// uploads of the batch (9 KiB) and of any new scalar.
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
    let (mut burn_s, mut eager_s, mut replay_s) = (0.0, 0.0, 0.0);
    for _ in 0..5 {
        let batches: Vec<_> = (0..20).map(|_| cnn::batch(&mut rng)).collect();
        let t = std::time::Instant::now();
        for (x, y) in batches {
            model.train_step(x, y, 0.01, device);
        }
        burn_s += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for _ in 0..20 {
            drop(graph.replay_eager(&*queue, &[]).expect("replay"));
            queue.finish().expect("finish");
        }
        eager_s += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for _ in 0..20 {
            drop(graph.replay(&*queue, &[]).expect("replay"));
            queue.finish().expect("finish");
        }
        replay_s += t.elapsed().as_secs_f64();
    }
    Overhead {
        calls: graph.len(),
        burn_s,
        eager_s,
        replay_s,
    }
}
