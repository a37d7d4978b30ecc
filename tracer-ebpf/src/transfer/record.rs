//! Assembling data records in the scratch area: kept bytes and skipped lengths as pieces, up to
//! [`RECORD_DATA_CAP`] a record, each record sent to the ring buffer when it fills up or the
//! transfer ends.

use aya_ebpf::helpers::bpf_probe_read_user_buf;
use tracer_common::{DataRecord, LossKind, PieceHeader, RecordHeader, SyscallOp};

use super::{CAP, PIECE_HEADER};
use crate::{
    maps::{EVENTS, count_loss, data_record_flags},
    scratch::{DataScratch, SegmentWalk},
    volatile::{Volatile, copy_words},
};

/// Starts the scratch record of a transfer: its header, direction and syscall. Its extent is
/// filled in when it is sent ([`send_record`]).
#[inline(always)]
pub(super) fn stage_record(
    scratch: Volatile<DataScratch>,
    header: RecordHeader,
    direction: u32,
    op: SyscallOp,
) {
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
    unsafe { copy_words(&raw mut (*scratch.as_ptr()).record, &record) };
}

#[inline(always)]
pub(super) fn walk_of(scratch: Volatile<DataScratch>) -> Volatile<SegmentWalk> {
    field!(scratch, walk)
}

/// Copies up to `wanted` bytes of the current segment into the record being assembled and
/// returns where in the data area they went and how many there are (the record may fill up
/// first). `None` if user memory could not be read.
#[inline(always)]
pub(super) fn keep(scratch: Volatile<DataScratch>, wanted: u64) -> Option<(u64, u64)> {
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
pub(super) fn append_from_segment(scratch: Volatile<DataScratch>, len: u64) -> bool {
    let walk = walk_of(scratch);
    let assembled = get!(walk, record.assembled);
    // Restated against constants for the verifier: the copy ends inside the data area.
    if assembled >= CAP || len > CAP {
        return false;
    }
    let segment = get!(walk, segment);
    // Read back and bounded again right at its use: verifiers before 6.x do not carry a bound
    // learned on one register over to another holding the same value.
    // SAFETY: a plain read of a local.
    let len = unsafe { core::ptr::read_volatile(&len) };
    if len > CAP {
        return false;
    }
    // SAFETY: `assembled + len < 2 * CAP`, the size of the scratch data area.
    let copied = unsafe {
        let dst = core::slice::from_raw_parts_mut(
            (*scratch.as_ptr())
                .data
                .as_mut_ptr()
                .add(assembled as usize),
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
pub(super) fn skip(scratch: Volatile<DataScratch>, len: u64) {
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
fn consume_segment(walk: Volatile<SegmentWalk>, len: u64) {
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
pub(super) fn open_piece_keeps(walk: Volatile<SegmentWalk>) -> bool {
    get!(walk, record.has_piece) != 0 && get!(walk, record.piece_skipped) == 0
}

/// Finishes the current piece (if any) and opens a new one at the end of the data area.
#[inline(always)]
pub(super) fn start_piece(scratch: Volatile<DataScratch>) {
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
fn finish_piece(scratch: Volatile<DataScratch>) {
    write_piece_header(scratch);
    set!(walk_of(scratch), record.has_piece, 0);
}

/// Writes the open piece's counts into its header, leaving it open.
#[inline(always)]
pub(super) fn write_piece_header(scratch: Volatile<DataScratch>) {
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
        let dst = (*scratch.as_ptr()).data.as_mut_ptr().add(at as usize);
        core::ptr::write_unaligned(dst.cast::<PieceHeader>(), piece);
    }
}

/// Sends the record assembled so far and starts the next one where it ends.
#[inline(always)]
pub(super) fn emit(scratch: Volatile<DataScratch>) {
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
    unsafe {
        send_record(
            &raw mut (*scratch.as_ptr()).record,
            offset,
            captured,
            covered,
        )
    };
}

/// Fills in a record's extent and sends it with the `captured` bytes that follow it.
///
/// # Safety
/// `record` must point at a record in map memory followed by at least `captured` bytes, and
/// the caller must have bounded `captured` by that area's size.
#[inline(always)]
pub(super) unsafe fn send_record(
    record: *mut DataRecord,
    offset: u64,
    captured: u64,
    covered: u64,
) {
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
