//! The cases: every op x dtype x shape class x value class, plus the HAL suite, each with a
//! stable id such as `ops.matmul.f16.b2_m64_n33_k17`.

// The case tables are tuples, written and read as tables.
#![allow(clippy::type_complexity)]

use anyaccel_hal::{AttrValue, DType};
use anyaccel_ops::{OpKind, CATALOG};
use std::collections::HashSet;

mod elementwise;
mod movement;
mod nn;
mod quant;
mod random;
mod rearrange;
mod reduce;

use elementwise::{binary_cases, unary_cases, where_cases};
use movement::{creation_cases, indexing_cases, movement_cases};
use nn::{
    adaptive3_cases, attention_backward_cases, attention_cases, batch_norm_cases,
    conv_backward_cases, conv_cases, conv_transpose_cases, cross_entropy_cases, group_norm_cases,
    matmul_cases, norm_backward_cases, norm_cases, pool_cases, resample_cases,
};
use reduce::{line_cases, reduction_cases, sort_cases, topk_cases};

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
    /// The gradients that training needs (`relu_backward`, ...), in every float dtype.
    Train,
    /// The counter-based random ops, bit-identical on every device.
    Random,
    /// Convolution (the ops of kind Vision), in every float dtype.
    Nn,
    /// Quantization and the quantized matmuls (int8, packed int4).
    Quant,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 8] = [
        Profile::Core,
        Profile::Fp16,
        Profile::Bf16,
        Profile::Fp64,
        Profile::Train,
        Profile::Random,
        Profile::Nn,
        Profile::Quant,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Core => "core",
            Profile::Fp16 => "fp16",
            Profile::Bf16 => "bf16",
            Profile::Fp64 => "fp64",
            Profile::Train => "train",
            Profile::Random => "random",
            Profile::Nn => "nn",
            Profile::Quant => "quant",
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

/// The windows of a pool over an input plane [H, W] (a 1-D pool: H = 1), per dimension.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolWindows {
    /// The input plane's [H, W].
    pub input: [usize; 2],
    /// The output plane's [OH, OW].
    pub out: [usize; 2],
    /// The window's size.
    pub kernel: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Implicit padding on both sides.
    pub padding: [usize; 2],
    /// Step between taps.
    pub dilation: [usize; 2],
}

impl PoolWindows {
    /// The plane position of tap `k` (in [0, kh kw)) of the window of output plane position
    /// `o` (in [0, OH OW)), or -1 where it lies in the padding.
    pub fn tap(&self, o: usize, k: usize) -> i64 {
        let (oy, ox) = (o / self.out[1], o % self.out[1]);
        let (ky, kx) = (k / self.kernel[1], k % self.kernel[1]);
        let iy = (oy * self.stride[0] + ky * self.dilation[0]) as i64 - self.padding[0] as i64;
        let ix = (ox * self.stride[1] + kx * self.dilation[1]) as i64 - self.padding[1] as i64;
        if iy < 0 || ix < 0 || iy >= self.input[0] as i64 || ix >= self.input[1] as i64 {
            -1
        } else {
            iy * self.input[1] as i64 + ix
        }
    }
}

/// How input values are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Values {
    /// Uniform in [-2, 2].
    Normal,
    /// Uniform in [0.1, 4].
    Positive,
    /// Uniform in [-1, 1] (`asin`, `acos`, `log1p`, `atanh`).
    Unit,
    /// Uniform in [1, 5] (`acosh`).
    AtLeastOne,
    /// Uniform in [-1/64, 1/64]: quantization scales, which make int8 data of magnitude ~100
    /// weights of magnitude ~1.
    Scales,
    /// Shift amounts: integers in [-2, width + 1] (u8: [0, 9]).
    Shifts,
    /// Uniform in [-60000, 60000]: overflows 16-bit results.
    Wide,
    /// Normal values mixed with NaN, +-Inf, -0.0, +0.0 and subnormals.
    Special,
    /// `Special` without the largest finite value: for products accumulated in f32 (f32 and
    /// bf16 inputs), where a product or partial sum that overflows the accumulator is Inf or NaN
    /// by the order and fusing of the accumulation, which the contract leaves open.
    SpecialInRange,
    /// Few distinct values, so that ties happen.
    Ties,
    /// Integers in [-100, 100] (u8: [0, 255]).
    IntSmall,
    /// Integers including the dtype's minimum, maximum, -1 and 0.
    IntExtreme,
    /// Random bools.
    Bool,
    /// Plane indices that a max pool could give: for element (.., oy, ox) of a [.., OH, OW]
    /// tensor, the position iy * W + ix of a random tap of its window, or -1 where that tap
    /// lies in the padding.
    PoolIndices(PoolWindows),
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
    /// True for a large case that repeats, for another op, the indexing of an earlier large
    /// case: the ops of an elementwise family (unary, binary, comparison, activation gradient)
    /// share one kernel template per dialect, so one large case of the family exercises its
    /// 32/64-bit indexing. `--large-sample` skips these cases.
    pub repeats_large: bool,
    /// What to run.
    pub body: CaseBody,
}

const C: Layout = Layout::Contiguous;
const LARGE: usize = (1 << 24) + 3;

fn default_values(d: DType) -> Values {
    match d {
        DType::Bool => Values::Bool,
        DType::I32 | DType::I64 | DType::U8 | DType::I8 => Values::IntSmall,
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
        Values::Unit => "unit",
        Values::AtLeastOne => "ge1",
        Values::Scales => "scales",
        Values::Shifts => "shifts",
        Values::Wide => "wide",
        Values::Special => "special",
        Values::SpecialInRange => "special_in_range",
        Values::Ties => "ties",
        Values::IntSmall => "small",
        Values::IntExtreme => "extreme",
        Values::Bool => "bool",
        Values::PoolIndices(_) => "pool_indices",
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
    value_classes_from(d, base)
}

/// Value classes worth running for a dtype, `base` the class of ordinary float values.
fn value_classes_from(d: DType, base: Values) -> Vec<Values> {
    match d {
        DType::F32 | DType::F64 => vec![base, Values::Special],
        DType::F16 | DType::BF16 => vec![base, Values::Special, Values::Wide],
        DType::I32 | DType::I64 | DType::I8 => vec![Values::IntSmall, Values::IntExtreme],
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
            repeats_large: false,
            body: CaseBody::Op(OpCase {
                op,
                inputs,
                attrs,
                out_layout,
            }),
        });
    }
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
            repeats_large: false,
            body: CaseBody::Hal(name),
        });
    }
    creation_cases(&mut b);
    movement_cases(&mut b);
    indexing_cases(&mut b);
    rearrange::rearrange_cases(&mut b);
    for def in CATALOG.iter() {
        match (def.kind, def.name) {
            (OpKind::Unary, _) => unary_cases(&mut b, def),
            (OpKind::Binary, _) => binary_cases(&mut b, def, false),
            (OpKind::Compare, _) => binary_cases(&mut b, def, true),
            (OpKind::Select, _) => where_cases(&mut b, def.dtypes),
            (OpKind::Reduction, op @ ("cumsum" | "cumprod" | "cummax" | "cummin")) => {
                line_cases(&mut b, op, def.dtypes)
            }
            (OpKind::Reduction, "topk") => topk_cases(&mut b, def.dtypes),
            (OpKind::Reduction, op @ ("sort" | "argsort")) => sort_cases(&mut b, op, def.dtypes),
            (OpKind::Reduction, op) => reduction_cases(&mut b, op, def.dtypes),
            (OpKind::Normalization, op @ ("softmax" | "log_softmax")) => {
                line_cases(&mut b, op, def.dtypes)
            }
            (OpKind::Normalization, op) => norm_cases(&mut b, op, def.dtypes),
            (OpKind::Matmul, _) => matmul_cases(&mut b, def.dtypes),
            (OpKind::Attention, "attention") => attention_cases(&mut b, def.dtypes),
            (OpKind::Backward, op @ ("softmax_backward" | "log_softmax_backward")) => {
                rearrange::softmax_backward_cases(&mut b, op)
            }
            (OpKind::Backward, "embedding_backward") => rearrange::embedding_backward_cases(&mut b),
            (OpKind::Backward, op) if op.starts_with("conv") => {
                conv_backward_cases(&mut b, op, def.dtypes)
            }
            (OpKind::Backward, op @ ("adaptive_avg_pool2d_backward" | "interpolate_backward")) => {
                resample_cases(&mut b, op, def.dtypes)
            }
            (OpKind::Backward, op @ "adaptive_avg_pool3d_backward") => {
                adaptive3_cases(&mut b, op, def.dtypes)
            }
            (OpKind::Backward, op) if op.contains("_pool") => pool_cases(&mut b, op, def.dtypes),
            (
                OpKind::Backward,
                op @ ("layer_norm_backward"
                | "rms_norm_backward"
                | "group_norm_backward"
                | "batch_norm_backward"),
            ) => norm_backward_cases(&mut b, op, def.dtypes),
            (OpKind::Backward, "attention_backward") => {
                attention_backward_cases(&mut b, def.dtypes)
            }
            (OpKind::Backward, op) if op.starts_with("cross_entropy") => {
                cross_entropy_cases(&mut b, op, def.dtypes)
            }
            (OpKind::Backward, _) => elementwise::backward_cases(&mut b, def),
            (OpKind::Random, op) => random::random_cases(&mut b, op),
            (OpKind::Vision, op @ ("conv1d" | "conv2d")) => conv_cases(&mut b, op, def.dtypes),
            (OpKind::Vision, op @ ("conv_transpose1d" | "conv_transpose2d")) => {
                conv_transpose_cases(&mut b, op, def.dtypes)
            }
            (OpKind::Vision, op @ ("adaptive_avg_pool2d" | "interpolate")) => {
                resample_cases(&mut b, op, def.dtypes)
            }
            (OpKind::Vision, op @ "adaptive_avg_pool3d") => adaptive3_cases(&mut b, op, def.dtypes),
            (OpKind::Vision, "group_norm") => group_norm_cases(&mut b, def.dtypes),
            (OpKind::Vision, "batch_norm") => batch_norm_cases(&mut b, def.dtypes),
            (OpKind::Vision, op) => pool_cases(&mut b, op, def.dtypes),
            (OpKind::Quantized, "quantize") => quant::quantize_cases(&mut b, def.dtypes),
            (OpKind::Quantized, "dequantize") => quant::dequantize_cases(&mut b),
            (OpKind::Quantized, "matmul_wq") => quant::matmul_wq_cases(&mut b, def.dtypes),
            (OpKind::Quantized, "matmul_i8") => quant::matmul_i8_cases(&mut b),
            _ => {}
        }
    }
    // Gradients form the `train` profile and the random ops the `random` one (their f16, bf16
    // and f64 cases also count for those).
    for c in &mut b.cases {
        let profile = match c.op.and_then(anyaccel_ops::op_def).map(|d| d.kind) {
            Some(OpKind::Backward) => Profile::Train,
            Some(OpKind::Random) => Profile::Random,
            Some(OpKind::Vision) => Profile::Nn,
            Some(OpKind::Quantized) => Profile::Quant,
            _ => continue,
        };
        c.profiles.retain(|p| *p != Profile::Core);
        c.profiles.push(profile);
    }
    strided_output_cases(&mut b.cases);
    // The first large case of each elementwise family stands for the family's indexing.
    let mut families = HashSet::new();
    for c in b.cases.iter_mut().filter(|c| c.large) {
        if let Some(family) = c.op.and_then(elementwise_family) {
            c.repeats_large = !families.insert(family);
        }
    }
    b.cases
}

/// For every op whose cases all write contiguous outputs, one more case that writes strided
/// ones (a gap after every element of the last dimension, poisoned): a device or plugin that
/// ignores output strides writes into the gaps and fails it. The case is a copy of the op's
/// first valid call (by the op's own shape rules) whose outputs have at least one dimension,
/// with the id suffix `.strided_out`, placed after it.
fn strided_output_cases(cases: &mut Vec<Case>) {
    let mut covered: HashSet<&'static str> = HashSet::new();
    for c in cases.iter() {
        if let (Some(op), CaseBody::Op(body)) = (c.op, &c.body) {
            if body.out_layout != Layout::Contiguous {
                covered.insert(op);
            }
        }
    }
    let mut at = 0;
    while at < cases.len() {
        let candidate = match (&cases[at].op, &cases[at].body) {
            (Some(op), CaseBody::Op(body)) if !covered.contains(op) && !cases[at].large => {
                valid_with_outputs(body).then(|| {
                    let mut c = cases[at].clone();
                    c.id.push_str(".strided_out");
                    if let CaseBody::Op(b) = &mut c.body {
                        b.out_layout = Layout::Strided;
                    }
                    (*op, c)
                })
            }
            _ => None,
        };
        at += 1;
        if let Some((op, c)) = candidate {
            covered.insert(op);
            cases.insert(at, c);
            at += 1;
        }
    }
}

/// For each op, the id of its first case that writes strided outputs (a gap after every
/// element) and a valid call with an output of two or more elements: a device that ignores
/// output strides must fail it. Every op of the catalog has one (a test checks).
pub fn strided_output_case_per_op(
    cases: &[Case],
) -> std::collections::BTreeMap<&'static str, String> {
    let mut out = std::collections::BTreeMap::new();
    for c in cases.iter().filter(|c| !c.large) {
        let (Some(op), CaseBody::Op(body)) = (c.op, &c.body) else {
            continue;
        };
        if body.out_layout != Layout::Strided || out.contains_key(op) {
            continue;
        }
        if let Some(outputs) = valid_outputs(body) {
            if outputs
                .iter()
                .any(|shape| shape.iter().product::<usize>() >= 2)
            {
                out.insert(op, c.id.clone());
            }
        }
    }
    out
}

/// True when the op's shape rules accept the call and give it outputs that each have a
/// dimension and an element, and no index input is meant to be out of range.
fn valid_with_outputs(body: &OpCase) -> bool {
    valid_outputs(body).is_some_and(|outputs| {
        !outputs.is_empty()
            && outputs
                .iter()
                .all(|shape| !shape.is_empty() && shape.iter().all(|&d| d > 0))
    })
}

/// The output shapes of a valid call (the op's shape rules accept it, and no index input is
/// meant to be out of range).
fn valid_outputs(body: &OpCase) -> Option<Vec<Vec<usize>>> {
    if body
        .inputs
        .iter()
        .flatten()
        .any(|i| matches!(i.values, Values::Indices { bad: true, .. }))
    {
        return None;
    }
    let descs: Vec<Option<anyaccel_hal::TensorDesc>> = body
        .inputs
        .iter()
        .map(|i| {
            i.as_ref()
                .map(|i| anyaccel_hal::TensorDesc::contiguous(i.dtype, &i.shape))
        })
        .collect();
    let refs: Vec<Option<&anyaccel_hal::TensorDesc>> = descs.iter().map(Option::as_ref).collect();
    anyaccel_ops::plan(body.op, &refs, &body.attrs)
        .ok()
        .map(|outputs| outputs.into_iter().map(|(_, shape)| shape).collect())
}

/// The elementwise family whose kernel template `op` shares, if any.
fn elementwise_family(op: &str) -> Option<&'static str> {
    match (anyaccel_ops::op_def(op)?.kind, op) {
        (OpKind::Unary, _) => Some("unary"),
        (OpKind::Binary, _) => Some("binary"),
        (OpKind::Compare, _) => Some("compare"),
        (
            OpKind::Backward,
            "softmax_backward"
            | "log_softmax_backward"
            | "embedding_backward"
            | "attention_backward",
        ) => None,
        (OpKind::Backward, _) => Some("activation_backward"),
        _ => None,
    }
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
    fn every_op_has_a_case_that_a_device_ignoring_output_strides_fails() {
        let per_op = strided_output_case_per_op(&all_cases());
        let missing: Vec<&str> = CATALOG
            .iter()
            .map(|d| d.name)
            .filter(|op| !per_op.contains_key(op))
            .collect();
        assert!(missing.is_empty(), "no strided-output case: {missing:?}");
    }

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
    fn the_large_sample_keeps_one_large_case_per_elementwise_family() {
        let cases = all_cases();
        assert!(cases.iter().all(|c| c.large || !c.repeats_large));
        let kept: Vec<&Case> = cases
            .iter()
            .filter(|c| c.large && !c.repeats_large)
            .collect();
        for def in CATALOG.iter() {
            if elementwise_family(def.name).is_none() {
                assert!(
                    kept.iter().any(|c| c.op == Some(def.name)),
                    "the large sample drops {}",
                    def.name
                );
            }
        }
        for family in ["unary", "binary", "compare", "activation_backward"] {
            let n = kept
                .iter()
                .filter(|c| c.op.and_then(elementwise_family) == Some(family))
                .count();
            assert_eq!(n, 1, "family {family}");
        }
        assert!(cases.iter().filter(|c| c.repeats_large).count() > 40);
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
