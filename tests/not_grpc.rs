//! Traffic that is not gRPC, from real peers: it must give no span. Needs root, and nghttp2's
//! `nghttpd` and `h2load` (Debian's nghttp2-server and nghttp2-client), which `cargo xtask
//! test` installs.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use integration_tests::{
    certificate::Certificate,
    tracer_run::{stats_path, take_stats, tracer_binary},
};
use serde_json::Value;

/// nghttpd serving one small page over cleartext HTTP/2 (h2c, prior knowledge) on loopback.
struct WebServer {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl WebServer {
    fn start() -> WebServer {
        let root = std::env::temp_dir().join(format!("tracer-h2c-web-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<html>hello</html>\n".repeat(20)).unwrap();
        // A port nothing listens on; nghttpd takes it a moment later.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("nghttpd")
            .args(["--no-tls", "--address", "127.0.0.1", "-d"])
            .arg(&root)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("start nghttpd (Debian's nghttp2-server; `cargo xtask test` installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nghttpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        WebServer { child, port, root }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// h2load fetching pages (and a missing one, answered 404) from an h2c web server, launched
/// under the tracer: HTTP/2, but no request is gRPC. No span, and every stream is counted as
/// a non-gRPC HTTP/2 stream.
#[test]
fn an_h2c_web_server_under_h2load_gives_no_spans() {
    let server = WebServer::start();
    let stats = stats_path("h2c-web");
    let requests = 200;
    let output = Command::new(tracer_binary())
        .args(["--output", "json", "--stats-json"])
        .arg(&stats)
        .args(["--", "h2load", "-n", &requests.to_string(), "-c", "1"])
        .args([server.url("/index.html"), server.url("/missing.html")])
        .output()
        .expect("run the tracer (and h2load: Debian's nghttp2-client)");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // h2load prints its own report on the shared stdout; a span would be a JSON line.
    let spans: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .collect();
    assert!(
        spans.is_empty(),
        "{} spans, first: {}",
        spans.len(),
        spans[0]
    );
    assert!(
        stdout.contains(&format!("{requests} done"))
            && stdout.contains(&format!("{} 4xx", requests / 2)),
        "h2load did not complete its requests: {stdout}"
    );
    let report = take_stats(&stats, "h2c-web");
    assert_eq!(report["calls"], 0, "{report}");
    assert_eq!(
        report["counters"]["non-gRPC HTTP/2 streams"], requests,
        "{report}"
    );
}

/// Runs `python tests/python/SCRIPT ARGS` under the tracer (JSON spans on the shared stdout),
/// checks it succeeded, and returns its output and the tracer's `--stats-json` report.
fn trace_python_script(script: &str, args: &[&Path]) -> (Output, Value) {
    let python = std::env::var("TRACER_TEST_PYTHON")
        .expect("TRACER_TEST_PYTHON is set by `cargo xtask test`");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let stats = stats_path(&format!("python-{script}"));
    let output = Command::new(tracer_binary())
        .args(["--output", "json", "--stats-json"])
        .arg(&stats)
        .args(["--", &python])
        .arg(&path)
        .args(args)
        .output()
        .expect("run the tracer");
    assert!(output.status.success(), "{output:?}");
    let report = take_stats(&stats, script);
    (output, report)
}

/// An HTTP/1.1 client and server in one process, 200 pages of 10 KB over one connection: once
/// the tracker finds the connection is not HTTP/2, the kernel stops copying its bytes, so the
/// 4 MB that cross it (each page leaves one socket and enters the other) cost the ring buffer
/// next to nothing.
#[test]
fn http1_traffic_is_counted_not_copied() {
    let (output, report) = trace_python_script("http1_load.py", &[]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "2000000");
    assert_eq!(report["calls"], 0, "{report}");
    // Both ends of the one connection.
    assert_eq!(
        report["counters"]["connections not decoded: HTTP/1.x"], 2,
        "{report}"
    );
    let ring_bytes = report["ring_buffer_bytes"].as_u64().unwrap();
    assert!(
        ring_bytes < 256 * 1024,
        "{ring_bytes} ring buffer bytes: {report}"
    );
}

/// A TLS connection that is not HTTP/2 (a Python client and server in one process, on the
/// system's `libssl`, a certificate made for the run): its plaintext is read from `libssl`,
/// found not HTTP/2, and reported as such; no call comes of it.
#[test]
fn tls_connections_that_are_not_http2_are_decoded_and_reported_as_such() {
    let certificate = Certificate::make("not-grpc-tls");
    let (output, report) = trace_python_script(
        "tls_exchange.py",
        &[&certificate.cert(), &certificate.key()],
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "4000");
    assert_eq!(report["calls"], 0, "{report}");
    // Both ends of the one connection: the sockets carry sessions whose plaintext was seen,
    // and that plaintext is not HTTP/2.
    assert_eq!(report["tls_connections_decoded"], 2, "{report}");
    assert_eq!(
        report["counters"]["connections not decoded: not HTTP/2"], 2,
        "{report}"
    );
    assert!(
        report["counters"]
            .get("connections not decoded: TLS, no plaintext seen (library not hooked)")
            .is_none(),
        "{report}"
    );
}
