use anyaccel_burn::{Anyaccel, AnyaccelDevice};
use burn_autodiff::Autodiff;
#[path = "../tests/train/cnn.rs"]
mod cnn;
#[path = "../tests/common/mod.rs"]
mod common;
fn main() {
    let device = AnyaccelDevice::open("cpu:0").unwrap();
    cnn::train::<Autodiff<Anyaccel>>(&device, 20, 1);
    let t = std::time::Instant::now();
    cnn::train::<Autodiff<Anyaccel>>(&device, 300, 1);
    eprintln!("step {:.3} ms", t.elapsed().as_secs_f64() / 300.0 * 1e3);
}
