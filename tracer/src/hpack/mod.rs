//! HPACK header decompression (RFC 7541), built for a passive observer.
//!
//! Two things differ from an endpoint's decoder:
//! - **Late join.** When the tracer attaches to a connection mid-flight, the dynamic table's
//!   older entries were inserted before it was watching. Indices count from the newest entry
//!   (§2.3.3), so every entry inserted *after* attach resolves exactly; references past them
//!   resolve to [`FieldValue::Unknown`] instead of failing the whole block, naming the entry
//!   they refer to ([`EntryId`]): it stays the same entry while its index shifts, so what is
//!   learned of it later holds for every reference.
//! - **Privacy.** Only the values of allowlisted header names are kept, even inside the dynamic
//!   table; every other value is reduced to its length the moment it is decoded.

mod decoder;
mod field;
mod huffman;
mod huffman_code;
mod integer;
mod repeated_blocks;
mod static_table;
mod table;
mod text;

pub use decoder::{DecodeError, Decoded, Decoder, SeenEntry, value_digest};
pub use field::{FieldValue, HeaderField};
pub use huffman::{HuffmanError, decode as huffman_decode};
pub use table::EntryId;
pub use text::Text;

/// Hex dumps as RFC 7541 prints them (`8286 8441 ...`), for the tests.
#[cfg(test)]
pub(crate) fn unhex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}
