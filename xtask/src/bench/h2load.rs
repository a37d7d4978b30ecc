//! Loads driven by nghttp2's h2load instead of the tonic bench-client.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use super::{Mode, Run, SessionStats, machine::MachineCpu, placement};

/// h2load (nghttp2-client) from Debian, installed on first use.
pub(super) fn ensure_h2load() -> bool {
    crate::install::debian_tool("h2load", "nghttp2-client", "for the bench's h2load loads")
}

/// One gRPC-framed EchoRequest (100 payload bytes, 100 reply bytes) for h2load to post.
pub(super) fn write_grpc_body(directory: &Path) -> Result<PathBuf> {
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
pub(super) fn run_h2load(
    release: &Path,
    address: &str,
    cpu: Option<usize>,
    args: &[String],
    body: &Path,
    mode: Mode,
) -> Result<Run> {
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
        let mut command = Command::new(release.join(mode.tracer_binary()));
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
        let report: SessionStats = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
        let _ = std::fs::remove_file(&stats);
        Some(report)
    } else {
        None
    };
    let micros = |time: libc::timeval| time.tv_sec as f64 * 1e6 + time.tv_usec as f64;
    let cpu = match &tracer {
        Some(report) => report.launched_command_cpu_us.unwrap_or(0) as f64,
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
