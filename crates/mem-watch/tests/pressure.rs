//! Memory pressure: a PSI trigger where the kernel allows it, polling where it does not.

use std::time::Duration;

use mem_watch::{Error, PressureWatch};

#[tokio::test]
async fn a_trigger_installs_or_refuses_with_a_typed_error() {
    match PressureWatch::trigger(Duration::from_millis(500), Duration::from_secs(2)) {
        Ok(watch) => assert!(watch.is_trigger()),
        Err(Error::Trigger { path, spec, .. }) => {
            assert!(path.ends_with("memory"));
            assert_eq!(spec, "some 500000 2000000");
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test]
async fn parameters_the_kernel_refuses_fall_back_to_polling() {
    // A 1 us window is outside every kernel's accepted range (500 ms to 10 s).
    assert!(matches!(
        PressureWatch::trigger(Duration::from_micros(1), Duration::from_micros(1)),
        Err(Error::Trigger { .. })
    ));
    let watch = PressureWatch::new(Duration::from_micros(1), Duration::from_micros(1)).unwrap();
    assert!(!watch.is_trigger());
}

#[tokio::test(start_paused = true)]
async fn polling_waits_while_there_is_no_pressure() {
    // 100% of the window stalled never happens on an idle machine: wait() must not
    // return within a virtual minute.
    let mut watch = PressureWatch::polling(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(60), watch.wait()).await;
    assert!(waited.is_err(), "no pressure event on an idle machine");
}
