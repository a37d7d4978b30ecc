//! Huffman-coded string literals (RFC 7541 §5.2, code in Appendix B).

use std::sync::OnceLock;

use super::huffman_code::CODES;

const EOS: u16 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("Huffman string contains the EOS symbol")]
    Eos,
    #[error("Huffman string has invalid padding")]
    Padding,
}

/// A binary trie over the code: `children[node][bit]` is either another node or a leaf symbol.
struct Trie {
    children: Vec<[Link; 2]>,
}

#[derive(Clone, Copy)]
enum Link {
    None,
    Node(u16),
    Symbol(u16),
}

/// Built once, to build the [`NibbleTable`] from.
fn build_trie() -> Trie {
    let mut children = vec![[Link::None; 2]];
    for (symbol, &(code, bits)) in CODES.iter().enumerate() {
        let mut node = 0usize;
        for position in (0..bits).rev() {
            let bit = ((code >> position) & 1) as usize;
            if position == 0 {
                children[node][bit] = Link::Symbol(symbol as u16);
            } else {
                node = match children[node][bit] {
                    Link::Node(next) => next as usize,
                    _ => {
                        children.push([Link::None; 2]);
                        let next = children.len() - 1;
                        children[node][bit] = Link::Node(next as u16);
                        next
                    }
                };
            }
        }
    }
    Trie { children }
}

/// Decodes a Huffman-coded string.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
    let mut out = Vec::new();
    decode_into(input, &mut out).map(|()| out)
}

/// [`decode`] into `out`, cleared first.
pub fn decode_into(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let table = nibble_table();
    out.clear();
    out.reserve(input.len() * 8 / 5);
    let mut node = 0usize;
    for &byte in input {
        for nibble in [byte >> 4, byte & 0xf] {
            let step = table.steps[node][usize::from(nibble)];
            match step.emits {
                NOTHING => {}
                FAILS_PADDING => return Err(HuffmanError::Padding),
                EOS => return Err(HuffmanError::Eos),
                symbol => out.push(symbol as u8),
            }
            node = usize::from(step.next);
        }
    }
    // The only valid padding is a prefix of EOS (all ones), at most 7 bits long (§5.2).
    if !table.may_end_at[node] {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

/// The trie walked four bits at a time: the shortest code is five bits long, so four bits
/// complete at most one symbol.
struct NibbleTable {
    /// `steps[node][nibble]`: where the walk goes from `node` on those four bits.
    steps: Vec<[Step; 16]>,
    /// Whether a string may end with the walk at this node: the bits since the last symbol are
    /// at most 7 ones.
    may_end_at: Vec<bool>,
}

#[derive(Clone, Copy)]
struct Step {
    next: u16,
    /// The symbol completed, [`NOTHING`], [`EOS`] or [`FAILS_PADDING`] (a bit pattern no code
    /// has).
    emits: u16,
}

const NOTHING: u16 = u16::MAX;
const FAILS_PADDING: u16 = u16::MAX - 1;

fn nibble_table() -> &'static NibbleTable {
    static TABLE: OnceLock<NibbleTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let trie = build_trie();
        let nodes = trie.children.len();
        // Depth and all-ones-ness of each node's path from the root, parents before children.
        let mut depth = vec![0u32; nodes];
        let mut all_ones = vec![true; nodes];
        for node in 0..nodes {
            for (bit, link) in trie.children[node].iter().enumerate() {
                if let Link::Node(child) = *link {
                    depth[usize::from(child)] = depth[node] + 1;
                    all_ones[usize::from(child)] = all_ones[node] && bit == 1;
                }
            }
        }
        let steps = (0..nodes)
            .map(|start| {
                std::array::from_fn(|nibble| {
                    let mut step = Step {
                        next: start as u16,
                        emits: NOTHING,
                    };
                    for position in (0..4).rev() {
                        let bit = (nibble >> position) & 1;
                        match trie.children[usize::from(step.next)][bit] {
                            Link::Node(next) => step.next = next,
                            Link::Symbol(symbol) => {
                                step.emits = symbol;
                                step.next = 0;
                                if symbol == EOS {
                                    break;
                                }
                            }
                            Link::None => {
                                step.emits = FAILS_PADDING;
                                break;
                            }
                        }
                    }
                    step
                })
            })
            .collect();
        let may_end_at = (0..nodes)
            .map(|node| depth[node] <= 7 && all_ones[node])
            .collect();
        NibbleTable { steps, may_end_at }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpack::unhex;

    #[test]
    fn decodes_rfc_7541_appendix_c_strings() {
        for (hex, text) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
            ("9bd9 ab", "gzip"),
        ] {
            assert_eq!(decode(&unhex(hex)).unwrap(), text.as_bytes(), "{hex}");
        }
    }

    /// Codes `text` per Appendix B, padded with ones.
    fn encode(text: &[u8]) -> Vec<u8> {
        let (mut bits, mut len, mut out) = (0u64, 0u32, Vec::new());
        for &byte in text {
            let (code, code_len) = CODES[usize::from(byte)];
            bits = (bits << code_len) | u64::from(code);
            len += u32::from(code_len);
            while len >= 8 {
                len -= 8;
                out.push((bits >> len) as u8);
            }
        }
        if len > 0 {
            out.push(((bits << (8 - len)) | ((1 << (8 - len)) - 1)) as u8);
        }
        out
    }

    #[test]
    fn every_symbol_round_trips_at_every_bit_alignment() {
        for shift in 0..8u8 {
            // A run of '0's (5 bits each) moves the next symbol to every alignment.
            let mut text = vec![b'0'; usize::from(shift)];
            text.extend(0..=255u8);
            text.extend((0..=255u8).rev());
            assert_eq!(decode(&encode(&text)).unwrap(), text, "shift {shift}");
        }
    }

    #[test]
    fn rejects_bad_padding_and_eos() {
        // 8 bits of ones: padding longer than 7 bits.
        assert_eq!(decode(&[0xff]), Err(HuffmanError::Padding));
        // '0' is 00000 (5 bits); padding with zeros instead of ones.
        assert_eq!(decode(&[0b0000_0000]), Err(HuffmanError::Padding));
        // EOS itself (30 ones) followed by padding.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
        assert_eq!(decode(&[]), Ok(Vec::new()));
    }
}
