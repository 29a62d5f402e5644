//! Memory pressure: a PSI trigger woken by the kernel, or polling where there is none.

#[cfg(any(target_os = "linux", target_os = "android"))]
use std::fs::{File, OpenOptions};
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::io::Write;
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "android"))]
use tokio::io::{Interest, unix::AsyncFd};

use crate::{Error, Probe, Result};

/// Waits for memory pressure: `stall` of stalled time (some tasks waiting on memory)
/// within any `window`.
///
/// Where the kernel allows it, this is a PSI trigger on `/proc/pressure/memory`: the
/// kernel wakes the task (POLLPRI), nothing polls. Otherwise (no PSI, not permitted,
/// parameters refused: kernels require windows of 500 ms to 10 s, and some reject small
/// stall-to-window ratios) it falls back to reading `some avg10` every `window` and
/// comparing it with `stall / window`. [`is_trigger`](Self::is_trigger) says which.
///
/// PSI is Linux's: on other platforms [`trigger`](Self::trigger) returns
/// [`Error::Trigger`] and [`new`](Self::new) polls a probe that has no pressure figure,
/// so [`wait`](Self::wait) never returns there.
#[derive(Debug)]
pub struct PressureWatch {
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Trigger(AsyncFd<File>),
    Poll {
        probe: Box<Probe>,
        percent: f64,
        every: Duration,
    },
}

impl PressureWatch {
    /// Installs the trigger, or prepares polling. Needs a tokio runtime with I/O enabled.
    pub fn new(stall: Duration, window: Duration) -> Result<Self> {
        match Self::trigger(stall, window) {
            Ok(watch) => Ok(watch),
            Err(error) => {
                tracing::debug!(%error, "mem-watch: no PSI trigger, polling pressure instead");
                Self::polling(stall, window)
            }
        }
    }

    /// The PSI trigger only: an error where the kernel refuses it (and off Linux).
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub fn trigger(stall: Duration, window: Duration) -> Result<Self> {
        Err(Error::Trigger {
            path: PathBuf::from("/proc/pressure/memory"),
            spec: format!("some {} {}", stall.as_micros(), window.as_micros()),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "PSI triggers exist on Linux only",
            ),
        })
    }

    /// The PSI trigger only: an error where the kernel refuses it (and off Linux).
    ///
    /// The kernel takes windows from 500 ms to 10 s; a process without
    /// `CAP_SYS_RESOURCE` (non-root, or root in many containers) only windows that are
    /// a multiple of 2 s (Linux 6.5+): `EINVAL` otherwise, and [`PressureWatch::new`]
    /// then polls instead.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn trigger(stall: Duration, window: Duration) -> Result<Self> {
        let path = PathBuf::from("/proc/pressure/memory");
        let spec = format!("some {} {}", stall.as_micros(), window.as_micros());
        let install = || -> std::io::Result<AsyncFd<File>> {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&path)?;
            file.write_all(format!("{spec}\0").as_bytes())?;
            // Deprecated in tokio 1.54 for I/O safety (tokio#8587); its replacement is
            // `unsafe`, which this workspace denies. The concern does not arise here: the
            // `File` is moved into the `AsyncFd` and nothing else holds its descriptor.
            #[allow(deprecated)]
            AsyncFd::with_interest(file, Interest::PRIORITY)
        };
        install()
            .map(|fd| PressureWatch {
                mode: Mode::Trigger(fd),
            })
            .map_err(|source| Error::Trigger { path, spec, source })
    }

    /// Polling only, every `window`.
    pub fn polling(stall: Duration, window: Duration) -> Result<Self> {
        let percent = 100.0 * stall.as_secs_f64() / window.as_secs_f64().max(f64::MIN_POSITIVE);
        let every = window.max(Duration::from_millis(100));
        Ok(PressureWatch {
            mode: Mode::Poll {
                probe: Box::new(Probe::new()?),
                percent,
                every,
            },
        })
    }

    /// `true` when the kernel will wake us (a PSI trigger), `false` when polling.
    pub fn is_trigger(&self) -> bool {
        match self.mode {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Mode::Trigger(_) => true,
            Mode::Poll { .. } => false,
        }
    }

    /// Waits for the next pressure event.
    pub async fn wait(&mut self) -> Result<()> {
        match &mut self.mode {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Mode::Trigger(fd) => {
                let mut guard =
                    fd.ready(Interest::PRIORITY)
                        .await
                        .map_err(|source| Error::Trigger {
                            path: PathBuf::from("/proc/pressure/memory"),
                            spec: String::from("(wait)"),
                            source,
                        })?;
                guard.clear_ready();
                Ok(())
            }
            Mode::Poll {
                probe,
                percent,
                every,
            } => loop {
                tokio::time::sleep(*every).await;
                if probe
                    .snapshot()
                    .pressure_some
                    .is_some_and(|p| p >= *percent)
                {
                    return Ok(());
                }
            },
        }
    }
}
