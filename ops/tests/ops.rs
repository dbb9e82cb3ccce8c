//! Every op on the CPU device against hand-computed values: empty, scalar, NaN and tie cases,
//! broadcasting, strided views, and the errors of bad input.

use std::sync::Arc;

use anyaccel_hal::{bf16, f16, AttrValue, Backend, DType, ErrorCode, Queue, Tensor};
use anyaccel_ops as ops;

fn queue() -> Arc<dyn Queue> {
    let device = anyaccel_cpu::CpuBackend.probe().unwrap().remove(0);
    device.create_queue().unwrap()
}

fn t<T: anyaccel_hal::Element>(q: &Arc<dyn Queue>, data: &[T], shape: &[usize]) -> Tensor {
    Tensor::from_slice(&**q, data, shape).unwrap()
}

fn f32s(q: &Arc<dyn Queue>, t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>(&**q).unwrap()
}

fn attr(n: &str, v: AttrValue) -> (String, AttrValue) {
    (n.to_string(), v)
}

#[test]
fn binary_broadcast_and_special_values() {
    let q = queue();
    let a = t(&q, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t(&q, &[10.0f32, 20.0, 30.0], &[3]);
    assert_eq!(
        f32s(&q, &ops::add(&*q, &a, &b).unwrap()),
        [11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
    );
    let col = t(&q, &[1.0f32, -1.0], &[2, 1]);
    assert_eq!(
        f32s(&q, &ops::mul(&*q, &a, &col).unwrap()),
        [1.0, 2.0, 3.0, -4.0, -5.0, -6.0]
    );
    let n = t(&q, &[f32::NAN, 1.0, -0.0], &[3]);
    let m = t(&q, &[0.0f32, f32::NAN, 0.0], &[3]);
    let mx = f32s(&q, &ops::maximum(&*q, &n, &m).unwrap());
    assert!(mx[0].is_nan() && mx[1].is_nan() && mx[2] == 0.0);
    let e = ops::add(&*q, &a, &t(&q, &[1.0f32, 2.0], &[2])).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(
        e.message().contains("2x3") && e.message().contains("equal or 1"),
        "{e}"
    );
    let e = ops::add(&*q, &a, &t(&q, &[1i32, 2, 3], &[3])).unwrap_err();
    assert!(e.message().contains("dtypes must match"), "{e}");
}

#[test]
fn integer_arithmetic_wraps_and_divides_toward_zero() {
    let q = queue();
    let a = t(&q, &[i32::MAX, -7, 7, i32::MIN, 5], &[5]);
    let b = t(&q, &[1i32, 2, -2, -1, 0], &[5]);
    assert_eq!(
        ops::add(&*q, &a, &b).unwrap().to_vec::<i32>(&*q).unwrap(),
        [i32::MIN, -5, 5, i32::MAX, 5]
    );
    assert_eq!(
        ops::div(&*q, &a, &b).unwrap().to_vec::<i32>(&*q).unwrap(),
        [i32::MAX, -3, -3, i32::MIN, 0]
    );
    let x = t(&q, &[i64::MIN, -3, 4], &[3]);
    assert_eq!(
        ops::abs(&*q, &x).unwrap().to_vec::<i64>(&*q).unwrap(),
        [i64::MIN, 3, 4]
    );
    assert_eq!(
        ops::neg(&*q, &x).unwrap().to_vec::<i64>(&*q).unwrap(),
        [i64::MIN, 3, -4]
    );
    let e = ops::pow(&*q, &a, &b).unwrap_err();
    assert!(e.message().contains("pow: a is i32"), "{e}");
}

#[test]
fn half_precision_rounds_once() {
    let q = queue();
    let a = t(&q, &[f16::from_f32(1.0), f16::from_f32(65504.0)], &[2]);
    let b = t(
        &q,
        &[f16::from_f32(0.0004882), f16::from_f32(65504.0)],
        &[2],
    );
    let s = ops::add(&*q, &a, &b).unwrap().to_vec::<f16>(&*q).unwrap();
    assert_eq!(s[0], f16::from_f32(1.0 + f16::from_f32(0.0004882).to_f32()));
    assert!(s[1].is_infinite());
    let x = t(&q, &[bf16::from_f32(2.0)], &[1]);
    assert_eq!(
        ops::sqrt(&*q, &x).unwrap().to_vec::<bf16>(&*q).unwrap()[0],
        bf16::from_f32(std::f32::consts::SQRT_2)
    );
}

#[test]
fn comparisons_and_where() {
    let q = queue();
    let a = t(&q, &[1.0f32, f32::NAN, 3.0], &[3]);
    let b = t(&q, &[1.0f32, f32::NAN, 2.0], &[3]);
    assert_eq!(
        ops::eq(&*q, &a, &b).unwrap().to_vec::<bool>(&*q).unwrap(),
        [true, false, false]
    );
    assert_eq!(
        ops::ne(&*q, &a, &b).unwrap().to_vec::<bool>(&*q).unwrap(),
        [false, true, true]
    );
    assert_eq!(
        ops::gt(&*q, &a, &b).unwrap().to_vec::<bool>(&*q).unwrap(),
        [false, false, true]
    );
    let c = t(&q, &[true, false], &[2, 1]);
    let x = t(&q, &[1i64, 2, 3], &[3]);
    let y = t(&q, &[-1i64], &[1]);
    let w = ops::where_(&*q, &c, &x, &y).unwrap();
    assert_eq!(w.shape(), [2, 3]);
    assert_eq!(w.to_vec::<i64>(&*q).unwrap(), [1, 2, 3, -1, -1, -1]);
    let bt = t(&q, &[false, true], &[2]);
    assert_eq!(
        ops::lt(&*q, &bt, &t(&q, &[true, true], &[2]))
            .unwrap()
            .to_vec::<bool>(&*q)
            .unwrap(),
        [true, false]
    );
}

#[test]
fn unary_ops() {
    let q = queue();
    let x = t(&q, &[-1.0f32, 0.0, 2.0, f32::NAN], &[4]);
    let r = f32s(&q, &ops::relu(&*q, &x).unwrap());
    assert_eq!(&r[..3], [0.0, 0.0, 2.0]);
    assert!(r[3].is_nan());
    let s = f32s(&q, &ops::sigmoid(&*q, &x).unwrap());
    assert!((s[0] - 0.268_941_43).abs() < 1e-6 && s[1] == 0.5);
    let g = f32s(
        &q,
        &ops::gelu(&*q, &x, ops::GeluApproximation::None).unwrap(),
    );
    assert!(
        (g[0] - (-0.158_655_25)).abs() < 1e-6 && (g[2] - 1.954_499_7).abs() < 1e-5,
        "{g:?}"
    );
    let gt = f32s(
        &q,
        &ops::gelu(&*q, &x, ops::GeluApproximation::Tanh).unwrap(),
    );
    assert!((gt[0] - (-0.158_808)).abs() < 1e-5, "{gt:?}");
    let c = f32s(&q, &ops::clamp(&*q, &x, -0.5, 1.5).unwrap());
    assert_eq!(&c[..3], [-0.5, 0.0, 1.5]);
    assert!(c[3].is_nan());
    let l = f32s(
        &q,
        &ops::log(&*q, &t(&q, &[0.0f32, -1.0, 1.0], &[3])).unwrap(),
    );
    assert!(l[0] == f32::NEG_INFINITY && l[1].is_nan() && l[2] == 0.0);
    let i = t(&q, &[-5i32, 0, 9], &[3]);
    assert_eq!(
        ops::clamp(&*q, &i, -2.0, 4.0)
            .unwrap()
            .to_vec::<i32>(&*q)
            .unwrap(),
        [-2, 0, 4]
    );
    let e = ops::clamp(&*q, &i, -2.5, 4.0).unwrap_err();
    assert!(e.message().contains("integral"), "{e}");
    assert!(ops::exp(&*q, &i)
        .unwrap_err()
        .message()
        .contains("exp: x is i32"));
}

#[test]
fn creation_copy_and_cast() {
    let q = queue();
    let f = ops::fill(&*q, DType::I32, &[2, 2], 7.9).unwrap();
    assert_eq!(f.to_vec::<i32>(&*q).unwrap(), [7, 7, 7, 7]);
    let a = ops::arange(&*q, DType::F16, 0.5, 0.25, 3).unwrap();
    assert_eq!(
        a.to_vec::<f16>(&*q).unwrap(),
        [0.5, 0.75, 1.0].map(f16::from_f32)
    );
    assert!(ops::arange(&*q, DType::I64, 0.5, 1.0, 3).is_err());
    let x = t(&q, &[300.7f32, -1.5, f32::NAN, 1e20], &[4]);
    assert_eq!(
        ops::cast(&*q, &x, DType::U8)
            .unwrap()
            .to_vec::<u8>(&*q)
            .unwrap(),
        [255, 0, 0, 255]
    );
    assert_eq!(
        ops::cast(&*q, &x, DType::I32)
            .unwrap()
            .to_vec::<i32>(&*q)
            .unwrap(),
        [300, -1, 0, i32::MAX]
    );
    assert_eq!(
        ops::cast(&*q, &x, DType::Bool)
            .unwrap()
            .to_vec::<bool>(&*q)
            .unwrap(),
        [true; 4]
    );
    let i = t(&q, &[-1i32, 256 + 3], &[2]);
    assert_eq!(
        ops::cast(&*q, &i, DType::U8)
            .unwrap()
            .to_vec::<u8>(&*q)
            .unwrap(),
        [255, 3]
    );
    let big = t(&q, &[(1i64 << 32) + 5], &[1]);
    assert_eq!(
        ops::cast(&*q, &big, DType::I32)
            .unwrap()
            .to_vec::<i32>(&*q)
            .unwrap(),
        [5]
    );
    assert!(ops::cast(&*q, &t(&q, &[1e6f32], &[1]), DType::F16)
        .unwrap()
        .to_vec::<f16>(&*q)
        .unwrap()[0]
        .is_infinite());
    // Copy of a transposed view makes it contiguous.
    let m = t(&q, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let mt = m.transpose(0, 1).unwrap();
    assert_eq!(
        f32s(&q, &ops::copy(&*q, &mt).unwrap()),
        [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
    // Scalars and empties.
    let s = ops::fill(&*q, DType::F32, &[], 2.5).unwrap();
    assert_eq!(f32s(&q, &ops::exp(&*q, &s).unwrap()).len(), 1);
    let e = ops::fill(&*q, DType::F32, &[0, 3], 1.0).unwrap();
    assert_eq!(ops::add(&*q, &e, &e).unwrap().shape(), [0, 3]);
}

#[test]
fn into_forms_check_outputs() {
    let q = queue();
    let a = t(&q, &[1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    let out = t(&q, &[0.0f32; 8], &[2, 4]);
    // Write into every other column of a wider tensor.
    let strided = out
        .with_desc(anyaccel_hal::TensorDesc {
            shape: vec![2, 2],
            strides: vec![4, 2],
            ..out.desc().clone()
        })
        .unwrap();
    ops::add_into(&*q, &a, &a, &strided).unwrap();
    assert_eq!(f32s(&q, &out), [2.0, 0.0, 4.0, 0.0, 6.0, 0.0, 8.0, 0.0]);
    let e = ops::add_into(&*q, &a, &a, &a).unwrap_err();
    assert!(e.message().contains("alias"), "{e}");
    let wrong = t(&q, &[0.0f32; 3], &[3]);
    assert!(ops::add_into(&*q, &a, &a, &wrong)
        .unwrap_err()
        .message()
        .contains("expected f32 2x2"));
    let bcast = t(&q, &[0.0f32; 2], &[2]).broadcast_to(&[2, 2]).unwrap();
    assert!(ops::add_into(&*q, &a, &a, &bcast)
        .unwrap_err()
        .message()
        .contains("same address"));
}

#[test]
fn reductions() {
    let q = queue();
    let x = t(&q, &[1.0f32, 5.0, 5.0, -2.0, 0.0, 3.0], &[2, 3]);
    assert_eq!(f32s(&q, &ops::sum(&*q, &x, &[], false).unwrap()), [12.0]);
    let s = ops::sum(&*q, &x, &[-1], true).unwrap();
    assert_eq!(s.shape(), [2, 1]);
    assert_eq!(f32s(&q, &s), [11.0, 1.0]);
    assert_eq!(
        f32s(&q, &ops::mean(&*q, &x, &[0], false).unwrap()),
        [-0.5, 2.5, 4.0]
    );
    assert_eq!(
        f32s(&q, &ops::max(&*q, &x, &[1], false).unwrap()),
        [5.0, 3.0]
    );
    assert_eq!(
        ops::argmax(&*q, &x, &[1], false)
            .unwrap()
            .to_vec::<i64>(&*q)
            .unwrap(),
        [1, 2]
    );
    assert_eq!(
        ops::argmin(&*q, &x, &[], false)
            .unwrap()
            .to_vec::<i64>(&*q)
            .unwrap(),
        [3]
    );
    let n = t(&q, &[1.0f32, f32::NAN, 7.0, f32::NAN], &[4]);
    assert!(f32s(&q, &ops::max(&*q, &n, &[], false).unwrap())[0].is_nan());
    assert_eq!(
        ops::argmax(&*q, &n, &[], false)
            .unwrap()
            .to_vec::<i64>(&*q)
            .unwrap(),
        [1]
    );
    assert_eq!(
        ops::argmin(&*q, &n, &[], false)
            .unwrap()
            .to_vec::<i64>(&*q)
            .unwrap(),
        [1]
    );
    let e = ops::fill(&*q, DType::F32, &[2, 0], 1.0).unwrap();
    assert_eq!(
        f32s(&q, &ops::sum(&*q, &e, &[1], false).unwrap()),
        [0.0, 0.0]
    );
    assert!(f32s(&q, &ops::mean(&*q, &e, &[1], false).unwrap())[0].is_nan());
    assert!(ops::max(&*q, &e, &[1], false)
        .unwrap_err()
        .message()
        .contains("cannot reduce 0 elements"));
    let i = t(&q, &[i32::MAX, 1], &[2]);
    assert_eq!(
        ops::sum(&*q, &i, &[], false)
            .unwrap()
            .to_vec::<i32>(&*q)
            .unwrap(),
        [i32::MIN]
    );
    assert!(ops::sum(&*q, &x, &[1, -1], false)
        .unwrap_err()
        .message()
        .contains("twice"));
    assert_eq!(
        f32s(&q, &ops::cumsum(&*q, &x, 1).unwrap()),
        [1.0, 6.0, 11.0, -2.0, -2.0, 1.0]
    );
    // A long reduction into one output takes the split path.
    let long = ops::fill(&*q, DType::F32, &[1 << 20], 0.5).unwrap();
    assert_eq!(
        f32s(&q, &ops::sum(&*q, &long, &[], false).unwrap()),
        [(1 << 19) as f32]
    );
}

#[test]
fn topk_sorted_with_ties_and_nan() {
    let q = queue();
    let x = t(&q, &[3.0f32, 1.0, 3.0, f32::NAN, 2.0], &[5]);
    let (v, i) = ops::topk(&*q, &x, 3, -1, true).unwrap();
    let v = f32s(&q, &v);
    assert!(v[0].is_nan() && v[1] == 3.0 && v[2] == 3.0);
    assert_eq!(i.to_vec::<i64>(&*q).unwrap(), [3, 0, 2]);
    let (v, i) = ops::topk(&*q, &x, 2, 0, false).unwrap();
    assert_eq!(f32s(&q, &v), [1.0, 2.0]);
    assert_eq!(i.to_vec::<i64>(&*q).unwrap(), [1, 4]);
    assert!(ops::topk(&*q, &x, 6, 0, true)
        .unwrap_err()
        .message()
        .contains("k is 6"));
}

#[test]
fn indexing_ops_and_out_of_range_errors() {
    let q = queue();
    let x = t(&q, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    let idx = t(&q, &[2i64, 0, 2], &[3]);
    assert_eq!(
        f32s(&q, &ops::index_select(&*q, &x, 0, &idx).unwrap()),
        [5.0, 6.0, 1.0, 2.0, 5.0, 6.0]
    );
    let emb = ops::embedding(&*q, &x, &t(&q, &[1i32, 1, 0, 2], &[2, 2])).unwrap();
    assert_eq!(emb.shape(), [2, 2, 2]);
    assert_eq!(f32s(&q, &emb), [3.0, 4.0, 3.0, 4.0, 1.0, 2.0, 5.0, 6.0]);
    let gi = t(&q, &[1i64, 0, 0, 0, 1, 1], &[3, 2]);
    assert_eq!(
        f32s(&q, &ops::gather(&*q, &x, 1, &gi).unwrap()),
        [2.0, 1.0, 3.0, 3.0, 6.0, 6.0]
    );
    let c = ops::concat(&*q, &[&x, &t(&q, &[9.0f32, 9.0], &[1, 2])], 0).unwrap();
    assert_eq!(f32s(&q, &c), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 9.0, 9.0]);
    let bad = t(&q, &[0i32, 3], &[2]);
    let out = ops::index_select(&*q, &x, 0, &bad).unwrap();
    let e = out.to_vec::<f32>(&*q).unwrap_err();
    assert_eq!(e.code(), ErrorCode::OutOfBounds);
    assert!(e.message().contains("index 3 out of range 0..3"), "{e}");
    // The queue works again after the error was reported.
    assert_eq!(
        f32s(&q, &ops::index_select(&*q, &x, 0, &idx).unwrap())[0],
        5.0
    );
}

#[test]
fn softmax_and_norms() {
    let q = queue();
    let x = t(&q, &[1.0f32, 2.0, 3.0, 1000.0, 1000.0, 1000.0], &[2, 3]);
    let s = f32s(&q, &ops::softmax(&*q, &x, -1).unwrap());
    let e = [1.0f64.exp(), 2.0f64.exp(), 3.0f64.exp()];
    let z: f64 = e.iter().sum();
    for j in 0..3 {
        assert!((s[j] as f64 - e[j] / z).abs() < 1e-6);
        assert!((s[3 + j] - 1.0 / 3.0).abs() < 1e-6);
    }
    let l = f32s(&q, &ops::log_softmax(&*q, &x, 1).unwrap());
    assert!((l[0] as f64 - (1.0 - z.ln())).abs() < 1e-5);
    let y = f32s(
        &q,
        &ops::layer_norm(&*q, &t(&q, &[1.0f32, 3.0], &[1, 2]), None, None, 0.0).unwrap(),
    );
    assert_eq!(y, [-1.0, 1.0]);
    let w = t(&q, &[2.0f32, 1.0], &[2]);
    let b = t(&q, &[0.5f32, 0.5], &[2]);
    let y = f32s(
        &q,
        &ops::layer_norm(
            &*q,
            &t(&q, &[1.0f32, 3.0], &[1, 2]),
            Some(&w),
            Some(&b),
            0.0,
        )
        .unwrap(),
    );
    assert_eq!(y, [-1.5, 1.5]);
    let r = f32s(
        &q,
        &ops::rms_norm(&*q, &t(&q, &[3.0f32, 4.0], &[2]), None, 0.0).unwrap(),
    );
    let rms = (12.5f32).sqrt();
    assert!((r[0] - 3.0 / rms).abs() < 1e-6 && (r[1] - 4.0 / rms).abs() < 1e-6);
    let e = ops::layer_norm(&*q, &x, Some(&w), None, 1e-5).unwrap_err();
    assert!(e.message().contains("expected [3]"), "{e}");
    let e = ops::rms_norm(&*q, &x, None, f64::NAN).unwrap_err();
    assert!(e.message().contains("eps is NaN"), "{e}");
}

#[test]
fn matmul_batched_transposed_with_bias() {
    let q = queue();
    let a = t(&q, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t(&q, &[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]);
    assert_eq!(
        f32s(&q, &ops::matmul(&*q, &a, &b, None).unwrap()),
        [4.0, 5.0, 10.0, 11.0]
    );
    // b given as the transpose of a [2, 3] tensor.
    let bt = t(&q, &[1.0f32, 0.0, 1.0, 0.0, 1.0, 1.0], &[2, 3])
        .transpose(0, 1)
        .unwrap();
    let bias = t(&q, &[100.0f32, 200.0], &[2]);
    assert_eq!(
        f32s(&q, &ops::matmul(&*q, &a, &bt, Some(&bias)).unwrap()),
        [104.0, 205.0, 110.0, 211.0]
    );
    // Batch broadcast: a is [2, 1, 2, 3] against b [3, 2].
    let a4 = t(
        &q,
        &[
            1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0,
        ],
        &[2, 1, 2, 3],
    );
    let r = ops::matmul(&*q, &a4, &b, None).unwrap();
    assert_eq!(r.shape(), [2, 1, 2, 2]);
    assert_eq!(f32s(&q, &r), [4.0, 5.0, 10.0, 11.0, 0.0, 0.0, 2.0, 2.0]);
    let h = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    let ah = t(&q, &h(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), &[2, 3]);
    let bh = t(&q, &h(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]), &[3, 2]);
    assert_eq!(
        ops::matmul(&*q, &ah, &bh, None)
            .unwrap()
            .to_vec::<f16>(&*q)
            .unwrap(),
        h(&[4.0, 5.0, 10.0, 11.0])
    );
    let e = ops::matmul(&*q, &a, &a, None).unwrap_err();
    assert_eq!(
        e.message(),
        "matmul: a is 2x3 but b is 2x3: inner dimensions must match (3 vs 2)"
    );
    let k0 = ops::matmul(
        &*q,
        &ops::fill(&*q, DType::F32, &[2, 0], 1.0).unwrap(),
        &ops::fill(&*q, DType::F32, &[0, 2], 1.0).unwrap(),
        Some(&bias),
    )
    .unwrap();
    assert_eq!(f32s(&q, &k0), [100.0, 200.0, 100.0, 200.0]);
}

#[test]
fn rope_both_layouts() {
    let q = queue();
    let x = t(&q, &[1.0f32, 2.0, 3.0, 4.0], &[1, 4]);
    let cos = t(&q, &[0.0f32, 1.0], &[1, 2]);
    let sin = t(&q, &[1.0f32, 0.0], &[1, 2]);
    // half-split: pairs (x0, x2) rotate by 90 degrees, (x1, x3) stay.
    assert_eq!(
        f32s(&q, &ops::rope(&*q, &x, &cos, &sin, false).unwrap()),
        [-3.0, 2.0, 1.0, 4.0]
    );
    // interleaved: pairs (x0, x1) rotate, (x2, x3) stay.
    assert_eq!(
        f32s(&q, &ops::rope(&*q, &x, &cos, &sin, true).unwrap()),
        [-2.0, 1.0, 3.0, 4.0]
    );
}

#[test]
fn attention_causal() {
    let q = queue();
    let qt = t(&q, &[1.0f32, 0.0, 0.0, 1.0], &[2, 2]);
    let k = t(&q, &[1.0f32, 0.0, 0.0, 1.0], &[2, 2]);
    let v = t(&q, &[1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    let o = f32s(
        &q,
        &ops::attention(&*q, &qt, &k, &v, true, Some(1.0)).unwrap(),
    );
    // Row 0 sees only key 0; row 1 sees both with scores (0, 1).
    let p1 = 1.0f64.exp() / (1.0 + 1.0f64.exp());
    assert_eq!(&o[..2], [1.0, 2.0]);
    assert!((o[2] as f64 - (1.0 * (1.0 - p1) + 3.0 * p1)).abs() < 1e-6);
    assert!((o[3] as f64 - (2.0 * (1.0 - p1) + 4.0 * p1)).abs() < 1e-6);
    let e = ops::attention(&*q, &qt, &t(&q, &[1.0f32; 3], &[1, 3]), &v, false, None).unwrap_err();
    assert!(e.message().contains("head dim"), "{e}");
}

#[test]
fn generic_call_errors_name_what_is_wrong() {
    let q = queue();
    let x = t(&q, &[1.0f32], &[1]);
    let e = ops::call(&*q, "frobnicate", &[Some(&x)], &[]).unwrap_err();
    assert!(e.message().contains("unknown op `frobnicate`"));
    let e = ops::call(
        &*q,
        "softmax",
        &[Some(&x)],
        &[attr("axis", AttrValue::Int(3))],
    )
    .unwrap_err();
    assert!(e.message().contains("axis 3 is out of range"), "{e}");
    let e = ops::call(
        &*q,
        "softmax",
        &[Some(&x)],
        &[attr("dim", AttrValue::Int(0))],
    )
    .unwrap_err();
    assert!(e.message().contains("unknown attribute `dim`"), "{e}");
    let e = ops::call(&*q, "add", &[Some(&x)], &[]).unwrap_err();
    assert!(e.message().contains("1 inputs given, expected 2"), "{e}");
    let other = anyaccel_cpu::CpuDevice::new(7).unwrap();
    let q2 = anyaccel_hal::Device::create_queue(&*other).unwrap();
    let y = t(&q2, &[1.0f32], &[1]);
    let e = ops::add(&*q, &x, &y).unwrap_err();
    assert!(e.message().contains("cpu:7"), "{e}");
    let unaligned = x.with_desc(x.desc().clone()).unwrap();
    let raw = unaligned.view().buffer().view(1, 3).unwrap();
    let e = ops::copy(
        &*q,
        &Tensor::new(raw, anyaccel_hal::TensorDesc::contiguous(DType::U8, &[3])).unwrap(),
    );
    assert!(e.is_ok(), "u8 at byte 1 is aligned");
}

#[test]
fn integer_clamp_bounds_must_fit_the_dtype() {
    let q = queue();
    let i = t(&q, &[1i32, 2], &[2]);
    let e = ops::clamp(&*q, &i, -1.0, 3e9).unwrap_err();
    assert!(e.message().contains("outside the range of i32"), "{e}");
    let j = t(&q, &[1i64, 5_000_000_000], &[2]);
    assert_eq!(
        ops::clamp(&*q, &j, 0.0, 3e9)
            .unwrap()
            .to_vec::<i64>(&*q)
            .unwrap(),
        [1, 3_000_000_000]
    );
}

#[test]
fn movement_v2_against_pytorch_values() {
    let q = queue();
    let x = t(&q, &[0.0f32, 1.0, 2.0, 3.0], &[4]);
    // torch.nn.functional.pad(x[None], (3, 2), mode=...)
    let pad = |m| f32s(&q, &ops::pad(&*q, &x, &[3, 2], m).unwrap());
    assert_eq!(
        pad(ops::PadMode::Reflect),
        [3.0, 2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 1.0]
    );
    assert_eq!(
        pad(ops::PadMode::Circular),
        [1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0, 0.0, 1.0]
    );
    assert_eq!(
        pad(ops::PadMode::Replicate),
        [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    );
    assert_eq!(
        f32s(
            &q,
            &ops::pad(&*q, &x, &[-1, 1], ops::PadMode::Constant(7.0)).unwrap()
        ),
        [1.0, 2.0, 3.0, 7.0]
    );
    let e = ops::pad(&*q, &x, &[4, 0], ops::PadMode::Reflect).unwrap_err();
    assert!(e.message().contains("0..=3"), "{e}");

    let m = t(&q, &[1i32, 2, 3, 4, 5, 6], &[2, 3]);
    let i32s = |t: Tensor| t.to_vec::<i32>(&*q).unwrap();
    assert_eq!(i32s(ops::flip(&*q, &m, &[1]).unwrap()), [3, 2, 1, 6, 5, 4]);
    // torch.roll(m, shifts=(1, -1), dims=(0, 1))
    assert_eq!(
        i32s(ops::roll(&*q, &m, &[1, -1], &[0, 1]).unwrap()),
        [5, 6, 4, 2, 3, 1]
    );
    assert_eq!(i32s(ops::tril(&*q, &m, 0).unwrap()), [1, 0, 0, 4, 5, 0]);
    assert_eq!(i32s(ops::triu(&*q, &m, 1).unwrap()), [0, 2, 3, 0, 0, 6]);
    assert_eq!(
        i32s(ops::repeat_interleave(&*q, &m, &[2, 0, 1], 1).unwrap()),
        [1, 1, 3, 4, 4, 6]
    );
    let hot = ops::one_hot(&*q, &t(&q, &[2i64, 0], &[2]), 3, DType::F32).unwrap();
    assert_eq!(f32s(&q, &hot), [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    let e = ops::one_hot(&*q, &t(&q, &[3i64], &[1]), 3, DType::I64)
        .unwrap()
        .to_vec::<i64>(&*q)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::OutOfBounds);
    assert!(
        e.message()
            .starts_with("one_hot: index 3 out of range 0..3"),
        "{e}"
    );

    // Duplicates: scatter keeps the last, scatter_add sums.
    let z = t(&q, &[0.0f32; 3], &[3]);
    let idx = t(&q, &[1i64, 1, 0], &[3]);
    let src = t(&q, &[10.0f32, 20.0, 30.0], &[3]);
    assert_eq!(
        f32s(&q, &ops::scatter(&*q, &z, 0, &idx, &src).unwrap()),
        [30.0, 20.0, 0.0]
    );
    assert_eq!(
        f32s(&q, &ops::scatter_add(&*q, &z, 0, &idx, &src).unwrap()),
        [30.0, 30.0, 0.0]
    );
    let a = ops::index_add(&*q, &z, 0, &idx, &src, -0.5).unwrap();
    assert_eq!(f32s(&q, &a), [-15.0, -15.0, 0.0]);
    let bad = t(&q, &[0i64, -1, 2], &[3]);
    let e = ops::scatter(&*q, &z, 0, &bad, &src)
        .unwrap()
        .to_vec::<f32>(&*q)
        .unwrap_err();
    assert!(e.message().contains("index -1 out of range 0..3"), "{e}");

    let mask = t(&q, &[1u8, 0, 1], &[3]).with_desc(anyaccel_hal::TensorDesc {
        dtype: DType::Bool,
        ..anyaccel_hal::TensorDesc::contiguous(DType::Bool, &[3])
    });
    let mask = mask.unwrap();
    let mf = ops::masked_fill(&*q, &m, &mask, -9.0).unwrap();
    assert_eq!(i32s(mf), [-9, 2, -9, -9, 5, -9]);
}

#[test]
fn activation_gradients_match_finite_differences_and_limits() {
    let q = queue();
    let xs = [-3.0f32, -0.5, 0.25, 2.0];
    let x = t(&q, &xs, &[4]);
    let g = t(&q, &[1.0f32; 4], &[4]);
    let fwd = |name: &str, v: f64| -> f64 {
        match name {
            "sigmoid" => 1.0 / (1.0 + (-v).exp()),
            "tanh" => v.tanh(),
            "silu" => v / (1.0 + (-v).exp()),
            _ => (1.0 + v.exp()).ln(),
        }
    };
    let grads = [
        ("sigmoid", ops::sigmoid_backward(&*q, &g, &x).unwrap()),
        ("tanh", ops::tanh_backward(&*q, &g, &x).unwrap()),
        ("silu", ops::silu_backward(&*q, &g, &x).unwrap()),
        (
            "softplus",
            ops::softplus_backward(&*q, &g, &x, 1.0, 20.0).unwrap(),
        ),
    ];
    for (name, dx) in grads {
        for (i, d) in f32s(&q, &dx).into_iter().enumerate() {
            let v = xs[i] as f64;
            let h = 1e-6;
            let fd = (fwd(name, v + h) - fwd(name, v - h)) / (2.0 * h);
            assert!(
                (d as f64 - fd).abs() < 1e-5,
                "{name}'({v}) = {d}, expected {fd}"
            );
        }
    }
    // The limits at the infinities, and relu's branches.
    let inf = t(&q, &[f32::INFINITY, f32::NEG_INFINITY, 0.0, f32::NAN], &[4]);
    let g = t(&q, &[2.0f32, 2.0, 2.0, 2.0], &[4]);
    assert_eq!(
        f32s(&q, &ops::silu_backward(&*q, &g, &inf).unwrap())[..2],
        [2.0, 0.0]
    );
    let gl = ops::gelu_backward(&*q, &g, &inf, ops::GeluApproximation::None).unwrap();
    assert_eq!(f32s(&q, &gl)[..3], [2.0, 0.0, 1.0]);
    assert_eq!(
        f32s(&q, &ops::relu_backward(&*q, &g, &inf).unwrap()),
        [2.0, 0.0, 0.0, 2.0]
    );
    let e = ops::relu_backward(&*q, &g, &x.narrow(0, 0, 3).unwrap()).unwrap_err();
    assert!(e.message().contains("shapes must be equal"), "{e}");
}
