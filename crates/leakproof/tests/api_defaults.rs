//! `ApiClient`'s defaults under a server that pushes back, as GitHub does: a limit on
//! requests in flight (429 with `Retry-After`), a quota another process spent (403 with
//! `X-RateLimit-Remaining: 0` until the reset), a server that never answers, and writes
//! that must not be sent twice. On tokio's paused clock over real sockets (HTTP/1.1).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use leakproof::{ApiClient, CacheMode, DEFAULT_CALL_DEADLINE, Error, Source};
use tokio::time::Instant;

/// Requests the server takes at once on `/limited/`; more get a 429.
const IN_FLIGHT: u32 = 10;
/// How long a `/limited/` request takes to serve.
const SERVICE_TIME: Duration = Duration::from_millis(100);
/// When the quota another process spent comes back, from the server's start.
const QUOTA_RESET: Duration = Duration::from_secs(30);
/// `/window/`: this many requests per fixed window, counted when they arrive.
const WINDOW_QUOTA: u32 = 300;
const WINDOW: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Seen {
    /// Requests per method and path.
    hits: HashMap<String, u32>,
    /// 429s sent for being over `IN_FLIGHT`.
    too_many: u32,
    /// The most requests in flight on `/limited/` that were served.
    most_in_flight: u32,
    /// `/window/` requests served per window, and refused for want of quota.
    per_window: HashMap<u32, u32>,
    window_refused: u32,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Server {
    fn hits(&self, method: &str, path: &str) -> u32 {
        let seen = self.seen.lock().unwrap();
        seen.hits
            .get(&format!("{method} {path}"))
            .copied()
            .unwrap_or(0)
    }
}

fn reply(status: u16, headers: &[(&str, String)], body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, value);
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// `X-RateLimit-Reset` for `at` (epoch seconds, rounded up).
fn reset_epoch(at: Duration) -> String {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + at;
    (at.as_secs() + u64::from(at.subsec_nanos() > 0)).to_string()
}

async fn respond(
    seen: Arc<Mutex<Seen>>,
    in_flight: Arc<AtomicU32>,
    started: Instant,
    request: Request<Incoming>,
) -> Option<Response<Full<Bytes>>> {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (if_none_match, accept) = (header("if-none-match"), header("accept"));
    let count = {
        let mut seen = seen.lock().unwrap();
        let n = seen.hits.entry(format!("{method} {path}")).or_default();
        *n += 1;
        *n
    };
    let _ = request.into_body().collect().await;
    match path.as_str() {
        p if p.starts_with("/limited/") => {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            let response = if now > IN_FLIGHT {
                seen.lock().unwrap().too_many += 1;
                reply(
                    429,
                    &[("retry-after", "1".into())],
                    r#"{"message":"too many requests in flight"}"#,
                )
            } else {
                {
                    let mut seen = seen.lock().unwrap();
                    seen.most_in_flight = seen.most_in_flight.max(now);
                }
                tokio::time::sleep(SERVICE_TIME).await;
                reply(200, &[], r#"{"ok":true}"#)
            };
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Some(response)
        }
        p if p.starts_with("/window/") => {
            let window = (started.elapsed().as_nanos() / WINDOW.as_nanos()) as u32;
            let reset_in = WINDOW * (window + 1) - started.elapsed();
            let remaining = {
                let mut seen = seen.lock().unwrap();
                let used = seen.per_window.entry(window).or_default();
                if *used >= WINDOW_QUOTA {
                    seen.window_refused += 1;
                    None
                } else {
                    *used += 1;
                    Some(WINDOW_QUOTA - *used)
                }
            };
            let Some(remaining) = remaining else {
                return Some(reply(
                    403,
                    &[
                        ("x-ratelimit-remaining", "0".into()),
                        ("x-ratelimit-reset", reset_epoch(reset_in)),
                    ],
                    r#"{"message":"API rate limit exceeded"}"#,
                ));
            };
            // Counted on arrival, answered after the work: requests in flight meanwhile
            // are already counted in the figure this one carries.
            tokio::time::sleep(SERVICE_TIME).await;
            Some(reply(
                200,
                &[
                    ("x-ratelimit-remaining", remaining.to_string()),
                    ("x-ratelimit-reset", reset_epoch(reset_in)),
                ],
                "{}",
            ))
        }
        "/quota" => {
            let left = QUOTA_RESET.saturating_sub(started.elapsed());
            if left.is_zero() {
                Some(reply(
                    200,
                    &[
                        ("x-ratelimit-remaining", "4999".into()),
                        ("x-ratelimit-reset", reset_epoch(Duration::from_secs(3600))),
                    ],
                    "{}",
                ))
            } else {
                Some(reply(
                    403,
                    &[
                        ("x-ratelimit-remaining", "0".into()),
                        ("x-ratelimit-reset", reset_epoch(left)),
                    ],
                    r#"{"message":"API rate limit exceeded"}"#,
                ))
            }
        }
        // Cache rules: an ETag on each, and what the path names.
        p if p.starts_with("/cache/") => {
            // Long enough for concurrent calls to meet.
            tokio::time::sleep(SERVICE_TIME).await;
            if p == "/cache/fail" {
                return Some(reply(503, &[], "unavailable"));
            }
            if if_none_match.as_deref() == Some("\"v1\"") {
                return Some(reply(304, &[("etag", "\"v1\"".into())], ""));
            }
            let mut headers = vec![("etag", "\"v1\"".to_string())];
            match p {
                "/cache/fresh" => headers.push(("cache-control", "max-age=60".into())),
                "/cache/no-cache" => headers.push(("cache-control", "no-cache".into())),
                "/cache/no-store" => {
                    headers = vec![("cache-control", "no-store, max-age=60".into())]
                }
                "/cache/expires" => headers.push((
                    "expires",
                    httpdate::fmt_http_date(
                        std::time::SystemTime::now() + Duration::from_secs(300),
                    ),
                )),
                "/cache/vary" => {
                    headers.push(("cache-control", "max-age=60".into()));
                    headers.push(("vary", "Accept".into()));
                }
                // Nothing about freshness, not even a validator.
                "/cache/plain" => headers.clear(),
                _ => {}
            }
            Some(reply(200, &headers, &format!("{accept:?}")))
        }
        "/silent" => std::future::pending().await,
        "/issues" if count == 1 => Some(reply(502, &[], "bad gateway")),
        // Reads the request, then drops the connection without a word.
        "/hangup" => None,
        _ => Some(reply(201, &[], "{}")),
    }
}

async fn serve() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let in_flight = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let shared = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (seen, in_flight) = (shared.clone(), in_flight.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let (seen, in_flight) = (seen.clone(), in_flight.clone());
                    async move {
                        match respond(seen, in_flight, started, request).await {
                            Some(response) => Ok(response),
                            None => Err("hang up"),
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { addr, seen }
}

/// A client with every default but the proxy (the environment's is not ours).
fn default_client(server: &Server) -> ApiClient {
    ApiClient::builder(&format!("http://{}", server.addr))
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_default_client_surfaces_no_429_from_a_server_allowing_10_in_flight() {
    let server = serve().await;
    let api = default_client(&server);
    let calls = (0..100).map(|i| {
        let api = api.clone();
        async move { api.get(&format!("/limited/{i}")).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(errors.is_empty(), "{} errors: {errors:?}", errors.len());
    assert!(results.iter().all(|r| r.as_ref().unwrap().status == 200));
    let seen = server.seen.lock().unwrap();
    assert!(seen.most_in_flight <= IN_FLIGHT);
    assert_eq!(api.stats().rate_limited, u64::from(seen.too_many));
    // The gate met the server at its level: after the first burst of 32 (22 refused)
    // and one more cut, hardly any refusal.
    let limit = api.gate().stats().concurrency.unwrap();
    println!(
        "100 calls, 0 errors, {} 429s waited out, concurrency now {limit}",
        seen.too_many,
    );
    assert!(seen.too_many <= 40, "{} refusals", seen.too_many);
    assert!(limit <= 2 * IN_FLIGHT, "{limit}");
}

#[tokio::test(start_paused = true)]
async fn the_header_only_gate_uses_each_windows_whole_quota() {
    let server = serve().await;
    let api = default_client(&server);
    let started = Instant::now();
    let calls = (0..2 * WINDOW_QUOTA).map(|i| {
        let api = api.clone();
        async move { api.get(&format!("/window/{i}")).await }
    });
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    let took = started.elapsed();
    let seen = server.seen.lock().unwrap();
    println!(
        "{} requests in {took:?}: per window {:?}, refused {}",
        2 * WINDOW_QUOTA,
        seen.per_window,
        seen.window_refused
    );
    assert_eq!(seen.window_refused, 0, "never over the quota");
    // The first window's quota used (at least 99%), so two windows' worth took about two
    // windows: the second window's requests start within a second of its reset.
    assert!(
        seen.per_window[&0] * 100 >= WINDOW_QUOTA * 99,
        "{:?}",
        seen.per_window
    );
    assert!(took < WINDOW + Duration::from_secs(3), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_spent_quota_is_waited_out_until_its_reset_then_retried() {
    let server = serve().await;
    let api = default_client(&server);
    let started = Instant::now();
    let response = api.get("/quota").await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        started.elapsed() >= QUOTA_RESET - Duration::from_secs(1),
        "waited for the reset: {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() <= QUOTA_RESET + Duration::from_secs(2));
    assert_eq!(server.hits("GET", "/quota"), 2, "one refusal, one answer");
}

#[tokio::test(start_paused = true)]
async fn a_reset_further_than_the_longest_wait_is_a_typed_error_at_once() {
    let server = serve().await;
    let api = ApiClient::builder(&format!("http://{}", server.addr))
        .no_proxy()
        .max_rate_limit_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    match api.get("/quota").await {
        Err(Error::RateLimited {
            status,
            wait,
            longest,
            ..
        }) => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(wait > Duration::from_secs(28), "{wait:?}");
            assert_eq!(longest, Duration::from_secs(10));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "did not wait in vain"
    );
    assert_eq!(server.hits("GET", "/quota"), 1);
}

#[tokio::test(start_paused = true)]
async fn one_deadline_bounds_a_call_across_attempts_and_backoffs() {
    let server = serve().await;
    // Each attempt would wait 30 s for a byte; three attempts and their backoffs would
    // hold the call about 91 s. The call's own deadline ends it at 45 s.
    let api = ApiClient::builder(&format!("http://{}", server.addr))
        .no_proxy()
        .deadline(Duration::from_secs(45))
        .build()
        .unwrap();
    let started = Instant::now();
    match api.get("/silent").await {
        Err(Error::Deadline { deadline, .. }) => assert_eq!(deadline, Duration::from_secs(45)),
        other => panic!("expected Deadline, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(45) && took < Duration::from_millis(45_100),
        "{took:?}"
    );
    assert_eq!(
        server.hits("GET", "/silent"),
        2,
        "the second attempt was cut"
    );
    // With every default, no call outlives the default deadline either.
    let api = default_client(&server);
    let started = Instant::now();
    assert!(api.get("/silent").await.is_err());
    assert!(
        started.elapsed() <= DEFAULT_CALL_DEADLINE,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_post_is_sent_again_only_when_that_cannot_act_twice() {
    let server = serve().await;
    let api = default_client(&server);
    // A 502 to a POST: it may have been acted on; the caller gets the 502, sent once.
    let created = api.post("/issues").body("{}").await.unwrap();
    assert_eq!(created.status, StatusCode::BAD_GATEWAY);
    assert_eq!(server.hits("POST", "/issues"), 1);
    // Declared safe with an idempotency key: retried like a GET.
    let created = api
        .post("/issues")
        .idempotency_key("create-issue-42")
        .body("{}")
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::CREATED);
    // A connection dropped after the request was read: not sent again.
    match api.patch("/hangup").body("{}").await {
        Err(Error::Request { attempts, .. }) => assert_eq!(attempts, 1),
        other => panic!("expected Request, got {other:?}"),
    }
    assert_eq!(server.hits("PATCH", "/hangup"), 1);
    // The same for a PUT (idempotent): sent again, three times in all.
    assert!(api.put("/hangup").body("{}").await.is_err());
    assert_eq!(server.hits("PUT", "/hangup"), 3);
    // A POST to where no server listens never reached one: retried.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let api = ApiClient::builder(&format!("http://{dead_addr}"))
        .no_proxy()
        .build()
        .unwrap();
    match api.request(Method::POST, "/issues").body("{}").await {
        Err(Error::Request { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("expected Request, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_cache_follows_rfc_9111_for_a_private_cache() {
    let server = serve().await;
    let api = default_client(&server);
    let twice = |path: &'static str| {
        let api = api.clone();
        async move {
            let first = api.get(path).await.unwrap().source;
            let second = api.get(path).await.unwrap().source;
            (first, second)
        }
    };
    // max-age: fresh, from the cache.
    assert_eq!(
        twice("/cache/fresh").await,
        (Source::Network, Source::Cache)
    );
    // No Cache-Control, no validator: never served from the cache.
    assert_eq!(
        twice("/cache/plain").await,
        (Source::Network, Source::Network)
    );
    assert_eq!(server.hits("GET", "/cache/plain"), 2);
    // no-cache: stored, but revalidated on every use (a 304 each time).
    assert_eq!(
        twice("/cache/no-cache").await,
        (Source::Network, Source::Revalidated)
    );
    assert_eq!(
        api.get("/cache/no-cache").await.unwrap().source,
        Source::Revalidated
    );
    // no-store: never stored, even with a max-age.
    assert_eq!(
        twice("/cache/no-store").await,
        (Source::Network, Source::Network)
    );
    // Expires: fresh until then, revalidated after.
    assert_eq!(
        twice("/cache/expires").await,
        (Source::Network, Source::Cache)
    );
    tokio::time::advance(Duration::from_secs(301)).await;
    assert_eq!(
        api.get("/cache/expires").await.unwrap().source,
        Source::Revalidated
    );
    // Query parameters in any order are one entry.
    assert_eq!(
        api.get("/cache/fresh")
            .query(&[("a", "1"), ("b", "2")])
            .await
            .unwrap()
            .source,
        Source::Network
    );
    assert_eq!(
        api.get("/cache/fresh")
            .query(&[("b", "2"), ("a", "1")])
            .await
            .unwrap()
            .source,
        Source::Cache
    );
}

#[tokio::test(start_paused = true)]
async fn a_stored_response_answers_only_its_vary_and_its_token() {
    let server = serve().await;
    let api = default_client(&server);
    let get = |accept: &'static str, token: &'static str| {
        let api = api.clone();
        async move {
            let response = api
                .get("/cache/vary")
                .header("accept", accept)
                .bearer(token)
                .await
                .unwrap();
            (response.source, response.text())
        }
    };
    let json = "application/json";
    assert_eq!(get(json, "a").await.0, Source::Network);
    assert_eq!(get(json, "a").await.0, Source::Cache);
    // Another Accept, which the response varies on: not the stored one.
    let (source, text) = get("text/html", "a").await;
    assert_eq!(source, Source::Network);
    assert!(text.contains("text/html"), "{text}");
    // Another token: never another token's response, Vary or not.
    assert_eq!(get("text/html", "b").await.0, Source::Network);
    assert_eq!(server.hits("GET", "/cache/vary"), 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_can_bypass_revalidate_or_force_the_cache() {
    let server = serve().await;
    let api = default_client(&server);
    assert_eq!(
        api.get("/cache/fresh").await.unwrap().source,
        Source::Network
    );
    // Bypass: neither read nor written.
    let bypass = api
        .get("/cache/fresh")
        .cache_mode(CacheMode::Bypass)
        .await
        .unwrap();
    assert_eq!(bypass.source, Source::Network);
    // Revalidate: asked even while fresh; so is a request's own `no-cache`.
    let asked = api
        .get("/cache/fresh")
        .cache_mode(CacheMode::Revalidate)
        .await
        .unwrap();
    assert_eq!(asked.source, Source::Revalidated);
    let asked = api
        .get("/cache/fresh")
        .header("cache-control", "no-cache")
        .await
        .unwrap();
    assert_eq!(asked.source, Source::Revalidated);
    assert_eq!(server.hits("GET", "/cache/fresh"), 4);
    // Force: a stale response answers without a request.
    tokio::time::advance(Duration::from_secs(3600)).await;
    let forced = api
        .get("/cache/fresh")
        .cache_mode(CacheMode::Force)
        .await
        .unwrap();
    assert_eq!(forced.source, Source::Cache);
    assert_eq!(server.hits("GET", "/cache/fresh"), 4);
    // Nothing stored: Force asks the server.
    let forced = api
        .get("/cache/plain")
        .cache_mode(CacheMode::Force)
        .await
        .unwrap();
    assert_eq!(forced.source, Source::Network);
}

#[tokio::test(start_paused = true)]
async fn concurrent_gets_of_one_key_send_one_request() {
    let server = serve().await;
    let api = default_client(&server);
    let fifty = |path: &'static str| {
        let calls = (0..50).map(|_| {
            let api = api.clone();
            async move { api.get(path).await }
        });
        futures_util::future::join_all(calls)
    };
    let sources = |results: &[leakproof::Result<leakproof::ApiResponse>]| {
        let mut by = HashMap::new();
        for r in results {
            *by.entry(format!("{:?}", r.as_ref().unwrap().source))
                .or_insert(0) += 1;
        }
        by
    };
    // 50 misses of one path: one request, 49 shared answers.
    let results = fifty("/cache/fresh").await;
    assert_eq!(server.hits("GET", "/cache/fresh"), 1);
    assert_eq!(sources(&results)["Shared"], 49);
    // 50 reads of one stale entry: one conditional request.
    tokio::time::advance(Duration::from_secs(61)).await;
    let results = fifty("/cache/fresh").await;
    assert_eq!(server.hits("GET", "/cache/fresh"), 2);
    assert_eq!(sources(&results)["Revalidated"], 1);
    // A response the cache may not keep is still shared with those who waited for it.
    let results = fifty("/cache/no-store").await;
    assert_eq!(server.hits("GET", "/cache/no-store"), 1);
    assert_eq!(sources(&results)["Shared"], 49);
    // A failed request fails its waiters too, without one request each.
    let results = fifty("/cache/fail").await;
    assert_eq!(
        server.hits("GET", "/cache/fail"),
        3,
        "three attempts in all"
    );
    let shared = results
        .iter()
        .filter(|r| {
            matches!(r, Err(Error::Shared { status: Some(s), .. }) if *s == StatusCode::SERVICE_UNAVAILABLE)
        })
        .count();
    assert_eq!(shared, 49);
    assert_eq!(api.stats().shared, 4 * 49, "49 in each of the four rounds");
    assert_eq!(api.in_flight_keys(), 0, "no flight left behind");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_hands_its_request_to_the_next_caller() {
    let server = serve().await;
    let api = default_client(&server);
    let leader = tokio::spawn({
        let api = api.clone();
        async move { api.get("/cache/fresh").await }
    });
    // The leader's request is in flight (the server holds it 100 ms).
    while server.hits("GET", "/cache/fresh") == 0 {
        tokio::task::yield_now().await;
    }
    let follower = tokio::spawn({
        let api = api.clone();
        async move { api.get("/cache/fresh").await }
    });
    tokio::task::yield_now().await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    let answer = follower.await.unwrap().unwrap();
    assert_eq!(answer.source, Source::Network, "the follower sent its own");
    assert_eq!(server.hits("GET", "/cache/fresh"), 2);
    assert_eq!(api.in_flight_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn concurrent_gets_that_differ_in_a_header_do_not_share_an_answer() {
    let server = serve().await;
    let api = default_client(&server);
    let get = |accept: &'static str| {
        let api = api.clone();
        async move {
            api.get("/cache/vary")
                .header("accept", accept)
                .await
                .unwrap()
        }
    };
    let (json, html) = futures_util::future::join(get("application/json"), get("text/html")).await;
    assert!(json.text().contains("application/json"), "{}", json.text());
    assert!(html.text().contains("text/html"), "{}", html.text());
    assert_eq!(server.hits("GET", "/cache/vary"), 2, "each sent its own");
}

/// `Duration::MAX` for "no deadline" is taken (it once panicked on every call): a call
/// answers as under the default.
#[tokio::test(start_paused = true)]
async fn a_deadline_of_duration_max_is_taken() {
    let server = serve().await;
    let api = ApiClient::builder(&format!("http://{}", server.addr))
        .no_proxy()
        .deadline(Duration::MAX)
        .max_rate_limit_wait(Duration::MAX)
        .backoff(Duration::MAX, Duration::MAX)
        .build()
        .unwrap();
    let response = api.get("/other").await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}
