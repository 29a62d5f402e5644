//! A long run, recorded from outside: a sampler thread reads this process's figures
//! from `/proc` every 50 ms (resident memory, open descriptors, entries in the watched
//! temp directories, live descendants), phases are marked as they start, and a
//! watchdog stops a run whose phase runs past its limit. With the feature `chart`, the
//! record becomes an SVG chart of the four figures over time, phases marked.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde_json::{Value, json};

use crate::scan;

/// One reading of this process's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// Seconds since the recorder started.
    pub t: f64,
    /// Resident memory, MiB.
    pub rss_mib: f64,
    /// Open descriptors (the sampler's own left out).
    pub fds: usize,
    /// Entries in the watched temp directories.
    pub temp_entries: usize,
    /// Live descendants (zombies included).
    pub children: usize,
}

/// A phase's start.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Mark {
    /// Seconds since the recorder started.
    pub t: f64,
    /// The phase's name.
    pub label: String,
}

/// What the watchdog found: a phase still running past its limit.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Stuck {
    /// The phase (the last mark's label, or "the start").
    pub phase: String,
    /// How long it has run.
    pub ran: Duration,
    /// The limit it ran past.
    pub limit: Duration,
}

/// What the watchdog does first with a stuck run (say so, close the gates that start
/// work); should it return, the run is ended by [`stop_stuck_run`].
pub type OnStuck = Box<dyn Fn(&Stuck) + Send>;

#[derive(Default)]
struct Shared {
    samples: Vec<Sample>,
    marks: Vec<Mark>,
    temp_dirs: Vec<PathBuf>,
}

/// The sampler, the marks and the watchdog of one run.
pub struct Recorder {
    started: Instant,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// Held by the sampler while it reads `/proc`; an exact count of descriptors takes it
/// too ([`pause_sampler`]), so the sampler's own transient descriptors are never in it.
static SAMPLING: Mutex<()> = Mutex::new(());

/// Keeps the sampler from opening anything until dropped: hold it around an exact
/// count of this process's descriptors.
pub fn pause_sampler() -> MutexGuard<'static, ()> {
    SAMPLING.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    /// Starts sampling every 50 ms, and watching: a phase (from one [mark](Self::mark)
    /// to the next) that runs past `phase_limit` is handed to `on_stuck`, then the run
    /// is ended ([`stop_stuck_run`]) unless the hook ended it itself.
    pub fn start(phase_limit: Duration, on_stuck: OnStuck) -> Recorder {
        let started = Instant::now();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("stress-sampler".into())
                .spawn(move || {
                    let me = std::process::id();
                    while !stop.load(Ordering::Relaxed) {
                        let dirs = lock(&shared).temp_dirs.clone();
                        let quiet = pause_sampler();
                        let sample = Sample {
                            t: started.elapsed().as_secs_f64(),
                            rss_mib: scan::rss_bytes(me).unwrap_or(0) as f64 / (1 << 20) as f64,
                            // The listing's own descriptor is in the listing.
                            fds: scan::fd_count(me).unwrap_or(1).saturating_sub(1) as usize,
                            temp_entries: dirs.iter().map(|d| scan::entry_names(d).len()).sum(),
                            children: scan::descendants(me).len(),
                        };
                        drop(quiet);
                        // A failed read (no descriptor left, on purpose) is no sample.
                        if sample.rss_mib > 0.0 {
                            lock(&shared).samples.push(sample);
                        }
                        let (phase, since) = lock(&shared)
                            .marks
                            .last()
                            .map_or(("the start".to_string(), 0.0), |m| (m.label.clone(), m.t));
                        let ran = Duration::from_secs_f64(
                            (started.elapsed().as_secs_f64() - since).max(0.0),
                        );
                        if ran > phase_limit {
                            let stuck = Stuck {
                                phase,
                                ran,
                                limit: phase_limit,
                            };
                            on_stuck(&stuck);
                            stop_stuck_run(stuck);
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
        }
    }

    /// Time since the recorder started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Marks the start of a phase.
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

    /// Stops the sampler and the watchdog; returns the samples and the marks.
    pub fn finish(&mut self) -> (Vec<Sample>, Vec<Mark>) {
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

/// SIGKILLs every live descendant of this process, again and again (for what they
/// start meanwhile) until none is alive or 100 rounds passed; returns those still
/// alive then (a fork storm faster than this).
pub fn end_descendants() -> Vec<u32> {
    let me = std::process::id();
    let mut alive = Vec::new();
    for _ in 0..100 {
        let all = scan::processes();
        alive = scan::descendants_in(&all, me)
            .into_iter()
            .filter(|p| !p.is_zombie())
            .map(|p| p.pid)
            .collect();
        if alive.is_empty() {
            break;
        }
        for pid in &alive {
            crate::kill::send(*pid, Signal::KILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    alive
}

/// The usual end of a stuck run: logs it, ends every descendant
/// ([`end_descendants`]), and exits with status 1. The report is not written: the run
/// did not end.
pub fn stop_stuck_run(stuck: Stuck) -> ! {
    tracing::error!(phase = %stuck.phase, ran_s = stuck.ran.as_secs(), limit_s = stuck.limit.as_secs(), "leakproof-stress: watchdog: a phase ran past its limit; the run is stopped");
    let left = end_descendants();
    if !left.is_empty() {
        tracing::error!(
            ?left,
            "leakproof-stress: watchdog: could not end these descendants"
        );
    }
    std::process::exit(1)
}

/// Samples and marks as JSON arrays (`[{"t": .., "rss_mib": .., ...}]`), for a report.
pub fn to_json(samples: &[Sample], marks: &[Mark]) -> (Value, Value) {
    let samples = samples
        .iter()
        .map(|s| {
            json!({
                "t": s.t, "rss_mib": s.rss_mib, "fds": s.fds,
                "temp_entries": s.temp_entries, "children": s.children,
            })
        })
        .collect();
    let marks = marks
        .iter()
        .map(|m| json!({"t": m.t, "label": m.label}))
        .collect();
    (Value::Array(samples), Value::Array(marks))
}

/// A series of its own for the chart, below the recorder's four panels: one line,
/// `points` as (seconds on the recorder's clock, value).
#[derive(Debug, Clone, Default)]
pub struct Panel {
    /// The panel's caption.
    pub title: String,
    /// (seconds, value), in time order.
    pub points: Vec<(f64, f64)>,
}

#[cfg(feature = "chart")]
pub use chart::{chart, chart_with};

#[cfg(feature = "chart")]
mod chart {
    use std::path::Path;

    use super::{Mark, Panel, Sample};

    /// The chart's width in pixels.
    const CHART_WIDTH: u32 = 1200;
    /// The horizontal room a panel leaves for its y labels and margins.
    const PLOT_INSET: u32 = 56 + 2 * 8;
    /// About how wide a character of a mark's label is, in pixels (11 px sans-serif).
    const LABEL_CHAR_PX: f64 = 6.5;

    /// The row each mark's label goes on, 0 at the top: a label goes on the first row
    /// where it clears the one before it, so labels of phases that start close together
    /// do not overprint.
    pub(super) fn label_rows(marks: &[Mark], t_max: f64, plot_px: f64) -> Vec<usize> {
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

    /// Writes an SVG chart to `path`: four panels (resident memory, open fds, live temp
    /// entries, live children) sharing the time axis, a grey line at each phase's
    /// start, labelled on the top panel.
    pub fn chart(
        path: &Path,
        samples: &[Sample],
        marks: &[Mark],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        chart_with(path, samples, marks, &[])
    }

    /// [`chart`] with `panels` of your own below its four, on the same time axis (each
    /// a line in purple; the phase marks drawn on them too).
    pub fn chart_with(
        path: &Path,
        samples: &[Sample],
        marks: &[Mark],
        panels: &[Panel],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        use plotters::prelude::*;
        let height = 250 * (4 + panels.len() as u32);
        let root = SVGBackend::new(path, (CHART_WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((4 + panels.len(), 1));
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
        // The recorder's four panels, then the caller's, each one line.
        let lines = series
            .iter()
            .map(|(title, value, color)| {
                let points: Vec<(f64, f64)> = samples.iter().map(|s| (s.t, value(s))).collect();
                (title.to_string(), points, *color)
            })
            .chain(
                panels
                    .iter()
                    .map(|p| (p.title.clone(), p.points.clone(), RGBColor(148, 103, 189))),
            );
        for (i, (area, (title, points, color))) in areas.iter().zip(lines).enumerate() {
            let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.15 + 1.0;
            let mut chart = ChartBuilder::on(area)
                .caption(&title, ("sans-serif", 16))
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
            chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        }
        root.present()?;
        Ok(())
    }
}

#[cfg(all(test, feature = "chart"))]
mod tests {
    use super::Mark;
    use super::chart::label_rows;

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
