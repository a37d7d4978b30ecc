//! A process for the capture tests to trace. It moves known byte patterns over stream sockets
//! with every read/write syscall variant the kernel side hooks, and reports what it did.
//!
//! Usage: `socket-workload SCENARIO TRANSPORT`. It prints `ready`, waits for a line on stdin
//! (the test attaches meanwhile), runs the scenario, prints one line per stream and `done`.
//!
//! Scenarios:
//! - `streams`: one connection per sender/receiver variant pair, one 6 MiB single write, one of
//!   thousands of small writes; each server replies on the same connection.
//! - `reuse`: two connections one after the other, so the second reuses the first's fd numbers.
//! - `reuse-stepped`: the same, each connection held open after its exchange (its report line,
//!   then `holding`) until a line on stdin.
//! - `preopened`: the connection is opened before `ready`, used after `go`.
//! - `files`: file and pipe writes next to one small TCP exchange.
//! - `http2`: the hand-laid HTTP/2 streams of `integration_tests::http2_stream`, client to
//!   server in pieces of every size (writev, so frame headers straddle syscalls and iovecs),
//!   then server to client.
//! - `exit`: runs a child (`socket-workload exiting-child`, which skips the ready/go exchange)
//!   that sends `http2_stream::unfinished_client_stream` over its own connection and exits
//!   with both ends still open; reports the child's pid and fds.
//! - `leader-exits`: the main thread ends alone (exit(2), not exit_group) and the process lives
//!   on in another thread, which then makes one exchange.
//! - `closed-without-close`: one exchange, then the client end is closed with close_range(2)
//!   and a file is dup2(2)-ed over the server end; files then take both descriptor numbers and
//!   are written to.
//! - `duplicated`: one exchange; then the client end is duplicated with dup(2), dup3(2) and
//!   fcntl(F_DUPFD_CLOEXEC), the original is closed, and each duplicate in turn sends its own
//!   pattern to the server, one report line each.
//! - `exec`: one exchange, then the process execs itself (`socket-workload after-exec`, which
//!   skips the ready/go exchange): exec closes both ends (close-on-exec), but not those of a
//!   second connection made without close-on-exec. The new program writes to files that take
//!   the closed descriptor numbers, reports `after-exec` with the kept descriptors, waits for a
//!   line on stdin (the test waits for the tracer to adopt the kept connection again), then
//!   makes one exchange on the kept connection and one on a new connection.

use std::{
    io::{BufRead, Write},
    net::{TcpListener, TcpStream},
    os::{
        fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd},
        unix::net::{UnixListener, UnixStream},
    },
    thread,
};

use integration_tests::{http2_stream, pattern::pattern};

#[derive(Clone, Copy, Debug)]
enum Sender {
    Write,
    Writev,
    Send,
    Sendto,
    Sendmsg,
    Sendmmsg,
}

#[derive(Clone, Copy, Debug)]
enum Receiver {
    Read,
    Readv,
    Recv,
    Recvfrom,
    Recvmsg,
    Recvmmsg,
}

const SENDERS: [Sender; 6] = [
    Sender::Write,
    Sender::Writev,
    Sender::Send,
    Sender::Sendto,
    Sender::Sendmsg,
    Sender::Sendmmsg,
];
const RECEIVERS: [Receiver; 6] = [
    Receiver::Read,
    Receiver::Readv,
    Receiver::Recv,
    Receiver::Recvfrom,
    Receiver::Recvmsg,
    Receiver::Recvmmsg,
];

/// Sizes of successive sends: single bytes, HTTP/2 frame headers, and pieces above the
/// per-record cap.
const PIECES: [usize; 8] = [1, 9, 100, 1000, 4096, 17000, 3, 60];
/// iovecs per sendmsg: more than the 32 the kernel side must at least walk.
const SENDMSG_IOVECS: usize = 40;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [scenario, transport, ..] = &args[..]
        && scenario == "after-exec"
    {
        after_exec(transport);
    }
    let (scenario, transport) = match &args[..] {
        [scenario, transport] => (scenario.as_str(), transport.as_str()),
        [scenario] => (scenario.as_str(), "tcp4"),
        _ => panic!("usage: socket-workload SCENARIO [tcp4|tcp6|unix]"),
    };
    if scenario == "exiting-child" {
        exiting_child(transport);
    }
    let preopened = (scenario == "preopened").then(|| Pair::connect(transport));
    say_and_wait("ready");
    match scenario {
        "streams" => streams(transport),
        "reuse" => reuse(transport),
        "reuse-stepped" => reuse_stepped(transport),
        "preopened" => {
            let pair = preopened.expect("opened above");
            exchange(&pair, 7, 20_000, Sender::Write, Receiver::Read, "");
        }
        "files" => files(),
        "http2" => http2(transport),
        "exit" => exit(transport),
        "leader-exits" => leader_exits(transport),
        "closed-without-close" => closed_without_close(transport),
        "exec" => exec(transport),
        "duplicated" => duplicated(transport),
        other => panic!("unknown scenario {other}"),
    }
    println!("done");
    std::io::stdout().flush().expect("flush");
}

/// Both ends of one connection, inside this process.
struct Pair {
    client: OwnedFd,
    server: OwnedFd,
}

impl Pair {
    fn connect(transport: &str) -> Pair {
        match transport {
            "tcp4" | "tcp6" => {
                let bind = if transport == "tcp4" {
                    "127.0.0.1:0"
                } else {
                    "[::1]:0"
                };
                let listener = TcpListener::bind(bind).expect("bind");
                let client =
                    TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
                let (server, _) = listener.accept().expect("accept");
                Pair {
                    client: client.into(),
                    server: server.into(),
                }
            }
            "unix" => {
                let path = std::env::temp_dir().join(format!(
                    "tracer-workload-{}-{}.sock",
                    std::process::id(),
                    unique()
                ));
                let listener = UnixListener::bind(&path).expect("bind unix");
                let client = UnixStream::connect(&path).expect("connect unix");
                let (server, _) = listener.accept().expect("accept unix");
                let _ = std::fs::remove_file(&path);
                Pair {
                    client: client.into(),
                    server: server.into(),
                }
            }
            other => panic!("unknown transport {other}"),
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn streams(transport: &str) {
    let mut pairs = Vec::new();
    for (index, (sender, receiver)) in SENDERS.into_iter().zip(RECEIVERS).enumerate() {
        let pair = Pair::connect(transport);
        exchange(&pair, 100 + index as u64, 60_000, sender, receiver, "");
        pairs.push(pair);
    }
    // One write larger than the per-syscall capture budget (512 records of 8 KiB).
    let big = Pair::connect(transport);
    let data = pattern(200, 0, 6 << 20);
    let server = big.server.as_raw_fd();
    let total = data.len();
    let reader = thread::spawn(move || receive(server, total, Receiver::Read));
    let mut writes = Vec::new();
    let mut sent = 0;
    while sent < data.len() {
        let n = send_once(big.client.as_raw_fd(), &data[sent..], Sender::Write);
        writes.push(n.to_string());
        sent += n;
    }
    assert!(
        reader.join().expect("reader") == data,
        "big transfer corrupted"
    );
    reply(&big, 200, Sender::Write, Receiver::Read);
    report(
        &big,
        200,
        data.len(),
        Sender::Write,
        Receiver::Read,
        &format!("writes={}", writes.join(",")),
    );
    pairs.push(big);
    // Thousands of small writes.
    let small = Pair::connect(transport);
    let sizes: Vec<usize> = (0..3000).map(|k| 1 + (k * 7) % 50).collect();
    let total: usize = sizes.iter().sum();
    let data = pattern(300, 0, total);
    let server = small.server.as_raw_fd();
    let reader = thread::spawn(move || receive(server, total, Receiver::Recv));
    let mut sent = 0;
    for size in sizes {
        send_all(
            small.client.as_raw_fd(),
            &data[sent..sent + size],
            Sender::Write,
        );
        sent += size;
    }
    assert!(
        reader.join().expect("reader") == data,
        "small transfers corrupted"
    );
    reply(&small, 300, Sender::Write, Receiver::Read);
    report(&small, 300, total, Sender::Write, Receiver::Recv, "");
    pairs.push(small);
    // Closing all at the end keeps every fd number unique within the run.
    drop(pairs);
}

fn http2(transport: &str) {
    let pair = Pair::connect(transport);
    let request = http2_stream::client_stream().bytes;
    let (request_writes, request_reads) = transfer_checked(
        &pair.client,
        &pair.server,
        request,
        Sender::Writev,
        Receiver::Recvmsg,
    );
    let response = http2_stream::server_stream().bytes;
    let (response_writes, response_reads) = transfer_checked(
        &pair.server,
        &pair.client,
        response,
        Sender::Write,
        Receiver::Read,
    );
    // The kernel side treats small transfers differently, so the test needs their extents.
    let list = |lengths: &[usize]| {
        let text: Vec<String> = lengths.iter().map(usize::to_string).collect();
        text.join(",")
    };
    println!(
        "http2 client_fd={} server_fd={} request_writes={} request_reads={} \
         response_writes={} response_reads={}",
        pair.client.as_raw_fd(),
        pair.server.as_raw_fd(),
        list(&request_writes),
        list(&request_reads),
        list(&response_writes),
        list(&response_reads),
    );
}

fn exit(transport: &str) {
    let output = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["exiting-child", transport])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the child");
    assert!(output.status.success(), "child failed: {output:?}");
    print!("{}", String::from_utf8_lossy(&output.stdout));
}

/// Sends the unfinished stream, its last frame in a syscall of its own, and exits without
/// closing either end: exit closes them, without a `close()` the kernel side would see.
fn exiting_child(transport: &str) -> ! {
    let pair = Pair::connect(transport);
    let stream = http2_stream::unfinished_client_stream().bytes;
    let len = stream.len();
    let server = pair.server.as_raw_fd();
    let reader = thread::spawn(move || receive_logged(server, len, Receiver::Read));
    let split = len - http2_stream::UNFINISHED_LAST_FRAME_LEN;
    for part in [&stream[..split], &stream[split..]] {
        let mut sent = 0;
        while sent < part.len() {
            sent += send_once(pair.client.as_raw_fd(), &part[sent..], Sender::Write);
        }
    }
    let (received, _) = reader.join().expect("reader");
    assert!(received == stream, "transfer corrupted");
    println!(
        "child pid={} client_fd={} server_fd={}",
        std::process::id(),
        pair.client.as_raw_fd(),
        pair.server.as_raw_fd()
    );
    std::io::stdout().flush().expect("flush");
    std::process::exit(0)
}

/// Hands the process over to a new thread and ends the main one. That thread waits until the
/// main thread is gone, makes one exchange and reports it; the process ends with it.
fn leader_exits(transport: &str) -> ! {
    let transport = transport.to_owned();
    let main_thread = std::process::id();
    thread::spawn(move || {
        let stat = format!("/proc/self/task/{main_thread}/stat");
        // A main thread that exited stays a zombie until the whole process has.
        let gone = || {
            std::fs::read_to_string(&stat).map_or(true, |stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
        };
        while !gone() {
            thread::sleep(std::time::Duration::from_millis(1));
        }
        let pair = Pair::connect(&transport);
        exchange(&pair, 11, 20_000, Sender::Write, Receiver::Read, "");
        drop(pair);
        println!("done");
        std::io::stdout().flush().expect("flush");
    });
    // The raw exit(2) ends this thread alone (pthread_exit would unwind through Rust's main,
    // which aborts). SAFETY: nothing of this thread's stack is borrowed by the one just started.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    unreachable!("exit(2) returned")
}

fn closed_without_close(transport: &str) {
    let pair = Pair::connect(transport);
    exchange(&pair, 21, 3000, Sender::Write, Receiver::Read, "");
    let Pair { client, server } = pair;
    let (client, server) = (client.into_raw_fd(), server.into_raw_fd());
    let path = |name: &str| {
        std::env::temp_dir().join(format!("tracer-workload-{}-{name}", std::process::id()))
    };
    let over_server = std::fs::File::create(path("over-server")).expect("create file");
    // SAFETY: plain syscalls on descriptors this function owns.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_close_range, client, client, 0), 0);
        assert_eq!(libc::dup2(over_server.as_raw_fd(), server), server);
    }
    drop(over_server);
    let mut over_client = file_on(&path("over-client"), client);
    over_client
        .write_all(&pattern(22, 0, 5000))
        .expect("write file");
    send_all(server, &pattern(23, 0, 4000), Sender::Write);
    // SAFETY: `server` now holds the dup2-ed file, which nothing else owns.
    unsafe { libc::close(server) };
    for name in ["over-server", "over-client"] {
        let _ = std::fs::remove_file(path(name));
    }
}

fn duplicated(transport: &str) {
    let pair = Pair::connect(transport);
    exchange(&pair, 41, 3000, Sender::Write, Receiver::Read, "");
    let Pair { client, server } = pair;
    // SAFETY: plain syscalls on a descriptor this function owns; each returns a new one, owned
    // below.
    let duplicates = unsafe {
        [
            libc::dup(client.as_raw_fd()),
            libc::dup3(client.as_raw_fd(), 100, libc::O_CLOEXEC),
            libc::fcntl(client.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 200),
        ]
    };
    assert!(duplicates.iter().all(|&fd| fd >= 0), "{duplicates:?}");
    drop(client);
    for (index, fd) in duplicates.into_iter().enumerate() {
        let seed = 42 + index as u64;
        let data = pattern(seed, 0, 2000);
        send_all(fd, &data, Sender::Write);
        assert!(
            receive(server.as_raw_fd(), data.len(), Receiver::Read) == data,
            "duplicate {seed} corrupted in transit"
        );
        println!("duplicate seed={seed} len={} fd={fd}", data.len());
        // SAFETY: `fd` came from the duplication above and nothing else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

fn exec(transport: &str) -> ! {
    let pair = Pair::connect(transport);
    exchange(&pair, 31, 3000, Sender::Write, Receiver::Read, "");
    let kept = Pair::connect(transport);
    std::io::stdout().flush().expect("flush");
    let fds = [&pair.client, &pair.server, &kept.client, &kept.server].map(AsRawFd::as_raw_fd);
    // Rust opens sockets close-on-exec: exec closes the first pair's ends without close().
    for fd in &fds[2..] {
        // SAFETY: plain syscall on a descriptor this function owns.
        assert_eq!(unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) }, 0);
    }
    let mut command = std::process::Command::new(std::env::current_exe().expect("own path"));
    command.args(["after-exec", transport]);
    command.args(fds.map(|fd| fd.to_string()));
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    panic!("exec failed: {error}");
}

/// The program `exec` runs: files take the descriptor numbers exec freed, then exchanges on
/// the kept connection and on a new one show the process is still traced.
fn after_exec(transport: &str) -> ! {
    let fds: Vec<RawFd> = std::env::args()
        .skip(3)
        .map(|fd| fd.parse().expect("descriptor number"))
        .collect();
    let [client, server, kept_client, kept_server] = fds[..] else {
        panic!("four descriptors expected: {fds:?}");
    };
    let freed = [client, server];
    let path = std::env::temp_dir().join(format!("tracer-workload-{}", std::process::id()));
    let mut files = Vec::new();
    for (seed, fd) in [32, 33].into_iter().zip(freed) {
        let mut file = file_on(&path, fd);
        file.write_all(&pattern(seed, 0, 4000)).expect("write file");
        files.push(file);
    }
    let _ = std::fs::remove_file(&path);
    say_and_wait(&format!(
        "after-exec kept_client_fd={kept_client} kept_server_fd={kept_server}"
    ));
    // SAFETY: exec kept these open (no close-on-exec) and nothing else in this program owns
    // them.
    let kept = unsafe {
        Pair {
            client: OwnedFd::from_raw_fd(kept_client),
            server: OwnedFd::from_raw_fd(kept_server),
        }
    };
    exchange(&kept, 35, 3000, Sender::Write, Receiver::Read, "");
    // The files and the kept connection keep their numbers, so the new connection's
    // descriptors differ from all of them.
    let pair = Pair::connect(transport);
    exchange(&pair, 34, 3000, Sender::Write, Receiver::Read, "");
    drop((pair, kept, files));
    println!("done");
    std::io::stdout().flush().expect("flush");
    std::process::exit(0)
}

/// A file created at `path` on descriptor `fd`, which must be free.
fn file_on(path: &std::path::Path, fd: RawFd) -> std::fs::File {
    let file = std::fs::File::create(path).expect("create file");
    // SAFETY: F_DUPFD returns a new descriptor (the lowest free from `fd` on: `fd` itself if
    // it is free), owned below.
    unsafe {
        let copy = libc::fcntl(file.as_raw_fd(), libc::F_DUPFD, fd);
        assert_eq!(copy, fd, "descriptor {fd} is not free");
        std::fs::File::from_raw_fd(copy)
    }
}

/// Sends `data` from one end to the other, read there by another thread, and checks it arrived.
/// Returns how many bytes each send and each receive syscall moved.
fn transfer_checked(
    from: &OwnedFd,
    to: &OwnedFd,
    data: Vec<u8>,
    sender: Sender,
    receiver: Receiver,
) -> (Vec<usize>, Vec<usize>) {
    let to = to.as_raw_fd();
    let len = data.len();
    let reader = thread::spawn(move || receive_logged(to, len, receiver));
    let sends = send_all(from.as_raw_fd(), &data, sender);
    let (received, receives) = reader.join().expect("reader");
    assert!(received == data, "transfer corrupted");
    (sends, receives)
}

fn reuse(transport: &str) {
    for seed in [1, 2] {
        let pair = Pair::connect(transport);
        exchange(&pair, seed, 5000, Sender::Write, Receiver::Read, "");
        drop(pair);
    }
}

fn reuse_stepped(transport: &str) {
    for seed in [1, 2] {
        let pair = Pair::connect(transport);
        exchange(&pair, seed, 5000, Sender::Write, Receiver::Read, "");
        say_and_wait("holding");
    }
}

/// Prints `line` and waits for a line on stdin: the test's go-ahead.
fn say_and_wait(line: &str) {
    println!("{line}");
    std::io::stdout().flush().expect("flush");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .expect("wait for the test");
}

fn files() {
    let path = std::env::temp_dir().join(format!("tracer-workload-{}.bin", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("create file");
    file.write_all(&pattern(900, 0, 10_000))
        .expect("write file");
    drop(file);
    let _ = std::fs::remove_file(&path);
    let mut fds = [0; 2];
    // SAFETY: fds is a two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    send_all(fds[1], &pattern(901, 0, 3000), Sender::Write);
    assert_eq!(receive(fds[0], 3000, Receiver::Read), pattern(901, 0, 3000));
    // SAFETY: closing the pipe this function opened.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let pair = Pair::connect("tcp4");
    exchange(&pair, 5, 3000, Sender::Write, Receiver::Read, "");
}

/// Client sends `len` bytes of `seed`, server receives them, server replies, client receives.
fn exchange(pair: &Pair, seed: u64, len: usize, sender: Sender, receiver: Receiver, extra: &str) {
    let data = pattern(seed, 0, len);
    let server = pair.server.as_raw_fd();
    let reader = thread::spawn(move || receive(server, len, receiver));
    send_all(pair.client.as_raw_fd(), &data, sender);
    assert!(
        reader.join().expect("reader") == data,
        "stream {seed} corrupted in transit"
    );
    reply(pair, seed, sender, receiver);
    report(pair, seed, len, sender, receiver, extra);
}

/// The server answers with 1000 bytes of `seed + 1000`, using the same variants.
fn reply(pair: &Pair, seed: u64, sender: Sender, receiver: Receiver) {
    let data = pattern(seed + 1000, 0, 1000);
    send_all(pair.server.as_raw_fd(), &data, sender);
    assert!(
        receive(pair.client.as_raw_fd(), 1000, receiver) == data,
        "reply {seed} corrupted"
    );
}

fn report(pair: &Pair, seed: u64, len: usize, sender: Sender, receiver: Receiver, extra: &str) {
    println!(
        "stream seed={seed} len={len} reply_seed={} reply_len=1000 client_fd={} server_fd={} \
         sender={sender:?} receiver={receiver:?} {extra}",
        seed + 1000,
        pair.client.as_raw_fd(),
        pair.server.as_raw_fd(),
    );
}

/// Returns how many bytes each send syscall moved.
fn send_all(fd: RawFd, data: &[u8], sender: Sender) -> Vec<usize> {
    let mut sends = Vec::new();
    let mut sent = 0;
    let mut piece = 0;
    while sent < data.len() {
        let size = PIECES[piece % PIECES.len()].min(data.len() - sent);
        piece += 1;
        let end = sent + size;
        while sent < end {
            let moved = send_once(fd, &data[sent..end], sender);
            sends.push(moved);
            sent += moved;
        }
    }
    sends
}

fn iovec(bytes: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: bytes.as_ptr() as *mut _,
        iov_len: bytes.len(),
    }
}

fn iovec_mut(bytes: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    }
}

/// Splits `data` into `parts` nearly equal slices (some may be empty).
fn split(data: &[u8], parts: usize) -> Vec<&[u8]> {
    let step = data.len().div_ceil(parts).max(1);
    let mut slices: Vec<&[u8]> = data.chunks(step).collect();
    slices.resize(parts, &[]);
    slices
}

fn msghdr(iovecs: &mut [libc::iovec]) -> libc::msghdr {
    // SAFETY: msghdr is plain old data; all zeroes is a valid empty header.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = iovecs.as_mut_ptr();
    header.msg_iovlen = iovecs.len();
    header
}

fn check(ret: isize, what: &str) -> usize {
    if ret < 0 {
        panic!("{what}: {}", std::io::Error::last_os_error());
    }
    ret as usize
}

/// One send syscall of the given kind; returns the bytes it moved.
fn send_once(fd: RawFd, data: &[u8], sender: Sender) -> usize {
    // SAFETY: every pointer passed below points into `data` or locals that outlive the call.
    unsafe {
        match sender {
            Sender::Write => check(libc::write(fd, data.as_ptr().cast(), data.len()), "write"),
            Sender::Writev => {
                let iovecs: Vec<_> = split(data, 3).into_iter().map(iovec).collect();
                check(
                    libc::writev(fd, iovecs.as_ptr(), iovecs.len() as i32),
                    "writev",
                )
            }
            Sender::Send => check(libc::send(fd, data.as_ptr().cast(), data.len(), 0), "send"),
            Sender::Sendto => check(
                libc::sendto(fd, data.as_ptr().cast(), data.len(), 0, std::ptr::null(), 0),
                "sendto",
            ),
            Sender::Sendmsg => {
                let mut iovecs: Vec<_> =
                    split(data, SENDMSG_IOVECS).into_iter().map(iovec).collect();
                let header = msghdr(&mut iovecs);
                check(libc::sendmsg(fd, &header, 0), "sendmsg")
            }
            Sender::Sendmmsg => {
                let mut iovecs: Vec<_> = split(data, 6).into_iter().map(iovec).collect();
                let (first, second) = iovecs.split_at_mut(2);
                let (second, third) = second.split_at_mut(2);
                let mut messages: Vec<libc::mmsghdr> = [first, second, third]
                    .into_iter()
                    .map(|part| libc::mmsghdr {
                        msg_hdr: msghdr(part),
                        msg_len: 0,
                    })
                    .collect();
                let count = libc::sendmmsg(fd, messages.as_mut_ptr(), 3, 0);
                check(count as isize, "sendmmsg");
                messages[..count as usize]
                    .iter()
                    .map(|message| message.msg_len as usize)
                    .sum()
            }
        }
    }
}

/// Reads exactly `len` bytes with the given kind of syscall.
fn receive(fd: RawFd, len: usize, receiver: Receiver) -> Vec<u8> {
    receive_logged(fd, len, receiver).0
}

/// Receives `len` bytes; also returns how many bytes each receive syscall moved.
fn receive_logged(fd: RawFd, len: usize, receiver: Receiver) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::with_capacity(len);
    let mut receives = Vec::new();
    let mut buffer = vec![0u8; 4096];
    while out.len() < len {
        let want = (len - out.len()).min(buffer.len());
        let got = receive_once(fd, &mut buffer[..want], receiver);
        assert!(got > 0, "peer closed after {} of {len} bytes", out.len());
        receives.push(got);
        out.extend_from_slice(&buffer[..got]);
    }
    (out, receives)
}

/// One receive syscall of the given kind into `buffer`; returns the bytes it moved.
fn receive_once(fd: RawFd, buffer: &mut [u8], receiver: Receiver) -> usize {
    let len = buffer.len();
    // SAFETY: every pointer passed below points into `buffer` or locals that outlive the call.
    unsafe {
        match receiver {
            Receiver::Read => check(libc::read(fd, buffer.as_mut_ptr().cast(), len), "read"),
            Receiver::Readv => {
                let (first, second) = buffer.split_at_mut(len.min(1000));
                let iovecs = [iovec_mut(first), iovec_mut(second)];
                check(libc::readv(fd, iovecs.as_ptr(), 2), "readv")
            }
            Receiver::Recv => check(libc::recv(fd, buffer.as_mut_ptr().cast(), len, 0), "recv"),
            Receiver::Recvfrom => {
                let mut addr: libc::sockaddr_storage = std::mem::zeroed();
                let mut addr_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                check(
                    libc::recvfrom(
                        fd,
                        buffer.as_mut_ptr().cast(),
                        len,
                        0,
                        (&raw mut addr).cast(),
                        &mut addr_len,
                    ),
                    "recvfrom",
                )
            }
            Receiver::Recvmsg => {
                let (first, rest) = buffer.split_at_mut(len.min(7));
                let (second, third) = rest.split_at_mut(rest.len() / 2);
                let mut iovecs = [iovec_mut(first), iovec_mut(second), iovec_mut(third)];
                let mut header = msghdr(&mut iovecs);
                check(libc::recvmsg(fd, &mut header, 0), "recvmsg")
            }
            Receiver::Recvmmsg => {
                // Two messages of two iovecs each; the buffer's bytes fill them in order.
                let (first_half, second_half) = buffer.split_at_mut(len / 2);
                let (a, b) = first_half.split_at_mut(first_half.len() / 2);
                let (c, d) = second_half.split_at_mut(second_half.len() / 2);
                let mut first = [iovec_mut(a), iovec_mut(b)];
                let mut second = [iovec_mut(c), iovec_mut(d)];
                let mut messages = [
                    libc::mmsghdr {
                        msg_hdr: msghdr(&mut first),
                        msg_len: 0,
                    },
                    libc::mmsghdr {
                        msg_hdr: msghdr(&mut second),
                        msg_len: 0,
                    },
                ];
                let count = libc::recvmmsg(
                    fd,
                    messages.as_mut_ptr(),
                    2,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                );
                check(count as isize, "recvmmsg");
                // Compact: a short first message leaves a hole before the second one's bytes.
                let first_len = messages[0].msg_len as usize;
                if count == 2 {
                    let second_len = messages[1].msg_len as usize;
                    let start = len / 2;
                    buffer.copy_within(start..start + second_len, first_len);
                    first_len + second_len
                } else {
                    first_len
                }
            }
        }
    }
}
