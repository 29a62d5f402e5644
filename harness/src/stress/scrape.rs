//! The harness scraping itself: during S3 a [`leakproof::Endpoint`] serves this
//! process's `/metrics` and `/healthz`, and a thread GETs both over HTTP on an
//! interval, as a Prometheus server and a load balancer would. The series go into
//! `report.json` (`scrapes`) and onto the chart (panels below the recorder's).
//!
//! The scrapes must not disturb the exact counts the scenario judges: each one holds
//! the recorder's [pause](leakproof_stress::recorder::pause_sampler) (which
//! `Counts::read` also takes) until the endpoint has closed its side of the
//! connections, and the first one runs before the runner's baseline. (Publishing holds
//! no descriptor between scrapes: the first version of mem-watch's `publish` kept its
//! probe's files open, and this scenario's final count caught it, 6 over baseline.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Result;

/// Every scrape of the run, for the report.
pub static SCRAPES: Mutex<Vec<Scrape>> = Mutex::new(Vec::new());

/// One scrape of `/metrics` and `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub struct Scrape {
    /// The scenario it was taken in.
    pub scenario: &'static str,
    /// Seconds on the recorder's clock.
    pub t: f64,
    /// `/healthz`'s status code and the grade in its JSON.
    pub healthz: u16,
    pub grade: String,
    /// From `/metrics`: the [`GATES`]' permits in flight and granted (their names'
    /// totals: dropped gates of the same name included).
    pub gate_in_flight: f64,
    pub gate_granted: f64,
    /// Live temp entries, live children, resident MiB, open fds.
    pub temp_live: f64,
    pub children_live: f64,
    pub rss_mib: f64,
    pub fds: f64,
    /// `/metrics`' status code and size.
    pub metrics_status: u16,
    pub metrics_bytes: usize,
}

/// The endpoint and the thread scraping it.
pub struct Scraper {
    scenario: &'static str,
    endpoint: Option<Arc<leakproof::Endpoint>>,
    clock: (f64, Instant),
    first: Scrape,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Scrape>>>,
}

impl Scraper {
    /// Serves `health` on loopback, scrapes once (before the caller's baseline), then
    /// every `every` on a thread of its own. `now` is the recorder's clock.
    pub async fn start(
        scenario: &'static str,
        health: leakproof::Health,
        now: f64,
        every: Duration,
    ) -> Result<Scraper> {
        let endpoint = Arc::new(
            leakproof::Endpoint::builder(health)
                .bind("127.0.0.1:0")
                .await?,
        );
        let clock = (now, Instant::now());
        let first = {
            let endpoint = endpoint.clone();
            tokio::task::spawn_blocking(move || scrape(scenario, &endpoint, clock)).await??
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (endpoint, stop) = (endpoint.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut scrapes = Vec::new();
                loop {
                    std::thread::park_timeout(every);
                    if stop.load(Ordering::SeqCst) {
                        return scrapes;
                    }
                    match scrape(scenario, &endpoint, clock) {
                        Ok(s) => scrapes.push(s),
                        Err(e) => eprintln!("{scenario}: a scrape failed: {e}"),
                    }
                }
            })
        };
        Ok(Scraper {
            scenario,
            endpoint: Some(endpoint),
            clock,
            first,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread, scrapes a last time and stops the endpoint. Returns every
    /// scrape of this scenario in order (the last one last) and keeps them for the
    /// report.
    pub async fn finish(mut self) -> Result<Vec<Scrape>> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("finished once");
        thread.thread().unpark();
        let endpoint = self.endpoint.take().expect("finished once");
        let (scenario, clock) = (self.scenario, self.clock);
        let (later, endpoint) = tokio::task::spawn_blocking(move || {
            let mut scrapes = thread.join().unwrap_or_default();
            let last = scrape(scenario, &endpoint, clock);
            scrapes.push(last?);
            Ok::<_, String>((scrapes, endpoint))
        })
        .await??;
        let mut scrapes = vec![self.first.clone()];
        scrapes.extend(later);
        SCRAPES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(scrapes.iter().cloned());
        match Arc::try_unwrap(endpoint) {
            Ok(endpoint) => endpoint.stop().await,
            Err(_) => return Err("the endpoint is still shared".into()),
        }
        Ok(scrapes)
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

/// One GET on its own connection (`Connection: close`): the status and the body.
fn get(addr: SocketAddr, path: &str) -> std::result::Result<(u16, String), String> {
    let fail = |e: std::io::Error| format!("GET {path}: {e}");
    let mut stream = TcpStream::connect(addr).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: harness\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(fail)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status line in {response:?}"))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// The sum of every series named `name` whose labels contain `label` (`""`: any),
/// in a Prometheus text page.
fn sum(page: &str, name: &str, label: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (series_name, labels) = series.split_once('{').unwrap_or((series, ""));
            (series_name == name && labels.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The gates the scenario watches, by name.
pub const GATES: [&str; 2] = ["api", "codeload"];

/// Scrapes both paths while the recorder's sampler (and so `Counts::read`) is paused,
/// and holds the pause until the endpoint has closed its side.
fn scrape(
    scenario: &'static str,
    endpoint: &leakproof::Endpoint,
    (offset, start): (f64, Instant),
) -> std::result::Result<Scrape, String> {
    let _paused = leakproof_stress::recorder::pause_sampler();
    let t = offset + start.elapsed().as_secs_f64();
    let addr = endpoint.local_addr();
    let (metrics_status, page) = get(addr, "/metrics")?;
    let (healthz, body) = get(addr, "/healthz")?;
    let grade = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("unreadable: {body}"));
    // The endpoint's side closes just after ours sees the end: wait for it (bounded).
    let until = Instant::now() + Duration::from_secs(1);
    while endpoint.connections() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Scrape {
        scenario,
        t,
        healthz,
        grade,
        gate_in_flight: gates(&page, "rate_gate_in_flight"),
        gate_granted: gates(&page, "rate_gate_granted_total"),
        temp_live: sum(&page, "scoped_temp_entries_live", ""),
        children_live: sum(&page, "proc_reaper_children_live", ""),
        rss_mib: sum(&page, "mem_watch_rss_bytes", "") / (1 << 20) as f64,
        fds: sum(&page, "mem_watch_fds", ""),
        metrics_status,
        metrics_bytes: page.len(),
    })
}

fn gates(page: &str, name: &str) -> f64 {
    GATES
        .iter()
        .map(|gate| sum(page, name, &format!("gate=\"{gate}\"")))
        .sum()
}

/// The chart's panels for the scrapes: the gates' permits in flight, and the grade.
pub fn panels(scrapes: &[Scrape]) -> Vec<leakproof_stress::recorder::Panel> {
    let grade = |s: &Scrape| match s.grade.as_str() {
        "healthy" => 0.0,
        "degraded" => 1.0,
        _ => 2.0,
    };
    vec![
        leakproof_stress::recorder::Panel {
            title: "scraped /metrics: gate permits in flight (api + codeload)".into(),
            points: scrapes.iter().map(|s| (s.t, s.gate_in_flight)).collect(),
        },
        leakproof_stress::recorder::Panel {
            title: "scraped /healthz: grade (0 healthy, 1 degraded, 2 unhealthy)".into(),
            points: scrapes.iter().map(|s| (s.t, grade(s))).collect(),
        },
    ]
}
