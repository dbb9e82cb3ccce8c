//! Kernels in the shared C dialect (`ops/kernels/c/`): OpenCL C 1.2, and CUDA C through NVRTC.
//!
//! The kernel bodies are written once, with the macros of a small prelude per dialect
//! (`prelude_opencl.h`, `prelude_cuda.h`); a program is the prelude, `common.h` and one family
//! file, specialised with `-D` options (dtypes, op, rank, tile sizes). [`KernelSpec`] names a
//! kernel and its specialisation, [`KernelSpec::source`] gives the full program for a dialect,
//! and `launch` runs an op call: it picks the kernels, builds their arguments and queues them.
//!
//! Conventions between this module and the kernels:
//! - tensors are passed as whole buffers, with element offsets in the by-value `Lay` argument
//!   (or as scalars), because views at arbitrary offsets cannot be passed to every device;
//! - layouts are described by `Lay`: a logical shape and, for up to four operands, strides
//!   and offsets in elements; dimensions that every operand walks contiguously are merged first
//!   (`Layouts::collapse`), so contiguous tensors become rank 1; elementwise kernels are
//!   compiled with `-DLAY_EXACT` and take a `Lay` of exactly their rank and operand count;
//! - each compiled kernel is cached in the device's [`anyaccel_hal::KernelCache`] under its
//!   dialect, entry and options, so each (op, dtype, specialisation) compiles once;
//! - launches are one-dimensional (`global[0]`, `local[0]`), grid-stride where the work is
//!   per element, one work-group per row or tile otherwise;
//! - everything is queued asynchronously, except that the indexing ops read back a small flag
//!   buffer to report an out-of-range index (see the `index` module).

mod attention_grad;
mod conv;
mod elementwise;
mod index;
mod loss;
mod matmul;
mod movement;
mod nn;
mod norm_grad;
mod quant;
mod random;
mod reduce;

use crate::catalog::{op_of, Op};
use std::sync::Arc;

use anyaccel_hal::{
    Buffer, DType, Device, Dialect, Error, Kernel, KernelArg, KernelSource, LaunchDims, OpCall,
    Queue, Result, Tensor,
};

const PRELUDE_OPENCL: &str = include_str!("../../kernels/c/prelude_opencl.h");
const PRELUDE_CUDA: &str = include_str!("../../kernels/c/prelude_cuda.h");
const COMMON: &str = include_str!("../../kernels/c/common.h");

/// A kernel family: one source file of `ops/kernels/c/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `elementwise.h`: unary, binary, compare, where, copy, cast, fill, arange.
    Elementwise,
    /// `index.h`: index_select, embedding, gather; the remaps (pad, flip, roll,
    /// repeat_interleave, tril, triu) and line scatters (scatter, scatter_add, index_add,
    /// one_hot).
    Index,
    /// `reduce.h`: sum, mean, max, min, argmax, argmin, cumsum, topk.
    Reduce,
    /// `nn.h`: softmax, log_softmax, layer_norm, rms_norm, rope, attention.
    Nn,
    /// `matmul.h`.
    Matmul,
    /// `random.h`: uniform, normal, bernoulli, dropout.
    Random,
    /// `conv.h`: conv1d, conv2d, the pools, adaptive_avg_pool2d and interpolate.
    Conv,
    /// `loss.h`: cross_entropy and its gradient.
    Loss,
    /// `norm_grad.h`: the gradients of layer_norm, rms_norm, group_norm and batch_norm.
    NormGrad,
    /// `quant.h`: quantize, dequantize, matmul_wq, matmul_i8.
    Quant,
    /// `attention_grad.h`: attention_backward.
    AttnGrad,
}

impl Family {
    fn text(self) -> &'static str {
        match self {
            Family::Elementwise => include_str!("../../kernels/c/elementwise.h"),
            Family::Index => include_str!("../../kernels/c/index.h"),
            Family::Reduce => include_str!("../../kernels/c/reduce.h"),
            Family::Nn => include_str!("../../kernels/c/nn.h"),
            Family::Matmul => include_str!("../../kernels/c/matmul.h"),
            Family::Random => include_str!("../../kernels/c/random.h"),
            Family::Conv => include_str!("../../kernels/c/conv.h"),
            Family::Loss => include_str!("../../kernels/c/loss.h"),
            Family::NormGrad => include_str!("../../kernels/c/norm_grad.h"),
            Family::Quant => include_str!("../../kernels/c/quant.h"),
            Family::AttnGrad => include_str!("../../kernels/c/attention_grad.h"),
        }
    }
}

/// One kernel of the shared C dialect and its specialisation.
///
/// The definitions are kept as the text of their `-D` options (` -DNAME=VALUE -DFLAG`), written
/// once as they are added: that text is the options and, after the dialect and the entry, the
/// kernel's key in the device's cache, so a repeated call formats no key and allocates one
/// string for its definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSpec {
    /// The source file.
    pub family: Family,
    /// The kernel function.
    pub entry: &'static str,
    /// ` -DNAME=VALUE` and ` -DNAME` options, in the order they were added.
    defines: String,
}

impl KernelSpec {
    /// A spec with no definitions yet.
    pub fn new(family: Family, entry: &'static str) -> KernelSpec {
        KernelSpec {
            family,
            entry,
            defines: String::with_capacity(160),
        }
    }

    /// Adds `-Dname=value` (a bare `-Dname` when the value is written empty).
    pub fn def(mut self, name: &str, value: impl std::fmt::Display) -> KernelSpec {
        use std::fmt::Write;
        self.defines.push_str(" -D");
        self.defines.push_str(name);
        let at = self.defines.len();
        let _ = write!(self.defines, "={value}");
        if self.defines.len() == at + 1 {
            self.defines.pop();
        }
        self
    }

    /// Adds `-D<prefix><SUFFIX>=value`: a slot's definition (`XT`, `X_FLOAT`, ...).
    pub fn def_slot(
        mut self,
        prefix: &str,
        suffix: &str,
        value: impl std::fmt::Display,
    ) -> KernelSpec {
        use std::fmt::Write;
        let _ = write!(self.defines, " -D{prefix}{suffix}={value}");
        self
    }

    /// Adds a bare `-Dname`.
    pub fn flag(mut self, name: &str) -> KernelSpec {
        self.defines.push_str(" -D");
        self.defines.push_str(name);
        self
    }

    /// Adds a bare `-D<prefix><NAME>`, `name` in upper case (`OP_ADD` for `add`).
    pub fn flag_upper(mut self, prefix: &str, name: &str) -> KernelSpec {
        self.defines.push_str(" -D");
        self.defines.push_str(prefix);
        self.defines
            .extend(name.chars().map(|c| c.to_ascii_uppercase()));
        self
    }

    /// The definitions as `(name, value)` pairs, an empty value for a bare `-Dname`.
    pub fn defines(&self) -> impl Iterator<Item = (&str, &str)> {
        self.define_args()
            .map(|d| d.split_once('=').unwrap_or((d, "")))
    }

    /// Each `-D` option without its leading `-D`.
    fn define_args(&self) -> impl Iterator<Item = &str> {
        self.defines.split(" -D").filter(|d| !d.is_empty())
    }

    /// The full program text for `dialect` (prelude, `common.h`, the family file) and the entry
    /// name.
    pub fn program(&self, dialect: &Dialect) -> Result<(String, &'static str)> {
        let prelude = match dialect {
            Dialect::OpenClC => PRELUDE_OPENCL,
            Dialect::Cuda => PRELUDE_CUDA,
            other => {
                return Err(Error::unsupported(format!(
                    "kernel `{}`: the shared C kernels exist in opencl-c and cuda, not {other}",
                    self.entry
                )))
            }
        };
        let mut text =
            String::with_capacity(prelude.len() + COMMON.len() + self.family.text().len() + 64);
        text.push_str(prelude);
        text.push('\n');
        text.push_str(COMMON);
        text.push('\n');
        text.push_str(self.family.text());
        Ok((text, self.entry))
    }

    /// The [`KernelSource`] to compile for `dialect`: the program, the entry and the options.
    pub fn source(&self, dialect: &Dialect) -> Result<KernelSource> {
        let (source, entry) = self.program(dialect)?;
        Ok(match dialect {
            Dialect::Cuda => KernelSource::Cuda {
                source,
                entry: entry.to_string(),
                options: self.define_args().map(|d| format!("-D{d}")).collect(),
            },
            _ => {
                // Division and square root correctly rounded, as in CUDA's default; no fast-math.
                let mut options = self.defines.trim_start().to_string();
                options.push_str(" -cl-fp32-correctly-rounded-divide-sqrt");
                KernelSource::OpenClC {
                    source,
                    entry: entry.to_string(),
                    options,
                }
            }
        })
    }

    /// The key of the compiled kernel in a device's cache.
    pub fn cache_key(&self, dialect: &Dialect) -> String {
        let dialect = dialect.name();
        let mut key =
            String::with_capacity(8 + dialect.len() + self.entry.len() + self.defines.len());
        key.push_str("clang:");
        key.push_str(dialect);
        key.push(':');
        key.push_str(self.entry);
        // The same text as the options' `-D` arguments.
        key.push_str(&self.defines);
        key
    }
}

/// Where an op call runs: its device, queue and dialect.
pub(crate) struct Ctx<'a> {
    pub device: &'a dyn Device,
    pub queue: &'a dyn Queue,
    pub dialect: Dialect,
}

impl Ctx<'_> {
    /// The compiled kernel of `spec`, from the device's cache.
    pub fn kernel(&self, spec: &KernelSpec) -> Result<Arc<dyn Kernel>> {
        let key = spec.cache_key(&self.dialect);
        self.device.kernel_cache().get_or_compile(&key, || {
            let source = spec.source(&self.dialect)?;
            self.device.compile(&source)
        })
    }

    /// Compiles (once) and launches `spec`.
    pub fn run(&self, spec: &KernelSpec, dims: LaunchDims, args: &[KernelArg]) -> Result<()> {
        let kernel = self.kernel(spec)?;
        self.queue.launch(&kernel, dims, args)
    }

    /// The work-group size for one-dimensional kernels: 256, or the device's largest power of
    /// two below it.
    pub fn wg(&self) -> u32 {
        let max = self.device.info().max_work_group_size.clamp(1, 256);
        1u32 << (63 - max.leading_zeros())
    }

    /// A grid-stride launch over `n` items: at most `cap_groups` groups of [`Ctx::wg`] items.
    pub fn grid(&self, n: usize, cap_groups: usize) -> LaunchDims {
        let wg = self.wg() as usize;
        let groups = n.div_ceil(wg).clamp(1, cap_groups.max(1));
        LaunchDims {
            global: [(groups * wg) as u64, 1, 1],
            local: Some([wg as u32, 1, 1]),
        }
    }

    /// `groups` work-groups of `wg` items.
    pub fn groups(&self, groups: usize, wg: u32) -> LaunchDims {
        LaunchDims {
            global: [(groups * wg as usize) as u64, 1, 1],
            local: Some([wg, 1, 1]),
        }
    }

    /// A scratch buffer of `bytes` bytes (at least 1) on the device.
    /// The work-group size for one group per row of `len` elements: 64 at most for short rows.
    pub fn row_wg(&self, len: usize) -> u32 {
        if len <= 256 {
            self.wg().min(64)
        } else {
            self.wg()
        }
    }

    pub fn scratch(&self, bytes: usize) -> Result<Buffer> {
        self.device.alloc(bytes.max(1))
    }
}

/// Most groups of an elementwise launch: up to 2^22 groups each item takes one element (CPU
/// devices such as PoCL's vectorise across the items of a group, 7x faster there than a few
/// thousand groups looping over many elements each); beyond, the items loop (grid-stride).
pub(crate) const EW_GROUPS: usize = 1 << 22;

/// The element offset of a tensor's element `[0, 0, ...]` from the start of its buffer.
pub(crate) fn base_offset(t: &Tensor) -> i64 {
    (t.view().offset() / t.dtype().size_in_bytes() + t.desc().offset) as i64
}

/// The whole buffer of a tensor, as a kernel argument.
pub(crate) fn buf(t: &Tensor) -> KernelArg {
    KernelArg::Buffer(t.view().buffer().whole())
}

/// The dtype's name in the kernels (`st_f16`, `ld_f16`, ...).
pub(crate) fn dt(d: DType) -> &'static str {
    d.name()
}

/// The largest rank of a [`Lay`], `MAXR` in `common.h`.
pub(crate) const MAXR: usize = 8;
/// The most operands of a [`Lay`].
pub(crate) const MAXOPS: usize = 4;

/// The by-value layout argument of `common.h`: a logical shape and up to four operands' strides
/// and offsets, in elements, as `i64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lay {
    pub shape: [i64; MAXR],
    pub st: [[i64; MAXR]; MAXOPS],
    pub off: [i64; MAXOPS],
}

impl Lay {
    /// Its bytes, as the kernels' `Lay` struct holds them.
    pub fn arg(&self) -> KernelArg {
        self.arg_exact(MAXR, MAXOPS)
    }

    /// Its first `rank` dimensions (at least one) and `nops` operands, as a kernel compiled with
    /// `-DLAY_EXACT -DRANK=rank -DNOPS=nops` holds them.
    pub fn arg_exact(&self, rank: usize, nops: usize) -> KernelArg {
        let (r, k) = (rank.clamp(1, MAXR), nops.min(MAXOPS));
        let mut bytes = Vec::with_capacity(8 * (r + k * r + k));
        let mut put = |v: &i64| bytes.extend_from_slice(&v.to_le_bytes());
        self.shape[..r].iter().for_each(&mut put);
        self.st[..k]
            .iter()
            .for_each(|st| st[..r].iter().for_each(&mut put));
        self.off[..k].iter().for_each(&mut put);
        KernelArg::Bytes(bytes)
    }
}

/// Operands walked over one logical shape: each with strides (already broadcast to the shape)
/// and an offset, in elements.
#[derive(Debug, Clone)]
pub(crate) struct Layouts {
    pub shape: Dims,
    pub ops: smallvec::SmallVec<[(Dims, i64); MAXOPS]>,
}

/// A shape or strides, inline up to [`MAXR`] dimensions.
pub(crate) type Dims = smallvec::SmallVec<[usize; MAXR]>;

impl Layouts {
    /// `shape` with no operands yet.
    pub fn new(shape: &[usize]) -> Layouts {
        Layouts {
            shape: Dims::from_slice(shape),
            ops: smallvec::SmallVec::new(),
        }
    }

    /// Adds an operand with these strides (one per dimension of the shape) and offset.
    pub fn with(mut self, strides: impl Into<Dims>, offset: i64) -> Layouts {
        self.ops.push((strides.into(), offset));
        self
    }

    /// Adds a tensor broadcast to the shape (zero strides on broadcast dimensions).
    pub fn tensor(self, t: &Tensor) -> Layouts {
        let strides = broadcast_strides(t, &self.shape);
        self.with(strides, base_offset(t))
    }

    /// Drops size-1 dimensions and merges neighbours that every operand walks contiguously.
    pub fn collapse(mut self) -> Layouts {
        let mut shape = Dims::new();
        let mut strides: smallvec::SmallVec<[Dims; MAXOPS]> =
            smallvec::smallvec![Dims::new(); self.ops.len()];
        for d in (0..self.shape.len()).filter(|&d| self.shape[d] != 1) {
            // Dimension d continues the last kept one when every operand steps over the whole
            // of d with the last one's stride.
            let contiguous = self
                .ops
                .iter()
                .zip(&strides)
                .all(|((st, _), cur)| cur.last().copied() == Some(st[d] * self.shape[d]));
            if let (true, Some(last)) = (contiguous, shape.last_mut()) {
                *last *= self.shape[d];
                for ((st, _), cur) in self.ops.iter().zip(strides.iter_mut()) {
                    if let Some(s) = cur.last_mut() {
                        *s = st[d];
                    }
                }
            } else {
                shape.push(self.shape[d]);
                for ((st, _), cur) in self.ops.iter().zip(strides.iter_mut()) {
                    cur.push(st[d]);
                }
            }
        }
        for ((st, _), cur) in self.ops.iter_mut().zip(strides) {
            *st = cur;
        }
        self.shape = shape;
        self
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The `Lay` argument; `op` names the op in the error for a rank above [`MAXR`].
    pub fn lay(&self, op: &str) -> Result<Lay> {
        if self.rank() > MAXR || self.ops.len() > MAXOPS {
            return Err(Error::unsupported(format!(
                "{op}: a layout of rank {} (after merging contiguous dimensions) with {} operands; \
                 the opencl-c and cuda kernels take rank {MAXR} and {MAXOPS} operands at most",
                self.rank(),
                self.ops.len()
            )));
        }
        let mut lay = Lay {
            shape: [1; MAXR],
            st: [[0; MAXR]; MAXOPS],
            off: [0; MAXOPS],
        };
        for (d, &s) in self.shape.iter().enumerate() {
            lay.shape[d] = s as i64;
        }
        for (k, (st, off)) in self.ops.iter().enumerate() {
            for (d, &s) in st.iter().enumerate() {
                lay.st[k][d] = s as i64;
            }
            lay.off[k] = *off;
        }
        Ok(lay)
    }
}

/// A tensor's strides broadcast to `shape` (zero where it is broadcast or missing).
pub(crate) fn broadcast_strides(t: &Tensor, shape: &[usize]) -> Dims {
    let rank = t.rank();
    let lead = shape.len() - rank;
    let mut strides: Dims = smallvec::smallvec![0; shape.len()];
    for i in 0..rank {
        if t.shape()[i] == shape[lead + i] {
            strides[lead + i] = t.strides()[i];
        }
    }
    strides
}

/// Options naming an operand slot's dtype: `-D<slot>T=<dtype> -D<slot>_FLOAT=<0|1>`.
pub(crate) fn dtype_defs(spec: KernelSpec, slot: &str, d: DType) -> KernelSpec {
    spec.def_slot(slot, "T", dt(d))
        .def_slot(slot, "_FLOAT", d.is_float() as u8)
}

/// Runs `call` with the shared C kernels in `dialect` (OpenCL C or CUDA C).
///
/// The call has been validated and its outputs allocated by the dispatcher; at least one
/// output is not empty.
pub(crate) fn launch(
    device: &dyn Device,
    queue: &dyn Queue,
    call: &OpCall,
    dialect: Dialect,
) -> Result<()> {
    let ctx = Ctx {
        device,
        queue,
        dialect,
    };
    match op_of(&call.op)? {
        Op::Fill | Op::Arange | Op::Copy | Op::Cast | Op::Where => {
            elementwise::movement(&ctx, call)
        }
        Op::Concat | Op::IndexSelect | Op::Embedding | Op::Gather => index::launch(&ctx, call),
        Op::Pad | Op::Flip | Op::Roll | Op::Tril | Op::Triu | Op::RepeatInterleave => {
            movement::remap_launch(&ctx, call)
        }
        Op::Scatter | Op::ScatterAdd | Op::IndexAdd | Op::OneHot | Op::EmbeddingBackward => {
            movement::scatter_launch(&ctx, call)
        }
        Op::MaskedFill
        | Op::SoftmaxBackward
        | Op::LogSoftmaxBackward
        | Op::AdaptiveAvgPool3d
        | Op::AdaptiveAvgPool3dBackward => Err(crate::catalog::misrouted(&call.op)),
        Op::Binary(_) | Op::Compare(_) => elementwise::binary(&ctx, call),
        Op::Reduce(_)
        | Op::Cumsum
        | Op::Cumprod
        | Op::Cummax
        | Op::Cummin
        | Op::Topk
        | Op::Sort
        | Op::Argsort => reduce::launch(&ctx, call),
        Op::Softmax | Op::LogSoftmax | Op::LayerNorm | Op::RmsNorm | Op::Rope | Op::Attention => {
            nn::launch(&ctx, call)
        }
        Op::Matmul => matmul::launch(&ctx, call),
        Op::Conv1d
        | Op::Conv2d
        | Op::ConvTranspose1d
        | Op::ConvTranspose2d
        | Op::Conv1dBackwardInput
        | Op::Conv2dBackwardInput
        | Op::Conv1dBackwardWeight
        | Op::Conv2dBackwardWeight => conv::launch(&ctx, call),
        Op::CrossEntropy | Op::CrossEntropyBackward => loss::launch(&ctx, call),
        Op::Quantize | Op::Dequantize | Op::MatmulWq | Op::MatmulI8 => quant::launch(&ctx, call),
        Op::AttentionBackward => attention_grad::launch(&ctx, call),
        Op::LayerNormBackward
        | Op::RmsNormBackward
        | Op::GroupNormBackward
        | Op::BatchNormBackward => norm_grad::launch(&ctx, call),
        Op::MaxPool1d | Op::MaxPool2d | Op::AvgPool1d | Op::AvgPool2d => conv::pool(&ctx, call),
        Op::MaxPool1dBackward
        | Op::MaxPool2dBackward
        | Op::AvgPool1dBackward
        | Op::AvgPool2dBackward
        | Op::AdaptiveAvgPool2dBackward
        | Op::InterpolateBackward => conv::pool_backward(&ctx, call),
        Op::AdaptiveAvgPool2d | Op::Interpolate => conv::resample(&ctx, call),
        Op::GroupNorm => conv::group_norm(&ctx, call),
        Op::BatchNorm => conv::batch_norm(&ctx, call),
        Op::Unary(_) | Op::Activation(_) | Op::Gelu | Op::Clamp => elementwise::unary(&ctx, call),
        Op::Predicate(_) => elementwise::predicate(&ctx, call),
        Op::ActivationBackward(_) => elementwise::backward(&ctx, call),
        Op::Uniform | Op::Normal | Op::Bernoulli | Op::Dropout => random::launch(&ctx, call),
    }
}

#[cfg(test)]
mod tests;
