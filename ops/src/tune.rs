//! Kernel parameters chosen by measurement, kept in a cache on disk.
//!
//! The generated matmul kernels of the OpenCL C (and CUDA C) and WGSL paths take their tile
//! shapes as parameters. Which shape runs fastest depends on the device and its driver (PoCL
//! runs a work-group's items as a loop over vector lanes; lavapipe runs invocations as SIMD
//! lanes of an LLVM-compiled shader; a GPU runs them on its own lanes), so the parameters are
//! picked by timing every candidate on the device:
//!
//! - **on first use**: the first matmul of at least [`FIRST_USE_WORK`] multiply-adds on a device
//!   with no entry in the cache times the candidates on a product of [`FIRST_USE_SIZE`]
//!   (`ANYACCEL_TUNE_SIZE` overrides it) on a queue of its own, then goes on with the best;
//! - **ahead of time**: `anyaccel tune --device ID --size N` ([`search_matmul`]) times them on a
//!   product of the size given and prints the table.
//!
//! Either way the result is written to `tune.json` in the cache directory
//! (`$ANYACCEL_CACHE_DIR`, else `$XDG_CACHE_HOME/anyaccel`, else `$HOME/.cache/anyaccel`),
//! keyed by backend, device name, driver version and the kernel's version (a hash of its source
//! and generator), and read back by later processes. The file is never trusted: an entry that
//! does not parse, names another kernel version, or holds parameters that are not one of the
//! kernel's candidates for the device is ignored with a warning on standard error, and a file
//! that does not parse at all is set aside (renamed `tune.json.corrupt`) when the next result is
//! written. Writes go to a temporary file renamed over the old one, so that processes tuning at
//! the same time never leave half a file.
//!
//! `ANYACCEL_TUNE` sets the policy: `auto` (the default: cache, else measure on first use),
//! `cache` (use the cache, never measure; the built-in defaults where it has nothing) or `off`
//! (the built-in defaults; launches neither read nor write the cache, which only `anyaccel tune`
//! writes then).
//!
//! Every candidate computes the same result: tiles change which items compute an output, not
//! the order of its sum (the test `tests/tune.rs` runs every candidate against an f64 reference).

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyaccel_hal::{DType, Device, Error, ErrorCode, Queue, Result, Tensor};
use serde::{Deserialize, Serialize};

/// A product needs at least this many multiply-adds (256^3) to start a search on first use:
/// smaller ones run with what is known (the cache or the defaults).
pub const FIRST_USE_WORK: u64 = 1 << 24;
/// The edge of the square product timed by a search on first use.
pub const FIRST_USE_SIZE: usize = 512;
/// The cache file's format.
const FORMAT: u32 = 1;
/// The cache file's name in the cache directory.
const FILE: &str = "tune.json";

/// A kernel whose parameters are tuned.
#[derive(Debug)]
pub struct Tunable {
    /// Its name in the cache and in reports, e.g. `matmul.c`.
    pub name: &'static str,
    /// What its parameters are, in order, e.g. `bm,bn,bk,tm,tn`.
    pub params: &'static str,
    /// The kernel source and the generator version its version hash is taken over.
    pub source: &'static str,
    /// The generator's version (raised when the code that writes the kernel changes).
    pub generator: u32,
    /// The parameters used when nothing is known.
    pub default: fn(&dyn Device) -> Vec<u32>,
    /// The parameters worth timing on a device (each valid there); the default among them.
    pub candidates: fn(&dyn Device) -> Vec<Vec<u32>>,
}

impl Tunable {
    /// The kernel's version: a hash of its source and generator version, so that a cache entry
    /// measured with another kernel is not used.
    pub fn version(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.source.bytes().chain(self.generator.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// How parameters are chosen (`ANYACCEL_TUNE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The cache, else a search on first use (the default).
    Auto,
    /// The cache, else the defaults; never measures.
    Cache,
    /// The defaults; launches neither read nor write the cache (`anyaccel tune` still writes it).
    Off,
}

/// The policy from `ANYACCEL_TUNE` (`auto`, `cache` or `off`; unset is `auto`; anything else is
/// `auto` with a warning), read once a process.
pub fn policy() -> Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    *POLICY.get_or_init(read_policy)
}

fn read_policy() -> Policy {
    match std::env::var("ANYACCEL_TUNE").as_deref() {
        Err(_) | Ok("") | Ok("auto") => Policy::Auto,
        Ok("cache") => Policy::Cache,
        Ok("off") => Policy::Off,
        Ok(other) => {
            warn_once(&format!(
                "ANYACCEL_TUNE={other:?} is not one of auto, cache, off: using auto"
            ));
            Policy::Auto
        }
    }
}

/// The cache file: `tune.json` in `$ANYACCEL_CACHE_DIR`, else `$XDG_CACHE_HOME/anyaccel`, else
/// `$HOME/.cache/anyaccel`; `None` when none of them is set.
pub fn cache_file() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let dir = var("ANYACCEL_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("anyaccel")))
        .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".cache").join("anyaccel")))?;
    Some(dir.join(FILE))
}

/// One measured choice in the cache file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The backend, e.g. `opencl`.
    pub backend: String,
    /// The device's name.
    pub device: String,
    /// The driver's version.
    pub driver: String,
    /// The kernel, e.g. `matmul.c`.
    pub kernel: String,
    /// The kernel's version ([`Tunable::version`]).
    pub version: String,
    /// The chosen parameters.
    pub params: Vec<u32>,
    /// The edge of the product they were timed on.
    pub size: usize,
    /// Their speed there, in GFLOP/s.
    pub gflops: f64,
}

impl Entry {
    fn key(&self) -> Key {
        Key {
            backend: self.backend.clone(),
            device: self.device.clone(),
            driver: self.driver.clone(),
            kernel: self.kernel.clone(),
        }
    }
}

/// The file: a format number and entries, each kept as raw JSON until checked, so that one bad
/// entry does not cost the others.
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    entries: Vec<serde_json::Value>,
}

/// What identifies an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    backend: String,
    device: String,
    driver: String,
    kernel: String,
}

impl Key {
    fn of(device: &dyn Device, kernel: &Tunable) -> Key {
        let info = device.info();
        Key {
            backend: info.backend.clone(),
            device: info.name.clone(),
            driver: info.driver_version.clone(),
            kernel: kernel.name.to_string(),
        }
    }
}

/// The entries of a cache file's text that parse and have the current format, and a warning
/// for each part that does not. An entry's version and parameters are checked where it is used.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<String>) {
    let file: CacheFile = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => return (Vec::new(), vec![format!("the file does not parse ({e})")]),
    };
    if file.format != FORMAT {
        return (
            Vec::new(),
            vec![format!(
                "the file has format {}, expected {FORMAT}",
                file.format
            )],
        );
    }
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for (i, v) in file.entries.into_iter().enumerate() {
        match serde_json::from_value::<Entry>(v) {
            Ok(e) => entries.push(e),
            Err(e) => warnings.push(format!("entry {i} does not parse ({e})")),
        }
    }
    (entries, warnings)
}

/// Why an entry cannot be used for `kernel` on `device`, or `None` when it can.
pub fn reject(entry: &Entry, device: &dyn Device, kernel: &Tunable) -> Option<String> {
    let version = kernel.version();
    if entry.version != version {
        return Some(format!(
            "it was measured with kernel version {}, this is {version}",
            entry.version
        ));
    }
    if !(kernel.candidates)(device).contains(&entry.params) {
        return Some(format!(
            "its parameters {:?} ({}) are not a candidate on this device",
            entry.params, kernel.params
        ));
    }
    None
}

/// Prints a warning on standard error, once per text.
fn warn_once(text: &str) {
    say_once("warning", text);
}

/// Prints `anyaccel: {kind}: {text}` on standard error, once per text.
fn say_once(kind: &str, text: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.iter().any(|s| s == text) {
        eprintln!("anyaccel: {kind}: {text}");
        seen.push(text.to_string());
    }
}

/// The process's knowledge: the cache file's entries (read once) and the choices made.
struct State {
    /// Entries read from the file (`None` until read).
    file: Option<Vec<Entry>>,
    /// Parameters settled in this process, by key.
    chosen: HashMap<Key, Vec<u32>>,
}

fn state() -> &'static Mutex<State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        Mutex::new(State {
            file: None,
            chosen: HashMap::new(),
        })
    })
}

/// Reads the cache file's entries (warning about what is wrong with it).
fn read_file() -> Vec<Entry> {
    let Some(path) = cache_file() else {
        return Vec::new();
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warn_once(&format!(
                "tuning cache {}: cannot be read ({e}); ignored",
                path.display()
            ));
            return Vec::new();
        }
    };
    let (entries, warnings) = parse(&text);
    for w in warnings {
        warn_once(&format!("tuning cache {}: {w}; ignored", path.display()));
    }
    entries
}

/// Adds (or replaces) `entry` in the cache file: read, change, write to a temporary file and
/// rename it over the file. A file that does not parse is renamed `tune.json.corrupt` first.
pub fn store(entry: &Entry) -> Result<PathBuf> {
    let path = cache_file().ok_or_else(|| {
        Error::new(
            ErrorCode::Unsupported,
            "tuning cache: no cache directory: set ANYACCEL_CACHE_DIR, XDG_CACHE_HOME or HOME",
        )
    })?;
    let io = |what: &str, e: std::io::Error| {
        Error::new(
            ErrorCode::InvalidArgument,
            format!("tuning cache {}: {what}: {e}", path.display()),
        )
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating its directory", e))?;
    }
    let mut entries = Vec::new();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if serde_json::from_str::<CacheFile>(&text).is_err() {
                let aside = path.with_extension("json.corrupt");
                std::fs::rename(&path, &aside).map_err(|e| io("setting it aside", e))?;
                warn_once(&format!(
                    "tuning cache {}: does not parse; moved to {}",
                    path.display(),
                    aside.display()
                ));
            } else {
                entries = parse(&text).0;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading it", e)),
    }
    let key = entry.key();
    entries.retain(|e| e.key() != key);
    entries.push(entry.clone());
    let file = CacheFile {
        format: FORMAT,
        entries: entries
            .iter()
            .map(|e| serde_json::to_value(e).expect("an entry serializes"))
            .collect(),
    };
    let text = serde_json::to_string_pretty(&file).expect("the cache serializes");
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text + "\n").map_err(|e| io("writing", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("renaming the new file into place", e))?;
    Ok(path)
}

/// What a tunable launch does in this thread.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Chooses as the policy says.
    Normal,
    /// Inside a search: the forced parameters (by index into the candidates), or the default
    /// for `None`; records which kernel asked.
    Forced(Option<usize>),
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Normal) };
    static ASKED: Cell<Option<&'static Tunable>> = const { Cell::new(None) };
}

/// The parameters for a launch of `kernel` on `device` for a product of `work` multiply-adds:
/// forced inside a search; else settled in this process; else from the cache file; else,
/// under [`Policy::Auto`] and with enough work, measured now; else the default.
pub(crate) fn params(device: &dyn Device, kernel: &'static Tunable, work: u64) -> Vec<u32> {
    if let Mode::Forced(choice) = MODE.with(Cell::get) {
        ASKED.with(|a| a.set(Some(kernel)));
        return match choice {
            Some(i) => (kernel.candidates)(device)
                .get(i)
                .cloned()
                .unwrap_or_else(|| (kernel.default)(device)),
            None => (kernel.default)(device),
        };
    }
    let policy = policy();
    if policy == Policy::Off {
        return (kernel.default)(device);
    }
    let key = Key::of(device, kernel);
    {
        let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = st.chosen.get(&key) {
            return p.clone();
        }
        let file = st.file.get_or_insert_with(read_file);
        if let Some(entry) = file.iter().find(|e| e.key() == key).cloned() {
            let chosen = match reject(&entry, device, kernel) {
                None => entry.params,
                Some(why) => {
                    warn_once(&format!(
                        "tuning cache: the entry for {} on {} is ignored: {why}",
                        kernel.name,
                        device.info().name
                    ));
                    Vec::new()
                }
            };
            if !chosen.is_empty() {
                st.chosen.insert(key, chosen.clone());
                return chosen;
            }
        }
        if policy == Policy::Cache {
            // Settled: nothing here will measure.
            let chosen = (kernel.default)(device);
            st.chosen.insert(key, chosen.clone());
            return chosen;
        }
        if work < FIRST_USE_WORK {
            return (kernel.default)(device);
        }
    }
    // Measure now (without holding the lock: the search launches this kernel again).
    let size = std::env::var("ANYACCEL_TUNE_SIZE")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(FIRST_USE_SIZE);
    // Said once a kernel and device: the search compiles every candidate (seconds each on a
    // CPU driver the first time) and holds up this call.
    say_once(
        "note",
        &format!(
            "tuning {} on {} once, on a {size}^3 product: every candidate is compiled and timed \
         (ANYACCEL_TUNE=off skips it; `anyaccel tune` does it ahead of time)",
            kernel.name,
            device.info().name
        ),
    );
    let chosen = match search_with(device, kernel, size, 2) {
        Ok(s) => {
            let entry = s.entry(device);
            if let Err(e) = store(&entry) {
                warn_once(&format!("{e}; the result is kept for this process only"));
            }
            entry.params
        }
        Err(e) => {
            warn_once(&format!(
                "tuning {} on {}: {e}; using the defaults",
                kernel.name,
                device.info().name
            ));
            (kernel.default)(device)
        }
    };
    let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
    st.chosen.insert(key, chosen.clone());
    chosen
}

/// The multiply-adds of `batches` products of `m x k` by `k x n` (saturating).
pub(crate) fn madds(batches: usize, m: usize, n: usize, k: usize) -> u64 {
    [batches, m, n, k]
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX)
}

/// Sets this thread's mode for the duration of `f`.
fn with_mode<R>(mode: Mode, f: impl FnOnce() -> R) -> R {
    struct Restore(Mode);
    impl Drop for Restore {
        fn drop(&mut self) {
            MODE.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(MODE.with(|m| m.replace(mode)));
    f()
}

/// Runs `f` with the matmul kernel's candidate `index` forced (its default for `None`), and
/// tells which tunable kernel the calls in `f` launched (`None` when none did: the device runs
/// matmul on host kernels or natively). For tests and searches.
pub fn with_candidate<R>(
    index: Option<usize>,
    f: impl FnOnce() -> R,
) -> (R, Option<&'static Tunable>) {
    ASKED.with(|a| a.set(None));
    let r = with_mode(Mode::Forced(index), f);
    (r, ASKED.with(Cell::get))
}

/// One candidate's timing.
#[derive(Debug, Clone)]
pub struct Trial {
    /// Its parameters.
    pub params: Vec<u32>,
    /// Its best time over the repetitions, or why it failed.
    pub time: std::result::Result<Duration, String>,
}

/// A search's result.
#[derive(Debug, Clone)]
pub struct Search {
    /// The kernel searched.
    pub kernel: &'static Tunable,
    /// The product's edge.
    pub size: usize,
    /// The default's parameters.
    pub default: Vec<u32>,
    /// Every candidate's timing, in the order tried.
    pub trials: Vec<Trial>,
    /// The index in `trials` of the fastest.
    pub best: usize,
}

impl Search {
    /// GFLOP/s of a time on this search's product.
    pub fn gflops(&self, t: Duration) -> f64 {
        2.0 * (self.size as f64).powi(3) / t.as_secs_f64() / 1e9
    }

    /// The cache entry of the best candidate on `device`.
    pub fn entry(&self, device: &dyn Device) -> Entry {
        let info = device.info();
        let best = &self.trials[self.best];
        Entry {
            backend: info.backend.clone(),
            device: info.name.clone(),
            driver: info.driver_version.clone(),
            kernel: self.kernel.name.to_string(),
            version: self.kernel.version(),
            params: best.params.clone(),
            size: self.size,
            gflops: best.time.as_ref().map_or(0.0, |t| self.gflops(*t)),
        }
    }

    /// Median times of the default and the best candidate on `device`, run in `rounds`
    /// alternating rounds on this search's product (so that a drift in the device's speed falls
    /// on both alike).
    pub fn compare(&self, device: &dyn Device, rounds: usize) -> Result<(Duration, Duration)> {
        let q = device.create_queue()?;
        let (a, b) = operands(&*q, self.size)?;
        let time = |index: Option<usize>| -> Result<Duration> {
            with_candidate(index, || {
                let t = Instant::now();
                crate::matmul(&*q, &a, &b, None)?;
                q.finish()?;
                Ok(t.elapsed())
            })
            .0
        };
        let (mut dt, mut bt) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            dt.push(time(None)?);
            bt.push(time(Some(self.best))?);
        }
        let median = |mut v: Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        Ok((median(dt), median(bt)))
    }

    /// The default's time.
    pub fn default_time(&self) -> Option<Duration> {
        self.trials
            .iter()
            .find(|t| t.params == self.default)
            .and_then(|t| t.time.as_ref().ok().copied())
    }
}

/// Times every matmul candidate of `device` on an f32 product of `size x size x size`, best of
/// `reps` runs each after one untimed run (which compiles it), and returns the table; the
/// cache is not written ([`store`] the [`Search::entry`] for that). Fails when the device's
/// matmul has no tunable kernel (host kernels, a native library).
pub fn search_matmul(device: &dyn Device, size: usize, reps: usize) -> Result<Search> {
    let q = device.create_queue()?;
    // Both sides above 64: the large-product path, where the tiles are tuned.
    let (a, b) = operands(&*q, 128)?;
    let ((), kernel) = with_candidate(None, || {
        let _ = crate::matmul(&*q, &a, &b, None).and_then(|_| q.finish());
    });
    let kernel = kernel.ok_or_else(|| {
        Error::new(
            ErrorCode::Unsupported,
            format!(
                "tune: {} runs matmul without a tunable kernel (host kernels or a native library)",
                device.info().id
            ),
        )
    })?;
    search_with(device, kernel, size, reps)
}

/// Operands of an `n x n` product: values in [-1, 1).
fn operands(q: &dyn Queue, n: usize) -> Result<(Tensor, Tensor)> {
    let len = n.checked_mul(n).ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidArgument,
            format!("tune: a {n} x {n} matrix overflows"),
        )
    })?;
    let v: Vec<f32> = (0..len)
        .map(|i| ((i.wrapping_mul(2654435761) >> 7) % 2048) as f32 / 1024.0 - 1.0)
        .collect();
    Ok((
        Tensor::from_slice(q, &v, &[n, n])?,
        Tensor::from_slice(q, &v, &[n, n])?,
    ))
}

fn search_with(
    device: &dyn Device,
    kernel: &'static Tunable,
    size: usize,
    reps: usize,
) -> Result<Search> {
    if !device.caps().has_dtype(DType::F32) {
        return Err(Error::new(
            ErrorCode::Unsupported,
            "tune: the device has no f32",
        ));
    }
    let q: Arc<dyn Queue> = device.create_queue()?;
    let (a, b) = operands(&*q, size)?;
    let candidates = (kernel.candidates)(device);
    let default = (kernel.default)(device);
    // One run of each candidate (compiling it), then `reps` rounds over all of them, so that a
    // drift in the device's speed over the search falls on every candidate alike.
    let once = |i: usize| -> Result<Duration> {
        let (r, asked) = with_candidate(Some(i), || -> Result<Duration> {
            let t = Instant::now();
            crate::matmul(&*q, &a, &b, None)?;
            q.finish()?;
            Ok(t.elapsed())
        });
        match asked {
            Some(k) if std::ptr::eq(k, kernel) => r,
            _ => Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("tune: the matmul did not launch {}", kernel.name),
            )),
        }
    };
    let mut trials: Vec<Trial> = candidates
        .into_iter()
        .enumerate()
        .map(|(i, params)| Trial {
            params,
            time: once(i).map(|_| Duration::MAX).map_err(|e| e.to_string()),
        })
        .collect();
    for _ in 0..reps.max(1) {
        for (i, t) in trials.iter_mut().enumerate() {
            if let Ok(best) = t.time {
                t.time = once(i).map(|d| d.min(best)).map_err(|e| e.to_string());
            }
        }
    }
    let best = trials
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.time.as_ref().ok().map(|d| (i, *d)))
        .min_by_key(|&(_, d)| d)
        .map(|(i, _)| i)
        .ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidArgument,
                format!(
                    "tune: no candidate of {} ran: {}",
                    kernel.name,
                    trials
                        .first()
                        .and_then(|t| t.time.as_ref().err().cloned())
                        .unwrap_or_default()
                ),
            )
        })?;
    Ok(Search {
        kernel,
        size,
        default,
        trials,
        best,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            backend: "opencl".into(),
            device: "cpu".into(),
            driver: "1".into(),
            kernel: "matmul.c".into(),
            version: "00".into(),
            params: vec![1, 2],
            size: 512,
            gflops: 1.5,
        }
    }

    #[test]
    fn a_file_round_trips_and_bad_parts_are_named() {
        let good = serde_json::to_value(entry()).unwrap();
        let text = serde_json::json!({"format": 1, "entries": [good, {"kernel": 3}]}).to_string();
        let (entries, warnings) = parse(&text);
        assert_eq!(entries, vec![entry()]);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("entry 1 does not parse"),
            "{warnings:?}"
        );

        let (entries, warnings) = parse("{\"format\": 1, \"entries\": [");
        assert!(entries.is_empty());
        assert!(
            warnings[0].starts_with("the file does not parse"),
            "{warnings:?}"
        );

        let (entries, warnings) = parse(r#"{"format": 2, "entries": []}"#);
        assert!(entries.is_empty());
        assert_eq!(
            warnings,
            vec!["the file has format 2, expected 1".to_string()]
        );
    }

    #[test]
    fn a_version_hashes_source_and_generator() {
        fn d(_: &dyn Device) -> Vec<u32> {
            vec![]
        }
        fn c(_: &dyn Device) -> Vec<Vec<u32>> {
            vec![]
        }
        let k = |source, generator| Tunable {
            name: "k",
            params: "",
            source,
            generator,
            default: d,
            candidates: c,
        };
        let v = k("a", 1).version();
        assert_eq!(v.len(), 16);
        assert_eq!(v, k("a", 1).version());
        assert_ne!(v, k("b", 1).version());
        assert_ne!(v, k("a", 2).version());
    }
}
