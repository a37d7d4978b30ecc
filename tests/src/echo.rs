//! The `grpctrace.demo.Echo` service: one method per call shape, with request fields that make
//! the server fail, stall or reply large, so tests and the demo can produce every outcome.

use std::{pin::Pin, time::Duration};

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming, transport::server::TcpIncoming};

include!(concat!(env!("OUT_DIR"), "/grpctrace.demo.Echo.rs"));

pub use echo_client::EchoClient;
pub use echo_server::{Echo, EchoServer};

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
    /// Non-zero: the server answers with this gRPC status code...
    #[prost(int32, tag = "2")]
    pub fail_with_code: i32,
    /// ...and this message.
    #[prost(string, tag = "3")]
    pub fail_with_message: String,
    /// The server waits this long before answering.
    #[prost(uint32, tag = "4")]
    pub delay_ms: u32,
    /// Size of each reply's payload.
    #[prost(uint32, tag = "5")]
    pub reply_bytes: u32,
    /// Number of replies, for server streaming.
    #[prost(uint32, tag = "6")]
    pub reply_count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub sequence: u32,
}

/// Full method names, as they appear in `:path` (without the leading slash).
pub const UNARY: &str = "grpctrace.demo.Echo/Unary";
pub const SERVER_STREAM: &str = "grpctrace.demo.Echo/ServerStream";
pub const CLIENT_STREAM: &str = "grpctrace.demo.Echo/ClientStream";
pub const BIDI: &str = "grpctrace.demo.Echo/Bidi";

pub struct EchoService;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

async fn apply(request: &EchoRequest) -> Result<(), Status> {
    if request.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(u64::from(request.delay_ms))).await;
    }
    if request.fail_with_code != 0 {
        return Err(Status::new(
            tonic::Code::from(request.fail_with_code),
            request.fail_with_message.clone(),
        ));
    }
    Ok(())
}

fn reply(request: &EchoRequest, sequence: u32) -> EchoReply {
    EchoReply {
        payload: vec![0x5a; request.reply_bytes as usize],
        sequence,
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let request = request.into_inner();
        apply(&request).await?;
        Ok(Response::new(reply(&request, 0)))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let request = request.into_inner();
        apply(&request).await?;
        let replies = (0..request.reply_count).map(move |sequence| Ok(reply(&request, sequence)));
        Ok(Response::new(Box::pin(tokio_stream::iter(replies))))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut stream = request.into_inner();
        let mut count = 0;
        let mut last = EchoRequest::default();
        while let Some(message) = stream.next().await {
            last = message?;
            count += 1;
        }
        apply(&last).await?;
        Ok(Response::new(reply(&last, count)))
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let mut stream = request.into_inner();
        let (sender, receiver) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut sequence = 0;
            while let Some(message) = stream.next().await {
                let outcome = match message {
                    Ok(message) => apply(&message).await.map(|()| reply(&message, sequence)),
                    Err(status) => Err(status),
                };
                sequence += 1;
                let failed = outcome.is_err();
                if sender.send(outcome).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Serves the echo service on `listener` until the task is dropped.
/// Room for the benchmark, which holds 10,000 calls open on one connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 20_000;

/// Serves the Echo service, allowing `max_streams` concurrent streams per connection (the
/// SETTINGS_MAX_CONCURRENT_STREAMS it sends).
pub async fn serve(
    listener: tokio::net::TcpListener,
    max_streams: u32,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(max_streams))
        .add_service(
            EchoServer::new(EchoService)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
        // As `Server::serve` would set it: without TCP_NODELAY, a reply written in two pieces
        // waits for the peer's delayed ACK (40 ms) before its second piece goes out.
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
}
