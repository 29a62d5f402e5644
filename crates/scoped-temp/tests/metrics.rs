//! The `metrics` feature, read from a recorder: entries created, removed and live,
//! and a removal that failed. One test: the counters are process-wide.

#![cfg(feature = "metrics")]

use leakproof_test_support::metrics::{recorder, value};
use scoped_temp::{TempDir, metrics};

#[test]
fn created_removed_and_live_are_counted() {
    recorder();
    let count = |name| value(name, &[]).unwrap_or(0.0);
    let (created, removed) = (count(metrics::CREATED), count(metrics::REMOVED));
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    metrics::publish();
    assert_eq!(count(metrics::CREATED) - created, 3.0);
    assert_eq!(
        count(metrics::ENTRIES_LIVE),
        scoped_temp::live_count() as f64
    );
    assert!(count(metrics::ENTRIES_LIVE) >= 3.0);

    let mut dirs = dirs.into_iter();
    let kept = dirs.next().unwrap();
    drop(dirs); // two removed on drop
    metrics::publish();
    assert_eq!(count(metrics::REMOVED) - removed, 2.0);
    assert_eq!(
        count(metrics::ENTRIES_LIVE),
        scoped_temp::live_count() as f64
    );

    // A removal that fails: a file in a dir made read-only (skipped as root, whom
    // permissions do not stop).
    if rustix::process::geteuid().is_root() {
        eprintln!("skip: running as root, a read-only dir does not stop a removal");
        return;
    }
    let failures = count(metrics::REMOVAL_FAILURES);
    let inner = TempDir::new_in(kept.path()).unwrap();
    std::fs::write(inner.path().join("f"), b"x").unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |m| std::fs::Permissions::from_mode(m);
    std::fs::set_permissions(inner.path(), mode(0o500)).unwrap();
    let path = inner.path().to_path_buf();
    drop(inner);
    assert_eq!(count(metrics::REMOVAL_FAILURES) - failures, 1.0);
    std::fs::set_permissions(&path, mode(0o700)).unwrap();
    assert_eq!(scoped_temp::remove_all().errors.len(), 0);
}
