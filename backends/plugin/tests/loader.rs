//! Loading plugins: every way a library can fail to be a plugin gives its own `Unavailable`
//! reason, tested with real shared libraries built here; a good plugin loads, from a path or
//! from `ANYACCEL_PLUGIN_PATH`, and its errors reach the caller with its own message.

mod common;

use std::path::Path;
use std::sync::Arc;

use anyaccel_hal::{AttrValue, Backend, DType, ErrorCode, Runtime, Tensor};
use anyaccel_plugin::PluginBackend;

/// The reason a backend gives for being unavailable; panics if it is available.
fn reason(backend: &PluginBackend) -> String {
    match backend.probe() {
        Ok(devices) => panic!(
            "{} loaded with {} devices, expected it to be unavailable",
            backend.name(),
            devices.len()
        ),
        Err(u) => u.reason,
    }
}

#[test]
fn a_missing_file_is_named() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-dir/libnothing.so");
    let b = PluginBackend::load(&path);
    assert_eq!(b.name(), "plugin:nothing");
    let r = reason(&b);
    assert!(
        r.contains("file not found") && r.contains("libnothing.so"),
        "{r}"
    );
}

#[test]
fn a_file_that_is_not_a_library_gives_the_dlopen_text() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("anyaccel-plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("libtext.so");
    std::fs::write(
        &path,
        "this is a text file, not a shared library\n".repeat(8),
    )
    .unwrap();
    let r = reason(&PluginBackend::load(&path));
    assert!(r.contains("not a loadable shared library"), "{r}");
    // dlopen's own words name the file and what is wrong with it.
    assert!(
        r.contains("libtext.so:") && r.contains("invalid ELF header"),
        "{r}"
    );
}

#[test]
fn a_library_without_the_entry_symbol_is_refused() {
    let path = common::build_c(
        "no_entry",
        "#include \"anyaccel_plugin.h\"\n\
         ANYACCEL_PLUGIN_EXPORT int something_else(void) { return 1; }\n",
    );
    let r = reason(&PluginBackend::load(&path));
    assert!(
        r.contains("entry symbol `anyaccel_plugin_get_api` is missing")
            && r.contains("undefined symbol"),
        "{r}"
    );
}

#[test]
fn an_abi_major_mismatch_names_both_versions() {
    let path = common::table_plugin(
        "future_abi",
        ".struct_size = sizeof(AnyaccelPluginApi), .abi_major = 2, .abi_minor = 3, .name = \"future\"",
    );
    let b = PluginBackend::load(&path);
    let r = reason(&b);
    assert!(
        r.contains("ABI mismatch")
            && r.contains("built for ABI 2.3")
            && r.contains("speaks ABI 1.1"),
        "{r}"
    );
    // A plugin that did not load is named after its file.
    assert_eq!(b.name(), "plugin:future_abi");
}

#[test]
fn a_newer_minor_with_a_longer_table_is_accepted_up_to_what_we_know() {
    // A 1.7 plugin whose table is longer than ours loads: only the 1.0 part is read.
    let path = common::build_c_with_ref(
        "newer_minor",
        "#define anyaccel_plugin_get_api ref_table\n\
         #include \"plugin.c\"\n\
         #undef anyaccel_plugin_get_api\n\
         static struct { AnyaccelPluginApi api; void *appended[4]; } longer;\n\
         ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t a, uint32_t b) {\n\
             longer.api = *ref_table(a, b);\n\
             longer.api.struct_size = sizeof longer;\n\
             longer.api.abi_minor = 7;\n\
             longer.api.name = \"newerminor\";\n\
             return &longer.api;\n\
         }\n",
    );
    let b = PluginBackend::load(&path);
    let devices = b.probe().unwrap_or_else(|u| panic!("{u}"));
    assert_eq!(devices[0].info().id, "plugin:newerminor:0");
}

#[test]
fn a_collectives_table_with_a_null_function_is_refused_naming_it() {
    let path = common::build_c_with_ref(
        "half_collectives",
        "#define anyaccel_plugin_get_api ref_table\n\
         #include \"plugin.c\"\n\
         #undef anyaccel_plugin_get_api\n\
         static AnyaccelPluginApi t;\n\
         static AnyaccelCollectivesApi c;\n\
         ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t a, uint32_t b) {\n\
             t = *ref_table(a, b);\n\
             c = *t.collectives;\n\
             c.broadcast = NULL;\n\
             c.reduce_scatter = NULL;\n\
             t.collectives = &c;\n\
             t.name = \"halfcoll\";\n\
             return &t;\n\
         }\n",
    );
    let r = reason(&PluginBackend::load(&path));
    assert!(
        r.contains("collectives table has NULL broadcast, reduce_scatter"),
        "{r}"
    );
}

#[test]
fn a_table_smaller_than_abi_1_0_is_refused() {
    let path = common::table_plugin(
        "short_table",
        ".struct_size = 64, .abi_major = 1, .abi_minor = 0, .name = \"short\"",
    );
    let r = reason(&PluginBackend::load(&path));
    assert!(
        r.contains("struct_size is 64 bytes, smaller than the ABI 1.0 table")
            && r.contains(&format!("({} bytes)", anyaccel_plugin::sys::API_V1_SIZE)),
        "{r}"
    );
}

#[test]
fn a_required_function_that_is_null_is_named() {
    let path = common::variant("null_function.c");
    let r = reason(&PluginBackend::load(&path));
    assert!(r.contains("required function `copy_d2d` is NULL"), "{r}");
    // Only that one is named.
    assert!(!r.contains("`copy_h2d` is"), "{r}");
}

#[test]
fn a_plugin_that_refuses_the_host_returns_null() {
    let path = common::build_c(
        "refuses",
        "#include \"anyaccel_plugin.h\"\n\
         ANYACCEL_PLUGIN_EXPORT const AnyaccelPluginApi *anyaccel_plugin_get_api(uint32_t a, uint32_t b) {\n\
             (void)a; (void)b; return NULL;\n\
         }\n",
    );
    let r = reason(&PluginBackend::load(&path));
    assert!(r.contains("returned NULL") && r.contains("ABI 1.1"), "{r}");
}

#[test]
fn a_bad_name_is_refused() {
    let mut init = String::from(
        ".struct_size = sizeof(AnyaccelPluginApi), .abi_major = 1, .name = \"Bad Name\"",
    );
    // Every required function present (any non-NULL address will do: none is called).
    for f in anyaccel_plugin::sys::REQUIRED {
        init.push_str(&format!(", .{f} = (void *)1"));
    }
    let path = common::table_plugin("bad_name", &init);
    let r = reason(&PluginBackend::load(&path));
    assert!(r.contains("name is `Bad Name`"), "{r}");
}

#[test]
fn the_reference_plugin_loads_with_one_device() {
    let b = PluginBackend::load(common::reference_plugin());
    assert_eq!(b.name(), "plugin:ref");
    assert_eq!(b.plugin_version(), Some("1.0.0"));
    let devices = b.probe().unwrap_or_else(|u| panic!("{u}"));
    assert_eq!(devices.len(), 1);
    let d = &devices[0];
    assert_eq!(d.info().id, "plugin:ref:0");
    assert_eq!(d.info().backend, "plugin:ref");
    assert!(d.info().name.contains("reference plugin"));
    assert!(d.caps().dtypes.contains(&DType::BF16) && d.caps().dtypes.contains(&DType::F64));
    // Every op of the catalog.
    assert_eq!(
        d.caps().native_ops.len(),
        anyaccel_ops::CATALOG.len(),
        "{:?}",
        d.caps().native_ops
    );
    assert!(d.caps().timestamps);
    assert!(d.caps().dialects.is_empty());
    // A second probe gives the same devices.
    let again = b.probe().unwrap();
    assert!(Arc::ptr_eq(&devices[0], &again[0]));
}

#[test]
fn plugin_path_lists_files_and_folders() {
    let lib = common::reference_plugin();
    let folder = lib.parent().unwrap().to_path_buf();
    let list = std::env::join_paths([folder.clone(), "/no/such/libx.so".into()]).unwrap();
    let files = anyaccel_plugin::plugin_files(&list);
    assert!(files.contains(&lib), "{files:?}");
    assert!(files
        .iter()
        .all(|f| f.extension().is_some_and(|e| e == "so")));
    assert_eq!(files.last().unwrap(), Path::new("/no/such/libx.so"));
    // Sorted within the folder.
    let in_folder: Vec<_> = files.iter().filter(|f| f.starts_with(&folder)).collect();
    let mut sorted = in_folder.clone();
    sorted.sort();
    assert_eq!(in_folder, sorted);
}

#[test]
fn plugin_errors_reach_the_caller_with_the_plugin_s_message() {
    let b = PluginBackend::load(common::reference_plugin());
    let rt = Runtime::with_backends(vec![Arc::new(b)]).unwrap();
    let device = rt.device("plugin:ref:0").unwrap();
    let q = device.create_queue().unwrap();
    let x = Tensor::from_slice(&*q, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]).unwrap();
    let idx = Tensor::from_slice(&*q, &[0i64, 7], &[2]).unwrap();
    // Validation passes (the host cannot know the index values); the plugin finds index 7
    // while the op runs, and the error comes back at the next sync, in the plugin's words.
    let out = anyaccel_ops::call(
        &*q,
        "index_select",
        &[Some(&x), Some(&idx)],
        &[("axis".to_string(), AttrValue::Int(0))],
    )
    .expect("the call is queued");
    let e = q.finish().unwrap_err();
    assert_eq!(e.code(), ErrorCode::OutOfBounds);
    assert_eq!(
        e.message(),
        "plugin:ref stream_synchronize: index_select: index 7 out of range 0..3 along axis 0"
    );
    // The queue runs again after reporting.
    let idx = Tensor::from_slice(&*q, &[2i64, 0], &[2]).unwrap();
    let out2 = anyaccel_ops::call(
        &*q,
        "index_select",
        &[Some(&x), Some(&idx)],
        &[("axis".to_string(), AttrValue::Int(0))],
    )
    .unwrap();
    assert_eq!(
        out2[0].to_vec::<f32>(&*q).unwrap(),
        vec![5.0, 6.0, 1.0, 2.0]
    );
    drop(out);
}
