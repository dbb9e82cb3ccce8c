//! Trains a small CNN (conv2d, batch norm, max pool, group norm, linear, cross-entropy, Adam)
//! with Burn's autodiff on an anyaccel device, beside Burn's own CPU backend on the same data
//! and weights, and prints both loss curves.
//!
//! `cargo run --release -p anyaccel-burn --example train_cnn -- [device] [steps]`
//! (default `cpu:0`, 300 steps).

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
}
