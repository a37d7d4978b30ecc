//! How many of a run's spans name their call's method and status: the recall of a tracer that
//! joined connections mid-flight, measured against the 90% it aims for.

use crate::otlp_receiver::ReceivedSpan;

/// How many of the spans name their method and their status, and from which call on (in start
/// order) every later one does both.
pub struct Recall {
    pub calls: usize,
    pub methods: usize,
    pub statuses: usize,
    pub complete_from: Option<usize>,
}

impl Recall {
    pub fn of(spans: &[ReceivedSpan]) -> Recall {
        let mut spans: Vec<&ReceivedSpan> = spans.iter().collect();
        spans.sort_by_key(|span| span.start_unix_nanos);
        let method = |span: &ReceivedSpan| span.attribute("tracer.method_resolved") == Some("true");
        let status = |span: &ReceivedSpan| span.attribute("tracer.status_known") == Some("true");
        let both = |span: &&ReceivedSpan| method(span) && status(span);
        let complete_from = spans
            .iter()
            .rposition(|span| !both(span))
            .map_or(Some(0), |last| (last + 1 < spans.len()).then_some(last + 1));
        Recall {
            calls: spans.len(),
            methods: spans.iter().filter(|span| method(span)).count(),
            statuses: spans.iter().filter(|span| status(span)).count(),
            complete_from,
        }
    }

    /// Prints the figures under `label`.
    pub fn report(&self, label: &str) {
        println!(
            "{label}: method for {} of {} calls, status for {}; every call named from call {}",
            self.methods,
            self.calls,
            self.statuses,
            self.complete_from
                .map_or("(never)".into(), |index| (index + 1).to_string()),
        );
    }

    pub fn methods_at_least_90_percent(&self) -> bool {
        self.methods * 10 >= self.calls * 9
    }

    pub fn statuses_at_least_90_percent(&self) -> bool {
        self.statuses * 10 >= self.calls * 9
    }
}
