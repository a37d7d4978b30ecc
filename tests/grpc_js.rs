//! A Node.js client on @grpc/grpc-js (from npm; `cargo xtask test` installs it and sets
//! `TRACER_TEST_NODE_PATH`), launched under the real tracer. Needs root.

use std::{path::PathBuf, process::Command};

use integration_tests::{
    server_process::ServerProcess,
    tracer_run::{stats_path, tracer_binary},
};
use serde_json::Value;

fn node_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node")
        .join(name)
}

/// Runs `node SCRIPT ARGS` under the tracer (JSON spans to a file); returns the lines the
/// script printed and the spans, in the order the calls started.
fn trace_node(script: &str, args: &[&str]) -> (Vec<Value>, Vec<Value>) {
    let node_path = std::env::var("TRACER_TEST_NODE_PATH").expect(
        "TRACER_TEST_NODE_PATH (node_modules with @grpc/grpc-js) is set by cargo xtask test",
    );
    let spans_file = stats_path(&format!("node-{script}"));
    let output = Command::new(tracer_binary())
        .args(["--output", "json", "--output-file"])
        .arg(&spans_file)
        .args(["--", "node"])
        .arg(node_script(script))
        .args(args)
        .env("NODE_PATH", node_path)
        .output()
        .expect("run the tracer");
    assert!(output.status.success(), "{output:?}");
    let parse = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line}: {err}")))
            .collect()
    };
    let client = parse(&String::from_utf8_lossy(&output.stdout));
    let mut spans = parse(&std::fs::read_to_string(&spans_file).unwrap());
    let _ = std::fs::remove_file(&spans_file);
    spans.sort_by_key(|span| span["start_time_unix_nano"].as_u64());
    (client, spans)
}

/// grpc-js computes `grpc-timeout` when a call starts. On a server that allows one stream at a
/// time, a call waits for the slot, its HEADERS go out later, and its deadline's RST_STREAM
/// (CANCEL) comes sooner after them than its grpc-timeout: that must not read as the client
/// cancelling. An explicit cancel on the same connection stays CANCELLED.
#[test]
fn a_deadline_on_a_call_that_waited_for_a_stream_slot_is_not_reported_cancelled() {
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_echo-server"), Some(1));
    let (client, spans) = trace_node("queued_deadline.js", &[&server.address]);
    let seen: Vec<(&str, i64)> = client
        .iter()
        .map(|line| {
            (
                line["scenario"].as_str().unwrap(),
                line["code"].as_i64().unwrap(),
            )
        })
        .collect();
    // What the client saw: its deadline passed (4); then its own cancel (1).
    assert_eq!(
        seen,
        [
            ("warm_up", 0),
            ("slot_holder", 0),
            ("queued_deadline", 4),
            ("cancelled", 1)
        ]
    );
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let code = |span: &Value| span["attributes"]["rpc.grpc.status_code"].as_i64();
    let queued = &spans[2];
    assert_ne!(code(queued), Some(1), "reported CANCELLED: {queued}");
    // Not asserted as cancelled; a deadline, or said to be one of the two.
    assert!(
        code(queued) == Some(4)
            || queued["attributes"]["tracer.status_candidates"] == "CANCELLED|DEADLINE_EXCEEDED",
        "{queued}"
    );
    assert_eq!(queued["status"]["code"], "ERROR", "{queued}");
    assert_eq!(
        code(&spans[3]),
        Some(1),
        "the explicit cancel: {}",
        spans[3]
    );
}
