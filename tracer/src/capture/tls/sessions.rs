//! Tying a TLS session to the socket it rides on.
//!
//! The libraries grpc and node use drive TLS through memory buffers: the session has no file
//! descriptor, and its ciphertext reaches the socket through the process's own code. So the
//! tie is inferred, when the session is first seen (its first plaintext), from the process's
//! sockets that carry TLS records and have no session yet:
//!
//! 1. the one this thread moved bytes on last, if it is such a socket: grpc and node read the
//!    ciphertext and decrypt it on one thread, and encrypt and write it on one thread;
//! 2. otherwise the only such socket of the process, if there is exactly one.
//!
//! Joined mid-flight, a session's plaintext may come before the tracer has seen any of its
//! socket's bytes: the tie is then made when a socket is first seen to carry TLS, by the same
//! rules from the other side, and the session's spans get the addresses from then on.
//!
//! Where it can be wrong: a process that hands ciphertext between threads (rule 1 then sees
//! another connection's socket) while two of its TLS connections are new at once, or one whose
//! TLS socket closes and a new one opens between a session's handshake and its first
//! plaintext. Anything else leaves the session untied: its spans have no addresses, and it is
//! joined mid-flight (its start cannot be vouched for).

use tracer_common::{DataRecord, wire::CLIENT_PREFACE};

use crate::{
    capture::{
        connections::{Connection, KernelEntry},
        events::{ConnectionInfo, Origin},
        record::Pieces,
    },
    stream::Direction,
};

/// What a connection's side of the tie needs.
#[derive(Debug, Clone, Default)]
pub struct TlsLink {
    /// A socket: how it was opened (kept for the session that may ride on it).
    pub opened: Option<ConnectionInfo>,
    /// A socket: its first bytes are a TLS record.
    pub carries_tls: bool,
    /// The thread that moved its bytes last, and when (CLOCK_MONOTONIC nanoseconds).
    pub last_thread: u32,
    pub last_moved_ns: u64,
    /// A socket: the session riding on it. A session: its socket.
    pub partner: Option<u64>,
    /// A session not announced yet: what its announcement says, but for its origin, which its
    /// first plaintext tells.
    pub unannounced: Option<Unannounced>,
}

/// A session waiting for its first plaintext to be announced.
#[derive(Debug, Clone)]
pub struct Unannounced {
    /// Its announcement, but for the origin.
    pub info: ConnectionInfo,
    /// When its library was hooked (CLOCK_MONOTONIC nanoseconds).
    pub hooked_since_ns: u64,
    /// How and when its socket was opened, if it is tied to one.
    pub socket_opened: Option<(Origin, u64)>,
}

impl Unannounced {
    /// The announcement, now that its first plaintext (`record`, moved in `direction`) says
    /// where the session stands.
    pub fn announce(
        mut self,
        direction: Direction,
        record: &DataRecord,
        pieces: &Pieces<'_>,
    ) -> ConnectionInfo {
        self.info.origin = self.origin(direction, record, pieces);
        self.info
    }

    /// The library's hooks may have been put in place while the session was already open (a
    /// library is hooked when it is mapped; a process attached to by pid may connect
    /// meanwhile), so a session is taken as seen from its start only on evidence:
    /// - its socket was opened (its connect or accept seen) after the library was hooked: all
    ///   of the session's plaintext went through the hooks;
    /// - or its first plaintext is the client's connection preface (RFC 9113 §3.4), which only
    ///   a start holds; before it, nothing was exchanged that HPACK state depends on. The
    ///   side that wrote it connected (a client), the side that read it accepted.
    ///
    /// Any other session is joined mid-flight.
    fn origin(&self, direction: Direction, record: &DataRecord, pieces: &Pieces<'_>) -> Origin {
        if let Some((origin, opened_ns)) = self.socket_opened
            && origin.sees_stream_start()
            && opened_ns >= self.hooked_since_ns
        {
            return origin;
        }
        let starts_with_preface = record.offset == 0
            && pieces
                .clone()
                .next()
                .is_some_and(|(first, _)| first.starts_with(CLIENT_PREFACE));
        match (starts_with_preface, direction) {
            (true, Direction::Egress) => Origin::Connected,
            (true, Direction::Ingress) => Origin::Accepted,
            (false, _) => Origin::OpenBeforeAttach,
        }
    }
}

impl TlsLink {
    /// A data record of this connection arrived. True if it showed, just now, that the
    /// connection carries TLS.
    pub fn saw(&mut self, record: &DataRecord, pieces: &Pieces<'_>) -> bool {
        self.last_thread = record.header.tid;
        self.last_moved_ns = record.header.timestamp_ns;
        let tls_now = !self.carries_tls
            && record.offset == 0
            && pieces
                .clone()
                .next()
                .is_some_and(|(first, _)| is_tls_record_start(first));
        self.carries_tls |= tls_now;
        tls_now
    }
}

/// A TLS record header (RFC 8446 §5.1; RFC 5246 §6.2.1): a content type (change_cipher_spec,
/// alert, handshake, application_data) and a 3.x protocol version.
fn is_tls_record_start(bytes: &[u8]) -> bool {
    matches!(bytes, [20..=23, 3, 0..=4, ..])
}

/// The socket a new session of process `pid`, first seen on thread `thread`, rides on.
pub fn socket_of_new_session<'a>(
    connections: impl Iterator<Item = (&'a u64, &'a Connection)>,
    pid: u32,
    thread: u32,
) -> Option<u64> {
    tie(connections, thread, |connection| {
        matches!(connection.entry, KernelEntry::Socket(key) if key.tgid == pid)
            && connection.tls.carries_tls
            && connection.tls.partner.is_none()
    })
    .map(|(socket, _)| socket)
}

/// A socket of process `pid` was just found to carry TLS, its bytes moved by `thread`: the
/// session it carries, if one was seen first (joined mid-flight, a session's plaintext can
/// come before any ciphertext), by the same rules from the socket's side. The process's only
/// untied session is taken only if this is its only free TLS socket.
pub fn session_of_new_tls_socket<'a>(
    connections: impl Iterator<Item = (&'a u64, &'a Connection)> + Clone,
    pid: u32,
    thread: u32,
) -> Option<u64> {
    let free_sockets = connections
        .clone()
        .filter(|(_, connection)| {
            matches!(connection.entry, KernelEntry::Socket(key) if key.tgid == pid)
                && connection.tls.carries_tls
                && connection.tls.partner.is_none()
        })
        .count();
    let (session, by_thread) = tie(connections, thread, |connection| {
        matches!(connection.entry, KernelEntry::TlsSession(key) if key.tgid == pid)
            && connection.tls.partner.is_none()
    })?;
    (by_thread || free_sockets == 1).then_some(session)
}

/// Among the connections that are `candidate`s: the one `thread` moved bytes on last (and
/// `true`), else the only one; `None` when that leaves a choice.
fn tie<'a>(
    connections: impl Iterator<Item = (&'a u64, &'a Connection)>,
    thread: u32,
    candidate: impl Fn(&Connection) -> bool,
) -> Option<(u64, bool)> {
    let mut by_thread: Option<(u64, u64)> = None;
    let mut only = None;
    let mut count = 0;
    for (&conn_id, connection) in connections.filter(|(_, connection)| candidate(connection)) {
        if connection.tls.last_thread == thread
            && by_thread.is_none_or(|(_, at)| connection.tls.last_moved_ns > at)
        {
            by_thread = Some((conn_id, connection.tls.last_moved_ns));
        }
        only = Some(conn_id);
        count += 1;
    }
    by_thread
        .map(|(conn_id, _)| (conn_id, true))
        .or(only.filter(|_| count == 1).map(|conn_id| (conn_id, false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use tracer_common::{SocketKey, TlsSessionKey};

    const PID: u32 = 100;

    fn socket(fd: u32, thread: u32, moved_ns: u64, tls: bool) -> Connection {
        let mut connection =
            Connection::with_entry(KernelEntry::Socket(SocketKey { tgid: PID, fd }));
        connection.tls.carries_tls = tls;
        connection.tls.last_thread = thread;
        connection.tls.last_moved_ns = moved_ns;
        connection
    }

    fn session(ssl: u64, thread: u32, moved_ns: u64) -> Connection {
        let mut connection = Connection::with_entry(KernelEntry::TlsSession(TlsSessionKey {
            tgid: PID,
            _pad: 0,
            ssl,
        }));
        connection.tls.last_thread = thread;
        connection.tls.last_moved_ns = moved_ns;
        connection
    }

    fn socket_for(connections: &[(u64, Connection)], thread: u32) -> Option<u64> {
        socket_of_new_session(connections.iter().map(|(id, c)| (id, c)), PID, thread)
    }

    fn session_for(connections: &[(u64, Connection)], thread: u32) -> Option<u64> {
        session_of_new_tls_socket(connections.iter().map(|(id, c)| (id, c)), PID, thread)
    }

    #[test]
    fn a_session_rides_on_the_tls_socket_its_thread_moved_last() {
        let connections = [
            (1, socket(3, 7, 100, true)),
            (2, socket(4, 8, 300, true)),
            (3, socket(5, 7, 200, true)),
        ];
        assert_eq!(socket_for(&connections, 7), Some(3));
        assert_eq!(socket_for(&connections, 8), Some(2));
    }

    #[test]
    fn without_its_thread_only_a_single_free_tls_socket_is_taken() {
        let two = [(1, socket(3, 7, 100, true)), (2, socket(4, 8, 200, true))];
        assert_eq!(socket_for(&two, 9), None, "a choice: no tie");
        let mut taken = socket(4, 8, 200, true);
        taken.tls.partner = Some(99);
        let others = [
            (1, socket(3, 7, 100, true)),
            (2, taken),
            (3, socket(5, 9, 300, false)),
        ];
        assert_eq!(socket_for(&others, 9), Some(1), "the only free TLS socket");
    }

    #[test]
    fn a_socket_found_late_takes_an_untied_session_by_thread_or_as_the_only_pair() {
        let connections = [
            (10, session(0xa, 7, 100)),
            (11, session(0xb, 8, 200)),
            (1, socket(3, 8, 250, true)),
        ];
        assert_eq!(session_for(&connections, 8), Some(11));
        assert_eq!(
            session_for(&connections, 9),
            None,
            "two sessions, no thread"
        );
        let pair = [(10, session(0xa, 7, 100)), (1, socket(3, 8, 250, true))];
        assert_eq!(
            session_for(&pair, 8),
            Some(10),
            "the only session, the only socket"
        );
        let two_sockets = [
            (10, session(0xa, 7, 100)),
            (1, socket(3, 8, 250, true)),
            (2, socket(4, 9, 260, true)),
        ];
        assert_eq!(
            session_for(&two_sockets, 8),
            None,
            "which socket is not known"
        );
    }

    #[test]
    fn tls_records_are_recognised_by_their_header() {
        assert!(is_tls_record_start(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(is_tls_record_start(&[0x17, 0x03, 0x03]));
        assert!(!is_tls_record_start(b"PRI * HTTP/2.0"));
        assert!(!is_tls_record_start(&[0x00, 0x00, 0x12, 0x04]));
        assert!(!is_tls_record_start(&[0x16]));
    }
}
