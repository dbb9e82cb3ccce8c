//! `anyaccel tune [--device SEL]... [--size N] [--reps R] [--rounds K] [--dry-run]`: times every
//! candidate tile shape of each device's matmul kernel, writes the fastest to the tuning cache,
//! and compares it with the default in alternating rounds.

use std::process::ExitCode;

use anyaccel::ops::tune;

use super::args::{print, CliError};
use super::table::Table;

/// The command's long description, shown by `anyaccel tune --help`.
pub const LONG_ABOUT: &str = "\
Times every candidate tile shape of the matmul kernel that each chosen device runs (OpenCL C on
OpenCL and plugin devices, WGSL on Vulkan) on an f32 product of --size x --size x --size, best of
--reps runs after one untimed run that compiles it, and prints the table. The fastest is written
to the tuning cache (tune.json in $ANYACCEL_CACHE_DIR, else $XDG_CACHE_HOME/anyaccel, else
$HOME/.cache/anyaccel), keyed by backend, device, driver version and kernel version, where every
later process reads it (unless --dry-run). Then the chosen tiles and the default run in --rounds
alternating rounds on the same product, and the ratio of their medians is printed.

Without this command, the first product of at least 256^3 multiply-adds on a device with no
cache entry runs the same search on a 512^3 product (ANYACCEL_TUNE_SIZE) and writes the cache.
ANYACCEL_TUNE=cache uses the cache but never measures; ANYACCEL_TUNE=off uses the built-in
defaults. Devices whose matmul runs on host kernels (cpu) or a native library (cuBLAS) have
nothing to tune and are skipped with a note.";

/// The command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TuneArgs {
    /// Devices to tune: ids or backend names (repeatable, or comma-separated); every available
    /// device when absent
    #[arg(long = "device", value_name = "SEL", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Edge of the square f32 product timed
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=16384))]
    pub size: u32,
    /// Timed runs of each candidate (the best counts)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub reps: u32,
    /// Alternating rounds of the default and the chosen tiles after the search (0: none)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub rounds: u32,
    /// Print the table without writing the cache
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: &TuneArgs) -> Result<ExitCode, CliError> {
    let rt = anyaccel::Runtime::new();
    let fail = |e: anyaccel::Error| CliError::Failed(format!("tune: {e}"));
    let devices = super::args::chosen_devices(&rt, &args.devices, "tune")?;
    let size = args.size as usize;
    let mut tuned = 0;
    for d in devices {
        let info = d.info().clone();
        let search = match tune::search_matmul(&*d, size, args.reps as usize) {
            Ok(s) => s,
            Err(e) if e.code() == anyaccel::hal::ErrorCode::Unsupported => {
                print(&format!("{}: skipped: {}\n\n", info.id, e.message()))?;
                continue;
            }
            Err(e) => return Err(CliError::Failed(format!("tune: {}: {e}", info.id))),
        };
        tuned += 1;
        let mut text = format!(
            "{} ({}, driver {}): {} ({}), f32 {size}x{size}x{size}, best of {}\n",
            info.id,
            info.name,
            info.driver_version,
            search.kernel.name,
            search.kernel.params,
            args.reps
        );
        let default = search.default_time();
        let mut table = Table::new(&["params", "time", "GFLOP/s", "vs default", ""]);
        for (i, t) in search.trials.iter().enumerate() {
            let mark = match (i == search.best, t.params == search.default) {
                (true, true) => "default, chosen",
                (true, false) => "chosen",
                (false, true) => "default",
                (false, false) => "",
            };
            let params = format!("{:?}", t.params);
            match &t.time {
                Ok(d) => table.row(vec![
                    params,
                    format!("{d:.2?}"),
                    format!("{:.2}", search.gflops(*d)),
                    default.map_or("-".into(), |dt| {
                        format!("{:.2}x", dt.as_secs_f64() / d.as_secs_f64())
                    }),
                    mark.to_string(),
                ]),
                Err(e) => table.row(vec![
                    params,
                    "failed".into(),
                    "-".into(),
                    "-".into(),
                    e.lines().next().unwrap_or("").to_string(),
                ]),
            }
        }
        text.push_str(&table.render());
        if !args.dry_run {
            let path = tune::store(&search.entry(&*d)).map_err(fail)?;
            text.push_str(&format!("written to {}\n", path.display()));
        }
        print(&text)?;
        let best = &search.trials[search.best];
        if args.rounds > 0 && best.params != search.default {
            let (dm, bm) = search.compare(&*d, args.rounds as usize).map_err(fail)?;
            print(&format!(
                "alternating, {} rounds: default {:.2?} ({:.2} GFLOP/s), chosen {:.2?} ({:.2} \
                 GFLOP/s): chosen {:.2}x the default's speed\n",
                args.rounds,
                dm,
                search.gflops(dm),
                bm,
                search.gflops(bm),
                dm.as_secs_f64() / bm.as_secs_f64()
            ))?;
        }
        print("\n")?;
    }
    if tuned == 0 {
        return Err(CliError::Failed(
            "tune: no chosen device runs a tunable matmul kernel".to_string(),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
