//! Loading the eBPF object, attaching its programs, and the maps userspace talks to.

use std::{fs, os::fd::OwnedFd, path::Path, time::Duration};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, TracePoint, UProbe,
        tp_btf::BtfTracePointLink,
        trace_point::TracePointLink,
        uprobe::{UProbeLink, UProbeScope},
    },
    sys::{Stats, enable_stats},
};
use tracer_common::{
    DirectionKey, FrameCursor, HeldRecord, LOSS_KIND_COUNT, SocketKey, SocketState, TlsCall,
    TlsSessionKey, TracedProcess,
};

use super::{CaptureConfig, CaptureError};

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));
/// The same programs for kernels without `bpf_loop` (before 5.17), their loops bounded
/// (`tracer-ebpf/src/steps.rs`).
static EBPF_OBJECT_BOUNDED_LOOPS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf-bounded-loops"));

/// Programs on raw tracepoints (by BTF): every hooked syscall returns through `sys_exit`
/// (see `tracer-ebpf/src/syscall.rs`). Unregistering one costs the kernel nothing to wait for.
const RAW_TRACEPOINT_PROGRAMS: &[&str] = &["sys_exit", "sched_process_exec", "sched_process_exit"];

/// Programs on tracepoint events, each its own perf event: the kernel waits out an RCU grace
/// period as it unregisters each (about 37 ms here), so there are as few as can be. `close`
/// is seen at entry (its descriptor may be reused before it returns); a fork's child pid is in
/// the event's record, while the raw tracepoint only passes the `task_struct`.
const EVENT_PROGRAMS: &[(&str, &str)] = &[
    ("sys_enter_close", "syscalls"),
    ("sched_process_fork", "sched"),
];

/// The uprobe program for the entry of each hooked TLS function; all return through
/// [`TLS_RETURN_PROGRAM`].
const TLS_ENTRY_PROGRAMS: [(TlsCall, &str); 4] = [
    (TlsCall::Write, "tls_write_enter"),
    (TlsCall::Read, "tls_read_enter"),
    (TlsCall::WriteEx, "tls_write_ex_enter"),
    (TlsCall::ReadEx, "tls_read_ex_enter"),
];
const TLS_RETURN_PROGRAM: &str = "tls_return";

/// The loaded, attached programs. Dropping this detaches everything.
pub struct KernelPrograms {
    /// Owns the programs.
    ebpf: Ebpf,
    /// Each attachment of a program to a raw tracepoint or a tracepoint event; detached on
    /// drop.
    raw_links: Vec<BtfTracePointLink>,
    event_links: Vec<TracePointLink>,
    /// The uprobes on TLS libraries; detached on drop.
    tls_links: Vec<UProbeLink>,
    /// Whether the TLS programs are loaded: when the first TLS library is found, so that a
    /// process without TLS never pays for verifying them.
    tls_loaded: bool,
    /// Keeps the kernel's BPF run-time statistics on while held (`--hook-time`).
    run_time_stats: Option<OwnedFd>,
    pub events: RingBuf<MapData>,
    pub traced: HashMap<MapData, u32, TracedProcess>,
    /// The kernel's filter in front of `traced` (see `TRACED_FILTER_SLOTS`).
    pub traced_filter: Array<MapData, u8>,
    pub sockets: HashMap<MapData, SocketKey, SocketState>,
    pub tls_sessions: HashMap<MapData, TlsSessionKey, SocketState>,
    pub resync: HashMap<MapData, DirectionKey, FrameCursor>,
    pub deferred: HashMap<MapData, DirectionKey, HeldRecord>,
    pub losses: PerCpuArray<MapData, u64>,
}

impl KernelPrograms {
    pub fn load(config: &CaptureConfig, tracefs: &Path) -> Result<KernelPrograms, CaptureError> {
        let ring_buffer_bytes = config.ring_buffer_bytes;
        let fork_child_pid_offset = field_offset(tracefs, "sched/sched_process_fork", "child_pid")?
            .ok_or_else(|| CaptureError::Load("no child_pid in sched_process_fork".into()))?;
        // Whether the kernel says if an exiting thread is its process's last.
        let exit_has_group_dead =
            u32::from(field_offset(tracefs, "sched/sched_process_exit", "group_dead")?.is_some());
        // Data records wake us only after each CPU wrote its share of a quarter of the ring;
        // otherwise the session drains it on its poll timer.
        let cpus = aya::util::nr_cpus().map_or(1, |cpus| cpus.max(1)) as u64;
        let wakeup_threshold = (u64::from(ring_buffer_bytes / 4) / cpus).max(4096);
        let object = if config.bounded_loops || !super::privileges::has_bpf_loop() {
            EBPF_OBJECT_BOUNDED_LOOPS
        } else {
            EBPF_OBJECT
        };
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries("EVENTS", ring_buffer_bytes)
            .override_global("FORK_CHILD_PID_OFFSET", &fork_child_pid_offset, true)
            .override_global("EXIT_HAS_GROUP_DEAD", &exit_has_group_dead, true)
            .override_global("WAKEUP_THRESHOLD_BYTES", &wakeup_threshold, true);
        #[cfg(feature = "bench-floors")]
        let floor = config.floor.kernel_value();
        #[cfg(feature = "bench-floors")]
        loader.override_global("CAPTURE_FLOOR", &floor, true);
        let mut ebpf = loader
            .load(object)
            .map_err(|err| CaptureError::Load(format!("{err:#}")))?;
        // On before any program is attached, so that every run is counted.
        let run_time_stats = config
            .hook_time
            .then(|| enable_stats(Stats::RunTime))
            .transpose()
            .map_err(|err| {
                CaptureError::Load(format!("turning on BPF run-time statistics: {err}"))
            })?;

        let btf = Btf::from_sys_fs()
            .map_err(|err| CaptureError::Load(format!("reading the kernel's BTF: {err}")))?;
        let raw_links = RAW_TRACEPOINT_PROGRAMS
            .iter()
            .map(|program| attach_raw(&mut ebpf, program, &btf))
            .collect::<Result<_, _>>()?;
        let event_links = EVENT_PROGRAMS
            .iter()
            .map(|(program, category)| attach_event(&mut ebpf, program, category))
            .collect::<Result<_, _>>()?;

        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| CaptureError::Load(format!("map {name} missing")))
        };
        let map_err = |err: aya::maps::MapError| CaptureError::Load(err.to_string());
        let events = RingBuf::try_from(take("EVENTS")?).map_err(map_err)?;
        let traced = HashMap::try_from(take("TRACED")?).map_err(map_err)?;
        let traced_filter = Array::try_from(take("TRACED_FILTER")?).map_err(map_err)?;
        let sockets = HashMap::try_from(take("SOCKETS")?).map_err(map_err)?;
        let tls_sessions = HashMap::try_from(take("TLS_SESSIONS")?).map_err(map_err)?;
        let resync = HashMap::try_from(take("RESYNC")?).map_err(map_err)?;
        let deferred = HashMap::try_from(take("DEFERRED")?).map_err(map_err)?;
        let losses = PerCpuArray::try_from(take("LOSSES")?).map_err(map_err)?;
        debug_assert_eq!(losses.len(), LOSS_KIND_COUNT);
        Ok(KernelPrograms {
            ebpf,
            raw_links,
            event_links,
            tls_links: Vec::new(),
            tls_loaded: false,
            run_time_stats,
            events,
            traced,
            traced_filter,
            sockets,
            tls_sessions,
            resync,
            deferred,
            losses,
        })
    }

    /// Hooks the TLS functions at `functions` (file offsets) of the file at `path`, for every
    /// process (the programs keep to traced ones). All or nothing: a function that cannot be
    /// hooked leaves the file unhooked.
    pub fn attach_tls(&mut self, path: &Path, functions: &[(TlsCall, u64)]) -> Result<(), String> {
        self.load_tls_programs().map_err(|err| err.to_string())?;
        let mut attached = Vec::new();
        let result = functions.iter().try_for_each(|&(call, offset)| {
            let (_, entry) = TLS_ENTRY_PROGRAMS
                .iter()
                .find(|(wanted, _)| *wanted == call)
                .ok_or("no program for that call")?;
            for name in [*entry, TLS_RETURN_PROGRAM] {
                let program = uprobe(&mut self.ebpf, name).map_err(|err| err.to_string())?;
                let link = program
                    .attach(offset, path, UProbeScope::AllProcesses)
                    .and_then(|link| program.take_link(link))
                    .map_err(|err| {
                        format!("attaching a uprobe at {offset:#x}: {}", error_chain(&err))
                    })?;
                attached.push(link);
            }
            Ok::<(), String>(())
        });
        match result {
            Ok(()) => {
                self.tls_links.extend(attached);
                Ok(())
            }
            Err(err) => {
                detach_all(attached);
                Err(err)
            }
        }
    }

    /// Loads (verifies) the TLS programs, if not done yet.
    pub fn load_tls_programs(&mut self) -> Result<(), CaptureError> {
        if self.tls_loaded {
            return Ok(());
        }
        for name in TLS_ENTRY_PROGRAMS
            .iter()
            .map(|(_, name)| *name)
            .chain([TLS_RETURN_PROGRAM])
        {
            uprobe(&mut self.ebpf, name)?
                .load()
                .map_err(|err| CaptureError::Verifier {
                    program: name.to_owned(),
                    detail: err.to_string(),
                })?;
        }
        self.tls_loaded = true;
        Ok(())
    }

    /// How many instructions the verifier processed for each program, by name: what the
    /// kernel's limit of a million per program applies to. `None` for a program the kernel did
    /// not say it for (before 5.16).
    pub fn verified_instructions(&self) -> Vec<(String, Option<u32>)> {
        let mut programs: Vec<(String, Option<u32>)> = self
            .ebpf
            .programs()
            // The TLS programs are loaded only once a TLS library is found.
            .filter(|(_, program)| program.fd().is_ok())
            .map(|(name, program)| {
                let count = program
                    .info()
                    .ok()
                    .and_then(|info| info.verified_instruction_count());
                (name.to_owned(), count)
            })
            .collect();
        programs.sort();
        programs
    }

    /// The time each program has run so far, busiest first; `None` unless these programs
    /// turned on the kernel's BPF run-time statistics (`--hook-time`).
    pub fn hook_time(&self) -> Option<Vec<ProgramTime>> {
        self.run_time_stats.as_ref()?;
        let mut programs: Vec<ProgramTime> = self
            .ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some(ProgramTime {
                    name: name.to_owned(),
                    runs: info.run_count(),
                    time: info.run_time(),
                })
            })
            .filter(|program| program.runs > 0)
            .collect();
        programs.sort_by_key(|program| std::cmp::Reverse(program.time));
        Some(programs)
    }
}

impl Drop for KernelPrograms {
    fn drop(&mut self) {
        detach_all(std::mem::take(&mut self.raw_links));
        detach_all(std::mem::take(&mut self.event_links));
        detach_all(std::mem::take(&mut self.tls_links));
    }
}

/// How often one kernel program ran and for how long in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramTime {
    pub name: String,
    pub runs: u64,
    pub time: Duration,
}

/// Loads `name` and attaches it to the raw tracepoint of the same name.
fn attach_raw(ebpf: &mut Ebpf, name: &str, btf: &Btf) -> Result<BtfTracePointLink, CaptureError> {
    let program: &mut BtfTracePoint = program(ebpf, name)?;
    program
        .load(name, btf)
        .map_err(|err| CaptureError::Verifier {
            program: name.to_owned(),
            detail: err.to_string(),
        })?;
    let failed = |err: aya::programs::ProgramError| CaptureError::Attach {
        tracepoint: name.to_owned(),
        detail: err.to_string(),
    };
    let link = program.attach().map_err(failed)?;
    program.take_link(link).map_err(failed)
}

/// Loads `name` and attaches it to the tracepoint event `category/name`.
fn attach_event(
    ebpf: &mut Ebpf,
    name: &str,
    category: &str,
) -> Result<TracePointLink, CaptureError> {
    let program: &mut TracePoint = program(ebpf, name)?;
    program.load().map_err(|err| CaptureError::Verifier {
        program: name.to_owned(),
        detail: err.to_string(),
    })?;
    let failed = |err: aya::programs::ProgramError| CaptureError::Attach {
        tracepoint: format!("{category}/{name}"),
        detail: err.to_string(),
    };
    let link = program.attach(category, name).map_err(failed)?;
    program.take_link(link).map_err(failed)
}

/// The program `name` of the object, as a `Kind` of program.
fn program<'a, Kind>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Kind, CaptureError>
where
    &'a mut Kind: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| CaptureError::Load(format!("program {name} missing from object")))?
        .try_into()
        .map_err(|err: aya::programs::ProgramError| CaptureError::Load(err.to_string()))
}

/// Detaches every link at once. The kernel waits out an RCU grace period for each tracepoint
/// event or uprobe it unregisters, one after another (about 37 ms for an event, 100 ms for a
/// uprobe here); from parallel threads, 28 events took half the time they took in turn.
fn detach_all<Link: Send>(links: Vec<Link>) {
    std::thread::scope(|scope| {
        for link in links {
            // If no thread can be started, the link is dropped (detached) here, in turn.
            let _ = std::thread::Builder::new().spawn_scoped(scope, move || drop(link));
        }
    });
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, CaptureError> {
    program(ebpf, name)
}

/// Byte offset of `field` in a tracepoint's record, from its format description; `None` if the
/// record has no such field.
fn field_offset(tracefs: &Path, event: &str, field: &str) -> Result<Option<u32>, CaptureError> {
    let path = tracefs.join("events").join(event).join("format");
    let format = fs::read_to_string(&path)
        .map_err(|err| CaptureError::Load(format!("reading {}: {err}", path.display())))?;
    format
        .lines()
        .find(|line| {
            line.split(';').next().is_some_and(|decl| {
                decl.split_whitespace()
                    .last()
                    .is_some_and(|name| name == field)
            })
        })
        .and_then(|line| {
            line.split(';')
                .find_map(|part| part.trim().strip_prefix("offset:"))
        })
        .map(|offset| {
            offset.parse().map_err(|_| {
                CaptureError::Load(format!("bad offset of {field} in {}", path.display()))
            })
        })
        .transpose()
}

/// An error with its causes, as one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
