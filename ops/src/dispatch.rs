//! The generic call: validate, allocate outputs, then run the device's native op, or the
//! portable kernel in a dialect the device accepts, or fail with `Unsupported`.

use std::sync::Arc;

use anyaccel_hal::{
    shape_str, AttrValue, DType, Dialect, Error, ErrorCode, Event, FailedEvent, OpCall, Queue,
    Result, Tensor, TensorDesc,
};

use crate::catalog::Op;
use crate::graph::{Entered, Outputs};

use crate::plan::{plan, OutputSpec};

/// Runs `op` on `queue` and returns its outputs (new contiguous tensors on the queue's device).
///
/// `inputs` are in the order of `docs/ops.md`, `None` for an absent optional input; `attrs` are
/// named as there. The work is queued: read the outputs (or `finish`) to wait for it.
pub fn call(
    queue: &dyn Queue,
    op: &str,
    inputs: &[Option<&Tensor>],
    attrs: &[(String, AttrValue)],
) -> Result<Vec<Tensor>> {
    let entered = Entered::new();
    let specs = validate(queue, op, inputs, attrs)?;
    let device = queue.device();
    let outputs = specs
        .iter()
        .map(|(dtype, shape)| Tensor::empty(&*device, *dtype, shape))
        .collect::<Result<Vec<_>>>()?;
    through_queue(queue, execute(queue, op, inputs, outputs.clone(), attrs))?;
    entered.record(queue, op, inputs, Outputs::New(&outputs), attrs);
    Ok(outputs)
}

/// The rule of docs/ops.md section 6 on every device: an error found while the op ran (an
/// index out of range, found by a kernel's flag that a launcher read back, or returned at once
/// by a plugin's `op_execute`) is not the call's result but the queue's sticky error, returned
/// at its next synchronization. The call returns only what validation finds.
pub(crate) fn through_queue(queue: &dyn Queue, result: Result<()>) -> Result<()> {
    match result {
        Err(e) if e.code() == ErrorCode::OutOfBounds => {
            let failed: Arc<dyn Event> = Arc::new(FailedEvent::new(e));
            queue.wait_event(&failed)
        }
        other => other,
    }
}

/// Runs `op` on `queue`, writing into `outputs`, whose dtypes and shapes must be those the op
/// produces. Outputs may have any layout whose elements are distinct and that does not overlap
/// an input.
pub fn call_into(
    queue: &dyn Queue,
    op: &str,
    inputs: &[Option<&Tensor>],
    outputs: &[&Tensor],
    attrs: &[(String, AttrValue)],
) -> Result<()> {
    let entered = Entered::new();
    let specs = validate(queue, op, inputs, attrs)?;
    if outputs.len() != specs.len() {
        return Err(Error::invalid_argument(format!(
            "{op}: {} outputs given, expected {}",
            outputs.len(),
            specs.len()
        )));
    }
    for (i, (out, (dtype, shape))) in outputs.iter().zip(&specs).enumerate() {
        check_tensor(queue, op, Operand::Output(i), out)?;
        if out.dtype() != *dtype || out.shape() != shape.as_slice() {
            return Err(Error::invalid_argument(format!(
                "{op}: output {i} is {} {}, expected {dtype} {}",
                out.dtype(),
                shape_str(out.shape()),
                shape_str(shape)
            )));
        }
        if !elements_distinct(out.desc()) {
            return Err(Error::invalid_argument(format!(
                "{op}: output {i} with shape {} and strides {:?} has elements at the same address; outputs need distinct elements",
                shape_str(out.shape()),
                out.strides()
            )));
        }
        for (j, input) in inputs.iter().enumerate() {
            if let Some(input) = input {
                if overlaps(out, input) {
                    return Err(Error::invalid_argument(format!(
                        "{op}: output {i} overlaps input {j} in memory; an output must not alias an input"
                    )));
                }
            }
        }
        for (j, other) in outputs.iter().enumerate().skip(i + 1) {
            if overlaps(out, other) {
                return Err(Error::invalid_argument(format!(
                    "{op}: outputs {i} and {j} overlap in memory"
                )));
            }
        }
    }
    through_queue(
        queue,
        execute(
            queue,
            op,
            inputs,
            outputs.iter().map(|t| (*t).clone()).collect(),
            attrs,
        ),
    )?;
    entered.record(queue, op, inputs, Outputs::Into(outputs), attrs);
    Ok(())
}

fn validate(
    queue: &dyn Queue,
    op: &str,
    inputs: &[Option<&Tensor>],
    attrs: &[(String, AttrValue)],
) -> Result<Vec<OutputSpec>> {
    for (i, t) in inputs.iter().enumerate() {
        if let Some(t) = t {
            check_tensor(queue, op, Operand::Input(i), t)?;
        }
    }
    let descs: smallvec::SmallVec<[Option<&TensorDesc>; 8]> =
        inputs.iter().map(|t| t.map(|t| t.desc())).collect();
    plan(op, &descs, attrs)
}

/// An operand of a call, named in messages as `input 0`, `output 1`, ...
#[derive(Clone, Copy)]
pub(crate) enum Operand {
    Input(usize),
    Output(usize),
}

impl std::fmt::Display for Operand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Operand::Input(i) => write!(f, "input {i}"),
            Operand::Output(i) => write!(f, "output {i}"),
        }
    }
}

pub(crate) fn check_tensor(queue: &dyn Queue, op: &str, what: Operand, t: &Tensor) -> Result<()> {
    if t.device_id() != queue.device_id() {
        return Err(Error::invalid_argument(format!(
            "{op}: {what} is on device {}, but the queue is on {}: move it first",
            t.device_id(),
            queue.device_id()
        )));
    }
    let size = t.dtype().size_in_bytes();
    if !t.view().offset().is_multiple_of(size) {
        return Err(Error::invalid_argument(format!(
            "{op}: {what} starts at byte {} of its buffer, which is not a multiple of its {size}-byte {} elements",
            t.view().offset(),
            t.dtype()
        )));
    }
    Ok(())
}

/// True when no two elements of the layout share an address.
fn elements_distinct(desc: &TensorDesc) -> bool {
    if desc.numel() <= 1 || desc.is_contiguous() {
        return true;
    }
    let mut dims: Vec<(usize, usize)> = desc
        .shape
        .iter()
        .copied()
        .zip(desc.strides.iter().copied())
        .filter(|&(d, _)| d > 1)
        .collect();
    dims.sort_by_key(|&(_, s)| s);
    let mut extent = 0usize; // furthest offset reachable by the dims before
    for (d, s) in dims {
        if s <= extent {
            return false;
        }
        extent += (d - 1) * s;
    }
    true
}

/// True when the byte ranges that two tensors span intersect in one buffer.
pub(crate) fn overlaps(a: &Tensor, b: &Tensor) -> bool {
    if !a.view().buffer().same_memory(b.view().buffer()) || a.numel() == 0 || b.numel() == 0 {
        return false;
    }
    let range = |t: &Tensor| {
        let size = t.dtype().size_in_bytes();
        let start = t.view().offset() + t.desc().offset * size;
        (start, start + t.desc().span() * size)
    };
    let (a0, a1) = range(a);
    let (b0, b1) = range(b);
    a0 < b1 && b0 < a1
}

pub(crate) fn execute(
    queue: &dyn Queue,
    op: &str,
    inputs: &[Option<&Tensor>],
    outputs: Vec<Tensor>,
    attrs: &[(String, AttrValue)],
) -> Result<()> {
    let device = queue.device();
    let caps = device.caps();
    for t in inputs.iter().flatten().copied().chain(outputs.iter()) {
        if !caps.has_dtype(t.dtype()) {
            return Err(Error::unsupported(format!(
                "{op}: device {} does not hold {} tensors",
                device.info().id,
                t.dtype()
            )));
        }
    }
    let mut call = OpCall {
        op: op.to_string(),
        inputs: inputs.iter().map(|t| t.cloned()).collect(),
        outputs,
        attrs: attrs.to_vec(),
    };
    let rewrite = match route(&*device, &call)? {
        Route::Native => return device.execute_native_op(queue, &call),
        Route::Nothing => return Ok(()),
        Route::Kernels => return launch_dialects(queue, &call),
        Route::Rewrite(op) => op,
    };
    match rewrite {
        // `where(mask, value, x)`, which may be native where this op is not.
        Op::MaskedFill => {
            let (x, mask) = (operand(&call, 0)?, operand(&call, 1)?);
            let value = crate::attrs::Attrs::of(&call)?.float("value")?;
            let v = scalar(queue, value, x.dtype())?;
            return execute(
                queue,
                "where",
                &[Some(&mask), Some(&v), Some(&x)],
                call.outputs,
                &[],
            );
        }
        // A scatter of ones into zeros along a new last axis, under its own name.
        Op::OneHot => {
            let idx = operand(&call, 0)?;
            let out = call.outputs[0].clone();
            let mut desc = idx.desc().clone();
            desc.shape.push(1);
            desc.strides.push(1);
            let column = idx.with_desc(desc)?;
            let zero = scalar(queue, 0.0, out.dtype())?.broadcast_to(out.shape())?;
            let one = scalar(queue, 1.0, out.dtype())?.broadcast_to(column.shape())?;
            call.inputs = vec![Some(zero), Some(column), Some(one)];
        }
        Op::SoftmaxBackward | Op::LogSoftmaxBackward => return softmax_backward(queue, &call),
        Op::AdaptiveAvgPool3d | Op::AdaptiveAvgPool3dBackward => {
            return adaptive_avg_pool3d(queue, &call)
        }
        // An `index_add` of the gradient's rows into zeros, under its own name; then the
        // padding row is zeroed.
        Op::EmbeddingBackward => {
            let (grad, idx) = (operand(&call, 0)?, operand(&call, 1)?);
            let out = call.outputs[0].clone();
            let d = out.shape()[1];
            let n = idx.numel();
            let rows = dense(queue, &grad)?.reshape(&[n, d])?;
            let flat = dense(queue, &idx)?.reshape(&[n])?;
            let zero = scalar(queue, 0.0, out.dtype())?.broadcast_to(out.shape())?;
            let padding = crate::attrs::Attrs::of(&call)?.int_opt("padding_idx")?;
            call.inputs = vec![Some(zero), Some(flat), Some(rows)];
            launch_dialects(queue, &call)?;
            if let Some(p) = padding {
                let v = out.shape()[0] as i64;
                let row = out.narrow(0, p.rem_euclid(v.max(1)) as usize, 1)?;
                let fill = [
                    ("value".to_string(), AttrValue::Float(0.0)),
                    (
                        "dtype".to_string(),
                        AttrValue::Str(out.dtype().name().into()),
                    ),
                    ("shape".to_string(), AttrValue::Ints(vec![1, d as i64])),
                ];
                execute(queue, "fill", &[], vec![row], &fill)?;
            }
            return Ok(());
        }
        _ => {}
    }
    launch_dialects(queue, &call)
}

/// Where [`execute`] takes a call.
enum Route {
    /// The device's own op.
    Native,
    /// No output element to write.
    Nothing,
    /// Rewritten into other calls, or launched with other inputs, under the op's own name.
    Rewrite(Op),
    /// The op's kernels in the first dialect the device accepts.
    Kernels,
}

fn route(device: &dyn anyaccel_hal::Device, call: &OpCall) -> Result<Route> {
    let caps = device.caps();
    if caps.native_ops.contains(&call.op) && device.supports_native_op(call) {
        return Ok(Route::Native);
    }
    if call.outputs.iter().all(|t| t.numel() == 0) {
        return Ok(Route::Nothing);
    }
    let op = crate::catalog::op_of(&call.op)?;
    Ok(match op {
        // The host dialect has its own row kernel.
        Op::SoftmaxBackward | Op::LogSoftmaxBackward if caps.has_dialect(&Dialect::Host) => {
            Route::Kernels
        }
        Op::MaskedFill
        | Op::OneHot
        | Op::SoftmaxBackward
        | Op::LogSoftmaxBackward
        | Op::EmbeddingBackward
        | Op::AdaptiveAvgPool3d
        | Op::AdaptiveAvgPool3dBackward => Route::Rewrite(op),
        _ => Route::Kernels,
    })
}

/// The host kernel of a call, prepared once for a recorded graph to launch again, where
/// [`execute`] takes the call to the kernels of a device of the host dialect (its [`route`]).
/// `None` otherwise (a replay then runs [`execute`]).
pub(crate) fn prepare_host(
    queue: &dyn Queue,
    op: &str,
    inputs: &[Option<&Tensor>],
    outputs: &[Tensor],
    attrs: &[(String, AttrValue)],
) -> Result<Option<crate::host::Prepared>> {
    let device = queue.device();
    if !device.caps().has_dialect(&Dialect::Host) {
        return Ok(None);
    }
    let call = OpCall {
        op: op.to_string(),
        inputs: inputs.iter().map(|t| t.cloned()).collect(),
        outputs: outputs.to_vec(),
        attrs: attrs.to_vec(),
    };
    if !matches!(route(&*device, &call)?, Route::Kernels) {
        return Ok(None);
    }
    crate::host::prepare(&*device, &call).map(Some)
}

/// Runs a call with the kernels of the first dialect the device accepts.
fn launch_dialects(queue: &dyn Queue, call: &OpCall) -> Result<()> {
    let device = queue.device();
    let caps = device.caps();
    let op = call.op.as_str();
    if caps.has_dialect(&Dialect::Host) {
        return crate::host::launch(&*device, queue, call);
    }
    if caps.has_dialect(&Dialect::Wgsl) {
        return crate::wgsl::launch(&*device, queue, call);
    }
    if caps.has_dialect(&Dialect::OpenClC) {
        return crate::clang::launch(&*device, queue, call, Dialect::OpenClC);
    }
    if caps.has_dialect(&Dialect::Cuda) {
        return crate::clang::launch(&*device, queue, call, Dialect::Cuda);
    }
    let dtype = call
        .inputs
        .iter()
        .flatten()
        .next()
        .map(|t| t.dtype())
        .unwrap_or(call.outputs[0].dtype());
    Err(Error::unsupported(format!(
        "{op} ({dtype}): device {} offers no native {op} and no kernel dialect that has one (it accepts: {})",
        device.info().id,
        caps.dialects.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
    )))
}

/// `t`, or a contiguous copy of it.
fn dense(queue: &dyn Queue, t: &Tensor) -> Result<Tensor> {
    if t.desc().is_contiguous() {
        return Ok(t.clone());
    }
    let c = Tensor::empty(&*queue.device(), t.dtype(), t.shape())?;
    execute(queue, "copy", &[Some(t)], vec![c.clone()], &[])?;
    Ok(c)
}

/// `adaptive_avg_pool3d` and its gradient from `adaptive_avg_pool2d` and its gradient: a box
/// average is separable (its windows are products of per-dimension windows, its divisor the
/// product of their lengths), so the mean over (H, W) windows of each depth slice, then over D
/// windows of those means, is the 3-D mean; the gradient runs the two steps in reverse. In f32
/// (f16 and bf16 widened exactly), rounded once into the output.
fn adaptive_avg_pool3d(queue: &dyn Queue, call: &OpCall) -> Result<()> {
    let attrs = crate::attrs::Attrs::of(call)?;
    let x = operand(call, 0)?;
    let out = call.outputs[0].clone();
    let backward = call.op.ends_with("_backward");
    let g = if backward {
        crate::conv::Adaptive3::backward(&call.op, &attrs, x.desc())?
    } else {
        crate::conv::Adaptive3::of(&call.op, &attrs, x.desc())?
    };
    let (n, c, [d, h, w], [od, oh, ow]) = (g.n, g.c, g.input, g.out);
    // The merged sizes of the two steps' views (the intermediate [N C, 1, D, OH OW] may hold
    // more elements than x or the output); `Tensor::empty` checks each shape's element count.
    let mul = |a: usize, b: usize| {
        a.checked_mul(b).ok_or_else(|| {
            Error::invalid_argument(format!(
                "{}: the sizes of its intermediate 2-D steps overflow",
                call.op
            ))
        })
    };
    let (nc, cd, ohw) = (mul(n, c)?, mul(c, d)?, mul(oh, ow)?);
    let device = queue.device();
    let wide = DType::F32;
    // The operand in f32, contiguous.
    let src = if x.dtype() == wide {
        dense(queue, &x)?
    } else {
        let t = Tensor::empty(&*device, wide, x.shape())?;
        let to = [("dtype".to_string(), AttrValue::Str(wide.name().into()))];
        execute(queue, "cast", &[Some(&x)], vec![t.clone()], &to)?;
        t
    };
    let sizes = |v: &[usize]| AttrValue::Ints(v.iter().map(|&s| s as i64).collect());
    // One 2-D step: `op` of `from` (viewed as `shape`) with `attr`, into `into` (a view of
    // shape `result`) or a new f32 tensor.
    let step = |op: &str,
                from: &Tensor,
                shape: &[usize],
                attr: (&str, &[usize]),
                result: &[usize],
                into: Option<Tensor>| {
        let t = match into {
            Some(t) => t,
            None => Tensor::empty(&*device, wide, result)?,
        };
        let a = [(attr.0.to_string(), sizes(attr.1))];
        execute(
            queue,
            op,
            &[Some(&from.reshape(shape)?)],
            vec![t.clone()],
            &a,
        )?;
        Ok::<Tensor, Error>(t)
    };
    // The last step's shape, and the output seen with it where the output is f32 and can be
    // (a contiguous one): the last step then writes the result in place of a copy.
    let last: [usize; 4] = if backward {
        [n, cd, h, w]
    } else {
        [nc, 1, od, ohw]
    };
    let direct = if out.dtype() == wide && out.desc().is_contiguous() {
        Some(out.reshape(&last)?)
    } else {
        None
    };
    let wrote = direct.is_some();
    let result = if backward {
        // grad [N C, 1, OD, OH OW] -> [N C, 1, D, OH OW] (windows along D), then as
        // [N, C D, OH, OW] -> [N, C D, H, W].
        let a = [nc, 1, d, ohw];
        let g1 = step(
            "adaptive_avg_pool2d_backward",
            &src,
            &[nc, 1, od, ohw],
            ("input_size", &a),
            &a,
            None,
        )?;
        step(
            "adaptive_avg_pool2d_backward",
            &g1,
            &[n, cd, oh, ow],
            ("input_size", &last),
            &last,
            direct,
        )?
    } else {
        // x [N, C D, H, W] -> [N, C D, OH, OW], then as [N C, 1, D, OH OW] -> [N C, 1, OD, OH OW]
        // (the width's windows are single elements).
        let y = step(
            "adaptive_avg_pool2d",
            &src,
            &[n, cd, h, w],
            ("output_size", &[oh, ow]),
            &[n, cd, oh, ow],
            None,
        )?;
        step(
            "adaptive_avg_pool2d",
            &y,
            &[nc, 1, d, ohw],
            ("output_size", &[od, ohw]),
            &last,
            direct,
        )?
    };
    if wrote {
        return Ok(());
    }
    let result = result.reshape(out.shape())?;
    if out.dtype() == wide {
        execute(queue, "copy", &[Some(&result)], vec![out], &[])
    } else {
        let to = [(
            "dtype".to_string(),
            AttrValue::Str(out.dtype().name().into()),
        )];
        execute(queue, "cast", &[Some(&result)], vec![out], &to)
    }
}

/// `softmax_backward(grad, y) = y * (grad - sum(grad * y))` and `log_softmax_backward(grad, y)
/// = grad - exp(y) * sum(grad)`, sums along `axis`, from the ops of the catalog, computed in f32
/// and rounded once.
fn softmax_backward(queue: &dyn Queue, call: &OpCall) -> Result<()> {
    let (g, y) = (operand(call, 0)?, operand(call, 1)?);
    let out = call.outputs[0].clone();
    let rank = y.rank();
    let axis = crate::attrs::Attrs::of(call)?.axis("axis", Some(-1), rank)?;
    let device = queue.device();
    let wide = DType::F32;
    let tmp = |shape: &[usize]| Tensor::empty(&*device, wide, shape);
    let up = |t: &Tensor| -> Result<Tensor> {
        if t.dtype() == wide {
            return Ok(t.clone());
        }
        let w = tmp(t.shape())?;
        let to = [("dtype".to_string(), AttrValue::Str(wide.name().into()))];
        execute(queue, "cast", &[Some(t)], vec![w.clone()], &to)?;
        Ok(w)
    };
    let run = |op: &str, a: &Tensor, b: &Tensor, to: &Tensor| {
        execute(queue, op, &[Some(a), Some(b)], vec![to.clone()], &[])
    };
    let (g, y) = (up(&g)?, up(&y)?);
    let mut kept = y.shape().to_vec();
    kept[axis] = 1;
    let sum = |t: &Tensor| -> Result<Tensor> {
        let s = tmp(&kept)?;
        let a = [
            ("axes".to_string(), AttrValue::Ints(vec![axis as i64])),
            ("keepdim".to_string(), AttrValue::Int(1)),
        ];
        execute(queue, "sum", &[Some(t)], vec![s.clone()], &a)?;
        Ok(s)
    };
    let result = if out.dtype() == wide {
        out.clone()
    } else {
        tmp(out.shape())?
    };
    if call.op == "softmax_backward" {
        let gy = tmp(y.shape())?;
        run("mul", &g, &y, &gy)?;
        let s = sum(&gy)?;
        run("sub", &g, &s, &gy)?;
        run("mul", &y, &gy, &result)?;
    } else {
        let s = sum(&g)?;
        let e = tmp(y.shape())?;
        execute(queue, "exp", &[Some(&y)], vec![e.clone()], &[])?;
        let t = tmp(y.shape())?;
        run("mul", &e, &s, &t)?;
        run("sub", &g, &t, &result)?;
    }
    if result.dtype() != out.dtype() {
        let to = [(
            "dtype".to_string(),
            AttrValue::Str(out.dtype().name().into()),
        )];
        execute(queue, "cast", &[Some(&result)], vec![out], &to)?;
    }
    Ok(())
}

/// Input `i` of a validated call.
fn operand(call: &OpCall, i: usize) -> Result<Tensor> {
    call.inputs
        .get(i)
        .cloned()
        .flatten()
        .ok_or_else(|| Error::internal(format!("{}: input {i} missing", call.op)))
}

/// A rank-0 tensor of `dtype` on the queue's device holding `value` (converted as `fill` does).
fn scalar(queue: &dyn Queue, value: f64, dtype: DType) -> Result<Tensor> {
    let t = Tensor::empty(&*queue.device(), dtype, &[])?;
    queue.write(t.view(), &crate::movement::scalar_bytes(value, dtype))?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_elements() {
        let c = TensorDesc::contiguous(DType::F32, &[3, 4]);
        assert!(elements_distinct(&c));
        let t = TensorDesc {
            strides: vec![1, 3],
            shape: vec![3, 4],
            ..c.clone()
        };
        assert!(elements_distinct(&t));
        let bcast = TensorDesc {
            strides: vec![0, 1],
            ..c.clone()
        };
        assert!(!elements_distinct(&bcast));
        let overlapping = TensorDesc {
            strides: vec![2, 1],
            ..c
        };
        assert!(!elements_distinct(&overlapping));
    }
}
