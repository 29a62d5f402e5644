//! Output capture costs bounded memory, however much the child writes. Its own test
//! binary: it reads this process's peak resident size.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proc_reaper::Reaper;

/// `VmHWM` (peak resident) and `VmRSS` of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_ascii_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test]
async fn a_child_writing_hundreds_of_megabytes_costs_a_tail() {
    let reaper = Reaper::new().unwrap();
    let (_, rss_before) = memory_kib();

    // 200 MB of bytes, 4 KiB kept.
    let mut cmd = Command::new("head");
    cmd.args(["-c", "200000000", "/dev/zero"]);
    let outcome = reaper
        .command(cmd)
        .tail(4096)
        .spawn()
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(outcome.success());
    assert_eq!(outcome.stdout.total, 200_000_000);
    assert!(outcome.stdout.truncated);
    assert_eq!(outcome.stdout.tail.len(), 4096);

    // 5 million lines of `yes`, each handed to a callback, 4 KiB kept.
    let lines = Arc::new(AtomicU64::new(0));
    let counted = lines.clone();
    let outcome = reaper
        .command({
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "yes | head -n 5000000"]);
            cmd
        })
        .tail(4096)
        .on_line(64, move |_, line| {
            assert_eq!(line, b"y");
            counted.fetch_add(1, Ordering::Relaxed);
        })
        .spawn()
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(lines.load(Ordering::Relaxed), 5_000_000);
    assert_eq!(outcome.stdout.total, 10_000_000);
    assert!(outcome.stdout.tail.ends_with(b"y\ny\n"));

    let (peak, _) = memory_kib();
    assert!(
        peak < rss_before + 16 * 1024,
        "peak {peak} KiB vs {rss_before} KiB before: output was held in memory"
    );
}
