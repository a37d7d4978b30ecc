//! Runs a `socket-workload` process, traces it with [`tracer::capture::Capture`], and collects
//! every event into per-connection streams the tests can check.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{Receiver, channel},
    thread,
    time::{Duration, Instant},
};

use tracer::{
    capture::{Capture, CaptureConfig, CaptureEvent, Closing, ConnectionInfo, LossReport, Tracing},
    stream::{Chunk, Direction, OwnedChunk, Payload},
};

/// A started workload, stopped before it does anything so the test can attach first.
pub struct Workload {
    pub child: Child,
    stdin: ChildStdin,
    /// Its stdout, line by line, read by a thread so the test can poll the capture meanwhile.
    lines: Receiver<String>,
}

impl Workload {
    /// Starts `program ARGS` and waits for it to print `ready ...`.
    pub fn start(program: &str, args: &[&str]) -> Workload {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn socket-workload");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (sender, lines) = channel();
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line.trim().to_owned()).is_err() {
                    break;
                }
            }
        });
        let ready = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("workload printed nothing");
        assert_eq!(ready, "ready", "workload {args:?} did not start");
        Workload {
            child,
            stdin,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets it run its scenario.
    pub fn go(&mut self) {
        writeln!(self.stdin, "go").expect("signal workload");
    }

    /// Waits for its report lines up to `line`, without tracing it meanwhile.
    pub fn report_until(&mut self, line: &str) -> Vec<String> {
        let mut report = Vec::new();
        loop {
            let next = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("workload ended without `{line}`: {report:?}"));
            if next == line {
                return report;
            }
            report.push(next);
        }
    }

    /// Waits for its report lines, up to `done`, without tracing it meanwhile.
    pub fn report(&mut self) -> Vec<String> {
        self.report_until("done")
    }
}

/// One connection as the capture layer delivered it.
#[derive(Debug, Default)]
pub struct ObservedConnection {
    pub info: Option<ConnectionInfo>,
    /// Chunks per direction (egress, ingress), in delivery order.
    pub chunks: [Vec<OwnedChunk>; 2],
    /// How it ended, if it did.
    pub closed: Option<Closing>,
}

impl ObservedConnection {
    pub fn info(&self) -> &ConnectionInfo {
        self.info.as_ref().expect("connection was announced")
    }

    pub fn chunks(&self, direction: Direction) -> impl Iterator<Item = Chunk<'_>> {
        self.chunks[direction as usize]
            .iter()
            .map(OwnedChunk::as_chunk)
    }

    /// Checks that the chunks tile the stream from offset 0 with no hole or overlap, and returns
    /// its length.
    pub fn contiguous_len(&self, direction: Direction) -> u64 {
        let mut next = 0;
        for chunk in self.chunks(direction) {
            assert_eq!(
                chunk.offset,
                next,
                "conn {:#x} {direction:?}: chunk at {} but stream was at {next}",
                self.info().id,
                chunk.offset
            );
            next += chunk.payload.len();
        }
        next
    }

    /// Asserts that `direction` is exactly `expected`, except where a gap stands in for bytes,
    /// and returns the gaps as `(offset, len)`.
    pub fn assert_stream(&self, direction: Direction, expected: &[u8]) -> Vec<(u64, u64)> {
        let len = self.contiguous_len(direction);
        assert_eq!(
            len,
            expected.len() as u64,
            "conn {:#x} {direction:?}: stream length",
            self.info().id
        );
        let mut gaps = Vec::new();
        for chunk in self.chunks(direction) {
            let start = chunk.offset as usize;
            match chunk.payload {
                Payload::Bytes(bytes) => assert!(
                    bytes[..] == expected[start..start + bytes.len()],
                    "conn {:#x} {direction:?}: bytes at offset {start} differ from what was sent",
                    self.info().id
                ),
                Payload::Gap(len) => gaps.push((chunk.offset, len)),
            }
        }
        gaps
    }
}

/// Everything one traced run produced.
#[derive(Debug, Default)]
pub struct Observed {
    pub connections: BTreeMap<u64, ObservedConnection>,
    pub exited: Vec<u32>,
    pub losses: LossReport,
}

impl Observed {
    /// Connections of `pid`, in the order they were announced.
    pub fn of_pid(&self, pid: u32) -> Vec<&ObservedConnection> {
        let mut connections: Vec<_> = self
            .connections
            .values()
            .filter(|conn| conn.info().pid == pid)
            .collect();
        connections.sort_by_key(|conn| conn.info().timestamp_ns);
        connections
    }

    /// The connection of `pid` on `fd` (the workloads keep them open, so fds are unique).
    pub fn by_fd(&self, pid: u32, fd: u32) -> &ObservedConnection {
        let matching: Vec<_> = self
            .of_pid(pid)
            .into_iter()
            .filter(|conn| conn.info().fd == fd)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "expected one connection on pid {pid} fd {fd}: {matching:#?}"
        );
        matching[0]
    }

    fn apply(&mut self, event: CaptureEvent<'_>) {
        match event {
            CaptureEvent::Opened(info) => {
                let conn = self.connections.entry(info.id).or_default();
                assert!(
                    conn.info.is_none(),
                    "connection {:#x} announced twice",
                    info.id
                );
                conn.info = Some(info);
            }
            CaptureEvent::Data {
                conn_id,
                direction,
                chunk,
            } => {
                let conn = self
                    .connections
                    .get_mut(&conn_id)
                    .expect("data before open");
                conn.chunks[direction as usize].push(OwnedChunk::copy_of(chunk));
            }
            CaptureEvent::Closed { conn_id, how, .. } => {
                if let Some(conn) = self.connections.get_mut(&conn_id) {
                    conn.closed = Some(how);
                }
            }
            CaptureEvent::ProcessExited { pid, .. } => self.exited.push(pid),
            CaptureEvent::ProcessStarted { .. }
            | CaptureEvent::ProcessExec { .. }
            | CaptureEvent::TlsSessionTied { .. } => {}
        }
    }
}

/// Starts capture, then the workload; traces it from before `go` until it has exited.
pub fn trace_workload(program: &str, args: &[&str]) -> (Observed, Vec<String>, u32) {
    trace_workload_with(program, args, false, |_, _, _| {})
}

/// [`trace_workload`], also tracing the processes it starts.
pub fn trace_workload_and_children(program: &str, args: &[&str]) -> (Observed, Vec<String>, u32) {
    trace_workload_with(program, args, true, |_, _, _| {})
}

/// How the tests set capture up: as the tracer does, or, with `TRACER_TEST_BOUNDED_LOOPS` set
/// (`cargo xtask test` runs the capture tests once more so), with the build of the kernel
/// programs for kernels without `bpf_loop`.
pub fn capture_config() -> CaptureConfig {
    CaptureConfig {
        bounded_loops: std::env::var_os("TRACER_TEST_BOUNDED_LOOPS").is_some(),
        ..CaptureConfig::default()
    }
}

/// [`trace_workload`], calling `each_round` as [`collect_until_exit_with`] does: a test can
/// answer the workload there.
pub fn trace_workload_answering(
    program: &str,
    args: &[&str],
    each_round: impl FnMut(&Observed, &[String], &mut Workload),
) -> (Observed, Vec<String>, u32) {
    trace_workload_with(program, args, false, each_round)
}

fn trace_workload_with(
    program: &str,
    args: &[&str],
    follow_children: bool,
    each_round: impl FnMut(&Observed, &[String], &mut Workload),
) -> (Observed, Vec<String>, u32) {
    let mut capture = Capture::new(&capture_config()).expect("load the eBPF programs");
    let mut workload = Workload::start(program, args);
    let pid = workload.pid();
    capture
        .trace_process(
            pid,
            Tracing {
                follow_children,
                hold_new_code: false,
            },
        )
        .expect("trace workload");
    workload.go();
    let (observed, report) = collect_until_exit_with(&mut capture, &mut workload, each_round);
    (observed, report, pid)
}

/// Polls, as the tracer does, until the workload has exited and its exit record came through
/// (so every record it caused has been read). Returns what was captured and the workload's
/// report lines.
pub fn collect_until_exit(
    capture: &mut Capture,
    workload: &mut Workload,
) -> (Observed, Vec<String>) {
    collect_until_exit_with(capture, workload, |_, _, _| {})
}

/// [`collect_until_exit`], calling `each_round` after every poll with what was captured and
/// reported so far: a test can answer the workload there.
pub fn collect_until_exit_with(
    capture: &mut Capture,
    workload: &mut Workload,
    mut each_round: impl FnMut(&Observed, &[String], &mut Workload),
) -> (Observed, Vec<String>) {
    let pid = workload.pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut observed = Observed::default();
    let mut report = Vec::new();
    while !observed.exited.contains(&pid) {
        assert!(
            Instant::now() < deadline,
            "no exit record for workload {pid} within 60 s"
        );
        capture
            .poll(Duration::from_millis(20), &mut |event| {
                observed.apply(event)
            })
            .expect("poll capture");
        report.extend(workload.lines.try_iter());
        each_round(&observed, &report, workload);
    }
    let status = workload.child.wait().expect("wait for workload");
    assert!(status.success(), "workload failed: {status}");
    report.extend(workload.lines.iter());
    assert_eq!(
        report.pop().as_deref(),
        Some("done"),
        "workload report incomplete: {report:?}"
    );
    // Let held-back chunks be declared, then take the loss counters.
    for _ in 0..3 {
        capture
            .poll(Duration::from_millis(10), &mut |event| {
                observed.apply(event)
            })
            .expect("poll");
    }
    observed.losses = capture.losses();
    (observed, report)
}

/// Parses `key=value` words of a report line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|word| {
            word.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
        })
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

pub fn field_u64(line: &str, key: &str) -> u64 {
    field(line, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {line:?} is not a number"))
}
