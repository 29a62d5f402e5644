//! Every way a temp entry's owner can end removes the entry; checked on disk.

use std::fs;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use scoped_temp::{Builder, EntryKind, Error, NamedTempFile, TempDir};

/// A fresh root per test, so tests running in parallel never see each other's entries.
fn root() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Live entries of this crate under `root` (the registry is process-wide).
fn live_under(root: &Path) -> Vec<PathBuf> {
    scoped_temp::live()
        .into_iter()
        .map(|e| e.path)
        .filter(|p| p.starts_with(root))
        .collect()
}

/// Everything under `root` except run directories and their owner locks.
fn leftovers(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for run in fs::read_dir(root).unwrap() {
        let run = run.unwrap().path();
        let name = run.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.starts_with(".scoped-temp-run-") {
            found.push(run);
            continue;
        }
        for e in fs::read_dir(&run).unwrap() {
            let e = e.unwrap().path();
            if e.file_name().unwrap() != ".owner.lock" {
                found.push(e);
            }
        }
    }
    found
}

fn fill(dir: &Path) {
    fs::write(dir.join("a.bin"), vec![7u8; 4096]).unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/b.txt"), "b").unwrap();
}

#[test]
fn drop_removes_dir_and_contents() {
    let root = root();
    let dir = TempDir::new_in(root.path()).unwrap();
    let path = dir.path().to_path_buf();
    fill(&path);
    assert_eq!(live_under(root.path()), vec![path.clone()]);
    drop(dir);
    assert!(!path.exists());
    assert!(live_under(root.path()).is_empty());
    assert!(leftovers(root.path()).is_empty());
}

#[test]
fn close_blocking_reports_and_removes() {
    let root = root();
    let dir = TempDir::new_in(root.path()).unwrap();
    let path = dir.path().to_path_buf();
    fill(&path);
    dir.close_blocking().unwrap();
    assert!(!path.exists());
}

#[tokio::test(flavor = "current_thread")]
async fn close_removes_on_blocking_pool_on_current_thread_runtime() {
    let root = root();
    let dir = TempDir::new_in(root.path()).unwrap();
    let path = dir.path().to_path_buf();
    fill(&path);
    dir.close().await.unwrap();
    assert!(!path.exists());
    assert!(live_under(root.path()).is_empty());
}

#[test]
fn close_outside_a_runtime_removes_inline() {
    let root = root();
    let dir = TempDir::new_in(root.path()).unwrap();
    let path = dir.path().to_path_buf();
    // No runtime at all: `close` must neither panic nor wait; one poll finishes it.
    let mut close = std::pin::pin!(dir.close());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match close.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(result) => result.unwrap(),
        std::task::Poll::Pending => panic!("close without a runtime must complete inline"),
    }
    assert!(!path.exists());
}

#[tokio::test]
async fn with_temp_dir_removes_on_ok() {
    let root = root();
    let mut seen = None;
    let n = Builder::new()
        .root(root.path())
        .with_temp_dir(|dir| {
            seen = Some(dir.clone());
            async move {
                fill(&dir);
                Ok::<_, Error>(42)
            }
        })
        .await
        .unwrap();
    assert_eq!(n, 42);
    assert!(!seen.unwrap().exists());
    assert!(leftovers(root.path()).is_empty());
}

#[derive(Debug)]
enum JobError {
    Temp(#[allow(dead_code)] Error),
    Failed,
}

impl From<Error> for JobError {
    fn from(e: Error) -> Self {
        JobError::Temp(e)
    }
}

#[tokio::test]
async fn with_temp_dir_removes_on_err_and_returns_the_callers_error() {
    let root = root();
    let mut seen = None;
    let result: Result<(), JobError> = Builder::new()
        .root(root.path())
        .with_temp_dir(|dir| {
            seen = Some(dir.clone());
            async move {
                fill(&dir);
                Err(JobError::Failed)
            }
        })
        .await;
    assert!(matches!(result, Err(JobError::Failed)));
    assert!(!seen.unwrap().exists());
    assert!(leftovers(root.path()).is_empty());
}

/// Runs `with_temp_dir` in a task whose body fills the dir, sends its path, then ends
/// the way `end` does.
fn spawn_in_temp_dir(
    root: &Path,
    end: impl Future<Output = Result<(), Error>> + Send + 'static,
) -> (
    tokio::task::JoinHandle<Result<(), Error>>,
    tokio::sync::oneshot::Receiver<PathBuf>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let builder = Builder::new().root(root).clone();
    let task = tokio::spawn(async move {
        builder
            .with_temp_dir(|dir| async move {
                fill(&dir);
                tx.send(dir).unwrap();
                end.await
            })
            .await
    });
    (task, rx)
}

#[tokio::test]
async fn with_temp_dir_removes_on_panic() {
    let root = root();
    let (task, rx) = spawn_in_temp_dir(root.path(), async { panic!("injected panic") });
    assert!(task.await.unwrap_err().is_panic());
    let path = rx.await.unwrap();
    assert!(!path.exists());
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn with_temp_dir_removes_on_cancellation() {
    let root = root();
    let (task, rx) = spawn_in_temp_dir(root.path(), std::future::pending());
    let path = rx.await.unwrap();
    assert!(path.exists());
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(!path.exists());
    assert!(live_under(root.path()).is_empty());
}

#[test]
fn close_future_dropped_midway_still_removes() {
    let root = root();
    let dir = TempDir::new_in(root.path()).unwrap();
    let path = dir.path().to_path_buf();
    fill(&path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Poll once, so the removal is handed to the blocking pool, then drop the future.
        let mut close = Box::pin(dir.close());
        std::future::poll_fn(|cx| std::task::Poll::Ready(close.as_mut().poll(cx).is_ready())).await;
    });
    // Dropping a runtime waits for its blocking tasks: the removal runs to the end.
    drop(rt);
    assert!(!path.exists());
    assert!(live_under(root.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_tasks_leave_nothing() {
    let root = root();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let root = root.path().to_path_buf();
        tasks.spawn(async move {
            let dir = Builder::new()
                .root(&root)
                .prefix(format!("t{i}-"))
                .tempdir()
                .unwrap();
            fs::write(dir.path().join("f"), i.to_le_bytes()).unwrap();
            tokio::task::yield_now().await;
            match i % 3 {
                0 => drop(dir),
                1 => dir.close().await.unwrap(),
                _ => {
                    let mut f = NamedTempFile::new_in(&root).unwrap();
                    f.write_all(b"x").unwrap();
                    drop(dir);
                    f.close().await.unwrap();
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert!(live_under(root.path()).is_empty());
    assert!(leftovers(root.path()).is_empty());
}

#[test]
fn named_temp_file_is_removed_on_drop_and_close() {
    let root = root();
    let mut f = NamedTempFile::new_in(root.path()).unwrap();
    f.write_all(b"hello").unwrap();
    let path = f.path().to_path_buf();
    assert_eq!(fs::read(&path).unwrap(), b"hello");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        scoped_temp::live()
            .iter()
            .find(|e| e.path == path)
            .unwrap()
            .kind,
        EntryKind::File
    );
    drop(f);
    assert!(!path.exists());

    let f = NamedTempFile::new_in(root.path()).unwrap();
    let path = f.path().to_path_buf();
    f.close_blocking().unwrap();
    assert!(!path.exists());
}

#[test]
fn keep_moves_out_of_the_run_dir_and_survives_sweep() {
    let root = root();
    let dir = Builder::new()
        .root(root.path())
        .prefix("kept-")
        .tempdir()
        .unwrap();
    fill(dir.path());
    let kept = dir.keep().unwrap();
    assert_eq!(kept.parent().unwrap(), root.path());
    assert!(kept.join("a.bin").exists());
    assert!(live_under(root.path()).is_empty());
    let report = scoped_temp::sweep_orphans(root.path()).unwrap();
    assert!(report.removed.is_empty());
    assert!(kept.join("sub/b.txt").exists());
}

#[test]
fn dirs_are_private() {
    let root = root();
    let dir = TempDir::new_in(root.path()).unwrap();
    assert_eq!(
        fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let run = dir.path().parent().unwrap();
    assert_eq!(
        fs::metadata(run).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn removal_does_not_follow_symlinks_out() {
    let root = root();
    let outside = root.path().join("precious");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep.txt"), "mine").unwrap();
    let dir = TempDir::new_in(root.path()).unwrap();
    std::os::unix::fs::symlink(outside.join("keep.txt"), dir.path().join("link-to-file")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("link-to-dir")).unwrap();
    let path = dir.path().to_path_buf();
    drop(dir);
    assert!(!path.exists());
    assert_eq!(
        fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn a_dir_replaced_by_a_symlink_removes_only_the_link() {
    let root = root();
    let outside = root.path().join("precious");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep.txt"), "mine").unwrap();
    let dir = TempDir::new_in(root.path()).unwrap();
    fs::remove_dir(dir.path()).unwrap();
    std::os::unix::fs::symlink(&outside, dir.path()).unwrap();
    dir.close_blocking().unwrap();
    assert_eq!(
        fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn missing_root_is_a_typed_error() {
    let root = root();
    let missing = root.path().join("no/such/dir");
    match TempDir::new_in(&missing) {
        Err(Error::Create { root, source }) => {
            assert_eq!(root, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Create error, got {other:?}"),
    }
}

#[test]
fn root_that_is_a_file_is_a_typed_error() {
    let root = root();
    let file = root.path().join("file");
    fs::write(&file, "").unwrap();
    assert!(matches!(TempDir::new_in(&file), Err(Error::Create { root, .. }) if root == file));
    assert!(matches!(
        NamedTempFile::new_in(&file),
        Err(Error::Create { .. })
    ));
}

#[test]
fn read_only_root_is_a_typed_error() {
    // Root ignores permission bits, so as root use a filesystem that refuses mkdir.
    let root = root();
    let read_only = if rustix::process::geteuid().is_root() {
        PathBuf::from("/sys")
    } else {
        let ro = root.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        ro
    };
    match TempDir::new_in(&read_only) {
        Err(Error::Create { root, .. }) => assert_eq!(root, read_only),
        other => panic!("expected Create error, got {other:?}"),
    }
}

#[test]
fn dir_removed_behind_our_back_is_reported_and_others_still_cleaned() {
    let root = root();
    let a = TempDir::new_in(root.path()).unwrap();
    let b = TempDir::new_in(root.path()).unwrap();
    let b_path = b.path().to_path_buf();
    fs::remove_dir_all(a.path()).unwrap();
    match a.close_blocking() {
        Err(Error::Vanished { path }) => assert!(path.starts_with(root.path())),
        other => panic!("expected Vanished, got {other:?}"),
    }
    b.close_blocking().unwrap();
    assert!(!b_path.exists());
    assert!(live_under(root.path()).is_empty());
}

#[test]
fn run_dir_removed_behind_our_back_is_set_up_again() {
    let root = root();
    let first = TempDir::new_in(root.path()).unwrap();
    let run = first.path().parent().unwrap().to_path_buf();
    fs::remove_dir_all(&run).unwrap();
    assert!(matches!(
        first.close_blocking(),
        Err(Error::Vanished { .. })
    ));
    let second = TempDir::new_in(root.path()).unwrap();
    assert!(second.path().exists());
    assert_ne!(second.path().parent().unwrap(), run);
    let path = second.path().to_path_buf();
    drop(second);
    assert!(!path.exists());
}

#[test]
fn run_dir_holds_every_entry_of_its_root() {
    let root = root();
    let run = scoped_temp::run_dir(root.path()).unwrap();
    assert!(run.is_dir());
    assert_eq!(run.parent(), Some(root.path()));
    // Asked again, the same directory; entries are created inside it.
    assert_eq!(scoped_temp::run_dir(root.path()).unwrap(), run);
    let dir = Builder::new().root(root.path()).tempdir().unwrap();
    let file = Builder::new().root(root.path()).tempfile().unwrap();
    assert!(dir.path().starts_with(&run), "{}", dir.path().display());
    assert!(file.path().starts_with(&run), "{}", file.path().display());
    // A root that does not exist is an error naming it, not a panic.
    let missing = root.path().join("missing");
    match scoped_temp::run_dir(&missing) {
        Err(Error::Create { root, .. }) => assert_eq!(root, missing),
        other => panic!("expected Error::Create, got {other:?}"),
    }
}

/// A prefix or suffix is a part of a file name: one holding `/` is refused with the
/// part and the value, and nothing is created anywhere (`../../` once put the entry
/// two levels above its root, where no sweep looks after a kill).
#[test]
fn a_prefix_or_suffix_with_a_slash_is_refused_and_creates_nothing() {
    let outer = root();
    let root = outer.path().join("a").join("b");
    fs::create_dir_all(&root).unwrap();
    let cases: [(&str, &str); 4] = [
        ("prefix", "../../escape-"),
        ("prefix", "sub/dir-"),
        ("suffix", "/.."),
        ("suffix", "x\0y"),
    ];
    for (part, value) in cases {
        let mut builder = Builder::new();
        builder.root(&root);
        if part == "prefix" {
            builder.prefix(value);
        } else {
            builder.suffix(value);
        }
        for created in [builder.tempdir().map(drop), builder.tempfile().map(drop)] {
            match created {
                Err(Error::InvalidName { part: p, value: v }) => {
                    assert_eq!((p, v.to_str()), (part, Some(value)))
                }
                other => panic!("{part} {value:?}: {other:?}"),
            }
        }
    }
    // Nothing beside the root's own parents, nothing in the root but run directories.
    let names = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    assert_eq!(names(outer.path()), [outer.path().join("a")]);
    assert_eq!(names(&outer.path().join("a")), [root.as_path()]);
    assert_eq!(leftovers(&root), Vec::<PathBuf>::new());
}
