//! Peak heap, measured by a counting global allocator: memory follows the cap, never
//! the input. One test function, so nothing else allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};

use bounded_stream::{Codec, DecodeLimits, Limits, READ_CHUNK, collect, decode, scan_lines};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, BufReader};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// A counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#[allow(unsafe_code)]
mod counting {
    use super::*;

    // SAFETY: every method forwards to `System` with the same arguments, so `System`'s
    // guarantees hold; the counters are plain atomics with no effect on the memory.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            // SAFETY: forwarded unchanged.
            unsafe { System.dealloc(ptr, layout) }
        }

        // Counted as the allocator holds it: a block grown in place (or remapped) is
        // not held twice, as the default's allocate-copy-free would count it.
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = CURRENT.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
            // SAFETY: forwarded unchanged.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;
}

/// Runs `f` and returns its peak heap above what was allocated when it started.
fn peak_during<T>(
    rt: &tokio::runtime::Runtime,
    f: impl std::future::Future<Output = T>,
) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = rt.block_on(f);
    (out, PEAK.load(Ordering::Relaxed) - base)
}

const CHUNK: usize = 64 * 1024;
const MIB: usize = 1 << 20;
/// Runtime bookkeeping, futures and small structs: not input-sized.
const SLACK: usize = 32 * 1024;

/// An endless source that allocates a fresh chunk each time, like a socket would.
fn endless() -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::repeat_with(|| Ok(Bytes::from(vec![b'x'; CHUNK])))
}

#[test]
fn peak_heap_follows_the_cap_not_the_input() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // 1. Collecting an endless body under a 4 MiB cap: the cap plus one chunk.
    let cap = 4 * MIB;
    let (result, peak) = peak_during(&rt, collect(endless(), &Limits::new(cap as u64)));
    assert!(result.is_err());
    assert!(
        peak <= cap + CHUNK + SLACK,
        "collect: peak {peak} for a {cap} cap"
    );
    // And a body of exactly the cap is kept whole in the same memory.
    let (result, peak) = peak_during(&rt, collect(endless().take(64), &Limits::new(cap as u64)));
    assert_eq!(result.unwrap().len(), cap as u64);
    assert!(
        peak <= cap + CHUNK + SLACK,
        "collect at the cap: peak {peak}"
    );

    // 2. Scanning 256 MiB that is one line: the longest line allowed plus a read chunk.
    let max_line = MIB;
    let one_line = tokio_util::io::StreamReader::new(endless().take(4096));
    let (summary, peak) = peak_during(
        &rt,
        scan_lines(one_line, max_line, |_| ControlFlow::Continue(())),
    );
    let summary = summary.unwrap();
    assert_eq!(
        (summary.bytes, summary.truncated_lines),
        (256 * MIB as u64, 1)
    );
    // The splitter's buffer, plus the source's chunk being read and the next one it
    // allocates before StreamReader drops the spent one.
    assert!(
        peak <= max_line + READ_CHUNK + 2 * CHUNK + SLACK,
        "scan: peak {peak}"
    );

    // 2b. A `max_line` of 1 TiB is a bound, not an allocation: over 16 MiB of short
    //     lines the splitter keeps its first room (a read chunk for the incomplete
    //     line, one for the read); one line of 1 MiB grows it to twice that at most.
    let short = tokio_util::io::StreamReader::new(
        futures_util::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Bytes::from(b"ok\n".repeat(CHUNK / 3)))
        })
        .take(16 * MIB / CHUNK),
    );
    let (summary, peak) = peak_during(
        &rt,
        scan_lines(short, 1 << 40, |_| ControlFlow::Continue(())),
    );
    assert_eq!(summary.unwrap().truncated_lines, 0);
    assert!(
        peak <= 2 * READ_CHUNK + 2 * CHUNK + SLACK,
        "scan, 1 TiB max_line, short lines: peak {peak}"
    );
    let one_mib_line = tokio_util::io::StreamReader::new(endless().take(MIB / CHUNK));
    let (summary, peak) = peak_during(
        &rt,
        scan_lines(one_mib_line, 1 << 40, |_| ControlFlow::Continue(())),
    );
    assert_eq!(summary.unwrap().truncated_lines, 0);
    // The room doubled to 1 MiB, the old 512 KiB still held while the line moves.
    assert!(
        peak <= 2 * MIB + READ_CHUNK + 4 * CHUNK + SLACK,
        "scan, 1 TiB max_line, a 1 MiB line: peak {peak}"
    );

    // 3. Decoding a 256 MiB gzip bomb to the end (no cap hit): memory is the decoder's
    //    state and one chunk, not the output. The bomb's encoder runs in this process
    //    too, so its state is counted as well.
    let zeros = BufReader::new(tokio::io::repeat(0).take(256 * MIB as u64));
    let compressed = tokio_util::io::ReaderStream::new(
        async_compression::tokio::bufread::GzipEncoder::new(zeros),
    );
    let budget = DecodeLimits::new(Limits::new(u64::MAX));
    let drained = async {
        let mut decoded = std::pin::pin!(decode(compressed, Codec::Gzip, &budget));
        let mut total = 0u64;
        while let Some(chunk) = decoded.next().await {
            total += chunk.unwrap().len() as u64;
        }
        total
    };
    let (total, peak) = peak_during(&rt, drained);
    assert_eq!(total, 256 * MIB as u64);
    assert!(
        peak <= 2 * MIB,
        "decode: peak {peak} while decoding {total} bytes"
    );
}
