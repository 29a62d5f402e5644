//! Decompression under one budget: decoded bytes, the expansion ratio, and the
//! decoder's own memory.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::meter::{Accept, Meter};
use crate::stream::source_error;
use crate::{Bounded, Codec, DecodeFailure, Error, Limits, Stage};

/// Decoded bytes are produced in chunks of at most this size, so a cap is overshot by
/// at most one chunk before it is noticed.
pub const DECODE_CHUNK: usize = 16 * 1024;

/// The budget of one decompression.
///
/// ```
/// use bounded_stream::{DecodeLimits, Limits};
///
/// let budget = DecodeLimits::new(Limits::new(256 << 20)) // at most 256 MiB decoded
///     .wire(Limits::new(16 << 20))                       // at most 16 MiB compressed
///     .max_ratio(100, 100 * 1024);                      // 100x, judged after 100 KiB
/// # let _ = budget;
/// ```
#[derive(Debug, Clone)]
pub struct DecodeLimits {
    decoded: Limits,
    wire: Option<Limits>,
    max_ratio: Option<(u64, u64)>,
}

impl DecodeLimits {
    /// At most `decoded` after decompression (its time limits apply to the whole
    /// decompression). No wire cap and no ratio limit unless added.
    pub fn new(decoded: Limits) -> Self {
        DecodeLimits {
            decoded,
            wire: None,
            max_ratio: None,
        }
    }

    /// A cap (and time limits) on the compressed bytes as they arrive.
    pub fn wire(mut self, wire: Limits) -> Self {
        self.wire = Some(wire);
        self
    }

    /// Fail once decoded bytes exceed `ratio` times the compressed bytes consumed,
    /// judged only after `grace` decoded bytes (small inputs expand a lot legitimately).
    pub fn max_ratio(mut self, ratio: u64, grace: u64) -> Self {
        self.max_ratio = Some((ratio, grace));
        self
    }

    /// The largest zstd window this budget accepts: the decoded cap rounded up to a
    /// power of two, at least 8 MiB (what zstd's levels 1-19 use) and at most zstd's own
    /// default of 128 MiB.
    pub fn zstd_window_log(&self) -> u32 {
        let cap = self.decoded.max_bytes.max(1);
        let log = 64 - (cap - 1).leading_zeros().min(63);
        log.clamp(23, 27)
    }
}

/// What the wire side has seen, shared with the decoded side for errors and the ratio.
#[derive(Debug, Default)]
struct WireState {
    consumed: AtomicU64,
    ended: AtomicBool,
}

/// Counts compressed bytes as the decoder pulls them.
struct CountWire<S> {
    inner: S,
    state: Arc<WireState>,
}

impl<S, E> Stream for CountWire<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let received = self.state.consumed.load(Ordering::Relaxed);
        Poll::Ready(match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
            Some(Ok(chunk)) => {
                self.state
                    .consumed
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Some(Ok(chunk))
            }
            // Carried through the decoder as an io::Error; unwrapped on the other side.
            Some(Err(e)) => Some(Err(source_error(e, received).into_io())),
            None => {
                self.state.ended.store(true, Ordering::Relaxed);
                None
            }
        })
    }
}

type Wire =
    StreamReader<CountWire<Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>>, Bytes>;

fn decoder(codec: Codec, wire: Wire, budget: &DecodeLimits) -> Pin<Box<dyn AsyncRead + Send>> {
    fn boxed(r: impl AsyncRead + Send + 'static) -> Pin<Box<dyn AsyncRead + Send>> {
        Box::pin(r)
    }
    let _ = budget;
    match codec {
        #[cfg(feature = "gzip")]
        Codec::Gzip => {
            let mut d = async_compression::tokio::bufread::GzipDecoder::new(wire);
            d.multiple_members(true);
            boxed(d)
        }
        #[cfg(feature = "deflate")]
        Codec::Deflate => boxed(async_compression::tokio::bufread::DeflateDecoder::new(wire)),
        #[cfg(feature = "deflate")]
        Codec::Zlib => boxed(SniffZlib {
            wire: Some(wire),
            inner: None,
        }),
        #[cfg(feature = "zstd")]
        Codec::Zstd => {
            let window =
                async_compression::zstd::DParameter::window_log_max(budget.zstd_window_log());
            let mut d =
                async_compression::tokio::bufread::ZstdDecoder::with_params(wire, &[window]);
            d.multiple_members(true);
            boxed(d)
        }
        #[cfg(feature = "brotli")]
        Codec::Brotli => boxed(async_compression::tokio::bufread::BrotliDecoder::new(wire)),
        #[allow(unreachable_patterns)]
        other => boxed(Unsupported(other)),
    }
}

/// HTTP's `deflate`: zlib-wrapped (RFC 1950) or raw, told apart by the zlib header
/// (CM 8, a window of at most 32 KiB, a header checksum divisible by 31) in the first
/// bytes, which are looked at without being consumed.
#[cfg(feature = "deflate")]
struct SniffZlib {
    wire: Option<Wire>,
    inner: Option<Pin<Box<dyn AsyncRead + Send>>>,
}

/// `true` when `head` starts like a zlib stream rather than raw deflate.
#[cfg(feature = "deflate")]
fn is_zlib(head: &[u8]) -> bool {
    match head {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && ((u16::from(*cmf) << 8) | u16::from(*flg)) % 31 == 0
        }
        [cmf] => cmf & 0x0f == 8 && cmf >> 4 <= 7,
        [] => false,
    }
}

#[cfg(feature = "deflate")]
impl AsyncRead for SniffZlib {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use tokio::io::AsyncBufRead;
        if self.inner.is_none() {
            let Some(wire) = self.wire.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let zlib = is_zlib(ready!(Pin::new(wire).poll_fill_buf(cx))?);
            if let Some(wire) = self.wire.take() {
                self.inner = Some(if zlib {
                    Box::pin(async_compression::tokio::bufread::ZlibDecoder::new(wire))
                } else {
                    Box::pin(async_compression::tokio::bufread::DeflateDecoder::new(wire))
                });
            }
        }
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// A reader for a codec whose feature is off: fails on first read.
struct Unsupported(Codec);

impl AsyncRead for Unsupported {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let msg = format!("bounded-stream was built without the {} feature", self.0);
        Poll::Ready(Err(io::Error::new(io::ErrorKind::Unsupported, msg)))
    }
}

/// The decoded bytes of a compressed stream, under a [`DecodeLimits`] budget. Made by
/// [`decode`].
pub struct Decoded {
    codec: Codec,
    inner: ReaderStream<Pin<Box<dyn AsyncRead + Send>>>,
    meter: Meter,
    wire: Arc<WireState>,
    max_ratio: Option<(u64, u64)>,
    done: bool,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("codec", &self.codec)
            .field("decoded", &self.meter.received())
            .field("encoded", &self.encoded())
            .finish()
    }
}

impl Decoded {
    /// Decoded bytes so far.
    pub fn decoded(&self) -> u64 {
        self.meter.received()
    }

    /// Compressed bytes consumed so far.
    pub fn encoded(&self) -> u64 {
        self.wire.consumed.load(Ordering::Relaxed)
    }

    /// `true` once output was cut at the decoded cap (truncate mode).
    pub fn truncated(&self) -> bool {
        self.meter.truncated()
    }

    fn decode_error(&self, error: io::Error) -> Error {
        match Error::from_io(error) {
            Ok(ours) => ours,
            Err(source) => {
                // Decoders disagree on how they report a premature end (flate2's raw
                // deflate says "unexpected BufError"): an error after the input ended that
                // is not about invalid data is a truncation.
                let ended = self.wire.ended.load(Ordering::Relaxed);
                let kind = source.kind();
                let failure = if kind == io::ErrorKind::UnexpectedEof
                    || (ended && kind != io::ErrorKind::InvalidData)
                {
                    DecodeFailure::Truncated
                } else {
                    DecodeFailure::Corrupt
                };
                Error::Decode {
                    codec: self.codec,
                    failure,
                    encoded: self.encoded(),
                    decoded: self.decoded(),
                    source,
                }
            }
        }
    }
}

impl Stream for Decoded {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let inner = &mut this.inner;
        let polled = match ready!(
            this.meter
                .poll_source(cx, |cx| Pin::new(inner).poll_next(cx))
        ) {
            Ok(polled) => polled,
            Err(error) => {
                this.done = true;
                return Poll::Ready(Some(Err(error)));
            }
        };
        let chunk = match polled {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                this.done = true;
                return Poll::Ready(Some(Err(this.decode_error(e))));
            }
            None => {
                this.done = true;
                return Poll::Ready(None);
            }
        };
        let result = match this.meter.accept(chunk.len()) {
            Ok(Accept::All) => Ok(chunk),
            Ok(Accept::Prefix(n)) => {
                this.done = true;
                if n == 0 {
                    return Poll::Ready(None);
                }
                Ok(chunk.slice(..n))
            }
            Err(e) => Err(e),
        };
        if let (Ok(_), Some((ratio, grace))) = (&result, this.max_ratio) {
            let (decoded, encoded) = (this.decoded(), this.encoded());
            if decoded > grace && decoded > ratio.saturating_mul(encoded) {
                this.done = true;
                let error = Error::ExpansionRatio {
                    limit: ratio,
                    decoded,
                    encoded,
                };
                #[cfg(feature = "metrics")]
                crate::metrics::limit_error(&error);
                return Poll::Ready(Some(Err(error)));
            }
        }
        if result.is_err() {
            this.done = true;
        }
        Poll::Ready(Some(result))
    }
}

/// Decompresses `compressed` with `codec`, within `budget`: the stream of decoded bytes
/// fails with [`Error::TooLarge`] (stage `Decoded`) once more than the cap has been
/// decoded, having decoded at most the cap plus [`DECODE_CHUNK`]; with
/// [`Error::ExpansionRatio`] past the ratio; and with [`Error::Decode`] on truncated or
/// corrupt input. Concatenated gzip members and zstd frames are decoded in turn.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bounded_stream::{Codec, DecodeLimits, Error, Limits, Stage, collect_decoded};
/// # use tokio::io::AsyncWriteExt;
/// # let mut enc = async_compression::tokio::write::GzipEncoder::new(Vec::new());
/// # enc.write_all(&vec![0u8; 10 << 20]).await?; enc.shutdown().await?;
/// # let bomb = bytes::Bytes::from(enc.into_inner());
/// // `bomb`: 10 MiB of zeros, gzipped to about 10 KiB.
/// let wire = futures_util::stream::iter([Ok::<_, std::io::Error>(bomb)]);
/// let budget = DecodeLimits::new(Limits::new(1 << 20));
/// let err = collect_decoded(wire, Codec::Gzip, &budget).await.unwrap_err();
/// assert!(matches!(err, Error::TooLarge { stage: Stage::Decoded, .. }));
/// # Ok(()) }
/// ```
pub fn decode<S, E>(compressed: S, codec: Codec, budget: &DecodeLimits) -> Decoded
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let wire: Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>> = match &budget.wire {
        Some(limits) => Box::pin(Bounded::new(compressed, limits)),
        None => Box::pin(Bounded::new(compressed, &Limits::new(u64::MAX))),
    };
    let state = Arc::new(WireState::default());
    let reader = StreamReader::new(CountWire {
        inner: wire,
        state: state.clone(),
    });
    let inner = ReaderStream::with_capacity(decoder(codec, reader, budget), DECODE_CHUNK);
    Decoded {
        codec,
        inner,
        meter: Meter::new(&budget.decoded, Stage::Decoded),
        wire: state,
        max_ratio: budget.max_ratio,
        done: false,
    }
}

/// [`decode`] and collect the output into memory (at most the decoded cap).
pub async fn collect_decoded<S, E>(
    compressed: S,
    codec: Codec,
    budget: &DecodeLimits,
) -> Result<crate::Collected, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let mut decoded = std::pin::pin!(decode(compressed, codec, budget));
    let mut collected = crate::stream::gather(decoded.as_mut()).await?;
    collected.truncated = decoded.truncated();
    Ok(collected)
}
