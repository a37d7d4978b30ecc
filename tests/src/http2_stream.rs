//! Hand-laid HTTP/2 byte streams carrying gRPC messages, for checking what the kernel side
//! skips: each stream knows which of its bytes are message bodies or padding (skippable) and
//! which the parser needs (everything else).

use std::ops::Range;

use tracer_common::maps::{WHOLE_TRANSFER_MAX, WHOLE_TRANSFER_SKIPPABLE_MAX};

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const WINDOW_UPDATE: u8 = 8;
/// A frame type no HTTP/2 version defines: receivers must ignore it, the kernel must keep it.
const EXTENSION: u8 = 0xfa;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

const CLIENT_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One direction of a connection, with the ranges the kernel side may leave out.
#[derive(Debug, Clone, Default)]
pub struct Crafted {
    pub bytes: Vec<u8>,
    /// Message bodies and padding, merged where adjacent.
    pub skippable: Vec<Range<u64>>,
    /// Where the kernel side must have stopped skipping (it ran out of parked-stream slots),
    /// if it must.
    pub follow_ends_at: Option<u64>,
}

impl Crafted {
    /// The skippable ranges the kernel side should actually have skipped, given how many bytes
    /// each syscall moved (`transfers`, in stream order): it copies a small transfer whole
    /// unless too much of it is skippable, and after running out of parked-stream slots it
    /// skips nothing.
    pub fn expected_gaps(&self, transfers: &[u64]) -> Vec<Range<u64>> {
        let followed_until = self.follow_ends_at.unwrap_or(u64::MAX);
        let skippable: Vec<&Range<u64>> = self
            .skippable
            .iter()
            .filter(|range| range.end <= followed_until)
            .collect();
        let mut gaps: Vec<Range<u64>> = Vec::new();
        let mut start = 0;
        for &len in transfers {
            let transfer = start..start + len;
            start += len;
            let inside: Vec<Range<u64>> = skippable
                .iter()
                .map(|range| range.start.max(transfer.start)..range.end.min(transfer.end))
                .filter(|range| !range.is_empty())
                .collect();
            let skippable_len: u64 = inside.iter().map(|range| range.end - range.start).sum();
            if len <= WHOLE_TRANSFER_MAX && skippable_len <= WHOLE_TRANSFER_SKIPPABLE_MAX {
                continue; // Copied whole.
            }
            for range in inside {
                match gaps.last_mut() {
                    Some(last) if last.end == range.start => last.end = range.end,
                    _ => gaps.push(range),
                }
            }
        }
        gaps
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    fn skip(&mut self, bytes: &[u8]) {
        let start = self.bytes.len() as u64;
        self.bytes.extend_from_slice(bytes);
        let end = self.bytes.len() as u64;
        match self.skippable.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ if start < end => self.skippable.push(start..end),
            _ => {}
        }
    }

    fn frame(&mut self, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
        self.frame_header(payload.len(), kind, flags, stream_id);
        self.keep(payload);
    }

    fn frame_header(&mut self, len: usize, kind: u8, flags: u8, stream_id: u32) {
        let len = u32::try_from(len).expect("frame length");
        self.keep(&len.to_be_bytes()[1..]);
        self.keep(&[kind, flags]);
        self.keep(&stream_id.to_be_bytes());
    }

    /// A DATA frame carrying the next `len` bytes of `messages`, optionally padded.
    fn data(
        &mut self,
        stream_id: u32,
        flags: u8,
        padding: Option<u8>,
        messages: &mut Messages,
        len: usize,
    ) {
        let pad = padding.map_or(0, |pad| 1 + usize::from(pad));
        let flags = flags | if padding.is_some() { PADDED } else { 0 };
        self.frame_header(len + pad, DATA, flags, stream_id);
        if let Some(pad) = padding {
            self.keep(&[pad]);
        }
        for (bytes, skippable) in messages.take(len) {
            if skippable {
                self.skip(&bytes);
            } else {
                self.keep(&bytes);
            }
        }
        if let Some(pad) = padding {
            self.skip(&vec![0; usize::from(pad)]);
        }
    }
}

/// One stream's gRPC messages as a sequence of prefix (kept) and body (skippable) runs.
struct Messages {
    runs: Vec<(Vec<u8>, bool)>,
}

impl Messages {
    fn new(bodies: &[usize], seed: u8) -> Messages {
        let mut runs = Vec::new();
        for (index, &len) in bodies.iter().enumerate() {
            let mut prefix = vec![u8::from(index % 2 == 1)];
            prefix.extend_from_slice(&(len as u32).to_be_bytes());
            runs.push((prefix, false));
            let body = (0..len)
                .map(|at| seed.wrapping_add((at % 251) as u8))
                .collect();
            runs.push((body, true));
        }
        Messages { runs }
    }

    /// The next `len` bytes, as runs of the same kind.
    fn take(&mut self, mut len: usize) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        while len > 0 {
            let (bytes, skippable) = self.runs.first_mut().expect("messages exhausted");
            let n = len.min(bytes.len());
            out.push((bytes.drain(..n).collect(), *skippable));
            if bytes.is_empty() {
                self.runs.remove(0);
            }
            len -= n;
        }
        out
    }

    fn left(&self) -> usize {
        self.runs.iter().map(|(bytes, _)| bytes.len()).sum()
    }
}

/// What a client sends: every DATA layout the kernel side must follow, then more streams
/// paused mid-message at once than it can track.
pub fn client_stream() -> Crafted {
    let mut out = Crafted::default();
    out.keep(CLIENT_PREFACE);
    out.frame(SETTINGS, 0, 0, &[0, 4, 0, 0x10, 0, 0]);
    out.frame(EXTENSION, 0, 0, b"ignore me");
    // Several messages packed into one frame; an empty message among them.
    out.frame(HEADERS, END_HEADERS, 1, &[0x82; 21]);
    let mut packed = Messages::new(&[10, 0, 300, 7], 1);
    let len = packed.left();
    out.data(1, END_STREAM, None, &mut packed, len);
    // One 40,000-byte message over three frames, then one whose prefix straddles two frames
    // (two bytes, then three), all on stream 3.
    out.frame(HEADERS, END_HEADERS, 3, &[0x83; 12]);
    let mut large = Messages::new(&[40_000, 5_000], 2);
    out.data(3, 0, None, &mut large, 16_384);
    out.data(3, 0, None, &mut large, 16_384);
    out.data(3, 0, None, &mut large, 40_005 - 2 * 16_384 + 2);
    out.frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0x40, 0]);
    out.data(3, 0, None, &mut large, 3 + 1_000);
    // Padded frames, one of them all padding after the pad length byte.
    out.data(3, 0, Some(7), &mut large, 2_000);
    out.data(3, 0, Some(200), &mut large, 0);
    let rest = large.left();
    out.data(3, END_STREAM, Some(1), &mut large, rest);
    // Four streams paused mid-message at once (as many as the kernel side parks), interleaved.
    let mut paused: Vec<(u32, Messages)> = [5, 7, 9, 11]
        .into_iter()
        .map(|stream_id| (stream_id, Messages::new(&[3_000, 20], stream_id as u8)))
        .collect();
    for (stream_id, messages) in &mut paused {
        out.frame(HEADERS, END_HEADERS, *stream_id, &[0x84; 9]);
        out.data(*stream_id, 0, None, messages, 1_000);
    }
    out.frame(PING, 0, 0, &[1; 8]);
    for (stream_id, messages) in &mut paused {
        let rest = messages.left();
        out.data(*stream_id, END_STREAM, None, messages, rest);
    }
    out.frame(RST_STREAM, 0, 5, &[0, 0, 0, 8]);
    // Five at once: the fifth finds no free slot, and from the end of its frame on the kernel
    // side copies everything.
    let mut crowd: Vec<(u32, Messages)> = [13, 15, 17, 19, 21]
        .into_iter()
        .map(|stream_id| (stream_id, Messages::new(&[2_000], stream_id as u8)))
        .collect();
    for (stream_id, messages) in &mut crowd {
        out.frame(HEADERS, END_HEADERS, *stream_id, &[0x85; 9]);
        out.data(*stream_id, 0, None, messages, 500);
    }
    out.follow_ends_at = Some(out.bytes.len() as u64);
    for (stream_id, messages) in &mut crowd {
        let rest = messages.left();
        out.data(*stream_id, END_STREAM, None, messages, rest);
    }
    out
}

/// Bytes of the last frame of [`unfinished_client_stream`]: a DATA frame header and
/// [`UNFINISHED_TAIL_BODY`] bytes of message body.
pub const UNFINISHED_LAST_FRAME_LEN: usize = 9 + UNFINISHED_TAIL_BODY;
const UNFINISHED_TAIL_BODY: usize = 1_500;

/// A client's start of a call that never ends: one message over two DATA frames, the second
/// nothing but body. Sent on its own, that last frame leaves the kernel side only a DATA frame
/// header to keep, which it holds back for the direction's next syscall.
pub fn unfinished_client_stream() -> Crafted {
    let mut out = Crafted::default();
    out.keep(CLIENT_PREFACE);
    out.frame(SETTINGS, 0, 0, &[]);
    out.frame(HEADERS, END_HEADERS, 1, &[0x82; 12]);
    let mut message = Messages::new(&[100 + UNFINISHED_TAIL_BODY], 3);
    out.data(1, 0, None, &mut message, 5 + 100);
    out.data(1, 0, None, &mut message, UNFINISHED_TAIL_BODY);
    out
}

/// What a server sends back: its SETTINGS first, then a large response and trailers.
pub fn server_stream() -> Crafted {
    let mut out = Crafted::default();
    out.frame(SETTINGS, 0, 0, &[]);
    out.frame(SETTINGS, 0x1, 0, &[]);
    out.frame(HEADERS, END_HEADERS, 1, &[0x88, 0x5f, 0x10]);
    let mut reply = Messages::new(&[70_000, 1], 9);
    while reply.left() > 0 {
        let len = reply.left().min(16_384);
        out.data(1, 0, None, &mut reply, len);
    }
    out.frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x40, 0x0b]);
    out.frame(PING, 0x1, 0, &[1; 8]);
    out
}
