//! Translating an [`OpCall`] into the C descriptors of `anyaccel_plugin.h`.

use std::ffi::CString;

use anyaccel_hal::{AttrValue, Buffer, DType, Error, OpCall, Result, Tensor};

use crate::device::PluginMemory;
use crate::sys::{self, AnyaccelAttr, AnyaccelDataType, AnyaccelOpCall, AnyaccelTensor};

/// The DLPack data type of a dtype.
pub(crate) fn dl_type(dtype: DType) -> AnyaccelDataType {
    let (code, bits) = match dtype {
        DType::F32 => (sys::ANYACCEL_DL_FLOAT, 32),
        DType::F16 => (sys::ANYACCEL_DL_FLOAT, 16),
        DType::BF16 => (sys::ANYACCEL_DL_BFLOAT, 16),
        DType::F64 => (sys::ANYACCEL_DL_FLOAT, 64),
        DType::I32 => (sys::ANYACCEL_DL_INT, 32),
        DType::I64 => (sys::ANYACCEL_DL_INT, 64),
        DType::U8 => (sys::ANYACCEL_DL_UINT, 8),
        DType::I8 => (sys::ANYACCEL_DL_INT, 8),
        DType::Bool => (sys::ANYACCEL_DL_BOOL, 8),
    };
    AnyaccelDataType {
        code,
        bits,
        lanes: 1,
    }
}

/// The dtype of a DLPack data type, if it is one of anyaccel's.
pub fn dtype_of(dl: AnyaccelDataType) -> Option<DType> {
    if dl.lanes != 1 {
        return None;
    }
    DType::ALL.iter().copied().find(|&d| dl_type(d) == dl)
}

/// Shapes and strides of one tensor, kept alive for the descriptor.
struct Dims {
    shape: Vec<i64>,
    strides: Vec<i64>,
}

/// An op call as the plugin sees it, with everything its pointers point to.
pub(crate) struct CallDesc {
    _op: CString,
    _dims: Vec<Dims>,
    // Boxed: the call points at each descriptor, which must not move as the Vec grows.
    #[allow(clippy::vec_box)]
    _tensors: Vec<Box<AnyaccelTensor>>,
    _inputs: Vec<*const AnyaccelTensor>,
    _outputs: Vec<*const AnyaccelTensor>,
    _names: Vec<CString>,
    _ints: Vec<Vec<i64>>,
    _strs: Vec<CString>,
    _attrs: Vec<AnyaccelAttr>,
    call: AnyaccelOpCall,
    /// The buffers of every tensor, for the queue to keep until the op has run.
    pub(crate) buffers: Vec<Buffer>,
}

impl CallDesc {
    /// Builds the descriptor. Tensors must live in plugin buffers of `device_id`.
    pub(crate) fn new(call: &OpCall, device_id: &str) -> Result<CallDesc> {
        let op = CString::new(call.op.as_str())
            .map_err(|_| Error::invalid_argument("op name holds a NUL byte"))?;
        let mut dims = Vec::new();
        let mut tensors = Vec::new();
        let mut buffers = Vec::new();
        let mut describe = |t: &Tensor| -> Result<*const AnyaccelTensor> {
            let mem = t
                .view()
                .buffer()
                .downcast::<PluginMemory>()
                .ok_or_else(|| {
                    Error::invalid_argument(format!(
                        "{}: a tensor of device {} is not plugin memory of {device_id}",
                        call.op,
                        t.device_id()
                    ))
                })?;
            if t.device_id() != device_id {
                return Err(Error::invalid_argument(format!(
                    "{}: a tensor is on device {}, expected {device_id}",
                    call.op,
                    t.device_id()
                )));
            }
            let desc = t.desc();
            let size = desc.dtype.size_in_bytes();
            let d = Dims {
                shape: desc.shape.iter().map(|&s| s as i64).collect(),
                strides: desc.strides.iter().map(|&s| s as i64).collect(),
            };
            let byte_offset = t.view().offset() as u64 + (desc.offset as u64) * size as u64;
            let tensor = Box::new(AnyaccelTensor {
                struct_size: std::mem::size_of::<AnyaccelTensor>(),
                buffer: mem.raw(),
                byte_offset,
                ndim: desc.shape.len() as i32,
                dtype: dl_type(desc.dtype),
                shape: d.shape.as_ptr(),
                strides: d.strides.as_ptr(),
            });
            let p: *const AnyaccelTensor = &*tensor;
            dims.push(d);
            tensors.push(tensor);
            buffers.push(t.view().buffer().clone());
            Ok(p)
        };
        let mut inputs = Vec::with_capacity(call.inputs.len());
        for t in &call.inputs {
            inputs.push(match t {
                Some(t) => describe(t)?,
                None => std::ptr::null(),
            });
        }
        let mut outputs = Vec::with_capacity(call.outputs.len());
        for t in &call.outputs {
            outputs.push(describe(t)?);
        }
        // Each name once, the last value given winning (docs/ops.md), in first-seen order.
        let mut order: Vec<&str> = Vec::new();
        for (name, _) in &call.attrs {
            if !order.contains(&name.as_str()) {
                order.push(name);
            }
        }
        let mut names = Vec::new();
        let mut ints = Vec::new();
        let mut strs = Vec::new();
        let mut attrs = Vec::new();
        for name in order {
            let Some(value) = call
                .attrs
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
            else {
                continue;
            };
            let c_name = CString::new(name).map_err(|_| {
                Error::invalid_argument(format!("{}: attribute name holds a NUL byte", call.op))
            })?;
            let mut a = AnyaccelAttr {
                struct_size: std::mem::size_of::<AnyaccelAttr>(),
                name: c_name.as_ptr(),
                kind: 0,
                int_value: 0,
                float_value: 0.0,
                ints: std::ptr::null(),
                ints_len: 0,
                str: std::ptr::null(),
                str_len: 0,
            };
            match value {
                AttrValue::Int(v) => {
                    a.kind = sys::ANYACCEL_ATTR_INT;
                    a.int_value = *v;
                }
                AttrValue::Float(v) => {
                    a.kind = sys::ANYACCEL_ATTR_FLOAT;
                    a.float_value = *v;
                }
                AttrValue::Ints(v) => {
                    a.kind = sys::ANYACCEL_ATTR_INTS;
                    let v = v.clone();
                    a.ints = if v.is_empty() {
                        std::ptr::null()
                    } else {
                        v.as_ptr()
                    };
                    a.ints_len = v.len();
                    ints.push(v);
                }
                AttrValue::Str(s) => {
                    a.kind = sys::ANYACCEL_ATTR_STR;
                    let c = CString::new(s.as_str()).map_err(|_| {
                        Error::invalid_argument(format!(
                            "{}: attribute `{name}` holds a NUL byte",
                            call.op
                        ))
                    })?;
                    a.str = c.as_ptr();
                    a.str_len = s.len();
                    strs.push(c);
                }
            }
            names.push(c_name);
            attrs.push(a);
        }
        let c_call = AnyaccelOpCall {
            struct_size: std::mem::size_of::<AnyaccelOpCall>(),
            op: op.as_ptr(),
            inputs: inputs.as_ptr(),
            num_inputs: inputs.len(),
            outputs: outputs.as_ptr(),
            num_outputs: outputs.len(),
            attrs: if attrs.is_empty() {
                std::ptr::null()
            } else {
                attrs.as_ptr()
            },
            num_attrs: attrs.len(),
        };
        // Every pointer above points into a heap allocation (a CString, a boxed value, or a
        // Vec's buffer) that moves into the descriptor unchanged, so they stay valid.
        Ok(CallDesc {
            _op: op,
            _dims: dims,
            _tensors: tensors,
            _inputs: inputs,
            _outputs: outputs,
            _names: names,
            _ints: ints,
            _strs: strs,
            _attrs: attrs,
            call: c_call,
            buffers,
        })
    }

    /// The C call, valid while `self` lives.
    pub(crate) fn as_ptr(&self) -> *const AnyaccelOpCall {
        &self.call
    }
}
