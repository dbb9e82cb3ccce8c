//! The command's options: the ops it measures, its arguments as clap reads them, and what
//! they ask for.

use super::{DEFAULT_ELEMENTS, SOFTMAX_COLS};

/// The ops the command measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchOp {
    /// f32 matmul, square.
    Matmul,
    /// f32 add, contiguous.
    Add,
    /// f32 softmax over the last axis.
    Softmax,
    /// f32 `log_softmax` over the last axis.
    LogSoftmax,
    /// f32 sum over every element.
    Sum,
    /// f32 `layer_norm` over the last axis, with weight and bias.
    LayerNorm,
    /// f32 `rms_norm` over the last axis, with weight.
    RmsNorm,
    /// f32 `exp`.
    Exp,
    /// f32 `tanh`.
    Tanh,
    /// f32 `sigmoid`.
    Sigmoid,
    /// f32 `silu`.
    Silu,
    /// f32 `gelu`, the erf form.
    Gelu,
    /// f32 `gelu`, the tanh form.
    GeluTanh,
    /// f32 `copy` of a transposed view into a contiguous tensor.
    Transpose,
    /// f32 `attention`, batch 1, 8 heads, 512 queries and keys, head dimension 64.
    Attention,
    /// The same with causal masking.
    AttentionCausal,
    /// f32 `gelu_backward`, side by side with `gelu`.
    GeluBackward,
    /// f32 `silu_backward`, side by side with `silu`.
    SiluBackward,
    /// f32 `softmax_backward` over the last axis, side by side with `softmax`.
    SoftmaxBackward,
    /// An f32 gradient at a fixed shape, side by side with its forward op: one of
    /// [`GRADS`](super::backward::GRADS), by name.
    Grad(&'static str),
    /// A row op or transcendental op in f16 or bf16, side by side with the same op in f32:
    /// one of [`HALF`](super::half::HALF), by name.
    Half(&'static str),
    /// f32 `conv2d` on ResNet-50 layer shapes, with `--peers` side by side with onnxruntime.
    Conv2d,
    /// `matmul_i8` (i8 x i8, i32 result), side by side with f32 `matmul` of the same shape.
    MatmulI8,
    /// `matmul_wq` with int8 weights at batch 1, side by side with f32 `matmul`.
    MatmulWqInt8,
    /// `matmul_wq` with packed int4 weights at batch 1, side by side with f32 `matmul`.
    MatmulWqInt4,
    /// One-element add through the op layer, submission to completion.
    Dispatch,
    /// A tiny kernel of the device's own dialect, compiled through `Device::compile` and run
    /// with `Queue::launch` and `finish`, submission to completion.
    Launch,
    /// A recorded graph of 100 small ops replayed, side by side with the same calls eagerly.
    Graph,
}

impl BenchOp {
    /// Every op but the fixed-shape gradients and the 16-bit entries, in the order they run
    /// (those come after `softmax_backward`).
    const FIRST: [BenchOp; 26] = [
        BenchOp::Matmul,
        BenchOp::Add,
        BenchOp::Softmax,
        BenchOp::LogSoftmax,
        BenchOp::Sum,
        BenchOp::LayerNorm,
        BenchOp::RmsNorm,
        BenchOp::Exp,
        BenchOp::Tanh,
        BenchOp::Sigmoid,
        BenchOp::Silu,
        BenchOp::Gelu,
        BenchOp::GeluTanh,
        BenchOp::Transpose,
        BenchOp::Attention,
        BenchOp::AttentionCausal,
        BenchOp::GeluBackward,
        BenchOp::SiluBackward,
        BenchOp::SoftmaxBackward,
        BenchOp::Conv2d,
        BenchOp::MatmulI8,
        BenchOp::MatmulWqInt8,
        BenchOp::MatmulWqInt4,
        BenchOp::Dispatch,
        BenchOp::Launch,
        BenchOp::Graph,
    ];

    /// Every op, in the order they run.
    pub fn all() -> Vec<BenchOp> {
        let (head, tail) = BenchOp::FIRST.split_at(19);
        let grads = super::backward::GRADS.into_iter().map(BenchOp::Grad);
        let half = super::half::HALF
            .into_iter()
            .map(|(name, ..)| BenchOp::Half(name));
        head.iter()
            .copied()
            .chain(grads)
            .chain(half)
            .chain(tail.iter().copied())
            .collect()
    }

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BenchOp::Matmul => "matmul",
            BenchOp::Add => "add",
            BenchOp::Softmax => "softmax",
            BenchOp::LogSoftmax => "log_softmax",
            BenchOp::Sum => "sum",
            BenchOp::LayerNorm => "layer_norm",
            BenchOp::RmsNorm => "rms_norm",
            BenchOp::Exp => "exp",
            BenchOp::Tanh => "tanh",
            BenchOp::Sigmoid => "sigmoid",
            BenchOp::Silu => "silu",
            BenchOp::Gelu => "gelu",
            BenchOp::GeluTanh => "gelu_tanh",
            BenchOp::Transpose => "transpose",
            BenchOp::Attention => "attention",
            BenchOp::AttentionCausal => "attention_causal",
            BenchOp::GeluBackward => "gelu_backward",
            BenchOp::SiluBackward => "silu_backward",
            BenchOp::SoftmaxBackward => "softmax_backward",
            BenchOp::Grad(name) | BenchOp::Half(name) => name,
            BenchOp::Conv2d => "conv2d",
            BenchOp::MatmulI8 => "matmul_i8",
            BenchOp::MatmulWqInt8 => "matmul_wq_int8",
            BenchOp::MatmulWqInt4 => "matmul_wq_int4",
            BenchOp::Dispatch => "dispatch",
            BenchOp::Launch => "launch",
            BenchOp::Graph => "graph",
        }
    }

    /// The ops measured on `rows x cols` (attention on its fixed shape) beside the same
    /// onnxruntime kernel (`rowops`).
    pub(super) fn is_row_op(self) -> bool {
        matches!(
            self,
            BenchOp::Softmax
                | BenchOp::LogSoftmax
                | BenchOp::LayerNorm
                | BenchOp::RmsNorm
                | BenchOp::Exp
                | BenchOp::Tanh
                | BenchOp::Sigmoid
                | BenchOp::Silu
                | BenchOp::Gelu
                | BenchOp::GeluTanh
                | BenchOp::Transpose
                | BenchOp::Attention
                | BenchOp::AttentionCausal
        )
    }

    fn parse(name: &str) -> Option<BenchOp> {
        BenchOp::all().into_iter().find(|op| op.name() == name)
    }

    /// The sizes it runs at: `--size` when given, else its defaults.
    pub(super) fn sizes(self, size: Option<usize>) -> Vec<usize> {
        match (self, size) {
            (BenchOp::Dispatch | BenchOp::Launch, _) => vec![1],
            (BenchOp::Graph, None) => vec![super::graph::ELEMENTS],
            // The index of a ResNet-50 layer shape.
            (BenchOp::Conv2d, _) => (0..super::conv::LAYERS.len()).collect(),
            // Fixed shapes (the entry names them).
            (
                BenchOp::Attention
                | BenchOp::AttentionCausal
                | BenchOp::Grad(_)
                | BenchOp::MatmulI8
                | BenchOp::MatmulWqInt8
                | BenchOp::MatmulWqInt4,
                _,
            ) => vec![0],
            (_, Some(n)) => vec![n],
            (BenchOp::Matmul, None) => vec![256, 1024, 2048],
            (op, None)
                if op.is_row_op() || matches!(op, BenchOp::SoftmaxBackward | BenchOp::Half(_)) =>
            {
                vec![SOFTMAX_COLS * SOFTMAX_COLS]
            }
            (_, None) => vec![DEFAULT_ELEMENTS],
        }
    }
}

/// What the command was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Device ids or backend names; empty: the runtime's selection.
    pub devices: Vec<String>,
    /// The ops, in the order given, without repeats.
    pub ops: Vec<BenchOp>,
    /// One size for every op instead of the defaults.
    pub size: Option<usize>,
    /// Run the peers too.
    pub peers: bool,
    /// Measuring time per figure, in seconds.
    pub time_s: f64,
    /// Print JSON.
    pub json: bool,
    /// Leave out the roofline.
    pub no_roofline: bool,
}

/// `16M` -> 16777216; `4096` -> 4096; `2K` -> 2048.
fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let (digits, scale) = match t.char_indices().last()? {
        (i, 'k' | 'K') => (&t[..i], 1usize << 10),
        (i, 'm' | 'M') => (&t[..i], 1usize << 20),
        _ => (t, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
}

/// The command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A device id or backend name (repeatable, or a comma list); default: every device, or
    /// those ANYACCEL_DEVICES selects
    #[arg(long = "device", value_name = "ID", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// An op from the list above (repeatable, or a comma list); default: all
    #[arg(long = "op", value_name = "NAME", value_delimiter = ',', value_parser = parse_op)]
    pub ops: Vec<BenchOp>,
    /// One problem size for every selected op instead of the defaults: the matmul edge, or the
    /// element count (suffixes K = 1024, M = 1024^2 allowed)
    #[arg(long, value_name = "N", value_parser = parse_size_arg)]
    pub size: Option<usize>,
    /// Also run, in the same process on the same data, what a user would pick instead, and
    /// print the ratio peer time / our time (above 1: we are faster). CPU: OpenBLAS
    /// cblas_sgemm (libopenblas.so.0, opened at run time) for matmul; memcpy over the same bytes
    /// as add moves, split over every core, for add. OpenCL: CLBlast sgemm (libclblast.so.1) on
    /// the same device for matmul. OpenCL, Vulkan, CUDA: for dispatch and launch, the same tiny
    /// kernel through raw opencl3 / ash / cudarc calls on a context and queue of their own,
    /// which is the layer's own overhead
    #[arg(long)]
    pub peers: bool,
    /// Measuring time per figure after its warm-up, in seconds (above 0, at most 3600)
    #[arg(long = "time", value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_time)]
    pub time_s: f64,
    /// Leave out the roofline (and so the ROOF shares)
    #[arg(long)]
    pub no_roofline: bool,
    /// Print JSON: {"devices":[{"id","roofline":{"gbps","gflops"},"ops":[{"op","dtype","size",
    /// "median_s","gflops","gbps","peer","peer_median_s","ratio_vs_peer",...}]}]} with the
    /// spread, repetitions and shares as well
    #[arg(long)]
    pub json: bool,
}

fn parse_op(name: &str) -> Result<BenchOp, String> {
    BenchOp::parse(name.trim()).ok_or_else(|| {
        format!(
            "unknown op `{name}`; expected one of: {}",
            BenchOp::all()
                .into_iter()
                .map(BenchOp::name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn parse_size_arg(text: &str) -> Result<usize, String> {
    parse_size(text)
        .ok_or_else(|| format!("`{text}`: expected a positive integer such as 4096 or 16M"))
}

fn parse_time(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= 3600.0)
        .ok_or_else(|| format!("`{text}`: expected seconds above 0 and at most 3600"))
}

impl BenchArgs {
    /// What the command was asked to do: the ops in the order given, without repeats (all when
    /// none was given); devices without empty names.
    pub fn options(&self) -> Options {
        let mut ops = Vec::new();
        for op in &self.ops {
            if !ops.contains(op) {
                ops.push(*op);
            }
        }
        if ops.is_empty() {
            ops = BenchOp::all();
        }
        Options {
            devices: self
                .devices
                .iter()
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect(),
            ops,
            size: self.size,
            peers: self.peers,
            time_s: self.time_s,
            json: self.json,
            no_roofline: self.no_roofline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parsed(items: &[&str]) -> Result<Options, clap::Error> {
        use clap::Parser;
        Bench::try_parse_from(std::iter::once("bench").chain(items.iter().copied()))
            .map(|b| b.args.options())
    }

    #[test]
    fn options_are_read_and_checked() {
        let o = parsed(&[
            "--device",
            "cpu:0",
            "--op",
            "add,sum",
            "--op",
            "add",
            "--size",
            "4K",
            "--peers",
            "--json",
            "--time=0.5",
            "--no-roofline",
        ])
        .unwrap();
        assert_eq!(o.devices, vec!["cpu:0".to_string()]);
        assert_eq!(o.ops, vec![BenchOp::Add, BenchOp::Sum]);
        assert_eq!(o.size, Some(4096));
        assert!(o.peers && o.json && o.no_roofline);
        assert_eq!(o.time_s, 0.5);
        let all = parsed(&[]).unwrap();
        assert_eq!(all.ops, BenchOp::all());
        assert_eq!(
            all.ops.len(),
            26 + super::super::backward::GRADS.len() + super::super::half::HALF.len()
        );
        assert!(all.ops.contains(&BenchOp::Half("rms_norm_bf16")));
        assert!(!all.no_roofline && !all.peers);
        for bad in [
            &["--op", "matmull"][..],
            &["--size", "0"],
            &["--size", "-3"],
            &["--size", "12Q"],
            &["--time", "0"],
            &["--time", "nan"],
            &["--json=yes"],
            &["--no-roofline=1"],
            &["extra"],
        ] {
            match parsed(bad) {
                Err(e) => assert_eq!(e.exit_code(), 2, "{bad:?}: {e}"),
                Ok(o) => panic!("{bad:?}: expected a usage error, got {o:?}"),
            }
        }
        let e = parsed(&["--op", "matmull"]).unwrap_err().to_string();
        assert!(e.contains("`matmull`") && e.contains("softmax"), "{e}");
    }

    #[test]
    fn sizes_follow_the_op_and_the_override() {
        assert_eq!(BenchOp::Matmul.sizes(None), vec![256, 1024, 2048]);
        assert_eq!(BenchOp::Add.sizes(None), vec![16 << 20]);
        assert_eq!(BenchOp::Matmul.sizes(Some(64)), vec![64]);
        assert_eq!(BenchOp::Dispatch.sizes(Some(64)), vec![1]);
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("7"), Some(7));
        assert_eq!(parse_size("M"), None);
    }
}
