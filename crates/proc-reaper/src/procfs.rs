//! What `/proc` says about processes: children, environment markers, state, CPU time.
//!
//! Every reader tolerates a process vanishing mid-read (it is then simply absent): the
//! processes we look at are being killed.

use std::fs;

/// The direct children of `pid`, from `/proc/<pid>/task/*/children` (every thread's).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(text) = fs::read_to_string(task.path().join("children")) else {
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

/// `true` for a zombie (exited, not yet reaped).
pub(crate) fn zombie(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state == 'Z')
}

/// Whether `/proc/<pid>/environ` holds the entry `marker` (`NAME=value`): `None` when it
/// cannot be told (unreadable or empty: a zombie, an exiting process, one mid-exec).
pub(crate) fn marker(pid: u32, marker: &[u8]) -> Option<bool> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    if environ.is_empty() {
        return None;
    }
    Some(environ.split(|b| *b == 0).any(|entry| entry == marker))
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
