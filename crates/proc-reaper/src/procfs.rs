//! What `/proc` says about processes: children, environment markers, state, CPU time.
//!
//! Every reader tolerates a process vanishing mid-read (it is then simply absent): the
//! processes we look at are being killed.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

/// Reads a `/proc` list in as few `read` calls as possible: one, below 4 KiB.
///
/// Lists such as `children` and `cgroup.procs` are produced afresh on each `read`, the
/// next one resuming by position. A small first read (`read_to_string` probes with 32
/// bytes) splits one list over several walks, and an entry removed in between shifts
/// the rest: one that never left the list is skipped. A whole list in one read is one
/// walk.
pub(crate) fn read_list(path: impl AsRef<Path>) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0; 16 << 10];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The direct children of `pid`, from `/proc/<pid>/task/*/children` (every thread's).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(text) = read_list(task.path().join("children")) else {
            continue;
        };
        out.extend(
            text.split_ascii_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `pid` and all its descendants, parents before children.
pub(crate) fn tree(root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let kids = children(out[i]);
        for kid in kids {
            if !out.contains(&kid) {
                out.push(kid);
            }
        }
        i += 1;
    }
    out
}

/// What a process's environment says about a tree marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Env {
    /// It holds the marker.
    Marked,
    /// It holds other entries, not the marker.
    Unmarked,
    /// Empty, with the arguments set: a process without an environment (`env -i`), or
    /// one in the last microseconds of `exec`, between setting up its arguments and its
    /// environment. Only a second look, a little later, tells.
    Empty,
    /// Nothing to read: a zombie, an exiting process, or one in the middle of `exec`
    /// (the kernel sets the new image's arguments and environment up last, after
    /// mapping the program and its loader, which under I/O pressure takes
    /// milliseconds).
    Unreadable,
}

/// Whether `/proc/<pid>/environ` holds the entry `marker` (`NAME=value`).
pub(crate) fn marker(pid: u32, marker: &[u8]) -> Env {
    let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
        return Env::Unreadable;
    };
    if environ.is_empty() {
        return match fs::read(format!("/proc/{pid}/cmdline")) {
            Ok(cmdline) if !cmdline.is_empty() => Env::Empty,
            _ => Env::Unreadable,
        };
    }
    if environ.split(|b| *b == 0).any(|entry| entry == marker) {
        Env::Marked
    } else {
        Env::Unmarked
    }
}

/// What `/proc/<pid>/stat` says that we use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    /// `R`, `S`, `D`, `Z`, ...
    pub(crate) state: char,
    /// The process group: a zombie keeps it, so a dead member of a tree is still known.
    pub(crate) pgrp: u32,
}

/// A process's state and group, from `/proc/<pid>/stat`; `None` once it is gone.
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { state, pgrp })
}

/// `true` while `/proc/<pid>` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}
