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
//! gives is another connection's, and every vector that answers must say the same. (Checked on
//! grpcio 1.85.1: the warm method at index 1, the methods called after attach after it. The
//! accounting is what a copy taken before any new method was called can be read by; a vector
//! read after its channel closed is freed, the first words of its first record overwritten.)

use super::{core_encoder::EncoderTable, snapshot::Snapshot};
use crate::hpack::{FieldValue, SeenEntry, Text};

const WORD: usize = 8;
const VALUE_INDEX: usize = 40;
const INDEX: usize = 32;
/// Longest path taken for one.
const MAX_PATH: u64 = 4096;
/// The most records a vector is taken to hold.
const MAX_PATHS: usize = 4096;

/// One encoder's paths, with the index each was last inserted at.
pub type Paths = Vec<(Text, u32)>;

/// Every run of `ValueIndex` records holding gRPC paths in the writable memory of `snapshot`.
pub fn path_indexes(snapshot: &Snapshot) -> Vec<Paths> {
    snapshot.record_runs(VALUE_INDEX, MAX_PATHS, |record| {
        value_index_at(snapshot, record)
    })
}

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + WORD].try_into().unwrap())
}

fn value_index_at(snapshot: &Snapshot, record: &[u8]) -> Option<(Text, u32)> {
    // The padding after the index, like the unused end of the slice, holds whatever was there.
    let index = u32::from_le_bytes(record[INDEX..INDEX + 4].try_into().unwrap());
    if index == 0 {
        return None;
    }
    let path = if word(record, 0) == 0 {
        let len = usize::from(record[WORD]);
        record.get(WORD + 1..WORD + 1 + len)?
    } else {
        let len = word(record, WORD);
        if !(3..=MAX_PATH).contains(&len) {
            return None;
        }
        snapshot.read(word(record, 2 * WORD), len as usize)?
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
/// direction whose entries since are `seen` (newest first).
pub fn path_before_watching(
    runs: &[Paths],
    tables: &[EncoderTable],
    seen: &[SeenEntry<'_>],
    insertion: i64,
) -> Option<Text> {
    let inserted = paths_inserted(seen);
    by_accounting(runs, tables, &inserted, seen, insertion)
        .unwrap_or_else(|| by_path_seen(runs, &inserted, insertion))
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

/// The answer of the encoders' accounting: `None` if no accounting lines up with what was
/// seen, `Some(None)` if one does and the paths recorded do not give one path.
fn by_accounting(
    runs: &[Paths],
    tables: &[EncoderTable],
    inserted: &[(&str, i64)],
    seen: &[SeenEntry<'_>],
    insertion: i64,
) -> Option<Option<Text>> {
    let mut lined_up = false;
    let mut answer: Option<&Text> = None;
    for table in tables {
        for first in table.first_insertions(seen) {
            lined_up = true;
            let wanted = first + insertion;
            let Some(size) = table.size(wanted) else {
                continue;
            };
            for run in runs.iter().filter(|run| agrees(run, inserted, first)) {
                for (path, _) in run.iter().filter(|(_, index)| i64::from(*index) == wanted) {
                    if ENTRY_OVERHEAD + path.len() != size {
                        continue;
                    }
                    match answer {
                        Some(known) if known != path => return Some(None),
                        _ => answer = Some(path),
                    }
                }
            }
        }
    }
    lined_up.then(|| answer.cloned())
}

/// The answer of a path seen inserted since attach, found in a vector: the index it has there
/// says which the first insertion since had.
fn by_path_seen(runs: &[Paths], inserted: &[(&str, i64)], insertion: i64) -> Option<Text> {
    let mut answer: Option<&Text> = None;
    for run in runs {
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

    const UNARY: &str = "/pkg.Svc/Unary";
    const STREAM: &str = "/pkg.Svc/Stream";

    fn run(paths: &[(&str, u32)]) -> Paths {
        paths
            .iter()
            .map(|&(path, index)| (path.into(), index))
            .collect()
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
            SeenEntry {
                name: Some(&timeout),
                value: &hundred,
                value_digest: None,
                size: None,
            },
            SeenEntry {
                name: Some(&path),
                value: &stream,
                value_digest: None,
                size: None,
            },
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
        let seen = [SeenEntry {
            name: Some(&timeout),
            value: &hundred,
            value_digest: None,
            size: Some(48),
        }];
        let unary_size = (ENTRY_OVERHEAD + UNARY.len()) as u16;
        let table = EncoderTable::of(7, vec![unary_size, 40, 40, 40, 40, 40, 48]);
        let runs = [run(&[(UNARY, 1)])];
        assert_eq!(
            path_before_watching(&runs, std::slice::from_ref(&table), &seen, -6).as_deref(),
            Some(UNARY)
        );
        // Not without the accounting: no path seen since attach places it.
        assert_eq!(path_before_watching(&runs, &[], &seen, -6), None);
        // A path of another length at that index is not the entry.
        let other_size = EncoderTable::of(7, vec![unary_size + 1, 40, 40, 40, 40, 40, 48]);
        assert_eq!(path_before_watching(&runs, &[other_size], &seen, -6), None);
        // Two vectors that give two paths: nothing is said.
        let same_length = "/pkg.Svc/Unarz";
        let runs = [run(&[(UNARY, 1)]), run(&[(same_length, 1)])];
        assert_eq!(
            path_before_watching(&runs, std::slice::from_ref(&table), &seen, -6),
            None
        );
        // A vector holding a path seen since attach at another index is another connection's.
        let (path, stream) = (Text::from(":path"), FieldValue::Known(STREAM.into()));
        let seen_stream = [
            SeenEntry {
                name: Some(&path),
                value: &stream,
                value_digest: None,
                size: Some(ENTRY_OVERHEAD + STREAM.len()),
            },
            seen[0],
        ];
        let table = EncoderTable::of(
            8,
            vec![
                unary_size,
                40,
                40,
                40,
                40,
                40,
                48,
                (ENTRY_OVERHEAD + STREAM.len()) as u16,
            ],
        );
        let runs = [
            run(&[(UNARY, 1), (STREAM, 8)]),
            run(&[(same_length, 1), (STREAM, 3)]),
        ];
        assert_eq!(
            path_before_watching(&runs, &[table], &seen_stream, -6).as_deref(),
            Some(UNARY)
        );
    }
}
