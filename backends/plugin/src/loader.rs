//! Opening a plugin library and checking its table: every way a plugin can fail to load becomes
//! an [`Unavailable`] reason in the loader's own words.

use std::ffi::{c_char, CStr};
use std::mem::ManuallyDrop;
use std::path::Path;
use std::sync::Arc;

use anyaccel_hal::{Error, ErrorCode, Result, Unavailable};
use libloading::Library;

use crate::sys::{self, AnyaccelPluginApi, AnyaccelStatus, GetApiFn};

/// A loaded plugin: its checked table and where it came from. The library stays loaded until
/// the process ends (handles may outlive every Rust object, and plugins may own threads).
pub(crate) struct Plugin {
    pub(crate) api: AnyaccelPluginApi,
    /// The collectives table (ABI 1.1), complete, when the plugin has one.
    pub(crate) collectives: Option<sys::AnyaccelCollectivesApi>,
    /// The backend name, `plugin:<name>`.
    pub(crate) backend: String,
    pub(crate) version: String,
}

/// Reads a C string the plugin owns; an absent or non-UTF-8 string is replaced.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string valid for the duration of the call.
pub(crate) unsafe fn c_text(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// The backend name for a library that could not be loaded: `plugin:<file stem>`, without a
/// leading `lib`.
pub(crate) fn fallback_name(path: &Path) -> String {
    let stem = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".into());
    let stem = stem.split('.').next().unwrap_or(&stem).to_string();
    let stem = stem.strip_prefix("lib").unwrap_or(&stem);
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "plugin:{}",
        if clean.is_empty() { "unknown" } else { &clean }
    )
}

/// An error with its sources, as `dlopen failed: libx.so: cannot open shared object file`.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

impl Plugin {
    /// Opens the library at `path` and checks its table.
    pub(crate) fn open(path: &Path) -> Result<Plugin, Unavailable> {
        let shown = path.display();
        let fail = |why: String| Unavailable::new(format!("plugin {shown}: {why}"));
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(fail("not a file (expected a shared library)".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(fail("file not found".into()))
            }
            Err(e) => return Err(fail(format!("cannot read the file: {e}"))),
        }
        // SAFETY: loading a library runs its initialisers. That is the point of a plugin: the
        // user named this file as one. Nothing else can be checked before loading it.
        let lib = unsafe { Library::new(path) }.map_err(|e| {
            fail(format!(
                "not a loadable shared library: {}",
                with_sources(&e)
            ))
        })?;
        // The library is never unloaded, accepted or not: its code must outlive every handle
        // and any thread its initialisers started. `ManuallyDrop` keeps the loader's handle open
        // without dropping it (no dlclose) and without a heap allocation to lose per library.
        let lib = ManuallyDrop::new(lib);
        let entry_name = format!("{}\0", sys::ENTRY);
        // SAFETY: the symbol is declared in anyaccel_plugin.h with exactly this type.
        let get_api = unsafe { lib.get::<GetApiFn>(entry_name.as_bytes()) }.map_err(|e| {
            fail(format!(
                "entry symbol `{}` is missing: {}; a plugin exports it (see anyaccel_plugin.h)",
                sys::ENTRY,
                with_sources(&e)
            ))
        })?;
        let get_api: GetApiFn = *get_api;
        // SAFETY: the entry point takes two integers and returns a table pointer or NULL.
        let table = unsafe { get_api(sys::ABI_MAJOR, sys::ABI_MINOR) };
        if table.is_null() {
            return Err(fail(format!(
                "`{}` returned NULL: the plugin refused a host of plugin ABI {}.{}",
                sys::ENTRY,
                sys::ABI_MAJOR,
                sys::ABI_MINOR
            )));
        }
        // Only struct_size, abi_major and abi_minor are fixed for every version: read them
        // first, then only as much of the rest as struct_size covers.
        // SAFETY: every table starts with a size_t struct_size; the pointer is non-null and the
        // plugin keeps the table alive forever.
        let struct_size = unsafe { std::ptr::read(table as *const usize) };
        let header = std::mem::size_of::<usize>() + 8;
        if struct_size < header {
            return Err(fail(format!(
                "the table's struct_size is {struct_size} bytes, too small to hold even its ABI version; \
                 expected at least {} bytes (the ABI {}.{} table)",
                sys::API_V1_SIZE,
                sys::ABI_MAJOR,
                sys::ABI_MINOR
            )));
        }
        // SAFETY: struct_size covers the two u32 after struct_size (checked just above).
        let (major, minor) = unsafe {
            let p = (table as *const u8).add(std::mem::size_of::<usize>()) as *const u32;
            (
                std::ptr::read_unaligned(p),
                std::ptr::read_unaligned(p.add(1)),
            )
        };
        if major != sys::ABI_MAJOR {
            return Err(fail(format!(
                "plugin ABI mismatch: the plugin was built for ABI {major}.{minor}, this anyaccel \
                 speaks ABI {}.{}; the major versions must be equal (rebuild the plugin against \
                 this anyaccel_plugin.h)",
                sys::ABI_MAJOR,
                sys::ABI_MINOR
            )));
        }
        if struct_size < sys::API_V1_SIZE {
            return Err(fail(format!(
                "the table's struct_size is {struct_size} bytes, smaller than the ABI {}.0 table \
                 ({} bytes): the plugin was built against a truncated or foreign header",
                sys::ABI_MAJOR,
                sys::API_V1_SIZE
            )));
        }
        let mut api = AnyaccelPluginApi::empty();
        // Whole fields only: a table cut inside a field leaves that field absent.
        let known = std::mem::size_of::<AnyaccelPluginApi>();
        let covered = if struct_size >= known {
            known
        } else {
            sys::API_V1_SIZE
                + (struct_size - sys::API_V1_SIZE) / std::mem::size_of::<usize>()
                    * std::mem::size_of::<usize>()
        };
        // SAFETY: the plugin's table has struct_size >= covered >= API_V1_SIZE bytes (checked
        // above), and `covered` ends on a field boundary of this host's table (every field after
        // API_V1_SIZE is pointer-sized); fields the plugin appends in later minors are not read,
        // and those of this host's minor that it lacks stay absent.
        unsafe {
            std::ptr::copy_nonoverlapping(
                table as *const u8,
                &mut api as *mut AnyaccelPluginApi as *mut u8,
                covered,
            )
        };
        api.struct_size = struct_size;
        let missing: Vec<&str> = sys::REQUIRED
            .iter()
            .copied()
            .filter(|f| !api.has(f))
            .collect();
        if !missing.is_empty() {
            return Err(fail(format!(
                "required function{} {} {} NULL in the table; every plugin provides {}",
                if missing.len() > 1 { "s" } else { "" },
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if missing.len() > 1 { "are" } else { "is" },
                sys::REQUIRED.join(", ")
            )));
        }
        let kernels = [
            "module_load",
            "module_unload",
            "kernel_get",
            "kernel_launch",
        ];
        let present = kernels.iter().filter(|f| api.has(f)).count();
        if present != 0 && present != kernels.len() {
            return Err(fail(format!(
                "the kernel functions {} must all be present or all be NULL; {present} of 4 are present",
                kernels.join(", ")
            )));
        }
        if api.op_supported.is_some() != api.op_execute.is_some() {
            return Err(fail(
                "op_supported and op_execute must both be present or both be NULL".into(),
            ));
        }
        let collectives = if api.collectives.is_null() {
            None
        } else {
            // SAFETY: a non-NULL collectives pointer points to a table that starts with its
            // size_t struct_size and lives until the process ends (the header).
            let size = unsafe { std::ptr::read(api.collectives as *const usize) };
            let want = std::mem::size_of::<sys::AnyaccelCollectivesApi>();
            if size < want {
                return Err(fail(format!(
                    "the collectives table's struct_size is {size} bytes, expected at least {want} \
                     (every function of the ABI 1.1 table)"
                )));
            }
            // SAFETY: the table has at least `want` bytes (checked just above).
            let c = unsafe { std::ptr::read(api.collectives) };
            let named = [
                ("comm_create", c.comm_create.is_some()),
                ("comm_destroy", c.comm_destroy.is_some()),
                ("all_reduce", c.all_reduce.is_some()),
                ("broadcast", c.broadcast.is_some()),
                ("all_gather", c.all_gather.is_some()),
                ("reduce_scatter", c.reduce_scatter.is_some()),
            ];
            let missing: Vec<&str> = named.iter().filter(|f| !f.1).map(|f| f.0).collect();
            if !missing.is_empty() {
                return Err(fail(format!(
                    "the collectives table has NULL {}: a collectives table sets every function",
                    missing.join(", ")
                )));
            }
            Some(c)
        };
        // SAFETY: name and version are static NUL-terminated strings or NULL (the header).
        let name = unsafe { c_text(api.name) }.unwrap_or_default();
        if !valid_name(&name) {
            return Err(fail(format!(
                "the table's name is `{name}`: expected 1 to 64 lower-case letters, digits, '_' or '-'"
            )));
        }
        // SAFETY: as above.
        let version = unsafe { c_text(api.version) }.unwrap_or_default();
        Ok(Plugin {
            api,
            collectives,
            backend: format!("plugin:{name}"),
            version,
        })
    }

    /// The plugin's message for the last error on this thread.
    pub(crate) fn last_error(&self) -> String {
        let Some(f) = self.api.last_error else {
            return String::new();
        };
        // SAFETY: last_error takes nothing and returns a string the plugin owns, valid until this
        // thread's next call into the plugin; it is copied at once.
        unsafe { c_text(f()) }.unwrap_or_default()
    }

    /// `Ok` for `ANYACCEL_OK`, else the plugin's error with its message, prefixed by the
    /// backend and the function that failed.
    pub(crate) fn check(&self, function: &str, status: AnyaccelStatus) -> Result<()> {
        if status == sys::ANYACCEL_OK {
            return Ok(());
        }
        let message = self.last_error();
        let message = if message.is_empty() {
            "(the plugin gave no message)".to_string()
        } else {
            message
        };
        match ErrorCode::from_i32(status) {
            Some(code) => Err(Error::new(
                code,
                format!("{} {function}: {message}", self.backend),
            )),
            None => Err(Error::internal(format!(
                "{} {function}: returned status {status}, which is not an anyaccel error code (1 to 11): {message}",
                self.backend
            ))),
        }
    }
}

/// A shared handle on a loaded plugin.
pub(crate) type PluginRef = Arc<Plugin>;
