//! Reductions over axes (`sum`, `mean`, `max`, `min`, `argmax`, `argmin`, `prod`, `any`, `all`,
//! `logsumexp`, `var`, `std`), `cumsum` and `topk`. Floats accumulate in f64, integers in i64
//! (wrapping to their width on store).

use std::cmp::Ordering;

use anyaccel_hal::{bf16, f16, DType, OpCall, Result};

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
    Prod,
    Any,
    All,
    LogSumExp,
    /// The variance, with its correction (standard deviation: `std`).
    Var {
        correction: i64,
        std: bool,
    },
}

/// Running state of one reduction. `prod`: the product in `f` or `i`; `any`/`all`: the count
/// of nonzero (zero) elements in `i`; `logsumexp`: the maximum in `f` and the sum of
/// `exp(x - f)` in `s`; `var`: the mean in `f`, the sum of squared deviations in `s`, the count
/// in `n` (Welford, merged by Chan's formula).
#[derive(Clone, Copy)]
struct Acc {
    f: f64,
    i: i64,
    s: f64,
    n: f64,
    idx: i64,
    nan: bool,
    any: bool,
}

const EMPTY: Acc = Acc {
    f: 0.0,
    i: 0,
    s: 0.0,
    n: 0.0,
    idx: 0,
    nan: false,
    any: false,
};

/// Adds `(m2, s2)` (a maximum and the sum of `exp(x - m2)`) to a logsumexp state `(m1, s1)`;
/// NaN marks a NaN element, +Inf an infinite one.
fn lse_merge(m1: f64, s1: f64, m2: f64, s2: f64) -> (f64, f64) {
    if m1.is_nan() || m2.is_nan() {
        (f64::NAN, 0.0)
    } else if m1 == f64::INFINITY || m2 == f64::INFINITY {
        (f64::INFINITY, 1.0)
    } else if m2 == f64::NEG_INFINITY {
        (m1, s1)
    } else if m1 == f64::NEG_INFINITY {
        (m2, s2)
    } else {
        let m = m1.max(m2);
        (m, s1 * (m1 - m).exp() + s2 * (m2 - m).exp())
    }
}

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
    /// Adds a float to a running maximum (`greater`) or minimum; a NaN marks the state.
    fn push_extreme(&mut self, v: f64, greater: bool) {
        if v.is_nan() {
            self.nan = true;
        } else if !self.any || (greater && v > self.f) || (!greater && v < self.f) {
            self.f = v;
        }
        self.any = true;
    }

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
            Kind::Prod => {
                if !self.any {
                    (self.f, self.n, self.i) = (1.0, 0.0, 1);
                }
                match v {
                    // The product as f * 2^n with f in [0.5, 1): no partial product overflows
                    // or underflows.
                    Val::F(f) => {
                        let (fm, fk) = libm::frexp(f);
                        let (m, k) = libm::frexp(self.f * fm);
                        (self.f, self.n) = (m, self.n + (k + fk) as f64);
                    }
                    Val::I(i) => self.i = self.i.wrapping_mul(i),
                }
            }
            Kind::Any | Kind::All => {
                let nonzero = match v {
                    Val::F(f) => f != 0.0,
                    Val::I(i) => i != 0,
                };
                self.i += (nonzero == (kind == Kind::Any)) as i64;
            }
            Kind::LogSumExp => {
                let x = match v {
                    Val::F(f) => f,
                    Val::I(i) => i as f64,
                };
                let (m, s) = if self.any {
                    (self.f, self.s)
                } else {
                    (f64::NEG_INFINITY, 0.0)
                };
                (self.f, self.s) = lse_merge(m, s, x, 1.0);
            }
            Kind::Var { .. } => {
                let x = match v {
                    Val::F(f) => f,
                    Val::I(i) => i as f64,
                };
                self.n += 1.0;
                let delta = x - self.f;
                self.f += delta / self.n;
                self.s += delta * (x - self.f);
            }
            Kind::Max | Kind::Min => match v {
                Val::F(f) => self.push_extreme(f, kind == Kind::Max),
                Val::I(_) => {
                    if !self.any || better(v, self.value(false), kind == Kind::Max) {
                        self.set(v);
                    }
                }
            },
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
            Kind::Prod => {
                let (m, k) = libm::frexp(self.f * later.f);
                (self.f, self.n) = (m, self.n + later.n + k as f64);
                self.i = self.i.wrapping_mul(later.i);
            }
            Kind::Any | Kind::All => self.i += later.i,
            Kind::LogSumExp => (self.f, self.s) = lse_merge(self.f, self.s, later.f, later.s),
            Kind::Var { .. } => {
                let n = self.n + later.n;
                let delta = later.f - self.f;
                self.s += later.s + delta * delta * self.n * later.n / n;
                self.f += delta * later.n / n;
                self.n = n;
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
            Kind::Prod if !self.any => Val::F(1.0),
            Kind::Prod if float => {
                Val::F(libm::ldexp(self.f, self.n.clamp(-3000.0, 3000.0) as i32))
            }
            Kind::Prod => self.value(float),
            Kind::Any | Kind::All => Val::I(((self.i > 0) == (kind == Kind::Any)) as i64),
            Kind::LogSumExp if !self.any || self.f == f64::NEG_INFINITY => {
                Val::F(f64::NEG_INFINITY)
            }
            Kind::LogSumExp if self.f.is_nan() || self.f == f64::INFINITY => Val::F(self.f),
            Kind::LogSumExp => Val::F(self.f + self.s.ln()),
            Kind::Var { correction, std } => {
                let divisor = (count as f64 - correction as f64).max(0.0);
                // An Inf or NaN element leaves a mean that is not finite; N <= correction
                // leaves no divisor.
                let var = if !self.f.is_finite() || divisor == 0.0 {
                    f64::NAN
                } else {
                    (if self.any { self.s } else { 0.0 }) / divisor
                };
                Val::F(if std { var.sqrt() } else { var })
            }
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
    run: (usize, usize),
) -> Acc {
    if let Some(acc) = reduce_runs(x, shape, strides, base, range.clone(), kind, run) {
        return acc;
    }
    let mut acc = EMPTY;
    walk(shape, [strides], [base], range, |j, [o]| {
        // SAFETY: offsets come from x's layout.
        acc.push(kind, unsafe { load(x, o) }, j)
    });
    acc
}

/// [`reduce_block`] for float sums, means, maxima and minima whose innermost reduced axes are
/// contiguous (a run of at least 8 elements), a run at a time with typed loads; `None` where it
/// does not apply. Sums keep 16 partial sums in f64 ([`super::vmath::sum_by`]).
fn reduce_runs(
    x: &TView,
    shape: &[usize],
    strides: &[usize],
    base: usize,
    range: std::ops::Range<usize>,
    kind: Kind,
    (d, run): (usize, usize),
) -> Option<Acc> {
    if !matches!(kind, Kind::Sum | Kind::Mean | Kind::Max | Kind::Min) || run < 8 {
        return None;
    }
    let mut acc = EMPTY;
    let mut j = range.start;
    while j < range.end {
        let (mut q, r) = (j / run, j % run);
        let len = (run - r).min(range.end - j);
        let mut off = base + r;
        for k in (0..d).rev() {
            off += (q % shape[k]) * strides[k];
            q /= shape[k];
        }
        // SAFETY: `off..off + len` is a contiguous stretch of x's reduced elements, inside its
        // layout; inputs are only read while a kernel runs.
        unsafe {
            match x.desc.dtype {
                DType::F32 => fold_run(&mut acc, kind, x.run::<f32>(off, len), |v| v as f64),
                DType::F64 => fold_run(&mut acc, kind, x.run::<f64>(off, len), |v| v),
                DType::F16 => fold_run(&mut acc, kind, x.run::<f16>(off, len), |v| v.to_f64()),
                DType::BF16 => fold_run(&mut acc, kind, x.run::<bf16>(off, len), |v| v.to_f64()),
                _ => return None,
            }
        }
        j += len;
    }
    Some(acc)
}

/// The trailing axes of a reduction that make one contiguous run: the number of axes before
/// them, and the run's length.
fn contiguous_run(shape: &[usize], strides: &[usize]) -> (usize, usize) {
    let (mut d, mut run) = (shape.len(), 1usize);
    while d > 0 && (shape[d - 1] == 1 || strides[d - 1] == run) {
        run *= shape[d - 1];
        d -= 1;
    }
    (d, run)
}

/// Float sums (or means) whose reduced elements do not lie in runs: one pass over `x` in its
/// index order, adding each element to its output's f64 sum, so that each sum takes its
/// elements in the order [`reduce_block`] does. `outs` sums in the output's index order.
fn sums_by_pass(x: &TView, axes: &[usize], outs: usize) -> Option<Vec<f64>> {
    // Each axis's stride in the output's index space (0 for a reduced axis).
    let mut acc_strides = vec![0usize; x.desc.rank()];
    let mut step = 1;
    for d in (0..x.desc.rank()).rev() {
        if !axes.contains(&d) {
            acc_strides[d] = step;
            step *= x.desc.shape[d];
        }
    }
    let mut sums = vec![0f64; outs];
    fn pass<T: Copy>(x: &TView, acc_strides: &[usize], sums: &mut [f64], f: impl Fn(T) -> f64) {
        walk(
            &x.desc.shape,
            [&x.desc.strides, acc_strides],
            [x.desc.offset, 0],
            0..x.desc.numel(),
            // SAFETY: offsets come from x's layout, read as its dtype.
            |_, [xo, at]| sums[at] += f(unsafe { x.get::<T>(xo) }),
        )
    }
    match x.desc.dtype {
        DType::F32 => pass(x, &acc_strides, &mut sums, |v: f32| v as f64),
        DType::F64 => pass(x, &acc_strides, &mut sums, |v: f64| v),
        DType::F16 => pass(x, &acc_strides, &mut sums, f16::to_f64),
        DType::BF16 => pass(x, &acc_strides, &mut sums, bf16::to_f64),
        _ => return None,
    }
    Some(sums)
}

/// Adds one contiguous run of float elements to a sum, mean, maximum or minimum.
fn fold_run<T: Copy>(acc: &mut Acc, kind: Kind, run: &[T], f: impl Fn(T) -> f64) {
    if run.is_empty() {
        return;
    }
    if matches!(kind, Kind::Sum | Kind::Mean) {
        acc.f += super::vmath::sum_by(run, f);
    } else {
        for &v in run {
            acc.push_extreme(f(v), kind == Kind::Max);
        }
    }
    acc.any = true;
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
        // The innermost reduced axes that make one contiguous run (see `reduce_runs`).
        let run = contiguous_run(&red_shape, &red_strides);
        if matches!(kind, Kind::Sum | Kind::Mean) && run.1 < 8 {
            if let Some(sums) = sums_by_pass(x, &axes, outs) {
                let n = if kind == Kind::Mean {
                    count as f64
                } else {
                    1.0
                };
                walk(
                    &out.desc.shape,
                    [&out.desc.strides],
                    [out.desc.offset],
                    0..outs,
                    // SAFETY: the offset comes from the output's layout.
                    |i, [ob]| unsafe { store(out, ob, Val::F(sums[i] / n)) },
                );
                return Ok(());
            }
        }
        if outs < super::layout::threads() && count >= 2 * GRAIN {
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
                    let acc = reduce_block(x, &red_shape, &red_strides, xb, r, kind, run);
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
                    let acc = reduce_block(x, &red_shape, &red_strides, xb, 0..count, kind, run);
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
        "prod" => reduction(call, Kind::Prod),
        "any" => reduction(call, Kind::Any),
        "all" => reduction(call, Kind::All),
        "logsumexp" => reduction(call, Kind::LogSumExp),
        "var" | "std" => {
            let correction = Attrs::of(call)?.int_opt("correction")?.unwrap_or(1);
            reduction(
                call,
                Kind::Var {
                    correction,
                    std: call.op == "std",
                },
            )
        }
        "cumsum" | "cumprod" | "cummax" | "cummin" => {
            let attrs = Attrs::of(call)?;
            let axis = attrs.axis("axis", None, rank)?;
            let reverse = attrs.flag("reverse", false)?;
            let (kind, exclusive) = match call.op.as_str() {
                "cummax" => (Kind::Max, false),
                "cummin" => (Kind::Min, false),
                "cumprod" => (Kind::Prod, attrs.flag("exclusive", false)?),
                _ => (Kind::Sum, attrs.flag("exclusive", false)?),
            };
            Ok(Box::new(move |b: &Bound| {
                let (x, out) = (b.input(0)?, b.out(0));
                let len = x.desc.shape[axis];
                let (xs, os) = (x.desc.strides[axis], out.desc.strides[axis]);
                let float = x.desc.dtype.is_float();
                for_lines(x, [out], axis, |_, xb, [ob]| {
                    let mut acc = EMPTY;
                    for step in 0..len {
                        let j = if reverse { len - 1 - step } else { step };
                        // SAFETY: offsets walk the line inside both layouts.
                        unsafe {
                            if exclusive {
                                store(out, ob + j * os, acc.result(kind, float, 0));
                            }
                            acc.push(kind, load(x, xb + j * xs), j);
                            if !exclusive {
                                store(out, ob + j * os, acc.result(kind, float, 0));
                            }
                        }
                    }
                    Ok(())
                })
            }))
        }
        "topk" | "sort" | "argsort" => {
            let attrs = Attrs::of(call)?;
            let axis = attrs.axis("axis", Some(-1), rank)?;
            let op = call.op.clone();
            // sort and argsort: topk of the whole axis.
            let (k, largest) = if op == "topk" {
                (attrs.int("k")? as usize, attrs.flag("largest", true)?)
            } else {
                (usize::MAX, attrs.flag("descending", false)?)
            };
            Ok(Box::new(move |b: &Bound| {
                let x = b.input(0)?;
                let len = x.desc.shape[axis];
                let xs = x.desc.strides[axis];
                let sorted_line = |xb: usize| {
                    // SAFETY: offsets walk the line inside x's layout.
                    let mut row: Vec<(Val, usize)> = (0..len)
                        .map(|j| (unsafe { load(x, xb + j * xs) }, j))
                        .collect();
                    row.sort_by(|a, b| {
                        let o = cmp_vals(a.0, b.0);
                        (if largest { o.reverse() } else { o }).then(a.1.cmp(&b.1))
                    });
                    row.truncate(k);
                    row
                };
                if op == "argsort" {
                    let indices = b.out(0);
                    let is = indices.desc.strides[axis];
                    return for_lines(x, [indices], axis, |_, xb, [ib]| {
                        for (r, (_, j)) in sorted_line(xb).into_iter().enumerate() {
                            // SAFETY: r < the size of the output's axis.
                            unsafe { store(indices, ib + r * is, Val::I(j as i64)) };
                        }
                        Ok(())
                    });
                }
                let (values, indices) = (b.out(0), b.out(1));
                let (vs, is) = (values.desc.strides[axis], indices.desc.strides[axis]);
                // Lines of the outputs are indexed in the line space of x (axis set to 1).
                for_lines(x, [values, indices], axis, |_, xb, [vb, ib]| {
                    for (r, (v, j)) in sorted_line(xb).into_iter().enumerate() {
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
