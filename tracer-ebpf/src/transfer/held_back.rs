//! Records held back in the kernel: a record that holds nothing whose arrival time matters
//! (headers of DATA frames that do not end their stream, skipped lengths) waits in `DEFERRED`
//! and goes out with the next record that does, or when the socket closes.

use aya_ebpf::helpers::bpf_probe_read_kernel_buf;
use tracer_common::{DirectionKey, HELD_RECORD_CAP};

use super::record::{send_record, walk_of, write_piece_header};
use crate::{
    maps::DEFERRED,
    scratch::DataScratch,
    volatile::{Volatile, copy_words},
};

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
pub(super) fn hold_back(scratch: Volatile<DataScratch>, key: &DirectionKey, resumed: bool) -> bool {
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
        let held = in_place.unwrap_or(&raw mut (*scratch.as_ptr()).deferred);
        copy_words(
            &raw mut (*held).progress,
            &raw const (*scratch.as_ptr()).walk.record,
        );
        copy_words(
            &raw mut (*held).record,
            &raw const (*scratch.as_ptr()).record,
        );
        let dst = core::slice::from_raw_parts_mut((*held).data.as_mut_ptr(), assembled as usize);
        if bpf_probe_read_kernel_buf((*scratch.as_ptr()).data.as_ptr(), dst).is_err() {
            return false;
        }
        in_place.is_some() || DEFERRED.insert(key, &*held, 0).is_ok()
    }
}

/// Makes the held-back record the start of the record in progress, leaving its entry in
/// [`DEFERRED`] for [`hold_back`] to overwrite or the caller to remove. False if there was
/// none to take up.
#[inline(always)]
pub(super) fn resume_deferred(scratch: Volatile<DataScratch>, key: &DirectionKey) -> bool {
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
        let dst = core::slice::from_raw_parts_mut(
            (*scratch.as_ptr()).data.as_mut_ptr(),
            assembled as usize,
        );
        if bpf_probe_read_kernel_buf((*deferred).data.as_ptr(), dst).is_err() {
            // They cannot start this record: send them as one of their own.
            flush_deferred(key);
            return false;
        }
        copy_words(&raw mut (*scratch.as_ptr()).walk.record, held);
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
