//! `anyaccel conformance [--device ID]...`: the shared HAL test suite on every selected device.
//!
//! This runs what exists today, the HAL suite of `anyaccel_hal::testing`, in this process. The
//! full conformance runner (op suites, tolerances, child-process isolation, reports) replaces
//! this module when it lands.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyaccel::hal::testing::HAL_TESTS;
use anyaccel::hal::{Device, DEVICES_ENV, REQUIRE_ENV};

use super::args::{print, Arg, Args, CliError};

/// The command's help.
pub fn help() -> String {
    // The test names, wrapped and indented.
    let mut tests = String::new();
    let mut line = String::from(" ");
    for (i, (name, _)) in HAL_TESTS.iter().enumerate() {
        let item = if i + 1 < HAL_TESTS.len() {
            format!(" {name},")
        } else {
            format!(" {name}")
        };
        if line.len() + item.len() > 90 {
            tests.push_str(&line);
            tests.push('\n');
            line = String::from(" ");
        }
        line.push_str(&item);
    }
    tests.push_str(&line);
    format!(
        "\
Usage: anyaccel conformance [--device ID]...

Runs the shared HAL test suite on every selected device and prints one line per test,
`passed` or `failed: <reason>`, then `N passed, N failed`.

Today this is the HAL suite alone:
{tests}.
The op suites (every op x dtype x shape class against an f64 reference), fixed tolerances,
crash isolation, seeds and the reports (report.json, report.md, junit.xml, report.html)
come with the conformance suite.

Options:
  --device ID  Test this device: an id such as cpu:0, a backend name such as cpu, or a comma
               list of them; may be repeated. Without it: the devices {DEVICES_ENV} selects,
               or every available device
  -h, --help   Show this help

Exit status: 0 when every test passed and every backend named in {REQUIRE_ENV} is available;
1 when a test failed, a device was not found or a required backend is unavailable; 2 for bad
usage.
"
    )
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `anyaccel conformance`.
pub fn run(mut args: Args) -> Result<ExitCode, CliError> {
    let mut selectors: Vec<String> = Vec::new();
    while let Some(arg) = args.next() {
        match arg {
            Arg::Flag(f, v) if f == "--device" => {
                selectors.push(args.value(&f, v, "a device id such as cpu:0 or a backend name")?)
            }
            Arg::Flag(f, _) if f == "-h" || f == "--help" => {
                print(args.help())?;
                return Ok(ExitCode::SUCCESS);
            }
            other => return Err(args.unexpected(other)),
        }
    }

    let rt = anyaccel::Runtime::new();
    let mut devices: Vec<Arc<dyn Device>> = Vec::new();
    if selectors.is_empty() {
        devices = rt
            .devices()
            .map_err(|e| CliError::Failed(format!("conformance: {DEVICES_ENV}: {e}")))?;
    } else {
        for selector in &selectors {
            let found = rt
                .select(selector)
                .map_err(|e| CliError::Failed(format!("conformance: --device {selector}: {e}")))?;
            for d in found {
                if !devices.iter().any(|o| o.info().id == d.info().id) {
                    devices.push(d);
                }
            }
        }
    }
    if devices.is_empty() {
        return Err(CliError::Failed(
            "conformance: no device selected, so nothing would be tested; \
             run `anyaccel devices` to see what exists"
                .to_string(),
        ));
    }

    // Say up front what will not be tested, and whether the environment's demands are met.
    for b in rt.backends() {
        if let Err(u) = &b.devices {
            print(&format!("backend {}: unavailable: {}\n", b.name, u.reason))?;
        }
    }
    let required = rt.check_required();
    if let Err(e) = &required {
        print(&format!("{REQUIRE_ENV}: failed: {e}\n"))?;
    }

    let (mut passed, mut failed) = (0usize, 0usize);
    for device in &devices {
        let info = device.info();
        print(&format!(
            "device {} ({}, {}): HAL suite, {} tests\n",
            info.id,
            info.name,
            info.vendor,
            HAL_TESTS.len()
        ))?;
        for (name, test) in HAL_TESTS {
            let start = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| test(device)))
                .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&*p))));
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let line = match outcome {
                Ok(()) => {
                    passed += 1;
                    "passed".to_string()
                }
                Err(reason) => {
                    failed += 1;
                    format!("failed: {reason}")
                }
            };
            print(&format!("{} hal/{name} ({ms:.1} ms): {line}\n", info.id))?;
        }
    }
    print(&format!("{passed} passed, {failed} failed\n"))?;
    Ok(if failed == 0 && required.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
