//! The cases of the creation, movement and indexing ops: `fill`, `arange`, `copy`, `cast`,
//! `concat`, `index_select`, `embedding` and `gather`.

use anyaccel_hal::{AttrValue, DType};
use anyaccel_ops::op_def;

use super::elementwise::ELEMENTWISE_SHAPES;
use super::{
    attr, default_values, input, ints, value_classes, values_tag, Builder, Layout, Values, C, LARGE,
};

pub(super) fn creation_cases(b: &mut Builder) {
    let fill_dtypes = op_def("fill").map(|d| d.dtypes).unwrap_or(&[]);
    let values: &[(&str, f64)] = &[
        ("1_5", 1.5),
        ("neg0", -0.0),
        ("nan", f64::NAN),
        ("1e10", 1e10),
        ("m3", -3.0),
        ("300_7", 300.7),
        // Just below f16's overflow threshold 65520 (f16: 65504) and bf16's (bf16: its largest
        // finite value): one rounding from the f64 value keeps them finite, rounding through
        // f32 first makes them +Inf.
        ("f16_edge", 65520.0 - 2f64.powi(-30)),
        (
            "bf16_edge",
            (2.0 - 2f64.powi(-8)) * 2f64.powi(127) - 2f64.powi(80),
        ),
    ];
    for &d in fill_dtypes {
        for &(vtag, v) in values {
            for (stag, shape, out) in [
                ("scalar", &[][..], C),
                ("empty", &[0, 4][..], C),
                ("5x7", &[5, 7][..], C),
                ("s5x7", &[5, 7][..], Layout::Strided),
            ] {
                let attrs = vec![
                    attr("value", AttrValue::Float(v)),
                    attr("dtype", AttrValue::Str(d.name().into())),
                    attr(
                        "shape",
                        ints(&shape.iter().map(|&x| x as i64).collect::<Vec<_>>()),
                    ),
                ];
                b.push(
                    "fill",
                    d.name().into(),
                    &[d],
                    &format!("{stag}.{vtag}"),
                    vec![],
                    attrs,
                    out,
                    false,
                );
            }
        }
    }
    let attrs = vec![
        attr("value", AttrValue::Float(2.5)),
        attr("dtype", AttrValue::Str("f32".into())),
        attr("shape", ints(&[LARGE as i64])),
    ];
    b.push(
        "fill",
        "f32".into(),
        &[DType::F32],
        "large",
        vec![],
        attrs,
        C,
        true,
    );

    let arange_dtypes = op_def("arange").map(|d| d.dtypes).unwrap_or(&[]);
    for &d in arange_dtypes {
        let mut variants: Vec<(&str, f64, f64, usize)> = vec![
            ("0_1_100", 0.0, 1.0, 100),
            ("5_m2_33", 5.0, -2.0, 33),
            ("empty", 0.0, 1.0, 0),
            ("one", 7.0, 3.0, 1),
        ];
        if d.is_float() {
            variants.push(("m3_q_17", -3.0, 0.25, 17));
            variants.push(("tenth_1000", 0.0, 0.1, 1000));
            // Values a hair below f16's overflow threshold: finite in f16 (rounded once).
            variants.push(("f16_edge", 65520.0 - 2f64.powi(-30), -2f64.powi(-31), 3));
        } else {
            // The ends of i64: every integral start and step in [-2^63, 2^63) is accepted.
            variants.push(("i64_min", -2f64.powi(63), 1.0, 3));
            variants.push(("i64_top", 2f64.powi(63) - 1024.0, -1024.0, 3));
        }
        for (tag, start, step, n) in variants {
            let attrs = vec![
                attr("start", AttrValue::Float(start)),
                attr("step", AttrValue::Float(step)),
                attr("n", AttrValue::Int(n as i64)),
                attr("dtype", AttrValue::Str(d.name().into())),
            ];
            b.push(
                "arange",
                d.name().into(),
                &[d],
                tag,
                vec![],
                attrs,
                C,
                false,
            );
        }
    }
    let attrs = vec![
        attr("start", AttrValue::Float(0.0)),
        attr("step", AttrValue::Float(1.0)),
        attr("n", AttrValue::Int(LARGE as i64)),
        attr("dtype", AttrValue::Str("i32".into())),
    ];
    b.push(
        "arange",
        "i32".into(),
        &[DType::I32],
        "large",
        vec![],
        attrs,
        C,
        true,
    );
}

pub(super) fn movement_cases(b: &mut Builder) {
    let all = op_def("cast").map(|d| d.dtypes).unwrap_or(&[]);
    for &d in op_def("copy").map(|d| d.dtypes).unwrap_or(&[]) {
        for &(tag, shape, layout, out) in ELEMENTWISE_SHAPES {
            b.push(
                "copy",
                d.name().into(),
                &[d],
                tag,
                vec![input(d, shape, layout, default_values(d))],
                vec![],
                out,
                false,
            );
        }
    }
    b.push(
        "copy",
        "f32".into(),
        &[DType::F32],
        "large",
        vec![input(
            DType::F32,
            &[LARGE],
            Layout::Offset(1),
            Values::Normal,
        )],
        vec![],
        C,
        true,
    );
    for &from in all {
        for &to in all {
            let label = format!("{}_to_{}", from.name(), to.name());
            let attrs = vec![attr("dtype", AttrValue::Str(to.name().into()))];
            let mut classes = value_classes(from, false);
            if from.is_float() && !classes.contains(&Values::Wide) {
                classes.push(Values::Wide);
            }
            for (tag, shape, layout) in [
                ("p97", &[97][..], C),
                ("t33x17", &[33, 17][..], Layout::Transposed),
                ("empty", &[0][..], C),
            ] {
                for &v in &classes {
                    let t = format!("{tag}.{}", values_tag(v));
                    b.push(
                        "cast",
                        label.clone(),
                        &[from, to],
                        &t,
                        vec![input(from, shape, layout, v)],
                        attrs.clone(),
                        C,
                        false,
                    );
                }
            }
        }
    }
    let attrs = vec![attr("dtype", AttrValue::Str("i32".into()))];
    b.push(
        "cast",
        "f32_to_i32".into(),
        &[DType::F32, DType::I32],
        "large",
        vec![input(DType::F32, &[LARGE], C, Values::Wide)],
        attrs,
        C,
        true,
    );

    for &d in op_def("concat").map(|d| d.dtypes).unwrap_or(&[]) {
        let v = default_values(d);
        let variants: Vec<(&str, Vec<(&[usize], Layout)>, i64)> = vec![
            ("axis0", vec![(&[2, 3], C), (&[4, 3], C), (&[0, 3], C)], 0),
            (
                "axis_last",
                vec![(&[3, 2], C), (&[3, 5], Layout::Transposed)],
                -1,
            ),
            (
                "three3d",
                vec![
                    (&[2, 3, 4], C),
                    (&[2, 1, 4], Layout::Offset(2)),
                    (&[2, 2, 4], Layout::Strided),
                ],
                1,
            ),
            ("single", vec![(&[5], C)], 0),
        ];
        for (tag, pieces, axis) in variants {
            let inputs = pieces.iter().map(|&(s, l)| input(d, s, l, v)).collect();
            b.push(
                "concat",
                d.name().into(),
                &[d],
                tag,
                inputs,
                vec![attr("axis", AttrValue::Int(axis))],
                C,
                false,
            );
        }
    }
    let half = LARGE / 2 + 1;
    let inputs = vec![
        input(DType::F32, &[half], C, Values::Normal),
        input(DType::F32, &[half], C, Values::Normal),
    ];
    b.push(
        "concat",
        "f32".into(),
        &[DType::F32],
        "large",
        inputs,
        vec![attr("axis", AttrValue::Int(0))],
        C,
        true,
    );
}

pub(super) fn indexing_cases(b: &mut Builder) {
    let dtypes = op_def("gather").map(|d| d.dtypes).unwrap_or(&[]);
    for &d in dtypes {
        let v = default_values(d);
        for idt in [DType::I32, DType::I64] {
            let it = idt.name();
            let idx = |shape: &[usize], limit: usize, bad: bool| {
                input(idt, shape, C, Values::Indices { limit, bad })
            };
            let ax = |a: i64| vec![attr("axis", AttrValue::Int(a))];
            b.push(
                "index_select",
                d.name().into(),
                &[d],
                &format!("axis0_{it}"),
                vec![input(d, &[5, 7], C, v), idx(&[4], 5, false)],
                ax(0),
                C,
                false,
            );
            b.push(
                "index_select",
                d.name().into(),
                &[d],
                &format!("axis1_t_{it}"),
                vec![
                    input(d, &[5, 7], Layout::Transposed, v),
                    idx(&[9], 7, false),
                ],
                ax(-1),
                C,
                false,
            );
            b.push(
                "index_select",
                d.name().into(),
                &[d],
                &format!("empty_{it}"),
                vec![input(d, &[5, 7], C, v), idx(&[0], 5, false)],
                ax(0),
                C,
                false,
            );
            b.push(
                "index_select",
                d.name().into(),
                &[d],
                &format!("bad_{it}"),
                vec![input(d, &[5, 7], C, v), idx(&[4], 5, true)],
                ax(0),
                C,
                false,
            );
            b.push(
                "embedding",
                d.name().into(),
                &[d],
                &format!("2x3_{it}"),
                vec![input(d, &[11, 6], C, v), idx(&[2, 3], 11, false)],
                vec![],
                C,
                false,
            );
            b.push(
                "embedding",
                d.name().into(),
                &[d],
                &format!("scalar_{it}"),
                vec![input(d, &[11, 6], Layout::Strided, v), idx(&[], 11, false)],
                vec![],
                C,
                false,
            );
            b.push(
                "embedding",
                d.name().into(),
                &[d],
                &format!("bad_{it}"),
                vec![input(d, &[11, 6], C, v), idx(&[5], 11, true)],
                vec![],
                C,
                false,
            );
            b.push(
                "gather",
                d.name().into(),
                &[d],
                &format!("axis1_{it}"),
                vec![input(d, &[4, 6], C, v), idx(&[4, 3], 6, false)],
                ax(1),
                C,
                false,
            );
            b.push(
                "gather",
                d.name().into(),
                &[d],
                &format!("axis0_{it}"),
                vec![
                    input(d, &[4, 6], Layout::Offset(1), v),
                    idx(&[2, 6], 4, false),
                ],
                ax(0),
                C,
                false,
            );
            b.push(
                "gather",
                d.name().into(),
                &[d],
                &format!("3d_{it}"),
                vec![input(d, &[3, 4, 5], C, v), idx(&[2, 4, 3], 5, false)],
                ax(-1),
                C,
                false,
            );
            b.push(
                "gather",
                d.name().into(),
                &[d],
                &format!("bad_{it}"),
                vec![input(d, &[4, 6], C, v), idx(&[4, 3], 6, true)],
                ax(1),
                C,
                false,
            );
        }
    }
    let big: &[usize] = &[16400, 1024];
    let idx = |shape: &[usize], limit: usize| {
        input(DType::I64, shape, C, Values::Indices { limit, bad: false })
    };
    b.push(
        "index_select",
        "f32".into(),
        &[DType::F32],
        "large",
        vec![input(DType::F32, big, C, Values::Normal), idx(&[3], 16400)],
        vec![attr("axis", AttrValue::Int(0))],
        C,
        true,
    );
    b.push(
        "embedding",
        "f32".into(),
        &[DType::F32],
        "large",
        vec![input(DType::F32, big, C, Values::Normal), idx(&[4], 16400)],
        vec![],
        C,
        true,
    );
    b.push(
        "gather",
        "f32".into(),
        &[DType::F32],
        "large",
        vec![
            input(DType::F32, big, C, Values::Normal),
            idx(&[16400, 2], 1024),
        ],
        vec![attr("axis", AttrValue::Int(1))],
        C,
        true,
    );
}
