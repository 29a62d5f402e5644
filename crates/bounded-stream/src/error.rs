//! The crate's one error type.

use std::fmt;
use std::io;
use std::time::Duration;

/// Where in a pipeline a byte limit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Bytes as they arrive: a body, a file, a socket.
    Wire,
    /// Bytes after decompression.
    Decoded,
    /// One line of a line scan.
    Line,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Wire => "wire",
            Stage::Decoded => "decoded",
            Stage::Line => "line",
        })
    }
}

/// A compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// gzip (RFC 1952), multi-member.
    Gzip,
    /// Raw deflate (RFC 1951).
    Deflate,
    /// HTTP's `deflate` content coding: zlib-wrapped deflate (RFC 1950, as RFC 9110 says),
    /// or raw deflate, which some servers send under that name; the first bytes tell
    /// which (feature `deflate`).
    Zlib,
    /// Zstandard.
    Zstd,
    /// Brotli.
    Brotli,
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Gzip => "gzip",
            Codec::Deflate => "deflate",
            Codec::Zlib => "zlib",
            Codec::Zstd => "zstd",
            Codec::Brotli => "brotli",
        })
    }
}

impl Codec {
    /// The codec for an HTTP `Content-Encoding` value (`gzip`, `x-gzip`, `deflate`,
    /// `br`, `zstd`; any case). `None` for `identity`, for a list of several codings and
    /// for anything unknown.
    pub fn from_content_encoding(value: &str) -> Option<Codec> {
        let value = value.trim();
        [
            ("gzip", Codec::Gzip),
            ("x-gzip", Codec::Gzip),
            ("deflate", Codec::Zlib),
            ("br", Codec::Brotli),
            ("zstd", Codec::Zstd),
        ]
        .into_iter()
        .find(|(name, _)| value.eq_ignore_ascii_case(name))
        .map(|(_, codec)| codec)
    }

    /// `true` when this build can decode it (its feature is on).
    pub fn is_available(self) -> bool {
        match self {
            Codec::Gzip => cfg!(feature = "gzip"),
            Codec::Deflate | Codec::Zlib => cfg!(feature = "deflate"),
            Codec::Zstd => cfg!(feature = "zstd"),
            Codec::Brotli => cfg!(feature = "brotli"),
        }
    }

    /// The `Accept-Encoding` value naming the HTTP codings this build decodes (`gzip,
    /// deflate, br, zstd` with every codec feature on), empty with none.
    pub fn accept_encoding() -> &'static str {
        static VALUE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        VALUE.get_or_init(|| {
            [
                (Codec::Gzip, "gzip"),
                (Codec::Zlib, "deflate"),
                (Codec::Brotli, "br"),
                (Codec::Zstd, "zstd"),
            ]
            .into_iter()
            .filter(|(codec, _)| codec.is_available())
            .map(|(_, name)| name)
            .collect::<Vec<_>>()
            .join(", ")
        })
    }
}

/// Why compressed input could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeFailure {
    /// The input ended in the middle of a compressed stream.
    Truncated,
    /// The input is not valid for the codec (bad header, checksum, or data), or asks for
    /// more decoder memory than the budget allows (a zstd window above the limit).
    Corrupt,
}

/// Everything that stops a bounded stream.
///
/// Every variant carries the numbers that explain it: the limit that was hit and what
/// was observed, in bytes or time, so a log line alone says what happened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// More than `limit` bytes arrived at `stage`; `received` counts them up to and
    /// including the chunk that crossed the limit.
    #[error("{stage} bytes over the limit: received {received}, limit {limit}")]
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
        /// Bytes seen when the cap was crossed (always more than `limit`).
        received: u64,
        /// Where the cap applied.
        stage: Stage,
    },

    /// The declared Content-Length is over the cap: rejected before any byte was read.
    #[error("content-length {declared} is over the limit {limit}")]
    ContentLengthTooLarge {
        /// The cap, in bytes.
        limit: u64,
        /// What the peer declared.
        declared: u64,
    },

    /// The body's length differs from its declared Content-Length: more bytes arrived
    /// than declared, or it ended with fewer.
    #[error("content-length mismatch: declared {declared}, received {received}")]
    ContentLengthMismatch {
        /// What the peer declared.
        declared: u64,
        /// Bytes received (more than declared as soon as it is exceeded, or the total at
        /// a premature end).
        received: u64,
    },

    /// No byte arrived for `timeout`.
    #[error("no data for {timeout:?} after {received} bytes")]
    IdleTimeout {
        /// The idle limit.
        timeout: Duration,
        /// Bytes received before the stall.
        received: u64,
    },

    /// The whole stream took longer than `deadline` (counted from its first poll).
    #[error("stream not finished within {deadline:?}; {received} bytes received")]
    Deadline {
        /// The total time allowed.
        deadline: Duration,
        /// Bytes received when time ran out.
        received: u64,
    },

    /// Fewer than `min_bytes` arrived in a `window` after the grace period: a slow-drip
    /// peer.
    #[error(
        "too slow: {observed} bytes in {window:?}, minimum {min_bytes}; {received} bytes in all"
    )]
    TooSlow {
        /// The minimum per window.
        min_bytes: u64,
        /// The window.
        window: Duration,
        /// Bytes that arrived in the failing window.
        observed: u64,
        /// Bytes received in all.
        received: u64,
    },

    /// Decompression expanded the input more than allowed.
    #[error("expansion over {limit}x: {decoded} bytes decoded from {encoded}")]
    ExpansionRatio {
        /// The maximum ratio of decoded to encoded bytes.
        limit: u64,
        /// Bytes decoded so far.
        decoded: u64,
        /// Compressed bytes consumed so far.
        encoded: u64,
    },

    /// The compressed input is truncated or corrupt.
    #[error(
        "{codec} input {failure:?} after {encoded} compressed bytes ({decoded} decoded): {source}"
    )]
    Decode {
        /// The codec.
        codec: Codec,
        /// Truncated or corrupt.
        failure: DecodeFailure,
        /// Compressed bytes consumed.
        encoded: u64,
        /// Bytes decoded before the failure.
        decoded: u64,
        /// What the decoder said.
        source: io::Error,
    },

    /// The underlying source failed (a connection reset, a read error).
    #[error("source failed after {received} bytes: {source}")]
    Source {
        /// Bytes received before the failure.
        received: u64,
        /// The source's error.
        source: io::Error,
    },

    /// A file's length is over the cap: refused by [`BoundedRead::open`](crate::BoundedRead::open)
    /// before a byte was read.
    #[error("{}: {len} bytes, over the limit {limit}", path.display())]
    FileTooLarge {
        /// The file.
        path: std::path::PathBuf,
        /// The cap, in bytes.
        limit: u64,
        /// The file's length when it was opened.
        len: u64,
    },

    /// Reading or writing a local file failed (spilling, scanning a file).
    #[error("I/O error on {what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// What the operating system said.
        source: io::Error,
    },

    /// The spill file could not be created.
    #[cfg(feature = "spill")]
    #[cfg_attr(docsrs, doc(cfg(feature = "spill")))]
    #[error(transparent)]
    Spill(#[from] scoped_temp::Error),

    /// The HTTP request failed before a response arrived.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    #[error("request to {uri} failed: {source}")]
    Request {
        /// The request's URI.
        uri: String,
        /// What the client said.
        source: io::Error,
    },
}

impl Error {
    /// This crate's error inside an `io::Error` (how [`BoundedRead`](crate::BoundedRead)
    /// reports through `AsyncRead`), if that is what it holds.
    pub fn from_io_ref(error: &io::Error) -> Option<&Error> {
        error.get_ref().and_then(|e| e.downcast_ref::<Error>())
    }

    /// Unwraps this crate's error from an `io::Error`, or gives the `io::Error` back.
    pub fn from_io(error: io::Error) -> Result<Error, io::Error> {
        if Self::from_io_ref(&error).is_none() {
            return Err(error);
        }
        match error.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(ours)) => Ok(*ours),
            Some(Err(other)) => Err(io::Error::other(other)),
            None => Err(io::Error::other("empty io::Error")),
        }
    }

    /// The error as an `io::Error` whose kind says what happened, for `AsyncRead`.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            Error::IdleTimeout { .. } | Error::Deadline { .. } | Error::TooSlow { .. } => {
                io::ErrorKind::TimedOut
            }
            Error::ContentLengthMismatch { .. } => io::ErrorKind::UnexpectedEof,
            Error::Source { source, .. } | Error::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

impl From<Error> for io::Error {
    /// [`Error::into_io`]: lets a bounded body feed `tokio_util::io::StreamReader` and
    /// other `io::Error` consumers; [`Error::from_io`] gets the typed error back.
    fn from(error: Error) -> io::Error {
        error.into_io()
    }
}
