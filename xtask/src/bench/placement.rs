//! Where the benchmark runs the example server and the load's client: each on a core of its own.
//!
//! Left to the scheduler, the server, the client and the tracer share the two cores in ways that
//! change from run to run (the client and the server on one core for a while, or each on its
//! own), and each arrangement has its own rate: over eight interleaved rounds by hand, the
//! traced-to-untraced ratio of a round moved with a standard deviation of 0.090 unpinned,
//! against 0.017 pinned in the same rounds. The tracer is never pinned: it takes its CPU
//! wherever the scheduler finds some, as it would on a production host, and so does the
//! co-runner that stands in for it.

use std::{ffi::OsStr, process::Command};

#[derive(Clone, Copy)]
pub struct Placement {
    pub server_cpu: usize,
    pub client_cpu: usize,
}

impl Placement {
    /// The first two CPUs this process may run on, if it may run on two and `taskset` (which
    /// pins the programs) is installed.
    pub fn find() -> Option<Placement> {
        let taskset = Command::new("taskset")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        match allowed_cpus()[..] {
            [server_cpu, client_cpu, ..] if taskset => Some(Placement {
                server_cpu,
                client_cpu,
            }),
            _ => None,
        }
    }
}

/// A command running `program`, on `cpu` if there is one. `taskset` execs the program, so the
/// command's pid is the program's.
pub fn command_on(cpu: Option<usize>, program: impl AsRef<OsStr>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &cpu.to_string()]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// What to put before a program in a shell command to run it on `cpu`, if there is one.
pub fn shell_prefix(cpu: Option<usize>) -> String {
    cpu.map_or_else(String::new, |cpu| format!("taskset -c {cpu} "))
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer of the size given.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: the index is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}
