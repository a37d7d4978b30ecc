//! Turning call records into output: console lines, JSON-lines spans, or OTLP spans.

mod clock;
mod console;
mod json;
mod line_output;
mod otlp;
mod resource;
mod series;
mod span;
mod summary;

pub use clock::WallClock;
pub use console::ConsoleSink;
pub use json::JsonSink;
pub use line_output::LineDestination;
pub use otlp::{OtlpConfig, OtlpProtocol, OtlpSink, redacted};
pub use resource::{ProcessResources, ResourceInfo, ResourceOverrides, parse_key_values};
pub use span::{
    AttributeValue, Conventions, IdSource, RandomIds, SpanAttributes, SpanKind, SpanRecord,
    SpanStatus, TraceParent, to_hex,
};
pub use summary::Summary;

use crate::grpc::CallRecord;

/// Where finished calls go. Implementations never block the capture loop for long.
pub trait CallSink {
    /// A finished call, made or answered by the process `resource` describes.
    fn on_call(&mut self, call: &CallRecord, resource: &ResourceInfo);
    /// Pushes out what is buffered; called after every batch of calls.
    fn flush(&mut self) {}
    /// Flushes what is pending (bounded in time) and reports what could not be delivered.
    fn finish(&mut self) -> ExportReport;
}

/// Delivery accounting of a sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub exported: u64,
    /// Dropped because the export queue was full (collector slow or unreachable).
    pub dropped_queue_full: u64,
    /// Handed to the exporter, which failed to deliver them.
    pub failed: u64,
    /// Could not be written to stdout or the output file (console and JSON output).
    pub not_printed: u64,
    /// Calls left out of the duration histograms: their process came after as many others as
    /// get histograms of their own (OTLP).
    pub not_in_histograms: u64,
}
