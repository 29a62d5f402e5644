//! Time limits, all under paused tokio time: no test waits for a real clock.

use std::io;
use std::time::Duration;

use bounded_stream::{Bounded, BoundedRead, Error, Limits, collect};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// `n` one-byte chunks, one every `every`.
fn drip(n: usize, every: Duration) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> {
    futures_util::stream::iter(0..n).then(move |_| async move {
        tokio::time::sleep(every).await;
        Ok(Bytes::from_static(b"x"))
    })
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_fires_after_the_last_byte() {
    let stalls = drip(3, Duration::from_secs(1)).chain(futures_util::stream::pending());
    let started = Instant::now();
    let err = collect(
        stalls,
        &Limits::new(100).idle_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::IdleTimeout { timeout, received: 3 } if timeout == Duration::from_secs(5)),
        "{err:?}"
    );
    // Three bytes at 1 s, 2 s, 3 s; then silence. The error comes between 5 s and
    // 6.25 s (1.25 x the timeout) after the last byte, never earlier.
    let after_last_byte = started.elapsed() - Duration::from_secs(3);
    assert!(
        after_last_byte >= Duration::from_secs(5),
        "{after_last_byte:?}"
    );
    assert!(
        after_last_byte <= Duration::from_millis(6250),
        "{after_last_byte:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_does_not_fire_while_bytes_keep_coming() {
    // A byte every 4.99 s under a 5 s idle timeout: never idle for the full 5 s.
    let got = collect(
        drip(20, Duration::from_millis(4990)),
        &Limits::new(100).idle_timeout(Duration::from_secs(5)),
    )
    .await;
    assert_eq!(got.unwrap().len(), 20);
}

#[tokio::test(start_paused = true)]
async fn deadline_bounds_the_whole_stream_even_while_bytes_flow() {
    let started = Instant::now();
    let err = collect(
        drip(100, Duration::from_secs(1)),
        &Limits::new(1000).deadline(Duration::from_secs(30)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Deadline { received, .. } if (29..=30).contains(&received)),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn min_rate_catches_a_slow_drip_that_an_idle_timeout_misses() {
    // One byte per second never trips a 5 s idle timeout, but is far under 1 KiB / 10 s.
    let limits = Limits::new(1 << 20)
        .idle_timeout(Duration::from_secs(5))
        .min_rate(1024, Duration::from_secs(10), Duration::from_secs(5));
    let started = Instant::now();
    let err = collect(drip(1000, Duration::from_secs(1)), &limits)
        .await
        .unwrap_err();
    match err {
        Error::TooSlow {
            min_bytes: 1024,
            window,
            observed,
            received,
        } => {
            assert_eq!(window, Duration::from_secs(10));
            assert!(
                (9..=10).contains(&observed),
                "{observed} bytes in the window"
            );
            assert!((14..=15).contains(&received));
        }
        other => panic!("expected TooSlow, got {other:?}"),
    }
    // Judged at grace + one window.
    assert_eq!(started.elapsed(), Duration::from_secs(15));
}

#[tokio::test(start_paused = true)]
async fn min_rate_passes_a_fast_enough_peer_and_ignores_the_grace_period() {
    // Silent for the 5 s grace, then 200 bytes per second: well over 1 KiB / 10 s.
    let late_start = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, io::Error>(Bytes::new())
    });
    let fast = late_start.chain(futures_util::stream::iter(0..40).then(|_| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Bytes::from(vec![0u8; 100]))
    }));
    let limits =
        Limits::new(1 << 20).min_rate(1024, Duration::from_secs(10), Duration::from_secs(5));
    assert_eq!(collect(fast, &limits).await.unwrap().len(), 4000);
}

#[tokio::test(start_paused = true)]
async fn min_rate_does_not_blame_the_peer_for_a_consumer_that_stopped_reading() {
    // The peer sends 1 KiB every 100 ms, ten times the floor; the consumer stops
    // reading for 35 s half-way (busy with what it read). Not the peer's slowness.
    let peer = futures_util::stream::iter(0..200).then(|_| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, io::Error>(Bytes::from(vec![0u8; 1024]))
    });
    let limits =
        Limits::new(1 << 20).min_rate(1024, Duration::from_secs(10), Duration::from_secs(5));
    let mut bounded = std::pin::pin!(Bounded::new(peer, &limits));
    let (mut total, mut chunks) = (0, 0);
    while let Some(chunk) = bounded.next().await {
        total += chunk.unwrap().len();
        chunks += 1;
        if chunks == 100 {
            tokio::time::sleep(Duration::from_secs(35)).await;
        }
    }
    assert_eq!(total, 200 * 1024);
    // And a peer that is slow while being read is still cut off, as before the pause.
    let slow = futures_util::stream::iter(0..200).then(|i| async move {
        let every = if i < 100 { 100 } else { 2_000 };
        tokio::time::sleep(Duration::from_millis(every)).await;
        Ok::<_, io::Error>(Bytes::from(vec![0u8; 100]))
    });
    let err = collect(slow, &limits).await.unwrap_err();
    assert!(matches!(err, Error::TooSlow { .. }), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn reader_time_limits_surface_as_timed_out_io_errors() {
    let source = Box::pin(drip(2, Duration::from_secs(1)).chain(futures_util::stream::pending()));
    let stalls = tokio_util::io::StreamReader::new(source);
    let mut reader = BoundedRead::new(
        stalls,
        &Limits::new(100).idle_timeout(Duration::from_secs(3)),
    );
    let err = reader.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(matches!(
        Error::from_io(err),
        Ok(Error::IdleTimeout { received: 2, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn min_rate_does_not_blame_the_peer_for_a_consumer_that_reads_slowly() {
    // Every byte is there the moment it is asked for (the source never waits); the
    // consumer takes 1 s over each 10-byte chunk, far under 1 KiB / 10 s. The peer
    // was never the one being waited for.
    let ready = futures_util::stream::iter(
        (0..60).map(|_| Ok::<_, io::Error>(Bytes::from_static(b"0123456789"))),
    );
    let limits =
        Limits::new(1 << 20).min_rate(1024, Duration::from_secs(10), Duration::from_secs(5));
    let mut bounded = std::pin::pin!(Bounded::new(ready, &limits));
    let mut total = 0;
    while let Some(chunk) = bounded.next().await {
        total += chunk.unwrap().len();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(total, 600);
}

/// `Duration::MAX` for "never" is taken (adding it to the clock once panicked on the
/// first poll): the limits are kept as `LONGEST_LIMIT`, and a slow drip finishes.
#[tokio::test(start_paused = true)]
async fn duration_max_limits_mean_never() {
    let limits = Limits::new(100)
        .idle_timeout(Duration::MAX)
        .deadline(Duration::MAX)
        .min_rate(1, Duration::MAX, Duration::MAX);
    let got = collect(drip(5, Duration::from_secs(3600)), &limits).await;
    assert_eq!(got.unwrap().len(), 5);
}

/// A zero `min_rate` window is taken as 1 ms (it once looped for ever at the first
/// check): a peer that stalls is still caught, and the error says the window used.
#[tokio::test(start_paused = true)]
async fn a_zero_min_rate_window_is_one_millisecond() {
    let stalls = drip(1, Duration::from_millis(1)).chain(futures_util::stream::pending());
    let err = collect(
        stalls,
        &Limits::new(100).min_rate(1, Duration::ZERO, Duration::ZERO),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::TooSlow { window, .. } if window == Duration::from_millis(1)),
        "{err:?}"
    );
}
