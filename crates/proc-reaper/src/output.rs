//! Output capture: the last N bytes of a pipe, and optionally each line to a callback,
//! in memory bounded by the tail plus one line, however much the child writes.

use std::future::Future;
use std::io;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bounded_stream::TailBuffer;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::watch;

/// Which of the child's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A callback that gets each output line (without its `\n`, at most the line cap).
pub type LineSink = Arc<Mutex<dyn FnMut(Stream, &[u8]) + Send>>;

/// What was kept of one output stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Captured {
    /// The last bytes written (at most the tail size).
    pub tail: Bytes,
    /// Bytes written in all.
    pub total: u64,
    /// `true` when more was written than the tail holds.
    pub truncated: bool,
    /// `true` when the pipe was still held open (by a process outside the tree) when
    /// the time to drain it ran out: reading stopped there and our end was closed, so
    /// whatever its holder wrote later is not here.
    pub cut: bool,
}

impl Captured {
    /// The tail as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.tail).into_owned()
    }
}

fn finish(kept: TailBuffer) -> Captured {
    Captured {
        total: kept.total(),
        truncated: kept.truncated(),
        tail: kept.into_bytes(),
        cut: false,
    }
}

/// A pipe reader that can be told to stop: from then on, a read that would wait ends
/// the stream instead (what is buffered is still read), and the stream is marked cut.
pub(crate) struct Stoppable<R> {
    inner: R,
    /// Resolves once told to stop (`true` sent, or the sender dropped).
    stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    cut: Arc<AtomicBool>,
}

impl<R> Stoppable<R> {
    pub(crate) fn new(inner: R, mut stopped: watch::Receiver<bool>) -> Self {
        Stoppable {
            inner,
            stop: Some(Box::pin(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })),
            cut: Arc::default(),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Stoppable<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(read) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            return Poll::Ready(read);
        }
        let stopped = match &mut this.stop {
            Some(stop) => stop.as_mut().poll(cx).is_ready(),
            None => true,
        };
        if !stopped {
            return Poll::Pending;
        }
        // Nothing buffered, and the pipe is still open: end here.
        this.stop = None;
        this.cut.store(true, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

/// Reads `reader` to its end (or until told to stop), keeping the last `tail` bytes
/// and, with a sink, handing each line to it. A read error ends the capture with what
/// was kept. The pipe is closed on return.
pub(crate) async fn capture<R: AsyncRead + Unpin>(
    reader: Stoppable<R>,
    stream: Stream,
    tail: usize,
    max_line: usize,
    sink: Option<LineSink>,
) -> Captured {
    let cut = reader.cut.clone();
    let mut captured = read_all(reader, stream, tail, max_line, sink).await;
    captured.cut = cut.load(Ordering::Relaxed);
    captured
}

async fn read_all<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: Stream,
    tail: usize,
    max_line: usize,
    sink: Option<LineSink>,
) -> Captured {
    let mut kept = TailBuffer::new(tail);
    match sink {
        None => {
            let mut chunk = vec![0u8; 16 << 10];
            loop {
                match reader.read(&mut chunk).await {
                    Ok(0) => break,
                    Ok(k) => kept.push(&chunk[..k]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "proc-reaper: output read failed");
                        break;
                    }
                }
            }
        }
        Some(sink) => {
            let outcome = bounded_stream::scan_lines(reader, max_line, |line| {
                kept.push(line.bytes);
                kept.push(b"\n");
                let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
                (sink)(stream, line.bytes);
                ControlFlow::Continue(())
            })
            .await;
            match outcome {
                // Count what the child wrote, not the lines kept (long lines are cut).
                Ok(summary) => {
                    let mut captured = finish(kept);
                    captured.total = summary.bytes;
                    captured.truncated = summary.bytes > tail as u64 || summary.truncated_lines > 0;
                    return captured;
                }
                Err(e) => tracing::debug!(error = %e, "proc-reaper: output scan failed"),
            }
        }
    }
    finish(kept)
}
