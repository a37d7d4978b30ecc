//! Where and how spans are exported.

use std::time::Duration;

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

/// The configured headers (`OTEL_EXPORTER_OTLP_HEADERS`) as gRPC metadata.
pub(super) fn metadata(config: &OtlpConfig) -> Result<tonic::metadata::MetadataMap, String> {
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
