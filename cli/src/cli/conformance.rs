//! `anyaccel conformance`: the conformance suite (see `anyaccel_conformance::runner`).
//!
//! The parent run re-executes this binary as `anyaccel conformance --worker ...` for each group
//! of cases, so a crash in a device or plugin costs one case, not the run. Before that, each
//! plugin is loaded in a child process of its own (see [`super::plugins`]), so a plugin that
//! crashes or hangs while loading costs its own devices, not the run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyaccel_conformance::runner::{self, ConformanceArgs, Host, Loaded, Role};

use super::plugins;

fn make_runtime(explicit: &[PathBuf], role: Role) -> Result<Loaded, String> {
    match role {
        Role::Run => {
            let (runtime, plugins) = plugins::runtime(explicit, true)?;
            Ok(Loaded { runtime, plugins })
        }
        Role::Worker => Ok(Loaded {
            runtime: plugins::worker_runtime(explicit).map_err(|e| e.to_string())?,
            plugins: explicit.to_vec(),
        }),
    }
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
