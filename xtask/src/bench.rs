//! `cargo xtask bench`: runs the criterion benches in `benches/` and rewrites
//! `BENCHMARKS.md` with the machine, the command, and each pair's medians and ratio.
//!
//! Convention: a bench group `<crate>/<case>` holds a function `ours` and one or more
//! peers; each peer gives a row `ours / peer`, of time (lower is better for us) or, for
//! a group whose name ends in `_throughput`, still of time per iteration on the same
//! input, so the ratio reads the same way.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::{Result, workspace_root};

/// What each pair must meet: `(group, peer, limit on ours/peer time, text)`. A pair not
/// listed is context (no target). Throughput targets are written as time ratios:
/// "at least 0.98x the throughput" is "at most 1/0.98 of the time".
const TARGETS: &[(&str, &str, f64, &str)] = &[
    (
        "leakproof/api_get_h1",
        "reqwest",
        1.10,
        "time <= 1.10x reqwest",
    ),
    (
        "leakproof/api_get_tls",
        "reqwest",
        1.10,
        "time <= 1.10x reqwest",
    ),
    (
        "leakproof/api_get_gzip_10mib",
        "reqwest",
        1.0 / 0.95,
        "throughput >= 0.95x reqwest",
    ),
    (
        "leakproof/scope_temp_dir",
        "bare",
        1.05,
        "time <= 1.05x bare",
    ),
    (
        "ttl-cache/get_warm",
        "moka",
        1.0 / 3.0,
        "throughput >= 3x moka",
    ),
    (
        "ttl-cache/get_warm",
        "quick_cache",
        1.0 / 0.7,
        "throughput >= 0.7x quick_cache",
    ),
    (
        "ttl-cache/get_warm",
        "mutex_lru",
        1.0,
        "faster than Mutex<lru>",
    ),
    (
        "ttl-cache/get_warm_2threads",
        "moka",
        1.0 / 3.0,
        "throughput >= 3x moka",
    ),
    (
        "ttl-cache/get_warm_2threads",
        "quick_cache",
        1.0,
        "throughput >= 1.0x quick_cache",
    ),
    (
        "ttl-cache/get_warm_2threads",
        "mutex_lru",
        1.0,
        "faster than Mutex<lru>",
    ),
    (
        "proc-reaper/spawn_wait_true",
        "tokio",
        1.10,
        "time <= 1.10x tokio",
    ),
    (
        "rate-gate/try_acquire",
        "governor",
        1.0,
        "time <= 1.0x governor's check",
    ),
    (
        "rate-gate/contended_2threads",
        "governor",
        1.0,
        "time <= 1.0x governor's",
    ),
    (
        "scoped-temp/create_write4k_remove",
        "tempfile",
        1.10,
        "time <= 1.10x tempfile",
    ),
    (
        "scoped-temp/create_write4k_remove_tmpfs",
        "tempfile",
        1.10,
        "time <= 1.10x tempfile",
    ),
    (
        "bounded-stream/pass_through",
        "uncapped",
        1.0 / 0.98,
        "throughput >= 0.98x uncapped",
    ),
    (
        "bounded-stream/pass_through_timed",
        "uncapped",
        1.0 / 0.98,
        "throughput >= 0.98x uncapped",
    ),
    (
        "bounded-stream/gzip_decode",
        "async-compression",
        1.0 / 0.95,
        "throughput >= 0.95x async-compression",
    ),
    (
        "bounded-stream/find_line_file",
        "memmem",
        1.0 / 0.9,
        "throughput >= 0.9x bare memmem",
    ),
    (
        "bounded-stream/find_file",
        "memmem",
        1.0 / 0.9,
        "throughput >= 0.9x bare memmem",
    ),
    (
        "bounded-stream/scan_lines_file",
        "memchr-per-line",
        1.0 / 0.95,
        "throughput >= 0.95x memchr per-line loop",
    ),
];

/// Absolute targets on our own median: `(group prefix, ns, text)`. Applied to every row of
/// a matching group (the ratio column then gives the comparison with each peer).
const ABSOLUTE: &[(&str, f64, &str)] = &[
    ("mem-watch/sample", 2_000.0, "ours <= 2 µs"),
    ("mem-watch/snapshot", 10_000.0, "ours <= 10 µs"),
];

/// Targets on the difference ours - peer, in ns per call: `(group prefix, ns, text)`.
/// For `metrics-cost/*`, where `ours` is the build with the `metrics` feature and the
/// peer (`off`) the build without.
const DIFFERENCE: &[(&str, f64, &str)] = &[("metrics-cost/", 5.0, "on - off <= 5 ns per call")];

const COMMAND: &[&str] = &["cargo", "bench", "-p", "leakproof-benches"];

/// After [`COMMAND`] (which builds `metrics_cost` without the feature: its `off`), the
/// same bench with the crates' `metrics` feature on (its `ours`).
const METRICS_COMMAND: &[&str] = &[
    "cargo",
    "bench",
    "-p",
    "leakproof-benches",
    "--features",
    "metrics",
    "--bench",
    "metrics_cost",
];

struct Row {
    group: String,
    peer: String,
    ours_ns: f64,
    peer_ns: f64,
    /// Bytes per iteration, where the bench declared a throughput.
    bytes: Option<f64>,
    /// A ratio measured in alternating batches (see `Paired`), which judges the row
    /// instead of `ours_ns / peer_ns` when the bench wrote one.
    paired: Option<Paired>,
    /// The row's ratio in each run, when several were combined (see `combine`).
    runs: Vec<f64>,
    /// The row's difference ours - peer (ns) in each run, likewise.
    diffs: Vec<f64>,
}

/// `target/criterion/<group>/<peer>/paired.json`: the median and range of the per-round
/// ratios ours / peer, for cases whose two medians, measured seconds apart, drift with
/// the machine more than they differ.
struct Paired {
    rounds: f64,
    median: f64,
    min: f64,
    max: f64,
}

impl Row {
    /// The ratio that judges the row: the median of the runs' ratios when there were
    /// several, else the paired ratio or the ratio of the medians.
    fn ratio(&self) -> f64 {
        if !self.runs.is_empty() {
            return median(&self.runs);
        }
        self.one_run_ratio()
    }

    /// ours - peer in ns: the median of the runs' differences when there were several.
    fn difference(&self) -> f64 {
        if !self.diffs.is_empty() {
            return median(&self.diffs);
        }
        self.ours_ns - self.peer_ns
    }

    fn one_run_ratio(&self) -> f64 {
        self.paired
            .as_ref()
            .map_or(self.ours_ns / self.peer_ns, |p| p.median)
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 if empty.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// One row per case from several runs: each time the median of the runs' medians, the
/// ratio the median of the runs' ratios, and every run's ratio kept for the spread. A
/// case missing from a run (a bench that failed there) is combined from the others.
fn combine(runs: Vec<Vec<Row>>) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    let mut times: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    for run in runs {
        for row in run {
            let ratio = row.one_run_ratio();
            match out
                .iter()
                .position(|r| r.group == row.group && r.peer == row.peer)
            {
                Some(i) => {
                    out[i].runs.push(ratio);
                    out[i].diffs.push(row.ours_ns - row.peer_ns);
                    times[i].0.push(row.ours_ns);
                    times[i].1.push(row.peer_ns);
                }
                None => {
                    times.push((vec![row.ours_ns], vec![row.peer_ns]));
                    out.push(Row {
                        runs: vec![ratio],
                        diffs: vec![row.ours_ns - row.peer_ns],
                        ..row
                    });
                }
            }
        }
    }
    for (row, (ours, peer)) in out.iter_mut().zip(times) {
        row.ours_ns = median(&ours);
        row.peer_ns = median(&peer);
    }
    out.sort_by(|a, b| (&a.group, &a.peer).cmp(&(&b.group, &b.peer)));
    out
}

/// Runs of the whole suite unless `--runs` says otherwise: each row's ratio is the
/// median of the runs', shown with their range.
const RUNS: usize = 3;

/// `cargo xtask bench [--runs N] [-- CRITERION ARGS]`: runs every bench `N` times
/// (default [`RUNS`]), then writes `BENCHMARKS.md`; with criterion arguments (a
/// filter), only the rows and sections that run measured are replaced (see [`splice`]).
/// `cargo xtask bench --collect-only`: writes it from the results already in
/// `target/criterion` (the last run plus any bench run by hand since), as one run.
pub fn main(args: &[String]) -> Result<bool> {
    let root = workspace_root();
    let criterion_dir = root.join("target/criterion");
    let (ours, criterion_args) = match args.iter().position(|a| a == "--") {
        Some(at) => (&args[..at], &args[at + 1..]),
        None => (args, &[][..]),
    };
    let runs = match ours {
        [flag] if flag == "--collect-only" => None,
        [] => Some(RUNS),
        [flag, n] if flag == "--runs" => match n.parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("bench: --runs wants a count, not {n:?}").into()),
        },
        other => return Err(format!("bench: unknown arguments {other:?}").into()),
    };
    // Figures that are not times (hit ratios, bytes per entry), written by the benches
    // as `target/criterion/<name>-extra.md`: each run's copy, by name.
    let mut extras: Vec<(String, Vec<String>)> = Vec::new();
    let (rows, runs_done) = match runs {
        None => {
            read_extras(&criterion_dir, &mut extras)?;
            (collect(&criterion_dir)?, 1)
        }
        Some(n) => {
            let mut all = Vec::new();
            for run in 1..=n {
                // Stale results from an earlier run must not reach the table.
                let _ = fs::remove_dir_all(&criterion_dir);
                println!(
                    "==> run {run} of {n}: {} {}",
                    COMMAND.join(" "),
                    if criterion_args.is_empty() {
                        String::new()
                    } else {
                        format!("-- {}", criterion_args.join(" "))
                    }
                );
                let mut command = crate::cargo();
                command.args(&COMMAND[1..]).current_dir(&root);
                if !criterion_args.is_empty() {
                    command.arg("--").args(criterion_args);
                }
                if !command.status()?.success() {
                    return Ok(false);
                }
                let mut metrics = crate::cargo();
                metrics.args(&METRICS_COMMAND[1..]).current_dir(&root);
                if !criterion_args.is_empty() {
                    metrics.arg("--").args(criterion_args);
                }
                println!("==> and: {}", METRICS_COMMAND.join(" "));
                if !metrics.status()?.success() {
                    return Ok(false);
                }
                all.push(collect(&criterion_dir)?);
                read_extras(&criterion_dir, &mut extras)?;
            }
            (combine(all), n)
        }
    };
    let mut report = render(&rows, runs_done)?;
    extras.sort();
    for (_, texts) in &extras {
        report.push('\n');
        report.push_str(&merge_extra(texts));
    }
    let path = root.join("BENCHMARKS.md");
    // A filtered run measured some groups only: it replaces their rows (and the
    // sections its benches wrote) and keeps the rest of the file as it was.
    if runs.is_some()
        && !criterion_args.is_empty()
        && let Ok(existing) = fs::read_to_string(&path)
    {
        // `rows` is sorted by group: one mention each.
        let mut groups: Vec<&str> = rows.iter().map(|r| r.group.as_str()).collect();
        groups.dedup();
        let mut measured = Vec::new();
        if !groups.is_empty() {
            let names: Vec<String> = groups.iter().map(|g| format!("`{g}`")).collect();
            measured.push(format!("the rows of {}", names.join(", ")));
        }
        for (_, texts) in &extras {
            let heading = texts.last().and_then(|t| t.lines().next()).unwrap_or("");
            measured.push(format!(
                "the section \"{}\"",
                heading.trim_start_matches('#').trim()
            ));
        }
        let note = format!(
            "Re-run on {}: `cargo xtask bench --runs {runs_done} -- {}`, {}; the rest is from \
             the run above or an earlier re-run.",
            today(),
            criterion_args.join(" "),
            measured.join(" and "),
        );
        report = splice(&existing, &report, &note);
    }
    fs::write(&path, &report)?;
    println!("\n{report}");
    let met = rows.iter().all(|r| target_of(r).is_none_or(|(met, _)| met));
    if !met {
        println!("note: a target was missed (see the table); BENCHMARKS.md records it as measured");
    }
    Ok(true)
}

/// Adds this run's `<name>-extra.md` files in `criterion_dir` to `extras`, by name.
fn read_extras(criterion_dir: &Path, extras: &mut Vec<(String, Vec<String>)>) -> Result<()> {
    let Ok(dir) = fs::read_dir(criterion_dir) else {
        return Ok(());
    };
    for path in dir.flatten().map(|e| e.path()) {
        let name = path.to_string_lossy().into_owned();
        if !name.ends_with("-extra.md") {
            continue;
        }
        let text = fs::read_to_string(&path)?;
        match extras.iter_mut().find(|(n, _)| *n == name) {
            Some((_, texts)) => texts.push(text),
            None => extras.push((name, vec![text])),
        }
    }
    Ok(())
}

/// The runs' copies of one bench's extra section as one: in each table row, a number
/// (or percentage) that differs between runs becomes the median of the runs' with their
/// range in brackets, at the precision the bench printed; a line saying so follows the
/// text. Copies of different shapes (the bench changed between runs) give the last.
fn merge_extra(texts: &[String]) -> String {
    let Some(last) = texts.last() else {
        return String::new();
    };
    let lines: Vec<Vec<&str>> = texts.iter().map(|t| t.lines().collect()).collect();
    if texts.len() == 1 || lines.iter().any(|l| l.len() != lines[0].len()) {
        return last.clone();
    }
    let mut out = String::new();
    for (i, line) in lines[lines.len() - 1].iter().enumerate() {
        let row: Vec<&str> = lines.iter().map(|l| l[i]).collect();
        let merged = if line.starts_with('|') && !line.starts_with("|---") {
            merge_row(&row)
        } else {
            None
        };
        out.push_str(merged.as_deref().unwrap_or(line));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nFrom {} runs: where the runs differ, the median of theirs with the range in \
         brackets.",
        texts.len()
    );
    out
}

/// One table row from the runs' copies of it (see [`merge_extra`]); `None` if the
/// copies have different numbers of cells.
fn merge_row(copies: &[&str]) -> Option<String> {
    let cells: Vec<Vec<&str>> = copies.iter().map(|r| r.split('|').collect()).collect();
    let width = cells[0].len();
    if cells.iter().any(|c| c.len() != width) {
        return None;
    }
    let last = &cells[cells.len() - 1];
    let merged: Vec<String> = (0..width)
        .map(|j| {
            let texts: Vec<&str> = cells.iter().map(|c| c[j].trim()).collect();
            let unit = if texts[0].ends_with('%') { "%" } else { "" };
            let values: Option<Vec<f64>> = texts
                .iter()
                .map(|t| t.strip_suffix(unit)?.parse::<f64>().ok())
                .collect();
            match values {
                Some(values) if texts.iter().any(|t| *t != texts[0]) => {
                    let number = texts[0].strip_suffix(unit).unwrap_or(texts[0]);
                    let d = number.split_once('.').map_or(0, |(_, f)| f.len());
                    let (lo, hi) = values
                        .iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                            (lo.min(v), hi.max(v))
                        });
                    format!(" {:.d$}{unit} ({lo:.d$}-{hi:.d$}) ", median(&values))
                }
                _ => last[j].to_string(),
            }
        })
        .collect();
    Some(merged.join("|"))
}

/// The row's target as `(met, text)`.
fn target_of(row: &Row) -> Option<(bool, &'static str)> {
    let ratio = TARGETS
        .iter()
        .find(|(group, peer, _, _)| *group == row.group && *peer == row.peer)
        .map(|(_, _, limit, text)| (row.ratio() <= *limit, *text));
    let absolute = ABSOLUTE
        .iter()
        .find(|(prefix, _, _)| row.group.starts_with(prefix))
        .map(|(_, max_ns, text)| (row.ours_ns <= *max_ns, *text));
    let difference = DIFFERENCE
        .iter()
        .find(|(prefix, _, _)| row.group.starts_with(prefix))
        .map(|(_, max_ns, text)| (row.difference() <= *max_ns, *text));
    ratio.or(absolute).or(difference)
}

/// Reads `target/criterion/<group>/<function>/new/estimates.json` (the group's name
/// sanitised) for every group that has an `ours`.
fn collect(criterion_dir: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut groups = Vec::new();
    for case in fs::read_dir(criterion_dir)? {
        let case = case?.path();
        if case.join("ours/new/estimates.json").exists() {
            groups.push(case);
        }
    }
    groups.sort();
    for dir in groups {
        let group = group_name(&dir)?;
        let bytes = throughput_bytes(&dir);
        let ours_ns = median_ns(&dir.join("ours/new/estimates.json"))?;
        let mut peers: Vec<_> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join("new/estimates.json").exists() && !p.ends_with("ours"))
            .collect();
        peers.sort();
        for peer_dir in peers {
            let peer = peer_dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let peer_ns = median_ns(&peer_dir.join("new/estimates.json"))?;
            let paired = fs::read_to_string(peer_dir.join("paired.json"))
                .ok()
                .and_then(|json| {
                    Some(Paired {
                        rounds: json_number(&json, "rounds")?,
                        median: json_number(&json, "median")?,
                        min: json_number(&json, "min")?,
                        max: json_number(&json, "max")?,
                    })
                });
            rows.push(Row {
                group: group.clone(),
                peer,
                ours_ns,
                peer_ns,
                bytes,
                paired,
                runs: Vec::new(),
                diffs: Vec::new(),
            });
        }
    }
    Ok(rows)
}

/// The group's name as criterion recorded it (the directory name is sanitised).
fn group_name(case_dir: &Path) -> Result<String> {
    let meta = fs::read_to_string(case_dir.join("ours/new/benchmark.json"))?;
    let id = json_string(&meta, "group_id").ok_or("benchmark.json without group_id")?;
    Ok(id)
}

/// Bytes per iteration from `"throughput":{"Bytes":N}` in `benchmark.json`, if declared.
fn throughput_bytes(case_dir: &Path) -> Option<f64> {
    let meta = fs::read_to_string(case_dir.join("ours/new/benchmark.json")).ok()?;
    let at = meta.find("\"Bytes\":")? + 8;
    let digits: String = meta[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn json_string(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = json[at..].trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// The median's point estimate, in nanoseconds, from criterion's `estimates.json`.
fn median_ns(path: &Path) -> Result<f64> {
    let json = fs::read_to_string(path)?;
    let median = json
        .find("\"median\":")
        .ok_or("estimates.json without a median")?;
    json_number(&json[median..], "point_estimate")
        .ok_or_else(|| "median without point_estimate".into())
}

/// The first number after `"key":` in `json`.
fn json_number(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let number: String = json[at..]
        .chars()
        .skip_while(|c| c.is_whitespace())
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    number.parse().ok()
}

fn human(ns: f64) -> String {
    match ns {
        ns if ns >= 1e9 => format!("{:.2} s", ns / 1e9),
        ns if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
        ns => format!("{ns:.1} ns"),
    }
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem_gib:.0} GiB, Linux {}, {rustc}",
        kernel.trim()
    )
}

/// The table rows of a `BENCHMARKS.md` (`| `group` | `peer` | ...`), by group and peer.
fn row_key(line: &str) -> Option<(&str, &str)> {
    let (group, rest) = line.strip_prefix("| `")?.split_once("` | `")?;
    let (peer, _) = rest.split_once('`')?;
    Some((group, peer))
}

/// What a re-run note says it measured: the backquoted names after its command (the
/// groups whose rows it wrote) and the quoted section titles.
fn measured(note: &str) -> Vec<&str> {
    let after_command = note.splitn(3, '`').nth(2).unwrap_or("");
    let said = after_command
        .split_once("; the rest")
        .map_or(after_command, |(said, _)| said);
    let quoted = |mark: char| said.split(mark).skip(1).step_by(2);
    quoted('`').chain(quoted('"')).collect()
}

/// `existing` with the rows and `### ` sections of `fresh` in place of its own (new ones
/// added in order), every other row and section kept, and `note` as a line under the
/// header's list, in place of an earlier re-run's line that it makes stale: the same
/// command's, or one whose rows and sections it all measured again.
fn splice(existing: &str, fresh: &str, note: &str) -> String {
    let fresh_rows: Vec<&str> = fresh.lines().filter(|l| row_key(l).is_some()).collect();
    let sections = |text: &str| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.starts_with("### ") {
                out.push((line.to_string(), String::new()));
            }
            if let Some((_, body)) = out.last_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        out
    };
    let fresh_sections = sections(fresh);
    let lines: Vec<&str> = existing.lines().collect();
    let first_row = lines.iter().position(|l| row_key(l).is_some());
    let Some(first_row) = first_row else {
        return fresh.to_string();
    };
    let end = lines[first_row..]
        .iter()
        .position(|l| row_key(l).is_none())
        .map_or(lines.len(), |n| first_row + n);
    let mut out = String::new();
    // The header, with the note after its last list item, in place of an earlier
    // re-run's note for the same command.
    let command = |line: &str| line.split('`').nth(1).map(str::to_owned);
    let header: Vec<&str> = lines[..first_row]
        .iter()
        .copied()
        .filter(|l| {
            let stale = || {
                let (earlier, now) = (measured(l), measured(note));
                !earlier.is_empty() && earlier.iter().all(|m| now.contains(m))
            };
            !(l.starts_with("- Re-run on ") && (command(l) == command(note) || stale()))
        })
        .collect();
    let last_item = header.iter().rposition(|l| l.starts_with("- "));
    for (i, line) in header.iter().enumerate() {
        out.push_str(line);
        out.push('\n');
        if Some(i) == last_item {
            out.push_str(&format!("- {note}\n"));
        }
    }
    // The rows: fresh ones replace theirs, the rest stay, in (group, peer) order.
    let mut rows: Vec<&str> = lines[first_row..end]
        .iter()
        .copied()
        .filter(|l| !fresh_rows.iter().any(|f| row_key(f) == row_key(l)))
        .chain(fresh_rows.iter().copied())
        .collect();
    rows.sort_by_key(|l| row_key(l));
    for row in rows {
        out.push_str(row);
        out.push('\n');
    }
    // After the table: sections the fresh run wrote replace theirs.
    let rest = lines[end..].join("\n");
    let (before, kept) = match rest.find("### ") {
        Some(at) => (&rest[..at], sections(&rest[at..])),
        None => (rest.as_str(), Vec::new()),
    };
    out.push_str(before);
    let mut all = kept;
    for (title, body) in fresh_sections {
        match all.iter_mut().find(|(t, _)| *t == title) {
            Some(slot) => slot.1 = body,
            None => all.push((title, body)),
        }
    }
    for (_, body) in all {
        out.push_str(body.trim_end());
        out.push_str("\n\n");
    }
    format!("{}\n", out.trim_end())
}

/// Today's date (UTC), as `YYYY-MM-DD`.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    date_of(i64::try_from(secs / 86_400).unwrap_or(0))
}

/// Days since 1970-01-01 as a civil date (H. Hinnant's `civil_from_days`).
fn date_of(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn render(rows: &[Row], runs: usize) -> Result<String> {
    let mut out = String::new();
    writeln!(out, "# Benchmarks")?;
    writeln!(out)?;
    writeln!(
        out,
        "Written by `cargo xtask bench`; do not edit by hand. Each row runs our code and the"
    )?;
    writeln!(
        out,
        "peer on the same input in the same run; the ratio is ours / peer of the median time per"
    )?;
    writeln!(
        out,
        "iteration, so below 1.00 means we are faster (throughput is its inverse). The machines"
    )?;
    writeln!(
        out,
        "are shared and noisy: read the ratio, not the absolute times. A ratio marked"
    )?;
    writeln!(
        out,
        "\"paired\" is the median of per-round ratios measured in alternating batches (range after"
    )?;
    writeln!(
        out,
        "it), for cases whose separately measured medians drift with the machine. With several"
    )?;
    writeln!(
        out,
        "runs of the whole suite, times are the median of the runs' medians, and the ratio is the"
    )?;
    writeln!(
        out,
        "median of the runs' ratios with their range (the spread) after it; the target judges"
    )?;
    writeln!(
        out,
        "that median. Where a target is missed, the top comment of its bench (in"
    )?;
    writeln!(
        out,
        "`benches/benches/`) says where the time goes, from a profile."
    )?;
    writeln!(out)?;
    writeln!(out, "- Machine: {}", machine())?;
    writeln!(
        out,
        "- Command: `cargo xtask bench` (runs `{}` then `{}`, {runs} time{})",
        COMMAND.join(" "),
        METRICS_COMMAND.join(" "),
        if runs == 1 { "" } else { "s" }
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| case | peer | ours (median) | peer (median) | ratio | throughput (ours / peer) | target | met |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    for r in rows {
        let ratio = match (&r.paired, r.runs.len()) {
            (_, n) if n > 1 => {
                let (min, max) = r
                    .runs
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
                format!(
                    "{:.3}x ({n} runs{}: {min:.3}-{max:.3})",
                    r.ratio(),
                    if r.paired.is_some() {
                        ", each paired"
                    } else {
                        ""
                    }
                )
            }
            (Some(p), _) => format!(
                "{:.3}x (paired, {:.0} rounds: {:.2}-{:.2})",
                p.median, p.rounds, p.min, p.max
            ),
            (None, _) => format!("{:.3}x", r.ours_ns / r.peer_ns),
        };
        let (mut target, met) = match target_of(r) {
            Some((met, text)) => (text.to_string(), if met { "yes" } else { "no" }),
            None => ("context, no target".to_string(), "-"),
        };
        if DIFFERENCE
            .iter()
            .any(|(prefix, _, _)| r.group.starts_with(prefix))
        {
            let (lo, hi) = r
                .diffs
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            let spread = if r.diffs.len() > 1 {
                format!(", runs {lo:+.1} to {hi:+.1}")
            } else {
                String::new()
            };
            write!(target, " (median {:+.1} ns{spread})", r.difference())?;
        }
        let throughput = match r.bytes {
            Some(bytes) => format!("{:.2} / {:.2} GB/s", bytes / r.ours_ns, bytes / r.peer_ns),
            None => "-".to_string(),
        };
        let (ours, peer) = (human(r.ours_ns), human(r.peer_ns));
        writeln!(
            out,
            "| `{}` | `{}` | {ours} | {peer} | {ratio} | {throughput} | {target} | {met} |",
            r.group, r.peer
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_from_several_runs_show_the_median_and_range_of_what_differs() {
        let run = |ours: &str, moka: &str| {
            format!(
                "### t: hit ratio\n\nWords.\n\n| cache | Zipf | bytes |\n|---|---|---|\n\
                 | `ours` | {ours} | 40 |\n| `moka` | {moka} | 320 |\n"
            )
        };
        let texts = [
            run("79.20%", "90.03%"),
            run("79.19%", "89.20%"),
            run("79.19%", "90.20%"),
        ];
        let merged = merge_extra(&texts);
        assert!(merged.starts_with(
            "### t: hit ratio\n\nWords.\n\n| cache | Zipf | bytes |\n|---|---|---|\n"
        ));
        assert!(
            merged.contains("| `ours` | 79.19% (79.19-79.20) | 40 |\n"),
            "{merged}"
        );
        assert!(
            merged.contains("| `moka` | 90.03% (89.20-90.20) | 320 |\n"),
            "{merged}"
        );
        assert!(merged.contains("From 3 runs"));
        // One run, or runs whose tables differ in shape: the last as it was.
        assert_eq!(merge_extra(&texts[..1]), texts[0]);
        let other = format!("{}| `extra` | 1% | 2 |\n", texts[0]);
        assert_eq!(merge_extra(&[other, texts[2].clone()]), texts[2]);
    }

    fn row(group: &str, ours_ns: f64, peer_ns: f64) -> Row {
        Row {
            group: group.into(),
            peer: "peer".into(),
            ours_ns,
            peer_ns,
            bytes: None,
            paired: None,
            runs: Vec::new(),
            diffs: Vec::new(),
        }
    }

    #[test]
    fn runs_combine_into_the_median_ratio_with_its_range() {
        let runs = vec![
            vec![row("a/x", 10.0, 10.0), row("b/y", 1.0, 2.0)],
            vec![row("a/x", 30.0, 10.0)],
            vec![row("a/x", 12.0, 10.0), row("b/y", 3.0, 2.0)],
        ];
        let rows = combine(runs);
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!(a.runs, vec![1.0, 3.0, 1.2]);
        assert_eq!(a.ratio(), 1.2);
        assert_eq!((a.ours_ns, a.peer_ns), (12.0, 10.0));
        // A case one run lacks is combined from the runs that have it.
        assert_eq!(rows[1].ratio(), 1.0);
        let table = render(&rows, 3).unwrap();
        assert!(table.contains("1.200x (3 runs: 1.000-3.000)"), "{table}");
        assert!(table.contains("1.000x (2 runs: 0.500-1.500)"), "{table}");
    }

    #[test]
    fn a_filtered_run_replaces_its_rows_and_sections_and_keeps_the_rest() {
        let existing = "# Benchmarks\n\nintro\n\n- Machine: m\n- Command: c\n\n\
            | case | peer |\n|---|---|\n\
            | `a/x` | `p` | old a |\n| `b/y` | `p` | old b |\n| `c/z` | `q` | old c |\n\n\
            ### b: extra\n\nold table\n\n### d: other\n\nkept\n";
        let fresh = "# Benchmarks\n\n- Machine: m2\n\n| case | peer |\n|---|---|\n\
            | `b/y` | `p` | new b |\n| `b/y` | `r` | new peer |\n\n\
            ### b: extra\n\nnew table\n";
        let out = splice(existing, fresh, "Re-run on today: b.");
        assert_eq!(
            out,
            "# Benchmarks\n\nintro\n\n- Machine: m\n- Command: c\n- Re-run on today: b.\n\n\
             | case | peer |\n|---|---|\n\
             | `a/x` | `p` | old a |\n| `b/y` | `p` | new b |\n| `b/y` | `r` | new peer |\n\
             | `c/z` | `q` | old c |\n\n\
             ### b: extra\n\nnew table\n\n### d: other\n\nkept\n"
        );
        assert_eq!(row_key("| `b/y` | `r` | x |"), Some(("b/y", "r")));
        assert_eq!(row_key("| case | peer |"), None);
        // A second re-run of the same command replaces the first one's line.
        let again = splice(&out, fresh, "Re-run on later: `cmd b` again.");
        let noted = splice(existing, fresh, "Re-run on today: `cmd b`, b.");
        let twice = splice(&noted, fresh, "Re-run on later: `cmd b`, b.");
        assert!(!twice.contains("Re-run on today"), "{twice}");
        assert!(
            twice.contains("- Re-run on later: `cmd b`, b.\n"),
            "{twice}"
        );
        assert!(
            again.contains("Re-run on today: b."),
            "other commands' lines stay"
        );
        // A wider re-run replaces the line of one whose rows and sections it covers.
        let narrow = splice(
            existing,
            fresh,
            "Re-run on today: `cmd b/y`, the rows of `b/y`; the rest is from `x`.",
        );
        let other = splice(
            &narrow,
            fresh,
            "Re-run on today: `cmd b/`, the section \"b: extra\"; the rest is from `x`.",
        );
        assert!(other.contains("`cmd b/y`"), "not covered: {other}");
        let wide = splice(
            &other,
            fresh,
            "Re-run on later: `cmd b`, the rows of `b/y`, `b/z` and the section \"b: extra\"; \
             the rest is from `x`.",
        );
        assert!(!wide.contains("Re-run on today"), "{wide}");
        assert_eq!(
            measured(
                "Re-run on d: `c -- f`, the rows of `a/x`, `b/y` and the section \"s: t\"; the rest is from `z`."
            ),
            vec!["a/x", "b/y", "s: t"]
        );
    }

    #[test]
    fn days_since_the_epoch_become_civil_dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(11_016), "2000-02-29");
        assert_eq!(date_of(20_789), "2026-12-02");
    }

    #[test]
    fn metrics_cost_is_judged_on_the_difference_per_call() {
        let runs = vec![
            vec![row("metrics-cost/gate", 31.0, 30.0)],
            vec![row("metrics-cost/gate", 38.0, 30.0)],
            vec![row("metrics-cost/gate", 32.0, 30.5)],
        ];
        let rows = combine(runs);
        assert_eq!(rows[0].diffs, vec![1.0, 8.0, 1.5]);
        assert_eq!(rows[0].difference(), 1.5);
        assert_eq!(
            target_of(&rows[0]),
            Some((true, "on - off <= 5 ns per call"))
        );
        let table = render(&rows, 3).unwrap();
        assert!(
            table.contains("(median +1.5 ns, runs +1.0 to +8.0)"),
            "{table}"
        );
        let over = combine(vec![vec![row("metrics-cost/get", 40.0, 30.0)]]);
        assert_eq!(target_of(&over[0]).map(|t| t.0), Some(false));
    }
}
