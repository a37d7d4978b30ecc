//! Follows every stream of one connection, from its two captured byte streams, to a
//! [`CallRecord`] per gRPC call.

use std::{rc::Rc, sync::Arc, time::Duration};

use foldhash::HashMap;

use super::{
    call::{CallRecord, ConnectionFacts, EndReason, Side},
    headers::{BlockMeaning, KnownMeanings, RequestHeaders},
    message::MessageCounter,
    metadata::is_retained,
    status::Code,
};
use tracer_common::maps::MESSAGE_CURSOR_SLOTS;

use crate::{
    capture::{Chunk, Direction, MessageCursor, Payload},
    hpack::{self, Decoded, HeaderField},
    http2::{DataPiece, ErrorCode, Frame, FrameHeader, FrameReader, Kind, ReaderEvent, Setting},
};

/// Bounds on what one connection may hold in memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Calls in flight at once; further streams are counted and not followed.
    pub max_open_streams: usize,
    /// A header block (HEADERS plus CONTINUATIONs) larger than this is dropped and counted.
    pub max_header_block: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_open_streams: 32_768,
            max_header_block: 256 * 1024,
        }
    }
}

/// What happened on a connection besides complete calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub calls: u64,
    /// Calls whose `:path` could not be decoded (late join).
    pub calls_without_method: u64,
    /// Calls whose final status could not be decoded (late join or a capture gap).
    pub calls_without_status: u64,
    /// Calls still in flight when their process exited: they never had a status.
    pub calls_cut_by_exit: u64,
    /// Streams not followed because `max_open_streams` were already open.
    pub streams_over_limit: u64,
    /// Responses for streams whose request was not seen (in flight at attach).
    pub streams_joined_mid_call: u64,
    /// Streams whose content-type was not gRPC.
    pub non_grpc_streams: u64,
    pub header_blocks_lost: u64,
    pub header_blocks_too_large: u64,
    pub hpack_errors: u64,
    pub sync_losses: u64,
    pub skipped_bytes: u64,
    /// A direction turned out not to carry HTTP/2.
    pub not_http2: bool,
}

impl TrackerStats {
    /// Adds another connection's counters to these.
    pub fn add(&mut self, other: &TrackerStats) {
        self.calls += other.calls;
        self.calls_without_method += other.calls_without_method;
        self.calls_without_status += other.calls_without_status;
        self.calls_cut_by_exit += other.calls_cut_by_exit;
        self.streams_over_limit += other.streams_over_limit;
        self.streams_joined_mid_call += other.streams_joined_mid_call;
        self.non_grpc_streams += other.non_grpc_streams;
        self.header_blocks_lost += other.header_blocks_lost;
        self.header_blocks_too_large += other.header_blocks_too_large;
        self.hpack_errors += other.hpack_errors;
        self.sync_losses += other.sync_losses;
        self.skipped_bytes += other.skipped_bytes;
        self.not_http2 |= other.not_http2;
    }
}

/// Largest header block buffer a direction keeps between blocks; gRPC's are a few hundred
/// bytes.
const KEPT_BLOCK_CAPACITY: usize = 16 * 1024;

/// A header block being assembled from HEADERS/PUSH_PROMISE and CONTINUATION frames (its
/// fragments are gathered in [`Half::block`]).
struct PendingBlock {
    stream_id: u32,
    /// PUSH_PROMISE blocks are decoded only to keep the HPACK table in sync.
    push_promise: bool,
    end_stream: bool,
    started_ns: u64,
    /// Part of it was lost or it grew too large: it will not be decoded.
    lost: bool,
}

/// One direction of the connection, past its frame reader.
struct Half {
    decoder: hpack::Decoder,
    pending: Option<PendingBlock>,
    /// The pending block's fragments, joined; emptied rather than freed between blocks, up to
    /// [`KEPT_BLOCK_CAPACITY`].
    block: Vec<u8>,
    /// The last decoded block's fields: kept only for its capacity, reused block to block.
    fields: Vec<HeaderField>,
    /// What the blocks the decoder hands out as repeats mean.
    meanings: KnownMeanings,
}

#[derive(Default)]
struct StreamState {
    start_ns: u64,
    /// `None` when the request's header block was lost.
    request_headers: Option<Rc<RequestHeaders>>,
    response_headers_seen: bool,
    first_response_header_ns: Option<u64>,
    http_status: Option<u16>,
    grpc_status: Option<u32>,
    grpc_message: Option<String>,
    /// A response header block held fields we could not decode: a missing grpc-status may
    /// just be unreadable.
    response_had_unknown_fields: bool,
    request: MessageCounter,
    response: MessageCounter,
}

/// Follows one connection: its two directions' frames, and the calls they carry.
pub struct ConnectionTracker {
    /// Indexed by [`Direction`]: egress (what the traced process wrote), ingress. Kept apart
    /// from the calls, so that a reader runs in place while the frames it finds update them.
    readers: [FrameReader; 2],
    /// Per [`Direction`]: the stream offset right after the last chunk fed.
    next_offset: [Option<u64>; 2],
    calls: CallAssembly,
}

/// What the frames of a connection's two directions make of its calls.
struct CallAssembly {
    facts: Arc<ConnectionFacts>,
    /// Indexed by [`Direction`]: egress (what the traced process wrote), ingress.
    halves: [Half; 2],
    /// The direction the client writes in, once known (preface or request headers).
    client_direction: Option<Direction>,
    streams: HashMap<u32, StreamState>,
    /// The first stream whose request we saw: responses on older streams belong to calls made
    /// before we were watching; on newer ones, to calls that already ended (e.g. reset).
    first_request_stream: Option<u32>,
    limits: Limits,
    stats: TrackerStats,
    /// Per [`Direction`]: a SETTINGS_MAX_FRAME_SIZE that the opposite direction's SETTINGS
    /// frame set for this direction's reader, applied once the running reader has returned.
    max_frame_size: [Option<u32>; 2],
}

fn opposite(direction: Direction) -> Direction {
    match direction {
        Direction::Egress => Direction::Ingress,
        Direction::Ingress => Direction::Egress,
    }
}

impl ConnectionTracker {
    pub fn new(facts: ConnectionFacts, limits: Limits) -> ConnectionTracker {
        let from_start = facts.seen_from_start;
        let reader = || {
            if from_start {
                FrameReader::at_stream_start()
            } else {
                FrameReader::joined_late()
            }
        };
        let half = || Half {
            decoder: if from_start {
                hpack::Decoder::new(is_retained)
            } else {
                hpack::Decoder::joined_late(is_retained)
            },
            pending: None,
            block: Vec::new(),
            fields: Vec::new(),
            meanings: KnownMeanings::default(),
        };
        ConnectionTracker {
            readers: [reader(), reader()],
            next_offset: [None; 2],
            calls: CallAssembly {
                facts: Arc::new(facts),
                halves: [half(), half()],
                client_direction: None,
                streams: HashMap::default(),
                first_request_stream: None,
                limits,
                stats: TrackerStats::default(),
                max_frame_size: [None; 2],
            },
        }
    }

    pub fn stats(&self) -> &TrackerStats {
        &self.calls.stats
    }

    pub fn facts(&self) -> &ConnectionFacts {
        &self.calls.facts
    }

    /// Calls currently in flight.
    pub fn open_calls(&self) -> usize {
        self.calls.streams.len()
    }

    /// Feeds the next chunk of one direction; completed calls are appended to `out`.
    pub fn on_chunk(&mut self, direction: Direction, chunk: &Chunk<'_>, out: &mut Vec<CallRecord>) {
        let now = chunk.timestamp_ns;
        let index = direction as usize;
        let calls = &mut self.calls;
        let mut sink = |event: ReaderEvent<'_>| calls.on_event(direction, event, now, out);
        let reader = &mut self.readers[index];
        match &chunk.payload {
            Payload::Bytes(bytes) => reader.push_bytes(bytes, now, &mut sink),
            Payload::Gap(len) => reader.push_gap(*len, &mut sink),
        }
        // Only this direction's SETTINGS can have set a size, for the opposite reader.
        let other = opposite(direction) as usize;
        if let Some(size) = self.calls.max_frame_size[other].take() {
            self.readers[other].set_max_frame_size(size);
        }
        self.next_offset[index] = Some(chunk.offset + chunk.payload.len());
    }

    /// Where one direction stands, if everything fed so far ends exactly at a frame boundary:
    /// the stream offset, and the streams in the middle of a message there. `None` when the
    /// reader is mid-frame or out of sync, or when more streams are mid-message than the kernel
    /// side can hold. Streams whose message boundaries are unknown (joined mid-message) are
    /// left out: the kernel side may then misread their DATA, which only affects counts that
    /// are already marked inexact.
    pub fn frame_sync_offer(&self, direction: Direction) -> Option<(u64, Vec<MessageCursor>)> {
        let offset = self.next_offset[direction as usize]?;
        if !self.readers[direction as usize].at_frame_boundary() {
            return None;
        }
        let client = self.calls.client_direction?;
        let mut parked = Vec::new();
        for (&stream_id, stream) in &self.calls.streams {
            let counter = if client == direction {
                &stream.request
            } else {
                &stream.response
            };
            match counter.resume_point() {
                None | Some((0, 0)) => {}
                Some((prefix_seen, value)) => parked.push(MessageCursor {
                    stream_id,
                    prefix_seen,
                    value,
                }),
            }
        }
        (parked.len() <= MESSAGE_CURSOR_SLOTS).then_some((offset, parked))
    }

    /// The connection ended (`reason`: closed, or its process exited): every call still open
    /// ends here.
    pub fn on_close(&mut self, timestamp_ns: u64, reason: EndReason, out: &mut Vec<CallRecord>) {
        let calls = &mut self.calls;
        let mut open: Vec<u32> = calls.streams.keys().copied().collect();
        open.sort_unstable();
        for stream_id in open {
            calls.complete(stream_id, reason, timestamp_ns, out);
        }
    }
}

impl CallAssembly {
    fn on_event(
        &mut self,
        direction: Direction,
        event: ReaderEvent<'_>,
        now: u64,
        out: &mut Vec<CallRecord>,
    ) {
        match event {
            ReaderEvent::Preface => self.client_direction = Some(direction),
            ReaderEvent::NotHttp2 => self.stats.not_http2 = true,
            ReaderEvent::SyncLost => {
                self.stats.sync_losses += 1;
                self.lose_header_state(direction);
                // DATA frames of any stream may have gone by unseen.
                let client = self.client_direction;
                for stream in self.streams.values_mut() {
                    match client {
                        Some(client) if client == direction => stream.request.lose_sync(),
                        Some(_) => stream.response.lose_sync(),
                        None => {
                            stream.request.lose_sync();
                            stream.response.lose_sync();
                        }
                    }
                }
            }
            ReaderEvent::Resynced { skipped } => self.stats.skipped_bytes += skipped,
            ReaderEvent::HeaderBlockLost { header } => {
                self.on_header_block_lost(direction, header, now, out)
            }
            ReaderEvent::Data { stream_id, piece } => {
                let is_request = self.client_direction == Some(direction);
                if let Some(stream) = self.streams.get_mut(&stream_id) {
                    let counter = if is_request {
                        &mut stream.request
                    } else {
                        &mut stream.response
                    };
                    match piece {
                        DataPiece::Bytes(bytes) => counter.push_bytes(bytes, now),
                        DataPiece::Gap(len) => counter.push_gap(len),
                    }
                }
            }
            ReaderEvent::DataEnd {
                stream_id,
                end_stream,
            } => {
                let is_response = self.client_direction == Some(opposite(direction));
                if end_stream && is_response && self.streams.contains_key(&stream_id) {
                    self.complete(stream_id, EndReason::EndStreamWithoutTrailers, now, out);
                }
            }
            ReaderEvent::Frame { frame, started_ns } => {
                self.on_frame(direction, frame, started_ns, now, out)
            }
        }
    }

    fn on_frame(
        &mut self,
        direction: Direction,
        frame: Frame<'_>,
        started_ns: u64,
        now: u64,
        out: &mut Vec<CallRecord>,
    ) {
        let index = direction as usize;
        if self.halves[index].pending.is_some() && !matches!(frame, Frame::Continuation { .. }) {
            // A header block must be followed by its CONTINUATIONs (RFC 9113 §6.2).
            self.lose_header_state(direction);
        }
        match frame {
            Frame::Headers {
                stream_id,
                end_stream,
                end_headers,
                fragment,
            } => {
                self.start_block(
                    direction, stream_id, false, end_stream, started_ns, fragment,
                );
                if end_headers {
                    self.finish_block(direction, now, out);
                }
            }
            Frame::PushPromise {
                stream_id,
                end_headers,
                fragment,
                ..
            } => {
                self.start_block(direction, stream_id, true, false, started_ns, fragment);
                if end_headers {
                    self.finish_block(direction, now, out);
                }
            }
            Frame::Continuation {
                stream_id,
                end_headers,
                fragment,
            } => {
                let limit = self.limits.max_header_block;
                let half = &mut self.halves[index];
                match &mut half.pending {
                    Some(pending) if pending.stream_id == stream_id => {
                        if half.block.len() + fragment.len() > limit {
                            self.stats.header_blocks_too_large += u64::from(!pending.lost);
                            pending.lost = true;
                            half.block = Vec::new();
                        } else if !pending.lost {
                            half.block.extend_from_slice(fragment);
                        }
                        if end_headers {
                            self.finish_block(direction, now, out);
                        }
                    }
                    // A CONTINUATION whose HEADERS we never saw: its block cannot be decoded,
                    // and the insertions it made are unknown.
                    _ => self.lose_header_state(direction),
                }
            }
            Frame::RstStream {
                stream_id,
                error_code,
            } => {
                if self.streams.contains_key(&stream_id) {
                    let reason = if self.client_direction == Some(direction) {
                        EndReason::ResetByClient(error_code)
                    } else {
                        EndReason::ResetByServer(error_code)
                    };
                    self.complete(stream_id, reason, now, out);
                }
            }
            Frame::Settings {
                ack: false,
                settings,
            } => {
                // The sender's limits apply to what its peer sends: the opposite direction.
                let other = opposite(direction) as usize;
                for setting in settings {
                    match setting {
                        Setting::HeaderTableSize(size) => {
                            self.halves[other].decoder.set_protocol_max(size as usize)
                        }
                        Setting::MaxFrameSize(size) => self.max_frame_size[other] = Some(size),
                        _ => {}
                    }
                }
            }
            Frame::GoAway { last_stream_id, .. } => {
                // Sent by the server: client streams above last_stream_id were not processed.
                if self.client_direction == Some(opposite(direction)) {
                    let mut refused: Vec<u32> = self
                        .streams
                        .keys()
                        .copied()
                        .filter(|&id| id > last_stream_id)
                        .collect();
                    refused.sort_unstable();
                    for stream_id in refused {
                        self.complete(stream_id, EndReason::GoAway, now, out);
                    }
                }
            }
            Frame::Settings { ack: true, .. }
            | Frame::Ping { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Priority { .. }
            | Frame::Unknown { .. } => {}
        }
    }

    fn start_block(
        &mut self,
        direction: Direction,
        stream_id: u32,
        push_promise: bool,
        end_stream: bool,
        started_ns: u64,
        fragment: &[u8],
    ) {
        let lost = fragment.len() > self.limits.max_header_block;
        if lost {
            self.stats.header_blocks_too_large += 1;
        }
        let half = &mut self.halves[direction as usize];
        half.block.clear();
        if !lost {
            half.block.extend_from_slice(fragment);
        }
        half.pending = Some(PendingBlock {
            stream_id,
            push_promise,
            end_stream,
            started_ns,
            lost,
        });
    }

    fn finish_block(&mut self, direction: Direction, now: u64, out: &mut Vec<CallRecord>) {
        let half = &mut self.halves[direction as usize];
        let Some(block) = half.pending.take() else {
            return;
        };
        let meaning = if block.lost {
            half.decoder.lose_sync();
            None
        } else {
            match half.decoder.decode_block(&half.block, &mut half.fields) {
                Ok(Decoded::Repeat { serial, fields }) => {
                    Some(half.meanings.of_repeat(serial, fields))
                }
                Ok(Decoded::Fresh) => Some(Rc::new(BlockMeaning::of(&half.fields))),
                Err(err) => {
                    log::debug!("conn {:#x}: HPACK error: {err}", self.facts.conn_id);
                    self.stats.hpack_errors += 1;
                    None
                }
            }
        };
        half.fields.clear();
        // Emptied for the next block; freed if an unusually large block grew it.
        half.block.clear();
        if half.block.capacity() > KEPT_BLOCK_CAPACITY {
            half.block = Vec::new();
        }
        if block.push_promise {
            return;
        }
        match meaning {
            Some(meaning) => self.on_header_block(direction, &block, &meaning, now, out),
            None => self.on_lost_block(direction, block.stream_id, block.end_stream, now, out),
        }
    }

    fn on_header_block_lost(
        &mut self,
        direction: Direction,
        header: FrameHeader,
        now: u64,
        out: &mut Vec<CallRecord>,
    ) {
        self.stats.header_blocks_lost += 1;
        let half = &mut self.halves[direction as usize];
        half.decoder.lose_sync();
        match header.kind {
            Kind::Headers => {
                half.pending = None;
                let end_stream = header.flags & crate::http2::frame::flags::END_STREAM != 0;
                self.on_lost_block(direction, header.stream_id, end_stream, now, out);
            }
            Kind::Continuation => {
                if let Some(pending) = &mut half.pending {
                    pending.lost = true;
                    half.block = Vec::new();
                }
                if header.flags & crate::http2::frame::flags::END_HEADERS != 0 {
                    self.finish_block(direction, now, out);
                }
            }
            _ => half.pending = None,
        }
    }

    /// A HEADERS frame was seen but its block could not be decoded.
    fn on_lost_block(
        &mut self,
        direction: Direction,
        stream_id: u32,
        end_stream: bool,
        now: u64,
        out: &mut Vec<CallRecord>,
    ) {
        match self.client_direction {
            // A request whose headers are unknown: still a call, without a method.
            Some(client) if client == direction && !self.streams.contains_key(&stream_id) => {
                self.open_stream(
                    stream_id,
                    StreamState {
                        start_ns: now,
                        ..StreamState::default()
                    },
                );
            }
            Some(client) if client == direction => {}
            Some(_) => {
                if let Some(stream) = self.streams.get_mut(&stream_id) {
                    stream.response_had_unknown_fields = true;
                    if !stream.response_headers_seen {
                        stream.response_headers_seen = true;
                        stream.first_response_header_ns = Some(now);
                    }
                    if end_stream {
                        self.complete(stream_id, EndReason::FinalHeadersLost, now, out);
                    }
                }
            }
            None => {}
        }
    }

    fn on_header_block(
        &mut self,
        direction: Direction,
        block: &PendingBlock,
        meaning: &BlockMeaning,
        now: u64,
        out: &mut Vec<CallRecord>,
    ) {
        if self.client_direction.is_none() {
            if meaning.has_request_pseudo_headers {
                self.client_direction = Some(direction);
            } else if meaning.has_status {
                self.client_direction = Some(opposite(direction));
            }
        }
        let Some(client) = self.client_direction else {
            return; // Cannot tell requests from responses yet.
        };
        let stream_id = block.stream_id;
        if client == direction {
            if self.streams.contains_key(&stream_id) {
                return; // Client trailers: gRPC does not use them.
            }
            match &meaning.request {
                Some(request) => self.open_stream(
                    stream_id,
                    StreamState {
                        start_ns: block.started_ns,
                        request_headers: Some(Rc::clone(request)),
                        ..StreamState::default()
                    },
                ),
                None => self.stats.non_grpc_streams += 1,
            }
            return;
        }
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            if self
                .first_request_stream
                .is_none_or(|first| stream_id < first)
            {
                self.stats.streams_joined_mid_call += 1;
            }
            return;
        };
        let first = !stream.response_headers_seen;
        if first {
            stream.response_headers_seen = true;
            stream.first_response_header_ns = Some(now);
        }
        let response = &meaning.response;
        stream.response_had_unknown_fields |= response.had_unknown_fields;
        if meaning.has_status {
            stream.http_status = response.http_status;
        }
        if response.grpc_status.is_some() {
            stream.grpc_status = response.grpc_status;
        }
        if response.grpc_message.is_some() {
            stream.grpc_message.clone_from(&response.grpc_message);
        }
        if block.end_stream {
            let reason = if first {
                EndReason::TrailersOnly
            } else {
                EndReason::Trailers
            };
            self.complete(stream_id, reason, now, out);
        }
    }

    fn open_stream(&mut self, stream_id: u32, stream: StreamState) {
        self.first_request_stream.get_or_insert(stream_id);
        if self.streams.len() >= self.limits.max_open_streams {
            self.stats.streams_over_limit += 1;
            return;
        }
        self.streams.insert(stream_id, stream);
    }

    /// Header state of `direction` is no longer trustworthy.
    fn lose_header_state(&mut self, direction: Direction) {
        let half = &mut self.halves[direction as usize];
        half.pending = None;
        half.decoder.lose_sync();
    }

    fn complete(
        &mut self,
        stream_id: u32,
        reason: EndReason,
        end_ns: u64,
        out: &mut Vec<CallRecord>,
    ) {
        let Some(stream) = self.streams.remove(&stream_id) else {
            return;
        };
        let code = match reason {
            EndReason::Trailers | EndReason::TrailersOnly => {
                match (stream.grpc_status, stream.http_status) {
                    (Some(status), _) => Some(Code(status)),
                    // Without grpc-status, a client derives the code from the HTTP status, unless
                    // the status may sit in a field we could not decode.
                    (None, _) if stream.response_had_unknown_fields => None,
                    (None, Some(http)) => Some(Code::from_http_status(http)),
                    (None, None) => Some(Code::UNKNOWN),
                }
            }
            EndReason::EndStreamWithoutTrailers => Some(
                stream
                    .http_status
                    .map_or(Code::UNKNOWN, Code::from_http_status),
            ),
            EndReason::ResetByClient(ErrorCode::CANCEL) => {
                let elapsed = Duration::from_nanos(end_ns.saturating_sub(stream.start_ns));
                let timeout = stream
                    .request_headers
                    .as_ref()
                    .and_then(|headers| headers.timeout);
                Some(if deadline_passed(timeout, elapsed) {
                    Code::DEADLINE_EXCEEDED
                } else {
                    Code::CANCELLED
                })
            }
            EndReason::ResetByClient(error) | EndReason::ResetByServer(error) => {
                Some(Code::from_reset(error))
            }
            EndReason::GoAway | EndReason::ConnectionClosed => Some(Code::UNAVAILABLE),
            EndReason::FinalHeadersLost => None,
            // Its process never learnt an outcome.
            EndReason::ProcessExited => None,
        };
        let reset = match reason {
            EndReason::ResetByClient(error) | EndReason::ResetByServer(error) => Some(error),
            _ => None,
        };
        self.stats.calls += 1;
        self.stats.calls_without_method += u64::from(
            stream
                .request_headers
                .as_ref()
                .is_none_or(|headers| headers.path.is_none()),
        );
        if reason == EndReason::ProcessExited {
            self.stats.calls_cut_by_exit += 1;
        } else {
            self.stats.calls_without_status += u64::from(code.is_none());
        }
        out.push(CallRecord {
            connection: Arc::clone(&self.facts),
            side: if self.client_direction == Some(Direction::Egress) {
                Side::Client
            } else {
                Side::Server
            },
            stream_id,
            request_headers: stream.request_headers,
            http_status: stream.http_status,
            grpc_status: stream.grpc_status,
            grpc_message: stream.grpc_message,
            code,
            reset,
            end_reason: reason,
            start_ns: stream.start_ns,
            end_ns,
            first_response_header_ns: stream.first_response_header_ns,
            request: stream.request.stats,
            response: stream.response.stats,
        });
    }
}

/// A client cancels with RST_STREAM(CANCEL) when its deadline fires. Its timer starts before
/// the request is written (tonic starts it before its connection task even runs), ours when the
/// write returns, so the reset can come a few milliseconds "early" by our clock.
fn deadline_passed(timeout: Option<Duration>, elapsed: Duration) -> bool {
    timeout.is_some_and(|timeout| elapsed + Duration::from_millis(5).max(timeout / 20) >= timeout)
}
