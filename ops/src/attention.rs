//! The geometry of an `attention` call (docs/ops.md 8.8): grouped-query heads, which keys each
//! query row sees (causal masking aligned to the top left or to the end of the keys, a sliding
//! window), and the soft cap of the logits. Validation and every dialect's launcher read it.

use std::ops::Range;

use anyaccel_hal::{shape_str, DType, Error, OpCall, Queue, Result, Tensor, TensorDesc};

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
            Error::invalid_argument(format!("{}: window is {window}, expected >= 0", attrs.op))
        })?;
        if window > 0 && !causal {
            return Err(Error::invalid_argument(format!(
                "{}: window is {window} but causal is 0: a sliding window needs causal = 1",
                attrs.op
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

/// Validates an `attention` (or `attention_backward`) call's q, k, v, mask and attributes, and
/// gives attention's output shape.
pub(crate) fn validate(
    op: &str,
    attrs: &Attrs<'_>,
    q: &TensorDesc,
    k: &TensorDesc,
    v: &TensorDesc,
    mask: Option<&TensorDesc>,
) -> Result<Vec<usize>> {
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        if t.rank() < 2 {
            return Err(Error::invalid_argument(format!(
                "{op}: {name} has shape {}, expected rank 2 or more",
                shape_str(&t.shape)
            )));
        }
    }
    let r = q.rank();
    check_shapes(op, q, k, v)?;
    if q.shape[r - 1] != k.shape[r - 1] {
        return Err(Error::invalid_argument(format!(
            "{op}: q's head dim is {} but k's is {}: they must match",
            q.shape[r - 1],
            k.shape[r - 1]
        )));
    }
    if k.shape[r - 2] != v.shape[r - 2] {
        return Err(Error::invalid_argument(format!(
            "{op}: k has {} keys but v has {} values: they must match",
            k.shape[r - 2],
            v.shape[r - 2]
        )));
    }
    if k.shape[r - 2] == 0 && q.shape[r - 2] > 0 {
        return Err(Error::invalid_argument(format!(
            "{op}: k has 0 keys; attention over no keys is undefined"
        )));
    }
    Geometry::of(attrs, q, k)?;
    if let Some(m) = mask {
        mask_strides(op, m, q, k)?;
    }
    let mut shape = q.shape.clone();
    shape[r - 1] = v.shape[r - 1];
    Ok(shape)
}

/// The strides of an attention `mask` over the logits' shape `[q's dims but the last..., Lk]`
/// (zero along the dimensions it is broadcast over), or `InvalidArgument` when it does not
/// broadcast to that shape.
pub(crate) fn mask_strides(
    op: &str,
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
            "{op}: mask is {} but the logits are {} (q's dimensions but the last, then k's {} \
             keys): the mask must broadcast to them",
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
pub(crate) fn check_shapes(op: &str, q: &TensorDesc, k: &TensorDesc, v: &TensorDesc) -> Result<()> {
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
            "{op}: {}: k and v must have q's rank and equal batch dimensions",
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
            "{op}: {}: batch dimensions must be equal, except that k's and v's head \
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

/// How an `attention_backward` kernel reads the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaskMode {
    None,
    Bool,
    Additive,
}

impl MaskMode {
    pub fn code(self) -> u8 {
        match self {
            MaskMode::None => 0,
            MaskMode::Bool => 1,
            MaskMode::Additive => 2,
        }
    }
}

/// The strides of a mask laid over the logits' shape `[outer.., heads, Lq, Lk]` as
/// (outer batch, head, query, key), the outer dims read as one: `None` when they have no single
/// stride. Rank 2 has neither outer dims nor heads, rank 3 no outer dims.
fn mask_dims(m: &TensorDesc) -> Option<[usize; 4]> {
    let r = m.rank();
    let (shape, st) = (&m.shape, &m.strides);
    let head = if r >= 3 { st[r - 3] } else { 0 };
    // The outer dims, last first: one stride when each one's stride is the next one's stride
    // times its size (size-1 dims read nothing).
    let mut outer: Option<(usize, usize)> = None; // (stride, elements so far)
    for a in (0..r.saturating_sub(3)).rev() {
        if shape[a] == 1 {
            continue;
        }
        outer = Some(match outer {
            None => (st[a], shape[a]),
            Some((s0, count)) => {
                if st[a] != s0.checked_mul(count)? {
                    return None;
                }
                (s0, count.checked_mul(shape[a])?)
            }
        });
    }
    Some([outer.map_or(0, |o| o.0), head, st[r - 2], st[r - 1]])
}

/// An `attention_backward` call as the C and WGSL kernels take it: q, grad, k and v contiguous
/// from the start of their buffers (q [R, D], grad [R, Dv], k [Bkv Lk, D], v [Bkv Lk, Dv]), the
/// mask in place with its strides (see `mask_dims`), and the gradients as zeroed f32 tensors of q's, k's and v's
/// shapes, cast into the outputs by [`Backward::finish`].
pub(crate) struct Backward {
    pub geo: Geometry,
    /// Query rows (batch times Lq) and key rows (key batch times Lk).
    pub rows: usize,
    pub keys: usize,
    pub d: usize,
    pub dv: usize,
    /// q's head count (1 for rank 2) and query heads per key head.
    pub hq: usize,
    pub scale: f64,
    pub mask_mode: MaskMode,
    /// The mask over the logits' shape (zero strides where it broadcasts) and its strides over
    /// (outer batch, head, query, key).
    pub mask: Option<(Tensor, [usize; 4])>,
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    pub g: Tensor,
    pub dq: Tensor,
    pub dk: Tensor,
    pub dv_t: Tensor,
}

impl Backward {
    /// Validates `call` and lays its operands out for the kernels.
    pub fn prepare(queue: &dyn Queue, call: &OpCall) -> Result<Backward> {
        let op = call.op.as_str();
        let attrs = Attrs::of(call)?;
        let input = |i: usize| {
            call.inputs
                .get(i)
                .and_then(|t| t.as_ref())
                .ok_or_else(|| Error::internal(format!("{op}: input {i} missing")))
        };
        let (g, q, k, v) = (input(0)?, input(1)?, input(2)?, input(3)?);
        let mask = call.inputs.get(4).and_then(|t| t.as_ref());
        validate(
            op,
            &attrs,
            q.desc(),
            k.desc(),
            v.desc(),
            mask.map(Tensor::desc),
        )?;
        let geo = Geometry::of(&attrs, q.desc(), k.desc())?;
        let r = q.rank();
        let (d, dv) = (q.shape()[r - 1], v.shape()[r - 1]);
        let scale = attrs.float_opt("scale")?.unwrap_or(1.0 / (d as f64).sqrt());
        let plain = |t: &Tensor| -> Result<Tensor> {
            let at_start = t.view().offset() == 0 && t.desc().offset == 0;
            if t.desc().is_contiguous() && at_start {
                Ok(t.clone())
            } else {
                Ok(crate::dispatch::call(queue, "copy", &[Some(t)], &[])?.remove(0))
            }
        };
        let (mask_mode, mask) = match mask {
            None => (MaskMode::None, None),
            Some(m) => {
                let mut shape = q.shape()[..r - 1].to_vec();
                shape.push(geo.lk);
                let desc = TensorDesc {
                    dtype: m.dtype(),
                    strides: mask_strides(op, m.desc(), q.desc(), k.desc())?,
                    shape,
                    offset: m.desc().offset,
                };
                let wide = Tensor::new(m.view().clone(), desc)?;
                // In place when the batch dims before the head read the mask with one stride,
                // else a contiguous copy (which always does).
                let (mask, strides) = match mask_dims(wide.desc()) {
                    Some(st) => (wide, st),
                    None => {
                        let full =
                            crate::dispatch::call(queue, "copy", &[Some(&wide)], &[])?.remove(0);
                        let st = mask_dims(full.desc()).ok_or_else(|| {
                            Error::internal(format!("{op}: a contiguous mask without strides"))
                        })?;
                        (full, st)
                    }
                };
                let mode = if m.dtype() == DType::Bool {
                    MaskMode::Bool
                } else {
                    MaskMode::Additive
                };
                (mode, Some((mask, strides)))
            }
        };
        let device = queue.device();
        let zeros = |shape: &[usize]| -> Result<Tensor> {
            let t = Tensor::empty(&*device, DType::F32, shape)?;
            if t.numel() > 0 {
                queue.fill(t.view(), &[0, 0, 0, 0])?;
            }
            Ok(t)
        };
        Ok(Backward {
            geo,
            rows: q.shape()[..r - 1].iter().product(),
            keys: k.shape()[..r - 1].iter().product(),
            d,
            dv,
            hq: if r >= 3 { q.shape()[r - 3] } else { 1 },
            scale,
            mask_mode,
            q: plain(q)?,
            k: plain(k)?,
            v: plain(v)?,
            g: plain(g)?,
            mask,
            dq: zeros(q.shape())?,
            dk: zeros(k.shape())?,
            dv_t: zeros(v.shape())?,
        })
    }

    /// Casts the f32 gradients into the call's outputs.
    pub fn finish(&self, queue: &dyn Queue, call: &OpCall) -> Result<()> {
        for (t, out) in [&self.dq, &self.dk, &self.dv_t]
            .into_iter()
            .zip(&call.outputs)
        {
            if out.numel() == 0 {
                continue;
            }
            let attrs = [(
                "dtype".to_string(),
                anyaccel_hal::AttrValue::Str(out.dtype().name().to_string()),
            )];
            crate::dispatch::call_into(queue, "cast", &[Some(t)], &[out], &attrs)?;
        }
        Ok(())
    }
}
