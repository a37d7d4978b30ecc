//! Command-line flags and the OpenTelemetry environment variables, resolved into one
//! validated configuration before anything is loaded.

use std::time::Duration;

use clap::{Parser, ValueEnum};

#[cfg(feature = "bench-floors")]
use crate::capture::CaptureFloor;
use crate::{
    capture::DEFAULT_RING_BUFFER_BYTES,
    export::{Conventions, OtlpConfig, OtlpProtocol, parse_key_values, redacted},
};

const EXAMPLES: &str = "\
Examples:
  sudo tracer --pid 4242                          trace a running process, console output
  sudo tracer --output json --pid 4242 > calls.jsonl
  sudo tracer --output json --output-file calls.jsonl -- python3 client.py
  sudo tracer --otlp-endpoint http://localhost:4317 -- python3 client.py
  OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \\
    sudo -E tracer --pid 4242";

/// Passive eBPF tracer: every gRPC call a process makes, as OpenTelemetry spans, without
/// touching the application.
#[derive(Parser, Debug, Clone)]
#[command(name = "tracer", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Trace this running process (all its threads). Repeat for several.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Also trace processes started by the traced ones (always on for a launched command).
    #[arg(long)]
    pub follow_children: bool,

    /// Stop after this long (e.g. 30s, 5m, 1h; a bare number is seconds).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Where spans go. Default: otlp when an OTLP endpoint is configured, else console.
    #[arg(long, value_enum)]
    pub output: Option<Output>,

    /// Write the console or JSON lines to this file (created, or emptied) instead of stdout,
    /// which a launched command then has to itself.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<std::path::PathBuf>,

    /// OTLP collector URL (else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport (else OTEL_EXPORTER_OTLP_PROTOCOL; default grpc).
    #[arg(long, value_parser = ["grpc", "http/protobuf"], value_name = "PROTOCOL")]
    pub otlp_protocol: Option<String>,

    /// service.name of the spans (else OTEL_SERVICE_NAME, else the traced executable's name).
    #[arg(long)]
    pub service_name: Option<String>,

    /// Size of the kernel-to-user ring buffer in bytes: a power of two from 4 KiB to 256 MiB.
    /// It is kernel memory, locked for as long as the tracer runs.
    #[arg(long, default_value_t = DEFAULT_RING_BUFFER_BYTES, value_name = "BYTES")]
    pub ring_buffer_bytes: u32,

    /// Spans that may wait for the collector (1 to 1,048,576); beyond this they are dropped
    /// and counted.
    #[arg(long, default_value_t = 16_384, value_name = "SPANS")]
    pub export_queue: usize,

    /// Also write the final report (calls, losses, ring buffer traffic, the tracer's own CPU
    /// time and peak memory) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<std::path::PathBuf>,

    /// Also export each traced process's full command line (`process.command_line`), which may
    /// carry secrets such as `--token=...`. Without it, only the executable is.
    #[arg(long)]
    pub export_command_line: bool,

    /// Measure the time the kernel hooks take and add it to the final report (in-kernel time
    /// per call, by hook). This turns on the kernel's BPF run-time statistics while tracing,
    /// which itself adds a few tens of nanoseconds to every hooked syscall.
    #[arg(long)]
    pub hook_time: bool,

    /// Benchmarking only: capture a bare record per data move, with none of its bytes, and
    /// decode nothing (no spans). `cargo xtask bench` uses it to measure the floor under the
    /// capture's cost.
    #[cfg(feature = "bench-floors")]
    #[arg(long)]
    pub bench_bare_records: bool,

    /// Benchmarking only: capture a record per data move keeping its first segment's bytes,
    /// follow no framing and decode nothing (no spans): the floor under any capture that
    /// reads the bytes.
    #[cfg(feature = "bench-floors")]
    #[arg(long, conflicts_with = "bench_bare_records")]
    pub bench_copied_records: bool,

    /// The command to launch and trace from its first connection (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Console,
    Json,
    Otlp,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("give either --pid PID or -- COMMAND (see --help)")]
    NothingToTrace,
    #[error("give either --pid or a command to launch, not both")]
    PidAndCommand,
    #[error("--output otlp needs an endpoint: --otlp-endpoint URL or OTEL_EXPORTER_OTLP_ENDPOINT")]
    MissingEndpoint,
    #[error("invalid OTLP endpoint {url:?} (from {source_name}): {reason}")]
    InvalidEndpoint {
        url: String,
        source_name: &'static str,
        reason: String,
    },
    #[error("unsupported OTEL_EXPORTER_OTLP_PROTOCOL {0:?}: use grpc or http/protobuf")]
    UnsupportedProtocol(String),
    #[error(
        "--output-file takes console or JSON lines, and spans go to OTLP here: add --output json \
         or --output console"
    )]
    OutputFileWithOtlp,
    #[error(
        "--ring-buffer-bytes must be a power of two from 4096 (4 KiB) to 268435456 (256 MiB), \
         got {0}"
    )]
    RingBufferSize(u32),
    #[error("--export-queue must be from 1 to {MAX_EXPORT_QUEUE} spans, got {0}")]
    ExportQueue(usize),
}

/// How long one OTLP export request may take, unless `OTEL_EXPORTER_OTLP_TIMEOUT` says.
const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest ring buffer: kernel memory, locked while tracing. The bench's largest (a whole
/// paused run) is this size.
pub const MAX_RING_BUFFER_BYTES: u32 = 256 << 20;

/// The most spans that may wait for the collector: about 1 GiB of encoded spans.
pub const MAX_EXPORT_QUEUE: usize = 1 << 20;

/// What to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Pids(Vec<u32>),
    Command(Vec<String>),
}

#[derive(Debug, Clone)]
pub enum OutputConfig {
    Console,
    Json,
    Otlp(OtlpConfig),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub follow_children: bool,
    pub duration: Option<Duration>,
    pub output: OutputConfig,
    /// Where console or JSON lines go instead of stdout.
    pub output_file: Option<std::path::PathBuf>,
    pub conventions: Conventions,
    pub service_name: Option<String>,
    pub env_service_name: Option<String>,
    pub env_resource_attributes: Option<String>,
    pub ring_buffer_bytes: u32,
    pub hook_time: bool,
    pub export_command_line: bool,
    #[cfg(feature = "bench-floors")]
    pub bench_floor: CaptureFloor,
    pub stats_json: Option<std::path::PathBuf>,
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?}"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| format!("{text:?}: {err}"))
}

/// Checks an OTLP URL: http(s), with a host. TLS is not built in, so https is refused here
/// rather than failing at the first export.
fn validate_endpoint(url: &str, source_name: &'static str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidEndpoint {
        url: redacted(url).into_owned(),
        source_name,
        reason: reason.to_owned(),
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|err: http::uri::InvalidUri| invalid(&err.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                "https is not supported by this build; use an http:// endpoint (e.g. a local collector)",
            ));
        }
        _ => return Err(invalid("expected http://HOST:PORT")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(())
}

impl Cli {
    /// Resolves flags and environment (read through `env`) into a configuration.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let target = match (self.pids.is_empty(), self.command.is_empty()) {
            (true, true) => return Err(ConfigError::NothingToTrace),
            (false, false) => return Err(ConfigError::PidAndCommand),
            (false, true) => Target::Pids(self.pids.clone()),
            (true, false) => Target::Command(self.command.clone()),
        };
        if !self.ring_buffer_bytes.is_power_of_two()
            || !(4096..=MAX_RING_BUFFER_BYTES).contains(&self.ring_buffer_bytes)
        {
            return Err(ConfigError::RingBufferSize(self.ring_buffer_bytes));
        }
        if !(1..=MAX_EXPORT_QUEUE).contains(&self.export_queue) {
            return Err(ConfigError::ExportQueue(self.export_queue));
        }
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let protocol_text = self
            .otlp_protocol
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let protocol = match protocol_text.as_deref().map(str::trim) {
            None | Some("grpc") => OtlpProtocol::Grpc,
            Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some(other) => return Err(ConfigError::UnsupportedProtocol(other.to_owned())),
        };
        // A signal-specific endpoint is used as-is; a base endpoint gets /v1/traces over HTTP.
        let endpoint = if let Some(url) = &self.otlp_endpoint {
            Some((url.clone(), "--otlp-endpoint", false))
        } else if let Some(url) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some((url, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", true))
        } else {
            env("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|url| (url, "OTEL_EXPORTER_OTLP_ENDPOINT", false))
        };
        if let Some((url, source_name, _)) = &endpoint {
            validate_endpoint(url, source_name)?;
        }
        let output = match (self.output, endpoint) {
            (Some(Output::Console), _) => OutputConfig::Console,
            (Some(Output::Json), _) => OutputConfig::Json,
            (Some(Output::Otlp), None) => return Err(ConfigError::MissingEndpoint),
            (None, None) => OutputConfig::Console,
            (Some(Output::Otlp) | None, Some((url, _, signal_specific))) => {
                // The duration histogram goes to the metrics endpoint: explicit, else derived from
                // the base endpoint (over gRPC a traces endpoint is just the collector address).
                let metrics_endpoint = match (env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"), protocol)
                {
                    (Some(url), _) => {
                        validate_endpoint(&url, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")?;
                        Some(url)
                    }
                    (None, OtlpProtocol::Grpc) => Some(url.clone()),
                    (None, OtlpProtocol::HttpProtobuf) if !signal_specific => {
                        let base = url.trim_end_matches('/');
                        Some(format!(
                            "{}/v1/metrics",
                            base.strip_suffix("/v1/traces").unwrap_or(base)
                        ))
                    }
                    (None, OtlpProtocol::HttpProtobuf) => None,
                };
                let endpoint = match protocol {
                    OtlpProtocol::HttpProtobuf
                        if !signal_specific
                            && !url.trim_end_matches('/').ends_with("/v1/traces") =>
                    {
                        format!("{}/v1/traces", url.trim_end_matches('/'))
                    }
                    _ => url,
                };
                // Milliseconds, per export request.
                let timeout = env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                    .or_else(|| env("OTEL_EXPORTER_OTLP_TIMEOUT"))
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .map_or(DEFAULT_OTLP_TIMEOUT, Duration::from_millis);
                let headers = env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                    .or_else(|| env("OTEL_EXPORTER_OTLP_HEADERS"))
                    .map(|text| parse_key_values(&text))
                    .unwrap_or_default();
                OutputConfig::Otlp(OtlpConfig {
                    endpoint,
                    metrics_endpoint,
                    protocol,
                    headers,
                    timeout,
                    queue_capacity: self.export_queue,
                })
            }
        };
        if self.output_file.is_some() && matches!(output, OutputConfig::Otlp(_)) {
            return Err(ConfigError::OutputFileWithOtlp);
        }
        Ok(Config {
            follow_children: self.follow_children || matches!(target, Target::Command(_)),
            target,
            duration: self.duration,
            output,
            output_file: self.output_file.clone(),
            conventions: Conventions::from_opt_in(env("OTEL_SEMCONV_STABILITY_OPT_IN").as_deref()),
            service_name: self.service_name.clone(),
            env_service_name: env("OTEL_SERVICE_NAME"),
            env_resource_attributes: env("OTEL_RESOURCE_ATTRIBUTES"),
            ring_buffer_bytes: self.ring_buffer_bytes,
            hook_time: self.hook_time,
            export_command_line: self.export_command_line,
            #[cfg(feature = "bench-floors")]
            bench_floor: if self.bench_bare_records {
                CaptureFloor::BareRecords
            } else if self.bench_copied_records {
                CaptureFloor::CopiedRecords
            } else {
                CaptureFloor::None
            },
            stats_json: self.stats_json.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let cli =
            Cli::try_parse_from(std::iter::once("tracer").chain(args.iter().copied())).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        cli.resolve(&|name| env.get(name).cloned())
    }

    fn otlp(config: &Config) -> &OtlpConfig {
        match &config.output {
            OutputConfig::Otlp(otlp) => otlp,
            other => panic!("not otlp: {other:?}"),
        }
    }

    #[test]
    fn targets() {
        assert_eq!(
            resolve(&["--pid", "1", "--pid", "2"], &[]).unwrap().target,
            Target::Pids(vec![1, 2])
        );
        let launched = resolve(&["--", "python3", "client.py", "--flag"], &[]).unwrap();
        assert_eq!(
            launched.target,
            Target::Command(vec!["python3".into(), "client.py".into(), "--flag".into()])
        );
        assert!(launched.follow_children);
        assert_eq!(resolve(&[], &[]).unwrap_err(), ConfigError::NothingToTrace);
        assert_eq!(
            resolve(&["--pid", "1", "--", "ls"], &[]).unwrap_err(),
            ConfigError::PidAndCommand
        );
    }

    #[test]
    fn output_defaults_follow_the_environment() {
        assert!(matches!(
            resolve(&["--pid", "1"], &[]).unwrap().output,
            OutputConfig::Console
        ));
        let config = resolve(
            &["--pid", "1"],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")],
        )
        .unwrap();
        assert_eq!(
            (otlp(&config).endpoint.as_str(), otlp(&config).protocol),
            ("http://collector:4317", OtlpProtocol::Grpc)
        );
        let http = resolve(
            &["--pid", "1"],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=abc"),
            ],
        )
        .unwrap();
        assert_eq!(otlp(&http).endpoint, "http://collector:4318/v1/traces");
        assert_eq!(
            otlp(&http).metrics_endpoint.as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        assert_eq!(
            otlp(&config).metrics_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(
            otlp(&http).headers,
            vec![("api-key".to_owned(), "abc".to_owned())]
        );
        let specific = resolve(
            &["--pid", "1", "--otlp-protocol", "http/protobuf"],
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom")],
        )
        .unwrap();
        assert_eq!(otlp(&specific).endpoint, "http://c:4318/custom");
        assert_eq!(otlp(&specific).metrics_endpoint, None);
        let flag = resolve(
            &["--pid", "1", "--otlp-endpoint", "http://127.0.0.1:9"],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:1")],
        )
        .unwrap();
        assert_eq!(otlp(&flag).endpoint, "http://127.0.0.1:9");
        assert!(matches!(
            resolve(
                &["--pid", "1", "--output", "json"],
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1")]
            )
            .unwrap()
            .output,
            OutputConfig::Json
        ));
        assert_eq!(
            resolve(&["--pid", "1", "--output", "otlp"], &[]).unwrap_err(),
            ConfigError::MissingEndpoint
        );
    }

    #[test]
    fn an_output_file_takes_console_or_json_lines() {
        let collector = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1")];
        let json = resolve(
            &[
                "--pid",
                "1",
                "--output",
                "json",
                "--output-file",
                "spans.jsonl",
            ],
            &collector,
        )
        .unwrap();
        assert!(matches!(json.output, OutputConfig::Json));
        assert_eq!(json.output_file, Some("spans.jsonl".into()));
        let console = resolve(&["--pid", "1", "--output-file", "calls.log"], &[]).unwrap();
        assert!(matches!(console.output, OutputConfig::Console));
        // With a collector configured, spans would go to OTLP and the file would stay empty.
        assert_eq!(
            resolve(&["--pid", "1", "--output-file", "spans.jsonl"], &collector).unwrap_err(),
            ConfigError::OutputFileWithOtlp
        );
    }

    #[test]
    fn bad_endpoints_and_protocols_are_rejected_up_front() {
        for url in [
            "not a url",
            "ftp://collector:21",
            "http://",
            "https://collector:4317",
            "localhost:4317",
        ] {
            let err = resolve(&["--pid", "1", "--otlp-endpoint", url], &[]).unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidEndpoint { .. }),
                "{url}: {err}"
            );
        }
        // The error names the endpoint, but never a password in it.
        let with_password = "https://user:s3cret@collector:4317";
        let err = resolve(&["--pid", "1", "--otlp-endpoint", with_password], &[]).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert_eq!(
            resolve(
                &["--pid", "1"],
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
                ]
            )
            .unwrap_err(),
            ConfigError::UnsupportedProtocol("http/json".into())
        );
        assert_eq!(
            resolve(&["--pid", "1", "--ring-buffer-bytes", "5000"], &[]).unwrap_err(),
            ConfigError::RingBufferSize(5000)
        );
        // 2 GiB: kernel memory the tracer would lock (4.2 GB of RSS was reported).
        let two_gib = &["--pid", "1", "--ring-buffer-bytes", "2147483648"];
        assert_eq!(
            resolve(two_gib, &[]).unwrap_err(),
            ConfigError::RingBufferSize(1 << 31)
        );
        assert!(resolve(&["--pid", "1", "--ring-buffer-bytes", "268435456"], &[]).is_ok());
        assert_eq!(
            resolve(&["--pid", "1", "--export-queue", "0"], &[]).unwrap_err(),
            ConfigError::ExportQueue(0)
        );
    }

    #[test]
    fn durations_and_conventions() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").is_err());
        let config = resolve(
            &["--pid", "1"],
            &[
                ("OTEL_SEMCONV_STABILITY_OPT_IN", "rpc/dup"),
                ("OTEL_SERVICE_NAME", "checkout"),
            ],
        )
        .unwrap();
        assert_eq!(
            (config.conventions, config.env_service_name.as_deref()),
            (Conventions::Both, Some("checkout"))
        );
    }
}
