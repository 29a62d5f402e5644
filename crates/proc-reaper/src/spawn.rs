//! Starting a program inside its tree's cgroup, before its first instruction runs.
//!
//! This module holds the crate's only `unsafe` code, one `pre_exec` call, allowed here
//! and denied everywhere else. Moving a process into a cgroup after `spawn` returns
//! leaves a window in which it runs outside: whatever it forks then (a `setsid env -i`
//! daemon, say) is never in the cgroup. The kernel offers two ways to close it: clone3's
//! `CLONE_INTO_CGROUP`, which std's `Command` does not expose, and a write of `0` to the
//! cgroup's `cgroup.procs` by the child itself, between `fork` and `exec`, which std
//! allows through `CommandExt::pre_exec`. That call is `unsafe` because the closure runs
//! in a forked copy of a multi-threaded process, where only async-signal-safe operations
//! are allowed.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Makes `command`'s child write `0` to `procs` (an open `cgroup.procs`, `O_CLOEXEC`)
/// before it `exec`s, so the program starts inside that cgroup. While `armed` is false
/// the child skips the write (a retry without the cgroup, after the write failed).
///
/// A failed write fails the spawn with the write's error; the program never ran.
pub(crate) fn join_cgroup_before_exec(
    command: &mut Command,
    procs: Arc<OwnedFd>,
    armed: Arc<AtomicBool>,
) {
    let join = move || -> io::Result<()> {
        if !armed.load(Ordering::Relaxed) {
            return Ok(());
        }
        match rustix::io::write(&*procs, b"0") {
            Ok(_) => Ok(()),
            Err(errno) => Err(io::Error::from_raw_os_error(errno.raw_os_error())),
        }
    };
    // SAFETY: the closure runs in the child between `fork` and `exec`, where only
    // async-signal-safe operations are allowed. It does one atomic load, one `write(2)`
    // (rustix issues the system call itself: no lock, no allocation) on an fd opened
    // before the fork and kept alive by the parent's `Arc`, and on failure builds an
    // `io::Error` from a raw errno, which does not allocate. It touches no lock, no
    // allocator and no thread-local state, and cannot panic.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(join);
    }
}
