//! What the tracer reports about one gRPC call.

use std::{rc::Rc, sync::Arc, time::Duration};

use super::{headers::RequestHeaders, message::MessageStats, metadata::split_path, status::Code};
use crate::{
    hpack::Text,
    http2::ErrorCode,
    stream::{Endpoint, Source},
};

/// The connection a call ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    pub conn_id: u64,
    pub pid: u32,
    pub local: Option<Endpoint>,
    pub peer: Option<Endpoint>,
    /// False when the tracer joined the connection mid-flight.
    pub seen_from_start: bool,
    /// Where its bytes were captured.
    pub source: Source,
    /// The peer's IP address as text: formatted once per connection, not once per span.
    peer_ip: Option<String>,
}

impl ConnectionFacts {
    pub fn new(
        conn_id: u64,
        pid: u32,
        local: Option<Endpoint>,
        peer: Option<Endpoint>,
        seen_from_start: bool,
    ) -> ConnectionFacts {
        let peer_ip = match &peer {
            Some(Endpoint::Inet(address)) => Some(address.ip().to_string()),
            _ => None,
        };
        ConnectionFacts {
            conn_id,
            pid,
            local,
            peer,
            seen_from_start,
            source: Source::default(),
            peer_ip,
        }
    }

    /// The peer's IP address, for an internet socket.
    pub fn peer_ip(&self) -> Option<&str> {
        self.peer_ip.as_deref()
    }
}

/// Which end of the call the traced process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Client,
    Server,
}

/// What ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Response headers, then trailers with END_STREAM.
    Trailers,
    /// A single HEADERS frame with END_STREAM and no response body (§ "Trailers-Only").
    TrailersOnly,
    /// The response ended with a DATA frame's END_STREAM: no trailers, so no grpc-status.
    EndStreamWithoutTrailers,
    ResetByClient(ErrorCode),
    ResetByServer(ErrorCode),
    /// The server's GOAWAY said this stream would not be processed.
    GoAway,
    /// The connection closed before the call finished.
    ConnectionClosed,
    /// The process exited with the call in flight (and the connection open).
    ProcessExited,
    /// The frame that ended it was seen, but its header block was lost to a capture gap.
    FinalHeadersLost,
    /// It was in flight when bytes of its connection went uncaptured, and nothing of it was
    /// seen afterwards: it ended in the gap, or later, unseen. The record ends when the gap
    /// was found; its outcome is unknown.
    CaptureGap,
}

impl EndReason {
    /// The variant's name, as `{:?}` writes it; only resets need formatting (their code).
    pub fn label(&self) -> std::borrow::Cow<'static, str> {
        match self {
            EndReason::Trailers => "Trailers".into(),
            EndReason::TrailersOnly => "TrailersOnly".into(),
            EndReason::EndStreamWithoutTrailers => "EndStreamWithoutTrailers".into(),
            EndReason::GoAway => "GoAway".into(),
            EndReason::ConnectionClosed => "ConnectionClosed".into(),
            EndReason::ProcessExited => "ProcessExited".into(),
            EndReason::FinalHeadersLost => "FinalHeadersLost".into(),
            EndReason::CaptureGap => "CaptureGap".into(),
            EndReason::ResetByClient(_) | EndReason::ResetByServer(_) => format!("{self:?}").into(),
        }
    }
}

/// How a call's method or status came to be known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Provenance {
    /// Decoded from the call's own header fields.
    #[default]
    Decoded,
    /// Decoded from a literal value whose field name referred to a table entry from before
    /// attach, which gRPC's grammar names: the only field of the block that can carry it.
    NameFromGrammar,
    /// Read from the traced process's own header table, from the entry the field referred to
    /// (inserted before attach).
    ProcessMemory,
}

impl Provenance {
    /// What spans say when it is not [`Provenance::Decoded`].
    pub fn label(self) -> &'static str {
        match self {
            Provenance::Decoded => "decoded",
            Provenance::NameFromGrammar => "name from grammar",
            Provenance::ProcessMemory => "process memory",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub connection: Arc<ConnectionFacts>,
    pub side: Side,
    pub stream_id: u32,
    /// What the request headers said (shared by the calls whose request headers were the
    /// same); `None` when their block was lost.
    pub request_headers: Option<Rc<RequestHeaders>>,
    pub http_status: Option<u16>,
    /// `grpc-status` as sent, if it was.
    pub grpc_status: Option<u32>,
    /// How `grpc_status` was read.
    pub status_provenance: Provenance,
    /// How the path in `request_headers` was read.
    pub method_provenance: Provenance,
    /// `grpc-message`, percent-decoded.
    pub grpc_message: Option<String>,
    /// The status the client ends up with: grpc-status, else derived from the HTTP status, the
    /// reset code, or the deadline. `None` when the final status was lost to a capture gap.
    pub code: Option<Code>,
    /// When `code` is unknown but the wire says it is one of a few (a client's cancel that may
    /// have been its deadline): those.
    pub code_candidates: &'static [Code],
    /// RST_STREAM error code, when the stream was reset.
    pub reset: Option<ErrorCode>,
    pub end_reason: EndReason,
    /// CLOCK_MONOTONIC: the write that carried the request headers returned.
    pub start_ns: u64,
    /// CLOCK_MONOTONIC: the read that carried the end of the response returned.
    pub end_ns: u64,
    pub first_response_header_ns: Option<u64>,
    pub request: MessageStats,
    pub response: MessageStats,
}

/// What shows that a call failed when its status code is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownFailure<'a> {
    /// It ended with one of these codes, all failures; the wire cannot tell which.
    OneOf(&'static [Code]),
    /// The response's `:status` was not 200 (gRPC over HTTP/2: a gRPC response is 200).
    HttpStatus(u16),
    /// A `grpc-message` came, which gRPC sends only with an error.
    Message(&'a str),
}

impl CallRecord {
    /// When the status code is unknown (joined mid-flight, a capture gap) but the call is
    /// known to have failed: what shows it.
    pub fn failure_without_code(&self) -> Option<KnownFailure<'_>> {
        if self.code.is_some() {
            return None;
        }
        if !self.code_candidates.is_empty() {
            return Some(KnownFailure::OneOf(self.code_candidates));
        }
        if let Some(status) = self.http_status.filter(|&status| status != 200) {
            return Some(KnownFailure::HttpStatus(status));
        }
        self.grpc_message
            .as_deref()
            .filter(|message| !message.is_empty())
            .map(KnownFailure::Message)
    }

    /// When the status was known other than by decoding the call's own `grpc-status` field:
    /// how, as spans say it.
    pub fn status_inferred_from(&self) -> Option<Provenance> {
        match self.status_provenance {
            Provenance::Decoded => None,
            _ if self.code.is_none() || self.grpc_status.is_none() => None,
            inferred => Some(inferred),
        }
    }

    /// When the method was known other than by decoding the call's own `:path`: how.
    pub fn method_inferred_from(&self) -> Option<Provenance> {
        match self.method_provenance {
            Provenance::Decoded => None,
            _ if self.path().is_none() => None,
            inferred => Some(inferred),
        }
    }

    /// `:path`; `None` when it referenced header table state from before attach.
    pub fn path(&self) -> Option<&Text> {
        self.request_headers.as_ref()?.path.as_ref()
    }

    pub fn authority(&self) -> Option<&Text> {
        self.request_headers.as_ref()?.authority.as_ref()
    }

    pub fn user_agent(&self) -> Option<&Text> {
        self.request_headers.as_ref()?.user_agent.as_ref()
    }

    pub fn grpc_encoding(&self) -> Option<&Text> {
        self.request_headers.as_ref()?.grpc_encoding.as_ref()
    }

    /// `grpc-timeout`.
    pub fn timeout(&self) -> Option<Duration> {
        self.request_headers.as_ref()?.timeout
    }

    pub fn traceparent(&self) -> Option<&Text> {
        self.request_headers.as_ref()?.traceparent.as_ref()
    }

    pub fn tracestate(&self) -> Option<&Text> {
        self.request_headers.as_ref()?.tracestate.as_ref()
    }

    pub fn service_and_method(&self) -> Option<(&str, &str)> {
        self.path().and_then(|path| split_path(path))
    }

    /// Whether the request's `content-type` was read, which is what makes it gRPC; when it
    /// was not (joined mid-flight, or the request headers were lost), the call was taken for
    /// gRPC from what else was known.
    pub fn content_type_known(&self) -> bool {
        self.request_headers
            .as_ref()
            .is_some_and(|headers| headers.content_type_known)
    }

    /// Whether `:path` was decoded (false for some calls on connections joined mid-flight).
    pub fn method_resolved(&self) -> bool {
        self.path().is_some()
    }

    /// `package.Service/Method` (the path without its leading slash), the span name;
    /// `unknown` when the path could not be decoded.
    pub fn name(&self) -> &str {
        self.path().map_or("unknown", |path| {
            let slashes = path.bytes().take_while(|&byte| byte == b'/').count();
            &path[slashes..]
        })
    }

    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_ns.saturating_sub(self.start_ns))
    }

    pub fn time_to_first_response_header(&self) -> Option<Duration> {
        self.first_response_header_ns
            .map(|at| Duration::from_nanos(at.saturating_sub(self.start_ns)))
    }

    pub fn time_to_first_response_message(&self) -> Option<Duration> {
        self.response
            .first_ns
            .map(|at| Duration::from_nanos(at.saturating_sub(self.start_ns)))
    }
}
