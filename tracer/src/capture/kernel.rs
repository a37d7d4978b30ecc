//! Loading the eBPF object, attaching its programs, and the maps userspace talks to.

use std::{
    fs,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::Path,
    time::Duration,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray, RingBuf},
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

use super::{
    CaptureConfig, CaptureError,
    uprobe_multi::{self, MultiPrograms},
};

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

/// How the TLS programs are loaded.
enum TlsPrograms {
    NotYet,
    /// For `uprobe_multi` links (Linux 6.6): one per program and file.
    MultiLinks(MultiPrograms),
    /// By aya, for uprobes that are perf events: one per function and program.
    PerfEvents,
}

/// The loaded, attached programs. Dropping this detaches everything.
pub struct KernelPrograms {
    /// Owns the programs.
    ebpf: Ebpf,
    /// Each attachment of a program to a raw tracepoint or a tracepoint event; detached on
    /// drop.
    raw_links: Vec<BtfTracePointLink>,
    event_links: Vec<TracePointLink>,
    /// The object loaded, and a descriptor of each map aya made for it, by name: to load the
    /// TLS programs for `uprobe_multi` links (see [`uprobe_multi`]).
    object: &'static [u8],
    map_fds: std::collections::HashMap<String, OwnedFd>,
    /// How the TLS programs are loaded: when the first TLS library is found, so that a process
    /// without TLS never pays for verifying them.
    tls: TlsPrograms,
    /// The uprobes on TLS libraries, one way or the other; detached on drop.
    tls_links: Vec<UProbeLink>,
    tls_multi_links: Vec<OwnedFd>,
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
        let map_fds = ebpf
            .maps()
            .filter_map(|(name, map)| {
                let fd = map_data(map)?.fd().as_fd().try_clone_to_owned().ok()?;
                Some((name.to_owned(), fd))
            })
            .collect();
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
            object,
            map_fds,
            tls: TlsPrograms::NotYet,
            tls_links: Vec::new(),
            tls_multi_links: Vec::new(),
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
        if let TlsPrograms::MultiLinks(programs) = &self.tls {
            match attach_multi(programs, path, functions) {
                Ok(links) => {
                    self.tls_multi_links.extend(links);
                    return Ok(());
                }
                // The first link refused for what it is (before 6.6 the kernel knows no such
                // attach type): the perf-event way, from now on.
                Err(err) if self.tls_multi_links.is_empty() && is_unsupported(&err) => {
                    log::debug!("uprobe_multi links refused ({err}): perf-event uprobes instead");
                    self.tls = TlsPrograms::NotYet;
                    self.load_tls_perf_programs()
                        .map_err(|err| err.to_string())?;
                }
                Err(err) => return Err(format!("attaching uprobes: {err}")),
            }
        }
        let mut attached = Vec::new();
        let result = functions.iter().try_for_each(|&(call, offset)| {
            let entry = entry_program(call).ok_or("no program for that call")?;
            for name in [entry, TLS_RETURN_PROGRAM] {
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

    /// Loads (verifies) the TLS programs, if not done yet: for `uprobe_multi` links if they
    /// load so, else the perf-event way.
    pub fn load_tls_programs(&mut self) -> Result<(), CaptureError> {
        if !matches!(self.tls, TlsPrograms::NotYet) {
            return Ok(());
        }
        match self.load_tls_multi_programs() {
            Ok(programs) => {
                self.tls = TlsPrograms::MultiLinks(programs);
                Ok(())
            }
            Err(err) => {
                log::debug!("TLS programs not loaded for uprobe_multi links: {err}");
                self.load_tls_perf_programs()
            }
        }
    }

    fn load_tls_multi_programs(&self) -> Result<MultiPrograms, String> {
        // The BTF aya loaded for the object, through a program it loaded.
        let btf_id = self
            .ebpf
            .program(RAW_TRACEPOINT_PROGRAMS[0])
            .and_then(|program| program.info().ok())
            .and_then(|info| info.btf_id())
            .ok_or("no BTF loaded with the programs")?;
        let btf = uprobe_multi::btf_fd_by_id(btf_id).map_err(|err| err.to_string())?;
        let names: Vec<&'static str> = tls_programs().collect();
        MultiPrograms::load(
            self.object,
            &names,
            |map| self.map_fds.get(map).map(AsRawFd::as_raw_fd),
            btf.as_fd(),
        )
    }

    fn load_tls_perf_programs(&mut self) -> Result<(), CaptureError> {
        for name in tls_programs() {
            let program = uprobe(&mut self.ebpf, name)?;
            if program.fd().is_ok() {
                continue;
            }
            program.load().map_err(|err| CaptureError::Verifier {
                program: name.to_owned(),
                detail: err.to_string(),
            })?;
        }
        self.tls = TlsPrograms::PerfEvents;
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
            .chain(
                self.multi_programs()
                    .map(|(name, program)| (name.to_owned(), program.verified_instructions)),
            )
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
            .chain(self.multi_programs().map(|(name, program)| ProgramTime {
                name: name.to_owned(),
                runs: program.runs,
                time: program.time,
            }))
            .filter(|program| program.runs > 0)
            .collect();
        programs.sort_by_key(|program| std::cmp::Reverse(program.time));
        Some(programs)
    }

    /// The TLS programs loaded for `uprobe_multi` links, and what the kernel says of each.
    fn multi_programs(&self) -> impl Iterator<Item = (&'static str, uprobe_multi::LoadedProgram)> {
        match &self.tls {
            TlsPrograms::MultiLinks(programs) => programs.loaded(),
            _ => Vec::new(),
        }
        .into_iter()
    }
}

/// Every TLS program, entry ones first.
fn tls_programs() -> impl Iterator<Item = &'static str> {
    TLS_ENTRY_PROGRAMS
        .iter()
        .map(|(_, name)| *name)
        .chain([TLS_RETURN_PROGRAM])
}

/// The entry program of a TLS call.
fn entry_program(call: TlsCall) -> Option<&'static str> {
    TLS_ENTRY_PROGRAMS
        .iter()
        .find(|(wanted, _)| *wanted == call)
        .map(|(_, name)| *name)
}

/// One link per entry program at its function's offset, and one for the return program at
/// all of them. All or nothing.
fn attach_multi(
    programs: &MultiPrograms,
    path: &Path,
    functions: &[(TlsCall, u64)],
) -> std::io::Result<Vec<OwnedFd>> {
    let mut links = Vec::new();
    let result = (|| {
        for &(call, offset) in functions {
            let entry = entry_program(call).ok_or(std::io::ErrorKind::NotFound)?;
            links.push(programs.attach(entry, path, &[offset], false)?);
        }
        let offsets: Vec<u64> = functions.iter().map(|(_, offset)| *offset).collect();
        links.push(programs.attach(TLS_RETURN_PROGRAM, path, &offsets, true)?);
        Ok(())
    })();
    match result {
        Ok(()) => Ok(links),
        Err(err) => {
            detach_all(links);
            Err(err)
        }
    }
}

/// Whether a link was refused as a kind the kernel does not have.
fn is_unsupported(err: &std::io::Error) -> bool {
    /// The kernel's ENOTSUPP, which no libc names.
    const ENOTSUPP: i32 = 524;
    matches!(
        err.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS | ENOTSUPP)
    )
}

/// The map behind one of aya's kinds, for those the object makes.
fn map_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::Array(data)
        | Map::HashMap(data)
        | Map::PerCpuArray(data)
        | Map::PerCpuHashMap(data)
        | Map::RingBuf(data) => Some(data),
        _ => None,
    }
}

impl Drop for KernelPrograms {
    fn drop(&mut self) {
        detach_all(std::mem::take(&mut self.raw_links));
        detach_all(std::mem::take(&mut self.event_links));
        detach_all(std::mem::take(&mut self.tls_links));
        detach_all(std::mem::take(&mut self.tls_multi_links));
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
