//! The geometry of the normalisation gradients (`layer_norm_backward`, `rms_norm_backward`,
//! `group_norm_backward`, `batch_norm_backward`; docs/ops.md 8.5, 8.14, 8.15): x viewed as
//! [A, C, S] (rows, channels, spatial positions), split into normalisation groups that are
//! boxes of it, and channels that carry the weight. Every dialect's launcher reads it.

use anyaccel_hal::{shape_str, Error, Queue, Result, Tensor, TensorDesc};

use crate::attrs::Attrs;

fn invalid(msg: String) -> Error {
    Error::invalid_argument(msg)
}

/// Which normalisation a gradient undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NormKind {
    /// Rows of the last axis; the channels are its positions.
    Layer,
    /// As Layer, without the mean.
    Rms,
    /// (n, group) boxes of C / G channels times the spatial positions.
    Group,
    /// One group per channel (N times the spatial positions); the statistics are given and
    /// (training) depend on x.
    Batch { training: bool },
}

/// A normalisation gradient's geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NormBack {
    pub kind: NormKind,
    /// x as [A, C, S].
    pub a: usize,
    pub c: usize,
    pub s: usize,
    /// group_norm: groups per sample (G) and channels per group (C / G).
    pub per_sample: usize,
    pub cg: usize,
    pub eps: f64,
}

impl NormBack {
    /// The geometry of `op` with `grad`, `x`, the optional weight and (batch_norm) the mean
    /// and invstd, validating shapes and attributes.
    pub fn of(
        op: &str,
        attrs: &Attrs<'_>,
        grad: &TensorDesc,
        x: &TensorDesc,
        weight: Option<&TensorDesc>,
        stats: [Option<&TensorDesc>; 2],
    ) -> Result<NormBack> {
        let kind = match op {
            "layer_norm_backward" => NormKind::Layer,
            "rms_norm_backward" => NormKind::Rms,
            "group_norm_backward" => NormKind::Group,
            _ => NormKind::Batch {
                training: attrs.flag("training", false)?,
            },
        };
        let rows = matches!(kind, NormKind::Layer | NormKind::Rms);
        let min = if rows { 1 } else { 2 };
        if x.rank() < min {
            return Err(invalid(format!(
                "{op}: x has shape {}, expected rank {min} or more{}",
                shape_str(&x.shape),
                if rows { "" } else { " ([N, C, *])" }
            )));
        }
        if grad.shape != x.shape {
            return Err(invalid(format!(
                "{op}: grad has shape {}, expected x's shape {}",
                shape_str(&grad.shape),
                shape_str(&x.shape)
            )));
        }
        let (a, c, s) = if rows {
            let d = x.shape[x.rank() - 1];
            (x.shape[..x.rank() - 1].iter().product(), d, 1)
        } else {
            (x.shape[0], x.shape[1], x.shape[2..].iter().product())
        };
        let names = ["weight", "mean", "invstd"];
        for (name, t) in names.iter().zip([weight, stats[0], stats[1]]) {
            if let Some(t) = t {
                if t.shape != [c] {
                    return Err(invalid(format!(
                        "{op}: {name} has shape {}, expected [{c}] (one per {})",
                        shape_str(&t.shape),
                        if rows {
                            "position of the last axis"
                        } else {
                            "channel"
                        }
                    )));
                }
            }
        }
        let (mut per_sample, mut cg) = (1, c);
        match kind {
            NormKind::Group => {
                let g = attrs.int("num_groups")?;
                if g < 1 || usize::try_from(g).map_or(true, |g| !c.is_multiple_of(g)) {
                    return Err(invalid(format!(
                        "{op}: num_groups is {g}, expected a divisor of C = {c} (>= 1)"
                    )));
                }
                per_sample = g as usize;
                cg = c / per_sample;
            }
            NormKind::Batch { .. } => {
                if stats[0].is_none() || stats[1].is_none() {
                    return Err(invalid(format!(
                        "{op}: mean and invstd are required (batch_norm's second and third outputs)"
                    )));
                }
                cg = 1;
            }
            _ => {}
        }
        let eps = match kind {
            NormKind::Batch { .. } => 0.0,
            _ => crate::plan::eps(attrs)?,
        };
        Ok(NormBack {
            kind,
            a,
            c,
            s,
            per_sample,
            cg,
            eps,
        })
    }

    /// The outputs' shapes: dx, dweight and (but for rms_norm) dbias.
    pub fn out_shapes(&self, x: &TensorDesc) -> Vec<Vec<usize>> {
        let mut v = vec![x.shape.clone(), vec![self.c], vec![self.c]];
        if self.kind == NormKind::Rms {
            v.pop();
        }
        v
    }

    /// The number of normalisation groups.
    pub fn groups(&self) -> usize {
        match self.kind {
            NormKind::Layer | NormKind::Rms => self.a,
            NormKind::Group => self.a * self.per_sample,
            NormKind::Batch { .. } => self.c,
        }
    }

    /// Group `g` as a box: the first row and row count, the first channel and channel count
    /// (all of S).
    pub fn group_box(&self, g: usize) -> [usize; 4] {
        match self.kind {
            NormKind::Layer | NormKind::Rms => [g, 1, 0, self.c],
            NormKind::Group => [
                g / self.per_sample,
                1,
                g % self.per_sample * self.cg,
                self.cg,
            ],
            NormKind::Batch { .. } => [0, self.a, g, 1],
        }
    }

    /// The group of row `a`, channel `c`.
    pub fn group_of(&self, a: usize, c: usize) -> usize {
        match self.kind {
            NormKind::Layer | NormKind::Rms => a,
            NormKind::Group => a * self.per_sample + c / self.cg,
            NormKind::Batch { .. } => c,
        }
    }

    /// The strides of a tensor of x's shape as [A, C, S], when one stride per part walks it.
    pub fn acs_strides(&self, t: &TensorDesc) -> Option<[usize; 3]> {
        let r = t.rank();
        if matches!(self.kind, NormKind::Layer | NormKind::Rms) {
            Some([
                collapse(&t.shape[..r - 1], &t.strides[..r - 1])?,
                t.strides[r - 1],
                0,
            ])
        } else {
            Some([
                t.strides[0],
                t.strides[1],
                collapse(&t.shape[2..], &t.strides[2..])?,
            ])
        }
    }
}

/// The one stride that walks `shape` in row-major order, when there is one (size-1
/// dimensions never step).
fn collapse(shape: &[usize], strides: &[usize]) -> Option<usize> {
    let mut stride = None::<usize>;
    let mut inner = 1usize;
    for (&n, &st) in shape.iter().zip(strides).rev() {
        if n == 1 {
            continue;
        }
        match stride {
            None => stride = Some(st),
            Some(s0) if s0.checked_mul(inner) == Some(st) => {}
            Some(_) => return None,
        }
        inner = inner.checked_mul(n)?;
    }
    Some(stride.unwrap_or(0))
}

/// Runs `run` over grad, x and dx in layouts of one stride per part of [A, C, S]: a tensor
/// whose layout has none is copied to a contiguous one first (dx: written to one, then copied
/// into place).
pub(crate) fn in_acs_layouts(
    queue: &dyn Queue,
    g: &NormBack,
    [grad, x, dx]: [&Tensor; 3],
    run: impl FnOnce([&Tensor; 3]) -> Result<()>,
) -> Result<()> {
    let plain = |t: &Tensor| -> Result<Tensor> {
        if g.acs_strides(t.desc()).is_some() {
            Ok(t.clone())
        } else {
            Ok(crate::dispatch::call(queue, "copy", &[Some(t)], &[])?.remove(0))
        }
    };
    let (grad, x) = (plain(grad)?, plain(x)?);
    if g.acs_strides(dx.desc()).is_some() {
        return run([&grad, &x, dx]);
    }
    let device = queue.device();
    let tmp = Tensor::empty(&*device, dx.dtype(), dx.shape())?;
    run([&grad, &x, &tmp])?;
    crate::dispatch::call_into(queue, "copy", &[Some(&tmp)], &[dx], &[])
}
