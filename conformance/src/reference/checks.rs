//! Shared checks of the reference ops: errors that name the op, dtype checks and argument
//! descriptions for messages.

use std::fmt::Display;

use anyaccel_hal::{shape_str, DType, Error, Result};

use super::RefTensor;

/// An InvalidArgument error whose message starts with the op's name.
pub(crate) fn invalid(op: &str, message: impl Display) -> Error {
    Error::invalid_argument(format!("{op}: {message}"))
}

/// An internal error: a state that validation rules out.
pub(crate) fn internal(op: &str, message: impl Display) -> Error {
    Error::internal(format!("reference {op}: {message}"))
}

/// Checks that `dtype` of argument `arg` is one of `allowed`.
pub(crate) fn check_dtype(op: &str, arg: &str, dtype: DType, allowed: &[DType]) -> Result<()> {
    if allowed.contains(&dtype) {
        return Ok(());
    }
    let names: Vec<&str> = allowed.iter().map(|d| d.name()).collect();
    Err(invalid(
        op,
        format!(
            "{arg} has dtype {dtype}, expected one of {}",
            names.join(", ")
        ),
    ))
}

/// Checks that `t` (argument `arg`) has the dtype of `reference` (argument `ref_arg`).
pub(crate) fn check_same_dtype(
    op: &str,
    arg: &str,
    t: &RefTensor,
    ref_arg: &str,
    reference: &RefTensor,
) -> Result<()> {
    if t.dtype == reference.dtype {
        return Ok(());
    }
    Err(invalid(
        op,
        format!(
            "{arg} has dtype {} but {ref_arg} has {}: inputs must share one dtype (no type promotion)",
            t.dtype, reference.dtype
        ),
    ))
}

/// A message fragment naming a tensor argument and its shape, e.g. "x is 2x3".
pub(crate) fn describe(arg: &str, t: &RefTensor) -> String {
    format!("{arg} is {} {}", t.dtype, shape_str(&t.shape))
}
