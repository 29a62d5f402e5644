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
}
