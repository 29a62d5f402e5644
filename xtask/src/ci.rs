//! `cargo xtask ci`: the gate `.ci/run` also runs, step for step.

use std::process::Command;

use crate::{Result, workspace_root};

/// The gate's steps. `.ci/run` lists the same commands.
pub const STEPS: &[&[&str]] = &[
    &["cargo", "fmt", "--all", "--", "--check"],
    &[
        "cargo",
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ],
    &["cargo", "test", "--workspace"],
];

pub fn main() -> Result<bool> {
    for step in STEPS {
        println!("==> {}", step.join(" "));
        let mut command = match step[0] {
            "cargo" => crate::cargo(),
            program => Command::new(program),
        };
        let status = command
            .args(&step[1..])
            .current_dir(workspace_root())
            .status()?;
        if !status.success() {
            println!("==> failed: {}", step.join(" "));
            return Ok(false);
        }
    }
    println!("==> cargo xtask hosts");
    if !crate::hosts::main()? {
        println!("==> failed: cargo xtask hosts");
        return Ok(false);
    }
    println!("==> cargo xtask compat --no-verify");
    if !crate::compat::main(&["--no-verify".to_string()])? {
        println!("==> failed: cargo xtask compat");
        return Ok(false);
    }
    println!("==> cargo xtask stress --quick --after-test");
    crate::stress(&["--quick".to_string(), "--after-test".to_string()])
}
