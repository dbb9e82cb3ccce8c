//! The header and its Rust mirror agree: a C program compiled against `anyaccel_plugin.h`
//! prints the size of every struct and the offset and size of every field, and the values of
//! the constants; each must equal what `anyaccel_plugin::sys` has.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use anyaccel_hal::ErrorCode;
use anyaccel_plugin::sys;

fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    std::mem::size_of::<F>()
}

/// Every struct of the header with every field, as (struct, size, [(field, offset, size)]).
type Layout = Vec<(&'static str, usize, Vec<(&'static str, usize, usize)>)>;

macro_rules! layout {
    ($($ty:ident { $($field:ident),* $(,)? })*) => {
        vec![$((
            stringify!($ty),
            std::mem::size_of::<sys::$ty>(),
            vec![$((
                stringify!($field),
                std::mem::offset_of!(sys::$ty, $field),
                field_size(|s: &sys::$ty| &s.$field),
            )),*],
        )),*]
    };
}

fn rust_layout() -> Layout {
    layout! {
        AnyaccelDataType { code, bits, lanes }
        AnyaccelDeviceInfo {
            struct_size, name, vendor, driver_version, memory_bytes, max_buffer_bytes,
            max_work_group_size, compute_units, dtype_mask, timestamps, dialects, native_ops,
        }
        AnyaccelTensor { struct_size, buffer, byte_offset, ndim, dtype, shape, strides }
        AnyaccelAttr {
            struct_size, name, kind, int_value, float_value, ints, ints_len, str, str_len,
        }
        AnyaccelOpCall {
            struct_size, op, inputs, num_inputs, outputs, num_outputs, attrs, num_attrs,
        }
        AnyaccelModuleSource { struct_size, dialect, data, size, options }
        AnyaccelKernelArg { struct_size, kind, buffer, offset, size, bytes }
        AnyaccelLaunch { struct_size, global, local, has_local, args, num_args }
        AnyaccelPluginApi {
            struct_size, abi_major, abi_minor, name, version, last_error, device_count,
            device_open, device_close, device_info, buffer_alloc, buffer_free, copy_h2d,
            copy_d2h, copy_d2d, fill, stream_create, stream_destroy, stream_synchronize,
            stream_wait_event, event_create, event_destroy, event_record, event_query,
            event_synchronize, event_elapsed_ms, module_load, module_unload, kernel_get,
            kernel_launch, op_supported, op_execute, copy_peer, collectives, buffer_host_ptr,
        }
        AnyaccelCollectiveRank { struct_size, stream, send, send_offset, recv, recv_offset }
        AnyaccelCollectivesApi {
            struct_size, comm_create, comm_destroy, all_reduce, broadcast, all_gather,
            reduce_scatter,
        }
    }
}

/// The constants of the header and the values the Rust side gives them.
fn rust_constants() -> Vec<(&'static str, i64)> {
    let mut v: Vec<(&'static str, i64)> = vec![
        ("ANYACCEL_PLUGIN_ABI_MAJOR", sys::ABI_MAJOR as i64),
        ("ANYACCEL_PLUGIN_ABI_MINOR", sys::ABI_MINOR as i64),
        ("ANYACCEL_OK", sys::ANYACCEL_OK as i64),
        ("ANYACCEL_DTYPE_F32", sys::ANYACCEL_DTYPE_F32 as i64),
        ("ANYACCEL_DTYPE_F16", sys::ANYACCEL_DTYPE_F16 as i64),
        ("ANYACCEL_DTYPE_BF16", sys::ANYACCEL_DTYPE_BF16 as i64),
        ("ANYACCEL_DTYPE_F64", sys::ANYACCEL_DTYPE_F64 as i64),
        ("ANYACCEL_DTYPE_I32", sys::ANYACCEL_DTYPE_I32 as i64),
        ("ANYACCEL_DTYPE_I64", sys::ANYACCEL_DTYPE_I64 as i64),
        ("ANYACCEL_DTYPE_U8", sys::ANYACCEL_DTYPE_U8 as i64),
        ("ANYACCEL_DTYPE_BOOL", sys::ANYACCEL_DTYPE_BOOL as i64),
        ("ANYACCEL_DTYPE_I8", sys::ANYACCEL_DTYPE_I8 as i64),
        ("ANYACCEL_REDUCE_SUM", sys::ANYACCEL_REDUCE_SUM as i64),
        ("ANYACCEL_REDUCE_MAX", sys::ANYACCEL_REDUCE_MAX as i64),
        ("ANYACCEL_REDUCE_MIN", sys::ANYACCEL_REDUCE_MIN as i64),
        ("ANYACCEL_REDUCE_MEAN", sys::ANYACCEL_REDUCE_MEAN as i64),
        ("ANYACCEL_DL_INT", sys::ANYACCEL_DL_INT as i64),
        ("ANYACCEL_DL_UINT", sys::ANYACCEL_DL_UINT as i64),
        ("ANYACCEL_DL_FLOAT", sys::ANYACCEL_DL_FLOAT as i64),
        ("ANYACCEL_DL_BFLOAT", sys::ANYACCEL_DL_BFLOAT as i64),
        ("ANYACCEL_DL_BOOL", sys::ANYACCEL_DL_BOOL as i64),
        ("ANYACCEL_ATTR_INT", sys::ANYACCEL_ATTR_INT as i64),
        ("ANYACCEL_ATTR_FLOAT", sys::ANYACCEL_ATTR_FLOAT as i64),
        ("ANYACCEL_ATTR_INTS", sys::ANYACCEL_ATTR_INTS as i64),
        ("ANYACCEL_ATTR_STR", sys::ANYACCEL_ATTR_STR as i64),
        ("ANYACCEL_ARG_BUFFER", sys::ANYACCEL_ARG_BUFFER as i64),
        ("ANYACCEL_ARG_BYTES", sys::ANYACCEL_ARG_BYTES as i64),
    ];
    // The status codes are anyaccel's ErrorCode numbers.
    let codes: [(&'static str, ErrorCode); 11] = [
        (
            "ANYACCEL_ERROR_INVALID_ARGUMENT",
            ErrorCode::InvalidArgument,
        ),
        ("ANYACCEL_ERROR_OUT_OF_BOUNDS", ErrorCode::OutOfBounds),
        ("ANYACCEL_ERROR_UNSUPPORTED", ErrorCode::Unsupported),
        ("ANYACCEL_ERROR_UNAVAILABLE", ErrorCode::Unavailable),
        ("ANYACCEL_ERROR_OUT_OF_MEMORY", ErrorCode::OutOfMemory),
        ("ANYACCEL_ERROR_COMPILE_FAILED", ErrorCode::CompileFailed),
        ("ANYACCEL_ERROR_LAUNCH_FAILED", ErrorCode::LaunchFailed),
        ("ANYACCEL_ERROR_DEVICE_LOST", ErrorCode::DeviceLost),
        ("ANYACCEL_ERROR_TIMEOUT", ErrorCode::Timeout),
        ("ANYACCEL_ERROR_ABI_MISMATCH", ErrorCode::AbiMismatch),
        ("ANYACCEL_ERROR_INTERNAL", ErrorCode::Internal),
    ];
    v.extend(codes.iter().map(|(n, c)| (*n, c.as_i32() as i64)));
    v
}

/// A C program that prints `S <struct> <size>`, `F <struct>.<field> <offset> <size>` and
/// `C <constant> <value>` lines for the same names, as the header lays them out.
fn c_program(layout: &Layout, constants: &[(&str, i64)]) -> String {
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"anyaccel_plugin.h\"\n\nint main(void) {\n",
    );
    for (ty, _, fields) in layout {
        writeln!(c, "    printf(\"S {ty} %zu\\n\", sizeof({ty}));").unwrap();
        for (f, _, _) in fields {
            writeln!(
                c,
                "    printf(\"F {ty}.{f} %zu %zu\\n\", offsetof({ty}, {f}), sizeof((({ty} *)0)->{f}));"
            )
            .unwrap();
        }
    }
    for (name, _) in constants {
        writeln!(c, "    printf(\"C {name} %lld\\n\", (long long)({name}));").unwrap();
    }
    c.push_str("    return 0;\n}\n");
    c
}

#[test]
fn the_rust_mirror_has_the_header_s_sizes_offsets_and_constants() {
    let layout = rust_layout();
    let constants = rust_constants();
    let text = run_c("layout", &c_program(&layout, &constants));
    let mut c: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (_, key) = (parts.next(), parts.next().unwrap().to_string());
        c.insert(key, parts.map(|p| p.parse().unwrap()).collect());
    }
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for (ty, size, fields) in &layout {
        let want = &c[*ty];
        if want[0] != *size as i64 {
            mismatches.push(format!("sizeof({ty}): C {} but Rust {size}", want[0]));
        }
        for (f, off, fsize) in fields {
            let want = &c[&format!("{ty}.{f}")];
            checked += 1;
            if want[0] != *off as i64 || want[1] != *fsize as i64 {
                mismatches.push(format!(
                    "{ty}.{f}: C offset {} size {}, Rust offset {off} size {fsize}",
                    want[0], want[1]
                ));
            }
        }
    }
    for (name, value) in &constants {
        if c[*name][0] != *value {
            mismatches.push(format!("{name}: C {} but Rust {value}", c[*name][0]));
        }
    }
    assert!(
        mismatches.is_empty(),
        "header and mirror differ:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(checked, 104, "every field of every struct is compared");
    // The loader's minimum table size is the ABI 1.0 table: up to the first field of 1.1.
    assert_eq!(sys::API_V1_SIZE as i64, c["AnyaccelPluginApi.copy_peer"][0]);
}

/// `ANYACCEL_ARRAY_AT` steps through an array of versioned structs by the host's struct_size:
/// here a host whose AnyaccelAttr has grown by 24 bytes (a later minor), read by a plugin built
/// against this header.
#[test]
fn array_at_steps_by_the_host_s_struct_size() {
    let out = run_c(
        "array_at",
        r#"#include <stdio.h>
#include "anyaccel_plugin.h"
typedef struct { AnyaccelAttr attr; char appended[24]; } LaterAttr;
int main(void) {
    LaterAttr host[3] = {0};
    const char *names[3] = {"axis", "eps", "approximate"};
    for (int i = 0; i < 3; i++) {
        host[i].attr.struct_size = sizeof(LaterAttr);
        host[i].attr.name = names[i];
        host[i].attr.int_value = 10 * i;
    }
    const AnyaccelAttr *attrs = &host[0].attr;
    for (int i = 0; i < 3; i++) {
        const AnyaccelAttr *a = ANYACCEL_ARRAY_AT(attrs, AnyaccelAttr, i);
        printf("%s %lld\n", a->name, (long long)a->int_value);
    }
    return 0;
}
"#,
    );
    assert_eq!(out, "axis 0\neps 10\napproximate 20\n");
}

/// Compiles `code` (C11, against anyaccel_plugin.h, warnings as errors) into a program called
/// `name`, runs it and returns what it printed.
fn run_c(name: &str, code: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("anyaccel-layout");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, code).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg(format!("-I{}", common::include_dir().display()))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run the C compiler");
    assert!(
        out.status.success(),
        "{name}.c does not compile against anyaccel_plugin.h:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("run the program");
    assert!(run.status.success(), "{name} failed");
    String::from_utf8(run.stdout).unwrap()
}
