//! `Health::monitor`: each change of grade published once and logged with its reasons,
//! at the next check after the cause, under paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use leakproof::gate::{Feedback, Gate};
use leakproof::{Health, Shutdown, Status};

/// The events logged on this thread: `(level, message)`.
#[derive(Clone, Default)]
struct Logged(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl tracing::Subscriber for Logged {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        // Only the monitor's lines: the gate and the runtime log too.
        if message.0.starts_with("health:") {
            let level = *event.metadata().level();
            self.0.lock().unwrap().push((level, message.0));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn each_change_of_grade_is_published_once_and_logged_with_its_reasons() {
    let logged = Logged::default();
    let _guard = tracing::subscriber::set_default(logged.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let gate = Gate::builder().build();
        let shutdown = Shutdown::new();
        let health = Health::builder()
            .without_temp()
            .without_memory()
            .gate("github", &gate)
            .shutdown(&shutdown)
            .build()
            .unwrap();
        let monitor = health.monitor(Duration::from_secs(1)).unwrap();
        let mut changes = monitor.subscribe();
        assert_eq!(changes.borrow_and_update().status, Status::Healthy);
        let started = tokio::time::Instant::now();

        // A server pause: Degraded at the next check, published once while it lasts.
        gate.observe(Feedback::new().retry_after(Duration::from_secs(30)));
        changes.changed().await.unwrap();
        assert_eq!(changes.borrow_and_update().status, Status::Degraded);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // Healthy again at the check when the pause ends: the next change, none between.
        changes.changed().await.unwrap();
        assert_eq!(changes.borrow_and_update().status, Status::Healthy);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // Many checks later, nothing published; the latest report is still kept.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!changes.has_changed().unwrap());
        assert_eq!(monitor.latest().status, Status::Healthy);

        shutdown.trigger();
        changes.changed().await.unwrap();
        let report = changes.borrow_and_update().clone();
        assert_eq!(report.status, Status::Unhealthy);
        assert_eq!(report.reasons, ["shutting down"]);

        // Dropped, it stops: the sender goes with its task.
        drop(monitor);
        assert!(changes.changed().await.is_err());
    });
    let logged = logged.0.lock().unwrap().clone();
    let levels: Vec<_> = logged.iter().map(|(level, _)| *level).collect();
    assert_eq!(
        levels,
        [
            tracing::Level::WARN,
            tracing::Level::INFO,
            tracing::Level::ERROR
        ],
        "{logged:?}"
    );
    assert!(logged[0].1.contains("github"), "{logged:?}");
    assert!(logged[2].1.contains("shutting down"), "{logged:?}");
}

#[test]
fn a_monitor_needs_a_runtime() {
    let health = Health::builder().build().unwrap();
    let error = health.monitor(Duration::from_secs(1)).unwrap_err();
    assert!(
        error.to_string().contains("needs a tokio runtime"),
        "{error}"
    );
}
