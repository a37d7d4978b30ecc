//! Transfers that lie wholly inside a message body the cursor skips, while the start of the
//! direction's next record is held back.
//!
//! A large message moves through hundreds of such syscalls, and none has a byte to copy. Each
//! only adds its length to the held-back record's open piece and moves the cursor past it, both
//! in place: no record is assembled, no user memory is walked, nothing goes to the ring buffer.

use tracer_common::{
    DirectionKey, FrameCursor, HELD_RECORD_CAP, PIECE_HEADER_LEN, PieceHeader,
    maps::WHOLE_TRANSFER_MAX,
};

use super::held_back::DEFER_MAX_COVERED;
use crate::{
    framing::{self, Run},
    maps::DEFERRED,
    volatile::Volatile,
};

/// The last offset in a held-back record's data at which a piece header fits.
const LAST_PIECE_AT: u64 = (HELD_RECORD_CAP - PIECE_HEADER_LEN) as u64;

/// Skips the `total` bytes at stream `offset` if they all fall inside the body the cursor is
/// skipping and a record is held back to count them. False, with nothing changed, otherwise,
/// and for transfers small enough to be copied whole: those keep the one rule of
/// [`super::whole`], whatever lies in them.
#[inline(always)]
pub fn skip_inside_body(
    cursor: Volatile<FrameCursor>,
    key: &DirectionKey,
    offset: u64,
    total: u64,
) -> bool {
    if total <= WHOLE_TRANSFER_MAX
        || get!(cursor, deferred) == 0
        || get!(cursor, position) != offset
    {
        return false;
    }
    match framing::next_run(cursor) {
        Run::Skip(run) if run >= total => {}
        _ => return false,
    }
    let Some(held) = DEFERRED.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: `held` is a map value, valid during this program; the piece header written lies
    // inside its data area (`piece_at <= LAST_PIECE_AT`).
    unsafe {
        let progress = &raw mut (*held).progress;
        let covered = (*progress).covered + total;
        let at = (*progress).piece_at;
        if (*progress).has_piece == 0 || covered >= DEFER_MAX_COVERED || at > LAST_PIECE_AT {
            return false;
        }
        let skipped = (*progress).piece_skipped + total;
        (*progress).covered = covered;
        (*progress).piece_skipped = skipped;
        let piece = PieceHeader {
            kept: (*progress).piece_kept as u32,
            skipped: skipped as u32,
        };
        let dst = (*held).data.as_mut_ptr().add(at as usize);
        core::ptr::write_unaligned(dst.cast::<PieceHeader>(), piece);
    }
    framing::skipped(cursor, total);
    framing::end(cursor, offset + total, true);
    true
}
