//! The validated call of an op: its inputs, one slot per input of the signature, and its
//! attributes, with typed accessors for each kind of attribute.

use anyaccel_hal::{AttrValue, DType, Error, Result};
use anyaccel_ops::catalog::OpDef;

use super::{invalid, normalize_axis, RefTensor};

/// One validated call: the op's name, its inputs (normalised to their dtypes, one slot per
/// input of the signature) and its attributes (names checked against the op's list).
pub(crate) struct Call<'a> {
    pub(crate) op: &'a str,
    names: Vec<&'static str>,
    inputs: Vec<Option<RefTensor>>,
    attrs: &'a [(String, AttrValue)],
}

impl<'a> Call<'a> {
    /// A call of the catalog op `def`: its inputs and attribute names as the catalog declares.
    pub(super) fn new(
        op: &'a str,
        given: &[Option<RefTensor>],
        def: &OpDef,
        attrs: &'a [(String, AttrValue)],
    ) -> Result<Call<'a>> {
        let names: Vec<&'static str> = def
            .inputs
            .iter()
            .map(|n| n.trim_end_matches(['?', '*']))
            .collect();
        let required = def.required_inputs();
        if given.len() > names.len() {
            return Err(invalid(
                op,
                format!(
                    "found {} inputs, expected at most {} ({})",
                    given.len(),
                    names.len(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
        let mut inputs = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            match given.get(i).and_then(|t| t.as_ref()) {
                Some(t) => {
                    t.validate(&format!("{op}: input `{name}`"))?;
                    inputs.push(Some(t.normalized()));
                }
                None if i < required => {
                    return Err(invalid(
                        op,
                        format!("input `{name}` (input {i}) is missing, expected a tensor"),
                    ))
                }
                None => inputs.push(None),
            }
        }
        check_attr_names(op, attrs, &def.attr_names())?;
        Ok(Call {
            op,
            names,
            inputs,
            attrs,
        })
    }

    /// A call of `concat`: one or more inputs, all present.
    pub(super) fn variadic(
        op: &'a str,
        given: &[Option<RefTensor>],
        attrs: &'a [(String, AttrValue)],
        def: &OpDef,
    ) -> Result<Call<'a>> {
        if given.is_empty() {
            return Err(invalid(op, "found 0 inputs, expected at least 1"));
        }
        let mut inputs = Vec::with_capacity(given.len());
        for (i, t) in given.iter().enumerate() {
            match t {
                Some(t) => {
                    t.validate(&format!("{op}: input {i}"))?;
                    inputs.push(Some(t.normalized()));
                }
                None => {
                    return Err(invalid(
                        op,
                        format!("input {i} is missing, expected a tensor"),
                    ))
                }
            }
        }
        check_attr_names(op, attrs, &def.attr_names())?;
        Ok(Call {
            op,
            names: Vec::new(),
            inputs,
            attrs,
        })
    }

    /// The name of input `i` for messages.
    pub(crate) fn name(&self, i: usize) -> String {
        match self.names.get(i) {
            Some(n) => format!("`{n}`"),
            None => format!("{i}"),
        }
    }

    /// Every input slot.
    pub(crate) fn inputs(&self) -> &[Option<RefTensor>] {
        &self.inputs
    }

    /// Required input `i`.
    pub(crate) fn input(&self, i: usize) -> Result<&RefTensor> {
        self.inputs.get(i).and_then(|t| t.as_ref()).ok_or_else(|| {
            invalid(
                self.op,
                format!("input {} is missing, expected a tensor", self.name(i)),
            )
        })
    }

    /// Optional input `i`.
    pub(crate) fn optional(&self, i: usize) -> Option<&RefTensor> {
        self.inputs.get(i).and_then(|t| t.as_ref())
    }

    /// The attribute called `name`; when a name is given more than once, the last one counts.
    fn attr(&self, name: &str) -> Option<&'a AttrValue> {
        self.attrs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    fn wrong_kind(&self, name: &str, found: &AttrValue, expected: &str) -> Error {
        invalid(
            self.op,
            format!("attribute `{name}` is {found:?}, expected {expected}"),
        )
    }

    fn missing(&self, name: &str, expected: &str) -> Error {
        invalid(
            self.op,
            format!("attribute `{name}` is missing, expected {expected}"),
        )
    }

    /// An `Int` attribute, if given.
    pub(crate) fn int_attr(&self, name: &str) -> Result<Option<i64>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(self.wrong_kind(name, other, "Int")),
        }
    }

    /// A required `Int` attribute.
    pub(crate) fn req_int(&self, name: &str) -> Result<i64> {
        self.int_attr(name)?
            .ok_or_else(|| self.missing(name, "Int"))
    }

    /// A `Float` attribute, if given (an `Int` is taken as its value).
    pub(crate) fn float_attr(&self, name: &str) -> Result<Option<f64>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Float(v)) => Ok(Some(*v)),
            Some(AttrValue::Int(v)) => Ok(Some(*v as f64)),
            Some(other) => Err(self.wrong_kind(name, other, "Float")),
        }
    }

    /// A required `Float` attribute.
    pub(crate) fn req_float(&self, name: &str) -> Result<f64> {
        self.float_attr(name)?
            .ok_or_else(|| self.missing(name, "Float"))
    }

    /// An `Ints` attribute, if given (an `Int` is taken as a list of one).
    pub(crate) fn ints_attr(&self, name: &str) -> Result<Option<&'a [i64]>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v)),
            Some(AttrValue::Int(v)) => Ok(Some(std::slice::from_ref(v))),
            Some(other) => Err(self.wrong_kind(name, other, "Ints")),
        }
    }

    /// A `Str` attribute, if given.
    pub(crate) fn str_attr(&self, name: &str) -> Result<Option<&'a str>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Str(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong_kind(name, other, "Str")),
        }
    }

    /// A required `Str` attribute naming a dtype.
    pub(crate) fn dtype_attr(&self, name: &str) -> Result<DType> {
        let s = self
            .str_attr(name)?
            .ok_or_else(|| self.missing(name, "Str (a dtype name)"))?;
        DType::parse(s).map_err(|e| e.context(format!("{}: attribute `{name}`", self.op)))
    }

    /// A boolean attribute: `Int` 0 or 1, `default` when absent.
    pub(crate) fn flag_attr(&self, name: &str, default: bool) -> Result<bool> {
        match self.int_attr(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(invalid(
                self.op,
                format!("attribute `{name}` is Int({v}), expected Int(0) or Int(1)"),
            )),
        }
    }

    /// An axis attribute normalised against `rank`; `default` when absent (None: required).
    pub(crate) fn axis_attr(&self, name: &str, default: Option<i64>, rank: usize) -> Result<usize> {
        let axis = match (self.int_attr(name)?, default) {
            (Some(a), _) => a,
            (None, Some(d)) => d,
            (None, None) => return Err(self.missing(name, "Int (an axis)")),
        };
        normalize_axis(self.op, name, axis, rank)
    }
}

fn check_attr_names(op: &str, attrs: &[(String, AttrValue)], allowed: &[&str]) -> Result<()> {
    for (name, _) in attrs {
        if !allowed.contains(&name.as_str()) {
            let expected = if allowed.is_empty() {
                "no attributes".to_string()
            } else {
                format!("one of {}", allowed.join(", "))
            };
            return Err(invalid(
                op,
                format!("unknown attribute `{name}`, expected {expected}"),
            ));
        }
    }
    Ok(())
}
