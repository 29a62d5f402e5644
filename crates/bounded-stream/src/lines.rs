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
    /// The byte offset of the line's first byte in the input (ripgrep's
    /// `--byte-offset`): where to seek to read it whole, a truncated line included.
    pub offset: u64,
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
/// buffer holds one read (`READ_CHUNK`) and the incomplete line before it: room for
/// `READ_CHUNK` of that at first (or `max_line`, if smaller), doubled while a longer
/// incomplete line needs it, never past `max_line`. So `max_line` is a bound, not an
/// allocation: a generous one costs nothing until a line that long comes.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Where reads go (aligned); an incomplete line is kept just before it.
    head: usize,
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
        let (buf, head) = read_buffer(max_line.min(INITIAL_KEEP));
        LineSplitter {
            buf,
            head,
            start: head,
            end: head,
            max_line,
            skipping: false,
            summary: ScanSummary::default(),
        }
    }

    /// Space to read the next bytes into (`READ_CHUNK`, at an aligned address); then
    /// call [`filled`](Self::filled) with how many were written.
    pub fn spare(&mut self) -> &mut [u8] {
        let max_line = self.max_line;
        make_room(
            &mut self.buf,
            &mut self.head,
            &mut self.start,
            &mut self.end,
            max_line,
        )
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
        let (buf, max_line) = (&self.buf[..self.end], self.max_line);
        // The input offset of `buf[0]`, modulo 2^64 (the buffer's head may be longer
        // than what was read so far): a line's offset is this plus its start, one add.
        let base = self.summary.bytes.wrapping_sub(self.end as u64);
        // Loop state in locals (registers), written back once; the per-line work is a
        // compare, two adds and the call.
        let (mut start, mut skipping) = (self.start, self.skipping);
        let (mut lines, mut truncated_lines) = (self.summary.lines, 0u64);
        let mut flow = ControlFlow::Continue(());
        // One iterator over all the newlines just read: memchr's per-call setup is paid
        // once per read, not once per line.
        let mut newlines = memchr::memchr_iter(b'\n', &buf[scan..]);
        if skipping && let Some(i) = newlines.next() {
            // The rest of an over-long line ends here, unseen.
            start = scan + i + 1;
            skipping = false;
        }
        if !skipping {
            for i in newlines {
                let nl = scan + i;
                let truncated = nl - start > max_line;
                let to = if truncated { start + max_line } else { nl };
                lines += 1;
                truncated_lines += u64::from(truncated);
                let line = Line {
                    number: lines,
                    offset: base.wrapping_add(start as u64),
                    bytes: &buf[start..to],
                    truncated,
                };
                start = nl + 1;
                flow = f(line);
                if flow.is_break() {
                    break;
                }
            }
        }
        self.summary.lines = lines;
        self.summary.truncated_lines += truncated_lines;
        if flow.is_break() {
            self.summary.stopped = true;
        }
        (self.start, self.skipping) = (start, skipping);
        flow?;
        if self.skipping {
            self.start = self.end; // The rest of an over-long line: dropped unread.
        } else if self.end - self.start > self.max_line {
            let flow = emit(
                &self.buf,
                self.start,
                self.end,
                max_line,
                &mut self.summary,
                f,
            );
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

/// Alignment of the read area: the kernel copies a read fastest to an aligned
/// destination, and bytes carried over in front of the read (an incomplete line, a
/// needle's possible start) used to misalign every read by their length.
const ALIGN: usize = 64;

/// Room for an incomplete line set aside before any line needs more: a larger
/// `max_line` is grown into (`make_room`). Allocating `max_line` up front made
/// `scan_lines(reader, 1 << 40, ..)` ask for 1 TiB and abort the process.
const INITIAL_KEEP: usize = READ_CHUNK;

/// A read buffer with room for `keep` bytes carried over (an incomplete line, a needle's
/// possible start) in front of a `READ_CHUNK` read area at an aligned address; returns
/// it and where the read area starts (the "head").
fn read_buffer(keep: usize) -> (Vec<u8>, usize) {
    let mut buf = vec![0; keep.saturating_add(ALIGN + READ_CHUNK)];
    let head = keep + aligning(&buf, keep);
    buf.truncate(head + READ_CHUNK);
    (buf, head)
}

/// Moves the carried bytes `buf[*start..*end]` (at most `max_keep` of them) to end at
/// `head`, and returns the read area after them. More than `head` of them: the buffer
/// first grows to twice the room (or as much as they need), up to `max_keep`, in place
/// where the allocator can (a large block is remapped, not copied beside the old one).
fn make_room<'b>(
    buf: &'b mut Vec<u8>,
    head: &mut usize,
    start: &mut usize,
    end: &mut usize,
    max_keep: usize,
) -> &'b mut [u8] {
    if *end != *head {
        let len = *end - *start;
        if len > *head {
            let keep = head.saturating_mul(2).min(max_keep).max(len);
            buf.copy_within(*start..*end, 0);
            let grown = keep.saturating_add(ALIGN + READ_CHUNK);
            // Exact: `resize` alone would double the capacity.
            buf.reserve_exact(grown.saturating_sub(buf.len()));
            buf.resize(grown, 0);
            *head = keep + aligning(buf, keep);
            buf.truncate(*head + READ_CHUNK);
            buf.copy_within(0..len, *head - len);
        } else {
            buf.copy_within(*start..*end, *head - len);
        }
        (*start, *end) = (*head - len, *head);
    }
    &mut buf[*head..]
}

/// The padding after `buf[..at]` that puts the next byte at an `ALIGN` address.
fn aligning(buf: &[u8], at: usize) -> usize {
    (ALIGN - (buf.as_ptr() as usize).wrapping_add(at) % ALIGN) % ALIGN
}

/// Hands `buf[from..to]` to `f` as one line (cut to `max_line`); `to` is the end of
/// what was read, so the line starts `to - from` bytes before `summary.bytes`.
fn emit(
    buf: &[u8],
    from: usize,
    to: usize,
    max_line: usize,
    summary: &mut ScanSummary,
    f: &mut impl FnMut(Line<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let offset = summary.bytes - (to - from) as u64;
    let truncated = to - from > max_line;
    let to = if truncated { from + max_line } else { to };
    summary.lines += 1;
    summary.truncated_lines += truncated as u64;
    let flow = f(Line {
        number: summary.lines,
        offset,
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
    /// 1-based line number: `Some` when the search counted lines
    /// ([`LineFinder::line_numbers`], and always from `find_line_regex`); `None`
    /// from [`find_line`], which does not count them.
    pub number: Option<u64>,
    /// The byte offset of the line's first byte in the input (ripgrep's
    /// `--byte-offset`), counted whether or not lines are.
    pub offset: u64,
    /// The line (at most `max_line` bytes of it).
    pub line: bytes::Bytes,
}

/// The first line containing `needle` ("does this CI log contain `warning:`?"), in
/// memory bounded by `max_line`, without its line number ([`LineMatch::number`] is
/// `None`). A needle past the first `max_line` bytes of an over-long line is not seen;
/// use [`find`] to search raw bytes.
///
/// Searched as ripgrep does: `memmem` over everything read, the line around a hit found
/// afterwards, so the scan does not stop at each line. For the line's number too, use
/// [`LineFinder`] with [`line_numbers`](LineFinder::line_numbers) set: counting every
/// newline read made the search about 1.2x as long on a page-cached log.
pub async fn find_line<R: AsyncRead + Unpin>(
    reader: R,
    needle: &[u8],
    max_line: usize,
) -> Result<Option<LineMatch>, Error> {
    LineFinder::new(needle)
        .max_line(max_line)
        .find(reader)
        .await
}

/// [`find_line`] for a blocking reader (a file in the page cache): no async round trip
/// per chunk. Run it on a blocking thread.
pub fn find_line_blocking<R: Read>(
    reader: R,
    needle: &[u8],
    max_line: usize,
) -> Result<Option<LineMatch>, Error> {
    LineFinder::new(needle)
        .max_line(max_line)
        .find_blocking(reader)
}

/// A line search with its settings: [`find_line`]'s search, with line numbers when
/// asked (as ripgrep's searcher counts lines only under `--line-number`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bounded_stream::Error> {
/// use bounded_stream::LineFinder;
///
/// let log = &b"step 1 ok\nwarning: deprecated flag\nstep 2 ok\n"[..];
/// let hit = LineFinder::new(b"warning:")
///     .max_line(64 * 1024)
///     .line_numbers(true)
///     .find(log)
///     .await?;
/// assert_eq!(hit.map(|m| m.number), Some(Some(2)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LineFinder<'n> {
    needle: &'n [u8],
    max_line: usize,
    numbers: bool,
}

impl<'n> LineFinder<'n> {
    /// A search for the first line holding `needle`: lines of up to [`READ_CHUNK`]
    /// bytes searched whole, no line numbers.
    pub fn new(needle: &'n [u8]) -> Self {
        LineFinder {
            needle,
            max_line: READ_CHUNK,
            numbers: false,
        }
    }

    /// The longest line kept in memory (at least 1): the search's memory is at most
    /// this plus one [`READ_CHUNK`], and grows to it only as long lines come. A needle
    /// past the first `max_line` bytes of a longer line is not seen.
    pub fn max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// Count lines, so that a match carries its [`number`](LineMatch::number): every
    /// newline read is counted (vectorised), about a fifth more time on a page-cached
    /// log. Default: off.
    pub fn line_numbers(mut self, count: bool) -> Self {
        self.numbers = count;
        self
    }

    /// Searches `reader` to its first matching line or its end.
    pub async fn find<R: AsyncRead + Unpin>(&self, reader: R) -> Result<Option<LineMatch>, Error> {
        let mut search = LineSearch::new(self);
        drive(reader, &mut search).await
    }

    /// [`find`](Self::find) for a blocking reader (a file in the page cache): no async
    /// round trip per chunk. Run it on a blocking thread.
    pub fn find_blocking<R: Read>(&self, reader: R) -> Result<Option<LineMatch>, Error> {
        let mut search = LineSearch::new(self);
        drive_blocking(reader, &mut search)
    }
}

/// A search fed one read at a time: where the next read goes, and what a read's
/// outcome leads to (`Break` with the answer once there is one).
trait Search {
    type Answer;
    fn spare(&mut self) -> &mut [u8];
    fn step(&mut self, read: io::Result<usize>) -> ControlFlow<Result<Self::Answer, Error>>;
}

async fn drive<S: Search>(
    mut reader: impl AsyncRead + Unpin,
    search: &mut S,
) -> Result<S::Answer, Error> {
    loop {
        let read = reader.read(search.spare()).await;
        if let ControlFlow::Break(result) = search.step(read) {
            return result;
        }
    }
}

fn drive_blocking<S: Search>(mut reader: impl Read, search: &mut S) -> Result<S::Answer, Error> {
    loop {
        let read = reader.read(search.spare());
        if let ControlFlow::Break(result) = search.step(read) {
            return result;
        }
    }
}

/// The line search behind [`find_line`]: the splitter's buffer (room for an incomplete
/// line, grown up to `max_line` as needed, then one read chunk), searched a read at a
/// time instead of a line at a time.
struct LineSearch<'n> {
    finder: Finder<'n>,
    /// A needle holding a newline is in no line: the input is read to its end (so read
    /// errors still surface) and nothing is found.
    in_no_line: bool,
    buf: Vec<u8>,
    /// Where reads go (aligned); the incomplete line is kept just before it.
    head: usize,
    /// Start of the line not yet complete (everything before it was searched).
    start: usize,
    end: usize,
    /// The number of the line at `start`, when `numbers`.
    line: u64,
    /// Count lines ([`LineFinder::line_numbers`]).
    numbers: bool,
    max_line: usize,
    /// The line at `start` began in an earlier read and was over `max_line`: its
    /// searchable start is gone, the rest is skipped up to its newline.
    skipping: bool,
    received: u64,
}

impl<'n> LineSearch<'n> {
    fn new(settings: &LineFinder<'n>) -> Self {
        let (needle, max_line) = (settings.needle, settings.max_line.max(1));
        let (buf, head) = read_buffer(max_line.min(INITIAL_KEEP));
        LineSearch {
            finder: Finder::new(needle),
            in_no_line: memchr::memchr(b'\n', needle).is_some(),
            buf,
            head,
            start: head,
            end: head,
            line: 1,
            numbers: settings.numbers,
            max_line,
            skipping: false,
            received: 0,
        }
    }

    /// Searches what `n` new bytes completed; keeps the incomplete line for later.
    fn filled(&mut self, n: usize) -> Option<LineMatch> {
        let scan = self.end;
        self.end += n;
        self.received += n as u64;
        if let Some(last) = memchr::memrchr(b'\n', &self.buf[scan..self.end]) {
            let complete = scan + last + 1;
            let mut from = self.start;
            if self.skipping {
                // The over-long line's tail ends at the first newline.
                let nl = from + memchr::memchr(b'\n', &self.buf[from..complete]).unwrap_or(0);
                from = nl + 1;
                self.line += 1;
                self.skipping = false;
            }
            if !self.in_no_line
                && let Some(found) = self.search(from, complete)
            {
                return Some(found);
            }
            if self.numbers {
                self.line += count_lines(&self.buf[from..complete]);
            }
            self.start = complete;
        }
        if self.skipping {
            self.start = self.end;
        } else if self.end - self.start > self.max_line {
            // An over-long line: only its first `max_line` bytes are searched, now.
            let cut = self.start + self.max_line;
            if !self.in_no_line && self.finder.find(&self.buf[self.start..cut]).is_some() {
                return Some(self.found(self.start, cut));
            }
            self.skipping = true;
            self.start = self.end;
        }
        None
    }

    /// The first line in `buf[from..to]` (whole lines, the last maybe without its
    /// newline, `from` at a line's start) whose first `max_line` bytes hold the needle.
    fn search(&self, from: usize, to: usize) -> Option<LineMatch> {
        let mut at = from;
        while let Some(hit) = self.finder.find(&self.buf[at..to]) {
            let hit = at + hit;
            let line_start = memchr::memrchr(b'\n', &self.buf[at..hit]).map_or(at, |i| at + i + 1);
            let line_end = memchr::memchr(b'\n', &self.buf[hit..to]).map_or(to, |i| hit + i);
            if hit + self.finder.needle().len() <= line_start.saturating_add(self.max_line) {
                let number = self
                    .numbers
                    .then(|| self.line + count_lines(&self.buf[from..line_start]));
                let end = line_end.min(line_start.saturating_add(self.max_line));
                return Some(LineMatch {
                    number,
                    offset: self.offset_of(line_start),
                    line: bytes::Bytes::copy_from_slice(&self.buf[line_start..end]),
                });
            }
            // Past the searchable start of an over-long line: on to the next line.
            at = line_end + 1;
            if at >= to {
                break;
            }
        }
        None
    }

    /// The over-long line at `from` (its searchable start `buf[from..cut]`) as a match.
    fn found(&self, from: usize, cut: usize) -> LineMatch {
        LineMatch {
            number: self.numbers.then_some(self.line),
            offset: self.offset_of(from),
            line: bytes::Bytes::copy_from_slice(&self.buf[from..cut]),
        }
    }

    /// The input offset of `buf[at]`, for `at` in what was read (`buf[end]` is at
    /// `received`).
    fn offset_of(&self, at: usize) -> u64 {
        self.received - (self.end - at) as u64
    }
}

impl Search for LineSearch<'_> {
    type Answer = Option<LineMatch>;

    /// Space for the next read, the incomplete line moved just before it.
    fn spare(&mut self) -> &mut [u8] {
        let max_line = self.max_line;
        make_room(
            &mut self.buf,
            &mut self.head,
            &mut self.start,
            &mut self.end,
            max_line,
        )
    }

    fn step(&mut self, read: io::Result<usize>) -> ControlFlow<Result<Option<LineMatch>, Error>> {
        match read {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(Err(read_error(e, self.received))),
            Ok(0) => {
                // The last line, if it had no newline.
                let found = if self.skipping || self.in_no_line {
                    None
                } else {
                    self.search(self.start, self.end)
                };
                ControlFlow::Break(Ok(found))
            }
            Ok(n) => match self.filled(n) {
                Some(found) => ControlFlow::Break(Ok(Some(found))),
                None => ControlFlow::Continue(()),
            },
        }
    }
}

/// Newlines in `bytes`: bytecount's vectorised count (AVX2 where the CPU has it, chosen
/// at run time), about 1.8x memchr's counting iterator on a 64 KiB buffer.
fn count_lines(bytes: &[u8]) -> u64 {
    bytecount::count(bytes, b'\n') as u64
}

/// The first line matching `regex`, like [`find_line`], with its number (the regex
/// runs line by line, which counts them anyway).
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
#[cfg(feature = "regex")]
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
            number: Some(line.number),
            offset: line.offset,
            line: line_bytes,
        });
        ControlFlow::Break(())
    })
    .await?;
    Ok(found)
}

/// The byte offset of the first `needle` in `reader`, lines or not (a 1 GiB single-line
/// log included), in memory bounded by one read chunk plus the needle.
pub async fn find<R: AsyncRead + Unpin>(reader: R, needle: &[u8]) -> Result<Option<u64>, Error> {
    if needle.is_empty() {
        return Ok(Some(0));
    }
    let mut search = ByteSearch::new(needle);
    drive(reader, &mut search).await
}

/// [`find`] for a blocking reader (a file in the page cache): no async round trip per
/// chunk. Run it on a blocking thread.
pub fn find_blocking<R: Read>(reader: R, needle: &[u8]) -> Result<Option<u64>, Error> {
    if needle.is_empty() {
        return Ok(Some(0));
    }
    let mut search = ByteSearch::new(needle);
    drive_blocking(reader, &mut search)
}

/// The raw search behind [`find`]: one read chunk plus `needle.len() - 1` bytes carried
/// over in front of it, so a needle straddling two reads is still seen.
struct ByteSearch<'n> {
    finder: Finder<'n>,
    buf: Vec<u8>,
    /// Where reads go (aligned).
    head: usize,
    /// The window not yet ruled out: bytes carried over, then the last read.
    start: usize,
    end: usize,
    /// Stream offset of `buf[head]` after the next read: bytes read so far.
    read: u64,
}

impl<'n> ByteSearch<'n> {
    fn new(needle: &'n [u8]) -> Self {
        let (buf, head) = read_buffer(needle.len().saturating_sub(1));
        ByteSearch {
            finder: Finder::new(needle),
            buf,
            head,
            start: head,
            end: head,
            read: 0,
        }
    }
}

impl Search for ByteSearch<'_> {
    type Answer = Option<u64>;

    fn spare(&mut self) -> &mut [u8] {
        // The room set aside is the needle's length less one: the most ever carried.
        let keep = self.head;
        make_room(
            &mut self.buf,
            &mut self.head,
            &mut self.start,
            &mut self.end,
            keep,
        )
    }

    fn step(&mut self, read: io::Result<usize>) -> ControlFlow<Result<Option<u64>, Error>> {
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return ControlFlow::Continue(()),
            Err(e) => return ControlFlow::Break(Err(read_error(e, self.read))),
        };
        if n == 0 {
            return ControlFlow::Break(Ok(None));
        }
        // The window starts `head - start` bytes before this read's first byte.
        let window_at = self.read - (self.head - self.start) as u64;
        self.end = self.head + n;
        self.read += n as u64;
        if let Some(at) = self.finder.find(&self.buf[self.start..self.end]) {
            return ControlFlow::Break(Ok(Some(window_at + at as u64)));
        }
        let keep = (self.finder.needle().len() - 1).min(self.end - self.start);
        self.start = self.end - keep;
        ControlFlow::Continue(())
    }
}
