//! Results and the four report files: `report.json` (schema `anyaccel-conformance/1`),
//! `report.md`, `junit.xml` and a self-contained `report.html`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The final status of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every check held.
    Passed,
    /// A check failed.
    Failed,
    /// The device does not support what the case needs; never counts as a pass.
    Skipped,
    /// Failed, and listed as an expected failure.
    Xfailed,
    /// Passed, though listed as an expected failure.
    Xpassed,
    /// The process running the case died (a signal, an abort).
    Crashed,
    /// The case ran past the time limit.
    TimedOut,
}

impl Status {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Xfailed => "xfailed",
            Status::Xpassed => "xpassed",
            Status::Crashed => "crashed",
            Status::TimedOut => "timed_out",
        }
    }
}

/// The result of one case on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Case id.
    pub id: String,
    /// `hal` or `ops`.
    pub suite: String,
    /// The op (null for hal cases).
    pub op: Option<String>,
    /// The dtype label (null for hal cases).
    pub dtype: Option<String>,
    /// Status.
    pub status: Status,
    /// Why it failed, was skipped, crashed or is expected to fail.
    pub reason: Option<String>,
    /// Largest absolute error over finite elements.
    pub max_abs_err: f64,
    /// Largest relative error over finite elements.
    pub max_rel_err: f64,
    /// The atol that would have passed (with the table's rtol), for a failure.
    pub needed_atol: Option<f64>,
    /// The rtol that would have passed (with the table's atol), for a failure.
    pub needed_rtol: Option<f64>,
    /// First failing element.
    pub first_bad_index: Option<usize>,
    /// Its value.
    pub got: Option<f64>,
    /// Its expected value.
    pub expected: Option<f64>,
    /// The run's seed.
    pub seed: u64,
    /// A command that replays just this case.
    pub replay: String,
    /// Profiles the case belongs to.
    pub profiles: Vec<String>,
    /// Wall time in milliseconds.
    pub duration_ms: f64,
}

/// Counts per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Expected failures.
    pub xfailed: usize,
    /// Unexpected passes.
    pub xpassed: usize,
    /// Crashed.
    pub crashed: usize,
    /// Timed out.
    pub timed_out: usize,
}

impl Summary {
    /// Counts the statuses of `cases`.
    pub fn of(cases: &[CaseResult]) -> Summary {
        let mut s = Summary::default();
        for c in cases {
            *match c.status {
                Status::Passed => &mut s.passed,
                Status::Failed => &mut s.failed,
                Status::Skipped => &mut s.skipped,
                Status::Xfailed => &mut s.xfailed,
                Status::Xpassed => &mut s.xpassed,
                Status::Crashed => &mut s.crashed,
                Status::TimedOut => &mut s.timed_out,
            } += 1;
        }
        s
    }
}

/// One device's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// Device id.
    pub id: String,
    /// Device name.
    pub name: String,
    /// Backend name.
    pub backend: String,
    /// Counts.
    pub summary: Summary,
    /// Per profile that ran whole: whether every case in it passed (conformant). Empty in a
    /// run filtered with `--filter`: a subset of a profile's cases proves nothing of it.
    pub profiles: BTreeMap<String, bool>,
    /// Every case.
    pub cases: Vec<CaseResult>,
}

/// A backend that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnavailableBackend {
    /// Backend name.
    pub backend: String,
    /// The loader's reason.
    pub reason: String,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `anyaccel-conformance/1`.
    pub schema: String,
    /// The run's seed.
    pub seed: u64,
    /// anyaccel's version.
    pub anyaccel_version: String,
    /// Per device.
    pub devices: Vec<DeviceReport>,
    /// Backends that were not available.
    pub unavailable: Vec<UnavailableBackend>,
    /// The `--filter` globs of a filtered run (no profile verdicts); empty for a whole run.
    #[serde(default)]
    pub filters: Vec<String>,
}

/// The schema name of `report.json`.
pub const SCHEMA: &str = "anyaccel-conformance/1";

impl Report {
    /// The line that stands for the profile verdicts in a filtered run.
    pub fn filtered_note(&self) -> Option<String> {
        (!self.filters.is_empty()).then(|| {
            format!(
                "no profile verdict: a run filtered to {} proves no profile",
                self.filters.join(" ")
            )
        })
    }

    /// True when no case failed, crashed or timed out (nor, under `strict_xfail`, xpassed).
    pub fn ok(&self, strict_xfail: bool) -> bool {
        self.devices.iter().all(|d| {
            let s = &d.summary;
            s.failed == 0 && s.crashed == 0 && s.timed_out == 0 && (!strict_xfail || s.xpassed == 0)
        })
    }

    /// Writes the four report files into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(dir.join("junit.xml"), self.junit())?;
        std::fs::write(dir.join("report.html"), self.html())?;
        Ok(())
    }

    /// `report.md`: per device the summary, the profile verdicts and a table of problems.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# anyaccel conformance report\n\nanyaccel {} · seed {} · schema `{}`\n",
            self.anyaccel_version, self.seed, self.schema
        );
        for u in &self.unavailable {
            let _ = writeln!(s, "- backend `{}` unavailable: {}", u.backend, u.reason);
        }
        for d in &self.devices {
            let m = &d.summary;
            let _ = writeln!(s, "\n## {} — {} ({})\n", d.id, d.name, d.backend);
            let _ = writeln!(s, "| passed | failed | skipped | xfailed | xpassed | crashed | timed out |\n|---|---|---|---|---|---|---|");
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                m.passed, m.failed, m.skipped, m.xfailed, m.xpassed, m.crashed, m.timed_out
            );
            if let Some(note) = self.filtered_note() {
                let _ = writeln!(s, "- {note}");
            }
            for (p, ok) in &d.profiles {
                let _ = writeln!(
                    s,
                    "- profile **{p}**: {}",
                    if *ok { "conformant" } else { "not conformant" }
                );
            }
            s.push_str(&cost(&d.cases));
            let problems: Vec<&CaseResult> = d
                .cases
                .iter()
                .filter(|c| !matches!(c.status, Status::Passed | Status::Skipped | Status::Xfailed))
                .collect();
            if !problems.is_empty() {
                let _ = writeln!(s, "\n| case | status | max abs err | max rel err | atol/rtol that would pass | first bad (got / expected) | reason | replay |\n|---|---|---|---|---|---|---|---|");
                for c in problems {
                    let _ = writeln!(
                        s,
                        "| `{}` | {} | {:.3e} | {:.3e} | {} | {} | {} | `{}` |",
                        c.id,
                        c.status.name(),
                        c.max_abs_err,
                        c.max_rel_err,
                        needed(c),
                        first_bad(c),
                        md_escape(c.reason.as_deref().unwrap_or("")),
                        c.replay
                    );
                }
            }
            let skipped: Vec<&CaseResult> = d
                .cases
                .iter()
                .filter(|c| c.status == Status::Skipped)
                .collect();
            if !skipped.is_empty() {
                let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
                for c in skipped {
                    *reasons
                        .entry(c.reason.as_deref().unwrap_or(""))
                        .or_default() += 1;
                }
                let _ = writeln!(s, "\nSkipped cases, by the device's reason:\n");
                for (r, n) in reasons {
                    let _ = writeln!(s, "- {n} × {}", md_escape(r));
                }
            }
        }
        s
    }

    /// `junit.xml`: one testsuite per device, one testcase per case.
    pub fn junit(&self) -> String {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"anyaccel-conformance\">\n");
        for d in &self.devices {
            let m = &d.summary;
            let time: f64 = d.cases.iter().map(|c| c.duration_ms).sum::<f64>() / 1000.0;
            let _ = writeln!(
                s,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{time:.3}\">",
                xml(&d.id),
                d.cases.len(),
                m.failed + m.xpassed,
                m.crashed + m.timed_out,
                m.skipped + m.xfailed
            );
            for c in &d.cases {
                let class = format!("{}.{}", d.id, c.suite);
                let _ = write!(
                    s,
                    "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                    xml(&class),
                    xml(&c.id),
                    c.duration_ms / 1000.0
                );
                let msg = xml(&format!(
                    "{}{}",
                    c.reason.as_deref().unwrap_or(""),
                    if c.status == Status::Failed {
                        format!(" (replay: {})", c.replay)
                    } else {
                        String::new()
                    }
                ));
                match c.status {
                    Status::Passed => s.push_str("/>\n"),
                    Status::Failed | Status::Xpassed => {
                        let _ = writeln!(
                            s,
                            ">\n      <failure message=\"{msg}\" type=\"{}\"/>\n    </testcase>",
                            c.status.name()
                        );
                    }
                    Status::Crashed | Status::TimedOut => {
                        let _ = writeln!(
                            s,
                            ">\n      <error message=\"{msg}\" type=\"{}\"/>\n    </testcase>",
                            c.status.name()
                        );
                    }
                    Status::Skipped | Status::Xfailed => {
                        let _ =
                            writeln!(s, ">\n      <skipped message=\"{msg}\"/>\n    </testcase>");
                    }
                }
            }
            s.push_str("  </testsuite>\n");
        }
        s.push_str("</testsuites>\n");
        s
    }

    /// `report.html`: self-contained, an op x dtype matrix per device coloured by status, and the
    /// details of every problem.
    pub fn html(&self) -> String {
        let mut s = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>anyaccel conformance report</title><style>\
             body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}\
             td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:left}th{background:#f3f3f3}\
             .passed{background:#c8f0c8}.failed{background:#f5b0b0}.skipped{background:#e4e4e4}.xfailed{background:#f5e0a0}\
             .xpassed{background:#f0c0f0}.crashed{background:#e06060;color:#fff}.timed_out{background:#e0a060}.none{background:#fff}\
             code{font-size:12px}</style></head><body>\n",
        );
        let _ = writeln!(s, "<h1>anyaccel conformance report</h1><p>anyaccel {} · seed {} · schema <code>{}</code></p>", html(&self.anyaccel_version), self.seed, html(&self.schema));
        for u in &self.unavailable {
            let _ = writeln!(
                s,
                "<p>backend <b>{}</b> unavailable: {}</p>",
                html(&u.backend),
                html(&u.reason)
            );
        }
        for d in &self.devices {
            let m = &d.summary;
            let _ = writeln!(
                s,
                "<h2>{} — {} ({})</h2>",
                html(&d.id),
                html(&d.name),
                html(&d.backend)
            );
            let _ = writeln!(
                s,
                "<p>passed {} · failed {} · skipped {} · xfailed {} · xpassed {} · crashed {} · timed out {}</p><ul>",
                m.passed, m.failed, m.skipped, m.xfailed, m.xpassed, m.crashed, m.timed_out
            );
            if let Some(note) = self.filtered_note() {
                let _ = writeln!(s, "<li>{}</li>", html(&note));
            }
            for (p, ok) in &d.profiles {
                let _ = writeln!(
                    s,
                    "<li>profile <b>{}</b>: {}</li>",
                    html(p),
                    if *ok { "conformant" } else { "not conformant" }
                );
            }
            s.push_str("</ul>\n");
            // The op x dtype matrix: each cell shows the worst status and the counts.
            let mut dtypes: Vec<String> = Vec::new();
            let mut cells: BTreeMap<(String, String), Vec<Status>> = BTreeMap::new();
            for c in &d.cases {
                let op = c.op.clone().unwrap_or_else(|| "hal".into());
                let dt = c.dtype.clone().unwrap_or_else(|| "-".into());
                let dt = dt.split("_to_").next().unwrap_or(&dt).to_string();
                if !dtypes.contains(&dt) {
                    dtypes.push(dt.clone());
                }
                cells.entry((op, dt)).or_default().push(c.status);
            }
            let mut ops: Vec<String> = cells.keys().map(|(o, _)| o.clone()).collect();
            ops.dedup();
            s.push_str("<table><tr><th>op</th>");
            for dt in &dtypes {
                let _ = write!(s, "<th>{}</th>", html(dt));
            }
            s.push_str("</tr>\n");
            for op in &ops {
                let _ = write!(s, "<tr><th>{}</th>", html(op));
                for dt in &dtypes {
                    match cells.get(&(op.clone(), dt.clone())) {
                        None => s.push_str("<td class=\"none\"></td>"),
                        Some(st) => {
                            let worst = worst_status(st);
                            let ok = st.iter().filter(|x| **x == Status::Passed).count();
                            let _ = write!(
                                s,
                                "<td class=\"{}\" title=\"{}\">{}/{}</td>",
                                worst.name(),
                                worst.name(),
                                ok,
                                st.len()
                            );
                        }
                    }
                }
                s.push_str("</tr>\n");
            }
            s.push_str("</table>\n");
            let problems: Vec<&CaseResult> = d
                .cases
                .iter()
                .filter(|c| !matches!(c.status, Status::Passed | Status::Skipped))
                .collect();
            if !problems.is_empty() {
                s.push_str("<table><tr><th>case</th><th>status</th><th>max abs err</th><th>max rel err</th><th>atol/rtol that would pass</th><th>first bad (got / expected)</th><th>reason</th><th>replay</th></tr>\n");
                for c in problems {
                    let _ = writeln!(
                        s,
                        "<tr><td><code>{}</code></td><td class=\"{}\">{}</td><td>{:.3e}</td><td>{:.3e}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                        html(&c.id),
                        c.status.name(),
                        c.status.name(),
                        c.max_abs_err,
                        c.max_rel_err,
                        html(&needed(c)),
                        html(&first_bad(c)),
                        html(c.reason.as_deref().unwrap_or("")),
                        html(&c.replay)
                    );
                }
                s.push_str("</table>\n");
            }
        }
        s.push_str("</body></html>\n");
        s
    }
}

fn worst_status(st: &[Status]) -> Status {
    for s in [
        Status::Crashed,
        Status::TimedOut,
        Status::Failed,
        Status::Xpassed,
        Status::Xfailed,
        Status::Skipped,
    ] {
        if st.contains(&s) {
            return s;
        }
    }
    Status::Passed
}

fn needed(c: &CaseResult) -> String {
    match (c.needed_atol, c.needed_rtol) {
        (Some(a), Some(r)) => format!("atol {a:.3e} or rtol {r:.3e}"),
        _ => "-".into(),
    }
}

fn first_bad(c: &CaseResult) -> String {
    match c.first_bad_index {
        Some(i) => format!(
            "[{i}] {} / {}",
            c.got.map_or("NaN".to_string(), |g| format!("{g:e}")),
            c.expected.map_or("NaN".to_string(), |e| format!("{e:e}"))
        ),
        None => "-".into(),
    }
}

/// What a device's cases cost: the time of its cases in all and per profile (a case counts for
/// each of its profiles), and the ops that took longest, for keeping the suite in its budget.
fn cost(cases: &[CaseResult]) -> String {
    let secs = |ms: f64| ms / 1000.0;
    let total: f64 = cases.iter().map(|c| c.duration_ms).sum();
    let mut profiles: BTreeMap<&str, f64> = BTreeMap::new();
    let mut ops: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for c in cases {
        for p in &c.profiles {
            *profiles.entry(p.as_str()).or_default() += c.duration_ms;
        }
        let e = ops.entry(c.op.as_deref().unwrap_or(&c.suite)).or_default();
        e.0 += 1;
        e.1 += c.duration_ms;
    }
    let mut s = format!(
        "\nCost: {:.1} s in {} cases (time in the cases, without process start-up); by profile: {}.\n",
        secs(total),
        cases.len(),
        profiles
            .iter()
            .map(|(p, ms)| format!("{p} {:.1} s", secs(*ms)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut by_time: Vec<(&str, (usize, f64))> = ops.into_iter().collect();
    by_time.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    if !by_time.is_empty() {
        s.push_str("\n| costliest ops | cases | seconds | share |\n|---|---|---|---|\n");
        for (op, (n, ms)) in by_time.into_iter().take(10) {
            let share = if total > 0.0 { 100.0 * ms / total } else { 0.0 };
            let _ = writeln!(s, "| `{op}` | {n} | {:.1} | {share:.0}% |", secs(ms));
        }
    }
    s
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn html(s: &str) -> String {
    xml(s)
}
