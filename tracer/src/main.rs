use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use clap::Parser;
use tracer::capture::{Capture, CaptureConfig, CaptureEvent, Payload};

/// Passive eBPF tracer for gRPC calls.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Process to trace (all its threads); repeat for several.
    #[arg(long = "pid", required = true)]
    pids: Vec<u32>,
    /// Also trace processes the traced ones start.
    #[arg(long)]
    follow_children: bool,
    /// Size of the kernel-to-user ring buffer in bytes (a power of two).
    #[arg(long, default_value_t = tracer::capture::DEFAULT_RING_BUFFER_BYTES)]
    ring_buffer_bytes: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tracer: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let mut capture = Capture::new(&CaptureConfig {
        ring_buffer_bytes: cli.ring_buffer_bytes,
    })?;
    for &pid in &cli.pids {
        capture.trace_process(pid, cli.follow_children)?;
    }
    eprintln!("tracer: attached to {:?}; Ctrl-C to stop", cli.pids);
    while !stop.load(Ordering::Relaxed) {
        capture.poll(Duration::from_millis(200), &mut |event| match event {
            CaptureEvent::Opened(info) => eprintln!(
                "open  conn={:#x} pid={} fd={} {:?} local={:?} peer={:?}",
                info.id, info.pid, info.fd, info.origin, info.local, info.peer
            ),
            CaptureEvent::Data {
                conn_id,
                direction,
                chunk,
            } => match chunk.payload {
                Payload::Bytes(bytes) => eprintln!(
                    "data  conn={conn_id:#x} {direction:?} offset={} len={}",
                    chunk.offset,
                    bytes.len()
                ),
                Payload::Gap(len) => {
                    eprintln!(
                        "gap   conn={conn_id:#x} {direction:?} offset={} len={len}",
                        chunk.offset
                    )
                }
            },
            CaptureEvent::Closed { conn_id, .. } => eprintln!("close conn={conn_id:#x}"),
            other => eprintln!("{other:?}"),
        })?;
    }
    let losses = capture.losses();
    drop(capture);
    eprintln!("tracer: detached; losses: {:?}", losses.nonzero());
    Ok(())
}
