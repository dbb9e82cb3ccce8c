//! What the Burn backend's tests share: a seeded generator and the devices to run on.

#![allow(dead_code)]

use anyaccel_burn::AnyaccelDevice;

/// splitmix64: the same data and weights for every backend.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// The reference plugin's library, when examples/plugin-c is built.
pub fn reference_plugin() -> Option<&'static str> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/plugin-c/build/libanyaccel_ref.so"
    );
    std::path::Path::new(path).exists().then_some(path)
}

/// The devices to run on: `ANYACCEL_BURN_DEVICES` (comma separated), else cpu:0, opencl:0,
/// vulkan:0 and, when it is built, the reference plugin's plugin:ref:0. A device that is not
/// available is skipped, saying so, unless `ANYACCEL_REQUIRE` names its backend.
pub fn devices() -> Vec<(String, AnyaccelDevice)> {
    let plugin = reference_plugin();
    if let Some(p) = plugin {
        static LOAD: std::sync::Once = std::sync::Once::new();
        LOAD.call_once(|| AnyaccelDevice::load_plugin(p).expect("the reference plugin loads"));
    }
    let ids: Vec<String> = match std::env::var("ANYACCEL_BURN_DEVICES") {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        Err(_) => {
            let mut d: Vec<String> = ["cpu:0", "opencl:0", "vulkan:0"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if plugin.is_some() {
                d.push("plugin:ref:0".to_string());
            }
            d
        }
    };
    let required = std::env::var("ANYACCEL_REQUIRE").unwrap_or_default();
    let mut out = Vec::new();
    for id in ids {
        let backend = id.split(':').next().unwrap_or("");
        match AnyaccelDevice::open(&id) {
            Ok(d) => out.push((id, d)),
            Err(e) if !required.split(',').any(|r| r.trim() == backend) => {
                eprintln!("skipping {id}: {e}");
            }
            Err(e) => panic!("device {id} is not available: {e}"),
        }
    }
    out
}
