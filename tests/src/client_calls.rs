//! The example clients' own account of their calls (one JSON line per call), and the check
//! that a run's spans agree with it call by call.

use std::time::Duration;

use serde_json::Value;

use crate::{call_timing::CallTiming, otlp_receiver::ReceivedSpan, scenarios::NOT_FOUND_MESSAGE};

/// Calls in the example clients' scenarios.
pub const SCENARIO_CALLS: usize = 110;

/// One call as a client measured it.
#[derive(Debug, Clone)]
pub struct ClientCall {
    pub scenario: String,
    pub method: String,
    pub code: i64,
    pub message: String,
    pub duration: Duration,
    pub request_messages: u64,
    pub response_messages: u64,
}

pub fn client_calls(lines: &[String]) -> Vec<ClientCall> {
    lines
        .iter()
        .filter(|line| line.contains("\"scenario\""))
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|err| panic!("{line}: {err}"));
            ClientCall {
                scenario: value["scenario"].as_str().unwrap().to_owned(),
                method: value["method"].as_str().unwrap().to_owned(),
                code: value["code"].as_i64().unwrap(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
                duration: Duration::from_nanos(value["duration_ns"].as_u64().unwrap()),
                request_messages: value["request_messages"].as_u64().unwrap(),
                response_messages: value["response_messages"].as_u64().unwrap(),
            }
        })
        .collect()
}

/// Checks every span against the call the client made. The sequential scenarios pair up in
/// start order; the 100 concurrent calls are checked as a group. Method and status must be
/// decoded unless the connection was joined mid-flight (then they must be right where decoded).
pub fn assert_spans_match(spans: Vec<ReceivedSpan>, calls: &[ClientCall], label: &str) {
    assert_spans_match_with(spans, calls, label, true, true);
}

/// As [`assert_spans_match`], for a client with scenarios of its own (one at a time, one of
/// them `not_found` with the example's message).
pub fn assert_client_spans_match(spans: Vec<ReceivedSpan>, calls: &[ClientCall], label: &str) {
    check(spans, calls, label, SPAN_KIND_CLIENT, true, true);
}

fn assert_every_scenario_call(calls: &[ClientCall], label: &str) {
    assert_eq!(
        calls.len(),
        SCENARIO_CALLS,
        "{label}: the client did not report every call"
    );
}

/// As [`assert_spans_match`], for the spans of the server that answered the calls.
pub fn assert_server_spans_match(spans: Vec<ReceivedSpan>, calls: &[ClientCall], label: &str) {
    assert_server_spans_match_with(spans, calls, label, true, true);
}

/// As [`assert_server_spans_match`], requiring every method and status or only that those
/// given are right.
pub fn assert_server_spans_match_with(
    spans: Vec<ReceivedSpan>,
    calls: &[ClientCall],
    label: &str,
    require_method: bool,
    require_status: bool,
) {
    assert_every_scenario_call(calls, label);
    check(
        spans,
        calls,
        label,
        SPAN_KIND_SERVER,
        require_method,
        require_status,
    );
}

const SPAN_KIND_SERVER: i32 = 2;
const SPAN_KIND_CLIENT: i32 = 3;

pub fn assert_spans_match_with(
    spans: Vec<ReceivedSpan>,
    calls: &[ClientCall],
    label: &str,
    require_method: bool,
    require_status: bool,
) {
    check(
        spans,
        calls,
        label,
        SPAN_KIND_CLIENT,
        require_method,
        require_status,
    );
}

fn check(
    mut spans: Vec<ReceivedSpan>,
    calls: &[ClientCall],
    label: &str,
    kind: i32,
    require_method: bool,
    require_status: bool,
) {
    spans.sort_by_key(|span| span.start_unix_nanos);
    assert_eq!(spans.len(), calls.len(), "{label}: one span per call");
    let sequential = calls
        .iter()
        .take_while(|call| call.scenario != "concurrent")
        .count();
    let mut timing = CallTiming::new(label);
    for (span, call) in spans.iter().zip(calls).take(sequential) {
        let context = format!("{label} {}: {span:#?}", call.scenario);
        assert_eq!(span.kind, kind, "span kind: {context}");
        if require_status || span.attribute("tracer.status_known") == Some("true") {
            let code: i64 = span
                .attribute("rpc.grpc.status_code")
                .expect("status code")
                .parse()
                .unwrap();
            if call.scenario == "deadline_exceeded" {
                // Two endings race when the 100 ms grpc-timeout expires: the client resets the
                // stream (DEADLINE_EXCEEDED, as the tracer reports a cancel after the timeout)
                // or the server answers first with its own status: tonic's 1 "Timeout expired",
                // grpcio's 4.
                assert!(
                    code == 4 || (code == 1 && span.status_message == "Timeout expired"),
                    "{context}"
                );
                assert!(span.duration() >= Duration::from_millis(95), "{context}");
            } else {
                assert_eq!(code, call.code, "{context}");
            }
            // A server's span is an error only for the codes that are its own fault
            // (OpenTelemetry's RPC conventions): UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
            // INTERNAL, UNAVAILABLE, DATA_LOSS.
            let error = if kind == SPAN_KIND_SERVER {
                matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
            } else {
                code != 0
            };
            assert_eq!(span.status_code == 2, error, "error status: {context}");
        }
        if require_method || span.attribute("tracer.method_resolved") == Some("true") {
            assert_eq!(span.name, call.method, "{context}");
        }
        assert_eq!(
            span.attribute("rpc.request.message.count"),
            Some(call.request_messages.to_string().as_str()),
            "{context}"
        );
        if call.scenario != "cancelled" {
            assert_eq!(
                span.attribute("rpc.response.message.count"),
                Some(call.response_messages.to_string().as_str()),
                "{context}"
            );
        }
        timing.check(call.scenario.as_str(), span.duration(), call.duration);
    }
    timing.finish();
    let not_found_index = calls
        .iter()
        .position(|call| call.scenario == "not_found")
        .unwrap();
    let not_found = &spans[not_found_index];
    // A span carries a status message only when it is an error: not a server's NOT_FOUND.
    if (require_status || not_found.attribute("tracer.status_known") == Some("true"))
        && kind == SPAN_KIND_CLIENT
    {
        // The message the client got, percent-decoded back from the wire.
        assert_eq!(
            not_found.status_message, calls[not_found_index].message,
            "{label}"
        );
        assert_eq!(not_found.status_message, NOT_FOUND_MESSAGE, "{label}");
    }
    // Concurrent calls end in any order: each is checked against what all of them were.
    let all_ok = calls[sequential..].iter().all(|call| call.code == 0);
    for span in &spans[sequential..] {
        if require_method || span.attribute("tracer.method_resolved") == Some("true") {
            assert_eq!(span.name, "grpctrace.demo.Echo/Unary", "{label}");
        }
        if require_status || (all_ok && span.attribute("tracer.status_known") == Some("true")) {
            assert_eq!(span.attribute("rpc.grpc.status_code"), Some("0"), "{label}");
        }
        assert!(
            span.duration() >= Duration::from_millis(19),
            "{label}: concurrent call of {:?}",
            span.duration()
        );
    }
}
