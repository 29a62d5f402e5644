//! `scoped-temp` scenarios: create/write/remove cycles with injected errors and panics,
//! and a SIGKILLed process whose leftovers must be reclaimed.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use scoped_temp::{AtomicFile, Builder, Error, NamedTempFile};

use super::{CHILD_COMMAND, Profile, Scenario, open_fds};
use crate::Result;

const INJECTED_PANIC: &str = "stress: injected panic";

pub async fn scenarios(profile: Profile) -> Result<Vec<Scenario>> {
    Ok(vec![cycles(profile).await?, killed_run(profile)?])
}

/// What one cycle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Error,
    Panic,
}

/// The fault for cycle `i`: 10% errors, 10% panics, spread by a fixed-seed hash so a
/// run is reproducible.
fn fault_for(i: usize) -> Fault {
    match super::spread(i as u64, 10) {
        0 => Fault::Error,
        1 => Fault::Panic,
        _ => Fault::None,
    }
}

/// One operation: a temp dir with a 4 KiB file, five open handles, an atomic index
/// write, and a named temp file beside it; then the injected fault, if any.
async fn operation(root: PathBuf, fault: Fault) -> Result<(), Error> {
    let scratch = NamedTempFile::new_in(&root)?;
    Builder::new()
        .root(&root)
        .prefix("op-")
        .with_temp_dir(|dir| async move {
            let io = |path: &Path| {
                let path = path.to_path_buf();
                move |source| Error::Write {
                    path,
                    written: 0,
                    source,
                }
            };
            let data = dir.join("data.bin");
            std::fs::write(&data, [0x5a; 4096]).map_err(io(&data))?;
            let handles: Vec<std::fs::File> = (0..5)
                .map(|i| std::fs::File::create(dir.join(format!("h{i}"))).map_err(io(&dir)))
                .collect::<Result<_, _>>()?;
            let mut index = AtomicFile::new(dir.join("index"))?;
            index.write_bytes(b"data.bin 4096\n")?;
            tokio::task::yield_now().await;
            match fault {
                Fault::Error => return Err(Error::Vanished { path: dir }),
                Fault::Panic => std::panic::panic_any(INJECTED_PANIC),
                Fault::None => index.commit()?,
            }
            drop(handles);
            Ok(())
        })
        .await?;
    scratch.close().await
}

/// Everything under `root` but run directories and their owner locks.
fn leftovers(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return usize::MAX;
    };
    let mut n = 0;
    for entry in entries.filter_map(|e| e.ok()) {
        let is_run = entry
            .file_name()
            .to_string_lossy()
            .starts_with(".scoped-temp-run-");
        if !is_run {
            n += 1;
            continue;
        }
        let inside = std::fs::read_dir(entry.path())
            .map(|d| d.count())
            .unwrap_or(0);
        n += inside.saturating_sub(1);
    }
    n
}

async fn cycles(profile: Profile) -> Result<Scenario> {
    super::quiet_panics(INJECTED_PANIC);
    let total = profile.pick(1000, 200);
    let in_flight = 16;
    let root_guard = tempfile::Builder::new()
        .prefix("leakproof-stress-")
        .tempdir()?;
    let root = root_guard.path().to_path_buf();
    let fds_before = open_fds();
    let live_before = scoped_temp::live_count();

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let (mut ok, mut errors, mut panics, mut unexpected) = (0, 0, 0, Vec::new());
    let mut account =
        |joined: Result<(Fault, Result<(), Error>), tokio::task::JoinError>| match joined {
            Ok((_, Ok(()))) => ok += 1,
            Ok((Fault::Error, Err(Error::Vanished { .. }))) => errors += 1,
            Ok((_, Err(e))) => unexpected.push(e.to_string()),
            Err(e) if e.is_panic() => panics += 1,
            Err(e) => unexpected.push(e.to_string()),
        };
    for i in 0..total {
        if tasks.len() >= in_flight
            && let Some(joined) = tasks.join_next().await
        {
            account(joined);
        }
        let fault = fault_for(i);
        let root = root.clone();
        tasks.spawn(async move { (fault, operation(root, fault).await) });
    }
    while let Some(joined) = tasks.join_next().await {
        account(joined);
    }
    let elapsed = started.elapsed();

    let live_after = scoped_temp::live_count() - live_before;
    let left = leftovers(&root);
    let removal = tokio::task::spawn_blocking(scoped_temp::remove_all).await?;
    let root_after = std::fs::read_dir(&root)
        .map(|d| d.count())
        .unwrap_or(usize::MAX);
    let fds_after = open_fds();

    let mut s = Scenario::new(format!(
        "scoped-temp: {total} operations (temp dir, 4 KiB write, 5 handles, atomic write, temp file), 20% faults"
    ));
    s.note(format!(
        "{ok} completed, {errors} failed on purpose, {panics} panicked on purpose; {in_flight} in flight; \
         {:.2} s ({:.0} us per operation)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / total as f64
    ));
    for e in unexpected.iter().take(3) {
        s.note(format!("unexpected: {e}"));
    }
    s.check(
        "every operation ended as injected",
        unexpected.is_empty(),
        format!("{} unexpected", unexpected.len()),
    );
    s.check(
        "faults were injected (errors and panics)",
        errors > 0 && panics > 0,
        format!("{errors} errors, {panics} panics"),
    );
    s.check(
        "live() back to 0 after the run",
        live_after == 0,
        format!("{live_after} live"),
    );
    s.check(
        "entries left under the root",
        left == 0,
        format!("{left} (want 0)"),
    );
    s.check(
        "remove_all() then leaves the root empty",
        removal.is_clean() && root_after == 0,
        format!(
            "{} run dir(s) removed, {root_after} entries left",
            removal.run_dirs
        ),
    );
    s.check(
        "open fds back to baseline",
        fds_after == fds_before,
        format!("{fds_before} -> {fds_after}"),
    );
    Ok(s)
}

/// A second process creates entries and an uncommitted atomic write, is SIGKILLed, and
/// `sweep_orphans` must reclaim exactly what it left, while this process's run survives.
fn killed_run(profile: Profile) -> Result<Scenario> {
    let dirs = profile.pick(50, 10);
    let root_guard = tempfile::Builder::new()
        .prefix("leakproof-stress-kill-")
        .tempdir()?;
    let root = root_guard.path();
    let target = root.join("index.json");
    std::fs::write(&target, "committed")?;
    let ours = scoped_temp::TempDir::new_in(root)?;

    let mut child = Command::new(std::env::current_exe()?)
        .args([CHILD_COMMAND, "temp"])
        .arg(root)
        .arg(dirs.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no child stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("stress child said {line:?} instead of ready").into());
    }
    let pid = child.id();
    child.kill()?; // SIGKILL: no destructor, no handler runs.
    child.wait()?;
    let before = std::fs::read_dir(root)?.count();

    let report = scoped_temp::sweep_orphans(root)?;
    let after: Vec<String> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let ours_alive = ours.path().exists();
    drop(ours);

    let mut s = Scenario::new(format!(
        "scoped-temp: pid {pid} SIGKILLed holding {dirs} temp dirs and an uncommitted atomic write"
    ));
    s.note(format!(
        "root had {before} entries after the kill; sweep removed {} ({} entries, {} bytes), spared {} live",
        report.removed.len(),
        report.entries,
        report.bytes_freed,
        report.live_skipped
    ));
    s.check(
        "sweep reclaimed every entry the killed run left",
        report.entries == dirs + 1,
        format!("{} of {}", report.entries, dirs + 1),
    );
    s.check(
        "bytes freed match what was written",
        report.bytes_freed == dirs as u64 * 4096 + 9,
        format!("{} bytes", report.bytes_freed),
    );
    s.check(
        "this process's live run was spared",
        ours_alive && report.live_skipped == 1,
        format!("alive: {ours_alive}"),
    );
    s.check(
        "the atomic write's target kept its old content",
        std::fs::read_to_string(&target).ok().as_deref() == Some("committed"),
        "index.json = \"committed\"",
    );
    s.check(
        "nothing else left",
        after.len() == 2 && report.errors.is_empty(),
        format!("{after:?}"),
    );
    Ok(s)
}

/// The child: `stress-child temp <root> <dirs>`. Creates the entries, says `ready`,
/// then waits to be killed.
pub fn child(args: &[String]) -> Result<bool> {
    let [root, dirs] = args else {
        return Err("usage: stress-child temp <root> <dirs>".into());
    };
    let root = PathBuf::from(root);
    let dirs: usize = dirs.parse()?;
    let mut held = Vec::new();
    for _ in 0..dirs {
        let dir = Builder::new().root(&root).prefix("job-").tempdir()?;
        std::fs::write(dir.path().join("chunk"), [1u8; 4096])?;
        held.push(dir);
    }
    let mut atomic = AtomicFile::new(root.join("index.json"))?;
    atomic.write_bytes(b"half-done")?;
    println!("ready");
    std::io::stdout().flush()?;
    std::io::stdin().read_to_end(&mut Vec::new())?;
    Ok(true)
}
