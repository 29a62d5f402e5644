//! `ttl-cache` against `moka` (sync), `quick_cache` and a `Mutex<lru::LruCache>`, in the
//! same run on the same keys:
//!
//! - `get_warm`: a hit on a 10,000-entry cache, one thread. Targets: at least 3x moka's
//!   throughput, at least 0.7x quick_cache's, faster than `Mutex<lru>`; the last two
//!   judged by paired ratios (alternating batches of 200,000 gets).
//! - `get_warm_2threads`: the same from two threads at once; time per get. Targets:
//!   at least 1.0x quick_cache's throughput, faster than `Mutex<lru>`; judged by paired
//!   ratios (alternating rounds of 1,000,000 gets on each thread).
//! - `zipf_90_10`: 90% gets (a miss inserts) and 10% inserts over Zipf(1.0) keys from a
//!   100,000-key space, 10,000 entries held.
//!
//! Not times, so written beside the table (`target/criterion/ttl-cache-extra.md`): the
//! hit ratio of each cache on three traces (Zipf; Zipf with one-off scans; a loop
//! slightly larger than the cache), and bytes per entry (resident memory grown by a
//! million `u64 -> u64` entries, divided by the count, less the 16 bytes of the key and
//! value). Targets: every hit ratio at least moka's and quick_cache's; at most 48
//! bytes per entry.
//!
//! Where the time goes in a `get_warm` hit (`perf record`, 2026-12-03, the 2-core VM
//! behind `BENCHMARKS.md`): about 63% on the shard's read lock, its two atomic
//! read-modify-writes (32.5% taking it, 30.3% releasing it), and 6.8% on the coarse
//! clock read an entry with a TTL needs; the rest is the hash, the table probe, the
//! read count and the hit counted in this thread's cell. `Mutex<LruCache>` pays two
//! atomic operations as well, with no clock and no counts, and measures 1.18 to 1.26x
//! faster on one thread; from two threads it is 3 to 5x slower than ours. quick_cache's
//! hit takes two as well (parking_lot's read lock) in about 14 ns against our 20:
//! the gap is our own work around the lock, and going under `Mutex<LruCache>` would
//! take a read path without a lock.
//!
//! Two more findings (2026-12-03, the same VM, a standalone loop of alternating batches
//! of 200,000 gets): within one process our hit switched between about 32 ns and 54 to
//! 75 ns for stretches of a few batches, while `Mutex<LruCache>`'s stayed at 28 to 40
//! ns, so a run's ratio depends on the stretches it lands in. Without a TTL (no clock
//! read) ours was 25 ns against lru's 31 in the fast stretches and 43 against 37 in the
//! slow ones: the coarse clock read (5 to 9 ns alone in a tight loop) is the rest of
//! the gap. Shrinking a `u64 -> u64` slot from 48 to 32 bytes (the last read and the
//! weight moved beside it) measured 0.979 to 1.023x the old layout on one thread and
//! 0.981 to 1.012x on two, in the same processes: it saves memory (39 to 23 bytes an
//! entry), not time.
//!
//! Later that day: the hit count (a thread-local list borrowed and scanned for this
//! cache's cell) measured about 5% of a one-thread hit: a copy of the crate that
//! counted nothing took 0.87x the time, where two identical copies read 0.92x in the
//! same loop (one cache each; the placement of its memory biases that loop). The
//! first thread to count on a cache now finds its cell in the cache itself, by the
//! address of a thread-local: 0.92x the time on one thread (paired, six caches of
//! each, twice), 0.93 to 0.98x on two. This bench's run right after: 1.153x
//! `Mutex<lru>` (1.022-1.190) and 1.472x quick_cache (1.469-1.564) on one thread.
//! Then the coarse clock's conversion to nanoseconds without checked, saturating
//! steps (see `clock.rs`): 0.95x the time on one thread (paired, six caches of each,
//! twice; two identical copies read 0.99 and 1.01x), and this bench 1.167x
//! `Mutex<lru>` (1.101-1.381) and 1.407x quick_cache (1.406-1.614).
//!
//! The two-thread rows depend on where the VM's two vCPUs sit: on 2026-12-02 and -03
//! every cache's two-thread get took about twice its one-thread time (in the first of
//! the two runs above, ours 35.0 then 82.5 ns, quick_cache 23.9 then 52.4 ns), as if
//! the two shared a core, and ours/quick_cache read 1.36 to 1.38x, against 0.93x
//! (two threads: ours 35.2 ns, quick_cache 67.5 ns) in the run before.
//!
//! The paired loop once called each side through a `dyn FnMut` as well as through
//! `Bench`; since it runs each side in a loop of its own (see
//! `leakproof_benches::paired`), one call through `Bench` per get is left on both
//! sides. The first run with it (2026-12-03, 3 runs, rounds ranging 0.8 to 2.8x within
//! a run on a noisy evening): 1.154x `Mutex<lru>` (1.080-1.457), 1.483x quick_cache
//! (1.456-1.510, against 1.407x the run before: over the 1.43 the target allows), two
//! threads 1.233x quick_cache (1.168-1.392) and 0.285x `Mutex<lru>`.
//!
//! 2026-12-04, after the admission rule turned keys away instead of sending them to
//! small, and a default shard held at least 512 entries (16 shards here, was 32): loop
//! 90.35% in all three runs (moka 89.39%, 87.47-89.88), Zipf 79.20%, scans 71.00%. The
//! same run's hits were slow on every side (`Mutex<lru>` 39.1 ns against 28.5 ns the
//! run before, ours 43.9 against 30.7): 1.415x `Mutex<lru>` (1.054-1.420), 1.560x
//! quick_cache (1.375-1.586), two threads 1.336x quick_cache (1.293-1.361). A
//! standalone A/B of two identical copies of the crate read 0.919x (rounds 0.750 to
//! 1.098) in the same hour.
//!
//! Then the first four threads to count on a cache got cells in the cache itself
//! (was one): in the A/B above, each order run twice, the new code took 0.77 to 0.92x
//! the old code's time with the new code in the second copy and 1.03 to 1.14x with it
//! in the first (the second copy runs about 8% faster whatever it holds). Paired by
//! thread count, the two orders put it at 0.89 to 0.97x on one fresh thread (which
//! now counts in the cache instead of a thread-local list) and 1.00 to 1.03x on two:
//! no gain measured there. 16 shards against 32 on two threads, in either copy: 0.90
//! to 1.0x, as two identical caches read. This bench right after:
//! 1.406x quick_cache (1.399-1.475; the target allows 1.429), 1.204x `Mutex<lru>`
//! (1.157-1.427), two threads 1.323x quick_cache (1.125-1.354) and 0.302x
//! `Mutex<lru>`.
//!
//! Instructions per hit (callgrind, 100,000 more gets, the loop's own included;
//! rustix built on libc for the tool, whose vDSO lookup valgrind cannot follow): ours
//! 153 with a TTL and 130 without (the clock read), quick_cache 104, `Mutex<lru>` 86.
//! Of ours, about 9 count the hit in this thread's cell.

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const HELD: usize = 10_000;
const SPACE: u64 = 100_000;

/// One interface over the four caches.
trait Bench: Sync {
    fn get(&self, k: u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64);
}

struct Ours(ttl_cache::Cache<u64, u64>);
struct Moka(moka::sync::Cache<u64, u64>);
struct Quick(quick_cache::sync::Cache<u64, u64>);
struct Lru(Mutex<lru::LruCache<u64, u64>>);

impl Bench for Ours {
    fn get(&self, k: u64) -> Option<u64> {
        self.0.get(&k)
    }
    fn insert(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
}
impl Bench for Moka {
    fn get(&self, k: u64) -> Option<u64> {
        self.0.get(&k)
    }
    fn insert(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
}
impl Bench for Quick {
    fn get(&self, k: u64) -> Option<u64> {
        self.0.get(&k)
    }
    fn insert(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
}
impl Bench for Lru {
    fn get(&self, k: u64) -> Option<u64> {
        self.0.lock().unwrap().get(&k).copied()
    }
    fn insert(&self, k: u64, v: u64) {
        self.0.lock().unwrap().put(k, v);
    }
}

/// The four caches, each holding at most `held` entries, with a 5-minute TTL where
/// the cache has one.
fn caches(held: usize) -> Vec<(&'static str, Box<dyn Bench>)> {
    let ttl = Duration::from_secs(300);
    vec![
        (
            "ours",
            Box::new(Ours(
                ttl_cache::Cache::builder()
                    .max_entries(held as u64)
                    .ttl(ttl)
                    .build(),
            )),
        ),
        (
            "moka",
            Box::new(Moka(
                moka::sync::Cache::builder()
                    .max_capacity(held as u64)
                    .time_to_live(ttl)
                    .build(),
            )),
        ),
        (
            "quick_cache",
            Box::new(Quick(quick_cache::sync::Cache::new(held))),
        ),
        (
            "mutex_lru",
            Box::new(Lru(Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(held).unwrap(),
            )))),
        ),
    ]
}

/// A xorshift generator: the same trace for every cache, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` keys drawn from Zipf(1.0) over `space` keys.
fn zipf_trace(n: usize, space: u64, seed: u64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(space as usize);
    let mut sum = 0.0;
    for rank in 1..=space {
        sum += 1.0 / rank as f64;
        cdf.push(sum);
    }
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let x = rng.unit() * sum;
            cdf.partition_point(|c| *c < x) as u64
        })
        .collect()
}

/// The Zipf trace with one-off scans making a tenth of the gets: after every 9,000
/// Zipf gets, 1,000 keys never seen before or after.
fn scan_trace(n: usize, space: u64, seed: u64) -> Vec<u64> {
    let zipf = zipf_trace(n, space, seed);
    let mut fresh = 1u64 << 40;
    let mut out = Vec::with_capacity(n);
    for chunk in zipf.chunks(9_000) {
        out.extend_from_slice(chunk);
        for _ in 0..1_000 {
            out.push(fresh);
            fresh += 1;
        }
        if out.len() >= n {
            break;
        }
    }
    out.truncate(n);
    out
}

/// A loop over `held` + 10% keys, round and round: plain LRU misses every get.
fn loop_trace(n: usize, held: usize) -> Vec<u64> {
    let keys = (held + held / 10) as u64;
    (0..n as u64).map(|i| i % keys).collect()
}

fn get_warm(c: &mut Criterion) {
    let caches = caches(HELD);
    let keys: Vec<u64> = (0..HELD as u64).collect();
    for (_, cache) in &caches {
        for &k in &keys {
            cache.insert(k, k);
        }
    }
    let mut g = c.benchmark_group("ttl-cache/get_warm");
    for (name, cache) in &caches {
        let mut i = 0usize;
        g.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 7919) % keys.len();
                cache.get(keys[i])
            })
        });
    }
    g.finish();
    // The ratios that judge the one-thread targets: per-round ratios of alternating
    // batches (the medians above moved by up to 50% between runs here).
    if leakproof_benches::selected("ttl-cache/get_warm") {
        let (ours, peers) = caches.split_first().unwrap();
        for (peer, cache) in peers.iter().filter(|(name, _)| *name != "moka") {
            let (mut i, mut j) = (0usize, 0usize);
            leakproof_benches::paired(
                "ttl-cache/get_warm",
                peer,
                200_000,
                || {
                    i = (i + 7919) % keys.len();
                    ours.1.get(keys[i])
                },
                || {
                    j = (j + 7919) % keys.len();
                    cache.get(keys[j])
                },
            );
        }
    }

    let mut g = c.benchmark_group("ttl-cache/get_warm_2threads");
    for (name, cache) in &caches {
        let cache: &dyn Bench = cache.as_ref();
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| two_threads(cache, &keys, iters))
        });
    }
    g.finish();
    // As above, the ratio that judges the target from paired rounds: each a run of
    // 1,000,000 gets on each of the two threads (so that starting the two threads,
    // which the round's time includes, is under 1% of it).
    if leakproof_benches::selected("ttl-cache/get_warm_2threads") {
        let (ours, peers) = caches.split_first().unwrap();
        for (peer, cache) in peers.iter().filter(|(name, _)| *name != "moka") {
            leakproof_benches::paired(
                "ttl-cache/get_warm_2threads",
                peer,
                1,
                || two_threads(ours.1.as_ref(), &keys, 1_000_000),
                || two_threads(cache.as_ref(), &keys, 1_000_000),
            );
        }
    }
}

/// Two threads each get `iters` keys from `cache` at once; the wall time from the
/// moment both start until both are done.
fn two_threads(cache: &dyn Bench, keys: &[u64], iters: u64) -> Duration {
    let barrier = Barrier::new(3);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                let mut i = t as usize * 5000;
                for _ in 0..iters {
                    i = (i + 7919) % keys.len();
                    std::hint::black_box(cache.get(keys[i]));
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn zipf_mix(c: &mut Criterion) {
    let trace = zipf_trace(1 << 20, SPACE, 0x9e37_79b9_7f4a_7c15);
    let caches = caches(HELD);
    let mut g = c.benchmark_group("ttl-cache/zipf_90_10");
    for (name, cache) in &caches {
        let mut i = 0usize;
        g.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 1) & (trace.len() - 1);
                let k = trace[i];
                // One in ten is a write; a read that misses writes too.
                if i.is_multiple_of(10) || cache.get(k).is_none() {
                    cache.insert(k, k);
                }
            })
        });
    }
    g.finish();
    // A filtered run (`cargo xtask bench -- FILTER`) that measures no ttl-cache group
    // must not rewrite the hit-ratio table either.
    if leakproof_benches::selected("ttl-cache/hit_ratio") {
        extra();
    }
}

/// Resident memory now, in bytes.
fn rss() -> u64 {
    memory_stats::memory_stats().map_or(0, |m| m.physical_mem as u64)
}

fn hit_ratio(cache: &dyn Bench, trace: &[u64]) -> f64 {
    let mut hits = 0usize;
    for &k in trace {
        if cache.get(k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, k);
        }
    }
    hits as f64 / trace.len() as f64
}

/// Bytes per entry of the cache `make` builds. Every cache measured is kept alive (in
/// `keep`) until all are measured: memory freed by one would be reused by the next, and
/// it would look free.
fn overhead<C: Bench + 'static>(
    make: impl FnOnce(usize) -> C,
    keep: &mut Vec<Box<dyn Bench>>,
) -> f64 {
    const N: usize = 1_000_000;
    let before = rss();
    let cache = make(N);
    for k in 0..N as u64 {
        cache.insert(k, k);
    }
    let grown = rss().saturating_sub(before);
    keep.push(Box::new(cache));
    grown as f64 / N as f64 - 16.0
}

/// Hit ratios on three traces and bytes per entry, for the report.
fn extra() {
    let traces = [
        ("Zipf", zipf_trace(2_000_000, SPACE, 42)),
        ("Zipf + 10% scans", scan_trace(2_000_000, SPACE, 43)),
        ("loop of 11,000", loop_trace(2_000_000, HELD)),
    ];
    let mut out = String::from("### ttl-cache: hit ratio and memory\n\n");
    out.push_str(
        "Hit ratio on three traces of 2,000,000 gets, 10,000 entries held (a miss \
         inserts): Zipf(1.0) over 100,000 keys; the same with one-off scans making 10% of \
         the gets (1,000 new keys after every 9,000 Zipf gets); a loop over 11,000 keys. \
         Target: ours at least moka's and quick_cache's on each. Bytes per entry: \
         resident memory grown by 1,000,000 `u64 -> u64` entries, per entry, less the 16 \
         bytes of key and value (target: at most 48).\n\n",
    );
    out.push_str("| cache |");
    for (name, _) in &traces {
        let _ = write!(out, " {name} |");
    }
    out.push_str(" bytes per entry |\n|---|---|---|---|---|\n");
    let ttl = Duration::from_secs(300);
    let keep = &mut Vec::new();
    let per_entry = [
        (
            "ours",
            overhead(
                |n| {
                    Ours(
                        ttl_cache::Cache::builder()
                            .max_entries(n as u64)
                            .ttl(ttl)
                            .build(),
                    )
                },
                keep,
            ),
        ),
        (
            "moka",
            overhead(
                |n| {
                    let c = moka::sync::Cache::builder()
                        .max_capacity(n as u64)
                        .time_to_live(ttl)
                        .build();
                    Moka(c)
                },
                keep,
            ),
        ),
        (
            "quick_cache",
            overhead(|n| Quick(quick_cache::sync::Cache::new(n)), keep),
        ),
        (
            "mutex_lru",
            overhead(
                |n| {
                    Lru(Mutex::new(lru::LruCache::new(
                        NonZeroUsize::new(n).unwrap(),
                    )))
                },
                keep,
            ),
        ),
    ];
    drop(std::mem::take(keep));
    for (name, bytes) in per_entry {
        let _ = write!(out, "| `{name}` |");
        for (_, trace) in &traces {
            // A fresh cache per trace, so that no trace warms the next.
            let (_, cache) = caches(HELD)
                .into_iter()
                .find(|(n, _)| *n == name)
                .expect("every cache measured is in `caches`");
            let ratio = hit_ratio(cache.as_ref(), trace);
            let _ = write!(out, " {:.2}% |", ratio * 100.0);
        }
        let _ = writeln!(out, " {bytes:.0} |");
    }
    println!("{out}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("ttl-cache-extra.md"), out);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = get_warm, zipf_mix }
criterion_main!(benches);
