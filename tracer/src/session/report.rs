//! What a session reports when it ends: the summary, every loss and gap by cause, and the
//! tracer's own cost; rendered for people, or as JSON (`--stats-json`).

use crate::{
    capture::{CaptureTraffic, LossReport, ProgramTime},
    export::{ExportReport, Summary},
    grpc::TrackerStats,
    http2::OtherProtocol,
    process_memory::MemoryStats,
};

use super::{
    StopReason,
    stats::{HookTime, ProgramRuns, SessionStats},
};

/// Everything reported when the session ends.
#[derive(Debug, Clone)]
pub struct SessionReport {
    pub stop: StopReason,
    pub summary: Summary,
    pub capture_losses: LossReport,
    pub traffic: CaptureTraffic,
    pub connections: TrackerStats,
    /// Non-HTTP/2 connections that were recognised and ignored, by what they carried.
    pub ignored_connections: IgnoredConnections,
    /// TLS libraries found in traced processes and not hooked, each with why.
    pub tls_not_hooked: Vec<String>,
    /// Calls still in flight when tracing stopped (not reported: they have no outcome yet).
    pub in_flight_at_exit: u64,
    /// Times the kernel side was handed our frame position after it lost track of a
    /// connection direction (see [`Capture::offer_frame_sync`]).
    pub frame_sync_offers: u64,
    pub export: ExportReport,
    /// Time spent in the kernel programs (`--hook-time`), busiest first.
    pub hook_time: Option<Vec<ProgramTime>>,
    /// Instructions the verifier processed for each kernel program.
    pub verified_instructions: Vec<(String, Option<u32>)>,
    /// What reading traced processes' memory (for entries from before attach) cost.
    pub process_memory: MemoryStats,
}

/// Connections that were not HTTP/2, by what they carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgnoredConnections {
    /// TLS whose plaintext was not seen (no hooked library, or no session tied to it).
    pub tls: u64,
    /// TLS whose plaintext was decoded from the library, as a connection of its own.
    pub tls_decoded: u64,
    pub http1: u64,
    pub other: u64,
}

impl IgnoredConnections {
    /// One more connection that carried `what`.
    pub fn count(&mut self, what: OtherProtocol) {
        match what {
            OtherProtocol::Tls => self.tls += 1,
            OtherProtocol::Http1 => self.http1 += 1,
            OtherProtocol::Other => self.other += 1,
        }
    }

    /// A TLS connection counted as not decoded turned out to carry a session whose plaintext
    /// is decoded.
    pub fn tls_decoded_elsewhere(&mut self) {
        self.tls = self.tls.saturating_sub(1);
        self.tls_decoded += 1;
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
                "calls lost: none of their frames captured (not reported)",
                connections.calls_lost,
            ),
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
            (
                "connections not decoded: TLS, no plaintext seen (library not hooked)",
                self.ignored_connections.tls,
            ),
            (
                "connections not decoded: HTTP/1.x",
                self.ignored_connections.http1,
            ),
            (
                "connections not decoded: not HTTP/2",
                self.ignored_connections.other,
            ),
            (
                "spans dropped: export queue full",
                self.export.dropped_queue_full,
            ),
            ("spans the collector did not accept", self.export.failed),
            ("calls that could not be printed", self.export.not_printed),
            (
                "calls not in the duration histograms (too many processes)",
                self.export.not_in_histograms,
            ),
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
    pub fn stats(&self, attached: CpuTime, finished: CpuTime) -> SessionStats {
        let now = CpuTime::of_this_process();
        SessionStats {
            stop: format!("{:?}", self.stop),
            calls: self.summary.calls(),
            calls_lost: self.connections.calls_lost,
            spans_exported: self.export.exported,
            ring_buffer_records: self.traffic.records,
            ring_buffer_bytes: self.traffic.ring_bytes,
            kernel_losses: self.capture_losses.total_kernel(),
            calls_in_flight_at_exit: self.in_flight_at_exit,
            frame_sync_offers: self.frame_sync_offers,
            counters: self
                .counters()
                .into_iter()
                .map(|(what, count)| (what.to_owned(), count))
                .collect(),
            cpu_user_us: now.user_us,
            cpu_system_us: now.system_us,
            cpu_attach_us: attached.total_us(),
            cpu_after_attach_us: finished.total_us().saturating_sub(attached.total_us()),
            cpu_detach_us: now.total_us().saturating_sub(finished.total_us()),
            max_rss_kib: now.max_rss_kib,
            verified_instructions: self
                .verified_instructions
                .iter()
                .filter_map(|(program, count)| Some((program.clone(), (*count)?)))
                .collect(),
            hook_time: self.hook_time.as_ref().map(|programs| HookTime {
                runs: programs.iter().map(|program| program.runs).sum(),
                ns: hook_nanos(programs),
                programs: programs
                    .iter()
                    .map(|program| ProgramRuns {
                        name: program.name.clone(),
                        runs: program.runs,
                        ns: program.time.as_nanos() as u64,
                    })
                    .collect(),
            }),
            launched_command_cpu_us: None,
            // Measured around the session by its caller.
            wall_attach_us: 0,
            wall_detach_us: 0,
            tls_connections_decoded: self.ignored_connections.tls_decoded,
            tls_not_hooked: self.tls_not_hooked.clone(),
            methods_from_process_memory: self.connections.methods_from_memory,
            statuses_from_process_memory: self.connections.statuses_from_memory,
            statuses_by_grammar: self.connections.statuses_by_grammar,
            process_memory_reads: self.process_memory.scans,
            process_memory_ms: self.process_memory.micros / 1000,
            process_memory_connections_closed: self.process_memory.closed_before_copy,
        }
    }

    pub fn render(&self) -> String {
        let mut out = format!("\n{} calls traced\n", self.summary.calls());
        if self.summary.calls() > 0 {
            out.push_str(&self.summary.render());
        }
        if self.ignored_connections.tls_decoded > 0 {
            out.push_str(&format!(
                "TLS: {} connections decoded from their library's plaintext\n",
                self.ignored_connections.tls_decoded
            ));
        }
        for problem in &self.tls_not_hooked {
            out.push_str(&format!("TLS not decoded: {problem}\n"));
        }
        out.push_str(&self.render_mid_flight());
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

impl SessionReport {
    /// How calls on connections joined mid-flight were named, and what it cost.
    fn render_mid_flight(&self) -> String {
        let connections = &self.connections;
        let memory = &self.process_memory;
        let by_grammar = connections.statuses_by_grammar;
        if memory.scans == 0 && by_grammar == 0 {
            return String::new();
        }
        let mut out = format!(
            "joined mid-flight: {} methods and {} statuses read from the processes' own header \
             tables ({} memory reads, {} MiB, {} ms)",
            connections.methods_from_memory,
            connections.statuses_from_memory,
            memory.scans,
            memory.bytes >> 20,
            memory.micros / 1000,
        );
        if by_grammar > 0 {
            out.push_str(&format!(
                "; {by_grammar} statuses under a name gRPC's grammar gave"
            ));
        }
        if memory.failures > 0 {
            out.push_str(&format!("; {} memory reads failed", memory.failures));
        }
        out.push('\n');
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
