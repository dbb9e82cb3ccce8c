//! Tests of the shared C kernels' plumbing (layouts, program text, cache keys) and, on an OpenCL
//! device where one is installed, of `common.h`'s conversions against the host's (`half`): the
//! bit-work f16 conversions that CUDA uses, bf16 rounding, the one-rounding integer and f64
//! conversions, and arange without doubles. The ops themselves are checked by the conformance
//! suite (`anyaccel conformance --device opencl:0`).
//!
//! The device tests skip (saying so) when OpenCL is unavailable, unless `ANYACCEL_REQUIRE`
//! names `opencl`.

use std::sync::Arc;

use bytemuck::Pod;

use anyaccel_hal::{
    bf16, f16, AttrValue, DType, Device, Dialect, ErrorCode, KernelArg, KernelSource, LaunchDims,
    Queue, Tensor,
};

use super::{Family, KernelSpec, Layouts, COMMON, PRELUDE_OPENCL};
use crate::convert;

fn opencl() -> Option<Arc<dyn Device>> {
    anyaccel_hal::testing::device_or_skip(&anyaccel_opencl::OpenClBackend)
}

/// The OpenCL prelude, common.h and `body`, built with `options`, entry `t`.
fn program(body: &str, options: &str) -> KernelSource {
    KernelSource::OpenClC {
        source: format!("{PRELUDE_OPENCL}\n{COMMON}\n{body}"),
        entry: "t".into(),
        options: format!("{options} -cl-fp32-correctly-rounded-divide-sqrt"),
    }
}

fn upload<T: Pod>(d: &dyn Device, q: &dyn Queue, v: &[T]) -> anyaccel_hal::Buffer {
    let b = d.alloc(std::mem::size_of_val(v)).unwrap();
    q.write(&b.whole(), bytemuck::cast_slice(v)).unwrap();
    b
}

fn download<T: Pod>(q: &dyn Queue, b: &anyaccel_hal::Buffer) -> Vec<T> {
    let mut raw = vec![0u8; b.size()];
    q.read(&b.whole(), &mut raw).unwrap();
    bytemuck::pod_collect_to_vec(&raw)
}

/// Runs kernel `t(out, in)` over every element of `input`.
fn map<I: Pod, O: Pod>(d: &dyn Device, body: &str, options: &str, input: &[I]) -> Vec<O> {
    let q = d.create_queue().unwrap();
    let k = d.compile(&program(body, options)).unwrap();
    let inp = upload(d, &*q, input);
    let out = d.alloc(input.len() * std::mem::size_of::<O>()).unwrap();
    q.launch(
        &k,
        LaunchDims::linear(input.len() as u64),
        &[
            KernelArg::Buffer(out.whole()),
            KernelArg::Buffer(inp.whole()),
        ],
    )
    .unwrap();
    download(&*q, &out)
}

#[test]
fn collapse_merges_what_every_operand_walks_contiguously() {
    let c = |shape: &[usize]| anyaccel_hal::contiguous_strides(shape);
    // Two contiguous operands: one dimension.
    let l = Layouts::new(&[2, 3, 4])
        .with(c(&[2, 3, 4]), 0)
        .with(c(&[2, 3, 4]), 5)
        .collapse();
    assert_eq!(l.shape.as_slice(), [24]);
    assert_eq!(l.ops[0].0.as_slice(), [1]);
    assert_eq!((l.ops[1].0.as_slice(), l.ops[1].1), (&[1][..], 5));
    // A transposed operand keeps two dimensions.
    let l = Layouts::new(&[3, 4])
        .with(c(&[3, 4]), 0)
        .with(vec![1, 3], 0)
        .collapse();
    assert_eq!(l.shape.as_slice(), [3, 4]);
    assert_eq!(l.ops[1].0.as_slice(), [1, 3]);
    // Size-1 dimensions go; a broadcast (zero-stride) row stays apart from the contiguous one.
    let l = Layouts::new(&[4, 1, 7])
        .with(c(&[4, 1, 7]), 0)
        .with(vec![0, 0, 1], 0)
        .collapse();
    assert_eq!(l.shape.as_slice(), [4, 7]);
    assert_eq!(l.ops[1].0.as_slice(), [0, 1]);
    // A scalar: rank 0.
    let l = Layouts::new(&[]).with(vec![], 3).collapse();
    assert_eq!((l.rank(), l.ops[0].1), (0, 3));
    // Too many dimensions for the kernels' Lay.
    let shape = [2usize; 9];
    let strides: Vec<usize> = (0..9).map(|d| 1 << (2 * (8 - d))).collect();
    let e = Layouts::new(&shape)
        .with(strides, 0)
        .collapse()
        .lay("add")
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unsupported);
    assert!(e.message().contains("rank 9"), "{e}");
}

#[test]
fn programs_per_dialect() {
    let spec = KernelSpec::new(Family::Elementwise, "ew_binary")
        .flag("EW_BINARY")
        .flag("OP_ADD")
        .def("XT", "f32");
    let (cl, entry) = spec.program(&Dialect::OpenClC).unwrap();
    assert_eq!(entry, "ew_binary");
    assert!(cl.starts_with(PRELUDE_OPENCL));
    assert!(cl.contains(COMMON) && cl.contains("KERNEL void ew_binary"));
    let (cu, _) = spec.program(&Dialect::Cuda).unwrap();
    assert!(cu.contains("extern \"C\" __global__") && cu.contains(COMMON));
    assert!(!cu.contains("vload_half"));
    match spec.source(&Dialect::Cuda).unwrap() {
        KernelSource::Cuda { options, entry, .. } => {
            assert_eq!(options, vec!["-DEW_BINARY", "-DOP_ADD", "-DXT=f32"]);
            assert_eq!(entry, "ew_binary");
        }
        other => panic!("expected CUDA source, got {:?}", other.dialect()),
    }
    match spec.source(&Dialect::OpenClC).unwrap() {
        KernelSource::OpenClC { options, .. } => {
            assert!(
                options.starts_with("-DEW_BINARY -DOP_ADD -DXT=f32"),
                "{options}"
            );
            assert!(options.contains("-cl-fp32-correctly-rounded-divide-sqrt"));
            assert!(!options.contains("fast-relaxed"));
        }
        other => panic!("expected OpenCL C, got {:?}", other.dialect()),
    }
    let e = spec.program(&Dialect::Wgsl).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unsupported);
    assert_ne!(
        spec.cache_key(&Dialect::OpenClC),
        spec.cache_key(&Dialect::Cuda)
    );
    assert_ne!(
        spec.cache_key(&Dialect::OpenClC),
        spec.clone().def("RANK", 1).cache_key(&Dialect::OpenClC)
    );
    // The key spells out the entry and the `-D` arguments of the options, in order.
    let key = spec.clone().flag("BARE").cache_key(&Dialect::OpenClC);
    let args = spec
        .clone()
        .flag("BARE")
        .define_args()
        .map(|d| format!("-D{d}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(key, format!("clang:opencl-c:{} {args}", spec.entry));
    assert!(key.ends_with(" -DBARE"), "{key}");
    // The options of each dialect carry the same definitions; an empty value is a bare flag.
    let spec = KernelSpec::new(Family::Elementwise, "ew_binary")
        .def("OT", "f32")
        .def("EMPTY", "")
        .def_slot("X", "_FLOAT", 1)
        .flag_upper("OP_", "add");
    let pairs: Vec<_> = spec.defines().collect();
    assert_eq!(
        pairs,
        [
            ("OT", "f32"),
            ("EMPTY", ""),
            ("X_FLOAT", "1"),
            ("OP_ADD", "")
        ]
    );
    match spec.source(&Dialect::Cuda).unwrap() {
        KernelSource::Cuda { options, .. } => {
            assert_eq!(options, ["-DOT=f32", "-DEMPTY", "-DX_FLOAT=1", "-DOP_ADD"])
        }
        other => panic!("{other:?}"),
    }
    match spec.source(&Dialect::OpenClC).unwrap() {
        KernelSource::OpenClC { options, .. } => assert_eq!(
            options,
            "-DOT=f32 -DEMPTY -DX_FLOAT=1 -DOP_ADD -cl-fp32-correctly-rounded-divide-sqrt"
        ),
        other => panic!("{other:?}"),
    }
}

/// Every f32 bit pattern's top 16 bits, with low bits of three kinds: scattered, an exact f16
/// tie (bit 12) and an exact bf16 tie (bit 15).
fn f32_sweep() -> Vec<f32> {
    let mut v = Vec::with_capacity(3 << 16);
    for hi in 0u32..1 << 16 {
        v.push(f32::from_bits(
            (hi << 16) | (hi.wrapping_mul(2_654_435_761) >> 16),
        ));
        v.push(f32::from_bits((hi << 16) | 0x1000));
        v.push(f32::from_bits((hi << 16) | 0x8000));
    }
    v.extend([
        65504.0,
        65519.996,
        65520.0,
        2f32.powi(-25),
        1.5 * 2f32.powi(-25),
    ]);
    v
}

fn same_float(got: f32, want: f32) -> bool {
    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
}

#[test]
fn half_conversions_match_the_host() {
    let Some(d) = opencl() else { return };
    let to_f32 = "KERNEL void t(GLOBAL float* o, GLOBAL const u16* h) { \
                  i64 i = GLOBAL_ID(0); o[i] = f16_to_f32_soft(h[i]); }";
    let halves: Vec<u16> = (0..=u16::MAX).collect();
    let got: Vec<f32> = map(&*d, to_f32, "", &halves);
    for (&h, &g) in halves.iter().zip(&got) {
        let want = f16::from_bits(h).to_f32();
        assert!(
            same_float(g, want),
            "f16 {h:#06x}: got {g:e}, expected {want:e}"
        );
    }
    // f32 -> f16 by bit work (CUDA's path, forced here with ANYACCEL_SOFT_HALF) and by the
    // prelude's vstore_half_rte; f32 -> bf16.
    let sweep = f32_sweep();
    let body = "KERNEL void t(GLOBAL u16* o, GLOBAL const float* x) { \
                i64 i = GLOBAL_ID(0); o[i] = CONVERT(x[i]); }";
    let soft: Vec<u16> = map(&*d, body, "-DCONVERT=f32_to_f16_soft", &sweep);
    let bf: Vec<u16> = map(&*d, body, "-DCONVERT=f32_to_bf16", &sweep);
    let store = "KERNEL void t(GLOBAL st_f16* o, GLOBAL const float* x) { \
                 i64 i = GLOBAL_ID(0); sv_f16(o, i, x[i]); }";
    let native: Vec<u16> = map(&*d, store, "", &sweep);
    for (i, &x) in sweep.iter().enumerate() {
        let want = f16::from_f32(x);
        for (what, got) in [("bit work", soft[i]), ("vstore_half_rte", native[i])] {
            let g = f16::from_bits(got);
            assert!(
                got == want.to_bits() || (g.is_nan() && want.is_nan()),
                "{what}: f32 {:#010x} ({x:e}) -> f16 {got:#06x}, expected {:#06x}",
                x.to_bits(),
                want.to_bits()
            );
        }
        let want = bf16::from_f32(x);
        let g = bf16::from_bits(bf[i]);
        assert!(
            bf[i] == want.to_bits() || (g.is_nan() && want.is_nan()),
            "f32 {:#010x} -> bf16 {:#06x}, expected {:#06x}",
            x.to_bits(),
            bf[i],
            want.to_bits()
        );
    }
}

#[test]
fn integers_and_doubles_round_once_to_16_bit_floats() {
    let Some(d) = opencl() else { return };
    if !d.caps().has_dtype(DType::F64) {
        eprintln!("skipped: {} has no f64", d.info().id);
        return;
    }
    // Integers whose f32 rounding would make a tie of the 16-bit rounding (2^24 + 2^16 + 1 to
    // bf16 is 2^24 + 2^17, not 2^24), and others; all exact in f64.
    let mut ints: Vec<i64> = vec![
        (1 << 24) + (1 << 16) + 1,
        -((1 << 24) + (1 << 16) + 1),
        2049 + 4096 * 1000,
        65519,
        65520,
        100_000,
        i32::MAX as i64,
        i32::MIN as i64,
        (1 << 52) + 3,
        0,
        -1,
    ];
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let shift = s % 52;
        ints.push(((s >> 11) as i64 >> shift) * if s & 1 == 0 { 1 } else { -1 });
    }
    for (conv, to) in [("ci_f16", DType::F16), ("ci_bf16", DType::BF16)] {
        let body = format!(
            "KERNEL void t(GLOBAL u16* o, GLOBAL const i64* x) {{ \
             i64 i = GLOBAL_ID(0); {conv}((GLOBAL void*)o, i, x[i]); }}"
        );
        let got: Vec<u16> = map(&*d, &body, "", &ints);
        for (&v, &g) in ints.iter().zip(&got) {
            let want = match to {
                DType::F16 => convert::f16_from_i64(v).to_bits(),
                _ => convert::bf16_from_i64(v).to_bits(),
            };
            assert_eq!(g, want, "{conv}({v}): got {g:#06x}, expected {want:#06x}");
        }
    }
    // Doubles just off the halfway points of f32 (where rounding through f32 goes wrong).
    let mut doubles = Vec::new();
    for k in 0..5000u32 {
        let f = f32::from_bits(0x3380_0000 + (k as u64 * 0x0010_3457 % 0x0c00_0000) as u32);
        let next = f32::from_bits(f.to_bits() + 1);
        let mid = (f as f64 + next as f64) / 2.0;
        doubles.extend([mid, mid * (1.0 + 1e-15), mid * (1.0 - 1e-15), -mid]);
    }
    for (conv, to) in [("cd_f16", DType::F16), ("cd_bf16", DType::BF16)] {
        let body = format!(
            "KERNEL void t(GLOBAL u16* o, GLOBAL const double* x) {{ \
             i64 i = GLOBAL_ID(0); {conv}((GLOBAL void*)o, i, x[i]); }}"
        );
        let got: Vec<u16> = map(&*d, &body, "", &doubles);
        for (&v, &g) in doubles.iter().zip(&got) {
            let want = match to {
                DType::F16 => convert::f16_from_f64(v).to_bits(),
                _ => convert::bf16_from_f64(v).to_bits(),
            };
            assert_eq!(g, want, "{conv}({v:e}): got {g:#06x}, expected {want:#06x}");
        }
    }
}

#[test]
fn arange_without_doubles_keeps_48_bits() {
    let Some(d) = opencl() else { return };
    let q = d.create_queue().unwrap();
    // The pairs path, as a device without doubles gets it.
    let spec = KernelSpec::new(Family::Elementwise, "ew_arange")
        .flag("EW_ARANGE")
        .def("OT", "f32")
        .def("O_FLOAT", 1)
        .def("O_F32", 1)
        .flag("ARANGE_PAIRS")
        .flag("ANYACCEL_NO_FP64")
        .def("RANK", 1)
        .def("NOPS", 1);
    let k = d.compile(&spec.source(&Dialect::OpenClC).unwrap()).unwrap();
    let pair = |v: f64| {
        let hi = v as f32;
        ((hi.to_bits() as u64) << 32) | ((v - hi as f64) as f32).to_bits() as u64
    };
    for (start, step, n) in [(-3.0, 0.1, 100_000usize), (1e6 / 3.0, -1.0 / 7.0, 50_000)] {
        let out = d.alloc(n * 4).unwrap();
        let lay = Layouts::new(&[n]).with(vec![1], 0).lay("arange").unwrap();
        q.launch(
            &k,
            LaunchDims::linear(n as u64),
            &[
                KernelArg::Buffer(out.whole()),
                lay.arg(),
                KernelArg::scalar(n as i64),
                KernelArg::scalar(pair(start)),
                KernelArg::scalar(pair(step)),
            ],
        )
        .unwrap();
        let got: Vec<f32> = download(&*q, &out);
        // Rounded once from a value within 2^-44 of the terms' size: the f32 result of the f64
        // formula, except where the sum cancels far below its terms (a residue of 1e-16 where
        // f64 gives 0, which no tolerance notices).
        let bad = got
            .iter()
            .enumerate()
            .filter(|&(i, &g)| {
                let exact = start + i as f64 * step;
                let size = start.abs() + (i as f64 * step).abs();
                g != exact as f32 && (g as f64 - exact).abs() > size * 2f64.powi(-44)
            })
            .count();
        let rounded = got
            .iter()
            .enumerate()
            .filter(|&(i, &g)| g == (start + i as f64 * step) as f32)
            .count();
        assert!(
            rounded + 2 >= n,
            "arange({start}, {step}): {} of {n} differ",
            n - rounded
        );
        assert_eq!(
            bad, 0,
            "arange({start}, {step}): {bad} of {n} off by more than 2^-44"
        );
    }
}

#[test]
fn out_of_range_index_names_the_index() {
    let Some(d) = opencl() else { return };
    let q = d.create_queue().unwrap();
    let x =
        Tensor::from_slice(&*q, &(0..20).map(|v| v as f32).collect::<Vec<_>>(), &[4, 5]).unwrap();
    let idx = Tensor::from_slice(&*q, &[1i64, 9, 2], &[3]).unwrap();
    // The call succeeds; the error comes back at the queue's next synchronization, once.
    crate::index_select(&*q, &x, 0, &idx).unwrap();
    let e = q.finish().unwrap_err();
    assert_eq!(e.code(), ErrorCode::OutOfBounds);
    assert_eq!(
        e.message(),
        "index_select: index 9 out of range 0..4 along axis 0"
    );
    let ok = Tensor::from_slice(&*q, &[3i32, 0], &[2]).unwrap();
    let y = crate::index_select(&*q, &x, 0, &ok).unwrap();
    let want: Vec<f32> = (15..20).chain(0..5).map(|v| v as f32).collect();
    assert_eq!(y.to_vec::<f32>(&*q).unwrap(), want);
}

#[test]
fn kernels_compile_once_per_specialisation() {
    let Some(d) = opencl() else { return };
    let q = d.create_queue().unwrap();
    let a = Tensor::from_slice(&*q, &[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let b = Tensor::from_slice(&*q, &[0.5f32, 0.25, -1.0], &[3]).unwrap();
    let s = crate::add(&*q, &a, &b).unwrap();
    let cached = d.kernel_cache().len();
    let s2 = crate::add(&*q, &s, &b).unwrap();
    assert_eq!(
        d.kernel_cache().len(),
        cached,
        "a second add compiled again"
    );
    assert_eq!(s2.to_vec::<f32>(&*q).unwrap(), vec![2.0, 2.5, 1.0]);
    // Another op is another kernel.
    crate::call(
        &*q,
        "sum",
        &[Some(&a)],
        &[("axes".into(), AttrValue::Ints(vec![]))],
    )
    .unwrap();
    assert!(d.kernel_cache().len() > cached);
}

#[test]
fn an_exact_lay_holds_its_rank_and_operands_only() {
    let l = Layouts::new(&[3, 4])
        .with(vec![4usize, 1], 0)
        .with(vec![1usize, 3], 7)
        .collapse();
    let lay = l.lay("add").unwrap();
    let words = |arg: KernelArg| match arg {
        KernelArg::Bytes(b) => b
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect::<Vec<_>>(),
        _ => panic!("a Lay is passed by value"),
    };
    // shape[2], st[2][2], off[2].
    assert_eq!(words(lay.arg_exact(2, 2)), [3, 4, 4, 1, 1, 3, 0, 7]);
    // The full struct: shape[8], st[4][8], off[4].
    assert_eq!(words(lay.arg()).len(), 8 + 4 * 8 + 4);
    // Rank 0 (a scalar) still passes one dimension.
    let s = Layouts::new(&[]).with(vec![], 5).collapse();
    assert_eq!(words(s.lay("fill").unwrap().arg_exact(0, 1)), [1, 0, 5]);
}
