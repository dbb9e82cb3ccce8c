//! Reading op attributes with precise errors.

use anyaccel_hal::{AttrValue, DType, Error, OpCall, Result};

use crate::catalog::{op_def, Allowed, AttrDef, AttrDefault, AttrType};

/// The attributes of one call, with the op's name for error messages.
pub(crate) struct Attrs<'a> {
    pub op: &'a str,
    pub list: &'a [(String, AttrValue)],
    defs: &'static [AttrDef],
}

impl<'a> Attrs<'a> {
    /// The attributes of `list`, checked against the op's declaration: every name known, every
    /// value of its type and among its allowed values, every required one present.
    pub fn new(
        op: &'a str,
        list: &'a [(String, AttrValue)],
        defs: &'static [AttrDef],
    ) -> Result<Attrs<'a>> {
        for (name, value) in list {
            let Some(def) = defs.iter().find(|d| d.name == name) else {
                return Err(Error::invalid_argument(format!(
                    "{op}: unknown attribute `{name}`; expected one of: {}",
                    if defs.is_empty() {
                        "none".to_string()
                    } else {
                        defs.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
                    }
                )));
            };
            check_value(op, def, value)?;
        }
        for def in defs {
            if def.default == AttrDefault::Required && !list.iter().any(|(n, _)| n == def.name) {
                return Err(Error::invalid_argument(format!(
                    "{op}: attribute `{}` ({}) is required",
                    def.name,
                    def.ty.name()
                )));
            }
        }
        Ok(Attrs { op, list, defs })
    }

    /// The attributes of a call of a catalog op.
    pub fn of(call: &'a OpCall) -> Result<Attrs<'a>> {
        let def = op_def(&call.op)
            .ok_or_else(|| Error::internal(format!("{}: not an op of the catalog", call.op)))?;
        Attrs::new(&call.op, &call.attrs, def.attrs)
    }

    fn get(&self, name: &str) -> Option<&'a AttrValue> {
        self.list
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    fn missing(&self, name: &str, kind: &str) -> Error {
        Error::invalid_argument(format!(
            "{}: attribute `{name}` ({kind}) is required",
            self.op
        ))
    }

    fn wrong(&self, name: &str, found: &AttrValue, kind: &str) -> Error {
        Error::invalid_argument(format!(
            "{}: attribute `{name}` is {found:?}, expected {kind}",
            self.op
        ))
    }

    pub fn int_opt(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(self.wrong(name, other, "an Int")),
        }
    }

    pub fn int(&self, name: &str) -> Result<i64> {
        self.int_opt(name)?.ok_or_else(|| self.missing(name, "Int"))
    }

    /// The declared default of attribute `name`.
    fn declared(&self, name: &str) -> Option<AttrDefault> {
        self.defs.iter().find(|d| d.name == name).map(|d| d.default)
    }

    /// An Int attribute, or its declared default when absent.
    pub fn int_or_default(&self, name: &str) -> Result<i64> {
        match (self.int_opt(name)?, self.declared(name)) {
            (Some(v), _) | (None, Some(AttrDefault::Int(v))) => Ok(v),
            _ => Err(self.missing(name, "Int")),
        }
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool> {
        match self.int_opt(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(Error::invalid_argument(format!(
                "{}: attribute `{name}` is {v}, expected 0 or 1",
                self.op
            ))),
        }
    }

    pub fn float_opt(&self, name: &str) -> Result<Option<f64>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Float(v)) => Ok(Some(*v)),
            Some(AttrValue::Int(v)) => Ok(Some(*v as f64)),
            Some(other) => Err(self.wrong(name, other, "a Float")),
        }
    }

    /// A Float attribute, or its declared default when absent.
    pub fn float_or_default(&self, name: &str) -> Result<f64> {
        match (self.float_opt(name)?, self.declared(name)) {
            (Some(v), _) | (None, Some(AttrDefault::Float(v))) => Ok(v),
            _ => Err(self.missing(name, "Float")),
        }
    }

    pub fn float(&self, name: &str) -> Result<f64> {
        self.float_opt(name)?
            .ok_or_else(|| self.missing(name, "Float"))
    }

    pub fn ints_opt(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
            Some(AttrValue::Int(v)) => Ok(Some(vec![*v])),
            Some(other) => Err(self.wrong(name, other, "Ints")),
        }
    }

    pub fn str_opt(&self, name: &str) -> Result<Option<&'a str>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Str(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.wrong(name, other, "a Str")),
        }
    }

    /// A Str attribute, or its declared default when absent.
    pub fn str_or_default(&self, name: &str) -> Result<&'a str> {
        match (
            self.str_opt(name)?,
            self.defs.iter().find(|d| d.name == name),
        ) {
            (Some(v), _) => Ok(v),
            (
                None,
                Some(AttrDef {
                    default: AttrDefault::Str(v),
                    ..
                }),
            ) => Ok(v),
            _ => Err(self.missing(name, "Str")),
        }
    }

    /// A dtype attribute, or its declared default when absent.
    pub fn dtype(&self, name: &str) -> Result<DType> {
        let s = self
            .str_or_default(name)
            .map_err(|_| self.missing(name, "Str naming a dtype"))?;
        DType::parse(s).map_err(|e| e.context(format!("{}: attribute `{name}`", self.op)))
    }

    /// An axis attribute normalised against `rank` (negative counts from the end).
    pub fn axis(&self, name: &str, default: Option<i64>, rank: usize) -> Result<usize> {
        let v = match (self.int_opt(name)?, default) {
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => return Err(self.missing(name, "Int")),
        };
        normalize_axis(self.op, name, v, rank)
    }
}

/// The float parameters of an activation or of its gradient (`op` with or without
/// `_backward`), as the kernels take them: softplus's beta and threshold, leaky_relu's slope and
/// elu's alpha (then 0); `(0, 0)` for the others.
pub(crate) fn activation_params(a: &Attrs<'_>, op: &str) -> Result<(f64, f64)> {
    Ok(match op.trim_end_matches("_backward") {
        "softplus" => (
            a.float_or_default("beta")?,
            a.float_or_default("threshold")?,
        ),
        "leaky_relu" => (a.float_or_default("negative_slope")?, 0.0),
        "elu" => (a.float_or_default("alpha")?, 0.0),
        _ => (0.0, 0.0),
    })
}

/// `axis` in `-rank..rank` made non-negative.
pub(crate) fn normalize_axis(op: &str, name: &str, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(Error::invalid_argument(format!(
            "{op}: {name} {axis} is out of range for a rank-{rank} tensor; expected {}..{}",
            -r, r
        )));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

/// Checks one given value against its declaration: its type, then its allowed values.
fn check_value(op: &str, def: &AttrDef, value: &AttrValue) -> Result<()> {
    let name = def.name;
    let wrong = || {
        Error::invalid_argument(format!(
            "{op}: attribute `{name}` is {value:?}, expected {}",
            match def.ty {
                AttrType::Int => "an Int",
                AttrType::Flag => "an Int (0 or 1)",
                AttrType::Float => "a Float",
                AttrType::Ints => "Ints",
                AttrType::Str => "a Str",
                AttrType::DType => "a Str naming a dtype",
            }
        ))
    };
    let bad = |found: String, expected: String| {
        Err(Error::invalid_argument(format!(
            "{op}: {name} is {found}, expected {expected}"
        )))
    };
    match (def.ty, value) {
        (AttrType::Int, AttrValue::Int(_)) => {}
        (AttrType::Flag, AttrValue::Int(v)) => {
            if *v != 0 && *v != 1 {
                return Err(Error::invalid_argument(format!(
                    "{op}: attribute `{name}` is {v}, expected 0 or 1"
                )));
            }
        }
        (AttrType::Float, AttrValue::Float(_) | AttrValue::Int(_)) => {}
        (AttrType::Ints, AttrValue::Ints(_) | AttrValue::Int(_)) => {}
        (AttrType::Str, AttrValue::Str(_)) => {}
        (AttrType::DType, AttrValue::Str(s)) => {
            DType::parse(s).map_err(|e| e.context(format!("{op}: attribute `{name}`")))?;
        }
        _ => return Err(wrong()),
    }
    match (def.allowed, value) {
        (Allowed::Any, _) => Ok(()),
        (Allowed::Finite, AttrValue::Float(v)) if !v.is_finite() => {
            bad(v.to_string(), "a finite value".into())
        }
        (Allowed::FiniteNonNegative, AttrValue::Float(v)) if !(v.is_finite() && *v >= 0.0) => {
            bad(v.to_string(), "a finite value >= 0".into())
        }
        (Allowed::FiniteNonZero, AttrValue::Float(v)) if !(v.is_finite() && *v != 0.0) => {
            bad(v.to_string(), "a finite value other than 0".into())
        }
        (Allowed::FiniteNonZero, AttrValue::Int(0)) => bad("0".into(), format!("{name} != 0")),
        (Allowed::FiniteNonNegative | Allowed::NonNegative, AttrValue::Int(v)) if *v < 0 => {
            bad(v.to_string(), format!("{name} >= 0"))
        }
        (Allowed::OneOf(list), AttrValue::Str(s)) if !list.contains(&s.as_str()) => {
            let quoted: Vec<String> = list.iter().map(|v| format!("`{v}`")).collect();
            let expected = match quoted.as_slice() {
                [a, b] => format!("{a} or {b}"),
                _ => format!("one of {}", quoted.join(", ")),
            };
            bad(format!("`{s}`"), expected)
        }
        _ => Ok(()),
    }
}
