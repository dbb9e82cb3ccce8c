//! Burn's module ops (convolution, pooling, interpolation, attention) on anyaccel's vision and
//! attention ops, and their gradients on anyaccel's backward ops.

use anyaccel::ops::ConvOptions as AConv;
use anyaccel::{AttrValue, DType};
use burn_backend::ops::{
    ConvOptions, ConvTransposeOptions, DeformConv2dBackward, DeformConvOptions, InterpolateMode,
    InterpolateOptions, MaxPool2dBackward, MaxPool2dWithIndices, ModuleOps,
};
use burn_backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn_std::{AttentionModuleOptions, IntDType};

use crate::tensor::{fail, ints, ok, unsupported, AnyaccelTensor};
use crate::Anyaccel;

/// anyaccel's convolution options of Burn's: the padding both sides share, and the extra
/// padding of one side as `pad` counts (last axis first) where Burn pads unevenly.
fn conv_options<const N: usize>(o: &ConvOptions<N>) -> (AConv, Option<Vec<i64>>) {
    let mut c = AConv::default();
    let mut extra = vec![0i64; 2 * N];
    for i in 0..N {
        let (lo, hi) = o.padding[i];
        let m = lo.min(hi);
        c.stride[i] = o.stride[i];
        c.padding[i] = m;
        c.dilation[i] = o.dilation[i];
        // pads[2 * (N - 1 - i)] pads spatial dim i before, the next entry after.
        extra[2 * (N - 1 - i)] = (lo - m) as i64;
        extra[2 * (N - 1 - i) + 1] = (hi - m) as i64;
    }
    c.groups = o.groups;
    (c, extra.iter().any(|&p| p != 0).then_some(extra))
}

/// `x` padded with zeros by `pads` (negative counts crop).
fn pad(op: &str, x: &AnyaccelTensor, pads: &[i64]) -> AnyaccelTensor {
    x.call(
        op,
        "pad",
        &[Some(&x.t)],
        &[
            ("pads", AttrValue::Ints(pads.to_vec())),
            ("mode", AttrValue::Str("constant".to_string())),
        ],
    )
}

/// The forward convolution of `N` spatial dims, uneven padding applied first.
fn conv_forward<const N: usize>(
    op: &str,
    x: AnyaccelTensor,
    weight: AnyaccelTensor,
    bias: Option<AnyaccelTensor>,
    options: &ConvOptions<N>,
) -> AnyaccelTensor {
    let (o, extra) = conv_options(options);
    let x = match extra {
        Some(p) => pad(op, &x, &p),
        None => x,
    };
    let q = x.queue();
    let b = bias.as_ref().map(|b| &b.t);
    let t = if N == 1 {
        anyaccel::ops::conv1d(q, &x.t, &weight.t, b, &o)
    } else {
        anyaccel::ops::conv2d(q, &x.t, &weight.t, b, &o)
    };
    x.with(ok(op, t))
}

/// The input gradient of a convolution of `N` spatial dims.
fn conv_x_backward<const N: usize>(
    op: &str,
    x: AnyaccelTensor,
    weight: AnyaccelTensor,
    grad: AnyaccelTensor,
    options: &ConvOptions<N>,
) -> AnyaccelTensor {
    let (o, extra) = conv_options(options);
    let mut size = x.dims().to_vec();
    if let Some(p) = &extra {
        for i in 0..N {
            size[2 + i] += (p[2 * (N - 1 - i)] + p[2 * (N - 1 - i) + 1]) as usize;
        }
    }
    let t = anyaccel::ops::conv_backward_input(x.queue(), &grad.t, &weight.t, &size, &o);
    let dx = x.with(ok(op, t));
    match extra {
        // The gradient of the padded input, cropped to x.
        Some(p) => pad(op, &dx, &p.iter().map(|v| -v).collect::<Vec<_>>()),
        None => dx,
    }
}

/// The weight gradient of a convolution of `N` spatial dims.
fn conv_weight_backward<const N: usize>(
    op: &str,
    x: AnyaccelTensor,
    weight: AnyaccelTensor,
    grad: AnyaccelTensor,
    options: &ConvOptions<N>,
) -> AnyaccelTensor {
    let (o, extra) = conv_options(options);
    let x = match extra {
        Some(p) => pad(op, &x, &p),
        None => x,
    };
    let t = anyaccel::ops::conv_backward_weight(x.queue(), &grad.t, &x.t, weight.dims(), &o);
    x.with(ok(op, t))
}

fn pool_attrs(
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    ceil_mode: bool,
) -> Vec<(&'static str, AttrValue)> {
    vec![
        ("kernel_size", ints(&kernel)),
        ("stride", ints(&stride)),
        ("padding", ints(&padding)),
        ("ceil_mode", AttrValue::Int(ceil_mode as i64)),
    ]
}

fn interpolate_mode(op: &str, o: &InterpolateOptions) -> &'static str {
    match o.mode {
        InterpolateMode::Nearest => {
            if o.align_corners {
                unsupported(op, "nearest with align_corners");
            }
            "nearest"
        }
        InterpolateMode::Bilinear => "bilinear",
        InterpolateMode::Bicubic => "bicubic",
        ref m => unsupported(
            op,
            &format!("mode {m:?} (anyaccel has nearest, bilinear and bicubic)"),
        ),
    }
}

impl ModuleOps<Self> for Anyaccel {
    fn conv1d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        conv_forward("conv1d", x, weight, bias, &options)
    }

    fn conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        conv_forward("conv2d", x, weight, bias, &options)
    }

    fn conv1d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        conv_x_backward("conv1d_x_backward", x, weight, output_grad, &options)
    }

    fn conv1d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        conv_weight_backward("conv1d_weight_backward", x, weight, output_grad, &options)
    }

    fn conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        conv_x_backward("conv2d_x_backward", x, weight, output_grad, &options)
    }

    fn conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        conv_weight_backward("conv2d_weight_backward", x, weight, output_grad, &options)
    }

    fn deform_conv2d(
        _x: FloatTensor<Self>,
        _offset: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _mask: Option<FloatTensor<Self>>,
        _bias: Option<FloatTensor<Self>>,
        _options: DeformConvOptions<2>,
    ) -> FloatTensor<Self> {
        unsupported("deform_conv2d", "the op set has no deformable convolution")
    }

    fn deform_conv2d_backward(
        _x: FloatTensor<Self>,
        _offset: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _mask: Option<FloatTensor<Self>>,
        _bias: Option<FloatTensor<Self>>,
        _output_grad: FloatTensor<Self>,
        _options: DeformConvOptions<2>,
    ) -> DeformConv2dBackward<Self> {
        unsupported(
            "deform_conv2d_backward",
            "the op set has no deformable convolution",
        )
    }

    fn conv3d(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _bias: Option<FloatTensor<Self>>,
        _options: ConvOptions<3>,
    ) -> FloatTensor<Self> {
        unsupported("conv3d", "the op set has 1-D and 2-D convolutions")
    }

    fn conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        let op = "conv_transpose2d";
        let o = AConv {
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
            groups: options.groups,
        };
        let t = anyaccel::ops::conv_transpose2d(
            x.queue(),
            &x.t,
            &weight.t,
            bias.as_ref().map(|b| &b.t),
            &o,
            options.padding_out,
        );
        x.with(ok(op, t))
    }

    fn conv_transpose3d(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _bias: Option<FloatTensor<Self>>,
        _options: ConvTransposeOptions<3>,
    ) -> FloatTensor<Self> {
        unsupported(
            "conv_transpose3d",
            "the op set has 1-D and 2-D transposed convolutions",
        )
    }

    fn avg_pool2d(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        let mut attrs = pool_attrs(kernel_size, stride, padding, ceil_mode);
        attrs.push((
            "count_include_pad",
            AttrValue::Int(count_include_pad as i64),
        ));
        x.call("avg_pool2d", "avg_pool2d", &[Some(&x.t)], &attrs)
    }

    fn avg_pool2d_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        let mut attrs = pool_attrs(kernel_size, stride, padding, ceil_mode);
        attrs.push((
            "count_include_pad",
            AttrValue::Int(count_include_pad as i64),
        ));
        attrs.push(("input_size", ints(x.dims())));
        grad.call(
            "avg_pool2d_backward",
            "avg_pool2d_backward",
            &[Some(&grad.t)],
            &attrs,
        )
    }

    fn adaptive_avg_pool2d(x: FloatTensor<Self>, output_size: [usize; 2]) -> FloatTensor<Self> {
        x.call(
            "adaptive_avg_pool2d",
            "adaptive_avg_pool2d",
            &[Some(&x.t)],
            &[("output_size", ints(&output_size))],
        )
    }

    fn adaptive_avg_pool2d_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        grad.call(
            "adaptive_avg_pool2d_backward",
            "adaptive_avg_pool2d_backward",
            &[Some(&grad.t)],
            &[("input_size", ints(x.dims()))],
        )
    }

    fn adaptive_avg_pool3d(x: FloatTensor<Self>, output_size: [usize; 3]) -> FloatTensor<Self> {
        x.call(
            "adaptive_avg_pool3d",
            "adaptive_avg_pool3d",
            &[Some(&x.t)],
            &[("output_size", ints(&output_size))],
        )
    }

    fn adaptive_avg_pool3d_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        grad.call(
            "adaptive_avg_pool3d_backward",
            "adaptive_avg_pool3d_backward",
            &[Some(&grad.t)],
            &[("input_size", ints(x.dims()))],
        )
    }

    fn max_pool2d(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        Self::max_pool2d_with_indices(
            x,
            kernel_size,
            stride,
            padding,
            dilation,
            ceil_mode,
            IntDType::I64,
        )
        .output
    }

    fn max_pool2d_with_indices(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
        indices_dtype: IntDType,
    ) -> MaxPool2dWithIndices<Self> {
        let op = "max_pool2d_with_indices";
        let mut attrs = pool_attrs(kernel_size, stride, padding, ceil_mode);
        attrs.push(("dilation", ints(&dilation)));
        let mut out = x.call_all(op, "max_pool2d", &[Some(&x.t)], &attrs);
        let indices = out.pop().unwrap_or_else(|| fail(op, "no indices output"));
        let output = out.pop().unwrap_or_else(|| fail(op, "no output"));
        let dt = crate::tensor::int_dtype(op, indices_dtype);
        MaxPool2dWithIndices::new(output, indices.cast(op, dt))
    }

    fn max_pool2d_with_indices_backward(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
        output_grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
    ) -> MaxPool2dBackward<Self> {
        let op = "max_pool2d_with_indices_backward";
        let mut attrs = pool_attrs(kernel_size, stride, padding, ceil_mode);
        attrs.push(("dilation", ints(&dilation)));
        attrs.push(("input_size", ints(x.dims())));
        let idx = indices.cast(op, DType::I64);
        let g = output_grad.call(
            op,
            "max_pool2d_backward",
            &[Some(&output_grad.t), Some(&idx.t)],
            &attrs,
        );
        MaxPool2dBackward::new(g)
    }

    fn interpolate(
        x: FloatTensor<Self>,
        output_size: [usize; 2],
        options: InterpolateOptions,
    ) -> FloatTensor<Self> {
        let op = "interpolate";
        let mode = interpolate_mode(op, &options);
        x.call(
            op,
            "interpolate",
            &[Some(&x.t)],
            &[
                ("size", ints(&output_size)),
                ("mode", AttrValue::Str(mode.to_string())),
                (
                    "align_corners",
                    AttrValue::Int(options.align_corners as i64),
                ),
            ],
        )
    }

    fn interpolate_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        _output_size: [usize; 2],
        options: InterpolateOptions,
    ) -> FloatTensor<Self> {
        let op = "interpolate_backward";
        let mode = interpolate_mode(op, &options);
        grad.call(
            op,
            "interpolate_backward",
            &[Some(&grad.t)],
            &[
                ("input_size", ints(x.dims())),
                ("mode", AttrValue::Str(mode.to_string())),
                (
                    "align_corners",
                    AttrValue::Int(options.align_corners as i64),
                ),
            ],
        )
    }

    fn attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        mask: Option<BoolTensor<Self>>,
        attn_bias: Option<FloatTensor<Self>>,
        options: AttentionModuleOptions,
    ) -> FloatTensor<Self> {
        let op = "attention";
        // Burn's bool mask marks the positions to leave out; anyaccel's marks those to keep. With
        // a bias too, both become one additive mask.
        let keep = mask.map(|m| m.unary(op, "logical_not"));
        let m = match (keep, attn_bias) {
            (None, None) => None,
            (Some(k), None) => Some(k),
            (None, Some(b)) => Some(b),
            (Some(k), Some(b)) => {
                let ninf = b.scalar(op, burn_backend::Scalar::Float(f64::NEG_INFINITY), b.dt());
                let zero = b.scalar(op, burn_backend::Scalar::Float(0.0), b.dt());
                let add = zero.call(
                    op,
                    "where",
                    &[Some(&k.t), Some(&zero.t), Some(&ninf.t)],
                    &[],
                );
                Some(b.binary(op, "add", &add))
            }
        };
        // Burn's causal mask is aligned to the end of the keys (a KV cache's rows).
        let mut attrs = vec![
            ("causal", AttrValue::Int(options.is_causal as i64)),
            ("causal_align", AttrValue::Str("bottom_right".to_string())),
        ];
        if let Some(s) = options.scale {
            attrs.push(("scale", AttrValue::Float(s)));
        }
        if let Some(c) = options.softcap {
            attrs.push(("softcap", AttrValue::Float(c)));
        }
        query.call(
            op,
            "attention",
            &[
                Some(&query.t),
                Some(&key.t),
                Some(&value.t),
                m.as_ref().map(|m| &m.t),
            ],
            &attrs,
        )
    }
}
