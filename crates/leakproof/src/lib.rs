//! The umbrella crate: everything an operation borrows, released on every path; a
//! shutdown that keeps its deadline; one health report; one API client.
//!
//! # The guarantee
//!
//! [`scope`] runs an operation with a [`Scope`] that registers what it acquires (temp
//! dirs, child process trees, spawned tasks, held values such as files and permits,
//! arbitrary async cleanups with [`Scope::defer`]) and releases it in reverse order when
//! the operation returns `Ok`, returns `Err`, panics, or has its future dropped. A
//! release that fails is reported and the others still run; the [`ScopeReport`] says
//! what was released, what failed and why, and how long it took, and is logged. Scopes
//! nest. It works on the current-thread runtime.
//!
//! [`Shutdown`] turns SIGTERM/SIGINT into: no new work, cancellation, a wait for the
//! work in flight up to a deadline (25 s by default, under Kubernetes' 30 s), then force
//! (operations dropped, tasks aborted, blocking closures abandoned, child trees ended,
//! every live temp entry removed) and a [`ShutdownReport`] naming what was forced. A
//! second signal forces at once. [`supervise`] covers SIGKILL.
//!
//! [`Health`] grades one report from every crate: Healthy, Degraded (over 100 live
//! children, memory pressure, descriptors well over their baseline, a server-imposed
//! pause) or Unhealthy (shutting down, out of memory or descriptors), with the reasons,
//! serialisable with serde. [`Health::monitor`] checks it on an interval, logs each
//! change of grade through `tracing` and publishes it on a watch channel
//! ([`HealthMonitor`]).
//!
//! With feature `metrics`, every crate reports through the `metrics` facade
//! (the `leakproof::metrics` module lists each metric and when it is recorded); `Endpoint` (feature
//! `endpoint`) serves `/healthz` (the report as JSON, 200 or 503), `/readyz` (503 once
//! the shutdown has begun) and `/metrics` (Prometheus text) on an address you give,
//! and stops with the [`Shutdown`].
//!
//! [`ApiClient`] (feature `client`) is one pooled hyper-util client behind a `rate-gate`
//! gate fed by the response headers, with `ttl-cache` for GETs (ETag revalidation: a 304
//! costs no quota), `bounded-stream` caps on every body, retries with backoff and jitter
//! on 5xx and secondary limits, and every request inside a scope. It speaks HTTPS and
//! HTTP/2 (feature `rustls`), takes options per request ([`RequestBuilder`]: query,
//! headers, a bearer token per call, JSON bodies with feature `json`), decodes
//! compressed bodies under the same caps, and turns error statuses into
//! [`Error::Status`] on request.
//!
//! Each focused crate is re-exported as a module behind a default feature:
//! [`temp`] (scoped-temp), [`stream`] (bounded-stream), [`gate`] (rate-gate),
//! [`proc`] (proc-reaper, Linux), [`mem`] (mem-watch), [`cache`] (ttl-cache).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (outcome, report) = leakproof::scope("render", |scope| async move {
//!     let work = scope.temp_dir().map_err(std::io::Error::other)?;
//!     scope.defer("flush metrics", || async { Ok(()) });
//!     Err::<(), _>(std::io::Error::other("ffmpeg failed"))
//! })
//! .await;
//! assert!(outcome.is_err());
//! // Released anyway, last acquired first: the metrics flush, then the temp dir.
//! assert_eq!(report.released.len(), 2);
//! assert_eq!(report.released[0].what, "flush metrics");
//! # }
//! ```
//!
//! # Platforms
//!
//! Linux is the guaranteed platform. Elsewhere the umbrella builds without
//! [`proc`](https://docs.rs/proc-reaper) (proc-reaper is Linux-only and is left out
//! there, feature `proc` or not: no `Scope::spawn_child`, no `supervise`), and each
//! module degrades as its crate's docs say (mem-watch's figures need procfs).
//!
//! # What this does not protect against
//!
//! - **A dropped scope's async cleanups.** When the operation's future is dropped,
//!   what releases itself on drop is released at once (temp dirs removed, child trees
//!   killed, tasks aborted, held values dropped); deferred cleanups are spawned on the
//!   runtime and nobody awaits them, so a process that exits right after may cut them
//!   short.
//! - **Resources registered nowhere.** Only what goes through the scope is released; the
//!   shutdown's final sweep also catches live `scoped-temp` entries and the children of
//!   reapers registered with [`Shutdown::add_reaper`], nothing else.
//! - **Work that never yields.** Forcing drops an operation's future, which only takes
//!   effect when its task is polled; a future stuck in a blocking call holds its thread.
//!   Blocking closures cannot be stopped at all: the shutdown stops waiting for them, and
//!   [`ShutdownReport::exit`] exits without joining them. Returning from an async `main`
//!   instead drops the runtime, which does wait for them.
//! - **The process being killed.** A SIGKILL runs no release; [`supervise`] (or
//!   `proc::supervise()` and `temp::sweep_orphans`) covers that case.
//! - **Quota spent elsewhere.** The API client's gate knows this process's requests and
//!   what the server's headers say. With no quota of its own, the first requests of each
//!   window go out before any header is seen: keep its concurrency under the quota, or
//!   give it the quota. Across processes, see `rate-gate`'s docs.
//! - **Proxies other than HTTP `CONNECT`.** `ApiClient` tunnels through an `http://`
//!   proxy (plain-HTTP destinations too, which a proxy that allows `CONNECT` only to 443
//!   refuses); SOCKS and HTTPS proxies fail the connection, saying so.
//! - **Tokens without end.** Each token given per request gets a gate, kept for the
//!   client's life: a client that sees a new token per request grows by one gate each.
//! - **TLS beyond rustls' defaults.** `ApiClient`'s HTTPS (feature `rustls`) checks
//!   certificates against Mozilla's roots or the system's; certificate pinning,
//!   revocation checks and client certificates need a `rustls::ClientConfig` of your
//!   own ([`ApiClientBuilder::tls_config`]).

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "endpoint")]
mod endpoint;
mod error;
mod health;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod monitor;
mod scope;
mod shutdown;

/// The longest time limit kept as given (a shutdown's deadline and child grace, an API
/// call's deadline): 100 years, "never" in practice. A longer one (`Duration::MAX`,
/// say) is taken as this, since adding it to the clock's reading would overflow.
pub const LONGEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub use client::Paginate;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub use client::TlsRoots;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub use client::{
    ApiClient, ApiClientBuilder, ApiResponse, ApiStats, ApiStream, CacheMode,
    DEFAULT_CALL_DEADLINE, DEFAULT_MAX_RATE_LIMIT_WAIT, DefaultConnector, HEURISTIC_MAX,
    ProxyConnector, RequestBuilder, Source,
};
#[cfg(feature = "endpoint")]
#[cfg_attr(docsrs, doc(cfg(feature = "endpoint")))]
pub use endpoint::{CONNECTION_LIMIT, Endpoint, EndpointBuilder, MAX_CONNECTIONS};
pub use error::{Error, Result};
pub use health::{
    CacheHealth, FdHealth, GateHealth, Health, HealthBuilder, HealthReport, MemoryHealth,
    PoolHealth, PoolState, PoolStatus, Status,
};
pub use monitor::{HealthMonitor, MIN_MONITOR_INTERVAL};
#[cfg(all(feature = "proc", target_os = "linux"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "proc", target_os = "linux"))))]
pub use scope::ScopedChild;
pub use scope::{BoxError, Ended, Released, Scope, ScopeReport, TASK_STOP_WAIT, scope};
pub use shutdown::{
    Cause, DEFAULT_CHILD_GRACE, DEFAULT_DEADLINE, ForcedBy, ForcedWork, Kind, PAST_DEADLINE,
    Shutdown, ShutdownBuilder, ShutdownReport,
};

/// Runs the rest of the program under a `proc-reaper` supervisor (see
/// [`proc::supervise`]) that, once the program is gone (however it went, SIGKILL
/// included), ends its descendants and reclaims every `scoped-temp` entry it left: the
/// supervisor sweeps ([`temp::sweep_orphans`]) `std::env::temp_dir()` and every other
/// directory the program created temp entries, atomic writes or backups in (reported
/// by [`temp::on_first_use`]), so run directories set up after a
/// [`temp::remove_all`], custom roots and uncommitted atomic writes go too. Call it
/// first thing in `main`, before the runtime starts.
///
/// A directory whose report to the supervisor failed (its registry file could not be
/// written) is logged and left to the next sweep.
#[cfg(all(feature = "proc", target_os = "linux"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "proc", target_os = "linux"))))]
pub fn supervise() -> Result<proc_reaper::Supervisor> {
    #[cfg(feature = "temp")]
    let options = proc_reaper::SuperviseOptions::new().on_exit_sweep(|dir| {
        if let Err(error) = scoped_temp::sweep_orphans(dir) {
            tracing::warn!(%error, "leakproof: the supervisor could not sweep a directory");
        }
    });
    #[cfg(not(feature = "temp"))]
    let options = proc_reaper::SuperviseOptions::new();
    let link = proc_reaper::supervise_with(options)?;
    #[cfg(feature = "temp")]
    {
        static LINK: std::sync::OnceLock<proc_reaper::Supervisor> = std::sync::OnceLock::new();
        let _ = LINK.set(link.clone());
        link.sweep_on_exit(std::env::temp_dir())?;
        scoped_temp::on_first_use(|dir| {
            if let Some(link) = LINK.get()
                && let Err(error) = link.sweep_on_exit(dir)
            {
                tracing::warn!(%error, dir = %dir.display(), "leakproof: a directory not reported to the supervisor");
            }
        });
    }
    Ok(link)
}

#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
pub use bounded_stream as stream;
#[cfg(feature = "mem")]
#[cfg_attr(docsrs, doc(cfg(feature = "mem")))]
pub use mem_watch as mem;
#[cfg(all(feature = "proc", target_os = "linux"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "proc", target_os = "linux"))))]
pub use proc_reaper as proc;
#[cfg(feature = "gate")]
#[cfg_attr(docsrs, doc(cfg(feature = "gate")))]
pub use rate_gate as gate;
#[cfg(feature = "temp")]
#[cfg_attr(docsrs, doc(cfg(feature = "temp")))]
pub use scoped_temp as temp;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use ttl_cache as cache;
