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

/// Whether token `a` had its first `/per-token` call (one test uses it).
static FIRST_A_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
        return reply(
            200,
            &[("content-encoding", label), ("cache-control", "max-age=60")],
            compressed,
        );
    }
    if let Some(coding) = path.strip_prefix("/bomb/") {
        // 16 MiB of zeros, sixteen times the client's cap: a few KiB on the wire.
        let compressed = compress(coding, vec![0; 16 << 20]).await;
        return reply(200, &[("content-encoding", coding)], compressed);
    }
    let query = parts.uri.query().unwrap_or("");
    let page: u32 = query
        .strip_prefix("page=")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let base = format!("http://{}", header("host").unwrap());
    let link = |path: &str, page: u32| format!("<{base}{path}?page={page}>; rel=\"next\"");
    match path.as_str() {
        // Three pages of a list, for a caller with a token only; each page cacheable.
        "/items" => {
            if header("authorization").is_none() {
                return reply(
                    401,
                    &[],
                    br#"{"message":"Requires authentication"}"#.to_vec(),
                );
            }
            let items: Vec<u32> = (0..3).map(|i| page * 10 + i).collect();
            let next = link("/items", page + 1);
            let mut headers = vec![("cache-control", "max-age=60")];
            if page < 3 {
                headers.push(("link", next.as_str()));
            }
            reply(200, &headers, serde_json::to_vec(&items).unwrap())
        }
        // GitHub's search shape, two pages.
        "/search" => {
            let body = serde_json::json!({"total_count": 4, "items": [page * 2, page * 2 + 1]});
            let next = link("/search", page + 1);
            let headers: Vec<(&str, &str)> = if page < 2 {
                vec![("link", next.as_str())]
            } else {
                vec![]
            };
            reply(200, &headers, serde_json::to_vec(&body).unwrap())
        }
        // A list that never ends, 20 KB a page.
        "/forever" => {
            let next = link("/forever", page + 1);
            let items = vec![page; 10_000];
            reply(
                200,
                &[("link", next.as_str())],
                serde_json::to_vec(&items).unwrap(),
            )
        }
        // A renamed repository (same host), a move to another origin (where the test
        // says), and a loop.
        "/old-name" => reply(301, &[("location", "/echo")], Vec::new()),
        "/relative/old" => reply(302, &[("location", "new")], Vec::new()),
        "/relative/new" => reply(200, &[], b"relative".to_vec()),
        "/away" => {
            let to = header("x-redirect-to").unwrap();
            reply(307, &[("location", to.as_str())], Vec::new())
        }
        "/loop" => reply(302, &[("location", "/loop")], Vec::new()),
        // Token `a` is told to wait a minute on its first call; `b` never is.
        "/per-token" => {
            let token = header("authorization").unwrap_or_default();
            let first_for_a = token == "Bearer a"
                && !FIRST_A_SEEN.swap(true, std::sync::atomic::Ordering::SeqCst);
            if first_for_a {
                reply(429, &[("retry-after", "60")], b"slow down".to_vec())
            } else {
                reply(200, &[], token.into_bytes())
            }
        }
        // A next page elsewhere: not followed, the token stays here.
        "/elsewhere" => reply(
            200,
            &[("link", r#"<https://evil.example/steal?page=2>; rel="next""#)],
            b"[1]".to_vec(),
        ),
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

#[tokio::test(start_paused = true)]
async fn pagination_follows_next_links_with_the_token_and_through_the_cache() {
    let server = serve().await;
    let api = client(&server);
    let list = || async {
        let items: Vec<u32> = api
            .get("/items")
            .bearer("t")
            .paginate::<u32>()
            .map(Result::unwrap)
            .collect()
            .await;
        items
    };
    assert_eq!(list().await, [10, 11, 12, 20, 21, 22, 30, 31, 32]);
    let one_a_page = server.requests.load(Ordering::SeqCst);
    assert_eq!(one_a_page, 3, "one request a page");
    // The pages were cached (per token): the second listing costs nothing.
    assert_eq!(list().await.len(), 9);
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
    // Without the token the first page is refused, and the stream says so.
    let mut refused = std::pin::pin!(api.paginate::<u32>("/items"));
    match refused.next().await {
        Some(Err(Error::Status {
            status, message, ..
        })) => {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(message, "Requires authentication");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert!(
        refused.next().await.is_none(),
        "the stream ends after an error"
    );
    // Search results: the items of each page.
    let found: Vec<u32> = api
        .paginate::<u32>("/search")
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(found, [2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn pagination_is_bounded_in_pages_and_bytes_and_stays_on_its_host() {
    let server = serve().await;
    let api = client(&server);
    let results: Vec<_> = api.paginate::<u32>("/forever").max_pages(4).collect().await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4 * 10_000);
    match results.last() {
        Some(Err(Error::PageLimit {
            pages: 4,
            what: "pages",
            ..
        })) => {}
        other => panic!("expected the page bound, got {other:?}"),
    }
    let results: Vec<_> = api
        .paginate::<u32>("/forever")
        .max_bytes(120_000)
        .collect()
        .await;
    let delivered = results.iter().filter(|r| r.is_ok()).count() as u32;
    match results.last() {
        Some(Err(Error::PageLimit {
            what: "bytes",
            pages,
            bytes,
            ..
        })) => {
            // The page that crossed the bound is not delivered; those before it are.
            assert!(
                *bytes > 120_000 && *bytes < 120_000 + 20_010,
                "{bytes} bytes"
            );
            assert_eq!(delivered, (pages - 1) * 10_000, "{pages} pages");
        }
        other => panic!("expected the byte bound, got {other:?}"),
    }
    let before = server.requests.load(Ordering::SeqCst);
    let results: Vec<_> = api.paginate::<u32>("/elsewhere").collect().await;
    assert!(matches!(results[0], Ok(1)), "{:?}", results[0]);
    assert!(
        matches!(&results[1], Err(Error::BadUri { uri, .. }) if uri.starts_with("https://evil.example")),
        "{:?}",
        results[1]
    );
    assert_eq!(results.len(), 2);
    assert_eq!(server.requests.load(Ordering::SeqCst), before + 1);
}

#[tokio::test(start_paused = true)]
async fn each_token_waits_only_for_its_own_limits() {
    let server = serve().await;
    // A call waits out a pause of at most 10 s itself: `a`'s refusal comes back.
    let api = ApiClient::builder(&format!("http://{}", server.addr))
        .max_rate_limit_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    // `a` is refused and told to wait 60 s.
    assert!(matches!(
        api.get("/per-token").bearer("a").cache(false).await,
        Err(Error::RateLimited { status, wait, .. })
            if status == StatusCode::TOO_MANY_REQUESTS && wait == Duration::from_secs(60)
    ));
    let by_token = |token: &'static str| {
        let api = api.clone();
        async move {
            let response = api.get("/per-token").bearer(token).cache(false).await;
            (response.unwrap().text(), started.elapsed())
        }
    };
    // `b` goes out at once: `a`'s pause is not its.
    let (text, at) = by_token("b").await;
    assert_eq!(text, "Bearer b");
    assert!(at < Duration::from_secs(1), "{at:?}");
    // `a` waits out its minute, then goes through.
    let (text, at) = by_token("a").await;
    assert_eq!(text, "Bearer a");
    assert!(at >= Duration::from_secs(60), "{at:?}");
    // Three gates: the client's (unused here) and one per token.
    assert_eq!(api.gate().stats().granted, 0);
    assert_eq!(api.gate_for_token("a").stats().granted, 2);
    assert_eq!(api.gate_for_token("b").stats().granted, 1);
}

#[tokio::test(start_paused = true)]
async fn redirects_are_followed_a_bounded_number_of_times_keeping_the_token_at_home() {
    let server = serve().await;
    let elsewhere = serve().await;
    let api = client(&server);
    // GitHub's answer to a renamed repository: followed, the token kept (same origin).
    let moved = api.get("/old-name").bearer("t").await.unwrap();
    let echo: serde_json::Value = moved.json().unwrap();
    assert_eq!(echo["uri"], "/echo");
    assert_eq!(echo["authorization"], "Bearer t");
    assert_eq!(
        api.get("/relative/old").await.unwrap().text(),
        "relative",
        "a relative Location"
    );
    // To another origin: followed without the token.
    let away: serde_json::Value = api
        .get("/away")
        .bearer("t")
        .header("x-redirect-to", &format!("http://{}/echo", elsewhere.addr))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(away["method"], "GET");
    assert_eq!(away["authorization"], serde_json::Value::Null);
    assert_eq!(elsewhere.requests.load(Ordering::SeqCst), 1);
    // A loop ends after ten.
    let before = server.requests.load(Ordering::SeqCst);
    match api.get("/loop").await {
        Err(Error::Redirects { followed: 10, uri }) => assert!(uri.ends_with("/loop")),
        other => panic!("expected the redirect bound, got {other:?}"),
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), before + 11);
    // Not for a POST, nor with redirects(0): the 3xx is the response.
    let post = api.post("/old-name").await.unwrap();
    assert_eq!(post.status(), StatusCode::MOVED_PERMANENTLY);
    let unfollowed = ApiClient::builder(&format!("http://{}", server.addr))
        .redirects(0)
        .build()
        .unwrap();
    assert_eq!(
        unfollowed.get("/old-name").await.unwrap().status(),
        StatusCode::MOVED_PERMANENTLY
    );
}
