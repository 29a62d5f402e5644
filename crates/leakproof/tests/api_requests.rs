//! `ApiClient`'s request builder and response accessors, and transparent decoding,
//! against a loopback server that echoes what it was sent, answers with errors the way
//! GitHub does, and compresses with every codec (bombs included). On tokio's paused
//! clock over real sockets (HTTP/1.1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_compression::tokio::bufread as enc;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use leakproof::stream::{Limits, Stage};
use leakproof::{ApiClient, Error, Source};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

/// The text every compressed route serves.
const TEXT: &str = "the quick brown fox jumps over the lazy dog\n";

struct Server {
    addr: SocketAddr,
    requests: Arc<AtomicU32>,
}

/// `data` compressed by `coding` (`gzip`, `deflate` as zlib, `raw-deflate`, `br`,
/// `zstd`).
async fn compress(coding: &str, data: Vec<u8>) -> Vec<u8> {
    let input = BufReader::new(std::io::Cursor::new(data));
    let mut encoder: std::pin::Pin<Box<dyn AsyncRead + Send>> = match coding {
        "gzip" => Box::pin(enc::GzipEncoder::new(input)),
        "deflate" => Box::pin(enc::ZlibEncoder::new(input)),
        "raw-deflate" => Box::pin(enc::DeflateEncoder::new(input)),
        "br" => Box::pin(enc::BrotliEncoder::new(input)),
        "zstd" => Box::pin(enc::ZstdEncoder::new(input)),
        other => panic!("no codec {other}"),
    };
    let mut out = Vec::new();
    encoder.read_to_end(&mut out).await.unwrap();
    out
}

async fn respond(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let path = parts.uri.path().to_string();
    let reply = |status: u16, headers: &[(&str, &str)], body: Vec<u8>| {
        let mut response = Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        response.body(Full::new(Bytes::from(body))).unwrap()
    };
    if let Some(coding) = path.strip_prefix("/encoded/") {
        // Served compressed only to a client that asked for it (raw deflate goes out
        // labelled `deflate`, as some servers do).
        let label = if coding == "raw-deflate" {
            "deflate"
        } else {
            coding
        };
        let accepted = header("accept-encoding").unwrap_or_default();
        assert!(accepted.contains(label), "accept-encoding {accepted:?}");
        let compressed = compress(coding, TEXT.repeat(100).into_bytes()).await;
        return reply(200, &[("content-encoding", label)], compressed);
    }
    if let Some(coding) = path.strip_prefix("/bomb/") {
        // 16 MiB of zeros, sixteen times the client's cap: a few KiB on the wire.
        let compressed = compress(coding, vec![0; 16 << 20]).await;
        return reply(200, &[("content-encoding", coding)], compressed);
    }
    match path.as_str() {
        "/echo" => {
            let echo = serde_json::json!({
                "method": parts.method.as_str(),
                "uri": parts.uri.to_string(),
                "authorization": header("authorization"),
                "content_type": header("content-type"),
                "accept": header("accept"),
                "body": String::from_utf8_lossy(&body),
            });
            reply(200, &[], serde_json::to_vec(&echo).unwrap())
        }
        "/token" => reply(
            200,
            &[("cache-control", "max-age=60")],
            header("authorization").unwrap_or_default().into_bytes(),
        ),
        "/unprocessable" => reply(
            422,
            &[("content-type", "application/json")],
            br#"{"message":"Validation Failed","errors":[{"field":"title"}]}"#.to_vec(),
        ),
        "/missing" => reply(404, &[], b"  not here  ".to_vec()),
        _ => reply(200, &[], b"fine".to_vec()),
    }
}

async fn serve() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU32::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counted = counted.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(respond(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { addr, requests }
}

fn client(server: &Server) -> ApiClient {
    ApiClient::builder(&format!("http://{}", server.addr))
        .header("accept", "application/json")
        .limits(Limits::new(1 << 20).idle_timeout(Duration::from_secs(10)))
        .attempts(1)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_request_carries_its_query_headers_token_and_json_body() {
    let server = serve().await;
    let api = client(&server);
    let echo: serde_json::Value = api
        .post("/echo")
        .query(&[("state", "open"), ("q", "a b&c")])
        .bearer("installation-1")
        .header("accept", "application/vnd.github+json")
        .json(&serde_json::json!({"title": "leak"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/echo?state=open&q=a%20b%26c");
    assert_eq!(echo["authorization"], "Bearer installation-1");
    assert_eq!(echo["content_type"], "application/json");
    // The request's header replaced the client's of the same name.
    assert_eq!(echo["accept"], "application/vnd.github+json");
    assert_eq!(echo["body"], r#"{"title":"leak"}"#);

    // PUT, PATCH and DELETE go out with their method; the short form still awaits.
    for (request, method) in [
        (api.put("/echo"), "PUT"),
        (api.patch("/echo"), "PATCH"),
        (api.delete("/echo"), "DELETE"),
    ] {
        let echo: serde_json::Value = request.await.unwrap().json().unwrap();
        assert_eq!(echo["method"], method);
        assert_eq!(echo["accept"], "application/json", "the client's header");
    }
    assert_eq!(api.get("/").await.unwrap().text(), "fine");
}

#[tokio::test(start_paused = true)]
async fn error_statuses_become_typed_errors_with_the_servers_message() {
    let server = serve().await;
    let api = client(&server);
    let response = api.post("/unprocessable").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    match response.error_for_status() {
        Err(Error::Status {
            status,
            method,
            uri,
            message,
        }) => {
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(method, http::Method::POST);
            assert!(uri.ends_with("/unprocessable"), "{uri}");
            assert_eq!(message, "Validation Failed");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    match api.get("/missing").await.unwrap().error_for_status() {
        Err(Error::Status {
            status, message, ..
        }) => {
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(message, "not here");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    // Not JSON: a typed error naming the request.
    match api
        .get("/missing")
        .await
        .unwrap()
        .json::<serde_json::Value>()
    {
        Err(Error::Json { uri, .. }) => assert!(uri.ends_with("/missing"), "{uri}"),
        other => panic!("expected a JSON error, got {other:?}"),
    }
    // A bad header is an error at send, and nothing is sent.
    let before = server.requests.load(Ordering::SeqCst);
    assert!(matches!(
        api.get("/").header("bad header", "x").send().await,
        Err(Error::BadUri { .. })
    ));
    assert_eq!(server.requests.load(Ordering::SeqCst), before);
}

#[tokio::test(start_paused = true)]
async fn each_token_has_its_own_cached_responses() {
    let server = serve().await;
    let api = client(&server);
    let first = api.get("/token").bearer("a").await.unwrap();
    let second = api.get("/token").bearer("b").await.unwrap();
    assert_eq!(first.text(), "Bearer a");
    assert_eq!(second.text(), "Bearer b", "b is not served a's response");
    let again = api.get("/token").bearer("a").await.unwrap();
    assert_eq!(
        (again.source, again.text().as_str()),
        (Source::Cache, "Bearer a")
    );
    // `cache(false)` neither reads nor fills it.
    let fresh = api.get("/token").bearer("a").cache(false).await.unwrap();
    assert_eq!(fresh.source, Source::Network);
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn bodies_are_decoded_by_their_content_encoding() {
    let server = serve().await;
    let api = client(&server);
    for coding in ["gzip", "deflate", "raw-deflate", "br", "zstd"] {
        let path = format!("/encoded/{coding}");
        let response = api.get(&path).await.unwrap();
        assert_eq!(response.text(), TEXT.repeat(100), "{coding}");
        assert!(response.headers().get("content-encoding").is_none());
        // The cached copy is the decoded one.
        let cached = api.get(&path).await.unwrap();
        assert_eq!(
            (cached.source, cached.body.len()),
            (Source::Cache, TEXT.len() * 100)
        );
        // And a stream decodes too.
        let stream = api.get_stream(&path, &Limits::new(1 << 20)).await.unwrap();
        let mut chunks = std::pin::pin!(stream.into_stream());
        let mut text = Vec::new();
        while let Some(chunk) = chunks.next().await {
            text.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(text, TEXT.repeat(100).into_bytes(), "{coding} streamed");
    }
}

#[tokio::test(start_paused = true)]
async fn a_bomb_stops_at_the_cap_through_get_and_get_stream() {
    let server = serve().await;
    let api = client(&server);
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let path = format!("/bomb/{coding}");
        match api.get(&path).await {
            Err(Error::Body { source, .. }) => assert!(
                matches!(
                    source,
                    leakproof::stream::Error::TooLarge {
                        stage: Stage::Decoded,
                        limit: 1_048_576,
                        ..
                    }
                ),
                "{coding}: {source:?}"
            ),
            other => panic!("{coding}: expected the cap, got {other:?}"),
        }
        let stream = api.get_stream(&path, &Limits::new(1 << 20)).await.unwrap();
        let mut chunks = std::pin::pin!(stream.into_stream());
        let mut decoded = 0u64;
        let error = loop {
            match chunks.next().await {
                Some(Ok(chunk)) => decoded += chunk.len() as u64,
                Some(Err(error)) => break error,
                None => panic!("{coding}: the bomb was delivered whole"),
            }
        };
        assert!(
            matches!(
                error,
                leakproof::stream::Error::TooLarge {
                    stage: Stage::Decoded,
                    ..
                }
            ),
            "{coding}: {error:?}"
        );
        assert!(
            decoded <= 1 << 20,
            "{coding}: {decoded} bytes passed the cap"
        );
    }
    assert_eq!(api.cached(), 0);
    assert_eq!(api.gate().stats().in_flight, 0, "permits back");
}
