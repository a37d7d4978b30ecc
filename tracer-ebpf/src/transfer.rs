//! Copying the bytes a read/write-style syscall moved into data records.
//!
//! Every syscall, whatever its shape (one buffer, an iovec array, a msghdr, an mmsghdr array), is
//! walked as a sequence of user-memory segments. Bytes are packed into records of up to
//! [`RECORD_DATA_CAP`]; what cannot be copied is reported as a gap of exact length.

use aya_ebpf::helpers::{bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_buf};
use tracer_common::{
    DataRecord, Direction, LossKind, PendingCall, RECORD_DATA_CAP, RecordHeader, RecordKind,
    SocketKey, SyscallOp, maps::MAX_STEPS_PER_SYSCALL,
};

use crate::maps::{DATA_SCRATCH, DataScratch, EVENTS, SOCKETS, count_loss, data_record_flags};

/// Enough for grpcio's many-iovec sendmsg; the rest becomes a gap.
const MAX_STEPS: u32 = MAX_STEPS_PER_SYSCALL;
/// mmsghdr entries whose lengths are summed for sendmmsg/recvmmsg.
const MAX_MESSAGES: u64 = 32;

// x86_64/aarch64 layouts of struct iovec, struct msghdr and struct mmsghdr.
const IOVEC_SIZE: u64 = 16;
const MSGHDR_IOV_OFFSET: u64 = 16;
const MSGHDR_IOVLEN_OFFSET: u64 = 24;
const MMSGHDR_SIZE: u64 = 64;
const MMSGHDR_LEN_OFFSET: u64 = 56;

#[inline(always)]
fn read_user_u64(addr: u64) -> Option<u64> {
    // SAFETY: the helper validates the user address.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

#[inline(always)]
fn read_user_u32(addr: u64) -> Option<u32> {
    // SAFETY: the helper validates the user address.
    unsafe { bpf_probe_read_user(addr as *const u32) }.ok()
}

/// Position in the user memory a syscall moved bytes from or to, plus the record being
/// assembled. Lives in the per-CPU scratch map, not on the stack: every loop iteration reads it
/// back from map memory, so the verifier sees the same abstract state at the top of each
/// iteration and can prune instead of exploring every iteration's exact values.
#[repr(C)]
pub struct SegmentWalk {
    /// Next mmsghdr to load, and how many remain (sendmmsg/recvmmsg only).
    next_message: u64,
    messages_left: u64,
    /// Next iovec to load, and how many remain in the current message.
    next_iovec: u64,
    iovecs_left: u64,
    /// Bytes of the current message that the syscall moved and that are not walked yet.
    message_left: u64,
    /// The segment being copied.
    segment: u64,
    segment_left: u64,
    /// Bytes of the transfer not copied yet.
    remaining: u64,
    /// Bytes already in the record being assembled, and that record's stream offset.
    assembled: u64,
    offset: u64,
}

impl SegmentWalk {
    const fn buffer(addr: u64, len: u64) -> Self {
        Self::iovecs(0, 0, len).with_segment(addr, len)
    }

    const fn iovecs(iovecs: u64, count: u64, moved: u64) -> Self {
        SegmentWalk {
            next_message: 0,
            messages_left: 0,
            next_iovec: iovecs,
            iovecs_left: count,
            message_left: moved,
            segment: 0,
            segment_left: 0,
            remaining: 0,
            assembled: 0,
            offset: 0,
        }
    }

    const fn messages(mmsghdrs: u64, count: u64) -> Self {
        SegmentWalk {
            next_message: mmsghdrs,
            messages_left: count,
            ..Self::iovecs(0, 0, 0)
        }
    }

    const fn with_segment(mut self, addr: u64, len: u64) -> Self {
        self.segment = addr;
        self.segment_left = len;
        self
    }
}

/// Volatile access to the walk in map memory, so the compiler keeps it there.
macro_rules! get {
    ($walk:expr, $field:ident) => {
        // SAFETY: `$walk` points at this CPU's scratch value.
        unsafe { core::ptr::read_volatile(&raw const (*$walk).$field) }
    };
}
macro_rules! set {
    ($walk:expr, $field:ident, $value:expr) => {
        // SAFETY: `$walk` points at this CPU's scratch value.
        unsafe { core::ptr::write_volatile(&raw mut (*$walk).$field, $value) }
    };
}

/// Loads the next iovec, or the next message's first one. False when there is nothing left to
/// walk or user memory could not be read.
#[inline(always)]
fn advance(walk: *mut SegmentWalk) -> bool {
    let message_left = get!(walk, message_left);
    let iovecs_left = get!(walk, iovecs_left);
    if iovecs_left > 0 && message_left > 0 {
        let next_iovec = get!(walk, next_iovec);
        let (Some(base), Some(len)) = (read_user_u64(next_iovec), read_user_u64(next_iovec + 8))
        else {
            return false;
        };
        set!(walk, next_iovec, next_iovec + IOVEC_SIZE);
        set!(walk, iovecs_left, iovecs_left - 1);
        set!(walk, segment, base);
        set!(
            walk,
            segment_left,
            if len < message_left {
                len
            } else {
                message_left
            }
        );
        return true;
    }
    let messages_left = get!(walk, messages_left);
    if messages_left > 0 {
        let header = get!(walk, next_message);
        let (Some(iovecs), Some(count), Some(moved)) = (
            read_user_u64(header + MSGHDR_IOV_OFFSET),
            read_user_u64(header + MSGHDR_IOVLEN_OFFSET),
            read_user_u32(header + MMSGHDR_LEN_OFFSET),
        ) else {
            return false;
        };
        set!(walk, next_message, header + MMSGHDR_SIZE);
        set!(walk, messages_left, messages_left - 1);
        set!(walk, next_iovec, iovecs);
        set!(walk, iovecs_left, count);
        set!(walk, message_left, u64::from(moved));
        return true;
    }
    false
}

/// A read/write-style syscall on a connection returned `ret`.
#[inline(always)]
pub fn on_transfer(pid_tgid: u64, op: SyscallOp, call: &PendingCall, ret: i64) {
    if ret <= 0 {
        return;
    }
    let key = SocketKey {
        tgid: (pid_tgid >> 32) as u32,
        fd: call.fd,
    };
    let Some(state) = SOCKETS.get_ptr_mut(&key) else {
        return; // Closed by another thread meanwhile.
    };
    // SAFETY: `state` points into the map value, which stays valid during this program.
    let conn_id = unsafe { (*state).conn_id };
    if conn_id == 0 {
        return;
    }
    let moved = ret as u64;
    let (direction, walk, total) = match op {
        SyscallOp::Write | SyscallOp::Sendto => (
            Direction::Egress,
            SegmentWalk::buffer(call.ptr, moved),
            moved,
        ),
        SyscallOp::Read | SyscallOp::Recvfrom => (
            Direction::Ingress,
            SegmentWalk::buffer(call.ptr, moved),
            moved,
        ),
        SyscallOp::Writev => (
            Direction::Egress,
            SegmentWalk::iovecs(call.ptr, call.arg, moved),
            moved,
        ),
        SyscallOp::Readv => (
            Direction::Ingress,
            SegmentWalk::iovecs(call.ptr, call.arg, moved),
            moved,
        ),
        SyscallOp::Sendmsg => (Direction::Egress, msghdr_walk(call.ptr, moved), moved),
        SyscallOp::Recvmsg => (Direction::Ingress, msghdr_walk(call.ptr, moved), moved),
        // ret is a message count here; the byte count is the sum of the messages' lengths.
        SyscallOp::Sendmmsg => (
            Direction::Egress,
            SegmentWalk::messages(call.ptr, moved),
            mmsg_bytes(call.ptr, moved),
        ),
        SyscallOp::Recvmmsg => (
            Direction::Ingress,
            SegmentWalk::messages(call.ptr, moved),
            mmsg_bytes(call.ptr, moved),
        ),
        _ => return,
    };
    // SAFETY: as above. A plain read-modify-write is enough: this runs before the syscall returns
    // to the process, so writers that the process itself serialises (as it must, or its byte
    // stream would interleave) are serialised here too.
    let offset = unsafe {
        let counter = match direction {
            Direction::Egress => &raw mut (*state).sent,
            Direction::Ingress => &raw mut (*state).received,
        };
        let offset = *counter;
        *counter = offset + total;
        offset
    };
    let header = RecordHeader {
        kind: RecordKind::Data as u32,
        tgid: key.tgid,
        tid: pid_tgid as u32,
        fd: call.fd,
        conn_id,
        // SAFETY: no preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
    };
    copy_out(header, direction, op, offset, total, walk);
}

/// sendmsg/recvmsg: the iovec array hangs off the msghdr. If it cannot be read, the walk is
/// empty and the whole transfer becomes a gap.
#[inline(always)]
fn msghdr_walk(msghdr: u64, moved: u64) -> SegmentWalk {
    match (
        read_user_u64(msghdr + MSGHDR_IOV_OFFSET),
        read_user_u64(msghdr + MSGHDR_IOVLEN_OFFSET),
    ) {
        (Some(iovecs), Some(count)) => SegmentWalk::iovecs(iovecs, count, moved),
        _ => {
            count_loss(LossKind::UserReadFailed);
            SegmentWalk::iovecs(0, 0, 0)
        }
    }
}

/// Total bytes of the first `count` messages of an mmsghdr array.
#[inline(always)]
fn mmsg_bytes(mmsghdrs: u64, count: u64) -> u64 {
    if count > MAX_MESSAGES {
        count_loss(LossKind::TooManyMessages);
    }
    let mut total = 0;
    let mut index = 0;
    while index < MAX_MESSAGES && index < count {
        match read_user_u32(mmsghdrs + index * MMSGHDR_SIZE + MMSGHDR_LEN_OFFSET) {
            Some(len) => total += u64::from(len),
            None => count_loss(LossKind::UserReadFailed),
        }
        index += 1;
    }
    total
}

/// Emits `total` bytes starting at stream `offset` as data records, with a trailing gap for
/// whatever could not be copied.
#[inline(always)]
fn copy_out(
    header: RecordHeader,
    direction: Direction,
    op: SyscallOp,
    offset: u64,
    total: u64,
    mut start: SegmentWalk,
) {
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    start.remaining = total;
    start.offset = offset;
    // SAFETY: `scratch` is this CPU's scratch value.
    let walk = unsafe {
        (*scratch).walk = start;
        &raw mut (*scratch).walk
    };
    let mut outcome = Step::Continue;
    for _ in 0..MAX_STEPS {
        outcome = step(scratch, walk, header, direction, op);
        if !matches!(outcome, Step::Continue) {
            break;
        }
    }
    let assembled = get!(walk, assembled);
    let remaining = get!(walk, remaining);
    if assembled == 0 && remaining == 0 {
        return;
    }
    match outcome {
        Step::ReadFailed => count_loss(LossKind::UserReadFailed),
        _ if remaining > 0 => count_loss(LossKind::TransferTooLarge),
        _ => {}
    }
    emit(
        scratch,
        header,
        direction,
        op,
        get!(walk, offset),
        assembled,
        assembled + remaining,
    );
}

enum Step {
    Continue,
    Done,
    ReadFailed,
}

/// One iteration: load the next segment, or copy (part of) the current one into the record,
/// emitting the record when it is full.
#[inline(always)]
fn step(
    scratch: *mut DataScratch,
    walk: *mut SegmentWalk,
    header: RecordHeader,
    direction: Direction,
    op: SyscallOp,
) -> Step {
    const CAP: u64 = RECORD_DATA_CAP as u64;
    let remaining = get!(walk, remaining);
    if remaining == 0 {
        return Step::Done;
    }
    let segment_left = get!(walk, segment_left);
    if segment_left == 0 {
        return if advance(walk) {
            Step::Continue
        } else {
            Step::Done
        };
    }
    let assembled = get!(walk, assembled);
    // Both bounds are restated against constants for the verifier.
    if assembled >= CAP {
        return Step::Done;
    }
    let mut len = segment_left;
    if len > remaining {
        len = remaining;
    }
    if len > CAP - assembled {
        len = CAP - assembled;
    }
    if len > CAP {
        return Step::Done;
    }
    let segment = get!(walk, segment);
    // SAFETY: `assembled + len <= 2 * CAP`, the size of the scratch data area.
    let copied = unsafe {
        let dst = core::slice::from_raw_parts_mut(
            (*scratch).data.as_mut_ptr().add(assembled as usize),
            len as usize,
        );
        bpf_probe_read_user_buf(segment as *const u8, dst)
    };
    if copied.is_err() {
        return Step::ReadFailed;
    }
    set!(walk, segment, segment + len);
    set!(walk, segment_left, segment_left - len);
    let message_left = get!(walk, message_left);
    set!(walk, message_left, message_left - len);
    set!(walk, remaining, remaining - len);
    if assembled + len == CAP {
        let offset = get!(walk, offset);
        emit(scratch, header, direction, op, offset, CAP, CAP);
        set!(walk, offset, offset + CAP);
        set!(walk, assembled, 0);
    } else {
        set!(walk, assembled, assembled + len);
    }
    Step::Continue
}

#[inline(always)]
fn emit(
    scratch: *mut DataScratch,
    header: RecordHeader,
    direction: Direction,
    op: SyscallOp,
    offset: u64,
    captured: u64,
    original: u64,
) {
    if captured > RECORD_DATA_CAP as u64 {
        return;
    }
    // SAFETY: `scratch` is this CPU's scratch value; the record and `captured` bytes after it
    // lie inside it.
    let result = unsafe {
        (*scratch).record = DataRecord {
            header,
            offset,
            captured_len: captured as u32,
            original_len: original as u32,
            direction: direction as u32,
            syscall: op as u32,
        };
        let bytes = core::slice::from_raw_parts(
            (&raw const (*scratch).record).cast::<u8>(),
            size_of::<DataRecord>() + captured as usize,
        );
        EVENTS.output::<[u8]>(bytes, data_record_flags())
    };
    if result.is_err() {
        count_loss(LossKind::RingBufferFull);
    }
}
