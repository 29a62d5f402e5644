//! The byte cap is exact under any chunking, for every kind of source.

use std::io;

use bounded_stream::{Bounded, BoundedBody, BoundedRead, Error, Limits, Stage, collect};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use proptest::prelude::*;
use tokio::io::AsyncReadExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Splits `total` bytes (a counting pattern) into chunks of the given sizes.
fn chunks(total: usize, sizes: &[usize]) -> Vec<Bytes> {
    let data: Vec<u8> = (0..total).map(|i| i as u8).collect();
    let mut out = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= total {
            break;
        }
        let end = (at + size.max(&1)).min(total);
        out.push(Bytes::copy_from_slice(&data[at..end]));
        at = end;
    }
    out
}

fn stream_of(parts: Vec<Bytes>) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> {
    futures_util::stream::iter(parts.into_iter().map(Ok))
}

/// A reader that hands out the chunks one per read.
fn reader_of(parts: Vec<Bytes>) -> impl tokio::io::AsyncRead + Unpin {
    tokio_util::io::StreamReader::new(stream_of(parts))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stream_accepts_exactly_the_limit(total in 0usize..3000, limit in 0u64..3000, sizes in prop::collection::vec(1usize..700, 1..8)) {
        let result = runtime().block_on(collect(stream_of(chunks(total, &sizes)), &Limits::new(limit)));
        if total as u64 <= limit {
            let got = result.unwrap();
            prop_assert_eq!(got.len(), total as u64);
            prop_assert!(!got.truncated());
        } else {
            match result {
                Err(Error::TooLarge { limit: l, received, stage: Stage::Wire }) => {
                    prop_assert_eq!(l, limit);
                    prop_assert!(received > limit && received <= total as u64);
                }
                other => prop_assert!(false, "expected TooLarge, got {:?}", other),
            }
        }
    }

    #[test]
    fn stream_truncates_to_exactly_the_limit(total in 0usize..3000, limit in 0u64..3000, sizes in prop::collection::vec(1usize..700, 1..8)) {
        let got = runtime().block_on(collect(stream_of(chunks(total, &sizes)), &Limits::new(limit).truncate())).unwrap();
        let expected: Vec<u8> = (0..total.min(limit as usize)).map(|i| i as u8).collect();
        prop_assert_eq!(&got.to_bytes()[..], &expected[..]);
        prop_assert_eq!(got.truncated(), total as u64 > limit);
    }

    #[test]
    fn reader_accepts_exactly_the_limit(total in 0usize..3000, limit in 0u64..3000, sizes in prop::collection::vec(1usize..700, 1..8), buf in 1usize..1000) {
        let result = runtime().block_on(async {
            let mut reader = BoundedRead::new(reader_of(chunks(total, &sizes)), &Limits::new(limit));
            let mut out = Vec::new();
            let mut scratch = vec![0u8; buf];
            loop {
                let n = reader.read(&mut scratch).await?;
                if n == 0 { return Ok::<_, io::Error>(out); }
                out.extend_from_slice(&scratch[..n]);
            }
        });
        if total as u64 <= limit {
            prop_assert_eq!(result.unwrap().len(), total);
        } else {
            let err = Error::from_io(result.unwrap_err()).unwrap();
            let is_too_large = matches!(err, Error::TooLarge { limit: l, received, .. } if l == limit && received > limit);
            prop_assert!(is_too_large, "{:?}", err);
        }
    }

    #[test]
    fn reader_truncates_to_exactly_the_limit(total in 0usize..3000, limit in 0u64..3000, sizes in prop::collection::vec(1usize..700, 1..8)) {
        let (out, truncated) = runtime().block_on(async {
            let mut reader = BoundedRead::new(reader_of(chunks(total, &sizes)), &Limits::new(limit).truncate());
            let mut out = Vec::new();
            reader.read_to_end(&mut out).await.unwrap();
            (out, reader.truncated())
        });
        let expected: Vec<u8> = (0..total.min(limit as usize)).map(|i| i as u8).collect();
        prop_assert_eq!(out, expected);
        prop_assert_eq!(truncated, total as u64 > limit);
    }

    #[test]
    fn body_accepts_exactly_the_limit(total in 0usize..3000, limit in 0u64..3000, sizes in prop::collection::vec(1usize..700, 1..8)) {
        // A streamed body: no declared length, so only the running count decides.
        let frames = stream_of(chunks(total, &sizes)).map(|c| c.map(http_body::Frame::data));
        let body = BoundedBody::new(StreamBody::new(frames), &Limits::new(limit)).unwrap();
        let result = runtime().block_on(body.collect());
        if total as u64 <= limit {
            prop_assert_eq!(result.unwrap().to_bytes().len(), total);
        } else {
            let is_too_large = matches!(result, Err(Error::TooLarge { limit: l, received, .. }) if l == limit && received > limit);
            prop_assert!(is_too_large);
        }
    }
}

#[tokio::test]
async fn a_rejected_read_leaves_the_buffer_untouched() {
    // read_to_end checks AsyncRead's contract: an Err read must not have filled anything.
    for limit in [0u64, 1, 4, 9] {
        let mut out = Vec::new();
        let mut reader = BoundedRead::new(&b"0123456789"[..], &Limits::new(limit));
        let err = reader.read_to_end(&mut out).await.unwrap_err();
        assert!(matches!(Error::from_io(err), Ok(Error::TooLarge { .. })));
        assert!(
            out.len() as u64 <= limit,
            "{} bytes kept for a limit of {limit}",
            out.len()
        );
    }
}

#[tokio::test]
async fn declared_length_over_the_cap_is_refused_before_reading() {
    let body = http_body_util::Full::new(Bytes::from(vec![1u8; 1001]));
    match BoundedBody::new(body, &Limits::new(1000)) {
        Err(Error::ContentLengthTooLarge {
            limit: 1000,
            declared: 1001,
        }) => {}
        other => panic!("expected ContentLengthTooLarge, got {other:?}"),
    }
    // Exactly at the cap is fine.
    let body = http_body_util::Full::new(Bytes::from(vec![1u8; 1000]));
    let got = BoundedBody::new(body, &Limits::new(1000))
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(got.to_bytes().len(), 1000);
}

#[tokio::test]
async fn a_stream_longer_or_shorter_than_declared_is_an_error() {
    let longer =
        Bounded::with_declared_length(stream_of(chunks(12, &[5])), &Limits::new(100), 10).unwrap();
    let items: Vec<_> = longer.collect().await;
    assert!(
        matches!(
            items.last(),
            Some(Err(Error::ContentLengthMismatch {
                declared: 10,
                received: 12
            }))
        ),
        "{items:?}"
    );

    let shorter =
        Bounded::with_declared_length(stream_of(chunks(7, &[5])), &Limits::new(100), 10).unwrap();
    let items: Vec<_> = shorter.collect().await;
    assert!(
        matches!(
            items.last(),
            Some(Err(Error::ContentLengthMismatch {
                declared: 10,
                received: 7
            }))
        ),
        "{items:?}"
    );

    let exact =
        Bounded::with_declared_length(stream_of(chunks(10, &[3])), &Limits::new(100), 10).unwrap();
    assert!(exact.collect::<Vec<_>>().await.iter().all(Result::is_ok));
}

#[tokio::test]
async fn truncating_ignores_a_declared_length_over_the_cap() {
    let body = http_body_util::Full::new(Bytes::from(vec![7u8; 5000]));
    let mut bounded = BoundedBody::new(body, &Limits::new(100).truncate()).unwrap();
    let mut got = Vec::new();
    while let Some(frame) = bounded.frame().await {
        got.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(got.len(), 100);
    assert!(bounded.truncated());
}

#[tokio::test]
async fn a_failing_source_keeps_its_error_and_the_count() {
    let parts = vec![
        Ok(Bytes::from_static(b"abc")),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
    ];
    match collect(futures_util::stream::iter(parts), &Limits::new(100)).await {
        Err(Error::Source {
            received: 3,
            source,
        }) => assert_eq!(source.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected Source error, got {other:?}"),
    }
}

#[tokio::test]
async fn nothing_is_yielded_after_an_error() {
    let mut s = Bounded::new(stream_of(chunks(100, &[60])), &Limits::new(50));
    assert!(matches!(s.next().await, Some(Err(Error::TooLarge { .. }))));
    assert!(s.next().await.is_none());
}

/// A file over the cap is refused from its length, before any byte is read; one under
/// it is read whole; in truncate mode a long one is read up to the cap.
#[test]
fn a_file_over_the_cap_is_refused_from_its_length() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        std::fs::write(&path, vec![b'x'; 10_000]).unwrap();
        match BoundedRead::open(&path, &Limits::new(4096)).await {
            Err(Error::FileTooLarge {
                path: p,
                limit,
                len,
            }) => {
                assert_eq!((p, limit, len), (path.clone(), 4096, 10_000));
            }
            other => panic!("expected FileTooLarge, got {other:?}"),
        }
        let mut whole = Vec::new();
        BoundedRead::open(&path, &Limits::new(10_000))
            .await
            .unwrap()
            .read_to_end(&mut whole)
            .await
            .unwrap();
        assert_eq!(whole.len(), 10_000);
        let mut head = Vec::new();
        BoundedRead::open(&path, &Limits::new(4096).truncate())
            .await
            .unwrap()
            .read_to_end(&mut head)
            .await
            .unwrap();
        assert_eq!(head.len(), 4096);
        let missing = BoundedRead::open(dir.path().join("none"), &Limits::new(1)).await;
        assert!(matches!(missing, Err(Error::Io { .. })), "{missing:?}");
    });
}

/// A file under the cap when opened that grows past it while it is read still stops at
/// the cap: the reader counts what it yields, not the length it saw.
#[test]
fn a_file_growing_past_the_cap_while_read_stops_at_the_cap() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growing.log");
        std::fs::write(&path, vec![b'x'; 1000]).unwrap();
        let mut reader = BoundedRead::open(&path, &Limits::new(4096)).await.unwrap();
        let mut first = vec![0; 1000];
        reader.read_exact(&mut first).await.unwrap();
        // The writer appends 1 MiB after the open.
        use std::io::Write;
        let mut writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writer.write_all(&vec![b'y'; 1 << 20]).unwrap();
        let mut rest = Vec::new();
        let error = reader.read_to_end(&mut rest).await.unwrap_err();
        assert!(matches!(
            Error::from_io(error),
            Ok(Error::TooLarge { limit: 4096, .. })
        ),);
        assert!(
            1000 + rest.len() <= 4096,
            "{} bytes yielded",
            1000 + rest.len()
        );
    });
}
