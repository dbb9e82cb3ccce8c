//! The op catalog: the one declaration of every op of `docs/ops.md`.
//!
//! Each op is declared once, as an [`OpDef`]: its name, family ([`OpKind`]), the kernel that
//! computes it ([`Op`]), its inputs (names, optional or variadic) and outputs, its attributes
//! ([`AttrDef`]: type, default and allowed values), and the dtypes of its main input. Everything
//! else reads it: validation of attributes and arity ([`crate::plan`]), routing to the kernel of
//! every dialect (an exhaustive `match` on [`Op`], so an op without a kernel in a dialect does
//! not compile there unless that dialect says `Unsupported` for it), the typed entry points of
//! the plain unary and binary ops, the conformance reference's op list and signatures, its
//! cases, and the C ABI's generic `anyaccel_op`.
//!
//! A plain unary op (one float input, no attributes) is one line of `for_each_unary_op!`; its
//! kernels are one arm in each dialect (`host::elementwise`, `kernels/c/elementwise.h`,
//! `kernels/wgsl/unary.wgsl`), and the conformance reference and `docs/ops.md` each have it once.

use std::sync::LazyLock;

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
    /// Gradients (`relu_backward`, ...): the `train` profile.
    Backward,
    /// Counter-based random numbers (`uniform`, `normal`, `bernoulli`, `dropout`): the
    /// `random` profile.
    Random,
    /// Convolution and pooling over NCL / NCHW images (`conv1d`, `conv2d`, `max_pool1d`,
    /// `max_pool2d`, `avg_pool1d`, `avg_pool2d`): the `nn` profile.
    Vision,
    /// Quantization and quantized matmuls (`quantize`, `dequantize`, `matmul_wq`,
    /// `matmul_i8`): the `quant` profile.
    Quantized,
}

impl OpKind {
    /// True for ops whose results accumulate many terms: they get the wider tolerance.
    pub fn accumulates(self) -> bool {
        matches!(
            self,
            OpKind::Reduction
                | OpKind::Normalization
                | OpKind::Matmul
                | OpKind::Attention
                | OpKind::Vision
        )
    }
}

/// The values a plain unary op is defined on; conformance draws its inputs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Every value (NaN and the infinities included).
    All,
    /// Values > 0 (`log`, `sqrt`, `rsqrt`): cases draw positive values besides the special ones.
    Positive,
    /// Values in (-1, 1) (`asin`, `acos`, `log1p`, `atanh`): cases draw them besides the special
    /// ones.
    Unit,
    /// Values >= 1 (`acosh`): cases draw them besides the special ones.
    AtLeastOne,
}

/// Calls `$m!` with the list of plain unary ops: `Variant name name_into DTYPES Domain "doc";`.
///
/// One line here declares a plain unary op: its catalog entry, its [`UnaryOp`] variant and its
/// typed entry points (`crate::name`, `crate::name_into`) all come from it.
macro_rules! for_each_unary_op {
    ($m:ident) => {
        $m! {
            Neg neg neg_into NUM All "-x (integers wrap).";
            Abs abs abs_into NUM All "|x| (integers wrap).";
            Exp exp exp_into FLOAT All "e^x.";
            Log log log_into FLOAT Positive "natural logarithm.";
            Sqrt sqrt sqrt_into FLOAT Positive "square root.";
            Rsqrt rsqrt rsqrt_into FLOAT Positive "1 / sqrt(x).";
            Sin sin sin_into FLOAT All "sine.";
            Cos cos cos_into FLOAT All "cosine.";
            Tanh tanh tanh_into FLOAT All "hyperbolic tangent.";
            Sigmoid sigmoid sigmoid_into FLOAT All "1 / (1 + e^-x).";
            Relu relu relu_into NUM All "max(x, 0).";
            Silu silu silu_into FLOAT All "x * sigmoid(x).";
            Erf erf erf_into FLOAT All "the error function, 2/sqrt(pi) * integral of e^-t^2 from 0 to x.";
            Floor floor floor_into FLOAT All "the largest integer <= x.";
            Ceil ceil ceil_into FLOAT All "the smallest integer >= x.";
            Round round round_into FLOAT All "the nearest integer, halves to even.";
            Trunc trunc trunc_into FLOAT All "x rounded toward zero.";
            Sign sign sign_into NUM All "-1, 0 or 1 by the sign of x (NaN stays NaN).";
            Reciprocal reciprocal reciprocal_into FLOAT All "1 / x.";
            Log1p log1p log1p_into FLOAT Unit "ln(1 + x), accurate near 0.";
            Expm1 expm1 expm1_into FLOAT All "e^x - 1, accurate near 0.";
            Tan tan tan_into FLOAT All "tangent.";
            Atan atan atan_into FLOAT All "arctangent.";
            Asin asin asin_into FLOAT Unit "arcsine.";
            Acos acos acos_into FLOAT Unit "arccosine.";
            Sinh sinh sinh_into FLOAT All "hyperbolic sine.";
            Cosh cosh cosh_into FLOAT All "hyperbolic cosine.";
            Asinh asinh asinh_into FLOAT All "inverse hyperbolic sine.";
            Acosh acosh acosh_into FLOAT AtLeastOne "inverse hyperbolic cosine (NaN below 1).";
            Atanh atanh atanh_into FLOAT Unit "inverse hyperbolic tangent (NaN outside [-1, 1]).";
            Hardswish hardswish hardswish_into FLOAT All "x * min(max(x + 3, 0), 6) / 6.";
            BitwiseNot bitwise_not bitwise_not_into BITS All "~x (bool: not x).";
        }
    };
}
pub(crate) use for_each_unary_op;

macro_rules! declare_unary_ops {
    ($($variant:ident $name:ident $into:ident $dtypes:ident $domain:ident $doc:literal;)*) => {
        /// The plain unary ops: one input, one output of its dtype and shape, no attributes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum UnaryOp {
            $(#[doc = concat!("`", stringify!($name), "(x)`: ", $doc)] $variant,)*
        }

        impl UnaryOp {
            /// Every plain unary op, in the order of `docs/ops.md`.
            pub const ALL: &'static [UnaryOp] = &[$(UnaryOp::$variant),*];

            /// The op's name in the catalog.
            pub fn name(self) -> &'static str {
                match self { $(UnaryOp::$variant => stringify!($name),)* }
            }

            /// The dtypes of its input (and output).
            pub fn dtypes(self) -> &'static [DType] {
                match self { $(UnaryOp::$variant => $dtypes,)* }
            }

            /// The values it is defined on.
            pub fn domain(self) -> Domain {
                match self { $(UnaryOp::$variant => Domain::$domain,)* }
            }
        }
    };
}
for_each_unary_op!(declare_unary_ops);

macro_rules! named_enum {
    ($(#[doc = $doc:literal])* $ty:ident { $($variant:ident $name:literal,)* }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty {
            $(#[doc = concat!("`", $name, "`.")] $variant,)*
        }

        impl $ty {
            /// Every variant, in the order of `docs/ops.md`.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The op's name in the catalog.
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name,)* }
            }
        }
    };
}

named_enum! {
    /// Elementwise binary arithmetic and bitwise ops with NumPy broadcasting.
    BinaryOp {
        Add "add", Sub "sub", Mul "mul", Div "div", Maximum "maximum", Minimum "minimum", Pow "pow",
        Atan2 "atan2", Remainder "remainder", Fmod "fmod",
        BitwiseAnd "bitwise_and", BitwiseOr "bitwise_or", BitwiseXor "bitwise_xor",
        BitwiseLeftShift "bitwise_left_shift", BitwiseRightShift "bitwise_right_shift",
    }
}

named_enum! {
    /// Comparisons and logical connectives with NumPy broadcasting, giving bool.
    CompareOp {
        Eq "eq", Ne "ne", Lt "lt", Le "le", Gt "gt", Ge "ge",
        LogicalAnd "logical_and", LogicalOr "logical_or", LogicalXor "logical_xor",
    }
}

named_enum! {
    /// Tests of one value, giving bool.
    PredicateOp { IsNan "isnan", IsInf "isinf", IsFinite "isfinite", LogicalNot "logical_not", }
}

named_enum! {
    /// Unary activations with float attributes.
    ActivationOp { Softplus "softplus", LeakyRelu "leaky_relu", Elu "elu", }
}

named_enum! {
    /// Gradients of the activations: `dx` from the output's gradient and the input `x`.
    ActivationBackwardOp {
        Relu "relu_backward", Sigmoid "sigmoid_backward", Tanh "tanh_backward",
        Silu "silu_backward", Gelu "gelu_backward", Softplus "softplus_backward",
        Elu "elu_backward", LeakyRelu "leaky_relu_backward",
    }
}

named_enum! {
    /// Reductions over a set of axes.
    ReduceOp {
        Sum "sum", Mean "mean", Max "max", Min "min", Argmax "argmax", Argmin "argmin",
        Prod "prod", Any "any", All "all", Logsumexp "logsumexp", Var "var", Std "std",
    }
}

impl BinaryOp {
    /// The dtypes of its inputs.
    pub fn dtypes(self) -> &'static [DType] {
        match self {
            BinaryOp::Pow | BinaryOp::Atan2 => FLOAT,
            BinaryOp::BitwiseAnd | BinaryOp::BitwiseOr | BinaryOp::BitwiseXor => BITS,
            BinaryOp::BitwiseLeftShift | BinaryOp::BitwiseRightShift => INT,
            _ => NUM,
        }
    }

    /// True for the ops on the bits of integers (and bools).
    pub fn is_bitwise(self) -> bool {
        matches!(
            self,
            BinaryOp::BitwiseAnd
                | BinaryOp::BitwiseOr
                | BinaryOp::BitwiseXor
                | BinaryOp::BitwiseLeftShift
                | BinaryOp::BitwiseRightShift
        )
    }
}

impl ReduceOp {
    /// True for `argmax` and `argmin`, which give i64 indices.
    pub fn is_arg(self) -> bool {
        matches!(self, ReduceOp::Argmax | ReduceOp::Argmin)
    }

    /// True for `any` and `all`, which give bools.
    pub fn is_logical(self) -> bool {
        matches!(self, ReduceOp::Any | ReduceOp::All)
    }

    /// The dtypes of its input.
    pub fn dtypes(self) -> &'static [DType] {
        match self {
            ReduceOp::Mean | ReduceOp::Logsumexp | ReduceOp::Var | ReduceOp::Std => FLOAT,
            ReduceOp::Any | ReduceOp::All => ALL,
            _ => NUM,
        }
    }
}

/// The computation behind an op: what every dialect routes on. A `match` on it has an arm for
/// every op, so adding an op fails to compile wherever it has no kernel yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Op {
    Fill,
    Arange,
    Copy,
    Cast,
    Concat,
    IndexSelect,
    Embedding,
    Gather,
    Binary(BinaryOp),
    Compare(CompareOp),
    Where,
    Pad,
    Flip,
    Roll,
    Tril,
    Triu,
    RepeatInterleave,
    OneHot,
    Scatter,
    ScatterAdd,
    IndexAdd,
    MaskedFill,
    Unary(UnaryOp),
    Predicate(PredicateOp),
    Activation(ActivationOp),
    ActivationBackward(ActivationBackwardOp),
    SoftmaxBackward,
    LogSoftmaxBackward,
    EmbeddingBackward,
    Gelu,
    Clamp,
    Reduce(ReduceOp),
    Cumsum,
    Cumprod,
    Cummax,
    Cummin,
    Topk,
    Sort,
    Argsort,
    Softmax,
    LogSoftmax,
    LayerNorm,
    RmsNorm,
    Matmul,
    Rope,
    Attention,
    Uniform,
    Normal,
    Bernoulli,
    Dropout,
    Conv1d,
    Conv2d,
    ConvTranspose1d,
    ConvTranspose2d,
    Conv1dBackwardInput,
    Conv2dBackwardInput,
    Conv1dBackwardWeight,
    Conv2dBackwardWeight,
    MaxPool1dBackward,
    MaxPool2dBackward,
    AvgPool1dBackward,
    AvgPool2dBackward,
    AdaptiveAvgPool2dBackward,
    AdaptiveAvgPool3dBackward,
    InterpolateBackward,
    CrossEntropy,
    CrossEntropyBackward,
    LayerNormBackward,
    RmsNormBackward,
    GroupNormBackward,
    BatchNormBackward,
    MaxPool1d,
    MaxPool2d,
    AvgPool1d,
    AvgPool2d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    Interpolate,
    GroupNorm,
    BatchNorm,
    AttentionBackward,
    Quantize,
    Dequantize,
    MatmulWq,
    MatmulI8,
}

impl Op {
    /// True for the convolutions and their gradients.
    pub fn is_convolution(self) -> bool {
        matches!(
            self,
            Op::Conv1d
                | Op::Conv2d
                | Op::ConvTranspose1d
                | Op::ConvTranspose2d
                | Op::Conv1dBackwardInput
                | Op::Conv2dBackwardInput
                | Op::Conv1dBackwardWeight
                | Op::Conv2dBackwardWeight
        )
    }
}

/// The type of an attribute's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// An `Int`.
    Int,
    /// An `Int` that is 0 or 1.
    Flag,
    /// A `Float` (an `Int` is accepted and converted).
    Float,
    /// `Ints` (a single `Int` is accepted as a list of one).
    Ints,
    /// A `Str`.
    Str,
    /// A `Str` naming a dtype.
    DType,
}

impl AttrType {
    /// How `docs/ops.md` and messages name it.
    pub fn name(self) -> &'static str {
        match self {
            AttrType::Int => "Int",
            AttrType::Flag => "Int (0 or 1)",
            AttrType::Float => "Float",
            AttrType::Ints => "Ints",
            AttrType::Str => "Str",
            AttrType::DType => "Str naming a dtype",
        }
    }
}

/// What an absent attribute means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrDefault {
    /// The call must give it.
    Required,
    /// Absent has a meaning of its own that the op's rules state (`axes`: every axis;
    /// `scale`: `1/sqrt(head dim)`).
    Rule(&'static str),
    /// This integer (or flag).
    Int(i64),
    /// This float.
    Float(f64),
    /// This string.
    Str(&'static str),
}

/// The values an attribute may take beyond its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Allowed {
    /// Any value of the type (an axis is checked against the rank by the op's shape rule).
    Any,
    /// A finite float.
    Finite,
    /// A finite float >= 0.
    FiniteNonNegative,
    /// A finite float other than 0.
    FiniteNonZero,
    /// An integer >= 0.
    NonNegative,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

/// One attribute of an op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttrDef {
    /// Its name.
    pub name: &'static str,
    /// The type of its value.
    pub ty: AttrType,
    /// What an absent value means.
    pub default: AttrDefault,
    /// The values it may take.
    pub allowed: Allowed,
}

impl AttrDef {
    const fn new(name: &'static str, ty: AttrType, default: AttrDefault) -> AttrDef {
        AttrDef {
            name,
            ty,
            default,
            allowed: Allowed::Any,
        }
    }

    const fn allowed(self, allowed: Allowed) -> AttrDef {
        AttrDef { allowed, ..self }
    }
}

/// The dtypes an input may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputDtype {
    /// One of the op's dtypes ([`OpDef::dtypes`]).
    Listed,
    /// The dtype of input `i` (itself checked by its own rule).
    SameAs(usize),
    /// `i32` or `i64` (indices).
    Index,
    /// `bool` (a condition).
    Bool,
    /// The dtype of input `i`, or `bool` (a mask).
    SameAsOrBool(usize),
    /// One of these dtypes (the op's geometry checks how it relates to the others).
    OneOf(&'static [DType]),
}

/// The dtype of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputDtype {
    /// The dtype of input `i`.
    Input(usize),
    /// This dtype.
    Fixed(DType),
    /// The dtype named by the attribute `dtype`, one of the op's dtypes.
    Attr,
    /// Decided by the op's geometry from its attributes and inputs (docs/ops.md says how).
    Rule,
}

/// One op of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct OpDef {
    /// The name, as in `docs/ops.md` and the generic call.
    pub name: &'static str,
    /// Family.
    pub kind: OpKind,
    /// The computation, that every dialect routes on.
    pub op: Op,
    /// Input names; a trailing `?` marks an optional input, a trailing `*` a variadic one.
    pub inputs: &'static [&'static str],
    /// Output names.
    pub outputs: &'static [&'static str],
    /// Attributes.
    pub attrs: &'static [AttrDef],
    /// The dtypes of its main input (or of its output for creation ops).
    pub dtypes: &'static [DType],
    /// The dtype rule of each input, by position (a variadic input's rule holds for each).
    pub input_dtypes: &'static [InputDtype],
    /// The dtype rule of each output.
    pub output_dtypes: &'static [OutputDtype],
}

impl OpDef {
    /// True when its results accumulate many terms (the wider tolerance): the families of
    /// [`OpKind::accumulates`] and the gradients that sum along a line or over indices.
    pub fn accumulates(&self) -> bool {
        self.kind.accumulates()
            || matches!(
                self.op,
                Op::SoftmaxBackward
                    | Op::LogSoftmaxBackward
                    | Op::EmbeddingBackward
                    | Op::Conv1dBackwardInput
                    | Op::Conv2dBackwardInput
                    | Op::Conv1dBackwardWeight
                    | Op::Conv2dBackwardWeight
                    | Op::MaxPool1dBackward
                    | Op::MaxPool2dBackward
                    | Op::AvgPool1dBackward
                    | Op::AvgPool2dBackward
                    | Op::AdaptiveAvgPool2dBackward
                    | Op::AdaptiveAvgPool3dBackward
                    | Op::InterpolateBackward
                    | Op::CrossEntropy
                    | Op::CrossEntropyBackward
                    | Op::AttentionBackward
                    | Op::LayerNormBackward
                    | Op::RmsNormBackward
                    | Op::GroupNormBackward
                    | Op::BatchNormBackward
                    | Op::MatmulWq
                    | Op::MatmulI8
            )
    }

    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&'static AttrDef> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// The attribute names, in declaration order.
    pub fn attr_names(&self) -> Vec<&'static str> {
        self.attrs.iter().map(|a| a.name).collect()
    }

    /// The number of inputs that must be present.
    pub fn required_inputs(&self) -> usize {
        self.inputs
            .iter()
            .filter(|i| !i.ends_with('?') && !i.ends_with('*'))
            .count()
    }

    /// True when the op takes any number of inputs (`concat`).
    pub fn is_variadic(&self) -> bool {
        self.inputs.iter().any(|i| i.ends_with('*'))
    }

    /// The dtype rule of input `i`.
    pub fn input_dtype(&self, i: usize) -> InputDtype {
        let last = self.input_dtypes.len().saturating_sub(1);
        self.input_dtypes
            .get(i)
            .or(self.input_dtypes.get(last).filter(|_| self.is_variadic()))
            .copied()
            .unwrap_or(InputDtype::Listed)
    }

    /// The name of input `i` without its `?` or `*` mark (variadic inputs are `xs[i]`).
    pub fn input_name(&self, i: usize) -> std::borrow::Cow<'static, str> {
        match self.inputs.get(i) {
            Some(n) if n.ends_with('*') => format!("{}[{i}]", n.trim_end_matches('*')).into(),
            Some(n) => n.trim_end_matches('?').into(),
            None if self.is_variadic() => format!(
                "{}[{i}]",
                self.inputs[self.inputs.len() - 1].trim_end_matches('*')
            )
            .into(),
            None => format!("input {i}").into(),
        }
    }
}

const ALL: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::I8,
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
    DType::I8,
    DType::Bool,
];
const FLOAT: &[DType] = &[DType::F32, DType::F16, DType::BF16];
const FLOAT_F64: &[DType] = &[DType::F32, DType::F16, DType::BF16, DType::F64];
const NUM: &[DType] = &[DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64];
const INT: &[DType] = &[DType::I32, DType::I64, DType::U8, DType::I8];
const BITS: &[DType] = &[DType::I32, DType::I64, DType::U8, DType::I8, DType::Bool];
const CMP: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::I32,
    DType::I64,
    DType::Bool,
];

use AttrDefault::{Required, Rule};
use AttrType::{Float as FloatA, Ints as IntsA};

const fn req(name: &'static str, ty: AttrType) -> AttrDef {
    AttrDef::new(name, ty, Required)
}
const fn flag(name: &'static str, default: bool) -> AttrDef {
    AttrDef::new(name, AttrType::Flag, AttrDefault::Int(default as i64))
}
const AXIS: AttrDef = req("axis", AttrType::Int);
const AXIS_LAST: AttrDef = AttrDef::new("axis", AttrType::Int, AttrDefault::Int(-1));
const REDUCE: &[AttrDef] = &[
    AttrDef::new("axes", IntsA, Rule("every axis")),
    flag("keepdim", false),
];
const SCAN: &[AttrDef] = &[AXIS, flag("exclusive", false), flag("reverse", false)];
/// A running maximum or minimum has no empty prefix to start from: no `exclusive`.
const SCAN_EXTREME: &[AttrDef] = &[AXIS, flag("reverse", false)];
const REDUCE_CORRECTION: &[AttrDef] = &[
    AttrDef::new("axes", IntsA, Rule("every axis")),
    flag("keepdim", false),
    AttrDef::new("correction", AttrType::Int, AttrDefault::Int(1)).allowed(Allowed::NonNegative),
];
const fn eps(default: f64) -> AttrDef {
    AttrDef::new("eps", FloatA, AttrDefault::Float(default)).allowed(Allowed::FiniteNonNegative)
}

/// An op whose first input is `Listed` and the others of its dtype, with one output of that
/// dtype (creation ops: of the `dtype` attribute); [`OpDef::ins`] and [`OpDef::outs`] change
/// that.
const fn def(
    name: &'static str,
    kind: OpKind,
    op: Op,
    inputs: &'static [&'static str],
    outputs: &'static [&'static str],
    attrs: &'static [AttrDef],
    dtypes: &'static [DType],
) -> OpDef {
    use InputDtype::{Listed, SameAs};
    const ALL_SAME: &[InputDtype] = &[Listed, SameAs(0), SameAs(0), SameAs(0)];
    let input_dtypes: &'static [InputDtype] = match inputs.len() {
        0 => &[],
        1 => &[Listed],
        2 => &[Listed, SameAs(0)],
        3 => &[Listed, SameAs(0), SameAs(0)],
        _ => ALL_SAME,
    };
    let output_dtypes: &'static [OutputDtype] = match kind {
        OpKind::Creation => &[OutputDtype::Attr],
        OpKind::Compare => &[OutputDtype::Fixed(DType::Bool)],
        _ => &[OutputDtype::Input(0)],
    };
    OpDef {
        name,
        kind,
        op,
        inputs,
        outputs,
        attrs,
        dtypes,
        input_dtypes,
        output_dtypes,
    }
}

impl OpDef {
    const fn ins(self, input_dtypes: &'static [InputDtype]) -> OpDef {
        OpDef {
            input_dtypes,
            ..self
        }
    }

    const fn outs(self, output_dtypes: &'static [OutputDtype]) -> OpDef {
        OpDef {
            output_dtypes,
            ..self
        }
    }
}

/// An attribute list as a constant (so that it lives as long as the catalog).
macro_rules! attrs {
    ($($e:expr),* $(,)?) => {{
        const ATTRS: &[AttrDef] = &[$($e),*];
        ATTRS
    }};
}

const X: &[&str] = &["x"];
const AB: &[&str] = &["a", "b"];
const OUT: &[&str] = &["out"];

fn build() -> Vec<OpDef> {
    use OpKind as K;
    let mut v = vec![
        def(
            "fill",
            K::Creation,
            Op::Fill,
            &[],
            OUT,
            attrs![
                req("value", FloatA),
                req("dtype", AttrType::DType),
                req("shape", IntsA),
            ],
            ALL_F64,
        ),
        def(
            "arange",
            K::Creation,
            Op::Arange,
            &[],
            OUT,
            attrs![
                req("start", FloatA),
                req("step", FloatA),
                req("n", AttrType::Int).allowed(Allowed::NonNegative),
                req("dtype", AttrType::DType),
            ],
            NUM,
        ),
        def("copy", K::Movement, Op::Copy, X, OUT, &[], ALL_F64),
        def(
            "cast",
            K::Movement,
            Op::Cast,
            X,
            OUT,
            attrs![req("dtype", AttrType::DType)],
            ALL_F64,
        )
        .outs(&[OutputDtype::Attr]),
        def(
            "concat",
            K::Movement,
            Op::Concat,
            &["xs*"],
            OUT,
            attrs![AXIS],
            ALL,
        )
        .ins(&[InputDtype::Listed, InputDtype::SameAs(0)]),
        def(
            "index_select",
            K::Indexing,
            Op::IndexSelect,
            &["x", "indices"],
            OUT,
            attrs![AXIS],
            ALL,
        )
        .ins(&[InputDtype::Listed, InputDtype::Index]),
        def(
            "embedding",
            K::Indexing,
            Op::Embedding,
            &["weight", "indices"],
            OUT,
            &[],
            ALL,
        )
        .ins(&[InputDtype::Listed, InputDtype::Index]),
        def(
            "gather",
            K::Indexing,
            Op::Gather,
            &["x", "indices"],
            OUT,
            attrs![AXIS],
            ALL,
        )
        .ins(&[InputDtype::Listed, InputDtype::Index]),
    ];
    v.extend(movement_v2());
    v.extend(
        BinaryOp::ALL
            .iter()
            .map(|&b| def(b.name(), K::Binary, Op::Binary(b), AB, OUT, &[], b.dtypes())),
    );
    v.extend(
        CompareOp::ALL
            .iter()
            .map(|&c| def(c.name(), K::Compare, Op::Compare(c), AB, OUT, &[], CMP)),
    );
    v.push(
        def(
            "where",
            K::Select,
            Op::Where,
            &["cond", "a", "b"],
            OUT,
            &[],
            ALL,
        )
        .ins(&[InputDtype::Bool, InputDtype::Listed, InputDtype::SameAs(1)])
        .outs(&[OutputDtype::Input(1)]),
    );
    v.extend(
        UnaryOp::ALL
            .iter()
            .map(|&u| def(u.name(), K::Unary, Op::Unary(u), X, OUT, &[], u.dtypes())),
    );
    v.extend(PredicateOp::ALL.iter().map(|&p| {
        def(p.name(), K::Unary, Op::Predicate(p), X, OUT, &[], ALL)
            .outs(&[OutputDtype::Fixed(DType::Bool)])
    }));
    v.extend([
        def(
            "softplus",
            K::Unary,
            Op::Activation(ActivationOp::Softplus),
            X,
            OUT,
            attrs![
                AttrDef::new("beta", FloatA, AttrDefault::Float(1.0))
                    .allowed(Allowed::FiniteNonZero),
                AttrDef::new("threshold", FloatA, AttrDefault::Float(20.0))
                    .allowed(Allowed::Finite),
            ],
            FLOAT,
        ),
        def(
            "leaky_relu",
            K::Unary,
            Op::Activation(ActivationOp::LeakyRelu),
            X,
            OUT,
            attrs![
                AttrDef::new("negative_slope", FloatA, AttrDefault::Float(0.01))
                    .allowed(Allowed::Finite)
            ],
            FLOAT,
        ),
        def(
            "elu",
            K::Unary,
            Op::Activation(ActivationOp::Elu),
            X,
            OUT,
            attrs![AttrDef::new("alpha", FloatA, AttrDefault::Float(1.0)).allowed(Allowed::Finite)],
            FLOAT,
        ),
        def(
            "gelu",
            K::Unary,
            Op::Gelu,
            X,
            OUT,
            attrs![
                AttrDef::new("approximate", AttrType::Str, AttrDefault::Str("none"))
                    .allowed(Allowed::OneOf(&["none", "tanh"])),
            ],
            FLOAT,
        ),
        def(
            "clamp",
            K::Unary,
            Op::Clamp,
            X,
            OUT,
            attrs![req("min", FloatA), req("max", FloatA)],
            NUM,
        ),
    ]);
    v.extend(activation_backward());
    v.extend(ReduceOp::ALL.iter().map(|&r| {
        let attrs = if matches!(r, ReduceOp::Var | ReduceOp::Std) {
            REDUCE_CORRECTION
        } else {
            REDUCE
        };
        let d = def(
            r.name(),
            K::Reduction,
            Op::Reduce(r),
            X,
            OUT,
            attrs,
            r.dtypes(),
        );
        if r.is_arg() {
            d.outs(&[OutputDtype::Fixed(DType::I64)])
        } else if r.is_logical() {
            d.outs(&[OutputDtype::Fixed(DType::Bool)])
        } else {
            d
        }
    }));
    v.extend([
        def("cumsum", K::Reduction, Op::Cumsum, X, OUT, SCAN, NUM),
        def("cumprod", K::Reduction, Op::Cumprod, X, OUT, SCAN, NUM),
        def(
            "cummax",
            K::Reduction,
            Op::Cummax,
            X,
            OUT,
            SCAN_EXTREME,
            NUM,
        ),
        def(
            "cummin",
            K::Reduction,
            Op::Cummin,
            X,
            OUT,
            SCAN_EXTREME,
            NUM,
        ),
        def(
            "topk",
            K::Reduction,
            Op::Topk,
            X,
            &["values", "indices"],
            attrs![
                req("k", AttrType::Int).allowed(Allowed::NonNegative),
                AXIS_LAST,
                flag("largest", true),
            ],
            NUM,
        )
        .outs(&[OutputDtype::Input(0), OutputDtype::Fixed(DType::I64)]),
        def(
            "sort",
            K::Reduction,
            Op::Sort,
            X,
            &["values", "indices"],
            attrs![AXIS_LAST, flag("descending", false)],
            NUM,
        )
        .outs(&[OutputDtype::Input(0), OutputDtype::Fixed(DType::I64)]),
        def(
            "argsort",
            K::Reduction,
            Op::Argsort,
            X,
            &["indices"],
            attrs![AXIS_LAST, flag("descending", false)],
            NUM,
        )
        .outs(&[OutputDtype::Fixed(DType::I64)]),
        def(
            "softmax",
            K::Normalization,
            Op::Softmax,
            X,
            OUT,
            attrs![AXIS_LAST],
            FLOAT,
        ),
        def(
            "log_softmax",
            K::Normalization,
            Op::LogSoftmax,
            X,
            OUT,
            attrs![AXIS_LAST],
            FLOAT,
        ),
        def(
            "layer_norm",
            K::Normalization,
            Op::LayerNorm,
            &["x", "weight?", "bias?"],
            OUT,
            attrs![eps(1e-5)],
            FLOAT,
        ),
        def(
            "rms_norm",
            K::Normalization,
            Op::RmsNorm,
            &["x", "weight?"],
            OUT,
            attrs![eps(1e-6)],
            FLOAT,
        ),
        def(
            "matmul",
            K::Matmul,
            Op::Matmul,
            &["a", "b", "bias?"],
            OUT,
            &[],
            FLOAT,
        ),
        def(
            "rope",
            K::Attention,
            Op::Rope,
            &["x", "cos", "sin"],
            OUT,
            attrs![flag("interleaved", false)],
            FLOAT,
        ),
        def(
            "attention",
            K::Attention,
            Op::Attention,
            &["q", "k", "v", "mask?"],
            OUT,
            ATTENTION,
            FLOAT,
        )
        .ins(&[
            InputDtype::Listed,
            InputDtype::SameAs(0),
            InputDtype::SameAs(0),
            InputDtype::SameAsOrBool(0),
        ]),
    ]);
    v.extend(random());
    v.extend(vision());
    v.extend(quantized());
    v
}

/// Quantization and the quantized matmuls (docs/ops.md, "Quantized ops").
fn quantized() -> Vec<OpDef> {
    use InputDtype::{Listed, OneOf, SameAs};
    use OpKind as K;
    const GROUP: AttrDef = req("group_size", AttrType::Int);
    const STORAGE: &[DType] = &[DType::I8, DType::U8];
    vec![
        def(
            "quantize",
            K::Quantized,
            Op::Quantize,
            X,
            &["q", "scales", "zeros"],
            attrs![req("bits", AttrType::Int), GROUP, flag("symmetric", true)],
            FLOAT,
        )
        .outs(&[OutputDtype::Rule, OutputDtype::Input(0), OutputDtype::Rule]),
        def(
            "dequantize",
            K::Quantized,
            Op::Dequantize,
            &["q", "scales", "zeros?"],
            OUT,
            attrs![GROUP],
            STORAGE,
        )
        .ins(&[Listed, OneOf(FLOAT), SameAs(0)])
        .outs(&[OutputDtype::Input(1)]),
        def(
            "matmul_wq",
            K::Quantized,
            Op::MatmulWq,
            &["x", "w", "scales", "zeros?"],
            OUT,
            attrs![GROUP],
            FLOAT,
        )
        .ins(&[Listed, OneOf(STORAGE), SameAs(0), SameAs(1)]),
        def(
            "matmul_i8",
            K::Quantized,
            Op::MatmulI8,
            &["a", "b", "row_scale?", "col_scale?"],
            OUT,
            attrs![AttrDef::new(
                "dtype",
                AttrType::DType,
                AttrDefault::Str("i32")
            )],
            &[DType::I8],
        )
        .ins(&[
            Listed,
            SameAs(0),
            OneOf(&[DType::F32]),
            OneOf(&[DType::F32]),
        ])
        .outs(&[OutputDtype::Rule]),
    ]
}

/// Convolution and pooling (docs/ops.md 8.11, 8.12).
fn vision() -> Vec<OpDef> {
    const CONV_ATTRS: &[AttrDef] = attrs![CONV_STRIDE, CONV_PADDING, CONV_DILATION, CONV_GROUPS];
    [("conv1d", Op::Conv1d), ("conv2d", Op::Conv2d)]
        .into_iter()
        .map(|(name, op)| {
            def(
                name,
                OpKind::Vision,
                op,
                &["x", "weight", "bias?"],
                OUT,
                CONV_ATTRS,
                FLOAT,
            )
        })
        .chain(
            [
                ("conv_transpose1d", Op::ConvTranspose1d),
                ("conv_transpose2d", Op::ConvTranspose2d),
            ]
            .into_iter()
            .map(|(name, op)| {
                def(
                    name,
                    OpKind::Vision,
                    op,
                    &["x", "weight", "bias?"],
                    OUT,
                    CONV_TRANSPOSE_ATTRS,
                    FLOAT,
                )
            }),
        )
        .chain(
            [
                ("max_pool1d", Op::MaxPool1d, true),
                ("max_pool2d", Op::MaxPool2d, true),
                ("avg_pool1d", Op::AvgPool1d, false),
                ("avg_pool2d", Op::AvgPool2d, false),
            ]
            .into_iter()
            .map(|(name, op, max)| {
                if max {
                    def(
                        name,
                        OpKind::Vision,
                        op,
                        X,
                        &["out", "indices"],
                        MAX_POOL,
                        FLOAT,
                    )
                    .outs(&[OutputDtype::Input(0), OutputDtype::Fixed(DType::I64)])
                } else {
                    def(name, OpKind::Vision, op, X, OUT, AVG_POOL, FLOAT)
                }
            }),
        )
        .chain([
            def(
                "adaptive_avg_pool2d",
                OpKind::Vision,
                Op::AdaptiveAvgPool2d,
                X,
                OUT,
                attrs![req("output_size", AttrType::Ints)],
                FLOAT,
            ),
            def(
                "adaptive_avg_pool3d",
                OpKind::Vision,
                Op::AdaptiveAvgPool3d,
                X,
                OUT,
                attrs![req("output_size", AttrType::Ints)],
                FLOAT,
            ),
            def(
                "interpolate",
                OpKind::Vision,
                Op::Interpolate,
                X,
                OUT,
                attrs![
                    req("size", AttrType::Ints),
                    INTERPOLATE_MODE,
                    flag("align_corners", false),
                ],
                FLOAT,
            ),
            def(
                "group_norm",
                OpKind::Vision,
                Op::GroupNorm,
                &["x", "weight?", "bias?"],
                OUT,
                attrs![req("num_groups", AttrType::Int), eps(1e-5)],
                FLOAT,
            ),
            def(
                "batch_norm",
                OpKind::Vision,
                Op::BatchNorm,
                &["x", "running_mean?", "running_var?", "weight?", "bias?"],
                &["out", "mean", "invstd"],
                attrs![flag("training", false), eps(1e-5)],
                FLOAT,
            )
            .ins(&[
                InputDtype::Listed,
                InputDtype::SameAs(0),
                InputDtype::SameAs(0),
                InputDtype::SameAs(0),
                InputDtype::SameAs(0),
            ])
            .outs(&[
                OutputDtype::Input(0),
                OutputDtype::Input(0),
                OutputDtype::Input(0),
            ]),
        ])
        .collect()
}

const CONV_STRIDE: AttrDef = AttrDef::new(
    "stride",
    AttrType::Ints,
    AttrDefault::Rule("1 in every dimension"),
);
const CONV_PADDING: AttrDef = AttrDef::new(
    "padding",
    AttrType::Ints,
    AttrDefault::Rule("0 in every dimension"),
);
const CONV_DILATION: AttrDef = AttrDef::new(
    "dilation",
    AttrType::Ints,
    AttrDefault::Rule("1 in every dimension"),
);
const CONV_GROUPS: AttrDef = AttrDef::new("groups", AttrType::Int, AttrDefault::Int(1));
const CONV_TRANSPOSE_ATTRS: &[AttrDef] = &[
    CONV_STRIDE,
    CONV_PADDING,
    AttrDef::new(
        "output_padding",
        AttrType::Ints,
        AttrDefault::Rule("0 in every dimension"),
    ),
    CONV_DILATION,
    CONV_GROUPS,
];

const POOL_KERNEL: AttrDef = req("kernel_size", AttrType::Ints);
const POOL_STRIDE: AttrDef =
    AttrDef::new("stride", AttrType::Ints, AttrDefault::Rule("kernel_size"));
const POOL_PADDING: AttrDef = AttrDef::new(
    "padding",
    AttrType::Ints,
    AttrDefault::Rule("0 in every dimension"),
);
const INPUT_SIZE: AttrDef = req("input_size", AttrType::Ints);
const POOL_DILATION: AttrDef = AttrDef::new(
    "dilation",
    AttrType::Ints,
    AttrDefault::Rule("1 in every dimension"),
);
const MAX_POOL_BACKWARD: &[AttrDef] = &[
    INPUT_SIZE,
    POOL_KERNEL,
    POOL_STRIDE,
    POOL_PADDING,
    POOL_DILATION,
    flag("ceil_mode", false),
];
const AVG_POOL_BACKWARD: &[AttrDef] = &[
    INPUT_SIZE,
    POOL_KERNEL,
    POOL_STRIDE,
    POOL_PADDING,
    flag("ceil_mode", false),
    flag("count_include_pad", true),
];
const INTERPOLATE_MODE: AttrDef = AttrDef::new("mode", AttrType::Str, AttrDefault::Str("nearest"))
    .allowed(Allowed::OneOf(&["nearest", "bilinear", "bicubic"]));
/// Three outputs of the first input's dtype.
const SAME3: &[OutputDtype] = &[
    OutputDtype::Input(0),
    OutputDtype::Input(0),
    OutputDtype::Input(0),
];
const CROSS_ENTROPY: &[AttrDef] = &[
    AttrDef::new("ignore_index", AttrType::Int, AttrDefault::Int(-100)),
    AttrDef::new("label_smoothing", FloatA, AttrDefault::Float(0.0))
        .allowed(Allowed::FiniteNonNegative),
    AttrDef::new("reduction", AttrType::Str, AttrDefault::Str("mean"))
        .allowed(Allowed::OneOf(&["mean", "sum", "none"])),
];
const MAX_POOL: &[AttrDef] = &[
    POOL_KERNEL,
    POOL_STRIDE,
    POOL_PADDING,
    POOL_DILATION,
    flag("ceil_mode", false),
];
const AVG_POOL: &[AttrDef] = &[
    POOL_KERNEL,
    POOL_STRIDE,
    POOL_PADDING,
    flag("ceil_mode", false),
    flag("count_include_pad", true),
];

/// The activation gradients: `(grad, x) -> dx`, with the forward op's attributes.
/// The attributes of `attention` and `attention_backward`.
const ATTENTION: &[AttrDef] = &[
    flag("causal", false),
    AttrDef::new("scale", FloatA, Rule("1/sqrt(head dim)")).allowed(Allowed::Finite),
    AttrDef::new("causal_align", AttrType::Str, AttrDefault::Str("top_left"))
        .allowed(Allowed::OneOf(&["top_left", "bottom_right"])),
    AttrDef::new("window", AttrType::Int, AttrDefault::Int(0)).allowed(Allowed::NonNegative),
    AttrDef::new("softcap", FloatA, AttrDefault::Float(0.0)).allowed(Allowed::FiniteNonNegative),
];

fn activation_backward() -> Vec<OpDef> {
    use ActivationBackwardOp as B;
    const GX: &[&str] = &["grad", "x"];
    const DX: &[&str] = &["dx"];
    B::ALL
        .iter()
        .map(|&b| {
            let attrs: &'static [AttrDef] =
                match b {
                    B::Gelu => {
                        attrs![
                            AttrDef::new("approximate", AttrType::Str, AttrDefault::Str("none"))
                                .allowed(Allowed::OneOf(&["none", "tanh"]))
                        ]
                    }
                    B::Softplus => attrs![
                        AttrDef::new("beta", FloatA, AttrDefault::Float(1.0))
                            .allowed(Allowed::FiniteNonZero),
                        AttrDef::new("threshold", FloatA, AttrDefault::Float(20.0))
                            .allowed(Allowed::Finite),
                    ],
                    B::Elu => attrs![AttrDef::new("alpha", FloatA, AttrDefault::Float(1.0))
                        .allowed(Allowed::Finite)],
                    B::LeakyRelu => {
                        attrs![
                            AttrDef::new("negative_slope", FloatA, AttrDefault::Float(0.01))
                                .allowed(Allowed::Finite)
                        ]
                    }
                    _ => &[],
                };
            def(
                b.name(),
                OpKind::Backward,
                Op::ActivationBackward(b),
                GX,
                DX,
                attrs,
                FLOAT,
            )
        })
        .chain([
            def(
                "softmax_backward",
                OpKind::Backward,
                Op::SoftmaxBackward,
                &["grad", "y"],
                DX,
                attrs![AXIS_LAST],
                FLOAT,
            ),
            def(
                "log_softmax_backward",
                OpKind::Backward,
                Op::LogSoftmaxBackward,
                &["grad", "y"],
                DX,
                attrs![AXIS_LAST],
                FLOAT,
            ),
            def(
                "embedding_backward",
                OpKind::Backward,
                Op::EmbeddingBackward,
                &["grad", "indices"],
                &["dweight"],
                attrs![
                    req("num_weights", AttrType::Int).allowed(Allowed::NonNegative),
                    AttrDef::new("padding_idx", AttrType::Int, Rule("none")),
                ],
                FLOAT,
            )
            .ins(&[InputDtype::Listed, InputDtype::Index]),
        ])
        .chain(
            [
                ("conv1d_backward_input", Op::Conv1dBackwardInput, true),
                ("conv2d_backward_input", Op::Conv2dBackwardInput, true),
                ("conv1d_backward_weight", Op::Conv1dBackwardWeight, false),
                ("conv2d_backward_weight", Op::Conv2dBackwardWeight, false),
            ]
            .into_iter()
            .map(|(name, op, input)| {
                if input {
                    def(
                        name,
                        OpKind::Backward,
                        op,
                        &["grad", "weight"],
                        DX,
                        attrs![
                            req("input_size", AttrType::Ints),
                            CONV_STRIDE,
                            CONV_PADDING,
                            CONV_DILATION,
                            CONV_GROUPS
                        ],
                        FLOAT,
                    )
                } else {
                    def(
                        name,
                        OpKind::Backward,
                        op,
                        &["grad", "x"],
                        &["dweight"],
                        attrs![
                            req("weight_size", AttrType::Ints),
                            CONV_STRIDE,
                            CONV_PADDING,
                            CONV_DILATION,
                            CONV_GROUPS
                        ],
                        FLOAT,
                    )
                }
            }),
        )
        .chain([
            def(
                "max_pool1d_backward",
                OpKind::Backward,
                Op::MaxPool1dBackward,
                &["grad", "indices"],
                DX,
                MAX_POOL_BACKWARD,
                FLOAT,
            )
            .ins(&[InputDtype::Listed, InputDtype::Index]),
            def(
                "max_pool2d_backward",
                OpKind::Backward,
                Op::MaxPool2dBackward,
                &["grad", "indices"],
                DX,
                MAX_POOL_BACKWARD,
                FLOAT,
            )
            .ins(&[InputDtype::Listed, InputDtype::Index]),
            def(
                "avg_pool1d_backward",
                OpKind::Backward,
                Op::AvgPool1dBackward,
                &["grad"],
                DX,
                AVG_POOL_BACKWARD,
                FLOAT,
            ),
            def(
                "avg_pool2d_backward",
                OpKind::Backward,
                Op::AvgPool2dBackward,
                &["grad"],
                DX,
                AVG_POOL_BACKWARD,
                FLOAT,
            ),
            def(
                "adaptive_avg_pool2d_backward",
                OpKind::Backward,
                Op::AdaptiveAvgPool2dBackward,
                &["grad"],
                DX,
                attrs![INPUT_SIZE],
                FLOAT,
            ),
            def(
                "adaptive_avg_pool3d_backward",
                OpKind::Backward,
                Op::AdaptiveAvgPool3dBackward,
                &["grad"],
                DX,
                attrs![INPUT_SIZE],
                FLOAT,
            ),
            def(
                "layer_norm_backward",
                OpKind::Backward,
                Op::LayerNormBackward,
                &["grad", "x", "weight?"],
                &["dx", "dweight", "dbias"],
                attrs![eps(1e-5)],
                FLOAT,
            )
            .outs(SAME3),
            def(
                "rms_norm_backward",
                OpKind::Backward,
                Op::RmsNormBackward,
                &["grad", "x", "weight?"],
                &["dx", "dweight"],
                attrs![eps(1e-6)],
                FLOAT,
            )
            .outs(&[OutputDtype::Input(0), OutputDtype::Input(0)]),
            def(
                "group_norm_backward",
                OpKind::Backward,
                Op::GroupNormBackward,
                &["grad", "x", "weight?"],
                &["dx", "dweight", "dbias"],
                attrs![req("num_groups", AttrType::Int), eps(1e-5)],
                FLOAT,
            )
            .outs(SAME3),
            def(
                "batch_norm_backward",
                OpKind::Backward,
                Op::BatchNormBackward,
                &["grad", "x", "mean", "invstd", "weight?"],
                &["dx", "dweight", "dbias"],
                attrs![flag("training", false)],
                FLOAT,
            )
            .ins(&[
                InputDtype::Listed,
                InputDtype::SameAs(0),
                InputDtype::SameAs(0),
                InputDtype::SameAs(0),
                InputDtype::SameAs(0),
            ])
            .outs(SAME3),
            def(
                "cross_entropy",
                OpKind::Backward,
                Op::CrossEntropy,
                &["logits", "target"],
                &["loss"],
                CROSS_ENTROPY,
                FLOAT,
            )
            .ins(&[InputDtype::Listed, InputDtype::Index]),
            def(
                "cross_entropy_backward",
                OpKind::Backward,
                Op::CrossEntropyBackward,
                &["grad", "logits", "target"],
                &["dlogits"],
                CROSS_ENTROPY,
                FLOAT,
            )
            .ins(&[InputDtype::Listed, InputDtype::SameAs(0), InputDtype::Index]),
            def(
                "attention_backward",
                OpKind::Backward,
                Op::AttentionBackward,
                &["grad", "q", "k", "v", "mask?"],
                &["dq", "dk", "dv"],
                ATTENTION,
                FLOAT,
            )
            .ins(&[
                InputDtype::Listed,
                InputDtype::SameAs(0),
                InputDtype::SameAs(0),
                InputDtype::SameAs(0),
                InputDtype::SameAsOrBool(0),
            ])
            .outs(SAME3),
            def(
                "interpolate_backward",
                OpKind::Backward,
                Op::InterpolateBackward,
                &["grad"],
                DX,
                attrs![INPUT_SIZE, INTERPOLATE_MODE, flag("align_corners", false)],
                FLOAT,
            ),
        ])
        .collect()
}

/// `pad`, `flip`, `roll`, `tril`, `triu`, `repeat_interleave`, `one_hot`, `scatter`,
/// `scatter_add`, `index_add` and `masked_fill` (the rules: `crate::movement`).
/// The counter-based random ops: every one keyed by `seed` and `offset` (docs/ops.md 8.10).
fn random() -> Vec<OpDef> {
    use OpKind as K;
    const SEED: AttrDef = AttrDef::new("seed", AttrType::Int, AttrDefault::Int(0));
    const OFFSET: AttrDef = AttrDef::new("offset", AttrType::Int, AttrDefault::Int(0));
    const fn float(name: &'static str, default: f64, allowed: Allowed) -> AttrDef {
        AttrDef::new(name, FloatA, AttrDefault::Float(default)).allowed(allowed)
    }
    vec![
        def(
            "uniform",
            K::Random,
            Op::Uniform,
            &[],
            OUT,
            attrs![
                req("shape", IntsA),
                req("dtype", AttrType::DType),
                float("low", 0.0, Allowed::Finite),
                float("high", 1.0, Allowed::Finite),
                SEED,
                OFFSET,
            ],
            FLOAT_F64,
        )
        .outs(&[OutputDtype::Attr]),
        def(
            "normal",
            K::Random,
            Op::Normal,
            &[],
            OUT,
            attrs![
                req("shape", IntsA),
                req("dtype", AttrType::DType),
                float("mean", 0.0, Allowed::Finite),
                float("std", 1.0, Allowed::FiniteNonNegative),
                SEED,
                OFFSET,
            ],
            FLOAT_F64,
        )
        .outs(&[OutputDtype::Attr]),
        def(
            "bernoulli",
            K::Random,
            Op::Bernoulli,
            &["p"],
            OUT,
            attrs![SEED, OFFSET],
            FLOAT_F64,
        ),
        def(
            "dropout",
            K::Random,
            Op::Dropout,
            X,
            OUT,
            attrs![float("p", 0.5, Allowed::FiniteNonNegative), SEED, OFFSET],
            FLOAT_F64,
        ),
    ]
}

fn movement_v2() -> Vec<OpDef> {
    use InputDtype::{Bool, Index, Listed, SameAs};
    use OpKind as K;
    const SCATTER_INS: &[InputDtype] = &[Listed, Index, SameAs(0)];
    let diagonal = attrs![AttrDef::new("diagonal", AttrType::Int, AttrDefault::Int(0))];
    vec![
        def(
            "pad",
            K::Movement,
            Op::Pad,
            X,
            OUT,
            attrs![
                req("pads", IntsA),
                AttrDef::new("mode", AttrType::Str, AttrDefault::Str("constant")).allowed(
                    Allowed::OneOf(&["constant", "reflect", "replicate", "circular"])
                ),
                AttrDef::new("value", FloatA, AttrDefault::Float(0.0)),
            ],
            ALL,
        ),
        def(
            "flip",
            K::Movement,
            Op::Flip,
            X,
            OUT,
            attrs![req("axes", IntsA)],
            ALL,
        ),
        def(
            "roll",
            K::Movement,
            Op::Roll,
            X,
            OUT,
            attrs![req("shifts", IntsA), req("axes", IntsA)],
            ALL,
        ),
        def("tril", K::Movement, Op::Tril, X, OUT, diagonal, ALL),
        def("triu", K::Movement, Op::Triu, X, OUT, diagonal, ALL),
        def(
            "repeat_interleave",
            K::Movement,
            Op::RepeatInterleave,
            X,
            OUT,
            attrs![req("repeats", IntsA), AXIS],
            ALL,
        ),
        def(
            "one_hot",
            K::Indexing,
            Op::OneHot,
            &["indices"],
            OUT,
            attrs![
                req("num_classes", AttrType::Int).allowed(Allowed::NonNegative),
                AttrDef::new("dtype", AttrType::DType, AttrDefault::Str("i64")),
            ],
            ALL,
        )
        .ins(&[Index])
        .outs(&[OutputDtype::Attr]),
        def(
            "scatter",
            K::Indexing,
            Op::Scatter,
            &["x", "index", "src"],
            OUT,
            attrs![AXIS],
            ALL,
        )
        .ins(SCATTER_INS),
        def(
            "scatter_add",
            K::Indexing,
            Op::ScatterAdd,
            &["x", "index", "src"],
            OUT,
            attrs![AXIS],
            NUM,
        )
        .ins(SCATTER_INS),
        def(
            "index_add",
            K::Indexing,
            Op::IndexAdd,
            &["x", "index", "source"],
            OUT,
            attrs![
                AXIS,
                AttrDef::new("alpha", FloatA, AttrDefault::Float(1.0)).allowed(Allowed::Finite)
            ],
            NUM,
        )
        .ins(SCATTER_INS),
        def(
            "masked_fill",
            K::Indexing,
            Op::MaskedFill,
            &["x", "mask"],
            OUT,
            attrs![req("value", FloatA)],
            ALL,
        )
        .ins(&[Listed, Bool]),
    ]
}

/// Every op, in the order of `docs/ops.md`.
pub static CATALOG: LazyLock<Vec<OpDef>> = LazyLock::new(build);

/// The op called `name`.
pub fn op_def(name: &str) -> Option<&'static OpDef> {
    // A name's place in the catalog, built once: an op call looks its op up several times.
    static INDEX: LazyLock<rustc_hash::FxHashMap<&'static str, usize>> = LazyLock::new(|| {
        CATALOG
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name, i))
            .collect()
    });
    INDEX.get(name).map(|&i| &CATALOG[i])
}

/// The computation of the catalog op `name`: what a dialect routes a validated call on.
pub(crate) fn op_of(name: &str) -> anyaccel_hal::Result<Op> {
    op_def(name).map(|d| d.op).ok_or_else(|| {
        anyaccel_hal::Error::internal(format!("`{name}` is not an op of the catalog"))
    })
}

/// The error of a kernel family handed an op that is not one of its own (a routing defect).
pub(crate) fn misrouted(op: &str) -> anyaccel_hal::Error {
    anyaccel_hal::Error::internal(format!(
        "`{op}` was routed to a kernel family that is not its own"
    ))
}

/// A dtype list written as `f32, f16, bf16`.
pub fn dtype_list(dtypes: &[DType]) -> String {
    dtypes
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_each_op_routes_to_itself() {
        let mut seen = HashSet::new();
        let ops: Vec<Op> = CATALOG.iter().map(|o| o.op).collect();
        for d in CATALOG.iter() {
            assert!(seen.insert(d.name), "{} is declared twice", d.name);
            let routed = match d.op {
                Op::Unary(u) => Some(u.name()),
                Op::Binary(b) => Some(b.name()),
                Op::Compare(c) => Some(c.name()),
                Op::Predicate(p) => Some(p.name()),
                Op::Activation(a) => Some(a.name()),
                Op::ActivationBackward(a) => Some(a.name()),
                Op::Reduce(r) => Some(r.name()),
                _ => None,
            };
            if let Some(r) = routed {
                assert_eq!(r, d.name, "{} routes to {r}", d.name);
            }
            assert_eq!(
                ops.iter().filter(|o| **o == d.op).count(),
                1,
                "{} shares its kernel identity",
                d.name
            );
        }
    }

    #[test]
    fn defaults_are_allowed_values() {
        for d in CATALOG.iter() {
            for a in d.attrs {
                match (a.ty, a.default, a.allowed) {
                    (AttrType::Str, AttrDefault::Str(s), Allowed::OneOf(list)) => {
                        assert!(list.contains(&s), "{}.{}", d.name, a.name)
                    }
                    (AttrType::Flag, AttrDefault::Int(v), _) => {
                        assert!(v == 0 || v == 1, "{}.{}", d.name, a.name)
                    }
                    (AttrType::Float, AttrDefault::Float(v), Allowed::FiniteNonNegative) => {
                        assert!(v.is_finite() && v >= 0.0, "{}.{}", d.name, a.name)
                    }
                    _ => {}
                }
            }
        }
    }
}
