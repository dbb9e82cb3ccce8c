//! `anyaccel conformance`: the conformance suite (see `anyaccel_conformance::runner`).
//!
//! The parent run re-executes this binary as `anyaccel conformance --worker ...` for each group
//! of cases, so a crash in a device or plugin costs one case, not the run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyaccel_conformance::runner::{self, ConformanceArgs, Host};

fn make_runtime(plugins: &[PathBuf]) -> anyaccel::Result<anyaccel::hal::Runtime> {
    let rt = anyaccel::Runtime::new();
    for p in plugins {
        anyaccel::load_plugin(&rt, p)
            .map_err(|e| e.context(format!("--plugin {}", p.display())))?;
    }
    Ok(rt)
}

/// Runs the command with its arguments.
pub fn run(args: &ConformanceArgs) -> ExitCode {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("anyaccel"));
    let host = Host {
        exe,
        worker_prefix: vec!["conformance".into()],
        make_runtime: &make_runtime,
        replay_command: "anyaccel conformance".into(),
    };
    let code = runner::execute(args, &host);
    ExitCode::from(code.clamp(0, 255) as u8)
}
