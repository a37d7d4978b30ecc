//! OTLP export (gRPC or HTTP/protobuf) through a bounded queue drained by a background thread.
//!
//! The capture loop only ever does a non-blocking `try_send`: when the collector is slow or
//! unreachable the queue fills and further spans are dropped and counted, never waited for.

use std::{
    borrow::Cow,
    str::FromStr as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant, UNIX_EPOCH},
};

use opentelemetry::{
    InstrumentationScope, KeyValue, Value,
    trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState},
};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::{
    Resource,
    trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks},
};

use super::{
    AttributeValue, CallSink, Conventions, ExportReport, RandomIds, ResourceInfo, SpanKind,
    SpanRecord, SpanStatus, WallClock,
};
use crate::grpc::CallRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// For gRPC the collector's base URL; for HTTP the full traces URL.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: Vec<(String, String)>,
    /// Per export request.
    pub timeout: Duration,
    /// Spans waiting for export; beyond it they are dropped and counted.
    pub queue_capacity: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("starting the OTLP export thread: {0}")]
    Thread(std::io::Error),
    #[error("configuring the OTLP exporter for {endpoint}: {detail}")]
    Exporter { endpoint: String, detail: String },
}

const MAX_BATCH: usize = 512;
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// How long `finish` keeps trying to deliver what is queued.
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counters {
    exported: AtomicU64,
    failed: AtomicU64,
}

pub struct OtlpSink {
    sender: Option<SyncSender<SpanData>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    dropped_queue_full: u64,
    clock: WallClock,
    conventions: Conventions,
    ids: RandomIds,
    scope: InstrumentationScope,
}

impl OtlpSink {
    /// Builds the exporter (on its own thread and runtime) and fails here if it cannot be
    /// configured, so a bad endpoint is reported at start.
    pub fn start(
        config: OtlpConfig,
        resource: &ResourceInfo,
        clock: WallClock,
        conventions: Conventions,
    ) -> Result<OtlpSink, OtlpError> {
        let (sender, receiver) = mpsc::sync_channel(config.queue_capacity);
        let (ready_sender, ready) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let resource = to_resource(resource);
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export_thread(config, resource, receiver, thread_counters, ready_sender))
            .map_err(OtlpError::Thread)?;
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(OtlpError::Exporter {
                    endpoint: String::new(),
                    detail: "export thread died".into(),
                });
            }
        }
        Ok(OtlpSink {
            sender: Some(sender),
            thread: Some(thread),
            counters,
            dropped_queue_full: 0,
            clock,
            conventions,
            ids: RandomIds::new(),
            scope: InstrumentationScope::builder("grpc-tracer")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }

    fn span_data(&self, span: SpanRecord) -> SpanData {
        let trace_state = span
            .trace_state
            .as_deref()
            .and_then(|state| TraceState::from_str(state).ok())
            .unwrap_or_default();
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(span.trace_id),
                SpanId::from_bytes(span.span_id),
                TraceFlags::SAMPLED,
                false,
                trace_state,
            ),
            parent_span_id: span
                .parent_span_id
                .map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: span.parent_span_id.is_some(),
            span_kind: match span.kind {
                SpanKind::Client => opentelemetry::trace::SpanKind::Client,
                SpanKind::Server => opentelemetry::trace::SpanKind::Server,
            },
            name: Cow::Owned(span.name),
            start_time: UNIX_EPOCH + Duration::from_nanos(span.start_unix_nanos),
            end_time: UNIX_EPOCH + Duration::from_nanos(span.end_unix_nanos),
            attributes: span
                .attributes
                .into_iter()
                .map(|(key, value)| KeyValue::new(key, otel_value(value)))
                .collect(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: match span.status {
                SpanStatus::Unset => opentelemetry::trace::Status::Unset,
                SpanStatus::Error(message) => opentelemetry::trace::Status::error(message),
            },
            instrumentation_scope: self.scope.clone(),
        }
    }
}

fn otel_value(value: AttributeValue) -> Value {
    match value {
        AttributeValue::Str(text) => Value::from(text),
        AttributeValue::Int(number) => Value::from(number),
        AttributeValue::Bool(flag) => Value::from(flag),
    }
}

fn to_resource(resource: &ResourceInfo) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            resource
                .attributes
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), otel_value(value.clone()))),
        )
        .build()
}

impl CallSink for OtlpSink {
    fn on_call(&mut self, call: &CallRecord) {
        let span = SpanRecord::from_call(call, self.conventions, self.clock, &mut self.ids);
        let data = self.span_data(span);
        if let Some(sender) = &self.sender {
            match sender.try_send(data) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.dropped_queue_full += 1
                }
            }
        }
    }

    fn finish(&mut self) -> ExportReport {
        // Disconnecting tells the thread to flush what is queued and stop.
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        ExportReport {
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue_full,
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.finish();
        }
    }
}

fn build_exporter(config: &OtlpConfig) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
    let failed = |detail: String| OtlpError::Exporter {
        endpoint: config.endpoint.clone(),
        detail,
    };
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (key, value) in &config.headers {
                let key =
                    tonic::metadata::MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
                        .map_err(|err| failed(format!("header {key}: {err}")))?;
                let value = value
                    .parse()
                    .map_err(|err| failed(format!("header value: {err}")))?;
                metadata.insert(key, value);
            }
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&config.endpoint)
                .with_timeout(config.timeout)
                .with_metadata(metadata)
                .build()
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&config.endpoint)
            .with_timeout(config.timeout)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_headers(config.headers.iter().cloned().collect())
            .build(),
    };
    exporter.map_err(|err| failed(err.to_string()))
}

fn export_thread(
    config: OtlpConfig,
    resource: Resource,
    spans: Receiver<SpanData>,
    counters: Arc<Counters>,
    ready: mpsc::Sender<Result<(), OtlpError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(OtlpError::Thread(err)));
            return;
        }
    };
    let mut exporter = match runtime.block_on(async { build_exporter(&config) }) {
        Ok(exporter) => exporter,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    exporter.set_resource(&resource);
    let _ = ready.send(Ok(()));

    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut last_export = Instant::now();
    let mut closing_since: Option<Instant> = None;
    loop {
        match spans.recv_timeout(BATCH_DELAY) {
            Ok(span) => batch.push(span),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                closing_since.get_or_insert_with(Instant::now);
            }
        }
        while batch.len() < MAX_BATCH {
            match spans.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
        let due = batch.len() >= MAX_BATCH
            || last_export.elapsed() >= BATCH_DELAY
            || closing_since.is_some();
        if !batch.is_empty() && due {
            let count = batch.len() as u64;
            let past_deadline = closing_since.is_some_and(|since| since.elapsed() > FLUSH_DEADLINE);
            let delivered = !past_deadline
                && runtime.block_on(async {
                    matches!(
                        tokio::time::timeout(
                            config.timeout,
                            exporter.export(std::mem::take(&mut batch))
                        )
                        .await,
                        Ok(Ok(()))
                    )
                });
            batch.clear();
            if delivered {
                counters.exported.fetch_add(count, Ordering::Relaxed);
            } else {
                counters.failed.fetch_add(count, Ordering::Relaxed);
                log::warn!("OTLP export of {count} spans to {} failed", config.endpoint);
            }
            last_export = Instant::now();
        }
        if closing_since.is_some() && batch.is_empty() {
            // Drain whatever is left (try_recv above stops at MAX_BATCH).
            match spans.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
    }
    let _ = exporter.shutdown_with_timeout(Duration::from_secs(1));
}
