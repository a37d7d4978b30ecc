//! gRPC C-core's header tables (grpcio, grpc++), found in a copy of the process's memory: the
//! decoder's, which hold what the peer sent (a client's: the server's `grpc-status` entries; a
//! server's: the client's `:path` entries).
//!
//! C-core's HPACK parser keeps its table as a vector of `HPackTable::Memento`, in insertion
//! order until the vector reaches the table's entry limit (128 for 4,096 bytes), then as a
//! ring. A memento is a `ParsedMetadata` (a pointer to the `VTable` of its kind of metadata, a
//! 32-byte value buffer, the entry's HPACK size as a 32-bit `transport_size_`: 48 bytes), and
//! in later releases a pointer to its parse status after it (56 bytes: grpcio 1.60 to 1.85;
//! Debian's grpc++ 1.51 has 48). A `VTable` names its header with
//! `key_value`, a string view at offset 40 (checked on grpcio 1.85.1, whose libstdc++ puts the
//! length before the pointer); metadata of any other name has an empty
//! `key_value` and a pointer to its key and value slices as its value. Values are read only
//! for `grpc-status` (an integer in the buffer) and `:path` (a `grpc_slice`: a refcount
//! pointer, then, if that is null, a length byte and the bytes inline, else a length and a
//! pointer); every other entry lines up by name and size.

use foldhash::HashMap;

use super::{
    alignment::{Recalled, Table},
    is_field_name,
    snapshot::{Snapshot, u32_at, u64_at},
};
use crate::hpack::Text;

const WORD: usize = 8;
/// With and without a parse status: both are looked for.
const MEMENTO_SIZES: [usize; 2] = [56, 48];
/// Offsets in a memento, and in a `VTable`.
const VALUE: usize = 8;
const TRANSPORT_SIZE: usize = 40;
const KEY_VALUE: usize = 40;
const KEY_FN: usize = 56;
/// Largest entry taken for an HPACK entry.
const MAX_ENTRY: u32 = 64 << 10;
/// The most entries a table can hold: 64 KiB of 32-byte overheads.
const MAX_ENTRIES: usize = 2048;

/// What a `VTable` says of the metadata it is for.
#[derive(Clone)]
enum Kind {
    Named(Text),
    /// Any other name: the value points at the key and value slices.
    KeyValue,
}

/// Every run of mementos in the writable memory of `snapshot`, in vector order.
pub fn tables(snapshot: &Snapshot) -> Vec<Table> {
    let mut kinds: HashMap<u64, Option<Kind>> = HashMap::default();
    let mut tables = Vec::new();
    for size in MEMENTO_SIZES {
        tables.extend(snapshot.record_runs(size, MAX_ENTRIES, |record| {
            memento_at(snapshot, record, &mut kinds)
        }));
    }
    // The parser's static table (RFC 7541 Appendix A) has the same shape: not a dynamic one.
    tables.retain(|table| {
        let names = |index: usize| table.get(index).map(|entry| &*entry.name);
        (names(0), names(1)) != (Some(":authority"), Some(":method"))
    });
    tables
}

/// The entry `record` holds, if it is a memento.
fn memento_at(
    snapshot: &Snapshot,
    record: &[u8],
    kinds: &mut HashMap<u64, Option<Kind>>,
) -> Option<Recalled> {
    let vtable = u64_at(record, 0);
    if vtable == 0 || !vtable.is_multiple_of(WORD as u64) {
        return None;
    }
    let size = u32_at(record, TRANSPORT_SIZE);
    if !(32..=MAX_ENTRY).contains(&size) {
        return None;
    }
    let kind = kinds
        .entry(vtable)
        .or_insert_with(|| kind_at(snapshot, vtable))
        .clone()?;
    let value = &record[VALUE..VALUE + 32];
    let (name, text) = match kind {
        Kind::Named(name) => {
            let text = match &*name {
                // A `grpc_status_code`: the low 32 bits of the buffer.
                "grpc-status" => Some(u64_at(value, 0) & 0xffff_ffff)
                    .filter(|&code| code <= 16)
                    .map(|code| Text::from(code.to_string())),
                ":path" => slice(snapshot, value).and_then(Text::decoded),
                _ => None,
            };
            (name, text)
        }
        Kind::KeyValue => {
            let pair = snapshot.read(u64_at(value, 0), 64)?;
            let name = slice(snapshot, &pair[..32])?;
            let value = slice(snapshot, &pair[32..])?;
            // The size the parser kept, which is what lines it up.
            return Some(Recalled {
                size: Some(size as usize),
                ..Recalled::of_field(name, value)?
            });
        }
    };
    Some(Recalled {
        value_len: text.as_ref().map_or(0, |text| text.len()),
        value: text,
        value_digest: None,
        size: Some(size as usize),
        name,
    })
}

/// What the `VTable` at `address` is for, if it is one.
fn kind_at(snapshot: &Snapshot, address: u64) -> Option<Kind> {
    let vtable = snapshot.read(address, KEY_FN + WORD)?;
    if vtable[0] > 1 {
        return None;
    }
    // A string view is a pointer and a length, in the order of the standard library grpc was
    // built with (libstdc++: the length first).
    let (first, second) = (u64_at(vtable, KEY_VALUE), u64_at(vtable, KEY_VALUE + WORD));
    let (key, key_len) = if first <= 64 {
        (second, first)
    } else {
        (first, second)
    };
    match key_len {
        0 if u64_at(vtable, KEY_FN) != 0 => Some(Kind::KeyValue),
        1..=64 => {
            let name = snapshot.read(key, key_len as usize)?;
            is_field_name(name)
                .then(|| Text::decoded(name))
                .flatten()
                .map(Kind::Named)
        }
        _ => None,
    }
}

/// The bytes of the `grpc_slice` at the start of `slice`.
fn slice<'s>(snapshot: &'s Snapshot, slice: &'s [u8]) -> Option<&'s [u8]> {
    if u64_at(slice, 0) == 0 {
        let len = usize::from(slice[WORD]);
        return slice.get(WORD + 1..WORD + 1 + len);
    }
    let len = u64_at(slice, WORD);
    if len > u64::from(MAX_ENTRY) {
        return None;
    }
    match len {
        0 => Some(&[]),
        len => snapshot.read(u64_at(slice, 2 * WORD), len as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{hpack::value_digest, process_memory::snapshot::Region};

    const STRINGS: u64 = 0x1000;
    const VTABLES: u64 = 0x2000;
    const HEAP: u64 = 0x3000;

    /// A `VTable` whose `key_value` (length first, as libstdc++ lays it out) is the string at
    /// `key` of `len` bytes; for any other name, an empty key and a key function.
    fn vtable(key: u64, len: u64) -> Vec<u8> {
        let mut words = vec![0u64, 0x7000, 0x7010, 0x7020, 0x7030, len, key];
        words.push(if len == 0 { 0x7040 } else { 0 });
        words.iter().flat_map(|word| word.to_le_bytes()).collect()
    }

    /// A 56-byte memento (with a null parse status).
    fn memento(vtable: u64, value: [u64; 4], size: u32) -> Vec<u8> {
        let mut bytes: Vec<u8> = std::iter::once(vtable)
            .chain(value)
            .flat_map(|word| word.to_le_bytes())
            .collect();
        bytes.extend(size.to_le_bytes());
        bytes.extend([0; 4 + 8]);
        bytes
    }

    /// The same laid out as a release without parse statuses has them: 48 bytes each.
    fn without_parse_status(table: &[u8]) -> Vec<u8> {
        table
            .chunks(56)
            .flat_map(|memento| &memento[..48])
            .copied()
            .collect()
    }

    #[test]
    fn a_parser_table_is_read_with_its_status_path_and_sizes() {
        // Strings: "grpc-status", ":path", "/pkg.Svc/Method", "date", "Mon, 07 Dec".
        let strings = b"grpc-status:path/pkg.Svc/Methoddate\0Mon, 07 Dec".to_vec();
        let at = |offset: u64| STRINGS + offset;
        let mut vtables = vtable(at(0), 11);
        vtables.extend(vtable(at(11), 5));
        vtables.extend(vtable(at(35), 0));
        let (status, path, key_value) = (VTABLES, VTABLES + 64, VTABLES + 128);
        // The key and value slices of the `date` entry, refcounted: (refcount, length, bytes),
        // 32 bytes each.
        let mut heap: Vec<u8> = [1u64, 4, at(31), 0, 1, 11, at(36), 0]
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .collect();
        let mut table = memento(status, [5 | 0xdead << 32, 0, 0, 0], 44);
        table.extend(memento(path, [1, 15, at(16), 0], 52));
        table.extend(memento(key_value, [HEAP, 0, 0, 0], 47));
        // An inline `:path` slice: no refcount, a length byte, the bytes.
        let mut inline = [0u8; 32];
        inline[8] = 5;
        inline[9..14].copy_from_slice(b"/a/bc");
        let words: Vec<u64> = inline
            .chunks(8)
            .map(|word| u64::from_le_bytes(word.try_into().unwrap()))
            .collect();
        table.extend(memento(path, words.try_into().unwrap(), 42));
        heap.extend(table);
        let heaps = [
            heap.clone(),
            [&heap[..64], &without_parse_status(&heap[64..])].concat(),
        ];
        for heap in heaps {
            let snapshot = Snapshot::of(vec![
                Region {
                    start: STRINGS,
                    writable: false,
                    bytes: strings.clone(),
                },
                Region {
                    start: VTABLES,
                    writable: false,
                    bytes: vtables.clone(),
                },
                Region {
                    start: HEAP,
                    writable: true,
                    bytes: heap,
                },
            ]);
            let tables: Vec<Table> = tables(&snapshot)
                .into_iter()
                .filter(|table| table.len() > 1)
                .collect();
            assert_eq!(tables.len(), 1, "{tables:?}");
            check(&tables[0]);
        }
    }

    fn check(table: &Table) {
        let read: Vec<(&str, Option<&str>, Option<usize>)> = table
            .iter()
            .map(|entry| (&*entry.name, entry.value.as_deref(), entry.size))
            .collect();
        assert_eq!(
            read,
            [
                ("grpc-status", Some("5"), Some(44)),
                (":path", Some("/pkg.Svc/Method"), Some(52)),
                ("date", None, Some(47)),
                (":path", Some("/a/bc"), Some(42)),
            ]
        );
        // Not allowlisted: a digest of the value, never the value.
        assert_eq!(table[2].value_digest, Some(value_digest(b"Mon, 07 Dec")));
    }
}
