//! `cargo xtask bench --client-core`: how much of the traced client's own CPU the kernel's
//! syscall-tracing path takes, by sampling the client with `perf record`.
//!
//! The client runs on a core of its own, and the time the kernel spends on its syscalls because
//! they are traced is taken from that core. A share `s` of the client's samples in that path
//! adds `s / (1 - s)` to its CPU per call if its own work per call stays what it was; on the
//! judged load, where the untraced client keeps its core `busy` (about 0.95), it also leaves
//! the traced rate at most `(1 - s) / busy` of the untraced one. A share moves by about a
//! point from run to run, where a throughput ratio or a CPU per call from rusage moves by
//! several on a shared host: it does not depend on how fast the server answered.
//!
//! The tracing path is every sample whose kernel call chain passes through one of
//! [`TRACING_PATH`]: the syscall entry and exit work that a syscall tracepoint switches on for
//! every task, the perf glue that runs the BPF programs, and the programs themselves. The
//! untraced mode checks that none of these is reached otherwise (its share is reported too).
//! The path's samples are also split by [`PARTS`]: the kernel's own path, the programs' code,
//! and the helpers they call (reading user memory, the ring buffer, maps, the clock).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{
    Mode, client_cpu_per_call, client_cpu_us, client_rate, load_name, mean, number,
    placement::Placement,
    targets::{CLIENT_CPU_INCREASE_MAX, RATE_RATIO_MIN},
};

/// Kernel functions on the syscall-tracing path (tracepoint events, then raw tracepoints), and
/// the prefix of BPF programs' symbols.
const TRACING_PATH: [&str; 6] = [
    "syscall_trace_enter",
    "syscall_exit_work",
    "perf_syscall_enter",
    "perf_syscall_exit",
    "trace_call_bpf",
    "bpf_trace_run2",
];
const BPF_PROGRAM_PREFIX: &str = "bpf_prog_";

/// Samples per second of the client's CPU time.
const SAMPLE_HZ: &str = "10000";
const ROUNDS: usize = 3;
const SECONDS: u32 = 4;

/// The modes compared, each with a short name for its files and a label: nothing attached; the
/// hooks attached for another process (the client's syscalls only pass through them); bare
/// records; copied records (the bytes read, no framing followed); the real capture.
const MODES: [(Mode, &str, &str); 5] = [
    (Mode::Untraced, "untraced", "untraced"),
    (
        Mode::HooksOnly,
        "hooks",
        "hooks only: tracer attached to an idle process",
    ),
    (Mode::BareRecords, "bare", "bare records"),
    (
        Mode::CopiedRecords,
        "copied",
        "copied records: bytes read, no framing followed",
    ),
    (Mode::Traced, "traced", "traced"),
];

/// The loads sampled: the judged one, which keeps the client's core busy, and a fixed rate, at
/// which the client mostly waits and its CPU per call is all that the target speaks of.
const LOADS: [(&str, &str, Option<&str>); 2] = [
    ("saturating", load_name::SATURATING, None),
    ("2000", load_name::AT_2000, Some("2000")),
];

pub fn run() -> Result<()> {
    if !crate::test::is_root() {
        bail!("sampling the kernel needs root: run `cargo xtask bench --client-core` as root");
    }
    let Some(placement) = Placement::find() else {
        bail!(
            "--client-core needs the client on a core of its own (two CPUs and taskset), so that \
             the kernel's time on its syscalls is all taken from that core"
        );
    };
    if !crate::install::debian_tool("perf", "linux-perf", "to sample the client's core") {
        bail!("--client-core needs perf (Debian package linux-perf), which could not be installed");
    }
    // The floors' binary first: it ends with the release tracer built again, which the
    // examples' build then finds up to date.
    crate::build_bench_floors()?;
    let release = crate::example::build()?;
    let (mut server, address) = crate::example::start_server(&release, Some(placement.server_cpu))?;
    // The perf files stay there, for `perf report`.
    let directory = crate::workspace_root().join("target/bench/client-core");
    std::fs::create_dir_all(&directory)?;
    let measured: Result<Vec<Value>> = LOADS
        .iter()
        .map(|load| sample_load(&release, &address, placement, &directory, load))
        .collect();
    let _ = server.kill();
    let _ = server.wait();
    let results = measured?;

    println!("{}", render(&results));
    let path = crate::workspace_root().join("target/bench/client-core.json");
    let report = json!({
        "client_cpu": placement.client_cpu,
        "server_cpu": placement.server_cpu,
        "rounds": ROUNDS,
        "seconds": SECONDS,
        "loads": results,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// Runs one of [`LOADS`] in every mode, [`ROUNDS`] times in alternating order, sampled.
fn sample_load(
    release: &Path,
    address: &str,
    placement: Placement,
    directory: &Path,
    &(short, name, rate): &(&str, &str, Option<&str>),
) -> Result<Value> {
    eprintln!("xtask: bench: the client's core, {name} ({ROUNDS} rounds of {SECONDS} s per mode)");
    let client = |seconds: u32, mode: Mode, profile: Option<&Path>| {
        let mut args: Vec<String> = ["--connections", "1", "--concurrency", "8"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let Some(rate) = rate {
            args.extend(["--rate".to_owned(), rate.to_owned()]);
        }
        args.extend(["--duration-ms".to_owned(), (seconds * 1000).to_string()]);
        super::run_client(
            release,
            super::Client::Tonic { address },
            Some(placement.client_cpu),
            &args,
            mode,
            false,
            profile,
        )
    };
    client(1, Mode::Untraced, None)?; // Warm-up, discarded.
    let mut rounds: Vec<Vec<Round>> = MODES.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        let mut order: Vec<usize> = (0..MODES.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let (mode, mode_short, _) = MODES[index];
            let path = directory.join(format!("{short}-{mode_short}-{round}.data"));
            let (report, _) = client(SECONDS, mode, Some(&path))?;
            let pid = number(&report, "pid") as u32;
            rounds[index].push(Round {
                samples: tracing_samples(&path, pid)?,
                report,
            });
        }
    }
    let mut modes: Vec<Value> = MODES
        .iter()
        .zip(&rounds)
        .map(|(&(_, _, label), rounds)| summarise(label, rounds))
        .collect();
    let budgets = Budgets::judge(&mut modes, rate.is_none());
    let steal = mean(modes.iter().map(|mode| number(mode, "machine_steal_share")));
    Ok(json!({
        "name": name,
        "saturating": rate.is_none(),
        "tracing_path_budget_rate": budgets.rate,
        "tracing_path_budget_cpu": budgets.cpu,
        "machine_steal_share": steal,
        "modes": modes,
    }))
}

/// The largest share of the client's CPU that the tracing path may take under each target, if
/// the client's own work per call stays what it was.
struct Budgets {
    /// Traced calls/s at least [`RATE_RATIO_MIN`] of untraced (saturating loads): the client's
    /// CPU per call becomes the untraced one over `1 - s`, and its core gives it at most all of
    /// its time where the untraced client used `busy` of it, so the rate is at most
    /// `(1 - s) / busy` of the untraced one.
    rate: Option<f64>,
    /// The client's CPU per call at most [`CLIENT_CPU_INCREASE_MAX`] above untraced: the path
    /// adds `s / (1 - s)` to it.
    cpu: f64,
}

impl Budgets {
    /// The budgets of a load whose summarised `modes` start with the untraced one, and whether
    /// each traced mode fits in them, written into that mode.
    fn judge(modes: &mut [Value], saturating: bool) -> Budgets {
        let busy_untraced = saturating.then(|| number(&modes[0], "client_core_busy"));
        let budgets = Budgets {
            rate: busy_untraced.map(|busy| 1.0 - RATE_RATIO_MIN * busy),
            cpu: CLIENT_CPU_INCREASE_MAX / (1.0 + CLIENT_CPU_INCREASE_MAX),
        };
        for mode in modes.iter_mut().skip(1) {
            let share = number(mode, "tracing_path_share");
            if let Some(busy_untraced) = busy_untraced {
                mode["rate_ratio_at_most"] = ((1.0 - share) / busy_untraced).into();
            }
            mode["within_rate_budget"] = budgets.rate.map(|budget| share <= budget).into();
            mode["within_cpu_budget"] = (share <= budgets.cpu).into();
        }
        budgets
    }
}

/// One sampled run.
struct Round {
    samples: Samples,
    report: Value,
}

/// The parts of the tracing path, by where a sample in it was: the kernel's own path (no BPF
/// program on the stack), a program's own instructions, or the helper a program called.
const PARTS: [&str; 7] = [
    "syscall tracepoint path",
    "programs' own code",
    "reading user memory",
    "ring buffer output",
    "map lookups and updates",
    "reading the clock",
    "other helpers",
];

#[derive(Clone, Copy, Default)]
struct Samples {
    total: u64,
    /// Samples on the tracing path, by [`PARTS`].
    parts: [u64; PARTS.len()],
}

impl Samples {
    fn tracing(self) -> u64 {
        self.parts.iter().sum()
    }

    fn share(self) -> f64 {
        self.tracing() as f64 / (self.total as f64).max(1.0)
    }
}

/// Which of [`PARTS`] a sample whose call chain (innermost frame first) is `frames` belongs
/// to; `None` when it is not on the tracing path.
fn part_of(frames: &[&str]) -> Option<usize> {
    let is_program = |frame: &&str| frame.starts_with(BPF_PROGRAM_PREFIX);
    if !frames
        .iter()
        .any(|frame| is_program(frame) || TRACING_PATH.contains(frame))
    {
        return None;
    }
    Some(match frames.iter().position(is_program) {
        None => 0,
        Some(0) => 1,
        // The frame the program called.
        Some(program) => match frames[program - 1] {
            "bpf_probe_read_user" => 2,
            helper if helper.starts_with("bpf_ringbuf_") => 3,
            // The JIT calls a hash map's lookup directly, which may tail-call its inner part.
            helper if helper.contains("map_") || helper.starts_with("lookup_nulls_elem") => 4,
            helper if helper.starts_with("ktime_get") || helper == "bpf_ktime_get_ns" => 5,
            _ => 6,
        },
    })
}

fn summarise(label: &str, rounds: &[Round]) -> Value {
    let shares: Vec<f64> = rounds.iter().map(|round| round.samples.share()).collect();
    let share = mean(shares.iter().copied());
    json!({
        "mode": label,
        "tracing_path_share": share,
        // Each part's share of the client's samples, over all rounds.
        "tracing_path_parts": parts_json(rounds),
        "tracing_path_share_rounds": shares,
        "samples": rounds.iter().map(|round| round.samples.total).sum::<u64>(),
        // The path's time for each unit of the client's time outside it: what tracing adds to
        // the client's CPU per call if its own work per call stays the same.
        "tracing_path_per_rest": share / (1.0 - share),
        // Measured while sampled, which slows the client and adds to its CPU.
        "calls_per_s": mean(rounds.iter().map(|round| client_rate(&round.report))),
        "client_cpu_per_call_us": mean(rounds.iter().map(|round| client_cpu_per_call(&round.report))),
        "machine_steal_share": mean(rounds.iter().map(|round| number(&round.report, "machine_steal_share"))),
        "client_core_busy": mean(rounds.iter().map(|round| {
            client_cpu_us(&round.report) / (number(&round.report, "elapsed_s") * 1e6)
        })),
    })
}

fn parts_json(rounds: &[Round]) -> Value {
    let total: u64 = rounds.iter().map(|round| round.samples.total).sum();
    let parts = PARTS.iter().enumerate().map(|(index, &part)| {
        let samples: u64 = rounds.iter().map(|round| round.samples.parts[index]).sum();
        (
            part.to_owned(),
            json!(samples as f64 / (total as f64).max(1.0)),
        )
    });
    Value::Object(parts.collect())
}

fn render(loads: &[Value]) -> String {
    let mut table = String::from(
        "| load, mode | client core busy | tracing path: share of the client's CPU (rounds) | path / rest of the client's CPU | traced rate at most (saturating: (1 - share) / untraced busy) |\n| --- | --- | --- | --- | --- |\n",
    );
    for load in loads {
        for (index, mode) in load["modes"].as_array().into_iter().flatten().enumerate() {
            let rounds: Vec<String> = mode["tracing_path_share_rounds"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|share| format!("{:.1}", 100.0 * share.as_f64().unwrap_or(f64::NAN)))
                .collect();
            let share = number(mode, "tracing_path_share");
            table += &format!(
                "| {}{} | {:.2} | {:.1}% ({}) | {:+.1}% | {} |\n",
                if index == 0 {
                    format!("{}: ", load["name"].as_str().unwrap_or("?"))
                } else {
                    String::new()
                },
                mode["mode"].as_str().unwrap_or("?"),
                number(mode, "client_core_busy"),
                100.0 * share,
                rounds.join(", "),
                100.0 * number(mode, "tracing_path_per_rest"),
                if mode.get("rate_ratio_at_most").is_some() {
                    format!("{:.3}", number(mode, "rate_ratio_at_most"))
                } else {
                    String::new()
                },
            );
        }
    }
    table += &format!(
        "\n| load, mode (share of the client's CPU) | {} |\n| --- |{}\n",
        PARTS.join(" | "),
        " --- |".repeat(PARTS.len())
    );
    for load in loads {
        for mode in load["modes"].as_array().into_iter().flatten().skip(1) {
            let parts: Vec<String> = PARTS
                .iter()
                .map(|part| format!("{:.2}%", 100.0 * number(&mode["tracing_path_parts"], part)))
                .collect();
            table += &format!(
                "| {}, {} | {} |\n",
                load["name"].as_str().unwrap_or("?"),
                mode["mode"].as_str().unwrap_or("?"),
                parts.join(" | ")
            );
        }
    }
    table + &render_budgets(loads)
}

/// What the targets leave the tracing path, and which modes fit in it. A mode that does less
/// than the tracer and already takes more proves that no capture doing at least as much meets
/// that target here.
fn render_budgets(loads: &[Value]) -> String {
    let mut out =
        String::from("\nWhat the targets leave the tracing path (share of the client's CPU):\n");
    for load in loads {
        let cpu = 100.0 * number(load, "tracing_path_budget_cpu");
        let rate = load["tracing_path_budget_rate"].as_f64();
        out += &format!("  {}: ", load["name"].as_str().unwrap_or("?"));
        if let Some(rate) = rate {
            out += &format!(
                "{:.0}% of the untraced rate leaves it at most {:.1}% (1 - {RATE_RATIO_MIN} x the untraced client's busy share), ",
                100.0 * RATE_RATIO_MIN,
                100.0 * rate,
            );
        }
        out += &format!(
            "{:.0}% more client CPU per call at most {cpu:.1}%\n",
            100.0 * CLIENT_CPU_INCREASE_MAX
        );
        let steal = number(load, "machine_steal_share");
        if steal > 0.0 {
            out += &format!(
                "    (the hypervisor took {:.1}% of the machine's CPU time during these runs)\n",
                100.0 * steal
            );
        }
        for mode in load["modes"].as_array().into_iter().flatten().skip(1) {
            let fits = |key: &str| match mode[key].as_bool() {
                Some(true) => "within",
                Some(false) => "OVER",
                None => "",
            };
            let verdict = if rate.is_some() {
                format!(
                    "{} the rate's, {} the CPU's",
                    fits("within_rate_budget"),
                    fits("within_cpu_budget")
                )
            } else {
                format!("{} the CPU's", fits("within_cpu_budget"))
            };
            out += &format!(
                "    {:.1}% {}: {verdict}\n",
                100.0 * number(mode, "tracing_path_share"),
                mode["mode"].as_str().unwrap_or("?"),
            );
        }
    }
    out
}

/// `perf record` sampling one CPU (with kernel call chains) until stopped. The CPU rather than
/// the process: following a process makes perf switch its event at each of the process's
/// context switches, which costs a client that mostly waits a good part of its CPU.
pub struct Sampler {
    perf: Child,
    path: PathBuf,
}

impl Sampler {
    pub fn start(cpu: usize, path: &Path) -> Result<Sampler> {
        let perf = Command::new("perf")
            .args([
                "record",
                "-q",
                "-e",
                "cpu-clock",
                "-F",
                SAMPLE_HZ,
                "-g",
                "-C",
            ])
            .arg(cpu.to_string())
            .arg("-o")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf record")?;
        Ok(Sampler {
            perf,
            path: path.to_owned(),
        })
    }

    /// Stops sampling; perf writes its file on SIGINT.
    pub fn stop(mut self) -> Result<()> {
        super::signal(&self.perf, libc::SIGINT)?;
        let status = self.perf.wait()?;
        if !self.path.exists() {
            bail!("perf record wrote no {} ({status})", self.path.display());
        }
        Ok(())
    }
}

impl Drop for Sampler {
    /// A run that failed before [`Sampler::stop`] must not leave perf sampling the CPU.
    fn drop(&mut self) {
        if let Ok(None) = self.perf.try_wait() {
            let _ = self.perf.kill();
            let _ = self.perf.wait();
        }
    }
}

/// How many of the samples of process `pid` in a `perf record` file there are, and how many
/// passed through the tracing path.
fn tracing_samples(path: &Path, pid: u32) -> Result<Samples> {
    let output = Command::new("perf")
        .args(["script", "-F", "pid,ip,sym", "-i"])
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .context("running perf script")?;
    if !output.status.success() {
        bail!(
            "perf script failed on {}: {}",
            path.display(),
            output.status
        );
    }
    Ok(count_tracing(&String::from_utf8_lossy(&output.stdout), pid))
}

/// Counts `perf script -F pid,ip,sym` output for process `pid`: one sample per block (the pid,
/// then one frame per line), blocks separated by blank lines.
fn count_tracing(script: &str, pid: u32) -> Samples {
    let mut samples = Samples::default();
    let mut sample_pid = None;
    let mut frames = Vec::new();
    for line in script.lines().chain([""]) {
        if line.trim().is_empty() {
            if sample_pid == Some(pid) {
                samples.total += 1;
                if let Some(part) = part_of(&frames) {
                    samples.parts[part] += 1;
                }
            }
            sample_pid = None;
            frames.clear();
            continue;
        }
        if sample_pid.is_none() {
            sample_pid = Some(line.trim().parse().unwrap_or(0));
            continue;
        }
        // "\t<address> <symbol>"
        frames.push(line.split_whitespace().nth(1).unwrap_or(""));
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_samples_through_the_tracing_path() {
        // Three samples of the client (3408), one of another process on its CPU.
        let script = " 3408 \n\
             \tffffffff811 _raw_spin_unlock_irqrestore\n\
             \tffffffff812 perf_syscall_exit\n\
             \tffffffff813 syscall_exit_work\n\
             \n\
             \x20 3408 \n\
             \t98932 malloc\n\
             \n\
             \x20  977 \n\
             \tffffffff812 perf_syscall_exit\n\
             \n\
             \x20 3408 \n\
             \tffffffffa01 bpf_prog_9f6127078aa77f38_sys_exit\n\
             \tffffffff814 trace_call_bpf\n\
             \n\
             \x20 3408 \n\
             \tffffffff815 tcp_sendmsg_locked\n\
             \tffffffff816 do_syscall_64\n";
        let samples = count_tracing(script, 3408);
        assert_eq!(samples.total, 4);
        assert_eq!(samples.parts, [1, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn tells_the_parts_of_the_path_apart() {
        let program = "bpf_prog_9f6127078aa77f38_sys_exit";
        let path = ["trace_call_bpf", "perf_syscall_exit", "syscall_exit_work"];
        let part = |inner: &[&str]| part_of(&[inner, &[program][..], &path].concat());
        assert_eq!(part(&[]), Some(1));
        assert_eq!(
            part(&[
                "__check_object_size",
                "copy_from_user_nofault",
                "bpf_probe_read_user"
            ]),
            Some(2)
        );
        assert_eq!(
            part(&[
                "_raw_spin_unlock_irqrestore",
                "__bpf_ringbuf_reserve",
                "bpf_ringbuf_output"
            ]),
            Some(3)
        );
        assert_eq!(
            part(&["lookup_nulls_elem_raw", "__htab_map_lookup_elem"]),
            Some(4)
        );
        assert_eq!(part(&["lookup_nulls_elem_raw"]), Some(4));
        assert_eq!(part(&["ktime_get_mono_fast_ns"]), Some(5));
        assert_eq!(part(&["bpf_task_pt_regs"]), Some(6));
        assert_eq!(part_of(&path), Some(0));
        assert_eq!(part_of(&["tcp_sendmsg_locked", "do_syscall_64"]), None);
    }

    #[test]
    fn a_mode_fits_a_budget_when_its_share_leaves_the_target_reachable() {
        let mode = |name: &str, share: f64, busy: f64| json!({ "mode": name, "tracing_path_share": share, "client_core_busy": busy });
        let mut modes = vec![
            mode("untraced", 0.0, 0.92),
            mode("bare records", 0.045, 0.94),
            mode("copied records", 0.059, 0.93),
            mode("traced", 0.12, 0.95),
        ];
        let budgets = Budgets::judge(&mut modes, true);
        // 97% of the rate: 1 - 0.97 x 0.92; 5% more CPU per call: 0.05 / 1.05.
        assert!((budgets.rate.unwrap() - 0.1076).abs() < 1e-9);
        assert!((budgets.cpu - 0.047_619).abs() < 1e-6);
        let fits = |index: usize| {
            (
                modes[index]["within_rate_budget"].clone(),
                modes[index]["within_cpu_budget"].clone(),
            )
        };
        assert_eq!(fits(1), (json!(true), json!(true)));
        assert_eq!(fits(2), (json!(true), json!(false)));
        assert_eq!(fits(3), (json!(false), json!(false)));
        assert!((number(&modes[3], "rate_ratio_at_most") - 0.88 / 0.92).abs() < 1e-9);

        let mut at_a_fixed_rate = vec![mode("untraced", 0.0, 0.2), mode("traced", 0.04, 0.2)];
        let budgets = Budgets::judge(&mut at_a_fixed_rate, false);
        assert_eq!(budgets.rate, None);
        assert_eq!(at_a_fixed_rate[1]["within_rate_budget"], Value::Null);
        assert_eq!(at_a_fixed_rate[1]["within_cpu_budget"], true);
        assert!(at_a_fixed_rate[1].get("rate_ratio_at_most").is_none());
        let report = json!({
            "name": "a load",
            "tracing_path_budget_rate": budgets.rate,
            "tracing_path_budget_cpu": budgets.cpu,
            "modes": at_a_fixed_rate,
        });
        assert!(render_budgets(&[report]).contains("4.0% traced: within the CPU's"));
    }
}
