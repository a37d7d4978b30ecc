//! The connections being captured: each direction's stream order, and the kernel socket entry
//! it belongs to.

use std::time::Instant;

use foldhash::HashMap;
use tracer_common::{DataRecord, NO_FD, SocketKey, TlsSessionKey};

use super::{
    events::{CaptureEvent, Closing, ConnectionInfo, Origin},
    ordering::StreamOrder,
    record::Pieces,
};
use crate::stream::{Chunk, Direction, OwnedChunk, Payload, Source};

impl Connection {
    /// Stops waiting for missing ranges in both directions: they become gaps, and everything
    /// held back behind them is delivered.
    fn flush(&mut self, conn_id: u64, sink: &mut dyn FnMut(CaptureEvent)) {
        self.finish(conn_id, None, sink);
    }

    /// Delivers what is held; with the directions' final lengths (`ends`, egress first), bytes
    /// never delivered before them become gaps.
    fn finish(
        &mut self,
        conn_id: u64,
        ends: Option<([u64; 2], u64)>,
        sink: &mut dyn FnMut(CaptureEvent),
    ) {
        let mut ready = Vec::new();
        for (index, (direction, order)) in [Direction::Egress, Direction::Ingress]
            .into_iter()
            .zip(&mut self.order)
            .enumerate()
        {
            match ends {
                Some((ends, timestamp_ns)) => order.finish(ends[index], timestamp_ns, &mut ready),
                None => order.flush(&mut ready),
            }
            for chunk in ready.drain(..) {
                sink(CaptureEvent::Data {
                    conn_id,
                    direction,
                    chunk: chunk.as_chunk(),
                });
            }
        }
    }
}

/// Where a connection's stream state lives in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KernelEntry {
    /// A socket's, in `SOCKETS`.
    Socket(SocketKey),
    /// A TLS session's, in `TLS_SESSIONS`.
    TlsSession(TlsSessionKey),
}

impl KernelEntry {
    pub(super) fn pid(self) -> u32 {
        match self {
            KernelEntry::Socket(key) => key.tgid,
            KernelEntry::TlsSession(key) => key.tgid,
        }
    }
}

pub(super) struct Connection {
    pub(super) entry: KernelEntry,
    /// What tying TLS sessions to sockets goes by (see `tls::sessions`).
    pub(super) tls: super::tls::TlsLink,
    /// Per [`Direction`] (egress, ingress).
    pub(super) order: [StreamOrder; 2],
    /// Poll rounds that ended with chunks still held back.
    stalled_rounds: u32,
    /// Per [`Direction`]: when a frame sync offer is next worth checking.
    pub(super) next_sync_check: [Instant; 2],
}

impl Connection {
    pub(super) fn new(pid: u32, fd: u32) -> Connection {
        Connection::with_entry(KernelEntry::Socket(SocketKey { tgid: pid, fd }))
    }

    pub(super) fn with_entry(entry: KernelEntry) -> Connection {
        let now = Instant::now();
        Connection {
            entry,
            tls: super::tls::TlsLink::default(),
            order: Default::default(),
            stalled_rounds: 0,
            next_sync_check: [now; 2],
        }
    }
}

/// The connections being captured, by id, and what became of the closed ones.
#[derive(Default)]
pub(super) struct Connections {
    pub(super) by_id: HashMap<u64, Connection>,
    pub(super) missing_bytes_closed: u64,
}

impl Connections {
    /// Hands a data record's pieces to its connection direction's ordering, and delivers what
    /// that made ready.
    pub(super) fn deliver(
        &mut self,
        record: &DataRecord,
        direction: Direction,
        pieces: Pieces<'_>,
        ready: &mut Vec<OwnedChunk>,
        sink: &mut dyn FnMut(CaptureEvent),
    ) {
        let conn_id = record.header.conn_id;
        let connection = match self.by_id.get_mut(&conn_id) {
            Some(connection) => connection,
            None => {
                // Its open record was lost (and counted); still deliver the data.
                sink(CaptureEvent::Opened(ConnectionInfo {
                    id: conn_id,
                    pid: record.header.tgid,
                    fd: record.header.fd,
                    origin: Origin::Unannounced,
                    source: if record.header.fd == NO_FD {
                        Source::Tls { library: None }
                    } else {
                        Source::SocketSyscalls
                    },
                    local: None,
                    peer: None,
                    rides_on: None,
                    timestamp_ns: record.header.timestamp_ns,
                }));
                self.by_id
                    .entry(conn_id)
                    .or_insert_with(|| Connection::new(record.header.tgid, record.header.fd))
            }
        };
        let tls_now = connection.tls.saw(record, &pieces);
        // A TLS session is announced with its first plaintext, which says where it stands.
        if let Some(unannounced) = connection.tls.unannounced.take() {
            let info = unannounced.announce(direction, record, &pieces);
            log::debug!(
                "TLS session {conn_id:#x} starts {direction:?} at {}: {:?}",
                record.offset,
                pieces
                    .clone()
                    .next()
                    .map(|(kept, _)| &kept[..kept.len().min(24)])
            );
            sink(CaptureEvent::Opened(info));
        }
        let timestamp_ns = record.header.timestamp_ns;
        let mut offset = record.offset;
        for (kept, skipped) in pieces {
            for payload in [Payload::Bytes(kept), Payload::Gap(skipped)] {
                if payload.is_empty() {
                    continue;
                }
                let chunk = Chunk {
                    offset,
                    timestamp_ns,
                    payload,
                };
                offset += payload.len();
                let order = &mut connection.order[direction as usize];
                if order.take_in_order(&chunk) {
                    sink(CaptureEvent::Data {
                        conn_id,
                        direction,
                        chunk,
                    });
                    continue;
                }
                order.push(chunk, ready);
                for chunk in ready.drain(..) {
                    sink(CaptureEvent::Data {
                        conn_id,
                        direction,
                        chunk: chunk.as_chunk(),
                    });
                }
            }
        }
        if tls_now {
            super::tls::tie_late(self, conn_id, record.header.tgid, record.header.tid, sink);
        }
    }

    /// The connection is gone: what it still held back is delivered, and it is announced closed.
    /// With the final length of each direction (`ends`, egress first, as the kernel counted
    /// them at close), a tail whose records were lost is delivered as a gap first.
    pub(super) fn close(
        &mut self,
        conn_id: u64,
        timestamp_ns: u64,
        how: Closing,
        ends: Option<[u64; 2]>,
        sink: &mut dyn FnMut(CaptureEvent),
    ) {
        if let Some(mut connection) = self.by_id.remove(&conn_id) {
            connection.finish(conn_id, ends.map(|ends| (ends, timestamp_ns)), sink);
            self.missing_bytes_closed += connection
                .order
                .iter()
                .map(|order| order.missing_bytes)
                .sum::<u64>();
        }
        sink(CaptureEvent::Closed {
            conn_id,
            timestamp_ns,
            how,
        });
    }

    /// Chunks held back for two rounds in a row wait for a record that was lost: move on.
    pub fn flush_stalled(&mut self, sink: &mut dyn FnMut(CaptureEvent)) {
        for (&conn_id, connection) in &mut self.by_id {
            if !connection.order.iter().any(StreamOrder::has_held) {
                connection.stalled_rounds = 0;
                continue;
            }
            connection.stalled_rounds += 1;
            if connection.stalled_rounds < 2 {
                continue;
            }
            connection.stalled_rounds = 0;
            connection.flush(conn_id, sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a close delivers, as (direction, offset, gap length) for gaps and `None` for the
    /// close itself.
    fn closing(ends: Option<[u64; 2]>) -> Vec<Option<(Direction, u64, u64)>> {
        let mut connections = Connections::default();
        let mut connection = Connection::new(7, 3);
        // 100 bytes out delivered, nothing in.
        let sent = [0u8; 100];
        assert!(connection.order[0].take_in_order(&Chunk {
            offset: 0,
            timestamp_ns: 1,
            payload: Payload::Bytes(&sent),
        }));
        connections.by_id.insert(1, connection);
        let mut events = Vec::new();
        connections.close(1, 50, Closing::Closed, ends, &mut |event| {
            events.push(match event {
                CaptureEvent::Data {
                    direction, chunk, ..
                } => match chunk.payload {
                    Payload::Gap(len) => Some((direction, chunk.offset, len)),
                    Payload::Bytes(_) => panic!("bytes at close: {chunk:?}"),
                },
                CaptureEvent::Closed { .. } => None,
                other => panic!("{other:?}"),
            });
        });
        events
    }

    #[test]
    fn a_tail_lost_before_a_close_is_delivered_as_a_gap_first() {
        // The kernel counted 160 bytes out and 40 in: both tails were lost.
        assert_eq!(
            closing(Some([160, 40])),
            [
                Some((Direction::Egress, 100, 60)),
                Some((Direction::Ingress, 0, 40)),
                None
            ]
        );
        // Everything arrived, or nothing says how long the streams were: just the close.
        assert_eq!(closing(Some([100, 0])), [None]);
        assert_eq!(closing(None), [None]);
    }
}
