//! Header block decoding (RFC 7541 §6).

use super::{
    field::{FieldValue, HeaderField},
    huffman::{self, HuffmanError},
    integer,
    repeated_blocks::RepeatedBlocks,
    static_table,
    table::{DynamicTable, ENTRY_OVERHEAD, Entry, EntryId, Lookup},
    text::Text,
};
use crate::recent::Recent;

/// Default SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Longest value kept under a name from before we were watching ([`FieldValue::NameUnknown`]):
/// enough for the statuses and codes a name learned later can make useful.
const MAX_VALUE_UNDER_UNKNOWN_NAME: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("header block ends in the middle of a field")]
    Truncated,
    #[error("integer too large")]
    IntegerOverflow,
    #[error("index 0 or past the end of the table")]
    InvalidIndex,
    #[error("dynamic table size update above the allowed maximum")]
    TableSizeTooLarge,
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
}

/// An entry the decoder saw inserted, as it keeps it.
#[derive(Debug, Clone, Copy)]
pub struct SeenEntry<'a> {
    /// `None` when the name came from an entry from before we were watching.
    pub name: Option<&'a Text>,
    pub value: &'a FieldValue,
    /// For a value not kept: its [`value_digest`].
    pub value_digest: Option<u64>,
    /// Its HPACK size (RFC 7541 §4.1), when its name is known.
    pub size: Option<usize>,
}

/// A digest of a header value, to tell whether a value not kept (not allowlisted) is the same
/// as one read elsewhere without keeping either. Never shown or exported.
pub fn value_digest(value: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0x6870_6163_6b00).hash_one(value)
}

/// How [`Decoder::decode_block`] decoded a block.
pub enum Decoded<'a> {
    /// Into the caller's vector.
    Fresh,
    /// The block repeats one decoded before, with the table unchanged since: these are its
    /// fields, and every repeat of it has this serial number.
    Repeat {
        serial: u64,
        fields: &'a [HeaderField],
    },
}

/// Decodes the header blocks one endpoint's encoder produced, in order.
pub struct Decoder {
    table: DynamicTable,
    /// The SETTINGS_HEADER_TABLE_SIZE the peer allows: the ceiling for size updates.
    protocol_max: usize,
    /// Whether a header name's value may be kept.
    retain: fn(&[u8]) -> bool,
    /// Fields whose name or value came from before we were watching.
    pub unknown_references: u64,
    /// Where Huffman-coded strings are decoded, reused from one string to the next.
    scratch: Vec<u8>,
    recent_literals: RecentLiterals,
    repeated_blocks: RepeatedBlocks,
    /// The digest of the last literal value not kept, for the entry it is inserted as.
    redacted_digest: Option<u64>,
}

/// How a literal field affects the dynamic table (§6.2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Indexing {
    /// §6.2.1: the field is inserted.
    Inserted,
    /// §6.2.2 and §6.2.3: it is not.
    NotInserted,
}

impl Decoder {
    /// For a connection seen from its first byte.
    pub fn new(retain: fn(&[u8]) -> bool) -> Decoder {
        Decoder::with_history(retain, true)
    }

    /// For a connection joined mid-flight: entries inserted before now are unknown.
    pub fn joined_late(retain: fn(&[u8]) -> bool) -> Decoder {
        Decoder::with_history(retain, false)
    }

    fn with_history(retain: fn(&[u8]) -> bool, history_complete: bool) -> Decoder {
        Decoder {
            table: DynamicTable::new(DEFAULT_TABLE_SIZE, history_complete),
            protocol_max: DEFAULT_TABLE_SIZE,
            retain,
            unknown_references: 0,
            scratch: Vec::new(),
            recent_literals: RecentLiterals::default(),
            repeated_blocks: RepeatedBlocks::default(),
            redacted_digest: None,
        }
    }

    /// A header block was lost: the entries it inserted shifted every index we knew.
    pub fn lose_sync(&mut self) {
        self.table.forget_history();
    }

    pub fn history_complete(&self) -> bool {
        self.table.history_complete()
    }

    /// The decoding endpoint announced SETTINGS_HEADER_TABLE_SIZE.
    pub fn set_protocol_max(&mut self, max: usize) {
        self.protocol_max = max;
        if self.table.max_size() > max {
            self.table.set_max_size(max);
        }
    }

    /// The entries it saw inserted and still holds, newest first.
    pub fn seen_entries(&self) -> Vec<SeenEntry<'_>> {
        self.table
            .entries()
            .map(|entry| SeenEntry {
                name: entry.name.as_ref(),
                value: &entry.value,
                value_digest: entry.value_digest,
                size: entry.name.is_some().then_some(entry.size),
            })
            .collect()
    }

    /// The current stretch of watching (see [`EntryId::watch`]).
    pub fn watch(&self) -> u32 {
        self.table.watch()
    }

    /// Current table size and entry count, for tests and diagnostics.
    pub fn table_usage(&self) -> (usize, usize) {
        (self.table.size(), self.table.len())
    }

    /// Decodes one complete header block (HEADERS plus CONTINUATIONs, joined). On error the
    /// table may be half-updated, so the history is forgotten.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<HeaderField>, DecodeError> {
        let mut fields = Vec::new();
        self.decode_into(block, &mut fields).map(|()| fields)
    }

    /// [`Decoder::decode`] into `fields` (cleared first), so a caller can reuse one vector.
    pub fn decode_into(
        &mut self,
        block: &[u8],
        fields: &mut Vec<HeaderField>,
    ) -> Result<(), DecodeError> {
        if let Decoded::Repeat {
            fields: repeated, ..
        } = self.decode_block(block, fields)?
        {
            fields.extend_from_slice(repeated);
        }
        Ok(())
    }

    /// Decodes one complete header block into `fields` (cleared first), unless it repeats a
    /// block decoded before: its fields are then lent, not copied, with a serial number that a
    /// caller can keep what it made of them by.
    pub fn decode_block(
        &mut self,
        block: &[u8],
        fields: &mut Vec<HeaderField>,
    ) -> Result<Decoded<'_>, DecodeError> {
        fields.clear();
        let table_changes = self.table.changes();
        if let Some(index) = self.repeated_blocks.find(block, table_changes) {
            let repeat = self.repeated_blocks.repeat(index);
            self.unknown_references += repeat.unknown_references;
            return Ok(Decoded::Repeat {
                serial: repeat.serial,
                fields: repeat.fields,
            });
        }
        let unknown_before = self.unknown_references;
        match self.decode_fields(block, fields) {
            Ok(()) if self.table.changes() == table_changes => self.repeated_blocks.insert(
                block,
                table_changes,
                fields,
                self.unknown_references - unknown_before,
            ),
            Ok(()) => {}
            Err(error) => {
                self.lose_sync();
                return Err(error);
            }
        }
        Ok(Decoded::Fresh)
    }

    fn decode_fields(
        &mut self,
        mut input: &[u8],
        fields: &mut Vec<HeaderField>,
    ) -> Result<(), DecodeError> {
        while let Some(&first) = input.first() {
            let consumed = if first & 0x80 != 0 {
                // §6.1 Indexed Header Field.
                let (index, used) = integer::decode(input, 7)?;
                fields.push(self.indexed(index)?);
                used
            } else if first & 0xc0 == 0x40 {
                // §6.2.1 Literal with Incremental Indexing.
                let (field, used) = self.literal(input, 6, Indexing::Inserted)?;
                self.table.insert(Entry {
                    value_digest: self.redacted_digest.take(),
                    size: field.name.as_ref().map_or(0, |name| name.len())
                        + field.value.byte_len()
                        + ENTRY_OVERHEAD,
                    name: field.name.clone(),
                    name_from: field.from_before,
                    value: field.value.clone(),
                });
                fields.push(field);
                used
            } else if first & 0xe0 == 0x20 {
                // §6.3 Dynamic Table Size Update.
                let (size, used) = integer::decode(input, 5)?;
                if size > self.protocol_max {
                    return Err(DecodeError::TableSizeTooLarge);
                }
                self.table.set_max_size(size);
                used
            } else {
                // §6.2.2 without indexing / §6.2.3 never indexed: same shape, 4-bit prefix.
                let (field, used) = self.literal(input, 4, Indexing::NotInserted)?;
                fields.push(field);
                used
            };
            input = &input[consumed..];
        }
        Ok(())
    }

    fn indexed(&mut self, index: usize) -> Result<HeaderField, DecodeError> {
        if let Some(&(name, value)) = static_entry(index) {
            let value = if (self.retain)(name.as_bytes()) {
                FieldValue::Known(Text::Static(value))
            } else {
                FieldValue::Redacted { len: value.len() }
            };
            return Ok(HeaderField {
                name: Some(Text::Static(name)),
                value,
                from_before: None,
            });
        }
        match self.dynamic_entry(index)? {
            Ok(entry) => Ok(HeaderField {
                name: entry.name.clone(),
                value: entry.value.clone(),
                from_before: entry.name_from,
            }),
            Err(unknown) => Ok(HeaderField {
                name: None,
                value: FieldValue::Unknown,
                from_before: Some(unknown),
            }),
        }
    }

    /// The name at `index`, for a literal that references one; when it is from before we were
    /// watching, the entry it is from.
    fn indexed_name(&mut self, index: usize) -> Result<Result<Text, EntryId>, DecodeError> {
        if let Some(&(name, _)) = static_entry(index) {
            return Ok(Ok(Text::Static(name)));
        }
        Ok(match self.dynamic_entry(index)? {
            Ok(Entry {
                name: Some(name), ..
            }) => Ok(name.clone()),
            // An entry without a name always has the entry it took its name from.
            Ok(Entry { name_from, .. }) => Err(name_from.ok_or(DecodeError::InvalidIndex)?),
            Err(unknown) => Err(unknown),
        })
    }

    /// Dynamic table entry `index` (in the combined index space); `Err` with the entry's
    /// identity when it is from before we were watching. Counts references to what we cannot
    /// know.
    fn dynamic_entry(&mut self, index: usize) -> Result<Result<&Entry, EntryId>, DecodeError> {
        if index <= static_table::LEN {
            return Err(DecodeError::InvalidIndex); // Only index 0 gets here.
        }
        match self.table.get(index - static_table::LEN - 1) {
            Lookup::Found(entry) => {
                if entry.name.is_none() {
                    self.unknown_references += 1;
                }
                Ok(Ok(entry))
            }
            Lookup::Unknown(id) => {
                self.unknown_references += 1;
                Ok(Err(id))
            }
            Lookup::Invalid => Err(DecodeError::InvalidIndex),
        }
    }

    /// A literal field whose name index has `prefix_bits` bits (0 = the name follows).
    fn literal(
        &mut self,
        input: &[u8],
        prefix_bits: u8,
        indexing: Indexing,
    ) -> Result<(HeaderField, usize), DecodeError> {
        let (name_index, mut used) = integer::decode(input, prefix_bits)?;
        let (name, from_before) = if name_index == 0 {
            let (name, name_used) = string(&input[used..], &mut self.scratch)?;
            used += name_used;
            (Some(name_text(name)), None)
        } else {
            match self.indexed_name(name_index)? {
                Ok(name) => (Some(name), None),
                Err(entry) => (None, Some(entry)),
            }
        };
        let retained = name
            .as_deref()
            .is_some_and(|name| (self.retain)(name.as_bytes()));
        // A value the table does not keep may come again as the same literal.
        let remembered = retained && indexing == Indexing::NotInserted;
        let encoded = &input[used..];
        let encoded = &encoded[..string_len(encoded)?];
        used += encoded.len();
        if remembered && let Some(text) = self.recent_literals.get(encoded) {
            let value = FieldValue::Known(text.clone());
            let field = HeaderField {
                name,
                value,
                from_before,
            };
            return Ok((field, used));
        }
        let (value, _) = string(encoded, &mut self.scratch)?;
        // A value the table keeps but we may not: what it is stays unknown, but whether it is
        // the same as a value read elsewhere can still be told (see [`Entry::value_digest`]).
        self.redacted_digest =
            (indexing == Indexing::Inserted && !retained).then(|| value_digest(value));
        let value = if retained {
            match Text::decoded(value) {
                Some(text) => {
                    if remembered {
                        self.recent_literals.insert(encoded, text.clone());
                    }
                    FieldValue::Known(text)
                }
                None => FieldValue::Redacted { len: value.len() },
            }
        } else if from_before.is_some() && value.len() <= MAX_VALUE_UNDER_UNKNOWN_NAME {
            match Text::decoded(value) {
                Some(text) => FieldValue::NameUnknown(text),
                None => FieldValue::Redacted { len: value.len() },
            }
        } else {
            // Not allowlisted.
            FieldValue::Redacted { len: value.len() }
        };
        let field = HeaderField {
            name,
            value,
            from_before,
        };
        Ok((field, used))
    }
}

/// The last few kept values that came as literals the encoder did not add to the table, by
/// their encoded bytes. h2 (under tonic and hyper) never indexes `:path`, so its clients send
/// the method path as the same literal with every call: this spares decoding and storing it
/// again.
#[derive(Default)]
struct RecentLiterals {
    entries: Recent<(Vec<u8>, Text), 4>,
}

impl RecentLiterals {
    fn get(&self, encoded: &[u8]) -> Option<&Text> {
        self.entries
            .find(|(known, _)| known[..] == *encoded)
            .map(|(_, text)| text)
    }

    fn insert(&mut self, encoded: &[u8], text: Text) {
        self.entries.insert((encoded.to_vec(), text));
    }
}

/// A literal name as [`HeaderField::name`] holds it.
fn name_text(name: &[u8]) -> Text {
    Text::decoded(name).unwrap_or_else(|| {
        let ascii: String = name
            .iter()
            .map(|&byte| {
                if byte.is_ascii() {
                    char::from(byte)
                } else {
                    '?'
                }
            })
            .collect();
        Text::from(ascii)
    })
}

fn static_entry(index: usize) -> Option<&'static (&'static str, &'static str)> {
    static_table::ENTRIES.get(index.checked_sub(1)?)
}

/// How many bytes the string literal (§5.2) at the start of `input` takes, prefix included.
fn string_len(input: &[u8]) -> Result<usize, DecodeError> {
    let (len, used) = integer::decode(input, 7)?;
    let end = used.checked_add(len).ok_or(DecodeError::Truncated)?;
    if end > input.len() {
        return Err(DecodeError::Truncated);
    }
    Ok(end)
}

/// A string literal (§5.2): its decoded bytes (in place, or Huffman-decoded into `scratch`)
/// and the bytes consumed.
fn string<'a>(input: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<(&'a [u8], usize), DecodeError> {
    let huffman_coded = input.first().ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let (len, used) = integer::decode(input, 7)?;
    let raw = input.get(used..used + len).ok_or(DecodeError::Truncated)?;
    if !huffman_coded {
        return Ok((raw, used + len));
    }
    huffman::decode_into(raw, scratch)?;
    Ok((scratch, used + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpack::unhex;

    fn keep_all(_: &[u8]) -> bool {
        true
    }

    fn pairs(fields: &[HeaderField]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|field| {
                let name = field.name.as_deref().unwrap_or("?").to_owned();
                let value = match &field.value {
                    FieldValue::Known(text) => text.to_string(),
                    FieldValue::Redacted { len } => format!("<{len} bytes>"),
                    FieldValue::Unknown => "?".into(),
                    FieldValue::NameUnknown(text) => format!("?{text}"),
                };
                (name, value)
            })
            .collect()
    }

    fn expect(fields: &[HeaderField], expected: &[(&str, &str)]) {
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs(fields), expected);
    }

    const REQUEST_1: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    const REQUEST_2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQUEST_3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];

    /// RFC 7541 C.3 (plain) and C.4 (Huffman): three requests sharing one table.
    #[test]
    fn rfc_7541_request_examples() {
        for blocks in [
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ] {
            let mut decoder = Decoder::new(keep_all);
            expect(&decoder.decode(&unhex(blocks[0])).unwrap(), REQUEST_1);
            assert_eq!(decoder.table_usage(), (57, 1));
            expect(&decoder.decode(&unhex(blocks[1])).unwrap(), REQUEST_2);
            assert_eq!(decoder.table_usage(), (110, 2));
            expect(&decoder.decode(&unhex(blocks[2])).unwrap(), REQUEST_3);
            assert_eq!(decoder.table_usage(), (164, 3));
        }
    }

    /// RFC 7541 C.5 (plain) and C.6 (Huffman): responses with a 256-byte table, so entries
    /// are evicted.
    #[test]
    fn rfc_7541_response_examples_with_eviction() {
        let response_1 = [
            (":status", "302"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ];
        let mut response_2 = response_1;
        response_2[0].1 = "307";
        let response_3 = [
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ];
        for blocks in [
            [
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
                 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
                 6c65 2e63 6f6d",
                "4803 3330 37c1 c0bf",
                "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
                 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
                 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
                 3d31",
            ],
            [
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
                 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                "4883 640e ffc1 c0bf",
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
                 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
                 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ],
        ] {
            let mut decoder = Decoder::new(keep_all);
            decoder.set_protocol_max(256);
            expect(&decoder.decode(&unhex(blocks[0])).unwrap(), &response_1);
            assert_eq!(decoder.table_usage(), (222, 4));
            expect(&decoder.decode(&unhex(blocks[1])).unwrap(), &response_2);
            assert_eq!(decoder.table_usage(), (222, 4));
            expect(&decoder.decode(&unhex(blocks[2])).unwrap(), &response_3);
            assert_eq!(decoder.table_usage(), (215, 3));
        }
    }

    #[test]
    fn values_of_names_off_the_allowlist_are_redacted() {
        fn only_path(name: &[u8]) -> bool {
            name == b":path"
        }
        let mut decoder = Decoder::new(only_path);
        // C.3.3: custom-key: custom-value is inserted, but only its length is kept.
        decoder
            .decode(&unhex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"))
            .unwrap();
        decoder
            .decode(&unhex("8286 84be 5808 6e6f 2d63 6163 6865"))
            .unwrap();
        let fields = decoder
            .decode(&unhex(
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ))
            .unwrap();
        expect(
            &fields,
            &[
                (":method", "<3 bytes>"),
                (":scheme", "<5 bytes>"),
                (":path", "/index.html"),
                (":authority", "<15 bytes>"),
                ("custom-key", "<12 bytes>"),
            ],
        );
        // Sizes still follow the real lengths, so eviction stays exact.
        assert_eq!(decoder.table_usage(), (164, 3));
    }

    #[test]
    fn bytes_that_are_not_utf8_keep_their_length_but_not_their_value() {
        // Literals with incremental indexing: name "\xffa" (not UTF-8), then ":path" with a
        // value that is not UTF-8 either.
        let mut decoder = Decoder::new(keep_all);
        let fields = decoder
            .decode(&[0x40, 0x02, 0xff, b'a', 0x01, b'v', 0x44, 0x02, b'/', 0xfe])
            .unwrap();
        expect(&fields, &[("?a", "v"), (":path", "<2 bytes>")]);
        // Both entries count their real lengths: 2 + 1 + 32 and 5 + 2 + 32.
        assert_eq!(decoder.table_usage(), (74, 2));
    }

    #[test]
    fn literals_without_indexing_decode_the_same_when_they_repeat() {
        // `:path` (static name 4) as a literal without indexing, as h2 sends it every call;
        // more distinct paths than are remembered, so remembered ones get replaced.
        let literal = |path: &str| [&[0x04, path.len() as u8], path.as_bytes()].concat();
        let mut decoder = Decoder::new(keep_all);
        for path in ["/a", "/b", "/a", "/c", "/d", "/e", "/f", "/a", "/f", "/b"] {
            expect(&decoder.decode(&literal(path)).unwrap(), &[(":path", path)]);
        }
        // A value whose name is not kept stays redacted, even if the same bytes were kept.
        let mut decoder = Decoder::new(|name| name == b":path");
        expect(&decoder.decode(&literal("/a")).unwrap(), &[(":path", "/a")]);
        let block = [&[0x01, 0x02][..], b"/a"].concat(); // `:authority`, not kept here.
        expect(
            &decoder.decode(&block).unwrap(),
            &[(":authority", "<2 bytes>")],
        );
        assert_eq!(decoder.table_usage(), (0, 0));
    }

    #[test]
    fn a_repeated_block_decodes_to_what_the_table_holds_now() {
        let insert = |name: &str, value: &str| {
            [
                &[0x40, name.len() as u8][..],
                name.as_bytes(),
                &[value.len() as u8],
                value.as_bytes(),
            ]
            .concat()
        };
        let newest = [0xbe]; // Dynamic index 62.
        let mut decoder = Decoder::new(keep_all);
        decoder.decode(&insert("x-a", "1")).unwrap();
        for _ in 0..3 {
            expect(&decoder.decode(&newest).unwrap(), &[("x-a", "1")]);
        }
        // The same bytes name another entry once one is inserted, or none after a resize.
        decoder.decode(&insert("x-b", "2")).unwrap();
        for _ in 0..3 {
            expect(&decoder.decode(&newest).unwrap(), &[("x-b", "2")]);
        }
        decoder.decode(&[0x20]).unwrap(); // Table size update to 0: evicts everything.
        assert_eq!(
            decoder.decode(&newest),
            Err(DecodeError::InvalidIndex),
            "an index past the table's end"
        );
        // A repeat of a block with references from before we were watching counts them again.
        let mut decoder = Decoder::joined_late(keep_all);
        for repeat in 1..=3 {
            expect(&decoder.decode(&newest).unwrap(), &[("?", "?")]);
            assert_eq!(decoder.unknown_references, repeat);
        }
    }

    #[test]
    fn late_join_resolves_new_entries_and_marks_old_ones_unknown() {
        let mut decoder = Decoder::joined_late(keep_all);
        // C.3.2 references dynamic index 62 (":authority: www.example.com", inserted by C.3.1,
        // which we "missed"), then inserts cache-control.
        let fields = decoder
            .decode(&unhex("8286 84be 5808 6e6f 2d63 6163 6865"))
            .unwrap();
        expect(
            &fields,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("?", "?"),
                ("cache-control", "no-cache"),
            ],
        );
        assert_eq!(decoder.unknown_references, 1);
        // C.3.3: index 63 is now the unseen entry, 62 the cache-control we saw inserted...
        let fields = decoder
            .decode(&unhex(
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ))
            .unwrap();
        expect(
            &fields,
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                ("?", "?"),
                ("custom-key", "custom-value"),
            ],
        );
        // ...and a reference to the newest entries resolves exactly.
        expect(
            &decoder.decode(&[0xbe, 0xbf]).unwrap(),
            &[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
            ],
        );
    }

    #[test]
    fn an_unseen_entry_keeps_its_identity_as_its_index_shifts() {
        let mut decoder = Decoder::joined_late(keep_all);
        let unseen = |insertion| {
            Some(EntryId {
                watch: 0,
                insertion,
            })
        };
        // Index 62 and 63: the two newest entries from before we were watching.
        let fields = decoder.decode(&[0xbe, 0xbf]).unwrap();
        assert_eq!(fields[0].from_before, unseen(-1));
        assert_eq!(fields[1].from_before, unseen(-2));
        // One insertion later (cache-control), the same entries are 63 and 64.
        let fields = decoder
            .decode(&unhex("5808 6e6f 2d63 6163 6865 bfc0"))
            .unwrap();
        assert_eq!(fields[0].from_before, None);
        assert_eq!(
            (fields[1].from_before, fields[2].from_before),
            (unseen(-1), unseen(-2))
        );
        // After a lost block the numbering starts again.
        decoder.lose_sync();
        let fields = decoder.decode(&[0xbe]).unwrap();
        assert_eq!(
            fields[0].from_before,
            Some(EntryId {
                watch: 1,
                insertion: -1
            })
        );
    }

    #[test]
    fn a_short_value_under_an_unseen_name_is_kept_but_not_shown() {
        fn only_status(name: &[u8]) -> bool {
            name == b"grpc-status"
        }
        let mut decoder = Decoder::joined_late(only_status);
        // Literal with incremental indexing, name from dynamic index 62 (unseen): "5"; then
        // the new entry itself, which keeps both.
        let fields = decoder.decode(&unhex("7e01 35be")).unwrap();
        for field in &fields {
            assert_eq!(field.name, None);
            assert_eq!(field.value, FieldValue::NameUnknown("5".into()));
            assert_eq!(field.text(), None, "not shown while the name is unknown");
        }
        assert_eq!(fields[0].from_before, fields[1].from_before);
        // A longer value under an unseen name keeps only its length.
        let long = [&[0x7f, 0x00, 0x11][..], &[b'x'; 17][..]].concat();
        assert_eq!(
            decoder.decode(&long).unwrap()[0].value,
            FieldValue::Redacted { len: 17 }
        );
    }

    #[test]
    fn corrupt_blocks_are_errors_and_reset_the_table() {
        let mut decoder = Decoder::new(keep_all);
        decoder
            .decode(&unhex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"))
            .unwrap();
        assert_eq!(decoder.decode(&[0x80]), Err(DecodeError::InvalidIndex));
        // The history is gone: the old entry's index now resolves to unknown, not an error.
        assert!(!decoder.history_complete());
        assert_eq!(
            decoder.decode(&[0xbe]).unwrap()[0].value,
            FieldValue::Unknown
        );
        assert_eq!(
            Decoder::new(keep_all).decode(&[0xbe]),
            Err(DecodeError::InvalidIndex)
        );
        assert_eq!(
            Decoder::new(keep_all).decode(&[0x44, 0x05, b'a']),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Decoder::new(keep_all).decode(&[0x3f, 0xe2, 0x1f]),
            Err(DecodeError::TableSizeTooLarge)
        );
    }
}
