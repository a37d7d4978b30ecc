//! TLS capture: finding the TLS library each traced process maps, hooking its plaintext
//! functions (uprobes, once per file), and tying each TLS session to the socket it rides on.
//!
//! ```text
//! /proc/PID/maps --> library (which library, where its functions are; stripped grpc: stripped)
//!                --> hooks   (uprobes attached per file; what each process has)
//! TlsOpen record --> sessions (which socket; joined at its start or mid-flight)
//! ```

mod hooks;
mod library;
mod sessions;
mod stripped;

pub use hooks::TlsHooks;
pub use library::{Inspection, TlsLibrary, inspect};
pub(super) use sessions::TlsLink;

use tracer_common::{TlsOpenRecord, TlsSessionKey};

use sessions::Unannounced;

use super::{
    Capture, CaptureEvent, Closing, ConnectionInfo, Origin,
    connections::{Connection, Connections, KernelEntry},
};
use crate::stream::{OwnedChunk, Source};

impl Capture {
    /// Hooks the TLS libraries `pid` maps that are not hooked yet.
    pub(super) fn scan_tls_libraries(&mut self, pid: u32) {
        let kernel = &mut self.kernel;
        self.tls.scan(pid, &mut |path, library| {
            kernel.attach_tls(path, &library.functions)
        });
    }

    /// Loads the TLS programs now rather than when the first TLS library is found (for the
    /// verifier-budget test, which must count them).
    pub fn load_tls_programs(&mut self) -> Result<(), super::CaptureError> {
        self.kernel.load_tls_programs()
    }

    /// The TLS libraries found in traced processes and not hooked, each with why.
    pub fn tls_not_hooked(&self) -> Vec<String> {
        self.tls.problems().to_vec()
    }
}

/// The kernel saw a TLS session's plaintext for the first time: tie it to its socket and
/// announce it. (Not a method: it runs while the ring buffer's record is borrowed.)
pub(super) fn open_session(connections: &mut Connections, hooks: &TlsHooks, open: &TlsOpenRecord) {
    let header = open.header;
    let pid = header.tgid;
    let socket = sessions::socket_of_new_session(connections.by_id.iter(), pid, header.tid);
    let socket_info = socket.and_then(|socket| {
        let connection = connections.by_id.get_mut(&socket)?;
        connection.tls.partner = Some(header.conn_id);
        connection.tls.opened.clone()
    });
    let hooked = hooks.library_at(pid, open.function);
    let library = hooked.map(|(library, _)| library);
    log::debug!(
        "TLS session {:#x} of process {pid} (thread {}, in {:?}): socket {socket:?}",
        open.ssl,
        header.tid,
        library.map(|library| library.name),
    );
    let key = TlsSessionKey {
        tgid: pid,
        _pad: 0,
        ssl: open.ssl,
    };
    let mut connection = Connection::with_entry(KernelEntry::TlsSession(key));
    connection.tls.partner = socket;
    let socket_opened = socket_info
        .as_ref()
        .map(|info| (info.origin, info.timestamp_ns));
    let info = ConnectionInfo {
        id: header.conn_id,
        pid,
        fd: header.fd,
        // Settled by its first plaintext.
        origin: Origin::OpenBeforeAttach,
        source: Source::Tls {
            library: library.map(|library| library.label),
        },
        local: socket_info.as_ref().and_then(|info| info.local.clone()),
        peer: socket_info.as_ref().and_then(|info| info.peer.clone()),
        rides_on: socket,
        timestamp_ns: header.timestamp_ns,
    };
    connection.tls.unannounced = Some(Unannounced {
        info,
        hooked_since_ns: hooked.map_or(u64::MAX, |(_, since)| since),
        socket_opened,
    });
    connections.by_id.insert(header.conn_id, connection);
}

/// A socket was just found to carry TLS: tie it to a session seen before it, if the rules
/// say which (see [`sessions`]), and say where the session is.
pub(super) fn tie_late(
    connections: &mut Connections,
    socket: u64,
    pid: u32,
    thread: u32,
    sink: &mut dyn FnMut(CaptureEvent),
) {
    let has_partner = connections
        .by_id
        .get(&socket)
        .is_none_or(|connection| connection.tls.partner.is_some());
    if has_partner {
        return;
    }
    let Some(session) = sessions::session_of_new_tls_socket(connections.by_id.iter(), pid, thread)
    else {
        return;
    };
    let Some(socket_connection) = connections.by_id.get_mut(&socket) else {
        return;
    };
    socket_connection.tls.partner = Some(session);
    let opened = socket_connection.tls.opened.clone();
    let Some(session_connection) = connections.by_id.get_mut(&session) else {
        return;
    };
    session_connection.tls.partner = Some(socket);
    log::debug!("TLS session {session:#x} of process {pid} tied late to socket {socket:#x}");
    let socket_opened = opened.as_ref().map(|info| (info.origin, info.timestamp_ns));
    let (local, peer) = opened.map_or((None, None), |info| (info.local, info.peer));
    match session_connection.tls.unannounced.as_mut() {
        Some(unannounced) => {
            unannounced.info.local = local;
            unannounced.info.peer = peer;
            unannounced.info.rides_on = Some(socket);
            unannounced.socket_opened = socket_opened;
        }
        None => sink(CaptureEvent::TlsSessionTied {
            conn_id: session,
            socket,
            local,
            peer,
        }),
    }
}

impl Capture {
    /// The socket a TLS session rode on closed: the session ends too, and its kernel entry
    /// goes (a new session at the same address starts afresh).
    pub(super) fn end_tls_session(
        &mut self,
        conn_id: u64,
        timestamp_ns: u64,
        ready: &mut Vec<OwnedChunk>,
        sink: &mut dyn FnMut(CaptureEvent),
    ) {
        let Some(entry) = self
            .connections
            .by_id
            .get(&conn_id)
            .map(|connection| connection.entry)
        else {
            return;
        };
        self.forget_connection(conn_id, entry, timestamp_ns, Closing::Closed, ready, sink);
    }
}
