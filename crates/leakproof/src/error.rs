//! The crate's one error type.

use std::time::Duration;

/// What can go wrong in `leakproof`'s own code (each focused crate's errors are wrapped,
/// not flattened, so nothing they carry is lost).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The process is shutting down: new work named `name` was refused, nothing ran.
    #[error("shutting down: `{name}` was not started")]
    ShuttingDown {
        /// The refused operation.
        name: String,
    },
    /// The shutdown deadline (or a second signal) cut `name` short after `ran` of work;
    /// what its scope held was released by its drop.
    #[error("`{name}` was forced to stop by the shutdown after {ran:?}")]
    Forced {
        /// The forced operation.
        name: String,
        /// How long it had run.
        ran: Duration,
    },
    /// Installing the SIGTERM/SIGINT handlers failed.
    #[error("cannot install the {signal} handler")]
    Signal {
        /// The signal (`SIGTERM`, `SIGINT`).
        signal: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Called outside a tokio runtime, where it needs one.
    #[error("{what} needs a tokio runtime")]
    NoRuntime {
        /// What needed it.
        what: &'static str,
    },
    /// The health endpoint could not listen on `addr`.
    #[cfg(feature = "endpoint")]
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No Prometheus recorder could be installed: another `metrics` recorder was
    /// installed first.
    #[cfg(feature = "metrics")]
    #[error("cannot install the Prometheus recorder: {reason}")]
    Recorder {
        /// What the facade or the exporter said.
        reason: String,
    },
    /// A temp entry could not be created or removed.
    #[cfg(feature = "temp")]
    #[error(transparent)]
    Temp(#[from] scoped_temp::Error),
    /// Process supervision or a child process failed.
    #[cfg(all(feature = "proc", target_os = "linux"))]
    #[error(transparent)]
    Proc(#[from] proc_reaper::Error),
    /// The memory probe could not read the process's figures.
    #[cfg(feature = "mem")]
    #[error(transparent)]
    Mem(#[from] mem_watch::Error),
    /// A request's URI could not be built from the base and the path given.
    #[cfg(feature = "client")]
    #[error("bad request URI `{uri}`: {reason}")]
    BadUri {
        /// The URI as far as it was built.
        uri: String,
        /// Why it was refused.
        reason: String,
    },
    /// The base's scheme is one this client cannot speak (`ftp://`, or `https://` in a
    /// build without TLS): refused when the client is built, nothing sent.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    #[error("cannot speak `{scheme}` to `{uri}`: {reason}")]
    UnsupportedScheme {
        /// The base given to the builder.
        uri: String,
        /// Its scheme.
        scheme: String,
        /// What would make it work.
        reason: &'static str,
    },
    /// The TLS configuration could not be made (no root compiled in, none found in the
    /// system's store).
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    #[error("TLS for `{uri}`: {reason}")]
    Tls {
        /// The base given to the builder.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A GET or HEAD was redirected more times than the client follows (a loop, most
    /// likely).
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    #[error("{uri}: redirected again after {followed} redirect(s)")]
    Redirects {
        /// Where the last redirect led.
        uri: String,
        /// How many were followed.
        followed: u32,
    },
    /// The server answered with an error status (4xx or 5xx), from
    /// [`ApiResponse::error_for_status`](crate::ApiResponse::error_for_status).
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    #[error("{method} {uri}: {status}: {message}")]
    Status {
        /// The status.
        status: http::StatusCode,
        /// The method.
        method: http::Method,
        /// The URI.
        uri: String,
        /// The start of the server's explanation: GitHub's `{"message": ...}`, or the
        /// body's first 200 characters.
        message: String,
    },
    /// A paginated listing went past its bound on pages or bytes (feature `json`).
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    #[error("{uri}: pagination stopped at {pages} page(s), {bytes} bytes: too many {what}")]
    PageLimit {
        /// The page that would have gone past the bound.
        uri: String,
        /// Pages read.
        pages: u32,
        /// Body bytes read.
        bytes: u64,
        /// Which bound: `"pages"` or `"bytes"`.
        what: &'static str,
    },
    /// A body was not the JSON expected, or a value could not be serialised as one
    /// (feature `json`).
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    #[error("{method} {uri}: JSON")]
    Json {
        /// The method.
        method: http::Method,
        /// The URI (the path, for a request body that could not be serialised).
        uri: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// Sending a request failed (connection refused or reset, header timeout) after
    /// `attempts` tries.
    #[cfg(feature = "client")]
    #[error("{method} {uri}: failed after {attempts} attempt(s)")]
    Request {
        /// The method.
        method: http::Method,
        /// The URI.
        uri: String,
        /// How many times it was sent.
        attempts: u32,
        /// The last failure.
        #[source]
        source: bounded_stream::Error,
    },
    /// A response body broke a cap or a timeout (too long, stalled, too slow, shorter
    /// than declared); such a request is not retried.
    #[cfg(feature = "client")]
    #[error("{method} {uri}: response body refused")]
    Body {
        /// The method.
        method: http::Method,
        /// The URI.
        uri: String,
        /// Which limit, with its figures.
        #[source]
        source: bounded_stream::Error,
    },
    /// The call's one deadline ([`ApiClientBuilder::deadline`](crate::ApiClientBuilder::deadline),
    /// default 120 s) passed: attempts, waits for the gate, backoffs, redirects and the
    /// body all count against it.
    #[cfg(feature = "client")]
    #[error("{method} {uri}: no answer within the call's deadline of {deadline:?}")]
    Deadline {
        /// The method.
        method: http::Method,
        /// The URI.
        uri: String,
        /// The deadline.
        deadline: std::time::Duration,
    },
    /// The server refused for its rate limit and asked for a longer wait than the call
    /// may take: its quota is spent until a reset further away than
    /// [`ApiClientBuilder::max_rate_limit_wait`](crate::ApiClientBuilder::max_rate_limit_wait)
    /// or than the call's deadline leaves.
    #[cfg(feature = "client")]
    #[error(
        "{method} {uri}: rate limited ({status}); the server asks to wait {wait:?}, longer than the {longest:?} this call may wait"
    )]
    RateLimited {
        /// The method.
        method: http::Method,
        /// The URI.
        uri: String,
        /// The refusal's status (403 or 429).
        status: http::StatusCode,
        /// How long the server asked to wait (`Retry-After`, or until
        /// `X-RateLimit-Reset`).
        wait: std::time::Duration,
        /// The longest this call could have waited.
        longest: std::time::Duration,
    },
    /// This call waited for another call's request for the same cached GET (see
    /// [`Source::Shared`](crate::Source::Shared)), and that request failed: its status,
    /// if it had one, and what its error said.
    #[cfg(feature = "client")]
    #[error("{method} {uri}: the request this call waited for failed: {message}")]
    Shared {
        /// The method.
        method: http::Method,
        /// The URI.
        uri: String,
        /// The failed request's last status (`GaveUp`, `RateLimited`), if any.
        status: Option<http::StatusCode>,
        /// The failed request's error, as text.
        message: String,
    },
    /// The server kept answering with a retryable status (500, 502, 503, 504) until the
    /// retries ran out. Rate-limit refusals are waited out instead (see
    /// [`Error::RateLimited`]).
    #[cfg(feature = "client")]
    #[error("{method} {uri}: still {status} after {attempts} attempt(s)")]
    GaveUp {
        /// The method.
        method: http::Method,
        /// The URI.
        uri: String,
        /// How many times it was sent.
        attempts: u32,
        /// The last status.
        status: http::StatusCode,
    },
    /// The gate refused (a burst larger than its quota, or no runtime).
    #[cfg(feature = "gate")]
    #[error(transparent)]
    Gate(#[from] rate_gate::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status an error carries (a status error, retries given up, a rate
    /// limit, a shared request's failure), if any.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn status(&self) -> Option<http::StatusCode> {
        match self {
            Error::Status { status, .. }
            | Error::GaveUp { status, .. }
            | Error::RateLimited { status, .. } => Some(*status),
            Error::Shared { status, .. } => *status,
            _ => None,
        }
    }
}
