//! OTLP export (gRPC or HTTP/protobuf): spans through a bounded queue drained by a background
//! thread, and the `rpc.client.call.duration` histogram through the SDK's periodic reader.
//!
//! The capture loop only ever does a non-blocking `try_send` and a histogram update: when the
//! collector is slow or unreachable the queue fills and further spans are dropped and counted,
//! never waited for. Both exporters run on one small tokio runtime owned by the sink.

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
    metrics::{Histogram, MeterProvider as _},
    trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState},
};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        PeriodicReader, SdkMeterProvider, Temporality, data::ResourceMetrics,
        exporter::PushMetricExporter,
    },
    trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks},
};
use tokio::runtime::Handle;

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
    /// Where metrics go (same rules); `None` exports no metrics.
    pub metrics_endpoint: Option<String>,
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
/// How often the duration histogram is exported (and once more at the end).
const METRICS_INTERVAL: Duration = Duration::from_secs(10);
/// Histogram bucket bounds in seconds, as the RPC metric conventions recommend.
const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
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
    metrics: Option<(SdkMeterProvider, Histogram<f64>)>,
    /// Runs the exporters' network I/O; dropped last.
    runtime: Option<tokio::runtime::Runtime>,
    counters: Arc<Counters>,
    dropped_queue_full: u64,
    clock: WallClock,
    conventions: Conventions,
    ids: RandomIds,
    scope: InstrumentationScope,
}

impl OtlpSink {
    /// Builds the exporters (on the sink's own runtime) and fails here if they cannot be
    /// configured, so a bad endpoint is reported at start.
    pub fn start(
        config: OtlpConfig,
        resource: &ResourceInfo,
        clock: WallClock,
        conventions: Conventions,
    ) -> Result<OtlpSink, OtlpError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-io")
            .enable_all()
            .build()
            .map_err(OtlpError::Thread)?;
        let resource = to_resource(resource);
        let mut span_exporter = {
            let _context = runtime.enter();
            build_span_exporter(&config)?
        };
        span_exporter.set_resource(&resource);
        let metrics = match &config.metrics_endpoint {
            Some(endpoint) => {
                let exporter = {
                    let _context = runtime.enter();
                    build_metric_exporter(&config, endpoint)?
                };
                let reader = PeriodicReader::builder(OnRuntime {
                    handle: runtime.handle().clone(),
                    exporter,
                })
                .with_interval(METRICS_INTERVAL)
                .build();
                let provider = SdkMeterProvider::builder()
                    .with_reader(reader)
                    .with_resource(resource.clone())
                    .build();
                let histogram = provider
                    .meter("grpc-tracer")
                    .f64_histogram("rpc.client.call.duration")
                    .with_unit("s")
                    .with_description("Duration of gRPC calls, as observed on the wire")
                    .with_boundaries(DURATION_BOUNDARIES.to_vec())
                    .build();
                Some((provider, histogram))
            }
            None => None,
        };
        let (sender, receiver) = mpsc::sync_channel(config.queue_capacity);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let handle = runtime.handle().clone();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export_spans(config, handle, span_exporter, receiver, thread_counters))
            .map_err(OtlpError::Thread)?;
        Ok(OtlpSink {
            sender: Some(sender),
            thread: Some(thread),
            metrics,
            runtime: Some(runtime),
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

    fn span_data(&self, span: SpanRecord<'_>) -> SpanData {
        let trace_state = span
            .trace_state
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
            name: Cow::Owned(span.name.to_owned()),
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
                SpanStatus::Error(message) => {
                    opentelemetry::trace::Status::error(message.to_owned())
                }
            },
            instrumentation_scope: self.scope.clone(),
        }
    }
}

fn otel_value(value: AttributeValue<'_>) -> Value {
    match value {
        AttributeValue::Str(text) => Value::from(text.into_owned()),
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

/// Attributes of the duration histogram: the span's, minus the high-cardinality ones (peer
/// address and port, message sizes, per-call facts).
fn metric_attributes(span: &SpanRecord<'_>) -> Vec<KeyValue> {
    const KEPT: [&str; 9] = [
        "rpc.system",
        "rpc.system.name",
        "rpc.service",
        "rpc.method",
        "rpc.grpc.status_code",
        "rpc.response.status_code",
        "error.type",
        "server.address",
        "server.port",
    ];
    span.attributes
        .iter()
        .filter(|(key, _)| KEPT.contains(key))
        .map(|(key, value)| KeyValue::new(*key, otel_value(value.clone())))
        .collect()
}

impl CallSink for OtlpSink {
    fn on_call(&mut self, call: &CallRecord) {
        let span = SpanRecord::from_call(call, self.conventions, self.clock, &mut self.ids);
        if let Some((_, histogram)) = &self.metrics {
            histogram.record(call.duration().as_secs_f64(), &metric_attributes(&span));
        }
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
        if let Some((provider, _)) = self.metrics.take() {
            // Exports the final histogram.
            if let Err(err) = provider.shutdown_with_timeout(FLUSH_DEADLINE) {
                log::warn!("OTLP metrics export failed: {err}");
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        ExportReport {
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue_full,
            failed: self.counters.failed.load(Ordering::Relaxed),
            ..ExportReport::default()
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

fn metadata(config: &OtlpConfig) -> Result<tonic::metadata::MetadataMap, String> {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (key, value) in &config.headers {
        let key = tonic::metadata::MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
            .map_err(|err| format!("header {key}: {err}"))?;
        metadata.insert(
            key,
            value
                .parse()
                .map_err(|err| format!("header value: {err}"))?,
        );
    }
    Ok(metadata)
}

fn build_span_exporter(config: &OtlpConfig) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
    let failed = |detail: String| OtlpError::Exporter {
        endpoint: config.endpoint.clone(),
        detail,
    };
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&config.endpoint)
            .with_timeout(config.timeout)
            .with_metadata(metadata(config).map_err(failed)?)
            .build(),
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

fn build_metric_exporter(
    config: &OtlpConfig,
    endpoint: &str,
) -> Result<opentelemetry_otlp::MetricExporter, OtlpError> {
    let failed = |detail: String| OtlpError::Exporter {
        endpoint: endpoint.to_owned(),
        detail,
    };
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(config.timeout)
            .with_metadata(metadata(config).map_err(failed)?)
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_timeout(config.timeout)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_headers(config.headers.iter().cloned().collect())
            .build(),
    };
    exporter.map_err(|err| failed(err.to_string()))
}

/// Runs the OTLP metric exporter on the sink's runtime: the SDK's periodic reader calls it from
/// its own (non-tokio) thread, where the network client could not run by itself.
struct OnRuntime {
    handle: Handle,
    exporter: opentelemetry_otlp::MetricExporter,
}

impl PushMetricExporter for OnRuntime {
    fn export(
        &self,
        metrics: &ResourceMetrics,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = self.handle.block_on(self.exporter.export(metrics));
        std::future::ready(result)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.exporter.temporality()
    }
}

fn export_spans(
    config: OtlpConfig,
    runtime: Handle,
    exporter: opentelemetry_otlp::SpanExporter,
    spans: Receiver<SpanData>,
    counters: Arc<Counters>,
) {
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
