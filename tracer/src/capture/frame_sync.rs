//! The kernel half of frame sync (see `crate::frame_sync`): handing a direction's frame
//! position to the kernel side, which writes it into the `RESYNC` map. Only this file writes it.

use std::time::{Duration, Instant};

use tracer_common::{DirectionKey, FrameCursor, MessageCursor, maps::framing};

use super::{Capture, connections::KernelEntry};
use crate::stream::Direction;

/// What became of a frame sync offer ([`Capture::offer_frame_sync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOffer {
    /// The kernel side takes it up with the direction's next syscall.
    Placed,
    /// The kernel side is following this direction's framing already, or never will (not
    /// HTTP/2); checked again after a while.
    NotNeeded,
    /// The process moved on since the offered offset, or the connection is gone.
    Stale,
}

/// How long a direction whose kernel cursor is following goes without a new check.
const FOLLOWING_RECHECK: Duration = Duration::from_secs(1);

impl Capture {
    /// Whether a frame sync offer for this direction is worth preparing: not while the kernel
    /// side was recently found following it. Check before [`Capture::offer_frame_sync`].
    pub fn frame_sync_due(&self, conn_id: u64, direction: Direction) -> bool {
        self.connections
            .by_id
            .get(&conn_id)
            .is_some_and(|connection| {
                Instant::now() >= connection.next_sync_check[direction as usize]
            })
    }

    /// Offers the kernel side a frame cursor for one direction of a connection, for when it
    /// lost track of the framing (joined mid-stream, bytes missed, reads too dense to follow)
    /// and copies everything. `offset` is where userspace, in frame sync itself, saw the
    /// direction stop at a frame boundary, with `parked` the streams in the middle of a message
    /// there. The kernel side takes it up only if its next syscall starts exactly there.
    pub fn offer_frame_sync(
        &mut self,
        conn_id: u64,
        direction: Direction,
        offset: u64,
        parked: &[MessageCursor],
    ) -> SyncOffer {
        let Some(connection) = self.connections.by_id.get_mut(&conn_id) else {
            return SyncOffer::Stale;
        };
        let state = match connection.entry {
            KernelEntry::Socket(key) => self.kernel.sockets.get(&key, 0),
            KernelEntry::TlsSession(key) => self.kernel.tls_sessions.get(&key, 0),
        };
        let Ok(state) = state else {
            return SyncOffer::Stale;
        };
        let position = match direction {
            Direction::Egress => state.sent,
            Direction::Ingress => state.received,
        };
        if state.conn_id != conn_id || position != offset {
            return SyncOffer::Stale;
        }
        if state.framing[direction as usize].state != framing::LOST {
            connection.next_sync_check[direction as usize] = Instant::now() + FOLLOWING_RECHECK;
            return SyncOffer::NotNeeded;
        }
        let Some(cursor) = FrameCursor::at_frame_boundary(offset, parked) else {
            return SyncOffer::Stale;
        };
        let key = DirectionKey {
            conn_id,
            direction: direction as u64,
        };
        match self.kernel.resync.insert(key, cursor, 0) {
            Ok(()) => SyncOffer::Placed,
            Err(_) => SyncOffer::Stale,
        }
    }

    /// The connection does not carry HTTP/2, as its tracker found: the kernel side skips its
    /// bytes from each direction's next syscall on, only counting them.
    pub fn stop_copying(&mut self, conn_id: u64) {
        if !self.connections.by_id.contains_key(&conn_id) {
            return;
        }
        for direction in [Direction::Egress, Direction::Ingress] {
            let key = DirectionKey {
                conn_id,
                direction: direction as u64,
            };
            // A full map leaves the direction copied, as before: only a cost.
            let _ = self.kernel.resync.insert(key, FrameCursor::SKIP, 0);
        }
    }
}
