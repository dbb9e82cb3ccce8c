//! The cases: every op x dtype x shape class x value class, plus the HAL suite, each with a
//! stable id such as `ops.matmul.f16.b2_m64_n33_k17`.

// The case tables are tuples, written and read as tables.
#![allow(clippy::type_complexity)]

use anyaccel_hal::{AttrValue, DType};
use anyaccel_ops::catalog::{Allowed, AttrDefault, Domain, Op, OpDef};
use anyaccel_ops::{op_def, OpKind, CATALOG};

/// A conformance profile: a set of cases a device conforms to when all of them pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profile {
    /// The HAL suite and every op in f32, i32, i64, u8 and bool.
    Core,
    /// Every op in f16.
    Fp16,
    /// Every op in bf16.
    Bf16,
    /// f64 where the device has it (fill, copy, cast).
    Fp64,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [Profile::Core, Profile::Fp16, Profile::Bf16, Profile::Fp64];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Core => "core",
            Profile::Fp16 => "fp16",
            Profile::Bf16 => "bf16",
            Profile::Fp64 => "fp64",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.iter().copied().find(|p| p.name() == s)
    }

    fn of_dtypes(dtypes: &[DType]) -> Vec<Profile> {
        let mut p: Vec<Profile> = dtypes
            .iter()
            .filter_map(|d| match d {
                DType::F16 => Some(Profile::Fp16),
                DType::BF16 => Some(Profile::Bf16),
                DType::F64 => Some(Profile::Fp64),
                _ => None,
            })
            .collect();
        if p.is_empty() {
            p.push(Profile::Core);
        }
        p.sort();
        p.dedup();
        p
    }
}

/// How an input or output lies in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Row-major, at the start of its buffer.
    Contiguous,
    /// The last two dims swapped in memory (a transposed view).
    Transposed,
    /// A gap of one element after every element of the last dim.
    Strided,
    /// Contiguous, starting this many elements into the buffer.
    Offset(usize),
}

/// How input values are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Values {
    /// Uniform in [-2, 2].
    Normal,
    /// Uniform in [0.1, 4].
    Positive,
    /// Uniform in [-60000, 60000]: overflows 16-bit results.
    Wide,
    /// Normal values mixed with NaN, +-Inf, -0.0, +0.0 and subnormals.
    Special,
    /// Few distinct values, so that ties happen.
    Ties,
    /// Integers in [-100, 100] (u8: [0, 255]).
    IntSmall,
    /// Integers including the dtype's minimum, maximum, -1 and 0.
    IntExtreme,
    /// Random bools.
    Bool,
    /// Indices in `0..limit`; with `bad`, one of them is out of range.
    Indices {
        /// Valid indices are below this.
        limit: usize,
        /// One index is out of range.
        bad: bool,
    },
}

/// One input of an op case.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// Element type.
    pub dtype: DType,
    /// Logical shape.
    pub shape: Vec<usize>,
    /// Memory layout.
    pub layout: Layout,
    /// How values are drawn.
    pub values: Values,
}

/// An op case: the call to make.
#[derive(Debug, Clone, PartialEq)]
pub struct OpCase {
    /// The op's name.
    pub op: &'static str,
    /// Inputs, `None` for an absent optional one.
    pub inputs: Vec<Option<InputSpec>>,
    /// Attributes.
    pub attrs: Vec<(String, AttrValue)>,
    /// Layout of the outputs.
    pub out_layout: Layout,
}

/// What a case runs.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseBody {
    /// A HAL test by name (see `anyaccel_hal::testing::HAL_TESTS`).
    Hal(&'static str),
    /// An op call.
    Op(OpCase),
}

/// One conformance case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Stable id: `hal.<test>` or `ops.<op>.<dtype>.<shape>[.<values>]`.
    pub id: String,
    /// `hal` or `ops`.
    pub suite: &'static str,
    /// The op, for op cases.
    pub op: Option<&'static str>,
    /// The dtype label, e.g. `f16` or `f32_to_bf16` for casts.
    pub dtype: Option<String>,
    /// Cases of a group run in one child process: the suite for hal, the op for ops.
    pub group: String,
    /// Profiles the case belongs to.
    pub profiles: Vec<Profile>,
    /// True for the large cases (more than 2^24 elements in one tensor).
    pub large: bool,
    /// What to run.
    pub body: CaseBody,
}

const C: Layout = Layout::Contiguous;
const LARGE: usize = (1 << 24) + 3;

fn default_values(d: DType) -> Values {
    match d {
        DType::Bool => Values::Bool,
        DType::I32 | DType::I64 | DType::U8 => Values::IntSmall,
        _ => Values::Normal,
    }
}

fn input(dtype: DType, shape: &[usize], layout: Layout, values: Values) -> Option<InputSpec> {
    Some(InputSpec {
        dtype,
        shape: shape.to_vec(),
        layout,
        values,
    })
}

fn attr(name: &str, v: AttrValue) -> (String, AttrValue) {
    (name.to_string(), v)
}

fn ints(v: &[i64]) -> AttrValue {
    AttrValue::Ints(v.to_vec())
}

fn values_tag(v: Values) -> &'static str {
    match v {
        Values::Normal => "normal",
        Values::Positive => "positive",
        Values::Wide => "wide",
        Values::Special => "special",
        Values::Ties => "ties",
        Values::IntSmall => "small",
        Values::IntExtreme => "extreme",
        Values::Bool => "bool",
        Values::Indices { bad: true, .. } => "bad_index",
        Values::Indices { .. } => "indices",
    }
}

/// Value classes worth running for a dtype.
fn value_classes(d: DType, positive: bool) -> Vec<Values> {
    let base = if positive {
        Values::Positive
    } else {
        Values::Normal
    };
    match d {
        DType::F32 | DType::F64 => vec![base, Values::Special],
        DType::F16 | DType::BF16 => vec![base, Values::Special, Values::Wide],
        DType::I32 | DType::I64 => vec![Values::IntSmall, Values::IntExtreme],
        DType::U8 => vec![Values::IntSmall],
        DType::Bool => vec![Values::Bool],
    }
}

struct Builder {
    cases: Vec<Case>,
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        op: &'static str,
        dtype_label: String,
        dtypes: &[DType],
        tag: &str,
        inputs: Vec<Option<InputSpec>>,
        attrs: Vec<(String, AttrValue)>,
        out_layout: Layout,
        large: bool,
    ) {
        self.cases.push(Case {
            id: format!("ops.{op}.{dtype_label}.{tag}"),
            suite: "ops",
            op: Some(op),
            dtype: Some(dtype_label),
            group: format!("ops.{op}"),
            profiles: Profile::of_dtypes(dtypes),
            large,
            body: CaseBody::Op(OpCase {
                op,
                inputs,
                attrs,
                out_layout,
            }),
        });
    }
}

/// Shape classes for elementwise ops: tag, shape, input layout, output layout.
const ELEMENTWISE_SHAPES: &[(&str, &[usize], Layout, Layout)] = &[
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
fn unary_cases(b: &mut Builder, def: &OpDef) {
    let (op, dtypes) = (def.name, def.dtypes);
    let positive = matches!(def.op, Op::Unary(u) if u.domain() == Domain::Positive);
    let variants: Vec<(String, Vec<(String, AttrValue)>)> = match def.op {
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
                for v in value_classes(d, positive) {
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
    let v = if positive {
        Values::Positive
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

fn binary_cases(b: &mut Builder, op: &'static str, dtypes: &[DType], compare: bool) {
    for &d in dtypes {
        let mut classes = value_classes(d, op == "pow");
        if compare && d != DType::Bool {
            classes.push(Values::Ties);
        }
        for &(tag, sa, la, sb, lb) in BINARY_SHAPES {
            for &v in &classes {
                // pow: a positive base keeps real results; the exponent is normal.
                let vb = if op == "pow" && v == Values::Positive {
                    Values::Normal
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
            input(d, &[LARGE], C, default_values(d)),
        ],
        vec![],
        C,
        true,
    );
}

fn where_cases(b: &mut Builder, dtypes: &[DType]) {
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

fn creation_cases(b: &mut Builder) {
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

fn movement_cases(b: &mut Builder) {
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

fn indexing_cases(b: &mut Builder) {
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

fn reduction_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
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

fn line_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
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
    let d = dtypes[0];
    let (shape, v): (&[usize], Values) = if op == "cumsum" {
        (&[LARGE], Values::Positive)
    } else {
        (&[168, 100_000], Values::Normal)
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

fn topk_cases(b: &mut Builder, dtypes: &[DType]) {
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

fn norm_cases(b: &mut Builder, op: &'static str, dtypes: &[DType]) {
    let rms = op == "rms_norm";
    for &d in dtypes {
        for (tag, shape, layout) in [
            ("8x67", &[8, 67][..], C),
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

fn matmul_cases(b: &mut Builder, dtypes: &[DType]) {
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
                input(d, &[8, 8], C, Values::Special),
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

fn attention_cases(b: &mut Builder, dtypes: &[DType]) {
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

/// Every case of every suite, in a stable order.
pub fn all_cases() -> Vec<Case> {
    let mut b = Builder { cases: Vec::new() };
    for &(name, _) in anyaccel_hal::testing::HAL_TESTS {
        b.cases.push(Case {
            id: format!("hal.{name}"),
            suite: "hal",
            op: None,
            dtype: None,
            group: "hal".into(),
            profiles: vec![Profile::Core],
            large: false,
            body: CaseBody::Hal(name),
        });
    }
    creation_cases(&mut b);
    movement_cases(&mut b);
    indexing_cases(&mut b);
    for def in CATALOG.iter() {
        match (def.kind, def.name) {
            (OpKind::Unary, _) => unary_cases(&mut b, def),
            (OpKind::Binary, op) => binary_cases(&mut b, op, def.dtypes, false),
            (OpKind::Compare, op) => binary_cases(&mut b, op, def.dtypes, true),
            (OpKind::Select, _) => where_cases(&mut b, def.dtypes),
            (OpKind::Reduction, "cumsum") => line_cases(&mut b, "cumsum", def.dtypes),
            (OpKind::Reduction, "topk") => topk_cases(&mut b, def.dtypes),
            (OpKind::Reduction, op) => reduction_cases(&mut b, op, def.dtypes),
            (OpKind::Normalization, op @ ("softmax" | "log_softmax")) => {
                line_cases(&mut b, op, def.dtypes)
            }
            (OpKind::Normalization, op) => norm_cases(&mut b, op, def.dtypes),
            (OpKind::Matmul, _) => matmul_cases(&mut b, def.dtypes),
            (OpKind::Attention, "attention") => attention_cases(&mut b, def.dtypes),
            _ => {}
        }
    }
    b.cases
}

/// True when `name` matches the glob `pattern` (`*` any run, `?` one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0usize, 0usize, None, 0usize);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn ids_are_unique_and_cover_the_catalog() {
        let cases = all_cases();
        let mut seen = HashSet::new();
        for c in &cases {
            assert!(seen.insert(c.id.clone()), "duplicate case id {}", c.id);
        }
        assert!(cases.len() >= 2000, "only {} cases", cases.len());
        let mut per_op: HashMap<&str, HashSet<String>> = HashMap::new();
        for c in &cases {
            if let (Some(op), Some(label)) = (c.op, &c.dtype) {
                // The label names the main dtype; casts are `<from>_to_<to>`.
                let d = label.split("_to_").next().unwrap_or_default().to_string();
                per_op.entry(op).or_default().insert(d);
            }
        }
        for def in CATALOG.iter() {
            let got = per_op
                .get(def.name)
                .unwrap_or_else(|| panic!("op {} has no cases", def.name));
            for d in def.dtypes {
                assert!(
                    got.contains(d.name()),
                    "op {} has no {} case",
                    def.name,
                    d.name()
                );
            }
            assert!(
                cases.iter().any(|c| c.op == Some(def.name) && c.large),
                "op {} has no large case",
                def.name
            );
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("ops.add.*", "ops.add.f32.p97.normal"));
        assert!(glob_match("*.f16.*", "ops.exp.f16.one.wide"));
        assert!(!glob_match("ops.add.*", "ops.addx"));
        assert!(glob_match("hal.?nfo", "hal.info"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acd"));
    }
}
