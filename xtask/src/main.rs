//! `cargo xtask`: the workspace's gate, in the style of rust-analyzer's xtask: one
//! binary, few dependencies, plain subcommands.
//!
//! - `cargo xtask stress [--quick]`: the main job: runs the `harness` package (each
//!   crate's scenarios, then a repository indexer through the users' scenarios, with a
//!   summary, a JSON and a JUnit report and a chart; non-zero on any leak).
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
#[cfg(test)]
mod tidy;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  stress [OPTIONS]   the main job: the stress harness (the `harness` package), its
                     report, non-zero exit on a leak; `cargo xtask stress --help`
                     lists its options (--quick, --only, --ops, --out, ...);
                     --after-test runs the harness binary `cargo test --workspace`
                     built instead of building it again (the gate's last step)
  ci                 fmt check, clippy -D warnings, cargo test --workspace, hosts,
                     compat, stress --quick
  hosts              the built test binaries again: as `nobody`, and with cgroup v2
                     hidden (unshare -m); needs root
  compat             the published crates on their MSRV (all features), the portable
                     ones for macOS and FreeBSD, cargo package, docs -D warnings
                     (--no-verify: package without building the packaged sources)
  bench              run the benches in benches/ 3 times (--runs N) and rewrite
                     BENCHMARKS.md with each ratio's median and range over the runs
                     (-- ARGS: passed to criterion, e.g. a filter: then only the
                     rows it measured are replaced, the rest kept, and a line says
                     so; --collect-only: rewrite it from target/criterion, one run,
                     no bench run)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("stress") => stress(rest),
        Some("ci") => ci::main(),
        Some("hosts") => hosts::main(),
        Some("compat") => compat::main(rest),
        Some("bench") => bench::main(rest),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(true)
        }
        _ => {
            eprintln!("{USAGE}");
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

/// `cargo xtask stress ARGS`: builds and runs the harness package with `stress ARGS`
/// (in the same profile as xtask itself), and passes its verdict on.
///
/// `--after-test` (the gate's last step, right after `cargo test --workspace`): runs
/// the harness binary that the test build made for the harness's own tests, instead of
/// building it again. `cargo run --package harness` resolves features for the harness
/// alone, so it rebuilt hyper, h2, serde and about 30 more crates that the test build
/// had built with the workspace's features (56 s of a cold CI run on 2 cores). Without
/// that binary it builds as usual.
fn stress(args: &[String]) -> Result<bool> {
    let after_test = args.iter().any(|a| a == "--after-test");
    let args: Vec<&String> = args.iter().filter(|a| *a != "--after-test").collect();
    if after_test {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        let exe = target.join("debug").join("harness");
        if exe.is_file() {
            let status = Command::new(&exe)
                .current_dir(workspace_root())
                .arg("stress")
                .args(&args)
                .status()?;
            return Ok(status.success());
        }
        println!(
            "xtask: --after-test: {} was not built; building it",
            exe.display()
        );
    }
    let status = cargo()
        .args(["run", "--package", "harness", "--", "stress"])
        .args(&args)
        .status()?;
    Ok(status.success())
}

/// `cargo` (rustup's proxy, so `+toolchain` works), run from the workspace root without
/// the variables `cargo run` set for xtask itself. A build script that watches one of
/// them runs again when it changes, and everything above it is rebuilt: ring's watches
/// `CARGO_MANIFEST_DIR`, so each step after `cargo test` rebuilt ring, rustls and the
/// crates over them (57 s of a cold CI run on 2 cores).
pub(crate) fn cargo() -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        let set_by_cargo_run = name.to_str().is_some_and(|name| {
            name.starts_with("CARGO_PKG_")
                || matches!(
                    name,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_MANIFEST_LINKS"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                )
        });
        if set_by_cargo_run {
            command.env_remove(name);
        }
    }
    command
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}
