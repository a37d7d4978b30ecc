//! What a traced process's sockets are, learned from outside the kernel programs: through /proc
//! and by borrowing the socket with `pidfd_getfd(2)` to ask it for its type and addresses.
//! Used for sockets that were open before attach, and for the local address of new connections.

use std::{
    fs, io,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use crate::stream::Endpoint;

/// A process handle that stays valid (and never points at a recycled pid) while we hold it.
pub struct ProcessHandle {
    pub pid: u32,
    /// The thread whose descriptor table we read: the main one, unless it has exited (then it
    /// has no table any more, and another thread, sharing the process's table, stands in).
    fd_thread: u32,
    pidfd: OwnedFd,
}

/// `pidfd_open` flag for a pidfd on a thread other than the main one (Linux 6.9).
const PIDFD_THREAD: libc::c_int = libc::O_EXCL;

impl ProcessHandle {
    pub fn open(pid: u32) -> io::Result<ProcessHandle> {
        let (fd_thread, flags) = if main_thread_exited(pid) {
            let thread = running_thread_besides_main(pid)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
            (thread, PIDFD_THREAD)
        } else {
            (pid, 0)
        };
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, fd_thread as libc::pid_t, flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pidfd_open returned a new descriptor that nobody else owns.
        Ok(ProcessHandle {
            pid,
            fd_thread,
            pidfd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        })
    }

    /// Describes the process's descriptor `fd` if it is a stream socket we can follow.
    pub fn inspect_socket(&self, fd: u32) -> Option<SocketFacts> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.pidfd.as_raw_fd(), fd, 0) };
        if copy < 0 {
            return None;
        }
        // SAFETY: pidfd_getfd returned a new descriptor that nobody else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(copy as RawFd) };
        let socket_type = getsockopt_int(&socket, libc::SO_TYPE)?;
        let domain = getsockopt_int(&socket, libc::SO_DOMAIN)?;
        if socket_type != libc::SOCK_STREAM
            || !matches!(domain, libc::AF_INET | libc::AF_INET6 | libc::AF_UNIX)
        {
            return None;
        }
        let local = socket_name(&socket, libc::getsockname);
        let peer = socket_name(&socket, libc::getpeername);
        let listening = getsockopt_int(&socket, libc::SO_ACCEPTCONN).unwrap_or(0) != 0;
        Some(SocketFacts {
            local,
            peer,
            listening,
        })
    }

    /// Descriptors of the process that are sockets.
    pub fn socket_fds(&self) -> io::Result<Vec<u32>> {
        let mut fds = Vec::new();
        for entry in fs::read_dir(format!("/proc/{}/task/{}/fd", self.pid, self.fd_thread))? {
            let entry = entry?;
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
            else {
                continue;
            };
            let is_socket = fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:["));
            if is_socket {
                fds.push(fd);
            }
        }
        fds.sort_unstable();
        Ok(fds)
    }
}

/// A stream socket of a traced process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketFacts {
    pub local: Option<Endpoint>,
    /// `None` until connected (and for listening sockets).
    pub peer: Option<Endpoint>,
    pub listening: bool,
}

impl SocketFacts {
    pub fn is_connection(&self) -> bool {
        !self.listening && self.peer.is_some()
    }
}

fn getsockopt_int(socket: &OwnedFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len describe a valid int-sized buffer.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    (ret == 0).then_some(value)
}

type NameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn socket_name(socket: &OwnedFd, name_fn: NameFn) -> Option<Endpoint> {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len describe a valid buffer.
    let ret = unsafe { name_fn(socket.as_raw_fd(), (&raw mut storage).cast(), &mut len) };
    if ret != 0 {
        return None;
    }
    // SAFETY: the kernel filled `len` bytes of `storage`.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&raw const storage).cast::<u8>(),
            (len as usize).min(size_of::<libc::sockaddr_storage>()),
        )
    };
    Endpoint::from_sockaddr(bytes)
}

/// The thread-group id of task `pid`, from /proc. `None` if it is gone.
pub fn thread_group_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .and_then(|value| value.trim().parse().ok())
}

/// Alive: some thread of it has not exited. The main thread's state alone does not say: it
/// stays a zombie from the moment it exits (`pthread_exit` in `main`) while the others run on.
pub fn process_alive(pid: u32) -> bool {
    match thread_state(pid, pid) {
        None => false,
        Some(state) if !exited(state) => true,
        Some(_) => running_thread_besides_main(pid).is_some(),
    }
}

/// Whether `pid` is a kernel thread (PF_KTHREAD in the flags of its `stat` file): it has no
/// user memory and no sockets of its own to trace.
pub fn is_kernel_thread(pid: u32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // After the parenthesised name: state, ppid, pgrp, session, tty_nr, tpgid, flags.
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.split(' ').nth(6)?.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

fn main_thread_exited(pid: u32) -> bool {
    thread_state(pid, pid).is_some_and(exited)
}

/// The state letter of thread `thread` of process `pid`, from its `stat` file.
fn thread_state(pid: u32, thread: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/task/{thread}/stat")).ok()?;
    // The state follows the parenthesised command name, which may itself contain ") ".
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

fn exited(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// A thread of `pid` other than the main one that has not exited. Such threads leave `task/`
/// as soon as they exit, so a process that is wholly gone lists only its main thread.
fn running_thread_besides_main(pid: u32) -> Option<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .filter_map(|task| task.file_name().to_str()?.parse::<u32>().ok())
        .find(|&thread| {
            thread != pid && thread_state(pid, thread).is_some_and(|state| !exited(state))
        })
}

#[cfg(test)]
mod tests {
    use std::{
        net::{TcpListener, TcpStream},
        os::fd::AsRawFd,
    };

    use super::*;

    #[test]
    fn inspects_own_tcp_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let me = ProcessHandle::open(std::process::id()).unwrap();
        let facts = me.inspect_socket(client.as_raw_fd() as u32).unwrap();
        assert!(facts.is_connection());
        assert_eq!(
            facts.peer,
            Some(Endpoint::Inet(listener.local_addr().unwrap()))
        );
        let listening = me.inspect_socket(listener.as_raw_fd() as u32).unwrap();
        assert!(listening.listening && !listening.is_connection());
        assert!(
            me.socket_fds()
                .unwrap()
                .contains(&(client.as_raw_fd() as u32))
        );
    }

    #[test]
    fn liveness() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX - 1));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: a zombie counts as gone.
        for _ in 0..100 {
            if !process_alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!process_alive(pid));
        child.wait().unwrap();
    }

    #[test]
    fn a_process_whose_main_thread_exited_lives_on_in_its_other_threads() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        // Connects, then ends its main thread with pthread_exit; a second thread sleeps on.
        let script = format!(
            "import ctypes, socket, threading, time\n\
             connection = socket.create_connection(('127.0.0.1', {}))\n\
             threading.Thread(target=time.sleep, args=(60,)).start()\n\
             ctypes.CDLL(None).pthread_exit(None)",
            address.port()
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .spawn()
            .expect("python3");
        let pid = child.id();
        let (_accepted, client_address) = listener.accept().unwrap();
        for _ in 0..500 {
            if main_thread_exited(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(main_thread_exited(pid), "the main thread did not exit");
        assert!(process_alive(pid));
        // Its descriptors are still there, read through the thread that runs.
        let handle = ProcessHandle::open(pid).unwrap();
        let connections: Vec<SocketFacts> = handle
            .socket_fds()
            .unwrap()
            .into_iter()
            .filter_map(|fd| handle.inspect_socket(fd))
            .collect();
        assert_eq!(connections.len(), 1, "{connections:?}");
        assert_eq!(
            connections[0].local,
            Some(Endpoint::Inet(client_address)),
            "{connections:?}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }
}
