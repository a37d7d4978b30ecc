//! OTLP export (gRPC or HTTP/protobuf): spans through a bounded queue drained by a background
//! thread, and the call duration histograms (`rpc.client.call.duration` for the calls the
//! traced process made, `rpc.server.call.duration` for those it answered) through the SDK's
//! periodic reader.
//!
//! The capture loop encodes each span (see [`encoding`]) and only ever does a
//! non-blocking `try_send` and a histogram update: when the collector is slow or unreachable
//! the queue fills and further spans are dropped and counted, never waited for. Span export
//! and the metrics exporter run on one small tokio runtime owned by the sink.

use std::{
    collections::hash_map::Entry,
    str::FromStr as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use foldhash::HashMap;
use opentelemetry::{
    KeyValue,
    metrics::{Histogram, MeterProvider as _},
    trace::TraceState,
};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        PeriodicReader, SdkMeterProvider, Temporality, data::ResourceMetrics,
        exporter::PushMetricExporter,
    },
};
use tokio::runtime::Handle;

mod config;
mod encoding;
mod metric_attributes;
mod transport;

pub use config::{OtlpConfig, OtlpProtocol, redacted};

use super::{
    AttributeValue, CallSink, Conventions, ExportReport, RandomIds, ResourceInfo, WallClock,
    series::SeriesCache,
};
use crate::grpc::{CallRecord, Side};
use config::metadata;
use encoding::{RequestFrame, ResourceGroup, encode_attributes, put_span, resource_field};
use metric_attributes::{MetricAttributeSets, otel_value};
use transport::{SendError, SpanTransport};

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("starting the OTLP export thread: {0}")]
    Thread(std::io::Error),
    #[error("configuring the OTLP exporter for {endpoint}: {detail}")]
    Exporter { endpoint: String, detail: String },
}

/// Spans per export request, at least (a request takes whole batches); also the most a batch
/// collects before it is handed over.
const MAX_BATCH: u64 = 512;
/// The instrumentation scope of the spans and of the meter.
const SCOPE_NAME: &str = "grpc-tracer";
/// How often the duration histogram is exported (and once more at the end).
const METRICS_INTERVAL: Duration = Duration::from_secs(10);
/// Histogram bucket bounds in seconds, as the RPC metric conventions recommend.
const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// How long `finish` keeps trying to deliver what is queued, whatever the queue holds and
/// however slow the collector: spans still undelivered then are counted as failed.
const FLUSH_DEADLINE: Duration = Duration::from_secs(3);
/// How long the final histograms may take after that, in all.
const METRICS_FLUSH_DEADLINE: Duration = Duration::from_secs(1);

/// The call duration histograms (RPC metric semantic conventions), by the side the traced
/// process was on.
struct CallDurations {
    client: Histogram<f64>,
    server: Histogram<f64>,
}

impl CallDurations {
    fn new(provider: &SdkMeterProvider) -> CallDurations {
        let meter = provider.meter(SCOPE_NAME);
        let histogram = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build()
        };
        CallDurations {
            client: histogram(
                "rpc.client.call.duration",
                "Duration of the gRPC calls the process made, as observed on the wire",
            ),
            server: histogram(
                "rpc.server.call.duration",
                "Duration of the gRPC calls the process answered, as observed on the wire",
            ),
        }
    }

    fn of(&self, side: Side) -> &Histogram<f64> {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.server,
        }
    }
}

#[derive(Default)]
struct Counters {
    exported: AtomicU64,
    failed: AtomicU64,
    /// Set when the sink finishes: retries give up at the flush deadline.
    closing: AtomicBool,
}

/// Spans encoded one after another (each by [`put_span`]) behind their process's resource,
/// handed to the export thread together: one channel message and one wakeup per poll of the
/// capture rather than per call.
#[derive(Default)]
struct SpanBatch {
    groups: Vec<ResourceGroup>,
    spans: u64,
}

pub struct OtlpSink {
    sender: Option<SyncSender<SpanBatch>>,
    /// Spans handed to the export thread and not yet taken by it; bounded by `queue_capacity`.
    queued: Arc<AtomicU64>,
    queue_capacity: u64,
    /// Spans encoded since the last hand-over.
    pending: SpanBatch,
    thread: Option<JoinHandle<()>>,
    /// Each traced process's resource, encoded once, by resource id.
    resource_fields: HashMap<u64, Arc<[u8]>>,
    /// The duration histograms, each process's under its own resource.
    metrics: Option<Metrics>,
    metric_attributes: MetricAttributeSets,
    /// Each series' attributes, encoded once and copied into its spans.
    series: SeriesCache<SeriesAttributes>,
    /// Runs the span transport's and the metric exporter's network I/O; dropped last.
    runtime: Option<tokio::runtime::Runtime>,
    counters: Arc<Counters>,
    /// Spans handed to the export thread: each ends exported or failed.
    handed_over: u64,
    dropped_queue_full: u64,
    clock: WallClock,
    conventions: Conventions,
    ids: RandomIds,
    /// Where a span's body is encoded before its length is known; kept for its capacity.
    scratch: Vec<u8>,
}

impl OtlpSink {
    /// Builds the span transport and the metric exporter (on the sink's own runtime) and fails
    /// here if they cannot be configured, so a bad endpoint is reported at start.
    pub fn start(
        config: OtlpConfig,
        clock: WallClock,
        conventions: Conventions,
    ) -> Result<OtlpSink, OtlpError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-io")
            .enable_all()
            .build()
            .map_err(OtlpError::Thread)?;
        let frame = RequestFrame::new(SCOPE_NAME, env!("CARGO_PKG_VERSION"));
        let transport = {
            let _context = runtime.enter();
            SpanTransport::new(&config).map_err(|detail| OtlpError::Exporter {
                endpoint: redacted(&config.endpoint).into_owned(),
                detail,
            })?
        };
        let metrics = match &config.metrics_endpoint {
            Some(endpoint) => {
                // Built now, so that a bad endpoint is reported at start; the first process's
                // histograms take it.
                let spare = {
                    let _context = runtime.enter();
                    build_metric_exporter(&config, endpoint)?
                };
                Some(Metrics {
                    config: config.clone(),
                    endpoint: endpoint.clone(),
                    handle: runtime.handle().clone(),
                    spare: Some(spare),
                    by_resource: HashMap::default(),
                    unrecorded: 0,
                })
            }
            None => None,
        };
        // Every batch holds a span at least, so the span bound also bounds the batches.
        let (sender, receiver) = mpsc::sync_channel(config.queue_capacity);
        let queue_capacity = config.queue_capacity as u64;
        let queued = Arc::new(AtomicU64::new(0));
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread_queued = Arc::clone(&queued);
        let handle = runtime.handle().clone();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                export_spans(
                    config,
                    handle,
                    transport,
                    frame,
                    (receiver, thread_queued),
                    thread_counters,
                )
            })
            .map_err(OtlpError::Thread)?;
        Ok(OtlpSink {
            sender: Some(sender),
            queued,
            queue_capacity,
            pending: SpanBatch::default(),
            thread: Some(thread),
            resource_fields: HashMap::default(),
            metrics,
            metric_attributes: MetricAttributeSets::default(),
            series: SeriesCache::default(),
            runtime: Some(runtime),
            counters,
            handed_over: 0,
            dropped_queue_full: 0,
            clock,
            conventions,
            ids: RandomIds::new(),
            scratch: Vec::new(),
        })
    }
}

/// A series' attributes as the OTLP sink keeps them.
struct SeriesAttributes {
    /// As the fields of a span.
    encoded: Vec<u8>,
    /// For the duration histogram's attribute set.
    owned: Vec<(&'static str, AttributeValue<'static>)>,
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

/// Processes whose calls get duration histograms of their own; each has a meter provider and
/// its periodic reader. Calls of processes beyond are not recorded, and counted.
const MAX_METRIC_RESOURCES: usize = 32;

/// The duration histograms of each traced process, under its own resource (OTLP: a
/// `ResourceMetrics` each).
struct Metrics {
    config: OtlpConfig,
    endpoint: String,
    handle: Handle,
    /// The exporter built at start, for the first process.
    spare: Option<opentelemetry_otlp::MetricExporter>,
    by_resource: HashMap<u64, (SdkMeterProvider, CallDurations)>,
    /// Calls not recorded: their process came after [`MAX_METRIC_RESOURCES`] others.
    unrecorded: u64,
}

impl Metrics {
    /// The histograms of `resource`'s process, set up on its first call.
    fn of(&mut self, resource: &ResourceInfo) -> Option<&CallDurations> {
        let Metrics {
            config,
            endpoint,
            handle,
            spare,
            by_resource,
            unrecorded,
        } = self;
        let full = by_resource.len() >= MAX_METRIC_RESOURCES;
        // One lookup per call: the histograms of a process are found where they are made.
        let entry = match by_resource.entry(resource.id) {
            Entry::Occupied(entry) => return Some(&entry.into_mut().1),
            Entry::Vacant(entry) => entry,
        };
        if full {
            *unrecorded += 1;
            return None;
        }
        let exporter = match spare.take() {
            Some(exporter) => exporter,
            None => {
                let _context = handle.enter();
                match build_metric_exporter(config, endpoint) {
                    Ok(exporter) => exporter,
                    Err(err) => {
                        log::warn!("OTLP metrics for another process: {err}");
                        *unrecorded += 1;
                        return None;
                    }
                }
            }
        };
        let reader = PeriodicReader::builder(OnRuntime {
            handle: handle.clone(),
            exporter,
        })
        .with_interval(METRICS_INTERVAL)
        .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(to_resource(resource))
            .build();
        let durations = CallDurations::new(&provider);
        Some(&entry.insert((provider, durations)).1)
    }

    /// Exports the final histograms, waiting for them until `deadline` at most (the SDK's
    /// reader keeps to its own export timeout, so it runs on a thread of its own that is left
    /// behind past the deadline); returns the calls left out of them.
    fn shut_down(self, deadline: Instant) -> u64 {
        let providers: Vec<SdkMeterProvider> = self
            .by_resource
            .into_values()
            .map(|(provider, _)| provider)
            .collect();
        let shutting_down = std::thread::Builder::new()
            .name("otlp-metrics-end".into())
            .spawn(move || {
                for provider in providers {
                    if let Err(err) = provider.shutdown_with_timeout(FLUSH_DEADLINE) {
                        log::warn!("OTLP metrics export failed: {err}");
                    }
                }
            });
        if let Ok(thread) = shutting_down {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !thread.is_finished() {
                log::warn!("OTLP metrics: the final histograms were not delivered in time");
            }
        }
        self.unrecorded
    }
}

impl CallSink for OtlpSink {
    fn on_call(&mut self, call: &CallRecord, resource: &ResourceInfo) {
        let (mut span, series) = self.series.span(
            call,
            self.conventions,
            self.clock,
            &mut self.ids,
            |attributes| SeriesAttributes {
                encoded: encode_attributes(attributes),
                owned: attributes
                    .iter()
                    .map(|(key, value)| (*key, value.to_owned_value()))
                    .collect(),
            },
        );
        if let Some(durations) = self
            .metrics
            .as_mut()
            .and_then(|metrics| metrics.of(resource))
        {
            durations.of(call.side).record(
                call.duration().as_secs_f64(),
                &self
                    .metric_attributes
                    .for_parts([&series.owned, &span.attributes]),
            );
        }
        // A tracestate the W3C rules reject is left out, as the SDK would.
        span.trace_state = span
            .trace_state
            .filter(|state| TraceState::from_str(state).is_ok());
        let field = self
            .resource_fields
            .entry(resource.id)
            .or_insert_with(|| resource_field(resource).into());
        let groups = &mut self.pending.groups;
        if groups
            .last()
            .is_none_or(|(last, _)| !Arc::ptr_eq(last, field))
        {
            groups.push((Arc::clone(field), Vec::new()));
        }
        let (_, encoded) = groups.last_mut().expect("pushed above");
        put_span(encoded, &span, &series.encoded, &mut self.scratch);
        self.pending.spans += 1;
        if self.pending.spans >= MAX_BATCH {
            self.hand_over();
        }
    }

    fn flush(&mut self) {
        self.hand_over();
    }

    fn finish(&mut self) -> ExportReport {
        self.hand_over();
        let deadline = Instant::now() + FLUSH_DEADLINE;
        self.counters.closing.store(true, Ordering::Relaxed);
        // Disconnecting tells the thread to flush what is queued and stop; it gives up on what
        // is left at the deadline, but a request already out waits for its own timeout, and
        // that is not waited for.
        self.sender = None;
        let mut stopped = true;
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            stopped = thread.is_finished();
            if stopped {
                let _ = thread.join();
            }
        }
        let exported = self.counters.exported.load(Ordering::Relaxed);
        // What was handed over and is neither exported nor failed yet will not be delivered.
        let failed = self.handed_over.saturating_sub(exported);
        let not_in_histograms = self.metrics.take().map_or(0, |metrics| {
            metrics.shut_down(Instant::now() + METRICS_FLUSH_DEADLINE)
        });
        if let Some(runtime) = self.runtime.take() {
            if stopped {
                runtime.shutdown_timeout(Duration::from_millis(200));
            } else {
                // The export thread still waits on a request: leave both to the process's exit.
                runtime.shutdown_background();
            }
        }
        ExportReport {
            exported,
            dropped_queue_full: self.dropped_queue_full,
            failed,
            not_in_histograms,
            ..ExportReport::default()
        }
    }
}

impl OtlpSink {
    /// Passes the pending spans to the export thread, or counts them dropped when the queue
    /// is full (the collector slow or unreachable).
    fn hand_over(&mut self) {
        let spans = self.pending.spans;
        if spans == 0 {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        // Counted before sending, so the export thread never takes more than was counted.
        let room = self.queued.fetch_add(spans, Ordering::Relaxed) + spans <= self.queue_capacity;
        let sent = room
            && self
                .sender
                .as_ref()
                .is_some_and(|sender| sender.try_send(batch).is_ok());
        if sent {
            self.handed_over += spans;
        } else {
            self.queued.fetch_sub(spans, Ordering::Relaxed);
            self.dropped_queue_full += spans;
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

/// `config.headers` as gRPC metadata.
fn build_metric_exporter(
    config: &OtlpConfig,
    endpoint: &str,
) -> Result<opentelemetry_otlp::MetricExporter, OtlpError> {
    let failed = |detail: String| OtlpError::Exporter {
        endpoint: redacted(endpoint).into_owned(),
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

/// The first wait before a retryable export failure is tried again; it doubles each time, up
/// to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(8);
/// How soon a failed request is tried again once the sink is closing.
const CLOSING_RETRY_DELAY: Duration = Duration::from_millis(250);
/// How long one request is retried for, at most: a collector down longer loses it.
const MAX_RETRYING: Duration = Duration::from_secs(60);

/// Sends one request, and again with backoff while it fails in a way the OTLP specification
/// calls retryable (not connected, throttled, unavailable), as the SDKs' exporters do. While
/// it waits, further spans stay in the bounded queue, which drops (and counts) only what does
/// not fit. Retries stop at [`MAX_RETRYING`], and once the sink is closing after
/// [`FLUSH_DEADLINE`].
fn send_with_retries(
    config: &OtlpConfig,
    runtime: &Handle,
    transport: &SpanTransport,
    request: &[u8],
    counters: &Counters,
) -> Result<(), String> {
    let started = Instant::now();
    let mut delay = FIRST_RETRY_DELAY;
    let mut closing_since: Option<Instant> = None;
    loop {
        let result = runtime.block_on(async {
            tokio::time::timeout(config.timeout, transport.send(request.to_vec()))
                .await
                .unwrap_or_else(|_| {
                    Err(SendError::retryable(format!(
                        "no answer within {:?}",
                        config.timeout
                    )))
                })
        });
        let failure = match result {
            Ok(()) => return Ok(()),
            Err(failure) if failure.retryable => failure,
            Err(failure) => return Err(failure.reason),
        };
        if started.elapsed() + delay > MAX_RETRYING {
            return Err(failure.reason);
        }
        log::debug!(
            "OTLP export failed ({}); trying again in {delay:?}",
            failure.reason
        );
        let mut retry_at = Instant::now() + delay;
        while Instant::now() < retry_at {
            if counters.closing.load(Ordering::Relaxed) {
                let since = *closing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= FLUSH_DEADLINE {
                    return Err(failure.reason);
                }
                // Closing: what is left has the flush's few seconds, not the backoff's, to get
                // through (a collector back within them still gets every span).
                retry_at = retry_at.min(Instant::now() + CLOSING_RETRY_DELAY);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

fn export_spans(
    config: OtlpConfig,
    runtime: Handle,
    transport: SpanTransport,
    frame: RequestFrame,
    (batches, queued): (Receiver<SpanBatch>, Arc<AtomicU64>),
    counters: Arc<Counters>,
) {
    // The encoded spans of the next request, in the pieces they came in.
    let mut batch: Vec<ResourceGroup> = Vec::new();
    let mut count = 0;
    let take = |taken: SpanBatch, batch: &mut Vec<ResourceGroup>, count: &mut u64| {
        queued.fetch_sub(taken.spans, Ordering::Relaxed);
        *count += taken.spans;
        batch.extend(taken.groups);
    };
    let mut last_export = Instant::now();
    let mut closing_since: Option<Instant> = None;
    loop {
        match batches.recv_timeout(BATCH_DELAY) {
            Ok(taken) => take(taken, &mut batch, &mut count),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                closing_since.get_or_insert_with(Instant::now);
            }
        }
        while count < MAX_BATCH {
            match batches.try_recv() {
                Ok(taken) => take(taken, &mut batch, &mut count),
                Err(_) => break,
            }
        }
        let due =
            count >= MAX_BATCH || last_export.elapsed() >= BATCH_DELAY || closing_since.is_some();
        if count > 0 && due {
            let past_deadline = closing_since.is_some_and(|since| since.elapsed() > FLUSH_DEADLINE);
            let outcome = if past_deadline {
                Err("still undelivered when the tracer stopped".to_owned())
            } else {
                let request = frame.request(&batch);
                send_with_retries(&config, &runtime, &transport, &request, &counters)
            };
            batch.clear();
            match outcome {
                Ok(()) => {
                    counters.exported.fetch_add(count, Ordering::Relaxed);
                }
                Err(reason) => {
                    counters.failed.fetch_add(count, Ordering::Relaxed);
                    log::warn!(
                        "OTLP export of {count} spans to {} failed: {reason}",
                        redacted(&config.endpoint)
                    );
                }
            }
            count = 0;
            last_export = Instant::now();
        }
        if closing_since.is_some() && count == 0 {
            // Drain whatever is left (try_recv above stops at MAX_BATCH).
            match batches.try_recv() {
                Ok(taken) => take(taken, &mut batch, &mut count),
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::export::span::tests::call;

    /// Every span the sink is given ends up exported, failed or dropped, and the queue bound
    /// holds while the collector does not answer.
    #[test]
    fn spans_beyond_the_queue_are_dropped_and_counted() {
        // Accepts connections (the kernel completes them) and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = OtlpConfig {
            endpoint: format!("http://{}/v1/traces", silent.local_addr().unwrap()),
            metrics_endpoint: None,
            protocol: OtlpProtocol::HttpProtobuf,
            headers: Vec::new(),
            timeout: Duration::from_secs(1),
            queue_capacity: 4,
        };
        let resource = ResourceInfo::new(Vec::new());
        let mut sink = OtlpSink::start(config, WallClock::measure(), Conventions::Both).unwrap();
        let call = call();
        sink.on_call(&call, &resource);
        sink.flush();
        // The export thread has taken that span and is waiting for the collector's answer.
        let _connection = silent.accept().unwrap();
        assert_eq!(sink.queued.load(Ordering::Relaxed), 0);
        // Two batches of two fill the queue; the third finds no room.
        for _ in 0..3 {
            sink.on_call(&call, &resource);
            sink.on_call(&call, &resource);
            sink.flush();
        }
        let report = sink.finish();
        assert_eq!(report.dropped_queue_full, 2, "{report:?}");
        assert_eq!(report.failed, 5, "{report:?}");
        assert_eq!(report.exported, 0, "{report:?}");
    }
}
