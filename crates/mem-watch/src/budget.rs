//! A memory budget: a byte-weighted async semaphore for large operations.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Error, Result};

/// The budget's unit: reservations are rounded up to whole KiB, so one reservation can
/// be up to 4 TiB (tokio's semaphore counts `u32` permits per acquisition).
const UNIT: u64 = 1024;

/// A shared budget of bytes. Reserve before buffering; the reservation is returned when
/// dropped (on panic and cancellation too). Waiters are served first come, first served,
/// so a large reservation is not starved by a stream of small ones; it does make the
/// small ones behind it wait.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mem_watch::Error> {
/// let budget = mem_watch::MemoryBudget::new(256 << 20); // 256 MiB across all tasks
/// let held = budget.reserve(64 << 20).await?;
/// assert_eq!(budget.available(), 192 << 20);
/// drop(held);
/// assert_eq!(budget.available(), 256 << 20);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    semaphore: Arc<Semaphore>,
    capacity: u64,
}

/// Bytes held from a [`MemoryBudget`], returned on drop.
#[derive(Debug)]
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
}

impl Reservation {
    /// Bytes reserved (as asked, before rounding to the budget's unit).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

fn units(bytes: u64) -> u64 {
    bytes.div_ceil(UNIT)
}

impl MemoryBudget {
    /// A budget of `capacity` bytes (rounded down to whole KiB).
    pub fn new(capacity: u64) -> Self {
        let permits = (capacity / UNIT).min(Semaphore::MAX_PERMITS as u64) as usize;
        MemoryBudget {
            semaphore: Arc::new(Semaphore::new(permits)),
            capacity: permits as u64 * UNIT,
        }
    }

    /// The total, in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> u64 {
        self.semaphore.available_permits() as u64 * UNIT
    }

    fn permits_for(&self, bytes: u64) -> Result<u32> {
        let n = units(bytes);
        if n * UNIT > self.capacity || n > u32::MAX as u64 {
            return Err(Error::OverBudget {
                requested: bytes,
                capacity: self.capacity,
            });
        }
        Ok(n as u32)
    }

    /// Waits until `bytes` are free, then holds them. A request over the whole capacity
    /// fails at once rather than waiting forever.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation> {
        let n = self.permits_for(bytes)?;
        let permit = self
            .semaphore
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| Error::BudgetClosed)?;
        Ok(Reservation {
            _permit: permit,
            bytes,
        })
    }

    /// Holds `bytes` if they are free now.
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        let n = self.permits_for(bytes).ok()?;
        let permit = self.semaphore.clone().try_acquire_many_owned(n).ok()?;
        Some(Reservation {
            _permit: permit,
            bytes,
        })
    }
}
