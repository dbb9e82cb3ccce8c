//! `anyaccel`: the command line.
//!
//! `anyaccel <command> [options]`, parsed by `clap` (derive). Each command lives in its own
//! module under `src/cli/` with its arguments and a `run` function; the conformance command's
//! arguments come from `anyaccel-conformance`. Exit status: 0 on success, 1 when the command ran
//! and failed (a failed test, a missing device), 2 for bad usage (an unknown command or flag, a
//! missing value). `anyaccel completions bash|zsh|fish|...` prints a completion script.

mod cli {
    pub mod args;
    pub mod bench;
    #[cfg(feature = "mpi")]
    pub mod collectives;
    pub mod conformance;
    pub mod devices;
    pub mod plugins;
    pub mod table;
    pub mod transfers;
    pub mod tune;
}

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

const ENVIRONMENT: &str = "\
Environment:
  ANYACCEL_DEVICES      Devices to use: backend names or device ids, e.g. `vulkan:0,cpu`
  ANYACCEL_REQUIRE      Backends that must be available, e.g. `cpu,opencl`
  ANYACCEL_PLUGIN_PATH  Vendor plugin libraries to load (files or folders, `:`-separated)
  ANYACCEL_PLUGIN_LOAD_TIMEOUT
                        Seconds a plugin may take to load and enumerate its devices (30)
  ANYACCEL_TUNE         Kernel tuning: auto (measure on first use), cache (never measure), off
  ANYACCEL_CACHE_DIR    Where the tuning cache lives (else $XDG_CACHE_HOME/anyaccel)";

/// anyaccel: one accelerator layer for CPU, OpenCL, Vulkan, CUDA and vendor plugins
#[derive(Debug, Parser)]
#[command(name = "anyaccel", version, after_help = ENVIRONMENT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every compiled-in backend, available or not, and its devices
    #[command(long_about = cli::devices::LONG_ABOUT)]
    Devices(cli::devices::DevicesArgs),
    /// Run the conformance suite (HAL and op suites) and write the reports
    #[command(long_about = anyaccel_conformance::runner::LONG_ABOUT)]
    Conformance(anyaccel_conformance::runner::ConformanceArgs),
    /// Measure each device's roofline and the ops against it, and the peers with --peers
    #[command(long_about = cli::bench::LONG_ABOUT)]
    Bench(cli::bench::BenchArgs),
    /// Time each device's matmul tile shapes and keep the fastest in the tuning cache
    #[command(long_about = cli::tune::LONG_ABOUT)]
    Tune(cli::tune::TuneArgs),
    /// Run and check the collectives across MPI ranks (under mpirun), or time all_reduce
    #[cfg(feature = "mpi")]
    #[command(long_about = cli::collectives::LONG_ABOUT)]
    Collectives(cli::collectives::CollectivesArgs),
    /// Print a completion script for a shell, e.g. `anyaccel completions bash > anyaccel.bash`
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Load one plugin and enumerate its devices, printing a line after each stage (internal:
    /// the commands run it in a child process before loading a plugin themselves)
    #[command(hide = true)]
    ScreenPlugin {
        /// The plugin library
        path: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    // Bad usage (an unknown command or flag, a missing or malformed value) is answered by clap:
    // the error and a usage line on standard error, exit status 2; `--help` and `--version`
    // print to standard output, exit status 0.
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Devices(args) => cli::devices::run(args),
        Command::Conformance(args) => Ok(cli::conformance::run(args)),
        Command::Bench(args) => cli::bench::run(args),
        Command::Tune(args) => cli::tune::run(args),
        #[cfg(feature = "mpi")]
        Command::Collectives(args) => cli::collectives::run(args),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "anyaccel", &mut out);
            cli::args::print(&String::from_utf8_lossy(&out)).map(|()| ExitCode::SUCCESS)
        }
        Command::ScreenPlugin { path } => Ok(cli::plugins::screen_child(path)),
    };
    result.unwrap_or_else(|e| e.report())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
