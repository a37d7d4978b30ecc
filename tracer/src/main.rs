//! `tracer`: attach to processes (or launch one), report every gRPC call they make.

use std::{
    io::Write as _,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::Context as _;
use clap::Parser as _;
use tracer::{
    capture::{Capture, CaptureConfig, Tracing},
    cli::{Cli, Config, OutputConfig, Target},
    export::{
        CallSink, ConsoleSink, JsonSink, LineDestination, OtlpSink, ResourceOverrides, WallClock,
    },
    grpc::Limits,
    launch, output_file,
    session::Session,
};

fn main() -> ExitCode {
    StderrLogger::install();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tracer: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let config = cli.resolve(&|name| std::env::var(name).ok())?;
    // Fail on a wrong pid before spending a second loading programs.
    if let Target::Pids(pids) = &config.target {
        for &pid in pids {
            tracer::capture::check_target(pid)?;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The first signal stops tracing, flushes (bounded) and reports; a second one, while
        // that goes on, exits at once (128 + the signal, as a shell reports it). Registered
        // first, so that it sees whether the flag was already set.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let capture = Capture::new(&CaptureConfig {
        ring_buffer_bytes: config.ring_buffer_bytes,
        #[cfg(feature = "bench-floors")]
        floor: config.bench_floor,
        hook_time: config.hook_time,
        ..CaptureConfig::default()
    })?;
    let overrides = ResourceOverrides {
        service_name: config.service_name.clone(),
        env_service_name: config.env_service_name.clone(),
        env_attributes: config.env_resource_attributes.clone(),
        command_line: config.export_command_line,
    };
    let mut session = Session::new(capture, Limits::default(), overrides);
    // Created (emptied if it exists) only once tracing can start, and before a command is
    // launched: a path that cannot be written stops everything here.
    let lines_to = match &config.output_file {
        Some(path) => LineDestination::File {
            file: output_file::create(path)
                .with_context(|| format!("cannot create the output file {}", path.display()))?,
            path: path.clone(),
        },
        None => LineDestination::Stdout,
    };
    // Likewise the report's file: a path that cannot be written fails now, not after the session.
    let stats_file = config
        .stats_json
        .as_ref()
        .map(|path| {
            output_file::create(path)
                .with_context(|| format!("cannot create the --stats-json file {}", path.display()))
        })
        .transpose()?;

    // A launched command is forked before any thread exists (the export thread starts later)
    // and held before exec until it is traced.
    let (pids, launched) = match &config.target {
        Target::Pids(pids) => (pids.clone(), None),
        Target::Command(command) => {
            let child = launch::spawn_gated(command)?;
            (vec![child.pid], Some(child))
        }
    };
    for &pid in &pids {
        // A command we launch is held on each library it loads until its TLS is hooked: it
        // would otherwise run ahead of the hooks (a short one, wholly). A process attached to
        // by pid is never stopped.
        let how = Tracing {
            follow_children: config.follow_children,
            hold_new_code: launched.is_some(),
        };
        session.trace(pid, how)?;
    }
    let mut sink = make_sink(&config, lines_to)?;
    let launched_pid = launched.as_ref().map(|child| child.pid);
    let attached_cpu = tracer::session::CpuTime::of_this_process();
    let attach_wall = started.elapsed();
    match launched {
        Some(child) => child.release().context("starting the command")?,
        None => {
            let services: Vec<String> = pids
                .iter()
                .map(|&pid| session.resource(pid).service_name().to_owned())
                .collect();
            eprintln!(
                "tracer: tracing {pids:?} ({}); Ctrl-C to stop",
                services.join(", ")
            );
        }
    }

    let reason = session.run(
        sink.as_mut(),
        &|| stop.load(Ordering::Relaxed),
        config.duration,
    )?;
    let (report, capture) = session.finish(reason, sink.as_mut());
    let finished_cpu = tracer::session::CpuTime::of_this_process();
    let rendered = report.render();
    match config.output {
        // Console output is for people: the summary follows the calls.
        OutputConfig::Console if config.output_file.is_none() => print!("{rendered}"),
        // JSON lines keep stdout machine-readable; OTLP and an output file leave it to the
        // application.
        _ => eprint!("{rendered}"),
    }
    let detaching = Instant::now();
    drop(capture);
    let detach_wall = detaching.elapsed();
    // A launched command has exited by now (that ended the session), unless a signal or
    // --duration did: then it keeps running and we wait for it, as a shell would.
    let exit = launched_pid
        .map(launch::wait_exit)
        .transpose()
        .context("waiting for the command")?;
    if let (Some(mut file), Some(path)) = (stats_file, &config.stats_json) {
        let mut stats = report.stats(attached_cpu, finished_cpu);
        stats.launched_command_cpu_us = exit.map(|exit| exit.cpu_us);
        stats.wall_attach_us = attach_wall.as_micros() as u64;
        stats.wall_detach_us = detach_wall.as_micros() as u64;
        file.write_all(serde_json::to_string(&stats)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(match exit {
        Some(exit) => ExitCode::from(exit.code.clamp(0, 255) as u8),
        None => ExitCode::SUCCESS,
    })
}

fn make_sink(config: &Config, lines_to: LineDestination) -> anyhow::Result<Box<dyn CallSink>> {
    let clock = WallClock::measure();
    Ok(match &config.output {
        OutputConfig::Console => Box::new(ConsoleSink::new(clock, lines_to)),
        OutputConfig::Json => Box::new(JsonSink::new(clock, config.conventions, lines_to)),
        OutputConfig::Otlp(otlp) => {
            Box::new(OtlpSink::start(otlp.clone(), clock, config.conventions)?)
        }
    })
}

/// Warnings and errors to stderr; `TRACER_LOG=debug|info|warn|error` changes the level.
struct StderrLogger;

impl StderrLogger {
    fn install() {
        let level = match std::env::var("TRACER_LOG").as_deref() {
            Ok("debug") => log::LevelFilter::Debug,
            Ok("info") => log::LevelFilter::Info,
            Ok("error") => log::LevelFilter::Error,
            Ok("off") => log::LevelFilter::Off,
            _ => log::LevelFilter::Warn,
        };
        static LOGGER: StderrLogger = StderrLogger;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with("tracer")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "tracer: {}: {}",
                record.level().as_str().to_lowercase(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}
