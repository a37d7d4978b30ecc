//! The userspace parsing path on real HTTP/2: a tonic client talks to a tonic server through a
//! recording proxy, and the recording is replayed into a [`ConnectionTracker`]. Every call it
//! reports is compared with what the client itself measured. Needs no privileges.

use std::time::Duration;

use integration_tests::{
    call_timing::CallTiming,
    echo,
    recording_proxy::{self, Recorded},
    scenarios::{self, ClientCall, NOT_FOUND_MESSAGE},
};
use tracer::{
    grpc::{CallRecord, Code, ConnectionFacts, ConnectionTracker, EndReason, Limits},
    stream::{Chunk, Payload},
};

/// Runs every client scenario through the proxy; returns the client's view and the recording.
fn record_session() -> (Vec<ClientCall>, Vec<Recorded>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_address = listener.local_addr().unwrap();
        tokio::spawn(echo::serve(listener, echo::MAX_CONCURRENT_STREAMS));
        let (proxy, recording) = recording_proxy::start(server_address).await;
        let channel = tonic::transport::Channel::from_shared(format!("http://{proxy}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let calls = scenarios::run_all(channel).await;
        // Dropping the channel closes the connection; let the proxy see it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (calls, recording.take())
    })
}

/// Replays recorded reads (from `skip` on) into a tracker, as the capture layer would deliver
/// them for the client process.
fn replay(
    recorded: &[Recorded],
    skip: usize,
    seen_from_start: bool,
) -> (Vec<CallRecord>, ConnectionTracker) {
    let facts = ConnectionFacts::new(1, 1, None, None, seen_from_start);
    let mut tracker = ConnectionTracker::new(facts, Limits::default());
    let mut out = Vec::new();
    let mut offsets = [0u64; 2];
    for read in recorded.iter().skip(skip) {
        assert_eq!(read.connection, 0, "the client opened a second connection");
        let offset = &mut offsets[read.direction as usize];
        let chunk = Chunk {
            offset: *offset,
            timestamp_ns: read.timestamp_ns,
            payload: Payload::Bytes(&read.bytes),
        };
        *offset += read.bytes.len() as u64;
        tracker.on_chunk(read.direction, &chunk, &mut out);
    }
    let last = recorded.last().map_or(0, |read| read.timestamp_ns);
    tracker.on_close(last + 1, EndReason::ConnectionClosed, &mut out);
    out.sort_by_key(|call| call.start_ns);
    (out, tracker)
}

fn expected_code(call: &ClientCall) -> Code {
    Code(call.code as u32)
}

#[test]
fn every_call_is_reconstructed_from_real_traffic() {
    let (client_calls, recorded) = record_session();
    let (traced, tracker) = replay(&recorded, 0, true);
    assert_eq!(traced.len(), client_calls.len(), "{:?}", tracker.stats());
    let stats = tracker.stats();
    assert_eq!(
        (
            stats.calls_without_method,
            stats.calls_without_status,
            stats.hpack_errors,
            stats.sync_losses
        ),
        (0, 0, 0, 0)
    );

    // Sequential scenarios come first, in order; the concurrent ones overlap at the end.
    let sequential = client_calls
        .iter()
        .take_while(|call| call.scenario != "concurrent")
        .count();
    let mut timing = CallTiming::new("replayed");
    for (traced, client) in traced.iter().zip(&client_calls).take(sequential) {
        assert_eq!(traced.name(), client.method, "{}", client.scenario);
        if client.scenario == "deadline_exceeded" {
            // The client's reset after its grpc-timeout (DEADLINE_EXCEEDED) races the tonic
            // server's own answer to the expired timeout (grpc-status 1, "Timeout expired").
            let server_answered = traced.code == Some(Code::CANCELLED)
                && traced.grpc_message.as_deref() == Some("Timeout expired");
            assert!(
                traced.code == Some(Code::DEADLINE_EXCEEDED) || server_answered,
                "{traced:?}"
            );
        } else {
            assert_eq!(
                traced.code,
                Some(expected_code(client)),
                "{}",
                client.scenario
            );
        }
        assert_eq!(
            traced.request.count, client.request_messages,
            "{}: request messages",
            client.scenario
        );
        if client.scenario != "cancelled" {
            assert_eq!(
                traced.response.count, client.response_messages,
                "{}: response messages",
                client.scenario
            );
        }
        timing.check(client.scenario, traced.duration(), client.duration);
    }
    timing.finish();
    let by_scenario = |scenario: &str| {
        let index = client_calls
            .iter()
            .position(|call| call.scenario == scenario)
            .unwrap();
        &traced[index]
    };
    assert_eq!(
        by_scenario("not_found").grpc_message.as_deref(),
        Some(NOT_FOUND_MESSAGE)
    );
    let large = by_scenario("large");
    assert_eq!(
        (
            large.request.bytes >= 2 << 20,
            large.response.bytes >= 2 << 20
        ),
        (true, true)
    );
    let deadline = by_scenario("deadline_exceeded");
    assert_eq!(
        deadline
            .timeout()
            .map(|timeout| timeout <= Duration::from_millis(100)),
        Some(true)
    );
    assert!(
        deadline.duration() >= Duration::from_millis(90),
        "{deadline:?}"
    );

    let concurrent: Vec<_> = traced[sequential..].iter().collect();
    assert_eq!(concurrent.len(), 100);
    let mut streams: Vec<u32> = concurrent.iter().map(|call| call.stream_id).collect();
    streams.sort_unstable();
    streams.dedup();
    assert_eq!(
        streams.len(),
        100,
        "each concurrent call has its own stream"
    );
    for call in concurrent {
        assert_eq!((call.name(), call.code), (echo::UNARY, Some(Code::OK)));
        assert_eq!((call.request.count, call.response.count), (1, 1));
        assert!(
            call.duration() >= Duration::from_millis(19),
            "{:?}",
            call.duration()
        );
    }
}

#[test]
fn reads_split_anywhere_give_the_same_calls() {
    let (_, recorded) = record_session();
    let (reference, _) = replay(&recorded, 0, true);
    // Re-cut every read into 7-byte pieces, keeping their timestamps.
    let pieces: Vec<Recorded> = recorded
        .iter()
        .flat_map(|read| {
            read.bytes
                .chunks(7)
                .map(|piece| Recorded {
                    bytes: piece.to_vec(),
                    ..read.clone()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let (split, _) = replay(&pieces, 0, true);
    assert_eq!(split, reference);
}

#[test]
fn joining_mid_connection_still_reports_later_calls() {
    let (client_calls, recorded) = record_session();
    // Attach after the first three calls' traffic.
    let (full, _) = replay(&recorded, 0, true);
    let join_at = full[3].start_ns;
    let skip = recorded
        .iter()
        .position(|read| read.timestamp_ns >= join_at)
        .unwrap()
        - 1;
    let (late, tracker) = replay(&recorded, skip, false);
    let later: Vec<_> = full
        .iter()
        .filter(|call| call.start_ns > recorded[skip].timestamp_ns)
        .collect();
    assert!(!later.is_empty());
    for expected in &later {
        let seen = late
            .iter()
            .find(|call| call.stream_id == expected.stream_id)
            .unwrap_or_else(|| {
                panic!(
                    "stream {} missing after late join: {:?}",
                    expected.stream_id,
                    tracker.stats()
                )
            });
        assert_eq!(
            (seen.start_ns, seen.end_ns),
            (expected.start_ns, expected.end_ns)
        );
        if let Some(code) = seen.code {
            assert_eq!(Some(code), expected.code, "stream {}", expected.stream_id);
        }
        if seen.path().is_some() {
            assert_eq!(seen.path(), expected.path());
        }
    }
    let resolved = later
        .iter()
        .filter(|expected| {
            late.iter()
                .any(|call| call.stream_id == expected.stream_id && call.path().is_some())
        })
        .count();
    println!(
        "late join: {} of {} later calls resolved their method; {} calls in the session",
        resolved,
        later.len(),
        client_calls.len()
    );
}
