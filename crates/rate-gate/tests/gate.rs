//! The gate's guarantees, observed under paused tokio time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rate_gate::{Error, Feedback, Gate, Quota};
use tokio::time::Instant;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn hundred_tasks_get_exactly_the_quota_each_hour_for_three_hours() {
    let gate = Gate::builder().quota(Quota::per_hour(5000)).build();
    let start = Instant::now();
    let grants = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (gate, grants) = (gate.clone(), grants.clone());
        tasks.spawn(async move {
            loop {
                let permit = gate.acquire().await.unwrap();
                let at = start.elapsed();
                if at >= 3 * HOUR {
                    return;
                }
                grants.lock().unwrap().push(at);
                drop(permit);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut grants = grants.lock().unwrap().clone();
    grants.sort();
    for hour in 0..3 {
        let in_hour = grants.iter().filter(|t| t.as_secs() / 3600 == hour).count();
        assert_eq!(in_hour, 5000, "hour {hour}");
    }
    // And in every sliding hour, never more than the quota.
    for pair in grants.windows(5001) {
        assert!(pair[5000] - pair[0] >= HOUR - Quota::per_hour(5000).emission_interval());
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_goes_at_once_then_the_rate_applies() {
    let gate = Gate::builder()
        .quota(Quota::per_second(10).burst(20).unwrap())
        .build();
    let start = Instant::now();
    let mut times = Vec::new();
    for _ in 0..40 {
        gate.acquire().await.unwrap();
        times.push(start.elapsed());
    }
    assert!(
        times[..20].iter().all(|t| t.is_zero()),
        "the first 20 at once"
    );
    assert_eq!(times[20], Duration::from_millis(100));
    assert_eq!(times[39], Duration::from_millis(2000));
    assert!(matches!(
        gate.acquire_n(21).await,
        Err(Error::OverBurst {
            requested: 21,
            burst: 20
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order_and_a_cancelled_one_takes_nothing() {
    let gate = Gate::builder().quota(Quota::per_second(1)).build();
    gate.acquire().await.unwrap(); // Uses the first slot: everyone else waits.
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for i in 0..6 {
        let (gate, order) = (gate.clone(), order.clone());
        handles.push(tokio::spawn(async move {
            gate.acquire().await.unwrap();
            order.lock().unwrap().push((i, Instant::now()));
        }));
        tokio::task::yield_now().await; // Let it queue before the next one arrives.
    }
    let start = Instant::now();
    handles[2].abort();
    for (i, h) in handles.into_iter().enumerate() {
        if i != 2 {
            h.await.unwrap();
        }
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![0, 1, 3, 4, 5]
    );
    // The cancelled waiter took no slot: five grants at 1 s, 2 s, ..., 5 s.
    let at: Vec<u64> = order.iter().map(|(_, t)| (*t - start).as_secs()).collect();
    assert_eq!(at, vec![1, 2, 3, 4, 5]);
    assert_eq!(gate.stats().granted, 6);
}

#[tokio::test(start_paused = true)]
async fn remaining_zero_stops_everything_until_the_reset() {
    let gate = Gate::builder()
        .quota(Quota::per_second(100).burst(100).unwrap())
        .concurrency(10)
        .build();
    let permit = gate.acquire().await.unwrap();
    permit.observe(Feedback::new().remaining(0, Duration::from_secs(90)));
    drop(permit);
    let start = Instant::now();
    assert!(gate.try_acquire().is_err());
    gate.acquire().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(90));
}

#[tokio::test(start_paused = true)]
async fn never_more_than_the_server_said_remain_counting_those_in_flight() {
    let gate = Gate::builder()
        .quota(Quota::per_second(1000).burst(1000).unwrap())
        .concurrency(100)
        .build();
    let in_flight: Vec<_> = futures_join(&gate, 4).await;
    // One response says 10 remain; 3 other requests are still in flight.
    in_flight[0].observe(Feedback::new().remaining(10, Duration::from_secs(60)));
    drop(in_flight);
    let start = Instant::now();
    let mut granted_before_reset = 0;
    while start.elapsed() < Duration::from_secs(60) {
        let _p = gate.acquire().await.unwrap();
        if start.elapsed() < Duration::from_secs(60) {
            granted_before_reset += 1;
        }
    }
    assert_eq!(
        granted_before_reset, 7,
        "10 remaining minus the 3 already in flight"
    );
}

async fn futures_join(gate: &Gate, n: usize) -> Vec<rate_gate::Permit<'_>> {
    let mut permits = Vec::new();
    for _ in 0..n {
        permits.push(gate.acquire().await.unwrap());
    }
    permits
}

#[tokio::test(start_paused = true)]
async fn retry_after_and_refusals_pause_every_waiter() {
    let gate = Gate::builder()
        .quota(Quota::per_second(100).burst(100).unwrap())
        .build();
    gate.observe(Feedback::new().retry_after(Duration::from_secs(30)));
    assert_eq!(gate.stats().paused_for, Some(Duration::from_secs(30)));
    let start = Instant::now();
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let g = gate.clone();
            tokio::spawn(async move { g.acquire().await.map(|_| Instant::now()) })
        })
        .collect();
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap() - start, Duration::from_secs(30));
    }
    // A 429 without Retry-After: the default one-minute pause.
    gate.observe(Feedback::new().limited());
    let start = Instant::now();
    gate.acquire().await.unwrap();
    assert_eq!(start.elapsed(), rate_gate::DEFAULT_REFUSAL_PAUSE);
}

#[tokio::test(start_paused = true)]
async fn a_quota_change_wakes_the_waiting_head_at_once() {
    let gate = Gate::builder().quota(Quota::per_hour(1)).build();
    gate.acquire().await.unwrap();
    let waiter = {
        let g = gate.clone();
        tokio::spawn(async move { g.acquire().await.map(|_| Instant::now()) })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let changed_at = Instant::now();
    gate.set_quota(Quota::per_second(10));
    let granted = waiter.await.unwrap().unwrap();
    assert!(
        granted - changed_at <= Duration::from_millis(100),
        "{:?}",
        granted - changed_at
    );
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_capped_and_released_on_panic() {
    let gate = Gate::builder().concurrency(3).build();
    let held: Vec<_> = futures_join(&gate, 3).await;
    assert_eq!(gate.stats().in_flight, 3);
    assert!(gate.try_acquire().is_err());
    let g = gate.clone();
    let panicked = tokio::spawn(async move {
        let _p = g.acquire().await.unwrap();
        panic!("injected");
    });
    drop(held);
    assert!(panicked.await.unwrap_err().is_panic());
    assert_eq!(gate.stats().in_flight, 0);
    assert!(gate.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn try_acquire_never_jumps_the_line() {
    // Burst 2: after one acquire, one token is free.
    let gate = Gate::builder()
        .quota(Quota::per_second(1).burst(2).unwrap())
        .build();
    gate.acquire().await.unwrap();
    // A waiter for 2 tokens heads the line (one is free, it needs a second).
    let waiter = {
        let g = gate.clone();
        tokio::spawn(async move { g.acquire_n(2).await.map(|_| Instant::now()) })
    };
    tokio::task::yield_now().await;
    // The free token must not be taken from under the waiter.
    assert_eq!(gate.try_acquire().map(|_| ()), Err(Duration::ZERO));
    let start = Instant::now();
    let granted = waiter.await.unwrap().unwrap();
    assert_eq!(
        granted - start,
        Duration::from_secs(1),
        "the waiter got both tokens on time"
    );
}

/// A queued waiter and a server pause each hold `try_acquire` back, at the same time,
/// and each lets go when it ends: the pause's end does not forget the waiter, and the
/// waiter's leaving does not forget the pause (they share one word).
#[tokio::test(start_paused = true)]
async fn a_waiter_and_a_pause_together_hold_try_acquire_until_each_ends() {
    let gate = Gate::builder()
        .quota(Quota::per_second(1).burst(1).unwrap())
        .build();
    gate.observe(Feedback::new().retry_after(Duration::from_secs(10)));
    let waiter = {
        let g = gate.clone();
        tokio::spawn(async move { g.acquire().await.map(|_| Instant::now()) })
    };
    tokio::task::yield_now().await;
    let start = Instant::now();
    assert_eq!(
        gate.try_acquire().map(|_| ()),
        Err(Duration::ZERO),
        "a waiter"
    );
    // The waiter is let out when the pause ends, and takes the one permit.
    let granted = waiter.await.unwrap().unwrap();
    assert_eq!(granted - start, Duration::from_secs(10));
    assert_eq!(
        gate.try_acquire().unwrap_err(),
        Duration::from_secs(1),
        "the quota, nothing else"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(gate.try_acquire().is_ok());

    // The other way round: a pause while a waiter waits, the waiter gone first.
    let waiter = {
        let g = gate.clone();
        tokio::spawn(async move { g.acquire().await.map(drop) })
    };
    tokio::task::yield_now().await;
    gate.observe(Feedback::new().retry_after(Duration::from_secs(30)));
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        gate.try_acquire().unwrap_err(),
        Duration::from_secs(25),
        "the pause outlives the waiter"
    );
    tokio::time::advance(Duration::from_secs(25)).await;
    assert!(gate.try_acquire().is_ok());
    let stats = gate.stats();
    assert_eq!((stats.granted, stats.rejected), (3, 3));
}

#[test]
fn headers_are_read_like_githubs() {
    use http::{HeaderMap, HeaderValue, StatusCode};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut h = HeaderMap::new();
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    h.insert(
        "x-ratelimit-reset",
        HeaderValue::from_str(&(now + 1200).to_string()).unwrap(),
    );
    let f = Feedback::from_headers(StatusCode::FORBIDDEN, &h);
    assert_eq!(f.remaining, Some(0));
    let reset = f.reset_in.unwrap();
    assert!(reset > Duration::from_secs(1190) && reset <= Duration::from_secs(1200));
    assert!(f.limited, "403 with Remaining: 0 is a refusal");

    let mut h = HeaderMap::new();
    h.insert("retry-after", HeaderValue::from_static("120"));
    let f = Feedback::from_headers(StatusCode::TOO_MANY_REQUESTS, &h);
    assert_eq!(
        (f.retry_after, f.limited),
        (Some(Duration::from_secs(120)), true)
    );

    let f = Feedback::from_headers(StatusCode::FORBIDDEN, &HeaderMap::new());
    assert!(
        !f.limited,
        "a plain 403 is a permission error, not a rate limit"
    );

    let epoch_2015 = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
    assert_eq!(
        rate_gate::http_date_in("Wed, 21 Oct 2015 07:28:30 GMT", epoch_2015),
        Some(Duration::from_secs(30))
    );
    assert_eq!(rate_gate::http_date_in("not a date", epoch_2015), None);
}

#[tokio::test(start_paused = true)]
async fn an_uneven_quota_never_exceeds_its_count_in_any_period() {
    // 3 per second does not divide a second evenly: the interval rounds up, never down.
    let gate = Gate::builder().quota(Quota::per_second(3)).build();
    let start = Instant::now();
    let mut times = Vec::new();
    for _ in 0..31 {
        gate.acquire().await.unwrap();
        times.push(start.elapsed());
    }
    for window in times.windows(4) {
        assert!(
            window[3] - window[0] >= Duration::from_secs(1),
            "{window:?}"
        );
    }
}

/// Real threads on the lock-free path: the quota is exact under contention.
#[test]
fn threads_racing_on_try_acquire_get_exactly_the_burst() {
    // 1,000 per year with a burst of 1,000: the first 1,000 go at once, then none for
    // almost nine hours, far beyond this test's run.
    let quota = Quota::new(1000, Duration::from_secs(365 * 24 * 3600))
        .unwrap()
        .burst(1000)
        .unwrap();
    let gate = Gate::builder().quota(quota).concurrency(3).build();
    let peak = std::sync::atomic::AtomicU64::new(0);
    let granted: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = 0;
                    for _ in 0..10_000 {
                        if let Ok(permit) = gate.try_acquire() {
                            let now = gate.stats().in_flight;
                            peak.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                            mine += 1;
                            drop(permit);
                        }
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(granted, 1000);
    let stats = gate.stats();
    assert_eq!(stats.granted, 1000);
    assert_eq!(stats.granted + stats.rejected, 40_000);
    assert!(peak.into_inner() <= 3, "never more than 3 in flight");
    assert_eq!(stats.in_flight, 0);
}

/// The grant count lives in the quota's own word, carried out every 16 permits: it
/// stays exact through carries, `acquire_n` sizes that cross several of them at once,
/// racing threads, and quota changes that move the arrival time beside it.
#[tokio::test]
async fn the_grant_count_is_exact_through_carries_threads_and_quota_changes() {
    let plenty = Quota::per_second(1_000_000_000)
        .burst(1_000_000_000)
        .unwrap();
    let gate = Gate::builder().quota(plenty).build();
    let mut expected = 0u64;
    for n in [1u32, 15, 16, 17, 31, 33, 100, 7] {
        drop(gate.acquire_n(n).await.unwrap());
        expected += u64::from(n);
        assert_eq!(gate.stats().granted, expected, "after acquire_n({n})");
    }
    let each: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|_| s.spawn(|| (0..20_003).filter(|_| gate.try_acquire().is_ok()).count()))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap() as u64).sum()
    });
    assert_eq!(each, 3 * 20_003, "the plenty quota refused nobody");
    expected += each;
    assert_eq!(gate.stats().granted, expected);
    // The whole burst at once puts the arrival time a second ahead; a slower quota then
    // pulls it back to half a second (the debt is capped), beside the count.
    drop(gate.acquire_n(1_000_000_000).await.unwrap());
    expected += 1_000_000_000;
    gate.set_quota(Quota::per_second(10).burst(5).unwrap());
    assert_eq!(gate.stats().granted, expected);
    assert!(gate.try_acquire().is_err(), "the capped debt still holds");
    gate.set_quota(Quota::per_second(10).burst(1000).unwrap());
    assert!(gate.try_acquire().is_ok());
    assert_eq!(gate.stats().granted, expected + 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_head_is_not_counted_as_a_request_in_flight() {
    // The head of the line holds a concurrency slot while it waits for quota; when a
    // response says one request remains, that one is still the head's to send.
    let gate = Gate::builder()
        .quota(Quota::per_second(1))
        .concurrency(10)
        .build();
    let start = Instant::now();
    let first = gate.acquire_owned().await.unwrap();
    let g = gate.clone();
    let head = tokio::spawn(async move { g.acquire_owned().await.map(|_| Instant::now()) });
    tokio::task::yield_now().await; // The head is in line, holding its slot.
    first.observe(Feedback::new().remaining(1, HOUR));
    drop(first);
    let granted = head.await.unwrap().unwrap();
    assert_eq!(
        granted - start,
        Duration::from_secs(1),
        "granted at its turn"
    );
    // And that was the last one the server allowed before its reset.
    assert!(gate.try_acquire().is_err());
    assert_eq!(gate.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_halves_once_per_round_of_refusals_and_grows_back() {
    let gate = Gate::builder().concurrency(32).adaptive().build();
    let refused = Feedback::new()
        .limited()
        .retry_after(Duration::from_secs(1));
    // A burst of 32, all refused: one cut (to 16), not 32 of them.
    let permits: Vec<_> = (0..32).map(|_| gate.try_acquire().unwrap()).collect();
    for permit in &permits {
        permit.observe(refused);
    }
    assert_eq!(gate.stats().concurrency, Some(16));
    assert_eq!(
        gate.stats().in_flight,
        32,
        "cut slots are retired as they come back"
    );
    drop(permits);
    assert_eq!(gate.stats().in_flight, 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 16 slots now; a refusal to one sent after the cut cuts again, to 8.
    let permits: Vec<_> = (0..16).map(|_| gate.try_acquire().unwrap()).collect();
    assert!(gate.try_acquire().is_err(), "at most 16 in flight");
    permits[0].observe(refused);
    assert_eq!(gate.stats().concurrency, Some(8));
    drop(permits);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held: Vec<_> = (0..8).map(|_| gate.try_acquire().unwrap()).collect();
    assert!(gate.try_acquire().is_err(), "at most 8 in flight");
    // Each limit's worth of answers that are not refusals adds one slot.
    for permit in &held {
        permit.observe(Feedback::new());
    }
    assert_eq!(gate.stats().concurrency, Some(9));
    let ninth = gate.try_acquire().expect("a ninth slot");
    assert!(gate.try_acquire().is_err());
    drop((held, ninth));
    // Back up to the configured 32, never above.
    for _ in 0..2_000 {
        gate.try_acquire().unwrap().observe(Feedback::new());
    }
    assert_eq!(gate.stats().concurrency, Some(32));
    let all: Vec<_> = (0..32).map(|_| gate.try_acquire().unwrap()).collect();
    assert!(gate.try_acquire().is_err());
    drop(all);
    // A gate that is not adaptive keeps its limit whatever the server says.
    let fixed = Gate::builder().concurrency(4).build();
    fixed.try_acquire().unwrap().observe(refused);
    assert_eq!(fixed.stats().concurrency, Some(4));
}

/// On the real clock the head's last stretch is slept on the blocking pool: every
/// permit is still granted, in arrival order, and a waiter cancelled meanwhile takes no
/// quota.
#[tokio::test(flavor = "current_thread")]
async fn the_fine_finish_on_the_real_clock_grants_in_arrival_order() {
    let gate = Gate::builder().quota(Quota::per_second(500)).build();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (gate, order) = (gate.clone(), order.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            order.lock().unwrap().push(i);
        });
        // One thread: the task runs until it queues before the next is spawned.
        tokio::task::yield_now().await;
    }
    let cancelled = tokio::time::timeout(Duration::from_micros(100), gate.acquire())
        .await
        .is_err();
    while tasks.join_next().await.is_some() {}
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    assert_eq!(gate.stats().granted, 20 + u64::from(!cancelled));
}

/// The default clock is tokio's where tokio's clock is paused when the gate is built:
/// an hour's wait passes in simulated time, exactly.
#[tokio::test(start_paused = true)]
async fn the_default_clock_follows_a_paused_tokio_clock() {
    let gate = Gate::builder().quota(Quota::per_hour(1)).build();
    assert_eq!(gate.clock(), rate_gate::Clock::Tokio);
    drop(gate.try_acquire().unwrap());
    let started = Instant::now();
    drop(gate.acquire().await.unwrap());
    assert_eq!(started.elapsed(), HOUR);
}

/// Elsewhere the default clock is the CPU's counter (feature `quanta`, on by default):
/// outside a runtime and in a runtime whose clock runs; asked for, tokio's.
#[cfg(feature = "quanta")]
#[test]
fn the_default_clock_is_the_cpu_counter_where_time_runs() {
    use rate_gate::Clock;
    assert_eq!(Gate::builder().build().clock(), Clock::Tsc);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(Gate::builder().build().clock(), Clock::Tsc);
        let tokio = Gate::builder().clock(Clock::Tokio).build();
        assert_eq!(tokio.clock(), Clock::Tokio);
    });
}

/// A period the gate's clock cannot hold is refused with the numbers (one per
/// `Duration::MAX` once refused every request, the first included); the longest taken
/// grants its first request at once and then holds.
#[tokio::test(start_paused = true)]
async fn a_period_past_the_longest_is_refused_and_the_longest_grants_at_once() {
    let err = Quota::new(1, Duration::MAX).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidQuota {
                count: 1,
                burst: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(Quota::new(1, rate_gate::LONGEST_PERIOD + Duration::from_nanos(1)).is_err());
    let gate = Gate::builder()
        .quota(Quota::new(1, rate_gate::LONGEST_PERIOD).unwrap())
        .build();
    assert!(gate.try_acquire().is_ok());
    let wait = gate.try_acquire().unwrap_err();
    assert!(wait > rate_gate::LONGEST_PERIOD / 2, "{wait:?}");
}

/// `try_acquire` on a gate with only a quota takes its one-line path: the quota's
/// refusal, the server's pause and a quota changed at runtime still decide as on the
/// full path, and every grant and refusal is counted. (A waiter:
/// `try_acquire_never_jumps_the_line`.)
#[tokio::test(start_paused = true)]
async fn try_acquire_on_a_quota_alone_refuses_counts_and_obeys_the_server() {
    let gate = Gate::builder()
        .quota(Quota::per_second(10).burst(3).unwrap())
        .build();
    for _ in 0..3 {
        assert!(gate.try_acquire().is_ok());
    }
    // The quota refuses, with the wait until the next permit (one tenth of a second).
    assert_eq!(gate.try_acquire().unwrap_err(), Duration::from_millis(100));
    let stats = gate.stats();
    assert_eq!((stats.granted, stats.rejected), (3, 1));

    // The server's pause holds even when the quota would allow.
    tokio::time::advance(Duration::from_secs(1)).await;
    gate.observe(Feedback::new().retry_after(Duration::from_secs(30)));
    let wait = gate.try_acquire().unwrap_err();
    assert_eq!(wait, Duration::from_secs(30));
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(gate.try_acquire().is_ok(), "the pause is over");

    // A quota changed at runtime applies to the next call: burst 1, just spent.
    gate.set_quota(Quota::per_second(1).burst(1).unwrap());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(gate.try_acquire().is_ok());
    assert_eq!(gate.try_acquire().unwrap_err(), Duration::from_secs(1));
    let stats = gate.stats();
    assert_eq!((stats.granted, stats.rejected), (5, 3));
}
