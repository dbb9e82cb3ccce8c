//! The differential suite: each case calls Burn backend ops on anyaccel (on every device the
//! suite is given) and on Burn's own CPU backend (burn-flex) with the same inputs, and compares
//! the results: exactly for ints and bools, within the case's tolerance for floats.
//!
//! Devices: `ANYACCEL_BURN_DEVICES` (comma separated; default `cpu:0,opencl:0,vulkan:0`, plus
//! the reference plugin `plugin:ref:0` when examples/plugin-c is built). A device that is not
//! available is skipped, saying so, unless `ANYACCEL_REQUIRE` names its backend (the test
//! command names cpu, opencl and vulkan).

use anyaccel_burn::{Anyaccel, AnyaccelDevice};
use burn_backend::ops::{BoolTensorOps, FloatTensorOps, IntTensorOps, ModuleOps};
use burn_backend::ops::{ConvOptions, ConvTransposeOptions, InterpolateMode, InterpolateOptions};
use burn_backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn_backend::{Backend, DType, Scalar, Shape, Slice, TensorData};
use burn_flex::Flex;
use burn_std::{AttentionModuleOptions, BoolStore, FloatDType, IndexingUpdateOp, IntDType};

mod common;
#[path = "known/failures.rs"]
mod known;

use common::Rng;

/// What a case's input is.
#[derive(Clone, Copy)]
enum In {
    /// f32 in [lo, hi).
    F(f32, f32),
    /// i64 in [lo, hi).
    I(i64, i64),
    /// bool.
    B,
}

fn make(rng: &mut Rng, kind: In, shape: &[usize]) -> TensorData {
    let n: usize = shape.iter().product();
    match kind {
        In::F(lo, hi) => TensorData::new(
            (0..n)
                .map(|_| lo + (hi - lo) * rng.unit() as f32)
                .collect::<Vec<f32>>(),
            shape.to_vec(),
        ),
        In::I(lo, hi) => TensorData::new(
            (0..n)
                .map(|_| lo + rng.below((hi - lo) as u64) as i64)
                .collect::<Vec<i64>>(),
            shape.to_vec(),
        ),
        In::B => TensorData::new(
            (0..n).map(|_| rng.below(2) == 1).collect::<Vec<bool>>(),
            shape.to_vec(),
        ),
    }
}

fn f<B: Backend>(d: &TensorData, dev: &B::Device) -> FloatTensor<B> {
    B::float_from_data(d.clone(), dev)
}
fn i<B: Backend>(d: &TensorData, dev: &B::Device) -> IntTensor<B> {
    B::int_from_data(d.clone(), dev)
}
fn b<B: Backend>(d: &TensorData, dev: &B::Device) -> BoolTensor<B> {
    B::bool_from_data(d.clone(), dev)
}
fn fo<B: Backend>(t: FloatTensor<B>) -> TensorData {
    burn_backend::read_sync(B::float_into_data(t)).expect("float_into_data")
}
fn io<B: Backend>(t: IntTensor<B>) -> TensorData {
    burn_backend::read_sync(B::int_into_data(t)).expect("int_into_data")
}
fn bo<B: Backend>(t: BoolTensor<B>) -> TensorData {
    burn_backend::read_sync(B::bool_into_data(t)).expect("bool_into_data")
}

/// A case: its inputs' kinds and shapes, and the same function on both backends.
struct Case {
    name: &'static str,
    inputs: Vec<(In, Vec<usize>)>,
    /// Absolute and relative tolerance for float outputs.
    tol: (f64, f64),
    run_a: fn(&AnyaccelDevice, &[TensorData]) -> Vec<TensorData>,
    run_r: fn(&<Flex as burn_backend::BackendTypes>::Device, &[TensorData]) -> Vec<TensorData>,
}

/// `case!(name, tol, [inputs], |B, dev, x| outputs)`: one generic body instantiated twice.
macro_rules! case {
    ($name:expr, $tol:expr, [$($k:expr => $s:expr),* $(,)?], |$b:ident, $dev:ident, $x:ident| $body:expr) => {{
        fn run<$b: Backend>($dev: &$b::Device, $x: &[TensorData]) -> Vec<TensorData> {
            let _ = (&$dev, &$x);
            $body
        }
        Case {
            name: $name,
            inputs: vec![$(($k, $s.to_vec())),*],
            tol: $tol,
            run_a: run::<Anyaccel>,
            run_r: run::<Flex>,
        }
    }};
}

const EXACT: (f64, f64) = (0.0, 0.0);
/// Elementwise f32: a few ulp.
const EW: (f64, f64) = (1e-6, 4e-6);
/// Sums, products and transcendental chains.
const SUM: (f64, f64) = (1e-5, 1e-5);
/// Matrix products and convolutions (f32 accumulation in another order).
const MM: (f64, f64) = (1e-4, 1e-4);
/// Half precision: a few ulp of f16 (2^-10 relative) and bf16 (2^-7).
const F16: (f64, f64) = (2e-3, 4e-3);
const BF16: (f64, f64) = (1.6e-2, 3.2e-2);

/// x loaded as f32 and cast to `dtype`.
fn fh<B: Backend>(d: &TensorData, dev: &B::Device, dtype: FloatDType) -> FloatTensor<B> {
    B::float_cast(f::<B>(d, dev), dtype)
}

/// A half-precision result, cast back to f32 to compare.
fn fho<B: Backend>(t: FloatTensor<B>) -> TensorData {
    fo::<B>(B::float_cast(t, FloatDType::F32))
}

fn s(start: isize, end: Option<isize>, step: isize) -> Slice {
    Slice::new(start, end, step)
}

fn cases() -> Vec<Case> {
    let x = In::F(-2.0, 2.0);
    let pos = In::F(0.1, 3.0);
    let unit = In::F(-0.9, 0.9);
    let int = In::I(-20, 20);
    let nz = In::I(1, 9);
    let mut v = Vec::new();

    macro_rules! unary {
        ($($op:ident $dom:ident $tol:ident;)*) => {$(
            for shape in [&[][..], &[0][..], &[7][..], &[3, 5][..], &[2, 3, 4][..]] {
                v.push(case!(stringify!($op), $tol, [$dom => shape], |B, d, x| vec![fo::<B>(B::$op(f::<B>(&x[0], d)))]));
            }
        )*};
    }
    unary! {
        float_exp x SUM; float_log pos EW; float_log1p pos EW; float_sqrt pos EW; float_abs x EXACT;
        float_neg x EXACT; float_sign x EXACT; float_recip pos EW; float_cos x EW; float_sin x EW;
        float_tan unit EW; float_cosh x EW; float_sinh x EW; float_tanh x EW; float_acos unit EW;
        float_asin unit EW; float_atan x EW; float_round x EXACT; float_floor x EXACT;
        float_ceil x EXACT; float_trunc x EXACT; float_erf x EW;
    }
    macro_rules! binary {
        ($($op:ident $a:ident $bb:ident $tol:ident;)*) => {$(
            for (sa, sb) in [(&[4][..], &[4][..]), (&[3, 4][..], &[1, 4][..]), (&[2, 1, 3][..], &[4, 1][..]), (&[0, 3][..], &[3][..])] {
                v.push(case!(stringify!($op), $tol, [$a => sa, $bb => sb], |B, d, x| vec![fo::<B>(B::$op(f::<B>(&x[0], d), f::<B>(&x[1], d)))]));
            }
        )*};
    }
    binary! {
        float_add x x EXACT; float_sub x x EXACT; float_mul x x EXACT; float_div x pos EW;
        float_remainder x pos EW; float_powf pos x SUM; float_atan2 x x EW;
    }
    macro_rules! scalar {
        ($($op:ident $a:ident $v:expr, $tol:ident;)*) => {$(
            v.push(case!(stringify!($op), $tol, [$a => [3, 4]], |B, d, x| vec![fo::<B>(B::$op(f::<B>(&x[0], d), Scalar::Float($v)))]));
        )*};
    }
    scalar! {
        float_add_scalar x 1.5, EXACT; float_sub_scalar x 0.25, EXACT; float_mul_scalar x -3.0, EXACT;
        float_div_scalar x 7.0, EW; float_remainder_scalar x 0.7, EW; float_powf_scalar pos 2.5, SUM;
    }
    macro_rules! compare {
        ($($op:ident $elem:ident;)*) => {$(
            v.push(case!(stringify!($op), EXACT, [int => [3, 4], int => [1, 4]], |B, d, x| {
                let a = B::int_into_float(i::<B>(&x[0], d), FloatDType::F32);
                let c = B::int_into_float(i::<B>(&x[1], d), FloatDType::F32);
                vec![bo::<B>(B::$op(a, c, BoolStore::Native))]
            }));
            v.push(case!(stringify!($elem), EXACT, [int => [3, 4]], |B, d, x| {
                let a = B::int_into_float(i::<B>(&x[0], d), FloatDType::F32);
                vec![bo::<B>(B::$elem(a, Scalar::Float(3.0), BoolStore::Native))]
            }));
        )*};
    }
    compare! {
        float_equal float_equal_elem; float_greater float_greater_elem;
        float_greater_equal float_greater_equal_elem; float_lower float_lower_elem;
        float_lower_equal float_lower_equal_elem;
    }
    macro_rules! reduce_dim {
        ($($op:ident $tol:ident;)*) => {$(
            for shape in [&[3, 5][..], &[2, 3, 4][..], &[4, 0][..]] {
                v.push(case!(stringify!($op), $tol, [x => shape], |B, d, x| {
                    let last = x[0].shape().len() - 1;
                    vec![
                        fo::<B>(B::$op(f::<B>(&x[0], d), 0)),
                        fo::<B>(B::$op(f::<B>(&x[0], d), last)),
                    ]
                }));
            }
        )*};
    }
    reduce_dim! {
        float_sum_dim SUM; float_mean_dim SUM; float_prod_dim SUM; float_max_dim EXACT;
        float_min_dim EXACT; float_cumsum SUM; float_cumprod SUM;
    }
    for op in ["sum", "mean", "prod", "max", "min"] {
        let c = match op {
            "sum" => {
                case!("float_sum", SUM, [x => [3, 5]], |B, d, x| vec![fo::<B>(B::float_sum(f::<B>(&x[0], d)))])
            }
            "mean" => {
                case!("float_mean", SUM, [x => [3, 5]], |B, d, x| vec![fo::<B>(B::float_mean(f::<B>(&x[0], d)))])
            }
            "prod" => {
                case!("float_prod", SUM, [unit => [3, 5]], |B, d, x| vec![fo::<B>(B::float_prod(f::<B>(&x[0], d)))])
            }
            "max" => {
                case!("float_max", EXACT, [x => [3, 5]], |B, d, x| vec![fo::<B>(B::float_max(f::<B>(&x[0], d)))])
            }
            _ => {
                case!("float_min", EXACT, [x => [3, 5]], |B, d, x| vec![fo::<B>(B::float_min(f::<B>(&x[0], d)))])
            }
        };
        v.push(c);
    }
    v.push(case!("float_argmax", EXACT, [x => [4, 6]], |B, d, x| vec![io::<B>(B::float_argmax(f::<B>(&x[0], d), 1, IntDType::I64))]));
    v.push(case!("float_argmin", EXACT, [x => [4, 6]], |B, d, x| vec![io::<B>(B::float_argmin(f::<B>(&x[0], d), 0, IntDType::I64))]));
    // Matrix products, with a broadcast batch and a transposed (strided) operand.
    v.push(case!("float_matmul", MM, [x => [5, 7], x => [7, 3]], |B, d, x| vec![fo::<B>(B::float_matmul(f::<B>(&x[0], d), f::<B>(&x[1], d)))]));
    v.push(case!("float_matmul", MM, [x => [2, 3, 5, 7], x => [3, 7, 4]], |B, d, x| vec![fo::<B>(B::float_matmul(f::<B>(&x[0], d), f::<B>(&x[1], d)))]));
    v.push(case!("float_matmul", MM, [x => [5, 7], x => [3, 7]], |B, d, x| vec![fo::<B>(B::float_matmul(f::<B>(&x[0], d), B::float_swap_dims(f::<B>(&x[1], d), 0, 1)))]));
    v.push(case!("float_cross", EW, [x => [4, 3], x => [4, 3]], |B, d, x| vec![fo::<B>(B::float_cross(f::<B>(&x[0], d), f::<B>(&x[1], d), 1))]));
    // Layout: views, copies, slices (steps, negative steps), unfold, expand, cat.
    v.push(case!("float_permute", EXACT, [x => [2, 3, 4]], |B, d, x| vec![fo::<B>(B::float_permute(f::<B>(&x[0], d), &[2, 0, 1]))]));
    v.push(case!("float_swap_dims", EXACT, [x => [2, 3, 4]], |B, d, x| vec![fo::<B>(B::float_swap_dims(f::<B>(&x[0], d), 0, 2))]));
    v.push(case!("float_flip", EXACT, [x => [2, 3, 4]], |B, d, x| vec![fo::<B>(B::float_flip(f::<B>(&x[0], d), &[0, 2]))]));
    v.push(case!("float_reshape", EXACT, [x => [2, 3, 4]], |B, d, x| vec![fo::<B>(B::float_reshape(B::float_swap_dims(f::<B>(&x[0], d), 0, 1), Shape::from(vec![6, 4])))]));
    v.push(case!("float_slice", EXACT, [x => [6, 7]], |B, d, x| vec![fo::<B>(B::float_slice(f::<B>(&x[0], d), &[s(1, Some(5), 2), s(-5, None, 1)]))]));
    v.push(case!("float_slice", EXACT, [x => [6, 7]], |B, d, x| vec![fo::<B>(B::float_slice(f::<B>(&x[0], d), &[s(0, None, -2), s(1, Some(6), -3)]))]));
    v.push(case!("float_slice_assign", EXACT, [x => [6, 7], x => [3, 2]], |B, d, x| vec![fo::<B>(B::float_slice_assign(f::<B>(&x[0], d), &[s(0, Some(6), 2), s(2, Some(4), 1)], f::<B>(&x[1], d)))]));
    v.push(case!("float_slice_assign", EXACT, [x => [6, 7], x => [2, 7]], |B, d, x| vec![fo::<B>(B::float_slice_assign(f::<B>(&x[0], d), &[s(1, Some(5), -2)], f::<B>(&x[1], d)))]));
    v.push(case!("float_expand", EXACT, [x => [3, 1]], |B, d, x| vec![fo::<B>(B::float_expand(f::<B>(&x[0], d), Shape::from(vec![2, 3, 4])))]));
    v.push(case!("float_unfold", EXACT, [x => [2, 9]], |B, d, x| vec![fo::<B>(B::float_unfold(f::<B>(&x[0], d), 1, 3, 2))]));
    v.push(case!("float_cat", EXACT, [x => [2, 3], x => [4, 3], x => [0, 3]], |B, d, x| vec![fo::<B>(B::float_cat(vec![f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d)], 0))]));
    // Indexing.
    v.push(case!("float_gather", EXACT, [x => [4, 5], In::I(0, 5) => [4, 3]], |B, d, x| vec![fo::<B>(B::float_gather(1, f::<B>(&x[0], d), i::<B>(&x[1], d)))]));
    v.push(case!("float_scatter", EW, [x => [4, 5], In::I(0, 5) => [4, 3], x => [4, 3]], |B, d, x| vec![fo::<B>(B::float_scatter(1, f::<B>(&x[0], d), i::<B>(&x[1], d), f::<B>(&x[2], d), IndexingUpdateOp::Add))]));
    v.push(case!("float_select", EXACT, [x => [4, 5], In::I(0, 4) => [6]], |B, d, x| vec![fo::<B>(B::float_select(f::<B>(&x[0], d), 0, i::<B>(&x[1], d)))]));
    v.push(case!("float_select_assign", EW, [x => [4, 5], In::I(0, 5) => [3], x => [4, 3]], |B, d, x| vec![fo::<B>(B::float_select_assign(f::<B>(&x[0], d), 1, i::<B>(&x[1], d), f::<B>(&x[2], d), IndexingUpdateOp::Add))]));
    v.push(case!("float_mask_where", EXACT, [x => [3, 4], In::B => [3, 4], x => [3, 4]], |B, d, x| vec![fo::<B>(B::float_mask_where(f::<B>(&x[0], d), b::<B>(&x[1], d), f::<B>(&x[2], d)))]));
    v.push(case!("float_mask_fill", EXACT, [x => [3, 4], In::B => [1, 4]], |B, d, x| vec![fo::<B>(B::float_mask_fill(f::<B>(&x[0], d), b::<B>(&x[1], d), Scalar::Float(-7.5)))]));
    v.push(case!("float_clamp", EXACT, [x => [3, 4]], |B, d, x| vec![fo::<B>(B::float_clamp(f::<B>(&x[0], d), Scalar::Float(-0.5), Scalar::Float(1.0)))]));
    v.push(case!("float_into_int", EXACT, [In::F(-50.0, 50.0) => [3, 4]], |B, d, x| vec![io::<B>(B::float_into_int(f::<B>(&x[0], d), IntDType::I64))]));
    v.push(case!("float_cast", EW, [x => [3, 4]], |B, d, x| vec![fo::<B>(B::float_cast(B::float_cast(f::<B>(&x[0], d), FloatDType::F16), FloatDType::F32))]));
    v.push(case!(
        "float_zeros+float_ones+float_full",
        EXACT,
        [],
        |B, d, x| vec![
            fo::<B>(B::float_zeros(Shape::from(vec![2, 3]), d, FloatDType::F32)),
            fo::<B>(B::float_ones(Shape::from(vec![3]), d, FloatDType::F32)),
            fo::<B>(B::float_full(
                Shape::from(vec![2, 2]),
                Scalar::Float(2.5),
                d,
                FloatDType::F32
            )),
        ]
    ));

    // Int ops.
    macro_rules! int_binary {
        ($($op:ident $a:ident $bb:ident;)*) => {$(
            for (sa, sb) in [(&[4][..], &[4][..]), (&[3, 4][..], &[1, 4][..])] {
                v.push(case!(stringify!($op), EXACT, [$a => sa, $bb => sb], |B, d, x| vec![io::<B>(B::$op(i::<B>(&x[0], d), i::<B>(&x[1], d)))]));
            }
        )*};
    }
    int_binary! {
        int_add int int; int_sub int int; int_mul int int; int_div int nz; int_remainder int nz;
        bitwise_and int int; bitwise_or int int; bitwise_xor int int;
    }
    macro_rules! int_scalar {
        ($($op:ident $v:expr;)*) => {$(
            v.push(case!(stringify!($op), EXACT, [int => [3, 4]], |B, d, x| vec![io::<B>(B::$op(i::<B>(&x[0], d), Scalar::Int($v)))]));
        )*};
    }
    int_scalar! {
        int_add_scalar 5; int_sub_scalar 3; int_mul_scalar -2; int_div_scalar 3; int_remainder_scalar 4;
        bitwise_and_scalar 6; bitwise_or_scalar 9; bitwise_xor_scalar 5;
        bitwise_left_shift_scalar 2; bitwise_right_shift_scalar 1;
    }
    v.push(case!("int_matmul", EXACT, [int => [3, 4], int => [4, 5]], |B, d, x| vec![io::<B>(B::int_matmul(i::<B>(&x[0], d), i::<B>(&x[1], d)))]));
    v.push(case!("int_sum", EXACT, [int => [3, 4]], |B, d, x| vec![io::<B>(B::int_sum(i::<B>(&x[0], d)))]));
    v.push(case!("int_sum_dim", EXACT, [int => [3, 4]], |B, d, x| vec![io::<B>(B::int_sum_dim(i::<B>(&x[0], d), 1))]));
    v.push(case!("int_prod_dim", EXACT, [In::I(-3, 4) => [3, 4]], |B, d, x| vec![io::<B>(B::int_prod_dim(i::<B>(&x[0], d), 0))]));
    v.push(case!("int_mean_dim", EXACT, [int => [3, 4]], |B, d, x| vec![io::<B>(B::int_mean_dim(i::<B>(&x[0], d), 1))]));
    v.push(case!("int_cumsum", EXACT, [int => [3, 4]], |B, d, x| vec![io::<B>(B::int_cumsum(i::<B>(&x[0], d), 1))]));
    v.push(case!("int_argmax", EXACT, [int => [3, 4]], |B, d, x| vec![io::<B>(B::int_argmax(i::<B>(&x[0], d), 1))]));
    v.push(case!("int_argmin", EXACT, [int => [3, 4]], |B, d, x| vec![io::<B>(B::int_argmin(i::<B>(&x[0], d), 0))]));
    v.push(case!("int_abs", EXACT, [int => [3, 4]], |B, d, x| vec![io::<B>(B::int_abs(i::<B>(&x[0], d)))]));
    v.push(case!("int_max_dim", EXACT, [int => [3, 4]], |B, d, x| vec![io::<B>(B::int_max_dim(i::<B>(&x[0], d), 1))]));
    v.push(case!("bitwise_not", EXACT, [int => [3, 4]], |B, d, x| vec![io::<B>(B::bitwise_not(i::<B>(&x[0], d)))]));
    v.push(case!("int_equal", EXACT, [In::I(0, 3) => [3, 4], In::I(0, 3) => [3, 4]], |B, d, x| vec![bo::<B>(B::int_equal(i::<B>(&x[0], d), i::<B>(&x[1], d), BoolStore::Native))]));
    v.push(case!("int_lower_elem", EXACT, [int => [3, 4]], |B, d, x| vec![bo::<B>(B::int_lower_elem(i::<B>(&x[0], d), Scalar::Int(2), BoolStore::Native))]));
    v.push(case!("int_into_float", EXACT, [int => [3, 4]], |B, d, x| vec![fo::<B>(B::int_into_float(i::<B>(&x[0], d), FloatDType::F32))]));
    v.push(case!("int_cast", EXACT, [In::I(-100, 100) => [3, 4]], |B, d, x| vec![io::<B>(B::int_cast(i::<B>(&x[0], d), IntDType::I32))]));
    v.push(
        case!("int_slice+int_permute+int_reshape", EXACT, [int => [4, 6]], |B, d, x| {
            let t = B::int_slice(i::<B>(&x[0], d), &[s(1, None, 1), s(0, None, 2)]);
            let t = B::int_permute(t, &[1, 0]);
            vec![io::<B>(B::int_reshape(t, Shape::from(vec![9])))]
        }),
    );
    v.push(case!("int_gather+int_scatter", EXACT, [int => [4, 5], In::I(0, 5) => [4, 2], int => [4, 2]], |B, d, x| vec![
        io::<B>(B::int_gather(1, i::<B>(&x[0], d), i::<B>(&x[1], d))),
        io::<B>(B::int_scatter(1, i::<B>(&x[0], d), i::<B>(&x[1], d), i::<B>(&x[2], d), IndexingUpdateOp::Add)),
    ]));
    v.push(case!("int_mask_fill", EXACT, [int => [3, 4], In::B => [3, 4]], |B, d, x| vec![io::<B>(B::int_mask_fill(i::<B>(&x[0], d), b::<B>(&x[1], d), Scalar::Int(-99)))]));

    // Bool ops.
    v.push(
        case!("bool_and+bool_or+bool_not+bool_equal", EXACT, [In::B => [3, 4], In::B => [1, 4]], |B, d, x| vec![
            bo::<B>(B::bool_and(b::<B>(&x[0], d), b::<B>(&x[1], d))),
            bo::<B>(B::bool_or(b::<B>(&x[0], d), b::<B>(&x[1], d))),
            bo::<B>(B::bool_not(b::<B>(&x[0], d))),
            bo::<B>(B::bool_equal(b::<B>(&x[0], d), b::<B>(&x[1], d))),
        ]),
    );
    v.push(
        case!("bool_into_int+bool_into_float", EXACT, [In::B => [3, 4]], |B, d, x| vec![
            io::<B>(B::bool_into_int(b::<B>(&x[0], d), IntDType::I64)),
            fo::<B>(B::bool_into_float(b::<B>(&x[0], d), FloatDType::F32)),
        ]),
    );
    v.push(case!("bool_scatter_or", EXACT, [In::B => [4, 5], In::I(0, 5) => [4, 3], In::B => [4, 3]], |B, d, x| vec![bo::<B>(B::bool_scatter_or(1, b::<B>(&x[0], d), i::<B>(&x[1], d), b::<B>(&x[2], d)))]));
    v.push(case!("bool_select_or", EXACT, [In::B => [4, 5], In::I(0, 4) => [3], In::B => [3, 5]], |B, d, x| vec![bo::<B>(B::bool_select_or(b::<B>(&x[0], d), 0, i::<B>(&x[1], d), b::<B>(&x[2], d)))]));
    v.push(case!("bool_flip+bool_swap_dims+bool_unfold+bool_expand+bool_slice", EXACT, [In::B => [2, 3, 4]], |B, d, x| vec![
        bo::<B>(B::bool_flip(b::<B>(&x[0], d), &[1])),
        bo::<B>(B::bool_swap_dims(b::<B>(&x[0], d), 0, 2)),
        bo::<B>(B::bool_unfold(b::<B>(&x[0], d), 2, 2, 1)),
        bo::<B>(B::bool_expand(B::bool_slice(b::<B>(&x[0], d), &[s(0, Some(1), 1)]), Shape::from(vec![3, 3, 4]))),
    ]));

    // Module ops.
    v.push(case!("conv2d", MM, [x => [2, 4, 9, 8], x => [6, 2, 3, 3], x => [6]], |B, d, x| vec![fo::<B>(B::conv2d(f::<B>(&x[0], d), f::<B>(&x[1], d), Some(f::<B>(&x[2], d)), ConvOptions::new([2, 1], [1, 1], [1, 2], 2)))]));
    v.push(case!("conv1d", MM, [x => [2, 3, 11], x => [4, 3, 3]], |B, d, x| vec![fo::<B>(B::conv1d(f::<B>(&x[0], d), f::<B>(&x[1], d), None, ConvOptions::new([1], [1], [1], 1)))]));
    v.push(case!("conv_transpose2d", MM, [x => [2, 4, 5, 5], x => [4, 3, 3, 3]], |B, d, x| vec![fo::<B>(B::conv_transpose2d(f::<B>(&x[0], d), f::<B>(&x[1], d), None, ConvTransposeOptions::new([2, 2], [1, 1], [1, 0], [1, 1], 1)))]));
    v.push(case!("conv2d_x_backward+conv2d_weight_backward", MM, [x => [2, 3, 7, 7], x => [4, 3, 3, 3], x => [2, 4, 7, 7]], |B, d, x| {
        let o = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        vec![
            fo::<B>(B::conv2d_x_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), o.clone())),
            fo::<B>(B::conv2d_weight_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), o)),
        ]
    }));
    v.push(
        case!("avg_pool2d", SUM, [x => [2, 3, 7, 6]], |B, d, x| vec![
            fo::<B>(B::avg_pool2d(f::<B>(&x[0], d), [3, 3], [2, 2], [1, 1], true, false)),
            fo::<B>(B::avg_pool2d(f::<B>(&x[0], d), [2, 3], [2, 1], [1, 0], false, true)),
        ]),
    );
    v.push(case!("avg_pool2d_backward", SUM, [x => [2, 3, 7, 6], x => [2, 3, 4, 3]], |B, d, x| vec![fo::<B>(B::avg_pool2d_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), [3, 3], [2, 2], [1, 1], true, false))]));
    v.push(
        case!("adaptive_avg_pool2d+adaptive_avg_pool2d_backward", SUM, [x => [2, 3, 7, 6], x => [2, 3, 3, 4]], |B, d, x| vec![
            fo::<B>(B::adaptive_avg_pool2d(f::<B>(&x[0], d), [3, 4])),
            fo::<B>(B::adaptive_avg_pool2d_backward(f::<B>(&x[0], d), f::<B>(&x[1], d))),
        ]),
    );
    v.push(case!("max_pool2d_with_indices+max_pool2d_with_indices_backward", EXACT, [x => [2, 3, 8, 7], x => [2, 3, 4, 4]], |B, d, x| {
        let p = B::max_pool2d_with_indices(f::<B>(&x[0], d), [3, 3], [2, 2], [1, 1], [1, 1], false, IntDType::I64);
        let g = B::max_pool2d_with_indices_backward(f::<B>(&x[0], d), [3, 3], [2, 2], [1, 1], [1, 1], false, f::<B>(&x[1], d), p.indices.clone());
        vec![fo::<B>(p.output), io::<B>(p.indices), fo::<B>(g.x_grad)]
    }));
    v.push(case!("interpolate+interpolate_backward", SUM, [x => [2, 3, 5, 4], x => [2, 3, 7, 9]], |B, d, x| {
        let n = InterpolateOptions { mode: InterpolateMode::Nearest, align_corners: false, output_size: None, scale_factor: None };
        let l = InterpolateOptions { mode: InterpolateMode::Bilinear, align_corners: true, output_size: None, scale_factor: None };
        let l2 = InterpolateOptions { mode: InterpolateMode::Bilinear, align_corners: false, output_size: None, scale_factor: None };
        vec![
            fo::<B>(B::interpolate(f::<B>(&x[0], d), [7, 9], n.clone())),
            fo::<B>(B::interpolate(f::<B>(&x[0], d), [7, 9], l.clone())),
            fo::<B>(B::interpolate(f::<B>(&x[0], d), [7, 9], l2.clone())),
            fo::<B>(B::interpolate_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), [7, 9], n)),
            fo::<B>(B::interpolate_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), [7, 9], l)),
        ]
    }));
    v.push(case!("attention", SUM, [x => [2, 2, 5, 8], x => [2, 2, 6, 8], x => [2, 2, 6, 4], In::B => [1, 1, 5, 6]], |B, d, x| {
        let o = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let c = AttentionModuleOptions { scale: Some(0.3), softcap: None, is_causal: true };
        vec![
            fo::<B>(B::attention(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), None, None, o)),
            fo::<B>(B::attention(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), Some(b::<B>(&x[3], d)), None, o)),
            fo::<B>(B::attention(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), None, None, c)),
        ]
    }));
    v.push(case!("embedding", EXACT, [x => [10, 4], In::I(0, 10) => [3, 5]], |B, d, x| vec![fo::<B>(B::embedding(f::<B>(&x[0], d), i::<B>(&x[1], d)))]));
    v.extend(more_cases());
    v
}

/// x loaded, then viewed with its first two dims swapped (a strided input).
fn ft<B: Backend>(d: &TensorData, dev: &B::Device) -> FloatTensor<B> {
    B::float_swap_dims(f::<B>(d, dev), 0, 1)
}

fn more_cases() -> Vec<Case> {
    let x = In::F(-2.0, 2.0);
    let pos = In::F(0.1, 3.0);
    let int = In::I(-20, 20);
    let small = In::I(-4, 5);
    let bl = In::B;
    let mut v = Vec::new();
    // Float ops through Burn's default compositions, strided inputs, zero-size tensors.
    v.push(
        case!("float_add+float_mul+float_exp", SUM, [x => [5, 3], x => [3, 5]], |B, d, x| vec![
            fo::<B>(B::float_add(ft::<B>(&x[0], d), f::<B>(&x[1], d))),
            fo::<B>(B::float_mul(ft::<B>(&x[0], d), f::<B>(&x[1], d))),
            fo::<B>(B::float_exp(ft::<B>(&x[0], d))),
        ]),
    );
    v.push(
        case!("float_sum_dim+float_argmax", SUM, [x => [5, 3]], |B, d, x| vec![
            fo::<B>(B::float_sum_dim(ft::<B>(&x[0], d), 1)),
            io::<B>(B::float_argmax(ft::<B>(&x[0], d), 1, IntDType::I64)),
        ]),
    );
    v.push(
        case!("float_add+float_sum", SUM, [x => [0, 4], x => [0, 4]], |B, d, x| vec![
            fo::<B>(B::float_add(f::<B>(&x[0], d), f::<B>(&x[1], d))),
            fo::<B>(B::float_sum(f::<B>(&x[0], d))),
            fo::<B>(B::float_sum_dim(f::<B>(&x[0], d), 0)),
        ]),
    );
    v.push(case!("float_repeat_dim", EXACT, [x => [2, 3]], |B, d, x| vec![fo::<B>(B::float_repeat_dim(f::<B>(&x[0], d), 0, 3))]));
    v.push(
        case!("float_clamp_min+float_clamp_max", EXACT, [x => [3, 4]], |B, d, x| vec![
            fo::<B>(B::float_clamp_min(f::<B>(&x[0], d), Scalar::Float(0.0))),
            fo::<B>(B::float_clamp_max(f::<B>(&x[0], d), Scalar::Float(0.5))),
        ]),
    );
    v.push(case!("float_transpose", EXACT, [x => [2, 3, 4]], |B, d, x| vec![fo::<B>(B::float_transpose(f::<B>(&x[0], d)))]));
    v.push(case!("float_not_equal+float_not_equal_elem", EXACT, [small => [3, 4], small => [3, 4]], |B, d, x| {
        let a = B::int_into_float(i::<B>(&x[0], d), FloatDType::F32);
        let c = B::int_into_float(i::<B>(&x[1], d), FloatDType::F32);
        vec![
            bo::<B>(B::float_not_equal(a.clone(), c, BoolStore::Native)),
            bo::<B>(B::float_not_equal_elem(a, Scalar::Float(1.0), BoolStore::Native)),
        ]
    }));
    v.push(case!("float_sum_dims", SUM, [x => [2, 3, 4]], |B, d, x| vec![fo::<B>(B::float_sum_dims(f::<B>(&x[0], d), &[0, 2]))]));
    v.push(case!("float_powi+float_powi_scalar+float_powi_scalar_impl+float_powf_scalar+float_powf_scalar_impl", SUM, [x => [3, 4], small => [3, 4]], |B, d, x| vec![
        fo::<B>(B::float_powi(f::<B>(&x[0], d), i::<B>(&x[1], d))),
        fo::<B>(B::float_powi_scalar(f::<B>(&x[0], d), Scalar::Int(3))),
        fo::<B>(B::float_powf_scalar(f::<B>(&x[0], d), Scalar::Float(2.0))),
    ]));
    v.push(case!("float_hypot", EW, [x => [3, 4], x => [3, 4]], |B, d, x| vec![fo::<B>(B::float_hypot(f::<B>(&x[0], d), f::<B>(&x[1], d)))]));
    v.push(
        case!("float_topk+float_argtopk+float_topk_with_indices", EXACT, [x => [3, 7]], |B, d, x| {
            let (vals, idx) = B::float_topk_with_indices(f::<B>(&x[0], d), 1, 3, IntDType::I64);
            vec![
                fo::<B>(B::float_topk(f::<B>(&x[0], d), 1, 3)),
                io::<B>(B::float_argtopk(f::<B>(&x[0], d), 1, 3, IntDType::I64)),
                fo::<B>(vals),
                io::<B>(idx),
            ]
        }),
    );
    v.push(case!("float_max_dim_with_indices+float_min_dim_with_indices", EXACT, [x => [4, 6]], |B, d, x| {
        let (a, ai) = B::float_max_dim_with_indices(f::<B>(&x[0], d), 1, IntDType::I64);
        let (b, bi) = B::float_min_dim_with_indices(f::<B>(&x[0], d), 0, IntDType::I64);
        vec![fo::<B>(a), io::<B>(ai), fo::<B>(b), io::<B>(bi)]
    }));
    v.push(
        case!("float_max_abs+float_max_abs_dim", EXACT, [x => [4, 6]], |B, d, x| vec![
            fo::<B>(B::float_max_abs(f::<B>(&x[0], d))),
            fo::<B>(B::float_max_abs_dim(f::<B>(&x[0], d), 1)),
        ]),
    );
    v.push(case!("float_any+float_all+float_any_dim+float_all_dim", EXACT, [In::I(0, 3) => [3, 4]], |B, d, x| {
        let t = B::int_into_float(i::<B>(&x[0], d), FloatDType::F32);
        vec![
            bo::<B>(B::float_any(t.clone(), BoolStore::Native)),
            bo::<B>(B::float_all(t.clone(), BoolStore::Native)),
            bo::<B>(B::float_any_dim(t.clone(), 1, BoolStore::Native)),
            bo::<B>(B::float_all_dim(t, 0, BoolStore::Native)),
        ]
    }));
    v.push(
        case!("float_sort+float_sort_with_indices+float_argsort", EXACT, [x => [3, 9]], |B, d, x| {
            let (sv, si) = B::float_sort_with_indices(f::<B>(&x[0], d), 1, true, IntDType::I64);
            vec![
                fo::<B>(B::float_sort(f::<B>(&x[0], d), 1, false)),
                fo::<B>(sv),
                io::<B>(si),
                io::<B>(B::float_argsort(f::<B>(&x[0], d), 0, false, IntDType::I64)),
            ]
        }),
    );
    v.push(case!("float_is_nan+float_is_inf", EXACT, [pos => [3, 4]], |B, d, x| {
        let t = B::float_log(B::float_sub_scalar(f::<B>(&x[0], d), Scalar::Float(1.0)));
        vec![bo::<B>(B::float_is_nan(t.clone(), BoolStore::Native)), bo::<B>(B::float_is_inf(t, BoolStore::Native))]
    }));
    v.push(case!("float_pad", EXACT, [x => [2, 3, 4]], |B, d, x| vec![fo::<B>(B::float_pad(f::<B>(&x[0], d), &[(1, 2), (0, 1)], burn_backend::ops::PadMode::Constant(0.5)))]));
    v.push(case!("float_mask_select", EXACT, [x => [3, 4], bl => [3, 4]], |B, d, x| vec![fo::<B>(burn_backend::read_sync(B::float_mask_select(f::<B>(&x[0], d), b::<B>(&x[1], d))))]));
    v.push(case!("float_gather_nd", EXACT, [x => [4, 5], In::I(0, 4) => [3, 1]], |B, d, x| vec![fo::<B>(B::float_gather_nd(f::<B>(&x[0], d), i::<B>(&x[1], d)))]));
    v.push(case!("float_scatter_nd", EW, [x => [4, 5], In::I(0, 4) => [2, 1], x => [2, 5]], |B, d, x| vec![fo::<B>(B::float_scatter_nd(f::<B>(&x[0], d), i::<B>(&x[1], d), f::<B>(&x[2], d), IndexingUpdateOp::Add))]));
    v.push(case!("float_select_assign (assign)", EXACT, [x => [4, 5], In::I(0, 5) => [2], x => [4, 2]], |B, d, x| vec![fo::<B>(B::float_select_assign(f::<B>(&x[0], d), 1, i::<B>(&x[1], d), f::<B>(&x[2], d), IndexingUpdateOp::Assign))]));
    v.push(case!("float_cummin", EXACT, [x => [3, 5]], |B, d, x| vec![fo::<B>(B::float_cummin(f::<B>(&x[0], d), 1))]));
    v.push(case!("float_cummax", EXACT, [x => [3, 5]], |B, d, x| vec![fo::<B>(B::float_cummax(f::<B>(&x[0], d), 1))]));
    v.push(
        case!("float_cummax+float_cummin (dim 0, transposed)", EXACT, [x => [6, 4]], |B, d, x| {
            let t = B::float_swap_dims(f::<B>(&x[0], d), 0, 1);
            vec![fo::<B>(B::float_cummax(t.clone(), 0)), fo::<B>(B::float_cummin(t, 0))]
        }),
    );
    v.push(case!("float_acosh", EW, [In::F(1.0, 4.0) => [3, 5]], |B, d, x| vec![fo::<B>(B::float_acosh(f::<B>(&x[0], d)))]));
    v.push(case!("float_asinh", EW, [x => [3, 5]], |B, d, x| vec![fo::<B>(B::float_asinh(f::<B>(&x[0], d)))]));
    v.push(case!("float_atanh", EW, [In::F(-0.9, 0.9) => [3, 5]], |B, d, x| vec![fo::<B>(B::float_atanh(f::<B>(&x[0], d)))]));
    v.push(case!("float_cast (f64)", EXACT, [x => [3, 4]], |B, d, x| vec![fo::<B>(B::float_cast(f::<B>(&x[0], d), FloatDType::F64))]));

    // Int ops.
    v.push(case!(
        "int_zeros+int_ones+int_full+int_arange+int_arange_step",
        EXACT,
        [],
        |B, d, x| vec![
            io::<B>(B::int_zeros(Shape::from(vec![2, 3]), d, IntDType::I64)),
            io::<B>(B::int_ones(Shape::from(vec![4]), d, IntDType::I64)),
            io::<B>(B::int_full(
                Shape::from(vec![2, 2]),
                Scalar::Int(-7),
                d,
                IntDType::I64
            )),
            io::<B>(B::int_arange(-3..5, d, IntDType::I64)),
            io::<B>(B::int_arange_step(0..11, 3, d, IntDType::I64)),
        ]
    ));
    v.push(case!("int_not_equal+int_not_equal_elem+int_greater+int_greater_equal+int_lower_equal+int_lower+int_greater_elem+int_greater_equal_elem+int_lower_equal_elem+int_equal_elem", EXACT, [small => [3, 4], small => [1, 4]], |B, d, x| vec![
        bo::<B>(B::int_not_equal(i::<B>(&x[0], d), i::<B>(&x[1], d), BoolStore::Native)),
        bo::<B>(B::int_not_equal_elem(i::<B>(&x[0], d), Scalar::Int(0), BoolStore::Native)),
        bo::<B>(B::int_greater(i::<B>(&x[0], d), i::<B>(&x[1], d), BoolStore::Native)),
        bo::<B>(B::int_greater_equal(i::<B>(&x[0], d), i::<B>(&x[1], d), BoolStore::Native)),
        bo::<B>(B::int_lower_equal(i::<B>(&x[0], d), i::<B>(&x[1], d), BoolStore::Native)),
        bo::<B>(B::int_lower(i::<B>(&x[0], d), i::<B>(&x[1], d), BoolStore::Native)),
        bo::<B>(B::int_greater_elem(i::<B>(&x[0], d), Scalar::Int(1), BoolStore::Native)),
        bo::<B>(B::int_greater_equal_elem(i::<B>(&x[0], d), Scalar::Int(1), BoolStore::Native)),
        bo::<B>(B::int_lower_equal_elem(i::<B>(&x[0], d), Scalar::Int(1), BoolStore::Native)),
        bo::<B>(B::int_equal_elem(i::<B>(&x[0], d), Scalar::Int(1), BoolStore::Native)),
    ]));
    v.push(case!("int_square+int_powi+int_powi_scalar+int_powi_scalar_impl+int_neg+int_sign", EXACT, [small => [3, 4], In::I(0, 4) => [3, 4]], |B, d, x| vec![
        io::<B>(B::int_square(i::<B>(&x[0], d))),
        io::<B>(B::int_powi(i::<B>(&x[0], d), i::<B>(&x[1], d))),
        io::<B>(B::int_powi_scalar(i::<B>(&x[0], d), Scalar::Int(3))),
        io::<B>(B::int_neg(i::<B>(&x[0], d))),
        io::<B>(B::int_sign(i::<B>(&x[0], d))),
    ]));
    v.push(
        case!("int_clamp+int_clamp_min+int_clamp_max", EXACT, [int => [3, 4]], |B, d, x| vec![
            io::<B>(B::int_clamp(i::<B>(&x[0], d), Scalar::Int(-5), Scalar::Int(6))),
            io::<B>(B::int_clamp_min(i::<B>(&x[0], d), Scalar::Int(0))),
            io::<B>(B::int_clamp_max(i::<B>(&x[0], d), Scalar::Int(3))),
        ]),
    );
    v.push(case!("int_mean+int_prod+int_cumprod+int_max+int_min+int_min_dim", EXACT, [small => [3, 4]], |B, d, x| vec![
        io::<B>(B::int_mean(i::<B>(&x[0], d))),
        io::<B>(B::int_prod(i::<B>(&x[0], d))),
        io::<B>(B::int_cumprod(i::<B>(&x[0], d), 1)),
        io::<B>(B::int_max(i::<B>(&x[0], d))),
        io::<B>(B::int_min(i::<B>(&x[0], d))),
        io::<B>(B::int_min_dim(i::<B>(&x[0], d), 0)),
    ]));
    v.push(case!("int_max_dim_with_indices+int_min_dim_with_indices+int_max_abs+int_max_abs_dim", EXACT, [int => [4, 5]], |B, d, x| {
        let (a, ai) = B::int_max_dim_with_indices(i::<B>(&x[0], d), 1);
        let (b, bi) = B::int_min_dim_with_indices(i::<B>(&x[0], d), 0);
        vec![io::<B>(a), io::<B>(ai), io::<B>(b), io::<B>(bi), io::<B>(B::int_max_abs(i::<B>(&x[0], d))), io::<B>(B::int_max_abs_dim(i::<B>(&x[0], d), 1))]
    }));
    v.push(case!("int_topk+int_argtopk+int_topk_with_indices", EXACT, [int => [3, 8]], |B, d, x| {
        let (a, ai) = B::int_topk_with_indices(i::<B>(&x[0], d), 1, 2);
        vec![io::<B>(B::int_topk(i::<B>(&x[0], d), 1, 3)), io::<B>(B::int_argtopk(i::<B>(&x[0], d), 1, 3)), io::<B>(a), io::<B>(ai)]
    }));
    v.push(case!("int_sort+int_sort_with_indices+int_argsort", EXACT, [small => [3, 8]], |B, d, x| {
        let (a, ai) = B::int_sort_with_indices(i::<B>(&x[0], d), 1, true);
        vec![io::<B>(B::int_sort(i::<B>(&x[0], d), 1, false)), io::<B>(a), io::<B>(ai), io::<B>(B::int_argsort(i::<B>(&x[0], d), 0, false))]
    }));
    v.push(case!("int_any+int_all+int_any_dim+int_all_dim", EXACT, [In::I(0, 3) => [3, 4]], |B, d, x| vec![
        bo::<B>(B::int_any(i::<B>(&x[0], d), BoolStore::Native)),
        bo::<B>(B::int_all(i::<B>(&x[0], d), BoolStore::Native)),
        bo::<B>(B::int_any_dim(i::<B>(&x[0], d), 1, BoolStore::Native)),
        bo::<B>(B::int_all_dim(i::<B>(&x[0], d), 0, BoolStore::Native)),
    ]));
    v.push(case!("int_transpose+int_swap_dims+int_flip+int_expand+int_unfold+int_repeat_dim+int_cat", EXACT, [int => [2, 3, 4]], |B, d, x| vec![
        io::<B>(B::int_transpose(i::<B>(&x[0], d))),
        io::<B>(B::int_swap_dims(i::<B>(&x[0], d), 0, 1)),
        io::<B>(B::int_flip(i::<B>(&x[0], d), &[2])),
        io::<B>(B::int_expand(B::int_slice(i::<B>(&x[0], d), &[s(0, Some(1), 1)]), Shape::from(vec![3, 3, 4]))),
        io::<B>(B::int_unfold(i::<B>(&x[0], d), 2, 2, 2)),
        io::<B>(B::int_repeat_dim(i::<B>(&x[0], d), 1, 2)),
        io::<B>(B::int_cat(vec![i::<B>(&x[0], d), i::<B>(&x[0], d)], 2)),
    ]));
    v.push(case!("int_slice_assign+int_select+int_select_assign+int_mask_where", EXACT, [int => [4, 5], In::I(0, 4) => [3], int => [3, 5], bl => [4, 5]], |B, d, x| vec![
        io::<B>(B::int_slice_assign(i::<B>(&x[0], d), &[s(1, Some(4), 1)], i::<B>(&x[2], d))),
        io::<B>(B::int_select(i::<B>(&x[0], d), 0, i::<B>(&x[1], d))),
        io::<B>(B::int_select_assign(i::<B>(&x[0], d), 0, i::<B>(&x[1], d), i::<B>(&x[2], d), IndexingUpdateOp::Add)),
        io::<B>(B::int_mask_where(i::<B>(&x[0], d), b::<B>(&x[3], d), B::int_neg(i::<B>(&x[0], d)))),
    ]));
    v.push(case!("bitwise_left_shift+bitwise_right_shift", EXACT, [int => [3, 4], In::I(0, 5) => [3, 4]], |B, d, x| vec![
        io::<B>(B::bitwise_left_shift(i::<B>(&x[0], d), i::<B>(&x[1], d))),
        io::<B>(B::bitwise_right_shift(i::<B>(&x[0], d), i::<B>(&x[1], d))),
    ]));
    v.push(case!("int_pad", EXACT, [int => [2, 3]], |B, d, x| vec![io::<B>(B::int_pad(i::<B>(&x[0], d), &[(1, 1), (2, 0)], burn_backend::ops::PadMode::Constant(0.0)))]));
    v.push(case!("int_mask_select", EXACT, [int => [3, 4], bl => [3, 4]], |B, d, x| vec![io::<B>(burn_backend::read_sync(B::int_mask_select(i::<B>(&x[0], d), b::<B>(&x[1], d))))]));
    v.push(case!("int_cummin", EXACT, [int => [3, 5]], |B, d, x| vec![io::<B>(B::int_cummin(i::<B>(&x[0], d), 1))]));
    v.push(case!("int_cummax", EXACT, [int => [3, 5]], |B, d, x| vec![io::<B>(B::int_cummax(i::<B>(&x[0], d), 1))]));
    v.push(case!("int_cast (i8, u8)", EXACT, [In::I(-100, 100) => [3, 4]], |B, d, x| vec![
        io::<B>(B::int_cast(B::int_cast(i::<B>(&x[0], d), IntDType::I8), IntDType::I64)),
        io::<B>(B::int_cast(B::int_cast(B::int_abs(i::<B>(&x[0], d)), IntDType::U8), IntDType::I64)),
    ]));

    // Bool ops.
    v.push(case!("bool_zeros+bool_ones", EXACT, [], |B, d, x| vec![
        bo::<B>(B::bool_zeros(Shape::from(vec![2, 3]), d, BoolStore::Native)),
        bo::<B>(B::bool_ones(Shape::from(vec![3]), d, BoolStore::Native)),
    ]));
    v.push(case!("bool_mask_where+bool_mask_fill+bool_gather+bool_select+bool_slice_assign", EXACT, [bl => [4, 5], bl => [4, 5], In::I(0, 5) => [4, 2], In::I(0, 4) => [3], bl => [2, 5]], |B, d, x| vec![
        bo::<B>(B::bool_mask_where(b::<B>(&x[0], d), b::<B>(&x[1], d), B::bool_not(b::<B>(&x[0], d)))),
        bo::<B>(B::bool_mask_fill(b::<B>(&x[0], d), b::<B>(&x[1], d), Scalar::Bool(true))),
        bo::<B>(B::bool_gather(1, b::<B>(&x[0], d), i::<B>(&x[2], d))),
        bo::<B>(B::bool_select(b::<B>(&x[0], d), 0, i::<B>(&x[3], d))),
        bo::<B>(B::bool_slice_assign(b::<B>(&x[0], d), &[s(1, Some(3), 1)], b::<B>(&x[4], d))),
    ]));
    v.push(case!("bool_not_equal+bool_not_equal_elem+bool_equal_elem+bool_xor", EXACT, [bl => [3, 4], bl => [3, 4]], |B, d, x| vec![
        bo::<B>(B::bool_not_equal(b::<B>(&x[0], d), b::<B>(&x[1], d))),
        bo::<B>(B::bool_not_equal_elem(b::<B>(&x[0], d), Scalar::Bool(true))),
        bo::<B>(B::bool_equal_elem(b::<B>(&x[0], d), Scalar::Bool(false))),
        bo::<B>(B::bool_xor(b::<B>(&x[0], d), b::<B>(&x[1], d))),
    ]));
    v.push(
        case!("bool_any+bool_all+bool_any_dim+bool_all_dim", EXACT, [bl => [3, 4]], |B, d, x| vec![
            bo::<B>(B::bool_any(b::<B>(&x[0], d))),
            bo::<B>(B::bool_all(b::<B>(&x[0], d))),
            bo::<B>(B::bool_any_dim(b::<B>(&x[0], d), 1)),
            bo::<B>(B::bool_all_dim(b::<B>(&x[0], d), 0)),
        ]),
    );
    v.push(case!("bool_transpose+bool_permute+bool_reshape+bool_repeat_dim+bool_cat", EXACT, [bl => [2, 3, 4]], |B, d, x| vec![
        bo::<B>(B::bool_transpose(b::<B>(&x[0], d))),
        bo::<B>(B::bool_permute(b::<B>(&x[0], d), &[1, 2, 0])),
        bo::<B>(B::bool_reshape(B::bool_permute(b::<B>(&x[0], d), &[1, 2, 0]), Shape::from(vec![12, 2]))),
        bo::<B>(B::bool_repeat_dim(b::<B>(&x[0], d), 0, 2)),
        bo::<B>(B::bool_cat(vec![b::<B>(&x[0], d), b::<B>(&x[0], d)], 1)),
    ]));
    v.push(case!("bool_argwhere", EXACT, [bl => [3, 4]], |B, d, x| vec![io::<B>(burn_backend::read_sync(B::bool_argwhere(b::<B>(&x[0], d), IntDType::I64)))]));
    v.push(case!("bool_mask_select", EXACT, [bl => [3, 4], bl => [3, 4]], |B, d, x| vec![bo::<B>(burn_backend::read_sync(B::bool_mask_select(b::<B>(&x[0], d), b::<B>(&x[1], d))))]));

    // Module and activation ops.
    v.push(case!("linear+linear_x_backward+linear_weight_backward+linear_bias_backward", MM, [x => [4, 6], x => [6, 3], x => [3], x => [4, 3]], |B, d, x| vec![
        fo::<B>(B::linear(f::<B>(&x[0], d), f::<B>(&x[1], d), Some(f::<B>(&x[2], d)))),
        fo::<B>(B::linear_x_backward(f::<B>(&x[1], d), f::<B>(&x[3], d))),
        fo::<B>(B::linear_weight_backward(f::<B>(&x[0], d), f::<B>(&x[3], d))),
        fo::<B>(B::linear_bias_backward(f::<B>(&x[3], d))),
    ]));
    v.push(case!("embedding_backward", SUM, [x => [10, 4], x => [3, 5, 4], In::I(0, 10) => [3, 5]], |B, d, x| vec![fo::<B>(B::embedding_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), i::<B>(&x[2], d)))]));
    v.push(case!("conv1d_x_backward+conv1d_weight_backward+conv1d_bias_backward+conv2d_bias_backward", MM, [x => [2, 3, 9], x => [4, 3, 3], x => [2, 4, 7], x => [4]], |B, d, x| {
        let o = ConvOptions::new([1], [0], [1], 1);
        vec![
            fo::<B>(B::conv1d_x_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), o.clone())),
            fo::<B>(B::conv1d_weight_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), o)),
            fo::<B>(B::conv1d_bias_backward(f::<B>(&x[0], d), f::<B>(&x[3], d), f::<B>(&x[2], d))),
        ]
    }));
    v.push(case!("conv_transpose1d+conv_transpose1d_x_backward+conv_transpose1d_weight_backward", MM, [x => [2, 4, 6], x => [4, 3, 3], x => [2, 3, 13]], |B, d, x| {
        let o = ConvTransposeOptions::new([2], [0], [0], [1], 1);
        vec![
            fo::<B>(B::conv_transpose1d(f::<B>(&x[0], d), f::<B>(&x[1], d), None, o.clone())),
            fo::<B>(B::conv_transpose1d_x_backward(f::<B>(&x[1], d), f::<B>(&x[2], d), o.clone())),
            fo::<B>(B::conv_transpose1d_weight_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), o)),
        ]
    }));
    v.push(case!("conv_transpose2d_x_backward+conv_transpose2d_weight_backward+conv_transpose2d_bias_backward", MM, [x => [2, 4, 4, 4], x => [4, 3, 3, 3], x => [2, 3, 9, 9], x => [3]], |B, d, x| {
        let o = ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1);
        vec![
            fo::<B>(B::conv_transpose2d_x_backward(f::<B>(&x[1], d), f::<B>(&x[2], d), o.clone())),
            fo::<B>(B::conv_transpose2d_weight_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), o)),
            fo::<B>(B::conv_transpose2d_bias_backward(f::<B>(&x[0], d), f::<B>(&x[3], d), f::<B>(&x[2], d))),
        ]
    }));
    v.push(
        case!("conv2d (asymmetric padding)", MM, [x => [1, 2, 6, 6], x => [3, 2, 3, 3]], |B, d, x| {
            let mut o = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
            o.padding = [(0, 1), (1, 1)];
            vec![fo::<B>(B::conv2d(f::<B>(&x[0], d), f::<B>(&x[1], d), None, o))]
        }),
    );
    v.push(case!("unfold4d", EXACT, [x => [2, 3, 6, 5]], |B, d, x| vec![fo::<B>(B::unfold4d(f::<B>(&x[0], d), [3, 2], burn_backend::ops::UnfoldOptions::new([1, 2], [1, 0], [1, 1])))]));
    v.push(case!("avg_pool1d+avg_pool1d_backward+adaptive_avg_pool1d+adaptive_avg_pool1d_backward", SUM, [x => [2, 3, 11], x => [2, 3, 6], x => [2, 3, 4]], |B, d, x| vec![
        fo::<B>(B::avg_pool1d(f::<B>(&x[0], d), 3, 2, 1, true, false)),
        fo::<B>(B::avg_pool1d_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), 3, 2, 1, true, false)),
        fo::<B>(B::adaptive_avg_pool1d(f::<B>(&x[0], d), 4)),
        fo::<B>(B::adaptive_avg_pool1d_backward(f::<B>(&x[0], d), f::<B>(&x[2], d))),
    ]));
    v.push(case!("max_pool1d+max_pool1d_with_indices+max_pool1d_with_indices_backward", EXACT, [x => [2, 3, 11], x => [2, 3, 5]], |B, d, x| {
        let p = B::max_pool1d_with_indices(f::<B>(&x[0], d), 3, 2, 0, 1, false, IntDType::I64);
        let g = B::max_pool1d_with_indices_backward(f::<B>(&x[0], d), 3, 2, 0, 1, false, f::<B>(&x[1], d), p.indices.clone());
        vec![fo::<B>(B::max_pool1d(f::<B>(&x[0], d), 3, 2, 0, 1, false)), fo::<B>(p.output), io::<B>(p.indices), fo::<B>(g.x_grad)]
    }));
    v.push(case!("max_pool2d", EXACT, [x => [1, 2, 7, 7]], |B, d, x| vec![fo::<B>(B::max_pool2d(f::<B>(&x[0], d), [2, 2], [2, 2], [0, 0], [1, 1], true))]));
    v.push(case!("layer_norm", SUM, [x => [3, 8], x => [8], x => [8]], |B, d, x| vec![fo::<B>(B::layer_norm(f::<B>(&x[0], d), f::<B>(&x[1], d), Some(f::<B>(&x[2], d)), 1e-5))]));
    v.push(case!("batch_norm", SUM, [x => [2, 3, 4, 4], x => [3], x => [3], x => [3], pos => [3]], |B, d, x| vec![fo::<B>(B::batch_norm(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), f::<B>(&x[3], d), f::<B>(&x[4], d), 1e-5))]));
    v.push(case!("relu+relu_backward+leaky_relu+prelu+sigmoid+sigmoid_backward+hard_sigmoid", EW, [x => [3, 5], x => [3, 5], x => [5]], |B, d, x| vec![
        fo::<B>(B::relu(f::<B>(&x[0], d))),
        fo::<B>(B::relu_backward(B::relu(f::<B>(&x[0], d)), f::<B>(&x[1], d))),
        fo::<B>(B::leaky_relu(f::<B>(&x[0], d), Scalar::Float(0.1))),
        fo::<B>(B::prelu(f::<B>(&x[0], d), f::<B>(&x[2], d))),
        fo::<B>(B::sigmoid(f::<B>(&x[0], d))),
        fo::<B>(B::sigmoid_backward(B::sigmoid(f::<B>(&x[0], d)), f::<B>(&x[1], d))),
        fo::<B>(B::hard_sigmoid(f::<B>(&x[0], d), Scalar::Float(0.2), Scalar::Float(0.5))),
    ]));
    v.push(case!("gelu+gelu_backward+log_sigmoid+log_sigmoid_backward", SUM, [x => [3, 5], x => [3, 5]], |B, d, x| vec![
        fo::<B>(B::gelu(f::<B>(&x[0], d))),
        fo::<B>(B::gelu_backward(f::<B>(&x[0], d), f::<B>(&x[1], d))),
        fo::<B>(B::log_sigmoid(f::<B>(&x[0], d))),
        fo::<B>(B::log_sigmoid_backward(f::<B>(&x[0], d), f::<B>(&x[1], d))),
    ]));
    v.push(
        case!("softmax+log_softmax+softmin", SUM, [x => [3, 7]], |B, d, x| vec![
            fo::<B>(B::softmax(f::<B>(&x[0], d), 1)),
            fo::<B>(B::log_softmax(f::<B>(&x[0], d), 1)),
            fo::<B>(B::softmin(f::<B>(&x[0], d), 0)),
        ]),
    );
    v.push(case!("conv3d", MM, [x => [1, 2, 4, 4, 4], x => [3, 2, 2, 2, 2]], |B, d, x| vec![fo::<B>(B::conv3d(f::<B>(&x[0], d), f::<B>(&x[1], d), None, ConvOptions::new([1, 1, 1], [0, 0, 0], [1, 1, 1], 1)))]));
    v.push(case!("adaptive_avg_pool3d", SUM, [x => [1, 2, 4, 4, 4]], |B, d, x| vec![fo::<B>(B::adaptive_avg_pool3d(f::<B>(&x[0], d), [2, 2, 2]))]));
    v.push(case!("adaptive_avg_pool3d+adaptive_avg_pool3d_backward (overlapping windows)", SUM, [x => [2, 3, 5, 7, 6], x => [2, 3, 2, 3, 4]], |B, d, x| vec![
        fo::<B>(B::adaptive_avg_pool3d(f::<B>(&x[0], d), [2, 3, 4])),
        fo::<B>(B::adaptive_avg_pool3d(f::<B>(&x[0], d), [7, 9, 1])),
        fo::<B>(B::adaptive_avg_pool3d_backward(f::<B>(&x[0], d), f::<B>(&x[1], d))),
    ]));
    v.push(case!("interpolate (bicubic)", SUM, [x => [1, 2, 4, 4]], |B, d, x| vec![fo::<B>(B::interpolate(f::<B>(&x[0], d), [6, 7], InterpolateOptions { mode: InterpolateMode::Bicubic, align_corners: false, output_size: None, scale_factor: None }))]));
    v.push(case!("interpolate+interpolate_backward (bicubic)", SUM, [x => [2, 3, 5, 4], x => [2, 3, 7, 9], x => [2, 3, 3, 2]], |B, d, x| {
        let c = InterpolateOptions { mode: InterpolateMode::Bicubic, align_corners: false, output_size: None, scale_factor: None };
        let a = InterpolateOptions { mode: InterpolateMode::Bicubic, align_corners: true, output_size: None, scale_factor: None };
        vec![
            fo::<B>(B::interpolate(f::<B>(&x[0], d), [7, 9], a.clone())),
            fo::<B>(B::interpolate(f::<B>(&x[0], d), [3, 2], c.clone())),
            fo::<B>(B::interpolate_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), [7, 9], c)),
            fo::<B>(B::interpolate_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), [7, 9], a.clone())),
            fo::<B>(B::interpolate_backward(f::<B>(&x[0], d), f::<B>(&x[2], d), [3, 2], a)),
        ]
    }));
    v.push(case!("interpolate (nearest-exact)", SUM, [x => [1, 2, 4, 4]], |B, d, x| vec![fo::<B>(B::interpolate(f::<B>(&x[0], d), [6, 7], InterpolateOptions { mode: InterpolateMode::NearestExact, align_corners: false, output_size: None, scale_factor: None }))]));
    v.push(case!("float_grid_sample_2d", SUM, [x => [1, 2, 4, 5], In::F(-1.1, 1.1) => [1, 3, 4, 2]], |B, d, x| {
        let o = burn_backend::ops::GridSampleOptions {
            mode: InterpolateMode::Bilinear,
            padding_mode: burn_backend::ops::GridSamplePaddingMode::Zeros,
            align_corners: false,
        };
        vec![fo::<B>(B::float_grid_sample_2d(f::<B>(&x[0], d), f::<B>(&x[1], d), o))]
    }));
    v.push(case!("fold4d", SUM, [x => [2, 12, 6]], |B, d, x| vec![fo::<B>(B::fold4d(f::<B>(&x[0], d), [4, 5], [2, 3], burn_backend::ops::UnfoldOptions::new([2, 1], [0, 0], [1, 1])))]));
    v.push(case!("batch_norm_train+batch_norm_train_backward", SUM, [x => [2, 3, 4, 4], x => [3], x => [3], x => [2, 3, 4, 4]], |B, d, x| {
        let t = B::batch_norm_train(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), 1e-5);
        let g = B::batch_norm_train_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), t.mean.clone(), t.variance.clone(), 1e-5, f::<B>(&x[3], d));
        vec![fo::<B>(t.output), fo::<B>(t.mean), fo::<B>(t.variance), fo::<B>(g.x_grad), fo::<B>(g.gamma_grad), fo::<B>(g.beta_grad)]
    }));
    v.push(case!("ctc_loss+has_ctc_loss_backward+ctc_loss_backward", SUM, [x => [6, 2, 4], In::I(1, 4) => [2, 3], In::I(6, 7) => [2], In::I(1, 4) => [2], x => [2]], |B, d, x| {
        let lp = B::log_softmax(f::<B>(&x[0], d), 2);
        let mut out = vec![fo::<B>(B::ctc_loss(lp.clone(), i::<B>(&x[1], d), i::<B>(&x[2], d), i::<B>(&x[3], d), 0))];
        if B::has_ctc_loss_backward() {
            out.push(fo::<B>(B::ctc_loss_backward(lp, i::<B>(&x[1], d), i::<B>(&x[2], d), i::<B>(&x[3], d), f::<B>(&x[4], d), 0)));
        }
        out
    }));
    v.push(case!("int_gather_nd+int_scatter_nd", EXACT, [int => [4, 5], In::I(0, 4) => [3, 1], int => [3, 5]], |B, d, x| vec![
        io::<B>(B::int_gather_nd(i::<B>(&x[0], d), i::<B>(&x[1], d))),
        io::<B>(B::int_scatter_nd(i::<B>(&x[0], d), i::<B>(&x[1], d), i::<B>(&x[2], d), IndexingUpdateOp::Add)),
    ]));
    v.push(case!("deform_conv2d+deform_conv2d_backward", MM, [x => [1, 2, 5, 5], In::F(-0.5, 0.5) => [1, 18, 3, 3], x => [2, 2, 3, 3]], |B, d, x| {
        let o = burn_backend::ops::DeformConvOptions::new([1, 1], [0, 0], [1, 1], 1, 1);
        vec![fo::<B>(B::deform_conv2d(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), None, None, o))]
    }));
    v.push(case!("conv3d_x_backward+conv3d_weight_backward+conv3d_bias_backward", MM, [x => [1, 2, 4, 4, 4], x => [3, 2, 2, 2, 2], x => [1, 3, 3, 3, 3]], |B, d, x| {
        let o = ConvOptions::new([1, 1, 1], [0, 0, 0], [1, 1, 1], 1);
        vec![fo::<B>(B::conv3d_x_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d), o))]
    }));
    v.push(case!("conv_transpose3d+conv_transpose3d_x_backward+conv_transpose3d_weight_backward+conv_transpose3d_bias_backward", MM, [x => [1, 2, 3, 3, 3], x => [2, 2, 2, 2, 2]], |B, d, x| {
        let o = ConvTransposeOptions::new([1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1);
        vec![fo::<B>(B::conv_transpose3d(f::<B>(&x[0], d), f::<B>(&x[1], d), None, o))]
    }));
    v.push(case!("adaptive_avg_pool3d_backward", SUM, [x => [1, 2, 4, 4, 4], x => [1, 2, 2, 2, 2]], |B, d, x| vec![fo::<B>(B::adaptive_avg_pool3d_backward(f::<B>(&x[0], d), f::<B>(&x[1], d)))]));
    // Half precision (Burn's f16 and bf16 float dtypes): the same ops in those dtypes.
    macro_rules! half {
        ($($tag:literal $dt:ident $tol:ident;)*) => {$(
            v.push(case!(concat!("float_add+float_mul+float_exp+float_matmul+softmax (", $tag, ")"), $tol, [x => [4, 6], x => [6, 5]], |B, d, x| {
                let (a, b) = (fh::<B>(&x[0], d, FloatDType::$dt), fh::<B>(&x[1], d, FloatDType::$dt));
                vec![
                    fho::<B>(B::float_add(a.clone(), a.clone())),
                    fho::<B>(B::float_mul(a.clone(), a.clone())),
                    fho::<B>(B::float_exp(a.clone())),
                    fho::<B>(B::float_matmul(a.clone(), b)),
                    fho::<B>(B::softmax(a, 1)),
                ]
            }));
        )*};
    }
    half! {
        "f16" F16 F16;
        "bf16" BF16 BF16;
    }
    v.push(case!("float_sum_dim (f16)", F16, [x => [2, 3, 6, 6]], |B, d, x| vec![fho::<B>(B::float_sum_dim(fh::<B>(&x[0], d, FloatDType::F16), 3))]));
    v.push(
        case!("conv2d (f16)", F16, [x => [2, 3, 6, 6], x => [4, 3, 3, 3]], |B, d, x| {
            let a = fh::<B>(&x[0], d, FloatDType::F16);
            let w = fh::<B>(&x[1], d, FloatDType::F16);
            vec![fho::<B>(B::conv2d(a, w, None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1)))]
        }),
    );
    v.push(case!("conv_transpose1d_bias_backward", SUM, [x => [2, 4, 6], x => [3], x => [2, 3, 13]], |B, d, x| vec![fo::<B>(B::conv_transpose1d_bias_backward(f::<B>(&x[0], d), f::<B>(&x[1], d), f::<B>(&x[2], d)))]));
    v
}

/// Every method of Burn's float, int, bool, module and activation op traits (burn-backend
/// 0.22.1), which the cases above name (a case name lists the methods it calls, joined by `+`).
const METHODS: &str = include_str!("known/methods.txt");

/// Methods checked outside the differential cases, and where.
const ELSEWHERE: &[(&str, &str)] = &[
    ("float_from_data", "every case loads its inputs with it"),
    ("int_from_data", "every case loads its inputs with it"),
    ("bool_from_data", "every case loads its inputs with it"),
    ("float_into_data", "every case reads its outputs with it"),
    ("int_into_data", "every case reads its outputs with it"),
    ("bool_into_data", "every case reads its outputs with it"),
    (
        "float_empty",
        "empty_tensors_have_their_shape (contents unspecified)",
    ),
    (
        "int_empty",
        "empty_tensors_have_their_shape (contents unspecified)",
    ),
    (
        "bool_empty",
        "empty_tensors_have_their_shape (contents unspecified)",
    ),
    (
        "float_random",
        "tests/random.rs (random draws: statistics and bits across devices)",
    ),
    (
        "int_random",
        "tests/random.rs (random draws: statistics and bits across devices)",
    ),
    ("float_to_device", "tests/random.rs (moves between devices)"),
    ("int_to_device", "tests/random.rs (moves between devices)"),
    ("bool_to_device", "tests/random.rs (moves between devices)"),
    (
        "float_detach",
        "autodiff bookkeeping: the identity on a backend without autodiff",
    ),
    (
        "float_set_require_grad",
        "autodiff bookkeeping: the identity on a backend without autodiff",
    ),
    (
        "float_is_require_grad",
        "autodiff bookkeeping: false on a backend without autodiff",
    ),
];

#[test]
fn every_method_is_checked() {
    let cases = cases();
    let named: std::collections::HashSet<&str> = cases
        .iter()
        .flat_map(|c| c.name.split(" (").next().unwrap_or(c.name).split('+'))
        .collect();
    let missing: Vec<&str> = METHODS
        .split_whitespace()
        .filter(|m| !named.contains(m) && !ELSEWHERE.iter().any(|(e, _)| e == m))
        .collect();
    assert!(missing.is_empty(), "methods no case checks: {missing:?}");
}

/// anyaccel's f16 convolution is the f32 convolution of the same f16 inputs, rounded once to f16
/// (burn-flex's differs: see the known failure "conv2d (f16)").
#[test]
fn half_conv_is_the_rounded_f32_conv() {
    let mut rng = Rng(0xc0de);
    let x = make(&mut rng, In::F(-2.0, 2.0), &[2, 3, 6, 6]);
    let w = make(&mut rng, In::F(-2.0, 2.0), &[4, 3, 3, 3]);
    let o = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let flex = Default::default();
    // The f16 inputs, widened exactly to f32, convolved in f32 and rounded to f16.
    let widen = |t: &TensorData| {
        let h = fh::<Flex>(t, &flex, FloatDType::F16);
        Flex::float_cast(h, FloatDType::F32)
    };
    let want = Flex::float_cast(
        Flex::conv2d(widen(&x), widen(&w), None, o.clone()),
        FloatDType::F16,
    );
    let want = fho::<Flex>(want);
    for (id, d) in common::devices() {
        let got = Anyaccel::conv2d(
            fh::<Anyaccel>(&x, &d, FloatDType::F16),
            fh::<Anyaccel>(&w, &d, FloatDType::F16),
            None,
            o.clone(),
        );
        // A few f16 ulp: f32 sums in another order may round to a neighbour.
        compare(
            &format!("{id}: conv2d (f16)"),
            &fho::<Anyaccel>(got),
            &want,
            (1e-3, 1e-3),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn empty_tensors_have_their_shape() {
    let d = AnyaccelDevice::default();
    let shape = Shape::from(vec![2, 0, 3]);
    let f = Anyaccel::float_empty(shape.clone(), &d, FloatDType::F32);
    let i = Anyaccel::int_empty(shape.clone(), &d, IntDType::I64);
    let b = Anyaccel::bool_empty(shape.clone(), &d, BoolStore::Native);
    use burn_backend::TensorMetadata;
    for (t, dt) in [
        (f, DType::F32),
        (i, DType::I64),
        (b, DType::Bool(BoolStore::Native)),
    ] {
        assert_eq!(t.shape(), shape);
        assert_eq!(t.dtype(), dt);
    }
    let g = Anyaccel::float_empty(Shape::from(vec![3, 4]), &d, FloatDType::F32);
    assert_eq!(fo::<Anyaccel>(g).shape().to_vec(), vec![3, 4]);
}

/// Whether two results agree: exactly for ints and bools, within `tol` for floats.
fn compare(name: &str, got: &TensorData, want: &TensorData, tol: (f64, f64)) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "{name}: shape {:?}, reference {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let (gd, wd) = (got.dtype(), want.dtype());
    let is_float = |d: DType| matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16);
    if is_float(wd) || is_float(gd) {
        let g: Vec<f64> = got.iter::<f64>().collect();
        let w: Vec<f64> = want.iter::<f64>().collect();
        for (k, (a, b)) in g.iter().zip(&w).enumerate() {
            let same =
                (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol.0 + tol.1 * b.abs();
            if !same {
                return Err(format!(
                    "{name}: element {k} is {a}, reference {b} (tolerance {tol:?})"
                ));
            }
        }
    } else {
        let g: Vec<i64> = got.iter::<i64>().collect();
        let w: Vec<i64> = want.iter::<i64>().collect();
        if g != w {
            return Err(format!("{name}: {g:?}, reference {w:?}"));
        }
    }
    Ok(())
}

thread_local! {
    /// Whether this thread's panics are expected (and not printed).
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs, once, a panic hook that stays silent on threads that expect panics.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) || std::env::var_os("ANYACCEL_BURN_VERBOSE").is_some() {
                default(info);
            }
        }));
    });
}

#[test]
fn anyaccel_matches_burn_flex() {
    let cases = cases();
    let mut failures = Vec::new();
    let mut ran = 0usize;
    // The panics the cases expect (refused input, unsupported ops) print nothing; the summary
    // below names every failure.
    quiet_panics();
    QUIET.with(|q| q.set(true));
    for (id, device) in common::devices() {
        let known = known::failures(&id);
        let mut rng = Rng(0x5eed);
        for c in &cases {
            let data: Vec<TensorData> = c
                .inputs
                .iter()
                .map(|(k, s)| make(&mut rng, *k, s))
                .collect();
            let want = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (c.run_r)(&Default::default(), &data)
            }));
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (c.run_a)(&device, &data)
            }));
            let outcome = match (got, want) {
                // Input that Burn's backend refuses must be refused here too.
                (Err(_), Err(_)) => Ok(()),
                (Ok(_), Err(_)) => Err(format!(
                    "{}: burn-flex refuses the input but anyaccel returns values",
                    c.name
                )),
                (Err(p), Ok(_)) => Err(format!(
                    "{}: panicked: {}",
                    c.name,
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                )),
                (Ok(got), Ok(want)) => {
                    got.iter()
                        .zip(&want)
                        .enumerate()
                        .try_for_each(|(k, (g, w))| {
                            compare(&format!("{} (output {k})", c.name), g, w, c.tol)
                        })
                }
            };
            ran += 1;
            let is_known = known.iter().any(|(n, _)| *n == c.name);
            match (outcome, is_known) {
                (Err(e), false) => failures.push(format!("{id}: {e}")),
                (Ok(()), true) => failures.push(format!(
                    "{id}: {} passes but is listed in tests/known.rs; take it off the list",
                    c.name
                )),
                _ => {}
            }
        }
    }
    QUIET.with(|q| q.set(false));
    assert!(ran > 0, "no device ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} case runs differ from burn-flex:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
