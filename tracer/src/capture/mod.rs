//! Socket capture: attaches the kernel programs to processes and turns what they report into
//! ordered, per-connection byte streams with exact gaps.
//!
//! ```text
//! kernel programs --ring buffer--> record (decode) --> connections: ordering per direction
//!                                                   |      --> CaptureEvent (events)
//!                                                   \-> processes: fork, exec, exit; sockets
//!                                                          adopted from /proc (process_sockets)
//! frame_sync: a direction's frame position, handed back to the kernel side
//! ```

mod accounting;
mod config;
mod connections;
mod error;
mod events;
mod frame_sync;
mod kernel;
mod ordering;
mod privileges;
mod process_sockets;
mod processes;
mod record;
mod tls;
mod uprobe_multi;

use std::{os::fd::AsRawFd, time::Duration};

use foldhash::HashMap;
use tracer_common::{OpenRole, SocketKey, maps::USER_CONN_ID_BIT};

pub use accounting::{CaptureTraffic, LossReport};
#[cfg(feature = "bench-floors")]
pub use config::CaptureFloor;
pub use config::{CaptureConfig, DEFAULT_RING_BUFFER_BYTES};
pub use error::CaptureError;
pub use events::{CaptureEvent, Closing, ConnectionInfo, Origin};
pub use frame_sync::SyncOffer;
pub use kernel::ProgramTime;
pub use process_sockets::process_alive;
pub use processes::{Tracing, check_target};
pub use record::RecordError;
pub use tls::{Inspection, TlsLibrary, inspect as inspect_tls_library};
pub use tracer_common::{LossKind, MessageCursor};

use connections::{Connection, Connections, KernelEntry};
use kernel::KernelPrograms;
use process_sockets::ProcessHandle;
use record::KernelRecord;

use crate::stream::{Endpoint, Source};

/// Attached kernel programs plus the userspace state that orders their output.
/// Dropping it detaches everything.
pub struct Capture {
    kernel: KernelPrograms,
    processes: HashMap<u32, ProcessHandle>,
    connections: Connections,
    /// The TLS libraries of the traced processes, and their hooks.
    tls: tls::TlsHooks,
    next_user_conn_id: u64,
    /// Events produced outside `poll` (connections found at attach), delivered by the next poll.
    queued: Vec<CaptureEvent<'static>>,
    malformed_records: u64,
    traffic: CaptureTraffic,
    /// See [`CaptureConfig::floor`].
    #[cfg(feature = "bench-floors")]
    floor: CaptureFloor,
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
            tls: tls::TlsHooks::default(),
            next_user_conn_id: USER_CONN_ID_BIT | 1,
            queued: Vec::new(),
            malformed_records: 0,
            traffic: CaptureTraffic::default(),
            #[cfg(feature = "bench-floors")]
            floor: config.floor,
        })
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
        let mut mapped = Vec::new();
        let mut ended_sessions = Vec::new();
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
                // Counted, not decoded.
                #[cfg(feature = "bench-floors")]
                KernelRecord::Data { .. } if self.floor != CaptureFloor::None => {}
                KernelRecord::Data {
                    record,
                    direction,
                    pieces,
                } => self
                    .connections
                    .deliver(&record, direction, pieces, &mut ready, sink),
                KernelRecord::Open { header, role, addr } => {
                    // Read now, from whatever socket the descriptor holds: if the kernel still
                    // has this connection on it after the read, it held this one all along (a
                    // close would have removed it first); else it may be another's.
                    let facts = self
                        .processes
                        .get(&header.tgid)
                        .and_then(|process| process.inspect_socket(header.fd))
                        .filter(|_| {
                            let key = SocketKey {
                                tgid: header.tgid,
                                fd: header.fd,
                            };
                            self.kernel
                                .sockets
                                .get(&key, 0)
                                .is_ok_and(|state| state.conn_id == header.conn_id)
                        });
                    let reported_peer = Endpoint::from_sockaddr(addr);
                    let info = ConnectionInfo {
                        id: header.conn_id,
                        pid: header.tgid,
                        fd: header.fd,
                        origin: match role {
                            OpenRole::Connect => Origin::Connected,
                            OpenRole::Accept => Origin::Accepted,
                            OpenRole::Duplicate => Origin::Duplicated,
                        },
                        source: Source::SocketSyscalls,
                        local: facts.as_ref().and_then(|facts| facts.local.clone()),
                        // What the syscall saw is authoritative; the socket may be gone already.
                        peer: reported_peer.or_else(|| facts.and_then(|facts| facts.peer)),
                        rides_on: None,
                        timestamp_ns: header.timestamp_ns,
                    };
                    let mut connection = Connection::new(header.tgid, header.fd);
                    connection.tls.opened = Some(info.clone());
                    self.connections.by_id.insert(header.conn_id, connection);
                    sink(CaptureEvent::Opened(info));
                }
                KernelRecord::Close(close) => {
                    let conn_id = close.header.conn_id;
                    let session = self
                        .connections
                        .by_id
                        .get(&conn_id)
                        .and_then(|connection| connection.tls.partner);
                    self.connections.close(
                        conn_id,
                        close.header.timestamp_ns,
                        Closing::Closed,
                        Some([close.sent, close.received]),
                        sink,
                    );
                    // The session ends with its socket.
                    if let Some(session) = session {
                        ended_sessions.push((session, close.header.timestamp_ns));
                    }
                }
                KernelRecord::TlsOpen(open) => {
                    tls::open_session(&mut self.connections, &self.tls, &open);
                }
                KernelRecord::ExecutableMapped(map) => {
                    let pid = map.header.tgid;
                    match mapped.iter_mut().find(|(seen, _)| *seen == pid) {
                        Some((_, held)) => *held |= map.held != 0,
                        None => mapped.push((pid, map.held != 0)),
                    }
                }
                KernelRecord::ProcessFork(fork) => forks.push((fork.header.tgid, fork.pid)),
                KernelRecord::ProcessExec(exec) => execs.push(exec.pid),
                KernelRecord::ProcessExit(exit) => {
                    self.processes.remove(&exit.pid);
                    self.tls.forget(exit.pid);
                    // Its kernel entries are removed once the ring is drained (the item read
                    // borrows it); which connections were its is settled now, before a reused
                    // pid can bring new ones.
                    let sockets: Vec<(u64, KernelEntry)> = self
                        .connections
                        .by_id
                        .iter()
                        .filter(|(_, connection)| connection.entry.pid() == exit.pid)
                        .map(|(&conn_id, connection)| (conn_id, connection.entry))
                        .collect();
                    exits.push((exit, sockets));
                }
            }
        }
        for (session, timestamp_ns) in ended_sessions {
            self.end_tls_session(session, timestamp_ns, &mut ready, sink);
        }
        for (exit, sockets) in exits {
            self.forget_exited(&sockets, exit.header.timestamp_ns, &mut ready, sink);
            sink(CaptureEvent::ProcessExited {
                pid: exit.pid,
                timestamp_ns: exit.header.timestamp_ns,
            });
        }
        self.connections.flush_stalled(sink);
        for (parent, child) in forks {
            self.on_fork(parent, child, sink);
        }
        for pid in execs {
            self.on_exec(pid, sink);
        }
        for (pid, held) in mapped {
            self.scan_tls_libraries(pid);
            if held {
                // SAFETY: plain syscall. The process stopped a moment ago at its mmap; were it
                // gone since, its pid could not have been reused this soon.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
            }
        }
    }

    /// How many instructions the verifier processed for each kernel program, by name.
    pub fn verified_instructions(&self) -> Vec<(String, Option<u32>)> {
        self.kernel.verified_instructions()
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
