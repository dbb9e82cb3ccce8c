//! The runner: `anyaccel conformance [...]`. Groups of cases run in child processes (the binary
//! re-executes itself with `--worker`), so a crash inside a device or plugin marks that case
//! `crashed` and the run goes on; a group past its time limit is `timed_out`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyaccel_hal::{Device, Runtime};
use serde::{Deserialize, Serialize};

use crate::cases::{all_cases, glob_match, Case, Profile};
use crate::exec::{run_case, Verdict};
use crate::report::{
    CaseResult, DeviceReport, Report, Status, Summary, UnavailableBackend, SCHEMA,
};
use crate::xfail::Xfails;

/// Who a runtime is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The parent of a run: it lists and selects the devices, and starts the workers. A host
    /// should load each plugin in a way that a plugin crashing or hanging while it loads cannot
    /// take the run down (the `anyaccel` binary loads each one in a child process first), and
    /// fail when a plugin given with `--plugin` cannot be used.
    Run,
    /// A worker: it runs cases on one device, with the plugins its parent loaded.
    Worker,
}

/// A runtime, and the plugin libraries in it that the run's workers load.
pub struct Loaded {
    /// The runtime.
    pub runtime: Runtime,
    /// The plugin libraries that loaded (given to each worker with `--plugin`).
    pub plugins: Vec<PathBuf>,
}

/// Builds the runtime for a run or a worker: compiled-in backends plus the given plugins (and,
/// for [`Role::Run`], whatever else the host loads, such as the environment's plugins).
pub type MakeRuntime = dyn Fn(&[PathBuf], Role) -> Result<Loaded, String> + Sync;

/// How the runner starts its children and builds runtimes.
pub struct Host<'a> {
    /// The program to run as a worker (usually the current executable).
    pub exe: PathBuf,
    /// Arguments put before the worker's own (e.g. `conformance`).
    pub worker_prefix: Vec<String>,
    /// Builds a runtime.
    pub make_runtime: &'a MakeRuntime,
    /// The command users type, for replay lines (e.g. `anyaccel conformance`).
    pub replay_command: String,
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Device ids; empty means every selected device (`ANYACCEL_DEVICES`) or all.
    pub devices: Vec<String>,
    /// Plugin libraries to load.
    pub plugins: Vec<PathBuf>,
    /// Profiles to run.
    pub profiles: Vec<Profile>,
    /// Case-id globs; empty means all.
    pub filters: Vec<String>,
    /// The seed.
    pub seed: u64,
    /// Where to write the reports.
    pub report_dir: Option<PathBuf>,
    /// Print report.json to stdout.
    pub json: bool,
    /// Fail on unexpected passes.
    pub strict_xfail: bool,
    /// Concurrent child processes.
    pub jobs: usize,
    /// Time limit per group.
    pub timeout: Duration,
    /// Extra expected-failure manifests.
    pub xfail_files: Vec<PathBuf>,
    /// Skip the large cases (more than 2^24 elements).
    pub no_large: bool,
    /// Run one large case per elementwise family instead of one per op (see
    /// [`Case::repeats_large`]).
    pub large_sample: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            devices: Vec::new(),
            plugins: Vec::new(),
            profiles: Profile::ALL.to_vec(),
            filters: Vec::new(),
            seed: 1,
            report_dir: Some(PathBuf::from("report")),
            json: false,
            strict_xfail: false,
            jobs: 2,
            timeout: Duration::from_secs(900),
            xfail_files: Vec::new(),
            no_large: false,
            large_sample: false,
        }
    }
}

const START: &str = "@@anyaccel-start ";
const RESULT: &str = "@@anyaccel-result ";

/// What a worker reports for one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WorkerResult {
    id: String,
    verdict: String,
    reason: Option<String>,
    max_abs_err: f64,
    max_rel_err: f64,
    needed_atol: Option<f64>,
    needed_rtol: Option<f64>,
    first_bad: Option<(usize, Option<f64>, Option<f64>)>,
    duration_ms: f64,
}

fn finite(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

/// A worker's job: device id, group, and the case after which to start.
type WorkerJob = (String, String, Option<String>);

/// The command's description, shown by `--help`.
pub const ABOUT: &str = "Run the conformance suite (HAL and op suites) and write the reports";

/// The command's long description, shown by `--help`.
pub const LONG_ABOUT: &str = "\
Runs the HAL and op suites on every selected device and writes report.json, report.md,
junit.xml and report.html into DIR (default: report). Exits 0 only when no case failed,
crashed or timed out (or, with --strict-xfail, passed while listed as an expected failure).
ANYACCEL_REQUIRE=opencl,vulkan makes an unavailable backend fail the run.";

/// The command's arguments (`anyaccel conformance ...`), for `clap`: flattened into a host's
/// own command line, or parsed alone by [`main`].
#[derive(Debug, Clone, clap::Args)]
pub struct ConformanceArgs {
    /// A device id or backend name to run on (repeatable); default: every selected device
    #[arg(long = "device", value_name = "ID")]
    pub devices: Vec<String>,
    /// A vendor plugin library to load first (repeatable)
    #[arg(long = "plugin", value_name = "PATH")]
    pub plugins: Vec<PathBuf>,
    /// A profile to run (repeatable); default: all
    #[arg(long = "profile", value_name = "PROFILE", value_parser = check_profile)]
    pub profiles: Vec<String>,
    /// Only the cases whose id matches this glob (repeatable)
    #[arg(long = "filter", value_name = "GLOB")]
    pub filters: Vec<String>,
    /// The seed of the generated inputs
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Where to write the reports
    #[arg(
        long = "report",
        value_name = "DIR",
        default_value = "report",
        overrides_with = "no_report"
    )]
    pub report_dir: PathBuf,
    /// Write no report files (the last of --report and --no-report counts)
    #[arg(long, overrides_with = "report_dir")]
    pub no_report: bool,
    /// Print report.json to standard output
    #[arg(long)]
    pub json: bool,
    /// Fail when a case listed as an expected failure passes
    #[arg(long)]
    pub strict_xfail: bool,
    /// An extra expected-failure manifest (repeatable)
    #[arg(long = "xfail", value_name = "FILE")]
    pub xfail_files: Vec<PathBuf>,
    /// Child processes at once
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: u64,
    /// Time limit per group of cases, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 900.0, value_parser = parse_seconds)]
    pub timeout: f64,
    /// Skip the large cases (more than 2^24 elements)
    #[arg(long)]
    pub no_large: bool,
    /// Of the elementwise ops, which share one kernel template per family, run the large case
    /// of the first op of each family only (every other op keeps its large case)
    #[arg(long)]
    pub large_sample: bool,
    /// List the selected case ids and exit
    #[arg(long)]
    pub list: bool,
    /// Run as a child of a run (internal)
    #[arg(long, hide = true, requires_all = ["worker_device", "group"])]
    pub worker: bool,
    /// The child's device (internal)
    #[arg(long, hide = true)]
    pub worker_device: Option<String>,
    /// The child's group of cases (internal)
    #[arg(long, hide = true)]
    pub group: Option<String>,
    /// The case after which the child starts (internal)
    #[arg(long, hide = true)]
    pub after: Option<String>,
}

/// The profiles a `--profile` value names (`all`: every one).
fn profiles_of(v: &str) -> Option<Vec<Profile>> {
    if v == "all" {
        return Some(Profile::ALL.to_vec());
    }
    Profile::parse(v).map(|p| vec![p])
}

fn check_profile(v: &str) -> Result<String, String> {
    profiles_of(v)
        .map(|_| v.to_string())
        .ok_or_else(|| format!("`{v}`, expected core, fp16, bf16, fp64, train, random or all"))
}

fn parse_seconds(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| format!("`{v}`, expected seconds > 0"))
}

impl ConformanceArgs {
    /// The run's options.
    pub fn options(&self) -> Options {
        let mut profiles: Vec<Profile> = self
            .profiles
            .iter()
            .filter_map(|p| profiles_of(p))
            .flatten()
            .collect();
        profiles.sort();
        profiles.dedup();
        Options {
            devices: self.devices.clone(),
            plugins: self.plugins.clone(),
            profiles: if profiles.is_empty() {
                Profile::ALL.to_vec()
            } else {
                profiles
            },
            filters: self.filters.clone(),
            seed: self.seed,
            report_dir: (!self.no_report).then(|| self.report_dir.clone()),
            json: self.json,
            strict_xfail: self.strict_xfail,
            jobs: usize::try_from(self.jobs).unwrap_or(usize::MAX),
            timeout: Duration::from_secs_f64(self.timeout),
            xfail_files: self.xfail_files.clone(),
            no_large: self.no_large,
            large_sample: self.large_sample,
        }
    }

    fn worker_job(&self) -> Option<WorkerJob> {
        match (self.worker, &self.worker_device, &self.group) {
            (true, Some(d), Some(g)) => Some((d.clone(), g.clone(), self.after.clone())),
            _ => None,
        }
    }
}

/// `anyaccel conformance` alone, for a host without a command line of its own.
#[derive(Debug, clap::Parser)]
#[command(name = "anyaccel conformance", about = ABOUT, long_about = LONG_ABOUT)]
struct Standalone {
    #[command(flatten)]
    args: ConformanceArgs,
}

fn selected_cases(o: &Options) -> Vec<Case> {
    // Filters without wildcards are case ids: looked up, not matched one by one.
    let (globs, ids): (Vec<&String>, Vec<&String>) =
        o.filters.iter().partition(|f| f.contains(['*', '?']));
    let ids: std::collections::HashSet<&str> = ids.into_iter().map(String::as_str).collect();
    all_cases()
        .into_iter()
        .filter(|c| c.profiles.iter().any(|p| o.profiles.contains(p)))
        .filter(|c| {
            o.filters.is_empty()
                || ids.contains(c.id.as_str())
                || globs.iter().any(|f| glob_match(f, &c.id))
        })
        .filter(|c| !(o.no_large && c.large))
        .filter(|c| !(o.large_sample && c.repeats_large))
        .collect()
}

/// Entry point of `anyaccel conformance ARGS` for a host without a command line of its own:
/// parses `args` (without the program name) and runs [`execute`]. Returns the exit code (2 for
/// bad usage).
pub fn main(args: &[String], host: &Host<'_>) -> i32 {
    use clap::Parser;
    let argv = std::iter::once("anyaccel conformance".to_string()).chain(args.iter().cloned());
    match Standalone::try_parse_from(argv) {
        Ok(s) => execute(&s.args, host),
        Err(e) => {
            let _ = e.print();
            e.exit_code()
        }
    }
}

/// Runs `anyaccel conformance` with parsed arguments: the parent run or, with `--worker`, a
/// child. Returns the process exit code.
pub fn execute(args: &ConformanceArgs, host: &Host<'_>) -> i32 {
    let options = args.options();
    if args.list {
        let mut out = std::io::stdout().lock();
        for c in selected_cases(&options) {
            // A reader that went away (`| head`) ends the listing.
            if writeln!(out, "{}", c.id).is_err() {
                return 1;
            }
        }
        return 0;
    }
    if let Some((device, group, after)) = args.worker_job() {
        return worker_main(&options, host, &device, &group, after.as_deref());
    }
    match run(&options, host) {
        Ok(report) => {
            if options.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            }
            if report.ok(options.strict_xfail) {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("anyaccel conformance: {e}");
            1
        }
    }
}

fn worker_main(
    o: &Options,
    host: &Host<'_>,
    device_id: &str,
    group: &str,
    after: Option<&str>,
) -> i32 {
    let rt = match (host.make_runtime)(&o.plugins, Role::Worker) {
        Ok(loaded) => loaded.runtime,
        Err(e) => {
            eprintln!("worker: {e}");
            return 3;
        }
    };
    let device = match rt.device(device_id) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("worker: {e}");
            return 3;
        }
    };
    let mut cases: Vec<Case> = selected_cases(o)
        .into_iter()
        .filter(|c| c.group == group)
        .collect();
    if let Some(after) = after {
        if let Some(pos) = cases.iter().position(|c| c.id == after) {
            cases.drain(..=pos);
        }
    }
    let stdout = std::io::stdout();
    for case in cases {
        {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{START}{}", case.id);
            let _ = out.flush();
        }
        let t0 = Instant::now();
        let outcome = run_case(&device, &case, o.seed);
        let c = &outcome.comparison;
        let r = WorkerResult {
            id: case.id.clone(),
            verdict: match outcome.verdict {
                Verdict::Passed => "passed",
                Verdict::Failed => "failed",
                Verdict::Skipped => "skipped",
            }
            .into(),
            reason: outcome.reason.clone(),
            max_abs_err: c.max_abs_err,
            max_rel_err: c.max_rel_err,
            needed_atol: c.needed_atol,
            needed_rtol: c.needed_rtol,
            first_bad: c.first_bad.map(|(i, g, e)| (i, finite(g), finite(e))),
            duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
        };
        let mut out = stdout.lock();
        let _ = writeln!(
            out,
            "{RESULT}{}",
            serde_json::to_string(&r).unwrap_or_default()
        );
        let _ = out.flush();
    }
    0
}

/// Runs the suites on the selected devices and writes the reports. Errors are setup problems
/// (an unknown device, a required backend missing, an unreadable manifest).
pub fn run(o: &Options, host: &Host<'_>) -> Result<Report, String> {
    let Loaded {
        runtime: rt,
        plugins: worker_plugins,
    } = (host.make_runtime)(&o.plugins, Role::Run)?;
    rt.check_required().map_err(|e| e.to_string())?;
    let unavailable: Vec<UnavailableBackend> = rt
        .backends()
        .into_iter()
        .filter_map(|b| {
            b.devices.err().map(|u| UnavailableBackend {
                backend: b.name,
                reason: u.reason,
            })
        })
        .collect();
    let devices: Vec<Arc<dyn Device>> = if o.devices.is_empty() {
        rt.devices().map_err(|e| e.to_string())?
    } else {
        rt.select(&o.devices.join(",")).map_err(|e| e.to_string())?
    };
    if devices.is_empty() {
        return Err("no device to run on".into());
    }
    let mut extra = Xfails::default();
    for f in &o.xfail_files {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("--xfail {}: {e}", f.display()))?;
        extra.extend(Xfails::parse(&text, &f.display().to_string())?);
    }
    let cases = selected_cases(o);
    if cases.is_empty() {
        return Err("no case matches the filters and profiles".into());
    }
    for u in &unavailable {
        eprintln!("backend {} unavailable: {}", u.backend, u.reason);
    }

    // Work items: (device, group) in a stable order.
    let mut groups: Vec<String> = Vec::new();
    for c in &cases {
        if !groups.contains(&c.group) {
            groups.push(c.group.clone());
        }
    }
    let items: Vec<(usize, String)> = (0..devices.len())
        .flat_map(|d| groups.iter().map(move |g| (d, g.clone())))
        .collect();
    let total_cases = cases.len() * devices.len();
    let progress = Progress::new(total_cases);
    let results: Mutex<BTreeMap<(usize, String), Vec<CaseResult>>> = Mutex::new(BTreeMap::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..o.jobs.min(items.len()).max(1) {
            s.spawn(|| loop {
                let item = {
                    let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                    let i = *n;
                    *n += 1;
                    items.get(i).cloned()
                };
                let Some((d, group)) = item else { break };
                let device = &devices[d];
                let group_cases: Vec<&Case> = cases.iter().filter(|c| c.group == group).collect();
                let r = run_group(
                    o,
                    host,
                    &worker_plugins,
                    device,
                    &group,
                    &group_cases,
                    &progress,
                );
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((d, group), r);
            });
        }
    });
    progress.finish();

    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut device_reports = Vec::new();
    for (d, device) in devices.iter().enumerate() {
        let info = device.info();
        let mut xf = Xfails::builtin(&info.backend);
        xf.extend(extra.clone());
        let mut all = Vec::new();
        for g in &groups {
            all.extend(results.remove(&(d, g.clone())).unwrap_or_default());
        }
        for r in &mut all {
            if let Some(reason) = xf.reason(&r.id) {
                r.status = match r.status {
                    Status::Failed => Status::Xfailed,
                    Status::Passed => Status::Xpassed,
                    s => s,
                };
                if matches!(r.status, Status::Xfailed | Status::Xpassed) {
                    let prior = r
                        .reason
                        .take()
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default();
                    r.reason = Some(format!("expected failure: {reason}{prior}"));
                }
            }
        }
        let mut profiles = BTreeMap::new();
        // A filtered run proves no profile: only a whole profile gets a verdict.
        for p in o.profiles.iter().filter(|_| o.filters.is_empty()) {
            let in_profile: Vec<&CaseResult> = all
                .iter()
                .filter(|c| c.profiles.iter().any(|x| x == p.name()))
                .collect();
            if !in_profile.is_empty() {
                profiles.insert(
                    p.name().to_string(),
                    in_profile.iter().all(|c| c.status == Status::Passed),
                );
            }
        }
        device_reports.push(DeviceReport {
            id: info.id.clone(),
            name: info.name.clone(),
            backend: info.backend.clone(),
            summary: Summary::of(&all),
            profiles,
            cases: all,
        });
    }
    let report = Report {
        schema: SCHEMA.into(),
        seed: o.seed,
        anyaccel_version: env!("CARGO_PKG_VERSION").into(),
        devices: device_reports,
        unavailable,
        filters: o.filters.clone(),
    };
    print_summary(&report, o);
    if let Some(dir) = &o.report_dir {
        report
            .write(dir)
            .map_err(|e| format!("writing the reports into {}: {e}", dir.display()))?;
        eprintln!(
            "reports written to {}/ (report.json, report.md, junit.xml, report.html)",
            dir.display()
        );
    }
    Ok(report)
}

fn replay(o: &Options, host: &Host<'_>, device: &str, case: &str) -> String {
    let plugins: String = o
        .plugins
        .iter()
        .map(|p| format!(" --plugin {}", p.display()))
        .collect();
    format!(
        "{}{plugins} --device {device} --filter '{case}' --seed {}",
        host.replay_command, o.seed
    )
}

fn result_for(
    o: &Options,
    host: &Host<'_>,
    device: &str,
    case: &Case,
    status: Status,
    reason: Option<String>,
) -> CaseResult {
    CaseResult {
        id: case.id.clone(),
        suite: case.suite.into(),
        op: case.op.map(String::from),
        dtype: case.dtype.clone(),
        status,
        reason,
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        needed_atol: None,
        needed_rtol: None,
        first_bad_index: None,
        got: None,
        expected: None,
        seed: o.seed,
        replay: replay(o, host, device, &case.id),
        profiles: case.profiles.iter().map(|p| p.name().to_string()).collect(),
        duration_ms: 0.0,
    }
}

enum ChildEnd {
    Finished,
    Died(String),
    TimedOut,
}

/// Runs one group on one device in child processes; a crash restarts after the crashed case.
fn run_group(
    o: &Options,
    host: &Host<'_>,
    plugins: &[PathBuf],
    device: &Arc<dyn Device>,
    group: &str,
    cases: &[&Case],
    progress: &Progress,
) -> Vec<CaseResult> {
    let id = &device.info().id;
    let deadline = Instant::now() + o.timeout;
    let mut done: BTreeMap<String, CaseResult> = BTreeMap::new();
    let mut after: Option<String> = None;
    let mut restarted_between = false;
    loop {
        let mut cmd = Command::new(&host.exe);
        cmd.args(&host.worker_prefix)
            .args([
                "--worker",
                "--worker-device",
                id,
                "--group",
                group,
                "--seed",
                &o.seed.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The worker loads the plugins its parent loaded, and no others.
        cmd.env_remove("ANYACCEL_PLUGIN_PATH");
        for p in plugins {
            cmd.arg("--plugin").arg(p);
        }
        for p in &o.profiles {
            cmd.args(["--profile", p.name()]);
        }
        for f in &o.filters {
            cmd.args(["--filter", f]);
        }
        if o.no_large {
            cmd.arg("--no-large");
        }
        if o.large_sample {
            cmd.arg("--large-sample");
        }
        if let Some(a) = &after {
            cmd.args(["--after", a]);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                for c in cases
                    .iter()
                    .filter(|c| !done.contains_key(&c.id))
                    .collect::<Vec<_>>()
                {
                    done.insert(
                        c.id.clone(),
                        result_for(
                            o,
                            host,
                            id,
                            c,
                            Status::Crashed,
                            Some(format!("could not start the worker process: {e}")),
                        ),
                    );
                }
                break;
            }
        };
        let (tx, rx) = channel::<String>();
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            if let Some(out) = stdout {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(e) = stderr {
                for line in BufReader::new(e).lines().map_while(Result::ok) {
                    if text.len() < 4000 {
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
            }
            text
        });
        let mut running: Option<String> = None;
        // When to say that the running case is still running (see `slow_notice`).
        let mut next_notice = Instant::now() + slow_notice(o.timeout);
        let mut case_start = Instant::now();
        let end = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(case) = running.as_deref().filter(|_| Instant::now() >= next_notice) {
                progress.note(&format!(
                    "still running after {:.0} s: {case} on {id} (the group's time limit is {:.0} s)",
                    case_start.elapsed().as_secs_f64(),
                    o.timeout.as_secs_f64()
                ));
                next_notice = Instant::now() + slow_notice(o.timeout);
            }
            match rx.recv_timeout(left.min(Duration::from_millis(500))) {
                Ok(line) => {
                    if let Some(cid) = line.strip_prefix(START) {
                        running = Some(cid.to_string());
                        case_start = Instant::now();
                        next_notice = case_start + slow_notice(o.timeout);
                    } else if let Some(json) = line.strip_prefix(RESULT) {
                        if let Ok(w) = serde_json::from_str::<WorkerResult>(json) {
                            if let Some(case) = cases.iter().find(|c| c.id == w.id) {
                                let mut r = result_for(
                                    o,
                                    host,
                                    id,
                                    case,
                                    status_of(&w.verdict),
                                    w.reason.clone(),
                                );
                                r.max_abs_err = w.max_abs_err;
                                r.max_rel_err = w.max_rel_err;
                                r.needed_atol = w.needed_atol;
                                r.needed_rtol = w.needed_rtol;
                                if let Some((i, g, e)) = w.first_bad {
                                    r.first_bad_index = Some(i);
                                    r.got = g;
                                    r.expected = e;
                                }
                                r.duration_ms = w.duration_ms;
                                progress.tick(&r);
                                done.insert(w.id.clone(), r);
                            }
                            running = None;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        break ChildEnd::TimedOut;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    break match status {
                        Ok(s) if s.success() => ChildEnd::Finished,
                        Ok(s) => ChildEnd::Died(describe_exit(s)),
                        Err(e) => ChildEnd::Died(format!("could not wait for the worker: {e}")),
                    };
                }
            }
        };
        let _ = reader.join();
        let stderr_text = err_reader.join().unwrap_or_default();
        match end {
            ChildEnd::Finished => {
                for c in cases
                    .iter()
                    .filter(|c| !done.contains_key(&c.id))
                    .collect::<Vec<_>>()
                {
                    let why = format!(
                        "the worker ended without reporting this case; its stderr: {}",
                        stderr_text.trim()
                    );
                    let r = result_for(o, host, id, c, Status::Crashed, Some(why));
                    progress.tick(&r);
                    done.insert(c.id.clone(), r);
                }
                break;
            }
            ChildEnd::TimedOut => {
                for c in cases
                    .iter()
                    .filter(|c| !done.contains_key(&c.id))
                    .collect::<Vec<_>>()
                {
                    let why = if running.as_deref() == Some(c.id.as_str()) {
                        format!("ran past the group's time limit of {:?}", o.timeout)
                    } else {
                        format!(
                            "not run: the group ran past its time limit of {:?}",
                            o.timeout
                        )
                    };
                    let r = result_for(o, host, id, c, Status::TimedOut, Some(why));
                    progress.tick(&r);
                    done.insert(c.id.clone(), r);
                }
                break;
            }
            ChildEnd::Died(how) => {
                let Some(crashed) = running.clone() else {
                    // Died outside any case (between two, or before the first): no case is to
                    // blame. Start once more after the last reported case; a second such death
                    // marks the rest as crashed.
                    let last = cases.iter().rev().find(|c| done.contains_key(&c.id));
                    if !restarted_between && cases.iter().any(|c| !done.contains_key(&c.id)) {
                        restarted_between = true;
                        eprintln!(
                            "warning: the worker of group {group} on {id} {how} between cases \
                             (after {}); running the rest of the group in a new worker; \
                             stderr: {}",
                            last.map_or("none", |c| c.id.as_str()),
                            stderr_text.trim()
                        );
                        after = last.map(|c| c.id.clone());
                        continue;
                    }
                    for c in cases
                        .iter()
                        .filter(|c| !done.contains_key(&c.id))
                        .collect::<Vec<_>>()
                    {
                        let r = result_for(
                            o,
                            host,
                            id,
                            c,
                            Status::Crashed,
                            Some(format!(
                                "the worker {how} before running this case; stderr: {}",
                                stderr_text.trim()
                            )),
                        );
                        progress.tick(&r);
                        done.insert(c.id.clone(), r);
                    }
                    break;
                };
                if let Some(c) = cases.iter().find(|c| c.id == crashed) {
                    let tail: String = stderr_text
                        .trim()
                        .chars()
                        .rev()
                        .take(600)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    let r = result_for(
                        o,
                        host,
                        id,
                        c,
                        Status::Crashed,
                        Some(format!(
                            "the process {how} while running this case; stderr: {tail}"
                        )),
                    );
                    progress.tick(&r);
                    done.insert(crashed.clone(), r);
                }
                after = Some(crashed);
                if cases.iter().all(|c| done.contains_key(&c.id)) {
                    break;
                }
            }
        }
    }
    cases.iter().filter_map(|c| done.remove(&c.id)).collect()
}

/// How long a case runs before the progress names it (and again after as long): a minute, or
/// half the group's time limit when that is shorter.
fn slow_notice(limit: Duration) -> Duration {
    (limit / 2).min(Duration::from_secs(60))
}

fn status_of(verdict: &str) -> Status {
    match verdict {
        "passed" => Status::Passed,
        "skipped" => Status::Skipped,
        _ => Status::Failed,
    }
}

/// How a child process ended, in words: `was killed by signal 11 (SIGSEGV)`, `exited with ...`.
pub fn describe_exit(s: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            let name = match sig {
                6 => " (SIGABRT)",
                11 => " (SIGSEGV)",
                9 => " (SIGKILL)",
                4 => " (SIGILL)",
                7 => " (SIGBUS)",
                8 => " (SIGFPE)",
                _ => "",
            };
            return format!("was killed by signal {sig}{name}");
        }
    }
    format!("exited with {s}")
}

/// A progress bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    counts: Mutex<(usize, usize)>,
    total: usize,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} cases {msg}")
            {
                b.set_style(style);
            }
            b
        });
        Progress {
            bar,
            counts: Mutex::new((0, 0)),
            total,
        }
    }

    fn tick(&self, r: &CaseResult) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.0 += 1;
        let bad = matches!(
            r.status,
            Status::Failed | Status::Crashed | Status::TimedOut
        );
        if bad {
            c.1 += 1;
        }
        match &self.bar {
            Some(b) => {
                b.inc(1);
                if bad {
                    b.println(format!(
                        "{} {}: {}",
                        r.status.name(),
                        r.id,
                        r.reason.as_deref().unwrap_or("")
                    ));
                }
                b.set_message(format!("{} problems", c.1));
            }
            None => {
                if bad {
                    eprintln!(
                        "{} {}: {}",
                        r.status.name(),
                        r.id,
                        r.reason.as_deref().unwrap_or("")
                    );
                }
                if c.0.is_multiple_of(500) || c.0 == self.total {
                    eprintln!("{}/{} cases, {} problems", c.0, self.total, c.1);
                }
            }
        }
    }

    /// A line above the bar (or on standard error without one).
    fn note(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn print_summary(report: &Report, o: &Options) {
    let out = if o.json {
        &mut std::io::stderr() as &mut dyn Write
    } else {
        &mut std::io::stdout() as &mut dyn Write
    };
    let mut totals = Summary::default();
    for d in &report.devices {
        let s = &d.summary;
        let verdicts: Vec<String> = match report.filtered_note() {
            Some(note) => vec![note],
            None => d
                .profiles
                .iter()
                .map(|(p, ok)| format!("{p} {}", if *ok { "conformant" } else { "NOT conformant" }))
                .collect(),
        };
        let _ = writeln!(
            out,
            "{:<12} {:<40} passed {:>5}  failed {:>4}  skipped {:>4}  xfailed {:>3}  xpassed {:>3}  crashed {:>3}  timed out {:>3}  [{}]",
            d.id,
            d.name.chars().take(40).collect::<String>(),
            s.passed,
            s.failed,
            s.skipped,
            s.xfailed,
            s.xpassed,
            s.crashed,
            s.timed_out,
            verdicts.join(", ")
        );
        totals.passed += s.passed;
        totals.failed += s.failed;
        totals.skipped += s.skipped;
        totals.xfailed += s.xfailed;
        totals.xpassed += s.xpassed;
        totals.crashed += s.crashed;
        totals.timed_out += s.timed_out;
    }
    // The same counts as the device lines, summed; the run fails on any failed, crashed or
    // timed-out case (and on an unexpected pass under --strict-xfail).
    let _ = writeln!(
        out,
        "{} passed, {} failed, {} skipped, {} xfailed, {} xpassed{}, {} crashed, {} timed out",
        totals.passed,
        totals.failed,
        totals.skipped,
        totals.xfailed,
        totals.xpassed,
        if o.strict_xfail {
            " (failing: --strict-xfail)"
        } else {
            ""
        },
        totals.crashed,
        totals.timed_out
    );
}
