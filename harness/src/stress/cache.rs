//! `ttl-cache` scenario: a GitHub-like read workload through the cache, in simulated
//! time. 100 workers issue GETs over 20,000 endpoints picked Zipf(1.0) (a few repos'
//! labels and issues are read all the time, most rarely); labels live 30 minutes, other
//! reads 5 minutes; 10,000 entries held. Each miss is one API call taking 200 ms.
//! Reported: hit rate (target above 70%) and API calls saved against no cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ttl_cache::Cache;

use super::{Profile, Scenario};
use crate::Result;

const ENDPOINTS: u64 = 20_000;
const WORKERS: u64 = 100;

pub fn scenarios(profile: Profile) -> Result<Vec<Scenario>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    Ok(vec![runtime.block_on(github_reads(profile))?])
}

/// A xorshift generator per worker: reproducible traces, no dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn github_reads(profile: Profile) -> Result<Scenario> {
    let per_worker = profile.pick(2_000, 300) as u64;
    let cache: Cache<u64, Arc<str>> = Cache::builder()
        .max_entries(10_000)
        .ttl(Duration::from_secs(300))
        .build();
    let mut cdf = Vec::with_capacity(ENDPOINTS as usize);
    let mut sum = 0.0;
    for rank in 1..=ENDPOINTS {
        sum += 1.0 / rank as f64;
        cdf.push(sum);
    }
    let cdf = Arc::new(cdf);
    let calls = Arc::new(AtomicU64::new(0));
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (cache, cdf, calls) = (cache.clone(), cdf.clone(), calls.clone());
        tasks.spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            for _ in 0..per_worker {
                let x = rng.unit() * cdf[cdf.len() - 1];
                let endpoint = cdf.partition_point(|c| *c < x) as u64;
                // Every 10th endpoint is a repository's labels: kept 30 minutes.
                let ttl = if endpoint.is_multiple_of(10) {
                    1800
                } else {
                    300
                };
                let calls = calls.clone();
                let body = cache
                    .get_or_try_insert_with_ttl(endpoint, || async move {
                        calls.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let body: Arc<str> = format!("{{\"endpoint\":{endpoint}}}").into();
                        Ok::<_, std::io::Error>((body, Duration::from_secs(ttl)))
                    })
                    .await;
                if body.is_err() {
                    return Err("a load failed");
                }
                // Think time between requests.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(())
        });
    }
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        failed += usize::from(!matches!(done, Ok(Ok(()))));
    }
    let simulated = started.elapsed();
    let requests = WORKERS * per_worker;
    let calls = calls.load(Ordering::Relaxed);
    let stats = cache.stats();
    let saved = 1.0 - calls as f64 / requests as f64;

    let mut s = Scenario::new(format!(
        "ttl-cache: {requests} GitHub-like GETs over {ENDPOINTS} Zipf endpoints, {WORKERS} workers, 10,000 held"
    ));
    s.note(format!(
        "{:.0} simulated minutes; {} API calls instead of {requests}; {} expired, {} evicted for capacity",
        simulated.as_secs_f64() / 60.0,
        calls,
        stats.expired,
        stats.evicted_capacity
    ));
    s.check(
        "every request answered",
        failed == 0,
        format!("{failed} failed"),
    );
    s.check(
        "hit rate > 70%",
        stats.hit_rate() > 0.70,
        format!(
            "{:.1}% ({} hits, {} misses)",
            stats.hit_rate() * 100.0,
            stats.hits,
            stats.misses
        ),
    );
    s.check(
        "API calls saved > 50%",
        saved > 0.50,
        format!("{:.1}%", saved * 100.0),
    );
    s.check(
        "one call per miss that loaded (single flight)",
        calls == stats.loads,
        format!("{calls} calls, {} loads", stats.loads),
    );
    Ok(s)
}
