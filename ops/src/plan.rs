//! Validation and output-shape inference for every op: the rules of `docs/ops.md`.

use anyaccel_hal::{shape_str, AttrValue, DType, Error, Result, TensorDesc};

use crate::attrs::{normalize_axis, Attrs};
use crate::catalog::{dtype_list, op_def, InputDtype, Op, OutputDtype, ReduceOp};

/// An output to allocate: dtype and shape.
pub type OutputSpec = (DType, Vec<usize>);

fn invalid(msg: String) -> Error {
    Error::invalid_argument(msg)
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(
    op: &str,
    names: (&str, &str),
    a: &[usize],
    b: &[usize],
) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(invalid(format!(
                "{op}: {} is {} but {} is {}: dimension {i} of the broadcast is {da} against {db}; each pair must be equal or 1",
                names.0,
                shape_str(a),
                names.1,
                shape_str(b)
            )));
        };
    }
    Ok(out)
}

fn check_dtype(op: &str, name: &str, dtype: DType, allowed: &[DType]) -> Result<()> {
    if !allowed.contains(&dtype) {
        return Err(invalid(format!(
            "{op}: {name} is {dtype}, expected one of {}",
            dtype_list(allowed)
        )));
    }
    Ok(())
}

fn min_rank(op: &str, name: &str, d: &TensorDesc, rank: usize) -> Result<()> {
    if d.rank() < rank {
        return Err(invalid(format!(
            "{op}: {name} has rank {} ({}), expected rank {rank} or more",
            d.rank(),
            shape_str(&d.shape)
        )));
    }
    Ok(())
}

/// Two inputs of equal shape (no broadcasting), or the error naming both.
fn same_shape(op: &str, a: (&str, &TensorDesc), b: (&str, &TensorDesc)) -> Result<()> {
    if a.1.shape != b.1.shape {
        return Err(invalid(format!(
            "{op}: {} is {} but {} is {}: shapes must be equal",
            a.0,
            shape_str(&a.1.shape),
            b.0,
            shape_str(&b.1.shape)
        )));
    }
    Ok(())
}

/// An attribute that must hold an integer of i64: integral and in `[-2^63, 2^63)`, both bounds
/// exact powers of two (every integral f64 in that range converts to i64 exactly).
fn integral(op: &str, name: &str, v: f64) -> Result<i64> {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if !(v.fract() == 0.0 && (-TWO_63..TWO_63).contains(&v)) {
        return Err(invalid(format!(
            "{op}: {name} is {v}, expected an integral value within the range of i64 \
             ([-2^63, 2^63)) for an integer dtype"
        )));
    }
    Ok(v as i64)
}

/// Reduction axes, normalised, sorted and unique; empty or absent means all.
pub(crate) fn reduce_axes(attrs: &Attrs<'_>, rank: usize) -> Result<Vec<usize>> {
    let list = attrs.ints_opt("axes")?.unwrap_or_default();
    if list.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut axes = Vec::new();
    for a in list {
        let n = normalize_axis(attrs.op, "axis", a, rank)?;
        if axes.contains(&n) {
            return Err(invalid(format!(
                "{}: axis {n} is listed twice in axes",
                attrs.op
            )));
        }
        axes.push(n);
    }
    axes.sort_unstable();
    Ok(axes)
}

/// `eps` of `layer_norm` and `rms_norm`: given, or the declared default (validated by the
/// declaration: finite and >= 0).
pub(crate) fn eps(attrs: &Attrs<'_>) -> Result<f64> {
    attrs.float_or_default("eps")
}

/// Validates a call and infers its outputs. `inputs` are the descs of the inputs, `None` for an
/// absent optional one.
pub fn plan(
    op: &str,
    inputs: &[Option<&TensorDesc>],
    attr_list: &[(String, AttrValue)],
) -> Result<Vec<OutputSpec>> {
    let def = op_def(op).ok_or_else(|| {
        invalid(format!(
            "unknown op `{op}`; the op set is listed in docs/ops.md"
        ))
    })?;
    let attrs = Attrs::new(op, attr_list, def.attrs)?;
    // Arity.
    let variadic = def.inputs.iter().any(|i| i.ends_with('*'));
    let required = def
        .inputs
        .iter()
        .filter(|i| !i.ends_with('?') && !i.ends_with('*'))
        .count();
    if variadic {
        if inputs.is_empty() {
            return Err(invalid(format!(
                "{op}: no inputs given, expected at least one"
            )));
        }
    } else if inputs.len() < required || inputs.len() > def.inputs.len() {
        return Err(invalid(format!(
            "{op}: {} inputs given, expected {} ({})",
            inputs.len(),
            if required == def.inputs.len() {
                required.to_string()
            } else {
                format!("{required} to {}", def.inputs.len())
            },
            def.inputs.join(", ")
        )));
    }
    for (i, input) in inputs.iter().enumerate() {
        let name = def.inputs.get(i).copied().unwrap_or("xs*");
        if input.is_none() && !name.ends_with('?') {
            return Err(invalid(format!(
                "{op}: input {i} ({}) is required but absent",
                name.trim_end_matches('*')
            )));
        }
        if let Some(d) = input {
            // The context of the message is formatted only when there is one.
            if d.validate(op).is_err() {
                d.validate(&format!(
                    "{op}: input {}",
                    name.trim_end_matches(['?', '*'])
                ))?;
            }
        }
    }
    let x = |i: usize| -> &TensorDesc {
        inputs[i].expect("checked above: required inputs are present")
    };
    let opt = |i: usize| -> Option<&TensorDesc> { inputs.get(i).copied().flatten() };
    // Input dtypes, from the declaration.
    for (i, input) in inputs.iter().enumerate() {
        let Some(d) = input else { continue };
        let name = def.input_name(i);
        match def.input_dtype(i) {
            InputDtype::Listed => check_dtype(op, &name, d.dtype, def.dtypes)?,
            InputDtype::Index => check_dtype(op, &name, d.dtype, &[DType::I32, DType::I64])?,
            InputDtype::Bool => check_dtype(op, &name, d.dtype, &[DType::Bool])?,
            InputDtype::OneOf(list) => check_dtype(op, &name, d.dtype, list)?,
            InputDtype::SameAsOrBool(j) => {
                if let Some(first) = inputs.get(j).copied().flatten() {
                    if d.dtype != first.dtype && d.dtype != DType::Bool {
                        return Err(invalid(format!(
                            "{op}: {} is {} but {name} is {}: expected {} or bool",
                            def.input_name(j),
                            first.dtype,
                            d.dtype,
                            first.dtype
                        )));
                    }
                }
            }
            InputDtype::SameAs(j) => {
                if let Some(first) = inputs.get(j).copied().flatten() {
                    if first.dtype != d.dtype {
                        return Err(invalid(format!(
                            "{op}: {} is {} but {name} is {}: dtypes must match",
                            def.input_name(j),
                            first.dtype,
                            d.dtype
                        )));
                    }
                }
            }
        }
    }
    if let Some(OutputDtype::Attr) = def.output_dtypes.first() {
        check_dtype(op, "dtype", attrs.dtype("dtype")?, def.dtypes)?;
    }
    let shapes: Vec<Vec<usize>> = match def.op {
        Op::Fill | Op::Uniform | Op::Normal => {
            let shape = attrs
                .ints_opt("shape")?
                .ok_or_else(|| invalid(format!("{op}: attribute `shape` (Ints) is required")))?;
            let shape = shape
                .iter()
                .map(|&d| {
                    usize::try_from(d).map_err(|_| {
                        invalid(format!("{op}: shape {shape:?} has a negative dimension"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let wide = attrs.dtype("dtype")? == DType::F64;
            // The values the kernels take, each finite in the precision they compute in.
            let terms = match def.op {
                Op::Uniform => {
                    let (low, high) = (
                        attrs.float_or_default("low")?,
                        attrs.float_or_default("high")?,
                    );
                    if low > high {
                        return Err(invalid(format!(
                            "uniform: low {low} is above high {high}, expected low <= high"
                        )));
                    }
                    vec![("low", low), ("high - low", high - low)]
                }
                Op::Normal => vec![
                    ("mean", attrs.float_or_default("mean")?),
                    ("std", attrs.float_or_default("std")?),
                ],
                _ => Vec::new(),
            };
            for (name, v) in terms {
                let finite = if wide {
                    v.is_finite()
                } else {
                    (v as f32).is_finite()
                };
                if !finite {
                    return Err(invalid(format!(
                        "{op}: {name} is {v}, which overflows {}; expected a finite value",
                        if wide {
                            "f64"
                        } else {
                            "f32, the precision it is computed in"
                        }
                    )));
                }
            }
            vec![shape]
        }
        Op::Bernoulli => vec![x(0).shape.clone()],
        Op::Dropout => {
            let p = attrs.float_or_default("p")?;
            if p > 1.0 {
                return Err(invalid(format!(
                    "dropout: p is {p}, expected a probability in [0, 1]"
                )));
            }
            vec![x(0).shape.clone()]
        }
        Op::Arange => {
            let dtype = attrs.dtype("dtype")?;
            let n = attrs.int("n")?;
            let n = usize::try_from(n)
                .map_err(|_| invalid(format!("arange: n is {n}, expected n >= 0")))?;
            let (start, step) = (attrs.float("start")?, attrs.float("step")?);
            if dtype.is_int() {
                integral(op, "start", start)?;
                integral(op, "step", step)?;
            } else if !start.is_finite() || !step.is_finite() {
                return Err(invalid(format!(
                    "arange: start {start} and step {step} must be finite"
                )));
            }
            vec![vec![n]]
        }
        Op::Copy => vec![x(0).shape.clone()],
        Op::Cast => vec![x(0).shape.clone()],
        Op::Concat => {
            let first = x(0);
            min_rank(op, "xs[0]", first, 1)?;
            let axis = attrs.axis("axis", None, first.rank())?;
            let mut shape = first.shape.clone();
            shape[axis] = 0;
            for (i, d) in inputs.iter().enumerate() {
                let d = d.ok_or_else(|| invalid(format!("concat: input {i} is absent")))?;
                let same = d.rank() == first.rank()
                    && d.shape
                        .iter()
                        .zip(&first.shape)
                        .enumerate()
                        .all(|(k, (a, b))| k == axis || a == b);
                if !same {
                    return Err(invalid(format!(
                        "concat: xs[{i}] is {} but xs[0] is {}: shapes must match except on axis {axis}",
                        shape_str(&d.shape),
                        shape_str(&first.shape)
                    )));
                }
                shape[axis] += d.shape[axis];
            }
            vec![shape]
        }
        Op::IndexSelect => {
            let (xd, idx) = (x(0), x(1));
            min_rank(op, "x", xd, 1)?;
            if idx.rank() != 1 {
                return Err(invalid(format!(
                    "index_select: indices has shape {}, expected a 1-D tensor",
                    shape_str(&idx.shape)
                )));
            }
            let axis = attrs.axis("axis", None, xd.rank())?;
            let mut shape = xd.shape.clone();
            shape[axis] = idx.shape[0];
            vec![shape]
        }
        Op::Embedding => {
            let (w, idx) = (x(0), x(1));
            if w.rank() != 2 {
                return Err(invalid(format!(
                    "embedding: weight has shape {}, expected [V, D]",
                    shape_str(&w.shape)
                )));
            }
            let mut shape = idx.shape.clone();
            shape.push(w.shape[1]);
            vec![shape]
        }
        Op::Gather => {
            let (xd, idx) = (x(0), x(1));
            min_rank(op, "x", xd, 1)?;
            let axis = attrs.axis("axis", None, xd.rank())?;
            if idx.rank() != xd.rank() {
                return Err(invalid(format!(
                    "gather: indices has rank {} but x has rank {}: ranks must match",
                    idx.rank(),
                    xd.rank()
                )));
            }
            for d in 0..xd.rank() {
                if d != axis && idx.shape[d] > xd.shape[d] {
                    return Err(invalid(format!(
                        "gather: indices is {} and x is {}: indices dim {d} is larger than x's",
                        shape_str(&idx.shape),
                        shape_str(&xd.shape)
                    )));
                }
            }
            vec![idx.shape.clone()]
        }
        Op::Pad
        | Op::Flip
        | Op::Roll
        | Op::Tril
        | Op::Triu
        | Op::RepeatInterleave
        | Op::OneHot
        | Op::Scatter
        | Op::ScatterAdd
        | Op::IndexAdd
        | Op::MaskedFill => {
            let present: Vec<&TensorDesc> = inputs.iter().flatten().copied().collect();
            vec![crate::movement::shape(def.op, &attrs, &present)?]
        }
        Op::SoftmaxBackward | Op::LogSoftmaxBackward => {
            let y = x(1);
            same_shape(op, ("grad", x(0)), ("y", y))?;
            attrs.axis("axis", Some(-1), y.rank())?;
            vec![y.shape.clone()]
        }
        Op::EmbeddingBackward => {
            let (g, idx) = (x(0), x(1));
            let v = attrs.int("num_weights")?;
            if g.rank() != idx.rank() + 1 || g.shape[..idx.rank()] != idx.shape[..] {
                return Err(invalid(format!(
                    "{op}: grad is {} for indices {}: expected the indices' shape plus the \
                     embedding size, [..., D]",
                    shape_str(&g.shape),
                    shape_str(&idx.shape)
                )));
            }
            if let Some(p) = attrs.int_opt("padding_idx")? {
                if p < -v || p >= v {
                    return Err(invalid(format!(
                        "{op}: padding_idx is {p}, expected -{v}..{v} (num_weights is {v})"
                    )));
                }
            }
            if v == 0 && idx.numel() > 0 {
                return Err(invalid(format!(
                    "{op}: num_weights is 0 but there are indices: every index would be out of \
                     range"
                )));
            }
            vec![vec![v as usize, g.shape[g.rank() - 1]]]
        }
        Op::ActivationBackward(_) => {
            same_shape(op, ("grad", x(0)), ("x", x(1)))?;
            vec![x(1).shape.clone()]
        }
        Op::Binary(_) | Op::Compare(_) => {
            let shape = broadcast_shapes(op, ("a", "b"), &x(0).shape, &x(1).shape)?;
            vec![shape]
        }
        Op::Where => {
            let (c, a, b) = (x(0), x(1), x(2));
            let ab = broadcast_shapes(op, ("a", "b"), &a.shape, &b.shape)?;
            let shape = broadcast_shapes(op, ("cond", "a and b"), &c.shape, &ab)?;
            vec![shape]
        }
        Op::Unary(_) | Op::Predicate(_) | Op::Activation(_) | Op::Gelu | Op::Clamp => {
            let xd = x(0);
            if def.op == Op::Clamp {
                let (lo, hi) = (attrs.float("min")?, attrs.float("max")?);
                if xd.dtype.is_int() {
                    let (lo_i, hi_i) = (integral(op, "min", lo)?, integral(op, "max", hi)?);
                    let (min, max) = if xd.dtype == DType::I32 {
                        (i32::MIN as i64, i32::MAX as i64)
                    } else {
                        (i64::MIN, i64::MAX)
                    };
                    for (name, v) in [("min", lo_i), ("max", hi_i)] {
                        if v < min || v > max {
                            return Err(invalid(format!(
                                "clamp: {name} is {v}, outside the range of {}",
                                xd.dtype
                            )));
                        }
                    }
                } else if lo.is_nan() || hi.is_nan() {
                    return Err(invalid(format!(
                        "clamp: min {lo} and max {hi} must not be NaN"
                    )));
                }
            }
            vec![xd.shape.clone()]
        }
        Op::Reduce(r) => {
            let xd = x(0);
            let axes = reduce_axes(&attrs, xd.rank())?;
            let keep = attrs.flag("keepdim", false)?;
            let mut shape = Vec::new();
            let mut reduced = 1usize;
            for (i, &d) in xd.shape.iter().enumerate() {
                if axes.contains(&i) {
                    reduced *= d;
                    if keep {
                        shape.push(1);
                    }
                } else {
                    shape.push(d);
                }
            }
            let out_numel: usize = shape.iter().product();
            let selects = matches!(
                r,
                ReduceOp::Max | ReduceOp::Min | ReduceOp::Argmax | ReduceOp::Argmin
            );
            if reduced == 0 && out_numel > 0 && selects {
                return Err(invalid(format!(
                    "{op}: cannot reduce 0 elements (x is {}, axes {axes:?}); {op} of nothing is undefined",
                    shape_str(&xd.shape)
                )));
            }
            vec![shape]
        }
        Op::Cumsum | Op::Cumprod | Op::Cummax | Op::Cummin => {
            attrs.axis("axis", None, x(0).rank())?;
            vec![x(0).shape.clone()]
        }
        Op::Topk => {
            let xd = x(0);
            let axis = attrs.axis("axis", Some(-1), xd.rank())?;
            let k = attrs.int("k")?;
            attrs.flag("largest", true)?;
            let size = xd.shape[axis];
            if k < 0 || k as u64 > size as u64 {
                return Err(invalid(format!(
                    "topk: k is {k}, expected 0..={size} (the size of axis {axis})"
                )));
            }
            let mut shape = xd.shape.clone();
            shape[axis] = k as usize;
            vec![shape.clone(), shape]
        }
        Op::Sort | Op::Argsort => {
            attrs.axis("axis", Some(-1), x(0).rank())?;
            attrs.flag("descending", false)?;
            if def.op == Op::Sort {
                vec![x(0).shape.clone(), x(0).shape.clone()]
            } else {
                vec![x(0).shape.clone()]
            }
        }
        Op::Softmax | Op::LogSoftmax => {
            attrs.axis("axis", Some(-1), x(0).rank())?;
            vec![x(0).shape.clone()]
        }
        Op::LayerNorm | Op::RmsNorm => {
            let xd = x(0);
            min_rank(op, "x", xd, 1)?;
            let last = xd.shape[xd.rank() - 1];
            for (i, name) in [(1usize, "weight"), (2, "bias")] {
                if let Some(p) = opt(i) {
                    if p.shape != [last] {
                        return Err(invalid(format!(
                            "{op}: {name} has shape {}, expected [{last}] (the size of x's last axis)",
                            shape_str(&p.shape)
                        )));
                    }
                }
            }
            vec![xd.shape.clone()]
        }
        Op::Matmul => {
            let (a, b) = (x(0), x(1));
            min_rank(op, "a", a, 2)?;
            min_rank(op, "b", b, 2)?;
            let (m, ka) = (a.shape[a.rank() - 2], a.shape[a.rank() - 1]);
            let (kb, n) = (b.shape[b.rank() - 2], b.shape[b.rank() - 1]);
            if ka != kb {
                return Err(invalid(format!(
                    "matmul: a is {} but b is {}: inner dimensions must match ({ka} vs {kb})",
                    shape_str(&a.shape),
                    shape_str(&b.shape)
                )));
            }
            let batch = broadcast_shapes(
                op,
                ("a's batch", "b's batch"),
                &a.shape[..a.rank() - 2],
                &b.shape[..b.rank() - 2],
            )?;
            let mut shape = batch;
            shape.extend([m, n]);
            if let Some(bias) = opt(2) {
                let b = broadcast_shapes(op, ("bias", "the output"), &bias.shape, &shape)?;
                if b != shape {
                    return Err(invalid(format!(
                        "matmul: bias {} does not broadcast to the output {}",
                        shape_str(&bias.shape),
                        shape_str(&shape)
                    )));
                }
            }
            vec![shape]
        }
        Op::MaxPool1d | Op::MaxPool2d | Op::AvgPool1d | Op::AvgPool2d => {
            let g = crate::conv::PoolGeom::of(op, &attrs, x(0))?;
            if matches!(def.op, Op::MaxPool1d | Op::MaxPool2d) {
                vec![g.out_shape(), g.out_shape()]
            } else {
                vec![g.out_shape()]
            }
        }
        Op::BatchNorm => {
            crate::conv::BatchGeom::of(op, &attrs, x(0), [opt(1), opt(2), opt(3), opt(4)])?;
            eps(&attrs)?;
            let c = x(0).shape[1];
            vec![x(0).shape.clone(), vec![c], vec![c]]
        }
        Op::GroupNorm => {
            crate::conv::GroupGeom::of(op, &attrs, x(0), opt(1), opt(2))?;
            eps(&attrs)?;
            vec![x(0).shape.clone()]
        }
        Op::MaxPool1dBackward
        | Op::MaxPool2dBackward
        | Op::AvgPool1dBackward
        | Op::AvgPool2dBackward
        | Op::AdaptiveAvgPool2dBackward
        | Op::InterpolateBackward => {
            vec![crate::conv::PoolBack::of(op, &attrs, x(0), opt(1))?.in_shape()]
        }
        Op::LayerNormBackward
        | Op::RmsNormBackward
        | Op::GroupNormBackward
        | Op::BatchNormBackward => {
            let stats = if def.op == Op::BatchNormBackward {
                [opt(2), opt(3)]
            } else {
                [None, None]
            };
            let w = if def.op == Op::BatchNormBackward {
                4
            } else {
                2
            };
            crate::norm_grad::NormBack::of(op, &attrs, x(0), x(1), opt(w), stats)?.out_shapes(x(1))
        }
        Op::CrossEntropy => {
            vec![crate::loss::CeGeom::of(op, &attrs, x(0), x(1), None)?.loss_shape()]
        }
        Op::Quantize => crate::quant::QuantizeGeom::of(op, &attrs, x(0))?
            .shapes
            .to_vec(),
        Op::Dequantize => {
            vec![crate::quant::DequantizeGeom::of(op, &attrs, x(0), x(1), opt(2))?.out_shape]
        }
        Op::MatmulWq => {
            vec![crate::quant::WqGeom::of(op, &attrs, x(0), x(1), x(2), opt(3))?.out_shape]
        }
        Op::MatmulI8 => {
            let g = crate::quant::I8Geom::of(op, &attrs, x(0), x(1), opt(2), opt(3))?;
            vec![vec![g.m, g.n]]
        }
        Op::CrossEntropyBackward => {
            crate::loss::CeGeom::of(op, &attrs, x(1), x(2), Some(x(0)))?;
            vec![x(1).shape.clone()]
        }
        Op::AdaptiveAvgPool2d | Op::Interpolate => {
            vec![crate::conv::ResampleGeom::of(op, &attrs, x(0))?.out_shape()]
        }
        Op::AdaptiveAvgPool3d => {
            vec![crate::conv::Adaptive3::of(op, &attrs, x(0))?.out_shape()]
        }
        Op::AdaptiveAvgPool3dBackward => {
            vec![crate::conv::Adaptive3::backward(op, &attrs, x(0))?.in_shape()]
        }
        Op::Conv1d
        | Op::Conv2d
        | Op::ConvTranspose1d
        | Op::ConvTranspose2d
        | Op::Conv1dBackwardInput
        | Op::Conv2dBackwardInput
        | Op::Conv1dBackwardWeight
        | Op::Conv2dBackwardWeight => {
            let (g, pass) =
                crate::conv::ConvGeom::of_call(op, &attrs, [Some(x(0)), Some(x(1)), opt(2)])?;
            vec![pass.result_shape(&g)]
        }
        Op::Rope => {
            let (xd, c, s) = (x(0), x(1), x(2));
            min_rank(op, "x", xd, 2)?;
            attrs.flag("interleaved", false)?;
            let (seq, d) = (xd.shape[xd.rank() - 2], xd.shape[xd.rank() - 1]);
            if d % 2 != 0 {
                return Err(invalid(format!(
                    "rope: the last dim of x is {d}, expected an even size"
                )));
            }
            for (name, t) in [("cos", c), ("sin", s)] {
                if t.shape != [seq, d / 2] {
                    return Err(invalid(format!(
                        "rope: {name} has shape {}, expected [{seq}, {}] for x of shape {}",
                        shape_str(&t.shape),
                        d / 2,
                        shape_str(&xd.shape)
                    )));
                }
            }
            vec![xd.shape.clone()]
        }
        Op::Attention => vec![crate::attention::validate(
            op,
            &attrs,
            x(0),
            x(1),
            x(2),
            opt(3),
        )?],
        Op::AttentionBackward => {
            let (g, q, k, v) = (x(0), x(1), x(2), x(3));
            let out = crate::attention::validate(op, &attrs, q, k, v, opt(4))?;
            if g.shape != out {
                return Err(invalid(format!(
                    "{op}: grad has shape {}, expected {} (the shape of attention's output)",
                    shape_str(&g.shape),
                    shape_str(&out)
                )));
            }
            vec![q.shape.clone(), k.shape.clone(), v.shape.clone()]
        }
    };
    // Output dtypes, from the declaration.
    let mut out = Vec::with_capacity(shapes.len());
    for (k, shape) in shapes.into_iter().enumerate() {
        let dtype = match def.output_dtypes.get(k) {
            Some(OutputDtype::Input(i)) => x(*i).dtype,
            Some(OutputDtype::Fixed(d)) => *d,
            Some(OutputDtype::Attr) => attrs.dtype("dtype")?,
            Some(OutputDtype::Rule) => match def.op {
                Op::Quantize => crate::quant::QuantizeGeom::of(op, &attrs, x(0))?.dtypes[k],
                Op::MatmulI8 => attrs.dtype("dtype")?,
                _ => {
                    return Err(Error::internal(format!(
                        "{op}: output {k}'s dtype has no rule"
                    )))
                }
            },
            None => {
                return Err(Error::internal(format!(
                    "{op}: the catalog declares no dtype for output {k}"
                )))
            }
        };
        out.push((dtype, shape));
    }
    Ok(out)
}
