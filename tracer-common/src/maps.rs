//! Keys and values of the kernel maps that userspace also reads or writes.

/// A file descriptor of one process. Layout: 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketKey {
    pub tgid: u32,
    pub fd: u32,
}

/// A stream socket the kernel side knows about. Layout: 24 bytes.
///
/// `conn_id == 0` means "a stream socket that is not connected yet" (created by `socket()`, or a
/// listening socket): its traffic is not captured until `connect()` gives it an id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketState {
    pub conn_id: u64,
    /// Bytes written so far: the stream offset of the next outgoing byte.
    pub sent: u64,
    /// Bytes read so far: the stream offset of the next incoming byte.
    pub received: u64,
}

/// Connection ids handed out by userspace (for sockets found in /proc at attach) have this bit
/// set, so they never collide with ids the kernel allocates.
pub const USER_CONN_ID_BIT: u64 = 1 << 63;

/// Loop iterations the kernel side spends on one syscall's transfer. Each either loads an iovec
/// or message header, or copies one piece of a segment into a record; when they run out, the
/// rest of the transfer is reported as a gap. A single-buffer transfer therefore keeps at most
/// `MAX_STEPS_PER_SYSCALL * RECORD_DATA_CAP` bytes.
pub const MAX_STEPS_PER_SYSCALL: u32 = 512;

/// A process whose sockets are captured. Layout: 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracedProcess {
    /// Non-zero: processes this one forks are traced too.
    pub follow_children: u32,
    pub _pad: u32,
}

/// The syscall a [`PendingCall`] belongs to.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallOp {
    Write = 1,
    Writev = 2,
    Sendto = 3,
    Sendmsg = 4,
    Sendmmsg = 5,
    Read = 6,
    Readv = 7,
    Recvfrom = 8,
    Recvmsg = 9,
    Recvmmsg = 10,
    Connect = 11,
    Accept = 12,
    Socket = 13,
}

impl SyscallOp {
    pub const fn from_u32(value: u32) -> Option<SyscallOp> {
        Some(match value {
            1 => SyscallOp::Write,
            2 => SyscallOp::Writev,
            3 => SyscallOp::Sendto,
            4 => SyscallOp::Sendmsg,
            5 => SyscallOp::Sendmmsg,
            6 => SyscallOp::Read,
            7 => SyscallOp::Readv,
            8 => SyscallOp::Recvfrom,
            9 => SyscallOp::Recvmsg,
            10 => SyscallOp::Recvmmsg,
            11 => SyscallOp::Connect,
            12 => SyscallOp::Accept,
            13 => SyscallOp::Socket,
            _ => return None,
        })
    }
}

/// Arguments saved at syscall entry, keyed by thread, until the matching exit. Layout: 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PendingCall {
    /// A [`SyscallOp`] value.
    pub op: u32,
    pub fd: u32,
    /// The buffer, iovec array, msghdr, mmsghdr array or sockaddr, depending on `op`.
    pub ptr: u64,
    /// Buffer length, iovec count or mmsghdr count; for `accept` the address-length pointer;
    /// for `connect` the address length; for `socket` the domain in the low and type in the high
    /// 32 bits.
    pub arg: u64,
    pub _pad: u64,
}

const _: () = assert!(size_of::<SocketKey>() == 8);
const _: () = assert!(size_of::<SocketState>() == 24);
const _: () = assert!(size_of::<TracedProcess>() == 8);
const _: () = assert!(size_of::<PendingCall>() == 32);
