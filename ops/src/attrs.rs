//! Reading op attributes with precise errors.

use anyaccel_hal::{AttrValue, DType, Error, Result};

/// The attributes of one call, with the op's name for error messages.
pub(crate) struct Attrs<'a> {
    pub op: &'a str,
    pub list: &'a [(String, AttrValue)],
}

impl<'a> Attrs<'a> {
    pub fn new(op: &'a str, list: &'a [(String, AttrValue)], known: &[&str]) -> Result<Attrs<'a>> {
        for (name, _) in list {
            if !known.contains(&name.as_str()) {
                return Err(Error::invalid_argument(format!(
                    "{op}: unknown attribute `{name}`; expected one of: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        Ok(Attrs { op, list })
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

    pub fn dtype(&self, name: &str) -> Result<DType> {
        let s = self
            .str_opt(name)?
            .ok_or_else(|| self.missing(name, "Str naming a dtype"))?;
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
