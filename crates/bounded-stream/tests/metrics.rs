//! The `metrics` feature, read from a recorder: bytes handed over per MiB and at each
//! stream's end, and each limit that ended a stream. One test: the counters are
//! process-wide.

#![cfg(feature = "metrics")]

use std::io;

use bounded_stream::{Limits, collect, metrics};
use bytes::Bytes;
use leakproof_test_support::metrics::{recorder, value};

fn chunks(n: usize, size: usize) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> {
    futures_util::stream::iter((0..n).map(move |_| Ok(Bytes::from(vec![7u8; size]))))
}

#[tokio::test]
async fn bytes_and_limit_errors_are_counted() {
    recorder();
    let wire = || value(metrics::BYTES, &[("stage", "wire")]).unwrap_or(0.0);
    let refused = || value(metrics::LIMIT_ERRORS, &[("limit", "bytes")]).unwrap_or(0.0);
    let (before, refused_before) = (wire(), refused());
    // 3 MiB + 5 bytes in 64 KiB chunks, under a 4 MiB cap.
    let mut parts: Vec<Result<Bytes, io::Error>> = (0..48)
        .map(|_| Ok(Bytes::from(vec![1u8; 64 << 10])))
        .collect();
    parts.push(Ok(Bytes::from_static(b"12345")));
    let got = collect(futures_util::stream::iter(parts), &Limits::new(4 << 20))
        .await
        .unwrap();
    assert_eq!(got.len(), (3 << 20) + 5);
    assert_eq!(wire() - before, ((3 << 20) + 5) as f64);
    assert_eq!(refused(), refused_before);

    // Over the cap: refused, counted once, and the bytes it took counted.
    let before = wire();
    let err = collect(chunks(10, 1000), &Limits::new(2500))
        .await
        .unwrap_err();
    assert!(
        matches!(err, bounded_stream::Error::TooLarge { limit: 2500, .. }),
        "{err}"
    );
    assert_eq!(refused() - refused_before, 1.0);
    assert_eq!(wire() - before, 3000.0);
}

#[tokio::test]
async fn a_long_stream_is_counted_while_it_runs() {
    use futures_util::StreamExt;
    recorder();
    let decoded = || value(metrics::BYTES, &[("stage", "decoded")]).unwrap_or(0.0);
    let before = decoded();
    let stage = bounded_stream::Stage::Decoded;
    let mut stream = Box::pin(bounded_stream::Bounded::at_stage(
        chunks(40, 64 << 10),
        &Limits::new(u64::MAX),
        stage,
    ));
    for _ in 0..24 {
        stream.next().await.unwrap().unwrap();
    }
    // 1.5 MiB taken: the first MiB was handed over, the rest waits for the next MiB.
    assert_eq!(decoded() - before, (1 << 20) as f64);
    drop(stream);
    assert_eq!(decoded() - before, (24 * (64 << 10)) as f64);
}
