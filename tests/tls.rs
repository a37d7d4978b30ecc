//! gRPC over TLS: the tracer hooks the TLS library of each traced process (uprobes) and decodes
//! its plaintext. Real peers, real TLS (a certificate made for the run), a real OTLP receiver:
//! Python grpcio, whose BoringSSL is in its stripped extension (the release `cargo xtask test`
//! installs, and older ones beside it), Node's grpc-js (OpenSSL linked into `node`), and
//! `nghttp` and a C++ grpc client (Debian's) on the system's `libssl`. Needs root; run through `cargo xtask test`.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use integration_tests::{
    certificate::Certificate,
    client_calls::{
        SCENARIO_CALLS, assert_client_spans_match, assert_server_spans_match,
        assert_server_spans_match_with, assert_spans_match, assert_spans_match_with, client_calls,
    },
    otlp_receiver::{OtlpReceiver, ReceivedSpan},
    python_client::{self, release_and_collect},
    recall::Recall,
    tracer_run::{attach_tracer, stats_path, take_stats, tracer_binary, wait_success},
};
use serde_json::Value;
use tracer::capture::Inspection;

/// The Python with the grpcio `cargo xtask test` installs.
fn python() -> String {
    std::env::var("TRACER_TEST_PYTHON")
        .expect("TRACER_TEST_PYTHON (a python with grpcio) is set by `cargo xtask test`")
}

/// Pythons with older grpcio releases, installed side by side by `cargo xtask test`.
fn older_grpcio_pythons() -> Vec<String> {
    let pythons = std::env::var("TRACER_TEST_OLDER_GRPCIO_PYTHONS")
        .expect("TRACER_TEST_OLDER_GRPCIO_PYTHONS is set by `cargo xtask test`");
    let pythons: Vec<String> = pythons.split(':').map(str::to_owned).collect();
    assert!(pythons.len() >= 2, "two older grpcio releases: {pythons:?}");
    pythons
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// grpcio's version in the Python at `python`.
fn grpcio_version(python: &str) -> String {
    let output = Command::new(python)
        .args(["-c", "import grpc; print(grpc.__version__)"])
        .output()
        .expect("run python");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The Python Echo server over TLS (tests/python/echo_server.py); stops when dropped.
struct TlsServer {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl TlsServer {
    fn start(python: &str, certificate: &Certificate) -> TlsServer {
        let mut child = Command::new(python)
            .arg(script("echo_server.py"))
            .arg(certificate.cert())
            .arg(certificate.key())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python TLS server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("port line");
        let port = line.trim().parse().expect("the server's port");
        let stdin = child.stdin.take();
        TlsServer { child, stdin, port }
    }

    /// As the client names it: the certificate is for `localhost`.
    fn target(&self) -> String {
        format!("localhost:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it and waits for it to exit.
    fn stop(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tracer ARGS -- PYTHON echo_client.py TARGET --tls CERT`; returns the client's lines
/// (it writes them to the stdout it inherits) and the tracer's stderr.
fn launch_tls_client(
    python: &str,
    server: &TlsServer,
    certificate: &Certificate,
    tracer_args: &[&str],
) -> (Vec<String>, String) {
    let output = Command::new(tracer_binary())
        .args(tracer_args)
        .args(["--", python])
        .arg(script("echo_client.py"))
        .arg(server.target())
        .arg("--tls")
        .arg(certificate.cert())
        .output()
        .expect("run the tracer");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (stdout_lines(&output), stderr)
}

/// The lines a tracer that ran a command to success wrote (the command's own, spans going
/// elsewhere).
fn stdout_lines(output: &std::process::Output) -> Vec<String> {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A Python client over TLS that waits on stdin before its calls (see `python_client`).
fn waiting_tls_client(server: &TlsServer, certificate: &Certificate, warmup: u32) -> Child {
    let cert = certificate.cert();
    python_client::waiting(
        &python(),
        &server.target(),
        warmup,
        &["--tls", cert.to_str().unwrap()],
    )
}

/// Every span says it was captured from TLS, by which library.
fn assert_captured_from_tls(spans: &[ReceivedSpan], library: &str, label: &str) {
    for span in spans {
        assert_eq!(
            span.attribute("tracer.capture"),
            Some("tls"),
            "{label}: {span:#?}"
        );
        assert_eq!(
            span.attribute("tracer.tls.library"),
            Some(library),
            "{label}: {span:#?}"
        );
    }
}

/// The spans carry the server's address, as the socket the session rode on has it.
fn assert_peer_port(spans: &[ReceivedSpan], port: u16, label: &str) {
    for span in spans {
        assert_eq!(
            span.attribute("network.peer.port"),
            Some(port.to_string().as_str()),
            "{label}: {span:#?}"
        );
    }
}

/// Whether the spans and report show DATA payload was not copied (the 2 MiB calls would
/// take at least 4 MiB of ring) and nothing was lost.
fn assert_payload_skipped_and_nothing_lost(report: &Value, label: &str) {
    let ring_bytes = report["ring_buffer_bytes"].as_u64().unwrap();
    assert!(
        ring_bytes < (4 << 20) / 16,
        "{label}: {ring_bytes} ring buffer bytes: DATA payload was copied"
    );
    assert_eq!(report["kernel_losses"], 0, "{label}: {report}");
    assert_eq!(report["tls_connections_decoded"], 1, "{label}: {report}");
    assert!(
        report["counters"]
            .as_object()
            .is_some_and(serde_json::Map::is_empty),
        "{label}: {report}"
    );
}

/// A grpcio client over `grpc.secure_channel`, launched by the tracer: every call one span,
/// as the client measured it.
fn launched_grpcio_client_over_tls(python: &str, label: &str) {
    let version = grpcio_version(python);
    let certificate = Certificate::make(label);
    let server = TlsServer::start(python, &certificate);
    let receiver = OtlpReceiver::start();
    let stats = stats_path(label);
    let (lines, stderr) = launch_tls_client(
        python,
        &server,
        &certificate,
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    );
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    let label = format!("{label} (grpcio {version})");
    assert_captured_from_tls(&spans, &format!("boringssl (grpcio {version})"), &label);
    assert_peer_port(&spans, server.port, &label);
    assert_spans_match(spans, &client_calls(&lines), &label);
    let report = take_stats(&stats, &label);
    assert_payload_skipped_and_nothing_lost(&report, &label);
    assert!(
        stderr.contains("TLS: 1 connections decoded"),
        "{label}: {stderr}"
    );
}

#[test]
fn grpcio_client_over_tls_launched_by_the_tracer_has_a_span_per_call() {
    launched_grpcio_client_over_tls(&python(), "grpcio-tls");
}

/// The stripped BoringSSL is found by what grpc's code does around it, not by data about one
/// build: the same on older grpcio releases.
#[test]
fn older_grpcio_releases_over_tls_have_a_span_per_call() {
    for (index, python) in older_grpcio_pythons().iter().enumerate() {
        launched_grpcio_client_over_tls(python, &format!("older-grpcio-{index}"));
    }
}

#[test]
fn grpcio_client_over_tls_attached_by_pid_has_a_span_per_call() {
    let certificate = Certificate::make("grpcio-tls-pid");
    let server = TlsServer::start(&python(), &certificate);
    let receiver = OtlpReceiver::start();
    let stats = stats_path("grpcio-tls-pid");
    let client = waiting_tls_client(&server, &certificate, 0);
    let (tracer, _lines) = attach_tracer(
        client.id(),
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    );
    let lines = release_and_collect(client);
    wait_success(tracer, "grpcio TLS by pid");
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    assert_peer_port(&spans, server.port, "grpcio TLS by pid");
    assert_spans_match(spans, &client_calls(&lines), "grpcio TLS by pid");
    let report = take_stats(&stats, "grpcio TLS by pid");
    assert_payload_skipped_and_nothing_lost(&report, "grpcio TLS by pid");
}

#[test]
fn grpcio_server_over_tls_traced_by_pid_has_a_span_per_call() {
    let certificate = Certificate::make("grpcio-tls-server");
    let mut server = TlsServer::start(&python(), &certificate);
    let receiver = OtlpReceiver::start();
    let (tracer, _lines) = attach_tracer(server.pid(), &["--otlp-endpoint", &receiver.endpoint()]);
    let client = Command::new(python())
        .arg(script("echo_client.py"))
        .arg(server.target())
        .arg("--tls")
        .arg(certificate.cert())
        .output()
        .expect("run the Python client");
    assert!(client.status.success(), "{client:?}");
    let lines: Vec<String> = String::from_utf8(client.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    server.stop();
    wait_success(tracer, "grpcio TLS server");
    let version = grpcio_version(&python());
    assert_captured_from_tls(&spans, &format!("boringssl (grpcio {version})"), "server");
    assert_server_spans_match(spans, &client_calls(&lines), "grpcio TLS server");
}

/// Attached to a client whose TLS connection is open and warm: every later call still has a
/// span with its duration, and what is decoded is right, as for cleartext.
#[test]
fn late_join_on_a_warm_tls_connection_still_reports_every_later_call() {
    let certificate = Certificate::make("grpcio-tls-late");
    let server = TlsServer::start(&python(), &certificate);
    let receiver = OtlpReceiver::start();
    let client = waiting_tls_client(&server, &certificate, 20);
    let stats = stats_path("tls-late-join");
    let (tracer, _lines) = attach_tracer(
        client.id(),
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    );
    let lines = release_and_collect(client);
    wait_success(tracer, "TLS late join");
    // The socket under the session, joined mid-flight, is known as TLS once the session is
    // tied to it: not searched for frames (nor copied) for the rest of its life.
    let report = take_stats(&stats, "TLS late join");
    assert_eq!(report["tls_connections_decoded"], 1, "{report}");
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    let recall = Recall::of(&spans);
    recall.report("TLS late join");
    assert_peer_port(&spans, server.port, "TLS late join");
    // The server's grpc-status entries, from the client's own decoder table; the warm method,
    // from the client's encoder (see the cleartext late-join test).
    assert!(
        recall.methods_at_least_90_percent(),
        "TLS late join: methods"
    );
    assert!(
        recall.statuses_at_least_90_percent(),
        "TLS late join: statuses"
    );
    assert_spans_match_with(spans, &client_calls(&lines), "TLS late join", false, false);
}

/// Attached to a grpcio server whose client's TLS connection is open and warm: the methods the
/// client's encoder sent before attach are read from the server's own decoder table, and its
/// own `grpc-status: 0` from the index its encoder keeps for each code (placed by NOT_FOUND,
/// first sent after attach).
#[test]
fn late_join_on_a_warm_grpcio_server_reads_methods_and_statuses_from_its_own_tables() {
    let certificate = Certificate::make("grpcio-tls-late-server");
    let mut server = TlsServer::start(&python(), &certificate);
    let receiver = OtlpReceiver::start();
    let client = waiting_tls_client(&server, &certificate, 20);
    let (tracer, _lines) = attach_tracer(server.pid(), &["--otlp-endpoint", &receiver.endpoint()]);
    let lines = release_and_collect(client);
    let spans = receiver.wait_for(SCENARIO_CALLS, Duration::from_secs(10));
    server.stop();
    wait_success(tracer, "TLS late join, server");
    let recall = Recall::of(&spans);
    recall.report("TLS late join, grpcio server");
    assert!(
        recall.methods_at_least_90_percent(),
        "TLS late join, server: methods"
    );
    assert!(
        recall.statuses_at_least_90_percent(),
        "TLS late join, server: statuses"
    );
    assert_server_spans_match_with(
        spans,
        &client_calls(&lines),
        "TLS late join, server",
        false,
        false,
    );
}

/// `site-packages/grpc/_cython/cygrpc*.so` of the grpcio in `python`.
fn cygrpc_of(python: &str) -> PathBuf {
    let output = Command::new(python)
        .args(["-c", "import grpc._cython.cygrpc as c; print(c.__file__)"])
        .output()
        .expect("run python");
    assert!(output.status.success(), "{output:?}");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// The stripped BoringSSL's two functions are found in every grpcio release at hand, and
/// told apart (what they are is proven by the spans of the tests above).
#[test]
fn the_stripped_boringssl_of_each_grpcio_release_is_found() {
    for python in std::iter::once(python()).chain(older_grpcio_pythons()) {
        let path = cygrpc_of(&python);
        match tracer::capture::inspect_tls_library(&path) {
            Inspection::Library(library) => {
                println!("{}: {:x?}", path.display(), library.functions);
                assert_eq!(library.name, "boringssl");
                assert_eq!(library.functions.len(), 2, "{library:?}");
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
}

/// Node's grpc-js over TLS: `node` has OpenSSL linked in and exports its functions.
#[test]
fn grpc_js_over_tls_on_nodes_own_openssl_has_a_span_per_call() {
    let node_path = std::env::var("TRACER_TEST_NODE_PATH").expect(
        "TRACER_TEST_NODE_PATH (node_modules with @grpc/grpc-js) is set by cargo xtask test",
    );
    let certificate = Certificate::make("grpc-js-tls");
    let server = TlsServer::start(&python(), &certificate);
    let receiver = OtlpReceiver::start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node/tls_client.js");
    let output = Command::new(tracer_binary())
        .args(["--otlp-endpoint", &receiver.endpoint(), "--", "node"])
        .arg(script)
        .arg(server.target())
        .arg(certificate.cert())
        .env("NODE_PATH", node_path)
        .output()
        .expect("run the tracer");
    let lines = stdout_lines(&output);
    let calls = client_calls(&lines);
    assert_eq!(calls.len(), 8, "{lines:?}");
    let spans = receiver.wait_for(calls.len(), Duration::from_secs(10));
    let library = spans
        .first()
        .and_then(|span| span.attribute("tracer.tls.library"))
        .unwrap_or_default()
        .to_owned();
    assert!(library.starts_with("openssl 3."), "{library}");
    assert_captured_from_tls(&spans, &library, "grpc-js");
    assert_peer_port(&spans, server.port, "grpc-js");
    assert_client_spans_match(spans, &calls, "grpc-js");
}

/// `nghttpd` serving files over TLS (HTTP/2, not gRPC) on a free port; stopped when dropped.
struct TlsWebServer {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl TlsWebServer {
    fn start(certificate: &Certificate) -> TlsWebServer {
        let root = certificate.directory().join("web-root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<html>hello</html>\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("nghttpd")
            .arg("-d")
            .arg(&root)
            .arg(port.to_string())
            .arg(certificate.key())
            .arg(certificate.cert())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nghttpd");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nghttpd did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsWebServer { child, port, root }
    }
}

impl Drop for TlsWebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// What `tracer --output json -- COMMAND` gave: the command's own output, the spans (written
/// to a file of their own: the command's output need not end its lines) and the report.
struct Traced {
    output: std::process::Output,
    spans: Vec<Value>,
    report: Value,
}

fn trace_command(label: &str, command: &[&str]) -> Traced {
    let stats = stats_path(label);
    let spans_file = stats_path(&format!("{label}-spans"));
    let output = Command::new(tracer_binary())
        .args(["--output", "json", "--output-file"])
        .arg(&spans_file)
        .arg("--stats-json")
        .arg(&stats)
        .arg("--")
        .args(command)
        .output()
        .expect("run the tracer");
    let spans = std::fs::read_to_string(&spans_file)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line}: {err}")))
        .collect();
    let _ = std::fs::remove_file(&spans_file);
    let report = take_stats(&stats, label);
    Traced {
        output,
        spans,
        report,
    }
}

/// gRPC through the system's `libssl`: `nghttp` (nghttp2's client, on OpenSSL) posting a
/// gRPC message by hand to the grpcio server, once to a method it has and once to one it has
/// not.
#[test]
fn grpc_over_the_system_libssl_has_a_span_per_call() {
    let certificate = Certificate::make("nghttp-grpc");
    let server = TlsServer::start(&python(), &certificate);
    // EchoRequest { payload: 10 bytes, reply_bytes: 100 } in a gRPC message.
    let message = [&[0x0a, 10][..], &[b'x'; 10], &[0x28, 100]].concat();
    let mut body = vec![0];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let body_path = certificate.directory().join("request.bin");
    std::fs::write(&body_path, body).unwrap();
    let base = format!("https://localhost:{}/grpctrace.demo.Echo", server.port);
    let Traced {
        output,
        mut spans,
        report,
    } = trace_command(
        "nghttp-grpc",
        &[
            "nghttp",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "-d",
            body_path.to_str().unwrap(),
            &format!("{base}/Unary"),
            &format!("{base}/Missing"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    spans.sort_by_key(|span| span["name"].as_str().unwrap_or_default().to_owned());
    let outcome: Vec<(String, String)> = spans
        .iter()
        .map(|span| {
            (
                span["name"].as_str().unwrap_or_default().to_owned(),
                span["attributes"]["rpc.grpc.status_code"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        [
            ("grpctrace.demo.Echo/Missing".to_owned(), "12".to_owned()),
            ("grpctrace.demo.Echo/Unary".to_owned(), "0".to_owned())
        ],
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for span in &spans {
        assert_eq!(
            span["attributes"]["tracer.tls.library"], "openssl 3",
            "{span:#?}"
        );
    }
    assert_eq!(report["tls_connections_decoded"], 1, "{report}");
}

/// A C++ client (Debian's grpc++, tests/cpp) over TLS: its grpc links the system's `libssl`,
/// hooked by name. The grpc library carries grpc's TLS log strings but calls the shared
/// library's functions: it is not a TLS library of its own to report as not hooked.
#[test]
fn cpp_client_over_the_system_libssl_has_a_span_per_call() {
    let client = std::env::var("TRACER_TEST_CPP_CLIENT")
        .expect("TRACER_TEST_CPP_CLIENT (the C++ client) is set by `cargo xtask test`");
    let certificate = Certificate::make("cpp-tls");
    let server = TlsServer::start(&python(), &certificate);
    let receiver = OtlpReceiver::start();
    let stats = stats_path("cpp-tls");
    let output = Command::new(tracer_binary())
        .args(["--otlp-endpoint", &receiver.endpoint(), "--stats-json"])
        .arg(&stats)
        .args(["--", &client, &server.target(), "--tls"])
        .arg(certificate.cert())
        .output()
        .expect("run the tracer");
    let lines = stdout_lines(&output);
    let calls = client_calls(&lines);
    assert_eq!(calls.len(), 31, "{lines:?}");
    let spans = receiver.wait_for(calls.len(), Duration::from_secs(10));
    assert_captured_from_tls(&spans, "openssl 3", "C++ client");
    assert_peer_port(&spans, server.port, "C++ client");
    assert_spans_match_with(spans, &calls, "C++ client", true, true);
    let report = take_stats(&stats, "cpp-tls");
    assert_eq!(report["tls_connections_decoded"], 1, "{report}");
    assert_eq!(report["tls_not_hooked"], serde_json::json!([]), "{report}");
}

/// HTTP/2 over TLS that is not gRPC (`curl --http2` on the system's `libssl`): decoded, and
/// no call comes of it.
#[test]
fn https_over_http2_gives_no_grpc_spans() {
    let certificate = Certificate::make("curl-h2");
    let web = TlsWebServer::start(&certificate);
    let base = format!("https://localhost:{}", web.port);
    let Traced { output, report, .. } = trace_command(
        "curl-h2",
        &[
            "curl",
            "--silent",
            "--insecure",
            "--http2",
            &format!("{base}/index.html"),
            &format!("{base}/missing"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("hello"),
        "{output:?}"
    );
    assert_eq!(report["calls"], 0, "{report}");
    assert_eq!(report["tls_connections_decoded"], 1, "{report}");
    assert_eq!(report["counters"]["non-gRPC HTTP/2 streams"], 2, "{report}");
    assert!(
        report["counters"]
            .get("responses to requests sent before attach (not reported)")
            .is_none(),
        "{report}"
    );
}

/// A library with grpc's TLS log strings but none of the code around them (built here with
/// the C compiler) is refused, not hooked at a guess, and the report says so by name; a TLS
/// connection whose library is not hooked at all (`wget`, on GnuTLS) is counted as such.
#[test]
fn tls_that_cannot_be_hooked_is_reported_by_name_and_counted() {
    let certificate = Certificate::make("unhookable");
    let source = certificate.directory().join("marks.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n\
         void report_write(int e) { fprintf(stderr, \"SSL_write failed with error %d\\n\", e); }\n\
         void report_read(int e) { fprintf(stderr, \"SSL_read failed with error %d\\n\", e); }\n",
    )
    .unwrap();
    let library = certificate.directory().join("libmarks.so");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .expect("run cc");
    assert!(built.status.success(), "{built:?}");
    let Traced { output, report, .. } = trace_command(
        "unhookable",
        &[
            &python(),
            "-c",
            &format!(
                "import ctypes; ctypes.CDLL({:?}); print('loaded')",
                library.to_str().unwrap()
            ),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "loaded");
    let not_hooked = report["tls_not_hooked"].to_string();
    assert!(
        not_hooked.contains("libmarks.so") && not_hooked.contains("no tested call"),
        "{report}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("TLS not decoded: process"),
        "{output:?}"
    );

    let server = TlsServer::start(&python(), &certificate);
    let Traced { report, .. } = trace_command(
        "wget",
        &[
            "wget",
            "--quiet",
            "--tries=1",
            "--no-check-certificate",
            "-O",
            "/dev/null",
            &format!("https://localhost:{}/", server.port),
        ],
    );
    assert!(
        report["counters"]["connections not decoded: TLS, no plaintext seen (library not hooked)"]
            .as_u64()
            .is_some_and(|count| count >= 1),
        "{report}"
    );
}
