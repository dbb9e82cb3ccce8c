//! Hand-rolled argument parsing shared by every command, and the CLI's error type.
//!
//! Flags are `--name`, `--name=value`, `--name value` or a short `-x`; `--` ends the flags.
//! Each command walks its [`Args`] with a `match` and hands anything it does not know to
//! [`Args::unexpected`], so every command rejects unknown flags the same way (exit status 2).

use std::io::Write;
use std::process::ExitCode;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage: the message, then the help text of the command. Exit status 2.
    Usage {
        /// What was wrong and what was expected.
        message: String,
        /// The help of the command that was misused.
        help: String,
    },
    /// The command ran and failed. Exit status 1.
    Failed(String),
    /// Standard output could not be written. Exit status 1.
    Output(std::io::Error),
}

impl CliError {
    /// A usage error with the help text to show after it.
    pub fn usage(message: impl Into<String>, help: impl Into<String>) -> CliError {
        CliError::Usage {
            message: message.into(),
            help: help.into(),
        }
    }

    /// Prints the error to standard error and returns the exit status it stands for.
    pub fn report(self) -> ExitCode {
        match self {
            CliError::Usage { message, help } => {
                eprintln!("error: {message}\n\n{help}");
                ExitCode::from(2)
            }
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

/// One command-line item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A flag with its leading dashes (`--json`, `-h`), and its value when given as `--name=value`.
    Flag(String, Option<String>),
    /// Anything else, including everything after `--`.
    Positional(String),
}

/// The arguments of one command, read one [`Arg`] at a time.
pub struct Args {
    command: &'static str,
    help: String,
    items: std::vec::IntoIter<String>,
    flags_ended: bool,
}

impl Args {
    /// The arguments that follow `anyaccel <command>`, and the command's help for usage errors.
    pub fn new(command: &'static str, items: Vec<String>, help: impl Into<String>) -> Args {
        Args {
            command,
            help: help.into(),
            items: items.into_iter(),
            flags_ended: false,
        }
    }

    /// The command's help text.
    pub fn help(&self) -> &str {
        &self.help
    }

    /// The next item, or `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Arg> {
        let item = self.items.next()?;
        if self.flags_ended {
            return Some(Arg::Positional(item));
        }
        if item == "--" {
            self.flags_ended = true;
            return self.next();
        }
        if let Some(long) = item.strip_prefix("--") {
            return Some(match long.split_once('=') {
                Some((name, value)) => Arg::Flag(format!("--{name}"), Some(value.to_string())),
                None => Arg::Flag(item, None),
            });
        }
        if item.len() > 1 && item.starts_with('-') {
            return Some(Arg::Flag(item, None));
        }
        Some(Arg::Positional(item))
    }

    /// The value of `flag`: the inline `--flag=value`, or else the next item. `expected` says
    /// what a value looks like, for the error when it is missing.
    pub fn value(
        &mut self,
        flag: &str,
        inline: Option<String>,
        expected: &str,
    ) -> Result<String, CliError> {
        let value = match inline {
            Some(v) => Some(v),
            None if self.flags_ended => None,
            None => {
                let rest = self.items.as_slice();
                match rest.first() {
                    Some(next) if !next.starts_with('-') => self.items.next(),
                    _ => None,
                }
            }
        };
        match value {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(self.error(format!(
                "flag `{flag}` of `anyaccel {}` needs a value: {expected}",
                self.command
            ))),
        }
    }

    /// Fails when a flag that takes no value was given one (`--json=yes`).
    pub fn no_value(&self, flag: &str, inline: Option<String>) -> Result<(), CliError> {
        match inline {
            None => Ok(()),
            Some(v) => Err(self.error(format!(
                "flag `{flag}` of `anyaccel {}` takes no value, but was given `{v}`",
                self.command
            ))),
        }
    }

    /// The usage error for an item the command does not accept.
    pub fn unexpected(&self, arg: Arg) -> CliError {
        let message = match arg {
            Arg::Flag(flag, _) => {
                format!("unknown flag `{flag}` for `anyaccel {}`", self.command)
            }
            Arg::Positional(item) => format!(
                "unexpected argument `{item}`: `anyaccel {}` takes no positional arguments",
                self.command
            ),
        };
        self.error(message)
    }

    /// A usage error with this command's help.
    pub fn error(&self, message: String) -> CliError {
        CliError::usage(message, self.help.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(items: &[&str]) -> Args {
        Args::new(
            "devices",
            items.iter().map(|s| s.to_string()).collect(),
            "help",
        )
    }

    #[test]
    fn splits_flags_values_and_positionals() {
        let mut a = args(&["--json", "--device=cpu:0", "-h", "x", "--", "--json"]);
        assert_eq!(a.next(), Some(Arg::Flag("--json".into(), None)));
        assert_eq!(
            a.next(),
            Some(Arg::Flag("--device".into(), Some("cpu:0".into())))
        );
        assert_eq!(a.next(), Some(Arg::Flag("-h".into(), None)));
        assert_eq!(a.next(), Some(Arg::Positional("x".into())));
        assert_eq!(a.next(), Some(Arg::Positional("--json".into())));
        assert_eq!(a.next(), None);
    }

    #[test]
    fn value_comes_inline_or_next_and_is_required() {
        let mut a = args(&["cpu:0", "--json"]);
        assert_eq!(a.value("--device", None, "an id").unwrap(), "cpu:0");
        // The next item is a flag, not a value.
        match a.value("--device", None, "a device id") {
            Err(CliError::Usage { message, .. }) => {
                assert!(message.contains("`--device`"), "{message}");
                assert!(message.contains("a device id"), "{message}");
            }
            other => panic!("expected a usage error, got {other:?}"),
        }
        assert_eq!(
            a.value("--device", Some("opencl:1".into()), "an id")
                .unwrap(),
            "opencl:1"
        );
        assert!(a.value("--device", Some(" ".into()), "an id").is_err());
    }

    #[test]
    fn unknown_items_name_themselves() {
        let a = args(&[]);
        match a.unexpected(Arg::Flag("--jsn".into(), None)) {
            CliError::Usage { message, help } => {
                assert!(message.contains("`--jsn`") && message.contains("anyaccel devices"));
                assert_eq!(help, "help");
            }
            other => panic!("{other:?}"),
        }
        match a.no_value("--json", Some("yes".into())) {
            Err(CliError::Usage { message, .. }) => assert!(message.contains("`yes`")),
            other => panic!("{other:?}"),
        }
        assert!(a.no_value("--json", None).is_ok());
    }
}
