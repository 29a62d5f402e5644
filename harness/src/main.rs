//! The stress harness, the project's main job, run by `cargo xtask stress`: each
//! crate's scenarios, then a repository indexer through the users' scenarios, judged
//! from outside with `leakproof-stress`'s baselines and reported as its cases (a
//! summary, `report.json`, `junit.xml` and a chart); it exits non-zero on any leak,
//! saying which and by how much.
//!
//! ```text
//! harness stress [options]           what `cargo xtask stress` runs
//! harness stress-child <scenario>    a second process for a scenario to signal or kill
//! ```

mod stress;

use std::path::PathBuf;
use std::process::ExitCode;

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("stress") => stress::main(rest),
        Some(stress::CHILD_COMMAND) => stress::child_main(rest),
        Some("-h" | "--help" | "help") => {
            println!("usage: cargo xtask stress [options]\n\n{}", stress::USAGE);
            Ok(true)
        }
        _ => {
            eprintln!("usage: cargo xtask stress [options]\n\n{}", stress::USAGE);
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("stress: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the harness lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}
