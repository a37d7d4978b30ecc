//! `--stats-json`: the session report as data, for automation and `cargo xtask bench`, which
//! reads it with this same type (it includes this file by path). Only serde here, nothing of
//! the rest of the crate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What `--stats-json` writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionStats {
    /// Why the session ended (`TracedProcessesExited`, `DurationElapsed`, `Signal`).
    pub stop: String,
    /// Calls traced, and calls that fell wholly into capture gaps (counted from stream ids).
    pub calls: u64,
    pub calls_lost: u64,
    pub spans_exported: u64,
    /// Kernel-to-user ring buffer records read, and their bytes with headers.
    pub ring_buffer_records: u64,
    pub ring_buffer_bytes: u64,
    pub kernel_losses: u64,
    pub calls_in_flight_at_exit: u64,
    /// Frame positions handed to the kernel side (`crate::frame_sync`).
    pub frame_sync_offers: u64,
    /// Every non-zero loss and coverage counter, by its description in the summary.
    pub counters: BTreeMap<String, u64>,
    /// This process's CPU time over its whole life.
    pub cpu_user_us: u64,
    pub cpu_system_us: u64,
    /// CPU time up to attaching (loading and verifying the programs).
    pub cpu_attach_us: u64,
    /// CPU time from attaching to the end of tracing (ring drained, sink flushed): the steady
    /// state, apart from the one-time costs on either side.
    pub cpu_after_attach_us: u64,
    /// CPU time detaching the programs took.
    pub cpu_detach_us: u64,
    /// Wall time from start until tracing was live, and that detaching took.
    #[serde(default)]
    pub wall_attach_us: u64,
    #[serde(default)]
    pub wall_detach_us: u64,
    pub max_rss_kib: i64,
    /// Instructions the verifier processed for each kernel program, where the kernel says.
    pub verified_instructions: BTreeMap<String, u32>,
    /// `--hook-time`: how long the kernel programs ran.
    pub hook_time: Option<HookTime>,
    /// The CPU time of a command launched after `--`, once it exited.
    pub launched_command_cpu_us: Option<u64>,
    /// TLS connections whose plaintext was decoded from their library.
    #[serde(default)]
    pub tls_connections_decoded: u64,
    /// TLS libraries found in traced processes and not hooked, each with why.
    #[serde(default)]
    pub tls_not_hooked: Vec<String>,
    /// Joined mid-flight: methods and statuses read from the processes' own header tables,
    /// and statuses read under a name gRPC's grammar gave.
    #[serde(default)]
    pub methods_from_process_memory: u64,
    #[serde(default)]
    pub statuses_from_process_memory: u64,
    #[serde(default)]
    pub statuses_by_grammar: u64,
    /// Copies of traced processes' memory taken for that, and the time they took.
    #[serde(default)]
    pub process_memory_reads: u64,
    #[serde(default)]
    pub process_memory_ms: u64,
    /// Connections joined mid-flight that had closed when an entry from before attach was
    /// looked up (no copy of their process's memory speaks for them; their calls that needed
    /// one are among those without a method or status).
    #[serde(default)]
    pub process_memory_connections_closed: u64,
}

/// The kernel programs' run time (`--hook-time`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HookTime {
    pub runs: u64,
    pub ns: u64,
    /// Busiest first.
    pub programs: Vec<ProgramRuns>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramRuns {
    pub name: String,
    pub runs: u64,
    pub ns: u64,
}
