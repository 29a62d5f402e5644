//! `mem-watch` reads against its peers, on a small heap and with 4 GiB touched:
//!
//! - `sample` (resident size + fd count) vs `memory-stats` (default: reads smaps) and a
//!   `sysinfo` single-process refresh. Target: at most 2 us, flat with mapped memory.
//! - `snapshot` (the full reading) vs the same peers. Target: at most 10 us, flat.
//! - `fd_count` vs listing `/proc/self/fd`.
//!
//! Peers run in the same process on the same state, one after the other.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

fn reads(c: &mut Criterion, suffix: &str) {
    let mut probe = mem_watch::Probe::new().unwrap();
    let mut sys = System::new().unwrap();
    let pid = Pid::from_u32(std::process::id());
    let mut sysinfo_refresh = move || {
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        sys.process(pid).map(|p| p.memory())
    };

    let mut g = c.benchmark_group(format!("mem-watch/sample{suffix}"));
    g.bench_function("ours", |b| b.iter(|| probe.sample()));
    g.bench_function("memory-stats", |b| b.iter(memory_stats::memory_stats));
    g.bench_function("sysinfo", |b| b.iter(&mut sysinfo_refresh));
    g.finish();

    let mut g = c.benchmark_group(format!("mem-watch/snapshot{suffix}"));
    g.bench_function("ours", |b| b.iter(|| probe.snapshot()));
    g.bench_function("memory-stats", |b| b.iter(memory_stats::memory_stats));
    g.bench_function("sysinfo", |b| b.iter(&mut sysinfo_refresh));
    g.finish();

    let mut g = c.benchmark_group(format!("mem-watch/fd_count{suffix}"));
    g.bench_function("ours", |b| b.iter(|| probe.sample().fds));
    g.bench_function("readdir", |b| {
        b.iter(|| std::fs::read_dir("/proc/self/fd").map(|d| d.count()))
    });
    g.finish();
}

fn small_heap(c: &mut Criterion) {
    reads(c, "");
}

fn gib_mapped(c: &mut Criterion) {
    // 4 GiB allocated and touched: smaps-based readers slow down with it, statm does not.
    let big = vec![1u8; 4 << 30];
    std::hint::black_box(&big);
    reads(c, "_4gib_touched");
    drop(big);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = small_heap, gib_mapped }
criterion_main!(benches);
