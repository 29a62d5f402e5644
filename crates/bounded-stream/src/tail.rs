//! The end of a stream: the last N bytes or lines, in memory bounded by N.

use std::collections::VecDeque;
use std::io;
use std::ops::ControlFlow;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Error;
use crate::lines::{READ_CHUNK, scan_lines};

/// The last `cap` bytes pushed into it, and how many were pushed in all: the ring
/// behind [`tail_bytes`], for callers that feed it themselves (a child's output).
///
/// ```
/// let mut tail = bounded_stream::TailBuffer::new(4);
/// tail.push(b"hello ");
/// tail.push(b"world");
/// assert_eq!((tail.total(), tail.truncated()), (11, true));
/// assert_eq!(&tail.into_bytes()[..], b"orld");
/// ```
#[derive(Debug, Clone)]
pub struct TailBuffer {
    ring: VecDeque<u8>,
    cap: usize,
    total: u64,
}

impl TailBuffer {
    /// An empty tail of at most `cap` bytes (memory grows with what is pushed, up to it).
    pub fn new(cap: usize) -> Self {
        TailBuffer {
            ring: VecDeque::with_capacity(cap.min(64 << 10)),
            cap,
            total: 0,
        }
    }

    /// Appends `bytes`, dropping the oldest beyond the cap.
    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let new = &bytes[bytes.len().saturating_sub(self.cap)..];
        let excess = (self.ring.len() + new.len()).saturating_sub(self.cap);
        self.ring.drain(..excess);
        self.ring.extend(new);
    }

    /// Bytes pushed in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// `true` when more was pushed than the tail holds.
    pub fn truncated(&self) -> bool {
        self.total > self.cap as u64
    }

    /// The bytes kept, oldest first.
    pub fn into_bytes(self) -> Bytes {
        let (a, b) = self.ring.as_slices();
        [a, b].concat().into()
    }
}

/// The last `n` bytes of `reader` (all of it if shorter), holding at most `n` bytes plus
/// one read chunk at a time: for error reports from huge logs.
pub async fn tail_bytes<R: AsyncRead + Unpin>(mut reader: R, n: usize) -> Result<Bytes, Error> {
    let mut tail = TailBuffer::new(n);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let k = match reader.read(&mut chunk).await {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::from_io(e).unwrap_or_else(|source| Error::Source {
                    received: tail.total(),
                    source,
                }));
            }
        };
        if k == 0 {
            return Ok(tail.into_bytes());
        }
        tail.push(&chunk[..k]);
    }
}

/// The last `n` lines of `reader`, each at most `max_line` bytes: at most `n` lines of
/// `max_line` bytes plus one read chunk in memory. A line longer than `max_line` is
/// kept as its first `max_line` bytes.
pub async fn tail_lines<R: AsyncRead + Unpin>(
    reader: R,
    n: usize,
    max_line: usize,
) -> Result<Vec<Bytes>, Error> {
    let mut ring: VecDeque<Bytes> = VecDeque::with_capacity(n.min(4096));
    if n == 0 {
        scan_lines(reader, max_line, |_| ControlFlow::Continue(())).await?;
        return Ok(Vec::new());
    }
    scan_lines(reader, max_line, |line| {
        if ring.len() == n {
            ring.pop_front();
        }
        ring.push_back(Bytes::copy_from_slice(line.bytes));
        ControlFlow::Continue(())
    })
    .await?;
    Ok(ring.into())
}
