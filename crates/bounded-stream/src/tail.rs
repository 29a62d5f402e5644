//! The end of a stream: the last N bytes or lines, in memory bounded by N.

use std::collections::VecDeque;
use std::io;
use std::ops::ControlFlow;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Error;
use crate::lines::{READ_CHUNK, scan_lines};

/// The last `n` bytes of `reader` (all of it if shorter), holding at most `n` bytes plus
/// one read chunk at a time: for error reports from huge logs.
pub async fn tail_bytes<R: AsyncRead + Unpin>(mut reader: R, n: usize) -> Result<Bytes, Error> {
    let mut ring: VecDeque<u8> = VecDeque::with_capacity(n.min(1 << 20));
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut total: u64 = 0;
    loop {
        let k = match reader.read(&mut chunk).await {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::from_io(e).unwrap_or_else(|source| Error::Source {
                    received: total,
                    source,
                }));
            }
        };
        if k == 0 {
            let (a, b) = ring.as_slices();
            return Ok([a, b].concat().into());
        }
        total += k as u64;
        let new = &chunk[k.saturating_sub(n)..k];
        let excess = (ring.len() + new.len()).saturating_sub(n);
        ring.drain(..excess);
        ring.extend(new);
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
