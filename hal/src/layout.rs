//! Layout arithmetic in one place: element counts, spans, offsets, byte sizes and host transfer
//! lengths, all with checked arithmetic.
//!
//! Every path that turns a shape, strides or an offset into an amount of memory goes through
//! these functions: [`TensorDesc`](crate::TensorDesc) and [`Tensor`](crate::Tensor) in Rust, the
//! C ABI's tensors, DLPack import and export, and the backends. A value that does not fit is an
//! error naming the argument, never a wrapped number: a wrapped span is how a view that looks
//! small reaches outside its buffer.
//!
//! Limits that hold for every layout the layer accepts:
//! - at most [`MAX_RANK`] dimensions;
//! - the element count of the shape fits in `usize`;
//! - every byte count (a view's extent, a host transfer) is at most [`MAX_BYTES`], the largest
//!   object Rust (and C's `ptrdiff_t`) can address.

use crate::{DType, Error, Result};

/// The most dimensions a tensor may have (NumPy's and PyTorch's limit too). A C or DLPack caller
/// that passes more is refused before its shape array is read.
pub const MAX_RANK: usize = 64;

/// The largest byte count of any view, span or host transfer: `isize::MAX`.
pub const MAX_BYTES: usize = isize::MAX as usize;

/// Refuses a rank above [`MAX_RANK`].
pub fn check_rank(what: &str, rank: usize) -> Result<()> {
    if rank > MAX_RANK {
        return Err(Error::invalid_argument(format!(
            "{what}: {rank} dimensions: expected at most {MAX_RANK}"
        )));
    }
    Ok(())
}

/// Product of the dimensions, or an error naming `what` if it overflows.
pub fn checked_numel(what: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "{what}: shape {shape:?} has more elements than fit in usize"
            ))
        })
}

/// Elements from the first element to one past the furthest one that `shape` and `strides`
/// reach: `1 + sum((d - 1) * s)`, or 0 when the shape has no element. `None` on overflow.
pub fn span_elements(shape: &[usize], strides: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().zip(strides).try_fold(1usize, |acc, (&d, &s)| {
        acc.checked_add((d - 1).checked_mul(s)?)
    })
}

/// [`span_elements`] as a `Result` whose error names `what`, its shape and its strides.
pub fn checked_span(what: &str, shape: &[usize], strides: &[usize]) -> Result<usize> {
    span_elements(shape, strides).ok_or_else(|| {
        Error::invalid_argument(format!(
            "{what}: shape {shape:?} with strides {strides:?} reaches further than fits in usize: \
             expected (size - 1) * stride summed over the dimensions to fit"
        ))
    })
}

/// `elements` elements of `dtype` in bytes, refused above [`MAX_BYTES`].
pub fn elements_to_bytes(what: &str, elements: usize, dtype: DType) -> Result<usize> {
    elements
        .checked_mul(dtype.size_in_bytes())
        .filter(|&b| b <= MAX_BYTES)
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "{what}: {elements} elements of {dtype} are more than {MAX_BYTES} bytes: \
                 expected a size that fits in memory"
            ))
        })
}

/// `a + b`, or an error naming `what` when it does not fit in `usize`.
pub fn checked_add(what: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_add(b).ok_or_else(|| {
        Error::invalid_argument(format!(
            "{what}: {a} + {b} does not fit in usize: expected a smaller offset or size"
        ))
    })
}

/// A byte range `offset..offset + len` in an address space or allocation of `limit` bytes,
/// checked: its end must not overflow and must be at most `limit`.
pub fn check_range(what: &str, offset: usize, len: usize, limit: usize) -> Result<usize> {
    match offset.checked_add(len) {
        Some(end) if end <= limit => Ok(end),
        _ => Err(Error::out_of_bounds(format!(
            "{what}: bytes {offset}..{} reach past {limit}: expected a range inside it",
            offset as u128 + len as u128
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn spans_never_wrap() {
        assert_eq!(span_elements(&[2, 3], &[3, 1]), Some(6));
        assert_eq!(span_elements(&[4, 0], &[usize::MAX, 1]), Some(0));
        assert_eq!(span_elements(&[], &[]), Some(1));
        assert_eq!(span_elements(&[1, 1], &[usize::MAX, usize::MAX]), Some(1));
        // (3 * i64::MAX) alone overflows; so does the sum of terms that each fit.
        assert_eq!(span_elements(&[4, 3], &[i64::MAX as usize, 1]), None);
        assert_eq!(
            span_elements(&[2, 2, 2], &[usize::MAX / 2, usize::MAX / 2, 2]),
            None
        );
        // 4 * 2^62 = 2^64 wraps to 0 when multiplied unchecked.
        assert_eq!(span_elements(&[5, 1], &[1 << 62, 1]), None);
        let e = checked_span("t", &[5, 1], &[1 << 62, 1]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(
            e.message().contains("strides [4611686018427387904, 1]"),
            "{e}"
        );
    }

    #[test]
    fn byte_counts_stay_below_isize_max() {
        assert_eq!(elements_to_bytes("t", 6, DType::F32).unwrap(), 24);
        assert!(elements_to_bytes("t", 1 << 62, DType::F32).is_err());
        assert!(elements_to_bytes("t", (1 << 62) + 1, DType::F16).is_err());
        assert!(elements_to_bytes("t", MAX_BYTES, DType::U8).is_ok());
        assert!(elements_to_bytes("t", MAX_BYTES + 1, DType::U8).is_err());
        assert!(check_rank("t", MAX_RANK).is_ok());
        assert!(check_rank("t", MAX_RANK + 1)
            .unwrap_err()
            .message()
            .contains("at most 64"));
        assert_eq!(check_range("r", 2, 3, 5).unwrap(), 5);
        assert_eq!(
            check_range("r", usize::MAX, 2, usize::MAX)
                .unwrap_err()
                .code(),
            ErrorCode::OutOfBounds
        );
    }
}
