//! Atomic writes, checked on disk: the target holds the old content or the new, and no
//! temp file outlives its writer.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use scoped_temp::{AtomicBatch, AtomicFile, AtomicOptions, Error};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn commit_replaces_the_target_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("config.json");
    fs::write(&target, "old").unwrap();
    let mut f = AtomicFile::new(&target).unwrap();
    f.write_all(b"new ").unwrap();
    f.write_bytes(b"content").unwrap();
    assert_eq!(f.written(), 11);
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "old",
        "untouched before commit"
    );
    let temp = f.temp_path().to_path_buf();
    assert_eq!(temp.parent(), target.parent());
    f.commit().unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap(), "new content");
    assert!(!temp.exists());
    assert_eq!(names(dir.path()), ["config.json"]);
}

#[test]
fn commit_creates_a_missing_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("fresh");
    scoped_temp::write_atomic_blocking(&target, b"hello").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"hello");
    assert_eq!(names(dir.path()), ["fresh"]);
}

#[tokio::test]
async fn write_atomic_runs_on_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("a");
    scoped_temp::write_atomic(target.clone(), b"async")
        .await
        .unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"async");
}

#[test]
fn dropped_without_commit_leaves_target_untouched_and_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("data");
    fs::write(&target, "old").unwrap();
    let mut f = AtomicFile::new(&target).unwrap();
    f.write_bytes(b"half written").unwrap();
    let temp = f.temp_path().to_path_buf();
    assert!(temp.exists());
    drop(f);
    assert!(!temp.exists());
    assert_eq!(fs::read_to_string(&target).unwrap(), "old");
    assert_eq!(names(dir.path()), ["data"]);
}

#[test]
fn dropped_on_panic_leaves_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("data");
    fs::write(&target, "old").unwrap();
    let t = target.clone();
    let result = std::panic::catch_unwind(move || {
        let mut f = AtomicFile::new(&t).unwrap();
        f.write_bytes(b"partial").unwrap();
        panic!("injected");
    });
    assert!(result.is_err());
    assert_eq!(fs::read_to_string(&target).unwrap(), "old");
    assert_eq!(names(dir.path()), ["data"]);
}

#[test]
fn no_clobber_refuses_an_existing_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("once");
    let opts = AtomicOptions::new().no_clobber(true);
    let mut f = opts.open(&target).unwrap();
    f.write_bytes(b"first").unwrap();
    f.commit().unwrap();
    let mut f = opts.open(&target).unwrap();
    f.write_bytes(b"second").unwrap();
    match f.commit() {
        Err(Error::TargetExists { target: t }) => assert_eq!(t, target),
        other => panic!("expected TargetExists, got {other:?}"),
    }
    assert_eq!(fs::read_to_string(&target).unwrap(), "first");
    assert_eq!(names(dir.path()), ["once"]);
}

#[test]
fn backup_keeps_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("db");
    let backup = dir.path().join("db.bak");
    fs::write(&target, "v1").unwrap();
    for (version, expected_backup) in [("v2", "v1"), ("v3", "v2")] {
        let mut f = AtomicOptions::new().backup(&backup).open(&target).unwrap();
        f.write_bytes(version.as_bytes()).unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), version);
        assert_eq!(fs::read_to_string(&backup).unwrap(), expected_backup);
    }
    assert_eq!(names(dir.path()), ["db", "db.bak"]);
}

#[test]
fn replacement_keeps_the_targets_permissions_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("script.sh");
    fs::write(&target, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o750)).unwrap();
    scoped_temp::write_atomic_blocking(&target, b"#!/bin/sh\necho hi\n").unwrap();
    assert_eq!(
        fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o750
    );

    let mut f = AtomicOptions::new().mode(0o600).open(&target).unwrap();
    f.write_bytes(b"secret").unwrap();
    f.commit().unwrap();
    assert_eq!(
        fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn batch_commits_all() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a"), "old a").unwrap();
    let mut batch = AtomicBatch::new();
    batch
        .add(dir.path().join("a"))
        .unwrap()
        .write_bytes(b"new a")
        .unwrap();
    batch
        .add(dir.path().join("b"))
        .unwrap()
        .write_bytes(b"new b")
        .unwrap();
    assert_eq!(batch.len(), 2);
    batch.commit().unwrap();
    assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "new a");
    assert_eq!(fs::read_to_string(dir.path().join("b")).unwrap(), "new b");
    assert_eq!(names(dir.path()), ["a", "b"]);
}

#[test]
fn batch_failing_midway_restores_what_it_had_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::write(&a, "old a").unwrap();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let mut batch = AtomicBatch::new();
    batch.add(&a).unwrap().write_bytes(b"new a").unwrap();
    batch.add(&b).unwrap().write_bytes(b"new b").unwrap();
    batch
        .add(sub.join("c"))
        .unwrap()
        .write_bytes(b"new c")
        .unwrap();
    // The third target's directory disappears: its rename fails after a and b are done.
    fs::remove_dir_all(&sub).unwrap();

    match batch.commit() {
        Err(Error::Batch {
            index,
            total,
            target,
            rollback_failures,
            ..
        }) => {
            assert_eq!((index, total), (2, 3));
            assert_eq!(target, sub.join("c"));
            assert!(rollback_failures.is_empty(), "{rollback_failures:?}");
        }
        other => panic!("expected Batch error, got {other:?}"),
    }
    assert_eq!(fs::read_to_string(&a).unwrap(), "old a");
    assert!(!b.exists(), "b did not exist before the batch");
    assert_eq!(names(dir.path()), ["a"]);
}

#[test]
fn batch_with_a_no_clobber_conflict_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::write(&a, "old a").unwrap();
    fs::write(&b, "old b").unwrap();
    let mut batch = AtomicBatch::new();
    batch.add(&a).unwrap().write_bytes(b"new a").unwrap();
    let strict = AtomicOptions::new().no_clobber(true);
    batch
        .add_with(&b, &strict)
        .unwrap()
        .write_bytes(b"new b")
        .unwrap();
    let err = batch.commit().unwrap_err();
    assert!(
        matches!(&err, Error::Batch { index: 1, source, .. } if matches!(**source, Error::TargetExists { .. })),
        "{err:?}"
    );
    assert_eq!(fs::read_to_string(&a).unwrap(), "old a");
    assert_eq!(fs::read_to_string(&b).unwrap(), "old b");
    assert_eq!(names(dir.path()), ["a", "b"]);
}

#[test]
fn paths_without_a_file_name_are_rejected() {
    for bad in ["/", "", "..", "/tmp/.."] {
        assert!(
            matches!(AtomicFile::new(bad), Err(Error::NotAFilePath { .. })),
            "{bad:?} should be rejected"
        );
    }
}

#[test]
fn missing_directory_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("no/such/file");
    match AtomicFile::new(&target) {
        Err(Error::Create { root, .. }) => assert_eq!(root, dir.path().join("no/such")),
        other => panic!("expected Create error, got {other:?}"),
    }
}

#[test]
fn a_bare_file_name_is_written_in_the_current_directory() {
    // Only the path splitting is checked here; the working directory is the crate's.
    let f = AtomicFile::new("scoped-temp-test-bare-name.txt").unwrap();
    assert_eq!(
        f.temp_path().parent().unwrap(),
        std::env::current_dir().unwrap()
    );
    drop(f);
    assert!(!Path::new("scoped-temp-test-bare-name.txt").exists());
}
