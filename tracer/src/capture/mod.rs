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
pub use processes::check_target;
pub use record::RecordError;
pub use tracer_common::{LossKind, MessageCursor};

use connections::{Connection, Connections};
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
                        source: Source::SocketSyscalls,
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
        self.connections.flush_stalled(sink);
        for (parent, child) in forks {
            self.on_fork(parent, child, sink);
        }
        for pid in execs {
            self.on_exec(pid, sink);
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
