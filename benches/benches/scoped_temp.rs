//! `scoped-temp` against `tempfile`, the crate it builds on: the per-entry cost of our
//! registry and run directory. Target: ours at most 1.10x tempfile's time. And
//! `FileLock` against `fd-lock` (context, no target).
//!
//! Group names are `<crate>/<case>`; the function `ours` is compared with each other
//! function in the group (the peers) by `cargo xtask bench`.
//!
//! Paired measurement: a filesystem's speed drifts with its journal and writeback state,
//! and criterion runs one function to the end before the next, so drift would land on
//! one side. Each function's timing loop therefore alternates ours and the peer's cycle
//! and times only its own, so both see the same filesystem state.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const DATA: [u8; 4096] = [0x5a; 4096];

fn ours(root: &Path) {
    let dir = scoped_temp::TempDir::new_in(root).unwrap();
    fs::write(dir.path().join("chunk"), black_box(&DATA)).unwrap();
    drop(dir);
}

fn peer(root: &Path) {
    let dir = tempfile::TempDir::new_in(root).unwrap();
    fs::write(dir.path().join("chunk"), black_box(&DATA)).unwrap();
    drop(dir);
}

/// Times `timed` over `iters` cycles, each followed by one untimed cycle of `other`.
fn paired(iters: u64, root: &Path, timed: fn(&Path), other: fn(&Path)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        timed(root);
        total += start.elapsed();
        other(root);
    }
    total
}

fn create_write_remove_in(c: &mut Criterion, name: &str, root: &Path) {
    let mut group = c.benchmark_group(name);
    group.bench_function("ours", |b| {
        b.iter_custom(|iters| paired(iters, root, ours, peer))
    });
    group.bench_function("tempfile", |b| {
        b.iter_custom(|iters| paired(iters, root, peer, ours))
    });
    group.finish();
}

/// On the default temp dir's filesystem (disk-backed here), then on tmpfs, where system
/// calls are cheap and our per-entry overhead (registry, run directory) shows most.
fn create_write_remove(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    create_write_remove_in(c, "scoped-temp/create_write4k_remove", root.path());
    if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
        create_write_remove_in(c, "scoped-temp/create_write4k_remove_tmpfs", shm.path());
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60)
}

/// `FileLock`: open, take an exclusive lock, release, close; against `fd-lock` doing the
/// same (`RwLock::new(file).try_write()`), on one lock file, uncontended.
fn file_lock(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("resource.lock");
    let mut group = c.benchmark_group("scoped-temp/file_lock");
    group.bench_function("ours", |b| {
        b.iter(|| {
            let lock = scoped_temp::FileLock::try_lock(&path, scoped_temp::LockKind::Exclusive)
                .unwrap()
                .expect("uncontended");
            drop(black_box(lock));
        })
    });
    group.bench_function("fd_lock", |b| {
        b.iter(|| {
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap();
            let mut lock = fd_lock::RwLock::new(file);
            let guard = lock.try_write().expect("uncontended");
            drop(black_box(guard));
            drop(lock);
        })
    });
    group.finish();
}

criterion_group! { name = benches; config = config(); targets = create_write_remove, file_lock }
criterion_main!(benches);
