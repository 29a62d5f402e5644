//! `GateLayer` in front of a tower service, under paused tokio time.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rate_gate::{Gate, GateLayer, HttpHeaders, Quota};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// A fake API: answers after `latency` with the headers `reply` gives for call number n.
#[derive(Clone)]
struct Api {
    calls: Arc<AtomicUsize>,
    latency: Duration,
    reply: fn(usize) -> http::Response<()>,
}

impl Service<u32> for Api {
    type Response = http::Response<()>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let (latency, reply) = (self.latency, self.reply);
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            Ok(reply(n))
        })
    }
}

fn ok(_: usize) -> http::Response<()> {
    http::Response::new(())
}

fn api(latency_ms: u64, reply: fn(usize) -> http::Response<()>) -> (Api, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let api = Api {
        calls: calls.clone(),
        latency: Duration::from_millis(latency_ms),
        reply,
    };
    (api, calls)
}

async fn send<S: Service<u32>>(svc: &mut S, request: u32) -> Result<S::Response, S::Error> {
    poll_fn(|cx| svc.poll_ready(cx)).await?;
    svc.call(request).await
}

#[tokio::test(start_paused = true)]
async fn every_clone_shares_one_gate() {
    let gate = Gate::builder()
        .quota(Quota::per_second(1).burst(2).unwrap())
        .build();
    let (api, calls) = api(0, ok);
    let mut a = GateLayer::new(gate.clone()).layer(api);
    let mut b = a.clone();
    let start = Instant::now();
    send(&mut a, 1).await.unwrap();
    send(&mut b, 2).await.unwrap();
    // The burst of two is spent across both clones: the third waits a second.
    send(&mut b, 3).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(gate.stats().granted, 3);
}

fn exhausted(_: usize) -> http::Response<()> {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1800;
    http::Response::builder()
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", reset.to_string())
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_response_headers_reach_the_gate() {
    let gate = Gate::builder().concurrency(10).build();
    let (api, calls) = api(0, exhausted);
    let mut svc = GateLayer::new(gate.clone()).observe(HttpHeaders).layer(api);
    send(&mut svc, 1).await.unwrap();
    // Remaining: 0 until the reset, half an hour away (epoch seconds: up to 1 s early).
    let start = Instant::now();
    send(&mut svc, 2).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited > Duration::from_secs(1798) && waited <= Duration::from_secs(1800),
        "{waited:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_permit_is_held_until_the_response_arrives() {
    let gate = Gate::builder().concurrency(1).build();
    let (api, _) = api(500, ok);
    let svc = GateLayer::new(gate.clone()).layer(api);
    let start = Instant::now();
    let finished: Vec<_> = (0..3)
        .map(|i| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                send(&mut svc, i).await.unwrap();
                start.elapsed()
            })
        })
        .collect();
    let mut times = Vec::new();
    for f in finished {
        times.push(f.await.unwrap());
    }
    times.sort();
    let ms = |n| Duration::from_millis(n);
    assert_eq!(times, [ms(500), ms(1000), ms(1500)]);
    assert_eq!(gate.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn call_without_poll_ready_sends_nothing() {
    let gate = Gate::builder().build();
    let (api, calls) = api(0, ok);
    let mut svc = GateLayer::new(gate).layer(api);
    let err = svc.call(1).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<rate_gate::Error>(),
        Some(rate_gate::Error::NotReady)
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_service_dropped_while_waiting_leaves_the_line() {
    let gate = Gate::builder().concurrency(1).build();
    let held = gate.acquire().await.unwrap();
    let (api, _) = api(0, ok);
    let mut svc = GateLayer::new(gate.clone()).layer(api);
    // Waiting for the slot: poll once, then give up.
    let ready = poll_fn(|cx| Poll::Ready(svc.poll_ready(cx).is_pending())).await;
    assert!(ready, "waits while the only slot is held");
    drop(svc);
    drop(held);
    assert!(gate.try_acquire().is_ok(), "nobody left in line");
}
