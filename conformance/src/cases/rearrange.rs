//! The cases of the movement and indexing ops of op set v2: `pad`, `flip`, `roll`, `tril`,
//! `triu`, `repeat_interleave`, `one_hot`, `scatter`, `scatter_add`, `index_add` and
//! `masked_fill`. Inputs are strided, transposed and offset; outputs strided (poisoned gaps);
//! indices repeat (so scatters meet duplicates) and go out of range in the `bad` cases.

use anyaccel_hal::{AttrValue, DType};
use anyaccel_ops::op_def;

use super::{attr, default_values, input, ints, Builder, InputSpec, Layout, Values, C, LARGE};

type Attrs = Vec<(String, AttrValue)>;

fn dtypes(op: &str) -> &'static [DType] {
    op_def(op).map(|d| d.dtypes).unwrap_or(&[])
}

/// One case of `op` per dtype of the op: `inputs(d)` and `attrs(d)` give the call.
fn each_dtype(
    b: &mut Builder,
    op: &'static str,
    tag: &str,
    inputs: impl Fn(DType) -> Vec<Option<InputSpec>>,
    attrs: impl Fn(DType) -> Attrs,
    out: Layout,
) {
    for &d in dtypes(op) {
        b.push(
            op,
            d.name().into(),
            &[d],
            tag,
            inputs(d),
            attrs(d),
            out,
            false,
        );
    }
}

fn x(d: DType, shape: &[usize], layout: Layout) -> Option<InputSpec> {
    let v = match d {
        DType::F32 | DType::F16 | DType::BF16 => Values::Special,
        _ => default_values(d),
    };
    input(d, shape, layout, v)
}

fn idx(dtype: DType, shape: &[usize], limit: usize, bad: bool) -> Option<InputSpec> {
    input(dtype, shape, C, Values::Indices { limit, bad })
}

pub(super) fn rearrange_cases(b: &mut Builder) {
    let t = Layout::Transposed;
    let s = Layout::Strided;
    // pad: every mode, several axes, cropping, a value that each dtype converts.
    let pads: &[(&str, &[usize], &[i64], &str, Layout, Layout)] = &[
        ("constant_2d", &[3, 5], &[1, 2, 2, 0], "constant", C, C),
        ("crop", &[3, 5], &[-1, 2, 0, -2], "constant", t, s),
        ("reflect_3d", &[2, 3, 4], &[3, 1, 2, 2], "reflect", C, C),
        (
            "replicate",
            &[2, 3, 4],
            &[2, 5, 0, 3],
            "replicate",
            Layout::Offset(3),
            s,
        ),
        ("circular", &[4, 5], &[5, 3, 1, 4], "circular", t, C),
        ("last_only", &[2, 1, 3], &[2, 2], "reflect", s, C),
    ];
    for &(tag, shape, p, mode, lin, lout) in pads {
        each_dtype(
            b,
            "pad",
            tag,
            |d| vec![x(d, shape, lin)],
            |_| {
                vec![
                    attr("pads", ints(p)),
                    attr("mode", AttrValue::Str(mode.into())),
                    attr("value", AttrValue::Float(-1.5)),
                ]
            },
            lout,
        );
    }
    // flip and roll.
    each_dtype(
        b,
        "flip",
        "2d",
        |d| vec![x(d, &[4, 5], t)],
        |_| vec![attr("axes", ints(&[0]))],
        C,
    );
    each_dtype(
        b,
        "flip",
        "3d",
        |d| vec![x(d, &[2, 3, 4], C)],
        |_| vec![attr("axes", ints(&[-1, 0]))],
        s,
    );
    each_dtype(
        b,
        "roll",
        "2d",
        |d| vec![x(d, &[4, 5], t)],
        |_| vec![attr("shifts", ints(&[2, -7])), attr("axes", ints(&[0, 1]))],
        s,
    );
    each_dtype(
        b,
        "roll",
        "same_axis",
        |d| vec![x(d, &[9], Layout::Offset(1))],
        |_| vec![attr("shifts", ints(&[4, 12])), attr("axes", ints(&[0, -1]))],
        C,
    );
    // tril and triu: square and wide, batched, diagonals on both sides.
    for op in ["tril", "triu"] {
        for (tag, shape, k, lin, lout) in [
            ("4x5", &[4usize, 5][..], 0i64, C, C),
            ("batched_km1", &[2, 3, 5], -1, t, s),
            ("5x3_k2", &[5, 3], 2, s, C),
        ] {
            each_dtype(
                b,
                op,
                tag,
                |d| vec![x(d, shape, lin)],
                |_| vec![attr("diagonal", AttrValue::Int(k))],
                lout,
            );
        }
    }
    // repeat_interleave: one count, a count per element (zeros included).
    each_dtype(
        b,
        "repeat_interleave",
        "uniform",
        |d| vec![x(d, &[3, 4], t)],
        |_| vec![attr("repeats", ints(&[3])), attr("axis", AttrValue::Int(0))],
        s,
    );
    each_dtype(
        b,
        "repeat_interleave",
        "per_element",
        |d| vec![x(d, &[3, 4], C)],
        |_| {
            vec![
                attr("repeats", ints(&[1, 0, 3, 2])),
                attr("axis", AttrValue::Int(-1)),
            ]
        },
        C,
    );
    // one_hot: every output dtype, both index dtypes, an index out of range.
    for &d in dtypes("one_hot") {
        let dt = || {
            vec![
                attr("num_classes", AttrValue::Int(7)),
                attr("dtype", AttrValue::Str(d.name().into())),
            ]
        };
        for (tag, it, shape, bad) in [
            ("1d_i32", DType::I32, &[5usize][..], false),
            ("2d_i64", DType::I64, &[2, 3], false),
            ("bad_i64", DType::I64, &[4], true),
        ] {
            b.push(
                "one_hot",
                d.name().into(),
                &[d],
                tag,
                vec![idx(it, shape, 7, bad)],
                dt(),
                if tag == "2d_i64" { s } else { C },
                false,
            );
        }
    }
    // scatter, scatter_add: duplicates, an index smaller than x and src, both index dtypes.
    for op in ["scatter", "scatter_add"] {
        for (tag, xs, is, ss, axis, it, bad, lin, lout) in [
            (
                "axis0",
                &[4usize, 5][..],
                &[6usize, 5][..],
                &[6usize, 5][..],
                0i64,
                DType::I64,
                false,
                C,
                C,
            ),
            (
                "axis1_part",
                &[4, 6],
                &[3, 9],
                &[5, 9],
                1,
                DType::I32,
                false,
                t,
                s,
            ),
            (
                "3d",
                &[2, 3, 4],
                &[2, 2, 4],
                &[2, 3, 4],
                -2,
                DType::I64,
                false,
                s,
                C,
            ),
            ("bad", &[4, 5], &[3, 5], &[3, 5], 0, DType::I32, true, C, C),
        ] {
            let limit = xs[if axis < 0 {
                (xs.len() as i64 + axis) as usize
            } else {
                axis as usize
            }];
            each_dtype(
                b,
                op,
                tag,
                |d| vec![x(d, xs, lin), idx(it, is, limit, bad), x(d, ss, C)],
                |_| vec![attr("axis", AttrValue::Int(axis))],
                lout,
            );
        }
    }
    // index_add: alpha, both axes, duplicates.
    for (tag, xs, n, ss, axis, alpha, bad, lin, lout) in [
        (
            "axis0",
            &[5usize, 4][..],
            7usize,
            &[7usize, 4][..],
            0i64,
            None,
            false,
            C,
            C,
        ),
        (
            "axis1_alpha",
            &[3, 6],
            8,
            &[3, 8],
            1,
            Some(-2.0),
            false,
            t,
            s,
        ),
        ("bad", &[5, 4], 3, &[3, 4], 0, None, true, C, C),
    ] {
        let limit = xs[axis as usize];
        each_dtype(
            b,
            "index_add",
            tag,
            |d| {
                vec![
                    x(d, xs, lin),
                    idx(DType::I64, &[n], limit, bad),
                    x(d, ss, Layout::Offset(2)),
                ]
            },
            |_| {
                let mut a = vec![attr("axis", AttrValue::Int(axis))];
                if let Some(v) = alpha {
                    a.push(attr("alpha", AttrValue::Float(v)));
                }
                a
            },
            lout,
        );
    }
    // masked_fill: a full mask and a broadcast one.
    for (tag, xs, ms, lin, lout) in [
        ("full", &[3usize, 4][..], &[3usize, 4][..], t, s),
        ("broadcast", &[2, 3, 4], &[3, 1], C, C),
    ] {
        each_dtype(
            b,
            "masked_fill",
            tag,
            |d| vec![x(d, xs, lin), input(DType::Bool, ms, C, Values::Bool)],
            |_| vec![attr("value", AttrValue::Float(-2.5))],
            lout,
        );
    }
    // Large: every op past 2^24 elements (the kernels index in 64 bits, or 32 in WGSL).
    let f = DType::F32;
    let big = |shape: &[usize]| input(f, shape, C, Values::Normal);
    let rows = LARGE.div_ceil(1024);
    let mut large = |op: &'static str, inputs: Vec<Option<InputSpec>>, attrs: Attrs| {
        b.push(op, "f32".into(), &[f], "large", inputs, attrs, C, true);
    };
    large(
        "pad",
        vec![big(&[rows, 1021])],
        vec![
            attr("pads", ints(&[1, 2])),
            attr("mode", AttrValue::Str("reflect".into())),
        ],
    );
    large("flip", vec![big(&[LARGE])], vec![attr("axes", ints(&[0]))]);
    large(
        "roll",
        vec![big(&[LARGE])],
        vec![attr("shifts", ints(&[-5])), attr("axes", ints(&[0]))],
    );
    for op in ["tril", "triu"] {
        large(
            op,
            vec![big(&[rows, 1024])],
            vec![attr("diagonal", AttrValue::Int(3))],
        );
    }
    large(
        "repeat_interleave",
        vec![big(&[LARGE.div_ceil(2)])],
        vec![attr("repeats", ints(&[2])), attr("axis", AttrValue::Int(0))],
    );
    // (An i32 output: an i64 one would pass 128 MiB, more than lavapipe binds at once.)
    b.push(
        "one_hot",
        "i32".into(),
        &[DType::I32],
        "large",
        vec![idx(DType::I32, &[LARGE.div_ceil(16)], 16, false)],
        vec![
            attr("num_classes", AttrValue::Int(16)),
            attr("dtype", AttrValue::Str("i32".into())),
        ],
        C,
        true,
    );
    for op in ["scatter", "scatter_add"] {
        b.push(
            op,
            "f32".into(),
            &[f],
            "large",
            vec![
                big(&[rows, 1024]),
                idx(DType::I64, &[rows, 2], 1024, false),
                big(&[rows, 2]),
            ],
            vec![attr("axis", AttrValue::Int(1))],
            C,
            true,
        );
    }
    b.push(
        "index_add",
        "f32".into(),
        &[f],
        "large",
        vec![
            big(&[rows, 1024]),
            idx(DType::I64, &[2], 1024, false),
            big(&[rows, 2]),
        ],
        vec![attr("axis", AttrValue::Int(1))],
        C,
        true,
    );
    b.push(
        "masked_fill",
        "f32".into(),
        &[f],
        "large",
        vec![big(&[LARGE]), input(DType::Bool, &[LARGE], C, Values::Bool)],
        vec![attr("value", AttrValue::Float(0.5))],
        C,
        true,
    );
}

/// `softmax_backward` and `log_softmax_backward`: y in [-1, 1] (which holds softmax's outputs)
/// and in [-2, 2], grad ordinary values, lines along every position.
pub(super) fn softmax_backward_cases(b: &mut Builder, op: &'static str) {
    let shapes: &[(&str, &[usize], i64, Layout, Layout)] = &[
        ("4x33", &[4, 33], -1, C, C),
        ("3x5x7_axis1", &[3, 5, 7], 1, C, Layout::Strided),
        ("t9x6_axis0", &[9, 6], 0, Layout::Transposed, C),
        ("one", &[1], 0, C, C),
        ("2x0", &[2, 0], -1, C, C),
    ];
    for &d in dtypes(op) {
        for &(tag, shape, axis, lin, lout) in shapes {
            for v in [Values::Normal, Values::Unit] {
                b.push(
                    op,
                    d.name().into(),
                    &[d],
                    &format!("{tag}.{}", super::values_tag(v)),
                    vec![input(d, shape, C, Values::Normal), input(d, shape, lin, v)],
                    vec![attr("axis", AttrValue::Int(axis))],
                    lout,
                    false,
                );
            }
        }
    }
    let big = [LARGE.div_ceil(1024), 1024];
    b.push(
        op,
        "f32".into(),
        &[DType::F32],
        "large",
        vec![
            input(DType::F32, &big, C, Values::Normal),
            input(DType::F32, &big, C, Values::Normal),
        ],
        vec![],
        C,
        true,
    );
}

/// `embedding_backward`: duplicate indices (their rows sum), a padding row, 2-D indices, an
/// index out of range.
pub(super) fn embedding_backward_cases(b: &mut Builder) {
    let op = "embedding_backward";
    let cases: &[(&str, &[usize], usize, usize, Option<i64>, bool, Layout)] = &[
        ("9x6_v5", &[9], 6, 5, None, false, C),
        (
            "2x3x4_v7_pad",
            &[2, 3],
            4,
            7,
            Some(2),
            false,
            Layout::Strided,
        ),
        ("pad_neg", &[8], 3, 4, Some(-1), false, C),
        // Rows in several tasks of the CPU's row kernel, each summing several positions (normal
        // values: sums of the large special values overflow f32 in some orders, not in f64).
        ("3000x64_v700", &[3000], 64, 700, Some(5), false, C),
        ("none", &[0], 5, 3, None, false, C),
        ("bad", &[5], 2, 4, None, true, C),
    ];
    for &d in dtypes(op) {
        for &(tag, ishape, dim, v, pad, bad, lout) in cases {
            let mut gshape = ishape.to_vec();
            gshape.push(dim);
            let mut attrs = vec![attr("num_weights", AttrValue::Int(v as i64))];
            if let Some(p) = pad {
                attrs.push(attr("padding_idx", AttrValue::Int(p)));
            }
            let it = if tag == "pad_neg" {
                DType::I32
            } else {
                DType::I64
            };
            b.push(
                op,
                d.name().into(),
                &[d],
                tag,
                vec![
                    if tag.starts_with("3000") {
                        input(d, &gshape, C, Values::Normal)
                    } else {
                        x(d, &gshape, C)
                    },
                    idx(it, ishape, v, bad),
                ],
                attrs,
                lout,
                false,
            );
        }
    }
    b.push(
        op,
        "f32".into(),
        &[DType::F32],
        "large",
        vec![
            input(DType::F32, &[6, 1024], C, Values::Normal),
            idx(DType::I64, &[6], LARGE.div_ceil(1024), false),
        ],
        vec![attr(
            "num_weights",
            AttrValue::Int(LARGE.div_ceil(1024) as i64),
        )],
        C,
        true,
    );
}
