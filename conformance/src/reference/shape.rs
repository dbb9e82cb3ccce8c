//! Shared index arithmetic of the reference ops: axes, row-major indices, broadcasting and the
//! lines along an axis.

use anyaccel_hal::{shape_str, Result};

use super::{invalid, RefData, RefTensor};

/// A Python-style axis (negative counts from the end) as an index below `rank`.
pub(crate) fn normalize_axis(op: &str, name: &str, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis >= -r && axis < r {
        Ok(if axis < 0 { axis + r } else { axis } as usize)
    } else if rank == 0 {
        Err(invalid(
            op,
            format!("{name} {axis} is out of range for a rank-0 tensor, which has no axes"),
        ))
    } else {
        Err(invalid(
            op,
            format!(
                "{name} {axis} is out of range for rank {rank}, expected {}..={}",
                -r,
                r - 1
            ),
        ))
    }
}

/// Number of elements of a shape.
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The row-major multi-index of `linear` in `shape`.
pub(crate) fn unravel(mut linear: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            index[i] = linear % d;
            linear /= d;
        }
    }
    index
}

/// The row-major linear index of `index` in `shape`.
pub(crate) fn ravel(index: &[usize], shape: &[usize]) -> usize {
    index.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// The NumPy broadcast of the shapes of named arguments.
pub(crate) fn broadcast_shapes(op: &str, shapes: &[(&str, &[usize])]) -> Result<Vec<usize>> {
    let rank = shapes.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for k in 0..rank {
        // k-th dimension from the right.
        let mut size: Option<(usize, &str)> = None;
        for (name, s) in shapes {
            if k >= s.len() {
                continue;
            }
            let d = s[s.len() - 1 - k];
            if d == 1 {
                continue;
            }
            match size {
                None => size = Some((d, name)),
                Some((e, other)) if e != d => {
                    let listed: Vec<String> = shapes
                        .iter()
                        .map(|(n, s)| format!("{n} is {}", shape_str(s)))
                        .collect();
                    return Err(invalid(
                        op,
                        format!(
                            "cannot broadcast: {}; dimension -{} is {e} in {other} and {d} in {name}, \
                             expected equal sizes or 1",
                            listed.join(", "),
                            k + 1
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        out[rank - 1 - k] = size.map_or(1, |(d, _)| d);
    }
    Ok(out)
}

/// The linear index in `in_shape` of the element that broadcasts to `out_index`.
pub(crate) fn broadcast_source(out_index: &[usize], in_shape: &[usize]) -> usize {
    let skip = out_index.len() - in_shape.len();
    let mut linear = 0;
    for (k, &d) in in_shape.iter().enumerate() {
        let i = if d == 1 { 0 } else { out_index[skip + k] };
        linear = linear * d + i;
    }
    linear
}

/// The values of `t` broadcast to `shape` (which `broadcast_shapes` produced), row-major.
pub(crate) fn expand(t: &RefTensor, shape: &[usize]) -> RefData {
    if t.shape == shape {
        return t.data.clone();
    }
    let positions: Vec<usize> = (0..numel(shape))
        .map(|i| broadcast_source(&unravel(i, shape), &t.shape))
        .collect();
    t.data.select(&positions)
}

/// The row-major positions of line `line` along `axis` of `shape`, one per position along the
/// axis; lines are numbered row-major over the other axes.
pub(crate) fn line_positions(shape: &[usize], axis: usize, line: usize) -> Vec<usize> {
    let inner: usize = shape[axis + 1..].iter().product();
    let len = shape[axis];
    let (outer_i, inner_i) = (line / inner.max(1), line % inner.max(1));
    (0..len)
        .map(|t| (outer_i * len + t) * inner + inner_i)
        .collect()
}

/// Number of lines along `axis` of `shape`.
pub(crate) fn line_count(shape: &[usize], axis: usize) -> usize {
    shape[..axis].iter().product::<usize>() * shape[axis + 1..].iter().product::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_arithmetic() {
        assert_eq!(unravel(5, &[2, 3]), vec![1, 2]);
        assert_eq!(ravel(&[1, 2], &[2, 3]), 5);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
        assert_eq!(
            broadcast_shapes("t", &[("a", &[2, 1, 3]), ("b", &[4, 1])]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(
            broadcast_shapes("t", &[("a", &[0, 1]), ("b", &[1])]).unwrap(),
            vec![0, 1]
        );
        let e = broadcast_shapes("add", &[("a", &[2, 3]), ("b", &[4, 3])]).unwrap_err();
        assert!(
            e.message()
                .contains("dimension -2 is 2 in a and 4 in b, expected equal sizes or 1"),
            "{e}"
        );
        assert_eq!(broadcast_source(&[1, 2, 0], &[3, 1]), 2);
        assert_eq!(line_positions(&[2, 3, 2], 1, 3), vec![7, 9, 11]);
        assert_eq!(line_count(&[2, 3, 2], 1), 4);
        assert_eq!(normalize_axis("t", "axis", -1, 3).unwrap(), 2);
        let e = normalize_axis("t", "axis", 3, 3).unwrap_err();
        assert!(e.message().contains("expected -3..=2"), "{e}");
        let e = normalize_axis("t", "axis", 0, 0).unwrap_err();
        assert!(e.message().contains("rank-0"), "{e}");
    }
}
