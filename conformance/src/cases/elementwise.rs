//! The cases of the elementwise ops: unary ops (and `clamp`), binary ops, comparisons and
//! `where`.

use anyaccel_hal::{AttrValue, DType};
use anyaccel_ops::catalog::{ActivationOp, Allowed, AttrDefault, BinaryOp, Domain, Op, OpDef};

use super::{
    attr, default_values, input, value_classes, value_classes_from, values_tag, Builder, Layout,
    Values, C, LARGE,
};

/// Shape classes for elementwise ops: tag, shape, input layout, output layout.
pub(super) const ELEMENTWISE_SHAPES: &[(&str, &[usize], Layout, Layout)] = &[
    ("scalar", &[], C, C),
    ("empty", &[0], C, C),
    ("one", &[1], C, C),
    ("p97", &[97], C, C),
    ("3x67", &[3, 67], C, C),
    ("2x5x33", &[2, 5, 33], C, C),
    ("t33x17", &[33, 17], Layout::Transposed, C),
    ("s9x13", &[9, 13], Layout::Strided, C),
    ("o31", &[31], Layout::Offset(3), C),
    ("outs5x7", &[5, 7], C, Layout::Strided),
];

/// The cases of a unary op: its dtypes (and values from its domain) by the elementwise shapes,
/// once per value of a string attribute that the catalog lists (the default untagged).
pub(super) fn unary_cases(b: &mut Builder, def: &OpDef) {
    let (op, dtypes) = (def.name, def.dtypes);
    let base = match def.op {
        Op::Unary(u) if u.domain() == Domain::Positive => Values::Positive,
        Op::Unary(u) if u.domain() == Domain::Unit => Values::Unit,
        Op::Unary(u) if u.domain() == Domain::AtLeastOne => Values::AtLeastOne,
        _ => Values::Normal,
    };
    let float = |name: &str, v: f64| attr(name, AttrValue::Float(v));
    let variants: Vec<(String, Vec<(String, AttrValue)>)> = match def.op {
        // The defaults (untagged), and other values: a steep softplus with a low threshold
        // (both branches), a negative beta; a steeper leak; a smaller alpha.
        Op::Activation(ActivationOp::Softplus) => vec![
            (String::new(), vec![]),
            (
                "beta2_t1_".into(),
                vec![float("beta", 2.0), float("threshold", 1.0)],
            ),
            ("betaneg_".into(), vec![float("beta", -0.5)]),
        ],
        Op::Activation(ActivationOp::LeakyRelu) => vec![
            (String::new(), vec![]),
            ("slope02_".into(), vec![float("negative_slope", 0.2)]),
        ],
        Op::Activation(ActivationOp::Elu) => vec![
            (String::new(), vec![]),
            ("alpha05_".into(), vec![float("alpha", 0.5)]),
        ],
        Op::Clamp => vec![
            (
                String::new(),
                vec![
                    attr("min", AttrValue::Float(-1.0)),
                    attr("max", AttrValue::Float(1.0)),
                ],
            ),
            (
                "inverted_".into(),
                vec![
                    attr("min", AttrValue::Float(1.0)),
                    attr("max", AttrValue::Float(-1.0)),
                ],
            ),
        ],
        _ => string_attr_variants(def),
    };
    for &d in dtypes {
        for (vtag, attrs) in &variants {
            for &(tag, shape, layout, out) in ELEMENTWISE_SHAPES {
                for v in value_classes_from(d, base) {
                    let t = format!("{vtag}{tag}.{}", values_tag(v));
                    b.push(
                        op,
                        d.name().into(),
                        &[d],
                        &t,
                        vec![input(d, shape, layout, v)],
                        attrs.clone(),
                        out,
                        false,
                    );
                }
            }
        }
    }
    let d = dtypes[0];
    let v = if d.is_float() {
        base
    } else {
        default_values(d)
    };
    b.push(
        op,
        d.name().into(),
        &[d],
        "large",
        vec![input(d, &[LARGE], C, v)],
        variants[0].1.clone(),
        C,
        true,
    );
}

/// Shape classes for binary ops: tag, a, b (shape and layout).
type BinShape = (
    &'static str,
    &'static [usize],
    Layout,
    &'static [usize],
    Layout,
);
const BINARY_SHAPES: &[BinShape] = &[
    ("same37", &[37], C, &[37], C),
    ("scalar", &[], C, &[], C),
    ("empty", &[0], C, &[0], C),
    ("bcast4x1x7_5x1", &[4, 1, 7], C, &[5, 1], C),
    ("bscalar3x67", &[3, 67], C, &[], C),
    ("t17x9", &[17, 9], Layout::Transposed, &[17, 9], C),
    ("s9x13", &[9, 13], C, &[9, 13], Layout::Strided),
    ("o31", &[31], Layout::Offset(3), &[31], Layout::Offset(5)),
    ("2x5x33", &[2, 5, 33], C, &[2, 5, 33], C),
];

/// One variant per allowed value of each string attribute of `def` (tagged `value_`, the
/// default untagged), or one untagged variant without attributes.
fn string_attr_variants(def: &OpDef) -> Vec<(String, Vec<(String, AttrValue)>)> {
    let mut out = Vec::new();
    for a in def.attrs {
        if let Allowed::OneOf(values) = a.allowed {
            for v in values {
                let tag = if a.default == AttrDefault::Str(v) {
                    String::new()
                } else {
                    format!("{v}_")
                };
                out.push((tag, vec![attr(a.name, AttrValue::Str(v.to_string()))]));
            }
        }
    }
    if out.is_empty() {
        out.push((String::new(), Vec::new()));
    }
    out
}

pub(super) fn binary_cases(b: &mut Builder, def: &OpDef, compare: bool) {
    let (op, dtypes) = (def.name, def.dtypes);
    let shifts = matches!(
        def.op,
        Op::Binary(BinaryOp::BitwiseLeftShift | BinaryOp::BitwiseRightShift)
    );
    for &d in dtypes {
        let mut classes = value_classes(d, op == "pow");
        if compare && d != DType::Bool {
            classes.push(Values::Ties);
        }
        // remainder, fmod: zeros and equal magnitudes among the divisors.
        if matches!(def.op, Op::Binary(BinaryOp::Remainder | BinaryOp::Fmod)) {
            classes.push(Values::Ties);
        }
        for &(tag, sa, la, sb, lb) in BINARY_SHAPES {
            for &v in &classes {
                // pow: a positive base keeps real results; the exponent is normal. Shifts:
                // amounts around the width.
                let vb = if op == "pow" && v == Values::Positive {
                    Values::Normal
                } else if shifts {
                    Values::Shifts
                } else {
                    v
                };
                let t = format!("{tag}.{}", values_tag(v));
                b.push(
                    op,
                    d.name().into(),
                    &[d],
                    &t,
                    vec![input(d, sa, la, v), input(d, sb, lb, vb)],
                    vec![],
                    C,
                    false,
                );
            }
        }
        b.push(
            op,
            d.name().into(),
            &[d],
            "outs5x7",
            vec![
                input(d, &[5, 7], C, default_values(d)),
                input(d, &[7], C, default_values(d)),
            ],
            vec![],
            Layout::Strided,
            false,
        );
    }
    let d = dtypes[0];
    let v = if op == "pow" {
        Values::Positive
    } else {
        default_values(d)
    };
    b.push(
        op,
        d.name().into(),
        &[d],
        "large",
        vec![
            input(d, &[LARGE], C, v),
            input(
                d,
                &[LARGE],
                C,
                if shifts {
                    Values::Shifts
                } else {
                    default_values(d)
                },
            ),
        ],
        vec![],
        C,
        true,
    );
}

pub(super) fn where_cases(b: &mut Builder, dtypes: &[DType]) {
    let shapes: &[(&str, &[usize], &[usize], &[usize], Layout)] = &[
        ("same37", &[37], &[37], &[37], C),
        ("bcast", &[4, 1, 7], &[5, 1], &[7], C),
        ("scalar_ab", &[3, 5], &[], &[], C),
        ("empty", &[0], &[0], &[0], C),
        ("t9x13", &[9, 13], &[9, 13], &[9, 13], Layout::Transposed),
        ("o31", &[31], &[31], &[31], Layout::Offset(1)),
    ];
    for &d in dtypes {
        for &(tag, c, x, y, layout) in shapes {
            for v in value_classes(d, false) {
                let t = format!("{tag}.{}", values_tag(v));
                let inputs = vec![
                    input(DType::Bool, c, layout, Values::Bool),
                    input(d, x, C, v),
                    input(d, y, layout, v),
                ];
                b.push("where", d.name().into(), &[d], &t, inputs, vec![], C, false);
            }
        }
    }
    let d = DType::F32;
    let inputs = vec![
        input(DType::Bool, &[LARGE], C, Values::Bool),
        input(d, &[LARGE], C, Values::Normal),
        input(d, &[1], C, Values::Normal),
    ];
    b.push(
        "where",
        "f32".into(),
        &[d],
        "large",
        inputs,
        vec![],
        C,
        true,
    );
}

/// The activation gradients: x over the value classes of its dtype (NaN, infinities and 16-bit
/// overflow included), grad ordinary values, the forward op's attribute variants.
pub(super) fn backward_cases(b: &mut Builder, def: &OpDef) {
    let (op, dtypes) = (def.name, def.dtypes);
    let float = |name: &str, v: f64| attr(name, AttrValue::Float(v));
    let variants: Vec<(String, Vec<(String, AttrValue)>)> = match op {
        "softplus_backward" => vec![
            (String::new(), vec![]),
            (
                "beta2_t1_".into(),
                vec![float("beta", 2.0), float("threshold", 1.0)],
            ),
            ("betaneg_".into(), vec![float("beta", -0.5)]),
        ],
        "leaky_relu_backward" => vec![
            (String::new(), vec![]),
            ("slope02_".into(), vec![float("negative_slope", 0.2)]),
        ],
        "elu_backward" => vec![
            (String::new(), vec![]),
            ("alpha05_".into(), vec![float("alpha", 0.5)]),
        ],
        _ => string_attr_variants(def),
    };
    let shapes: &[(&str, &[usize], Layout, Layout)] = &[
        ("scalar", &[], C, C),
        ("empty", &[0], C, C),
        ("p97", &[97], C, C),
        ("2x5x33", &[2, 5, 33], C, C),
        ("t33x17", &[33, 17], Layout::Transposed, C),
        ("s9x13", &[9, 13], Layout::Strided, C),
        ("outs5x7", &[5, 7], C, Layout::Strided),
    ];
    for &d in dtypes {
        for (vtag, attrs) in &variants {
            for &(tag, shape, layout, out) in shapes {
                for v in value_classes_from(d, Values::Normal) {
                    b.push(
                        op,
                        d.name().into(),
                        &[d],
                        &format!("{vtag}{tag}.{}", values_tag(v)),
                        vec![
                            input(d, shape, C, Values::Normal),
                            input(d, shape, layout, v),
                        ],
                        attrs.clone(),
                        out,
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
        vec![
            input(d, &[LARGE], C, Values::Normal),
            input(d, &[LARGE], C, Values::Special),
        ],
        variants[0].1.clone(),
        C,
        true,
    );
}
