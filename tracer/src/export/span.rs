//! The span a call becomes, independent of how it is shipped. Attribute names follow the
//! OpenTelemetry RPC semantic conventions; `OTEL_SEMCONV_STABILITY_OPT_IN=rpc` (or `rpc/dup`)
//! switches to (or adds) the newer names.

use std::{borrow::Cow, sync::Arc};

use crate::{
    grpc::{CANCELLED_OR_DEADLINE, CallRecord, Code, ConnectionFacts, KnownFailure, Side},
    hpack::Text,
    stream::{Endpoint, Source},
};

use super::clock::WallClock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conventions {
    /// `rpc.system`, `rpc.service` + short `rpc.method`, integer `rpc.grpc.status_code`.
    Legacy,
    /// `rpc.system.name`, full `rpc.method`, string `rpc.response.status_code`, `error.type`.
    Stable,
    /// Both; where a name exists in both with different values (`rpc.method`), the stable
    /// value wins.
    Both,
}

impl Conventions {
    /// From `OTEL_SEMCONV_STABILITY_OPT_IN` (a comma-separated list).
    pub fn from_opt_in(value: Option<&str>) -> Conventions {
        let mut conventions = Conventions::Legacy;
        for token in value.unwrap_or("").split(',').map(str::trim) {
            match token {
                "rpc/dup" => return Conventions::Both,
                "rpc" => conventions = Conventions::Stable,
                _ => {}
            }
        }
        conventions
    }

    fn legacy(self) -> bool {
        matches!(self, Conventions::Legacy | Conventions::Both)
    }

    fn stable(self) -> bool {
        matches!(self, Conventions::Stable | Conventions::Both)
    }
}

/// Text borrows from the call it describes where it can: a span is built, written and dropped
/// per call, and most of its text is already in the call record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttributeValue<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
}

impl AttributeValue<'_> {
    /// The same value, owning its text.
    pub fn to_owned_value(&self) -> AttributeValue<'static> {
        match self {
            AttributeValue::Str(text) => AttributeValue::Str(Cow::Owned(text.to_string())),
            AttributeValue::Int(number) => AttributeValue::Int(*number),
            AttributeValue::Bool(flag) => AttributeValue::Bool(*flag),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Client,
    Server,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanStatus<'a> {
    Unset,
    Error(&'a str),
}

/// W3C `traceparent`: the trace a call's request said it belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// Parses version 00 (and, per the spec, the first four fields of future versions).
    pub fn parse(value: &str) -> Option<TraceParent> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id: [u8; 16] = hex(trace_id)?.try_into().ok()?;
        let parent_span_id: [u8; 8] = hex(span_id)?.try_into().ok()?;
        let flags = hex(flags)?;
        if trace_id == [0; 16] || parent_span_id == [0; 8] || flags.len() != 1 {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_span_id,
            sampled: flags[0] & 1 == 1,
        })
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2)
        || !text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    hex
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord<'a> {
    pub name: &'a str,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// `tracestate` of the parent, passed through.
    pub trace_state: Option<&'a str>,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub status: SpanStatus<'a>,
    pub attributes: Vec<(&'static str, AttributeValue<'a>)>,
    /// How many of the attributes, from the first, belong to the call's series (its
    /// [`SeriesKey`]): every call of a method on a connection has the same ones.
    pub series_len: usize,
}

/// Fresh trace and span ids.
pub trait IdSource {
    fn trace_id(&mut self) -> [u8; 16];
    fn span_id(&mut self) -> [u8; 8];
}

/// Codes a server span reports as errors (the semantic conventions for gRPC servers); a client
/// span treats every non-OK code as an error.
/// A failed call's status message when its code is one of `codes`.
fn one_of_message(codes: &[Code]) -> &'static str {
    if codes == CANCELLED_OR_DEADLINE {
        "CANCELLED or DEADLINE_EXCEEDED: the request may have waited for a stream slot, and the wire \
         cannot tell the client's cancel from its deadline"
    } else {
        "status code unknown; one of several errors"
    }
}

/// A failed call's status message when only its HTTP status is known.
fn unknown_code_with_http_status(http: u16) -> &'static str {
    match http {
        400..=499 => "status code unknown; HTTP 4xx",
        500..=599 => "status code unknown; HTTP 5xx",
        _ => "status code unknown; HTTP status not 200",
    }
}

fn server_error(code: Code) -> bool {
    matches!(
        code,
        Code::UNKNOWN
            | Code::DEADLINE_EXCEEDED
            | Code::UNIMPLEMENTED
            | Code::INTERNAL
            | Code::UNAVAILABLE
            | Code::DATA_LOSS
    )
}

/// Which of a call's attributes a span carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanAttributes {
    /// Those of its series, then its own.
    All,
    /// Its own only: for a sink that has those of its series already (see [`SeriesKey`]).
    OwnOnly,
}

impl<'a> SpanRecord<'a> {
    pub fn from_call(
        call: &'a CallRecord,
        conventions: Conventions,
        clock: WallClock,
        ids: &mut dyn IdSource,
    ) -> SpanRecord<'a> {
        SpanRecord::with_attributes(call, conventions, clock, ids, SpanAttributes::All)
    }

    pub fn with_attributes(
        call: &'a CallRecord,
        conventions: Conventions,
        clock: WallClock,
        ids: &mut dyn IdSource,
        which: SpanAttributes,
    ) -> SpanRecord<'a> {
        let parent = call
            .traceparent()
            .and_then(|value| TraceParent::parse(value));
        let kind = match call.side {
            Side::Client => SpanKind::Client,
            Side::Server => SpanKind::Server,
        };
        let client = kind == SpanKind::Client;
        let status = match (call.code, call.failure_without_code()) {
            (Some(code), _) if code != Code::OK && (client || server_error(code)) => {
                SpanStatus::Error(call.grpc_message.as_deref().unwrap_or(code.name()))
            }
            // The code is unknown but the call failed: an error all the same, never a success.
            // For a server only a 5xx is its own error, as with the codes above.
            (None, Some(KnownFailure::HttpStatus(http))) if client || http >= 500 => {
                SpanStatus::Error(
                    call.grpc_message
                        .as_deref()
                        .unwrap_or(unknown_code_with_http_status(http)),
                )
            }
            (None, Some(KnownFailure::Message(message))) if client => SpanStatus::Error(message),
            (None, Some(KnownFailure::OneOf(codes)))
                if client || codes.iter().all(|&code| server_error(code)) =>
            {
                SpanStatus::Error(one_of_message(codes))
            }
            _ => SpanStatus::Unset,
        };
        let mut attributes = Vec::with_capacity(24);
        if which == SpanAttributes::All {
            series_attributes(call, conventions, &mut attributes);
        }
        let series_len = attributes.len();
        call_attributes(call, conventions, &mut attributes);
        SpanRecord {
            name: call.name(),
            trace_id: parent.map_or_else(|| ids.trace_id(), |parent| parent.trace_id),
            span_id: ids.span_id(),
            parent_span_id: parent.map(|parent| parent.parent_span_id),
            trace_state: parent.and(call.tracestate().map(|state| &**state)),
            kind,
            start_unix_nanos: clock.to_unix_nanos(call.start_ns),
            end_unix_nanos: clock.to_unix_nanos(call.end_ns),
            status,
            attributes,
            series_len,
        }
    }
}

fn text(value: &str) -> AttributeValue<'_> {
    AttributeValue::Str(Cow::Borrowed(value))
}

/// What identifies a call's series: all that [`series_attributes`] reads.
pub struct SeriesKey {
    connection: Arc<ConnectionFacts>,
    side: Side,
    path: Option<Text>,
    authority: Option<Text>,
    user_agent: Option<Text>,
}

impl SeriesKey {
    pub fn of(call: &CallRecord) -> SeriesKey {
        SeriesKey {
            connection: Arc::clone(&call.connection),
            side: call.side,
            path: call.path().cloned(),
            authority: call.authority().cloned(),
            user_agent: call.user_agent().cloned(),
        }
    }

    /// Whether `call` is of this series. Calls of a series on one connection share the header
    /// text its HPACK table holds, which the key keeps alive, so identity is tried first; on
    /// another connection to the same peer the text is equal but not the same.
    pub fn matches(&self, call: &CallRecord) -> bool {
        fn same(key: &Option<Text>, call: Option<&Text>) -> bool {
            match (key, call) {
                (Some(key), Some(call)) => key.is_same(call) || **key == **call,
                (None, None) => true,
                _ => false,
            }
        }
        // Of the connection, the series attributes read only the process and the peer.
        let (key, connection) = (&*self.connection, &*call.connection);
        (Arc::ptr_eq(&self.connection, &call.connection)
            || (key.pid == connection.pid && key.peer == connection.peer))
            && self.side == call.side
            && same(&self.path, call.path())
            && same(&self.authority, call.authority())
            && same(&self.user_agent, call.user_agent())
    }
}

/// What depends only on the call's [`SeriesKey`].
fn series_attributes<'a>(
    call: &'a CallRecord,
    conventions: Conventions,
    attributes: &mut Vec<(&'static str, AttributeValue<'a>)>,
) {
    use AttributeValue::{Bool, Int};
    if conventions.legacy() {
        attributes.push(("rpc.system", text("grpc")));
        if let Some((service, method)) = call.service_and_method() {
            attributes.push(("rpc.service", text(service)));
            if !conventions.stable() {
                attributes.push(("rpc.method", text(method)));
            }
        }
    }
    if conventions.stable() {
        attributes.push(("rpc.system.name", text("grpc")));
        if call.method_resolved() {
            attributes.push(("rpc.method", text(call.name())));
        }
    }
    // The server as the client addressed it (`:authority`), then the socket's actual peer.
    let peer = call.connection.peer.as_ref();
    let peer_ip = call.connection.peer_ip().unwrap_or_default();
    match call
        .authority()
        .and_then(|authority| split_host_port(authority))
    {
        Some((host, port)) => {
            attributes.push(("server.address", text(host)));
            if let Some(port) = port {
                attributes.push(("server.port", Int(i64::from(port))));
            }
        }
        None => {
            if let Some(Endpoint::Inet(address)) = peer.filter(|_| call.side == Side::Client) {
                attributes.push(("server.address", text(peer_ip)));
                attributes.push(("server.port", Int(i64::from(address.port()))));
            }
        }
    }
    match peer {
        Some(Endpoint::Inet(address)) => {
            attributes.push(("network.peer.address", text(peer_ip)));
            attributes.push(("network.peer.port", Int(i64::from(address.port()))));
            attributes.push(("network.transport", text("tcp")));
            attributes.push((
                "network.type",
                text(if address.is_ipv4() { "ipv4" } else { "ipv6" }),
            ));
        }
        Some(Endpoint::UnixPath(path)) => {
            attributes.push(("network.peer.address", text(path)));
            attributes.push(("network.transport", text("unix")));
        }
        Some(_) => attributes.push(("network.transport", text("unix"))),
        None => {}
    }
    if let Some(user_agent) = call.user_agent() {
        attributes.push(("user_agent.original", text(user_agent)));
    }
    attributes.push(("process.pid", Int(i64::from(call.connection.pid))));
    if let Source::Tls { library } = call.connection.source {
        attributes.push(("tracer.capture", text("tls")));
        if let Some(library) = library {
            attributes.push(("tracer.tls.library", text(library)));
        }
    }
    attributes.push(("tracer.method_resolved", Bool(call.method_resolved())));
    if let Some(source) = call.method_inferred_from() {
        attributes.push(("tracer.method_source", text(source.label())));
    }
}

/// What each call has of its own: its status, messages, timing and how it ended.
fn call_attributes<'a>(
    call: &'a CallRecord,
    conventions: Conventions,
    attributes: &mut Vec<(&'static str, AttributeValue<'a>)>,
) {
    use AttributeValue::{Bool, Int};
    if let Some(code) = call.code {
        if conventions.legacy() {
            attributes.push(("rpc.grpc.status_code", Int(i64::from(code.0))));
        }
        if conventions.stable() {
            attributes.push(("rpc.response.status_code", text(code.name())));
            if code != Code::OK {
                attributes.push(("error.type", text(code.name())));
            }
        }
    }
    attributes.push(("rpc.request.message.count", Int(call.request.count as i64)));
    attributes.push(("rpc.request.message.bytes", Int(call.request.bytes as i64)));
    attributes.push((
        "rpc.response.message.count",
        Int(call.response.count as i64),
    ));
    attributes.push((
        "rpc.response.message.bytes",
        Int(call.response.bytes as i64),
    ));
    if let Some(encoding) = call.grpc_encoding() {
        attributes.push(("rpc.grpc.request.encoding", text(encoding)));
    }
    if let Some(timeout) = call.timeout() {
        attributes.push(("rpc.grpc.timeout_ms", Int(timeout.as_millis() as i64)));
    }
    if let Some(reset) = call.reset {
        attributes.push(("rpc.grpc.reset_error_code", Int(i64::from(reset.0))));
    }
    if let Some(first) = call.time_to_first_response_message() {
        attributes.push((
            "rpc.response.first_message_ns",
            Int(first.as_nanos() as i64),
        ));
    }
    attributes.push(("tracer.status_known", Bool(call.code.is_some())));
    if let Some(source) = call.status_inferred_from() {
        attributes.push(("tracer.status_source", text(source.label())));
    }
    match call.failure_without_code() {
        Some(KnownFailure::HttpStatus(http)) => {
            attributes.push(("http.response.status_code", Int(i64::from(http))));
        }
        Some(KnownFailure::OneOf(codes)) if codes == CANCELLED_OR_DEADLINE => {
            attributes.push((
                "tracer.status_candidates",
                text("CANCELLED|DEADLINE_EXCEEDED"),
            ));
        }
        _ => {}
    }
    if !call.content_type_known() {
        // Rare (calls joined mid-flight): only then said, as it is not the rule.
        attributes.push(("tracer.content_type_known", Bool(false)));
    }
    attributes.push((
        "tracer.end_reason",
        AttributeValue::Str(call.end_reason.label()),
    ));
}

/// `host:port`, `[v6]:port` or a bare host.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((
            host,
            after.strip_prefix(':').and_then(|port| port.parse().ok()),
        ));
    }
    // Byte searches, as for the path: this runs for every call.
    match authority.bytes().rposition(|byte| byte == b':') {
        Some(colon) if !authority[..colon].bytes().any(|byte| byte == b':') => {
            Some((&authority[..colon], authority[colon + 1..].parse().ok()))
        }
        _ => Some((authority, None)),
    }
}

/// Random ids from a fast generator seeded by the kernel (ids need uniqueness, not secrecy).
pub struct RandomIds {
    state: u64,
}

impl RandomIds {
    pub fn new() -> RandomIds {
        let mut seed = [0u8; 8];
        // SAFETY: the buffer is valid for its length.
        let filled = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
        let fallback = crate::stream::monotonic_now_ns() ^ u64::from(std::process::id()) << 32;
        RandomIds {
            state: if filled == 8 {
                u64::from_ne_bytes(seed)
            } else {
                fallback
            },
        }
    }

    /// splitmix64: never repeats within 2^64 draws.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn nonzero(&mut self) -> u64 {
        loop {
            let value = self.next();
            if value != 0 {
                return value;
            }
        }
    }
}

impl Default for RandomIds {
    fn default() -> Self {
        RandomIds::new()
    }
}

impl IdSource for RandomIds {
    fn trace_id(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.nonzero().to_be_bytes());
        id[8..].copy_from_slice(&self.next().to_be_bytes());
        id
    }

    fn span_id(&mut self) -> [u8; 8] {
        self.nonzero().to_be_bytes()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::grpc::{ConnectionFacts, EndReason, MessageStats, Provenance, RequestHeaders};

    struct Counter(u8);

    impl IdSource for Counter {
        fn trace_id(&mut self) -> [u8; 16] {
            self.0 += 1;
            [self.0; 16]
        }
        fn span_id(&mut self) -> [u8; 8] {
            self.0 += 1;
            [self.0; 8]
        }
    }

    /// A finished client call, for the export tests.
    /// Changes what `call`'s request headers said.
    pub(in crate::export) fn edit_headers(
        call: &mut CallRecord,
        edit: impl FnOnce(&mut RequestHeaders),
    ) {
        edit(std::rc::Rc::make_mut(
            call.request_headers.get_or_insert_default(),
        ));
    }

    pub(in crate::export) fn call() -> CallRecord {
        CallRecord {
            connection: Arc::new(ConnectionFacts::new(
                1,
                99,
                None,
                Some(Endpoint::Inet("10.1.2.3:50051".parse().unwrap())),
                true,
            )),
            side: Side::Client,
            stream_id: 1,
            request_headers: Some(std::rc::Rc::new(RequestHeaders {
                path: Some("/shop.Catalog/GetItem".into()),
                authority: Some("catalog.internal:8443".into()),
                user_agent: Some("grpc-python/1.60".into()),
                ..RequestHeaders::default()
            })),
            http_status: Some(200),
            grpc_status: Some(5),
            status_provenance: Provenance::Decoded,
            method_provenance: Provenance::Decoded,
            grpc_message: Some("no such item".into()),
            code: Some(Code::NOT_FOUND),
            code_candidates: &[],
            reset: None,
            end_reason: EndReason::TrailersOnly,
            start_ns: 1_000,
            end_ns: 2_000,
            first_response_header_ns: Some(1_500),
            request: MessageStats {
                count: 1,
                bytes: 10,
                compressed: 0,
                exact: true,
                first_ns: Some(1_000),
            },
            response: MessageStats {
                exact: true,
                ..MessageStats::default()
            },
        }
    }

    fn attribute<'a>(span: &'a SpanRecord<'_>, key: &str) -> Option<&'a AttributeValue<'a>> {
        span.attributes
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    #[test]
    fn a_failed_call_whose_code_is_unknown_is_an_error_not_a_success() {
        fn status_of(call: &CallRecord) -> (SpanStatus<'_>, Option<i64>) {
            let span = SpanRecord::from_call(
                call,
                Conventions::Legacy,
                WallClock::measure(),
                &mut Counter(0),
            );
            let http = match attribute(&span, "http.response.status_code") {
                Some(AttributeValue::Int(http)) => Some(*http),
                _ => None,
            };
            (span.status, http)
        }
        // Joined mid-flight: grpc-status referenced an entry from before attach.
        let mut call = call();
        (call.code, call.grpc_status) = (None, None);
        assert_eq!(status_of(&call), (SpanStatus::Error("no such item"), None));
        // Nothing shows a failure: unknown, not an error.
        call.grpc_message = None;
        assert_eq!(status_of(&call), (SpanStatus::Unset, None));
        call.http_status = Some(503);
        let unavailable = (
            SpanStatus::Error("status code unknown; HTTP 5xx"),
            Some(503),
        );
        assert_eq!(status_of(&call), unavailable);
        // On a server, as with known codes, only a 5xx is its own error.
        call.side = Side::Server;
        assert_eq!(status_of(&call), unavailable);
        call.http_status = Some(404);
        call.grpc_message = Some("no such item".into());
        assert_eq!(status_of(&call).0, SpanStatus::Unset);
    }

    #[test]
    fn legacy_conventions() {
        let call = call();
        let span = SpanRecord::from_call(
            &call,
            Conventions::Legacy,
            WallClock::measure(),
            &mut Counter(0),
        );
        assert_eq!(span.name, "shop.Catalog/GetItem");
        assert_eq!(span.kind, SpanKind::Client);
        assert_eq!(span.status, SpanStatus::Error("no such item"));
        assert_eq!(
            attribute(&span, "rpc.method"),
            Some(&AttributeValue::Str("GetItem".into()))
        );
        assert_eq!(
            attribute(&span, "rpc.service"),
            Some(&AttributeValue::Str("shop.Catalog".into()))
        );
        assert_eq!(
            attribute(&span, "rpc.grpc.status_code"),
            Some(&AttributeValue::Int(5))
        );
        assert_eq!(
            attribute(&span, "server.address"),
            Some(&AttributeValue::Str("catalog.internal".into()))
        );
        assert_eq!(
            attribute(&span, "server.port"),
            Some(&AttributeValue::Int(8443))
        );
        assert_eq!(
            attribute(&span, "network.peer.address"),
            Some(&AttributeValue::Str("10.1.2.3".into()))
        );
        assert_eq!(
            attribute(&span, "network.type"),
            Some(&AttributeValue::Str("ipv4".into()))
        );
        assert_eq!(attribute(&span, "rpc.system.name"), None);
        assert_eq!(span.end_unix_nanos - span.start_unix_nanos, 1_000);
    }

    #[test]
    fn stable_and_duplicated_conventions() {
        let call = call();
        let stable = SpanRecord::from_call(
            &call,
            Conventions::Stable,
            WallClock::measure(),
            &mut Counter(0),
        );
        assert_eq!(
            attribute(&stable, "rpc.method"),
            Some(&AttributeValue::Str("shop.Catalog/GetItem".into()))
        );
        assert_eq!(
            attribute(&stable, "rpc.response.status_code"),
            Some(&AttributeValue::Str("NOT_FOUND".into()))
        );
        assert_eq!(
            attribute(&stable, "error.type"),
            Some(&AttributeValue::Str("NOT_FOUND".into()))
        );
        assert_eq!(attribute(&stable, "rpc.system"), None);
        let both = SpanRecord::from_call(
            &call,
            Conventions::Both,
            WallClock::measure(),
            &mut Counter(0),
        );
        assert_eq!(
            attribute(&both, "rpc.grpc.status_code"),
            Some(&AttributeValue::Int(5))
        );
        assert_eq!(
            attribute(&both, "rpc.method"),
            Some(&AttributeValue::Str("shop.Catalog/GetItem".into()))
        );
        assert_eq!(
            Conventions::from_opt_in(Some("http, rpc/dup")),
            Conventions::Both
        );
        assert_eq!(Conventions::from_opt_in(Some("rpc")), Conventions::Stable);
        assert_eq!(Conventions::from_opt_in(None), Conventions::Legacy);
    }

    #[test]
    fn joins_the_trace_of_the_request() {
        let mut call = call();
        edit_headers(&mut call, |headers| {
            headers.traceparent =
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
            headers.tracestate = Some("vendor=1".into());
        });
        let span = SpanRecord::from_call(
            &call,
            Conventions::Legacy,
            WallClock::measure(),
            &mut Counter(0),
        );
        assert_eq!(to_hex(&span.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(
            span.parent_span_id.map(|id| to_hex(&id)).as_deref(),
            Some("b7ad6b7169203331")
        );
        assert_eq!(span.trace_state, Some("vendor=1"));
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ok_calls_leave_status_unset_and_servers_only_flag_server_faults() {
        let mut ok = call();
        ok.code = Some(Code::OK);
        let span = SpanRecord::from_call(
            &ok,
            Conventions::Legacy,
            WallClock::measure(),
            &mut Counter(0),
        );
        assert_eq!(span.status, SpanStatus::Unset);
        let mut served = call();
        served.side = Side::Server;
        let span = SpanRecord::from_call(
            &served,
            Conventions::Legacy,
            WallClock::measure(),
            &mut Counter(0),
        );
        assert_eq!(
            (span.kind, span.status),
            (SpanKind::Server, SpanStatus::Unset)
        );
        assert_eq!(split_host_port("[::1]:50051"), Some(("::1", Some(50051))));
        assert_eq!(split_host_port("localhost"), Some(("localhost", None)));
        assert_eq!(split_host_port("db:5432"), Some(("db", Some(5432))));
        assert_eq!(split_host_port("db:http"), Some(("db", None)));
        assert_eq!(split_host_port("fe80::1"), Some(("fe80::1", None)));
        assert_eq!(split_host_port(""), None);
    }
}
