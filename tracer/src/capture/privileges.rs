//! Checks that turn "permission denied" deep inside the BPF loader into an actionable message.

use std::{fs, os::unix::fs::MetadataExt as _, path::Path};

use super::CaptureError;

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process.
fn effective_capabilities() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Loading programs needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN, which implies both on
/// older kernels); reading another process's sockets needs CAP_SYS_PTRACE.
pub fn check_capabilities() -> Result<(), CaptureError> {
    let effective = effective_capabilities();
    let has = |cap: u32| effective & (1 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_SYS_ADMIN) {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    if !has(CAP_SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CaptureError::MissingCapabilities(missing.join(", ")))
    }
}

/// The kernel must describe itself with BTF and offer BPF ring buffers (Linux 5.8+).
pub fn check_kernel_features() -> Result<(), CaptureError> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(CaptureError::KernelFeature(
            "no BTF (/sys/kernel/btf/vmlinux is missing; needs CONFIG_DEBUG_INFO_BTF=y)",
        ));
    }
    if !matches!(
        aya::sys::is_map_supported(aya::maps::MapType::RingBuf),
        Ok(true)
    ) {
        return Err(CaptureError::KernelFeature(
            "no BPF ring buffer support (needs Linux 5.8+)",
        ));
    }
    Ok(())
}

/// Whether the kernel has the `bpf_loop` helper (Linux 5.17), which runs the capture's loops
/// (and `bpf_for_each_map_elem`, 5.13, with it); without it they run as bounded loops.
pub fn has_bpf_loop() -> bool {
    // A probe that could not run says nothing: assume the newer kernel, and loading will tell.
    !matches!(
        aya::sys::is_helper_supported(
            aya::programs::ProgramType::TracePoint,
            aya::sys::BpfHelper::BPF_FUNC_loop,
        ),
        Ok(false)
    )
}

/// The inode number of the initial PID namespace (`PROC_PID_INIT_INO`, fixed since Linux 3.8).
const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// The kernel programs know processes by their pids in the initial PID namespace, the tracer
/// by those in its own: `--pid` and the pid of a launched command. In a container's own
/// namespace the two never meet, and the tracer would trace nothing without a word.
pub fn check_pid_namespace() -> Result<(), CaptureError> {
    match fs::metadata("/proc/self/ns/pid") {
        Ok(namespace) if namespace.ino() != INITIAL_PID_NAMESPACE => {
            Err(CaptureError::PidNamespace)
        }
        // Namespaces not built in, or /proc not telling: nothing to compare.
        _ => Ok(()),
    }
}

/// Where tracepoint descriptions live; mounts tracefs if nobody has.
pub fn tracefs_root() -> Result<&'static Path, CaptureError> {
    const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    for root in CANDIDATES {
        if Path::new(root).join("events/syscalls").is_dir() {
            return Ok(Path::new(root));
        }
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: plain mount(2) with static NUL-terminated strings.
    let ret = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret == 0 && Path::new(CANDIDATES[0]).join("events/syscalls").is_dir() {
        return Ok(Path::new(CANDIDATES[0]));
    }
    Err(CaptureError::KernelFeature(
        "tracefs is not mounted and could not be mounted at /sys/kernel/tracing \
         (needs CONFIG_FTRACE_SYSCALLS)",
    ))
}
