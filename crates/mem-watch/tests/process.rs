//! The real process: descriptor and memory deltas, job peaks, leak verdicts. One test
//! function, so no other test changes the process while it measures.

use mem_watch::{JobGuard, LeakCheck, Probe};

#[test]
fn real_process_figures_jobs_and_leak_checks() {
    // Descriptors: opening 20 files adds exactly 20.
    let mut probe = Probe::new().unwrap();
    let before = probe.sample();
    let files: Vec<_> = (0..20)
        .map(|_| std::fs::File::open("/proc/self/statm").unwrap())
        .collect();
    let during = probe.sample();
    drop(files);
    let after = probe.sample();
    assert_eq!(during.fds.unwrap(), before.fds.unwrap() + 20);
    assert_eq!(after.fds, before.fds);

    // Resident memory: touching 64 MiB shows, freeing it goes back (glibc unmaps large
    // blocks).
    let big = vec![1u8; 64 << 20];
    let touched = probe.sample();
    drop(std::hint::black_box(big));
    let freed = probe.sample();
    assert!(
        touched.rss >= before.rss + (60 << 20),
        "{} -> {}",
        before.rss,
        touched.rss
    );
    assert!(freed.rss < touched.rss - (60 << 20));

    // This machine has the fields the snapshot promises.
    let snap = probe.snapshot();
    // The kernel batches RSS counters per thread (tens of pages), so VmHWM and a statm
    // reading can differ slightly; the peak must still cover the 64 MiB.
    assert!(
        snap.peak_rss.unwrap() + (1 << 20) >= touched.rss,
        "hwm {:?} touched {}",
        snap.peak_rss,
        touched.rss
    );
    assert!(snap.threads.unwrap() >= 1 && snap.mem_total.is_some());
    assert!(snap.effective_limit().is_some());

    // A job sees a peak between its start and end.
    let job = JobGuard::start("touch-48-mib").unwrap();
    let buf = vec![2u8; 48 << 20];
    drop(std::hint::black_box(buf));
    let report = job.finish();
    assert!(
        report.rss.peak >= report.rss.start + (44 << 20),
        "{report:?}"
    );
    assert!(report.rss.end < report.rss.peak);

    // Leak checks: a growing Vec leaks, a freed one does not; same for descriptors.
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let growing = LeakCheck::new(40)
        .run(|| kept.push(vec![3u8; 256 << 10]))
        .unwrap();
    assert!(growing.leaks_memory && !growing.leaks_fds, "{growing:?}");
    drop(kept);
    let clean = LeakCheck::new(40)
        .run(|| drop(std::hint::black_box(vec![4u8; 256 << 10])))
        .unwrap();
    assert!(!clean.leaks(), "{clean:?}");

    let mut open = Vec::new();
    let fd_leak = LeakCheck::new(40)
        .run(|| open.push(std::fs::File::open("/proc/self/statm").unwrap()))
        .unwrap();
    assert!(fd_leak.leaks_fds && fd_leak.fd_slope >= 0.99, "{fd_leak:?}");
    drop(open);
    let fd_clean = LeakCheck::new(40)
        .run(|| drop(std::fs::File::open("/proc/self/statm").unwrap()))
        .unwrap();
    assert!(!fd_clean.leaks_fds, "{fd_clean:?}");

    assert!(matches!(
        LeakCheck::new(2).run(|| ()),
        Err(mem_watch::Error::TooFewRounds { rounds: 2 })
    ));
}

#[test]
fn theil_sen_ignores_outliers() {
    let mut ys: Vec<f64> = (0..100).map(|i| 10.0 * i as f64).collect();
    ys[10] = 1e9;
    ys[50] = -1e9;
    assert!((mem_watch::theil_sen(&ys) - 10.0).abs() < 1e-9);
    assert_eq!(mem_watch::theil_sen(&[5.0; 50]), 0.0);
}
