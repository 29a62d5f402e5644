//! The umbrella's `Scope` against doing the same work bare, in the same run:
//!
//! - `scope_noop`: a scope around an operation that does nothing (the fixed cost).
//! - `scope_temp_dir`: a scope that creates and releases one temp dir, against creating
//!   and closing it directly. Target: at most 1.05x (under 5% overhead).

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

fn scopes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("leakproof/scope_noop");
    g.bench_function("ours", |b| {
        b.iter(|| rt.block_on(leakproof::scope("op", |_| async { Ok::<_, ()>(()) })))
    });
    g.bench_function("bare", |b| {
        b.iter(|| rt.block_on(async { Ok::<_, ()>(()) }))
    });
    g.finish();

    let mut g = c.benchmark_group("leakproof/scope_temp_dir");
    g.bench_function("ours", |b| {
        b.iter(|| {
            rt.block_on(leakproof::scope("op", |s| async move {
                s.temp_dir().map(|_| ()).map_err(|_| ())
            }))
        })
    });
    g.bench_function("bare", |b| {
        b.iter(|| {
            rt.block_on(async {
                let dir = scoped_temp::TempDir::new().unwrap();
                dir.close().await.unwrap();
            })
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = scopes }
criterion_main!(benches);
