//! Small transfers, copied whole.
//!
//! Following the framing run by run costs one user-memory read per kept run, and a transfer of
//! a few small frames is mostly such runs. A transfer of at most [`WHOLE_MAX`] bytes is instead
//! read with one read per segment, as a single kept piece, and the cursor then follows the
//! copy in map memory, where a run costs a few loads. The message bodies in it go to userspace
//! too, which counts kept bodies like skipped ones. If they would be more than [`WASTE_MAX`]
//! bytes, the copy is dropped and the transfer walked run by run instead, so a large message
//! still costs only its framing whatever the size of the syscalls moving it.

use tracer_common::{
    FrameCursor, RecordInProgress,
    maps::{WHOLE_TRANSFER_MAX, WHOLE_TRANSFER_SKIPPABLE_MAX},
};

use super::{
    FRAMING_STEPS, MAX_STEPS,
    record::{append_from_segment, open_piece_keeps, start_piece},
    segments::advance,
};
use crate::{
    framing::{self, Run, Urgency},
    maps::data_scratch,
    scratch::{DataScratch, FollowedCopy},
    volatile::{Volatile, copy_words},
};

const WHOLE_MAX: u64 = WHOLE_TRANSFER_MAX;
/// Most message body and padding bytes a whole copy may carry to userspace.
const WASTE_MAX: u64 = WHOLE_TRANSFER_SKIPPABLE_MAX;

/// Copies the transfer the walk in `scratch` describes as one kept piece of the record in
/// progress and follows the framing over it. False, with the walk and the scratch cursor as
/// they were, when the transfer is empty or too large, a read fails, or too much of it is
/// message bodies or padding: the caller then walks it run by run. `cursor` is the connection
/// direction's own cursor, which the scratch cursor is a copy of.
#[inline(always)]
pub fn copy_whole(scratch: Volatile<DataScratch>, cursor: Volatile<FrameCursor>) -> bool {
    let walk = field!(scratch, walk);
    let total = get!(walk, remaining);
    // An empty transfer (sendmmsg/recvmmsg of empty messages) must not open an empty piece.
    if total == 0 || total > WHOLE_MAX {
        return false;
    }
    let walk_before_copy = field!(scratch, walk_before_copy);
    // SAFETY: both are this CPU's scratch value's, and plain words.
    unsafe { copy_words(walk_before_copy.as_ptr(), walk.as_ptr()) };
    if !open_piece_keeps(walk) {
        start_piece(scratch);
    }
    let start = get!(walk, record.assembled);
    if get!(walk, segment_left) == 0 && get!(walk, iovecs_left) == 1 {
        // A single iovec (tonic's writev, for one) is loaded here rather than in the loop.
        advance(walk);
    }
    if get!(walk, segment_left) >= total {
        // One buffer: no loop needed.
        append_from_segment(scratch, total);
    } else {
        repeat!(MAX_STEPS, copy_step_global);
    }
    if get!(walk, remaining) == 0 {
        let copy = field!(scratch, followed);
        set!(copy, at, start);
        set!(copy, left, total);
        set!(copy, waste, 0);
        // Whole frames first, then (from the first frame that is not simple) run by run: two
        // loops, each with one of the two ways of following, rather than one loop with both,
        // which costs 6.18's verifier six times the work.
        repeat!(FRAMING_STEPS, frames_step_global);
        if get!(copy, left) != 0 && get!(copy, waste) <= WASTE_MAX {
            repeat!(FRAMING_STEPS, runs_step_global);
        }
        if get!(copy, left) == 0 && get!(copy, waste) <= WASTE_MAX {
            return true;
        }
    }
    let scratch_cursor = field!(scratch, cursor);
    // SAFETY: this CPU's scratch value's, and `cursor`, a SOCKETS value's: plain words.
    unsafe {
        copy_words(walk.as_ptr(), walk_before_copy.as_ptr());
        copy_words(scratch_cursor.as_ptr(), cursor.as_ptr());
    }
    false
}

global_step!(copy_step_global, copy_step);
global_step!(frames_step_global, frames_step);
global_step!(runs_step_global, runs_step);

/// One segment of the copy, or the move to the next segment: 0 to go on, 1 to stop.
#[inline(always)]
fn copy_step(_index: u32) -> i64 {
    let Some(scratch) = data_scratch() else {
        return 1;
    };
    let walk = field!(scratch, walk);
    let remaining = get!(walk, remaining);
    if remaining == 0 {
        return 1;
    }
    let segment_left = get!(walk, segment_left);
    if segment_left == 0 {
        return if advance(walk) { 0 } else { 1 };
    }
    if append_from_segment(scratch, segment_left.min(remaining)) {
        0
    } else {
        1
    }
}

/// What the framing follows a copy with, in this CPU's scratch value.
struct Following {
    copy: Volatile<FollowedCopy>,
    cursor: Volatile<FrameCursor>,
    record: Volatile<RecordInProgress>,
    data: *const u8,
}

/// The scratch value's parts for step `index` of following a copy; `None` once the steps
/// run out (too dense to follow: the rest is copied anyway, and userspace re-arms the cursor).
#[inline(always)]
fn following(index: u32) -> Option<Following> {
    let scratch = data_scratch()?;
    let cursor = field!(scratch, cursor);
    if index + 1 >= FRAMING_STEPS {
        framing::lose_track(cursor);
        return None;
    }
    Some(Following {
        copy: field!(scratch, followed),
        cursor,
        record: field!(scratch, walk.record),
        // SAFETY: `scratch` is this CPU's scratch value.
        data: unsafe { (*scratch.as_ptr()).data.as_ptr() },
    })
}

/// Simple frames taken in one step, which saves the step's own cost per frame.
const FRAMES_PER_STEP: u32 = 4;

/// Up to [`FRAMES_PER_STEP`] simple frames of the framing over the copy: 0 to go on, 1 to stop
/// (at the end of the copy, or at a frame that is not simple, from which [`runs_step`] goes on).
#[inline(always)]
fn frames_step(index: u32) -> i64 {
    let Some(Following {
        copy,
        cursor,
        record,
        data,
    }) = following(index)
    else {
        return 1;
    };
    for _ in 0..FRAMES_PER_STEP {
        let (at, left) = (get!(copy, at), get!(copy, left));
        if left == 0 {
            return 1;
        }
        let Some(frame) = framing::whole_frame(cursor, data, at, left) else {
            return 1;
        };
        if frame.urgency == Urgency::Now {
            set!(record, urgent, 1);
        }
        let waste = get!(copy, waste) + frame.body;
        set!(copy, waste, waste);
        set!(copy, at, at + frame.len);
        set!(copy, left, left - frame.len);
        if waste > WASTE_MAX {
            return 1;
        }
    }
    0
}

/// One run of the framing over the rest of the copy: 0 to go on, 1 to stop.
#[inline(always)]
fn runs_step(index: u32) -> i64 {
    let Some(Following {
        copy,
        cursor,
        record,
        data,
    }) = following(index)
    else {
        return 1;
    };
    let (at, left) = (get!(copy, at), get!(copy, left));
    if left == 0 {
        return 1;
    }
    let len = match framing::next_run(cursor) {
        Run::Keep(0) | Run::Skip(0) => {
            // Cannot happen while the cursor is consistent.
            framing::lose_track(cursor);
            return 0;
        }
        Run::Keep(run) => {
            let len = run.min(left);
            if framing::kept(cursor, data, at, len) == Urgency::Now {
                set!(record, urgent, 1);
            }
            len
        }
        Run::Skip(run) => {
            let len = run.min(left);
            framing::skipped(cursor, len);
            let waste = get!(copy, waste) + len;
            set!(copy, waste, waste);
            if waste > WASTE_MAX {
                return 1;
            }
            len
        }
    };
    set!(copy, at, at + len);
    set!(copy, left, left - len);
    0
}
