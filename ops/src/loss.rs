//! The geometry of a `cross_entropy` / `cross_entropy_backward` call (docs/ops.md 8.16):
//! validation of the shapes and attributes, and the positions' layouts. Every dialect's
//! launcher reads it.

use anyaccel_hal::{shape_str, Error, Result, TensorDesc};

use crate::attrs::Attrs;

fn invalid(msg: String) -> Error {
    Error::invalid_argument(msg)
}

/// How the per-position losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reduction {
    /// Their sum over the count of positions not ignored.
    Mean,
    /// Their sum.
    Sum,
    /// None: one loss per position.
    None,
}

/// A cross-entropy call over logits [N, C, d1..dk] and targets [N, d1..dk]: `positions` rows of
/// `classes` logits each.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CeGeom {
    /// Positions (N d1 .. dk) and classes (C).
    pub positions: usize,
    pub classes: usize,
    /// The target's shape: the shape of the positions.
    pub shape: Vec<usize>,
    pub ignore_index: i64,
    pub smoothing: f64,
    pub reduction: Reduction,
}

impl CeGeom {
    /// The geometry of `op` over `logits` and `target` (and, for the backward op, `grad`).
    pub fn of(
        op: &str,
        attrs: &Attrs<'_>,
        logits: &TensorDesc,
        target: &TensorDesc,
        grad: Option<&TensorDesc>,
    ) -> Result<CeGeom> {
        if logits.rank() < 2 {
            return Err(invalid(format!(
                "{op}: logits has shape {}, expected rank 2 or more ([N, C, d1, ..., dk])",
                shape_str(&logits.shape)
            )));
        }
        let mut shape = logits.shape.clone();
        let classes = shape.remove(1);
        if target.shape != shape {
            return Err(invalid(format!(
                "{op}: target has shape {}, expected {} (logits' shape {} without the class axis 1)",
                shape_str(&target.shape),
                shape_str(&shape),
                shape_str(&logits.shape)
            )));
        }
        let smoothing = attrs.float_or_default("label_smoothing")?;
        if !(0.0..=1.0).contains(&smoothing) {
            return Err(invalid(format!(
                "{op}: label_smoothing is {smoothing}, expected a value in [0, 1]"
            )));
        }
        let reduction = match attrs.str_or_default("reduction")? {
            "mean" => Reduction::Mean,
            "sum" => Reduction::Sum,
            _ => Reduction::None,
        };
        let g = CeGeom {
            positions: shape.iter().product(),
            classes,
            shape,
            ignore_index: attrs.int_or_default("ignore_index")?,
            smoothing,
            reduction,
        };
        if let Some(grad) = grad {
            if grad.shape != g.loss_shape() {
                return Err(invalid(format!(
                    "{op}: grad has shape {}, expected {} (the loss's shape for reduction {})",
                    shape_str(&grad.shape),
                    shape_str(&g.loss_shape()),
                    attrs.str_or_default("reduction")?
                )));
            }
        }
        Ok(g)
    }

    /// The loss's shape: the target's with reduction "none", else a scalar.
    pub fn loss_shape(&self) -> Vec<usize> {
        match self.reduction {
            Reduction::None => self.shape.clone(),
            _ => Vec::new(),
        }
    }

    /// The strides of the positions in a tensor over logits' layout: all but axis 1.
    pub fn position_strides(logits: &TensorDesc) -> Vec<usize> {
        let mut s = logits.strides.clone();
        s.remove(1);
        s
    }

    /// The error for the bad target `value` (neither ignore_index nor a class).
    pub fn bad_target(&self, op: &str, value: i64) -> Error {
        Error::out_of_bounds(format!(
            "{op}: target {value} out of range 0..{} (ignore_index {})",
            self.classes, self.ignore_index
        ))
    }

    /// The first bad target among `targets` (in row-major order), if any.
    pub fn first_bad(&self, targets: &[i64]) -> Option<i64> {
        targets
            .iter()
            .copied()
            .find(|&t| t != self.ignore_index && (t < 0 || t as u64 >= self.classes as u64))
    }
}

/// After a kernel flagged a bad target: reads `target` and returns the error for the first bad
/// one in row-major order.
pub(crate) fn bad_target_error(
    op: &str,
    g: &CeGeom,
    target: &anyaccel_hal::Tensor,
    queue: &dyn anyaccel_hal::Queue,
) -> Error {
    let values: Result<Vec<i64>> = match target.dtype() {
        anyaccel_hal::DType::I32 => target
            .to_vec::<i32>(queue)
            .map(|v| v.into_iter().map(i64::from).collect()),
        _ => target.to_vec::<i64>(queue),
    };
    match values.map(|v| g.first_bad(&v)) {
        Ok(Some(v)) => g.bad_target(op, v),
        Ok(None) => Error::internal(format!("{op}: a kernel flagged a bad target but none is")),
        Err(e) => e,
    }
}
