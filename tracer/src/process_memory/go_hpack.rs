//! grpc-go's header tables, found in a copy of a Go process's memory.
//!
//! grpc-go encodes and decodes headers with golang.org/x/net/http2/hpack, whose dynamic table
//! keeps its entries as `ents []HeaderField`, oldest first, `HeaderField` being
//! `struct { Name, Value string; Sensitive bool }`: on a 64-bit target five words, each string a
//! pointer and a length, then the flag, 0 or 1, and padding. That
//! layout has not changed since the package began (2014). Every run of such records in the
//! process's writable memory is taken for a table; which of them, if any, is the one a
//! connection's entries came from is for [`super::alignment`] to decide.

use super::{
    alignment::{Recalled, Table},
    is_field_name,
    snapshot::{Snapshot, u64_at},
};

const WORD: usize = 8;
const RECORD: usize = 5 * WORD;
/// Longest name and value taken for a header field's.
const MAX_NAME: u64 = 128;
const MAX_VALUE: u64 = 16 << 10;
/// The most entries a table can hold: 64 KiB of 32-byte overheads.
const MAX_ENTRIES: usize = 2048;

/// Every run of `HeaderField` records in the writable memory of `snapshot`, oldest first.
pub fn tables(snapshot: &Snapshot) -> Vec<Table> {
    snapshot.record_runs(RECORD, MAX_ENTRIES, |record| field_at(snapshot, record))
}

/// The `HeaderField` in `record`, if it is one.
fn field_at(snapshot: &Snapshot, record: &[u8]) -> Option<Recalled> {
    let word = |index: usize| u64_at(record, index * WORD);
    let (name_len, value_len) = (word(1), word(3));
    // The flag is one byte; the padding after it is copied with the struct and may hold
    // whatever its source held.
    if !(1..=MAX_NAME).contains(&name_len) || value_len > MAX_VALUE || record[4 * WORD] > 1 {
        return None;
    }
    let name = snapshot.read(word(0), name_len as usize)?;
    if !is_field_name(name) {
        return None;
    }
    let value = match value_len {
        0 => &[][..],
        len => snapshot.read(word(2), len as usize)?,
    };
    Recalled::of_field(name, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process_memory::snapshot::Region;

    /// A Go heap: strings at 0x1000, an `ents` array at 0x2000 with `fields`, then garbage.
    fn heap(fields: &[(&str, &str)]) -> Snapshot {
        let mut strings = Vec::new();
        let mut records = Vec::new();
        for (name, value) in fields {
            for text in [name, value] {
                records.extend((0x1000 + strings.len() as u64).to_le_bytes());
                records.extend((text.len() as u64).to_le_bytes());
                strings.extend(text.as_bytes());
            }
            records.extend(0u64.to_le_bytes());
        }
        records.extend([0xff; 24]);
        Snapshot::of(vec![
            Region {
                start: 0x1000,
                writable: false,
                bytes: strings,
            },
            Region {
                start: 0x2000,
                writable: true,
                bytes: records,
            },
        ])
    }

    #[test]
    fn a_table_is_read_oldest_first_keeping_only_allowlisted_values() {
        let snapshot = heap(&[
            (":path", "/shop.Catalog/GetItem"),
            ("authorization", "Bearer secret"),
            ("grpc-status", "0"),
        ]);
        let tables = tables(&snapshot);
        assert_eq!(tables.len(), 1);
        let table = &tables[0];
        assert_eq!(table.len(), 3);
        assert_eq!(&*table[0].name, ":path");
        assert_eq!(table[0].value.as_deref(), Some("/shop.Catalog/GetItem"));
        assert_eq!((&*table[1].name, table[1].value_len), ("authorization", 13));
        assert_eq!(table[1].value, None, "not allowlisted: only its length");
        assert_eq!(table[2].value.as_deref(), Some("0"));
    }

    #[test]
    fn records_that_do_not_point_at_field_names_are_not_tables() {
        let snapshot = heap(&[("Not A Name", "x")]);
        assert!(tables(&snapshot).is_empty());
    }
}
