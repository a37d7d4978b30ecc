//! Keys and values of the kernel maps that userspace also reads or writes.

/// A file descriptor of one process. Layout: 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketKey {
    pub tgid: u32,
    pub fd: u32,
}

/// A stream socket the kernel side knows about. Layout: 216 bytes.
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
    /// Where each direction (indexed by [`crate::Direction`]) stands in its HTTP/2 framing.
    pub framing: [FrameCursor; 2],
}

impl SocketState {
    /// A socket whose directions are seen from their first byte (`from_start`), so their
    /// framing can be followed; otherwise DATA payloads are copied until userspace re-arms it.
    pub const fn new(conn_id: u64, from_start: bool) -> SocketState {
        let cursor = SocketState::first_cursor(from_start);
        SocketState {
            conn_id,
            sent: 0,
            received: 0,
            framing: [cursor; 2],
        }
    }

    /// Where each direction of a new socket stands (see [`SocketState::new`]).
    pub const fn first_cursor(from_start: bool) -> FrameCursor {
        if from_start {
            FrameCursor::AT_STREAM_START
        } else {
            FrameCursor::LOST
        }
    }
}

/// Slots of the kernel's filter in front of its table of traced processes: the slot of a tgid
/// ([`traced_filter_slot`]) is set once a process with that tgid is traced, and never cleared.
pub const TRACED_FILTER_SLOTS: u32 = 16384;

/// The filter slot of process `tgid`; the kernel and userspace must agree on it.
#[inline(always)]
pub const fn traced_filter_slot(tgid: u32) -> u32 {
    tgid % TRACED_FILTER_SLOTS
}

/// For benchmarking only: what the kernel side sends for a data move instead of following its
/// framing. Each is a floor under the full capture's cost: what any capture that does at least
/// that much must pay.
pub mod floor {
    /// The full capture.
    pub const NONE: u8 = 0;
    /// A bare record: which connection and direction, where in the stream, how many bytes,
    /// when. No byte is read.
    pub const BARE_RECORDS: u8 = 1;
    /// A record keeping the bytes of the transfer's first segment (up to
    /// [`super::WHOLE_TRANSFER_MAX`]), read with the fewest user-memory reads a capture of
    /// the bytes can make (the iovec, then the bytes), and no framing followed.
    pub const COPIED_RECORDS: u8 = 2;
}

/// What the kernel side expects next in one direction of a connection.
pub mod framing {
    /// Not following this direction: every byte is copied. Final: it is not HTTP/2.
    pub const OFF: u8 = 0;
    /// Not following this direction for now (joined mid-stream, bytes missed, a read too dense
    /// to follow): every byte is copied until userspace, in sync itself, re-arms the cursor
    /// through the `RESYNC` map.
    pub const LOST: u8 = 8;
    /// Nothing seen yet: the client preface or a SETTINGS frame must come first.
    pub const START: u8 = 1;
    /// Inside the 24-byte client preface.
    pub const PREFACE: u8 = 2;
    /// Collecting a 9-byte frame header.
    pub const HEADER: u8 = 3;
    /// Inside a payload that is kept whole (every frame type but DATA).
    pub const PAYLOAD: u8 = 4;
    /// The pad-length byte of a padded DATA frame.
    pub const DATA_PAD_LENGTH: u8 = 5;
    /// Inside a DATA frame's data: gRPC message prefixes are kept, message bodies skipped.
    pub const DATA: u8 = 6;
    /// A DATA frame's trailing padding, skipped.
    pub const DATA_PADDING: u8 = 7;
    /// Not HTTP/2, as userspace found: every byte is skipped (counted, not copied). Set only
    /// through the `RESYNC` map, at any point of the stream.
    pub const SKIP: u8 = 9;
}

/// Where a gRPC stream stands in its length-prefixed messages, between two DATA frames.
/// Layout: 12 bytes.
///
/// `prefix_seen == 0`: `value` body bytes of the current message are still to come (0: the
/// next byte starts a message prefix). `1..=4`: that many prefix bytes were seen and `value`
/// holds the length bytes among them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageCursor {
    pub stream_id: u32,
    pub prefix_seen: u32,
    pub value: u32,
}

impl MessageCursor {
    pub const AT_BOUNDARY: MessageCursor = MessageCursor {
        stream_id: 0,
        prefix_seen: 0,
        value: 0,
    };
}

/// gRPC streams that ended a DATA frame in the middle of a message; a stream not listed is at a
/// message boundary. When more are needed, the direction stops skipping.
pub const MESSAGE_CURSOR_SLOTS: usize = 4;

/// One direction's HTTP/2 framing as the kernel side follows it to skip DATA payloads.
/// Layout: 96 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameCursor {
    /// The stream offset of the next byte; a transfer that starts elsewhere means bytes were
    /// missed, and following stops.
    pub position: u64,
    /// A [`framing`] state.
    pub state: u8,
    /// Header (or preface) bytes collected so far.
    pub seen: u8,
    /// The current frame's flags.
    pub flags: u8,
    /// Non-zero while kept bytes that could wait are held back for this direction's next record.
    pub deferred: u8,
    /// Payload bytes (padding included) left in the current frame.
    pub frame_left: u32,
    /// Trailing padding bytes of the current DATA frame.
    pub padding: u32,
    /// The current DATA frame's message position; its `stream_id` is the frame's stream.
    pub message: MessageCursor,
    /// The frame header being collected (9 bytes used; 16 so indices can be masked).
    pub header: [u8; 16],
    /// Streams parked in the middle of a message until their next DATA frame.
    pub parked: [MessageCursor; MESSAGE_CURSOR_SLOTS],
}

impl FrameCursor {
    pub const LOST: FrameCursor = FrameCursor::in_state(framing::LOST);
    /// For a direction userspace found not to carry HTTP/2: nothing more is copied.
    pub const SKIP: FrameCursor = FrameCursor::in_state(framing::SKIP);
    pub const AT_STREAM_START: FrameCursor = FrameCursor::in_state(framing::START);

    /// A cursor at a frame boundary at stream offset `position`, with `parked` the streams
    /// that are in the middle of a message there (at most [`MESSAGE_CURSOR_SLOTS`]).
    pub fn at_frame_boundary(position: u64, parked: &[MessageCursor]) -> Option<FrameCursor> {
        if parked.len() > MESSAGE_CURSOR_SLOTS {
            return None;
        }
        let mut cursor = FrameCursor::in_state(framing::HEADER);
        cursor.position = position;
        cursor.parked[..parked.len()].copy_from_slice(parked);
        Some(cursor)
    }

    const fn in_state(state: u8) -> FrameCursor {
        FrameCursor {
            position: 0,
            state,
            seen: 0,
            flags: 0,
            deferred: 0,
            frame_left: 0,
            padding: 0,
            message: MessageCursor::AT_BOUNDARY,
            header: [0; 16],
            parked: [MessageCursor::AT_BOUNDARY; MESSAGE_CURSOR_SLOTS],
        }
    }
}

/// One direction of a connection: the key of the per-direction maps. Layout: 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirectionKey {
    pub conn_id: u64,
    /// A [`crate::Direction`] value.
    pub direction: u64,
}

/// A data record being assembled by the kernel side.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RecordInProgress {
    /// Its stream offset, the stream bytes it covers so far, and the bytes of its data area in
    /// use.
    pub offset: u64,
    pub covered: u64,
    pub assembled: u64,
    /// The piece being assembled, if `has_piece`: where its header goes in the data area, and
    /// its counts, written there when the piece is finished.
    pub has_piece: u64,
    pub piece_at: u64,
    pub piece_kept: u64,
    pub piece_skipped: u64,
    /// Non-zero once it holds kept bytes that must not wait for a later syscall.
    pub urgent: u64,
}

impl RecordInProgress {
    pub const EMPTY: RecordInProgress = RecordInProgress {
        offset: 0,
        covered: 0,
        assembled: 0,
        has_piece: 0,
        piece_at: 0,
        piece_kept: 0,
        piece_skipped: 0,
        urgent: 0,
    };
}

/// Most bytes of a record held back between syscalls.
pub const HELD_RECORD_CAP: usize = 1024;

/// The start of a connection direction's next data record, held back by the kernel side
/// because nothing in it had to reach userspace yet. Emitted with the next syscall that keeps
/// something urgent, when it grows too large, or when the socket is closed; userspace delivers
/// it itself when the process exits without closing the socket.
///
/// As a record, it is `record` with `offset`, `captured_len` and `original_len` taken from
/// `progress`, followed by `data[..progress.assembled]`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HeldRecord {
    pub progress: RecordInProgress,
    pub record: crate::DataRecord,
    pub data: [u8; HELD_RECORD_CAP],
}

/// Connection ids handed out by userspace (for sockets found in /proc at attach) have this bit
/// set, so they never collide with ids the kernel allocates.
pub const USER_CONN_ID_BIT: u64 = 1 << 63;

/// Loop iterations the kernel side spends on one syscall's transfer. Each loads an iovec or
/// message header, or keeps or skips one run of bytes (a frame header, a message prefix, a
/// message body, up to a record's worth of other bytes). When they run out, the rest of the
/// transfer is reported as a gap.
pub const MAX_STEPS_PER_SYSCALL: u32 = 2048;

/// Data records one syscall may fill; the rest of the transfer is reported as a gap. A transfer
/// that is copied whole (not HTTP/2, or joined mid-stream) therefore keeps at most
/// `MAX_RECORDS_PER_SYSCALL * (RECORD_DATA_CAP - PIECE_HEADER_LEN)` bytes.
pub const MAX_RECORDS_PER_SYSCALL: u64 = 512;

/// A transfer of at most this many bytes is copied whole, in one read per segment, and the
/// framing followed over the copy: cheaper than a read per kept run for a few small frames.
pub const WHOLE_TRANSFER_MAX: u64 = 2048;

/// ...unless more than this many of its bytes are message bodies or padding, which userspace
/// does not need: then it is walked run by run like a larger one, so that large messages cost
/// only their framing whatever the size of the syscalls that move them.
pub const WHOLE_TRANSFER_SKIPPABLE_MAX: u64 = 1024;

/// A process whose sockets are captured. Layout: 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracedProcess {
    /// Non-zero: processes this one forks are traced too.
    pub follow_children: u32,
    /// Non-zero: when it maps a file executable, it is stopped (`SIGSTOP`) until userspace has
    /// looked for a TLS library there and hooked it, then continued. Only for commands the
    /// tracer launched itself, which would otherwise run ahead of the hooks.
    pub hold_new_code: u32,
}

/// A hooked call: the data move that carried a data record's bytes, or the call that began a
/// socket or a connection.
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
    /// Plaintext handed to a TLS library's write (`SSL_write`, `SSL_write_ex`).
    TlsWrite = 14,
    /// Plaintext a TLS library's read (`SSL_read`, `SSL_read_ex`) handed back.
    TlsRead = 15,
}

/// A TLS session (an `SSL *`) of a traced process: the key of the kernel's table of sessions,
/// whose values are [`SocketState`]s like a socket's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlsSessionKey {
    pub tgid: u32,
    pub _pad: u32,
    /// The library's `SSL *`: unique among the process's live sessions.
    pub ssl: u64,
}

/// The TLS library functions the uprobes hook, as saved at entry until they return.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsCall {
    /// `int SSL_write(SSL *, const void *buf, int num)`: returns the bytes written.
    Write = 1,
    /// `int SSL_read(SSL *, void *buf, int num)`: returns the bytes read.
    Read = 2,
    /// `int SSL_write_ex(SSL *, const void *buf, size_t num, size_t *written)`: returns 1 on
    /// success, the count is in `*written`.
    WriteEx = 3,
    /// `int SSL_read_ex(SSL *, void *buf, size_t num, size_t *readbytes)`: likewise.
    ReadEx = 4,
}

/// A TLS call's arguments, saved at entry by thread until it returns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PendingTlsCall {
    /// A [`TlsCall`] value.
    pub call: u32,
    pub _pad: u32,
    pub ssl: u64,
    pub buf: u64,
    /// Where the `_ex` calls store their byte count; 0 for the others.
    pub count_out: u64,
    /// The stack pointer at entry: the return of this call (not of one nested in it) finds the
    /// stack popped by exactly the return address.
    pub stack_pointer: u64,
    /// Where the hooked function is in the process's memory: which library it is.
    pub function: u64,
}

const _: () = assert!(size_of::<SocketKey>() == 8);
const _: () = assert!(size_of::<TlsSessionKey>() == 16);
const _: () = assert!(size_of::<PendingTlsCall>() == 48);
const _: () = assert!(size_of::<SocketState>() == 216);
const _: () = assert!(size_of::<FrameCursor>() == 96);
const _: () = assert!(size_of::<MessageCursor>() == 12);
const _: () = assert!(size_of::<DirectionKey>() == 16);
const _: () = assert!(size_of::<TracedProcess>() == 8);
const _: () = assert!(size_of::<RecordInProgress>() == 64);
const _: () =
    assert!(size_of::<HeldRecord>() == 64 + size_of::<crate::DataRecord>() + HELD_RECORD_CAP);
