//! What an in-process scenario compares with its baseline, read from outside: this
//! process's open descriptors (sockets apart), the entries under a temp root, and its
//! live descendants and zombies.

use std::path::Path;

use crate::report::Case;
use crate::scan;

/// This process as seen from `/proc` and a temp root at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Open descriptors (the listing's own left out).
    pub fds: usize,
    /// Of those, sockets (a connection pool keeps some open between operations).
    pub sockets: usize,
    /// The entries directly under the temp root, sorted (`.owner.lock` left out).
    pub temp: Vec<String>,
    /// Descendants of this process, sorted; zombies included (not reaped yet, they
    /// are still its children).
    pub children: Vec<u32>,
    /// Of those, the zombies (exited, not reaped), sorted.
    pub zombies: Vec<u32>,
}

impl Counts {
    /// Reads the counts now, with `temp` as the temp root. A [`Recorder`]'s sampler
    /// is [paused](crate::recorder::pause_sampler) meanwhile, so its own transient
    /// descriptors are never counted (do not call this while holding that pause).
    ///
    /// [`Recorder`]: crate::recorder::Recorder
    pub fn read(temp: &Path) -> Counts {
        let _quiet = crate::recorder::pause_sampler();
        let (mut fds, mut sockets) = (0usize, 0usize);
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            for entry in dir.flatten() {
                fds += 1;
                if std::fs::read_link(entry.path())
                    .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
                {
                    sockets += 1;
                }
            }
        }
        let all = scan::processes();
        let (mut children, mut zombies) = (Vec::new(), Vec::new());
        for p in scan::descendants_in(&all, std::process::id()) {
            if p.is_zombie() {
                zombies.push(p.pid);
            }
            children.push(p.pid);
        }
        children.sort_unstable();
        zombies.sort_unstable();
        Counts {
            // The listing's own fd is in the listing.
            fds: fds.saturating_sub(1),
            sockets,
            temp: scan::entry_names(temp),
            children,
            zombies,
        }
    }

    /// Descriptors other than sockets: files, pipes.
    pub fn files(&self) -> usize {
        self.fds.saturating_sub(self.sockets)
    }

    /// Temp entries, children and non-socket descriptors as in `base`: what one
    /// operation must give back, whatever a connection pool does.
    pub fn same_but_sockets(&self, base: &Counts) -> bool {
        self.temp == base.temp && self.children == base.children && self.files() == base.files()
    }

    /// What differs from `base`, with the numbers: `"temp entries: 1 over baseline (0
    /// -> 1)"`; sockets counted with the other descriptors if `sockets_too`.
    pub fn drift(&self, base: &Counts, sockets_too: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut diff = |what: &str, now: usize, then: usize| {
            if now != then {
                let (by, dir) = if now > then {
                    (now - then, "over")
                } else {
                    (then - now, "under")
                };
                out.push(format!("{what}: {by} {dir} baseline ({then} -> {now})"));
            }
        };
        diff("temp entries", self.temp.len(), base.temp.len());
        diff("child processes", self.children.len(), base.children.len());
        if sockets_too {
            diff("open fds", self.fds, base.fds);
        } else {
            diff("open fds other than sockets", self.files(), base.files());
        }
        out
    }

    /// Adds to `case` the exact checks of a scenario's end: temp entries, child
    /// processes (zombies included) and open descriptors back to `base`.
    pub fn check_back(&self, case: &mut Case, base: &Counts) {
        self.check_exact(case, base, true);
    }

    /// [`check_back`](Self::check_back), with sockets counted among the descriptors
    /// only if `sockets_too` (otherwise "open fds other than sockets").
    pub(crate) fn check_exact(&self, case: &mut Case, base: &Counts, sockets_too: bool) {
        let fds = if sockets_too {
            exact("open fds", self.fds, base.fds)
        } else {
            exact("open fds other than sockets", self.files(), base.files())
        };
        for (what, ok, observed) in [
            exact("temp entries", self.temp.len(), base.temp.len()),
            exact("child processes", self.children.len(), base.children.len()),
            fds,
        ] {
            case.check(&what, ok, observed);
        }
    }

    /// Ends the child processes and removes the temp entries that are here but not in
    /// `base`, so a scenario that leaked leaves nothing behind either.
    pub fn clean_leftovers(&self, base: &Counts, temp: &Path) {
        let new: Vec<u32> = self
            .children
            .iter()
            .copied()
            .filter(|p| !base.children.contains(p))
            .collect();
        crate::kill::kill_and_reap(&new);
        for name in self.temp.iter().filter(|n| !base.temp.contains(n)) {
            let path = temp.join(name);
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

/// An exact check: `now` must equal `then`, and the observation says by how much not.
fn exact(what: &str, now: usize, then: usize) -> (String, bool, String) {
    let observed = match now.cmp(&then) {
        std::cmp::Ordering::Equal => format!("{now} (baseline {then})"),
        std::cmp::Ordering::Greater => format!("{} over baseline ({then} -> {now})", now - then),
        std::cmp::Ordering::Less => format!("{} under baseline ({then} -> {now})", then - now),
    };
    (format!("{what} back to baseline"), now == then, observed)
}
