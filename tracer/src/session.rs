//! A tracing session: capture events in, one connection tracker per connection, finished calls
//! out to a sink, until every traced process has exited, time is up, or a signal arrives.

use std::time::{Duration, Instant};

use foldhash::{HashMap, HashSet};

use crate::{
    capture::{
        Capture, CaptureError, CaptureEvent, CaptureTraffic, Closing, Direction, LossReport,
        ProgramTime, SyncOffer, process_alive,
    },
    export::{CallSink, ExportReport, Summary},
    grpc::{CallRecord, ConnectionFacts, ConnectionTracker, EndReason, Limits, TrackerStats},
};

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

/// Everything reported when the session ends.
#[derive(Debug, Clone)]
pub struct SessionReport {
    pub stop: StopReason,
    pub summary: Summary,
    pub capture_losses: LossReport,
    pub traffic: CaptureTraffic,
    pub connections: TrackerStats,
    /// Non-HTTP/2 connections that were recognised and ignored.
    pub ignored_connections: u64,
    /// Calls still in flight when tracing stopped (not reported: they have no outcome yet).
    pub in_flight_at_exit: u64,
    /// Times the kernel side was handed our frame position after it lost track of a
    /// connection direction (see [`Capture::offer_frame_sync`]).
    pub frame_sync_offers: u64,
    pub export: ExportReport,
    /// Time spent in the kernel programs (`--hook-time`), busiest first.
    pub hook_time: Option<Vec<ProgramTime>>,
}

pub struct Session {
    capture: Capture,
    tracking: Tracking,
    summary: Summary,
    last_liveness_check: Instant,
    frame_sync_offers: u64,
}

/// What capture events update: a tracker per connection, the calls they finished, and the
/// processes still alive. Events are handled as the capture produces them, while the bytes
/// they borrow are still in the ring buffer.
struct Tracking {
    limits: Limits,
    trackers: HashMap<u64, ConnectionTracker>,
    /// Connections recognised as not HTTP/2 and dropped; they never have a tracker too.
    ignored: HashSet<u64>,
    alive: HashSet<u32>,
    connection_stats: TrackerStats,
    finished: Vec<CallRecord>,
    /// The connection directions that data came for since the last poll.
    fed: HashSet<(u64, Direction)>,
    /// The last of them, which the next chunk is most likely for.
    last_fed: Option<(u64, Direction)>,
}

const POLL_INTERVAL: Duration = Duration::from_millis(100);
const LIVENESS_INTERVAL: Duration = Duration::from_millis(500);

impl Session {
    pub fn new(capture: Capture, limits: Limits) -> Session {
        Session {
            capture,
            tracking: Tracking {
                limits,
                trackers: HashMap::default(),
                ignored: HashSet::default(),
                alive: HashSet::default(),
                connection_stats: TrackerStats::default(),
                finished: Vec::new(),
                fed: HashSet::default(),
                last_fed: None,
            },
            summary: Summary::default(),
            last_liveness_check: Instant::now(),
            frame_sync_offers: 0,
        }
    }

    pub fn trace(&mut self, pid: u32, follow_children: bool) -> Result<(), CaptureError> {
        self.capture.trace_process(pid, follow_children)?;
        self.tracking.alive.insert(pid);
        Ok(())
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
        let mut fed = std::mem::take(&mut self.tracking.fed);
        self.offer_frame_sync(&fed);
        fed.clear();
        self.tracking.fed = fed;
        self.tracking.last_fed = None;
        let finished = &mut self.tracking.finished;
        if !finished.is_empty() {
            // Read in place: a call record is a few hundred bytes, not worth moving again.
            for call in finished.iter() {
                self.summary.record(call);
                sink.on_call(call);
            }
            finished.clear();
            sink.flush();
        }
        Ok(())
    }

    /// Where the kernel side lost track of a direction's framing (it then copies DATA payload
    /// too), hands it our position if the direction just stopped at a frame boundary.
    fn offer_frame_sync(&mut self, fed: &HashSet<(u64, Direction)>) {
        for &(conn_id, direction) in fed {
            // Preparing an offer walks the direction's open streams: only when one is due.
            if !self.capture.frame_sync_due(conn_id, direction) {
                continue;
            }
            let Some(tracker) = self.tracking.trackers.get(&conn_id) else {
                continue;
            };
            let Some((offset, parked)) = tracker.frame_sync_offer(direction) else {
                continue;
            };
            if self
                .capture
                .offer_frame_sync(conn_id, direction, offset, &parked)
                == SyncOffer::Placed
            {
                self.frame_sync_offers += 1;
            }
        }
    }

    /// Delivers what the kernel still holds, flushes the sink and reports. Calls still in
    /// flight have no outcome yet: they are counted, not reported. The programs stay attached
    /// until the returned [`Capture`] is dropped (detaching takes the kernel a while, so a caller
    /// can show the report first).
    pub fn finish(mut self, stop: StopReason, sink: &mut dyn CallSink) -> (SessionReport, Capture) {
        for _ in 0..3 {
            if self.poll(Duration::from_millis(20), sink).is_err() {
                break;
            }
        }
        let mut in_flight_at_exit = 0;
        for tracker in self.tracking.trackers.values() {
            in_flight_at_exit += tracker.open_calls() as u64;
            self.tracking.connection_stats.add(tracker.stats());
        }
        let ignored_connections = self.tracking.ignored.len() as u64;
        let report = SessionReport {
            stop,
            summary: self.summary,
            capture_losses: self.capture.losses(),
            traffic: self.capture.traffic(),
            connections: self.tracking.connection_stats,
            ignored_connections,
            in_flight_at_exit,
            frame_sync_offers: self.frame_sync_offers,
            export: sink.finish(),
            hook_time: self.capture.hook_time(),
        };
        (report, self.capture)
    }
}

impl Tracking {
    fn handle(&mut self, event: CaptureEvent<'_>) {
        match event {
            CaptureEvent::Opened(info) => {
                let facts = ConnectionFacts::new(
                    info.id,
                    info.pid,
                    info.local,
                    info.peer,
                    info.origin.sees_stream_start(),
                );
                self.ignored.remove(&info.id);
                self.trackers
                    .insert(info.id, ConnectionTracker::new(facts, self.limits));
            }
            CaptureEvent::Data {
                conn_id,
                direction,
                chunk,
            } => {
                // Ignored connections have no tracker.
                let Some(tracker) = self.trackers.get_mut(&conn_id) else {
                    return;
                };
                // A record's pieces come as consecutive chunks of one direction.
                if self.last_fed != Some((conn_id, direction)) {
                    self.fed.insert((conn_id, direction));
                    self.last_fed = Some((conn_id, direction));
                }
                tracker.on_chunk(direction, &chunk, &mut self.finished);
                // Not HTTP/2 (a database, a TLS connection...): stop spending time on it.
                if tracker.stats().not_http2 && tracker.open_calls() == 0 {
                    if let Some(tracker) = self.trackers.remove(&conn_id) {
                        self.connection_stats.add(tracker.stats());
                    }
                    self.ignored.insert(conn_id);
                }
            }
            CaptureEvent::Closed {
                conn_id,
                timestamp_ns,
                how,
            } => {
                self.ignored.remove(&conn_id);
                if let Some(mut tracker) = self.trackers.remove(&conn_id) {
                    let reason = match how {
                        Closing::Closed => EndReason::ConnectionClosed,
                        Closing::ProcessExited => EndReason::ProcessExited,
                    };
                    tracker.on_close(timestamp_ns, reason, &mut self.finished);
                    self.connection_stats.add(tracker.stats());
                }
            }
            CaptureEvent::ProcessStarted { pid, .. } => {
                self.alive.insert(pid);
            }
            CaptureEvent::ProcessExited { pid, .. } => {
                self.alive.remove(&pid);
            }
        }
    }
}

/// CPU time and peak memory of this process so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub user_us: u64,
    pub system_us: u64,
    pub max_rss_kib: i64,
}

impl CpuTime {
    pub fn of_this_process() -> CpuTime {
        // SAFETY: rusage is plain old data; getrusage fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointer.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        let micros = |time: libc::timeval| time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64;
        CpuTime {
            user_us: micros(usage.ru_utime),
            system_us: micros(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss,
        }
    }

    /// User and system time together.
    pub fn total_us(self) -> u64 {
        self.user_us + self.system_us
    }
}

impl SessionReport {
    /// The loss and coverage counters, as `(what, count)` for every non-zero one.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut counters = self.capture_losses.nonzero();
        let connections = &self.connections;
        for (name, value) in [
            (
                "calls without a decodable method (joined mid-connection)",
                connections.calls_without_method,
            ),
            (
                "calls without a decodable status",
                connections.calls_without_status,
            ),
            (
                "calls in flight when their process exited (reported, no status)",
                connections.calls_cut_by_exit,
            ),
            (
                "calls in flight when tracing stopped (not reported)",
                self.in_flight_at_exit,
            ),
            (
                "responses to requests sent before attach (not reported)",
                connections.streams_joined_mid_call,
            ),
            (
                "streams over the per-connection limit (not followed)",
                connections.streams_over_limit,
            ),
            ("non-gRPC HTTP/2 streams", connections.non_grpc_streams),
            (
                "header blocks lost to capture gaps",
                connections.header_blocks_lost,
            ),
            (
                "header blocks too large",
                connections.header_blocks_too_large,
            ),
            ("HPACK decoding errors", connections.hpack_errors),
            ("times frame sync was lost", connections.sync_losses),
            ("non-HTTP/2 connections ignored", self.ignored_connections),
            (
                "spans dropped: export queue full",
                self.export.dropped_queue_full,
            ),
            ("spans the collector did not accept", self.export.failed),
            ("calls that could not be printed", self.export.not_printed),
        ] {
            if value > 0 {
                counters.push((name, value));
            }
        }
        counters
    }

    /// The report as JSON, with this process's resource usage: for automation and benchmarks.
    /// `attached` is the CPU time spent up to attaching (loading and verifying the programs)
    /// and `finished` up to the end of tracing (the last records drained, the sink flushed),
    /// before the programs were detached; so the steady-state cost per call can be told apart
    /// from the one-time costs on either side of it.
    pub fn to_json(&self, attached: CpuTime, finished: CpuTime) -> serde_json::Value {
        let now = CpuTime::of_this_process();
        let counters: serde_json::Map<String, serde_json::Value> = self
            .counters()
            .into_iter()
            .map(|(what, count)| (what.to_owned(), count.into()))
            .collect();
        serde_json::json!({
            "stop": format!("{:?}", self.stop),
            "calls": self.summary.calls(),
            "spans_exported": self.export.exported,
            "ring_buffer_records": self.traffic.records,
            "ring_buffer_bytes": self.traffic.ring_bytes,
            "kernel_losses": self.capture_losses.total_kernel(),
            "calls_in_flight_at_exit": self.in_flight_at_exit,
            "frame_sync_offers": self.frame_sync_offers,
            "counters": counters,
            "cpu_user_us": now.user_us,
            "cpu_system_us": now.system_us,
            "cpu_attach_us": attached.total_us(),
            "cpu_after_attach_us": finished.total_us().saturating_sub(attached.total_us()),
            "cpu_detach_us": now.total_us().saturating_sub(finished.total_us()),
            "max_rss_kib": now.max_rss_kib,
            "hook_time": self.hook_time.as_ref().map(|programs| serde_json::json!({
                "runs": programs.iter().map(|program| program.runs).sum::<u64>(),
                "ns": hook_nanos(programs),
                "programs": programs.iter().map(|program| serde_json::json!({
                    "name": program.name,
                    "runs": program.runs,
                    "ns": program.time.as_nanos() as u64,
                })).collect::<Vec<_>>(),
            })),
        })
    }

    pub fn render(&self) -> String {
        let mut out = format!("\n{} calls traced\n", self.summary.calls());
        if self.summary.calls() > 0 {
            out.push_str(&self.summary.render());
        }
        let counters = self.counters();
        if counters.is_empty() {
            out.push_str("nothing lost\n");
        } else {
            out.push_str("losses and gaps:\n");
            for (what, count) in counters {
                out.push_str(&format!("  {count:>10}  {what}\n"));
            }
        }
        if let Some(programs) = &self.hook_time {
            out.push_str(&render_hook_time(programs, self.summary.calls()));
        }
        out
    }
}

fn hook_nanos(programs: &[ProgramTime]) -> u64 {
    programs
        .iter()
        .map(|program| program.time.as_nanos() as u64)
        .sum()
}

/// `--hook-time`: the kernel programs' time, per call and by program.
fn render_hook_time(programs: &[ProgramTime], calls: u64) -> String {
    let total = hook_nanos(programs);
    let runs: u64 = programs.iter().map(|program| program.runs).sum();
    let mut out = format!(
        "in-kernel hooks (every process's syscalls they saw): {runs} runs, {:.3} s",
        total as f64 / 1e9
    );
    let per_call = |value: f64| value / calls as f64;
    if calls > 0 {
        out.push_str(&format!(", {:.0} ns per call", per_call(total as f64)));
    }
    out.push('\n');
    // The programs that take at least 1% of the time.
    for program in programs
        .iter()
        .filter(|program| program.time.as_nanos() as u64 * 100 >= total)
    {
        let nanos = program.time.as_nanos() as f64;
        out.push_str(&format!(
            "  {:<22} {:>6.0} ns per run",
            program.name,
            nanos / program.runs as f64
        ));
        if calls > 0 {
            out.push_str(&format!(
                ", {:>6.2} runs and {:>6.0} ns per call",
                per_call(program.runs as f64),
                per_call(nanos)
            ));
        }
        out.push('\n');
    }
    out
}
