//! What a traced process's own memory says of the header-table entries its connections
//! inserted before the tracer attached.
//!
//! An endpoint keeps its HPACK tables in memory: the encoder's (what it sends) and the
//! decoder's (what its peer sends). When a call refers to an entry from before attach, a copy
//! of the process's memory is taken ([`snapshot`]; bounded in bytes, and in time to 200 ms plus
//! 2% of the time since the first copy), the tables in it found by what their runtime's layout
//! looks like ([`go_hpack`] for grpc-go; [`core_hpack`], [`core_encoder`], [`core_paths`] and
//! [`core_statuses`] for gRPC C-core; [`netty_hpack`] for grpc-java), and the entry read from the table that lines up with what
//! the tracer saw inserted since ([`alignment`]). Only allowlisted values are kept from the copy, which is dropped at once.
//! A copy speaks only for the connections open when it was done ([`open_connections`]).
//!
//! ```text
//! /proc/PID/mem --> snapshot --> go_hpack, core_hpack, netty_hpack: tables --> alignment --+
//!                            \-> core_encoder, core_paths, core_statuses: C-core's indexes -+--> grpc::Recall
//! ```

mod alignment;
mod core_encoder;
mod core_hpack;
mod core_paths;
mod core_statuses;
mod go_hpack;
mod netty_hpack;
mod open_connections;
mod snapshot;

use std::time::{Duration, Instant};

use foldhash::{HashMap, HashSet};

use crate::{
    grpc::{ConnectionFacts, Recall},
    hpack::{SeenEntry, Text, value_digest},
    stream::Endpoint,
};
use alignment::Table;
use open_connections::OpenConnections;

/// Least time between two copies of one process's memory: the process must have moved on.
const RESCAN_AFTER: Duration = Duration::from_millis(20);
/// Copies taken since the tracer saw one state of a table, at most, and the least time between
/// them.
const FRESH_COPIES: u32 = 2;
const RETRY_MISS_AFTER: Duration = Duration::from_millis(50);
/// Time spent copying a process's memory, at most: this much, plus a fiftieth (2%) of the
/// time since its first copy. A copy holds up the reading of capture records.
const SCAN_ALLOWANCE: Duration = Duration::from_millis(200);
const SCAN_SHARE: u32 = 50;
/// Copies after which a process whose memory held no table is not read again.
const MAX_FRUITLESS_SCANS: u32 = 2;
/// Unanswered questions, and states copies were taken for, remembered at most.
const MAX_MISSES: usize = 1024;

/// What was read of one process's memory, and what it cost.
pub struct ProcessMemory {
    pid: u32,
    /// What the last copy held.
    found: Found,
    /// The connections open when it was done (`None` if it failed): the only ones it speaks
    /// for.
    open_at_copy: Option<OpenConnections>,
    /// Connections that asked after they had closed, too late for any copy to speak for them.
    closed_before_copy: HashSet<u64>,
    first_scan: Option<Instant>,
    /// When the last copy was done.
    last_scan: Option<Instant>,
    /// Time spent copying and searching.
    spent: Duration,
    fruitless_scans: u32,
    /// Which runtimes' tables it may hold, once looked at.
    runtimes: Option<Runtimes>,
    /// Questions the copy taken at the instant kept had no answer for: asked again only of
    /// another copy.
    misses: HashMap<(SeenState, i64), Instant>,
    /// The copies taken since the tracer saw each state of a table.
    copies_since: HashMap<SeenState, FreshCopies>,
    pub stats: MemoryStats,
}

/// What the tracer had seen of one direction's table when it asked: the connection, how many
/// entries it saw inserted since attach, and what tells the newest apart. A copy taken after
/// the tracer saw that holds every entry from before attach that any later copy would, but for
/// the process being behind (it decodes what it reads after the read the tracer saw): the
/// questions of one state share their copies, whichever entry each asks about.
type SeenState = (u64, usize, Option<u64>);

/// The copies taken since the tracer saw a state: a first as soon as the budget allows, and
/// one more a little later, in case the process was behind.
struct FreshCopies {
    taken: u32,
    last: Instant,
}

/// The cost of reading one process's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub scans: u64,
    pub bytes: u64,
    pub micros: u64,
    /// Reads that failed (the process exited, or ptrace access was refused).
    pub failures: u64,
    /// Connections whose entries from before attach were asked for only after they had
    /// closed: no copy speaks for them.
    pub closed_before_copy: u64,
}

impl MemoryStats {
    pub fn add(&mut self, other: &MemoryStats) {
        self.scans += other.scans;
        self.bytes += other.bytes;
        self.micros += other.micros;
        self.failures += other.failures;
        self.closed_before_copy += other.closed_before_copy;
    }
}

impl ProcessMemory {
    pub fn new(pid: u32) -> ProcessMemory {
        ProcessMemory {
            pid,
            found: Found::default(),
            open_at_copy: None,
            closed_before_copy: HashSet::default(),
            first_scan: None,
            last_scan: None,
            spent: Duration::ZERO,
            fruitless_scans: 0,
            runtimes: None,
            misses: HashMap::default(),
            copies_since: HashMap::default(),
            stats: MemoryStats::default(),
        }
    }

    /// Whether a copy may be taken now: for a question never asked before (`new_question`), as
    /// soon as the budget allows, since what it asks about may be newer than the last copy (a
    /// connection that inserted its first entry since attach just after it: its process may
    /// close it moments later); for one asked again, once the process has moved on.
    fn may_scan(&mut self, new_question: bool) -> bool {
        // Only processes whose runtime's tables can be found are read at all.
        if !self.readable() {
            return false;
        }
        let (Some(first), Some(last)) = (self.first_scan, self.last_scan) else {
            return true;
        };
        self.fruitless_scans < MAX_FRUITLESS_SCANS
            && (new_question || last.elapsed() >= RESCAN_AFTER)
            && self.spent <= SCAN_ALLOWANCE + first.elapsed() / SCAN_SHARE
    }

    fn scan(&mut self) {
        let started = Instant::now();
        self.first_scan.get_or_insert(started);
        match snapshot::Snapshot::take(self.pid) {
            Ok(snapshot) => {
                self.stats.scans += 1;
                self.stats.bytes += snapshot.bytes() as u64;
                self.found = Found::in_copy(&snapshot, self.runtimes.unwrap_or_default());
                // Read after the copy: a connection open now was open all through it.
                self.open_at_copy = OpenConnections::of(self.pid);
            }
            // Exited (or exiting): nothing more to read.
            Err(error)
                if error.kind() == std::io::ErrorKind::NotFound
                    || error.raw_os_error() == Some(libc::ESRCH) =>
            {
                self.fruitless_scans = MAX_FRUITLESS_SCANS;
                self.found = Found::default();
                self.open_at_copy = None;
                return;
            }
            Err(error) => {
                log::debug!("pid {}: memory not read: {error}", self.pid);
                self.stats.failures += 1;
                self.found = Found::default();
                self.open_at_copy = None;
            }
        }
        self.fruitless_scans = if self.found.is_empty() {
            self.fruitless_scans + 1
        } else {
            0
        };
        self.spent += started.elapsed();
        self.stats.micros += started.elapsed().as_micros() as u64;
        // Counted from its end: the questions that follow at once get this copy's answers.
        self.last_scan = Some(Instant::now());
    }
}

/// What a copy of a process's memory holds of its connections' header tables.
#[derive(Default)]
struct Found {
    tables: Vec<Table>,
    /// C-core encoders' records of the paths they inserted, by the index each got: every run
    /// of them, and those tied to an encoder's size accounting.
    paths: Vec<(u64, core_paths::Paths)>,
    encoder_paths: Vec<core_paths::EncoderPaths>,
    /// C-core encoders' size accounting, with the indices of their `grpc-status` entries.
    statuses: Vec<core_statuses::EncoderStatuses>,
}

impl Found {
    fn in_copy(snapshot: &snapshot::Snapshot, runtimes: Runtimes) -> Found {
        let mut found = Found::default();
        if runtimes.go {
            found.tables.extend(go_hpack::tables(snapshot));
        }
        if runtimes.jvm {
            found.tables.extend(netty_hpack::tables(snapshot));
        }
        if runtimes.core {
            found.tables.extend(core_hpack::tables(snapshot));
            let encoders = core_encoder::encoder_tables(snapshot);
            found.paths = core_paths::path_indexes(snapshot);
            found.encoder_paths = core_paths::encoder_paths(snapshot, &encoders, &found.paths);
            found.statuses = core_statuses::encoder_statuses(snapshot, &encoders);
        }
        found
    }

    fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.paths.is_empty() && self.statuses.is_empty()
    }

    /// What it says of the entry: from a table that lines up with what was seen, or from a
    /// C-core encoder's indices.
    fn answer(&self, seen: &[SeenEntry<'_>], insertion: i64) -> Option<(Text, Option<Text>)> {
        if let Some(entry) = alignment::entry_before_watching(&self.tables, seen, insertion) {
            return Some((entry.name.clone(), entry.value.clone()));
        }
        if let Some(path) =
            core_paths::path_before_watching(&self.paths, &self.encoder_paths, seen, insertion)
        {
            return Some((Text::from(":path"), Some(path)));
        }
        core_statuses::status_before_watching(&self.statuses, seen, insertion)
            .map(|code| (Text::from("grpc-status"), Some(code)))
    }
}

/// The runtimes whose header tables a process may hold.
#[derive(Debug, Clone, Copy, Default)]
struct Runtimes {
    go: bool,
    /// gRPC C-core (grpcio's `cygrpc`, grpc++'s `libgrpc`), mapped from a file.
    core: bool,
    /// A Java virtual machine (HotSpot's `libjvm.so`), whose gRPC may be grpc-java on Netty.
    jvm: bool,
}

impl Runtimes {
    fn of(pid: u32) -> Runtimes {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let mapped = |wanted: fn(&str) -> bool| {
            maps.lines()
                .any(|line| wanted(line.rsplit('/').next().unwrap_or("")))
        };
        Runtimes {
            go: is_go_program(pid),
            core: mapped(|file| file.starts_with("cygrpc.") || file.starts_with("libgrpc.so")),
            jvm: mapped(|file| file == "libjvm.so"),
        }
    }
}

/// A field name as HTTP/2 sends it: lowercase token characters, pseudo-headers led by `:`
/// (RFC 9113 §8.2.1, §8.3).
fn is_field_name(name: &[u8]) -> bool {
    let rest = name.strip_prefix(b":").unwrap_or(name);
    !rest.is_empty()
        && rest.iter().all(|&byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"-_.".contains(&byte)
        })
}

/// Whether `pid` runs a Go program: Go's linker writes a `.go.buildinfo` section (Go 1.13+),
/// which stripping keeps.
fn is_go_program(pid: u32) -> bool {
    use object::{Object, ReadCache};
    let Ok(executable) = std::fs::File::open(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let cache = ReadCache::new(executable);
    object::File::parse(&cache).is_ok_and(|file| file.section_by_name(".go.buildinfo").is_some())
}

impl Recall for ProcessMemory {
    fn entry(
        &mut self,
        connection: &ConnectionFacts,
        seen: &[SeenEntry<'_>],
        insertion: i64,
    ) -> Option<(Text, Option<Text>)> {
        // Nothing seen inserted since attach: nothing to line a table up against.
        if seen.is_empty() || !self.may_speak_for(connection) {
            return None;
        }
        let state = (
            connection.conn_id,
            seen.len(),
            seen.first().map(fingerprint),
        );
        // The last copy, unless it was asked this already: it would say the same.
        if self.misses.get(&(state, insertion)) != self.last_scan.as_ref()
            && let Some(found) = self.answer_for(connection, seen, insertion)
        {
            return Some(found);
        }
        let (taken, last) = self
            .copies_since
            .get(&state)
            .map_or((0, None), |copies| (copies.taken, Some(copies.last)));
        let may_copy =
            taken < FRESH_COPIES && last.is_none_or(|last| last.elapsed() >= RETRY_MISS_AFTER);
        if may_copy && self.may_scan(taken == 0) {
            self.scan();
            if self.copies_since.len() >= MAX_MISSES {
                self.copies_since.clear();
            }
            self.copies_since.insert(
                state,
                FreshCopies {
                    taken: taken + 1,
                    last: Instant::now(),
                },
            );
            if let Some(found) = self.answer_for(connection, seen, insertion) {
                return Some(found);
            }
            // The tracer saw the connection before this copy: not open after it, it closed.
            if self
                .open_at_copy
                .as_ref()
                .is_some_and(|open| closed(open, connection))
            {
                self.closed_before_copy.insert(connection.conn_id);
                self.stats.closed_before_copy += 1;
                return None;
            }
        }
        let copy = self.last_scan?;
        if self.misses.len() >= MAX_MISSES {
            self.misses.clear();
        }
        self.misses.insert((state, insertion), copy);
        None
    }

    fn can_answer(&mut self, connection: &ConnectionFacts) -> bool {
        self.readable() && self.may_speak_for(connection)
    }
}

impl ProcessMemory {
    /// Whether the process runs a runtime whose tables can be found, and may still be read.
    fn readable(&mut self) -> bool {
        let pid = self.pid;
        let runtimes = *self.runtimes.get_or_insert_with(|| Runtimes::of(pid));
        (runtimes.go || runtimes.core || runtimes.jvm) && self.fruitless_scans < MAX_FRUITLESS_SCANS
    }

    /// Whether a copy may yet speak for `connection`: one taken while it was open (see
    /// [`open_connections`]). Never for one known to have closed, nor for one on a Unix socket.
    fn may_speak_for(&self, connection: &ConnectionFacts) -> bool {
        let unix = |endpoint: &Option<Endpoint>| {
            endpoint
                .as_ref()
                .is_some_and(|endpoint| !matches!(endpoint, Endpoint::Inet(_)))
        };
        !self.closed_before_copy.contains(&connection.conn_id)
            && !unix(&connection.local)
            && !unix(&connection.peer)
    }

    /// What the last copy says of the entry, if it speaks for `connection`.
    fn answer_for(
        &self,
        connection: &ConnectionFacts,
        seen: &[SeenEntry<'_>],
        insertion: i64,
    ) -> Option<(Text, Option<Text>)> {
        let open = self.open_at_copy.as_ref()?;
        open.holds(connection.local.as_ref(), connection.peer.as_ref())
            .then(|| self.found.answer(seen, insertion))
            .flatten()
    }
}

/// Whether `connection`, with both its addresses known, is not among `open`.
fn closed(open: &OpenConnections, connection: &ConnectionFacts) -> bool {
    matches!(
        (&connection.local, &connection.peer),
        (Some(Endpoint::Inet(_)), Some(Endpoint::Inet(_)))
    ) && !open.holds(connection.local.as_ref(), connection.peer.as_ref())
}

/// What tells one direction's newest entry from another's, for the record of questions asked.
fn fingerprint(entry: &SeenEntry<'_>) -> u64 {
    let name = entry.name.map_or(&b""[..], |name| name.as_bytes());
    value_digest(name) ^ entry.value_digest.unwrap_or(entry.value.byte_len() as u64)
}
