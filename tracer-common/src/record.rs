//! Records the kernel programs write into the `EVENTS` ring buffer.
//!
//! Every record starts with a [`RecordHeader`]; its `kind` says which struct it is. Data records
//! are followed by `captured_len` payload bytes, so a small transfer occupies a small slot.

/// Most payload bytes one [`DataRecord`] carries. Larger transfers are split over several records.
/// Bounded by the per-CPU scratch map that assembles records (per-CPU values are at most 32 KiB,
/// and the scratch holds twice the cap).
pub const RECORD_DATA_CAP: usize = 8 * 1024;

/// Bytes of socket address an [`OpenRecord`] carries: enough for `sockaddr_un` (110 bytes). A
/// power of two: the kernel side bounds the length it copies with a mask, which every
/// verifier follows.
pub const SOCKADDR_CAP: usize = 128;

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Data = 1,
    Open = 2,
    Close = 3,
    ProcessFork = 4,
    ProcessExit = 5,
    /// A traced process replaced its program (a [`ProcessRecord`]); every socket it had was
    /// reported closed just before.
    ProcessExec = 6,
    /// A traced process's TLS library handed over the plaintext of a session not seen before
    /// (a [`TlsOpenRecord`]); its data records follow under the record's `conn_id`.
    TlsOpen = 7,
    /// A traced process mapped a file executable (a [`MappedRecord`]):
    /// it may hold a TLS library to hook.
    ExecutableMapped = 8,
}

impl RecordKind {
    pub const fn from_u32(value: u32) -> Option<RecordKind> {
        Some(match value {
            1 => RecordKind::Data,
            2 => RecordKind::Open,
            3 => RecordKind::Close,
            4 => RecordKind::ProcessFork,
            5 => RecordKind::ProcessExit,
            6 => RecordKind::ProcessExec,
            7 => RecordKind::TlsOpen,
            8 => RecordKind::ExecutableMapped,
            _ => return None,
        })
    }
}

/// Common prefix of every record. Layout: 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RecordHeader {
    /// A [`RecordKind`] value.
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub fd: u32,
    /// Unique for the socket's lifetime; 0 for process records.
    pub conn_id: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the syscall returned.
    pub timestamp_ns: u64,
}

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Bytes the traced process wrote to the socket.
    Egress = 0,
    /// Bytes the traced process read from the socket.
    Ingress = 1,
}

/// Part of one syscall's transfer. Layout: 56 bytes, then `captured_len` bytes of pieces.
///
/// Covers stream bytes `[offset, offset + original_len)` of its direction as a sequence of
/// pieces, each a [`PieceHeader`] followed by its kept bytes. Skipped bytes are either DATA
/// payload the kernel side chose not to copy or bytes it could not copy (counted as a loss);
/// either way their length is exact.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DataRecord {
    pub header: RecordHeader,
    pub offset: u64,
    pub captured_len: u32,
    pub original_len: u32,
    /// A [`Direction`] value.
    pub direction: u32,
    /// The [`crate::SyscallOp`] that moved the bytes.
    pub syscall: u32,
}

/// `kept` stream bytes follow this header; then `skipped` stream bytes went by uncopied.
/// Layout: 8 bytes, unaligned in the record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceHeader {
    pub kept: u32,
    pub skipped: u32,
}

pub const PIECE_HEADER_LEN: usize = size_of::<PieceHeader>();

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenRole {
    /// The traced process called `connect()`; `addr` is the peer it asked for.
    Connect = 1,
    /// The traced process `accept()`ed the connection; `addr` is the peer the kernel reported.
    Accept = 2,
    /// The traced process duplicated a connection's descriptor (`dup`, `dup2`, `dup3`,
    /// `fcntl(F_DUPFD)`) onto this one, which is then followed as a connection of its own,
    /// joined mid-flight; `addr` is empty.
    Duplicate = 3,
}

/// A connection became visible. Layout: 168 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OpenRecord {
    pub header: RecordHeader,
    /// An [`OpenRole`] value.
    pub role: u32,
    /// Valid bytes in `addr` (0 when the syscall did not report an address).
    pub addr_len: u32,
    /// Raw `struct sockaddr_*` as the syscall saw it.
    pub addr: [u8; SOCKADDR_CAP],
}

/// A connection's socket was closed. Layout: 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CloseRecord {
    pub header: RecordHeader,
    /// Final stream lengths, so userspace knows whether it missed a tail.
    pub sent: u64,
    pub received: u64,
}

/// A traced process forked (`tgid` is the parent) or exited. Layout: 40 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessRecord {
    pub header: RecordHeader,
    /// The new task's id for forks, the exiting process for exits.
    pub pid: u32,
    pub _pad: u32,
}

/// A TLS session of a traced process was seen for the first time. `header.fd` is
/// [`NO_FD`]: the library's session is tied to no descriptor of its own (grpc and node drive
/// TLS through memory buffers), so userspace ties it to a socket. Layout: 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsOpenRecord {
    pub header: RecordHeader,
    /// The library's `SSL *`.
    pub ssl: u64,
    /// Where the hooked function that saw it is in the process's memory: which library it is.
    pub function: u64,
}

/// The `fd` of records about TLS sessions, which have none.
pub const NO_FD: u32 = u32::MAX;

/// A traced process mapped an executable file region at `address`. Layout: 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MappedRecord {
    pub header: RecordHeader,
    pub address: u64,
    /// Non-zero: the process was stopped until userspace continues it (see
    /// `TracedProcess::hold_new_code`).
    pub held: u32,
    pub _pad: u32,
}

const _: () = assert!(size_of::<RecordHeader>() == 32);
const _: () = assert!(size_of::<TlsOpenRecord>() == 48);
const _: () = assert!(size_of::<MappedRecord>() == 48);
const _: () = assert!(size_of::<DataRecord>() == 56);
const _: () = assert!(size_of::<PieceHeader>() == 8);
const _: () = assert!(size_of::<OpenRecord>() == 168);
const _: () = assert!(size_of::<CloseRecord>() == 48);
const _: () = assert!(size_of::<ProcessRecord>() == 40);
