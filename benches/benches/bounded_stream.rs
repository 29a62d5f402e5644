//! `bounded-stream` side by side with what it wraps, on the same input in one run:
//!
//! - `pass_through`: a capped stream vs the same stream uncapped (target: at least
//!   0.98x the throughput, judged by the paired ratio of alternating batches);
//!   `pass_through_timed` adds idle, deadline and rate limits.
//! - `gzip_decode`: capped decompression vs plain async-compression (at least 0.95x).
//! - `line_scan`: `scan_lines` vs a plain `memchr` line counter (context), in memory and
//!   on a page-cached file (`line_scan_file`, for the absolute GB/s).
//! - On a page-cached 1 GiB log, 64 KiB blocking reads: `find_line_file` and
//!   `find_file` vs a bare `memmem::find_iter` (at least 0.9x the throughput, judged by
//!   the paired ratio of alternating runs), `find_line_numbered_file` (the line search
//!   with line numbers, context), and
//!   `scan_lines_file` vs a bare memchr loop visiting each newline (at least 0.95x,
//!   also judged by the paired ratio).
//!
//! Paired measurement, as in `scoped_temp.rs`: each function's timing loop alternates
//! its own run with an untimed run of the other side, so drift in the machine's speed
//! (frequency, the other tenant's load) lands on both sides alike.
//!
//! Where the time goes in `pass_through_timed`: with a deadline, each chunk that comes
//! without a wait reads the kernel's coarse clock (on a current-thread runtime tokio's
//! timer cannot fire while such a stream is read without yielding). The reading takes
//! about 2.5 ns in a loop but about 3% here, per 16 KiB chunk copied at 30 GB/s (the
//! copy evicts the clock's page between chunks): a variant reading the clock and
//! ignoring it measured 1.051 to 1.061x, one without it 1.019 to 1.025x, in the same
//! session. A later 3-run set (2026-12-03, same code) measured `pass_through_timed` at
//! 1.004 to 1.011x and the untimed `pass_through` at 1.019 to 1.042x (0.990 to 1.012x
//! in the set before): on this machine the spread between sets is larger than the 2%
//! the targets allow, and the two rows trade places.
//!
//! Where the time went in `pass_through` (`perf annotate`, 2026-12-03): in `Bounded`'s
//! `poll_next`, two 16-byte loads of the chunk from a stack temporary written moments
//! before in 8-byte pieces (store-to-load forwarding fails, and the load waits for the
//! stores), about 15 ns per chunk when measured on chunks that are not copied (29 ns a
//! chunk against 14 ns bare), 2 to 3% of a 16 KiB copy. Handing a chunk within the
//! limits straight back took that to 4.6 ns, and `Bounded`'s share of a copying
//! pass-through's samples from 1.8% (and 0.9% in the runtime's `enter` that called
//! it, 0.1% after) to 0.5%. Five runs before: `pass_through` 1.027x
//! (1.014 to 1.035), `pass_through_timed` 1.026x (1.012 to 1.069); after, in
//! `BENCHMARKS.md`. Each round's ratio ranges from about 0.6 to 1.5x here, so the
//! medians of single runs move by a few percent.
//!
//! Sets of five runs on 2026-12-03, the same code throughout: in the afternoon
//! `pass_through` 1.008x (0.980-1.041) and `pass_through_timed` 1.014x (1.000-1.044),
//! both within the target; in the evening, with the machine running both sides about
//! 1.6x slower, 1.018x (1.000-1.033) and 1.046x (1.039-1.063), then 1.027x
//! (1.011-1.046) and 1.037x (1.027-1.047), both over it. The paired loop changed in
//! between (each side a loop of its own, see `leakproof_benches::paired`); built both
//! ways and alternated, the old loop read 1.009 to 1.021x and 1.032 to 1.047x, the new
//! 1.004 to 1.018x and 0.992 to 1.049x: the loop is not what moved.
//!
//! Late that night (2026-12-04, same code) a fourth set: `pass_through` 1.018x
//! (0.988-1.040), `pass_through_timed` 1.046x (1.012-1.072), now in `BENCHMARKS.md`.
//! So of the four sets of this code, `pass_through` met its target in three, and
//! `pass_through_timed` in one. In a set before it, a build whose `Bounded::poll_next`
//! was inlined into the caller's loop, with the rest out of line (fewer instructions a
//! chunk: 58 to 78 over the uncapped loop against 85, callgrind, 4 MiB), read 1.008x
//! and 1.037x: no better, and it was not kept. What that experiment showed instead is
//! how much the code around a pass-through decides it: in a standalone loop over a
//! 4 MiB, cache-resident stream (31 alternating rounds of 80 streams, the old and the
//! new code in one process), each of two variants of `Bounded` read 0.97 to 0.99x the
//! old code's time in one build and 1.05 to 1.09x in another that differed only in the
//! harness's own code. The compiler moves the chunk between the source's result and
//! ours in 8-byte or 16-byte pieces depending on what it inlined, and a 16-byte load of
//! what was stored in 8-byte pieces waits for the stores (`perf annotate`, 64 MiB: the
//! function holding the inlined path took 3% of the samples, most of them on such
//! loads). A difference of 2% here is within what a rebuild moves.
//!
//! Where the time goes in `find_line_numbered_file` (`perf record`, 2026-12-03, the
//! 2-core VM behind `BENCHMARKS.md`, when `find_line` still numbered its match; shares
//! of the search's samples): about 56% in the kernel (mostly copying the page cache into
//! the read buffer) and 34% in `memmem`, both of which the bare loop pays too, 9% in
//! bytecount's newline count, which numbers the line of a hit and must see every byte
//! before it, and 2% moving the incomplete line. Hence `find_line` counts no lines
//! unless asked (`LineFinder::line_numbers`), as ripgrep counts only under `-n`.
//! Timed in memory (a 256 MiB log read through `&[u8]`, 64 KiB reads, nine rounds),
//! the bare loop took 11.8 to 12.5 ms, the same loop plus bytecount's count 14.9 to
//! 16.0 ms, and `find_line` 15.5 to 16.0 ms: the count is the gap, about 12.8 ms per
//! GiB, which on top of the page-cached file's 58.6 ms is the 1.19 to 1.23x measured.
//! Searching and counting a block at a time so that the count reads from the L1 cache
//! (8 KiB blocks) measured 1.26 to 1.29x against 1.22x for the whole read at once.

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use bounded_stream::{
    Codec, DecodeLimits, Limits, LineFinder, decode, scan_lines, scan_lines_blocking,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::{ReaderStream, StreamReader};

const CHUNK: usize = 16 * 1024;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A CI-like log: about 80-byte lines.
fn log(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 128);
    let mut i = 0u64;
    while out.len() < size {
        let line = format!(
            "2026-11-23T12:00:{:02}Z [build] step {i}: compiling crate-{} ... ok\n",
            i % 60,
            i % 997
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

/// Times `timed` `iters` times, each followed by one untimed run of `other`.
fn paired<A, B>(iters: u64, timed: &dyn Fn() -> A, other: &dyn Fn() -> B) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        std::hint::black_box(timed());
        total += start.elapsed();
        std::hint::black_box(other());
    }
    total
}

/// Benches `ours` against each peer in `group`, paired with the first peer.
fn compare(
    c: &mut Criterion,
    group: &str,
    bytes: u64,
    ours: &dyn Fn() -> u64,
    peers: &[(&str, &dyn Fn() -> u64)],
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(bytes));
    let first_peer = peers[0].1;
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| paired(iters, ours, first_peer))
    });
    for (name, peer) in peers {
        g.bench_function(*name, |b| b.iter_custom(|iters| paired(iters, *peer, ours)));
    }
    g.finish();
}

/// Drains a stream of byte chunks, returning the byte count.
async fn drain<S, E>(stream: S) -> u64
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>>,
    E: std::fmt::Debug,
{
    let mut stream = std::pin::pin!(stream);
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len() as u64;
    }
    n
}

fn pass_through(c: &mut Criterion) {
    let rt = rt();
    let data = log(64 << 20);
    let cap = Limits::new(1 << 30);
    let timed = Limits::new(1 << 30)
        .idle_timeout(Duration::from_secs(30))
        .deadline(Duration::from_secs(600))
        .min_rate(1024, Duration::from_secs(10), Duration::from_secs(5));
    for (name, limits) in [
        ("bounded-stream/pass_through", cap),
        ("bounded-stream/pass_through_timed", timed),
    ] {
        // The source copies 16 KiB per chunk, like a socket or file read would.
        let ours = || {
            rt.block_on(drain(bounded_stream::Bounded::new(
                ReaderStream::with_capacity(&data[..], CHUNK),
                &limits,
            )))
        };
        let uncapped = || rt.block_on(drain(ReaderStream::with_capacity(&data[..], CHUNK)));
        compare(
            c,
            name,
            data.len() as u64,
            &ours,
            &[("uncapped", &uncapped)],
        );
        // The ratio that judges the target: per-round ratios of alternating batches.
        // The two medians above, each about 2 to 8 ms, drifted apart by up to 30%
        // between runs here, more than the difference measured.
        if leakproof_benches::selected(name) {
            leakproof_benches::paired(name, "uncapped", 5, ours, uncapped);
        }
    }
}

fn gzip_decode(c: &mut Criterion) {
    let rt = rt();
    let text = log(32 << 20);
    let mut gz = async_compression::tokio::write::GzipEncoder::new(Vec::new());
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        gz.write_all(&text).await.unwrap();
        gz.shutdown().await.unwrap();
    });
    let compressed = bytes::Bytes::from(gz.into_inner());
    let wire = || {
        let chunks: Vec<_> = compressed
            .chunks(CHUNK)
            .map(|c| Ok::<_, std::io::Error>(compressed.slice_ref(c)))
            .collect();
        futures_util::stream::iter(chunks)
    };
    let budget = DecodeLimits::new(Limits::new(1 << 30)).max_ratio(100, 100 * 1024);
    let ours = || rt.block_on(drain(decode(wire(), Codec::Gzip, &budget)));
    let plain = || {
        let decoder =
            async_compression::tokio::bufread::GzipDecoder::new(StreamReader::new(wire()));
        rt.block_on(drain(ReaderStream::with_capacity(
            decoder,
            bounded_stream::DECODE_CHUNK,
        )))
    };
    compare(
        c,
        "bounded-stream/gzip_decode",
        text.len() as u64,
        &ours,
        &[("async-compression", &plain)],
    );
}

/// The peer: count lines with memchr, reading in the same 64 KiB chunks.
async fn memchr_count(mut reader: impl tokio::io::AsyncRead + Unpin) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = 0;
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            return lines;
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}

/// Visits every newline one by one, reading in the same 64 KiB chunks.
async fn memchr_visit(mut reader: impl tokio::io::AsyncRead + Unpin) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = 0;
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            return lines;
        }
        for _ in memchr::memchr_iter(b'\n', &buf[..n]) {
            lines += 1;
        }
    }
}

fn line_scan(c: &mut Criterion) {
    let rt = rt();
    let data = log(256 << 20);
    let ours = || {
        rt.block_on(async {
            let mut lines = 0u64;
            scan_lines(&data[..], 64 * 1024, |_| {
                lines += 1;
                ControlFlow::Continue(())
            })
            .await
            .unwrap();
            lines
        })
    };
    let counter = || rt.block_on(memchr_count(&data[..]));
    // Context, not the target's peer: visiting each newline, the least any per-line API
    // must do (memchr's `count()` is vectorised and never stops at a line).
    let visitor = || rt.block_on(memchr_visit(&data[..]));
    compare(
        c,
        "bounded-stream/line_scan",
        data.len() as u64,
        &ours,
        &[("memchr", &counter), ("memchr-per-line", &visitor)],
    );

    // The same on a file in the page cache, with blocking reads: the absolute speed.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&data).unwrap();
    file.flush().unwrap();
    let path = file.path().to_path_buf();
    let ours = || {
        let mut lines = 0u64;
        scan_lines_blocking(std::fs::File::open(&path).unwrap(), 64 * 1024, |_| {
            lines += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        lines
    };
    let counter = || {
        let mut f = std::fs::File::open(&path).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut lines = 0u64;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break lines;
            }
            lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        }
    };
    compare(
        c,
        "bounded-stream/line_scan_file",
        data.len() as u64,
        &ours,
        &[("memchr", &counter)],
    );
}

/// "Does this 1 GiB log contain `warning:`?" on a page-cached file, with blocking reads
/// of 64 KiB: `find_line` and `find` against a bare `memmem::find_iter` over the same
/// reads (the needle is absent, so every byte is searched). And `scan_lines` against
/// a bare memchr loop visiting each newline, on the same file.
fn search_file(c: &mut Criterion) {
    const NEEDLE: &[u8] = b"warning:";
    // Writing the 1 GiB file takes a while: not for a run that measures none of these.
    let groups = [
        "bounded-stream/find_line_file",
        "bounded-stream/find_line_numbered_file",
        "bounded-stream/find_file",
        "bounded-stream/scan_lines_file",
    ];
    if !groups.iter().any(|g| leakproof_benches::selected(g)) {
        return;
    }
    let data = log(1 << 30);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&data).unwrap();
    file.flush().unwrap();
    drop(data);
    let path = file.path().to_path_buf();
    let open = || std::fs::File::open(&path).unwrap();
    let finder = memchr::memmem::Finder::new(NEEDLE);
    let memmem = || {
        let mut f = open();
        let mut buf = vec![0u8; 64 * 1024];
        let mut hits = 0usize;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break hits as u64;
            }
            hits += finder.find_iter(&buf[..n]).count();
        }
    };
    let size = std::fs::metadata(&path).unwrap().len();
    let find_line = || {
        let found = bounded_stream::find_line_blocking(open(), NEEDLE, 64 * 1024).unwrap();
        u64::from(found.is_some())
    };
    // Context: the search as it was, a line at a time (memmem on each line).
    let per_line = || {
        let mut found = 0u64;
        scan_lines_blocking(open(), 64 * 1024, |line| {
            if finder.find(line.bytes).is_some() {
                found = line.number;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        found
    };
    compare(
        c,
        "bounded-stream/find_line_file",
        size,
        &find_line,
        &[("memmem", &memmem), ("per-line", &per_line)],
    );
    let numbered = LineFinder::new(NEEDLE)
        .max_line(64 * 1024)
        .line_numbers(true);
    let find_line_numbered = || u64::from(numbered.find_blocking(open()).unwrap().is_some());
    compare(
        c,
        "bounded-stream/find_line_numbered_file",
        size,
        &find_line_numbered,
        &[("memmem", &memmem)],
    );
    let find = || {
        bounded_stream::find_blocking(open(), NEEDLE)
            .unwrap()
            .unwrap_or(0)
    };
    compare(
        c,
        "bounded-stream/find_file",
        size,
        &find,
        &[("memmem", &memmem)],
    );
    // The ratios that judge the targets: per-round ratios of alternating runs. The
    // medians above drifted by up to 20% between runs here (memmem alone: 77 to 92 ms).
    for (group, ours) in [
        (
            "bounded-stream/find_line_file",
            &find_line as &dyn Fn() -> u64,
        ),
        (
            "bounded-stream/find_line_numbered_file",
            &find_line_numbered,
        ),
        ("bounded-stream/find_file", &find),
    ] {
        if leakproof_benches::selected(group) {
            leakproof_benches::paired(group, "memmem", 1, ours, memmem);
        }
    }
    let scan = || {
        let mut lines = 0u64;
        scan_lines_blocking(open(), 64 * 1024, |_| {
            lines += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        lines
    };
    let visit = || {
        let mut f = open();
        let mut buf = vec![0u8; 64 * 1024];
        let mut lines = 0u64;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break lines;
            }
            for _ in memchr::memchr_iter(b'\n', &buf[..n]) {
                lines += 1;
            }
        }
    };
    compare(
        c,
        "bounded-stream/scan_lines_file",
        size,
        &scan,
        &[("memchr-per-line", &visit)],
    );
    // Judged like the searches above: the criterion medians of three runs spread from
    // 0.79 to 1.28x here.
    if leakproof_benches::selected("bounded-stream/scan_lines_file") {
        leakproof_benches::paired(
            "bounded-stream/scan_lines_file",
            "memchr-per-line",
            1,
            scan,
            visit,
        );
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = pass_through, gzip_decode, line_scan }
criterion_group! { name = search; config = config().sample_size(10); targets = search_file }
criterion_main!(benches, search);
