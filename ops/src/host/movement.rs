//! Remaps (`pad`, `flip`, `roll`, `repeat_interleave`, `tril`, `triu`) and line scatters
//! (`scatter`, `scatter_add`, `index_add`): the rules of `crate::movement`.

use std::sync::atomic::{AtomicBool, Ordering};

use anyaccel_hal::{Error, OpCall, Result};

use super::elementwise::copy_elements;
use super::index::read_index;
use super::layout::{par_ranges, walk, GRAIN};
use super::scalar::{load, store, with_float, F64Store, Val};
use super::vmath;
use super::{Body, Bound, TView};
use crate::attrs::Attrs;
use crate::catalog::{op_of, Op};
use crate::movement::{lines, remap, scalar_bytes, scatter_params, Lines, Remap};

/// The kernel of a remap.
pub(crate) fn remap_kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let x = call.inputs[0]
        .as_ref()
        .ok_or_else(|| Error::internal("remap: input missing"))?;
    let plan = remap(op_of(&call.op)?, &attrs, x.desc())?;
    Ok(Box::new(move |b: &Bound| {
        let (x, out) = (b.input(0)?, b.out(0));
        match x.desc.dtype.size_in_bytes() {
            1 => run_remap::<u8>(&plan, x, out),
            2 => run_remap::<u16>(&plan, x, out),
            4 => run_remap::<u32>(&plan, x, out),
            _ => run_remap::<u64>(&plan, x, out),
        }
    }))
}

fn run_remap<T: Copy + bytemuck::Pod + Send + Sync>(
    plan: &Remap,
    x: &TView,
    out: &TView,
) -> Result<()> {
    let rank = plan.axes.len();
    let fill: T = bytemuck::pod_read_unaligned(&scalar_bytes(plan.fill, out.desc.dtype));
    // Per axis, the input offset of each output coordinate (None: the fill value).
    let tables: Vec<Vec<Option<usize>>> = (0..rank)
        .map(|d| {
            (0..plan.axes[d].out)
                .map(|o| plan.source(d, o).map(|s| s * x.desc.strides[d]))
                .collect()
        })
        .collect();
    let shape = &out.desc.shape;
    par_ranges(out.desc.numel(), GRAIN, |r| {
        // The coordinates of r.start, then counted up like an odometer.
        let mut c = vec![0usize; rank];
        let mut rem = r.start;
        for d in (0..rank).rev() {
            c[d] = rem % shape[d];
            rem /= shape[d];
        }
        for _ in r {
            let mut src = Some(x.desc.offset);
            let mut dst = out.desc.offset;
            for d in 0..rank {
                src = match (src, tables[d][c[d]]) {
                    (Some(s), Some(t)) => Some(s + t),
                    _ => None,
                };
                dst += c[d] * out.desc.strides[d];
            }
            if rank >= 2 && !plan.in_band(c[rank - 2], c[rank - 1]) {
                src = None;
            }
            // SAFETY: each table offset is an input coordinate (in 0..n) times its stride, so
            // `src` is an offset of x's layout; `dst` is one of the output's.
            unsafe {
                let v = match src {
                    Some(s) => x.get::<T>(s),
                    None => fill,
                };
                out.set(dst, v);
            }
            for d in (0..rank).rev() {
                c[d] += 1;
                if c[d] < shape[d] {
                    break;
                }
                c[d] = 0;
            }
        }
        Ok(())
    })
}

/// The kernel of a line scatter.
pub(crate) fn scatter_kernel(call: &OpCall) -> Result<Box<Body>> {
    let attrs = Attrs::of(call)?;
    let op = op_of(&call.op)?;
    let rank = call.outputs[0].rank();
    let (axis, alpha, add) = scatter_params(op, &attrs, rank)?;
    let name = call.op.clone();
    Ok(Box::new(move |b: &Bound| {
        let (x, idx, src, out) = (b.input(0)?, b.input(1)?, b.input(2)?, b.out(0));
        if matches!(op, Op::IndexAdd | Op::EmbeddingBackward)
            && axis == 0
            && add_rows(&name, alpha, [x, idx, src, out])?
        {
            return Ok(());
        }
        let l = lines(op, axis, &x.desc, &idx.desc, &src.desc, &out.desc);
        if !l.covers {
            copy_elements(x, out)?;
        }
        run_scatter(&name, add, alpha, &l, [x, idx, src, out])
    }))
}

/// `index_add` (and `embedding_backward`, an `index_add` into zeros) along axis 0 of float rows:
/// `out[i] = x[i] + alpha * sum of src[k] over the k with index[k] = i`, the sum in increasing
/// `k` in f64, rounded once. The positions are first sorted by row (a counting sort that keeps
/// their order), then each task writes a range of whole rows: each output row is read from x
/// (or its one broadcast value), gets its sources added and is written once. `false` (nothing
/// run) unless the output is contiguous, the source's rows are contiguous and x is contiguous
/// or one value broadcast; an index out of range is an error before anything is written.
fn add_rows(name: &str, alpha: f64, [x, idx, src, out]: [&TView; 4]) -> Result<bool> {
    let dtype = out.desc.dtype;
    let rows = out.desc.shape.first().copied().unwrap_or(0);
    let width: usize = out.desc.shape.iter().skip(1).product();
    let positions = src.desc.shape.first().copied().unwrap_or(0);
    // Dims 1.. of the source laid out as the output's rows.
    let d = &src.desc;
    let row_major = d.shape.len() == out.desc.shape.len()
        && anyaccel_hal::TensorDesc {
            dtype,
            shape: d.shape[1..].to_vec(),
            strides: d.strides[1..].to_vec(),
            offset: 0,
        }
        .is_contiguous();
    let broadcast = x.desc.strides.iter().all(|&s| s == 0);
    if !dtype.is_float()
        || x.desc.dtype != dtype
        || src.desc.dtype != dtype
        || rows == 0
        || width == 0
        || !out.desc.is_contiguous()
        || !row_major
        || !(broadcast || x.desc.is_contiguous())
        || idx.desc.rank() != 1
    {
        return Ok(false);
    }
    // Row i's positions are order[start[i]..start[i + 1]], in increasing k.
    let mut start = vec![0usize; rows + 1];
    let step = idx.desc.strides.first().copied().unwrap_or(0);
    let index = |k: usize| read_index(idx, idx.desc.offset + k * step);
    for k in 0..positions {
        let i = index(k);
        if i < 0 || i as u64 >= rows as u64 {
            return Err(Error::out_of_bounds(format!(
                "{name}: index {i} out of range 0..{rows} along axis 0"
            )));
        }
        start[i as usize + 1] += 1;
    }
    for i in 0..rows {
        start[i + 1] += start[i];
    }
    let mut order = vec![0usize; positions];
    let mut next = start.clone();
    for k in 0..positions {
        let i = index(k) as usize;
        order[next[i]] = k;
        next[i] += 1;
    }
    let src_row = src.desc.strides[0];
    with_float!(dtype, T => {
        par_ranges(rows, (GRAIN / width).max(1), |range| {
            let mut acc = vec![0f64; width];
            for i in range {
                let sources = &order[start[i]..start[i + 1]];
                // SAFETY (every access): row i of the contiguous output and of x (or x's one
                // value), and row k < positions of the source, whose rows are contiguous.
                unsafe {
                    if sources.len() <= 1 {
                        // The same sums without the f64 row: x, plus the one source.
                        let o = std::slice::from_raw_parts_mut(
                            out.ptr::<T>(out.desc.offset + i * width),
                            width,
                        );
                        let one = |v: T| v.to_f64() * alpha;
                        match (sources.first(), broadcast) {
                            (Some(&k), true) => {
                                let c = x.get::<T>(x.desc.offset).to_f64();
                                let sr = src.run::<T>(src.desc.offset + k * src_row, width);
                                vmath::map(sr, o, &|v: T| T::from_f64(c + one(v)));
                            }
                            (Some(&k), false) => {
                                let xr = x.run::<T>(x.desc.offset + i * width, width);
                                let sr = src.run::<T>(src.desc.offset + k * src_row, width);
                                let add = |u: T, v: T| T::from_f64(u.to_f64() + one(v));
                                vmath::map2(xr, sr, o, &add);
                            }
                            (None, true) => o.fill(T::from_f64(x.get::<T>(x.desc.offset).to_f64())),
                            (None, false) => {
                                let xr = x.run::<T>(x.desc.offset + i * width, width);
                                vmath::map(xr, o, &|v: T| T::from_f64(v.to_f64()));
                            }
                        }
                        continue;
                    }
                    if broadcast {
                        acc.fill(x.get::<T>(x.desc.offset).to_f64());
                    } else {
                        let xr = x.run::<T>(x.desc.offset + i * width, width);
                        for (a, &v) in acc.iter_mut().zip(xr) {
                            *a = v.to_f64();
                        }
                    }
                    for &k in sources {
                        let sr = src.run::<T>(src.desc.offset + k * src_row, width);
                        for (a, &v) in acc.iter_mut().zip(sr) {
                            *a += v.to_f64() * alpha;
                        }
                    }
                    let o = out.ptr::<T>(out.desc.offset + i * width);
                    for (c, &a) in acc.iter().enumerate() {
                        o.add(c).write(T::from_f64(a));
                    }
                }
            }
            Ok(())
        })
    })?;
    Ok(true)
}

fn run_scatter(name: &str, add: bool, alpha: f64, l: &Lines, t: [&TView; 4]) -> Result<()> {
    let [x, idx, src, out] = t;
    let bad = AtomicBool::new(false);
    let rank = l.shape.len();
    par_ranges(l.count(), (GRAIN / l.n.max(1)).max(1), |r| {
        let mut acc: Vec<Val> = Vec::with_capacity(l.n);
        for line in r {
            // The first element of this line in each tensor.
            let mut base = l.offsets;
            let mut rem = line;
            for d in (0..rank).rev() {
                let c = rem % l.shape[d];
                rem /= l.shape[d];
                for (k, b) in base.iter_mut().enumerate() {
                    *b += c * l.strides[k][d];
                }
            }
            acc.clear();
            // SAFETY: offsets below come from each view's layout: j < n along the output's (and
            // x's) axis, k < the index's (and the source's) size along it.
            unsafe {
                acc.extend((0..l.n).map(|j| load(x, base[0] + j * l.steps[0])));
                for k in 0..l.k {
                    let i = read_index(idx, base[1] + k * l.steps[1]);
                    if i < 0 || i as u64 >= l.n as u64 {
                        bad.store(true, Ordering::Relaxed);
                        continue;
                    }
                    let v = load(src, base[2] + k * l.steps[2]);
                    let a = &mut acc[i as usize];
                    *a = match (add, *a, v) {
                        (false, _, v) => v,
                        (true, Val::F(s), Val::F(v)) => Val::F(s + v * alpha),
                        (true, Val::I(s), Val::I(v)) => {
                            Val::I(s.wrapping_add(v.wrapping_mul(alpha as i64)))
                        }
                        (true, s, _) => s,
                    };
                }
                for (j, &v) in acc.iter().enumerate() {
                    store(out, base[3] + j * l.steps[3], v);
                }
            }
        }
        Ok(())
    })?;
    if bad.into_inner() {
        // The first bad index in the index's row-major order, as every dialect reports it.
        let n = idx.desc.numel();
        let mut first = None;
        walk(
            &idx.desc.shape,
            [&idx.desc.strides],
            [idx.desc.offset],
            0..n,
            |_, [o]| {
                let i = read_index(idx, o);
                if first.is_none() && (i < 0 || i as u64 >= l.n as u64) {
                    first = Some(i);
                }
            },
        );
        return Err(Error::out_of_bounds(format!(
            "{name}: index {} out of range 0..{} along axis {}",
            first.unwrap_or(-1),
            l.n,
            l.axis
        )));
    }
    Ok(())
}
