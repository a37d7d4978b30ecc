//! One JSON object per span per line on stdout, and nothing else there.
//!
//! Spans are written straight into a block-buffered stdout (no intermediate JSON tree): at
//! tens of thousands of calls a second, building and dropping a map per span would cost more
//! than everything else the tracer does.

use std::io::{self, BufWriter, Stdout, Write};

use super::{
    AttributeValue, CallSink, Conventions, ExportReport, RandomIds, ResourceInfo, SpanKind,
    SpanRecord, SpanStatus, WallClock,
};
use crate::grpc::CallRecord;

pub struct JsonSink {
    clock: WallClock,
    conventions: Conventions,
    ids: RandomIds,
    /// The resource object, serialised once.
    resource: String,
    written: u64,
    out: BufWriter<Stdout>,
}

fn write_str(out: &mut impl Write, text: &str) -> io::Result<()> {
    serde_json::to_writer(&mut *out, text).map_err(io::Error::other)
}

fn write_value(out: &mut impl Write, value: &AttributeValue) -> io::Result<()> {
    match value {
        AttributeValue::Str(text) => write_str(out, text),
        AttributeValue::Int(number) => write!(out, "{number}"),
        AttributeValue::Bool(flag) => write!(out, "{flag}"),
    }
}

fn write_hex(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 34];
    text[0] = b'"';
    for (index, byte) in bytes.iter().enumerate() {
        text[1 + 2 * index] = DIGITS[usize::from(byte >> 4)];
        text[2 + 2 * index] = DIGITS[usize::from(byte & 0xf)];
    }
    text[1 + 2 * bytes.len()] = b'"';
    out.write_all(&text[..2 + 2 * bytes.len()])
}

/// Writes one span as a single-line JSON object.
pub fn write_span(out: &mut impl Write, span: &SpanRecord, resource_json: &str) -> io::Result<()> {
    out.write_all(b"{\"name\":")?;
    write_str(out, &span.name)?;
    out.write_all(b",\"trace_id\":")?;
    write_hex(out, &span.trace_id)?;
    out.write_all(b",\"span_id\":")?;
    write_hex(out, &span.span_id)?;
    out.write_all(b",\"parent_span_id\":")?;
    match &span.parent_span_id {
        Some(parent) => write_hex(out, parent)?,
        None => out.write_all(b"null")?,
    }
    out.write_all(b",\"trace_state\":")?;
    match &span.trace_state {
        Some(state) => write_str(out, state)?,
        None => out.write_all(b"null")?,
    }
    let kind = match span.kind {
        SpanKind::Client => "CLIENT",
        SpanKind::Server => "SERVER",
    };
    write!(
        out,
        ",\"kind\":\"{kind}\",\"start_time_unix_nano\":{},\"end_time_unix_nano\":{},\"status\":",
        span.start_unix_nanos, span.end_unix_nanos
    )?;
    match &span.status {
        SpanStatus::Unset => out.write_all(b"{\"code\":\"UNSET\",\"message\":null}")?,
        SpanStatus::Error(message) => {
            out.write_all(b"{\"code\":\"ERROR\",\"message\":")?;
            write_str(out, message)?;
            out.write_all(b"}")?;
        }
    }
    out.write_all(b",\"attributes\":{")?;
    for (index, (key, value)) in span.attributes.iter().enumerate() {
        if index > 0 {
            out.write_all(b",")?;
        }
        write_str(out, key)?;
        out.write_all(b":")?;
        write_value(out, value)?;
    }
    out.write_all(b"},\"resource\":")?;
    out.write_all(resource_json.as_bytes())?;
    out.write_all(b"}\n")
}

impl JsonSink {
    pub fn new(clock: WallClock, conventions: Conventions, resource: &ResourceInfo) -> JsonSink {
        let mut resource_json = Vec::new();
        resource_json.push(b'{');
        for (index, (key, value)) in resource.attributes.iter().enumerate() {
            if index > 0 {
                resource_json.push(b',');
            }
            let _ = write_str(&mut resource_json, key);
            resource_json.push(b':');
            let _ = write_value(&mut resource_json, value);
        }
        resource_json.push(b'}');
        JsonSink {
            clock,
            conventions,
            ids: RandomIds::new(),
            resource: String::from_utf8(resource_json).expect("JSON is UTF-8"),
            written: 0,
            out: BufWriter::with_capacity(64 * 1024, std::io::stdout()),
        }
    }
}

impl CallSink for JsonSink {
    fn on_call(&mut self, call: &CallRecord) {
        let span = SpanRecord::from_call(call, self.conventions, self.clock, &mut self.ids);
        if write_span(&mut self.out, &span, &self.resource).is_ok() {
            self.written += 1;
        }
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    fn finish(&mut self) -> ExportReport {
        let _ = self.out.flush();
        ExportReport {
            exported: self.written,
            ..ExportReport::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_single_line_valid_json() {
        let span = SpanRecord {
            name: "a.B/C".into(),
            trace_id: [0xab; 16],
            span_id: [1; 8],
            parent_span_id: Some([2; 8]),
            trace_state: None,
            kind: SpanKind::Client,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            status: SpanStatus::Error("bad \"quote\"\nnewline".into()),
            attributes: vec![
                ("rpc.system", AttributeValue::Str("grpc".into())),
                ("n", AttributeValue::Int(-3)),
                ("ok", AttributeValue::Bool(true)),
            ],
        };
        let mut out = Vec::new();
        write_span(&mut out, &span, "{\"service.name\":\"x\"}").unwrap();
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
