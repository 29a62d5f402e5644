//! A response read whole: [`ApiResponse`], its accessors and its status check.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};

use super::{BodyStream, Source};
use crate::{Error, Result};

/// How much of an error body [`ApiResponse::error_for_status`] keeps as the message.
const MESSAGE_MAX: usize = 200;

/// A response with its body read (at most the cap), decoded if it came compressed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiResponse {
    /// The status (of the cached response when it came from the cache).
    pub status: StatusCode,
    /// The headers (likewise). After decoding, without `Content-Encoding` and
    /// `Content-Length`.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// Where it came from.
    pub source: Source,
    pub(super) method: Method,
    pub(super) uri: String,
}

impl ApiResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body (a cheap, shared copy).
    pub fn bytes(&self) -> Bytes {
        self.body.clone()
    }

    /// The body as text, invalid UTF-8 replaced by U+FFFD.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (feature `json`); [`Error::Json`] if it is not `T`.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Json {
            method: self.method.clone(),
            uri: self.uri.clone(),
            source,
        })
    }

    /// The response itself when its status is not an error (below 400), else
    /// [`Error::Status`] with the method, the URI and the start of the server's message
    /// (GitHub's `{"message": ...}`, or the body's first 200 characters).
    pub fn error_for_status(self) -> Result<Self> {
        if !(self.status.is_client_error() || self.status.is_server_error()) {
            return Ok(self);
        }
        Err(Error::Status {
            status: self.status,
            method: self.method.clone(),
            uri: self.uri.clone(),
            message: message(&self.body),
        })
    }
}

/// The start of an error body: its JSON `message` field where there is one.
fn message(body: &[u8]) -> String {
    #[cfg(feature = "json")]
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body)
        && let Some(serde_json::Value::String(text)) = fields.get("message")
    {
        return text.chars().take(MESSAGE_MAX).collect();
    }
    String::from_utf8_lossy(body)
        .trim()
        .chars()
        .take(MESSAGE_MAX)
        .collect()
}

/// The whole body, in one buffer; the stream's own caps bound it.
pub(super) async fn gather(
    mut body: BodyStream,
) -> std::result::Result<Bytes, bounded_stream::Error> {
    let mut chunks = Vec::new();
    while let Some(chunk) = body.next().await {
        chunks.push(chunk?);
    }
    // One chunk (the usual small body) is handed on without a copy.
    Ok(match chunks.len() {
        1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    })
}
