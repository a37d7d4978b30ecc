//! Copying the bytes a read/write-style syscall moved into data records.
//!
//! Every syscall, whatever its shape (one buffer, an iovec array, a msghdr, an mmsghdr array), is
//! walked as a sequence of user-memory segments. The connection direction's [`FrameCursor`] says
//! which bytes to keep and which to skip (DATA payload); kept bytes are packed into records of up
//! to [`RECORD_DATA_CAP`] as pieces, each followed by the exact length skipped after it. What
//! cannot be copied is reported the same way, and counted as a loss.

mod inside_body;
mod whole;

pub use whole::FollowedCopy;

use aya_ebpf::helpers::{
    bpf_ktime_get_ns, bpf_probe_read_kernel_buf, bpf_probe_read_user, bpf_probe_read_user_buf,
    generated::bpf_loop,
};
use tracer_common::{
    DataRecord, Direction, DirectionKey, FrameCursor, HELD_RECORD_CAP, LossKind, PIECE_HEADER_LEN,
    PendingCall, PieceHeader, RECORD_DATA_CAP, RecordHeader, RecordInProgress, RecordKind,
    SocketKey, SyscallOp,
    maps::{
        MAX_RECORDS_PER_SYSCALL, MAX_STEPS_PER_SYSCALL, WHOLE_TRANSFER_MAX, floor,
        framing::{HEADER, LOST},
    },
};

use crate::{
    framing::{self, Run, Urgency},
    maps::{
        DATA_SCRATCH, DEFERRED, DataScratch, EVENTS, RESYNC, SOCKETS, capture_floor, count_loss,
        data_record_flags,
    },
    volatile::copy_words,
};

/// Enough for grpcio's many-iovec sendmsg; the rest becomes a gap.
const MAX_STEPS: u32 = MAX_STEPS_PER_SYSCALL;
/// Steps after which a transfer stops following HTTP/2 framing (a read packed with small frames
/// costs a few steps per frame) and copies the rest in whole records instead.
const FRAMING_STEPS: u32 = MAX_STEPS - 64;
const CAP: u64 = RECORD_DATA_CAP as u64;
const PIECE_HEADER: u64 = PIECE_HEADER_LEN as u64;
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
    /// Bytes of the transfer not walked yet.
    remaining: u64,
    /// The record being assembled.
    record: RecordInProgress,
    /// Records sent so far.
    records: u64,
    /// Non-zero once user memory could not be read; the walk stops there.
    read_failed: u64,
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
            record: RecordInProgress::EMPTY,
            records: 0,
            read_failed: 0,
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

/// Loads the next iovec, or the next message's first one. False when there is nothing left to
/// walk or user memory could not be read.
#[inline(always)]
fn advance(walk: *mut SegmentWalk) -> bool {
    let message_left = get!(walk, message_left);
    let iovecs_left = get!(walk, iovecs_left);
    if iovecs_left > 0 && message_left > 0 {
        let next_iovec = get!(walk, next_iovec);
        // SAFETY: the helper validates the user address.
        let Ok([base, len]) = (unsafe { bpf_probe_read_user(next_iovec as *const [u64; 2]) })
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
    let Some(state) = SOCKETS.get_ptr_mut(key) else {
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
    let (offset, cursor) = unsafe {
        let (counter, cursor) = match direction {
            Direction::Egress => (&raw mut (*state).sent, &raw mut (*state).framing[0]),
            Direction::Ingress => (&raw mut (*state).received, &raw mut (*state).framing[1]),
        };
        let offset = *counter;
        *counter = offset + total;
        (offset, cursor)
    };
    let direction_key = DirectionKey {
        conn_id,
        direction: direction as u64,
    };
    let floor = capture_floor();
    if floor == floor::NONE && inside_body::skip_inside_body(cursor, &direction_key, offset, total)
    {
        return;
    }
    let header = RecordHeader {
        kind: RecordKind::Data as u32,
        tgid: key.tgid,
        tid: pid_tgid as u32,
        fd: call.fd,
        conn_id,
        // SAFETY: no preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
    };
    match floor {
        floor::NONE => {}
        floor::BARE_RECORDS => return send_bare_record(header, direction, op, offset, total),
        _ => return send_copied_record(header, direction, op, offset, total, walk),
    }
    copy_out(header, &direction_key, op, cursor, offset, total, walk);
}

/// A data record whose one piece keeps nothing and skips the whole transfer.
#[repr(C)]
struct BareRecord {
    record: DataRecord,
    piece: PieceHeader,
}

/// Sends the transfer as a [`BareRecord`] ([`floor::BARE_RECORDS`]).
#[inline(always)]
fn send_bare_record(
    header: RecordHeader,
    direction: Direction,
    op: SyscallOp,
    offset: u64,
    total: u64,
) {
    let bare = BareRecord {
        record: DataRecord {
            header,
            offset,
            captured_len: PIECE_HEADER_LEN as u32,
            original_len: total as u32,
            direction: direction as u32,
            syscall: op as u32,
        },
        piece: PieceHeader {
            kept: 0,
            skipped: total as u32,
        },
    };
    let flags = data_record_flags(size_of::<BareRecord>() as u64);
    if EVENTS.output::<BareRecord>(&bare, flags).is_err() {
        count_loss(LossKind::RingBufferFull);
    }
}

/// Sends the transfer as one record keeping its first segment's bytes, up to
/// [`WHOLE_TRANSFER_MAX`], and skipping the rest ([`floor::COPIED_RECORDS`]).
#[inline(always)]
fn send_copied_record(
    header: RecordHeader,
    direction: Direction,
    op: SyscallOp,
    offset: u64,
    total: u64,
    mut walk: SegmentWalk,
) {
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // The first segment of an iovec array is one step away; of an mmsghdr array, two. If they
    // cannot be read, nothing is kept.
    for _ in 0..2 {
        if walk.segment_left > 0 || !advance(&mut walk) {
            break;
        }
    }
    let kept = walk.segment_left.min(total).min(WHOLE_TRANSFER_MAX);
    stage_record(scratch, header, direction as u32, op);
    let piece = PieceHeader {
        kept: kept as u32,
        skipped: (total - kept) as u32,
    };
    // SAFETY: `scratch` is this CPU's scratch value; `PIECE_HEADER + kept` is at most
    // `PIECE_HEADER + WHOLE_TRANSFER_MAX`, inside its data area.
    unsafe {
        let data = (*scratch).data.as_mut_ptr();
        core::ptr::write_unaligned(data.cast::<PieceHeader>(), piece);
        let dst = core::slice::from_raw_parts_mut(data.add(PIECE_HEADER as usize), kept as usize);
        if bpf_probe_read_user_buf(walk.segment as *const u8, dst).is_err() {
            count_loss(LossKind::UserReadFailed);
            return;
        }
        send_record(
            &raw mut (*scratch).record,
            offset,
            PIECE_HEADER + kept,
            total,
        );
    }
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

/// Emits `total` bytes starting at stream `offset` of the connection direction `key` as data
/// records: the bytes `cursor` keeps, the lengths of those it skips, and a trailing gap for
/// whatever could not be walked.
#[inline(always)]
fn copy_out(
    header: RecordHeader,
    key: &DirectionKey,
    op: SyscallOp,
    cursor: *mut FrameCursor,
    offset: u64,
    total: u64,
    mut start: SegmentWalk,
) {
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    start.remaining = total;
    start.record.offset = offset;
    framing::begin(cursor, offset);
    // Whether a held-back record was taken up: its entry in DEFERRED is then still there, to
    // be overwritten if this transfer is held back too, or removed.
    let mut resumed = false;
    stage_record(scratch, header, key.direction as u32, op);
    // SAFETY: `scratch` is this CPU's scratch value and `cursor` points into a SOCKETS value.
    unsafe {
        // A word copy: struct assignment would zero parts of it with a byte-wise memset.
        copy_words(&raw mut (*scratch).walk, &start);
        if (*cursor).deferred != 0 {
            (*cursor).deferred = 0;
            if framing::is_following(cursor) {
                resumed = resume_deferred(scratch, key);
            } else {
                // Bytes went missing after the held-back ones: they cannot share a record.
                flush_deferred(key);
            }
        }
        if (*cursor).state == LOST {
            rearm(cursor, key, offset);
        }
        copy_words(&raw mut (*scratch).cursor, cursor);
    }
    if !whole::copy_whole(scratch, cursor) {
        // bpf_loop has the verifier check one step rather than every iteration of an unrolled
        // loop.
        // SAFETY: the callback only uses this CPU's scratch value, which nothing else touches
        // while this program runs.
        unsafe {
            bpf_loop(
                MAX_STEPS,
                walk_step as *mut core::ffi::c_void,
                core::ptr::null_mut(),
                0,
            )
        };
    }
    let walk = walk_of(scratch);
    let remaining = get!(walk, remaining);
    // SAFETY: as above.
    let following = unsafe {
        let followed = &raw mut (*scratch).cursor;
        framing::end(followed, offset + total, remaining == 0);
        copy_words(cursor, followed);
        framing::is_following(cursor)
    };
    if remaining > 0 {
        count_loss(if get!(walk, read_failed) != 0 {
            LossKind::UserReadFailed
        } else {
            LossKind::TransferTooLarge
        });
        skip(scratch, remaining);
    }
    if get!(walk, record.covered) != 0
        && following
        && get!(walk, record.urgent) == 0
        && get!(walk, record.assembled) <= HELD_RECORD_CAP as u64
        && get!(walk, record.covered) < DEFER_MAX_COVERED
        && hold_back(scratch, key, resumed)
    {
        // SAFETY: as above.
        unsafe { (*cursor).deferred = 1 };
        return;
    }
    if resumed {
        let _ = DEFERRED.remove(key);
    }
    if get!(walk, record.covered) != 0 {
        emit(scratch);
    }
}

/// Starts the scratch record of a transfer: its header, direction and syscall. Its extent is
/// filled in when it is sent ([`send_record`]).
#[inline(always)]
fn stage_record(scratch: *mut DataScratch, header: RecordHeader, direction: u32, op: SyscallOp) {
    let record = DataRecord {
        header,
        offset: 0,
        captured_len: 0,
        original_len: 0,
        direction,
        syscall: op as u32,
    };
    // SAFETY: `scratch` is this CPU's scratch value. A word copy: struct assignment would zero
    // parts of the record with a byte-wise memset.
    unsafe { copy_words(&raw mut (*scratch).record, &record) };
}

/// Takes up the cursor userspace left in [`RESYNC`], if it was made for exactly this point of
/// the stream; one made for an earlier point is stale (the process moved on) and dropped.
#[inline(always)]
fn rearm(cursor: *mut FrameCursor, key: &DirectionKey, offset: u64) {
    let Some(offered) = RESYNC.get_ptr(key) else {
        return;
    };
    // SAFETY: `offered` is a map value and `cursor` points into a SOCKETS value, both valid
    // during this program.
    unsafe {
        if (*offered).position == offset && (*offered).state == HEADER {
            copy_words(cursor, offered);
        }
    }
    let _ = RESYNC.remove(key);
}

/// Stream bytes a held-back record may cover: its length field is 32 bits.
pub(super) const DEFER_MAX_COVERED: u64 = 1 << 31;

/// Stores the record in progress in [`DEFERRED`] instead of emitting it: over the entry that is
/// still there if the record was `resumed` from one (a large message moves through a run of
/// such syscalls, and writing in place spares each a map insert of the whole value and a
/// removal), else in a new entry. False if that fails (the map is full): then it is emitted now.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "passing the value would copy it onto the 512-byte BPF stack"
)]
fn hold_back(scratch: *mut DataScratch, key: &DirectionKey, resumed: bool) -> bool {
    // The piece stays open: the next syscall may add to it.
    write_piece_header(scratch);
    let walk = walk_of(scratch);
    let assembled = get!(walk, record.assembled);
    if assembled > HELD_RECORD_CAP as u64 {
        return false;
    }
    let in_place = if resumed {
        DEFERRED.get_ptr_mut(key)
    } else {
        None
    };
    // SAFETY: `scratch` is this CPU's scratch value and `held` either its staging area or a map
    // value, valid during this program; both data areas hold at least `assembled` bytes.
    unsafe {
        let held = in_place.unwrap_or(&raw mut (*scratch).deferred);
        copy_words(&raw mut (*held).progress, &raw const (*scratch).walk.record);
        copy_words(&raw mut (*held).record, &raw const (*scratch).record);
        let dst = core::slice::from_raw_parts_mut((*held).data.as_mut_ptr(), assembled as usize);
        if bpf_probe_read_kernel_buf((*scratch).data.as_ptr(), dst).is_err() {
            return false;
        }
        in_place.is_some() || DEFERRED.insert(key, &*held, 0).is_ok()
    }
}

/// Makes the held-back record the start of the record in progress, leaving its entry in
/// [`DEFERRED`] for [`hold_back`] to overwrite or the caller to remove. False if there was
/// none to take up.
#[inline(always)]
fn resume_deferred(scratch: *mut DataScratch, key: &DirectionKey) -> bool {
    let Some(deferred) = DEFERRED.get_ptr(key) else {
        return false;
    };
    // SAFETY: `scratch` is this CPU's scratch value; `deferred` is a map value, valid during
    // this program. `assembled` is at most HELD_RECORD_CAP, the size of the source area.
    unsafe {
        let held = &raw const (*deferred).progress;
        let assembled = (*held).assembled;
        if assembled > HELD_RECORD_CAP as u64 {
            return false;
        }
        let dst = core::slice::from_raw_parts_mut((*scratch).data.as_mut_ptr(), assembled as usize);
        if bpf_probe_read_kernel_buf((*deferred).data.as_ptr(), dst).is_err() {
            // They cannot start this record: send them as one of their own.
            flush_deferred(key);
            return false;
        }
        copy_words(&raw mut (*scratch).walk.record, held);
    }
    true
}

/// Emits a held-back record on its own (the socket is closing, or what follows it is not
/// contiguous).
#[inline(always)]
pub fn flush_deferred(key: &DirectionKey) {
    let Some(deferred) = DEFERRED.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: `deferred` is a map value, valid during this program; the record and `captured`
    // bytes after it lie inside it.
    unsafe {
        let held = &raw const (*deferred).progress;
        let captured = (*held).assembled;
        if captured > HELD_RECORD_CAP as u64 {
            return;
        }
        send_record(
            &raw mut (*deferred).record,
            (*held).offset,
            captured,
            (*held).covered,
        );
    }
    let _ = DEFERRED.remove(key);
}

/// One iteration of the walk, called by `bpf_loop`: 0 to go on, 1 to stop.
#[inline(never)]
extern "C" fn walk_step(index: u32, _context: *mut core::ffi::c_void) -> i64 {
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: `scratch` is this CPU's scratch value.
    let cursor = unsafe { &raw mut (*scratch).cursor };
    if index >= FRAMING_STEPS {
        framing::lose_track(cursor);
    }
    match step(scratch, cursor) {
        Step::Continue => 0,
        Step::Done => 1,
        Step::ReadFailed => {
            set!(walk_of(scratch), read_failed, 1);
            1
        }
    }
}

#[inline(always)]
fn walk_of(scratch: *mut DataScratch) -> *mut SegmentWalk {
    // SAFETY: `scratch` is this CPU's scratch value.
    unsafe { &raw mut (*scratch).walk }
}

enum Step {
    Continue,
    Done,
    ReadFailed,
}

/// One iteration: load the next segment, or keep or skip the run of the current segment that
/// the cursor asks for.
#[inline(always)]
fn step(scratch: *mut DataScratch, cursor: *mut FrameCursor) -> Step {
    let walk = walk_of(scratch);
    let remaining = get!(walk, remaining);
    if remaining == 0 || get!(walk, records) >= MAX_RECORDS_PER_SYSCALL {
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
    let available = segment_left.min(remaining);
    let run = framing::next_run(cursor);
    if let Run::Keep(0) | Run::Skip(0) = run {
        // Cannot happen while the cursor is consistent; copying everything always works.
        framing::lose_track(cursor);
        return Step::Continue;
    }
    match run {
        Run::Skip(run) => {
            let len = available.min(run);
            skip(scratch, len);
            framing::skipped(cursor, len);
            Step::Continue
        }
        Run::Keep(run) => match keep(scratch, available.min(run)) {
            Some((at, len)) => {
                // SAFETY: `scratch` is this CPU's scratch value.
                let data = unsafe { (*scratch).data.as_ptr() };
                if framing::kept(cursor, data, at, len) == Urgency::Now {
                    set!(walk, record.urgent, 1);
                }
                Step::Continue
            }
            None => Step::ReadFailed,
        },
    }
}

/// Copies up to `wanted` bytes of the current segment into the record being assembled and
/// returns where in the data area they went and how many there are (the record may fill up
/// first). `None` if user memory could not be read.
#[inline(always)]
fn keep(scratch: *mut DataScratch, wanted: u64) -> Option<(u64, u64)> {
    let walk = walk_of(scratch);
    let keeps_piece = open_piece_keeps(walk);
    let assembled = get!(walk, record.assembled);
    if (keeps_piece && assembled >= CAP) || (!keeps_piece && assembled + PIECE_HEADER >= CAP) {
        emit(scratch);
        start_piece(scratch);
    } else if !keeps_piece {
        start_piece(scratch);
    }
    let assembled = get!(walk, record.assembled);
    // Both bounds are restated against constants for the verifier.
    if assembled >= CAP {
        return Some((0, 0));
    }
    let len = wanted.min(CAP - assembled);
    if !append_from_segment(scratch, len) {
        return None;
    }
    if assembled + len == CAP {
        emit(scratch);
    }
    Some((assembled, len))
}

/// Copies the next `len` bytes of the current segment to the end of the record in progress,
/// as part of its open piece. False if user memory could not be read, or if the record is
/// full or `len` above [`CAP`] (callers rule both out; the data area is twice [`CAP`]).
#[inline(always)]
fn append_from_segment(scratch: *mut DataScratch, len: u64) -> bool {
    let walk = walk_of(scratch);
    let assembled = get!(walk, record.assembled);
    // Restated against constants for the verifier: the copy ends inside the data area.
    if assembled >= CAP || len > CAP {
        return false;
    }
    let segment = get!(walk, segment);
    // SAFETY: `assembled + len < 2 * CAP`, the size of the scratch data area.
    let copied = unsafe {
        let dst = core::slice::from_raw_parts_mut(
            (*scratch).data.as_mut_ptr().add(assembled as usize),
            len as usize,
        );
        bpf_probe_read_user_buf(segment as *const u8, dst)
    };
    if copied.is_err() {
        return false;
    }
    consume_segment(walk, len);
    set!(walk, record.assembled, assembled + len);
    set!(walk, record.piece_kept, get!(walk, record.piece_kept) + len);
    true
}

/// Accounts `len` bytes of the current segment as skipped.
#[inline(always)]
fn skip(scratch: *mut DataScratch, len: u64) {
    let walk = walk_of(scratch);
    if get!(walk, record.has_piece) == 0 {
        if get!(walk, record.assembled) + PIECE_HEADER > CAP {
            emit(scratch);
        }
        start_piece(scratch);
    }
    consume_segment(walk, len);
    set!(
        walk,
        record.piece_skipped,
        get!(walk, record.piece_skipped) + len
    );
}

#[inline(always)]
fn consume_segment(walk: *mut SegmentWalk, len: u64) {
    let segment_left = get!(walk, segment_left);
    let len_in_segment = len.min(segment_left);
    set!(walk, segment, get!(walk, segment) + len_in_segment);
    set!(walk, segment_left, segment_left - len_in_segment);
    set!(
        walk,
        message_left,
        get!(walk, message_left).saturating_sub(len)
    );
    set!(walk, remaining, get!(walk, remaining).saturating_sub(len));
    set!(walk, record.covered, get!(walk, record.covered) + len);
}

/// Whether kept bytes can go on the open piece: there is one, and nothing was skipped after
/// its kept bytes yet.
#[inline(always)]
fn open_piece_keeps(walk: *mut SegmentWalk) -> bool {
    get!(walk, record.has_piece) != 0 && get!(walk, record.piece_skipped) == 0
}

/// Finishes the current piece (if any) and opens a new one at the end of the data area.
#[inline(always)]
fn start_piece(scratch: *mut DataScratch) {
    finish_piece(scratch);
    let walk = walk_of(scratch);
    let assembled = get!(walk, record.assembled);
    set!(walk, record.has_piece, 1);
    set!(walk, record.piece_at, assembled);
    set!(walk, record.piece_kept, 0);
    set!(walk, record.piece_skipped, 0);
    set!(walk, record.assembled, assembled + PIECE_HEADER);
}

#[inline(always)]
fn finish_piece(scratch: *mut DataScratch) {
    write_piece_header(scratch);
    set!(walk_of(scratch), record.has_piece, 0);
}

/// Writes the open piece's counts into its header, leaving it open.
#[inline(always)]
fn write_piece_header(scratch: *mut DataScratch) {
    let walk = walk_of(scratch);
    if get!(walk, record.has_piece) == 0 {
        return;
    }
    let at = get!(walk, record.piece_at);
    if at > CAP {
        return;
    }
    let piece = PieceHeader {
        kept: get!(walk, record.piece_kept) as u32,
        skipped: get!(walk, record.piece_skipped) as u32,
    };
    // SAFETY: `at + PIECE_HEADER <= 2 * CAP`, inside the scratch data area.
    unsafe {
        let dst = (*scratch).data.as_mut_ptr().add(at as usize);
        core::ptr::write_unaligned(dst.cast::<PieceHeader>(), piece);
    }
}

/// Sends the record assembled so far and starts the next one where it ends.
#[inline(always)]
fn emit(scratch: *mut DataScratch) {
    finish_piece(scratch);
    let walk = walk_of(scratch);
    let captured = get!(walk, record.assembled);
    let covered = get!(walk, record.covered);
    let offset = get!(walk, record.offset);
    set!(walk, record.offset, offset + covered);
    set!(walk, record.covered, 0);
    set!(walk, record.assembled, 0);
    set!(walk, record.urgent, 0);
    set!(walk, records, get!(walk, records) + 1);
    if captured > CAP {
        return;
    }
    // SAFETY: `scratch` is this CPU's scratch value; the record and `captured` bytes after it
    // lie inside it.
    unsafe { send_record(&raw mut (*scratch).record, offset, captured, covered) };
}

/// Fills in a record's extent and sends it with the `captured` bytes that follow it.
///
/// # Safety
/// `record` must point at a record in map memory followed by at least `captured` bytes, and
/// the caller must have bounded `captured` by that area's size.
#[inline(always)]
unsafe fn send_record(record: *mut DataRecord, offset: u64, captured: u64, covered: u64) {
    // SAFETY: per the caller's contract.
    let result = unsafe {
        (*record).offset = offset;
        (*record).captured_len = captured as u32;
        (*record).original_len = covered as u32;
        let bytes = core::slice::from_raw_parts(
            record.cast::<u8>(),
            size_of::<DataRecord>() + captured as usize,
        );
        EVENTS.output::<[u8]>(bytes, data_record_flags(bytes.len() as u64))
    };
    if result.is_err() {
        count_loss(LossKind::RingBufferFull);
    }
}
