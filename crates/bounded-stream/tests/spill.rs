//! Collect-or-spill: memory up to a threshold, a scoped temp file past it, nothing past
//! the hard cap.

use std::io::{self, Read};

use bounded_stream::{Error, Limits, SpillOptions, Spilled, collect_or_spill};
use bytes::Bytes;

fn stream(total: usize, chunk: usize) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let parts: Vec<_> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(parts)
}

#[tokio::test]
async fn small_input_stays_in_memory() {
    let root = tempfile::tempdir().unwrap();
    let options = SpillOptions::new(4096, Limits::new(1 << 20)).root(root.path());
    match collect_or_spill(stream(4096, 1000), &options)
        .await
        .unwrap()
    {
        Spilled::Memory(bytes) => assert_eq!(bytes.len(), 4096),
        other => panic!("expected memory, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "no file created"
    );
}

#[tokio::test]
async fn large_input_spills_to_a_temp_file_that_is_reclaimed() {
    let root = tempfile::tempdir().unwrap();
    let options = SpillOptions::new(4096, Limits::new(1 << 20)).root(root.path());
    let (path, contents) = match collect_or_spill(stream(100_000, 1000), &options)
        .await
        .unwrap()
    {
        Spilled::File { mut file, len } => {
            assert_eq!(len, 100_000);
            let mut contents = Vec::new();
            file.read_to_end(&mut contents).unwrap();
            (file.path().to_path_buf(), contents)
        }
        other => panic!("expected a file, got {other:?}"),
    };
    assert_eq!(
        contents,
        (0..100_000).map(|i| (i % 251) as u8).collect::<Vec<_>>()
    );
    assert!(!path.exists(), "the spill file is removed when dropped");
}

#[tokio::test]
async fn past_the_hard_cap_fails_and_leaves_no_file() {
    let root = tempfile::tempdir().unwrap();
    let options = SpillOptions::new(4096, Limits::new(50_000)).root(root.path());
    match collect_or_spill(stream(100_000, 1000), &options).await {
        Err(Error::TooLarge {
            limit: 50_000,
            received: 51_000,
            ..
        }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let left: Vec<_> = scoped_temp_leftovers(root.path());
    assert!(left.is_empty(), "{left:?}");
}

/// Entries under `root` other than scoped-temp's run directory and its lock.
fn scoped_temp_leftovers(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut left = Vec::new();
    for run in std::fs::read_dir(root).unwrap() {
        let run = run.unwrap().path();
        for entry in std::fs::read_dir(&run).unwrap() {
            let entry = entry.unwrap().path();
            if entry.file_name().unwrap() != ".owner.lock" {
                left.push(entry);
            }
        }
    }
    left
}
