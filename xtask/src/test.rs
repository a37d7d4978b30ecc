//! `cargo xtask test`: unit and fixture tests (no privileges), then, as root, the integration
//! tests that load the real eBPF programs and trace real clients.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

pub fn run(filter: Option<&str>) -> Result<()> {
    let mut totals = Totals::default();
    let mut unit = vec!["test", "--workspace", "--exclude", "integration-tests"];
    unit.extend(filter);
    totals.add(run_counting(Command::new(env!("CARGO")).args(&unit))?);

    if !is_root() {
        bail!("the integration tests load eBPF programs: run `cargo xtask test` as root");
    }
    // The release tracer, and a copy with the bench floors for their own tests.
    crate::build_bench_floors()?;
    let python = crate::python::ensure_grpcio_python()?;
    let older_pythons = crate::python::ensure_older_grpcio_pythons()?;
    let older_pythons =
        std::env::join_paths(older_pythons).context("the older grpcio virtualenvs' paths")?;
    let node_modules = crate::node::ensure_grpc_js()?;
    let go_client = crate::clients::ensure_go_client()?;
    let cpp_client = crate::clients::ensure_cpp_client()?;
    let java_client = crate::clients::ensure_java_client()?;
    // Real peers besides the gRPC ones: HTTP/2 that is not gRPC (tests/not_grpc.rs), and
    // clients on the system's TLS libraries (tests/tls.rs).
    for (program, package, why) in [
        (
            "nghttpd",
            "nghttp2-server",
            "for the tests of non-gRPC HTTP/2",
        ),
        (
            "h2load",
            "nghttp2-client",
            "for the tests of non-gRPC HTTP/2",
        ),
        (
            "nghttp",
            "nghttp2-client",
            "for the TLS tests (a client on libssl)",
        ),
        (
            "curl",
            "curl",
            "for the TLS tests (HTTP/2 over TLS that is not gRPC)",
        ),
        (
            "wget",
            "wget",
            "for the TLS tests (a TLS library that is not hooked)",
        ),
        (
            "openssl",
            "openssl",
            "for the TLS tests (certificates made for each run)",
        ),
    ] {
        if !crate::install::debian_tool(program, package, why) {
            bail!(
                "{program} (Debian's {package}) is needed by the tests and could not be installed"
            );
        }
    }
    // They share kernel state (tracepoints, traced processes): one at a time.
    let mut integration = vec!["test", "--package", "integration-tests"];
    integration.extend(filter);
    integration.extend(["--", "--test-threads=1"]);
    totals.add(run_counting(
        Command::new(env!("CARGO"))
            .args(&integration)
            .env("TRACER_TEST_PYTHON", python)
            .env("TRACER_TEST_OLDER_GRPCIO_PYTHONS", older_pythons)
            .env("TRACER_TEST_NODE_PATH", node_modules)
            .env("TRACER_TEST_GO_CLIENT", go_client)
            .env("TRACER_TEST_CPP_CLIENT", cpp_client)
            .env("TRACER_TEST_JAVA_CLIENT", java_client),
    )?);
    // The capture tests once more, on the build of the kernel programs for kernels without
    // bpf_loop (before 5.17): its loops are not bpf_loop's, whatever this kernel is.
    if filter.is_none() {
        totals.add(run_counting(
            Command::new(env!("CARGO"))
                .args([
                    "test",
                    "--package",
                    "integration-tests",
                    "--test",
                    "capture",
                    "--",
                    "--test-threads=1",
                ])
                .env("TRACER_TEST_BOUNDED_LOOPS", "1"),
        )?);
    }
    // One closing line for the whole run (cargo's last line may be an empty doc-test run).
    println!("{} passed, {} failed", totals.passed, totals.failed);
    Ok(())
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

/// Runs cargo test from the workspace root, echoing its output, and adds up its result lines.
fn run_counting(command: &mut Command) -> Result<Totals> {
    command
        .current_dir(crate::workspace_root())
        .stdout(Stdio::piped());
    eprintln!("xtask: running {command:?}");
    let mut child = command
        .spawn()
        .with_context(|| format!("spawning {command:?}"))?;
    let mut totals = Totals::default();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(result) = line.strip_prefix("test result: ") {
            let count = |label: &str| {
                result
                    .split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(label)
                    })
                    .and_then(|number| number.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            totals.add(Totals {
                passed: count(" passed"),
                failed: count(" failed"),
            });
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("{} passed, {} failed", totals.passed, totals.failed.max(1));
        bail!("{command:?} failed with {status}");
    }
    Ok(totals)
}

pub fn is_root() -> bool {
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}
