//! How a load runs: untraced, traced, or traced with part of the tracer's cost taken away.

use super::PAUSED_RING_BYTES;

/// How a load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Untraced,
    /// The tracer attached to an idle process: its hooks fire for every process's syscalls,
    /// but nothing of the load is captured.
    HooksOnly,
    /// The tracer attached to the client, then stopped (SIGSTOP) until the client is done: the
    /// kernel side captures everything into a ring buffer large enough for the whole run, and
    /// the tracer's own work does not compete for the cores. It drains the ring afterwards.
    TracerPaused,
    /// The tracer capturing bare records (see [`Load::capture_floor`]).
    BareRecords,
    /// The tracer copying each data move's first segment and following no framing: the floor
    /// under any capture that reads the bytes (`--client-core` only).
    CopiedRecords,
    /// Untraced, next to a [`CoRunner`] (see [`Load::co_runner_floor`]).
    CoRunner,
    Traced,
    /// Traced with `--hook-time`: the kernel's BPF run-time statistics on, which slows every
    /// hooked syscall a little, so this run only reports where the in-kernel time goes.
    HookTime,
}

impl Mode {
    /// The tracer flags this mode runs it with, whichever client it traces.
    pub fn tracer_flags(self) -> &'static [&'static str] {
        match self {
            Mode::TracerPaused => &["--ring-buffer-bytes", PAUSED_RING_BYTES],
            Mode::BareRecords => &["--bench-bare-records"],
            Mode::CopiedRecords => &["--bench-copied-records"],
            Mode::HookTime => &["--hook-time"],
            Mode::Untraced | Mode::HooksOnly | Mode::CoRunner | Mode::Traced => &[],
        }
    }

    /// The tracer binary this mode runs: the floors are only in a build of their own.
    pub fn tracer_binary(self) -> &'static str {
        match self {
            Mode::BareRecords | Mode::CopiedRecords => crate::BENCH_FLOORS_BINARY,
            _ => "tracer",
        }
    }
}
