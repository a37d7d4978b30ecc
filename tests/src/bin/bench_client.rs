//! Load generator for `cargo xtask bench` (tonic). Prints one JSON object with what it did and
//! what it cost the client process.
//!
//! `bench-client --target URL [--connections N] [--concurrency K] [--duration-ms D]
//!   [--rate CALLS_PER_S] [--payload BYTES] [--reply BYTES] [--replies N] [--hold STREAMS]
//!   [--wait] [--warm]`
//! - `--concurrency`: calls in flight per connection; `--rate 0` (default) saturates.
//! - `--replies N` > 0 makes server-streaming calls of N replies instead of unary calls.
//! - `--hold N` opens N server-streaming calls (in batches of 500, spread over the
//!   connections) that stay open ~3 s together (memory test).
//! - `--wait` prints `ready` and waits for a line on stdin before connecting, so a tracer
//!   attached meanwhile sees the connections from their first byte.
//! - `--warm`: connects and makes one call per connection first (before `--wait`), so a tracer
//!   attached meanwhile joins connections that are already in use.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use integration_tests::echo::{EchoClient, EchoRequest};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

struct Options {
    target: String,
    connections: usize,
    concurrency: usize,
    duration: Duration,
    rate: f64,
    payload: usize,
    reply: u32,
    replies: u32,
    hold: usize,
    wait: bool,
    warm: bool,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        target: "http://127.0.0.1:50051".into(),
        connections: 1,
        concurrency: 8,
        duration: Duration::from_secs(5),
        rate: 0.0,
        payload: 100,
        reply: 100,
        replies: 0,
        hold: 0,
        wait: false,
        warm: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| text.parse::<f64>().map_err(|err| format!("{text}: {err}"));
        match arg.as_str() {
            "--target" => options.target = value()?,
            "--connections" => options.connections = number(value()?)? as usize,
            "--concurrency" => options.concurrency = number(value()?)? as usize,
            "--duration-ms" => options.duration = Duration::from_millis(number(value()?)? as u64),
            "--rate" => options.rate = number(value()?)?,
            "--payload" => options.payload = number(value()?)? as usize,
            "--reply" => options.reply = number(value()?)? as u32,
            "--replies" => options.replies = number(value()?)? as u32,
            "--hold" => options.hold = number(value()?)? as usize,
            "--wait" => options.wait = true,
            "--warm" => options.warm = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

fn cpu_micros() -> (u64, u64) {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let micros = |time: libc::timeval| time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64;
    (micros(usage.ru_utime), micros(usage.ru_stime))
}

async fn one_call(client: &mut EchoClient<Channel>, request: EchoRequest, streaming: bool) -> bool {
    let outcome = if streaming {
        match client.server_stream(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                let mut outcome = Ok(());
                while let Some(reply) = stream.next().await {
                    if let Err(status) = reply {
                        outcome = Err(status);
                        break;
                    }
                }
                outcome
            }
            Err(status) => Err(status),
        }
    } else {
        client.unary(request).await.map(drop)
    };
    match outcome {
        Ok(()) => true,
        Err(status) => {
            // The first failure says why; the count goes in the report.
            static REPORTED: std::sync::Once = std::sync::Once::new();
            REPORTED.call_once(|| eprintln!("bench-client: call failed: {status}"));
            false
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Arc::new(parse()?);
    let wait = || -> std::io::Result<()> {
        println!("ready");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(drop)
    };
    if options.wait && !options.warm {
        wait()?;
    }
    let mut clients = Vec::new();
    for _ in 0..options.connections.max(1) {
        let channel = Channel::from_shared(options.target.clone())?
            .connect()
            .await?;
        let mut client = EchoClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        if options.warm {
            client.unary(EchoRequest::default()).await?;
        }
        clients.push(client);
    }
    if options.wait && options.warm {
        wait()?;
    }
    let (user_before, system_before) = cpu_micros();
    let started = Instant::now();
    let request = EchoRequest {
        payload: vec![0x42; options.payload],
        reply_bytes: options.reply,
        reply_count: options.replies.max(u32::from(options.hold > 0)),
        delay_ms: if options.hold > 0 { 3000 } else { 0 },
        ..EchoRequest::default()
    };
    let tasks_total = if options.hold > 0 {
        options.hold
    } else {
        options.connections.max(1) * options.concurrency.max(1)
    };
    let mut tasks = Vec::new();
    for task in 0..tasks_total {
        let mut client = clients[task % clients.len()].clone();
        let options = Arc::clone(&options);
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let streaming = options.replies > 0 || options.hold > 0;
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            if options.hold > 0 {
                // Open in batches: a burst of thousands of streams on one connection makes the
                // example server reset it under CPU pressure, traced or not.
                tokio::time::sleep(Duration::from_millis((task / 500) as u64 * 20)).await;
                let began = Instant::now();
                if !one_call(&mut client, request, true).await {
                    errors += 1;
                }
                latencies.push(began.elapsed().as_micros() as u64);
                return (latencies, errors);
            }
            let mut sequence = 0u64;
            loop {
                if options.rate > 0.0 {
                    // Calls are spread evenly: this task's n-th slot.
                    let slot = (sequence * tasks_total as u64 + task as u64) as f64 / options.rate;
                    let at = started + Duration::from_secs_f64(slot);
                    if at >= started + options.duration {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                } else if started.elapsed() >= options.duration {
                    break;
                }
                sequence += 1;
                let began = Instant::now();
                if !one_call(&mut client, request.clone(), streaming).await {
                    errors += 1;
                }
                latencies.push(began.elapsed().as_micros() as u64);
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (task_latencies, task_errors) = task.await?;
        latencies.extend(task_latencies);
        errors += task_errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (user_after, system_after) = cpu_micros();
    latencies.sort_unstable();
    let percentile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{}",
        serde_json::json!({
            "calls": latencies.len(),
            "errors": errors,
            "elapsed_s": elapsed,
            "p50_us": percentile(0.50),
            "p99_us": percentile(0.99),
            "cpu_user_us": user_after - user_before,
            "cpu_system_us": system_after - system_before,
        })
    );
    Ok(())
}
