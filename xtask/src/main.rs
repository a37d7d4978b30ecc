//! Project automation. Every command provisions what it needs first (idempotently), so a fresh
//! clone gets from `git clone` to a working build and test run with no manual step.

mod bench;
mod certificate;
mod clients;
mod demo;
mod ebpf_toolchain;
mod example;
mod fuzz;
mod install;
mod node;
mod python;
mod setup;
mod test;
mod vm;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, test and demo the gRPC tracer")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Measure the tracer's cost: each load untraced and traced, interleaved (root).
    Bench {
        /// A short subset (under two minutes).
        #[arg(long)]
        quick: bool,
        /// Only the loads whose name contains this text (report: target/bench/only.json).
        #[arg(long, value_name = "TEXT")]
        only: Option<String>,
        /// Instead of the loads: how much of the traced client's own core the kernel's
        /// syscall-tracing path takes, sampled with perf (target/bench/client-core.json).
        #[arg(long, conflicts_with_all = ["quick", "only"])]
        client_core: bool,
    },
    /// Build everything and trace the bundled example client talking to the example server.
    Demo,
    /// Install the eBPF toolchain: nightly rust-src and a bpf-linker built against its LLVM.
    Setup,
    /// Build the tracer (release), with its eBPF programs embedded.
    Build,
    /// Run every test: unit tests, then the root-only integration tests against the real kernel.
    Test {
        /// Only run tests whose name contains this.
        filter: Option<String>,
    },
    /// The benchmark's co-runner: keeps one core busy for this share of the time, until killed.
    #[command(hide = true)]
    CoRunner {
        #[arg(long)]
        share: f64,
    },
    /// Boot each kernel of the matrix under qemu and trace the example client in it (root).
    VmTest {
        /// Kernels of the matrix (5.10, 6.1, 6.12), comma-separated, or all of them.
        #[arg(long, default_value = "all")]
        kernel: String,
    },
    /// Fuzz the HTTP/2 + HPACK + gRPC parsing path with cargo-fuzz (nightly).
    Fuzz {
        /// How long to run.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Bench {
            client_core: true, ..
        } => setup::run().and_then(|()| bench::client_core::run()),
        Task::Bench { quick, only, .. } => {
            setup::run().and_then(|()| bench::run(quick, only.as_deref()))
        }
        Task::Demo => setup::run().and_then(|()| demo::run()),
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|()| build_release()),
        Task::Test { filter } => setup::run().and_then(|()| test::run(filter.as_deref())),
        Task::CoRunner { share } => bench::CoRunner::spin(share),
        Task::Fuzz { seconds } => setup::run().and_then(|()| fuzz::run(seconds)),
        Task::VmTest { kernel } => setup::run().and_then(|()| vm::run(&kernel)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo build --release -p tracer`.
pub fn build_release() -> Result<()> {
    cargo(&["build", "--release", "--package", "tracer"])
}

/// The tracer with the benchmark's capture floors (the `--bench-*` flags), which release builds
/// leave out: `target/release/tracer-bench-floors`, for the bench and the floors' own tests.
/// `target/release/tracer` is the release build again afterwards.
pub fn build_bench_floors() -> Result<()> {
    let features = ["--features", "bench-floors"];
    cargo(
        &[
            &["build", "--release", "--package", "tracer"][..],
            &features,
        ]
        .concat(),
    )?;
    let release = workspace_root().join("target/release");
    std::fs::copy(release.join("tracer"), release.join(BENCH_FLOORS_BINARY))
        .context("copying the tracer built with the bench floors")?;
    build_release()
}

/// The name of the binary [`build_bench_floors`] makes.
pub const BENCH_FLOORS_BINARY: &str = "tracer-bench-floors";

/// Runs cargo from the workspace root with the given arguments, failing on a non-zero exit.
pub fn cargo(args: &[&str]) -> Result<()> {
    run(Command::new(env!("CARGO"))
        .args(args)
        .current_dir(workspace_root()))
}

pub fn run(command: &mut Command) -> Result<()> {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .with_context(|| format!("spawning {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}
