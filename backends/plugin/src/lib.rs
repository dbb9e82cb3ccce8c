//! # anyaccel-plugin: the vendor plugin slot
//!
//! How a chip joins anyaccel without touching this repository: its vendor builds a shared
//! library against one C header, [`include/anyaccel_plugin.h`](../include/anyaccel_plugin.h)
//! (also [`HEADER`]), and anyaccel loads it at run time. This crate is the host side of that
//! header, and a way to write such a plugin in Rust:
//!
//! - [`PluginBackend::load`] opens a plugin library and checks its table. A library that cannot
//!   be used still gives a backend, named `plugin:<file stem>`, whose probe is
//!   [`anyaccel_hal::Unavailable`] with the reason: file not found, the `dlopen` error, a missing
//!   entry symbol, an ABI major mismatch (both versions named), a table smaller than the ABI it
//!   claims, a required function that is NULL. `anyaccel devices` shows it.
//! - [`backends_from_env`] loads every plugin named by `ANYACCEL_PLUGIN_PATH` (files, or folders
//!   whose shared libraries are all loaded).
//! - A loaded plugin is a backend `plugin:<name>` whose devices `plugin:<name>:<i>` implement the
//!   whole HAL over the plugin's table: [`PluginDevice`] (memory, streams, events, kernels when
//!   the plugin has them) and native ops, which is how the common op set runs on a plugin: the
//!   op layer hands each [`anyaccel_hal::OpCall`] to `op_supported` / `op_execute` as
//!   DLPack-shaped tensor descriptors with the names and attributes of `docs/ops.md`.
//! - Errors a plugin returns come back as [`anyaccel_hal::Error`]s with the plugin's code and its
//!   own message (from `last_error`), prefixed with the backend and the function.
//! - [`sys`] is the Rust mirror of the header, `#[repr(C)]` field for field; a test compiles a C
//!   program that prints the header's sizes and offsets and compares them.
//! - [`sdk`] lets a vendor write a plugin in Rust: implement [`sdk::Plugin`] and export it with
//!   [`export_plugin!`](crate::export_plugin).
//!
//! ```no_run
//! use anyaccel_hal::Backend;
//! let backend = anyaccel_plugin::PluginBackend::load("examples/plugin-c/build/libanyaccel_ref.so");
//! match backend.probe() {
//!     Ok(devices) => println!("{}: {} devices", backend.name(), devices.len()),
//!     Err(why) => println!("{}: {why}", backend.name()),
//! }
//! ```

mod collectives;
mod device;
mod loader;
mod op;
mod queue;
pub mod sdk;
pub mod sys;

use std::path::{Path, PathBuf};

pub use device::{PluginBackend, PluginDevice, PluginKernel, PluginMemory};
pub use op::dtype_of;
pub use queue::{PluginEvent, PluginQueue};

/// The text of `anyaccel_plugin.h`, the header vendors build against.
pub const HEADER: &str = include_str!("../include/anyaccel_plugin.h");

/// Environment variable listing plugins to load: paths separated by `:` (`;` on Windows), each a
/// plugin library or a folder whose shared libraries are all loaded.
pub const PLUGIN_PATH_ENV: &str = "ANYACCEL_PLUGIN_PATH";

/// The file extension of shared libraries on this platform.
pub const LIBRARY_EXTENSION: &str = std::env::consts::DLL_EXTENSION;

/// The plugin files a path list names: files as given, and for each folder the shared
/// libraries in it, sorted by name. A folder that cannot be read is returned as is, so that
/// loading it reports the reason.
pub fn plugin_files(list: &std::ffi::OsStr) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::env::split_paths(list) {
        if entry.as_os_str().is_empty() {
            continue;
        }
        if entry.is_dir() {
            match std::fs::read_dir(&entry) {
                Ok(dir) => {
                    let mut files: Vec<PathBuf> = dir
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.is_file()
                                && p.extension().and_then(|x| x.to_str()) == Some(LIBRARY_EXTENSION)
                        })
                        .collect();
                    files.sort();
                    out.extend(files);
                }
                Err(_) => out.push(entry),
            }
        } else {
            out.push(entry);
        }
    }
    out
}

/// A backend for each plugin that `ANYACCEL_PLUGIN_PATH` names (none when it is unset).
pub fn backends_from_env() -> Vec<PluginBackend> {
    match std::env::var_os(PLUGIN_PATH_ENV) {
        Some(list) => plugin_files(&list).iter().map(load).collect(),
        None => Vec::new(),
    }
}

/// Loads the plugin library at `path`; see [`PluginBackend::load`].
pub fn load(path: impl AsRef<Path>) -> PluginBackend {
    PluginBackend::load(path)
}
