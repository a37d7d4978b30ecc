//! One run of a load's client (the tonic bench-client, or the Python one over TLS), untraced
//! or under the tracer, and the OTLP receiver that traced runs export to.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::{Mode, Run, SessionStats, client_core, machine::MachineCpu, placement};

/// A ring buffer that holds a whole paused run: 6 s at 40,000 calls/s of ~500 bytes each is
/// 120 MB.
pub(super) const PAUSED_RING_BYTES: &str = "268435456";

/// A load's client and the server it calls.
#[derive(Debug, Clone, Copy)]
pub(super) enum Client<'a> {
    /// The tonic bench-client, against the example server at `address`.
    Tonic { address: &'a str },
    /// `tests/python/bench_client.py` on grpcio over TLS, against the Python example server at
    /// `target`, whose certificate is `cert`.
    GrpcioTls {
        python: &'a Path,
        target: &'a str,
        cert: &'a Path,
    },
}

impl Client<'_> {
    fn command(self, release: &Path, cpu: Option<usize>) -> Command {
        match self {
            Client::Tonic { address } => {
                let mut command = placement::command_on(cpu, release.join("bench-client"));
                command.args(["--target", &format!("http://{address}")]);
                command
            }
            Client::GrpcioTls {
                python,
                target,
                cert,
            } => {
                let mut command = placement::command_on(cpu, python);
                command
                    .arg(crate::workspace_root().join("tests/python/bench_client.py"))
                    .args([target, "--tls"])
                    .arg(cert);
                command
            }
        }
    }
}

/// One client run, on `cpu` if given; traced runs attach the tracer (JSON spans to /dev/null)
/// before the load starts and also return the tracer's own report. With `profile`, the client's
/// CPU is sampled by `perf record` into that file while the load runs.
pub(super) fn run_client(
    release: &Path,
    client: Client,
    cpu: Option<usize>,
    args: &[String],
    mode: Mode,
    otlp: bool,
    profile: Option<&Path>,
) -> Result<Run> {
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
    let mut client = client
        .command(release, cpu)
        .arg("--wait")
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
        let mut tracer = Command::new(release.join(mode.tracer_binary()))
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
            let report: SessionStats = serde_json::from_str(&report)?;
            if let Some(collector) = &mut collector {
                // The tracer has delivered everything it counts as exported before exiting.
                let received = collector.spans_received()?;
                let exported = report.spans_exported;
                if received != exported {
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

pub(super) fn signal(process: &std::process::Child, signal: libc::c_int) -> Result<()> {
    // SAFETY: plain syscall on a child process we own and have not reaped.
    if unsafe { libc::kill(process.id() as libc::pid_t, signal) } != 0 {
        bail!("signalling the tracer: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
