//! Host kernels: every op in Rust, run by the CPU backend's worker pool.
//!
//! Each op call becomes one [`HostKernel`] whose closure holds the call's layouts and attributes
//! and receives the tensors' memory as arguments (inputs in order, absent optional inputs
//! skipped, then outputs). Work is split over the pool with `rayon`; contiguous layouts take
//! slice-based paths that vectorise, other layouts a strided walk.

mod attention_grad;
mod conv;
mod direct_conv;
mod elementwise;
mod index;
mod layout;
mod loss;
mod matmul;
mod movement;
mod nn;
mod norm_grad;
mod qkern;
mod quant;
mod random;
mod reduce;
mod scalar;
mod simd;
mod vmath;

use std::sync::Arc;

use crate::catalog::{op_of, Op};
use anyaccel_hal::{
    Device, Error, HostArg, HostKernel, HostLaunch, KernelArg, KernelSource, LaunchDims, OpCall,
    Queue, Result,
};

pub(crate) use layout::TView;

/// The tensors of a call as host views, in the call's order.
/// The layout of `call`'s input `i`, when given.
pub(crate) fn input_desc(call: &OpCall, i: usize) -> Option<&anyaccel_hal::TensorDesc> {
    call.inputs
        .get(i)
        .and_then(|t| t.as_ref())
        .map(|t| t.desc())
}

pub(crate) struct Bound<'a> {
    pub inputs: smallvec::SmallVec<[Option<TView<'a>>; 4]>,
    pub outputs: smallvec::SmallVec<[TView<'a>; 2]>,
}

impl<'a> Bound<'a> {
    pub fn input(&self, i: usize) -> Result<&TView<'a>> {
        self.inputs
            .get(i)
            .and_then(|t| t.as_ref())
            .ok_or_else(|| Error::internal(format!("host kernel: input {i} missing")))
    }
    pub fn out(&self, i: usize) -> &TView<'a> {
        &self.outputs[i]
    }
}

type Body = dyn Fn(&Bound) -> Result<()> + Send + Sync;

/// Builds and queues the host kernel of one call.
pub(crate) fn launch(device: &dyn Device, queue: &dyn Queue, call: &OpCall) -> Result<()> {
    let prepared = prepare(device, call)?;
    let tensors = call.inputs.iter().flatten().chain(call.outputs.iter());
    prepared.launch(queue, tensors)
}

/// A call's host kernel, compiled for its layouts, and the size of its launch: what a replay
/// of a recorded graph launches again with other memory of the same layouts.
pub(crate) struct Prepared {
    kernel: Arc<dyn anyaccel_hal::Kernel>,
    dims: LaunchDims,
}

impl Prepared {
    /// Queues the kernel on `tensors`: the call's present inputs, then its outputs, in the
    /// layouts it was prepared for.
    pub(crate) fn launch<'t>(
        &self,
        queue: &dyn Queue,
        tensors: impl Iterator<Item = &'t anyaccel_hal::Tensor>,
    ) -> Result<()> {
        let args: smallvec::SmallVec<[KernelArg; 8]> = tensors
            .map(|t| KernelArg::Buffer(t.view().clone()))
            .collect();
        queue.launch(&self.kernel, self.dims, &args)
    }
}

/// Chooses and compiles the host kernel of one call.
pub(crate) fn prepare(device: &dyn Device, call: &OpCall) -> Result<Prepared> {
    let body: Arc<Body> = Arc::new(kernel_for(call)?);
    let in_descs: smallvec::SmallVec<[Option<_>; 4]> = call
        .inputs
        .iter()
        .map(|t| t.as_ref().map(|t| t.desc_arc().clone()))
        .collect();
    let out_descs: smallvec::SmallVec<[_; 2]> =
        call.outputs.iter().map(|t| t.desc_arc().clone()).collect();
    // The catalog's name is static: naming the kernel copies nothing.
    let name: std::borrow::Cow<'static, str> =
        crate::catalog::op_def(&call.op).map_or_else(|| call.op.clone().into(), |d| d.name.into());
    let kernel = HostKernel::new(name, move |launch: &HostLaunch<'_>| {
        let mut mems = launch.args.iter().map(|a| match a {
            HostArg::Mem(m) => Ok(*m),
            HostArg::Bytes(_) => Err(Error::internal("host op kernel: unexpected bytes argument")),
        });
        let mut next = || {
            mems.next()
                .unwrap_or_else(|| Err(Error::internal("host op kernel: missing argument")))
        };
        let inputs = in_descs
            .iter()
            .map(|d| {
                d.as_ref()
                    .map(|d| next().map(|m| TView::new(m, d)))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        let outputs = out_descs
            .iter()
            .map(|d| next().map(|m| TView::new(m, d)))
            .collect::<Result<_>>()?;
        body(&Bound { inputs, outputs })
    });
    Ok(Prepared {
        kernel: device.compile(&KernelSource::Host(kernel))?,
        dims: LaunchDims::linear(work(call)?.max(1)),
    })
}

/// An estimate of a call's work in element operations, from which the CPU queue chooses whether
/// the launch is worth its worker pool: the elements the call reads and writes, and for the
/// products (matmul, convolution, attention) an eighth of the multiply-adds (vectorised fused
/// multiply-adds from registers cost that much less than an element read and written; a
/// 64x64x64 matmul, 2^18 multiply-adds, runs 3x faster serially than through the pool).
fn work(call: &OpCall) -> Result<u64> {
    let numel = |t: Option<&anyaccel_hal::Tensor>| t.map_or(0, |t| t.desc().numel() as u64);
    let input = |i: usize| call.inputs.get(i).and_then(|t| t.as_ref());
    let elems = call
        .inputs
        .iter()
        .map(|t| numel(t.as_ref()))
        .chain(call.outputs.iter().map(|t| numel(Some(t))))
        .fold(0u64, u64::saturating_add);
    let dim = |t: Option<&anyaccel_hal::Tensor>, from_end: usize| {
        t.and_then(|t| {
            let shape = &t.desc().shape;
            shape.len().checked_sub(from_end).map(|d| shape[d] as u64)
        })
        .unwrap_or(1)
    };
    let products = match op_of(&call.op)? {
        Op::Matmul | Op::MatmulWq | Op::MatmulI8 => {
            numel(call.outputs.first()).saturating_mul(dim(input(0), 1))
        }
        Op::Attention | Op::AttentionBackward => numel(input(0)).saturating_mul(dim(input(1), 2)),
        op if op.is_convolution() => {
            let descs = [0, 1, 2].map(|i| input_desc(call, i));
            crate::conv::ConvGeom::of_call(&call.op, &crate::attrs::Attrs::of(call)?, descs)?
                .0
                .macs()
        }
        _ => 0,
    };
    Ok(elems.saturating_add(products / 8))
}

fn kernel_for(call: &OpCall) -> Result<impl Fn(&Bound) -> Result<()> + Send + Sync> {
    let k: Box<Body> = match op_of(&call.op)? {
        Op::Fill | Op::Arange | Op::Copy | Op::Cast => elementwise::movement(call)?,
        Op::Concat | Op::IndexSelect | Op::Embedding | Op::Gather => index::kernel(call)?,
        Op::Where => elementwise::select(call)?,
        Op::Pad | Op::Flip | Op::Roll | Op::Tril | Op::Triu | Op::RepeatInterleave => {
            movement::remap_kernel(call)?
        }
        Op::Scatter | Op::ScatterAdd | Op::IndexAdd | Op::OneHot | Op::EmbeddingBackward => {
            movement::scatter_kernel(call)?
        }
        Op::MaskedFill | Op::AdaptiveAvgPool3d | Op::AdaptiveAvgPool3dBackward => {
            return Err(crate::catalog::misrouted(&call.op))
        }
        Op::Binary(b) => elementwise::binary(call, b)?,
        Op::Compare(c) => elementwise::compare(call, c)?,
        Op::Reduce(_)
        | Op::Cumsum
        | Op::Cumprod
        | Op::Cummax
        | Op::Cummin
        | Op::Topk
        | Op::Sort
        | Op::Argsort => reduce::kernel(call)?,
        Op::Softmax
        | Op::LogSoftmax
        | Op::SoftmaxBackward
        | Op::LogSoftmaxBackward
        | Op::LayerNorm
        | Op::RmsNorm
        | Op::Rope
        | Op::Attention => nn::kernel(call)?,
        Op::Matmul => matmul::kernel(call)?,
        Op::Conv1d
        | Op::Conv2d
        | Op::ConvTranspose1d
        | Op::ConvTranspose2d
        | Op::Conv1dBackwardInput
        | Op::Conv2dBackwardInput
        | Op::Conv1dBackwardWeight
        | Op::Conv2dBackwardWeight => conv::kernel(call)?,
        Op::CrossEntropy | Op::CrossEntropyBackward => loss::kernel(call)?,
        Op::AttentionBackward => attention_grad::kernel(call)?,
        Op::Quantize => quant::quantize(call)?,
        Op::Dequantize => quant::dequantize(call)?,
        Op::MatmulWq => quant::matmul_wq(call)?,
        Op::MatmulI8 => quant::matmul_i8(call)?,
        Op::LayerNormBackward
        | Op::RmsNormBackward
        | Op::GroupNormBackward
        | Op::BatchNormBackward => norm_grad::kernel(call)?,
        Op::MaxPool1d | Op::MaxPool2d | Op::AvgPool1d | Op::AvgPool2d => conv::pool_kernel(call)?,
        Op::MaxPool1dBackward
        | Op::MaxPool2dBackward
        | Op::AvgPool1dBackward
        | Op::AvgPool2dBackward
        | Op::AdaptiveAvgPool2dBackward
        | Op::InterpolateBackward => conv::pool_backward_kernel(call)?,
        Op::AdaptiveAvgPool2d | Op::Interpolate => conv::resample_kernel(call)?,
        Op::GroupNorm => conv::group_norm_kernel(call)?,
        Op::BatchNorm => conv::batch_norm_kernel(call)?,
        Op::Unary(u) => elementwise::unary(call, u)?,
        Op::Predicate(p) => elementwise::predicate(call, p)?,
        Op::Activation(a) => elementwise::activation(call, a)?,
        Op::ActivationBackward(a) => elementwise::activation_backward(call, a)?,
        Op::Gelu | Op::Clamp => elementwise::gelu_clamp(call)?,
        Op::Uniform | Op::Normal | Op::Bernoulli | Op::Dropout => random::kernel(call)?,
    };
    Ok(move |b: &Bound| k(b))
}
