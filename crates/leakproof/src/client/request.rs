//! One request's options: [`RequestBuilder`], and the [`Call`] it becomes.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use bounded_stream::{Codec, Limits};
use bytes::Bytes;
#[cfg(feature = "json")]
use http::header::CONTENT_TYPE;
use http::header::{ACCEPT_ENCODING, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use hyper_util::client::legacy::connect::Connect;

#[cfg(feature = "json")]
use super::Paginate;
use super::http_cache::{self, CacheMode};
use super::{ApiClient, ApiResponse};
use crate::{Error, Result};

/// A request being set up: from [`ApiClient::get`], [`post`](ApiClient::post),
/// [`put`](ApiClient::put), [`patch`](ApiClient::patch), [`delete`](ApiClient::delete)
/// or [`request`](ApiClient::request). Send it with [`send`](Self::send), or await it
/// directly.
///
/// Everything set here applies to this request only, over the client's own defaults:
/// a header given here replaces the client's header of that name. A GET is answered
/// from the cache only by a response fetched with the same `Authorization` (so one
/// installation's response is never served to another) and the same values of every
/// header its `Vary` names (see [`CacheMode`](super::CacheMode) for the rules).
///
/// ```no_run
/// # async fn example(api: leakproof::ApiClient) -> Result<(), leakproof::Error> {
/// let issues = api
///     .get("/repos/rust-lang/rust/issues")
///     .query(&[("state", "open"), ("per_page", "100")])
///     .bearer("ghp_...")
///     .header("accept", "application/vnd.github+json")
///     .send()
///     .await?
///     .error_for_status()?;
/// # let _ = issues; Ok(()) }
/// ```
#[must_use = "a request does nothing until it is sent or awaited"]
pub struct RequestBuilder<'a, C> {
    client: &'a ApiClient<C>,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
    limits: Option<Limits>,
    cache: CacheMode,
    /// Declared safe to send twice.
    idempotent: bool,
    /// The first invalid option, reported by `send`.
    error: Option<Error>,
}

impl<C> std::fmt::Debug for RequestBuilder<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("body", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl<'a, C> RequestBuilder<'a, C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    pub(super) fn new(client: &'a ApiClient<C>, method: Method, path: &str) -> Self {
        RequestBuilder {
            client,
            method,
            path: path.to_string(),
            query: String::new(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            limits: None,
            cache: CacheMode::Default,
            idempotent: false,
            error: None,
        }
    }

    /// Appends `pairs` to the query string, percent-encoded.
    pub fn query<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        for (key, value) in pairs {
            if !self.query.is_empty() {
                self.query.push('&');
            }
            encode_into(&mut self.query, key.as_ref());
            self.query.push('=');
            encode_into(&mut self.query, value.as_ref());
        }
        self
    }

    /// A header for this request, replacing the client's header of that name (an
    /// invalid name or value fails [`send`](Self::send) with [`Error::BadUri`]).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let parsed = HeaderName::try_from(name)
            .map_err(|e| format!("header name `{name}`: {e}"))
            .and_then(|n| {
                HeaderValue::try_from(value)
                    .map(|v| (n, v))
                    .map_err(|e| format!("header `{name}` value: {e}"))
            });
        match parsed {
            Ok((name, value)) => {
                self.headers.insert(name, value);
            }
            Err(reason) => self.fail(reason),
        }
        self
    }

    /// `Authorization: Bearer <token>` for this request: one client, many tokens. Each
    /// token's GETs are cached apart, and each token has a gate of its own (see
    /// [`ApiClientBuilder::gate_per_token`](super::ApiClientBuilder::gate_per_token)), so
    /// its quota and the server's pauses for it hold up only its own requests.
    pub fn bearer(self, token: &str) -> Self {
        self.header(AUTHORIZATION.as_str(), &format!("Bearer {token}"))
    }

    /// Declares this request safe to send twice (a POST or PATCH the server
    /// deduplicates): it is then retried after a server error or a failed exchange like
    /// a GET. Without it a POST or PATCH is sent again only when it surely never reached
    /// the server (the connection could not be made) or was refused for a rate limit.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Sends `Idempotency-Key: key` (the convention of Stripe and the IETF draft) and
    /// declares the request [`idempotent`](Self::idempotent).
    pub fn idempotency_key(self, key: &str) -> Self {
        self.header("idempotency-key", key).idempotent()
    }

    /// The caps and timeouts for this response's body, instead of the client's.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// `false`: this GET neither reads nor fills the cache ([`CacheMode::Bypass`]);
    /// `true`: the HTTP rules ([`CacheMode::Default`], the default).
    pub fn cache(mut self, use_cache: bool) -> Self {
        self.cache = if use_cache {
            CacheMode::Default
        } else {
            CacheMode::Bypass
        };
        self
    }

    /// How this GET uses the cache: by the HTTP rules (the default), not at all, always
    /// revalidated, or from any stored response (see [`CacheMode`]).
    pub fn cache_mode(mut self, mode: CacheMode) -> Self {
        self.cache = mode;
        self
    }

    /// The request body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// `value` as a JSON body, with `Content-Type: application/json` (feature `json`).
    /// A value that cannot be serialised fails [`send`](Self::send) with
    /// [`Error::Json`].
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.body = body.into();
                self.headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Err(source) => {
                if self.error.is_none() {
                    self.error = Some(Error::Json {
                        method: self.method.clone(),
                        uri: self.path.clone(),
                        source,
                    });
                }
            }
        }
        self
    }

    /// Lists the items of every page this GET starts, following `rel="next"` links (a
    /// JSON array per page, or an object with an `items` array): see [`Paginate`].
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn paginate<T>(self) -> Paginate<'a, C, T>
    where
        T: serde::de::DeserializeOwned + Send + 'a,
    {
        Paginate::new(self)
    }

    /// The path as given.
    #[cfg(feature = "json")]
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// The client it goes through.
    #[cfg(feature = "json")]
    pub(super) fn client(&self) -> &'a ApiClient<C> {
        self.client
    }

    /// A GET with this request's headers, limits and cache setting, and no path yet.
    #[cfg(feature = "json")]
    pub(super) fn sibling(&self) -> Self {
        RequestBuilder {
            client: self.client,
            method: Method::GET,
            path: String::new(),
            query: String::new(),
            headers: self.headers.clone(),
            body: Bytes::new(),
            limits: self.limits.clone(),
            cache: self.cache,
            idempotent: self.idempotent,
            error: None,
        }
    }

    /// The same request for `path` (which may carry its query).
    #[cfg(feature = "json")]
    pub(super) fn at(mut self, path: String) -> Self {
        self.path = path;
        self
    }

    fn fail(&mut self, reason: String) {
        if self.error.is_none() {
            self.error = Some(Error::BadUri {
                uri: self.path.clone(),
                reason,
            });
        }
    }

    /// Sends it (through the gate, the cache for a GET, the retries) and reads the body
    /// under the caps.
    pub async fn send(self) -> Result<ApiResponse> {
        let client = self.client;
        let call = self.into_call()?;
        client.run(call).await
    }

    /// What the client runs: the URI, the merged headers, the cache key.
    fn into_call(self) -> Result<Call> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let inner = &*self.client.inner;
        let uri = self.client.uri(&self.path, &self.query)?;
        let gate = self.client.gate_for(self.headers.get(AUTHORIZATION));
        let idempotent = self.idempotent || self.headers.contains_key("idempotency-key");
        let mut headers = inner.headers.clone();
        for (name, value) in self.headers {
            if let Some(name) = name {
                headers.insert(name, value);
            }
        }
        accept_encodings(&mut headers);
        let key = http_cache::key(&uri, &headers, &inner.key_hasher);
        let cache = http_cache::request_mode(self.cache, &headers);
        Ok(Call {
            method: self.method,
            uri,
            key,
            headers,
            body: self.body,
            limits: self.limits.unwrap_or_else(|| inner.limits.clone()),
            cache,
            gate,
            redirects_left: inner.redirects,
            redirected: 0,
            idempotent,
            deadline: tokio::time::Instant::now() + inner.deadline,
        })
    }
}

impl<'a, C> IntoFuture for RequestBuilder<'a, C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    type Output = Result<ApiResponse>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<ApiResponse>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// One request, as the retry loop sends it.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// The cache key: the URI (query sorted) and a keyed hash of `Authorization`.
    pub(crate) key: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) limits: Limits,
    /// How a GET uses the cache.
    pub(crate) cache: CacheMode,
    /// The gate it waits for: the client's, or its token's.
    pub(crate) gate: rate_gate::Gate,
    /// Redirects it may still follow.
    pub(crate) redirects_left: u32,
    /// Redirects followed so far.
    pub(crate) redirected: u32,
    /// Declared safe to send twice (see [`RequestBuilder::idempotent`]).
    pub(crate) idempotent: bool,
    /// When the call's deadline passes, fixed once when the call starts.
    pub(crate) deadline: tokio::time::Instant,
}

impl Call {
    /// Whether a failed exchange may be sent again: an idempotent method, or a request
    /// declared safe to repeat.
    pub(crate) fn may_resend(&self) -> bool {
        self.idempotent || super::idempotent(&self.method)
    }

    /// The URI, for errors and responses.
    pub(crate) fn key_uri(&self) -> String {
        self.uri.to_string()
    }

    /// Points the call at a redirect's `location` (absolute, or relative to the URI it
    /// came from). Past a change of origin (scheme, host or port) the `Authorization`
    /// stays behind; past the last redirect allowed, [`Error::Redirects`].
    pub(crate) fn follow(&mut self, location: &str) -> Result<()> {
        if self.redirects_left == 0 {
            return Err(Error::Redirects {
                uri: self.key_uri(),
                followed: self.redirected,
            });
        }
        let next = resolve(&self.uri, location).ok_or_else(|| Error::BadUri {
            uri: location.to_string(),
            reason: format!(
                "a redirect from {} to where this client cannot go",
                self.uri
            ),
        })?;
        if (next.scheme(), next.authority()) != (self.uri.scheme(), self.uri.authority()) {
            self.headers.remove(AUTHORIZATION);
        }
        tracing::debug!(from = %self.uri, to = %next, "leakproof: following a redirect");
        self.uri = next;
        self.redirects_left -= 1;
        self.redirected += 1;
        Ok(())
    }
}

/// `location` resolved against `base`: an absolute `http`/`https` URL, an absolute path,
/// or a path relative to `base`'s directory.
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if let Ok(absolute) = location.parse::<Uri>()
        && absolute.scheme().is_some()
        && absolute.authority().is_some()
    {
        return matches!(absolute.scheme_str(), Some("http" | "https")).then_some(absolute);
    }
    let origin = format!("{}://{}", base.scheme_str()?, base.authority()?);
    let text = if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(dir, _)| dir);
        format!("{origin}{dir}/{location}")
    };
    text.parse().ok()
}

/// Adds `Accept-Encoding` for the codecs this build decodes, unless the caller set one.
pub(crate) fn accept_encodings(headers: &mut HeaderMap) {
    let accepted = Codec::accept_encoding();
    if !accepted.is_empty() && !headers.contains_key(ACCEPT_ENCODING) {
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(accepted));
    }
}

/// Percent-encodes `text` into `out` as a query component: unreserved characters as they
/// are, everything else (spaces included) as `%XX`.
fn encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encode_into;

    #[test]
    fn query_components_are_percent_encoded() {
        let mut out = String::new();
        encode_into(&mut out, "a b&c=d/é~");
        assert_eq!(out, "a%20b%26c%3Dd%2F%C3%A9~");
    }
}
