//! A real OTLP/gRPC receiver (the collector's TraceService and MetricsService, from
//! opentelemetry-proto) that keeps every span and histogram it is sent, for the end-to-end tests.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{AnyValue, any_value::Value},
    metrics::v1::metric::Data,
};
use tonic::{Request, Response, Status};

/// A span as received, flattened for assertions.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// OTLP SpanKind: 2 = server, 3 = client.
    pub kind: i32,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// OTLP StatusCode: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nanos.saturating_sub(self.start_unix_nanos))
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(Value::StringValue(text)) => text.clone(),
        Some(Value::IntValue(number)) => number.to_string(),
        Some(Value::BoolValue(flag)) => flag.to_string(),
        Some(Value::DoubleValue(number)) => number.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Latest cumulative count of each histogram series, by metric name and attributes.
type HistogramCounts = BTreeMap<(String, String), u64>;

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    histograms: Arc<Mutex<HistogramCounts>>,
    /// Every span decoded, kept or not.
    received: Arc<AtomicU64>,
    /// Only count spans (the benchmark's collector, which receives millions).
    count_only: Arc<AtomicBool>,
}

impl Collector {
    fn store_metrics(&self, request: ExportMetricsServiceRequest) {
        let mut histograms = self.histograms.lock().expect("histograms lock");
        for resource_metrics in request.resource_metrics {
            for scope_metrics in resource_metrics.scope_metrics {
                for metric in scope_metrics.metrics {
                    let Some(Data::Histogram(histogram)) = metric.data else {
                        continue;
                    };
                    for point in histogram.data_points {
                        let attributes: Vec<String> = point
                            .attributes
                            .iter()
                            .map(|kv| format!("{}={}", kv.key, text(kv.value.as_ref())))
                            .collect();
                        histograms.insert((metric.name.clone(), attributes.join(",")), point.count);
                    }
                }
            }
        }
    }

    fn store_spans(&self, request: ExportTraceServiceRequest) {
        let received: usize = request
            .resource_spans
            .iter()
            .flat_map(|resource_spans| &resource_spans.scope_spans)
            .map(|scope_spans| scope_spans.spans.len())
            .sum();
        self.received.fetch_add(received as u64, Ordering::Relaxed);
        if self.count_only.load(Ordering::Relaxed) {
            return;
        }
        let mut spans = self.spans.lock().expect("spans lock");
        for resource_spans in request.resource_spans {
            let resource: BTreeMap<String, String> = resource_spans
                .resource
                .map(|resource| {
                    resource
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                        .collect()
                })
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    let status = span.status.unwrap_or_default();
                    spans.push(ReceivedSpan {
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        kind: span.kind,
                        start_unix_nanos: span.start_time_unix_nano,
                        end_unix_nanos: span.end_time_unix_nano,
                        status_code: status.code,
                        status_message: status.message,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                            .collect(),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }

    /// OTLP/HTTP with protobuf bodies: POST /v1/traces and /v1/metrics.
    async fn serve_http(
        self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, hyper::Error> {
        use http_body_util::BodyExt as _;
        use prost::Message as _;
        let path = request.uri().path().to_owned();
        let body = request.into_body().collect().await?.to_bytes();
        let (status, response) = match path.as_str() {
            "/v1/traces" => match ExportTraceServiceRequest::decode(body) {
                Ok(request) => {
                    self.store_spans(request);
                    (
                        200,
                        ExportTraceServiceResponse {
                            partial_success: None,
                        }
                        .encode_to_vec(),
                    )
                }
                Err(_) => (400, Vec::new()),
            },
            "/v1/metrics" => match ExportMetricsServiceRequest::decode(body) {
                Ok(request) => {
                    self.store_metrics(request);
                    (
                        200,
                        ExportMetricsServiceResponse {
                            partial_success: None,
                        }
                        .encode_to_vec(),
                    )
                }
                Err(_) => (400, Vec::new()),
            },
            _ => (404, Vec::new()),
        };
        Ok(hyper::Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(http_body_util::Full::new(bytes::Bytes::from(response)))
            .expect("valid response"))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.store_metrics(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.store_spans(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

enum Transport {
    Grpc,
    Http,
}

/// A receiver listening on a loopback port, served by its own runtime thread.
pub struct OtlpReceiver {
    pub address: SocketAddr,
    received: Arc<AtomicU64>,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    histograms: Arc<Mutex<HistogramCounts>>,
    _runtime: tokio::runtime::Runtime,
}

impl OtlpReceiver {
    /// An OTLP/gRPC receiver.
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::start_with(Transport::Grpc, false)
    }

    /// An OTLP/gRPC receiver on `port` of 127.0.0.1 (one that was free a moment ago).
    pub fn start_on(port: u16) -> OtlpReceiver {
        OtlpReceiver::start_at(Transport::Grpc, false, port)
    }

    /// An OTLP/HTTP receiver (protobuf bodies).
    pub fn start_http() -> OtlpReceiver {
        OtlpReceiver::start_with(Transport::Http, false)
    }

    /// An OTLP/gRPC receiver that decodes every request but keeps only the number of spans.
    pub fn start_counting() -> OtlpReceiver {
        OtlpReceiver::start_with(Transport::Grpc, true)
    }

    fn start_with(transport: Transport, count_only: bool) -> OtlpReceiver {
        OtlpReceiver::start_at(transport, count_only, 0)
    }

    fn start_at(transport: Transport, count_only: bool, port: u16) -> OtlpReceiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let collector = Collector::default();
        collector.count_only.store(count_only, Ordering::Relaxed);
        let received = Arc::clone(&collector.received);
        let spans = Arc::clone(&collector.spans);
        let histograms = Arc::clone(&collector.histograms);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("bind receiver");
        let address = listener.local_addr().expect("receiver address");
        match transport {
            Transport::Grpc => {
                runtime.spawn(
                    tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(collector.clone()))
                        .add_service(MetricsServiceServer::new(collector))
                        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                            listener,
                        )),
                );
            }
            Transport::Http => {
                runtime.spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let collector = collector.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |request| {
                                collector.clone().serve_http(request)
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
            }
        }
        OtlpReceiver {
            address,
            received,
            spans,
            histograms,
            _runtime: runtime,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The histogram series of `metric` received so far: attributes and latest count.
    pub fn histogram(&self, metric: &str) -> BTreeMap<String, u64> {
        self.histograms
            .lock()
            .expect("histograms lock")
            .iter()
            .filter(|((name, _), _)| name == metric)
            .map(|((_, attributes), count)| (attributes.clone(), *count))
            .collect()
    }

    /// Spans received so far, kept or only counted.
    pub fn spans_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans lock").clone()
    }

    /// Waits until at least `count` spans arrived (or the timeout passed) and returns them.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= count || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
