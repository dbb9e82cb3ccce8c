//! The description of one op call, as handed to a device's native ops (cuBLAS, a plugin).

use crate::Tensor;

/// A value of an op attribute, as named in `docs/ops.md`.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// An integer (axis, k, flags as 0/1).
    Int(i64),
    /// A float (eps, scale, min, max).
    Float(f64),
    /// A list of integers (axes, shapes).
    Ints(Vec<i64>),
    /// A string (a mode such as `erf` or `tanh`).
    Str(String),
}

/// One call of an op: its name, input and output tensors, and attributes.
#[derive(Debug, Clone)]
pub struct OpCall {
    /// The op's name in `docs/ops.md`, e.g. `matmul`.
    pub op: String,
    /// Inputs, in the order of `docs/ops.md`. Optional inputs that are absent are `None`.
    pub inputs: Vec<Option<Tensor>>,
    /// Outputs, already allocated, shapes inferred.
    pub outputs: Vec<Tensor>,
    /// Attributes by name.
    pub attrs: Vec<(String, AttrValue)>,
}

impl OpCall {
    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}
