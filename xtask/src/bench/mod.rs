//! `cargo xtask bench`: the tracer's cost, measured side by side. Each load runs untraced and
//! traced in alternation (ABAB...) in one invocation, so machine noise hits both alike; the
//! table and a JSON report (under target/bench/) give throughput, client CPU per call, the
//! tracer's own CPU per call, latency, spans per call, ring buffer bytes per call and losses.
//! Some loads also run in modes that take parts of the tracer's cost away (see [`Load`]), to
//! show where it goes and what no capture through syscall hooks could avoid.

//!
//! ```text
//! loads    what runs, in which modes     modes    untraced, traced, floors
//! runs     a bench-client run            h2load   an h2load run
//! machine  how busy the machine was      co_runner  the co-runner floor
//! summary  a load's runs summed up       table, targets  what is printed and judged
//! client_core  `--client-core`: the traced client's core, sampled with perf
//! ```

pub mod client_core;
mod co_runner;
mod grpcio_tls;
mod h2load;
mod loads;
mod machine;
mod modes;
pub mod placement;
mod runs;
mod summary;
mod table;
mod targets;

use anyhow::{Result, bail};
use serde_json::{Value, json};

pub use co_runner::CoRunner;
use co_runner::tracer_core_share;
use h2load::{ensure_h2load, run_h2load, write_grpc_body};
pub use loads::load_name;
use loads::{loads, name_of};
use modes::Mode;
use placement::Placement;
use runs::{Client, PAUSED_RING_BYTES, run_client, signal};
use summary::{Floors, client_cpu_per_call, client_cpu_us, client_rate, mean, number, summarise};
use table::render;

/// The tracer's `--stats-json` report, read with the type the tracer writes it with.
#[path = "../../../tracer/src/session/stats.rs"]
mod tracer_stats;
use tracer_stats::SessionStats;

/// One run: the client's own report, and the tracer's when it was traced.
type Run = (Value, Option<SessionStats>);

/// Runs the loads of the quick or the full benchmark, or only those whose name contains `only`.
pub fn run(quick: bool, only: Option<&str>) -> Result<()> {
    if !crate::test::is_root() {
        bail!("the benchmark attaches the tracer: run `cargo xtask bench` as root");
    }
    // The floors' binary first: it ends with the release tracer built again, which the
    // examples' build then finds up to date.
    crate::build_bench_floors()?;
    let release = crate::example::build()?;
    let placement = Placement::find();
    if placement.is_none() {
        eprintln!(
            "xtask: bench: cannot give the server and the client a core each (fewer than two CPUs, or no taskset): both left to the scheduler"
        );
    }
    // Pinned to its core if the machine allows; loads that run unpinned get a server of their
    // own, started when the first of them comes.
    let server = crate::example::start_server(&release, placement.map(|cores| cores.server_cpu))?;
    let mut unpinned_server = None;
    let mut tls_server = None;
    let rounds = if quick { 1 } else { 2 };
    let have_h2load = ensure_h2load();
    let body = write_grpc_body(&crate::workspace_root().join("target/bench"))?;
    let mut results = Vec::new();
    let selected = loads(quick)
        .into_iter()
        .filter(|load| only.is_none_or(|text| load.name.contains(text)));
    for load in selected {
        if load.h2load && !have_h2load {
            eprintln!(
                "xtask: bench: skipping {} (h2load is not installed and could not be)",
                load.name
            );
            continue;
        }
        if load.grpcio_tls && tls_server.is_none() {
            let directory = crate::workspace_root().join("target/bench/tls");
            tls_server = Some(grpcio_tls::TlsServer::start(&directory)?);
        }
        let (address, client_cpu) = match (load.pinned, placement) {
            _ if load.grpcio_tls => (String::new(), None),
            (true, cores) => (server.1.clone(), cores.map(|cores| cores.client_cpu)),
            (false, Some(_)) => {
                if unpinned_server.is_none() {
                    unpinned_server = Some(crate::example::start_server(&release, None)?);
                }
                (unpinned_server.as_ref().expect("started").1.clone(), None)
            }
            (false, None) => {
                eprintln!(
                    "xtask: bench: skipping {} (every load runs unpinned here)",
                    load.name
                );
                continue;
            }
        };
        let run_for = |seconds: u32, mode: Mode| -> Result<Run> {
            let args = load.args_for(seconds);
            let client = match &tls_server {
                Some(server) if load.grpcio_tls => Client::GrpcioTls {
                    python: &server.python,
                    target: &server.target,
                    cert: &server.cert,
                },
                _ => Client::Tonic { address: &address },
            };
            if load.h2load {
                run_h2load(&release, &address, client_cpu, &args, &body, mode)
            } else {
                run_client(&release, client, client_cpu, &args, mode, load.otlp, None)
            }
        };
        let run = |mode: Mode| run_for(load.seconds, mode);
        eprintln!("xtask: bench: {}", load.name);
        // A discarded warm-up run, so neither side pays for a cold server.
        if !load.h2load {
            run_for(1, Mode::Untraced)?;
        }
        let mut untraced = Vec::new();
        let mut traced = Vec::new();
        let mut hooks_only = Vec::new();
        let mut paused = Vec::new();
        let mut bare_records = Vec::new();
        let mut co_runner = Vec::new();
        let mut co_runner_shares = Vec::new();
        let load_rounds = load.rounds * rounds;
        let mut modes = Vec::new();
        if !load.traced_only {
            modes.push(Mode::Untraced);
        }
        if load.hooks_floor {
            modes.extend([Mode::HooksOnly, Mode::TracerPaused]);
        }
        if load.capture_floor {
            modes.push(Mode::BareRecords);
        }
        modes.push(Mode::Traced);
        if load.co_runner_floor {
            modes.push(Mode::CoRunner);
        }
        for round in 0..load_rounds {
            // Every other round runs in the reverse order, so that whatever drifts during a
            // round (the server warming up or slowing down) weighs on both sides alike.
            let mut order = modes.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for mode in order {
                let result = if mode == Mode::CoRunner {
                    // Traced runs come first in the first round, so there is a share to take.
                    let share = tracer_core_share(&traced);
                    co_runner_shares.push(share);
                    let _co_runner = CoRunner::start(share)?;
                    run(Mode::Untraced)?
                } else {
                    run(mode)?
                };
                match mode {
                    Mode::Untraced => untraced.push(result),
                    Mode::HooksOnly => hooks_only.push(result),
                    Mode::TracerPaused => paused.push(result),
                    Mode::BareRecords => bare_records.push(result),
                    Mode::CoRunner => co_runner.push(result),
                    Mode::Traced => traced.push(result),
                    Mode::HookTime | Mode::CopiedRecords => unreachable!("run apart"),
                }
            }
        }
        // One more traced run, apart and shorter, for where the in-kernel time goes.
        // (An unpinned copy of a load runs the same hooks.)
        // The TLS load runs unpinned by nature (its server is Python too): its hooks' time is
        // what it is measured for.
        let hook_time = if quick || load.traced_only || (!load.pinned && !load.grpcio_tls) {
            None
        } else {
            Some(run_for(load.seconds.min(3), Mode::HookTime)?)
        };
        let mut result = summarise(
            load.name,
            &untraced,
            &traced,
            &Floors {
                hooks_only: &hooks_only,
                paused: &paused,
                bare_records: &bare_records,
                co_runner: &co_runner,
                co_runner_share: mean(co_runner_shares.into_iter()),
            },
            hook_time.as_ref(),
        );
        result["client_and_server_pinned"] = client_cpu.is_some().into();
        results.push(result);
    }
    for (mut server, _) in [Some(server), unpinned_server].into_iter().flatten() {
        let _ = server.kill();
        let _ = server.wait();
    }

    let targets = targets::check(&results);
    println!("{}", render(&results));
    println!("{}", targets::render(&targets));
    let directory = crate::workspace_root().join("target/bench");
    std::fs::create_dir_all(&directory)?;
    let report = json!({
        "quick": quick,
        "rounds": rounds,
        "server_cpu": placement.map(|cores| cores.server_cpu),
        "client_cpu": placement.map(|cores| cores.client_cpu),
        "loads": results,
        "targets": targets,
    });
    let name = match (quick, only) {
        (_, Some(_)) => "only.json",
        (true, None) => "quick.json",
        (false, None) => "full.json",
    };
    let path = directory.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}
