//! A cap on an `AsyncRead`.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, ReadBuf};

use crate::meter::{Accept, Meter};
use crate::{Limits, OnLimit, Stage};

pin_project! {
    /// An `AsyncRead` that yields at most `limit` bytes and honours the time limits of
    /// its [`Limits`]. Over the cap (reject mode) or out of time, a read fails with an
    /// `io::Error` holding this crate's [`Error`](crate::Error): get it back with
    /// [`Error::from_io`](crate::Error::from_io). In truncate mode the reader reports
    /// end of file at the cap.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tokio::io::AsyncReadExt;
    /// use bounded_stream::{BoundedRead, Error, Limits};
    ///
    /// let mut reader = BoundedRead::new(&b"0123456789"[..], &Limits::new(4));
    /// let err = reader.read_to_end(&mut Vec::new()).await.unwrap_err();
    /// assert!(matches!(Error::from_io(err), Ok(Error::TooLarge { limit: 4, .. })));
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct BoundedRead<R> {
        #[pin]
        inner: R,
        meter: Meter,
        done: bool,
    }
}

impl<R> BoundedRead<R> {
    /// Caps `inner` at `limits`.
    pub fn new(inner: R, limits: &Limits) -> Self {
        Self::at_stage(inner, limits, Stage::Wire)
    }

    /// Caps `inner`, reporting `stage` in errors.
    pub fn at_stage(inner: R, limits: &Limits, stage: Stage) -> Self {
        BoundedRead {
            inner,
            meter: Meter::new(limits, stage),
            done: false,
        }
    }

    /// Bytes read so far.
    pub fn received(&self) -> u64 {
        self.meter.received()
    }

    /// `true` once reading stopped at the cap (truncate mode).
    pub fn truncated(&self) -> bool {
        self.meter.truncated()
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl BoundedRead<tokio::fs::File> {
    /// Opens the file at `path` for a capped read. Its length is compared with the cap
    /// first: a file already over it is refused with [`Error::FileTooLarge`](crate::Error::FileTooLarge)
    /// (both numbers) before a byte is read (in truncate mode it is read up to the cap).
    /// The cap still holds for a file that grows while it is read: the reader counts
    /// the bytes it yields, not the length it saw.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use bounded_stream::{BoundedRead, Error, Limits};
    ///
    /// let log = std::env::temp_dir().join(format!("bounded-stream-doc-{}.log", std::process::id()));
    /// std::fs::write(&log, vec![b'x'; 4096])?;
    /// let refused = BoundedRead::open(&log, &Limits::new(1024)).await.unwrap_err();
    /// assert!(matches!(refused, Error::FileTooLarge { limit: 1024, len: 4096, .. }));
    /// std::fs::remove_file(&log)?;
    /// # Ok(()) }
    /// ```
    pub async fn open(path: impl AsRef<Path>, limits: &Limits) -> Result<Self, crate::Error> {
        let path = path.as_ref();
        let io = |source| crate::Error::Io {
            what: path.display().to_string(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let len = file.metadata().await.map_err(io)?.len();
        if limits.on_limit() == OnLimit::Reject && len > limits.max_bytes() {
            return Err(crate::Error::FileTooLarge {
                path: path.to_path_buf(),
                limit: limits.max_bytes(),
                len,
            });
        }
        Ok(Self::new(file, limits))
    }
}

impl<R: AsyncRead> AsyncRead for BoundedRead<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.done || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // An `Err` must leave `buf` as it was (AsyncRead's contract): roll back to here.
        let before = buf.filled().len();
        // One byte past what the cap allows is enough to tell "at the cap" from "over".
        let room = this.meter.room().saturating_add(1);
        let inner = this.inner;
        let read = |cx: &mut Context<'_>| -> Poll<io::Result<usize>> {
            if (buf.remaining() as u64) <= room {
                return inner
                    .poll_read(cx, buf)
                    .map_ok(|()| buf.filled().len() - before);
            }
            // Give the source a view of exactly `room` bytes (initialised once, safely).
            let mut limited = ReadBuf::new(buf.initialize_unfilled_to(room as usize));
            let polled = inner.poll_read(cx, &mut limited);
            let n = limited.filled().len();
            buf.advance(n);
            polled.map_ok(|()| n)
        };
        let n = match this.meter.poll_source(cx, read) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => {
                *this.done = true;
                return Poll::Ready(Err(error.into_io()));
            }
            Poll::Ready(Ok(result)) => result?,
        };
        if n == 0 {
            *this.done = true;
            return Poll::Ready(this.meter.finish().map_err(crate::Error::into_io));
        }
        match this.meter.accept(n) {
            Ok(Accept::All) => Poll::Ready(Ok(())),
            Ok(Accept::Prefix(keep)) => {
                *this.done = true;
                let filled = buf.filled().len();
                buf.set_filled(filled - (n - keep));
                Poll::Ready(Ok(()))
            }
            Err(error) => {
                *this.done = true;
                buf.set_filled(before);
                Poll::Ready(Err(error.into_io()))
            }
        }
    }
}
