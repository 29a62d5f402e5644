//! `ApiClient` over HTTPS (feature `rustls`) against a loopback TLS server whose
//! certificate is made here: HTTP/2 chosen by ALPN, HTTP/1.1 where the server offers
//! only that, caps exact to the byte over both, a stalled HTTP/2 stream cut by its idle
//! limit while other streams on the same connection finish, and bases the client cannot
//! speak refused when it is built.
//!
//! On tokio's real clock, unlike `api_client.rs`: with the clock paused, an HTTP/2
//! response body stops at 36 KiB every time (the runtime, idle between frames, jumps the
//! clock to the idle limit; over HTTP/1.1 it does not). So every limit a transfer must
//! not hit is 30 s, far beyond what loopback takes, and the one limit a test waits for
//! (a stalled stream's idle limit) is 300 ms; nothing asserts a duration.

use leakproof::{ApiClient, Error};

/// Everything that needs TLS.
#[cfg(feature = "rustls")]
mod tls {
    use super::*;

    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::stream;
    use http::{Request, Response};
    use http_body_util::combinators::BoxBody;
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::{Frame, Incoming};
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use leakproof::Source;
    use leakproof::stream::Limits;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// The cap the tests' client puts on bodies.
    const CAP: usize = 64 << 10;

    type Body = BoxBody<Bytes, Infallible>;

    struct Server {
        addr: SocketAddr,
        /// The server's certificate, for the client to trust.
        cert: CertificateDer<'static>,
        /// TLS connections accepted.
        connections: Arc<AtomicU32>,
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A body of `len` bytes in 4 KiB chunks.
    fn chunked(len: usize) -> Body {
        let chunks = (0..len.div_ceil(4096)).map(move |i| {
            let n = 4096.min(len - i * 4096);
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; n])))
        });
        StreamBody::new(stream::iter(chunks)).boxed()
    }

    fn respond(request: &Request<Incoming>, bomb: &Bytes) -> Response<Body> {
        let path = request.uri().path();
        let body = match path {
            // 16 MiB of zeros gzipped (made once): a bomb for a 64 KiB cap.
            "/bomb" => {
                let mut response = Response::new(Full::new(bomb.clone()).boxed());
                response
                    .headers_mut()
                    .insert("content-encoding", "gzip".parse().unwrap());
                return response;
            }
            // Which protocol the request came over.
            "/version" => Full::new(Bytes::from(format!("{:?}", request.version()))).boxed(),
            // Exactly the cap, and one byte over it, with no Content-Length to refuse early.
            "/at-cap" => chunked(CAP),
            "/over-cap" => chunked(CAP + 1),
            // One byte, then nothing ever again (the stream stays open).
            "/stall" => {
                let first =
                    stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"x")))]);
                StreamBody::new(futures_util::StreamExt::chain(first, stream::pending())).boxed()
            }
            _ => Full::new(Bytes::from_static(b"fine")).boxed(),
        };
        Response::new(body)
    }

    /// 16 MiB of zeros, gzipped: a few KiB.
    async fn bomb() -> Bytes {
        use tokio::io::AsyncReadExt;
        let zeros = tokio::io::BufReader::new(tokio::io::repeat(0).take(16 << 20));
        let mut encoder = async_compression::tokio::bufread::GzipEncoder::new(zeros);
        let mut out = Vec::new();
        encoder.read_to_end(&mut out).await.unwrap();
        Bytes::from(out)
    }

    /// A TLS server on 127.0.0.1 offering `alpn` (e.g. `h2` and `http/1.1`), with a
    /// certificate for 127.0.0.1 made now.
    async fn serve(alpn: &[&[u8]]) -> Server {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = made.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU32::new(0));
        let bomb = bomb().await;
        let counted = connections.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                let bomb = bomb.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let service = service_fn(move |request: Request<Incoming>| {
                        let response = respond(&request, &bomb);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Server {
            addr,
            cert,
            connections,
        }
    }

    /// A TLS configuration trusting only the server's certificate.
    fn trusting(server: &Server) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(server.cert.clone()).unwrap();
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    /// A client trusting only the server's certificate.
    fn client(server: &Server) -> ApiClient {
        ApiClient::builder(&format!("https://{}", server.addr))
            .tls_config(trusting(server))
            .limits(
                Limits::new(CAP as u64)
                    .idle_timeout(Duration::from_secs(30))
                    .deadline(Duration::from_secs(60)),
            )
            .build()
            .unwrap()
    }

    async fn version(api: &ApiClient) -> String {
        let response = api.get("/version").await.unwrap();
        assert_eq!(response.source, Source::Network);
        String::from_utf8(response.body.to_vec()).unwrap()
    }

    /// Exactly the cap passes, one byte more is refused with the numbers.
    async fn caps_are_exact(api: &ApiClient) {
        let at = api.get("/at-cap").await.unwrap();
        assert_eq!(at.body.len(), CAP);
        match api.get("/over-cap").await {
            Err(Error::Body { source, .. }) => assert!(
                matches!(
                    source,
                    leakproof::stream::Error::TooLarge { limit, .. } if limit == CAP as u64
                ),
                "{source:?}"
            ),
            other => panic!("expected the cap to refuse the body, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn http2_is_chosen_by_alpn_and_caps_stay_exact_over_it() {
        let server = serve(&[b"h2", b"http/1.1"]).await;
        let api = client(&server);
        assert_eq!(version(&api).await, "HTTP/2.0");
        caps_are_exact(&api).await;
        assert_eq!(
            server.connections.load(Ordering::SeqCst),
            1,
            "one connection"
        );
    }

    #[tokio::test]
    async fn a_decompression_bomb_over_http2_stops_at_the_cap() {
        let server = serve(&[b"h2", b"http/1.1"]).await;
        let api = client(&server);
        assert_eq!(version(&api).await, "HTTP/2.0");
        match api.get("/bomb").await {
            Err(Error::Body { source, .. }) => assert!(
                matches!(
                    source,
                    leakproof::stream::Error::TooLarge {
                        stage: leakproof::stream::Stage::Decoded,
                        limit,
                        ..
                    } if limit == CAP as u64
                ),
                "{source:?}"
            ),
            other => panic!("expected the cap, got {other:?}"),
        }
        // Nothing stored: a refused body never is (nor is `/version`, which has no
        // freshness or validator).
        assert_eq!(api.cached(), 0);
    }

    #[tokio::test]
    async fn http1_is_spoken_where_the_server_offers_only_that() {
        let server = serve(&[b"http/1.1"]).await;
        let api = client(&server);
        assert_eq!(version(&api).await, "HTTP/1.1");
        caps_are_exact(&api).await;
    }

    #[tokio::test]
    async fn http1_only_keeps_to_http1_even_where_http2_is_offered() {
        let server = serve(&[b"h2", b"http/1.1"]).await;
        // A configuration that names its own ALPN protocols: replaced, not obeyed.
        let mut tls = trusting(&server);
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let api = ApiClient::builder(&format!("https://{}", server.addr))
            .tls_config(tls)
            .http1_only()
            .build()
            .unwrap();
        assert_eq!(version(&api).await, "HTTP/1.1");
    }

    #[tokio::test]
    async fn a_stalled_http2_stream_is_cut_while_the_others_on_its_connection_finish() {
        let server = serve(&[b"h2", b"http/1.1"]).await;
        let api = client(&server);
        // The connection is up (and pooled) before the streams start, so all share it.
        assert_eq!(version(&api).await, "HTTP/2.0");
        let cut = Limits::new(CAP as u64).idle_timeout(Duration::from_millis(300));
        let stalled = async {
            let stream = api.get_stream("/stall", &cut).await?;
            let mut chunks = std::pin::pin!(stream.into_stream());
            let mut received = 0;
            while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
                received += chunk?.len();
            }
            Ok::<_, Box<dyn std::error::Error>>(received)
        };
        let limits = Limits::new(CAP as u64).idle_timeout(Duration::from_secs(30));
        let paths = (0..8).map(|i| if i % 2 == 0 { "/ok" } else { "/at-cap" });
        let others =
            futures_util::future::join_all(paths.map(|path| api.get_stream(path, &limits)));
        let (stalled, others) = tokio::join!(stalled, others);
        let error = stalled.expect_err("the stalled stream must be cut");
        assert!(
            matches!(
                error.downcast_ref::<leakproof::stream::Error>(),
                Some(leakproof::stream::Error::IdleTimeout { received: 1, .. })
            ),
            "{error:?}"
        );
        for other in others {
            let mut received = 0;
            let mut chunks = std::pin::pin!(other.unwrap().into_stream());
            while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
                received += chunk.unwrap().len();
            }
            assert!(received == 4 || received == CAP, "{received}");
        }
        assert_eq!(
            server.connections.load(Ordering::SeqCst),
            1,
            "every stream on one connection"
        );
        assert_eq!(api.gate().stats().in_flight, 0, "permits back");
    }

    #[tokio::test]
    async fn a_certificate_nobody_vouches_for_is_refused_and_not_retried_forever() {
        let server = serve(&[b"h2", b"http/1.1"]).await;
        // Mozilla's roots do not include the test's certificate.
        let api = ApiClient::builder(&format!("https://{}", server.addr))
            .attempts(1)
            .build()
            .unwrap();
        match api.get("/version").await {
            Err(Error::Request { attempts: 1, .. }) => {}
            other => panic!("expected the handshake to fail, got {other:?}"),
        }
        assert_eq!(
            server.connections.load(Ordering::SeqCst),
            0,
            "no TLS session"
        );
    }

    /// A `CONNECT` proxy on loopback: records each tunnel's destination.
    async fn connect_proxy() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                let record = record.clone();
                tokio::spawn(async move {
                    // The request head, byte by byte (nothing follows it until we answer).
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        head.push(client.read_u8().await.unwrap());
                    }
                    let head = String::from_utf8(head).unwrap();
                    let target = head
                        .strip_prefix("CONNECT ")
                        .and_then(|rest| rest.split_whitespace().next())
                        .unwrap()
                        .to_string();
                    record.lock().unwrap().push(target.clone());
                    let mut upstream = tokio::net::TcpStream::connect(&target).await.unwrap();
                    client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn https_goes_through_a_connect_proxy_when_told_and_not_otherwise() {
        let server = serve(&[b"h2", b"http/1.1"]).await;
        let (proxy, seen) = connect_proxy().await;
        let api = ApiClient::builder(&format!("https://{}", server.addr))
            .tls_config(trusting(&server))
            .proxy(&format!("http://{proxy}"))
            .build()
            .unwrap();
        // TLS end to end through the tunnel: HTTP/2 still chosen by ALPN.
        assert_eq!(version(&api).await, "HTTP/2.0");
        assert_eq!(*seen.lock().unwrap(), [server.addr.to_string()]);
        let direct = ApiClient::builder(&format!("https://{}", server.addr))
            .tls_config(trusting(&server))
            .no_proxy()
            .build()
            .unwrap();
        assert_eq!(version(&direct).await, "HTTP/2.0");
        assert_eq!(seen.lock().unwrap().len(), 1, "no tunnel without a proxy");
        // A proxy that is not there: a connection error, not a hang.
        let nowhere = ApiClient::builder(&format!("https://{}", server.addr))
            .tls_config(trusting(&server))
            .proxy("http://127.0.0.1:1")
            .attempts(1)
            .build()
            .unwrap();
        assert!(matches!(
            nowhere.get("/version").await,
            Err(Error::Request { attempts: 1, .. })
        ));
    }
}

#[test]
fn a_base_the_client_cannot_speak_is_refused_when_built() {
    for base in ["ftp://example.com", "ws://127.0.0.1:1", "file:///etc"] {
        match ApiClient::builder(base).build() {
            Err(Error::UnsupportedScheme { scheme, uri, .. }) => {
                assert_eq!(uri, base);
                assert!(base.starts_with(&scheme), "{scheme} of {base}");
            }
            other => panic!("{base}: expected UnsupportedScheme, got {other:?}"),
        }
    }
    assert!(ApiClient::builder("http://127.0.0.1:1").build().is_ok());
    let https = ApiClient::builder("https://api.github.com").build();
    if cfg!(feature = "rustls") {
        assert!(https.is_ok(), "{https:?}");
    } else {
        // A build without TLS says so when built, not on every request.
        assert!(
            matches!(&https, Err(Error::UnsupportedScheme { scheme, .. }) if scheme == "https"),
            "{https:?}"
        );
    }
}
