//! Call reconstruction from hand-built connections: header blocks come from an independent
//! HPACK encoder (httlib-hpack, with indexing and Huffman), frames are laid out by hand so edge cases (CONTINUATION, padding, resets,
//! gaps, late join) can be placed exactly.

use std::{cell::RefCell, rc::Rc, time::Duration};

use httlib_hpack::Encoder;

use super::*;
use crate::{
    http2::{CLIENT_PREFACE, frame::flags, reader::tests::frame},
    stream::{Chunk, Direction, Payload},
};

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;

/// Both directions of a connection as a sequence of writes, each at its own time.
struct Wire {
    client: Encoder<'static>,
    server: Encoder<'static>,
    writes: Vec<(Direction, Vec<u8>, u64)>,
    clock: u64,
}

impl Wire {
    /// The traced process is the client: its writes are egress.
    fn new() -> Wire {
        let mut wire = Wire {
            client: Encoder::default(),
            server: Encoder::default(),
            writes: Vec::new(),
            clock: 0,
        };
        let mut start = CLIENT_PREFACE.to_vec();
        start.extend(frame(SETTINGS, 0, 0, &[]));
        wire.write(Direction::Egress, start);
        wire.write(Direction::Ingress, frame(SETTINGS, 0, 0, &[]));
        wire
    }

    fn write(&mut self, direction: Direction, bytes: Vec<u8>) -> u64 {
        self.clock += 1_000_000;
        self.writes.push((direction, bytes, self.clock));
        self.clock
    }

    /// Encodes like a typical endpoint: Huffman, incremental indexing, table references
    /// whenever a field (or its name) is already in a table.
    fn block(encoder: &mut Encoder<'static>, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            let flags = Encoder::HUFFMAN_NAME
                | Encoder::HUFFMAN_VALUE
                | Encoder::WITH_INDEXING
                | Encoder::BEST_FORMAT;
            encoder
                .encode(
                    (name.as_bytes().to_vec(), value.as_bytes().to_vec(), flags),
                    &mut out,
                )
                .unwrap();
        }
        out
    }

    fn request_block(&mut self, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut fields = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "svc.local:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ];
        fields.extend_from_slice(extra);
        Wire::block(&mut self.client, &fields)
    }

    /// Request HEADERS in one write; returns its time.
    fn request(&mut self, stream_id: u32, path: &str, extra: &[(&str, &str)]) -> u64 {
        let block = self.request_block(path, extra);
        self.write(
            Direction::Egress,
            frame(HEADERS, flags::END_HEADERS, stream_id, &block),
        )
    }

    fn message(
        &mut self,
        direction: Direction,
        stream_id: u32,
        len: usize,
        end_stream: bool,
    ) -> u64 {
        let mut payload = vec![0];
        payload.extend_from_slice(&(len as u32).to_be_bytes());
        payload.resize(5 + len, 0xab);
        let flags = if end_stream { flags::END_STREAM } else { 0 };
        self.write(direction, frame(DATA, flags, stream_id, &payload))
    }

    fn response_headers(&mut self, stream_id: u32) -> u64 {
        let block = Wire::block(
            &mut self.server,
            &[(":status", "200"), ("content-type", "application/grpc")],
        );
        self.write(
            Direction::Ingress,
            frame(HEADERS, flags::END_HEADERS, stream_id, &block),
        )
    }

    fn trailers(&mut self, stream_id: u32, status: &str, message: Option<&str>) -> u64 {
        let mut fields = vec![("grpc-status", status)];
        fields.extend(message.map(|message| ("grpc-message", message)));
        let block = Wire::block(&mut self.server, &fields);
        self.write(
            Direction::Ingress,
            frame(
                HEADERS,
                flags::END_HEADERS | flags::END_STREAM,
                stream_id,
                &block,
            ),
        )
    }

    fn trailers_only(&mut self, stream_id: u32, status: &str, message: &str) -> u64 {
        let block = Wire::block(
            &mut self.server,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", status),
                ("grpc-message", message),
            ],
        );
        self.write(
            Direction::Ingress,
            frame(
                HEADERS,
                flags::END_HEADERS | flags::END_STREAM,
                stream_id,
                &block,
            ),
        )
    }

    fn unary(&mut self, stream_id: u32, path: &str) -> (u64, u64) {
        let start = self.request(stream_id, path, &[]);
        self.message(Direction::Egress, stream_id, 10, true);
        self.response_headers(stream_id);
        self.message(Direction::Ingress, stream_id, 20, false);
        let end = self.trailers(stream_id, "0", None);
        (start, end)
    }

    /// Feeds every write to a tracker, each cut into pieces of `piece` bytes.
    fn replay_into(
        &self,
        tracker: &mut ConnectionTracker,
        piece: usize,
        out: &mut Vec<CallRecord>,
    ) {
        let mut offsets = [0u64; 2];
        for (direction, bytes, at) in &self.writes {
            for part in bytes.chunks(piece.max(1)) {
                let chunk = Chunk {
                    offset: offsets[*direction as usize],
                    timestamp_ns: *at,
                    payload: Payload::Bytes(part),
                };
                offsets[*direction as usize] += part.len() as u64;
                tracker.on_chunk(*direction, &chunk, out);
            }
        }
    }

    /// Feeds every write to a tracker whole, except the writes in `lost`, which went by
    /// uncaptured: each becomes a gap of its length.
    fn replay_with_gap(
        &self,
        lost: std::ops::Range<usize>,
        tracker: &mut ConnectionTracker,
        out: &mut Vec<CallRecord>,
    ) {
        let mut offsets = [0u64; 2];
        for (index, (direction, bytes, at)) in self.writes.iter().enumerate() {
            let offset = &mut offsets[*direction as usize];
            let payload = if lost.contains(&index) {
                Payload::Gap(bytes.len() as u64)
            } else {
                Payload::Bytes(bytes)
            };
            let chunk = Chunk {
                offset: *offset,
                timestamp_ns: *at,
                payload,
            };
            *offset += bytes.len() as u64;
            tracker.on_chunk(*direction, &chunk, out);
        }
    }

    fn calls(&self, piece: usize) -> (Vec<CallRecord>, TrackerStats) {
        let mut tracker = tracker(true);
        let mut out = Vec::new();
        self.replay_into(&mut tracker, piece, &mut out);
        (out, tracker.stats().clone())
    }
}

fn tracker(seen_from_start: bool) -> ConnectionTracker {
    ConnectionTracker::new(
        ConnectionFacts::new(7, 42, None, None, seen_from_start),
        Limits::default(),
    )
}

fn feed(
    tracker: &mut ConnectionTracker,
    direction: Direction,
    bytes: &[u8],
    at: u64,
    out: &mut Vec<CallRecord>,
) {
    let chunk = Chunk {
        offset: 0,
        timestamp_ns: at,
        payload: Payload::Bytes(bytes),
    };
    tracker.on_chunk(direction, &chunk, out);
}

#[test]
fn unary_ok_call() {
    let mut wire = Wire::new();
    let (start, end) = wire.unary(1, "/helloworld.Greeter/SayHello");
    let (calls, stats) = wire.calls(usize::MAX);
    assert_eq!(calls.len(), 1, "{stats:?}");
    let call = &calls[0];
    assert_eq!(call.name(), "helloworld.Greeter/SayHello");
    assert_eq!(
        call.service_and_method(),
        Some(("helloworld.Greeter", "SayHello"))
    );
    assert_eq!(call.side, Side::Client);
    assert_eq!(
        (call.code, call.grpc_status, call.http_status),
        (Some(Code::OK), Some(0), Some(200))
    );
    assert_eq!(call.end_reason, EndReason::Trailers);
    assert_eq!((call.start_ns, call.end_ns), (start, end));
    assert_eq!((call.request.count, call.request.bytes), (1, 10));
    assert_eq!((call.response.count, call.response.bytes), (1, 20));
    assert_eq!(
        call.time_to_first_response_header(),
        Some(Duration::from_millis(2))
    );
    assert_eq!(
        call.time_to_first_response_message(),
        Some(Duration::from_millis(3))
    );
    assert_eq!(
        call.authority().map(|text| &**text),
        Some("svc.local:50051")
    );
}

#[test]
fn any_chunking_gives_the_same_calls() {
    let mut wire = Wire::new();
    wire.unary(1, "/a.B/C");
    wire.trailers_only(3, "5", "not%20found");
    wire.request(3, "/a.B/D", &[]);
    let (reference, _) = wire.calls(usize::MAX);
    for piece in [1, 2, 3, 5, 9, 10, 17] {
        assert_eq!(wire.calls(piece).0, reference, "pieces of {piece} bytes");
    }
}

#[test]
fn trailers_only_error_with_message() {
    let mut wire = Wire::new();
    wire.request(1, "/shop.Catalog/GetItem", &[]);
    wire.message(Direction::Egress, 1, 3, true);
    wire.trailers_only(1, "5", "item%2042%20not%20found%20%E2%9C%97");
    let (calls, _) = wire.calls(usize::MAX);
    let call = &calls[0];
    assert_eq!(call.code, Some(Code::NOT_FOUND));
    assert_eq!(
        call.grpc_message.as_deref(),
        Some("item 42 not found \u{2717}")
    );
    assert_eq!(call.end_reason, EndReason::TrailersOnly);
    assert_eq!(call.response.count, 0);
}

#[test]
fn status_derived_from_http_status_when_grpc_status_is_missing() {
    let mut wire = Wire::new();
    wire.request(1, "/a.B/C", &[]);
    let block = Wire::block(
        &mut wire.server,
        &[(":status", "503"), ("content-type", "text/plain")],
    );
    wire.write(
        Direction::Ingress,
        frame(HEADERS, flags::END_HEADERS | flags::END_STREAM, 1, &block),
    );
    let (calls, _) = wire.calls(usize::MAX);
    assert_eq!(
        (calls[0].code, calls[0].http_status, calls[0].grpc_status),
        (Some(Code::UNAVAILABLE), Some(503), None)
    );
}

/// A web page fetched over HTTP/2 is not a call, and its response answers a request the
/// tracer saw: counted once, as a non-gRPC stream.
#[test]
fn responses_to_non_grpc_requests_are_not_taken_for_calls_joined_mid_flight() {
    let mut wire = Wire::new();
    let block = Wire::block(
        &mut wire.client,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "localhost"),
        ],
    );
    wire.write(
        Direction::Egress,
        frame(HEADERS, flags::END_HEADERS | flags::END_STREAM, 1, &block),
    );
    let block = Wire::block(
        &mut wire.server,
        &[(":status", "200"), ("content-type", "text/html")],
    );
    wire.write(
        Direction::Ingress,
        frame(HEADERS, flags::END_HEADERS | flags::END_STREAM, 1, &block),
    );
    let (calls, stats) = wire.calls(usize::MAX);
    assert!(calls.is_empty());
    assert_eq!(
        (stats.non_grpc_streams, stats.streams_joined_mid_call),
        (1, 0)
    );
}

#[test]
fn interleaved_concurrent_streams_each_get_their_record() {
    let mut wire = Wire::new();
    let ids = [1u32, 3, 5, 7, 9];
    let mut starts = Vec::new();
    for &id in &ids {
        starts.push(wire.request(id, &format!("/load.Test/Call{id}"), &[]));
    }
    for &id in ids.iter().rev() {
        wire.message(Direction::Egress, id, id as usize, true);
    }
    for &id in &ids {
        wire.response_headers(id);
    }
    for &id in ids.iter().rev() {
        wire.message(Direction::Ingress, id, 100 + id as usize, false);
        wire.message(Direction::Ingress, id, 1, false);
    }
    let mut ends = std::collections::HashMap::new();
    for &id in &ids {
        let status = if id == 5 { "13" } else { "0" };
        ends.insert(id, wire.trailers(id, status, None));
    }
    let (calls, _) = wire.calls(7);
    assert_eq!(calls.len(), ids.len());
    for (index, &id) in ids.iter().enumerate() {
        let call = calls.iter().find(|call| call.stream_id == id).unwrap();
        assert_eq!(
            call.path().map(|text| &**text),
            Some(format!("/load.Test/Call{id}").as_str())
        );
        assert_eq!((call.start_ns, call.end_ns), (starts[index], ends[&id]));
        assert_eq!((call.request.count, call.request.bytes), (1, u64::from(id)));
        assert_eq!(
            (call.response.count, call.response.bytes),
            (2, 101 + u64::from(id))
        );
        assert_eq!(
            call.code,
            Some(if id == 5 { Code::INTERNAL } else { Code::OK })
        );
    }
}

#[test]
fn streaming_calls_count_every_message() {
    let mut wire = Wire::new();
    wire.request(1, "/chat.Room/Talk", &[]);
    for round in 0..4 {
        wire.message(Direction::Egress, 1, 100 + round, round == 3);
        if round == 0 {
            wire.response_headers(1);
        }
        wire.message(Direction::Ingress, 1, 7, false);
        wire.message(Direction::Ingress, 1, 8, false);
    }
    wire.trailers(1, "0", None);
    let (calls, _) = wire.calls(4);
    let call = &calls[0];
    assert_eq!((call.request.count, call.request.bytes), (4, 406));
    assert_eq!((call.response.count, call.response.bytes), (8, 60));
}

#[test]
fn large_messages_span_many_data_frames() {
    let mut wire = Wire::new();
    wire.request(1, "/blob.Store/Put", &[]);
    // A 2 MiB message: prefix in the first frame, body over 128 frames of 16 KiB.
    let len = 2 << 20;
    let mut first = vec![1];
    first.extend_from_slice(&(len as u32).to_be_bytes());
    first.resize(16_384, 0);
    wire.write(Direction::Egress, frame(DATA, 0, 1, &first));
    let mut left = len + 5 - 16_384;
    while left > 0 {
        let size = left.min(16_384);
        left -= size;
        wire.write(
            Direction::Egress,
            frame(
                DATA,
                if left == 0 { flags::END_STREAM } else { 0 },
                1,
                &vec![0; size],
            ),
        );
    }
    wire.response_headers(1);
    wire.message(Direction::Ingress, 1, 0, false);
    wire.trailers(1, "0", None);
    let (calls, _) = wire.calls(8192);
    let call = &calls[0];
    assert_eq!(
        (
            call.request.count,
            call.request.bytes,
            call.request.compressed
        ),
        (1, len as u64, 1)
    );
    assert_eq!((call.response.count, call.response.bytes), (1, 0));
}

#[test]
fn continuation_and_padding() {
    let mut wire = Wire::new();
    let block = wire.request_block("/split.Headers/Call", &[("x-custom", &"v".repeat(300))]);
    let (first, rest) = block.split_at(10);
    let (second, third) = rest.split_at(rest.len() / 2);
    // HEADERS with padding and priority, then two CONTINUATIONs.
    let mut payload = vec![4, 0, 0, 0, 0, 16];
    payload.extend_from_slice(first);
    payload.extend_from_slice(&[0; 4]);
    let start = wire.write(
        Direction::Egress,
        frame(HEADERS, flags::PADDED | flags::PRIORITY, 1, &payload),
    );
    wire.write(Direction::Egress, frame(CONTINUATION, 0, 1, second));
    wire.write(
        Direction::Egress,
        frame(CONTINUATION, flags::END_HEADERS, 1, third),
    );
    // A padded DATA frame carrying the message.
    let mut data = vec![3, 0, 0, 0, 0, 2, 1, 2, 0, 0, 0];
    data[0] = 3;
    wire.write(
        Direction::Egress,
        frame(DATA, flags::PADDED | flags::END_STREAM, 1, &data),
    );
    wire.trailers_only(1, "0", "");
    let (calls, stats) = wire.calls(5);
    assert_eq!(calls.len(), 1, "{stats:?}");
    assert_eq!(
        calls[0].path().map(|text| &**text),
        Some("/split.Headers/Call")
    );
    assert_eq!(calls[0].start_ns, start);
    assert_eq!((calls[0].request.count, calls[0].request.bytes), (1, 2));
}

#[test]
fn resets_deadlines_and_cancellation() {
    let mut wire = Wire::new();
    // Deadline: the client cancels when its 100 ms grpc-timeout fires, which by our clock (started
    // when the request write returned) is slightly less than 100 ms later.
    wire.request(1, "/slow.Svc/Wait", &[("grpc-timeout", "100m")]);
    wire.clock += 95_500_000;
    wire.write(
        Direction::Egress,
        frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()),
    );
    // Cancelled well before its deadline.
    wire.request(3, "/slow.Svc/Wait", &[("grpc-timeout", "10S")]);
    wire.write(
        Direction::Egress,
        frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()),
    );
    // Refused by the server.
    wire.request(5, "/slow.Svc/Wait", &[]);
    wire.write(
        Direction::Ingress,
        frame(RST_STREAM, 0, 5, &7u32.to_be_bytes()),
    );
    let (calls, _) = wire.calls(usize::MAX);
    let by_id = |id: u32| calls.iter().find(|call| call.stream_id == id).unwrap();
    // The server's own deadline trailers arrive after the reset: late, not a loss.
    wire.trailers_only(1, "4", "deadline");
    let mut tracker = tracker(true);
    wire.replay_into(&mut tracker, usize::MAX, &mut Vec::new());
    assert_eq!(tracker.stats().streams_joined_mid_call, 0);
    assert_eq!(by_id(1).code, Some(Code::DEADLINE_EXCEEDED));
    assert_eq!(by_id(1).timeout(), Some(Duration::from_millis(100)));
    assert_eq!(by_id(3).code, Some(Code::CANCELLED));
    assert_eq!(by_id(3).reset, Some(crate::http2::ErrorCode::CANCEL));
    assert_eq!(
        (by_id(5).code, by_id(5).end_reason),
        (
            Some(Code::UNAVAILABLE),
            EndReason::ResetByServer(crate::http2::ErrorCode::REFUSED_STREAM)
        )
    );
}

#[test]
fn goaway_and_close_end_open_calls() {
    let mut wire = Wire::new();
    wire.request(1, "/a.B/C", &[]);
    wire.request(3, "/a.B/C", &[]);
    wire.request(5, "/a.B/C", &[]);
    let mut goaway = 1u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0u32.to_be_bytes());
    let at = wire.write(Direction::Ingress, frame(GOAWAY, 0, 0, &goaway));
    let mut tracker = tracker(true);
    let mut out = Vec::new();
    wire.replay_into(&mut tracker, usize::MAX, &mut out);
    let ended: Vec<_> = out
        .iter()
        .map(|call| (call.stream_id, call.end_reason, call.code, call.end_ns))
        .collect();
    assert_eq!(
        ended,
        vec![
            (3, EndReason::GoAway, Some(Code::UNAVAILABLE), at),
            (5, EndReason::GoAway, Some(Code::UNAVAILABLE), at)
        ]
    );
    tracker.on_close(at + 5, EndReason::ConnectionClosed, &mut out);
    assert_eq!(
        (out[2].stream_id, out[2].end_reason, out[2].code),
        (1, EndReason::ConnectionClosed, Some(Code::UNAVAILABLE))
    );
}

#[test]
fn calls_in_flight_when_the_process_exits_have_no_status() {
    let mut wire = Wire::new();
    wire.request(1, "/a.B/C", &[]);
    let mut tracker = tracker(true);
    let mut out = Vec::new();
    wire.replay_into(&mut tracker, usize::MAX, &mut out);
    assert!(out.is_empty());
    tracker.on_close(99, EndReason::ProcessExited, &mut out);
    let [call] = &out[..] else {
        panic!("one call expected: {out:?}");
    };
    assert_eq!(
        (call.stream_id, call.end_reason, call.code, call.end_ns),
        (1, EndReason::ProcessExited, None, 99)
    );
    // Not a status the tracer failed to decode.
    assert_eq!(tracker.stats().calls_without_status, 0);
    assert_eq!(tracker.stats().calls_cut_by_exit, 1);
}

#[test]
fn gaps_in_message_bodies_do_not_disturb_the_call() {
    let mut wire = Wire::new();
    wire.request(1, "/a.B/C", &[]);
    wire.message(Direction::Egress, 1, 1000, true);
    wire.response_headers(1);
    wire.trailers(1, "0", None);
    let mut tracker = tracker(true);
    let mut out = Vec::new();
    for (index, (direction, bytes, at)) in wire.writes.iter().enumerate() {
        if index == 3 {
            // The DATA frame: header and prefix captured, 900 body bytes lost, the rest captured.
            feed(&mut tracker, *direction, &bytes[..20], *at, &mut out);
            tracker.on_chunk(
                *direction,
                &Chunk {
                    offset: 20,
                    timestamp_ns: *at,
                    payload: Payload::Gap(900),
                },
                &mut out,
            );
            feed(&mut tracker, *direction, &bytes[920..], *at, &mut out);
        } else {
            feed(&mut tracker, *direction, bytes, *at, &mut out);
        }
    }
    assert_eq!(out.len(), 1);
    assert_eq!(
        (
            out[0].request.count,
            out[0].request.bytes,
            out[0].request.exact
        ),
        (1, 1000, true)
    );
    assert_eq!(out[0].code, Some(Code::OK));
}

#[test]
fn calls_wholly_inside_a_capture_gap_are_counted_as_lost() {
    let mut wire = Wire::new();
    for stream_id in [1, 3, 5, 7, 9] {
        wire.unary(stream_id, "/a.B/C");
    }
    // Streams 3 and 5 went by while nothing was captured: each direction's bytes of those
    // calls became one gap.
    let writes_per_call = 5;
    let first = 2; // after the preface and SETTINGS of both sides
    let lost = first + writes_per_call..first + 3 * writes_per_call;
    let mut tracker = tracker(true);
    let mut out = Vec::new();
    wire.replay_with_gap(lost, &mut tracker, &mut out);
    let seen: Vec<u32> = out.iter().map(|call| call.stream_id).collect();
    assert_eq!(seen, [1, 7, 9]);
    assert_eq!(tracker.stats().calls_lost, 2);
}

#[test]
fn a_call_whose_end_may_have_been_in_a_capture_gap_has_no_outcome() {
    let mut wire = Wire::new();
    wire.unary(1, "/a.B/C");
    // Stream 3's request is seen; all its response goes by uncaptured.
    wire.request(3, "/a.B/C", &[]);
    wire.message(Direction::Egress, 3, 10, true);
    let gap_from = wire.writes.len();
    wire.response_headers(3);
    wire.message(Direction::Ingress, 3, 20, false);
    let gap_at = wire.trailers(3, "0", None);
    let gap_to = wire.writes.len();
    wire.unary(5, "/a.B/C");
    let mut tracker = tracker(true);
    let mut out = Vec::new();
    wire.replay_with_gap(gap_from..gap_to, &mut tracker, &mut out);
    tracker.on_close(gap_at + 60_000_000, EndReason::ConnectionClosed, &mut out);
    let cut = out
        .iter()
        .find(|call| call.stream_id == 3)
        .expect("stream 3");
    // Not UNAVAILABLE at the close a minute later: the client may well have seen OK.
    assert_eq!(cut.end_reason, EndReason::CaptureGap);
    assert_eq!(cut.code, None);
    assert!(
        cut.end_ns <= gap_at + 10_000_000,
        "ends when the gap was found"
    );
    assert!(out.iter().any(|call| call.stream_id == 5));
}

#[test]
fn late_join_resolves_what_was_inserted_after_attach() {
    let mut wire = Wire::new();
    // Before attach: a call to Old inserts its path (and everything else) into the tables.
    wire.unary(1, "/svc.S/Old");
    let attach = wire.writes.len();
    // After attach: Old again (all from the table), then New (a fresh literal), then New again.
    wire.unary(3, "/svc.S/Old");
    wire.unary(5, "/svc.S/New");
    wire.unary(7, "/svc.S/New");
    let mut tracker = tracker(false);
    let mut out = Vec::new();
    for (direction, bytes, at) in &wire.writes[attach..] {
        feed(&mut tracker, *direction, bytes, *at, &mut out);
    }
    let paths: Vec<_> = out
        .iter()
        .map(|call| (call.stream_id, call.path().map(|text| &**text)))
        .collect();
    // Stream 3 is only confirmed as a frame boundary... all three calls are seen.
    assert_eq!(
        paths,
        vec![(3, None), (5, Some("/svc.S/New")), (7, Some("/svc.S/New"))],
        "{:?}",
        tracker.stats()
    );
    // Durations are exact even without a method name.
    for call in &out {
        assert_eq!(call.duration(), Duration::from_millis(4));
    }
    assert_eq!(tracker.stats().calls_without_method, 1);
}

/// A stand-in for the traced process's memory: the entries each of its tables held from before
/// attach, newest first, told apart by an entry each direction inserted since (what the real
/// lookup lines tables up by, `crate::process_memory`). The response table reads as not yet
/// caught up until `responses_read` is set, as a client's decoder lags what arrived.
struct OwnTables {
    requests: Vec<(&'static str, &'static str)>,
    responses: Vec<(&'static str, &'static str)>,
    responses_read: bool,
}

impl Recall for OwnTables {
    fn entry(
        &mut self,
        _: &ConnectionFacts,
        seen: &[crate::hpack::SeenEntry<'_>],
        insertion: i64,
    ) -> Option<(crate::hpack::Text, Option<crate::hpack::Text>)> {
        let inserted = |name: &str| {
            seen.iter()
                .any(|entry| entry.name.is_some_and(|n| &**n == name))
        };
        let table = if inserted("grpc-timeout") {
            &self.requests
        } else if inserted("date") && self.responses_read {
            &self.responses
        } else {
            return None;
        };
        let (name, value) = table.get(usize::try_from(-insertion - 1).ok()?)?;
        Some(((*name).into(), Some((*value).into())))
    }

    fn can_answer(&mut self, _: &ConnectionFacts) -> bool {
        true
    }
}

#[test]
fn entries_from_before_attach_are_read_from_the_process_and_a_status_waits_for_its_table() {
    let mut wire = Wire::new();
    // Before attach: inserts the path, authority, content-type and te (the client's), and
    // content-type and grpc-status 0 (the server's).
    wire.unary(1, "/svc.S/Old");
    let attach = wire.writes.len();
    // After attach: Old again, all from the table but a new grpc-timeout; the server's headers
    // insert a date, and its trailers refer to grpc-status 0 from before.
    wire.request(3, "/svc.S/Old", &[("grpc-timeout", "1S")]);
    wire.message(Direction::Egress, 3, 10, true);
    let block = Wire::block(
        &mut wire.server,
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("date", "Mon"),
        ],
    );
    wire.write(
        Direction::Ingress,
        frame(HEADERS, flags::END_HEADERS, 3, &block),
    );
    wire.message(Direction::Ingress, 3, 20, false);
    wire.trailers(3, "0", None);
    let next_request = wire.request(5, "/svc.S/Old", &[("grpc-timeout", "1S")]);
    let tables = Rc::new(RefCell::new(OwnTables {
        requests: vec![
            ("te", "trailers"),
            ("content-type", "application/grpc"),
            (":authority", "svc.local:50051"),
            (":path", "/svc.S/Old"),
        ],
        responses: vec![("grpc-status", "0"), ("content-type", "application/grpc")],
        responses_read: false,
    }));
    let mut tracker = tracker(false);
    tracker.recall_from(Rc::clone(&tables) as Rc<RefCell<dyn Recall>>);
    let mut out = Vec::new();
    let (before_next, next) = wire.writes[attach..].split_at(wire.writes.len() - attach - 1);
    for (direction, bytes, at) in before_next {
        feed(&mut tracker, *direction, bytes, *at, &mut out);
    }
    // Its status is an entry the client's table does not show yet: the call is held.
    assert!(out.is_empty(), "{out:?}");
    tables.borrow_mut().responses_read = true;
    // The client writes again, having read the response: the lookup succeeds.
    let (direction, bytes, at) = &next[0];
    assert_eq!(*at, next_request);
    feed(&mut tracker, *direction, bytes, *at, &mut out);
    assert_eq!(out.len(), 1);
    let call = &out[0];
    assert_eq!(call.path().map(|path| &**path), Some("/svc.S/Old"));
    assert_eq!(call.method_inferred_from(), Some(Provenance::ProcessMemory));
    assert_eq!(
        (call.code, call.status_inferred_from()),
        (Some(Code::OK), Some(Provenance::ProcessMemory))
    );
    let stats = tracker.stats();
    assert_eq!(
        (stats.methods_from_memory, stats.statuses_from_memory),
        (1, 1)
    );
    assert_eq!(
        (stats.calls_without_method, stats.calls_without_status),
        (0, 0)
    );
}

#[test]
fn a_held_call_goes_unnamed_when_its_table_never_catches_up() {
    let mut wire = Wire::new();
    wire.unary(1, "/svc.S/Old");
    let attach = wire.writes.len();
    let (_, end) = wire.unary(3, "/svc.S/Old");
    let mut tracker = tracker(false);
    let nothing = OwnTables {
        requests: Vec::new(),
        responses: Vec::new(),
        responses_read: false,
    };
    tracker.recall_from(Rc::new(RefCell::new(nothing)));
    let mut out = Vec::new();
    for (direction, bytes, at) in &wire.writes[attach..] {
        feed(&mut tracker, *direction, bytes, *at, &mut out);
    }
    assert!(out.is_empty());
    // Let go once its time is up, with the status unknown, and counted so.
    tracker.release_held(end + 499_000_000, false, &mut out);
    assert!(out.is_empty());
    tracker.release_held(end + 500_000_000, false, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].code, None);
    assert_eq!(tracker.stats().calls_without_status, 1);
}

/// A process whose tables never answer, counting the questions.
#[derive(Default)]
struct Silent {
    asked: usize,
}

impl Recall for Silent {
    fn entry(
        &mut self,
        _: &ConnectionFacts,
        _: &[crate::hpack::SeenEntry<'_>],
        _: i64,
    ) -> Option<(crate::hpack::Text, Option<crate::hpack::Text>)> {
        self.asked += 1;
        None
    }

    fn can_answer(&mut self, _: &ConnectionFacts) -> bool {
        true
    }
}

/// A busy client holds hundreds of calls while their lookups wait for a copy of its memory:
/// a round of lookups asks each question once, however many calls wait on it.
#[test]
fn a_round_of_lookups_asks_each_question_once() {
    let mut wire = Wire::new();
    wire.unary(1, "/svc.S/Old");
    let attach = wire.writes.len();
    let mut end = 0;
    // 40 calls, 5 ms apart: none has waited its 500 ms by the end.
    for stream_id in (3..83).step_by(2) {
        end = wire.unary(stream_id, "/svc.S/Old").1;
    }
    let mut tracker = tracker(false);
    let silent = Rc::new(RefCell::new(Silent::default()));
    tracker.recall_from(Rc::clone(&silent) as Rc<RefCell<dyn Recall>>);
    let mut out = Vec::new();
    for (direction, bytes, at) in &wire.writes[attach..] {
        feed(&mut tracker, *direction, bytes, *at, &mut out);
    }
    assert!(out.is_empty(), "every call is held");
    let asked_while_fed = std::mem::take(&mut silent.borrow_mut().asked);
    tracker.release_held(end + 20_000_000, false, &mut out);
    assert!(out.is_empty());
    let asked = silent.borrow().asked;
    // The method's entry and the status's, each among a few candidates.
    assert!(
        (1..=8).contains(&asked),
        "{asked} questions for 40 calls in a round ({asked_while_fed} while they were fed)"
    );
    tracker.release_held(end + 500_000_000, false, &mut out);
    assert_eq!(out.len(), 40);
}

#[test]
fn non_http2_traffic_yields_no_calls() {
    let mut tracker = tracker(true);
    let mut out = Vec::new();
    feed(
        &mut tracker,
        Direction::Egress,
        b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n",
        1,
        &mut out,
    );
    feed(
        &mut tracker,
        Direction::Ingress,
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        2,
        &mut out,
    );
    feed(
        &mut tracker,
        Direction::Egress,
        &[0x16, 3, 1, 0, 200],
        3,
        &mut out,
    );
    tracker.on_close(4, EndReason::ConnectionClosed, &mut out);
    assert!(out.is_empty());
    assert!(tracker.stats().not_http2.is_some());
}

#[test]
fn secrets_never_reach_the_record() {
    let mut wire = Wire::new();
    wire.request(
        1,
        "/a.B/C",
        &[
            ("authorization", "Bearer s3cr3t-token"),
            ("cookie", "session=hunter2"),
            ("x-api-key", "k3y"),
        ],
    );
    wire.trailers_only(1, "0", "");
    let (calls, _) = wire.calls(usize::MAX);
    let shown = format!("{calls:?}");
    for secret in ["s3cr3t", "hunter2", "k3y"] {
        assert!(!shown.contains(secret), "{secret} leaked");
    }
    assert_eq!(calls[0].code, Some(Code::OK));
}

#[test]
fn traced_server_sees_calls_from_the_other_side() {
    let mut wire = Wire::new();
    wire.unary(1, "/a.B/C");
    // Swap directions: the traced process is now the server.
    for write in &mut wire.writes {
        write.0 = if write.0 == Direction::Egress {
            Direction::Ingress
        } else {
            Direction::Egress
        };
    }
    let (calls, _) = wire.calls(usize::MAX);
    assert_eq!(
        (calls[0].side, calls[0].code),
        (Side::Server, Some(Code::OK))
    );
}

/// Encodes a wire in the input format of [`crate::fuzzing::run_connection`].
fn fuzz_input(wire: &Wire, seen_from_start: bool, gap_every: Option<usize>) -> Vec<u8> {
    let mut input = vec![u8::from(seen_from_start)];
    for (index, (direction, bytes, _)) in wire.writes.iter().enumerate() {
        for part in bytes.chunks(u16::MAX as usize) {
            let gap = gap_every.is_some_and(|every| index % every == every - 1);
            input.push(*direction as u8 | if gap { 2 } else { 0 });
            input.extend_from_slice(&(part.len() as u16).to_le_bytes());
            if !gap {
                input.extend_from_slice(part);
            }
        }
    }
    input
}

/// The fuzz corpus seeds are realistic connections; this checks the fuzz input format against
/// the scenarios (and rewrites the seed files when TRACER_WRITE_FUZZ_SEEDS is set).
#[test]
fn fuzz_seeds_describe_real_connections() {
    let mut unary = Wire::new();
    for id in [1, 3, 5] {
        unary.unary(id, "/helloworld.Greeter/SayHello");
    }
    let mut errors = Wire::new();
    errors.trailers_only(1, "5", "nope");
    errors.request(
        1,
        "/a.B/C",
        &[
            ("grpc-timeout", "10m"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ],
    );
    errors.trailers_only(1, "5", "not%20found");
    errors.request(3, "/a.B/C", &[("grpc-timeout", "1m")]);
    errors.write(
        Direction::Egress,
        frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()),
    );
    let mut streaming = Wire::new();
    streaming.request(1, "/chat.Room/Talk", &[]);
    for round in 0..3 {
        streaming.message(Direction::Egress, 1, 40_000 * round, round == 2);
        streaming.response_headers(1);
    }
    streaming.trailers(1, "0", None);
    let seeds = [
        ("unary", fuzz_input(&unary, true, None), 3),
        ("unary-late-join", fuzz_input(&unary, false, None), 3),
        // Stream 3's request headers fall into a gap, so only streams 1 and 5 are seen.
        ("unary-gaps", fuzz_input(&unary, true, Some(4)), 2),
        ("errors", fuzz_input(&errors, true, None), 2),
        ("streaming", fuzz_input(&streaming, true, None), 1),
    ];
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/connection");
    for (name, input, calls) in seeds {
        assert_eq!(crate::fuzzing::run_connection(&input), calls, "{name}");
        if std::env::var_os("TRACER_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::write(corpus.join(name), &input).unwrap();
        }
    }
}

/// The server shrinks the client's table with SETTINGS_HEADER_TABLE_SIZE; the client's encoder
/// acknowledges with a dynamic table size update at the start of its next block and keeps
/// indexing within the smaller table. Decoding must follow both.
#[test]
fn header_table_size_changes_are_followed() {
    let mut wire = Wire::new();
    wire.unary(1, "/a.B/First");
    // SETTINGS from the server (ingress): HEADER_TABLE_SIZE = 100.
    wire.write(
        Direction::Ingress,
        frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 100]),
    );
    let mut block = Vec::new();
    wire.client
        .update_max_dynamic_size(100, &mut block)
        .unwrap();
    block.extend(wire.request_block("/a.B/Second", &[]));
    let start = wire.write(
        Direction::Egress,
        frame(HEADERS, flags::END_HEADERS, 3, &block),
    );
    wire.message(Direction::Egress, 3, 1, true);
    wire.trailers_only(3, "0", "");
    // A third call indexes against the shrunken table.
    wire.request(5, "/a.B/Second", &[]);
    wire.trailers_only(5, "0", "");
    let (calls, stats) = wire.calls(usize::MAX);
    let paths: Vec<_> = calls
        .iter()
        .map(|call| call.path().map(|text| &**text).unwrap_or("?"))
        .collect();
    assert_eq!(
        paths,
        ["/a.B/First", "/a.B/Second", "/a.B/Second"],
        "{stats:?}"
    );
    assert_eq!(calls[1].start_ns, start);
    assert_eq!((stats.hpack_errors, stats.calls_without_method), (0, 0));
    // A size update above what SETTINGS allowed is a decoding error, counted.
    let mut bad = Wire::new();
    bad.write(
        Direction::Ingress,
        frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 100]),
    );
    let mut block = Vec::new();
    bad.client
        .update_max_dynamic_size(4096, &mut block)
        .unwrap();
    block.extend(bad.request_block("/a.B/C", &[]));
    bad.write(
        Direction::Egress,
        frame(HEADERS, flags::END_HEADERS, 1, &block),
    );
    let (calls, stats) = bad.calls(usize::MAX);
    assert_eq!((stats.hpack_errors, calls.len()), (1, 0));
}

#[test]
fn a_frame_position_is_given_only_at_frame_boundaries() {
    let mut wire = Wire::new();
    wire.request(1, "/a.B/C", &[]);
    wire.request(3, "/a.B/D", &[]);
    // Stream 1 stops 60 body bytes short of its message, stream 3 two bytes into a prefix
    // (one of them a length byte); the frames themselves are complete.
    let mut first = vec![0];
    first.extend_from_slice(&100u32.to_be_bytes());
    first.extend_from_slice(&[7; 40]);
    wire.write(Direction::Egress, frame(DATA, 0, 1, &first));
    wire.write(Direction::Egress, frame(DATA, 0, 3, &[0, 0]));
    let egress_len: u64 = wire
        .writes
        .iter()
        .filter(|(direction, ..)| *direction == Direction::Egress)
        .map(|(_, bytes, _)| bytes.len() as u64)
        .sum();
    let mut tracker = tracker(true);
    let mut out = Vec::new();
    wire.replay_into(&mut tracker, 7, &mut out);
    let FramePosition {
        offset,
        mut mid_message,
    } = tracker
        .frame_position(Direction::Egress)
        .expect("at a frame boundary");
    mid_message.sort_by_key(|message| message.stream_id);
    assert_eq!(offset, egress_len);
    assert_eq!(
        mid_message,
        [
            MessageProgress {
                stream_id: 1,
                prefix_seen: 0,
                value: 60
            },
            MessageProgress {
                stream_id: 3,
                prefix_seen: 2,
                value: 0
            },
        ]
    );

    // Half a frame header later, there is nothing to offer.
    let data = frame(DATA, 0, 1, &[1; 10]);
    let chunk = Chunk {
        offset: egress_len,
        timestamp_ns: 1,
        payload: Payload::Bytes(&data[..4]),
    };
    tracker.on_chunk(Direction::Egress, &chunk, &mut out);
    assert_eq!(tracker.frame_position(Direction::Egress), None);
}

#[test]
fn end_reason_labels_are_the_debug_names() {
    use crate::http2::ErrorCode;
    for reason in [
        EndReason::Trailers,
        EndReason::TrailersOnly,
        EndReason::EndStreamWithoutTrailers,
        EndReason::ResetByClient(ErrorCode::CANCEL),
        EndReason::ResetByServer(ErrorCode(0x77)),
        EndReason::GoAway,
        EndReason::ConnectionClosed,
        EndReason::ProcessExited,
        EndReason::FinalHeadersLost,
        EndReason::CaptureGap,
    ] {
        assert_eq!(reason.label(), format!("{reason:?}"));
    }
}

#[test]
fn a_larger_frame_size_from_the_peer_lets_the_reader_find_larger_frames_after_a_gap() {
    // After a gap over a frame header, the reader finds the frames again where two plausible
    // headers follow each other; a frame longer than 16 KiB is plausible only once the
    // receiving peer has allowed it (SETTINGS_MAX_FRAME_SIZE, RFC 9113 §6.5.2). The client's
    // frames are limited by what the server advertised.
    let methods = |advertised: Option<u32>| {
        let mut wire = Wire::new();
        if let Some(size) = advertised {
            let mut setting = vec![0, 5]; // SETTINGS_MAX_FRAME_SIZE
            setting.extend(size.to_be_bytes());
            wire.write(Direction::Ingress, frame(SETTINGS, 0, 0, &setting));
        }
        wire.request(1, "/a.B/Small", &[]);
        let lost_header_at = wire.writes.len();
        wire.message(Direction::Egress, 1, 100, true);
        wire.response_headers(1);
        wire.trailers(1, "0", None);
        wire.request(3, "/a.B/Large", &[]);
        wire.message(Direction::Egress, 3, 30_000, true);
        wire.response_headers(3);
        wire.trailers(3, "0", None);
        wire.unary(5, "/a.B/After");

        let mut tracker = tracker(true);
        let mut out = Vec::new();
        let mut offsets = [0u64; 2];
        for (index, (direction, bytes, at)) in wire.writes.iter().enumerate() {
            let offset = &mut offsets[*direction as usize];
            let mut push = |payload: Payload<'_>, out: &mut Vec<CallRecord>| {
                let len = payload.len();
                let chunk = Chunk {
                    offset: *offset,
                    timestamp_ns: *at,
                    payload,
                };
                tracker.on_chunk(*direction, &chunk, out);
                *offset += len;
            };
            if index == lost_header_at {
                push(Payload::Gap(9), &mut out);
                push(Payload::Bytes(&bytes[9..]), &mut out);
            } else {
                push(Payload::Bytes(bytes), &mut out);
            }
        }
        let mut methods: Vec<String> = out.iter().map(|call| call.name().to_owned()).collect();
        methods.sort();
        methods
    };
    assert_eq!(methods(None), ["a.B/After", "a.B/Small"]);
    assert_eq!(
        methods(Some(65_536)),
        ["a.B/After", "a.B/Large", "a.B/Small"]
    );
}
