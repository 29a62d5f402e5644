//! `FileLock` and locked atomic writes, within one process and across processes,
//! including a holder that is SIGKILLed while it holds the lock.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scoped_temp::{AtomicFile, Error, FileLock, LockKind};

const MODE: &str = "SCOPED_TEMP_LOCK_HELPER";
const PATH: &str = "SCOPED_TEMP_LOCK_PATH";

/// Not a test: the body of the helper process, run by the tests below.
#[test]
#[ignore = "helper process, run by the other tests in this file"]
fn helper() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let path = PathBuf::from(std::env::var(PATH).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match mode.as_str() {
            // Holds an exclusive lock until killed.
            "hold" => {
                let _lock = FileLock::lock(&path, LockKind::Exclusive, Duration::from_secs(30))
                    .await
                    .unwrap();
                println!("@@locked");
                std::future::pending::<()>().await;
            }
            // Holds the target's write lock, mid-write, until killed.
            "hold-write" => {
                let mut write = AtomicFile::open_locked(&path, Duration::from_secs(30))
                    .await
                    .unwrap();
                write.write_bytes(b"never committed").unwrap();
                println!("@@locked");
                std::future::pending::<()>().await;
            }
            // Adds one to the number in the target, 50 times, each under the write lock.
            "increment" => {
                for _ in 0..50 {
                    increment(&path).await;
                }
            }
            other => panic!("unknown helper mode {other}"),
        }
    });
}

async fn increment(target: &Path) {
    let mut write = AtomicFile::open_locked(target, Duration::from_secs(60))
        .await
        .unwrap();
    let n: u64 = std::fs::read_to_string(target)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    write.write_bytes((n + 1).to_string().as_bytes()).unwrap();
    write.commit().unwrap();
}

fn spawn_helper(mode: &str, path: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env(PATH, path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the helper says it holds the lock.
fn wait_locked(child: &mut Child) {
    let stdout = child.stdout.take().unwrap();
    let locked = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("@@locked"));
    assert!(locked, "the helper never took the lock");
}

fn kill(mut child: Child) {
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn exclusive_and_shared_locks_exclude_each_other_even_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resource.lock");
    let shared = FileLock::try_lock(&path, LockKind::Shared)
        .unwrap()
        .unwrap();
    let also_shared = FileLock::try_lock(&path, LockKind::Shared).unwrap();
    assert!(also_shared.is_some(), "readers share");
    assert!(
        FileLock::try_lock(&path, LockKind::Exclusive)
            .unwrap()
            .is_none()
    );
    drop((shared, also_shared));
    let exclusive = FileLock::try_lock(&path, LockKind::Exclusive)
        .unwrap()
        .unwrap();
    assert_eq!(exclusive.kind(), LockKind::Exclusive);
    assert_eq!(exclusive.path(), path);
    assert!(
        FileLock::try_lock(&path, LockKind::Shared)
            .unwrap()
            .is_none()
    );
    assert!(
        FileLock::try_lock(&path, LockKind::Exclusive)
            .unwrap()
            .is_none()
    );
    drop(exclusive);
    assert!(
        FileLock::try_lock(&path, LockKind::Exclusive)
            .unwrap()
            .is_some()
    );
    // The file the caller named stays: it is theirs.
    assert!(path.exists());
}

#[tokio::test(start_paused = true)]
async fn a_lock_held_past_the_timeout_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resource.lock");
    let _held = FileLock::lock(&path, LockKind::Exclusive, Duration::ZERO)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    match FileLock::lock(&path, LockKind::Shared, Duration::from_millis(300)).await {
        Err(Error::LockTimeout { path: p, waited }) => {
            assert_eq!(p, path);
            assert_eq!(waited, Duration::from_millis(300));
        }
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    // A lock on a path that cannot be a file is a typed error too.
    let bad = FileLock::try_lock(dir.path().join("missing/dir/x"), LockKind::Shared);
    assert!(matches!(bad, Err(Error::Lock { .. })), "{bad:?}");
}

#[tokio::test]
async fn a_holder_in_another_process_excludes_us_until_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resource.lock");
    let mut holder = spawn_helper("hold", &path);
    wait_locked(&mut holder);
    assert!(
        FileLock::try_lock(&path, LockKind::Exclusive)
            .unwrap()
            .is_none()
    );
    assert!(
        FileLock::try_lock(&path, LockKind::Shared)
            .unwrap()
            .is_none()
    );
    // SIGKILLed while holding it: the kernel releases it with the process.
    kill(holder);
    let lock = FileLock::lock(&path, LockKind::Exclusive, Duration::from_secs(5)).await;
    assert!(lock.is_ok(), "{lock:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_writers_in_two_processes_serialise_their_read_modify_writes() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("counter");
    let writers: Vec<Child> = (0..2).map(|_| spawn_helper("increment", &target)).collect();
    // And this process too, at the same time.
    for _ in 0..50 {
        increment(&target).await;
    }
    for mut writer in writers {
        assert!(writer.wait().unwrap().success());
    }
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "150",
        "no increment lost to a concurrent rename"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["counter"], "no lock file or temp file left");
}

#[tokio::test]
async fn a_writer_killed_holding_the_write_lock_does_not_block_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("config.json");
    std::fs::write(&target, b"old").unwrap();
    let mut holder = spawn_helper("hold-write", &target);
    wait_locked(&mut holder);
    let waiting = AtomicFile::open_locked(&target, Duration::from_millis(200)).await;
    assert!(
        matches!(waiting, Err(Error::LockTimeout { .. })),
        "{waiting:?}"
    );
    kill(holder);
    // Its lock file is left behind; the next writer takes it over and removes it.
    let mut write = AtomicFile::open_locked(&target, Duration::from_secs(5))
        .await
        .unwrap();
    write.write_bytes(b"new").unwrap();
    write.commit().unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".scoped-temp-atomic"))
        .collect();
    assert_eq!(left, ["config.json"], "the lock file went with the lock");
}
