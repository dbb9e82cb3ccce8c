//! `include/anyaccel.h` must be what cbindgen generates from the sources now: this test
//! regenerates it and fails when the committed header differs. Run it with
//! `ANYACCEL_UPDATE_HEADER=1` to write the fresh header instead.

use std::path::PathBuf;

#[test]
fn committed_header_is_fresh() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("ffi/cbindgen.toml must parse");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen must generate the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("the header is UTF-8");

    let path = crate_dir.join("include").join("anyaccel.h");
    if std::env::var_os("ANYACCEL_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write include/anyaccel.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let first = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        panic!(
            "ffi/include/anyaccel.h is stale (first difference at line {}): regenerate it with\n  ANYACCEL_UPDATE_HEADER=1 cargo test -p anyaccel-ffi --test header\nand commit it.\ncommitted: {:?}\nfresh:     {:?}",
            first + 1,
            committed.lines().nth(first),
            fresh.lines().nth(first)
        );
    }
}
