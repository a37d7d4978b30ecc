//! End to end: the real `tracer` binary traces real gRPC clients (Python grpcio, Rust tonic)
//! talking to a real server, and its spans are checked call by call against what each client
//! measured itself. Needs root; run through `cargo xtask test`, which also provides the Python
//! virtualenv with grpcio.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use integration_tests::{
    client_calls::{SCENARIO_CALLS, assert_spans_match, assert_spans_match_with, client_calls},
    otlp_receiver::{OtlpReceiver, ReceivedSpan},
    python_client::{self, release_and_collect},
    recall::Recall,
    server_process::ServerProcess,
    tracer_run::{
        attach_tracer, attach_tracer_to, bench_floors_binary, stats_path, take_stats,
        tracer_binary, wait_success,
    },
};
use serde_json::Value;
use tracer_common::{DataRecord, PIECE_HEADER_LEN, maps::WHOLE_TRANSFER_MAX};

const ECHO_SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
const ECHO_CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

fn python() -> String {
    std::env::var("TRACER_TEST_PYTHON")
        .expect("TRACER_TEST_PYTHON (a python with grpcio) is set by `cargo xtask test`")
}

/// The example server, allowing as many streams as the benchmark needs.
fn start_server() -> ServerProcess {
    ServerProcess::start(ECHO_SERVER, None)
}

/// The Python client of the example server, waiting on stdin (see `python_client`).
fn waiting_python_client(server: &ServerProcess, warmup: u32, args: &[&str]) -> Child {
    python_client::waiting(&python(), &server.address, warmup, args)
}

/// The tonic bench-client with `args`, waiting on stdin; returns it and its stdout once it
/// printed `ready`.
fn waiting_bench_client(server: &ServerProcess, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut client = Command::new(env!("CARGO_BIN_EXE_bench-client"))
        .args(["--target", &server.url(), "--wait"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start bench-client");
    let mut stdout = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "bench-client did not start");
    (client, stdout)
}

/// Runs `tracer ARGS -- echo-client --target SERVER` with `env` set; the launched client writes
/// its own measurements to the stdout it inherits.
fn launch_traced_client(
    server: &ServerProcess,
    tracer_args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    launch_client_traced_by(&tracer_binary(), server, tracer_args, env)
}

fn launch_client_traced_by(
    tracer: &Path,
    server: &ServerProcess,
    tracer_args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let output = Command::new(tracer)
        .args(tracer_args)
        .args(["--", ECHO_CLIENT, "--target", &server.url()])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run tracer");
    assert!(output.status.success(), "{output:?}");
    output
}

/// Message bytes the scenarios move through one connection in the "large" call alone
/// (2 MiB each way); copying them would take at least this much ring buffer.
const LARGE_CALL_PAYLOAD: u64 = 4 << 20;

/// On connections seen from their first byte the kernel side skips DATA payload: all the
/// scenarios together, 2 MiB messages included, must pass through the ring buffer in a small
/// fraction of the large call's payload, and without losses.
fn assert_payload_skipped(stats: &PathBuf, label: &str) {
    let report = take_stats(stats, label);
    let ring_bytes = report["ring_buffer_bytes"].as_u64().unwrap();
    assert!(
        ring_bytes < LARGE_CALL_PAYLOAD / 16,
        "{label}: {ring_bytes} ring buffer bytes: DATA payload was copied"
    );
    assert_eq!(report["kernel_losses"], 0, "{label}: {report}");
}

#[test]
fn grpcio_client_attached_by_pid_exports_a_span_per_call_over_otlp() {
    let server = start_server();
    let receiver = OtlpReceiver::start();
    let client = waiting_python_client(&server, 0, &[]);
    let stats = stats_path("grpcio");
    let (tracer, _lines) = attach_tracer(
        client.id(),
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--stats-json",
            stats.to_str().unwrap(),
            "--export-command-line",
        ],
    );
    let lines = release_and_collect(client);
    // The tracer stops by itself when the client exits.
    wait_success(tracer, "grpcio");
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    let resource = &spans.first().expect("no spans").resource;
    assert_eq!(
        resource.get("service.name").map(String::as_str),
        Some("python3.11").or(resource.get("process.executable.name").map(String::as_str))
    );
    assert!(
        resource
            .get("process.command_line")
            .is_some_and(|line| line.contains("echo_client.py"))
    );
    assert_spans_match(spans, &client_calls(&lines), "grpcio");
    assert_payload_skipped(&stats, "grpcio");
}

#[test]
fn tonic_client_launched_by_the_tracer_exports_a_span_per_call_over_otlp() {
    let server = start_server();
    let receiver = OtlpReceiver::start();
    let stats = stats_path("tonic");
    let tracer = launch_traced_client(
        &server,
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--service-name",
            "checkout",
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        &[("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")],
    );
    // The launched client writes its own measurements to the stdout it inherited.
    let lines: Vec<String> = String::from_utf8(tracer.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    let resource = &spans[0].resource;
    assert_eq!(
        resource.get("service.name").map(String::as_str),
        Some("checkout")
    );
    assert_eq!(
        resource.get("deployment.environment").map(String::as_str),
        Some("test")
    );
    assert_eq!(
        resource.get("process.executable.name").map(String::as_str),
        Some("echo-client")
    );
    // Its command line (the server's address here, a secret elsewhere) only when asked for.
    assert_eq!(resource.get("process.command_line"), None);
    assert_spans_match(spans, &client_calls(&lines), "tonic");
    assert_payload_skipped(&stats, "tonic");
}

/// The benchmark's floors: the kernel still reports every transfer, with none or only part of
/// its bytes, and nothing is decoded. The ring buffer records and bytes the run took.
fn capture_floor_traffic(flag: &str, label: &str) -> (u64, u64) {
    let server = start_server();
    let stats = stats_path(label);
    launch_client_traced_by(
        &bench_floors_binary(),
        &server,
        &[
            "--output",
            "json",
            flag,
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        &[],
    );
    let report = take_stats(&stats, label);
    for key in ["calls", "spans_exported", "kernel_losses"] {
        assert_eq!(report[key], 0, "{label}: {key}: {report}");
    }
    // Only measured when asked for (`--hook-time`).
    assert!(report["hook_time"].is_null(), "{report}");
    let records = report["ring_buffer_records"].as_u64().unwrap();
    // Every call writes its request and reads its reply.
    assert!(records >= 2 * SCENARIO_CALLS as u64, "{label}: {report}");
    (records, report["ring_buffer_bytes"].as_u64().unwrap())
}

/// A bare record is a data record header and one piece header that skips the whole transfer.
const BARE_RECORD_LEN: u64 = (size_of::<DataRecord>() + PIECE_HEADER_LEN) as u64;

/// `--bench-bare-records`: no byte is copied.
#[test]
fn bare_records_report_every_transfer_without_its_bytes() {
    let (records, bytes) = capture_floor_traffic("--bench-bare-records", "bare");
    // The connection's few lifecycle records (open, close, exit), shared out over the others,
    // add a few bytes each; records that carry header blocks, as every call's do when bytes
    // are copied, average far more.
    assert!(
        bytes < records * (BARE_RECORD_LEN + 8),
        "{bytes} bytes in {records} records: bytes were copied"
    );
}

/// The floors are for benchmarking only: the release build does not have them.
#[test]
fn the_release_build_has_no_bench_floors() {
    for flag in ["--bench-bare-records", "--bench-copied-records"] {
        let output = Command::new(tracer_binary())
            .args([flag, "--", "true"])
            .output()
            .expect("run tracer");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains("unexpected argument"),
            "{flag}: {output:?}"
        );
    }
}

/// `--bench-copied-records`: each transfer's first segment is copied, up to 2 KiB, and the
/// rest skipped. Every transfer of the scenarios moves at least a frame header, and most a
/// whole small call or the first 2 KiB of a large message's read.
#[test]
fn copied_records_report_every_transfer_with_its_first_bytes() {
    let (records, bytes) = capture_floor_traffic("--bench-copied-records", "copied");
    // Saturating, so that records smaller than bare ones fail the assertion below, with its
    // message, rather than the subtraction.
    let copied_per_record = (bytes / records).saturating_sub(BARE_RECORD_LEN);
    assert!(
        (64..=WHOLE_TRANSFER_MAX).contains(&copied_per_record),
        "{bytes} bytes in {records} records: {copied_per_record} copied per record"
    );
}

/// `--hook-time` reports how long the kernel programs ran, by program: the data-move hook ran
/// at least once per request sent and reply read.
#[test]
fn hook_time_reports_the_kernel_programs_time_by_program() {
    let server = start_server();
    let stats = stats_path("hook-time");
    let output = launch_traced_client(
        &server,
        &[
            "--output",
            "json",
            "--hook-time",
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        &[],
    );
    let report = take_stats(&stats, "hook-time");
    assert_eq!(report["calls"], SCENARIO_CALLS as u64, "{report}");
    let hooks = &report["hook_time"];
    let programs = hooks["programs"].as_array().expect("programs");
    let data_moves = programs
        .iter()
        .find(|program| program["name"] == "sys_exit")
        .map_or(0, |program| program["runs"].as_u64().unwrap());
    assert!(data_moves >= 2 * SCENARIO_CALLS as u64, "{hooks}");
    let total: u64 = programs.iter().map(|p| p["ns"].as_u64().unwrap()).sum();
    assert!(total > 0 && hooks["ns"] == total, "{hooks}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in-kernel hooks"), "{stderr}");
    // What the verifier did for each program is in the report too.
    let verified = &report["verified_instructions"];
    assert!(verified["sys_exit"].as_u64() > Some(1000), "{verified}");
}

/// Two warm connections of one grpcio process whose encoders inserted different methods at the
/// same index (1) before attach, Unary and NoSuchMethod (not implemented: its calls end
/// UNIMPLEMENTED, with no reply), and alike since. Nothing the encoders' size accounting keeps
/// tells which connection is which: a method must never be given by the other connection's
/// encoder (it was, before, when a copy held one accounting and not the other).
#[test]
fn late_join_never_names_a_call_by_another_connections_encoder() {
    let server = start_server();
    let receiver = OtlpReceiver::start();
    let (other, label) = ("NoSuchMethod", "grpcio, two alike warm connections");
    let client = waiting_python_client(&server, 20, &["--also-warm", other, "--linger-ms", "1000"]);
    let (tracer, _lines) = attach_tracer(client.id(), &["--otlp-endpoint", &receiver.endpoint()]);
    let lines = release_and_collect(client);
    wait_success(tracer, label);
    let calls = client_calls(&lines);
    assert_eq!(calls.len(), 20, "{lines:?}");
    let spans = receiver.wait_for(calls.len(), Duration::from_secs(10));
    Recall::of(&spans).report(label);
    for span in &spans {
        let expected = match span.attribute("rpc.response.message.count") {
            Some("1") => "Unary",
            Some("0") => other,
            _ => panic!("{label}: a reply count the client did not see: {span:#?}"),
        };
        if span.attribute("tracer.method_resolved") == Some("true") {
            assert_eq!(
                span.attribute("rpc.method"),
                Some(expected),
                "{label}: {span:#?}"
            );
        }
    }
}

#[test]
fn late_join_on_a_warm_grpcio_connection_still_reports_every_later_call() {
    let server = start_server();
    let receiver = OtlpReceiver::start();
    // The connection is open and its header tables are warm before the tracer attaches; the
    // client stays up a second after its last call, as a long-lived process would.
    let client = waiting_python_client(&server, 20, &["--linger-ms", "1000"]);
    let (tracer, _lines) = attach_tracer(client.id(), &["--otlp-endpoint", &receiver.endpoint()]);
    let lines = release_and_collect(client);
    wait_success(tracer, "late join");
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    let recall = Recall::of(&spans);
    recall.report("late join");
    // The server's first NOT_FOUND after attach names `grpc-status` by an entry from before:
    // gRPC's grammar says which field it is, and its value is read.
    let not_found = spans
        .iter()
        .find(|span| span.status_message.starts_with("no such item"))
        .expect("the NOT_FOUND call's span");
    assert_eq!(
        (
            not_found.attribute("rpc.grpc.status_code"),
            not_found.attribute("tracer.status_source")
        ),
        (Some("5"), Some("name from grammar")),
        "{not_found:#?}"
    );
    // The server's grpc-status entries are read from the client's own decoder table (grpcio's
    // C-core); its methods from its encoder's record of the paths it inserted, placed by the
    // encoder's size accounting. (Placed only by a path inserted since attach, they were named
    // in about half of the runs: the copy that held one came after the channel closed.)
    assert!(recall.methods_at_least_90_percent(), "late join: methods");
    assert!(recall.statuses_at_least_90_percent(), "late join: statuses");
    // Every later call has a span with the right duration; methods and statuses given are
    // the client's.
    assert_spans_match_with(spans, &client_calls(&lines), "late join", false, false);
}

#[test]
fn a_grpcio_client_whose_main_thread_exited_is_traced_until_its_last_thread_ends() {
    let server = start_server();
    let receiver = OtlpReceiver::start();
    // Connected and warm; then its main thread exits and it runs on in a second thread.
    let client = waiting_python_client(&server, 20, &["--main-thread-exits"]);
    let stat = format!("/proc/{}/stat", client.id());
    let main_thread_exited = || {
        std::fs::read_to_string(&stat).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
    };
    let waited = Instant::now();
    while !main_thread_exited() {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the main thread did not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (tracer, _lines) = attach_tracer(client.id(), &["--otlp-endpoint", &receiver.endpoint()]);
    let lines = release_and_collect(client);
    // The tracer stops when the last thread ends, not before.
    wait_success(tracer, "main thread exited");
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    // The connection was open before attach: method and status as for any late join.
    assert_spans_match_with(
        spans,
        &client_calls(&lines),
        "main thread exited",
        false,
        false,
    );
}

/// One span as `--output json` writes it.
fn span_of_json_line(line: &str) -> ReceivedSpan {
    let span: Value =
        serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON: {line}: {err}"));
    // Attribute values as text, the way the OTLP receiver reports them.
    let as_text = |object: &Value| {
        object
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| (key.clone(), value.to_string().trim_matches('"').to_owned()))
            .collect()
    };
    let attributes = as_text(&span["attributes"]);
    let resource = as_text(&span["resource"]);
    assert_eq!(span["trace_id"].as_str().unwrap().len(), 32);
    assert_eq!(span["span_id"].as_str().unwrap().len(), 16);
    ReceivedSpan {
        name: span["name"].as_str().unwrap().to_owned(),
        trace_id: span["trace_id"].as_str().unwrap().to_owned(),
        span_id: span["span_id"].as_str().unwrap().to_owned(),
        parent_span_id: span["parent_span_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        kind: if span["kind"] == "CLIENT" { 3 } else { 2 },
        start_unix_nanos: span["start_time_unix_nano"].as_u64().unwrap(),
        end_unix_nanos: span["end_time_unix_nano"].as_u64().unwrap(),
        status_code: if span["status"]["code"] == "ERROR" {
            2
        } else {
            0
        },
        status_message: span["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        attributes,
        resource,
    }
}

#[test]
fn json_output_has_one_span_per_line() {
    let server = start_server();
    let tracer = launch_traced_client(&server, &["--output", "json"], &[]);
    let stdout = String::from_utf8(tracer.stdout).unwrap();
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    // Besides the client's own lines, stdout holds nothing but spans.
    let spans: Vec<ReceivedSpan> = lines
        .iter()
        .filter(|line| !line.contains("\"scenario\""))
        .map(|line| span_of_json_line(line))
        .collect();
    assert_spans_match(spans, &client_calls(&lines), "json");
    assert!(
        String::from_utf8(tracer.stderr)
            .unwrap()
            .contains("110 calls traced")
    );
}

#[test]
fn output_file_keeps_the_spans_apart_from_the_commands_stdout() {
    let server = start_server();
    let path = std::env::temp_dir().join(format!("tracer-e2e-spans-{}.jsonl", std::process::id()));
    let tracer = launch_traced_client(
        &server,
        &["--output", "json", "--output-file", path.to_str().unwrap()],
        &[],
    );
    let file = std::fs::read_to_string(&path).expect("the output file");
    std::fs::remove_file(&path).ok();
    let spans: Vec<ReceivedSpan> = file.lines().map(span_of_json_line).collect();
    // The client's stdout is its own: every line of it is one of its calls.
    let stdout = String::from_utf8(tracer.stdout).unwrap();
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    let calls = client_calls(&lines);
    assert_eq!(calls.len(), lines.len(), "{stdout}");
    assert_spans_match(spans, &calls, "json file");
    assert!(
        String::from_utf8(tracer.stderr)
            .unwrap()
            .contains("110 calls traced")
    );

    // A file that cannot be created stops the tracer before the command runs.
    let output = Command::new(tracer_binary())
        .args([
            "--output-file",
            "/nonexistent/spans.jsonl",
            "--",
            "sh",
            "-c",
            "echo ran",
        ])
        .output()
        .expect("run tracer");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot create the output file /nonexistent/spans.jsonl"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "{output:?}");
}

#[test]
fn an_unreachable_collector_never_blocks_capture() {
    let server = start_server();
    let started = Instant::now();
    // Port 1 on loopback: connections are refused.
    let tracer = launch_traced_client(&server, &["--otlp-endpoint", "http://127.0.0.1:1"], &[]);
    let stderr = String::from_utf8(tracer.stderr).unwrap();
    assert!(stderr.contains("110 calls traced"), "{stderr}");
    // Every span is accounted for as not delivered.
    let undelivered: u64 = stderr
        .lines()
        .filter(|line| {
            line.contains("spans the collector did not accept")
                || line.contains("export queue full")
        })
        .map(|line| {
            line.split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(undelivered, SCENARIO_CALLS as u64, "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn spans_that_cannot_be_written_to_stdout_are_counted() {
    let server = start_server();
    let client = format!("{ECHO_CLIENT} --target {} > /dev/null", server.url());
    let mut tracer = Command::new(tracer_binary())
        .args(["--output", "json", "--", "sh", "-c", &client])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer");
    // Nobody reads the spans. The read end closes now, before the tracer has even loaded its
    // programs, so every span it writes fails (EPIPE).
    drop(tracer.stdout.take());
    let output = tracer.wait_with_output().expect("tracer output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
    assert!(stderr.contains("110 calls traced"), "{stderr}");
    // The counter's line in the report: "       110  calls that could not be printed".
    let not_written = stderr.lines().find_map(|line| {
        let (count, what) = line.trim().split_once("  ")?;
        (what == "calls that could not be printed").then_some(count)
    });
    assert_eq!(not_written, Some("110"), "{stderr}");
}

#[test]
fn launched_command_exit_status_and_bad_targets() {
    let status = Command::new(tracer_binary())
        .args(["--output", "json", "--", "sh", "-c", "exit 3"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    let missing = Command::new(tracer_binary())
        .args(["--pid", "999999999"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).trim(),
        "tracer: process 999999999 does not exist"
    );
    // Not the tracer itself (it would trace its own exports forever), nor a kernel thread.
    let own = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {} --pid $$", tracer_binary().display()))
        .output()
        .unwrap();
    assert_eq!(own.status.code(), Some(2), "{own:?}");
    assert!(
        String::from_utf8_lossy(&own.stderr).contains("is this tracer"),
        "{own:?}"
    );
    let kthreadd = Command::new(tracer_binary())
        .args(["--pid", "2"])
        .output()
        .unwrap();
    assert_eq!(kthreadd.status.code(), Some(2), "{kthreadd:?}");
    assert!(
        String::from_utf8_lossy(&kthreadd.stderr).contains("is a kernel thread"),
        "{kthreadd:?}"
    );
    let bad_url = Command::new(tracer_binary())
        .args(["--otlp-endpoint", "collector:4317", "--pid", "1"])
        .output()
        .unwrap();
    assert_eq!(bad_url.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad_url.stderr).contains("invalid OTLP endpoint"),
        "{bad_url:?}"
    );
    // In a PID namespace of its own the tracer's pids are not the kernel's: it refuses to run
    // rather than trace nothing.
    let namespaced = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(tracer_binary())
        .args(["--", "true"])
        .output()
        .expect("unshare");
    assert_eq!(namespaced.status.code(), Some(2), "{namespaced:?}");
    assert!(
        String::from_utf8_lossy(&namespaced.stderr)
            .contains("running in a PID namespace of its own"),
        "{namespaced:?}"
    );
}

#[test]
fn otlp_over_http_protobuf_delivers_spans_and_the_histogram() {
    let server = start_server();
    let receiver = OtlpReceiver::start_http();
    // The base endpoint, as in OTEL_EXPORTER_OTLP_ENDPOINT: /v1/traces and /v1/metrics are added.
    let tracer = launch_traced_client(
        &server,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint().as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SEMCONV_STABILITY_OPT_IN", "rpc/dup"),
        ],
    );
    let stderr = String::from_utf8_lossy(&tracer.stderr);
    assert!(stderr.contains("nothing lost"), "{stderr}");
    let lines: Vec<String> = String::from_utf8(tracer.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    // Both naming generations, as asked for with rpc/dup.
    let first = &spans[0];
    assert_eq!(first.attribute("rpc.system.name"), Some("grpc"));
    assert_eq!(first.attribute("rpc.system"), Some("grpc"));
    assert!(first.attribute("rpc.response.status_code").is_some());
    assert_spans_match(spans, &client_calls(&lines), "http/protobuf");
    let histogram = receiver.histogram("rpc.client.call.duration");
    assert_eq!(
        histogram.values().sum::<u64>(),
        SCENARIO_CALLS as u64,
        "{histogram:#?}"
    );
}

/// A traced server's calls are SERVER spans, and their durations go to the server's histogram,
/// `rpc.server.call.duration`, not the client's.
#[test]
fn a_traced_server_records_its_calls_as_server_call_durations() {
    let server = start_server();
    let receiver = OtlpReceiver::start();
    let (tracer, _lines) = attach_tracer(
        server.child.id(),
        &["--otlp-endpoint", &receiver.endpoint()],
    );
    let client = Command::new(ECHO_CLIENT)
        .args(["--target", &server.url()])
        .output()
        .expect("run echo-client");
    assert!(client.status.success(), "{client:?}");
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    const SPAN_KIND_SERVER: i32 = 2;
    assert!(spans.iter().all(|span| span.kind == SPAN_KIND_SERVER));
    // The tracer stops once the server has exited, exporting the histograms last.
    drop(server);
    wait_success(tracer, "traced server");
    let server_durations = receiver.histogram("rpc.server.call.duration");
    assert_eq!(
        server_durations.values().sum::<u64>(),
        SCENARIO_CALLS as u64,
        "{server_durations:#?}"
    );
    let client_durations = receiver.histogram("rpc.client.call.duration");
    assert!(client_durations.is_empty(), "{client_durations:#?}");
}

#[test]
fn a_connection_joined_mid_stream_stops_copying_payload_once_back_in_sync() {
    let server = start_server();
    // One warm connection, then 1 MiB calls each way, one at a time, for three seconds.
    let (mut client, mut stdout) = waiting_bench_client(
        &server,
        &[
            "--warm",
            "--concurrency",
            "1",
            "--duration-ms",
            "3000",
            "--payload",
            "1048576",
            "--reply",
            "1048576",
        ],
    );
    let mut line = String::new();
    let stats = stats_path("joined");
    let (tracer, _lines) = attach_tracer(
        client.id(),
        &["--output", "json", "--stats-json", stats.to_str().unwrap()],
    );
    writeln!(client.stdin.take().unwrap(), "go").unwrap();
    line.clear();
    stdout.read_line(&mut line).expect("client report");
    assert!(client.wait().expect("client").success());
    let spans = wait_success(tracer, "joined").lines().count() as u64;
    let calls = serde_json::from_str::<Value>(&line).unwrap()["calls"]
        .as_u64()
        .unwrap();
    let report = take_stats(&stats, "joined");
    assert!(calls >= 20, "too few calls to judge: {line}");
    assert_eq!(spans, calls, "{report}");
    assert!(
        report["frame_sync_offers"].as_u64().unwrap() >= 1,
        "the kernel side was never re-armed: {report}"
    );
    // Copied whole, each call would cost 2 MiB of ring buffer; only the first few may.
    let ring_bytes = report["ring_buffer_bytes"].as_u64().unwrap();
    assert!(
        ring_bytes < 10 * LARGE_CALL_PAYLOAD / 2,
        "{ring_bytes} ring buffer bytes for {calls} calls: {report}"
    );
    assert_eq!(report["kernel_losses"], 0, "{report}");
}

#[test]
fn calls_in_flight_when_the_client_is_killed_end_without_a_status() {
    let server = start_server();
    // 50 server-streaming calls whose reply the server holds back for 3 seconds.
    const HELD: usize = 50;
    let (mut client, _stdout) = waiting_bench_client(
        &server,
        &["--connections", "1", "--hold", &HELD.to_string()],
    );
    let (tracer, _lines) = attach_tracer(client.id(), &["--output", "json"]);
    writeln!(client.stdin.take().unwrap(), "go").unwrap();
    // The requests go out at once; the replies are due only after three seconds.
    std::thread::sleep(Duration::from_secs(1));
    client.kill().expect("kill the client");
    let _ = client.wait();
    // Killed, the client never closed its connection: exit did.
    let spans: Vec<Value> = wait_success(tracer, "killed client")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line}: {err}")))
        .collect();
    assert_eq!(spans.len(), HELD, "one span per call in flight");
    for span in &spans {
        let attributes = &span["attributes"];
        assert_eq!(attributes["tracer.end_reason"], "ProcessExited", "{span}");
        assert_eq!(attributes["tracer.status_known"], false, "{span}");
        assert_eq!(span["status"]["code"], "UNSET", "{span}");
        assert_eq!(span["name"], "grpctrace.demo.Echo/ServerStream", "{span}");
    }
}

/// The tracer stopped (SIGSTOP) for a second under load, with a ring buffer far too small for
/// what the client does meanwhile: the kernel loses records, and the connection's streams have
/// a gap. Every call is still accounted for, as a span or as lost (counted from the stream ids),
/// and none is reported failed: the client saw none fail. A call cut by the gap has an unknown
/// outcome, not UNAVAILABLE when the connection closes.
#[test]
fn calls_cut_by_a_capture_gap_are_accounted_for_and_never_reported_failed() {
    let server = start_server();
    let (mut client, mut client_stdout) = waiting_bench_client(
        &server,
        &[
            "--connections",
            "1",
            "--rate",
            "2000",
            "--duration-ms",
            "3000",
        ],
    );
    let stats = stats_path("capture-gap");
    let spans_file = stats_path("capture-gap-spans");
    let (tracer, _lines) = attach_tracer(
        client.id(),
        &[
            "--output",
            "json",
            "--output-file",
            spans_file.to_str().unwrap(),
            "--ring-buffer-bytes",
            "65536",
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    );
    writeln!(client.stdin.take().unwrap(), "go").unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let signal = |signal| {
        // SAFETY: a plain syscall on a child we own and have not reaped.
        assert_eq!(unsafe { libc::kill(tracer.id() as libc::pid_t, signal) }, 0);
    };
    signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(1000));
    signal(libc::SIGCONT);
    let mut result = String::new();
    client_stdout.read_line(&mut result).unwrap();
    assert!(client.wait().unwrap().success());
    let client_report: Value = serde_json::from_str(&result).unwrap();
    assert_eq!(client_report["errors"], 0, "{client_report}");
    let calls = client_report["calls"].as_u64().unwrap();
    wait_success(tracer, "capture gap");
    let report = take_stats(&stats, "capture gap");
    let spans: Vec<Value> = std::fs::read_to_string(&spans_file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let _ = std::fs::remove_file(&spans_file);
    assert!(
        report["kernel_losses"].as_u64() > Some(0),
        "no gap: {report}"
    );
    let lost = report["calls_lost"].as_u64().unwrap();
    assert_eq!(
        spans.len() as u64 + lost,
        calls,
        "{} spans + {lost} lost for {calls} calls: {report}",
        spans.len()
    );
    for span in &spans {
        let code = &span["attributes"]["rpc.grpc.status_code"];
        assert!(code.is_null() || code == 0, "reported failed: {span}");
        assert_ne!(span["status"]["code"], "ERROR", "{span}");
    }
}

/// A Python client and the tonic server it calls, both traced by pid in one tracer: each span
/// carries the resource of the process it was observed in (its own pid, executable and
/// command line), the histograms too, and `--service-name` still names them all.
#[test]
fn each_traced_process_reports_under_its_own_resource() {
    let server = start_server();
    let receiver = OtlpReceiver::start();
    let client = waiting_python_client(&server, 0, &[]);
    let (client_pid, server_pid) = (client.id(), server.child.id());
    let (tracer, _lines) = attach_tracer_to(
        &[client_pid, server_pid],
        &["--otlp-endpoint", &receiver.endpoint()],
    );
    release_and_collect(client);
    // Both sides of every call.
    let spans = receiver.wait_for(2 * SCENARIO_CALLS, Duration::from_secs(10));
    drop(server);
    wait_success(tracer, "two processes");
    const SPAN_KIND_CLIENT: i32 = 3;
    for span in &spans {
        let (pid, executable) = if span.kind == SPAN_KIND_CLIENT {
            (client_pid, "python3.11")
        } else {
            (server_pid, "echo-server")
        };
        let resource = &span.resource;
        assert_eq!(
            resource.get("process.pid"),
            Some(&pid.to_string()),
            "{span:?}"
        );
        assert_eq!(
            resource.get("process.executable.name").map(String::as_str),
            Some(executable),
            "{span:?}"
        );
        assert_eq!(
            resource.get("service.name"),
            resource.get("process.executable.name")
        );
    }
    let durations = |metric| receiver.histogram(metric).values().sum::<u64>();
    assert_eq!(durations("rpc.client.call.duration"), SCENARIO_CALLS as u64);
    assert_eq!(durations("rpc.server.call.duration"), SCENARIO_CALLS as u64);
}

/// `--output-file` and `--stats-json` in a world-writable sticky directory (as /tmp is), where
/// another user planted symlinks to a file of root's: the tracer, running as root, refuses
/// rather than truncate the file they point at.
#[test]
fn output_files_planted_as_symlinks_are_refused() {
    let root = std::env::temp_dir().join(format!("tracer-sticky-{}", std::process::id()));
    let sticky = root.join("shared");
    std::fs::create_dir_all(&sticky).unwrap();
    std::fs::set_permissions(
        &sticky,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let victim = root.join("precious");
    std::fs::write(&victim, "keep me").unwrap();
    for (flag, name) in [
        ("--output-file", "spans.jsonl"),
        ("--stats-json", "report.json"),
    ] {
        let planted = sticky.join(name);
        // Planted by an unprivileged user.
        let status = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "ln",
                "-s",
            ])
            .args([&victim, &planted])
            .status()
            .expect("setpriv");
        assert!(status.success());
        let output = Command::new(tracer_binary())
            .args(["--output", "json", flag])
            .arg(&planted)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag}: {output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("symbolic link"),
            "{flag}: {output:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "keep me",
            "{flag}"
        );
    }
    // A file the tracer creates is its owner's alone.
    let created = sticky.join("created.jsonl");
    let status = Command::new(tracer_binary())
        .args(["--output", "json", "--output-file"])
        .arg(&created)
        .args(["--", "true"])
        .status()
        .unwrap();
    assert!(status.success());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&created).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// On a full disk the output file keeps whole lines only: what part of a write got in before
/// the disk filled is cut off again, and the calls not printed are counted.
#[test]
fn a_full_disk_leaves_only_whole_lines_in_the_output_file() {
    struct Mount(PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let server = start_server();
    let disk = Mount(std::env::temp_dir().join(format!("tracer-full-{}", std::process::id())));
    std::fs::create_dir_all(&disk.0).unwrap();
    // 40 KiB: a fraction of the scenarios' spans (about 1 KiB each).
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=40k", "tracer-test-full"])
        .arg(&disk.0)
        .status()
        .expect("mount");
    assert!(status.success());
    let spans_file = disk.0.join("spans.jsonl");
    let stats = stats_path("full-disk");
    launch_traced_client(
        &server,
        &[
            "--output",
            "json",
            "--output-file",
            spans_file.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        &[],
    );
    let written = std::fs::read_to_string(&spans_file).unwrap();
    assert!(
        written.is_empty() || written.ends_with('\n'),
        "a partial line"
    );
    let lines = written.lines().count() as u64;
    for line in written.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|err| panic!("{err}: {line}"));
    }
    let report = take_stats(&stats, "full disk");
    let not_printed = report["counters"]["calls that could not be printed"]
        .as_u64()
        .unwrap_or(0);
    assert!(not_printed > 0, "the disk never filled: {report}");
    assert_eq!(lines + not_printed, SCENARIO_CALLS as u64, "{report}");
}

/// A collector that accepts connections and never answers (a listening socket nothing reads),
/// with a 60 s request timeout: the tracer's flush at the end is bounded (a few seconds,
/// whatever it holds), and every span it could not deliver is counted.
#[test]
fn a_collector_that_never_answers_holds_up_the_exit_a_bounded_time() {
    let server = start_server();
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    let stats = stats_path("black-hole");
    let started = Instant::now();
    launch_traced_client(
        &server,
        &[
            "--otlp-endpoint",
            &endpoint,
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "60000")],
    );
    let took = started.elapsed();
    let report = take_stats(&stats, "black hole");
    assert_eq!(report["spans_exported"], 0, "{report}");
    assert_eq!(
        report["counters"]["spans the collector did not accept"], SCENARIO_CALLS,
        "{report}"
    );
    // The scenarios take about 2 s, attaching and detaching 3 s, the flush at most 3 s and
    // the histograms 1 s more: 6.3 s here. Before, the flush waited out the request timeout.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// While the tracer flushes to a collector that never answers, a second SIGINT ends it at once.
#[test]
fn a_second_signal_ends_the_flush_at_once() {
    let server = start_server();
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    let (mut tracer, lines) = attach_tracer(server.child.id(), &["--otlp-endpoint", &endpoint]);
    let client = Command::new(ECHO_CLIENT)
        .args(["--target", &server.url()])
        .output()
        .expect("run echo-client");
    assert!(client.status.success());
    let interrupt = || {
        // SAFETY: a plain syscall on a child we own and have not reaped.
        assert_eq!(
            unsafe { libc::kill(tracer.id() as libc::pid_t, libc::SIGINT) },
            0
        );
    };
    interrupt();
    // Give it time to start flushing: the first signal ends tracing.
    std::thread::sleep(Duration::from_millis(500));
    interrupt();
    let interrupted = Instant::now();
    let status = tracer.wait().unwrap();
    // At once, but for the kernel detaching the programs as the process exits (about 2 s
    // here); before, the flush went on for its request timeout (10.6 s).
    assert!(
        interrupted.elapsed() < Duration::from_secs(5),
        "{:?} after the second signal",
        interrupted.elapsed()
    );
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{status}");
    drop(lines);
}

/// The collector is down for the first seconds of a run (nothing listens on its port), then
/// comes up: the export requests that failed meanwhile are retried with backoff, and every
/// span arrives.
#[test]
fn spans_survive_a_short_collector_outage() {
    let server = start_server();
    // A port nothing listens on yet: connections to it are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let stats = stats_path("outage");
    let tracer = Command::new(tracer_binary())
        .args(["--otlp-endpoint", &endpoint, "--stats-json"])
        .arg(&stats)
        .args(["--", ECHO_CLIENT, "--target", &server.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the tracer");
    // The client's calls take about 2 s, exported every half second: the first requests fail.
    std::thread::sleep(Duration::from_millis(2500));
    let receiver = OtlpReceiver::start_on(port);
    let output = tracer.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = take_stats(&stats, "outage");
    assert_eq!(report["spans_exported"], SCENARIO_CALLS, "{report}");
    assert_eq!(receiver.spans().len(), SCENARIO_CALLS, "{report}");
}
