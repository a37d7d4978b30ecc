//! Where a connection's plaintext came from.

/// The capture source of a connection's bytes, recorded for reporting: the layers above
/// [`crate::stream`] treat every source alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Source {
    /// The traced process's socket reads and writes (syscall tracepoints).
    #[default]
    SocketSyscalls,
}
