//! Loading vendor plugins so that a broken one cannot take a command down.
//!
//! A plugin is a vendor's shared library: loading it runs the vendor's code (its entry point,
//! then `device_count`, `device_open`, `device_info` and `op_supported` as its devices are
//! enumerated), and that code may crash or never return. So before a command loads a plugin
//! into its own process, it loads it in a child process first (`anyaccel screen-plugin PATH`,
//! hidden) and enumerates its devices there, within a time limit
//! ([`LOAD_TIMEOUT_ENV`], 30 seconds by default). A plugin whose child dies or runs past the
//! limit is registered as unavailable with the reason (the signal, or the limit, and where it
//! stopped) and is never loaded into the command's process; the other backends and plugins
//! go on. Plugins that pass are then loaded as usual.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyaccel::hal::{Backend, Runtime, Unavailable};
use anyaccel::plugin::PluginBackend;

/// Environment variable: the time limit, in seconds, for loading one plugin and enumerating
/// its devices (default 30).
pub const LOAD_TIMEOUT_ENV: &str = "ANYACCEL_PLUGIN_LOAD_TIMEOUT";

const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The child's line once the library is open and its table checked: `@@loaded <backend>`.
const LOADED: &str = "@@anyaccel-loaded ";
/// The child's line once every device is open and described.
const ENUMERATED: &str = "@@anyaccel-enumerated";

/// The hidden command `anyaccel screen-plugin PATH`: loads the plugin, enumerates its devices
/// and asks each for what the commands ask (its info, capabilities and native ops), printing a
/// line after each stage. A plugin that cannot be used for an ordinary reason (a missing
/// symbol, an error code) still ends with the last line: the command's own load gives that
/// reason.
pub fn screen_child(path: &Path) -> ExitCode {
    let backend = PluginBackend::load(path);
    let mut out = std::io::stdout().lock();
    if backend.load_error().is_none() {
        let _ = writeln!(out, "{LOADED}{}", backend.name());
        let _ = out.flush();
    }
    if let Ok(devices) = backend.probe() {
        for d in devices {
            let _ = (d.info(), d.caps());
        }
    }
    let _ = writeln!(out, "{ENUMERATED}");
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// The load time limit: [`LOAD_TIMEOUT_ENV`] when it holds seconds > 0, else 30 s.
pub fn load_timeout() -> Duration {
    std::env::var(LOAD_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(DEFAULT_LOAD_TIMEOUT)
}

/// What screening one plugin found: `None` when it loaded and enumerated in the child, else
/// the backend name the child reported (if it got that far) and why it is refused.
type Verdict = Option<(Option<String>, String)>;

/// Screens every plugin at once, each in its own child process, and returns a verdict per path.
fn screen_all(paths: &[PathBuf]) -> Vec<Verdict> {
    if paths.is_empty() {
        return Vec::new();
    }
    let limit = load_timeout();
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("anyaccel"));
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .map(|p| s.spawn(|| screen_one(&exe, p, limit)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Some((None, "screening it panicked".into())))
            })
            .collect()
    })
}

fn screen_one(exe: &Path, path: &Path, limit: Duration) -> Verdict {
    let mut child = match Command::new(exe)
        .arg("screen-plugin")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return Some((
                None,
                format!("could not start a process to load it in ({e})"),
            ))
        }
    };
    // Readers in threads: a plugin that writes much cannot block on a full pipe.
    let stdout = child.stdout.take();
    let out_reader = std::thread::spawn(move || {
        stdout
            .map(|o| {
                BufReader::new(o)
                    .lines()
                    .map_while(Result::ok)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    });
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Some((
                    None,
                    format!("could not wait for the process loading it: {e}"),
                ));
            }
        }
    };
    let lines = out_reader.join().unwrap_or_default();
    let stderr_text = err_reader.join().unwrap_or_default();
    let name = lines
        .iter()
        .find_map(|l| l.strip_prefix(LOADED))
        .map(str::to_string);
    let enumerated = lines.iter().any(|l| l == ENUMERATED);
    let stage = if name.is_some() {
        "while enumerating its devices (device_count, device_open, device_info, op_supported)"
    } else {
        "while being loaded (its entry point and table)"
    };
    let what = match status {
        Some(s) if s.success() && enumerated => return None,
        Some(s) => anyaccel_conformance::runner::describe_exit(s),
        None => format!(
            "did not finish within {} s ({LOAD_TIMEOUT_ENV})",
            limit.as_secs_f64()
        ),
    };
    let tail: String = {
        let t = stderr_text.trim();
        let skip = t.chars().count().saturating_sub(400);
        t.chars().skip(skip).collect()
    };
    let stderr_note = if tail.is_empty() {
        String::new()
    } else {
        format!("; its stderr: {tail}")
    };
    Some((
        name,
        format!(
            "{}: the plugin {what} {stage}, in a separate process; it is not loaded{stderr_note}",
            path.display()
        ),
    ))
}

/// Builds the runtime of a command: every compiled-in backend, then the plugins that
/// `ANYACCEL_PLUGIN_PATH` names (when `from_env`), then `explicit` (from `--plugin`), each
/// screened first in a child process. Returns the runtime and the plugin files that loaded
/// (for child processes to load again).
///
/// A plugin named in `explicit` is required: one that cannot be loaded, is refused by
/// screening, or has no devices is an error naming it and the reason. One from the
/// environment is listed unavailable with its reason instead.
pub fn runtime(explicit: &[PathBuf], from_env: bool) -> Result<(Runtime, Vec<PathBuf>), String> {
    let rt = compiled_in();
    let env_files = match std::env::var_os(anyaccel::plugin::PLUGIN_PATH_ENV) {
        Some(list) if from_env => anyaccel::plugin::plugin_files(&list),
        _ => Vec::new(),
    };
    let all: Vec<PathBuf> = env_files.iter().chain(explicit).cloned().collect();
    let verdicts = screen_all(&all);
    let mut loaded = Vec::new();
    for (i, (path, verdict)) in all.iter().zip(verdicts).enumerate() {
        let required = i >= env_files.len();
        let backend = match verdict {
            None => PluginBackend::load(path),
            Some((name, why)) => {
                PluginBackend::refused(path, name.as_deref(), Unavailable::new(why))
            }
        };
        let name = backend.name().to_string();
        let backend = Arc::new(backend);
        let added = rt.add_backend(backend.clone());
        if !required {
            // A second plugin with a taken name is left out; the first one stays.
            if added.is_ok() && backend.load_error().is_none() {
                loaded.push(path.clone());
            }
            continue;
        }
        let flag = format!("--plugin {}", path.display());
        added.map_err(|e| format!("{flag}: {}", e.message()))?;
        match backend.probe() {
            Err(u) => {
                return Err(format!(
                    "{flag}: backend {name} is unavailable: {}",
                    u.reason
                ))
            }
            Ok(d) if d.is_empty() => {
                return Err(format!("{flag}: backend {name} has no devices"));
            }
            Ok(_) => loaded.push(path.clone()),
        }
    }
    Ok((rt, loaded))
}

/// The runtime of a child process that runs cases: every compiled-in backend and the plugins
/// its parent screened and loaded (loaded without screening again; the environment's list is
/// not read).
pub fn worker_runtime(plugins: &[PathBuf]) -> anyaccel::Result<Runtime> {
    let rt = compiled_in();
    for p in plugins {
        anyaccel::load_plugin(&rt, p)
            .map_err(|e| e.context(format!("--plugin {}", p.display())))?;
    }
    Ok(rt)
}

/// A runtime with every compiled-in backend and no plugin.
fn compiled_in() -> Runtime {
    let rt = Runtime::default();
    for backend in anyaccel::compiled_in_backends() {
        // The names of compiled-in backends are distinct by construction.
        let _ = rt.add_backend(backend);
    }
    rt
}
