//! `ApiClient`: one pooled client, a gate fed by the server's headers, cached GETs
//! revalidated with ETags, capped bodies, retries, every request in a scope.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bounded_stream::{BoundedBody, CappedClient, Codec, DecodeLimits, Limits};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{
    AGE, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, DATE, ETAG, EXPIRES, HeaderMap,
    HeaderName, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION,
};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rate_gate::{Feedback, Gate};
use ttl_cache::{Cache, Validators};

use crate::{Error, Result, Shutdown};

mod flight;
mod http_cache;
#[cfg(feature = "json")]
mod pages;
mod proxy;
mod request;
mod response;

pub use http_cache::{CacheMode, HEURISTIC_MAX};
#[cfg(feature = "json")]
pub use pages::Paginate;
pub use proxy::ProxyConnector;
use request::Call;
pub use request::RequestBuilder;
pub use response::ApiResponse;

/// Where a response came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Source {
    /// The cache, fresh: no request was sent.
    Cache,
    /// The cache, after the server answered `304 Not Modified` (no quota spent on
    /// GitHub, no body sent).
    Revalidated,
    /// The server.
    Network,
    /// Another call's answer: this GET came while a request for the same cached key was
    /// in flight, and waited for it instead of sending its own (no request, no quota).
    Shared,
}

/// A response whose body is still to be read, from [`ApiClient::get_stream`]: capped and
/// timed by the limits given, holding the gate's permit until it is dropped.
#[non_exhaustive]
pub struct ApiStream {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    body: BodyStream,
    permit: rate_gate::Permit<'static>,
}

/// A response body as chunks, decoded when it came compressed.
type BodyStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = std::result::Result<Bytes, bounded_stream::Error>> + Send>,
>;

impl std::fmt::Debug for ApiStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiStream")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl ApiStream {
    /// The body as a stream of chunks; a broken cap or timeout is its last item. The
    /// gate's permit goes with it.
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<Bytes, bounded_stream::Error>> + Send + 'static
    {
        let permit = self.permit;
        self.body.map(move |chunk| {
            let _held = &permit;
            chunk
        })
    }
}

#[derive(Debug)]
struct Cached {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// The request headers its `Vary` names, as they were when it was fetched.
    vary: http_cache::VarySnapshot,
}

/// What the client has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ApiStats {
    /// Calls to [`ApiClient::get`] and [`ApiClient::send`].
    pub calls: u64,
    /// Requests that reached the network (retries included).
    pub requests: u64,
    /// GETs answered from the cache without a request.
    pub cache_hits: u64,
    /// GETs answered `304 Not Modified`.
    pub revalidated: u64,
    /// GETs that shared another call's request for the same key instead of sending
    /// their own ([`Source::Shared`]).
    pub shared: u64,
    /// Requests sent again after a 5xx, a rate-limit refusal or a connection failure.
    pub retries: u64,
    /// Responses that were rate-limit refusals (429, or 403 over a quota or a secondary
    /// limit), each waited out and sent again (counted in `retries` too).
    pub rate_limited: u64,
    /// Calls that ended in an error.
    pub failures: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    requests: AtomicU64,
    cache_hits: AtomicU64,
    revalidated: AtomicU64,
    shared: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    failures: AtomicU64,
}

struct Inner<C> {
    http: CappedClient<C, Full<Bytes>>,
    base: String,
    headers: HeaderMap,
    gate: Gate,
    /// A gate per token given with [`RequestBuilder::bearer`] (or any per-request
    /// `Authorization`), made by `token_gate` on first use.
    token_gates: std::sync::Mutex<std::collections::HashMap<HeaderValue, Gate>>,
    token_gate: TokenGate,
    cache: Cache<String, Arc<Cached>>,
    /// The longest a stored response stays fresh, whatever the server allows.
    max_fresh: Duration,
    /// Cache keys with a GET in flight: one request per key at a time.
    flights: flight::Flights,
    /// Keys the hash of `Authorization` in cache keys (per client, so no two tokens can
    /// be made to share a key).
    key_hasher: std::hash::RandomState,
    limits: Limits,
    attempts: u32,
    backoff: (Duration, Duration),
    deadline: Duration,
    max_rate_limit_wait: Duration,
    shutdown: Option<Shutdown>,
    /// Redirects a GET or HEAD follows at most.
    redirects: u32,
    counters: Counters,
    jitter: AtomicU64,
}

/// The composition for a rate-limited JSON API such as GitHub's: one pooled client
/// (clones share it) instead of one per request.
///
/// Every call:
/// - runs in a [`scope`](crate::scope) (tracked by the [`Shutdown`] if one is given:
///   refused once it has begun, dropped if it forces), which holds the gate's permit;
/// - waits for the [`Gate`]; the gate is fed each response's rate headers
///   (`X-RateLimit-Remaining`/`-Reset`, `Retry-After`), so it never sends what the
///   server would refuse, in this process;
/// - has its response body capped and timed by [`Limits`] (default 10 MiB, 30 s
///   without a byte, 60 s in all) and, when it comes compressed (`Accept-Encoding` names
///   the codecs compiled in: gzip always, `deflate`, `br` and `zstd` with their
///   features), decoded under the same cap as the decoded bytes arrive, so a bomb is a
///   typed [`Error::Body`] at the cap, through `get` and `get_stream` alike;
/// - ends within one deadline (default 120 s, [`DEFAULT_CALL_DEADLINE`]) that covers
///   every attempt, wait, backoff and redirect and the body: [`Error::Deadline`];
/// - waits out rate-limit refusals (a 429, a 403 with `Retry-After` as GitHub's
///   secondary limits, a 403 or 429 with `X-RateLimit-Remaining: 0` until the reset)
///   in the gate's line, which holds every caller back for the server's pause, then
///   sends the request again, whatever its method (a refusal was not acted on). These
///   waits spend no attempt; a pause longer than 60 s
///   ([`ApiClientBuilder::max_rate_limit_wait`]) or than the deadline leaves is
///   [`Error::RateLimited`] at once. Rate limiting never reaches the caller otherwise;
/// - is retried (default 3 attempts in all) after 500, 502, 503 or 504 and after a
///   failed exchange, with an exponential backoff with full jitter (default 500 ms
///   doubling to 30 s), when sending it twice cannot act twice: GET, HEAD, PUT, DELETE,
///   OPTIONS and TRACE, or a request declared [`idempotent`](RequestBuilder::idempotent)
///   (or carrying an `Idempotency-Key`). A POST or PATCH is otherwise sent again only
///   when the connection could not be made (it never reached the server); its 5xx is
///   returned as the response, its broken exchange as [`Error::Request`];
/// - for a GET, goes through a private HTTP cache (RFC 9111; default 10,000 entries):
///   a 200 is stored unless it says `no-store` or `Vary: *`, fresh for its `max-age`,
///   else until its `Expires`, else for a tenth of its age since `Last-Modified`, less
///   its `Age` (never longer than 60 s by default); one with none of those is stored
///   only if it has a validator, and `no-cache` ones are stored to be revalidated on
///   every use. A stale entry is revalidated with `If-None-Match` or
///   `If-Modified-Since`: a `304` refreshes it and costs no GitHub quota. An entry
///   answers only a request with the same `Authorization` and the same values of the
///   headers its `Vary` names; query parameters are keyed in sorted order. A request
///   can bypass, revalidate or force the cache ([`CacheMode`]);
/// - for a GET that uses the cache, sends no request while another call's identical
///   request (same cache key, same headers) is in flight: it waits for that one and shares its answer
///   ([`Source::Shared`]) or its failure ([`Error::Shared`]), so 50 concurrent misses
///   (or reads of one stale entry) cost one request (or one conditional request). A
///   leader that is cancelled hands the request to the next caller.
///
/// A GET or HEAD follows redirects (301, 302, 303, 307, 308; at most 10, and never
/// carrying `Authorization` to another origin); connections go through the proxy the
/// environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) unless told otherwise.
/// [`paginate`](ApiClient::paginate) lists every page of a list by its `Link: rel="next"`
/// headers, bounded in pages and bytes.
///
/// Each request can carry options of its own ([`RequestBuilder`]: a query, headers, a
/// bearer token with its own gate, a JSON body, its own limits, no cache); [`ApiResponse`] gives the body
/// as bytes, text or JSON, and [`ApiResponse::error_for_status`] turns a 4xx or 5xx into
/// [`Error::Status`] with the server's message. `api.get(path)` is awaited as it is; pass
/// `api.get(path).send()` where a `Future` is required (`block_on`, `join!`).
///
/// For what should not be held in memory (logs to scan, archives to unpack),
/// [`get_stream`](ApiClient::get_stream) hands the body over as a stream, under caps
/// and timeouts of its own, holding the gate's permit until it is dropped.
///
/// # What a call returns
///
/// - `Ok(response)` for every answer that is not retried: 2xx, 3xx not followed, 4xx
///   (a 404 or 422 is a response: [`ApiResponse::error_for_status`] makes it an error),
///   and a 5xx to a request that may not be sent twice.
/// - [`Error::GaveUp`]: still 500, 502, 503 or 504 after the attempts.
/// - [`Error::Request`]: the exchange failed (connection refused or reset, no response
///   head in time) after the attempts, or once for a request that may not be sent twice.
/// - [`Error::Body`]: the body broke a cap or a timeout (never retried).
/// - [`Error::RateLimited`]: the server asked for a longer pause than the call may wait.
/// - [`Error::Deadline`]: the call's deadline passed.
/// - [`Error::Shared`]: the request this GET waited for failed.
/// - Before anything is sent: [`Error::BadUri`], [`Error::ShuttingDown`],
///   [`Error::Redirects`], [`Error::Gate`].
///
/// A call takes at most its deadline (120 s by default), whatever the server does.
///
/// # Defaults
///
/// | what | default | set with |
/// |---|---|---|
/// | gate | no quota, 32 in flight, adaptive, the server's rate headers | [`gate`](ApiClientBuilder::gate), [`gate_per_token`](ApiClientBuilder::gate_per_token) |
/// | attempts after a 5xx or a failed exchange | 3 in all | [`attempts`](ApiClientBuilder::attempts) |
/// | backoff | full jitter, 500 ms doubling to 30 s | [`backoff`](ApiClientBuilder::backoff) |
/// | deadline per call | 120 s | [`deadline`](ApiClientBuilder::deadline) |
/// | longest rate-limit pause waited out | 60 s | [`max_rate_limit_wait`](ApiClientBuilder::max_rate_limit_wait) |
/// | response body | 10 MiB, 30 s without a byte, 60 s in all | [`limits`](ApiClientBuilder::limits), [`RequestBuilder::limits`] |
/// | cache | 10,000 responses, none fresh for over 60 s | [`cache`](ApiClientBuilder::cache), [`RequestBuilder::cache_mode`] |
/// | redirects | 10, GET and HEAD | [`redirects`](ApiClientBuilder::redirects) |
/// | proxy | `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` | [`proxy`](ApiClientBuilder::proxy), [`no_proxy`](ApiClientBuilder::no_proxy) |
/// | TLS roots | Mozilla's (`webpki-roots`) | [`tls_roots`](ApiClientBuilder::tls_roots), [`tls_config`](ApiClientBuilder::tls_config) |
///
/// `ApiClient::builder(base).build()` speaks HTTPS (feature `rustls`, on by default:
/// rustls with the ring provider, Mozilla's roots or the system's, HTTP/2 by ALPN with
/// HTTP/1.1 as the fallback) and plain HTTP/1.1. A base with any other scheme, or
/// `https` in a build without `rustls`, is refused by `build()` with
/// [`Error::UnsupportedScheme`]: never sent, never retried. Another connector can be
/// brought with [`ApiClientBuilder::build_with`].
///
/// ```no_run
/// # async fn example() -> Result<(), leakproof::Error> {
/// use leakproof::{ApiClient, Source};
///
/// let github = ApiClient::builder("https://api.github.com")
///     .header("authorization", "Bearer ghp_...")
///     .build()?;
/// let first = github.get("/repos/rust-lang/rust").await?;
/// assert_eq!(first.source, Source::Network);
/// let again = github.get("/repos/rust-lang/rust").await?; // within max-age
/// assert_eq!(again.source, Source::Cache);
/// # Ok(()) }
/// ```
pub struct ApiClient<C = DefaultConnector> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for ApiClient<C> {
    fn clone(&self) -> Self {
        ApiClient {
            inner: self.inner.clone(),
        }
    }
}

impl<C> std::fmt::Debug for ApiClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.inner.base)
            .field("gate", &self.inner.gate)
            .finish_non_exhaustive()
    }
}

/// The connector [`ApiClientBuilder::build`] uses: hyper-rustls (feature `rustls`) over
/// a [`ProxyConnector`] (hyper-util's `HttpConnector`, through a proxy where the rules
/// say).
#[cfg(feature = "rustls")]
pub type DefaultConnector = hyper_rustls::HttpsConnector<ProxyConnector>;
/// The connector [`ApiClientBuilder::build`] uses: hyper-rustls (feature `rustls`) over
/// a [`ProxyConnector`] (hyper-util's `HttpConnector`, through a proxy where the rules
/// say).
#[cfg(not(feature = "rustls"))]
pub type DefaultConnector = ProxyConnector;

/// Where an HTTPS [`ApiClient`] finds the certificate authorities it trusts.
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRoots {
    /// Mozilla's roots, compiled in (feature `webpki-roots`, on by default): the same
    /// on every host, updated with the crate.
    Webpki,
    /// The operating system's store, read when the client is built (feature
    /// `native-roots`): what the host trusts, a corporate CA included.
    Native,
}

/// Makes the gate of one token.
#[derive(Clone)]
struct TokenGate(Arc<dyn Fn() -> Gate + Send + Sync>);

impl std::fmt::Debug for TokenGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenGate(..)")
    }
}

/// A call's deadline unless [`ApiClientBuilder::deadline`] says otherwise: long enough to
/// wait out a 60 s secondary-limit pause and still try again.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(120);

/// The longest rate-limit pause a call waits out unless
/// [`ApiClientBuilder::max_rate_limit_wait`] says otherwise (GitHub asks for at least a
/// minute after a secondary limit).
pub const DEFAULT_MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The gate a client makes when none is given: no quota of its own, at most 32 requests
/// in flight, adaptive (halved on each rate-limit refusal, grown back by one per round
/// of answers), the server's rate headers.
fn default_gate() -> Gate {
    default_gate_builder().build()
}

fn default_gate_builder() -> rate_gate::GateBuilder {
    Gate::builder().concurrency(32).adaptive()
}

/// Options for an [`ApiClient`].
#[derive(Debug)]
pub struct ApiClientBuilder {
    base: String,
    headers: Vec<(String, String)>,
    gate: Option<Gate>,
    token_gate: Option<TokenGate>,
    max_entries: u64,
    ttl: Duration,
    limits: Limits,
    attempts: u32,
    backoff: (Duration, Duration),
    deadline: Duration,
    max_rate_limit_wait: Duration,
    shutdown: Option<Shutdown>,
    redirects: u32,
    proxy: Proxy,
    #[cfg(feature = "rustls")]
    tls: Tls,
    http1_only: bool,
}

/// Where a builder's proxy rules come from.
#[derive(Debug, Clone)]
enum Proxy {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`.
    Env,
    /// Every request through this proxy.
    All(String),
    /// No proxy.
    Off,
}

/// The TLS settings of a builder.
#[cfg(feature = "rustls")]
#[derive(Debug)]
enum Tls {
    Roots(TlsRoots),
    Config(Box<rustls::ClientConfig>),
}

#[cfg(feature = "rustls")]
impl Default for Tls {
    fn default() -> Self {
        if cfg!(feature = "webpki-roots") || !cfg!(feature = "native-roots") {
            Tls::Roots(TlsRoots::Webpki)
        } else {
            Tls::Roots(TlsRoots::Native)
        }
    }
}

impl ApiClientBuilder {
    /// A header sent with every request (`authorization`, `user-agent`, `accept`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The gate every request waits for (default: no quota of its own, at most 32
    /// requests in flight, and the server's rate headers, named after the base's host
    /// for its metrics, as is the client's cache). Share one gate between the clients
    /// that spend one quota.
    pub fn gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// How the gate of each token given per request ([`RequestBuilder::bearer`]) is made
    /// (default: like the client's default gate, 32 in flight and the server's rate
    /// headers). Each token's quota and pauses are its own: one installation at its
    /// limit does not hold up another.
    pub fn gate_per_token(mut self, make: impl Fn() -> Gate + Send + Sync + 'static) -> Self {
        self.token_gate = Some(TokenGate(Arc::new(make)));
        self
    }

    /// At most `max_entries` GET responses stored (default 10,000), none kept fresh
    /// longer than `max_fresh` (default 60 s) whatever the server allows. What is stored
    /// and for how long follows RFC 9111 for a private cache (see [`CacheMode`]).
    pub fn cache(mut self, max_entries: u64, max_fresh: Duration) -> Self {
        self.max_entries = max_entries;
        self.ttl = max_fresh;
        self
    }

    /// The caps and timeouts on every response body.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How many times a request may be sent in all after a server error or a failed
    /// connection (default 3; at least 1). Rate-limit refusals the client waits out do
    /// not count: they are bounded by the [`deadline`](Self::deadline) instead.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The longest one call may take, from the call to its answer: every attempt, every
    /// wait for the gate, every backoff, redirect and rate-limit pause, and the body
    /// (default 120 s). Past it the call ends with [`Error::Deadline`]; the request in
    /// flight is dropped, its permit released. Longer than 100 years (`Duration::MAX`,
    /// say) is taken as 100 years: added to the clock's reading it would overflow (it
    /// once panicked on every call).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline.min(crate::LONGEST_LIMIT);
        self
    }

    /// The longest pause a call waits out when the server refuses for its rate limit
    /// (`Retry-After`, or a spent quota until `X-RateLimit-Reset`; default 60 s). A
    /// longer pause, or one longer than the call's deadline leaves, ends the call at
    /// once with [`Error::RateLimited`] instead of waiting in vain.
    pub fn max_rate_limit_wait(mut self, longest: Duration) -> Self {
        self.max_rate_limit_wait = longest;
        self
    }

    /// Every request through the HTTP proxy at `url` (`http://user:pass@proxy:3128`),
    /// instead of the environment's rules.
    pub fn proxy(mut self, url: &str) -> Self {
        self.proxy = Proxy::All(url.to_string());
        self
    }

    /// No proxy, whatever the environment says (by default `HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY` are honoured, read when the client is built).
    pub fn no_proxy(mut self) -> Self {
        self.proxy = Proxy::Off;
        self
    }

    /// How many redirects a GET or HEAD follows (301, 302, 303, 307, 308; default 10; 0:
    /// none, the redirect is the response). `Authorization` is not sent on past a
    /// redirect to another origin (scheme, host or port); one redirect too many is
    /// [`Error::Redirects`].
    pub fn redirects(mut self, most: u32) -> Self {
        self.redirects = most;
        self
    }

    /// The backoff before a retry: a random wait up to `first`, doubling per attempt,
    /// never above `max` (defaults 500 ms and 30 s).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max.max(first));
        self
    }

    /// Tracks every call in `shutdown`: refused once it has begun, forced with it.
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// The certificate authorities an HTTPS client trusts (default
    /// [`TlsRoots::Webpki`] where compiled in, else [`TlsRoots::Native`]).
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_roots(mut self, roots: TlsRoots) -> Self {
        self.tls = Tls::Roots(roots);
        self
    }

    /// A TLS configuration of your own (private roots, client certificates, another
    /// crypto provider). Its ALPN protocols are replaced by the ones this client speaks
    /// (`h2` and `http/1.1`, or only `http/1.1` after [`http1_only`](Self::http1_only)).
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Tls::Config(Box::new(config));
        self
    }

    /// Speak HTTP/1.1 only, even where the server offers HTTP/2.
    pub fn http1_only(mut self) -> Self {
        self.http1_only = true;
        self
    }

    /// The client: HTTPS (feature `rustls`) and plain HTTP, HTTP/2 where the server
    /// offers it by ALPN, idle connections kept 90 s, at most 32 per host. A base whose
    /// scheme this build cannot speak is refused here with [`Error::UnsupportedScheme`].
    pub fn build(self) -> Result<ApiClient> {
        let scheme = base_scheme(&self.base)?;
        speakable(&self.base, scheme, cfg!(feature = "rustls"))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let rules = match &self.proxy {
            Proxy::Env => Some(Matcher::from_env()),
            Proxy::All(url) => Some(Matcher::builder().all(url.clone()).build()),
            Proxy::Off => None,
        };
        let http = ProxyConnector::new(http, rules);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32);
        #[cfg(feature = "rustls")]
        {
            let _ = scheme;
            let config = self.tls_client_config()?;
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_http1();
            let https = if self.http1_only {
                https.wrap_connector(http)
            } else {
                https.enable_http2().wrap_connector(http)
            };
            let client = builder.build(https);
            self.build_with(client)
        }
        #[cfg(not(feature = "rustls"))]
        {
            // `https` was refused above (`speakable`).
            let _ = scheme;
            let client = builder.build(http);
            self.build_with(client)
        }
    }

    /// The rustls configuration `build` uses, from the roots chosen or the config given.
    #[cfg(feature = "rustls")]
    fn tls_client_config(&self) -> Result<rustls::ClientConfig> {
        let tls_error = |reason: String| Error::Tls {
            uri: self.base.clone(),
            reason,
        };
        match &self.tls {
            Tls::Config(config) => {
                let mut config = (**config).clone();
                // hyper-rustls sets ALPN from the versions enabled (and panics on a
                // config that already has some).
                config.alpn_protocols.clear();
                Ok(config)
            }
            Tls::Roots(roots) => {
                let store = root_store(*roots).map_err(tls_error)?;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let builder = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| tls_error(e.to_string()))?;
                Ok(builder.with_root_certificates(store).with_no_client_auth())
            }
        }
    }

    /// A client on a hyper-util client built elsewhere (a TLS connector, other pool
    /// settings).
    pub fn build_with<C>(self, client: Client<C, Full<Bytes>>) -> Result<ApiClient<C>>
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        let base = self.base.trim_end_matches('/').to_string();
        let parsed: Uri = base
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::BadUri {
                uri: base.clone(),
                reason: e.to_string(),
            })?;
        if parsed.scheme().is_none() || parsed.authority().is_none() {
            return Err(Error::BadUri {
                uri: base,
                reason: "the base needs a scheme and a host (`https://api.github.com`)".into(),
            });
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let bad = |reason: String| Error::BadUri {
                uri: base.clone(),
                reason,
            };
            let name = HeaderName::try_from(name.as_str())
                .map_err(|e| bad(format!("header name `{name}`: {e}")))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|e| bad(format!("header `{name}` value: {e}")))?;
            headers.append(name, value);
        }
        // Named after the host, for their metrics (`gate="api.github.com"`).
        let host = parsed.host().unwrap_or_default();
        let gate = self
            .gate
            .unwrap_or_else(|| default_gate_builder().name(host).build());
        let token_gate = self
            .token_gate
            .unwrap_or_else(|| TokenGate(Arc::new(default_gate)));
        let cache = Cache::builder()
            .max_entries(self.max_entries)
            .ttl(self.ttl)
            // Stale entries are kept a while for revalidation.
            .stale_for(Duration::from_secs(3600))
            .name(host)
            .build();
        Ok(ApiClient {
            inner: Arc::new(Inner {
                http: CappedClient::from_client(client),
                base,
                headers,
                gate,
                token_gates: Default::default(),
                token_gate,
                cache,
                max_fresh: self.ttl,
                flights: Default::default(),
                key_hasher: std::hash::RandomState::new(),
                limits: self.limits,
                attempts: self.attempts,
                backoff: self.backoff,
                deadline: self.deadline,
                max_rate_limit_wait: self.max_rate_limit_wait,
                shutdown: self.shutdown,
                redirects: self.redirects,
                counters: Counters::default(),
                jitter: AtomicU64::new(seed()),
            }),
        })
    }
}

/// The trusted roots `roots` names, if compiled in and not empty.
#[cfg(feature = "rustls")]
// With neither roots feature on, only the refusal is left.
#[allow(unreachable_code, unused_mut, unused_variables)]
fn root_store(roots: TlsRoots) -> std::result::Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        #[cfg(feature = "webpki-roots")]
        TlsRoots::Webpki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        #[cfg(feature = "native-roots")]
        TlsRoots::Native => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "leakproof: a system root could not be read");
            }
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "leakproof: system roots loaded");
        }
        #[allow(unreachable_patterns)]
        other => {
            return Err(format!(
                "{other:?} roots are not compiled in: enable leakproof's `webpki-roots` or \
                 `native-roots` feature, or give a `tls_config`"
            ));
        }
    }
    if store.is_empty() {
        return Err(format!("no trusted root in {roots:?}"));
    }
    Ok(store)
}

/// Refuses an `https` base in a build without TLS (`has_tls`: the `rustls` feature), when
/// the client is built rather than on every request. A function of its own so a build
/// with TLS tests it too.
fn speakable(base: &str, scheme: &str, has_tls: bool) -> Result<()> {
    if scheme == "https" && !has_tls {
        return Err(Error::UnsupportedScheme {
            uri: base.to_string(),
            scheme: scheme.to_string(),
            reason: "this build has no TLS: enable leakproof's `rustls` feature, \
                     or bring a connector through `build_with`",
        });
    }
    Ok(())
}

/// The base's scheme, if this client can speak it (`http`, or `https` with a TLS
/// connector); anything else is refused before a request is made.
fn base_scheme(base: &str) -> Result<&'static str> {
    let scheme = base.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http") => Ok("http"),
        Some("https") => Ok("https"),
        Some(other) => Err(Error::UnsupportedScheme {
            uri: base.to_string(),
            scheme: other.to_string(),
            reason: "an API client speaks `http` and `https` only",
        }),
        None => Err(Error::BadUri {
            uri: base.to_string(),
            reason: "the base needs a scheme and a host (`https://api.github.com`)".into(),
        }),
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 32) | 1
}

impl ApiClient {
    /// Options for a client of the API at `base` (`https://api.github.com`); request
    /// paths are appended to it.
    pub fn builder(base: &str) -> ApiClientBuilder {
        ApiClientBuilder {
            base: base.to_string(),
            headers: Vec::new(),
            gate: None,
            token_gate: None,
            max_entries: 10_000,
            ttl: Duration::from_secs(60),
            limits: Limits::new(10 << 20)
                .idle_timeout(Duration::from_secs(30))
                .deadline(Duration::from_secs(60)),
            attempts: 3,
            backoff: (Duration::from_millis(500), Duration::from_secs(30)),
            deadline: DEFAULT_CALL_DEADLINE,
            max_rate_limit_wait: DEFAULT_MAX_RATE_LIMIT_WAIT,
            shutdown: None,
            redirects: 10,
            proxy: Proxy::Env,
            #[cfg(feature = "rustls")]
            tls: Tls::default(),
            http1_only: false,
        }
    }
}

/// The outcome of one attempt that did not fail outright.
enum Attempt {
    Done(ApiResponse),
    /// Follow the redirect to this `Location`.
    Redirect(String),
    /// Send it again, after `after` (or the backoff when `None`).
    Retry {
        after: Option<Duration>,
        why: Retryable,
    },
    /// The server refused for its rate limit: wait in the gate's line (which took the
    /// server's pause) and send it again, without spending an attempt.
    RateLimited,
}

enum Retryable {
    Status(StatusCode),
    Failed(bounded_stream::Error),
}

fn from_cache(cached: &Cached, source: Source, call: &Call) -> ApiResponse {
    ApiResponse {
        status: cached.status,
        headers: cached.headers.clone(),
        body: cached.body.clone(),
        source,
        method: call.method.clone(),
        uri: call.key_uri(),
    }
}

/// The codec a response's `Content-Encoding` names, when this build decodes it; `None`
/// for none (the body is passed on as it came, header included).
fn content_codec(headers: &HeaderMap) -> Option<Codec> {
    let value = headers.get(CONTENT_ENCODING)?.to_str().ok()?;
    Codec::from_content_encoding(value).filter(|c| c.is_available())
}

/// The body as chunks: decoded under `limits` (the decoded bytes' cap and timeouts) when
/// `codec` says it is compressed, the wire bytes themselves having been capped by the
/// same limits already.
fn body_stream(body: BoundedBody<Incoming>, codec: Option<Codec>, limits: &Limits) -> BodyStream {
    match codec {
        None => Box::pin(body.into_data_stream()),
        Some(codec) => Box::pin(bounded_stream::decode(
            body.into_data_stream(),
            codec,
            &DecodeLimits::new(limits.clone()),
        )),
    }
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

/// Server errors that are usually passing, worth sending an idempotent request again
/// for. (Rate-limit refusals are told by [`Feedback::limited`] and waited out.)
fn server_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// Whether `method` may be sent twice with the effect of once (RFC 9110, 9.2.2).
fn idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ]
    .contains(method)
}

/// Whether a failed send surely never reached the server: the connection itself could
/// not be made (refused, unreachable, TLS handshake), so nothing was written.
fn never_sent(error: &bounded_stream::Error) -> bool {
    let bounded_stream::Error::Request { source, .. } = error else {
        return false;
    };
    source
        .get_ref()
        .and_then(|e| e.downcast_ref::<hyper_util::client::legacy::Error>())
        .is_some_and(hyper_util::client::legacy::Error::is_connect)
}

/// How long a rate-limit refusal asks to wait: its `Retry-After`, else the time to the
/// reset of a spent quota, else the gate's default pause.
fn refusal_wait(feedback: &Feedback) -> Duration {
    feedback
        .retry_after
        .or(feedback.reset_in)
        .unwrap_or(rate_gate::DEFAULT_REFUSAL_PAUSE)
}

impl<C> ApiClient<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// The gate (for its stats, or to share it).
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// The gate of requests made with [`bearer(token)`](RequestBuilder::bearer) (made
    /// now if none was used yet).
    pub fn gate_for_token(&self, token: &str) -> Gate {
        match HeaderValue::try_from(format!("Bearer {token}")) {
            Ok(value) => self.gate_for(Some(&value)),
            Err(_) => self.inner.gate.clone(),
        }
    }

    /// The gate for a request whose own `Authorization` is `authorization`: the client's
    /// when it has none of its own, else that token's.
    fn gate_for(&self, authorization: Option<&HeaderValue>) -> Gate {
        let inner = &*self.inner;
        let Some(value) = authorization else {
            return inner.gate.clone();
        };
        let mut gates = inner
            .token_gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        gates
            .entry(value.clone())
            .or_insert_with(|| (inner.token_gate.0)())
            .clone()
    }

    /// What the client has done so far.
    pub fn stats(&self) -> ApiStats {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ApiStats {
            calls: load(&c.calls),
            requests: load(&c.requests),
            cache_hits: load(&c.cache_hits),
            revalidated: load(&c.revalidated),
            shared: load(&c.shared),
            retries: load(&c.retries),
            rate_limited: load(&c.rate_limited),
            failures: load(&c.failures),
        }
    }

    /// The number of cached responses.
    pub fn cached(&self) -> usize {
        self.inner.cache.len()
    }

    /// The cache's own figures (hits, misses, evictions, revalidations).
    pub fn cache_stats(&self) -> ttl_cache::Stats {
        self.inner.cache.stats()
    }

    /// A GET of `path` (appended to the base): from the cache while fresh, revalidated
    /// once stale, else from the server. Await it as it is (`api.get(path).await`), or
    /// set options first: `api.get(path).query(&[("per_page", "100")]).bearer(token)
    /// .send().await` (see [`RequestBuilder`]).
    pub fn get(&self, path: &str) -> RequestBuilder<'_, C> {
        self.request(Method::GET, path)
    }

    /// A POST of `path`; give it a body with [`RequestBuilder::body`] or `json`.
    pub fn post(&self, path: &str) -> RequestBuilder<'_, C> {
        self.request(Method::POST, path)
    }

    /// A PUT of `path`.
    pub fn put(&self, path: &str) -> RequestBuilder<'_, C> {
        self.request(Method::PUT, path)
    }

    /// A PATCH of `path`.
    pub fn patch(&self, path: &str) -> RequestBuilder<'_, C> {
        self.request(Method::PATCH, path)
    }

    /// A DELETE of `path`.
    pub fn delete(&self, path: &str) -> RequestBuilder<'_, C> {
        self.request(Method::DELETE, path)
    }

    /// A request with any method. Only GETs are cached; a successful request with
    /// another method drops the cached GET of the same URI.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder<'_, C> {
        RequestBuilder::new(self, method, path)
    }

    /// The items of every page of the list at `path`, following `rel="next"` links: the
    /// short form of `get(path).paginate()` (see [`Paginate`]).
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn paginate<'a, T>(&'a self, path: &str) -> Paginate<'a, C, T>
    where
        T: serde::de::DeserializeOwned + Send + 'a,
    {
        self.get(path).paginate()
    }

    /// `url` as a path (and query) below the base, if it is below the base.
    #[cfg(feature = "json")]
    fn relative(&self, url: &str) -> Option<String> {
        let rest = url.strip_prefix(self.inner.base.as_str())?;
        (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
            .then(|| rest.to_string())
    }

    /// Sends `body` with `method` to `path`; never cached. A successful request with
    /// another method than GET drops the cached GET of the same path. The short form of
    /// `request(method, path).body(body).send()`.
    pub async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<ApiResponse> {
        self.request(method, path).body(body).send().await
    }

    /// `path` appended to the base, with `query` (already encoded) if any.
    fn uri(&self, path: &str, query: &str) -> Result<Uri> {
        let mut text = if path.starts_with('/') {
            format!("{}{path}", self.inner.base)
        } else {
            format!("{}/{path}", self.inner.base)
        };
        if !query.is_empty() {
            text.push(if text.contains('?') { '&' } else { '?' });
            text.push_str(query);
        }
        text.parse()
            .map_err(|e: http::uri::InvalidUri| Error::BadUri {
                uri: text.clone(),
                reason: e.to_string(),
            })
    }

    /// Runs a built request: from the cache if it may, else through the retry loop, in a
    /// scope (or the shutdown's).
    async fn run(&self, call: Call) -> Result<ApiResponse> {
        let inner = &*self.inner;
        inner.counters.calls.fetch_add(1, Ordering::Relaxed);
        if call.method == Method::GET {
            let stored = match call.cache {
                CacheMode::Default => inner.cache.get(&call.key),
                // Any stored response, fresh or stale.
                CacheMode::Force => inner.cache.revalidation(&call.key).map(|(held, _)| held),
                _ => None,
            };
            if let Some(hit) = stored
                && http_cache::vary_matches(&hit.vary, &call.headers)
            {
                inner.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(from_cache(&hit, Source::Cache, &call));
            }
        }
        let name = format!("{} {}", call.method, call.uri.path());
        let (method, uri, deadline) = (call.method.clone(), call.key_uri(), inner.deadline);
        let op = |scope: crate::Scope| async move {
            tokio::time::timeout_at(call.deadline, self.coalesced(scope, call))
                .await
                .unwrap_or(Err(Error::Deadline {
                    method,
                    uri,
                    deadline,
                }))
        };
        let outcome = match &inner.shutdown {
            Some(shutdown) => shutdown.run(&name, op).await.and_then(|(r, _)| r),
            None => crate::scope(&name, op).await.0,
        };
        if outcome.is_err() {
            inner.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// A GET that uses the cache shares the request of any call for the same key in
    /// flight (one request per key at a time); anything else is sent as it is.
    async fn coalesced(&self, scope: crate::Scope, call: Call) -> Result<ApiResponse> {
        if call.method != Method::GET || call.cache == CacheMode::Bypass {
            return self.exchange(scope, call).await;
        }
        // Only the same request shares: the cache key, plus every header it sends (two
        // GETs of one URI with another `Accept` may get different answers).
        let headers = call.headers.iter().fold(0u64, |sum, (name, value)| {
            sum ^ self
                .inner
                .key_hasher
                .hash_one((name.as_str(), value.as_bytes()))
        });
        let flight = format!("{}#headers={headers:016x}", call.key);
        let (method, uri) = (call.method.clone(), call.key_uri());
        let outcome = self
            .inner
            .flights
            .run(&method, &flight, &uri, || self.exchange(scope, call))
            .await;
        if matches!(&outcome, Ok(r) if r.source == Source::Shared)
            || matches!(outcome, Err(Error::Shared { .. }))
        {
            self.inner.counters.shared.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// GET requests in flight now, one per cache key (coalesced GETs wait on them).
    pub fn in_flight_keys(&self) -> usize {
        self.inner.flights.len()
    }

    async fn exchange(&self, scope: crate::Scope, mut call: Call) -> Result<ApiResponse> {
        let inner = &*self.inner;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Looked up at each attempt: another call may have refreshed it meanwhile.
            let held = if call.method == Method::GET && call.cache != CacheMode::Bypass {
                inner
                    .cache
                    .revalidation(&call.key)
                    .filter(|(held, _)| http_cache::vary_matches(&held.vary, &call.headers))
            } else {
                None
            };
            let permit = call.gate.acquire_owned().await?;
            let outcome = self.attempt(&call, held, &permit).await?;
            let (after, why) = match outcome {
                Attempt::RateLimited => {
                    // Not a failed attempt: the gate holds every caller back until the
                    // server's pause is over, and this one waits in its line.
                    inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                    inner.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                    attempt -= 1;
                    continue;
                }
                Attempt::Retry {
                    why: Retryable::Failed(error),
                    ..
                } if !call.may_resend() && !never_sent(&error) => {
                    // It may have reached the server: sending it again could act twice.
                    return Err(Error::Request {
                        method: call.method.clone(),
                        uri: call.key_uri(),
                        attempts: attempt,
                        source: error,
                    });
                }
                Attempt::Done(response) => {
                    // The permit's slot is released with the scope.
                    scope.hold("gate permit", permit);
                    if call.method != Method::GET && response.status.is_success() {
                        inner.cache.remove(&call.key);
                    }
                    return Ok(response);
                }
                Attempt::Redirect(location) => {
                    call.follow(&location)?;
                    // A redirect is not a failed attempt.
                    attempt -= 1;
                    continue;
                }
                Attempt::Retry { after, why } => (after, why),
            };
            drop(permit);
            let wait = self.retry_after(&call.method, &call.key_uri(), attempt, why, after)?;
            tokio::time::sleep(wait).await;
        }
    }

    /// After a failed attempt: the error once the attempts are spent, else how long to
    /// wait before the next one (the server's pause, or the backoff).
    fn retry_after(
        &self,
        method: &Method,
        key: &str,
        attempt: u32,
        why: Retryable,
        after: Option<Duration>,
    ) -> Result<Duration> {
        let inner = &*self.inner;
        if attempt >= inner.attempts {
            return Err(match why {
                Retryable::Status(status) => Error::GaveUp {
                    method: method.clone(),
                    uri: key.to_string(),
                    attempts: attempt,
                    status,
                },
                Retryable::Failed(source) => Error::Request {
                    method: method.clone(),
                    uri: key.to_string(),
                    attempts: attempt,
                    source,
                },
            });
        }
        inner.counters.retries.fetch_add(1, Ordering::Relaxed);
        let wait = after.unwrap_or_else(|| self.backoff(attempt));
        match &why {
            Retryable::Status(status) => {
                tracing::debug!(%method, uri = %key, %status, attempt, wait_ms = wait.as_millis() as u64, "leakproof: retrying")
            }
            Retryable::Failed(error) => {
                tracing::debug!(%method, uri = %key, %error, attempt, wait_ms = wait.as_millis() as u64, "leakproof: retrying")
            }
        }
        Ok(wait)
    }

    /// A GET whose body is not collected: it is handed over as a stream, capped and timed
    /// by `limits` (not the client's), for what may be larger than memory should hold:
    /// logs to scan, archives to unpack as they arrive. Never cached. Retried like
    /// [`get`](Self::get) until the response head arrives; a body that breaks `limits`
    /// fails the stream, not this call.
    ///
    /// The gate's permit travels with the body and is released when the stream ends or
    /// is dropped. A shutdown that has begun refuses the call (no scope is opened: the
    /// caller's own scope holds the stream).
    pub async fn get_stream(&self, path: &str, limits: &Limits) -> Result<ApiStream> {
        let inner = &*self.inner;
        inner.counters.calls.fetch_add(1, Ordering::Relaxed);
        let outcome = self.stream_exchange(path, limits).await;
        if outcome.is_err() {
            inner.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// A rate-limit refusal (`feedback.limited`) to wait out: fine when the pause it
    /// asks for fits both the longest wait and what is left before `deadline`, else
    /// [`Error::RateLimited`].
    fn wait_for_refusal(
        &self,
        method: &Method,
        uri: &Uri,
        status: StatusCode,
        feedback: &Feedback,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        let wait = refusal_wait(feedback);
        let longest = self
            .inner
            .max_rate_limit_wait
            .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        if wait > longest {
            return Err(Error::RateLimited {
                method: method.clone(),
                uri: uri.to_string(),
                status,
                wait,
                longest,
            });
        }
        tracing::debug!(%method, %uri, %status, wait_ms = wait.as_millis() as u64, "leakproof: rate limited; waiting");
        Ok(())
    }

    async fn stream_exchange(&self, path: &str, limits: &Limits) -> Result<ApiStream> {
        let uri = self.uri(path, "")?;
        let deadline = tokio::time::Instant::now() + self.inner.deadline;
        tokio::time::timeout_at(
            deadline,
            self.stream_attempts(uri.clone(), limits, deadline),
        )
        .await
        .unwrap_or(Err(Error::Deadline {
            method: Method::GET,
            uri: uri.to_string(),
            deadline: self.inner.deadline,
        }))
    }

    /// `get_stream`'s attempts, until a response head that is not retried.
    async fn stream_attempts(
        &self,
        uri: Uri,
        limits: &Limits,
        deadline: tokio::time::Instant,
    ) -> Result<ApiStream> {
        let inner = &*self.inner;
        let key = uri.to_string();
        let mut attempt = 0;
        loop {
            if let Some(shutdown) = &inner.shutdown
                && shutdown.is_shutting_down()
            {
                return Err(Error::ShuttingDown {
                    name: format!("GET {} (stream)", uri.path()),
                });
            }
            attempt += 1;
            let permit = inner.gate.acquire_owned().await?;
            let mut request = Request::new(Full::new(Bytes::new()));
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = inner.headers.clone();
            request::accept_encodings(request.headers_mut());
            inner.counters.requests.fetch_add(1, Ordering::Relaxed);
            let (after, why) = match inner.http.send(request, limits).await {
                Err(source @ bounded_stream::Error::ContentLengthTooLarge { .. }) => {
                    return Err(Error::Body {
                        method: Method::GET,
                        uri: key,
                        source,
                    });
                }
                Err(error) => (None, Retryable::Failed(error)),
                Ok(response) => {
                    let status = response.status();
                    let feedback = Feedback::from_headers(status, response.headers());
                    permit.observe(feedback);
                    if feedback.limited {
                        self.wait_for_refusal(&Method::GET, &uri, status, &feedback, deadline)?;
                        inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                        inner.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                        attempt -= 1;
                        continue;
                    }
                    if !server_error(status) {
                        let (mut parts, body) = response.into_parts();
                        let codec = content_codec(&parts.headers);
                        if codec.is_some() {
                            parts.headers.remove(CONTENT_ENCODING);
                            parts.headers.remove(CONTENT_LENGTH);
                        }
                        return Ok(ApiStream {
                            status,
                            headers: parts.headers,
                            body: body_stream(body, codec, limits),
                            permit,
                        });
                    }
                    (
                        feedback.retry_after.map(|_| Duration::ZERO),
                        Retryable::Status(status),
                    )
                }
            };
            drop(permit);
            let wait = self.retry_after(&Method::GET, &key, attempt, why, after)?;
            tokio::time::sleep(wait).await;
        }
    }

    /// Full jitter: a random wait in `[0, min(max, first * 2^(attempt-1))]`.
    fn backoff(&self, attempt: u32) -> Duration {
        let (first, max) = self.inner.backoff;
        let ceiling = first.saturating_mul(1u32 << (attempt - 1).min(20)).min(max);
        // xorshift64*: jitter only, not security.
        let mut x = self.inner.jitter.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.inner.jitter.store(x, Ordering::Relaxed);
        let unit = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(unit)
    }

    async fn attempt(
        &self,
        call: &Call,
        held: Option<(Arc<Cached>, Validators)>,
        permit: &rate_gate::Permit<'static>,
    ) -> Result<Attempt> {
        let inner = &*self.inner;
        let (method, key) = (&call.method, &call.key);
        let mut request = Request::new(Full::new(call.body.clone()));
        *request.method_mut() = method.clone();
        *request.uri_mut() = call.uri.clone();
        *request.headers_mut() = call.headers.clone();
        if let Some((_, validators)) = &held {
            let conditional = match (&validators.etag, &validators.last_modified) {
                (Some(etag), _) => Some((IF_NONE_MATCH, etag)),
                (None, Some(date)) => Some((IF_MODIFIED_SINCE, date)),
                (None, None) => None,
            };
            if let Some((name, value)) = conditional
                && let Ok(value) = HeaderValue::try_from(value.as_str())
            {
                request.headers_mut().insert(name, value);
            }
        }
        inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        let response = match inner.http.send(request, &call.limits).await {
            Ok(response) => response,
            Err(source @ bounded_stream::Error::ContentLengthTooLarge { .. }) => {
                return Err(Error::Body {
                    method: method.clone(),
                    uri: call.key_uri(),
                    source,
                });
            }
            Err(error) => {
                return Ok(Attempt::Retry {
                    after: None,
                    why: Retryable::Failed(error),
                });
            }
        };
        let status = response.status();
        let feedback = Feedback::from_headers(status, response.headers());
        permit.observe(feedback);
        if feedback.limited {
            // The server did not act on a refusal: any method may be sent again.
            self.wait_for_refusal(method, &call.uri, status, &feedback, call.deadline)?;
            return Ok(Attempt::RateLimited);
        }
        if status == StatusCode::NOT_MODIFIED
            && let Some((cached, _)) = held
        {
            // The 304's own freshness headers, where it has them, update the stored
            // response's (RFC 9111, 4.3.4).
            let mut headers = cached.headers.clone();
            for name in [CACHE_CONTROL, EXPIRES, DATE, AGE, ETAG, LAST_MODIFIED] {
                if let Some(value) = response.headers().get(&name) {
                    headers.insert(name, value.clone());
                }
            }
            match http_cache::freshness(StatusCode::OK, &headers, SystemTime::now()) {
                Some(ttl) => {
                    inner.cache.refresh(key, Some(ttl.min(inner.max_fresh)));
                }
                None => {
                    inner.cache.remove(key);
                }
            }
            inner.counters.revalidated.fetch_add(1, Ordering::Relaxed);
            return Ok(Attempt::Done(from_cache(
                &cached,
                Source::Revalidated,
                call,
            )));
        }
        // Followed when the client follows any (one too many is an error, not the 3xx).
        if (call.redirects_left > 0 || call.redirected > 0)
            && matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
            && (*method == Method::GET || *method == Method::HEAD)
            && let Some(location) = response.headers().get(LOCATION)
            && let Ok(location) = location.to_str()
        {
            return Ok(Attempt::Redirect(location.to_string()));
        }
        if server_error(status) && call.may_resend() {
            return Ok(Attempt::Retry {
                // A 503's Retry-After was taken by the gate: wait in its line, not twice.
                after: feedback.retry_after.map(|_| Duration::ZERO),
                why: Retryable::Status(status),
            });
        }
        let (mut parts, body) = response.into_parts();
        let codec = content_codec(&parts.headers);
        let body = crate::client::response::gather(body_stream(body, codec, &call.limits))
            .await
            .map_err(|source| Error::Body {
                method: method.clone(),
                uri: call.key_uri(),
                source,
            })?;
        if codec.is_some() {
            // What is kept (and cached) is the decoded body.
            parts.headers.remove(CONTENT_ENCODING);
            parts.headers.remove(CONTENT_LENGTH);
        }
        if *method == Method::GET && call.cache != CacheMode::Bypass {
            match http_cache::freshness(status, &parts.headers, SystemTime::now()) {
                Some(ttl) => {
                    // Kept with its validators even when it has none: `CacheMode::Force`
                    // reads stored responses through `revalidation`.
                    let validators = Validators::new(
                        header_text(&parts.headers, ETAG),
                        header_text(&parts.headers, LAST_MODIFIED),
                    );
                    let cached = Arc::new(Cached {
                        status,
                        headers: parts.headers.clone(),
                        body: body.clone(),
                        vary: http_cache::vary_snapshot(&parts.headers, &call.headers),
                    });
                    inner.cache.insert_with_validators(
                        key.clone(),
                        cached,
                        Some(ttl.min(inner.max_fresh)),
                        validators,
                    );
                }
                // A response that may not be stored replaces nothing stale either.
                None if status == StatusCode::OK => {
                    inner.cache.remove(key);
                }
                None => {}
            }
        }
        Ok(Attempt::Done(ApiResponse {
            status,
            headers: parts.headers,
            body,
            source: Source::Network,
            method: method.clone(),
            uri: call.key_uri(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a build without TLS does with each base, tested in every build (the
    /// no-TLS build itself is compiled by `cargo xtask compat`'s platform checks).
    #[test]
    fn a_build_without_tls_refuses_https_when_the_client_is_built() {
        let base = "https://api.github.com";
        match speakable(base, "https", false) {
            Err(Error::UnsupportedScheme {
                uri,
                scheme,
                reason,
            }) => {
                assert_eq!((uri.as_str(), scheme.as_str()), (base, "https"));
                assert!(reason.contains("`rustls` feature"), "{reason}");
            }
            other => panic!("expected UnsupportedScheme, got {other:?}"),
        }
        assert!(speakable(base, "https", true).is_ok());
        assert!(speakable("http://127.0.0.1:1", "http", false).is_ok());
    }
}
