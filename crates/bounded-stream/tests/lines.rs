//! Line scans, searches and tails: the same answers under any chunking, in bounded memory.

use std::io;
use std::ops::ControlFlow;

use bounded_stream::{
    Error, LineFinder, READ_CHUNK, find, find_line, find_line_blocking, find_line_regex,
    scan_lines, scan_lines_blocking, tail_bytes, tail_lines,
};
use bytes::Bytes;
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A reader handing out `data` in chunks of the given sizes.
fn chunked(data: &[u8], sizes: &[usize]) -> impl tokio::io::AsyncRead + Unpin {
    let mut parts = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + size.max(&1)).min(data.len());
        parts.push(Ok::<_, io::Error>(Bytes::copy_from_slice(&data[at..end])));
        at = end;
    }
    tokio_util::io::StreamReader::new(futures_util::stream::iter(parts))
}

/// The model: split on '\n', drop the empty piece after a final '\n', cut to max_line.
fn model(data: &[u8], max_line: usize) -> Vec<(Vec<u8>, bool)> {
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if data.is_empty() || data.ends_with(b"\n") {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|l| (l[..l.len().min(max_line)].to_vec(), l.len() > max_line))
        .collect()
}

/// Each line's offset in the model: 0, then one past each '\n' but a final one.
fn model_offsets(data: &[u8]) -> Vec<u64> {
    let mut offsets: Vec<u64> = std::iter::once(0)
        .chain(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i as u64 + 1),
        )
        .collect();
    if data.is_empty() || data.ends_with(b"\n") {
        offsets.pop();
    }
    offsets
}

fn arb_text() -> impl Strategy<Value = Vec<u8>> {
    // Short and long lines, invalid UTF-8 and '\r' included.
    prop::collection::vec(
        prop_oneof![Just(b'\n'), Just(b'\r'), Just(0xffu8), b'a'..=b'z'],
        0..3000,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scan_matches_the_model_under_any_chunking(data in arb_text(), max_line in 1usize..200, sizes in prop::collection::vec(1usize..500, 1..6)) {
        let mut seen = Vec::new();
        let mut offsets = Vec::new();
        let summary = runtime().block_on(scan_lines(chunked(&data, &sizes), max_line, |line| {
            seen.push((line.bytes.to_vec(), line.truncated));
            offsets.push(line.offset);
            ControlFlow::Continue(())
        })).unwrap();
        let expected = model(&data, max_line);
        prop_assert_eq!(summary.lines, expected.len() as u64);
        prop_assert_eq!(summary.bytes, data.len() as u64);
        prop_assert_eq!(summary.truncated_lines, expected.iter().filter(|(_, t)| *t).count() as u64);
        prop_assert_eq!(seen, expected);
        prop_assert_eq!(offsets, model_offsets(&data));
    }

    #[test]
    fn find_matches_the_model_under_any_chunking(prefix in arb_text(), suffix in arb_text(), needle in prop::collection::vec(b'a'..=b'c', 1..12), sizes in prop::collection::vec(1usize..300, 1..6)) {
        let mut data = prefix.clone();
        data.extend_from_slice(&needle);
        data.extend_from_slice(&suffix);
        let expected = memchr::memmem::find(&data, &needle).map(|i| i as u64);
        let got = runtime().block_on(find(chunked(&data, &sizes), &needle)).unwrap();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn tail_bytes_matches_the_model(data in arb_text(), n in 0usize..500, sizes in prop::collection::vec(1usize..300, 1..6)) {
        let got = runtime().block_on(tail_bytes(chunked(&data, &sizes), n)).unwrap();
        prop_assert_eq!(&got[..], &data[data.len().saturating_sub(n)..]);
    }

    #[test]
    fn tail_lines_matches_the_model(data in arb_text(), n in 0usize..20, max_line in 1usize..100) {
        let got = runtime().block_on(tail_lines(chunked(&data, &[97]), n, max_line)).unwrap();
        let all = model(&data, max_line);
        let expected: Vec<Bytes> = all[all.len().saturating_sub(n)..].iter().map(|(l, _)| Bytes::from(l.clone())).collect();
        prop_assert_eq!(got, expected);
    }
}

#[tokio::test]
async fn a_callback_can_stop_early() {
    let data = b"a\nb\nwarning: x\nc\n".repeat(1000);
    let mut calls = 0;
    let summary = scan_lines(&data[..], 100, |line| {
        calls += 1;
        if line.bytes.starts_with(b"warning:") {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await
    .unwrap();
    assert!(summary.stopped);
    assert_eq!(calls, 3);
}

#[tokio::test]
async fn a_huge_single_line_is_reported_truncated_not_buffered() {
    // 64 MiB with no newline, then a short line.
    let mut data = vec![b'x'; 64 << 20];
    data.extend_from_slice(b"\nwarning: after the long line\n");
    let mut lines = Vec::new();
    let summary = scan_lines(&data[..], 1024, |line| {
        lines.push((line.number, line.bytes.len(), line.truncated));
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(lines, vec![(1, 1024, true), (2, 28, false)]);
    assert_eq!(summary.truncated_lines, 1);
    let found = find_line(&data[..], b"warning:", 1024)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.number, found.offset, &found.line[..]),
        (None, (64 << 20) + 1, &b"warning: after the long line"[..])
    );
    let numbered = LineFinder::new(b"warning:")
        .max_line(1024)
        .line_numbers(true)
        .find(&data[..])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(numbered.number, Some(2));
    assert_eq!(
        find(&data[..], b"warning:").await.unwrap(),
        Some((64 << 20) + 1)
    );
}

#[tokio::test]
async fn find_line_and_regex_report_the_line() {
    let log = b"step 1 ok\nstep 2 ok\nwarning: deprecated flag --foo\nstep 3 ok\n";
    let hit = find_line(&log[..], b"warning:", 4096)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (hit.number, hit.offset, &hit.line[..]),
        (None, 20, &b"warning: deprecated flag --foo"[..])
    );
    let numbered = LineFinder::new(b"warning:").line_numbers(true);
    assert_eq!(
        numbered.find(&log[..]).await.unwrap().unwrap().number,
        Some(3)
    );
    assert_eq!(
        numbered.find_blocking(&log[..]).unwrap().unwrap().number,
        Some(3)
    );
    let re = regex::bytes::Regex::new(r"step \d ok$").unwrap();
    let hit = find_line_regex(&log[..], &re, 4096).await.unwrap().unwrap();
    assert_eq!((hit.number, hit.offset), (Some(1), 0));
    let re = regex::bytes::Regex::new(r"^step 3").unwrap();
    let hit = find_line_regex(&log[..], &re, 4096).await.unwrap().unwrap();
    assert_eq!((hit.number, hit.offset), (Some(4), 51));
    assert!(
        find_line(&log[..], b"error:", 4096)
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn the_blocking_scan_agrees_with_the_async_one() {
    let data = b"one\ntwo\n\xff\xfe invalid utf-8\nthree".to_vec();
    let mut lines = Vec::new();
    let summary = scan_lines_blocking(&data[..], 100, |line| {
        lines.push(line.bytes.to_vec());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        lines,
        model(&data, 100)
            .into_iter()
            .map(|(l, _)| l)
            .collect::<Vec<_>>()
    );
    assert_eq!(summary.lines, 4);
}

#[tokio::test]
async fn a_read_error_is_reported_with_the_count() {
    let parts = vec![
        Ok(Bytes::from_static(b"line\npartial")),
        Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone")),
    ];
    let reader = tokio_util::io::StreamReader::new(futures_util::stream::iter(parts));
    match scan_lines(reader, 100, |_| ControlFlow::Continue(())).await {
        Err(Error::Source {
            received: 12,
            source,
        }) => assert_eq!(source.kind(), io::ErrorKind::BrokenPipe),
        other => panic!("expected Source error, got {other:?}"),
    }
}

/// Lines around and past the room set aside at first (`READ_CHUNK`), under a `max_line`
/// far larger: each is seen whole, under any chunking, by the scan, the line search and
/// the blocking scan; and one `max_line` smaller than such a line still truncates it.
#[test]
fn lines_longer_than_the_first_room_grow_it_up_to_max_line() {
    let mut data = Vec::new();
    for (i, len) in [
        10,
        READ_CHUNK - 1,
        READ_CHUNK,
        READ_CHUNK + 1,
        3,
        2 * READ_CHUNK + 7,
        300_000,
    ]
    .into_iter()
    .enumerate()
    {
        data.extend(std::iter::repeat_n(b'a' + i as u8, len));
        data.push(b'\n');
    }
    data.extend_from_slice(&[b'z'; 200_000]);
    data.extend_from_slice(b" warning: at the end of a long last line");
    let rt = runtime();
    for max_line in [1 << 20, 150_000] {
        let want = model(&data, max_line);
        for sizes in [&[READ_CHUNK][..], &[7_001, 100_000, 1], &[1 << 20]] {
            let mut got = Vec::new();
            rt.block_on(scan_lines(chunked(&data, sizes), max_line, |line| {
                got.push((line.bytes.to_vec(), line.truncated));
                ControlFlow::Continue(())
            }))
            .unwrap();
            assert!(got == want, "max_line {max_line}, reads of {sizes:?}");
            let found = rt
                .block_on(find_line(chunked(&data, sizes), b"warning:", max_line))
                .unwrap();
            // The needle is past the first 150,000 bytes of its line.
            assert_eq!(
                found.map(|m| m.line.len()),
                (max_line > 200_040).then_some(200_040),
                "max_line {max_line}, reads of {sizes:?}"
            );
        }
        let mut blocking = Vec::new();
        scan_lines_blocking(&data[..], max_line, |line| {
            blocking.push((line.bytes.to_vec(), line.truncated));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!(blocking == want, "blocking, max_line {max_line}");
    }
}

/// `max_line` is a bound, not an allocation: any value, `usize::MAX` included, is
/// taken (it once asked the allocator for all of it, and `1 << 40` aborted the process).
#[tokio::test]
async fn any_max_line_is_taken_without_allocating_it() {
    let log = b"step 1 ok\nwarning: deprecated flag\n";
    for max_line in [1 << 40, usize::MAX] {
        let mut lines = 0;
        let summary = scan_lines(&log[..], max_line, |_| {
            lines += 1;
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
        assert_eq!((lines, summary.lines), (2, 2));
        let hit = LineFinder::new(b"warning:")
            .max_line(max_line)
            .line_numbers(true)
            .find(&log[..])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hit.number, Some(2));
        let blocking = find_line_blocking(&log[..], b"warning:", max_line).unwrap();
        assert_eq!(blocking.map(|m| m.line.len()), Some(24));
        let tail = tail_lines(&log[..], 1, max_line).await.unwrap();
        assert_eq!(tail, vec![Bytes::from_static(b"warning: deprecated flag")]);
    }
}
