//! `cargo xtask bench`: the tracer's cost, measured side by side. Each load runs untraced and
//! traced in alternation (ABAB...) in one invocation, so machine noise hits both alike; the
//! table and a JSON report (under target/bench/) give throughput, client CPU per call, the
//! tracer's own CPU per call, latency, spans per call, ring buffer bytes per call and losses.
//! Some loads also run in modes that take parts of the tracer's cost away (see [`Load`]), to
//! show where it goes and what no capture through syscall hooks could avoid.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

pub mod client_core;
pub mod placement;
mod targets;

use placement::Placement;

struct Load {
    name: &'static str,
    /// bench-client arguments; for an h2load load, h2load's. The duration is added per run.
    args: Vec<String>,
    /// How long each run lasts.
    seconds: u32,
    /// Rounds, as a multiple of the run's base count (one for --quick, two for the full run).
    rounds: u32,
    /// The client and the server each on a core of their own (see [`placement`]), if the
    /// machine allows; otherwise both left to the scheduler.
    pinned: bool,
    /// Only measured traced (the memory test).
    traced_only: bool,
    /// Also measured with the tracer attached to another (idle) process (what the hooks alone
    /// cost every process on the machine, before anything is captured), and with the tracer
    /// paused while the client runs (the in-kernel capture alone).
    hooks_floor: bool,
    /// Also measured with the tracer capturing bare records: one per data move, with none of
    /// its bytes, and nothing decoded. That is the least any capture that hears of every
    /// syscall costs; where it already misses a target, no capture through syscall hooks meets
    /// it. Such a load runs twice the rounds, each half as long, against noise.
    capture_floor: bool,
    /// Also measured untraced next to an unrelated program that uses as much CPU as the tracer
    /// did on this load (a [`CoRunner`]): what that much CPU costs the load however it is
    /// spent. Where the two cost the same, the tracer loses nothing to how it works (its
    /// wakeups, its place in the scheduler), only to how much it works.
    co_runner_floor: bool,
    /// Driven by nghttp2's h2load instead of the tonic bench-client.
    h2load: bool,
    /// Traced runs export OTLP/gRPC to a real receiver on this machine (`otlp-receiver`, which
    /// decodes every request) instead of writing JSON to /dev/null.
    otlp: bool,
}

impl Load {
    fn tonic(name: &'static str, args: &[&str], seconds: u32) -> Load {
        Load {
            name,
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            seconds,
            rounds: 1,
            pinned: true,
            traced_only: false,
            hooks_floor: false,
            capture_floor: false,
            co_runner_floor: false,
            h2load: false,
            otlp: false,
        }
    }

    fn h2load(name: &'static str, connections: &str, streams: &str, seconds: u32) -> Load {
        Load {
            args: ["-c", connections, "-m", streams, "-t", "1"]
                .map(str::to_owned)
                .to_vec(),
            h2load: true,
            ..Load::tonic(name, &[], seconds)
        }
    }

    /// With [`Load::capture_floor`] if `wanted`.
    fn with_capture_floor(self, wanted: bool) -> Load {
        if !wanted {
            return self;
        }
        Load {
            capture_floor: true,
            ..self.with_short_rounds()
        }
    }

    /// Twice the rounds, each half as long: for loads whose runs fall into a fast or a slow
    /// regime at random, more rounds tell more than longer ones.
    fn with_short_rounds(self) -> Load {
        Load {
            rounds: 2 * self.rounds,
            seconds: self.seconds / 2,
            ..self
        }
    }

    /// With [`Load::capture_floor`] and [`Load::co_runner_floor`] if `wanted`.
    fn with_cpu_floors(self, wanted: bool) -> Load {
        Load {
            co_runner_floor: wanted,
            ..self.with_capture_floor(wanted)
        }
    }

    /// The load's arguments for a run of `seconds`.
    fn args_for(&self, seconds: u32) -> Vec<String> {
        let duration = if self.h2load {
            ["-D".to_owned(), seconds.to_string()]
        } else {
            ["--duration-ms".to_owned(), (seconds * 1000).to_string()]
        };
        duration
            .into_iter()
            .chain(self.args.iter().cloned())
            .collect()
    }
}

/// Two 1 MiB calls at a time on one connection, 1 MiB back each.
const ONE_MIB_EACH_WAY: [&str; 8] = [
    "--connections",
    "1",
    "--concurrency",
    "2",
    "--payload",
    "1048576",
    "--reply",
    "1048576",
];

/// The names of the loads that targets are judged on (see [`targets`]).
pub mod load_name {
    /// The judged load: the highest rate one connection reaches.
    pub const SATURATING: &str = "unary 100 B, saturating, 1 connection";
    pub const AT_2000: &str = "unary 100 B, 2000 calls/s, 1 connection";
    pub const AT_10000: &str = "unary 100 B, 10000 calls/s, 1 connection";
    /// Two 1 MiB calls at a time, each way, on a connection seen from its first byte.
    pub const ONE_MIB: &str = "unary 1 MiB each way, 1 connection";
    /// The same on a connection opened (and used) before the tracer attached.
    pub const ONE_MIB_JOINED: &str = "unary 1 MiB each way, connection open before attach";
    pub const OPEN_STREAMS: &str = "10,000 concurrent open streams (memory)";
}

/// The name of a load in a summary.
fn name_of(load: &Value) -> &str {
    load["load"].as_str().unwrap_or("?")
}

fn loads(quick: bool) -> Vec<Load> {
    let seconds = if quick { 3 } else { 6 };
    // The quick run has the first five loads, without the floors.
    let full = !quick;
    let mut loads = vec![
        Load {
            // The targets are judged on this load, and the extra comparisons split a cost of a
            // few percent at most: it gets more rounds against noise.
            rounds: if full { 4 } else { 1 },
            hooks_floor: full,
            capture_floor: full,
            ..Load::tonic(
                load_name::SATURATING,
                &["--connections", "1", "--concurrency", "8"],
                seconds,
            )
        },
        Load::tonic(
            load_name::AT_2000,
            &["--connections", "1", "--concurrency", "8", "--rate", "2000"],
            seconds,
        ),
        Load::tonic(load_name::ONE_MIB, &ONE_MIB_EACH_WAY, seconds),
        Load::h2load(
            "h2load unary 100 B, saturating, 1 connection",
            "1",
            "8",
            seconds,
        )
        .with_cpu_floors(full),
        Load {
            otlp: true,
            ..Load::tonic(
                "unary 100 B, saturating, OTLP export",
                &["--connections", "1", "--concurrency", "8"],
                seconds,
            )
        },
    ];
    if quick {
        return loads;
    }
    loads.extend([
        Load {
            pinned: false,
            ..Load::tonic(
                "unary 100 B, saturating, 1 connection, unpinned",
                &["--connections", "1", "--concurrency", "8"],
                seconds,
            )
            .with_short_rounds()
        },
        Load::tonic(
            load_name::ONE_MIB_JOINED,
            &[&["--warm"][..], &ONE_MIB_EACH_WAY].concat(),
            seconds,
        ),
        Load::h2load(
            "h2load unary 100 B, saturating, 16 connections",
            "16",
            "4",
            seconds,
        )
        .with_cpu_floors(true),
        Load::tonic(
            "unary 100 B, saturating, 16 connections",
            &["--connections", "16", "--concurrency", "2"],
            seconds,
        )
        .with_capture_floor(true),
        Load::tonic(
            load_name::AT_10000,
            &[
                "--connections",
                "1",
                "--concurrency",
                "16",
                "--rate",
                "10000",
            ],
            seconds,
        ),
        Load::tonic(
            "server streaming, 10 replies of 100 B",
            &[
                "--connections",
                "1",
                "--concurrency",
                "8",
                "--replies",
                "10",
            ],
            seconds,
        ),
        Load {
            traced_only: true,
            ..Load::tonic(
                load_name::OPEN_STREAMS,
                &["--hold", "10000", "--connections", "10"],
                seconds,
            )
        },
    ]);
    loads
}

/// Runs the loads of the quick or the full benchmark, or only those whose name contains `only`.
pub fn run(quick: bool, only: Option<&str>) -> Result<()> {
    if !crate::test::is_root() {
        bail!("the benchmark attaches the tracer: run `cargo xtask bench` as root");
    }
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
        let (address, client_cpu) = match (load.pinned, placement) {
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
        let run_for = |seconds: u32, mode: Mode| -> Result<(Value, Option<Value>)> {
            let args = load.args_for(seconds);
            if load.h2load {
                run_h2load(&release, &address, client_cpu, &args, &body, mode)
            } else {
                run_client(&release, &address, client_cpu, &args, mode, load.otlp, None)
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
        let hook_time = if quick || load.traced_only || !load.pinned {
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

/// How a load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Untraced,
    /// The tracer attached to an idle process: its hooks fire for every process's syscalls,
    /// but nothing of the load is captured.
    HooksOnly,
    /// The tracer attached to the client, then stopped (SIGSTOP) until the client is done: the
    /// kernel side captures everything into a ring buffer large enough for the whole run, and
    /// the tracer's own work does not compete for the cores. It drains the ring afterwards.
    TracerPaused,
    /// The tracer capturing bare records (see [`Load::capture_floor`]).
    BareRecords,
    /// The tracer copying each data move's first segment and following no framing: the floor
    /// under any capture that reads the bytes (`--client-core` only).
    CopiedRecords,
    /// Untraced, next to a [`CoRunner`] (see [`Load::co_runner_floor`]).
    CoRunner,
    Traced,
    /// Traced with `--hook-time`: the kernel's BPF run-time statistics on, which slows every
    /// hooked syscall a little, so this run only reports where the in-kernel time goes.
    HookTime,
}

impl Mode {
    /// The tracer flags this mode runs it with, whichever client it traces.
    fn tracer_flags(self) -> &'static [&'static str] {
        match self {
            Mode::TracerPaused => &["--ring-buffer-bytes", PAUSED_RING_BYTES],
            Mode::BareRecords => &["--bench-bare-records"],
            Mode::CopiedRecords => &["--bench-copied-records"],
            Mode::HookTime => &["--hook-time"],
            Mode::Untraced | Mode::HooksOnly | Mode::CoRunner | Mode::Traced => &[],
        }
    }
}

/// The share of one core the tracer kept busy over its runs (its CPU per second of load).
fn tracer_core_share(traced: &[(Value, Option<Value>)]) -> f64 {
    let seconds: f64 = traced
        .iter()
        .filter(|(_, tracer)| tracer.is_some())
        .map(|(client, _)| number(client, "elapsed_s"))
        .sum();
    tracer_total(traced, "cpu_after_attach_us") / 1e6 / seconds.max(f64::MIN_POSITIVE)
}

/// An unrelated program that spins for a share of every 25 ms (about as often as the tracer
/// wakes up to drain the ring at these loads) and sleeps in between: `cargo xtask` itself, run
/// as `co-runner`. Stopped when dropped.
pub struct CoRunner(std::process::Child);

impl CoRunner {
    const PERIOD: Duration = Duration::from_millis(25);

    fn start(share: f64) -> Result<CoRunner> {
        let child = Command::new(std::env::current_exe()?)
            .args(["co-runner", "--share", &share.to_string()])
            .spawn()
            .context("starting the co-runner")?;
        Ok(CoRunner(child))
    }

    /// The co-runner's own loop, until killed.
    pub fn spin(share: f64) -> ! {
        // A share that could not be measured (a run whose figures did not parse) spins never;
        // the report shows the share it was given.
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let busy = CoRunner::PERIOD.mul_f64(share);
        let mut period_start = std::time::Instant::now();
        loop {
            // Timed from waking up, which can come late: the busy time is what is promised.
            let woke = std::time::Instant::now();
            while woke.elapsed() < busy {
                std::hint::spin_loop();
            }
            period_start += CoRunner::PERIOD;
            std::thread::sleep(period_start.saturating_duration_since(std::time::Instant::now()));
        }
    }
}

impl Drop for CoRunner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A ring buffer that holds a whole paused run: 6 s at 40,000 calls/s of ~500 bytes each is
/// 120 MB.
const PAUSED_RING_BYTES: &str = "268435456";

/// One client run, on `cpu` if given; traced runs attach the tracer (JSON spans to /dev/null)
/// before the load starts and also return the tracer's own report. With `profile`, the client's
/// CPU is sampled by `perf record` into that file while the load runs.
fn run_client(
    release: &Path,
    address: &str,
    cpu: Option<usize>,
    args: &[String],
    mode: Mode,
    otlp: bool,
    profile: Option<&Path>,
) -> Result<(Value, Option<Value>)> {
    let traced = matches!(
        mode,
        Mode::Traced
            | Mode::TracerPaused
            | Mode::BareRecords
            | Mode::CopiedRecords
            | Mode::HookTime
    );
    let mut collector = (otlp && mode != Mode::Untraced)
        .then(|| Collector::start(release))
        .transpose()?;
    let output = match &collector {
        Some(collector) => ["--otlp-endpoint", &collector.endpoint],
        None => ["--output", "json"],
    };
    let mut client = placement::command_on(cpu, release.join("bench-client"))
        .args(["--target", &format!("http://{address}"), "--wait"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting bench-client")?;
    let mut stdout = BufReader::new(client.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("bench-client did not start: {line:?}");
    }
    let stats: PathBuf =
        std::env::temp_dir().join(format!("grpc-tracer-bench-{}.json", client.id()));
    let mut idle = match mode {
        Mode::HooksOnly => Some(
            Command::new("sleep")
                .arg("3600")
                .spawn()
                .context("starting an idle process")?,
        ),
        _ => None,
    };
    let target = idle.as_ref().map_or(client.id(), |idle| idle.id());
    let tracer = if mode != Mode::Untraced {
        let mut tracer = Command::new(release.join("tracer"))
            .args(output)
            .args(["--pid", &target.to_string(), "--stats-json"])
            .arg(&stats)
            .args(mode.tracer_flags())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the tracer")?;
        let stderr = BufReader::new(tracer.stderr.take().expect("piped"));
        let mut lines = stderr.lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("tracing [") => break,
                Some(_) => {}
                None => bail!("the tracer exited before attaching"),
            }
        }
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        if mode == Mode::TracerPaused {
            signal(&tracer, libc::SIGSTOP)?;
        }
        Some(tracer)
    } else {
        None
    };
    let before = MachineCpu::now();
    writeln!(client.stdin.take().expect("piped"), "go")?;
    let sampler = match (profile, cpu) {
        (Some(path), Some(cpu)) => Some(client_core::Sampler::start(cpu, path)?),
        (Some(_), None) => bail!("sampling the client needs it on a core of its own"),
        (None, _) => None,
    };
    let mut result = String::new();
    stdout.read_line(&mut result)?;
    let machine = before.use_since();
    if let Some(sampler) = sampler {
        sampler.stop()?;
    }
    let status = client.wait()?;
    if let (Mode::TracerPaused, Some(tracer)) = (mode, &tracer) {
        signal(tracer, libc::SIGCONT)?;
    }
    if !status.success() {
        bail!("bench-client failed: {status}");
    }
    let mut client_report: Value = serde_json::from_str(&result)
        .with_context(|| format!("bench-client printed {result:?}"))?;
    client_report["machine_busy_cores"] = machine.busy_cores.into();
    client_report["machine_steal_share"] = machine.steal_share.into();
    client_report["pid"] = client.id().into();
    if let Some(mut idle) = idle.take() {
        // The tracer stops once the process it traces is gone.
        let _ = idle.kill();
        let _ = idle.wait();
    }
    let tracer_report = match tracer {
        Some(mut tracer) if !traced => {
            tracer.wait()?;
            let _ = std::fs::remove_file(&stats);
            None
        }
        Some(mut tracer) => {
            // It stops by itself once the client has exited.
            let status = tracer.wait()?;
            if !status.success() {
                bail!("the tracer failed: {status}");
            }
            let report =
                std::fs::read_to_string(&stats).context("reading the tracer's --stats-json")?;
            let _ = std::fs::remove_file(&stats);
            let report: Value = serde_json::from_str(&report)?;
            if let Some(collector) = &mut collector {
                // The tracer has delivered everything it counts as exported before exiting.
                let received = collector.spans_received()?;
                let exported = number(&report, "spans_exported");
                if received as f64 != exported {
                    bail!(
                        "the collector received {received} spans; the tracer exported {exported}"
                    );
                }
            }
            Some(report)
        }
        None => None,
    };
    std::thread::sleep(Duration::from_millis(200));
    Ok((client_report, tracer_report))
}

/// The benchmark's OTLP collector (`otlp-receiver`), one per traced run.
struct Collector {
    process: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    endpoint: String,
}

impl Collector {
    fn start(release: &Path) -> Result<Collector> {
        let mut process = Command::new(release.join("otlp-receiver"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting otlp-receiver")?;
        let stdin = process.stdin.take().expect("piped");
        let mut stdout = BufReader::new(process.stdout.take().expect("piped"));
        let mut endpoint = String::new();
        stdout.read_line(&mut endpoint)?;
        Ok(Collector {
            process,
            stdin,
            stdout,
            endpoint: endpoint.trim().to_owned(),
        })
    }

    fn spans_received(&mut self) -> Result<u64> {
        writeln!(self.stdin)?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        line.trim()
            .parse()
            .with_context(|| format!("otlp-receiver printed {line:?}"))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn signal(process: &std::process::Child, signal: libc::c_int) -> Result<()> {
    // SAFETY: plain syscall on a child process we own and have not reaped.
    if unsafe { libc::kill(process.id() as libc::pid_t, signal) } != 0 {
        bail!("signalling the tracer: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// h2load (nghttp2-client) from Debian, installed on first use.
fn ensure_h2load() -> bool {
    ensure_debian_tool("h2load", "nghttp2-client")
}

/// Whether `program` runs (`program --version`), after installing the Debian `package` that
/// provides it if it did not.
fn ensure_debian_tool(program: &str, package: &str) -> bool {
    let present = || {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if present() {
        return true;
    }
    eprintln!("xtask: installing {program} (Debian package {package})");
    let _ = Command::new("apt-get").args(["update", "-q"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", package])
        .status();
    present()
}

/// One gRPC-framed EchoRequest (100 payload bytes, 100 reply bytes) for h2load to post.
fn write_grpc_body(directory: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(directory)?;
    let mut message = vec![0x0a, 100];
    message.extend_from_slice(&[0x42; 100]);
    message.extend_from_slice(&[0x28, 100]);
    let mut body = vec![0];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let path = directory.join("grpc-unary-100B.bin");
    std::fs::write(&path, body)?;
    Ok(path)
}

/// One h2load run, on `cpu` if given. Traced runs launch it under the tracer (h2load cannot wait
/// for an attach); its CPU comes from wait4 (untraced) or the tracer's report of the launched
/// command.
fn run_h2load(
    release: &Path,
    address: &str,
    cpu: Option<usize>,
    args: &[String],
    body: &Path,
    mode: Mode,
) -> Result<(Value, Option<Value>)> {
    let traced = mode != Mode::Untraced;
    let output =
        std::env::temp_dir().join(format!("grpc-tracer-h2load-{}.txt", std::process::id()));
    let stats =
        std::env::temp_dir().join(format!("grpc-tracer-h2load-{}.json", std::process::id()));
    let script = format!(
        "{}h2load {} -H 'content-type: application/grpc' -H 'te: trailers' -d {} http://{address}/grpctrace.demo.Echo/Unary > {}",
        placement::shell_prefix(cpu),
        args.join(" "),
        body.display(),
        output.display()
    );
    let mut command = if traced {
        let mut command = Command::new(release.join("tracer"));
        command
            .args(["--output", "json", "--stats-json"])
            .arg(&stats)
            .args(mode.tracer_flags())
            .args(["--", "sh", "-c", &script]);
        command
    } else {
        let mut command = Command::new("sh");
        command.args(["-c", &script]);
        command
    };
    let before = MachineCpu::now();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running h2load")?;
    let mut status = 0;
    // SAFETY: rusage is plain old data, filled by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointers; the child is ours.
    if unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) } < 0
        || !libc::WIFEXITED(status)
        || libc::WEXITSTATUS(status) != 0
    {
        bail!("h2load run failed (traced: {traced})");
    }
    let machine = before.use_since();
    let text = std::fs::read_to_string(&output).context("reading h2load's output")?;
    let field = |line_start: &str, index: usize| -> f64 {
        text.lines()
            .find(|line| line.trim_start().starts_with(line_start))
            .and_then(|line| {
                line.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|word| !word.is_empty())
                    .nth(index)
            })
            .and_then(|word| {
                word.trim_end_matches(|c: char| c.is_alphabetic())
                    .parse()
                    .ok()
            })
            .unwrap_or(f64::NAN)
    };
    let (elapsed, succeeded, failed, mean_us) = (
        field("finished in", 2),
        field("requests:", 7),
        field("requests:", 9),
        field("time for request:", 5),
    );
    let tracer = if traced {
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
        let _ = std::fs::remove_file(&stats);
        Some(report)
    } else {
        None
    };
    let micros = |time: libc::timeval| time.tv_sec as f64 * 1e6 + time.tv_usec as f64;
    let cpu = match &tracer {
        Some(report) => number(report, "launched_command_cpu_us"),
        None => micros(usage.ru_utime) + micros(usage.ru_stime),
    };
    let client = json!({
        "calls": succeeded,
        "errors": failed,
        "elapsed_s": elapsed,
        // h2load reports a mean, not percentiles.
        "p50_us": mean_us,
        "p99_us": f64::NAN,
        "cpu_user_us": cpu,
        "cpu_system_us": 0,
        "machine_busy_cores": machine.busy_cores,
        "machine_steal_share": machine.steal_share,
    });
    std::thread::sleep(Duration::from_millis(200));
    Ok((client, tracer))
}

/// Busy and total CPU time of the whole machine (from /proc/stat), to tell how many cores a load
/// kept busy.
struct MachineCpu {
    busy: u64,
    /// Time the hypervisor ran something else while this machine's CPUs had work (part of
    /// `busy`): a run during which it took much is slower for reasons of the host, not ours.
    steal: u64,
    total: u64,
    cores: usize,
}

/// How the whole machine was used during a run.
struct MachineUse {
    /// Cores kept busy, on average.
    busy_cores: f64,
    /// The share of the machine's CPU time the hypervisor took.
    steal_share: f64,
}

impl MachineCpu {
    fn now() -> MachineCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cores = stat
            .lines()
            .filter(|line| line.starts_with("cpu") && !line.starts_with("cpu "))
            .count();
        // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|field| field.parse().ok())
            .collect();
        let total = ticks.iter().sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        MachineCpu {
            busy: total - idle,
            steal: ticks.get(7).copied().unwrap_or(0),
            total,
            cores,
        }
    }

    /// How the machine was used since `self` was taken.
    fn use_since(&self) -> MachineUse {
        let now = MachineCpu::now();
        let total = now.total.saturating_sub(self.total).max(1) as f64;
        MachineUse {
            busy_cores: now.busy.saturating_sub(self.busy) as f64 / total * self.cores as f64,
            steal_share: now.steal.saturating_sub(self.steal) as f64 / total,
        }
    }
}

fn number(value: &Value, key: &str) -> f64 {
    value[key].as_f64().unwrap_or(0.0)
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Runs of one load in the modes that take parts of the tracer's cost away.
struct Floors<'a> {
    hooks_only: &'a [(Value, Option<Value>)],
    paused: &'a [(Value, Option<Value>)],
    bare_records: &'a [(Value, Option<Value>)],
    co_runner: &'a [(Value, Option<Value>)],
    /// The share of a core the co-runner kept busy, on average.
    co_runner_share: f64,
}

/// Calls per second a client run reached.
fn client_rate(client: &Value) -> f64 {
    number(client, "calls") / number(client, "elapsed_s")
}

/// A client run's own CPU (user + system), in µs.
fn client_cpu_us(client: &Value) -> f64 {
    number(client, "cpu_user_us") + number(client, "cpu_system_us")
}

/// A client run's own CPU per call, in µs.
fn client_cpu_per_call(client: &Value) -> f64 {
    client_cpu_us(client) / number(client, "calls").max(1.0)
}

fn total_calls(runs: &[(Value, Option<Value>)]) -> f64 {
    runs.iter().map(|(client, _)| number(client, "calls")).sum()
}

/// One figure from the tracer's report of each run that has one.
fn tracer_figures(runs: &[(Value, Option<Value>)], key: &str) -> Vec<f64> {
    runs.iter()
        .filter_map(|(_, tracer)| tracer.as_ref().map(|tracer| number(tracer, key)))
        .collect()
}

/// The sum of one figure over the tracer's reports.
fn tracer_total(runs: &[(Value, Option<Value>)], key: &str) -> f64 {
    tracer_figures(runs, key).iter().sum()
}

fn summarise(
    name: &str,
    untraced: &[(Value, Option<Value>)],
    traced: &[(Value, Option<Value>)],
    floors: &Floors,
    hook_time: Option<&(Value, Option<Value>)>,
) -> Value {
    let rate =
        |runs: &[(Value, Option<Value>)]| mean(runs.iter().map(|(client, _)| client_rate(client)));
    let cpu_per_call = |runs: &[(Value, Option<Value>)]| {
        mean(runs.iter().map(|(client, _)| client_cpu_per_call(client)))
    };
    let latency = |runs: &[(Value, Option<Value>)], key| {
        mean(runs.iter().map(|(client, _)| number(client, key)))
    };
    let tracer = |key: &str| tracer_figures(traced, key);
    let calls = total_calls(traced);
    // Steady state: the one-time costs of loading and verifying the programs, and of detaching
    // them at the end, are reported apart.
    let tracer_cpu = tracer_total(traced, "cpu_after_attach_us");
    let attach_cpu = mean(tracer("cpu_attach_us").into_iter());
    let detach_cpu = mean(tracer("cpu_detach_us").into_iter());
    let spans = tracer_total(traced, "spans_exported");
    let ring_bytes = tracer_total(traced, "ring_buffer_bytes");
    let (untraced_rate, traced_rate) = (rate(untraced), rate(traced));
    // All the machine's CPU per untraced call. When the load keeps every core busy, the tracer's
    // own CPU per call is taken from the same cores, so even with free in-kernel hooks the
    // traced rate cannot exceed machine / (machine + tracer) of the untraced one.
    let busy_untraced = mean(
        untraced
            .iter()
            .map(|(client, _)| number(client, "machine_busy_cores")),
    );
    let machine_cpu_per_call = busy_untraced * 1e6 / untraced_rate;
    let steal = mean(
        untraced
            .iter()
            .chain(traced)
            .map(|(client, _)| number(client, "machine_steal_share")),
    );
    let tracer_cpu_per_call = tracer_cpu / calls.max(1.0);
    // Only meaningful when the untraced load left (almost) no core idle.
    let cpu_bound = busy_untraced >= 0.9 * MachineCpu::now().cores as f64;
    let ceiling =
        cpu_bound.then(|| machine_cpu_per_call / (machine_cpu_per_call + tracer_cpu_per_call));
    let (untraced_cpu, traced_cpu) = (cpu_per_call(untraced), cpu_per_call(traced));
    // Round by round (each traced run against the untraced run of the same round), to show how
    // much of a difference is noise.
    let per_round = |runs: &[(Value, Option<Value>)]| {
        let pairs = untraced.iter().zip(runs);
        let throughput: Vec<f64> = pairs
            .clone()
            .map(|((a, _), (b, _))| client_rate(b) / client_rate(a))
            .collect();
        let cpu: Vec<f64> = pairs
            .map(|((a, _), (b, _))| client_cpu_per_call(b) / client_cpu_per_call(a) - 1.0)
            .collect();
        (throughput, cpu)
    };
    let floor = |runs: &[(Value, Option<Value>)]| {
        (!runs.is_empty()).then(|| {
            let calls = total_calls(runs);
            let (throughput_rounds, cpu_rounds) = per_round(runs);
            json!({
                "calls_per_s": rate(runs),
                "throughput_ratio": rate(runs) / untraced_rate,
                "throughput_ratio_rounds": throughput_rounds,
                "client_cpu_increase_rounds": cpu_rounds,
                "client_cpu_us_per_call": cpu_per_call(runs),
                "client_cpu_increase": cpu_per_call(runs) / untraced_cpu - 1.0,
                "spans_per_call": tracer_total(runs, "spans_exported") / calls.max(1.0),
                "kernel_losses": tracer_total(runs, "kernel_losses"),
                "ring_buffer_bytes_per_call": tracer_total(runs, "ring_buffer_bytes") / calls.max(1.0),
                "tracer_cpu_us_per_call": tracer_total(runs, "cpu_after_attach_us") / calls.max(1.0),
            })
        })
    };
    let (throughput_rounds, cpu_rounds) = per_round(traced);
    let hook_time = hook_time
        .and_then(|(_, tracer)| tracer.as_ref())
        .map(|tracer| {
            let calls = number(tracer, "calls").max(1.0);
            let hooks = &tracer["hook_time"];
            let programs: Vec<Value> = hooks["programs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|program| {
                    let (runs, ns) = (number(program, "runs"), number(program, "ns"));
                    json!({
                        "name": program["name"],
                        "runs_per_call": runs / calls,
                        "ns_per_run": ns / runs.max(1.0),
                        "ns_per_call": ns / calls,
                    })
                })
                .collect();
            json!({ "ns_per_call": number(hooks, "ns") / calls, "programs": programs })
        });
    json!({
        "hook_time": hook_time,
        "throughput_ratio_rounds": throughput_rounds,
        "client_cpu_increase_rounds": cpu_rounds,
        "hooks_only": floor(floors.hooks_only),
        "tracer_paused": floor(floors.paused),
        "bare_records": floor(floors.bare_records),
        "co_runner": floor(floors.co_runner),
        "co_runner_core_share": floors.co_runner_share,
        "load": name,
        "calls_per_s_untraced": untraced_rate,
        "calls_per_s_traced": traced_rate,
        "throughput_ratio": traced_rate / untraced_rate,
        "client_cpu_us_per_call_untraced": untraced_cpu,
        "client_cpu_us_per_call_traced": traced_cpu,
        "client_cpu_increase": traced_cpu / untraced_cpu - 1.0,
        "tracer_cpu_us_per_call": tracer_cpu_per_call,
        "machine_busy_cores_untraced": busy_untraced,
        "machine_steal_share": steal,
        "machine_cpu_us_per_call_untraced": machine_cpu_per_call,
        "throughput_ceiling": ceiling,
        "tracer_attach_cpu_ms": attach_cpu / 1000.0,
        "tracer_detach_cpu_ms": detach_cpu / 1000.0,
        "p50_us_untraced": latency(untraced, "p50_us"),
        "p50_us_traced": latency(traced, "p50_us"),
        "p99_us_untraced": latency(untraced, "p99_us"),
        "p99_us_traced": latency(traced, "p99_us"),
        "calls": calls,
        "client_errors": traced.iter().chain(untraced).map(|(client, _)| number(client, "errors")).sum::<f64>(),
        "spans": spans,
        "spans_per_call": spans / calls.max(1.0),
        "ring_buffer_bytes_per_call": ring_bytes / calls.max(1.0),
        "kernel_losses": tracer_total(traced, "kernel_losses"),
        "tracer_max_rss_kib": tracer("max_rss_kib").into_iter().fold(0.0, f64::max),
    })
}

/// The smallest and largest of a list of per-round figures, scaled, as `min..max` (`-` if none).
fn range(rounds: &Value, scale: f64, decimals: usize) -> String {
    let values: Vec<f64> = rounds
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .map(|value| value * scale)
        .collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        "-".to_owned()
    } else {
        format!("{min:.decimals$}..{max:.decimals$}")
    }
}

/// A variant run's throughput ratio and extra client CPU against the untraced runs.
fn against_untraced(floor: &Value) -> String {
    format!(
        "B/A {:.3} (rounds {}), client CPU {:+.1}% (rounds {})",
        number(floor, "throughput_ratio"),
        range(&floor["throughput_ratio_rounds"], 1.0, 2),
        number(floor, "client_cpu_increase") * 100.0,
        range(&floor["client_cpu_increase_rounds"], 100.0, 1),
    )
}

fn render(results: &[Value]) -> String {
    let mut out = format!(
        "{:<42} {:>9} {:>9} {:>6} {:>11} {:>5} {:>6} {:>5} {:>8} {:>8} {:>6} {:>11} {:>8} {:>6} {:>13} {:>13} {:>7} {:>9} {:>6} {:>8}\n",
        "load",
        "calls/s A",
        "calls/s B",
        "B/A",
        "B/A rounds",
        "busy",
        "steal",
        "ceil",
        "cliCPU A",
        "cliCPU B",
        "+%",
        "+% rounds",
        "trCPU",
        "hooks",
        "p50 A/B µs",
        "p99 A/B µs",
        "spans",
        "ring B",
        "lost",
        "RSS MiB"
    );
    for result in results {
        let get = |key: &str| number(result, key);
        out.push_str(&format!(
            "{:<42} {:>9.0} {:>9.0} {:>6.3} {:>11} {:>5.2} {:>5.1}% {:>5} {:>8.2} {:>8.2} {:>6.1} {:>11} {:>8.2} {:>6} {:>13} {:>13} {:>7.4} {:>9.0} {:>6.0} {:>8.1}\n",
            name_of(result),
            get("calls_per_s_untraced"),
            get("calls_per_s_traced"),
            get("throughput_ratio"),
            range(&result["throughput_ratio_rounds"], 1.0, 2),
            get("machine_busy_cores_untraced"),
            get("machine_steal_share") * 100.0,
            match result["throughput_ceiling"].as_f64() {
                Some(ceiling) => format!("{ceiling:.3}"),
                None => "-".to_owned(),
            },
            get("client_cpu_us_per_call_untraced"),
            get("client_cpu_us_per_call_traced"),
            get("client_cpu_increase") * 100.0,
            range(&result["client_cpu_increase_rounds"], 100.0, 1),
            get("tracer_cpu_us_per_call"),
            match result["hook_time"]["ns_per_call"].as_f64() {
                Some(nanos) => format!("{:.2}", nanos / 1000.0),
                None => "-".to_owned(),
            },
            format!("{:.0}/{:.0}", get("p50_us_untraced"), get("p50_us_traced")),
            format!("{:.0}/{:.0}", get("p99_us_untraced"), get("p99_us_traced")),
            get("spans_per_call"),
            get("ring_buffer_bytes_per_call"),
            get("kernel_losses"),
            get("tracer_max_rss_kib") / 1024.0,
        ));
    }
    for result in results {
        let name = name_of(result);
        let floor = &result["hooks_only"];
        if floor.is_object() {
            out.push_str(&format!(
                "{name}: with the tracer attached to an idle process instead (hooks only): {}\n",
                against_untraced(floor),
            ));
        }
        let bare = &result["bare_records"];
        if bare.is_object() {
            out.push_str(&format!(
                "{name}: with the tracer capturing bare records (no bytes, nothing decoded): {}, ring B {:.0}, trCPU {:.2}, lost {}\n",
                against_untraced(bare),
                number(bare, "ring_buffer_bytes_per_call"),
                number(bare, "tracer_cpu_us_per_call"),
                number(bare, "kernel_losses"),
            ));
        }
        let co_runner = &result["co_runner"];
        if co_runner.is_object() {
            out.push_str(&format!(
                "{name}: untraced, next to an unrelated program as busy as the tracer ({:.1}% of one core): {}\n",
                number(result, "co_runner_core_share") * 100.0,
                against_untraced(co_runner),
            ));
        }
        let hooks = &result["hook_time"];
        if hooks.is_object() {
            let total = number(hooks, "ns_per_call");
            let busiest: Vec<String> = hooks["programs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|program| number(program, "ns_per_call") >= 0.05 * total)
                .take(3)
                .map(|program| {
                    format!(
                        "{} {:.0} ns × {:.2}",
                        program["name"].as_str().unwrap_or("?"),
                        number(program, "ns_per_run"),
                        number(program, "runs_per_call"),
                    )
                })
                .collect();
            out.push_str(&format!(
                "{name}: in-kernel hooks {total:.0} ns per call ({})\n",
                busiest.join(", ")
            ));
        }
        let paused = &result["tracer_paused"];
        if paused.is_object() {
            out.push_str(&format!(
                "{name}: with the tracer paused while the client runs (in-kernel capture only): {}, spans/calls {:.4}, lost {}\n",
                against_untraced(paused),
                number(paused, "spans_per_call"),
                number(paused, "kernel_losses"),
            ));
        }
    }
    out.push_str("A: untraced, B: traced. CPU in µs per call (client: user+sys from its rusage, which includes the\nin-kernel hooks; tracer: its own process after attaching). ring B: bytes through the ring buffer per call.\nbusy: cores in use during the untraced runs. steal: the share of the machine's CPU time the hypervisor\ntook during the runs (a host busy with other guests; figures within a few points of a target then say\nlittle). ceil: when they were all busy, the best B/A possible given the tracer's own CPU per call\n(machine CPU per call / (that + tracer CPU per call)).\nrounds: the lowest and highest of the same figure taken round by round (each traced run against the\nuntraced run of its round), a measure of the noise. hooks: µs per call in the kernel programs (every\nprocess's syscalls they saw), from one more traced run with BPF run-time statistics on (`--hook-time`),\nby program as ns per run × runs per call.\n");
    out
}
