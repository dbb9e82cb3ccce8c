//! Builds `fake-plugin/fake_plugin.c` into a shared library for the `plugin_table` target (with
//! the system C compiler, uninstrumented: it only hands back a pointer).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let lib = out.join("libanyaccel_fuzz_plugin.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg("fake-plugin/fake_plugin.c")
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler `{cc}`: {e}"));
    assert!(
        status.success(),
        "`{cc}` failed on fake-plugin/fake_plugin.c"
    );
    println!("cargo:rerun-if-changed=fake-plugin/fake_plugin.c");
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rustc-env=ANYACCEL_FUZZ_PLUGIN={}", lib.display());
}
