//! A cap on an http-body 1.x `Body` (hyper's `Incoming` among them).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::meter::{Accept, Meter};
use crate::stream::source_error;
use crate::{Error, Limits, Stage};

pin_project! {
    /// A `Body` whose data is capped at `limit` bytes, whose declared length (its exact
    /// size hint, which is the Content-Length for hyper's bodies) must be under the cap
    /// and must match what arrives, and which honours the time limits of its [`Limits`].
    /// Trailers pass through.
    ///
    /// Unlike `http_body_util::Limited`, a body declared too large is refused before any
    /// of it is read, and the error carries the limit and the count.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use bounded_stream::{BoundedBody, Error, Limits};
    ///
    /// let body = Full::new(Bytes::from_static(&[0u8; 2048]));
    /// let refused = BoundedBody::new(body, &Limits::new(1024)).unwrap_err();
    /// assert!(matches!(refused, Error::ContentLengthTooLarge { limit: 1024, declared: 2048 }));
    /// ```
    #[derive(Debug)]
    pub struct BoundedBody<B> {
        #[pin]
        inner: B,
        meter: Meter,
        done: bool,
    }
}

impl<B: Body> BoundedBody<B> {
    /// Caps `inner`. Fails at once if its declared length is over the cap (unless
    /// truncating): nothing has been read.
    pub fn new(inner: B, limits: &Limits) -> Result<Self, Error> {
        let mut meter = Meter::new(limits, Stage::Wire);
        if let Some(declared) = inner.size_hint().exact() {
            meter.declare(declared)?;
        }
        Ok(BoundedBody {
            inner,
            meter,
            done: false,
        })
    }
}

impl<B> BoundedBody<B> {
    /// Bytes of data received so far.
    pub fn received(&self) -> u64 {
        self.meter.received()
    }

    /// `true` once the body was cut at the cap (truncate mode).
    pub fn truncated(&self) -> bool {
        self.meter.truncated()
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for BoundedBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let inner = this.inner;
        let polled = match ready!(this.meter.poll_source(cx, |cx| inner.poll_frame(cx))) {
            Ok(polled) => polled,
            Err(error) => {
                *this.done = true;
                return Poll::Ready(Some(Err(error)));
            }
        };
        let frame = match polled {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                *this.done = true;
                return Poll::Ready(Some(Err(source_error(error, this.meter.received()))));
            }
            None => {
                *this.done = true;
                return Poll::Ready(this.meter.finish().err().map(Err));
            }
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                // Trailers (or an unknown frame kind): no data to count.
                let frame = frame.map_data(|mut d: B::Data| d.copy_to_bytes(d.remaining()));
                return Poll::Ready(Some(Ok(frame)));
            }
        };
        let len = data.remaining();
        match this.meter.accept(len) {
            Ok(Accept::All) => Poll::Ready(Some(Ok(Frame::data(data.copy_to_bytes(len))))),
            Ok(Accept::Prefix(n)) => {
                *this.done = true;
                if n == 0 {
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(Frame::data(data.copy_to_bytes(n)))))
            }
            Err(error) => {
                *this.done = true;
                Poll::Ready(Some(Err(error)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(0);
        }
        let mut hint = self.inner.size_hint();
        let room = self.meter.room();
        if hint.lower() > room {
            hint.set_lower(room);
        }
        match hint.upper() {
            Some(upper) if upper <= room => {}
            _ => hint.set_upper(room),
        }
        hint
    }
}
