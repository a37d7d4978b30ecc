//! The `grpc-status` entries gRPC C-core's encoder inserted into its peer's table, found in a
//! copy of the process's memory: a server's own statuses.
//!
//! C-core's encoder keeps, besides its size accounting ([`super::core_encoder`]), for
//! `grpc-status`, per code below 16, the index that code's entry was last inserted at
//! (`uint32_t[16]`, 0 for a code never sent), among the compressors that follow the accounting
//! in the same object (88 bytes after its end on grpcio 1.85.1; other releases may differ, so a
//! stretch after it is searched).
//!
//! The accounting, lined up with the entries the tracer saw inserted since attach, gives the
//! index of an entry from before. A status array is one whose indices are all live or older,
//! none repeated, and agree with every `grpc-status` the tracer saw inserted since attach.
//! Which slot holds the entry's index is its code, if every array and every lining-up that
//! fits says the same; a stretch of other fields read as an array (shifted by a slot or more)
//! names another code, and then nothing is said.

use super::{
    core_encoder::EncoderTable,
    snapshot::{Snapshot, u32_at},
};
use crate::hpack::{FieldValue, SeenEntry, Text};

/// Codes whose entries are kept (`kNumCachedGrpcStatusValues`).
const CODES: usize = 16;
/// How far after a table its status array is looked for, in bytes.
const SEARCH: usize = 256;

/// One encoder's table accounting, and the candidate status arrays after it.
#[derive(Debug, Clone)]
pub struct EncoderStatuses {
    table: EncoderTable,
    arrays: Vec<[u32; CODES]>,
}

/// Every C-core encoder among `tables` (found in `snapshot`) with a status array after it.
pub fn encoder_statuses(snapshot: &Snapshot, tables: &[EncoderTable]) -> Vec<EncoderStatuses> {
    let mut found = Vec::new();
    for table in tables {
        let Some(after) = snapshot.read(table.end, SEARCH) else {
            continue;
        };
        let arrays: Vec<[u32; CODES]> = (0..=SEARCH - 4 * CODES)
            .step_by(4)
            .map(|at| std::array::from_fn(|code| u32_at(after, at + 4 * code)))
            .filter(|array| is_status_array(array, table.oldest(), table.newest()))
            .collect();
        if !arrays.is_empty() {
            found.push(EncoderStatuses {
                table: table.clone(),
                arrays,
            });
        }
    }
    found
}

/// Indices no newer than the table's newest, none repeated, at least one of a live entry.
fn is_status_array(array: &[u32; CODES], oldest: u32, newest: u32) -> bool {
    let set: Vec<u32> = array.iter().copied().filter(|&index| index != 0).collect();
    set.iter().all(|&index| index <= newest)
        && set.iter().any(|&index| index >= oldest)
        && set
            .iter()
            .enumerate()
            .all(|(nth, index)| !set[nth + 1..].contains(index))
}

/// The code of the `grpc-status` entry inserted `-insertion` insertions before watching began,
/// in the direction whose entries since are `seen` (newest first).
pub fn status_before_watching(
    encoders: &[EncoderStatuses],
    seen: &[SeenEntry<'_>],
    insertion: i64,
) -> Option<Text> {
    let mut answer: Option<usize> = None;
    let mut evidence = false;
    for encoder in encoders {
        for first in encoder.table.first_insertions(seen) {
            let wanted = first + insertion;
            for array in &encoder.arrays {
                if !agrees_with_seen(array, seen, first) {
                    continue;
                }
                evidence = true;
                let Some(code) = array.iter().position(|&index| i64::from(index) == wanted) else {
                    continue;
                };
                // An entry `grpc-status: N` has the size its digits give it.
                let size = 11 + code.to_string().len() + 32;
                if encoder.table.size(wanted) != Some(size) {
                    return None;
                }
                match answer {
                    Some(known) if known != code => return None,
                    _ => answer = Some(code),
                }
            }
        }
    }
    evidence
        .then_some(answer)
        .flatten()
        .map(|code| Text::from(code.to_string()))
}

/// Whether `array` agrees with the `grpc-status` entries seen inserted since attach (the first
/// at `first`): each code's slot holds its latest insertion, or a later one the tracer has not
/// seen; and no slot holds an index seen inserted as anything else.
fn agrees_with_seen(array: &[u32; CODES], seen: &[SeenEntry<'_>], first: i64) -> bool {
    let last_seen = first + seen.len() as i64 - 1;
    let code_at = |index: i64| -> Option<Option<usize>> {
        let back = usize::try_from(last_seen - index).ok()?;
        let entry = seen.get(back)?;
        Some(match (entry.name, entry.value) {
            (Some(name), FieldValue::Known(value)) if &**name == "grpc-status" => {
                value.parse::<usize>().ok()
            }
            _ => None,
        })
    };
    // Every code seen inserted, at its newest insertion or after.
    for (back, entry) in seen.iter().enumerate() {
        let index = last_seen - back as i64;
        if let Some(Some(code)) = code_at(index).filter(|_| entry.name.is_some())
            && code < CODES
            && i64::from(array[code]) < index
        {
            return false;
        }
    }
    // No slot holding an index seen inserted under another code or name.
    array.iter().enumerate().all(|(code, &index)| {
        index == 0 || code_at(i64::from(index)).is_none_or(|seen_code| seen_code == Some(code))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process_memory::{core_encoder::encoder_tables, snapshot::Region};

    const HEAP: u64 = 0x10_0000;
    const RING: u64 = 0x20_0000;

    /// A server's encoder that inserted `sizes` (indices from 1), with, 88 bytes after its
    /// table (as on grpcio 1.85.1) after two other compressors' words (7, then 2), `statuses`.
    fn encoder(sizes: &[u16], statuses: [u32; CODES]) -> Snapshot {
        let total: u32 = sizes.iter().map(|&size| u32::from(size)).sum();
        encoder_of_total(sizes, statuses, total)
    }

    fn encoder_of_total(sizes: &[u16], statuses: [u32; CODES], total: u32) -> Snapshot {
        let mut heap = Vec::new();
        for word in [0, 4096, sizes.len() as u32, total] {
            heap.extend(word.to_le_bytes());
        }
        for pointer in [RING, RING + 256, RING + 256] {
            heap.extend(pointer.to_le_bytes());
        }
        heap.extend([0; 80]);
        heap.extend(7u32.to_le_bytes());
        heap.extend(2u32.to_le_bytes());
        for index in statuses {
            heap.extend(index.to_le_bytes());
        }
        heap.extend([0; 256]);
        let mut ring = vec![0; 256];
        for (nth, size) in sizes.iter().enumerate() {
            let slot = 2 * ((nth + 1) % 128);
            ring[slot..slot + 2].copy_from_slice(&size.to_le_bytes());
        }
        Snapshot::of(vec![
            Region {
                start: HEAP,
                writable: true,
                bytes: heap,
            },
            Region {
                start: RING,
                writable: true,
                bytes: ring,
            },
        ])
    }

    fn statuses(snapshot: &Snapshot) -> Vec<EncoderStatuses> {
        encoder_statuses(snapshot, &encoder_tables(snapshot))
    }

    fn status_array(indexed: &[(usize, u32)]) -> [u32; CODES] {
        let mut array = [0; CODES];
        for &(code, index) in indexed {
            array[code] = index;
        }
        array
    }

    fn seen_entry<'a>(name: &'a Text, value: &'a FieldValue, size: usize) -> SeenEntry<'a> {
        SeenEntry {
            name: Some(name),
            value,
            value_digest: None,
            size: Some(size),
        }
    }

    /// Before attach: `:status: 200`, `content-type`, `grpc-status: 0` (index 3); since:
    /// `grpc-status: 5` (index 4).
    const SIZES: [u16; 4] = [42, 60, 44, 44];

    #[test]
    fn a_code_sent_since_attach_places_the_ones_from_before() {
        let snapshot = encoder(&SIZES, status_array(&[(0, 3), (5, 4)]));
        let encoders = statuses(&snapshot);
        assert_eq!(encoders.len(), 1);
        let (name, five) = (Text::from("grpc-status"), FieldValue::Known("5".into()));
        let seen = [seen_entry(&name, &five, 44)];
        assert_eq!(
            status_before_watching(&encoders, &seen, -1).as_deref(),
            Some("0")
        );
        // `content-type`, not a status: no slot holds its index.
        assert_eq!(status_before_watching(&encoders, &seen, -2), None);
    }

    #[test]
    fn other_fields_read_as_a_shifted_array_leave_the_code_unknown() {
        // Since attach only an entry that is no status: the words before the array, read as
        // one shifted by a slot, fit too and name another code.
        let snapshot = encoder(&[42, 60, 44, 60], status_array(&[(0, 3)]));
        let (name, value) = (
            Text::from("content-type"),
            FieldValue::Known("application/grpc+proto".into()),
        );
        let seen = [seen_entry(&name, &value, 60)];
        let encoders = statuses(&snapshot);
        assert_eq!(status_before_watching(&encoders, &seen, -1), None);
    }

    #[test]
    fn tables_whose_sizes_do_not_line_up_say_nothing() {
        let snapshot = encoder(&SIZES, status_array(&[(0, 3), (5, 4)]));
        let (name, ten) = (Text::from("grpc-status"), FieldValue::Known("10".into()));
        let seen = [seen_entry(&name, &ten, 45)];
        assert_eq!(
            status_before_watching(&statuses(&snapshot), &seen, -1),
            None
        );
        // A table whose sizes do not add up to its total is not one.
        let array = status_array(&[(0, 3), (5, 4)]);
        assert!(statuses(&encoder_of_total(&SIZES, array, 191)).is_empty());
    }
}
