//! Going through an HTTP proxy: [`ProxyConnector`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper-util's `HttpConnector`, through an HTTP proxy where the proxy rules say: a
/// `CONNECT` tunnel to the destination (with the proxy's credentials from its URL), so
/// TLS runs end to end over it. By default the rules are the environment's
/// (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, upper or lower case), read when
/// the client is built; see [`ApiClientBuilder::proxy`](super::ApiClientBuilder::proxy)
/// and [`no_proxy`](super::ApiClientBuilder::no_proxy).
///
/// Plain-HTTP destinations are tunnelled too (not sent in absolute form), which a proxy
/// that allows `CONNECT` only to port 443 refuses; SOCKS and HTTPS proxies are not
/// supported (the connection fails, saying so).
#[derive(Clone, Debug)]
pub struct ProxyConnector {
    http: HttpConnector,
    rules: Option<Arc<Matcher>>,
}

impl ProxyConnector {
    /// `http` directly, or through a proxy where `rules` intercept the destination.
    pub(super) fn new(http: HttpConnector, rules: Option<Matcher>) -> Self {
        ProxyConnector {
            http,
            rules: rules.map(Arc::new),
        }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let Some(proxy) = self.rules.as_ref().and_then(|rules| rules.intercept(&dst)) else {
            let connecting = self.http.call(dst);
            return Box::pin(async move { connecting.await.map_err(Into::into) });
        };
        if proxy.uri().scheme_str() != Some("http") {
            let reason = format!(
                "proxy {} for {dst}: only http:// proxies (CONNECT) are supported",
                proxy.uri()
            );
            return Box::pin(async move { Err(reason.into()) });
        }
        tracing::debug!(proxy = %proxy.uri(), %dst, "leakproof: connecting through a proxy");
        let mut tunnel = Tunnel::new(proxy.uri().clone(), self.http.clone());
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let dst = with_port(dst);
        Box::pin(async move { tunnel.call(dst).await.map_err(Into::into) })
    }
}

/// `dst` with its scheme's default port written out (the tunnel assumes 443 otherwise).
fn with_port(dst: Uri) -> Uri {
    if dst.port().is_some() {
        return dst;
    }
    let port = if dst.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    let (Some(scheme), Some(host)) = (dst.scheme_str(), dst.host()) else {
        return dst;
    };
    format!("{scheme}://{host}:{port}").parse().unwrap_or(dst)
}

#[cfg(test)]
mod tests {
    use super::with_port;

    #[test]
    fn a_destination_without_a_port_gets_its_schemes() {
        let port = |u: &str| with_port(u.parse().unwrap()).port_u16();
        assert_eq!(port("http://example.com"), Some(80));
        assert_eq!(port("https://example.com/x"), Some(443));
        assert_eq!(port("http://example.com:8080"), Some(8080));
    }
}
