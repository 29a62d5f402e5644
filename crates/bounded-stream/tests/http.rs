//! A real HTTP exchange on loopback: a hostile raw HTTP/1.1 server (endless bodies,
//! lies about Content-Length, slow drip, a 1 GiB single line) against `CappedClient`.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bounded_stream::{CappedClient, Error, Limits, scan_lines};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const GIB: u64 = 1 << 30;

struct Server {
    base: String,
    connections: Arc<AtomicUsize>,
}

/// Starts the hostile server on 127.0.0.1 (only); it lives as long as the runtime.
async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(connection(socket));
        }
    });
    Server { base, connections }
}

async fn connection(socket: TcpStream) {
    let mut socket = BufReader::new(socket);
    loop {
        // Read one request head; keep-alive until the client goes away.
        let mut first = String::new();
        if socket.read_line(&mut first).await.unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if socket.read_line(&mut header).await.unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
        let s = socket.get_mut();
        let done = match path.as_str() {
            "/ok" => s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .await
                .is_err(),
            "/endless" => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                let chunk = [b"10000\r\n".as_slice(), &[b'z'; 0x10000], b"\r\n"].concat();
                while s.write_all(&chunk).await.is_ok() {}
                true
            }
            "/declares-10gib" => {
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 10 * GIB)
                            .as_bytes(),
                    )
                    .await;
                std::future::pending::<()>().await;
                true
            }
            "/shorter" => {
                let _ = s
                    .write_all(
                        &[
                            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".as_slice(),
                            &[b's'; 500],
                        ]
                        .concat(),
                    )
                    .await;
                true // Close after 500 of the 1000 declared bytes.
            }
            "/longer" => {
                let _ = s
                    .write_all(
                        &[
                            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".as_slice(),
                            &[b'l'; 1000],
                        ]
                        .concat(),
                    )
                    .await;
                true
            }
            "/drip" => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                    .await;
                while s.write_all(b"d").await.is_ok() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                true
            }
            "/one-line" => {
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", GIB + 17)
                            .as_bytes(),
                    )
                    .await;
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..1024 {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                let _ = s.write_all(b"\nwarning: at end\n").await;
                false
            }
            _ => s
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await
                .is_err(),
        };
        if done {
            return;
        }
    }
}

#[tokio::test]
async fn an_endless_body_stops_at_the_cap() {
    let server = server().await;
    let client = CappedClient::new();
    let err = client
        .get_bytes(
            format!("{}/endless", server.base).parse().unwrap(),
            &Limits::new(1 << 20),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit, received, .. } if limit == 1 << 20 && received <= limit + 0x10000),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_the_body() {
    let server = server().await;
    let client = CappedClient::new();
    // The server never sends a body byte: only refusing on the header can finish.
    let err = client
        .get(
            format!("{}/declares-10gib", server.base).parse().unwrap(),
            &Limits::new(1 << 20),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ContentLengthTooLarge { limit: 1048576, declared } if declared == 10 * GIB),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_an_error() {
    let server = server().await;
    let client = CappedClient::new();
    let err = client
        .get_bytes(
            format!("{}/shorter", server.base).parse().unwrap(),
            &Limits::new(1 << 20),
        )
        .await
        .unwrap_err();
    // hyper notices the early close; the count says how much had arrived.
    assert!(
        matches!(
            err,
            Error::Source { received: 500, .. }
                | Error::ContentLengthMismatch {
                    declared: 1000,
                    received: 500
                }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_body_longer_than_its_content_length_never_delivers_the_surplus() {
    let server = server().await;
    let client = CappedClient::new();
    let (_, body) = client
        .get_bytes(
            format!("{}/longer", server.base).parse().unwrap(),
            &Limits::new(1 << 20),
        )
        .await
        .unwrap();
    // hyper stops at the declared length; the 900 extra bytes never reach memory.
    assert_eq!(body.len(), 100);
}

#[tokio::test(start_paused = true)]
async fn a_slow_drip_is_cut_off_by_the_minimum_rate() {
    let server = server().await;
    let client = CappedClient::new();
    let limits = Limits::new(1 << 20)
        .idle_timeout(Duration::from_secs(30))
        .min_rate(100, Duration::from_secs(10), Duration::from_secs(5));
    let started = tokio::time::Instant::now();
    let err = client
        .get_bytes(format!("{}/drip", server.base).parse().unwrap(), &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooSlow { min_bytes: 100, observed, .. } if observed <= 11),
        "{err:?}"
    );
    assert!(
        started.elapsed() <= Duration::from_secs(16),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_1_gib_single_line_is_scanned_in_bounded_memory() {
    let server = server().await;
    let client = CappedClient::new();
    let response = client
        .get(
            format!("{}/one-line", server.base).parse().unwrap(),
            &Limits::new(2 * GIB),
        )
        .await
        .unwrap();
    let data = response.into_body().into_data_stream();
    let mut lines = Vec::new();
    let summary = scan_lines(tokio_util::io::StreamReader::new(data), 64 * 1024, |line| {
        lines.push((
            line.bytes.len(),
            line.truncated,
            line.bytes.starts_with(b"warning:"),
        ));
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(summary.bytes, GIB + 17);
    assert_eq!(lines, vec![(64 * 1024, true, false), (15, false, true)]);
}

#[tokio::test]
async fn one_client_reuses_its_connection() {
    let server = server().await;
    let client = CappedClient::new();
    for _ in 0..5 {
        let (parts, body) = client
            .get_bytes(
                format!("{}/ok", server.base).parse().unwrap(),
                &Limits::new(100),
            )
            .await
            .unwrap();
        assert_eq!(parts.status, 200);
        assert_eq!(body.to_bytes(), Bytes::from_static(b"hello"));
    }
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "five requests, one pooled connection"
    );
}
