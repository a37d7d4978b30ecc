//! Follows every stream of one connection, from its two ordered byte streams, to a
//! [`CallRecord`] per gRPC call. This file dispatches: frames come from each direction's
//! [`FrameReader`], header blocks from [`HeaderBlocks`], call state lives in [`Streams`], and
//! the status rules in [`outcome`](super::outcome).

use std::{cell::RefCell, collections::VecDeque, rc::Rc, sync::Arc};

use super::{
    call::{CallRecord, ConnectionFacts, EndReason, Provenance, Side},
    earlier_entries::{EarlierEntries, Field, Recall},
    frame_position::{FramePosition, MessageProgress},
    header_block::{HeaderBlock, HeaderBlocks},
    headers::{BlockMeaning, EarlierField},
    limits::Limits,
    outcome,
    stats::TrackerStats,
    status::Code,
    streams::{StreamState, Streams},
};
use crate::{
    hpack::EntryId,
    http2::{DataPiece, Frame, FrameReader, OtherProtocol, ReaderEvent, Setting},
    stream::{Chunk, Direction, Endpoint, Payload},
};

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
    /// Indexed by [`Direction`].
    blocks: [HeaderBlocks; 2],
    /// Indexed by [`Direction`]: what its blocks told of entries from before attach.
    earlier: [EarlierEntries; 2],
    /// Where the values of entries from before attach are looked up, if anywhere.
    recall: Option<Rc<RefCell<dyn Recall>>>,
    /// Ended calls whose method or status is an entry from before attach, not found yet: held
    /// back a little (see [`HeldCall`]), by what they wait on.
    held: Vec<HeldGroup>,
    /// When held calls were last looked up.
    last_lookup_ns: u64,
    /// The direction the client writes in, once known (preface or request headers).
    client_direction: Option<Direction>,
    streams: Streams,
    /// The highest client-initiated stream whose request was seen (see [`Self::saw_request`]).
    last_request_stream: Option<u32>,
    /// Whether requests may be waiting for a stream slot (see [`StreamSlots`]).
    slots: StreamSlots,
    stats: TrackerStats,
    /// Per [`Direction`]: a SETTINGS_MAX_FRAME_SIZE that the opposite direction's SETTINGS
    /// frame set for this direction's reader, applied once the running reader has returned.
    max_frame_size: [Option<u32>; 2],
}

/// An ended call whose method or status is an entry from before attach that the process's own
/// tables have not given yet. A client's decoder reads a response after the tracer sees it
/// arrive, and a copy of its memory is taken only so often: the lookup is tried again when the
/// client next writes and as time passes, and the record is let go with what is known after
/// [`HOLD_NS`] or when the connection closes.
struct HeldCall {
    record: CallRecord,
    /// The final block, whose `grpc-status` is to be looked up, and the direction it came in.
    status_lookup: Option<(Rc<BlockMeaning>, Direction)>,
}

/// Held calls that wait on the same lookups, in the order they ended. A busy client holds
/// hundreds of calls while a lookup waits for a copy of its memory, mostly waiting on the same
/// entries: a round of lookups asks each group once, of its oldest call, whose answers hold for
/// all of them.
struct HeldGroup {
    waits_on: Lookups,
    calls: VecDeque<HeldCall>,
}

/// What a held call waits to have looked up: its `:path` entry (one of these candidates), and
/// its final block's fields from entries inserted before attach, in their direction.
struct Lookups {
    path: Option<Box<[EntryId]>>,
    status: Option<(Direction, Box<[EarlierField]>)>,
}

impl Lookups {
    fn of(call: &HeldCall) -> Lookups {
        Lookups {
            path: path_lookup(&call.record).map(Box::from),
            status: status_lookup(call).map(|(direction, fields)| (direction, Box::from(fields))),
        }
    }

    fn awaited_by(&self, call: &HeldCall) -> bool {
        self.path.as_deref() == path_lookup(&call.record)
            && self
                .status
                .as_ref()
                .map(|(direction, fields)| (*direction, &**fields))
                == status_lookup(call)
    }
}

/// The `:path` entry a call's method is to be looked up as: one of these.
fn path_lookup(record: &CallRecord) -> Option<&[EntryId]> {
    record
        .request_headers
        .as_ref()
        .filter(|request| request.path.is_none() && !request.path_candidates.is_empty())
        .map(|request| &*request.path_candidates)
}

fn status_lookup(call: &HeldCall) -> Option<(Direction, &[EarlierField])> {
    let (final_block, direction) = call.status_lookup.as_ref()?;
    Some((*direction, &final_block.earlier))
}

/// Least time between two lookups for held calls.
const LOOK_AGAIN_NS: u64 = 10_000_000;

/// Longest a record waits for its method or status to be looked up.
const HOLD_NS: u64 = 500_000_000;

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
        let blocks = || HeaderBlocks::new(from_start, limits.max_header_block);
        ConnectionTracker {
            readers: [reader(), reader()],
            next_offset: [None; 2],
            calls: CallAssembly {
                facts: Arc::new(facts),
                blocks: [blocks(), blocks()],
                earlier: Default::default(),
                recall: None,
                held: Vec::new(),
                last_lookup_ns: 0,
                client_direction: None,
                streams: Streams::new(limits.max_open_streams),
                last_request_stream: None,
                slots: StreamSlots::default(),
                stats: TrackerStats::default(),
                max_frame_size: [None; 2],
            },
        }
    }

    pub fn stats(&self) -> &TrackerStats {
        &self.calls.stats
    }

    /// Entries from before attach (joined mid-flight, or after a lost header block) are to be
    /// looked up in `recall`.
    pub fn recall_from(&mut self, recall: Rc<RefCell<dyn Recall>>) {
        self.calls.recall = Some(recall);
    }

    /// The connection's addresses became known (a TLS session tied to its socket late): the
    /// calls that end from now on carry them.
    pub fn located(&mut self, local: Option<Endpoint>, peer: Option<Endpoint>) {
        let facts = &self.calls.facts;
        let mut located =
            ConnectionFacts::new(facts.conn_id, facts.pid, local, peer, facts.seen_from_start);
        located.source = facts.source;
        self.calls.facts = Arc::new(located);
    }

    pub fn facts(&self) -> &ConnectionFacts {
        &self.calls.facts
    }

    /// Whether either direction's frames are being followed.
    pub fn in_sync(&self) -> bool {
        self.readers.iter().any(FrameReader::in_sync)
    }

    /// Calls currently in flight.
    pub fn open_calls(&self) -> usize {
        self.calls.streams.len()
    }

    /// Lets go of held calls (see [`HeldCall`]) whose status was found or whose time is up at
    /// `now_ns`, or all of them.
    pub fn release_held(&mut self, now_ns: u64, all: bool, out: &mut Vec<CallRecord>) {
        if !self.calls.held.is_empty() {
            self.calls.release_held(now_ns, all, out);
        }
    }

    /// Feeds the next chunk of one direction; completed calls are appended to `out`.
    pub fn on_chunk(&mut self, direction: Direction, chunk: &Chunk<'_>, out: &mut Vec<CallRecord>) {
        let now = chunk.timestamp_ns;
        // The client writing again has read what came before: held lookups may succeed now.
        if !self.calls.held.is_empty() && self.calls.client_direction == Some(direction) {
            self.calls.release_held(now, false, out);
        }
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

    /// Where one direction stands, if everything fed so far ends exactly at a frame boundary.
    /// `None` when the reader is mid-frame or out of sync. Streams whose message boundaries are
    /// unknown (joined mid-message) are left out: a capture source that resumes from this
    /// position may then misread their DATA, which only affects counts already marked inexact.
    pub fn frame_position(&self, direction: Direction) -> Option<FramePosition> {
        let offset = self.next_offset[direction as usize]?;
        if !self.readers[direction as usize].at_frame_boundary() {
            return None;
        }
        let client = self.calls.client_direction?;
        let mut mid_message = Vec::new();
        for (stream_id, stream) in self.calls.streams.iter() {
            let counter = if client == direction {
                &stream.request
            } else {
                &stream.response
            };
            match counter.resume_point() {
                None | Some((0, 0)) => {}
                Some((prefix_seen, value)) => mid_message.push(MessageProgress {
                    stream_id,
                    prefix_seen,
                    value,
                }),
            }
        }
        Some(FramePosition {
            offset,
            mid_message,
        })
    }

    /// The connection ended (`reason`: closed, or its process exited): every call still open
    /// ends here.
    pub fn on_close(&mut self, timestamp_ns: u64, reason: EndReason, out: &mut Vec<CallRecord>) {
        let calls = &mut self.calls;
        for stream_id in calls.streams.ids_where(|_| true) {
            calls.complete(stream_id, reason, timestamp_ns, out);
        }
        // Not looked up again: the process freed the connection's tables, and another
        // connection's, alike since attach, could answer for them.
        for group in std::mem::take(&mut calls.held) {
            for held in group.calls {
                calls.emit(held.record, out);
            }
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
            ReaderEvent::NotHttp2(what) => {
                // The client's side says best what it is (a TLS ClientHello, an HTTP request).
                if self
                    .stats
                    .not_http2
                    .is_none_or(|seen| seen == OtherProtocol::Other)
                {
                    self.stats.not_http2 = Some(what);
                }
            }
            ReaderEvent::SyncLost => {
                self.stats.sync_losses += 1;
                self.blocks[direction as usize].lose_state();
                // Any frame of any stream may have gone by unseen: DATA, and the ones that end
                // a call.
                let client = self.client_direction;
                for stream in self.streams.states_mut() {
                    stream.unseen_since_gap.get_or_insert(now);
                    match client {
                        Some(client) => stream.messages(client == direction).lose_sync(),
                        None => {
                            stream.request.lose_sync();
                            stream.response.lose_sync();
                        }
                    }
                }
            }
            ReaderEvent::Resynced { skipped } => self.stats.skipped_bytes += skipped,
            ReaderEvent::HeaderBlockLost { header } => {
                let conn_id = self.facts.conn_id;
                let blocks = &mut self.blocks[direction as usize];
                if let Some(block) = blocks.lost_in_gap(header, now, conn_id, &mut self.stats) {
                    self.on_block(direction, block, now, out);
                }
            }
            ReaderEvent::Data { stream_id, piece } => {
                let is_request = self.client_direction == Some(direction);
                if let Some(stream) = self.streams.get_mut(stream_id) {
                    stream.unseen_since_gap = None;
                    let counter = stream.messages(is_request);
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
                if end_stream && is_response && self.streams.contains(stream_id) {
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
        let conn_id = self.facts.conn_id;
        let blocks = &mut self.blocks[direction as usize];
        if blocks.is_pending() && !matches!(frame, Frame::Continuation { .. }) {
            // A header block must be followed by its CONTINUATIONs (RFC 9113 §6.2).
            blocks.lose_state();
        }
        let finished = match frame {
            Frame::Headers {
                stream_id,
                end_stream,
                end_headers,
                fragment,
            } => {
                blocks.start(
                    stream_id,
                    false,
                    end_stream,
                    started_ns,
                    fragment,
                    &mut self.stats,
                );
                end_headers.then(|| blocks.finish(conn_id, &mut self.stats))
            }
            Frame::PushPromise {
                stream_id,
                end_headers,
                fragment,
                ..
            } => {
                blocks.start(
                    stream_id,
                    true,
                    false,
                    started_ns,
                    fragment,
                    &mut self.stats,
                );
                end_headers.then(|| blocks.finish(conn_id, &mut self.stats))
            }
            Frame::Continuation {
                stream_id,
                end_headers,
                fragment,
            } => {
                let continued = blocks.continue_block(stream_id, fragment, &mut self.stats);
                (continued && end_headers).then(|| blocks.finish(conn_id, &mut self.stats))
            }
            Frame::RstStream {
                stream_id,
                error_code,
            } => {
                if self.streams.contains(stream_id) {
                    let reason = if self.client_direction == Some(direction) {
                        EndReason::ResetByClient(error_code)
                    } else {
                        EndReason::ResetByServer(error_code)
                    };
                    self.complete(stream_id, reason, now, out);
                }
                None
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
                            self.blocks[other].set_table_size(size as usize)
                        }
                        Setting::MaxConcurrentStreams(max) => {
                            self.slots.max_set_by[direction as usize] = Some(max)
                        }
                        Setting::MaxFrameSize(size) => self.max_frame_size[other] = Some(size),
                        _ => {}
                    }
                }
                None
            }
            Frame::GoAway { last_stream_id, .. } => {
                // Sent by the server: client streams above last_stream_id were not processed.
                if self.client_direction == Some(opposite(direction)) {
                    for stream_id in self.streams.ids_where(|id| id > last_stream_id) {
                        self.complete(stream_id, EndReason::GoAway, now, out);
                    }
                }
                None
            }
            Frame::Settings { ack: true, .. }
            | Frame::Ping { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Priority { .. }
            | Frame::Unknown { .. } => None,
        };
        if let Some(Some(block)) = finished {
            self.on_block(direction, block, now, out);
        }
    }

    fn on_block(
        &mut self,
        direction: Direction,
        block: HeaderBlock,
        now: u64,
        out: &mut Vec<CallRecord>,
    ) {
        match &block.meaning {
            Some(meaning) => {
                let meaning = Rc::clone(meaning);
                self.on_header_block(direction, &block, &meaning, now, out);
            }
            None => self.on_lost_block(direction, block.stream_id, block.end_stream, now, out),
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
            Some(client) if client == direction && !self.streams.contains(stream_id) => {
                self.saw_request(stream_id);
                let stream = StreamState {
                    start_ns: now,
                    ..StreamState::default()
                };
                self.open_stream(stream_id, stream);
            }
            Some(client) if client == direction => {}
            Some(_) => {
                if let Some(stream) = self.streams.get_mut(stream_id) {
                    stream.response_had_unknown_fields = true;
                    stream.saw_response_headers(now);
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
        block: &HeaderBlock,
        meaning: &Rc<BlockMeaning>,
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
            if self.streams.contains(stream_id) {
                return; // Client trailers: gRPC does not use them.
            }
            self.saw_request(stream_id);
            self.earlier[direction as usize].request(meaning);
            match &meaning.request {
                Some(request) => {
                    let stream = StreamState {
                        start_ns: block.started_ns,
                        request_headers: Some(Rc::clone(request)),
                        ..StreamState::default()
                    };
                    self.open_stream(stream_id, stream);
                }
                None => self.stats.non_grpc_streams += 1,
            }
            return;
        }
        let Some(stream) = self.streams.get_mut(stream_id) else {
            if self.streams.opened_before_watching(stream_id) {
                self.stats.streams_joined_mid_call += 1;
            }
            return;
        };
        let first = stream.saw_response_headers(now);
        let response = &meaning.response;
        stream.response_had_unknown_fields |= response.had_unknown_fields;
        if meaning.has_status {
            stream.http_status = response.http_status;
        }
        if response.grpc_status.is_some() {
            stream.grpc_status = response.grpc_status;
            stream.status_provenance = Provenance::Decoded;
        }
        let earlier = &mut self.earlier[direction as usize];
        if !block.end_stream {
            earlier.response_headers(meaning);
        } else if let Some(status) = earlier.final_block(meaning) {
            stream.grpc_status = Some(status);
            stream.status_provenance = Provenance::NameFromGrammar;
        } else if stream.grpc_status.is_none()
            && !meaning.earlier.is_empty()
            && self.recall.is_some()
        {
            stream.status_lookup = Some((Rc::clone(meaning), direction));
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

    /// A request opened `stream_id`. A client opens its streams with consecutive odd ids
    /// (RFC 9113 §5.1.1 requires them to rise; gRPC clients take the next one each time), so the
    /// ids skipped since the last request seen belong to calls whose every frame fell into a
    /// capture gap: they are counted as lost.
    fn saw_request(&mut self, stream_id: u32) {
        if stream_id.is_multiple_of(2) {
            return;
        }
        self.streams.saw_request(stream_id);
        match self.last_request_stream {
            Some(last) if stream_id > last => {
                self.stats.calls_lost += u64::from((stream_id - last) / 2 - 1);
                self.last_request_stream = Some(stream_id);
            }
            Some(_) => {}
            // The first request seen: older streams predate the tracer, not a gap.
            None => self.last_request_stream = Some(stream_id),
        }
    }

    /// A request opens `stream_id`.
    fn open_stream(&mut self, stream_id: u32, mut stream: StreamState) {
        let max = self.slots.max(self.client_direction);
        let start_ns = stream.start_ns;
        stream.queued_since = self.slots.take_freed(start_ns);
        self.streams.open(stream_id, stream, &mut self.stats);
        if max.is_some_and(|max| self.streams.len() >= max as usize) {
            self.slots.full_since.get_or_insert(start_ns);
        }
    }

    /// A call whose `:path` referred to an entry from before attach: the path, if the
    /// process's own table gives it. Whether there is still something to look up.
    fn recall_path(&mut self, record: &mut CallRecord) -> bool {
        if path_lookup(record).is_none() {
            return false;
        }
        let (Some(client), Some(recall), Some(request)) = (
            self.client_direction,
            &self.recall,
            record.request_headers.as_mut(),
        ) else {
            return false;
        };
        let candidates = request.path_candidates.iter().map(|&entry| (entry, None));
        let decoder = self.blocks[client as usize].decoder();
        let path = self.earlier[client as usize].recall(
            Field::Path,
            candidates,
            decoder,
            &mut *recall.borrow_mut(),
            &self.facts,
        );
        let Some(path) = path else {
            return true;
        };
        Rc::make_mut(request).path = Some(path);
        record.method_provenance = Provenance::ProcessMemory;
        false
    }

    /// The call on `stream_id` ended: its record goes to `out`.
    fn complete(
        &mut self,
        stream_id: u32,
        reason: EndReason,
        end_ns: u64,
        out: &mut Vec<CallRecord>,
    ) {
        let max = self.slots.max(self.client_direction);
        let was_full = max.is_some_and(|max| self.streams.len() >= max as usize);
        let Some(mut stream) = self.streams.remove(stream_id) else {
            return;
        };
        if was_full {
            self.slots.freed(end_ns);
        }
        // Ended by what ends every call still open, but bytes went uncaptured since anything
        // of it was seen: it may have ended in the gap, with an outcome we did not see.
        let (reason, end_ns) = match (reason, stream.unseen_since_gap) {
            (
                EndReason::ConnectionClosed | EndReason::GoAway | EndReason::ProcessExited,
                Some(gap_ns),
            ) => (EndReason::CaptureGap, gap_ns),
            _ => (reason, end_ns),
        };
        let outcome = outcome::outcome(&stream, reason, end_ns);
        let code = outcome.code();
        let reset = match reason {
            EndReason::ResetByClient(error) | EndReason::ResetByServer(error) => Some(error),
            _ => None,
        };
        // Only while no grpc-status was decoded after the block that asked for it.
        let status_lookup = stream
            .status_lookup
            .take()
            .filter(|_| stream.grpc_status.is_none());
        let record = CallRecord {
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
            status_provenance: stream.status_provenance,
            method_provenance: Provenance::Decoded,
            grpc_message: stream.grpc_message,
            code,
            code_candidates: outcome.candidates(),
            reset,
            end_reason: reason,
            start_ns: stream.start_ns,
            end_ns,
            first_response_header_ns: stream.first_response_header_ns,
            request: stream.request.stats,
            response: stream.response.stats,
        };
        let mut held = HeldCall {
            record,
            status_lookup,
        };
        let answerable = self
            .recall
            .as_ref()
            .is_some_and(|recall| recall.borrow_mut().can_answer(&self.facts));
        if self.look_up(&mut held) && answerable {
            self.hold(held);
        } else {
            self.emit(held.record, out);
        }
    }

    /// Counts a finished call and hands it on.
    fn emit(&mut self, record: CallRecord, out: &mut Vec<CallRecord>) {
        self.stats.calls += 1;
        if record.method_inferred_from() == Some(Provenance::ProcessMemory) {
            self.stats.methods_from_memory += 1;
        }
        match record.status_inferred_from() {
            Some(Provenance::ProcessMemory) => self.stats.statuses_from_memory += 1,
            Some(Provenance::NameFromGrammar) => self.stats.statuses_by_grammar += 1,
            Some(Provenance::Decoded) | None => {}
        }
        self.stats.calls_without_method += u64::from(record.path().is_none());
        if record.end_reason == EndReason::ProcessExited {
            self.stats.calls_cut_by_exit += 1;
        } else {
            self.stats.calls_without_status += u64::from(record.code.is_none());
        }
        out.push(record);
    }

    /// Looks up what a call's method or status refers to in the process's own tables (see
    /// [`HeldCall`]); whether something is still to be found.
    fn look_up(&mut self, held: &mut HeldCall) -> bool {
        let path_pending = self.recall_path(&mut held.record);
        let status_pending = match &held.status_lookup {
            Some((final_block, direction)) => {
                let found = self.recall_status(&mut held.record, final_block, *direction);
                if found {
                    held.status_lookup = None;
                }
                !found
            }
            None => false,
        };
        path_pending || status_pending
    }

    /// Holds `call` with those that wait on the same lookups.
    fn hold(&mut self, call: HeldCall) {
        match self
            .held
            .iter_mut()
            .find(|group| group.waits_on.awaited_by(&call))
        {
            Some(group) => group.calls.push_back(call),
            None => self.held.push(HeldGroup {
                waits_on: Lookups::of(&call),
                calls: VecDeque::from([call]),
            }),
        }
    }

    /// A call whose final block's `grpc-status` may be an entry from before attach: its status,
    /// if the process's own table gives it. Whether it was found.
    fn recall_status(
        &mut self,
        record: &mut CallRecord,
        final_block: &BlockMeaning,
        direction: Direction,
    ) -> bool {
        let Some(recall) = &self.recall else {
            return false;
        };
        let index = direction as usize;
        let fields = final_block
            .earlier
            .iter()
            .map(|field| (field.entry, field.value.clone()));
        let status = self.earlier[index]
            .recall(
                Field::GrpcStatus,
                fields,
                self.blocks[index].decoder(),
                &mut *recall.borrow_mut(),
                &self.facts,
            )
            .and_then(|value| value.parse().ok());
        let Some(status) = status else {
            return false;
        };
        record.grpc_status = Some(status);
        record.status_provenance = Provenance::ProcessMemory;
        // What ended the call decided its code only because grpc-status was unknown.
        if matches!(
            record.end_reason,
            EndReason::Trailers | EndReason::TrailersOnly
        ) {
            record.code = Some(Code(status));
            record.code_candidates = &[];
        }
        true
    }

    fn release_held(&mut self, now: u64, all: bool, out: &mut Vec<CallRecord>) {
        let expired = |call: &HeldCall| now.saturating_sub(call.record.end_ns) >= HOLD_NS;
        // Looked up again at most so often: a client writes far more often than a copy of its
        // memory can change.
        let look = all || now.saturating_sub(self.last_lookup_ns) >= LOOK_AGAIN_NS;
        if look {
            self.last_lookup_ns = now;
        }
        for mut group in std::mem::take(&mut self.held) {
            let mut answered = false;
            if look && let Some(oldest) = group.calls.front_mut() {
                self.look_up(oldest);
                answered = !group.waits_on.awaited_by(oldest);
            }
            if answered {
                // The others are answered from what the oldest one's lookup learned.
                for mut call in group.calls {
                    if !self.look_up(&mut call) || all || expired(&call) {
                        self.emit(call.record, out);
                    } else {
                        self.hold(call);
                    }
                }
                continue;
            }
            while let Some(call) = group.calls.pop_front_if(|call| all || expired(call)) {
                self.emit(call.record, out);
            }
            if !group.calls.is_empty() {
                self.held.push(group);
            }
        }
    }
}

/// Whether a request may have waited for a stream slot: the server's
/// SETTINGS_MAX_CONCURRENT_STREAMS bounds the streams a client has open (RFC 9113 §5.1.2), and
/// a client keeps a request that would go over it until a stream ends. Such a request goes out
/// right after a stream of a full connection ended; it may have started any time since the
/// connection became full.
#[derive(Default)]
struct StreamSlots {
    /// Per [`Direction`]: SETTINGS_MAX_CONCURRENT_STREAMS as that direction's sender set it.
    max_set_by: [Option<u32>; 2],
    /// Since when the client's streams have filled the server's limit.
    full_since: Option<u64>,
    /// When a stream of the full connection last ended, and since when it had been full.
    freed: Option<(u64, u64)>,
}

/// How soon after a slot frees a waiting request goes out, at most: a client writes it at
/// once, but the write can wait for the CPU.
const SLOT_TAKEN_WITHIN_NS: u64 = 20_000_000;

impl StreamSlots {
    /// The limit on the client's streams: what the server (the other side) set.
    fn max(&self, client: Option<Direction>) -> Option<u32> {
        self.max_set_by[opposite(client?) as usize]
    }

    /// A stream of the full connection ended at `now`.
    fn freed(&mut self, now: u64) {
        if let Some(full_since) = self.full_since.take() {
            self.freed = Some((now, full_since));
        }
    }

    /// A request's headers went out at `now`: if that was as a slot freed, it may have waited
    /// since the connection became full (returned). Each freed slot takes one request.
    fn take_freed(&mut self, now: u64) -> Option<u64> {
        let (freed_at, full_since) = self.freed.take()?;
        (now.saturating_sub(freed_at) <= SLOT_TAKEN_WITHIN_NS).then_some(full_since)
    }
}
