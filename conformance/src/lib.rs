//! # anyaccel-conformance: the conformance suite
//!
//! The proof that a device computes what `docs/ops.md` says: the HAL suite and every op x dtype x
//! shape class x value class, against an f64 reference ([`mod@reference`]), with the fixed
//! tolerances of [`tolerance`]. It is a product for chip vendors as much as a test for anyaccel:
//! `anyaccel conformance --plugin ./libmychip.so` runs it on a vendor's plugin and writes the
//! reports to publish.
//!
//! Start from [`runner::main`] (the CLI), [`runner::run`] (a whole run) or [`exec::run_case`]
//! (one case on one device). Every case draws fresh inputs from a seed that the report prints,
//! poisons outputs before the launch, checks that every output element was written and that
//! inputs were not modified. Groups of cases run in child processes, so a crash becomes
//! `crashed` for that case and the run goes on.

pub mod cases;
pub mod exec;
pub mod reference;
pub mod report;
pub mod rng;
pub mod runner;
pub mod tolerance;
pub mod xfail;

pub use cases::{all_cases, Case, Profile};
pub use report::{Report, Status};
pub use runner::{Host, Options};
