//! The rules of the movement and indexing ops of op set v2, shared by every dialect.
//!
//! - `pad`, `flip`, `roll`, `repeat_interleave`, `tril` and `triu` are *remaps*: each output
//!   element is one input element, or a fill value. The input coordinate along each axis is a
//!   function of the output coordinate along that axis alone ([`AxisMap`]), and `tril`/`triu`
//!   add a band on the last two axes. [`Remap`] holds the maps; every dialect evaluates them the
//!   same way ([`Remap::source`] is the definition; the C and WGSL kernels spell it out).
//! - `scatter`, `scatter_add` and `index_add` (and `one_hot`, which the dispatcher runs as a
//!   `scatter`) are *line scatters*: along `axis`, output line element `j` takes the source
//!   elements `k` of the same line whose index is `j`, in increasing `k` (the last one for
//!   `scatter`, the sum for the others). Each output element is computed by one thread from its
//!   line, so the result does not depend on the order threads run in: no atomics, the same bits
//!   on every run. [`Lines`] holds the walk.

use anyaccel_hal::{shape_str, DType, Error, Result, TensorDesc};

use crate::attrs::{normalize_axis, Attrs};
use crate::catalog::Op;

fn invalid(msg: String) -> Error {
    Error::invalid_argument(msg)
}

/// How an output coordinate `o` along one axis finds its input coordinate; `t = o - before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AxisMode {
    /// `t`, or the fill value outside `0..n` (constant padding; also the identity).
    Const = 0,
    /// `t` reflected at the edges without repeating them (`reflect` padding).
    Reflect = 1,
    /// `t` clamped to `0..n` (`replicate` padding).
    Replicate = 2,
    /// `t` modulo `n` (`circular` padding, `roll`).
    Circular = 3,
    /// `n - 1 - t` (`flip`).
    Flip = 4,
    /// `t / div` (`repeat_interleave` with one repeat count).
    Div = 5,
    /// `table[o]` (`repeat_interleave` with a count per element).
    Table = 6,
}

/// The map of one axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AxisMap {
    /// The input's size along the axis.
    pub n: usize,
    /// The output's size along the axis.
    pub out: usize,
    /// Subtracted from the output coordinate first.
    pub before: i64,
    pub mode: AxisMode,
    /// The divisor of [`AxisMode::Div`] (1 otherwise).
    pub div: usize,
    /// The input coordinate of each output coordinate for [`AxisMode::Table`].
    pub table: Vec<usize>,
}

impl AxisMap {
    fn identity(n: usize) -> AxisMap {
        AxisMap {
            n,
            out: n,
            before: 0,
            mode: AxisMode::Const,
            div: 1,
            table: Vec::new(),
        }
    }
}

/// A remap: the output shape, a map per axis, an optional band and the fill value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Remap {
    pub axes: Vec<AxisMap>,
    /// `tril`/`triu`: elements whose `col - row` (last two axes) lies outside `lo..=hi` take
    /// the fill value.
    pub band: Option<(i64, i64)>,
    /// The fill value (`pad`'s `value`; 0 for `tril`/`triu`), converted as `fill` converts.
    pub fill: f64,
}

impl Remap {
    pub fn out_shape(&self) -> Vec<usize> {
        self.axes.iter().map(|a| a.out).collect()
    }

    /// The input coordinate of output coordinate `o` along `axis`, `None` for the fill value.
    pub fn source(&self, axis: usize, o: usize) -> Option<usize> {
        let a = &self.axes[axis];
        let n = a.n as i64;
        let t = o as i64 - a.before;
        let s = match a.mode {
            AxisMode::Const => t,
            AxisMode::Reflect => {
                if n == 1 {
                    0
                } else {
                    let p = 2 * (n - 1);
                    let m = t.rem_euclid(p);
                    if m < n {
                        m
                    } else {
                        p - m
                    }
                }
            }
            AxisMode::Replicate => t.clamp(0, n - 1),
            AxisMode::Circular => t.rem_euclid(n.max(1)),
            AxisMode::Flip => n - 1 - t,
            AxisMode::Div => t / a.div.max(1) as i64,
            AxisMode::Table => return a.table.get(o).copied(),
        };
        (0..n).contains(&s).then_some(s as usize)
    }

    /// True when the element at (`row`, `col`) of the last two axes is inside the band.
    pub fn in_band(&self, row: usize, col: usize) -> bool {
        match self.band {
            None => true,
            Some((lo, hi)) => {
                let d = col as i64 - row as i64;
                lo <= d && d <= hi
            }
        }
    }

    /// The kernels' parameters: per axis `[out, n, before, mode, div or table start, x stride,
    /// out stride]`, then the tables (input coordinates) one after the other.
    pub fn params(&self, x_strides: &[usize], out_strides: &[usize]) -> Result<Vec<i64>> {
        let rank = self.axes.len();
        let mut head = Vec::with_capacity(rank * PARAMS_PER_AXIS);
        let mut tables = Vec::new();
        let start = rank * PARAMS_PER_AXIS;
        let big = |v: usize| {
            i64::try_from(v).map_err(|_| Error::internal("remap: a size beyond i64".to_string()))
        };
        for (d, a) in self.axes.iter().enumerate() {
            let extra = if a.mode == AxisMode::Table {
                big(start + tables.len())?
            } else {
                big(a.div)?
            };
            head.extend([
                big(a.out)?,
                big(a.n)?,
                a.before,
                a.mode as i64,
                extra,
                big(x_strides[d])?,
                big(out_strides[d])?,
            ]);
            for &s in &a.table {
                tables.push(big(s)?);
            }
        }
        head.extend(tables);
        Ok(head)
    }
}

/// The number of parameters per axis in [`Remap::params`].
pub(crate) const PARAMS_PER_AXIS: usize = 7;

fn pad_modes(mode: &str) -> AxisMode {
    match mode {
        "reflect" => AxisMode::Reflect,
        "replicate" => AxisMode::Replicate,
        "circular" => AxisMode::Circular,
        _ => AxisMode::Const,
    }
}

/// Distinct axes from an `Ints` attribute, normalised.
fn distinct_axes(attrs: &Attrs<'_>, name: &str, rank: usize) -> Result<Vec<usize>> {
    let list = attrs.ints_opt(name)?.ok_or_else(|| {
        invalid(format!(
            "{}: attribute `{name}` (Ints) is required",
            attrs.op
        ))
    })?;
    let mut axes = Vec::with_capacity(list.len());
    for a in list {
        let n = normalize_axis(attrs.op, "axis", a, rank)?;
        if axes.contains(&n) {
            return Err(invalid(format!(
                "{}: axis {n} is listed twice in {name}",
                attrs.op
            )));
        }
        axes.push(n);
    }
    Ok(axes)
}

/// The remap of a call of `pad`, `flip`, `roll`, `repeat_interleave`, `tril` or `triu` on `x`.
pub(crate) fn remap(op: Op, attrs: &Attrs<'_>, x: &TensorDesc) -> Result<Remap> {
    let name = attrs.op;
    let rank = x.rank();
    let mut axes: Vec<AxisMap> = x.shape.iter().map(|&n| AxisMap::identity(n)).collect();
    let mut band = None;
    let mut fill = 0.0;
    match op {
        Op::Pad => {
            let pads = attrs
                .ints_opt("pads")?
                .ok_or_else(|| invalid(format!("{name}: attribute `pads` (Ints) is required")))?;
            if pads.len() % 2 != 0 || pads.len() > 2 * rank {
                return Err(invalid(format!(
                    "{name}: pads has {} values, expected an even number up to {} (a before and \
                     an after count for each padded axis, the last axis first) for x of shape {}",
                    pads.len(),
                    2 * rank,
                    shape_str(&x.shape)
                )));
            }
            let mode_name = attrs.str_or_default("mode")?;
            let mode = pad_modes(mode_name);
            fill = attrs.float_or_default("value")?;
            for (i, pair) in pads.chunks(2).enumerate() {
                let d = rank - 1 - i;
                let (before, after) = (pair[0], pair[1]);
                let n = x.shape[d];
                let ni = n as i64;
                if mode != AxisMode::Const && (before != 0 || after != 0) {
                    if n == 0 {
                        return Err(invalid(format!(
                            "{name}: {mode_name} padding of axis {d}, which is empty; only \
                             constant padding adds to an empty axis"
                        )));
                    }
                    let most = match mode {
                        AxisMode::Reflect => ni - 1,
                        AxisMode::Circular => ni,
                        _ => i64::MAX,
                    };
                    if before < 0 || after < 0 || before > most || after > most {
                        return Err(invalid(format!(
                            "{name}: pads ({before}, {after}) on axis {d} of size {n}: {mode_name} \
                             padding needs each count in 0..={most}"
                        )));
                    }
                }
                let out = ni
                    .checked_add(before)
                    .and_then(|v| v.checked_add(after))
                    .filter(|&v| v >= 0)
                    .ok_or_else(|| {
                        invalid(format!(
                            "{name}: pads ({before}, {after}) on axis {d} of size {n} leave a \
                             negative size"
                        ))
                    })?;
                axes[d] = AxisMap {
                    n,
                    out: usize::try_from(out)
                        .map_err(|_| invalid(format!("{name}: axis {d} too large")))?,
                    before,
                    mode,
                    div: 1,
                    table: Vec::new(),
                };
            }
        }
        Op::Flip => {
            for d in distinct_axes(attrs, "axes", rank)? {
                axes[d].mode = AxisMode::Flip;
            }
        }
        Op::Roll => {
            let shifts = attrs
                .ints_opt("shifts")?
                .ok_or_else(|| invalid(format!("{name}: attribute `shifts` (Ints) is required")))?;
            let list = attrs
                .ints_opt("axes")?
                .ok_or_else(|| invalid(format!("{name}: attribute `axes` (Ints) is required")))?;
            if shifts.len() != list.len() {
                return Err(invalid(format!(
                    "{name}: {} shifts for {} axes; give one shift per axis",
                    shifts.len(),
                    list.len()
                )));
            }
            for (&s, &a) in shifts.iter().zip(&list) {
                let d = normalize_axis(name, "axis", a, rank)?;
                let n = x.shape[d] as i64;
                let m = &mut axes[d];
                m.mode = AxisMode::Circular;
                if n > 0 {
                    m.before = (m.before + s.rem_euclid(n)) % n;
                }
            }
        }
        Op::RepeatInterleave => {
            if rank == 0 {
                return Err(invalid(format!(
                    "{name}: x is a scalar; repeat_interleave needs an axis (reshape to [1] first)"
                )));
            }
            let d = attrs.axis("axis", None, rank)?;
            let repeats = attrs.ints_opt("repeats")?.ok_or_else(|| {
                invalid(format!("{name}: attribute `repeats` (Ints) is required"))
            })?;
            let n = x.shape[d];
            if let Some(r) = repeats.iter().find(|&&r| r < 0) {
                return Err(invalid(format!(
                    "{name}: repeats holds {r}, expected counts >= 0"
                )));
            }
            let m = &mut axes[d];
            if repeats.len() == 1 {
                let r = repeats[0] as usize;
                m.out = n.checked_mul(r).ok_or_else(|| {
                    invalid(format!(
                        "{name}: {n} x {r} elements overflow the address space"
                    ))
                })?;
                m.mode = AxisMode::Div;
                m.div = r.max(1);
            } else if repeats.len() == n {
                let mut table = Vec::new();
                for (i, &r) in repeats.iter().enumerate() {
                    let total = table
                        .len()
                        .checked_add(r as usize)
                        .filter(|&t| t <= isize::MAX as usize);
                    if total.is_none() {
                        return Err(invalid(format!(
                            "{name}: the repeats sum past the address space"
                        )));
                    }
                    table.extend(std::iter::repeat_n(i, r as usize));
                }
                m.out = table.len();
                m.mode = AxisMode::Table;
                m.table = table;
            } else {
                return Err(invalid(format!(
                    "{name}: repeats has {} counts, expected 1 or {n} (the size of axis {d})",
                    repeats.len()
                )));
            }
        }
        Op::Tril | Op::Triu => {
            if rank < 2 {
                return Err(invalid(format!(
                    "{name}: x has rank {rank} ({}), expected rank 2 or more",
                    shape_str(&x.shape)
                )));
            }
            let k = attrs.int_opt("diagonal")?.unwrap_or(0);
            band = Some(if op == Op::Tril {
                (i64::MIN, k)
            } else {
                (k, i64::MAX)
            });
        }
        _ => return Err(Error::internal(format!("{name} is not a remap"))),
    }
    Ok(Remap { axes, band, fill })
}

/// The walk of a line scatter: the lines are the dims other than `axis` of the index (for
/// `index_add`, of the source), for four tensors: x, the index, the source and the output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lines {
    /// The shape of the lines (the index's shape without `axis`).
    pub shape: Vec<usize>,
    /// Element strides over `shape` of x, the index, the source and the output.
    pub strides: [Vec<usize>; 4],
    /// Element offsets of the first line of each.
    pub offsets: [usize; 4],
    /// Element strides along `axis` of each.
    pub steps: [usize; 4],
    /// The output's size along `axis` (valid indices are `0..n`).
    pub n: usize,
    /// Elements of each index line.
    pub k: usize,
    /// True when the lines cover the whole output (else the output is first a copy of x).
    pub covers: bool,
    pub axis: usize,
}

impl Lines {
    /// The number of lines.
    pub fn count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The lines of `scatter`/`scatter_add` (`index` as given) or `index_add` and
/// `embedding_backward` (`index` 1-D, seen along `axis` of the source).
pub(crate) fn lines(
    op: Op,
    axis: usize,
    x: &TensorDesc,
    index: &TensorDesc,
    src: &TensorDesc,
    out: &TensorDesc,
) -> Lines {
    let (idx_shape, idx_strides) = if matches!(op, Op::IndexAdd | Op::EmbeddingBackward) {
        let mut s = vec![0; src.rank()];
        s[axis] = index.strides.first().copied().unwrap_or(0);
        (src.shape.clone(), s)
    } else {
        (index.shape.clone(), index.strides.clone())
    };
    let drop = |v: &[usize]| -> Vec<usize> {
        v.iter()
            .enumerate()
            .filter(|&(d, _)| d != axis)
            .map(|(_, &s)| s)
            .collect()
    };
    let covers = idx_shape
        .iter()
        .zip(&out.shape)
        .enumerate()
        .all(|(d, (a, b))| d == axis || a == b);
    Lines {
        shape: drop(&idx_shape),
        strides: [
            drop(&x.strides),
            drop(&idx_strides),
            drop(&src.strides),
            drop(&out.strides),
        ],
        offsets: [x.offset, index.offset, src.offset, out.offset],
        steps: [
            x.strides[axis],
            idx_strides[axis],
            src.strides[axis],
            out.strides[axis],
        ],
        n: out.shape[axis],
        k: idx_shape[axis],
        covers,
        axis,
    }
}

/// The output shape of a v2 movement or indexing op, after checking its inputs and attributes.
pub(crate) fn shape(op: Op, attrs: &Attrs<'_>, inputs: &[&TensorDesc]) -> Result<Vec<usize>> {
    let name = attrs.op;
    let x = inputs[0];
    match op {
        Op::Pad | Op::Flip | Op::Roll | Op::RepeatInterleave | Op::Tril | Op::Triu => {
            Ok(remap(op, attrs, x)?.out_shape())
        }
        Op::OneHot => {
            let c = attrs.int("num_classes")?;
            if c == 0 && x.numel() > 0 {
                return Err(invalid(format!(
                    "{name}: num_classes is 0 but indices holds {} values: every index would be \
                     out of range",
                    x.numel()
                )));
            }
            let mut s = x.shape.clone();
            s.push(c as usize);
            Ok(s)
        }
        Op::MaskedFill => {
            let mask = inputs[1];
            let b = crate::plan::broadcast_shapes(name, ("mask", "x"), &mask.shape, &x.shape)?;
            if b != x.shape {
                return Err(invalid(format!(
                    "{name}: mask {} does not broadcast to x {}",
                    shape_str(&mask.shape),
                    shape_str(&x.shape)
                )));
            }
            attrs.float("value")?;
            Ok(x.shape.clone())
        }
        Op::Scatter | Op::ScatterAdd | Op::IndexAdd => {
            let (index, src) = (inputs[1], inputs[2]);
            if x.rank() == 0 {
                return Err(invalid(format!(
                    "{name}: x is a scalar, expected rank 1 or more"
                )));
            }
            let axis = attrs.axis("axis", None, x.rank())?;
            let src_name = if op == Op::IndexAdd { "source" } else { "src" };
            if src.rank() != x.rank() {
                return Err(invalid(format!(
                    "{name}: {src_name} has rank {} but x has rank {}: ranks must match",
                    src.rank(),
                    x.rank()
                )));
            }
            let k = if op == Op::IndexAdd {
                if index.rank() != 1 {
                    return Err(invalid(format!(
                        "{name}: index has shape {}, expected a 1-D tensor",
                        shape_str(&index.shape)
                    )));
                }
                let same = (0..x.rank()).all(|d| {
                    if d == axis {
                        src.shape[d] == index.shape[0]
                    } else {
                        src.shape[d] == x.shape[d]
                    }
                });
                if !same {
                    return Err(invalid(format!(
                        "{name}: source is {} for x {} and {} indices: expected x's shape with \
                         axis {axis} of size {}",
                        shape_str(&src.shape),
                        shape_str(&x.shape),
                        index.shape[0],
                        index.shape[0]
                    )));
                }
                let alpha = attrs.float_or_default("alpha")?;
                if x.dtype.is_int() && alpha.fract() != 0.0 {
                    return Err(invalid(format!(
                        "{name}: alpha is {alpha}, expected an integral value for {} tensors",
                        x.dtype
                    )));
                }
                index.shape[0]
            } else {
                if index.rank() != x.rank() {
                    return Err(invalid(format!(
                        "{name}: index has rank {} but x has rank {}: ranks must match",
                        index.rank(),
                        x.rank()
                    )));
                }
                for d in 0..x.rank() {
                    let over_src = index.shape[d] > src.shape[d];
                    let over_x = d != axis && index.shape[d] > x.shape[d];
                    if over_src || over_x {
                        return Err(invalid(format!(
                            "{name}: index is {}, src {} and x {}: index dim {d} must be at most \
                             src's{}",
                            shape_str(&index.shape),
                            shape_str(&src.shape),
                            shape_str(&x.shape),
                            if d == axis { "" } else { " and x's" }
                        )));
                    }
                }
                index.shape[axis]
            };
            if x.shape[axis] == 0 && k > 0 && index.numel() > 0 {
                return Err(invalid(format!(
                    "{name}: axis {axis} of x is empty, so every index is out of range"
                )));
            }
            Ok(x.shape.clone())
        }
        _ => Err(Error::internal(format!(
            "{name}: not a v2 movement or indexing op"
        ))),
    }
}

/// The `OutOfBounds` error of a line scatter, naming the first index (in the row-major order of
/// `index`, whose elements are `bytes` of `dtype`) outside `0..n`.
pub(crate) fn bad_index(name: &str, bytes: &[u8], dtype: DType, n: usize, axis: usize) -> Error {
    let size = dtype.size_in_bytes();
    let first = bytes
        .chunks_exact(size)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..size].copy_from_slice(c);
            if size == 4 {
                i32::from_le_bytes([w[0], w[1], w[2], w[3]]) as i64
            } else {
                i64::from_le_bytes(w)
            }
        })
        .find(|&v| v < 0 || v as u64 >= n as u64);
    match first {
        Some(v) => Error::out_of_bounds(format!(
            "{name}: index {v} out of range 0..{n} along axis {axis}"
        )),
        None => Error::internal(format!(
            "{name}: the kernel flagged an index out of range 0..{n}, but none is"
        )),
    }
}

/// The bytes of a one-element tensor of `dtype` holding `v` (as `fill` converts it).
pub(crate) fn scalar_bytes(v: f64, dtype: DType) -> Vec<u8> {
    let bits = crate::convert::value_bits(v, dtype);
    bits.to_le_bytes()[..dtype.size_in_bytes()].to_vec()
}

/// The axis, `alpha` and summing of a line scatter call (`one_hot` and `embedding_backward` run
/// as scatters along their last and first axis).
pub(crate) fn scatter_params(op: Op, attrs: &Attrs<'_>, rank: usize) -> Result<(usize, f64, bool)> {
    let axis = match op {
        Op::OneHot => rank - 1,
        Op::EmbeddingBackward => 0,
        _ => attrs.axis("axis", None, rank)?,
    };
    let alpha = if op == Op::IndexAdd {
        attrs.float_or_default("alpha")?
    } else {
        1.0
    };
    let add = matches!(op, Op::ScatterAdd | Op::IndexAdd | Op::EmbeddingBackward);
    Ok((axis, alpha, add))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyaccel_hal::AttrValue;

    fn remap_of(op: Op, name: &str, shape: &[usize], attrs: &[(&str, AttrValue)]) -> Remap {
        let list: Vec<(String, AttrValue)> = attrs
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        let def = crate::catalog::op_def(name).unwrap();
        let a = Attrs::new(name, &list, def.attrs).unwrap();
        remap(op, &a, &TensorDesc::contiguous(DType::F32, shape)).unwrap()
    }

    fn sources(r: &Remap, axis: usize) -> Vec<Option<usize>> {
        (0..r.axes[axis].out).map(|o| r.source(axis, o)).collect()
    }

    #[test]
    fn pad_modes_map_as_pytorch_does() {
        let pads = |mode: &str| {
            remap_of(
                Op::Pad,
                "pad",
                &[4],
                &[
                    ("pads", AttrValue::Ints(vec![3, 2])),
                    ("mode", AttrValue::Str(mode.into())),
                ],
            )
        };
        let s = |v: &[usize]| v.iter().map(|&i| Some(i)).collect::<Vec<_>>();
        assert_eq!(
            sources(&pads("reflect"), 0),
            s(&[3, 2, 1, 0, 1, 2, 3, 2, 1])
        );
        assert_eq!(
            sources(&pads("replicate"), 0),
            s(&[0, 0, 0, 0, 1, 2, 3, 3, 3])
        );
        assert_eq!(
            sources(&pads("circular"), 0),
            s(&[1, 2, 3, 0, 1, 2, 3, 0, 1])
        );
        let c = sources(&pads("constant"), 0);
        assert_eq!(c[..3], [None, None, None]);
        assert_eq!(c[3..7], s(&[0, 1, 2, 3]));
        assert_eq!(c[7..], [None, None]);
    }

    #[test]
    fn roll_flip_and_repeats() {
        let r = remap_of(
            Op::Roll,
            "roll",
            &[5],
            &[
                ("shifts", AttrValue::Ints(vec![-7])),
                ("axes", AttrValue::Ints(vec![0])),
            ],
        );
        // torch.roll(arange(5), -7) == [2, 3, 4, 0, 1]
        assert_eq!(sources(&r, 0), [2, 3, 4, 0, 1].map(Some).to_vec());
        let f = remap_of(
            Op::Flip,
            "flip",
            &[3],
            &[("axes", AttrValue::Ints(vec![-1]))],
        );
        assert_eq!(sources(&f, 0), [2, 1, 0].map(Some).to_vec());
        let t = remap_of(
            Op::RepeatInterleave,
            "repeat_interleave",
            &[3],
            &[
                ("repeats", AttrValue::Ints(vec![2, 0, 1])),
                ("axis", AttrValue::Int(0)),
            ],
        );
        assert_eq!(sources(&t, 0), [0, 0, 2].map(Some).to_vec());
    }
}
