//! Recovers frames from one direction of a connection, as its bytes arrive.
//!
//! Bytes come in chunks of any size (a 9-byte frame header alone, a header split over two
//! syscalls, dozens of frames in one) and may be interrupted by gaps of exactly known length.
//! A gap inside a frame's payload keeps the reader in sync (it knows where the frame ends); a
//! gap over a frame header loses sync, and the reader searches for a frame boundary again,
//! accepting a position only when it starts a plausible frame header *and* the header where
//! that frame ends is plausible too. A connection joined mid-flight starts out searching.

use super::{
    CLIENT_PREFACE, DEFAULT_MAX_FRAME_SIZE,
    frame::{Frame, FrameHeader, HEADER_LEN, Kind, flags},
};

/// Largest non-DATA payload kept in memory; beyond it the frame is skipped and counted.
const MAX_BUFFERED_PAYLOAD: usize = 256 * 1024;
/// Largest buffer kept from one frame to the next (the default maximum frame size); a larger
/// one is freed once its frame is parsed.
const KEPT_BUFFER_CAPACITY: usize = 16 * 1024;
/// Bytes scanned without finding a frame boundary before deciding the stream is not HTTP/2.
const GIVE_UP_AFTER: u64 = 1 << 20;

/// Part of a DATA frame's payload (padding excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPiece<'a> {
    Bytes(&'a [u8]),
    /// This many payload bytes went by uncaptured.
    Gap(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderEvent<'a> {
    /// The client connection preface: this direction is the client's.
    Preface,
    /// A complete non-DATA frame; `started_ns` is when its first byte arrived.
    Frame {
        frame: Frame<'a>,
        started_ns: u64,
    },
    Data {
        stream_id: u32,
        piece: DataPiece<'a>,
    },
    DataEnd {
        stream_id: u32,
        end_stream: bool,
    },
    /// Part of a header-bearing frame was lost (to a gap, a size cap or malformed padding).
    /// The header still tells which stream and whether it ended it.
    HeaderBlockLost {
        header: FrameHeader,
    },
    /// Frame boundaries were lost; frames until the next [`ReaderEvent::Resynced`] are missed.
    SyncLost,
    Resynced {
        skipped: u64,
    },
    /// The stream does not carry HTTP/2; it is ignored from here on.
    NotHttp2(OtherProtocol),
}

/// What a stream that is not HTTP/2 carries, as far as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtherProtocol {
    /// A TLS record (the handshake's first): gRPC over TLS is not decoded yet.
    Tls,
    /// An HTTP/1.x request or response.
    Http1,
    /// Anything else, or a stream joined where its start could not be seen.
    Other,
}

impl OtherProtocol {
    /// Recognises a stream from its first bytes.
    pub fn of_start(start: &[u8]) -> OtherProtocol {
        const METHODS: [&[u8]; 9] = [
            b"GET ",
            b"POST ",
            b"PUT ",
            b"HEAD ",
            b"DELETE ",
            b"OPTIONS ",
            b"PATCH ",
            b"CONNECT ",
            b"TRACE ",
        ];
        match start {
            // A handshake record (RFC 8446 §5.1), version 3.x.
            [0x16, 0x03, ..] => OtherProtocol::Tls,
            _ if start.starts_with(b"HTTP/1.")
                || METHODS.iter().any(|method| start.starts_with(method)) =>
            {
                OtherProtocol::Http1
            }
            _ => OtherProtocol::Other,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderStats {
    pub frames: u64,
    pub sync_losses: u64,
    pub skipped_bytes: u64,
    pub malformed_frames: u64,
    pub oversized_frames: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Padding {
    None,
    /// PADDED, and the pad-length byte has not arrived yet.
    Unread,
    /// This many padding bytes end the frame.
    Known(u32),
    /// The pad-length byte fell into a gap: data and padding can no longer be told apart.
    Lost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// At the very start of the stream: the preface, a SETTINGS frame, or not HTTP/2.
    Start,
    /// Collecting a frame header into `buf`.
    Header,
    /// Collecting a non-DATA payload into `buf` (unless `lost`).
    Payload {
        header: FrameHeader,
        remaining: u32,
        lost: bool,
    },
    /// Streaming a DATA payload through.
    Data {
        header: FrameHeader,
        remaining: u32,
        padding: Padding,
    },
    /// Looking for a frame boundary; `buf` is the window searched.
    Search {
        skipped: u64,
    },
    Ignored,
}

pub struct FrameReader {
    state: State,
    buf: Vec<u8>,
    /// While searching: where in `buf` each pushed chunk starts, and when it arrived, so frames
    /// found in the window keep their own arrival times.
    window_chunks: Vec<(usize, u64)>,
    frame_started_ns: u64,
    max_frame_size: u32,
    pub stats: ReaderStats,
}

type Sink<'s> = dyn FnMut(ReaderEvent<'_>) + 's;

impl FrameReader {
    /// For a direction seen from its first byte.
    pub fn at_stream_start() -> FrameReader {
        FrameReader::with_state(State::Start)
    }

    /// For a direction joined mid-flight: the first frame boundary has to be found.
    pub fn joined_late() -> FrameReader {
        FrameReader::with_state(State::Search { skipped: 0 })
    }

    fn with_state(state: State) -> FrameReader {
        FrameReader {
            state,
            buf: Vec::new(),
            window_chunks: Vec::new(),
            frame_started_ns: 0,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            stats: ReaderStats::default(),
        }
    }

    /// The receiving peer advertised SETTINGS_MAX_FRAME_SIZE: frames in this direction may be
    /// that large (used to judge frame boundaries when searching).
    pub fn set_max_frame_size(&mut self, size: u32) {
        self.max_frame_size = size.clamp(DEFAULT_MAX_FRAME_SIZE, (1 << 24) - 1);
    }

    pub fn is_http2(&self) -> bool {
        self.state != State::Ignored
    }

    pub fn in_sync(&self) -> bool {
        !matches!(self.state, State::Search { .. } | State::Ignored)
    }

    /// Feeds the next captured bytes, which arrived at `timestamp_ns`.
    pub fn push_bytes(&mut self, mut input: &[u8], timestamp_ns: u64, sink: &mut Sink<'_>) {
        while !input.is_empty() {
            match &mut self.state {
                State::Ignored => return,
                State::Start => {
                    self.buf.extend_from_slice(input);
                    self.decide_start(timestamp_ns, sink);
                    return;
                }
                State::Search { .. } => {
                    self.window_chunks.push((self.buf.len(), timestamp_ns));
                    self.buf.extend_from_slice(input);
                    self.search(sink);
                    return;
                }
                State::Header => {
                    if self.buf.is_empty() {
                        self.frame_started_ns = timestamp_ns;
                        // A header that arrives whole is parsed where it lies.
                        if let Some((bytes, rest)) = input.split_first_chunk::<HEADER_LEN>() {
                            input = rest;
                            self.start_frame(FrameHeader::parse(bytes), sink);
                            continue;
                        }
                    }
                    let take = (HEADER_LEN - self.buf.len()).min(input.len());
                    self.buf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.buf.len() == HEADER_LEN {
                        let bytes: [u8; HEADER_LEN] = self.buf[..].try_into().expect("9 bytes");
                        self.buf.clear();
                        self.start_frame(FrameHeader::parse(&bytes), sink);
                    }
                }
                State::Payload {
                    header,
                    remaining,
                    lost,
                } => {
                    let take = (*remaining as usize).min(input.len());
                    let (piece, rest) = input.split_at(take);
                    input = rest;
                    *remaining -= take as u32;
                    let complete = *remaining == 0;
                    // A payload that arrives whole is parsed where it lies, without a copy.
                    let whole = complete && self.buf.is_empty();
                    if !*lost && !whole {
                        if self.buf.len() + take > MAX_BUFFERED_PAYLOAD {
                            *lost = true;
                            self.stats.oversized_frames += 1;
                            self.buf = Vec::new();
                        } else {
                            self.buf.extend_from_slice(piece);
                        }
                    }
                    if complete {
                        let header = *header;
                        if *lost {
                            self.finish_payload(header, None, sink);
                        } else if whole {
                            self.finish_payload(header, Some(piece), sink);
                        } else {
                            let mut buf = std::mem::take(&mut self.buf);
                            self.finish_payload(header, Some(&buf), sink);
                            // Handed back emptied, its capacity to serve the next payload,
                            // unless an unusually large one grew it.
                            if buf.capacity() <= KEPT_BUFFER_CAPACITY {
                                buf.clear();
                                self.buf = buf;
                            }
                        }
                    }
                }
                State::Data {
                    header,
                    remaining,
                    padding,
                } => {
                    let take = (*remaining as usize).min(input.len());
                    let mut piece = &input[..take];
                    input = &input[take..];
                    *remaining -= take as u32;
                    if *padding == Padding::Unread && !piece.is_empty() {
                        let pad = u32::from(piece[0]);
                        piece = &piece[1..];
                        // Padding longer than what follows the pad-length byte is a protocol
                        // error (§6.1); data and padding can then not be told apart.
                        let after_pad_byte = piece.len() as u32 + *remaining;
                        *padding = if pad <= after_pad_byte {
                            Padding::Known(pad)
                        } else {
                            Padding::Lost
                        };
                    }
                    // Bytes of `piece` that are data rather than padding: the padding is the
                    // last `pad` bytes of the frame.
                    let after_piece = *remaining;
                    let data_len = match *padding {
                        Padding::Known(pad) => {
                            let data_end = (piece.len() as u32 + after_piece).saturating_sub(pad);
                            data_end.min(piece.len() as u32) as usize
                        }
                        _ => piece.len(),
                    };
                    let stream_id = header.stream_id;
                    let header = *header;
                    if data_len > 0 {
                        let data = &piece[..data_len];
                        if *padding == Padding::Lost {
                            sink(ReaderEvent::Data {
                                stream_id,
                                piece: DataPiece::Gap(data.len() as u64),
                            });
                        } else {
                            sink(ReaderEvent::Data {
                                stream_id,
                                piece: DataPiece::Bytes(data),
                            });
                        }
                    }
                    if after_piece == 0 {
                        self.finish_data(header, sink);
                    }
                }
            }
        }
    }

    /// In frame sync, with no part of a frame pending: the next byte starts a frame header.
    pub fn at_frame_boundary(&self) -> bool {
        self.state == State::Header && self.buf.is_empty()
    }

    /// Accounts for `len` bytes that went by uncaptured.
    pub fn push_gap(&mut self, len: u64, sink: &mut Sink<'_>) {
        if len == 0 {
            return;
        }
        match &mut self.state {
            State::Ignored => {}
            State::Search { skipped } => {
                // The window before the gap cannot be judged across it: start afresh.
                *skipped += self.buf.len() as u64 + len;
                self.buf.clear();
                self.window_chunks.clear();
            }
            State::Start | State::Header => self.lose_sync(len, sink),
            State::Payload {
                header,
                remaining,
                lost,
            } => {
                let in_frame = u64::from(*remaining).min(len);
                *remaining -= in_frame as u32;
                *lost = true;
                self.buf = Vec::new();
                if *remaining == 0 {
                    let header = *header;
                    self.finish_payload(header, None, sink);
                    if len > in_frame {
                        self.lose_sync(len - in_frame, sink);
                    }
                }
            }
            State::Data {
                header,
                remaining,
                padding,
            } => {
                let in_frame = u64::from(*remaining).min(len) as u32;
                let before = *remaining;
                *remaining -= in_frame;
                let stream_id = header.stream_id;
                let header = *header;
                let data_in_gap = match *padding {
                    Padding::Unread => {
                        *padding = Padding::Lost;
                        in_frame
                    }
                    // Data occupies the frame's bytes up to `pad` from its end.
                    Padding::Known(pad) => {
                        let data_left = before.saturating_sub(pad);
                        in_frame.min(data_left)
                    }
                    Padding::None | Padding::Lost => in_frame,
                };
                if data_in_gap > 0 {
                    sink(ReaderEvent::Data {
                        stream_id,
                        piece: DataPiece::Gap(u64::from(data_in_gap)),
                    });
                }
                if *remaining == 0 {
                    self.finish_data(header, sink);
                    if len > u64::from(in_frame) {
                        self.lose_sync(len - u64::from(in_frame), sink);
                    }
                }
            }
        }
    }

    fn lose_sync(&mut self, skipped: u64, sink: &mut Sink<'_>) {
        self.stats.sync_losses += 1;
        let partial = self.buf.len() as u64;
        self.buf.clear();
        self.state = State::Search {
            skipped: skipped + partial,
        };
        sink(ReaderEvent::SyncLost);
    }

    fn start_frame(&mut self, header: FrameHeader, sink: &mut Sink<'_>) {
        self.stats.frames += 1;
        if header.kind == Kind::Data {
            let padding = if header.has(flags::PADDED) {
                Padding::Unread
            } else {
                Padding::None
            };
            self.state = State::Data {
                header,
                remaining: header.len,
                padding,
            };
            if header.len == 0 {
                self.finish_data(header, sink);
            }
        } else {
            self.state = State::Payload {
                header,
                remaining: header.len,
                lost: false,
            };
            if header.len == 0 {
                self.finish_payload(header, Some(&[]), sink);
            }
        }
    }

    fn finish_data(&mut self, header: FrameHeader, sink: &mut Sink<'_>) {
        self.state = State::Header;
        sink(ReaderEvent::DataEnd {
            stream_id: header.stream_id,
            end_stream: header.has(flags::END_STREAM),
        });
    }

    /// The frame's payload is complete: `None` when part of it was lost.
    fn finish_payload(&mut self, header: FrameHeader, payload: Option<&[u8]>, sink: &mut Sink<'_>) {
        self.state = State::Header;
        let Some(payload) = payload else {
            if header.kind.carries_header_block() {
                sink(ReaderEvent::HeaderBlockLost { header });
            }
            return;
        };
        match Frame::parse(&header, payload) {
            Ok(frame) => sink(ReaderEvent::Frame {
                frame,
                started_ns: self.frame_started_ns,
            }),
            Err(_) => {
                self.stats.malformed_frames += 1;
                if header.kind.carries_header_block() {
                    sink(ReaderEvent::HeaderBlockLost { header });
                }
            }
        }
    }

    /// The first bytes of a stream: the client preface, or the server's SETTINGS frame, or
    /// something that is not HTTP/2 (HTTP/1.1, a TLS record, anything else).
    fn decide_start(&mut self, timestamp_ns: u64, sink: &mut Sink<'_>) {
        let seen = self.buf.len().min(CLIENT_PREFACE.len());
        if self.buf[..seen] == CLIENT_PREFACE[..seen] {
            if seen < CLIENT_PREFACE.len() {
                return; // Could still be the preface.
            }
            let rest = self.buf.split_off(CLIENT_PREFACE.len());
            self.buf.clear();
            self.state = State::Header;
            sink(ReaderEvent::Preface);
            self.push_bytes(&rest, timestamp_ns, sink);
            return;
        }
        if self.buf.len() < HEADER_LEN {
            // A SETTINGS header starts with a length below 2^16, so its first byte is 0.
            if self.buf[0] != 0 {
                let what = OtherProtocol::of_start(&self.buf);
                self.ignore(what, sink);
            }
            return;
        }
        let first: [u8; HEADER_LEN] = self.buf[..HEADER_LEN].try_into().expect("9 bytes");
        let header = FrameHeader::parse(&first);
        if header.kind == Kind::Settings && FrameHeader::is_plausible(&first, self.max_frame_size) {
            let bytes = std::mem::take(&mut self.buf);
            self.state = State::Header;
            self.push_bytes(&bytes, timestamp_ns, sink);
        } else {
            let what = OtherProtocol::of_start(&self.buf);
            self.ignore(what, sink);
        }
    }

    fn ignore(&mut self, what: OtherProtocol, sink: &mut Sink<'_>) {
        self.buf = Vec::new();
        self.window_chunks = Vec::new();
        self.state = State::Ignored;
        sink(ReaderEvent::NotHttp2(what));
    }

    /// Scans the window for a position where two plausible frame headers follow each other.
    fn search(&mut self, sink: &mut Sink<'_>) {
        let State::Search { skipped } = &mut self.state else {
            return;
        };
        let window = &self.buf;
        let header_at = |at: usize| -> Option<[u8; HEADER_LEN]> {
            window
                .get(at..at + HEADER_LEN)
                .map(|bytes| bytes.try_into().expect("9 bytes"))
        };
        // The first position confirmed by a second header wins. A plausible header whose
        // successor has not arrived yet is only weak evidence: a later confirmed position beats
        // it, but while none is found the window is kept from there so it can be judged later.
        let mut confirmed = None;
        let mut undecided = None;
        let mut position = 0;
        while let Some(bytes) = header_at(position) {
            if FrameHeader::is_plausible(&bytes, self.max_frame_size) {
                let next = position + HEADER_LEN + FrameHeader::parse(&bytes).len as usize;
                match header_at(next) {
                    None => {
                        undecided.get_or_insert(position);
                    }
                    Some(following)
                        if FrameHeader::is_plausible(&following, self.max_frame_size) =>
                    {
                        confirmed = Some(position);
                        break;
                    }
                    Some(_) => {}
                }
            }
            position += 1;
        }
        let found = confirmed.is_some();
        // Without a decision, keep everything from the first undecided candidate, or the last
        // 8 bytes (a header may straddle the next chunk).
        let position = confirmed
            .or(undecided)
            .unwrap_or_else(|| self.buf.len().saturating_sub(HEADER_LEN - 1));
        *skipped += position as u64;
        let total_skipped = *skipped;
        self.stats.skipped_bytes += position as u64;
        let rest = self.buf.split_off(position);
        self.buf = rest;
        // Rebase the chunk boundaries on the kept part of the window.
        let first_kept = self
            .window_chunks
            .iter()
            .rposition(|&(start, _)| start <= position)
            .unwrap_or(0);
        self.window_chunks.drain(..first_kept);
        for (index, (start, _)) in self.window_chunks.iter_mut().enumerate() {
            *start = if index == 0 { 0 } else { *start - position };
        }
        if found {
            let bytes = std::mem::take(&mut self.buf);
            let chunks = std::mem::take(&mut self.window_chunks);
            self.state = State::Header;
            sink(ReaderEvent::Resynced {
                skipped: total_skipped,
            });
            for (index, &(start, timestamp_ns)) in chunks.iter().enumerate() {
                let end = chunks.get(index + 1).map_or(bytes.len(), |&(next, _)| next);
                self.push_bytes(&bytes[start..end], timestamp_ns, sink);
            }
        } else if total_skipped > GIVE_UP_AFTER {
            // Joined mid-stream: its start, which would say what it is, went by unseen.
            self.ignore(OtherProtocol::Other, sink);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::http2::frame::ErrorCode;

    /// Serialises one frame.
    pub(crate) fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut bytes = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        bytes.extend_from_slice(&stream_id.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Events with owned data, comparable across feeding strategies. DATA pieces are merged per
    /// frame so that chunking does not change the outcome.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Seen {
        Preface,
        /// A frame as `{:?}` writes it: frames borrow the reader's buffer.
        Frame(String),
        Data(u32, Vec<u8>, u64),
        DataEnd(u32, bool),
        HeaderBlockLost(u32, u8),
        SyncLost,
        Resynced(u64),
        NotHttp2(OtherProtocol),
    }

    impl Seen {
        fn frame(frame: Frame<'_>) -> Seen {
            Seen::Frame(format!("{frame:?}"))
        }
    }

    fn record(seen: &mut Vec<Seen>, event: ReaderEvent<'_>) {
        match event {
            ReaderEvent::Preface => seen.push(Seen::Preface),
            ReaderEvent::Frame { frame, .. } => seen.push(Seen::frame(frame)),
            ReaderEvent::Data { stream_id, piece } => {
                if !matches!(seen.last(), Some(Seen::Data(id, ..)) if *id == stream_id) {
                    seen.push(Seen::Data(stream_id, Vec::new(), 0));
                }
                let Some(Seen::Data(_, bytes, gap)) = seen.last_mut() else {
                    unreachable!()
                };
                match piece {
                    DataPiece::Bytes(data) => bytes.extend_from_slice(data),
                    DataPiece::Gap(len) => *gap += len,
                }
            }
            ReaderEvent::DataEnd {
                stream_id,
                end_stream,
            } => seen.push(Seen::DataEnd(stream_id, end_stream)),
            ReaderEvent::HeaderBlockLost { header } => {
                seen.push(Seen::HeaderBlockLost(header.stream_id, header.flags))
            }
            ReaderEvent::SyncLost => seen.push(Seen::SyncLost),
            ReaderEvent::Resynced { skipped } => seen.push(Seen::Resynced(skipped)),
            ReaderEvent::NotHttp2(what) => seen.push(Seen::NotHttp2(what)),
        }
    }

    /// Feeds `pieces` (bytes, or gaps given as `Err(len)`) and returns what the reader saw.
    fn feed(mut reader: FrameReader, pieces: &[Result<&[u8], u64>]) -> Vec<Seen> {
        let mut seen = Vec::new();
        for piece in pieces {
            match piece {
                Ok(bytes) => reader.push_bytes(bytes, 1, &mut |event| record(&mut seen, event)),
                Err(len) => reader.push_gap(*len, &mut |event| record(&mut seen, event)),
            }
        }
        seen
    }

    fn client_stream() -> Vec<u8> {
        let mut bytes = CLIENT_PREFACE.to_vec();
        bytes.extend(frame(4, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
        bytes.extend(frame(1, flags::END_HEADERS, 1, &[0x83, 0x86]));
        // PADDED DATA: pad length 3, "hello", 3 bytes of padding, END_STREAM.
        bytes.extend(frame(
            0,
            flags::PADDED | flags::END_STREAM,
            1,
            b"\x03hello\0\0\0",
        ));
        bytes.extend(frame(3, 0, 3, &8u32.to_be_bytes()));
        bytes
    }

    fn client_stream_events() -> Vec<Seen> {
        vec![
            Seen::Preface,
            Seen::frame(Frame::Settings {
                ack: false,
                settings: vec![crate::http2::Setting::InitialWindowSize(65535)],
            }),
            Seen::frame(Frame::Headers {
                stream_id: 1,
                end_stream: false,
                end_headers: true,
                fragment: &[0x83, 0x86],
            }),
            Seen::Data(1, b"hello".to_vec(), 0),
            Seen::DataEnd(1, true),
            Seen::frame(Frame::RstStream {
                stream_id: 3,
                error_code: ErrorCode::CANCEL,
            }),
        ]
    }

    #[test]
    fn a_payload_split_over_chunks_is_buffered_and_large_buffers_are_not_kept() {
        for (len, kept) in [(100, true), (KEPT_BUFFER_CAPACITY + 1, false)] {
            let mut bytes = CLIENT_PREFACE.to_vec();
            bytes.extend(frame(1, flags::END_HEADERS, 1, &vec![0x82; len]));
            let (first, second) = bytes.split_at(bytes.len() - 10);
            let mut reader = FrameReader::at_stream_start();
            let mut seen = Vec::new();
            for piece in [first, second] {
                reader.push_bytes(piece, 1, &mut |event| record(&mut seen, event));
            }
            let fragment = vec![0x82; len];
            let expected = Seen::frame(Frame::Headers {
                stream_id: 1,
                end_stream: false,
                end_headers: true,
                fragment: &fragment,
            });
            assert_eq!(seen, [Seen::Preface, expected], "{len}");
            assert_eq!(reader.buf.capacity() > 0, kept, "{len}");
        }
    }

    #[test]
    fn chunking_does_not_change_the_frames() {
        let bytes = client_stream();
        assert_eq!(
            feed(FrameReader::at_stream_start(), &[Ok(&bytes)]),
            client_stream_events()
        );
        let one_by_one: Vec<Result<&[u8], u64>> = bytes.chunks(1).map(Ok).collect();
        assert_eq!(
            feed(FrameReader::at_stream_start(), &one_by_one),
            client_stream_events()
        );
        for split in 1..bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(
                feed(FrameReader::at_stream_start(), &[Ok(a), Ok(b)]),
                client_stream_events(),
                "split at {split}"
            );
        }
    }

    #[test]
    fn server_stream_starts_with_settings() {
        let bytes = frame(4, 0, 0, &[]);
        assert_eq!(
            feed(FrameReader::at_stream_start(), &[Ok(&bytes)]),
            vec![Seen::frame(Frame::Settings {
                ack: false,
                settings: vec![]
            })]
        );
    }

    #[test]
    fn other_protocols_are_recognised() {
        for (start, what) in [
            (
                &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                OtherProtocol::Http1,
            ),
            (&b"HTTP/1.1 200 OK\r\n"[..], OtherProtocol::Http1),
            (
                &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..],
                OtherProtocol::Tls,
            ),
            (&[0, 0, 5, 1, 4, 0, 0, 0, 1, 0x82][..], OtherProtocol::Other),
        ] {
            assert_eq!(
                feed(FrameReader::at_stream_start(), &[Ok(start)]),
                vec![Seen::NotHttp2(what)],
                "{start:?}"
            );
        }
    }

    #[test]
    fn gap_inside_data_keeps_sync_and_excludes_padding() {
        let bytes = client_stream();
        // Frame layout: preface 24, SETTINGS 15, HEADERS 11, DATA header at 50, pad byte at 59,
        // "hello" at 60..65, padding at 65..68.
        let data_start = 24 + 15 + 11 + 9;
        let mut events = feed(
            FrameReader::at_stream_start(),
            &[
                Ok(&bytes[..data_start + 2]),
                Err(5),
                Ok(&bytes[data_start + 7..]),
            ],
        );
        // "h" captured, then 4 data bytes and 1 padding byte lost: the gap reports only data.
        assert_eq!(events.remove(3), Seen::Data(1, b"h".to_vec(), 4));
        let mut expected = client_stream_events();
        expected.remove(3);
        assert_eq!(events, expected);
    }

    #[test]
    fn gap_inside_a_header_block_loses_only_that_block() {
        let mut bytes = frame(
            1,
            flags::END_HEADERS | flags::END_STREAM,
            5,
            &[0x88, 0x40, 1, b'a', 1, b'b'],
        );
        bytes.extend(frame(3, 0, 5, &0u32.to_be_bytes()));
        let events = feed(FrameReader::joined_late(), &[Ok(&[]), Ok(&bytes[..0])]);
        assert!(events.is_empty());
        let mut reader = FrameReader::at_stream_start();
        reader.state = State::Header;
        assert_eq!(
            feed(reader, &[Ok(&bytes[..11]), Err(3), Ok(&bytes[14..])]),
            vec![
                Seen::HeaderBlockLost(5, flags::END_HEADERS | flags::END_STREAM),
                Seen::frame(Frame::RstStream {
                    stream_id: 5,
                    error_code: ErrorCode::NO_ERROR
                }),
            ]
        );
    }

    #[test]
    fn gap_over_frame_headers_resynchronises() {
        let bytes = client_stream();
        let mut tail = frame(1, flags::END_HEADERS, 7, &[0x83]);
        tail.extend(frame(8, 0, 0, &100u32.to_be_bytes()));
        // The gap swallows the HEADERS frame and the start of DATA; resync happens on the
        // bytes after it, which start mid-DATA.
        let events = feed(
            FrameReader::at_stream_start(),
            &[Ok(&bytes[..39]), Err(14), Ok(&bytes[53..]), Ok(&tail)],
        );
        assert_eq!(events[..2], client_stream_events()[..2]);
        assert_eq!(events[2], Seen::SyncLost);
        let Some(&Seen::Resynced(skipped)) = events.get(3) else {
            panic!("{events:?}")
        };
        // Everything from the gap up to the RST_STREAM frame was skipped.
        assert_eq!(skipped, 14 + (68 - 53));
        assert_eq!(
            events[4..],
            [
                Seen::frame(Frame::RstStream {
                    stream_id: 3,
                    error_code: ErrorCode::CANCEL
                }),
                Seen::frame(Frame::Headers {
                    stream_id: 7,
                    end_stream: false,
                    end_headers: true,
                    fragment: &[0x83]
                }),
                Seen::frame(Frame::WindowUpdate {
                    stream_id: 0,
                    increment: 100
                }),
            ]
        );
    }

    #[test]
    fn late_join_waits_for_a_confirmed_boundary() {
        // The tail of a DATA frame, then two frames: the first is accepted only once the second
        // header confirms where it ends.
        let mut bytes = vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0x01];
        bytes.extend(frame(1, flags::END_HEADERS, 9, &[0x82, 0x84]));
        let second = frame(0, flags::END_STREAM, 9, b"");
        let mut reader = FrameReader::joined_late();
        let mut seen = Vec::new();
        reader.push_bytes(&bytes, 1, &mut |event| record(&mut seen, event));
        assert!(
            seen.is_empty(),
            "accepted an unconfirmed boundary: {seen:?}"
        );
        reader.push_bytes(&second, 2, &mut |event| record(&mut seen, event));
        assert_eq!(
            seen,
            vec![
                Seen::Resynced(6),
                Seen::frame(Frame::Headers {
                    stream_id: 9,
                    end_stream: false,
                    end_headers: true,
                    fragment: &[0x82, 0x84]
                }),
                Seen::DataEnd(9, true),
            ]
        );
    }

    #[test]
    fn random_bytes_never_panic_and_are_eventually_ignored() {
        let mut state = 0x1234_5678_u64;
        let noise: Vec<u8> = (0..(GIVE_UP_AFTER as usize + 50_000))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let events = feed(
            FrameReader::joined_late(),
            &noise.chunks(4096).map(Ok).collect::<Vec<_>>(),
        );
        assert_eq!(
            events.last(),
            Some(&Seen::NotHttp2(OtherProtocol::Other)),
            "{:?}",
            &events[..events.len().min(5)]
        );
    }
}
