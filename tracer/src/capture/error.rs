//! Why capture could not start or go on, each saying what to do about it.

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("process {0} does not exist")]
    NoSuchProcess(u32),
    #[error("process {0} is this tracer: it does not trace itself")]
    OwnProcess(u32),
    #[error("process {0} is a kernel thread, which makes no gRPC calls: give a user process")]
    KernelThread(u32),
    #[error(
        "insufficient privileges: missing {0} (run as root, or grant CAP_BPF, CAP_PERFMON and \
         CAP_SYS_PTRACE)"
    )]
    MissingCapabilities(String),
    #[error("this kernel cannot run the tracer: {0}")]
    KernelFeature(&'static str),
    #[error(
        "running in a PID namespace of its own (a container's?), whose pids are not the ones \
         the kernel programs see: run the tracer in the host's PID namespace (docker run \
         --pid=host, Kubernetes hostPID: true)"
    )]
    PidNamespace,
    #[error("loading the eBPF programs failed: {0}")]
    Load(String),
    #[error("the kernel verifier rejected program {program}: {detail}")]
    Verifier { program: String, detail: String },
    #[error("attaching tracepoint {tracepoint} failed: {detail}")]
    Attach { tracepoint: String, detail: String },
    #[error("updating kernel map {map}: {detail}")]
    Map { map: &'static str, detail: String },
    #[error("inspecting process {pid}: {source}")]
    Inspect { pid: u32, source: std::io::Error },
    #[error("waiting for kernel records: {0}")]
    Poll(std::io::Error),
}
