//! The geometry of a `conv1d` / `conv2d` call (docs/ops.md 8.11): validation of the shapes and
//! attributes, the output size, and the layouts lifted to two spatial dimensions (a `conv1d` is
//! a `conv2d` over a height of 1). Validation and every dialect's launcher read it.

use anyaccel_hal::{shape_str, Error, Result, TensorDesc};

use crate::attrs::Attrs;

fn invalid(msg: String) -> Error {
    Error::invalid_argument(msg)
}

/// What a convolution call computes, in two spatial dimensions (`[height, width]`; a `conv1d`
/// has height 1 everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    /// Spatial dimensions of the op: 1 or 2.
    pub spatial: usize,
    /// Batch, input channels, output channels, groups.
    pub n: usize,
    pub c: usize,
    pub o: usize,
    pub groups: usize,
    /// Input, kernel and output sizes.
    pub input: [usize; 2],
    pub kernel: [usize; 2],
    pub out: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

/// Which of a convolution's three computations a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConvPass {
    /// `conv1d/2d`: out [N, O, *] from x [N, C, *], weight and bias.
    Forward,
    /// `conv_transpose1d/2d` and `conv{1,2}d_backward_input`: an x-shaped result [N, C, *]
    /// from an output-shaped input [N, O, *], weight and (transposes only) bias.
    Data,
    /// `conv{1,2}d_backward_weight`: a weight-shaped result from grad [N, O, *] and x.
    Filter,
}

impl ConvPass {
    /// The shape of the result of a call of this pass over `g`.
    pub fn result_shape(self, g: &ConvGeom) -> Vec<usize> {
        match self {
            ConvPass::Forward => g.out_shape(),
            ConvPass::Data => g.in_shape(),
            ConvPass::Filter => g.weight_shape(),
        }
    }
}

/// `name` as a list of `spatial` values: absent gives `default`, one value is used for every
/// dimension (PyTorch's `_pair`), and each value must be at least `min`.
fn per_dim(
    op: &str,
    attrs: &Attrs<'_>,
    name: &str,
    spatial: usize,
    default: usize,
    min: i64,
) -> Result<[usize; 2]> {
    let v = attrs
        .ints_opt(name)?
        .unwrap_or_else(|| vec![default as i64]);
    let v = match v.len() {
        1 => vec![v[0]; spatial],
        n if n == spatial => v,
        n => {
            return Err(invalid(format!(
                "{op}: {name} has {n} values, expected 1 or {spatial}"
            )))
        }
    };
    let mut out = [1usize; 2];
    for (k, &x) in v.iter().enumerate() {
        if x < min {
            return Err(invalid(format!(
                "{op}: {name} is {v:?}, expected every value >= {min}"
            )));
        }
        out[2 - spatial + k] = usize::try_from(x)
            .map_err(|_| invalid(format!("{op}: {name} value {x} does not fit in a size")))?;
    }
    if spatial == 1 {
        out[0] = if min == 0 { 0 } else { 1 };
    }
    Ok(out)
}

/// The spatial dimensions of a convolution op: 1 for the `1d` ones, else 2.
fn spatial_of(op: &str) -> usize {
    if op.contains("1d") {
        1
    } else {
        2
    }
}

/// The `groups` attribute: at least 1.
fn groups_of(op: &str, attrs: &Attrs<'_>) -> Result<usize> {
    let groups = attrs.int_or_default("groups")?;
    if groups < 1 {
        return Err(invalid(format!("{op}: groups is {groups}, expected >= 1")));
    }
    usize::try_from(groups)
        .map_err(|_| invalid(format!("{op}: groups {groups} does not fit in a size")))
}

/// Sizes `[height, width]` of a rank 3 or 4 shape (a rank 3 one has height 1).
fn lift(spatial: usize, s: &[usize]) -> [usize; 2] {
    if spatial == 1 {
        [1, s[2]]
    } else {
        [s[2], s[3]]
    }
}

/// Strides lifted to 4 dimensions (a rank 3 tensor gains a height of stride 0).
fn lift_strides(spatial: usize, strides: &[usize]) -> [usize; 4] {
    if spatial == 1 {
        [strides[0], strides[1], 0, strides[2]]
    } else {
        [strides[0], strides[1], strides[2], strides[3]]
    }
}

/// `[lead..., out...]` for the op's spatial dimensions, its element count checked.
fn out_shape_of(op: &str, lead: [usize; 2], out: [usize; 2], spatial: usize) -> Result<Vec<usize>> {
    let mut s = lead.to_vec();
    s.extend_from_slice(&out[2 - spatial..]);
    s.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid(format!("{op}: the output's element count overflows")))?;
    Ok(s)
}

/// The windows along one dimension: floor (or with `ceil`, ceil) of
/// (in + 2 pad - dil (k - 1) - 1) / stride, plus 1; with `ceil`, the last window must start
/// inside the input or its left padding. `what` names the window in messages; then come
/// the stride, padding and dilation.
fn windows(
    op: &str,
    what: &str,
    input: usize,
    kernel: usize,
    [stride, padding, dilation]: [usize; 3],
    ceil: bool,
) -> Result<usize> {
    let overflow = || invalid(format!("{op}: the output size overflows"));
    let padded = padding
        .checked_mul(2)
        .and_then(|p| p.checked_add(input))
        .ok_or_else(overflow)?;
    if i64::try_from(padded).is_err() {
        return Err(invalid(format!(
            "{op}: the padded input ({input} + 2 x {padding}) exceeds 2^63 - 1"
        )));
    }
    let extent = dilation
        .checked_mul(kernel - 1)
        .and_then(|e| e.checked_add(1))
        .ok_or_else(overflow)?;
    if extent > padded {
        return Err(invalid(format!(
            "{op}: the {what} spans {extent} (dilation {dilation} x (size {kernel} - 1) + 1) but \
             the padded input is {padded} ({input} + 2 x {padding}): the output would be empty"
        )));
    }
    let span = padded - extent;
    let mut o = if ceil {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    };
    if ceil && (o - 1) * stride >= input + padding {
        o -= 1;
    }
    Ok(o)
}

impl ConvGeom {
    /// The geometry of `op` (`conv1d` or `conv2d`) with input `x`, weight `w` and optional
    /// `bias`, validating shapes and attributes.
    pub fn of(
        op: &str,
        attrs: &Attrs<'_>,
        x: &TensorDesc,
        w: &TensorDesc,
        bias: Option<&TensorDesc>,
    ) -> Result<ConvGeom> {
        let spatial = spatial_of(op);
        let rank = spatial + 2;
        for (name, t) in [("x", x), ("weight", w)] {
            if t.rank() != rank {
                return Err(invalid(format!(
                    "{op}: {name} has shape {}, expected rank {rank} ({})",
                    shape_str(&t.shape),
                    if spatial == 1 {
                        if name == "x" {
                            "[N, C, L]"
                        } else {
                            "[O, C/groups, K]"
                        }
                    } else if name == "x" {
                        "[N, C, H, W]"
                    } else {
                        "[O, C/groups, KH, KW]"
                    }
                )));
            }
        }
        let groups = groups_of(op, attrs)?;
        let stride = per_dim(op, attrs, "stride", spatial, 1, 1)?;
        let padding = per_dim(op, attrs, "padding", spatial, 0, 0)?;
        let dilation = per_dim(op, attrs, "dilation", spatial, 1, 1)?;
        let (n, c, o, cg) = (x.shape[0], x.shape[1], w.shape[0], w.shape[1]);
        if c % groups != 0 || cg.checked_mul(groups) != Some(c) {
            return Err(invalid(format!(
                "{op}: x has {c} channels and weight {} ({} per group): with groups = {groups}, \
                 weight.shape[1] must be C / groups = {}",
                shape_str(&w.shape),
                cg,
                if c % groups == 0 {
                    (c / groups).to_string()
                } else {
                    format!("{c}/{groups}, not a whole number")
                }
            )));
        }
        if o % groups != 0 {
            return Err(invalid(format!(
                "{op}: weight has {o} output channels, expected a multiple of groups = {groups}"
            )));
        }
        let (input, kernel) = (lift(spatial, &x.shape), lift(spatial, &w.shape));
        let mut out = [0usize; 2];
        for d in 0..2 {
            if kernel[d] == 0 {
                return Err(invalid(format!(
                    "{op}: weight has shape {}, expected kernel sizes >= 1",
                    shape_str(&w.shape)
                )));
            }
            out[d] = windows(
                op,
                "kernel",
                input[d],
                kernel[d],
                [stride[d], padding[d], dilation[d]],
                false,
            )?;
        }
        if let Some(b) = bias {
            if b.shape != [o] {
                return Err(invalid(format!(
                    "{op}: bias has shape {}, expected [{o}] (one per output channel)",
                    shape_str(&b.shape)
                )));
            }
        }
        let g = ConvGeom {
            spatial,
            n,
            c,
            o,
            groups,
            input,
            kernel,
            out,
            stride,
            padding,
            dilation,
        };
        out_shape_of(op, [n, o], out, spatial)?;
        Ok(g)
    }

    /// The output's shape: `[N, O, L_out]` or `[N, O, H_out, W_out]`.
    pub fn out_shape(&self) -> Vec<usize> {
        let mut s = vec![self.n, self.o];
        s.extend_from_slice(&self.out[2 - self.spatial..]);
        s
    }

    /// The geometry of a `conv_transpose1d/2d` call with input `x` [N, C_in, *], weight
    /// [C_in, C_out / groups, *] and optional `bias` [C_out]: the convolution whose input
    /// gradient it is (its `c` is C_out, its `o` is C_in, its `input` the transpose's output
    /// sizes and its `out` x's sizes).
    pub fn transpose(
        op: &str,
        attrs: &Attrs<'_>,
        x: &TensorDesc,
        w: &TensorDesc,
        bias: Option<&TensorDesc>,
    ) -> Result<ConvGeom> {
        let spatial = spatial_of(op);
        let rank = spatial + 2;
        for (name, t, form) in [
            ("x", x, ["[N, C_in, L]", "[N, C_in, H, W]"]),
            (
                "weight",
                w,
                ["[C_in, C_out/groups, K]", "[C_in, C_out/groups, KH, KW]"],
            ),
        ] {
            if t.rank() != rank {
                return Err(invalid(format!(
                    "{op}: {name} has shape {}, expected rank {rank} ({})",
                    shape_str(&t.shape),
                    form[spatial - 1]
                )));
            }
        }
        let groups = groups_of(op, attrs)?;
        let stride = per_dim(op, attrs, "stride", spatial, 1, 1)?;
        let padding = per_dim(op, attrs, "padding", spatial, 0, 0)?;
        let output_padding = per_dim(op, attrs, "output_padding", spatial, 0, 0)?;
        let dilation = per_dim(op, attrs, "dilation", spatial, 1, 1)?;
        let (n, cin) = (x.shape[0], x.shape[1]);
        if w.shape[0] != cin {
            return Err(invalid(format!(
                "{op}: x has {cin} channels but weight has shape {}: expected weight.shape[0] = \
                 C_in = {cin}",
                shape_str(&w.shape)
            )));
        }
        if cin % groups != 0 {
            return Err(invalid(format!(
                "{op}: x has {cin} channels, expected a multiple of groups = {groups}"
            )));
        }
        let cout = w.shape[1]
            .checked_mul(groups)
            .ok_or_else(|| invalid(format!("{op}: C_out = weight.shape[1] x groups overflows")))?;
        let (input, kernel) = (lift(spatial, &x.shape), lift(spatial, &w.shape));
        if kernel.contains(&0) {
            return Err(invalid(format!(
                "{op}: weight has shape {}, expected kernel sizes >= 1",
                shape_str(&w.shape)
            )));
        }
        if input.contains(&0) {
            return Err(invalid(format!(
                "{op}: x has shape {}, expected spatial sizes >= 1",
                shape_str(&x.shape)
            )));
        }
        let mut out = [1usize; 2];
        for d in 0..2 {
            if output_padding[d] >= stride[d].max(dilation[d]) {
                return Err(invalid(format!(
                    "{op}: output_padding {} must be smaller than the stride ({}) or the \
                     dilation ({})",
                    output_padding[d], stride[d], dilation[d]
                )));
            }
            // (in - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1, exactly.
            let size = (input[d] as i128 - 1) * stride[d] as i128 - 2 * padding[d] as i128
                + dilation[d] as i128 * (kernel[d] as i128 - 1)
                + output_padding[d] as i128
                + 1;
            if size < 1 {
                return Err(invalid(format!(
                    "{op}: the output size is {size} ((in {} - 1) x stride {} - 2 x padding {} + \
                     dilation {} x (k {} - 1) + output_padding {} + 1): the output would be empty",
                    input[d], stride[d], padding[d], dilation[d], kernel[d], output_padding[d]
                )));
            }
            out[d] = i64::try_from(size)
                .ok()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| invalid(format!("{op}: the output size {size} overflows")))?;
        }
        if let Some(b) = bias {
            if b.shape != [cout] {
                return Err(invalid(format!(
                    "{op}: bias has shape {}, expected [{cout}] (one per output channel)",
                    shape_str(&b.shape)
                )));
            }
        }
        out_shape_of(op, [n, cout], out, spatial)?;
        Ok(ConvGeom {
            spatial,
            n,
            c: cout,
            o: cin,
            groups,
            input: out,
            kernel,
            out: input,
            stride,
            padding,
            dilation,
        })
    }

    /// The geometry of a `conv{1,2}d_backward_input` (inputs grad, weight) or
    /// `conv{1,2}d_backward_weight` (inputs grad, x) call: the convolution whose gradient it
    /// is, with x or weight of the shape given by the `input_size` or `weight_size` attribute.
    /// grad must have that convolution's output shape.
    pub fn backward(
        op: &str,
        attrs: &Attrs<'_>,
        grad: &TensorDesc,
        other: &TensorDesc,
    ) -> Result<ConvGeom> {
        let spatial = spatial_of(op);
        let data = op.ends_with("_input");
        let name = if data { "input_size" } else { "weight_size" };
        let form = match (data, spatial) {
            (true, 1) => "[N, C, L]",
            (true, _) => "[N, C, H, W]",
            (false, 1) => "[O, C/groups, K]",
            (false, _) => "[O, C/groups, KH, KW]",
        };
        let size = size_attr(op, attrs, name, spatial + 2, form)?;
        let sized = TensorDesc::contiguous(grad.dtype, &size);
        let g = if data {
            ConvGeom::of(op, attrs, &sized, other, None)?
        } else {
            ConvGeom::of(op, attrs, other, &sized, None)?
        };
        if grad.shape != g.out_shape() {
            return Err(invalid(format!(
                "{op}: grad has shape {}, expected {} (the convolution's output for {} {})",
                shape_str(&grad.shape),
                shape_str(&g.out_shape()),
                if data { "x" } else { "x and weight" },
                if data {
                    shape_str(&size)
                } else {
                    format!("{} and {}", shape_str(&other.shape), shape_str(&size))
                }
            )));
        }
        Ok(g)
    }

    /// The geometry and pass of any convolution op (`conv*`, `conv_transpose*`,
    /// `conv*_backward_*`) from its inputs' layouts.
    pub fn of_call(
        op: &str,
        attrs: &Attrs<'_>,
        inputs: [Option<&TensorDesc>; 3],
    ) -> Result<(ConvGeom, ConvPass)> {
        let need =
            |i: usize| inputs[i].ok_or_else(|| Error::internal(format!("{op}: input {i} missing")));
        let (a, b) = (need(0)?, need(1)?);
        Ok(if op.starts_with("conv_transpose") {
            (
                ConvGeom::transpose(op, attrs, a, b, inputs[2])?,
                ConvPass::Data,
            )
        } else if op.contains("_backward_") {
            let pass = if op.ends_with("_input") {
                ConvPass::Data
            } else {
                ConvPass::Filter
            };
            (ConvGeom::backward(op, attrs, a, b)?, pass)
        } else {
            (ConvGeom::of(op, attrs, a, b, inputs[2])?, ConvPass::Forward)
        })
    }

    /// The shape of the convolution's input x: `[N, C, L]` or `[N, C, H, W]`.
    pub fn in_shape(&self) -> Vec<usize> {
        let mut s = vec![self.n, self.c];
        s.extend_from_slice(&self.input[2 - self.spatial..]);
        s
    }

    /// The shape of its weight: `[O, C/groups, K]` or `[O, C/groups, KH, KW]`.
    pub fn weight_shape(&self) -> Vec<usize> {
        let mut s = vec![self.o, self.cg()];
        s.extend_from_slice(&self.kernel[2 - self.spatial..]);
        s
    }

    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.c / self.groups
    }

    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.o / self.groups
    }

    /// The multiply-adds of each of the three computations (forward, data, weight gradient):
    /// `N * O * OH * OW * (C / groups) * KH * KW`.
    pub fn macs(&self) -> u64 {
        [self.n, self.o, self.cg()]
            .iter()
            .chain(&self.out)
            .chain(&self.kernel)
            .fold(1u64, |m, &d| m.saturating_mul(d as u64))
    }

    /// A tensor's strides lifted to 4 dimensions (`conv1d`'s gain a height of stride 0).
    pub fn strides4(&self, strides: &[usize]) -> [usize; 4] {
        lift_strides(self.spatial, strides)
    }
}

/// What a pooling call (`max_pool1d/2d`, `avg_pool1d/2d`) computes, in two spatial dimensions
/// (a 1-D pool has height 1 everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolGeom {
    /// Spatial dimensions of the op: 1 or 2.
    pub spatial: usize,
    /// Batch and channels.
    pub n: usize,
    pub c: usize,
    pub input: [usize; 2],
    pub kernel: [usize; 2],
    pub out: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    /// avg_pool: padding counts in the divisor.
    pub count_include_pad: bool,
    /// A max pool (else an average).
    pub max: bool,
}

impl PoolGeom {
    /// The geometry of `op` over input `x`, validating shapes and attributes.
    pub fn of(op: &str, attrs: &Attrs<'_>, x: &TensorDesc) -> Result<PoolGeom> {
        let spatial = spatial_of(op);
        let max = op.starts_with("max");
        if x.rank() != spatial + 2 {
            return Err(invalid(format!(
                "{op}: x has shape {}, expected rank {} ({})",
                shape_str(&x.shape),
                spatial + 2,
                if spatial == 1 {
                    "[N, C, L]"
                } else {
                    "[N, C, H, W]"
                }
            )));
        }
        if attrs.ints_opt("kernel_size")?.is_none() {
            return Err(invalid(format!("{op}: kernel_size is required")));
        }
        let kernel = per_dim(op, attrs, "kernel_size", spatial, 1, 1)?;
        let stride = match attrs.ints_opt("stride")? {
            Some(v) if !v.is_empty() => per_dim(op, attrs, "stride", spatial, 1, 1)?,
            _ => kernel,
        };
        let padding = per_dim(op, attrs, "padding", spatial, 0, 0)?;
        let dilation = if max {
            per_dim(op, attrs, "dilation", spatial, 1, 1)?
        } else {
            [1, 1]
        };
        let ceil = attrs.flag("ceil_mode", false)?;
        let count_include_pad = !max && attrs.flag("count_include_pad", true)?;
        let input = lift(spatial, &x.shape);
        let mut out = [1usize; 2];
        for d in 0..2 {
            if padding[d] > kernel[d] / 2 {
                return Err(invalid(format!(
                    "{op}: padding {} is more than half the kernel size {}",
                    padding[d], kernel[d]
                )));
            }
            out[d] = windows(
                op,
                "window",
                input[d],
                kernel[d],
                [stride[d], padding[d], dilation[d]],
                ceil,
            )?;
        }
        let g = PoolGeom {
            spatial,
            n: x.shape[0],
            c: x.shape[1],
            input,
            kernel,
            out,
            stride,
            padding,
            dilation,
            count_include_pad,
            max,
        };
        out_shape_of(op, [g.n, g.c], out, spatial)?;
        Ok(g)
    }

    /// The output's shape: `[N, C, L_out]` or `[N, C, H_out, W_out]`.
    pub fn out_shape(&self) -> Vec<usize> {
        let mut s = vec![self.n, self.c];
        s.extend_from_slice(&self.out[2 - self.spatial..]);
        s
    }

    /// A tensor's strides lifted to 4 dimensions (1-D pools' gain a height of stride 0).
    pub fn strides4(&self, strides: &[usize]) -> [usize; 4] {
        lift_strides(self.spatial, strides)
    }
}

/// What `adaptive_avg_pool2d` and `interpolate` compute: one output element from a window or
/// from taps of the input plane, located by exact integer arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resample {
    /// The average of rows floor(i H / OH) .. ceil((i + 1) H / OH) (and so for columns).
    AdaptiveAvg,
    /// Source index floor(i H / OH).
    Nearest,
    /// Linear in each dimension between the two nearest source positions; the source position
    /// is a fraction `num / den` (see [`ResampleGeom::source`]).
    Bilinear { align_corners: bool },
    /// Cubic convolution (Keys, a = -0.75, as PyTorch) over the four source positions around
    /// the source position `num / den` (see [`ResampleGeom::cubic`]), taps clamped to the edge.
    Bicubic { align_corners: bool },
}

/// The cubic convolution coefficient `a` of `Resample::Bicubic` (PyTorch's and OpenCV's).
pub(crate) const CUBIC_A: f64 = -0.75;

/// The weights of the four taps at offsets -1, 0, 1, 2 from the source position's floor, for
/// its fractional part `t` in [0, 1).
pub(crate) fn cubic_weights(t: f64) -> [f64; 4] {
    let a = CUBIC_A;
    // |x| <= 1: ((a + 2) x - (a + 3)) x^2 + 1; 1 < |x| < 2: ((a x - 5 a) x + 8 a) x - 4 a.
    let near = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

impl Resample {
    /// The kind of an `adaptive_avg_pool2d*` or `interpolate*` call.
    fn of(op: &str, attrs: &Attrs<'_>) -> Result<Resample> {
        if op.starts_with("adaptive_avg_pool2d") {
            return Ok(Resample::AdaptiveAvg);
        }
        let align = attrs.flag("align_corners", false)?;
        match attrs.str_or_default("mode")? {
            "nearest" if align => Err(invalid(format!(
                "{op}: align_corners = 1 applies to modes bilinear and bicubic, not nearest"
            ))),
            "nearest" => Ok(Resample::Nearest),
            "bicubic" => Ok(Resample::Bicubic {
                align_corners: align,
            }),
            _ => Ok(Resample::Bilinear {
                align_corners: align,
            }),
        }
    }
}

/// A pooling or resampling gradient (`max_pool{1,2}d_backward`, `avg_pool{1,2}d_backward`,
/// `adaptive_avg_pool2d_backward`, `interpolate_backward`): the forward op's geometry over an x
/// of shape `input_size`, whose output shape grad has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolBack {
    Pool(PoolGeom),
    Resample(ResampleGeom),
}

impl PoolBack {
    /// The geometry of a call with `grad` (and, for max pools, `indices`).
    pub fn of(
        op: &str,
        attrs: &Attrs<'_>,
        grad: &TensorDesc,
        indices: Option<&TensorDesc>,
    ) -> Result<PoolBack> {
        let pool =
            op.contains("_pool1d") || op.starts_with("max_pool2d") || op.starts_with("avg_pool2d");
        let spatial = if pool { spatial_of(op) } else { 2 };
        let size = size_attr(
            op,
            attrs,
            "input_size",
            spatial + 2,
            if spatial == 1 {
                "[N, C, L]"
            } else {
                "[N, C, H, W]"
            },
        )?;
        let x = TensorDesc::contiguous(grad.dtype, &size);
        let (g, want) = if pool {
            let g = PoolGeom::of(op, attrs, &x)?;
            (PoolBack::Pool(g), g.out_shape())
        } else {
            if grad.rank() != 4 {
                return Err(invalid(format!(
                    "{op}: grad has shape {}, expected rank 4 ([N, C, OH, OW])",
                    shape_str(&grad.shape)
                )));
            }
            let out = [grad.shape[2], grad.shape[3]];
            if out.contains(&0) {
                return Err(invalid(format!(
                    "{op}: grad has shape {}, expected OH and OW >= 1",
                    shape_str(&grad.shape)
                )));
            }
            let g = ResampleGeom::sized(op, Resample::of(op, attrs)?, &x, out)?;
            (PoolBack::Resample(g), g.out_shape())
        };
        if grad.shape != want {
            return Err(invalid(format!(
                "{op}: grad has shape {}, expected {} (the forward op's output for input_size {})",
                shape_str(&grad.shape),
                shape_str(&want),
                shape_str(&size)
            )));
        }
        if let Some(i) = indices {
            if i.shape != grad.shape {
                return Err(invalid(format!(
                    "{op}: indices has shape {}, expected grad's shape {}",
                    shape_str(&i.shape),
                    shape_str(&grad.shape)
                )));
            }
        }
        Ok(g)
    }

    /// The forward op's output rows (d = 0) or columns (d = 1) that read input row or column
    /// `i`, each with its factor of the gradient's weight (the weight is the product of the two
    /// dimensions' factors; a max pool also needs its index to name the element).
    pub fn taps(&self, d: usize, i: usize) -> Vec<(usize, f64)> {
        match self {
            PoolBack::Pool(g) => {
                let (len, k, st, pad, dil) = (
                    g.input[d],
                    g.kernel[d],
                    g.stride[d],
                    g.padding[d],
                    g.dilation[d],
                );
                (0..k)
                    .filter_map(|j| {
                        let t = (i + pad).checked_sub(j * dil)?;
                        let o = t / st;
                        if t % st != 0 || o >= g.out[d] {
                            return None;
                        }
                        if g.max {
                            return Some((o, 1.0));
                        }
                        // avg_pool's divisor, one dimension of it.
                        let s = (o * st) as i64 - pad as i64;
                        let e = (s + k as i64).min((len + pad) as i64);
                        let count = if g.count_include_pad {
                            e - s
                        } else {
                            e.min(len as i64) - s.max(0)
                        };
                        Some((o, 1.0 / count as f64))
                    })
                    .collect()
            }
            PoolBack::Resample(g) => {
                let (len, outn) = (g.input[d], g.out[d]);
                let (lo, hi) = g.back_range(d, i);
                (lo..hi)
                    .filter_map(|o| match g.kind {
                        Resample::AdaptiveAvg => {
                            let (s, e) = (o * len / outn, ((o + 1) * len).div_ceil(outn));
                            (s <= i && i < e).then(|| (o, 1.0 / (e - s) as f64))
                        }
                        Resample::Nearest => (o * len / outn == i).then_some((o, 1.0)),
                        Resample::Bicubic { .. } => {
                            // Clamped taps may read i more than once: their weights add.
                            let taps = g.cubic_taps(d, o);
                            let mut hit = taps.iter().filter(|(at, _)| *at == i).peekable();
                            hit.peek()?;
                            Some((o, hit.map(|(_, w)| w).sum()))
                        }
                        Resample::Bilinear { .. } => {
                            let (num, den) = g.source(d, o);
                            let i0 = ((num / den) as usize).min(len - 1);
                            let i1 = (i0 + 1).min(len - 1);
                            let l = ((num - i0 as u64 * den) as f64 / den as f64).min(1.0);
                            let w =
                                if i0 == i { 1.0 - l } else { 0.0 } + if i1 == i { l } else { 0.0 };
                            (i0 == i || i1 == i).then_some((o, w))
                        }
                    })
                    .collect()
            }
        }
    }

    /// The shape of the result: input_size.
    pub fn in_shape(&self) -> Vec<usize> {
        match self {
            PoolBack::Pool(g) => {
                let mut s = vec![g.n, g.c];
                s.extend_from_slice(&g.input[2 - g.spatial..]);
                s
            }
            PoolBack::Resample(g) => vec![g.n, g.c, g.input[0], g.input[1]],
        }
    }
}

/// An `Ints` attribute holding a shape of `rank` sizes (`form` names them in messages), its
/// element count checked.
fn size_attr(
    op: &str,
    attrs: &Attrs<'_>,
    name: &str,
    rank: usize,
    form: &str,
) -> Result<Vec<usize>> {
    let size = attrs
        .ints_opt(name)?
        .ok_or_else(|| invalid(format!("{op}: {name} is required")))?;
    if size.len() != rank {
        return Err(invalid(format!(
            "{op}: {name} is {size:?}, expected {rank} values ({form})"
        )));
    }
    let out = size
        .iter()
        .map(|&v| usize::try_from(v))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| {
            invalid(format!(
                "{op}: {name} is {size:?}, expected sizes >= 0 that fit in a size"
            ))
        })?;
    out.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid(format!("{op}: {name}'s element count overflows")))?;
    Ok(out)
}

/// The geometry of `adaptive_avg_pool3d` over x [N, C, D, H, W], or of its gradient over an x
/// of shape `input_size` (docs/ops.md 8.13): the output sizes [OD, OH, OW].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Adaptive3 {
    pub n: usize,
    pub c: usize,
    pub input: [usize; 3],
    pub out: [usize; 3],
}

impl Adaptive3 {
    /// The geometry of an `adaptive_avg_pool3d` call over `x`.
    pub fn of(op: &str, attrs: &Attrs<'_>, x: &TensorDesc) -> Result<Adaptive3> {
        if x.rank() != 5 {
            return Err(invalid(format!(
                "{op}: x has shape {}, expected rank 5 ([N, C, D, H, W])",
                shape_str(&x.shape)
            )));
        }
        let v = attrs
            .ints_opt("output_size")?
            .ok_or_else(|| invalid(format!("{op}: output_size is required")))?;
        let v = match v.len() {
            1 => vec![v[0]; 3],
            3 => v,
            n => {
                return Err(invalid(format!(
                    "{op}: output_size has {n} values, expected 1 or 3"
                )))
            }
        };
        let mut out = [1usize; 3];
        for (k, &s) in v.iter().enumerate() {
            out[k] = usize::try_from(s).ok().filter(|&s| s >= 1).ok_or_else(|| {
                invalid(format!(
                    "{op}: output_size is {v:?}, expected every value >= 1"
                ))
            })?;
        }
        Adaptive3::sized(op, &x.shape, out)
    }

    /// The geometry of an `adaptive_avg_pool3d_backward` call with `grad` [N, C, OD, OH, OW]:
    /// the forward op over an x of shape `input_size`.
    pub fn backward(op: &str, attrs: &Attrs<'_>, grad: &TensorDesc) -> Result<Adaptive3> {
        let size = size_attr(op, attrs, "input_size", 5, "[N, C, D, H, W]")?;
        if grad.rank() != 5 || grad.shape[2..].contains(&0) {
            return Err(invalid(format!(
                "{op}: grad has shape {}, expected rank 5 ([N, C, OD, OH, OW]) with OD, OH and \
                 OW >= 1",
                shape_str(&grad.shape)
            )));
        }
        let g = Adaptive3::sized(op, &size, [grad.shape[2], grad.shape[3], grad.shape[4]])?;
        if grad.shape != g.out_shape() {
            return Err(invalid(format!(
                "{op}: grad has shape {}, expected N and C of input_size {}",
                shape_str(&grad.shape),
                shape_str(&size)
            )));
        }
        Ok(g)
    }

    fn sized(op: &str, x: &[usize], out: [usize; 3]) -> Result<Adaptive3> {
        let (n, c) = (x[0], x[1]);
        let input = [x[2], x[3], x[4]];
        if n > 0 && c > 0 && input.contains(&0) {
            return Err(invalid(format!(
                "{op}: x has shape {}, expected D, H and W >= 1",
                shape_str(x)
            )));
        }
        [n, c, out[0], out[1], out[2]]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| invalid(format!("{op}: the output's element count overflows")))?;
        Ok(Adaptive3 { n, c, input, out })
    }

    /// `[N, C, OD, OH, OW]`.
    pub fn out_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.out[0], self.out[1], self.out[2]]
    }

    /// `[N, C, D, H, W]`.
    pub fn in_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.input[0], self.input[1], self.input[2]]
    }
}

/// The geometry of an `adaptive_avg_pool2d` or `interpolate` call over x [N, C, H, W].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResampleGeom {
    pub kind: Resample,
    pub n: usize,
    pub c: usize,
    pub input: [usize; 2],
    pub out: [usize; 2],
}

impl ResampleGeom {
    /// The geometry of `op` over `x`, validating shapes and attributes.
    pub fn of(op: &str, attrs: &Attrs<'_>, x: &TensorDesc) -> Result<ResampleGeom> {
        if x.rank() != 4 {
            return Err(invalid(format!(
                "{op}: x has shape {}, expected rank 4 ([N, C, H, W])",
                shape_str(&x.shape)
            )));
        }
        let kind = Resample::of(op, attrs)?;
        let size_name = if kind == Resample::AdaptiveAvg {
            "output_size"
        } else {
            "size"
        };
        if attrs.ints_opt(size_name)?.is_none() {
            return Err(invalid(format!("{op}: {size_name} is required")));
        }
        let out = per_dim(op, attrs, size_name, 2, 1, 1)?;
        ResampleGeom::sized(op, kind, x, out)
    }

    /// The geometry of a call of `kind` over `x` with output sizes `out`.
    fn sized(op: &str, kind: Resample, x: &TensorDesc, out: [usize; 2]) -> Result<ResampleGeom> {
        let input = [x.shape[2], x.shape[3]];
        let (n, c) = (x.shape[0], x.shape[1]);
        if n > 0 && c > 0 && input.contains(&0) {
            return Err(invalid(format!(
                "{op}: x has shape {}, expected H and W >= 1",
                shape_str(&x.shape)
            )));
        }
        // Source positions are fractions whose numerators reach (2 OH + 1) H: they must fit.
        for d in 0..2 {
            let fits = out[d]
                .checked_mul(2)
                .and_then(|o| o.checked_add(1))
                .and_then(|o| o.checked_mul(input[d].max(1)))
                .is_some_and(|v| i64::try_from(v).is_ok());
            if !fits {
                return Err(invalid(format!(
                    "{op}: an output size of {} over an input size of {} overflows the source \
                     positions",
                    out[d], input[d]
                )));
            }
        }
        let g = ResampleGeom {
            kind,
            n,
            c,
            input,
            out,
        };
        out_shape_of(op, [n, c], out, 2)?;
        Ok(g)
    }

    /// `[N, C, OH, OW]`.
    pub fn out_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.out[0], self.out[1]]
    }

    /// The output indices `lo..hi` along dimension `d` that may read input index `i` (a
    /// superset for bilinear and bicubic, whose taps the caller checks). Adaptive: floor(i O /
    /// I) .. ceil((i + 1) O / I); nearest: ceil(i O / I) .. ceil((i + 1) O / I); bilinear: the
    /// outputs whose source position lies in [i - 1, i + 1), widened by the rounding of the
    /// scale; bicubic: those whose source position lies in [i - 2, i + 2), widened likewise, and
    /// every output from the start (i = 0) or to the end (i = I - 1), whose clamped taps may
    /// read the edge.
    pub fn back_range(&self, d: usize, i: usize) -> (usize, usize) {
        let (len, outn) = (self.input[d] as u128, self.out[d] as u128);
        let i = i as u128;
        let (lo, hi) = match self.kind {
            Resample::AdaptiveAvg => (i * outn / len, ((i + 1) * outn).div_ceil(len)),
            Resample::Nearest => ((i * outn).div_ceil(len), ((i + 1) * outn).div_ceil(len)),
            _ if len == 1 => (0, outn),
            Resample::Bicubic { align_corners } => {
                let (lo, hi) = if align_corners {
                    (
                        (i.saturating_sub(2) * (outn - 1) / (len - 1)).saturating_sub(1),
                        ((i + 2) * (outn - 1)).div_ceil(len - 1) + 2,
                    )
                } else {
                    (
                        (i.saturating_sub(2) * outn / len).saturating_sub(2),
                        ((i + 3) * outn).div_ceil(len) + 2,
                    )
                };
                (
                    if i == 0 { 0 } else { lo },
                    if i + 1 == len { outn } else { hi },
                )
            }
            Resample::Bilinear {
                align_corners: true,
            } => (
                (i.saturating_sub(1) * (outn - 1) / (len - 1)).saturating_sub(1),
                ((i + 1) * (outn - 1)).div_ceil(len - 1) + 2,
            ),
            Resample::Bilinear { .. } => (
                (i.saturating_sub(1) * outn / len).saturating_sub(2),
                ((i + 2) * outn).div_ceil(len) + 2,
            ),
        };
        (lo.min(outn) as usize, hi.min(outn) as usize)
    }

    /// Bilinear: the source position of output index `i` in dimension `d` as `num / den` (never
    /// negative). align_corners: i (in - 1) / (out - 1) (0 when out = 1); else
    /// (i + 1/2) in / out - 1/2 = ((2 i + 1) in - out) / (2 out), clamped at 0.
    pub fn source(&self, d: usize, i: usize) -> (u64, u64) {
        let (len, out) = (self.input[d] as u64, self.out[d] as u64);
        match self.kind {
            Resample::Bilinear {
                align_corners: true,
            } => {
                if out > 1 {
                    (i as u64 * (len - 1), out - 1)
                } else {
                    (0, 1)
                }
            }
            _ => (((2 * i as u64 + 1) * len).saturating_sub(out), 2 * out),
        }
    }

    /// Bicubic: the source position of output index `i` in dimension `d` as `num / den`, which
    /// may be negative (PyTorch does not clamp it for cubic sampling). align_corners: i (in -
    /// 1) / (out - 1) (0 when out = 1); else ((2 i + 1) in - out) / (2 out).
    pub fn cubic(&self, d: usize, i: usize) -> (i64, i64) {
        // `sized` checked that (2 out + 1) in fits in an i64.
        let (len, out, i) = (self.input[d] as i64, self.out[d] as i64, i as i64);
        match self.kind {
            Resample::Bicubic {
                align_corners: true,
            } => {
                if out > 1 {
                    (i * (len - 1), out - 1)
                } else {
                    (0, 1)
                }
            }
            _ => ((2 * i + 1) * len - out, 2 * out),
        }
    }

    /// Bicubic: the four input indices (clamped to the edge) that output index `i` of
    /// dimension `d` reads, with their weights.
    pub fn cubic_taps(&self, d: usize, i: usize) -> [(usize, f64); 4] {
        let (num, den) = self.cubic(d, i);
        let base = num.div_euclid(den);
        let t = num.rem_euclid(den) as f64 / den as f64;
        let w = cubic_weights(t);
        let last = self.input[d] as i64 - 1;
        std::array::from_fn(|k| ((base + k as i64 - 1).clamp(0, last) as usize, w[k]))
    }
}

/// The geometry of a `group_norm` call over x [N, C, *]: groups of C / G channels times the
/// spatial size, each normalised on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupGeom {
    pub n: usize,
    pub c: usize,
    pub groups: usize,
    /// Elements of one channel (the product of the dimensions after C).
    pub spatial: usize,
}

impl GroupGeom {
    /// The geometry of a call, validating x, the optional weight and bias, and `num_groups`.
    pub fn of(
        op: &str,
        attrs: &Attrs<'_>,
        x: &TensorDesc,
        weight: Option<&TensorDesc>,
        bias: Option<&TensorDesc>,
    ) -> Result<GroupGeom> {
        if x.rank() < 2 {
            return Err(invalid(format!(
                "{op}: x has shape {}, expected rank 2 or more ([N, C, *])",
                shape_str(&x.shape)
            )));
        }
        let c = x.shape[1];
        let g = attrs.int("num_groups")?;
        if g < 1 || usize::try_from(g).map_or(true, |g| !c.is_multiple_of(g)) {
            return Err(invalid(format!(
                "{op}: num_groups is {g}, expected a divisor of C = {c} (>= 1)"
            )));
        }
        for (name, t) in [("weight", weight), ("bias", bias)] {
            if let Some(t) = t {
                if t.shape != [c] {
                    return Err(invalid(format!(
                        "{op}: {name} has shape {}, expected [{c}] (one per channel)",
                        shape_str(&t.shape)
                    )));
                }
            }
        }
        Ok(GroupGeom {
            n: x.shape[0],
            c,
            groups: g as usize,
            spatial: x.shape[2..].iter().product(),
        })
    }

    /// Elements of one group.
    pub fn len(&self) -> usize {
        self.c / self.groups * self.spatial
    }
}

/// The geometry of a `batch_norm` call over x [N, C, *]: per channel, N times the spatial size
/// elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchGeom {
    pub n: usize,
    pub c: usize,
    /// Elements of one channel of one sample (the product of the dimensions after C).
    pub spatial: usize,
    /// Batch statistics (else the running ones).
    pub training: bool,
}

impl BatchGeom {
    /// The geometry of a call, validating x, the [C] inputs (running mean and variance, weight,
    /// bias) and the attributes.
    pub fn of(
        op: &str,
        attrs: &Attrs<'_>,
        x: &TensorDesc,
        per_channel: [Option<&TensorDesc>; 4],
    ) -> Result<BatchGeom> {
        if x.rank() < 2 {
            return Err(invalid(format!(
                "{op}: x has shape {}, expected rank 2 or more ([N, C, *])",
                shape_str(&x.shape)
            )));
        }
        let c = x.shape[1];
        let names = ["running_mean", "running_var", "weight", "bias"];
        for (name, t) in names.iter().zip(per_channel) {
            if let Some(t) = t {
                if t.shape != [c] {
                    return Err(invalid(format!(
                        "{op}: {name} has shape {}, expected [{c}] (one per channel)",
                        shape_str(&t.shape)
                    )));
                }
            }
        }
        let training = attrs.flag("training", false)?;
        if !training && (per_channel[0].is_none() || per_channel[1].is_none()) {
            return Err(invalid(format!(
                "{op}: training is 0 but running_mean or running_var is missing: inference \
                 normalises with the running statistics"
            )));
        }
        let g = BatchGeom {
            n: x.shape[0],
            c,
            spatial: x.shape[2..].iter().product(),
            training,
        };
        if training && c > 0 && g.len() == 0 {
            return Err(invalid(format!(
                "{op}: x has shape {}: training needs at least one value per channel",
                shape_str(&x.shape)
            )));
        }
        Ok(g)
    }

    /// Elements of one channel.
    pub fn len(&self) -> usize {
        self.n * self.spatial
    }
}
