//! The faults S2 injects: which operation gets which, and an operation run as a task
//! that a cancellation aborts (S3's come from `leakproof_stress::Operations`).

use super::*;

/// S2's faults: 4% each of errors, panics, cancellations, full disks, fd exhaustion.
pub(super) fn fault_for(i: u64) -> Fault {
    match spread(i, 100) {
        0..4 => Fault::Error,
        4..8 => Fault::Panic,
        8..12 => Fault::Cancel,
        12..16 => Fault::FullDisk,
        16..20 => Fault::NoFiles,
        _ => Fault::None,
    }
}

/// How one spawned operation ended.
pub(super) enum Ended {
    Ok(work::Indexed),
    Err(IndexError),
    Panicked,
    Cancelled,
}

/// Runs operation `op` as a task; a [`Fault::Cancel`] aborts it after a random delay.
pub(super) async fn run_op(indexer: &Indexer, op: u64, repo: String, fault: Fault) -> Ended {
    let ix = indexer.clone();
    let task = tokio::spawn(async move { ix.index(op, &repo, fault).await });
    if fault == Fault::Cancel {
        tokio::time::sleep(Duration::from_millis(1 + spread(op ^ 0xCA, 60))).await;
        task.abort();
    }
    match task.await {
        Ok(Ok(done)) => Ended::Ok(done),
        Ok(Err(error)) => Ended::Err(error),
        Err(e) if e.is_panic() => Ended::Panicked,
        Err(_) => Ended::Cancelled,
    }
}
