//! Joined mid-flight: calls on connections that were open and warm before the tracer attached,
//! whose header fields refer to HPACK table entries inserted before it was watching. Every
//! method and status a span gives must be the one the client saw (checked call by call); how
//! many are given is measured against the recall the tracer aims for (90%).
//!
//! Needs root and the compiled clients built by `cargo xtask test` (grpc-go and grpc++ from
//! Debian).

use std::{process::Child, time::Duration};

use integration_tests::{
    client_calls::{assert_spans_match_with, client_calls},
    otlp_receiver::{OtlpReceiver, ReceivedSpan},
    recall::Recall,
    server_process::ServerProcess,
    tracer_run::{attach_tracer, wait_success},
    waiting_client::{self, release_and_collect},
};

const ECHO_SERVER: &str = env!("CARGO_BIN_EXE_echo-server");

/// A compiled example client (tests/go, tests/cpp; the path in `variable`, set by `cargo xtask
/// test`), started with `warmup` calls on its connection and `args`, held before its calls.
fn waiting_client(variable: &str, server: &ServerProcess, warmup: u32, args: &[&str]) -> Child {
    let binary = std::env::var(variable)
        .unwrap_or_else(|_| panic!("{variable} (a compiled client) is set by `cargo xtask test`"));
    waiting_client::start(
        std::process::Command::new(binary)
            .arg(&server.address)
            .args(["--warmup", &warmup.to_string(), "--wait"])
            .args(args),
        variable,
    )
}

/// Attaches to a warm client, releases it, and returns its calls' spans and its own lines.
fn trace_warm_client(client: Child, calls: usize) -> (Vec<ReceivedSpan>, Vec<String>) {
    let receiver = OtlpReceiver::start();
    let (tracer, _lines) = attach_tracer(client.id(), &["--otlp-endpoint", &receiver.endpoint()]);
    let lines = release_and_collect(client);
    wait_success(tracer, "mid-flight");
    let spans = receiver.wait_for(calls, Duration::from_secs(10));
    (spans, lines)
}

/// The calls the compiled clients make after their warm-up: 3 unary, NOT_FOUND, INTERNAL
/// without a message, deadline, cancel, 3 streaming shapes, 1 MiB, 20 concurrent.
const SCENARIO_CALLS: usize = 31;

/// Traces the scenario of the client in `variable` after 20 warm-up calls, and checks that its
/// warm entries were read from the process and every call named is named right.
fn a_warm_client_is_named_from_its_own_header_tables(variable: &str, label: &str) {
    let server = ServerProcess::start(ECHO_SERVER, None);
    let client = waiting_client(variable, &server, 20, &[]);
    let (spans, lines) = trace_warm_client(client, SCENARIO_CALLS);
    let calls = client_calls(&lines);
    assert_eq!(calls.len(), SCENARIO_CALLS);
    let recall = Recall::of(&spans);
    recall.report(label);
    // Unary's `:path` and the server's `grpc-status: 0` were inserted during the warm-up: read
    // from the client's own tables (its encoder's, its decoder's).
    let from_memory = |key: &str| {
        spans
            .iter()
            .filter(|span| span.attribute(key) == Some("process memory"))
            .count()
    };
    assert!(from_memory("tracer.method_source") > 0, "{spans:#?}");
    assert!(from_memory("tracer.status_source") > 0, "{spans:#?}");
    // An error without grpc-message, its code under the name of the earlier grpc-status.
    let internal = spans
        .iter()
        .find(|span| span.attribute("rpc.grpc.status_code") == Some("13"))
        .expect("the INTERNAL call's status");
    assert_eq!(internal.status_message, "INTERNAL", "{internal:#?}");
    assert!(recall.methods_at_least_90_percent(), "{label}: methods");
    assert!(recall.statuses_at_least_90_percent(), "{label}: statuses");
    assert_spans_match_with(spans, &calls, label, false, false);
}

#[test]
fn a_warm_grpc_go_client_is_named_from_its_own_header_tables() {
    a_warm_client_is_named_from_its_own_header_tables(
        "TRACER_TEST_GO_CLIENT",
        "grpc-go client, warm",
    );
}

/// C-core's encoder keeps no table of its own, only its size accounting and the index each
/// `:path` got: the accounting, lined up with what was seen since attach, places the earlier
/// ones.
#[test]
fn a_warm_cpp_client_is_named_from_its_own_header_tables() {
    a_warm_client_is_named_from_its_own_header_tables("TRACER_TEST_CPP_CLIENT", "C++ client, warm");
}

/// grpc-java on Netty: its encoder's table and its decoder's are objects on the JVM's heap.
#[test]
fn a_warm_grpc_java_client_is_named_from_its_own_header_tables() {
    a_warm_client_is_named_from_its_own_header_tables(
        "TRACER_TEST_JAVA_CLIENT",
        "grpc-java client, warm",
    );
}

#[test]
fn two_warm_connections_do_not_lend_each_other_their_entries() {
    let server = ServerProcess::start(ECHO_SERVER, None);
    // A second connection warmed on ClientStream, three calls of it after attach; its tables
    // differ from the first's where it matters and it inserts nothing after attach, so
    // nothing ties its references to a table in memory: they stay unnamed, never named
    // after the first connection's (Unary) entries.
    let client = waiting_client("TRACER_TEST_GO_CLIENT", &server, 20, &["--second-channel"]);
    let (spans, lines) = trace_warm_client(client, SCENARIO_CALLS + 3);
    let calls = client_calls(&lines);
    Recall::of(&spans).report("grpc-go client, two warm connections");
    assert_spans_match_with(
        spans,
        &calls,
        "grpc-go client, two warm connections",
        false,
        false,
    );
}
