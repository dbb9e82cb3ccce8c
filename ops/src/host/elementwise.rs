//! Elementwise kernels: creation, copy and cast, unary, binary, comparisons and `where`.

use anyaccel_hal::{bf16, f16, DType, Error, OpCall, Result};

use super::layout::{coalesce, par_ranges, walk, walk_runs, GRAIN};
use super::scalar::{load, store, FloatStore, IntStore, Val};
use super::{vmath, Body, Bound, TView};
use crate::attrs::Attrs;
use crate::catalog::{
    ActivationBackwardOp, ActivationOp, BinaryOp, CompareOp, PredicateOp, UnaryOp,
};

fn attrs(call: &OpCall) -> Result<Attrs<'_>> {
    Attrs::of(call)
}

/// `out[i] = f(x[i])` over the output's shape, `x` broadcast to it.
pub(crate) fn map1<A: Copy + Send + Sync, O: Copy + Send + Sync>(
    x: &TView,
    out: &TView,
    f: impl Fn(A) -> O + Sync + Send,
) -> Result<()> {
    map1_by::<false, A, O>(x, out, f)
}

/// [`map1`] with its contiguous runs compiled for the CPU's widest vectors ([`vmath::map`]):
/// for the float ops whose `f` is a branch-free polynomial.
fn map1_simd<A: Copy + Send + Sync, O: Copy + Send + Sync>(
    x: &TView,
    out: &TView,
    f: impl Fn(A) -> O + Sync + Send,
) -> Result<()> {
    map1_by::<true, A, O>(x, out, f)
}

/// A float [`map1`] whose contiguous runs go through the vector kernel of `op` (`kernel`:
/// [`vmath::unary`] or its 16-bit forms, which compute in f32 and round once) and other runs
/// through `f`, its scalar form in f32.
fn map1_kernel<T: FloatStore>(
    x: &TView,
    out: &TView,
    op: vmath::Unary,
    f: impl Fn(f32) -> f32 + Sync + Send,
    kernel: fn(vmath::Unary, &[T], &mut [T]),
) -> Result<()> {
    map1_runs(
        x,
        out,
        |v: T| T::from_f32(f(v.to_f32())),
        |sx: &[T], so: &mut [T], _| kernel(op, sx, so),
    )
}

fn map1_by<const SIMD: bool, A: Copy + Send + Sync, O: Copy + Send + Sync>(
    x: &TView,
    out: &TView,
    f: impl Fn(A) -> O + Sync + Send,
) -> Result<()> {
    map1_runs(x, out, f, |sx, so, f| {
        if SIMD {
            vmath::map(sx, so, f);
        } else {
            for (o, &v) in so.iter_mut().zip(sx) {
                *o = f(v);
            }
        }
    })
}

/// `out[i] = f(x[i])`: `contiguous` on each contiguous run of both (given `f`), `f` element by
/// element on strided runs.
fn map1_runs<A: Copy + Send + Sync, O: Copy + Send + Sync, F: Fn(A) -> O + Sync + Send>(
    x: &TView,
    out: &TView,
    f: F,
    contiguous: impl Fn(&[A], &mut [O], &F) + Sync + Send,
) -> Result<()> {
    let shape = &out.desc.shape;
    let x = x.broadcast_cow(shape);
    // A contiguous pair coalesces to one run: one typed loop a task.
    let (runs, [sx, so]) = coalesce(shape, [&x.desc.strides, &out.desc.strides]);
    let inner = |s: &[usize]| s.last().copied().unwrap_or(0);
    let (ix, io) = (inner(&sx), inner(&so));
    par_ranges(out.desc.numel(), GRAIN, |r| {
        walk_runs(
            &runs,
            [&sx, &so],
            [x.desc.offset, out.desc.offset],
            r,
            |[ox, oo], len| {
                // SAFETY: the run's `len` offsets come from the views' layouts; the output is
                // distinct from the input, and each run is written by one task.
                unsafe {
                    let (px, po) = (x.ptr::<A>(ox), out.ptr::<O>(oo));
                    if (ix, io) == (1, 1) {
                        let (sx, so) = (
                            std::slice::from_raw_parts(px, len),
                            std::slice::from_raw_parts_mut(po, len),
                        );
                        contiguous(sx, so, &f);
                    } else {
                        for i in 0..len {
                            po.add(i * io).write(f(px.add(i * ix).read()));
                        }
                    }
                }
            },
        );
        Ok(())
    })
}

/// `out[i] = f(a[i], b[i])` with NumPy broadcasting.
pub(crate) fn map2<A: Copy + Send + Sync, B: Copy + Send + Sync, O: Copy + Send + Sync>(
    a: &TView,
    b: &TView,
    out: &TView,
    f: impl Fn(A, B) -> O + Sync + Send,
) -> Result<()> {
    map2_runs(a, b, out, f, |sa, sb, so, f| {
        for ((o, &x), &y) in so.iter_mut().zip(sa).zip(sb) {
            *o = f(x, y);
        }
    })
}

/// [`map2`] with `contiguous` on each run that is contiguous in all three (given `f`), `f`
/// element by element on the others.
fn map2_runs<A, B, O, F>(
    a: &TView,
    b: &TView,
    out: &TView,
    f: F,
    contiguous: impl Fn(&[A], &[B], &mut [O], &F) + Sync + Send,
) -> Result<()>
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    O: Copy + Send + Sync,
    F: Fn(A, B) -> O + Sync + Send,
{
    let shape = &out.desc.shape;
    let (a, b) = (a.broadcast_cow(shape), b.broadcast_cow(shape));
    // Contiguous operands coalesce to one run: one typed loop a task.
    let (runs, [sa, sb, so]) =
        coalesce(shape, [&a.desc.strides, &b.desc.strides, &out.desc.strides]);
    let inner = |s: &[usize]| s.last().copied().unwrap_or(0);
    let (ia, ib, io) = (inner(&sa), inner(&sb), inner(&so));
    par_ranges(out.desc.numel(), GRAIN, |r| {
        walk_runs(
            &runs,
            [&sa, &sb, &so],
            [a.desc.offset, b.desc.offset, out.desc.offset],
            r,
            |[oa, ob, oo], len| {
                // SAFETY: the run's `len` offsets come from the views' layouts; the output is
                // distinct from the inputs, and each run is written by one task.
                unsafe {
                    let (pa, pb) = (a.ptr::<A>(oa).cast_const(), b.ptr::<B>(ob).cast_const());
                    let po = out.ptr::<O>(oo);
                    let so = || std::slice::from_raw_parts_mut(po, len);
                    match (ia, ib, io) {
                        (1, 1, 1) => contiguous(
                            std::slice::from_raw_parts(pa, len),
                            std::slice::from_raw_parts(pb, len),
                            so(),
                            &f,
                        ),
                        (1, 0, 1) => {
                            let y = pb.read();
                            for (o, &x) in so().iter_mut().zip(std::slice::from_raw_parts(pa, len))
                            {
                                *o = f(x, y);
                            }
                        }
                        (0, 1, 1) => {
                            let x = pa.read();
                            for (o, &y) in so().iter_mut().zip(std::slice::from_raw_parts(pb, len))
                            {
                                *o = f(x, y);
                            }
                        }
                        _ => {
                            for i in 0..len {
                                po.add(i * io)
                                    .write(f(pa.add(i * ia).read(), pb.add(i * ib).read()));
                            }
                        }
                    }
                }
            },
        );
        Ok(())
    })
}

/// An activation gradient `out[i] = op(g[i], x[i])` (NumPy broadcasting) through its vector
/// kernel on contiguous runs of all three and its scalar form (the kernel at one lane) on
/// others; 16-bit floats compute in f32 and round once.
fn map_grad(dtype: DType, g: &TView, x: &TView, out: &TView, op: vmath::Grad) -> Result<()> {
    match dtype {
        DType::F32 => map2_kernel::<f32>(g, x, out, op, vmath::grad),
        DType::F16 => map2_kernel::<f16>(g, x, out, op, vmath::grad_16),
        DType::BF16 => map2_kernel::<bf16>(g, x, out, op, vmath::grad_b16),
        other => Err(unsupported_dtype(other)),
    }
}

fn map2_kernel<T: FloatStore>(
    a: &TView,
    b: &TView,
    out: &TView,
    op: vmath::Grad,
    kernel: fn(vmath::Grad, &[T], &[T], &mut [T]),
) -> Result<()> {
    let f = op.scalar();
    map2_runs(
        a,
        b,
        out,
        |x: T, y: T| T::from_f32(f(x.to_f32(), y.to_f32())),
        |sa, sb, so, _| kernel(op, sa, sb, so),
    )
}

fn map_arith<FF, FI>(dtype: DType, a: &TView, b: &TView, out: &TView, ff: FF, fi: FI) -> Result<()>
where
    FF: Fn(f32, f32) -> f32 + Sync + Send + Copy,
    FI: Fn(i64, i64) -> i64 + Sync + Send + Copy,
{
    fn float<T: FloatStore>(
        a: &TView,
        b: &TView,
        out: &TView,
        f: impl Fn(f32, f32) -> f32 + Sync + Send,
    ) -> Result<()> {
        map2::<T, T, T>(a, b, out, |x, y| T::from_f32(f(x.to_f32(), y.to_f32())))
    }
    fn int<T: IntStore>(
        a: &TView,
        b: &TView,
        out: &TView,
        f: impl Fn(i64, i64) -> i64 + Sync + Send,
    ) -> Result<()> {
        map2::<T, T, T>(a, b, out, |x, y| T::from_i64(f(x.to_i64(), y.to_i64())))
    }
    match dtype {
        DType::F32 => map2::<f32, f32, f32>(a, b, out, ff),
        DType::F16 => float::<f16>(a, b, out, ff),
        DType::BF16 => float::<bf16>(a, b, out, ff),
        DType::I32 => int::<i32>(a, b, out, fi),
        DType::I64 => map2::<i64, i64, i64>(a, b, out, fi),
        DType::U8 => int::<u8>(a, b, out, fi),
        DType::I8 => int::<i8>(a, b, out, fi),
        // Only the bitwise and, or and xor take bools, and they keep 0 and 1.
        DType::Bool => {
            map2::<u8, u8, u8>(a, b, out, move |x, y| (fi(x as i64, y as i64) & 1) as u8)
        }
        other => Err(unsupported_dtype(other)),
    }
}

fn map_compare<FF, FI>(
    dtype: DType,
    a: &TView,
    b: &TView,
    out: &TView,
    ff: FF,
    fi: FI,
) -> Result<()>
where
    FF: Fn(f32, f32) -> bool + Sync + Send + Copy,
    FI: Fn(i64, i64) -> bool + Sync + Send + Copy,
{
    fn float<T: FloatStore>(
        a: &TView,
        b: &TView,
        out: &TView,
        f: impl Fn(f32, f32) -> bool + Sync + Send,
    ) -> Result<()> {
        map2::<T, T, u8>(a, b, out, |x, y| f(x.to_f32(), y.to_f32()) as u8)
    }
    match dtype {
        DType::F32 => map2::<f32, f32, u8>(a, b, out, |x, y| ff(x, y) as u8),
        DType::F16 => float::<f16>(a, b, out, ff),
        DType::BF16 => float::<bf16>(a, b, out, ff),
        DType::I32 => map2::<i32, i32, u8>(a, b, out, |x, y| fi(x as i64, y as i64) as u8),
        DType::I64 => map2::<i64, i64, u8>(a, b, out, |x, y| fi(x, y) as u8),
        DType::Bool => {
            map2::<u8, u8, u8>(a, b, out, |x, y| fi((x != 0) as i64, (y != 0) as i64) as u8)
        }
        other => Err(unsupported_dtype(other)),
    }
}

/// A unary op with a vector kernel (f32, and 16-bit floats computed in f32 and rounded once):
/// contiguous runs through the kernel, strided runs through its scalar form.
fn map_kernel(dtype: DType, x: &TView, out: &TView, op: vmath::Unary) -> Result<()> {
    let f = op.scalar();
    match dtype {
        DType::F32 => map1_kernel::<f32>(x, out, op, f, vmath::unary),
        DType::F16 => map1_kernel::<f16>(x, out, op, f, vmath::unary_16),
        DType::BF16 => map1_kernel::<bf16>(x, out, op, f, vmath::unary_b16),
        other => Err(unsupported_dtype(other)),
    }
}

/// The vector kernel of a plain unary op, where it has one.
fn kernel_of(op: UnaryOp) -> Option<vmath::Unary> {
    match op {
        UnaryOp::Exp => Some(vmath::Unary::Exp),
        UnaryOp::Tanh => Some(vmath::Unary::Tanh),
        UnaryOp::Sigmoid => Some(vmath::Unary::Sigmoid),
        UnaryOp::Silu => Some(vmath::Unary::Silu),
        UnaryOp::Erf => Some(vmath::Unary::Erf),
        _ => None,
    }
}

/// A unary op in its f32 form `ff` (16-bit floats compute in f32) and integer form `fi`.
fn map_unary<FF, FI>(dtype: DType, x: &TView, out: &TView, ff: FF, fi: FI) -> Result<()>
where
    FF: Fn(f32) -> f32 + Sync + Send + Copy,
    FI: Fn(i64) -> i64 + Sync + Send + Copy,
{
    fn float<T: FloatStore>(
        x: &TView,
        out: &TView,
        f: impl Fn(f32) -> f32 + Sync + Send,
    ) -> Result<()> {
        map1::<T, T>(x, out, |v| T::from_f32(f(v.to_f32())))
    }
    match dtype {
        DType::F32 => map1_simd::<f32, f32>(x, out, ff),
        DType::F16 => float::<f16>(x, out, ff),
        DType::BF16 => float::<bf16>(x, out, ff),
        DType::I32 => map1::<i32, i32>(x, out, move |v| fi(v as i64) as i32),
        DType::I64 => map1::<i64, i64>(x, out, fi),
        DType::U8 => map1::<u8, u8>(x, out, move |v| fi(v as i64) as u8),
        DType::I8 => map1::<i8, i8>(x, out, move |v| fi(v as i64) as i8),
        // Only `bitwise_not` takes bools: its low bit is the result.
        DType::Bool => map1::<u8, u8>(x, out, move |v| (fi(v as i64) & 1) as u8),
        other => Err(unsupported_dtype(other)),
    }
}

/// `out[i] = f(x[i])` as bool, for any input dtype: `ff` for floats (16-bit ones widened),
/// `fi` for integers and bools.
fn map_predicate<FF, FI>(dtype: DType, x: &TView, out: &TView, ff: FF, fi: FI) -> Result<()>
where
    FF: Fn(f32) -> bool + Sync + Send + Copy,
    FI: Fn(i64) -> bool + Sync + Send + Copy,
{
    match dtype {
        DType::F32 => map1::<f32, u8>(x, out, move |v| ff(v) as u8),
        DType::F16 => map1::<f16, u8>(x, out, move |v| ff(v.to_f32()) as u8),
        DType::BF16 => map1::<bf16, u8>(x, out, move |v| ff(v.to_f32()) as u8),
        DType::I32 => map1::<i32, u8>(x, out, move |v| fi(v as i64) as u8),
        DType::I64 => map1::<i64, u8>(x, out, move |v| fi(v) as u8),
        DType::U8 => map1::<u8, u8>(x, out, move |v| fi(v as i64) as u8),
        DType::I8 => map1::<i8, u8>(x, out, move |v| fi(v as i64) as u8),
        DType::Bool => map1::<u8, u8>(x, out, move |v| fi((v != 0) as i64) as u8),
        other => Err(unsupported_dtype(other)),
    }
}

fn unsupported_dtype(d: DType) -> Error {
    Error::internal(format!(
        "host kernel: dtype {d} passed validation but has no host path"
    ))
}

fn nan_max(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.max(y)
    }
}

fn nan_min(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.min(y)
    }
}

/// Binary arithmetic.
pub(crate) fn binary(call: &OpCall, op: BinaryOp) -> Result<Box<Body>> {
    let dtype = input_dtype(call);
    Ok(Box::new(move |b: &Bound| {
        let (x, y, out) = (b.input(0)?, b.input(1)?, b.out(0));
        match op {
            BinaryOp::Add => map_arith(dtype, x, y, out, |a, b| a + b, |a, b| a.wrapping_add(b)),
            BinaryOp::Sub => map_arith(dtype, x, y, out, |a, b| a - b, |a, b| a.wrapping_sub(b)),
            BinaryOp::Mul => map_arith(dtype, x, y, out, |a, b| a * b, |a, b| a.wrapping_mul(b)),
            BinaryOp::Div => map_arith(
                dtype,
                x,
                y,
                out,
                |a, b| a / b,
                |a, b| if b == 0 { 0 } else { a.wrapping_div(b) },
            ),
            BinaryOp::Maximum => map_arith(dtype, x, y, out, nan_max, |a, b| a.max(b)),
            BinaryOp::Minimum => map_arith(dtype, x, y, out, nan_min, |a, b| a.min(b)),
            BinaryOp::Pow => map_arith(dtype, x, y, out, f32::powf, |a, _| a),
            BinaryOp::Atan2 => map_arith(dtype, x, y, out, f32::atan2, |a, _| a),
            BinaryOp::Remainder => map_arith(dtype, x, y, out, remainder_f, remainder_i),
            BinaryOp::Fmod => map_arith(
                dtype,
                x,
                y,
                out,
                |a, b| a % b,
                |a, b| if b == 0 { 0 } else { a.wrapping_rem(b) },
            ),
            BinaryOp::BitwiseAnd => map_arith(dtype, x, y, out, |a, _| a, |a, b| a & b),
            BinaryOp::BitwiseOr => map_arith(dtype, x, y, out, |a, _| a, |a, b| a | b),
            BinaryOp::BitwiseXor => map_arith(dtype, x, y, out, |a, _| a, |a, b| a ^ b),
            BinaryOp::BitwiseLeftShift | BinaryOp::BitwiseRightShift => {
                let width = width_of(dtype);
                let left = op == BinaryOp::BitwiseLeftShift;
                map_arith(
                    dtype,
                    x,
                    y,
                    out,
                    |a, _| a,
                    // Values are sign-extended (u8 ones are >= 0): an i64 shift is the dtype's
                    // arithmetic (u8: logical) shift. Amounts outside [0, width) shift
                    // everything out: 0 to the left, the sign to the right.
                    move |a, b| match ((0..width).contains(&b), left) {
                        (true, true) => a << b,
                        (true, false) => a >> b,
                        (false, true) => 0,
                        (false, false) => a >> 63,
                    },
                )
            }
        }
    }))
}

/// Comparisons.
pub(crate) fn compare(call: &OpCall, op: CompareOp) -> Result<Box<Body>> {
    let dtype = input_dtype(call);
    Ok(Box::new(move |b: &Bound| {
        let (x, y, out) = (b.input(0)?, b.input(1)?, b.out(0));
        match op {
            CompareOp::Eq => map_compare(dtype, x, y, out, |a, b| a == b, |a, b| a == b),
            CompareOp::Ne => map_compare(dtype, x, y, out, |a, b| a != b, |a, b| a != b),
            CompareOp::Lt => map_compare(dtype, x, y, out, |a, b| a < b, |a, b| a < b),
            CompareOp::Le => map_compare(dtype, x, y, out, |a, b| a <= b, |a, b| a <= b),
            CompareOp::Gt => map_compare(dtype, x, y, out, |a, b| a > b, |a, b| a > b),
            CompareOp::Ge => map_compare(dtype, x, y, out, |a, b| a >= b, |a, b| a >= b),
            CompareOp::LogicalAnd => map_compare(
                dtype,
                x,
                y,
                out,
                |a, b| a != 0.0 && b != 0.0,
                |a, b| a != 0 && b != 0,
            ),
            CompareOp::LogicalOr => map_compare(
                dtype,
                x,
                y,
                out,
                |a, b| a != 0.0 || b != 0.0,
                |a, b| a != 0 || b != 0,
            ),
            CompareOp::LogicalXor => map_compare(
                dtype,
                x,
                y,
                out,
                |a, b| (a != 0.0) != (b != 0.0),
                |a, b| (a != 0) != (b != 0),
            ),
        }
    }))
}

/// Python's floor-mod: `fmod`, moved to the sign of `b` when it is not 0.
fn remainder_f(a: f32, b: f32) -> f32 {
    let r = a % b;
    if r != 0.0 && (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

/// Integer floor-mod; `x % 0 = 0`, `MIN % -1 = 0`.
fn remainder_i(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    let r = a.wrapping_rem(b);
    if r != 0 && (r < 0) != (b < 0) {
        r + b
    } else {
        r
    }
}

/// The width in bits of an integer dtype (the shift amounts that are in range).
fn width_of(dtype: DType) -> i64 {
    dtype.size_in_bytes() as i64 * 8
}

fn input_dtype(call: &OpCall) -> DType {
    call.inputs[0]
        .as_ref()
        .map(|t| t.dtype())
        .unwrap_or(DType::F32)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `sign` of a float: NaN stays NaN, either zero gives +0.
fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else if v.is_nan() {
        v
    } else {
        0.0
    }
}

/// Gives closures the types of a unary op's two forms.
fn fns<F, I>(f: F, i: I) -> (F, I)
where
    F: Fn(f32) -> f32 + Sync + Send + Copy,
    I: Fn(i64) -> i64 + Sync + Send + Copy,
{
    (f, i)
}

/// Evaluates `$body` with `$ff` bound to the f32 form of the plain unary op `$op` (16-bit floats
/// compute in f32 and round once) and `$fi` to its integer form, for the ops that take integers
/// (the others never see one: validation refuses). Each op is its own instance of `$body`, so
/// the forms inline into its loops. (`unary` runs the ops with a vector kernel, [`kernel_of`],
/// through it; their rows here are the same kernels' scalar forms.)
macro_rules! with_unary_fns {
    ($op:expr, |$ff:ident, $fi:ident| $body:expr) => {{
        let float_only = |v: i64| v;
        unary_arms!($op, $ff, $fi, $body;
            Neg => (|v| -v, |v| v.wrapping_neg()),
            Abs => (f32::abs, |v| v.wrapping_abs()),
            Relu => (|v| if v < 0.0 { 0.0 } else { v }, |v| v.max(0)),
            Exp => (vmath::exp, float_only),
            Log => (f32::ln, float_only),
            Sqrt => (f32::sqrt, float_only),
            Rsqrt => (|v| 1.0 / v.sqrt(), float_only),
            Sin => (f32::sin, float_only),
            Cos => (f32::cos, float_only),
            Tanh => (vmath::tanh, float_only),
            Sigmoid => (vmath::sigmoid, float_only),
            Silu => (vmath::silu, float_only),
            Erf => (vmath::erf, float_only),
            Floor => (f32::floor, float_only),
            Ceil => (f32::ceil, float_only),
            Round => (f32::round_ties_even, float_only),
            Trunc => (f32::trunc, float_only),
            Sign => (sign, i64::signum),
            Reciprocal => (|v| 1.0 / v, float_only),
            Log1p => (f32::ln_1p, float_only),
            Expm1 => (f32::exp_m1, float_only),
            Tan => (f32::tan, float_only),
            Atan => (f32::atan, float_only),
            Asin => (f32::asin, float_only),
            Acos => (f32::acos, float_only),
            Sinh => (f32::sinh, float_only),
            Cosh => (f32::cosh, float_only),
            // In f64 and rounded once: the f32 forms lose accuracy near 1 (acosh) and 0.
            Asinh => (|v| (v as f64).asinh() as f32, float_only),
            Acosh => (|v| (v as f64).acosh() as f32, float_only),
            Atanh => (|v| (v as f64).atanh() as f32, float_only),
            // x * (t / 6): x * t would overflow for x near the largest finite value.
            Hardswish => (|v| v * ((v + 3.0).clamp(0.0, 6.0) / 6.0), float_only),
            BitwiseNot => (|v| v, |v| !v),
        )
    }};
}

/// The arms of [`with_unary_fns`]: one `match` arm per op of the table.
macro_rules! unary_arms {
    ($op:expr, $ff:ident, $fi:ident, $body:expr; $($v:ident => ($f:expr, $i:expr),)*) => {
        match $op {
            $(UnaryOp::$v => {
                let ($ff, $fi) = fns($f, $i);
                $body
            })*
        }
    };
}

/// Plain unary ops.
pub(crate) fn unary(call: &OpCall, op: UnaryOp) -> Result<Box<Body>> {
    let dtype = input_dtype(call);
    if let Some(k) = kernel_of(op) {
        return Ok(Box::new(move |b: &Bound| {
            map_kernel(dtype, b.input(0)?, b.out(0), k)
        }));
    }
    Ok(with_unary_fns!(op, |ff, fi| Box::new(move |b: &Bound| {
        map_unary(dtype, b.input(0)?, b.out(0), ff, fi)
    })))
}

/// `isnan`, `isinf`, `isfinite`, `logical_not`: bool results for any dtype.
pub(crate) fn predicate(call: &OpCall, op: PredicateOp) -> Result<Box<Body>> {
    let dtype = input_dtype(call);
    Ok(Box::new(move |b: &Bound| {
        let (x, out) = (b.input(0)?, b.out(0));
        match op {
            PredicateOp::IsNan => map_predicate(dtype, x, out, f32::is_nan, |_| false),
            PredicateOp::IsInf => map_predicate(dtype, x, out, f32::is_infinite, |_| false),
            PredicateOp::IsFinite => map_predicate(dtype, x, out, f32::is_finite, |_| true),
            PredicateOp::LogicalNot => map_predicate(dtype, x, out, |v| v == 0.0, |v| v == 0),
        }
    }))
}

/// `softplus`, `leaky_relu`, `elu`: activations with float attributes, in f32.
pub(crate) fn activation(call: &OpCall, op: ActivationOp) -> Result<Box<Body>> {
    let dtype = input_dtype(call);
    let a = attrs(call)?;
    // Each arm's closure is its own type, so that the element loop inlines it (and vectorises
    // what it can); f32 runs the op's vector kernel where it has one.
    macro_rules! body {
        ($f:expr, $k:expr) => {{
            let (f, k): (_, Option<vmath::Act>) = ($f, $k);
            Box::new(move |b: &Bound| match k {
                Some(k) if dtype == DType::F32 => {
                    map1_runs(b.input(0)?, b.out(0), f, |x, o, _| vmath::act(k, x, o))
                }
                _ => map_unary(dtype, b.input(0)?, b.out(0), f, |v| v),
            }) as Box<Body>
        }};
    }
    Ok(match op {
        ActivationOp::Softplus => {
            let beta = a.float_or_default("beta")? as f32;
            let threshold = a.float_or_default("threshold")? as f32;
            let f = move |v: f32| {
                // log1p(e^t) as max(t, 0) + log1p(e^-|t|): never overflows.
                let t = v * beta;
                if t > threshold {
                    v
                } else {
                    (t.max(0.0) + (-t.abs()).exp().ln_1p()) / beta
                }
            };
            body!(f, Some(vmath::Act::Softplus(beta, threshold)))
        }
        ActivationOp::LeakyRelu => {
            let slope = a.float_or_default("negative_slope")? as f32;
            body!(move |v: f32| if v > 0.0 { v } else { v * slope }, None)
        }
        ActivationOp::Elu => {
            let alpha = a.float_or_default("alpha")? as f32;
            let f = move |v: f32| if v > 0.0 { v } else { alpha * v.exp_m1() };
            body!(f, Some(vmath::Act::Elu(alpha)))
        }
    })
}

/// The activation gradients: `dx` from `grad` and `x`, in f32.
pub(crate) fn activation_backward(call: &OpCall, op: ActivationBackwardOp) -> Result<Box<Body>> {
    use ActivationBackwardOp as B;
    let dtype = input_dtype(call);
    let a = attrs(call)?;
    // Each arm's closure is its own type, so the element loop inlines it; f32 runs the op's
    // vector kernel where it has one.
    macro_rules! body {
        ($f:expr) => {
            body!($f, None)
        };
        ($f:expr, $k:expr) => {{
            let (f, k): (_, Option<vmath::Act>) = ($f, $k);
            Box::new(move |b: &Bound| {
                let (g, x, o) = (b.input(0)?, b.input(1)?, b.out(0));
                match k {
                    Some(k) if dtype == DType::F32 => {
                        map2_runs(g, x, o, f, |sg, sx, so, _| vmath::act_grad(k, sg, sx, so))
                    }
                    _ => map_arith(dtype, g, x, o, f, |_, _| 0),
                }
            }) as Box<Body>
        }};
    }
    Ok(match op {
        B::Relu => body!(|g: f32, x: f32| if x <= 0.0 { 0.0 } else { g }),
        B::LeakyRelu => {
            let slope = a.float_or_default("negative_slope")? as f32;
            body!(move |g: f32, x: f32| if x > 0.0 { g } else { g * slope })
        }
        B::Elu => {
            let alpha = a.float_or_default("alpha")? as f32;
            let f = move |g: f32, x: f32| if x <= 0.0 { g * alpha * x.exp() } else { g };
            body!(f, Some(vmath::Act::Elu(alpha)))
        }
        B::Softplus => {
            let beta = a.float_or_default("beta")? as f32;
            let threshold = a.float_or_default("threshold")? as f32;
            let f = move |g: f32, x: f32| {
                let t = x * beta;
                if t > threshold {
                    g
                } else {
                    g * sigmoid(t)
                }
            };
            body!(f, Some(vmath::Act::Softplus(beta, threshold)))
        }
        B::Sigmoid | B::Tanh | B::Silu | B::Gelu => {
            let k = match op {
                B::Sigmoid => vmath::Grad::Sigmoid,
                B::Tanh => vmath::Grad::Tanh,
                B::Silu => vmath::Grad::Silu,
                _ if a.str_opt("approximate")? == Some("tanh") => vmath::Grad::GeluTanh,
                _ => vmath::Grad::Gelu,
            };
            Box::new(move |b: &Bound| map_grad(dtype, b.input(0)?, b.input(1)?, b.out(0), k))
        }
    })
}

/// `gelu` (erf or tanh form) and `clamp`, the unary ops with attributes.
pub(crate) fn gelu_clamp(call: &OpCall) -> Result<Box<Body>> {
    let dtype = input_dtype(call);
    let a = attrs(call)?;
    let form = if call.op == "clamp" {
        let (lo, hi) = (a.float("min")?, a.float("max")?);
        Some((lo, hi))
    } else {
        None
    };
    let tanh_gelu = a.str_opt("approximate")? == Some("tanh");
    Ok(Box::new(move |b: &Bound| {
        let (x, out) = (b.input(0)?, b.out(0));
        match form {
            Some((lo, hi)) => {
                let (lf, hf) = (lo as f32, hi as f32);
                let (li, hi_i) = (lo as i64, hi as i64);
                map_unary(
                    dtype,
                    x,
                    out,
                    move |v| nan_min(nan_max(v, lf), hf),
                    move |v| v.max(li).min(hi_i),
                )
            }
            None if tanh_gelu => map_kernel(dtype, x, out, vmath::Unary::GeluTanh),
            None => map_kernel(dtype, x, out, vmath::Unary::Gelu),
        }
    }))
}

/// Copies elements of any dtype, by their size.
pub(crate) fn copy_elements(x: &TView, out: &TView) -> Result<()> {
    match x.desc.dtype.size_in_bytes() {
        1 => copy_as::<u8>(x, out),
        2 => copy_as::<u16>(x, out),
        4 => copy_as::<u32>(x, out),
        _ => copy_as::<u64>(x, out),
    }
}

fn copy_as<T: Copy + Send + Sync>(x: &TView, out: &TView) -> Result<()> {
    if copy_transposed::<T>(x, out)? {
        return Ok(());
    }
    map1::<T, T>(x, out, |v| v)
}

/// The edge of a transpose tile: 16 f32 are one 64-byte cache line, so a tile reads 16 lines
/// of the input and writes 16 lines of the output (measured against 32 and 64 on a
/// 4096 x 4096 f32 transpose: the fastest of the three).
const TILE: usize = 16;

/// Output rows a task of a transposed copy writes: each input row it reads gives it `BAND`
/// contiguous elements (eight cache lines of f32) per visit to that row's page (a 4096 x 4096
/// f32 transpose on a 2-core AMD EPYC against onnxruntime: 0.76x with 16, 0.86x with 64,
/// 0.92x with 128).
const BAND: usize = 128;

/// Copies `x` into a contiguous-innermost `out` tile by tile when `x` is a transposed view (its
/// innermost coalesced dimension strided, the one before it of stride 1), so that both sides are
/// read and written a cache line at a time; `false` (nothing copied) for other layouts.
fn copy_transposed<T: Copy + Send + Sync>(x: &TView, out: &TView) -> Result<bool> {
    if x.desc.shape != out.desc.shape {
        return Ok(false);
    }
    let (dims, [sx, so]) = coalesce(&out.desc.shape, [&x.desc.strides, &out.desc.strides]);
    let r = dims.len();
    if r < 2 || so[r - 1] != 1 || sx[r - 2] != 1 || sx[r - 1] == 1 {
        return Ok(false);
    }
    let (rows, cols) = (dims[r - 2], dims[r - 1]);
    if rows < TILE || cols < TILE {
        return Ok(false);
    }
    let (xs, os) = (sx[r - 1], so[r - 2]);
    let row_blocks = rows.div_ceil(BAND);
    let batches: usize = dims[..r - 2].iter().product();
    par_ranges(
        batches * row_blocks,
        (GRAIN / (BAND * cols)).max(1),
        |tasks| {
            for t in tasks {
                let (mut bi, rb) = (t / row_blocks, t % row_blocks);
                let (mut ox, mut oo) = (x.desc.offset, out.desc.offset);
                for d in (0..r - 2).rev() {
                    ox += (bi % dims[d]) * sx[d];
                    oo += (bi % dims[d]) * so[d];
                    bi /= dims[d];
                }
                let (r0, r1) = (rb * BAND, ((rb + 1) * BAND).min(rows));
                let (px, po) = (x.ptr::<T>(ox), out.ptr::<T>(oo));
                for c0 in (0..cols).step_by(TILE) {
                    let c1 = (c0 + TILE).min(cols);
                    for i in r0..r1 {
                        for j in c0..c1 {
                            // SAFETY: (i, j) is inside the coalesced shape, whose offsets the
                            // views' layouts give; each output element is written by one task.
                            unsafe { po.add(i * os + j).write(px.add(i + j * xs).read()) }
                        }
                    }
                }
            }
            Ok(())
        },
    )?;
    Ok(true)
}

/// Writes `value(linear index)` to every element of `out`.
fn generate(out: &TView, value: impl Fn(usize) -> Val + Sync) -> Result<()> {
    par_ranges(out.desc.numel(), GRAIN, |r| {
        walk(
            &out.desc.shape,
            [&out.desc.strides],
            [out.desc.offset],
            r,
            |i, [o]| {
                // SAFETY: the offset comes from the output's layout.
                unsafe { store(out, o, value(i)) }
            },
        );
        Ok(())
    })
}

/// Writes `value` to every element of `out`: converted once (as [`store`] converts), then
/// copied, when the layout is contiguous.
fn splat(out: &TView, value: Val) -> Result<()> {
    fn fill<T: Copy>(out: &TView) {
        // SAFETY: a contiguous output of a validated call, with at least one element, whose
        // first element was just written; T has the dtype's size.
        unsafe {
            if let Some(s) = out.slice_mut::<T>() {
                let first = s[0];
                s.fill(first);
            }
        }
    }
    if out.desc.numel() == 0 || !out.desc.is_contiguous() {
        return generate(out, |_| value);
    }
    // SAFETY: the output's first element, at its offset.
    unsafe { store(out, out.desc.offset, value) };
    match out.desc.dtype.size_in_bytes() {
        1 => fill::<u8>(out),
        2 => fill::<u16>(out),
        4 => fill::<u32>(out),
        _ => fill::<u64>(out),
    }
    Ok(())
}

/// `fill`, `arange`, `copy`, `cast`.
pub(crate) fn movement(call: &OpCall) -> Result<Box<Body>> {
    let a = attrs(call)?;
    Ok(match call.op.as_str() {
        "fill" => {
            let value = a.float("value")?;
            Box::new(move |b: &Bound| splat(b.out(0), Val::F(value)))
        }
        "arange" => {
            let (start, step) = (a.float("start")?, a.float("step")?);
            let int = call.outputs[0].dtype().is_int();
            Box::new(move |b: &Bound| {
                if int {
                    let (s, d) = (start as i64, step as i64);
                    generate(b.out(0), |i| {
                        Val::I(s.wrapping_add((i as i64).wrapping_mul(d)))
                    })
                } else {
                    generate(b.out(0), |i| Val::F(start + i as f64 * step))
                }
            })
        }
        "copy" => Box::new(|b: &Bound| copy_elements(b.input(0)?, b.out(0))),
        _ => Box::new(|b: &Bound| {
            let (x, out) = (b.input(0)?, b.out(0));
            if x.desc.dtype == out.desc.dtype {
                return copy_elements(x, out);
            }
            par_ranges(out.desc.numel(), GRAIN, |r| {
                walk(
                    &out.desc.shape,
                    [&x.desc.strides, &out.desc.strides],
                    [x.desc.offset, out.desc.offset],
                    r,
                    |_, [ox, oo]| {
                        // SAFETY: offsets come from the views' layouts.
                        unsafe { store(out, oo, load(x, ox)) }
                    },
                );
                Ok(())
            })
        }),
    })
}

/// `where(cond, a, b)`.
pub(crate) fn select(_call: &OpCall) -> Result<Box<Body>> {
    Ok(Box::new(|b: &Bound| {
        let (c, x, y, out) = (b.input(0)?, b.input(1)?, b.input(2)?, b.out(0));
        let shape = out.desc.shape.clone();
        let (c, x, y) = (
            c.broadcast(&shape),
            x.broadcast(&shape),
            y.broadcast(&shape),
        );
        let size = out.desc.dtype.size_in_bytes();
        par_ranges(out.desc.numel(), GRAIN, |r| {
            walk(
                &shape,
                [
                    &c.desc.strides,
                    &x.desc.strides,
                    &y.desc.strides,
                    &out.desc.strides,
                ],
                [c.desc.offset, x.desc.offset, y.desc.offset, out.desc.offset],
                r,
                |_, [oc, ox, oy, oo]| {
                    // SAFETY: offsets come from the views' layouts; the storage type matches the size.
                    unsafe {
                        let pick = c.get::<u8>(oc) != 0;
                        match size {
                            1 => out.set(
                                oo,
                                if pick {
                                    x.get::<u8>(ox)
                                } else {
                                    y.get::<u8>(oy)
                                },
                            ),
                            2 => out.set(
                                oo,
                                if pick {
                                    x.get::<u16>(ox)
                                } else {
                                    y.get::<u16>(oy)
                                },
                            ),
                            4 => out.set(
                                oo,
                                if pick {
                                    x.get::<u32>(ox)
                                } else {
                                    y.get::<u32>(oy)
                                },
                            ),
                            _ => out.set(
                                oo,
                                if pick {
                                    x.get::<u64>(ox)
                                } else {
                                    y.get::<u64>(oy)
                                },
                            ),
                        }
                    }
                },
            );
            Ok(())
        })
    }))
}
