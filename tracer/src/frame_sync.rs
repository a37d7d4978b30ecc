//! Frame sync: the one loop that feeds what the protocol layers learnt back to the kernel.
//!
//! The kernel side follows each connection direction's HTTP/2 framing so that it can skip DATA
//! payloads, copying only frame headers and gRPC message prefixes. When it loses track (a
//! connection joined mid-stream, a record lost, reads too dense to follow) it copies every byte
//! until it is handed a position to resume from. Userspace, which decodes whatever it gets,
//! knows where frames start. After each poll, for every direction that received data, this
//! module asks the connection's tracker where the direction stands
//! ([`ConnectionTracker::frame_position`], a plain protocol position) and hands it to the
//! capture side ([`Capture::offer_frame_sync`]), the only code that writes the kernel's map. The
//! kernel takes it up only if its next syscall on that direction starts exactly there.
//!
//! The same way back tells the kernel side to stop copying a connection that its tracker found
//! not to carry HTTP/2: from then on its bytes are only counted.

use foldhash::{HashMap, HashSet};

use crate::{
    capture::{Capture, MessageCursor, SyncOffer},
    grpc::{ConnectionTracker, FramePosition},
    stream::Direction,
};

/// The directions that received data since the last offer round, and what the rounds placed.
#[derive(Default)]
pub struct FrameSync {
    fed: HashSet<(u64, Direction)>,
    /// The last of them, which the next chunk is most likely for: a record's chunks come
    /// consecutively, so most chunks skip the set insert.
    last_fed: Option<(u64, Direction)>,
    placed: u64,
    /// Connections found not to carry HTTP/2 since the last round.
    not_http2: Vec<u64>,
}

impl FrameSync {
    /// Data of `direction` on `conn_id` reached its tracker.
    pub fn fed(&mut self, conn_id: u64, direction: Direction) {
        if self.last_fed != Some((conn_id, direction)) {
            self.fed.insert((conn_id, direction));
            self.last_fed = Some((conn_id, direction));
        }
    }

    /// The tracker of `conn_id` found it not to carry HTTP/2.
    pub fn not_http2(&mut self, conn_id: u64) {
        self.not_http2.push(conn_id);
    }

    /// Offers the kernel side a position for every fed direction it may have lost track of,
    /// and tells it which connections are not HTTP/2.
    pub fn offer(&mut self, capture: &mut Capture, trackers: &HashMap<u64, ConnectionTracker>) {
        for conn_id in self.not_http2.drain(..) {
            capture.stop_copying(conn_id);
        }
        for (conn_id, direction) in self.fed.drain() {
            // Preparing an offer walks the direction's open streams: only when one is due.
            if !capture.frame_sync_due(conn_id, direction) {
                continue;
            }
            let Some(position) = trackers
                .get(&conn_id)
                .and_then(|tracker| tracker.frame_position(direction))
            else {
                continue;
            };
            let FramePosition {
                offset,
                mid_message,
            } = position;
            let parked: Vec<MessageCursor> = mid_message
                .into_iter()
                .map(|message| MessageCursor {
                    stream_id: message.stream_id,
                    prefix_seen: message.prefix_seen,
                    value: message.value,
                })
                .collect();
            if capture.offer_frame_sync(conn_id, direction, offset, &parked) == SyncOffer::Placed {
                self.placed += 1;
            }
        }
        self.last_fed = None;
    }

    /// Positions the kernel side was handed.
    pub fn placed(&self) -> u64 {
        self.placed
    }
}
