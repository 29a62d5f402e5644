//! The indexer's world, on 127.0.0.1 only: a GitHub-like API (hyper) and a download
//! host in the manner of codeload.github.com, written by hand because its hostile
//! answers break HTTP framing on purpose, which hyper refuses to do.
//!
//! The API serves `/repos/{owner}/{name}` as JSON with an ETag, `max-age`, the
//! `X-RateLimit-*` headers, and now and then a secondary limit (403 + `Retry-After`).
//! The download host serves each repository's gzipped tarball and gzipped CI log, and
//! the hostile ones: a decompression bomb, a body longer and one shorter than its
//! Content-Length, a slow drip, and a 1 GiB log on a single line (the last two made as
//! they are read, so a client that stops early costs the server nothing more).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Hostile repositories: their metadata is honest, their downloads are not.
pub const BOMB: &str = "hostile/bomb";
pub const LONGER: &str = "hostile/longer-than-declared";
pub const SHORTER: &str = "hostile/shorter-than-declared";
pub const DRIP: &str = "hostile/slow-drip";
pub const ONE_LINE_LOG: &str = "hostile/one-line-log";
pub const CORRUPT: &str = "hostile/not-gzip";
/// A repository with one file bigger than the full-disk fault allows.
pub const BIG_FILE: &str = "faults/big-file";
/// The repository of 10,000 files (S5).
pub const MONOREPO: &str = "big/monorepo";
/// Another repository of 10,000 files (S5's warm-up).
pub const WORKSPACE: &str = "big/other-monorepo";

/// How many ordinary repositories there are.
pub const ORDINARY: usize = 48;
/// Size of the bomb once decompressed: 1 GiB of zeros.
pub const BOMB_SIZE: u64 = 1 << 30;
/// Length of the single-line log once decompressed.
pub const ONE_LINE_SIZE: u64 = 1 << 30;
/// The file in [`BIG_FILE`].
pub const BIG_FILE_SIZE: usize = 1 << 20;
/// Every how many API requests a secondary rate limit is answered (Retry-After: 1).
const SECONDARY_EVERY: u64 = 400;

/// One repository the server knows.
pub struct Repo {
    pub name: String,
    pub sha: String,
    /// Its tarball, gzipped.
    pub archive: Bytes,
    /// Its CI log, gzipped.
    pub log: Bytes,
    /// Files in the tarball.
    pub files: usize,
}

/// The names of the ordinary repositories, in order.
pub fn ordinary(i: usize) -> String {
    format!("acme/service-{:02}", i % ORDINARY)
}

fn gzip(data: &[u8]) -> Bytes {
    use async_compression::Level;
    use async_compression::tokio::write::GzipEncoder;
    // Synchronously, on a `Vec` that never returns Pending.
    let mut encoder = GzipEncoder::with_quality(Vec::new(), Level::Default);
    futures_util::FutureExt::now_or_never(async {
        encoder.write_all(data).await?;
        encoder.shutdown().await
    })
    .expect("writing to a Vec never waits")
    .expect("gzip into memory");
    Bytes::from(encoder.into_inner())
}

fn tarball(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, data.as_slice())
            .expect("tar into memory");
    }
    builder.into_inner().expect("tar into memory")
}

/// A source file of `lines` lines, different per seed.
fn source(seed: usize, lines: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for l in 0..lines {
        let _ = writeln!(
            out,
            "fn handler_{seed}_{l}(request: &Request) -> Result<Response> {{ route(request, {}) }}",
            (seed * 31 + l * 7) % 97
        );
    }
    out
}

fn log_text(seed: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for l in 0..200 {
        let level = if (seed + l).is_multiple_of(53) {
            "error"
        } else {
            "info"
        };
        let _ = writeln!(
            out,
            "2026-11-23T10:{:02}:{:02}Z {level} step {l} of job {seed}",
            l / 60,
            l % 60
        );
    }
    out
}

fn repo(name: String, files: Vec<(String, Vec<u8>)>, seed: usize) -> Repo {
    let sha = format!("{:040x}", (seed as u128 + 1) * 0x9E37_79B9_7F4A_7C15_F39C);
    Repo {
        files: files.len(),
        archive: gzip(&tarball(&files)),
        log: gzip(&log_text(seed)),
        name,
        sha,
    }
}

/// Every repository: the ordinary ones (4 to 7 source files; in some, a file the tool
/// hangs on, ignores SIGTERM over, or leaves an escaping grandchild behind for), the
/// hostile ones, the big-file one, and the 10,000-file monorepo when `monorepo`.
pub fn corpus(monorepo: bool) -> HashMap<String, Repo> {
    let mut repos = HashMap::new();
    for i in 0..ORDINARY {
        let name = ordinary(i);
        let mut files: Vec<(String, Vec<u8>)> = (0..4 + i % 4)
            .map(|f| (format!("src/mod_{f}.rs"), source(i * 10 + f, 20 + f * 5)))
            .collect();
        // The tool's behaviour follows the file's extension (see `work::TOOL`).
        match i % 16 {
            3 => files.push(("tools/stuck.hang".into(), b"never finishes\n".to_vec())),
            7 | 15 => files.push(("scripts/daemon.escape".into(), b"forks a daemon\n".to_vec())),
            11 => files.push((
                "bin/stubborn.stubborn".into(),
                b"ignores SIGTERM\n".to_vec(),
            )),
            _ => {}
        }
        repos.insert(name.clone(), repo(name, files, i));
    }
    for (i, name) in [BOMB, LONGER, SHORTER, DRIP, ONE_LINE_LOG, CORRUPT]
        .iter()
        .enumerate()
    {
        let files = vec![("README.md".to_string(), source(1000 + i, 400))];
        repos.insert(name.to_string(), repo(name.to_string(), files, 1000 + i));
    }
    let big = vec![
        ("README.md".to_string(), source(2000, 5)),
        ("assets/blob.bin".to_string(), vec![b'z'; BIG_FILE_SIZE]),
    ];
    repos.insert(BIG_FILE.to_string(), repo(BIG_FILE.to_string(), big, 2000));
    if monorepo {
        let files = (0..10_000)
            .map(|f| {
                (
                    format!("crate{:03}/src/file{f:05}.rs", f / 100),
                    source(f + 7, 3 + f % 5),
                )
            })
            .collect();
        repos.insert(
            WORKSPACE.to_string(),
            repo(WORKSPACE.to_string(), files, 2500),
        );
        let files = (0..10_000)
            .map(|f| {
                (
                    format!("pkg{:03}/file{f:05}.rs", f / 100),
                    source(f, 3 + f % 5),
                )
            })
            .collect();
        repos.insert(
            MONOREPO.to_string(),
            repo(MONOREPO.to_string(), files, 3000),
        );
    }
    repos
}

/// What the servers saw, for the scenarios' checks.
#[derive(Default)]
pub struct Seen {
    pub api_requests: AtomicU64,
    pub not_modified: AtomicU64,
    pub secondary_limits: AtomicU64,
    pub downloads: AtomicU64,
    /// Connections open now, on both hosts.
    pub open_connections: AtomicUsize,
    /// Most connections open at once.
    pub peak_connections: AtomicUsize,
    pub accepted: AtomicU64,
}

impl Seen {
    fn opened(&self) -> ConnectionGuard<'_> {
        let now = self.open_connections.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_connections.fetch_max(now, Ordering::SeqCst);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self)
    }
}

struct ConnectionGuard<'a>(&'a Seen);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Both hosts, running until dropped.
pub struct Servers {
    pub api: SocketAddr,
    pub codeload: SocketAddr,
    pub seen: Arc<Seen>,
    tasks: JoinSet<()>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Servers {
    /// Binds both hosts on 127.0.0.1 (free ports) and serves `repos`.
    pub async fn start(repos: Arc<HashMap<String, Repo>>) -> std::io::Result<Servers> {
        let seen = Arc::new(Seen::default());
        let api_listener = TcpListener::bind("127.0.0.1:0").await?;
        let codeload_listener = TcpListener::bind("127.0.0.1:0").await?;
        let api = api_listener.local_addr()?;
        let codeload = codeload_listener.local_addr()?;
        let mut tasks = JoinSet::new();
        let (r, s) = (repos.clone(), seen.clone());
        tasks.spawn(accept_loop(api_listener, s.clone(), move |stream| {
            serve_api(stream, r.clone(), s.clone(), codeload)
        }));
        let (r, s) = (repos, seen.clone());
        tasks.spawn(accept_loop(codeload_listener, s.clone(), move |stream| {
            serve_codeload(stream, r.clone(), s.clone())
        }));
        Ok(Servers {
            api,
            codeload,
            seen,
            tasks,
        })
    }

    /// The API's base URL.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The download host's base URL.
    pub fn codeload_base(&self) -> String {
        format!("http://{}", self.codeload)
    }
}

/// Accepts until aborted. An accept error (EMFILE while a scenario starves this process
/// of fds on purpose) is waited out, not fatal. Connection tasks are aborted with it.
async fn accept_loop<F, Fut>(listener: TcpListener, seen: Arc<Seen>, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let seen = seen.clone();
                    let work = serve(stream);
                    connections.spawn(async move {
                        let _open = seen.opened();
                        work.await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

type Body = Full<Bytes>;

async fn serve_api(
    stream: TcpStream,
    repos: Arc<HashMap<String, Repo>>,
    seen: Arc<Seen>,
    codeload: SocketAddr,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = api_response(&request, &repos, &seen, codeload);
        async move { Ok::<_, Infallible>(response) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn api_response(
    request: &Request<Incoming>,
    repos: &HashMap<String, Repo>,
    seen: &Seen,
    codeload: SocketAddr,
) -> Response<Body> {
    let n = seen.api_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let limit = 5000u64;
    let remaining = limit - n % limit;
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + 3600);
    let builder = Response::builder()
        .header("x-ratelimit-limit", limit)
        .header("x-ratelimit-remaining", remaining)
        .header("x-ratelimit-reset", reset)
        .header("content-type", "application/json");
    if n.is_multiple_of(SECONDARY_EVERY) {
        seen.secondary_limits.fetch_add(1, Ordering::Relaxed);
        return builder
            .status(403)
            .header("retry-after", "1")
            .body(Full::new(Bytes::from_static(
                b"{\"message\":\"You have exceeded a secondary rate limit.\"}",
            )))
            .unwrap_or_default();
    }
    let path = request.uri().path();
    let Some(repo) = path
        .strip_prefix("/repos/")
        .and_then(|name| repos.get(name))
    else {
        return builder
            .status(404)
            .body(Full::new(Bytes::from_static(
                b"{\"message\":\"Not Found\"}",
            )))
            .unwrap_or_default();
    };
    let etag = format!("\"{}\"", repo.sha);
    if request
        .headers()
        .get("if-none-match")
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        seen.not_modified.fetch_add(1, Ordering::Relaxed);
        return builder
            .status(304)
            .header("etag", etag)
            .header("cache-control", "private, max-age=60")
            .body(Full::default())
            .unwrap_or_default();
    }
    let body = serde_json::json!({
        "full_name": repo.name,
        "default_branch": "main",
        "sha": repo.sha,
        "files": repo.files,
        "tarball_url": format!("http://{codeload}/{}/tar.gz/{}", repo.name, repo.sha),
        "logs_url": format!("http://{codeload}/{}/logs/{}.gz", repo.name, repo.sha),
    });
    builder
        .status(200)
        .header("etag", etag)
        .header("cache-control", "private, max-age=60")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

/// The download host: HTTP/1.1 keep-alive, by hand.
async fn serve_codeload(stream: TcpStream, repos: Arc<HashMap<String, Repo>>, seen: Arc<Seen>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        // The request head: the request line, then headers up to a blank line.
        let mut request_line = String::new();
        match read.read_line(&mut request_line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let mut header = String::new();
            match read.read_line(&mut header).await {
                Ok(0) | Err(_) => return,
                Ok(_) if header == "\r\n" || header == "\n" => break,
                Ok(_) => {}
            }
        }
        seen.downloads.fetch_add(1, Ordering::Relaxed);
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        if respond_download(&path, &repos, &mut write).await.is_err() {
            return;
        }
    }
}

/// Writes one response; `Err` ends the connection (on purpose, or the client left).
async fn respond_download(
    path: &str,
    repos: &HashMap<String, Repo>,
    out: &mut (impl AsyncWriteExt + Unpin),
) -> std::io::Result<()> {
    let found = path.strip_prefix('/').and_then(|rest| {
        let (name, kind) = rest
            .split_once("/tar.gz/")
            .map(|(n, _)| (n, "tar"))
            .or_else(|| rest.split_once("/logs/").map(|(n, _)| (n, "log")))?;
        Some((repos.get(name)?, kind))
    });
    let Some((repo, kind)) = found else {
        return head(out, 404, Some(0), "").await;
    };
    let gz = "application/gzip";
    match (repo.name.as_str(), kind) {
        (BOMB, "tar") => {
            head(out, 200, None, gz).await?;
            chunked(out, endless_gzip(0, BOMB_SIZE)).await
        }
        (ONE_LINE_LOG, "log") => {
            head(out, 200, None, gz).await?;
            chunked(out, endless_gzip(b'x', ONE_LINE_SIZE)).await
        }
        (LONGER, "tar") => {
            // Declares half of what follows: the rest lands where the next response
            // should start. Then the connection is kept, as a broken proxy would.
            let declared = repo.archive.len() / 2;
            head(out, 200, Some(declared), gz).await?;
            out.write_all(&repo.archive).await?;
            out.flush().await
        }
        (SHORTER, "tar") => {
            head(out, 200, Some(repo.archive.len()), gz).await?;
            out.write_all(&repo.archive[..repo.archive.len() / 2])
                .await?;
            out.flush().await?;
            Err(std::io::ErrorKind::ConnectionAborted.into())
        }
        (DRIP, "tar") => {
            head(out, 200, Some(repo.archive.len()), gz).await?;
            for chunk in repo.archive.chunks(16) {
                out.write_all(chunk).await?;
                out.flush().await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(())
        }
        (CORRUPT, "tar") => {
            let junk = vec![0x42u8; 4096];
            head(out, 200, Some(junk.len()), gz).await?;
            out.write_all(&junk).await?;
            out.flush().await
        }
        (_, "tar") => {
            head(out, 200, Some(repo.archive.len()), gz).await?;
            out.write_all(&repo.archive).await?;
            out.flush().await
        }
        _ => {
            head(out, 200, Some(repo.log.len()), gz).await?;
            out.write_all(&repo.log).await?;
            out.flush().await
        }
    }
}

async fn head(
    out: &mut (impl AsyncWriteExt + Unpin),
    status: u16,
    length: Option<usize>,
    content_type: &str,
) -> std::io::Result<()> {
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let framing = match length {
        Some(n) => format!("content-length: {n}"),
        None => "transfer-encoding: chunked".to_string(),
    };
    let head =
        format!("HTTP/1.1 {status} {reason}\r\n{framing}\r\ncontent-type: {content_type}\r\n\r\n");
    out.write_all(head.as_bytes()).await
}

/// `size` bytes of `byte`, gzipped as they are read.
fn endless_gzip(byte: u8, size: u64) -> impl tokio::io::AsyncRead + Unpin {
    let plain = tokio::io::BufReader::new(tokio::io::repeat(byte).take(size));
    async_compression::tokio::bufread::GzipEncoder::with_quality(
        plain,
        async_compression::Level::Fastest,
    )
}

/// Sends `body` with chunked framing until it ends or the client goes away.
async fn chunked(
    out: &mut (impl AsyncWriteExt + Unpin),
    mut body: impl tokio::io::AsyncRead + Unpin,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = body.read(&mut buf).await?;
        if n == 0 {
            out.write_all(b"0\r\n\r\n").await?;
            return out.flush().await;
        }
        out.write_all(format!("{n:x}\r\n").as_bytes()).await?;
        out.write_all(&buf[..n]).await?;
        out.write_all(b"\r\n").await?;
    }
}
