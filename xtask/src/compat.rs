//! `cargo xtask compat`: what our users build with, beyond this machine's toolchain:
//!
//! - **MSRV**: every published crate, all features, on the `rust-version` the root
//!   manifest declares (`cargo +<msrv> check --lib --all-features`);
//! - **other platforms**: the portable crates for macOS and FreeBSD (`cargo check
//!   --target`, pure-Rust features: zstd's C library and ring's C and assembly need a
//!   cross compiler), and proc-reaper refusing them with its `compile_error!`;
//! - **a build without TLS**: leakproof without `rustls` compiles (the platform checks
//!   build it so); its refusal of an `https` base is a unit test in every build;
//! - **publishable**: `cargo package` of every published crate (built from the packaged
//!   sources), and their docs with warnings denied (broken links included).
//!
//! It installs what a fresh toolchain lacks through rustup (the MSRV toolchain, minimal
//! profile, and the two targets' standard libraries).

use std::process::Command;

use crate::{Result, cargo, workspace_root};

/// The crates we publish.
const PUBLISHED: &[&str] = &[
    "scoped-temp",
    "bounded-stream",
    "rate-gate",
    "proc-reaper",
    "mem-watch",
    "ttl-cache",
    "leakproof",
    "leakproof-stress",
];

/// Targets the portable crates must build for.
const TARGETS: &[&str] = &["x86_64-apple-darwin", "x86_64-unknown-freebsd"];

/// Each portable crate with its pure-Rust features (every feature but C-backed codecs),
/// checked without default features.
const PORTABLE: &[(&str, &str)] = &[
    ("scoped-temp", "metrics"),
    (
        "bounded-stream",
        "http-body,client,gzip,deflate,brotli,regex,spill,metrics",
    ),
    ("rate-gate", "http,tower,redis,quanta,metrics"),
    ("ttl-cache", "metrics"),
    ("mem-watch", "metrics"),
    // The umbrella's defaults but `rustls` (ring builds C and assembly for its target),
    // and every pure-Rust extra; proc-reaper is a Linux-only dependency.
    (
        "leakproof",
        "temp,stream,gate,proc,mem,cache,client,json,serde,gzip,http-body,tower,deflate,\
         brotli,regex,spill,rate-headers,redis,quanta,metrics,endpoint",
    ),
];

/// What proc-reaper's `compile_error!` says off Linux.
const PROC_REAPER_REFUSAL: &str = "proc-reaper builds on Linux only";

/// `args`: `--no-verify` packages without building the packaged sources.
pub fn main(args: &[String]) -> Result<bool> {
    let verify = match args {
        [] => true,
        [flag] if flag == "--no-verify" => false,
        other => return Err(format!("compat: unknown arguments {other:?}").into()),
    };
    let msrv = msrv()?;
    let mut ok = true;

    // One cargo run per toolchain or target (each crate named with `-p`): the
    // dependencies are checked once, not once per crate.
    println!("==> MSRV {msrv}: every published crate, all features");
    ok &= run(rustup(&[
        "toolchain",
        "install",
        &msrv,
        "--profile",
        "minimal",
    ]))?;
    let mut check = toolchain_cargo(&msrv);
    check.args(["check", "--lib", "--all-features"]);
    for krate in PUBLISHED {
        check.args(["-p", krate]);
    }
    ok &= run(check)?;

    println!("==> other platforms: {}", TARGETS.join(", "));
    let mut add = rustup(&["target", "add"]);
    add.args(TARGETS);
    ok &= run(add)?;
    let features: Vec<String> = PORTABLE
        .iter()
        .flat_map(|(krate, features)| {
            features
                .split(',')
                .filter(|f| !f.is_empty())
                .map(move |f| format!("{krate}/{f}"))
        })
        .collect();
    // Both targets in one cargo run: their units build side by side on the cores.
    let mut check = cargo();
    check.args(["check", "--lib", "--no-default-features"]);
    for target in TARGETS {
        check.args(["--target", target]);
    }
    for (krate, _) in PORTABLE {
        check.args(["-p", krate]);
    }
    check.args(["--features", &features.join(",")]);
    ok &= run(check)?;
    for target in TARGETS {
        ok &= proc_reaper_refuses(target)?;
    }

    println!("==> publishable: cargo package, docs with warnings denied");
    // Packaged, and built from the packaged sources unless `--no-verify` is given (CI:
    // that build is a cold debug build of every dependency, minutes it does not have).
    // Verified in a target directory of its own, made afresh: cargo takes a registry
    // crate's build as final for its version, so a build of an earlier packaging of the
    // same version would be reused (see `clear_stale_package_sources`).
    clear_stale_package_sources();
    let verify_dir = workspace_root().join("target/package-verify");
    let _ = std::fs::remove_dir_all(&verify_dir);
    let mut package = cargo();
    package
        .args(["package", "--allow-dirty"])
        .env("CARGO_TARGET_DIR", &verify_dir);
    if !verify {
        package.arg("--no-verify");
    }
    for krate in PUBLISHED {
        package.args(["-p", krate]);
    }
    ok &= run(package)?;
    let mut doc = cargo();
    doc.args(["doc", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings");
    for krate in PUBLISHED {
        doc.args(["-p", krate]);
    }
    ok &= run(doc)?;
    Ok(ok)
}

/// Removes cargo's extracted copies of our packaged crates from earlier runs.
///
/// `cargo package` verifies a crate that depends on another of ours against the other's
/// freshly packaged `.crate`, through a local registry whose sources cargo extracts
/// under `$CARGO_HOME/registry/src/-<hash>/<name>-<version>` and reuses while the
/// version is unchanged: a later run with new code but the same version would verify
/// against the old sources (seen here: leakproof failed against a stale
/// bounded-stream). Only those directories of our crates are removed.
fn clear_stale_package_sources() {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(sources) = home.map(|h| h.join("registry/src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&sources) else {
        return;
    };
    for registry in registries.flatten() {
        // Local registries are named by their hash alone: `-<hash>`.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(extracted) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for source in extracted.flatten() {
            let name = source.file_name().to_string_lossy().into_owned();
            let ours = PUBLISHED
                .iter()
                .any(|krate| name.strip_prefix(krate).is_some_and(|v| v.starts_with('-')));
            if ours {
                let _ = std::fs::remove_dir_all(source.path());
            }
        }
    }
}

/// The workspace's `rust-version`.
fn msrv() -> Result<String> {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml"))?;
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or_else(|| "no rust-version in the root Cargo.toml".into())
}

/// `cargo +<toolchain>`: rustup's proxy picks the toolchain; the variables that would
/// pin this run's toolchain instead are removed.
fn toolchain_cargo(toolchain: &str) -> Command {
    let mut command = cargo();
    command
        .arg(format!("+{toolchain}"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC");
    command
}

fn rustup(args: &[&str]) -> Command {
    let mut command = Command::new("rustup");
    command.args(args);
    command
}

/// Runs `command`, echoing it; `false` when it fails.
fn run(mut command: Command) -> Result<bool> {
    println!("--> {}", describe(&command));
    let status = command.status()?;
    if !status.success() {
        println!("--> failed ({status}): {}", describe(&command));
    }
    Ok(status.success())
}

/// proc-reaper must not build for `target`, and must say why.
fn proc_reaper_refuses(target: &str) -> Result<bool> {
    let mut check = cargo();
    check.args(["check", "--lib", "-p", "proc-reaper", "--target", target]);
    println!("--> {} (must fail, naming the platform)", describe(&check));
    let output = check.output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let refused = !output.status.success() && stderr.contains(PROC_REAPER_REFUSAL);
    if !refused {
        println!("--> proc-reaper did not refuse {target} with its compile_error!:\n{stderr}");
    }
    Ok(refused)
}

fn describe(command: &Command) -> String {
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        args.join(" ")
    )
}
