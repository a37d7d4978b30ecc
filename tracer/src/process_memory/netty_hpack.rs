//! grpc-java's header tables, found in a copy of a JVM's memory.
//!
//! grpc-java's Netty transport encodes and decodes headers with Netty's HPACK
//! (`io.netty.handler.codec.http2`), whose tables are Java objects on the heap. With the
//! JVM's defaults on 64-bit (compressed object pointers and class pointers: a 12-byte object
//! header, 4-byte references, objects 8-byte aligned) their fields sit at fixed offsets,
//! unchanged from Netty 4.1.x on JDK 15 and later (read with `Unsafe.objectFieldOffset`):
//!
//! - the encoder's table is a ring of `HpackEncoder.HeaderEntry { name @12, value @16,
//!   hash @20, index @24, before @28, after @32 }` hung from a `head` entry whose hash is -1
//!   and index `Integer.MAX_VALUE`; each entry added takes the index one below the newest's,
//!   so that `head.after` is the oldest entry and the indices count down without a gap.
//! - the decoder's is an `HpackDynamicTable { head @12, size @16, capacity @24, tail @32,
//!   hpackHeaderFields @36 }`, a circular array of `HpackHeaderField { name @12, value @16 }`
//!   from `tail` (oldest) to `head` (next free), as long as its capacity over 32, with `size`
//!   the sum of the entries' HPACK sizes.
//! - names and values are `AsciiString { offset @12, length @16, value @24 }` over a `byte[]`
//!   (length @12, bytes from @16).
//!
//! A reference is an address shifted right by 0 (heaps under 4 GiB) or 3 (under 32 GiB):
//! both are tried. Everything read must hold together (the links both ways, the indices, the
//! sizes' sum, one class per kind of object) or the table is not taken; a heap laid out any
//! other way yields no table, never a wrong one.

use super::{
    alignment::{Recalled, Table},
    is_field_name,
    snapshot::{Snapshot, u32_at, u64_at},
};

/// Most entries a table is read for: 64 KiB of 32-byte overheads.
const MAX_ENTRIES: usize = 2048;
/// Longest name and value taken for a header field's.
const MAX_NAME: u32 = 128;
const MAX_VALUE: u32 = 16 << 10;
/// A header table's capacity, at most (SETTINGS_HEADER_TABLE_SIZE is 32 bits; Netty takes
/// more than a few MiB for a mistake).
const MAX_CAPACITY: u64 = 16 << 20;
/// How a reference becomes an address: compressed with no base, shifted by the object
/// alignment or not at all.
const SHIFTS: [u32; 2] = [3, 0];

/// The encoders' and decoders' tables in the writable memory of `snapshot`, oldest first.
pub fn tables(snapshot: &Snapshot) -> Vec<Table> {
    let mut tables = Vec::new();
    for (address, object) in snapshot.aligned(40) {
        let table = if u32_at(object, 20) == u32::MAX && u32_at(object, 24) == i32::MAX as u32 {
            SHIFTS
                .iter()
                .find_map(|&shift| Heap { snapshot, shift }.encoder_table(address))
        } else {
            SHIFTS
                .iter()
                .find_map(|&shift| Heap { snapshot, shift }.decoder_table(object))
        };
        tables.extend(table);
    }
    tables
}

/// The copied heap, read as objects with references shifted by `shift`.
#[derive(Clone, Copy)]
struct Heap<'a> {
    snapshot: &'a Snapshot,
    shift: u32,
}

/// Objects of one kind share their class word: the first one seen sets it.
#[derive(Default)]
struct SameClass(Option<u32>);

impl SameClass {
    fn check(&mut self, object: &[u8]) -> Option<()> {
        let class = u32_at(object, 8);
        (*self.0.get_or_insert(class) == class).then_some(())
    }
}

impl<'a> Heap<'a> {
    /// The `len` bytes of the object `reference` points to.
    fn object(&self, reference: u32, len: usize) -> Option<&'a [u8]> {
        if reference == 0 {
            return None;
        }
        self.snapshot.read(u64::from(reference) << self.shift, len)
    }

    fn address(&self, reference: u32) -> u64 {
        u64::from(reference) << self.shift
    }

    /// The encoder table whose `head` entry is at `head`: its entries from `head.after` on,
    /// each one's `before` the one before it and its index one below, back round to `head`.
    fn encoder_table(&self, head: u64) -> Option<Table> {
        let mut classes = Classes::default();
        let mut entries = Table::new();
        let mut at = self.snapshot.read(head, 40)?;
        classes.entry.check(at)?;
        let (mut previous, mut previous_index) = (head, None);
        loop {
            let next = u32_at(at, 32);
            if self.address(next) == head {
                return (!entries.is_empty()).then_some(entries);
            }
            if entries.len() == MAX_ENTRIES {
                return None;
            }
            at = self.object(next, 40)?;
            let index = u32_at(at, 24);
            // The oldest is many insertions after the first: any index below `head`'s.
            let in_order = match previous_index {
                None => index < i32::MAX as u32,
                Some(previous) => index.checked_add(1) == Some(previous),
            };
            if !in_order || self.address(u32_at(at, 28)) != previous {
                return None;
            }
            classes.entry.check(at)?;
            entries.push(self.field(at, &mut classes)?);
            (previous, previous_index) = (self.address(next), Some(index));
        }
    }

    /// The decoder table whose fields are in `object`, if they are one's.
    fn decoder_table(&self, object: &[u8]) -> Option<Table> {
        let (head, tail) = (u32_at(object, 12) as usize, u32_at(object, 32) as usize);
        let (size, capacity) = (u64_at(object, 16), u64_at(object, 24));
        if capacity == 0 || capacity > MAX_CAPACITY || size > capacity {
            return None;
        }
        let slots = capacity.div_ceil(32) as usize;
        let array_reference = u32_at(object, 36);
        let header = self.object(array_reference, 16)?;
        if u32_at(header, 12) as usize != slots || head >= slots || tail >= slots {
            return None;
        }
        let array = self.object(array_reference, 16 + 4 * slots)?;
        let count = if head < tail {
            slots - tail + head
        } else {
            head - tail
        };
        let mut classes = Classes::default();
        let mut entries = Table::new();
        for slot in (0..count).map(|nth| (tail + nth) % slots) {
            let field = self.object(u32_at(array, 16 + 4 * slot), 24)?;
            classes.entry.check(field)?;
            entries.push(self.field(field, &mut classes)?);
        }
        let sum: usize = entries.iter().filter_map(|entry| entry.size).sum();
        (sum as u64 == size).then_some(entries)
    }

    /// The name and value of the `HpackHeaderField` (or subclass) `field`.
    fn field(&self, field: &[u8], classes: &mut Classes) -> Option<Recalled> {
        let name = self.ascii_string(u32_at(field, 12), MAX_NAME, classes)?;
        if !is_field_name(name) {
            return None;
        }
        let value = self.ascii_string(u32_at(field, 16), MAX_VALUE, classes)?;
        Recalled::of_field(name, value)
    }

    /// The bytes of the `AsciiString` `reference` points to.
    fn ascii_string(
        &self,
        reference: u32,
        max_len: u32,
        classes: &mut Classes,
    ) -> Option<&'a [u8]> {
        let string = self.object(reference, 32)?;
        classes.string.check(string)?;
        let (offset, len) = (u32_at(string, 12), u32_at(string, 16));
        if len > max_len {
            return None;
        }
        let array = self.object(u32_at(string, 24), 16)?;
        classes.bytes.check(array)?;
        if u64::from(offset) + u64::from(len) > u64::from(u32_at(array, 12)) {
            return None;
        }
        let bytes_at = self.address(u32_at(string, 24)) + 16 + u64::from(offset);
        self.snapshot.read(bytes_at, len as usize)
    }
}

/// The class word of each kind of object a table is made of.
#[derive(Default)]
struct Classes {
    entry: SameClass,
    string: SameClass,
    bytes: SameClass,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process_memory::snapshot::Region;

    /// Class words of the kinds of objects.
    const ENTRY_CLASS: u32 = 0x0010_0000;
    const STRING_CLASS: u32 = 0x0010_0100;
    const BYTES_CLASS: u32 = 0x0010_0200;
    const ARRAY_CLASS: u32 = 0x0010_0300;
    const TABLE_CLASS: u32 = 0x0010_0400;
    /// Where the heap starts: references are addresses over 8.
    const HEAP: u64 = 0x7_0000_0000;

    /// A JVM heap being laid out: objects 8-aligned, referred to by address over 8.
    struct HeapBuilder {
        bytes: Vec<u8>,
    }

    impl HeapBuilder {
        fn new() -> Self {
            // Nothing at reference 0.
            HeapBuilder { bytes: vec![0; 16] }
        }

        /// Appends an object of `len` bytes with class `class`; returns its reference.
        fn object(&mut self, class: u32, len: usize) -> u32 {
            let at = self.bytes.len();
            self.bytes.resize(at + len.next_multiple_of(8), 0);
            self.bytes[at + 8..at + 12].copy_from_slice(&class.to_le_bytes());
            ((HEAP + at as u64) >> 3) as u32
        }

        fn set(&mut self, reference: u32, offset: usize, value: &[u8]) {
            let at = ((u64::from(reference) << 3) - HEAP) as usize + offset;
            self.bytes[at..at + value.len()].copy_from_slice(value);
        }

        fn set_int(&mut self, reference: u32, offset: usize, value: u32) {
            self.set(reference, offset, &value.to_le_bytes());
        }

        fn ascii_string(&mut self, text: &str) -> u32 {
            let array = self.object(BYTES_CLASS, 16 + text.len());
            self.set_int(array, 12, text.len() as u32);
            self.set(array, 16, text.as_bytes());
            let string = self.object(STRING_CLASS, 32);
            self.set_int(string, 16, text.len() as u32);
            self.set_int(string, 24, array);
            string
        }

        /// An `HpackHeaderField` (24 bytes) or `HeaderEntry` (40).
        fn field(&mut self, len: usize, name: &str, value: &str) -> u32 {
            let (name, value) = (self.ascii_string(name), self.ascii_string(value));
            let field = self.object(ENTRY_CLASS, len);
            self.set_int(field, 12, name);
            self.set_int(field, 16, value);
            field
        }

        /// An encoder's ring: `head`, then `fields` oldest first, indices counting down from
        /// `oldest_index`.
        fn encoder(&mut self, fields: &[(&str, &str)], oldest_index: u32) {
            let head = self.field(40, "", "");
            self.set_int(head, 20, u32::MAX);
            self.set_int(head, 24, i32::MAX as u32);
            let mut previous = head;
            for (nth, (name, value)) in fields.iter().enumerate() {
                let entry = self.field(40, name, value);
                self.set_int(entry, 24, oldest_index - nth as u32);
                self.set_int(entry, 28, previous);
                self.set_int(previous, 32, entry);
                previous = entry;
            }
            self.set_int(previous, 32, head);
            self.set_int(head, 28, previous);
        }

        /// A decoder's table of capacity 4096 holding `fields` oldest first, from slot `tail`;
        /// its size is the entries' sizes plus `size_error`.
        fn decoder(&mut self, fields: &[(&str, &str)], tail: usize, size_error: u64) {
            const SLOTS: usize = 128;
            let array = self.object(ARRAY_CLASS, 16 + 4 * SLOTS);
            self.set_int(array, 12, SLOTS as u32);
            let mut size = size_error;
            for (nth, (name, value)) in fields.iter().enumerate() {
                let field = self.field(24, name, value);
                self.set_int(array, 16 + 4 * ((tail + nth) % SLOTS), field);
                size += (name.len() + value.len() + 32) as u64;
            }
            let table = self.object(TABLE_CLASS, 40);
            self.set_int(table, 12, ((tail + fields.len()) % SLOTS) as u32);
            self.set(table, 16, &size.to_le_bytes());
            self.set(table, 24, &4096u64.to_le_bytes());
            self.set_int(table, 32, tail as u32);
            self.set_int(table, 36, array);
        }

        fn snapshot(self) -> Snapshot {
            Snapshot::of(vec![Region {
                start: HEAP,
                writable: true,
                bytes: self.bytes,
            }])
        }
    }

    fn names_and_values(table: &Table) -> Vec<(String, Option<String>)> {
        table
            .iter()
            .map(|entry| {
                (
                    entry.name.to_string(),
                    entry.value.as_deref().map(str::to_owned),
                )
            })
            .collect()
    }

    #[test]
    fn an_encoders_ring_is_read_oldest_first() {
        let mut heap = HeapBuilder::new();
        heap.encoder(
            &[
                (":path", "/shop.Catalog/GetItem"),
                ("authorization", "Bearer secret"),
                (":path", "/shop.Catalog/ListItems"),
            ],
            i32::MAX as u32 - 40,
        );
        let tables = tables(&heap.snapshot());
        assert_eq!(tables.len(), 1);
        assert_eq!(
            names_and_values(&tables[0]),
            [
                (":path".into(), Some("/shop.Catalog/GetItem".into())),
                ("authorization".into(), None),
                (":path".into(), Some("/shop.Catalog/ListItems".into())),
            ]
        );
        assert_eq!(
            tables[0][1].value_digest,
            Some(crate::hpack::value_digest(b"Bearer secret"))
        );
    }

    #[test]
    fn a_decoders_circular_table_is_read_from_its_tail() {
        let mut heap = HeapBuilder::new();
        heap.decoder(
            &[("grpc-status", "0"), ("content-type", "application/grpc")],
            127,
            0,
        );
        let tables = tables(&heap.snapshot());
        assert_eq!(tables.len(), 1);
        assert_eq!(
            names_and_values(&tables[0]),
            [
                ("grpc-status".into(), Some("0".into())),
                ("content-type".into(), Some("application/grpc".into())),
            ]
        );
    }

    #[test]
    fn tables_that_do_not_hold_together_are_not_taken() {
        // A gap in the encoder's indices (an entry of another ring, or garbage).
        let mut heap = HeapBuilder::new();
        heap.encoder(&[(":path", "/a.B/C"), (":path", "/a.B/D")], 1000);
        let second = {
            // The second entry's index, one too low.
            let len = heap.bytes.len();
            heap.bytes[len - 40 + 24..len - 40 + 28].copy_from_slice(&998u32.to_le_bytes());
            heap
        };
        assert!(tables(&second.snapshot()).is_empty());
        // A decoder whose size is not its entries' sum.
        let mut heap = HeapBuilder::new();
        heap.decoder(&[("grpc-status", "0")], 0, 1);
        assert!(tables(&heap.snapshot()).is_empty());
    }
}
