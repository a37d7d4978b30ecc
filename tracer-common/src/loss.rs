//! Why the kernel side could not deliver something. Counted per CPU, summed by userspace.

/// Index into the per-CPU `LOSSES` counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// A record did not fit in the ring buffer (userspace is not keeping up, or it is too small).
    RingBufferFull = 0,
    /// `bpf_probe_read_user` failed; the bytes are reported as a gap.
    UserReadFailed = 1,
    /// A transfer needed more records than one syscall may emit; the rest is reported as a gap.
    TransferTooLarge = 2,
    /// A `sendmmsg`/`recvmmsg` moved more messages than the kernel side walks; its byte count is
    /// unknown, so the connection's offsets are unreliable from there on.
    TooManyMessages = 3,
    /// The table of in-flight syscalls was full; that syscall's bytes were not seen at all.
    PendingTableFull = 4,
    /// The socket table was full; a new connection was not tracked.
    SocketTableFull = 5,
    /// A connection open or close record could not be delivered.
    LifecycleLost = 6,
    /// A TLS call's entry could not be saved, or its session could not be added to the table
    /// of sessions: that call's plaintext was not seen.
    TlsTableFull = 7,
}

pub const LOSS_KIND_COUNT: u32 = 8;

impl LossKind {
    pub const ALL: [LossKind; LOSS_KIND_COUNT as usize] = [
        LossKind::RingBufferFull,
        LossKind::UserReadFailed,
        LossKind::TransferTooLarge,
        LossKind::TooManyMessages,
        LossKind::PendingTableFull,
        LossKind::SocketTableFull,
        LossKind::LifecycleLost,
        LossKind::TlsTableFull,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            LossKind::RingBufferFull => "ring buffer full",
            LossKind::UserReadFailed => "user memory read failed",
            LossKind::TransferTooLarge => "transfer exceeded per-syscall cap",
            LossKind::TooManyMessages => "mmsg vector too long",
            LossKind::PendingTableFull => "in-flight syscall table full",
            LossKind::SocketTableFull => "socket table full",
            LossKind::LifecycleLost => "connection open/close record lost",
            LossKind::TlsTableFull => "TLS call or session table full",
        }
    }
}
