//! The layout words of strided operands on a Vulkan device, where one is installed: passed with
//! the scalars when they fit the 128 bytes of push constants every device has, in a buffer of
//! their own otherwise. Both must walk the same elements. The ops themselves are checked by the
//! conformance suite (`anyaccel conformance --device vulkan:0`).
//!
//! The tests skip (saying so) when Vulkan is unavailable, unless `ANYACCEL_REQUIRE` names
//! `vulkan`.

use std::sync::Arc;

use anyaccel_hal::{Queue, Tensor};

fn vulkan() -> Option<Arc<dyn Queue>> {
    let device = anyaccel_hal::testing::device_or_skip(&anyaccel_vulkan::VulkanBackend)?;
    Some(device.create_queue().unwrap())
}

/// The elements of row-major `a` of `shape` permuted by `order`, in row-major order, on the
/// host.
fn permuted(a: &[f32], shape: &[usize], order: &[usize]) -> Vec<f32> {
    let pshape: Vec<usize> = order.iter().map(|&d| shape[d]).collect();
    let strides = anyaccel_hal::contiguous_strides(shape);
    (0..a.len())
        .map(|lin| {
            let mut rem = lin;
            let mut src = 0;
            for d in (0..order.len()).rev() {
                let i = rem % pshape[d];
                rem /= pshape[d];
                src += i * strides[order[d]] as usize;
            }
            a[src]
        })
        .collect()
}

/// `a` permuted by `order`, plus a contiguous `b` of the permuted shape, on the device, against
/// the same sum on the host.
fn add_permuted(q: &dyn Queue, shape: &[usize], order: &[usize]) {
    let n: usize = shape.iter().product();
    let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let at = Tensor::from_slice(q, &a, shape)
        .unwrap()
        .permute(order)
        .unwrap();
    let pshape: Vec<usize> = order.iter().map(|&d| shape[d]).collect();
    let b: Vec<f32> = (0..n).map(|i| (i * 1000) as f32).collect();
    let bt = Tensor::from_slice(q, &b, &pshape).unwrap();
    let out = crate::call(q, "add", &[Some(&at), Some(&bt)], &[]).unwrap();
    let got = out[0].to_vec::<f32>(q).unwrap();
    let pa = permuted(&a, shape, order);
    for (lin, g) in got.iter().enumerate() {
        assert_eq!(
            *g,
            pa[lin] + b[lin],
            "element {lin} of {shape:?} permuted {order:?}"
        );
    }
}

#[test]
fn a_transposed_operand_walks_with_words_in_the_scalars() {
    let Some(q) = vulkan() else { return };
    // Rank 2, three tensors: 2 + 2 + 3 * 3 = 13 words and one scalar, under 32.
    add_permuted(&*q, &[33, 17], &[1, 0]);
    add_permuted(&*q, &[3, 4, 5], &[2, 0, 1]);
}

#[test]
fn a_rank_8_permuted_operand_walks_with_words_in_a_buffer() {
    let Some(q) = vulkan() else { return };
    // Rank 8, three tensors: 2 + 8 + 3 * 9 = 37 words, more than 128 bytes.
    add_permuted(&*q, &[2, 3, 2, 2, 3, 2, 2, 2], &[7, 6, 5, 4, 3, 2, 1, 0]);
    // Several ops in flight, each with its own layout buffer, then one sync.
    let shape = [2, 2, 3, 2, 2, 2, 2, 2];
    let n: usize = shape.iter().product();
    let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let at = Tensor::from_slice(&*q, &a, &shape).unwrap();
    let order = [1, 0, 3, 2, 5, 4, 7, 6];
    let mut acc = at.permute(&order).unwrap();
    for _ in 0..40 {
        let view = at.permute(&order).unwrap();
        acc = crate::call(&*q, "add", &[Some(&acc), Some(&view)], &[])
            .unwrap()
            .remove(0);
    }
    let got = acc.to_vec::<f32>(&*q).unwrap();
    let want = permuted(&a, &shape, &order);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(*g, 41.0 * w, "element {i}");
    }
}

/// The remap and scatter kernels (with their table and flag buffers, and sub-word outputs that
/// go through `pack`) on Vulkan, against values computed by hand; under the Khronos validation
/// layer in the test command.
#[test]
fn remaps_and_scatters_bind_their_tables_and_flags() {
    let Some(q) = vulkan() else { return };
    let q = &*q;
    let x = Tensor::from_slice(q, &[1u8, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
    let pads = [
        (
            "pads".to_string(),
            anyaccel_hal::AttrValue::Ints(vec![2, 1, 0, 1]),
        ),
        (
            "mode".to_string(),
            anyaccel_hal::AttrValue::Str("reflect".into()),
        ),
    ];
    let out = crate::call(q, "pad", &[Some(&x)], &pads).unwrap();
    assert_eq!(out[0].shape(), [3, 6]);
    assert_eq!(
        out[0].to_vec::<u8>(q).unwrap(),
        [3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2]
    );
    let diag = [("diagonal".to_string(), anyaccel_hal::AttrValue::Int(-1))];
    let low = crate::call(q, "tril", &[Some(&x)], &diag).unwrap();
    assert_eq!(low[0].to_vec::<u8>(q).unwrap(), [0, 0, 0, 4, 0, 0]);

    let idx = Tensor::from_slice(q, &[2i64, 2, 0], &[1, 3]).unwrap();
    let src = Tensor::from_slice(q, &[7u8, 8, 9], &[1, 3]).unwrap();
    let axis = [("axis".to_string(), anyaccel_hal::AttrValue::Int(1))];
    let s = crate::call(q, "scatter", &[Some(&x), Some(&idx), Some(&src)], &axis).unwrap();
    // Row 1 is outside the index: a copy of x.
    assert_eq!(s[0].to_vec::<u8>(q).unwrap(), [9, 2, 8, 4, 5, 6]);
    let bad = Tensor::from_slice(q, &[0i64, 3, -1], &[1, 3]).unwrap();
    // The call succeeds; the error comes back at the queue's next synchronization.
    crate::call(q, "scatter", &[Some(&x), Some(&bad), Some(&src)], &axis).unwrap();
    let e = q.finish().unwrap_err();
    assert_eq!(e.code(), anyaccel_hal::ErrorCode::OutOfBounds);
    assert!(
        e.message()
            .contains("index 3 out of range 0..3 along axis 1"),
        "{e}"
    );
}
