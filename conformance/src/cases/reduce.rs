//! The cases of the reductions and of the ops along one axis: `sum`, `mean`, `max`, `min`,
//! `argmax`, `argmin`, `cumsum`, `softmax`, `log_softmax` and `topk`.

use anyaccel_hal::{AttrValue, DType};

use super::{attr, input, ints, value_classes, values_tag, Builder, Layout, Values, C, LARGE};

pub(super) fn reduction_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    type Red = (&'static str, &'static [usize], Layout, &'static [i64], bool);
    let shapes: &[Red] = &[
        ("all_p97", &[97], C, &[], false),
        ("rows3x67", &[3, 67], C, &[1], false),
        ("cols3x67", &[3, 67], C, &[0], false),
        ("keep4x5x6_a02", &[4, 5, 6], C, &[0, 2], true),
        ("neg4x5x6", &[4, 5, 6], C, &[-2], false),
        ("t33x17", &[33, 17], Layout::Transposed, &[1], true),
        ("s9x13", &[9, 13], Layout::Strided, &[], false),
        ("scalar", &[], C, &[], false),
        ("empty_out0x5", &[0, 5], C, &[1], false),
        ("empty_red3x0", &[3, 0], C, &[1], false),
    ];
    for &d in dtypes {
        let mut classes = value_classes(d, false);
        if matches!(op, "max" | "min" | "argmax" | "argmin") {
            classes.push(Values::Ties);
        }
        for &(tag, shape, layout, axes, keep) in shapes {
            for &v in &classes {
                let attrs = vec![
                    attr("axes", ints(axes)),
                    attr("keepdim", AttrValue::Int(keep as i64)),
                ];
                b.push(
                    op,
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", values_tag(v)),
                    vec![input(d, shape, layout, v)],
                    attrs,
                    C,
                    false,
                );
            }
        }
    }
    // var, std: the population variance, and a correction at and above the count (a division
    // by 0).
    if matches!(op, "var" | "std") {
        let corrections: &[(&str, &[usize], &[i64], i64)] = &[
            ("corr0_rows3x67", &[3, 67], &[1], 0),
            ("corr0_one", &[1], &[], 0),
            ("corr2_rows5x2", &[5, 2], &[1], 2),
            ("corr3_cols2x5", &[2, 5], &[0], 3),
        ];
        for &d in dtypes {
            for &(tag, shape, axes, correction) in corrections {
                for v in value_classes(d, false) {
                    b.push(
                        op,
                        d.name().into(),
                        &[d],
                        &format!("{tag}.{}", values_tag(v)),
                        vec![input(d, shape, C, v)],
                        vec![
                            attr("axes", ints(axes)),
                            attr("correction", AttrValue::Int(correction)),
                        ],
                        C,
                        false,
                    );
                }
            }
        }
    }
    let d = dtypes[0];
    b.push(
        op,
        d.name().into(),
        &[d],
        "large",
        vec![input(d, &[LARGE], C, Values::Normal)],
        vec![attr("axes", ints(&[]))],
        C,
        true,
    );
    b.push(
        op,
        d.name().into(),
        &[d],
        "large_rows",
        vec![input(d, &[4097, 4097], C, Values::Normal)],
        vec![attr("axes", ints(&[1]))],
        C,
        true,
    );
}

pub(super) fn line_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    // cumsum, softmax, log_softmax: one axis.
    let shapes: &[(&str, &[usize], Layout, i64)] = &[
        ("p97", &[97], C, 0),
        ("rows4x37", &[4, 37], C, -1),
        ("cols4x37", &[4, 37], C, 0),
        ("mid2x3x5", &[2, 3, 5], C, 1),
        ("t33x17", &[33, 17], Layout::Transposed, 1),
        ("s9x13", &[9, 13], Layout::Strided, -1),
        ("one", &[1], C, 0),
        ("empty0x5", &[0, 5], C, 1),
        // Rows that f16 and bf16 softmax stage through f32 in several blocks; products of
        // several of the largest finite values along one line.
        ("rows300x97", &[300, 97], C, -1),
    ];
    for &d in dtypes {
        for &(tag, shape, layout, axis) in shapes {
            for v in value_classes(d, false) {
                b.push(
                    op,
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", values_tag(v)),
                    vec![input(d, shape, layout, v)],
                    vec![attr("axis", AttrValue::Int(axis))],
                    C,
                    false,
                );
            }
        }
    }
    // Running extremes: reverse, and ties.
    if matches!(op, "cummax" | "cummin") {
        for &d in dtypes {
            for &(tag, shape, layout, axis) in &shapes[1..5] {
                for v in value_classes(d, false).into_iter().chain([Values::Ties]) {
                    b.push(
                        op,
                        d.name().into(),
                        &[d],
                        &format!("rev_{tag}.{}", values_tag(v)),
                        vec![input(d, shape, layout, v)],
                        vec![
                            attr("axis", AttrValue::Int(axis)),
                            attr("reverse", AttrValue::Int(1)),
                        ],
                        C,
                        false,
                    );
                }
            }
        }
    }
    // Scans: exclusive, reverse and both, along the last and a middle axis.
    if matches!(op, "cumsum" | "cumprod") {
        let flags: &[(&str, bool, bool)] = &[
            ("excl", true, false),
            ("rev", false, true),
            ("excl_rev", true, true),
        ];
        for &d in dtypes {
            for &(ftag, exclusive, reverse) in flags {
                for &(tag, shape, layout, axis) in &shapes[1..5] {
                    for v in value_classes(d, false) {
                        b.push(
                            op,
                            d.name().into(),
                            &[d],
                            &format!("{ftag}_{tag}.{}", values_tag(v)),
                            vec![input(d, shape, layout, v)],
                            vec![
                                attr("axis", AttrValue::Int(axis)),
                                attr("exclusive", AttrValue::Int(exclusive as i64)),
                                attr("reverse", AttrValue::Int(reverse as i64)),
                            ],
                            C,
                            false,
                        );
                    }
                }
            }
        }
    }
    let d = dtypes[0];
    let (shape, v): (&[usize], Values) = match op {
        "cumsum" => (&[LARGE], Values::Positive),
        "cumprod" | "cummax" | "cummin" => (&[LARGE], Values::Normal),
        _ => (&[168, 100_000], Values::Normal),
    };
    b.push(
        op,
        d.name().into(),
        &[d],
        "large",
        vec![input(d, shape, C, v)],
        vec![attr("axis", AttrValue::Int(-1))],
        C,
        true,
    );
}

/// `sort` and `argsort`: ascending and descending, ties and NaNs, along each kind of axis.
pub(super) fn sort_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    let shapes: &[(&str, &[usize], Layout, i64)] = &[
        ("p97", &[97], C, 0),
        ("rows4x37", &[4, 37], C, -1),
        ("cols4x37", &[4, 37], C, 0),
        ("t33x17", &[33, 17], Layout::Transposed, 1),
        ("s9x13", &[9, 13], Layout::Strided, -1),
        ("one", &[1], C, 0),
        ("short5x3", &[5, 3], C, 1),
        ("empty0x5", &[0, 5], C, 1),
        ("axis0_3x0", &[3, 0], C, 1),
        ("long3x1500", &[3, 1500], C, 1),
    ];
    for &d in dtypes {
        let mut classes = value_classes(d, false);
        classes.push(Values::Ties);
        for descending in [false, true] {
            let dir = if descending { "desc_" } else { "" };
            for &(tag, shape, layout, axis) in shapes {
                for &v in &classes {
                    b.push(
                        op,
                        d.name().into(),
                        &[d],
                        &format!("{dir}{tag}.{}", values_tag(v)),
                        vec![input(d, shape, layout, v)],
                        vec![
                            attr("axis", AttrValue::Int(axis)),
                            attr("descending", AttrValue::Int(descending as i64)),
                        ],
                        C,
                        false,
                    );
                }
            }
        }
    }
    let d = dtypes[0];
    b.push(
        op,
        d.name().into(),
        &[d],
        "outs5x7",
        vec![input(d, &[5, 7], C, Values::Ties)],
        vec![attr("axis", AttrValue::Int(1))],
        Layout::Strided,
        false,
    );
    // More than 2^24 elements, in lines of 64.
    b.push(
        op,
        d.name().into(),
        &[d],
        "large",
        vec![input(d, &[262_145, 64], C, Values::Normal)],
        vec![attr("axis", AttrValue::Int(1))],
        C,
        true,
    );
}

pub(super) fn topk_cases(b: &mut Builder, dtypes: &[DType]) {
    let variants: &[(&str, &[usize], Layout, i64, i64, bool)] = &[
        ("p97_k5", &[97], C, 5, 0, true),
        ("p97_k5_small", &[97], C, 5, 0, false),
        ("rows3x67_k1", &[3, 67], C, 1, -1, true),
        ("cols4x9_k4", &[4, 9], C, 4, 0, true),
        ("t33x17_k3", &[33, 17], Layout::Transposed, 3, 1, false),
        ("all10", &[10], C, 10, 0, true),
        ("k0", &[10], C, 0, 0, true),
    ];
    for &d in dtypes {
        let mut classes = value_classes(d, false);
        classes.push(Values::Ties);
        for &(tag, shape, layout, k, axis, largest) in variants {
            for &v in &classes {
                let attrs = vec![
                    attr("k", AttrValue::Int(k)),
                    attr("axis", AttrValue::Int(axis)),
                    attr("largest", AttrValue::Int(largest as i64)),
                ];
                b.push(
                    "topk",
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", values_tag(v)),
                    vec![input(d, shape, layout, v)],
                    attrs,
                    C,
                    false,
                );
            }
        }
    }
    let attrs = vec![
        attr("k", AttrValue::Int(3)),
        attr("axis", AttrValue::Int(-1)),
        attr("largest", AttrValue::Int(1)),
    ];
    b.push(
        "topk",
        "f32".into(),
        &[DType::F32],
        "large",
        vec![input(DType::F32, &[16385, 1024], C, Values::Normal)],
        attrs,
        C,
        true,
    );
}
