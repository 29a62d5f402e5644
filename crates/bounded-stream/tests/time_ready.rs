//! Time limits over a source that is always ready, on tokio's real clock.
//!
//! tokio's timer fires only when the runtime gets control back. On a current-thread
//! runtime a stream whose source never returns `Pending`, read by a consumer that never
//! yields, never gives it back, so the limits must also be checked per chunk against a
//! clock. That is a real-time question (a paused clock does not move while the task
//! runs), so these tests run on the real clock: each chunk's consumer works 1 ms, the
//! deadline is 20 ms, and the stream would last at least 2 s. The only assertion on
//! time is that the deadline ended the stream before its end, a hundredfold margin.

use std::io;
use std::time::Duration;

use bounded_stream::{Bounded, BoundedRead, Error, Limits};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

const CHUNKS: usize = 2000;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn limits() -> Limits {
    Limits::new(1 << 30).deadline(Duration::from_millis(20))
}

/// The consumer's work on a chunk: it holds the thread, as parsing or hashing would.
fn work() {
    std::thread::sleep(Duration::from_millis(1));
}

#[test]
fn a_deadline_ends_an_always_ready_stream_on_a_current_thread_runtime() {
    current_thread().block_on(async {
        let ready = futures_util::stream::iter(
            (0..CHUNKS).map(|_| Ok::<_, io::Error>(Bytes::from_static(b"0123456789"))),
        );
        let mut bounded = std::pin::pin!(Bounded::new(ready, &limits()));
        let mut chunks = 0;
        let err = loop {
            match bounded.next().await {
                Some(Ok(_)) => chunks += 1,
                Some(Err(err)) => break err,
                None => panic!("all {chunks} chunks passed a 20 ms deadline"),
            }
            work();
        };
        assert!(
            matches!(err, Error::Deadline { deadline, received }
                if deadline == Duration::from_millis(20) && received == 10 * chunks as u64),
            "{err:?}"
        );
        assert!(chunks < CHUNKS);
        // Ended, and stays ended.
        assert!(bounded.next().await.is_none());
    });
}

#[test]
fn a_deadline_ends_an_always_ready_reader_on_a_current_thread_runtime() {
    current_thread().block_on(async {
        let data = vec![b'x'; CHUNKS * 10];
        let mut reader = BoundedRead::new(&data[..], &limits());
        let mut buf = [0u8; 10];
        let mut reads = 0;
        let err = loop {
            match reader.read(&mut buf).await {
                Ok(0) => panic!("all {reads} reads passed a 20 ms deadline"),
                Ok(_) => reads += 1,
                Err(err) => break err,
            }
            work();
        };
        let err = err
            .into_inner()
            .and_then(|e| e.downcast::<Error>().ok())
            .expect("the crate's error inside the io::Error");
        assert!(matches!(*err, Error::Deadline { .. }), "{err:?}");
        assert!(reads < CHUNKS);
    });
}
