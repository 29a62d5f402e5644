//! Concurrency slots: a semaphore of `max` permits, and, when adaptive, a limit below it
//! that halves on each rate-limit refusal and grows by one per limit's worth of answers
//! (AIMD, as TCP's congestion window).
//!
//! The limit moves without waiting for anyone: a decrease retires free slots at once
//! and records the rest as a debt, paid by the next slots given back; an increase pays
//! the debt first, else adds a slot. So the slots in existence are always
//! `limit + debt`, and those taken are that less the semaphore's free ones.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tokio::sync::Semaphore;

#[derive(Debug)]
pub(crate) struct Slots {
    semaphore: Semaphore,
    max: u32,
    /// `None` for a fixed limit of `max`.
    adaptive: Option<Adaptive>,
}

#[derive(Debug)]
struct Adaptive {
    limit: AtomicU32,
    /// Slots to retire as they are given back.
    debt: AtomicU32,
    /// Answers without a refusal since the limit last grew.
    answers: AtomicU32,
    /// Bumped at each decrease: a refusal to a request sent before the last decrease
    /// was already answered by it, and does not halve the limit again.
    epoch: AtomicU64,
}

impl Slots {
    pub(crate) fn new(max: u32, adaptive: bool) -> Self {
        Slots {
            semaphore: Semaphore::new(max as usize),
            max,
            adaptive: adaptive.then(|| Adaptive {
                limit: AtomicU32::new(max),
                debt: AtomicU32::new(0),
                answers: AtomicU32::new(0),
                epoch: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn semaphore(&self) -> &Semaphore {
        &self.semaphore
    }

    /// The epoch a slot taken now belongs to.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.adaptive
            .as_ref()
            .map_or(0, |a| a.epoch.load(Ordering::Acquire))
    }

    /// The limit now (`max` unless adaptive).
    pub(crate) fn limit(&self) -> u32 {
        self.adaptive
            .as_ref()
            .map_or(self.max, |a| a.limit.load(Ordering::Acquire))
    }

    /// Gives a slot back, or retires it while a decrease is owed.
    #[inline]
    pub(crate) fn give_back(&self) {
        if let Some(a) = &self.adaptive
            && a.debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                .is_ok()
        {
            return;
        }
        self.semaphore.add_permits(1);
    }

    /// Slots taken now.
    pub(crate) fn taken(&self) -> u64 {
        let existing = match &self.adaptive {
            Some(a) => {
                u64::from(a.limit.load(Ordering::Acquire))
                    + u64::from(a.debt.load(Ordering::Acquire))
            }
            None => u64::from(self.max),
        };
        existing.saturating_sub(self.semaphore.available_permits() as u64)
    }

    /// A rate-limit refusal to a request whose slot was taken in `epoch`: halves the
    /// limit (at least 1), once per epoch.
    pub(crate) fn refused(&self, epoch: u64) {
        let Some(a) = &self.adaptive else { return };
        if a.epoch
            .compare_exchange(epoch, epoch + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        a.answers.store(0, Ordering::Release);
        let Ok(old) = a
            .limit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                (l > 1).then_some((l / 2).max(1))
            })
        else {
            return;
        };
        let cut = old - (old / 2).max(1);
        let retired = self.semaphore.forget_permits(cut as usize) as u32;
        a.debt.fetch_add(cut - retired, Ordering::AcqRel);
        tracing::debug!(
            limit = (old / 2).max(1),
            "rate-gate: refused; concurrency halved"
        );
    }

    /// An answer that was not a refusal: after a limit's worth of them, one slot more
    /// (up to `max`).
    pub(crate) fn answered(&self) {
        let Some(a) = &self.adaptive else { return };
        let limit = a.limit.load(Ordering::Acquire);
        if limit >= self.max || a.answers.fetch_add(1, Ordering::AcqRel) + 1 < limit {
            return;
        }
        a.answers.store(0, Ordering::Release);
        if a.limit
            .compare_exchange(limit, limit + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        if a.debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_err()
        {
            self.semaphore.add_permits(1);
        }
    }

    /// `true` when the limit is back at `max` (nothing learned is lost by forgetting).
    pub(crate) fn at_max(&self) -> bool {
        self.limit() == self.max
    }
}
