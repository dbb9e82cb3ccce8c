//! The CPU's vectorised paths that the conformance suite's small cases do not reach: the fused
//! row kernels of `softmax`, `log_softmax`, `layer_norm` and `rms_norm` on long rows (with
//! infinities and NaNs in some rows), the polynomial `exp`, `tanh`, `sigmoid`, `erf` and `gelu`
//! over the whole f32 range, and the tiled copy of transposed views, against f64 (or exact)
//! references and the contract's tolerances (docs/ops.md section 7).

use anyaccel::hal::{Queue, Tensor};
use anyaccel::AttrValue;

fn queue() -> std::sync::Arc<dyn Queue> {
    let rt = anyaccel::Runtime::new();
    rt.device("cpu:0").unwrap().create_queue().unwrap()
}

fn call(q: &dyn Queue, op: &str, ins: &[&Tensor], attrs: &[(String, AttrValue)]) -> Vec<f32> {
    let ins: Vec<Option<&Tensor>> = ins.iter().map(|t| Some(*t)).collect();
    let out = anyaccel::ops::call(q, op, &ins, attrs).unwrap().remove(0);
    out.to_vec::<f32>(q).unwrap()
}

/// `|got - want| <= tol + tol * |want|`, infinities equal, NaN for NaN.
fn close(got: f32, want: f64, tol: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    let want32 = want as f32;
    if want32.is_infinite() {
        return got == want32;
    }
    (got as f64 - want).abs() <= tol + tol * want.abs()
}

/// Deterministic values in (-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn fused_row_kernels_match_f64_on_long_rows() {
    let q = queue();
    let (rows, len) = (6, 3001);
    let mut x: Vec<f32> = noise(rows * len, 1).iter().map(|v| 30.0 * v).collect();
    // Row 1 sits far from zero with a small spread (the mean's digits matter), row 2 holds
    // +inf, row 3 a NaN, row 4 is all -inf.
    for v in &mut x[len..2 * len] {
        *v = 1000.0 + *v / 300.0;
    }
    x[2 * len + 17] = f32::INFINITY;
    x[3 * len + 5] = f32::NAN;
    x[4 * len..5 * len].fill(f32::NEG_INFINITY);
    let t = Tensor::from_slice(&*q, &x, &[rows, len]).unwrap();
    let w: Vec<f32> = noise(len, 2).iter().map(|v| 1.0 + v / 2.0).collect();
    let b = noise(len, 3);
    let (wt, bt) = (
        Tensor::from_slice(&*q, &w, &[len]).unwrap(),
        Tensor::from_slice(&*q, &b, &[len]).unwrap(),
    );
    let axis = [("axis".to_string(), AttrValue::Int(-1))];
    let eps = [("eps".to_string(), AttrValue::Float(1e-5))];
    let outputs = [
        ("softmax", call(&*q, "softmax", &[&t], &axis)),
        ("log_softmax", call(&*q, "log_softmax", &[&t], &axis)),
        ("layer_norm", call(&*q, "layer_norm", &[&t, &wt, &bt], &eps)),
        ("rms_norm", call(&*q, "rms_norm", &[&t, &wt], &eps)),
        ("layer_norm_plain", call(&*q, "layer_norm", &[&t], &eps)),
    ];
    for (name, got) in outputs {
        for r in 0..rows {
            let row: Vec<f64> = x[r * len..(r + 1) * len]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let n = len as f64;
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let ms = row.iter().map(|v| v * v).sum::<f64>() / n;
            for (j, &v) in row.iter().enumerate() {
                let want = match name {
                    "softmax" => (v - m).exp() / s,
                    "log_softmax" => v - m - s.ln(),
                    "layer_norm" => (v - mean) / (var + 1e-5).sqrt() * w[j] as f64 + b[j] as f64,
                    "rms_norm" => v / (ms + 1e-5).sqrt() * w[j] as f64,
                    _ => (v - mean) / (var + 1e-5).sqrt(),
                };
                let g = got[r * len + j];
                assert!(
                    close(g, want, 1e-4),
                    "{name}[{r}][{j}] = {g}, expected {want}"
                );
            }
        }
    }
}

#[test]
fn polynomial_unary_ops_match_f64_over_the_f32_range() {
    let q = queue();
    // Every 4099th bit pattern of both signs, then the edges.
    let mut x: Vec<f32> = (0..u32::MAX)
        .step_by(4099 * 64)
        .map(f32::from_bits)
        .collect();
    x.extend([
        0.0, -0.0, 88.72, 88.73, -87.3, -103.9, -104.5, 0.625, -0.625, 0.5, -0.5,
    ]);
    x.extend([
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        1e-30,
    ]);
    let t = Tensor::from_slice(&*q, &x, &[x.len()]).unwrap();
    let gelu_tanh = |v: f64| {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
    };
    let tanh_attr = [("approximate".to_string(), AttrValue::Str("tanh".into()))];
    type Reference = fn(f64) -> f64;
    type Attrs = [(String, AttrValue)];
    let cases: [(&str, &Attrs, Reference); 7] = [
        ("exp", &[], f64::exp),
        ("tanh", &[], f64::tanh),
        ("sigmoid", &[], |v| 1.0 / (1.0 + (-v).exp())),
        ("silu", &[], |v| v / (1.0 + (-v).exp())),
        ("erf", &[], libm::erf),
        ("gelu", &[], |v| {
            0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2))
        }),
        ("gelu", &tanh_attr, |v| v),
    ];
    for (i, (op, attrs, reference)) in cases.into_iter().enumerate() {
        let got = call(&*q, op, &[&t], attrs);
        for (&v, &g) in x.iter().zip(&got) {
            let want = if i == 6 {
                gelu_tanh(v as f64)
            } else {
                reference(v as f64)
            };
            // The f32 formula's own overflow: x^3 is +-inf beyond 7e12, where the f64 form
            // still gives x (or -0).
            if i == 6 && (v as f64).abs() > 1e12 {
                continue;
            }
            // silu(-inf) is -inf * 0 in the contract's formula, NaN.
            if op == "silu" && v == f32::NEG_INFINITY {
                assert!(g.is_nan());
                continue;
            }
            assert!(
                close(g, want, 1e-5),
                "{op}({v:e}) = {g:e}, expected {want:e}"
            );
        }
    }
}

/// Copies of `shape` permuted by `perm` for values of one dtype, compared element by element
/// with the view's own indexing.
fn check_transposes<T: anyaccel::hal::Element + PartialEq + std::fmt::Debug + Copy>(
    q: &dyn Queue,
    make: impl Fn(usize) -> T,
) {
    // (shape, permutation): plain 2-d transposes on and off the tile edge, a batch of them, a
    // transpose of the outer and inner of three dimensions.
    let cases: [(&[usize], &[usize]); 4] = [
        (&[67, 45], &[1, 0]),
        (&[16, 16], &[1, 0]),
        (&[3, 37, 53], &[0, 2, 1]),
        (&[40, 3, 33], &[2, 1, 0]),
    ];
    for (shape, perm) in cases {
        let n: usize = shape.iter().product();
        // One element in front, so that the view has an offset.
        let data: Vec<T> = (0..n + 1).map(&make).collect();
        let flat = Tensor::from_slice(q, &data, &[n + 1]).unwrap();
        let t = flat.narrow(0, 1, n).unwrap().reshape(shape).unwrap();
        let view = t.permute(perm).unwrap();
        let out = anyaccel::ops::call(q, "copy", &[Some(&view)], &[])
            .unwrap()
            .remove(0);
        let got = out.to_vec::<T>(q).unwrap();
        let vshape = view.shape().to_vec();
        for (k, g) in got.iter().enumerate() {
            let mut rem = k;
            let mut src = view.desc().offset;
            for d in (0..vshape.len()).rev() {
                src += (rem % vshape[d]) * view.strides()[d];
                rem /= vshape[d];
            }
            assert_eq!(*g, data[src], "{shape:?} permuted {perm:?}: element {k}");
        }
    }
}

#[test]
fn transposed_copies_match_element_by_element() {
    let q = queue();
    check_transposes::<f32>(&*q, |i| i as f32 * 0.5);
    check_transposes::<anyaccel::hal::f16>(&*q, |i| anyaccel::hal::f16::from_f32(i as f32));
    check_transposes::<i64>(&*q, |i| i as i64 * 1_000_000_007);
    check_transposes::<u8>(&*q, |i| (i * 131 % 251) as u8);
}

/// `attention` in f64 for q [B, H, Lq, D], k and v [B, Hk, Lk, D/Dv] (contiguous), an optional
/// additive mask [Lq, Lk], causal alignment to the end of the keys and a window.
#[allow(clippy::too_many_arguments)]
fn attention_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[f32]>,
    [b, h, hk, lq, lk, d, dv]: [usize; 7],
    causal: bool,
    window: usize,
    softcap: f64,
) -> Vec<f64> {
    let mut out = vec![0f64; b * h * lq * dv];
    let scale = 1.0 / (d as f64).sqrt();
    for bi in 0..b {
        for hi in 0..h {
            let kh = hi / (h / hk);
            for i in 0..lq {
                let pos = (i + lk - lq) as i64;
                let seen = |j: usize| {
                    !causal || (j as i64 <= pos && (window == 0 || j as i64 > pos - window as i64))
                };
                let qr = &q[((bi * h + hi) * lq + i) * d..][..d];
                let logits: Vec<f64> = (0..lk)
                    .map(|j| {
                        if !seen(j) {
                            return f64::NEG_INFINITY;
                        }
                        let kr = &k[((bi * hk + kh) * lk + j) * d..][..d];
                        let dot: f64 = qr.iter().zip(kr).map(|(&a, &c)| a as f64 * c as f64).sum();
                        let mut l = scale * dot;
                        if softcap > 0.0 {
                            l = softcap * (l / softcap).tanh();
                        }
                        l + mask.map_or(0.0, |m| m[i * lk + j] as f64)
                    })
                    .collect();
                let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if m == f64::NEG_INFINITY {
                    continue;
                }
                let p: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
                let total: f64 = p.iter().sum();
                for c in 0..dv {
                    let acc: f64 = (0..lk)
                        .map(|j| p[j] * v[((bi * hk + kh) * lk + j) * dv + c] as f64)
                        .sum();
                    out[((bi * h + hi) * lq + i) * dv + c] = acc / total;
                }
            }
        }
    }
    out
}

#[test]
fn blocked_attention_matches_f64_beyond_one_query_block() {
    let q = queue();
    // Two batches, four query heads on two key/value heads, 130 query rows (three blocks of
    // 64) over 150 keys.
    let dims @ [b, h, hk, lq, lk, d, dv] = [2, 4, 2, 130, 150, 24, 20];
    let hq = noise(b * h * lq * d, 4);
    let hk_ = noise(b * hk * lk * d, 5);
    let hv = noise(b * hk * lk * dv, 6);
    let mut hm: Vec<f32> = noise(lq * lk, 7).iter().map(|v| 2.0 * v).collect();
    // Some keys masked out entirely for some rows.
    for i in 0..lq {
        hm[i * lk + (i * 7) % lk] = f32::NEG_INFINITY;
    }
    let t = |data: &[f32], shape: &[usize]| Tensor::from_slice(&*q, data, shape).unwrap();
    let (tq, tv, tm) = (
        t(&hq, &[b, h, lq, d]),
        t(&hv, &[b, hk, lk, dv]),
        t(&hm, &[lq, lk]),
    );
    // k stored as [B, Hk, D, Lk] and read through a transposed view.
    let mut kt = vec![0f32; hk_.len()];
    for bh in 0..b * hk {
        for j in 0..lk {
            for c in 0..d {
                kt[(bh * d + c) * lk + j] = hk_[(bh * lk + j) * d + c];
            }
        }
    }
    let tk_store = t(&kt, &[b, hk, d, lk]);
    let tk = tk_store.transpose(2, 3).unwrap();
    let int = |name: &str, v: i64| (name.to_string(), AttrValue::Int(v));
    let bottom_right = (
        "causal_align".to_string(),
        AttrValue::Str("bottom_right".into()),
    );
    let softcap = ("softcap".to_string(), AttrValue::Float(3.0));
    // (attributes, with the mask, causal, window, soft cap)
    type Case = (Vec<(String, AttrValue)>, bool, bool, usize, f64);
    let cases: Vec<Case> = vec![
        (vec![], false, false, 0, 0.0),
        (
            vec![int("causal", 1), bottom_right.clone()],
            false,
            true,
            0,
            0.0,
        ),
        (
            vec![int("causal", 1), bottom_right.clone(), int("window", 40)],
            true,
            true,
            40,
            0.0,
        ),
        (vec![softcap], true, false, 0, 3.0),
    ];
    for (attrs, with_mask, causal, window, cap) in cases {
        let mut ins = vec![Some(&tq), Some(&tk), Some(&tv)];
        if with_mask {
            ins.push(Some(&tm));
        }
        let got = anyaccel::ops::call(&*q, "attention", &ins, &attrs)
            .unwrap()
            .remove(0)
            .to_vec::<f32>(&*q)
            .unwrap();
        let mask = with_mask.then_some(&hm[..]);
        let want = attention_reference(&hq, &hk_, &hv, mask, dims, causal, window, cap);
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(close(g, w, 1e-4), "{attrs:?}: out[{i}] = {g}, expected {w}");
        }
    }
}
