//! The loads the bench runs, and in which modes each is measured.

use serde_json::Value;

pub(super) struct Load {
    pub(super) name: &'static str,
    /// bench-client arguments; for an h2load load, h2load's. The duration is added per run.
    pub(super) args: Vec<String>,
    /// How long each run lasts.
    pub(super) seconds: u32,
    /// Rounds, as a multiple of the run's base count (one for --quick, two for the full run).
    pub(super) rounds: u32,
    /// The client and the server each on a core of their own (see [`super::placement`]), if the
    /// machine allows; otherwise both left to the scheduler.
    pub(super) pinned: bool,
    /// Only measured traced (the memory test).
    pub(super) traced_only: bool,
    /// Also measured with the tracer attached to another (idle) process (what the hooks alone
    /// cost every process on the machine, before anything is captured), and with the tracer
    /// paused while the client runs (the in-kernel capture alone).
    pub(super) hooks_floor: bool,
    /// Also measured with the tracer capturing bare records: one per data move, with none of
    /// its bytes, and nothing decoded. That is the least any capture that hears of every
    /// syscall costs; where it already misses a target, no capture through syscall hooks meets
    /// it. Such a load runs twice the rounds, each half as long, against noise.
    pub(super) capture_floor: bool,
    /// Also measured untraced next to an unrelated program that uses as much CPU as the tracer
    /// did on this load (a [`CoRunner`]): what that much CPU costs the load however it is
    /// spent. Where the two cost the same, the tracer loses nothing to how it works (its
    /// wakeups, its place in the scheduler), only to how much it works.
    pub(super) co_runner_floor: bool,
    /// Driven by nghttp2's h2load instead of the tonic bench-client.
    pub(super) h2load: bool,
    /// Driven by a Python grpcio client over TLS (`tests/python/bench_client.py`) against the
    /// Python example server, instead of the tonic client and server: the TLS capture's cost.
    pub(super) grpcio_tls: bool,
    /// Traced runs export OTLP/gRPC to a real receiver on this machine (`otlp-receiver`, which
    /// decodes every request) instead of writing JSON to /dev/null.
    pub(super) otlp: bool,
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
            grpcio_tls: false,
            otlp: false,
        }
    }

    /// grpcio over TLS, `--concurrency` calls at a time on one channel.
    fn grpcio_tls(name: &'static str, concurrency: &str, seconds: u32) -> Load {
        Load {
            grpcio_tls: true,
            // The Python server shares the machine: neither is given a core.
            pinned: false,
            ..Load::tonic(name, &["--concurrency", concurrency], seconds)
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
    pub(super) fn args_for(&self, seconds: u32) -> Vec<String> {
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
    /// grpcio over TLS: what the uprobes on its BoringSSL cost.
    pub const GRPCIO_TLS: &str = "grpcio unary 100 B over TLS, 1 connection";
}

/// The name of a load in a summary.
pub(super) fn name_of(load: &Value) -> &str {
    load["load"].as_str().unwrap_or("?")
}

pub(super) fn loads(quick: bool) -> Vec<Load> {
    let seconds = if quick { 3 } else { 6 };
    // The quick run has the first six loads, without the floors.
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
        Load::grpcio_tls(load_name::GRPCIO_TLS, "8", seconds),
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
