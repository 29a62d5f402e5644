//! `remove_all`, the shutdown hook. Process-wide, so it has this test binary to itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use scoped_temp::{AtomicFile, Builder, Error, NamedTempFile, TempDir};

fn count_all(root: &Path) -> usize {
    fs::read_dir(root).unwrap().count()
}

#[test]
fn remove_all_races_drops_without_double_removes_or_skips() {
    let roots: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let root_paths: Vec<PathBuf> = roots.iter().map(|r| r.path().to_path_buf()).collect();

    // Several threads create entries and drop half of them while remove_all runs.
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let root = root_paths[t % 2].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                for i in 0..50 {
                    let dir = Builder::new().root(&root).tempdir().unwrap();
                    fs::write(dir.path().join("f"), [i as u8; 64]).unwrap();
                    kept.push(dir);
                }
                barrier.wait();
                // Drop them one by one, racing remove_all below. Each drop must neither
                // fail nor remove something twice; the registry decides who removes.
                let paths: Vec<PathBuf> = kept.iter().map(|d| d.path().to_path_buf()).collect();
                for dir in kept {
                    drop(dir);
                }
                paths
            })
        })
        .collect();
    barrier.wait();
    let report = scoped_temp::remove_all();
    let created: Vec<PathBuf> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    assert!(report.is_clean(), "{:?}", report.errors);
    assert!(report.removed.len() <= created.len());
    for path in &created {
        assert!(!path.exists(), "{} left behind", path.display());
    }
    assert_eq!(scoped_temp::live_count(), 0);
    // Run directories may have been recreated by nothing: every root is empty.
    for root in &root_paths {
        assert_eq!(count_all(root), 0, "{} not empty", root.display());
    }

    // Afterwards: new entries work, set up a new run dir, and remove_all reclaims them
    // all, files and uncommitted atomic writes included.
    let dir = TempDir::new_in(&root_paths[0]).unwrap();
    let file = NamedTempFile::new_in(&root_paths[1]).unwrap();
    let target = root_paths[0].join("target.txt");
    fs::write(&target, "old").unwrap();
    let mut atomic = AtomicFile::new(&target).unwrap();
    atomic.write_bytes(b"new").unwrap();
    let kept = Builder::new().root(&root_paths[1]).tempdir().unwrap();
    assert_eq!(scoped_temp::live_count(), 4);

    let report = scoped_temp::remove_all();
    assert!(report.is_clean(), "{:?}", report.errors);
    assert_eq!(report.removed.len(), 4);
    assert_eq!(report.run_dirs, 2);
    assert_eq!(report.removed[0], kept.path(), "newest first");
    assert_eq!(report.removed[3], dir.path(), "oldest last");
    assert!(!dir.path().exists() && !file.path().exists() && !atomic.temp_path().exists());

    // Handles outliving remove_all: dropping or closing is a no-op, keeping or
    // committing says what happened.
    assert!(matches!(kept.keep(), Err(Error::Reclaimed { .. })));
    let temp = atomic.temp_path().to_path_buf();
    assert!(matches!(atomic.commit(), Err(Error::Reclaimed { path }) if path == temp));
    assert_eq!(fs::read_to_string(&target).unwrap(), "old");
    dir.close_blocking().unwrap();
    drop(file);
    assert_eq!(count_all(&root_paths[0]), 1, "only target.txt");
    assert_eq!(count_all(&root_paths[1]), 0);
}
