//! Host views of tensors, strided walks and parallel splitting.

use std::borrow::Cow;
use std::ops::Range;

use anyaccel_hal::{HostMem, Result, TensorDesc};
use rayon::prelude::*;

/// A tensor's memory on the host: the start of its view and its layout (borrowed from the
/// launch, or owned when a kernel made a new one).
#[derive(Clone)]
pub(crate) struct TView<'a> {
    base: *mut u8,
    pub desc: Cow<'a, TensorDesc>,
}

// SAFETY: a TView is a pointer into a buffer that the queue keeps alive while the kernel runs;
// kernels write only output elements, which are distinct and disjoint from inputs (validated
// before launch), and each element is written by one thread.
unsafe impl Send for TView<'_> {}
// SAFETY: as above.
unsafe impl Sync for TView<'_> {}

impl<'a> TView<'a> {
    pub fn new(mem: HostMem, desc: &'a TensorDesc) -> TView<'a> {
        TView {
            base: mem.as_ptr(),
            desc: Cow::Borrowed(desc),
        }
    }

    /// Pointer to the element at element offset `off` (which includes `desc.offset`).
    ///
    /// The caller must pass an offset produced from this view's layout (`desc.offset` plus a
    /// sum of index times stride within the shape), which the tensor's bounds check keeps inside
    /// the view, and `T` must be the storage type of the dtype.
    #[inline(always)]
    pub fn ptr<T>(&self, off: usize) -> *mut T {
        // The queue's buffers are 64-byte aligned and ops check that a view starts at a multiple of
        // the element size, so `base` is aligned for T.
        (self.base as *mut T).wrapping_add(off)
    }

    /// Reads the element at element offset `off`. See [`TView::ptr`].
    #[inline(always)]
    pub unsafe fn get<T: Copy>(&self, off: usize) -> T {
        // SAFETY: by the caller's contract the offset lies inside the view and T matches.
        unsafe { self.ptr::<T>(off).read() }
    }

    /// The `len` elements from element offset `off`, as a slice; only for inputs.
    ///
    /// # Safety
    /// `off..off + len` must lie inside the view's memory, `T` must be its element type, and no
    /// thread may write these elements while the slice lives.
    #[inline(always)]
    pub unsafe fn run<T: Copy>(&self, off: usize, len: usize) -> &[T] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ptr::<T>(off), len) }
    }

    /// The `len` elements from element offset `off`, as a slice to write; only for outputs.
    ///
    /// # Safety
    /// `off..off + len` must lie inside the view's memory, `T` must be its element type, and no
    /// other thread may read or write these elements while the slice lives.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub unsafe fn run_mut<T: Copy>(&self, off: usize, len: usize) -> &mut [T] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr::<T>(off), len) }
    }

    /// Writes the element at element offset `off`. See [`TView::ptr`]; only for outputs.
    #[inline(always)]
    pub unsafe fn set<T: Copy>(&self, off: usize, v: T) {
        // SAFETY: by the caller's contract the offset lies inside this output view, T matches,
        // and no other thread writes this element.
        unsafe { self.ptr::<T>(off).write(v) }
    }

    /// The elements as a mutable slice when the layout is contiguous (outputs only).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut<T>(&self) -> Option<&mut [T]> {
        if !self.desc.is_contiguous() {
            return None;
        }
        // SAFETY: as `slice`; the caller guarantees this output is not otherwise referenced.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.ptr::<T>(self.desc.offset), self.desc.numel())
        })
    }

    /// This view's layout broadcast to `shape` (zero strides on broadcast dims).
    pub fn broadcast(&self, shape: &[usize]) -> TView<'a> {
        let rank = self.desc.rank();
        let lead = shape.len() - rank;
        let mut strides = vec![0; shape.len()];
        for i in 0..rank {
            if self.desc.shape[i] == shape[lead + i] {
                strides[lead + i] = self.desc.strides[i];
            }
        }
        TView {
            base: self.base,
            desc: Cow::Owned(TensorDesc {
                dtype: self.desc.dtype,
                shape: shape.to_vec(),
                strides,
                offset: self.desc.offset,
            }),
        }
    }

    /// This view broadcast to `shape`: itself when it has that shape, else a new view.
    pub fn broadcast_cow(&self, shape: &[usize]) -> Cow<'_, TView<'a>> {
        if self.desc.shape == shape {
            Cow::Borrowed(self)
        } else {
            Cow::Owned(self.broadcast(shape))
        }
    }
}

/// Calls `f(linear, offsets)` for each linear index in `range` of `shape` (row-major), where
/// `offsets[k]` is `bases[k] + sum(index[d] * strides[k][d])`.
#[inline]
pub(crate) fn walk<const N: usize>(
    shape: &[usize],
    strides: [&[usize]; N],
    bases: [usize; N],
    range: Range<usize>,
    mut f: impl FnMut(usize, [usize; N]),
) {
    if range.is_empty() {
        return;
    }
    let rank = shape.len();
    let mut idx = vec![0usize; rank];
    let mut rem = range.start;
    for d in (0..rank).rev() {
        idx[d] = rem % shape[d];
        rem /= shape[d];
    }
    // Offsets step one place past the end of a run or a dimension before the carry takes them
    // back; a dimension of one element may have any stride, so those steps wrap (they are never
    // read), and every offset passed to `f` is exact.
    let mut offs = bases;
    for k in 0..N {
        for d in 0..rank {
            offs[k] = offs[k].wrapping_add(idx[d].wrapping_mul(strides[k][d]));
        }
    }
    if rank == 0 {
        f(range.start, offs);
        return;
    }
    let last = rank - 1;
    let inner = shape[last];
    let mut i = range.start;
    while i < range.end {
        // Run along the last dim without carries.
        let run = (inner - idx[last]).min(range.end - i);
        let mut o = offs;
        for _ in 0..run {
            f(i, o);
            for k in 0..N {
                o[k] = o[k].wrapping_add(strides[k][last]);
            }
            i += 1;
        }
        if i >= range.end {
            break;
        }
        // Carry into the outer dims.
        for k in 0..N {
            offs[k] = o[k].wrapping_sub(inner.wrapping_mul(strides[k][last]));
        }
        idx[last] = 0;
        let mut d = last;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for k in 0..N {
                offs[k] = offs[k].wrapping_add(strides[k][d]);
            }
            if idx[d] < shape[d] {
                break;
            }
            for k in 0..N {
                offs[k] = offs[k].wrapping_sub(shape[d].wrapping_mul(strides[k][d]));
            }
            idx[d] = 0;
        }
    }
}

/// Sizes or strides of a layout, inline up to rank 8 (no heap allocation on the op call path).
pub(crate) type Dims = smallvec::SmallVec<[usize; 8]>;

/// `shape` and the operands' `strides` with dimensions of one element dropped and neighbours
/// merged where every operand steps through them as one (`stride[d] == stride[d + 1] *
/// shape[d + 1]`, broadcast zeros included). Row-major order, hence every linear index, is
/// unchanged, and the last dimension is as long as it can be.
pub(crate) fn coalesce<const N: usize>(
    shape: &[usize],
    strides: [&[usize]; N],
) -> (Dims, [Dims; N]) {
    let mut out_shape = Dims::new();
    let mut out: [Dims; N] = std::array::from_fn(|_| Dims::new());
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        if let Some(&last) = out_shape.last() {
            let merge = (0..N).all(|k| out[k].last() == Some(&(strides[k][d].wrapping_mul(n))))
                && last != 0
                && n != 0;
            if merge {
                *out_shape.last_mut().expect("non-empty") = last * n;
                for k in 0..N {
                    *out[k].last_mut().expect("non-empty") = strides[k][d];
                }
                continue;
            }
        }
        out_shape.push(n);
        for k in 0..N {
            out[k].push(strides[k][d]);
        }
    }
    (out_shape, out)
}

/// Calls `f(offsets, len)` for each run along the last dimension within linear indices `range`
/// of `shape` (row-major): the run's `len` elements start at `offsets[k]` (`bases[k]` plus the
/// sum of index times stride) and step by `strides[k]`'s last entry. A rank-0 shape is one run
/// of one element. Pass a [`coalesce`]d layout for long runs.
#[inline]
pub(crate) fn walk_runs<const N: usize>(
    shape: &[usize],
    strides: [&[usize]; N],
    bases: [usize; N],
    range: Range<usize>,
    mut f: impl FnMut([usize; N], usize),
) {
    if range.is_empty() {
        return;
    }
    let Some(&inner) = shape.last() else {
        f(bases, 1);
        return;
    };
    let last = shape.len() - 1;
    walk(
        &shape[..last],
        strides.map(|s| &s[..last]),
        bases,
        range.start / inner..range.end.div_ceil(inner),
        |row, offs| {
            let (start, end) = (row * inner, (row + 1) * inner);
            let (lo, hi) = (start.max(range.start), end.min(range.end));
            let skip = lo - start;
            let mut o = offs;
            for k in 0..N {
                o[k] = o[k].wrapping_add(skip.wrapping_mul(strides[k][last]));
            }
            f(o, hi - lo);
        },
    );
}

/// Elements per parallel task.
pub(crate) const GRAIN: usize = 1 << 15;

/// The threads a host kernel may use: those of the worker pool it runs in, or one when it runs
/// serially (a small launch, see [`anyaccel_hal::host_serial`]) or outside any pool.
pub(crate) fn threads() -> usize {
    if anyaccel_hal::host_serial() || rayon::current_thread_index().is_none() {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Splits `0..n` into chunks of at least `grain` and runs `f` on each in parallel (in sequence
/// when the kernel has one thread).
pub(crate) fn par_ranges(
    n: usize,
    grain: usize,
    f: impl Fn(Range<usize>) -> Result<()> + Sync,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let threads = threads();
    let chunks = n.div_ceil(grain.max(1)).min(threads * 8).max(1);
    let per = n.div_ceil(chunks);
    if chunks == 1 {
        return f(0..n);
    }
    if threads == 1 {
        return (0..chunks).try_for_each(|c| f(c * per..((c + 1) * per).min(n)));
    }
    (0..chunks).into_par_iter().try_for_each(|c| {
        let start = c * per;
        let end = ((c + 1) * per).min(n);
        if start < end {
            f(start..end)
        } else {
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_takes_any_stride_of_a_one_element_dimension() {
        let mut seen = Vec::new();
        walk(&[3, 1, 2], [&[2, usize::MAX, 1]], [5], 0..6, |i, [o]| {
            seen.push((i, o))
        });
        assert_eq!(seen, [(0, 5), (1, 6), (2, 7), (3, 8), (4, 9), (5, 10)]);
    }

    #[test]
    fn runs_cover_every_offset_once() {
        // [2, 1, 3, 4] with b broadcast over the first and last dims; a transposed view.
        let shape = [2usize, 1, 3, 4];
        let sa = [12usize, 99, 4, 1];
        let sb = [0usize, 7, 1, 0];
        let so = [1usize, 5, 8, 2];
        let (cs, [ca, cb, co]) = coalesce(&shape, [&sa, &sb, &so]);
        assert_eq!(cs.as_slice(), [2, 3, 4]);
        for (start, end) in [(0, 24), (5, 19), (11, 12), (0, 1)] {
            let mut want = Vec::new();
            walk(&shape, [&sa, &sb, &so], [1, 2, 3], start..end, |_, o| {
                want.push(o)
            });
            let mut got = Vec::new();
            walk_runs(&cs, [&ca, &cb, &co], [1, 2, 3], start..end, |o, len| {
                for i in 0..len {
                    got.push([o[0] + i * ca[2], o[1] + i * cb[2], o[2] + i * co[2]]);
                }
            });
            assert_eq!(got, want, "{start}..{end}");
        }
        // Contiguous dims merge into one run; a rank-0 shape is one element.
        let (cs, [c]) = coalesce(&[4, 5, 6], [&[30, 6, 1]]);
        assert_eq!((cs.as_slice(), c.as_slice()), (&[120][..], &[1][..]));
        let mut n = 0;
        walk_runs(&[], [&[]], [9], 0..1, |o, len| {
            assert_eq!((o, len), ([9], 1));
            n += 1;
        });
        assert_eq!(n, 1);
    }

    #[test]
    fn walk_matches_offset_of_linear() {
        let shape = [3usize, 4, 5];
        let strides_a = [1usize, 3, 12];
        let strides_b = [0usize, 5, 1];
        for (start, end) in [(0, 60), (7, 33), (19, 20), (59, 60)] {
            let mut seen = Vec::new();
            walk(
                &shape,
                [&strides_a, &strides_b],
                [2, 0],
                start..end,
                |i, o| seen.push((i, o)),
            );
            assert_eq!(seen.len(), end - start);
            for (i, o) in seen {
                let (a, b, c) = (i / 20, (i / 5) % 4, i % 5);
                assert_eq!(o[0], 2 + a + 3 * b + 12 * c, "i={i}");
                assert_eq!(o[1], 5 * b + c, "i={i}");
            }
        }
        let mut n = 0;
        walk(&[], [&[]], [4], 0..1, |_, o| {
            assert_eq!(o[0], 4);
            n += 1
        });
        assert_eq!(n, 1);
    }
}
