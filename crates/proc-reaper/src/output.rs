//! Output capture: the last N bytes of a pipe, and optionally each line to a callback,
//! in memory bounded by the tail plus one line, however much the child writes.

use std::collections::VecDeque;
use std::io;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

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
}

impl Captured {
    /// The tail as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.tail).into_owned()
    }
}

/// A ring of the last `cap` bytes.
struct Tail {
    ring: VecDeque<u8>,
    cap: usize,
    total: u64,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Tail {
            ring: VecDeque::with_capacity(cap.min(64 << 10)),
            cap,
            total: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let new = &bytes[bytes.len().saturating_sub(self.cap)..];
        let excess = (self.ring.len() + new.len()).saturating_sub(self.cap);
        self.ring.drain(..excess);
        self.ring.extend(new);
    }

    fn finish(self) -> Captured {
        let (a, b) = self.ring.as_slices();
        Captured {
            tail: [a, b].concat().into(),
            total: self.total,
            truncated: self.total > self.cap as u64,
        }
    }
}

/// Reads `reader` to its end, keeping the last `tail` bytes and, with a sink, handing
/// each line to it. A read error ends the capture with what was kept.
pub(crate) async fn capture<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: Stream,
    tail: usize,
    max_line: usize,
    sink: Option<LineSink>,
) -> Captured {
    let mut kept = Tail::new(tail);
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
                Ok(summary) => kept.total = summary.bytes,
                Err(e) => tracing::debug!(error = %e, "proc-reaper: output scan failed"),
            }
        }
    }
    kept.finish()
}
