//! `Health`'s descriptor grade against a real limit: with the soft `RLIMIT_NOFILE`
//! lowered to 64, holding 90% of it open is Unhealthy, with the count and the limit in
//! the reason; closing them is Healthy again. A test binary of its own: the limit is
//! process-wide.

#![cfg(feature = "mem")]

use leakproof::{Health, Status};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

const LIMIT: u64 = 64;

#[test]
fn descriptors_near_the_limit_are_unhealthy() {
    let health = Health::builder().fd_slack(1_000).build().unwrap();
    let before = getrlimit(Resource::Nofile);
    let baseline = health.check().fds.unwrap().open;
    assert!(baseline < LIMIT * 9 / 10, "{baseline} open already");
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(LIMIT),
            maximum: before.maximum,
        },
    )
    .unwrap();
    // Up to 90% of the limit, counted by the report itself.
    let mut files = Vec::new();
    while health.check().fds.unwrap().open * 10 < LIMIT * 9 {
        files.push(std::fs::File::open("/dev/null").unwrap());
    }
    let report = health.check();
    let fds = report.fds.clone().unwrap();
    setrlimit(Resource::Nofile, before).unwrap();
    assert_eq!(fds.limit, Some(LIMIT));
    assert_eq!(report.status, Status::Unhealthy, "{:?}", report.reasons);
    assert_eq!(
        report.reasons,
        [format!("{} descriptors open, limit {LIMIT}", fds.open)]
    );
    // The limit restored and the files closed: healthy again.
    drop(files);
    let report = health.check();
    assert_eq!(report.status, Status::Healthy, "{:?}", report.reasons);
    assert_eq!(report.fds.unwrap().limit, before.current);
}
