//! The calls in flight on one connection: a state per open client-initiated stream.

use std::rc::Rc;

use foldhash::HashMap;

use super::{
    call::Provenance,
    headers::{BlockMeaning, RequestHeaders},
    message::MessageCounter,
    stats::TrackerStats,
};
use crate::stream::Direction;

/// What is known of one call so far.
#[derive(Default)]
pub(super) struct StreamState {
    pub start_ns: u64,
    /// `None` when the request's header block was lost.
    pub request_headers: Option<Rc<RequestHeaders>>,
    pub response_headers_seen: bool,
    pub first_response_header_ns: Option<u64>,
    pub http_status: Option<u16>,
    pub grpc_status: Option<u32>,
    pub status_provenance: Provenance,
    /// The final block, when its `grpc-status` is to be looked up in the process's table, and
    /// the direction it came in.
    pub status_lookup: Option<(Rc<BlockMeaning>, Direction)>,
    pub grpc_message: Option<String>,
    /// A response header block held fields we could not decode: a missing grpc-status may
    /// just be unreadable.
    pub response_had_unknown_fields: bool,
    pub request: MessageCounter,
    pub response: MessageCounter,
    /// When bytes of the connection went uncaptured while this call was in flight, if nothing
    /// of the call has been seen since: its end may have been among them.
    pub unseen_since_gap: Option<u64>,
    /// Set when the request may have waited for a stream slot before its headers went out:
    /// the earliest the call can have started (when the connection became full).
    pub queued_since: Option<u64>,
}

impl StreamState {
    /// The message counter of the request (`true`) or the response side.
    pub fn messages(&mut self, request: bool) -> &mut MessageCounter {
        if request {
            &mut self.request
        } else {
            &mut self.response
        }
    }

    /// Response headers arrived (decoded or not) at `now`.
    pub fn saw_response_headers(&mut self, now: u64) -> bool {
        self.unseen_since_gap = None;
        let first = !self.response_headers_seen;
        if first {
            self.response_headers_seen = true;
            self.first_response_header_ns = Some(now);
        }
        first
    }
}

/// Open streams by id, bounded.
pub(super) struct Streams {
    open: HashMap<u32, StreamState>,
    /// The first stream whose request was seen: responses on older streams belong to calls
    /// made before the tracer was watching; on newer ones, to calls that already ended.
    first_request: Option<u32>,
    max_open: usize,
}

impl Streams {
    pub fn new(max_open: usize) -> Streams {
        Streams {
            open: HashMap::default(),
            first_request: None,
            max_open,
        }
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn contains(&self, stream_id: u32) -> bool {
        self.open.contains_key(&stream_id)
    }

    pub fn get_mut(&mut self, stream_id: u32) -> Option<&mut StreamState> {
        self.open.get_mut(&stream_id)
    }

    pub fn remove(&mut self, stream_id: u32) -> Option<StreamState> {
        self.open.remove(&stream_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &StreamState)> {
        self.open.iter().map(|(&id, stream)| (id, stream))
    }

    pub fn states_mut(&mut self) -> impl Iterator<Item = &mut StreamState> {
        self.open.values_mut()
    }

    /// Ids of the open streams that `keep` selects, in ascending (opening) order.
    pub fn ids_where(&self, keep: impl Fn(u32) -> bool) -> Vec<u32> {
        let mut ids: Vec<u32> = self.open.keys().copied().filter(|&id| keep(id)).collect();
        ids.sort_unstable();
        ids
    }

    /// A request opened `stream_id`; over the limit it is counted and not followed.
    pub fn open(&mut self, stream_id: u32, stream: StreamState, stats: &mut TrackerStats) {
        self.first_request.get_or_insert(stream_id);
        if self.open.len() >= self.max_open {
            stats.streams_over_limit += 1;
            return;
        }
        self.open.insert(stream_id, stream);
    }

    /// A request (gRPC or not) was seen on `stream_id`: responses on later streams answer
    /// requests the tracer saw.
    pub fn saw_request(&mut self, stream_id: u32) {
        self.first_request.get_or_insert(stream_id);
    }

    /// Whether a response on a stream that is not open belongs to a call whose request went
    /// by before the tracer was watching.
    pub fn opened_before_watching(&self, stream_id: u32) -> bool {
        self.first_request.is_none_or(|first| stream_id < first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_over_the_limit_are_counted_not_followed() {
        let mut streams = Streams::new(2);
        let mut stats = TrackerStats::default();
        for id in [1, 3, 5] {
            streams.open(id, StreamState::default(), &mut stats);
        }
        assert_eq!((streams.len(), stats.streams_over_limit), (2, 1));
        assert!(streams.contains(3) && !streams.contains(5));
    }

    #[test]
    fn only_streams_older_than_the_first_request_seen_predate_the_tracer() {
        let mut streams = Streams::new(8);
        assert!(streams.opened_before_watching(7), "nothing seen yet");
        streams.open(9, StreamState::default(), &mut TrackerStats::default());
        streams.remove(9);
        assert!(streams.opened_before_watching(7));
        assert!(
            !streams.opened_before_watching(11),
            "opened and ended since"
        );
    }

    #[test]
    fn ids_come_in_opening_order() {
        let mut streams = Streams::new(8);
        for id in [7, 1, 5, 3] {
            streams.open(id, StreamState::default(), &mut TrackerStats::default());
        }
        assert_eq!(streams.ids_where(|id| id > 1), [3, 5, 7]);
    }
}
