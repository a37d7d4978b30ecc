//! The example gRPC client (tonic).
//!
//! `echo-client [--target URL] [--warmup N] [--wait] [--demo]`
//! - default: runs every test scenario on one connection and prints one JSON line per call
//!   with what the client itself measured (method, code, duration, message counts);
//! - `--warmup N`: first makes N unary calls, so the connection is open and warm;
//! - `--wait`: then prints `ready` and waits for a line on stdin before going on (a tracer can
//!   attach in between);
//! - `--demo`: a friendlier mix for `cargo xtask demo`, paced so the calls can be watched.

use std::time::Duration;

use integration_tests::{
    echo::{EchoClient, EchoRequest},
    scenarios::{self, ClientCall},
};
use tonic::transport::Channel;

fn json_line(call: &ClientCall) -> String {
    serde_json::json!({
        "scenario": call.scenario,
        "method": call.method,
        "code": call.code as i32,
        "message": call.message,
        "duration_ns": call.duration.as_nanos() as u64,
        "request_messages": call.request_messages,
        "response_messages": call.response_messages,
    })
    .to_string()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut target = "http://127.0.0.1:50051".to_owned();
    let (mut warmup, mut wait, mut demo) = (0, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--target" => target = args.next().ok_or("--target needs a URL")?,
            "--warmup" => warmup = args.next().ok_or("--warmup needs a count")?.parse()?,
            "--wait" => wait = true,
            "--demo" => demo = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let channel = Channel::from_shared(target)?.connect().await?;
    let mut client = EchoClient::new(channel.clone());
    for _ in 0..warmup {
        client
            .unary(EchoRequest {
                payload: vec![1; 32],
                reply_bytes: 32,
                ..EchoRequest::default()
            })
            .await?;
    }
    if wait {
        println!("ready");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
    }
    if demo {
        demo_calls(client).await;
        return Ok(());
    }
    for call in scenarios::run_all(channel).await {
        println!("{}", json_line(&call));
    }
    Ok(())
}

/// A few dozen calls of every kind, paced for watching.
async fn demo_calls(mut client: EchoClient<Channel>) {
    use tokio_stream::StreamExt as _;
    let pause = || tokio::time::sleep(Duration::from_millis(60));
    for round in 0..6u32 {
        let ok = EchoRequest {
            payload: vec![7; 64 << round],
            reply_bytes: 128,
            ..EchoRequest::default()
        };
        let _ = client.unary(ok).await;
        pause().await;
        if round % 2 == 0 {
            let missing = EchoRequest {
                fail_with_code: 5,
                fail_with_message: format!("no such item: {round}"),
                ..EchoRequest::default()
            };
            let _ = client.unary(missing).await;
            pause().await;
        }
        if round % 3 == 1 {
            let mut request = tonic::Request::new(EchoRequest {
                delay_ms: 300,
                ..EchoRequest::default()
            });
            request.set_timeout(Duration::from_millis(50));
            let _ = client.unary(request).await;
            pause().await;
        }
        if let Ok(response) = client
            .server_stream(EchoRequest {
                reply_count: 3 + round,
                reply_bytes: 256,
                ..EchoRequest::default()
            })
            .await
        {
            let mut stream = response.into_inner();
            while stream.next().await.is_some() {}
        }
        pause().await;
        let uploads: Vec<EchoRequest> = (0..4)
            .map(|_| EchoRequest {
                payload: vec![3; 1000],
                ..EchoRequest::default()
            })
            .collect();
        let _ = client.client_stream(tokio_stream::iter(uploads)).await;
        pause().await;
        let chat: Vec<EchoRequest> = (0..3)
            .map(|_| EchoRequest {
                payload: b"hi".to_vec(),
                reply_bytes: 2,
                ..EchoRequest::default()
            })
            .collect();
        if let Ok(response) = client.bidi(tokio_stream::iter(chat)).await {
            let mut stream = response.into_inner();
            while stream.next().await.is_some() {}
        }
        pause().await;
    }
}
