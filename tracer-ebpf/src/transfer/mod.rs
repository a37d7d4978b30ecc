//! Copying the bytes a read/write-style syscall moved into data records.
//!
//! Every syscall, whatever its shape (one buffer, an iovec array, a msghdr, an mmsghdr array), is
//! walked as a sequence of user-memory segments. The connection direction's [`FrameCursor`] says
//! which bytes to keep and which to skip (DATA payload); kept bytes are packed into records of up
//! to [`RECORD_DATA_CAP`] as pieces, each followed by the exact length skipped after it. What
//! cannot be copied is reported the same way, and counted as a loss.

#[cfg(feature = "bench-floors")]
mod floors;
mod held_back;
mod inside_body;
mod record;
mod segments;
mod whole;

pub use held_back::flush_deferred;

use aya_ebpf::helpers::bpf_ktime_get_ns;
use tracer_common::{
    Direction, DirectionKey, FrameCursor, HELD_RECORD_CAP, LossKind, PIECE_HEADER_LEN,
    RECORD_DATA_CAP, RecordHeader, RecordKind, SocketKey, SocketState, SyscallOp,
    maps::{
        MAX_RECORDS_PER_SYSCALL, MAX_STEPS_PER_SYSCALL, floor,
        framing::{HEADER, LOST, OFF, SKIP},
    },
};

use crate::{
    framing::{self, Run, Urgency},
    maps::{DEFERRED, RESYNC, SOCKETS, count_loss, data_scratch},
    scratch::{DataScratch, SegmentWalk},
    volatile::{Volatile, copy_words},
};
use held_back::{DEFER_MAX_COVERED, hold_back, resume_deferred};
use record::{emit, keep, skip, stage_record, walk_of};
use segments::{advance, mmsg_bytes, msghdr_walk};

/// Enough for grpcio's many-iovec sendmsg; the rest becomes a gap.
const MAX_STEPS: u32 = MAX_STEPS_PER_SYSCALL;
/// Steps after which a transfer stops following HTTP/2 framing (a read packed with small frames
/// costs a few steps per frame) and copies the rest in whole records instead.
const FRAMING_STEPS: u32 = MAX_STEPS - 64;
const CAP: u64 = RECORD_DATA_CAP as u64;
const PIECE_HEADER: u64 = PIECE_HEADER_LEN as u64;

/// A read/write-style syscall (`op`) on descriptor `fd` returned `ret`; `buffer` is its buffer,
/// iovec array, msghdr or mmsghdr array, `count` its length or iovec count.
#[inline(always)]
pub fn on_transfer(pid_tgid: u64, op: SyscallOp, fd: u32, buffer: u64, count: u64, ret: i64) {
    if ret <= 0 {
        return;
    }
    let key = SocketKey {
        tgid: (pid_tgid >> 32) as u32,
        fd,
    };
    let Some(state) = SOCKETS.get_ptr_mut(key) else {
        return; // Closed by another thread meanwhile.
    };
    // SAFETY: `state` points into the map value, which stays valid during this program.
    if unsafe { (*state).conn_id } == 0 {
        return;
    }
    let moved = ret as u64;
    let (direction, walk, total) = match op {
        SyscallOp::Write | SyscallOp::Sendto => {
            (Direction::Egress, SegmentWalk::buffer(buffer, moved), moved)
        }
        SyscallOp::Read | SyscallOp::Recvfrom => (
            Direction::Ingress,
            SegmentWalk::buffer(buffer, moved),
            moved,
        ),
        SyscallOp::Writev => (
            Direction::Egress,
            SegmentWalk::iovecs(buffer, count, moved),
            moved,
        ),
        SyscallOp::Readv => (
            Direction::Ingress,
            SegmentWalk::iovecs(buffer, count, moved),
            moved,
        ),
        SyscallOp::Sendmsg => (Direction::Egress, msghdr_walk(buffer, moved), moved),
        SyscallOp::Recvmsg => (Direction::Ingress, msghdr_walk(buffer, moved), moved),
        // ret is a message count here; the byte count is the sum of the messages' lengths.
        SyscallOp::Sendmmsg => (
            Direction::Egress,
            SegmentWalk::messages(buffer, moved),
            mmsg_bytes(buffer, moved),
        ),
        SyscallOp::Recvmmsg => (
            Direction::Ingress,
            SegmentWalk::messages(buffer, moved),
            mmsg_bytes(buffer, moved),
        ),
        _ => return,
    };
    capture(pid_tgid, state, fd, op, direction, walk, total);
}

/// Captures `total` bytes that moved in `direction` of the stream whose kernel state is
/// `state` (a socket's, or a TLS session's), found by walking `walk`.
#[inline(always)]
pub fn capture(
    pid_tgid: u64,
    state: *mut SocketState,
    fd: u32,
    op: SyscallOp,
    direction: Direction,
    walk: SegmentWalk,
    total: u64,
) {
    // SAFETY: `state` points into a map value, which stays valid during this program.
    let conn_id = unsafe { (*state).conn_id };
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
        // The cursor is the connection direction's, which the process's own serialisation of
        // its syscalls on it keeps to one CPU at a time.
        (offset, Volatile::new(cursor))
    };
    let direction_key = DirectionKey {
        conn_id,
        direction: direction as u64,
    };
    let floor = selected_floor();
    if floor == floor::NONE && inside_body::skip_inside_body(cursor, &direction_key, offset, total)
    {
        return;
    }
    let header = RecordHeader {
        kind: RecordKind::Data as u32,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        fd,
        conn_id,
        // SAFETY: no preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
    };
    #[cfg(feature = "bench-floors")]
    if floor != floor::NONE {
        return floors::send(floor, header, direction, op, offset, total, walk);
    }
    copy_out(header, &direction_key, op, cursor, offset, total, walk);
}

/// The benchmark floor userspace selected at load time; the full capture unless this build has
/// the `bench-floors` feature.
#[inline(always)]
fn selected_floor() -> u8 {
    #[cfg(feature = "bench-floors")]
    return floors::selected();
    #[cfg(not(feature = "bench-floors"))]
    floor::NONE
}

/// Emits `total` bytes starting at stream `offset` of the connection direction `key` as data
/// records: the bytes `cursor` keeps, the lengths of those it skips, and a trailing gap for
/// whatever could not be walked.
#[inline(always)]
fn copy_out(
    header: RecordHeader,
    key: &DirectionKey,
    op: SyscallOp,
    cursor: Volatile<FrameCursor>,
    offset: u64,
    total: u64,
    mut start: SegmentWalk,
) {
    let Some(scratch) = data_scratch() else {
        return;
    };
    start.remaining = total;
    start.record.offset = offset;
    framing::begin(cursor, offset);
    // Whether a held-back record was taken up: its entry in DEFERRED is then still there, to
    // be overwritten if this transfer is held back too, or removed.
    set!(scratch, resumed, 0);
    stage_record(scratch, header, key.direction as u32, op);
    // SAFETY: `scratch` is this CPU's scratch value and `cursor` points into a SOCKETS value.
    unsafe {
        // A word copy: struct assignment would zero parts of it with a byte-wise memset.
        copy_words(&raw mut (*scratch.as_ptr()).walk, &start);
        if (*cursor.as_ptr()).deferred != 0 {
            (*cursor.as_ptr()).deferred = 0;
            if framing::is_following(cursor) || framing::is_skipping(cursor) {
                (*scratch.as_ptr()).resumed = u64::from(resume_deferred(scratch, key));
            } else {
                // Bytes went missing after the held-back ones: they cannot share a record.
                flush_deferred(key);
            }
        }
        // Copying everything: userspace may have a cursor for this point, or found the
        // direction not HTTP/2.
        let state = (*cursor.as_ptr()).state;
        if state == LOST || state == OFF {
            rearm(cursor, key, offset);
        }
        copy_words(&raw mut (*scratch.as_ptr()).cursor, cursor.as_ptr());
    }
    // A direction that is skipped has nothing to copy whole.
    if framing::is_skipping(cursor) || !whole::copy_whole(scratch, cursor) {
        repeat!(MAX_STEPS, walk_step_global);
    }
    let walk = walk_of(scratch);
    let remaining = get!(walk, remaining);
    let followed = field!(scratch, cursor);
    framing::end(followed, offset + total, remaining == 0);
    // SAFETY: `cursor` is a SOCKETS value's and `followed` this CPU's scratch value's: plain
    // words.
    unsafe { copy_words(cursor.as_ptr(), followed.as_ptr()) };
    // Skipped directions' records hold back like those of followed ones: nothing in them is
    // urgent, and a run of them costs one record.
    let following = framing::is_following(cursor) || framing::is_skipping(cursor);
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
        && hold_back(scratch, key, get!(scratch, resumed) != 0)
    {
        // SAFETY: as above.
        unsafe { (*cursor.as_ptr()).deferred = 1 };
        return;
    }
    if get!(scratch, resumed) != 0 {
        let _ = DEFERRED.remove(key);
    }
    if get!(walk, record.covered) != 0 {
        emit(scratch);
    }
}

/// Takes up the cursor userspace left in [`RESYNC`], if it was made for exactly this point of
/// the stream; one made for an earlier point is stale (the process moved on) and dropped.
#[inline(always)]
fn rearm(cursor: Volatile<FrameCursor>, key: &DirectionKey, offset: u64) {
    let Some(offered) = RESYNC.get_ptr(key) else {
        return;
    };
    // SAFETY: `offered` is a map value and `cursor` points into a SOCKETS value, both valid
    // during this program.
    unsafe {
        let state = (*offered).state;
        if state == SKIP || ((*offered).position == offset && state == HEADER) {
            copy_words(cursor.as_ptr(), offered);
            // A skip holds from wherever the stream stands.
            (*cursor.as_ptr()).position = offset;
        }
    }
    let _ = RESYNC.remove(key);
}

global_step!(walk_step_global, walk_step);

/// One iteration of the walk (see [`crate::steps`]): 0 to go on, 1 to stop.
#[inline(always)]
fn walk_step(index: u32) -> i64 {
    let Some(scratch) = data_scratch() else {
        return 1;
    };
    let cursor = field!(scratch, cursor);
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

enum Step {
    Continue,
    Done,
    ReadFailed,
}

/// One iteration: load the next segment, or keep or skip the run of the current segment that
/// the cursor asks for.
#[inline(always)]
fn step(scratch: Volatile<DataScratch>, cursor: Volatile<FrameCursor>) -> Step {
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
                let data = unsafe { (*scratch.as_ptr()).data.as_ptr() };
                if framing::kept(cursor, data, at, len) == Urgency::Now {
                    set!(walk, record.urgent, 1);
                }
                Step::Continue
            }
            None => Step::ReadFailed,
        },
    }
}
