//! Training through Burn's autodiff on anyaccel: the CNN of tests/train/cnn.rs on each device
//! gives the same loss curve as on Burn's own CPU backend (same data, same initial weights),
//! and the loss falls.

use anyaccel_burn::Anyaccel;
use burn_autodiff::Autodiff;
use burn_flex::Flex;

mod common;

#[path = "train/cnn.rs"]
#[allow(dead_code)]
mod cnn;

const STEPS: usize = 80;

#[test]
fn cnn_loss_curve_matches_burn_flex_on_every_device() {
    let reference = cnn::train::<Autodiff<Flex>>(&Default::default(), STEPS, 7);
    let first = reference[..5].iter().sum::<f32>() / 5.0;
    let last = reference[STEPS - 5..].iter().sum::<f32>() / 5.0;
    assert!(
        last < 0.5 * first,
        "the loss does not fall: {first} -> {last}"
    );
    for (id, device) in common::devices() {
        let ours = cnn::train::<Autodiff<Anyaccel>>(&device, STEPS, 7);
        for (k, (a, b)) in ours.iter().zip(&reference).enumerate() {
            // f32 sums in another order drift apart slowly over the steps.
            let tol = 1e-3 + 2e-3 * b.abs();
            assert!(
                (a - b).abs() <= tol,
                "{id}: step {k}: loss {a}, burn-flex {b}"
            );
        }
    }
}
