//! The calls the example client makes, each measured from the client's side, so a test can
//! compare what the tracer reports with what the client itself saw.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt as _;
use tonic::{Code, Request, transport::Channel};

use crate::echo::{BIDI, CLIENT_STREAM, EchoClient, EchoRequest, SERVER_STREAM, UNARY};

/// One call as the client experienced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCall {
    /// Which scenario made it.
    pub scenario: &'static str,
    /// `package.Service/Method`.
    pub method: &'static str,
    pub code: Code,
    pub message: String,
    pub duration: Duration,
    pub request_messages: u64,
    pub response_messages: u64,
}

pub const NOT_FOUND_MESSAGE: &str = "no such item: 42 \u{2717}";

fn request(payload_bytes: usize) -> EchoRequest {
    EchoRequest {
        payload: vec![0xa5; payload_bytes],
        reply_bytes: 100,
        ..EchoRequest::default()
    }
}

fn outcome<T>(result: &Result<T, tonic::Status>) -> (Code, String) {
    match result {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

async fn unary(
    client: &mut EchoClient<Channel>,
    scenario: &'static str,
    message: EchoRequest,
    timeout: Option<Duration>,
) -> ClientCall {
    let mut request = Request::new(message);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    let started = Instant::now();
    let result = client.unary(request).await;
    let duration = started.elapsed();
    let (code, message) = outcome(&result);
    ClientCall {
        scenario,
        method: UNARY,
        code,
        message,
        duration,
        request_messages: 1,
        response_messages: u64::from(result.is_ok()),
    }
}

/// Every scenario of the end-to-end tests, in order, on one channel (one connection).
pub async fn run_all(channel: Channel) -> Vec<ClientCall> {
    let mut client = EchoClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let mut calls = Vec::new();
    for _ in 0..3 {
        calls.push(unary(&mut client, "unary_ok", request(100), None).await);
    }
    let not_found = EchoRequest {
        fail_with_code: Code::NotFound as i32,
        fail_with_message: NOT_FOUND_MESSAGE.into(),
        ..request(10)
    };
    calls.push(unary(&mut client, "not_found", not_found, None).await);
    let slow = EchoRequest {
        delay_ms: 1000,
        ..request(10)
    };
    calls.push(
        unary(
            &mut client,
            "deadline_exceeded",
            slow.clone(),
            Some(Duration::from_millis(100)),
        )
        .await,
    );
    calls.push(cancelled(&mut client, slow).await);
    calls.push(server_stream(&mut client, 5).await);
    calls.push(client_stream(&mut client, 4).await);
    calls.push(bidi(&mut client, 3).await);
    let large = EchoRequest {
        reply_bytes: 2 << 20,
        ..request(2 << 20)
    };
    calls.push(unary(&mut client, "large", large, None).await);
    calls.extend(concurrent(&client, 100).await);
    calls
}

/// The client gives up after 100 ms without a deadline: the call is cancelled (RST_STREAM).
async fn cancelled(client: &mut EchoClient<Channel>, message: EchoRequest) -> ClientCall {
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_millis(100),
        client.unary(Request::new(message)),
    )
    .await;
    assert!(
        result.is_err(),
        "the slow call finished before it was cancelled"
    );
    let duration = started.elapsed();
    ClientCall {
        scenario: "cancelled",
        method: UNARY,
        code: Code::Cancelled,
        message: String::new(),
        duration,
        request_messages: 1,
        response_messages: 0,
    }
}

async fn server_stream(client: &mut EchoClient<Channel>, replies: u32) -> ClientCall {
    let started = Instant::now();
    let response = client
        .server_stream(EchoRequest {
            reply_count: replies,
            ..request(10)
        })
        .await;
    let (result, received) = drain(response).await;
    let (code, message) = outcome(&result);
    ClientCall {
        scenario: "server_stream",
        method: SERVER_STREAM,
        code,
        message,
        duration: started.elapsed(),
        request_messages: 1,
        response_messages: received,
    }
}

/// Reads a reply stream to its end; returns how it ended and how many replies came.
async fn drain(
    response: Result<tonic::Response<tonic::Streaming<crate::echo::EchoReply>>, tonic::Status>,
) -> (Result<(), tonic::Status>, u64) {
    let mut received = 0;
    let mut stream = match response {
        Ok(response) => response.into_inner(),
        Err(status) => return (Err(status), 0),
    };
    while let Some(reply) = stream.next().await {
        if let Err(status) = reply {
            return (Err(status), received);
        }
        received += 1;
    }
    (Ok(()), received)
}

async fn client_stream(client: &mut EchoClient<Channel>, requests: u64) -> ClientCall {
    let started = Instant::now();
    let messages: Vec<EchoRequest> = (0..requests).map(|_| request(50)).collect();
    let result = client.client_stream(tokio_stream::iter(messages)).await;
    let (code, message) = outcome(&result);
    ClientCall {
        scenario: "client_stream",
        method: CLIENT_STREAM,
        code,
        message,
        duration: started.elapsed(),
        request_messages: requests,
        response_messages: u64::from(result.is_ok()),
    }
}

async fn bidi(client: &mut EchoClient<Channel>, rounds: u64) -> ClientCall {
    let started = Instant::now();
    let messages: Vec<EchoRequest> = (0..rounds).map(|_| request(20)).collect();
    let (result, received) = drain(client.bidi(tokio_stream::iter(messages)).await).await;
    let (code, message) = outcome(&result);
    ClientCall {
        scenario: "bidi",
        method: BIDI,
        code,
        message,
        duration: started.elapsed(),
        request_messages: rounds,
        response_messages: received,
    }
}

/// `count` unary calls in flight at once on one channel.
async fn concurrent(client: &EchoClient<Channel>, count: usize) -> Vec<ClientCall> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                unary(
                    &mut client,
                    "concurrent",
                    EchoRequest {
                        delay_ms: 20,
                        ..request(100)
                    },
                    None,
                )
                .await
            })
        })
        .collect();
    let mut calls = Vec::new();
    for task in tasks {
        calls.push(task.await.expect("concurrent call task"));
    }
    calls
}
