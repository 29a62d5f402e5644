//! What the CLI tests share: the binary run in a directory of its own, and its output.

use std::path::Path;
use std::process::{Command, Output};

/// The `leakproof-stress` binary, its working directory `dir` and its `TMPDIR`
/// `dir/tmp` (created), with no `GITHUB_STEP_SUMMARY`.
pub fn stress_command(dir: &Path) -> Command {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_leakproof-stress"));
    command
        .current_dir(dir)
        .env("TMPDIR", &tmp)
        .env_remove("GITHUB_STEP_SUMMARY");
    command
}

/// Its stdout then its stderr, as text.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
