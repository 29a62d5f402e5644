//! What the `metrics` feature costs on the hot paths, per call: a gate's `try_acquire`,
//! a warm cache `get`, one chunk through a capped stream (bounded-stream's meter).
//!
//! The same file is built twice by `cargo xtask bench`: without the feature its
//! functions are named `off`, with it (`--features metrics`) `ours`, with a Prometheus
//! recorder installed and every crate's `publish` run every 100 ms on a thread of its
//! own (a scrape, 150 times more often than Prometheus' default 15 s). The table shows
//! `ours` (on) against `off`, and the difference per call; target: at most 5 ns.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::{FutureExt, StreamExt};

/// The function name for this build.
const NAME: &str = if cfg!(feature = "metrics") {
    "ours"
} else {
    "off"
};

/// With the feature: the recorder, and a thread publishing every 100 ms for the
/// process's life.
fn recorder() {
    #[cfg(feature = "metrics")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("the bench's only recorder");
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    rate_gate::metrics::publish();
                    ttl_cache::metrics::publish();
                    black_box(handle.render());
                }
            });
        });
    }
}

fn gate(c: &mut Criterion) {
    recorder();
    let quota = rate_gate::Quota::per_second(1_000_000_000)
        .burst(1_000_000_000)
        .unwrap();
    let gate = rate_gate::Gate::builder()
        .name("bench")
        .quota(quota)
        .build();
    let mut g = c.benchmark_group("metrics-cost/gate_try_acquire");
    g.bench_function(NAME, |b| b.iter(|| gate.try_acquire().is_ok()));
    g.finish();
}

fn cache(c: &mut Criterion) {
    recorder();
    let cache: ttl_cache::Cache<u64, u64> = ttl_cache::Cache::builder()
        .max_entries(1024)
        .name("bench")
        .build();
    for k in 0..1024 {
        cache.insert(k, k);
    }
    let mut g = c.benchmark_group("metrics-cost/cache_get");
    let mut k = 0u64;
    g.bench_function(NAME, |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            cache.get(black_box(&k))
        })
    });
    g.finish();
}

fn meter(c: &mut Criterion) {
    recorder();
    // An endless stream of 64-byte chunks, capped far above what the bench takes.
    let chunk = Bytes::from_static(&[7u8; 64]);
    let source = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    let limits = bounded_stream::Limits::new(u64::MAX);
    let mut stream = Box::pin(bounded_stream::Bounded::new(source, &limits));
    let mut g = c.benchmark_group("metrics-cost/meter_chunk");
    g.bench_function(NAME, |b| {
        b.iter(|| stream.next().now_or_never().flatten().map(|r| r.is_ok()))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = gate, cache, meter }
criterion_main!(benches);
