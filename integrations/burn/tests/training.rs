//! Training through Burn's autodiff on anyaccel: the CNN of tests/train/cnn.rs on each device
//! gives the same loss curve as on Burn's own CPU backend (same data, same initial weights),
//! and the loss falls.

use anyaccel_burn::{Anyaccel, AnyaccelDevice};
use burn_autodiff::Autodiff;
use burn_flex::Flex;

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
    let plugin = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/plugin-c/build/libanyaccel_ref.so"
    );
    let mut ids = vec!["cpu:0", "opencl:0", "vulkan:0"];
    if std::path::Path::new(plugin).exists() {
        // Loading twice in one process (another test) is refused; the first load stands.
        let _ = AnyaccelDevice::load_plugin(plugin);
        ids.push("plugin:ref:0");
    }
    let required = std::env::var("ANYACCEL_REQUIRE").unwrap_or_default();
    for id in ids {
        let device = match AnyaccelDevice::open(id) {
            Ok(d) => d,
            Err(e)
                if !required
                    .split(',')
                    .any(|r| id.split(':').next() == Some(r.trim())) =>
            {
                eprintln!("skipping {id}: {e}");
                continue;
            }
            Err(e) => panic!("device {id} is not available: {e}"),
        };
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
