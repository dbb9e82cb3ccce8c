//! Values whose exact result the contract pins down, on every device the tests can reach (the
//! CPU always; OpenCL and Vulkan where installed): f16 and bf16 results rounded once from the
//! exact f64 or integer value (`fill`, `arange`, `cast`), `layer_norm` of a constant row with
//! `eps = 0`, and the full i64 range of `arange`'s integer attributes.
//!
//! The OpenCL and Vulkan tests skip (saying so) when the runtime is unavailable, unless
//! `ANYACCEL_REQUIRE` names it.

use std::sync::Arc;

use anyaccel_hal::{bf16, f16, Backend, DType, Device, ErrorCode, Queue, Tensor};
use anyaccel_ops as ops;

/// 2^n as an f64 (exact for the exponents used here).
fn p2(n: i32) -> f64 {
    2f64.powi(n)
}

/// f64 values and the f16 bits that one rounding to nearest even gives, each chosen so that
/// rounding through f32 first (or dropping the low bits of the significand) gives another
/// result.
fn f16_cases() -> Vec<(f64, u16)> {
    vec![
        // Just below the overflow threshold 65520: the largest finite value.
        (65520.0 - p2(-30), 0x7bff),
        (-(65520.0 - p2(-30)), 0xfbff),
        // The threshold itself is a tie that rounds to +-Inf.
        (65520.0, 0x7c00),
        (-65520.0, 0xfc00),
        // A hair above the tie between 1 and 1 + 2^-10: up.
        (1.0 + p2(-11) + p2(-40), 0x3c01),
        (-(1.0 + p2(-11) + p2(-40)), 0xbc01),
        // A hair below the tie between 1 + 2^-10 and 1 + 2^-9: down.
        (1.0 + 3.0 * p2(-11) - p2(-40), 0x3c01),
        // A hair above half the smallest subnormal: the smallest subnormal, not zero.
        (p2(-25) + p2(-60), 0x0001),
        // Plain values stay plain.
        (1.5, 0x3e00),
        (-0.0, 0x8000),
    ]
}

/// As [`f16_cases`], for bf16.
fn bf16_cases() -> Vec<(f64, u16)> {
    let max = (2.0 - p2(-7)) * p2(127);
    let threshold = (2.0 - p2(-8)) * p2(127);
    vec![
        (threshold - p2(80), 0x7f7f),
        (-(threshold - p2(80)), 0xff7f),
        (threshold, 0x7f80),
        (max, 0x7f7f),
        (1.0 + p2(-8) + p2(-40), 0x3f81),
        (-(1.0 + p2(-8) + p2(-40)), 0xbf81),
        (1.0 + 3.0 * p2(-8) - p2(-40), 0x3f81),
        (1.5, 0x3fc0),
    ]
}

/// i64 values and the bf16 bits of one rounding, where rounding through f32 or f64 first gives
/// another result (a tie after the first rounding, rounded to even).
fn bf16_int_cases() -> Vec<(i64, u16)> {
    vec![
        // 2^24 + 2^16 + 1: f32 makes it the tie 2^24 + 2^16; one rounding goes up to 2^24 + 2^17.
        ((1 << 24) + (1 << 16) + 1, 0x4b81),
        (-((1 << 24) + (1 << 16) + 1), 0xcb81),
        // 2^30 + 2^22 + 1: exact in f64, but a tie once the low bits of f64 are ignored.
        ((1 << 30) + (1 << 22) + 1, 0x4e81),
        // 2^60 + 2^52 + 1: f64 makes it the tie 2^60 + 2^52; one rounding gives 2^60 + 2^53.
        ((1 << 60) + (1 << 52) + 1, 0x5d81),
        (-((1 << 60) + (1 << 52) + 1), 0xdd81),
        (i64::MIN, 0xdf00),
        (i64::MAX, 0x5f00),
    ]
}

fn bits16(q: &dyn Queue, t: &Tensor) -> Vec<u16> {
    match t.dtype() {
        DType::F16 => t
            .to_vec::<f16>(q)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect(),
        _ => t
            .to_vec::<bf16>(q)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect(),
    }
}

fn cases_of(dtype: DType) -> Vec<(f64, u16)> {
    if dtype == DType::F16 {
        f16_cases()
    } else {
        bf16_cases()
    }
}

/// `fill` writes the once-rounded value.
fn fill_rounds_once(d: &dyn Device, q: &dyn Queue) {
    for dtype in [DType::F16, DType::BF16] {
        if !d.caps().has_dtype(dtype) {
            continue;
        }
        for (v, want) in cases_of(dtype) {
            let got = bits16(q, &ops::fill(q, dtype, &[3], v).unwrap());
            assert_eq!(got, [want; 3], "fill {dtype} {v:e} on {}", d.info().id);
        }
    }
}

/// `arange` with `step = 0` gives `start` at every index, and `0 + 1 * v` gives `v`: both
/// rounded once.
fn arange_rounds_once(d: &dyn Device, q: &dyn Queue) {
    for dtype in [DType::F16, DType::BF16] {
        if !d.caps().has_dtype(dtype) {
            continue;
        }
        // (`-0.0 + 0 * step` is +0.0: arange's zeros are left out.)
        for (v, want) in cases_of(dtype).into_iter().filter(|c| c.0 != 0.0) {
            let got = bits16(q, &ops::arange(q, dtype, v, 0.0, 2).unwrap());
            assert_eq!(
                got,
                [want; 2],
                "arange {dtype} start {v:e} on {}",
                d.info().id
            );
            let got = bits16(q, &ops::arange(q, dtype, 0.0, v, 2).unwrap());
            assert_eq!(got[1], want, "arange {dtype} step {v:e} on {}", d.info().id);
        }
    }
}

/// `cast` from f64 and from the integers rounds the exact input once.
fn cast_rounds_once(d: &dyn Device, q: &dyn Queue) {
    for dtype in [DType::F16, DType::BF16] {
        if !d.caps().has_dtype(dtype) {
            continue;
        }
        if d.caps().has_dtype(DType::F64) {
            let (vs, want): (Vec<f64>, Vec<u16>) = cases_of(dtype).into_iter().unzip();
            let x = Tensor::from_slice(q, &vs, &[vs.len()]).unwrap();
            let got = bits16(q, &ops::cast(q, &x, dtype).unwrap());
            assert_eq!(
                got,
                want,
                "cast f64 to {dtype} of {vs:?} on {}",
                d.info().id
            );
        }
    }
    if !d.caps().has_dtype(DType::BF16) {
        return;
    }
    let (vs, want): (Vec<i64>, Vec<u16>) = bf16_int_cases().into_iter().unzip();
    if d.caps().has_dtype(DType::I64) {
        let x = Tensor::from_slice(q, &vs, &[vs.len()]).unwrap();
        let got = bits16(q, &ops::cast(q, &x, DType::BF16).unwrap());
        assert_eq!(got, want, "cast i64 to bf16 of {vs:?} on {}", d.info().id);
    }
    let (vs32, want32): (Vec<i32>, Vec<u16>) = bf16_int_cases()
        .into_iter()
        .filter_map(|(v, w)| i32::try_from(v).ok().map(|v| (v, w)))
        .unzip();
    let x = Tensor::from_slice(q, &vs32, &[vs32.len()]).unwrap();
    let got = bits16(q, &ops::cast(q, &x, DType::BF16).unwrap());
    assert_eq!(
        got,
        want32,
        "cast i32 to bf16 of {vs32:?} on {}",
        d.info().id
    );
}

/// A constant row has a mean equal to its element and a variance of exactly 0, so with
/// `eps = 0` every output is `0 / 0 = NaN`, whatever the row's length.
fn layer_norm_of_a_constant_row_is_nan(d: &dyn Device, q: &dyn Queue) {
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        if !d.caps().has_dtype(dtype) {
            continue;
        }
        for len in [1usize, 2, 3, 7, 100, 257, 1000, 4099] {
            for v in [0.1f64, -3.7, 1e4, 1.0 / 3.0] {
                let x = ops::fill(q, dtype, &[2, len], v).unwrap();
                let y = ops::layer_norm(q, &x, None, None, 0.0).unwrap();
                let y = ops::cast(q, &y, DType::F32).unwrap();
                let y = y.to_vec::<f32>(q).unwrap();
                let bad = y.iter().position(|v| !v.is_nan());
                assert!(
                    bad.is_none(),
                    "layer_norm {dtype} of {v} x {len}, eps 0, on {}: element {bad:?} is {}, \
                     expected NaN",
                    d.info().id,
                    y[bad.unwrap_or(0)]
                );
            }
        }
    }
}

/// i64 `arange` takes every integral start and step of i64, including its minimum and values
/// above 9.2e18, and refuses the first value past either end, naming the attribute.
fn arange_takes_the_whole_i64_range(d: &dyn Device, q: &dyn Queue) {
    if !d.caps().has_dtype(DType::I64) {
        return;
    }
    let top = p2(63) - 1024.0; // the largest f64 below 2^63
    let a = ops::arange(q, DType::I64, -p2(63), 1.0, 3).unwrap();
    assert_eq!(
        a.to_vec::<i64>(q).unwrap(),
        [i64::MIN, i64::MIN + 1, i64::MIN + 2]
    );
    let a = ops::arange(q, DType::I64, top, -1.0, 2).unwrap();
    assert_eq!(a.to_vec::<i64>(q).unwrap(), [top as i64, top as i64 - 1]);
    let a = ops::arange(q, DType::I64, 0.0, -p2(63), 2).unwrap();
    assert_eq!(a.to_vec::<i64>(q).unwrap(), [0, i64::MIN]);
    let a = ops::arange(q, DType::I64, 0.0, top, 2).unwrap();
    assert_eq!(a.to_vec::<i64>(q).unwrap(), [0, top as i64]);
    for (name, start, step) in [
        ("start", p2(63), 1.0),
        ("start", -p2(63) - 2048.0, 1.0),
        ("step", 0.0, p2(63)),
        ("step", 0.0, -p2(64)),
        ("start", 0.5, 1.0),
    ] {
        let e = ops::arange(q, DType::I64, start, step, 2).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
        let found = if name == "start" { start } else { step };
        assert!(
            e.message().contains(&format!("{name} is {found}")) && e.message().contains("i64"),
            "{e}"
        );
    }
}

/// The random ops give the bits of the recipe of docs/ops.md 8.10 (computed here on the host
/// with `ops::random`), for every float dtype the device has.
fn random_bits_match_the_recipe(d: &dyn Device, q: &dyn Queue) {
    use ops::random::{dropout_scale, normal_z, u24, u32d, Stream};
    let stream = Stream {
        seed: 0x0123_4567_89ab_cdef,
        offset: (1 << 40) + 7,
    };
    let n = 4099;
    for dtype in [DType::F32, DType::F16, DType::BF16, DType::F64] {
        if !d.caps().has_dtype(dtype) {
            continue;
        }
        let wide = dtype == DType::F64;
        let check = |what: &str, t: &Tensor, want: &dyn Fn(usize, u32) -> f64| {
            let got = ops::cast(q, t, DType::F64)
                .unwrap()
                .to_vec::<f64>(q)
                .unwrap();
            for (i, g) in got.iter().enumerate() {
                let w = want(i, stream.word(i as u64));
                // The exact value rounded once to the dtype, as the output stores it.
                let w = match dtype {
                    DType::F16 => f16::from_f64(w).to_f64(),
                    DType::BF16 => bf16::from_f64(w).to_f64(),
                    DType::F32 => f64::from(w as f32),
                    _ => w,
                };
                assert!(
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                    "{what} {dtype} element {i} on {}: got {g:e}, expected {w:e}",
                    d.info().id
                );
            }
        };
        let t = ops::uniform(q, dtype, &[n], -3.0, 5.5, stream).unwrap();
        check("uniform", &t, &|_, w| {
            if wide {
                -3.0 + 8.5 * u32d(w)
            } else {
                f64::from(-3.0f32 + 8.5f32 * u24(w))
            }
        });
        let t = ops::normal(q, dtype, &[n], 0.25, 2.0, stream).unwrap();
        check("normal", &t, &|_, w| {
            if wide {
                0.25 + 2.0 * f64::from(normal_z(w))
            } else {
                f64::from(0.25f32 + 2.0f32 * normal_z(w))
            }
        });
        let probs: Vec<f64> = (0..n).map(|i| (i % 11) as f64 / 10.0).collect();
        let p = ops::cast(q, &Tensor::from_slice(q, &probs, &[n]).unwrap(), dtype).unwrap();
        let probs = ops::cast(q, &p, DType::F64)
            .unwrap()
            .to_vec::<f64>(q)
            .unwrap();
        let t = ops::bernoulli(q, &p, stream).unwrap();
        check("bernoulli", &t, &|i, w| {
            let p = probs[i];
            let hit = if wide { u32d(w) < p } else { u24(w) < p as f32 };
            if hit {
                1.0
            } else {
                0.0
            }
        });
        let xs: Vec<f64> = (0..n).map(|i| i as f64 * 0.37 - 700.0).collect();
        let x = ops::cast(q, &Tensor::from_slice(q, &xs, &[n]).unwrap(), dtype).unwrap();
        let x_rounded = ops::cast(q, &x, DType::F64)
            .unwrap()
            .to_vec::<f64>(q)
            .unwrap();
        let t = ops::dropout(q, &x, 0.3, stream).unwrap();
        let scale = dropout_scale(0.3);
        check("dropout", &t, &|i, w| {
            let x = x_rounded[i];
            if wide {
                x * if u32d(w) < 0.3 { 0.0 } else { 1.0 } * scale
            } else {
                let m = if u24(w) < 0.3f32 { 0.0 } else { 1.0 };
                f64::from(x as f32 * m * scale as f32)
            }
        });
    }
}

/// The draws have their distributions: moments and tail fractions of 2^18 draws, each within
/// about five standard errors.
fn random_draws_have_their_distributions(d: &dyn Device, q: &dyn Queue) {
    let n = 1usize << 18;
    let stream = ops::random::Stream {
        seed: 42,
        offset: 0,
    };
    let z = ops::normal(q, DType::F32, &[n], 0.0, 1.0, stream)
        .unwrap()
        .to_vec::<f32>(q)
        .unwrap();
    let moment = |k: i32| z.iter().map(|&v| f64::from(v).powi(k)).sum::<f64>() / n as f64;
    let tail = |c: f32| z.iter().filter(|v| v.abs() > c).count() as f64 / n as f64;
    let (m1, m2, m3, m4) = (moment(1), moment(2), moment(3), moment(4));
    let id = &d.info().id;
    assert!(m1.abs() < 0.01, "normal mean {m1} on {id}");
    assert!((m2 - 1.0).abs() < 0.014, "normal variance {m2} on {id}");
    assert!(m3.abs() < 0.038, "normal third moment {m3} on {id}");
    assert!((m4 - 3.0).abs() < 0.1, "normal fourth moment {m4} on {id}");
    // P(|z| > 2) = 0.0455003, P(|z| > 3) = 0.0026998.
    assert!(
        (tail(2.0) - 0.0455003).abs() < 0.002,
        "P(|z| > 2) = {} on {id}",
        tail(2.0)
    );
    assert!(
        (tail(3.0) - 0.0026998).abs() < 0.0005,
        "P(|z| > 3) = {} on {id}",
        tail(3.0)
    );
    // Uniform: 64 equal bins, chi-square with 63 degrees of freedom below its 99.99th
    // percentile (about 120).
    let u = ops::uniform(q, DType::F32, &[n], 0.0, 1.0, stream)
        .unwrap()
        .to_vec::<f32>(q)
        .unwrap();
    let mut bins = [0f64; 64];
    for &v in &u {
        assert!((0.0..1.0).contains(&v), "uniform draw {v} on {id}");
        bins[(v * 64.0) as usize] += 1.0;
    }
    let e = n as f64 / 64.0;
    let chi2: f64 = bins.iter().map(|&b| (b - e) * (b - e) / e).sum();
    assert!(chi2 < 120.0, "uniform chi-square {chi2} on {id}");
    // Bernoulli(0.3) and dropout(0.3): the frequency of ones and of kept elements.
    let p = ops::fill(q, DType::F32, &[n], 0.3).unwrap();
    let b = ops::bernoulli(q, &p, stream)
        .unwrap()
        .to_vec::<f32>(q)
        .unwrap();
    let ones = b.iter().filter(|&&v| v == 1.0).count() as f64 / n as f64;
    assert!(
        (ones - 0.3).abs() < 0.0045,
        "bernoulli(0.3) frequency {ones} on {id}"
    );
    let x = ops::fill(q, DType::F32, &[n], 2.0).unwrap();
    let o = ops::dropout(q, &x, 0.3, stream)
        .unwrap()
        .to_vec::<f32>(q)
        .unwrap();
    // Kept: 2 times the f32 scale 1 / (1 - p), one rounding.
    let scaled = 2.0f32 * (1.0 / 0.7f64) as f32;
    assert!(
        o.iter().all(|&v| v == 0.0 || v == scaled),
        "dropout values other than 0 and {scaled} on {id}"
    );
    let kept = o.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
    assert!(
        (kept - 0.7).abs() < 0.0045,
        "dropout(0.3) kept {kept} on {id}"
    );
    // The mask of dropout is the complement of bernoulli's with the same p and stream.
    assert!(b.iter().zip(&o).all(|(&b, &o)| (b == 1.0) == (o == 0.0)));
}

/// The attention options against their definitions through other calls: grouped-query heads
/// equal the keys and values repeated per group; a bottom-right causal mask with one query
/// sees every key; a window as long as the keys changes nothing; a huge soft cap changes the
/// result by little; bottom-right rows that see no key are 0.
fn attention_options_match_their_definitions(d: &dyn Device, q: &dyn Queue) {
    use ops::{AttentionOptions, CausalAlign};
    let id = &d.info().id;
    let vals = |n: usize, seed: u64| -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0) - 1.0)
            .collect()
    };
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_slice(q, &v, shape).unwrap();
    let get = |t: &Tensor| t.to_vec::<f32>(q).unwrap();
    let close = |a: &[f32], b: &[f32], tol: f32, what: &str| {
        assert_eq!(a.len(), b.len(), "{what} on {id}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol, "{what} on {id}: [{i}] {x} vs {y}");
        }
    };
    // q: 2 batches x 4 heads x 3 rows x 8; k, v: 2 x 2 heads x 5 keys.
    let query = t(vals(2 * 4 * 3 * 8, 1), &[2, 4, 3, 8]);
    let key = t(vals(2 * 2 * 5 * 8, 2), &[2, 2, 5, 8]);
    let value = t(vals(2 * 2 * 5 * 6, 3), &[2, 2, 5, 6]);
    let rep = |x: &Tensor| ops::repeat_interleave(q, x, &[2], 1).unwrap();
    for align in [CausalAlign::TopLeft, CausalAlign::BottomRight] {
        for (causal, window, softcap) in [(false, 0, 0.0), (true, 0, 0.0), (true, 2, 0.5)] {
            let o = AttentionOptions {
                causal,
                align,
                window,
                softcap,
                scale: None,
            };
            let grouped = ops::attention_with(q, &query, &key, &value, &o).unwrap();
            let repeated = ops::attention_with(q, &query, &rep(&key), &rep(&value), &o).unwrap();
            close(
                &get(&grouped),
                &get(&repeated),
                1e-6,
                &format!("grouped {o:?}"),
            );
        }
    }
    let last = query.narrow(2, 2, 1).unwrap();
    let br = AttentionOptions {
        causal: true,
        align: CausalAlign::BottomRight,
        ..Default::default()
    };
    let plain = ops::attention_with(q, &last, &key, &value, &AttentionOptions::default());
    let masked = ops::attention_with(q, &last, &key, &value, &br);
    close(
        &get(&masked.unwrap()),
        &get(&plain.unwrap()),
        1e-6,
        "one bottom-right query",
    );
    let windowed = AttentionOptions { window: 5, ..br };
    let a = ops::attention_with(q, &query, &key, &value, &windowed).unwrap();
    let b = ops::attention_with(q, &query, &key, &value, &br).unwrap();
    close(&get(&a), &get(&b), 1e-6, "window as long as the keys");
    let capped = AttentionOptions { softcap: 1e4, ..br };
    let a = ops::attention_with(q, &query, &key, &value, &capped).unwrap();
    close(&get(&a), &get(&b), 1e-4, "a huge soft cap");
    // 7 queries over 4 keys, bottom right: rows 0..2 see no key.
    let q7 = t(vals(7 * 8, 4), &[7, 8]);
    let (k4, v4) = (t(vals(4 * 8, 5), &[4, 8]), t(vals(4 * 6, 6), &[4, 6]));
    let o = get(&ops::attention_with(q, &q7, &k4, &v4, &br).unwrap());
    assert!(
        o[..3 * 6].iter().all(|&x| x == 0.0),
        "rows without keys on {id}: {o:?}"
    );
    assert!(
        o[3 * 6..].iter().any(|&x| x != 0.0),
        "rows with keys on {id}"
    );
}

/// batch_norm against values computed by hand: the batch statistics in training, the running
/// ones in inference.
fn batch_norm_matches_its_definition(d: &dyn Device, q: &dyn Queue) {
    use anyaccel_hal::AttrValue;
    let id = &d.info().id;
    // Channel 0 holds 1, 2, 5, 6 and channel 1 holds 3, 4, 7, 8 (x is [2, 2, 2]).
    let x =
        Tensor::from_slice(q, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[2, 2, 2]).unwrap();
    let eps = 0.0;
    let attrs = |training: i64| {
        vec![
            ("training".to_string(), AttrValue::Int(training)),
            ("eps".to_string(), AttrValue::Float(eps)),
        ]
    };
    let outs = ops::call(q, "batch_norm", &[Some(&x)], &attrs(1)).unwrap();
    let get = |t: &Tensor| t.to_vec::<f32>(q).unwrap();
    assert_eq!(get(&outs[1]), vec![3.5, 5.5], "mean on {id}");
    // Biased variance 4.25 in both channels.
    let inv = 1.0 / 4.25f32.sqrt();
    for v in get(&outs[2]) {
        assert!((v - inv).abs() < 1e-6, "invstd on {id}: {v}");
    }
    let y = get(&outs[0]);
    assert!(
        (y[0] - (1.0 - 3.5) * inv).abs() < 1e-5,
        "out on {id}: {y:?}"
    );
    let rm = Tensor::from_slice(q, &[1.0f32, 2.0], &[2]).unwrap();
    let rv = Tensor::from_slice(q, &[4.0f32, 0.25], &[2]).unwrap();
    let outs = ops::call(
        q,
        "batch_norm",
        &[Some(&x), Some(&rm), Some(&rv)],
        &attrs(0),
    )
    .unwrap();
    assert_eq!(
        get(&outs[0]),
        vec![0.0, 0.5, 2.0, 4.0, 2.0, 2.5, 10.0, 12.0],
        "on {id}"
    );
    assert_eq!(get(&outs[2]), vec![0.5, 2.0], "on {id}");
    let e = ops::call(q, "batch_norm", &[Some(&x)], &attrs(0)).unwrap_err();
    assert_eq!(
        e.code(),
        anyaccel_hal::ErrorCode::InvalidArgument,
        "on {id}"
    );
    assert!(e.message().contains("running_mean"), "on {id}: {e}");
}

/// group_norm against layer_norm: one group is layer_norm over each sample's C x spatial
/// elements; C groups normalise each channel alone; weight and bias apply per channel.
fn group_norm_matches_layer_norm(d: &dyn Device, q: &dyn Queue) {
    use anyaccel_hal::AttrValue;
    let id = &d.info().id;
    let xs: Vec<f32> = (0..2 * 4 * 6)
        .map(|i| ((i * 7 % 19) as f32 - 9.0) / 4.0)
        .collect();
    let x = Tensor::from_slice(q, &xs, &[2, 4, 6]).unwrap();
    let gn = |groups: i64, inputs: &[Option<&Tensor>]| {
        let attrs = vec![("num_groups".to_string(), AttrValue::Int(groups))];
        ops::call(q, "group_norm", inputs, &attrs).unwrap()[0]
            .to_vec::<f32>(q)
            .unwrap()
    };
    let close = |a: &[f32], b: &[f32], what: &str| {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5, "{what} on {id}: [{i}] {x} vs {y}");
        }
    };
    let flat = Tensor::from_slice(q, &xs, &[2, 24]).unwrap();
    let ln = ops::layer_norm(q, &flat, None, None, 1e-5)
        .unwrap()
        .to_vec::<f32>(q)
        .unwrap();
    close(&gn(1, &[Some(&x)]), &ln, "one group");
    let rows = Tensor::from_slice(q, &xs, &[8, 6]).unwrap();
    let ln = ops::layer_norm(q, &rows, None, None, 1e-5)
        .unwrap()
        .to_vec::<f32>(q)
        .unwrap();
    close(&gn(4, &[Some(&x)]), &ln, "a group per channel");
    let w = Tensor::from_slice(q, &[1.0f32, 2.0, -1.0, 0.5], &[4]).unwrap();
    let b = Tensor::from_slice(q, &[0.0f32, 1.0, 2.0, 3.0], &[4]).unwrap();
    let affine = gn(4, &[Some(&x), Some(&w), Some(&b)]);
    let want: Vec<f32> = ln
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ch = (i / 6) % 4;
            v * [1.0, 2.0, -1.0, 0.5][ch] + [0.0, 1.0, 2.0, 3.0][ch]
        })
        .collect();
    close(&affine, &want, "weight and bias");
}

/// Resampling against values computed by hand (as PyTorch gives them): bilinear and bicubic
/// with and without align_corners, nearest, adaptive average windows that overlap.
fn resampling_matches_its_definition(d: &dyn Device, q: &dyn Queue) {
    use anyaccel_hal::AttrValue;
    let id = &d.info().id;
    let run = |x: &Tensor, op: &str, attrs: &[(&str, AttrValue)]| {
        let attrs: Vec<(String, AttrValue)> = attrs
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        ops::call(q, op, &[Some(x)], &attrs).unwrap()[0]
            .to_vec::<f32>(q)
            .unwrap()
    };
    let ints = |v: &[i64]| AttrValue::Ints(v.to_vec());
    let bilinear = AttrValue::Str("bilinear".into());
    let x = Tensor::from_slice(q, &[1.0f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2]).unwrap();
    let up = run(
        &x,
        "interpolate",
        &[("size", ints(&[4])), ("mode", bilinear.clone())],
    );
    #[rustfmt::skip]
    let want = [1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0];
    assert_eq!(up, want, "bilinear on {id}");
    let aligned = run(
        &x,
        "interpolate",
        &[
            ("size", ints(&[3])),
            ("mode", bilinear),
            ("align_corners", AttrValue::Int(1)),
        ],
    );
    assert_eq!(
        aligned,
        [1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0],
        "aligned on {id}"
    );
    let near = run(&x, "interpolate", &[("size", ints(&[3, 4]))]);
    assert_eq!(
        near,
        [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0],
        "nearest on {id}"
    );
    let nine = Tensor::from_slice(
        q,
        &(1..=9).map(|v| v as f32).collect::<Vec<_>>(),
        &[1, 1, 3, 3],
    )
    .unwrap();
    let adaptive = run(&nine, "adaptive_avg_pool2d", &[("output_size", ints(&[2]))]);
    assert_eq!(adaptive, [3.0, 4.0, 6.0, 7.0], "adaptive on {id}");
    // Bicubic, [1, 3] to 4 (a = -0.75): source positions -0.25, 0.25, 0.75, 1.25; the first
    // output's taps read rows 0, 0, 0, 1 with weights c2(1.75), c1(0.75), c1(0.25), c2(1.25) =
    // -0.03515625, 0.26171875, 0.87890625, -0.10546875: 1.10546875 * 1 - 0.10546875 * 3.
    let row = Tensor::from_slice(q, &[1.0f32, 3.0], &[1, 1, 1, 2]).unwrap();
    let cubic = run(
        &row,
        "interpolate",
        &[
            ("size", ints(&[1, 4])),
            ("mode", AttrValue::Str("bicubic".into())),
        ],
    );
    let want = [0.7890625f32, 1.453125, 2.546875, 3.2109375];
    for (g, w) in cubic.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-6,
            "bicubic on {id}: {cubic:?}, expected {want:?}"
        );
    }
    // align_corners: positions 0, 1/3, 2/3, 1; the ends are the inputs themselves.
    let cubic = run(
        &row,
        "interpolate",
        &[
            ("size", ints(&[1, 4])),
            ("mode", AttrValue::Str("bicubic".into())),
            ("align_corners", AttrValue::Int(1)),
        ],
    );
    // t = 1/3: taps 0, 0, 1, 1 (rows -1 and 2 clamped), weights c2(4/3), c1(1/3), c1(2/3),
    // c2(5/3) = -6/54, 43/54, 20/54, -3/54: (37 * 1 + 17 * 3) / 54 = 44/27; the third is
    // 4 - 44/27 by symmetry.
    let want = [1.0f32, 44.0 / 27.0, 64.0 / 27.0, 3.0];
    for (g, w) in cubic.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-6,
            "aligned bicubic on {id}: {cubic:?}, expected {want:?}"
        );
    }
}

/// The pools against values computed by hand: max values and plane indices, averages with and
/// without the padding counted.
fn pools_match_their_definition(d: &dyn Device, q: &dyn Queue) {
    use anyaccel_hal::AttrValue;
    let id = &d.info().id;
    let x = Tensor::from_slice(
        q,
        &(1..=16).map(|v| v as f32).collect::<Vec<_>>(),
        &[1, 1, 4, 4],
    )
    .unwrap();
    let ints = |v: &[i64]| AttrValue::Ints(v.to_vec());
    let run = |op: &str, attrs: &[(&str, AttrValue)]| {
        let attrs: Vec<(String, AttrValue)> = attrs
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        ops::call(q, op, &[Some(&x)], &attrs).unwrap()
    };
    let k2 = [("kernel_size", ints(&[2]))];
    let m = run("max_pool2d", &k2);
    assert_eq!(
        m[0].to_vec::<f32>(q).unwrap(),
        vec![6.0, 8.0, 14.0, 16.0],
        "on {id}"
    );
    assert_eq!(
        m[1].to_vec::<i64>(q).unwrap(),
        vec![5, 7, 13, 15],
        "on {id}"
    );
    let a = run("avg_pool2d", &k2);
    assert_eq!(
        a[0].to_vec::<f32>(q).unwrap(),
        vec![3.5, 5.5, 11.5, 13.5],
        "on {id}"
    );
    // 3x3 windows, stride 2, padding 1: the top-left window holds 1, 2, 5, 6 (sum 14).
    let k3 = [
        ("kernel_size", ints(&[3])),
        ("stride", ints(&[2])),
        ("padding", ints(&[1])),
    ];
    let with_pad = run("avg_pool2d", &k3)[0].to_vec::<f32>(q).unwrap();
    assert!(
        (with_pad[0] - 14.0 / 9.0).abs() < 1e-6,
        "on {id}: {with_pad:?}"
    );
    assert!(
        (with_pad[1] - 30.0 / 9.0).abs() < 1e-6,
        "on {id}: {with_pad:?}"
    );
    let mut no_pad = k3.to_vec();
    no_pad.push(("count_include_pad", AttrValue::Int(0)));
    let without = run("avg_pool2d", &no_pad)[0].to_vec::<f32>(q).unwrap();
    assert_eq!(&without[..2], &[3.5, 5.0], "on {id}");
    let e = ops::call(q, "max_pool2d", &[Some(&x)], &[]).unwrap_err();
    assert_eq!(
        e.code(),
        anyaccel_hal::ErrorCode::InvalidArgument,
        "on {id}"
    );
    assert!(e.message().contains("kernel_size"), "on {id}: {e}");
}

/// The attention mask against its definition: an all-true bool mask or an additive zero mask
/// changes nothing; a bool mask of the causal pattern equals causal masking; a row masked
/// entirely is 0.
fn attention_mask_matches_its_definition(d: &dyn Device, q: &dyn Queue) {
    use ops::AttentionOptions;
    let id = &d.info().id;
    let vals = |n: usize, seed: u64| -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0) - 1.0)
            .collect()
    };
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_slice(q, &v, shape).unwrap();
    let get = |t: &Tensor| t.to_vec::<f32>(q).unwrap();
    let (query, key, value) = (
        t(vals(2 * 4 * 6, 1), &[2, 4, 6]),
        t(vals(2 * 4 * 6, 2), &[2, 4, 6]),
        t(vals(2 * 4 * 5, 3), &[2, 4, 5]),
    );
    let plain = AttentionOptions::default();
    let causal = AttentionOptions {
        causal: true,
        ..plain
    };
    let base = get(&ops::attention_with(q, &query, &key, &value, &plain).unwrap());
    let bools = |f: &dyn Fn(usize, usize) -> bool| {
        let v: Vec<bool> = (0..16).map(|x| f(x / 4, x % 4)).collect();
        Tensor::from_slice(q, &v, &[4, 4]).unwrap()
    };
    let all = bools(&|_, _| true);
    let masked = ops::attention_masked(q, &query, &key, &value, &all, &plain).unwrap();
    assert_eq!(get(&masked), base, "all-true mask on {id}");
    let zeros = t(vec![0.0; 4], &[1, 4]);
    let added = ops::attention_masked(q, &query, &key, &value, &zeros, &plain).unwrap();
    assert_eq!(get(&added), base, "zero additive mask on {id}");
    let lower = bools(&|i, j| j <= i);
    let by_mask = ops::attention_masked(q, &query, &key, &value, &lower, &plain).unwrap();
    let by_flag = ops::attention_with(q, &query, &key, &value, &causal).unwrap();
    assert_eq!(get(&by_mask), get(&by_flag), "causal pattern on {id}");
    // Row 2 sees no key: 0; the other rows are unchanged.
    let row2 = bools(&|i, _| i != 2);
    let y = get(&ops::attention_masked(q, &query, &key, &value, &row2, &plain).unwrap());
    for (k, (a, b)) in y.iter().zip(&base).enumerate() {
        let row = (k / 5) % 4;
        if row == 2 {
            assert_eq!(*a, 0.0, "masked row on {id}: [{k}]");
        } else {
            assert_eq!(a, b, "unmasked row on {id}: [{k}]");
        }
    }
    let bad = t(vec![0.0; 3], &[3]);
    let e = ops::attention_masked(q, &query, &key, &value, &bad, &plain).unwrap_err();
    assert_eq!(
        e.code(),
        anyaccel_hal::ErrorCode::InvalidArgument,
        "on {id}"
    );
    assert!(e.message().contains("mask"), "on {id}: {e}");
}

/// Convolution against values computed by hand, conv1d against conv2d over a height of 1, and
/// a bad group count refused with its name.
fn conv_matches_its_definition(d: &dyn Device, q: &dyn Queue) {
    use ops::ConvOptions;
    let id = &d.info().id;
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_slice(q, &v, shape).unwrap();
    let get = |t: &Tensor| t.to_vec::<f32>(q).unwrap();
    // x = 1..9 in 3x3, w = [[1, 0], [0, 1]]: each output sums a diagonal pair.
    let x = t((1..=9).map(|v| v as f32).collect(), &[1, 1, 3, 3]);
    let w = t(vec![1.0, 0.0, 0.0, 1.0], &[1, 1, 2, 2]);
    let y = ops::conv2d(q, &x, &w, None, &ConvOptions::default()).unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2], "on {id}");
    assert_eq!(get(&y), vec![6.0, 8.0, 12.0, 14.0], "on {id}");
    // Padding 1, stride 2, bias 0.5: windows centred on the corners and the middle.
    let b = t(vec![0.5], &[1]);
    let o = ConvOptions {
        stride: [2, 2],
        padding: [1, 1],
        ..ConvOptions::default()
    };
    let y = ops::conv2d(q, &x, &w, Some(&b), &o).unwrap();
    // Output (i, j) reads x at (2i-1, 2j-1) and (2i, 2j); rows/cols -1 are padding.
    assert_eq!(get(&y), vec![1.5, 3.5, 7.5, 14.5], "on {id}");
    // conv1d equals conv2d over a height of 1, with groups and dilation.
    let xs: Vec<f32> = (0..2 * 4 * 11)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0)
        .collect();
    let ws: Vec<f32> = (0..6 * 2 * 3)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
        .collect();
    let o = ConvOptions {
        stride: [1, 2],
        padding: [0, 2],
        dilation: [1, 2],
        groups: 2,
    };
    let o1 = ConvOptions {
        stride: [2, 2],
        padding: [2, 2],
        dilation: [2, 2],
        groups: 2,
    };
    let one = ops::conv1d(
        q,
        &t(xs.clone(), &[2, 4, 11]),
        &t(ws.clone(), &[6, 2, 3]),
        None,
        &o1,
    )
    .unwrap();
    let two = ops::conv2d(q, &t(xs, &[2, 4, 1, 11]), &t(ws, &[6, 2, 1, 3]), None, &o).unwrap();
    assert_eq!(one.shape(), &[2, 6, 6], "on {id}");
    assert_eq!(get(&one), get(&two), "conv1d vs conv2d on {id}");
    let bad = ConvOptions {
        groups: 3,
        ..ConvOptions::default()
    };
    let e = ops::conv2d(q, &x, &w, None, &bad).unwrap_err();
    assert_eq!(
        e.code(),
        anyaccel_hal::ErrorCode::InvalidArgument,
        "on {id}"
    );
    assert!(e.message().contains("groups"), "on {id}: {e}");
}

/// The convolution gradients: a transposed convolution computed by hand, the adjoint identity
/// <conv(x, w), g> = <x, dx> = <w, dw>, the input gradient equal to the transpose with the
/// matching output_padding, and a grad of the wrong shape refused by name.
fn conv_gradients_are_adjoint(d: &dyn Device, q: &dyn Queue) {
    use ops::ConvOptions;
    let id = &d.info().id;
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_slice(q, &v, shape).unwrap();
    let get = |t: &Tensor| t.to_vec::<f32>(q).unwrap();
    // Stride 2 with a 2x2 kernel of ones spreads each input over its own 2x2 block.
    let x = t(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let ones = t(vec![1.0; 4], &[1, 1, 2, 2]);
    let s2 = ConvOptions {
        stride: [2, 2],
        ..ConvOptions::default()
    };
    let y = ops::conv_transpose2d(q, &x, &ones, None, &s2, [0, 0]).unwrap();
    assert_eq!(y.shape(), &[1, 1, 4, 4], "on {id}");
    #[rustfmt::skip]
    let want = vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0];
    assert_eq!(get(&y), want, "on {id}");
    // Grouped, strided, padded and dilated.
    let o = ConvOptions {
        stride: [2, 1],
        padding: [1, 1],
        dilation: [1, 2],
        groups: 2,
    };
    let val = |n: usize, k: usize, m: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * k % m) as f32 - (m / 2) as f32) / 4.0)
            .collect()
    };
    let (xs, ws) = ([2usize, 4, 7, 6], [6usize, 2, 3, 3]);
    let x = t(val(2 * 4 * 7 * 6, 7, 13), &xs);
    let w = t(val(6 * 2 * 3 * 3, 5, 11), &ws);
    let y = ops::conv2d(q, &x, &w, None, &o).unwrap();
    assert_eq!(y.shape(), &[2, 6, 4, 4], "on {id}");
    let g = t(val(2 * 6 * 4 * 4, 3, 7), y.shape());
    let dx = ops::conv_backward_input(q, &g, &w, &xs, &o).unwrap();
    let dw = ops::conv_backward_weight(q, &g, &x, &ws, &o).unwrap();
    assert_eq!(dx.shape(), &xs, "on {id}");
    assert_eq!(dw.shape(), &ws, "on {id}");
    let dot = |a: &Tensor, b: &Tensor| -> f64 {
        get(a)
            .iter()
            .zip(get(b))
            .map(|(&u, v)| u as f64 * v as f64)
            .sum()
    };
    let (yg, xdx, wdw) = (dot(&y, &g), dot(&x, &dx), dot(&w, &dw));
    assert!(yg.abs() > 1.0, "on {id}: a degenerate check, <y, g> = {yg}");
    for (name, v) in [("<x, dx>", xdx), ("<w, dw>", wdw)] {
        assert!(
            (v - yg).abs() <= 1e-4 * yg.abs(),
            "on {id}: {name} = {v}, <conv(x, w), g> = {yg}"
        );
    }
    // Height: (4 - 1) 2 - 2 + 2 + 1 = 7 (output_padding 0); width: 3 - 2 + 4 + 1 = 6.
    let tr = ops::conv_transpose2d(q, &g, &w, None, &o, [0, 0]).unwrap();
    assert_eq!(get(&tr), get(&dx), "transpose vs input gradient on {id}");
    let e = ops::conv_backward_input(q, &x, &w, &xs, &o).unwrap_err();
    assert_eq!(
        e.code(),
        anyaccel_hal::ErrorCode::InvalidArgument,
        "on {id}"
    );
    assert!(e.message().contains("grad has shape"), "on {id}: {e}");
}

/// The pooling and resampling gradients are the adjoints of their forward ops:
/// <f(x), g> = <x, f_backward(g)> (a max pool's through its indices), with overlapping,
/// padded, upsampling and downsampling geometries.
fn pool_gradients_are_adjoint(d: &dyn Device, q: &dyn Queue) {
    use anyaccel_hal::AttrValue;
    let id = &d.info().id;
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_slice(q, &v, shape).unwrap();
    let get = |t: &Tensor| t.to_vec::<f32>(q).unwrap();
    let val = |n: usize, k: usize, m: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * k % m) as f32 - (m / 2) as f32) / 4.0)
            .collect()
    };
    let owned = |attrs: &[(&str, AttrValue)]| -> Vec<(String, AttrValue)> {
        attrs
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    };
    let ints = |v: &[i64]| AttrValue::Ints(v.to_vec());
    let dot =
        |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(&u, &v)| u as f64 * v as f64).sum() };
    let shape = [2usize, 3, 7, 9];
    let x = t(val(2 * 3 * 7 * 9, 7, 29), &shape);
    let size = ("input_size", ints(&[2, 3, 7, 9]));
    let pool = [
        ("kernel_size", ints(&[3])),
        ("stride", ints(&[2, 1])),
        ("padding", ints(&[1])),
    ];
    // The op, its attributes, and its gradient's (input_size aside).
    type Attrs<'a> = Vec<(&'a str, AttrValue)>;
    let cases: Vec<(&str, Attrs, Attrs)> = vec![
        ("max_pool2d", pool.to_vec(), pool.to_vec()),
        ("avg_pool2d", pool.to_vec(), pool.to_vec()),
        (
            "adaptive_avg_pool2d",
            vec![("output_size", ints(&[3, 4]))],
            vec![],
        ),
        (
            "interpolate",
            vec![
                ("size", ints(&[11, 5])),
                ("mode", AttrValue::Str("bilinear".into())),
            ],
            vec![("mode", AttrValue::Str("bilinear".into()))],
        ),
        (
            "interpolate",
            vec![
                ("size", ints(&[4, 13])),
                ("mode", AttrValue::Str("bilinear".into())),
                ("align_corners", AttrValue::Int(1)),
            ],
            vec![
                ("mode", AttrValue::Str("bilinear".into())),
                ("align_corners", AttrValue::Int(1)),
            ],
        ),
        ("interpolate", vec![("size", ints(&[10, 4]))], vec![]),
    ];
    for (op, fwd, mut back) in cases {
        let outs = ops::call(q, op, &[Some(&x)], &owned(&fwd)).unwrap();
        let y = &outs[0];
        // g = y plus a pattern: <y, g> is far from 0.
        let g: Vec<f32> = get(y)
            .iter()
            .zip(val(y.numel(), 5, 17))
            .map(|(a, b)| a + b / 2.0)
            .collect();
        let g = t(g, y.shape());
        back.push(size.clone());
        let backward = format!("{op}_backward");
        let inputs = [Some(&g), outs.get(1)];
        let dx = ops::call(q, &backward, &inputs[..outs.len().min(2)], &owned(&back))
            .unwrap()
            .remove(0);
        assert_eq!(dx.shape(), &shape, "{backward} on {id}");
        let (yg, xdx) = (dot(&get(y), &get(&g)), dot(&get(&x), &get(&dx)));
        assert!(
            yg.abs() > 1.0,
            "{op} on {id}: a degenerate check, <y, g> = {yg}"
        );
        assert!(
            (xdx - yg).abs() <= 1e-4 * yg.abs(),
            "{backward} on {id}: <x, dx> = {xdx}, <{op}(x), g> = {yg}"
        );
    }
}

/// Cross-entropy against log_softmax and a gather, its gradient against softmax less the
/// one-hot target over the count, an ignored target, and a bad target refused by value.
fn cross_entropy_matches_its_definition(d: &dyn Device, q: &dyn Queue) {
    use ops::{CrossEntropyOptions, Reduction};
    let id = &d.info().id;
    let logits: Vec<f32> = (0..4 * 5)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
        .collect();
    let x = Tensor::from_slice(q, &logits, &[4, 5]).unwrap();
    let target = Tensor::from_slice(q, &[3i64, 0, 4, 1], &[4]).unwrap();
    let get = |t: &Tensor| t.to_vec::<f32>(q).unwrap();
    let ls = get(&ops::log_softmax(q, &x, -1).unwrap());
    let picked = [3usize, 0, 4, 1];
    let o = CrossEntropyOptions {
        ignore_index: 4,
        ..CrossEntropyOptions::default()
    };
    // Position 2 is ignored: the mean is over the other three.
    let want = -(ls[3] + ls[5] + ls[3 * 5 + 1]) / 3.0;
    let loss = get(&ops::cross_entropy(q, &x, &target, &o).unwrap());
    assert!(
        (loss[0] - want).abs() <= 1e-5,
        "on {id}: {} vs {want}",
        loss[0]
    );
    let none = CrossEntropyOptions {
        reduction: Reduction::None,
        ..o
    };
    let each = get(&ops::cross_entropy(q, &x, &target, &none).unwrap());
    for (i, &c) in picked.iter().enumerate() {
        let want = if i == 2 { 0.0 } else { -ls[i * 5 + c] };
        assert!((each[i] - want).abs() <= 1e-5, "on {id}: position {i}");
    }
    let one = Tensor::from_slice(q, &[1.0f32], &[]).unwrap();
    let dx = get(&ops::cross_entropy_backward(q, &one, &x, &target, &o).unwrap());
    for (i, &c) in picked.iter().enumerate() {
        for k in 0..5 {
            let want = if i == 2 {
                0.0
            } else {
                (ls[i * 5 + k].exp() - if k == c { 1.0 } else { 0.0 }) / 3.0
            };
            assert!(
                (dx[i * 5 + k] - want).abs() <= 1e-5,
                "on {id}: dlogits[{i}, {k}]"
            );
        }
    }
    let bad = Tensor::from_slice(q, &[3i64, 0, 9, 1], &[4]).unwrap();
    // The CPU queue reports a kernel's error when the result is read; the others at the call.
    let e = ops::cross_entropy(q, &x, &bad, &CrossEntropyOptions::default())
        .and_then(|t| t.to_vec::<f32>(q))
        .unwrap_err();
    assert_eq!(
        e.code(),
        anyaccel_hal::ErrorCode::OutOfBounds,
        "on {id}: {e}"
    );
    assert!(e.message().contains("target 9"), "on {id}: {e}");
}

/// The normalisation gradients against central differences of their forward ops on the same
/// device: d/dx_i of sum(g * f(x)) and, for layer_norm, d/dw_j.
fn norm_gradients_match_finite_differences(d: &dyn Device, q: &dyn Queue) {
    use anyaccel_hal::AttrValue;
    let id = &d.info().id;
    let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(q, v, shape).unwrap();
    let get = |t: &Tensor| t.to_vec::<f32>(q).unwrap();
    let shape = [2usize, 4, 3];
    let n = 24;
    let xs: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0).collect();
    let gs: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
    let g = t(&gs, &shape);
    let training = vec![("training".to_string(), AttrValue::Int(1))];
    let groups = vec![("num_groups".to_string(), AttrValue::Int(2))];
    // (forward op, its weight's length, its attributes: the gradient op's too)
    type Case = (&'static str, usize, Vec<(String, AttrValue)>);
    let ops: [Case; 4] = [
        ("layer_norm", 3, vec![]),
        ("rms_norm", 3, vec![]),
        ("group_norm", 4, groups),
        ("batch_norm", 4, training),
    ];
    for (op, wn, attrs) in ops {
        let ws: Vec<f32> = (0..wn).map(|i| 0.5 + i as f32 / 4.0).collect();
        let w = t(&ws, &[wn]);
        let forward = |xv: &[f32], wv: &[f32]| -> Vec<Tensor> {
            let (x, w) = (t(xv, &shape), t(wv, &[wn]));
            let inputs: Vec<Option<&Tensor>> = if op == "batch_norm" {
                vec![Some(&x), None, None, Some(&w)]
            } else {
                vec![Some(&x), Some(&w)]
            };
            ops::call(q, op, &inputs, &attrs).unwrap()
        };
        let loss = |xv: &[f32], wv: &[f32]| -> f64 {
            get(&forward(xv, wv)[0])
                .iter()
                .zip(&gs)
                .map(|(&y, &g)| y as f64 * g as f64)
                .sum()
        };
        let x = t(&xs, &shape);
        let outs = forward(&xs, &ws);
        let backward = format!("{op}_backward");
        let inputs: Vec<Option<&Tensor>> = if op == "batch_norm" {
            vec![Some(&g), Some(&x), Some(&outs[1]), Some(&outs[2]), Some(&w)]
        } else {
            vec![Some(&g), Some(&x), Some(&w)]
        };
        let grads = ops::call(q, &backward, &inputs, &attrs).unwrap();
        let (dx, dw) = (get(&grads[0]), get(&grads[1]));
        let h = 1e-2f32;
        for i in 0..n {
            let (mut up, mut down) = (xs.clone(), xs.clone());
            up[i] += h;
            down[i] -= h;
            let want = (loss(&up, &ws) - loss(&down, &ws)) / (2.0 * h as f64);
            assert!(
                (dx[i] as f64 - want).abs() <= 2e-3 * (1.0 + want.abs()),
                "{backward} on {id}: dx[{i}] = {}, central difference {want}",
                dx[i]
            );
        }
        for j in 0..wn {
            let (mut up, mut down) = (ws.clone(), ws.clone());
            up[j] += h;
            down[j] -= h;
            let want = (loss(&xs, &up) - loss(&xs, &down)) / (2.0 * h as f64);
            assert!(
                (dw[j] as f64 - want).abs() <= 2e-3 * (1.0 + want.abs()),
                "{backward} on {id}: dweight[{j}] = {}, central difference {want}",
                dw[j]
            );
        }
    }
}

macro_rules! on_each_device {
    ($($test:ident),* $(,)?) => {
        mod cpu {
            $(#[test]
            fn $test() {
                let d = super::device(&anyaccel_cpu::CpuBackend).unwrap();
                let q = d.create_queue().unwrap();
                super::$test(&*d, &*q);
            })*
        }
        mod opencl {
            $(#[test]
            fn $test() {
                if let Some(d) = super::device(&anyaccel_opencl::OpenClBackend) {
                    let q = d.create_queue().unwrap();
                    super::$test(&*d, &*q);
                }
            })*
        }
        mod vulkan {
            $(#[test]
            fn $test() {
                if let Some(d) = super::device(&anyaccel_vulkan::VulkanBackend) {
                    let q = d.create_queue().unwrap();
                    super::$test(&*d, &*q);
                }
            })*
        }
    };
}

/// quantize then dequantize is within half a step (a step with zero points) of the input;
/// matmul_wq equals matmul against the dequantized weight; matmul_i8 equals the exact integer
/// product (wrapping past 2^31) and its scaled forms.
fn quantized_ops_match_their_definitions(d: &dyn Device, q: &dyn Queue) {
    use ops::{QuantBits, QuantizeOptions};
    let id = &d.info().id;
    let (rows, k, g) = (3usize, 64usize, 32usize);
    let xv: Vec<f32> = (0..rows * k)
        .map(|i| ((i * 37 % 101) as f32 - 40.0) / 17.0)
        .collect();
    let x = Tensor::from_slice(q, &xv, &[rows, k]).unwrap();
    for (bits, symmetric) in [
        (QuantBits::Int8, true),
        (QuantBits::Int8, false),
        (QuantBits::Int4, true),
        (QuantBits::Int4, false),
    ] {
        let o = QuantizeOptions {
            bits,
            group_size: g,
            symmetric,
        };
        let qz = ops::quantize(q, &x, &o).unwrap();
        let zeros = (!symmetric).then_some(&qz.zeros);
        let deq = ops::dequantize(q, &qz.q, &qz.scales, zeros, g)
            .unwrap()
            .to_vec::<f32>(q)
            .unwrap();
        let scales = qz.scales.to_vec::<f32>(q).unwrap();
        for (i, (&got, &want)) in deq.iter().zip(&xv).enumerate() {
            let s = scales[i / g];
            let bound = if symmetric { 0.5 * s } else { s } * (1.0 + 1e-5) + 1e-7;
            assert!(
                (got - want).abs() <= bound,
                "on {id}: {bits:?} symmetric {symmetric}: element {i}: {got} vs {want} (step {s})"
            );
        }
        let xs: Vec<f32> = (0..2 * k)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
            .collect();
        let x2 = Tensor::from_slice(q, &xs, &[2, k]).unwrap();
        let got = ops::matmul_wq(q, &x2, &qz.q, &qz.scales, zeros, g)
            .unwrap()
            .to_vec::<f32>(q)
            .unwrap();
        for m in 0..2 {
            for n in 0..rows {
                let want: f64 = (0..k)
                    .map(|c| xs[m * k + c] as f64 * deq[n * k + c] as f64)
                    .sum();
                assert!(
                    (got[m * rows + n] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "on {id}: matmul_wq {bits:?} [{m}, {n}]: {} vs {want}",
                    got[m * rows + n]
                );
            }
        }
    }
    // matmul_i8: exact, then scaled.
    let (m, kk, n) = (3usize, 40usize, 5usize);
    let av: Vec<i8> = (0..m * kk)
        .map(|i| ((i * 71 % 256) as i32 - 128) as i8)
        .collect();
    let bv: Vec<i8> = (0..kk * n)
        .map(|i| ((i * 53 % 255) as i32 - 127) as i8)
        .collect();
    let a = Tensor::from_slice(q, &av, &[m, kk]).unwrap();
    let b = Tensor::from_slice(q, &bv, &[kk, n]).unwrap();
    let exact: Vec<i64> = (0..m * n)
        .map(|t| {
            (0..kk)
                .map(|c| av[t / n * kk + c] as i64 * bv[c * n + t % n] as i64)
                .sum()
        })
        .collect();
    let got = ops::matmul_i8(q, &a, &b, None, None, DType::I32)
        .unwrap()
        .to_vec::<i32>(q)
        .unwrap();
    assert_eq!(
        got.iter().map(|&v| v as i64).collect::<Vec<_>>(),
        exact,
        "on {id}: matmul_i8"
    );
    let rs = Tensor::from_slice(q, &[0.5f32, -2.0, 0.25], &[m]).unwrap();
    let cs = Tensor::from_slice(q, &[1.0f32, 0.125, -1.0, 4.0, 0.5], &[n]).unwrap();
    let scaled = ops::matmul_i8(q, &a, &b, Some(&rs), Some(&cs), DType::F32)
        .unwrap()
        .to_vec::<f32>(q)
        .unwrap();
    let (rv, cv) = ([0.5f32, -2.0, 0.25], [1.0f32, 0.125, -1.0, 4.0, 0.5]);
    for t in 0..m * n {
        // Powers of two: every step is exact.
        let want = exact[t] as f32 * rv[t / n] * cv[t % n];
        assert_eq!(scaled[t], want, "on {id}: scaled matmul_i8 element {t}");
    }
    // -128 * -128 summed 2^17 + 8 times is 2^31 + 2^17: it wraps to -2^31 + 2^17.
    let long = (1usize << 17) + 8;
    let a = Tensor::from_slice(q, &vec![-128i8; long], &[1, long]).unwrap();
    let b = Tensor::from_slice(q, &vec![-128i8; long], &[long, 1]).unwrap();
    match ops::matmul_i8(q, &a, &b, None, None, DType::I32).and_then(|t| t.to_vec::<i32>(q)) {
        Ok(v) => assert_eq!(v, vec![i32::MIN + (1 << 17)], "on {id}: wrapping"),
        // The WGSL kernels keep loops below the 65535 iterations lavapipe allows.
        Err(e) if d.info().id.starts_with("vulkan") => {
            assert_eq!(e.code(), ErrorCode::Unsupported, "on {id}: {e}")
        }
        Err(e) => panic!("on {id}: {e}"),
    }
}

/// attention_backward against central differences of attention (f32, step 1e-2) for every
/// element of q, k and v, under grouped-query heads, bottom-right causal masking, a soft cap
/// and an additive mask.
fn attention_gradients_match_finite_differences(d: &dyn Device, q: &dyn Queue) {
    use ops::{AttentionOptions, CausalAlign};
    let id = &d.info().id;
    let (qs, ks, vs) = ([1usize, 2, 3, 4], [1usize, 1, 5, 4], [1usize, 1, 5, 3]);
    let val = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7 + seed * 13) % 17) as f32 - 8.0) / 9.0)
            .collect()
    };
    let (qv, kv, vv) = (val(24, 1), val(20, 2), val(15, 3));
    let gv = val(18, 4);
    let mv: Vec<f32> = (0..15)
        .map(|i| if i % 4 == 1 { -1.5 } else { 0.25 })
        .collect();
    let o = AttentionOptions {
        causal: true,
        align: CausalAlign::BottomRight,
        softcap: 2.0,
        ..AttentionOptions::default()
    };
    let t = |v: &[f32], s: &[usize]| Tensor::from_slice(q, v, s).unwrap();
    let mask = t(&mv, &[3, 5]);
    let loss = |qv: &[f32], kv: &[f32], vv: &[f32]| -> f64 {
        let out = ops::attention_masked(q, &t(qv, &qs), &t(kv, &ks), &t(vv, &vs), &mask, &o)
            .unwrap()
            .to_vec::<f32>(q)
            .unwrap();
        out.iter()
            .zip(&gv)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum()
    };
    let (dq, dk, dv) = ops::attention_backward(
        q,
        &t(&gv, &[1, 2, 3, 3]),
        &t(&qv, &qs),
        &t(&kv, &ks),
        &t(&vv, &vs),
        Some(&mask),
        &o,
    )
    .unwrap();
    let h = 1e-2f32;
    for (name, base, grad) in [("dq", &qv, dq), ("dk", &kv, dk), ("dv", &vv, dv)] {
        let got = grad.to_vec::<f32>(q).unwrap();
        for i in 0..base.len() {
            let bump = |s: f32| {
                let mut x = base.clone();
                x[i] += s;
                x
            };
            let (up, down) = (bump(h), bump(-h));
            let diff = match name {
                "dq" => loss(&up, &kv, &vv) - loss(&down, &kv, &vv),
                "dk" => loss(&qv, &up, &vv) - loss(&qv, &down, &vv),
                _ => loss(&qv, &kv, &up) - loss(&qv, &kv, &down),
            } / (2.0 * h as f64);
            assert!(
                (got[i] as f64 - diff).abs() <= 2e-3 + 1e-2 * diff.abs(),
                "on {id}: {name}[{i}] = {} but the central difference is {diff}",
                got[i]
            );
        }
    }
}

fn device(backend: &dyn Backend) -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(backend)
}

on_each_device!(
    fill_rounds_once,
    arange_rounds_once,
    cast_rounds_once,
    layer_norm_of_a_constant_row_is_nan,
    arange_takes_the_whole_i64_range,
    random_bits_match_the_recipe,
    random_draws_have_their_distributions,
    attention_options_match_their_definitions,
    conv_matches_its_definition,
    conv_gradients_are_adjoint,
    pool_gradients_are_adjoint,
    cross_entropy_matches_its_definition,
    norm_gradients_match_finite_differences,
    attention_mask_matches_its_definition,
    pools_match_their_definition,
    resampling_matches_its_definition,
    group_norm_matches_layer_norm,
    batch_norm_matches_its_definition,
    quantized_ops_match_their_definitions,
    attention_gradients_match_finite_differences,
);
