//! Running the release `tracer` binary from a test: where it is, and its `--stats-json` report.

use std::path::PathBuf;

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
