//! Whether the duration the tracer gives each call agrees with what the call's client measured.
//!
//! The tracer sees the request leave after the client started its clock and the answer arrive
//! before the client stopped it, so a span is never longer than its call (beyond clock
//! granularity), and shorter only by what the client does off the wire.

use std::time::Duration;

/// How much later than its answer's arrival a client may stop its clock, at most: on a busy
/// 2-core machine the client's thread can wait a few scheduler slices to run again.
const WAKE_UP_DELAY: Duration = Duration::from_millis(20);

/// Collects the sequential calls of one run whose span fell short of the client's clock.
pub struct CallTiming {
    label: String,
    short: Vec<String>,
}

impl CallTiming {
    pub fn new(label: &str) -> Self {
        CallTiming {
            label: label.to_owned(),
            short: Vec::new(),
        }
    }

    /// Checks one call of `scenario` (as the example clients name them).
    pub fn check(&mut self, scenario: &str, traced: Duration, measured: Duration) {
        let label = &self.label;
        // A cancelled call, and one whose deadline passed, ends on the wire when the client's
        // reset is written, which its library may do just after the caller gave up and stopped
        // its clock (tonic's connection task writes it; once 2.7 ms later on this 2-core VM).
        let client_reset = matches!(scenario, "cancelled" | "deadline_exceeded");
        let late = Duration::from_millis(if client_reset { 5 } else { 2 });
        assert!(
            traced <= measured + late,
            "{label} {scenario}: traced {traced:?}, longer than the client measured, {measured:?}"
        );
        // The client's clock also covers copying the messages in and out of its library,
        // which for the 2 MiB calls is milliseconds the wire never sees (typically 2.5 ms in
        // all), and on this shared 2-core machine a preemption in the middle of that copying
        // (once 7 ms) is as long again.
        let off_wire = if scenario == "large" {
            Duration::from_millis(4) + measured / 4
        } else {
            measured / 10
        };
        let slack = Duration::from_millis(5) + off_wire;
        if traced + slack < measured {
            assert!(
                traced + slack + WAKE_UP_DELAY >= measured,
                "{label} {scenario}: traced {traced:?}, far shorter than the client measured, \
                 {measured:?}"
            );
            self.short.push(format!(
                "{scenario}: traced {traced:?}, client measured {measured:?}"
            ));
        }
    }

    /// The client's clock stops only when its thread runs again after the answer arrived, and
    /// on a busy machine that wake-up can wait a scheduler slice or two (5 ms seen with both
    /// cores loaded, in about one run in twenty). So one call per run may fall short of the
    /// slack, by less than `WAKE_UP_DELAY`. A span that misses a real part of its call falls
    /// short in every run (and the cancelled call's by 100 ms).
    pub fn finish(self) {
        let CallTiming { label, short } = self;
        if !short.is_empty() {
            println!("{label}: spans shorter than the client measured: {short:#?}");
        }
        assert!(
            short.len() <= 1,
            "{label}: more than one span shorter than its call: {short:#?}"
        );
    }
}
