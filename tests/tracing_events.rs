//! The events a shutdown emits (feature `tracing`), captured by a minimal subscriber.
#![cfg(feature = "tracing")]

use std::fmt::Write;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_drain::Drain;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Records every event as "LEVEL target: message k=v ...".
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl Capture {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = Line(format!("{} {}:", meta.level(), meta.target()));
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(start_paused = true)]
async fn phases_progress_and_the_deadline_are_reported() {
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.clone());

    let drain = Drain::new();
    let stuck = drain.guard();
    let shutdown = tokio::spawn(
        drain
            .shutdown()
            .unready_for(Duration::from_secs(2))
            .grace(Duration::from_millis(3500))
            .progress_every(Duration::from_secs(1))
            .into_future(),
    );
    let report = shutdown.await.unwrap();
    assert!(report.timed_out());
    drop(stuck);

    let lines = capture.lines();
    let phases: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("phase changed"))
        .collect();
    assert_eq!(phases.len(), 3, "{lines:#?}");
    assert!(phases[0].contains("phase=\"unready\""), "{lines:#?}");
    assert!(phases[1].contains("phase=\"draining\""), "{lines:#?}");
    assert!(phases[2].contains("phase=\"drained\""), "{lines:#?}");
    let progress = lines
        .iter()
        .filter(|line| line.contains("requests in flight"))
        .count();
    assert_eq!(progress, 3, "one a second for 3.5 s: {lines:#?}");
    let warning = lines
        .iter()
        .find(|line| line.starts_with(&format!("{} tower_drain:", Level::WARN)))
        .expect("a warning at the deadline");
    assert!(warning.contains("abandoned=1"), "{warning}");
    assert!(lines.iter().all(|line| line.contains(" tower_drain:")));
}
