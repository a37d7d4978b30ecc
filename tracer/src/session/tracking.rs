//! What capture events do to the session's state: a connection tracker per connection, the
//! calls they finish, and the traced processes still alive.

use std::{cell::RefCell, rc::Rc};

use foldhash::{HashMap, HashSet};

use super::report::IgnoredConnections;
use crate::{
    capture::{CaptureEvent, Closing},
    export::{ProcessResources, ResourceOverrides},
    frame_sync::FrameSync,
    grpc::{CallRecord, ConnectionFacts, ConnectionTracker, EndReason, Limits, TrackerStats},
    http2::OtherProtocol,
    process_memory::{MemoryStats, ProcessMemory},
};

/// What capture events update: a tracker per connection, the calls they finished, and the
/// processes still alive. Events are handled as the capture produces them, while the bytes
/// they borrow are still in the ring buffer.
pub(super) struct Tracking {
    pub limits: Limits,
    pub trackers: HashMap<u64, ConnectionTracker>,
    /// Connections recognised as not HTTP/2 and dropped, and what they carried; they never
    /// have a tracker too.
    pub ignored: HashMap<u64, OtherProtocol>,
    /// Sockets a TLS session rides on, whose plaintext is decoded as a connection of its own.
    pub tls_carriers: HashSet<u64>,
    /// Every connection ignored so far, closed ones included, by what it carried.
    pub ignored_by_protocol: IgnoredConnections,
    pub alive: HashSet<u32>,
    pub connection_stats: TrackerStats,
    pub finished: Vec<CallRecord>,
    /// The connection directions that data came for, for the next frame sync offers.
    pub frame_sync: FrameSync,
    /// The resource (the process) each finished call is reported under.
    pub resources: ProcessResources,
    /// Per traced process: what its memory says of header-table entries from before attach.
    pub memories: HashMap<u32, Rc<RefCell<ProcessMemory>>>,
    /// What reading the memory of processes that exited cost.
    pub memory_stats: MemoryStats,
}

impl Tracking {
    pub fn new(limits: Limits, resources: ResourceOverrides) -> Tracking {
        Tracking {
            limits,
            trackers: HashMap::default(),
            ignored: HashMap::default(),
            tls_carriers: HashSet::default(),
            ignored_by_protocol: IgnoredConnections::default(),
            alive: HashSet::default(),
            connection_stats: TrackerStats::default(),
            finished: Vec::new(),
            frame_sync: FrameSync::default(),
            resources: ProcessResources::new(resources),
            memories: HashMap::default(),
            memory_stats: MemoryStats::default(),
        }
    }

    /// Lets go of calls held for a status lookup whose time is up at `now_ns` (or all).
    pub fn release_held(&mut self, now_ns: u64, all: bool) {
        for tracker in self.trackers.values_mut() {
            tracker.release_held(now_ns, all, &mut self.finished);
        }
    }

    /// What reading processes' memory cost, for the report.
    pub fn memory_stats(&self) -> MemoryStats {
        let mut stats = self.memory_stats;
        for memory in self.memories.values() {
            stats.add(&memory.borrow().stats);
        }
        stats
    }

    /// A TLS session rides on `socket`: its plaintext is decoded as a connection of its own.
    /// The socket's own bytes are TLS records. A socket seen from its start was found to be
    /// TLS by its first bytes and dropped already; one joined mid-flight was searched for
    /// HTTP/2 frames, which ciphertext never gives, at the cost of copying and searching every
    /// byte: it is dropped as TLS now, unless it has frames being followed (then it is not
    /// the TLS socket it was taken for).
    fn carries_tls(&mut self, socket: u64) {
        let newly = self.tls_carriers.insert(socket);
        if self.ignored.get(&socket) == Some(&OtherProtocol::Tls) {
            if newly {
                self.ignored_by_protocol.tls_decoded_elsewhere();
            }
            return;
        }
        let searched = self
            .trackers
            .get(&socket)
            .is_some_and(|tracker| !tracker.in_sync() && tracker.open_calls() == 0);
        if searched {
            self.stop_following(socket, OtherProtocol::Tls);
        }
    }

    /// Connection `conn_id` carries `what`, not HTTP/2: no more time is spent on it, here and
    /// in the kernel.
    fn stop_following(&mut self, conn_id: u64, what: OtherProtocol) {
        let Some(mut tracker) = self.trackers.remove(&conn_id) else {
            return;
        };
        // Calls it followed before it lost track, if any, are not lost with it.
        tracker.release_held(u64::MAX, true, &mut self.finished);
        self.connection_stats.add(tracker.stats());
        self.ignored.insert(conn_id, what);
        if what == OtherProtocol::Tls && self.tls_carriers.contains(&conn_id) {
            self.ignored_by_protocol.tls_decoded += 1;
        } else {
            self.ignored_by_protocol.count(what);
        }
        self.frame_sync.not_http2(conn_id);
    }

    pub fn handle(&mut self, event: CaptureEvent<'_>) {
        match event {
            CaptureEvent::Opened(info) => {
                let mut facts = ConnectionFacts::new(
                    info.id,
                    info.pid,
                    info.local,
                    info.peer,
                    info.origin.sees_stream_start(),
                );
                facts.source = info.source;
                self.ignored.remove(&info.id);
                if let Some(socket) = info.rides_on {
                    self.carries_tls(socket);
                }
                let mut tracker = ConnectionTracker::new(facts, self.limits);
                let memory = self
                    .memories
                    .entry(info.pid)
                    .or_insert_with(|| Rc::new(RefCell::new(ProcessMemory::new(info.pid))));
                tracker.recall_from(Rc::clone(memory) as Rc<RefCell<_>>);
                self.trackers.insert(info.id, tracker);
            }
            CaptureEvent::Data {
                conn_id,
                direction,
                chunk,
            } => {
                // Ignored connections have no tracker.
                let Some(tracker) = self.trackers.get_mut(&conn_id) else {
                    return;
                };
                self.frame_sync.fed(conn_id, direction);
                tracker.on_chunk(direction, &chunk, &mut self.finished);
                // Not HTTP/2 (a database, a TLS connection...).
                if let (Some(what), 0) = (tracker.stats().not_http2, tracker.open_calls()) {
                    self.stop_following(conn_id, what);
                }
            }
            CaptureEvent::TlsSessionTied {
                conn_id,
                socket,
                local,
                peer,
            } => {
                self.carries_tls(socket);
                if let Some(tracker) = self.trackers.get_mut(&conn_id) {
                    tracker.located(local, peer);
                }
            }
            CaptureEvent::Closed {
                conn_id,
                timestamp_ns,
                how,
            } => {
                self.ignored.remove(&conn_id);
                self.tls_carriers.remove(&conn_id);
                if let Some(mut tracker) = self.trackers.remove(&conn_id) {
                    let reason = match how {
                        Closing::Closed => EndReason::ConnectionClosed,
                        Closing::ProcessExited => EndReason::ProcessExited,
                    };
                    tracker.on_close(timestamp_ns, reason, &mut self.finished);
                    self.connection_stats.add(tracker.stats());
                }
            }
            CaptureEvent::ProcessStarted { pid, .. } => {
                self.alive.insert(pid);
                // Read while it still runs: its calls may outlive it.
                self.resources.of(pid);
            }
            CaptureEvent::ProcessExec { pid } => self.resources.refresh(pid),
            CaptureEvent::ProcessExited { pid, .. } => {
                self.alive.remove(&pid);
                if let Some(memory) = self.memories.remove(&pid) {
                    self.memory_stats.add(&memory.borrow().stats);
                }
                self.resources.exited(pid);
            }
        }
    }
}
