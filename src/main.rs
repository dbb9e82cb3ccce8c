//! `anyaccel`: the command line.
//!
//! `anyaccel <command> [options]`. Each command lives in its own module under `src/cli/` with
//! its help text and a `run` function; [`dispatch`] matches the command name to it. Exit status:
//! 0 on success, 1 when the command ran and failed (a failed test, a missing device), 2 for bad
//! usage (an unknown command or flag, a missing value).

use std::ffi::OsString;
use std::process::ExitCode;

mod cli {
    pub mod args;
    pub mod bench;
    pub mod conformance;
    pub mod devices;
    pub mod table;
}

use cli::args::{Arg, Args, CliError};

/// Every command, with the one line that `anyaccel --help` shows for it.
const COMMANDS: &[(&str, &str)] = &[
    (
        "devices",
        "List every compiled-in backend, available or not, and its devices",
    ),
    (
        "conformance",
        "Run the conformance suite (HAL and op suites) and write the reports",
    ),
    (
        "bench",
        "Measure each device's roofline and the ops against it, and the peers with --peers",
    ),
    ("help", "Show this help, or a command's help"),
];

fn usage() -> String {
    let width = COMMANDS.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut s = String::from(
        "anyaccel: one accelerator layer for CPU, OpenCL, Vulkan, CUDA and vendor plugins\n\n\
         Usage: anyaccel <command> [options]\n\nCommands:\n",
    );
    for (name, what) in COMMANDS {
        s.push_str(&format!("  {name:<width$}  {what}\n"));
    }
    s.push_str(
        "\nOptions:\n  -h, --help     Show this help (`anyaccel <command> --help` for a command's)\n  \
         -V, --version  Show the version\n\n\
         Environment:\n  ANYACCEL_DEVICES  Devices to use: backend names or device ids, e.g. `vulkan:0,cpu`\n  \
         ANYACCEL_REQUIRE  Backends that must be available, e.g. `cpu,opencl`\n",
    );
    s
}

/// The help text of a command, or `None` for a name that is not a command.
fn command_help(name: &str) -> Option<String> {
    match name {
        "devices" => Some(cli::devices::HELP.to_string()),
        "conformance" => Some(cli::conformance::help()),
        "bench" => Some(cli::bench::HELP.to_string()),
        "help" => Some(usage()),
        _ => None,
    }
}

fn unknown_command(name: &str) -> CliError {
    CliError::usage(
        format!(
            "unknown command `{name}`; expected one of: {}",
            COMMANDS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        usage(),
    )
}

/// Runs the command named by the first argument with the rest.
fn dispatch(argv: Vec<String>) -> Result<ExitCode, CliError> {
    let mut argv = argv.into_iter();
    let Some(command) = argv.next() else {
        return Err(CliError::usage("no command given", usage()));
    };
    let rest: Vec<String> = argv.collect();
    match command.as_str() {
        "devices" => cli::devices::run(Args::new("devices", rest, cli::devices::HELP)),
        "conformance" => Ok(cli::conformance::run(rest)),
        "bench" => cli::bench::run(Args::new("bench", rest, cli::bench::HELP)),
        "help" | "-h" | "--help" => help(Args::new("help", rest, usage())),
        "-V" | "--version" => {
            cli::args::print(&format!("anyaccel {}\n", env!("CARGO_PKG_VERSION")))?;
            Ok(ExitCode::SUCCESS)
        }
        flag if flag.starts_with('-') => Err(CliError::usage(
            format!("unknown flag `{flag}`; expected a command first"),
            usage(),
        )),
        other => Err(unknown_command(other)),
    }
}

/// `anyaccel help [command]`.
fn help(mut args: Args) -> Result<ExitCode, CliError> {
    let mut topic: Option<String> = None;
    while let Some(arg) = args.next() {
        match arg {
            Arg::Flag(f, _) if f == "-h" || f == "--help" => topic = None,
            Arg::Positional(name) if topic.is_none() => topic = Some(name),
            other => return Err(args.unexpected(other)),
        }
    }
    let text = match topic {
        None => usage(),
        Some(name) => command_help(&name).ok_or_else(|| unknown_command(&name))?,
    };
    cli::args::print(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The arguments after the program name, as UTF-8, or a usage error naming the one that is not.
fn arguments(raw: impl Iterator<Item = OsString>) -> Result<Vec<String>, CliError> {
    raw.map(|a| {
        a.into_string().map_err(|bad| {
            CliError::usage(
                format!("argument `{}` is not valid UTF-8", bad.to_string_lossy()),
                usage(),
            )
        })
    })
    .collect()
}

fn main() -> ExitCode {
    match arguments(std::env::args_os().skip(1)).and_then(dispatch) {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}
