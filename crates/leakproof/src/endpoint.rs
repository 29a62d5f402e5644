//! A health and metrics endpoint: `/healthz`, `/readyz` and `/metrics` over HTTP/1.1
//! on hyper, ending with the [`Shutdown`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Error, Health, Result, Shutdown};

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection is closed this long after it was accepted, whatever it is doing (a
/// slow or idle client holds no slot past it).
pub const CONNECTION_LIMIT: Duration = Duration::from_secs(10);

/// Serves, on an address you give:
///
/// - `GET /healthz`: [`Health::check`] as JSON, `200` when Healthy or Degraded, `503`
///   when Unhealthy ([`HealthReport::http_status`](crate::HealthReport::http_status));
/// - `GET /readyz`: `200 ready`, or `503 shutting down` once the registered
///   [`Shutdown`] has begun (so a load balancer stops sending work while the drain
///   runs);
/// - `GET /metrics` (feature `metrics`): every crate's figures in Prometheus' text
///   format, [`publish`](crate::metrics::publish)ed first (see
///   [`leakproof::metrics`](crate::metrics) for the list).
///
/// It keeps serving during the drain, then stops when the shutdown has ended
/// ([`Shutdown::ended_token`]), when [`Endpoint::stop`] is called, or when it is
/// dropped. Its own connections are bounded: [`MAX_CONNECTIONS`] at once, each closed
/// [`CONNECTION_LIMIT`] after it was accepted.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), leakproof::Error> {
/// use leakproof::{Endpoint, Health, Shutdown};
///
/// let shutdown = Shutdown::new();
/// shutdown.install_signals()?;
/// let health = Health::builder().shutdown(&shutdown).build()?;
/// let endpoint = Endpoint::builder(health).shutdown(&shutdown).bind("0.0.0.0:9100").await?;
/// println!("health on http://{}/healthz", endpoint.local_addr());
/// shutdown.wait().await.exit();
/// # }
/// ```
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// Builds an [`Endpoint`].
#[derive(Debug)]
pub struct EndpointBuilder {
    health: Health,
    shutdown: Option<Shutdown>,
    #[cfg(feature = "metrics")]
    prometheus: Option<crate::metrics::PrometheusHandle>,
}

struct Routes {
    health: Health,
    shutdown: Option<Shutdown>,
    #[cfg(feature = "metrics")]
    prometheus: crate::metrics::PrometheusHandle,
}

impl Endpoint {
    /// An endpoint reporting `health`.
    pub fn builder(health: Health) -> EndpointBuilder {
        EndpointBuilder {
            health,
            shutdown: None,
            #[cfg(feature = "metrics")]
            prometheus: None,
        }
    }

    /// The address it listens on (the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now (accepted and not yet closed on this side).
    pub fn connections(&self) -> usize {
        MAX_CONNECTIONS - self.slots.available_permits()
    }

    /// Waits until it has stopped on its own: its shutdown has ended.
    pub async fn stopped(&mut self) {
        if let Some(task) = self.task.as_mut() {
            let _ = task.await;
            self.task = None;
        }
    }

    /// Stops accepting, closes its connections and waits for its task to end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl EndpointBuilder {
    /// `/readyz` answers 503 once `shutdown` has begun, and the endpoint stops when it
    /// has ended. (Register it with the [`Health`] too, for `/healthz`.)
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Renders `/metrics` from this Prometheus recorder instead of installing one
    /// ([`install_prometheus`](crate::metrics::install_prometheus)): for a process that
    /// installed its own.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn prometheus(mut self, handle: crate::metrics::PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// Binds `addr` and serves on a task of its own. Fails with [`Error::Bind`] when the
    /// address cannot be bound, [`Error::Recorder`] when no Prometheus recorder can be
    /// installed, [`Error::NoRuntime`] outside a tokio runtime.
    pub async fn bind(self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<Endpoint> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
            what: "Endpoint::bind",
        })?;
        #[cfg(feature = "metrics")]
        let prometheus = match self.prometheus {
            Some(handle) => handle,
            None => crate::metrics::install_prometheus()?,
        };
        let shown = format!("{addr:?}");
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: shown.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: shown,
            source,
        })?;
        let stop = CancellationToken::new();
        let ended = self.shutdown.as_ref().map(Shutdown::ended_token);
        let routes = Arc::new(Routes {
            health: self.health,
            shutdown: self.shutdown,
            #[cfg(feature = "metrics")]
            prometheus,
        });
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let task = runtime.spawn(serve(listener, routes, slots.clone(), stop.clone(), ended));
        tracing::info!(%addr, "leakproof: health endpoint listening");
        Ok(Endpoint {
            addr,
            slots,
            stop,
            task: Some(task),
        })
    }
}

async fn serve(
    listener: TcpListener,
    routes: Arc<Routes>,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    ended: Option<CancellationToken>,
) {
    let ended = ended.unwrap_or_default();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            _ = ended.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            _ = ended.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tracing::warn!(%error, "leakproof: health endpoint cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let routes = routes.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request| {
                let routes = routes.clone();
                async move { Ok::<_, std::convert::Infallible>(routes.answer(&request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, connection).await;
        });
    }
    // Dropping the set aborts the connections still open.
    connections.shutdown().await;
    tracing::info!("leakproof: health endpoint stopped");
}

impl Routes {
    fn answer<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match request.uri().path() {
            "/healthz" => {
                let report = self.health.check();
                #[cfg(feature = "metrics")]
                crate::metrics::health(&report);
                let status = StatusCode::from_u16(report.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                match serde_json::to_vec(&report) {
                    Ok(json) => respond(status, "application/json", json),
                    Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{error}\n")),
                }
            }
            "/readyz" => match &self.shutdown {
                Some(shutdown) if shutdown.is_shutting_down() => {
                    text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                }
                _ => text(StatusCode::OK, "ready\n"),
            },
            #[cfg(feature = "metrics")]
            "/metrics" => {
                crate::metrics::publish();
                crate::metrics::health(&self.health.check());
                self.prometheus.run_upkeep();
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.prometheus.render().into_bytes(),
                )
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /healthz, /readyz, /metrics\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
