//! Ops: the generic entry (every op of `docs/ops.md` by name) and typed wrappers.

use std::ffi::c_char;
use std::sync::Arc;

use facade::ops::catalog::op_def;
use facade::{AttrValue, DType, Error, Result, Tensor};

use crate::handle::from_ptr;
use crate::queue::{anyaccel_queue_t, queue, QueueObj};
use crate::runtime::{anyaccel_dtype, dtype_arg};
use crate::tensor::{anyaccel_tensor_t, register_tensor, tensor, TensorObj};
use crate::{
    anyaccel_status, check_device, check_writable, guard, guard_out, non_null, slice_arg, str_arg,
};

/// The kind of an attribute value: one of the `ANYACCEL_ATTR_*` numbers.
pub type anyaccel_attr_kind = u32;

/// An integer (`int_value`): axes, counts, and booleans as 0 or 1.
pub const ANYACCEL_ATTR_INT: anyaccel_attr_kind = 1;
/// A float (`float_value`): eps, scale, bounds, fill values.
pub const ANYACCEL_ATTR_FLOAT: anyaccel_attr_kind = 2;
/// A list of integers (`ints`, `n_ints`): axes, shapes.
pub const ANYACCEL_ATTR_INTS: anyaccel_attr_kind = 3;
/// A string (`str_value`): dtype names, modes.
pub const ANYACCEL_ATTR_STR: anyaccel_attr_kind = 4;

/// One attribute of an op call, as `docs/ops.md` names it: `name` and a value of `kind`. Only
/// the field that `kind` selects is read. The `anyaccel_attr_int`, `anyaccel_attr_float`,
/// `anyaccel_attr_ints` and `anyaccel_attr_str` helpers of the header fill one in.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct anyaccel_attr_t {
    /// The attribute's name, e.g. `"axis"`.
    pub name: *const c_char,
    /// Which value field is set: `ANYACCEL_ATTR_INT`, `_FLOAT`, `_INTS` or `_STR`.
    pub kind: anyaccel_attr_kind,
    /// The value of an `ANYACCEL_ATTR_INT`.
    pub int_value: i64,
    /// The value of an `ANYACCEL_ATTR_FLOAT`.
    pub float_value: f64,
    /// The values of an `ANYACCEL_ATTR_INTS` (NULL allowed when `n_ints` is 0).
    pub ints: *const i64,
    /// The number of values of an `ANYACCEL_ATTR_INTS`.
    pub n_ints: usize,
    /// The value of an `ANYACCEL_ATTR_STR`, NUL-terminated.
    pub str_value: *const c_char,
}

/// Reads C attributes.
///
/// # Safety
/// `attrs` must be NULL or point to `n` attributes whose pointers follow their own contracts.
unsafe fn attrs_arg(attrs: *const anyaccel_attr_t, n: usize) -> Result<Vec<(String, AttrValue)>> {
    // SAFETY: by the caller's contract.
    let list = unsafe { slice_arg(attrs, n, "attrs") }?;
    let mut out = Vec::with_capacity(n);
    for (i, a) in list.iter().enumerate() {
        // SAFETY: NULL or NUL-terminated by the caller's contract.
        let name = unsafe { str_arg(a.name, &format!("attrs[{i}].name")) }?.to_string();
        let value = match a.kind {
            ANYACCEL_ATTR_INT => AttrValue::Int(a.int_value),
            ANYACCEL_ATTR_FLOAT => AttrValue::Float(a.float_value),
            ANYACCEL_ATTR_INTS => {
                // SAFETY: NULL only when empty, else `n_ints` values by the caller's contract.
                let ints = unsafe { slice_arg(a.ints, a.n_ints, &format!("attrs[{i}].ints")) }?;
                AttrValue::Ints(ints.to_vec())
            }
            ANYACCEL_ATTR_STR => {
                // SAFETY: NULL or NUL-terminated by the caller's contract.
                let s = unsafe { str_arg(a.str_value, &format!("attrs[{i}].str_value")) }?;
                AttrValue::Str(s.to_string())
            }
            other => {
                return Err(Error::invalid_argument(format!(
                    "attrs[{i}] (`{name}`) has kind {other}: expected ANYACCEL_ATTR_INT (1), _FLOAT (2), _INTS (3) or _STR (4)"
                )))
            }
        };
        out.push((name, value));
    }
    Ok(out)
}

/// The number of outputs of an op, or an error listing the ops.
fn output_count(op: &str) -> Result<usize> {
    op_def(op).map(|d| d.outputs.len()).ok_or_else(|| {
        Error::invalid_argument(format!(
            "`{op}` is not an op of docs/ops.md; expected one of: {}",
            facade::ops::CATALOG
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Input tensors from C; NULL entries are absent optional inputs.
///
/// # Safety
/// `inputs` must be NULL or point to `n` handles.
unsafe fn inputs_arg(
    q: &QueueObj,
    inputs: *const *mut anyaccel_tensor_t,
    n: usize,
) -> Result<Vec<Option<Arc<TensorObj>>>> {
    // SAFETY: by the caller's contract.
    let handles = unsafe { slice_arg(inputs, n, "inputs") }?;
    handles
        .iter()
        .enumerate()
        .map(|(i, &h)| {
            if h.is_null() {
                return Ok(None);
            }
            let what = format!("inputs[{i}]");
            let t = tensor(h, &what)?;
            check_device(&what, &t.device, &q.device)?;
            Ok(Some(t))
        })
        .collect()
}

fn run(
    q: &QueueObj,
    op: &str,
    inputs: &[Option<Arc<TensorObj>>],
    attrs: &[(String, AttrValue)],
) -> Result<Vec<*mut anyaccel_tensor_t>> {
    let refs: Vec<Option<&Tensor>> = inputs
        .iter()
        .map(|t| t.as_ref().map(|t| &t.tensor))
        .collect();
    let outputs = facade::ops::call(&*q.queue, op, &refs, attrs)?;
    let mut handles = Vec::with_capacity(outputs.len());
    for tensor in outputs {
        match register_tensor(TensorObj {
            tensor,
            device: q.device.clone(),
            read_only: false,
        }) {
            Ok(h) => handles.push(h),
            Err(e) => {
                for h in handles {
                    let _ = crate::handle::remove::<TensorObj>(
                        from_ptr(h),
                        crate::handle::Kind::Tensor,
                        "output",
                    );
                }
                return Err(e);
            }
        }
    }
    Ok(handles)
}

fn run_into(
    q: &QueueObj,
    op: &str,
    inputs: &[Option<Arc<TensorObj>>],
    outputs: &[Arc<TensorObj>],
    attrs: &[(String, AttrValue)],
) -> Result<()> {
    for (i, out) in outputs.iter().enumerate() {
        check_device(&format!("outputs[{i}]"), &out.device, &q.device)?;
        check_writable(&format!("outputs[{i}]"), out.read_only)?;
    }
    let refs: Vec<Option<&Tensor>> = inputs
        .iter()
        .map(|t| t.as_ref().map(|t| &t.tensor))
        .collect();
    let outs: Vec<&Tensor> = outputs.iter().map(|t| &t.tensor).collect();
    facade::ops::call_into(&*q.queue, op, &refs, &outs, attrs)
}

/// Runs op `op` of `docs/ops.md` on queue `q` and returns its outputs as new tensors (destroy
/// them with `anyaccel_tensor_destroy`).
///
/// - `inputs`: `n_inputs` tensors in the order of the op's signature; a NULL entry is an absent
///   optional input (e.g. matmul's `bias`). Every tensor must be of the queue's device.
/// - `attrs`: `n_attrs` attributes (NULL allowed when 0).
/// - `outputs`: room for `n_outputs` handles, at least the op's number of outputs (1; 2 for
///   `topk` and `sort`; see `anyaccel_op_output_count`). Entries past the op's outputs are set to NULL.
///
/// The work is queued: read an output (or finish the queue) to wait for it. Validation errors
/// (dtype, shape, attribute) are `ANYACCEL_ERROR_INVALID_ARGUMENT` before any work is queued; an
/// op or dtype the device does not offer is `ANYACCEL_ERROR_UNSUPPORTED`, naming both.
///
/// # Safety
/// `op` must be NULL or NUL-terminated; `inputs` NULL or `n_inputs` handles; `attrs` NULL or
/// `n_attrs` attributes; `outputs` NULL or room for `n_outputs` handles.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_op(
    q: *mut anyaccel_queue_t,
    op: *const c_char,
    inputs: *const *mut anyaccel_tensor_t,
    n_inputs: usize,
    attrs: *const anyaccel_attr_t,
    n_attrs: usize,
    outputs: *mut *mut anyaccel_tensor_t,
    n_outputs: usize,
) -> anyaccel_status {
    guard("anyaccel_op", || {
        non_null(outputs, "outputs")?;
        for i in 0..n_outputs {
            // SAFETY: room for `n_outputs` handles by the caller's contract.
            unsafe { outputs.add(i).write(std::ptr::null_mut()) };
        }
        // SAFETY: NULL or NUL-terminated by the caller's contract.
        let op = unsafe { str_arg(op, "op") }?;
        let count = output_count(op)?;
        if n_outputs < count {
            return Err(Error::invalid_argument(format!(
                "{op}: `n_outputs` is {n_outputs} but the op has {count} outputs: expected room for all of them"
            )));
        }
        let q = queue(q)?;
        // SAFETY: by the caller's contract.
        let inputs = unsafe { inputs_arg(&q, inputs, n_inputs) }?;
        // SAFETY: by the caller's contract.
        let attrs = unsafe { attrs_arg(attrs, n_attrs) }?;
        let handles = run(&q, op, &inputs, &attrs)?;
        for (i, h) in handles.into_iter().enumerate() {
            // SAFETY: `i < count <= n_outputs`.
            unsafe { outputs.add(i).write(h) };
        }
        Ok(())
    })
}

/// Runs op `op` writing into the given `outputs`, whose dtypes and shapes must be those the op
/// produces; they may have any layout whose elements are distinct and must not overlap an
/// input. Arguments as for `anyaccel_op`; `n_outputs` must equal the op's number of outputs.
///
/// # Safety
/// As for `anyaccel_op`; `outputs` must be NULL or point to `n_outputs` handles.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_op_into(
    q: *mut anyaccel_queue_t,
    op: *const c_char,
    inputs: *const *mut anyaccel_tensor_t,
    n_inputs: usize,
    attrs: *const anyaccel_attr_t,
    n_attrs: usize,
    outputs: *const *mut anyaccel_tensor_t,
    n_outputs: usize,
) -> anyaccel_status {
    guard("anyaccel_op_into", || {
        // SAFETY: NULL or NUL-terminated by the caller's contract.
        let op = unsafe { str_arg(op, "op") }?;
        output_count(op)?;
        let q = queue(q)?;
        // SAFETY: by the caller's contract.
        let inputs = unsafe { inputs_arg(&q, inputs, n_inputs) }?;
        // SAFETY: by the caller's contract.
        let attrs = unsafe { attrs_arg(attrs, n_attrs) }?;
        non_null(outputs, "outputs")?;
        // SAFETY: `n_outputs` handles by the caller's contract.
        let outs = unsafe { slice_arg(outputs, n_outputs, "outputs") }?;
        let outs = outs
            .iter()
            .enumerate()
            .map(|(i, &h)| tensor(h, &format!("outputs[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        run_into(&q, op, &inputs, &outs, &attrs)
    })
}

/// Sets `*out` to the number of outputs of op `op` (1, or 2 for `topk`); an unknown name is
/// `ANYACCEL_ERROR_INVALID_ARGUMENT` listing the ops.
///
/// # Safety
/// `op` must be NULL or NUL-terminated; `out` NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_op_output_count(
    op: *const c_char,
    out: *mut usize,
) -> anyaccel_status {
    let body = || {
        // SAFETY: NULL or NUL-terminated by the caller's contract.
        let op = unsafe { str_arg(op, "op") }?;
        output_count(op)
    };
    // SAFETY: `out` is NULL or valid for writing a `size_t` by the caller's contract.
    unsafe { guard_out("anyaccel_op_output_count", "out", out, body) }
}

/// Runs a one-output op for a typed wrapper: resolves handles, runs, returns the new tensor
/// (the wrapper stores it through `guard_out`, which cleared `out` before this ran).
fn typed(
    q: *mut anyaccel_queue_t,
    op: &str,
    inputs: &[(*mut anyaccel_tensor_t, &str, bool)],
    attrs: Vec<(String, AttrValue)>,
) -> Result<*mut anyaccel_tensor_t> {
    let q = queue(q)?;
    let inputs = typed_inputs(&q, inputs)?;
    let mut handles = run(&q, op, &inputs, &attrs)?;
    handles
        .pop()
        .ok_or_else(|| Error::internal(format!("{op}: no output")))
}

/// The `_into` form of `typed`.
fn typed_into(
    q: *mut anyaccel_queue_t,
    op: &str,
    inputs: &[(*mut anyaccel_tensor_t, &str, bool)],
    attrs: Vec<(String, AttrValue)>,
    out: *mut anyaccel_tensor_t,
) -> Result<()> {
    let q = queue(q)?;
    let inputs = typed_inputs(&q, inputs)?;
    let out = tensor(out, "out")?;
    run_into(&q, op, &inputs, &[out], &attrs)
}

/// Resolves `(handle, name, optional)` inputs: a NULL required input is an error naming it.
fn typed_inputs(
    q: &QueueObj,
    inputs: &[(*mut anyaccel_tensor_t, &str, bool)],
) -> Result<Vec<Option<Arc<TensorObj>>>> {
    inputs
        .iter()
        .map(|&(h, name, optional)| {
            if h.is_null() && optional {
                return Ok(None);
            }
            let t = tensor(h, name)?;
            check_device(name, &t.device, &q.device)?;
            Ok(Some(t))
        })
        .collect()
}

fn attr(name: &str, value: AttrValue) -> (String, AttrValue) {
    (name.to_string(), value)
}

fn binary(
    q: *mut anyaccel_queue_t,
    op: &str,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
) -> Result<*mut anyaccel_tensor_t> {
    typed(q, op, &[(a, "a", false), (b, "b", false)], Vec::new())
}

fn binary_into(
    q: *mut anyaccel_queue_t,
    op: &str,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut anyaccel_tensor_t,
) -> Result<()> {
    typed_into(q, op, &[(a, "a", false), (b, "b", false)], Vec::new(), out)
}

// The typed wrappers are written out one by one (not by a macro) so that cbindgen sees them.

/// `out = a + b`, elementwise with NumPy broadcasting (op `add`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_add(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe { guard_out("anyaccel_add", "out", out, || binary(q, "add", a, b)) }
}

/// `a + b` written into `out` (op `add`).
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_add_into(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_add_into", || binary_into(q, "add", a, b, out))
}

/// `out = a - b`, elementwise with NumPy broadcasting (op `sub`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_sub(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe { guard_out("anyaccel_sub", "out", out, || binary(q, "sub", a, b)) }
}

/// `a - b` written into `out` (op `sub`).
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_sub_into(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_sub_into", || binary_into(q, "sub", a, b, out))
}

/// `out = a * b`, elementwise with NumPy broadcasting (op `mul`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_mul(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe { guard_out("anyaccel_mul", "out", out, || binary(q, "mul", a, b)) }
}

/// `a * b` written into `out` (op `mul`).
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_mul_into(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_mul_into", || binary_into(q, "mul", a, b, out))
}

/// `out = a / b`, elementwise with NumPy broadcasting (op `div`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_div(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe { guard_out("anyaccel_div", "out", out, || binary(q, "div", a, b)) }
}

/// `a / b` written into `out` (op `div`).
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_div_into(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_div_into", || binary_into(q, "div", a, b, out))
}

/// `out = maximum(a, b)`, elementwise with NumPy broadcasting (op `maximum`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_maximum(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_maximum", "out", out, || {
            binary(q, "maximum", a, b)
        })
    }
}

/// `maximum(a, b)` written into `out` (op `maximum`).
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_maximum_into(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_maximum_into", || {
        binary_into(q, "maximum", a, b, out)
    })
}

/// `out = minimum(a, b)`, elementwise with NumPy broadcasting (op `minimum`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_minimum(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_minimum", "out", out, || {
            binary(q, "minimum", a, b)
        })
    }
}

/// `minimum(a, b)` written into `out` (op `minimum`).
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_minimum_into(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    out: *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_minimum_into", || {
        binary_into(q, "minimum", a, b, out)
    })
}

/// `out = neg(x)`, elementwise (op `neg`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_neg(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_neg", "out", out, || {
            typed(q, "neg", &[(x, "x", false)], Vec::new())
        })
    }
}

/// `out = abs(x)`, elementwise (op `abs`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_abs(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_abs", "out", out, || {
            typed(q, "abs", &[(x, "x", false)], Vec::new())
        })
    }
}

/// `out = exp(x)`, elementwise (op `exp`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_exp(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_exp", "out", out, || {
            typed(q, "exp", &[(x, "x", false)], Vec::new())
        })
    }
}

/// `out = log(x)`, elementwise (op `log`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_log(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_log", "out", out, || {
            typed(q, "log", &[(x, "x", false)], Vec::new())
        })
    }
}

/// `out = sqrt(x)`, elementwise (op `sqrt`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_sqrt(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_sqrt", "out", out, || {
            typed(q, "sqrt", &[(x, "x", false)], Vec::new())
        })
    }
}

/// `out = relu(x)`, elementwise (op `relu`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_relu(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_relu", "out", out, || {
            typed(q, "relu", &[(x, "x", false)], Vec::new())
        })
    }
}

/// `out = sigmoid(x)`, elementwise (op `sigmoid`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_sigmoid(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_sigmoid", "out", out, || {
            typed(q, "sigmoid", &[(x, "x", false)], Vec::new())
        })
    }
}

/// `out = tanh(x)`, elementwise (op `tanh`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_tanh(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_tanh", "out", out, || {
            typed(q, "tanh", &[(x, "x", false)], Vec::new())
        })
    }
}

/// `out = silu(x)`, elementwise (op `silu`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_silu(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_silu", "out", out, || {
            typed(q, "silu", &[(x, "x", false)], Vec::new())
        })
    }
}

/// `out = a contiguous copy of x`, elementwise (op `copy`); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_copy(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_copy", "out", out, || {
            typed(q, "copy", &[(x, "x", false)], Vec::new())
        })
    }
}

/// `out = a @ b (+ bias)`: batched matrix product, batch dims broadcast, transposes through
/// strides; `bias` may be NULL. A new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_matmul(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    bias: *mut anyaccel_tensor_t,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_matmul", "out", out, || {
            let inputs = [(a, "a", false), (b, "b", false), (bias, "bias", true)];
            typed(q, "matmul", &inputs, Vec::new())
        })
    }
}

/// `anyaccel_matmul` written into `out`.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_matmul_into(
    q: *mut anyaccel_queue_t,
    a: *mut anyaccel_tensor_t,
    b: *mut anyaccel_tensor_t,
    bias: *mut anyaccel_tensor_t,
    out: *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_matmul_into", || {
        let inputs = [(a, "a", false), (b, "b", false), (bias, "bias", true)];
        typed_into(q, "matmul", &inputs, Vec::new(), out)
    })
}

/// Softmax of `x` along `axis` (negative counts from the end); a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_softmax(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    axis: i64,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_softmax", "out", out, || {
            let attrs = vec![attr("axis", AttrValue::Int(axis))];
            typed(q, "softmax", &[(x, "x", false)], attrs)
        })
    }
}

/// `anyaccel_softmax` written into `out`.
///
/// # Safety
/// None beyond the handle contract: any value is checked.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_softmax_into(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    axis: i64,
    out: *mut anyaccel_tensor_t,
) -> anyaccel_status {
    guard("anyaccel_softmax_into", || {
        let attrs = vec![attr("axis", AttrValue::Int(axis))];
        typed_into(q, "softmax", &[(x, "x", false)], attrs, out)
    })
}

/// Log-softmax of `x` along `axis`; a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_log_softmax(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    axis: i64,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_log_softmax", "out", out, || {
            let attrs = vec![attr("axis", AttrValue::Int(axis))];
            typed(q, "log_softmax", &[(x, "x", false)], attrs)
        })
    }
}

/// Layer normalisation of `x` over its last axis; `weight` and `bias` ([D]) may be NULL.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_layer_norm(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    weight: *mut anyaccel_tensor_t,
    bias: *mut anyaccel_tensor_t,
    eps: f64,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_layer_norm", "out", out, || {
            let inputs = [
                (x, "x", false),
                (weight, "weight", true),
                (bias, "bias", true),
            ];
            let attrs = vec![attr("eps", AttrValue::Float(eps))];
            typed(q, "layer_norm", &inputs, attrs)
        })
    }
}

/// RMS normalisation of `x` over its last axis; `weight` ([D]) may be NULL.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_rms_norm(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    weight: *mut anyaccel_tensor_t,
    eps: f64,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_rms_norm", "out", out, || {
            let inputs = [(x, "x", false), (weight, "weight", true)];
            let attrs = vec![attr("eps", AttrValue::Float(eps))];
            typed(q, "rms_norm", &inputs, attrs)
        })
    }
}

/// `gelu(x)`: the erf form, or the tanh form when `approximate_tanh` is 1.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_gelu(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    approximate_tanh: i32,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_gelu", "out", out, || {
            let mode = match approximate_tanh {
                0 => "none",
                1 => "tanh",
                v => {
                    return Err(Error::invalid_argument(format!(
                    "argument `approximate_tanh` is {v}: expected 0 (erf form) or 1 (tanh form)"
                )))
                }
            };
            let attrs = vec![attr("approximate", AttrValue::Str(mode.into()))];
            typed(q, "gelu", &[(x, "x", false)], attrs)
        })
    }
}

/// Runs a reduction over the axes `axes[..n_axes]`.
///
/// # Safety
/// `axes` must be NULL or point to `n_axes` values.
unsafe fn reduction(
    q: *mut anyaccel_queue_t,
    op: &str,
    x: *mut anyaccel_tensor_t,
    axes: *const i64,
    n_axes: usize,
    keepdim: i32,
) -> Result<*mut anyaccel_tensor_t> {
    // SAFETY: NULL only when empty, else `n_axes` values by the caller's contract.
    let axes = unsafe { slice_arg(axes, n_axes, "axes") }?.to_vec();
    let attrs = vec![
        attr("axes", AttrValue::Ints(axes)),
        attr("keepdim", AttrValue::Int(keepdim as i64)),
    ];
    typed(q, op, &[(x, "x", false)], attrs)
}

/// Sum of `x` over `n_axes` axes (`n_axes` 0: all axes); `keepdim` 1 keeps them as size 1.
///
/// # Safety
/// `axes` must be NULL or point to `n_axes` values; `out` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_sum(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    axes: *const i64,
    n_axes: usize,
    keepdim: i32,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    let body = || {
        // SAFETY: `axes` is NULL or `n_axes` values by the caller's contract.
        unsafe { reduction(q, "sum", x, axes, n_axes, keepdim) }
    };
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe { guard_out("anyaccel_sum", "out", out, body) }
}

/// Mean of `x` over `n_axes` axes, as `anyaccel_sum`.
///
/// # Safety
/// `axes` must be NULL or point to `n_axes` values; `out` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_mean(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    axes: *const i64,
    n_axes: usize,
    keepdim: i32,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    let body = || {
        // SAFETY: `axes` is NULL or `n_axes` values by the caller's contract.
        unsafe { reduction(q, "mean", x, axes, n_axes, keepdim) }
    };
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe { guard_out("anyaccel_mean", "out", out, body) }
}

/// Index (i64) of the maximum of `x` over `n_axes` axes, as `anyaccel_sum`.
///
/// # Safety
/// `axes` must be NULL or point to `n_axes` values; `out` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_argmax(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    axes: *const i64,
    n_axes: usize,
    keepdim: i32,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    let body = || {
        // SAFETY: `axes` is NULL or `n_axes` values by the caller's contract.
        unsafe { reduction(q, "argmax", x, axes, n_axes, keepdim) }
    };
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe { guard_out("anyaccel_argmax", "out", out, body) }
}

/// `x` converted to `dtype` by the rules of `docs/ops.md`; a new tensor.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn anyaccel_cast(
    q: *mut anyaccel_queue_t,
    x: *mut anyaccel_tensor_t,
    dtype: anyaccel_dtype,
    out: *mut *mut anyaccel_tensor_t,
) -> anyaccel_status {
    // SAFETY: `out` is NULL or valid for writing a pointer by the caller's contract.
    unsafe {
        guard_out("anyaccel_cast", "out", out, || {
            let dtype: DType = dtype_arg(dtype, "dtype")?;
            let attrs = vec![attr("dtype", AttrValue::Str(dtype.name().into()))];
            typed(q, "cast", &[(x, "x", false)], attrs)
        })
    }
}
