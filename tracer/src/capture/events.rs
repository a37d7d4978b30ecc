//! What capture reports: connections opening and closing, their ordered bytes, and the traced
//! processes starting and exiting.

use crate::stream::{Chunk, Direction, Endpoint, Source};

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
    /// Where its bytes come from.
    pub source: Source,
    pub local: Option<Endpoint>,
    pub peer: Option<Endpoint>,
    /// A TLS session: the socket connection it rides on, where known.
    pub rides_on: Option<u64>,
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
    /// A TLS session announced without its socket was tied to it (see `capture::tls`).
    TlsSessionTied {
        conn_id: u64,
        socket: u64,
        local: Option<Endpoint>,
        peer: Option<Endpoint>,
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
    /// A traced process replaced its program (exec).
    ProcessExec {
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
