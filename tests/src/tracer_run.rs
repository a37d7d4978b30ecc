//! Running the release `tracer` binary from a test: where it is, attaching it to a process, and
//! its `--stats-json` report.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, ChildStderr, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

/// `target/release/tracer`, which `cargo xtask test` builds before the integration tests.
pub fn tracer_binary() -> PathBuf {
    release_binary("tracer")
}

/// The tracer built with the benchmark's capture floors (`--bench-*`), which the release
/// build leaves out.
pub fn bench_floors_binary() -> PathBuf {
    release_binary("tracer-bench-floors")
}

fn release_binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask test` (it builds it)",
        path.display()
    );
    path
}

/// A stats file path unique to this test run.
pub fn stats_path(label: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tracer-test-{label}-{}.json", std::process::id()))
}

/// The report the tracer wrote to `stats` (`--stats-json`); the file is removed.
pub fn take_stats(stats: &PathBuf, label: &str) -> Value {
    let report = serde_json::from_str(
        &std::fs::read_to_string(stats).unwrap_or_else(|err| panic!("{label}: stats: {err}")),
    )
    .unwrap();
    let _ = std::fs::remove_file(stats);
    report
}

/// Reads a child's stderr on a thread; lines arrive on the returned channel.
pub fn lines_of(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[tracer] {line}");
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Starts `tracer ARGS --pid PID` and waits until it reports it is tracing.
pub fn attach_tracer(pid: u32, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    attach_tracer_to(&[pid], args)
}

/// Starts `tracer ARGS --pid PID...` and waits until it reports it is tracing.
pub fn attach_tracer_to(pids: &[u32], args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut tracer = Command::new(tracer_binary())
        .args(args)
        .args(
            pids.iter()
                .flat_map(|pid| ["--pid".to_owned(), pid.to_string()]),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer");
    let lines = lines_of(tracer.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("tracing [") => return (tracer, lines),
            Ok(_) => {}
            Err(_) => {
                let _ = tracer.kill();
                let status = tracer.wait();
                panic!("the tracer did not start tracing: {status:?}");
            }
        }
    }
}

pub fn wait_success(tracer: Child, label: &str) -> String {
    let output = tracer.wait_with_output().expect("tracer output");
    assert!(
        output.status.success(),
        "{label}: tracer exited with {}",
        output.status
    );
    String::from_utf8(output.stdout).unwrap()
}
