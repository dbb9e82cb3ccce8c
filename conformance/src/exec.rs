//! Running one case on one device: fresh inputs from the seed, inputs laid out as the case says,
//! outputs poisoned before the launch, every element checked written, inputs checked unmodified,
//! results compared with the f64 reference.

use std::sync::Arc;

use anyaccel_hal::{
    bf16, contiguous_strides, f16, DType, Device, Error, ErrorCode, Queue, Tensor, TensorDesc,
};
use anyaccel_ops::{op_def, plan};

use crate::cases::{Case, CaseBody, InputSpec, Layout, OpCase, Values};
use crate::reference::{self, RefData, RefTensor};
use crate::rng::Rng;
use crate::tolerance::{compare, tolerance_for, Comparison};

/// How a case ended on a device, before expected failures are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held.
    Passed,
    /// A check failed.
    Failed,
    /// The device does not support something the case needs.
    Skipped,
}

/// The result of one case on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Verdict.
    pub verdict: Verdict,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
    /// Worst comparison over the outputs.
    pub comparison: Comparison,
}

impl Outcome {
    fn passed(comparison: Comparison) -> Outcome {
        Outcome {
            verdict: Verdict::Passed,
            reason: None,
            comparison,
        }
    }
    fn failed(reason: String, comparison: Comparison) -> Outcome {
        Outcome {
            verdict: Verdict::Failed,
            reason: Some(reason),
            comparison,
        }
    }
    fn skipped(reason: String) -> Outcome {
        Outcome {
            verdict: Verdict::Skipped,
            reason: Some(reason),
            comparison: Comparison::default(),
        }
    }
}

/// Byte written into every output element and gap before a launch.
pub const POISON: u8 = 0xA5;

/// Runs one case on `device`. Never panics on a device's misbehaviour: every problem is an
/// outcome.
pub fn run_case(device: &Arc<dyn Device>, case: &Case, seed: u64) -> Outcome {
    match &case.body {
        CaseBody::Hal(name) => {
            let Some((_, test)) = anyaccel_hal::testing::HAL_TESTS
                .iter()
                .find(|(n, _)| n == name)
            else {
                return Outcome::failed(
                    format!("unknown HAL test `{name}`"),
                    Comparison::default(),
                );
            };
            match test(device) {
                Ok(()) => Outcome::passed(Comparison::default()),
                Err(e) => Outcome::failed(e, Comparison::default()),
            }
        }
        CaseBody::Op(op) => {
            let mut rng = Rng::for_case(seed, &case.id);
            match run_op_case(device, op, &mut rng) {
                Ok(o) => o,
                Err(e) if e.code() == ErrorCode::Unsupported => {
                    Outcome::skipped(e.message().to_string())
                }
                Err(e) => Outcome::failed(format!("harness: {e}"), Comparison::default()),
            }
        }
    }
}

fn finite_extreme(d: DType) -> f64 {
    match d {
        DType::F16 => 65504.0,
        DType::BF16 => bf16::MAX.to_f64(),
        DType::F32 => f32::MAX as f64,
        _ => f64::MAX,
    }
}

fn smallest_subnormal(d: DType) -> f64 {
    match d {
        DType::F16 => f16::from_bits(1).to_f64(),
        DType::BF16 => bf16::from_bits(1).to_f64(),
        DType::F32 => f32::from_bits(1) as f64,
        _ => f64::from_bits(1),
    }
}

fn int_range(d: DType) -> (i64, i64) {
    match d {
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::I64 => (i64::MIN, i64::MAX),
        DType::U8 => (0, 255),
        DType::I8 => (-128, 127),
        _ => (0, 1),
    }
}

/// Draws the values of one input, exactly representable in its dtype.
fn draw(spec: &InputSpec, rng: &mut Rng) -> RefData {
    let n: usize = spec.shape.iter().product();
    let d = spec.dtype;
    if d.is_float() {
        let pick = |rng: &mut Rng| -> f64 {
            match spec.values {
                Values::Positive => rng.uniform(0.1, 4.0),
                Values::Unit => rng.uniform(-1.0, 1.0),
                Values::AtLeastOne => rng.uniform(1.0, 5.0),
                Values::Scales => rng.uniform(-1.0 / 64.0, 1.0 / 64.0),
                Values::Wide => rng.uniform(-60000.0, 60000.0),
                Values::Ties => [-1.0, 0.0, 0.5, 2.0][rng.below(4)],
                Values::Special | Values::SpecialInRange if rng.unit() < 0.3 => {
                    let in_range = spec.values == Values::SpecialInRange;
                    let specials = [
                        f64::NAN,
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        -0.0,
                        0.0,
                        smallest_subnormal(d),
                        -smallest_subnormal(d),
                        finite_extreme(d),
                    ];
                    // The largest finite value comes last: `SpecialInRange` leaves it out.
                    let choices = specials.len() - in_range as usize;
                    specials[rng.below(choices)]
                }
                _ => rng.uniform(-2.0, 2.0),
            }
        };
        RefData::F(
            (0..n)
                .map(|_| reference::round_to_dtype(pick(rng), d))
                .collect(),
        )
    } else {
        let (lo, hi) = int_range(d);
        let mut bad_at = None;
        if let Values::Indices { bad: true, .. } = spec.values {
            if n > 0 {
                bad_at = Some(rng.below(n));
            }
        }
        RefData::I(
            (0..n)
                .map(|i| match spec.values {
                    Values::Bool => rng.int(0, 1),
                    Values::Indices { limit, .. } if bad_at == Some(i) => {
                        if rng.unit() < 0.5 {
                            limit as i64
                        } else {
                            -1
                        }
                    }
                    Values::Indices { limit, .. } => rng.int(0, limit.max(1) as i64 - 1),
                    Values::PoolIndices(w) => {
                        let plane = w.out[0] * w.out[1];
                        let taps = w.kernel[0] * w.kernel[1];
                        w.tap(i % plane.max(1), rng.below(taps.max(1)))
                    }
                    Values::Ties => [-1, 0, 3][rng.below(3)].clamp(lo, hi),
                    Values::IntExtreme if rng.unit() < 0.3 => {
                        [lo, hi, -1, 0, 1, lo.saturating_add(1)][rng.below(6)].clamp(lo, hi)
                    }
                    Values::Shifts => {
                        let width = d.size_in_bytes() as i64 * 8;
                        rng.int(-2, width + 1).clamp(lo, hi)
                    }
                    _ if d == DType::U8 => rng.int(0, 255),
                    _ => rng.int(-100, 100),
                })
                .collect(),
        )
    }
}

fn encode(d: DType, data: &RefData, i: usize, out: &mut [u8]) {
    match (d, data) {
        (DType::F32, RefData::F(v)) => out.copy_from_slice(&(v[i] as f32).to_le_bytes()),
        (DType::F16, RefData::F(v)) => out.copy_from_slice(&f16::from_f64(v[i]).to_le_bytes()),
        (DType::BF16, RefData::F(v)) => out.copy_from_slice(&bf16::from_f64(v[i]).to_le_bytes()),
        (DType::F64, RefData::F(v)) => out.copy_from_slice(&v[i].to_le_bytes()),
        (DType::I32, RefData::I(v)) => out.copy_from_slice(&(v[i] as i32).to_le_bytes()),
        (DType::I64, RefData::I(v)) => out.copy_from_slice(&v[i].to_le_bytes()),
        (DType::U8 | DType::Bool, RefData::I(v)) => out[0] = v[i] as u8,
        (DType::I8, RefData::I(v)) => out[0] = v[i] as i8 as u8,
        _ => {}
    }
}

/// An element read back from a device.
#[derive(Clone, Copy)]
enum Got {
    F(f64),
    I(i64),
}

fn decode(d: DType, b: &[u8]) -> Got {
    let arr = |n: usize| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(&b[..n]);
        a
    };
    match d {
        DType::F32 => Got::F(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        DType::F16 => Got::F(f16::from_le_bytes([b[0], b[1]]).to_f64()),
        DType::BF16 => Got::F(bf16::from_le_bytes([b[0], b[1]]).to_f64()),
        DType::F64 => Got::F(f64::from_le_bytes(arr(8))),
        DType::I32 => Got::I(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64),
        DType::I64 => Got::I(i64::from_le_bytes(arr(8))),
        DType::U8 => Got::I(b[0] as i64),
        DType::I8 => Got::I(b[0] as i8 as i64),
        DType::Bool => Got::I(b[0] as i64),
    }
}

/// Strides and offset for a logical shape in a layout, and the elements the buffer needs.
fn lay_out(shape: &[usize], layout: Layout) -> (Vec<usize>, usize, usize) {
    let numel: usize = shape.iter().product();
    let rank = shape.len();
    match layout {
        Layout::Transposed if rank >= 2 => {
            let mut phys = shape.to_vec();
            phys.swap(rank - 1, rank - 2);
            let mut strides = contiguous_strides(&phys);
            strides.swap(rank - 1, rank - 2);
            (strides, 0, numel)
        }
        Layout::Strided if rank >= 1 => {
            let mut phys = shape.to_vec();
            phys[rank - 1] *= 2;
            let mut strides = contiguous_strides(&phys);
            strides[rank - 1] = 2;
            (strides, 0, phys.iter().product())
        }
        Layout::Offset(k) => (contiguous_strides(shape), k, numel + k),
        _ => (contiguous_strides(shape), 0, numel),
    }
}

/// A tensor made for a case, with the bytes its whole buffer held after writing.
struct Placed {
    tensor: Tensor,
    image: Vec<u8>,
}

fn place(
    device: &dyn Device,
    queue: &dyn Queue,
    dtype: DType,
    shape: &[usize],
    layout: Layout,
    fill: impl Fn(usize, &mut [u8]),
    filler: u8,
) -> anyaccel_hal::Result<Placed> {
    let (strides, offset, elems) = lay_out(shape, layout);
    let size = dtype.size_in_bytes();
    let buffer = device.alloc(elems * size)?;
    let desc = TensorDesc {
        dtype,
        shape: shape.to_vec(),
        strides,
        offset,
    };
    let mut image = vec![filler; elems * size];
    let numel: usize = shape.iter().product();
    for i in 0..numel {
        let at = desc.offset_of_linear(i) * size;
        fill(i, &mut image[at..at + size]);
    }
    queue.write(&buffer.whole(), &image)?;
    let tensor = Tensor::new(buffer.whole(), desc)?;
    Ok(Placed { tensor, image })
}

fn read_image(queue: &dyn Queue, t: &Tensor) -> anyaccel_hal::Result<Vec<u8>> {
    let whole = t.view().buffer().whole();
    let mut out = vec![0u8; whole.len()];
    queue.read(&whole, &mut out)?;
    Ok(out)
}

fn run_op_case(
    device: &Arc<dyn Device>,
    case: &OpCase,
    rng: &mut Rng,
) -> anyaccel_hal::Result<Outcome> {
    let caps = device.caps();
    // Draw every input first so that the stream of random numbers does not depend on the device.
    let data: Vec<Option<RefData>> = case
        .inputs
        .iter()
        .map(|s| s.as_ref().map(|s| draw(s, rng)))
        .collect();
    let ref_inputs: Vec<Option<RefTensor>> = case
        .inputs
        .iter()
        .zip(&data)
        .map(|(s, d)| match (s, d) {
            (Some(s), Some(d)) => Some(RefTensor {
                dtype: s.dtype,
                shape: s.shape.clone(),
                data: d.clone(),
            }),
            _ => None,
        })
        .collect();
    let expected = reference::run(case.op, &ref_inputs, &case.attrs);

    let queue = device.create_queue()?;
    let q = &*queue;
    let mut placed: Vec<Option<Placed>> = Vec::new();
    for (spec, d) in case.inputs.iter().zip(&data) {
        let (Some(spec), Some(d)) = (spec, d) else {
            placed.push(None);
            continue;
        };
        if !caps.has_dtype(spec.dtype) {
            return Ok(Outcome::skipped(format!(
                "device {} does not hold {} tensors",
                device.info().id,
                spec.dtype
            )));
        }
        let size = spec.dtype.size_in_bytes();
        let p = place(
            &**device,
            q,
            spec.dtype,
            &spec.shape,
            spec.layout,
            |i, out| encode(spec.dtype, d, i, out),
            0x5A ^ (size as u8),
        )?;
        placed.push(Some(p));
    }
    let inputs: Vec<Option<&Tensor>> = placed
        .iter()
        .map(|p| p.as_ref().map(|p| &p.tensor))
        .collect();
    let descs: Vec<Option<&TensorDesc>> = inputs.iter().map(|t| t.map(|t| t.desc())).collect();

    // Outputs: the op's own shape rules; a validation error must be the reference's error.
    let specs = match plan(case.op, &descs, &case.attrs) {
        Ok(specs) => specs,
        Err(e) => return Ok(expect_error(expected.err(), e)),
    };
    let mut outputs = Vec::new();
    for (dtype, shape) in &specs {
        if !caps.has_dtype(*dtype) {
            return Ok(Outcome::skipped(format!(
                "device {} does not hold {} tensors",
                device.info().id,
                dtype
            )));
        }
        outputs.push(place(
            &**device,
            q,
            *dtype,
            shape,
            case.out_layout,
            |_, b| b.fill(POISON),
            POISON,
        )?);
    }
    let out_refs: Vec<&Tensor> = outputs.iter().map(|p| &p.tensor).collect();
    // An error found while the op runs (an index out of range) comes back through the queue,
    // at the next synchronization, never from the call that submitted the op: the call only
    // validates what it can see (docs/ops.md section 6; anyaccel_plugin.h, "Errors").
    // Captured as a graph, replayed below with the inputs and outputs bound to copies.
    let (submitted, graph) = anyaccel_ops::Graph::capture(q, || {
        anyaccel_ops::call_into(q, case.op, &inputs, &out_refs, &case.attrs)
    })?;
    if let Err(e) = &submitted {
        if e.code() == ErrorCode::OutOfBounds {
            return Ok(Outcome::failed(
                format!(
                    "the op call itself returned an out-of-bounds error ({}); an error found \
                     while the op runs must come back through the queue, at the next \
                     synchronization",
                    e.message()
                ),
                Comparison::default(),
            ));
        }
    }
    let result = submitted.and_then(|()| {
        outputs
            .iter()
            .map(|p| read_image(q, &p.tensor))
            .collect::<anyaccel_hal::Result<Vec<_>>>()
    });
    let images = match (result, expected) {
        (Err(e), _) if e.code() == ErrorCode::Unsupported => {
            return Ok(Outcome::skipped(e.message().to_string()))
        }
        (Err(e), Err(want)) => return Ok(expect_error(Some(want), e)),
        (Err(e), Ok(_)) => {
            return Ok(Outcome::failed(
                format!("the device returned an error: {e}"),
                Comparison::default(),
            ))
        }
        (Ok(_), Err(want)) => {
            return Ok(Outcome::failed(
                format!(
                    "expected a {} error ({}), but the device reported success",
                    want.code(),
                    want.message()
                ),
                Comparison::default(),
            ))
        }
        (Ok(images), Ok(expected)) => (images, expected),
    };
    let (images, expected) = images;

    // Inputs must be unmodified, gaps included.
    for (i, p) in placed.iter().enumerate() {
        if let Some(p) = p {
            let now = read_image(q, &p.tensor)?;
            if let Some(at) = now.iter().zip(&p.image).position(|(a, b)| a != b) {
                return Ok(Outcome::failed(
                    format!("input {i} was modified: byte {at} of its buffer changed from {:#04x} to {:#04x}", p.image[at], now[at]),
                    Comparison::default(),
                ));
            }
        }
    }

    let accumulating = op_def(case.op).map(|d| d.accumulates()).unwrap_or(false);
    let mut worst = Comparison::default();
    let mut failure: Option<String> = None;
    for (k, ((p, image), want)) in outputs.iter().zip(&images).zip(&expected).enumerate() {
        let desc = p.tensor.desc();
        let size = desc.dtype.size_in_bytes();
        let numel = desc.numel();
        if want.numel() != numel {
            return Ok(Outcome::failed(
                format!("output {k}: the reference has {} elements but the op's shape rules give {numel}", want.numel()),
                Comparison::default(),
            ));
        }
        let (want_f, want_i) = if desc.dtype.is_float() {
            (want.to_f64_vec(), Vec::new())
        } else {
            (Vec::new(), want.to_i64_vec())
        };
        let mut written = vec![false; image.len() / size.max(1)];
        let mut got_f = Vec::with_capacity(numel);
        let mut int_bad: Option<(usize, i64, i64)> = None;
        let mut int_bad_count = 0usize;
        let mut unwritten: Option<usize> = None;
        for i in 0..numel {
            let e = desc.offset_of_linear(i);
            written[e] = true;
            let bytes = &image[e * size..(e + 1) * size];
            let poisoned = bytes.iter().all(|&b| b == POISON);
            match decode(desc.dtype, bytes) {
                Got::F(g) => {
                    if poisoned && g.to_bits() != want_f[i].to_bits() && unwritten.is_none() {
                        unwritten = Some(i);
                    }
                    got_f.push(g);
                }
                Got::I(g) => {
                    if poisoned && g != want_i[i] && unwritten.is_none() {
                        unwritten = Some(i);
                    }
                    if g != want_i[i] {
                        int_bad_count += 1;
                        int_bad.get_or_insert((i, g, want_i[i]));
                    }
                }
            }
        }
        if let Some(i) = unwritten {
            failure.get_or_insert(format!(
                "output {k}: element {i} (of {numel}) was not written: it still holds the poison pattern {POISON:#04x}"
            ));
        }
        if let Some(e) = written
            .iter()
            .enumerate()
            .position(|(e, &w)| !w && image[e * size..(e + 1) * size].iter().any(|&b| b != POISON))
        {
            failure.get_or_insert(format!("output {k}: element slot {e} of its buffer lies outside the output's elements but was written"));
        }
        if desc.dtype.is_float() {
            let c = compare(
                &got_f,
                &want_f,
                tolerance_for(case.op, desc.dtype, accumulating),
            );
            if let Some((i, g, w)) = c.first_bad {
                failure.get_or_insert(format!(
                    "output {k}: {} of {numel} elements out of tolerance; first bad element {i}: got {g:e}, expected {w:e}",
                    c.bad
                ));
            }
            if c.max_abs_err >= worst.max_abs_err {
                worst.max_abs_err = c.max_abs_err;
            }
            worst.max_rel_err = worst.max_rel_err.max(c.max_rel_err);
            if c.bad > 0 && worst.bad == 0 {
                worst = Comparison {
                    max_abs_err: worst.max_abs_err,
                    max_rel_err: worst.max_rel_err,
                    ..c
                };
            }
        } else if let Some((i, g, w)) = int_bad {
            failure.get_or_insert(format!(
                "output {k}: {int_bad_count} of {numel} elements differ (exact dtype {}); first bad element {i}: got {g}, expected {w}",
                desc.dtype
            ));
            worst.bad += int_bad_count;
            worst.first_bad.get_or_insert((i, g as f64, w as f64));
            worst.max_abs_err = worst.max_abs_err.max((g as f64 - w as f64).abs());
        }
    }
    if failure.is_none() {
        failure = replay_differs(&**device, q, case, &graph, &placed, &outputs, &images)?;
    }
    Ok(match failure {
        Some(reason) => Outcome::failed(reason, worst),
        None => Outcome::passed(worst),
    })
}

/// Replays the captured call with every input bound to a copy of its buffer and every output
/// to a new poisoned tensor of the same layout; the replay's output buffers must hold the
/// eager call's bytes exactly (gaps included). `Some(reason)` when they do not.
fn replay_differs(
    device: &dyn Device,
    q: &dyn Queue,
    case: &OpCase,
    graph: &anyaccel_ops::Graph,
    placed: &[Option<Placed>],
    outputs: &[Placed],
    images: &[Vec<u8>],
) -> anyaccel_hal::Result<Option<String>> {
    if graph.len() != 1 {
        return Ok(Some(format!(
            "the captured graph of one call holds {} calls",
            graph.len()
        )));
    }
    let mut copies = Vec::new();
    for p in placed.iter().flatten() {
        let buffer = device.alloc(p.image.len())?;
        q.write(&buffer.whole(), &p.image)?;
        let view = p.tensor.view();
        let copy = Tensor::new(
            buffer.view(view.offset(), view.len())?,
            p.tensor.desc().clone(),
        )?;
        copies.push((p.tensor.clone(), copy));
    }
    for p in outputs {
        let desc = p.tensor.desc();
        let fresh = place(
            device,
            q,
            desc.dtype,
            &desc.shape,
            case.out_layout,
            |_, b| b.fill(POISON),
            POISON,
        )?;
        copies.push((p.tensor.clone(), fresh.tensor));
    }
    let bindings: Vec<(&Tensor, &Tensor)> = copies.iter().map(|(c, b)| (c, b)).collect();
    if let Err(e) = graph.replay(q, &bindings) {
        return Ok(Some(format!("a graph replay of the call failed: {e}")));
    }
    let fresh = &copies[copies.len() - outputs.len()..];
    for (k, ((_, t), eager)) in fresh.iter().zip(images).enumerate() {
        let image = read_image(q, t)?;
        if let Some(at) = image.iter().zip(eager).position(|(a, b)| a != b) {
            return Ok(Some(format!(
                "output {k}: a graph replay of the call wrote other bytes than the eager call: byte {at} of its buffer is {:#04x}, eagerly {:#04x}",
                image[at], eager[at]
            )));
        }
    }
    Ok(None)
}

fn expect_error(want: Option<Error>, got: Error) -> Outcome {
    match want {
        Some(w) if w.code() == got.code() => Outcome::passed(Comparison::default()),
        Some(w) => Outcome::failed(
            format!(
                "expected a {} error ({}), got: {got}",
                w.code(),
                w.message()
            ),
            Comparison::default(),
        ),
        None => Outcome::failed(
            format!("the device rejected a valid call: {got}"),
            Comparison::default(),
        ),
    }
}
