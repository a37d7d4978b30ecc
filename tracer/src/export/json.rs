//! One JSON object per span per line, on stdout (and nothing else there) or in a file.
//!
//! Spans are written straight into the output buffer (no intermediate JSON tree): at tens of
//! thousands of calls a second, building and dropping a map per span would cost more than
//! everything else the tracer does.

use super::{
    AttributeValue, CallSink, Conventions, ExportReport, RandomIds, ResourceInfo, SpanKind,
    SpanRecord, SpanStatus, WallClock,
    line_output::{LineDestination, LineOutput},
    series::SeriesCache,
};
use foldhash::HashMap;

use crate::grpc::CallRecord;

pub struct JsonSink {
    clock: WallClock,
    conventions: Conventions,
    ids: RandomIds,
    /// Each traced process's resource object, serialised once, by resource id.
    resources: HashMap<u64, String>,
    /// The JSON members of each series' attributes, written once: they are most of a span's
    /// attributes (method, server, peer), and every call of the series repeats them.
    series: SeriesCache<Vec<u8>>,
    out: LineOutput,
}

fn render_members(attributes: &[(&'static str, AttributeValue)]) -> Vec<u8> {
    let mut json = Vec::new();
    write_members(&mut json, attributes);
    json
}

/// Whether `text` holds a byte a JSON string cannot carry as is. Every byte is looked at (no
/// early exit) so that the compiler can check many at once: the values are short.
fn needs_escaping(text: &str) -> bool {
    text.bytes().fold(false, |found, byte| {
        found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    })
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    // Most values (method names, addresses, status names) need no escaping at all.
    if needs_escaping(text) {
        serde_json::to_writer(&mut *out, text).expect("a Vec takes any bytes");
    } else {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// Writes `"key":` for one of our own attribute names, which never need escaping.
fn write_key(out: &mut Vec<u8>, key: &'static str) {
    debug_assert!(!needs_escaping(key), "{key}");
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Writes a decimal integer without going through `fmt` (two digits at a time).
fn write_u64(out: &mut Vec<u8>, number: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(number).as_bytes());
}

fn write_int(out: &mut Vec<u8>, number: i64) {
    if number < 0 {
        out.push(b'-');
    }
    write_u64(out, number.unsigned_abs());
}

fn write_value(out: &mut Vec<u8>, value: &AttributeValue) {
    match value {
        AttributeValue::Str(text) => write_str(out, text),
        AttributeValue::Int(number) => write_int(out, *number),
        AttributeValue::Bool(flag) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
    }
}

/// The two hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0xf]];
        byte += 1;
    }
    pairs
};

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut text = [0u8; 34];
    text[0] = b'"';
    for (index, &byte) in bytes.iter().enumerate() {
        text[1 + 2 * index..3 + 2 * index].copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    text[1 + 2 * bytes.len()] = b'"';
    out.extend_from_slice(&text[..2 + 2 * bytes.len()]);
}

/// Writes attributes as the members of a JSON object, without its braces.
fn write_members(out: &mut Vec<u8>, attributes: &[(&'static str, AttributeValue)]) {
    for (index, (key, value)) in attributes.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_key(out, key);
        write_value(out, value);
    }
}

/// Writes one span as a single-line JSON object; its series attributes are already written, in
/// `series_json`.
fn write_span(out: &mut Vec<u8>, span: &SpanRecord, series_json: &[u8], resource_json: &str) {
    out.extend_from_slice(b"{\"name\":");
    write_str(out, span.name);
    out.extend_from_slice(b",\"trace_id\":");
    write_hex(out, &span.trace_id);
    out.extend_from_slice(b",\"span_id\":");
    write_hex(out, &span.span_id);
    out.extend_from_slice(b",\"parent_span_id\":");
    match &span.parent_span_id {
        Some(parent) => write_hex(out, parent),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"trace_state\":");
    match &span.trace_state {
        Some(state) => write_str(out, state),
        None => out.extend_from_slice(b"null"),
    }
    let kind = match span.kind {
        SpanKind::Client => "CLIENT",
        SpanKind::Server => "SERVER",
    };
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"start_time_unix_nano\":");
    write_u64(out, span.start_unix_nanos);
    out.extend_from_slice(b",\"end_time_unix_nano\":");
    write_u64(out, span.end_unix_nanos);
    out.extend_from_slice(b",\"status\":");
    match &span.status {
        SpanStatus::Unset => out.extend_from_slice(b"{\"code\":\"UNSET\",\"message\":null}"),
        SpanStatus::Error(message) => {
            out.extend_from_slice(b"{\"code\":\"ERROR\",\"message\":");
            write_str(out, message);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"attributes\":{");
    out.extend_from_slice(series_json);
    let own = &span.attributes[span.series_len..];
    if !series_json.is_empty() && !own.is_empty() {
        out.push(b',');
    }
    write_members(out, own);
    out.extend_from_slice(b"},\"resource\":");
    out.extend_from_slice(resource_json.as_bytes());
    out.extend_from_slice(b"}\n");
}

impl JsonSink {
    pub fn new(
        clock: WallClock,
        conventions: Conventions,
        destination: LineDestination,
    ) -> JsonSink {
        JsonSink {
            clock,
            conventions,
            ids: RandomIds::new(),
            resources: HashMap::default(),
            series: SeriesCache::default(),
            out: LineOutput::new(destination),
        }
    }
}

/// A resource as a JSON object.
fn resource_json(resource: &ResourceInfo) -> String {
    let mut json = Vec::new();
    json.push(b'{');
    for (index, (key, value)) in resource.attributes.iter().enumerate() {
        if index > 0 {
            json.push(b',');
        }
        write_str(&mut json, key);
        json.push(b':');
        write_value(&mut json, value);
    }
    json.push(b'}');
    String::from_utf8(json).expect("JSON is UTF-8")
}

impl CallSink for JsonSink {
    fn on_call(&mut self, call: &CallRecord, resource: &ResourceInfo) {
        let (span, series_json) = self.series.span(
            call,
            self.conventions,
            self.clock,
            &mut self.ids,
            render_members,
        );
        let resource = self
            .resources
            .entry(resource.id)
            .or_insert_with(|| resource_json(resource));
        self.out
            .push(|line| write_span(line, &span, series_json, resource));
    }

    fn flush(&mut self) {
        self.out.flush();
    }

    fn finish(&mut self) -> ExportReport {
        self.out.flush();
        ExportReport {
            exported: self.out.written(),
            not_printed: self.out.not_written(),
            ..ExportReport::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::series::SERIES_KEPT;

    #[test]
    fn values_are_written_as_json() {
        for (value, expected) in [
            (AttributeValue::Int(0), "0"),
            (AttributeValue::Int(-42), "-42"),
            (AttributeValue::Int(i64::MIN), "-9223372036854775808"),
            (AttributeValue::Bool(true), "true"),
            (
                AttributeValue::Str("plain/Method".into()),
                "\"plain/Method\"",
            ),
            (
                AttributeValue::Str("say \"hi\"\n\\".into()),
                r#""say \"hi\"\n\\""#,
            ),
        ] {
            let mut out = Vec::new();
            write_value(&mut out, &value);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        let mut out = Vec::new();
        write_u64(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn each_call_gets_the_series_attributes_of_its_own_series() {
        use crate::export::span::tests::{call, edit_headers};
        // More series than are kept, each seen twice: on the same connection, by method and by
        // user agent, and on a second connection.
        let first = call();
        let mut calls = Vec::new();
        for index in 0..SERIES_KEPT + 2 {
            let mut call = first.clone();
            edit_headers(&mut call, |headers| {
                headers.path = Some(format!("/pkg.S{index}/M").into());
            });
            calls.push(call);
        }
        let mut other_agent = first.clone();
        edit_headers(&mut other_agent, |headers| {
            headers.user_agent = Some("grpc-go/1.70".into());
        });
        let mut other_connection = first.clone();
        other_connection.connection = std::sync::Arc::new((*first.connection).clone());
        calls.extend([first, other_agent, other_connection]);
        let mut rendered = SeriesCache::default();
        let clock = WallClock::measure();
        for call in calls.iter().chain(&calls).chain(calls.iter().rev()) {
            let full = SpanRecord::from_call(call, Conventions::Both, clock, &mut RandomIds::new());
            let (span, json) = rendered.span(
                call,
                Conventions::Both,
                clock,
                &mut RandomIds::new(),
                render_members,
            );
            assert_eq!(
                String::from_utf8_lossy(json),
                String::from_utf8_lossy(&render_members(&full.attributes[..full.series_len]))
            );
            assert_eq!(span.attributes, full.attributes[full.series_len..]);
        }
        assert_eq!(rendered.len(), SERIES_KEPT);
        // Another connection to the same peer, whose HPACK table holds its own copy of the
        // same text, is the same series: more connections than are kept still hit.
        let mut rendered = SeriesCache::default();
        for _ in 0..SERIES_KEPT + 1 {
            let mut call = calls[0].clone();
            call.connection = std::sync::Arc::new((*call.connection).clone());
            edit_headers(&mut call, |headers| {
                headers.path = Some(format!("/pkg.S{}/M", 0).into());
            });
            rendered.span(
                &call,
                Conventions::Both,
                clock,
                &mut RandomIds::new(),
                render_members,
            );
        }
        assert_eq!(rendered.len(), 1);
    }

    #[test]
    fn spans_are_single_line_valid_json() {
        let span = SpanRecord {
            name: "a.B/C",
            trace_id: [0xab; 16],
            span_id: [1; 8],
            parent_span_id: Some([2; 8]),
            trace_state: None,
            kind: SpanKind::Client,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            status: SpanStatus::Error("bad \"quote\"\nnewline"),
            attributes: vec![
                ("rpc.system", AttributeValue::Str("grpc".into())),
                ("n", AttributeValue::Int(-3)),
                ("ok", AttributeValue::Bool(true)),
            ],
            series_len: 2,
        };
        let mut out = Vec::new();
        let series_json = render_members(&span.attributes[..span.series_len]);
        write_span(&mut out, &span, &series_json, "{\"service.name\":\"x\"}");
        assert_eq!(out.iter().filter(|&&byte| byte == b'\n').count(), 1);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["trace_id"], "abababababababababababababababab");
        assert_eq!(value["parent_span_id"], "0202020202020202");
        assert_eq!(value["status"]["message"], "bad \"quote\"\nnewline");
        assert_eq!(value["attributes"]["n"], -3);
        assert_eq!(value["attributes"]["ok"], true);
        assert_eq!(value["resource"]["service.name"], "x");
        assert_eq!(value["trace_state"], serde_json::Value::Null);
    }
}
