//! Orphan reclamation across real processes: a helper (this test binary re-executed)
//! creates entries; one helper is SIGKILLed, another stays alive; the sweep must remove
//! exactly the dead one's entries.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scoped_temp::{AtomicFile, Builder, NamedTempFile, SweepOptions};

const MODE: &str = "SCOPED_TEMP_TEST_HELPER";
const ROOT: &str = "SCOPED_TEMP_TEST_ROOT";

/// Not a test: the body of the helper process. It does nothing unless spawned by
/// `spawn_helper`, which sets `MODE`.
#[test]
#[ignore = "helper process, run by the other tests in this file"]
fn helper() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let root = PathBuf::from(std::env::var(ROOT).unwrap());
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
    match mode.as_str() {
        "dirs" => {
            for i in 0..3 {
                let dir = Builder::new().root(&root).prefix("job-").tempdir().unwrap();
                fs::write(dir.path().join("data"), vec![i as u8; 1000]).unwrap();
                println!("@@entry {}", dir.path().display());
                held.push(Box::new(dir));
            }
            let mut file = NamedTempFile::new_in(&root).unwrap();
            std::io::Write::write_all(&mut file, &[1u8; 500]).unwrap();
            println!("@@entry {}", file.path().display());
            held.push(Box::new(file));
        }
        "atomic" => {
            let mut file = AtomicFile::new(root.join("data.txt")).unwrap();
            file.write_bytes(b"new content, never committed").unwrap();
            println!("@@entry {}", file.temp_path().display());
            held.push(Box::new(file));
        }
        "writer" => {
            println!("@@ready");
            for round in 0u64.. {
                let dir = Builder::new().root(&root).prefix("job-").tempdir().unwrap();
                fs::write(dir.path().join("data"), round.to_le_bytes()).unwrap();
                let mut batch = scoped_temp::AtomicBatch::new();
                let backup = scoped_temp::AtomicOptions::new().backup(root.join("a.txt.bak"));
                let text = format!("round {round}");
                batch
                    .add_with(root.join("a.txt"), &backup)
                    .unwrap()
                    .write_bytes(text.as_bytes())
                    .unwrap();
                batch
                    .add(root.join("b.txt"))
                    .unwrap()
                    .write_bytes(text.as_bytes())
                    .unwrap();
                batch.commit().unwrap();
                drop(dir);
                println!("@@round {round}");
            }
        }
        other => panic!("unknown helper mode {other}"),
    }
    println!("@@ready");
    // Hold everything until the parent closes stdin (or kills us).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

struct Helper {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    entries: Vec<PathBuf>,
}

fn spawn_helper(mode: &str, root: &Path) -> Helper {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env(ROOT, root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // libtest prints "test helper ... " without a newline, so markers may not start a line.
    let mut entries = Vec::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "helper ended before it was ready"
        );
        if let Some((_, path)) = line.trim_end().split_once("@@entry ") {
            entries.push(PathBuf::from(path));
        } else if line.contains("@@ready") {
            break;
        }
    }
    Helper {
        child,
        stdout,
        entries,
    }
}

impl Helper {
    fn kill9(mut self) -> Vec<PathBuf> {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        self.entries
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        // Read libtest's closing lines, or the helper dies of EPIPE writing them.
        self.stdout.read_to_end(&mut Vec::new()).unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

#[test]
fn sweep_reclaims_a_killed_runs_entries_and_spares_a_live_one() {
    let root = tempfile::tempdir().unwrap();
    let live = spawn_helper("dirs", root.path());
    let killed = spawn_helper("dirs", root.path()).kill9();
    let ours = Builder::new().root(root.path()).tempdir().unwrap();
    for path in live.entries.iter().chain(&killed) {
        assert!(
            path.exists(),
            "{} should exist before the sweep",
            path.display()
        );
    }

    let report = scoped_temp::sweep_orphans(root.path()).unwrap();

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.removed.len(),
        1,
        "exactly the killed run's directory"
    );
    assert_eq!(report.entries, 4);
    assert_eq!(report.bytes_freed, 3 * 1000 + 500);
    assert_eq!(
        report.live_skipped, 2,
        "the live helper's run and this process's"
    );
    for path in &killed {
        assert!(
            !path.exists(),
            "{} should have been reclaimed",
            path.display()
        );
    }
    for path in &live.entries {
        assert!(
            path.exists(),
            "{} belongs to a live process",
            path.display()
        );
    }
    assert!(ours.path().exists());

    // A normal exit drops the helper's entries, and its run directory goes with its
    // last thread: nothing is left for a sweep.
    live.finish();
    let report = scoped_temp::sweep_orphans(root.path()).unwrap();
    assert_eq!((report.removed.len(), report.entries), (0, 0));
    let names: Vec<_> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names, vec![ours.path().parent().unwrap().to_path_buf()]);
}

#[test]
fn atomic_write_killed_before_commit_leaves_the_old_file() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("data.txt");
    fs::write(&target, "old content").unwrap();
    let temps = spawn_helper("atomic", root.path()).kill9();
    assert_eq!(fs::read_to_string(&target).unwrap(), "old content");
    assert!(
        temps[0].exists(),
        "the killed writer's temp file is left behind"
    );

    let report = scoped_temp::sweep_orphans(root.path()).unwrap();
    assert_eq!(report.removed, temps);
    assert_eq!(
        report.bytes_freed,
        "new content, never committed".len() as u64
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "old content");
    assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
}

#[test]
fn sweep_spares_a_live_writers_atomic_temp_file() {
    let root = tempfile::tempdir().unwrap();
    let helper = spawn_helper("atomic", root.path());
    let report = scoped_temp::sweep_orphans(root.path()).unwrap();
    assert_eq!((report.removed.len(), report.live_skipped), (0, 1));
    assert!(helper.entries[0].exists());
    helper.finish();
    // Dropped uncommitted at exit: the temp file went with it.
    assert!(!root.path().join("data.txt").exists());
    assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
}

/// What a SIGKILL during set-up leaves (a run directory before its lock, one whose lock
/// is free, a temp file before its lock) belongs to no one once no lock is held on it:
/// the first sweep after the death reclaims it, whatever its age.
#[test]
fn what_a_kill_during_setup_leaves_goes_with_the_first_sweep() {
    let root = tempfile::tempdir().unwrap();
    let no_lock = root.path().join(".scoped-temp-pending-abc123");
    fs::create_dir(&no_lock).unwrap();
    fs::write(no_lock.join("x"), "12345").unwrap();
    let free_lock = root.path().join(".scoped-temp-pending-def456");
    fs::create_dir(&free_lock).unwrap();
    fs::write(free_lock.join(".owner.lock"), "").unwrap();
    let pending_file = root.path().join(".data.txt.xyz789.scoped-temp-new");
    fs::write(&pending_file, "123").unwrap();
    let unrelated = root.path().join("unrelated.txt");
    fs::write(&unrelated, "not ours").unwrap();

    let report = scoped_temp::sweep_orphans(root.path()).unwrap();
    assert_eq!(report.removed.len(), 3, "{report:?}");
    assert_eq!(report.bytes_freed, 8);
    assert!(!no_lock.exists() && !free_lock.exists() && !pending_file.exists());
    assert!(
        unrelated.exists(),
        "entries not named by this crate are never touched"
    );
    let left: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the unrelated file: {left:?}");
}

/// A pending grace, where asked for (a root shared by hosts `flock` does not reach),
/// spares entries not owned by a lock until they are that old.
#[test]
fn a_pending_grace_spares_unlocked_entries_until_they_are_old() {
    let root = tempfile::tempdir().unwrap();
    let pending_dir = root.path().join(".scoped-temp-pending-abc123");
    fs::create_dir(&pending_dir).unwrap();
    let pending_file = root.path().join(".data.txt.xyz789.scoped-temp-new");
    fs::write(&pending_file, "123").unwrap();
    let long = SweepOptions::new().pending_grace(Duration::from_secs(3600));
    let report = scoped_temp::sweep_orphans_with(root.path(), &long).unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(report.live_skipped, 2);
    let report = scoped_temp::sweep_orphans(root.path()).unwrap();
    assert_eq!(report.removed.len(), 2);
}

/// A writer of atomic batches (with backups) and temp dirs, SIGKILLed at a random point
/// of its loop, 100 times: one sweep afterwards leaves only the targets and backups.
#[test]
fn one_sweep_after_100_kills_of_a_writer_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut seed = std::process::id() as u64 | 1;
    for _ in 0..100 {
        let mut helper = spawn_helper("writer", root.path());
        // A random point: after 1 to 8 rounds reported, mid-way through the next one.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        for _ in 0..(1 + seed % 8) {
            let mut line = String::new();
            helper.stdout.read_line(&mut line).unwrap();
        }
        helper.kill9();
    }
    let report = scoped_temp::sweep_orphans(root.path()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let mut left: Vec<String> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !["a.txt", "a.txt.bak", "b.txt"].contains(&n.as_str()))
        .collect();
    left.sort();
    assert!(
        left.is_empty(),
        "left after one sweep: {left:?} ({report:?})"
    );
}

#[test]
fn sweeping_a_missing_root_is_a_typed_error() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing");
    match scoped_temp::sweep_orphans(&missing) {
        Err(scoped_temp::Error::Sweep { root, .. }) => assert_eq!(root, missing),
        other => panic!("expected Sweep error, got {other:?}"),
    }
}
