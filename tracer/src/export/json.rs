//! One JSON object per span per line on stdout, and nothing else there.

use std::io::{BufWriter, Stdout, Write as _};

use serde_json::{Map, Value, json};

use super::{
    AttributeValue, CallSink, Conventions, ExportReport, RandomIds, ResourceInfo, SpanKind,
    SpanRecord, SpanStatus, WallClock, to_hex,
};
use crate::grpc::CallRecord;

pub struct JsonSink {
    clock: WallClock,
    conventions: Conventions,
    ids: RandomIds,
    resource: Value,
    written: u64,
    /// Block-buffered: a line-buffered stdout would cost a write(2) per span.
    out: BufWriter<Stdout>,
}

fn value(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::Str(text) => json!(text),
        AttributeValue::Int(number) => json!(number),
        AttributeValue::Bool(flag) => json!(flag),
    }
}

impl JsonSink {
    pub fn new(clock: WallClock, conventions: Conventions, resource: &ResourceInfo) -> JsonSink {
        let resource: Map<String, Value> = resource
            .attributes
            .iter()
            .map(|(key, attribute)| (key.clone(), value(attribute)))
            .collect();
        JsonSink {
            clock,
            conventions,
            ids: RandomIds::new(),
            resource: Value::Object(resource),
            written: 0,
            out: BufWriter::with_capacity(64 * 1024, std::io::stdout()),
        }
    }

    pub fn to_json(&self, span: &SpanRecord) -> Value {
        let attributes: Map<String, Value> = span
            .attributes
            .iter()
            .map(|(key, attribute)| ((*key).to_owned(), value(attribute)))
            .collect();
        let (code, message) = match &span.status {
            SpanStatus::Unset => ("UNSET", None),
            SpanStatus::Error(message) => ("ERROR", Some(message.as_str())),
        };
        json!({
            "name": span.name,
            "trace_id": to_hex(&span.trace_id),
            "span_id": to_hex(&span.span_id),
            "parent_span_id": span.parent_span_id.map(|id| to_hex(&id)),
            "trace_state": span.trace_state,
            "kind": match span.kind { SpanKind::Client => "CLIENT", SpanKind::Server => "SERVER" },
            "start_time_unix_nano": span.start_unix_nanos,
            "end_time_unix_nano": span.end_unix_nanos,
            "status": { "code": code, "message": message },
            "attributes": attributes,
            "resource": self.resource,
        })
    }
}

impl CallSink for JsonSink {
    fn on_call(&mut self, call: &CallRecord) {
        let span = SpanRecord::from_call(call, self.conventions, self.clock, &mut self.ids);
        let value = self.to_json(&span);
        if serde_json::to_writer(&mut self.out, &value).is_ok() && self.out.write_all(b"\n").is_ok()
        {
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
