//! Building plugins for the tests: the C reference plugin of `examples/plugin-c`, variants of it,
//! and small C libraries, compiled with the system's C compiler into the target's temp folder.

#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository root: the first folder up from this crate that holds `examples/plugin-c`
/// (this module is shared by the plugin crate's tests and the facade's).
pub fn root() -> PathBuf {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    while !dir.join("examples/plugin-c").is_dir() {
        assert!(
            dir.pop(),
            "no examples/plugin-c above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
    dir
}

/// The folder of `anyaccel_plugin.h`.
pub fn include_dir() -> PathBuf {
    root().join("backends/plugin/include")
}

/// The sources of the reference plugin (every `.c` file of its `src/`), without `plugin.c` (the
/// table), which variants include.
pub fn ref_sources_without_table() -> Vec<PathBuf> {
    let src = root().join("examples/plugin-c/src");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .expect("the reference plugin's sources are readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "c") && !p.ends_with("plugin.c"))
        .collect();
    files.sort();
    files
}

static BUILD: Mutex<()> = Mutex::new(());

/// Compiles `sources` into the shared library `lib<name>.so` in the target's temp folder, once
/// per process, and returns its path. Panics with the compiler's output when it fails.
pub fn build_library(name: &str, sources: &[PathBuf], extra_flags: &[&str]) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("anyaccel-plugins");
    std::fs::create_dir_all(&dir).expect("create the plugin build folder");
    let out = dir.join(format!("lib{name}.so"));
    let tmp = dir.join(format!("lib{name}.so.{}.tmp", std::process::id()));
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args([
        "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared",
    ])
    .arg("-fvisibility=hidden")
    .arg(format!("-I{}", include_dir().display()))
    .arg(format!(
        "-I{}",
        root().join("examples/plugin-c/src").display()
    ))
    .args(extra_flags)
    .args(sources)
    .arg("-o")
    .arg(&tmp)
    .args(["-lpthread", "-lm"]);
    let output = cmd.output().expect("run the C compiler (cc)");
    assert!(
        output.status.success(),
        "compiling {name} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &out).expect("move the library into place");
    out
}

/// Writes `code` to `<name>.c` in the temp folder and compiles it into `lib<name>.so`.
pub fn build_c(name: &str, code: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("anyaccel-plugins");
    std::fs::create_dir_all(&dir).expect("create the plugin build folder");
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, code).expect("write the C source");
    build_library(name, &[src], &[])
}

/// Writes `code` to `<name>.c` and compiles it with the reference plugin's op sources (for
/// variants that include `plugin.c`).
pub fn build_c_with_ref(name: &str, code: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("anyaccel-plugins");
    std::fs::create_dir_all(&dir).expect("create the plugin build folder");
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, code).expect("write the C source");
    let mut sources = vec![src];
    sources.extend(ref_sources_without_table());
    build_library(name, &sources, &[])
}

/// The reference plugin `examples/plugin-c`, built from its sources.
pub fn reference_plugin() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let mut sources = vec![root().join("examples/plugin-c/src/plugin.c")];
        sources.extend(ref_sources_without_table());
        build_library("anyaccel_ref_test", &sources, &[])
    })
    .clone()
}

/// A test variant under `backends/plugin/tests/plugins/<file>`, built with the reference
/// plugin's op sources.
pub fn variant(file: &str) -> PathBuf {
    let mut sources = vec![root().join("backends/plugin/tests/plugins").join(file)];
    sources.extend(ref_sources_without_table());
    let stem = file.trim_end_matches(".c");
    build_library(&format!("anyaccel_{stem}"), &sources, &[])
}

/// A plugin whose table is the header's struct with the given C initialisers.
pub fn table_plugin(name: &str, init: &str) -> PathBuf {
    build_c(
        name,
        &format!(
            "#include \"anyaccel_plugin.h\"\n\
             static const AnyaccelPluginApi api = {{ {init} }};\n\
             ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t a, uint32_t b) {{\n\
                 (void)a; (void)b; return &api;\n\
             }}\n"
        ),
    )
}

/// A plugin of `tests/plugins/broken.c` built with `-DBROKEN_<MODE>` (e.g. `CRASH_INFO`), named
/// `broken_<mode>` in lower case; its library is `libanyaccel_broken_<mode>.so`.
pub fn broken(mode: &str) -> PathBuf {
    let name = format!("broken_{}", mode.to_ascii_lowercase());
    let mut sources = vec![root().join("backends/plugin/tests/plugins/broken.c")];
    sources.extend(ref_sources_without_table());
    build_library(
        &format!("anyaccel_{name}"),
        &sources,
        &[
            &format!("-DBROKEN_{mode}"),
            &format!("-DBROKEN_NAME=\"{name}\""),
        ],
    )
}
