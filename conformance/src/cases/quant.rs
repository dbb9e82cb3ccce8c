//! Cases of the quantized ops (the `quant` profile): both bit widths, both quantize modes,
//! group sizes 32, 64, 128 and small odd ones, zero points given or not, views, offsets,
//! strided outputs and empty inputs.

use anyaccel_hal::{AttrValue, DType};

use super::{attr, input, Builder, Layout, Values, C};

const T: Layout = Layout::Transposed;
const S: Layout = Layout::Strided;
const O: Layout = Layout::Offset(3);

fn group(g: usize) -> (String, AttrValue) {
    attr("group_size", AttrValue::Int(g as i64))
}

/// The values drawn for quantized data of `d` (i8 or packed u8 nibbles).
fn data_values(d: DType, extreme: bool) -> Values {
    if d == DType::I8 && extreme {
        Values::IntExtreme
    } else {
        Values::IntSmall
    }
}

pub(super) fn quantize_cases(b: &mut Builder, dtypes: &[DType]) {
    // (tag, x shape, x layout, bits, group, symmetric, values, out layout)
    type Q = (
        &'static str,
        &'static [usize],
        Layout,
        i64,
        usize,
        bool,
        Values,
        Layout,
    );
    #[rustfmt::skip]
    let cases: &[Q] = &[
        ("b8_g32_sym", &[4, 64], C, 8, 32, true, Values::Normal, C),
        ("b8_g64_asym", &[3, 128], C, 8, 64, false, Values::Normal, C),
        ("b4_g32_sym", &[5, 64], C, 4, 32, true, Values::Normal, C),
        ("b4_g128_asym", &[2, 3, 256], C, 4, 128, false, Values::Normal, C),
        ("b8_g3_sym_t", &[6, 9], T, 8, 3, true, Values::Normal, S),
        ("b8_g1_asym_s", &[7, 5], S, 8, 1, false, Values::Normal, C),
        ("b4_g2_sym_ties", &[4, 32], O, 4, 2, true, Values::Ties, C),
        ("b4_g2_asym_ties", &[4, 32], C, 4, 2, false, Values::Ties, S),
        ("b8_g2_asym_ties", &[3, 16], C, 8, 2, false, Values::Ties, C),
        ("b8_g64_wide", &[2, 128], C, 8, 64, true, Values::Wide, C),
        ("b4_g64_asym_rank1", &[128], C, 4, 64, false, Values::Positive, C),
        ("b4_g32_asym_t", &[6, 64], T, 4, 32, false, Values::Normal, C),
        ("empty_rows", &[0, 64], C, 8, 32, true, Values::Normal, C),
        ("empty_k", &[3, 0], C, 4, 32, false, Values::Normal, C),
    ];
    for &d in dtypes {
        for &(tag, xs, xl, bits, g, sym, v, ol) in cases {
            if v == Values::Wide && d == DType::BF16 {
                continue;
            }
            b.push(
                "quantize",
                d.name().into(),
                &[d],
                tag,
                vec![input(d, xs, xl, v)],
                quantize_attrs(bits, g, sym),
                ol,
                false,
            );
        }
    }
    // More than 2^24 values.
    b.push(
        "quantize",
        "f32".into(),
        &[DType::F32],
        "large_b4_g128_asym",
        vec![input(DType::F32, &[LARGE_ROWS, 4096], C, Values::Normal)],
        quantize_attrs(4, 128, false),
        C,
        true,
    );
}

/// Rows of 4096 values that make a tensor of more than 2^24 elements.
const LARGE_ROWS: usize = 4097;

fn quantize_attrs(bits: i64, g: usize, sym: bool) -> Vec<(String, AttrValue)> {
    vec![
        attr("bits", AttrValue::Int(bits)),
        group(g),
        attr("symmetric", AttrValue::Int(sym as i64)),
    ]
}

pub(super) fn dequantize_cases(b: &mut Builder) {
    // (tag, q dtype, q shape, layout, group, zeros, out layout)
    type D = (
        &'static str,
        DType,
        &'static [usize],
        Layout,
        usize,
        bool,
        Layout,
    );
    #[rustfmt::skip]
    let cases: &[D] = &[
        ("i8_g32", DType::I8, &[4, 64], C, 32, false, C),
        ("i8_g64_zeros", DType::I8, &[3, 128], C, 64, true, S),
        ("i8_g3_t", DType::I8, &[6, 9], T, 3, true, C),
        ("u4_g32", DType::U8, &[4, 32], C, 32, false, C),
        ("u4_g128_zeros", DType::U8, &[2, 3, 64], O, 128, true, C),
        ("u4_g2_s", DType::U8, &[5, 8], S, 2, true, S),
        ("empty", DType::U8, &[0, 16], C, 32, true, C),
    ];
    for float in [DType::F32, DType::F16, DType::BF16] {
        for &(tag, qd, qs, ql, g, zeros, ol) in cases {
            let k = if qd == DType::U8 {
                qs[qs.len() - 1] * 2
            } else {
                qs[qs.len() - 1]
            };
            let mut ps = qs.to_vec();
            *ps.last_mut().expect("rank >= 1") = k / g;
            let mut inputs = vec![
                input(qd, qs, ql, data_values(qd, true)),
                input(float, &ps, C, Values::Normal),
            ];
            if zeros {
                inputs.push(input(qd, &ps, C, data_values(qd, false)));
            }
            b.push(
                "dequantize",
                format!("{}_to_{}", qd.name(), float.name()),
                &[float],
                tag,
                inputs,
                vec![group(g)],
                ol,
                false,
            );
        }
    }
    b.push(
        "dequantize",
        "i8_to_f32".into(),
        &[DType::F32],
        "large_g64_zeros",
        vec![
            input(DType::I8, &[LARGE_ROWS, 4096], C, Values::IntExtreme),
            input(DType::F32, &[LARGE_ROWS, 64], C, Values::Normal),
            input(DType::I8, &[LARGE_ROWS, 64], C, Values::IntSmall),
        ],
        vec![group(64)],
        C,
        true,
    );
}

pub(super) fn matmul_wq_cases(b: &mut Builder, dtypes: &[DType]) {
    // (tag, x shape, x layout, w dtype, N, group, zeros, w layout, out layout)
    type W = (
        &'static str,
        &'static [usize],
        Layout,
        DType,
        usize,
        usize,
        bool,
        Layout,
        Layout,
    );
    #[rustfmt::skip]
    let cases: &[W] = &[
        ("m1_i8_g32", &[1, 256], C, DType::I8, 33, 32, false, C, C),
        ("m1_u4_g128", &[1, 256], C, DType::U8, 40, 128, false, C, C),
        ("m5_i8_g64_zeros", &[5, 128], C, DType::I8, 17, 64, true, C, S),
        ("m4_u4_g64_zeros", &[4, 192], O, DType::U8, 9, 64, true, C, C),
        ("rank3_u4_g32", &[2, 3, 96], C, DType::U8, 7, 32, false, T, C),
        ("xt_i8_g3", &[6, 9], T, DType::I8, 5, 3, true, T, C),
        ("m1_i8_k4096", &[1, 4096], C, DType::I8, 64, 128, false, C, C),
        ("empty_m", &[0, 64], C, DType::U8, 5, 32, false, C, C),
        ("empty_n", &[3, 64], C, DType::I8, 0, 32, true, C, C),
    ];
    for &d in dtypes {
        for &(tag, xs, xl, wd, n, g, zeros, wl, ol) in cases {
            let k = xs[xs.len() - 1];
            let stored = if wd == DType::U8 { k / 2 } else { k };
            let mut inputs = vec![
                input(d, xs, xl, Values::Normal),
                input(wd, &[n, stored], wl, data_values(wd, true)),
                input(d, &[n, k / g], C, Values::Scales),
            ];
            if zeros {
                inputs.push(input(wd, &[n, k / g], C, data_values(wd, false)));
            }
            b.push(
                "matmul_wq",
                d.name().into(),
                &[d],
                &format!("{}.{tag}", if wd == DType::U8 { "u4" } else { "i8" }),
                inputs,
                vec![group(g)],
                ol,
                false,
            );
        }
    }
    // A weight of more than 2^24 values, batch 1.
    b.push(
        "matmul_wq",
        "f32".into(),
        &[DType::F32],
        "i8.large_m1_g128",
        vec![
            input(DType::F32, &[1, 4096], C, Values::Normal),
            input(DType::I8, &[LARGE_ROWS, 4096], C, Values::IntSmall),
            input(DType::F32, &[LARGE_ROWS, 32], C, Values::Scales),
        ],
        vec![group(128)],
        C,
        true,
    );
}

pub(super) fn matmul_i8_cases(b: &mut Builder) {
    // (tag, M, K, N, a layout, b layout, out dtype, row scale, col scale, out layout)
    type M = (
        &'static str,
        usize,
        usize,
        usize,
        Layout,
        Layout,
        DType,
        bool,
        bool,
        Layout,
    );
    #[rustfmt::skip]
    let cases: &[M] = &[
        ("m5_k7_n9", 5, 7, 9, C, C, DType::I32, false, false, C),
        ("m16_k300_n24", 16, 300, 24, C, C, DType::I32, false, false, S),
        ("views", 6, 33, 10, T, T, DType::I32, false, false, C),
        ("offset", 4, 64, 5, Layout::Offset(5), S, DType::I32, false, false, C),
        ("m1_k4096_n32", 1, 4096, 32, C, C, DType::I32, false, false, C),
        ("f32_both", 7, 40, 11, C, C, DType::F32, true, true, C),
        ("f32_row", 3, 16, 8, C, T, DType::F32, true, false, S),
        ("f32_col", 3, 16, 8, C, C, DType::F32, false, true, C),
        ("f32_none", 4, 20, 6, C, C, DType::F32, false, false, C),
        ("f16_both", 5, 64, 9, C, C, DType::F16, true, true, C),
        ("bf16_both", 5, 64, 9, T, C, DType::BF16, true, true, C),
        ("k0", 3, 0, 4, C, C, DType::I32, false, false, C),
        ("empty_m", 0, 8, 4, C, C, DType::F32, true, true, C),
    ];
    for &(tag, m, k, n, al, bl, od, rs, cs, ol) in cases {
        for v in [Values::IntSmall, Values::IntExtreme] {
            let mut inputs = vec![
                input(DType::I8, &[m, k], al, v),
                input(DType::I8, &[k, n], bl, v),
            ];
            inputs.push(if rs {
                input(DType::F32, &[m], C, Values::Unit)
            } else {
                None
            });
            if cs {
                inputs.push(input(DType::F32, &[n], C, Values::Unit));
            }
            b.push(
                "matmul_i8",
                format!("i8_to_{}", od.name()),
                &[od],
                &format!(
                    "{tag}.{}",
                    if v == Values::IntSmall {
                        "small"
                    } else {
                        "extreme"
                    }
                ),
                inputs,
                vec![attr("dtype", AttrValue::Str(od.name().into()))],
                ol,
                false,
            );
        }
    }
    // b of more than 2^24 values.
    b.push(
        "matmul_i8",
        "i8_to_i32".into(),
        &[DType::I32],
        "large_m1_k4096",
        vec![
            input(DType::I8, &[1, 4096], C, Values::IntExtreme),
            input(DType::I8, &[4096, LARGE_ROWS], C, Values::IntExtreme),
        ],
        vec![attr("dtype", AttrValue::Str("i32".into()))],
        C,
        true,
    );
}
