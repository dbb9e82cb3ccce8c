//! WGSL kernels: every op for devices that compile WGSL (the Vulkan backend, through naga).
//!
//! WGSL has no preprocessor, so each kernel is *generated*: the op layer picks sections of the
//! `.wgsl` files under `ops/kernels/wgsl/` (element access per dtype, conversions, the op's
//! body) and substitutes names into them. The device's kernel cache is keyed by what the text
//! is generated from (the sections' places, the bindings and their accesses, the parameters, the
//! walks' ranks, the body or a key that determines it), and the text is written only on a miss,
//! so each (op, dtype, variant) compiles once per device and a repeated call generates no WGSL.
//!
//! The conventions the kernels rely on (those of the Vulkan backend's launch):
//!
//! - **Tensors** are bound as windows of their buffers that start at a multiple of 256 bytes
//!   (the largest `minStorageBufferOffsetAlignment` Vulkan allows) and end after the tensor's
//!   last element; the tensor's element offset inside its window is data. A tensor that needs a
//!   window larger than the device's `maxStorageBufferRange` is `Unsupported`, naming the limit.
//! - **Layouts** (shapes, strides, offsets; zero strides for broadcasts) go in a small storage
//!   buffer of u32 written for each launch, after merging the dimensions that are contiguous in
//!   every tensor; kernels turn a linear index into offsets with a `walk` written for the rank
//!   that is left (`layout.wgsl`), so a contiguous walk is one multiply-add. Ranks above
//!   [`MAX_RANK`] and sizes or offsets beyond u32 are `Unsupported`.
//! - **Storage per dtype**: f32, i32, i64 and f64 natively (i64 and f64 only where the device
//!   has them, which its dtypes say); f16 as `array<f16>` with `enable f16;`; bf16, u8 and
//!   bool as bits of u32 words. Outputs of those three are written through a staging word per
//!   element and merged into their words by a `pack` launch (naga cannot bound-check atomics,
//!   and plain stores of neighbouring elements of one word would race); bytes outside the
//!   output's layout keep their value. Moves (`copy`, `concat`, `where`, indexing, `fill`) work
//!   on raw bits of the element's size, so values pass unchanged.
//! - **Compute**: 16-bit floats in f32; integers wrap. Sums and products that accumulate
//!   (reductions, cumsum, norms, attention, rope, the softmax denominator) do so in f64 where
//!   the device has it and in f32 otherwise; matmul accumulates in f32 and sums an element again
//!   in f64 when its f32 sum is not finite. NaN tests work on bits: drivers may compile float
//!   comparisons without NaN semantics (lavapipe's `!=` is false for NaN).
//! - **Loops**: some drivers stop a loop after 65535 iterations per invocation (lavapipe), so
//!   long rows are split across work groups and launches (reductions, cumsum), loops over a row
//!   take 16 elements per iteration, and topk sorts long lines with one launch per step of a
//!   bitonic network. Where an op would still need more (attention with very many keys, matmul
//!   with a very long inner dimension), it is `Unsupported` with the numbers.
//! - **Index errors**: `index_select`, `embedding` and `gather` never read out of range; a bad
//!   index sets a flag word, which the call reads back at once (a blocking read of 4 bytes);
//!   when it is set, the call reads the indices and returns `OutOfBounds` naming the first bad
//!   index in their row-major order.

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
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use anyaccel_hal::{
    Buffer, BufferView, DType, Device, Error, KernelArg, KernelSource, LaunchDims, OpCall, Queue,
    Result, Tensor, TensorDesc,
};

/// The most dimensions a layout may have after merging contiguous ones.
pub(crate) const MAX_RANK: usize = 8;

/// Window starts are multiples of this (the largest alignment Vulkan lets a device require).
const WINDOW_ALIGN: usize = 256;
/// Bytes of push constants every Vulkan device has (`maxPushConstantsSize` is at least 128):
/// scalars and layout words up to this size are passed with the launch instead of in a buffer.
const IMMEDIATE_BYTES: usize = 128;

static COMMON: &str = include_str!("../../kernels/wgsl/common.wgsl");
static ACCESS: &str = include_str!("../../kernels/wgsl/access.wgsl");
static LAYOUT: &str = include_str!("../../kernels/wgsl/layout.wgsl");

/// The text of section `name` of a kernel file: from the line `//# name` to the next `//# `.
pub(crate) fn section(file: &'static str, name: &str) -> Result<&'static str> {
    section_with_uses(file, name).map(|(_, text)| text)
}

/// Section `name` of a kernel file and the sections it uses: a marker line
/// `//# name uses other another` names the sections of the same file that its text calls.
///
/// Each file is split into its sections once; later lookups are a map lookup, because every op
/// call looks up several sections.
pub(crate) fn section_with_uses(
    file: &'static str,
    name: &str,
) -> Result<(&'static str, &'static str)> {
    type Sections = HashMap<&'static str, (&'static str, &'static str)>;
    static INDEX: OnceLock<Mutex<HashMap<usize, Sections>>> = OnceLock::new();
    let mut files = INDEX
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    files
        .entry(file.as_ptr() as usize)
        .or_insert_with(|| split_sections(file))
        .get(name)
        .copied()
        .ok_or_else(|| Error::internal(format!("WGSL kernels: no section `{name}`")))
}

/// The sections of a kernel file by name: each runs from the line after its `//# name` marker
/// up to and including the newline before the next marker (or to the end of the file). The
/// first section of a name counts.
fn split_sections(file: &'static str) -> HashMap<&'static str, (&'static str, &'static str)> {
    let mut out = HashMap::new();
    let mut at = 0;
    while let Some(found) = file[at..].find("//# ") {
        let marker = at + found;
        let name_start = marker + 4;
        let Some(eol) = file[name_start..].find('\n') else {
            break;
        };
        let header = &file[name_start..name_start + eol];
        let (name, uses) = header.split_once(" uses ").unwrap_or((header, ""));
        let start = name_start + eol + 1;
        let end = file[start..]
            .find("\n//# ")
            .map_or(file.len(), |e| start + e + 1);
        out.entry(name).or_insert((uses, &file[start..end]));
        at = start;
    }
    out
}

/// Runs one validated op call with WGSL kernels.
pub(crate) fn launch(device: &dyn Device, queue: &dyn Queue, call: &OpCall) -> Result<()> {
    let cx = Cx { device, queue };
    match op_of(&call.op)? {
        Op::Fill | Op::Arange | Op::Copy | Op::Cast | Op::Concat | Op::Where => {
            elementwise::movement(&cx, call)
        }
        Op::IndexSelect | Op::Embedding | Op::Gather => index::launch(&cx, call),
        Op::Pad | Op::Flip | Op::Roll | Op::Tril | Op::Triu | Op::RepeatInterleave => {
            movement::remap_launch(&cx, call)
        }
        Op::Scatter | Op::ScatterAdd | Op::IndexAdd | Op::OneHot | Op::EmbeddingBackward => {
            movement::scatter_launch(&cx, call)
        }
        Op::MaskedFill
        | Op::SoftmaxBackward
        | Op::LogSoftmaxBackward
        | Op::AdaptiveAvgPool3d
        | Op::AdaptiveAvgPool3dBackward => Err(crate::catalog::misrouted(&call.op)),
        Op::Binary(_) | Op::Compare(_) => elementwise::binary(&cx, call),
        Op::Reduce(_)
        | Op::Cumsum
        | Op::Cumprod
        | Op::Cummax
        | Op::Cummin
        | Op::Topk
        | Op::Sort
        | Op::Argsort => reduce::launch(&cx, call),
        Op::Softmax | Op::LogSoftmax | Op::LayerNorm | Op::RmsNorm | Op::Rope | Op::Attention => {
            nn::launch(&cx, call)
        }
        Op::Matmul => matmul::launch(&cx, call),
        Op::Conv1d
        | Op::Conv2d
        | Op::ConvTranspose1d
        | Op::ConvTranspose2d
        | Op::Conv1dBackwardInput
        | Op::Conv2dBackwardInput
        | Op::Conv1dBackwardWeight
        | Op::Conv2dBackwardWeight => conv::launch(&cx, call),
        Op::CrossEntropy | Op::CrossEntropyBackward => loss::launch(&cx, call),
        Op::Quantize | Op::Dequantize | Op::MatmulWq | Op::MatmulI8 => quant::launch(&cx, call),
        Op::AttentionBackward => attention_grad::launch(&cx, call),
        Op::LayerNormBackward
        | Op::RmsNormBackward
        | Op::GroupNormBackward
        | Op::BatchNormBackward => norm_grad::launch(&cx, call),
        Op::MaxPool1d | Op::MaxPool2d | Op::AvgPool1d | Op::AvgPool2d => conv::pool(&cx, call),
        Op::MaxPool1dBackward
        | Op::MaxPool2dBackward
        | Op::AvgPool1dBackward
        | Op::AvgPool2dBackward
        | Op::AdaptiveAvgPool2dBackward
        | Op::InterpolateBackward => conv::pool_backward(&cx, call),
        Op::AdaptiveAvgPool2d | Op::Interpolate => conv::resample(&cx, call),
        Op::GroupNorm => conv::group_norm(&cx, call),
        Op::BatchNorm => conv::batch_norm(&cx, call),
        Op::Unary(_) | Op::Activation(_) | Op::Gelu | Op::Clamp => elementwise::unary(&cx, call),
        Op::Predicate(_) => elementwise::predicate(&cx, call),
        Op::ActivationBackward(_) => elementwise::backward(&cx, call),
        Op::Uniform | Op::Normal | Op::Bernoulli | Op::Dropout => random::launch(&cx, call),
    }
}

/// The device and queue of a call.
pub(crate) struct Cx<'a> {
    pub device: &'a dyn Device,
    pub queue: &'a dyn Queue,
}

impl Cx<'_> {
    /// The type float sums and products accumulate in: f64 where the device has it (so that
    /// intermediate results near the end of f32's range do not overflow where the exact result
    /// is finite), else f32.
    pub fn wide(&self) -> &'static str {
        if self.device.caps().has_dtype(DType::F64) {
            "f64"
        } else {
            "f32"
        }
    }
}

/// How a kernel reads and writes the elements of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    F32,
    F16,
    BF16,
    F64,
    I32,
    I64,
    U8,
    I8,
    Bool,
    /// Raw bits of a 2-byte element.
    Raw2,
    /// Raw bits of a 4-byte element.
    Raw4,
    /// Raw bits of an 8-byte element, as `vec2<u32>`.
    Raw8,
}

impl Access {
    /// The typed access of a dtype.
    pub fn of(dtype: DType) -> Access {
        match dtype {
            DType::F32 => Access::F32,
            DType::F16 => Access::F16,
            DType::BF16 => Access::BF16,
            DType::F64 => Access::F64,
            DType::I32 => Access::I32,
            DType::I64 => Access::I64,
            DType::U8 => Access::U8,
            DType::I8 => Access::I8,
            DType::Bool => Access::Bool,
        }
    }

    /// The raw-bits access of a dtype's element size.
    pub fn raw(dtype: DType) -> Access {
        match dtype.size_in_bytes() {
            1 => Access::U8,
            2 => Access::Raw2,
            4 => Access::Raw4,
            _ => Access::Raw8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Access::F32 => "f32",
            Access::F16 => "f16",
            Access::BF16 => "bf16",
            Access::F64 => "f64",
            Access::I32 => "i32",
            Access::I64 => "i64",
            Access::U8 => "u8",
            Access::I8 => "i8",
            Access::Bool => "bool",
            Access::Raw2 => "raw2",
            Access::Raw4 => "raw4",
            Access::Raw8 => "raw8",
        }
    }

    /// Stored in parts of shared words: written through a staging buffer and `pack`.
    fn sub_word(self) -> bool {
        matches!(
            self,
            Access::BF16 | Access::U8 | Access::I8 | Access::Bool | Access::Raw2
        )
    }

    /// The element type of the binding's array.
    fn array_type(self) -> &'static str {
        match self {
            Access::F32 => "f32",
            Access::F16 => "f16",
            Access::F64 => "f64",
            Access::I32 => "i32",
            Access::I64 => "i64",
            _ => "u32",
        }
    }
}

/// A tensor as a kernel sees it: the window of its buffer that is bound, and its layout with
/// the offset counted from the window's start.
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub view: BufferView,
    pub desc: TensorDesc,
}

/// Binds the window of `t`'s buffer that holds its elements.
pub(crate) fn bind(t: &Tensor) -> Result<Bound> {
    bind_desc(t, t.desc().clone())
}

/// Binds the window of `t`'s buffer that holds the elements of `desc`, a layout in `t`'s view
/// (a narrowed part of `t`, for instance).
pub(crate) fn bind_desc(t: &Tensor, desc: TensorDesc) -> Result<Bound> {
    let size = desc.dtype.size_in_bytes();
    let buffer = t.view().buffer();
    if desc.numel() == 0 {
        return Ok(Bound {
            view: buffer.view(0, 0)?,
            desc: TensorDesc { offset: 0, ..desc },
        });
    }
    let start = t.view().offset() + desc.offset * size;
    let end = start + desc.span() * size;
    let window = start / WINDOW_ALIGN * WINDOW_ALIGN;
    let view = buffer.view(window, end - window)?;
    Ok(Bound {
        view,
        desc: TensorDesc {
            offset: (start - window) / size,
            ..desc
        },
    })
}

/// Strides of `desc` broadcast to `shape` (aligned at the last dimension; zero where `desc`
/// has size 1 or no dimension).
pub(crate) fn broadcast_strides(desc: &TensorDesc, shape: &[usize]) -> Vec<usize> {
    let lead = shape.len() - desc.rank();
    let mut strides = vec![0; shape.len()];
    for i in 0..desc.rank() {
        if desc.shape[i] == shape[lead + i] && desc.shape[i] != 1 {
            strides[lead + i] = desc.strides[i];
        }
    }
    strides
}

/// An index space that a kernel walks: a shape, and for each of its tensors (at most four) an
/// element offset and strides over that shape.
#[derive(Debug, Clone)]
pub(crate) struct Space {
    shape: Vec<usize>,
    tensors: Vec<(usize, Vec<usize>)>,
}

impl Space {
    /// A space of `shape` with no tensors yet.
    pub fn new(shape: &[usize]) -> Space {
        Space {
            shape: shape.to_vec(),
            tensors: Vec::new(),
        }
    }

    /// Adds a tensor's offset and strides over the space's shape.
    pub fn with(mut self, offset: usize, strides: Vec<usize>) -> Space {
        self.tensors.push((offset, strides));
        self
    }

    /// Adds a bound tensor, broadcast to the space's shape.
    pub fn with_bound(self, b: &Bound) -> Space {
        let strides = broadcast_strides(&b.desc, &self.shape);
        let offset = b.desc.offset;
        self.with(offset, strides)
    }

    /// Drops size-1 dimensions and merges neighbours that are contiguous in every tensor.
    fn collapse(&self) -> Space {
        let keep: Vec<usize> = (0..self.shape.len())
            .filter(|&d| self.shape[d] != 1)
            .collect();
        let mut shape: Vec<usize> = Vec::new();
        let mut strides: Vec<Vec<usize>> = vec![Vec::new(); self.tensors.len()];
        for d in keep {
            let size = self.shape[d];
            let merge = !shape.is_empty()
                && self.tensors.iter().enumerate().all(|(t, (_, s))| {
                    strides[t].last().copied() == Some(s[d].saturating_mul(size))
                });
            if merge {
                let last = shape.len() - 1;
                shape[last] *= size;
                for (t, (_, s)) in self.tensors.iter().enumerate() {
                    let l = strides[t].len() - 1;
                    strides[t][l] = s[d];
                }
            } else {
                shape.push(size);
                for (t, (_, s)) in self.tensors.iter().enumerate() {
                    strides[t].push(s[d]);
                }
            }
        }
        Space {
            shape,
            tensors: self
                .tensors
                .iter()
                .zip(strides)
                .map(|((o, _), s)| (*o, s))
                .collect(),
        }
    }

    /// Writes a merged space's words (see `layout.wgsl`).
    fn encode(&self, op: &str, out: &mut Vec<u32>) -> Result<()> {
        let s = self;
        if s.shape.len() > MAX_RANK {
            return Err(Error::unsupported(format!(
                "{op}: the WGSL kernels take layouts of at most {MAX_RANK} dimensions after \
                 merging contiguous ones; this one has {} (shape {:?})",
                s.shape.len(),
                self.shape
            )));
        }
        if s.tensors.len() > 4 {
            return Err(Error::internal(format!(
                "{op}: a WGSL index space walks at most 4 tensors"
            )));
        }
        let word = |v: usize| {
            u32::try_from(v).map_err(|_| {
                Error::unsupported(format!(
                    "{op}: a size, stride or offset of {v} elements does not fit the WGSL \
                     kernels' 32-bit indices"
                ))
            })
        };
        out.push(s.shape.len() as u32);
        out.push(s.tensors.len() as u32);
        for &d in &s.shape {
            out.push(word(d)?);
        }
        for (offset, strides) in &s.tensors {
            out.push(word(*offset)?);
            for (&st, &d) in strides.iter().zip(&s.shape) {
                // A stride only matters up to the last index; check what it reaches.
                word(st.saturating_mul(d.saturating_sub(1)))?;
                out.push(word(st)?);
            }
        }
        Ok(())
    }
}

/// A binding of a kernel, from which its declaration and access functions are generated.
enum Decl {
    /// A tensor: `ld_name` (read) or `st_name` (write) through `access`.
    Tensor {
        name: String,
        access: Access,
        write: bool,
    },
    /// A buffer of words: `array<elem>`.
    Words {
        name: String,
        elem: String,
        write: bool,
    },
}

impl Decl {
    /// Its kind (`T` tensor, `W` words), name, array element type and direction.
    fn parts(&self) -> (char, &str, &str, bool) {
        match self {
            Decl::Tensor {
                name,
                access,
                write,
            } => ('T', name, access.array_type(), *write),
            Decl::Words { name, elem, write } => ('W', name, elem, *write),
        }
    }
}

/// The `walk` function of one index space: what [`walk_text`] writes it from.
#[derive(Clone, Copy)]
struct Walk {
    space: usize,
    rank: usize,
    tensors: usize,
    start: usize,
}

/// Text a caller generates only when the kernel is not yet compiled, named by a key that
/// determines it.
type Lazy<'a> = Box<dyn FnOnce() -> Result<String> + 'a>;

/// One kernel being generated, with the arguments of its launch.
///
/// A launch keys the device's kernel cache by what the text is made of (the sections' places,
/// the bindings, the parameters, the walks' shapes, the body or its key), and writes the text
/// only when that key is not yet compiled: a repeated call generates no WGSL.
pub(crate) struct Shader<'a> {
    cx: &'a Cx<'a>,
    op: String,
    entry: &'static str,
    f16: bool,
    sections: Vec<&'static str>,
    owned: Vec<String>,
    decls: Vec<Decl>,
    walks: Vec<Walk>,
    /// Layout words read from the push constants (`p.L<i>`) rather than a buffer (`L[i]`).
    inline_walks: bool,
    params: Vec<(String, &'static str, u32)>,
    /// Layout words passed after the scalars, as the block's members `L0`, `L1`, ...
    inline_words: Vec<u32>,
    args: Vec<KernelArg>,
    spaces: Vec<Space>,
    body: String,
    /// A body generated on a cache miss, and its key.
    lazy_body: Option<(String, Lazy<'a>)>,
    /// Sub-word outputs: (staging buffer, the output's window, lanes per word).
    packs: Vec<(Buffer, BufferView, u32)>,
}

impl<'a> Shader<'a> {
    /// A kernel for `op` whose `@compute` function is `entry`.
    pub fn new(cx: &'a Cx<'a>, op: &str, entry: &'static str) -> Shader<'a> {
        Shader {
            cx,
            op: op.to_string(),
            entry,
            f16: false,
            sections: Vec::new(),
            owned: Vec::new(),
            decls: Vec::new(),
            walks: Vec::new(),
            inline_walks: false,
            params: Vec::new(),
            inline_words: Vec::new(),
            args: Vec::new(),
            spaces: Vec::new(),
            body: String::new(),
            lazy_body: None,
            packs: Vec::new(),
        }
    }

    /// Includes a section of kernel text (once).
    pub fn include(&mut self, text: &'static str) -> &mut Self {
        if !self.sections.iter().any(|s| std::ptr::eq(*s, text)) {
            self.sections.push(text);
        }
        self
    }

    /// Includes generated helper text (once).
    pub fn include_owned(&mut self, text: String) -> &mut Self {
        if !self.owned.contains(&text) {
            self.owned.push(text);
        }
        self
    }

    /// Includes section `name` of `file`.
    /// Includes section `name` of `file`, after the sections it uses (`//# name uses ...`).
    pub fn use_section(&mut self, file: &'static str, name: &str) -> Result<&mut Self> {
        let (uses, text) = section_with_uses(file, name)?;
        for used in uses.split_whitespace() {
            if used != name {
                self.use_section(file, used)?;
            }
        }
        Ok(self.include(text))
    }

    /// Includes the helpers that values of `dtype` need.
    pub fn need(&mut self, dtype: DType) -> Result<()> {
        match dtype {
            DType::F16 => {
                self.f16 = true;
                self.use_section(COMMON, "common_f16")?;
            }
            DType::I64 => {
                self.use_section(COMMON, "common_i64")?;
            }
            DType::F64 => {
                self.use_section(COMMON, "common_f64")?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Binds a tensor as `name` with `ld_name(i)` (inputs) or `st_name(i, v)` (outputs).
    pub fn tensor(&mut self, name: &str, b: &Bound, access: Access, write: bool) -> Result<()> {
        match access {
            Access::F16 => self.need(DType::F16)?,
            Access::I64 => self.need(DType::I64)?,
            Access::F64 => self.need(DType::F64)?,
            _ => {}
        }
        self.decls.push(Decl::Tensor {
            name: name.to_string(),
            access,
            write,
        });
        if write && access.sub_word() {
            // Elements that share a word go through a staging word each, merged by `pack`.
            let size = b.desc.dtype.size_in_bytes();
            let elems = b.view.len() / size;
            let staged = self.cx.device.alloc(elems.max(1) * 4)?;
            self.cx.queue.fill(&staged.whole(), &[0, 0, 0, 0])?;
            self.args.push(KernelArg::Buffer(staged.whole()));
            self.packs
                .push((staged, b.view.clone(), if size == 1 { 4 } else { 2 }));
        } else {
            self.args.push(KernelArg::Buffer(b.view.clone()));
        }
        Ok(())
    }

    /// Binds a buffer of u32 words (scratch space, flags) as `name`.
    pub fn words(&mut self, name: &str, view: BufferView, elem: &str, write: bool) {
        self.decls.push(Decl::Words {
            name: name.to_string(),
            elem: elem.to_string(),
            write,
        });
        self.args.push(KernelArg::Buffer(view));
    }

    /// Adds a `u32` member `p.name`.
    pub fn u32(&mut self, name: &str, v: u32) -> &mut Self {
        self.params.push((name.to_string(), "u32", v));
        self
    }

    /// Adds a `u32` member from a size, or `Unsupported` when it does not fit.
    pub fn size(&mut self, name: &str, v: usize) -> Result<&mut Self> {
        let w = u32::try_from(v).map_err(|_| {
            Error::unsupported(format!(
                "{}: {name} = {v} does not fit the WGSL kernels' 32-bit indices",
                self.op
            ))
        })?;
        Ok(self.u32(name, w))
    }

    /// Adds an `i32` member `p.name`.
    pub fn i32(&mut self, name: &str, v: i32) -> &mut Self {
        self.params.push((name.to_string(), "i32", v as u32));
        self
    }

    /// Adds an `f32` member `p.name`.
    pub fn f32(&mut self, name: &str, v: f32) -> &mut Self {
        self.params.push((name.to_string(), "f32", v.to_bits()));
        self
    }

    /// Adds an index space; `walk(k, lin)` walks the k-th one added.
    pub fn space(&mut self, space: Space) -> u32 {
        self.spaces.push(space);
        (self.spaces.len() - 1) as u32
    }

    /// Appends WGSL text (the entry point and its helpers).
    pub fn body(&mut self, text: &str) -> &mut Self {
        self.body.push_str(text);
        self
    }

    /// The body as `generate` writes it, run only when the kernel is not compiled yet; `key`
    /// must determine the text (equal keys, equal texts). It follows any [`Shader::body`] text.
    pub fn body_lazy(
        &mut self,
        key: String,
        generate: impl FnOnce() -> Result<String> + 'a,
    ) -> &mut Self {
        self.lazy_body = Some((key, Box::new(generate)));
        self
    }

    /// The kernel's WGSL text, with `body` (the lazily generated body, if any) last.
    fn text(&self, common: &str, body: &str) -> Result<String> {
        let mut text = String::new();
        if self.f16 {
            text.push_str("enable f16;\n");
        }
        text.push_str("struct Params {\n");
        for (name, ty, _) in &self.params {
            let _ = writeln!(text, "    {name}: {ty},");
        }
        for i in 0..self.inline_words.len() {
            let _ = writeln!(text, "    L{i}: u32,");
        }
        text.push_str("}\nvar<immediate> p: Params;\n");
        for (binding, d) in self.decls.iter().enumerate() {
            let (_, name, elem, write) = d.parts();
            let _ = writeln!(
                text,
                "@group(0) @binding({binding}) var<storage, {}> {name}: array<{elem}>;",
                if write { "read_write" } else { "read" },
            );
        }
        text.push_str(common);
        for s in &self.sections {
            text.push_str(s);
        }
        for s in &self.owned {
            text.push_str(s);
        }
        let word: &dyn Fn(usize) -> String = if self.inline_walks {
            &|i| format!("p.L{i}")
        } else {
            &|i| format!("L[{i}u]")
        };
        for w in &self.walks {
            text.push_str(&walk_text(w.space, w.rank, w.tensors, w.start, word)?);
        }
        for d in &self.decls {
            if let Decl::Tensor {
                name,
                access,
                write,
            } = d
            {
                let kind = access.name();
                let f = if *write {
                    section(ACCESS, &format!("store_{kind}"))?
                } else {
                    section(ACCESS, &format!("load_{kind}"))?
                };
                text.push_str(&f.replace("$NAME", name));
            }
        }
        text.push_str(&self.body);
        text.push_str(body);
        Ok(text)
    }

    /// The key of the kernel in the device's cache: everything [`Shader::text`] is made of,
    /// without building it. Sections of the kernel files are named by their place in the
    /// program's static text (the same place is the same text), generated parts by what
    /// generates them, and text is spelled out with its length first, so that two keys are
    /// equal only when the texts are.
    fn cache_key(&self, common: &'static str) -> String {
        // Numbers in hex and ended by `;`, written without the formatting machinery (a key is
        // made per call).
        fn num(key: &mut String, mut n: usize) {
            let mut digits = [0u8; 16];
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b"0123456789abcdef"[n & 15];
                n >>= 4;
                if n == 0 {
                    break;
                }
            }
            digits[i..].iter().for_each(|&d| key.push(d as char));
            key.push(';');
        }
        fn part(key: &mut String, text: &str) {
            num(key, text.len());
            key.push(':');
            key.push_str(text);
        }
        let mut key = String::with_capacity(256);
        key.push_str("wgsl:");
        key.push_str(self.entry);
        key.push_str(if self.f16 { ":1" } else { ":0" });
        for (name, ty, _) in &self.params {
            part(&mut key, name);
            part(&mut key, ty);
        }
        key.push('L');
        num(&mut key, self.inline_words.len());
        for d in &self.decls {
            let (kind, name, elem, write) = d.parts();
            key.push(kind);
            part(&mut key, name);
            // A tensor's access, not only its array type, chooses its access functions.
            part(&mut key, elem);
            if let Decl::Tensor { access, .. } = d {
                part(&mut key, access.name());
            }
            key.push(if write { 'w' } else { 'r' });
        }
        for s in std::iter::once(&common).chain(&self.sections) {
            key.push('@');
            num(&mut key, s.as_ptr() as usize);
            key.push('+');
            num(&mut key, s.len());
        }
        for s in &self.owned {
            part(&mut key, s);
        }
        key.push(if self.inline_walks { 'I' } else { 'B' });
        for w in &self.walks {
            for v in [w.space, w.rank, w.tensors, w.start] {
                key.push(',');
                num(&mut key, v);
            }
        }
        part(&mut key, &self.body);
        if let Some((k, _)) = &self.lazy_body {
            key.push('B');
            part(&mut key, k);
        }
        key
    }

    /// Generates the kernel, compiles it (once per device and text) and launches it over
    /// `global` work items.
    pub fn launch(mut self, global: [u64; 3]) -> Result<()> {
        if global.contains(&0) {
            return Ok(());
        }
        if !self.spaces.is_empty() {
            let mut words = Vec::new();
            let mut merged = Vec::with_capacity(self.spaces.len());
            for s in &self.spaces {
                let start = words.len();
                let m = s.collapse();
                m.encode(&self.op, &mut words)?;
                merged.push((m, start));
            }
            // The words travel with the scalars where both fit the push constants that every
            // Vulkan device has; else they get a buffer of their own.
            let inline = (self.params.len() + words.len()) * 4 <= IMMEDIATE_BYTES;
            self.inline_walks = inline;
            for (k, (m, start)) in merged.iter().enumerate() {
                self.walks.push(Walk {
                    space: k,
                    rank: m.shape.len(),
                    tensors: m.tensors.len(),
                    start: *start,
                });
            }
            if inline {
                self.inline_words = words;
            } else {
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                let buffer = self.cx.device.alloc(bytes.len())?;
                self.cx.queue.write(&buffer.whole(), &bytes)?;
                self.words("L", buffer.whole(), "u32", false);
            }
        }
        if self.params.is_empty() && self.inline_words.is_empty() {
            self.u32("unused", 0);
        }
        let common = section(COMMON, "common")?;
        let key = self.cache_key(common);
        let scalars: Vec<u8> = self
            .params
            .iter()
            .map(|(_, _, v)| v)
            .chain(&self.inline_words)
            .flat_map(|v| v.to_le_bytes())
            .collect();
        self.args.push(KernelArg::Bytes(scalars));
        let device = self.cx.device;
        let entry = self.entry;
        let lazy = self.lazy_body.take();
        let kernel = device.kernel_cache().get_or_compile(&key, || {
            let body = match lazy {
                Some((_, generate)) => generate()?,
                None => String::new(),
            };
            device.compile(&KernelSource::Wgsl {
                source: self.text(common, &body)?,
                entry: entry.to_string(),
            })
        })?;
        self.cx.queue.launch(
            &kernel,
            LaunchDims {
                global,
                local: None,
            },
            &self.args,
        )?;
        for (staged, out, lanes) in &self.packs {
            pack(self.cx, &self.op, staged, out, *lanes)?;
        }
        Ok(())
    }
}

/// The `walk{space}` function of a space whose words start at `start` in the layout words (see
/// `layout.wgsl`): one step per dimension of the merged layout, reading the words at constant
/// places, each through `word(place)`.
fn walk_text(
    space: usize,
    rank: usize,
    tensors: usize,
    start: usize,
    word: &dyn Fn(usize) -> String,
) -> Result<String> {
    let lane = |f: &dyn Fn(usize) -> String| -> String {
        (0..4)
            .map(|t| if t < tensors { f(t) } else { "0u".to_string() })
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Words: rank, tensors, shape[rank], then per tensor: offset, strides[rank].
    let tensor_at = |t: usize| start + 2 + rank + t * (rank + 1);
    let offsets = lane(&|t| word(tensor_at(t)));
    let mut steps = String::new();
    for d in (0..rank).rev() {
        let strides = lane(&|t| word(tensor_at(t) + 1 + d));
        let text = if d == 0 {
            section(LAYOUT, "walk_last")?.replace("$STRIDES", &strides)
        } else {
            section(LAYOUT, "walk_step")?
                .replace("$SIZE", &word(start + 2 + d))
                .replace("$STRIDES", &strides)
        };
        steps.push_str(&text);
    }
    Ok(section(LAYOUT, "walk")?
        .replace("$OFFSETS", &offsets)
        .replace("$STEPS\n", &steps)
        .replace("$S", &space.to_string()))
}

/// Merges the staged elements of a sub-word output into its words.
fn pack(cx: &Cx<'_>, op: &str, staged: &Buffer, out: &BufferView, lanes: u32) -> Result<()> {
    let words = count32(op, "the output's words", out.len().div_ceil(4))?;
    let mut sh = Shader::new(cx, op, "pack");
    sh.words("out", out.clone(), "u32", true);
    sh.words("staged", staged.whole(), "u32", false);
    sh.u32("words", words);
    let mask = if lanes == 4 { "0xffu" } else { "0xffffu" };
    sh.body(
        &section(ACCESS, "pack")?
            .replace("$LANES", &format!("{lanes}u"))
            .replace("$MASK", mask),
    );
    sh.launch([words as u64, 1, 1])
}

/// Checks that a count fits the kernels' 32-bit indices.
pub(crate) fn count32(op: &str, what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        Error::unsupported(format!(
            "{op}: {what} of {n} elements is more than the WGSL kernels' 32-bit indices reach"
        ))
    })
}

/// The attributes of a call, read with the op's known names.
pub(crate) fn attrs(call: &OpCall) -> Result<crate::attrs::Attrs<'_>> {
    crate::attrs::Attrs::of(call)
}

/// The input `i` of a call, which validation guarantees is present.
pub(crate) fn input(call: &OpCall, i: usize) -> Result<&Tensor> {
    call.inputs
        .get(i)
        .and_then(|t| t.as_ref())
        .ok_or_else(|| Error::internal(format!("{}: input {i} missing", call.op)))
}

/// Output `i` of a call.
pub(crate) fn output(call: &OpCall, i: usize) -> Result<&Tensor> {
    call.outputs
        .get(i)
        .ok_or_else(|| Error::internal(format!("{}: output {i} missing", call.op)))
}

#[cfg(test)]
mod tests {
    use super::*;

    mod on_vulkan;

    #[test]
    fn sections_run_to_the_next_marker() {
        let text = section(ACCESS, "load_f32").unwrap();
        assert!(text.starts_with("fn ld_$NAME(i: u32) -> f32"));
        assert!(!text.contains("//#"));
        let last = section(ACCESS, "pack").unwrap();
        assert!(last.contains("fn pack("));
        let err = section(ACCESS, "load_nothing").unwrap_err();
        assert_eq!(err.code(), anyaccel_hal::ErrorCode::Internal);
    }

    #[test]
    fn every_section_of_every_file_is_found_as_a_scan_finds_it() {
        let files = [
            COMMON,
            ACCESS,
            LAYOUT,
            elementwise::MAP,
            elementwise::UNARY,
            elementwise::BINARY,
            index::INDEX,
            matmul::MATMUL,
            nn::NN,
            reduce::REDUCE,
        ];
        let mut count = 0;
        for file in files {
            for line in file.lines().filter(|l| l.starts_with("//# ")) {
                let header = &line[4..];
                let name = header.split(" uses ").next().unwrap();
                let marker = format!("//# {header}\n");
                let start = file.find(&marker).unwrap() + marker.len();
                let end = file[start..]
                    .find("\n//# ")
                    .map_or(file.len(), |e| start + e + 1);
                assert_eq!(section(file, name).unwrap(), &file[start..end], "{name}");
                count += 1;
            }
        }
        assert!(count >= 90, "{count} sections");
    }

    #[test]
    fn cache_keys_are_equal_exactly_where_texts_are() {
        use anyaccel_hal::Backend;
        let device = anyaccel_cpu::CpuBackend.probe().unwrap().remove(0);
        let queue = device.create_queue().unwrap();
        let cx = Cx {
            device: &*device,
            queue: &*queue,
        };
        let buffer = device.alloc(64).unwrap();
        // Each variant changes one part that the text is made of.
        let t = Tensor::empty(&*device, DType::F32, &[4]).unwrap();
        let bound = bind(&t).unwrap();
        let variants: [&dyn Fn(&mut Shader); 12] = [
            &|_| {},
            &|sh| {
                sh.u32("m", 1);
            },
            &|sh| {
                sh.i32("n", 1);
            },
            &|sh| sh.words("w", buffer.whole(), "u32", true),
            &|sh| {
                sh.include(section(LAYOUT, "walk").unwrap());
            },
            &|sh| {
                sh.include_owned("fn g() {}\n".to_string());
            },
            &|sh| {
                sh.body("fn h() {}\n");
            },
            &|sh| sh.need(DType::F16).unwrap(),
            &|sh| sh.tensor("x", &bound, Access::F32, false).unwrap(),
            &|sh| sh.tensor("x", &bound, Access::F32, true).unwrap(),
            &|sh| sh.tensor("x", &bound, Access::Raw4, false).unwrap(),
            &|sh| {
                sh.body_lazy("k".into(), || Ok("fn k() {}\n".into()));
            },
        ];
        let make = |v: &dyn Fn(&mut Shader)| {
            let mut sh = Shader::new(&cx, "t", "main");
            sh.u32("n", 4);
            sh.body("fn main() {}\n");
            v(&mut sh);
            let common = section(COMMON, "common").unwrap();
            let key = sh.cache_key(common);
            let body = match sh.lazy_body.take() {
                Some((_, generate)) => generate().unwrap(),
                None => String::new(),
            };
            (key, sh.text(common, &body).unwrap())
        };
        let made: Vec<(String, String)> = variants.iter().map(|v| make(*v)).collect();
        for (i, (key_i, text_i)) in made.iter().enumerate() {
            assert_eq!(
                make(variants[i]),
                (key_i.clone(), text_i.clone()),
                "variant {i}"
            );
            for (j, (key_j, text_j)) in made.iter().enumerate().skip(i + 1) {
                assert_ne!(text_i, text_j, "variants {i} and {j} make the same text");
                assert_ne!(key_i, key_j, "variants {i} and {j} share a key");
            }
        }
        // The key names the static sections without holding their text.
        assert!(made[0].0.len() < made[0].1.len() / 4, "{}", made[0].0);
    }

    #[test]
    fn spaces_merge_contiguous_dimensions() {
        // Contiguous 2x3x4 against a broadcast row: the last two dims merge in both.
        let s = Space::new(&[2, 3, 4])
            .with(5, vec![12, 4, 1])
            .with(0, vec![0, 4, 1])
            .collapse();
        assert_eq!(s.shape, vec![2, 12]);
        assert_eq!(s.tensors[0], (5, vec![12, 1]));
        assert_eq!(s.tensors[1], (0, vec![0, 1]));
        // A transposed view does not merge; size-1 dims drop out.
        let t = Space::new(&[3, 1, 5]).with(0, vec![1, 7, 3]).collapse();
        assert_eq!(t.shape, vec![3, 5]);
        assert_eq!(t.tensors[0].1, vec![1, 3]);
        // A scalar space has rank 0.
        let e = Space::new(&[1, 1]).with(2, vec![9, 9]).collapse();
        assert!(e.shape.is_empty());
        assert_eq!(e.tensors[0], (2, vec![]));
    }

    #[test]
    fn layouts_encode_as_words_and_refuse_what_u32_cannot_hold() {
        let mut words = Vec::new();
        Space::new(&[4, 6])
            .with(3, vec![1, 4])
            .collapse()
            .encode("t", &mut words)
            .unwrap();
        assert_eq!(words, vec![2, 1, 4, 6, 3, 1, 4]);
        let mut words = Vec::new();
        let err = Space::new(&[2, 2])
            .with(0, vec![1 << 33, 1])
            .encode("t", &mut words)
            .unwrap_err();
        assert_eq!(err.code(), anyaccel_hal::ErrorCode::Unsupported);
        let deep = Space::new(&[2; 9]).with(0, vec![1000, 1, 3, 1, 3, 1, 3, 1, 3]);
        let err = deep.collapse().encode("t", &mut Vec::new()).unwrap_err();
        assert!(err.message().contains("at most 8"), "{}", err.message());
    }

    #[test]
    fn walks_have_one_step_per_dimension_and_no_loop() {
        // A transposed 2-D view against a contiguous output: two steps, one division.
        let s = Space::new(&[3, 5])
            .with(7, vec![1, 3])
            .with(0, vec![5, 1])
            .collapse();
        let buffer = |i: usize| format!("L[{i}u]");
        let text = walk_text(1, s.shape.len(), s.tensors.len(), 10, &buffer).unwrap();
        assert!(text.starts_with("fn walk1(lin: u32) -> vec4<u32>"));
        // Words from 10: rank, tensors, 3, 5, then (7, 1, 3) and (0, 5, 1).
        assert!(text.contains("vec4<u32>(L[14u], L[17u], 0u, 0u)"), "{text}");
        assert!(text.contains("let size = L[13u];"), "{text}");
        assert!(
            text.contains("i * vec4<u32>(L[16u], L[19u], 0u, 0u)"),
            "{text}"
        );
        assert!(
            text.contains("rem * vec4<u32>(L[15u], L[18u], 0u, 0u)"),
            "{text}"
        );
        assert_eq!(text.matches('%').count(), 1);
        assert!(!text.contains("for ("));
        // A contiguous space is one multiply-add.
        let c = Space::new(&[4, 6]).with(0, vec![6, 1]).collapse();
        let text = walk_text(0, c.shape.len(), c.tensors.len(), 1, &buffer).unwrap();
        assert!(!text.contains('%'), "{text}");
        // Words passed with the scalars are read as members of `p`.
        let text = walk_text(1, s.shape.len(), s.tensors.len(), 10, &|i| {
            format!("p.L{i}")
        })
        .unwrap();
        assert!(text.contains("vec4<u32>(p.L14, p.L17, 0u, 0u)"), "{text}");
        assert!(text.contains("let size = p.L13;"), "{text}");
    }

    #[test]
    fn windows_start_at_aligned_bytes() {
        use anyaccel_hal::Backend;
        let device = anyaccel_cpu::CpuBackend.probe().unwrap().remove(0);
        let buffer = device.alloc(4096).unwrap();
        let view = buffer.view(1000, 2000).unwrap();
        let desc = TensorDesc {
            offset: 3,
            ..TensorDesc::contiguous(DType::F32, &[5, 7])
        };
        let t = Tensor::new(view, desc).unwrap();
        let b = bind(&t).unwrap();
        // Element 0 is at byte 1012: the window starts at 768, 61 elements before it.
        assert_eq!(b.view.offset(), 768);
        assert_eq!(b.desc.offset, 61);
        assert_eq!(b.view.len(), 1012 + 35 * 4 - 768);
    }
}
