//! NVRTC without a GPU: CUDA C to PTX and cubins for several architectures, compile errors with
//! the compiler's log, options. Skipped (saying so) when `libnvrtc` cannot be loaded, unless
//! `ANYACCEL_REQUIRE` names `nvrtc`.

use anyaccel_cuda::nvrtc::{self, Arch};
use anyaccel_hal::ErrorCode;

const SAXPY: &str = include_str!("kernels/saxpy.cu");
const SYNTAX_ERROR: &str = include_str!("kernels/syntax_error.cu");
const SCALE: &str = include_str!("kernels/scale_options.cu");

fn nvrtc_or_skip() -> bool {
    let required = std::env::var(anyaccel_hal::REQUIRE_ENV)
        .map(|v| v.split(',').any(|s| s.trim() == "nvrtc"))
        .unwrap_or(false);
    match nvrtc::load() {
        Ok(()) => true,
        Err(why) if required => panic!("NVRTC is required but {why}"),
        Err(why) => {
            eprintln!("skipped: NVRTC is {why}");
            false
        }
    }
}

#[test]
fn compiles_to_ptx_for_each_target() {
    if !nvrtc_or_skip() {
        return;
    }
    let (major, minor) = nvrtc::version().unwrap();
    assert!(major >= 11, "NVRTC {major}.{minor}");
    let archs = nvrtc::supported_archs().unwrap();
    for arch in [Arch::new(7, 0), Arch::new(8, 0), Arch::new(9, 0)] {
        assert!(archs.contains(&arch), "NVRTC lacks {arch}: {archs:?}");
        let out = nvrtc::compile(SAXPY, "saxpy", &[], arch, false).unwrap();
        assert!(out.cubin.is_none());
        assert!(out.ptx.contains(".entry saxpy"), "{}", out.ptx);
        assert!(
            out.ptx.contains(&format!(".target sm_{}", arch.number())),
            "PTX for {arch} targets something else:\n{}",
            out.ptx
        );
    }
}

#[test]
fn compiles_to_a_cubin_for_a_real_architecture() {
    if !nvrtc_or_skip() {
        return;
    }
    let out = nvrtc::compile(SAXPY, "saxpy", &[], Arch::new(8, 0), true).unwrap();
    let cubin = out.cubin.expect("a cubin for sm_80");
    // An ELF image.
    assert_eq!(&cubin[..4], b"\x7fELF");
}

#[test]
fn compile_errors_carry_the_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let e = nvrtc::compile(SYNTAX_ERROR, "broken", &[], Arch::new(8, 0), false).unwrap_err();
    assert_eq!(e.code(), ErrorCode::CompileFailed, "{e}");
    assert!(e.message().contains("broken.cu(3)"), "{e}");
    assert!(e.message().contains("undefined_name"), "{e}");
}

#[test]
fn options_specialise_and_the_architecture_is_refused() {
    if !nvrtc_or_skip() {
        return;
    }
    let e = nvrtc::compile(SCALE, "scale", &[], Arch::new(8, 0), false).unwrap_err();
    assert!(e.message().contains("SCALE"), "{e}");
    let out = nvrtc::compile(
        SCALE,
        "scale",
        &["-DSCALE=3.0f".into()],
        Arch::new(8, 0),
        false,
    )
    .unwrap();
    assert!(out.ptx.contains(".entry scale"));
    let e = nvrtc::compile(
        SCALE,
        "scale",
        &["-arch=sm_90".into()],
        Arch::new(8, 0),
        false,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    let e = nvrtc::compile(
        SCALE,
        "scale",
        &["--no-such-option".into()],
        Arch::new(8, 0),
        false,
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(e.message().contains("--no-such-option"), "{e}");
}

#[test]
fn the_best_architecture_is_the_device_or_the_newest_below() {
    if !nvrtc_or_skip() {
        return;
    }
    assert_eq!(
        nvrtc::best_arch_for(Arch::new(8, 0)).unwrap(),
        Some(Arch::new(8, 0))
    );
    // A device newer than every architecture NVRTC knows gets the newest one, as PTX.
    let newest = *nvrtc::supported_archs().unwrap().last().unwrap();
    assert_eq!(
        nvrtc::best_arch_for(Arch::new(99, 9)).unwrap(),
        Some(newest)
    );
    assert_eq!(nvrtc::best_arch_for(Arch::new(1, 0)).unwrap(), None);
}
