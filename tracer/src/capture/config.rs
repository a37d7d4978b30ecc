//! How capture is set up.

#[cfg(feature = "bench-floors")]
use tracer_common::maps::floor;

/// Default ring buffer size: room for a burst of large transfers.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 16 << 20;

#[cfg(feature = "bench-floors")]
/// For benchmarking only: what the kernel sends for a data move instead of following its
/// framing. Those records are counted, not delivered (nothing is decoded), so what tracing
/// costs the traced process then is a floor under the full capture's cost: what any capture
/// that does at least as much must pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFloor {
    /// The full capture.
    None,
    /// A bare record per data move (connection, direction, offset, length, time), no bytes:
    /// the least any capture that hears of every syscall pays.
    BareRecords,
    /// A record per data move keeping the bytes of its first segment, read with the fewest
    /// user-memory reads (the iovec, then the bytes), and no framing followed: the least any
    /// capture that reads the bytes pays.
    CopiedRecords,
}

#[cfg(feature = "bench-floors")]
impl CaptureFloor {
    /// The kernel's `CAPTURE_FLOOR` value.
    pub fn kernel_value(self) -> u8 {
        match self {
            CaptureFloor::None => floor::NONE,
            CaptureFloor::BareRecords => floor::BARE_RECORDS,
            CaptureFloor::CopiedRecords => floor::COPIED_RECORDS,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Size of the kernel-to-user ring buffer: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// For benchmarking only: see [`CaptureFloor`].
    #[cfg(feature = "bench-floors")]
    pub floor: CaptureFloor,
    /// Turn on the kernel's BPF run-time statistics, for [`Capture::hook_time`].
    pub hook_time: bool,
    /// Load the build of the kernel programs made for kernels without `bpf_loop` (before
    /// 5.17) even where the kernel has it: to test that build on a newer kernel.
    pub bounded_loops: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
            #[cfg(feature = "bench-floors")]
            floor: CaptureFloor::None,
            hook_time: false,
            bounded_loops: false,
        }
    }
}
