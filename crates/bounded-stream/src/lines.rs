//! Line scanning and search over any byte source, in memory bounded by the longest line
//! allowed, never by the input.

use std::io::{self, Read};
use std::ops::ControlFlow;

use memchr::memmem::Finder;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Error;

/// Bytes read from the source per call.
pub const READ_CHUNK: usize = 64 * 1024;

/// One line handed to a scan's callback.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Line<'a> {
    /// 1-based line number.
    pub number: u64,
    /// The line without its `\n` (a `\r` before it is kept): raw bytes, not UTF-8
    /// checked, so nothing is lost. At most `max_line` bytes.
    pub bytes: &'a [u8],
    /// `true` when the line was longer than `max_line`: `bytes` is its start, the rest
    /// was skipped without being buffered.
    pub truncated: bool,
}

/// What a scan saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanSummary {
    /// Lines handed to the callback.
    pub lines: u64,
    /// Bytes read from the source.
    pub bytes: u64,
    /// Lines longer than `max_line`.
    pub truncated_lines: u64,
    /// `true` when the callback stopped the scan early.
    pub stopped: bool,
}

/// The line splitter behind every scan: feed it bytes, it calls back per line. Its
/// buffer is `max_line + READ_CHUNK` bytes, allocated once.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_line: usize,
    skipping: bool,
    summary: ScanSummary,
}

impl LineSplitter {
    /// A splitter for lines of at most `max_line` bytes (longer ones are truncated).
    pub fn new(max_line: usize) -> Self {
        let max_line = max_line.max(1);
        LineSplitter {
            buf: vec![0; max_line + READ_CHUNK],
            start: 0,
            end: 0,
            max_line,
            skipping: false,
            summary: ScanSummary::default(),
        }
    }

    /// Space to read the next bytes into (at least `READ_CHUNK`); then call
    /// [`filled`](Self::filled) with how many were written.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Processes `n` new bytes written into [`spare`](Self::spare).
    pub fn filled(
        &mut self,
        n: usize,
        f: &mut impl FnMut(Line<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let scan = self.end;
        self.end += n;
        self.summary.bytes += n as u64;
        let (buf, summary, max_line) = (&self.buf, &mut self.summary, self.max_line);
        // Loop state in locals (registers), written back once.
        let (mut start, mut skipping) = (self.start, self.skipping);
        let mut flow = ControlFlow::Continue(());
        // One iterator over all the newlines just read: memchr's per-call setup is paid
        // once per read, not once per line.
        for i in memchr::memchr_iter(b'\n', &buf[scan..self.end]) {
            let nl = scan + i;
            if skipping {
                skipping = false;
            } else {
                flow = emit(buf, start, nl, max_line, summary, f);
            }
            start = nl + 1;
            if flow.is_break() {
                break;
            }
        }
        (self.start, self.skipping) = (start, skipping);
        flow?;
        if self.skipping {
            self.start = self.end; // The rest of an over-long line: dropped unread.
        } else if self.end - self.start > self.max_line {
            let flow = emit(buf, self.start, self.end, max_line, summary, f);
            self.skipping = true;
            self.start = self.end;
            flow?;
        }
        ControlFlow::Continue(())
    }

    /// The end of input: the last line, if it had no `\n`.
    pub fn finish(mut self, f: &mut impl FnMut(Line<'_>) -> ControlFlow<()>) -> ScanSummary {
        self.flush(f)
    }

    fn flush(&mut self, f: &mut impl FnMut(Line<'_>) -> ControlFlow<()>) -> ScanSummary {
        if !self.skipping && self.end > self.start {
            let _ = emit(
                &self.buf,
                self.start,
                self.end,
                self.max_line,
                &mut self.summary,
                f,
            );
            self.start = self.end;
        }
        self.summary
    }

    /// Handles one read's outcome: `Break` with the scan's result once it is over.
    fn step(
        &mut self,
        read: io::Result<usize>,
        f: &mut impl FnMut(Line<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<Result<ScanSummary, Error>> {
        match read {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(Err(read_error(e, self.summary.bytes))),
            Ok(0) => ControlFlow::Break(Ok(self.flush(f))),
            Ok(n) if self.filled(n, f).is_break() => ControlFlow::Break(Ok(self.summary)),
            Ok(_) => ControlFlow::Continue(()),
        }
    }
}

/// Hands `buf[from..to]` (cut to `max_line`) to the callback as the next line.
fn emit(
    buf: &[u8],
    from: usize,
    to: usize,
    max_line: usize,
    summary: &mut ScanSummary,
    f: &mut impl FnMut(Line<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let truncated = to - from > max_line;
    let to = if truncated { from + max_line } else { to };
    summary.lines += 1;
    summary.truncated_lines += truncated as u64;
    let flow = f(Line {
        number: summary.lines,
        bytes: &buf[from..to],
        truncated,
    });
    if flow.is_break() {
        summary.stopped = true;
    }
    flow
}

fn read_error(error: io::Error, bytes: u64) -> Error {
    Error::from_io(error).unwrap_or_else(|source| Error::Source {
        received: bytes,
        source,
    })
}

/// Calls `f` with each line of `reader`, in memory bounded by `max_line` (plus one read
/// chunk), until the input ends or `f` returns `Break`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bounded_stream::Error> {
/// use std::ops::ControlFlow;
///
/// let log = &b"ok\nwarning: disk 91% full\nok\n"[..];
/// let mut first = None;
/// let summary = bounded_stream::scan_lines(log, 4096, |line| {
///     if line.bytes.starts_with(b"warning:") {
///         first = Some(line.number);
///         return ControlFlow::Break(());
///     }
///     ControlFlow::Continue(())
/// })
/// .await?;
/// assert_eq!(first, Some(2));
/// assert!(summary.stopped);
/// # Ok(()) }
/// ```
pub async fn scan_lines<R: AsyncRead + Unpin>(
    mut reader: R,
    max_line: usize,
    mut f: impl FnMut(Line<'_>) -> ControlFlow<()>,
) -> Result<ScanSummary, Error> {
    let mut splitter = LineSplitter::new(max_line);
    loop {
        let read = reader.read(splitter.spare()).await;
        if let ControlFlow::Break(result) = splitter.step(read, &mut f) {
            return result;
        }
    }
}

/// [`scan_lines`] for a blocking reader (a file in the page cache, a pipe): no async
/// round trips per chunk. Run it on a blocking thread.
pub fn scan_lines_blocking<R: Read>(
    mut reader: R,
    max_line: usize,
    mut f: impl FnMut(Line<'_>) -> ControlFlow<()>,
) -> Result<ScanSummary, Error> {
    let mut splitter = LineSplitter::new(max_line);
    loop {
        let read = reader.read(splitter.spare());
        if let ControlFlow::Break(result) = splitter.step(read, &mut f) {
            return result;
        }
    }
}

/// Where a search found its needle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LineMatch {
    /// 1-based line number.
    pub number: u64,
    /// The line (at most `max_line` bytes of it).
    pub line: bytes::Bytes,
}

/// The first line containing `needle` ("does this CI log contain `warning:`?"), in
/// memory bounded by `max_line`. A needle past the first `max_line` bytes of an
/// over-long line is not seen; use [`find`] to search raw bytes.
pub async fn find_line<R: AsyncRead + Unpin>(
    reader: R,
    needle: &[u8],
    max_line: usize,
) -> Result<Option<LineMatch>, Error> {
    let finder = Finder::new(needle);
    first_line(reader, max_line, |line| finder.find(line).is_some()).await
}

/// The first line matching `regex`, like [`find_line`].
#[cfg(feature = "regex")]
#[cfg_attr(docsrs, doc(cfg(feature = "regex")))]
pub async fn find_line_regex<R: AsyncRead + Unpin>(
    reader: R,
    regex: &regex::bytes::Regex,
    max_line: usize,
) -> Result<Option<LineMatch>, Error> {
    first_line(reader, max_line, |line| regex.is_match(line)).await
}

/// The first line for which `matches` holds.
async fn first_line<R: AsyncRead + Unpin>(
    reader: R,
    max_line: usize,
    matches: impl Fn(&[u8]) -> bool,
) -> Result<Option<LineMatch>, Error> {
    let mut found = None;
    scan_lines(reader, max_line, |line| {
        if !matches(line.bytes) {
            return ControlFlow::Continue(());
        }
        let line_bytes = bytes::Bytes::copy_from_slice(line.bytes);
        found = Some(LineMatch {
            number: line.number,
            line: line_bytes,
        });
        ControlFlow::Break(())
    })
    .await?;
    Ok(found)
}

/// The byte offset of the first `needle` in `reader`, lines or not (a 1 GiB single-line
/// log included), in memory bounded by one read chunk plus the needle.
pub async fn find<R: AsyncRead + Unpin>(
    mut reader: R,
    needle: &[u8],
) -> Result<Option<u64>, Error> {
    if needle.is_empty() {
        return Ok(Some(0));
    }
    let finder = Finder::new(needle);
    let keep = needle.len() - 1;
    let mut buf = vec![0u8; READ_CHUNK + keep];
    let mut carried = 0; // Bytes kept from the previous chunk (a needle may straddle).
    let mut offset: u64 = 0; // Stream offset of buf[0].
    loop {
        let n = match reader.read(&mut buf[carried..]).await {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e, offset + carried as u64)),
        };
        if n == 0 {
            return Ok(None);
        }
        let filled = carried + n;
        if let Some(at) = finder.find(&buf[..filled]) {
            return Ok(Some(offset + at as u64));
        }
        let tail = keep.min(filled);
        buf.copy_within(filled - tail..filled, 0);
        offset += (filled - tail) as u64;
        carried = tail;
    }
}
