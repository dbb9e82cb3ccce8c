//! Heterogeneous data parallelism: an MLP classifier trained across every device at once, each
//! device taking a share of each batch sized by its measured speed, gradients all-reduced, the
//! replicas bit-identical; the loss curve checked against training on one device.
//!
//! ```text
//! cargo run --release --example data_parallel                          # every device here
//! cargo run --release --example data_parallel -- --devices cpu:0,vulkan:0 --steps 60
//! mpirun -n 4 target/release/examples/data_parallel --mpi \
//!     --devices cpu:0,opencl:0,vulkan:0,plugin:ref:0                   # a rank a device
//! ANYACCEL_REF_DEVICES=20,5 ANYACCEL_PLUGIN_PATH=examples/plugin-c/build/libanyaccel_ref.so \
//!     cargo run --release --example data_parallel -- \
//!     --devices plugin:ref:0,plugin:ref:1 --balance-report             # a fast and a slow chip
//! ```
//!
//! Options: `--devices ID,...` (default: every available device; under `--mpi`, `cpu:0`),
//! `--steps N` (40), `--batch N` (1024), `--rebalance-every N` (4; 0 keeps the even split),
//! `--lr X` (0.5), `--seed N` (7), `--reference ID` (the device of the one-device run the loss
//! curve is checked against; the first device by default), `--no-reference`, `--mpi` (one rank
//! a process, rank r on the (r mod n)-th device), `--balance-report` (step times of each device
//! alone, an even split and the balanced split).
//!
//! It exits with a failure when the replicas' parameters differ or a step's loss differs from
//! the one-device run's beyond the conformance suite's f32 tolerance.

mod mlp;

use std::process::ExitCode;
use std::sync::Arc;

#[cfg(not(feature = "mpi"))]
use anyaccel::Error;
use anyaccel::{Queue, Result};
use mlp::{compare_losses, train, Config, Trainer, ATOL, RTOL};

struct Args {
    config: Config,
    devices: Option<Vec<String>>,
    steps: usize,
    reference: Option<String>,
    no_reference: bool,
    mpi: bool,
    balance_report: bool,
}

fn parse() -> std::result::Result<Args, String> {
    let mut a = Args {
        config: Config::default(),
        devices: None,
        steps: 40,
        reference: None,
        no_reference: false,
        mpi: false,
        balance_report: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag}: expected a value"));
        fn number<T: std::str::FromStr>(flag: &str, v: String) -> std::result::Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag} {v}: expected a number"))
        }
        match flag.as_str() {
            "--devices" => a.devices = Some(value()?.split(',').map(str::to_string).collect()),
            "--steps" => a.steps = number(&flag, value()?)?,
            "--batch" => a.config.batch = number(&flag, value()?)?,
            "--rebalance-every" => a.config.rebalance_every = number(&flag, value()?)?,
            "--lr" => a.config.learning_rate = number(&flag, value()?)?,
            "--seed" => a.config.seed = number(&flag, value()?)?,
            "--reference" => a.reference = Some(value()?),
            "--no-reference" => a.no_reference = true,
            "--mpi" => a.mpi = true,
            "--balance-report" => a.balance_report = true,
            "--help" | "-h" => {
                return Err(
                    "usage: data_parallel [--devices ID,...] [--steps N] [--batch N] \
                     [--rebalance-every N] [--lr X] [--seed N] [--reference ID | --no-reference] \
                     [--mpi] [--balance-report]"
                        .into(),
                )
            }
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    Ok(a)
}

fn queues(rt: &anyaccel::hal::Runtime, ids: &[String]) -> Result<Vec<Arc<dyn Queue>>> {
    ids.iter()
        .map(|id| rt.device(id).and_then(|d| d.create_queue()))
        .collect()
}

/// Trains with `trainer`, printing some steps; the losses.
fn run(trainer: &mut Trainer, steps: usize, who: &str) -> Result<Vec<f64>> {
    trainer.warm_up()?;
    let reports = train(trainer, steps)?;
    for (i, r) in reports.iter().enumerate() {
        if i % 5 == 0 || i + 1 == steps {
            let ms: Vec<String> = r
                .device_seconds
                .iter()
                .map(|s| format!("{:.1}", s * 1e3))
                .collect();
            println!(
                "{who}step {i:3}  loss {:.6}  split {:?}  device ms [{}]  step {:.1} ms",
                r.loss,
                r.split,
                ms.join(", "),
                r.step_seconds * 1e3
            );
        }
    }
    Ok(reports.iter().map(|r| r.loss).collect())
}

/// Trains on `reference` alone with the whole batch and checks `losses` against it.
fn check_reference(
    rt: &anyaccel::hal::Runtime,
    args: &Args,
    reference: &str,
    losses: &[f64],
) -> Result<bool> {
    let single = Config {
        rebalance_every: 0,
        ..args.config.clone()
    };
    let mut t = Trainer::local(&single, queues(rt, &[reference.to_string()])?)?;
    let want = run(&mut t, args.steps, "one device: ")?;
    let (first, worst) = compare_losses(losses, &want);
    match first {
        None => {
            println!(
                "loss curve matches training on {reference} alone: {} steps, largest difference \
                 {worst:.3e} (tolerance {ATOL:e} + {RTOL:e} * |loss|)",
                want.len()
            );
            Ok(true)
        }
        Some((step, got, want)) => {
            println!(
                "FAILED: step {step}: loss {got} data-parallel, {want} on {reference} alone \
                 (tolerance {ATOL:e} + {RTOL:e} * |loss|)"
            );
            Ok(false)
        }
    }
}

fn local(rt: &anyaccel::hal::Runtime, args: &Args) -> Result<bool> {
    let ids: Vec<String> = match &args.devices {
        Some(ids) => ids.clone(),
        None => rt.devices()?.iter().map(|d| d.info().id.clone()).collect(),
    };
    let qs = queues(rt, &ids)?;
    if args.balance_report {
        let r = mlp::balance_report(&args.config, &qs, 5, 3 * args.config.rebalance_every.max(1))?;
        for (id, rate) in ids.iter().zip(&r.standalone) {
            println!("{id}: {rate:.0} items/s alone");
        }
        println!(
            "step compute time: ideal {:.1} ms, balanced {:.1} ms ({:.3}x ideal, split {:?}), \
             even split {:.1} ms ({:.2}x the balanced time)",
            r.ideal_seconds * 1e3,
            r.balanced_seconds * 1e3,
            r.balanced_seconds / r.ideal_seconds,
            r.balanced_split,
            r.even_seconds * 1e3,
            r.even_seconds / r.balanced_seconds
        );
        return Ok(true);
    }
    println!("training on {} device(s): {}", ids.len(), ids.join(", "));
    let mut t = Trainer::local(&args.config, qs)?;
    let losses = run(&mut t, args.steps, "")?;
    let identical = t.replicas_identical()?;
    println!(
        "replicas bit-identical: {}",
        if identical { "yes" } else { "NO" }
    );
    let mut ok = identical;
    if !args.no_reference {
        let reference = args.reference.clone().unwrap_or_else(|| ids[0].clone());
        ok &= check_reference(rt, args, &reference, &losses)?;
    }
    Ok(ok)
}

#[cfg(feature = "mpi")]
fn mpi(rt: &anyaccel::hal::Runtime, args: &Args) -> Result<bool> {
    use anyaccel::mpi::{Mpi, MpiGroup};
    let mpi = Mpi::init()?;
    let ids = args.devices.clone().unwrap_or_else(|| vec!["cpu:0".into()]);
    let (rank, size) = (mpi.rank(), mpi.size());
    let id = ids[rank % ids.len()].clone();
    let q = rt.device(&id)?.create_queue()?;
    let mut t = Trainer::mpi(&args.config, MpiGroup::new(Arc::clone(&mpi), q))?;
    let who = format!("rank {rank} of {size} on {id}: ");
    let losses =
        run(&mut t, args.steps, if rank == 0 { &who } else { "" }).map_err(|e| e.context(&who))?;
    let identical = t.replicas_identical()?;
    let mut ok = identical;
    if rank == 0 {
        println!(
            "replicas bit-identical over {size} ranks: {}",
            if identical { "yes" } else { "NO" }
        );
        if !args.no_reference {
            let reference = args.reference.clone().unwrap_or_else(|| ids[0].clone());
            ok &= check_reference(rt, args, &reference, &losses)?;
        }
    }
    mpi.finalize()?;
    Ok(ok)
}

#[cfg(not(feature = "mpi"))]
fn mpi(_: &anyaccel::hal::Runtime, _: &Args) -> Result<bool> {
    Err(Error::unsupported(
        "--mpi: this build has no MPI support (build with the `mpi` feature)",
    ))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("data_parallel: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = anyaccel::Runtime::new();
    let result = if args.mpi {
        mpi(&rt, &args)
    } else {
        local(&rt, &args)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("data_parallel: {e}");
            ExitCode::FAILURE
        }
    }
}
