//! Cases of the random ops: every float dtype, shapes from a scalar to several Philox blocks
//! per row (and one large tensor, past 2^24 elements), strided outputs and inputs, parameters
//! at their edges, and streams whose seed and offset use all 64 bits.

use anyaccel_hal::{AttrValue, DType};

use super::{attr, input, ints, values_tag, Builder, Layout, Values, C, LARGE};

const DTYPES: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::F64];

/// `(tag, seed, offset)`: zeros, a seed and an offset with bits in both halves, all ones.
const STREAMS: [(&str, i64, i64); 3] = [
    ("s0", 0, 0),
    ("s1", 0x0123_4567_89ab_cdef, (1 << 40) + 7),
    ("s2", -1, -1),
];

fn stream(k: usize) -> (&'static str, Vec<(String, AttrValue)>) {
    let (tag, seed, offset) = STREAMS[k % STREAMS.len()];
    (
        tag,
        vec![
            attr("seed", AttrValue::Int(seed)),
            attr("offset", AttrValue::Int(offset)),
        ],
    )
}

/// `(tag, shape, layout)`: of the output for `uniform` and `normal`, of the input (and a
/// strided output) for `bernoulli` and `dropout`.
const SHAPES: [(&str, &[usize], Layout); 6] = [
    ("scalar", &[], C),
    ("empty", &[0, 4], C),
    ("5x7", &[5, 7], C),
    ("s5x7", &[5, 7], Layout::Strided),
    ("t9x6", &[9, 6], Layout::Transposed),
    ("37x1001", &[37, 1001], C),
];

pub(super) fn random_cases(b: &mut Builder, op: &'static str) {
    match op {
        "uniform" | "normal" => draw_cases(b, op),
        _ => mask_cases(b, op),
    }
}

fn draw_cases(b: &mut Builder, op: &'static str) {
    let params: &[(&str, [(&str, f64); 2])] = if op == "uniform" {
        &[
            ("unit", [("low", 0.0), ("high", 1.0)]),
            ("m3_5_5", [("low", -3.0), ("high", 5.5)]),
            ("point", [("low", 0.1), ("high", 0.1)]),
            ("wide", [("low", -1e5), ("high", 3e5)]),
        ]
    } else {
        &[
            ("std", [("mean", 0.0), ("std", 1.0)]),
            ("0_25_2", [("mean", 0.25), ("std", 2.0)]),
            ("std0", [("mean", 100.0), ("std", 0.0)]),
            ("wide", [("mean", -3.0), ("std", 3e4)]),
        ]
    };
    for d in DTYPES {
        for (si, &(stag, shape, layout)) in SHAPES.iter().enumerate() {
            for (pi, (ptag, pv)) in params.iter().enumerate() {
                let (sttag, mut attrs) = stream(si + pi);
                attrs.extend([
                    attr(
                        "shape",
                        ints(&shape.iter().map(|&x| x as i64).collect::<Vec<_>>()),
                    ),
                    attr("dtype", AttrValue::Str(d.name().into())),
                    attr(pv[0].0, AttrValue::Float(pv[0].1)),
                    attr(pv[1].0, AttrValue::Float(pv[1].1)),
                ]);
                // Transposed applies to inputs; an output gets the strided layout instead.
                let out = if layout == Layout::Transposed {
                    Layout::Strided
                } else {
                    layout
                };
                let tag = format!("{stag}.{ptag}.{sttag}");
                b.push(op, d.name().into(), &[d], &tag, vec![], attrs, out, false);
            }
        }
    }
    let (sttag, mut attrs) = stream(1);
    attrs.extend([
        attr("shape", ints(&[LARGE as i64])),
        attr("dtype", AttrValue::Str("f32".into())),
    ]);
    b.push(
        op,
        "f32".into(),
        &[DType::F32],
        &format!("large.{sttag}"),
        vec![],
        attrs,
        C,
        true,
    );
}

fn mask_cases(b: &mut Builder, op: &'static str) {
    // bernoulli: probabilities inside [0, 1], beyond it, and NaN / infinities; dropout: the
    // values to keep or drop, and p at 0, in between and at 1.
    let classes: &[Values] = if op == "bernoulli" {
        &[Values::Unit, Values::Positive, Values::Special]
    } else {
        &[Values::Normal, Values::Special, Values::Wide]
    };
    let ps: &[(&str, Option<f64>)] = if op == "bernoulli" {
        &[("", None)]
    } else {
        &[(".p0", Some(0.0)), (".p0_3", Some(0.3)), (".p1", Some(1.0))]
    };
    for d in DTYPES {
        for (si, &(stag, shape, layout)) in SHAPES.iter().enumerate() {
            for (ci, &values) in classes.iter().enumerate() {
                if values == Values::Wide && matches!(d, DType::F32 | DType::F64) {
                    continue;
                }
                for (pi, &(ptag, p)) in ps.iter().enumerate() {
                    let (sttag, mut attrs) = stream(si + ci + pi);
                    if let Some(p) = p {
                        attrs.push(attr("p", AttrValue::Float(p)));
                    }
                    let out = if layout == Layout::Strided {
                        Layout::Strided
                    } else {
                        C
                    };
                    let tag = format!("{stag}.{}{ptag}.{sttag}", values_tag(values));
                    b.push(
                        op,
                        d.name().into(),
                        &[d],
                        &tag,
                        vec![input(d, shape, layout, values)],
                        attrs,
                        out,
                        false,
                    );
                }
            }
        }
    }
    // A large tensor; dropout also with its default p = 0.5.
    let (sttag, attrs) = stream(2);
    let mut extra = vec![(format!("large.{sttag}"), vec![LARGE], true)];
    if op == "dropout" {
        extra.push((format!("5x7.default_p.{sttag}"), vec![5, 7], false));
    }
    for (tag, shape, large) in extra {
        b.push(
            op,
            "f32".into(),
            &[DType::F32],
            &tag,
            vec![input(DType::F32, &shape, C, Values::Unit)],
            attrs.clone(),
            C,
            large,
        );
    }
}
