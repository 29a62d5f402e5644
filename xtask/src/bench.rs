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

/// What each case must meet, as `(group, ratio limit of ours/peer time, text)`.
const TARGETS: &[(&str, f64, &str)] = &[
    (
        "scoped-temp/create_write4k_remove",
        1.10,
        "ours <= 1.10x tempfile's time",
    ),
    (
        "scoped-temp/create_write4k_remove_tmpfs",
        1.10,
        "ours <= 1.10x tempfile's time",
    ),
];

const COMMAND: &[&str] = &["cargo", "bench", "-p", "leakproof-benches"];

struct Row {
    group: String,
    peer: String,
    ours_ns: f64,
    peer_ns: f64,
}

pub fn main() -> Result<bool> {
    let root = workspace_root();
    let criterion_dir = root.join("target/criterion");
    // Stale results from an earlier run must not reach the table.
    let _ = fs::remove_dir_all(&criterion_dir);
    println!("==> {}", COMMAND.join(" "));
    let status = Command::new(COMMAND[0])
        .args(&COMMAND[1..])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        return Ok(false);
    }
    let rows = collect(&criterion_dir)?;
    let report = render(&rows)?;
    fs::write(root.join("BENCHMARKS.md"), &report)?;
    println!("\n{report}");
    let met = rows
        .iter()
        .all(|r| target_of(&r.group).is_none_or(|(limit, _)| r.ours_ns / r.peer_ns <= limit));
    if !met {
        println!("note: a target was missed (see the table); BENCHMARKS.md records it as measured");
    }
    Ok(true)
}

fn target_of(group: &str) -> Option<(f64, &'static str)> {
    TARGETS
        .iter()
        .find(|(g, _, _)| *g == group)
        .map(|(_, limit, text)| (*limit, *text))
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
            rows.push(Row {
                group: group.clone(),
                peer,
                ours_ns,
                peer_ns,
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
    let rest = &json[median..];
    let at = rest
        .find("\"point_estimate\":")
        .ok_or("median without point_estimate")?
        + 17;
    let number: String = rest[at..]
        .chars()
        .skip_while(|c| c.is_whitespace())
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    Ok(number.parse()?)
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

fn render(rows: &[Row]) -> Result<String> {
    let mut out = String::new();
    writeln!(out, "# Benchmarks")?;
    writeln!(out)?;
    writeln!(
        out,
        "Written by `cargo xtask bench`; do not edit by hand. Each row runs our code and the"
    )?;
    writeln!(
        out,
        "peer crate on the same input in the same run; the ratio is ours / peer of the median"
    )?;
    writeln!(
        out,
        "time per iteration, so below 1.00 means we are faster. The machines are shared and"
    )?;
    writeln!(out, "noisy: read the ratio, not the absolute times.")?;
    writeln!(out)?;
    writeln!(out, "- Machine: {}", machine())?;
    writeln!(
        out,
        "- Command: `cargo xtask bench` (runs `{}`)",
        COMMAND.join(" ")
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| case | peer | ours (median) | peer (median) | ratio | target | met |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    for r in rows {
        let ratio = r.ours_ns / r.peer_ns;
        let (target, met) = match target_of(&r.group) {
            Some((limit, text)) => (text.to_string(), if ratio <= limit { "yes" } else { "no" }),
            None => ("-".to_string(), "-"),
        };
        writeln!(
            out,
            "| `{}` | `{}` | {} | {} | {ratio:.3}x | {target} | {met} |",
            r.group,
            r.peer,
            human(r.ours_ns),
            human(r.peer_ns)
        )?;
    }
    Ok(out)
}
