//! The repository indexer: the workload the scenarios run, written as a user of
//! `leakproof` would write it. One operation indexes one repository inside a
//! [`leakproof::scope`]:
//!
//! 1. its metadata from the API, through an [`ApiClient`] (cached, revalidated by ETag);
//! 2. its tarball from the download host, streamed, decompressed and unpacked as it
//!    arrives into the scope's temp dir, within caps on the wire, on the decoded bytes
//!    and on the file count;
//! 3. its CI log, streamed and scanned line by line, refused if a line is too long;
//! 4. an external tool (`sh` + `wc`) over each file through a [`Reaper`], with a
//!    timeout: some files make it hang, ignore SIGTERM, or leave a `setsid` daemon;
//! 5. the index written to SQLite in one transaction.
//!
//! Faults are injected at fixed points on request (see [`Fault`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bounded_stream::{Codec, DecodeLimits, Limits};
use futures_util::StreamExt;
use leakproof::ApiClient;
use leakproof::gate::Gate;
use proc_reaper::Reaper;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::sync::Semaphore;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::db::{Db, FileRow};

/// The tool run over each file: `wc`, except where the file's extension says
/// otherwise. `.hang`: never returns. `.stubborn`: ignores SIGTERM and never returns.
/// `.escape`: starts a daemon in a session of its own (`setsid`), then does its job.
pub const TOOL: &str = r#"for f; do case "$f" in
  *.hang) exec sleep 3600;;
  *.stubborn) trap '' TERM; sleep 3600;;
  *.escape) setsid sleep 3600 </dev/null >/dev/null 2>&1 &;;
esac; done
exec wc -lw -- "$@""#;

/// The message of an injected panic (silenced in the report).
pub const INJECTED_PANIC: &str = "stress: injected panic in an indexing operation";

/// A fault to inject into one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// None: the operation runs as written.
    None,
    /// Returns an error after the tools ran, before the commit.
    Error,
    /// Panics while a tool is running.
    Panic,
    /// Cancelled by its caller at a random point (the caller aborts it).
    Cancel,
    /// A full disk: `RLIMIT_FSIZE` at 64 KiB while the tarball is unpacked.
    FullDisk,
    /// Fd exhaustion: `RLIMIT_NOFILE` at the lowest free fd while the tarball is
    /// unpacked, so the next file opened fails with EMFILE.
    NoFiles,
    /// For the harness's own test: forgets a temp dir and leaves a child running.
    Leak,
    /// For the watchdog's test: [`Fault::Leak`], then never finishes.
    Hang,
}

/// Everything that stops an operation, with the numbers that explain it.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The API or the download host (after retries), or a refused Content-Length.
    #[error(transparent)]
    Api(Box<leakproof::Error>),
    /// A temp dir could not be created.
    #[error(transparent)]
    Temp(#[from] scoped_temp::Error),
    /// The metadata is not what the API promises.
    #[error("metadata of {repo}: {reason}")]
    Metadata { repo: String, reason: String },
    /// A download answered something other than 200.
    #[error("{url}: status {status}")]
    Status { url: String, status: u16 },
    /// A download broke a cap or a timeout, or does not decompress.
    #[error("{url}: {source}")]
    Download {
        url: String,
        #[source]
        source: bounded_stream::Error,
    },
    /// Writing the unpacked tree failed (a full disk, no fds left, a bad entry).
    #[error("unpacking into {path}: {source}")]
    Unpack {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The tarball holds an entry that would land outside the temp dir.
    #[error("unsafe path in the tarball: {path}")]
    UnsafePath { path: String },
    /// The tarball holds more files than allowed.
    #[error("more than {limit} files in the tarball")]
    TooManyFiles { limit: usize },
    /// The log holds a line longer than allowed (the rest of it was not buffered).
    #[error("{url}: line {line} is longer than {limit} bytes")]
    LineTooLong {
        url: String,
        line: u64,
        limit: usize,
    },
    /// Starting or reaping a tool failed.
    #[error(transparent)]
    Tool(#[from] proc_reaper::Error),
    /// SQLite.
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
    /// No pooled connection within the pool's wait timeout (or one could not be made).
    #[error("database pool: {0}")]
    Pool(#[from] deadpool::managed::PoolError<rusqlite::Error>),
    /// The pool could not be set up.
    #[error("database pool: {0}")]
    PoolBuild(String),
    /// The injected error ([`Fault::Error`]).
    #[error("injected error in operation {op}")]
    Injected { op: u64 },
}

impl From<leakproof::Error> for IndexError {
    fn from(error: leakproof::Error) -> Self {
        IndexError::Api(Box::new(error))
    }
}

impl IndexError {
    /// The variant's name and, for wrapped errors, the inner one's: what the bad-input
    /// checks compare ("Download/TooLarge").
    pub fn kind(&self) -> String {
        let debug = |e: &dyn std::fmt::Debug| {
            let text = format!("{e:?}");
            text.split([' ', '(', '{'])
                .next()
                .unwrap_or_default()
                .to_string()
        };
        match self {
            IndexError::Api(e) => match &**e {
                leakproof::Error::Body { source, .. } => format!("Api/Body/{}", debug(source)),
                other => format!("Api/{}", debug(other)),
            },
            IndexError::Download { source, .. } => format!("Download/{}", debug(source)),
            other => debug(other),
        }
    }
}

/// The caps on what one operation may take.
#[derive(Debug, Clone)]
pub struct Caps {
    /// Compressed bytes of a download.
    pub wire: u64,
    /// Decompressed bytes of a download.
    pub decoded: u64,
    /// Files in a tarball.
    pub files: usize,
    /// Longest log line.
    pub max_line: usize,
    /// One tool run.
    pub tool_timeout: Duration,
    /// Between a tool's SIGTERM and its SIGKILL.
    pub tool_grace: Duration,
    /// Tools running at once, across operations.
    pub tools: usize,
    /// Tarballs unpacked at once, across operations.
    pub unpacks: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            wire: 32 << 20,
            decoded: 64 << 20,
            files: 20_000,
            max_line: 64 << 10,
            tool_timeout: Duration::from_millis(500),
            tool_grace: Duration::from_millis(100),
            tools: 4,
            unpacks: 2,
        }
    }
}

impl Caps {
    fn wire_limits(&self) -> Limits {
        // A slow drip is refused by rate, long before the deadline.
        Limits::new(self.wire)
            .idle_timeout(Duration::from_secs(10))
            .deadline(Duration::from_secs(60))
            .min_rate(4096, Duration::from_secs(1), Duration::from_secs(1))
    }
}

/// What one operation indexed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Indexed {
    pub files: usize,
    pub tool_runs: usize,
    pub tool_timeouts: usize,
    pub log_lines: u64,
}

#[derive(serde::Deserialize)]
pub(super) struct Meta {
    pub(super) sha: String,
    pub(super) files: usize,
    tarball_url: String,
    logs_url: String,
}

/// The indexer: its clients, reaper, tool slots, index and caps. Clones share them.
#[derive(Clone)]
pub struct Indexer {
    pub api: ApiClient,
    pub codeload: ApiClient,
    codeload_base: String,
    pub reaper: Reaper,
    pub tools: Arc<Semaphore>,
    /// Unpacks at once: each holds a thread in `block_in_place`.
    unpacks: Arc<Semaphore>,
    pub db: Db,
    pub caps: Caps,
}

impl Indexer {
    /// An indexer for the servers at `api` and `codeload`, with `concurrency`
    /// requests in flight per host at most, writing to `db`.
    pub fn new(
        api: &str,
        codeload: &str,
        concurrency: u32,
        db: Db,
        reaper: Reaper,
        shutdown: Option<&leakproof::Shutdown>,
    ) -> crate::Result<Indexer> {
        let caps = Caps::default();
        let client = |base: &str, name: &str| {
            let mut builder = ApiClient::builder(base)
                .header("user-agent", "leakproof-stress-indexer")
                .gate(Gate::builder().name(name).concurrency(concurrency).build())
                .limits(
                    Limits::new(1 << 20)
                        .idle_timeout(Duration::from_secs(10))
                        .deadline(Duration::from_secs(30)),
                )
                .backoff(Duration::from_millis(50), Duration::from_secs(1));
            if let Some(shutdown) = shutdown {
                builder = builder.shutdown(shutdown);
            }
            builder.build().map_err(Box::new)
        };
        Ok(Indexer {
            api: client(api, "api")?,
            codeload: client(codeload, "codeload")?,
            codeload_base: codeload.to_string(),
            reaper,
            tools: Arc::new(Semaphore::new(caps.tools)),
            unpacks: Arc::new(Semaphore::new(caps.unpacks)),
            db,
            caps,
        })
    }

    /// Indexes `repo` as operation `op`, in a scope of its own.
    pub async fn index(&self, op: u64, repo: &str, fault: Fault) -> Result<Indexed, IndexError> {
        let name = format!("index {repo} #{op}");
        leakproof::scope(&name, |scope| self.run(scope, op, repo, fault))
            .await
            .0
    }

    async fn run(
        &self,
        scope: leakproof::Scope,
        op: u64,
        repo: &str,
        fault: Fault,
    ) -> Result<Indexed, IndexError> {
        let response = self.api.get(&format!("/repos/{repo}")).await?;
        let meta = match response.status.as_u16() {
            200 => serde_json::from_slice::<Meta>(&response.body).map_err(|e| {
                IndexError::Metadata {
                    repo: repo.to_string(),
                    reason: e.to_string(),
                }
            })?,
            status => {
                return Err(IndexError::Status {
                    url: format!("/repos/{repo}"),
                    status,
                });
            }
        };
        let dir = scope.temp_dir()?;
        if matches!(fault, Fault::Leak | Fault::Hang) {
            leak(&dir);
        }
        if fault == Fault::Hang {
            std::future::pending::<()>().await;
        }
        let files = self.unpack(&meta.tarball_url, &dir, fault).await?;
        let unpacked: usize = files.iter().map(Vec::len).sum();
        if unpacked != meta.files {
            return Err(IndexError::Metadata {
                repo: repo.to_string(),
                reason: format!("{unpacked} files unpacked, {} announced", meta.files),
            });
        }
        let log_lines = self.scan_log(&meta.logs_url).await?;
        let (rows, indexed) = self.run_tools(&dir, files, fault).await?;
        if fault == Fault::Error {
            return Err(IndexError::Injected { op });
        }
        self.db.commit(op, repo, &meta, &rows, log_lines).await?;
        Ok(Indexed {
            log_lines,
            ..indexed
        })
    }

    /// A download from the host the metadata named, as a stream of decoded bytes that
    /// records its typed error in `failure` (what reaches the reader is an `io::Error`).
    async fn download(
        &self,
        url: &str,
        failure: &Arc<Mutex<Option<bounded_stream::Error>>>,
    ) -> Result<impl tokio::io::AsyncRead + Send + Unpin + 'static, IndexError> {
        let path = url
            .strip_prefix(&self.codeload_base)
            .ok_or_else(|| IndexError::Status {
                url: url.to_string(),
                status: 0,
            })?;
        let stream = self
            .codeload
            .get_stream(path, &self.caps.wire_limits())
            .await?;
        if stream.status != http::StatusCode::OK {
            return Err(IndexError::Status {
                url: url.to_string(),
                status: stream.status.as_u16(),
            });
        }
        let budget = DecodeLimits::new(Limits::new(self.caps.decoded));
        let slot = failure.clone();
        let decoded =
            bounded_stream::decode(stream.into_stream(), Codec::Gzip, &budget).map(move |chunk| {
                chunk.map_err(|error| {
                    let io = std::io::Error::other(error.to_string());
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
                    io
                })
            });
        Ok(StreamReader::new(Box::pin(decoded)))
    }

    /// The typed error behind a failed read, if the download recorded one.
    fn download_error(
        url: &str,
        failure: &Mutex<Option<bounded_stream::Error>>,
    ) -> Option<IndexError> {
        let source = failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(IndexError::Download {
            url: url.to_string(),
            source,
        })
    }

    async fn unpack(
        &self,
        url: &str,
        dir: &Path,
        fault: Fault,
    ) -> Result<Vec<Vec<String>>, IndexError> {
        let failure = Arc::new(Mutex::new(None));
        let _slot = self
            .unpacks
            .acquire()
            .await
            .map_err(|_| IndexError::Unpack {
                path: dir.to_path_buf(),
                source: std::io::Error::other("unpack slots closed"),
            })?;
        let reader = SyncIoBridge::new(self.download(url, &failure).await?);
        // Fd exhaustion is process-wide: first let the reaper finish what it does in
        // the background (reaping needs fds), and keep the sampler's reads out.
        let _quiet = if fault == Fault::NoFiles {
            self.reaper.settle().await;
            Some(crate::stress::report::pause_sampler())
        } else {
            None
        };
        let limit = match fault {
            Fault::FullDisk => Some(LoweredLimit::lower(Resource::Fsize, 64 << 10)),
            Fault::NoFiles => Some(LoweredLimit::lower(Resource::Nofile, lowest_free_fd())),
            _ => None,
        };
        // tar is blocking: on this worker, with the runtime told so. Never cancelled
        // half-way, so nothing is written into the dir after the scope removed it.
        let result = tokio::task::block_in_place(|| unpack_tar(reader, dir, self.caps.files));
        drop(limit);
        result.map_err(|e| Self::download_error(url, &failure).unwrap_or(e))
    }

    async fn scan_log(&self, url: &str) -> Result<u64, IndexError> {
        let failure = Arc::new(Mutex::new(None));
        let reader = self.download(url, &failure).await?;
        let mut too_long = None;
        let scanned = bounded_stream::scan_lines(reader, self.caps.max_line, |line| {
            if line.truncated {
                too_long = Some(line.number);
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        })
        .await;
        if let Some(line) = too_long {
            return Err(IndexError::LineTooLong {
                url: url.to_string(),
                line,
                limit: self.caps.max_line,
            });
        }
        match scanned {
            Ok(summary) => Ok(summary.lines),
            Err(error) => Err(Self::download_error(url, &failure).unwrap_or(
                IndexError::Download {
                    url: url.to_string(),
                    source: error,
                },
            )),
        }
    }

    async fn run_tools(
        &self,
        dir: &Path,
        files: Vec<Vec<String>>,
        fault: Fault,
    ) -> Result<(Vec<Vec<FileRow>>, Indexed), IndexError> {
        let total: usize = files.iter().map(Vec::len).sum();
        // One run per file; a big tree in batches, as xargs would.
        let per_run = if total > 64 { BATCH } else { 1 };
        let mut rows = Vec::with_capacity(files.len());
        let mut indexed = Indexed {
            files: total,
            ..Indexed::default()
        };
        for batch in files.iter().flat_map(|b| b.chunks(per_run)) {
            let mut batch_rows = Vec::with_capacity(batch.len());
            let _slot = self
                .tools
                .acquire()
                .await
                .map_err(|_| proc_reaper::Error::Spawn {
                    program: "sh".into(),
                    source: std::io::Error::other("tool slots closed"),
                })?;
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(TOOL)
                .arg("indexer-tool")
                .args(batch)
                .current_dir(dir);
            let Some(spawning) = crate::stress::may_spawn() else {
                // The watchdog is ending the run: start nothing more.
                return std::future::pending().await;
            };
            let child = self
                .reaper
                .command(command)
                .name("indexer-tool")
                .grace(self.caps.tool_grace)
                .tail(64 << 10)
                .spawn()?;
            drop(spawning);
            indexed.tool_runs += 1;
            if fault == Fault::Panic {
                panic!("{INJECTED_PANIC}");
            }
            let outcome = child.wait_timeout(self.caps.tool_timeout).await?;
            if outcome.timed_out {
                indexed.tool_timeouts += 1;
            }
            let text = outcome.stdout.text();
            let mut counts = std::collections::HashMap::new();
            for line in text.lines() {
                let mut fields = line.split_whitespace();
                if let (Some(l), Some(w), Some(path)) =
                    (fields.next(), fields.next(), fields.next())
                {
                    counts.insert(path.to_string(), (l.parse().ok(), w.parse().ok()));
                }
            }
            for path in batch {
                let (lines, words) = counts.get(path).copied().unwrap_or((None, None));
                let tool = match (outcome.timed_out, lines.is_some()) {
                    (true, _) => "timed out",
                    (false, true) => "ok",
                    (false, false) => "no output",
                };
                batch_rows.push(FileRow {
                    path: path.clone(),
                    lines,
                    words,
                    tool,
                });
            }
            rows.push(batch_rows);
        }
        Ok((rows, indexed))
    }
}

/// Files (and index rows) are kept in batches of this many: no allocation grows with
/// the repository in one piece, so a big one leaves no big hole in the heap.
const BATCH: usize = 500;

/// Unpacks regular files only, each inside `dir`, at most `max_files`; reads the
/// stream to its end so the gzip trailer is checked and the connection can be reused.
/// The paths come back in batches of [`BATCH`].
fn unpack_tar(
    reader: impl Read,
    dir: &Path,
    max_files: usize,
) -> Result<Vec<Vec<String>>, IndexError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IndexError::Unpack {
            path,
            source: os_error(source),
        }
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.set_preserve_mtime(false);
    let mut files: Vec<Vec<String>> = Vec::new();
    let mut count = 0;
    for entry in archive.entries().map_err(io(dir))? {
        let mut entry = entry.map_err(io(dir))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let path = entry
            .path()
            .map_err(io(dir))?
            .to_string_lossy()
            .into_owned();
        if !kind.is_file() {
            return Err(IndexError::UnsafePath { path });
        }
        if count == max_files {
            return Err(IndexError::TooManyFiles { limit: max_files });
        }
        match entry.unpack_in(dir) {
            Ok(true) => {
                match files.last_mut() {
                    Some(batch) if batch.len() < BATCH => batch.push(path),
                    _ => {
                        let mut batch = Vec::with_capacity(BATCH.min(64));
                        batch.push(path);
                        files.push(batch);
                    }
                }
                count += 1;
            }
            Ok(false) => return Err(IndexError::UnsafePath { path }),
            Err(source) => {
                return Err(IndexError::Unpack {
                    path: dir.join(&path),
                    source: os_error(source),
                });
            }
        }
    }
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(io(dir))?;
    Ok(files)
}

/// The operating system's error inside one of tar's (which wraps it with a message):
/// EFBIG, EMFILE, ENOSPC say more than "failed to unpack".
fn os_error(error: std::io::Error) -> std::io::Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = error.get_ref().map(|e| e as _);
    while let Some(e) = cause {
        if let Some(code) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return std::io::Error::from_raw_os_error(code);
        }
        cause = e.source();
    }
    error
}

/// The lowest fd number not in use: the next `open` gets it, so a `RLIMIT_NOFILE` at
/// this number makes it fail with EMFILE.
fn lowest_free_fd() -> u64 {
    use std::os::fd::AsRawFd;
    // What `open` returns is by definition the lowest free number; it is free again
    // once the file is closed.
    std::fs::File::open("/dev/null").map_or(0, |f| f.as_raw_fd() as u64)
}

/// A resource limit lowered for a while, restored on drop.
struct LoweredLimit {
    resource: Resource,
    old: Rlimit,
}

impl LoweredLimit {
    fn lower(resource: Resource, soft: u64) -> LoweredLimit {
        let old = getrlimit(resource);
        let lowered = Rlimit {
            current: Some(soft),
            maximum: old.maximum,
        };
        // If the kernel refuses, the fault does not happen and the scenario's count of
        // failed operations says so.
        let _ = setrlimit(resource, lowered);
        LoweredLimit { resource, old }
    }
}

impl Drop for LoweredLimit {
    fn drop(&mut self) {
        let _ = setrlimit(self.resource, self.old);
    }
}

/// [`Fault::Leak`]: a temp dir outside any scope, and a child nobody owns.
fn leak(scoped_dir: &Path) {
    if let Some(run_dir) = scoped_dir.parent() {
        let _ = tempfile::Builder::new()
            .prefix("leaked-")
            .tempdir_in(run_dir)
            .map(tempfile::TempDir::keep);
    }
    if let Some(_spawning) = crate::stress::may_spawn() {
        // Not holding the run's output open: the harness's tests read it to the end.
        let _ = Command::new("sleep")
            .arg("600")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}
