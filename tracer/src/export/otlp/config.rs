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

/// `url` as it may be shown: a password (or any user information) before the host is replaced
/// by `***`, wherever an endpoint is printed or logged.
pub fn redacted(url: &str) -> std::borrow::Cow<'_, str> {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let authority_end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| after_scheme + at);
    match url[after_scheme..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..after_scheme], &url[after_scheme + at..]).into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_information_in_an_endpoint_is_never_shown() {
        assert_eq!(
            redacted("http://user:s3cret@collector:4318/v1/traces"),
            "http://***@collector:4318/v1/traces"
        );
        assert_eq!(redacted("http://collector:4317"), "http://collector:4317");
        // An @ after the host is not user information.
        assert_eq!(redacted("http://collector/a@b"), "http://collector/a@b");
    }
}
