//! Reductions over axes (`sum`, `mean`, `max`, `min`, `argmax`, `argmin`), `cumsum` and `topk`.
//! Floats accumulate in f64, integers in i64 (wrapping to their width on store).

use std::cmp::Ordering;

use anyaccel_hal::{OpCall, Result};

use super::layout::{par_ranges, walk, GRAIN};
use super::scalar::{load, store, Val};
use super::{Body, Bound, TView};
use crate::attrs::Attrs;
use crate::catalog::misrouted;
use crate::plan::reduce_axes;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    ArgMax,
    ArgMin,
}

/// Running state of one reduction.
#[derive(Clone, Copy)]
struct Acc {
    f: f64,
    i: i64,
    idx: i64,
    nan: bool,
    any: bool,
}

const EMPTY: Acc = Acc {
    f: 0.0,
    i: 0,
    idx: 0,
    nan: false,
    any: false,
};

/// `a` is strictly better than `b` for max-like (`greater`) or min-like selection.
fn better(a: Val, b: Val, greater: bool) -> bool {
    let ord = match (a, b) {
        (Val::F(x), Val::F(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Val::I(x), Val::I(y)) => x.cmp(&y),
        _ => Ordering::Equal,
    };
    if greater {
        ord == Ordering::Greater
    } else {
        ord == Ordering::Less
    }
}

impl Acc {
    fn value(&self, float: bool) -> Val {
        if float {
            Val::F(self.f)
        } else {
            Val::I(self.i)
        }
    }

    fn set(&mut self, v: Val) {
        match v {
            Val::F(f) => self.f = f,
            Val::I(i) => self.i = i,
        }
    }

    fn push(&mut self, kind: Kind, v: Val, j: usize) {
        let is_nan = matches!(v, Val::F(f) if f.is_nan());
        match kind {
            Kind::Sum | Kind::Mean => match v {
                Val::F(f) => self.f += f,
                Val::I(i) => self.i = self.i.wrapping_add(i),
            },
            Kind::Max | Kind::Min => {
                if is_nan {
                    self.nan = true;
                } else if !self.any
                    || better(v, self.value(matches!(v, Val::F(_))), kind == Kind::Max)
                {
                    self.set(v);
                }
            }
            Kind::ArgMax | Kind::ArgMin => {
                if self.nan {
                    return;
                }
                if is_nan
                    || !self.any
                    || better(v, self.value(matches!(v, Val::F(_))), kind == Kind::ArgMax)
                {
                    self.set(v);
                    self.idx = j as i64;
                    self.nan = is_nan;
                }
            }
        }
        self.any = true;
    }

    /// Combines with the state of a later range.
    fn merge(mut self, later: Acc, kind: Kind, float: bool) -> Acc {
        if !later.any {
            return self;
        }
        if !self.any {
            return later;
        }
        match kind {
            Kind::Sum | Kind::Mean => {
                self.f += later.f;
                self.i = self.i.wrapping_add(later.i);
            }
            Kind::Max | Kind::Min => {
                self.nan |= later.nan;
                if better(later.value(float), self.value(float), kind == Kind::Max) {
                    self.set(later.value(float));
                }
            }
            Kind::ArgMax | Kind::ArgMin => {
                if !self.nan
                    && (later.nan
                        || better(later.value(float), self.value(float), kind == Kind::ArgMax))
                {
                    return later;
                }
            }
        }
        self
    }

    fn result(&self, kind: Kind, float: bool, count: usize) -> Val {
        match kind {
            Kind::Sum => self.value(float),
            Kind::Mean => Val::F(self.f / count as f64),
            Kind::Max | Kind::Min if self.nan => Val::F(f64::NAN),
            Kind::Max | Kind::Min => self.value(float),
            Kind::ArgMax | Kind::ArgMin => Val::I(self.idx),
        }
    }
}

fn reduce_block(
    x: &TView,
    shape: &[usize],
    strides: &[usize],
    base: usize,
    range: std::ops::Range<usize>,
    kind: Kind,
) -> Acc {
    let mut acc = EMPTY;
    walk(shape, [strides], [base], range, |j, [o]| {
        // SAFETY: offsets come from x's layout.
        acc.push(kind, unsafe { load(x, o) }, j)
    });
    acc
}

fn reduction(call: &OpCall, kind: Kind) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let rank = call.inputs[0].as_ref().map(|t| t.rank()).unwrap_or(0);
    let axes = reduce_axes(&attrs, rank)?;
    let keep = attrs.flag("keepdim", false)?;
    Ok(Box::new(move |b: &Bound| {
        let (x, out) = (b.input(0)?, b.out(0));
        let float = x.desc.dtype.is_float();
        let (mut red_shape, mut red_strides, mut kept_strides) = (vec![], vec![], vec![]);
        for d in 0..x.desc.rank() {
            if axes.contains(&d) {
                red_shape.push(x.desc.shape[d]);
                red_strides.push(x.desc.strides[d]);
                if keep {
                    kept_strides.push(0);
                }
            } else {
                kept_strides.push(x.desc.strides[d]);
            }
        }
        let count: usize = red_shape.iter().product();
        let outs = out.desc.numel();
        if outs < rayon::current_num_threads() && count >= 2 * GRAIN {
            // Few outputs, long reductions: split each reduction and merge the parts in order.
            let mut base_offsets = Vec::with_capacity(outs);
            walk(
                &out.desc.shape,
                [&kept_strides, &out.desc.strides],
                [x.desc.offset, out.desc.offset],
                0..outs,
                |_, o| base_offsets.push(o),
            );
            for [xb, ob] in base_offsets {
                let parts = std::sync::Mutex::new(Vec::new());
                par_ranges(count, GRAIN, |r| {
                    let start = r.start;
                    let acc = reduce_block(x, &red_shape, &red_strides, xb, r, kind);
                    parts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((start, acc));
                    Ok(())
                })?;
                let mut parts = parts.into_inner().unwrap_or_else(|p| p.into_inner());
                parts.sort_by_key(|(s, _)| *s);
                let acc = parts
                    .into_iter()
                    .fold(EMPTY, |a, (_, p)| a.merge(p, kind, float));
                // SAFETY: the offset comes from the output's layout.
                unsafe { store(out, ob, acc.result(kind, float, count)) };
            }
            return Ok(());
        }
        let grain = (GRAIN / count.max(1)).max(1);
        par_ranges(outs, grain, |r| {
            walk(
                &out.desc.shape,
                [&kept_strides, &out.desc.strides],
                [x.desc.offset, out.desc.offset],
                r,
                |_, [xb, ob]| {
                    let acc = reduce_block(x, &red_shape, &red_strides, xb, 0..count, kind);
                    // SAFETY: the offset comes from the output's layout.
                    unsafe { store(out, ob, acc.result(kind, float, count)) }
                },
            );
            Ok(())
        })
    }))
}

/// Runs `f(line, x_line_base, [out_line_bases])` for every line along `axis`, in parallel.
pub(crate) fn for_lines<const N: usize>(
    x: &TView,
    outs: [&TView; N],
    axis: usize,
    f: impl Fn(usize, usize, [usize; N]) -> Result<()> + Sync,
) -> Result<()> {
    let mut shape = x.desc.shape.clone();
    let len = shape[axis];
    shape[axis] = 1;
    let lines: usize = shape.iter().product();
    let grain = (GRAIN / len.max(1)).max(1);
    par_ranges(lines, grain, |r| {
        let mut result = Ok(());
        let mut strides: Vec<&[usize]> = vec![&x.desc.strides];
        strides.extend(outs.iter().map(|o| o.desc.strides.as_slice()));
        let bases: Vec<usize> = std::iter::once(x.desc.offset)
            .chain(outs.iter().map(|o| o.desc.offset))
            .collect();
        // Walk the line space with x's strides, then add each output's own offsets.
        let mut idx_walk = Vec::with_capacity(r.len());
        walk(&shape, [strides[0]], [bases[0]], r.clone(), |i, [o]| {
            idx_walk.push((i, o))
        });
        for (i, xo) in idx_walk {
            let mut oo = [0usize; N];
            for (k, o) in outs.iter().enumerate() {
                oo[k] = line_offset(o, &shape, i);
            }
            if let Err(e) = f(i, xo, oo) {
                result = Err(e);
                break;
            }
        }
        result
    })
}

/// Offset in `v` of the start of line `i` of a line space `shape` (row-major).
pub(crate) fn line_offset(v: &TView, shape: &[usize], mut i: usize) -> usize {
    let mut off = v.desc.offset;
    for d in (0..shape.len()).rev() {
        off += (i % shape[d]) * v.desc.strides[d];
        i /= shape[d];
    }
    off
}

fn cmp_vals(a: Val, b: Val) -> Ordering {
    match (a, b) {
        (Val::F(x), Val::F(y)) => match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        },
        (Val::I(x), Val::I(y)) => x.cmp(&y),
        _ => Ordering::Equal,
    }
}

/// The kernel of one reduction-family op.
pub(crate) fn kernel(call: &OpCall) -> Result<Box<Body>> {
    let rank = call.inputs[0].as_ref().map(|t| t.rank()).unwrap_or(0);
    match call.op.as_str() {
        "sum" => reduction(call, Kind::Sum),
        "mean" => reduction(call, Kind::Mean),
        "max" => reduction(call, Kind::Max),
        "min" => reduction(call, Kind::Min),
        "argmax" => reduction(call, Kind::ArgMax),
        "argmin" => reduction(call, Kind::ArgMin),
        "cumsum" => {
            let attrs = Attrs::of(call)?;
            let axis = attrs.axis("axis", None, rank)?;
            Ok(Box::new(move |b: &Bound| {
                let (x, out) = (b.input(0)?, b.out(0));
                let len = x.desc.shape[axis];
                let (xs, os) = (x.desc.strides[axis], out.desc.strides[axis]);
                for_lines(x, [out], axis, |_, xb, [ob]| {
                    let mut acc = EMPTY;
                    for j in 0..len {
                        // SAFETY: offsets walk the line inside both layouts.
                        unsafe {
                            acc.push(Kind::Sum, load(x, xb + j * xs), j);
                            store(
                                out,
                                ob + j * os,
                                acc.result(Kind::Sum, x.desc.dtype.is_float(), 0),
                            );
                        }
                    }
                    Ok(())
                })
            }))
        }
        "topk" => {
            let attrs = Attrs::of(call)?;
            let axis = attrs.axis("axis", Some(-1), rank)?;
            let k = attrs.int("k")? as usize;
            let largest = attrs.flag("largest", true)?;
            Ok(Box::new(move |b: &Bound| {
                let (x, values, indices) = (b.input(0)?, b.out(0), b.out(1));
                let len = x.desc.shape[axis];
                let xs = x.desc.strides[axis];
                let (vs, is) = (values.desc.strides[axis], indices.desc.strides[axis]);
                // Lines of the outputs are indexed in the line space of x (axis set to 1).
                for_lines(x, [values, indices], axis, |_, xb, [vb, ib]| {
                    // SAFETY: offsets walk the line inside x's layout.
                    let mut row: Vec<(Val, usize)> = (0..len)
                        .map(|j| (unsafe { load(x, xb + j * xs) }, j))
                        .collect();
                    row.sort_by(|a, b| {
                        let o = cmp_vals(a.0, b.0);
                        (if largest { o.reverse() } else { o }).then(a.1.cmp(&b.1))
                    });
                    for (r, (v, j)) in row.into_iter().take(k).enumerate() {
                        // SAFETY: r < k, the size of the outputs' axis.
                        unsafe {
                            store(values, vb + r * vs, v);
                            store(indices, ib + r * is, Val::I(j as i64));
                        }
                    }
                    Ok(())
                })
            }))
        }
        other => Err(misrouted(other)),
    }
}
