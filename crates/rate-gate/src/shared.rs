//! The quota in Redis: one GCRA ledger shared by every process and machine on a key.
//!
//! Each decision is one Lua script run atomically by the server (no read-modify-write
//! race between processes), on the server's own clock (`TIME`), so the processes'
//! clocks do not matter. Beside the ledger, two keys share the server's word: a pause
//! (`Retry-After`, a refusal) and a budget (`X-RateLimit-Remaining` until the reset).
//! Every key carries an expiry, so an idle key leaves Redis on its own.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{Error, Feedback, Quota, Result};

/// What a gate does while Redis cannot be reached (or answers slower than its timeout).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnRedisError {
    /// Refuse: `acquire` returns [`Error::Backend`] at once. Nothing is granted that
    /// Redis did not grant.
    FailClosed,
    /// Go on with a local gate holding `share` of the quota (say `1/8` for eight
    /// processes). What it grants is charged to the shared ledger when Redis is back,
    /// so the total stays within the quota once the outage is over.
    Local {
        /// The fraction of the quota this process may use alone, in `(0, 1]`.
        share: f64,
    },
}

/// Where and how a gate keeps its quota in Redis; give it to
/// [`GateBuilder::redis`](crate::GateBuilder::redis).
///
/// The shared ledger counts whole microseconds of the Redis server's clock, so the
/// time between two permits is rounded up to the microsecond there: a quota whose
/// interval is not a whole number of them (999 per 10 s is 10,010.01 us) runs that
/// fraction under its rate, never over it.
///
/// ```no_run
/// use rate_gate::{Gate, OnRedisError, Quota, RedisQuota};
///
/// // Every CI worker on this token, on any machine, shares one 5,000/hour ledger.
/// let shared = RedisQuota::new("redis://10.0.0.5:6379/", "github:token-1")?
///     .on_error(OnRedisError::Local { share: 1.0 / 20.0 })
///     .batch(4);
/// let gate = Gate::builder().quota(Quota::per_hour(5000)).redis(shared).build();
/// # Ok::<(), rate_gate::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisQuota {
    client: redis::Client,
    key: String,
    on_error: OnRedisError,
    batch: u32,
    lease: Duration,
    timeout: Duration,
    retry_every: Duration,
}

impl RedisQuota {
    /// The quota lives under `key` (prefixed `rate-gate:`) on the server at `url`
    /// (`redis://host:port/db`). Fails on a malformed URL; nothing is connected yet.
    pub fn new(url: &str, key: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| Error::Backend {
            key: key.to_string(),
            reason: format!("bad Redis URL: {e}"),
        })?;
        Ok(RedisQuota {
            client,
            key: key.to_string(),
            on_error: OnRedisError::FailClosed,
            batch: 1,
            lease: Duration::from_secs(1),
            timeout: Duration::from_millis(200),
            retry_every: Duration::from_secs(1),
        })
    }

    /// What to do while Redis is unreachable (default [`OnRedisError::FailClosed`]).
    pub fn on_error(mut self, on_error: OnRedisError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Takes up to `n` permits per round trip and hands them out locally (default 1:
    /// no batching). A batch is never more than the quota's burst allows at that moment. Permits taken this way are already charged to the shared ledger,
    /// so the total never exceeds the quota; unused ones lapse after the
    /// [lease](Self::lease).
    pub fn batch(mut self, n: u32) -> Self {
        self.batch = n.max(1);
        self
    }

    /// How long batched permits stay usable (default 1 s). A pause learned by another
    /// process reaches this one's batched permits within the lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long one round trip may take before Redis counts as unreachable (default
    /// 200 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// While Redis is unreachable, how often a background probe tries it again (default
    /// 1 s); meanwhile decisions follow [`on_error`](Self::on_error) at once.
    pub fn retry_every(mut self, every: Duration) -> Self {
        self.retry_every = every;
        self
    }
}

/// GCRA in microseconds of the server's clock. KEYS: ledger, pause, budget. ARGV:
/// interval, burst, the least to take, the most to take (a batch), permits granted
/// locally during an outage (charged now), and a floor for the ledger (the latest
/// value this process saw, should Redis have lost it).
/// Returns `{granted, wait_us}`.
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local least = tonumber(ARGV[3])
local most = tonumber(ARGV[4])
local debt = tonumber(ARGV[5])
local floor = tonumber(ARGV[6])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < floor then tat = floor end
local base = math.max(tat, now)
if debt > 0 then
  base = base + debt * interval
end
local function save(v)
  if v > now then
    redis.call('SET', KEYS[1], string.format('%d', v), 'PX', math.ceil((v - now) / 1000) + 1000)
  end
end
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then
  save(base)
  return {0, pause * 1000, base}
end
local left = redis.call('GET', KEYS[3])
if left then
  left = tonumber(left)
  if left < least then
    save(base)
    return {0, math.max(redis.call('PTTL', KEYS[3]), 1) * 1000, base}
  end
  most = math.min(most, left)
end
local horizon = now + interval * burst
local fit = math.floor((horizon - base) / interval)
if fit < least then
  save(base)
  return {0, base + least * interval - horizon, base}
end
local take = math.min(fit, most)
local next = base + take * interval
save(next)
if left then redis.call('DECRBY', KEYS[3], take) end
return {take, 0, next}
"#;

/// Shares a pause (ARGV[1] ms) and a budget (ARGV[2] left, ARGV[3] ms to its reset;
/// -1 when none): a pause only ever grows; a budget only ever shrinks within its
/// window, and a later window replaces it.
const OBSERVE: &str = r#"
local pause = tonumber(ARGV[1])
if pause > 0 and redis.call('PTTL', KEYS[1]) < pause then
  redis.call('SET', KEYS[1], '1', 'PX', pause)
end
local left = tonumber(ARGV[2])
local reset = tonumber(ARGV[3])
if left >= 0 and reset > 0 then
  local cur = redis.call('GET', KEYS[2])
  local ttl = redis.call('PTTL', KEYS[2])
  if not cur or ttl + 1000 < reset or tonumber(cur) > left then
    redis.call('SET', KEYS[2], left, 'PX', reset)
  end
end
return 1
"#;

/// What a decision found.
pub(crate) enum Decision {
    Granted,
    /// Nanoseconds until it might be possible.
    Wait(u64),
}

#[derive(Debug, Default)]
struct Credits {
    left: u32,
    /// Usable until, on the gate's clock.
    until: u64,
}

/// Counters of the Redis backend.
#[derive(Debug, Default)]
struct Counters {
    round_trips: AtomicU64,
    from_batch: AtomicU64,
    fallback: AtomicU64,
    failures: AtomicU64,
}

/// What the Redis backend has done so far (part of [`Stats`](crate::Stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Decisions that went to Redis.
    pub round_trips: u64,
    /// Permits handed out from a batch, without a round trip.
    pub from_batch: u64,
    /// Permits granted by the local fallback while Redis was unreachable.
    pub fallback: u64,
    /// Round trips that failed or timed out.
    pub failures: u64,
}

pub(crate) struct Remote {
    config: RedisQuota,
    keys: [String; 3],
    /// The emission interval in whole microseconds of the server's clock, rounded up.
    interval_us: u64,
    burst: u32,
    take: redis::Script,
    observe: redis::Script,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    credits: Mutex<Credits>,
    /// Redis is unreachable: decisions follow the failure mode while a probe retries it.
    down: AtomicBool,
    probing: AtomicBool,
    /// Granted by the fallback since Redis was last reached: charged on the next trip.
    debt: AtomicU64,
    /// The latest ledger value Redis returned (its microseconds).
    seen_tat: AtomicU64,
    fallback: Option<crate::Gate>,
    counters: Counters,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("key", &self.config.key)
            .field("on_error", &self.config.on_error)
            .finish_non_exhaustive()
    }
}

impl Remote {
    pub(crate) fn new(config: RedisQuota, quota: Quota, clock: crate::Clock) -> Remote {
        // Rounded up, as the interval itself is: rounded down (10,010.01 us to 10,010),
        // the ledger would fit one grant more than the quota into some windows.
        let interval_us = units_up(quota.emission_interval(), 1_000);
        let fallback = match config.on_error {
            OnRedisError::FailClosed => None,
            OnRedisError::Local { share } => {
                let share = if share.is_finite() {
                    share.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let count = ((f64::from(quota.count()) * share).floor() as u32).max(1);
                let burst =
                    ((f64::from(quota.burst_size()) * share).floor() as u32).clamp(1, count);
                let local = Quota::new(count, quota.period())
                    .and_then(|q| q.burst(burst))
                    .unwrap_or(quota);
                Some(crate::Gate::builder().quota(local).clock(clock).build())
            }
        };
        let prefix = format!("rate-gate:{}", config.key);
        Remote {
            keys: [
                format!("{prefix}:tat"),
                format!("{prefix}:pause"),
                format!("{prefix}:budget"),
            ],
            interval_us,
            burst: quota.burst_size(),
            take: redis::Script::new(TAKE),
            observe: redis::Script::new(OBSERVE),
            conn: tokio::sync::Mutex::new(None),
            credits: Mutex::new(Credits::default()),
            down: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            debt: AtomicU64::new(0),
            seen_tat: AtomicU64::new(0),
            fallback,
            counters: Counters::default(),
            config,
        }
    }

    pub(crate) fn burst(&self) -> u32 {
        self.burst
    }

    pub(crate) fn stats(&self) -> RedisStats {
        let c = &self.counters;
        RedisStats {
            round_trips: c.round_trips.load(Ordering::Relaxed),
            from_batch: c.from_batch.load(Ordering::Relaxed),
            fallback: c.fallback.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        }
    }

    /// A batched permit, if one is left and still leased.
    pub(crate) fn take_credit(&self, n: u32, now: u64) -> bool {
        let mut credits = self.credits.lock().unwrap_or_else(PoisonError::into_inner);
        if credits.until > now && credits.left >= n {
            credits.left -= n;
            self.counters
                .from_batch
                .fetch_add(u64::from(n), Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Gives back permits granted but not used (a local pause arrived first).
    pub(crate) fn refund(&self, n: u32, now: u64) {
        let mut credits = self.credits.lock().unwrap_or_else(PoisonError::into_inner);
        if credits.until <= now {
            credits.left = 0;
            credits.until = now.saturating_add(nanos(self.config.lease));
        }
        credits.left += n;
    }

    /// One decision for `n` permits: from the batch, from Redis, or per the failure
    /// mode.
    pub(crate) async fn decide(self: &Arc<Self>, n: u32, now: u64) -> Result<Decision> {
        if self.take_credit(n, now) {
            return Ok(Decision::Granted);
        }
        if self.down.load(Ordering::Acquire) {
            return self.when_down(
                n,
                now,
                Cow::Borrowed("unreachable (a probe is retrying it)"),
            );
        }
        let most = self.config.batch.max(n);
        let debt = self.debt.load(Ordering::Acquire);
        let outcome =
            tokio::time::timeout(self.config.timeout, self.round_trip(n, most, debt)).await;
        let reason: Cow<'static, str> = match outcome {
            Ok(Ok((granted, wait_us, tat))) => {
                self.debt.fetch_sub(debt, Ordering::AcqRel);
                self.seen_tat.fetch_max(tat, Ordering::AcqRel);
                if granted >= n {
                    if granted > n {
                        let mut credits =
                            self.credits.lock().unwrap_or_else(PoisonError::into_inner);
                        credits.left = granted - n;
                        credits.until = now.saturating_add(nanos(self.config.lease));
                    }
                    return Ok(Decision::Granted);
                }
                return Ok(Decision::Wait(wait_us.saturating_mul(1000).max(1)));
            }
            Ok(Err(e)) => e.to_string().into(),
            Err(_) => format!("no answer within {:?}", self.config.timeout).into(),
        };
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        let was_up = !self.down.swap(true, Ordering::AcqRel);
        // Going down: the local gate starts with its burst spent, as the shared ledger
        // may well be; what it grants is charged there on return.
        if was_up && let Some(fallback) = &self.fallback {
            fallback.spend_burst(now);
        }
        tracing::warn!(key = %self.config.key, %reason, "rate-gate: Redis unreachable");
        self.probe();
        self.when_down(n, now, reason)
    }

    /// Retries Redis in the background every `retry_every` until it answers, so that
    /// decisions meanwhile never wait for a timeout.
    fn probe(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                // A new connection each time: the old one may be wedged.
                *this.conn.lock().await = None;
                tokio::time::sleep(this.config.retry_every).await;
                let ping = tokio::time::timeout(this.config.timeout, async {
                    let mut conn = this.connection().await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await
                })
                .await;
                if matches!(ping, Ok(Ok(_))) {
                    tracing::info!(key = %this.config.key, "rate-gate: Redis reachable again");
                    this.down.store(false, Ordering::Release);
                    break;
                }
            }
            this.probing.store(false, Ordering::Release);
        });
    }

    /// The failure mode's answer; `reason` becomes the error's text only when failing
    /// closed (the fallback path, taken per decision during an outage, allocates
    /// nothing).
    fn when_down(&self, n: u32, now: u64, reason: Cow<'static, str>) -> Result<Decision> {
        let Some(fallback) = &self.fallback else {
            return Err(Error::Backend {
                key: self.config.key.clone(),
                reason: reason.into_owned(),
            });
        };
        match fallback.take(n, now) {
            crate::gate::Take::Granted => {
                self.debt.fetch_add(u64::from(n), Ordering::AcqRel);
                self.counters
                    .fallback
                    .fetch_add(u64::from(n), Ordering::Relaxed);
                Ok(Decision::Granted)
            }
            crate::gate::Take::Wait(ns) => Ok(Decision::Wait(ns)),
            crate::gate::Take::OverBurst(burst) => Err(Error::OverBurst {
                requested: n,
                burst,
            }),
        }
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.timeout))
            .set_response_timeout(Some(self.config.timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(self.config.client.clone(), config).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn round_trip(
        &self,
        least: u32,
        most: u32,
        debt: u64,
    ) -> redis::RedisResult<(u32, u64, u64)> {
        self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.connection().await?;
        let (granted, wait_us, tat): (i64, i64, i64) = self
            .take
            .key(&self.keys[0])
            .key(&self.keys[1])
            .key(&self.keys[2])
            .arg(self.interval_us)
            .arg(self.burst)
            .arg(least)
            .arg(most)
            .arg(debt)
            .arg(self.seen_tat.load(Ordering::Acquire))
            .invoke_async(&mut conn)
            .await?;
        Ok((
            u32::try_from(granted).unwrap_or(0),
            u64::try_from(wait_us).unwrap_or(0),
            u64::try_from(tat).unwrap_or(0),
        ))
    }

    /// Shares what a response said with every process, in the background (needs a
    /// runtime; without one, only this process learns it).
    pub(crate) fn share(self: &std::sync::Arc<Self>, feedback: &Feedback, in_flight: u64) {
        let mut pause = feedback.retry_after;
        if feedback.limited && pause.is_none() {
            pause = Some(feedback.reset_in.unwrap_or(crate::DEFAULT_REFUSAL_PAUSE));
        }
        let budget = match (feedback.remaining, feedback.reset_in) {
            (Some(left), Some(reset)) if !reset.is_zero() => {
                Some((left.saturating_sub(in_flight), reset))
            }
            _ => None,
        };
        if pause.is_none() && budget.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("rate-gate: no runtime to share feedback through Redis");
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            let pause_ms = pause.map_or(0, |p| units_up(p, 1_000_000));
            let (left, reset_ms) = budget.map_or((-1i64, 0u64), |(l, r)| {
                (i64::try_from(l).unwrap_or(i64::MAX), units_up(r, 1_000_000))
            });
            let sent = tokio::time::timeout(this.config.timeout, async {
                let mut conn = this.connection().await?;
                this.observe
                    .key(&this.keys[1])
                    .key(&this.keys[2])
                    .arg(pause_ms)
                    .arg(left)
                    .arg(reset_ms)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await;
            if !matches!(sent, Ok(Ok(_))) {
                tracing::warn!(key = %this.config.key, "rate-gate: could not share the server's word through Redis");
            }
        });
    }
}

/// `d` in whole units of `unit_ns` nanoseconds, rounded up, at least one: what Redis
/// is given (the ledger's interval in microseconds, a `PX` in milliseconds) never
/// ends before what it stands for, so the ledger never fits a grant more into a window,
/// and a shared pause or budget never ends before the server's word does.
fn units_up(d: Duration, unit_ns: u128) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(unit_ns))
        .unwrap_or(u64::MAX)
        .max(1)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
