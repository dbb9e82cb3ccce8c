//! The geometry of an `attention` call (docs/ops.md 8.8): grouped-query heads, which keys each
//! query row sees (causal masking aligned to the top left or to the end of the keys, a sliding
//! window), and the soft cap of the logits. Validation and every dialect's launcher read it.

use std::ops::Range;

use anyaccel_hal::{shape_str, Error, Result, TensorDesc};

use crate::attrs::Attrs;

/// What an `attention` call computes, beyond its shapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Geometry {
    /// Query rows and keys.
    pub lq: usize,
    pub lk: usize,
    /// Query heads per key/value head (1 without grouped-query attention). The head dimension
    /// is the one before the rows; q's has `group` times k's size.
    pub group: usize,
    /// Causal masking.
    pub causal: bool,
    /// Added to a query row's index to give its position among the keys: 0 aligned to the
    /// top left, `lk - lq` aligned to the end of the keys (a KV cache).
    pub shift: i64,
    /// With `causal`, the keys `pos - window < j <= pos` only (0: no window).
    pub window: usize,
    /// Logits become `softcap * tanh(logit / softcap)` (0: none).
    pub softcap: f64,
}

impl Geometry {
    /// The geometry of a call with inputs `q`, `k` (and `v`, which follows `k`), validating the
    /// attributes against them.
    pub fn of(attrs: &Attrs<'_>, q: &TensorDesc, k: &TensorDesc) -> Result<Geometry> {
        let r = q.rank();
        let (lq, lk) = (q.shape[r - 2], k.shape[r - 2]);
        let group = if r >= 3 && k.shape[r - 3] > 0 {
            q.shape[r - 3] / k.shape[r - 3]
        } else {
            1
        };
        let causal = attrs.flag("causal", false)?;
        let shift = match attrs.str_or_default("causal_align")? {
            "bottom_right" => lk as i64 - lq as i64,
            _ => 0,
        };
        let window = attrs.int_or_default("window")?;
        let window = usize::try_from(window).map_err(|_| {
            Error::invalid_argument(format!("attention: window is {window}, expected >= 0"))
        })?;
        if window > 0 && !causal {
            return Err(Error::invalid_argument(format!(
                "attention: window is {window} but causal is 0: a sliding window needs causal = 1"
            )));
        }
        Ok(Geometry {
            lq,
            lk,
            group: group.max(1),
            causal,
            shift,
            window,
            softcap: attrs.float_or_default("softcap")?,
        })
    }

    /// The keys query row `i` sees (empty when the mask leaves it none: its output is 0).
    pub fn keys(&self, i: usize) -> Range<usize> {
        if !self.causal {
            return 0..self.lk;
        }
        let pos = i as i64 + self.shift;
        let end = (pos + 1).clamp(0, self.lk as i64) as usize;
        let start = if self.window > 0 {
            (pos + 1 - self.window as i64).clamp(0, end as i64) as usize
        } else {
            0
        };
        start..end
    }

    /// The logit after the soft cap.
    pub fn cap(&self, logit: f64) -> f64 {
        if self.softcap > 0.0 {
            self.softcap * (logit / self.softcap).tanh()
        } else {
            logit
        }
    }
}

/// The strides of an attention `mask` over the logits' shape `[q's dims but the last..., Lk]`
/// (zero along the dimensions it is broadcast over), or `InvalidArgument` when it does not
/// broadcast to that shape.
pub(crate) fn mask_strides(
    mask: &TensorDesc,
    q: &TensorDesc,
    k: &TensorDesc,
) -> Result<Vec<usize>> {
    let r = q.rank();
    let mut logits = q.shape[..r - 1].to_vec();
    logits.push(k.shape[r - 2]);
    let fits = mask.rank() <= logits.len()
        && mask
            .shape
            .iter()
            .rev()
            .zip(logits.iter().rev())
            .all(|(&m, &l)| m == l || m == 1);
    if !fits {
        return Err(Error::invalid_argument(format!(
            "attention: mask is {} but the logits are {} (q's dimensions but the last, then \
             k's {} keys): the mask must broadcast to them",
            shape_str(&mask.shape),
            shape_str(&logits),
            k.shape[r - 2]
        )));
    }
    let lead = logits.len() - mask.rank();
    let mut strides = vec![0; logits.len()];
    for i in 0..mask.rank() {
        if mask.shape[i] != 1 {
            strides[lead + i] = mask.strides[i];
        }
    }
    Ok(strides)
}

/// Checks the shapes of `q`, `k` and `v`: equal batch dimensions, except that the head
/// dimension (the one before the rows) of `k` and `v` may divide q's (grouped-query heads).
pub(crate) fn check_shapes(q: &TensorDesc, k: &TensorDesc, v: &TensorDesc) -> Result<()> {
    let r = q.rank();
    let shapes = || {
        format!(
            "q is {}, k is {}, v is {}",
            shape_str(&q.shape),
            shape_str(&k.shape),
            shape_str(&v.shape)
        )
    };
    if k.rank() != r || v.rank() != r || k.shape[..r - 2] != v.shape[..r - 2] {
        return Err(Error::invalid_argument(format!(
            "attention: {}: k and v must have q's rank and equal batch dimensions",
            shapes()
        )));
    }
    let heads = r.saturating_sub(3);
    let grouped = r >= 3
        && k.shape[r - 3] > 0
        && q.shape[r - 3].is_multiple_of(k.shape[r - 3])
        && q.shape[..heads] == k.shape[..heads];
    if q.shape[..r - 2] != k.shape[..r - 2] && !grouped {
        return Err(Error::invalid_argument(format!(
            "attention: {}: batch dimensions must be equal, except that k's and v's head \
             dimension (the one before the rows) may divide q's (grouped-query attention)",
            shapes()
        )));
    }
    Ok(())
}

/// The index space of an attention call's query rows, as the C and WGSL launchers walk it:
/// `dims` (q's dimensions but the last, the head dimension split into (key heads, group) for
/// grouped-query heads) and the strides of q and the output over them; `kv_dims` and the
/// strides of k and v over the batch part of `dims` (zero over the group: each key head
/// serves its group of query heads).
pub(crate) struct RowSpace {
    pub dims: Vec<usize>,
    pub q: Vec<usize>,
    pub out: Vec<usize>,
    pub kv_dims: Vec<usize>,
    pub k: Vec<usize>,
    pub v: Vec<usize>,
}

/// Strides `s` over q's dimensions but the last, as [`RowSpace::dims`] walks them (the head
/// dimension split into (key heads, group) for grouped-query heads).
pub(crate) fn row_strides(geo: &Geometry, q_rank: usize, s: &[usize]) -> Vec<usize> {
    let mut s = s[..q_rank - 1].to_vec();
    if geo.group > 1 {
        let h = q_rank - 3;
        s.splice(h..=h, [s[h] * geo.group, s[h]]);
    }
    s
}

impl RowSpace {
    /// The space of `q` (shape, strides), `out`'s strides and `k`'s and `v`'s strides.
    pub fn new(
        geo: &Geometry,
        q_shape: &[usize],
        q: &[usize],
        out: &[usize],
        k: &[usize],
        v: &[usize],
    ) -> RowSpace {
        let r = q_shape.len();
        let mut s = RowSpace {
            dims: q_shape[..r - 1].to_vec(),
            q: q[..r - 1].to_vec(),
            out: out[..r - 1].to_vec(),
            kv_dims: q_shape[..r - 2].to_vec(),
            k: k[..r - 2].to_vec(),
            v: v[..r - 2].to_vec(),
        };
        if geo.group > 1 {
            let h = r - 3;
            let g = geo.group;
            s.dims.splice(h..=h, [q_shape[h] / g, g]);
            s.kv_dims.splice(h..=h, [q_shape[h] / g, g]);
            s.q.splice(h..=h, [q[h] * g, q[h]]);
            s.out.splice(h..=h, [out[h] * g, out[h]]);
            s.k.splice(h..=h, [k[h], 0]);
            s.v.splice(h..=h, [v[h], 0]);
        }
        s
    }
}
