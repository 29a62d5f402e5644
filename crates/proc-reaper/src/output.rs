//! Output capture: the last N bytes of a pipe, and optionally each line to a callback,
//! in memory bounded by the tail plus one line, however much the child writes.

use std::io;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};

use bounded_stream::TailBuffer;
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

fn finish(kept: TailBuffer) -> Captured {
    Captured {
        total: kept.total(),
        truncated: kept.truncated(),
        tail: kept.into_bytes(),
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
