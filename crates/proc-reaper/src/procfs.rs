//! What `/proc` says about processes: children, environment markers, state, CPU time.
//!
//! Every reader tolerates a process vanishing mid-read (it is then simply absent): the
//! processes we look at are being killed.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The most [`read_once`] reads: an environment is at most a quarter of the stack limit,
/// and larger answers are taken as unreadable.
const READ_ONCE_MAX: usize = 64 << 20;

/// Reads a small `/proc` file in one `read` from offset 0, into a buffer of `hint`
/// bytes, doubled and read again from the start of a fresh open while the answer fills it.
///
/// `environ` and `cmdline` need it: they are read from the process's memory, each
/// `read` afresh, and the memory an open file refers to is the one the process had
/// when it was opened. Read in pieces (std's `read_to_end` probes with 32 bytes, then
/// doubles its buffer), a process that `exec`s between two reads leaves that memory
/// behind and the next read returns end of file: the text stops short, and a marker in
/// its missing part is not found. `stat` is a `seq_file`, one snapshot per open however
/// it is read; it comes here only to be read in one call instead of several.
pub(crate) fn read_once(path: impl AsRef<Path>, hint: usize) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    let mut size = hint.max(64);
    loop {
        let file = fs::File::open(path)?;
        let mut buf = vec![0; size];
        let len = loop {
            match file.read_at(&mut buf, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => break result?,
            }
        };
        if len < size {
            buf.truncate(len);
            return Ok(buf);
        }
        if size >= READ_ONCE_MAX {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("{} is over {READ_ONCE_MAX} bytes", path.display()),
            ));
        }
        size *= 2;
    }
}

/// Reads a `/proc` list in as few `read` calls as possible: one, below 4 KiB.
///
/// Lists such as `children` and `cgroup.procs` are produced afresh on each `read`, the
/// next one resuming by position, and one `read` returns at most a page of them, so a
/// longer list cannot be one snapshot ([`read_once`] would cut it short). A small first
/// read (`read_to_string` probes with 32 bytes) splits one list over several walks, and
/// an entry removed in between shifts the rest: one that never left the list is
/// skipped. A whole list in one read is one walk.
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
    children_checked(pid).unwrap_or_default()
}

/// [`children`], failing when a list could not be read (this process out of
/// descriptors, say) rather than reading as empty. A vanished task is not a failure.
pub(crate) fn children_checked(pid: u32) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?;
        let text = match read_list(task.path().join("children")) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.extend(
            text.split_ascii_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `pid` and all its descendants, parents before children.
pub(crate) fn tree(root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let mut seen = std::collections::HashSet::from([root]);
    let mut i = 0;
    while i < out.len() {
        for kid in children(out[i]) {
            if seen.insert(kid) {
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
///
/// Read in one `read` ([`read_once`]): read in pieces, an environment whose process
/// `exec`s meanwhile stops short, and its marker may be in the part not read.
pub(crate) fn marker(pid: u32, marker: &[u8]) -> Env {
    let Ok(environ) = read_once(format!("/proc/{pid}/environ"), 16 << 10) else {
        return Env::Unreadable;
    };
    if environ.is_empty() {
        return match read_once(format!("/proc/{pid}/cmdline"), 4 << 10) {
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
    /// When the process started, in clock ticks since boot: with the PID, it names one
    /// process for the life of the machine (a reused PID has a later start).
    pub(crate) start: u64,
    /// A kernel thread: no environment, ever.
    pub(crate) kernel_thread: bool,
}

/// `PF_KTHREAD` in `stat`'s flags.
const PF_KTHREAD: u32 = 0x0020_0000;

/// A process's state, group and start, from `/proc/<pid>/stat`; `None` once it
/// is gone.
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let text = read_once(format!("/proc/{pid}/stat"), 1 << 10).ok()?;
    parse_stat(&text)
}

/// The fields of a `stat` line that [`Stat`] keeps.
///
/// The command name is in parentheses and may hold any byte, UTF-8 or not, parentheses
/// and spaces included: the fields are parsed after the last `)`, as bytes.
fn parse_stat(text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    // Fields 9 and 22 of `proc(5)`; the group was field 5.
    let flags: u32 = fields.nth(9 - 5 - 1)?.parse().ok()?;
    let start = fields.nth(22 - 9 - 1)?.parse().ok()?;
    Some(Stat {
        state,
        pgrp,
        start,
        kernel_thread: flags & PF_KTHREAD != 0,
    })
}

/// A process named so that a reused PID is told apart: `<pid>-<start>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) start: u64,
}

impl Identity {
    /// This process.
    pub(crate) fn me() -> Identity {
        static ME: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        let pid = std::process::id();
        let read = || Identity {
            pid,
            start: stat(pid).map_or(0, |s| s.start),
        };
        let cached = *ME.get_or_init(read);
        // A child forked without `exec` inherits the cache: its PID tells.
        if cached.pid == pid { cached } else { read() }
    }

    /// Parses `<pid>-<start>` (or `<pid>` alone, from an older version: start 0).
    pub(crate) fn parse(text: &str) -> Option<Identity> {
        let (pid, start) = match text.split_once('-') {
            Some((pid, start)) => (pid, start.parse().ok()?),
            None => (text, 0),
        };
        Some(Identity {
            pid: pid.parse().ok()?,
            start,
        })
    }

    /// `true` while this process runs (a zombie counts as dead). An identity without a
    /// start time (0) is alive while its PID is.
    pub(crate) fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| {
            s.state != 'Z' && s.state != 'X' && (self.start == 0 || s.start == self.start)
        })
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.pid, self.start)
    }
}

/// The cgroup v2 path of `pid` (`/a/b`, the `0::` line of `/proc/<pid>/cgroup`). A
/// zombie keeps the cgroup it died in here, while `cgroup.procs` no longer lists it.
pub(crate) fn cgroup(pid: u32) -> Option<String> {
    let text = read_once(format!("/proc/{pid}/cgroup"), 1 << 10).ok()?;
    let text = String::from_utf8(text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().to_owned())
}

/// `true` while `/proc/<pid>` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_parsed_whatever_the_command_name() {
        let line =
            b"4242 (\xff\xfe) x) (S 1 R) S 1 4240 4240 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 1";
        let stat = parse_stat(line).unwrap();
        assert_eq!((stat.state, stat.pgrp, stat.start), ('S', 4240, 777));
        assert!(parse_stat(b"4242 (cut short").is_none());
        assert!(parse_stat(b"4242 (name) S 1").is_none());
    }

    #[test]
    fn identities_tell_a_reused_pid_apart() {
        let me = Identity::me();
        assert!(me.alive());
        assert_eq!(Identity::parse(&me.to_string()), Some(me));
        let reused = Identity {
            start: me.start + 1,
            ..me
        };
        assert!(!reused.alive(), "same pid, another start: another process");
        assert_eq!(Identity::parse("12").map(|i| i.start), Some(0));
        assert_eq!(Identity::parse("x-1"), None);
    }

    #[test]
    fn read_once_reads_past_its_first_buffer() {
        let path = format!("/proc/{}/environ", std::process::id());
        let whole = read_once(&path, 64).unwrap();
        assert!(
            whole.len() > 64,
            "the environment outgrows the first buffer"
        );
        assert_eq!(whole, fs::read(&path).unwrap());
    }
}
