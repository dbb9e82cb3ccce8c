//! Random tensors (anyaccel's counter-based generator: the same bits on every device for one
//! seed) and moves between devices.

use anyaccel_burn::{Anyaccel, AnyaccelDevice};
use burn_backend::ops::{BoolTensorOps, FloatTensorOps, IntTensorOps};
use burn_backend::{Backend, Distribution, Shape, TensorData};
use burn_std::{BoolStore, FloatDType, IntDType};

fn floats(t: <Anyaccel as burn_backend::BackendTypes>::FloatTensorPrimitive) -> Vec<f32> {
    let d: TensorData = burn_backend::read_sync(Anyaccel::float_into_data(t)).unwrap();
    d.try_into_vec::<f32>().unwrap()
}

fn devices() -> Vec<AnyaccelDevice> {
    // The CPU always; the others where this machine has them.
    ["cpu:0", "opencl:0", "vulkan:0"]
        .iter()
        .filter_map(|id| AnyaccelDevice::open(id).ok())
        .collect()
}

/// The random tests reseed and draw from the same devices' streams: one at a time.
static STREAMS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn draws_follow_their_distribution_and_match_across_devices() {
    let _streams = STREAMS.lock().unwrap_or_else(|e| e.into_inner());
    let mut first: Option<Vec<Vec<f32>>> = None;
    for d in devices() {
        Anyaccel::seed(&d, 42);
        let n = 20_000;
        let shape = Shape::from(vec![n]);
        let u = floats(Anyaccel::float_random(
            shape.clone(),
            Distribution::Default,
            &d,
            FloatDType::F32,
        ));
        let r = floats(Anyaccel::float_random(
            shape.clone(),
            Distribution::Uniform(-3.0, 5.0),
            &d,
            FloatDType::F32,
        ));
        let g = floats(Anyaccel::float_random(
            shape.clone(),
            Distribution::Normal(2.0, 0.5),
            &d,
            FloatDType::F32,
        ));
        let b = floats(Anyaccel::float_random(
            shape.clone(),
            Distribution::Bernoulli(0.25),
            &d,
            FloatDType::F32,
        ));
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = |v: &[f32]| {
            let m = mean(v);
            v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64
        };
        assert!(
            u.iter().all(|&x| (0.0..1.0).contains(&x)),
            "{d}: uniform outside [0, 1)"
        );
        assert!(
            (mean(&u) - 0.5).abs() < 0.01,
            "{d}: uniform mean {}",
            mean(&u)
        );
        assert!(
            r.iter().all(|&x| (-3.0..5.0).contains(&x)),
            "{d}: uniform outside [-3, 5)"
        );
        assert!(
            (mean(&r) - 1.0).abs() < 0.08,
            "{d}: uniform(-3, 5) mean {}",
            mean(&r)
        );
        assert!(
            (mean(&g) - 2.0).abs() < 0.02,
            "{d}: normal mean {}",
            mean(&g)
        );
        assert!(
            (var(&g) - 0.25).abs() < 0.02,
            "{d}: normal variance {}",
            var(&g)
        );
        assert!(
            b.iter().all(|&x| x == 0.0 || x == 1.0),
            "{d}: bernoulli not 0/1"
        );
        assert!(
            (mean(&b) - 0.25).abs() < 0.015,
            "{d}: bernoulli mean {}",
            mean(&b)
        );
        // Consecutive calls draw different numbers; reseeding repeats them.
        let again = floats(Anyaccel::float_random(
            shape.clone(),
            Distribution::Default,
            &d,
            FloatDType::F32,
        ));
        assert_ne!(u, again, "{d}: two calls drew the same numbers");
        Anyaccel::seed(&d, 42);
        let reseeded = floats(Anyaccel::float_random(
            shape,
            Distribution::Default,
            &d,
            FloatDType::F32,
        ));
        assert_eq!(u, reseeded, "{d}: reseeding did not repeat the draws");
        let all = vec![u, r, g, b];
        match &first {
            None => first = Some(all),
            Some(f) => assert!(f == &all, "{d}: draws differ from the first device's"),
        }
    }
}

#[test]
fn int_draws_stay_in_their_range() {
    let _streams = STREAMS.lock().unwrap_or_else(|e| e.into_inner());
    let d = AnyaccelDevice::default();
    Anyaccel::seed(&d, 7);
    let t = Anyaccel::int_random(
        Shape::from(vec![10_000]),
        Distribution::Uniform(-4.0, 6.0),
        &d,
        IntDType::I64,
    );
    let v: Vec<i64> = burn_backend::read_sync(Anyaccel::int_into_data(t))
        .unwrap()
        .try_into_vec()
        .unwrap();
    assert!(v.iter().all(|x| (-4..6).contains(x)));
    for k in -4..6 {
        let c = v.iter().filter(|&&x| x == k).count();
        assert!(
            (800..1200).contains(&c),
            "value {k} drawn {c} times of 10000"
        );
    }
}

#[test]
fn tensors_move_between_devices() {
    let ds = devices();
    let data = TensorData::new(vec![1.5f32, -2.0, 3.25, 0.0, 7.0, -1.0], [2, 3]);
    let ints = TensorData::new(vec![3i64, -9, 1 << 40, 0], [4]);
    let bools = TensorData::new(vec![true, false, true], [3]);
    for from in &ds {
        for to in &ds {
            let f = Anyaccel::float_to_device(Anyaccel::float_from_data(data.clone(), from), to);
            let i = Anyaccel::int_to_device(Anyaccel::int_from_data(ints.clone(), from), to);
            let b = Anyaccel::bool_to_device(Anyaccel::bool_from_data(bools.clone(), from), to);
            use burn_backend::TensorMetadata;
            assert_eq!(f.device(), *to);
            // A strided view moves as its elements.
            let ft = Anyaccel::float_swap_dims(f, 0, 1);
            let back = burn_backend::read_sync(Anyaccel::float_into_data(ft)).unwrap();
            assert_eq!(
                back.try_into_vec::<f32>().unwrap(),
                vec![1.5, 0.0, -2.0, 7.0, 3.25, -1.0]
            );
            let iv: Vec<i64> = burn_backend::read_sync(Anyaccel::int_into_data(i))
                .unwrap()
                .try_into_vec()
                .unwrap();
            assert_eq!(iv, vec![3, -9, 1 << 40, 0]);
            let bv: Vec<bool> = burn_backend::read_sync(Anyaccel::bool_into_data(b))
                .unwrap()
                .try_into_vec()
                .unwrap();
            assert_eq!(bv, vec![true, false, true]);
        }
    }
    let _ = BoolStore::Native;
}

#[test]
fn whole_range_int_draws_are_refused_naming_the_op() {
    let d = AnyaccelDevice::default();
    let r = std::panic::catch_unwind(|| {
        Anyaccel::int_random(
            Shape::from(vec![4]),
            Distribution::Default,
            &d,
            IntDType::I64,
        )
    });
    let p = r.expect_err("Distribution::Default for ints is refused");
    let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("int_random") && msg.contains("Uniform(low, high)"),
        "{msg}"
    );
}
