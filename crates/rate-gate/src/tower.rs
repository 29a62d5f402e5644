//! A tower `Layer`: the gate in front of any service, shared by every clone.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::{Feedback, Gate, Permit};

/// The error a [`GateService`] returns: the inner service's, or the gate's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads rate-limit feedback from a response, for [`GateLayer::observe`].
pub trait ObserveResponse<Response> {
    /// What `response` said about the rate limit, if anything.
    fn feedback(&self, response: &Response) -> Option<Feedback>;
}

/// Reads nothing: the gate applies its quota and concurrency only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFeedback;

impl<R> ObserveResponse<R> for NoFeedback {
    fn feedback(&self, _: &R) -> Option<Feedback> {
        None
    }
}

/// Reads `X-RateLimit-*`, `Retry-After` and the status of an `http::Response`
/// ([`Feedback::from_headers`]).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpHeaders;

#[cfg(feature = "http")]
impl<B> ObserveResponse<http::Response<B>> for HttpHeaders {
    fn feedback(&self, response: &http::Response<B>) -> Option<Feedback> {
        Some(Feedback::from_headers(
            response.status(),
            response.headers(),
        ))
    }
}

impl<R, F: Fn(&R) -> Option<Feedback>> ObserveResponse<R> for F {
    fn feedback(&self, response: &R) -> Option<Feedback> {
        self(response)
    }
}

/// Puts a [`Gate`] in front of a tower service: `poll_ready` waits for a permit (in
/// line, first come first served), the permit is held until the response arrives, and
/// the response's rate-limit feedback goes back to the gate. Unlike tower's `RateLimit`,
/// every clone of the service shares one gate.
///
/// ```
/// # #[cfg(feature = "http")] {
/// use rate_gate::{Gate, GateLayer, Quota};
///
/// let gate = Gate::builder().quota(Quota::per_hour(5000)).concurrency(100).build();
/// let layer = GateLayer::new(gate).observe(rate_gate::HttpHeaders);
/// // ServiceBuilder::new().layer(layer).service(client)
/// # let _ = layer; }
/// ```
#[derive(Debug, Clone)]
pub struct GateLayer<O = NoFeedback> {
    gate: Gate,
    observe: O,
}

impl GateLayer {
    /// A layer over `gate` that reads no feedback.
    pub fn new(gate: Gate) -> Self {
        GateLayer {
            gate,
            observe: NoFeedback,
        }
    }
}

impl<O> GateLayer<O> {
    /// Reads each response's feedback with `observe` ([`HttpHeaders`] for
    /// `http::Response`s, or a closure).
    pub fn observe<P>(self, observe: P) -> GateLayer<P> {
        GateLayer {
            gate: self.gate,
            observe,
        }
    }
}

impl<S, O: Clone> tower_layer::Layer<S> for GateLayer<O> {
    type Service = GateService<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.gate.clone(),
            observe: self.observe.clone(),
            acquiring: None,
            permit: None,
        }
    }
}

type Acquiring = Pin<Box<dyn Future<Output = crate::Result<Permit<'static>>> + Send>>;

/// The service a [`GateLayer`] makes.
pub struct GateService<S, O = NoFeedback> {
    inner: S,
    gate: Gate,
    observe: O,
    acquiring: Option<Acquiring>,
    permit: Option<Permit<'static>>,
}

impl<S: fmt::Debug, O: fmt::Debug> fmt::Debug for GateService<S, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateService")
            .field("inner", &self.inner)
            .field("gate", &self.gate)
            .field("observe", &self.observe)
            .field("waiting", &self.acquiring.is_some())
            .field("permit", &self.permit)
            .finish()
    }
}

impl<S: Clone, O: Clone> Clone for GateService<S, O> {
    /// A clone shares the gate; a permit already reserved stays with the original.
    fn clone(&self) -> Self {
        GateService {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
            observe: self.observe.clone(),
            acquiring: None,
            permit: None,
        }
    }
}

impl<S, O, Request> tower_service::Service<Request> for GateService<S, O>
where
    S: tower_service::Service<Request>,
    S::Error: Into<BoxError>,
    O: ObserveResponse<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.permit.is_none() {
            let gate = &self.gate;
            let acquiring = self.acquiring.get_or_insert_with(|| {
                let gate = gate.clone();
                Box::pin(async move { gate.acquire_owned().await })
            });
            let outcome = ready!(acquiring.as_mut().poll(cx));
            self.acquiring = None;
            self.permit = Some(outcome?);
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.permit.take() {
            Some(permit) => ResponseFuture {
                inner: Some(self.inner.call(request)),
                permit: Some(permit),
                observe: self.observe.clone(),
            },
            // Tower's contract was broken (call without poll_ready): refuse, send nothing.
            None => ResponseFuture {
                inner: None,
                permit: None,
                observe: self.observe.clone(),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a [`GateService`]: holds the permit until the inner future ends.
    pub struct ResponseFuture<F, O> {
        #[pin]
        inner: Option<F>,
        permit: Option<Permit<'static>>,
        observe: O,
    }
}

impl<F, O> fmt::Debug for ResponseFuture<F, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}

impl<F, O, T, E> Future for ResponseFuture<F, O>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    O: ObserveResponse<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(crate::Error::NotReady.into()));
        };
        let outcome = ready!(inner.poll(cx)).map_err(Into::into);
        if let Some(permit) = this.permit.take()
            && let Ok(response) = &outcome
            && let Some(feedback) = this.observe.feedback(response)
        {
            permit.observe(feedback);
        }
        Poll::Ready(outcome)
    }
}
