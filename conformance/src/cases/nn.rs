//! The cases of the neural-network ops: `layer_norm`, `rms_norm`, `matmul`, `rope` and
//! `attention`.

use anyaccel_hal::{AttrValue, DType};

use super::{attr, input, value_classes, values_tag, Builder, Layout, PoolWindows, Values, C};

pub(super) fn norm_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    let rms = op == "rms_norm";
    for &d in dtypes {
        for (tag, shape, layout) in [
            ("8x67", &[8, 67][..], C),
            ("300x97", &[300, 97][..], C),
            ("one", &[1][..], C),
            ("3x1", &[3, 1][..], C),
            ("t33x17", &[33, 17][..], Layout::Transposed),
            ("2x3x16", &[2, 3, 16][..], Layout::Offset(1)),
        ] {
            let last = *shape.last().unwrap_or(&1);
            let params: Vec<(&str, usize)> = if rms {
                vec![("", 1), ("w_", 2)]
            } else {
                vec![("", 1), ("w_", 2), ("wb_", 3)]
            };
            for (ptag, count) in params {
                for v in value_classes(d, false) {
                    let mut inputs = vec![input(d, shape, layout, v)];
                    for _ in 1..count {
                        inputs.push(input(d, &[last], C, Values::Normal));
                    }
                    let attrs = vec![attr("eps", AttrValue::Float(1e-5))];
                    b.push(
                        op,
                        d.name().into(),
                        &[d],
                        &format!("{ptag}{tag}.{}", values_tag(v)),
                        inputs,
                        attrs,
                        C,
                        false,
                    );
                }
            }
        }
    }
    b.push(
        op,
        "f32".into(),
        &[DType::F32],
        "large",
        vec![input(DType::F32, &[16385, 1024], C, Values::Normal)],
        vec![attr("eps", AttrValue::Float(1e-5))],
        C,
        true,
    );
}

pub(super) fn matmul_cases(b: &mut Builder, dtypes: &[DType]) {
    type Mm = (
        &'static str,
        &'static [usize],
        Layout,
        &'static [usize],
        Layout,
        Option<&'static [usize]>,
    );
    let variants: &[Mm] = &[
        ("m64_n33_k17", &[64, 17], C, &[17, 33], C, None),
        ("b2_m64_n33_k17", &[2, 64, 17], C, &[2, 17, 33], C, None),
        (
            "ta_m31_n20_k9",
            &[31, 9],
            Layout::Transposed,
            &[9, 20],
            C,
            None,
        ),
        (
            "tb_m31_n20_k9",
            &[31, 9],
            C,
            &[9, 20],
            Layout::Transposed,
            None,
        ),
        ("bias_m16_n24_k32", &[16, 32], C, &[32, 24], C, Some(&[24])),
        (
            "bcast_batch",
            &[3, 1, 5, 7],
            C,
            &[4, 7, 6],
            C,
            Some(&[1, 6]),
        ),
        ("k0_m3_n4", &[3, 0], C, &[0, 4], C, None),
        ("m1_n1_k1", &[1, 1], C, &[1, 1], C, None),
        (
            "strided_m9_n13_k11",
            &[9, 11],
            Layout::Strided,
            &[11, 13],
            Layout::Offset(3),
            None,
        ),
        ("k4096_m8_n8", &[8, 4096], C, &[4096, 8], C, None),
    ];
    for &d in dtypes {
        for &(tag, sa, la, sb, lb, bias) in variants {
            let mut inputs = vec![
                input(d, sa, la, Values::Normal),
                input(d, sb, lb, Values::Normal),
            ];
            if let Some(bs) = bias {
                inputs.push(input(d, bs, C, Values::Normal));
            }
            b.push(
                "matmul",
                d.name().into(),
                &[d],
                tag,
                inputs,
                vec![],
                C,
                false,
            );
        }
        b.push(
            "matmul",
            d.name().into(),
            &[d],
            "special_m8_n8_k8",
            vec![
                // f16's largest value times 2 fits the f32 accumulator; f32's and bf16's do not.
                input(
                    d,
                    &[8, 8],
                    C,
                    if d == DType::F16 {
                        Values::Special
                    } else {
                        Values::SpecialInRange
                    },
                ),
                input(d, &[8, 8], C, Values::Normal),
            ],
            vec![],
            C,
            false,
        );
        b.push(
            "matmul",
            d.name().into(),
            &[d],
            "outs_m5_n7_k3",
            vec![
                input(d, &[5, 3], C, Values::Normal),
                input(d, &[3, 7], C, Values::Normal),
            ],
            vec![],
            Layout::Strided,
            false,
        );
    }
    let inputs = vec![
        input(DType::F32, &[2, 8192, 1025], C, Values::Normal),
        input(DType::F32, &[1025, 2], C, Values::Normal),
    ];
    b.push(
        "matmul",
        "f32".into(),
        &[DType::F32],
        "large",
        inputs,
        vec![],
        C,
        true,
    );
}

pub(super) fn attention_cases(b: &mut Builder, dtypes: &[DType]) {
    for &d in dtypes {
        for (tag, shape, layout) in [
            ("2x3x16x8", &[2, 3, 16, 8][..], C),
            ("5x2", &[5, 2][..], C),
            ("t16x8", &[16, 8][..], Layout::Transposed),
            ("empty0x4", &[0, 4][..], C),
        ] {
            let s = shape[shape.len() - 2];
            let h = shape[shape.len() - 1] / 2;
            for interleaved in [false, true] {
                for v in value_classes(d, false) {
                    let inputs = vec![
                        input(d, shape, layout, v),
                        input(d, &[s, h], C, Values::Normal),
                        input(d, &[s, h], C, Values::Normal),
                    ];
                    let t = format!(
                        "{}{tag}.{}",
                        if interleaved { "il_" } else { "" },
                        values_tag(v)
                    );
                    b.push(
                        "rope",
                        d.name().into(),
                        &[d],
                        &t,
                        inputs,
                        vec![attr("interleaved", AttrValue::Int(interleaved as i64))],
                        C,
                        false,
                    );
                }
            }
        }
        type Att = (
            &'static str,
            &'static [usize],
            &'static [usize],
            &'static [usize],
            Layout,
        );
        let shapes: &[Att] = &[
            (
                "b2h2_l9_d16",
                &[2, 2, 9, 16],
                &[2, 2, 9, 16],
                &[2, 2, 9, 16],
                C,
            ),
            ("lq4_lk6_dv5", &[1, 4, 8], &[1, 6, 8], &[1, 6, 5], C),
            ("lq1_lk1", &[1, 1], &[1, 1], &[1, 1], C),
            ("tk_l7_d4", &[7, 4], &[7, 4], &[7, 4], Layout::Transposed),
        ];
        for &(tag, q, k, v, layout) in shapes {
            for causal in [false, true] {
                for (stag, scale) in [("", None), ("scale0_3_", Some(0.3))] {
                    for vals in [Values::Normal, Values::Special] {
                        let inputs = vec![
                            input(d, q, C, vals),
                            input(d, k, layout, Values::Normal),
                            input(d, v, C, Values::Normal),
                        ];
                        let mut attrs = vec![attr("causal", AttrValue::Int(causal as i64))];
                        if let Some(s) = scale {
                            attrs.push(attr("scale", AttrValue::Float(s)));
                        }
                        let t = format!(
                            "{}{stag}{tag}.{}",
                            if causal { "causal_" } else { "" },
                            values_tag(vals)
                        );
                        b.push(
                            "attention",
                            d.name().into(),
                            &[d],
                            &t,
                            inputs,
                            attrs,
                            C,
                            false,
                        );
                    }
                }
            }
        }
        attention_v2_cases(b, d);
    }
    let inputs = vec![
        input(DType::F32, &[4, 4096, 1026], C, Values::Normal),
        input(DType::F32, &[4096, 513], C, Values::Normal),
        input(DType::F32, &[4096, 513], C, Values::Normal),
    ];
    b.push(
        "rope",
        "f32".into(),
        &[DType::F32],
        "large",
        inputs,
        vec![],
        C,
        true,
    );
    let inputs = vec![
        input(DType::F32, &[1, 262_145, 64], C, Values::Normal),
        input(DType::F32, &[1, 4, 64], C, Values::Normal),
        input(DType::F32, &[1, 4, 64], C, Values::Normal),
    ];
    b.push(
        "attention",
        "f32".into(),
        &[DType::F32],
        "large",
        inputs,
        vec![attr("causal", AttrValue::Int(0))],
        C,
        true,
    );
}

/// Attention as LLM inference uses it: grouped-query heads (q with 4 or 6 heads over k and v
/// with 2 or 1, transposed keys), causal masking aligned to the end of the keys (a KV cache:
/// more keys than queries, and more queries than keys, where the first rows see no key), a
/// sliding window, and a soft cap on the logits (with large logits that it bounds).
fn attention_v2_cases(b: &mut Builder, d: DType) {
    type Shapes = (&'static str, [&'static [usize]; 3], Layout);
    let shapes: &[Shapes] = &[
        (
            "gqa_h4_kv2",
            [&[2, 4, 5, 8], &[2, 2, 7, 8], &[2, 2, 7, 6]],
            C,
        ),
        (
            "gqa_h6_kv1",
            [&[6, 3, 4], &[1, 9, 4], &[1, 9, 3]],
            Layout::Transposed,
        ),
        ("lq3_lk10", [&[2, 3, 8], &[2, 10, 8], &[2, 10, 8]], C),
        ("lq7_lk4", [&[7, 8], &[4, 8], &[4, 8]], C),
    ];
    let variants: &[(&str, &[(&str, AttrValue)])] = &[
        ("br", &[("causal", AttrValue::Int(1))]),
        (
            "br_w3",
            &[("causal", AttrValue::Int(1)), ("window", AttrValue::Int(3))],
        ),
        (
            "tl_w2",
            &[("causal", AttrValue::Int(1)), ("window", AttrValue::Int(2))],
        ),
        ("cap5", &[("softcap", AttrValue::Float(5.0))]),
        (
            "br_cap0_5",
            &[
                ("causal", AttrValue::Int(1)),
                ("softcap", AttrValue::Float(0.5)),
            ],
        ),
    ];
    for &(tag, [q, k, v], layout) in shapes {
        for &(vtag, extra) in variants {
            let mut attrs: Vec<(String, AttrValue)> =
                extra.iter().map(|(n, v)| attr(n, v.clone())).collect();
            if vtag.starts_with("br") {
                attrs.push(attr("causal_align", AttrValue::Str("bottom_right".into())));
            }
            // Wide values make logits large, where the soft cap matters.
            let vals = if vtag.contains("cap") && d != DType::F16 {
                Values::Wide
            } else {
                Values::Normal
            };
            let vals = if vals == Values::Wide && d == DType::BF16 {
                Values::Normal
            } else {
                vals
            };
            b.push(
                "attention",
                d.name().into(),
                &[d],
                &format!("{vtag}_{tag}.{}", values_tag(vals)),
                vec![
                    input(d, q, C, vals),
                    input(d, k, layout, Values::Normal),
                    input(d, v, C, Values::Normal),
                ],
                attrs,
                C,
                false,
            );
        }
    }
    attention_mask_cases(b, d);
}

/// The optional mask: bool (false leaves the key out; rows left with no key are 0) or of q's
/// dtype (added to the logits), broadcast to the logits, with causal masking and grouped-query
/// heads, in a transposed layout, and with special values (NaN, infinities).
fn attention_mask_cases(b: &mut Builder, d: DType) {
    type MaskCase = (
        &'static str,
        [&'static [usize]; 4],
        bool,
        Layout,
        Values,
        bool,
    );
    #[rustfmt::skip]
    let cases: &[MaskCase] = &[
        ("bool_bcast", [&[2, 3, 5, 8], &[2, 3, 7, 8], &[2, 3, 7, 6], &[5, 7]], true, C, Values::Bool, false),
        ("add_b2x1", [&[2, 2, 4, 8], &[2, 2, 6, 8], &[2, 2, 6, 8], &[2, 1, 4, 6]], false, C, Values::Normal, false),
        ("bool_causal_gqa", [&[1, 4, 5, 8], &[1, 2, 5, 8], &[1, 2, 5, 4], &[1, 4, 5, 5]], true, C, Values::Bool, true),
        ("add_transposed", [&[3, 8], &[4, 8], &[4, 8], &[3, 4]], false, Layout::Transposed, Values::Normal, false),
        ("add_special", [&[2, 6, 8], &[2, 9, 8], &[2, 9, 8], &[2, 6, 9]], false, C, Values::Special, false),
    ];
    for &(tag, [q, k, v, m], is_bool, ml, mv, causal) in cases {
        let mut attrs = Vec::new();
        if causal {
            attrs.push(attr("causal", AttrValue::Int(1)));
        }
        let md = if is_bool { DType::Bool } else { d };
        b.push(
            "attention",
            d.name().into(),
            &[d],
            &format!("mask_{tag}.{}", values_tag(mv)),
            vec![
                input(d, q, C, Values::Normal),
                input(d, k, C, Values::Normal),
                input(d, v, C, Values::Normal),
                input(md, m, ml, mv),
            ],
            attrs,
            C,
            false,
        );
    }
}

/// `attention_backward`: plain, causal (both alignments, a window, rows that see no key),
/// grouped-query heads, a soft cap, an explicit scale, bool and additive masks (broadcast),
/// transposed keys, a strided output, empty rows and a large case.
pub(super) fn attention_backward_cases(b: &mut Builder, dtypes: &[DType]) {
    const T: Layout = Layout::Transposed;
    const S: Layout = Layout::Strided;
    // (tag, [q, k, v], k's layout, the mask (shape, bool), the outputs' layout); the tag
    // names the attributes.
    type Ab = (
        &'static str,
        [&'static [usize]; 3],
        Layout,
        Option<(&'static [usize], bool)>,
        Layout,
    );
    let cases: Vec<Ab> = vec![
        (
            "b2h2_l9_d16",
            [&[2, 2, 9, 16], &[2, 2, 9, 16], &[2, 2, 9, 16]],
            C,
            None,
            C,
        ),
        (
            "causal_b2h2_l9",
            [&[2, 2, 9, 16], &[2, 2, 9, 16], &[2, 2, 9, 16]],
            C,
            None,
            S,
        ),
        (
            "br_gqa_h4_kv2",
            [&[2, 4, 5, 8], &[2, 2, 7, 8], &[2, 2, 7, 6]],
            C,
            None,
            C,
        ),
        (
            "br_w3_gqa_h6_kv1",
            [&[6, 3, 4], &[1, 9, 4], &[1, 9, 3]],
            T,
            None,
            C,
        ),
        ("br_lq7_lk4", [&[7, 8], &[4, 8], &[4, 8]], C, None, C),
        (
            "tl_w2_lq3_lk10",
            [&[2, 3, 8], &[2, 10, 8], &[2, 10, 8]],
            C,
            None,
            C,
        ),
        ("cap0_5", [&[2, 6, 8], &[2, 5, 8], &[2, 5, 4]], C, None, C),
        ("scale0_3_t", [&[7, 4], &[7, 4], &[7, 4]], T, None, C),
        (
            "mask_bool_bcast",
            [&[2, 3, 5, 8], &[2, 3, 7, 8], &[2, 3, 7, 6]],
            C,
            Some((&[5, 7], true)),
            C,
        ),
        (
            "mask_add_b2x1",
            [&[2, 2, 4, 8], &[2, 2, 6, 8], &[2, 2, 6, 8]],
            C,
            Some((&[2, 1, 4, 6], false)),
            C,
        ),
        (
            // Outer batch dims that the mask reads with no single stride.
            "mask_add_outer",
            [&[2, 3, 2, 4, 8], &[2, 3, 2, 6, 8], &[2, 3, 2, 6, 4]],
            C,
            Some((&[2, 1, 1, 4, 6], false)),
            C,
        ),
        (
            "mask_bool_causal_gqa",
            [&[1, 4, 5, 8], &[1, 2, 5, 8], &[1, 2, 5, 4]],
            C,
            Some((&[1, 4, 5, 5], true)),
            C,
        ),
        (
            // Several blocks of query rows (the CPU's f32 path), an additive mask.
            "br_gqa_lq300",
            [&[1, 2, 300, 16], &[1, 1, 280, 16], &[1, 1, 280, 8]],
            C,
            Some((&[300, 280], false)),
            S,
        ),
        (
            "cap0_5_lq260",
            [&[2, 260, 8], &[2, 30, 8], &[2, 30, 8]],
            T,
            None,
            C,
        ),
        (
            "empty_lq0",
            [&[2, 0, 8], &[2, 5, 8], &[2, 5, 8]],
            C,
            None,
            C,
        ),
    ];
    for &d in dtypes {
        for (tag, [q, k, v], kl, mask, ol) in &cases {
            let mut attrs: Vec<(String, AttrValue)> = Vec::new();
            if tag.starts_with("causal")
                || tag.starts_with("br")
                || tag.starts_with("tl")
                || tag.contains("causal")
            {
                attrs.push(attr("causal", AttrValue::Int(1)));
            }
            if tag.starts_with("br") {
                attrs.push(attr("causal_align", AttrValue::Str("bottom_right".into())));
            }
            if let Some(w) = tag
                .strip_prefix("br_w3")
                .map(|_| 3)
                .or(tag.strip_prefix("tl_w2").map(|_| 2))
            {
                attrs.push(attr("window", AttrValue::Int(w)));
            }
            if tag.starts_with("cap") {
                attrs.push(attr("softcap", AttrValue::Float(0.5)));
            }
            if tag.starts_with("scale") {
                attrs.push(attr("scale", AttrValue::Float(0.3)));
            }
            let r = q.len();
            let mut g = q.to_vec();
            g[r - 1] = v[r - 1];
            let mut inputs = vec![
                input(d, &g, C, Values::Normal),
                input(d, q, C, Values::Normal),
                input(d, k, *kl, Values::Normal),
                input(d, v, C, Values::Normal),
            ];
            if let Some((m, is_bool)) = mask {
                let (md, mv) = if *is_bool {
                    (DType::Bool, Values::Bool)
                } else {
                    (d, Values::Normal)
                };
                inputs.push(input(md, m, C, mv));
            }
            b.push(
                "attention_backward",
                d.name().into(),
                &[d],
                &format!("{tag}.normal"),
                inputs,
                attrs,
                *ol,
                false,
            );
        }
    }
    // q, grad and the gradients of more than 2^24 elements.
    b.push(
        "attention_backward",
        "f32".into(),
        &[DType::F32],
        "large",
        vec![
            input(DType::F32, &[16385, 16, 64], C, Values::Normal),
            input(DType::F32, &[16385, 16, 64], C, Values::Normal),
            input(DType::F32, &[16385, 4, 64], C, Values::Normal),
            input(DType::F32, &[16385, 4, 64], C, Values::Normal),
        ],
        vec![],
        C,
        true,
    );
}

/// One convolution case: tag, x (shape, layout), weight (shape, layout), bias (shape, layout),
/// stride, padding, dilation, groups, the output's layout.
type ConvCase = (
    &'static str,
    &'static [usize],
    Layout,
    &'static [usize],
    Layout,
    Option<Layout>,
    &'static [i64],
    &'static [i64],
    &'static [i64],
    i64,
    Layout,
);

pub(super) fn conv_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    const T: Layout = Layout::Transposed;
    const S: Layout = Layout::Strided;
    let some = Some(C);
    #[rustfmt::skip]
    let cases: &[ConvCase] = if op == "conv1d" {
        &[
            ("n2_c3_l17_o4_k3", &[2, 3, 17], C, &[4, 3, 3], C, some, &[], &[], &[], 1, C),
            ("s2_p1_d2", &[1, 4, 20], C, &[5, 4, 3], C, None, &[2], &[1], &[2], 1, C),
            ("groups2", &[2, 4, 9], C, &[6, 2, 3], C, some, &[1], &[0], &[1], 2, C),
            ("depthwise_k5_p2", &[1, 6, 12], C, &[6, 1, 5], C, some, &[], &[2], &[], 6, C),
            ("k1", &[3, 5, 7], C, &[2, 5, 1], C, some, &[], &[], &[], 1, C),
            ("strided_views", &[2, 3, 10], S, &[4, 3, 2], Layout::Offset(2), Some(Layout::Offset(1)), &[3], &[2], &[], 1, S),
            ("empty_n0", &[0, 3, 8], C, &[2, 3, 3], C, some, &[], &[], &[], 1, C),
            ("c0", &[2, 0, 6], C, &[3, 0, 2], C, some, &[], &[], &[], 1, C),
            ("k_spans_padded", &[1, 2, 3], C, &[2, 2, 5], C, None, &[], &[1], &[], 1, C),
            ("c128_k3", &[1, 128, 16], C, &[8, 128, 3], C, some, &[], &[1], &[], 1, C),
            ("o32_n2_l37_p1", &[2, 4, 37], C, &[32, 4, 3], C, some, &[], &[1], &[], 1, C),
        ]
    } else {
        &[
            ("n2_c3_8x9_o4_k3", &[2, 3, 8, 9], C, &[4, 3, 3, 3], C, some, &[], &[], &[], 1, C),
            ("s2_p1", &[1, 4, 9, 10], C, &[6, 4, 3, 3], C, None, &[2], &[1], &[], 1, C),
            ("asym_s1x2_p2x1_d2x1", &[2, 2, 11, 7], C, &[3, 2, 3, 2], C, some, &[1, 2], &[2, 1], &[2, 1], 1, C),
            ("groups2", &[1, 4, 6, 6], C, &[6, 2, 3, 3], C, some, &[], &[], &[], 2, C),
            ("depthwise_p1", &[2, 8, 7, 7], C, &[8, 1, 3, 3], C, some, &[], &[1], &[], 8, C),
            ("depthwise_x2", &[1, 3, 5, 6], C, &[6, 1, 2, 2], C, None, &[], &[], &[], 3, C),
            ("pointwise", &[2, 5, 4, 4], C, &[7, 5, 1, 1], C, some, &[], &[], &[], 1, C),
            ("views", &[1, 3, 7, 9], T, &[2, 3, 3, 3], S, Some(Layout::Offset(1)), &[], &[1, 0], &[], 1, C),
            ("out_strided", &[1, 2, 5, 6], C, &[3, 2, 2, 3], C, some, &[2, 1], &[], &[1, 2], 1, S),
            ("empty_n0", &[0, 3, 5, 5], C, &[2, 3, 3, 3], C, some, &[], &[], &[], 1, C),
            ("c0", &[1, 0, 4, 4], C, &[3, 0, 2, 2], C, some, &[], &[], &[], 1, C),
            ("stem_k7_s2_p3", &[1, 3, 32, 32], C, &[16, 3, 7, 7], C, some, &[2], &[3], &[], 1, C),
            ("c64_k3_p1", &[1, 64, 8, 8], C, &[32, 64, 3, 3], C, None, &[], &[1], &[], 1, C),
            // Whole blocks of 32 output channels (the CPU's channel-vector kernel): rows in
            // several chunks and bands, groups with stride and dilation.
            ("n2_o32_30x45_out_strided", &[2, 3, 30, 45], C, &[32, 3, 3, 3], C, some, &[], &[1], &[], 1, S),
            ("o64_g2_s2_p2_d2", &[1, 6, 13, 31], C, &[64, 3, 3, 3], C, some, &[2], &[2], &[2], 2, C),
        ]
    };
    for &d in dtypes {
        for &(tag, xs, xl, ws, wl, bias, stride, padding, dilation, groups, ol) in cases {
            let o = ws[0];
            let classes: &[Values] = if tag.starts_with("n2_") {
                &[Values::Normal, Values::Special]
            } else {
                &[Values::Normal]
            };
            for &v in classes {
                let mut inputs = vec![input(d, xs, xl, v), input(d, ws, wl, Values::Normal)];
                if let Some(bl) = bias {
                    inputs.push(input(d, &[o], bl, Values::Normal));
                }
                b.push(
                    op,
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", values_tag(v)),
                    inputs,
                    conv_attrs(
                        &[
                            ("stride", stride),
                            ("padding", padding),
                            ("dilation", dilation),
                        ],
                        groups,
                    ),
                    ol,
                    false,
                );
            }
        }
    }
    // More than 2^24 elements in x and in the output.
    let (x, w): (&[usize], &[usize]) = if op == "conv1d" {
        (&[1, 1, (1 << 24) + 5], &[1, 1, 3])
    } else {
        (&[1, 1, 4099, 4099], &[1, 1, 3, 3])
    };
    push_large_conv(b, op, x, w, vec![]);
}

/// A convolution's large case: f32 x, weight and a bias of one channel.
fn push_large_conv(
    b: &mut Builder,
    op: &'static str,
    x: &[usize],
    w: &[usize],
    attrs: Vec<(String, AttrValue)>,
) {
    b.push(
        op,
        "f32".into(),
        &[DType::F32],
        "large",
        vec![
            input(DType::F32, x, C, Values::Normal),
            input(DType::F32, w, C, Values::Normal),
            input(DType::F32, &[1], C, Values::Normal),
        ],
        attrs,
        C,
        true,
    );
}

/// The attributes of a convolution case: the lists that are not empty, and groups unless 1.
fn conv_attrs(lists: &[(&str, &[i64])], groups: i64) -> Vec<(String, AttrValue)> {
    let mut attrs: Vec<_> = lists
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|&(name, v)| attr(name, super::ints(v)))
        .collect();
    if groups != 1 {
        attrs.push(attr("groups", AttrValue::Int(groups)));
    }
    attrs
}

/// One transposed-convolution case: tag, x (shape, layout), weight (shape, layout), the bias's
/// layout (or none), stride, padding, output_padding, dilation, groups, the output's layout.
type ConvTransposeCase = (
    &'static str,
    &'static [usize],
    Layout,
    &'static [usize],
    Layout,
    Option<Layout>,
    [&'static [i64]; 4],
    i64,
    Layout,
);

pub(super) fn conv_transpose_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    const T: Layout = Layout::Transposed;
    const S: Layout = Layout::Strided;
    let some = Some(C);
    #[rustfmt::skip]
    let cases: &[ConvTransposeCase] = if op == "conv_transpose1d" {
        &[
            ("n2_c3_l9_o4_k3", &[2, 3, 9], C, &[3, 4, 3], C, some, [&[], &[], &[], &[]], 1, C),
            ("s2_p1_op1", &[1, 4, 7], C, &[4, 3, 3], C, None, [&[2], &[1], &[1], &[]], 1, C),
            ("s3_d2", &[2, 2, 5], C, &[2, 3, 3], C, some, [&[3], &[0], &[], &[2]], 1, C),
            ("op_below_dilation", &[1, 2, 6], C, &[2, 2, 3], C, some, [&[1], &[1], &[1], &[2]], 1, C),
            ("groups2", &[2, 4, 6], C, &[4, 3, 3], C, some, [&[2], &[], &[], &[]], 2, C),
            ("depthwise_k4_s2_p1", &[1, 6, 8], C, &[6, 1, 4], C, some, [&[2], &[1], &[], &[]], 6, C),
            ("strided_views", &[2, 3, 10], S, &[3, 4, 2], Layout::Offset(2), Some(Layout::Offset(1)), [&[3], &[2], &[], &[]], 1, S),
            ("empty_n0", &[0, 3, 8], C, &[3, 2, 3], C, some, [&[], &[], &[], &[]], 1, C),
            ("cin0", &[2, 0, 5], C, &[0, 3, 2], C, some, [&[], &[], &[], &[]], 1, C),
            ("c128_k3", &[1, 128, 16], C, &[128, 8, 3], C, some, [&[2], &[1], &[1], &[]], 1, C),
        ]
    } else {
        &[
            ("n2_c3_5x6_o4_k3", &[2, 3, 5, 6], C, &[3, 4, 3, 3], C, some, [&[], &[], &[], &[]], 1, C),
            ("s2_p1_op1", &[1, 4, 5, 5], C, &[4, 3, 3, 3], C, None, [&[2], &[1], &[1], &[]], 1, C),
            ("asym_s2x1_p1x0_d1x2", &[2, 2, 4, 5], C, &[2, 3, 3, 2], C, some, [&[2, 1], &[1, 0], &[], &[1, 2]], 1, C),
            ("op_below_dilation", &[1, 2, 4, 4], C, &[2, 2, 3, 3], C, some, [&[1], &[], &[1, 0], &[2]], 1, C),
            ("groups2", &[1, 4, 5, 5], C, &[4, 3, 3, 3], C, some, [&[], &[1], &[], &[]], 2, C),
            ("depthwise_p1", &[2, 6, 6, 6], C, &[6, 1, 3, 3], C, some, [&[], &[1], &[], &[]], 6, C),
            ("k4_s2_p1", &[2, 8, 4, 4], C, &[8, 4, 4, 4], C, some, [&[2], &[1], &[], &[]], 1, C),
            ("views", &[1, 3, 7, 9], T, &[3, 2, 3, 3], S, Some(Layout::Offset(1)), [&[], &[1, 0], &[], &[]], 1, C),
            ("out_strided", &[1, 2, 5, 6], C, &[2, 3, 2, 3], C, some, [&[2, 1], &[], &[1, 0], &[]], 1, S),
            ("empty_n0", &[0, 3, 4, 4], C, &[3, 2, 3, 3], C, some, [&[], &[], &[], &[]], 1, C),
            ("cin0", &[1, 0, 3, 3], C, &[0, 2, 2, 2], C, some, [&[], &[], &[], &[]], 1, C),
            ("c64_k3_s2", &[1, 64, 8, 8], C, &[64, 16, 3, 3], C, None, [&[2], &[1], &[1], &[]], 1, C),
        ]
    };
    for &d in dtypes {
        for &(tag, xs, xl, ws, wl, bias, [stride, padding, out_pad, dilation], groups, ol) in cases
        {
            let cout = ws[1] * groups as usize;
            let classes: &[Values] = if tag.starts_with("n2_") {
                &[Values::Normal, Values::Special]
            } else {
                &[Values::Normal]
            };
            for &v in classes {
                let mut inputs = vec![input(d, xs, xl, v), input(d, ws, wl, Values::Normal)];
                if let Some(bl) = bias {
                    inputs.push(input(d, &[cout], bl, Values::Normal));
                }
                b.push(
                    op,
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", values_tag(v)),
                    inputs,
                    conv_attrs(
                        &[
                            ("stride", stride),
                            ("padding", padding),
                            ("output_padding", out_pad),
                            ("dilation", dilation),
                        ],
                        groups,
                    ),
                    ol,
                    false,
                );
            }
        }
    }
    // More than 2^24 elements in the output.
    let (x, w): (&[usize], &[usize]) = if op == "conv_transpose1d" {
        (&[1, 1, (1 << 23) + 5], &[1, 1, 2])
    } else {
        (&[1, 1, 2050, 2050], &[1, 1, 2, 2])
    };
    push_large_conv(b, op, x, w, vec![attr("stride", super::ints(&[2]))]);
}

/// One convolution-gradient case: tag, x's shape, weight's shape, the layouts of the two
/// inputs (grad, then weight or x), stride, padding, dilation, groups, the result's layout.
type ConvGradCase = (
    &'static str,
    &'static [usize],
    &'static [usize],
    [Layout; 2],
    [&'static [i64]; 3],
    i64,
    Layout,
);

/// The output sizes of a convolution of x over a weight (the case tables hold valid ones).
fn conv_out_shape(
    xs: &[usize],
    ws: &[usize],
    [stride, padding, dilation]: [&[i64]; 3],
) -> Vec<usize> {
    let at = |v: &[i64], d: usize, default: i64| match v {
        [] => default,
        [one] => *one,
        _ => v[d],
    } as usize;
    let mut out = vec![xs[0], ws[0]];
    for d in 0..xs.len() - 2 {
        let padded = xs[2 + d] + 2 * at(padding, d, 0);
        let extent = at(dilation, d, 1) * (ws[2 + d] - 1) + 1;
        out.push((padded - extent) / at(stride, d, 1) + 1);
    }
    out
}

/// `conv{1,2}d_backward_input` (grad, weight) and `conv{1,2}d_backward_weight` (grad, x).
pub(super) fn conv_backward_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    const T: Layout = Layout::Transposed;
    const S: Layout = Layout::Strided;
    const CC: [Layout; 2] = [C, C];
    let data = op.ends_with("_input");
    #[rustfmt::skip]
    let cases: &[ConvGradCase] = if op.starts_with("conv1d") {
        &[
            ("n2_c3_l17_o4_k3", &[2, 3, 17], &[4, 3, 3], CC, [&[], &[], &[]], 1, C),
            ("s2_p1_d2", &[1, 4, 20], &[5, 4, 3], CC, [&[2], &[1], &[2]], 1, C),
            ("s3_unreached", &[2, 2, 11], &[3, 2, 2], CC, [&[3], &[], &[]], 1, C),
            ("groups2", &[2, 4, 9], &[6, 2, 3], CC, [&[1], &[0], &[1]], 2, C),
            ("depthwise_k5_p2", &[1, 6, 12], &[6, 1, 5], CC, [&[], &[2], &[]], 6, C),
            ("strided_views", &[2, 3, 10], &[4, 3, 2], [S, Layout::Offset(2)], [&[3], &[2], &[]], 1, S),
            ("empty_n0", &[0, 3, 8], &[2, 3, 3], CC, [&[], &[], &[]], 1, C),
            ("c128_k3", &[1, 128, 16], &[8, 128, 3], CC, [&[], &[1], &[]], 1, C),
        ]
    } else {
        &[
            ("n2_c3_8x9_o4_k3", &[2, 3, 8, 9], &[4, 3, 3, 3], CC, [&[], &[], &[]], 1, C),
            ("s2_p1", &[1, 4, 9, 10], &[6, 4, 3, 3], CC, [&[2], &[1], &[]], 1, C),
            ("s3_unreached", &[1, 2, 8, 8], &[3, 2, 2, 2], CC, [&[3], &[], &[]], 1, C),
            ("asym_s1x2_p2x1_d2x1", &[2, 2, 11, 7], &[3, 2, 3, 2], CC, [&[1, 2], &[2, 1], &[2, 1]], 1, C),
            ("groups2", &[1, 4, 6, 6], &[6, 2, 3, 3], CC, [&[], &[], &[]], 2, C),
            ("depthwise_p1", &[2, 8, 7, 7], &[8, 1, 3, 3], CC, [&[], &[1], &[]], 8, C),
            ("pointwise", &[2, 5, 4, 4], &[7, 5, 1, 1], CC, [&[], &[], &[]], 1, C),
            ("views", &[1, 3, 7, 9], &[2, 3, 3, 3], [T, S], [&[], &[1, 0], &[]], 1, C),
            ("out_strided", &[1, 2, 5, 6], &[3, 2, 2, 3], [Layout::Offset(1), C], [&[2, 1], &[], &[1, 2]], 1, S),
            ("empty_n0", &[0, 3, 5, 5], &[2, 3, 3, 3], CC, [&[], &[], &[]], 1, C),
            ("stem_k7_s2_p3", &[1, 3, 32, 32], &[16, 3, 7, 7], CC, [&[2], &[3], &[]], 1, C),
            ("c64_k3_p1", &[1, 64, 8, 8], &[32, 64, 3, 3], CC, [&[], &[1], &[]], 1, C),
            ("n2_c32_30x45_out_strided", &[2, 32, 30, 45], &[4, 32, 3, 3], CC, [&[], &[1], &[]], 1, S),
        ]
    };
    let size_attr = if data { "input_size" } else { "weight_size" };
    for &d in dtypes {
        for &(tag, xs, ws, [gl, ol_in], params, groups, ol) in cases {
            let gs = conv_out_shape(xs, ws, params);
            let (other, size) = if data { (ws, xs) } else { (xs, ws) };
            let classes: &[Values] = if tag.starts_with("n2_") {
                &[Values::Normal, Values::Special]
            } else {
                &[Values::Normal]
            };
            for &v in classes {
                let size: Vec<i64> = size.iter().map(|&s| s as i64).collect();
                let mut attrs = vec![attr(size_attr, super::ints(&size))];
                let [stride, padding, dilation] = params;
                attrs.extend(conv_attrs(
                    &[
                        ("stride", stride),
                        ("padding", padding),
                        ("dilation", dilation),
                    ],
                    groups,
                ));
                b.push(
                    op,
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", values_tag(v)),
                    vec![input(d, &gs, gl, v), input(d, other, ol_in, Values::Normal)],
                    attrs,
                    ol,
                    false,
                );
            }
        }
    }
    // More than 2^24 elements in grad and x.
    let (xs, ws): (&[usize], &[usize]) = if op.starts_with("conv1d") {
        (&[1, 1, (1 << 24) + 5], &[1, 1, 3])
    } else {
        (&[1, 1, 4099, 4099], &[1, 1, 3, 3])
    };
    let gs = conv_out_shape(xs, ws, [&[], &[], &[]]);
    let (other, size) = if data { (ws, xs) } else { (xs, ws) };
    let size: Vec<i64> = size.iter().map(|&s| s as i64).collect();
    b.push(
        op,
        "f32".into(),
        &[DType::F32],
        "large",
        vec![
            input(DType::F32, &gs, C, Values::Normal),
            input(DType::F32, other, C, Values::Normal),
        ],
        vec![attr(size_attr, super::ints(&size))],
        C,
        true,
    );
}

/// One pooling case: tag, x (shape, layout), kernel_size, stride, padding, dilation (max pools
/// only), ceil_mode, count_include_pad (average pools only), the output's layout.
type PoolCase = (
    &'static str,
    &'static [usize],
    Layout,
    &'static [i64],
    &'static [i64],
    &'static [i64],
    &'static [i64],
    bool,
    bool,
    Layout,
);

/// The forward pool's geometry of a case: [H, W] windows over x of shape `xs` (1-D: H = 1).
fn pool_windows(
    xs: &[usize],
    k: &[i64],
    s: &[i64],
    p: &[i64],
    dil: &[i64],
    ceil: bool,
) -> PoolWindows {
    let sp = xs.len() - 2;
    let at = |v: &[i64], d: usize, default: usize| -> usize {
        match v {
            [] => default,
            [one] => *one as usize,
            _ => v[d] as usize,
        }
    };
    let mut w = PoolWindows {
        input: [1; 2],
        out: [1; 2],
        kernel: [1; 2],
        stride: [1; 2],
        padding: [0; 2],
        dilation: [1; 2],
    };
    for d in 0..sp {
        let e = 2 - sp + d;
        let (len, kk) = (xs[2 + d], at(k, d, 1));
        let st = if s.is_empty() { kk } else { at(s, d, 1) };
        let (pad, dl) = (at(p, d, 0), at(dil, d, 1));
        let span = len + 2 * pad - (dl * (kk - 1) + 1);
        let mut o = if ceil {
            span.div_ceil(st) + 1
        } else {
            span / st + 1
        };
        if ceil && (o - 1) * st >= len + pad {
            o -= 1;
        }
        (w.input[e], w.out[e], w.kernel[e]) = (len, o, kk);
        (w.stride[e], w.padding[e], w.dilation[e]) = (st, pad, dl);
    }
    w
}

/// The inputs of a pool case over x of shape `xs`: x itself, or for a gradient (`grad_of`
/// holds the windows) grad of the output's shape and, for max pools, indices from the windows.
fn pool_inputs(
    d: DType,
    xs: &[usize],
    xl: Layout,
    v: Values,
    grad_of: Option<(PoolWindows, bool, DType)>,
) -> Vec<Option<super::InputSpec>> {
    let Some((w, max, it)) = grad_of else {
        return vec![input(d, xs, xl, v)];
    };
    let mut shape = xs[..2].to_vec();
    shape.extend_from_slice(&w.out[2 - (xs.len() - 2)..]);
    let mut inputs = vec![input(d, &shape, xl, v)];
    if max {
        inputs.push(input(it, &shape, C, Values::PoolIndices(w)));
    }
    inputs
}

/// The `input_size` attribute of a gradient case.
fn input_size(xs: &[usize]) -> (String, AttrValue) {
    attr(
        "input_size",
        super::ints(&xs.iter().map(|&v| v as i64).collect::<Vec<_>>()),
    )
}

/// The pools, and with `op` a gradient (`max_pool2d_backward`, ...) the same cases for it:
/// grad of the forward op's output shape, `input_size` x's shape, indices that a max pool
/// could give.
pub(super) fn pool_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    const T: Layout = Layout::Transposed;
    const S: Layout = Layout::Strided;
    let max = op.starts_with("max");
    let backward = op.ends_with("_backward");
    #[rustfmt::skip]
    let cases: &[PoolCase] = if op.contains("1d") {
        &[
            ("n2_c3_l17_k3_s2", &[2, 3, 17], C, &[3], &[2], &[], &[], false, true, C),
            ("k2_p1_ceil", &[1, 4, 10], C, &[2], &[], &[1], &[], true, true, C),
            ("k3_s3_p1_ceil_drop", &[1, 2, 5], C, &[3], &[3], &[1], &[], true, true, C),
            ("k3_d2_p1", &[2, 2, 11], C, &[3], &[1], &[1], &[2], false, true, C),
            ("k3_s2_p1_no_pad_count", &[1, 3, 9], C, &[3], &[2], &[1], &[], true, false, C),
            ("views", &[2, 3, 12], S, &[4], &[3], &[2], &[], false, true, S),
            ("empty_n0", &[0, 3, 8], C, &[2], &[], &[], &[], false, true, C),
            ("global", &[2, 5, 9], C, &[9], &[], &[], &[], false, true, C),
        ]
    } else {
        &[
            ("n2_c3_8x9_k2", &[2, 3, 8, 9], C, &[2], &[], &[], &[], false, true, C),
            ("k3_s2_p1", &[1, 4, 9, 10], C, &[3], &[2], &[1], &[], false, true, C),
            ("k3_s2_ceil", &[1, 2, 8, 8], C, &[3], &[2], &[], &[], true, true, C),
            ("k3_s3_p1_ceil_drop", &[1, 1, 5, 5], C, &[3], &[3], &[1], &[], true, true, C),
            ("k3x2_s1x2_p1x0", &[2, 2, 7, 8], C, &[3, 2], &[1, 2], &[1, 0], &[], false, true, C),
            ("k3_d2_p1", &[1, 3, 9, 9], C, &[3], &[1], &[1], &[2, 1], false, true, C),
            ("k3_s2_p1_no_pad_count", &[1, 3, 7, 7], C, &[3], &[2], &[1], &[], true, false, C),
            ("views", &[1, 3, 7, 9], T, &[2], &[], &[], &[], false, true, S),
            ("empty_n0", &[0, 3, 4, 4], C, &[2], &[], &[], &[], false, true, C),
            ("global", &[2, 4, 5, 5], C, &[5], &[], &[], &[], false, true, C),
        ]
    };
    for &d in dtypes {
        for &(tag, xs, xl, k, s, p, dil, ceil, count_pad, ol) in cases {
            if (max && tag.contains("no_pad_count")) || (!max && !dil.is_empty()) {
                continue;
            }
            let mut attrs = vec![attr("kernel_size", super::ints(k))];
            let grad_of = backward.then(|| {
                // One case takes i32 indices.
                let it = if tag == "views" {
                    DType::I32
                } else {
                    DType::I64
                };
                (pool_windows(xs, k, s, p, dil, ceil), max, it)
            });
            if backward {
                attrs.push(input_size(xs));
            }
            for (name, v) in [("stride", s), ("padding", p), ("dilation", dil)] {
                if !v.is_empty() {
                    attrs.push(attr(name, super::ints(v)));
                }
            }
            if ceil {
                attrs.push(attr("ceil_mode", AttrValue::Int(1)));
            }
            if !count_pad {
                attrs.push(attr("count_include_pad", AttrValue::Int(0)));
            }
            let classes: &[Values] = if tag.starts_with("n2_") {
                &[Values::Normal, Values::Special]
            } else {
                &[Values::Normal]
            };
            for &v in classes {
                b.push(
                    op,
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", values_tag(v)),
                    pool_inputs(d, xs, xl, v, grad_of),
                    attrs.clone(),
                    ol,
                    false,
                );
            }
        }
    }
    // More than 2^24 elements in x.
    let x: &[usize] = if op.contains("1d") {
        &[1, 1, (1 << 24) + 4]
    } else {
        &[1, 1, 4098, 4098]
    };
    let mut attrs = vec![attr("kernel_size", super::ints(&[2]))];
    let grad_of = backward.then(|| {
        attrs.push(input_size(x));
        (pool_windows(x, &[2], &[], &[], &[], false), max, DType::I64)
    });
    b.push(
        op,
        "f32".into(),
        &[DType::F32],
        "large",
        pool_inputs(DType::F32, x, C, Values::Normal, grad_of),
        attrs,
        C,
        true,
    );
}

/// One case of the one-input op `op` per value class: x of `shape` and layout in `d`, tagged
/// `tag.<class>`.
#[allow(clippy::too_many_arguments)]
fn push_classes(
    b: &mut Builder,
    op: &'static str,
    d: DType,
    tag: &str,
    classes: &[Values],
    (shape, xl): (&[usize], Layout),
    attrs: &[(String, AttrValue)],
    ol: Layout,
) {
    for &v in classes {
        b.push(
            op,
            d.name().into(),
            &[d],
            &format!("{tag}.{}", values_tag(v)),
            vec![input(d, shape, xl, v)],
            attrs.to_vec(),
            ol,
            false,
        );
    }
}

/// `adaptive_avg_pool3d` and its gradient: windows that overlap (sizes that do not divide),
/// to 1, upsampling, a transposed x with a strided output, no plane.
pub(super) fn adaptive3_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    const T: Layout = Layout::Transposed;
    const S: Layout = Layout::Strided;
    let backward = op.ends_with("_backward");
    // Tag, x's shape and layout, output_size, the output's layout.
    #[rustfmt::skip]
    let cases: &[(&str, &[usize], Layout, &[i64], Layout)] = &[
        ("n2_c3_5x7x6_to_2x3x4", &[2, 3, 5, 7, 6], C, &[2, 3, 4], C),
        ("to_1", &[1, 2, 4, 5, 6], C, &[1], C),
        ("up_3x2x4_to_5x3x7", &[1, 2, 3, 2, 4], C, &[5, 3, 7], C),
        ("same", &[1, 2, 3, 4, 2], C, &[3, 4, 2], C),
        ("views", &[1, 3, 6, 4, 5], T, &[3, 2, 2], S),
        ("empty_n0", &[0, 3, 4, 4, 4], C, &[2], C),
    ];
    for &d in dtypes {
        for &(tag, xs, xl, size, ol) in cases {
            let at = |k: usize| size[if size.len() == 1 { 0 } else { k }] as usize;
            let (shape, attrs) = if backward {
                (
                    vec![xs[0], xs[1], at(0), at(1), at(2)],
                    vec![input_size(xs)],
                )
            } else {
                (xs.to_vec(), vec![attr("output_size", super::ints(size))])
            };
            let classes: &[Values] = if tag.starts_with("n2_") {
                &[Values::Normal, Values::Special]
            } else {
                &[Values::Normal]
            };
            push_classes(b, op, d, tag, classes, (&shape, xl), &attrs, ol);
        }
    }
    // More than 2^24 elements in x (and in dx).
    let x = [1usize, 1, 257, 257, 257];
    let (shape, attrs) = if backward {
        (vec![1, 1, 4, 4, 4], vec![input_size(&x)])
    } else {
        (x.to_vec(), vec![attr("output_size", super::ints(&[4]))])
    };
    b.push(
        op,
        "f32".into(),
        &[DType::F32],
        "large",
        vec![input(DType::F32, &shape, C, Values::Normal)],
        attrs,
        C,
        true,
    );
}

pub(super) fn resample_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    const T: Layout = Layout::Transposed;
    const S: Layout = Layout::Strided;
    // Tag, x (shape, layout), size, mode (interpolate), align_corners, the output's layout.
    type Rs = (
        &'static str,
        &'static [usize],
        Layout,
        &'static [i64],
        &'static str,
        bool,
        Layout,
    );
    #[rustfmt::skip]
    let backward = op.ends_with("_backward");
    let adaptive = op.starts_with("adaptive_avg_pool2d");
    let cases: &[Rs] = if adaptive {
        &[
            ("n2_c3_7x9_to_3x4", &[2, 3, 7, 9], C, &[3, 4], "", false, C),
            ("to_1x1", &[1, 4, 5, 6], C, &[1], "", false, C),
            ("up_3x5_to_5x7", &[1, 2, 3, 5], C, &[5, 7], "", false, C),
            ("same", &[1, 2, 4, 4], C, &[4], "", false, C),
            ("views", &[1, 3, 8, 6], T, &[3, 2], "", false, S),
            ("empty_n0", &[0, 3, 4, 4], C, &[2], "", false, C),
        ]
    } else {
        &[
            (
                "n2_c3_5x6_to_9x11",
                &[2, 3, 5, 6],
                C,
                &[9, 11],
                "bilinear",
                false,
                C,
            ),
            (
                "down_9x7_to_4x3",
                &[1, 2, 9, 7],
                C,
                &[4, 3],
                "bilinear",
                false,
                C,
            ),
            (
                "align_5x6_to_9x11",
                &[1, 2, 5, 6],
                C,
                &[9, 11],
                "bilinear",
                true,
                C,
            ),
            ("align_to_1", &[1, 2, 4, 5], C, &[1, 3], "bilinear", true, C),
            (
                "nearest_5x6_to_9x11",
                &[2, 3, 5, 6],
                C,
                &[9, 11],
                "nearest",
                false,
                C,
            ),
            (
                "nearest_down_9x7_to_4x3",
                &[1, 2, 9, 7],
                C,
                &[4, 3],
                "nearest",
                false,
                C,
            ),
            ("views", &[1, 3, 6, 8], T, &[7], "bilinear", false, S),
            ("empty_n0", &[0, 3, 4, 4], C, &[2], "nearest", false, C),
            // Bicubic: its negative lobes make f32 sums of the largest finite values overflow
            // where the exact result is finite (docs/ops.md), so its special values leave
            // those out.
            (
                "cubic_n2_c3_5x6_to_9x11",
                &[2, 3, 5, 6],
                C,
                &[9, 11],
                "bicubic",
                false,
                C,
            ),
            (
                "cubic_down_9x7_to_4x3",
                &[1, 2, 9, 7],
                C,
                &[4, 3],
                "bicubic",
                false,
                C,
            ),
            // Two rows and three columns: every tap clamps at an edge.
            (
                "cubic_edges_2x3_to_7x9",
                &[1, 2, 2, 3],
                C,
                &[7, 9],
                "bicubic",
                false,
                C,
            ),
            (
                "cubic_align_5x6_to_9x11",
                &[1, 2, 5, 6],
                C,
                &[9, 11],
                "bicubic",
                true,
                C,
            ),
            (
                "cubic_align_down_9x7_to_4x3",
                &[1, 2, 9, 7],
                C,
                &[4, 3],
                "bicubic",
                true,
                C,
            ),
            (
                "cubic_align_to_1",
                &[1, 2, 4, 5],
                C,
                &[1, 3],
                "bicubic",
                true,
                C,
            ),
            (
                "cubic_one_row_1x5_to_3x8",
                &[1, 2, 1, 5],
                C,
                &[3, 8],
                "bicubic",
                false,
                C,
            ),
            ("cubic_views", &[1, 3, 6, 8], T, &[7], "bicubic", false, S),
        ]
    };
    for &d in dtypes {
        for &(tag, xs, xl, size, mode, align, ol) in cases {
            let mut attrs = Vec::new();
            // A gradient takes grad of the output's shape and input_size, not the size.
            let shape: Vec<usize> = if backward {
                attrs.push(input_size(xs));
                let at = |d: usize| size[if size.len() == 1 { 0 } else { d }] as usize;
                vec![xs[0], xs[1], at(0), at(1)]
            } else {
                attrs.push(attr(
                    if adaptive { "output_size" } else { "size" },
                    super::ints(size),
                ));
                xs.to_vec()
            };
            if !adaptive {
                attrs.push(attr("mode", AttrValue::Str(mode.into())));
                if align {
                    attrs.push(attr("align_corners", AttrValue::Int(1)));
                }
            }
            let classes: &[Values] = if tag.starts_with("n2_") {
                &[Values::Normal, Values::Special]
            } else if tag.starts_with("cubic_n2_") {
                &[Values::Normal, Values::SpecialInRange]
            } else {
                &[Values::Normal]
            };
            push_classes(b, op, d, tag, classes, (&shape, xl), &attrs, ol);
        }
    }
    // More than 2^24 elements in x.
    let x = [1, 1, 4099, 4099];
    let (mut attrs, out) = if adaptive {
        (
            vec![attr("output_size", super::ints(&[64]))],
            [1, 1, 64, 64],
        )
    } else {
        (
            vec![
                attr("size", super::ints(&[1000, 1000])),
                attr("mode", AttrValue::Str("bilinear".into())),
            ],
            [1, 1, 1000, 1000],
        )
    };
    let shape: &[usize] = if backward {
        attrs.remove(0);
        attrs.push(input_size(&x));
        &out
    } else {
        &x
    };
    b.push(
        op,
        "f32".into(),
        &[DType::F32],
        "large",
        vec![input(DType::F32, shape, C, Values::Normal)],
        attrs,
        C,
        true,
    );
}

pub(super) fn group_norm_cases(b: &mut Builder, dtypes: &[DType]) {
    // Tag, x (shape, layout), num_groups, weight and bias given.
    type Gn = (&'static str, &'static [usize], Layout, i64, bool);
    #[rustfmt::skip]
    let cases: &[Gn] = &[
        ("n2_c6_5x7_g3", &[2, 6, 5, 7], C, 3, true),
        ("c4_g4_instance", &[3, 4, 9], C, 4, true),
        ("c4_g1_layer", &[2, 4, 3, 3], C, 1, false),
        ("rank2", &[5, 8], C, 2, true),
        ("rank5", &[1, 4, 2, 3, 4], C, 2, false),
        ("views", &[2, 6, 7, 5], Layout::Transposed, 2, true),
        ("empty_n0", &[0, 4, 3], C, 2, true),
    ];
    for &d in dtypes {
        for &(tag, xs, xl, groups, affine) in cases {
            let classes: &[Values] = if tag.starts_with("n2_") {
                &[Values::Normal, Values::Special]
            } else {
                &[Values::Normal]
            };
            for &v in classes {
                let mut inputs = vec![input(d, xs, xl, v)];
                if affine {
                    inputs.push(input(d, &[xs[1]], C, Values::Normal));
                    inputs.push(input(d, &[xs[1]], Layout::Offset(1), Values::Normal));
                }
                b.push(
                    "group_norm",
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", values_tag(v)),
                    inputs,
                    vec![
                        attr("num_groups", AttrValue::Int(groups)),
                        attr("eps", AttrValue::Float(1e-5)),
                    ],
                    Layout::Strided,
                    false,
                );
            }
        }
    }
    // A contiguous output with weight and bias (the CPU's f32 row kernel), both value classes.
    for &d in dtypes {
        for v in [Values::Normal, Values::Special] {
            b.push(
                "group_norm",
                d.name().into(),
                &[d],
                &format!("n3_c12_7x9_g4_contiguous.{}", values_tag(v)),
                vec![
                    input(d, &[3, 12, 7, 9], C, v),
                    input(d, &[12], C, Values::Normal),
                    input(d, &[12], Layout::Offset(1), Values::Normal),
                ],
                vec![attr("num_groups", AttrValue::Int(4))],
                C,
                false,
            );
        }
    }
    // More than 2^24 elements, in 32 groups of 2^19.
    b.push(
        "group_norm",
        "f32".into(),
        &[DType::F32],
        "large",
        vec![input(DType::F32, &[2, 32, 512, 513], C, Values::Normal)],
        vec![attr("num_groups", AttrValue::Int(16))],
        C,
        true,
    );
}

pub(super) fn batch_norm_cases(b: &mut Builder, dtypes: &[DType]) {
    // Tag, x (shape, layout), training, running statistics given, weight and bias given.
    type Bn = (&'static str, &'static [usize], Layout, bool, bool, bool);
    #[rustfmt::skip]
    let cases: &[Bn] = &[
        ("n4_c3_5x6_train", &[4, 3, 5, 6], C, true, false, true),
        ("n4_c3_5x6_eval", &[4, 3, 5, 6], C, false, true, true),
        ("train_plain", &[2, 5, 7], C, true, false, false),
        ("train_ignores_running", &[3, 4, 2, 2], C, true, true, false),
        ("eval_plain", &[3, 4, 9], C, false, true, false),
        ("rank2_train", &[16, 6], C, true, false, true),
        ("views_train", &[2, 3, 6, 5], Layout::Transposed, true, false, true),
        ("one_value_train", &[1, 3], C, true, false, false),
        ("eval_empty_n0", &[0, 3, 4], C, false, true, true),
    ];
    for &d in dtypes {
        for &(tag, xs, xl, training, running, affine) in cases {
            let c = xs[1];
            let classes: &[Values] = if tag.starts_with("n4_") {
                &[Values::Normal, Values::Special]
            } else {
                &[Values::Normal]
            };
            for &v in classes {
                let mut inputs = vec![input(d, xs, xl, v)];
                if running {
                    inputs.push(input(d, &[c], C, Values::Normal));
                    inputs.push(input(d, &[c], Layout::Offset(2), Values::Positive));
                } else {
                    inputs.extend([None, None]);
                }
                if affine {
                    inputs.push(input(d, &[c], C, Values::Normal));
                    inputs.push(input(d, &[c], Layout::Offset(1), Values::Normal));
                }
                let mut attrs = vec![attr("eps", AttrValue::Float(1e-5))];
                if training {
                    attrs.push(attr("training", AttrValue::Int(1)));
                }
                b.push(
                    "batch_norm",
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", values_tag(v)),
                    inputs,
                    attrs,
                    Layout::Strided,
                    false,
                );
            }
        }
    }
    // More than 2^24 elements, 8 channels of 2^21.
    b.push(
        "batch_norm",
        "f32".into(),
        &[DType::F32],
        "large",
        vec![input(DType::F32, &[4, 8, 1024, 513], C, Values::Normal)],
        vec![attr("training", AttrValue::Int(1))],
        C,
        true,
    );
}

/// One cross-entropy case: tag, logits (shape, layout), ignore_index, label_smoothing,
/// reduction, the target's dtype, targets drawn below this limit (classes, or fewer), a bad
/// target, the result's layout.
type CeCase = (
    &'static str,
    &'static [usize],
    Layout,
    i64,
    f64,
    &'static str,
    DType,
    usize,
    bool,
    Layout,
);

/// `cross_entropy` and `cross_entropy_backward`: class-index targets over [N, C] and
/// [N, C, d...] logits, ignored targets, label smoothing, the three reductions, a bad target.
pub(super) fn cross_entropy_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    const T: Layout = Layout::Transposed;
    const S: Layout = Layout::Strided;
    const I64: DType = DType::I64;
    const I32: DType = DType::I32;
    let backward = op.ends_with("_backward");
    #[rustfmt::skip]
    let cases: &[CeCase] = &[
        ("n4_c5_mean", &[4, 5], C, -100, 0.0, "mean", I64, 5, false, C),
        ("n6_c7_sum_smooth", &[6, 7], C, -100, 0.1, "sum", I64, 7, false, C),
        ("none_ignore1", &[8, 5], C, 1, 0.0, "none", I32, 5, false, S),
        ("spatial_none", &[2, 4, 3, 5], C, 2, 0.2, "none", I64, 4, false, C),
        ("spatial_mean_views", &[2, 3, 4, 5], T, 0, 0.05, "mean", I64, 3, false, C),
        ("c300_mean_smooth", &[3, 300], C, -100, 0.1, "mean", I64, 300, false, C),
        ("c5000_sum", &[4, 5000], Layout::Offset(3), 7, 0.0, "sum", I32, 5000, false, C),
        ("all_ignored_mean", &[3, 2], C, 0, 0.0, "mean", I64, 1, false, C),
        ("empty_n0_mean", &[0, 5], C, -100, 0.0, "mean", I64, 5, false, C),
        ("empty_n0_sum", &[0, 5], C, -100, 0.0, "sum", I64, 5, false, C),
        ("smooth_1", &[5, 4], C, -100, 1.0, "sum", I64, 4, false, C),
        ("bad_target", &[4, 5], C, -100, 0.0, "mean", I64, 5, true, C),
    ];
    let case_attrs = |ignore: i64, eps: f64, reduction: &str| {
        vec![
            attr("ignore_index", AttrValue::Int(ignore)),
            attr("label_smoothing", AttrValue::Float(eps)),
            attr("reduction", AttrValue::Str(reduction.into())),
        ]
    };
    let target_shape = |xs: &[usize]| {
        let mut s = xs.to_vec();
        s.remove(1);
        s
    };
    let inputs =
        |d: DType, xs: &[usize], xl: Layout, v: Values, it: DType, limit, bad, red: &str| {
            let ts = target_shape(xs);
            let mut inputs = vec![
                input(d, xs, xl, v),
                input(it, &ts, C, Values::Indices { limit, bad }),
            ];
            if backward {
                let gs: &[usize] = if red == "none" { &ts } else { &[] };
                inputs.insert(0, input(d, gs, C, Values::Normal));
            }
            inputs
        };
    for &d in dtypes {
        for &(tag, xs, xl, ignore, eps, red, it, limit, bad, ol) in cases {
            let classes: &[Values] = if tag.starts_with("n4_") || tag == "smooth_1" {
                &[Values::Normal, Values::Special]
            } else {
                &[Values::Normal]
            };
            for &v in classes {
                b.push(
                    op,
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", values_tag(v)),
                    inputs(d, xs, xl, v, it, limit, bad, red),
                    case_attrs(ignore, eps, red),
                    ol,
                    false,
                );
            }
        }
    }
    // More than 2^24 logits.
    b.push(
        op,
        "f32".into(),
        &[DType::F32],
        "large",
        inputs(
            DType::F32,
            &[4096, 4097],
            C,
            Values::Normal,
            I64,
            4097,
            false,
            "mean",
        ),
        case_attrs(-100, 0.1, "mean"),
        C,
        true,
    );
}

/// One normalisation-gradient case: tag, x (shape, layout), num_groups (group_norm) or
/// training (batch_norm, as 1), with a weight, the outputs' layout.
type NormGradCase = (&'static str, &'static [usize], Layout, i64, bool, Layout);

/// `layer_norm_backward`, `rms_norm_backward`, `group_norm_backward`, `batch_norm_backward`:
/// grad and x of one shape (views included), with and without weight; batch_norm with given
/// statistics, in training and inference.
pub(super) fn norm_backward_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    const T: Layout = Layout::Transposed;
    const S: Layout = Layout::Strided;
    const O1: Layout = Layout::Offset(1);
    #[rustfmt::skip]
    let (cases, large): (&[NormGradCase], &[usize]) = match op {
        "group_norm_backward" => (&[
            ("n2_c6_5x7_g3", &[2, 6, 5, 7], C, 3, true, C),
            ("c4_g4_instance", &[3, 4, 9], C, 4, false, C),
            ("views_g2", &[2, 4, 3, 5], T, 2, true, S),
            ("g1_offset", &[2, 3, 8], O1, 1, true, C),
            ("rank2_g3", &[4, 6], C, 3, false, C),
            ("empty_n0", &[0, 4, 3], C, 2, true, C),
        ], &[4, 8, 1025, 513]),
        "batch_norm_backward" => (&[
            ("n4_c3_5x5_train", &[4, 3, 5, 5], C, 1, true, C),
            ("n4_c3_5x5_eval", &[4, 3, 5, 5], C, 0, true, C),
            ("n16_c5_train", &[16, 5], C, 1, false, C),
            ("views_train", &[2, 3, 6, 5], T, 1, true, S),
            ("offset_eval", &[3, 2, 7], O1, 0, false, C),
            ("empty_n0", &[0, 3, 4], C, 1, true, C),
        ], &[32, 8, 256, 257]),
        _ => (&[
            ("n8_67_w", &[8, 67], C, 0, true, C),
            ("t33x17", &[33, 17], T, 0, false, S),
            ("2x3x16_offset_w", &[2, 3, 16], O1, 0, true, C),
            ("one", &[1], C, 0, true, C),
            ("4x1000_w", &[4, 1000], C, 0, true, C),
            ("empty_rows", &[0, 5], C, 0, true, C),
        ], &[4097, 4096]),
    };
    let batch = op == "batch_norm_backward";
    let channel = |xs: &[usize]| {
        if xs.len() >= 2 && !op.starts_with("layer") && !op.starts_with("rms") {
            xs[1]
        } else {
            xs[xs.len() - 1]
        }
    };
    let push = |b: &mut Builder,
                d: DType,
                tag: String,
                xs: &[usize],
                xl,
                v,
                k: i64,
                w: bool,
                ol,
                large| {
        let c = channel(xs);
        let mut inputs = vec![input(d, xs, xl, Values::Normal), input(d, xs, C, v)];
        if batch {
            inputs.push(input(d, &[c], C, Values::Normal));
            inputs.push(input(d, &[c], O1, Values::Positive));
        }
        inputs.push(if w {
            input(d, &[c], C, Values::Normal)
        } else {
            None
        });
        let attrs = match op {
            "group_norm_backward" => vec![attr("num_groups", AttrValue::Int(k))],
            "batch_norm_backward" if k == 1 => vec![attr("training", AttrValue::Int(1))],
            _ => vec![],
        };
        b.push(op, d.name().into(), &[d], &tag, inputs, attrs, ol, large);
    };
    for &d in dtypes {
        for &(tag, xs, xl, k, w, ol) in cases {
            let classes: &[Values] = if tag == cases[0].0 || tag.ends_with("_eval") {
                &[Values::Normal, Values::Special]
            } else {
                &[Values::Normal]
            };
            for &v in classes {
                push(
                    b,
                    d,
                    format!("{tag}.{}", values_tag(v)),
                    xs,
                    xl,
                    v,
                    k,
                    w,
                    ol,
                    false,
                );
            }
        }
    }
    // More than 2^24 elements in x.
    let k = if op == "group_norm_backward" { 2 } else { 1 };
    push(
        b,
        DType::F32,
        "large".into(),
        large,
        C,
        Values::Normal,
        k,
        true,
        C,
        true,
    );
}
