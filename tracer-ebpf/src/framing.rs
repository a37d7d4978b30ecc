//! Following one direction's HTTP/2 framing, so DATA payload bytes need not be copied.
//!
//! Userspace needs every frame header, every non-DATA payload (each header block changes the
//! HPACK state) and the 5-byte prefix of each gRPC message; message bodies and padding it only
//! counts. The cursor decides, run by run, which bytes are kept and which skipped, and learns
//! from the kept ones where the next frame and the next message start. Anything unexpected
//! makes it lose track, and everything is copied until userspace, which sees every byte, re-arms
//! it at a frame boundary: copying everything is always correct.
//!
//! Message boundaries are per gRPC stream, and streams interleave: a stream that ends a DATA
//! frame in the middle of a message is parked in one of a few slots until its next DATA frame.
//! A stream that is not parked is at a message boundary, so the slots only fill up with large
//! messages in flight at the same time.

use tracer_common::{
    FrameCursor, MessageCursor,
    maps::{MESSAGE_CURSOR_SLOTS, framing::*},
    wire::{self, flags, frame_type},
};

use crate::volatile::Volatile;

/// What the cursor wants done with the next bytes: at most this many kept, or skipped.
pub enum Run {
    Keep(u64),
    Skip(u64),
}

const FRAME_HEADER_LEN: u64 = wire::FRAME_HEADER_LEN as u64;
const PREFACE_LEN: u64 = wire::CLIENT_PREFACE.len() as u64;
/// The first frame-header-sized piece of the client preface.
const PREFACE_HEAD: [u8; wire::FRAME_HEADER_LEN] = match wire::CLIENT_PREFACE.first_chunk() {
    Some(head) => *head,
    None => panic!("the preface is longer than a frame header"),
};
const MESSAGE_PREFIX_LEN: u32 = wire::GRPC_MESSAGE_PREFIX_LEN as u32;

/// The scratch area kept bytes are copied into; indices into it are masked with this.
pub const DATA_INDEX_MASK: u64 = 2 * tracer_common::RECORD_DATA_CAP as u64 - 1;

/// Whether userspace found the direction not to be HTTP/2: every byte is skipped.
#[inline(always)]
pub fn is_skipping(cursor: Volatile<FrameCursor>) -> bool {
    get!(cursor, state) == SKIP
}

/// Whether the cursor is following the framing (as opposed to copying everything).
#[inline(always)]
pub fn is_following(cursor: Volatile<FrameCursor>) -> bool {
    let state = get!(cursor, state);
    (START..=DATA_PADDING).contains(&state)
}

/// A transfer is about to be walked from stream `offset`.
#[inline(always)]
pub fn begin(cursor: Volatile<FrameCursor>, offset: u64) {
    if is_following(cursor) && get!(cursor, position) != offset {
        // Bytes went by unseen (a lost event, or a syscall the walk could not follow).
        lose_track(cursor);
    }
}

/// A transfer was walked up to stream offset `end`; `complete` is false when some of it was
/// not (the step budget ran out, or user memory could not be read).
#[inline(always)]
pub fn end(cursor: Volatile<FrameCursor>, end: u64, complete: bool) {
    if !complete && is_following(cursor) {
        lose_track(cursor);
    }
    set!(cursor, position, end);
}

/// Stops following until userspace re-arms the cursor.
#[inline(always)]
pub fn lose_track(cursor: Volatile<FrameCursor>) {
    set!(cursor, state, LOST);
}

/// Stops following for good: the direction does not carry HTTP/2.
#[inline(always)]
fn give_up(cursor: Volatile<FrameCursor>) {
    set!(cursor, state, OFF);
}

#[inline(always)]
pub fn next_run(cursor: Volatile<FrameCursor>) -> Run {
    let seen = u64::from(get!(cursor, seen));
    match get!(cursor, state) {
        START | HEADER => Run::Keep(FRAME_HEADER_LEN.saturating_sub(seen)),
        PREFACE => Run::Keep(PREFACE_LEN.saturating_sub(seen)),
        PAYLOAD => Run::Keep(u64::from(get!(cursor, frame_left))),
        DATA_PAD_LENGTH => Run::Keep(1),
        DATA => {
            let data_left = get!(cursor, frame_left).saturating_sub(get!(cursor, padding));
            let prefix_seen = get!(cursor, message.prefix_seen);
            let body_left = get!(cursor, message.value);
            if prefix_seen == 0 && body_left > 0 {
                Run::Skip(u64::from(body_left.min(data_left)))
            } else {
                Run::Keep(u64::from(
                    MESSAGE_PREFIX_LEN
                        .saturating_sub(prefix_seen)
                        .min(data_left),
                ))
            }
        }
        DATA_PADDING => Run::Skip(u64::from(get!(cursor, frame_left))),
        SKIP => Run::Skip(u64::MAX),
        _ => Run::Keep(u64::MAX),
    }
}

/// Whether kept bytes must reach userspace with this syscall, or may wait for a later one.
/// The headers of DATA frames that do not end the stream may wait: what they tell userspace
/// (payload lengths, stream ids) does not depend on when it arrives. Everything else carries a
/// time that spans use: message prefixes (when the first message came), header blocks,
/// END_STREAM, RST_STREAM, SETTINGS, ...
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    CanWait,
    Now,
}

/// `len` bytes of the run asked for by [`next_run`] were kept; they are at `data[at..]`.
#[inline(always)]
pub fn kept(cursor: Volatile<FrameCursor>, data: *const u8, at: u64, len: u64) -> Urgency {
    let state = get!(cursor, state);
    match state {
        START | HEADER => {
            let seen = u64::from(get!(cursor, seen));
            for i in 0..FRAME_HEADER_LEN {
                if i < len {
                    let byte = data_byte(data, at + i);
                    // SAFETY: the index is masked into the 16-byte header buffer.
                    unsafe {
                        let slot = (&raw mut (*cursor.as_ptr()).header)
                            .cast::<u8>()
                            .add(((seen + i) & 15) as usize);
                        core::ptr::write_volatile(slot, byte);
                    }
                }
            }
            let seen = seen + len;
            set!(cursor, seen, seen as u8);
            if seen < FRAME_HEADER_LEN {
                // Whether it may wait is known once the header is complete.
                return Urgency::CanWait;
            }
            let header = get!(cursor, header);
            if state == START && is_preface_head(&header) {
                set!(cursor, state, PREFACE);
                return Urgency::Now;
            }
            frame_header(cursor, &header, state == START);
            let quiet_data = header[3] == frame_type::DATA && header[4] & flags::END_STREAM == 0;
            if quiet_data && is_following(cursor) {
                return Urgency::CanWait;
            }
        }
        PREFACE => {
            let seen = u64::from(get!(cursor, seen)) + len;
            set!(cursor, seen, seen as u8);
            if seen >= PREFACE_LEN {
                expect_header(cursor);
            }
        }
        PAYLOAD => {
            let frame_left = get!(cursor, frame_left).saturating_sub(len as u32);
            set!(cursor, frame_left, frame_left);
            if frame_left == 0 {
                expect_header(cursor);
            }
        }
        DATA_PAD_LENGTH => {
            let padding = u32::from(data_byte(data, at));
            let frame_left = get!(cursor, frame_left).saturating_sub(1);
            if padding > frame_left {
                lose_track(cursor); // Malformed; userspace will say so.
                return Urgency::Now;
            }
            set!(cursor, frame_left, frame_left);
            set!(cursor, padding, padding);
            set!(cursor, state, DATA);
            if frame_left == padding {
                data_done(cursor);
            }
            return Urgency::CanWait;
        }
        DATA => {
            let mut prefix_seen = get!(cursor, message.prefix_seen);
            let mut value = get!(cursor, message.value);
            for i in 0..u64::from(MESSAGE_PREFIX_LEN) {
                if i < len {
                    // Byte 0 is the compression flag; bytes 1..5 the big-endian length.
                    if prefix_seen > 0 {
                        value = (value << 8) | u32::from(data_byte(data, at + i));
                    }
                    prefix_seen += 1;
                }
            }
            if prefix_seen >= MESSAGE_PREFIX_LEN {
                prefix_seen = 0; // `value` is now the body length.
            }
            set!(cursor, message.prefix_seen, prefix_seen);
            set!(cursor, message.value, value);
            consume_data(cursor, len as u32);
        }
        _ => {}
    }
    Urgency::Now
}

/// The last index [`whole_frame`] reads a frame at: it reads up to 14 bytes (a frame header
/// and a message prefix).
const WHOLE_FRAME_LAST_AT: u64 = DATA_INDEX_MASK - 14;

/// A frame the cursor went over in one go: see [`whole_frame`].
pub struct WholeFrame {
    /// Its length, header included.
    pub len: u64,
    /// The message body it carries, which userspace only counts.
    pub body: u64,
    pub urgency: Urgency,
}

/// Goes over the frame at `data[at..]` in one go when the cursor is at a frame boundary, the
/// whole frame lies in the `left` bytes there, and it is simple: not padded DATA, not DATA of
/// a parked stream, and DATA holding no message or exactly one whole message. Otherwise `None`,
/// and the frame is followed run by run. For the bytes of a transfer already copied, this reads
/// the header in place instead of collecting it byte by byte, and takes one step per frame.
#[inline(always)]
pub fn whole_frame(
    cursor: Volatile<FrameCursor>,
    data: *const u8,
    at: u64,
    left: u64,
) -> Option<WholeFrame> {
    // One bound on `at` covers every byte read below, so they need no masking one by one.
    if get!(cursor, state) != HEADER
        || get!(cursor, seen) != 0
        || left < FRAME_HEADER_LEN
        || at > WHOLE_FRAME_LAST_AT
    {
        return None;
    }
    // Read back and bounded again right at its use: verifiers before 6.x do not carry a
    // bound learned on a register over to the stack slot the compiler reloads it from.
    // SAFETY: a plain read of a local.
    let at = unsafe { core::ptr::read_volatile(&at) };
    if at > WHOLE_FRAME_LAST_AT {
        return None;
    }
    // SAFETY: `at + 14 <= DATA_INDEX_MASK`, inside the scratch data area.
    let frame = unsafe { data.add(at as usize) };
    // SAFETY: callers only pass indexes below 14.
    let byte = |index: usize| unsafe { core::ptr::read_volatile(frame.add(index)) };
    let FrameHead {
        len,
        kind,
        flags,
        stream_id,
    } = FrameHead::decode(byte);
    let frame_len = FRAME_HEADER_LEN + u64::from(len);
    if frame_len > left {
        return None;
    }
    let mut body = 0;
    let mut urgency = Urgency::Now;
    match kind {
        frame_type::DATA => {
            if stream_id == 0 || flags & flags::PADDED != 0 || is_parked(cursor, stream_id) {
                return None;
            }
            if len == 0 {
                if flags & flags::END_STREAM == 0 {
                    urgency = Urgency::CanWait;
                }
            } else {
                // Byte 0 of the prefix is the compression flag; bytes 1..5 the body length.
                let prefix = FRAME_HEADER_LEN as usize;
                let length = u32::from_be_bytes([
                    byte(prefix + 1),
                    byte(prefix + 2),
                    byte(prefix + 3),
                    byte(prefix + 4),
                ]);
                if len < MESSAGE_PREFIX_LEN || length != len - MESSAGE_PREFIX_LEN {
                    return None;
                }
                body = u64::from(length);
            }
        }
        _ => forget_if_stream_ends(cursor, kind, flags, stream_id),
    }
    Some(WholeFrame {
        len: frame_len,
        body,
        urgency,
    })
}

/// `len` bytes of the run asked for by [`next_run`] were skipped.
#[inline(always)]
pub fn skipped(cursor: Volatile<FrameCursor>, len: u64) {
    let len = len as u32;
    match get!(cursor, state) {
        DATA => {
            let body_left = get!(cursor, message.value).saturating_sub(len);
            set!(cursor, message.value, body_left);
            consume_data(cursor, len);
        }
        DATA_PADDING => {
            let frame_left = get!(cursor, frame_left).saturating_sub(len);
            set!(cursor, frame_left, frame_left);
            if frame_left == 0 {
                expect_header(cursor);
            }
        }
        _ => {}
    }
}

#[inline(always)]
fn data_byte(data: *const u8, index: u64) -> u8 {
    // SAFETY: the index is masked into the scratch data area.
    unsafe { core::ptr::read_volatile(data.add((index & DATA_INDEX_MASK) as usize)) }
}

#[inline(always)]
fn is_preface_head(header: &[u8; 16]) -> bool {
    let mut same = true;
    for i in 0..PREFACE_HEAD.len() {
        same &= header[i] == PREFACE_HEAD[i];
    }
    same
}

#[inline(always)]
fn expect_header(cursor: Volatile<FrameCursor>) {
    set!(cursor, seen, 0);
    set!(cursor, state, HEADER);
}

/// A complete frame header arrived; `first` when it is the direction's very first frame.
#[inline(always)]
fn frame_header(cursor: Volatile<FrameCursor>, header: &[u8; 16], first: bool) {
    let FrameHead {
        len,
        kind,
        flags,
        stream_id,
    } = FrameHead::decode(|index| header[index]);
    // A server's first frame is its SETTINGS; anything else is not HTTP/2 as we know it.
    if first && !(kind == frame_type::SETTINGS && stream_id == 0 && flags == 0 && len % 6 == 0) {
        give_up(cursor);
        return;
    }
    set!(cursor, seen, 0);
    set!(cursor, flags, flags);
    set!(cursor, frame_left, len);
    set!(cursor, padding, 0);
    match kind {
        frame_type::DATA => {
            if stream_id == 0 || (flags & flags::PADDED != 0 && len == 0) {
                lose_track(cursor);
                return;
            }
            set!(cursor, message, take_parked(cursor, stream_id));
            if flags & flags::PADDED != 0 {
                set!(cursor, state, DATA_PAD_LENGTH);
            } else {
                set!(cursor, state, DATA);
                if len == 0 {
                    data_done(cursor);
                }
            }
            return;
        }
        _ => forget_if_stream_ends(cursor, kind, flags, stream_id),
    }
    if len == 0 {
        expect_header(cursor);
    } else {
        set!(cursor, state, PAYLOAD);
    }
}

/// The fields of a 9-byte frame header.
struct FrameHead {
    len: u32,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHead {
    /// Decodes the header whose bytes `byte` returns by index (0..9).
    #[inline(always)]
    fn decode(byte: impl Fn(usize) -> u8) -> FrameHead {
        FrameHead {
            len: u32::from_be_bytes([0, byte(0), byte(1), byte(2)]),
            kind: byte(3),
            flags: byte(4),
            stream_id: u32::from_be_bytes([byte(5), byte(6), byte(7), byte(8)]) & 0x7fff_ffff,
        }
    }
}

/// A frame other than DATA arrived: if it means this side sends no more DATA on its stream,
/// a message parked there was cut short.
#[inline(always)]
fn forget_if_stream_ends(cursor: Volatile<FrameCursor>, kind: u8, flags: u8, stream_id: u32) {
    match kind {
        frame_type::RST_STREAM => drop_parked(cursor, stream_id),
        frame_type::HEADERS if flags & flags::END_STREAM != 0 => drop_parked(cursor, stream_id),
        _ => {}
    }
}

#[inline(always)]
fn consume_data(cursor: Volatile<FrameCursor>, len: u32) {
    let frame_left = get!(cursor, frame_left).saturating_sub(len);
    set!(cursor, frame_left, frame_left);
    if frame_left <= get!(cursor, padding) {
        data_done(cursor);
    }
}

/// The current DATA frame's data is over: park its stream if it stopped inside a message.
#[inline(always)]
fn data_done(cursor: Volatile<FrameCursor>) {
    let message = get!(cursor, message);
    let mid_message = message.prefix_seen != 0 || message.value != 0;
    if mid_message && get!(cursor, flags) & flags::END_STREAM == 0 && !park(cursor, message) {
        lose_track(cursor);
        return;
    }
    if get!(cursor, frame_left) > 0 {
        set!(cursor, state, DATA_PADDING);
    } else {
        expect_header(cursor);
    }
}

#[inline(always)]
fn take_parked(cursor: Volatile<FrameCursor>, stream_id: u32) -> MessageCursor {
    for slot in 0..MESSAGE_CURSOR_SLOTS {
        let parked = slot_ptr(cursor, slot);
        if get!(parked, stream_id) == stream_id {
            // SAFETY: `parked` is a `Volatile`, valid while the program runs.
            let message = unsafe { core::ptr::read_volatile(parked.as_ptr()) };
            set!(parked, stream_id, 0);
            return message;
        }
    }
    MessageCursor {
        stream_id,
        ..MessageCursor::AT_BOUNDARY
    }
}

#[inline(always)]
fn park(cursor: Volatile<FrameCursor>, message: MessageCursor) -> bool {
    for slot in 0..MESSAGE_CURSOR_SLOTS {
        let parked = slot_ptr(cursor, slot);
        if get!(parked, stream_id) == 0 {
            // SAFETY: `parked` is a `Volatile`, valid while the program runs.
            unsafe { core::ptr::write_volatile(parked.as_ptr(), message) };
            return true;
        }
    }
    false
}

#[inline(always)]
fn is_parked(cursor: Volatile<FrameCursor>, stream_id: u32) -> bool {
    let mut parked = false;
    for slot in 0..MESSAGE_CURSOR_SLOTS {
        parked |= get!(slot_ptr(cursor, slot), stream_id) == stream_id;
    }
    parked
}

#[inline(always)]
fn drop_parked(cursor: Volatile<FrameCursor>, stream_id: u32) {
    for slot in 0..MESSAGE_CURSOR_SLOTS {
        let parked = slot_ptr(cursor, slot);
        if get!(parked, stream_id) == stream_id {
            set!(parked, stream_id, 0);
        }
    }
}

#[inline(always)]
fn slot_ptr(cursor: Volatile<FrameCursor>, slot: usize) -> Volatile<MessageCursor> {
    // SAFETY: callers pass a loop index below the slot count, so the slot lies inside the
    // cursor, which stays valid and unshared while the program runs.
    unsafe {
        Volatile::new(
            (&raw mut (*cursor.as_ptr()).parked)
                .cast::<MessageCursor>()
                .add(slot),
        )
    }
}
