//! `tracer -- COMMAND`: start the command stopped before `exec`, so tracing is in place before
//! its first instruction, then let it go.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("no command given")]
    Empty,
    #[error("command argument contains a NUL byte: {0:?}")]
    NulByte(String),
    #[error("starting {command}: {source}")]
    Spawn { command: String, source: io::Error },
}

/// A forked child waiting on a pipe before it `exec`s the command.
pub struct GatedChild {
    pub pid: u32,
    gate: OwnedFd,
}

/// Forks; the child blocks until [`GatedChild::release`], then execs `command` (PATH is
/// searched). Call before any thread is started: the child only reads, execs and exits.
pub fn spawn_gated(command: &[String]) -> Result<GatedChild, LaunchError> {
    let program = command.first().ok_or(LaunchError::Empty)?;
    let argv: Vec<CString> = command
        .iter()
        .map(|arg| CString::new(arg.as_bytes()).map_err(|_| LaunchError::NulByte(arg.clone())))
        .collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|arg| arg.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let spawn_error = |source| LaunchError::Spawn {
        command: program.clone(),
        source,
    };

    let mut fds = [0; 2];
    // SAFETY: fds is a two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(spawn_error(io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two new descriptors we own.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child only calls async-signal-safe functions (close, read, execvp, write,
    // _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(spawn_error(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::close(write_end.as_raw_fd());
            let mut byte = 0u8;
            // EOF without a byte: the tracer gave up (or died); do not run untraced.
            if libc::read(read_end.as_raw_fd(), (&raw mut byte).cast(), 1) != 1 {
                libc::_exit(125);
            }
            libc::execvp(argv_ptrs[0], argv_ptrs.as_ptr());
            let message = b"tracer: cannot execute the command\n";
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(127);
        }
    }
    drop(read_end);
    Ok(GatedChild {
        pid: pid as u32,
        gate: write_end,
    })
}

impl GatedChild {
    /// Lets the child exec the command.
    pub fn release(self) -> io::Result<()> {
        // SAFETY: writing one byte from a valid buffer to our pipe.
        let written = unsafe { libc::write(self.gate.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        if written == 1 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// How a launched command ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// The exit code the way a shell reports it (128 + signal when killed).
    pub code: i32,
    /// CPU time of the command and the children it waited for, in microseconds.
    pub cpu_us: u64,
}

/// Waits for child `pid`; returns its exit code and CPU time.
pub fn wait_exit(pid: u32) -> io::Result<Exit> {
    let mut status = 0;
    // SAFETY: rusage is plain old data, filled by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid out-pointers.
        let ret = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if ret >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    };
    let micros = |time: libc::timeval| time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64;
    Ok(Exit {
        code,
        cpu_us: micros(usage.ru_utime) + micros(usage.ru_stime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_waits_for_release_and_its_exit_code_is_returned() {
        let child = spawn_gated(&["sh".into(), "-c".into(), "exit 7".into()]).unwrap();
        let pid = child.pid;
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Still gated: not exited.
        let mut status = 0;
        // SAFETY: non-blocking waitpid with a valid out-pointer.
        assert_eq!(
            unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) },
            0
        );
        child.release().unwrap();
        assert_eq!(wait_exit(pid).unwrap().code, 7);
    }

    #[test]
    fn a_dropped_gate_never_runs_the_command() {
        let marker = std::env::temp_dir().join(format!("tracer-gate-{}", std::process::id()));
        let child = spawn_gated(&["touch".into(), marker.display().to_string()]).unwrap();
        let pid = child.pid;
        drop(child);
        assert_eq!(wait_exit(pid).unwrap().code, 125);
        assert!(!marker.exists());
    }

    #[test]
    fn missing_programs_exit_127() {
        let child = spawn_gated(&["/nonexistent/program".into()]).unwrap();
        let pid = child.pid;
        child.release().unwrap();
        assert_eq!(wait_exit(pid).unwrap().code, 127);
    }
}
