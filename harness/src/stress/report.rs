//! What a person sees of a run: progress while it runs (a bar on a terminal, plain
//! lines otherwise), and at the end a summary table, a JSON report and an SVG chart of
//! resident memory, open fds, live temp entries and live children over time, with the
//! scenario boundaries marked.
//!
//! A sampler thread reads the figures every 50 ms from `/proc`, from the outside:
//! nothing in the workload reports them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Scenario;
use crate::Result;

/// One reading of the process's figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the run began.
    pub t: f64,
    pub rss_mib: f64,
    pub fds: usize,
    pub temp_entries: usize,
    pub children: usize,
}

/// A scenario boundary on the chart.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub t: f64,
    pub label: String,
}

#[derive(Default)]
struct Shared {
    samples: Vec<Sample>,
    marks: Vec<Mark>,
    /// Directories whose entries count as live temp entries.
    temp_dirs: Vec<PathBuf>,
}

/// The run's recorder: sampler, marks, progress.
pub struct Recorder {
    started: Instant,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
    tty: bool,
}

/// Stops a run stuck in `phase`: says so, SIGKILLs every descendant (twice over, for
/// what they started meanwhile), removes this run's temp directories, and exits with 1.
/// The summary, report and chart are not written: the run did not end.
fn watchdog(phase: &str, stuck: Duration, limit: Duration) -> ! {
    println!(
        "\nFAILED  watchdog: {phase} still running after {:.0} s (limit {} s per scenario, \
         --phase-limit); the run is stopped",
        stuck.as_secs_f64(),
        limit.as_secs()
    );
    // No new child from the indexer after this; then kill until none is left alive
    // (a process forking as it dies shows up on the next look). Bounded: other groups
    // are not gated, and a run that spawns faster than this kills is reported.
    super::stop_spawns();
    let me = std::process::id();
    let mut alive = Vec::new();
    for _ in 0..100 {
        alive = descendants(me)
            .into_iter()
            .filter(|pid| {
                stat_fields(*pid).is_some_and(|fields| !fields.trim_start().starts_with('Z'))
            })
            .collect();
        if alive.is_empty() {
            break;
        }
        for pid in &alive {
            super::sigkill(*pid);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
        let started = Instant::now();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("stress-sampler".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let dirs = lock(&shared).temp_dirs.clone();
                        let quiet = pause_sampler();
                        let sample = Sample {
                            t: started.elapsed().as_secs_f64(),
                            rss_mib: super::rss_kib().0 as f64 / 1024.0,
                            fds: super::count_fds(),
                            temp_entries: dirs.iter().map(|d| entry_names(d).len()).sum(),
                            children: descendants(std::process::id()).len(),
                        };
                        drop(quiet);
                        // A failed read (no fds left, on purpose) is no sample.
                        if sample.rss_mib > 0.0 {
                            lock(&shared).samples.push(sample);
                        }
                        let (phase, since) = lock(&shared)
                            .marks
                            .last()
                            .map_or(("the start".to_string(), 0.0), |m| (m.label.clone(), m.t));
                        let stuck = Duration::from_secs_f64(
                            (started.elapsed().as_secs_f64() - since).max(0.0),
                        );
                        if stuck > phase_limit {
                            watchdog(&phase, stuck, phase_limit);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
                .ok()
        };
        Recorder {
            started,
            shared,
            stop,
            sampler,
            tty: std::io::stdout().is_terminal(),
        }
    }

    /// Marks the start of a scenario on the chart.
    pub fn mark(&self, label: &str) {
        let t = self.started.elapsed().as_secs_f64();
        lock(&self.shared).marks.push(Mark {
            t,
            label: label.to_string(),
        });
    }

    /// Counts the entries of `dir` as live temp entries from now on.
    pub fn watch_temp_dir(&self, dir: &Path) {
        let mut shared = lock(&self.shared);
        if !shared.temp_dirs.iter().any(|d| d == dir) {
            shared.temp_dirs.push(dir.to_path_buf());
        }
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

    /// Stops the sampler.
    fn finish(&mut self) -> (Vec<Sample>, Vec<Mark>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        let mut shared = lock(&self.shared);
        (
            std::mem::take(&mut shared.samples),
            std::mem::take(&mut shared.marks),
        )
    }
}

/// Held by the sampler while it reads `/proc`; a scenario's exact count of fds takes
/// it too, so the sampler's own transient fds are never in it.
static SAMPLING: Mutex<()> = Mutex::new(());

/// Keeps the sampler from opening anything until dropped.
pub fn pause_sampler() -> std::sync::MutexGuard<'static, ()> {
    SAMPLING.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
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

pub use leakproof_stress::scan::{descendants, entry_names, stat_fields, with_marker};

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
    marks: &'a [Mark],
    samples: &'a [Sample],
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
    let seconds = recorder.started.elapsed().as_secs_f64();
    let (samples, marks) = recorder.finish();
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
        marks: &marks,
        samples: &samples,
    };
    std::fs::write(&files.json, serde_json::to_vec_pretty(&report)?)?;
    let junit = leakproof_stress::Report {
        suite: format!("cargo xtask stress ({profile} profile)"),
        cases: scenarios.to_vec(),
        took: std::time::Duration::from_secs_f64(seconds),
        ..Default::default()
    };
    std::fs::write(&files.junit, junit.junit_xml())?;
    chart(&files.svg, &samples, &marks)?;
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

/// The chart's width in pixels.
const CHART_WIDTH: u32 = 1200;
/// The horizontal room a panel leaves for its y labels and margins.
const PLOT_INSET: u32 = 56 + 2 * 8;
/// About how wide a character of a mark's label is, in pixels (11 px sans-serif).
const LABEL_CHAR_PX: f64 = 6.5;

/// The row each mark's label goes on, 0 at the top: a label goes on the first row
/// where it clears the one before it, so labels of scenarios that start close together
/// (the crate groups take seconds; the indexer's S1 takes minutes) do not overprint.
fn label_rows(marks: &[Mark], t_max: f64, plot_px: f64) -> Vec<usize> {
    // The pixel where each row's last label ends.
    let mut row_ends: Vec<f64> = Vec::new();
    marks
        .iter()
        .map(|mark| {
            let x = mark.t / t_max * plot_px;
            let end = x + (mark.label.chars().count() as f64 + 1.0) * LABEL_CHAR_PX;
            let row = row_ends
                .iter()
                .position(|&taken| taken <= x)
                .unwrap_or(row_ends.len());
            if row == row_ends.len() {
                row_ends.push(end);
            } else {
                row_ends[row] = end;
            }
            row
        })
        .collect()
}

/// Four panels sharing the time axis, a grey line at each scenario's start, labelled
/// on the top panel.
fn chart(path: &Path, samples: &[Sample], marks: &[Mark]) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (CHART_WIDTH, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let rows = label_rows(marks, t_max, f64::from(CHART_WIDTH - PLOT_INSET));
    type Series = (&'static str, fn(&Sample) -> f64, RGBColor);
    let series: [Series; 4] = [
        (
            "resident memory (MiB)",
            |s| s.rss_mib,
            RGBColor(31, 119, 180),
        ),
        ("open fds", |s| s.fds as f64, RGBColor(255, 127, 14)),
        (
            "live temp entries",
            |s| s.temp_entries as f64,
            RGBColor(44, 160, 44),
        ),
        (
            "live child processes",
            |s| s.children as f64,
            RGBColor(214, 39, 40),
        ),
    ];
    for (i, (area, (title, value, color))) in
        root.split_evenly((4, 1)).iter().zip(series).enumerate()
    {
        let y_max = samples.iter().map(value).fold(0.0, f64::max) * 1.15 + 1.0;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .light_line_style(RGBColor(240, 240, 240))
            .draw()?;
        for (mark, row) in marks.iter().zip(&rows) {
            chart.draw_series(LineSeries::new(
                [(mark.t, 0.0), (mark.t, y_max)],
                RGBColor(150, 150, 150),
            ))?;
            if i == 0 {
                chart.draw_series(std::iter::once(Text::new(
                    format!(" {}", mark.label),
                    (mark.t, y_max * (0.97 - 0.08 * *row as f64)),
                    ("sans-serif", 11),
                )))?;
            }
        }
        chart.draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t, value(s))),
            color.stroke_width(2),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(at: &[(f64, &str)]) -> Vec<Mark> {
        at.iter()
            .map(|&(t, label)| Mark {
                t,
                label: label.to_string(),
            })
            .collect()
    }

    #[test]
    fn labels_that_would_overprint_go_on_lower_rows() {
        // 1,000 px for 1,000 s: "temp" takes about 33 px, so one second apart they clash.
        let rows = label_rows(
            &marks(&[
                (0.0, "temp"),
                (1.0, "stream"),
                (2.0, "mem"),
                (40.0, "rate"),
                (500.0, "S1"),
                (505.0, "S2"),
            ]),
            1000.0,
            1000.0,
        );
        assert_eq!(rows, [0, 1, 2, 0, 0, 1]);
    }

    #[test]
    fn labels_far_apart_share_the_top_row() {
        let rows = label_rows(
            &marks(&[(0.0, "S1"), (300.0, "S2"), (600.0, "S3")]),
            900.0,
            1000.0,
        );
        assert_eq!(rows, [0, 0, 0]);
    }
}
