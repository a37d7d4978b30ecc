//! A load's runs summed up: rates, CPU per call, the tracer's own figures, and the floors.

use serde_json::{Value, json};

use super::{Run, SessionStats, machine::MachineCpu};

pub(super) fn number(value: &Value, key: &str) -> f64 {
    value[key].as_f64().unwrap_or(0.0)
}

pub(super) fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Runs of one load in the modes that take parts of the tracer's cost away.
pub(super) struct Floors<'a> {
    pub(super) hooks_only: &'a [Run],
    pub(super) paused: &'a [Run],
    pub(super) bare_records: &'a [Run],
    pub(super) co_runner: &'a [Run],
    /// The share of a core the co-runner kept busy, on average.
    pub(super) co_runner_share: f64,
}

/// Calls per second a client run reached.
pub(super) fn client_rate(client: &Value) -> f64 {
    number(client, "calls") / number(client, "elapsed_s")
}

/// A client run's own CPU (user + system), in µs.
pub(super) fn client_cpu_us(client: &Value) -> f64 {
    number(client, "cpu_user_us") + number(client, "cpu_system_us")
}

/// A client run's own CPU per call, in µs.
pub(super) fn client_cpu_per_call(client: &Value) -> f64 {
    client_cpu_us(client) / number(client, "calls").max(1.0)
}

fn total_calls(runs: &[Run]) -> f64 {
    runs.iter().map(|(client, _)| number(client, "calls")).sum()
}

/// One figure from the tracer's report of each run that has one.
fn tracer_figures(runs: &[Run], figure: impl Fn(&SessionStats) -> f64) -> Vec<f64> {
    runs.iter()
        .filter_map(|(_, tracer)| tracer.as_ref().map(&figure))
        .collect()
}

/// The sum of one figure over the tracer's reports.
pub(super) fn tracer_total(runs: &[Run], figure: impl Fn(&SessionStats) -> f64) -> f64 {
    tracer_figures(runs, figure).iter().sum()
}

pub(super) fn summarise(
    name: &str,
    untraced: &[Run],
    traced: &[Run],
    floors: &Floors,
    hook_time: Option<&Run>,
) -> Value {
    let rate = |runs: &[Run]| mean(runs.iter().map(|(client, _)| client_rate(client)));
    let cpu_per_call =
        |runs: &[Run]| mean(runs.iter().map(|(client, _)| client_cpu_per_call(client)));
    let latency = |runs: &[Run], key| mean(runs.iter().map(|(client, _)| number(client, key)));
    let tracer =
        |figure: fn(&SessionStats) -> u64| tracer_figures(traced, |stats| figure(stats) as f64);
    let calls = total_calls(traced);
    // Steady state: the one-time costs of loading and verifying the programs, and of detaching
    // them at the end, are reported apart.
    let tracer_cpu = tracer_total(traced, |stats| stats.cpu_after_attach_us as f64);
    let attach_cpu = mean(tracer(|stats| stats.cpu_attach_us).into_iter());
    let detach_cpu = mean(tracer(|stats| stats.cpu_detach_us).into_iter());
    let attach_wall = mean(tracer(|stats| stats.wall_attach_us).into_iter());
    let detach_wall = mean(tracer(|stats| stats.wall_detach_us).into_iter());
    let spans = tracer_total(traced, |stats| stats.spans_exported as f64);
    let ring_bytes = tracer_total(traced, |stats| stats.ring_buffer_bytes as f64);
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
    let per_round = |runs: &[Run]| {
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
    let floor = |runs: &[Run]| {
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
                "spans_per_call": tracer_total(runs, |stats| stats.spans_exported as f64) / calls.max(1.0),
                "kernel_losses": tracer_total(runs, |stats| stats.kernel_losses as f64),
                "ring_buffer_bytes_per_call": tracer_total(runs, |stats| stats.ring_buffer_bytes as f64) / calls.max(1.0),
                "tracer_cpu_us_per_call": tracer_total(runs, |stats| stats.cpu_after_attach_us as f64) / calls.max(1.0),
            })
        })
    };
    let (throughput_rounds, cpu_rounds) = per_round(traced);
    let hook_time = hook_time
        .and_then(|(_, tracer)| tracer.as_ref())
        .and_then(|tracer| Some((tracer.calls.max(1) as f64, tracer.hook_time.as_ref()?)))
        .map(|(calls, hooks)| {
            let programs: Vec<Value> = hooks
                .programs
                .iter()
                .map(|program| {
                    let (runs, ns) = (program.runs as f64, program.ns as f64);
                    json!({
                        "name": program.name,
                        "runs_per_call": runs / calls,
                        "ns_per_run": ns / runs.max(1.0),
                        "ns_per_call": ns / calls,
                    })
                })
                .collect();
            json!({ "ns_per_call": hooks.ns as f64 / calls, "programs": programs })
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
        "tracer_attach_wall_ms": attach_wall / 1000.0,
        "tracer_detach_wall_ms": detach_wall / 1000.0,
        "p50_us_untraced": latency(untraced, "p50_us"),
        "p50_us_traced": latency(traced, "p50_us"),
        "p99_us_untraced": latency(untraced, "p99_us"),
        "p99_us_traced": latency(traced, "p99_us"),
        "calls": calls,
        "client_errors": traced.iter().chain(untraced).map(|(client, _)| number(client, "errors")).sum::<f64>(),
        "spans": spans,
        "spans_per_call": spans / calls.max(1.0),
        "ring_buffer_bytes_per_call": ring_bytes / calls.max(1.0),
        "kernel_losses": tracer_total(traced, |stats| stats.kernel_losses as f64),
        "tracer_max_rss_kib": tracer(|stats| stats.max_rss_kib.max(0) as u64).into_iter().fold(0.0, f64::max),
    })
}
