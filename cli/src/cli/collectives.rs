//! `anyaccel collectives`: the collectives of [`anyaccel::mpi::MpiGroup`] under `mpirun`, one
//! rank per process, each rank on its own device, every result checked against a host reference
//! on every rank; with `--bench BYTES`, `all_reduce` timed against `MPI_Allreduce` (like
//! nccl-tests' `all_reduce_perf`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyaccel::hal::group::check_reducible;
use anyaccel::hal::testing::collective::{encode, pattern, reference, tensor};
use anyaccel::hal::transfer::CHUNK_BYTES;
use anyaccel::hal::{DType, ErrorCode, ReduceOp, Tensor};
use anyaccel::mpi::{Mpi, MpiGroup};

use super::args::CliError;

/// Every collective, every dtype; the number of checks that passed.
fn check(g: &MpiGroup) -> Result<usize, String> {
    let q = &**g.queue();
    let (n, me) = (g.size(), g.rank());
    let e = |e: anyaccel::Error| e.to_string();
    let checks = std::cell::Cell::new(0);
    let expect = |what: &str, t: &Tensor, want: Vec<u8>| -> Result<(), String> {
        if t.to_bytes(q).map_err(e)? != want {
            return Err(format!("{what}: wrong result on rank {me}"));
        }
        checks.set(checks.get() + 1);
        Ok(())
    };
    for dtype in DType::ALL {
        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean] {
            // Every dtype and op that reduces (the others are refused alike on every rank).
            if check_reducible("collectives", dtype, op).is_err() {
                continue;
            }
            let inputs: Vec<Vec<f64>> = (0..n).map(|r| pattern(1000, r)).collect();
            let t = tensor(q, dtype, &[10, 100], &inputs[me]).map_err(e)?;
            g.all_reduce(&t, op).map_err(e)?;
            let want = encode(dtype, &reference(op, &inputs));
            expect(&format!("all_reduce {} {dtype}", op.name()), &t, want)?;
        }
    }
    // Over several rounds of staging chunks, with a padded last round.
    let len = CHUNK_BYTES / 4 * n + 5;
    let inputs: Vec<Vec<f64>> = (0..n).map(|r| pattern(len, r)).collect();
    let t = tensor(q, DType::F32, &[len], &inputs[me]).map_err(e)?;
    g.all_reduce(&t, ReduceOp::Sum).map_err(e)?;
    expect(
        "all_reduce over chunks",
        &t,
        encode(DType::F32, &reference(ReduceOp::Sum, &inputs)),
    )?;

    let input = tensor(q, DType::I64, &[2, 3], &pattern(6, me)).map_err(e)?;
    let output = Tensor::empty(&*q.device(), DType::I64, &[n, 6]).map_err(e)?;
    g.all_gather(&input, &output).map_err(e)?;
    let all: Vec<f64> = (0..n).flat_map(|r| pattern(6, r)).collect();
    expect("all_gather", &output, encode(DType::I64, &all))?;

    let part = 7;
    let inputs: Vec<Vec<f64>> = (0..n).map(|r| pattern(n * part, r + 3)).collect();
    let input = tensor(q, DType::BF16, &[n * part], &inputs[me]).map_err(e)?;
    let output = Tensor::empty(&*q.device(), DType::BF16, &[part]).map_err(e)?;
    g.reduce_scatter(&input, &output, ReduceOp::Max)
        .map_err(e)?;
    let max = reference(ReduceOp::Max, &inputs);
    expect(
        "reduce_scatter",
        &output,
        encode(DType::BF16, &max[me * part..(me + 1) * part]),
    )?;

    let values: Vec<f64> = pattern(5, me).iter().map(|v| v + 8.0).collect();
    let t = tensor(q, DType::U8, &[5], &values).map_err(e)?;
    g.broadcast(&t, n - 1).map_err(e)?;
    let root: Vec<f64> = pattern(5, n - 1).iter().map(|v| v + 8.0).collect();
    expect("broadcast", &t, encode(DType::U8, &root))?;
    g.barrier().map_err(e)?;

    // Ranks that disagree, or one rank's bad arguments: every rank gets an error, none hangs.
    let shape = if me == 0 { 5 } else { 4 };
    let t = tensor(q, DType::F32, &[shape], &pattern(shape, me)).map_err(e)?;
    match g.all_reduce(&t, ReduceOp::Sum) {
        Err(err) if n > 1 && err.code() == ErrorCode::InvalidArgument => {
            checks.set(checks.get() + 1)
        }
        Ok(()) if n == 1 => checks.set(checks.get() + 1),
        other => return Err(format!("mismatched shapes across ranks: {other:?}")),
    }
    let t = tensor(q, DType::I32, &[4], &pattern(4, me)).map_err(e)?;
    let op = if me == n - 1 {
        ReduceOp::Mean
    } else {
        ReduceOp::Sum
    };
    match g.all_reduce(&t, op) {
        Err(err) if me == n - 1 && err.code() == ErrorCode::Unsupported => {
            checks.set(checks.get() + 1)
        }
        Err(err) if me != n - 1 && err.message().contains("refused there") => {
            checks.set(checks.get() + 1)
        }
        other => return Err(format!("one rank's bad arguments: {other:?}")),
    }
    // And the group still works afterwards.
    let t = tensor(q, DType::I32, &[4], &pattern(4, me)).map_err(e)?;
    g.all_reduce(&t, ReduceOp::Min).map_err(e)?;
    let inputs: Vec<Vec<f64>> = (0..n).map(|r| pattern(4, r)).collect();
    expect(
        "all_reduce after errors",
        &t,
        encode(DType::I32, &reference(ReduceOp::Min, &inputs)),
    )?;
    Ok(checks.get())
}

/// Times all_reduce against MPI_Allreduce on host buffers; rank 0 prints the figures.
fn bench(g: &MpiGroup, mpi: &Mpi, bytes: usize) -> Result<(), String> {
    let e = |e: anyaccel::Error| e.to_string();
    let q = &**g.queue();
    let n = g.size();
    let len = (bytes / 4).max(1);
    let values: Vec<f32> = (0..len).map(|i| (i % 17) as f32).collect();
    let t = Tensor::from_slice(q, &values, &[len]).map_err(e)?;
    let mut recv = vec![0f32; len];
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for round in 0..6 {
        g.barrier().map_err(e)?;
        let s = Instant::now();
        g.all_reduce(&t, ReduceOp::Sum).map_err(e)?;
        q.finish().map_err(e)?;
        let a = s.elapsed().as_secs_f64();
        mpi.barrier().map_err(e)?;
        let s = Instant::now();
        mpi.allreduce_f32_sum_host(&values, &mut recv).map_err(e)?;
        let b = s.elapsed().as_secs_f64();
        if round > 0 {
            // The first round warms both.
            ours.push(a);
            peer.push(b);
        }
    }
    ours.sort_by(f64::total_cmp);
    peer.sort_by(f64::total_cmp);
    let busbw = |t: f64| (len * 4) as f64 * 2.0 * (n - 1) as f64 / n as f64 / t / 1e9;
    let (a, b) = (ours[ours.len() / 2], peer[peer.len() / 2]);
    if g.rank() == 0 {
        println!(
            "all_reduce f32 sum of {} bytes over {n} ranks on {}: anyaccel {:.3} ms ({:.2} GB/s \
             busbw), MPI_Allreduce on host buffers {:.3} ms ({:.2} GB/s busbw): {:.2}x",
            len * 4,
            q.device_id(),
            a * 1e3,
            busbw(a),
            b * 1e3,
            busbw(b),
            busbw(a) / busbw(b)
        );
    }
    Ok(())
}

/// The command's long description, shown by `anyaccel collectives --help`.
pub const LONG_ABOUT: &str = "\
Runs the collectives (all_reduce with sum, max, min and mean over f32, f16, bf16, f64, i32 and
i64; all_gather; reduce_scatter; broadcast; barrier; ranks that disagree) across the ranks of
MPI_COMM_WORLD, one rank per process, rank r on the (r mod n)-th device of --devices, and checks
every result on every rank against a host reference. Run it under mpirun, e.g.

  mpirun -n 4 anyaccel collectives --devices cpu:0,opencl:0,vulkan:0,plugin:ref:0

With --bench BYTES, times all_reduce (f32 sum) of BYTES against MPI_Allreduce called directly on
host buffers of the same size, in alternation, and rank 0 prints both bus bandwidths (busbw, as
nccl-tests defines it: bytes x 2 (n - 1) / n / time). MPI is Open MPI's libmpi.so.40, loaded at
run time (ANYACCEL_MPI_LIB names another).";

/// The command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CollectivesArgs {
    /// Devices by id, comma-separated: rank r runs on the (r mod n)-th
    #[arg(long, default_value = "cpu:0", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Time all_reduce of this many bytes against MPI_Allreduce instead of checking
    #[arg(long, value_name = "BYTES")]
    pub bench: Option<usize>,
    /// Stage every tensor through host memory, even where the host can address the device's
    /// memory (the path of devices it cannot)
    #[arg(long)]
    pub staged: bool,
}

/// Runs `anyaccel collectives`.
pub fn run(args: &CollectivesArgs) -> Result<ExitCode, CliError> {
    let mpi = Mpi::init().map_err(|e| CliError::Failed(format!("collectives: {e}")))?;
    let id = &args.devices[mpi.rank() % args.devices.len().max(1)];
    let (rt, _) = super::plugins::runtime(&[], true).map_err(CliError::Failed)?;
    let result = rt
        .device(id)
        .and_then(|d| d.create_queue())
        .map_err(|err| err.to_string())
        .and_then(|q| {
            let g = MpiGroup::new(mpi.clone(), Arc::clone(&q));
            let g = if args.staged { g.staged() } else { g };
            match args.bench {
                Some(bytes) => bench(&g, &mpi, bytes).map(|()| None),
                None => check(&g).map(Some),
            }
        });
    let (rank, size) = (mpi.rank(), mpi.size());
    match result {
        Ok(checks) => {
            if let Some(checks) = checks {
                println!("rank {rank} of {size} on {id}: {checks} checks passed");
            }
            mpi.finalize()
                .map_err(|e| CliError::Failed(format!("rank {rank}: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
        // No MPI_Finalize: the other ranks may be inside a collective; exiting with a failure
        // makes mpirun end the job.
        Err(err) => Err(CliError::Failed(format!(
            "rank {rank} of {size} on {id}: {err}"
        ))),
    }
}
