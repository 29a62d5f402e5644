//! Workspace rules worth enforcing, checked as ordinary tests (rust-analyzer's habit).

use std::fs;
use std::path::{Path, PathBuf};

use crate::workspace_root;

fn crates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(workspace_root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    dirs.sort();
    dirs
}

fn name(krate: &Path) -> String {
    krate.file_name().unwrap().to_string_lossy().into_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_crate_exists() {
    let names: Vec<String> = crates().iter().map(|c| name(c)).collect();
    let expected = [
        "bounded-stream",
        "leakproof",
        "leakproof-stress",
        "mem-watch",
        "proc-reaper",
        "rate-gate",
        "scoped-temp",
        "ttl-cache",
    ];
    assert_eq!(names, expected);
}

#[test]
fn library_code_never_prints() {
    let mut offenders = Vec::new();
    for krate in crates() {
        let mut files = Vec::new();
        rust_files(&krate.join("src"), &mut files);
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                if ["println!", "eprintln!", "print!(", "eprint!(", "dbg!("]
                    .iter()
                    .any(|m| code.contains(m))
                {
                    offenders.push(format!("{}:{}: {}", file.display(), i + 1, code));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "library code prints (use tracing):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn unsafe_library_code_lives_in_one_file() {
    // The one exception to `unsafe_code = "deny"`: proc-reaper's `pre_exec` (ARCHITECTURE.md).
    let allowed = Path::new("crates/proc-reaper/src/spawn.rs");
    // Spelled in pieces, so this file does not match itself.
    let needles = [
        concat!("unsafe", " {"),
        concat!("unsafe", " fn"),
        concat!("allow(unsafe", "_code)"),
    ];
    // Library code; a test may need it for a counting allocator (bounded-stream's).
    let mut files = Vec::new();
    for krate in crates() {
        rust_files(&krate.join("src"), &mut files);
    }
    let mut offenders = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let found = text.lines().any(|line| {
            let code = line.trim_start();
            !code.starts_with("//") && needles.iter().any(|n| code.contains(n))
        });
        if found && !file.ends_with(allowed) {
            offenders.push(file.display().to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe code outside {}: {offenders:?}",
        allowed.display()
    );
}

#[test]
fn every_crate_states_its_guarantee_and_limits() {
    for krate in crates() {
        let lib = fs::read_to_string(krate.join("src/lib.rs")).unwrap();
        assert!(
            lib.starts_with("//!"),
            "{}: lib.rs must open with crate docs",
            name(&krate)
        );
        assert!(
            lib.contains("# What this does not protect against"),
            "{}: crate docs need a \"What this does not protect against\" section",
            name(&krate)
        );
    }
}

#[test]
fn every_crate_uses_the_workspace_lints() {
    for krate in crates().into_iter().chain([
        workspace_root().join("xtask"),
        workspace_root().join("harness"),
        workspace_root().join("benches"),
    ]) {
        let manifest = fs::read_to_string(krate.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("[lints]\nworkspace = true"),
            "{}: add [lints] workspace = true",
            krate.display()
        );
    }
}

/// The links between our crates that ARCHITECTURE.md allows (normal dependencies; tests
/// may use anything). Everything else is a focused crate standing alone.
const ALLOWED_LINKS: &[(&str, &[&str])] = &[
    // Spilling a large body to disk (feature `spill`).
    ("bounded-stream", &["scoped-temp"]),
    // Output capture: the tail buffer and the capped line scanner.
    ("proc-reaper", &["bounded-stream"]),
    // The torture starts each command through a reaper; the soak judges a trend.
    ("leakproof-stress", &["mem-watch", "proc-reaper"]),
    // The umbrella re-exports them all.
    (
        "leakproof",
        &[
            "bounded-stream",
            "mem-watch",
            "proc-reaper",
            "rate-gate",
            "scoped-temp",
            "ttl-cache",
        ],
    ),
];

/// The names a manifest lists in its normal dependency tables (`[dependencies]` and
/// `[target.'...'.dependencies]`), not its dev- or build-dependencies.
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]"
                || (line.starts_with("[target.") && line.ends_with(".dependencies]"));
            continue;
        }
        if inside && let Some((key, _)) = line.split_once('=') {
            let key = key.trim().trim_end_matches(".workspace");
            if !key.is_empty() && !key.starts_with('#') {
                names.push(key.to_string());
            }
        }
    }
    names
}

#[test]
fn crates_link_only_as_architecture_allows() {
    let ours: Vec<String> = crates().iter().map(|c| name(c)).collect();
    for krate in crates() {
        let me = name(&krate);
        let manifest = fs::read_to_string(krate.join("Cargo.toml")).unwrap();
        let allowed = ALLOWED_LINKS
            .iter()
            .find(|(from, _)| *from == me)
            .map_or(&[][..], |(_, to)| *to);
        for dep in normal_dependencies(&manifest) {
            if ours.contains(&dep) {
                assert!(
                    allowed.contains(&dep.as_str()),
                    "{me} depends on {dep}; ARCHITECTURE.md and ALLOWED_LINKS in tidy.rs \
                     list the links between our crates"
                );
            }
        }
    }
}

#[test]
fn our_crates_are_declared_without_default_features() {
    let root = fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    for krate in crates() {
        let me = name(&krate);
        let line = root
            .lines()
            .find(|l| l.starts_with(&format!("{me} = ")))
            .unwrap_or_else(|| panic!("{me} missing from [workspace.dependencies]"));
        assert!(
            line.contains("default-features = false"),
            "{me} in [workspace.dependencies] must say `default-features = false`: each \
             user asks for the features it needs"
        );
    }
}

#[test]
fn the_link_parser_sees_target_tables_and_skips_dev_ones() {
    let manifest = "[dependencies]\na.workspace = true\nb = { workspace = true }\n\
                    [dev-dependencies]\nc = \"1\"\n\
                    [target.'cfg(unix)'.dependencies]\nd = \"1\"\n";
    assert_eq!(normal_dependencies(manifest), ["a", "b", "d"]);
}

#[test]
fn docs_name_every_crate() {
    let root = workspace_root();
    for doc in ["README.md", "ARCHITECTURE.md"] {
        let text = fs::read_to_string(root.join(doc)).unwrap();
        for krate in crates() {
            let n = name(&krate);
            let named = text.contains(&format!("`{n}`")) || text.contains(&format!("`crates/{n}`"));
            assert!(named, "{doc} does not mention `{n}`");
        }
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let root = workspace_root();
    let ci = fs::read_to_string(root.join(".ci/run")).unwrap();
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    for command in ["cargo test --workspace", "cargo xtask stress"] {
        assert!(readme.contains(command), "README.md must show `{command}`");
    }
    assert!(
        ci.contains("cargo test --workspace"),
        ".ci/run must run the README's test command"
    );
    for step in crate::ci::STEPS {
        assert!(
            ci.contains(&step.join(" ")),
            ".ci/run must run `{}` like `cargo xtask ci`",
            step.join(" ")
        );
    }
}

#[test]
fn crates_the_no_cgroup_run_skips_read_no_cgroup() {
    for krate in crate::hosts::CGROUP_FREE {
        let dir = workspace_root().join("crates").join(krate);
        let mut files = Vec::new();
        for sub in ["src", "tests"] {
            if dir.join(sub).is_dir() {
                rust_files(&dir.join(sub), &mut files);
            }
        }
        assert!(!files.is_empty(), "{krate} has no sources");
        for file in files {
            let text = fs::read_to_string(&file).unwrap().to_lowercase();
            assert!(
                !text.contains("cgroup"),
                "{} mentions cgroups: take {krate} out of hosts::CGROUP_FREE",
                file.display()
            );
        }
    }
}
