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
