//! The bulk searches (`find_line`, `find`) against the obvious models, on inputs read in
//! odd-sized pieces: a line at a time through `scan_lines` for `find_line` (the first
//! line whose first `max_line` bytes hold the needle), `memmem` over the whole input for
//! `find`. Lines longer than `max_line`, needles straddling reads, needles holding a
//! newline and input without a final newline all come up.

use std::io::Read;
use std::ops::ControlFlow;

use bounded_stream::{
    LineFinder, find, find_blocking, find_line, find_line_blocking, scan_lines_blocking,
};
use proptest::prelude::*;

/// Hands out `data` in pieces of the sizes given, in turn.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The model's match: the line's number, its offset and its (cut) bytes. The offset is
/// counted here from the number (one past the line before's newline), not taken from
/// the scan.
fn model_line(data: &[u8], needle: &[u8], max_line: usize) -> Option<(Option<u64>, u64, Vec<u8>)> {
    let finder = memchr::memmem::Finder::new(needle);
    let mut found = None;
    scan_lines_blocking(data, max_line, |line| {
        if finder.find(line.bytes).is_none() {
            return ControlFlow::Continue(());
        }
        let offset = match line.number as usize {
            1 => 0,
            n => data
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(n - 2)
                .map(|(i, _)| i as u64 + 1)
                .unwrap(),
        };
        found = Some((Some(line.number), offset, line.bytes.to_vec()));
        ControlFlow::Break(())
    })
    .unwrap();
    found
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&b"ab\nxw"[..]), 0..400)
}

fn needle() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&b"ab\nw"[..]), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn find_line_matches_the_line_by_line_model(
        data in text(),
        needle in needle(),
        max_line in 1usize..24,
        sizes in prop::collection::vec(1usize..40, 1..6),
    ) {
        let want = model_line(&data, &needle, max_line);
        // Numbered, in odd pieces and async.
        let numbered = LineFinder::new(&needle).max_line(max_line).line_numbers(true);
        let reader = Pieces { data: &data, sizes: sizes.clone(), turn: 0 };
        let got = numbered
            .find_blocking(reader)
            .unwrap()
            .map(|m| (m.number, m.offset, m.line.to_vec()));
        prop_assert_eq!(&got, &want);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got_async = runtime
            .block_on(numbered.find(&data[..]))
            .unwrap()
            .map(|m| (m.number, m.offset, m.line.to_vec()));
        prop_assert_eq!(&got_async, &want);
        // The default, unnumbered: the same line.
        let want = want.map(|(_, offset, line)| (None, offset, line));
        let reader = Pieces { data: &data, sizes: sizes.clone(), turn: 0 };
        let got = find_line_blocking(reader, &needle, max_line)
            .unwrap()
            .map(|m| (m.number, m.offset, m.line.to_vec()));
        prop_assert_eq!(&got, &want);
        let got_async = runtime
            .block_on(find_line(&data[..], &needle, max_line))
            .unwrap()
            .map(|m| (m.number, m.offset, m.line.to_vec()));
        prop_assert_eq!(got_async, want);
    }

    #[test]
    fn find_matches_memmem_over_the_whole_input(
        data in text(),
        needle in needle(),
        sizes in prop::collection::vec(1usize..40, 1..6),
    ) {
        let want = memchr::memmem::find(&data, &needle).map(|at| at as u64);
        let reader = Pieces { data: &data, sizes, turn: 0 };
        prop_assert_eq!(find_blocking(reader, &needle).unwrap(), want);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        prop_assert_eq!(runtime.block_on(find(&data[..], &needle)).unwrap(), want);
    }
}
