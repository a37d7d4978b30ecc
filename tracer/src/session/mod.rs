//! A tracing session: capture events in, one connection tracker per connection, finished calls
//! out to a sink, until every traced process has exited, time is up, or a signal arrives.

mod report;
mod stats;
mod tracking;

pub use report::{CpuTime, IgnoredConnections, SessionReport};
pub use stats::{HookTime, ProgramRuns, SessionStats};

use std::time::{Duration, Instant};

use crate::{
    capture::{Capture, CaptureError, Tracing, process_alive},
    export::{CallSink, ResourceInfo, ResourceOverrides, Summary},
    grpc::Limits,
    stream::monotonic_now_ns,
};
use tracking::Tracking;

/// Why the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Every traced process exited.
    TracedProcessesExited,
    /// `--duration` elapsed.
    DurationElapsed,
    /// SIGINT or SIGTERM.
    Signal,
}

pub struct Session {
    capture: Capture,
    tracking: Tracking,
    summary: Summary,
    last_liveness_check: Instant,
}

const POLL_INTERVAL: Duration = Duration::from_millis(100);
const LIVENESS_INTERVAL: Duration = Duration::from_millis(500);

impl Session {
    /// `resources` says what the user set of every traced process's resource.
    pub fn new(capture: Capture, limits: Limits, resources: ResourceOverrides) -> Session {
        Session {
            capture,
            tracking: Tracking::new(limits, resources),
            summary: Summary::default(),
            last_liveness_check: Instant::now(),
        }
    }

    pub fn trace(&mut self, pid: u32, how: Tracing) -> Result<(), CaptureError> {
        self.capture.trace_process(pid, how)?;
        self.tracking.alive.insert(pid);
        self.tracking.resources.of(pid);
        Ok(())
    }

    /// The resource of traced process `pid`, as its calls will report it.
    pub fn resource(&mut self, pid: u32) -> std::sync::Arc<ResourceInfo> {
        self.tracking.resources.of(pid)
    }

    /// Runs until a stop condition; every finished call goes to `sink`.
    pub fn run(
        &mut self,
        sink: &mut dyn CallSink,
        stop_requested: &dyn Fn() -> bool,
        duration: Option<Duration>,
    ) -> Result<StopReason, CaptureError> {
        let deadline = duration.map(|duration| Instant::now() + duration);
        loop {
            if stop_requested() {
                return Ok(StopReason::Signal);
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(StopReason::DurationElapsed);
            }
            if self.tracking.alive.is_empty() {
                return Ok(StopReason::TracedProcessesExited);
            }
            self.poll(POLL_INTERVAL, sink)?;
            if self.last_liveness_check.elapsed() >= LIVENESS_INTERVAL {
                // Exit records can be lost with a full ring buffer; /proc has the last word.
                self.tracking.alive.retain(|&pid| process_alive(pid));
                self.last_liveness_check = Instant::now();
            }
        }
    }

    fn poll(&mut self, timeout: Duration, sink: &mut dyn CallSink) -> Result<(), CaptureError> {
        let tracking = &mut self.tracking;
        self.capture
            .poll(timeout, &mut |event| tracking.handle(event))?;
        let tracking = &mut self.tracking;
        tracking.release_held(monotonic_now_ns(), false);
        tracking
            .frame_sync
            .offer(&mut self.capture, &tracking.trackers);
        let Tracking {
            finished,
            resources,
            ..
        } = &mut self.tracking;
        if !finished.is_empty() {
            // Read in place: a call record is a few hundred bytes, not worth moving again.
            for call in finished.iter() {
                self.summary.record(call);
                sink.on_call(call, &resources.of(call.connection.pid));
            }
            finished.clear();
            sink.flush();
        }
        resources.let_go_of_exited();
        Ok(())
    }

    /// Delivers what the kernel still holds, flushes the sink and reports. Calls still in
    /// flight have no outcome yet: they are counted, not reported. The programs stay attached
    /// until the returned [`Capture`] is dropped (detaching takes the kernel a while, so a caller
    /// can show the report first).
    pub fn finish(mut self, stop: StopReason, sink: &mut dyn CallSink) -> (SessionReport, Capture) {
        // No process is stopped on new code from here on; the polls below continue any that is.
        self.capture.stop_holding();
        for _ in 0..3 {
            if self.poll(Duration::from_millis(20), sink).is_err() {
                break;
            }
        }
        // Calls held for a status lookup go with what is known.
        self.tracking.release_held(monotonic_now_ns(), true);
        let _ = self.poll(Duration::ZERO, sink);
        let mut in_flight_at_exit = 0;
        for tracker in self.tracking.trackers.values() {
            in_flight_at_exit += tracker.open_calls() as u64;
            self.tracking.connection_stats.add(tracker.stats());
        }
        let ignored_connections = self.tracking.ignored_by_protocol;
        let process_memory = self.tracking.memory_stats();
        let report = SessionReport {
            stop,
            summary: self.summary,
            capture_losses: self.capture.losses(),
            traffic: self.capture.traffic(),
            connections: self.tracking.connection_stats,
            ignored_connections,
            tls_not_hooked: self.capture.tls_not_hooked(),
            in_flight_at_exit,
            frame_sync_offers: self.tracking.frame_sync.placed(),
            export: sink.finish(),
            hook_time: self.capture.hook_time(),
            verified_instructions: self.capture.verified_instructions(),
            process_memory,
        };
        (report, self.capture)
    }
}
