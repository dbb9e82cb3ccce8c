//! # anyaccel-ops: the common op set
//!
//! Every op of `docs/ops.md` — creation and movement, indexing, elementwise, reductions,
//! softmax and norms, matmul, rope and attention — with its validation and shape rules, its
//! kernels per dialect, and dispatch.
//!
//! Two ways in:
//! - typed functions: [`add`], [`matmul`], [`softmax`], ... each with an `_into` form that
//!   writes into a given output;
//! - the generic [`call`] / [`call_into`] taking the op's name, inputs and attributes as
//!   `docs/ops.md` names them (the form vendor plugins and the C ABI use).
//!
//! Dispatch: the device's native op if it offers one, else the portable kernel in a dialect the
//! device accepts, else `Unsupported` naming the op, the dtype and the device. There is no silent
//! fallback to the CPU. Validation errors are `InvalidArgument` naming the op, the argument,
//! what was found and what was expected.
//!
//! ```
//! use anyaccel_hal::{Backend, Tensor};
//! let device = anyaccel_cpu::CpuBackend.probe().unwrap().remove(0);
//! let q = device.create_queue().unwrap();
//! let a = Tensor::from_slice(&*q, &[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
//! let b = Tensor::from_slice(&*q, &[1.0f32, 0.0, 0.0, 1.0], &[2, 2]).unwrap();
//! let c = anyaccel_ops::matmul(&*q, &a, &b, None).unwrap();
//! assert_eq!(c.to_vec::<f32>(&*q).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
//! ```

mod attention;
mod attrs;
pub mod catalog;
pub mod clang;
mod conv;
pub mod convert;
mod dispatch;
pub mod graph;
mod host;
mod loss;
mod movement;
mod norm_grad;
mod plan;
mod quant;
pub mod random;
pub mod tune;
mod typed;
mod wgsl;

pub use catalog::{op_def, OpDef, OpKind, CATALOG};
pub use dispatch::{call, call_into};
pub use graph::{Graph, Replay};
pub use plan::{broadcast_shapes, plan, OutputSpec};
pub use typed::*;
