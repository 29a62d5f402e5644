//! What the crates' tests share. A dev-dependency by path without a version, so
//! `cargo package` leaves it out of the published crates.

/// Reading what the `metrics` feature recorded: a Prometheus recorder installed for
/// the test binary, and one series read back from its text page.
pub mod metrics {
    use std::sync::OnceLock;

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

    /// This test binary's recorder, installed on first use: call it before anything
    /// records.
    pub fn recorder() -> &'static PrometheusHandle {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        HANDLE.get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("the only recorder of this test binary")
        })
    }

    /// A reading of one series: `name` with at least `labels` (a histogram, rendered
    /// as a summary, is read as `name_count` or `name_sum`).
    pub fn value(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let page = recorder().render();
        page.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
                let found = rest.trim_end_matches('}');
                let has =
                    |(k, v): &(&str, &str)| found.split(',').any(|l| l == format!("{k}=\"{v}\""));
                (series_name == name && labels.iter().all(has)).then(|| value.parse().ok())?
            })
    }

    /// A thread that runs `publish` and reads one series over and over until
    /// [`Monotonic::stop`], failing if the series ever goes back: a counter must stay
    /// monotonic while the instances behind it come and go.
    #[derive(Debug)]
    pub struct Monotonic {
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        thread: std::thread::JoinHandle<()>,
    }

    /// Starts a [`Monotonic`] watch of `name` with `labels`, publishing with `publish`.
    pub fn watch_monotonic(
        publish: fn(),
        name: &'static str,
        labels: &'static [(&'static str, &'static str)],
    ) -> Monotonic {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut last = 0.0;
                while !stop.load(Ordering::SeqCst) {
                    publish();
                    let now = value(name, labels).unwrap_or(0.0);
                    assert!(now >= last, "{name} went back from {last} to {now}");
                    last = now;
                }
            })
        };
        Monotonic { stop, thread }
    }

    impl Monotonic {
        /// Stops the watch; panics if the series went back.
        pub fn stop(self) {
            self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            self.thread.join().expect("the series never went back");
        }
    }
}
