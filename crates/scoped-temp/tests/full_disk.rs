//! A full disk, simulated with RLIMIT_FSIZE (writes past the limit fail with EFBIG).
//! The limit is process-wide, so this test has its binary to itself.

use std::fs;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use scoped_temp::{AtomicFile, Builder, Error};

const LIMIT: u64 = 64 * 1024;

#[tokio::test]
async fn writes_past_a_full_disk_fail_typed_and_lose_nothing() {
    // Without a handler, SIGXFSZ would kill the process instead of failing the write.
    let _sigxfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(
        rustix::process::Signal::XFSZ.as_raw(),
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("state.json");
    fs::write(&target, "precious old content").unwrap();

    let before = getrlimit(Resource::Fsize);
    setrlimit(
        Resource::Fsize,
        Rlimit {
            current: Some(LIMIT),
            maximum: before.maximum,
        },
    )
    .unwrap();

    // An atomic write that runs out of space: typed error, target intact, no temp left.
    let mut file = AtomicFile::new(&target).unwrap();
    let err = file.write_bytes(&vec![b'x'; 256 * 1024]).unwrap_err();
    let temp = file.temp_path().to_path_buf();
    drop(file);

    // A temp dir whose operation fails on the full disk is removed all the same.
    let mut used = None;
    let result: Result<(), Error> = Builder::new()
        .root(dir.path())
        .with_temp_dir(|d| {
            used = Some(d.clone());
            async move {
                let path = d.join("big");
                fs::write(&path, vec![0u8; 256 * 1024]).map_err(|source| Error::Write {
                    path,
                    written: 0,
                    source,
                })
            }
        })
        .await;

    setrlimit(Resource::Fsize, before).unwrap();

    match err {
        Error::Write {
            path,
            written,
            source,
        } => {
            assert_eq!(path, target);
            assert_eq!(written, LIMIT, "everything up to the limit was written");
            assert_eq!(
                source.raw_os_error(),
                Some(rustix::io::Errno::FBIG.raw_os_error())
            );
        }
        other => panic!("expected Write error, got {other:?}"),
    }
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious old content");
    assert!(!temp.exists());
    assert!(matches!(result, Err(Error::Write { .. })));
    assert!(!used.unwrap().exists());
    assert_eq!(scoped_temp::live_count(), 0);
}
