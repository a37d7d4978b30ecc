//! Where a connection's plaintext came from.

/// The capture source of a connection's bytes: the layers above [`crate::stream`] decode every
/// source alike; spans say which it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Source {
    /// The traced process's socket reads and writes (syscall tracepoints).
    #[default]
    SocketSyscalls,
    /// A TLS library's plaintext functions (uprobes).
    Tls {
        /// The library and its version where known: `openssl 3`, `boringssl (grpcio 1.85.1)`.
        library: Option<&'static str>,
    },
}
