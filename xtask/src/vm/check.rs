//! What a guest printed, checked: the client's calls against the tracer's spans, call by call.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::initramfs::{CAPTURE_TESTS, marker};

/// A guest's console, boot to power-off, and how long that took.
pub struct GuestRun {
    pub console: String,
    pub wall: Duration,
}

/// The lines of the console between `start` and the next marker.
fn section<'a>(console: &'a str, start: &str) -> Vec<&'a str> {
    console
        .lines()
        .skip_while(|line| !line.contains(start))
        .skip(1)
        .take_while(|line| !line.contains("@@vm-test"))
        .collect()
}

/// What follows `prefix` on its line (the serial console may put bytes of its own before it).
fn value_after<'a>(console: &'a str, prefix: &str) -> Option<&'a str> {
    console
        .lines()
        .find_map(|line| Some(&line[line.find(prefix)? + prefix.len()..]))
        .map(str::trim)
}

/// Checks a guest's run; returns its one-line summary.
pub fn check_run(run: &GuestRun) -> Result<String> {
    let console = run.console.as_str();
    let tail = || {
        let lines: Vec<&str> = console.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let release = value_after(console, marker::KERNEL)
        .with_context(|| format!("the guest never ran the test:\n{}", tail()))?;
    if !console.contains(marker::END) {
        bail!("{release}: the guest stopped before the end:\n{}", tail());
    }
    let exit = value_after(console, marker::TRACER_EXIT).unwrap_or("?");
    let stderr = section(console, marker::STDERR).join("\n");
    if exit != "0" {
        bail!("{release}: the tracer exited with {exit}:\n{stderr}");
    }
    let parse = |lines: Vec<&str>| -> Result<Vec<Value>> {
        lines
            .into_iter()
            .filter(|line| line.starts_with('{'))
            .map(|line| serde_json::from_str(line).with_context(|| format!("bad line {line:?}")))
            .collect()
    };
    let calls = parse(section(console, marker::CLIENT))?;
    let mut spans = parse(section(console, marker::SPANS))?;
    let stats: Value = section(console, marker::STATS)
        .join("\n")
        .parse::<Value>()
        .context("the tracer's --stats-json")?;
    if calls.is_empty() || spans.len() != calls.len() {
        bail!(
            "{release}: {} calls, {} spans\n{stderr}",
            calls.len(),
            spans.len()
        );
    }
    spans.sort_by_key(|span| span["start_time_unix_nano"].as_u64().unwrap_or(0));
    let sequential = calls
        .iter()
        .take_while(|call| call["scenario"] != "concurrent")
        .count();
    for (span, call) in spans.iter().zip(&calls).take(sequential) {
        let scenario = call["scenario"].as_str().unwrap_or("?");
        let attributes = &span["attributes"];
        if span["name"] != call["method"] {
            bail!(
                "{release} {scenario}: span {} for {}",
                span["name"],
                call["method"]
            );
        }
        let code = attributes["rpc.grpc.status_code"].as_i64();
        let expected = call["code"].as_i64();
        // When the 100 ms grpc-timeout expires two endings race, as in the end-to-end tests:
        // the client's reset (DEADLINE_EXCEEDED) and the tonic server's own CANCELLED.
        let deadline_race = scenario == "deadline_exceeded" && matches!(code, Some(1 | 4));
        if code != expected && !deadline_race {
            bail!("{release} {scenario}: status {code:?}, the client saw {expected:?}");
        }
        if attributes["rpc.request.message.count"] != call["request_messages"] {
            bail!("{release} {scenario}: request messages differ: {span}");
        }
        if scenario != "cancelled"
            && attributes["rpc.response.message.count"] != call["response_messages"]
        {
            bail!("{release} {scenario}: response messages differ: {span}");
        }
    }
    // The capture tests: every byte of each stream as the workload sent it.
    let capture = section(console, marker::CAPTURE).join("\n");
    let expected = format!("test result: ok. {} passed", CAPTURE_TESTS.len());
    if !capture.contains(&expected) {
        bail!("{release}: the capture tests:\n{capture}");
    }
    // HTTP/2 over TLS (nghttp on libssl): the TLS programs load, and the session is decoded.
    let tls_exit = value_after(console, marker::TLS_EXIT).unwrap_or("?");
    let tls_stats: Value = section(console, marker::TLS_STATS)
        .join("\n")
        .parse::<Value>()
        .with_context(|| {
            format!("{release}: the TLS run's --stats-json (tracer exit {tls_exit})")
        })?;
    // Kernels before 5.16 do not say how many instructions they verified.
    let reports_verified = stats["verified_instructions"]
        .as_object()
        .is_some_and(|programs| !programs.is_empty());
    let tls_return = &tls_stats["verified_instructions"]["tls_return"];
    if tls_exit != "0"
        || tls_stats["tls_connections_decoded"] != 1
        || (reports_verified && !tls_return.is_u64())
    {
        bail!("{release}: the TLS run (exit {tls_exit}): {tls_stats}");
    }
    let verified = |count: &Value| {
        count
            .as_u64()
            .map_or("not reported by this kernel".to_owned(), |count| {
                format!("{count} instructions verified")
            })
    };
    let (largest, instructions) = stats["verified_instructions"]
        .as_object()
        .and_then(|programs| {
            programs
                .iter()
                .filter_map(|(name, count)| Some((name.clone(), count.as_u64()?)))
                .max_by_key(|(_, count)| *count)
        })
        .map_or(("sys_exit".to_owned(), Value::Null), |(name, count)| {
            (name, Value::from(count))
        });
    Ok(format!(
        "{release}: {} calls, {} spans, each as the client saw it; capture byte-exact ({}); \
         HTTP/2 over TLS decoded from libssl (tls_return: {}); guest {:.1} s (boot and tests); \
         {largest}: {}; kernel losses {}",
        calls.len(),
        spans.len(),
        CAPTURE_TESTS.join(", "),
        verified(tls_return),
        run.wall.as_secs_f64(),
        verified(&instructions),
        stats["kernel_losses"]
    ))
}
