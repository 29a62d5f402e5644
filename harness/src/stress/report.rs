//! What a person sees of a run: progress while it runs (a bar on a terminal, plain
//! lines otherwise), and at the end a summary table, a JSON report and an SVG chart of
//! resident memory, open fds, live temp entries and live children over time, with the
//! scenario boundaries marked.
//!
//! `leakproof-stress`'s recorder reads the figures every 50 ms from `/proc`, from the
//! outside: nothing in the workload reports them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Scenario;
use crate::Result;

pub use leakproof_stress::recorder::pause_sampler;

/// The run's recorder: the library's sampler, marks and watchdog, and progress.
pub struct Recorder {
    inner: leakproof_stress::recorder::Recorder,
    tty: bool,
}

/// Stops a run stuck in a phase: says so, closes the spawn gate, ends every descendant,
/// removes this run's temp directories, and exits with 1. The summary, report and
/// chart are not written: the run did not end.
fn watchdog(stuck: &leakproof_stress::recorder::Stuck) -> ! {
    println!(
        "\nFAILED  watchdog: {} still running after {:.0} s (limit {} s per scenario, \
         --phase-limit); the run is stopped",
        stuck.phase,
        stuck.ran.as_secs_f64(),
        stuck.limit.as_secs()
    );
    // No new child from the indexer after this; then kill until none is left alive
    // (a process forking as it dies shows up on the next look). Bounded: other groups
    // are not gated, and a run that spawns faster than this kills is reported.
    super::stop_spawns();
    let alive = leakproof_stress::recorder::end_descendants();
    if !alive.is_empty() {
        println!("could not end these descendants: {alive:?}");
    }
    let removed = scoped_temp::remove_all();
    if !removed.is_clean() {
        println!(
            "could not remove this run's temp directories: {:?}",
            removed.errors
        );
    }
    std::process::exit(1);
}

impl Recorder {
    /// Starts sampling every 50 ms, and watching: a phase (from one mark to the next)
    /// that runs past `phase_limit` stops the run (see [`watchdog`]).
    pub fn start(phase_limit: Duration) -> Recorder {
        Recorder {
            inner: leakproof_stress::recorder::Recorder::start(
                phase_limit,
                Box::new(|stuck| {
                    watchdog(stuck);
                }),
            ),
            tty: std::io::stdout().is_terminal(),
        }
    }

    /// Seconds since the recorder started.
    pub fn elapsed_secs(&self) -> f64 {
        self.inner.elapsed().as_secs_f64()
    }

    /// Marks the start of a scenario on the chart.
    pub fn mark(&self, label: &str) {
        self.inner.mark(label);
    }

    /// Counts the entries of `dir` as live temp entries from now on.
    pub fn watch_temp_dir(&self, dir: &Path) {
        self.inner.watch_temp_dir(dir);
    }

    /// Progress over `total` steps of `what`.
    pub fn progress(&self, what: &str, total: u64) -> Progress {
        let bar = self.tty.then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix:>12} [{bar:40}] {pos}/{len} {msg} ({elapsed})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(what.to_string());
            bar
        });
        if bar.is_none() {
            println!("   {what}: 0/{total}");
        }
        Progress {
            what: what.to_string(),
            total,
            done: 0,
            bar,
            last_line: Instant::now(),
        }
    }
}

/// Progress of one scenario.
pub struct Progress {
    what: String,
    total: u64,
    done: u64,
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
}

impl Progress {
    /// One more step done; `failed` counts the failed ones so far.
    pub fn step(&mut self, failed: u64) {
        self.done += 1;
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done);
                bar.set_message(format!("{failed} failed"));
            }
            None => {
                // A line every 5 s at most, and the last one.
                if self.done == self.total || self.last_line.elapsed() >= Duration::from_secs(5) {
                    println!(
                        "   {}: {}/{} ({failed} failed)",
                        self.what, self.done, self.total
                    );
                    self.last_line = Instant::now();
                }
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub use leakproof_stress::scan::{descendants, stat_fields, with_marker};

#[derive(Serialize)]
struct JsonScenario<'a> {
    title: &'a str,
    passed: bool,
    figures: &'a [(String, String)],
    notes: &'a [String],
    checks: Vec<JsonCheck<'a>>,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    what: &'a str,
    ok: bool,
    observed: &'a str,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    profile: &'a str,
    seconds: f64,
    passed: bool,
    scenarios: Vec<JsonScenario<'a>>,
    marks: serde_json::Value,
    samples: serde_json::Value,
    /// The harness's scrapes of its own `/metrics` and `/healthz` (S3).
    scrapes: Vec<super::scrape::Scrape>,
}

/// Where the files went.
pub struct Files {
    pub json: PathBuf,
    pub svg: PathBuf,
    pub junit: PathBuf,
}

/// Stops the recorder, prints the summary table and writes the JSON report and the
/// chart into `out`.
pub fn finish(
    mut recorder: Recorder,
    scenarios: &[Scenario],
    profile: &str,
    out: &Path,
) -> Result<Files> {
    let seconds = recorder.inner.elapsed().as_secs_f64();
    let (samples, marks) = recorder.inner.finish();
    let (json_samples, json_marks) = leakproof_stress::recorder::to_json(&samples, &marks);
    print_table(scenarios);
    std::fs::create_dir_all(out)?;
    let files = Files {
        json: out.join("report.json"),
        svg: out.join("chart.svg"),
        junit: out.join("junit.xml"),
    };
    let report = JsonReport {
        profile,
        seconds,
        passed: scenarios.iter().all(Scenario::passed),
        scenarios: scenarios
            .iter()
            .map(|s| JsonScenario {
                title: &s.name,
                passed: s.passed(),
                figures: &s.figures,
                notes: &s.notes,
                checks: s
                    .checks
                    .iter()
                    .map(|c| JsonCheck {
                        what: &c.what,
                        ok: c.ok,
                        observed: &c.observed,
                    })
                    .collect(),
            })
            .collect(),
        marks: json_marks,
        samples: json_samples,
        scrapes: super::scrape::SCRAPES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
    };
    std::fs::write(&files.json, serde_json::to_vec_pretty(&report)?)?;
    let junit = leakproof_stress::Report {
        suite: format!("cargo xtask stress ({profile} profile)"),
        cases: scenarios.to_vec(),
        took: std::time::Duration::from_secs_f64(seconds),
        ..Default::default()
    };
    std::fs::write(&files.junit, junit.junit_xml())?;
    let panels = super::scrape::panels(&report.scrapes);
    leakproof_stress::recorder::chart_with(&files.svg, &samples, &marks, &panels)
        .map_err(|e| format!("chart: {e}"))?;
    Ok(files)
}

/// The summary: one row per scenario, its verdict and key figures.
fn print_table(scenarios: &[Scenario]) {
    let rows: Vec<(String, &str, String)> = scenarios
        .iter()
        .map(|s| {
            let figures = if s.figures.is_empty() {
                format!("{} checks", s.checks.len())
            } else {
                s.figures
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            (
                s.name.clone(),
                if s.passed() { "PASS" } else { "FAIL" },
                figures,
            )
        })
        .collect();
    let width = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    println!("summary");
    println!("  {:<width$}  verdict  key figures", "scenario");
    println!("  {:-<width$}  -------  -----------", "");
    for (title, verdict, figures) in rows {
        println!("  {title:<width$}  {verdict:<7}  {figures}");
    }
    println!();
}
