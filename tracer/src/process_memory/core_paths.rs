//! The `:path` values gRPC C-core's encoder (grpcio, grpc++) inserted into its peer's table,
//! found in a copy of the process's memory: a client's own methods.
//!
//! C-core's encoder keeps no copy of its table, only each entry's size; what it inserted is
//! kept per kind of metadata. For `:path` that is a `SliceIndex`: a vector of `ValueIndex`
//! records, a `grpc_slice` (32 bytes: a refcount pointer, then a length and a pointer to the
//! bytes, or, with no refcount, a length byte and the bytes inline) and the 32-bit index its
//! entry got (40 bytes with padding). An index numbers the connection's insertions from 1.
//!
//! Which index an entry from before attach has is read from the encoder's size accounting,
//! lined up with the entries seen inserted since ([`super::core_encoder`]): the entry is the
//! path recorded at that index whose entry size (32 + 5 + its length, RFC 7541 §4.1) is the
//! one the accounting keeps there. Failing that (no accounting found), one path the tracer saw
//! inserted after attach, found in a vector, says which index the first insertion since had.
//! Either way a vector that holds a path seen since attach at another index than the lining-up
//! gives is another connection's; every other path recorded at the entry's index must be the
//! same. Warm connections of one process whose encoders recorded different paths at that index
//! are thus left unnamed. (Checked on
//! grpcio 1.85.1: the warm method at index 1, the methods called after attach after it. The
//! accounting is what a copy taken before any new method was called can be read by; a vector
//! read after its channel closed is freed, the first words of its first record overwritten.)

use super::{
    core_encoder::EncoderTable,
    snapshot::{Snapshot, u32_at, u64_at},
};
use crate::hpack::{FieldValue, SeenEntry, Text};

const WORD: usize = 8;
const VALUE_INDEX: usize = 40;
const INDEX: usize = 32;
/// Longest path taken for one.
const MAX_PATH: u64 = 4096;
/// The most records a vector is taken to hold.
const MAX_PATHS: usize = 4096;

/// How far after an encoder's size accounting its `SliceIndex` for `:path` is looked for, in
/// bytes: right after it on grpcio 1.60 to 1.85, after other compressors on grpc++ 1.51.
const SEARCH: usize = 512;

/// One encoder's paths, with the index each was last inserted at.
pub type Paths = Vec<(Text, u32)>;

/// Every run of `ValueIndex` records holding gRPC paths in the writable memory of `snapshot`,
/// with the address of its first.
pub fn path_indexes(snapshot: &Snapshot) -> Vec<(u64, Paths)> {
    snapshot.record_runs_at(VALUE_INDEX, MAX_PATHS, |record| {
        value_index_at(snapshot, record)
    })
}

/// An encoder's size accounting with its own record of paths: the vector (begin, end and
/// capacity pointers) after the accounting whose records are a run of paths.
#[derive(Debug, Clone)]
pub struct EncoderPaths {
    table: EncoderTable,
    paths: Paths,
}

/// Each of `tables` (found in `snapshot`) whose vector of paths is among `runs`.
pub fn encoder_paths(
    snapshot: &Snapshot,
    tables: &[EncoderTable],
    runs: &[(u64, Paths)],
) -> Vec<EncoderPaths> {
    let mut found = Vec::new();
    for table in tables {
        let Some(after) = snapshot.read(table.end, SEARCH) else {
            continue;
        };
        for at in (0..=SEARCH - 3 * WORD).step_by(WORD) {
            let (begin, end, reserved) = (
                u64_at(after, at),
                u64_at(after, at + WORD),
                u64_at(after, at + 2 * WORD),
            );
            if begin == 0
                || end <= begin
                || reserved < end
                || (end - begin) % VALUE_INDEX as u64 != 0
            {
                continue;
            }
            let records = ((end - begin) / VALUE_INDEX as u64) as usize;
            let Some((_, run)) = runs.iter().find(|(start, _)| *start == begin) else {
                continue;
            };
            if records <= run.len() {
                found.push(EncoderPaths {
                    table: table.clone(),
                    paths: run[..records].to_vec(),
                });
            }
        }
    }
    found
}

fn value_index_at(snapshot: &Snapshot, record: &[u8]) -> Option<(Text, u32)> {
    // The padding after the index, like the unused end of the slice, holds whatever was there.
    let index = u32_at(record, INDEX);
    if index == 0 {
        return None;
    }
    let path = if u64_at(record, 0) == 0 {
        let len = usize::from(record[WORD]);
        record.get(WORD + 1..WORD + 1 + len)?
    } else {
        let len = u64_at(record, WORD);
        if !(3..=MAX_PATH).contains(&len) {
            return None;
        }
        snapshot.read(u64_at(record, 2 * WORD), len as usize)?
    };
    let path = Text::decoded(path).filter(|path| is_grpc_path(path))?;
    Some((path, index))
}

/// `/Service/Method`, as gRPC sends `:path`.
fn is_grpc_path(path: &str) -> bool {
    path.bytes().all(|byte| byte.is_ascii_graphic())
        && path
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(service, method)| {
                !service.is_empty() && !method.is_empty() && !method.contains('/')
            })
}

/// An entry's size in the table beyond its name and value (RFC 7541 §4.1), and the name's.
const ENTRY_OVERHEAD: usize = 32 + ":path".len();

/// The path of the entry inserted `-insertion` insertions before watching began, in the
/// direction whose entries since are `seen` (newest first): from the encoders whose accounting
/// lines up with what was seen, or, if none does, from a path seen inserted since attach.
pub fn path_before_watching(
    runs: &[(u64, Paths)],
    encoders: &[EncoderPaths],
    seen: &[SeenEntry<'_>],
    insertion: i64,
) -> Option<Text> {
    let inserted = paths_inserted(seen);
    match by_accounting(encoders, &inserted, seen, insertion) {
        // Connections whose histories since attach are alike line up alike, and a copy may
        // hold one encoder's accounting and not another's (taken while it changed), or be older
        // than what was seen on one of them, so that its accounting lines up with nothing: every
        // record of a path at the entry's index must be the answer, whatever its encoder. (The
        // asking connection's own records are in the copy: it was open when it was taken.)
        Some(Some((path, placed))) => runs
            .iter()
            .filter(|(_, run)| agrees(run, &inserted, placed.first))
            .flat_map(|(_, run)| run)
            .filter(|(_, index)| i64::from(*index) == placed.wanted)
            .all(|(other, _)| *other == path)
            .then_some(path),
        Some(None) => None,
        None => by_path_seen(runs, &inserted, insertion),
    }
}

/// Where an accounting placed the entry: the first insertion since attach, the entry's index,
/// and its size.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Placed {
    first: i64,
    wanted: i64,
    size: usize,
}

/// The paths seen inserted since attach, each with its latest insertion number from attach
/// (what an encoder's record keeps).
fn paths_inserted<'a>(seen: &'a [SeenEntry<'_>]) -> Vec<(&'a str, i64)> {
    let mut inserted: Vec<(&str, i64)> = Vec::new();
    for (back, entry) in seen.iter().enumerate() {
        let (Some(name), FieldValue::Known(path)) = (entry.name, entry.value) else {
            continue;
        };
        if &**name == ":path" && !inserted.iter().any(|(known, _)| *known == &**path) {
            inserted.push((path, seen.len() as i64 - 1 - back as i64));
        }
    }
    inserted
}

/// Whether `run` agrees that the first insertion since attach had index `first`: every path
/// seen inserted since that it holds is at the index that gives.
fn agrees(run: &Paths, inserted: &[(&str, i64)], first: i64) -> bool {
    inserted.iter().all(|(path, insertion)| {
        run.iter()
            .filter(|(known, _)| &**known == *path)
            .all(|(_, index)| i64::from(*index) == first + insertion)
    })
}

/// The answer of the encoders' accounting, with where it placed the entry: `None` if no
/// encoder's lines up with what was seen, `Some(None)` if one does and the paths they recorded
/// do not give one path, placed one way.
fn by_accounting(
    encoders: &[EncoderPaths],
    inserted: &[(&str, i64)],
    seen: &[SeenEntry<'_>],
    insertion: i64,
) -> Option<Option<(Text, Placed)>> {
    let mut lined_up = false;
    let mut answer: Option<(&Text, Placed)> = None;
    for encoder in encoders {
        for first in encoder.table.first_insertions(seen) {
            if !agrees(&encoder.paths, inserted, first) {
                continue;
            }
            lined_up = true;
            let wanted = first + insertion;
            let Some(size) = encoder.table.size(wanted) else {
                continue;
            };
            let placed = Placed {
                first,
                wanted,
                size,
            };
            let at_wanted = encoder
                .paths
                .iter()
                .filter(|(_, index)| i64::from(*index) == wanted);
            for (path, _) in at_wanted {
                if ENTRY_OVERHEAD + path.len() != size {
                    continue;
                }
                match answer {
                    Some(known) if known != (path, placed) => return Some(None),
                    _ => answer = Some((path, placed)),
                }
            }
        }
    }
    lined_up.then(|| answer.map(|(path, placed)| (path.clone(), placed)))
}

/// The answer of a path seen inserted since attach, found in a vector: the index it has there
/// says which the first insertion since had.
fn by_path_seen(runs: &[(u64, Paths)], inserted: &[(&str, i64)], insertion: i64) -> Option<Text> {
    let mut answer: Option<&Text> = None;
    for (_, run) in runs {
        // The index of the first insertion since attach, as each seen path in the run says.
        let mut says: Option<i64> = None;
        let mut agreed = true;
        for (path, seen_insertion) in inserted {
            let Some((_, index)) = run.iter().find(|(known, _)| &**known == *path) else {
                continue;
            };
            let first = i64::from(*index) - seen_insertion;
            agreed &= says.is_none_or(|says| says == first);
            says = Some(first);
        }
        let (Some(first), true) = (says, agreed) else {
            continue;
        };
        let wanted = first + insertion;
        let Some((path, _)) = run.iter().find(|(_, index)| i64::from(*index) == wanted) else {
            continue;
        };
        match answer {
            Some(known) if known != path => return None,
            _ => answer = Some(path),
        }
    }
    answer.cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process_memory::snapshot::Region;

    const UNARY: &str = "/pkg.Svc/Unary";
    const STREAM: &str = "/pkg.Svc/Stream";
    /// A path of Unary's length.
    const UNARZ: &str = "/pkg.Svc/Unarz";

    fn paths(paths: &[(&str, u32)]) -> Paths {
        paths
            .iter()
            .map(|&(path, index)| (path.into(), index))
            .collect()
    }

    fn run(records: &[(&str, u32)]) -> (u64, Paths) {
        (0, paths(records))
    }

    fn size(path: &str) -> u16 {
        (ENTRY_OVERHEAD + path.len()) as u16
    }

    fn encoder(newest: u32, sizes: &[u16], records: &[(&str, u32)]) -> EncoderPaths {
        EncoderPaths {
            table: EncoderTable::of(newest, sizes.to_vec()),
            paths: paths(records),
        }
    }

    fn entry<'a>(name: &'a Text, value: &'a FieldValue, size: usize) -> SeenEntry<'a> {
        SeenEntry {
            name: Some(name),
            value,
            value_digest: None,
            size: Some(size),
        }
    }

    #[test]
    fn a_path_inserted_since_attach_places_the_ones_from_before() {
        // Seen since attach, newest first: a timeout, then Stream (insertion 0).
        let (path, timeout): (Text, Text) = (":path".into(), "grpc-timeout".into());
        let (stream, hundred) = (
            FieldValue::Known(STREAM.into()),
            FieldValue::Known("100m".into()),
        );
        let seen = [
            entry(&timeout, &hundred, 48),
            entry(&path, &stream, size(STREAM).into()),
        ];
        // Unary was the connection's 1st insertion, Stream its 7th: insertion 0 is index 7,
        // so the entry inserted 6 before (insertion -6) is index 1.
        let runs = [run(&[(UNARY, 1), (STREAM, 7)])];
        assert_eq!(
            path_before_watching(&runs, &[], &seen, -6).as_deref(),
            Some(UNARY)
        );
        assert_eq!(
            path_before_watching(&runs, &[], &seen, -5),
            None,
            "not a path"
        );
        // A vector with no path seen since attach says nothing; two that disagree neither.
        assert_eq!(
            path_before_watching(&[run(&[(UNARY, 1)])], &[], &seen, -6),
            None
        );
        let other = run(&[("/pkg.Svc/Other", 2), (STREAM, 8)]);
        assert_eq!(
            path_before_watching(&[runs[0].clone(), other], &[], &seen, -6),
            None
        );
    }

    #[test]
    fn the_encoders_accounting_places_an_entry_from_before_without_a_path_seen() {
        // Since attach only a timeout was seen inserted (index 7 in the connection, its 7th
        // insertion); before it Unary (index 1) and five other entries.
        let (timeout, hundred) = (Text::from("grpc-timeout"), FieldValue::Known("100m".into()));
        let seen = [entry(&timeout, &hundred, 48)];
        let sizes = [size(UNARY), 40, 40, 40, 40, 40, 48];
        let unary = encoder(7, &sizes, &[(UNARY, 1)]);
        assert_eq!(
            path_before_watching(&[], std::slice::from_ref(&unary), &seen, -6).as_deref(),
            Some(UNARY)
        );
        // Not from the records alone: no path seen since attach places them.
        assert_eq!(
            path_before_watching(&[run(&[(UNARY, 1)])], &[], &seen, -6),
            None
        );
        // A path of another length than the entry the accounting keeps is not the entry.
        let mut longer = sizes;
        longer[0] += 1;
        assert_eq!(
            path_before_watching(&[], &[encoder(7, &longer, &[(UNARY, 1)])], &seen, -6),
            None
        );
        // Two encoders that line up and give two paths: nothing is said.
        let unarz = encoder(7, &sizes, &[(UNARZ, 1)]);
        assert_eq!(
            path_before_watching(&[], &[unary.clone(), unarz], &seen, -6),
            None
        );
        // Another path recorded at that index, of whatever length, by an encoder whose
        // accounting was not found: nothing is said either.
        let stray = (1, paths(&[("/pkg.Svc/LongerName", 1)]));
        assert_eq!(
            path_before_watching(
                std::slice::from_ref(&stray),
                std::slice::from_ref(&unary),
                &seen,
                -6
            ),
            None
        );
        // ... even when its accounting was found and does not line up with what was seen: the
        // copy may be older than what was seen on that connection.
        let behind = encoder(9, &[40; 9], &[("/pkg.Svc/LongerName", 1)]);
        assert_eq!(
            path_before_watching(&[stray], &[unary, behind], &seen, -6),
            None
        );
    }

    #[test]
    fn an_encoder_whose_paths_contradict_what_was_seen_is_another_connections() {
        // Seen since attach: the timeout (index 7), then Stream (index 8).
        let (path, timeout) = (Text::from(":path"), Text::from("grpc-timeout"));
        let (stream, hundred) = (
            FieldValue::Known(STREAM.into()),
            FieldValue::Known("100m".into()),
        );
        let seen = [
            entry(&path, &stream, size(STREAM).into()),
            entry(&timeout, &hundred, 48),
        ];
        let sizes = [size(UNARY), 40, 40, 40, 40, 40, 48, size(STREAM)];
        let ours = encoder(8, &sizes, &[(UNARY, 1), (STREAM, 8)]);
        // Its accounting lines up too, but it inserted Stream at index 3.
        let theirs = encoder(8, &sizes, &[(UNARZ, 1), (STREAM, 3)]);
        assert_eq!(
            path_before_watching(&[], &[ours, theirs], &seen, -6).as_deref(),
            Some(UNARY)
        );
    }

    #[test]
    fn an_encoders_paths_are_the_vector_after_its_accounting() {
        // grpcio 1.85.1: the accounting (four words, the ring's vector), then the path
        // SliceIndex's vector; its two records; the refcounted paths' bytes; the ring.
        const HEAP: u64 = 0x10_0000;
        let (records, bytes, ring) = (HEAP + 0x100, HEAP + 0x200, HEAP + 0x300);
        let mut heap = vec![0u8; 0x400];
        let mut put = |at: u64, data: &[u8]| {
            let at = (at - HEAP) as usize;
            heap[at..at + data.len()].copy_from_slice(data);
        };
        let sizes = [size(UNARY), 40, 40, 40, 40, 40, 48];
        let total: u32 = sizes.iter().map(|&size| u32::from(size)).sum();
        for (nth, word) in [0, 4096, 7, total].into_iter().enumerate() {
            put(HEAP + 4 * nth as u64, &u32::to_le_bytes(word));
        }
        // A ring of 8 slots: index i at slot i % 8.
        for (pointer, at) in [(ring, 16), (ring + 16, 24), (ring + 16, 32)] {
            put(HEAP + at, &u64::to_le_bytes(pointer));
        }
        for (index, size) in sizes.iter().enumerate() {
            put(ring + 2 * (index as u64 + 1), &size.to_le_bytes());
        }
        // The vector of one record (of two in a run: the second is past its end).
        for (pointer, at) in [(records, 40), (records + 40, 48), (records + 80, 56)] {
            put(HEAP + at, &u64::to_le_bytes(pointer));
        }
        for (nth, (path, index)) in [(UNARY, 1u32), (UNARZ, 2)].into_iter().enumerate() {
            let record = records + 40 * nth as u64;
            let text = bytes + 0x40 * nth as u64;
            put(record, &u64::to_le_bytes(text - 16));
            put(record + 8, &u64::to_le_bytes(path.len() as u64));
            put(record + 16, &u64::to_le_bytes(text));
            put(record + 32, &index.to_le_bytes());
            put(text, path.as_bytes());
        }
        let snapshot = Snapshot::of(vec![Region {
            start: HEAP,
            writable: true,
            bytes: heap,
        }]);
        let tables = crate::process_memory::core_encoder::encoder_tables(&snapshot);
        assert_eq!(tables.len(), 1);
        let runs = path_indexes(&snapshot);
        let encoders = encoder_paths(&snapshot, &tables, &runs);
        assert_eq!(encoders.len(), 1);
        assert_eq!(encoders[0].paths, paths(&[(UNARY, 1)]));
    }
}
