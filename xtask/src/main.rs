//! `cargo xtask`: the workspace's harness and gate, in the style of rust-analyzer's
//! xtask: one binary, few dependencies, plain subcommands.
//!
//! - `cargo xtask stress [--quick]`: the main job: each crate's scenarios, then a
//!   repository indexer through the users' scenarios, with a summary, a JSON report
//!   and a chart; exits non-zero on any leak, saying which and by how much.
//! - `cargo xtask ci`: the whole gate (what `.ci/run` runs).
//! - `cargo xtask hosts`: the built test binaries again, as an unprivileged user and
//!   with cgroup v2 hidden (needs root).
//! - `cargo xtask compat`: the published crates on their MSRV, the portable ones for
//!   macOS and FreeBSD, `cargo package` and the docs.
//! - `cargo xtask bench`: the criterion benches side by side with their peers; rewrites
//!   `BENCHMARKS.md`.

mod bench;
mod ci;
mod compat;
mod hosts;
mod stress;
#[cfg(test)]
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
{stress}
  ci                 fmt check, clippy -D warnings, cargo test --workspace, hosts,
                     compat, stress --quick
  hosts              the built test binaries again: as `nobody`, and with cgroup v2
                     hidden (unshare -m); needs root
  compat             the published crates on their MSRV (all features), the portable
                     ones for macOS and FreeBSD, cargo package, docs -D warnings
                     (--no-verify: package without building the packaged sources)
  bench              run the benches in benches/ and rewrite BENCHMARKS.md
                     (--collect-only: rewrite it from target/criterion, no run)";

/// The usage text, with `stress`'s options from its module.
fn usage() -> String {
    USAGE.replace("{stress}", stress::USAGE)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("stress") => stress::main(rest),
        Some(stress::CHILD_COMMAND) => stress::child_main(rest),
        Some("ci") => ci::main(),
        Some("hosts") => hosts::main(),
        Some("compat") => compat::main(rest),
        Some("bench") => bench::main(rest),
        Some("-h" | "--help" | "help") => {
            println!("{}", usage());
            Ok(true)
        }
        _ => {
            eprintln!("{}", usage());
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}
