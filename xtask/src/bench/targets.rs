//! The benchmark's targets, checked against the loads a run measured: for each target, the
//! figure this run found and whether it meets it. Targets whose loads did not run (`--quick`,
//! `--only`) are left out rather than reported as met.

use serde_json::{Value, json};

use super::{load_name, name_of, number};

/// Traced calls/s at least this share of untraced, for 100-byte unary calls.
pub const RATE_RATIO_MIN: f64 = 0.97;
/// The client's CPU per call at most this much above untraced, for 100-byte unary calls.
pub const CLIENT_CPU_INCREASE_MAX: f64 = 0.05;
/// The tracer's own CPU per unary call, in µs.
const TRACER_CPU_US_MAX: f64 = 5.0;
/// Ring buffer bytes per 1 MiB unary call.
const RING_BYTES_PER_MIB_CALL_MAX: f64 = 4096.0;
/// Steal time from this share of the machine's CPU time on is worth a word next to a verdict.
const NOTABLE_STEAL_SHARE: f64 = 0.01;

/// One target: a bound on one figure of a load's summary.
struct Target {
    what: &'static str,
    loads: Loads,
    figure: Figure,
    bound: Bound,
}

/// Which loads a target speaks of.
enum Loads {
    One(&'static str),
    /// Every load measured whose name contains this text; the worst of them is reported.
    Every(&'static str),
}

/// A figure of a load's summary (see `bench::summarise`) and how it reads.
#[derive(Clone, Copy)]
struct Figure {
    key: &'static str,
    scale: f64,
    decimals: usize,
    unit: &'static str,
    /// Shown with a sign (a change rather than an amount).
    signed: bool,
}

impl Figure {
    const fn new(key: &'static str, scale: f64, decimals: usize, unit: &'static str) -> Figure {
        Figure {
            key,
            scale,
            decimals,
            unit,
            signed: false,
        }
    }

    const fn change(key: &'static str) -> Figure {
        Figure {
            signed: true,
            ..Figure::new(key, 100.0, 1, "%")
        }
    }

    fn of(self, load: &Value) -> f64 {
        number(load, self.key)
    }

    fn show(self, value: f64) -> String {
        let (value, decimals) = (value * self.scale, self.decimals);
        if self.signed {
            format!("{value:+.decimals$}{}", self.unit)
        } else {
            format!("{value:.decimals$}{}", self.unit)
        }
    }
}

#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
    /// No bound: the figure is reported beside the targets (the memory with many open
    /// streams, and figures that a target's wording leaves out).
    Reported,
}

impl Bound {
    fn holds(self, value: f64) -> Option<bool> {
        match self {
            Bound::AtLeast(min) => Some(value >= min),
            Bound::AtMost(max) => Some(value <= max),
            Bound::Reported => None,
        }
    }

    /// Whether `a` is worse than `b` under this bound.
    fn worse(self, a: f64, b: f64) -> bool {
        match self {
            Bound::AtLeast(_) => a < b,
            Bound::AtMost(_) | Bound::Reported => a > b,
        }
    }
}

const RATE: Figure = Figure::new("throughput_ratio", 1.0, 3, "");
const CLIENT_CPU: Figure = Figure::change("client_cpu_increase");
const TRACER_CPU: Figure = Figure::new("tracer_cpu_us_per_call", 1.0, 2, " µs");
const RING_BYTES: Figure = Figure::new("ring_buffer_bytes_per_call", 1.0 / 1024.0, 2, " KiB");

fn targets() -> [Target; 11] {
    [
        Target {
            what: "traced calls/s at least 97% of untraced",
            loads: Loads::One(load_name::SATURATING),
            figure: RATE,
            bound: Bound::AtLeast(RATE_RATIO_MIN),
        },
        Target {
            what: "client CPU per call at most 5% above untraced",
            loads: Loads::One(load_name::SATURATING),
            figure: CLIENT_CPU,
            bound: Bound::AtMost(CLIENT_CPU_INCREASE_MAX),
        },
        Target {
            what: "client CPU per call at most 5% above untraced",
            loads: Loads::One(load_name::AT_2000),
            figure: CLIENT_CPU,
            bound: Bound::AtMost(CLIENT_CPU_INCREASE_MAX),
        },
        Target {
            what: "client CPU per call at most 5% above untraced",
            loads: Loads::One(load_name::AT_10000),
            figure: CLIENT_CPU,
            bound: Bound::AtMost(CLIENT_CPU_INCREASE_MAX),
        },
        Target {
            what: "tracer CPU at most 5 µs per 100-byte unary call",
            loads: Loads::Every("unary 100 B"),
            figure: TRACER_CPU,
            bound: Bound::AtMost(TRACER_CPU_US_MAX),
        },
        Target {
            // Grows with the frames a call takes (16 KiB each unless the peers agree on more),
            // not with its bytes: the DATA payload stays in the kernel.
            what: "tracer CPU per 1 MiB unary call",
            loads: Loads::Every("1 MiB"),
            figure: TRACER_CPU,
            bound: Bound::Reported,
        },
        Target {
            what: "zero lost calls: a span for every call",
            loads: Loads::Every(""),
            figure: Figure::new("spans_per_call", 1.0, 4, " spans per call"),
            bound: Bound::AtLeast(1.0),
        },
        Target {
            what: "no event lost in the kernel",
            loads: Loads::Every(""),
            figure: Figure::new("kernel_losses", 1.0, 0, " lost"),
            bound: Bound::AtMost(0.0),
        },
        Target {
            what: "at most 4 KiB through the ring buffer per 1 MiB call in frame sync",
            loads: Loads::One(load_name::ONE_MIB),
            figure: RING_BYTES,
            bound: Bound::AtMost(RING_BYTES_PER_MIB_CALL_MAX),
        },
        Target {
            // Until userspace re-arms the kernel's frame cursor, what moves is copied whole:
            // a few calls' worth per connection joined, spread over the run's calls.
            what: "ring buffer per 1 MiB call, on a connection joined before frame sync",
            loads: Loads::One(load_name::ONE_MIB_JOINED),
            figure: RING_BYTES,
            bound: Bound::Reported,
        },
        Target {
            what: "tracer memory bounded with 10,000 open streams (peak RSS)",
            loads: Loads::One(load_name::OPEN_STREAMS),
            figure: Figure::new("tracer_max_rss_kib", 1.0 / 1024.0, 1, " MiB"),
            bound: Bound::Reported,
        },
    ]
}

/// Each target the measured `loads` speak of, with its figure and whether it is met.
pub fn check(loads: &[Value]) -> Vec<Value> {
    targets()
        .iter()
        .filter_map(|target| {
            let (load, value) = match target.loads {
                Loads::One(name) => {
                    let load = loads.iter().find(|load| name_of(load) == name)?;
                    (load, target.figure.of(load))
                }
                Loads::Every(text) => loads
                    .iter()
                    .filter(|load| name_of(load).contains(text))
                    .map(|load| (load, target.figure.of(load)))
                    .reduce(|worst, next| {
                        if target.bound.worse(next.1, worst.1) {
                            next
                        } else {
                            worst
                        }
                    })?,
            };
            let every = matches!(target.loads, Loads::Every(_));
            Some(json!({
                "target": target.what,
                "load": name_of(load),
                "worst_of_every_load": every,
                "figure": target.figure.key,
                "value": value,
                "shown": target.figure.show(value),
                "met": target.bound.holds(value),
                "floors": floors(target, load),
                "machine_steal_share": load.get("machine_steal_share"),
            }))
        })
        .collect()
}

/// For a target on the throughput or the client's CPU, what the same load gave in the modes
/// that take parts of the tracer's cost away: where a floor already misses the target, no
/// capture that does at least what that floor does meets it.
fn floors(target: &Target, load: &Value) -> Value {
    if ![RATE.key, CLIENT_CPU.key].contains(&target.figure.key) {
        return Value::Null;
    }
    let floors: Vec<Value> = [
        ("hooks_only", "hooks only"),
        ("bare_records", "bare records"),
    ]
    .into_iter()
    .filter(|(key, _)| load[key].is_object())
    .map(|(key, label)| {
        let value = target.figure.of(&load[key]);
        json!({
            "floor": label,
            "value": value,
            "shown": target.figure.show(value),
            "met": target.bound.holds(value),
        })
    })
    .collect();
    Value::Array(floors)
}

/// The checked targets as lines of text.
pub fn render(checked: &[Value]) -> String {
    let mut out = String::from("Targets, on this machine in this run:\n");
    for target in checked {
        let verdict = match target["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "reported",
        };
        let load = target["load"].as_str().unwrap_or("?");
        let place = if target["worst_of_every_load"] == true {
            format!("worst of the loads measured: {load}")
        } else {
            load.to_owned()
        };
        let mut line = format!(
            "  {verdict:<8} {} ({place}): {}",
            target["target"].as_str().unwrap_or("?"),
            target["shown"].as_str().unwrap_or("?"),
        );
        let floors: Vec<String> = target["floors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|floor| {
                format!(
                    "{} {}",
                    floor["floor"].as_str().unwrap_or("?"),
                    floor["shown"].as_str().unwrap_or("?")
                )
            })
            .collect();
        if !floors.is_empty() {
            line += &format!("; floors: {}", floors.join(", "));
        }
        // The rate and the client's CPU are judged to a few points, which a host busy with
        // other guests takes by itself.
        let steal = target["machine_steal_share"].as_f64().unwrap_or(0.0);
        if !target["floors"].is_null() && steal >= NOTABLE_STEAL_SHARE {
            line += &format!(
                " (the hypervisor took {:.1}% of the machine's CPU time during these runs)",
                100.0 * steal
            );
        }
        out += &line;
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, figures: Value) -> Value {
        let mut load = figures;
        load["load"] = name.into();
        load
    }

    fn verdict<'a>(checked: &'a [Value], what: &str, load: &str) -> &'a Value {
        checked
            .iter()
            .find(|target| target["target"] == what && target["load"] == load)
            .unwrap_or_else(|| panic!("no verdict on {what:?} for {load:?} in {checked:#?}"))
    }

    #[test]
    fn a_target_is_judged_on_its_own_load_with_its_floors() {
        let loads = [
            load(
                load_name::SATURATING,
                json!({
                    "throughput_ratio": 0.95,
                    "client_cpu_increase": 0.04,
                    "spans_per_call": 1.0,
                    "machine_steal_share": 0.05,
                    "hooks_only": { "throughput_ratio": 0.98, "client_cpu_increase": 0.02 },
                }),
            ),
            load(
                load_name::AT_2000,
                json!({ "throughput_ratio": 1.0, "client_cpu_increase": 0.07 }),
            ),
        ];
        let checked = check(&loads);
        let rate = verdict(
            &checked,
            "traced calls/s at least 97% of untraced",
            load_name::SATURATING,
        );
        assert_eq!(rate["met"], false);
        assert_eq!(rate["shown"], "0.950");
        assert_eq!(rate["floors"][0]["floor"], "hooks only");
        assert_eq!(rate["floors"][0]["met"], true);
        let cpu = "client CPU per call at most 5% above untraced";
        assert_eq!(verdict(&checked, cpu, load_name::SATURATING)["met"], true);
        assert_eq!(verdict(&checked, cpu, load_name::AT_2000)["met"], false);
        assert_eq!(verdict(&checked, cpu, load_name::AT_2000)["shown"], "+7.0%");
        assert!(
            render(&checked).contains("0.950; floors: hooks only 0.980 (the hypervisor took 5.0%"),
            "{}",
            render(&checked)
        );
        // Not measured, so not judged.
        assert!(
            checked
                .iter()
                .all(|target| target["load"] != load_name::AT_10000)
        );
        assert!(
            checked
                .iter()
                .all(|target| target["load"] != load_name::OPEN_STREAMS)
        );
    }

    #[test]
    fn a_target_on_every_load_reports_the_worst() {
        let loads = [
            load(
                "unary 100 B, a",
                json!({ "tracer_cpu_us_per_call": 0.5, "kernel_losses": 0 }),
            ),
            load(
                "unary 100 B, b",
                json!({ "tracer_cpu_us_per_call": 6.0, "kernel_losses": 3 }),
            ),
            load(
                "unary 1 MiB, c",
                json!({ "tracer_cpu_us_per_call": 9.0, "kernel_losses": 0 }),
            ),
        ];
        let checked = check(&loads);
        let per_small_call = "tracer CPU at most 5 µs per 100-byte unary call";
        let tracer = verdict(&checked, per_small_call, "unary 100 B, b");
        assert_eq!(tracer["met"], false);
        assert_eq!(tracer["worst_of_every_load"], true);
        let per_large_call = verdict(
            &checked,
            "tracer CPU per 1 MiB unary call",
            "unary 1 MiB, c",
        );
        assert_eq!(per_large_call["met"], Value::Null);
        let lost = verdict(&checked, "no event lost in the kernel", "unary 100 B, b");
        assert_eq!(lost["met"], false);
        let text = render(&checked);
        assert!(
            text.contains(&format!("MISSED   {per_small_call}")),
            "{text}"
        );
        assert!(
            text.contains("reported tracer CPU per 1 MiB unary call"),
            "{text}"
        );
    }
}
