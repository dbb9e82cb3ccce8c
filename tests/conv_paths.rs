//! The CPU convolution's kernel paths (the direct kernel with its planes filled per task or all
//! at once, the output written in place or out of a frame, the input read in place; im2col and
//! `gemm` below four channels a group) against the contract's sum in f64, with infinities and
//! NaNs among the inputs. The conformance suite's cases are too small to reach some of them.

use anyaccel::hal::{Queue, Tensor};
use anyaccel::ops::{self, ConvOptions};

/// A convolution to check: batch, channels, output channels, input height and width, kernel,
/// stride, padding, dilation, groups.
#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    c: usize,
    o: usize,
    hw: [usize; 2],
    k: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    groups: usize,
}

impl Case {
    fn out(&self) -> [usize; 2] {
        std::array::from_fn(|d| {
            (self.hw[d] + 2 * self.pad[d] - self.dil[d] * (self.k[d] - 1) - 1) / self.stride[d] + 1
        })
    }
    fn options(&self) -> ConvOptions {
        ConvOptions {
            stride: self.stride,
            padding: self.pad,
            dilation: self.dil,
            groups: self.groups,
        }
    }
    /// Calls `f(n, oc, oy, ox, ci_global, iy, ix, ci_in_group, ky, kx)` for every term of the
    /// forward sum whose input position lies inside the input.
    fn terms(&self, mut f: impl FnMut([usize; 4], [usize; 3], [usize; 3])) {
        let [oh, ow] = self.out();
        let (cg, og) = (self.c / self.groups, self.o / self.groups);
        for n in 0..self.n {
            for oc in 0..self.o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for ci in 0..cg {
                            for ky in 0..self.k[0] {
                                for kx in 0..self.k[1] {
                                    let iy = (oy * self.stride[0] + ky * self.dil[0])
                                        .wrapping_sub(self.pad[0]);
                                    let ix = (ox * self.stride[1] + kx * self.dil[1])
                                        .wrapping_sub(self.pad[1]);
                                    if iy < self.hw[0] && ix < self.hw[1] {
                                        let ch = oc / og * cg + ci;
                                        f([n, oc, oy, ox], [ch, iy, ix], [ci, ky, kx]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Deterministic values in [-1, 1) with a few infinities and NaNs where `special`.
fn values(len: usize, seed: u64, special: bool) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|i| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            match (special, i % 97) {
                (true, 13) => f32::INFINITY,
                (true, 41) => f32::NEG_INFINITY,
                (true, 71) => f32::NAN,
                _ => v,
            }
        })
        .collect()
}

fn check(what: &str, case: &Case, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what} {case:?}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let w32 = w as f32;
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w32.is_infinite() {
            g == w32
        } else {
            (f64::from(g) - w).abs() <= 1e-4 + 1e-4 * w.abs()
        };
        assert!(ok, "{what} {case:?}: element {i} is {g}, expected {w}");
    }
}

fn run_case(q: &dyn Queue, case: &Case, special: bool) {
    let [oh, ow] = case.out();
    let [h, w] = case.hw;
    let cg = case.c / case.groups;
    let xs = [case.n, case.c, h, w];
    let ws = [case.o, cg, case.k[0], case.k[1]];
    let ys = [case.n, case.o, oh, ow];
    let xv = values(xs.iter().product(), 1, special);
    let wv = values(ws.iter().product(), 2, special);
    let gv = values(ys.iter().product(), 3, special);
    let x = Tensor::from_slice(q, &xv, &xs).unwrap();
    let wt = Tensor::from_slice(q, &wv, &ws).unwrap();
    let g = Tensor::from_slice(q, &gv, &ys).unwrap();
    let xi = |[ch, iy, ix]: [usize; 3], n: usize| ((n * case.c + ch) * h + iy) * w + ix;
    let wi =
        |oc: usize, [ci, ky, kx]: [usize; 3]| ((oc * cg + ci) * case.k[0] + ky) * case.k[1] + kx;
    let yi = |[n, oc, oy, ox]: [usize; 4]| ((n * case.o + oc) * oh + oy) * ow + ox;

    let mut y = vec![0f64; gv.len()];
    let mut dx = vec![0f64; xv.len()];
    let mut dw = vec![0f64; wv.len()];
    case.terms(|o, i, k| {
        let (xa, wa, ya) = (xi(i, o[0]), wi(o[1], k), yi(o));
        y[ya] += f64::from(xv[xa]) * f64::from(wv[wa]);
        dx[xa] += f64::from(gv[ya]) * f64::from(wv[wa]);
        dw[wa] += f64::from(gv[ya]) * f64::from(xv[xa]);
    });
    let opt = case.options();
    let got = ops::conv2d(q, &x, &wt, None, &opt).unwrap();
    check("conv2d", case, &got.to_vec::<f32>(q).unwrap(), &y);
    let got = ops::conv_backward_input(q, &g, &wt, &xs, &opt).unwrap();
    check(
        "conv2d_backward_input",
        case,
        &got.to_vec::<f32>(q).unwrap(),
        &dx,
    );
    let got = ops::conv_backward_weight(q, &g, &x, &ws, &opt).unwrap();
    check(
        "conv2d_backward_weight",
        case,
        &got.to_vec::<f32>(q).unwrap(),
        &dw,
    );
}

#[test]
fn every_cpu_convolution_path_computes_the_contracts_sum() {
    let rt = anyaccel::Runtime::new();
    let dev = rt.device("cpu:0").unwrap();
    let q = dev.create_queue().unwrap();
    let c = |n, c, o, hw, k, stride, pad, dil, groups| Case {
        n,
        c,
        o,
        hw,
        k,
        stride,
        pad,
        dil,
        groups,
    };
    let cases = [
        // Many images: planes filled per task; rows out of the frame (padding).
        c(6, 8, 12, [9, 11], [3, 3], [1, 1], [1, 1], [1, 1], 1),
        // Stride 2 and dilation: phase planes.
        c(5, 6, 9, [13, 10], [3, 2], [2, 2], [1, 0], [1, 2], 1),
        // One image: planes filled at once, blocks across tasks; output rows are the frame's.
        c(1, 16, 20, [7, 40], [1, 3], [1, 1], [0, 1], [1, 1], 1),
        // 1x1 over flat planes: the input read in place, the output written in place.
        c(2, 24, 17, [5, 23], [1, 1], [1, 1], [0, 0], [1, 1], 1),
        // Groups with four channels and more; and fewer (im2col and gemm).
        c(4, 16, 16, [6, 6], [3, 3], [1, 1], [2, 2], [2, 2], 2),
        c(3, 6, 6, [8, 8], [3, 3], [1, 1], [1, 1], [1, 1], 3),
        // Padding larger than the dilated kernel's reach: the input gradient's cropping.
        c(2, 8, 8, [5, 5], [2, 2], [1, 1], [2, 2], [1, 1], 1),
    ];
    for case in &cases {
        for special in [false, true] {
            run_case(&*q, case, special);
        }
    }
}

/// `max_pool2d_backward` and `max_pool1d_backward` with indices that no forward pool could give
/// (another window's element, out of the plane, negative): those contribute nothing, as
/// docs/ops.md says; the others add up where windows overlap.
#[test]
fn max_pool_backward_uses_only_indices_of_their_own_window() {
    use anyaccel::AttrValue;
    let rt = anyaccel::Runtime::new();
    let dev = rt.device("cpu:0").unwrap();
    let q = dev.create_queue().unwrap();
    let q: &dyn Queue = &*q;
    let ints = |v: &[i64]| AttrValue::Ints(v.to_vec());
    let attrs = |k: &[i64], input: &[i64]| {
        vec![
            ("kernel_size".to_string(), ints(k)),
            ("stride".to_string(), ints(&vec![1; k.len()])),
            ("input_size".to_string(), ints(input)),
        ]
    };
    // 3x3 input, 2x2 windows at stride 1: a 2x2 grad. Window (0, 0) names 4 (its own), window
    // (0, 1) names 0 (window (0, 0)'s), window (1, 0) names 4 (its own: added to the first),
    // window (1, 1) names 100 (outside the plane). A second plane names -1, then 5 (own), 9
    // (outside the plane) and 8 (own).
    let grad = Tensor::from_slice(q, &[1f32, 2., 3., 4., 5., 6., 7., 8.], &[1, 2, 2, 2]).unwrap();
    for it in [anyaccel::DType::I64, anyaccel::DType::I32] {
        let idx: Vec<i64> = vec![4, 0, 4, 100, -1, 5, 9, 8];
        let idx = match it {
            anyaccel::DType::I32 => {
                let v: Vec<i32> = idx.iter().map(|&i| i as i32).collect();
                Tensor::from_slice(q, &v, &[1, 2, 2, 2]).unwrap()
            }
            _ => Tensor::from_slice(q, &idx, &[1, 2, 2, 2]).unwrap(),
        };
        let dx = ops::call(
            q,
            "max_pool2d_backward",
            &[Some(&grad), Some(&idx)],
            &attrs(&[2, 2], &[1, 2, 3, 3]),
        )
        .unwrap();
        let got = dx[0].to_vec::<f32>(q).unwrap();
        let mut want = vec![0f32; 18];
        want[4] = 1. + 3.;
        want[9 + 5] = 6.;
        want[9 + 8] = 8.;
        assert_eq!(got, want, "indices {it}");
    }
    // 1-D: length 4, windows of 2 at stride 1: [0, 1], [1, 2], [2, 3].
    let grad = Tensor::from_slice(q, &[1f32, 2., 3.], &[1, 1, 3]).unwrap();
    let idx = Tensor::from_slice(q, &[1i64, 1, 1], &[1, 1, 3]).unwrap();
    let dx = ops::call(
        q,
        "max_pool1d_backward",
        &[Some(&grad), Some(&idx)],
        &attrs(&[2], &[1, 1, 4]),
    )
    .unwrap();
    assert_eq!(dx[0].to_vec::<f32>(q).unwrap(), [0., 3., 0., 0.]);

    // Windows that do not overlap (4x4, 2x2 at stride 2), written in place: window (0, 0)
    // names 5 (its own), (0, 1) names 1 (window (0, 0)'s), (1, 0) names 8 (its own, with a
    // gradient of -0.0, which the sum 0.0 + -0.0 makes +0.0), (1, 1) names 16 (outside).
    let grad = Tensor::from_slice(q, &[1f32, 2., -0., 4.], &[1, 1, 2, 2]).unwrap();
    let idx = Tensor::from_slice(q, &[5i64, 1, 8, 16], &[1, 1, 2, 2]).unwrap();
    let mut a = attrs(&[2, 2], &[1, 1, 4, 4]);
    a[1].1 = ints(&[2, 2]);
    let dx = ops::call(q, "max_pool2d_backward", &[Some(&grad), Some(&idx)], &a).unwrap();
    let got: Vec<u32> = dx[0]
        .to_vec::<f32>(q)
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let mut want = [0f32; 16];
    want[5] = 1.;
    assert_eq!(
        got,
        want.map(f32::to_bits),
        "every element +0.0 but the 5th"
    );
    // 1-D, windows [0, 1] and [2, 3]: 3 is the second window's own, 0 is not.
    let grad = Tensor::from_slice(q, &[1f32, 2.], &[1, 1, 2]).unwrap();
    let idx = Tensor::from_slice(q, &[1i64, 0], &[1, 1, 2]).unwrap();
    let mut a = attrs(&[2], &[1, 1, 4]);
    a[1].1 = ints(&[2]);
    let dx = ops::call(q, "max_pool1d_backward", &[Some(&grad), Some(&idx)], &a).unwrap();
    assert_eq!(dx[0].to_vec::<f32>(q).unwrap(), [0., 1., 0., 0.]);
}
