//! Float ops of neural networks: `softmax`, `log_softmax`, `layer_norm`, `rms_norm`, `matmul`,
//! `rope`, `attention`.

use anyaccel_hal::{shape_str, Error, Result};

use super::{
    broadcast_shapes, broadcast_source, check_dtype, check_same_dtype, describe, invalid,
    line_count, line_positions, numel, unravel, Call, RefTensor, FLOAT_DTYPES,
};

/// `softmax` and `log_softmax` along `axis`, with the row's maximum subtracted first.
pub(crate) fn softmax(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    let axis = call.axis_attr("axis", Some(-1), x.rank())?;
    let v = x.to_f64_vec();
    let mut out = vec![0.0; v.len()];
    for line in 0..line_count(&x.shape, axis) {
        let positions = line_positions(&x.shape, axis, line);
        // f64::max skips NaN, but a NaN element still makes its exp, and so the sum, NaN. A row
        // holding +Inf gives Inf - Inf = NaN; a row of -Inf gives -Inf - -Inf = NaN.
        let m = positions
            .iter()
            .map(|&p| v[p])
            .fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = positions.iter().map(|&p| libm::exp(v[p] - m)).sum();
        for &p in &positions {
            out[p] = if op == "log_softmax" {
                (v[p] - m) - libm::log(s)
            } else {
                libm::exp(v[p] - m) / s
            };
        }
    }
    RefTensor::from_f64(x.dtype, &x.shape, out)
}

/// `softmax_backward(grad, y) = y * (grad - sum(grad * y))` and `log_softmax_backward(grad, y)
/// = grad - exp(y) * sum(grad)`, sums along `axis`; y is the forward op's output.
pub(crate) fn softmax_backward(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let g = call.input(0)?;
    let y = call.input(1)?;
    check_dtype(op, "grad", g.dtype, &FLOAT_DTYPES)?;
    check_same_dtype(op, "y", y, "grad", g)?;
    if g.shape != y.shape {
        return Err(invalid(
            op,
            format!(
                "{} but {}: shapes must be equal",
                describe("grad", g),
                describe("y", y)
            ),
        ));
    }
    let axis = call.axis_attr("axis", Some(-1), y.rank())?;
    let (gv, yv) = (g.to_f64_vec(), y.to_f64_vec());
    let mut out = vec![0.0; yv.len()];
    for line in 0..line_count(&y.shape, axis) {
        let positions = line_positions(&y.shape, axis, line);
        if op == "softmax_backward" {
            let s: f64 = positions.iter().map(|&p| gv[p] * yv[p]).sum();
            for &p in &positions {
                out[p] = yv[p] * (gv[p] - s);
            }
        } else {
            let s: f64 = positions.iter().map(|&p| gv[p]).sum();
            for &p in &positions {
                out[p] = gv[p] - libm::exp(yv[p]) * s;
            }
        }
    }
    RefTensor::from_f64(y.dtype, &y.shape, out)
}

/// The `eps` attribute of a norm: finite and >= 0.
fn eps_attr(call: &Call, default: f64) -> Result<f64> {
    let eps = call.float_attr("eps")?.unwrap_or(default);
    if eps.is_finite() && eps >= 0.0 {
        Ok(eps)
    } else {
        Err(invalid(
            call.op,
            format!("attribute `eps` is {eps}, expected a finite value >= 0"),
        ))
    }
}

/// Checks the optional 1-D parameter `arg` of a norm over the last axis of size `d`.
fn norm_param(
    call: &Call,
    i: usize,
    arg: &str,
    x: &RefTensor,
    d: usize,
) -> Result<Option<Vec<f64>>> {
    match call.optional(i) {
        None => Ok(None),
        Some(p) => {
            check_same_dtype(call.op, arg, p, "x", x)?;
            if p.shape != [d] {
                return Err(invalid(
                    call.op,
                    format!(
                        "{} but {}: expected a 1-D tensor of {d}, the size of x's last axis",
                        describe(arg, p),
                        describe("x", x)
                    ),
                ));
            }
            Ok(Some(p.to_f64_vec()))
        }
    }
}

/// The size of x's last axis, for the norms (x must have rank >= 1).
fn last_axis(op: &str, x: &RefTensor) -> Result<usize> {
    x.shape.last().copied().ok_or_else(|| {
        invalid(
            op,
            format!(
                "{}, expected rank >= 1 (the last axis is normalised)",
                describe("x", x)
            ),
        )
    })
}

/// `layer_norm(x, weight?, bias?)`: `(x - mean) / sqrt(var + eps) * w + b` over the last axis,
/// with the biased variance.
pub(crate) fn layer_norm(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    let d = last_axis(op, x)?;
    let weight = norm_param(call, 1, "weight", x, d)?;
    let bias = norm_param(call, 2, "bias", x, d)?;
    let eps = eps_attr(call, 1e-5)?;
    let v = x.to_f64_vec();
    let mut out = Vec::with_capacity(v.len());
    for row in v.chunks(d.max(1)) {
        let n = row.len() as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|&a| (a - mean) * (a - mean)).sum::<f64>() / n;
        let denom = libm::sqrt(var + eps);
        for (i, &a) in row.iter().enumerate() {
            let mut y = (a - mean) / denom;
            if let Some(w) = &weight {
                y *= w[i];
            }
            if let Some(b) = &bias {
                y += b[i];
            }
            out.push(y);
        }
    }
    RefTensor::from_f64(x.dtype, &x.shape, out)
}

/// `rms_norm(x, weight?)`: `x / sqrt(mean(x^2) + eps) * w` over the last axis.
pub(crate) fn rms_norm(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    let d = last_axis(op, x)?;
    let weight = norm_param(call, 1, "weight", x, d)?;
    let eps = eps_attr(call, 1e-6)?;
    let v = x.to_f64_vec();
    let mut out = Vec::with_capacity(v.len());
    for row in v.chunks(d.max(1)) {
        let mean_sq = row.iter().map(|&a| a * a).sum::<f64>() / row.len() as f64;
        let denom = libm::sqrt(mean_sq + eps);
        for (i, &a) in row.iter().enumerate() {
            let mut y = a / denom;
            if let Some(w) = &weight {
                y *= w[i];
            }
            out.push(y);
        }
    }
    RefTensor::from_f64(x.dtype, &x.shape, out)
}

/// Checks that `t` (argument `arg`) has rank >= `min`.
fn check_rank_at_least(op: &str, arg: &str, t: &RefTensor, min: usize, what: &str) -> Result<()> {
    if t.rank() >= min {
        return Ok(());
    }
    Err(invalid(
        op,
        format!("{}, expected rank >= {min} ({what})", describe(arg, t)),
    ))
}

/// `matmul(a [..., M, K], b [..., K, N], bias?)`, batch dims broadcast, bias added after.
pub(crate) fn matmul(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let a = call.input(0)?;
    let b = call.input(1)?;
    check_dtype(op, "a", a.dtype, &FLOAT_DTYPES)?;
    check_same_dtype(op, "b", b, "a", a)?;
    check_rank_at_least(op, "a", a, 2, "[..., M, K]")?;
    check_rank_at_least(op, "b", b, 2, "[..., K, N]")?;
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k) = (a.shape[ra - 2], a.shape[ra - 1]);
    let (kb, n) = (b.shape[rb - 2], b.shape[rb - 1]);
    if k != kb {
        return Err(invalid(
            op,
            format!(
                "a is {} but b is {}: inner dimensions must match ({k} vs {kb})",
                shape_str(&a.shape),
                shape_str(&b.shape)
            ),
        ));
    }
    let (batch_a, batch_b) = (&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let batch = broadcast_shapes(
        op,
        &[("a's batch dims", batch_a), ("b's batch dims", batch_b)],
    )?;
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    let bias = match call.optional(2) {
        None => None,
        Some(bias) => {
            check_same_dtype(op, "bias", bias, "a", a)?;
            let fits = broadcast_shapes(op, &[("bias", &bias.shape), ("out", &out_shape)])
                .map(|s| s == out_shape)
                .unwrap_or(false);
            if !fits {
                return Err(invalid(
                    op,
                    format!(
                        "{}, expected [N] = [{n}] or a shape that broadcasts to the output {} \
                         without enlarging it",
                        describe("bias", bias),
                        shape_str(&out_shape)
                    ),
                ));
            }
            Some(bias)
        }
    };
    let (av, bv) = (a.to_f64_vec(), b.to_f64_vec());
    let biasv = bias.map(|t| t.to_f64_vec());
    let mut out = Vec::with_capacity(numel(&out_shape));
    for bi in 0..numel(&batch) {
        let batch_index = unravel(bi, &batch);
        let a_base = broadcast_source(&batch_index, batch_a) * m * k;
        let b_base = broadcast_source(&batch_index, batch_b) * k * n;
        for i in 0..m {
            for j in 0..n {
                // An empty sum (K = 0) is 0.
                let mut s: f64 = (0..k)
                    .map(|p| av[a_base + i * k + p] * bv[b_base + p * n + j])
                    .sum();
                if let (Some(bt), Some(bvals)) = (bias, &biasv) {
                    let mut at = batch_index.clone();
                    at.extend([i, j]);
                    s += bvals[broadcast_source(&at, &bt.shape)];
                }
                out.push(s);
            }
        }
    }
    RefTensor::from_f64(a.dtype, &out_shape, out)
}

/// `rope(x [..., S, D], cos [S, D/2], sin [S, D/2])`, half-split or interleaved pairs.
pub(crate) fn rope(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    let cos = call.input(1)?;
    let sin = call.input(2)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    check_same_dtype(op, "cos", cos, "x", x)?;
    check_same_dtype(op, "sin", sin, "x", x)?;
    check_rank_at_least(op, "x", x, 2, "[..., S, D]")?;
    let r = x.rank();
    let (s_len, d) = (x.shape[r - 2], x.shape[r - 1]);
    if d % 2 != 0 {
        return Err(invalid(
            op,
            format!(
                "{}: the last dimension D = {d} must be even",
                describe("x", x)
            ),
        ));
    }
    let half = d / 2;
    for (arg, t) in [("cos", cos), ("sin", sin)] {
        if t.shape != [s_len, half] {
            return Err(invalid(
                op,
                format!(
                    "{} but {}: expected [S, D/2] = {}",
                    describe(arg, t),
                    describe("x", x),
                    shape_str(&[s_len, half])
                ),
            ));
        }
    }
    let interleaved = call.flag_attr("interleaved", false)?;
    let (xv, cv, sv) = (x.to_f64_vec(), cos.to_f64_vec(), sin.to_f64_vec());
    let mut out = vec![0.0; xv.len()];
    let rows = xv.len().checked_div(d).unwrap_or(0);
    for row in 0..rows {
        let s = row % s_len;
        let base = row * d;
        for i in 0..half {
            let (p1, p2) = if interleaved {
                (base + 2 * i, base + 2 * i + 1)
            } else {
                (base + i, base + i + half)
            };
            let (x1, x2) = (xv[p1], xv[p2]);
            let (c, sn) = (cv[s * half + i], sv[s * half + i]);
            out[p1] = x1 * c - x2 * sn;
            out[p2] = x2 * c + x1 * sn;
        }
    }
    RefTensor::from_f64(x.dtype, &x.shape, out)
}

/// `attention(q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv])`: softmax(q k^T * scale + mask) v.
/// Masked keys (j > i under `causal`) take no part in row i at all.
/// The shapes, attributes and expanded mask of an `attention` call whose q is input `first`
/// (k, v and the mask follow it).
struct AttnRef {
    batch: Vec<usize>,
    heads: usize,
    group: usize,
    lq: usize,
    lk: usize,
    d: usize,
    dv: usize,
    causal: bool,
    shift: i64,
    window: i64,
    softcap: f64,
    scale: f64,
    /// The mask expanded to the logits [batch..., Lq, Lk] (a false bool as -inf).
    mask: Option<Vec<f64>>,
    mask_bool: bool,
}

impl AttnRef {
    fn of(call: &Call, first: usize) -> Result<AttnRef> {
        let op = call.op;
        let q = call.input(first)?;
        let k = call.input(first + 1)?;
        let v = call.input(first + 2)?;
        check_dtype(op, "q", q.dtype, &FLOAT_DTYPES)?;
        check_same_dtype(op, "k", k, "q", q)?;
        check_same_dtype(op, "v", v, "q", q)?;
        check_rank_at_least(op, "q", q, 2, "[..., Lq, D]")?;
        check_rank_at_least(op, "k", k, 2, "[..., Lk, D]")?;
        check_rank_at_least(op, "v", v, 2, "[..., Lk, Dv]")?;
        let r = q.rank();
        let batch = &q.shape[..r - 2];
        // k and v: q's batch dimensions, except that their head dimension (the one before the
        // rows) may divide q's: grouped-query attention, query head h reading key head h / group.
        let kv_batch = &k.shape[..k.rank() - 2];
        let same_rank = k.rank() == r && v.rank() == r && &v.shape[..r - 2] == kv_batch;
        let grouped = same_rank
            && r >= 3
            && kv_batch[r - 3] > 0
            && batch[r - 3].is_multiple_of(kv_batch[r - 3])
            && batch[..r - 3] == kv_batch[..r - 3];
        if !same_rank || (kv_batch != batch && !grouped) {
            return Err(invalid(
                op,
                format!(
                    "{}, {} and {}: batch dims must be equal (k's and v's head dim may divide q's)",
                    describe("q", q),
                    describe("k", k),
                    describe("v", v)
                ),
            ));
        }
        let heads = if r >= 3 { batch[r - 3] } else { 1 };
        let group = if r >= 3 {
            heads / kv_batch[r - 3].max(1)
        } else {
            1
        };
        let (lq, d) = (q.shape[r - 2], q.shape[r - 1]);
        let (lk, dk) = (k.shape[r - 2], k.shape[r - 1]);
        let (lv, dv) = (v.shape[r - 2], v.shape[r - 1]);
        if dk != d {
            return Err(invalid(
                op,
                format!(
                    "{} but {}: the last dimensions (D) must match",
                    describe("k", k),
                    describe("q", q)
                ),
            ));
        }
        if lv != lk {
            return Err(invalid(
                op,
                format!(
                    "{} but {}: v needs one row per key (Lk)",
                    describe("v", v),
                    describe("k", k)
                ),
            ));
        }
        if lk == 0 && lq > 0 {
            return Err(invalid(
                op,
                format!(
                    "{} and {}: Lk = 0 keys for Lq = {lq} queries, expected at least 1 key",
                    describe("k", k),
                    describe("q", q)
                ),
            ));
        }
        let causal = call.flag_attr("causal", false)?;
        let scale = match call.float_attr("scale")? {
            Some(s) if s.is_finite() => s,
            Some(s) => {
                return Err(invalid(
                    op,
                    format!("attribute `scale` is {s}, expected a finite value"),
                ))
            }
            None => 1.0 / (d as f64).sqrt(),
        };
        // Where query row i sits among the keys: i (top left) or i + lk - lq (bottom right).
        let shift = match call.str_attr("causal_align")?.unwrap_or("top_left") {
            "top_left" => 0,
            "bottom_right" => lk as i64 - lq as i64,
            other => {
                return Err(invalid(
                    op,
                    format!(
                        "attribute `causal_align` is `{other}`, expected top_left or bottom_right"
                    ),
                ))
            }
        };
        let window = call.int_attr("window")?.unwrap_or(0);
        if window < 0 || (window > 0 && !causal) {
            return Err(invalid(
                op,
                format!("attribute `window` is {window}, expected 0, or > 0 with causal = 1"),
            ));
        }
        let softcap = call.float_attr("softcap")?.unwrap_or(0.0);
        if !(softcap.is_finite() && softcap >= 0.0) {
            return Err(invalid(
                op,
                format!("attribute `softcap` is {softcap}, expected a finite value >= 0"),
            ));
        }
        // The mask: bool (false: the key takes no part) or q's dtype (added to the logits),
        // broadcast to the logits [batch..., Lq, Lk].
        let mut logits_shape = batch.to_vec();
        logits_shape.extend([lq, lk]);
        let mask_bool = call
            .optional(first + 3)
            .is_some_and(|m| m.dtype == anyaccel_hal::DType::Bool);
        let mask: Option<Vec<f64>> = match call.optional(first + 3) {
            None => None,
            Some(m) => {
                if m.dtype != anyaccel_hal::DType::Bool {
                    check_same_dtype(op, "mask", m, "q", q)?;
                }
                let fits = broadcast_shapes(op, &[("mask", &m.shape), ("logits", &logits_shape)])
                    .map(|s| s == logits_shape)
                    .unwrap_or(false);
                if !fits {
                    return Err(invalid(
                        op,
                        format!(
                            "{}: expected a shape that broadcasts to the logits {}",
                            describe("mask", m),
                            shape_str(&logits_shape)
                        ),
                    ));
                }
                let values = m.to_f64_vec();
                let expanded = (0..numel(&logits_shape))
                    .map(|lin| {
                        let index = unravel(lin, &logits_shape);
                        let x = values[broadcast_source(&index, &m.shape)];
                        if m.dtype == anyaccel_hal::DType::Bool {
                            if x != 0.0 {
                                0.0
                            } else {
                                f64::NEG_INFINITY
                            }
                        } else {
                            x
                        }
                    })
                    .collect();
                Some(expanded)
            }
        };
        Ok(AttnRef {
            batch: batch.to_vec(),
            heads,
            group,
            lq,
            lk,
            d,
            dv,
            causal,
            shift,
            window,
            softcap,
            scale,
            mask,
            mask_bool,
        })
    }

    /// The key batch of query batch `bi` (query head h reads key head h / group).
    fn kv_batch(&self, bi: usize) -> usize {
        (bi / self.heads) * (self.heads / self.group) + (bi % self.heads) / self.group
    }

    /// The keys row i sees: all, or those at or before its position (and within the window
    /// after position - window).
    fn keys(&self, i: usize) -> std::ops::Range<usize> {
        let pos = i as i64 + self.shift;
        if !self.causal {
            return 0..self.lk;
        }
        let last = (pos + 1).clamp(0, self.lk as i64);
        let first = if self.window > 0 {
            (pos + 1 - self.window).clamp(0, last)
        } else {
            0
        };
        first as usize..last as usize
    }

    /// The logit of row i of batch bi for key j from the dot product of q_i and k_j, and the
    /// derivative of the soft cap there.
    fn logit(&self, bi: usize, i: usize, j: usize, dot: f64) -> (f64, f64) {
        let s = dot * self.scale;
        let (l, dcap) = if self.softcap > 0.0 {
            let t = libm::tanh(s / self.softcap);
            (self.softcap * t, 1.0 - t * t)
        } else {
            (s, 1.0)
        };
        let at = (bi * self.lq + i) * self.lk + j;
        let l = match &self.mask {
            // A false bool mask replaces the logit (even a NaN one) by -inf.
            Some(mv) if self.mask_bool && mv[at] < 0.0 => f64::NEG_INFINITY,
            Some(mv) => l + mv[at],
            None => l,
        };
        (l, dcap)
    }
}

/// The weights p_j of row i of batch bi over its keys (softmax of the logits; all 0 when the
/// row sees no key or every logit is -inf), with the soft cap's derivatives.
fn attention_weights(
    a: &AttnRef,
    qv: &[f64],
    kv: &[f64],
    bi: usize,
    i: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (d, lk, lq) = (a.d, a.lk, a.lq);
    let kb = a.kv_batch(bi) * lk * d;
    let (logits, dcaps): (Vec<f64>, Vec<f64>) = a
        .keys(i)
        .map(|j| {
            let dot: f64 = (0..d)
                .map(|c| qv[(bi * lq + i) * d + c] * kv[kb + j * d + c])
                .sum();
            a.logit(bi, i, j, dot)
        })
        .unzip();
    // A row whose every logit is -inf (every key masked) sees no key.
    if logits.iter().all(|&l| l == f64::NEG_INFINITY) {
        return (vec![0.0; logits.len()], dcaps);
    }
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|&l| libm::exp(l - m)).collect();
    let s: f64 = e.iter().sum();
    (e.iter().map(|x| x / s).collect(), dcaps)
}

pub(crate) fn attention(call: &Call) -> Result<RefTensor> {
    let a = AttnRef::of(call, 0)?;
    let (q, k, v) = (call.input(0)?, call.input(1)?, call.input(2)?);
    let (qv, kv, vv) = (q.to_f64_vec(), k.to_f64_vec(), v.to_f64_vec());
    let (lq, lk, dv) = (a.lq, a.lk, a.dv);
    let mut out_shape = a.batch.clone();
    out_shape.extend([lq, dv]);
    let mut out = Vec::with_capacity(numel(&out_shape));
    for bi in 0..numel(&a.batch) {
        let vb = a.kv_batch(bi) * lk * dv;
        for i in 0..lq {
            let (p, _) = attention_weights(&a, &qv, &kv, bi, i);
            for c in 0..dv {
                let y: f64 = a
                    .keys(i)
                    .zip(&p)
                    .map(|(j, pj)| pj * vv[vb + j * dv + c])
                    .sum();
                out.push(y);
            }
        }
    }
    RefTensor::from_f64(q.dtype, &out_shape, out)
}

/// `attention_backward`: dq, dk and dv of `attention` from the gradient of its output, in f64;
/// a weight of 0 adds nothing.
pub(crate) fn attention_backward(call: &Call) -> Result<Vec<RefTensor>> {
    let op = call.op;
    let a = AttnRef::of(call, 1)?;
    let (g, q, k, v) = (
        call.input(0)?,
        call.input(1)?,
        call.input(2)?,
        call.input(3)?,
    );
    check_same_dtype(op, "grad", g, "q", q)?;
    let mut out_shape = a.batch.clone();
    out_shape.extend([a.lq, a.dv]);
    if g.shape != out_shape {
        return Err(invalid(
            op,
            format!(
                "{}: expected attention's output shape {}",
                describe("grad", g),
                shape_str(&out_shape)
            ),
        ));
    }
    let (gv, qv, kv, vv) = (
        g.to_f64_vec(),
        q.to_f64_vec(),
        k.to_f64_vec(),
        v.to_f64_vec(),
    );
    let (lq, lk, d, dv) = (a.lq, a.lk, a.d, a.dv);
    let mut dq = vec![0.0; qv.len()];
    let mut dk = vec![0.0; kv.len()];
    let mut dvv = vec![0.0; vv.len()];
    for bi in 0..numel(&a.batch) {
        let kb = a.kv_batch(bi);
        for i in 0..lq {
            let (p, dcap) = attention_weights(&a, &qv, &kv, bi, i);
            let row = bi * lq + i;
            let keys: Vec<usize> = a.keys(i).collect();
            // dp_j = grad_i . v_j, and Di = sum_j p_j dp_j.
            let dp: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    (0..dv)
                        .map(|c| gv[row * dv + c] * vv[(kb * lk + j) * dv + c])
                        .sum()
                })
                .collect();
            let di: f64 = p
                .iter()
                .zip(&dp)
                .filter(|(&pj, _)| pj != 0.0)
                .map(|(pj, dpj)| pj * dpj)
                .sum();
            for (t, &j) in keys.iter().enumerate() {
                if p[t] == 0.0 {
                    continue;
                }
                let ds = p[t] * (dp[t] - di) * dcap[t] * a.scale;
                let key = kb * lk + j;
                for c in 0..d {
                    dq[row * d + c] += ds * kv[key * d + c];
                    dk[key * d + c] += ds * qv[row * d + c];
                }
                for c in 0..dv {
                    dvv[key * dv + c] += p[t] * gv[row * dv + c];
                }
            }
        }
    }
    Ok(vec![
        RefTensor::from_f64(q.dtype, &q.shape, dq)?,
        RefTensor::from_f64(q.dtype, &k.shape, dk)?,
        RefTensor::from_f64(q.dtype, &v.shape, dvv)?,
    ])
}

/// One per-dimension attribute of a convolution: absent gives `default`, one value stands for
/// every spatial dimension, else one per dimension; each at least `min`.
fn conv_param(
    call: &Call,
    name: &str,
    spatial: usize,
    default: i64,
    min: i64,
) -> Result<Vec<usize>> {
    let op = call.op;
    let v: Vec<i64> = match call.ints_attr(name)? {
        None => vec![default; spatial],
        Some([one]) => vec![*one; spatial],
        Some(v) if v.len() == spatial => v.to_vec(),
        Some(v) => {
            return Err(invalid(
                op,
                format!("{name} has {} values, expected 1 or {spatial}", v.len()),
            ))
        }
    };
    v.iter()
        .map(|&x| {
            if x < min {
                Err(invalid(
                    op,
                    format!("{name} is {v:?}, expected values >= {min}"),
                ))
            } else {
                usize::try_from(x)
                    .map_err(|_| invalid(op, format!("{name} value {x} does not fit in a size")))
            }
        })
        .collect()
}

/// A convolution's geometry, lifted to two spatial dimensions (a 1-D one has height 1).
struct ConvRef {
    sp: usize,
    n: usize,
    c: usize,
    o: usize,
    cg: usize,
    og: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    out: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl ConvRef {
    /// The forward convolution over x and weight shapes (checked as conv1d/conv2d check them).
    fn of(call: &Call, xs: &[usize], ws: &[usize]) -> Result<ConvRef> {
        let op = call.op;
        let sp = if op.contains("1d") { 1 } else { 2 };
        let (xf, wf) = if sp == 1 {
            ("[N, C, L]", "[O, C/groups, K]")
        } else {
            ("[N, C, H, W]", "[O, C/groups, KH, KW]")
        };
        for (arg, t, form) in [("x", xs, xf), ("weight", ws, wf)] {
            if t.len() != sp + 2 {
                return Err(invalid(
                    op,
                    format!("{arg} has shape {t:?}: expected rank {} ({form})", sp + 2),
                ));
            }
        }
        let groups = conv_groups(call)?;
        let stride = conv_param(call, "stride", sp, 1, 1)?;
        let padding = conv_param(call, "padding", sp, 0, 0)?;
        let dilation = conv_param(call, "dilation", sp, 1, 1)?;
        let (n, c, o, cg) = (xs[0], xs[1], ws[0], ws[1]);
        if cg.checked_mul(groups) != Some(c) {
            return Err(invalid(
                op,
                format!(
                    "x {xs:?} and weight {ws:?}: weight.shape[1] x groups ({groups}) must equal C"
                ),
            ));
        }
        if o % groups != 0 {
            return Err(invalid(
                op,
                format!("{o} output channels is not a multiple of groups = {groups}"),
            ));
        }
        let mut out_sp = Vec::with_capacity(sp);
        for d in 0..sp {
            let (len, k) = (xs[2 + d], ws[2 + d]);
            if k == 0 {
                return Err(invalid(op, format!("weight {ws:?}: kernel size 0")));
            }
            let padded = (len as u128) + 2 * (padding[d] as u128);
            if padded > i64::MAX as u128 {
                return Err(invalid(op, "the padded input exceeds 2^63 - 1"));
            }
            let extent = (dilation[d] as u128) * (k as u128 - 1) + 1;
            if extent > padded {
                return Err(invalid(
                    op,
                    format!("the kernel spans {extent} but the padded input is {padded}"),
                ));
            }
            out_sp.push(((padded - extent) / stride[d] as u128 + 1) as usize);
        }
        let mut out_shape = vec![n, o];
        out_shape.extend(&out_sp);
        count_of(op, &out_shape)?;
        Ok(ConvRef::lifted(
            sp,
            [n, c, o, groups],
            [&xs[2..], &ws[2..], &out_sp],
            [&stride, &padding, &dilation],
        ))
    }

    /// The geometry from per-op-dimension lists, lifted to two dimensions.
    fn lifted(
        sp: usize,
        [n, c, o, groups]: [usize; 4],
        [input, kernel, out]: [&[usize]; 3],
        [stride, padding, dilation]: [&[usize]; 3],
    ) -> ConvRef {
        let lift = |v: &[usize], one: usize| -> [usize; 2] {
            if sp == 1 {
                [one, v[0]]
            } else {
                [v[0], v[1]]
            }
        };
        ConvRef {
            sp,
            n,
            c,
            o,
            cg: c / groups,
            og: o / groups,
            input: lift(input, 1),
            kernel: lift(kernel, 1),
            out: lift(out, 1),
            stride: lift(stride, 1),
            padding: lift(padding, 0),
            dilation: lift(dilation, 1),
        }
    }

    fn shape(&self, lead: [usize; 2], sizes: [usize; 2]) -> Vec<usize> {
        let mut s = lead.to_vec();
        s.extend_from_slice(&sizes[2 - self.sp..]);
        s
    }

    /// Every (n, oc, oy, ox, ci, ky, kx, iy, ix) of the forward convolution whose input
    /// position lies inside the input, with the row-major indices of x, weight and out.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [ih, iw] = self.input;
        let [kh, kw] = self.kernel;
        let [oh, ow] = self.out;
        for nn in 0..self.n {
            for oc in 0..self.o {
                let grp = oc / self.og;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let oi = ((nn * self.o + oc) * oh + oy) * ow + ox;
                        for ci in 0..self.cg {
                            let ch = grp * self.cg + ci;
                            for ky in 0..kh {
                                let iy = (oy * self.stride[0] + ky * self.dilation[0]) as i128
                                    - self.padding[0] as i128;
                                if iy < 0 || iy >= ih as i128 {
                                    continue;
                                }
                                for kx in 0..kw {
                                    let ix = (ox * self.stride[1] + kx * self.dilation[1]) as i128
                                        - self.padding[1] as i128;
                                    if ix < 0 || ix >= iw as i128 {
                                        continue;
                                    }
                                    let xi =
                                        ((nn * self.c + ch) * ih + iy as usize) * iw + ix as usize;
                                    let wi = ((oc * self.cg + ci) * kh + ky) * kw + kx;
                                    f(xi, wi, oi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn conv_groups(call: &Call) -> Result<usize> {
    let op = call.op;
    let groups = call.int_attr("groups")?.unwrap_or(1);
    if groups < 1 {
        return Err(invalid(op, format!("groups is {groups}, expected >= 1")));
    }
    usize::try_from(groups)
        .map_err(|_| invalid(op, format!("groups {groups} does not fit in a size")))
}

fn count_of(op: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid(op, "the result's element count overflows"))
}

/// `conv1d` and `conv2d`: cross-correlation with zero padding, stride, dilation and groups,
/// summed in f64 (PyTorch's `conv1d` / `conv2d`).
pub(crate) fn conv(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    let w = call.input(1)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    check_same_dtype(op, "weight", w, "x", x)?;
    let g = ConvRef::of(call, &x.shape, &w.shape)?;
    let bias = conv_bias(call, x, g.o)?;
    let out_shape = g.shape([g.n, g.o], g.out);
    let plane = g.out[0] * g.out[1];
    let mut out: Vec<f64> = (0..out_shape.iter().product::<usize>())
        .map(|i| bias.as_ref().map_or(0.0, |b| b[i / plane % g.o]))
        .collect();
    let (xv, wv) = (x.to_f64_vec(), w.to_f64_vec());
    g.for_each_tap(|xi, wi, oi| out[oi] += xv[xi] * wv[wi]);
    RefTensor::from_f64(x.dtype, &out_shape, out)
}

/// The optional bias (input 2) of a convolution with `channels` result channels.
fn conv_bias(call: &Call, x: &RefTensor, channels: usize) -> Result<Option<Vec<f64>>> {
    let op = call.op;
    match call.optional(2) {
        Some(b) => {
            check_same_dtype(op, "bias", b, "x", x)?;
            if b.shape != [channels] {
                return Err(invalid(
                    op,
                    format!("{}: expected [{channels}]", describe("bias", b)),
                ));
            }
            Ok(Some(b.to_f64_vec()))
        }
        None => Ok(None),
    }
}

/// `conv_transpose1d/2d`: the input gradient of the convolution with the same weight, x in
/// the place of the output, plus the bias; its output size per dimension is (in - 1) stride -
/// 2 padding + dilation (k - 1) + output_padding + 1 (PyTorch's `conv_transpose1d/2d`).
pub(crate) fn conv_transpose(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    let w = call.input(1)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    check_same_dtype(op, "weight", w, "x", x)?;
    let sp = if op.ends_with("1d") { 1 } else { 2 };
    for (arg, t) in [("x", x), ("weight", w)] {
        if t.rank() != sp + 2 {
            return Err(invalid(
                op,
                format!("{}: expected rank {}", describe(arg, t), sp + 2),
            ));
        }
    }
    let groups = conv_groups(call)?;
    let stride = conv_param(call, "stride", sp, 1, 1)?;
    let padding = conv_param(call, "padding", sp, 0, 0)?;
    let out_pad = conv_param(call, "output_padding", sp, 0, 0)?;
    let dilation = conv_param(call, "dilation", sp, 1, 1)?;
    let (n, cin) = (x.shape[0], x.shape[1]);
    if w.shape[0] != cin || cin % groups != 0 {
        return Err(invalid(
            op,
            format!(
                "{} and {}: weight.shape[0] must be C_in, a multiple of groups = {groups}",
                describe("x", x),
                describe("weight", w)
            ),
        ));
    }
    let cout = w.shape[1]
        .checked_mul(groups)
        .ok_or_else(|| invalid(op, "C_out overflows"))?;
    let mut sizes = Vec::with_capacity(sp);
    for d in 0..sp {
        let (len, k) = (x.shape[2 + d], w.shape[2 + d]);
        if k == 0 || len == 0 {
            return Err(invalid(op, "kernel and input sizes must be >= 1"));
        }
        if out_pad[d] >= stride[d].max(dilation[d]) {
            return Err(invalid(
                op,
                format!("output_padding {out_pad:?} must be below the stride or the dilation"),
            ));
        }
        let size = (len as i128 - 1) * stride[d] as i128 - 2 * padding[d] as i128
            + dilation[d] as i128 * (k as i128 - 1)
            + out_pad[d] as i128
            + 1;
        if size < 1 || size > i64::MAX as i128 {
            return Err(invalid(op, format!("output size {size}")));
        }
        sizes.push(size as usize);
    }
    let bias = conv_bias(call, x, cout)?;
    let g = ConvRef::lifted(
        sp,
        [n, cout, cin, groups],
        [&sizes, &w.shape[2..], &x.shape[2..]],
        [&stride, &padding, &dilation],
    );
    let out_shape = g.shape([n, cout], g.input);
    count_of(op, &out_shape)?;
    let plane = g.input[0] * g.input[1];
    let mut out: Vec<f64> = (0..out_shape.iter().product::<usize>())
        .map(|i| bias.as_ref().map_or(0.0, |b| b[i / plane % cout]))
        .collect();
    let (yv, wv) = (x.to_f64_vec(), w.to_f64_vec());
    g.for_each_tap(|xi, wi, oi| out[xi] += yv[oi] * wv[wi]);
    RefTensor::from_f64(x.dtype, &out_shape, out)
}

/// `conv{1,2}d_backward_input` (grad, weight -> dx of shape `input_size`) and
/// `conv{1,2}d_backward_weight` (grad, x -> dweight of shape `weight_size`): the gradients of
/// the convolution, summed in f64 (PyTorch's `torch.nn.grad.conv{1,2}d_input/_weight`).
pub(crate) fn conv_backward(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let grad = call.input(0)?;
    let other = call.input(1)?;
    check_dtype(op, "grad", grad.dtype, &FLOAT_DTYPES)?;
    check_same_dtype(op, "the second input", other, "grad", grad)?;
    let data = op.ends_with("_input");
    let name = if data { "input_size" } else { "weight_size" };
    let size: Vec<usize> = call
        .ints_attr(name)?
        .ok_or_else(|| invalid(op, format!("{name} is required")))?
        .iter()
        .map(|&v| usize::try_from(v).map_err(|_| invalid(op, format!("{name}: {v} < 0"))))
        .collect::<Result<_>>()?;
    count_of(op, &size)?;
    let g = if data {
        ConvRef::of(call, &size, &other.shape)?
    } else {
        ConvRef::of(call, &other.shape, &size)?
    };
    if grad.shape != g.shape([g.n, g.o], g.out) {
        return Err(invalid(
            op,
            format!(
                "{}: expected the convolution's output shape {:?}",
                describe("grad", grad),
                g.shape([g.n, g.o], g.out)
            ),
        ));
    }
    let (gv, ov) = (grad.to_f64_vec(), other.to_f64_vec());
    let mut out = vec![0.0; size.iter().product()];
    if data {
        g.for_each_tap(|xi, wi, oi| out[xi] += gv[oi] * ov[wi]);
    } else {
        g.for_each_tap(|xi, wi, oi| out[wi] += gv[oi] * ov[xi]);
    }
    RefTensor::from_f64(grad.dtype, &size, out)
}

/// `max_pool1d/2d` (values and i64 plane indices) and `avg_pool1d/2d`, in f64 (PyTorch's
/// pools; docs/ops.md 8.12).
pub(crate) fn pool(call: &Call) -> Result<Vec<RefTensor>> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    let g = PoolRef::of(call, &x.shape)?;
    let xv = x.to_f64_vec();
    let (mut vals, mut idx) = (Vec::new(), Vec::new());
    for plane in 0..g.planes {
        let base = plane * g.input[0] * g.input[1];
        for oy in 0..g.out[0] {
            for ox in 0..g.out[1] {
                let taps = g.window(oy, ox);
                if g.max {
                    // The largest tap, the first NaN winning; ties to the first tap.
                    let (mut best, mut at) = (f64::NEG_INFINITY, -1i64);
                    for (pos, _) in taps {
                        let v = xv[base + pos];
                        if v.is_nan() {
                            (best, at) = (v, pos as i64);
                            break;
                        }
                        if v > best || at < 0 {
                            (best, at) = (v, pos as i64);
                        }
                    }
                    vals.push(best);
                    idx.push(at);
                } else {
                    vals.push(taps.iter().map(|&(pos, w)| w * xv[base + pos]).sum());
                }
            }
        }
    }
    let out_shape = g.out_shape();
    let mut result = vec![RefTensor::from_f64(x.dtype, &out_shape, vals)?];
    if g.max {
        result.push(RefTensor::from_i64(
            anyaccel_hal::DType::I64,
            &out_shape,
            idx,
        )?);
    }
    Ok(result)
}

/// A pool's geometry over x, lifted to two spatial dimensions (a 1-D pool has height 1).
struct PoolRef {
    sp: usize,
    max: bool,
    n: usize,
    c: usize,
    planes: usize,
    input: [usize; 2],
    out: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    count_pad: bool,
}

impl PoolRef {
    /// The geometry of `call`'s pool (forward or gradient) over x of shape `xs`.
    fn of(call: &Call, xs: &[usize]) -> Result<PoolRef> {
        let op = call.op;
        let sp = if op.contains("1d") { 1 } else { 2 };
        let max = op.starts_with("max");
        if xs.len() != sp + 2 {
            return Err(invalid(
                op,
                format!("x has shape {xs:?}: expected rank {}", sp + 2),
            ));
        }
        if call.ints_attr("kernel_size")?.is_none() {
            return Err(invalid(op, "attribute `kernel_size` is required"));
        }
        let kernel = conv_param(call, "kernel_size", sp, 1, 1)?;
        let stride = match call.ints_attr("stride")? {
            Some(v) if !v.is_empty() => conv_param(call, "stride", sp, 1, 1)?,
            _ => kernel.clone(),
        };
        let padding = conv_param(call, "padding", sp, 0, 0)?;
        let dilation = if max {
            conv_param(call, "dilation", sp, 1, 1)?
        } else {
            vec![1; sp]
        };
        let ceil = call.flag_attr("ceil_mode", false)?;
        let count_pad = !max && call.flag_attr("count_include_pad", true)?;
        let mut outs = Vec::with_capacity(sp);
        for d in 0..sp {
            let (len, k, s, p, dl) = (
                xs[2 + d] as u128,
                kernel[d] as u128,
                stride[d] as u128,
                padding[d] as u128,
                dilation[d] as u128,
            );
            if p > k / 2 {
                return Err(invalid(
                    op,
                    format!("padding {p} is more than half the kernel {k}"),
                ));
            }
            let padded = len + 2 * p;
            let extent = dl * (k - 1) + 1;
            if padded > i64::MAX as u128 || extent > padded {
                return Err(invalid(
                    op,
                    format!("the window spans {extent} but the padded input is {padded}"),
                ));
            }
            let span = padded - extent;
            let mut o = if ceil {
                span.div_ceil(s) + 1
            } else {
                span / s + 1
            };
            if ceil && (o - 1) * s >= len + p {
                o -= 1;
            }
            outs.push(o as usize);
        }
        let mut out_shape = vec![xs[0], xs[1]];
        out_shape.extend(&outs);
        count_of(op, &out_shape)?;
        let two = |v: &[usize], one: usize| -> [usize; 2] {
            if sp == 1 {
                [one, v[0]]
            } else {
                [v[0], v[1]]
            }
        };
        Ok(PoolRef {
            sp,
            max,
            n: xs[0],
            c: xs[1],
            planes: xs[0] * xs[1],
            input: two(&xs[2..], 1),
            out: two(&outs, 1),
            kernel: two(&kernel, 1),
            stride: two(&stride, 1),
            padding: two(&padding, 0),
            dilation: two(&dilation, 1),
            count_pad,
        })
    }

    fn out_shape(&self) -> Vec<usize> {
        let mut s = vec![self.n, self.c];
        s.extend_from_slice(&self.out[2 - self.sp..]);
        s
    }

    /// The plane positions (iy * W + ix) that output (oy, ox) reads, in window order, each with
    /// its weight: 1 for a max pool, 1 / divisor for an average.
    fn window(&self, oy: usize, ox: usize) -> Vec<(usize, f64)> {
        let [ih, iw] = self.input;
        let y0 = (oy * self.stride[0]) as i64 - self.padding[0] as i64;
        let x0 = (ox * self.stride[1]) as i64 - self.padding[1] as i64;
        let mut taps = Vec::new();
        for ky in 0..self.kernel[0] {
            let iy = y0 + (ky * self.dilation[0]) as i64;
            if iy < 0 || iy >= ih as i64 {
                continue;
            }
            for kx in 0..self.kernel[1] {
                let ix = x0 + (kx * self.dilation[1]) as i64;
                if ix >= 0 && ix < iw as i64 {
                    taps.push((iy as usize * iw + ix as usize, 1.0));
                }
            }
        }
        if !self.max {
            let divisor = if self.count_pad {
                let ye = (y0 + self.kernel[0] as i64).min((ih + self.padding[0]) as i64);
                let xe = (x0 + self.kernel[1] as i64).min((iw + self.padding[1]) as i64);
                ((ye - y0) * (xe - x0)) as f64
            } else {
                taps.len() as f64
            };
            for t in &mut taps {
                t.1 = 1.0 / divisor;
            }
        }
        taps
    }
}

/// `adaptive_avg_pool2d` and `interpolate` (nearest, bilinear, bicubic), in f64 with window
/// bounds and source positions as exact fractions (bicubic: PyTorch's formula in f64;
/// docs/ops.md 8.13).
pub(crate) fn resample(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    if x.rank() != 4 {
        return Err(invalid(
            op,
            format!("{}: expected rank 4 ([N, C, H, W])", describe("x", x)),
        ));
    }
    let size_name = if op == "adaptive_avg_pool2d" {
        "output_size"
    } else {
        "size"
    };
    if call.ints_attr(size_name)?.is_none() {
        return Err(invalid(op, format!("attribute `{size_name}` is required")));
    }
    let outs = conv_param(call, size_name, 2, 1, 1)?;
    let g = ResampleRef::of(call, &x.shape, [outs[0], outs[1]])?;
    let xv = x.to_f64_vec();
    let [ih, iw] = g.input;
    let mut vals = Vec::with_capacity(g.planes * g.out[0] * g.out[1]);
    for plane in 0..g.planes {
        for oy in 0..g.out[0] {
            for ox in 0..g.out[1] {
                let taps = g.taps(oy, ox);
                vals.push(
                    taps.iter()
                        .map(|&(iy, ix, w)| w * xv[(plane * ih + iy) * iw + ix])
                        .sum(),
                );
            }
        }
    }
    RefTensor::from_f64(x.dtype, &[x.shape[0], x.shape[1], g.out[0], g.out[1]], vals)
}

/// The required `input_size` attribute of a gradient, as sizes.
fn input_size_attr(call: &Call) -> Result<Vec<usize>> {
    let op = call.op;
    call.ints_attr("input_size")?
        .ok_or_else(|| invalid(op, "input_size is required"))?
        .iter()
        .map(|&v| usize::try_from(v).map_err(|_| invalid(op, format!("input_size: {v} < 0"))))
        .collect()
}

/// `adaptive_avg_pool3d` (x [N, C, D, H, W] to [N, C, OD, OH, OW]) and its gradient: the mean
/// over the box of windows floor(i D / OD) .. ceil((i + 1) D / OD) (and so for H and W), in f64;
/// the gradient gives each element of its box grad / (the box's element count).
pub(crate) fn adaptive_avg_pool3d(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let backward = op.ends_with("_backward");
    let t = call.input(0)?;
    check_dtype(
        op,
        if backward { "grad" } else { "x" },
        t.dtype,
        &FLOAT_DTYPES,
    )?;
    if t.rank() != 5 {
        return Err(invalid(
            op,
            format!(
                "{}: expected rank 5",
                describe(if backward { "grad" } else { "x" }, t)
            ),
        ));
    }
    let (xs, out): (Vec<usize>, Vec<usize>) = if backward {
        let size = input_size_attr(call)?;
        if size.len() != 5 || t.shape[..2] != size[..2] || t.shape[2..].contains(&0) {
            return Err(invalid(
                op,
                format!(
                    "{} with input_size {size:?}: expected [N, C, OD, OH, OW], OD, OH, OW >= 1",
                    describe("grad", t)
                ),
            ));
        }
        (size, t.shape[2..].to_vec())
    } else {
        if call.ints_attr("output_size")?.is_none() {
            return Err(invalid(op, "attribute `output_size` is required"));
        }
        (t.shape.clone(), conv_param(call, "output_size", 3, 1, 1)?)
    };
    count_of(op, &xs)?;
    if xs[0] * xs[1] > 0 && xs[2..].contains(&0) {
        return Err(invalid(
            op,
            format!("x of shape {xs:?}: expected D, H, W >= 1"),
        ));
    }
    let (planes, ins) = (xs[0] * xs[1], [xs[2], xs[3], xs[4]]);
    let outs = [out[0], out[1], out[2]];
    count_of(op, &[planes, outs[0], outs[1], outs[2]])?;
    let window = |d: usize, o: usize| (o * ins[d] / outs[d], ((o + 1) * ins[d]).div_ceil(outs[d]));
    let v = t.to_f64_vec();
    let (isz, osz) = (ins[0] * ins[1] * ins[2], outs[0] * outs[1] * outs[2]);
    let mut res = vec![0.0; planes * if backward { isz } else { osz }];
    for p in 0..planes {
        for od in 0..outs[0] {
            for oh in 0..outs[1] {
                for ow in 0..outs[2] {
                    let ((d0, d1), (h0, h1), (w0, w1)) =
                        (window(0, od), window(1, oh), window(2, ow));
                    let count = ((d1 - d0) * (h1 - h0) * (w1 - w0)) as f64;
                    let o = p * osz + (od * outs[1] + oh) * outs[2] + ow;
                    let mut sum = 0.0;
                    for d in d0..d1 {
                        for h in h0..h1 {
                            for w in w0..w1 {
                                let i = p * isz + (d * ins[1] + h) * ins[2] + w;
                                if backward {
                                    res[i] += v[o] / count;
                                } else {
                                    sum += v[i];
                                }
                            }
                        }
                    }
                    if !backward {
                        res[o] = sum / count;
                    }
                }
            }
        }
    }
    let shape = if backward {
        xs
    } else {
        vec![xs[0], xs[1], outs[0], outs[1], outs[2]]
    };
    RefTensor::from_f64(t.dtype, &shape, res)
}

/// An `adaptive_avg_pool2d` or `interpolate` geometry over x [N, C, H, W].
struct ResampleRef {
    adaptive: bool,
    nearest: bool,
    cubic: bool,
    align: bool,
    planes: usize,
    input: [usize; 2],
    out: [usize; 2],
}

impl ResampleRef {
    /// The geometry of `call`'s op (forward or gradient) over x of shape `xs` with output
    /// sizes `out`.
    fn of(call: &Call, xs: &[usize], out: [usize; 2]) -> Result<ResampleRef> {
        let op = call.op;
        let adaptive = op.starts_with("adaptive_avg_pool2d");
        let (mut nearest, mut cubic, mut align) = (false, false, false);
        if !adaptive {
            align = call.flag_attr("align_corners", false)?;
            match call.str_attr("mode")?.unwrap_or("nearest") {
                "nearest" if align => {
                    return Err(invalid(
                        op,
                        "align_corners = 1 needs mode bilinear or bicubic",
                    ));
                }
                "nearest" => nearest = true,
                "bilinear" => {}
                "bicubic" => cubic = true,
                other => {
                    return Err(invalid(
                        op,
                        format!(
                            "attribute `mode` is `{other}`, expected nearest, bilinear or bicubic"
                        ),
                    ))
                }
            }
        }
        let (n, c, ih, iw) = (xs[0], xs[1], xs[2], xs[3]);
        if n * c > 0 && (ih == 0 || iw == 0) {
            return Err(invalid(
                op,
                format!("x has shape {xs:?}: expected H and W >= 1"),
            ));
        }
        for (o, i) in [(out[0], ih), (out[1], iw)] {
            if (2 * o as u128 + 1) * (i.max(1) as u128) > i64::MAX as u128 {
                return Err(invalid(op, "the source positions overflow"));
            }
        }
        count_of(op, &[n, c, out[0], out[1]])?;
        Ok(ResampleRef {
            adaptive,
            nearest,
            cubic,
            align,
            planes: n * c,
            input: [ih, iw],
            out,
        })
    }

    /// Bilinear source position of output index i: a fraction num / den, as (i0, i1, l).
    fn tap(&self, i: usize, len: usize, out: usize) -> (usize, usize, f64) {
        let (num, den) = if self.align {
            if out > 1 {
                (i as u128 * (len as u128 - 1), out as u128 - 1)
            } else {
                (0, 1)
            }
        } else {
            (
                ((2 * i as u128 + 1) * len as u128).saturating_sub(out as u128),
                2 * out as u128,
            )
        };
        let i0 = ((num / den) as usize).min(len - 1);
        let l = ((num - i0 as u128 * den) as f64 / den as f64).min(1.0);
        (i0, (i0 + 1).min(len - 1), l)
    }

    /// Bicubic: the four input indices (clamped to the edge) that output index i reads, with
    /// their weights: PyTorch's `upsample_bicubic2d`, the source position in f64 (cubic
    /// convolution is continuous, so rounding at a whole position changes nothing).
    fn cubic_taps(&self, i: usize, len: usize, out: usize) -> [(usize, f64); 4] {
        let src = if self.align {
            if out > 1 {
                i as f64 * (len as f64 - 1.0) / (out as f64 - 1.0)
            } else {
                0.0
            }
        } else {
            (i as f64 + 0.5) * len as f64 / out as f64 - 0.5
        };
        let base = src.floor();
        let t = src - base;
        let a = -0.75;
        let near = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
        let far = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
        let w = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        std::array::from_fn(|k| {
            let at = (base as i64 + k as i64 - 1).clamp(0, len as i64 - 1);
            (at as usize, w[k])
        })
    }

    /// The input positions (iy, ix) whose gradient output (oy, ox) adds to, with their
    /// weights: its taps, except that a bicubic tap's clamped duplicates in one dimension count
    /// once with their weights' sum (docs/ops.md 8.13: with an infinite gradient, a zero
    /// weight among them then gives no NaN).
    fn grad_taps(&self, oy: usize, ox: usize) -> Vec<(usize, usize, f64)> {
        if !self.cubic {
            return self.taps(oy, ox);
        }
        let merged = |taps: [(usize, f64); 4]| {
            let mut m: Vec<(usize, f64)> = Vec::with_capacity(4);
            for (i, w) in taps {
                match m.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, sum)) => *sum += w,
                    None => m.push((i, w)),
                }
            }
            m
        };
        let ([ih, iw], [oh, ow]) = (self.input, self.out);
        let ys = merged(self.cubic_taps(oy, ih, oh));
        let xs = merged(self.cubic_taps(ox, iw, ow));
        ys.iter()
            .flat_map(|&(iy, wy)| xs.iter().map(move |&(ix, wx)| (iy, ix, wy * wx)))
            .collect()
    }

    /// The input positions (iy, ix) that output (oy, ox) reads, with their weights.
    fn taps(&self, oy: usize, ox: usize) -> Vec<(usize, usize, f64)> {
        let ([ih, iw], [oh, ow]) = (self.input, self.out);
        if self.adaptive {
            let (ys, ye) = (oy * ih / oh, ((oy + 1) * ih).div_ceil(oh));
            let (xs, xe) = (ox * iw / ow, ((ox + 1) * iw).div_ceil(ow));
            let w = 1.0 / ((ye - ys) * (xe - xs)) as f64;
            (ys..ye)
                .flat_map(|iy| (xs..xe).map(move |ix| (iy, ix, w)))
                .collect()
        } else if self.nearest {
            vec![(oy * ih / oh, ox * iw / ow, 1.0)]
        } else if self.cubic {
            let (ys, xs) = (self.cubic_taps(oy, ih, oh), self.cubic_taps(ox, iw, ow));
            ys.iter()
                .flat_map(|&(iy, wy)| xs.iter().map(move |&(ix, wx)| (iy, ix, wy * wx)))
                .collect()
        } else {
            let (y0, y1, ly) = self.tap(oy, ih, oh);
            let (x0, x1, lx) = self.tap(ox, iw, ow);
            vec![
                (y0, x0, (1.0 - ly) * (1.0 - lx)),
                (y0, x1, (1.0 - ly) * lx),
                (y1, x0, ly * (1.0 - lx)),
                (y1, x1, ly * lx),
            ]
        }
    }
}

/// The pooling and resampling gradients (`max_pool{1,2}d_backward`, `avg_pool{1,2}d_backward`,
/// `adaptive_avg_pool2d_backward`, `interpolate_backward`): each output's gradient scattered
/// over the inputs it read with their weights (a max pool's to the element its index names,
/// when that is one of its window's), in f64.
pub(crate) fn pool_backward(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let grad = call.input(0)?;
    check_dtype(op, "grad", grad.dtype, &FLOAT_DTYPES)?;
    let pool =
        op.contains("_pool1d") || op.starts_with("max_pool2d") || op.starts_with("avg_pool2d");
    let size = input_size_attr(call)?;
    let rank = if op.contains("1d") { 3 } else { 4 };
    if size.len() != rank {
        return Err(invalid(
            op,
            format!("input_size {size:?}: expected {rank} values"),
        ));
    }
    count_of(op, &size)?;
    let gv = grad.to_f64_vec();
    let mut dx = vec![0.0; size.iter().product()];
    if pool {
        let g = PoolRef::of(call, &size)?;
        if grad.shape != g.out_shape() {
            return Err(invalid(
                op,
                format!("{}: expected {:?}", describe("grad", grad), g.out_shape()),
            ));
        }
        let idx = if g.max {
            let t = call.input(1)?;
            if t.shape != grad.shape {
                return Err(invalid(
                    op,
                    format!("{}: expected grad's shape", describe("indices", t)),
                ));
            }
            Some(t.to_i64_vec())
        } else {
            None
        };
        let (plane, outs) = (g.input[0] * g.input[1], g.out[0] * g.out[1]);
        for p in 0..g.planes {
            for oy in 0..g.out[0] {
                for ox in 0..g.out[1] {
                    let o = p * outs + oy * g.out[1] + ox;
                    for (pos, w) in g.window(oy, ox) {
                        if idx.as_ref().is_some_and(|i| i[o] != pos as i64) {
                            continue;
                        }
                        dx[p * plane + pos] += w * gv[o];
                    }
                }
            }
        }
    } else {
        if grad.rank() != 4 || grad.shape[2] == 0 || grad.shape[3] == 0 {
            return Err(invalid(
                op,
                format!(
                    "{}: expected [N, C, OH, OW] with OH, OW >= 1",
                    describe("grad", grad)
                ),
            ));
        }
        let g = ResampleRef::of(call, &size, [grad.shape[2], grad.shape[3]])?;
        if grad.shape[..2] != size[..2] {
            return Err(invalid(
                op,
                format!("{}: N and C of input_size", describe("grad", grad)),
            ));
        }
        let ([ih, iw], [oh, ow]) = (g.input, g.out);
        for p in 0..g.planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    for (iy, ix, w) in g.grad_taps(oy, ox) {
                        dx[(p * ih + iy) * iw + ix] += w * gv[(p * oh + oy) * ow + ox];
                    }
                }
            }
        }
    }
    RefTensor::from_f64(grad.dtype, &size, dx)
}

/// Optional input `i`, a vector of one value per channel (`[c]`, x's dtype), in f64.
fn channel_vector(
    call: &Call,
    i: usize,
    name: &str,
    x: &RefTensor,
    c: usize,
) -> Result<Option<Vec<f64>>> {
    let op = call.op;
    let Some(t) = call.optional(i) else {
        return Ok(None);
    };
    check_same_dtype(op, name, t, "x", x)?;
    if t.shape != [c] {
        return Err(invalid(
            op,
            format!("{}: expected [{c}]", describe(name, t)),
        ));
    }
    Ok(Some(t.to_f64_vec()))
}

/// `group_norm`: per (n, group), the mean and biased variance in f64, then
/// (x - mean) / sqrt(var + eps) * weight + bias per channel (PyTorch's `group_norm`).
pub(crate) fn group_norm(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    if x.rank() < 2 {
        return Err(invalid(
            op,
            format!("{}: expected rank 2 or more ([N, C, *])", describe("x", x)),
        ));
    }
    let (n, c) = (x.shape[0], x.shape[1]);
    let g = call.req_int("num_groups")?;
    if g < 1 || c % g as usize != 0 {
        return Err(invalid(
            op,
            format!("num_groups is {g}, expected a divisor of C = {c}"),
        ));
    }
    let g = g as usize;
    let eps = call.float_attr("eps")?.unwrap_or(1e-5);
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(invalid(
            op,
            format!("attribute `eps` is {eps}, expected finite >= 0"),
        ));
    }
    let mut params = Vec::new();
    for (i, name) in [(1, "weight"), (2, "bias")] {
        params.push(channel_vector(call, i, name, x, c)?);
    }
    let sp: usize = x.shape[2..].iter().product();
    let cg = c / g;
    let v = x.to_f64_vec();
    let mut out = vec![0.0; v.len()];
    for ni in 0..n {
        for grp in 0..g {
            let start = (ni * c + grp * cg) * sp;
            let vals = &v[start..start + cg * sp];
            let len = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / len;
            let var = vals.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / len;
            let den = (var + eps).sqrt();
            for (j, x) in vals.iter().enumerate() {
                let ch = grp * cg + j / sp;
                let w = params[0].as_ref().map_or(1.0, |w| w[ch]);
                let b = params[1].as_ref().map_or(0.0, |b| b[ch]);
                out[start + j] = (x - mean) / den * w + b;
            }
        }
    }
    RefTensor::from_f64(x.dtype, &x.shape, out)
}

/// `batch_norm`: per channel, the batch's mean and biased variance in f64 (training) or the
/// running statistics, then (x - mean) * invstd * weight + bias; also the mean and invstd
/// (ATen's `native_batch_norm`).
pub(crate) fn batch_norm(call: &Call) -> Result<Vec<RefTensor>> {
    let op = call.op;
    let x = call.input(0)?;
    check_dtype(op, "x", x.dtype, &FLOAT_DTYPES)?;
    if x.rank() < 2 {
        return Err(invalid(
            op,
            format!("{}: expected rank 2 or more ([N, C, *])", describe("x", x)),
        ));
    }
    let (n, c) = (x.shape[0], x.shape[1]);
    let mut params = Vec::new();
    for (i, name) in [
        (1, "running_mean"),
        (2, "running_var"),
        (3, "weight"),
        (4, "bias"),
    ] {
        params.push(channel_vector(call, i, name, x, c)?);
    }
    let training = call.flag_attr("training", false)?;
    let eps = call.float_attr("eps")?.unwrap_or(1e-5);
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(invalid(
            op,
            format!("attribute `eps` is {eps}, expected finite >= 0"),
        ));
    }
    let sp: usize = x.shape[2..].iter().product();
    if !training && (params[0].is_none() || params[1].is_none()) {
        return Err(invalid(op, "inference needs running_mean and running_var"));
    }
    if training && c > 0 && n * sp == 0 {
        return Err(invalid(op, "training needs at least one value per channel"));
    }
    let v = x.to_f64_vec();
    let mut out = vec![0.0; v.len()];
    let (mut means, mut invstds) = (Vec::with_capacity(c), Vec::with_capacity(c));
    for ch in 0..c {
        let idx = |j: usize| ((j / sp) * c + ch) * sp + j % sp;
        let len = n * sp;
        let (mean, invstd) = if training {
            let mean = (0..len).map(|j| v[idx(j)]).sum::<f64>() / len as f64;
            let var = (0..len)
                .map(|j| (v[idx(j)] - mean) * (v[idx(j)] - mean))
                .sum::<f64>()
                / len as f64;
            (mean, 1.0 / (var + eps).sqrt())
        } else {
            let (rm, rv) = (params[0].as_ref(), params[1].as_ref());
            (
                rm.map_or(0.0, |m| m[ch]),
                1.0 / (rv.map_or(1.0, |r| r[ch]) + eps).sqrt(),
            )
        };
        let w = params[2].as_ref().map_or(1.0, |w| w[ch]);
        let b = params[3].as_ref().map_or(0.0, |b| b[ch]);
        for j in 0..len {
            out[idx(j)] = (v[idx(j)] - mean) * invstd * w + b;
        }
        means.push(mean);
        invstds.push(invstd);
    }
    Ok(vec![
        RefTensor::from_f64(x.dtype, &x.shape, out)?,
        RefTensor::from_f64(x.dtype, &[c], means)?,
        RefTensor::from_f64(x.dtype, &[c], invstds)?,
    ])
}

/// `cross_entropy` and `cross_entropy_backward` with class-index targets (PyTorch's
/// `cross_entropy`; docs/ops.md 8.16), in f64: per position the log-sum-exp of its row of C
/// logits, the loss (1 - eps) (lse - x_t) + eps (lse - mean(x)), reduced by sum, mean over the
/// positions not ignored, or none; the gradient g (softmax - (1 - eps) onehot - eps / C).
pub(crate) fn cross_entropy(call: &Call) -> Result<RefTensor> {
    let op = call.op;
    let backward = op == "cross_entropy_backward";
    let first = backward as usize;
    let x = call.input(first)?;
    let t = call.input(first + 1)?;
    check_dtype(op, "logits", x.dtype, &FLOAT_DTYPES)?;
    if x.rank() < 2 {
        return Err(invalid(
            op,
            format!("{}: expected rank >= 2", describe("logits", x)),
        ));
    }
    let mut shape = x.shape.clone();
    let classes = shape.remove(1);
    if t.shape != shape {
        return Err(invalid(
            op,
            format!("{}: expected {shape:?}", describe("target", t)),
        ));
    }
    let ignore = call.int_attr("ignore_index")?.unwrap_or(-100);
    let eps = call.float_attr("label_smoothing")?.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&eps) {
        return Err(invalid(op, format!("label_smoothing {eps} outside [0, 1]")));
    }
    let reduction = call.str_attr("reduction")?.unwrap_or("mean");
    if !["mean", "sum", "none"].contains(&reduction) {
        return Err(invalid(op, format!("reduction `{reduction}`")));
    }
    let (n, inner) = (x.shape[0], shape[1..].iter().product::<usize>());
    if backward && x.numel() == 0 {
        // An empty dlogits: nothing runs, no target is read.
        return RefTensor::from_f64(x.dtype, &x.shape, Vec::new());
    }
    let targets = t.to_i64_vec();
    if let Some(&bad) = targets
        .iter()
        .find(|&&v| v != ignore && (v < 0 || v as u64 >= classes as u64))
    {
        return Err(Error::out_of_bounds(format!(
            "{op}: target {bad} out of range 0..{classes}"
        )));
    }
    let xv = x.to_f64_vec();
    let at = |i: usize, c: usize| xv[((i / inner) * classes + c) * inner + i % inner];
    let lse = |i: usize| -> f64 {
        let m = (0..classes)
            .map(|c| at(i, c))
            .fold(f64::NEG_INFINITY, |m, v| {
                if m.is_nan() || v.is_nan() {
                    f64::NAN
                } else {
                    m.max(v)
                }
            });
        m + (0..classes).map(|c| (at(i, c) - m).exp()).sum::<f64>().ln()
    };
    let positions = n * inner;
    let count = targets.iter().filter(|&&v| v != ignore).count();
    if !backward {
        let losses: Vec<f64> = (0..positions)
            .map(|i| {
                let tv = targets[i];
                if tv == ignore {
                    return 0.0;
                }
                let l = lse(i);
                let nll = l - at(i, tv as usize);
                if eps > 0.0 {
                    // A term of weight 0 is left out (0 x Inf would be NaN).
                    let mean = (0..classes).map(|c| at(i, c)).sum::<f64>() / classes as f64;
                    let nll = if eps < 1.0 { (1.0 - eps) * nll } else { 0.0 };
                    nll + eps * (l - mean)
                } else {
                    nll
                }
            })
            .collect();
        let total: f64 = losses.iter().sum();
        return match reduction {
            "none" => RefTensor::from_f64(x.dtype, &shape, losses),
            "sum" => RefTensor::from_f64(x.dtype, &[], vec![total]),
            _ => RefTensor::from_f64(x.dtype, &[], vec![total / count as f64]),
        };
    }
    let grad = call.input(0)?;
    check_same_dtype(op, "grad", grad, "logits", x)?;
    let want: &[usize] = if reduction == "none" { &shape } else { &[] };
    if grad.shape != want {
        return Err(invalid(
            op,
            format!("{}: expected {want:?}", describe("grad", grad)),
        ));
    }
    let gv = grad.to_f64_vec();
    let mut out = vec![0.0; xv.len()];
    for i in 0..positions {
        let tv = targets[i];
        if tv == ignore {
            continue;
        }
        let gi = match reduction {
            "none" => gv[i],
            "sum" => gv[0],
            _ => gv[0] / count as f64,
        };
        let l = lse(i);
        for c in 0..classes {
            let hit = if c as i64 == tv { 1.0 - eps } else { 0.0 };
            out[((i / inner) * classes + c) * inner + i % inner] =
                gi * ((at(i, c) - l).exp() - hit - eps / classes as f64);
        }
    }
    RefTensor::from_f64(x.dtype, &x.shape, out)
}

/// The normalisation gradients (`layer_norm_backward`, `rms_norm_backward`,
/// `group_norm_backward`, `batch_norm_backward`; docs/ops.md 8.5, 8.14, 8.15), in f64: per
/// normalisation group, xhat and dxhat = dy w, then dx = r (dxhat - mean(dxhat) - xhat
/// mean(dxhat xhat)) (rms_norm: no mean(dxhat) term; batch_norm in inference: r dxhat), and per
/// channel dweight = sum(dy xhat), dbias = sum(dy).
pub(crate) fn norm_backward(call: &Call) -> Result<Vec<RefTensor>> {
    let op = call.op;
    let dy = call.input(0)?;
    let x = call.input(1)?;
    check_dtype(op, "grad", dy.dtype, &FLOAT_DTYPES)?;
    check_same_dtype(op, "x", x, "grad", dy)?;
    if dy.shape != x.shape {
        return Err(invalid(
            op,
            format!("{}: expected x's shape", describe("grad", dy)),
        ));
    }
    let rows = matches!(op, "layer_norm_backward" | "rms_norm_backward");
    let batch = op == "batch_norm_backward";
    if x.rank() < if rows { 1 } else { 2 } {
        return Err(invalid(op, format!("{}: rank too small", describe("x", x))));
    }
    // x as [A, C, S], row-major.
    let (a_n, c_n, s_n) = if rows {
        let d = x.shape[x.rank() - 1];
        (x.numel() / d.max(1), d, 1)
    } else {
        (
            x.shape[0],
            x.shape[1],
            x.shape[2..].iter().product::<usize>(),
        )
    };
    let a_n = if rows && c_n == 0 {
        x.shape[..x.rank() - 1].iter().product()
    } else {
        a_n
    };
    let vector = |i: usize, name: &str| channel_vector(call, i, name, dy, c_n);
    let w = vector(if batch { 4 } else { 2 }, "weight")?;
    let (given_mean, given_inv) = if batch {
        let (m, i) = (vector(2, "mean")?, vector(3, "invstd")?);
        match (m, i) {
            (Some(m), Some(i)) => (m, i),
            _ => return Err(invalid(op, "mean and invstd are required")),
        }
    } else {
        (Vec::new(), Vec::new())
    };
    let training = !batch || call.flag_attr("training", false)?;
    let eps = if batch {
        0.0
    } else {
        let e = call
            .float_attr("eps")?
            .unwrap_or(if op == "rms_norm_backward" {
                1e-6
            } else {
                1e-5
            });
        if !e.is_finite() || e < 0.0 {
            return Err(invalid(op, format!("eps {e}")));
        }
        e
    };
    let groups_per = if op == "group_norm_backward" {
        let g = call
            .int_attr("num_groups")?
            .ok_or_else(|| invalid(op, "num_groups is required"))?;
        if g < 1 || c_n % g as usize != 0 {
            return Err(invalid(op, format!("num_groups {g} does not divide {c_n}")));
        }
        g as usize
    } else {
        1
    };
    let (xv, yv) = (x.to_f64_vec(), dy.to_f64_vec());
    let idx = |a: usize, c: usize, s: usize| (a * c_n + c) * s_n + s;
    // Every element's group.
    let group_of = |a: usize, c: usize| -> usize {
        if rows {
            a
        } else if batch {
            c
        } else {
            a * groups_per + c / (c_n / groups_per)
        }
    };
    let groups = if rows {
        a_n
    } else if batch {
        c_n
    } else {
        a_n * groups_per
    };
    let mut members: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); groups];
    for a in 0..a_n {
        for c in 0..c_n {
            for s in 0..s_n {
                members[group_of(a, c)].push((a, c, s));
            }
        }
    }
    let wt = |c: usize| w.as_ref().map_or(1.0, |w| w[c]);
    let mut stats = vec![(0.0, 0.0); groups];
    let mut dx = vec![0.0; xv.len()];
    for (g, m) in members.iter().enumerate() {
        let n = m.len() as f64;
        let (mean, r) = if batch {
            (given_mean[g], given_inv[g])
        } else if op == "rms_norm_backward" {
            let q: f64 = m.iter().map(|&(a, c, s)| xv[idx(a, c, s)].powi(2)).sum();
            (0.0, 1.0 / (q / n + eps).sqrt())
        } else {
            let mean = m.iter().map(|&(a, c, s)| xv[idx(a, c, s)]).sum::<f64>() / n;
            let var = m
                .iter()
                .map(|&(a, c, s)| (xv[idx(a, c, s)] - mean).powi(2))
                .sum::<f64>()
                / n;
            (mean, 1.0 / (var + eps).sqrt())
        };
        stats[g] = (mean, r);
        let xhat = |a, c, s| (xv[idx(a, c, s)] - mean) * r;
        let (mut ma, mut mb) = (0.0, 0.0);
        if training {
            for &(a, c, s) in m {
                let d = yv[idx(a, c, s)] * wt(c);
                ma += d / n;
                mb += d * xhat(a, c, s) / n;
            }
        }
        if op == "rms_norm_backward" {
            ma = 0.0;
        }
        for &(a, c, s) in m {
            let d = yv[idx(a, c, s)] * wt(c);
            // In inference the statistics do not depend on x: no xhat term (x may be Inf).
            dx[idx(a, c, s)] = if training {
                r * (d - ma - xhat(a, c, s) * mb)
            } else {
                r * d
            };
        }
    }
    let (mut dw, mut db) = (vec![0.0; c_n], vec![0.0; c_n]);
    for a in 0..a_n {
        for c in 0..c_n {
            let (mean, r) = stats[group_of(a, c)];
            for s in 0..s_n {
                let y = yv[idx(a, c, s)];
                dw[c] += y * (xv[idx(a, c, s)] - mean) * r;
                db[c] += y;
            }
        }
    }
    let mut out = vec![
        RefTensor::from_f64(x.dtype, &x.shape, dx)?,
        RefTensor::from_f64(x.dtype, &[c_n], dw)?,
    ];
    if op != "rms_norm_backward" {
        out.push(RefTensor::from_f64(x.dtype, &[c_n], db)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use anyaccel_hal::{DType, ErrorCode};

    const NAN: f64 = f64::NAN;
    const INF: f64 = f64::INFINITY;
    const TOL: f64 = 1e-6;

    #[test]
    fn softmax_rows_and_special_values() {
        let x = f32t(&[2, 3], &[1.0, 2.0, 3.0, 1001.0, 1002.0, 1003.0]);
        let p = [0.09003057317038046, 0.24472847105479764, 0.6652409557748218];
        let t = run1("softmax", std::slice::from_ref(&x), &[int("axis", 1)]);
        assert_close(&t, DType::F32, &[2, 3], &[p, p].concat(), TOL);
        let t = run1("log_softmax", std::slice::from_ref(&x), &[int("axis", -1)]);
        let l = [
            -2.4076059644443806,
            -1.4076059644443804,
            -0.4076059644443804,
        ];
        assert_close(&t, DType::F32, &[2, 3], &[l, l].concat(), TOL);
        // Along axis 0 of a 2x2: each column.
        let x = f32t(&[2, 2], &[0.0, 5.0, 0.0, 5.0]);
        let t = run1("softmax", &[x], &[int("axis", 0)]);
        assert_close(&t, DType::F32, &[2, 2], &[0.5, 0.5, 0.5, 0.5], TOL);
        // +Inf, NaN, all -Inf rows are NaN; a -Inf among finite values gives 0.
        let x = f32t(&[4, 2], &[INF, 1.0, NAN, 1.0, -INF, -INF, -INF, 0.0]);
        let t = run1("softmax", std::slice::from_ref(&x), &[int("axis", 1)]);
        assert_f(
            &t,
            DType::F32,
            &[4, 2],
            &[NAN, NAN, NAN, NAN, NAN, NAN, 0.0, 1.0],
        );
        let t = run1("log_softmax", &[x], &[int("axis", 1)]);
        assert_f(
            &t,
            DType::F32,
            &[4, 2],
            &[NAN, NAN, NAN, NAN, NAN, NAN, -INF, 0.0],
        );
        let t = run1("softmax", &[f32t(&[2, 0], &[])], &[int("axis", 1)]);
        assert_f(&t, DType::F32, &[2, 0], &[]);
        // The axis defaults to -1.
        let t = run1("softmax", &[f32t(&[1, 2], &[0.0, 0.0])], &[]);
        assert_f(&t, DType::F32, &[1, 2], &[0.5, 0.5]);
        let e = fails("softmax", &[f32t(&[], &[1.0])], &[int("axis", 0)]);
        assert!(e.message().contains("rank-0"), "{e}");
        let e = fails("softmax", &[ti(DType::I32, &[1], &[1])], &[int("axis", 0)]);
        assert!(e.message().contains("x has dtype i32"), "{e}");
    }

    #[test]
    fn layer_norm_with_and_without_params() {
        let x = f32t(&[1, 4], &[1.0, 2.0, 3.0, 4.0]);
        let a = 1.3416407864998738;
        let b = 0.4472135954999579;
        let t = run1("layer_norm", std::slice::from_ref(&x), &[float("eps", 0.0)]);
        assert_close(&t, DType::F32, &[1, 4], &[-a, -b, b, a], TOL);
        let w = f32t(&[4], &[1.0, 2.0, 1.0, 2.0]);
        let bias = f32t(&[4], &[0.0, 0.0, 1.0, 1.0]);
        let t = run1(
            "layer_norm",
            &[x.clone(), w.clone(), bias.clone()],
            &[float("eps", 0.0)],
        );
        assert_close(
            &t,
            DType::F32,
            &[1, 4],
            &[-a, -2.0 * b, b + 1.0, 2.0 * a + 1.0],
            TOL,
        );
        // Bias without weight.
        let t = run1("layer_norm", &[x.clone(), None, bias], &[float("eps", 0.0)]);
        assert_close(&t, DType::F32, &[1, 4], &[-a, -b, b + 1.0, a + 1.0], TOL);
        // Default eps = 1e-5: var 1.25 + 1e-5.
        let t = run1("layer_norm", std::slice::from_ref(&x), &[]);
        let s = (1.25f64 / (1.25 + 1e-5)).sqrt();
        assert_close(
            &t,
            DType::F32,
            &[1, 4],
            &[-a * s, -b * s, b * s, a * s],
            TOL,
        );
        // A constant row with eps = 0 is 0 / 0.
        let t = run1(
            "layer_norm",
            &[f32t(&[2], &[3.0, 3.0])],
            &[float("eps", 0.0)],
        );
        assert_f(&t, DType::F32, &[2], &[NAN, NAN]);

        let e = fails("layer_norm", std::slice::from_ref(&x), &[float("eps", NAN)]);
        assert!(
            e.message()
                .contains("`eps` is NaN, expected a finite value >= 0"),
            "{e}"
        );
        let e = fails(
            "layer_norm",
            std::slice::from_ref(&x),
            &[float("eps", -1.0)],
        );
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        let e = fails("layer_norm", &[x.clone(), f32t(&[3], &[1.0; 3])], &[]);
        assert!(e.message().contains("expected a 1-D tensor of 4"), "{e}");
        let e = fails("layer_norm", &[x, tf(DType::F16, &[4], &[1.0; 4])], &[]);
        assert!(e.message().contains("no type promotion"), "{e}");
        let e = fails("layer_norm", &[f32t(&[], &[1.0])], &[]);
        assert!(e.message().contains("expected rank >= 1"), "{e}");
    }

    #[test]
    fn rms_norm_rows() {
        let x = f32t(&[2, 2], &[3.0, 4.0, 0.0, 0.0]);
        let t = run1("rms_norm", std::slice::from_ref(&x), &[float("eps", 0.0)]);
        assert_close(
            &t,
            DType::F32,
            &[2, 2],
            &[0.848528137423857, 1.131370849898476, NAN, NAN],
            TOL,
        );
        let t = run1(
            "rms_norm",
            &[x.clone(), f32t(&[2], &[2.0, -1.0])],
            &[float("eps", 0.5)],
        );
        assert_close(
            &t,
            DType::F32,
            &[2, 2],
            &[2.0 * 0.8320502943378437, -1.1094003924504583, 0.0, 0.0],
            TOL,
        );
        let e = fails("rms_norm", &[x], &[float("eps", INF)]);
        assert!(e.message().contains("`eps` is inf"), "{e}");
    }

    #[test]
    fn matmul_plain_bias_batched_and_empty() {
        let a = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = f32t(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        let t = run1("matmul", &[a.clone(), b.clone()], &[]);
        assert_f(&t, DType::F32, &[2, 2], &[58.0, 64.0, 139.0, 154.0]);
        let t = run1(
            "matmul",
            &[a.clone(), b.clone(), f32t(&[2], &[1.0, -1.0])],
            &[],
        );
        assert_f(&t, DType::F32, &[2, 2], &[59.0, 63.0, 140.0, 153.0]);
        let t = run1(
            "matmul",
            &[a.clone(), b.clone(), f32t(&[2, 1], &[1.0, -1.0])],
            &[],
        );
        assert_f(&t, DType::F32, &[2, 2], &[59.0, 65.0, 138.0, 153.0]);
        // Batch dims broadcast: [2,1] with [3] gives [2,3].
        let a2 = f32t(&[2, 1, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b2 = f32t(&[3, 2, 1], &[1.0, 1.0, 1.0, 0.0, 0.0, 2.0]);
        let t = run1("matmul", &[a2, b2], &[]);
        assert_f(
            &t,
            DType::F32,
            &[2, 3, 1, 1],
            &[3.0, 1.0, 4.0, 7.0, 3.0, 8.0],
        );
        // A rank-3 a with a rank-2 b.
        let a3 = f32t(&[2, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b3 = f32t(&[2, 2], &[1.0, 0.0, 0.0, 2.0]);
        let t = run1("matmul", &[a3, b3], &[]);
        assert_f(&t, DType::F32, &[2, 1, 2], &[1.0, 4.0, 3.0, 8.0]);
        // K = 0 gives zeros plus bias.
        let t = run1(
            "matmul",
            &[
                f32t(&[2, 0], &[]),
                f32t(&[0, 3], &[]),
                f32t(&[3], &[1.0, 2.0, 3.0]),
            ],
            &[],
        );
        assert_f(&t, DType::F32, &[2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        let t = run1(
            "matmul",
            &[f32t(&[0, 2], &[]), f32t(&[2, 3], &[0.0; 6])],
            &[],
        );
        assert_f(&t, DType::F32, &[0, 3], &[]);
        // NaN and 0 * Inf.
        let t = run1(
            "matmul",
            &[f32t(&[2, 1], &[NAN, 0.0]), f32t(&[1, 2], &[1.0, INF])],
            &[],
        );
        assert_f(&t, DType::F32, &[2, 2], &[NAN, NAN, 0.0, NAN]);
        // 16-bit: accumulated wide, rounded once.
        let t = run1(
            "matmul",
            &[
                tf(DType::F16, &[1, 3], &[2048.0, 1.0, 1.0]),
                tf(DType::F16, &[3, 1], &[1.0; 3]),
            ],
            &[],
        );
        assert_f(&t, DType::F16, &[1, 1], &[2050.0]);

        let e = fails("matmul", &[a.clone(), a.clone()], &[]);
        assert_eq!(
            e.message(),
            "matmul: a is 2x3 but b is 2x3: inner dimensions must match (3 vs 2)"
        );
        let e = fails(
            "matmul",
            &[a.clone(), b.clone(), f32t(&[3, 2], &[0.0; 6])],
            &[],
        );
        assert!(e.message().contains("without enlarging it"), "{e}");
        let e = fails(
            "matmul",
            &[a.clone(), b.clone(), f32t(&[1, 2, 2], &[0.0; 4])],
            &[],
        );
        assert!(e.message().contains("without enlarging it"), "{e}");
        let e = fails("matmul", &[f32t(&[3], &[0.0; 3]), b.clone()], &[]);
        assert!(e.message().contains("expected rank >= 2"), "{e}");
        let e = fails(
            "matmul",
            &[f32t(&[2, 1, 1], &[0.0; 2]), f32t(&[3, 1, 1], &[0.0; 3])],
            &[],
        );
        assert!(e.message().contains("cannot broadcast"), "{e}");
        let e = fails(
            "matmul",
            &[ti(DType::I32, &[1, 1], &[1]), ti(DType::I32, &[1, 1], &[1])],
            &[],
        );
        assert!(e.message().contains("a has dtype i32"), "{e}");
    }

    #[test]
    fn rope_half_split_and_interleaved() {
        // Two rows of D = 4 (S = 2), repeated over a batch of 2.
        let row = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let x = f32t(&[2, 2, 4], &[row, row].concat());
        let cos = f32t(&[2, 2], &[1.0, 0.0, 0.5, 0.0]);
        let sin = f32t(&[2, 2], &[0.0, 1.0, 0.5, -1.0]);
        let half_split = [1.0, -4.0, 3.0, 2.0, -1.0, 8.0, 6.0, -6.0];
        let t = run1("rope", &[x.clone(), cos.clone(), sin.clone()], &[]);
        assert_f(
            &t,
            DType::F32,
            &[2, 2, 4],
            &[half_split, half_split].concat(),
        );
        let t = run1(
            "rope",
            &[x.clone(), cos.clone(), sin.clone()],
            &[int("interleaved", 0)],
        );
        assert_f(
            &t,
            DType::F32,
            &[2, 2, 4],
            &[half_split, half_split].concat(),
        );
        let interleaved = [1.0, 2.0, -4.0, 3.0, -0.5, 5.5, 8.0, -7.0];
        let t = run1(
            "rope",
            &[x.clone(), cos.clone(), sin.clone()],
            &[int("interleaved", 1)],
        );
        assert_f(
            &t,
            DType::F32,
            &[2, 2, 4],
            &[interleaved, interleaved].concat(),
        );

        let e = fails(
            "rope",
            &[f32t(&[2, 3], &[0.0; 6]), cos.clone(), sin.clone()],
            &[],
        );
        assert!(e.message().contains("D = 3 must be even"), "{e}");
        let e = fails(
            "rope",
            &[x.clone(), f32t(&[2, 1], &[0.0; 2]), sin.clone()],
            &[],
        );
        assert!(e.message().contains("expected [S, D/2] = 2x2"), "{e}");
        let e = fails("rope", &[x, cos, None], &[]);
        assert!(e.message().contains("input `sin`"), "{e}");
    }

    #[test]
    fn attention_plain_and_causal() {
        let q = f32t(&[2, 2], &[1.0, 0.0, 0.0, 1.0]);
        let k = q.clone();
        let v = f32t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        // Default scale 1/sqrt(2): row 0 weighs key 0 by p0 = sigmoid(1/sqrt 2).
        let p0 = 0.6697615493266569;
        let t = run1("attention", &[q.clone(), k.clone(), v.clone()], &[]);
        assert_close(
            &t,
            DType::F32,
            &[2, 2],
            &[
                3.0 - 2.0 * p0,
                4.0 - 2.0 * p0,
                1.0 + 2.0 * p0,
                2.0 + 2.0 * p0,
            ],
            TOL,
        );
        // Causal: row 0 sees key 0 only.
        let t = run1(
            "attention",
            &[q.clone(), k.clone(), v.clone()],
            &[int("causal", 1)],
        );
        assert_close(
            &t,
            DType::F32,
            &[2, 2],
            &[1.0, 2.0, 1.0 + 2.0 * p0, 2.0 + 2.0 * p0],
            TOL,
        );
        // A masked key takes no part: Inf in key 1 and v row 1 do not reach row 0.
        let k_inf = f32t(&[2, 2], &[1.0, 0.0, INF, 1.0]);
        let v_inf = f32t(&[2, 2], &[1.0, 2.0, NAN, INF]);
        let t = run1("attention", &[q.clone(), k_inf, v_inf], &[int("causal", 1)]);
        assert_f(&t, DType::F32, &[2, 2], &[1.0, 2.0, NAN, NAN]);
        // scale = 0: uniform weights.
        let t = run1(
            "attention",
            &[q.clone(), k.clone(), v.clone()],
            &[float("scale", 0.0)],
        );
        assert_close(&t, DType::F32, &[2, 2], &[2.0, 3.0, 2.0, 3.0], TOL);
        // Lq > Lk with causal, batch dims, Dv != D.
        let q3 = f32t(&[1, 3, 1], &[0.0, 0.0, 0.0]);
        let k3 = f32t(&[1, 2, 1], &[0.0, 0.0]);
        let v3 = f32t(&[1, 2, 3], &[1.0, 2.0, 3.0, 3.0, 4.0, 5.0]);
        let t = run1("attention", &[q3, k3, v3], &[int("causal", 1)]);
        assert_close(
            &t,
            DType::F32,
            &[1, 3, 3],
            &[1.0, 2.0, 3.0, 2.0, 3.0, 4.0, 2.0, 3.0, 4.0],
            TOL,
        );
        // D = 0: every dot product is 0; the default scale is +Inf, so 0 * Inf = NaN, while an
        // explicit scale gives the plain average of v.
        let (q0, k0) = (f32t(&[1, 0], &[]), f32t(&[2, 0], &[]));
        let t = run1("attention", &[q0.clone(), k0.clone(), v.clone()], &[]);
        assert_f(&t, DType::F32, &[1, 2], &[NAN, NAN]);
        let t = run1("attention", &[q0, k0, v.clone()], &[float("scale", 1.0)]);
        assert_close(&t, DType::F32, &[1, 2], &[2.0, 3.0], TOL);
        // Lq = 0, with or without keys.
        let t = run1(
            "attention",
            &[f32t(&[0, 2], &[]), k.clone(), v.clone()],
            &[],
        );
        assert_f(&t, DType::F32, &[0, 2], &[]);
        let t = run1(
            "attention",
            &[f32t(&[0, 2], &[]), f32t(&[0, 2], &[]), f32t(&[0, 3], &[])],
            &[],
        );
        assert_f(&t, DType::F32, &[0, 3], &[]);
        let e = fails(
            "attention",
            &[q.clone(), k.clone(), v.clone()],
            &[float("scale", INF)],
        );
        assert!(
            e.message()
                .contains("`scale` is inf, expected a finite value"),
            "{e}"
        );

        let e = fails(
            "attention",
            &[q.clone(), f32t(&[0, 2], &[]), f32t(&[0, 2], &[])],
            &[],
        );
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert!(e.message().contains("Lk = 0 keys"), "{e}");
        let e = fails(
            "attention",
            &[q.clone(), f32t(&[2, 3], &[0.0; 6]), v.clone()],
            &[],
        );
        assert!(e.message().contains("(D) must match"), "{e}");
        let e = fails(
            "attention",
            &[q.clone(), k.clone(), f32t(&[3, 2], &[0.0; 6])],
            &[],
        );
        assert!(e.message().contains("one row per key"), "{e}");
        let e = fails(
            "attention",
            &[
                f32t(&[1, 2, 2], &[0.0; 4]),
                f32t(&[2, 2, 2], &[0.0; 8]),
                f32t(&[2, 2, 2], &[0.0; 8]),
            ],
            &[],
        );
        assert!(e.message().contains("batch dims must be equal"), "{e}");
        let e = fails("attention", &[q, k, v], &[int("causal", 2)]);
        assert!(e.message().contains("expected Int(0) or Int(1)"), "{e}");
    }
}
