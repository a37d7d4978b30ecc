//! For benchmarking only (the `bench-floors` feature): records that take part of the capture's
//! work away, so that what tracing costs can be compared with what any capture that does at
//! least as much must pay. Userspace counts these records and decodes nothing.

use aya_ebpf::helpers::bpf_probe_read_user_buf;
use tracer_common::{
    DataRecord, Direction, LossKind, PIECE_HEADER_LEN, PieceHeader, RecordHeader, SyscallOp,
    maps::{WHOLE_TRANSFER_MAX, floor},
};

use super::{
    PIECE_HEADER,
    record::{send_record, stage_record},
    segments::advance,
};
use crate::{
    maps::{EVENTS, count_loss, data_record_flags, data_scratch},
    scratch::SegmentWalk,
};

/// A [`floor`] value that userspace may set at load time. The value is frozen then, so the
/// verifier prunes the branches not taken.
#[unsafe(no_mangle)]
static CAPTURE_FLOOR: u8 = floor::NONE;

/// The floor userspace selected.
#[inline(always)]
pub fn selected() -> u8 {
    // SAFETY: a plain read of a constant that userspace may have overridden at load time.
    unsafe { core::ptr::read_volatile(&CAPTURE_FLOOR) }
}

/// Sends the transfer as `floor` asks instead of following its framing.
#[inline(always)]
pub fn send(
    floor: u8,
    header: RecordHeader,
    direction: Direction,
    op: SyscallOp,
    offset: u64,
    total: u64,
    walk: SegmentWalk,
) {
    if floor == floor::BARE_RECORDS {
        send_bare_record(header, direction, op, offset, total);
    } else {
        send_copied_record(header, direction, op, offset, total, walk);
    }
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
    let Some(scratch) = data_scratch() else {
        return;
    };
    // The first segment of an iovec array is one step away; of an mmsghdr array, two. If they
    // cannot be read, nothing is kept.
    // SAFETY: `walk` is a local that outlives the loop, and only this program sees it.
    let on_stack = unsafe { crate::volatile::Volatile::new(&raw mut walk) };
    for _ in 0..2 {
        if walk.segment_left > 0 || !advance(on_stack) {
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
        let data = (*scratch.as_ptr()).data.as_mut_ptr();
        core::ptr::write_unaligned(data.cast::<PieceHeader>(), piece);
        let dst = core::slice::from_raw_parts_mut(data.add(PIECE_HEADER as usize), kept as usize);
        if bpf_probe_read_user_buf(walk.segment as *const u8, dst).is_err() {
            count_loss(LossKind::UserReadFailed);
            return;
        }
        send_record(
            &raw mut (*scratch.as_ptr()).record,
            offset,
            PIECE_HEADER + kept,
            total,
        );
    }
}
