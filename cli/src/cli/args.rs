//! The command line's error type and its output. Arguments are parsed by `clap` (see
//! `main.rs`), which answers bad usage itself with exit status 2.

use std::io::Write;
use std::process::ExitCode;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// The command ran and failed. Exit status 1.
    Failed(String),
    /// Standard output could not be written. Exit status 1.
    Output(std::io::Error),
}

impl CliError {
    /// Prints the error to standard error and returns the exit status it stands for.
    pub fn report(self) -> ExitCode {
        match self {
            CliError::Failed(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
            // The reader went away (`anyaccel devices | head -1`): nothing is left to tell.
            CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
            CliError::Output(e) => {
                eprintln!("error: writing to standard output: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Writes `text` to standard output and flushes it.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

/// The devices that `--device` selectors name (ids or backend names, each device once, in the
/// order named), or every device the runtime selects when there are none; errors are prefixed
/// with the command's name.
pub fn chosen_devices(
    rt: &anyaccel::hal::Runtime,
    selectors: &[String],
    command: &str,
) -> Result<Vec<std::sync::Arc<dyn anyaccel::hal::Device>>, CliError> {
    if selectors.is_empty() {
        return rt
            .devices()
            .map_err(|e| CliError::Failed(format!("{command}: {e}")));
    }
    let mut chosen: Vec<std::sync::Arc<dyn anyaccel::hal::Device>> = Vec::new();
    for sel in selectors {
        for d in rt
            .select(sel)
            .map_err(|e| CliError::Failed(format!("{command}: --device {sel}: {e}")))?
        {
            if !chosen.iter().any(|c| c.info().id == d.info().id) {
                chosen.push(d);
            }
        }
    }
    Ok(chosen)
}
