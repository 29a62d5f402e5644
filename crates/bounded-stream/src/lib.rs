//! Byte streams with a hard cap: memory is bounded by the cap, whatever the input.
//!
//! # The guarantee
//!
//! Every byte source wrapped here yields exactly `limit` bytes at most: `limit` bytes are
//! accepted and `limit + 1` is an error, under any chunking, with a typed
//! [`Error::TooLarge`] that carries the limit, the count received and the [`Stage`]
//! (wire, decoded, line). A body that declares a Content-Length over the cap is refused
//! before any of it is read; one whose length differs from its declaration is an error.
//! Time limits stop peers that stall ([`Limits::idle_timeout`]), dawdle
//! ([`Limits::deadline`]) or drip ([`Limits::min_rate`]). Decompression runs under the
//! same kind of budget, so a bomb is stopped after at most the cap plus one
//! [`DECODE_CHUNK`] of output, for every codec. Line scans, searches and tails keep
//! memory bounded by the longest line allowed, never by the input: "does this 500 MB log
//! contain `warning:`" runs in about 1 MB.
//!
//! The peers each close part of this: `http_body_util::Limited` counts frames but
//! ignores Content-Length and reports neither limit nor count; async-compression and
//! tower-http's decompression have no output cap; hyper has no body read timeout; no
//! crate had a minimum data rate.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use bounded_stream::{BoundedStreamExt, Error, Limits, Stage, collect};
//! use futures_core::Stream;
//!
//! // Any Stream<Item = Result<Bytes, E>>: a hyper body's data, a socket, a file.
//! fn source() -> impl Stream<Item = Result<Bytes, std::io::Error>> {
//!     futures_util::stream::iter((0..3).map(|_| Ok(Bytes::from(vec![0u8; 600]))))
//! }
//!
//! let limits = Limits::new(1024).idle_timeout(Duration::from_secs(30));
//! match collect(source(), &limits).await {
//!     Err(Error::TooLarge { limit: 1024, received: 1200, stage: Stage::Wire }) => {}
//!     other => panic!("{other:?}"),
//! }
//!
//! // Or keep the first 1 KiB instead of failing.
//! let prefix = collect(source(), &Limits::new(1024).truncate()).await.unwrap();
//! assert_eq!((prefix.len(), prefix.truncated()), (1024, true));
//! # let _ = source().bounded(&limits);
//! # }
//! ```
//!
//! # Sources
//!
//! - A `Stream` of `Bytes`: [`Bounded`] (or `.bounded(&limits)` from
//!   [`BoundedStreamExt`]), [`collect`].
//! - An `AsyncRead`: [`BoundedRead`]; its errors are `io::Error`s holding an [`Error`]
//!   ([`Error::from_io`] gets it back).
//! - A file: [`BoundedRead::open`] checks its length against the cap before reading
//!   a byte ([`Error::FileTooLarge`]), and the cap still holds if it grows meanwhile.
//! - An http-body 1.x `Body` (hyper's `Incoming`): [`BoundedBody`] (feature `http-body`).
//! - An HTTP GET: [`CappedClient`], one pooled hyper-util client reused for every request
//!   (feature `client`).
//!
//! # Decompression
//!
//! [`decode`] runs gzip, deflate, zstd or brotli (one feature each) under a
//! [`DecodeLimits`]: a cap on decoded bytes, optionally on compressed bytes and on the
//! expansion ratio (say 100x after the first 100 KiB). The zstd decoder's window, the one
//! decoder memory a stream can ask for, is limited from the budget
//! ([`DecodeLimits::zstd_window_log`]). Truncated and corrupt input give
//! [`Error::Decode`]; concatenated gzip members and zstd frames are all decoded.
//!
//! # Lines, search, tail, spill
//!
//! [`scan_lines`] (and [`scan_lines_blocking`] for files) hands each line to a callback
//! that can stop early; a line longer than `max_line` is reported truncated and the rest
//! skipped unbuffered; bytes are not UTF-8 checked, so nothing is lost. [`find`] searches
//! raw bytes with `memchr`'s `memmem`; [`find_line`] finds the first line holding a
//! needle the way ripgrep does, `memmem` over each read and the line around a hit found
//! afterwards; [`LineFinder`] adds its line number when asked (a vectorised count of
//! every newline read, about a fifth more time), as ripgrep counts only under
//! `--line-number` (`find_line_regex`, with the `regex` feature, goes a line at a time
//! and always numbers). Every line and match carries its byte offset in the input
//! (ripgrep's `--byte-offset`), free of any count: one add per line. Each has a
//! `_blocking` twin for files. Reads land at an aligned address, with an incomplete
//! line kept just before it. [`tail_bytes`] and [`tail_lines`] keep the end of a
//! stream in O(N) memory. `collect_or_spill` (feature `spill`) keeps a
//! stream in memory up to a threshold and in a [`scoped-temp`] file past it.
//!
//! [`scoped-temp`]: https://docs.rs/scoped-temp
//!
//! # Features
//!
//! `http-body` and `gzip` are on by default; `client`, `deflate`, `zstd`, `brotli`,
//! `regex` and `spill` are opt-in.
//!
//! # Metrics
//!
//! With feature `metrics` (off by default), the bytes that passed each cap and the limits that ended streams go through the
//! [`metrics`](https://docs.rs/metrics) facade, to whichever recorder the program
//! installs: the `metrics` module lists each one and when it is recorded.
//!
//! # What this does not protect against
//!
//! - **Memory you keep.** The cap bounds what passes through; [`collect`] holds up to
//!   the cap, and [`Collected::to_bytes`] briefly doubles it to make one buffer. Choose
//!   the cap with your concurrency in mind: 100 requests at 50 MB each is 5 GB.
//! - **Decoder memory outside the budget.** Only zstd's window is limited from the
//!   budget. Brotli may allocate its full 16 MiB window and gzip/deflate about 40 KiB per
//!   stream, whatever the cap.
//! - **Surplus bytes over HTTP/1.1.** Through hyper, a body longer than its
//!   Content-Length is cut at the declared length by hyper itself; the surplus never
//!   reaches memory, but this crate cannot report it. For bodies and streams that carry
//!   a declared length otherwise, a surplus is [`Error::ContentLengthMismatch`].
//! - **Time limits need tokio's timer.** Streams with time limits must be polled inside a
//!   tokio runtime with time enabled; the timers start at the first poll. Without time
//!   limits, any executor works. With a deadline, a source that is always ready is
//!   checked per chunk against the kernel's coarse clock, so the deadline is seen up to
//!   one kernel tick (1 to 10 ms) late; under a paused tokio clock, only when the task
//!   yields to the runtime (as time only moves then).
//! - **A source that blocks.** An `AsyncRead` that blocks its thread, or a `Stream` that
//!   never yields `Pending` or data, cannot be interrupted by a timer.
//! - **Over-long lines are seen only in part.** A needle past the first `max_line` bytes
//!   of a line is not found by [`find_line`]; [`find`] searches raw bytes instead.
//!
//! # Platforms
//!
//! Pure Rust plus zstd's C library (feature `zstd`); works wherever tokio does.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "http-body")]
mod body;
#[cfg(feature = "client")]
mod client;
#[cfg(any(
    feature = "gzip",
    feature = "deflate",
    feature = "zstd",
    feature = "brotli"
))]
mod decode;
mod error;
mod limits;
mod lines;
mod meter;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod read;
#[cfg(feature = "spill")]
mod spill;
mod stream;
mod tail;

#[cfg(feature = "http-body")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-body")))]
pub use body::BoundedBody;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub use client::CappedClient;
#[cfg(any(
    feature = "gzip",
    feature = "deflate",
    feature = "zstd",
    feature = "brotli"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(
        feature = "gzip",
        feature = "deflate",
        feature = "zstd",
        feature = "brotli"
    )))
)]
pub use decode::{DECODE_CHUNK, DecodeLimits, Decoded, collect_decoded, decode};
pub use error::{Codec, DecodeFailure, Error, Stage};
pub use limits::{LONGEST_LIMIT, Limits, MinRate, OnLimit};
#[cfg(feature = "regex")]
#[cfg_attr(docsrs, doc(cfg(feature = "regex")))]
pub use lines::find_line_regex;
pub use lines::{
    Line, LineFinder, LineMatch, LineSplitter, READ_CHUNK, ScanSummary, find, find_blocking,
    find_line, find_line_blocking, scan_lines, scan_lines_blocking,
};
pub use read::BoundedRead;
#[cfg(feature = "spill")]
#[cfg_attr(docsrs, doc(cfg(feature = "spill")))]
pub use spill::{SpillOptions, Spilled, collect_or_spill};
pub use stream::{Bounded, BoundedStreamExt, Collected, collect};
pub use tail::{TailBuffer, tail_bytes, tail_lines};
