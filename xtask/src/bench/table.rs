//! The table a bench run prints.

use serde_json::Value;

use super::{loads::name_of, summary::number};

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

pub(super) fn render(results: &[Value]) -> String {
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
