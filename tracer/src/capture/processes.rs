//! The traced processes: starting to trace one, and following it through fork, exec and exit.
//! Sockets a process already had open are adopted, joined mid-flight.

use tracer_common::{
    DirectionKey, SocketKey, SocketState, TracedProcess, maps::traced_filter_slot,
};

use super::{
    Capture, CaptureError,
    connections::{Connection, KernelEntry},
    events::{CaptureEvent, Closing, ConnectionInfo, Origin},
    process_sockets::{self, ProcessHandle, SocketFacts},
    record::{self, KernelRecord},
};
use crate::stream::{Direction, OwnedChunk, Source, monotonic_now_ns};

/// Whether `pid` can be traced: a live process, not a kernel thread, and not the tracer itself
/// (whose own exports it would then capture, and export, forever).
pub fn check_target(pid: u32) -> Result<(), CaptureError> {
    if !process_sockets::process_alive(pid) {
        return Err(CaptureError::NoSuchProcess(pid));
    }
    if pid == std::process::id() {
        return Err(CaptureError::OwnProcess(pid));
    }
    if process_sockets::is_kernel_thread(pid) {
        return Err(CaptureError::KernelThread(pid));
    }
    Ok(())
}

/// How a process is traced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracing {
    /// The processes it starts are traced too.
    pub follow_children: bool,
    /// It is stopped whenever it maps a file executable, until its TLS library (if that is
    /// one) is hooked; for commands the tracer launched, never for others.
    pub hold_new_code: bool,
}

impl Capture {
    /// Starts capturing `pid` (all its threads). Its stream sockets that are already open are
    /// reported as connections joined mid-flight.
    pub fn trace_process(&mut self, pid: u32, how: Tracing) -> Result<(), CaptureError> {
        check_target(pid)?;
        let handle = ProcessHandle::open(pid).map_err(|source| {
            if source.raw_os_error() == Some(libc::ESRCH) {
                CaptureError::NoSuchProcess(pid)
            } else {
                CaptureError::Inspect { pid, source }
            }
        })?;
        let settings = TracedProcess {
            follow_children: u32::from(how.follow_children),
            hold_new_code: u32::from(how.hold_new_code),
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
        self.scan_tls_libraries(pid);
        Ok(())
    }

    /// No traced process is stopped on new code from now on (the tracer is stopping).
    pub fn stop_holding(&mut self) {
        let pids: Vec<u32> = self.kernel.traced.keys().filter_map(Result::ok).collect();
        for pid in pids {
            if let Ok(mut settings) = self.kernel.traced.get(&pid, 0)
                && settings.hold_new_code != 0
            {
                settings.hold_new_code = 0;
                let _ = self.kernel.traced.insert(pid, settings, 0);
            }
        }
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
        let info = ConnectionInfo {
            id: conn_id,
            pid,
            fd,
            origin: Origin::OpenBeforeAttach,
            source: Source::SocketSyscalls,
            local: facts.local,
            peer: facts.peer,
            rides_on: None,
            timestamp_ns: monotonic_now_ns(),
        };
        let mut connection = Connection::new(pid, fd);
        connection.tls.opened = Some(info.clone());
        self.connections.by_id.insert(conn_id, connection);
        self.queued.push(CaptureEvent::Opened(info));
    }

    /// A traced process exited. Exit closes its sockets without `close()`, so the kernel side
    /// never lets go of them: their socket entries and held-back records are removed here (the
    /// records delivered first), and the connections end. Its TLS sessions likewise.
    pub(super) fn forget_exited(
        &mut self,
        connections: &[(u64, KernelEntry)],
        timestamp_ns: u64,
        ready: &mut Vec<OwnedChunk>,
        sink: &mut dyn FnMut(CaptureEvent),
    ) {
        for &(conn_id, entry) in connections {
            self.forget_connection(
                conn_id,
                entry,
                timestamp_ns,
                Closing::ProcessExited,
                ready,
                sink,
            );
        }
    }

    /// Ends a connection the kernel side will never report closed: its kernel entries go, what
    /// it held back is delivered, and it is announced closed.
    pub(super) fn forget_connection(
        &mut self,
        conn_id: u64,
        entry: KernelEntry,
        timestamp_ns: u64,
        how: Closing,
        ready: &mut Vec<OwnedChunk>,
        sink: &mut dyn FnMut(CaptureEvent),
    ) {
        {
            let owned = |state: Result<SocketState, _>| {
                state.is_ok_and(|state: SocketState| state.conn_id == conn_id)
            };
            match entry {
                KernelEntry::Socket(key) => {
                    if owned(self.kernel.sockets.get(&key, 0)) {
                        let _ = self.kernel.sockets.remove(&key);
                    }
                }
                KernelEntry::TlsSession(key) => {
                    if owned(self.kernel.tls_sessions.get(&key, 0)) {
                        let _ = self.kernel.tls_sessions.remove(&key);
                    }
                }
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
        }
        self.connections
            .close(conn_id, timestamp_ns, how, None, sink);
    }

    /// The kernel added a forked task of a traced process. Threads share their process's
    /// sockets and need no entry of their own; a new process inherits its parent's sockets.
    pub(super) fn on_fork(&mut self, parent: u32, child: u32, sink: &mut dyn FnMut(CaptureEvent)) {
        if process_sockets::thread_group_of(child) != Some(child) {
            let _ = self.kernel.traced.remove(&child);
            return;
        }
        let Ok(handle) = ProcessHandle::open(child) else {
            return; // Already gone; its exit record will follow.
        };
        self.adopt_sockets(&handle, handle.socket_fds().unwrap_or_default());
        self.processes.insert(child, handle);
        self.scan_tls_libraries(child);
        sink(CaptureEvent::ProcessStarted { parent, pid: child });
        for event in self.queued.drain(..) {
            sink(event);
        }
    }

    /// A traced process replaced its program. exec closes the descriptors marked close-on-exec,
    /// and the kernel side, which cannot tell which those were, reported every socket of the
    /// process closed: those still open are adopted again, joined mid-flight.
    pub(super) fn on_exec(&mut self, pid: u32, sink: &mut dyn FnMut(CaptureEvent)) {
        // Taken out while its sockets are adopted, which needs the rest of `self`.
        let Some(handle) = self.processes.remove(&pid) else {
            return;
        };
        self.adopt_sockets(&handle, handle.socket_fds().unwrap_or_default());
        self.processes.insert(pid, handle);
        // Its TLS sessions went with the old program.
        let sessions: Vec<(u64, KernelEntry)> = self
            .connections
            .by_id
            .iter()
            .filter(|(_, connection)| {
                matches!(connection.entry, KernelEntry::TlsSession(key) if key.tgid == pid)
            })
            .map(|(&conn_id, connection)| (conn_id, connection.entry))
            .collect();
        let mut ready = Vec::new();
        for (conn_id, entry) in sessions {
            self.forget_connection(
                conn_id,
                entry,
                monotonic_now_ns(),
                Closing::Closed,
                &mut ready,
                sink,
            );
        }
        self.scan_tls_libraries(pid);
        sink(CaptureEvent::ProcessExec { pid });
        for event in self.queued.drain(..) {
            sink(event);
        }
    }
}
