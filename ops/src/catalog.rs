//! The op catalog: every op of `docs/ops.md` with its inputs, outputs, attributes and dtypes.

use anyaccel_hal::DType;

/// What family an op belongs to; it decides its tolerance class and how conformance builds cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Output-only creation ops: `fill`, `arange`.
    Creation,
    /// Layout and data movement: `copy`, `cast`, `concat`.
    Movement,
    /// Indexed reads: `index_select`, `embedding`, `gather`.
    Indexing,
    /// Elementwise unary ops.
    Unary,
    /// Elementwise binary ops (broadcasting).
    Binary,
    /// Comparisons giving bool (broadcasting).
    Compare,
    /// `where(cond, a, b)`.
    Select,
    /// Reductions over axes, `cumsum`, `topk`.
    Reduction,
    /// `softmax`, `log_softmax`, `layer_norm`, `rms_norm`.
    Normalization,
    /// `matmul`.
    Matmul,
    /// `rope`, `attention`.
    Attention,
}

impl OpKind {
    /// True for ops whose results accumulate many terms: they get the wider tolerance.
    pub fn accumulates(self) -> bool {
        matches!(
            self,
            OpKind::Reduction | OpKind::Normalization | OpKind::Matmul | OpKind::Attention
        )
    }
}

/// One op of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct OpDef {
    /// The name, as in `docs/ops.md` and the generic call.
    pub name: &'static str,
    /// Family.
    pub kind: OpKind,
    /// Input names; a trailing `?` marks an optional input, a trailing `*` a variadic one.
    pub inputs: &'static [&'static str],
    /// Output names.
    pub outputs: &'static [&'static str],
    /// Attribute names.
    pub attrs: &'static [&'static str],
    /// The dtypes of its main input (or of its output for creation ops).
    pub dtypes: &'static [DType],
}

const ALL: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::Bool,
];
const ALL_F64: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::F64,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::Bool,
];
const FLOAT: &[DType] = &[DType::F32, DType::F16, DType::BF16];
const NUM: &[DType] = &[DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64];
const CMP: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::I32,
    DType::I64,
    DType::Bool,
];

macro_rules! op {
    ($name:literal, $kind:ident, [$($i:literal),*], [$($o:literal),*], [$($a:literal),*], $dtypes:expr) => {
        OpDef { name: $name, kind: OpKind::$kind, inputs: &[$($i),*], outputs: &[$($o),*], attrs: &[$($a),*], dtypes: $dtypes }
    };
}

/// Every op, in the order of `docs/ops.md`.
pub const CATALOG: &[OpDef] = &[
    op!(
        "fill",
        Creation,
        [],
        ["out"],
        ["value", "dtype", "shape"],
        ALL_F64
    ),
    op!(
        "arange",
        Creation,
        [],
        ["out"],
        ["start", "step", "n", "dtype"],
        NUM
    ),
    op!("copy", Movement, ["x"], ["out"], [], ALL_F64),
    op!("cast", Movement, ["x"], ["out"], ["dtype"], ALL_F64),
    op!("concat", Movement, ["xs*"], ["out"], ["axis"], ALL),
    op!(
        "index_select",
        Indexing,
        ["x", "indices"],
        ["out"],
        ["axis"],
        ALL
    ),
    op!(
        "embedding",
        Indexing,
        ["weight", "indices"],
        ["out"],
        [],
        ALL
    ),
    op!("gather", Indexing, ["x", "indices"], ["out"], ["axis"], ALL),
    op!("add", Binary, ["a", "b"], ["out"], [], NUM),
    op!("sub", Binary, ["a", "b"], ["out"], [], NUM),
    op!("mul", Binary, ["a", "b"], ["out"], [], NUM),
    op!("div", Binary, ["a", "b"], ["out"], [], NUM),
    op!("maximum", Binary, ["a", "b"], ["out"], [], NUM),
    op!("minimum", Binary, ["a", "b"], ["out"], [], NUM),
    op!("pow", Binary, ["a", "b"], ["out"], [], FLOAT),
    op!("eq", Compare, ["a", "b"], ["out"], [], CMP),
    op!("ne", Compare, ["a", "b"], ["out"], [], CMP),
    op!("lt", Compare, ["a", "b"], ["out"], [], CMP),
    op!("le", Compare, ["a", "b"], ["out"], [], CMP),
    op!("gt", Compare, ["a", "b"], ["out"], [], CMP),
    op!("ge", Compare, ["a", "b"], ["out"], [], CMP),
    op!("where", Select, ["cond", "a", "b"], ["out"], [], ALL),
    op!("neg", Unary, ["x"], ["out"], [], NUM),
    op!("abs", Unary, ["x"], ["out"], [], NUM),
    op!("exp", Unary, ["x"], ["out"], [], FLOAT),
    op!("log", Unary, ["x"], ["out"], [], FLOAT),
    op!("sqrt", Unary, ["x"], ["out"], [], FLOAT),
    op!("rsqrt", Unary, ["x"], ["out"], [], FLOAT),
    op!("sin", Unary, ["x"], ["out"], [], FLOAT),
    op!("cos", Unary, ["x"], ["out"], [], FLOAT),
    op!("tanh", Unary, ["x"], ["out"], [], FLOAT),
    op!("sigmoid", Unary, ["x"], ["out"], [], FLOAT),
    op!("relu", Unary, ["x"], ["out"], [], NUM),
    op!("gelu", Unary, ["x"], ["out"], ["approximate"], FLOAT),
    op!("silu", Unary, ["x"], ["out"], [], FLOAT),
    op!("clamp", Unary, ["x"], ["out"], ["min", "max"], NUM),
    op!("sum", Reduction, ["x"], ["out"], ["axes", "keepdim"], NUM),
    op!(
        "mean",
        Reduction,
        ["x"],
        ["out"],
        ["axes", "keepdim"],
        FLOAT
    ),
    op!("max", Reduction, ["x"], ["out"], ["axes", "keepdim"], NUM),
    op!("min", Reduction, ["x"], ["out"], ["axes", "keepdim"], NUM),
    op!(
        "argmax",
        Reduction,
        ["x"],
        ["out"],
        ["axes", "keepdim"],
        NUM
    ),
    op!(
        "argmin",
        Reduction,
        ["x"],
        ["out"],
        ["axes", "keepdim"],
        NUM
    ),
    op!("cumsum", Reduction, ["x"], ["out"], ["axis"], NUM),
    op!(
        "topk",
        Reduction,
        ["x"],
        ["values", "indices"],
        ["k", "axis", "largest"],
        NUM
    ),
    op!("softmax", Normalization, ["x"], ["out"], ["axis"], FLOAT),
    op!(
        "log_softmax",
        Normalization,
        ["x"],
        ["out"],
        ["axis"],
        FLOAT
    ),
    op!(
        "layer_norm",
        Normalization,
        ["x", "weight?", "bias?"],
        ["out"],
        ["eps"],
        FLOAT
    ),
    op!(
        "rms_norm",
        Normalization,
        ["x", "weight?"],
        ["out"],
        ["eps"],
        FLOAT
    ),
    op!("matmul", Matmul, ["a", "b", "bias?"], ["out"], [], FLOAT),
    op!(
        "rope",
        Attention,
        ["x", "cos", "sin"],
        ["out"],
        ["interleaved"],
        FLOAT
    ),
    op!(
        "attention",
        Attention,
        ["q", "k", "v"],
        ["out"],
        ["causal", "scale"],
        FLOAT
    ),
];

/// The op called `name`.
pub fn op_def(name: &str) -> Option<&'static OpDef> {
    CATALOG.iter().find(|d| d.name == name)
}

/// A dtype list written as `f32, f16, bf16`.
pub fn dtype_list(dtypes: &[DType]) -> String {
    dtypes
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(", ")
}
