//! Delivering encoded OTLP trace export requests to a collector: a POST per request over
//! HTTP/protobuf, or a unary call of the collector's `TraceService/Export` over gRPC. The
//! request bytes come from [`super::encoding`] and are sent as they are.

use bytes::{Buf as _, BufMut as _, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, Uri, header::CONTENT_TYPE, uri::PathAndQuery};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::MetadataMap,
    transport::Channel,
};

use super::config::{OtlpConfig, OtlpProtocol, metadata};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

pub enum SpanTransport {
    Http {
        /// Boxed: it is most of the enum's size, and there is one transport per tracer.
        client: Box<Client<HttpConnector, Full<Bytes>>>,
        uri: Uri,
        headers: HeaderMap,
    },
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
    },
}

impl SpanTransport {
    /// Connects lazily (on the first export), so an unreachable collector shows up as failed
    /// exports, counted, rather than as an error at start. Must be called inside the tokio
    /// runtime that will run the exports.
    pub fn new(config: &OtlpConfig) -> Result<SpanTransport, String> {
        match config.protocol {
            OtlpProtocol::HttpProtobuf => {
                let uri: Uri = config
                    .endpoint
                    .parse()
                    .map_err(|err| format!("invalid URL: {err}"))?;
                let mut headers = HeaderMap::new();
                for (key, value) in &config.headers {
                    headers.insert(
                        HeaderName::from_bytes(key.as_bytes())
                            .map_err(|err| format!("header {key}: {err}"))?,
                        HeaderValue::from_str(value)
                            .map_err(|err| format!("header {key} value: {err}"))?,
                    );
                }
                Ok(SpanTransport::Http {
                    client: Box::new(Client::builder(TokioExecutor::new()).build_http()),
                    uri,
                    headers,
                })
            }
            OtlpProtocol::Grpc => {
                let channel = Channel::from_shared(config.endpoint.clone())
                    .map_err(|err| format!("invalid URL: {err}"))?
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout)
                    .connect_lazy();
                Ok(SpanTransport::Grpc {
                    channel,
                    metadata: metadata(config)?,
                })
            }
        }
    }

    /// Sends one `ExportTraceServiceRequest`; `Err` tells why it was not accepted, and
    /// whether trying again later may help.
    pub async fn send(&self, request: Vec<u8>) -> Result<(), SendError> {
        match self {
            SpanTransport::Http {
                client,
                uri,
                headers,
            } => {
                let mut post = http::Request::post(uri.clone())
                    .header(CONTENT_TYPE, "application/x-protobuf")
                    .body(Full::new(Bytes::from(request)))
                    .map_err(|err| SendError::permanent(err.to_string()))?;
                post.headers_mut().extend(headers.clone());
                // Not connected, or the connection broke: the collector may be back soon.
                let response = client
                    .request(post)
                    .await
                    .map_err(|err| SendError::retryable(err.to_string()))?;
                let status = response.status();
                // Read to the end, so that the connection can carry the next request.
                let _ = response.into_body().collect().await;
                if status.is_success() {
                    Ok(())
                } else {
                    // OTLP/HTTP: 429, 502, 503 and 504 are worth retrying.
                    let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                    let reason = format!("the collector answered HTTP {status}");
                    Err(SendError { reason, retryable })
                }
            }
            SpanTransport::Grpc { channel, metadata } => {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready()
                    .await
                    .map_err(|err| SendError::retryable(err.to_string()))?;
                let mut call = tonic::Request::new(request);
                *call.metadata_mut() = metadata.clone();
                grpc.unary(call, PathAndQuery::from_static(EXPORT_PATH), EncodedCodec)
                    .await
                    .map(drop)
                    .map_err(|status| {
                        // OTLP/gRPC: the codes that say "later" are worth retrying.
                        use tonic::Code;
                        let retryable = matches!(
                            status.code(),
                            Code::Cancelled
                                | Code::DeadlineExceeded
                                | Code::ResourceExhausted
                                | Code::Aborted
                                | Code::OutOfRange
                                | Code::Unavailable
                                | Code::DataLoss
                        );
                        SendError {
                            reason: status.to_string(),
                            retryable,
                        }
                    })
            }
        }
    }
}

/// Why an export request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub reason: String,
    /// The OTLP specification's retryable failures: not connected, throttled, unavailable.
    pub retryable: bool,
}

impl SendError {
    pub fn retryable(reason: String) -> SendError {
        SendError {
            reason,
            retryable: true,
        }
    }

    fn permanent(reason: String) -> SendError {
        SendError {
            reason,
            retryable: false,
        }
    }
}

/// A gRPC codec for messages that are already encoded: it sends the request's bytes as they
/// are, and reads past the response (an `ExportTraceServiceResponse`, whose partial-success
/// details the tracer does not use).
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> EncodedCodec {
        EncodedCodec
    }

    fn decoder(&mut self) -> EncodedCodec {
        EncodedCodec
    }
}

impl Encoder for EncodedCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = ();
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
