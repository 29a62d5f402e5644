//! The health and metrics endpoint, over real HTTP on loopback: `/healthz`, `/readyz`
//! and `/metrics` answer from the live figures, turn 503 when the shutdown begins,
//! and the endpoint stops when the shutdown has ended.

#![cfg(all(
    feature = "endpoint",
    feature = "gate",
    feature = "mem",
    feature = "temp"
))]

use std::net::SocketAddr;

use leakproof::gate::{Gate, Quota};
use leakproof::{Endpoint, Error, Health, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request on its own connection: the status and the body.
async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn serves_health_readiness_and_metrics_until_the_shutdown_ends() {
    let shutdown = Shutdown::new();
    let quota = Quota::per_second(100).burst(10).unwrap();
    let gate = Gate::builder().name("api").quota(quota).build();
    let health = Health::builder()
        .shutdown(&shutdown)
        .gate("api", &gate)
        .build()
        .unwrap();
    let mut endpoint = Endpoint::builder(health)
        .shutdown(&shutdown)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = endpoint.local_addr();
    for _ in 0..3 {
        drop(gate.try_acquire().unwrap());
    }
    let dir = leakproof::temp::TempDir::new().unwrap();

    let (status, body) = get(addr, "GET", "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "healthy", "{body}");
    assert_eq!(get(addr, "GET", "/readyz").await, (200, "ready\n".into()));

    let (status, metrics) = get(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "rate_gate_granted_total{gate=\"api\"} 3",
        "rate_gate_in_flight{gate=\"api\"} 0",
        "leakproof_health_status 0",
        "leakproof_shutting_down 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    let series = |name: &str| {
        metrics.lines().find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .and_then(|v| v.parse::<f64>().ok())
        })
    };
    assert!(
        series("scoped_temp_entries_live").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        series("mem_watch_rss_bytes").is_some_and(|n| n > 0.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE rate_gate_granted_total counter"),
        "{metrics}"
    );
    drop(dir);

    assert_eq!(get(addr, "POST", "/healthz").await.0, 405);
    assert_eq!(get(addr, "GET", "/nowhere").await.0, 404);

    // The shutdown begins: not ready, not healthy, still answering while it drains.
    shutdown.trigger();
    assert_eq!(
        get(addr, "GET", "/readyz").await,
        (503, "shutting down\n".into())
    );
    let (status, body) = get(addr, "GET", "/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("shutting down"), "{body}");
    let (_, metrics) = get(addr, "GET", "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "leakproof_shutting_down 1"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "leakproof_health_status 2"),
        "{metrics}"
    );

    // It ends: the endpoint stops with it, and nothing listens on the port.
    let report = shutdown.wait().await;
    assert!(report.is_clean(), "{report:?}");
    endpoint.stopped().await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn a_taken_address_is_a_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let health = Health::builder().build().unwrap();
    match Endpoint::builder(health).bind(addr).await {
        Err(Error::Bind {
            addr: shown,
            source,
        }) => {
            assert!(shown.contains(&addr.port().to_string()), "{shown}");
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_endpoint_stops_it() {
    let health = Health::builder().build().unwrap();
    let endpoint = Endpoint::builder(health).bind("127.0.0.1:0").await.unwrap();
    let addr = endpoint.local_addr();
    assert_eq!(get(addr, "GET", "/readyz").await.0, 200);
    endpoint.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}
