//! The capture layer against the real kernel: a workload process moves known byte patterns with
//! every hooked syscall, and what the eBPF programs delivered must match them byte for byte.
//! Needs root; run through `cargo xtask test`.

use integration_tests::{
    harness::{
        Observed, Workload, capture_config, collect_until_exit, collect_until_exit_with, field,
        field_u64, trace_workload, trace_workload_and_children, trace_workload_answering,
    },
    http2_stream,
    pattern::pattern,
};
use tracer::{
    capture::{Capture, Closing, Origin, Tracing},
    stream::{Direction, Endpoint},
};
use tracer_common::{LossKind, PIECE_HEADER_LEN, RECORD_DATA_CAP, maps::MAX_RECORDS_PER_SYSCALL};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_socket-workload");

/// Checks one reported stream on both of its ends: the client's egress and the server's ingress
/// carry the request, the server's egress and the client's ingress the reply.
fn assert_stream_pair(observed: &Observed, pid: u32, line: &str) -> Vec<(u64, u64)> {
    let request = pattern(field_u64(line, "seed"), 0, field_u64(line, "len") as usize);
    let reply = pattern(
        field_u64(line, "reply_seed"),
        0,
        field_u64(line, "reply_len") as usize,
    );
    let client = observed.by_fd(pid, field_u64(line, "client_fd") as u32);
    let server = observed.by_fd(pid, field_u64(line, "server_fd") as u32);
    assert_eq!(client.info().origin, Origin::Connected, "{line}");
    assert_eq!(server.info().origin, Origin::Accepted, "{line}");
    let mut gaps = client.assert_stream(Direction::Egress, &request);
    gaps.extend(server.assert_stream(Direction::Ingress, &request));
    gaps.extend(server.assert_stream(Direction::Egress, &reply));
    gaps.extend(client.assert_stream(Direction::Ingress, &reply));
    assert!(
        client.closed == Some(Closing::Closed) && server.closed == Some(Closing::Closed),
        "close not seen: {line}"
    );
    gaps
}

/// Where the kernel side must cut a single transfer of `len` bytes that is not HTTP/2: it fills
/// at most `MAX_RECORDS_PER_SYSCALL` records per syscall and reports the rest as one gap.
fn expected_gap(start: u64, len: u64) -> Option<(u64, u64)> {
    let budget = MAX_RECORDS_PER_SYSCALL * (RECORD_DATA_CAP - PIECE_HEADER_LEN) as u64;
    (len > budget).then(|| (start + budget, len - budget))
}

fn streams_are_byte_exact(transport: &str) {
    let (observed, report, pid) = trace_workload(WORKLOAD, &["streams", transport]);
    assert_eq!(report.len(), 8, "one line per stream: {report:#?}");
    for line in &report {
        let gaps = assert_stream_pair(&observed, pid, line);
        if field(line, "sender") == "Write" && line.contains("writes=") {
            // The 6 MiB write: the sender's side is cut exactly where the budget ran out; the
            // receiver read it in small pieces, so its side is complete.
            let mut start = 0;
            let mut expected = Vec::new();
            for write in field(line, "writes").split(',') {
                let len: u64 = write.parse().unwrap();
                expected.extend(expected_gap(start, len));
                start += len;
            }
            assert!(
                !expected.is_empty(),
                "the big write fit in the budget: {line}"
            );
            assert_eq!(gaps, expected, "{line}");
        } else {
            assert!(gaps.is_empty(), "unexpected gaps {gaps:?} in {line}");
        }
    }
    let losses = &observed.losses;
    assert!(
        losses.kernel[LossKind::TransferTooLarge as usize] >= 1,
        "{losses:?}"
    );
    for kind in LossKind::ALL {
        if kind != LossKind::TransferTooLarge {
            assert_eq!(
                losses.kernel[kind as usize],
                0,
                "{}: {losses:?}",
                kind.name()
            );
        }
    }
    assert_eq!((losses.malformed_records, losses.missing_bytes), (0, 0));
}

#[test]
fn tcp_ipv4_streams_are_byte_exact() {
    streams_are_byte_exact("tcp4");
}

#[test]
fn tcp_ipv6_streams_are_byte_exact() {
    streams_are_byte_exact("tcp6");
}

#[test]
fn unix_streams_are_byte_exact() {
    streams_are_byte_exact("unix");
}

#[test]
fn endpoints_are_resolved() {
    // Each round's connection stays open until the tracer has read its opening: a local
    // address is read from the socket then (see the test below for what a reused descriptor
    // gives instead).
    let (observed, report, pid) = trace_workload_answering(WORKLOAD, &["reuse-stepped", "tcp6"], {
        let mut answered = 0;
        move |observed, _, workload| {
            let opened = observed.of_pid(workload.pid()).len();
            if opened >= 2 * (answered + 1) && answered < 2 {
                answered += 1;
                workload.go();
            }
        }
    });
    let report: Vec<_> = report
        .into_iter()
        .filter(|line| line != "holding")
        .collect();
    assert_eq!(report.len(), 2);
    for conn in observed.of_pid(pid) {
        let (Some(Endpoint::Inet(local)), Some(Endpoint::Inet(peer))) =
            (&conn.info().local, &conn.info().peer)
        else {
            panic!("addresses missing: {:?}", conn.info());
        };
        assert!(local.ip().is_loopback() && peer.ip().is_loopback() && local.is_ipv6());
    }
    // The two ends of each connection see each other's addresses (fds are reused between the
    // rounds, so pair them by round: the first two connections are the first round's).
    let connections = observed.of_pid(pid);
    for round in connections.chunks(2) {
        let client = round
            .iter()
            .find(|conn| conn.info().origin == Origin::Connected)
            .unwrap();
        let server = round
            .iter()
            .find(|conn| conn.info().origin == Origin::Accepted)
            .unwrap();
        assert_eq!(client.info().local, server.info().peer);
        assert_eq!(client.info().peer, server.info().local);
    }
}

/// A connection's local address is read from outside the kernel programs, from the socket its
/// descriptor holds when the tracer gets to the connection's opening; a descriptor closed and
/// reused by then holds another connection's socket, whose address must not be lent.
#[test]
fn a_reused_descriptor_never_lends_another_sockets_address() {
    let mut capture = Capture::new(&capture_config()).expect("load the eBPF programs");
    let mut workload = Workload::start(WORKLOAD, &["reuse-stepped", "tcp6"]);
    let pid = workload.pid();
    capture
        .trace_process(pid, Tracing::default())
        .expect("trace workload");
    workload.go();
    // The first round closed, the second's connection open on its descriptors, before the
    // tracer reads a record.
    let mut rounds = workload.report_until("holding");
    workload.go();
    rounds.extend(workload.report_until("holding"));
    let mut let_go = false;
    let (observed, _) = collect_until_exit_with(&mut capture, &mut workload, |_, _, workload| {
        if !std::mem::replace(&mut let_go, true) {
            workload.go();
        }
    });
    let [first, second] = &rounds[..] else {
        panic!("two rounds expected: {rounds:?}");
    };
    assert_eq!(
        field(first, "client_fd"),
        field(second, "client_fd"),
        "{rounds:?}"
    );
    let connections = observed.of_pid(pid);
    assert_eq!(connections.len(), 4, "{connections:#?}");
    let (first, second) = connections.split_at(2);
    // The second round's sockets were still theirs: addresses resolved, each end's the other's.
    for (conn, other) in [(&second[0], &second[1]), (&second[1], &second[0])] {
        assert!(conn.info().local.is_some(), "{:?}", conn.info());
        assert_eq!(conn.info().local, other.info().peer);
    }
    // The first round's descriptors held the second round's sockets: its local addresses are
    // unknown, its peers the ones the syscalls saw.
    for (conn, other) in [(&first[0], &first[1]), (&first[1], &first[0])] {
        assert_eq!(conn.info().local, None, "{:?}", conn.info());
        assert!(conn.info().peer.is_some(), "{:?}", conn.info());
        assert_ne!(conn.info().peer, other.info().peer);
    }
}

#[test]
fn reused_fd_gets_a_new_connection_id() {
    let (observed, report, pid) = trace_workload(WORKLOAD, &["reuse", "unix"]);
    assert_eq!(report.len(), 2, "{report:?}");
    let connections = observed.of_pid(pid);
    assert_eq!(
        connections.len(),
        4,
        "two rounds of client+server: {connections:#?}"
    );
    let (first, second) = (&report[0], &report[1]);
    assert_eq!(
        field(first, "client_fd"),
        field(second, "client_fd"),
        "fd was not reused"
    );
    let fd = field_u64(first, "client_fd") as u32;
    let ids: Vec<u64> = connections
        .iter()
        .filter(|conn| conn.info().fd == fd)
        .map(|conn| conn.info().id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    // Each round's streams belong to their own connection.
    for (round, conn) in connections
        .iter()
        .filter(|conn| conn.info().fd == fd)
        .enumerate()
    {
        let seed = field_u64(&report[round], "seed");
        conn.assert_stream(Direction::Egress, &pattern(seed, 0, 5000));
        assert_eq!(conn.closed, Some(Closing::Closed));
    }
}

#[test]
fn socket_opened_before_attach_is_picked_up() {
    let (observed, report, pid) = trace_workload(WORKLOAD, &["preopened", "tcp4"]);
    let line = &report[0];
    let request = pattern(field_u64(line, "seed"), 0, field_u64(line, "len") as usize);
    let client = observed.by_fd(pid, field_u64(line, "client_fd") as u32);
    let server = observed.by_fd(pid, field_u64(line, "server_fd") as u32);
    for conn in [client, server] {
        assert_eq!(conn.info().origin, Origin::OpenBeforeAttach);
        assert!(
            conn.info().peer.is_some() && conn.info().local.is_some(),
            "{:?}",
            conn.info()
        );
    }
    // Everything moved after attach is captured, from the first byte.
    client.assert_stream(Direction::Egress, &request);
    server.assert_stream(Direction::Ingress, &request);
}

#[test]
fn only_traced_process_sockets_are_captured() {
    let mut capture = Capture::new(&capture_config()).expect("load the eBPF programs");
    let mut traced = Workload::start(WORKLOAD, &["files"]);
    let mut untraced = Workload::start(WORKLOAD, &["streams", "tcp4"]);
    capture
        .trace_process(traced.pid(), Tracing::default())
        .expect("trace");
    untraced.go();
    traced.go();
    let (observed, report) = collect_until_exit(&mut capture, &mut traced);
    assert_eq!(untraced.report().len(), 8);
    assert!(untraced.child.wait().unwrap().success());

    assert!(
        observed
            .connections
            .values()
            .all(|conn| conn.info().pid == traced.pid()),
        "captured a process that was not traced"
    );
    // The file and the pipe are invisible: the only traffic is the one TCP exchange.
    assert_eq!(report.len(), 1);
    assert_eq!(observed.connections.len(), 2);
    assert_stream_pair(&observed, traced.pid(), &report[0]);
    let total: u64 = observed
        .connections
        .values()
        .flat_map(|conn| {
            [
                conn.contiguous_len(Direction::Egress),
                conn.contiguous_len(Direction::Ingress),
            ]
        })
        .sum();
    assert_eq!(total, 2 * (3000 + 1000));
}

#[test]
fn missing_process_is_a_clear_error() {
    let mut capture = Capture::new(&capture_config()).expect("load the eBPF programs");
    let err = capture
        .trace_process(u32::MAX - 1, Tracing::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("process {} does not exist", u32::MAX - 1)
    );
}

/// Gaps as ranges, adjacent ones merged.
fn merged(gaps: &[(u64, u64)]) -> Vec<std::ops::Range<u64>> {
    let mut out: Vec<std::ops::Range<u64>> = Vec::new();
    for &(offset, len) in gaps {
        match out.last_mut() {
            Some(last) if last.end == offset => last.end += len,
            _ => out.push(offset..offset + len),
        }
    }
    out
}

#[test]
fn http2_data_payload_is_skipped_exactly() {
    let (observed, report, pid) = trace_workload(WORKLOAD, &["http2", "tcp4"]);
    let [line] = &report[..] else {
        panic!("one report line expected: {report:?}");
    };
    let client = observed.by_fd(pid, field_u64(line, "client_fd") as u32);
    let server = observed.by_fd(pid, field_u64(line, "server_fd") as u32);
    let (request, response) = (http2_stream::client_stream(), http2_stream::server_stream());
    // Every byte the parser needs arrives, at its offset; only message bodies and padding are
    // left out: all of them, except in small transfers copied whole, up to where the kernel
    // side runs out of parked-stream slots, and none after. The client's writes and the
    // server's reads cut the stream differently; both ends must agree.
    let transfers = |key: &str| -> Vec<u64> {
        field(line, key)
            .split(',')
            .map(|len| len.parse().expect("a syscall length"))
            .collect()
    };
    for (label, observed, direction, crafted, moved) in [
        (
            "client egress",
            client,
            Direction::Egress,
            &request,
            "request_writes",
        ),
        (
            "server ingress",
            server,
            Direction::Ingress,
            &request,
            "request_reads",
        ),
        (
            "server egress",
            server,
            Direction::Egress,
            &response,
            "response_writes",
        ),
        (
            "client ingress",
            client,
            Direction::Ingress,
            &response,
            "response_reads",
        ),
    ] {
        let gaps = merged(&observed.assert_stream(direction, &crafted.bytes));
        assert_eq!(gaps, crafted.expected_gaps(&transfers(moved)), "{label}");
        assert!(!gaps.is_empty(), "{label}: nothing was skipped");
    }
    assert!(observed.losses.is_empty(), "{:?}", observed.losses);
}

#[test]
fn a_process_whose_main_thread_exits_is_traced_until_its_last_thread_exits() {
    let (observed, report, pid) = trace_workload(WORKLOAD, &["leader-exits", "tcp4"]);
    let [line] = &report[..] else {
        panic!("one report line expected: {report:?}");
    };
    // The exchange starts after the main thread has exited: the process is still traced.
    assert_stream_pair(&observed, pid, line);
    assert!(observed.losses.is_empty(), "{:?}", observed.losses);
}

#[test]
fn a_process_that_exits_without_closing_its_sockets_is_cleaned_up_after() {
    let (observed, report, _) = trace_workload_and_children(WORKLOAD, &["exit", "tcp4"]);
    let [line] = &report[..] else {
        panic!("one report line expected: {report:?}");
    };
    let child = field_u64(line, "pid") as u32;
    assert!(
        observed.exited.contains(&child),
        "no exit record for {child}"
    );
    let client = observed.by_fd(child, field_u64(line, "client_fd") as u32);
    let server = observed.by_fd(child, field_u64(line, "server_fd") as u32);
    let sent = http2_stream::unfinished_client_stream().bytes;
    // The kernel side held back the last frame's header: the record must come out anyway,
    // when userspace learns of the exit, and both connections must end.
    client.assert_stream(Direction::Egress, &sent);
    server.assert_stream(Direction::Ingress, &sent);
    for conn in [client, server] {
        assert_eq!(conn.closed, Some(Closing::ProcessExited), "{:?}", conn.info);
    }
    assert!(observed.losses.is_empty(), "{:?}", observed.losses);
}

#[test]
fn sockets_closed_without_close_end_their_connections() {
    let (observed, report, pid) = trace_workload(WORKLOAD, &["closed-without-close", "tcp4"]);
    let [line] = &report[..] else {
        panic!("one report line expected: {report:?}");
    };
    // close_range closed the client end and dup2 the server end: both connections end there
    // (not at exit), and what files written on the same descriptor numbers carry is no part
    // of their streams.
    assert_stream_pair(&observed, pid, line);
    assert!(observed.losses.is_empty(), "{:?}", observed.losses);
}

#[test]
fn a_duplicated_connection_is_followed_on_its_new_descriptor() {
    let (observed, report, pid) = trace_workload(WORKLOAD, &["duplicated", "tcp4"]);
    let [exchange, duplicates @ ..] = &report[..] else {
        panic!("report lines expected: {report:?}");
    };
    assert_eq!(duplicates.len(), 3, "{report:?}");
    // Each duplicate (dup, dup3, fcntl) is a connection of its own, joined mid-flight, that
    // carries exactly what was sent through it, and ends when it is closed.
    let mut server_received = pattern(field_u64(exchange, "seed"), 0, 3000);
    for line in duplicates {
        let sent = pattern(field_u64(line, "seed"), 0, field_u64(line, "len") as usize);
        let duplicate = observed.by_fd(pid, field_u64(line, "fd") as u32);
        assert_eq!(duplicate.info().origin, Origin::Duplicated, "{line}");
        assert_eq!(
            duplicate.assert_stream(Direction::Egress, &sent),
            [],
            "{line}"
        );
        assert_eq!(duplicate.closed, Some(Closing::Closed), "{line}");
        server_received.extend(sent);
    }
    // The original keeps its own traffic; the server's end saw all of it.
    let client = observed.by_fd(pid, field_u64(exchange, "client_fd") as u32);
    let server = observed.by_fd(pid, field_u64(exchange, "server_fd") as u32);
    let reply = pattern(field_u64(exchange, "reply_seed"), 0, 1000);
    client.assert_stream(
        Direction::Egress,
        &pattern(field_u64(exchange, "seed"), 0, 3000),
    );
    client.assert_stream(Direction::Ingress, &reply);
    server.assert_stream(Direction::Ingress, &server_received);
    server.assert_stream(Direction::Egress, &reply);
    assert_eq!(client.closed, Some(Closing::Closed));
    assert!(observed.losses.is_empty(), "{:?}", observed.losses);
}

#[test]
fn exec_ends_the_connections_it_closes_and_the_process_stays_traced() {
    // The new program waits until the connection it kept across exec has been adopted again.
    let mut answered = false;
    let (observed, report, pid) =
        trace_workload_answering(WORKLOAD, &["exec", "tcp4"], |observed, report, workload| {
            let Some(line) = report.iter().find(|line| line.starts_with("after-exec")) else {
                return;
            };
            let kept = [
                field_u64(line, "kept_client_fd"),
                field_u64(line, "kept_server_fd"),
            ];
            let adopted = observed
                .of_pid(workload.pid())
                .iter()
                .filter(|conn| {
                    conn.info().origin == Origin::OpenBeforeAttach
                        && kept.contains(&u64::from(conn.info().fd))
                })
                .count();
            if adopted == 2 && !answered {
                answered = true;
                workload.go();
            }
        });
    let [before, after_exec, kept, after] = &report[..] else {
        panic!("four report lines expected: {report:?}");
    };
    // exec closed both close-on-exec ends: files written on their numbers are no part of the
    // streams. The new program's own connection is traced like any other.
    assert_stream_pair(&observed, pid, before);
    assert_stream_pair(&observed, pid, after);
    // The connection kept across exec ended there and was adopted again, joined mid-flight:
    // what it carries after exec is captured whole.
    let request = pattern(field_u64(kept, "seed"), 0, field_u64(kept, "len") as usize);
    let reply = pattern(field_u64(kept, "reply_seed"), 0, 1000);
    for (key, sent, received) in [
        ("kept_client_fd", &request, &reply),
        ("kept_server_fd", &reply, &request),
    ] {
        let fd = field_u64(after_exec, key) as u32;
        let on_fd: Vec<_> = observed
            .of_pid(pid)
            .into_iter()
            .filter(|conn| conn.info().fd == fd)
            .collect();
        let [before_exec, adopted] = on_fd[..] else {
            panic!("two connections expected on fd {fd}: {on_fd:#?}");
        };
        assert_eq!(before_exec.closed, Some(Closing::Closed), "{key}");
        assert_eq!(adopted.info().origin, Origin::OpenBeforeAttach, "{key}");
        adopted.assert_stream(Direction::Egress, sent);
        adopted.assert_stream(Direction::Ingress, received);
        assert_eq!(adopted.closed, Some(Closing::Closed), "{key}");
    }
    assert!(observed.losses.is_empty(), "{:?}", observed.losses);
}

/// Every program's verifier work stays within its budget: a change that makes a program much
/// harder to verify fails here, long before it nears the kernel's limit of a million processed
/// instructions per program (or fails to load on an older verifier).
#[test]
fn every_program_stays_within_its_verifier_budget() {
    let config = capture_config();
    let mut capture = Capture::new(&config).expect("load the programs");
    capture.load_tls_programs().expect("load the TLS programs");
    let budgets = if config.bounded_loops {
        BOUNDED_LOOPS_VERIFIER_BUDGETS
    } else {
        VERIFIER_BUDGETS
    };
    let counts = capture.verified_instructions();
    assert!(
        counts.iter().any(|(program, _)| program == "tls_return"),
        "{counts:?}"
    );
    for (program, count) in &counts {
        eprintln!("{program:<24} {count:>8?} instructions verified");
    }
    for (program, count) in counts {
        let Some(count) = count else {
            eprintln!("skipped: this kernel does not report verified instructions (before 5.16)");
            return;
        };
        let budget = budgets
            .iter()
            .find(|(name, _)| *name == program)
            .unwrap_or_else(|| panic!("{program} has no verifier budget: add one"))
            .1;
        assert!(
            count <= budget,
            "{program}: {count} instructions verified, over its budget of {budget}"
        );
    }
}

/// Instructions the verifier may process per program: about twice what each took on 6.18 when
/// the budget was set (the two capture programs, `sys_exit` and `tls_return`: 28,089 and
/// 12,594), far under the kernel's limit of a million. Verification was once most of what
/// attaching costs: at 429,000 it took 0.8 s of CPU, at 97,000 0.17 s.
const VERIFIER_BUDGETS: &[(&str, u32)] = &[
    ("sched_process_exec", 2_000),
    ("sched_process_exit", 1_000),
    ("sched_process_fork", 1_000),
    ("sys_enter_close", 1_000),
    ("sys_exit", 60_000),
    ("tls_read_enter", 1_000),
    ("tls_read_ex_enter", 1_000),
    ("tls_return", 26_000),
    ("tls_write_enter", 1_000),
    ("tls_write_ex_enter", 1_000),
];

/// The same for the build for kernels without `bpf_loop`, whose loops the verifier walks
/// iteration by iteration around each step's call (on 6.18 when set: `sys_exit` 310,942,
/// `tls_return` 285,465, `sched_process_exec` 11,642). 5.10, which loads this build, does not
/// say what it processed; `cargo xtask vm-test` shows that it loads.
const BOUNDED_LOOPS_VERIFIER_BUDGETS: &[(&str, u32)] = &[
    ("sched_process_exec", 24_000),
    ("sched_process_exit", 1_000),
    ("sched_process_fork", 1_000),
    ("sys_enter_close", 1_000),
    ("sys_exit", 620_000),
    ("tls_read_enter", 1_000),
    ("tls_read_ex_enter", 1_000),
    ("tls_return", 570_000),
    ("tls_write_enter", 1_000),
    ("tls_write_ex_enter", 1_000),
];
