//! `ApiClient` against a loopback server imitating GitHub: rate headers, ETags and
//! 304s, 5xx, 403/429 secondary limits, oversized and stalled bodies. On tokio's paused
//! clock over real sockets, so backoffs and pauses take no real time.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use leakproof::gate::{Gate, Quota};
use leakproof::stream::Limits;
use leakproof::{ApiClient, Error, Shutdown, Source};
use tokio::time::Instant;

/// What the server saw.
#[derive(Default)]
struct Seen {
    /// Requests per path.
    hits: HashMap<String, u32>,
    /// Conditional requests answered 304.
    not_modified: u32,
    /// Quota spent (GitHub does not count 304s).
    spent: u32,
    /// Requests refused for want of quota.
    refused: u32,
    /// Connections accepted.
    connections: u32,
}

const QUOTA: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed()
}

fn respond(seen: &Mutex<Seen>, started: Instant, request: &Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let mut seen = seen.lock().unwrap();
    let count = {
        let n = seen.hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    // One quota window at a time, like X-RateLimit-Reset.
    let window = (started.elapsed().as_secs() / WINDOW.as_secs()) as u32;
    let reset_in =
        WINDOW - Duration::from_nanos((started.elapsed().as_nanos() % WINDOW.as_nanos()) as u64);
    if seen.spent >= QUOTA * (window + 1) {
        seen.refused += 1;
        return Response::builder()
            .status(403)
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", reset_epoch(reset_in))
            .body(full("API rate limit exceeded"))
            .unwrap();
    }
    let conditional = request.headers().get("if-none-match").cloned();
    let mut builder = Response::builder();
    let (status, body): (u16, Body) = match path.as_str() {
        "/repos/a" if conditional.as_ref().is_some_and(|v| v == "\"v1\"") => {
            seen.not_modified += 1;
            (304, full(""))
        }
        "/repos/a" => {
            builder = builder
                .header("etag", "\"v1\"")
                .header("cache-control", "private, max-age=60");
            (200, full(r#"{"name":"a"}"#))
        }
        "/flaky" if count <= 2 => (502, full("bad gateway")),
        "/flaky" => (200, full("ok")),
        "/down" => (503, full("unavailable")),
        "/secondary" if count == 1 => {
            builder = builder.header("retry-after", "5");
            (403, full("You have exceeded a secondary rate limit"))
        }
        "/secondary" => (200, full("ok")),
        "/big" => (200, full(vec![b'x'; 2 << 20])),
        "/slow" => {
            let drip = futures_util::stream::once(async {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"{")))
            })
            .chain(futures_util::stream::pending());
            (200, BodyExt::boxed(StreamBody::new(drip)))
        }
        _ => (200, full(format!("{{\"path\":\"{path}\"}}"))),
    };
    if status != 304 {
        seen.spent += 1;
    }
    let remaining = (QUOTA * (window + 1)).saturating_sub(seen.spent);
    builder
        .status(status)
        .header("x-ratelimit-limit", QUOTA)
        .header("x-ratelimit-remaining", remaining)
        .header("x-ratelimit-reset", reset_epoch(reset_in))
        .body(body)
        .unwrap()
}

/// `X-RateLimit-Reset` is wall-clock epoch seconds (rounded up, so never before the
/// reset); the gate turns it into a wait.
fn reset_epoch(reset_in: Duration) -> u64 {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + reset_in;
    at.as_secs() + u64::from(at.subsec_nanos() > 0)
}

async fn serve() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let started = Instant::now();
    let shared = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            shared.lock().unwrap().connections += 1;
            let seen = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = respond(&seen, started, &request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { addr, seen }
}

fn client(server: &Server) -> ApiClient {
    ApiClient::builder(&format!("http://{}", server.addr))
        .header("user-agent", "leakproof-test")
        .limits(
            Limits::new(1 << 20)
                .idle_timeout(Duration::from_secs(10))
                .deadline(Duration::from_secs(30)),
        )
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_cached_get_costs_nothing_and_a_304_costs_no_quota() {
    let server = serve().await;
    let api = client(&server);
    let first = api.get("/repos/a").await.unwrap();
    assert_eq!(
        (first.status, first.source),
        (StatusCode::OK, Source::Network)
    );
    assert_eq!(first.body, r#"{"name":"a"}"#);
    // Within max-age: from the cache, the server sees nothing.
    let again = api.get("/repos/a").await.unwrap();
    assert_eq!(again.source, Source::Cache);
    assert_eq!(again.body, first.body);
    assert_eq!(server.seen.lock().unwrap().hits["/repos/a"], 1);
    // Stale: revalidated with If-None-Match, answered 304, no quota spent.
    tokio::time::advance(Duration::from_secs(61)).await;
    let spent = server.seen.lock().unwrap().spent;
    let revalidated = api.get("/repos/a").await.unwrap();
    assert_eq!(revalidated.source, Source::Revalidated);
    assert_eq!(revalidated.status, StatusCode::OK);
    assert_eq!(revalidated.body, first.body);
    {
        let seen = server.seen.lock().unwrap();
        assert_eq!(seen.not_modified, 1);
        assert_eq!(seen.spent, spent, "a 304 costs no quota");
    }
    // And the 304 gave the entry a new max-age.
    assert_eq!(api.get("/repos/a").await.unwrap().source, Source::Cache);
    let stats = api.stats();
    assert_eq!((stats.calls, stats.requests), (4, 2));
    assert_eq!((stats.cache_hits, stats.revalidated), (2, 1));
    assert_eq!(
        server.seen.lock().unwrap().connections,
        1,
        "one pooled connection"
    );
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_with_backoff_then_given_up() {
    let server = serve().await;
    let api = client(&server);
    let started = Instant::now();
    let ok = api.get("/flaky").await.unwrap();
    assert_eq!((ok.status, ok.body.as_ref()), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(api.stats().retries, 2);
    // Full jitter: at most 500 ms, then at most 1 s.
    assert!(started.elapsed() <= Duration::from_millis(1500));
    match api.get("/down").await {
        Err(Error::GaveUp {
            attempts, status, ..
        }) => assert_eq!((attempts, status), (3, StatusCode::SERVICE_UNAVAILABLE)),
        other => panic!("expected GaveUp, got {other:?}"),
    }
    assert_eq!(server.seen.lock().unwrap().hits["/down"], 3);
    // Errors are never stored; nor is a 200 without freshness or a validator.
    assert_eq!(api.cached(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_secondary_limit_pauses_every_request_then_retries() {
    let server = serve().await;
    let api = client(&server);
    let started = Instant::now();
    let ok = api.get("/secondary").await.unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "waited out Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(server.seen.lock().unwrap().hits["/secondary"], 2);
    assert_eq!(api.stats().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn the_gate_keeps_to_the_servers_quota() {
    let server = serve().await;
    // No quota of its own: only the server's headers, and fewer in flight than the
    // quota (the first requests of a window go out before any header is seen).
    let api = ApiClient::builder(&format!("http://{}", server.addr))
        .gate(Gate::builder().concurrency(2).build())
        // The last calls wait two windows (120 s) in the gate's line.
        .deadline(Duration::from_secs(300))
        .build()
        .unwrap();
    // Three windows' worth of distinct GETs, all at once.
    let calls = (0..3 * QUOTA).map(|i| {
        let api = api.clone();
        async move { api.get(&format!("/items/{i}")).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let refused_by_us = results.iter().filter(|r| r.is_err()).count();
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.refused, 0, "the server never had to refuse");
    assert_eq!(refused_by_us, 0, "{results:?}");
    assert_eq!(seen.spent, 3 * QUOTA);
}

#[tokio::test(start_paused = true)]
async fn bodies_over_the_cap_or_stalled_are_refused_and_not_cached() {
    let server = serve().await;
    let api = client(&server);
    match api.get("/big").await {
        Err(Error::Body { source, .. }) => assert!(
            matches!(
                source,
                leakproof::stream::Error::ContentLengthTooLarge {
                    limit: 1_048_576,
                    declared: 2_097_152
                }
            ),
            "{source:?}"
        ),
        other => panic!("expected a body error, got {other:?}"),
    }
    match api.get("/slow").await {
        Err(Error::Body { source, .. }) => assert!(
            matches!(
                source,
                leakproof::stream::Error::IdleTimeout { received: 1, .. }
            ),
            "{source:?}"
        ),
        other => panic!("expected a body error, got {other:?}"),
    }
    assert_eq!(api.cached(), 0);
    assert_eq!(api.stats().failures, 2);
    assert_eq!(api.gate().stats().in_flight, 0, "permits back");
}

#[tokio::test(start_paused = true)]
async fn a_streamed_get_holds_its_permit_until_dropped_and_keeps_its_own_cap() {
    let server = serve().await;
    let api = client(&server);
    // 2 MiB is over the client's 1 MiB cap, but a stream has the caps it is given.
    let stream = api.get_stream("/big", &Limits::new(4 << 20)).await.unwrap();
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(
        api.gate().stats().in_flight,
        1,
        "the permit travels with the body"
    );
    let chunks: Vec<_> = stream.into_stream().collect().await;
    let received: usize = chunks.iter().map(|c| c.as_ref().unwrap().len()).sum();
    assert_eq!(received, 2 << 20);
    assert_eq!(
        api.gate().stats().in_flight,
        0,
        "released when the stream ended"
    );
    // A tighter cap fails the stream after the head: refused by Content-Length here.
    match api.get_stream("/big", &Limits::new(1 << 10)).await {
        Err(Error::Body { source, .. }) => assert!(
            matches!(
                source,
                leakproof::stream::Error::ContentLengthTooLarge { limit: 1024, .. }
            ),
            "{source:?}"
        ),
        other => panic!("expected a body error, got {other:?}"),
    }
    // A stalled stream fails with its own idle timeout; dropping it frees the permit.
    let stalled = api
        .get_stream(
            "/slow",
            &Limits::new(1 << 10).idle_timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    let mut body = Box::pin(stalled.into_stream());
    assert_eq!(body.next().await.unwrap().unwrap(), "{");
    match body.next().await {
        Some(Err(leakproof::stream::Error::IdleTimeout { received: 1, .. })) => {}
        other => panic!("expected an idle timeout, got {other:?}"),
    }
    drop(body);
    assert_eq!(api.gate().stats().in_flight, 0);
    // Retried like `get`, never cached.
    let flaky = api
        .get_stream("/flaky", &Limits::new(1 << 10))
        .await
        .unwrap();
    assert_eq!(flaky.status, StatusCode::OK);
    drop(flaky);
    assert_eq!(api.stats().retries, 2);
    assert_eq!(api.cached(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_shared_gate_and_a_shutdown_apply_to_every_call() {
    let server = serve().await;
    let gate = Gate::builder()
        .quota(Quota::per_second(2))
        .concurrency(2)
        .build();
    let shutdown = Shutdown::new();
    let api = ApiClient::builder(&format!("http://{}", server.addr))
        .gate(gate.clone())
        .shutdown(&shutdown)
        .build()
        .unwrap();
    let started = Instant::now();
    for i in 0..4 {
        api.get(&format!("/n/{i}")).await.unwrap();
    }
    // 2 per second: the 4th waits until 1.5 s.
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(gate.stats().granted, 4);
    shutdown.trigger();
    assert!(matches!(
        api.get("/n/5").await,
        Err(Error::ShuttingDown { ref name }) if name == "GET /n/5"
    ));
    assert!(matches!(
        api.get("no-slash").await,
        Err(Error::ShuttingDown { .. })
    ));
    assert!(matches!(
        ApiClient::builder("not a url").build(),
        Err(Error::BadUri { .. })
    ));
}
