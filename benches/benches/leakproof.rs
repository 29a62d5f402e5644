//! The umbrella's `Scope` against doing the same work bare, in the same run:
//!
//! - `scope_noop`: a scope around an operation that does nothing (the fixed cost).
//! - `scope_temp_dir`: a scope that creates and releases one temp dir, against creating
//!   and closing it directly. Target: at most 1.05x (under 5% overhead).
//! - `api_cached_get`: `ApiClient::get` answered from its cache, against a bare
//!   hyper-util GET of the same path on loopback (what the cache saves).
//! - `api_uncached_get`: `ApiClient::get` of a `no-store` response (gate, scope, caps,
//!   headers, all of it, every time), against the same bare GET (what the client costs).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn scopes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("leakproof/scope_noop");
    g.bench_function("ours", |b| {
        b.iter(|| rt.block_on(leakproof::scope("op", |_| async { Ok::<_, ()>(()) })))
    });
    g.bench_function("bare", |b| {
        b.iter(|| rt.block_on(async { Ok::<_, ()>(()) }))
    });
    g.finish();

    let mut g = c.benchmark_group("leakproof/scope_temp_dir");
    g.bench_function("ours", |b| {
        b.iter(|| {
            rt.block_on(leakproof::scope("op", |s| async move {
                s.temp_dir().map(|_| ()).map_err(|_| ())
            }))
        })
    });
    g.bench_function("bare", |b| {
        b.iter(|| {
            rt.block_on(async {
                let dir = scoped_temp::TempDir::new().unwrap();
                dir.close().await.unwrap();
            })
        })
    });
    g.finish();
}

/// A loopback server on its own thread and runtime: a GitHub-like JSON body with an
/// ETag and a max-age, or `no-store` under `/nostore/`.
fn server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            // A quota this bench never runs out of, counted down truthfully (the gate
            // keeps the lowest figure it has seen for a window).
            let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let body = Bytes::from(format!(
                "{{\"full_name\":\"rust-lang/rust\",\"pad\":\"{}\"}}",
                "x".repeat(2000)
            ));
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (body, served) = (body.clone(), served.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let cache = if req.uri().path().starts_with("/nostore/") {
                                "no-store"
                            } else {
                                "private, max-age=60"
                            };
                            let response = http::Response::builder()
                                .header("etag", "\"v1\"")
                                .header("cache-control", cache)
                                .header(
                                    "x-ratelimit-remaining",
                                    1_000_000_000
                                        - served.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                                )
                                .header("x-ratelimit-reset", "4102444800")
                                .body(Full::new(body.clone()))
                                .unwrap();
                            async move { Ok::<_, Infallible>(response) }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn api(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = server();
    let base = format!("http://{addr}");
    let api = rt.block_on(async { leakproof::ApiClient::builder(&base).build().unwrap() });
    let bare: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let bare_get = |path: &'static str| {
        let uri: http::Uri = format!("{base}{path}").parse().unwrap();
        let bare = bare.clone();
        async move {
            let response = bare
                .request(http::Request::get(uri).body(Empty::new()).unwrap())
                .await
                .unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        }
    };
    rt.block_on(api.get("/repos/rust-lang/rust").send())
        .unwrap();

    let mut g = c.benchmark_group("leakproof/api_cached_get");
    g.bench_function("ours", |b| {
        b.iter(|| {
            rt.block_on(api.get("/repos/rust-lang/rust").send())
                .unwrap()
        })
    });
    g.bench_function("hyper_util", |b| {
        b.iter(|| rt.block_on(bare_get("/repos/rust-lang/rust")))
    });
    g.finish();

    let mut g = c.benchmark_group("leakproof/api_uncached_get");
    g.bench_function("ours", |b| {
        b.iter(|| {
            rt.block_on(api.get("/nostore/rust-lang/rust").send())
                .unwrap()
        })
    });
    g.bench_function("hyper_util", |b| {
        b.iter(|| rt.block_on(bare_get("/nostore/rust-lang/rust")))
    });
    g.finish();
    assert!(api.stats().cache_hits > 0 && api.cached() == 1);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = scopes, api }
criterion_main!(benches);
