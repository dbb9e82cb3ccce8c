//! `TensorDesc` and the `Tensor` views over a real `cpu:0` buffer.
//!
//! Random layouts (shapes, strides and offsets with extreme values) go through `Tensor::new`,
//! then through chains of `with_desc`, `permute`, `transpose`, `narrow`, `broadcast_to` and
//! `reshape`. Every tensor the layer accepts must fit its view by exact (`u128`) arithmetic;
//! small ones are read back (`to_bytes`, compared element by element with the buffer's bytes)
//! and written through (the `copy` op into the view), and the bytes outside the view must not
//! change. AddressSanitizer catches any access outside the buffer.

#![no_main]

use std::sync::{Arc, OnceLock};

use anyaccel_fuzz::{span_u128, Dim};
use anyaccel_hal::{Backend, Buffer, BufferView, DType, Device, Queue, Tensor, TensorDesc};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Largest tensor (in bytes) read back or written through.
const RW_CAP: u128 = 1 << 16;

const DTYPES: [DType; 9] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::F64,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::I8,
    DType::Bool,
];

#[derive(Debug, Arbitrary)]
struct Layout {
    dtype: u8,
    shape: Vec<Dim>,
    /// `None`: row-major strides of `shape`.
    strides: Option<Vec<Dim>>,
    offset: Dim,
}

#[derive(Debug, Arbitrary)]
enum ViewOp {
    WithDesc(Layout),
    Permute(Vec<u8>),
    Transpose(u8, u8),
    Narrow(u8, Dim, Dim),
    BroadcastTo(Vec<Dim>),
    Reshape(Vec<Dim>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    buffer_len: u16,
    view_offset: u16,
    view_len: u16,
    fill: u8,
    layout: Layout,
    ops: Vec<ViewOp>,
}

fn cpu() -> &'static (Arc<dyn Device>, Arc<dyn Queue>) {
    static CPU: OnceLock<(Arc<dyn Device>, Arc<dyn Queue>)> = OnceLock::new();
    CPU.get_or_init(|| {
        let device = anyaccel_cpu::CpuBackend
            .probe()
            .expect("cpu backend")
            .remove(0);
        let queue = device.create_queue().expect("cpu queue");
        (device, queue)
    })
}

fn desc_of(l: &Layout) -> TensorDesc {
    let shape: Vec<usize> = l.shape.iter().take(8).map(|d| d.0).collect();
    let strides = match &l.strides {
        Some(s) => s.iter().take(9).map(|d| d.0).collect(),
        None => anyaccel_hal::contiguous_strides(&shape),
    };
    TensorDesc {
        dtype: DTYPES[l.dtype as usize % DTYPES.len()],
        shape,
        strides,
        offset: l.offset.0,
    }
}

/// Bytes from the view's start to one past the tensor's furthest byte, exactly; `None` when
/// the layout is malformed (rank mismatch) or past `u128`. 0 for an empty tensor.
fn exact_need(desc: &TensorDesc) -> Option<u128> {
    if desc.shape.len() != desc.strides.len() {
        return None;
    }
    let shape: Vec<u128> = desc.shape.iter().map(|&d| d as u128).collect();
    let strides: Vec<u128> = desc.strides.iter().map(|&s| s as u128).collect();
    // An empty tensor needs its offset (its first element's address lies inside the view).
    let span = span_u128(&shape, &strides)?;
    (desc.offset as u128 + span).checked_mul(desc.dtype.size_in_bytes() as u128)
}

/// The accepted tensor must fit its view; small ones are read and written through.
fn exercise(t: &Tensor, queue: &dyn Queue, buffer: &Buffer) {
    let desc = t.desc();
    let need = exact_need(desc).unwrap_or_else(|| {
        panic!("accepted a tensor whose layout is malformed or past u128: {desc:?}")
    });
    assert!(
        need <= t.view().len() as u128,
        "accepted {desc:?} which needs {need} bytes of a {}-byte view",
        t.view().len()
    );
    let shape: Vec<u128> = desc.shape.iter().map(|&d| d as u128).collect();
    let numel = anyaccel_fuzz::numel_u128(shape.iter().copied()).expect("fits, so numel fits");
    let size = desc.dtype.size_in_bytes();
    assert_eq!(numel, t.numel() as u128, "numel of {desc:?}");
    if numel * size as u128 > RW_CAP {
        return;
    }

    // Read back: each element must be the buffer's bytes at its exact offset.
    let whole = read_all(queue, buffer);
    let got = t
        .to_bytes(queue)
        .unwrap_or_else(|e| panic!("to_bytes of {desc:?}: {e}"));
    assert_eq!(
        got.len() as u128,
        numel * size as u128,
        "to_bytes length of {desc:?}"
    );
    let strides: Vec<u128> = desc.strides.iter().map(|&s| s as u128).collect();
    let base = t.view().offset() as u128;
    for i in 0..numel {
        let at = base + element_offset(i, &shape, &strides, desc.offset as u128) * size as u128;
        let at = at as usize;
        assert_eq!(
            &got[(i as usize) * size..(i as usize + 1) * size],
            &whole[at..at + size],
            "to_bytes element {i} of {desc:?}"
        );
    }

    // Write through with the copy op; nothing outside the view may change.
    let Ok(src) = Tensor::empty(&*queue.device(), desc.dtype, &desc.shape) else {
        return;
    };
    // No NaN of any float dtype (bit 6 of every byte clear), 0 or 1 for bool: a copy keeps them.
    let mask = if desc.dtype == DType::Bool { 1 } else { 0x3f };
    let pattern: Vec<u8> = (0..numel as usize * size)
        .map(|i| ((i % 251) as u8 ^ 0x5a) & mask)
        .collect();
    if queue.write(src.view(), &pattern).is_err() {
        return;
    }
    let written = anyaccel_ops::call_into(queue, "copy", &[Some(&src)], &[t], &[]);
    let after = read_all(queue, buffer);
    let (lo, hi) = (t.view().offset(), t.view().offset() + t.view().len());
    assert!(
        whole[..lo] == after[..lo] && whole[hi..] == after[hi..],
        "writing through {desc:?} (a view of bytes {lo}..{hi}) changed bytes outside the view"
    );
    if written.is_ok() {
        let back = t.to_bytes(queue).expect("read after write");
        assert_eq!(back, pattern, "copy into {desc:?} then to_bytes");
    }
    let _ = queue.finish();
}

fn element_offset(mut linear: u128, shape: &[u128], strides: &[u128], offset: u128) -> u128 {
    let mut off = offset;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        off += (linear % d) * s;
        linear /= d;
    }
    off
}

fn read_all(queue: &dyn Queue, buffer: &Buffer) -> Vec<u8> {
    let mut out = vec![0u8; buffer.size()];
    queue
        .read(&buffer.whole(), &mut out)
        .expect("read the whole buffer");
    out
}

fn view_of(buffer: &Buffer, offset: u16, len: u16) -> BufferView {
    let size = buffer.size();
    let offset = offset as usize % (size + 1);
    let len = len as usize % (size - offset + 1);
    buffer.view(offset, len).expect("in range by construction")
}

fn apply(t: &Tensor, op: &ViewOp) -> anyaccel_hal::Result<Tensor> {
    match op {
        ViewOp::WithDesc(l) => t.with_desc(desc_of(l)),
        ViewOp::Permute(order) => {
            let order: Vec<usize> = order.iter().take(9).map(|&d| d as usize % 10).collect();
            t.permute(&order)
        }
        ViewOp::Transpose(a, b) => t.transpose(*a as usize % 10, *b as usize % 10),
        ViewOp::Narrow(dim, start, len) => t.narrow(*dim as usize % 10, start.0, len.0),
        ViewOp::BroadcastTo(shape) => {
            let shape: Vec<usize> = shape.iter().take(9).map(|d| d.0).collect();
            t.broadcast_to(&shape)
        }
        ViewOp::Reshape(shape) => {
            let shape: Vec<usize> = shape.iter().take(9).map(|d| d.0).collect();
            t.reshape(&shape)
        }
    }
}

fuzz_target!(|input: Input| {
    anyaccel_fuzz::show(&input);
    let (device, queue) = cpu();
    let Ok(buffer) = device.alloc(input.buffer_len as usize % 4097) else {
        return;
    };
    if queue.fill(&buffer.whole(), &[input.fill]).is_err() {
        return;
    }
    let view = view_of(&buffer, input.view_offset, input.view_len);

    let desc = desc_of(&input.layout);
    // Constructing the desc's own checks must not panic either.
    let _ = (desc.numel(), desc.is_contiguous(), desc.validate("fuzz"));
    if let (Ok(need), true) = (
        desc.required_bytes(),
        desc.shape.len() == desc.strides.len(),
    ) {
        assert_eq!(
            Some(need as u128),
            exact_need(&desc),
            "required_bytes of {desc:?}"
        );
    }
    let Ok(mut t) = Tensor::new(view, desc) else {
        return;
    };
    exercise(&t, &**queue, &buffer);
    for op in input.ops.iter().take(8) {
        if let Ok(next) = apply(&t, op) {
            exercise(&next, &**queue, &buffer);
            t = next;
        }
    }
    let _ = queue.finish();
});
