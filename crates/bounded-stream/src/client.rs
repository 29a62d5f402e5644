//! A capped HTTP GET on hyper-util's pooled client.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::{BoundedBody, Collected, Error, Limits};

/// One pooled HTTP client, reused for every request (clones share the pool), whose
/// response bodies are capped and timed by [`Limits`].
///
/// The time limits cover the whole exchange: the deadline and the idle timeout start
/// with the request, so a server that never sends headers is caught too.
///
/// `CappedClient::new()` speaks plain HTTP/1.1; for HTTPS build a hyper-util client with
/// a TLS connector (hyper-rustls, hyper-tls) and wrap it with
/// [`from_client`](Self::from_client).
///
/// ```no_run
/// use bounded_stream::{CappedClient, Limits, find_line};
/// use std::time::Duration;
///
/// async fn log_has_warning(client: &CappedClient, url: http::Uri) -> Result<bool, bounded_stream::Error> {
///     // At most 1 GiB, no 30 s stall, at least 64 KiB per 10 s after a 5 s grace.
///     let limits = Limits::new(1 << 30)
///         .idle_timeout(Duration::from_secs(30))
///         .min_rate(64 * 1024, Duration::from_secs(10), Duration::from_secs(5));
///     let body = client.get(url, &limits).await?.into_body();
///     let data = http_body_util::BodyExt::into_data_stream(body);
///     let reader = tokio_util::io::StreamReader::new(data);
///     // Memory: one 64 KiB line plus one read chunk, however big the log.
///     Ok(find_line(reader, b"warning:", 64 * 1024).await?.is_some())
/// }
/// ```
///
/// Requests carry no body by default (`B = Empty<Bytes>`); a client built with another
/// request body type (`Full<Bytes>` for POSTs) is wrapped the same way.
#[derive(Debug, Clone)]
pub struct CappedClient<C = HttpConnector, B = Empty<Bytes>> {
    client: Client<C, B>,
}

impl CappedClient {
    /// A plain-HTTP client: idle connections kept 90 s, at most 32 per host.
    pub fn new() -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .build_http();
        CappedClient { client }
    }
}

impl Default for CappedClient {
    fn default() -> Self {
        Self::new()
    }
}

impl<C, B> CappedClient<C, B>
where
    C: Connect + Clone + Send + Sync + 'static,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Wraps a client built elsewhere (with a TLS connector, custom pool settings, or
    /// another request body type).
    pub fn from_client(client: Client<C, B>) -> Self {
        CappedClient { client }
    }

    /// Sends `request` and returns the response with its body capped. A declared
    /// Content-Length over the cap fails here, before any of the body is read.
    pub async fn send(
        &self,
        request: Request<B>,
        limits: &Limits,
    ) -> Result<Response<BoundedBody<Incoming>>, Error> {
        let uri = request.uri().to_string();
        let started = tokio::time::Instant::now();
        let header_limit = [limits.deadline, limits.idle].into_iter().flatten().min();
        let request = self.client.request(request);
        let response = match header_limit {
            Some(limit) => match tokio::time::timeout(limit, request).await {
                Ok(response) => response,
                Err(_) if Some(limit) == limits.deadline => {
                    return Err(Error::Deadline {
                        deadline: limit,
                        received: 0,
                    });
                }
                Err(_) => {
                    return Err(Error::IdleTimeout {
                        timeout: limit,
                        received: 0,
                    });
                }
            },
            None => request.await,
        }
        .map_err(|e| Error::Request {
            uri,
            source: std::io::Error::other(e),
        })?;
        // The deadline covers the whole exchange: the body gets what is left of it.
        let mut body_limits = limits.clone();
        if let Some(deadline) = limits.deadline {
            body_limits.deadline = Some(deadline.saturating_sub(started.elapsed()));
        }
        let (parts, body) = response.into_parts();
        Ok(Response::from_parts(
            parts,
            BoundedBody::new(body, &body_limits)?,
        ))
    }
}

impl<C> CappedClient<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// A capped GET.
    pub async fn get(
        &self,
        uri: Uri,
        limits: &Limits,
    ) -> Result<Response<BoundedBody<Incoming>>, Error> {
        let request = Request::get(uri.clone())
            .body(Empty::new())
            .map_err(|e| Error::Request {
                uri: uri.to_string(),
                source: std::io::Error::other(e),
            })?;
        self.send(request, limits).await
    }

    /// A capped GET, with the body collected into memory (at most the cap).
    pub async fn get_bytes(
        &self,
        uri: Uri,
        limits: &Limits,
    ) -> Result<(http::response::Parts, Collected), Error> {
        let (parts, mut body) = self.get(uri, limits).await?.into_parts();
        let mut collected = Collected::default();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                collected.push(data);
            }
        }
        collected.truncated = body.truncated();
        Ok((parts, collected))
    }
}
