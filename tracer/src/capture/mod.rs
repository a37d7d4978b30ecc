//! Socket capture: attaches the kernel programs to processes and turns what they report into
//! ordered, per-connection byte streams with exact gaps.
//!
//! ```text
//! kernel programs --ring buffer--> record (decode) --> ordering (per direction) --> CaptureEvent
//!                                                  \-> process_sockets (addresses, /proc seeding)
//! ```

mod endpoint;
mod kernel;
mod ordering;
mod privileges;
mod process_sockets;
mod record;

use foldhash::HashMap;
use std::{
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

pub use endpoint::Endpoint;
pub use ordering::{Chunk, OwnedChunk, Payload};
pub use process_sockets::process_alive;
pub use record::RecordError;
use tracer_common::{
    DataRecord, DirectionKey, FrameCursor, OpenRole, SocketKey, SocketState, TracedProcess,
    maps::{USER_CONN_ID_BIT, floor, framing, traced_filter_slot},
};
pub use tracer_common::{Direction, LossKind, MessageCursor};

use kernel::KernelPrograms;
pub use kernel::ProgramTime;
use ordering::StreamOrder;
use process_sockets::{ProcessHandle, SocketFacts};
use record::{KernelRecord, Pieces};

/// Default ring buffer size: room for a burst of large transfers.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("process {0} does not exist")]
    NoSuchProcess(u32),
    #[error(
        "insufficient privileges: missing {0} (run as root, or grant CAP_BPF, CAP_PERFMON and \
         CAP_SYS_PTRACE)"
    )]
    MissingCapabilities(String),
    #[error("this kernel cannot run the tracer: {0}")]
    KernelFeature(&'static str),
    #[error(
        "running in a PID namespace of its own (a container's?), whose pids are not the ones \
         the kernel programs see: run the tracer in the host's PID namespace (docker run \
         --pid=host, Kubernetes hostPID: true)"
    )]
    PidNamespace,
    #[error("loading the eBPF programs failed: {0}")]
    Load(String),
    #[error("the kernel verifier rejected program {program}: {detail}")]
    Verifier { program: String, detail: String },
    #[error("attaching tracepoint {tracepoint} failed: {detail}")]
    Attach { tracepoint: String, detail: String },
    #[error("updating kernel map {map}: {detail}")]
    Map { map: &'static str, detail: String },
    #[error("inspecting process {pid}: {source}")]
    Inspect { pid: u32, source: std::io::Error },
    #[error("waiting for kernel records: {0}")]
    Poll(std::io::Error),
}

/// How the tracer learned about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The traced process called connect(): both streams are seen from their first byte.
    Connected,
    /// The traced process accepted it: both streams are seen from their first byte.
    Accepted,
    /// It was already open when tracing started: the streams are joined mid-flight.
    OpenBeforeAttach,
    /// Its data arrived but its open record was lost (counted); joined mid-flight.
    Unannounced,
    /// The traced process duplicated a connection's descriptor onto this one; joined mid-flight
    /// (what moves through the original descriptor stays with the original connection).
    Duplicated,
}

impl Origin {
    /// Whether offset 0 of each direction is the real start of the stream.
    pub fn sees_stream_start(self) -> bool {
        matches!(self, Origin::Connected | Origin::Accepted)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Unique for the socket's lifetime, even when its fd number is reused.
    pub id: u64,
    pub pid: u32,
    pub fd: u32,
    pub origin: Origin,
    pub local: Option<Endpoint>,
    pub peer: Option<Endpoint>,
    /// CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureEvent<'a> {
    Opened(ConnectionInfo),
    /// The next piece of one direction of a connection, in stream order. Its bytes are
    /// borrowed (usually from the ring buffer) for as long as the event is handled.
    Data {
        conn_id: u64,
        direction: Direction,
        chunk: Chunk<'a>,
    },
    Closed {
        conn_id: u64,
        timestamp_ns: u64,
        how: Closing,
    },
    /// A traced process that follows its children started one; it is traced too.
    ProcessStarted {
        parent: u32,
        pid: u32,
    },
    ProcessExited {
        pid: u32,
        timestamp_ns: u64,
    },
}

/// How a connection came to an end, for the traced process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// It closed the socket (or its last descriptor of it).
    Closed,
    /// It exited with the socket open: exit closed it.
    ProcessExited,
}

/// For benchmarking only: what the kernel sends for a data move instead of following its
/// framing. Those records are counted, not delivered (nothing is decoded), so what tracing
/// costs the traced process then is a floor under the full capture's cost: what any capture
/// that does at least as much must pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFloor {
    /// The full capture.
    None,
    /// A bare record per data move (connection, direction, offset, length, time), no bytes:
    /// the least any capture that hears of every syscall pays.
    BareRecords,
    /// A record per data move keeping the bytes of its first segment, read with the fewest
    /// user-memory reads (the iovec, then the bytes), and no framing followed: the least any
    /// capture that reads the bytes pays.
    CopiedRecords,
}

impl CaptureFloor {
    /// The kernel's `CAPTURE_FLOOR` value.
    pub fn kernel_value(self) -> u8 {
        match self {
            CaptureFloor::None => floor::NONE,
            CaptureFloor::BareRecords => floor::BARE_RECORDS,
            CaptureFloor::CopiedRecords => floor::COPIED_RECORDS,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Size of the kernel-to-user ring buffer: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// For benchmarking only: see [`CaptureFloor`].
    pub floor: CaptureFloor,
    /// Turn on the kernel's BPF run-time statistics, for [`Capture::hook_time`].
    pub hook_time: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
            floor: CaptureFloor::None,
            hook_time: false,
        }
    }
}

/// Everything that was lost, by cause. Nothing is dropped without being counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LossReport {
    /// Kernel-side counters, summed over CPUs, indexed like [`LossKind::ALL`].
    pub kernel: [u64; LossKind::ALL.len()],
    /// Ring buffer records that could not be decoded.
    pub malformed_records: u64,
    /// Bytes that never arrived in order and were turned into gaps by userspace.
    pub missing_bytes: u64,
}

impl LossReport {
    pub fn total_kernel(&self) -> u64 {
        self.kernel.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total_kernel() == 0 && self.malformed_records == 0 && self.missing_bytes == 0
    }

    /// `(description, count)` for every non-zero counter.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<_> = LossKind::ALL
            .iter()
            .zip(self.kernel)
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| (kind.name(), count))
            .collect();
        if self.malformed_records > 0 {
            out.push(("malformed ring buffer records", self.malformed_records));
        }
        if self.missing_bytes > 0 {
            out.push(("bytes missing from reordered streams", self.missing_bytes));
        }
        out
    }
}

impl Connection {
    /// Stops waiting for missing ranges in both directions: they become gaps, and everything
    /// held back behind them is delivered.
    fn flush(&mut self, conn_id: u64, sink: &mut dyn FnMut(CaptureEvent)) {
        let mut ready = Vec::new();
        for (direction, order) in [Direction::Egress, Direction::Ingress]
            .into_iter()
            .zip(&mut self.order)
        {
            order.flush(&mut ready);
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

struct Connection {
    /// Its entry in the kernel's socket table.
    socket: SocketKey,
    /// Per [`Direction`] (egress, ingress).
    order: [StreamOrder; 2],
    /// Poll rounds that ended with chunks still held back.
    stalled_rounds: u32,
    /// Per [`Direction`]: when a frame sync offer is next worth checking.
    next_sync_check: [Instant; 2],
}

impl Connection {
    fn new(pid: u32, fd: u32) -> Connection {
        let now = Instant::now();
        Connection {
            socket: SocketKey { tgid: pid, fd },
            order: Default::default(),
            stalled_rounds: 0,
            next_sync_check: [now; 2],
        }
    }
}

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

/// Attached kernel programs plus the userspace state that orders their output.
/// Dropping it detaches everything.
pub struct Capture {
    kernel: KernelPrograms,
    processes: HashMap<u32, ProcessHandle>,
    connections: Connections,
    next_user_conn_id: u64,
    /// Events produced outside `poll` (connections found at attach), delivered by the next poll.
    queued: Vec<CaptureEvent<'static>>,
    malformed_records: u64,
    traffic: CaptureTraffic,
    /// See [`CaptureConfig::floor`].
    floor: CaptureFloor,
}

/// The connections being captured, by id, and what became of the closed ones.
#[derive(Default)]
struct Connections {
    by_id: HashMap<u64, Connection>,
    missing_bytes_closed: u64,
}

impl Connections {
    /// Hands a data record's pieces to its connection direction's ordering, and delivers what
    /// that made ready.
    fn deliver(
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
                    local: None,
                    peer: None,
                    timestamp_ns: record.header.timestamp_ns,
                }));
                self.by_id
                    .entry(conn_id)
                    .or_insert_with(|| Connection::new(record.header.tgid, record.header.fd))
            }
        };
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
    }

    /// The connection is gone: what it still held back is delivered, and it is announced closed.
    fn close(
        &mut self,
        conn_id: u64,
        timestamp_ns: u64,
        how: Closing,
        sink: &mut dyn FnMut(CaptureEvent),
    ) {
        if let Some(mut connection) = self.by_id.remove(&conn_id) {
            connection.flush(conn_id, sink);
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
}

/// How much the kernel side delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureTraffic {
    /// Ring buffer records read.
    pub records: u64,
    /// Their total size, headers included: what crossed from kernel to user.
    pub ring_bytes: u64,
}

impl Capture {
    /// Checks privileges and kernel features, loads and attaches the programs. No process is
    /// traced until [`Capture::trace_process`].
    pub fn new(config: &CaptureConfig) -> Result<Capture, CaptureError> {
        privileges::check_capabilities()?;
        privileges::check_pid_namespace()?;
        privileges::check_kernel_features()?;
        let tracefs = privileges::tracefs_root()?;
        let kernel = KernelPrograms::load(config, tracefs)?;
        Ok(Capture {
            kernel,
            processes: HashMap::default(),
            connections: Connections::default(),
            next_user_conn_id: USER_CONN_ID_BIT | 1,
            queued: Vec::new(),
            malformed_records: 0,
            traffic: CaptureTraffic::default(),
            floor: config.floor,
        })
    }

    /// Starts capturing `pid` (all its threads). Its stream sockets that are already open are
    /// reported as connections joined mid-flight.
    pub fn trace_process(&mut self, pid: u32, follow_children: bool) -> Result<(), CaptureError> {
        if !process_sockets::process_alive(pid) {
            return Err(CaptureError::NoSuchProcess(pid));
        }
        let handle = ProcessHandle::open(pid).map_err(|source| {
            if source.raw_os_error() == Some(libc::ESRCH) {
                CaptureError::NoSuchProcess(pid)
            } else {
                CaptureError::Inspect { pid, source }
            }
        })?;
        let settings = TracedProcess {
            follow_children: u32::from(follow_children),
            _pad: 0,
        };
        // The filter first: the kernel only asks TRACED about tgids whose slot is set.
        self.kernel
            .traced_filter
            .set(traced_filter_slot(pid), 1, 0)
            .map_err(|err| CaptureError::Map {
                map: "TRACED_FILTER",
                detail: err.to_string(),
            })?;
        self.kernel
            .traced
            .insert(pid, settings, 0)
            .map_err(|err| CaptureError::Map {
                map: "TRACED",
                detail: err.to_string(),
            })?;
        // Sockets opened from here on are tracked by the kernel; now add those that already were.
        let fds = handle
            .socket_fds()
            .map_err(|source| CaptureError::Inspect { pid, source })?;
        self.adopt_sockets(&handle, fds);
        self.processes.insert(pid, handle);
        Ok(())
    }

    /// Pids currently traced (including followed children), as far as userspace knows.
    pub fn traced_processes(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.processes.keys().copied().collect();
        pids.sort_unstable();
        pids
    }

    /// Adopts, joined mid-flight, the stream sockets among `fds` (descriptors of the process
    /// `handle` holds).
    fn adopt_sockets(&mut self, handle: &ProcessHandle, fds: Vec<u32>) {
        for fd in fds {
            if let Some(facts) = handle.inspect_socket(fd) {
                self.adopt_existing_socket(handle.pid, fd, facts);
            }
        }
    }

    fn adopt_existing_socket(&mut self, pid: u32, fd: u32, facts: SocketFacts) {
        let key = SocketKey { tgid: pid, fd };
        let conn_id = if facts.is_connection() {
            self.next_user_conn_id
        } else {
            0
        };
        // Joined mid-stream: where its frames start is unknown, so every byte is copied.
        let state = SocketState::new(conn_id, false);
        // BPF_NOEXIST: if the kernel already saw this fd being (re)created since the process
        // became traced, its entry is fresher than what we read.
        const BPF_NOEXIST: u64 = 1;
        if self.kernel.sockets.insert(key, state, BPF_NOEXIST).is_err() || conn_id == 0 {
            return;
        }
        self.next_user_conn_id += 1;
        self.connections
            .by_id
            .insert(conn_id, Connection::new(pid, fd));
        self.queued.push(CaptureEvent::Opened(ConnectionInfo {
            id: conn_id,
            pid,
            fd,
            origin: Origin::OpenBeforeAttach,
            local: facts.local,
            peer: facts.peer,
            timestamp_ns: monotonic_now_ns(),
        }));
    }

    /// Waits up to `timeout` for kernel records and hands every resulting event to `sink`.
    pub fn poll(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(CaptureEvent),
    ) -> Result<(), CaptureError> {
        for event in self.queued.drain(..) {
            sink(event);
        }
        let mut pollfd = libc::pollfd {
            fd: self.kernel.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
        if ready < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(CaptureError::Poll(err));
            }
        }
        self.drain(sink);
        Ok(())
    }

    /// Delivers everything the ring buffer holds, then gives up on ranges that stayed missing.
    fn drain(&mut self, sink: &mut dyn FnMut(CaptureEvent)) {
        let mut ready = Vec::new();
        let mut forks = Vec::new();
        let mut exits = Vec::new();
        let mut execs = Vec::new();
        while let Some(item) = self.kernel.events.next() {
            self.traffic.records += 1;
            self.traffic.ring_bytes += item.len() as u64;
            let record = match KernelRecord::parse(&item) {
                Ok(record) => record,
                Err(err) => {
                    log::debug!("malformed ring buffer record: {err}");
                    self.malformed_records += 1;
                    continue;
                }
            };
            match record {
                KernelRecord::Data { .. } if self.floor != CaptureFloor::None => {}
                KernelRecord::Data {
                    record,
                    direction,
                    pieces,
                } => self
                    .connections
                    .deliver(&record, direction, pieces, &mut ready, sink),
                KernelRecord::Open { header, role, addr } => {
                    let facts = self
                        .processes
                        .get(&header.tgid)
                        .and_then(|process| process.inspect_socket(header.fd));
                    let reported_peer = Endpoint::from_sockaddr(addr);
                    self.connections
                        .by_id
                        .insert(header.conn_id, Connection::new(header.tgid, header.fd));
                    sink(CaptureEvent::Opened(ConnectionInfo {
                        id: header.conn_id,
                        pid: header.tgid,
                        fd: header.fd,
                        origin: match role {
                            OpenRole::Connect => Origin::Connected,
                            OpenRole::Accept => Origin::Accepted,
                            OpenRole::Duplicate => Origin::Duplicated,
                        },
                        local: facts.as_ref().and_then(|facts| facts.local.clone()),
                        // What the syscall saw is authoritative; the socket may be gone already.
                        peer: reported_peer.or_else(|| facts.and_then(|facts| facts.peer)),
                        timestamp_ns: header.timestamp_ns,
                    }));
                }
                KernelRecord::Close(close) => {
                    self.connections.close(
                        close.header.conn_id,
                        close.header.timestamp_ns,
                        Closing::Closed,
                        sink,
                    );
                }
                KernelRecord::ProcessFork(fork) => forks.push((fork.header.tgid, fork.pid)),
                KernelRecord::ProcessExec(exec) => execs.push(exec.pid),
                KernelRecord::ProcessExit(exit) => {
                    self.processes.remove(&exit.pid);
                    // Its kernel entries are removed once the ring is drained (the item read
                    // borrows it); which connections were its is settled now, before a reused
                    // pid can bring new ones.
                    let sockets: Vec<(u64, SocketKey)> = self
                        .connections
                        .by_id
                        .iter()
                        .filter(|(_, connection)| connection.socket.tgid == exit.pid)
                        .map(|(&conn_id, connection)| (conn_id, connection.socket))
                        .collect();
                    exits.push((exit, sockets));
                }
            }
        }
        for (exit, sockets) in exits {
            self.forget_exited(&sockets, exit.header.timestamp_ns, &mut ready, sink);
            sink(CaptureEvent::ProcessExited {
                pid: exit.pid,
                timestamp_ns: exit.header.timestamp_ns,
            });
        }
        self.flush_stalled(sink);
        for (parent, child) in forks {
            self.on_fork(parent, child, sink);
        }
        for pid in execs {
            self.on_exec(pid, sink);
        }
    }

    /// A traced process exited. Exit closes its sockets without `close()`, so the kernel side
    /// never lets go of them: their socket entries and held-back records are removed here (the
    /// records delivered first), and the connections end.
    fn forget_exited(
        &mut self,
        sockets: &[(u64, SocketKey)],
        timestamp_ns: u64,
        ready: &mut Vec<OwnedChunk>,
        sink: &mut dyn FnMut(CaptureEvent),
    ) {
        for &(conn_id, socket) in sockets {
            if self
                .kernel
                .sockets
                .get(&socket, 0)
                .is_ok_and(|state| state.conn_id == conn_id)
            {
                let _ = self.kernel.sockets.remove(&socket);
            }
            for direction in [Direction::Egress, Direction::Ingress] {
                let key = DirectionKey {
                    conn_id,
                    direction: direction as u64,
                };
                let _ = self.kernel.resync.remove(&key);
                let Ok(held) = self.kernel.deferred.get(&key, 0) else {
                    continue;
                };
                let _ = self.kernel.deferred.remove(&key);
                let bytes = record::held_record_bytes(&held);
                match bytes.as_deref().map(KernelRecord::parse) {
                    Some(Ok(KernelRecord::Data {
                        record,
                        direction,
                        pieces,
                    })) => self
                        .connections
                        .deliver(&record, direction, pieces, ready, sink),
                    _ => self.malformed_records += 1,
                }
            }
            self.connections
                .close(conn_id, timestamp_ns, Closing::ProcessExited, sink);
        }
    }

    /// Chunks held back for two rounds in a row wait for a record that was lost: move on.
    fn flush_stalled(&mut self, sink: &mut dyn FnMut(CaptureEvent)) {
        for (&conn_id, connection) in &mut self.connections.by_id {
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

    /// The kernel added a forked task of a traced process. Threads share their process's
    /// sockets and need no entry of their own; a new process inherits its parent's sockets.
    fn on_fork(&mut self, parent: u32, child: u32, sink: &mut dyn FnMut(CaptureEvent)) {
        if process_sockets::thread_group_of(child) != Some(child) {
            let _ = self.kernel.traced.remove(&child);
            return;
        }
        let Ok(handle) = ProcessHandle::open(child) else {
            return; // Already gone; its exit record will follow.
        };
        self.adopt_sockets(&handle, handle.socket_fds().unwrap_or_default());
        self.processes.insert(child, handle);
        sink(CaptureEvent::ProcessStarted { parent, pid: child });
        for event in self.queued.drain(..) {
            sink(event);
        }
    }

    /// A traced process replaced its program. exec closes the descriptors marked close-on-exec,
    /// and the kernel side, which cannot tell which those were, reported every socket of the
    /// process closed: those still open are adopted again, joined mid-flight.
    fn on_exec(&mut self, pid: u32, sink: &mut dyn FnMut(CaptureEvent)) {
        // Taken out while its sockets are adopted, which needs the rest of `self`.
        let Some(handle) = self.processes.remove(&pid) else {
            return;
        };
        self.adopt_sockets(&handle, handle.socket_fds().unwrap_or_default());
        self.processes.insert(pid, handle);
        for event in self.queued.drain(..) {
            sink(event);
        }
    }

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
        let Ok(state) = self.kernel.sockets.get(&connection.socket, 0) else {
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

    /// The time the kernel programs ran since they were attached, busiest first; `None`
    /// unless [`CaptureConfig::hook_time`] asked for it.
    pub fn hook_time(&self) -> Option<Vec<ProgramTime>> {
        self.kernel.hook_time()
    }

    pub fn traffic(&self) -> CaptureTraffic {
        self.traffic
    }

    /// Loss counters so far.
    pub fn losses(&self) -> LossReport {
        let mut report = LossReport {
            malformed_records: self.malformed_records,
            missing_bytes: self.connections.missing_bytes_closed
                + self
                    .connections
                    .by_id
                    .values()
                    .flat_map(|connection| &connection.order)
                    .map(|order| order.missing_bytes)
                    .sum::<u64>(),
            ..LossReport::default()
        };
        for (index, slot) in report.kernel.iter_mut().enumerate() {
            if let Ok(per_cpu) = self.kernel.losses.get(&(index as u32), 0) {
                *slot = per_cpu.iter().sum();
            }
        }
        report
    }
}

/// CLOCK_MONOTONIC now, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_now_ns() -> u64 {
    // SAFETY: timespec is plain old data; clock_gettime fills it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
