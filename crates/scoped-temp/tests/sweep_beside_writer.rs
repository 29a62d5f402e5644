//! A sweep running beside a live writer never takes what the writer still needs: the
//! staging of a backup, the previous version an exchange set aside, a temp file being
//! set up. Each batch below fails on its last file and must roll back in full while
//! sweeps of the same directory run in a loop on another thread.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use scoped_temp::{AtomicBatch, AtomicOptions, Error};

const BATCHES: usize = 400;

#[test]
fn a_sweep_beside_a_writer_never_takes_what_a_rollback_needs() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_path_buf();
    let (a, b) = (dir.join("a.json"), dir.join("b.bin"));
    fs::write(&a, "old a").unwrap();
    fs::write(&b, "old b").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let sweeper = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sweeps = 0u64;
            let mut reclaimed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let report = scoped_temp::sweep_orphans(&dir).unwrap();
                reclaimed.extend(report.removed);
                sweeps += 1;
            }
            (sweeps, reclaimed)
        })
    };

    let mut failures = Vec::new();
    for i in 0..BATCHES {
        // The third file's directory is gone by commit time: the batch must undo the
        // two targets it already replaced.
        let gone = dir.join(format!("gone-{i}"));
        fs::create_dir(&gone).unwrap();
        let mut batch = AtomicBatch::new();
        let with_backup = AtomicOptions::new().backup(dir.join("a.json.bak"));
        batch
            .add_with(&a, &with_backup)
            .unwrap()
            .write_bytes(b"new a")
            .unwrap();
        batch.add(&b).unwrap().write_bytes(b"new b").unwrap();
        batch
            .add(gone.join("c"))
            .unwrap()
            .write_bytes(b"c")
            .unwrap();
        fs::remove_dir_all(&gone).unwrap();
        match batch.commit() {
            Err(Error::Batch {
                index: 2,
                rollback_failures,
                ..
            }) if rollback_failures.is_empty() => {}
            other => failures.push(format!("batch {i}: {other:?}")),
        }
        let now = (fs::read_to_string(&a), fs::read_to_string(&b));
        if now.0.as_deref().ok() != Some("old a") || now.1.as_deref().ok() != Some("old b") {
            failures.push(format!("batch {i}: targets now {now:?}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (sweeps, reclaimed) = sweeper.join().unwrap();

    let mut failed: Vec<&str> = failures
        .iter()
        .filter_map(|f| f.split(':').next())
        .collect();
    failed.dedup();
    assert!(
        failures.is_empty(),
        "{} of {BATCHES} batches lost their rollback to {sweeps} sweeps: {:#?}",
        failed.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sweeps > 0, "the sweeps ran");
    assert!(
        reclaimed.is_empty(),
        "a live writer's entries were reclaimed: {reclaimed:?}"
    );
    let mut left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["a.json", "a.json.bak", "b.bin"]);
}
